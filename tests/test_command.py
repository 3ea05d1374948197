"""The one command runner (selfalign.command): options generated from a config's fields, one
build order (defaults < YAML < --set < options), checks before any model loads, lazy roles, one
record writer; and every sub-CLI's registered command has an option for each scalar field."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from selfalign.command import Command, add_command, options
from selfalign.critique import cli as critique_cli
from selfalign.reward import cli as reward_cli
from selfalign.rlhf import cli as rlhf_cli
from selfalign.stage import Models, StageContext
from selfalign.synth import cli as synth_cli
from selfalign.types import GenRequest, user

ROOT = Path(__file__).resolve().parents[1] / "src" / "selfalign"
runner = CliRunner()


@dataclass
class Inner:
    k: int = 1


@dataclass
class ToyConfig:
    model: str = "scripted"
    judge: str = ""
    n_items: int = 2
    ratio: float = 0.5
    shout: bool = False
    mode: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=lambda: ["x"])
    inner: Inner = field(default_factory=Inner)
    out: str = "runs/toy"
    store: str = ""


@dataclass
class ToyResult:
    rows: list[dict]
    loaded: list[str]


def _toy_run(cfg: ToyConfig, models: Models, ctx: StageContext) -> ToyResult:
    if cfg.mode == "b":
        raise RuntimeError("mode b fails inside the run")
    texts = models.policy.generate([GenRequest(user(f"item {i}")) for i in range(cfg.n_items)])
    rows = [{"prompt": f"item {i}", "completion": t.texts[0].upper() if cfg.shout else t.texts[0],
             "meta": {"ratio": cfg.ratio, "tags": cfg.tags, "k": cfg.inner.k}} for i, t in enumerate(texts)]
    return ToyResult(rows, list(models.loaded))


def _app(**kw) -> tuple[typer.Typer, list]:
    app = typer.Typer()
    seen: list = []
    cmd = Command("toy", "toy-step", ToyConfig, _toy_run, {"policy": "model", "judge": "judge"},
                  render=lambda d, r, conf: _render(d, r, conf, seen), echo=lambda cfg, r: [f"{len(r.rows)} rows"], **kw)
    add_command(app, cmd)

    @app.command("other")
    def other() -> None:  # a second command, so typer keeps "toy" as a subcommand name
        pass

    return app, seen


def _render(d: Path, r: ToyResult, conf: dict, seen: list) -> Path:
    seen.append((r, conf))
    (d / "report.html").write_text("<html></html>")
    return d / "report.html"


def test_options_are_generated_from_the_config_fields():
    app, _ = _app()
    res = runner.invoke(app, ["toy", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", res.output)
    for opt in ("--config", "--set", "--model", "-m", "--judge", "--n-items", "--ratio", "--shout", "--no-shout",
                "--mode", "--tags", "--out", "-o", "--store"):
        assert opt in text, opt
    assert "--inner" not in text  # a nested config stays a --set key
    assert "a | b" in text  # a Literal lists its values


def test_build_order_and_the_record(tmp_path):
    app, seen = _app(defaults={"ratio": 0.25})
    yml = tmp_path / "c.yaml"
    yml.write_text("n_items: 5\nratio: 0.75\nshout: true\n")
    out = tmp_path / "o"
    res = runner.invoke(app, ["toy", "-c", str(yml), "--set", "n_items=4", "--set", "inner.k=7", "--n-items", "3",
                              "--tags", "p, q", "-o", str(out), "--store", str(tmp_path / "s.sqlite")])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 3  # the option beats --set, which beats the YAML
    assert rows[0]["meta"] == {"ratio": 0.75, "tags": ["p", "q"], "k": 7}  # YAML beats the command's default
    assert rows[0]["completion"] == rows[0]["completion"].upper()
    record = json.loads((out / "steps" / "toy-step.json").read_text())
    assert record["config"]["n_items"] == 3 and record["config"]["inner"] == {"k": 7}
    assert "rows.jsonl" in record["outputs"] and "report.html" in record["outputs"]
    (r, conf), = seen
    assert r.loaded == ["scripted"]  # the judge role was never asked for, so never loaded
    assert "3 rows" in res.output and f"report: {out / 'report.html'}" in res.output


def test_a_bad_option_names_its_field_and_nothing_runs(tmp_path):
    app, seen = _app()
    out = tmp_path / "o"
    res = runner.invoke(app, ["toy", "--set", "n_items=many", "-o", str(out)])
    assert res.exit_code != 0 and "n_items" in str(res.exception)
    res = runner.invoke(app, ["toy", "--set", "n_iterms=3", "-o", str(out)])
    assert res.exit_code != 0 and "did you mean 'n_items'" in str(res.exception)
    res = runner.invoke(app, ["toy", "--judge", "nosuchbackend:x", "-o", str(out)])
    assert res.exit_code != 0 and "nosuchbackend" in str(res.exception)
    assert not seen and not out.exists()


def test_a_run_that_raises_records_nothing(tmp_path):
    app, seen = _app()
    out = tmp_path / "o"
    res = runner.invoke(app, ["toy", "--mode", "b", "-o", str(out), "--store", str(tmp_path / "s.sqlite"),
                              "--tags", "a", "--tags", "b,c"])
    assert isinstance(res.exception, RuntimeError)
    assert not (out / "steps" / "toy-step.json").exists() and not seen


def test_a_registration_is_checked():
    with pytest.raises(ValueError, match="unknown role"):
        Command("x", "x", ToyConfig, _toy_run, {"grader": "model"})
    with pytest.raises(ValueError, match="field"):
        Command("x", "x", ToyConfig, _toy_run, {"policy": "modle"})
    with pytest.raises(ValueError, match="runner's own"):
        Command("x", "x", ToyConfig, _toy_run, rename={"mode": "set"})
    with pytest.raises(TypeError):
        Command("x", "x", dict, _toy_run)


ALL = [(m.__name__, c) for m in (synth_cli, critique_cli, reward_cli, rlhf_cli) for c in m.COMMANDS]


@pytest.mark.parametrize("where,cmd", ALL, ids=[f"{w.split('.')[1]}-{c.name}" for w, c in ALL])
def test_every_registered_command_has_an_option_per_scalar_field(where, cmd):
    hints = typing.get_type_hints(cmd.config)
    names = {o.field for o in options(cmd.config, cmd.rename, cmd.hidden, cmd.helps, cmd.argument)}
    for f in dataclasses.fields(cmd.config):
        scalar = hints[f.name] in (str, int, float, bool)
        if scalar and f.name != cmd.argument and f.name not in cmd.hidden:
            assert f.name in names, f"{where} {cmd.name}: no option for {f.name}"


def test_no_sub_cli_repeats_the_record_or_model_steps():
    """The record writer and the store-wrapped model are the runner's: no */cli.py calls them."""
    offenders = []
    for path in sorted(ROOT.glob("*/cli.py")):
        text = path.read_text()
        for needle in ("write_stage(", "CachedModel(", "load_model("):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders
