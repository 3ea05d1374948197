"""Critique -> refine, gated and ungated, with direct refinement as the control.

Saunders et al. 2022, "Self-critiquing models for assisting human evaluators" (arXiv 2206.05802),
§4: a model answers, writes a critique of its answer, then writes a refinement conditioned on the
question, the answer and the critique; the paper's control is *direct refinement*, a refinement
asked for without a critique. Its other tasks, as options here:

* **critiqueability**: P("Yes") to "Is there a mistake in the proposed answer?", taken from the
  critic's log-probabilities of "Yes" and "No" (normalised over the two); reported as AUROC
  against the initial answer being wrong (a backend that cannot score answers greedily and the
  parsed yes/no counts as 1/0; an unparsed answer is unscored and counted);
* **helpfulness**: with ``critiques: N > 1`` the critic samples N critiques and the refinement
  uses the one with the highest P("Yes") to "Does the critique point out a real problem?"
  (Saunders' best-of-N critiques by helpfulness score).

Each round refines the current answer of every question; ``rounds: R`` rounds. Two loops run
side by side for each mode (``critique``, ``direct``):

* **gated**: the refinement replaces the current answer only if the scorer gives it a strictly
  higher score (an unscored pair keeps the current answer and is counted);
* **ungated**: the refinement always replaces it.

Scorers are Best-of-N's (:mod:`selfalign.critique.bon`): ``gold`` (a verifier: 1 when the answer
contains a gold answer; an *oracle* on test questions, so gated-by-gold accuracy cannot fall and
measures only how often refinement fixes an answer), ``judge`` (a separate ``--judge`` model's
1-5 score) and ``logprob`` (the policy's mean token log-probability). Accuracy is always the gold
match. Reported for each loop: accuracy after each round, fixes (wrong -> right) and regressions
(right -> wrong) against the unrefined answer, the paired difference with its interval and
McNemar's test, "I don't know" rate, accepted refinements. Accepted gated refinements also become
preference pairs (``pairs.jsonl``: prompt, chosen = refinement, rejected = the answer it replaced,
``margin`` = score gap) for DPO or a preference model.

The prompts are ours. They never push the model to answer: the critique prompt asks what is
wrong, not for a new answer, and both refinement prompts say to answer "I don't know" rather than
guess, so refinement does not undo the honesty training.

Deviations: the paper's models are fine-tuned on human-written critiques and refinements and its
quality is judged by people; here any model is prompted and the gate is an automatic scorer. A
critique that says the answer has no problems (``stop_on_no_problems``, Self-Refine's stopping
rule, Madaan et al. 2023) ends that question's loop instead of asking for a refinement.
Critiques and refinements are greedy by default (the paper samples); ``temperature`` changes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from selfalign.critique.bon import SCORERS, Scorer, gold_scorer, judge_scorer, logprob_scorer, qa_prompt
from selfalign.data.formats import QAItem
from selfalign.evals.stats import auroc, mcnemar, mean, mean_ci, paired_bootstrap
from selfalign.judges.correctness import contains_answer
from selfalign.judges.idk import is_idk
from selfalign.judges.verdict import parse_yes_no
from selfalign.models.base import StageModel
from selfalign.types import GenParams, GenRequest, ScoreRequest, user

MODES = ("critique", "direct")
GATINGS = ("gated", "ungated")

CRITIQUE_TEMPLATE = ("Question: {q}\nProposed answer: {a}\n\nPoint out what is wrong or missing in the proposed "
                     "answer, in one or two sentences. If it is correct, say \"No problems.\" Do not write a new answer.")
REFINE_TEMPLATE = ("Question: {q}\nProposed answer: {a}\nCritique: {c}\n\nWrite an improved answer that takes the "
                   "critique into account. If you are not sure of the answer, say \"I don't know\" instead of "
                   "guessing. Reply with the answer only.")
DIRECT_TEMPLATE = ("Question: {q}\nProposed answer: {a}\n\nWrite an improved answer. If you are not sure of the "
                   "answer, say \"I don't know\" instead of guessing. Reply with the answer only.")
CRITIQUEABLE_TEMPLATE = "Question: {q}\nProposed answer: {a}\n\nIs there a mistake in the proposed answer? Answer Yes or No."
HELPFUL_TEMPLATE = ("Question: {q}\nProposed answer: {a}\nCritique: {c}\n\nDoes the critique point out a real problem "
                    "with the proposed answer? Answer Yes or No.")

_NO_PROBLEMS = re.compile(r"^\W*(no problems?|no (?:mistakes?|errors?|issues?)|the (?:proposed )?answer is correct)\b",
                          re.IGNORECASE)


def says_no_problems(critique: str) -> bool:
    """The critique's first sentence says the answer is fine.

    >>> says_no_problems("No problems."), says_no_problems("The answer is correct."), says_no_problems("Wrong year.")
    (True, True, False)
    """
    return bool(_NO_PROBLEMS.match(critique.strip()))


@dataclass
class RefineConfig:
    model: str = "smollm2-135m"  # the policy: answers and refines
    critic: str = ""  # writes critiques (default: the policy, i.e. self-critique)
    judge: str = ""  # scorer=judge: the judging model (default: the policy)
    data: str = "bundled"  # QA items: bundled (its test split) | a QA file load_qa reads
    n_questions: int = 200
    store: str = ""
    out: str = "runs/critique-refine"
    rounds: int = 1
    modes: list[str] = field(default_factory=lambda: list(MODES))
    scorer: str = "gold"  # the gate: gold | judge | logprob
    critiques: int = 1  # > 1: sample this many and refine with the most helpful one
    critiqueability: bool = True
    stop_on_no_problems: bool = True
    temperature: float = 0.0  # critiques and refinements (the first answer is greedy)
    max_tokens: int = 32  # answers and refinements
    critique_tokens: int = 64
    seed: int = 0
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        self.modes = list(self.modes)
        bad = [m for m in self.modes if m not in MODES]
        if not self.modes or bad:
            raise ValueError(f"modes must be a non-empty list of {', '.join(MODES)}, got {list(self.modes)}")
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.critiques < 1:
            raise ValueError(f"critiques must be >= 1, got {self.critiques}")
        if self.critiques > 1 and self.temperature == 0:
            raise ValueError("critiques > 1 needs temperature > 0 (greedy critiques are all the same)")
        if self.max_tokens < 1 or self.critique_tokens < 1:
            raise ValueError("max_tokens and critique_tokens must be >= 1")
        if self.n_questions < 0:
            raise ValueError(f"n_questions must be >= 0, got {self.n_questions}")


def load_items(cfg: RefineConfig) -> list[QAItem]:
    from selfalign.data.formats import load_qa

    items = load_qa(cfg.data, split="test") if cfg.data == "bundled" else load_qa(cfg.data)
    return items[:cfg.n_questions or None]


def p_yes(model: StageModel, prompts: Sequence[Any], description: str) -> list[float | None]:
    """P("Yes") over {"Yes", "No"} from log-probabilities; by a parsed greedy answer (1/0/None)
    when the model cannot score."""
    if not prompts:
        return []
    if model.can_score:
        reqs = [ScoreRequest(p, c) for p in prompts for c in ("Yes", "No")]
        res = model.score(reqs)
        out: list[float | None] = []
        for i in range(len(prompts)):
            a, b = res[2 * i].total, res[2 * i + 1].total
            m = max(a, b)
            out.append(math.exp(a - m) / (math.exp(a - m) + math.exp(b - m)))
        return out
    ans = model.generate([GenRequest(p, GenParams(max_tokens=4)) for p in prompts], description=description)
    return [{"yes": 1.0, "no": 0.0}.get(parse_yes_no(r.texts[0]) or "") for r in ans]


def _scorer(cfg: RefineConfig, policy: StageModel, judge: StageModel | None) -> Scorer:
    if cfg.scorer == "gold":
        return gold_scorer
    if cfg.scorer == "logprob":
        return logprob_scorer(policy)
    return judge_scorer(judge or policy)


def refine(policy: StageModel, items: Sequence[QAItem], cfg: RefineConfig | None = None,
           critic: StageModel | None = None, judge: StageModel | None = None
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Run every (mode, gating) loop. Returns (rows: one per question and loop, pairs, summary)."""
    cfg = cfg or RefineConfig()
    critic = critic or policy
    scorer = _scorer(cfg, policy, judge)
    n = len(items)
    first = policy.generate([GenRequest(qa_prompt(it.question), GenParams(max_tokens=cfg.max_tokens)) for it in items],
                            description="answers")
    initial = [r.texts[0].strip() for r in first]
    init_ok = [contains_answer(a, it.answers) for a, it in zip(initial, items)]

    crit_p: list[float | None] = [None] * n
    if cfg.critiqueability:
        crit_p = p_yes(critic, [user(CRITIQUEABLE_TEMPLATE.format(q=it.question, a=a)) for it, a in zip(items, initial)],
                       "critiqueability")

    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    cparams = GenParams(temperature=cfg.temperature, max_tokens=cfg.critique_tokens)
    loops = [(m, g) for m in cfg.modes for g in GATINGS]
    current = {lp: list(initial) for lp in loops}
    base_scores = [s[0] for s in scorer([(qa_prompt(it.question), it, [a]) for it, a in zip(items, initial)])]
    current_score = {lp: list(base_scores) for lp in loops}
    stopped = {lp: [False] * n for lp in loops}
    history: dict[tuple[str, str], list[list[dict[str, Any]]]] = {lp: [[] for _ in range(n)] for lp in loops}
    per_round: dict[tuple[str, str], list[float]] = {lp: [mean([float(x) for x in init_ok])] for lp in loops}
    unscored = {lp: 0 for lp in loops}
    pairs: list[dict[str, Any]] = []

    for rnd in range(1, cfg.rounds + 1):
        for lp in loops:
            mode, gating = lp
            active = [i for i in range(n) if not stopped[lp][i]]
            cur = current[lp]
            crit_text: dict[int, str] = {}
            if mode == "critique" and active:
                cres = critic.generate([GenRequest(user(CRITIQUE_TEMPLATE.format(q=items[i].question, a=cur[i])), cparams,
                                                   n=cfg.critiques, seed=cfg.seed + rnd) for i in active],
                                       description=f"critiques, round {rnd}")
                helpful: dict[int, list[float | None]] = {}
                if cfg.critiques > 1:
                    flat = [(i, t) for i, r in zip(active, cres) for t in r.texts]
                    ps = p_yes(critic, [user(HELPFUL_TEMPLATE.format(q=items[i].question, a=cur[i], c=t.strip()))
                                        for i, t in flat], "critique helpfulness")
                    for (i, _), pv in zip(flat, ps):
                        helpful.setdefault(i, []).append(pv)
                for i, r in zip(active, cres):
                    texts = [t.strip() for t in r.texts]
                    hs = helpful.get(i, [None])
                    best = max(range(len(texts)), key=lambda k: (hs[k] if k < len(hs) and hs[k] is not None else -1.0, -k))
                    crit_text[i] = texts[best]
                if cfg.stop_on_no_problems:
                    for i in list(active):
                        if says_no_problems(crit_text[i]):
                            stopped[lp][i] = True
                            history[lp][i].append({"round": rnd, "critique": crit_text[i], "refinement": None,
                                                   "accepted": False, "stopped": True})
                    active = [i for i in active if not stopped[lp][i]]
            if not active:
                per_round[lp].append(mean([float(contains_answer(a, it.answers)) for a, it in zip(cur, items)]))
                continue
            prompts = [user(REFINE_TEMPLATE.format(q=items[i].question, a=cur[i], c=crit_text[i])) if mode == "critique"
                       else user(DIRECT_TEMPLATE.format(q=items[i].question, a=cur[i])) for i in active]
            rres = policy.generate([GenRequest(p, params, seed=cfg.seed + rnd) for p in prompts],
                                   description=f"{mode} refinements, round {rnd}")
            new = {i: r.texts[0].strip() for i, r in zip(active, rres)}
            new_score: dict[int, float | None] = {}
            if gating == "gated":
                got = scorer([(qa_prompt(items[i].question), items[i], [new[i]]) for i in active])
                new_score = {i: s[0] for i, s in zip(active, got)}
            for i in active:
                before, after = current_score[lp][i], new_score.get(i)
                if gating == "ungated":
                    accept = True
                elif before is None or after is None:
                    accept = False
                    unscored[lp] += 1
                else:
                    accept = after > before
                history[lp][i].append({"round": rnd, "critique": crit_text.get(i), "refinement": new[i],
                                       "accepted": accept, "score_before": before, "score_after": after})
                if accept:
                    if gating == "gated" and before is not None and after is not None:
                        pairs.append({"prompt": [m.to_dict() for m in qa_prompt(items[i].question)],
                                      "chosen": [{"role": "assistant", "content": new[i]}],
                                      "rejected": [{"role": "assistant", "content": cur[i]}],
                                      "margin": after - before,
                                      "meta": {"id": items[i].id, "mode": mode, "round": rnd, "scorer": cfg.scorer}})
                    cur[i] = new[i]
                    current_score[lp][i] = after if gating == "gated" else None
            per_round[lp].append(mean([float(contains_answer(a, it.answers)) for a, it in zip(cur, items)]))

    rows: list[dict[str, Any]] = []
    loop_summaries = []
    for lp in loops:
        mode, gating = lp
        final_ok = [contains_answer(a, it.answers) for a, it in zip(current[lp], items)]
        for i, it in enumerate(items):
            rows.append({"id": it.id, "question": it.question, "answers": list(it.answers), "mode": mode,
                         "gating": gating, "initial": initial[i], "initial_correct": init_ok[i],
                         "final": current[lp][i], "correct": final_ok[i], "idk": is_idk(current[lp][i], it.question),
                         "critiqueability": crit_p[i], "history": history[lp][i]})
        loop_summaries.append(_loop_summary(mode, gating, init_ok, final_ok, current[lp], items, history[lp],
                                            per_round[lp], unscored[lp], cfg))
    summary = {"questions": n, "scorer": cfg.scorer, "rounds": cfg.rounds, "critiques": cfg.critiques,
               "initial": _accuracy(init_ok, cfg),
               "initial_idk": mean([float(is_idk(a, it.question)) for a, it in zip(initial, items)]) if n else float("nan"),
               "loops": loop_summaries, "pairs": len(pairs)}
    if cfg.critiqueability:
        scored = [(p, not ok) for p, ok in zip(crit_p, init_ok) if p is not None]
        summary["critiqueability"] = {"auroc": auroc([p for p, _ in scored], [w for _, w in scored]),
                                      "scored": len(scored), "unscored": n - len(scored),
                                      "mean_p_yes_wrong": mean([p for p, w in scored if w]),
                                      "mean_p_yes_right": mean([p for p, w in scored if not w])}
    return rows, pairs, summary


def _accuracy(ok: Sequence[bool], cfg: RefineConfig) -> dict[str, float]:
    return mean_ci([float(x) for x in ok], cfg.bootstrap, cfg.seed)


def _loop_summary(mode: str, gating: str, init_ok: Sequence[bool], final_ok: Sequence[bool], final: Sequence[str],
                  items: Sequence[QAItem], history: Sequence[Sequence[dict[str, Any]]], per_round: list[float],
                  unscored: int, cfg: RefineConfig) -> dict[str, Any]:
    diff = paired_bootstrap([float(x) for x in init_ok], [float(x) for x in final_ok], resamples=cfg.bootstrap,
                            seed=cfg.seed)
    mc = mcnemar(list(init_ok), list(final_ok))
    steps = [h for hs in history for h in hs]
    return {"mode": mode, "gating": gating, "accuracy": _accuracy(final_ok, cfg),
            "fixes": sum(1 for a, b in zip(init_ok, final_ok) if not a and b),
            "regressions": sum(1 for a, b in zip(init_ok, final_ok) if a and not b),
            "diff": {"value": diff.diff, "lo": diff.lo, "hi": diff.hi}, "mcnemar_p": mc.p_value,
            "idk": mean([float(is_idk(a, it.question)) for a, it in zip(final, items)]) if items else float("nan"),
            "refinements": sum(1 for h in steps if h.get("refinement") is not None),
            "accepted": sum(1 for h in steps if h.get("accepted")),
            "stopped": sum(1 for h in steps if h.get("stopped")), "unscored": unscored, "per_round": per_round}


@dataclass
class RefineResult:
    """The refinement rows, the preference pairs and the summary (a row per loop, the models)."""
    rows: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    summary: dict[str, Any]


def run(cfg: RefineConfig, policy: StageModel, critic: StageModel | None = None, judge: StageModel | None = None,
        items: Sequence[QAItem] | None = None) -> RefineResult:
    items = list(items) if items is not None else load_items(cfg)
    rows, pairs, summary = refine(policy, items, cfg, critic, judge)
    return RefineResult(rows=rows, pairs=pairs, summary={**summary, "policy": policy.model_id,
                                                         "critic": (critic or policy).model_id})
