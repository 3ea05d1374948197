"""``selfalign pm train | eval | calibrate | split-half | curve``: preference models (ranking loss, calibration,
baselines, learning curves).

``train`` makes or loads the pairs, trains the PM (skipped when its inputs are unchanged) and
evaluates it on the held-out pairs; ``eval`` evaluates a trained PM directory on any pairs;
``calibrate`` fits the temperature of a trained PM on a calibration set of pairs and saves it
beside the PM, where ``eval --temperature saved`` reads it back for held-out pairs.
Each is a :class:`selfalign.command.Command` registration (options generated from its config's
fields) and writes ``rows.jsonl`` (pairs with rewards), ``report.html`` and ``report.json``; the
fitted calibration temperature is also written beside the PM as ``temperature.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from selfalign.command import Command, add_commands
from selfalign.data.io import write_jsonl
from selfalign.report.reward import curve_report, pm_report, split_half_report
from selfalign.reward import run as pm_run
from selfalign.stage import Models, StageContext

app = typer.Typer(no_args_is_help=True, help="Preference models: train, evaluate, calibrate.")


def _inputs(cfg: Any) -> list[str]:
    """The pair file a pair source (``hh:<path>``, a rows file) reads; none for verifiable pairs."""
    data_file = cfg.data[3:] if cfg.data.startswith("hh:") else cfg.data
    return [data_file] if Path(data_file).is_file() else []


def export_pairs(out: str | Path, res: pm_run.PMRunResult) -> None:
    """The pairs a run made or loaded, as TRL preference rows (``RewardTrainer``/``DPOTrainer``
    read them as they are; ``selfalign rlhf dpo --rows`` too): pairs-train.jsonl, pairs-test.jsonl."""
    keep = ("prompt", "chosen", "rejected", "margin", "meta")
    for name, pairs in (("train", res.train), ("test", res.test)):
        write_jsonl(Path(out) / f"pairs-{name}.jsonl", ({k: r[k] for k in keep if k in r} for r in pairs))


def _policy(cfg: pm_run.PMRunConfig, models: Models) -> Any:
    """The model whose samples make verifiable pairs (None for other pair sources)."""
    return models.policy if cfg.data == "verifiable" else None


def _train_after(cfg: pm_run.PMRunConfig, res: pm_run.PMRunResult, ctx: StageContext) -> None:
    s = res.summary
    Path(s["pm_dir"], "temperature.json").write_text(json.dumps({"temperature": s["calibration"]["scaled"]["temperature"],
                                                                 "fitted_on": "pm-train"}))
    export_pairs(cfg.out, res)


def _ci(x: dict[str, Any]) -> str:
    return f"{100 * x['value']:.1f}% [{100 * x['lo']:.1f}, {100 * x['hi']:.1f}]"


def _train_echo(cfg: Any, res: pm_run.PMRunResult) -> list[str]:
    s = res.summary
    a, lb, cal = s["accuracy"], s["length_baseline"], s["calibration"]
    return ([f"held-out accuracy {_ci(a)} on {a['n']} pairs; shorter-wins {100 * lb['value']:.1f}%"
             + (f"; untrained head {100 * s['untrained_head']['value']:.1f}%" if s.get("untrained_head") else "")]
            + [f"  {lab or 'unlabelled'} pairs: {_ci(x)} (n={x['n']})" for lab, x in (s.get("by_label") or {}).items()]
            + [f"ECE {cal['raw']['ece']:.3f} -> {cal['scaled']['ece']:.3f} after temperature scaling "
               f"(T={cal['scaled']['temperature']:.2f})"])


def _split_echo(cfg: Any, res: pm_run.SplitHalfResult) -> list[str]:
    s = res.summary
    return ([f"PM_{n.upper()}: {p['train_pairs']} pairs, held-out accuracy {_ci(p['accuracy'])}" for n, p in s["pms"].items()]
            + [f"agreement {_ci(s['agreement'])}, Spearman of gaps {s['spearman_gaps']:.3f}"])


def _eval_echo(cfg: Any, res: pm_run.PMEvalResult) -> list[str]:
    s, cal = res.summary, res.summary["calibration"]
    return [f"accuracy {_ci(s['accuracy'])} on {s['accuracy']['n']} pairs; shorter-wins "
            f"{100 * s['length_baseline']['value']:.1f}%; ECE {cal['raw']['ece']:.3f} -> {cal['scaled']['ece']:.3f} "
            f"(T={cal['scaled']['temperature']:.2f})"]


def _calibrate_echo(cfg: pm_run.PMCalibrateConfig, res: pm_run.PMEvalResult) -> list[str]:
    cal = res.summary["calibration"]
    return [f"T = {cal['scaled']['temperature']:.3f} fitted on {res.summary['test_pairs']} pairs -> "
            f"{Path(cfg.pm, 'temperature.json')}",
            f"in-sample ECE {cal['raw']['ece']:.3f} -> {cal['scaled']['ece']:.3f}; held-out: "
            f"selfalign pm eval {cfg.pm} --data <other pairs> --temperature saved"]


PAIRS_HELP = {"data": "verifiable | hh:<path> | preference rows .jsonl", "base": "model to put the score head on",
              "policy": "verifiable: the model whose samples make the pairs (default: base)"}
SAVED_HELP = {"pm": "a trained PM directory (runs/pm/pm/model)", "data": "hh:<path> | preference rows .jsonl"}

COMMANDS = [
    Command("train", "pm-train", pm_run.PMRunConfig,
            lambda cfg, m, ctx: pm_run.run(cfg, _policy(cfg, m), ctx.store, progress=ctx.log),
            {"policy": lambda cfg: cfg.policy or cfg.base}, trainable=("base",), inputs=_inputs,
            render=lambda d, r, conf: pm_report(d, r.summary, conf), after=_train_after, echo=_train_echo,
            descriptions={"policy": "samples"}, helps=PAIRS_HELP,
            help="Make/load pairs, train a ranking-loss PM, evaluate it against length and untrained-head baselines."),
    Command("split-half", "pm-split-half", pm_run.PMRunConfig,
            lambda cfg, m, ctx: pm_run.split_half(cfg, _policy(cfg, m), ctx.store, progress=ctx.log),
            {"policy": lambda cfg: cfg.policy or cfg.base}, trainable=("base",), inputs=_inputs,
            defaults={"out": "runs/pm-split"},
            render=lambda d, r, conf: split_half_report(d, r.summary, conf),
            after=lambda cfg, r, ctx: export_pairs(cfg.out, r), echo=_split_echo,
            descriptions={"policy": "samples"}, helps=PAIRS_HELP,
            help="HH's split-half PMs: PM_A and PM_B on disjoint halves by prompt, agreement and rank correlation."),
    Command("curve", "pm-curve", pm_run.PMCurveConfig,
            lambda cfg, m, ctx: pm_run.learning_curve(cfg, _policy(cfg, m), ctx.store, progress=ctx.log),
            {"policy": lambda cfg: cfg.policy or cfg.base}, trainable=("base",), inputs=_inputs,
            defaults={"out": "runs/pm-curve"}, render=lambda d, r, conf: curve_report(d, r.summary, conf),
            echo=lambda cfg, r: [f"{p['train_pairs']} pairs: held-out accuracy {_ci(p['accuracy'])}"
                                 for p in r.summary["points"]],
            descriptions={"policy": "samples"}, helps=PAIRS_HELP,
            help="HH's PM learning curve: held-out accuracy against the number of training comparisons."),
    Command("eval", "pm-eval", pm_run.PMEvalConfig, lambda cfg, m, ctx: pm_run.evaluate_saved(cfg, ctx.store),
            argument="pm", inputs=_inputs,
            render=lambda d, r, conf: pm_report(d, r.summary, conf), echo=_eval_echo,
            helps={**SAVED_HELP, "temperature": "split: fit on half the pairs, ECE on the other half; saved: the PM's "
                   "temperature.json (pm calibrate); or a number"},
            help="Evaluate a trained PM on pairs: accuracy, length baseline, calibration."),
    Command("calibrate", "pm-calibrate", pm_run.PMCalibrateConfig,
            lambda cfg, m, ctx: pm_run.calibrate_saved(cfg, ctx.store), argument="pm",
            inputs=_inputs, render=lambda d, r, conf: pm_report(d, r.summary, conf), echo=_calibrate_echo,
            helps={**SAVED_HELP, "data": "calibration pairs: hh:<path> | preference rows .jsonl"},
            help="Temperature scaling (Guo et al. 2017): fit T on these pairs, save it as PM/temperature.json. "
                 "The ECE printed is in-sample; measure it on other pairs with `pm eval --temperature saved`."),
]

add_commands(app, COMMANDS)
