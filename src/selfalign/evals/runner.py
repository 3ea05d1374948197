"""A generic evaluation task runner and paired comparisons.

A **task** is items + a prompt builder + a judge + metrics (:class:`Task`). :func:`run_task`
answers every item through the store (so a re-run generates nothing), judges the answers,
aggregates each metric with a bootstrap interval over the **scored** items, and writes
``rows.jsonl`` and ``summary.json`` when given a directory. An unscored verdict (the judge's
answer did not parse) is counted, not folded into any metric; a task whose unscored share is
above ``max_unscored`` (20%) is marked unreliable, and a report shows it as such, not as a number.

:func:`compare` puts two results on the same items side by side: for a binary outcome, the
difference with a **paired** bootstrap interval and McNemar's exact test; for labels, the
transition counts (label under A -> label under B), of which Alignment for Honesty's 3 x 3
table is one.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from selfalign.evals.stats import bootstrap_ci, mcnemar, paired_bootstrap
from selfalign.judges.verdict import Verdict, tally
from selfalign.models.base import StageModel
from selfalign.types import GenParams, GenRequest, Prompt, prompt_to_json

#: a metric: the verdicts (and their items) of the scored items -> a number
Metric = Callable[[Sequence[Verdict], Sequence["Item"]], float]


@dataclass(frozen=True)
class Item:
    id: str
    input: Any  # what the prompt builder reads (a question, a dict of fields...)
    target: Any = None  # gold answer(s), a label, tests... whatever the judge reads
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Task(Protocol):
    name: str

    @property
    def params(self) -> GenParams: ...

    def items(self) -> list[Item]: ...

    def prompt(self, item: Item) -> Prompt: ...

    def judge(self, items: Sequence[Item], responses: Sequence[str]) -> list[Verdict]: ...

    def metrics(self) -> dict[str, Metric]: ...


def share(label: str) -> Metric:
    """The metric "share of scored verdicts with this label".

    >>> share("correct")([Verdict("correct"), Verdict("wrong")], [])
    0.5
    """
    def metric(verdicts: Sequence[Verdict], items: Sequence[Item]) -> float:
        return sum(v.label == label for v in verdicts) / len(verdicts) if verdicts else float("nan")

    return metric


@dataclass
class EvalResult:
    task: str
    model_id: str
    items: list[Item]
    responses: list[str]
    verdicts: list[Verdict]
    summary: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        return [{"id": it.id, "input": it.input, "target": it.target, "response": y, "verdict": v.to_dict(),
                 **({"meta": it.meta} if it.meta else {})}
                for it, y, v in zip(self.items, self.responses, self.verdicts)]

    def by_id(self) -> dict[str, Verdict]:
        return {it.id: v for it, v in zip(self.items, self.verdicts)}


def summarize(task_name: str, model_id: str, items: Sequence[Item], verdicts: Sequence[Verdict],
              metrics: dict[str, Metric], resamples: int = 1000, seed: int = 0, max_unscored: float = 0.2) -> dict[str, Any]:
    counts = tally(verdicts)
    scored = [i for i, v in enumerate(verdicts) if v.scored]
    out: dict[str, Any] = {"task": task_name, "model": model_id, "n": len(items), "judge": counts,
                           "reliable": counts["unscored_share"] <= max_unscored, "metrics": {}}
    for name, fn in metrics.items():
        vs, its = [verdicts[i] for i in scored], [items[i] for i in scored]
        value = fn(vs, its) if scored else float("nan")

        def stat(idx: list[int], fn: Metric = fn) -> float:
            return fn([vs[i] for i in idx], [its[i] for i in idx])

        lo, hi = bootstrap_ci(len(scored), stat, resamples, seed=seed) if scored and resamples else (value, value)
        out["metrics"][name] = {"value": value, "lo": lo, "hi": hi}
    return out


def run_task(task: Task, model: StageModel, out_dir: str | Path | None = None, seed: int = 0, resamples: int = 1000,
             max_unscored: float = 0.2, label: str = "") -> EvalResult:
    """``label`` tells two runs of one task on one model apart in the progress line (a method name)."""
    items = task.items()
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise ValueError(f"task {task.name}: item id {dup!r} appears more than once")
    reqs = [GenRequest(task.prompt(it), task.params, seed=seed) for it in items]
    responses = [r.texts[0] for r in model.generate(reqs, description=f"eval {task.name}{f' [{label}]' if label else ''}: {model.model_id}")]
    verdicts = task.judge(items, responses)
    if len(verdicts) != len(items):
        raise ValueError(f"task {task.name}: the judge returned {len(verdicts)} verdicts for {len(items)} items")
    summary = summarize(task.name, model.model_id, items, verdicts, task.metrics(), resamples, seed, max_unscored)
    result = EvalResult(task.name, model.model_id, items, responses, verdicts, summary)
    if out_dir is not None:
        from selfalign.store.runs import RunDir

        run = RunDir(out_dir)
        run.write_jsonl("rows.jsonl", [{**r, "prompt": prompt_to_json(task.prompt(it))}
                                       for r, it in zip(result.rows(), items)])
        run.write_json("summary.json", summary)
    return result


def compare(a: EvalResult, b: EvalResult, outcome: Callable[[Verdict], bool] | None = None,
            resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """B against A on the items both scored: transition counts of labels, and for ``outcome``
    (default: label == "correct") the paired difference and McNemar's test.

    >>> def res(labels):
    ...     items = [Item(str(i), "q") for i in range(len(labels))]
    ...     vs = [Verdict(x) if x else Verdict(None, parsed=False) for x in labels]
    ...     return EvalResult("t", "m", items, [""] * len(items), vs, {})
    >>> c = compare(res(["correct", "wrong", "wrong", None]), res(["correct", "correct", "wrong", "wrong"]), resamples=200)
    >>> c["n_paired"], c["unscored"], c["a"], c["b"], c["mcnemar"]["only_b"]
    (3, {'a': 1, 'b': 0}, 0.3333333333333333, 0.6666666666666666, 1)
    >>> c["transitions"]["wrong -> correct"]
    1
    """
    outcome = outcome or (lambda v: v.label == "correct")
    va, vb = a.by_id(), b.by_id()
    common = [i for i in va if i in vb]
    paired = [i for i in common if va[i].scored and vb[i].scored]
    xa = [bool(outcome(va[i])) for i in paired]
    xb = [bool(outcome(vb[i])) for i in paired]
    d = paired_bootstrap([float(x) for x in xa], [float(x) for x in xb], resamples=resamples, seed=seed)
    m = mcnemar(xa, xb)
    transitions = Counter(f"{va[i].label} -> {vb[i].label}" for i in paired)
    return {
        "a_model": a.model_id, "b_model": b.model_id, "task": a.task, "n_common": len(common), "n_paired": len(paired),
        "unscored": {"a": sum(not va[i].scored for i in common), "b": sum(not vb[i].scored for i in common)},
        "a": d.a, "b": d.b, "diff": d.diff, "diff_lo": d.lo, "diff_hi": d.hi,
        "mcnemar": {"only_a": m.only_a, "only_b": m.only_b, "p_value": m.p_value, "exact": m.exact},
        "transitions": dict(sorted(transitions.items())),
    }


def write_compare(out_dir: str | Path, comparison: dict[str, Any]) -> Path:
    path = Path(out_dir) / "compare.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(comparison, indent=2))
    return path
