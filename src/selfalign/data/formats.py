"""Loaders for real QA sets in their original formats -> :class:`QAItem`.

* ``bundled``: this project's knowledge-boundary set (``data/bundled/knowledge_qa.jsonl``);
  ``bundled:NAME`` is any other bundled file, e.g. ``bundled:ood_unanswerable.jsonl`` (the
  out-of-distribution sets of ``data/bundled/build_ood_qa.py``)
* ``triviaqa``: the original release JSON (``Data[].Question``, ``Data[].Answer.{Value,
  Aliases, NormalizedAliases}``) or the Hugging Face export as JSONL/JSON rows
  (``question``, ``answer.{value, aliases, normalized_aliases}``); a ``.json`` file that holds
  JSON Lines (what ``datasets``' ``to_json`` writes) is read as JSONL
* ``nonambigqa``: ``question``, ``answers[]``, ``gold_answer`` (as Alignment for Honesty ships it)
* ``puqa``: ``question``, ``authors[]`` (every question is unanswerable for the model)
* ``pkqa``: ``question``, ``answer`` (every question is expected to be known)
* ``mmlu``: ``question``, ``choices[4]``, ``answer`` (index 0-3 or letter A-D); the question
  is rendered with its lettered choices and the gold is the text of the right choice
* ``qa``: any JSONL with ``question`` and ``answers[]`` (or ``answer``); ``answers: []`` (or
  ``answerable: false``) marks an unanswerable question; other columns go to ``meta``

``format="auto"`` guesses from the first row; a row of the wrong shape raises
:class:`~selfalign.data.io.DataError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from selfalign.data.io import DataError, read_jsonl

FORMATS = ("bundled", "triviaqa", "nonambigqa", "puqa", "pkqa", "mmlu", "qa")


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answers: tuple[str, ...]  # gold first, then aliases; empty for unanswerable questions
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def bundled_path(name: str = "knowledge_qa.jsonl") -> Path:
    return Path(str(resources.files("selfalign.data.bundled").joinpath(name)))


def resolve_path(path: str | Path) -> Path:
    """``bundled`` -> the knowledge-boundary set, ``bundled:NAME`` -> that bundled file, else the path."""
    text = str(path)
    if text == "bundled":
        return bundled_path()
    if text.startswith("bundled:"):
        return bundled_path(text.removeprefix("bundled:"))
    return Path(path)


def _need(row: dict, key: str, where: str, kind: type | tuple = str) -> Any:
    if key not in row:
        raise DataError(f"{where}: missing field '{key}' (columns found: {', '.join(row) or 'none'})")
    val = row[key]
    if not isinstance(val, kind):
        raise DataError(f"{where}: field '{key}' should be {getattr(kind, '__name__', kind)}, got {type(val).__name__}")
    return val


def _triviaqa(row: dict, where: str, i: int) -> QAItem:
    if "Question" in row:  # original release
        ans = _need(row, "Answer", where, dict)
        q = _need(row, "Question", where)
        answers = [ans.get("Value", "")] + list(ans.get("Aliases", [])) + list(ans.get("NormalizedAliases", []))
        qid = row.get("QuestionId", f"triviaqa-{i}")
    else:
        ans = _need(row, "answer", where, dict)
        q = _need(row, "question", where)
        answers = [ans.get("value", "")] + list(ans.get("aliases", [])) + list(ans.get("normalized_aliases", []))
        qid = row.get("question_id", f"triviaqa-{i}")
    answers = [a for a in dict.fromkeys(answers) if a]
    if not answers:
        raise DataError(f"{where}: field 'answer' has no value or aliases")
    return QAItem(str(qid), q, tuple(answers))


def _nonambig(row: dict, where: str, i: int) -> QAItem:
    q = _need(row, "question", where)
    answers = list(_need(row, "answers", where, list))
    gold = row.get("gold_answer")
    answers = [a for a in dict.fromkeys(([gold] if gold else []) + answers) if a]
    return QAItem(str(row.get("question_id", f"nonambigqa-{i}")), q, tuple(answers))


def _puqa(row: dict, where: str, i: int) -> QAItem:
    q = _need(row, "question", where)
    return QAItem(f"puqa-{i}", q, (), {"title": row.get("title"), "authors": row.get("authors")})


def _pkqa(row: dict, where: str, i: int) -> QAItem:
    q = _need(row, "question", where)
    a = _need(row, "answer", where)
    a = a[len("Answer:"):].strip() if a.startswith("Answer:") else a
    return QAItem(f"pkqa-{i}", q, (a,), {"topic": row.get("topic")})


def _mmlu(row: dict, where: str, i: int) -> QAItem:
    q = _need(row, "question", where)
    choices = _need(row, "choices", where, list)
    if len(choices) != 4:
        raise DataError(f"{where}: field 'choices' should have 4 entries, got {len(choices)}")
    ans = _need(row, "answer", where, (int, str))
    idx = "ABCD".index(ans.strip().upper()) if isinstance(ans, str) and ans.strip().upper() in "ABCD" and ans.strip() else ans
    if not isinstance(idx, int) or not 0 <= idx < 4:
        raise DataError(f"{where}: field 'answer' should be 0-3 or A-D, got {ans!r}")
    text = q + "\n" + "\n".join(f"{'ABCD'[j]}. {c}" for j, c in enumerate(choices))
    return QAItem(str(row.get("id", f"mmlu-{i}")), text, (str(choices[idx]),), {"letter": "ABCD"[idx], "subject": row.get("subject")})


def _qa(row: dict, where: str, i: int) -> QAItem:
    q = _need(row, "question", where)
    if "answers" in row:
        answers = _need(row, "answers", where, list)
    elif row.get("answerable") is False:
        answers = []
    else:
        answers = [_need(row, "answer", where)]
    answers = [str(a) for a in answers if str(a).strip()]
    if row.get("answerable") is False and answers:
        raise DataError(f"{where}: 'answerable' is false but 'answers' has {answers[:2]}")
    meta = {k: v for k, v in row.items() if k not in ("question", "answers", "answer", "id")}
    return QAItem(str(row.get("id", f"qa-{i}")), q, tuple(answers), meta)


_PARSERS: dict[str, Callable[[dict, str, int], QAItem]] = {
    "bundled": _qa, "triviaqa": _triviaqa, "nonambigqa": _nonambig, "puqa": _puqa, "pkqa": _pkqa, "mmlu": _mmlu, "qa": _qa,
}


def guess_format(row: dict) -> str:
    if "Question" in row or ("question" in row and isinstance(row.get("answer"), dict)):
        return "triviaqa"
    if "gold_answer" in row:
        return "nonambigqa"
    if "authors" in row and "title" in row:
        return "puqa"
    if "choices" in row:
        return "mmlu"
    if "topic" in row and "answer" in row:
        return "pkqa"
    if "question" in row and ("answers" in row or "answer" in row):
        return "qa"
    raise DataError(f"cannot tell the format from the columns {', '.join(row)}; pass one of: {', '.join(FORMATS)}")


def _raw_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs from JSONL, or from a JSON file (list, or TriviaQA's {"Data": [...]})."""
    if path.suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            first = text.lstrip()[:1]
            if first == "{" and e.msg == "Extra data":  # JSON Lines under a .json name
                return _jsonl_rows(path)
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        items = data.get("Data", data.get("data")) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a list of rows or an object with 'Data'")
        return [(i + 1, r) for i, r in enumerate(items)]  # item number stands in for the line
    return _jsonl_rows(path)


def _jsonl_rows(path: Path) -> list[tuple[int, dict]]:
    rows = read_jsonl(path)  # raises with file:line on broken JSON; blank lines are skipped
    with path.open(encoding="utf-8") as f:
        lines = [n for n, line in enumerate(f, 1) if line.strip()]
    return list(zip(lines, rows))


def load_qa(path: str | Path = "bundled", format: str = "auto", split: str | None = None) -> list[QAItem]:
    """Load QA items. ``path="bundled"`` is the bundled set; ``split`` filters rows with a ``split`` column."""
    if str(path) == "bundled":
        format = "bundled"
    path = resolve_path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    rows = _raw_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    if format == "auto":
        format = guess_format(rows[0][1])
    if format not in _PARSERS:
        raise DataError(f"unknown format '{format}'; known: {', '.join(FORMATS)}")
    items = []
    for i, (line, row) in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line}: expected an object")
        if split is not None and row.get("split") not in (None, split):
            continue
        items.append(_PARSERS[format](row, f"{path}:{line}", i))
    return items
