"""The pointwise classifier on the PM's body (selfalign.train.classifier) and the harm judge built
on it (selfalign.reward.harm_lora), on a tiny random-init Llama whose pad token is its eos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selfalign.judges.registry import HARMFUL, NOT_HARMFUL, LabelledRow
from selfalign.reward.harm_train import THRESHOLDS, question_half
from selfalign.store.cache import Store


def _rows(n: int = 24) -> list[dict]:
    out = []
    for i in range(n):
        bad = i % 3 == 0
        out.append({"prompt": f"How do I get there {i}?",
                    "completion": "Hit them." if bad else "Take the bus to Paris, then walk along the river for ten minutes or so.", "label": not bad})
    return out


# the tiny model learns these labels in a few steps fully fine-tuned (with LoRA it takes far longer)
FAST = dict(lora=False, epochs=4, batch_size=8, learning_rate=3e-3, warmup_ratio=0.0, logging_steps=1)


@pytest.mark.filterwarnings("ignore")
def test_the_classifier_learns_its_labels_and_reloads_as_a_pm(eos_pad_model, tmp_path):
    from huggingface_hub import ModelCard

    from selfalign.train.classifier import ClassifierConfig, train_classifier
    from selfalign.train.reward import CachedPM, PreferenceModel

    rows = _rows()
    res = train_classifier(rows, str(eos_pad_model), tmp_path / "clf", ClassifierConfig(**FAST))
    assert res.losses and res.losses[-1] < res.losses[0]
    info = json.loads((tmp_path / "clf" / "train.json").read_text())
    assert info["class_weights"] == [pytest.approx(24 / 16), pytest.approx(24 / 32)]  # (False, True): 8 False, 16 True
    assert ModelCard.load(res.model_dir / "README.md").data.pipeline_tag == "text-classification"
    a, b = PreferenceModel(res.model_dir, seed=1), PreferenceModel(res.model_dir, seed=2)
    prompts, answers = [r["prompt"] for r in rows], [r["completion"] for r in rows]
    logits = a.rewards(prompts, answers)
    assert logits == b.rewards(prompts, answers)  # the trained head is saved, not re-initialised on load
    # the logit is the log-odds of label True: every row on its side of 0
    assert all((v > 0) == r["label"] for v, r in zip(logits, rows))
    assert CachedPM(a, Store(":memory:")).rewards(prompts[:3], answers[:3]) == pytest.approx(logits[:3])
    again = train_classifier(rows, str(eos_pad_model), tmp_path / "clf", ClassifierConfig(**FAST))
    assert again.skipped


def test_labels_are_checked_before_any_model_loads(tmp_path):
    from selfalign.train.classifier import ClassifierConfig, class_weights, train_classifier

    rows = _rows(4)
    rows[2]["label"] = "yes"
    with pytest.raises(ValueError, match=r"row 3: field 'label' must be true/false"):
        train_classifier(rows, "/nonexistent/model", tmp_path / "x", ClassifierConfig())
    with pytest.raises(ValueError, match="need both labels; the rows hold 4 True and 0 False"):
        train_classifier([dict(r, label=True) for r in rows], "/nonexistent/model", tmp_path / "x", ClassifierConfig())
    assert class_weights([True, True, False, False], False) == (1.0, 1.0)
    assert not (tmp_path / "x").exists()
    # the script names the file and line, and exits 2 before any model loads
    import subprocess
    import sys

    bad = tmp_path / "rows.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in _rows(4)[:2] + [dict(_rows(4)[2], label="yes")]))
    r = subprocess.run([sys.executable, "-m", "selfalign.train.classifier", "--rows", str(bad), "--base",
                        "/nonexistent/model", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and f"{bad}:3: field 'label' must be true/false" in r.stderr
    assert not (tmp_path / "x").exists()


def _harm_rows(n_q: int = 48) -> list[LabelledRow]:
    out = []
    for q in range(n_q):
        for s in ("davinci", "text-davinci-003", "gpt-4"):
            bad = (q + len(s)) % 3 == 0 if s != "gpt-4" else q == 1  # gpt-4: 1 of n_q, exempt from the bar
            out.append(LabelledRow(f"{q}-{s}", f"Question number {q}?",
                                   "Hit them." if bad else "Take the bus to Paris, then walk along the river for ten minutes or so.",
                                   HARMFUL if bad else NOT_HARMFUL, {"source_model": s}))
    return out


@pytest.mark.filterwarnings("ignore")
def test_the_lora_protocol_chooses_on_dev_reports_test_once_and_reuses_its_fits(eos_pad_model, tmp_path, monkeypatch):
    from selfalign.reward import harm_lora

    rows = _harm_rows()
    grid = ({"learning_rate": 3e-3},)
    fixed = dict(lora=False, epochs=3.0, warmup_ratio=0.0)
    res = harm_lora.protocol(rows, str(eos_pad_model), "tiny", tmp_path / "w", grid=grid,
                             progress=False, **fixed)
    assert res["threshold"] in THRESHOLDS and res["chosen"] == "learning_rate0.003"
    # dev fits only the bar sources, never a test question; the test phase fits every source once
    assert res["bar_sources"] == ["davinci", "text-davinci-003"]
    assert set(res["dev"]["learning_rate0.003"]["fits"]) == set(res["bar_sources"])
    n_test = {s: sum(1 for r in rows if r.meta["source_model"] == s and question_half(r.prompt) == 1)
              for s in ("davinci", "text-davinci-003", "gpt-4")}
    assert {s: d["n"] for s, d in res["test"].items()} == n_test
    # the words give the label away: the held-out sources are read right
    assert min(res["test"][s]["accuracy"] for s in res["bar_sources"]) > 0.9
    # each fit left its predictions and dropped its weights
    assert not list((tmp_path / "w").rglob("model.safetensors")) and len(list((tmp_path / "w").rglob("pred.json"))) == 7
    # a fixed threshold skips the dev phase; test_sources limits the test fits
    fixed_t = harm_lora.protocol(rows, str(eos_pad_model), "tiny", tmp_path / "w2", grid=grid,
                                 progress=False, threshold=0.5, test_sources=["davinci"], **fixed)
    assert fixed_t["threshold"] == 0.5 and list(fixed_t["test"]) == ["davinci"]
    assert len(list((tmp_path / "w2").rglob("pred.json"))) == 1
    # a re-run trains nothing and gives the same tables
    monkeypatch.setattr(harm_lora, "train_classifier", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = harm_lora.protocol(rows, str(eos_pad_model), "tiny", tmp_path / "w", grid=grid,
                               progress=False, **fixed)
    assert again["test"] == res["test"] and again["threshold"] == res["threshold"]


@pytest.mark.filterwarnings("ignore")
def test_a_saved_lora_judge_loads_and_scores_through_the_store(eos_pad_model, tmp_path, monkeypatch):
    from selfalign.reward import harm_lora
    from selfalign.reward.harm_judge import TrainedHarmJudge

    rows = _harm_rows(36)
    monkeypatch.setattr(harm_lora, "GRID", ({"learning_rate": 3e-3},))
    monkeypatch.setattr(harm_lora, "DEFAULTS", {**harm_lora.DEFAULTS, "lora": False, "epochs": 3.0, "warmup_ratio": 0.0})
    got = harm_lora.train_lora_judge(rows, str(eos_pad_model), "tiny", tmp_path / "judge", tmp_path / "w",
                                     data_sha256="abc", progress=False)
    card = json.loads((tmp_path / "judge" / "judge.json").read_text())
    assert card == json.loads(json.dumps(got["card"])) and card["features"] == "lora" and card["data_sha256"] == "abc"
    assert set(card["validation"]["test_questions"]) == {"davinci", "text-davinci-003", "gpt-4"}
    store = Store(":memory:")
    judge = TrainedHarmJudge(tmp_path / "judge", store=store)
    inputs = [r.input() for r in rows]
    p = judge.proba(inputs)
    np.testing.assert_allclose(p, harm_lora.p_harmful(tmp_path / "judge" / "model", rows), atol=1e-6)
    # P(harmful), not P(not harmful): the harmful rows score higher (inverted, they would score lower)
    bad = np.array([r.gold == HARMFUL for r in rows])
    assert np.mean(np.array(p)[bad]) > np.mean(np.array(p)[~bad]) + 0.2
    loaded = judge._classifier
    assert loaded is not None
    assert judge.proba(inputs[:2] + [LabelledRow("new", "A new question?", "Hit them.", HARMFUL, {}).input()])[:2] == p[:2]
    assert judge._classifier is loaded  # one load per judge, not per call
    monkeypatch.setattr("selfalign.reward.harm_judge.p_harmful", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert judge.proba(inputs) == p  # the second pass is the store's
    assert [v.label for v in judge.judge(inputs[:3])] == [HARMFUL if x >= card["threshold"] else NOT_HARMFUL for x in p[:3]]


def test_judge_train_kind_is_checked_before_anything_loads():
    from typer.testing import CliRunner

    from selfalign.cli import app
    from tests.conftest import FIXTURES

    data = str(FIXTURES / "harm_labelled.jsonl")
    r = CliRunner().invoke(app, ["judge", "train", "harm", "--data", data, "--kind", "bogus", "-o", "/tmp/x-never"])
    assert r.exit_code != 0 and "--kind must be head or lora, got 'bogus'" in str(r.exception) + r.output
    r = CliRunner().invoke(app, ["judge", "train", "harm", "--data", data, "--kind", "lora", "--encoder", "none",
                                 "-o", "/tmp/x-never"])
    assert r.exit_code != 0 and "--kind lora fine-tunes the encoder" in str(r.exception) + r.output
