"""One verdict type for every judge, strict parsers, and the counts every report shows.

A judge's answer that cannot be parsed is **unscored**: ``Verdict.label is None`` and
``parsed`` is False. It is counted and reported, never folded into "wrong" (or any other
label) silently. A pairwise judge that asks in both orders marks a verdict that changed with
the order as ``flipped``.

>>> parse_choice("The answer is (B).", "ABC")
'B'
>>> parse_choice("A or B, hard to say", "AB") is None
True
>>> parse_yes_no("Yes, it has a flaw."), parse_yes_no("maybe") is None
('yes', True)
>>> parse_score("Reasoning: fine.\\nScore: 4", 1, 5), parse_score("Score: 9", 1, 5) is None
(4, True)
>>> tally([Verdict("yes"), Verdict(None, raw="??", parsed=False)])
{'n': 2, 'scored': 1, 'unscored': 1, 'unscored_share': 0.5}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass(frozen=True)
class Verdict:
    label: str | None  # None = unscored (the judge's answer did not parse)
    score: float | None = None
    raw: str = ""
    parsed: bool = True
    flipped: bool = False  # pairwise: the two orders disagreed
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "raw": self.raw, "parsed": self.parsed,
                "flipped": self.flipped, **({"meta": self.meta} if self.meta else {})}


def unscored(raw: str, **meta: Any) -> Verdict:
    return Verdict(None, None, raw, parsed=False, meta=dict(meta))


def tally(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """Counts for a report: how many verdicts, how many scored, unscored (and its share), and,
    when any verdict comes from a both-orders comparison, how many flipped with the order."""
    n = len(verdicts)
    bad = sum(not v.scored for v in verdicts)
    out: dict[str, Any] = {"n": n, "scored": n - bad, "unscored": bad, "unscored_share": bad / n if n else 0.0}
    if any("orders" in v.meta for v in verdicts):
        out["flipped"] = sum(v.flipped for v in verdicts)
    return out


# ------------------------------------------------------------------ strict parsers
def parse_choice(text: str, options: Sequence[str] = "ABC") -> str | None:
    """The one option letter the answer names (a bare letter, "(B)", "B)", "Answer: B"), or
    None when it names none or several different ones."""
    found = {m.group(1) for m in re.finditer(r"(?<![A-Za-z])\(?([A-Z])\)?(?![A-Za-z'])", text.strip())
             if m.group(1) in options}
    return found.pop() if len(found) == 1 else None


def parse_yes_no(text: str) -> str | None:
    """'yes' or 'no' when the answer starts with it (after an optional "Answer:"); else None.

    >>> parse_yes_no("No."), parse_yes_no("Answer: yes"), parse_yes_no("I cannot say yes or no") is None
    ('no', 'yes', True)
    """
    words = re.findall(r"[a-z]+", text.lower())
    if words[:1] == ["answer"]:
        words = words[1:]
    return words[0] if words and words[0] in ("yes", "no") else None


def parse_score(text: str, lo: int = 1, hi: int = 5) -> int | None:
    """An integer score in [lo, hi] from "Score: n" (the last one), else a reply that is only a
    number; None otherwise (including out-of-range numbers)."""
    found = re.findall(r"score\s*(?:of|is|[:=])?\s*(-?\d+)", text, re.I)
    if not found:
        m = re.fullmatch(r"\s*(-?\d+)\s*[.!]?\s*", text)
        found = [m.group(1)] if m else []
    if not found:
        return None
    value = int(found[-1])
    return value if lo <= value <= hi else None
