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
    table = Table("step", "stage", "cached", "evaluation cached", "options")
    table.add_row("00-base", escape(p.recipe.cfg.base), "", "yes" if p.base_eval_cached else "no", "")
    for s in p.stages:
        table.add_row(s.step, s.stage, "yes" if s.cached else "no", "yes" if s.eval_cached else "no",
                      escape(json.dumps(s.options, default=str)[:120]))
    Console().print(table)
    todo = sum(not s.cached for s in p.stages)
    typer.echo(f"{len(p.stages)} stages, {todo} to run; run folder {p.recipe.out}")


@app.command()
def run(file: str = typer.Argument(..., help="recipe YAML"), set: List[str] = SET,
        progress: bool = typer.Option(False, help="progress bars")) -> None:
    """Run every stage in order (finished stages are reused), the evaluation suite after each, and the report."""
    from selfalign.recipe import runner

    res = runner.run(_load(file, set), progress=progress)
    typer.echo(f"report: {res.report}")
