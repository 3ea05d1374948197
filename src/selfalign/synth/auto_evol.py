"""Auto Evol-Instruct: the evolving method itself is optimised by a model, not written by hand.

Zeng et al. 2024, "Automatic Instruction Evolving for Large Language Models" (arXiv 2406.00770).
Evol-Instruct (:mod:`selfalign.synth.evol_instruct`) evolves instructions with hand-written
operation prompts. Auto Evol-Instruct starts from one general evolving method and improves it:

1. **Evolve**: the evol model rewrites a mini-batch of instructions with the current method and
   answers each rewrite.
2. **Trajectory analysis**: each rewrite that fails is found, by Evol-Instruct's elimination rules
   (:func:`selfalign.synth.evol_instruct.elimination_reason`: empty, copied prompt words, a response
   that signals difficulty or holds only stop words); the paper's optimizer model reads the
   trajectory and names the issues, here the rules name them and the optimizer is shown the
   failed rewrites with their reasons.
3. **Method optimisation**: the optimizer model writes ``candidates`` improved methods that address
   those issues.
4. **Selection on a dev batch**: each candidate evolves a fixed dev batch of other instructions; the
   candidate with the lowest failure rate replaces the current method **only if** it is lower than
   the current method's rate on the same dev batch (the paper keeps the method that lowers the
   failure rate). Steps 1-4 repeat ``steps`` times.
5. **Final evolution**: the best method evolves every instruction once; survivors of the rules are
   the rows (with their responses).

Rows: ``meta.method`` ``auto-evol``, the index of the method that made it. The result keeps every
method tried with its dev failure rate (``history``), so the report shows whether optimisation
helped.

Deviations: the paper's evol and optimizer models are GPT-4/GPT-3.5 with several evolution rounds
per trajectory and an LLM-written issue analysis; here one rewrite per instruction, the failure
rules stand in for the optimizer's analysis, and the prompts (the initial method included) are
our wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selfalign.models.base import StageModel
from selfalign.synth.evol_instruct import clean_evolved, elimination_reason
from selfalign.synth.tasks import SynthStats, load_seed_tasks, row
from selfalign.types import GenParams, GenRequest, user

INITIAL_METHOD = (
    "You rewrite an instruction into a more complex version. Step 1: list ways to make it more complex (add a "
    "constraint, ask for reasoning, make it more specific). Step 2: pick two of them. Step 3: rewrite the instruction "
    "with them, so that it stays clear and answerable. Reply with the rewritten instruction only.")
EVOLVE_TEMPLATE = "{method}\n\n#Instruction#:\n{instruction}\n\n#Rewritten Instruction#:\n"
OPTIMIZE_TEMPLATE = (
    "Here is a method for rewriting instructions into harder ones:\n\n{method}\n\n"
    "Some rewrites it produced failed:\n{failures}\n\nWrite an improved method that avoids these failures and still "
    "makes instructions more complex. Reply with the method only.")


@dataclass
class AutoEvolConfig:
    model: str = "smollm2-135m"  # the evol model: rewrites and answers
    optimizer: str = ""  # rewrites the method (default: the evol model)
    seed_tasks: str = "bundled"
    steps: int = 2
    batch: int = 8  # instructions evolved per optimisation step
    dev: int = 8  # the fixed dev batch every candidate is measured on
    candidates: int = 2  # improved methods written per step
    n_final: int = 40  # instructions evolved by the best method (0 = every instruction)
    temperature: float = 0.7
    max_tokens: int = 128
    response_max_tokens: int = 128
    method_max_tokens: int = 200
    seed: int = 0
    out: str = "runs/auto-evol"
    store: str = ""

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "dev", "candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class AutoEvolResult:
    rows: list[dict[str, Any]]
    stats: SynthStats
    methods: list[str]  # every method tried, the initial one first
    history: list[dict[str, Any]]  # per step: the current method's dev failure rate, each candidate's, which won
    best: int  # index into methods


def evolve(model: StageModel, method: str, instructions: list[str], cfg: AutoEvolConfig, tag: str
           ) -> list[tuple[str, str, str, str | None]]:
    """(instruction, rewrite, response, failure reason or None) for each instruction."""
    params = GenParams(cfg.temperature, 1.0, cfg.max_tokens)
    rewrites = [clean_evolved(r.texts[0]) for r in model.generate(
        [GenRequest(user(EVOLVE_TEMPLATE.format(method=method, instruction=i)), params, seed=cfg.seed)
         for i in instructions], description=f"auto-evol {tag}: rewrites")]
    answers = model.generate([GenRequest(user(w), GenParams(0.0, 1.0, cfg.response_max_tokens), seed=cfg.seed)
                              for w in rewrites if w], description=f"auto-evol {tag}: responses")
    it = iter(answers)
    out = []
    for i, w in zip(instructions, rewrites):
        resp = next(it).texts[0] if w else ""
        out.append((i, w, resp, elimination_reason(i, w, resp, "")))
    return out


def failure_rate(results: list[tuple[str, str, str, str | None]]) -> float:
    return sum(r[3] is not None for r in results) / max(1, len(results))


def run(cfg: AutoEvolConfig, model: StageModel, optimizer: StageModel | None = None, log: Any = print
        ) -> AutoEvolResult:
    optimizer = optimizer or model
    pool = [t.instruction for t in load_seed_tasks(cfg.seed_tasks)]
    need = cfg.dev + cfg.batch * cfg.steps
    if len(pool) < need:
        raise ValueError(f"seed_tasks: {len(pool)} instructions, the options need {need} (dev + batch x steps)")
    dev, rest = pool[:cfg.dev], pool[cfg.dev:]
    methods, history, current = [INITIAL_METHOD], [], 0
    cur_rate = failure_rate(evolve(model, INITIAL_METHOD, dev, cfg, "dev 0"))
    for step in range(cfg.steps):
        batch = rest[step * cfg.batch:(step + 1) * cfg.batch]
        failed = [r for r in evolve(model, methods[current], batch, cfg, f"step {step + 1}") if r[3] is not None]
        entry: dict[str, Any] = {"step": step + 1, "method": current, "dev_failure_rate": cur_rate,
                                 "batch_failures": len(failed), "candidates": [], "accepted": None}
        if failed:
            listing = "\n".join(f"- Instruction: {i}\n  Rewrite: {w or '(empty)'}\n  Problem: {(why or '').replace('_', ' ')}"
                                for i, w, _, why in failed[:6])
            proposals = optimizer.generate(
                [GenRequest(user(OPTIMIZE_TEMPLATE.format(method=methods[current], failures=listing)),
                            GenParams(cfg.temperature, 1.0, cfg.method_max_tokens), seed=cfg.seed + 100 * step + k)
                 for k in range(cfg.candidates)], description=f"auto-evol step {step + 1}: methods")
            best_k, best_rate = None, cur_rate
            for p in proposals:
                text = p.texts[0].strip()
                if not text:
                    entry["candidates"].append({"method": None, "dev_failure_rate": None})
                    continue
                methods.append(text)
                rate = failure_rate(evolve(model, text, dev, cfg, f"dev {len(methods) - 1}"))
                entry["candidates"].append({"method": len(methods) - 1, "dev_failure_rate": rate})
                if rate < best_rate:
                    best_k, best_rate = len(methods) - 1, rate
            if best_k is not None:
                current, cur_rate = best_k, best_rate
                entry["accepted"] = best_k
        history.append(entry)
        log(f"[auto-evol] step {step + 1}: {len(failed)} failed rewrites; method {current} (dev failure rate "
            f"{100 * cur_rate:.0f}%)")
    final = rest[cfg.steps * cfg.batch:]
    final = (final or rest)[:cfg.n_final or None]
    stats, rows = SynthStats(), []
    for i, w, resp, why in evolve(model, methods[current], final, cfg, "final"):
        if why:
            stats.drop(why)
            continue
        rows.append(row(w, resp, "auto-evol", parent=i, evolving_method=current))
        stats.kept += 1
    log(f"[auto-evol] final: {stats.kept} rows with method {current}; filtered {dict(stats.filtered)}")
    return AutoEvolResult(rows, stats, methods, history, current)
