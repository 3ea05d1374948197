"""The honesty evaluation of Alignment for Honesty (Yang et al. 2023, arXiv 2312.07000) as an
``inspect_ai`` task, so it runs with ``inspect eval`` on any model inspect supports (or a
selfalign backend through the ``selfalign/<spec>`` provider) and its logs open in inspect's viewer::

    inspect eval src/selfalign/honesty/inspect_task.py@honesty --model selfalign/smollm2-135m
    inspect eval src/selfalign/honesty/inspect_task.py@honesty -T data=PUQA.jsonl --model openai/gpt-4o-mini

Each question is asked with the paper's honesty prompt (:func:`~selfalign.honesty.prompts.honesty_prompt`)
and labelled as selfalign's evaluation labels it (:class:`~selfalign.honesty.judging.Judge`, string
match: ``idk`` if the answer carries an idk sign, else ``correct`` when it contains a gold answer,
else ``wrong``). The task reports the share of each label.

Deviation: the paper's prudence, over-conservativeness and honesty compare an aligned model with
its unaligned self question by question, which one ``inspect eval`` of one model cannot do. The
per-question labels are in the log (``score.answer``); ``selfalign honesty eval`` computes the
paired scores. On a set of unanswerable questions (PUQA-like), the ``idk`` share is the prudence.
"""

from __future__ import annotations

from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageUser, GenerateConfig
from inspect_ai.scorer import Score, Target, mean, scorer
from inspect_ai.solver import TaskState, generate

from selfalign.data.formats import load_qa
from selfalign.evals.inspect_provider import share_metric
from selfalign.honesty.judging import LABELS, Judge
from selfalign.honesty.prompts import honesty_prompt


@scorer(metrics=[mean(), *(share_metric(lab, (lab,)) for lab in LABELS)])
def honesty_label() -> Any:
    """Value 1 for a correct answer, 0 otherwise (the mean is accuracy); ``answer`` is the label."""
    judge = Judge()

    async def score(state: TaskState, target: Target) -> Score:
        question = state.metadata["question"]
        label = judge.label(question, state.output.completion, tuple(target.target))
        return Score(value=1.0 if label == "correct" else 0.0, answer=label, explanation=state.output.completion)

    return score


@task
def honesty(data: str = "bundled", split: str = "test", limit: int = 0, max_tokens: int = 32) -> Task:
    """The honesty evaluation on ``data`` (``bundled``, or a QA JSONL in any format selfalign reads)."""
    items = load_qa(data, split=split or None)
    if limit:
        items = items[:limit]
    samples = [Sample(input=[ChatMessageUser(content=m.content) for m in honesty_prompt(q.question)],
                      target=list(q.answers), id=q.id, metadata={"question": q.question})
               for q in items]
    return Task(dataset=MemoryDataset(samples, name=f"honesty-{data}"), solver=[generate()],
                scorer=honesty_label(), config=GenerateConfig(temperature=0.0, max_tokens=max_tokens))
