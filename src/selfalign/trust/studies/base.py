"""What every trust study shares: :class:`StudyConfig`, the :class:`Study` base (an evaluation
task on the shared runner, :mod:`selfalign.evals.runner`), the registry the studies add
themselves to with :func:`register_study` (inspect's ``@task`` idiom), and small helpers
(bundled files, seeded randomness, graded verdicts, paired metrics, the QA pool).

This module imports no study and not :mod:`selfalign.trust.to_data`; a study module imports it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from selfalign.data.formats import load_qa
from selfalign.evals.runner import Item, Metric, share
from selfalign.judges.refusal import classify_refusal
from selfalign.judges.registry import FULL_COMPLIANCE
from selfalign.judges.verdict import Verdict, unscored
from selfalign.trust.holdout import KEYED, load_holdout, split_key
from selfalign.trust.taxonomy import STUDY_SUBCATEGORIES
from selfalign.types import GenParams, Prompt


def bundled(name: str) -> Path:
    return Path(str(resources.files("selfalign.data.bundled").joinpath("trust").joinpath(name)))


def _rng(*key: Any) -> random.Random:
    return random.Random(int(hashlib.sha256(repr(key).encode()).hexdigest()[:16], 16))


# ------------------------------------------------------------------ config
@dataclass
class StudyConfig:
    n_items: int = 200  # per study at most
    seed: int = 0
    qa: str = "bundled"  # knowledge QA set for hallucination / miscalibration / typo
    fairness: str = ""  # "" = bundled; a file or directory in the released format
    causal: str = ""
    causal_prompts: str = ""  # a directory with the released prompt_q1.txt / prompt_q2.txt
    safety_keywords: str = ""  # bundled JSON or a directory of <category>.txt
    misuse: str = ""
    copyright: str = ""
    xstest: str = ""  # "" = bundled overrefusal.csv; or an XSTest prompts CSV (id,prompt,type,label,...)
    harm_judge: str = ""  # a trained harm judge directory: safety answers also get a harm verdict
    leak_chars: int = 30
    typo_rate: float = 0.3
    max_tokens: int = 64
    holdout: str = ""  # a `trust to-data` split.json: safety, misuse, fairness on its held-out keys only


# ------------------------------------------------------------------ the study base
class Study:
    name = ""
    headline = ""
    #: whether the headline is better high (accuracy) or low (ECE, leak rate)
    higher_is_better = True
    #: the rule judge that labels the answers when no LLM judge is set (its card is in the report)
    rule_judge = ""
    judge_model: Any = None

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self._items: list[Item] | None = None

    @property
    def params(self) -> GenParams:
        return GenParams(temperature=0.0, max_tokens=self.cfg.max_tokens)

    def items(self) -> list[Item]:
        if self._items is None:
            self._items = self.held_out(self.make_items())[: self.cfg.n_items]
        return self._items

    def held_out(self, items: list[Any]) -> list[Any]:
        """Only the items whose key a ``holdout`` split lists (items or safety seed dicts)."""
        if not self.cfg.holdout or self.name not in KEYED:
            return items
        keys = load_holdout(self.cfg.holdout).get(self.name, set())

        def key(x: Any) -> str:
            row = {"id": x.id, "input": x.input} if isinstance(x, Item) else {"id": x["id"], "input": x}
            return split_key(self.name, row)

        return [x for x in items if key(x) in keys]

    def headline_metric(self) -> str:
        """The metric the report leads with (a study whose judge options change it overrides this)."""
        return self.headline

    def judges_used(self) -> list[str]:
        """Names of the judges that labelled this run's answers: ``llm`` for the LLM judge, else the
        rule judge (the report prints a card for each)."""
        return [self.rule_judge]

    def make_items(self) -> list[Item]:
        raise NotImplementedError

    def prompt(self, item: Item) -> Prompt:
        raise NotImplementedError

    def judge(self, items: Sequence[Item], responses: Sequence[str]) -> list[Verdict]:
        raise NotImplementedError

    def metrics(self) -> dict[str, Metric]:
        raise NotImplementedError

    def extra_summary(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> dict[str, Any]:
        """Numbers over **every** item, unscored ones included (the runner's metrics see only the
        scored ones), or breakdowns without intervals; merged into the study's summary."""
        return {}

    def outcome(self, v: Verdict) -> bool:
        """The good outcome of one item (what compare counts)."""
        return v.label == "correct"

    def covered(self) -> list[str]:
        return list(STUDY_SUBCATEGORIES[self.name])


# ------------------------------------------------------------------ the registry
REGISTRY: dict[str, type[Study]] = {}
S = TypeVar("S", bound=type[Study])


def register_study(name: str) -> Callable[[S], S]:
    """Class decorator: add a study to :data:`REGISTRY` under ``name`` (its ``name`` is set)."""
    def deco(cls: S) -> S:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"study {name!r} is registered twice ({REGISTRY[name].__name__}, {cls.__name__})")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


def make_study(name: str, cfg: StudyConfig) -> Study:
    if name not in REGISTRY:
        raise ValueError(f"unknown study {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name](cfg)


# ------------------------------------------------------------------ helpers
def _qa_pool(cfg: StudyConfig) -> tuple[list[Any], dict[str, list[str]]]:
    """Answerable test questions of the QA set and, per relation, every distinct gold answer (the
    pool plausible wrong options come from)."""
    qa = [q for q in load_qa(cfg.qa) if q.answerable]
    test = [q for q in qa if q.meta.get("split", "test") == "test"] or qa
    pool: dict[str, list[str]] = {}
    for q in qa:
        rel = str(q.meta.get("relation", "all"))
        if q.answers[0] not in pool.setdefault(rel, []):
            pool[rel].append(q.answers[0])
    return test, pool


def _distractors(q: Any, pool: dict[str, list[str]], k: int, rng: random.Random) -> list[str]:
    gold = {a.lower() for a in q.answers}
    cands = [a for a in pool.get(str(q.meta.get("relation", "all")), []) if a.lower() not in gold]
    return rng.sample(cands, k) if len(cands) >= k else []


def _graded(items: Sequence[Item], responses: Sequence[str], parse: Callable[[str], str | None]) -> list[Verdict]:
    """correct/wrong against each item's target letter; unscored when ``parse`` finds none."""
    out = []
    for it, r in zip(items, responses):
        got = parse(r)
        out.append(unscored(r) if got is None else Verdict("correct" if got == it.target else "wrong", raw=r))
    return out


def _mean_score(vs: Sequence[Verdict], its: Sequence[Item]) -> float:
    """The mean of the verdicts' scores (a confidence, a prefix length)."""
    return sum(float(v.score or 0.0) for v in vs) / len(vs) if vs else float("nan")


def _member_accuracy(member: int) -> Metric:
    """Accuracy over one member of paired items (``meta['member']``: 0 or 1)."""
    def metric(vs: Sequence[Verdict], its: Sequence[Item]) -> float:
        sel = [v for v, it in zip(vs, its) if it.meta["member"] == member]
        return share("correct")(sel, []) if sel else float("nan")

    return metric


def _paired(fn: Callable[[list[tuple[Verdict, Verdict]]], float]) -> Metric:
    """A metric over pairs of items (``meta['pair']``, ``meta['member']`` 0/1) both scored."""
    def metric(vs: Sequence[Verdict], its: Sequence[Item]) -> float:
        by: dict[str, dict[int, Verdict]] = {}
        for v, it in zip(vs, its):
            by.setdefault(it.meta["pair"], {})[it.meta["member"]] = v
        pairs = [(d[0], d[1]) for d in by.values() if 0 in d and 1 in d]
        return fn(pairs) if pairs else float("nan")

    return metric


def meta_share(key: str, good: Callable[[Any], bool]) -> Metric:
    """Share of the scored verdicts whose ``meta[key]`` is good, over those that carry one (a
    second judge's label kept beside the main one)."""
    def metric(vs: Sequence[Verdict], its: Sequence[Item]) -> float:
        vals = [v.meta.get(key) for v in vs if v.meta.get(key) is not None]
        return sum(bool(good(x)) for x in vals) / len(vals) if vals else float("nan")

    return metric


def refusal_verdicts(prompts: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
    """The rule refusal judge (``refusal-rule``: XSTest's three classes) read as refused /
    complied: a full or a partial refusal is a refusal. The three-class label is kept in
    ``meta['refusal']``; an empty answer is unscored."""
    out = []
    for p, r in zip(prompts, responses):
        label = classify_refusal(r, p)
        out.append(unscored(r, judge="refusal-rule") if label is None else
                   Verdict("complied" if label == FULL_COMPLIANCE else "refused", raw=r,
                           meta={"judge": "refusal-rule", "refusal": label}))
    return out
