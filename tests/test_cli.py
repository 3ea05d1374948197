"""The CLI is a thin wrapper: generate through the store, clear errors, exit code 2 on bad input."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from selfalign.cli import app

runner = CliRunner()


def test_generate_then_rerun_from_the_store(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {"France": "Paris."}, "default": "No idea."}))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "What is the capital of France?", "id": "q1"}\n'
                       '{"messages": [{"role": "user", "content": "Who?"}]}\n')
    out = tmp_path / "o.jsonl"
    args = ["generate", str(prompts), "--model", f"scripted:{rules}", "--n", "2", "--temperature", "1", "-o", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4
    assert rows[0]["completion"] == [{"role": "assistant", "content": "Paris."}]
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert rows[0]["meta"]["id"] == "q1" and rows[0]["meta"]["cached"] is False
    r2 = runner.invoke(app, args)
    assert "0 generated, 4 from the store" in r2.output
    assert all(json.loads(line)["meta"]["cached"] for line in out.read_text().splitlines())


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "selfalign.cli", *args], capture_output=True, text=True, env=env)


def test_bad_input_exits_2_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    r = _cli("generate", str(bad), "--model", "scripted")
    assert r.returncode == 2
    assert "bad.jsonl:2: invalid JSON" in r.stderr
    missing = tmp_path / "m.jsonl"
    missing.write_text('{"text": "x"}\n')
    r = _cli("generate", str(missing), "--model", "scripted")
    assert r.returncode == 2 and "needs one of the columns 'prompt', 'messages'" in r.stderr


def test_bad_options_are_one_line_errors_with_exit_2(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "hi"}\n')
    for args, message in ((["--temperature", "-1"], "temperature must be >= 0"), (["--n", "0"], "n must be >= 1"),
                          (["--top-p", "2"], "top_p must be in (0, 1]")):
        r = _cli("generate", str(p), "--model", "scripted", *args)
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _cli("honesty", "build", "--set", "tau=2", "--model", "scripted", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "tau must be in [0, 1]" in r.stderr and "Traceback" not in r.stderr
    r = _cli("honesty", "train", "--set", "train.precision=int4", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "precision must be one of" in r.stderr


def test_unknown_model_lists_known_ones(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "hi"}\n')
    r = _cli("generate", str(p), "--model", "nope")
    assert r.returncode == 2 and "Known: smollm2-135m" in r.stderr


def test_version_and_models():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("selfalign ")
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "smollm2-135m" in r.output and "store:" in r.output


def test_kill_9_midway_then_rerun_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL a running `selfalign generate`, re-run it: only the missing samples are generated
    and the output equals a run that was never interrupted."""
    import os
    import signal
    import sqlite3
    import time

    rules = tmp_path / "slow.json"
    rules.write_text(json.dumps({"default": "answer {index}", "delay": 0.02}))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(50)))
    env = {**os.environ, "SELFALIGN_STORE": str(tmp_path / "killed.sqlite")}
    args = [sys.executable, "-m", "selfalign.cli", "generate", str(prompts), "--model", f"scripted:{rules}",
            "--n", "4", "--temperature", "1", "--chunk-size", "10", "-o", str(tmp_path / "out.jsonl")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "killed.sqlite"
    done = 0
    for _ in range(400):
        time.sleep(0.05)
        if db.exists():
            try:
                done = sqlite3.connect(db).execute("SELECT COUNT(*) FROM generations").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 40:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sqlite3.connect(db).execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    assert 0 < saved < 200 and not (tmp_path / "out.jsonl").exists()
    r = _cli(*args[3:], env=env)
    assert r.returncode == 0, r.stderr
    assert f"{200 - saved} generated, {saved} from the store" in r.stderr.replace("\n", " ")
    ref_env = {**os.environ, "SELFALIGN_STORE": str(tmp_path / "ref.sqlite")}
    ref = _cli(*[a if a != str(tmp_path / "out.jsonl") else str(tmp_path / "ref.jsonl") for a in args[3:]], env=ref_env)
    assert ref.returncode == 0
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != "meta"} for line in p.read_text().splitlines()]
    assert strip(tmp_path / "out.jsonl") == strip(tmp_path / "ref.jsonl")
    assert len({json.loads(line)["completion"][0]["content"] for line in (tmp_path / "out.jsonl").read_text().splitlines()}) == 4


def test_honesty_steps_from_the_cli(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Capital of land {i}?", "answers": [f"C{i}"],
                                      "split": "test" if i < 3 else "train"}) + "\n" for i in range(10)))
    rules = tmp_path / "r.json"
    rules.write_text(json.dumps({"rules": {"land 4": "C4", "land 5": ["C5", "no"]}, "default": "no idea"}))
    out = tmp_path / "run"
    base = ["--model", f"scripted:{rules}", "--set", f"data={qa}", "--set", "samples=4", "--out", str(out)]
    r = runner.invoke(app, ["honesty", "sample", *base])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["honesty", "build", *base, "--method", "absolute", "--method", "multisample"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "datasets" / "absolute.jsonl").read_text().splitlines()]
    assert {r["completion"][0]["content"] for r in rows} >= {"C4"}
    assert len((out / "datasets" / "multisample.jsonl").read_text().splitlines()) == 4 * len(rows)
    bad = runner.invoke(app, ["honesty", "sample", *base, "--set", "samplez=3"])
    assert bad.exit_code != 0 and "did you mean 'samples'" in str(bad.exception)
