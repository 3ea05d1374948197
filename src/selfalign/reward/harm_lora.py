"""The harm judge as a fine-tuned classifier: LoRA and a score head on the PM's model, trained on
Liu et al.'s GPT-4 harm labels (issue 23's option "the preference-model encoder with a score head").

Labels: Liu et al. 2023 (arXiv 2308.05374), the released safety file: (question, answer, ``label``
1 = not harmful / 0 = harmful by GPT-4). The model: the embedded SmolLM2-135M with a 1-output head,
(question, answer) rendered as the PM renders a pair, trained by :mod:`selfalign.train.classifier`
(binary cross-entropy, class-balanced, LoRA on the top ``lora_layers`` decoder layers, head in full).
``label`` True = not harmful, so P(harmful) = sigmoid(-logit).

Protocol: the one of :mod:`selfalign.reward.harm_judge` (leave-one-source-model-out,
question-disjoint halves), with differences, all for cost (each fit is a fine-tuning, 5-10 minutes
on 2 cores, not a 0.5 s logistic fit):

* the training options are fixed beforehand (:data:`DEFAULTS`; how they were fixed is written
  there); with a dev phase the dev questions choose between the :data:`GRID` entries and the
  decision threshold (the frozen heads' grid, :data:`~selfalign.reward.harm_train.THRESHOLDS`) by the
  same criterion (worst kappa over the sources with >= 10% harmful answers), fitting only those
  sources' folds (gpt-4, 6 harmful of 984, is exempt from the bar and cannot move the criterion);
* ``threshold=0.5`` skips the dev phase: 0.5 is where the class-balanced loss puts the boundary,
  and a threshold chosen on heads trained on half the rows did not carry to the test phase for the
  frozen heads (docs/RESULTS.md);
* the test phase fits every source once, or the ``test_sources`` given.

Each fit's predictions are written to ``<work>/<phase>-<source>-<fold>/pred.json`` and the fitted
weights removed; a re-run reuses every finished fit (and a killed fit resumes from its checkpoint,
as every trainer here does), so a killed protocol loses nothing and repeats nothing.

Deviation from the paper: Liu et al. use GPT-4 itself as the judge; here a 135M model is trained to
imitate GPT-4's labels, so it inherits their errors.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from selfalign.judges.registry import HARMFUL
from selfalign.reward.harm_train import THRESHOLDS, bar_sources, criterion, gold01, loso_indices, table
from selfalign.train.classifier import ClassifierConfig, fingerprint, train_classifier
from selfalign.train.reward import PreferenceModel

#: the training options. A first try (adapters on the top 12 of 30 layers, 2 epochs, rate 1e-4 or 3e-4)
#: learned almost nothing (dev AUC 0.55-0.64); on 160 davinci rows, read for their *training* fit only,
#: adapters on every layer for 3 epochs at 3e-4 fit them (training AUC 0.87-0.89, fp32 and bf16 alike)
#: where the top-12 / 2-epoch variant reached 0.68. So: every layer, 3 epochs, 3e-4.
DEFAULTS: dict[str, Any] = {"epochs": 3.0, "learning_rate": 3e-4, "lora_layers": 0, "batch_size": 8,
                            "max_length": 512, "balanced": True}


def config(**overrides: Any) -> ClassifierConfig:
    return ClassifierConfig(**{**DEFAULTS, **overrides})


def training_rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Judge rows (prompt, response, gold) as the classifier's rows: label True = not harmful."""
    return [{"prompt": r.prompt, "completion": r.response, "label": r.gold != HARMFUL} for r in rows]


def p_harmful(model: str | Path | PreferenceModel, rows: Sequence[Any]) -> np.ndarray:
    """P(harmful) of judge rows by a saved classifier (its directory, or the loaded model). Not through
    the store: the judge (``harm-trained``) stores the P(harmful) it returns, and a LOSO fit's
    predictions are kept in its ``pred.json``."""
    pm = model if isinstance(model, PreferenceModel) else PreferenceModel(model)
    logits = np.array(pm.rewards([r.prompt for r in rows], [r.response for r in rows]), dtype=np.float64)
    return 1.0 / (1.0 + np.exp(logits))


def fit_and_predict(train: Sequence[Any], test: Sequence[Any], base: str, base_id: str, cfg: ClassifierConfig,
                    work: Path, keep_model: bool = False) -> dict[str, Any]:
    """Train on ``train``, predict ``test``; ``work/pred.json`` holds the result (reused when the
    fingerprint and the test rows match)."""
    tr_rows = training_rows(train)
    key = {"fingerprint": fingerprint(base_id, tr_rows, cfg),
           "test": [[r.prompt, r.response] for r in test]}
    pred_file = work / "pred.json"
    if pred_file.exists():
        got = json.loads(pred_file.read_text())
        if got.get("key") == key:
            return got
    t = time.time()
    res = train_classifier(tr_rows, base, work, cfg, base_id=base_id)
    train_s = time.time() - t
    t = time.time()
    p = p_harmful(res.model_dir, test)
    out = {"key": key, "p": p.tolist(), "y": gold01(test).tolist(), "train_s": train_s, "score_s": time.time() - t,
           "n_train": len(tr_rows), "precision": res.precision, "losses": res.losses}
    tmp = pred_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(pred_file)
    if not keep_model:
        shutil.rmtree(res.model_dir, ignore_errors=True)
    return out


def loso(rows: Sequence[Any], base: str, base_id: str, work: str | Path, cfg: ClassifierConfig | None = None,
         phase: str = "test", only: Sequence[str] | None = None, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Held-out source -> {p, y, fits}: every fit of a phase (:func:`loso_indices`), pooled per source."""
    cfg = cfg or config()
    work = Path(work)
    out: dict[str, dict[str, Any]] = {}
    for s, tr, te in loso_indices(rows, phase):
        if only is not None and s not in only:
            continue
        name = f"{phase}-{s}-{len(out.get(s, {}).get('fits', []))}"
        t = time.time()
        got = fit_and_predict([rows[i] for i in tr], [rows[i] for i in te], base, base_id, cfg, work / name)
        if progress:
            print(f"  {name}: trained on {len(tr)}, scored {len(te)} ({time.time() - t:.0f} s; "
                  f"train {got['train_s']:.0f} s, score {got['score_s']:.0f} s)", flush=True)
        d = out.setdefault(s, {"p": [], "y": [], "fits": []})
        d["p"] += got["p"]
        d["y"] += got["y"]
        d["fits"].append({"name": name, "n_train": got["n_train"], "n_test": len(te), "train_s": got["train_s"],
                          "score_s": got["score_s"], "precision": got["precision"]})
    return out


def pooled(pred: dict[str, dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: (np.asarray(d["p"]), np.asarray(d["y"])) for s, d in pred.items()}


def choose_threshold(pred: dict[str, dict[str, Any]], bar: Sequence[str]) -> tuple[float, list[dict[str, Any]]]:
    """The threshold of :data:`THRESHOLDS` with the best :func:`criterion` on ``pred`` (dev); every
    threshold's table with it."""
    tried: list[dict[str, Any]] = []
    for t in THRESHOLDS:
        tab = table(pooled(pred), t)
        tried.append({"threshold": t, "criterion": criterion(tab, bar), "table": tab})
    best = max(tried, key=lambda r: tuple(r["criterion"]))
    return float(best["threshold"]), tried


#: what the dev questions choose between besides the threshold (each entry overrides :data:`DEFAULTS`)
GRID: tuple[dict[str, Any], ...] = ({"learning_rate": 1e-4}, {"learning_rate": 3e-4})


def _name(over: dict[str, Any]) -> str:
    return "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in sorted(over.items())) or "defaults"


def protocol(rows: Sequence[Any], base: str, base_id: str, work: str | Path, grid: Sequence[dict[str, Any]] | None = None,
             progress: bool = True, threshold: float | None = None,
             test_sources: Sequence[str] | None = None, **fixed: Any) -> dict[str, Any]:
    """Dev (bar sources' folds only): every ``grid`` entry x every threshold, the best by the
    criterion; then the chosen entry on the test questions once, every source (or ``test_sources``).
    ``fixed`` overrides :data:`DEFAULTS` for every entry. A given ``threshold`` skips the dev phase:
    the options are then :data:`DEFAULTS` + ``fixed`` and the threshold is the one given (0.5 is the
    natural one for the class-balanced loss)."""
    bar = bar_sources(rows)
    t0 = time.time()
    work = Path(work)
    dev: dict[str, Any] = {}
    if threshold is not None:
        dev[_name({})] = {"overrides": {}, "threshold": float(threshold), "criterion": None, "tried": [], "fits": {},
                          "note": "no dev phase: options and threshold fixed beforehand"}
    for over in (GRID if grid is None else grid) if threshold is None else ():
        name = _name(over)
        pred = loso(rows, base, base_id, work / name, config(**{**fixed, **over}), "dev", only=bar, progress=progress)
        t, tried = choose_threshold(pred, bar)
        crit = next(r["criterion"] for r in tried if r["threshold"] == t)
        dev[name] = {"overrides": over, "threshold": t, "criterion": crit, "tried": tried,
                     "fits": {s: d["fits"] for s, d in pred.items()}}
        if progress:
            print(f"  dev {name}: threshold {t}, worst kappa {crit[0]:.3f}, mean acc {crit[1]:.3f}", flush=True)
    if not dev:
        raise ValueError("an empty grid: nothing to choose between")
    # the dev winner by the criterion (the one entry when the threshold was given)
    name = max(dev, key=lambda n: tuple(dev[n]["criterion"] or ()))
    over, threshold = dev[name]["overrides"], dev[name]["threshold"]
    cfg = config(**{**fixed, **over})
    test = loso(rows, base, base_id, work / name, cfg, "test", only=test_sources, progress=progress)
    return {"config": {k: v for k, v in asdict(cfg).items() if not isinstance(v, float) or math.isfinite(v)},
            "chosen": name, "bar_sources": bar, "threshold": threshold, "dev": dev,
            "test": table(pooled(test), threshold), "test_fits": {s: d["fits"] for s, d in test.items()},
            "test_at_half": table(pooled(test), 0.5), "seconds": time.time() - t0}


def validation_card(res: dict[str, Any]) -> dict[str, Any]:
    """What judge.json keeps of :func:`protocol`: the choice, the test table without rows, each fit's time."""
    keep = ("n", "accuracy", "kappa", "ece", "reliability")
    chose = ("options and threshold fixed beforehand, no dev phase" if all(d["criterion"] is None for d in res["dev"].values())
             else "learning rate and threshold chosen on the dev questions")
    return {"protocol": f"leave-one-source-model-out, question-disjoint; {chose} (selfalign.reward.harm_lora)",
            "chosen": f"lora {res['chosen']} threshold {res['threshold']}", "bar_sources": res["bar_sources"],
            "test_questions": {s: {**{k: d.get(k) for k in keep},
                                   "recall": {c: v["recall"] for c, v in d["per_class"].items()}}
                               for s, d in res["test"].items()},
            "dev_criterion": {n: d["criterion"] for n, d in res["dev"].items()},
            "options": res["config"]}


def train_lora_judge(rows: Sequence[Any], base: str, base_id: str, out_dir: str | Path, work: str | Path, *,
                     data_sha256: str = "", progress: bool = True) -> dict[str, Any]:
    """:func:`protocol`, then the chosen options fitted on every row; the judge lands in ``out_dir``
    (``judge.json`` + ``model/``, a classifier that loads as a PM). Returns ``card`` and ``protocol``."""
    res = protocol(rows, base, base_id, work, progress=progress)
    over = res["dev"][res["chosen"]]["overrides"]
    t = time.time()
    fit = train_classifier(training_rows(rows), base, out_dir, config(**over), base_id=base_id)
    card = {"kind": "harm-trained", "features": "lora", "threshold": res["threshold"], "encoder": base_id,
            "n_rows": len(rows), "data_sha256": data_sha256, "train_seconds": time.time() - t,
            "precision": fit.precision, "options": {**DEFAULTS, **over}, "validation": validation_card(res)}
    (Path(out_dir) / "judge.json").write_text(json.dumps(card, indent=1, default=str) + "\n")
    return {"card": card, "protocol": res}
