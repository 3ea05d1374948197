"""LLM2LLM (Lee et al. 2024, "LLM2LLM: Boosting LLMs with Novel Iterative Data Enhancement",
arXiv 2403.15042).

Each iteration: (1) the student answers every question of the **original** training set;
(2) the answers are judged against the gold (string matching after TriviaQA normalisation, as
in the honesty stage); (3) for each wrong answer the teacher writes ``per_failure`` new
question-answer pairs similar to it; (4) with ``train: true`` the student is fine-tuned on the
original data plus everything generated so far, and becomes the next iteration's student.
As in the paper, only failures on original data seed new data: generated pairs are never
themselves augmented.

Deviation: the teacher prompt is our own wording; without ``train`` the student stays fixed, so
every iteration sees the same failures (useful to look at the teacher's output without paying
for training).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfalign.data.formats import QAItem, load_qa
from selfalign.judges.correctness import contains_answer
from selfalign.synth.tasks import row
from selfalign.train.sft import TrainConfig
from selfalign.types import GenParams, GenRequest, user

TEACHER_TEMPLATE = (
    "A student answered this question wrongly.\nQuestion: {question}\nCorrect answer: {answer}\n"
    "Student's answer: {student}\n\nWrite {k} new questions that test the same kind of knowledge, each with its "
    "correct answer, in this format:\nQuestion: ...\nAnswer: ...\n"
)


@dataclass
class LLM2LLMConfig:
    student: str = "smollm2-135m"
    teacher: str = "smollm2-135m"
    data: str = "bundled"
    data_format: str = "auto"
    n_train: int = 100
    iterations: int = 2
    per_failure: int = 2
    max_tokens: int = 48
    teacher_max_tokens: int = 200
    temperature: float = 0.7
    train: bool = False
    train_config: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    out: str = "runs/llm2llm"
    store: str = ""


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``Question: ...`` / ``Answer: ...`` pairs.

    >>> parse_pairs("Question: What is 2+2?\\nAnswer: 4\\nQuestion: Capital of Peru?\\nAnswer: Lima")
    [('What is 2+2?', '4'), ('Capital of Peru?', 'Lima')]
    """
    pat = r"Question:\s*(.+?)\s*\n\s*Answer:\s*(.+?)\s*(?=\n\s*Question:|\Z)"
    return [(q.strip(), a.strip().split("\n")[0]) for q, a in re.findall(pat, text, re.S) if q.strip() and a.strip()]


def qa_row(question: str, answer: str, **meta: Any) -> dict[str, Any]:
    return row(question, answer, "llm2llm", **meta)


def run(cfg: LLM2LLMConfig, student: Any, teacher: Any, log: Callable[[str], None] = print,
        load_student: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """``load_student(path)`` turns a fine-tuned model directory into the next (store-wrapped) student."""
    items: list[QAItem] = load_qa(cfg.data, cfg.data_format)
    items = [i for i in items if i.meta.get("split") in (None, "train")][: cfg.n_train]
    original = [qa_row(i.question, i.answers[0], source="original", id=i.id) for i in items]
    generated: list[dict[str, Any]] = []
    history = []
    # each iteration fine-tunes the *original* student on seed + all generated data, as in the paper
    base = getattr(getattr(student, "backend", student), "name", None)
    for it in range(cfg.iterations):
        answers = [r.texts[0] for r in student.generate(
            [GenRequest(user(i.question), GenParams(0.0, 1.0, cfg.max_tokens)) for i in items],
            description=f"llm2llm {it + 1}: student")]
        wrong = [(i, a) for i, a in zip(items, answers) if not contains_answer(a, i.answers)]
        reqs = [GenRequest(user(TEACHER_TEMPLATE.format(question=i.question, answer=i.answers[0], student=a,
                                                        k=cfg.per_failure)),
                           GenParams(cfg.temperature, 1.0, cfg.teacher_max_tokens), seed=cfg.seed + it)
                for i, a in wrong]
        new = []
        for (i, _), res in zip(wrong, teacher.generate(reqs, description=f"llm2llm {it + 1}: teacher")):
            pairs = parse_pairs(res.texts[0])[: cfg.per_failure]
            if not pairs:
                new.append(qa_row(i.question, res.texts[0], ok=False, reason="unparsable teacher output",
                                  source="generated", seed_id=i.id, iteration=it + 1))
            new += [qa_row(q, a, source="generated", seed_id=i.id, iteration=it + 1) for q, a in pairs]
        generated += new
        acc = 1 - len(wrong) / max(1, len(items))
        history.append({"iteration": it + 1, "student_accuracy": acc, "failures": len(wrong),
                        "new_pairs": sum(r["meta"]["ok"] for r in new)})
        log(f"[llm2llm] iteration {it + 1}: student accuracy {100 * acc:.1f}%, {len(wrong)} failures, "
            f"{history[-1]['new_pairs']} new pairs")
        if cfg.train and it < cfg.iterations - 1:
            from selfalign.train.sft import train_sft

            if load_student is None or base is None:
                raise ValueError("llm2llm with train: true needs an hf student and load_student")
            data = original + [r for r in generated if r["meta"]["ok"]]
            res = train_sft(data, base, Path(cfg.out) / f"student-{it + 1}", cfg.train_config)
            student = load_student(res.model_dir)
    return {"rows": original + generated, "generated": generated, "history": history}
