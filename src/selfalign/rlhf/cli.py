"""``selfalign rlhf frontier | bon | rl | dpo | distill | online | quick``: policy training against preferences, and its analysis."""

from __future__ import annotations

import time
from typing import List, Optional

import typer

from selfalign.config import config_from_yaml, config_to_dict

app = typer.Typer(no_args_is_help=True, help="RLHF: DPO, RL with a KL penalty, Best-of-N vs RL, context distillation.")

CONFIG = typer.Option(None, "--config", "-c", help="YAML config")
SET = typer.Option([], "--set", help="override a config key (repeatable)")


def _policy_vs_pm(which: str, config, overrides, flags) -> None:
    """The body of ``frontier`` (both), ``bon`` and ``rl``: one config, one report."""
    from selfalign.models.registry import check_spec, load_model
    from selfalign.report.rlhf import frontier_report
    from selfalign.reward.pm import CachedPM, PreferenceModel
    from selfalign.rlhf import frontier as fr
    from selfalign.store.cache import CachedModel, Store
    from selfalign.store.runs import write_stage

    cfg = config_from_yaml(fr.FrontierConfig, config,
                           list(overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None])
    fr.require_pm(cfg)
    check_spec(cfg.policy)
    if which != "bon":
        from selfalign.models.registry import require_trainable

        require_trainable(cfg.policy, "policy", convert=False)
    t0 = time.time()
    store = Store(cfg.store or None)
    pol = CachedModel(load_model(cfg.policy), store, description="policy samples")
    train = CachedPM(PreferenceModel(cfg.pm, cfg.rl.max_length), store)
    test = CachedPM(PreferenceModel(cfg.test_pm, cfg.rl.max_length), store) if cfg.test_pm else None
    say = lambda m: typer.echo(f"[{which}] {m}", err=True)  # noqa: E731
    if which == "bon":
        res = fr.run_bon(cfg, pol, train, test, progress=say)
    elif which == "rl":
        res = fr.run_rl(cfg, pol, train, test, progress=say)
    else:
        res = fr.run(cfg, pol, train, test, progress=say)
    conf = config_to_dict(cfg)
    rows = [dict(p) for p in res.points]
    summary = res.to_dict()
    stage = write_stage(cfg.out, f"rlhf-{which}", conf, {}, rows, lambda d: frontier_report(d, summary, conf), None,
                        time.time() - t0)
    for p in res.points:
        what = f"N={p['n']}" if p["method"] == "bon" else f"step {p['step']}"
        typer.echo(f"{p['method']:<4s} {what:<9s} KL {p['kl']:.3f}  train reward {p['train_reward']['value']:.3f}  "
                   f"test reward {p['test_reward']['value']:.3f}  gold {100 * p['gold']['value']:.1f}%{_delta(p)}")
    typer.echo(f"report: {stage.report_path}")


def _delta(p: dict) -> str:
    d = (p.get("vs_initial") or {}).get("test_reward")
    return f"  (test reward {d['value']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] vs initial)" if d else ""


PM_OPT = typer.Option(None, help="training PM directory (optimised against)")
TEST_PM_OPT = typer.Option(None, help="held-out PM directory (e.g. the other split half)")
POLICY_OPT = typer.Option(None, help="policy model spec")


@app.command()
def frontier(config: Optional[str] = CONFIG, set: List[str] = SET,
             out: Optional[str] = typer.Option(None, "--out", "-o"), pm: Optional[str] = PM_OPT,
             test_pm: Optional[str] = TEST_PM_OPT, policy: Optional[str] = POLICY_OPT) -> None:
    """Best-of-N and RLOO against the training PM; test-PM reward and gold accuracy against sqrt(KL)."""
    _policy_vs_pm("frontier", config, set, {"out": out, "pm": pm, "test_pm": test_pm, "policy": policy})


@app.command()
def bon(config: Optional[str] = CONFIG, set: List[str] = SET,
        out: Optional[str] = typer.Option(None, "--out", "-o"), pm: Optional[str] = PM_OPT,
        test_pm: Optional[str] = TEST_PM_OPT, policy: Optional[str] = POLICY_OPT) -> None:
    """Best-of-N against the training PM (KL = log N - (N-1)/N), scored by the test PM and gold answers."""
    _policy_vs_pm("bon", config, set, {"out": out or "runs/rlhf-bon", "pm": pm, "test_pm": test_pm, "policy": policy})


@app.command()
def rl(config: Optional[str] = CONFIG, set: List[str] = SET,
       out: Optional[str] = typer.Option(None, "--out", "-o"), pm: Optional[str] = PM_OPT,
       test_pm: Optional[str] = TEST_PM_OPT, policy: Optional[str] = POLICY_OPT) -> None:
    """RL with r = r_PM - beta KL (TRL's RLOO) against the training PM; each snapshot's KL, rewards, gold."""
    _policy_vs_pm("rl", config, set, {"out": out or "runs/rlhf-rl", "pm": pm, "test_pm": test_pm, "policy": policy})


@app.command()
def dpo(rows: str = typer.Option(..., help="preference rows .jsonl (prompt, chosen, rejected)"),
        base: str = typer.Option("smollm2-135m", help="model to fine-tune"),
        out: str = typer.Option("runs/dpo", "--out", "-o"),
        beta: List[float] = typer.Option([0.1], help="beta (repeat for a sweep)"),
        set: List[str] = SET) -> None:
    """DPO (LoRA, reference = adapters off) for each beta; prints the chosen/rejected log-prob trend."""
    import json
    from pathlib import Path

    from selfalign.data.io import read_jsonl
    from selfalign.models.registry import require_trainable
    from selfalign.train.dpo import COLUMNS, DPOTrainConfig, train_dpo

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


@app.command()
def distill(config: Optional[str] = CONFIG, set: List[str] = SET,
            out: Optional[str] = typer.Option(None, "--out", "-o"),
            base: Optional[str] = typer.Option(None, help="model to distil (a directory or hub id)")) -> None:
    """Context distillation: the model without an HHH system prompt trained to match itself with it."""
    from selfalign.models.registry import check_spec, require_trainable
    from selfalign.report.rlhf import distill_report
    from selfalign.rlhf.distill import DistillConfig, run
    from selfalign.store.runs import write_stage

    cfg = config_from_yaml(DistillConfig, config, list(set) + [f"{k}={v}" for k, v in
                                                                {"out": out, "base": base}.items() if v is not None])
    check_spec(cfg.base)
    require_trainable(cfg.base, convert=False)
    t0 = time.time()
    res = run(cfg, progress=lambda m: typer.echo(f"[distill] {m}", err=True))
    s = res.summary
    conf = config_to_dict(cfg)
    stage = write_stage(cfg.out, "rlhf-distill", conf, {}, res.rows, lambda d: distill_report(d, s, conf), None,
                        time.time() - t0)
    for name, v in s["kl"].items():
        typer.echo(f"{name:15s} KL {v['value']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]")
    typer.echo(f"token-level / undistilled = {s['ratio_token_to_undistilled']:.3f}\nreport: {stage.report_path}")


@app.command()
def online(config: Optional[str] = CONFIG, set: List[str] = SET,
           out: Optional[str] = typer.Option(None, "--out", "-o"),
           policy: Optional[str] = typer.Option(None, help="initial policy (a directory or hub id)"),
           rounds: Optional[int] = typer.Option(None, help="online rounds")) -> None:
    """Iterated online RLHF: sample, label pairs by gold answers, retrain the PM on all rounds, RL; N rounds."""
    from selfalign.models.registry import check_spec, require_trainable
    from selfalign.report.rlhf import online_report
    from selfalign.rlhf.online import OnlineConfig, run
    from selfalign.store.runs import write_stage

    flags = {"out": out, "policy": policy, "rounds": rounds}
    cfg = config_from_yaml(OnlineConfig, config, list(set) + [f"{k}={v}" for k, v in flags.items() if v is not None])
    check_spec(cfg.policy)
    require_trainable(cfg.policy, "policy", convert=False)
    t0 = time.time()
    res = run(cfg, progress=lambda m: typer.echo(f"[online] {m}", err=True))
    conf = config_to_dict(cfg)
    rows = [{k: v for k, v in r.items() if k != "rl_history"} for r in res.rounds]
    s = config_to_dict(res)
    stage = write_stage(cfg.out, "rlhf-online", conf, {}, rows, lambda d: online_report(d, s, conf), None,
                        time.time() - t0)
    for r in res.rounds:
        g = r["gold"]
        typer.echo(f"round {r['round']}: gold {100 * g['value']:.1f}% [{100 * g['lo']:.1f}, {100 * g['hi']:.1f}]")
    typer.echo(f"report: {stage.report_path}")


@app.command()
def quick(config: Optional[str] = CONFIG, set: List[str] = SET,
          out: Optional[str] = typer.Option(None, "--out", "-o"),
          policy: Optional[str] = typer.Option(None, help="policy model (a directory or hub id)")) -> None:
    """Split-half PMs -> Best-of-N and RLOO against PM_A -> scored by PM_B and gold answers vs sqrt(KL)."""
    from selfalign.models.registry import check_spec, load_model, require_trainable
    from selfalign.report.reward import split_half_report
    from selfalign.report.rlhf import frontier_report
    from selfalign.reward.cli import export_pairs
    from selfalign.rlhf.frontier import headline as frontier_headline
    from selfalign.rlhf.quick import QuickConfig, run
    from selfalign.store.cache import CachedModel, Store
    from selfalign.store.runs import write_stage

    flags = {"out": out, "policy": policy}
    cfg = config_from_yaml(QuickConfig, config, list(set) + [f"{k}={v}" for k, v in flags.items() if v is not None])
    check_spec(cfg.policy)
    require_trainable(cfg.policy, "policy", convert=False)
    t0 = time.time()
    store = Store(cfg.store or None)
    pol = CachedModel(load_model(cfg.policy), store, description="policy samples")
    res = run(cfg, pol, store, progress=lambda m: typer.echo(f"[rlhf quick] {m}", err=True))
    sh = res.split_half
    pconf, fconf = config_to_dict(cfg.pm), config_to_dict(res.frontier_config)
    pms = sh.summary["pms"]
    pm_head = {f"PM_{k.upper()} held-out accuracy %": {x: 100 * float(pms[k]["accuracy"][x]) for x in ("value", "lo", "hi")}
               for k in ("a", "b") if k in pms}
    write_stage(cfg.pm.out, "pm-split-half", pconf, {}, sh.rows, lambda d: split_half_report(d, sh.summary, pconf),
                None, None, store.tally, headline=pm_head)
    export_pairs(cfg.pm.out, sh)
    fr = res.frontier
    fsummary = fr.to_dict()
    stage = write_stage(cfg.frontier.out, "rlhf-frontier", fconf, {}, [dict(p) for p in fr.points],
                        lambda d: frontier_report(d, fsummary, fconf), None, time.time() - t0, store.tally,
                        headline=frontier_headline(fr))
    s = sh.summary
    typer.echo(f"PM_A {100 * s['pms']['a']['accuracy']['value']:.1f}%, PM_B {100 * s['pms']['b']['accuracy']['value']:.1f}% "
               f"held-out accuracy; agreement {100 * s['agreement']['value']:.1f}%")
    for p in fr.points:
        what = f"N={p['n']}" if p["method"] == "bon" else f"step {p['step']}"
        typer.echo(f"{p['method']:<4s} {what:<9s} KL {p['kl']:.3f}  PM_B reward {p['test_reward']['value']:.3f}  "
                   f"gold {100 * p['gold']['value']:.1f}%{_delta(p)}")
    typer.echo(f"report: {stage.report_path} (PMs: {cfg.pm.out}/report.html); {time.time() - t0:.0f} s")
