"""Judges that ask a model (any backend, through the store): a rubric/classification judge and
a pairwise judge that asks in both orders.

Both return :class:`~selfalign.judges.verdict.Verdict` objects; an answer that does not parse
is unscored. The judge model is a separate ``--model`` everywhere: a small model is a poor
judge (the embedded 135M model answers pairwise questions by position), and the pairwise
judge's flipped count shows it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from selfalign.judges.verdict import Verdict, parse_choice, unscored
from selfalign.types import GenParams, GenRequest, Message


class RubricJudge:
    """Fill ``template`` with each item's fields, ask greedily, parse the reply strictly.

    ``parse`` returns a label (str), a score (int/float) or None (unscored)."""

    def __init__(self, model: Any, template: str, parse: Callable[[str], Any], max_tokens: int = 8,
                 name: str = "rubric"):
        self.model, self.template, self.parse, self.max_tokens, self.name = model, template, parse, max_tokens, name

    def judge(self, items: Sequence[Mapping[str, Any]], description: str | None = None) -> list[Verdict]:
        reqs = [GenRequest((Message("user", self.template.format(**it)),), GenParams(0.0, 1.0, self.max_tokens))
                for it in items]
        out = []
        for res in self.model.generate(reqs, description=description or f"judge: {self.name}"):
            raw = res.texts[0]
            value = self.parse(raw)
            if value is None:
                out.append(unscored(raw))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(Verdict(str(value), float(value), raw))
            else:
                out.append(Verdict(str(value), None, raw))
        return out


class PairwiseJudge:
    """Which of two responses is better (by the template's criterion)? Asked in both orders.

    ``template`` has ``{context}``, ``{first}`` and ``{second}`` and asks for "A" (first) or "B"
    (second). Each pair gets one verdict with label ``"a"`` or ``"b"`` (the pair's own order)
    when both orders agree, ``"tie"`` with ``flipped=True`` when the answer follows the position
    instead of the content, and unscored when either answer does not parse."""

    def __init__(self, model: Any, template: str, max_tokens: int = 4, name: str = "pairwise"):
        self.model, self.template, self.max_tokens, self.name = model, template, max_tokens, name

    def compare(self, pairs: Sequence[tuple[str, str, str]], description: str | None = None) -> list[Verdict]:
        params = GenParams(0.0, 1.0, self.max_tokens)
        reqs = []
        for ctx, a, b in pairs:
            for first, second in ((a, b), (b, a)):
                reqs.append(GenRequest((Message("user", self.template.format(context=ctx, first=first, second=second)),),
                                       params))
        res = self.model.generate(reqs, description=description or f"judge: {self.name} (both orders)")
        out = []
        for i in range(len(pairs)):
            raw_ab, raw_ba = res[2 * i].texts[0], res[2 * i + 1].texts[0]
            v1, v2 = parse_choice(raw_ab, "AB"), parse_choice(raw_ba, "AB")
            meta = {"orders": [raw_ab, raw_ba]}
            if v1 is None or v2 is None:
                out.append(Verdict(None, None, raw_ab, parsed=False, meta=meta))
                continue
            w1 = "a" if v1 == "A" else "b"
            w2 = "b" if v2 == "A" else "a"  # in the swapped order, "A" names response b
            if w1 == w2:
                out.append(Verdict(w1, 1.0 if w1 == "a" else 0.0, raw_ab, meta=meta))
            else:
                out.append(Verdict("tie", 0.5, raw_ab, flipped=True, meta=meta))
        return out
