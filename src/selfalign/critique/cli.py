"""``selfalign critique refine | bon | tamper | eval | fsbs | elo``.

``tamper``, ``eval``, ``bon``, ``refine`` and ``fsbs`` are :class:`selfalign.command.Command`
registrations: options generated from each config's fields (``--config`` YAML and ``--set
key=value`` overrides too), model calls through the store, so a killed run resumes without asking
again, and the one command runner writes ``<out>/rows.jsonl``, ``report.html`` (plots) and
``report.json`` and the step record. The critic, the policy and the judge are separate model
options, so a strong critic (``openai:``/``vllm:``) can check the embedded model and the other way
round. ``elo`` takes a list of runs, not a config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import typer

from selfalign.command import Command, add_commands, store_loader
from selfalign.critique import bon, critic, fsbs, refine, tamper
from selfalign.data.io import read_jsonl
from selfalign.models.registry import check_spec
from selfalign.report.critique import bon_report, critic_report, fsbs_report, refine_report, tamper_report
from selfalign.stage import Models, StageContext
from selfalign.store.cache import Store
from selfalign.store.runs import RunDir

app = typer.Typer(no_args_is_help=True, help="Self-critique: critique -> refine, Best-of-N, tampering, critic evaluation, FSBS.")


@dataclass
class TamperRun:
    """The kept bugs as rows, and the counts (the adversarial filter's included when it ran)."""

    rows: list[dict[str, Any]]
    counts: dict[str, Any]


def _tamper(cfg: tamper.TamperConfig, models: Models, ctx: StageContext) -> TamperRun:
    tamper.load_problems(cfg.data)  # a bad file fails here, before any test runs
    res = tamper.run(cfg, progress=lambda i, n: typer.echo(f"\r[tamper] {i}/{n} problems", nl=False, err=True))
    typer.echo("", err=True)
    counts, kept = res.counts(), res.kept
    if cfg.adversarial_critic:
        kept, adv = critic.adversarial_filter(models.critic, res.kept, tamper.load_problems(cfg.data),
                                              cfg.adversarial_samples, seed=cfg.seed)
        counts.update(adv)
    return TamperRun([m.to_row() for m in kept], counts)


def _tamper_echo(cfg: tamper.TamperConfig, r: TamperRun) -> list[str]:
    c = r.counts
    lines = [f"{c['kept']} bugs kept over {c['kinds_kept']} kinds ({c['equivalent']} equivalent mutants) -> "
             f"{Path(cfg.out) / 'rows.jsonl'}"]
    if cfg.adversarial_critic:
        lines.append(f"adversarial filter: {c['adversarial_dropped']} bugs the critic caught in every one of "
                     f"{cfg.adversarial_samples} critiques dropped, {len(r.rows)} written")
    return lines


def _critics(cfg: critic.CriticConfig, models: Models, ctx: StageContext) -> critic.CriticResult:
    items, made = critic.load_items(cfg)  # every input checked before the critic loads
    res = critic.run(cfg, models.critic, items)
    res.summary.update(made)
    return res


def _pct(d: Optional[dict]) -> str:
    return f"{100 * d['value']:.1f}%" if d else "-"


def _critic_echo(cfg: Any, r: critic.CriticResult) -> list[str]:
    s = r.summary
    return [f"CBI {_pct(s.get('cbi'))} vs random {_pct(s.get('random_cbi'))}, false alarms {_pct(s.get('false_alarm'))}"]


def _judge(cfg: Any, models: Models) -> Any:
    """The judge when the scorer is one (its own model, or the policy/critic it defaults to)."""
    return models.judge if cfg.scorer == "judge" and cfg.judge else None


def _bon(cfg: bon.BonConfig, models: Models, ctx: StageContext) -> bon.BonResult:
    items = bon.load_items(cfg)
    return bon.run(cfg, models.policy, _judge(cfg, models), items)


def _bon_echo(cfg: bon.BonConfig, r: bon.BonResult) -> list[str]:
    return [f"N={t['n']:<3d} KL={t['kl']:.3f}  accuracy {100 * t['accuracy']:.1f}% [{100 * t['lo']:.1f}, {100 * t['hi']:.1f}]"
            for t in r.summary["table"]] + [f"{len(r.rows)} SFT rows, {len(r.pairs)} pairs -> {cfg.out}"]


def _refine(cfg: refine.RefineConfig, models: Models, ctx: StageContext) -> refine.RefineResult:
    items = refine.load_items(cfg)
    return refine.run(cfg, models.policy, models.critic if cfg.critic else None, _judge(cfg, models), items)


def _refine_echo(cfg: refine.RefineConfig, r: refine.RefineResult) -> list[str]:
    s = r.summary
    return ([f"first answers {100 * s['initial']['value']:.1f}% right"]
            + [f"{lp['mode']:<8s} {lp['gating']:<8s} {100 * lp['accuracy']['value']:.1f}%  fixes {lp['fixes']:<3d} "
               f"regressions {lp['regressions']:<3d} accepted {lp['accepted']}/{lp['refinements']}" for lp in s["loops"]]
            + [f"{s['pairs']} preference pairs -> {cfg.out}/pairs.jsonl"])


def _fsbs(cfg: fsbs.FsbsConfig, models: Models, ctx: StageContext) -> fsbs.FsbsResult:
    items, made = critic.load_items(cfg)
    res = fsbs.run(cfg, models.critic, _judge(cfg, models), items)
    res.summary.update(made)
    return res


def _fsbs_echo(cfg: Any, r: fsbs.FsbsResult) -> list[str]:
    return [f"{st['setting']:<13s} CBI {_pct(st.get('cbi'))} vs random {_pct(st.get('random_cbi'))}, "
            f"false alarms {_pct(st.get('false_alarm'))}" for st in r.summary["settings"]]


def _code_inputs(cfg: Any) -> list[str]:
    return [f for f in (cfg.data, getattr(cfg, "tampered", "")) if f and Path(f).is_file()]


def _write(name: str, attr: str):
    """``after``: write the result's ``attr`` rows beside the run's rows as ``name``."""
    def after(cfg: Any, res: Any, ctx: StageContext) -> None:
        RunDir(cfg.out).write_jsonl(name, getattr(res, attr))
    return after


COMMANDS = [
    Command("tamper", "critique-tamper", tamper.TamperConfig, _tamper, {"critic": "adversarial_critic"},
            inputs=_code_inputs, stats=lambda r: r.counts,
            render=lambda d, r, conf: tamper_report(d, r.counts, r.rows, conf), echo=_tamper_echo,
            descriptions={"critic": "critiques"},
            helps={"data": "bundled | HumanEval-format JSONL(.gz)", "per_problem": "kept bugs per problem at most"},
            help="Insert bugs into code with tests (AST mutants); keep those the tests catch."),
    Command("eval", "critique-eval", critic.CriticConfig, _critics, {"critic": "critic"}, inputs=_code_inputs,
            render=lambda d, r, conf: critic_report(d, r.summary, r.rows, conf), echo=_critic_echo,
            descriptions={"critic": "critiques"},
            helps={"critic": "critic model spec (default: the embedded model)",
                   "tampered": "a tamper stage's rows.jsonl", "data": "problems: bundled | HumanEval-format JSONL(.gz)"},
            help="Critique tampered and clean code; CBI vs a random-highlight baseline, false alarms, DC gap."),
    Command("bon", "critique-bon", bon.BonConfig, _bon, {"policy": "model", "judge": "judge"}, inputs=_code_inputs,
            render=lambda d, r, conf: bon_report(d, r.summary, conf), after=_write("pairs.jsonl", "pairs"),
            echo=_bon_echo, descriptions={"policy": "best-of-N samples", "judge": "judge"},
            helps={"model": "policy model spec", "judge": "judge model spec (scorer=judge)",
                   "scorer": "gold | logprob | judge"},
            help="Best-of-N: accuracy for each N beside the KL bound; SFT rows (best) and preference pairs."),
    Command("refine", "critique-refine", refine.RefineConfig, _refine,
            {"policy": "model", "critic": "critic", "judge": "judge"}, inputs=_code_inputs,
            render=lambda d, r, conf: refine_report(d, r.summary, r.rows, conf), after=_write("pairs.jsonl", "pairs"),
            echo=_refine_echo,
            descriptions={"policy": "answers and refinements", "critic": "critiques", "judge": "judge"},
            helps={"model": "policy model spec (answers, refines)", "critic": "critic model spec (default: the policy)",
                   "judge": "judge model spec (scorer=judge)", "scorer": "the gate: gold | judge | logprob",
                   "rounds": "refinement rounds"},
            help="Critique -> refine and direct refinement, each gated by a scorer and ungated: fixes and regressions."),
    Command("fsbs", "critique-fsbs", fsbs.FsbsConfig, _fsbs, {"critic": "critic", "judge": "judge"},
            inputs=_code_inputs, render=lambda d, r, conf: fsbs_report(d, r.summary, r.rows, conf),
            after=_write("candidates.jsonl", "candidates"), echo=_fsbs_echo,
            descriptions={"critic": "critiques", "judge": "judge"},
            helps={"critic": "critic model spec (default: the embedded model)", "judge": "judge model spec (scorer=judge)",
                   "tampered": "a tamper stage's rows.jsonl", "data": "problems: bundled | HumanEval-format JSONL(.gz)"},
            help="Force Sampling Beam Search over critiques; CBI and false alarms for each LENGTH_MODIFIER percentile."),
]

add_commands(app, COMMANDS)


@app.command()
def elo(runs: List[str] = typer.Argument(..., help="NAME=<critique eval rows.jsonl>, two or more"),
        judge: str = typer.Option(..., help="judge model spec (a strong one: the embedded model follows the position)"),
        out: str = typer.Option("runs/critique-elo", "--out", "-o"), store: str = typer.Option("", help="store path")
        ) -> None:
    """Elo between critics: a pairwise judge compares their critiques of the same code, both orders."""
    check_spec(judge)
    named = {}
    for spec in runs:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise typer.BadParameter(f"{spec!r}: expected NAME=<an existing rows.jsonl>")
        named[name] = list(read_jsonl(path))
    res = critic.compare_critics(named, store_loader(Store(store or None), {"judge": "judge"}, {"judge": judge})(judge))
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "report.json").write_text(json.dumps(res, indent=2))
    for name, r in sorted(res["elo"].items(), key=lambda kv: -kv[1]):
        typer.echo(f"{name:<20s} Elo {r:.0f}")
    typer.echo(f"{res['items']} items; judge unscored {res['judge_unscored']}, flipped {res.get('judge_flipped', 0)}")
