"""The judge layer: malformed answers are unscored (never a label), pairwise judges ask in both
orders and count flips, and every stage that judges reports those counts."""

import pytest

from selfalign.honesty.judging import Judge
from selfalign.judges.llm import PairwiseJudge, RubricJudge
from selfalign.judges.verdict import parse_choice, parse_score, parse_yes_no, tally
from selfalign.models.scripted import ScriptedModel
from selfalign.store.cache import CachedModel, Store

MALFORMED = ["", "   ", "I think so", "A and B", "Score: seven", "The answer is unclear.", "maybe yes", "6", "Yess"]


def cached(model):
    return CachedModel(model, Store(), progress=False)


@pytest.mark.parametrize("text", MALFORMED)
def test_strict_parsers_return_none_on_malformed_answers(text):
    assert parse_choice(text, "AB") is None or text.strip() in ("A", "B")
    assert parse_yes_no(text) is None
    assert parse_score(text, 1, 5) is None


def test_strict_parsers_accept_the_usual_forms():
    assert [parse_choice(t, "ABC") for t in ("B", "(C)", "Answer: A", "A) Paris", "b")] == ["B", "C", "A", "A", None]
    assert [parse_yes_no(t) for t in ("Yes.", "no, it is fine", "Answer: Yes")] == ["yes", "no", "yes"]
    assert [parse_score(t) for t in ("Score: 4", "3", "Reasoning... Score: 2\nScore: 5", "Score: 0")] == [4, 3, 5, None]


def test_rubric_judge_counts_unscored_answers():
    model = ScriptedModel(rules={"good": "Score: 5", "bad": "Score: 1"}, default="I would rather not say.")
    judge = RubricJudge(cached(model), "Rate this {kind} answer.", lambda t: parse_score(t, 1, 5))
    verdicts = judge.judge([{"kind": "good"}, {"kind": "bad"}, {"kind": "odd"}])
    assert [v.label for v in verdicts] == ["5", "1", None]
    assert verdicts[0].score == 5.0 and not verdicts[2].parsed and verdicts[2].raw == "I would rather not say."
    assert tally(verdicts) == {"n": 3, "scored": 2, "unscored": 1, "unscored_share": 1 / 3}


TEMPLATE = "Which is better?\nA: {first}\nB: {second}\n{context}"


def _pairwise(answer):
    return PairwiseJudge(cached(ScriptedModel(default=answer)), TEMPLATE)


def test_pairwise_judge_that_answers_by_position_gives_flipped_ties():
    for letter in ("A", "B"):
        verdicts = _pairwise(letter).compare([("", "good answer", "bad answer"), ("", "x", "y")])
        assert all(v.label == "tie" and v.flipped and v.score == 0.5 for v in verdicts)
        assert tally(verdicts)["flipped"] == 2


def test_pairwise_judge_that_reads_content_is_consistent():
    def content(text, i, seed):  # prefers the response containing "good", wherever it is
        return "A" if text.split("A: ")[1].startswith("good") else "B"

    v = _pairwise(content).compare([("", "good", "bad"), ("", "bad", "good")])
    assert [x.label for x in v] == ["a", "b"] and not any(x.flipped for x in v)
    assert tally(v)["flipped"] == 0


def test_pairwise_judge_malformed_answers_are_unscored_not_ties():
    v = _pairwise("Both are fine.").compare([("", "x", "y")])
    assert v[0].label is None and not v[0].parsed and len(v[0].meta["orders"]) == 2
    assert tally(v) == {"n": 1, "scored": 0, "unscored": 1, "unscored_share": 1.0, "flipped": 0}


def test_honesty_llm_judge_counts_what_it_could_not_parse():
    llm = cached(ScriptedModel(rules={"Paris": "A"}, default="Hard to tell!"))
    j = Judge(llm=llm)
    labels = j.label_many(["Capital of France?", "Capital of Peru?"], ["Paris.", "I apologize, I cannot say."],
                          [("Paris",), ("Lima",)])
    assert labels == ["correct", "idk"]  # the second fell back to string matching, and is counted
    assert j.counts()["judged"] == 2 and j.counts()["unscored"] == 1
    assert Judge().counts()["unscored"] == 0


def test_evol_and_backtranslation_parsers_are_strict():
    from selfalign.synth.backtranslation import parse_score as rating
    from selfalign.synth.evol_instruct import elimination_reason, parse_equal

    assert parse_equal("Hmm, the second is longer.") is None
    # an unparsable equality answer eliminates nothing (it is counted, not read as "equal")
    assert elimination_reason("Name a fruit.", "Name three red fruits and say why.", "Apples, cherries and "
                              "strawberries are red.", "It depends") is None
    assert rating("Looks fine to me.") is None and rating("Reasoning: ok.\nScore: 4") == 4.0
