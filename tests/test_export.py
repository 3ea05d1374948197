"""``selfalign export --to-hub`` (issue 28): the upload is built from a folder's files and card,
checked, and shown by a dry run; the push is one create_repo + one create_commit (checked with the
Hub client replaced, no network)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from selfalign.train import export
from selfalign.train.cards import write_dataset_card, write_model_card


def _run(tmp_path):
    run = tmp_path / "run"
    model = run / "train" / "sft" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 100)
    write_model_card(model, base="smollm2-135m", method="sft", n_rows=8, config={"lora": True})
    (run / "train" / "sft" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (run / "train" / "sft" / "checkpoints" / "checkpoint-1" / "README.md").write_text("partial")
    data = run / "datasets"
    data.mkdir()
    (data / "sft.jsonl").write_text(json.dumps({"prompt": "Q", "completion": "A"}) + "\n")
    write_dataset_card(data, ["sft.jsonl"], title="t", description="d")
    return run


def test_a_run_with_two_pushable_folders_asks_which_and_each_builds_its_upload(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(ValueError, match=r"holds 2 pushable folders \(datasets, train/sft/model\): name one with --folder"):
        export.build_upload(run, "me/x")
    up = export.build_upload(run, "me/honest-smol", folder="train/sft/model")
    assert up.repo_type == "model" and up.files == ["README.md", "config.json", "model.safetensors"]
    ops = up.operations()
    assert [o.path_in_repo for o in ops] == up.files and all(o.path_or_fileobj.startswith(str(up.folder)) for o in ops)
    ds = export.build_upload(run / "datasets", "me/honest-data")
    assert ds.repo_type == "dataset" and ds.files == ["README.md", "sft.jsonl"]


@pytest.mark.parametrize("repo, message", [("noslash", "must be ORG/NAME"), ("a/b/c", "must be ORG/NAME"),
                                           ("me/bad name", "me/bad name")])
def test_a_bad_repository_id_is_refused(tmp_path, repo, message):
    with pytest.raises(ValueError, match=message):
        export.build_upload(_run(tmp_path) / "datasets", repo)


def test_nothing_to_push_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no model or dataset folder with a card"):
        export.build_upload(tmp_path / "empty", "me/x")


def test_the_push_creates_the_repository_and_commits_every_file_once(tmp_path, monkeypatch):
    calls: list[tuple] = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, repo_type, private, exist_ok):
            calls.append(("create_repo", repo_id, repo_type, private, exist_ok))

        def create_commit(self, repo_id, operations, repo_type, commit_message):
            calls.append(("create_commit", repo_id, [o.path_in_repo for o in operations], repo_type))
            return type("Info", (), {"commit_url": "https://hub/commit/1"})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    up = export.build_upload(_run(tmp_path), "me/m", folder="train/sft/model")
    assert export.push(up, private=True, token="t") == "https://hub/commit/1"
    assert calls == [("init", "t"), ("create_repo", "me/m", "model", True, True),
                     ("create_commit", "me/m", ["README.md", "config.json", "model.safetensors"], "model")]


def test_the_command_dry_run_lists_the_upload_and_pushes_nothing(tmp_path):
    run = _run(tmp_path)
    out = subprocess.run([sys.executable, "-m", "selfalign.cli", "export", str(run), "--to-hub", "me/m",
                          "--folder", "train/sft/model", "--dry-run"],
                         capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "model me/m <-" in out.stderr and "dry run: nothing pushed" in out.stderr
    assert out.stdout.split() == ["README.md", "config.json", "model.safetensors"]
    bad = subprocess.run([sys.executable, "-m", "selfalign.cli", "export", str(run), "--to-hub", "me/m", "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "name one with --folder" in bad.stderr and "Traceback" not in bad.stderr
