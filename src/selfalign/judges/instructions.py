"""A small instruction-following check: instructions whose every constraint a program can verify.

After IFEval (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models",
arXiv 2311.07911): each item is a request plus one or more *verifiable* constraints ("answer in
lowercase", "use exactly 3 bullet points", "end with the phrase ..."); a response follows the
item when it meets every constraint (IFEval's strict prompt-level accuracy). The items are the
project's own (``data/bundled/instructions.jsonl``, 40 items), written to IFEval's constraint
kinds, none of IFEval's prompts taken or paraphrased.

Deviations from IFEval: a dozen constraint kinds of its 25 (:data:`CHECKS`); only the strict
reading (IFEval also reports a "loose" one that strips markdown and first/last lines); no
language-detection constraint. It is a check of whether a stage costs basic instruction
following, not a benchmark.

A check never fails to parse: an empty response simply fails its constraints (the response was
scored, and it did not follow the instruction).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from selfalign.data.formats import resolve_path
from selfalign.data.io import DataError


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.strip().splitlines() if ln.strip()]


def _ends(text: str, phrase: Any) -> bool:
    return text.strip().rstrip(".!").lower().endswith(str(phrase).strip().rstrip(".!").lower())


def _starts(text: str, phrase: Any) -> bool:
    return text.strip().lstrip("\"'*#").lower().startswith(str(phrase).lower())


def _bullets(text: str) -> int:
    return sum(bool(re.match(r"^[-*•]\s+\S", ln)) for ln in _lines(text))


def _numbered(text: str) -> int:
    return sum(bool(re.match(r"^\d+[.)]\s+\S", ln)) for ln in _lines(text))


def _is_json(text: str) -> bool:
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.S)
    if fenced:
        body = fenced.group(1)
    try:
        return isinstance(json.loads(body), (dict, list))
    except ValueError:
        return False


#: kind -> (does the response meet it, given the constraint's value); value None where the kind takes none
CHECKS: dict[str, Callable[[str, Any], bool]] = {
    "lowercase": lambda t, _: bool(t.strip()) and t == t.lower(),
    "uppercase": lambda t, _: bool(re.search(r"[A-Za-z]", t)) and t == t.upper(),
    "max_words": lambda t, n: 0 < len(_words(t)) <= int(n),
    "min_words": lambda t, n: len(_words(t)) >= int(n),
    "keyword": lambda t, w: str(w).lower() in t.lower(),
    "forbidden": lambda t, w: bool(t.strip()) and re.search(rf"\b{re.escape(str(w))}\b", t, re.I) is None,
    "starts_with": _starts,
    "ends_with": lambda t, p: bool(t.strip()) and _ends(t, p),
    "bullets": lambda t, n: _bullets(t) == int(n),
    "numbered": lambda t, n: _numbered(t) == int(n),
    "no_commas": lambda t, _: bool(t.strip()) and "," not in t,
    "quoted": lambda t, _: len(t.strip()) >= 2 and t.strip()[0] in "\"“" and t.strip()[-1] in "\"”",
    "json": lambda t, _: _is_json(t),
}
#: kinds whose value must be a positive integer
_COUNTED = ("max_words", "min_words", "bullets", "numbered")
#: kinds whose value must be a non-empty string
_TEXT = ("keyword", "forbidden", "starts_with", "ends_with")


@dataclass(frozen=True)
class Constraint:
    kind: str
    value: Any = None

    def met(self, response: str) -> bool:
        return CHECKS[self.kind](response, self.value)


@dataclass(frozen=True)
class InstructionItem:
    id: str
    prompt: str
    constraints: tuple[Constraint, ...]

    def followed(self, response: str) -> bool:
        """Strict prompt-level: every constraint met.

        >>> it = InstructionItem("x", "...", (Constraint("lowercase"), Constraint("max_words", 3)))
        >>> it.followed("paris, france"), it.followed("Paris"), it.followed("a b c d")
        (True, False, False)
        """
        return all(c.met(response) for c in self.constraints)


def _constraint(raw: Any, where: str) -> Constraint:
    if not isinstance(raw, dict) or "kind" not in raw:
        raise DataError(f"{where}: each constraint is an object with a 'kind'")
    kind, value = raw["kind"], raw.get("value")
    if kind not in CHECKS:
        raise DataError(f"{where}: unknown constraint kind {kind!r} (known: {', '.join(CHECKS)})")
    if kind in _COUNTED and not (isinstance(value, int) and value > 0):
        raise DataError(f"{where}: constraint {kind} needs a positive integer 'value', got {value!r}")
    if kind in _TEXT and not (isinstance(value, str) and value.strip()):
        raise DataError(f"{where}: constraint {kind} needs a non-empty string 'value', got {value!r}")
    return Constraint(kind, value)


def load_instructions(path: str | Path = "bundled:instructions.jsonl") -> list[InstructionItem]:
    """The items of a JSONL file (``id``, ``prompt``, ``constraints``: [{kind, value}]); a bad line
    is an error naming the file, the line and the field."""
    p = resolve_path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found (instruction-following items: id, prompt, constraints)")
    out: list[InstructionItem] = []
    seen: set[str] = set()
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DataError(f"{p}:{i}: not JSON ({e})") from None
        for key in ("id", "prompt", "constraints"):
            if not row.get(key):
                raise DataError(f"{p}:{i}: field {key!r} is missing or empty")
        if row["id"] in seen:
            raise DataError(f"{p}:{i}: field 'id' {row['id']!r} repeats an earlier line")
        seen.add(row["id"])
        if not isinstance(row["constraints"], list):
            raise DataError(f"{p}:{i}: field 'constraints' must be a list")
        cons = tuple(_constraint(c, f"{p}:{i}: field 'constraints'") for c in row["constraints"])
        out.append(InstructionItem(str(row["id"]), str(row["prompt"]), cons))
    if not out:
        raise DataError(f"{p}: no items")
    return out
