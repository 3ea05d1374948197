"""ROUGE-L dedup speed: Self-Instruct's original approach (the ``rouge-score`` package, each
candidate scored against every pool item, pool pre-tokenised) against ``RougeLIndex``, in one
process, with the keep/drop decisions compared one by one.

Pool: 10,000 instruction-like texts (the bundled seed tasks and QA questions, then texts from a
template grammar that shares much structure, which makes the LCS bound work hard); candidates:
1,000 more from the same grammar, with 5% near-copies of pool items.

    .venv/bin/python bench/rouge.py                       # baseline on the first 100 candidates
    .venv/bin/python bench/rouge.py --baseline-candidates 1000   # the whole grid (~20 min)
"""

from __future__ import annotations

import argparse
import random
import time

from rouge_score import rouge_scorer

from selfalign.data.formats import load_qa
from selfalign.synth.rouge import RougeLIndex, rouge_tokenize
from selfalign.synth.tasks import load_seed_tasks

VERBS = "write explain describe list summarize compare translate suggest create design outline classify rewrite " \
        "find generate give analyze evaluate plan draft compose identify recommend estimate convert name".split()
ADJ = "short long funny formal simple detailed creative persuasive brief polite technical friendly critical " \
      "historical modern scientific personal practical surprising clear".split()
NOUN = "poem story email letter essay list summary plan recipe report review speech slogan tweet riddle " \
       "question answer argument description explanation dialogue headline joke guide checklist".split()
TOPIC = "the ocean climate change a job interview the solar system friendship machine learning a rainy day " \
        "ancient rome healthy eating a new phone electric cars the stock market a birthday party chess " \
        "volcanoes public libraries time management coffee remote work honey bees the moon landing".split(" ")
MOD = ["for a child", "in three sentences", "using simple words", "for a newspaper", "with examples",
       "in the style of a pirate", "for beginners", "under 50 words", "as a table", "with a twist ending", ""]


def grammar(rng: random.Random) -> str:
    return " ".join(x for x in (rng.choice(VERBS).capitalize(), "a", rng.choice(ADJ), rng.choice(NOUN), "about",
                                 rng.choice(TOPIC), rng.choice(MOD)) if x).strip() + "."


def build(pool_size: int, n_candidates: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    pool = [t.instruction for t in load_seed_tasks()] + [q.question for q in load_qa("bundled")]
    seen = set(pool)
    while len(pool) < pool_size:
        t = grammar(rng)
        if t not in seen:
            seen.add(t)
            pool.append(t)
    pool = pool[:pool_size]
    cands = []
    for _ in range(n_candidates):
        if rng.random() < 0.05:
            words = rng.choice(pool).split()
            words.insert(rng.randrange(len(words) + 1), rng.choice(ADJ))
            cands.append(" ".join(words))
        else:
            cands.append(grammar(rng))
    return pool, cands


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=10_000)
    ap.add_argument("--candidates", type=int, default=1_000)
    ap.add_argument("--baseline-candidates", type=int, default=100)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pool, cands = build(args.pool, args.candidates, args.seed)

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tok = scorer._tokenizer.tokenize
    k = min(args.baseline_candidates, len(cands))
    t = time.perf_counter()
    pool_tokens = [tok(p) for p in pool]
    base_keep = []
    for c in cands[:k]:
        ct = tok(c)
        best = max(rouge_scorer._score_lcs(ct, p).fmeasure for p in pool_tokens)
        base_keep.append(best < args.threshold)
    base_s = time.perf_counter() - t
    base_rate = k * len(pool) / base_s

    t = time.perf_counter()
    idx = RougeLIndex(pool, args.threshold)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    ours_keep = [idx.is_novel(rouge_tokenize(c)) for c in cands]
    ours_s = time.perf_counter() - t
    ours_rate = len(cands) * len(pool) / (ours_s + build_s)

    same = ours_keep[:k] == base_keep
    print(f"\npool {len(pool)}, candidates {len(cands)} (baseline on the first {k}), threshold {args.threshold}\n")
    print("| way | candidates | pairs | seconds | pairs/s | vs rouge-score |")
    print("|---|---|---|---|---|---|")
    print(f"| rouge-score, every pair (pre-tokenised pool) | {k} | {k * len(pool)} | {base_s:.1f} | {base_rate:,.0f} | 1.00x |")
    print(f"| RougeLIndex (index build {build_s:.2f}s included) | {len(cands)} | {len(cands) * len(pool)} | "
          f"{ours_s + build_s:.2f} | {ours_rate:,.0f} | {ours_rate / base_rate:.0f}x |")
    print(f"\nkeep/drop decisions identical on the {k} shared candidates: {same} "
          f"(kept {sum(base_keep)} of {k}; ours keeps {sum(ours_keep)} of {len(cands)})")
    if not same:
        raise SystemExit("decisions differ")


if __name__ == "__main__":
    main()
