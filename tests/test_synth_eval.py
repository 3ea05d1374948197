"""``synth eval`` (issue 27): seed vs seed + a method's rows and IFD top vs random, each SFT model
answering held-out instructions, judged pairwise in both orders."""

from __future__ import annotations

import json

import pytest

from selfalign.data.io import DataError
from selfalign.models.scripted import ScriptedModel
from selfalign.store.cache import CachedModel, Store
from selfalign.evals import pairwise
from selfalign.synth import evaluate
from selfalign.synth.evaluate import SynthEvalConfig
from selfalign.train.base import TrainConfig


def _pick_good(text: str, index: int, seed: int) -> str:
    """A judge that prefers the response containing GOOD (whichever position it is in), and
    answers nonsense when neither does."""
    a = text.split("Response A:")[1].split("Response B:")[0]
    b = text.split("Response B:")[1]
    if "GOOD" in a and "GOOD" not in b:
        return "A"
    if "GOOD" in b and "GOOD" not in a:
        return "B"
    return "both are fine"


def _judge(tmp_path):
    return CachedModel(ScriptedModel(default=_pick_good, model_id="judge"), Store(tmp_path / "j.sqlite"), progress=False)


def test_compare_counts_wins_losses_and_unscored_from_both_orders(tmp_path):
    from selfalign.judges.llm import PairwiseJudge
    from selfalign.judges.instructions import Constraint, InstructionItem

    judge = PairwiseJudge(_judge(tmp_path), pairwise.JUDGE_TEMPLATE, name="t")
    prompts = ["p1", "p2", "p3", "p4"]
    a = ["GOOD one", "bad", "GOOD too", "same"]
    b = ["bad", "GOOD", "meh", "same"]
    items = [InstructionItem(f"i{i}", p, (Constraint("lowercase"),)) for i, p in enumerate(prompts)]
    c, rows = pairwise.compare("x", "y", prompts, a, b, judge, items, resamples=200, seed=0)
    assert (c["wins"], c["ties"], c["losses"], c["unscored"]) == (2, 0, 1, 1)
    assert c["win_rate"]["value"] == pytest.approx(2 / 3) and c["win_rate"]["n"] == 3  # unscored is not a loss
    # all lowercase: "bad", "same" of x's; "bad", "meh", "same" of y's
    assert c["instruction_following"]["x"]["k"] == 2 and c["instruction_following"]["y"]["k"] == 3
    assert [r["verdict"] for r in rows] == ["a", "b", "a", None]


def test_a_judge_that_follows_the_position_gives_ties(tmp_path):
    from selfalign.judges.llm import PairwiseJudge

    judge = PairwiseJudge(CachedModel(ScriptedModel(default="A"), Store(tmp_path / "s.sqlite"), progress=False),
                          pairwise.JUDGE_TEMPLATE)
    c, _ = pairwise.compare("x", "y", ["p"] * 3, ["GOOD"] * 3, ["bad"] * 3, judge, None, 100, 0)
    assert (c["ties"], c["flipped"], c["wins"]) == (3, 3, 0) and c["win_rate"]["value"] == 0.5


def _rows(path, prompts, completion="an answer", ok=True):
    path.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": p}],
                                        "completion": [{"role": "assistant", "content": completion}],
                                        "meta": {"ok": ok}}) + "\n" for p in prompts))
    return str(path)


def test_inputs_are_checked_before_any_model_and_held_out_repeats_are_dropped(tmp_path):
    held = tmp_path / "held.jsonl"
    held.write_text('{"prompt": "Name a colour."}\n{"prompt": "Say hi."}\n')
    rows = _rows(tmp_path / "a.jsonl", ["Name a  COLOUR.", "Write a poem.", "Count to 3."])
    inp = evaluate.read_inputs(SynthEvalConfig(sets=[f"a={rows}"], held_out=str(held)))
    assert inp.dropped["a"] == 1 and len(inp.sets["a"]) == 2 and inp.held.items is None
    assert inp.held.prompts == ["Name a colour.", "Say hi."] and len(inp.seed) > 20
    with pytest.raises(ValueError, match="nothing to compare"):
        evaluate.read_inputs(SynthEvalConfig(held_out=str(held)))
    with pytest.raises(ValueError, match="NAME=rows.jsonl"):
        evaluate.read_inputs(SynthEvalConfig(sets=["no-equals-sign"]))
    with pytest.raises(ValueError, match="reserved or repeated"):
        evaluate.parse_sets([f"a={rows}", f"a={rows}"])
    with pytest.raises(ValueError, match="no usable rows"):
        evaluate.read_inputs(SynthEvalConfig(sets=[f"b={_rows(tmp_path / 'b.jsonl', ['x'], ok=False)}"]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "completion": "y"}\n{"prompt": "z"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl.*2.*completion"):
        evaluate.read_inputs(SynthEvalConfig(sets=[f"c={bad}"]))
    with pytest.raises(ValueError, match="ifd_fraction"):
        SynthEvalConfig(ifd_fraction=0)


def test_end_to_end_on_a_tiny_model(tiny_model_dir, tmp_path):
    """Three SFT models (seed, seed + a set, and the IFD pair from a pool), the bundled 40 held-out
    instructions (4 of them), a scripted judge; the report renders and the counts add up."""
    from selfalign.models.hf import HFModel
    from selfalign.report.synth_eval import write_report

    base = CachedModel(HFModel(str(tiny_model_dir), dtype="float32"), Store(tmp_path / "s.sqlite"), progress=False)
    pool = _rows(tmp_path / "pool.jsonl", [f"Task number {i}: do thing {i}." for i in range(20)], "Done, GOOD.")
    cfg = SynthEvalConfig(model=str(tiny_model_dir), sets=[f"mine={pool}"], ifd=pool, ifd_fraction=0.2, n_held_out=4,
                          max_tokens=6, out=str(tmp_path / "out"), bootstrap=50,
                          train=TrainConfig(epochs=1, batch_size=8, lora_r=4))
    res = evaluate.run(cfg, base, _judge(tmp_path), log=lambda s: None)
    assert [(c["name"], c["baseline"]) for c in res.comparisons] == [("seed+mine", "seed"), ("ifd-top", "ifd-random")]
    assert res.models["seed+mine"]["rows"] == res.models["seed"]["rows"] + 20
    assert res.models["ifd-top"]["rows"] == res.models["ifd-random"]["rows"] == res.ifd_counts["kept"] >= 1
    for c in res.comparisons:
        assert c["wins"] + c["ties"] + c["losses"] + c["unscored"] == c["n"] == 4
        assert "instruction_following" in c  # the bundled items have constraints
    assert len(res.rows) == 8
    page = write_report(tmp_path / "out", res, {}).read_text()
    assert "seed+mine vs seed" in page and "Deviations" in page
