"""Every bad input is one line, ``error: ...``, exit status 2, before any work, and nothing written.

The table runs each command through ``selfalign.cli.main`` in this process (the same error
mapping and exit path as the installed ``selfalign`` script, without a Python start-up per row);
a few rows also run the real script in a subprocess. Scripted models only, nothing is generated.

Output folders: ``generate -o`` into a missing folder creates it when writing (after generating);
``-o`` onto an existing directory, or under a path whose parent is a file, is refused before the
model loads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from selfalign import cli
from selfalign.store.cache import Store


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Inputs under tmp/in, outputs expected (and checked absent) under tmp/out."""
    monkeypatch.setenv("SELFALIGN_STORE", str(tmp_path / "store" / "store.sqlite"))
    monkeypatch.delenv("SELFALIGN_DEBUG", raising=False)
    d = tmp_path / "in"
    d.mkdir()
    (tmp_path / "out").mkdir()
    w = {
        "ok.jsonl": '{"prompt": "hi"}\n',
        "empty.jsonl": "",
        "malformed.jsonl": '{"prompt": "hi"}\n{"prompt": \n',
        "array.jsonl": '[{"prompt": "hi"}]\n',
        "content5.jsonl": '{"prompt": [{"role": "user", "content": 5}]}\n',
        "role5.jsonl": '{"messages": [{"role": 5, "content": "hi"}]}\n',
        "prompt5.jsonl": '{"prompt": 5}\n',
        "garbage.sqlite": "not a database " * 500,
        "liu_bad.jsonl": '{"question": \n',
    }
    for name, text in w.items():
        (d / name).write_text(text)
    data = d / "trustdata"
    data.mkdir()
    (data / "sft.jsonl").write_text('{"prompt": [{"role": "user", "content": "q"}], '
                                    '"completion": [{"role": "assistant", "content": "a"}]}\n')
    bad = d / "trustbad"
    bad.mkdir()
    (bad / "sft.jsonl").write_text('{"prompt": "q"}\n')  # no completion column
    return tmp_path


def _main(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["selfalign", *argv])
    with pytest.raises(SystemExit) as e:
        cli.main()
    return int(e.value.code or 0), capsys.readouterr().err


G = ["generate", "{in}/ok.jsonl", "--model", "scripted", "-o", "{out}/o.jsonl"]
HON = ["honesty", "run", "--model", "scripted", "--out", "{out}/hon"]
TRUST = ["trust", "run", "--model", "scripted", "--out", "{out}/trust"]
TTRAIN = ["trust", "train", "{in}/trustdata", "--base", "scripted", "--out", "{out}/tt"]


def _with(base: list[str], *extra: str, replace: dict[str, str] | None = None) -> list[str]:
    args = [replace.get(a, a) for a in base] if replace else list(base)
    return args + list(extra)


# (id, argv, a piece of the one-line message)
TABLE = [
    # generate: inputs
    ("gen-missing", _with(G, replace={"{in}/ok.jsonl": "{in}/nope.jsonl"}), "file not found"),
    ("gen-empty", _with(G, replace={"{in}/ok.jsonl": "{in}/empty.jsonl"}), "no prompts"),
    ("gen-malformed", _with(G, replace={"{in}/ok.jsonl": "{in}/malformed.jsonl"}), "malformed.jsonl:2: invalid JSON"),
    ("gen-json-array", _with(G, replace={"{in}/ok.jsonl": "{in}/array.jsonl"}), "expected a JSON object, got list"),
    ("gen-content-5", _with(G, replace={"{in}/ok.jsonl": "{in}/content5.jsonl"}), "'content' must be a string"),
    ("gen-role-5", _with(G, replace={"{in}/ok.jsonl": "{in}/role5.jsonl"}), "'role' must be a string"),
    ("gen-prompt-5", _with(G, replace={"{in}/ok.jsonl": "{in}/prompt5.jsonl"}), "must be a non-empty string"),
    ("gen-input-dir", _with(G, replace={"{in}/ok.jsonl": "{in}"}), "Is a directory"),
    # generate: numbers
    ("gen-n-0", _with(G, "--n", "0"), "n must be >= 1"),
    ("gen-n-huge", _with(G, "--n", "100000000"), "n must be <="),
    ("gen-max-tokens-0", _with(G, "--max-tokens", "0"), "max_tokens must be >= 1"),
    ("gen-max-tokens-1e9", _with(G, "--max-tokens", "1000000000"), "max_tokens must be <="),
    ("gen-temperature-nan", _with(G, "--temperature", "nan"), "temperature must be >= 0"),
    ("gen-temperature-neg", _with(G, "--temperature", "-0.5"), "temperature must be >= 0"),
    ("gen-top-p-0", _with(G, "--top-p", "0"), "top_p must be in (0, 1]"),
    ("gen-batch-0", _with(G, "--batch-size", "0"), "batch_size must be >= 1"),
    # generate: where things go
    ("gen-out-is-dir", _with(G, replace={"{out}/o.jsonl": "{out}"}), "is a directory"),
    ("gen-out-under-file", _with(G, replace={"{out}/o.jsonl": "{in}/ok.jsonl/o.jsonl"}), "is not a directory"),
    ("gen-store-garbage", _with(G, "--store", "{in}/garbage.sqlite"), "selfalign store check"),
    ("gen-store-is-dir", _with(G, "--store", "{in}"), "is a directory"),
    # honesty run: config keys (checked when the config is built, before any step)
    ("hon-epochs-neg", _with(HON, "--set", "train.epochs=-1"), "epochs must be > 0"),
    ("hon-epochs-0", _with(HON, "--set", "train.epochs=0"), "epochs must be > 0"),
    ("hon-lr-0", _with(HON, "--set", "train.learning_rate=0"), "learning_rate must be > 0"),
    ("hon-batch-0", _with(HON, "--set", "train.batch_size=0"), "batch_size must be >= 1"),
    ("hon-max-steps-0", _with(HON, "--set", "train.max_steps=0"), "max_steps must be >= 1"),
    ("hon-unknown-key", _with(HON, "--set", "train.epochz=1"), "did you mean 'epochs'"),
    ("hon-wrong-type", _with(HON, "--set", "train.epochs=lots"), "expected float"),
    ("hon-temperature-neg", _with(HON, "--set", "temperature=-1"), "temperature must be >= 0"),
    ("hon-samples-neg", _with(HON, "--set", "samples=-1"), "samples must be >= 0"),
    ("hon-config-missing", _with(HON, "--config", "{in}/nope.yaml"), "config file not found"),
    # trust run
    ("trust-n-items-1", _with(TRUST, "--set", "n_items=1"), "n_items must be >= 2"),
    ("trust-unknown-study", _with(TRUST, "--studies", "nope"), "studies: unknown nope"),
    ("trust-max-tokens-0", _with(TRUST, "--set", "max_tokens=0"), "max_tokens must be >= 1"),
    ("trust-store-garbage", _with(TRUST, "--set", "store={in}/garbage.sqlite", "--studies", "xstest"),
     "selfalign store check"),
    # trust train: options and rows before any model is converted or loaded
    ("ttrain-epochs-neg", _with(TTRAIN, "--set", "epochs=-1"), "epochs must be > 0"),
    ("ttrain-lr-0", _with(TTRAIN, "--set", "learning_rate=0"), "learning_rate must be > 0"),
    ("ttrain-batch-0", _with(TTRAIN, "--set", "batch_size=0"), "batch_size must be >= 1"),
    ("ttrain-dpo-epochs-0", _with(TTRAIN, "--method", "dpo", "--set", "epochs=0"), "epochs must be > 0"),
    ("ttrain-method", _with(TTRAIN, "--method", "ppo"), "method must be sft or dpo"),
    ("ttrain-no-data", _with(TTRAIN, replace={"{in}/trustdata": "{in}/nodata"}), "file not found"),
    ("ttrain-bad-rows", _with(TTRAIN, replace={"{in}/trustdata": "{in}/trustbad"}), "missing column(s) 'completion'"),
    # judge eval
    ("judge-unknown", ["judge", "eval", "no-such-judge", "--data", "{in}/ok.jsonl"], "no-such-judge"),
    ("judge-data-missing", ["judge", "eval", "refusal-rule", "--data", "{in}/nope.csv"], "nope.csv"),
    ("judge-limit-neg", ["judge", "eval", "refusal-rule", "--data", "{in}/ok.jsonl", "--limit", "-1"],
     "--limit must be >= 0"),
    ("judge-data-malformed", ["judge", "eval", "harm-refusal-proxy", "--data", "{in}/liu_bad.jsonl"], "liu_bad.jsonl"),
]


def _fill(argv: list[str], root: Path) -> list[str]:
    return [a.replace("{in}", str(root / "in")).replace("{out}", str(root / "out")) for a in argv]


def _written(root: Path) -> list[str]:
    """What a failed command left behind: anything under out/ (beyond the folder itself) and any temp file."""
    out = [str(p.relative_to(root)) for p in (root / "out").rglob("*")]
    tmps = [str(p.relative_to(root)) for p in root.rglob("*.tmp")]
    return out + tmps


@pytest.mark.parametrize("argv, message", [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_bad_input_is_one_line_exit_2_nothing_written(files, monkeypatch, capsys, argv, message):
    code, err = _main(_fill(argv, files), monkeypatch, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert message in err, err
    assert _written(files) == []


def test_the_installed_script_gives_the_same_one_line_errors(files):
    env = {**os.environ, "SELFALIGN_STORE": str(files / "store.sqlite")}
    env.pop("SELFALIGN_DEBUG", None)
    for argv, message in ((_with(G, replace={"{in}/ok.jsonl": "{in}/content5.jsonl"}), "'content' must be a string"),
                          (_with(G, "--store", "{in}/garbage.sqlite"), "damaged or not a store"),
                          (_with(HON, "--set", "train.epochs=-1"), "epochs must be > 0")):
        r = subprocess.run([sys.executable, "-m", "selfalign.cli", *_fill(argv, files)], capture_output=True, text=True,
                           env=env)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _written(files) == []
    r = subprocess.run([sys.executable, "-m", "selfalign.cli", *_fill(_with(G, "--n", "0"), files)],
                       capture_output=True, text=True, env={**env, "SELFALIGN_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_output_into_a_missing_folder_is_created(files, monkeypatch, capsys):
    target = files / "out" / "new" / "deeper" / "o.jsonl"
    code, err = _main(_fill(_with(G, "--show", "0", replace={"{out}/o.jsonl": str(target)}), files), monkeypatch, capsys)
    assert code == 0, err
    assert len(target.read_text().splitlines()) == 1
    assert not list(files.rglob("*.tmp"))


def test_secrets_are_redacted_from_errors(files, monkeypatch, capsys):
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", "my-very-secret-key")
    argv = _with(G, replace={"{in}/ok.jsonl": f"{{in}}/{secret}/my-very-secret-key.jsonl"})
    code, err = _main(_fill(argv, files), monkeypatch, capsys)
    assert code == 2 and "file not found" in err
    assert secret not in err and "my-very-secret-key" not in err and "***" in err


@pytest.mark.parametrize("exc, message", [
    (OSError(28, "No space left on device", "/data/o.jsonl"), "/data/o.jsonl: No space left on device"),
    (PermissionError(13, "Permission denied", "/root/x"), "/root/x: Permission denied"),
    (sqlite3.OperationalError("disk I/O error"), "selfalign store check"),
    (sqlite3.DatabaseError("database disk image is malformed"), "malformed"),
    (KeyError("completion"), "missing key 'completion'"),
    (json.JSONDecodeError("Expecting value", "x\ny", 2), "invalid JSON (Expecting value at line 2"),
])
def test_main_maps_os_sqlite_key_and_json_errors_to_one_line(monkeypatch, capsys, exc, message):
    def boom() -> None:
        raise exc

    monkeypatch.delenv("SELFALIGN_DEBUG", raising=False)
    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setenv("SELFALIGN_DEBUG", "1")
    with pytest.raises(type(exc)):
        cli.main()


def test_training_refuses_zero_rows_before_loading_anything(tmp_path):
    from selfalign.train.base import TrainConfig, check_rows
    from selfalign.train.dpo import train_dpo
    from selfalign.train.sft import train_sft

    with pytest.raises(ValueError, match="no training rows"):
        train_sft([], "no/such/model", tmp_path / "sft")
    with pytest.raises(ValueError, match="no training rows"):
        train_dpo([], "no/such/model", tmp_path / "dpo")
    with pytest.raises(ValueError, match="rows.jsonl: no training rows"):
        check_rows([], TrainConfig(), "rows.jsonl")
    assert not (tmp_path / "sft").exists() and not (tmp_path / "dpo").exists()


def test_train_script_refuses_zero_rows_and_bad_options(tmp_path, capsys):
    from selfalign.train.sft import main

    rows = tmp_path / "rows.jsonl"
    rows.write_text("")
    for extra, message in (([], "rows.jsonl: no training rows"), (["--set", "epochs=0"], "epochs must be > 0")):
        with pytest.raises(SystemExit) as e:
            main(["--rows", str(rows), "--base", "no/such", "--out", str(tmp_path / "m"), *extra])
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------------------ the store

def _store_with_rows(path: Path, n: int = 3) -> Store:
    st = Store(path)
    st.db.executemany("INSERT INTO generations VALUES (?, 'm', '{}', ?, 1, 0, 0)",
                      [(f"k{i}", json.dumps({"text": f"t{i}", "finish_reason": "stop", "n_tokens": 1}))
                       for i in range(n)])
    return st


def test_a_corrupted_row_is_reported_by_key_and_regenerated(tmp_path, caplog):
    from selfalign.models.scripted import ScriptedModel
    from selfalign.store.cache import CachedModel
    from selfalign.types import GenParams, GenRequest

    st = Store(tmp_path / "s.sqlite")
    cm = CachedModel(ScriptedModel(), st, progress=False)
    req = GenRequest("hi", GenParams(max_tokens=8), n=2)
    first = cm.generate([req])[0]
    key = cm._key(req, 1)
    st.db.execute("UPDATE generations SET completion='{broken' WHERE key=?", (key,))
    with caplog.at_level("WARNING", logger="selfalign.store"):
        again = cm.generate([req])[0]
    assert key in caplog.text and "treated as missing" in caplog.text
    assert [c.cached for c in again.completions] == [True, False]
    assert again.texts == first.texts
    third = cm.generate([req])[0]  # the regenerated row replaced the broken one
    assert all(c.cached for c in third.completions)


def _run_store(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["selfalign", "store", *argv])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out + out.err


def test_store_check_and_repair_one_bad_row(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.sqlite"
    st = _store_with_rows(path)
    st.db.execute("UPDATE generations SET completion='{broken' WHERE key='k1'")
    st.close()
    code, out = _run_store(["check", str(path)], monkeypatch, capsys)
    assert code == 1 and "bad row k1" in out and "2 sound rows" in out
    code, out = _run_store(["repair", str(path)], monkeypatch, capsys)
    assert code == 0 and "kept 2 generations" in out and "dropped 1" in out
    backups = list(tmp_path.glob("s.sqlite.bak-*"))
    assert len([b for b in backups if not b.name.endswith(("-wal", "-shm"))]) == 1
    code, out = _run_store(["check", str(path)], monkeypatch, capsys)
    assert code == 0 and "generations: 2 sound rows" in out
    fresh = Store(path)
    assert set(fresh.get_completions(["k0", "k1", "k2"])) == {"k0", "k2"}
    assert fresh.applied_migrations() == [m for m, _ in __import__("selfalign.store.cache", fromlist=["x"]).MIGRATIONS]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_is_one_line_then_check_and_repair(tmp_path, monkeypatch, capsys, damage):
    path = tmp_path / "s.sqlite"
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 4096)
    else:
        _store_with_rows(path, 500).close()
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    code, out = _run_store(["check", str(path)], monkeypatch, capsys)
    assert code == 1 and "problems found" in out
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    monkeypatch.setattr(sys, "argv", ["selfalign", "generate", str(prompts), "--model", "scripted", "--store", str(path),
                                      "-o", str(tmp_path / "o.jsonl")])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and str(path) in err and "selfalign store repair" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.jsonl").exists()
    code, out = _run_store(["repair", str(path)], monkeypatch, capsys)
    assert code == 0 and "old file kept as" in out
    code, out = _run_store(["check", str(path)], monkeypatch, capsys)
    assert code == 0, out
    Store(path).close()  # usable again


def test_store_check_of_a_missing_file_is_an_error(tmp_path, monkeypatch, capsys):
    code, out = _run_store(["check", str(tmp_path / "nope.sqlite")], monkeypatch, capsys)
    assert code == 2 and "no such file" in out and not (tmp_path / "nope.sqlite").exists()


def test_temp_names_are_unique_and_removed_on_failure(tmp_path):
    from selfalign.data.io import temp_name, write_jsonl

    out = tmp_path / "o.jsonl"
    assert temp_name(out) != temp_name(out) and temp_name(out).parent == tmp_path

    def rows():
        yield {"a": 1}
        raise RuntimeError("stopped halfway")

    with pytest.raises(RuntimeError):
        write_jsonl(out, rows())
    assert list(tmp_path.iterdir()) == []
    write_jsonl(out, [{"a": 1}])
    assert [p.name for p in tmp_path.iterdir()] == ["o.jsonl"]


def test_a_corrupted_score_row_is_treated_as_missing_and_overwritten(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    st.put_scores([("a", "m", {}, (-1.0, -2.0)), ("b", "m", {}, (-0.5,))])
    st.db.execute("UPDATE scores SET token_logprobs='[oops' WHERE key='a'")
    assert set(st.get_scores(["a", "b"])) == {"b"} and st.bad_keys == {"a"}
    st.put_scores([("a", "m", {}, (-3.0,))])
    assert st.get_scores(["a"]) == {"a": (-3.0,)} and not st.bad_keys


def test_max_tokens_beyond_the_models_context_is_refused_before_generating(tmp_path, monkeypatch):
    from selfalign.generate import GenerateConfig, run

    class Small:
        model_id = "small"
        context_length = 64

        def generate(self, *a, **k):
            raise AssertionError("must not generate")

    monkeypatch.setenv("SELFALIGN_STORE", str(tmp_path / "s.sqlite"))
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "hi"}\n')
    cfg = GenerateConfig(input=str(p), output=str(tmp_path / "o.jsonl"), max_tokens=100)
    with pytest.raises(ValueError, match="does not fit the context"):
        run(cfg, model=Small(), progress=False)
    assert not (tmp_path / "o.jsonl").exists()
