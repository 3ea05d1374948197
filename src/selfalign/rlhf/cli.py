"""``selfalign rlhf frontier | bon | rl | dpo | distill | online | quick``: policy training against preferences, and its analysis.

Every command but ``dpo`` (a sweep over ``--beta``) is a :class:`selfalign.command.Command`
registration: options generated from its config's fields, models through the store, and the one
command runner writes the rows, the report and the step record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

import typer

from selfalign.command import Command, Record, add_commands
from selfalign.config import config_from_yaml, config_to_dict
from selfalign.data.io import read_jsonl
from selfalign.models.registry import require_trainable
from selfalign.report.reward import split_half_report
from selfalign.report.rlhf import distill_report, frontier_report, online_report
from selfalign.reward.cli import export_pairs
from selfalign.train.reward import CachedPM, PreferenceModel
from selfalign.rlhf import distill as distill_mod, frontier as fr, online as online_mod, quick as quick_mod
from selfalign.stage import Models, StageContext
from selfalign.train.dpo import COLUMNS, DPOTrainConfig, train_dpo

app = typer.Typer(no_args_is_help=True, help="RLHF: DPO, RL with a KL penalty, Best-of-N vs RL, context distillation.")

SET = typer.Option([], "--set", help="override a config key (repeatable)")


def _delta(p: dict) -> str:
    d = (p.get("vs_initial") or {}).get("test_reward")
    return f"  (test reward {d['value']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] vs initial)" if d else ""


def _points(res: fr.FrontierResult, test: str = "test reward") -> list[str]:
    out = []
    for p in res.points:
        what = f"N={p['n']}" if p["method"] == "bon" else f"step {p['step']}"
        out.append(f"{p['method']:<4s} {what:<9s} KL {p['kl']:.3f}  train reward {p['train_reward']['value']:.3f}  "
                   f"{test} {p['test_reward']['value']:.3f}  gold {100 * p['gold']['value']:.1f}%{_delta(p)}")
    return out


def _policy_vs_pm(which: str):
    """The run of ``frontier`` (both), ``bon`` and ``rl``: the policy against the training PM."""
    def run(cfg: fr.FrontierConfig, models: Models, ctx: StageContext) -> fr.FrontierResult:
        fr.require_pm(cfg)
        train = CachedPM(PreferenceModel(cfg.pm, cfg.rl.max_length), ctx.store)
        test = CachedPM(PreferenceModel(cfg.test_pm, cfg.rl.max_length), ctx.store) if cfg.test_pm else None
        if which == "bon":
            return fr.run_bon(cfg, models.policy, train, test, progress=ctx.log)
        if which == "rl":
            return fr.run_rl(cfg, models.policy, train, test, progress=ctx.log)
        return fr.run(cfg, models.policy, train, test, progress=ctx.log)
    return run


def _frontier(name: str, out: str | None, help: str) -> Command:
    return Command(name, f"rlhf-{name}", fr.FrontierConfig, _policy_vs_pm(name), {"policy": "policy"},
                   trainable=() if name == "bon" else ("policy",), check=fr.require_pm,
                   rows=lambda r: [dict(p) for p in r.points], headline=fr.headline,
                   render=lambda d, r, conf: frontier_report(d, r.to_dict(), conf), echo=lambda cfg, r: _points(r),
                   descriptions={"policy": "policy samples"}, defaults={"out": out} if out else {},
                   helps={"pm": "training PM directory (optimised against)",
                          "test_pm": "held-out PM directory (e.g. the other split half)", "policy": "policy model spec"},
                   help=help)


def _distill_echo(cfg: Any, r: distill_mod.DistillResult) -> list[str]:
    s = r.summary
    return ([f"{name:15s} KL {v['value']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]" for name, v in s["kl"].items()]
            + [f"token-level / undistilled = {s['ratio_token_to_undistilled']:.3f}"])


def _online_echo(cfg: Any, r: online_mod.OnlineResult) -> list[str]:
    return [f"round {x['round']}: gold {100 * x['gold']['value']:.1f}% [{100 * x['gold']['lo']:.1f}, "
            f"{100 * x['gold']['hi']:.1f}]" for x in r.rounds]


def _quick_records(cfg: quick_mod.QuickConfig, r: quick_mod.QuickResult) -> list[Record]:
    """The split-half PMs' own record and report (``cfg.pm.out``), beside the frontier's."""
    sh, pconf = r.split_half, config_to_dict(cfg.pm)
    pms = sh.summary["pms"]
    head = {f"PM_{k.upper()} held-out accuracy %": {x: 100 * float(pms[k]["accuracy"][x]) for x in ("value", "lo", "hi")}
            for k in ("a", "b") if k in pms}
    return [Record(cfg.pm.out, "pm-split-half", pconf, sh.rows, lambda d: split_half_report(d, sh.summary, pconf), head)]


def _quick_echo(cfg: quick_mod.QuickConfig, r: quick_mod.QuickResult) -> list[str]:
    s = r.split_half.summary
    return ([f"PM_A {100 * s['pms']['a']['accuracy']['value']:.1f}%, PM_B {100 * s['pms']['b']['accuracy']['value']:.1f}% "
             f"held-out accuracy; agreement {100 * s['agreement']['value']:.1f}%"]
            + _points(r.frontier, "PM_B reward") + [f"PMs: {cfg.pm.out}/report.html"])


COMMANDS = [
    _frontier("frontier", None, "Best-of-N and RLOO against the training PM; test-PM reward and gold accuracy against sqrt(KL)."),
    _frontier("bon", "runs/rlhf-bon", "Best-of-N against the training PM (KL = log N - (N-1)/N), scored by the test PM "
              "and gold answers."),
    _frontier("rl", "runs/rlhf-rl", "RL with r = r_PM - beta KL (TRL's RLOO) against the training PM; each snapshot's KL, "
              "rewards, gold."),
    Command("distill", "rlhf-distill", distill_mod.DistillConfig,
            lambda cfg, m, ctx: distill_mod.run(cfg, progress=ctx.log), trainable=("base",),
            render=lambda d, r, conf: distill_report(d, r.summary, conf), echo=_distill_echo,
            helps={"base": "model to distil (a directory or hub id)"},
            help="Context distillation: the model without an HHH system prompt trained to match itself with it."),
    Command("online", "rlhf-online", online_mod.OnlineConfig,
            lambda cfg, m, ctx: online_mod.run(cfg, progress=ctx.log), trainable=("policy",),
            rows=lambda r: [{k: v for k, v in x.items() if k != "rl_history"} for x in r.rounds],
            render=lambda d, r, conf: online_report(d, config_to_dict(r), conf), echo=_online_echo,
            helps={"policy": "initial policy (a directory or hub id)", "rounds": "online rounds"},
            help="Iterated online RLHF: sample, label pairs by gold answers, retrain the PM on all rounds, RL; N rounds."),
    Command("quick", "rlhf-frontier", quick_mod.QuickConfig,
            lambda cfg, m, ctx: quick_mod.run(cfg, m.policy, ctx.store, progress=ctx.log), {"policy": "policy"},
            trainable=("policy",), out=lambda cfg: cfg.frontier.out, records=_quick_records,
            record_config=lambda cfg, r: config_to_dict(r.frontier_config),
            after=lambda cfg, r, ctx: export_pairs(cfg.pm.out, r.split_half),
            rows=lambda r: [dict(p) for p in r.frontier.points], headline=lambda r: fr.headline(r.frontier),
            render=lambda d, r, conf: frontier_report(d, r.frontier.to_dict(), config_to_dict(r.frontier_config)),
            echo=_quick_echo, descriptions={"policy": "policy samples"},
            helps={"policy": "policy model (a directory or hub id)"},
            help="Split-half PMs -> Best-of-N and RLOO against PM_A -> scored by PM_B and gold answers vs sqrt(KL)."),
]

add_commands(app, COMMANDS)


@app.command()
def dpo(rows: str = typer.Option(..., help="preference rows .jsonl (prompt, chosen, rejected)"),
        base: str = typer.Option("smollm2-135m", help="model to fine-tune"),
        out: str = typer.Option("runs/dpo", "--out", "-o"),
        beta: List[float] = typer.Option([0.1], help="beta (repeat for a sweep)"),
        set: List[str] = SET) -> None:
    """DPO (LoRA, reference = adapters off) for each beta; prints the chosen/rejected log-prob trend."""
    data = read_jsonl(rows, required=COLUMNS)
    path = require_trainable(base)
    cfgs = [config_from_yaml(DPOTrainConfig, None, list(set) + [f"beta={b}"]) for b in beta]
    summary = []
    for cfg in cfgs:
        res = train_dpo(data, path, Path(out) / f"beta-{cfg.beta:g}", cfg, base_id=base)
        row = {"beta": cfg.beta, "model_dir": str(res.model_dir), "last_loss": res.losses[-1] if res.losses else None,
               "logps_chosen": res.logps_chosen, "logps_rejected": res.logps_rejected, "margins": res.margins,
               "both_logps_fell": res.both_logps_fell, "seconds": res.seconds}
        summary.append(row)
        warn = "  (both log-probs fell: a known DPO failure)" if res.both_logps_fell else ""
        typer.echo(f"beta {cfg.beta:g}: loss {row['last_loss']}, margin {res.margins[-1] if res.margins else None}"
                   f" -> {res.model_dir}{warn}")
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "sweep.json").write_text(json.dumps(summary, indent=2))


