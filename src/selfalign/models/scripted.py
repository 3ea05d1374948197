"""A deterministic test double for exact logic: rule-based or queued outputs, and a call history.

>>> m = ScriptedModel(rules={"capital of France": "Paris."}, default="I don't know.")
>>> from selfalign.types import GenRequest, user
>>> m.generate([GenRequest(user("What is the capital of France?"))])[0].texts
['Paris.']

A rule's value may be a string (``{index}`` and ``{seed}`` are filled in), a list (sample ``i``
gets item ``i % len``) or a callable ``(prompt_text, sample_index, seed) -> str``. Queued outputs (``queue``) are served first.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from typing import Any, Callable, Sequence

from selfalign.models.base import ProgressFn
from selfalign.types import Completion, GenRequest, GenResult, Prompt, ScoreRequest, ScoreResult

Rule = str | list[str] | Callable[[str, int, int], str]


def prompt_text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(f"{m.role}: {m.content}" for m in prompt)


class ScriptedModel:
    can_score = True  # deterministic pseudo log-probabilities
    can_train = False
    train_path = None

    def __init__(
        self,
        rules: dict[str, Rule] | None = None,
        default: Rule = "",
        queue: Sequence[str] = (),
        model_id: str = "scripted",
        fail_after: int | None = None,
        delay: float = 0.0,
    ):
        self.rules = dict(rules or {})
        self.default = default
        self.queue: deque[str] = deque(queue)
        self.model_id = model_id
        self.calls: list[Any] = []  # every request, in order
        self.fail_after = fail_after  # raise KeyboardInterrupt after this many samples (resume tests)
        self._served = 0
        self.delay = delay  # seconds per sample: makes a run slow enough to kill in tests

    def _pick(self, rule: Rule, text: str, index: int, seed: int) -> str:
        if callable(rule):
            return rule(text, index, seed)
        if isinstance(rule, list):
            rule = rule[index % len(rule)]
        if "{index}" in rule or "{seed}" in rule:  # lets a JSON rules file vary samples
            return rule.replace("{index}", str(index)).replace("{seed}", str(seed))
        return rule

    def _answer(self, prompt: Prompt, index: int, seed: int) -> str:
        if self.queue:
            return self.queue.popleft()
        text = prompt_text(prompt)
        for key, rule in self.rules.items():
            if key in text:
                return self._pick(rule, text, index, seed)
        return self._pick(self.default, text, index, seed)

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None) -> list[GenResult]:
        results = []
        for r in requests:
            self.calls.append(r)
            comps = []
            for i in r.sample_indices():
                if self.fail_after is not None and self._served >= self.fail_after:
                    raise KeyboardInterrupt("scripted interruption")
                if self.delay:
                    time.sleep(self.delay)
                text = self._answer(r.prompt, i, r.seed)
                for s in r.params.stop:
                    if s in text:
                        text = text[: text.find(s)]
                words = text.split()
                reason = "length" if len(words) > r.params.max_tokens else "stop"
                text = " ".join(words[: r.params.max_tokens]) if reason == "length" else text
                lps = tuple(-0.5 for _ in words) if r.params.logprobs else None
                comps.append(Completion(text, "length" if reason == "length" else "stop",
                                        min(len(words), r.params.max_tokens), i, lps))
                self._served += 1
                if progress:
                    progress(1, comps[-1].n_tokens)
            results.append(GenResult(r, tuple(comps), prompt_tokens=len(prompt_text(r.prompt).split())))
        return results

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """A deterministic pseudo log-probability per word: the same text scores the same."""
        out = []
        for r in requests:
            self.calls.append(r)
            ctx = prompt_text(r.prompt)
            lps = []
            for w in r.completion.split():
                h = hashlib.sha256(f"{ctx}|{w}".encode()).digest()
                # words that appear in the prompt are "easier": higher log-probability
                base = -0.5 if w in ctx else -3.0
                lps.append(base - h[0] / 255.0)
            out.append(ScoreResult(r, tuple(lps)))
        return out
