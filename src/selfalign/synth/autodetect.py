"""AutoDetect: find where a model is weak by growing a tree of knowledge points, and make data there.

Cheng et al. 2024, "AutoDetect: Towards a Unified Framework for Automated Weakness Detection in
Large Language Models" (arXiv 2406.16714). Three roles search for the student's weaknesses:

* the **Examiner** (``examiner``) writes a taxonomy of knowledge points for a task area and,
  where the student turns out weak, grows the tree there with narrower or harder sub-points;
* the **Questioner** (the examiner model here) writes questions for one knowledge point;
* the **Assessor** (``assessor``) scores each of the student's answers from 1 to 10 with a
  reason; a point whose mean score is at most ``weak_threshold`` is a weakness.

The search: the root points are examined; each weak point gets ``children`` sub-points, which are
examined next, down to ``depth`` levels. The result is the tree (every point with its mean score,
its questions and whether it is weak) and the weaknesses found; the data are the questions the
student failed (score <= ``weak_threshold``), each answered by the examiner as a reference, so a
weakness becomes training rows.

An assessor reply without a score in 1-10 is **unscored**: counted (``unscored``), left out of
the point's mean, never read as a low score. A point none of whose answers was scored is not
weak (nothing was measured).

Rows: the question as the prompt, the examiner's reference answer as the completion; ``meta``:
method ``autodetect``, the knowledge point and its path from the root, the student's score.

Deviations: the paper's Examiner, Questioner and Assessor are GPT-4 with more elaborate prompts
and a larger search; here they are model options (the embedded 135M by default, only good for
trying the machinery), the prompts are our wording, and the failed questions are answered by the
examiner to make training rows (the paper reports weaknesses and then builds data from them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from selfalign.judges.verdict import parse_score
from selfalign.models.base import StageModel
from selfalign.synth.tasks import SynthStats, row
from selfalign.types import GenParams, GenRequest, user

ROOT_TEMPLATE = "List {n} distinct knowledge points a model needs for this task area: {task}. One short point per line."
CHILD_TEMPLATE = ("A student is weak at this knowledge point: {point}.\nFor example it failed this question: {question}\n"
                  "List {n} narrower or harder sub-points of it to test next. One short point per line.")
QUESTION_TEMPLATE = ("Write {n} different questions that test this knowledge point: {point}. Each question must be "
                     "answerable in a few sentences. One question per line.")
ASSESS_TEMPLATE = ("Rate the answer to the question from 1 (wrong or useless) to 10 (correct and complete). Give one "
                   "sentence of reason, then \"Score: <1-10>\".\n\nQuestion: {question}\n\nAnswer: {answer}")


@dataclass
class AutoDetectConfig:
    model: str = "smollm2-135m"  # the student under examination
    examiner: str = ""  # writes points, questions and reference answers (default: the student)
    assessor: str = ""  # scores the student's answers (default: the examiner)
    task: str = "general knowledge about science, geography and history"
    root_points: int = 4
    children: int = 2
    depth: int = 2  # levels of the tree (1 = the root points only)
    questions_per_point: int = 2
    weak_threshold: float = 5.0
    temperature: float = 0.7
    max_tokens: int = 160
    answer_max_tokens: int = 96
    seed: int = 0
    out: str = "runs/autodetect"
    store: str = ""

    def __post_init__(self) -> None:
        for name in ("root_points", "children", "depth", "questions_per_point"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.weak_threshold <= 10:
            raise ValueError(f"weak_threshold must be in [1, 10], got {self.weak_threshold}")


@dataclass
class Node:
    id: int
    point: str
    parent: int | None
    depth: int
    questions: list[dict[str, Any]] = field(default_factory=list)  # question, answer, score (None: unscored)
    mean: float | None = None
    weak: bool = False


@dataclass
class AutoDetectResult:
    rows: list[dict[str, Any]]
    stats: SynthStats
    tree: list[dict[str, Any]]
    weaknesses: list[str]


def lines(text: str, n: int) -> list[str]:
    """Up to ``n`` non-empty lines, list markers removed.

    >>> lines("1. Fractions\\n- Prime numbers\\n\\n* Geometry", 2)
    ['Fractions', 'Prime numbers']
    """
    out = [re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", ln).strip() for ln in text.splitlines()]
    return [x for x in out if x][:n]


def run(cfg: AutoDetectConfig, student: StageModel, examiner: StageModel | None = None,
        assessor: StageModel | None = None, log: Any = print) -> AutoDetectResult:
    examiner = examiner or student
    assessor = assessor or examiner
    params = GenParams(cfg.temperature, 1.0, cfg.max_tokens)
    stats, nodes = SynthStats(), []
    root = examiner.generate([GenRequest(user(ROOT_TEMPLATE.format(n=cfg.root_points, task=cfg.task)), params,
                                         seed=cfg.seed)], description="examiner: root points")[0]
    frontier = [Node(k, p, None, 1) for k, p in enumerate(lines(root.texts[0], cfg.root_points))]
    while frontier:
        nodes += frontier
        qs = examiner.generate([GenRequest(user(QUESTION_TEMPLATE.format(n=cfg.questions_per_point, point=nd.point)),
                                           params, seed=cfg.seed + nd.id) for nd in frontier],
                               description="questioner")
        asked = [(nd, q) for nd, r in zip(frontier, qs) for q in lines(r.texts[0], cfg.questions_per_point)]
        answers = [r.texts[0] for r in student.generate(
            [GenRequest(user(q), GenParams(0.0, 1.0, cfg.answer_max_tokens), seed=cfg.seed) for _, q in asked],
            description="student answers")]
        verdicts = assessor.generate([GenRequest(user(ASSESS_TEMPLATE.format(question=q, answer=a)),
                                                 GenParams(0.0, 1.0, 96), seed=cfg.seed) for (_, q), a in zip(asked, answers)],
                                     description="assessor")
        for (nd, q), a, v in zip(asked, answers, verdicts):
            score = parse_score(v.texts[0], 1, 10)
            if score is None:
                stats.drop("unscored")
            nd.questions.append({"question": q, "answer": a, "score": score})
        grow = []
        for nd in frontier:
            scored = [x["score"] for x in nd.questions if x["score"] is not None]
            nd.mean = sum(scored) / len(scored) if scored else None
            nd.weak = nd.mean is not None and nd.mean <= cfg.weak_threshold
            if nd.weak and nd.depth < cfg.depth:
                grow.append(nd)
        frontier = []
        if grow:
            kids = examiner.generate(
                [GenRequest(user(CHILD_TEMPLATE.format(point=nd.point, n=cfg.children,
                                                       question=min((x for x in nd.questions if x["score"] is not None),
                                                                    key=lambda x: x["score"])["question"])),
                            params, seed=cfg.seed + nd.id) for nd in grow], description="examiner: sub-points")
            for nd, r in zip(grow, kids):
                for p in lines(r.texts[0], cfg.children):
                    frontier.append(Node(len(nodes) + len(frontier), p, nd.id, nd.depth + 1))
        log(f"[autodetect] level {nodes[-1].depth if nodes else 0}: {sum(n.weak for n in nodes)} weak points so far")
    failed = [(nd, x) for nd in nodes for x in nd.questions if x["score"] is not None and x["score"] <= cfg.weak_threshold]
    refs = examiner.generate([GenRequest(user(x["question"]), GenParams(0.0, 1.0, cfg.answer_max_tokens), seed=cfg.seed)
                              for _, x in failed], description="examiner: reference answers")
    by_id = {n.id: n for n in nodes}

    def path(nd: Node) -> list[str]:
        return (path(by_id[nd.parent]) if nd.parent is not None else []) + [nd.point]

    rows = []
    for (nd, x), r in zip(failed, refs):
        ref = r.texts[0].strip()
        if not ref:
            stats.drop("empty_reference")
            continue
        rows.append(row(x["question"], ref, "autodetect", point=nd.point, path=path(nd), student_score=x["score"]))
        stats.kept += 1
    tree = [{"id": n.id, "parent": n.parent, "depth": n.depth, "point": n.point, "mean_score": n.mean, "weak": n.weak,
             "questions": n.questions} for n in nodes]
    weaknesses = [" > ".join(path(n)) for n in nodes if n.weak]
    log(f"[autodetect] {len(nodes)} points, {len(weaknesses)} weak; {stats.kept} rows")
    return AutoDetectResult(rows, stats, tree, weaknesses)
