"""Evol-Instruct (Xu et al. 2023, "WizardLM: Empowering Large Language Models to Follow Complex
Instructions", arXiv 2304.12244).

Each round, every instruction of the pool is evolved by one operation drawn at random:
in-depth (add constraints, deepening, concretizing, increase reasoning steps, complicate input)
or in-breadth (a new instruction of the same domain, rarer). The evolved instruction is
answered by the model, and **elimination evolving** drops it when one of the paper's four rules
holds:

1. it brings no information gain over its parent (the model, asked whether the two are equal in
   constraints, depth and breadth, says they are);
2. its response signals difficulty: contains "sorry" and is shorter than 80 words;
3. its response is only punctuation and stop words;
4. it copies words of the evolving prompt ("given prompt", "rewritten prompt", "#Rewritten
   Prompt#", "created prompt").

An eliminated item's parent goes back to the pool and is evolved again next round (the paper's
"return to the pool"); a surviving evolution replaces its parent. Rows: the survivors of every
round with their responses.

Deviation: the operation prompts are our own wording of the paper's operations, with its
``#Given Prompt#`` / ``#Rewritten Prompt#`` markers.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from selfalign.data.io import DataError
from selfalign.models.base import StageModel
from selfalign.synth.tasks import SynthStats, load_seed_tasks, row
from selfalign.types import GenParams, GenRequest, user

IN_DEPTH = {
    "add_constraints": "Add one more constraint or requirement to it.",
    "deepening": "If it asks about a topic, make the question deeper and broader.",
    "concretizing": "Replace general concepts with more specific ones.",
    "increase_reasoning": "If it can be solved in a few simple steps, rewrite it to explicitly ask for multi-step reasoning.",
    "complicate_input": "Add a piece of structured input data (a table, a list, some code or JSON) that the task must work on.",
}
DEPTH_TEMPLATE = (
    "Rewrite the given prompt into a more complex version that a capable assistant finds harder to handle. "
    "The rewritten prompt must stay reasonable, understandable and answerable by people, and add at most 20 words. "
    "{method}\n\n#Given Prompt#:\n{instruction}\n\n#Rewritten Prompt#:\n"
)
BREADTH_TEMPLATE = (
    "Draw inspiration from the given prompt to create a brand new prompt in the same domain but rarer. "
    "It should be of similar length and difficulty, and answerable by people.\n\n"
    "#Given Prompt#:\n{instruction}\n\n#Created Prompt#:\n"
)
EQUALITY_TEMPLATE = (
    "Here are two instructions. Do they have the same constraints and requirements, and the same depth and "
    "breadth of inquiry? Answer Equal or Not Equal.\n\nFirst: {a}\n\nSecond: {b}\n\nAnswer:"
)
LEAKED = ("given prompt", "rewritten prompt", "#rewritten prompt#", "created prompt", "#given prompt#", "#created prompt#")
STOP_WORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been it this that these those "
    "i you he she we they me my your our their its not no yes so do does did have has had will would can could "
    "should may might must there here what which who whom how why when where".split())


@dataclass
class EvolConfig:
    model: str = "smollm2-135m"
    seed_tasks: str = "bundled"
    instructions: str = ""  # a JSONL with 'instruction' (or 'prompt'); default: the seed tasks
    rounds: int = 4
    breadth_share: float = 0.2  # chance an operation is in-breadth
    operations: list[str] = field(default_factory=lambda: list(IN_DEPTH))
    temperature: float = 0.7
    max_tokens: int = 160
    response_max_tokens: int = 160
    seed: int = 0
    out: str = "runs/evol"
    store: str = ""


def clean_evolved(text: str) -> str:
    """Trim white space and quotes only: a copied marker must stay visible to rule 4."""
    return text.strip().strip('"').strip()


def parse_equal(text: str) -> str | None:
    """The equality judge's answer: "equal", "not equal", or None (unscored: the rule then
    eliminates nothing, and the run counts it).

    >>> parse_equal("Not Equal."), parse_equal("Equal"), parse_equal("They differ in depth.") is None
    ('not equal', 'equal', True)
    """
    m = re.match(r"\W*(not\s+equal|equal)\b", text.strip(), re.I)
    return " ".join(m.group(1).lower().split()) if m else None


def elimination_reason(parent: str, evolved: str, response: str, equal_verdict: str) -> str | None:
    """Which of the paper's four rules eliminates ``evolved``, or None."""
    if not evolved:
        return "empty"
    low = evolved.lower()
    if any(w in low for w in LEAKED):
        return "copied_prompt_words"
    if parse_equal(equal_verdict) == "equal":
        return "no_information_gain"
    if "sorry" in response.lower() and len(response.split()) < 80:
        return "response_signals_difficulty"
    words = re.findall(r"[a-z0-9']+", response.lower())
    if not words or all(w in STOP_WORDS for w in words):
        return "response_only_punctuation_and_stop_words"
    return None


def _load_instructions(cfg: EvolConfig) -> list[str]:
    if cfg.instructions:
        from selfalign.data.io import read_jsonl

        rows = read_jsonl(cfg.instructions, any_of=[("instruction", "prompt")])
        out = []
        for r in rows:
            v = r.get("instruction", r.get("prompt"))
            if not isinstance(v, (str, list)) or not v:
                raise DataError(f"{cfg.instructions}: each row needs 'instruction' or 'prompt', got {r!r}")
            out.append(v if isinstance(v, str) else v[-1]["content"])
        return out
    return [t.instruction for t in load_seed_tasks(cfg.seed_tasks)]


@dataclass
class EvolResult:
    """What an Evol-Instruct run made: the surviving evolutions, the final pool and the stats."""
    rows: list[dict[str, Any]]
    pool: list[str]
    stats: SynthStats


def run(cfg: EvolConfig, model: StageModel, log: Callable[[str], None] = print) -> EvolResult:
    pool = _load_instructions(cfg)
    lineage: list[list[str]] = [[] for _ in pool]  # operations applied so far, per pool slot
    stats = SynthStats()
    rows: list[dict[str, Any]] = []
    params = GenParams(cfg.temperature, 1.0, cfg.max_tokens)
    for rnd in range(cfg.rounds):
        ops = []
        for i in range(len(pool)):
            rng = random.Random(f"{cfg.seed}:{rnd}:{i}")
            ops.append("in_breadth" if rng.random() < cfg.breadth_share else rng.choice(cfg.operations))
        prompts = [DEPTH_TEMPLATE.format(method=IN_DEPTH[op], instruction=inst) if op != "in_breadth"
                   else BREADTH_TEMPLATE.format(instruction=inst) for op, inst in zip(ops, pool)]
        evolved = [clean_evolved(r.texts[0]) for r in model.generate(
            [GenRequest(user(p), params, seed=cfg.seed + rnd) for p in prompts], description=f"evol round {rnd + 1}")]
        answers = [r.texts[0] for r in model.generate(
            [GenRequest(user(e or "-"), GenParams(0.0, 1.0, cfg.response_max_tokens)) for e in evolved],
            description=f"evol round {rnd + 1}: responses")]
        verdicts = [r.texts[0] for r in model.generate(
            [GenRequest(user(EQUALITY_TEMPLATE.format(a=p, b=e)), GenParams(0.0, 1.0, 4)) for p, e in zip(pool, evolved)],
            description=f"evol round {rnd + 1}: equality")]
        survived = 0
        stats.judge_unscored += sum(parse_equal(v) is None for v in verdicts)
        stats.judge_asked += len(verdicts)
        for i, (parent, ev, ans, verdict, op) in enumerate(zip(pool, evolved, answers, verdicts, ops)):
            reason = elimination_reason(parent, ev, ans, verdict)
            if reason:
                stats.drop(reason)  # the parent stays in the pool and is evolved again next round
                continue
            stats.kept += 1
            survived += 1
            lineage[i] = lineage[i] + [op]
            rows.append(row(ev, ans, "evol-instruct", round=rnd + 1, operation=op, parent=parent, lineage=lineage[i]))
            pool[i] = ev
        log(f"[evol] round {rnd + 1}: {survived}/{len(pool)} evolutions survived")
    return EvolResult(rows=rows, pool=pool, stats=stats)
