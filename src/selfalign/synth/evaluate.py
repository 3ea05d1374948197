"""``synth eval``: synthetic data judged by what training on it does (issue 27).

The synthesis papers make their claims about fine-tuned models, not about rows: Self-Instruct
(Wang et al. 2023, ACL) and Evol-Instruct (Xu et al. 2024, ICLR, "WizardLM") compare a model
tuned on the synthesised data with one tuned without it, judged pairwise on held-out
instructions; IFD (Li et al. 2024, NAACL, "From Quantity to Quality", arXiv 2308.12032) compares a
model tuned on the top few per cent of a pool by Instruction-Following Difficulty with models
tuned on other subsets. This command runs those comparisons with the project's own pieces:

* **seed only vs seed + a method's rows**: one SFT model on the seed rows, one per ``sets`` entry
  on seed + that method's usable rows (``meta.ok`` and a non-empty completion), the same base and
  training config for all.
* **IFD top vs random of equal size**: the ``ifd`` pool is scored with the base model
  (:func:`selfalign.synth.ifd.score_rows`; pairs with IFD > 1 dropped, as in the paper); the top
  ``ifd_fraction`` by IFD and a random subset of the same size (seeded) each train a model alone.
* Every model answers the same held-out instructions greedily (through the store). A pairwise
  judge (:class:`selfalign.judges.llm.PairwiseJudge`) asks in both orders: a win counts 1, a tie
  (the two orders disagree) 0.5, a loss 0; an answer that does not parse is unscored and counted,
  never a loss. The win rate has a percentile-bootstrap interval over instructions. Where the
  held-out items carry IFEval-style constraints (the bundled 40), each model's strict
  instruction-following share is reported too, with McNemar's test against its baseline: a
  measure no judge decides.

Deviations, all stated in the report:
* The papers judge with people or GPT-4 on their own test sets (Self-Instruct's 252 user-oriented
  instructions, WizardLM's Evol-Instruct test set); the default here is the project's bundled
  40 instruction-following prompts and the judge is whatever ``--judge`` names (default: the base
  model, which answers by position: the flipped count shows it).
* Rows whose prompt equals a held-out instruction (after lower-casing and collapsing spaces) are
  dropped and counted; near-duplicates are not searched for.
* IFD's paper tunes LLaMA-7B on 5-10% of Alpaca/WizardLM (52k/70k rows); a small pool's 10% is a
  handful of rows, so ``ifd_fraction`` is a knob.
* LLM2LLM's test-split evaluation (the issue's last point) is not part of this command.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from selfalign.data.io import read_jsonl
from selfalign.evals import pairwise
from selfalign.evals.pairwise import JUDGE_TEMPLATE, HeldOut, held_out
from selfalign.judges.llm import PairwiseJudge
from selfalign.synth import ifd
from selfalign.synth.tasks import load_seed_tasks, task_prompt
from selfalign.train.base import TrainConfig

SEED, TOP, RANDOM = "seed", "ifd-top", "ifd-random"


@dataclass
class SynthEvalConfig:
    model: str = "smollm2-135m"  # the base model every set fine-tunes (and the IFD scorer)
    judge: str = ""  # the pairwise judge; empty = the base model (a poor judge: see the flipped count)
    seed_rows: str = "bundled"  # TRL rows JSONL, or bundled: the bundled seed tasks, one row per instance
    sets: list[str] = field(default_factory=list)  # NAME=rows.jsonl: seed + these rows against seed only
    ifd: str = ""  # a rows JSONL: its IFD top fraction against a random share of equal size, each trained alone
    ifd_fraction: float = 0.1  # the share kept by IFD (the paper: 5-10%)
    held_out: str = "bundled:instructions.jsonl"  # instructions no model trains on (prompt; constraints optional)
    n_held_out: int = 0  # 0 = every held-out instruction
    max_tokens: int = 96  # per held-out answer
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2))
    bootstrap: int = 1000
    seed: int = 0
    out: str = "runs/synth-eval"
    store: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.ifd_fraction <= 1:
            raise ValueError(f"ifd_fraction must be in (0, 1], got {self.ifd_fraction}")
        if self.n_held_out < 0:
            raise ValueError(f"n_held_out must be >= 0, got {self.n_held_out}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


def parse_sets(sets: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=path`` entries as (name, path); a bad entry or a repeated name is an error.

    >>> parse_sets(["self-instruct=runs/si/rows.jsonl"])
    [('self-instruct', 'runs/si/rows.jsonl')]
    """
    out: list[tuple[str, str]] = []
    for s in sets:
        name, sep, path = s.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not path:
            raise ValueError(f"sets: {s!r}: expected NAME=rows.jsonl (NAME of letters, digits, '.', '_', '-')")
        if name in (SEED, TOP, RANDOM) or name in {n for n, _ in out}:
            raise ValueError(f"sets: the name {name!r} is reserved or repeated")
        out.append((name, path))
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _prompt_text(row: dict[str, Any]) -> str:
    p = row["prompt"]
    return p if isinstance(p, str) else str(p[-1]["content"]) if p else ""


def usable(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows a method marked usable (``meta.ok``, default true) with a non-empty completion, as TRL
    prompt-completion rows."""
    out = []
    for r in rows:
        comp = r.get("completion")
        text = comp if isinstance(comp, str) else (str(comp[-1].get("content", "")) if comp else "")
        if r.get("meta", {}).get("ok", True) and text.strip():
            out.append({"prompt": r["prompt"], "completion": r["completion"], "meta": r.get("meta", {})})
    return out


def seed_rows(path: str) -> list[dict[str, Any]]:
    """The seed rows: a TRL rows file, or the bundled seed tasks with one row per instance."""
    if path != "bundled":
        return usable(read_jsonl(path, required=("prompt", "completion")))
    return [{"prompt": [{"role": "user", "content": task_prompt(t.instruction, inp)}],
             "completion": [{"role": "assistant", "content": out}], "meta": {"method": "seed", "task": t.id}}
            for t in load_seed_tasks("bundled") for inp, out in t.instances if out.strip()]


@dataclass
class Inputs:
    """Every input read and checked (before any model loads): the rows each model trains on, less
    those that repeat a held-out instruction (counted)."""
    held: HeldOut
    seed: list[dict[str, Any]]
    sets: dict[str, list[dict[str, Any]]]
    pool: list[dict[str, Any]]
    dropped: dict[str, int]


def read_inputs(cfg: SynthEvalConfig) -> Inputs:
    sets = parse_sets(cfg.sets)
    if not sets and not cfg.ifd:
        raise ValueError("nothing to compare: give sets (NAME=rows.jsonl) and/or ifd (a rows pool)")
    held = held_out(cfg.held_out, cfg.n_held_out)
    if not held.prompts:
        raise ValueError(f"held_out: {cfg.held_out}: no instructions")
    banned = {_norm(p) for p in held.prompts}
    dropped: dict[str, int] = {}

    def clean(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [r for r in rows if _norm(_prompt_text(r)) not in banned]
        dropped[name] = len(rows) - len(kept)
        return kept

    seed = clean(SEED, seed_rows(cfg.seed_rows))
    if not seed:
        raise ValueError(f"seed_rows: {cfg.seed_rows}: no usable rows")
    by_name = {}
    for name, path in sets:
        by_name[name] = clean(name, usable(read_jsonl(path, required=("prompt", "completion"))))
        if not by_name[name]:
            raise ValueError(f"sets: {name}={path}: no usable rows (meta.ok and a non-empty completion)")
    pool = clean("ifd", usable(read_jsonl(cfg.ifd, required=("prompt", "completion")))) if cfg.ifd else []
    if cfg.ifd and len(pool) < 2:
        raise ValueError(f"ifd: {cfg.ifd}: {len(pool)} usable rows; a top share and a random share need at least 2")
    return Inputs(held, seed, by_name, pool, dropped)


@dataclass
class SynthEvalResult:
    """Per comparison: counts, the win rate with its interval and, with constraints, instruction
    following; per model: its training rows; rows: one per (comparison, instruction) verdict."""
    comparisons: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]
    dropped: dict[str, int]
    ifd_counts: dict[str, int]
    judge: str
    rows: list[dict[str, Any]]


def _train(name: str, rows: list[dict[str, Any]], cfg: SynthEvalConfig, base: Any, log: Callable[[str], None]) -> Any:
    from selfalign.train.sft import train_sft

    if base.train_path is None:
        raise ValueError(f"model: {cfg.model}: cannot be fine-tuned here (no local weights)")
    res = train_sft([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows], base.train_path,
                    Path(cfg.out) / "models" / name, cfg.train, base_id=base.model_id)
    log(f"{name}: {len(rows)} rows, {'reused' if res.skipped else f'trained in {res.seconds:.0f}s'}")
    return base.sibling(res.model_dir)


def run(cfg: SynthEvalConfig, base: Any, judge_model: Any, log: Callable[[str], None] = print) -> SynthEvalResult:
    inp = read_inputs(cfg)
    trainings: dict[str, list[dict[str, Any]]] = {SEED: inp.seed}
    for name, rows in inp.sets.items():
        trainings[f"{SEED}+{name}"] = inp.seed + rows
    ifd_counts: dict[str, int] = {}
    if inp.pool:
        scores = ifd.score_rows(inp.pool, base)
        valid, top = ifd.selected(scores, top_fraction=cfg.ifd_fraction)  # the selection rule of `synth ifd`
        if not top:
            raise ValueError(f"ifd: every row of {cfg.ifd} has IFD > 1 (its instruction does not help): nothing to select")
        rand = sorted(random.Random(cfg.seed).sample(valid, len(top)))
        trainings[TOP] = [ifd.with_ifd(inp.pool[i], scores[i]) for i in top]
        trainings[RANDOM] = [ifd.with_ifd(inp.pool[i], scores[i]) for i in rand]
        ifd_counts = {"pool": len(inp.pool), "ifd_above_1": len(inp.pool) - len(valid), "kept": len(top),
                      "top_and_random_shared": len(set(top) & set(rand))}
    prompts = inp.held.prompts
    answers: dict[str, list[str]] = {}
    models: dict[str, dict[str, Any]] = {}
    for name, rows in trainings.items():
        tuned = _train(name, rows, cfg, base, log)
        answers[name] = pairwise.answers(tuned, prompts, cfg.max_tokens, f"held-out answers: {name}")
        models[name] = {"rows": len(rows), "model": str(Path(cfg.out) / "models" / name / "model")}
    judge = PairwiseJudge(judge_model, JUDGE_TEMPLATE, max_tokens=3, name="synth eval")
    pairs = [(f"{SEED}+{n}", SEED) for n in inp.sets] + ([(TOP, RANDOM)] if inp.pool else [])
    comparisons, rows = [], []
    for a, b in pairs:
        c, r = pairwise.compare(a, b, prompts, answers[a], answers[b], judge, inp.held.items, cfg.bootstrap, cfg.seed)
        comparisons.append(c)
        rows += r
        log(pairwise.line(c))
    return SynthEvalResult(comparisons, models, inp.dropped, ifd_counts, getattr(judge_model, "model_id", ""), rows)
