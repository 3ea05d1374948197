"""The whole honesty pipeline on a tiny random-init model: every step, resume, report."""

import json

import pytest

from selfalign.config import load_config
from selfalign.honesty.pipeline import HonestyConfig, HonestyRun
from selfalign.train.sft import TrainConfig, train_sft


def qa_file(tmp_path, n=16):
    p = tmp_path / "qa.jsonl"
    rows = [{"id": f"q{i}", "question": f"What is the capital of country {i}?", "answers": [f"City{i}"],
             "split": "test" if i % 4 == 0 else "train"} for i in range(n)]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p


def test_sft_changes_the_weights_and_loss_is_finite(tiny_model_dir, tmp_path):
    import math

    import torch
    from transformers import AutoModelForCausalLM

    rows = [{"prompt": [{"role": "user", "content": f"Q{i}"}], "completion": [{"role": "assistant", "content": "Paris"}]}
            for i in range(8)]
    for lora in (True, False):
        cfg = TrainConfig(lora=lora, epochs=1, batch_size=4, learning_rate=1e-2, logging_steps=1, lora_r=4)
        res = train_sft(rows, str(tiny_model_dir), tmp_path / f"out-{lora}", cfg)
        assert res.losses and all(math.isfinite(x) for x in res.losses)
        before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
        after = AutoModelForCausalLM.from_pretrained(res.model_dir).state_dict()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        targets = [k for k in before if any(t in k for t in ("q_proj", "v_proj", "down_proj"))]
        assert targets and all(k in changed for k in targets), f"unchanged: {set(targets) - set(changed)}"
        again = train_sft(rows, str(tiny_model_dir), tmp_path / f"out-{lora}", cfg)
        assert again.skipped


def test_lora_layers_limits_training_to_the_top_layers(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    rows = [{"prompt": f"Q{i}", "completion": " Paris"} for i in range(8)]
    cfg = TrainConfig(lora=True, lora_layers=1, epochs=2, batch_size=4, learning_rate=1e-2, lora_r=4)
    res = train_sft(rows, str(tiny_model_dir), tmp_path / "top", cfg)
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(res.model_dir).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".layers.1." in k for k in changed)


def test_pipeline_end_to_end_on_a_tiny_model(tiny_model_dir, tmp_path):
    cfg = load_config(HonestyConfig, {
        "model": str(tiny_model_dir), "data": str(qa_file(tmp_path)), "samples": 3, "max_tokens": 6, "eval_max_tokens": 8,
        "methods": ["absolute", "multisample", "prompt"], "balance": False, "bootstrap": 50,
        "out": str(tmp_path / "run"), "train": {"epochs": 1, "batch_size": 4, "lora_r": 4},
    })
    logs = []
    run = HonestyRun(cfg, progress=False, log=logs.append)
    report = run.run()
    assert report is not None and report.exists()
    html = report.read_text()
    assert "Alignment for Honesty" in html and "data:image/png;base64," in html and "N7 = " in html
    summary = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())
    assert set(summary["methods"]) == {"unaligned", "absolute", "multisample", "prompt"}
    assert summary["methods"]["unaligned"]["scores"]["over_conservativeness"]["value"] == 0
    assert summary["n_test"] == 4
    for m in ("absolute", "multisample"):
        assert (tmp_path / "run" / "models" / m / "model" / "config.json").exists()
        assert sum(summary["methods"][m]["table"].values()) == 4
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["samples"] == 3 and "torch" in manifest["versions"]

    # a re-run generates nothing and retrains nothing
    logs2 = []
    HonestyRun(cfg, progress=False, log=logs2.append).run()
    assert any("unchanged, skipped" in line for line in logs2)
    from selfalign.store.cache import Store

    calls = Store().db.execute("SELECT n_items, n_cached FROM calls ORDER BY id DESC LIMIT 6").fetchall()
    assert all(n == c for n, c in calls)


def test_steps_can_run_one_by_one(tiny_model_dir, tmp_path):
    cfg = load_config(HonestyConfig, {
        "model": str(tiny_model_dir), "data": str(qa_file(tmp_path)), "samples": 2, "max_tokens": 4, "eval_max_tokens": 6,
        "methods": ["confidence-verb"], "out": str(tmp_path / "run"), "bootstrap": 20,
        "train": {"epochs": 1, "batch_size": 4, "lora_r": 4},
    })
    run = HonestyRun(cfg, progress=False, log=lambda s: None)
    run.run(("sample",))
    assert (tmp_path / "run" / "knowledge" / "train.jsonl").exists()
    run.run(("build",))
    assert (tmp_path / "run" / "datasets" / "confidence-verb.jsonl").exists()
    run.run(("eval",))  # trains on demand
    assert (tmp_path / "run" / "models" / "confidence-verb" / "model").exists()


def test_a_model_that_cannot_be_trained_is_refused_clearly(tmp_path):
    from selfalign.data.io import DataError

    cfg = load_config(HonestyConfig, {"model": "scripted", "data": str(qa_file(tmp_path)), "samples": 1,
                                      "methods": ["absolute"], "out": str(tmp_path / "run")})
    run = HonestyRun(cfg, progress=False, log=lambda s: None)
    run.run(("sample", "build"))  # sampling and building work with any backend
    with pytest.raises(DataError, match="cannot be fine-tuned"):
        run.run(("train",))
