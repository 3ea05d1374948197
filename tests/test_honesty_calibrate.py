"""Calibrated abstention (honesty/calibrate.py): the threshold's exact choice, the wrapper's three
cases with a scripted model, and the pipeline's held-out split end to end on a tiny model."""

from __future__ import annotations

import json
import math

import pytest

from selfalign.config import load_config
from selfalign.data.io import DataError
from selfalign.honesty.calibrate import ANSWER_PREFIXES, CalibratedAbstention, choose_threshold, decline_scores
from selfalign.honesty.pipeline import HonestyConfig, HonestyRun
from selfalign.honesty.prompts import VERB_BINS, honesty_prompt
from selfalign.judges.idk import IDK_RESPONSE
from selfalign.models.scripted import ScriptedModel
from selfalign.store.cache import CachedModel, Store
from selfalign.types import GenParams, GenRequest, ScoreResult

from conftest import qa_file


def test_threshold_maximises_honesty_and_ties_go_to_fewer_declines():
    # unknown questions score high, known low: a clean cut between 1.0 and -1.0
    t = choose_threshold([2.0, 1.0, -1.0, -3.0], [False, False, True, True])
    assert (t.theta, t.honesty, t.prudence, t.over_conservativeness) == (0.0, 100.0, 100.0, 0.0)
    # no score separates them: declining nothing (inf) ties with declining everything; the larger wins
    t = choose_threshold([1.0, 1.0], [True, False])
    assert t.theta == math.inf and t.honesty == 50.0
    # one known question above an unknown one: declining only the top costs it one over-conservative decline
    t = choose_threshold([3.0, 2.0, 0.0], [True, False, True])
    assert t.theta == 1.0 and t.prudence == 100.0 and t.over_conservativeness == 50.0
    with pytest.raises(ValueError, match="right and wrong"):
        choose_threshold([1.0, 2.0], [True, True])


class _Fake(ScriptedModel):
    """Greedy answers by rule; log-probabilities set per (question, completion) so decline scores are exact."""

    def __init__(self, lp, **kw):
        super().__init__(**kw)
        self.lp = lp

    def score(self, requests):
        out = []
        for r in requests:
            q = next(k for k in self.lp if k in r.prompt[-1].content)
            out.append(ScoreResult(r, (self.lp[q].get(r.completion, -50.0),)))
        return out


def test_the_wrapper_declines_above_the_threshold_and_forces_an_answer_below_it(tmp_path):
    bins = [p for _, p in VERB_BINS]
    lp = {"alpha": {IDK_RESPONSE: -1.0, bins[0]: -5.0},             # score ~ +4: decline
          "beta": {IDK_RESPONSE: -6.0, bins[3]: -1.0},              # score ~ -5: answer
          "gamma": {IDK_RESPONSE: -6.0, bins[1]: -2.0, bins[2]: -3.0}}  # ~ -3.7: answer, though greedy said idk
    model = _Fake(lp, rules={"alpha": "I'm fairly confident that Alpha.", "beta": "I'm fairly confident that Beta.",
                             "I'm not completely sure": " it is Gamma.", "gamma": IDK_RESPONSE})
    fake, model = model, CachedModel(model, Store(tmp_path / "s.db"), progress=False)  # as the pipeline has it
    scores, best = decline_scores(model, [honesty_prompt(q) for q in ("alpha", "beta", "gamma")], "confidence-verb")
    assert scores[0] == pytest.approx(-1.0 - math.log(math.exp(-5.0) + 4 * math.exp(-50.0)))
    assert best == [bins[0], bins[3], bins[1]]
    wrapped = CalibratedAbstention(model, "confidence-verb", 0.0)
    reqs = [GenRequest(honesty_prompt(q), GenParams(max_tokens=16)) for q in ("alpha", "beta", "gamma")]
    texts = [r.texts[0] for r in wrapped.generate(reqs)]
    assert texts == [IDK_RESPONSE, "I'm fairly confident that Beta.", bins[1] + " it is Gamma."]
    forced = [c for c in fake.calls if isinstance(c, GenRequest) and c.prompt[-1].role == "assistant"]
    assert [c.prompt[-1].content for c in forced] == [bins[1]]  # only the idk answer below the threshold
    # a threshold above every score changes nothing but the forced answer
    texts = [r.texts[0] for r in CalibratedAbstention(model, "confidence-verb", 10.0).generate(reqs)]
    assert texts[:2] == ["I'm fairly confident that Alpha.", "I'm fairly confident that Beta."]
    with pytest.raises(ValueError, match="fixed answer prefixes"):
        CalibratedAbstention(model, "absolute", 0.0)
    with pytest.raises(ValueError, match="one greedy"):
        wrapped.generate([GenRequest(honesty_prompt("alpha"), GenParams(temperature=1.0))])
    assert set(ANSWER_PREFIXES["confidence-num"]) and len(ANSWER_PREFIXES["confidence-num"]) == 10


def _cfg(tmp_path, model, **over):
    return load_config(HonestyConfig, {
        "model": str(model), "data": str(qa_file(tmp_path, n=32)), "samples": 2, "max_tokens": 6, "eval_max_tokens": 8,
        "methods": ["confidence-verb"], "balance": False, "bootstrap": 20, "calib_n": 8, "store": str(tmp_path / "s.db"),
        "out": str(tmp_path / "run"), "train": {"epochs": 1, "batch_size": 4, "lora_r": 4}, **over})


def test_calib_n_holds_questions_out_of_training_and_reports_a_calibrated_model(tiny_model_dir, tmp_path):
    # the unaligned model (scripted) knows the even-numbered capitals; training runs on the tiny model
    base = ScriptedModel(rules={f"country {i}?": f"City{i}" for i in range(0, 32, 2)}, default="Nowhere")
    run = HonestyRun(_cfg(tmp_path, tiny_model_dir), progress=False, log=lambda s: None, base_model=base)
    run.run(("sample", "build", "train", "eval", "report"))
    out = tmp_path / "run"
    calib = [json.loads(x) for x in (out / "knowledge" / "calib.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (out / "datasets" / "confidence-verb.jsonl").read_text().splitlines()]
    assert len(calib) == 8 and len(rows) == 24 - 8
    held = {r["question"] for r in calib}
    assert not held & {r["prompt"][0]["content"].split("Q: ")[1].split("\n")[0] for r in rows}
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert set(summary["methods"]) == {"unaligned", "confidence-verb", "confidence-verb-cal"}
    cal = summary["calibration"]["confidence-verb"]
    assert cal["n_known"] + cal["n_unknown"] == 8 and 0 < cal["n_known"] < 8
    assert (out / "eval" / "confidence-verb-cal.jsonl").exists()
    page = (out / "report.html").read_text()
    assert "Calibrated decline threshold" in page and f"{cal['theta']:+.3f}" in page


def test_calib_n_is_checked_before_training(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="neither"):
        _cfg(tmp_path, tiny_model_dir, methods=["absolute"])
    # every held-out question answered wrong: refused at build, before any training
    base = ScriptedModel(default="Nowhere")
    run = HonestyRun(_cfg(tmp_path, tiny_model_dir), progress=False, log=lambda s: None, base_model=base)
    with pytest.raises(DataError, match="all answered wrong"):
        run.run(("sample", "build", "train"))
    assert not (tmp_path / "run" / "models").exists()
