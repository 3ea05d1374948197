"""``selfalign honesty sample | build | train | eval | report | run``: one command per step of
:class:`~selfalign.honesty.pipeline.HonestyRun`, all with the same options, generated from
:class:`~selfalign.honesty.pipeline.HonestyConfig`'s fields (:func:`selfalign.command.config_command`;
``--method`` is repeatable)."""

from __future__ import annotations

from typing import Callable, List, Optional

import typer

from selfalign.command import config_command
from selfalign.honesty.datasets import METHODS
from selfalign.honesty.pipeline import STEPS, HonestyConfig, HonestyRun

app = typer.Typer(no_args_is_help=True, help="Alignment for Honesty: k(x), training sets, fine-tuning, metrics.")

STEP_HELP = {
    "sample": "k(x): greedy + M samples of the unaligned model on the training questions.",
    "build": "Build the training set of each method.",
    "train": "Fine-tune one model per trained method (LoRA by default).",
    "eval": "Evaluate every method against the unaligned model: transition table and scores.",
    "report": "Write report.html and report.json.",
    "run": "Every step, in order; each is resumable.",
}


def _execute(step: str, cfg: HonestyConfig) -> None:
    run = HonestyRun(cfg)
    if step == "run":
        typer.echo(f"report: {run.run(STEPS)}")
    elif step == "report":
        typer.echo(f"report: {run.report()}")
    else:
        run.run((step,))


def _body(step: str) -> Callable[[HonestyConfig], None]:
    return lambda cfg: _execute(step, cfg)


for _step in STEP_HELP:
    config_command(app, _step, HonestyConfig, _body(_step), help=STEP_HELP[_step], rename={"methods": "method"},
                   helps={"model": "unaligned model (default: smollm2-135m)", "out": "run directory",
                          "methods": "|".join(METHODS)})


@app.command("pkqa-build")
def pkqa_build(
    out: str = typer.Option(..., "--out", "-o", help="PKQA-format JSONL to write"),
    generator: str = typer.Option(..., "--generator", "-g", help="model that writes the questions (a model spec)"),
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="the unaligned model whose knowledge is kept"),
    topic: List[str] = typer.Option([], "--topic", help="a topic (repeatable; default: the released sample's topics)"),
    per_topic: int = typer.Option(20, "--per-topic", help="questions asked of the generator per topic"),
    temperature: float = typer.Option(1.0, "--temperature", help="generator's sampling temperature"),
    seed: int = typer.Option(0, "--seed"),
    store: Optional[str] = typer.Option(None, "--store", help="store database (default: the project's)"),
) -> None:
    """Build a PKQA-style set (Yang et al. 2023): generated questions the unaligned model answers correctly."""
    from pathlib import Path

    from selfalign.data.io import write_jsonl
    from selfalign.honesty.pkqa import TOPICS, build_pkqa
    from selfalign.command import store_loader
    from selfalign.models.registry import check_spec
    from selfalign.store.cache import Store

    if per_topic < 1:
        raise typer.BadParameter("--per-topic must be >= 1")
    if not Path(out).resolve().parent.is_dir():
        raise typer.BadParameter(f"--out {out}: folder {Path(out).resolve().parent} does not exist")
    check_spec(generator)
    check_spec(model)
    load = store_loader(Store(store))
    gen = load(generator)
    base = gen if generator == model else load(model)
    rows, counts = build_pkqa(gen, base, tuple(topic) or TOPICS, per_topic, temperature, seed)
    write_jsonl(Path(out), rows)
    typer.echo(f"{out}: {counts['known']} known questions of {counts['distinct']} distinct "
               f"({counts['generated']} generated, {counts['unparsed']} unparsed, {counts['wrong']} answered wrongly, "
               f"{counts['idk']} declined)")
