"""``selfalign honesty sample | build | train | eval | report | run``: one command per step of
:class:`~selfalign.honesty.pipeline.HonestyRun`, all with the same options."""

from __future__ import annotations

from typing import Callable, List, Optional

import typer

from selfalign.config import config_from_yaml

app = typer.Typer(no_args_is_help=True, help="Alignment for Honesty: k(x), training sets, fine-tuning, metrics.")

STEP_HELP = {
    "sample": "k(x): greedy + M samples of the unaligned model on the training questions.",
    "build": "Build the training set of each method.",
    "train": "Fine-tune one model per trained method (LoRA by default).",
    "eval": "Evaluate every method against the unaligned model: transition table and scores.",
    "report": "Write report.html and report.json.",
    "run": "Every step, in order; each is resumable.",
}


def _execute(step: str, config: Optional[str], overrides: List[str], model: Optional[str], method: List[str],
             out: Optional[str]) -> None:
    from selfalign.honesty.pipeline import STEPS, HonestyConfig, HonestyRun

    ovs = list(overrides)
    if model:
        ovs.append(f"model={model}")
    if method:
        ovs.append("methods=[" + ",".join(method) + "]")
    if out:
        ovs.append(f"out={out}")
    run = HonestyRun(config_from_yaml(HonestyConfig, config, ovs))
    if step == "run":
        typer.echo(f"report: {run.run(STEPS)}")
    elif step == "report":
        typer.echo(f"report: {run.report()}")
    else:
        run.run((step,))


def _command(step: str) -> Callable[..., None]:
    def command(
        config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config (keys of HonestyConfig)"),
        set: List[str] = typer.Option([], "--set", help="override a config key: --set train.epochs=1 (repeatable)"),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="unaligned model (default: smollm2-135m)"),
        method: List[str] = typer.Option([], "--method", help="absolute|confidence-num|confidence-verb|multisample|"
                                                               "finetuned|prompt (repeatable)"),
        out: Optional[str] = typer.Option(None, "--out", "-o", help="run directory"),
    ) -> None:
        _execute(step, config, set, model, method, out)

    command.__doc__ = STEP_HELP[step]
    return command


for _step in STEP_HELP:
    app.command(_step)(_command(_step))


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
