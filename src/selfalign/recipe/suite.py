"""The evaluation suite run after every stage of a recipe (and on the base model): the same items
each time, answered greedily through the store, so a repeat costs nothing.

Sets (honesty's own evaluation code: :class:`selfalign.honesty.task.HonestyQA` and its judge):

* ``id``: the bundled knowledge set's test split in the honesty prompt (in distribution);
* ``ood-unanswerable`` / ``ood-answerable``: the bundled rule-made out-of-distribution sets'
  test splits in the honesty prompt;
* ``qa``: the same test questions in the plain prompt (bundled-QA accuracy: does a stage cost
  knowledge?).

Measures, each a share of items (in percent) with a per-item outcome, so every stage is compared
with the one before it and with the base model **paired** on the same items (bootstrap interval
of the difference, McNemar's exact p): ``id_accuracy``, ``id_idk``, ``ood_unanswerable_idk``
(prudence out of distribution), ``ood_answerable_accuracy``, ``ood_answerable_idk`` (declining what
is answerable), ``qa_accuracy``. The paper's honesty scores against the base model
(:func:`selfalign.honesty.metrics.scores_with_ci`: prudence, over-conservativeness, honesty, with
intervals) are given for every stage on ``id``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from selfalign.data.formats import QAItem, load_qa
from selfalign.data.io import DataError
from selfalign.evals.runner import run_task
from selfalign.evals.stats import mcnemar, paired_bootstrap
from selfalign.honesty import metrics
from selfalign.honesty.judging import Judge
from selfalign.honesty.prompts import honesty_prompt, plain_prompt
from selfalign.honesty.task import HonestyQA, loosely_correct
from selfalign.models.base import StageModel

#: measure -> (set, outcome): outcome "accuracy" = loosely correct, "idk" = the judge said idk
MEASURES = {
    "id_accuracy": ("id", "accuracy"),
    "id_idk": ("id", "idk"),
    "ood_unanswerable_idk": ("ood-unanswerable", "idk"),
    "ood_answerable_accuracy": ("ood-answerable", "accuracy"),
    "ood_answerable_idk": ("ood-answerable", "idk"),
    "qa_accuracy": ("qa", "accuracy"),
}
#: whether more is better, for the report's colours (None: neither)
HIGHER_IS_BETTER: dict[str, bool | None] = {"id_accuracy": True, "id_idk": None, "ood_unanswerable_idk": True,
                                            "ood_answerable_accuracy": True, "ood_answerable_idk": False,
                                            "qa_accuracy": True}


@dataclass
class SuiteConfig:
    data: str = "bundled"  # the in-distribution QA set (its 'test' split)
    ood_unanswerable: str = "bundled:ood_unanswerable.jsonl"
    ood_answerable: str = "bundled:ood_answerable.jsonl"
    n_id: int = 40
    n_ood: int = 40  # per out-of-distribution set
    max_tokens: int = 48
    bootstrap: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_id", "n_ood", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bootstrap < 10:
            raise ValueError(f"bootstrap must be >= 10 (resamples of each interval), got {self.bootstrap}")


def _pick(items: list[QAItem], n: int, seed: int, name: str) -> list[QAItem]:
    """A seeded shuffle, then the first n: a larger n keeps a smaller one's items."""
    items = sorted(items, key=lambda it: it.id)
    random.Random(int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)).shuffle(items)
    return items[:n]


def suite_items(cfg: SuiteConfig) -> dict[str, list[QAItem]]:
    """Every set's questions (the same for every stage); a missing file or split is an error here,
    before any model call."""
    out = {}
    for name, path, n in (("id", cfg.data, cfg.n_id), ("ood-unanswerable", cfg.ood_unanswerable, cfg.n_ood),
                          ("ood-answerable", cfg.ood_answerable, cfg.n_ood)):
        items = load_qa(path, "auto", "test")
        if not items:
            raise DataError(f"eval: {path}: no rows in its 'test' split")
        out[name] = _pick(items, n, cfg.seed, name)
    out["qa"] = out["id"]
    return out


def run_suite(cfg: SuiteConfig, model: StageModel) -> dict[str, Any]:
    """Greedy answers of ``model`` on every set; per set the item ids, labels and correctness."""
    judge = Judge()
    sets: dict[str, Any] = {}
    for name, items in suite_items(cfg).items():
        frame = plain_prompt if name == "qa" else honesty_prompt
        task = HonestyQA(f"recipe-{name}", [(it.id, it.question, tuple(it.answers)) for it in items], frame, judge,
                         cfg.max_tokens)
        res = run_task(task, model, seed=cfg.seed, resamples=0)
        sets[name] = {"ids": [it.id for it in items], "labels": [v.label or "wrong" for v in res.verdicts],
                      "loose": [loosely_correct(v) for v in res.verdicts], "responses": res.responses}
    return {"model": model.model_id, "sets": sets}


def outcomes(suite: dict[str, Any], measure: str) -> list[bool]:
    name, kind = MEASURES[measure]
    s = suite["sets"][name]
    return list(s["loose"]) if kind == "accuracy" else [lab == "idk" for lab in s["labels"]]


def _paired(a: list[bool], b: list[bool], resamples: int, seed: int) -> dict[str, float]:
    d = paired_bootstrap([float(x) for x in a], [float(x) for x in b], resamples=resamples, seed=seed)
    return {"diff": 100 * d.diff, "lo": 100 * d.lo, "hi": 100 * d.hi, "mcnemar_p": mcnemar(a, b).p_value}


def measure_matrix(suites: list[dict[str, Any]], resamples: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """One row per evaluated model (the base first, then each stage): every measure's value and its
    paired difference against the row before and against the base, and the honesty scores of the
    ``id`` answers against the base model's.

    >>> s = lambda labels: {"sets": {k: {"labels": labels, "loose": [x == "correct" for x in labels]}
    ...                              for k in ("id", "qa", "ood-unanswerable", "ood-answerable")}}
    >>> m = measure_matrix([s(["correct", "wrong"]), s(["correct", "idk"])], resamples=20)
    >>> m[1]["measures"]["id_idk"]["value"], m[1]["measures"]["id_idk"]["vs_prev"]["diff"]
    (50.0, 50.0)
    >>> m[1]["honesty_vs_base"]["prudence"]["value"]
    100.0
    """
    rows = []
    base_labels = suites[0]["sets"]["id"]["labels"]
    for i, suite in enumerate(suites):
        row: dict[str, Any] = {"measures": {}}
        for m in MEASURES:
            cur = outcomes(suite, m)
            entry: dict[str, Any] = {"value": 100 * sum(cur) / len(cur) if cur else float("nan"), "n": len(cur)}
            if i > 0:
                entry["vs_prev"] = _paired(outcomes(suites[i - 1], m), cur, resamples, seed)
                entry["vs_base"] = _paired(outcomes(suites[0], m), cur, resamples, seed)
            row["measures"][m] = entry
        ids = suite["sets"]["id"]
        row["honesty_vs_base"] = metrics.scores_with_ci(base_labels, ids["labels"], ids["loose"], resamples, seed)
        rows.append(row)
    return rows
