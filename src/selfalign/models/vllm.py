"""The ``vllm`` backend (optional extra ``selfalign[vllm]``, GPU machines).

Each sample becomes one vLLM request with ``n=1`` and its own seed, mirroring the ``hf`` and
``openai`` backends, so cached samples stay interchangeable between engines. The mapping is a
pure function (:func:`sampling_kwargs`) tested without vLLM installed.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Sequence

from selfalign.models.base import MissingExtra, ProgressFn
from selfalign.types import Completion, GenRequest, GenResult, ScoreRequest, ScoreResult, prompt_to_json, sample_seed


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


class VLLMModel:
    def __init__(self, model: str, **engine_kwargs: Any):
        if importlib.util.find_spec("vllm") is None:
            raise MissingExtra("vllm", "vllm", "the vllm backend")
        import vllm

        self._vllm = vllm
        self.llm = vllm.LLM(model=model, **engine_kwargs)
        self.model_id = f"vllm:{model}"

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None) -> list[GenResult]:
        jobs = [(ri, s) for ri, r in enumerate(requests) for s in r.sample_indices()]
        params = [self._vllm.SamplingParams(**sampling_kwargs(requests[ri], s)) for ri, s in jobs]
        chats = [prompt_to_json(requests[ri].prompt) for ri, _ in jobs]
        if all(isinstance(c, list) for c in chats):
            outs = self.llm.chat(chats, params, use_tqdm=False)
        else:
            outs = self.llm.generate([c if isinstance(c, str) else "" for c in chats], params, use_tqdm=False)
        by_req: dict[int, list[Completion]] = {}
        for (ri, s), o in zip(jobs, outs):
            c0 = o.outputs[0]
            lps = None
            if c0.logprobs is not None:
                lps = tuple(float(step[tok].logprob) for step, tok in zip(c0.logprobs, c0.token_ids))
            reason = "length" if c0.finish_reason == "length" else "stop"
            by_req.setdefault(ri, []).append(Completion(c0.text, reason, len(c0.token_ids), s, lps))
            if progress:
                progress(1, len(c0.token_ids))
        return [GenResult(r, tuple(by_req.get(i, []))) for i, r in enumerate(requests)]

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        raise NotImplementedError("vllm scoring: use the hf backend as the scorer")
