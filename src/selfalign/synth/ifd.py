"""IFD selection (Li et al. 2023, "From Quantity to Quality: Boosting LLM Performance with
Self-Guided Data Selection for Instruction Tuning", arXiv 2308.12032).

Instruction-Following Difficulty of a pair (Q, A):

    IFD(Q, A) = s(A | Q) / s(A),   s = mean cross-entropy over the tokens of A

computed with the model layer's scorer (``s(A | Q)``: A after the chat-formatted instruction;
``s(A)``: A as raw text after a start token). This is the paper's definition: the ratio of
**mean-token losses** (not of summed log-probabilities). IFD > 1 means the instruction does not
help predict the answer at all; such pairs are dropped, as in the paper. Selection keeps either
the pairs with IFD above a threshold or the top fraction by IFD.

**r-IFD** (Li et al. 2024, "Selective Reflection-Tuning: Student-Selected Data Recycling for LLM
Instruction-Tuning", arXiv 2402.10110), for teacher-refined pairs:

    r-IFD(Q, A) = s(Q | A) / s(Q)

how hard the instruction is to infer from the response, for the student model: a low r-IFD
means the response is "feasible" for the student. ``reverse: true`` scores it (``meta.r_ifd``)
and ``max_r_ifd`` drops pairs above it before the IFD selection. Deviation: ``s(Q | A)`` puts
the response in a user turn asking for the instruction (our wording), since a chat model has
no raw "response then instruction" format.

**Pre-experienced model** (the paper's "learning from brief experience"): with
``pre_experience: N`` the instructions are clustered (k-means, k = N / ``per_cluster``), up to
``per_cluster`` rows are drawn from each cluster, the base model is fine-tuned on them for
one epoch, and that model, not the base, scores IFD. Deviation: the paper clusters the model's
own instruction embeddings; we cluster TF-IDF vectors of the instructions (deterministic, no
extra model pass), with k-means++ seeding.

>>> ifd_score((-1.0, -1.0), (-2.0, -2.0))
0.5
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from selfalign.train.base import TrainConfig

from selfalign.types import ScoreRequest, as_prompt, user


@dataclass
class IFDConfig:
    model: str = "smollm2-135m"
    input: str = ""
    threshold: float = 0.0  # keep IFD >= threshold (used when top_fraction is 0)
    top_fraction: float = 0.1  # keep this share with the highest IFD (the paper's 5-10%)
    pre_experience: int = 0  # rows for the brief "pre-experience" fine-tuning (0 = score with the model as is)
    per_cluster: int = 10
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1))
    seed: int = 0
    reverse: bool = False  # also score r-IFD (Selective Reflection-Tuning)
    max_r_ifd: float = 0.0  # with reverse: drop pairs whose r-IFD is above this (0 = keep all)
    out: str = "runs/ifd/selected.jsonl"
    store: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be in [0, 1], got {self.top_fraction}")
        if self.max_r_ifd and not self.reverse:
            raise ValueError("max_r_ifd needs reverse: true")


REVERSE_TEMPLATE = "Here is a response. Write the instruction it answers.\n\nResponse:\n{answer}"


def mean_loss(token_logprobs: Sequence[float]) -> float:
    return -sum(token_logprobs) / max(1, len(token_logprobs))


def ifd_score(conditioned: Sequence[float], alone: Sequence[float]) -> float:
    """IFD from per-token log-probabilities of A given Q and of A alone."""
    denom = mean_loss(alone)
    return mean_loss(conditioned) / denom if denom > 0 else float("inf")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    raise ValueError(f"expected a string or a list of messages, got {value!r}")


def score_rows(rows: Sequence[dict[str, Any]], scorer: Any) -> list[float]:
    """IFD of each TRL prompt-completion row (conversational or plain)."""
    reqs = []
    for r in rows:
        prompt = r["prompt"]
        prompt = user(prompt) if isinstance(prompt, str) else as_prompt(prompt)
        answer = _text(r["completion"])
        reqs += [ScoreRequest(prompt, answer), ScoreRequest("", answer)]
    res = scorer.score(reqs)
    return [ifd_score(res[i].token_logprobs, res[i + 1].token_logprobs) for i in range(0, len(res), 2)]


def score_rows_reverse(rows: Sequence[dict[str, Any]], scorer: Any) -> list[float]:
    """r-IFD of each row: the instruction's mean token loss after the response over its loss alone."""
    reqs = []
    for r in rows:
        question, answer = _text(r["prompt"]), _text(r["completion"])
        reqs += [ScoreRequest(user(REVERSE_TEMPLATE.format(answer=answer)), question), ScoreRequest("", question)]
    res = scorer.score(reqs)
    return [ifd_score(res[i].token_logprobs, res[i + 1].token_logprobs) for i in range(0, len(res), 2)]


def tfidf_vectors(texts: Sequence[str]) -> list[dict[str, float]]:
    """Unit-length TF-IDF vectors (sparse dicts) of lower-cased word tokens."""
    docs = [Counter(re.findall(r"[a-z0-9']+", t.lower())) for t in texts]
    df = Counter(w for d in docs for w in d)
    n = len(docs)
    out = []
    for d in docs:
        v = {w: c * math.log((1 + n) / (1 + df[w])) + 1e-9 for w, c in d.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        out.append({w: x / norm for w, x in v.items()})
    return out


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(x * b.get(w, 0.0) for w, x in a.items())


def kmeans(vectors: Sequence[dict[str, float]], k: int, seed: int = 0, iterations: int = 20) -> list[int]:
    """Spherical k-means (cosine) with k-means++ seeding; the cluster of each vector.

    >>> kmeans(tfidf_vectors(["red apple", "green apple", "fast car", "red car fast"]), 2, seed=1)
    [0, 0, 1, 1]
    """
    rng = random.Random(seed)
    k = max(1, min(k, len(vectors)))
    centres = [dict(vectors[rng.randrange(len(vectors))])]
    while len(centres) < k:
        dist = [1 - max(_dot(v, c) for c in centres) for v in vectors]
        total = sum(dist)
        pick = rng.random() * total if total > 0 else 0.0
        acc, idx = 0.0, 0
        for idx, d in enumerate(dist):
            acc += d
            if acc >= pick and d > 0:
                break
        centres.append(dict(vectors[idx]))
    assign = [0] * len(vectors)
    for it in range(iterations):
        new = [max(range(k), key=lambda j: _dot(v, centres[j])) for v in vectors]
        if new == assign and it > 0:
            break
        assign = new
        for j in range(k):
            members = [vectors[i] for i, a in enumerate(assign) if a == j]
            if members:
                c: Counter = Counter()
                for m in members:
                    c.update(m)
                norm = math.sqrt(sum(x * x for x in c.values())) or 1.0
                centres[j] = {w: x / norm for w, x in c.items()}
    first: dict[int, int] = {}  # renumber clusters in order of first appearance (stable output)
    return [first.setdefault(a, len(first)) for a in assign]


def pre_experience_rows(rows: Sequence[dict[str, Any]], n: int, per_cluster: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``per_cluster`` rows from each of n / per_cluster clusters of the instructions."""
    clusters = kmeans(tfidf_vectors([_text(r["prompt"]) for r in rows]), max(1, n // per_cluster), seed)
    rng = random.Random(seed)
    picked: list[int] = []
    for j in sorted(set(clusters)):
        members = [i for i, c in enumerate(clusters) if c == j]
        picked += rng.sample(members, min(per_cluster, len(members)))
    return [rows[i] for i in sorted(picked)[:n]]


def selected(scores: Sequence[float], threshold: float = 0.0, top_fraction: float = 0.0) -> tuple[list[int], list[int]]:
    """(the indices with IFD <= 1, those of them kept: IFD >= threshold, or the top fraction by
    IFD), both in input order.

    >>> selected([0.9, 1.2, 0.5, 0.7], top_fraction=0.5)
    ([0, 2, 3], [0, 3])
    """
    valid = [i for i, s in enumerate(scores) if s <= 1.0]
    if top_fraction > 0:
        k = max(1, round(top_fraction * len(valid))) if valid else 0
        kept = sorted(sorted(valid, key=lambda i: -scores[i])[:k])
    else:
        kept = [i for i in valid if scores[i] >= threshold]
    return valid, kept


def with_ifd(row: dict[str, Any], score: float) -> dict[str, Any]:
    return {**row, "meta": {**row.get("meta", {}), "ifd": score}}


def select(rows: Sequence[dict[str, Any]], scores: Sequence[float], threshold: float = 0.0,
           top_fraction: float = 0.0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Drop IFD > 1, then keep IFD >= threshold, or the top fraction by IFD (:func:`selected`).
    Rows get meta.ifd."""
    valid, kept = selected(scores, threshold, top_fraction)
    counts = {"input": len(rows), "ifd_above_1": len(rows) - len(valid), "below_selection": len(valid) - len(kept),
              "kept": len(kept)}
    return [with_ifd(rows[i], scores[i]) for i in kept], counts


@dataclass
class IFDResult:
    """The kept rows, every row's IFD, the counts, and the pre-experienced scorer / R-IFD when used."""
    rows: list[dict[str, Any]]
    scores: list[float]
    counts: dict[str, int]
    scorer: str | None = None
    r_ifd: list[float] | None = None


def run(cfg: IFDConfig, scorer: Any) -> IFDResult:
    from selfalign.data.io import read_jsonl, write_jsonl

    rows = read_jsonl(cfg.input, required=("prompt", "completion"))
    scorer_id: str | None = None
    r_ifd: list[float] | None = None
    if cfg.pre_experience:
        scorer = _pre_experienced(cfg, rows, scorer)
        scorer_id = scorer.model_id
    scores = score_rows(rows, scorer)
    counts_extra: dict[str, int] = {}
    if cfg.reverse:
        r_scores = score_rows_reverse(rows, scorer)
        rows = [{**r, "meta": {**r.get("meta", {}), "r_ifd": x}} for r, x in zip(rows, r_scores)]
        r_ifd = r_scores
        if cfg.max_r_ifd:
            keep = [i for i, x in enumerate(r_scores) if x <= cfg.max_r_ifd]
            counts_extra["r_ifd_above_max"] = len(rows) - len(keep)
            rows, scores = [rows[i] for i in keep], [scores[i] for i in keep]
    kept, counts = select(rows, scores, cfg.threshold, cfg.top_fraction)
    if counts_extra:
        counts = {"input": counts["input"] + counts_extra["r_ifd_above_max"], **counts_extra,
                  **{k: v for k, v in counts.items() if k != "input"}}
    write_jsonl(cfg.out, kept)
    return IFDResult(rows=kept, scores=scores, counts=counts, scorer=scorer_id, r_ifd=r_ifd)


def _pre_experienced(cfg: IFDConfig, rows: Sequence[dict[str, Any]], base: Any) -> Any:
    """The base fine-tuned briefly on a cluster-sampled slice, through the same store."""
    from selfalign.train.sft import train_sft

    if not getattr(base, "can_train", False):
        raise ValueError(f"pre_experience fine-tunes the scorer, and '{base.model_id}' cannot be fine-tuned here")
    slice_ = pre_experience_rows(rows, cfg.pre_experience, cfg.per_cluster, cfg.seed)
    res = train_sft([{"prompt": r["prompt"], "completion": r["completion"]} for r in slice_], base.train_path,
                    Path(cfg.out).parent / "pre-experienced", cfg.train, base_id=base.model_id)
    return base.sibling(res.model_dir)
