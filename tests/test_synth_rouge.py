"""The fast ROUGE-L filter makes exactly the rouge-score package's decisions."""

import random

from rouge_score import rouge_scorer

from selfalign.synth.rouge import RougeLIndex, f_measure, filter_novel, lcs_length, rouge_l, rouge_tokenize

WORDS = "write a an the poem story list explain give three five ways to how what is of about sea city tree " \
        "summarize translate into french short long email letter friend code function python sort numbers".split()


def make(rng, n):
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


def test_same_scores_as_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    texts = make(rng, 60) + ["Write a poem about the sea!", "write a POEM, about the sea", "Émile wrote 3 poems."]
    for a in texts:
        for b in texts[:20]:
            ref = scorer.score(a, b)["rougeL"].fmeasure
            assert rouge_l(a, b) == ref
    assert rouge_tokenize("Émile wrote 3 poems.") == scorer._tokenizer.tokenize("Émile wrote 3 poems.")


def test_keep_drop_decisions_identical_to_brute_force():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(1)
    pool = make(rng, 300)
    cands = make(rng, 120) + [pool[5], pool[7] + " now"]
    ours = filter_novel(cands, pool, 0.7, grow=True)
    grown, ref = list(pool), []
    tok = scorer._tokenizer.tokenize
    grown_tokens = [tok(p) for p in grown]
    for c in cands:
        ct = tok(c)
        best = max((rouge_scorer._score_lcs(ct, p).fmeasure for p in grown_tokens), default=0.0)
        keep = best < 0.7
        ref.append(keep)
        if keep:
            grown_tokens.append(ct)
    assert ours == ref
    assert not ours[-2]  # an exact duplicate is dropped
    assert 0 < sum(ours) < len(ours)


def test_max_similarity_is_exact():
    rng = random.Random(2)
    pool = make(rng, 200)
    idx = RougeLIndex(pool)
    for c in make(rng, 40):
        best, i = idx.max_similarity(c)
        brute = max(rouge_l(c, p) for p in pool)
        assert best == brute
        if best > 0:
            assert rouge_l(c, pool[i]) == best


def test_lcs_and_f_measure():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    assert f_measure(3, 4, 4) == 0.75
    assert f_measure(0, 0, 4) == 0.0
