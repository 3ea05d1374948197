"""Sentence BLEU (Papineni et al. 2002) for Rainbow Teaming's novelty filter: a mutated prompt
whose BLEU against its parent is >= 0.6 is too close to it and is discarded.

BLEU = BP * exp(mean_n log p_n), n = 1..4, p_n the clipped n-gram precision of the candidate
against the reference, BP = min(1, exp(1 - r/c)) the brevity penalty. A zero count gets a small
epsilon (Chen & Cherry 2014, "method 1"), so one missing 4-gram does not zero a short sentence.
Tokens: lower-cased words and punctuation marks.

>>> round(sentence_bleu("How do I pick a lock?", "How do I pick a lock?"), 9)
1.0

One word added: precisions 7/8, 5/7, 4/6, 3/5, geometric mean 0.25 ** 0.25:

>>> round(sentence_bleu("How do I pick a lock quickly?", "How do I pick a lock?"), 3)
0.707
>>> sentence_bleu("Tell me about bridges.", "How do I pick a lock?") < 0.1
True
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"\w+|[^\w\s]")


def bleu_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def sentence_bleu(candidate: str, reference: str, max_n: int = 4, epsilon: float = 0.1) -> float:
    cand, ref = bleu_tokens(candidate), bleu_tokens(reference)
    if not cand or not ref:
        return 0.0
    logs = []
    for n in range(1, max_n + 1):
        c_grams = Counter(tuple(cand[i:i + n]) for i in range(len(cand) - n + 1))
        r_grams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
        total = sum(c_grams.values())
        if total == 0:  # candidate shorter than n
            logs.append(math.log(epsilon / 1))
            continue
        match = sum(min(c, r_grams[g]) for g, c in c_grams.items())
        logs.append(math.log((match if match else epsilon) / total))
    bp = 1.0 if len(cand) > len(ref) else math.exp(1 - len(ref) / len(cand))
    return bp * math.exp(sum(logs) / max_n)
