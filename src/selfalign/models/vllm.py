"""The ``vllm`` backend (optional extra ``selfalign[vllm]``, GPU machines).

Each sample becomes one vLLM request with ``n=1`` and its own seed, mirroring the ``hf`` and
``openai`` backends, so cached samples stay interchangeable between engines. The mapping is a
pure function (:func:`sampling_kwargs`) tested without vLLM installed.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Sequence

from selfalign.models.base import CannotScore, MissingExtra, ProgressFn
from selfalign.types import Completion, GenRequest, GenResult, ScoreRequest, ScoreResult, ends_with_prefill, prompt_to_json, sample_seed


def sampling_kwargs(req: GenRequest, index: int) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for sample ``index`` of ``req``."""
    p = req.params
    kw: dict[str, Any] = {
        "n": 1,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "seed": sample_seed(req.seed, index) % (2**31),
    }
    if p.stop:
        kw["stop"] = list(p.stop)
    if p.logprobs:
        kw["logprobs"] = 0  # the sampled token's own log-probability
    return kw


def split_by_kind(prompts: Sequence[Any]) -> tuple[list[int], list[int]]:
    """Positions of chat prompts (message lists) and of raw text prompts: vLLM takes the two
    through different calls (``chat`` and ``generate``), so a mixed batch is sent as two.

    >>> split_by_kind([[{"role": "user", "content": "hi"}], "raw", [{"role": "user", "content": "yo"}]])
    ([0, 2], [1])
    """
    chat = [i for i, p in enumerate(prompts) if isinstance(p, list)]
    raw = [i for i, p in enumerate(prompts) if not isinstance(p, list)]
    return chat, raw


class VLLMModel:
    can_score = False
    can_train = False
    train_path = None

    def __init__(self, model: str, revision: str | None = None, **engine_kwargs: Any):
        if importlib.util.find_spec("vllm") is None:
            raise MissingExtra("vllm", "vllm", "the vllm backend")
        import vllm

        from selfalign.models.hf import model_revision

        self._vllm = vllm
        self.llm = vllm.LLM(model=model, revision=revision, **engine_kwargs)
        # the revision (a weights hash for a local directory) keeps retrained weights at the same
        # path from being served the old weights' stored samples
        self.model_id = f"vllm:{model}@{model_revision(model, revision)}"

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None) -> list[GenResult]:
        jobs = [(ri, s) for ri, r in enumerate(requests) for s in r.sample_indices()]
        params = [self._vllm.SamplingParams(**sampling_kwargs(requests[ri], s)) for ri, s in jobs]
        prompts = [prompt_to_json(requests[ri].prompt) for ri, _ in jobs]
        chat_idx, raw_idx = split_by_kind(prompts)
        outs: list[Any] = [None] * len(jobs)
        # a chat prompt ending with an assistant message is a prefill: vLLM continues that message
        for cont in (False, True):
            idx = [i for i in chat_idx if ends_with_prefill(prompts[i]) == cont]
            if not idx:
                continue
            extra = {"add_generation_prompt": False, "continue_final_message": True} if cont else {}
            got = self.llm.chat([prompts[i] for i in idx], [params[i] for i in idx], use_tqdm=False, **extra)
            for i, o in zip(idx, got):
                outs[i] = o
        if raw_idx:
            got = self.llm.generate([prompts[i] for i in raw_idx], [params[i] for i in raw_idx], use_tqdm=False)
            for i, o in zip(raw_idx, got):
                outs[i] = o
        by_req: dict[int, list[Completion]] = {}
        for (ri, s), o in zip(jobs, outs):
            c0 = o.outputs[0]
            lps = None
            if c0.logprobs is not None:
                lps = tuple(float(step[tok].logprob) for step, tok in zip(c0.logprobs, c0.token_ids))
            by_req.setdefault(ri, []).append(Completion(c0.text, "length" if c0.finish_reason == "length" else "stop",
                                                        len(c0.token_ids), s, lps))
            if progress:
                progress(1, len(c0.token_ids))
        return [GenResult(r, tuple(by_req.get(i, []))) for i, r in enumerate(requests)]

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        raise CannotScore(self.model_id, "the vllm backend does not score given texts here")
