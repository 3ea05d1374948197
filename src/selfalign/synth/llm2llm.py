"""LLM2LLM (Lee et al. 2024, "LLM2LLM: Boosting LLMs with Novel Iterative Data Enhancement",
arXiv 2403.15042).

The paper's loop (``train: true``, the default), with D0 the original (seed) training data:

1. fine-tune the base student on D0 -> M1;
2. iteration t: M_t answers every question of **D0**; answers are judged against the gold
   (string matching after TriviaQA normalisation, as in the honesty stage);
3. for each wrong answer the teacher writes ``per_failure`` new question-answer pairs like it;
4. fine-tune **from the base** on D0 + everything generated so far -> M_{t+1}; repeat.

As in the paper, only failures on original data seed new data: generated pairs are never
themselves augmented. The last model (trained on D0 + all generated pairs) is the result.

**Test split** (the paper reports accuracy on each dataset's test split, not on D0): with
``n_test`` > 0 every student (M1 ... M_{T+1}) also answers up to ``n_test`` questions of the data's
test split (``split: test`` items; for the bundled set, entities never in training), greedily and
judged the same way (data without a test split: said in the log, and no test result); the result states the last student's test accuracy against M1's (trained on
D0 alone, the paper's baseline) with a paired bootstrap interval. Training-set accuracy stays in
the history as what drives the loop, never as the result.

Deviations: the teacher prompt is our own wording; ``train: false`` is an option of ours that
keeps the student fixed (every iteration then sees the same failures: useful to look at the
teacher's output without paying for training; the paper always trains).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfalign.data.formats import QAItem, load_qa
from selfalign.judges.correctness import contains_answer
from selfalign.models.base import StageModel
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
    n_test: int = 100  # test-split questions every student answers (0 = none): the paper's measure
    iterations: int = 2
    per_failure: int = 2
    max_tokens: int = 48
    teacher_max_tokens: int = 200
    temperature: float = 0.7
    train: bool = True  # the paper's loop; false keeps the student fixed (our inspection option)
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


def check(cfg: LLM2LLMConfig, student: StageModel) -> None:
    """Options and inputs, before any model call."""
    if cfg.train and not student.can_train:
        raise ValueError(f"llm2llm with train: true fine-tunes the student, and '{student.model_id}' cannot be "
                         "fine-tuned here (it needs an hf model: a hub id or a local path); or set train: false")
    if cfg.n_test < 0:
        raise ValueError(f"n_test must be >= 0, got {cfg.n_test}")
    if cfg.iterations < 1 or cfg.per_failure < 1:
        raise ValueError(f"iterations and per_failure must be >= 1, got {cfg.iterations} and {cfg.per_failure}")


def _train(cfg: LLM2LLMConfig, base: StageModel, rows: list[dict[str, Any]], name: str,
           log: Callable[[str], None]) -> StageModel:
    """Fine-tune the *base* student on ``rows``; the trained model, through the same store."""
    from selfalign.train.sft import train_sft

    assert base.train_path is not None
    res = train_sft(rows, base.train_path, Path(cfg.out) / name, cfg.train_config, base_id=base.model_id)
    log(f"[llm2llm] {name}: {len(rows)} rows, {'reused' if res.skipped else f'trained in {res.seconds:.0f}s'}")
    return base.sibling(res.model_dir)


@dataclass
class LLM2LLMResult:
    """Original + generated rows, the generated ones, per-iteration history, and the last student when trained."""
    rows: list[dict[str, Any]]
    generated: list[dict[str, Any]]
    history: list[dict[str, Any]]
    model: str | None = None
    model_dir: str | None = None
    test: dict[str, Any] | None = None  # the last student against M1 on the test split (n_test > 0)


def _correct(model: StageModel, items: list[QAItem], max_tokens: int, what: str) -> list[float]:
    answers = [r.texts[0] for r in model.generate(
        [GenRequest(user(i.question), GenParams(0.0, 1.0, max_tokens)) for i in items], description=what)]
    return [float(contains_answer(a, i.answers)) for a, i in zip(answers, items)]


def run(cfg: LLM2LLMConfig, student: StageModel, teacher: StageModel,
        log: Callable[[str], None] = print) -> LLM2LLMResult:
    check(cfg, student)
    every: list[QAItem] = load_qa(cfg.data, cfg.data_format)
    items = [i for i in every if i.meta.get("split") in (None, "train")][: cfg.n_train]
    test_items = [i for i in every if i.meta.get("split") == "test"][: cfg.n_test]
    test_correct: list[list[float]] = []
    if cfg.n_test and not test_items:
        log(f"[llm2llm] {cfg.data} has no test split (items with split: test): only D0 accuracy is reported, "
            "which is not the paper's measure")
    original = [qa_row(i.question, i.answers[0], source="original", id=i.id) for i in items]
    generated: list[dict[str, Any]] = []
    history = []
    base = student
    current = _train(cfg, base, original, "student-1", log) if cfg.train else student
    for it in range(cfg.iterations):
        answers = [r.texts[0] for r in current.generate(
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
                        "new_pairs": sum(r["meta"]["ok"] for r in new), "unparsable": sum(not r["meta"]["ok"] for r in new),
                        "student": current.model_id})
        if test_items:
            test_correct.append(_correct(current, test_items, cfg.max_tokens, f"llm2llm {it + 1}: student, test split"))
            history[-1]["test_accuracy"] = sum(test_correct[-1]) / len(test_items)
        log(f"[llm2llm] iteration {it + 1}: student accuracy on D0 {100 * acc:.1f}%, {len(wrong)} failures, "
            f"{history[-1]['new_pairs']} new pairs ({history[-1]['unparsable']} unparsable teacher outputs)")
        if cfg.train:  # retrain from the base on D0 + all generated data
            current = _train(cfg, base, original + [r for r in generated if r["meta"]["ok"]], f"student-{it + 2}", log)
    out = LLM2LLMResult(rows=original + generated, generated=generated, history=history)
    if cfg.train:
        out.model = current.model_id
        out.model_dir = str(Path(cfg.out) / f"student-{cfg.iterations + 1}" / "model")
    if test_items:
        from selfalign.evals.stats import paired_bootstrap

        last = (_correct(current, test_items, cfg.max_tokens, "llm2llm: last student, test split") if cfg.train
                else test_correct[-1])
        d = paired_bootstrap(test_correct[0], last, seed=cfg.seed)
        out.test = {"n": len(test_items), "first_student": d.a, "last_student": d.b,
                    "diff": {"value": d.diff, "lo": d.lo, "hi": d.hi}}
        log(f"[llm2llm] test split ({len(test_items)} questions): M1 {100 * d.a:.1f}% -> last student "
            f"{100 * d.b:.1f}% ({100 * d.diff:+.1f} [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}])")
    return out
