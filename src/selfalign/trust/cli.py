"""``selfalign trust list | run | compare | judges | to-data | train | tradeoff``.

``run`` (a :class:`selfalign.command.Command` registration: options from :class:`TrustConfig`'s
fields) writes ``<out>/<study>/rows.jsonl`` + ``summary.json`` per study and ``<out>/report.html``
(+ ``report.json``, a step record) for all; every generation and judge call goes through the store,
so a killed run resumes without asking again. ``compare`` reads two runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from selfalign.command import Command, add_command
from selfalign.config import config_from_yaml, config_to_dict
from selfalign.data.io import read_jsonl
from selfalign.judges.refusal import recorded_validation
from selfalign.judges.registry import get_judge, judge_card
from selfalign.models.registry import check_spec, require_trainable
from selfalign.report.tradeoff import tradeoff_report
from selfalign.report.trust import compare_report, trust_report
from selfalign.stage import Models, StageContext
from selfalign.train.dpo import COLUMNS as DCOLS, DPOTrainConfig, train_dpo
from selfalign.train.base import check_rows
from selfalign.train.sft import COLUMNS, TrainConfig, train_sft
from selfalign.trust.run import (TrustConfig, TrustResult, compare as compare_runs, headline as trust_headline, prepare_studies, run as run_studies,
                                 refusal_rule_validation, trained_harm_validation, validate_parsers, validate_refusal_detector)
from selfalign.trust.studies import STUDIES
from selfalign.trust.taxonomy import CATEGORIES, studies_for
from selfalign.trust.to_data import to_data as make, write_data
from selfalign.trust.tradeoff import tradeoff as compute_tradeoff

app = typer.Typer(no_args_is_help=True, help=f"Trustworthiness evaluation after Liu et al. 2023 (7 x 29 taxonomy) and XSTest: {len(STUDIES)} studies.")

CONFIG = typer.Option(None, "--config", "-c", help="YAML config")
SET = typer.Option([], "--set", help="override a config key (repeatable)")


@app.command("list")
def list_() -> None:
    """The taxonomy (7 categories, 29 sub-categories) and the studies that measure each."""

    for cat, subs in CATEGORIES.items():
        typer.echo(cat)
        for s in subs:
            typer.echo(f"  {s:34s} {', '.join(studies_for(s)) or '-'}")
    typer.echo(f"studies: {', '.join(STUDIES)}")


def _run(cfg: TrustConfig, models: Models, ctx: StageContext) -> TrustResult:
    prepared = prepare_studies(cfg)  # every input file read before a model loads
    gen = models.get("teacher") if cfg.generator and cfg.generator != cfg.model else models.policy
    return run_studies(cfg, models.policy, gen, models.judge if cfg.judge else None, prepared, progress=ctx.log)


def _run_echo(cfg: TrustConfig, result: TrustResult) -> list[str]:
    lines = []
    for name, s in result.studies.items():
        h = s["metrics"][s["headline"]]
        val = (f"{100 * h['value']:.1f} [{100 * h['lo']:.1f}, {100 * h['hi']:.1f}]" if s["reliable"]
               else f"unreliable ({100 * s['judge']['unscored_share']:.0f}% unscored)")
        lines.append(f"{name:15s} {s['headline']:14s} {val}")
    return lines


add_command(app, Command(
    "run", "trust-run", TrustConfig, _run, {"policy": "model", "teacher": "generator", "judge": "judge"},
    rows=lambda r: [{"study": k, **{x: v for x, v in s.items() if x != "examples"}} for k, s in r.studies.items()],
    render=lambda d, r, conf: trust_report(d, config_to_dict(r), conf), headline=trust_headline,
    extra=lambda cfg, r: {"model": {"answers": r.model}}, echo=_run_echo,
    descriptions={"policy": "answers", "teacher": "safety questions", "judge": "judge"},
    helps={"model": "model under evaluation", "generator": "model that writes the safety questions (default: --model)",
           "judge": "LLM judge for safety (harm), misuse and xstest (refusal) (default: the rule refusal judge)",
           "studies": "comma-separated studies (default: all)"},
    help="Run the studies on one model; report with intervals, unscored shares and the coverage grid."))


@app.command()
def compare(a: str = typer.Argument(..., help="run directory A (e.g. the unaligned model)"),
            b: str = typer.Argument(..., help="run directory B"),
            out: str = typer.Option("runs/trust-compare", "--out", "-o"),
            studies: Optional[str] = typer.Option(None, help="comma-separated studies (default: all in both)")) -> None:
    """Two runs on the same items: paired differences and McNemar per study and per sub-category."""

    comp = compare_runs(a, b, [s.strip() for s in studies.split(",")] if studies else None)
    path = compare_report(out, comp)
    for name, d in comp["studies"].items():
        if not d["n_paired"]:
            typer.echo(f"{name:15s} no item scored in both runs")
            continue
        typer.echo(f"{name:15s} A {100 * d['a']:5.1f}  B {100 * d['b']:5.1f}  B-A {100 * d['diff']:+.1f} "
                   f"[{100 * d['diff_lo']:+.1f}, {100 * d['diff_hi']:+.1f}]  McNemar p {d['mcnemar']['p_value']:.3g}")
    typer.echo(f"report: {path}")


@app.command()
def judges() -> None:
    """The refusal judge on outside labels (XSTest, recorded), then the rule judges on the sets the project wrote."""
    rec = recorded_validation("refusal-rule")
    for part in ("tuned_on", "held_out"):
        d = rec[part]
        b = d.get("binary", {})
        typer.echo(f"refusal-rule, {part.replace('_', ' ')} ({d.get('source', '')}): n {d['n']}, three-class accuracy "
                   f"{100 * d['accuracy']:.1f}%, kappa {d['kappa']:.3f}; any refusal vs compliance "
                   f"{100 * b.get('accuracy', float('nan')):.1f}%, kappa {b.get('kappa', float('nan')):.3f}")
    typer.echo(f"  (re-measure: {rec.get('command', 'selfalign judge eval refusal-rule --data FILE')})")
    for split, d in validate_refusal_detector().items():
        typer.echo(f"refusal detector, {split}: {d['n']} items ({d['positives']} refusals), accuracy "
                   f"{100 * d['accuracy']:.1f}%, kappa {d['kappa']:.3f}")
        for e in d["errors"]:
            typer.echo(f"   wrong: {e}")
    for kind, d in validate_parsers().items():
        typer.echo(f"parser {kind}: {d['n']} items ({d['positives']} parseable), accuracy {100 * d['accuracy']:.1f}%, "
                   f"kappa (scored or not) {d['kappa']:.3f}")
        for e in d["errors"]:
            typer.echo(f"   wrong: {e}")


@app.command("to-data")
def to_data(run_dir: str = typer.Argument(..., help="a trust run directory (its safety, misuse, fairness rows)"),
            out: str = typer.Option("runs/trust-data", "--out", "-o"),
            heldout_share: float = typer.Option(0.5, help="share of keywords/requests/questions held out"),
            helpful_ratio: float = typer.Option(1.0, help="helpful QA rows (train split) per refusal row in sft.jsonl "
                                                "(0: refusals only)"),
            overrefusal: bool = typer.Option(False, help="add rows from the run's over-refusal answers: its own full "
                                             "compliance on safe prompts kept (DPO: chosen over a refusal), refusals "
                                             "for complied unsafe ones"),
            seed: int = typer.Option(0)) -> None:
    """Failures -> SFT rows (a refusal that says why, beside helpful QA rows), preference pairs, KTO rows; split by key."""

    data = make(run_dir, heldout_share, seed, helpful_ratio, overrefusal=overrefusal)
    paths = write_data(out, data)
    for study, c in data["counts"].items():
        if study == "helpful":
            typer.echo(f"helpful   {c['items']} QA rows from the train split (--helpful-ratio)")
            continue
        if study == "overrefusal":
            typer.echo(f"overrefusal {c['items']} items: {c['kept_answers']} own answers to safe prompts kept, "
                       f"{c['failures_used']} complied unsafe prompts -> refusals ({c['unscored_skipped']} unscored skipped)")
            continue
        typer.echo(f"{study:9s} {c['items']} items, {c['held_out']} held out, {c['failures_used']} failures -> rows"
                   f" ({c['unscored_skipped']} unscored skipped)")
    typer.echo(f"{len(data['sft'])} SFT rows, {len(data['pairs'])} pairs, {len(data['kto'])} KTO rows -> {out}\n"
               f"evaluate on the held-out keys: selfalign trust run --set holdout={paths['split']}")


@app.command()
def train(data_dir: str = typer.Argument(..., help="a `trust to-data` directory"),
          method: str = typer.Option("sft", help="sft (the refusals) | dpo (refusal chosen, failing answer rejected)"),
          base: str = typer.Option("smollm2-135m", help="model to fine-tune"),
          out: str = typer.Option("runs/trust-train", "--out", "-o"),
          set: List[str] = SET) -> None:
    """Train on the evaluation-made rows through the shared trainers (LoRA, resumable)."""


    if method not in ("sft", "dpo"):
        raise ValueError(f"method must be sft or dpo, got {method!r}")
    check_spec(base)
    name = {"sft": "sft.jsonl", "dpo": "pairs.jsonl"}[method]
    rows_path = Path(data_dir) / name

    # options and rows are checked before the base model is converted or loaded
    sft_cfg = config_from_yaml(TrainConfig, None, list(set)) if method == "sft" else None
    dpo_cfg = config_from_yaml(DPOTrainConfig, None, list(set)) if method == "dpo" else None
    rows = read_jsonl(str(rows_path), required=COLUMNS if method == "sft" else DCOLS)
    cfg = sft_cfg if sft_cfg is not None else dpo_cfg
    assert cfg is not None
    check_rows(rows, cfg, str(rows_path))  # zero rows or zero steps fail before the model is converted
    path = require_trainable(base)
    res = (train_sft(rows, path, out, sft_cfg, base_id=base) if sft_cfg is not None
           else train_dpo(rows, path, out, dpo_cfg, base_id=base))
    typer.echo(f"{method} on {len(rows)} rows -> {res.model_dir}{' (unchanged inputs: reused)' if res.skipped else ''}\n"
               f"re-evaluate: selfalign trust run -m {res.model_dir} --set holdout={Path(data_dir) / 'split.json'}")


@app.command()
def tradeoff(runs: List[str] = typer.Argument(..., help="NAME=RUN_DIR, the unaligned model's first (>= 2)"),
             harm_judge: Optional[str] = typer.Option(None, "--harm-judge", help="a trained harm judge directory "
                                                      "(selfalign judge train harm); without it safety is a refusal share"),
             out: str = typer.Option("runs/trust-tradeoff", "--out", "-o")) -> None:
    """The safety loop as a trade-off: harm-judge safe share, refusal share, over-refusal compliance and QA accuracy,
    each run paired with the first; one plot of safety against over-refusal."""
    pairs = []
    for r in runs:
        name, sep, path = r.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"expected NAME=RUN_DIR, got {r!r}")
        if not Path(path).is_dir():
            raise ValueError(f"{path}: not a trust run directory")
        pairs.append((name, path))
    judge = None
    cards = {"refusal_share": judge_card("refusal-rule", *refusal_rule_validation())}
    cards["xstest_compliance"] = cards["refusal_share"]
    if harm_judge:
        judge = get_judge("harm-trained").factory(path=harm_judge)
        val, source, per_source = trained_harm_validation(judge)
        cards["harm_safe_share"] = {**judge_card(f"harm-trained:{harm_judge}", val, source),
                                    **({"per_source": per_source} if per_source else {})}
    res = compute_tradeoff(pairs, judge, progress=lambda n: typer.echo(f"[tradeoff] {n}", err=True))
    page = tradeoff_report(out, res, cards, {"runs": runs, "harm_judge": harm_judge or ""})
    for r in res["runs"]:
        cells = []
        for m in res["measures"]:
            d = r["measures"].get(m)
            if d:
                p = r["paired"].get(m)
                extra = (f" ({100 * p['diff']:+.1f} [{100 * p['lo']:+.1f}, {100 * p['hi']:+.1f}])"
                         if p and p.get("n_paired") else "")
                cells.append(f"{m} {100 * d['value']:.1f}{extra}")
        typer.echo(f"{r['name']:12s} " + "; ".join(cells))
    typer.echo(f"report: {page}")
