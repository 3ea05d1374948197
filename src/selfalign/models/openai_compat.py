"""The ``openai`` backend: any OpenAI-compatible HTTP server (vLLM, llama.cpp, TGI, OpenAI...).

Each sample is one ``/chat/completions`` (chat prompt) or ``/completions`` (raw text) request
with ``n=1`` and its own ``seed`` (:func:`selfalign.types.sample_seed`), so sample ``i`` maps to
the same request whatever batch it is in. Requests run concurrently on a thread pool; 429, 5xx,
timeouts and connection errors are retried with exponential backoff. The API key comes from an
environment variable (``OPENAI_API_KEY`` by default) and is never logged or stored.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import httpx

from selfalign.models.base import CannotScore, ModelError, ProgressFn
from selfalign.types import Completion, GenRequest, GenResult, ScoreRequest, ScoreResult, ends_with_prefill, prompt_to_json, sample_seed

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def request_body(model: str, req: GenRequest, index: int) -> tuple[str, dict[str, Any]]:
    """(endpoint path, JSON body) for sample ``index`` of ``req``."""
    p = req.params
    body: dict[str, Any] = {
        "model": model,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "n": 1,
        "seed": sample_seed(req.seed, index) % (2**31),
    }
    if p.stop:
        body["stop"] = list(p.stop)
    if isinstance(req.prompt, str):
        body["prompt"] = req.prompt
        if p.logprobs:
            body["logprobs"] = 1
        return "/completions", body
    body["messages"] = prompt_to_json(req.prompt)
    if ends_with_prefill(body["messages"]):
        # a prefill: vLLM's server continues the assistant's message with these two (its extension
        # of the API); selfalign serve passes the messages to a backend that treats it so anyway
        body["add_generation_prompt"] = False
        body["continue_final_message"] = True
    if p.logprobs:
        body["logprobs"] = True
    return "/chat/completions", body


def parse_choice(data: dict[str, Any], index: int) -> Completion:
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise ModelError(f"server answered without choices: {str(data)[:200]}") from None
    text = choice.get("message", {}).get("content") if "message" in choice else choice.get("text")
    reason = "length" if choice.get("finish_reason") == "length" else "stop"
    lps = None
    lp = choice.get("logprobs")
    if isinstance(lp, dict):
        if lp.get("content") is not None:
            lps = tuple(float(t["logprob"]) for t in lp["content"])
        elif lp.get("token_logprobs") is not None:
            lps = tuple(float(x) for x in lp["token_logprobs"])
    usage = data.get("usage") or {}
    n_tokens = int(usage.get("completion_tokens", len((text or "").split())))
    return Completion(text or "", "length" if reason == "length" else "stop", n_tokens, index, lps)


class OpenAICompatModel:
    can_score = False
    can_train = False
    train_path = None

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
    ):
        self.model = model
        self.base_url = (base_url or os.environ.get("SELFALIGN_OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.model_id = f"openai:{model}@{self.base_url}"
        key = os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                resp = self.client.post(path, json=body)
                if resp.status_code < 400:
                    return resp.json()
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in RETRY_STATUS:
                    raise ModelError(f"{self.base_url}{path}: {last}")
            except (httpx.TransportError, httpx.TimeoutException) as e:
                last = f"{type(e).__name__}: {e}"
            if attempt < self.max_retries:
                time.sleep(self.backoff * (2**attempt) * (1 + random.random() * 0.25))
        raise ModelError(f"{self.base_url}{path}: gave up after {self.max_retries + 1} tries ({last})")

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None) -> list[GenResult]:
        jobs = [(ri, s) for ri, r in enumerate(requests) for s in r.sample_indices()]

        def run(job: tuple[int, int]) -> Completion:
            ri, s = job
            path, body = request_body(self.model, requests[ri], s)
            c = parse_choice(self._post(path, body), s)
            if progress:
                progress(1, c.n_tokens)
            return c

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            comps = list(pool.map(run, jobs))
        by_req: dict[int, list[Completion]] = {}
        for (ri, _), c in zip(jobs, comps):
            by_req.setdefault(ri, []).append(c)
        return [GenResult(r, tuple(by_req.get(i, []))) for i, r in enumerate(requests)]

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        raise CannotScore(self.model_id, "chat APIs do not return log-probabilities of a given text")
