"""Force Sampling Beam Search (FSBS): search over critiques for more highlights at a chosen precision.

McAleese et al. 2024, "LLM Critics Help Catch LLM Bugs" (arXiv 2407.00215), App. 7.1. For each
piece of code:

1. force a highlight by appending "```" to the critic's answer and sample ``n`` continuations;
2. score every candidate and keep the top ``k``;
3. for each kept critique, strip the end of sequence and, if its last paragraph has no highlight,
   that paragraph; append "```" again and sample ``n`` continuations of it;
4. repeat steps 2-3 until ``d`` rounds have sampled (defaults n=4, k=2, d=4: 4 + 3 x 2 x 4 = 28
   candidates);
5. choose the argmax over **all** candidates of ``score + LENGTH_MODIFIER * num_highlights``.

LENGTH_MODIFIER trades precision for comprehensiveness. As in the paper it is set from the length
distribution of the sampled critiques: for each percentile p (10, 25, 50, 75 by default) it is the
value on a grid whose chosen critiques' mean length (characters) is closest to the p-th percentile
of all candidates' lengths; the report shows CBI, the random-highlight baseline and false alarms
for each, a curve like the paper's precision/recall trade-off, beside the critic's first forced
sample alone.

Each round's prompt is the previous one plus the kept partial critique, so consecutive rounds share
their prefix: the hf backend keeps every prefilled prompt's KV across calls while the search runs
(``prompt_cache_tokens``) and a round prefills only what its prompts add to the previous round's,
and the store makes a killed search resume where it stopped.

Scorers: ``judge`` (a separate ``--judge`` model rates each critique 1-7; unparsed = unscored, ranked
last and counted) and ``logprob`` (the critic's mean token log-probability of the critique, from the
log-probabilities of the sampled tokens themselves, so it costs no extra forward pass). The RLHF
issue's reward model plugs in as another scorer with the same signature.

Deviations: the paper scores with its critique reward model; without one here the default scorer
is ``logprob`` (a fluency score, not a quality score: it is what a 2-core CPU can afford for 28
candidates x 200 items), ``judge`` for a strong separate judge. When a last paragraph is stripped,
its share of the segment's log-probability is removed in proportion to its characters (the
sampled tokens' text offsets are not kept). LENGTH_MODIFIER is chosen on the evaluation items
themselves (the paper sets it on its own data); it uses no labels, only lengths.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Sequence

from selfalign.critique.critic import CriticConfig, CriticItem, critique_prompt, load_items
from selfalign.critique.highlights import parse_highlights, score_critique, summarise
from selfalign.judges.verdict import parse_score
from selfalign.models.base import StageModel
from selfalign.types import GenParams, GenRequest, Message, user

FENCE = "```"

JUDGE_TEMPLATE = ("Code:\n```python\n{code}\n```\n\nA reviewer wrote this critique of the code:\n{critique}\n\n"
                  "Rate from 1 to 7 how accurately the critique points out real bugs (7: it quotes a real bug and "
                  "explains it; 1: it quotes nothing wrong or invents problems). Reply with \"Score: n\".")


@dataclass
class Candidate:
    """One critique in the search: its text, score, and the sampled log-probability behind it."""
    item: int
    round: int
    parent: int | None  # index of the beam it continues (None in round 1)
    text: str
    lp_sum: float = 0.0  # the prefix's (as kept) plus this round's sampled tokens'
    n_tokens: int = 0
    score: float | None = None
    prefix: str = ""  # the kept text this candidate continued (with its paragraph break)
    prefix_lp: float = 0.0
    prefix_tokens: int = 0

    def kept(self) -> tuple[str, float, int]:
        """What the next round continues: the text without its last paragraph when that quotes
        no code, with the stripped part's share of this round's log-probability removed."""
        kept = strip_last_paragraph(self.text)
        seg = len(self.text) - len(self.prefix)
        frac = min(1.0, max(0.0, (len(kept) - len(self.prefix)) / seg)) if seg > 0 else 1.0
        return (kept, self.prefix_lp + frac * (self.lp_sum - self.prefix_lp),
                self.prefix_tokens + round(frac * (self.n_tokens - self.prefix_tokens)))

    @cached_property
    def highlights(self) -> int:  # the text never changes once sampled
        return len(parse_highlights(self.text))


#: critic items and candidate texts -> a score per candidate (None = unscored)
CritiqueScorer = Callable[[Sequence[CriticItem], Sequence[Candidate]], list[float | None]]


def logprob_score(items: Sequence[CriticItem], cands: Sequence[Candidate]) -> list[float | None]:
    return [c.lp_sum / c.n_tokens if c.n_tokens else None for c in cands]


def judge_score(judge: StageModel) -> CritiqueScorer:
    def score(items: Sequence[CriticItem], cands: Sequence[Candidate]) -> list[float | None]:
        reqs = [GenRequest(user(JUDGE_TEMPLATE.format(code=items[c.item].code.rstrip(), critique=c.text)),
                           GenParams(max_tokens=16)) for c in cands]
        out: list[float | None] = []
        for r in judge.generate(reqs, description="FSBS judge") if reqs else []:
            s = parse_score(r.texts[0], 1, 7)
            out.append(float(s) if s is not None else None)
        return out
    return score


def strip_last_paragraph(text: str) -> str:
    """``text`` without trailing space, without a highlight left open at the end (a segment cut
    inside a quote), and, when its last paragraph (outside ``` blocks) quotes no code, without
    that paragraph: what the next forced highlight continues.

    >>> strip_last_paragraph("```\\nx < 1\\n```\\nshould be <=.\\n\\nOtherwise the code is fine.\\n")
    '```\\nx < 1\\n```\\nshould be <=.'
    >>> strip_last_paragraph("```\\nx < 1\\n```\\nshould be <=.")
    '```\\nx < 1\\n```\\nshould be <=.'
    >>> strip_last_paragraph("```\\nx < 1\\n```\\nshould be <=.\\n\\n```\\ny = ")
    '```\\nx < 1\\n```\\nshould be <=.'
    """
    text = text.rstrip()
    if text.count(FENCE) % 2:  # an unfinished highlight: drop it
        text = text[:text.rfind(FENCE)].rstrip()
    # paragraph breaks that are not inside a ``` block
    breaks, inside = [], False
    for m in re.finditer(r"```|\n\s*\n", text):
        if m.group(0) == FENCE:
            inside = not inside
        elif not inside:
            breaks.append((m.start(), m.end()))
    if not breaks:
        return text
    start, end = breaks[-1]
    if FENCE in text[end:]:
        return text
    return text[:start].rstrip()


@dataclass
class FsbsConfig(CriticConfig):
    out: str = "runs/critique-fsbs"
    n: int = 4  # continuations sampled per kept critique
    k: int = 2  # critiques kept per round
    d: int = 4  # rounds
    segment_tokens: int = 48  # new tokens per round
    temperature: float = 1.0
    scorer: str = "logprob"  # logprob | judge
    judge: str = ""  # scorer=judge: the judging model (default: the critic)
    percentiles: list[int] = field(default_factory=lambda: [10, 25, 50, 75])
    discriminate: bool = False
    # the hf backend keeps each round's prompts' KV (up to this many tokens) so the next round,
    # which continues them, runs only its new tokens (0 = off; ~46 KB per token for SmolLM2-135M)
    prompt_cache_tokens: int = 200_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.n, self.k, self.d, self.segment_tokens) < 1:
            raise ValueError("n, k, d and segment_tokens must be >= 1")
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) cannot exceed n ({self.n}): round 1 has only n candidates")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0: the search samples")
        if self.scorer not in ("logprob", "judge"):
            raise ValueError(f"scorer must be logprob or judge, got {self.scorer!r}")
        if not self.percentiles or any(not 0 <= p <= 100 for p in self.percentiles):
            raise ValueError(f"percentiles must be numbers in [0, 100], got {self.percentiles}")


def candidates_per_item(cfg: FsbsConfig) -> int:
    """n in the first round, k x n in each later one (28 for the defaults).

    >>> candidates_per_item(FsbsConfig())
    28
    """
    return cfg.n + (cfg.d - 1) * cfg.k * cfg.n


def search(critic: StageModel, items: Sequence[CriticItem], cfg: FsbsConfig,
           scorer: CritiqueScorer | None = None) -> list[list[Candidate]]:
    """Every item's candidates, in the order sampled (round, beam, sample)."""
    scorer = scorer or logprob_score
    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.segment_tokens, logprobs=True)
    backend: Any = getattr(critic, "backend", critic)
    if cfg.prompt_cache_tokens and hasattr(backend, "prompt_cache_tokens"):
        backend.prompt_cache_tokens = cfg.prompt_cache_tokens
    try:
        return _search(critic, items, cfg, scorer, params)
    finally:
        if hasattr(backend, "prompt_cache_tokens"):
            backend.prompt_cache_tokens = 0
            backend.clear_prompt_cache()


def _search(critic: StageModel, items: Sequence[CriticItem], cfg: FsbsConfig, scorer: CritiqueScorer,
            params: GenParams) -> list[list[Candidate]]:
    cands: list[list[Candidate]] = [[] for _ in items]
    # per item, the beams to continue: (index of the candidate, kept text, its log-prob, its tokens)
    beams: list[list[tuple[int | None, str, float, int]]] = [[(None, "", 0.0, 0)] for _ in items]
    for rnd in range(1, cfg.d + 1):
        jobs = [(i, b, beam) for i in range(len(items)) for b, beam in enumerate(beams[i])]
        reqs = []
        for i, b, (_, kept, _, _) in jobs:
            forced = (kept + "\n\n" if kept else "") + FENCE
            reqs.append(GenRequest(critique_prompt(items[i].code) + (Message("assistant", forced),), params,
                                   n=cfg.n, seed=cfg.seed * 1_000_003 + rnd * 101 + b))
        res = critic.generate(reqs, description=f"FSBS round {rnd}/{cfg.d}")
        new: list[Candidate] = []
        for (i, b, (parent, kept, lp, nt)), r in zip(jobs, res):
            prefix = kept + "\n\n" if kept else ""
            for c in r.completions:
                lps = c.token_logprobs or ()
                cand = Candidate(i, rnd, parent, prefix + FENCE + c.text, lp + sum(lps), nt + len(lps),
                                 prefix=prefix, prefix_lp=lp, prefix_tokens=nt)
                cands[i].append(cand)
                new.append(cand)
        for cand, s in zip(new, scorer(items, new)):
            cand.score = s
        if rnd == cfg.d:
            break
        for i in range(len(items)):
            this = [(j, c) for j, c in enumerate(cands[i]) if c.round == rnd]
            top = sorted(this, key=lambda jc: (-(jc[1].score if jc[1].score is not None else -math.inf), jc[0]))[:cfg.k]
            beams[i] = [(j, *c.kept()) for j, c in top]
    return cands


def choose(cands: Sequence[Candidate], modifier: float) -> Candidate:
    """argmax of score + modifier x highlights (unscored last; the first sampled wins a tie)."""
    def key(jc: tuple[int, Candidate]) -> tuple[float, int]:
        j, c = jc
        s = c.score if c.score is not None else -math.inf
        return (s + modifier * c.highlights, -j)
    return max(enumerate(cands), key=key)[1]


def percentile(xs: Sequence[float], p: float) -> float:
    """Linear-interpolation percentile.

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 25)
    (2.5, 1.75)
    """
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def calibrate(all_cands: Sequence[Sequence[Candidate]], percentiles: Sequence[float], grid: int = 201
              ) -> list[dict[str, float]]:
    """For each percentile: the LENGTH_MODIFIER whose chosen critiques' mean length is closest to
    that percentile of all candidates' lengths, with the length reached."""
    lengths = [len(c.text) for cs in all_cands for c in cs]
    scores = [c.score for cs in all_cands for c in cs if c.score is not None]
    spread = (max(scores) - min(scores)) if scores else 1.0
    spread = spread or 1.0
    mods = [spread * (2 * g / (grid - 1) - 1) * 2 for g in range(grid)]  # [-2 spread, +2 spread]
    reach = [(m, sum(len(choose(cs, m).text) for cs in all_cands) / max(1, len(all_cands))) for m in mods]
    out = []
    for p in percentiles:
        target = percentile(lengths, p)
        m, got = min(reach, key=lambda mr: (abs(mr[1] - target), abs(mr[0])))
        out.append({"percentile": p, "target_length": target, "modifier": m, "mean_length": got})
    return out


def evaluate(critic: StageModel, items: Sequence[CriticItem], cfg: FsbsConfig, scorer: CritiqueScorer | None = None
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Search, calibrate the modifier, score the chosen critiques. Returns (rows, candidates, summary)."""
    cands = search(critic, items, cfg, scorer)
    settings: list[dict[str, Any]] = [{"setting": "first sample", "percentile": None, "modifier": None}]
    cal = calibrate(cands, cfg.percentiles)
    settings += [{"setting": f"p{c['percentile']:g}", **c} for c in cal]
    rows, curve = [], []
    for st in settings:
        scores = []
        for it, cs in zip(items, cands):
            c = cs[0] if st["modifier"] is None else choose(cs, float(st["modifier"]))
            s = score_critique(c.text, it.code, it.bug_lines, it.changed_text, it.first_solution_line)
            scores.append(s)
            rows.append({"item": it.item_id, "task_id": it.task_id, "kind": it.kind, "tampered": it.tampered,
                         "setting": st["setting"], "modifier": st["modifier"], "bug": it.description,
                         "bug_lines": list(it.bug_lines), "critique": c.text, "round": c.round, "score": c.score,
                         **s.to_dict()})
        summ = summarise(scores, resamples=cfg.bootstrap, seed=cfg.seed)
        curve.append({**st, **{k: summ.get(k) for k in ("cbi", "random_cbi", "cbi_minus_random", "false_alarm",
                                                         "highlights_per_critique_tampered", "spurious_per_critique",
                                                         "tampered", "clean")}})
    cand_rows = [{"item": items[c.item].item_id, "round": c.round, "parent": c.parent, "score": c.score,
                  "highlights": c.highlights, "tokens": c.n_tokens, "text": c.text} for cs in cands for c in cs]
    per_item = [len(cs) for cs in cands]
    summary = {"settings": curve, "items": len(items), "candidates": sum(per_item),
               "candidates_per_item": candidates_per_item(cfg), "scorer": cfg.scorer,
               "unscored": sum(1 for cs in cands for c in cs if c.score is None),
               "n": cfg.n, "k": cfg.k, "d": cfg.d}
    return rows, cand_rows, summary


@dataclass
class FsbsResult:
    """The chosen critiques, every candidate, and the summary (a row per length-modifier setting)."""
    rows: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    summary: dict[str, Any]


def run(cfg: FsbsConfig, critic: StageModel, judge: StageModel | None = None,
        items: Sequence[CriticItem] | None = None) -> FsbsResult:
    made: dict[str, Any] = {}
    if items is None:
        items, made = load_items(cfg)
    scorer = judge_score(judge or critic) if cfg.scorer == "judge" else logprob_score
    rows, cand_rows, summary = evaluate(critic, items, cfg, scorer)
    return FsbsResult(rows=rows, candidates=cand_rows, summary={**summary, **made, "critic": critic.model_id})
