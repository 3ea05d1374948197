"""The safety loop read as a trade-off: how much safer a model became against how much more it
refuses what it should answer.

Issue 11's loop (``trust to-data`` -> ``trust train`` -> re-evaluation on held-out keys) raised
the safety study's score from 4.5 to 100 by teaching the model to refuse, and nothing measured
the cost. Here every run of the loop (the unaligned model first, then each trained model, and
any other model, e.g. the honesty-aligned one) is read on the same items, and four measures are
put side by side, each per item so that two runs can be paired:

* ``harm_safe_share``: share of the safety study's answers a **validated harm judge** calls not
  harmful (a trained judge directory, ``selfalign judge train``; only when one is given);
* ``refusal_share``: share of those answers that refuse (three-class refusal judge: full or
  partial refusal). This is what the safety study's old "safe ratio" measured;
* ``xstest_compliance``: share of the over-refusal study's **safe** prompts fully complied with
  (XSTest's headline, Röttger et al. 2024); ``xstest_unsafe_refusal`` beside it: share of the
  unsafe contrast prompts refused (fully or partly);
* ``qa_accuracy``: the hallucination study's accuracy on the bundled QA questions (a check that
  the loop did not cost answering ability; unscored answers excluded and counted).

Every run after the first is paired with the first on the items both have (by item id; for
safety that needs the same questions in every run: evaluate with ``--generator`` fixed to one
model): the difference with a paired bootstrap interval and McNemar's exact test. The judges
are run here on the stored answers, so runs made with different judge options are still read
alike; nothing is asked of any model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from selfalign.data.io import DataError, iter_jsonl
from selfalign.evals.stats import mcnemar, mean_ci, paired_bootstrap
from selfalign.judges.refusal import classify_refusal
from selfalign.judges.registry import FULL_COMPLIANCE, HARMFUL, Judge, JudgeInput

MEASURES = ("harm_safe_share", "refusal_share", "xstest_compliance", "xstest_unsafe_refusal", "qa_accuracy")


@dataclass
class RunOutcomes:
    name: str
    path: str
    model: str = ""
    #: measure -> item id -> outcome (True = good / counted), only scored items
    outcomes: dict[str, dict[str, bool]] = field(default_factory=dict)
    unscored: dict[str, int] = field(default_factory=dict)


def _rows(run: Path, study: str) -> list[dict[str, Any]]:
    path = run / study / "rows.jsonl"
    if not path.exists():
        return []
    return [r for _, r in iter_jsonl(path)]


def _field(row: dict[str, Any], key: str) -> Any:
    inp = row.get("input")
    if isinstance(inp, dict) and key in inp:
        return inp[key]
    return (row.get("meta") or {}).get(key)


def read_run(name: str, path: str | Path, harm_judge: Judge | None = None) -> RunOutcomes:
    """Every measure's per-item outcomes of one trust run directory."""
    run = Path(path)
    if not run.is_dir():
        raise DataError(f"{run}: not a trust run directory")
    out = RunOutcomes(name, str(run))
    safety = _rows(run, "safety")
    if safety:
        labels = [classify_refusal(r.get("response", ""), str(_field(r, "question") or "")) for r in safety]
        out.outcomes["refusal_share"] = {r["id"]: lab != FULL_COMPLIANCE for r, lab in zip(safety, labels) if lab}
        out.unscored["refusal_share"] = sum(lab is None for lab in labels)
        if harm_judge is not None:
            vs = harm_judge.judge([JudgeInput(str(_field(r, "question") or ""), r.get("response", ""), r["id"])
                                   for r in safety], description=f"tradeoff {name}: harm judge")
            out.outcomes["harm_safe_share"] = {r["id"]: v.label != HARMFUL for r, v in zip(safety, vs) if v.scored}
            out.unscored["harm_safe_share"] = sum(not v.scored for v in vs)
    xs = _rows(run, "xstest")
    if xs:
        labels = [classify_refusal(r.get("response", ""), str(_field(r, "prompt") or "")) for r in xs]
        safe = [_field(r, "label") == "safe" for r in xs]
        out.outcomes["xstest_compliance"] = {r["id"]: lab == FULL_COMPLIANCE
                                             for r, lab, s in zip(xs, labels, safe) if lab and s}
        out.outcomes["xstest_unsafe_refusal"] = {r["id"]: lab != FULL_COMPLIANCE
                                                 for r, lab, s in zip(xs, labels, safe) if lab and not s}
        out.unscored["xstest_compliance"] = sum(lab is None and s for lab, s in zip(labels, safe))
        out.unscored["xstest_unsafe_refusal"] = sum(lab is None and not s for lab, s in zip(labels, safe))
    qa = _rows(run, "hallucination")
    if qa:
        out.outcomes["qa_accuracy"] = {r["id"]: r["verdict"]["label"] == "correct" for r in qa
                                       if r["verdict"].get("label") is not None}
        out.unscored["qa_accuracy"] = sum(r["verdict"].get("label") is None for r in qa)
    for study in ("safety", "xstest", "hallucination"):
        summary = run / study / "summary.json"
        if summary.exists() and not out.model:
            out.model = str(json.loads(summary.read_text()).get("model", ""))
    return out


def _interval(xs: Sequence[bool], resamples: int, seed: int) -> dict[str, float]:
    return mean_ci([float(x) for x in xs], resamples=resamples, seed=seed)


def tradeoff(runs: Sequence[tuple[str, str | Path]], harm_judge: Judge | None = None, resamples: int = 1000,
             seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Each run's measures with intervals, and each later run paired against the first."""
    if len(runs) < 2:
        raise ValueError("tradeoff needs at least two runs: the unaligned model's first, then the trained ones")
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {', '.join(names)}")
    read = []
    for name, path in runs:
        if progress:
            progress(name)
        read.append(read_run(name, path, harm_judge))
    base = read[0]
    out_runs = []
    for r in read:
        measures: dict[str, Any] = {}
        for m in MEASURES:
            if m not in r.outcomes:
                continue
            vals = list(r.outcomes[m].values())
            measures[m] = {**_interval(vals, resamples, seed), "unscored": r.unscored.get(m, 0)}
        paired: dict[str, Any] = {}
        if r is not base:
            for m in MEASURES:
                a, b = base.outcomes.get(m), r.outcomes.get(m)
                if a is None or b is None:
                    continue
                ids = sorted(set(a) & set(b))
                if not ids:
                    paired[m] = {"n_paired": 0}
                    continue
                xa, xb = [a[i] for i in ids], [b[i] for i in ids]
                d = paired_bootstrap([float(x) for x in xa], [float(x) for x in xb], resamples=resamples, seed=seed)
                paired[m] = {"n_paired": len(ids), "a": d.a, "b": d.b, "diff": d.diff, "lo": d.lo, "hi": d.hi,
                             "mcnemar_p": mcnemar(xa, xb).p_value}
        out_runs.append({"name": r.name, "path": r.path, "model": r.model, "measures": measures, "paired": paired})
    return {"baseline": base.name, "runs": out_runs, "harm_judge": harm_judge is not None,
            "measures": [m for m in MEASURES if any(m in r["measures"] for r in out_runs)]}
