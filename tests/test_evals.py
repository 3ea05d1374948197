"""The generic task runner and paired comparison, on a scripted model."""

import json
from dataclasses import dataclass

from selfalign.evals.runner import Item, compare, run_task, share
from selfalign.judges.verdict import Verdict, parse_choice
from selfalign.models.scripted import ScriptedModel
from selfalign.store.cache import CachedModel, Store
from selfalign.types import GenParams, user


@dataclass
class LetterTask:
    n: int = 10
    name: str = "letters"
    params: GenParams = GenParams(0.0, 1.0, 4)

    def items(self):
        return [Item(f"q{i}", f"Question {i}: pick the right letter.", "A" if i % 2 else "B") for i in range(self.n)]

    def prompt(self, item):
        return user(item.input)

    def judge(self, items, responses):
        out = []
        for it, y in zip(items, responses):
            got = parse_choice(y, "AB")
            out.append(Verdict(None, raw=y, parsed=False) if got is None else Verdict("correct" if got == it.target else "wrong", raw=y))
        return out

    def metrics(self):
        return {"accuracy": share("correct")}


def test_run_task_answers_through_the_store_and_writes_rows(tmp_path):
    model = CachedModel(ScriptedModel(default="A"), Store(), progress=False)
    res = run_task(LetterTask(), model, out_dir=tmp_path, resamples=200)
    assert res.summary["metrics"]["accuracy"]["value"] == 0.5
    lo, hi = res.summary["metrics"]["accuracy"]["lo"], res.summary["metrics"]["accuracy"]["hi"]
    assert lo < 0.5 < hi
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and rows[0]["verdict"]["label"] in ("correct", "wrong") and rows[0]["prompt"]
    assert json.loads((tmp_path / "summary.json").read_text())["reliable"] is True
    again = run_task(LetterTask(), model)
    calls = model.store.db.execute("SELECT n_items, n_cached FROM calls ORDER BY id DESC LIMIT 1").fetchone()
    assert calls == (10, 10) and again.responses == res.responses


def test_unscored_answers_are_counted_and_make_a_task_unreliable():
    # 3 of 10 answers do not parse: 30% > 20%
    model = CachedModel(ScriptedModel(rules={"Question 1:": "no idea", "Question 2:": "C", "Question 3:": "A or B"},
                                      default="A"), Store(), progress=False)
    res = run_task(LetterTask(), model, resamples=0)
    assert res.summary["judge"]["unscored"] == 3 and res.summary["reliable"] is False
    # accuracy over the 7 scored items only: q5, q7, q9 (A) are right; q0, q4, q6, q8 (B) wrong
    assert res.summary["metrics"]["accuracy"]["value"] == 3 / 7


def test_compare_is_paired_on_the_same_items():
    store = Store()
    a = run_task(LetterTask(40), CachedModel(ScriptedModel(default="A"), store, progress=False), resamples=0)
    oracle = ScriptedModel(default=lambda text, i, s: "A" if int(text.split("Question ")[1].split(":")[0]) % 2 else "B",
                           model_id="oracle")
    b = run_task(LetterTask(40), CachedModel(oracle, store, progress=False), resamples=0)
    c = compare(a, b, resamples=500)
    assert c["n_paired"] == 40 and c["a"] == 0.5 and c["b"] == 1.0
    assert c["mcnemar"]["only_b"] == 20 and c["mcnemar"]["only_a"] == 0 and c["mcnemar"]["p_value"] < 1e-5
    assert 0.25 < c["diff_lo"] <= c["diff"] == 0.5 <= c["diff_hi"]
    assert c["transitions"] == {"correct -> correct": 20, "wrong -> correct": 20}
