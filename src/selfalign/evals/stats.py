"""The statistics every stage reports with: intervals, paired comparisons, calibration, Elo.

Pure functions over plain lists, each with a worked example.

* :func:`bootstrap_ci`: percentile bootstrap over items; :func:`mean_ci`: a mean with it;
* :func:`paired_bootstrap`: the difference of one statistic between two systems on the *same*
  items, resampling items jointly (the between-item variance cancels, so the interval is much
  narrower than two separate intervals suggest);
* :func:`mcnemar`: exact two-sided McNemar test on paired binary outcomes (binomial on the
  discordant pairs; chi-square with continuity correction above 1,000 discordant pairs);
* :func:`wilson_interval`: a binomial proportion's interval that behaves at 0 and n;
* :func:`expected_calibration_error` and :func:`reliability_bins`: equal-width bins, ECE =
  sum over bins of (bin size / n) * |accuracy - mean confidence| (Guo et al. 2017);
* :func:`elo_ratings`: ratings from pairwise outcomes, ties counting half;
* :func:`auroc`: how well a score ranks positives above negatives (ties count half).
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence


def bootstrap_ci(
    n: int, statistic: Callable[[list[int]], float], resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``n`` items resampled with replacement.

    >>> lo, hi = bootstrap_ci(4, lambda idx: sum(idx) / len(idx), resamples=200)
    >>> 0 <= lo <= 1.5 <= hi <= 3
    True
    """
    if n == 0:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    values = sorted(statistic([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    lo = values[int((1 - level) / 2 * (resamples - 1))]
    hi = values[int((1 + level) / 2 * (resamples - 1))]
    return lo, hi


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def mean_ci(values: Sequence[float], resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """The mean of ``values`` with its percentile-bootstrap interval, as stages report it.

    >>> d = mean_ci([1.0, 0.0, 1.0, 1.0], resamples=200)
    >>> d["value"], d["n"], d["lo"] <= 0.75 <= d["hi"]
    (0.75, 4, True)
    """
    lo, hi = bootstrap_ci(len(values), lambda idx: mean([values[i] for i in idx]), resamples, seed=seed)
    return {"value": mean(values), "lo": lo, "hi": hi, "n": len(values)}


@dataclass(frozen=True)
class PairedDiff:
    a: float
    b: float
    diff: float  # b - a
    lo: float
    hi: float


def paired_bootstrap(a: Sequence[float], b: Sequence[float], statistic: Callable[[Sequence[float]], float] = mean,
                     resamples: int = 1000, level: float = 0.95, seed: int = 0) -> PairedDiff:
    """Interval of ``statistic(b) - statistic(a)`` with items resampled jointly.

    Two systems scored on the same 8 items; b fixes two of a's errors and breaks none:

    >>> a = [1, 0, 1, 0, 1, 1, 0, 1]
    >>> b = [1, 1, 1, 1, 1, 1, 0, 1]
    >>> d = paired_bootstrap(a, b, resamples=500)
    >>> d.diff, d.lo >= 0, d.hi <= 0.5
    (0.25, True, True)
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    diff = statistic(b) - statistic(a)

    def stat(idx: list[int]) -> float:
        return statistic([b[i] for i in idx]) - statistic([a[i] for i in idx])

    lo, hi = bootstrap_ci(len(a), stat, resamples, level, seed)
    return PairedDiff(statistic(a), statistic(b), diff, lo, hi)


@dataclass(frozen=True)
class McNemar:
    only_a: int  # items a got right and b wrong
    only_b: int  # items b got right and a wrong
    statistic: float  # chi-square with continuity correction (reported for reference)
    p_value: float
    exact: bool


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    """McNemar's test on paired binary outcomes: exact two-sided binomial p on the discordant
    pairs (chi-square with continuity correction when there are over 1,000 of them).

    >>> r = mcnemar([True] * 10 + [False] * 10, [True] * 2 + [False] * 8 + [True] * 10)
    >>> r.only_a, r.only_b, round(r.p_value, 4)
    (8, 10, 0.8145)
    >>> mcnemar([True, False], [True, False]).p_value
    1.0
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a, b))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a, b))
    n = only_a + only_b
    chi2 = (abs(only_a - only_b) - 1) ** 2 / n if n else 0.0
    if n == 0:
        return McNemar(only_a, only_b, 0.0, 1.0, True)
    if n <= 1000:
        k = min(only_a, only_b)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
        return McNemar(only_a, only_b, chi2, min(1.0, 2 * tail), True)
    return McNemar(only_a, only_b, chi2, math.erfc(math.sqrt(chi2 / 2)), False)


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n (95% by default).

    >>> lo, hi = wilson_interval(0, 10)
    >>> lo, round(hi, 3)
    (0.0, 0.278)
    >>> [round(x, 3) for x in wilson_interval(5, 10)]
    [0.237, 0.763]
    """
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Bin:
    lo: float
    hi: float
    count: int
    confidence: float  # mean predicted confidence in the bin (nan when empty)
    accuracy: float  # observed frequency in the bin (nan when empty)


def reliability_bins(confidences: Sequence[float], outcomes: Sequence[bool], n_bins: int = 10) -> list[Bin]:
    """Equal-width bins over [0, 1]; a confidence of exactly 1 falls in the last bin.

    >>> [(b.count, b.confidence, b.accuracy) for b in reliability_bins([0.1, 0.2, 0.9], [False, True, True], 2)]
    [(2, 0.15000000000000002, 0.5), (1, 0.9, 1.0)]
    """
    if len(confidences) != len(outcomes):
        raise ValueError(f"{len(confidences)} confidences but {len(outcomes)} outcomes")
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(confidences):
        if not 0.0 <= c <= 1.0:
            raise ValueError(f"confidence {c} at position {i} is outside [0, 1]")
        members[min(int(c * n_bins), n_bins - 1)].append(i)
    out = []
    for j, idx in enumerate(members):
        conf = mean([confidences[i] for i in idx])
        acc = mean([float(bool(outcomes[i])) for i in idx])
        out.append(Bin(j / n_bins, (j + 1) / n_bins, len(idx), conf, acc))
    return out


def expected_calibration_error(confidences: Sequence[float], outcomes: Sequence[bool], n_bins: int = 10) -> float:
    """ECE = sum_b (|b| / n) * |accuracy(b) - confidence(b)|.

    Always 90% sure, right 9 times of 10: perfectly calibrated. Always 90% sure, right half the time: 0.4.

    >>> round(expected_calibration_error([0.9] * 10, [True] * 9 + [False]), 9)
    0.0
    >>> round(expected_calibration_error([0.9] * 10, [True] * 5 + [False] * 5), 3)
    0.4
    """
    n = len(confidences)
    if n == 0:
        return float("nan")
    bins = reliability_bins(confidences, outcomes, n_bins)
    return sum(b.count / n * abs(b.accuracy - b.confidence) for b in bins if b.count)


def elo_ratings(outcomes: Sequence[tuple[Hashable, Hashable, float]], base: float = 1000.0, iterations: int = 500,
                prior_games: float = 1.0) -> dict[Hashable, float]:
    """Elo-scale ratings from pairwise outcomes ``(a, b, score_of_a)`` with score 1 (a won),
    0 (b won) or 0.5 (tie: half a win each).

    Fitted as a Bradley-Terry model (the maximum-likelihood counterpart of Elo: the order of the
    games does not matter, unlike sequential Elo updates), by Hunter's MM iterations, and put on
    Elo's scale: P(a beats b) = 1 / (1 + 10^((R_b - R_a) / 400)), mean rating ``base``. Each
    player also gets ``prior_games`` virtual ties against an average player, so a player who
    won every game gets a finite rating.

    A beats B 3 times in 4 (P = 0.75 -> a gap of 400 log10(3) = 191 without the prior):

    >>> r = elo_ratings([("A", "B", 1), ("A", "B", 1), ("A", "B", 1), ("A", "B", 0)], prior_games=0)
    >>> round(r["A"] - r["B"]), round((r["A"] + r["B"]) / 2)
    (191, 1000)
    >>> r = elo_ratings([("A", "B", 0.5)] * 4)
    >>> round(r["A"] - r["B"])
    0
    """
    players = sorted({p for a, b, _ in outcomes for p in (a, b)}, key=repr)
    if not players:
        return {}
    wins = {p: 0.0 for p in players}
    games: dict[tuple[Hashable, Hashable], float] = {}
    for a, b, s in outcomes:
        if s not in (0, 0.5, 1):
            raise ValueError(f"score of a game must be 0, 0.5 or 1, got {s!r}")
        if a == b:
            continue
        wins[a] += s
        wins[b] += 1 - s
        key = (a, b) if repr(a) <= repr(b) else (b, a)
        games[key] = games.get(key, 0.0) + 1
    strength = {p: 1.0 for p in players}
    for _ in range(iterations):
        new = {}
        for p in players:
            den = prior_games / (strength[p] + 1.0)  # virtual ties with a player of strength 1
            for (x, y), n in games.items():
                if p in (x, y):
                    q = y if p == x else x
                    den += n / (strength[p] + strength[q])
            num = wins[p] + 0.5 * prior_games
            new[p] = max(num / den, 1e-12) if den else 1.0
        if prior_games == 0:  # nothing anchors the scale: keep the geometric mean at 1
            geo = math.exp(sum(math.log(v) for v in new.values()) / len(new))
            new = {p: v / geo for p, v in new.items()}
        strength = new
    raw = {p: 400 * math.log10(strength[p]) for p in players}
    shift = base - sum(raw.values()) / len(raw)
    return {p: v + shift for p, v in raw.items()}


def _ranks(xs: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing their average rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on ranks, ties averaged); nan when either side is constant.

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40]), spearman([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    >>> round(spearman([1, 2, 2, 3], [1, 3, 2, 4]), 3)
    0.949
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("spearman needs two sequences of the same length >= 2")
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = mean(ra), mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va and vb else float("nan")


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative,
    a tie counting half (the Mann-Whitney U statistic over n_pos * n_neg). NaN without both classes.

    >>> auroc([0.9, 0.8, 0.3, 0.1], [True, True, False, False])
    1.0
    >>> auroc([0.9, 0.5, 0.5, 0.1], [True, False, True, False])  # 3 wins + 1 tie of 4 pairs
    0.875
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    pos = sorted(s for s, y in zip(scores, labels) if y)
    neg = sorted(s for s, y in zip(scores, labels) if not y)
    if not pos or not neg:
        return float("nan")
    total = 0.0
    for s in pos:
        below = bisect.bisect_left(neg, s)
        ties = bisect.bisect_right(neg, s) - below
        total += below + 0.5 * ties
    return total / (len(pos) * len(neg))
