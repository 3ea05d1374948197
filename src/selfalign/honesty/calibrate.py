"""Calibrated abstention: the aligned model's decision to decline, moved to a threshold chosen
on held-out in-distribution questions. An extension of ours (issue 24), **not in Yang et al. 2023**
("Alignment for Honesty", arXiv 2312.07000), whose aligned models decide by greedy decoding alone.

Why: on the 135M embedded model, two trainings of the same CONFIDENCE-VERB recipe that differ
only in the LoRA / data-order seed decline on very different shares of questions (docs/RESULTS.md,
issue 24's recipe search). If the seeds differed only in where they put the decision boundary,
that one number could be set on data instead of left to the seed; this module does that. Measured
(docs/RESULTS.md): it does not make the 135M model's OOD numbers robust; the thresholds differ by
seed as expected, but the decline score separates known from unknown questions too weakly.

How, for the methods whose every answer starts with one of a fixed set of prefixes
(CONFIDENCE-VERB: the paper's five verbal bins; CONFIDENCE-NUM: its ten percentages):

* the decline score of a question is ``log P(idk response | prompt) - log sum_b P(prefix_b | prompt)``
  under the aligned model (teacher-forced, through the store: two numbers per question, no
  generation), i.e. the log-odds of declining against answering with any confidence prefix;
* the threshold is chosen on ``calib_n`` training-pool questions that the training never sees
  (held out before balancing), to maximise the paper's honesty score there (the mean of prudence
  over questions the unaligned model got wrong and one minus over-conservativeness over those it
  got right; the unaligned model's greedy labels come from the k(x) step). Ties go to the larger
  threshold (fewer declines);
* at evaluation the model declines (the idk response verbatim) when the score reaches the
  threshold; otherwise it answers greedily, and where its own greedy answer was the idk response,
  the answer is forced to start with its most likely confidence prefix (a prefill) and decoded
  greedily from there.

Deviations and limits: the decision is a threshold on a teacher-forced score, not greedy decoding;
the score compares full prefixes, so it is not the token-level fork greedy decoding sees (the
threshold absorbs the offset); methods without fixed answer prefixes (ABSOLUTE, MULTISAMPLE,
FINE-TUNED) are not calibrated; the calibrated model is reported beside the uncalibrated one
(``<method>-cal``), never instead of it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence, cast

from selfalign.honesty.prompts import VERB_BINS, confidence_num_prefix, honesty_prompt
from selfalign.judges.idk import IDK_RESPONSE, is_idk
from selfalign.models.base import CannotScore, ProgressFn
from selfalign.types import Completion, GenRequest, GenResult, Message, ScoreRequest

ANSWER_PREFIXES: dict[str, tuple[str, ...]] = {
    "confidence-verb": tuple(p for _, p in VERB_BINS),
    "confidence-num": tuple(confidence_num_prefix(k) for k in range(1, 11)),
}
SUFFIX = "-cal"


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def decline_scores(model: Any, prompts: Sequence[Any], method: str) -> tuple[list[float], list[str]]:
    """Per prompt: the decline score (see the module doc) and the most likely answer prefix."""
    prefixes = ANSWER_PREFIXES[method]
    reqs = [ScoreRequest(p, c) for p in prompts for c in (IDK_RESPONSE, *prefixes)]
    res = model.score(reqs)
    k = 1 + len(prefixes)
    scores, best = [], []
    for i in range(len(prompts)):
        idk, *answers = [r.total for r in res[i * k:(i + 1) * k]]
        scores.append(idk - _logsumexp(answers))
        best.append(prefixes[max(range(len(answers)), key=answers.__getitem__)])
    return scores, best


@dataclass(frozen=True)
class Threshold:
    theta: float
    honesty: float  # on the calibration questions, declining when score >= theta
    prudence: float
    over_conservativeness: float
    n_known: int
    n_unknown: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_threshold(scores: Sequence[float], known: Sequence[bool]) -> Threshold:
    """The threshold that maximises honesty (the mean of prudence on unknown questions and
    1 - over-conservativeness on known ones) when questions with ``score >= theta`` are declined.
    Candidates: +inf (never decline) and the midpoints between adjacent distinct scores (and one
    below the lowest); ties go to the larger threshold.

    >>> t = choose_threshold([3.0, 2.0, -1.0, -2.0], [False, False, True, True])
    >>> t.theta, t.honesty
    (0.5, 100.0)
    """
    if len(scores) != len(known):
        raise ValueError(f"{len(scores)} scores for {len(known)} labels")
    n_known = sum(known)
    n_unknown = len(known) - n_known
    if not n_known or not n_unknown:
        raise ValueError(f"calibration needs questions the unaligned model got right and wrong; got {n_known} "
                         f"right and {n_unknown} not (a larger calib_n)")
    s = sorted(set(scores))
    cands = [math.inf] + [(a + b) / 2 for a, b in zip(s, s[1:])] + [s[0] - 1.0]
    best: Threshold | None = None
    for theta in sorted(cands, reverse=True):
        dk = sum(1 for x, k in zip(scores, known) if k and x >= theta)
        du = sum(1 for x, k in zip(scores, known) if not k and x >= theta)
        pru, over = 100 * du / n_unknown, 100 * dk / n_known
        t = Threshold(theta, (pru + 100 - over) / 2, pru, over, n_known, n_unknown)
        if best is None or t.honesty > best.honesty + 1e-9:
            best = t
    assert best is not None
    return best


class CalibratedAbstention:
    """A model for :func:`~selfalign.evals.runner.run_task`: ``model``'s greedy answers to honesty
    prompts, with declining decided by ``decline score >= theta`` (see the module doc). Every call
    goes through ``model`` (a store-backed model), so nothing is computed twice."""

    can_score = False
    can_train = False
    train_path = None

    def __init__(self, model: Any, method: str, theta: float):
        if method not in ANSWER_PREFIXES:
            raise ValueError(f"calibrated abstention needs fixed answer prefixes: one of {', '.join(ANSWER_PREFIXES)}, "
                             f"got {method!r}")
        self.model = model
        self.method = method
        self.theta = theta
        self.model_id = f"{model.model_id}+decline-threshold={theta:.4g}"

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None,
                 description: str | None = None) -> list[GenResult]:
        bad = [r for r in requests if not r.params.greedy or r.n != 1 or isinstance(r.prompt, str)]
        if bad:
            raise ValueError("calibrated abstention answers one greedy chat prompt per request")
        base = self.model.generate(requests, description=description)
        scores, best = decline_scores(self.model, [r.prompt for r in requests], self.method)
        forced = [i for i, (r, s) in enumerate(zip(base, scores)) if s < self.theta and is_idk(r.texts[0])]
        fres = self.model.generate(
            [GenRequest(cast(tuple[Message, ...], requests[i].prompt) + (Message("assistant", best[i]),), requests[i].params,
                        seed=requests[i].seed) for i in forced],
            description=f"{description or 'eval'}: answers after the threshold") if forced else []
        forced_comp = {i: r.completions[0] for i, r in zip(forced, fres)}
        out = []
        for i, (r, s) in enumerate(zip(base, scores)):
            c = r.completions[0]
            if s >= self.theta:
                c = Completion(IDK_RESPONSE, "stop", c.n_tokens, 0)
            elif i in forced_comp:
                f = forced_comp[i]
                c = Completion(best[i] + f.text, f.finish_reason, f.n_tokens, 0)
            out.append(GenResult(r.request, (c,), r.prompt_tokens))
        return out

    def score(self, requests: Sequence[ScoreRequest]) -> list[Any]:
        raise CannotScore(self.model_id, "a calibrated-abstention wrapper does not score")

    def sibling(self, spec: Any, **options: Any) -> Any:
        return self.model.sibling(spec, **options)


def calibrate(model: Any, questions: Sequence[str], known: Sequence[bool], method: str) -> tuple[CalibratedAbstention, Threshold]:
    """Choose the threshold on held-out questions (``known``: the unaligned model's greedy answer
    was correct) and wrap ``model``."""
    scores, _ = decline_scores(model, [honesty_prompt(q) for q in questions], method)
    t = choose_threshold(scores, known)
    return CalibratedAbstention(model, method, t.theta), t
