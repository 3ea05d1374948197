"""How good a preference model is: pairwise accuracy against baselines, calibration, Elo.

Bai et al. 2022 (arXiv 2204.05862), §3: PM accuracy on held-out comparisons, and calibration
(the PM's predicted probability that the chosen response is preferred, P = sigmoid(r_chosen -
r_rejected), against how often it is), which the paper finds good for its large PMs. Here:

* **accuracy**: the share of held-out pairs with r_chosen > r_rejected (a tie counts half), with
  a bootstrap interval (also per ``meta.label`` where pairs carry one, as verifiable pairs do), beside two baselines on the same pairs, with the paired difference:
  *length* (the shorter response wins; on HH red-team data it wins about 55% of pairs) and the
  *untrained head* (the same base model with its freshly initialised score head);
* **calibration**: each pair is shown in a random order (so predictions fall on both sides of
  0.5), P(first is chosen) = sigmoid((r_first - r_second) / T); reliability bins and expected
  calibration error (:mod:`selfalign.evals.stats`) with T = 1 and with T fitted by maximum
  likelihood on a calibration split of the held-out pairs (temperature scaling, Guo et al. 2017),
  reported on the other split;
* **Elo**: a reward gap d means P = 1 / (1 + e^-d), which is an Elo gap of 400 log10(e) d
  (about 174 points per unit of reward), the conversion the paper uses for its PM scores.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict
from typing import Any, Callable, Sequence

from selfalign.evals.stats import expected_calibration_error, mean, mean_ci, paired_bootstrap, reliability_bins

ELO_PER_NAT = 400 / math.log(10)

Rewards = Callable[[Sequence[Any], Sequence[Any]], list[float]]


def _text(resp: Any) -> str:
    return resp if isinstance(resp, str) else str(resp[-1]["content"])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def win(a: float, b: float) -> float:
    return 1.0 if a > b else 0.5 if a == b else 0.0


def fit_temperature(gaps: Sequence[float], outcomes: Sequence[bool]) -> float:
    """The T > 0 that maximises the likelihood of ``outcomes`` under sigmoid(gap / T) (golden
    section on log T in [1e-3, 1e3]).

    >>> T = fit_temperature([4.0, -4.0, 4.0, -4.0, 4.0, -4.0], [True, False, True, False, False, True])
    >>> T > 4  # over-confident gaps (2 of 6 wrong at |gap| = 4): the fit softens them
    True
    """
    if not gaps:
        return 1.0

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        total = 0.0
        for g, y in zip(gaps, outcomes):
            p = min(max(sigmoid(g / t), 1e-12), 1 - 1e-12)
            total -= math.log(p if y else 1 - p)
        return total

    lo, hi = math.log(1e-3), math.log(1e3)
    phi = (math.sqrt(5) - 1) / 2
    a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - phi * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + phi * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


def evaluate_pm(rewards: Rewards, rows: Sequence[dict[str, Any]], untrained: Rewards | None = None,
                calib_fraction: float = 0.5, n_bins: int = 10, resamples: int = 1000, seed: int = 0,
                temperature: float | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score ``rows`` (preference rows) with the PM; returns (rows with rewards, summary).

    Calibration: the temperature is fitted on ``calib_fraction`` of the rows and ECE reported on
    the rest; with ``temperature`` given (one fitted earlier, e.g. by ``selfalign pm calibrate``),
    nothing is fitted and every row is a test row."""
    if not rows:
        raise ValueError("no pairs to evaluate")
    prompts = [r["prompt"] for r in rows]
    rc = rewards(prompts, [r["chosen"] for r in rows])
    rr = rewards(prompts, [r["rejected"] for r in rows])
    pm_wins = [win(c, j) for c, j in zip(rc, rr)]
    lengths = [(len(_text(r["chosen"])), len(_text(r["rejected"]))) for r in rows]
    len_wins = [win(-a, -b) for a, b in lengths]  # the shorter response wins
    summary: dict[str, Any] = {"pairs": len(rows), "accuracy": mean_ci(pm_wins, resamples, seed),
                               "length_baseline": mean_ci(len_wins, resamples, seed)}
    labels = [str((r.get("meta") or {}).get("label", "")) for r in rows]
    if any(labels):  # e.g. verifiable pairs: correct>wrong and idk>wrong are different tasks
        summary["by_label"] = {lab: mean_ci([w for w, x in zip(pm_wins, labels) if x == lab], resamples, seed)
                               for lab in sorted(set(labels))}
    d = paired_bootstrap(len_wins, pm_wins, resamples=resamples, seed=seed)
    summary["vs_length"] = {"value": d.diff, "lo": d.lo, "hi": d.hi}
    un_wins: list[float] = []
    if untrained is not None:
        uc = untrained(prompts, [r["chosen"] for r in rows])
        ur = untrained(prompts, [r["rejected"] for r in rows])
        un_wins = [win(c, j) for c, j in zip(uc, ur)]
        summary["untrained_head"] = mean_ci(un_wins, resamples, seed)
        d = paired_bootstrap(un_wins, pm_wins, resamples=resamples, seed=seed)
        summary["vs_untrained"] = {"value": d.diff, "lo": d.lo, "hi": d.hi}

    # calibration: random order per pair; fit T on one part, report on the other
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    n_cal = 0 if temperature is not None else int(len(rows) * calib_fraction)
    cal, test = order[:n_cal], order[n_cal:] or order
    flip = [rng.random() < 0.5 for _ in rows]
    gaps = [(rr[i] - rc[i]) if flip[i] else (rc[i] - rr[i]) for i in range(len(rows))]
    first_chosen = [not f for f in flip]
    if temperature is not None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        T = temperature
    else:
        T = fit_temperature([gaps[i] for i in cal], [first_chosen[i] for i in cal]) if cal else 1.0

    def calib(t: float) -> dict[str, Any]:
        conf = [sigmoid(gaps[i] / t) for i in test]
        outc = [first_chosen[i] for i in test]
        return {"temperature": t, "ece": expected_calibration_error(conf, outc, n_bins),
                "bins": [asdict(b) for b in reliability_bins(conf, outc, n_bins)]}

    summary["calibration"] = {"raw": calib(1.0), "scaled": calib(T), "calibration_pairs": len(cal),
                              "test_pairs": len(test), "temperature_given": temperature is not None}
    gap_all = [c - j for c, j in zip(rc, rr)]
    summary["mean_gap"] = mean(gap_all)
    summary["mean_gap_elo"] = ELO_PER_NAT * mean(gap_all)
    summary["elo_per_reward_unit"] = ELO_PER_NAT
    out = []
    for i, r in enumerate(rows):
        out.append({**r, "reward_chosen": rc[i], "reward_rejected": rr[i], "pm_correct": pm_wins[i],
                    "shorter_chosen": len_wins[i], **({"untrained_correct": un_wins[i]} if un_wins else {})})
    return out, summary
