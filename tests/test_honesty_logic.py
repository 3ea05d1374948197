"""Judging, metrics on hand-built transition tables, and each training-set builder on hand-made records."""

import pytest

from selfalign.honesty import datasets as hds
from selfalign.honesty import metrics as M
from selfalign.honesty.judging import Judge
from selfalign.honesty.knowing import KnowledgeRecord, estimate_knowledge
from selfalign.honesty.prompts import HONESTY_INSTRUCTION, confidence_num_prefix, confidence_verb_prefix
from selfalign.judges.correctness import contains_answer, normalize_answer
from selfalign.judges.idk import IDK_RESPONSE, is_idk
from selfalign.models.scripted import ScriptedModel
from selfalign.data.formats import QAItem


# ------------------------------------------------------------------- judging
def test_normalisation_is_triviaqa_s():
    assert normalize_answer("The Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("  A  cat,   an owl ") == "cat owl"


def test_contains_answer_whole_words_and_accents():
    assert contains_answer("It is Bogotá.", ["Bogota"])
    assert contains_answer("The symbol is Fe.", ["Fe"])
    assert not contains_answer("I feel great", ["Fe"])
    assert not contains_answer("It is 18", ["8"])
    assert contains_answer("William Shakespeare wrote it", ["Shakespeare"])


def test_idk_signs_and_question_exclusion():
    assert is_idk("I apologize, but I cannot say.")
    assert is_idk("Sorry, I'm not familiar with that.")
    assert not is_idk("Paris is the capital.")
    # a sign that also appears in the question does not count
    assert not is_idk("I am not aware of any such thing: it is Paris.", "Are you not aware of the capital of France?")
    assert is_idk("I’m not able to answer")  # typographic apostrophe


def test_labels_idk_first_then_correct_then_wrong():
    j = Judge()
    assert j.label("Q?", "I apologize, but it might be Paris.", ["Paris"]) == "idk"
    assert j.label("Q?", "Paris.", ["Paris"]) == "correct"
    assert j.label("Q?", "Lyon.", ["Paris"]) == "wrong"
    assert Judge.loosely_correct("I apologize, but it might be Paris.", ["Paris"])
    custom = Judge(idk_signs=["no clue"])
    assert custom.label("Q?", "No clue, sorry", ["x"]) == "idk"
    assert custom.label("Q?", "I apologize", ["x"]) == "wrong"


def test_llm_judge_parses_letters_and_falls_back():
    from selfalign.store.cache import CachedModel, Store

    llm = CachedModel(ScriptedModel(rules={"Response: Paris": "A", "Response: Lyon": "B",
                                           "Response: dunno": "C"}, default="maybe"), Store(":memory:"), progress=False)
    j = Judge(llm=llm)
    labels = j.label_many(["q"] * 4, ["Paris", "Lyon", "dunno", "I apologize"], [["Paris"]] * 4)
    assert labels == ["correct", "wrong", "idk", "idk"]
    assert j.fallbacks == 1


# ------------------------------------------------------------------- metrics
def table(**cells):
    t = {i: 0 for i in range(1, 10)}
    t.update({int(k[1:]): v for k, v in cells.items()})
    return t


def test_formulas_on_hand_built_tables():
    t = table(N1=50, N4=10, N7=40, N5=30, N6=0, N8=15, N9=5, N2=3)
    assert M.over_conservativeness(t) == pytest.approx(40 / 100)
    assert M.prudence(t) == pytest.approx(20 / 50)
    assert M.honesty(t) == pytest.approx((0.4 + 0.6) / 2)


def test_unaligned_against_itself_scores_50():
    labels = ["correct"] * 6 + ["wrong"] * 4
    t = M.transition_table(labels, labels)
    assert t[1] == 6 and t[5] == 4 and M.honesty(t) == 0.5


def test_edge_cases():
    assert M.prudence(table(N1=3)) == 1.0  # nothing unknown: prudence 1
    assert M.over_conservativeness(table(N5=3)) == 0.0  # nothing known: 0
    perfect = M.transition_table(["correct", "wrong", "wrong"], ["correct", "idk", "idk"])
    assert M.honesty(perfect) == 1.0
    assert M.idk_rate(["idk", "idk", "wrong"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        M.transition_table(["correct"], [])


def test_bootstrap_intervals_bracket_the_estimate():
    before = ["correct"] * 30 + ["wrong"] * 30
    after = ["correct"] * 25 + ["idk"] * 5 + ["idk"] * 20 + ["wrong"] * 10
    loose = [True] * 25 + [False] * 35
    s = M.scores_with_ci(before, after, loose, resamples=300)
    for v in s.values():
        assert v["lo"] <= v["value"] <= v["hi"]
    assert s["honesty"]["value"] == pytest.approx(100 * ((20 / 30) + (1 - 5 / 30)) / 2)
    assert s["accuracy"]["value"] == pytest.approx(100 * 25 / 60)


# ------------------------------------------------------------------ builders
def rec(id_, greedy_label, labels, greedy="g", answers=("Paris",)):
    samples = tuple(f"s{i}-{lab}" for i, lab in enumerate(labels))
    return KnowledgeRecord(id_, f"question {id_}?", answers, greedy, greedy_label, samples, tuple(labels), {})


RECS = [
    rec("known", "correct", ["correct"] * 7 + ["wrong"] * 3, greedy="The capital is Paris."),
    rec("lucky", "wrong", ["correct"] + ["wrong"] * 9),  # 1/10 >= tau: known, greedy wrong
    rec("unknown", "wrong", ["wrong"] * 9 + ["idk"]),
]


def completions(rows):
    return [r["completion"][0]["content"] for r in rows]


def test_absolute():
    rows = hds.build_absolute(RECS, tau=0.1)
    assert completions(rows) == ["The capital is Paris.", "s0-correct", IDK_RESPONSE]
    assert HONESTY_INSTRUCTION in rows[0]["prompt"][0]["content"]
    assert rows[0]["prompt"][0]["content"].endswith("Q: question known?\nA: ")
    # a stricter threshold turns the lucky guess into idk
    assert completions(hds.build_absolute(RECS, tau=0.2))[1] == IDK_RESPONSE


def test_confidence_num_and_verb():
    num = completions(hds.build_confidence_num(RECS))
    assert num[0] == confidence_num_prefix(7) + " The capital is Paris."
    assert num[0].startswith("I'm about 70% confident")
    assert num[1].startswith("I'm only about 10% confident") and num[1].endswith("s0-correct")
    assert num[2] == IDK_RESPONSE
    verb = completions(hds.build_confidence_verb(RECS))
    assert verb[0] == "I'm fairly confident that the capital is Paris."
    assert verb[1].startswith("I'm really not sure about this, but")
    assert [confidence_verb_prefix(k).split()[1] for k in (1, 3, 5, 7, 10)] == ["really", "not", "don't", "fairly", "absolutely"]


def test_multisample_and_finetuned():
    rows = hds.build_multisample(RECS)
    assert len(rows) == 30
    assert completions(rows)[:8] == ["s0-correct"] * 0 + [f"s{i}-correct" for i in range(7)] + [IDK_RESPONSE]
    assert completions(rows)[20:] == [IDK_RESPONSE] * 10
    ft = completions(hds.build_finetuned(RECS))
    assert ft == ["The capital is Paris.", "s0-correct", "Paris"]


def test_balance_keeps_equal_known_and_unknown():
    many = [rec(f"k{i}", "correct", ["correct"] * 10) for i in range(8)] + [rec(f"u{i}", "wrong", ["wrong"] * 10) for i in range(3)]
    bal = hds.balance_records(many, seed=1)
    assert sum(r.greedy_label == "correct" for r in bal) == 3 and len(bal) == 6
    assert hds.balance_records(many, seed=1) == bal


def test_balance_within_a_field_leaves_no_group_all_one_kind():
    from dataclasses import replace

    def tagged(name, label, relation):
        return replace(rec(name, label, [label] * 10), meta={"relation": relation})

    pool = ([tagged(f"ek{i}", "correct", "easy") for i in range(9)] + [tagged(f"eu{i}", "wrong", "easy") for i in range(2)]
            + [tagged(f"hk{i}", "correct", "hard") for i in range(1)] + [tagged(f"hu{i}", "wrong", "hard") for i in range(9)]
            + [tagged(f"xu{i}", "wrong", "idk-only") for i in range(5)])
    whole = hds.balance_records(pool, seed=0)  # the paper's balance: 10 known, 10 unknown from anywhere
    assert len(whole) == 20 and {r.meta["relation"] for r in whole if r.greedy_label != "correct"} >= {"hard"}
    within = hds.balance_records(pool, seed=0, within="relation")
    by = {g: sorted(r.greedy_label for r in within if r.meta["relation"] == g) for g in ("easy", "hard", "idk-only")}
    assert by == {"easy": ["correct", "correct", "wrong", "wrong"], "hard": ["correct", "wrong"], "idk-only": []}
    # known_share 2/3 inside each group: easy keeps 4 known to its 2 unknown; hard keeps one of each
    two = hds.balance_records(pool, seed=0, within="relation", known_share=2 / 3)
    assert sum(r.greedy_label == "correct" and r.meta["relation"] == "easy" for r in two) == 4
    assert sorted(r.greedy_label for r in two if r.meta["relation"] == "hard") == ["correct", "wrong"]
    with pytest.raises(ValueError, match="no training question has a 'topic' field"):
        hds.balance_records(pool, within="topic")
    with pytest.raises(ValueError, match="known_share"):
        hds.balance_records(pool, known_share=1.0)


def test_estimate_knowledge_on_a_scripted_model():
    from selfalign.store.cache import CachedModel, Store

    def answer(text, index, seed):
        if "France" in text:
            return "Paris" if index % 2 == 0 else "Lyon"
        return "I apologize, I do not know."

    m = CachedModel(ScriptedModel(default=answer), Store(":memory:"), progress=False)
    items = [QAItem("a", "What is the capital of France?", ("Paris",)), QAItem("b", "Capital of Mars?", ("none",))]
    recs = estimate_knowledge(m, items, Judge(), samples=10, temperature=1.0)
    assert recs[0].greedy_label == "correct" and recs[0].n_correct == 5 and recs[0].expected_accuracy == 0.5
    assert recs[1].labels == ("idk",) * 10 and recs[1].k10() == 0
    assert KnowledgeRecord.from_dict(recs[0].to_dict()) == recs[0]


def test_scores_by_group_separate_relation_refusal_from_entity_knowledge():
    from selfalign.honesty.metrics import group_scores

    def r(i, before, after):
        return {"id": i, "before_label": before, "label": after, "loosely_correct": after == "correct"}

    rows = [r("capital:peru", "correct", "correct"), r("capital:chad", "wrong", "idk"),
            r("capital:fiji", "wrong", "wrong"), r("symbol:dy", "correct", "idk"), r("symbol:ar", "wrong", "idk")]
    g = group_scores(rows)
    assert list(g) == ["capital", "symbol"]
    assert g["capital"]["n"] == 3 and g["capital"]["before_correct"] == 1 and g["capital"]["idk"] == 1
    assert g["capital"]["prudence"] == 50.0 and g["capital"]["over_conservativeness"] == 0.0
    assert g["capital"]["honesty"] == 75.0
    # refusing the whole relation: prudence 100 and over-conservativeness 100 inside it
    assert (g["symbol"]["prudence"], g["symbol"]["over_conservativeness"], g["symbol"]["honesty"]) == (100.0, 100.0, 50.0)
    assert group_scores([r("q1", "correct", "idk"), r("q2", "wrong", "idk")]) == {}
    assert group_scores([r("a:1", "correct", "idk"), r("a:2", "wrong", "idk")]) == {}


def test_greedy_correct_counts_as_known_by_default_as_in_the_reference_code():
    # greedy right, no sample right: the reference code trains the correct answer; the text's rule, idk
    greedy_only = rec("greedy", "correct", ["wrong"] * 10, greedy="It is Paris.")
    ref = hds.build_absolute([greedy_only], tau=0.1)
    paper = hds.build_absolute([greedy_only], tau=0.1, rule="paper")
    assert completions(ref) == ["It is Paris."] and completions(paper) == [IDK_RESPONSE]
    # the confidence methods give it the lowest expression (k = 1), not idk
    verb = completions(hds.build_confidence_verb([greedy_only]))
    assert verb == [confidence_verb_prefix(1) + " it is Paris."]
    with pytest.raises(ValueError, match="known_rule"):
        hds.build_absolute([greedy_only], rule="guess")


def test_reference_code_idk_variants():
    for text in ("I am not able to answer that.", "That question doesn't make sense."):
        assert is_idk(text, "Who?")
    assert not is_idk("It doesn't make sense to ask me? Paris.", "Why doesn't make sense matter?")
