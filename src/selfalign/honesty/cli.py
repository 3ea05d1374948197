"""``selfalign honesty sample | build | train | eval | report | run``."""

from __future__ import annotations

from typing import List, Optional

import typer

from selfalign.config import config_from_yaml

app = typer.Typer(no_args_is_help=True, help="Alignment for Honesty: k(x), training sets, fine-tuning, metrics.")

CONFIG = typer.Option(None, "--config", "-c", help="YAML config (keys of HonestyConfig)")
SET = typer.Option([], "--set", help="override a config key: --set train.epochs=1 (repeatable)")
MODEL = typer.Option(None, "--model", "-m", help="unaligned model spec (default: the embedded smollm2-135m)")
METHOD = typer.Option([], "--method", help="absolute|confidence-num|confidence-verb|multisample|finetuned|prompt (repeatable)")
OUT = typer.Option(None, "--out", "-o", help="run directory")


def _run(step: str | None, config: Optional[str], overrides: List[str], model: Optional[str], method: List[str],
         out: Optional[str]):
    from selfalign.honesty.pipeline import STEPS, HonestyConfig, HonestyRun

    ovs = list(overrides)
    if model:
        ovs.append(f"model={model}")
    if method:
        ovs.append("methods=[" + ",".join(method) + "]")
    if out:
        ovs.append(f"out={out}")
    cfg = config_from_yaml(HonestyConfig, config, ovs)
    run = HonestyRun(cfg)
    if step is None:
        report = run.run(STEPS)
        typer.echo(f"report: {report}")
    elif step == "report":
        typer.echo(f"report: {run.report()}")
    else:
        run.run((step,))


@app.command()
def sample(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
           method: List[str] = METHOD, out: Optional[str] = OUT) -> None:
    """k(x): greedy + M samples of the unaligned model on the training questions."""
    _run("sample", config, set, model, method, out)


@app.command()
def build(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
          method: List[str] = METHOD, out: Optional[str] = OUT) -> None:
    """Build the training set of each method."""
    _run("build", config, set, model, method, out)


@app.command()
def train(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
          method: List[str] = METHOD, out: Optional[str] = OUT) -> None:
    """Fine-tune one model per trained method (LoRA by default)."""
    _run("train", config, set, model, method, out)


@app.command("eval")
def evaluate(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
             method: List[str] = METHOD, out: Optional[str] = OUT) -> None:
    """Evaluate every method against the unaligned model: transition table and scores."""
    _run("eval", config, set, model, method, out)


@app.command()
def report(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
           method: List[str] = METHOD, out: Optional[str] = OUT) -> None:
    """Write report.html and report.json."""
    _run("report", config, set, model, method, out)


@app.command()
def run(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
        method: List[str] = METHOD, out: Optional[str] = OUT) -> None:
    """Every step, in order; each is resumable."""
    _run(None, config, set, model, method, out)
