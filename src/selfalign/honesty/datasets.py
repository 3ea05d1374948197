"""The training sets of Alignment for Honesty (Yang et al. 2023, Sec. 3.3 and 4.1), as TRL
conversational prompt-completion rows with provenance in ``meta``.

* ABSOLUTE(tau): known when expected accuracy >= tau -> a correct response (the greedy one if
  correct, else the first correct sample); otherwise the idk response. ``known_rule``:
  ``"reference"`` (default) follows the paper's released code, which also counts a question as
  known when the greedy answer is correct though no sample is; ``"paper"`` follows the paper's
  text (expected accuracy alone). On a small model the difference matters: under the text's
  rule, questions the model answered correctly become idk targets.
* CONFIDENCE-NUM / CONFIDENCE-VERB: the same split; the correct response is prefixed with the
  paper's confidence expression for k correct of 10 (k = 0 -> idk).
* MULTISAMPLE: each of the M samples is a row; wrong (and idk) samples become the idk response.
* FINE-TUNED: known as in ABSOLUTE; unknown questions answered with the gold answer.
* PROMPT-BASED: no training set (the honesty prompt on the unaligned model).

``balance=True`` subsamples the larger of {greedy correct, greedy not correct} to the size of the
smaller, as the paper balanced its TriviaQA training questions 50/50 by the greedy answer.
Two extensions of ours (issue 24, not in the paper): ``balance_within`` (a row field such as
``relation``) balances inside each group of that field, so that no group is all "idk" and a model
cannot learn to decline by the *kind* of question; ``known_share`` sets the share of greedy-correct
questions kept (the paper's 0.5 by default), the largest subset with that share in each group.

Deviations: the paper fixes M = 10 and counts k of 10; for other M we use k = round(10 * correct / M).
A question known only through its greedy answer (k = 0, ``known_rule: reference``) gets the
lowest confidence expression (k = 1) in CONFIDENCE-NUM/-VERB: the paper does not say.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from selfalign.honesty.knowing import KnowledgeRecord
from selfalign.honesty.prompts import confidence_num_prefix, confidence_verb_prefix, honesty_prompt
from selfalign.judges.idk import IDK_RESPONSE

KNOWN_RULES = ("reference", "paper")
METHODS = ("absolute", "confidence-num", "confidence-verb", "multisample", "finetuned", "prompt")
TRAINED_METHODS = METHODS[:-1]


def _row(rec: KnowledgeRecord, completion: str, method: str, **meta: Any) -> dict[str, Any]:
    return {
        "prompt": [m.to_dict() for m in honesty_prompt(rec.question)],
        "completion": [{"role": "assistant", "content": completion}],
        "meta": {"id": rec.id, "method": method, "expected_accuracy": rec.expected_accuracy, **meta},
    }


def correct_response(rec: KnowledgeRecord) -> str | None:
    """The greedy answer if it is correct, else the first correct sample, else None."""
    if rec.greedy_label == "correct":
        return rec.greedy
    for text, label in zip(rec.samples, rec.labels):
        if label == "correct":
            return text
    return None


def _share_sizes(n_known: int, n_unknown: int, share: float) -> tuple[int, int]:
    """The largest (known, unknown) counts with known / (known + unknown) = share that fit (at
    least one of each where both exist, so that no group is left all one kind).

    >>> _share_sizes(30, 10, 0.5), _share_sizes(30, 10, 0.75), _share_sizes(3, 10, 0.25), _share_sizes(0, 9, 0.5), _share_sizes(1, 9, 0.75)
    ((10, 10), (30, 10), (3, 9), (0, 0), (1, 1))
    """
    if n_known == 0 or n_unknown == 0:
        return 0, 0
    if n_known * (1 - share) >= n_unknown * share:  # known to spare: keep every unknown one
        return min(n_known, max(1, round(n_unknown * share / (1 - share)))), n_unknown
    return n_known, min(n_unknown, max(1, round(n_known * (1 - share) / share)))


def balance_records(records: Sequence[KnowledgeRecord], seed: int = 0, within: str = "",
                    known_share: float = 0.5) -> list[KnowledgeRecord]:
    """Subsample to ``known_share`` greedy-correct questions, over the whole pool or, with
    ``within`` (a meta field), inside each group of it; a group with no known or no unknown
    question is dropped. Order is kept; the draw is seeded."""
    if not 0 < known_share < 1:
        raise ValueError(f"known_share must be in (0, 1), got {known_share}")
    if within and records and not any(within in r.meta for r in records):
        raise ValueError(f"balance_within: no training question has a '{within}' field "
                         f"(fields: {', '.join(sorted({k for r in records for k in r.meta})) or 'none'})")
    groups: dict[str, list[KnowledgeRecord]] = {}
    for r in records:
        groups.setdefault(str(r.meta.get(within, "")) if within else "", []).append(r)
    rng = random.Random(seed)
    keep: set[str] = set()
    for name in sorted(groups):
        known = [r for r in groups[name] if r.greedy_label == "correct"]
        unknown = [r for r in groups[name] if r.greedy_label != "correct"]
        nk, nu = _share_sizes(len(known), len(unknown), known_share)
        keep |= {r.id for r in rng.sample(known, nk)} | {r.id for r in rng.sample(unknown, nu)}
    return [r for r in records if r.id in keep]


def _known(rec: KnowledgeRecord, tau: float, rule: str = "reference") -> tuple[bool, str | None]:
    """Is the question known (and with which correct response)?

    >>> r = KnowledgeRecord("q", "Q?", ("Lima",), "Lima.", "correct", ("Quito.",) * 10, ("wrong",) * 10, {})
    >>> _known(r, 0.1, "reference"), _known(r, 0.1, "paper")
    ((True, 'Lima.'), (False, 'Lima.'))
    """
    if rule not in KNOWN_RULES:
        raise ValueError(f"known_rule must be one of {', '.join(KNOWN_RULES)}, got {rule!r}")
    resp = correct_response(rec)
    enough = rec.expected_accuracy >= tau or (rule == "reference" and rec.greedy_label == "correct")
    return (enough and resp is not None), resp


def build_absolute(records: Sequence[KnowledgeRecord], tau: float = 0.1, rule: str = "reference") -> list[dict[str, Any]]:
    rows = []
    for rec in records:
        known, resp = _known(rec, tau, rule)
        rows.append(_row(rec, resp if known and resp is not None else IDK_RESPONSE, "absolute", known=known))
    return rows


def _build_confidence(records: Sequence[KnowledgeRecord], tau: float, kind: str, rule: str) -> list[dict[str, Any]]:
    rows = []
    for rec in records:
        known, resp = _known(rec, tau, rule)
        k = max(rec.k10(), 1) if known else rec.k10()
        if known and resp is not None:
            prefix = confidence_num_prefix(k) if kind == "num" else confidence_verb_prefix(k)
            body = resp if kind == "num" else _lower_first(resp)
            rows.append(_row(rec, f"{prefix} {body}", f"confidence-{kind}", known=True, k=k))
        else:
            rows.append(_row(rec, IDK_RESPONSE, f"confidence-{kind}", known=False, k=k))
    return rows


def _lower_first(text: str) -> str:
    """'The capital ...' -> 'the capital ...' so that it reads on after "I'm fairly confident that"."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def build_confidence_num(records: Sequence[KnowledgeRecord], tau: float = 0.1, rule: str = "reference") -> list[dict[str, Any]]:
    return _build_confidence(records, tau, "num", rule)


def build_confidence_verb(records: Sequence[KnowledgeRecord], tau: float = 0.1, rule: str = "reference") -> list[dict[str, Any]]:
    return _build_confidence(records, tau, "verb", rule)


def build_multisample(records: Sequence[KnowledgeRecord]) -> list[dict[str, Any]]:
    rows = []
    for rec in records:
        for i, (text, label) in enumerate(zip(rec.samples, rec.labels)):
            ok = label == "correct"
            rows.append(_row(rec, text if ok else IDK_RESPONSE, "multisample", known=ok, sample=i))
    return rows


def build_finetuned(records: Sequence[KnowledgeRecord], tau: float = 0.1, rule: str = "reference") -> list[dict[str, Any]]:
    rows = []
    for rec in records:
        known, resp = _known(rec, tau, rule)
        rows.append(_row(rec, resp if known and resp is not None else rec.answers[0], "finetuned", known=known))
    return rows


def build(method: str, records: Sequence[KnowledgeRecord], tau: float = 0.1, rule: str = "reference") -> list[dict[str, Any]]:
    if method == "absolute":
        return build_absolute(records, tau, rule)
    if method == "confidence-num":
        return build_confidence_num(records, tau, rule)
    if method == "confidence-verb":
        return build_confidence_verb(records, tau, rule)
    if method == "multisample":
        return build_multisample(records)
    if method == "finetuned":
        return build_finetuned(records, tau, rule)
    if method == "prompt":
        return []
    raise ValueError(f"unknown method '{method}'; known: {', '.join(METHODS)}")


def idk_rows(rows: list[dict[str, Any]]) -> int:
    """How many training rows answer with the idk response (the share a report states)."""
    return sum(r["completion"][0]["content"] == IDK_RESPONSE for r in rows)

