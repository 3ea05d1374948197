"""LLMs-as-Instructors: the teacher analyses each of the student's errors, then writes data aimed at it.

Ying et al. 2024, "LLMs-as-Instructors: Learning from Errors Toward Automating Model Improvement"
(arXiv 2407.00497). LLM2LLM (:mod:`selfalign.synth.llm2llm`) hands the teacher a failure and asks
for similar questions at once. Here the instructor first **analyses** the error (what knowledge or
reasoning the student's answer shows it lacks) and only then **synthesises** training pairs aimed at
that analysis. The paper's two strategies:

* ``error`` (Learning from Errors): the analysis sees the question, the gold answer and the
  student's wrong answer;
* ``contrast`` (Learning from Errors by Contrast): it also sees a *similar* question the student
  answered right (here: one of the same ``relation`` when the data has one, else the most similar
  by ROUGE-L), so the analysis can say what differs.

Steps, on the QA set's train split (``data``, ``n_train`` questions): the student answers greedily;
answers are judged against the gold (TriviaQA-normalised string matching, as elsewhere); for each
wrong one the teacher writes an analysis (``no_analysis`` when empty), then ``per_failure`` new
question-answer pairs from it (``unparsed`` when none parse); a generated question that is the
failed one again (the same words, case and punctuation aside) is dropped (``copies_failure``: the
point is new data on the weakness, not the same item; short factual questions share most words, so
no similarity threshold).

Rows: ``meta.method`` ``llms-as-instructors``, the strategy, the failed item's id, the analysis.

Deviations: the paper's instructor is GPT-4 over benchmark errors and it retrains the student and
iterates; here one round with the student fixed (``synth llm2llm`` has the retraining loop; a
recipe trains on these rows), the prompts are our wording, and the contrast case is picked by
relation or ROUGE-L rather than by embedding similarity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from selfalign.data.formats import QAItem, load_qa
from selfalign.judges.correctness import contains_answer
from selfalign.models.base import StageModel
from selfalign.synth.llm2llm import parse_pairs
from selfalign.synth.rouge import rouge_l
from selfalign.synth.tasks import SynthStats, row
from selfalign.types import GenParams, GenRequest, user

ANALYSIS_TEMPLATE = (
    "A student answered a question wrongly.\nQuestion: {question}\nCorrect answer: {answer}\n"
    "Student's answer: {student}\n{contrast}\nIn two sentences, explain what knowledge or reasoning the student is "
    "missing.")
CONTRAST_TEMPLATE = "For comparison, the student answered this similar question correctly:\nQuestion: {question}\nAnswer: {answer}\n"
SYNTHESIS_TEMPLATE = (
    "Analysis of a student's mistake:\n{analysis}\n\nWrite {k} new questions, each with its correct answer, that "
    "teach exactly what the analysis says is missing. Use this format:\nQuestion: ...\nAnswer: ...\n")


@dataclass
class InstructorsConfig:
    student: str = "smollm2-135m"
    teacher: str = ""  # the instructor (default: the student)
    data: str = "bundled"  # a QA set; its train split is used
    data_format: str = "auto"
    n_train: int = 60
    strategy: str = "error"  # error | contrast
    per_failure: int = 2
    max_tokens: int = 48  # the student's answers
    teacher_max_tokens: int = 200
    temperature: float = 0.7
    seed: int = 0
    out: str = "runs/llms-as-instructors"
    store: str = ""

    def __post_init__(self) -> None:
        if self.strategy not in ("error", "contrast"):
            raise ValueError(f"strategy must be error or contrast, got {self.strategy!r}")
        if self.n_train < 1 or self.per_failure < 1:
            raise ValueError(f"n_train and per_failure must be >= 1, got {self.n_train}, {self.per_failure}")


@dataclass
class InstructorsResult:
    rows: list[dict[str, Any]]
    stats: SynthStats
    failures: int
    student_accuracy: float


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def contrast_case(item: QAItem, right: list[QAItem]) -> QAItem | None:
    """A question the student answered right that is like ``item``: the same relation, else the
    highest ROUGE-L."""
    same = [r for r in right if item.meta.get("relation") and r.meta.get("relation") == item.meta.get("relation")]
    if same:
        return same[0]
    return max(right, key=lambda r: rouge_l(item.question, r.question), default=None)


def run(cfg: InstructorsConfig, student: StageModel, teacher: StageModel | None = None, log: Any = print
        ) -> InstructorsResult:
    teacher = teacher or student
    items = [i for i in load_qa(cfg.data, cfg.data_format) if i.meta.get("split") in (None, "train") and i.answerable]
    items = items[:cfg.n_train]
    answers = [r.texts[0] for r in student.generate(
        [GenRequest(user(i.question), GenParams(0.0, 1.0, cfg.max_tokens)) for i in items], description="student answers")]
    wrong = [(i, a) for i, a in zip(items, answers) if not contains_answer(a, i.answers)]
    right = [i for i, a in zip(items, answers) if contains_answer(a, i.answers)]

    def contrast(i: QAItem) -> str:
        c = contrast_case(i, right) if cfg.strategy == "contrast" else None
        return CONTRAST_TEMPLATE.format(question=c.question, answer=c.answers[0]) if c else ""

    params = GenParams(cfg.temperature, 1.0, cfg.teacher_max_tokens)
    analyses = [r.texts[0].strip() for r in teacher.generate(
        [GenRequest(user(ANALYSIS_TEMPLATE.format(question=i.question, answer=i.answers[0], student=a,
                                                  contrast=contrast(i))), params, seed=cfg.seed)
         for i, a in wrong], description="error analyses")]
    stats, todo = SynthStats(), []
    for (i, _), analysis in zip(wrong, analyses):
        if analysis:
            todo.append((i, analysis))
        else:
            stats.drop("no_analysis")
    made = teacher.generate([GenRequest(user(SYNTHESIS_TEMPLATE.format(analysis=an, k=cfg.per_failure)), params,
                                        seed=cfg.seed + 1) for _, an in todo], description="targeted pairs")
    rows = []
    for (i, analysis), r in zip(todo, made):
        pairs = parse_pairs(r.texts[0])[:cfg.per_failure]
        if not pairs:
            stats.drop("unparsed")
            continue
        for q, a in pairs:
            if _norm(q) == _norm(i.question):
                stats.drop("copies_failure")
                continue
            rows.append(row(q, a, "llms-as-instructors", strategy=cfg.strategy, seed_id=i.id, analysis=analysis[:500]))
            stats.kept += 1
    acc = len(right) / max(1, len(items))
    log(f"[instructors] student {100 * acc:.1f}% right on {len(items)}; {len(wrong)} failures -> {stats.kept} pairs; "
        f"filtered {dict(stats.filtered)}")
    return InstructorsResult(rows, stats, len(wrong), acc)
