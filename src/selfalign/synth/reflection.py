"""Selective Reflection-Tuning: a teacher rewrites each pair, the student decides what to keep.

Li et al. 2024, "Selective Reflection-Tuning: Student-Selected Data Recycling for LLM
Instruction-Tuning" (Findings of ACL 2024, arXiv 2402.10110). Reflection-tuning lets a strong
teacher improve existing instruction data; the *selective* version lets the **student** choose,
by its own statistics, which improvements suit it:

1. **Instruction reflection**: the teacher rewrites the instruction (clearer, more specific,
   more challenging) and answers the new instruction. The student keeps the new pair when its
   **IFD** is higher than the old pair's: the new instruction is harder for the student to follow
   from the answer alone, i.e. it teaches more (IFD: :mod:`selfalign.synth.ifd`).
2. **Response reflection**: the teacher rewrites the response to the (possibly new) instruction.
   The student keeps the new response when its **reverse IFD** (r-IFD, how hard the instruction
   is to infer from the response) is *lower* than the current one's: the response fits the
   instruction better, for this student.

A teacher reply that does not parse, or an empty rewrite, leaves the pair as it is and is counted
(``instruction_unparsed``, ``response_empty``). Every pair is kept, recycled or not; the counts of
accepted and rejected rewrites are the result (``instruction_accepted`` / ``_rejected``,
``response_accepted`` / ``_rejected``), and each row's ``meta`` says which input row it came from
(``source``), what changed and the scores.

Input: TRL prompt-completion rows (``input``), or ``bundled``: the bundled seed tasks' instances.
The student is ``model`` (it scores; it must be able to return log-probabilities, as the hf and
scripted backends do); the teacher is ``teacher`` (default: the student).

Deviations: the paper's teacher is GPT-4 with its own reflection prompts over Alpaca/WizardLM
data; ours are one-paragraph prompts of our wording; r-IFD uses :mod:`selfalign.synth.ifd`'s
user-turn formulation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from selfalign.data.io import read_jsonl
from selfalign.models.base import StageModel
from selfalign.synth.backtranslation import forward_rows
from selfalign.synth.ifd import _text, score_rows, score_rows_reverse
from selfalign.synth.tasks import SynthStats, load_seed_tasks, row
from selfalign.types import GenParams, GenRequest, user

INSTRUCTION_TEMPLATE = (
    "Improve the instruction below: make it clearer, more specific and a little more challenging, keeping its topic. "
    "Then answer the new instruction. Reply exactly as:\nInstruction: <new instruction>\nResponse: <answer>\n\n"
    "Instruction: {instruction}\nResponse: {response}")
RESPONSE_TEMPLATE = (
    "Improve the response below so that it answers the instruction better: correct, complete, well organised and "
    "to the point. Reply with the improved response only.\n\nInstruction: {instruction}\nResponse: {response}")
PAIR = re.compile(r"Instruction:\s*(?P<instruction>.+?)\s*\n\s*Response:\s*(?P<response>.+)", re.IGNORECASE | re.DOTALL)


@dataclass
class ReflectionConfig:
    model: str = "smollm2-135m"  # the student: scores IFD and r-IFD
    teacher: str = ""  # rewrites (default: the student)
    input: str = "bundled"  # TRL prompt-completion rows, or bundled (the seed tasks' instances)
    max_rows: int = 40  # 0 = every row
    temperature: float = 0.7
    max_tokens: int = 256
    seed: int = 0
    out: str = "runs/selective-reflection"
    store: str = ""


@dataclass
class ReflectionResult:
    rows: list[dict[str, Any]]
    stats: SynthStats
    counts: dict[str, int]


def parse_pair(text: str) -> tuple[str, str] | None:
    """(instruction, response) from the teacher's instruction reflection.

    >>> parse_pair("Instruction: Name three prime numbers above 10.\\nResponse: 11, 13 and 17.")
    ('Name three prime numbers above 10.', '11, 13 and 17.')
    """
    m = PAIR.search(text)
    if not m or not m.group("instruction").strip() or not m.group("response").strip():
        return None
    return m.group("instruction").strip(), m.group("response").strip()


def load_rows(cfg: ReflectionConfig) -> list[dict[str, Any]]:
    rows = (forward_rows(load_seed_tasks("bundled")) if cfg.input == "bundled"
            else read_jsonl(cfg.input, required=("prompt", "completion")))
    return rows[:cfg.max_rows] if cfg.max_rows else rows


def run(cfg: ReflectionConfig, student: StageModel, teacher: StageModel | None = None, log: Any = print
        ) -> ReflectionResult:
    teacher = teacher or student
    src = [(_text(r["prompt"]), _text(r["completion"])) for r in load_rows(cfg)]
    params = GenParams(cfg.temperature, 1.0, cfg.max_tokens)
    counts = dict.fromkeys(("instruction_accepted", "instruction_rejected", "instruction_unparsed",
                            "response_accepted", "response_rejected", "response_empty"), 0)
    # 1. instruction reflection, judged by the student's IFD
    replies = teacher.generate([GenRequest(user(INSTRUCTION_TEMPLATE.format(instruction=q, response=a)), params,
                                           seed=cfg.seed) for q, a in src], description="instruction reflection")
    proposals = [parse_pair(r.texts[0]) for r in replies]
    ifd_old = score_rows([row(q, a, "x") for q, a in src], student)
    new_pairs = [p for p in proposals if p is not None]
    ifd_new = iter(score_rows([row(q, a, "x") for q, a in new_pairs], student) if new_pairs else [])
    current: list[tuple[str, str]] = []
    meta: list[dict[str, Any]] = []
    for (q, a), p, old in zip(src, proposals, ifd_old):
        if p is None:
            counts["instruction_unparsed"] += 1
            current.append((q, a))
            meta.append({"instruction_changed": False, "ifd": old})
            continue
        new = next(ifd_new)
        take = new > old
        counts["instruction_accepted" if take else "instruction_rejected"] += 1
        current.append(p if take else (q, a))
        meta.append({"instruction_changed": take, "ifd": new if take else old, "ifd_before": old, "ifd_rewrite": new})
    # 2. response reflection, judged by the student's r-IFD
    rewrites = [r.texts[0].strip() for r in teacher.generate(
        [GenRequest(user(RESPONSE_TEMPLATE.format(instruction=q, response=a)), params, seed=cfg.seed + 1)
         for q, a in current], description="response reflection")]
    r_old = score_rows_reverse([row(q, a, "x") for q, a in current], student)
    cand = [(q, w) for (q, _), w in zip(current, rewrites) if w]
    r_new = iter(score_rows_reverse([row(q, w, "x") for q, w in cand], student) if cand else [])
    rows = []
    for source, ((q, a), w, old, m) in enumerate(zip(current, rewrites, r_old, meta)):
        if not w:
            counts["response_empty"] += 1
            rows.append(row(q, a, "selective-reflection", source=source, response_changed=False, r_ifd=old, **m))
            continue
        new = next(r_new)
        take = new < old
        counts["response_accepted" if take else "response_rejected"] += 1
        rows.append(row(q, w if take else a, "selective-reflection", source=source, response_changed=take,
                        r_ifd=new if take else old, r_ifd_before=old, r_ifd_rewrite=new, **m))
    stats = SynthStats(kept=len(rows))
    log(f"[reflection] {len(rows)} pairs: {counts}")
    return ReflectionResult(rows, stats, counts)
