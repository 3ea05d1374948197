"""Seed tasks and synthesis bookkeeping shared by the synthesis stages.

Seed tasks use Self-Instruct's ``seed_tasks.jsonl`` format: ``instruction``, ``instances``
(a list of ``{input, output}``), ``is_classification``; ``id`` and ``name`` optional.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from selfalign.data.io import DataError, read_jsonl


@dataclass(frozen=True)
class Task:
    instruction: str
    instances: tuple[tuple[str, str], ...] = ()
    is_classification: bool = False
    id: str = ""

    def first_output(self) -> str:
        return self.instances[0][1] if self.instances else ""


def bundled_seed_path() -> Path:
    return Path(str(resources.files("selfalign.data.bundled").joinpath("seed_tasks.jsonl")))


def load_seed_tasks(path: str | Path = "bundled") -> list[Task]:
    path = bundled_seed_path() if str(path) == "bundled" else Path(path)
    rows = read_jsonl(path, required=("instruction",))
    tasks = []
    for n, row in enumerate(rows, 1):
        inst = row["instruction"]
        if not isinstance(inst, str) or not inst.strip():
            raise DataError(f"{path}: row {n}: field 'instruction' must be a non-empty string")
        instances = row.get("instances", [])
        if not isinstance(instances, list) or any(not isinstance(i, dict) or "output" not in i for i in instances):
            raise DataError(f"{path}: row {n}: field 'instances' must be a list of {{input, output}} objects")
        tasks.append(Task(inst.strip(), tuple((str(i.get("input", "")), str(i["output"])) for i in instances),
                          bool(row.get("is_classification", False)), str(row.get("id", f"seed_{n}"))))
    return tasks


def task_prompt(instruction: str, input: str = "") -> str:
    """How an (instruction, input) pair becomes one user turn."""
    return f"{instruction}\n\n{input}".strip() if input.strip() else instruction.strip()


@dataclass
class SynthStats:
    """Counts of kept and filtered items by reason, plus what the report plots."""

    kept: int = 0
    filtered: Counter = field(default_factory=Counter)
    similarities: list[float] = field(default_factory=list)  # max ROUGE-L against the pool, per candidate
    instances_filtered: Counter = field(default_factory=Counter)  # Self-Instruct's instance filters, by reason
    classification_unscored: int = 0
    judge_asked: int = 0  # Evol-Instruct's equality judge: questions asked and answers that did not parse
    judge_unscored: int = 0  # Self-Instruct: "is it classification?" answers that were not yes/no

    def drop(self, reason: str) -> None:
        self.filtered[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        total = self.kept + sum(self.filtered.values())
        return {"candidates": total, "kept": self.kept, "filtered": dict(self.filtered),
                "filtered_share": {k: v / total for k, v in self.filtered.items()} if total else {},
                "instances_filtered": dict(self.instances_filtered),
                "unscored": {"classification": self.classification_unscored, "equality judge": self.judge_unscored},
                "judge_asked": self.judge_asked}


def row(prompt: str, completion: str, method: str, ok: bool = True, **meta: Any) -> dict[str, Any]:
    """A TRL conversational prompt-completion row with provenance."""
    return {"prompt": [{"role": "user", "content": prompt}],
            "completion": [{"role": "assistant", "content": completion}],
            "meta": {"method": method, "ok": ok, **meta}}
