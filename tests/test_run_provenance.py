"""What a run says about itself (issue 28): the run header and plots in the report, provenance in
metrics.json, model and dataset cards that the Hub's and datasets' own loaders read, trainer logs
as one line per logging step, and progress lines when output is not a terminal."""

import io
import json
from types import SimpleNamespace

from selfalign import logs
from selfalign.config import load_config
from selfalign.honesty.pipeline import HonestyConfig, HonestyRun
from selfalign.report.header import run_header, svg, training_curves, with_header
from selfalign.store import cache
from selfalign.store.runs import RunDir, provenance
from selfalign.train import base
from selfalign.train.base import StepLog
from conftest import qa_file


def test_a_run_reports_what_produced_it_with_its_plots_and_cards(tiny_model_dir, tmp_path, capsys):
    from datasets import load_dataset
    from huggingface_hub import ModelCard

    out = tmp_path / "run"
    cfg = load_config(HonestyConfig, {
        "model": str(tiny_model_dir), "data": str(qa_file(tmp_path)), "samples": 2, "max_tokens": 4,
        "eval_max_tokens": 6, "methods": ["confidence-verb"], "balance": False, "bootstrap": 20, "out": str(out),
        "train": {"epochs": 2, "batch_size": 4, "lora_r": 4, "logging_steps": 1}})
    said: list[str] = []
    HonestyRun(cfg, progress=False, log=said.append).run()
    printed = capsys.readouterr().out
    # the trainer: one line per logging step, never transformers' raw dict
    steps = [line for line in printed.splitlines() if line.startswith("[train] confidence-verb step ")]
    assert len(steps) >= 2 and all(" loss " in s and " ETA " in s for s in steps)
    assert "{'loss'" not in printed

    page = (out / "report.html").read_text()
    assert page.count('id=run-header') == 1 and "What produced this report" in page
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["machine"]["cpu"] and prov["versions"]["torch"] and prov["seeds"] == {"seed": 0, "train.seed": 0}
    assert {"sample", "build", "train-confidence-verb", "eval"} <= set(prov["steps"])
    assert prov["steps"]["sample"]["seconds"] > 0 and prov["steps"]["train-confidence-verb"]["seconds"] > 0
    assert prov["tokens_generated"] > 0 and prov["store_misses"] > 0 and prov["model"]["base"].startswith("hf:")
    assert prov["command"] in page.replace("&#x27;", "'").replace("&quot;", '"') or prov["command"] == ""
    for title in ("Expected accuracy k(x)", "Training curves"):
        part = page.split(title, 1)[1]
        assert "<svg" in part.split("<h2>", 1)[0], f"no plot under {title}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "honesty" and set(metrics["headline"]["confidence-verb/honesty"]) >= {"value", "lo", "hi"}
    # the trained model's honesty leads (the runs list shows the first three), the unaligned one's follows
    order = list(metrics["headline"])
    assert order[0] == "confidence-verb/honesty" and order.index("unaligned/honesty") < order.index("unaligned/accuracy")
    assert json.loads((out / "report.json").read_text())["provenance"]["config_hash"] == prov["config_hash"]

    history = json.loads((out / "models" / "confidence-verb" / "train.json").read_text())["log_history"]
    assert len([h for h in history if "loss" in h]) == len(steps)

    card = ModelCard.load(out / "models" / "confidence-verb" / "model" / "README.md")
    assert card.data.base_model == str(tiny_model_dir) and card.data.library_name == "transformers"
    metrics_in_card = {r.metric_type for r in card.data.eval_results}
    assert {"honesty", "prudence", "over_conservativeness", "accuracy"} <= metrics_in_card

    rows = [json.loads(line) for line in (out / "datasets" / "confidence-verb.jsonl").read_text().splitlines()]
    ds = load_dataset("json", data_files=str(out / "datasets" / "confidence-verb.jsonl"), split="train")
    assert len(ds) == len(rows) and {"prompt", "completion", "meta"} <= set(ds.column_names)
    by_card = load_dataset(str(out / "datasets"), "confidence-verb", split="train")
    assert len(by_card) == len(rows)

    # a re-run: everything from the store, said once
    said2: list[str] = []
    HonestyRun(cfg, progress=False, log=said2.append).run()
    assert sum("[train] confidence-verb" in s for s in said2) == 1
    prov2 = json.loads((out / "provenance.json").read_text())
    assert prov2["tokens_generated"] == 0 and prov2["store_misses"] == 0  # every step reused: no call at all
    assert not any(v["this_invocation"] for v in prov2["steps"].values())
    assert "(reused)" in (out / "report.html").read_text()
    (out / "steps" / "eval.json").unlink()  # the evaluation redone: every answer from the store
    HonestyRun(cfg, progress=False, log=said2.append).run()
    prov3 = json.loads((out / "provenance.json").read_text())
    assert prov3["tokens_generated"] == 0 and prov3["store_misses"] == 0 and prov3["store_hits"] > 0
    assert prov3["steps"]["eval"]["this_invocation"] and not prov3["steps"]["sample"]["this_invocation"]


def test_the_header_of_a_run_without_provenance_says_so(tmp_path):
    page = with_header("<html><body><h1>T</h1><p>x</p></body></html>", tmp_path)
    assert page.index("no provenance.json") > page.index("</h1>")


def test_provenance_counts_this_invocations_steps(tmp_path):
    run = RunDir(tmp_path)
    run.write_manifest({"seed": 3, "train": {"seed": 4}}, seed=3, command="selfalign x")
    run.record_step("a", {}, {}, [], 1.5)
    p = provenance(tmp_path, {"generate": {"tokens": 7, "hits": 2, "misses": 3}, "score": {"tokens": 5, "hits": 1, "misses": 0}},
                   {"model": {"base": "m"}})
    assert p["command"] == "selfalign x" and p["seeds"] == {"seed": 3, "train.seed": 4}
    assert p["steps"]["a"]["seconds"] == 1.5 and p["steps"]["a"]["this_invocation"]
    assert (p["tokens_generated"], p["tokens_scored"], p["store_hits"], p["store_misses"]) == (7, 5, 3, 3)
    (tmp_path / "provenance.json").write_text(json.dumps(p))
    hdr = run_header(tmp_path)
    assert "selfalign x" in hdr and "7 tokens generated, 5 scored" in hdr and "a 2 s" in hdr


def test_two_inline_svgs_do_not_share_element_ids():
    import re

    from selfalign.report.header import pyplot

    plt = pyplot()
    figs = []
    for k in (1, 2):
        fig, ax = plt.subplots()
        ax.plot([0, k], [0, 1])
        figs.append(svg(fig))
    ids = [set(re.findall(r'id="([^"]+)"', f)) for f in figs]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    for f, own in zip(figs, ids):  # every reference points at an element of the same figure
        refs = set(re.findall(r'url\(#([^)]+)\)', f)) | set(re.findall(r'href="#([^"]+)"', f))
        assert refs <= own


def test_progress_prints_lines_when_not_a_terminal(monkeypatch):
    stream = io.StringIO()
    clock = [1000.0]
    monkeypatch.setattr(cache.time, "time", lambda: clock[0])
    with cache._progress(True, "k(x)", 100, 20, stream=stream) as tick:
        for _ in range(8):
            clock[0] += 1
            tick(10, 50)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "k(x): 20/100, 20 from the store"
    assert len(lines) == 1 + 8  # one per 10%
    assert lines[-1].startswith("k(x): 100/100 (100%), 50 tok/s, 10.0 samples/s") and lines[-1].endswith("done")
    assert "ETA 0:07" in lines[1]  # 70 left at 10 a second

    # slower than 10% per 30 s: a line every 30 s all the same
    stream = io.StringIO()
    with cache._progress(True, "gen", 1000, 0, stream=stream) as tick:
        for _ in range(3):
            clock[0] += 31
            tick(1, 1)
    assert len(stream.getvalue().splitlines()) == 1 + 3

    stream = io.StringIO()  # nothing to do, or quiet: silent
    with cache._progress(True, "gen", 5, 5, stream=stream):
        pass
    logs.set_verbosity(0)
    try:
        with cache._progress(True, "gen", 5, 0, stream=stream) as tick:
            tick(5, 5)
    finally:
        logs.set_verbosity(1)
    assert stream.getvalue() == ""


def test_step_log_prints_one_line_per_logging_step(capsys):
    cb = StepLog("sft")
    state = SimpleNamespace(global_step=0, max_steps=4, is_local_process_zero=True)
    cb.on_train_begin(None, state, None)
    state.global_step = 2
    cb.on_log(None, state, None, logs={"loss": 1.25, "learning_rate": 2e-4, "num_tokens": 100.0})
    cb.on_log(None, state, None, logs={"train_runtime": 3.0})  # the closing summary: no line
    cb.on_step_end(None, state, None)  # other events are accepted and ignored
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[train] sft: 4 steps"
    assert len(lines) == 2 and lines[1].startswith("[train] sft step 2/4 (50%) loss 1.250 lr 2.0e-04 ")


def test_step_log_rate_counts_only_tokens_trained_since_a_resume(capsys, monkeypatch):
    """After a resume, num_tokens may be a restored running total (RLOO) or restart at 0 (SFT):
    the rate is measured from this process's first logging step (which prints none), so
    1,200 -> 1,500 tokens in 3 s is 100 tok/s either way."""
    for first_total in (1000.0, 0.0):  # restored, restarted
        clock = iter([100.0, 102.0, 105.0])
        monkeypatch.setattr(base, "time", SimpleNamespace(time=lambda: next(clock)))
        cb = StepLog("sft")
        state = SimpleNamespace(global_step=10, max_steps=20, is_local_process_zero=True)
        cb.on_train_begin(None, state, None)
        state.global_step = 12
        cb.on_log(None, state, None, logs={"loss": 0.9, "num_tokens": first_total + 200.0})
        state.global_step = 14
        cb.on_log(None, state, None, logs={"loss": 0.8, "num_tokens": first_total + 500.0})
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "[train] sft: 20 steps, resuming at step 10"
        assert "tok/s" not in lines[1] and " 100 tok/s " in lines[2], lines


def test_training_curves_show_every_training_under_a_run(tmp_path):
    def put(rel, info):
        p = tmp_path / rel / "train.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(info))

    put("pm_a", {"fingerprint": "x", "n_rows": 8, "seconds": 3.0, "precision": "fp32",
                 "log_history": [{"loss": 0.7, "step": 1}, {"loss": 0.5, "step": 2}, {"train_loss": 0.6, "step": 2}]})
    put("rl", {"fingerprint": "y", "log_history": [{"loss": 0.1, "reward": 0.2, "kl": 0.01, "step": 1}]})
    put("old", {"fingerprint": "z", "losses": [1.0, 0.8]})  # before histories were kept
    put("rl/checkpoints/checkpoint-1", {"fingerprint": "y", "losses": [9.0]})  # not a finished training
    put("notes", {"something": "else"})  # not a trainer's record
    section = training_curves(tmp_path)
    assert section.count("<svg") == 1 and "KL to the initial policy" in section and "reward (mean" in section
    rows = [c.split("</td>")[0] for c in section.split("<tr><td class=l>")[1:]]
    assert rows == ["old", "pm_a", "rl"]
    assert "<td>8</td><td>2</td><td>3 s</td><td>fp32</td><td>0.5</td>" in section
    page = with_header("<html><body><h1>t</h1><p>x</p></body></html>", tmp_path)
    assert page.count("id=training-curves") == 1 and page.index("<p>x</p>") < page.index("id=training-curves")
    assert training_curves(tmp_path / "nothing-here") == ""


def test_quiet_libraries_switches_off_bars_only_off_a_terminal(monkeypatch):
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        monkeypatch.delenv(name, raising=False)
    import os

    logs.quiet_libraries(tty=True)
    assert "TQDM_DISABLE" not in os.environ
    logs.quiet_libraries(tty=False)
    assert os.environ["TQDM_DISABLE"] == "1" and os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"


def test_two_runs_of_one_task_on_one_model_print_different_start_lines():
    """The unaligned model and PROMPT-BASED are one model on one task: their progress lines name
    the method, so a log has no duplicated line."""
    from selfalign.evals.runner import run_task
    from selfalign.honesty.judging import Judge
    from selfalign.honesty.prompts import honesty_prompt
    from selfalign.honesty.task import HonestyQA
    from selfalign.types import Completion, GenResult

    said: list[str] = []

    class Model:
        model_id = "m"

        def generate(self, reqs, description=None, progress=None):
            said.append(description)
            return [GenResult(r, (Completion("Paris", "stop", 1),)) for r in reqs]

    task = HonestyQA("honesty-test", [("q1", "Capital of France?", ("Paris",))], honesty_prompt, Judge(), 8)
    for m in ("unaligned", "prompt"):
        run_task(task, Model(), resamples=0, label=m)
    assert said == ["eval honesty-test [unaligned]: m", "eval honesty-test [prompt]: m"]
