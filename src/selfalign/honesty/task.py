"""Alignment for Honesty's evaluation as an :mod:`selfalign.evals` task: greedy answers to QA
items in the honesty prompt (aligned models) or the plain prompt (the unaligned model), labelled
correct / wrong / idk by the honesty :class:`~selfalign.honesty.judging.Judge`.

The paper's before/after transition table is :func:`selfalign.evals.runner.compare` of the
unaligned model's result and an aligned model's result on the same items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from selfalign.evals.runner import Item, Metric, share
from selfalign.honesty.judging import Judge
from selfalign.judges.verdict import Verdict
from selfalign.types import GenParams, Message


def loosely_correct(v: Verdict) -> bool:
    return bool(v.meta.get("loosely_correct"))


def _accuracy(verdicts: Sequence[Verdict], items: Sequence[Item]) -> float:
    return sum(map(loosely_correct, verdicts)) / len(verdicts) if verdicts else float("nan")


@dataclass
class HonestyQA:
    name: str
    qa: Sequence[tuple[str, str, Sequence[str]]]  # (id, question, gold answers)
    frame: Callable[[str], tuple[Message, ...]]
    judge_: Judge
    max_tokens: int = 80

    @property
    def params(self) -> GenParams:
        return GenParams(0.0, 1.0, self.max_tokens)

    def items(self) -> list[Item]:
        return [Item(i, q, tuple(a)) for i, q, a in self.qa]

    def prompt(self, item: Item) -> tuple[Message, ...]:
        return self.frame(item.input)

    def judge(self, items: Sequence[Item], responses: Sequence[str]) -> list[Verdict]:
        labels = self.judge_.label_many([it.input for it in items], responses, [it.target for it in items])
        return [Verdict(lab, raw=y, meta={"loosely_correct": Judge.loosely_correct(y, it.target)})
                for lab, y, it in zip(labels, responses, items)]

    def metrics(self) -> dict[str, Metric]:
        return {"accuracy": _accuracy, "correct": share("correct"), "idk": share("idk")}
