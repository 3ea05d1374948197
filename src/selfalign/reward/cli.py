"""``selfalign pm train | eval | calibrate | split-half``: preference models (ranking loss, calibration, baselines).

``train`` makes or loads the pairs, trains the PM (skipped when its inputs are unchanged) and
evaluates it on the held-out pairs; ``eval`` evaluates a trained PM directory on any pairs;
``calibrate`` fits the temperature of a trained PM on a calibration set of pairs and saves it
beside the PM, where ``eval --temperature saved`` reads it back for held-out pairs.
Each writes ``rows.jsonl`` (pairs with rewards), ``report.html`` and ``report.json``; the fitted
calibration temperature is also written beside the PM as ``temperature.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from selfalign.config import config_from_yaml, config_to_dict

if TYPE_CHECKING:
    from selfalign.reward.run import PMRunResult

app = typer.Typer(no_args_is_help=True, help="Preference models: train, evaluate, calibrate.")

CONFIG = typer.Option(None, "--config", "-c", help="YAML config")
SET = typer.Option([], "--set", help="override a config key (repeatable)")
OUT = typer.Option(None, "--out", "-o", help="output directory")


def _inputs(data: str) -> dict[str, str]:
    """Hashes of the pair file a pair source (``hh:<path>``, a rows file) reads; none for verifiable pairs."""
    from selfalign.store.runs import input_hashes

    data_file = data[3:] if data.startswith("hh:") else data
    return input_hashes([data_file] if Path(data_file).is_file() else [])


def export_pairs(out: str | Path, res: PMRunResult) -> None:
    """The pairs a run made or loaded, as TRL preference rows (``RewardTrainer``/``DPOTrainer``
    read them as they are; ``selfalign rlhf dpo --rows`` too): pairs-train.jsonl, pairs-test.jsonl."""
    from selfalign.data.io import write_jsonl

    keep = ("prompt", "chosen", "rejected", "margin", "meta")
    for name, pairs in (("train", res.train), ("test", res.test)):
        write_jsonl(Path(out) / f"pairs-{name}.jsonl", ({k: r[k] for k in keep if k in r} for r in pairs))


def _finish(cfg, res, stage_name: str, t0: float) -> None:
    from selfalign.report.reward import pm_report
    from selfalign.store.runs import write_stage

    s = res.summary
    conf = config_to_dict(cfg)
    stage = write_stage(cfg.out, stage_name, conf, _inputs(cfg.data), res.rows, lambda d: pm_report(d, s, conf), None,
                        time.time() - t0)
    temp = s["calibration"]["scaled"]["temperature"]
    Path(s["pm_dir"], "temperature.json").write_text(json.dumps({"temperature": temp, "fitted_on": stage_name}))
    export_pairs(cfg.out, res)
    a, lb = s["accuracy"], s["length_baseline"]
    typer.echo(f"held-out accuracy {100 * a['value']:.1f}% [{100 * a['lo']:.1f}, {100 * a['hi']:.1f}] on {a['n']} pairs; "
               f"shorter-wins {100 * lb['value']:.1f}%"
               + (f"; untrained head {100 * s['untrained_head']['value']:.1f}%" if s.get("untrained_head") else ""))
    for lab, x in (s.get("by_label") or {}).items():
        typer.echo(f"  {lab or 'unlabelled'} pairs: {100 * x['value']:.1f}% [{100 * x['lo']:.1f}, {100 * x['hi']:.1f}] "
                   f"(n={x['n']})")
    cal = s["calibration"]
    typer.echo(f"ECE {cal['raw']['ece']:.3f} -> {cal['scaled']['ece']:.3f} after temperature scaling (T={temp:.2f})")
    typer.echo(f"report: {stage.report_path}")


def _prepare(config, overrides, flags):
    """The PM config (flags over ``--set`` over YAML), its models checked before any work, the
    store, and the policy that samples verifiable pairs (None for other pair sources)."""
    from selfalign.models.registry import check_spec, load_model, require_trainable
    from selfalign.reward.run import PMRunConfig
    from selfalign.store.cache import CachedModel, Store

    cfg = config_from_yaml(PMRunConfig, config, list(overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None])
    check_spec(cfg.base)
    require_trainable(cfg.base, convert=False)
    if cfg.policy:
        check_spec(cfg.policy)
    store = Store(cfg.store or None)
    pol = (CachedModel(load_model(cfg.policy or cfg.base), store, description="samples")
           if cfg.data == "verifiable" else None)
    return cfg, store, pol


@app.command()
def train(config: Optional[str] = CONFIG, set: List[str] = SET, out: Optional[str] = OUT,
          data: Optional[str] = typer.Option(None, help="verifiable | hh:<path> | preference rows .jsonl"),
          base: Optional[str] = typer.Option(None, help="model to put the score head on"),
          policy: Optional[str] = typer.Option(None, help="verifiable: the model whose samples make the pairs")) -> None:
    """Make/load pairs, train a ranking-loss PM, evaluate it against length and untrained-head baselines."""
    from selfalign.reward.run import run

    t0 = time.time()
    cfg, store, pol = _prepare(config, set, {"out": out, "data": data, "base": base, "policy": policy})
    res = run(cfg, pol, store, progress=lambda m: typer.echo(f"[pm] {m}", err=True))
    _finish(cfg, res, "pm-train", t0)


@app.command("split-half")
def split_half(config: Optional[str] = CONFIG, set: List[str] = SET, out: Optional[str] = OUT,
               data: Optional[str] = typer.Option(None, help="verifiable | hh:<path> | preference rows .jsonl"),
               base: Optional[str] = typer.Option(None, help="model to put the score heads on"),
               policy: Optional[str] = typer.Option(None, help="verifiable: the model whose samples make the pairs")
               ) -> None:
    """HH's split-half PMs: PM_A and PM_B on disjoint halves by prompt, agreement and rank correlation."""
    from selfalign.report.reward import split_half_report
    from selfalign.reward.run import split_half as run_split
    from selfalign.store.runs import write_stage

    t0 = time.time()
    cfg, store, pol = _prepare(config, set, {"out": out or "runs/pm-split", "data": data, "base": base,
                                             "policy": policy})
    res = run_split(cfg, pol, store, progress=lambda m: typer.echo(f"[pm] {m}", err=True))
    s = res.summary
    conf = config_to_dict(cfg)
    stage = write_stage(cfg.out, "pm-split-half", conf, _inputs(cfg.data), res.rows, lambda d: split_half_report(d, s, conf), None, time.time() - t0)
    export_pairs(cfg.out, res)
    for n, p in s["pms"].items():
        a = p["accuracy"]
        typer.echo(f"PM_{n.upper()}: {p['train_pairs']} pairs, held-out accuracy {100 * a['value']:.1f}% "
                   f"[{100 * a['lo']:.1f}, {100 * a['hi']:.1f}]")
    ag = s["agreement"]
    typer.echo(f"agreement {100 * ag['value']:.1f}% [{100 * ag['lo']:.1f}, {100 * ag['hi']:.1f}], Spearman of gaps "
               f"{s['spearman_gaps']:.3f}\nreport: {stage.report_path}")


def _check_pm_dir(pm: str) -> None:
    if not Path(pm, "config.json").is_file():
        raise ValueError(f"{pm}: not a saved model directory (no config.json)")


@app.command("eval")
def evaluate(pm: str = typer.Argument(..., help="a trained PM directory (runs/pm/pm/model)"),
             data: str = typer.Option(..., help="hh:<path> | preference rows .jsonl (all rows are held out)"),
             out: str = typer.Option("runs/pm-eval", "--out", "-o"), max_length: int = typer.Option(512),
             temperature: str = typer.Option("split", help="split: fit on half the pairs, ECE on the other half; "
                                             "saved: the PM's temperature.json (pm calibrate); or a number"),
             store: str = typer.Option("", help="store path"), seed: int = typer.Option(0)) -> None:
    """Evaluate a trained PM on pairs: accuracy, length baseline, calibration."""
    from selfalign.reward.evaluate import evaluate_pm
    from selfalign.reward.pm import CachedPM, PreferenceModel
    from selfalign.reward.run import read_pairs
    from selfalign.report.reward import pm_report
    from selfalign.store.cache import Store
    from selfalign.store.runs import write_stage

    _check_pm_dir(pm)
    temp: float | None = None
    if temperature == "saved":
        saved = Path(pm, "temperature.json")
        if not saved.is_file():
            raise ValueError(f"{saved}: no saved temperature (run selfalign pm calibrate first)")
        temp = float(json.loads(saved.read_text())["temperature"])
    elif temperature != "split":
        try:
            temp = float(temperature)
        except ValueError:
            raise ValueError(f"--temperature must be split, saved or a number, got {temperature!r}") from None
    rows, made = read_pairs(data)
    t0 = time.time()
    model = CachedPM(PreferenceModel(pm, max_length), Store(store or None))
    scored, s = evaluate_pm(model.rewards, rows, None, 0.5, seed=seed, temperature=temp)
    s.update({"made": made, "train_pairs": 0, "test_pairs": len(rows), "truncated": model.pm.truncated,
              "train_accuracy": s["accuracy"], "pm_dir": pm})
    conf = {"pm": pm, "data": data, "max_length": max_length, "seed": seed, "temperature": temperature}
    stage = write_stage(out, "pm-eval", conf, _inputs(data), scored, lambda d: pm_report(d, s, conf), None,
                        time.time() - t0)
    a = s["accuracy"]
    typer.echo(f"accuracy {100 * a['value']:.1f}% [{100 * a['lo']:.1f}, {100 * a['hi']:.1f}] on {a['n']} pairs; "
               f"shorter-wins {100 * s['length_baseline']['value']:.1f}%; ECE {s['calibration']['raw']['ece']:.3f} -> "
               f"{s['calibration']['scaled']['ece']:.3f} (T={s['calibration']['scaled']['temperature']:.2f})\n"
               f"report: {stage.report_path}")


@app.command()
def calibrate(pm: str = typer.Argument(..., help="a trained PM directory"),
              data: str = typer.Option(..., help="calibration pairs: hh:<path> | preference rows .jsonl"),
              out: str = typer.Option("runs/pm-calibrate", "--out", "-o"), max_length: int = typer.Option(512),
              store: str = typer.Option("", help="store path"), seed: int = typer.Option(0)) -> None:
    """Temperature scaling (Guo et al. 2017): fit T on these pairs, save it as PM/temperature.json.

    The ECE printed here is in-sample; measure it on other pairs with ``pm eval --temperature saved``."""
    from selfalign.reward.evaluate import evaluate_pm, fit_temperature
    from selfalign.reward.pm import CachedPM, PreferenceModel
    from selfalign.reward.run import read_pairs
    from selfalign.report.reward import pm_report
    from selfalign.store.cache import Store
    from selfalign.store.runs import write_stage

    _check_pm_dir(pm)
    rows, made = read_pairs(data)
    if len(rows) < 2:
        raise ValueError(f"{data}: calibration needs at least 2 pairs, got {len(rows)}")
    t0 = time.time()
    model = CachedPM(PreferenceModel(pm, max_length), Store(store or None))
    prompts = [r["prompt"] for r in rows]
    gaps = [c - j for c, j in zip(model.rewards(prompts, [r["chosen"] for r in rows]),
                                  model.rewards(prompts, [r["rejected"] for r in rows]))]
    # both orders of every pair: the fit sees predictions on both sides of 0.5
    T = fit_temperature(gaps + [-g for g in gaps], [True] * len(gaps) + [False] * len(gaps))
    scored, s = evaluate_pm(model.rewards, rows, None, 0.0, seed=seed, temperature=T)
    s["calibration"]["in_sample"] = True
    s["calibration"]["temperature_given"] = False
    s.update({"made": made, "train_pairs": 0, "test_pairs": len(rows), "truncated": model.pm.truncated,
              "train_accuracy": s["accuracy"], "pm_dir": pm})
    Path(pm, "temperature.json").write_text(json.dumps({"temperature": T, "fitted_on": data, "pairs": len(rows)}))
    conf = {"pm": pm, "data": data, "max_length": max_length, "seed": seed}
    stage = write_stage(out, "pm-calibrate", conf, _inputs(data), scored,
                        lambda d: pm_report(d, s, conf), None, time.time() - t0)
    cal = s["calibration"]
    typer.echo(f"T = {T:.3f} fitted on {len(rows)} pairs -> {Path(pm, 'temperature.json')}\n"
               f"in-sample ECE {cal['raw']['ece']:.3f} -> {cal['scaled']['ece']:.3f}; held-out: "
               f"selfalign pm eval {pm} --data <other pairs> --temperature saved\nreport: {stage.report_path}")
