"""``selfalign critique refine | bon | tamper | eval | fsbs``.

Every command: ``--config`` YAML and ``--set key=value`` overrides; model calls go through the
store, so a killed run resumes without asking again. Each writes ``<out>/rows.jsonl``,
``report.html`` (plots) and ``report.json``, and a step record through the one stage writer.
The critic, the policy and the judge are separate model options, so a strong critic
(``openai:``/``vllm:``) can check the embedded model and the other way round.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from selfalign.config import config_from_yaml, config_to_dict

app = typer.Typer(no_args_is_help=True, help="Self-critique: critique -> refine, Best-of-N, tampering, critic evaluation, FSBS.")

CONFIG = typer.Option(None, "--config", "-c", help="YAML config")
SET = typer.Option([], "--set", help="override a config key (repeatable)")
OUT = typer.Option(None, "--out", "-o", help="output directory")


def _cfg(cls, config, overrides, **flags):
    return config_from_yaml(cls, config, list(overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None])


def _check(*specs: str) -> None:
    """Every model option names a model, checked before any input is read or model loaded."""
    from selfalign.models.registry import check_spec

    for spec in specs:
        if spec:
            check_spec(spec)


def _model(spec: str, store: str, description: str):
    from selfalign.models.registry import load_model
    from selfalign.store.cache import CachedModel, Store

    return CachedModel(load_model(spec), Store(store or None), description=description)


@app.command()
def tamper(config: Optional[str] = CONFIG, set: List[str] = SET, out: Optional[str] = OUT,
           data: Optional[str] = typer.Option(None, help="bundled | HumanEval-format JSONL(.gz)"),
           per_problem: Optional[int] = typer.Option(None, help="kept bugs per problem at most")) -> None:
    """Insert bugs into code with tests (AST mutants); keep those the tests catch."""
    import time

    from selfalign.critique.tamper import TamperConfig, load_problems, run
    from selfalign.report.critique import tamper_report
    from selfalign.store.runs import input_hashes, write_stage

    cfg = _cfg(TamperConfig, config, set, out=out, data=data, per_problem=per_problem)
    _check(cfg.adversarial_critic)
    load_problems(cfg.data)  # a bad file fails here, before any test runs
    t0 = time.time()
    res = run(cfg, progress=lambda i, n: typer.echo(f"\r[tamper] {i}/{n} problems", nl=False, err=True))
    typer.echo("", err=True)
    counts = res.counts()
    kept = res.kept
    if cfg.adversarial_critic:
        from selfalign.critique.critic import adversarial_filter

        kept, adv = adversarial_filter(_model(cfg.adversarial_critic, "", "critiques"), res.kept,
                                       load_problems(cfg.data), cfg.adversarial_samples, seed=cfg.seed)
        counts.update(adv)
    rows = [m.to_row() for m in kept]
    conf = config_to_dict(cfg)
    stage = write_stage(cfg.out, "critique-tamper", conf, input_hashes([cfg.data]), rows,
                        lambda d: tamper_report(d, counts, rows, conf), counts, time.time() - t0)
    typer.echo(f"{counts['kept']} bugs kept over {counts['kinds_kept']} kinds ({counts['equivalent']} equivalent "
               f"mutants) -> {stage.rows_path}\nreport: {stage.report_path}")
    if cfg.adversarial_critic:
        typer.echo(f"adversarial filter: {counts['adversarial_dropped']} bugs the critic caught in every one of "
                   f"{cfg.adversarial_samples} critiques dropped, {len(rows)} written")


@app.command("eval")
def evaluate(config: Optional[str] = CONFIG, set: List[str] = SET, out: Optional[str] = OUT,
             critic: Optional[str] = typer.Option(None, help="critic model spec (default: the embedded model)"),
             tampered: Optional[str] = typer.Option(None, help="a tamper stage's rows.jsonl"),
             data: Optional[str] = typer.Option(None, help="problems: bundled | HumanEval-format JSONL(.gz)")) -> None:
    """Critique tampered and clean code; CBI vs a random-highlight baseline, false alarms, DC gap."""
    import time

    from selfalign.critique.critic import CriticConfig, load_items, run
    from selfalign.report.critique import critic_report
    from selfalign.store.runs import input_hashes, write_stage

    cfg = _cfg(CriticConfig, config, set, out=out, critic=critic, tampered=tampered, data=data)
    _check(cfg.critic)
    items, made = load_items(cfg)  # every input checked before the model loads
    t0 = time.time()
    res = run(cfg, _model(cfg.critic, cfg.store, "critiques"), items)
    res.summary.update(made)
    conf = config_to_dict(cfg)
    stage = write_stage(cfg.out, "critique-eval", conf, input_hashes([cfg.data, cfg.tampered]), res.rows,
                        lambda d: critic_report(d, res.summary, res.rows, conf), None, time.time() - t0)
    s = res.summary
    cbi, rnd = s.get("cbi", {}), s.get("random_cbi", {})
    typer.echo(f"CBI {100 * cbi.get('value', float('nan')):.1f}% vs random {100 * rnd.get('value', float('nan')):.1f}%, "
               f"false alarms {100 * s.get('false_alarm', {}).get('value', float('nan')):.1f}%\nreport: {stage.report_path}")


@app.command()
def bon(config: Optional[str] = CONFIG, set: List[str] = SET, out: Optional[str] = OUT,
        model: Optional[str] = typer.Option(None, "--model", "-m", help="policy model spec"),
        judge: Optional[str] = typer.Option(None, help="judge model spec (scorer=judge)"),
        scorer: Optional[str] = typer.Option(None, help="gold | logprob | judge")) -> None:
    """Best-of-N: accuracy for each N beside the KL bound; SFT rows (best) and preference pairs."""
    import time

    from selfalign.critique.bon import BonConfig, load_items, run
    from selfalign.report.critique import bon_report
    from selfalign.store.runs import RunDir, input_hashes, write_stage

    cfg = _cfg(BonConfig, config, set, out=out, model=model, judge=judge, scorer=scorer)
    _check(cfg.model, cfg.judge)
    items = load_items(cfg)
    t0 = time.time()
    policy = _model(cfg.model, cfg.store, "best-of-N samples")
    jdg = _model(cfg.judge, cfg.store, "judge") if cfg.scorer == "judge" and cfg.judge else None
    res = run(cfg, policy, jdg, items)
    RunDir(cfg.out).write_jsonl("pairs.jsonl", res.pairs)
    conf = config_to_dict(cfg)
    stage = write_stage(cfg.out, "critique-bon", conf, input_hashes([cfg.data]), res.rows,
                        lambda d: bon_report(d, res.summary, conf), None, time.time() - t0)
    for r in res.summary["table"]:
        typer.echo(f"N={r['n']:<3d} KL={r['kl']:.3f}  accuracy {100 * r['accuracy']:.1f}% [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]")
    typer.echo(f"{len(res.rows)} SFT rows, {len(res.pairs)} pairs -> {cfg.out}\nreport: {stage.report_path}")


@app.command()
def refine(config: Optional[str] = CONFIG, set: List[str] = SET, out: Optional[str] = OUT,
           model: Optional[str] = typer.Option(None, "--model", "-m", help="policy model spec (answers, refines)"),
           critic: Optional[str] = typer.Option(None, help="critic model spec (default: the policy)"),
           judge: Optional[str] = typer.Option(None, help="judge model spec (scorer=judge)"),
           scorer: Optional[str] = typer.Option(None, help="the gate: gold | judge | logprob"),
           rounds: Optional[int] = typer.Option(None, help="refinement rounds")) -> None:
    """Critique -> refine and direct refinement, each gated by a scorer and ungated: fixes and regressions."""
    import time

    from selfalign.critique.refine import RefineConfig, load_items, run
    from selfalign.report.critique import refine_report
    from selfalign.store.runs import RunDir, input_hashes, write_stage

    cfg = _cfg(RefineConfig, config, set, out=out, model=model, critic=critic, judge=judge, scorer=scorer,
               rounds=rounds)
    _check(cfg.model, cfg.critic, cfg.judge)
    items = load_items(cfg)
    t0 = time.time()
    policy = _model(cfg.model, cfg.store, "answers and refinements")
    crit = _model(cfg.critic, cfg.store, "critiques") if cfg.critic else None
    jdg = _model(cfg.judge, cfg.store, "judge") if cfg.scorer == "judge" and cfg.judge else None
    res = run(cfg, policy, crit, jdg, items)
    RunDir(cfg.out).write_jsonl("pairs.jsonl", res.pairs)
    conf = config_to_dict(cfg)
    stage = write_stage(cfg.out, "critique-refine", conf, input_hashes([cfg.data]), res.rows,
                        lambda d: refine_report(d, res.summary, res.rows, conf), None, time.time() - t0)
    s = res.summary
    typer.echo(f"first answers {100 * s['initial']['value']:.1f}% right")
    for lp in s["loops"]:
        typer.echo(f"{lp['mode']:<8s} {lp['gating']:<8s} {100 * lp['accuracy']['value']:.1f}%  fixes {lp['fixes']:<3d} "
                   f"regressions {lp['regressions']:<3d} accepted {lp['accepted']}/{lp['refinements']}")
    typer.echo(f"{s['pairs']} preference pairs -> {cfg.out}/pairs.jsonl\nreport: {stage.report_path}")


@app.command()
def fsbs(config: Optional[str] = CONFIG, set: List[str] = SET, out: Optional[str] = OUT,
         critic: Optional[str] = typer.Option(None, help="critic model spec (default: the embedded model)"),
         judge: Optional[str] = typer.Option(None, help="judge model spec (scorer=judge)"),
         tampered: Optional[str] = typer.Option(None, help="a tamper stage's rows.jsonl"),
         data: Optional[str] = typer.Option(None, help="problems: bundled | HumanEval-format JSONL(.gz)")) -> None:
    """Force Sampling Beam Search over critiques; CBI and false alarms for each LENGTH_MODIFIER percentile."""
    import time

    from selfalign.critique.fsbs import FsbsConfig, run
    from selfalign.critique.critic import load_items
    from selfalign.report.critique import fsbs_report
    from selfalign.store.runs import RunDir, input_hashes, write_stage

    cfg = _cfg(FsbsConfig, config, set, out=out, critic=critic, judge=judge, tampered=tampered, data=data)
    _check(cfg.critic, cfg.judge)
    items, made = load_items(cfg)
    t0 = time.time()
    crit = _model(cfg.critic, cfg.store, "critiques")
    jdg = _model(cfg.judge, cfg.store, "judge") if cfg.scorer == "judge" and cfg.judge else None
    res = run(cfg, crit, jdg, items)
    res.summary.update(made)
    RunDir(cfg.out).write_jsonl("candidates.jsonl", res.candidates)
    conf = config_to_dict(cfg)
    stage = write_stage(cfg.out, "critique-fsbs", conf, input_hashes([cfg.data, cfg.tampered]), res.rows,
                        lambda d: fsbs_report(d, res.summary, res.rows, conf), None, time.time() - t0)
    def pct(d: Optional[dict]) -> str:
        return f"{100 * d['value']:.1f}%" if d else "-"

    for st in res.summary["settings"]:
        typer.echo(f"{st['setting']:<13s} CBI {pct(st.get('cbi'))} vs random {pct(st.get('random_cbi'))}, "
                   f"false alarms {pct(st.get('false_alarm'))}")
    typer.echo(f"report: {stage.report_path}")


@app.command()
def elo(runs: List[str] = typer.Argument(..., help="NAME=<critique eval rows.jsonl>, two or more"),
        judge: str = typer.Option(..., help="judge model spec (a strong one: the embedded model follows the position)"),
        out: str = typer.Option("runs/critique-elo", "--out", "-o"), store: str = typer.Option("", help="store path")
        ) -> None:
    """Elo between critics: a pairwise judge compares their critiques of the same code, both orders."""
    import json
    from pathlib import Path

    from selfalign.critique.critic import compare_critics
    from selfalign.data.io import read_jsonl

    _check(judge)
    named = {}
    for spec in runs:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise typer.BadParameter(f"{spec!r}: expected NAME=<an existing rows.jsonl>")
        named[name] = list(read_jsonl(path))
    res = compare_critics(named, _model(judge, store, "judge"))
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "report.json").write_text(json.dumps(res, indent=2))
    for name, r in sorted(res["elo"].items(), key=lambda kv: -kv[1]):
        typer.echo(f"{name:<20s} Elo {r:.0f}")
    typer.echo(f"{res['items']} items; judge unscored {res['judge_unscored']}, flipped {res.get('judge_flipped', 0)}")
