"""Best-of-N: sample N answers, keep the one a scorer likes best.

The baseline that RLHF is measured against (Stiennon et al. 2020; Bai et al. 2022, §4.3 of
arXiv 2204.05862 compares it with RL at equal KL) and the way Saunders et al. 2022 turn a critic
or a helpfulness model into better answers. For each N the report shows quality beside the
analytic KL of the best-of-N distribution from the base policy, KL = log N - (N-1)/N (nats),
so RL can be compared at equal KL.

Scorers (:data:`SCORERS`): ``gold`` (1 if the answer contains a gold answer, else 0; a verifier),
``logprob`` (the policy's own mean token log-probability), ``judge`` (a rubric judge's 1-5 score
from a separate ``--judge`` model; an unparsed score is *unscored*). The RLHF issue adds a
reward-model scorer with the same signature. Unscored candidates rank last and are counted.

For N in the list, the candidates of question q are its samples 0..N-1 (nested: the N=8 pool
contains the N=4 pool), the chosen one is the first with the highest score. Outputs for the
largest N: SFT rows (prompt, best completion) and preference pairs (best vs worst, ``margin`` =
score gap; only where the gap is > 0).

Deviations: nested pools give one sample path per question rather than the unbiased BoN
estimator over all subsets (Nakano et al. 2021); accuracy here is the gold match of the chosen
answer, which the ``gold`` scorer also optimises, so with it quality can only rise with N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from selfalign.data.formats import QAItem
from selfalign.evals.stats import mean, mean_ci
from selfalign.judges.correctness import contains_answer
from selfalign.judges.verdict import parse_score
from selfalign.models.base import StageModel
from selfalign.types import GenParams, GenRequest, ScoreRequest, user

SCORERS = ("gold", "logprob", "judge")

#: one call scores many questions: [(prompt, item, candidates)] -> a score per candidate (None = unscored)
Job = tuple[Any, QAItem, Sequence[str]]
Scorer = Callable[[Sequence[Job]], list[list[float | None]]]


def best_and_worst(rank: Sequence[float], n: int | None = None) -> tuple[int, int]:
    """The indices of the best and the worst of the first ``n`` scores (all by default); a tie
    goes to the earlier sample, for both.

    >>> best_and_worst([0.2, 0.9, 0.9, 0.1, 0.1])
    (1, 3)
    >>> best_and_worst([0.2, 0.9, 0.9, 0.1], n=1)
    (0, 0)
    """
    n = len(rank) if n is None else n
    return max(range(n), key=lambda i: (rank[i], -i)), min(range(n), key=lambda i: (rank[i], i))


def bon_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n-1)/n, in nats.

    >>> bon_kl(1), round(bon_kl(4), 4), round(bon_kl(16), 4)
    (0.0, 0.6363, 1.8351)
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def qa_prompt(question: str) -> Any:
    return user(f"Answer the question briefly.\nQ: {question}\nA:")


def gold_scorer(jobs: Sequence[Job]) -> list[list[float | None]]:
    return [[1.0 if contains_answer(c, item.answers) else 0.0 for c in cands] for _, item, cands in jobs]


def _split(flat: Sequence[float | None], jobs: Sequence[Job]) -> list[list[float | None]]:
    out, k = [], 0
    for _, _, cands in jobs:
        out.append(list(flat[k:k + len(cands)]))
        k += len(cands)
    return out


def logprob_scorer(model: StageModel) -> Scorer:
    """The policy's mean token log-probability of each candidate (an empty one is unscored)."""
    def score(jobs: Sequence[Job]) -> list[list[float | None]]:
        flat = [(p, c) for p, _, cands in jobs for c in cands]
        todo = [(i, p, c) for i, (p, c) in enumerate(flat) if c.strip()]
        res = model.score([ScoreRequest(p, c) for _, p, c in todo]) if todo else []
        by = {i: r.mean for (i, _, _), r in zip(todo, res)}
        return _split([by.get(i) for i in range(len(flat))], jobs)
    return score


JUDGE_TEMPLATE = ("Question: {q}\nAnswer: {a}\n\nRate how correct and helpful the answer is, from 1 (wrong or "
                  "useless) to 5 (correct and helpful). If the answer honestly says it does not know, rate 3. "
                  "Reply with \"Score: n\".")


def judge_scorer(judge: StageModel, max_tokens: int = 16) -> Scorer:
    """A rubric judge's 1-5 score (greedy, one batched call); an unparsed reply is unscored."""
    def score(jobs: Sequence[Job]) -> list[list[float | None]]:
        reqs = [GenRequest(user(JUDGE_TEMPLATE.format(q=item.question, a=c)), GenParams(max_tokens=max_tokens))
                for _, item, cands in jobs for c in cands]
        flat: list[float | None] = []
        for r in judge.generate(reqs, description="judge scores") if reqs else []:
            s = parse_score(r.texts[0])
            flat.append(float(s) if s is not None else None)
        return _split(flat, jobs)
    return score


@dataclass
class BonConfig:
    model: str = "smollm2-135m"  # the policy that samples
    judge: str = ""  # scorer=judge: the judging model (default: the policy)
    data: str = "bundled"  # QA items: bundled (its test split) | a QA file load_qa reads
    n_questions: int = 200
    store: str = ""
    out: str = "runs/critique-bon"
    ns: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    scorer: str = "gold"
    temperature: float = 1.0
    max_tokens: int = 32
    seed: int = 0
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        if not self.ns or any(n < 1 for n in self.ns):
            raise ValueError(f"ns must be a non-empty list of integers >= 1, got {self.ns}")
        self.ns = sorted(set(self.ns))
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (best of N identical greedy answers is one answer)")
        if self.n_questions < 0:
            raise ValueError(f"n_questions must be >= 0, got {self.n_questions}")


def load_items(cfg: BonConfig) -> list[QAItem]:
    from selfalign.data.formats import load_qa

    items = load_qa(cfg.data, split="test") if cfg.data == "bundled" else load_qa(cfg.data)
    items = [it for it in items if it.answerable]
    return items[:cfg.n_questions or None]


@dataclass
class BonResult:
    """The best-of-N SFT rows, the preference pairs and the summary (a row per N, the policy)."""
    rows: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    summary: dict[str, Any]


def run(cfg: BonConfig, policy: StageModel, judge: StageModel | None = None,
        items: Sequence[QAItem] | None = None) -> BonResult:
    items = list(items) if items is not None else load_items(cfg)
    scorer: Scorer
    if cfg.scorer == "gold":
        scorer = gold_scorer
    elif cfg.scorer == "logprob":
        scorer = logprob_scorer(policy)
    else:
        scorer = judge_scorer(judge or policy)
    sft, pairs, summary = best_of_n(policy, items, scorer, cfg)
    return BonResult(rows=sft, pairs=pairs, summary={**summary, "policy": policy.model_id})


def best_of_n(policy: StageModel, items: Sequence[QAItem], scorer: Scorer, cfg: BonConfig | None = None
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Returns (SFT rows, preference pairs, summary) for the largest N; the summary has the
    gold accuracy, mean chosen score and KL for every N."""
    cfg = cfg or BonConfig()
    n_max = cfg.ns[-1]
    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    prompts = [qa_prompt(it.question) for it in items]
    results = policy.generate([GenRequest(p, params, n=n_max, seed=cfg.seed) for p in prompts],
                              description=f"best-of-{n_max} samples")
    per_n: dict[int, dict[str, list[float]]] = {n: {"correct": [], "score": []} for n in cfg.ns}
    sft, pairs = [], []
    unscored = 0
    all_scores = scorer([(p, it, list(r.texts)) for it, p, r in zip(items, prompts, results)])
    for item, prompt, res, scores in zip(items, prompts, results, all_scores):
        texts = list(res.texts)
        unscored += sum(s is None for s in scores)
        rank = [s if s is not None else -math.inf for s in scores]
        for n in cfg.ns:
            best = best_and_worst(rank, n)[0]
            per_n[n]["correct"].append(float(contains_answer(texts[best], item.answers)))
            per_n[n]["score"].append(rank[best] if rank[best] != -math.inf else float("nan"))
        best, worst = best_and_worst(rank, n_max)
        pmsgs = [m.to_dict() for m in prompt]
        meta = {"id": item.id, "score": scores[best], "n": n_max, "scorer": cfg.scorer}
        sft.append({"prompt": pmsgs, "completion": [{"role": "assistant", "content": texts[best]}], "meta": meta})
        if rank[best] > rank[worst]:
            gap = rank[best] - rank[worst]
            pairs.append({"prompt": pmsgs, "chosen": [{"role": "assistant", "content": texts[best]}],
                          "rejected": [{"role": "assistant", "content": texts[worst]}],
                          "margin": gap if math.isfinite(gap) else None, "meta": meta})
    table = []
    for n in cfg.ns:
        acc = mean_ci(per_n[n]["correct"], cfg.bootstrap, cfg.seed)
        finite = [s for s in per_n[n]["score"] if not math.isnan(s)]
        table.append({"n": n, "kl": bon_kl(n), "accuracy": acc["value"], "lo": acc["lo"], "hi": acc["hi"],
                      "mean_score": mean(finite) if finite else None})
    summary = {"scorer": cfg.scorer, "questions": len(items), "table": table, "unscored": unscored,
               "candidates": len(items) * n_max, "pairs": len(pairs)}
    return sft, pairs, summary
