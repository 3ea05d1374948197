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

Not implemented (documented here so nobody assumes it): the paper's "pre-experienced" model
(the base briefly fine-tuned on a cluster-sampled slice before scoring); score with a model
trained that way by passing its directory as ``model``.

>>> ifd_score((-1.0, -1.0), (-2.0, -2.0))
0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from selfalign.types import ScoreRequest, as_prompt, user


@dataclass
class IFDConfig:
    model: str = "smollm2-135m"
    input: str = ""
    threshold: float = 0.0  # keep IFD >= threshold (used when top_fraction is 0)
    top_fraction: float = 0.1  # keep this share with the highest IFD (the paper's 5-10%)
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


def select(rows: Sequence[dict[str, Any]], scores: Sequence[float], threshold: float = 0.0,
           top_fraction: float = 0.0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Drop IFD > 1, then keep IFD >= threshold, or the top fraction by IFD. Rows get meta.ifd."""
    scored = [({**r, "meta": {**r.get("meta", {}), "ifd": s}}, s) for r, s in zip(rows, scores)]
    valid = [(r, s) for r, s in scored if s <= 1.0]
    counts = {"input": len(rows), "ifd_above_1": len(rows) - len(valid)}
    if top_fraction > 0:
        k = max(1, round(top_fraction * len(valid))) if valid else 0
        kept = sorted(valid, key=lambda rs: -rs[1])[:k]
    else:
        kept = [(r, s) for r, s in valid if s >= threshold]
    counts["below_selection"] = len(valid) - len(kept)
    counts["kept"] = len(kept)
    keep_ids = {id(r) for r, _ in kept}
    return [r for r, _ in scored if id(r) in keep_ids], counts


def run(cfg: IFDConfig, scorer: Any) -> dict[str, Any]:
    from selfalign.data.io import read_jsonl, write_jsonl

    rows = read_jsonl(cfg.input, required=("prompt", "completion"))
    scores = score_rows(rows, scorer)
    counts_extra: dict[str, int] = {}
    out: dict[str, Any] = {}
    if cfg.reverse:
        r_scores = score_rows_reverse(rows, scorer)
        rows = [{**r, "meta": {**r.get("meta", {}), "r_ifd": x}} for r, x in zip(rows, r_scores)]
        out["r_ifd"] = r_scores
        if cfg.max_r_ifd:
            keep = [i for i, x in enumerate(r_scores) if x <= cfg.max_r_ifd]
            counts_extra["r_ifd_above_max"] = len(rows) - len(keep)
            rows, scores = [rows[i] for i in keep], [scores[i] for i in keep]
    kept, counts = select(rows, scores, cfg.threshold, cfg.top_fraction)
    if counts_extra:
        counts = {"input": counts["input"] + counts_extra["r_ifd_above_max"], **counts_extra,
                  **{k: v for k, v in counts.items() if k != "input"}}
    write_jsonl(cfg.out, kept)
    return {"rows": kept, "scores": scores, "counts": counts, **out}
