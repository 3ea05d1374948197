"""Training curves in a standard tracker (issue 28): ``train.report_to`` / ``selfalign --track``
passes the tracker to the transformers/TRL trainer; trackio keeps the logged steps locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from selfalign.train.base import TRACK_ENV, TrainConfig, trainer_args, tracker
from selfalign.models.precision import choose_precision

ROWS = [{"prompt": [{"role": "user", "content": f"Q{i}"}], "completion": [{"role": "assistant", "content": "Paris"}]}
        for i in range(8)]


def test_default_is_no_tracker_and_the_flag_or_config_chooses_one(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorboard" else real(name, *a))
    monkeypatch.delenv(TRACK_ENV, raising=False)
    args = trainer_args(TrainConfig(), tmp_path / "sft" / "checkpoints", choose_precision("fp32"))
    assert args["report_to"] == [] and "project" not in args
    monkeypatch.setenv(TRACK_ENV, "tensorboard")
    assert tracker(TrainConfig()) == "tensorboard"
    assert tracker(TrainConfig(report_to="none")) == "none"  # the config wins over the flag
    args = trainer_args(TrainConfig(), tmp_path / "dpo-round1" / "checkpoints", choose_precision("fp32"))
    assert args["report_to"] == ["tensorboard"] and args["run_name"] == "dpo-round1" and args["project"] == "selfalign"


def test_an_unknown_or_missing_tracker_is_refused_before_training(monkeypatch):
    with pytest.raises(ValueError, match="must be one of none, trackio, tensorboard, wandb, got 'mlflow'"):
        TrainConfig(report_to="mlflow")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(Exception, match="'wandb', which is not installed. Install it with: pip install wandb"):
        TrainConfig(report_to="wandb")


def test_the_cli_flag_is_checked_up_front(tmp_path):
    out = subprocess.run([sys.executable, "-m", "selfalign.cli", "--track", "mlflow", "runs", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "must be one of none, trackio" in out.stderr, out.stderr[-1500:]


def test_a_short_training_logs_its_steps_to_a_local_trackio_project(tiny_model_dir, tmp_path):
    pytest.importorskip("trackio")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "SELFALIGN_TRACK_PROJECT": "t28", TRACK_ENV: "trackio"}
    out = subprocess.run([sys.executable, "-m", "selfalign.train.sft", "--rows", str(rows), "--base", str(tiny_model_dir),
                          "--out", str(tmp_path / "sft-a"), "--set", "max_steps=3", "--set", "logging_steps=1",
                          "--set", "lora_r=4", "--set", "batch_size=4"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    read = ("import json; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps({'projects': S.get_projects(), 'runs': S.get_runs('t28'), "
            "'logs': S.get_logs('t28', 'sft-a')}, default=str))")
    got = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, timeout=120, env=env)
    assert got.returncode == 0, got.stderr[-2000:]
    data = json.loads(got.stdout.strip().splitlines()[-1])
    assert "t28" in data["projects"] and "sft-a" in data["runs"]
    steps = [r for r in data["logs"] if "train/loss" in r]
    assert [r["train/global_step"] for r in steps] == [1, 2, 3], data["logs"]
    assert all(isinstance(r["train/loss"], float) for r in steps)
    # the tracker is not part of what decides the weights: the same run asked untracked is reused
    env.pop(TRACK_ENV)
    again = subprocess.run([sys.executable, "-m", "selfalign.train.sft", "--rows", str(rows), "--base", str(tiny_model_dir),
                            "--out", str(tmp_path / "sft-a"), "--set", "max_steps=3", "--set", "logging_steps=1",
                            "--set", "lora_r=4", "--set", "batch_size=4"], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and '"skipped": true' in again.stdout, again.stdout[-1500:] + again.stderr[-1500:]
