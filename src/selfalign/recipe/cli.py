"""``selfalign recipe plan FILE`` and ``selfalign recipe run FILE``.

The recipe machinery (every body of work, numpy, TRL's helpers) is imported inside the commands,
as every sub-CLI does, so that ``selfalign`` starts without it."""

from __future__ import annotations

import json
from typing import List

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from selfalign.config import apply_overrides, read_yaml

app = typer.Typer(no_args_is_help=True, help="A recipe: a base model and an ordered list of stages, one report.")

SET = typer.Option([], "--set", help="override a recipe key, e.g. out=runs/x (repeatable)")


def _load(path: str, overrides: List[str]):
    from selfalign.recipe.spec import build_recipe

    return build_recipe(apply_overrides(read_yaml(path), list(overrides)), path)


@app.command()
def plan(file: str = typer.Argument(..., help="recipe YAML"), set: List[str] = SET) -> None:
    """Validate every stage's options and input files, and print the stages and which are cached (loads no model)."""
    from selfalign.recipe import runner

    p = runner.plan(_load(file, set))
    from selfalign.recipe.estimate import fmt

    table = Table("step", "stage", "cached", "evaluation cached", "estimate (this machine)", "options set")
    table.add_row("00-base", escape(p.recipe.cfg.base), "", "yes" if p.base_eval_cached else "no",
                  "" if p.base_eval_cached else fmt(p.base_eval_seconds), "")
    if p.pm_cached is not None:
        table.add_row("eval-pm", "the eval PM (base model's pairs)", "yes" if p.pm_cached else "no", "",
                      "cached" if p.pm_cached else fmt(p.pm_seconds), "")
    for s in p.stages:
        cost = "cached" if s.cached and s.eval_cached else (
            fmt(None if s.seconds is None or s.eval_seconds is None else s.seconds + s.eval_seconds))
        table.add_row(s.step, s.stage, "yes" if s.cached else "no", "yes" if s.eval_cached else "no", cost,
                      escape(", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in s.changed.items())))
    Console(width=max(120, Console().width)).print(table)
    todo = sum(not s.cached for s in p.stages)
    total = p.total_seconds
    typer.echo(f"{len(p.stages)} stages, {todo} to run; run folder {p.recipe.out}; "
               f"time left: {fmt(total) if total is not None else 'not measured here (a stage or the evaluation never ran on this machine)'}")


@app.command()
def run(file: str = typer.Argument(..., help="recipe YAML"), set: List[str] = SET,
        progress: bool = typer.Option(False, help="progress bars")) -> None:
    """Run every stage in order (finished stages are reused), the evaluation suite after each, and the report."""
    from selfalign.recipe import runner

    res = runner.run(_load(file, set), progress=progress)
    typer.echo(f"report: {res.report}")
