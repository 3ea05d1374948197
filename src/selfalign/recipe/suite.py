"""The evaluation suite run after every stage of a recipe (and on the base model): the same items
each time, answered greedily through the store, so a repeat costs nothing.

Sets (honesty's own evaluation code: :class:`selfalign.honesty.task.HonestyQA` and its judge):

* ``id``: the bundled knowledge set's test split in the honesty prompt (in distribution);
* ``ood-unanswerable`` / ``ood-answerable``: the bundled rule-made out-of-distribution sets'
  test splits in the honesty prompt;
* ``qa``: the same test questions in the plain prompt (bundled-QA accuracy: does a stage cost
  knowledge?);
* ``safe`` / ``unsafe``: prompts of the over-refusal set (:mod:`selfalign.trust.studies.xstest`:
  the bundled, project-written XSTest-style ``overrefusal.csv`` or an XSTest prompts CSV),
  stratified by type, judged by the three-class rule refusal judge
  (:func:`selfalign.judges.refusal.classify_refusal`): the safety number and the over-refusal
  number side by side, so a stage that buys safety by refusing everything shows it;
* ``if``: the instruction-following check (:mod:`selfalign.judges.instructions`, verifiable
  constraints after IFEval, strict prompt-level).

Measures, each a share of items (in percent) with a per-item outcome, so every stage is compared
with the one before it and with the base model **paired** on the same items (bootstrap interval
of the difference, McNemar's exact p): ``id_accuracy``, ``id_idk``, ``ood_unanswerable_idk``
(prudence out of distribution), ``ood_answerable_accuracy``, ``ood_answerable_idk`` (declining what
is answerable), ``qa_accuracy``, ``safe_compliance`` (full compliance on safe prompts),
``unsafe_refusal`` (full or partial refusal on unsafe prompts), ``if_followed``. An empty reply to
a safety prompt is *unscored* (the refusal judge cannot read it): it is counted, left out of the
value, and a paired difference uses the items both models' replies were scored on. The paper's honesty scores against the base model
(:func:`selfalign.honesty.metrics.scores_with_ci`: prudence, over-conservativeness, honesty, with
intervals) are given for every stage on ``id``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, TypeVar

from selfalign.data.formats import QAItem, bundled_path, load_qa
from selfalign.data.io import DataError
from selfalign.evals.runner import run_task
from selfalign.evals.stats import mcnemar, mean_ci, paired_bootstrap
from selfalign.honesty import metrics
from selfalign.honesty.judging import Judge
from selfalign.honesty.prompts import honesty_prompt, plain_prompt
from selfalign.honesty.task import HonestyQA, loosely_correct
from selfalign.judges.instructions import InstructionItem, load_instructions
from selfalign.judges.refusal import classify_refusal
from selfalign.judges.registry import FULL_COMPLIANCE, FULL_REFUSAL, PARTIAL_REFUSAL
from selfalign.models.base import StageModel
from selfalign.trust.studies.xstest import load_xstest, stratified
from selfalign.types import GenParams, GenRequest, user

T = TypeVar("T", QAItem, InstructionItem)

#: measure -> (set, outcome): outcome "accuracy" = loosely correct, "idk" = the judge said idk
MEASURES = {
    "id_accuracy": ("id", "accuracy"),
    "id_idk": ("id", "idk"),
    "ood_unanswerable_idk": ("ood-unanswerable", "idk"),
    "ood_answerable_accuracy": ("ood-answerable", "accuracy"),
    "ood_answerable_idk": ("ood-answerable", "idk"),
    "qa_accuracy": ("qa", "accuracy"),
    "safe_compliance": ("safe", "complied"),
    "unsafe_refusal": ("unsafe", "refused"),
    "if_followed": ("if", "followed"),
}
#: whether more is better, for the report's colours (None: neither)
HIGHER_IS_BETTER: dict[str, bool | None] = {"id_accuracy": True, "id_idk": None, "ood_unanswerable_idk": True,
                                            "ood_answerable_accuracy": True, "ood_answerable_idk": False,
                                            "qa_accuracy": True, "safe_compliance": True, "unsafe_refusal": True,
                                            "if_followed": True}


@dataclass
class SuiteConfig:
    data: str = "bundled"  # the in-distribution QA set (its 'test' split)
    ood_unanswerable: str = "bundled:ood_unanswerable.jsonl"
    ood_answerable: str = "bundled:ood_answerable.jsonl"
    n_id: int = 40
    n_ood: int = 40  # per out-of-distribution set
    max_tokens: int = 48
    overrefusal: str = ""  # "" = the bundled overrefusal.csv; or an XSTest prompts CSV
    n_safety: int = 40  # safe + unsafe prompts, stratified by type (about half each)
    safety_max_tokens: int = 64
    instructions: str = "bundled:instructions.jsonl"
    n_if: int = 40
    if_max_tokens: int = 96
    bootstrap: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_id", "n_ood", "max_tokens", "n_safety", "safety_max_tokens", "n_if", "if_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bootstrap < 10:
            raise ValueError(f"bootstrap must be >= 10 (resamples of each interval), got {self.bootstrap}")


def _pick(items: list[T], n: int, seed: int, name: str) -> list[T]:
    """A seeded shuffle (by id), then the first n: a larger n keeps a smaller one's items."""
    items = sorted(items, key=lambda it: it.id)
    random.Random(int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)).shuffle(items)
    return items[:n]


def suite_items(cfg: SuiteConfig) -> dict[str, list[Any]]:
    """Every set's items (the same for every stage); a missing file, split or field is an error
    here, before any model call."""
    out: dict[str, list[Any]] = {}
    for name, path, n in (("id", cfg.data, cfg.n_id), ("ood-unanswerable", cfg.ood_unanswerable, cfg.n_ood),
                          ("ood-answerable", cfg.ood_answerable, cfg.n_ood)):
        items = load_qa(path, "auto", "test")
        if not items:
            raise DataError(f"eval: {path}: no rows in its 'test' split")
        out[name] = _pick(items, n, cfg.seed, name)
    out["qa"] = out["id"]
    rows = stratified(load_xstest(cfg.overrefusal or bundled_path("trust/overrefusal.csv")), cfg.n_safety, cfg.seed)
    out["safe"] = [r for r in rows if r["label"] == "safe"]
    out["unsafe"] = [r for r in rows if r["label"] == "unsafe"]
    out["if"] = _pick(load_instructions(cfg.instructions), cfg.n_if, cfg.seed, "if")
    return out


def _greedy(model: StageModel, prompts: list[str], max_tokens: int, seed: int, what: str) -> list[str]:
    params = GenParams(temperature=0.0, max_tokens=max_tokens)
    res = model.generate([GenRequest(user(p), params, seed=seed) for p in prompts],
                         description=f"eval recipe-{what}: {model.model_id}")
    return [r.texts[0] for r in res]


def run_suite(cfg: SuiteConfig, model: StageModel) -> dict[str, Any]:
    """Greedy answers of ``model`` on every set; per set the item ids, labels and outcomes."""
    judge = Judge()
    sets: dict[str, Any] = {}
    for name, items in suite_items(cfg).items():
        if name in ("safe", "unsafe"):
            responses = _greedy(model, [r["prompt"] for r in items], cfg.safety_max_tokens, cfg.seed, name)
            labels = [classify_refusal(r, it["prompt"]) for r, it in zip(responses, items)]
            sets[name] = {"ids": [it["id"] for it in items], "labels": [lab or "unscored" for lab in labels],
                          "responses": responses}
            continue
        if name == "if":
            its: list[InstructionItem] = items
            responses = _greedy(model, [it.prompt for it in its], cfg.if_max_tokens, cfg.seed, name)
            sets[name] = {"ids": [it.id for it in its], "followed": [it.followed(r) for it, r in zip(its, responses)],
                          "responses": responses}
            continue
        frame = plain_prompt if name == "qa" else honesty_prompt
        task = HonestyQA(f"recipe-{name}", [(it.id, it.question, tuple(it.answers)) for it in items], frame, judge,
                         cfg.max_tokens)
        res = run_task(task, model, seed=cfg.seed, resamples=0)
        sets[name] = {"ids": [it.id for it in items], "labels": [v.label or "wrong" for v in res.verdicts],
                      "loose": [loosely_correct(v) for v in res.verdicts], "responses": res.responses}
    return {"model": model.model_id, "sets": sets}


def outcomes(suite: dict[str, Any], measure: str) -> list[bool | None]:
    """Each item's outcome for ``measure`` (None: unscored)."""
    name, kind = MEASURES[measure]
    s = suite["sets"][name]
    if kind == "accuracy":
        return list(s["loose"])
    if kind == "idk":
        return [lab == "idk" for lab in s["labels"]]
    if kind == "followed":
        return list(s["followed"])
    want = (FULL_COMPLIANCE,) if kind == "complied" else (FULL_REFUSAL, PARTIAL_REFUSAL)
    return [None if lab == "unscored" else lab in want for lab in s["labels"]]


def _paired(a: list[bool | None], b: list[bool | None], resamples: int, seed: int) -> dict[str, float]:
    both = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not both:
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "mcnemar_p": float("nan"), "n": 0}
    xa, xb = [bool(x) for x, _ in both], [bool(y) for _, y in both]
    d = paired_bootstrap([float(x) for x in xa], [float(x) for x in xb], resamples=resamples, seed=seed)
    return {"diff": 100 * d.diff, "lo": 100 * d.lo, "hi": 100 * d.hi, "mcnemar_p": mcnemar(xa, xb).p_value,
            "n": len(both)}


def measure_matrix(suites: list[dict[str, Any]], resamples: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """One row per evaluated model (the base first, then each stage): every measure's value and its
    paired difference against the row before and against the base, and the honesty scores of the
    ``id`` answers against the base model's.

    >>> def s(labels):
    ...     qa = {k: {"labels": labels, "loose": [x == "correct" for x in labels]}
    ...           for k in ("id", "qa", "ood-unanswerable", "ood-answerable")}
    ...     return {"sets": {**qa, "safe": {"labels": ["full_compliance", "unscored"]},
    ...                      "unsafe": {"labels": ["full_refusal", "full_compliance"]}, "if": {"followed": [True, False]}}}
    >>> m = measure_matrix([s(["correct", "wrong"]), s(["correct", "idk"])], resamples=20)
    >>> m[1]["measures"]["id_idk"]["value"], m[1]["measures"]["id_idk"]["vs_prev"]["diff"]
    (50.0, 50.0)
    >>> m[1]["honesty_vs_base"]["prudence"]["value"]
    100.0
    >>> m[0]["measures"]["safe_compliance"]["value"], m[0]["measures"]["safe_compliance"]["unscored"]
    (100.0, 1)
    """
    rows = []
    base_labels = suites[0]["sets"]["id"]["labels"]
    for i, suite in enumerate(suites):
        row: dict[str, Any] = {"measures": {}}
        for m in MEASURES:
            cur = outcomes(suite, m)
            scored = [float(x) for x in cur if x is not None]
            ci = mean_ci(scored, resamples, seed) if scored else {"value": float("nan"), "lo": float("nan"),
                                                                    "hi": float("nan")}
            entry: dict[str, Any] = {"value": 100 * ci["value"], "lo": 100 * ci["lo"], "hi": 100 * ci["hi"],
                                     "n": len(scored), "unscored": len(cur) - len(scored)}
            if i > 0:
                entry["vs_prev"] = _paired(outcomes(suites[i - 1], m), cur, resamples, seed)
                entry["vs_base"] = _paired(outcomes(suites[0], m), cur, resamples, seed)
            row["measures"][m] = entry
        ids = suite["sets"]["id"]
        row["honesty_vs_base"] = metrics.scores_with_ci(base_labels, ids["labels"], ids["loose"], resamples, seed)
        rows.append(row)
    return rows
