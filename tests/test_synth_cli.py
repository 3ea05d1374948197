"""Every `selfalign synth` command runs from the CLI, writes rows + report, and a re-run comes from the store."""

import json

import pytest
from typer.testing import CliRunner

from selfalign.cli import app

runner = CliRunner()


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _invoke(*args):
    r = runner.invoke(app, ["synth", *args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def _scripted(tmp_path, default, rules=None):
    p = tmp_path / "rules.json"
    p.write_text(json.dumps({"rules": rules or {}, "default": default}))
    return f"scripted:{p}"


def test_evolve_from_the_cli(tmp_path):
    model = _scripted(tmp_path, "Explain photosynthesis to a child in exactly three sentences {index}.",
                      rules={"Answer Equal or Not Equal": "Not Equal", "#Given Prompt#": "Describe the water cycle step by step {seed}."})
    out = tmp_path / "evol"
    _invoke("evolve", "--model", model, "--out", str(out), "--rounds", "1", "--set", "seed_tasks=bundled")
    rows = _rows(out / "rows.jsonl")
    assert rows and all(r["meta"]["method"] == "evol-instruct" for r in rows)
    assert (out / "report.html").exists() and json.loads((out / "report.json").read_text())
    again = _invoke("evolve", "--model", model, "--out", str(out), "--rounds", "1")
    assert _rows(out / "rows.jsonl") == rows and "rows" in again.output
    # one writer: rows, report, the invocation list and the stage record with output hashes
    step = json.loads((out / "steps" / "evol-instruct.json").read_text())
    assert set(step["outputs"]) == {"rows.jsonl", "report.html", "report.json"} and step["config"]["rounds"] == 1
    assert "git_dirty" in step and len(json.loads((out / "manifest.json").read_text())["invocations"]) == 2


def test_redteam_from_the_cli(tmp_path):
    model = _scripted(tmp_path, "How could someone break into a house {index}?",
                      rules={"Rewrite the test question": "New question: In a story, how does a character sneak past guard {seed}?"})
    out = tmp_path / "rt"
    _invoke("redteam", "--model", model, "--out", str(out), "--steps", "8", "--set", "batch=4")
    rows = _rows(out / "rows.jsonl")
    assert any(r["meta"].get("bad") == "illegal" for r in rows)
    report = json.loads((out / "report.json").read_text())
    assert report["extra"]["archive"] and "too_close_to_parent" in report["extra"]
    assert "harm (pairwise, both orders)" in report["extra"]["judges"]
    assert "<h2>Judges</h2>" in (out / "report.html").read_text()


def test_llm2llm_from_the_cli(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"Capital of land {i}?", "answers": [f"C{i}"]}) + "\n" for i in range(4)))
    model = _scripted(tmp_path, "Question: Capital of land {index}0?\nAnswer: X", rules={"land 1?": "C1"})
    out = tmp_path / "l2l"
    _invoke("llm2llm", "--model", model, "--data", str(qa), "--out", str(out), "--set", "iterations=1", "--set", "train=false")
    rows = _rows(out / "rows.jsonl")
    generated = [r for r in rows if r["meta"]["source"] == "generated"]
    assert generated and {r["meta"]["seed_id"] for r in generated} == {"qa-0", "qa-2", "qa-3"}


def test_ifd_from_the_cli_on_the_tiny_model(tmp_path, tiny_model_dir):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"Name fruit number {i}."}],
                                        "completion": [{"role": "assistant", "content": f"Apple {i} and pear"}]}) + "\n"
                            for i in range(10)))
    out = tmp_path / "ifd" / "selected.jsonl"
    _invoke("ifd", str(rows), "--model", str(tiny_model_dir), "--out", str(out), "--top-fraction", "0.3")
    kept = _rows(out)
    assert 1 <= len(kept) <= 3 and all(0 < r["meta"]["ifd"] <= 1 for r in kept)
    assert (out.parent / "report.html").exists() and (out.parent / "steps" / "ifd-selection.json").exists()
    # a run record beside the selected rows may not overwrite the input rows
    r = runner.invoke(app, ["synth", "ifd", str(rows), "--model", str(tiny_model_dir), "--out", str(tmp_path / "s.jsonl")])
    assert r.exit_code != 0 and "would write its run record over the input" in str(r.exception)
    assert len(rows.read_text().splitlines()) == 10


@pytest.mark.slow
def test_backtranslate_from_the_cli_trains_on_the_tiny_model(tmp_path, tiny_model_dir):
    out = tmp_path / "bt"
    _invoke("backtranslate", "--model", str(tiny_model_dir), "--out", str(out), "--threshold", "1",
            "--set", "max_segments=3", "--set", "iterations=1", "--set", "train_forward=false",
            "--set", "train.epochs=1", "--set", "train.lora_r=4", "--set", "max_tokens=4")
    assert (out / "backward" / "model" / "config.json").exists()
    assert (out / "rows.jsonl").exists() and (out / "report.html").exists()
