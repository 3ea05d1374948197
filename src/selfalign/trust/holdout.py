"""Which trust items a ``trust to-data`` split holds out, shared by the studies (which evaluate
on held-out keys only) and :mod:`selfalign.trust.to_data` (which writes the split).

An item's **key** is what must never be trained on when the item is evaluated: the safety
keyword (every question written from it), the misuse request's kind and fill, the fairness
question's id.

>>> split_key("safety", {"id": "violence:arson:illegal", "input": {"keyword": "arson"}})
'arson'
>>> is_held_out("arson", 0.0), is_held_out("arson", 1.0)
(False, True)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from selfalign.data.io import read_json_field

#: the studies whose failures become data, and so whose items have split keys
KEYED = ("safety", "misuse", "fairness")


def split_key(study: str, row: dict[str, Any]) -> str:
    """The key of one item (a rows.jsonl line, or ``{"id", "input"}``)."""
    inp = row.get("input") or {}
    if study == "safety":
        return str(inp["keyword"])
    if study == "misuse":
        return f"{inp['kind']}:{inp['fill']}"
    return str(row["id"])


def is_held_out(key: str, share: float, seed: int = 0) -> bool:
    """Deterministic, order-independent split of a key (same key, same side, in every run)."""
    h = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < share


def load_holdout(path: str | Path) -> dict[str, set[str]]:
    """study -> held-out keys, from a to-data ``split.json``."""
    data = read_json_field(path, "held_out", "a trust to-data split.json (a 'held_out' object)")
    return {study: set(keys) for study, keys in data.items()}
