"""`selfalign runs`: every run on one page, and two runs compared item by item (issue 28)."""

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from selfalign.cli import app
from selfalign.evals.runs import compare, find_runs, read_run
from selfalign.store.runs import RunDir

runner = CliRunner()


def make_run(path, kind, correct, honesty, finished=True):
    run = RunDir(path)
    run.write_manifest({"seed": 0}, seed=0, command=f"selfalign {kind} run")
    run.record_step(kind, {}, {}, [], 2.0)
    run.write_jsonl("eval/m.jsonl", [{"id": f"q{i}", "loosely_correct": c} for i, c in enumerate(correct)])
    acc = 100 * sum(correct) / len(correct)
    run.write_metrics(kind, {
        "m/accuracy": {"value": acc, "lo": acc - 5, "hi": acc + 5,
                       "items": {"file": "eval/m.jsonl", "key": "id", "value": "loosely_correct", "scale": 100}},
        "m/honesty": {"value": honesty, "lo": honesty - 3, "hi": honesty + 3}})
    if finished:
        (run.path / "report.html").write_text("<html><body><h1>r</h1></body></html>")
    return run.path


def test_runs_are_found_with_kind_status_and_headline(tmp_path):
    a = make_run(tmp_path / "runs" / "a", "honesty", [1, 0, 1, 0], 55.0)
    make_run(tmp_path / "runs" / "nested" / "b", "trust-run", [1, 1, 1, 0], 60.0, finished=False)
    (tmp_path / "runs" / "empty").mkdir()
    found = {r.path.name: r for r in find_runs(tmp_path / "runs")}
    assert set(found) == {"a", "b"}
    assert found["a"].status == "finished" and found["b"].status == "incomplete"
    assert found["a"].kind == "honesty" and found["a"].command == "selfalign honesty run"
    assert found["a"].headline["m/accuracy"]["value"] == 50.0
    assert read_run(a).machine  # the CPU, from the provenance


def test_compare_pairs_the_items_both_runs_scored(tmp_path):
    a = make_run(tmp_path / "a", "honesty", [1, 0, 1, 0], 55.0)
    b = make_run(tmp_path / "b", "honesty", [1, 1, 1, 0, 1], 60.0)  # one more item: not paired
    rows = {r["name"]: r for r in compare(a, b, resamples=200)["rows"]}
    p = rows["m/accuracy"]["paired"]
    assert p["n"] == 4 and p["diff"] == pytest.approx(25.0) and p["lo"] <= 25.0 <= p["hi"]
    assert rows["m/accuracy"]["diff"] == pytest.approx(30.0)  # the headlines themselves: 50 vs 80
    assert rows["m/honesty"]["paired"] is None and rows["m/honesty"]["diff"] == pytest.approx(5.0)


def test_the_runs_command_lists_them_and_writes_the_page(tmp_path):
    make_run(tmp_path / "runs" / "a", "honesty", [1, 0], 55.0)
    make_run(tmp_path / "runs" / "b", "rlhf-quick", [1, 1], 61.0)
    res = runner.invoke(app, ["runs", "--root", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "honesty" in res.output and "rlhf-quick" in res.output and "2 runs" in res.output
    page = (tmp_path / "runs" / "index.html").read_text()
    assert 'href="a/report.html"' in page and 'href="b/report.html"' in page and "55.0" in page
    res = runner.invoke(app, ["runs", "compare", str(tmp_path / "runs" / "a"), str(tmp_path / "runs" / "b"),
                              "--html", str(tmp_path / "cmp.html")])
    assert res.exit_code == 0, res.output
    assert "m/accuracy" in res.output and "+50.0" in res.output and "n=2" in res.output
    assert "Two runs compared" in (tmp_path / "cmp.html").read_text()
    res = runner.invoke(app, ["runs", "compare", str(tmp_path), str(tmp_path / "runs" / "b")])
    assert res.exit_code != 0 and "not a run folder" in str(res.exception or res.output)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_the_runs_page_renders_in_chromium_without_console_errors(tmp_path):
    make_run(tmp_path / "runs" / "a", "honesty", [1, 0], 55.0)
    runner.invoke(app, ["runs", "--root", str(tmp_path / "runs")])
    page = tmp_path / "runs" / "index.html"
    res = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert '<table id="runs">' in dom and 'href="a/report.html"' in dom and "55.0" in dom
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


def test_a_metrics_file_carries_the_headline_and_provenance(tmp_path):
    path = make_run(tmp_path / "r", "honesty", [1], 50.0)
    data = json.loads((path / "metrics.json").read_text())
    assert data["kind"] == "honesty" and data["provenance"]["command"] == "selfalign honesty run"
