"""Preference pairs in TRL's conversational vocabulary: Anthropic HH-RLHF transcripts, and
verifiable pairs the toolkit makes from its own samples.

Rows: ``prompt`` (the conversation up to the last assistant turn, a list of messages),
``chosen`` and ``rejected`` (each one assistant message), optional ``margin``, and ``meta``.
``RewardTrainer`` and ``DPOTrainer`` read them as they are.

**HH-RLHF** (Bai et al. 2022, arXiv 2204.05862): each row has ``chosen`` and ``rejected``
transcripts of ``\\n\\nHuman: ...\\n\\nAssistant: ...`` turns that share everything but the last
assistant turn. A pair whose two transcripts differ before their last assistant turn is not
a comparison of two responses to one context: it is counted and left out, never silently
mixed in. Train/test splits go **by the first human turn** (:func:`split_by_prompt`): HH's
prompts repeat across rows, and a row-level split would put the same context on both sides.

**Verifiable pairs** (:func:`verifiable_pairs`): from a QA item and the policy's samples,
chosen = a sample that contains a gold answer, rejected = a wrong one (neither an idk answer);
for a question no sample answers correctly, chosen = the idk response and rejected = a wrong
sample, the Alignment-for-Honesty label. With ``known_over_idk``, a known question also gives a
pair chosen = a correct sample, rejected = the idk response (label ``correct>idk``), so a
preference model learns the whole order correct > idk > wrong rather than only "not wrong". Each
carries its gold label, so a preference model or a policy optimised against one can be checked
exactly, without a human.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any, Sequence

from selfalign.data.formats import QAItem
from selfalign.data.io import DataError, iter_jsonl
from selfalign.judges.correctness import contains_answer
from selfalign.judges.idk import IDK_RESPONSE, is_idk

_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_transcript(text: str) -> list[dict[str, str]]:
    """HH's ``\\n\\nHuman: ...\\n\\nAssistant: ...`` transcript as chat messages.

    >>> parse_transcript("\\n\\nHuman: Hi\\n\\nAssistant: Hello!\\n\\nHuman: Bye\\n\\nAssistant: See you.")
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'}, {'role': 'user', 'content': 'Bye'}, {'role': 'assistant', 'content': 'See you.'}]
    """
    parts = _TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError("not a transcript of '\\n\\nHuman: ' / '\\n\\nAssistant: ' turns")
    msgs = []
    for who, content in zip(parts[1::2], parts[2::2]):
        msgs.append({"role": "user" if who == "Human" else "assistant", "content": content.strip()})
    return msgs


def load_hh(path: str | Path, limit: int = 0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """HH-RLHF rows (JSONL or JSONL.gz) as TRL preference rows, and counts of what was left out.

    A row without ``chosen``/``rejected`` strings, or whose transcript does not parse, is an
    error naming the file, line and field; a pair whose transcripts differ before the last
    assistant turn, or whose responses are identical, is counted and skipped.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    out: list[dict[str, Any]] = []
    counts = {"rows": 0, "different_context": 0, "identical_responses": 0}
    for n, row in iter_jsonl(path):
        counts["rows"] += 1
        convs = {}
        for field in ("chosen", "rejected"):
            if not isinstance(row.get(field), str):
                raise DataError(f"{path}:{n}: field '{field}' missing or not a string")
            try:
                convs[field] = parse_transcript(row[field])
            except ValueError as e:
                raise DataError(f"{path}:{n}: field '{field}': {e}") from None
            if convs[field][-1]["role"] != "assistant":
                raise DataError(f"{path}:{n}: field '{field}': the transcript does not end with an assistant turn")
        c, r = convs["chosen"], convs["rejected"]
        if c[:-1] != r[:-1]:
            counts["different_context"] += 1
            continue
        if c[-1]["content"] == r[-1]["content"]:
            counts["identical_responses"] += 1
            continue
        first = next((m["content"] for m in c if m["role"] == "user"), "")
        out.append({"prompt": c[:-1], "chosen": [c[-1]], "rejected": [r[-1]],
                    "meta": {"source": f"{path.name}:{n}", "first_human": first}})
        if limit and len(out) >= limit:
            break
    counts["pairs"] = len(out)
    return out, counts


def prompt_key(row: dict[str, Any]) -> str:
    """What a split groups by: the first user turn (or meta.first_human)."""
    meta = row.get("meta") or {}
    if meta.get("first_human"):
        return str(meta["first_human"])
    prompt = row["prompt"]
    if isinstance(prompt, str):
        return prompt
    return next((m["content"] for m in prompt if m["role"] == "user"), json.dumps(prompt))


def split_by_prompt(rows: Sequence[dict[str, Any]], test_fraction: float = 0.2, seed: int = 0
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train/test by a hash of the first human turn: every pair with the same opening lands on
    the same side, whatever the row order.

    >>> rows = [{"prompt": [{"role": "user", "content": f"q{i % 5}"}]} for i in range(40)]
    >>> tr, te = split_by_prompt(rows, 0.4)
    >>> {prompt_key(r) for r in tr} & {prompt_key(r) for r in te}
    set()
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for r in rows:
        h = int(hashlib.sha256(f"{seed}|{prompt_key(r)}".encode()).hexdigest()[:8], 16) / 16**8
        (test if h < test_fraction else train).append(r)
    return train, test


def halves_by_prompt(rows: Sequence[dict[str, Any]], seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two disjoint halves by prompt (HH §4.2's split-half preference models)."""
    return split_by_prompt(rows, 0.5, seed + 1)


def verifiable_pairs(items: Sequence[QAItem], samples: Sequence[Sequence[str]], prompts: Sequence[Any],
                     per_question: int = 1, seed: int = 0, known_over_idk: bool = False) -> list[dict[str, Any]]:
    """Pairs with a gold label from each question's samples (see the module docstring).

    ``prompts[i]`` is the chat prompt the samples answered (a message tuple or list).
    """
    rng = random.Random(seed)
    out = []
    for item, texts, prompt in zip(items, samples, prompts):
        texts = [t.strip() for t in texts if t.strip()]
        right = sorted({t for t in texts if contains_answer(t, item.answers)})
        wrong = sorted({t for t in texts if not contains_answer(t, item.answers) and not is_idk(t, item.question)})
        if known_over_idk and right:
            out.append({"prompt": [m.to_dict() if hasattr(m, "to_dict") else dict(m) for m in prompt],
                        "chosen": [{"role": "assistant", "content": rng.choice(right)}],
                        "rejected": [{"role": "assistant", "content": IDK_RESPONSE}],
                        "meta": {"id": item.id, "first_human": item.question, "known": True, "label": "correct>idk"}})
        if not wrong:
            continue
        pmsgs = [m.to_dict() if hasattr(m, "to_dict") else dict(m) for m in prompt]
        known = bool(right)
        for _ in range(per_question):
            chosen = rng.choice(right) if known else IDK_RESPONSE
            rejected = rng.choice(wrong)
            out.append({"prompt": pmsgs, "chosen": [{"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "assistant", "content": rejected}],
                        "meta": {"id": item.id, "first_human": item.question, "known": known,
                                 "label": "correct>wrong" if known else "idk>wrong"}})
    return out
