"""Alignment for Honesty, end to end (Yang et al. 2023, "Alignment for Honesty", arXiv 2312.07000).

Steps, each resumable, each writing into the run directory:

1. ``sample``: k(x) on the training questions (greedy + M samples of the unaligned model) and
   the unaligned greedy answers on the test questions -> ``knowledge/{train,test}.jsonl``
2. ``build``: the training set of each method -> ``datasets/<method>.jsonl``
3. ``train``: SFT of each trained method -> ``models/<method>/model``
4. ``eval``: greedy answers of every method on the test questions (and PUQA / PKQA if given),
   the 9-cell transition table against the unaligned model, the paper's scores with bootstrap
   intervals -> ``eval/<method>.jsonl``, ``eval/summary.json``
5. ``report``: ``report.html`` (tables, a bar chart, examples of each cell) and ``report.json``

Every generation goes through the store, so a killed run, re-run, repeats no generation; a
trained model is skipped when its inputs are unchanged.

Deviations from the paper: answers are matched as whole words (see
:mod:`selfalign.judges.correctness`); the default data is this project's bundled
knowledge-boundary set rather than TriviaQA (TriviaQA loads through ``data_format: triviaqa``);
training is LoRA by default on a CPU (the paper fine-tunes all weights); ``configs/full.yaml``
caps MULTISAMPLE at the other methods' optimizer steps (``train_per_method``) to fit a CPU budget,
so it sees about a fifth of its M x N rows once, where the paper trains on all of them.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfalign.config import config_to_dict
from selfalign.data.formats import QAItem, load_qa
from selfalign.data.io import DataError, read_jsonl
from selfalign.honesty import datasets as hds
from selfalign.honesty import metrics
from selfalign.honesty.judging import Judge
from selfalign.honesty.knowing import KnowledgeRecord, estimate_knowledge
from selfalign.honesty.prompts import honesty_prompt
from selfalign.judges.idk import IDK_SIGNS
from selfalign.store.cache import CachedModel, Store
from selfalign.store.runs import RunDir
from selfalign.train.sft import TrainConfig, train_sft
from selfalign.types import GenParams, GenRequest

STEPS = ("sample", "build", "train", "eval", "report")


@dataclass
class HonestyConfig:
    model: str = "smollm2-135m"
    data: str = "bundled"
    data_format: str = "auto"
    test_data: str = ""  # a separate test file; default: the data's 'test' split, or a test_fraction of it
    test_fraction: float = 0.3
    n_train: int = 0  # 0 = every training question
    n_test: int = 0
    samples: int = 10  # M
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 32  # k(x) samples
    eval_max_tokens: int = 80  # evaluation answers: room for a CONFIDENCE prefix (~30 tokens) and the answer
    tau: float = 0.1
    balance: bool = True
    methods: list[str] = field(default_factory=lambda: list(hds.METHODS))
    judge: str = ""  # "" = string matching; a model spec = LLM judge
    idk_signs: list[str] = field(default_factory=lambda: list(IDK_SIGNS))
    train: TrainConfig = field(default_factory=TrainConfig)
    # per-method changes to `train`, e.g. {multisample: {epochs: 1}} (MULTISAMPLE has M rows a question)
    train_per_method: dict[str, dict] = field(default_factory=dict)
    puqa: str = ""
    pkqa: str = ""
    bootstrap: int = 1000
    seed: int = 0
    out: str = "runs/honesty"
    store: str = ""
    batch_size: int = 64

    def __post_init__(self) -> None:
        bad = [m for m in [*self.methods, *self.train_per_method] if m not in hds.METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; known: {', '.join(hds.METHODS)}")
        if not 0 <= self.tau <= 1:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")


def _split_by_hash(items: list[QAItem], fraction: float) -> tuple[list[QAItem], list[QAItem]]:
    def is_test(it: QAItem) -> bool:
        return int(hashlib.sha256(it.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction

    return [i for i in items if not is_test(i)], [i for i in items if is_test(i)]


def load_splits(cfg: HonestyConfig) -> tuple[list[QAItem], list[QAItem]]:
    items = load_qa(cfg.data, cfg.data_format)
    if cfg.test_data:
        train, test = items, load_qa(cfg.test_data, "auto")
    elif any("split" in it.meta for it in items):
        train = [i for i in items if i.meta.get("split") == "train"]
        test = [i for i in items if i.meta.get("split") == "test"]
    else:
        train, test = _split_by_hash(items, cfg.test_fraction)
    # a seeded shuffle, then the first n: a larger n_train keeps every question of a smaller one,
    # so growing a run reuses the samples already in the store
    train, test = list(train), list(test)
    random.Random(cfg.seed).shuffle(train)
    random.Random(cfg.seed + 1).shuffle(test)
    if cfg.n_train:
        train = train[: cfg.n_train]
    if cfg.n_test:
        test = test[: cfg.n_test]
    if not train or not test:
        raise DataError(f"{cfg.data}: need training and test questions, got {len(train)} and {len(test)}")
    return train, test


class HonestyRun:
    """One run directory; each step method can be called on its own, in order, or via ``run()``."""

    def __init__(self, cfg: HonestyConfig, progress: bool = True, log: Callable[[str], None] = print,
                 base_model: Any = None):
        self.cfg = cfg
        self.dir = RunDir(cfg.out)
        self.progress = progress
        self.log = log
        self.store = Store(cfg.store or None)
        self._base = base_model  # a loaded unaligned model (tests pass a scripted or tiny one)
        self._judge: Judge | None = None

    # ------------------------------------------------------------------ models
    def base(self) -> CachedModel:
        if self._base is None:
            from selfalign.models.registry import load_model

            self._base = load_model(self.cfg.model, batch_size=self.cfg.batch_size)
        if not isinstance(self._base, CachedModel):
            self._base = CachedModel(self._base, self.store, progress=self.progress)
        return self._base

    def judge(self) -> Judge:
        if self._judge is None:
            llm = None
            if self.cfg.judge:
                from selfalign.models.registry import load_model

                llm = CachedModel(load_model(self.cfg.judge), self.store, progress=self.progress)
            self._judge = Judge(self.cfg.idk_signs, llm)
        return self._judge

    def base_path(self) -> str:
        """What the trainer loads: a local directory or a hub id."""
        from selfalign.models.registry import trainable_path

        path = trainable_path(self.cfg.model)
        if path is None:
            raise DataError(f"model '{self.cfg.model}' cannot be fine-tuned here: training needs an hf model "
                            "(a hub id or a path)")
        return path

    # ------------------------------------------------------------------- steps
    def sample(self) -> dict[str, list[KnowledgeRecord]]:
        cfg = self.cfg
        train, test = load_splits(cfg)
        self.log(f"[sample] k(x) on {len(train)} training questions (greedy + {cfg.samples} samples), "
                 f"unaligned greedy on {len(test)} test questions")
        t0 = time.time()
        recs_train = estimate_knowledge(self.base(), train, self.judge(), cfg.samples, cfg.temperature, cfg.top_p,
                                        cfg.max_tokens, cfg.seed)
        recs_test = estimate_knowledge(self.base(), test, self.judge(), 0, cfg.temperature, cfg.top_p,
                                       cfg.eval_max_tokens, cfg.seed)
        self.dir.write_jsonl("knowledge/train.jsonl", [r.to_dict() for r in recs_train])
        self.dir.write_jsonl("knowledge/test.jsonl", [r.to_dict() for r in recs_test])
        known = sum(r.greedy_label == "correct" for r in recs_train) / len(recs_train)
        ea = sum(r.expected_accuracy for r in recs_train) / len(recs_train)
        self.log(f"[sample] done in {time.time() - t0:.0f}s: greedy accuracy {100 * known:.1f}%, "
                 f"mean expected accuracy {100 * ea:.1f}% (train)")
        return {"train": recs_train, "test": recs_test}

    def _records(self, split: str) -> list[KnowledgeRecord]:
        path = self.dir.path / "knowledge" / f"{split}.jsonl"
        if not path.exists():
            return self.sample()[split]
        return [KnowledgeRecord.from_dict(r) for r in read_jsonl(path)]

    def build(self) -> dict[str, list[dict[str, Any]]]:
        recs = self._records("train")
        if self.cfg.balance:
            balanced = hds.balance_records(recs, self.cfg.seed)
            if balanced:
                recs = balanced
            else:
                self.log("[build] balance skipped: the unaligned model's greedy answers are all correct or all not")
        out = {}
        for m in self.cfg.methods:
            if m == "prompt":
                continue
            rows = hds.build(m, recs, self.cfg.tau)
            self.dir.write_jsonl(f"datasets/{m}.jsonl", rows)
            idk = sum(r["completion"][0]["content"] == hds.IDK_RESPONSE for r in rows)
            self.log(f"[build] {m}: {len(rows)} rows, {idk} idk ({100 * idk / max(1, len(rows)):.0f}%)")
            out[m] = rows
        return out

    def _dataset(self, method: str) -> list[dict[str, Any]]:
        path = self.dir.path / "datasets" / f"{method}.jsonl"
        if not path.exists():
            return self.build()[method]
        return read_jsonl(path, required=("prompt", "completion"))

    def train(self) -> dict[str, Path]:
        out = {}
        base = self.base_path()
        for m in self.cfg.methods:
            if m == "prompt":
                continue
            rows = self._dataset(m)
            self.log(f"[train] {m}: {len(rows)} rows")
            res = train_sft(rows, base, self.dir.path / "models" / m, self.train_config(m), base_id=self.base().model_id)
            last = f"{res.losses[-1]:.3f}" if res.losses else "n/a"
            self.log(f"[train] {m}: {'unchanged, skipped' if res.skipped else f'{res.seconds:.0f}s'}, last loss {last}")
            out[m] = res.model_dir
        return out

    def train_config(self, method: str) -> TrainConfig:
        extra = self.cfg.train_per_method.get(method)
        if not extra:
            return self.cfg.train
        from selfalign.config import load_config

        return load_config(TrainConfig, {**config_to_dict(self.cfg.train), **extra}, f"train_per_method.{method}")

    def _model_for(self, method: str) -> CachedModel:
        if method in ("prompt", "unaligned"):
            return self.base()
        path = self.dir.path / "models" / method / "model"
        if not (path / "config.json").exists():
            self.train()
        from selfalign.models.hf import HFModel

        return CachedModel(HFModel(str(path), batch_size=self.cfg.batch_size), self.store, progress=self.progress)

    def _answer(self, model: CachedModel, questions: list[str], method: str) -> list[str]:
        params = GenParams(0.0, 1.0, self.cfg.eval_max_tokens)
        if method == "unaligned":
            from selfalign.honesty.prompts import plain_prompt as frame
        else:
            frame = honesty_prompt
        reqs = [GenRequest(frame(q), params, seed=self.cfg.seed) for q in questions]
        return [r.texts[0] for r in model.generate(reqs, description=f"eval: {method}")]

    def evaluate(self) -> dict[str, Any]:
        cfg = self.cfg
        test = self._records("test")
        before = [r.greedy_label for r in test]
        judge = self.judge()
        ood = {name: load_qa(path, name) for name, path in (("puqa", cfg.puqa), ("pkqa", cfg.pkqa)) if path}
        summary: dict[str, Any] = {"n_test": len(test), "methods": {}}
        for m in ["unaligned", *cfg.methods]:
            model = self._model_for(m)
            if m == "unaligned":
                responses = [r.greedy for r in test]
                labels = before
            else:
                responses = self._answer(model, [r.question for r in test], m)
                labels = judge.label_many([r.question for r in test], responses, [r.answers for r in test])
            loose = [Judge.loosely_correct(y, r.answers) for y, r in zip(responses, test)]
            table = metrics.transition_table(before, labels)
            entry = {"table": table, "scores": metrics.scores_with_ci(before, labels, loose, cfg.bootstrap, cfg.seed)}
            for name, items in ood.items():
                ys = self._answer(model, [it.question for it in items], m)
                labs = judge.label_many([it.question for it in items], ys, [it.answers for it in items])
                if name == "puqa":
                    entry["puqa"] = {"prudence": 100 * metrics.idk_rate(labs)}
                else:
                    entry["pkqa"] = {"over_conservativeness": 100 * metrics.idk_rate(labs),
                                     "accuracy": 100 * metrics.accuracy([Judge.loosely_correct(y, it.answers)
                                                                         for y, it in zip(ys, items)])}
            self.dir.write_jsonl(f"eval/{m}.jsonl", [
                {"id": r.id, "question": r.question, "answers": list(r.answers), "before": r.greedy,
                 "before_label": b, "response": y, "label": a, "loosely_correct": lc}
                for r, b, y, a, lc in zip(test, before, responses, labels, loose)])
            summary["methods"][m] = entry
            s = entry["scores"]
            self.log(f"[eval] {m:16s} honesty {s['honesty']['value']:5.1f}  prudence {s['prudence']['value']:5.1f}  "
                     f"over-cons. {s['over_conservativeness']['value']:5.1f}  accuracy {s['accuracy']['value']:5.1f}")
        self.dir.write_json("eval/summary.json", summary)
        return summary

    def report(self) -> Path:
        from selfalign.report.honesty import write_report

        path = self.dir.path / "eval" / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else self.evaluate()
        return write_report(self.dir.path, summary, config_to_dict(self.cfg))

    def run(self, steps: tuple[str, ...] = STEPS) -> Path | None:
        self.dir.write_manifest(config_to_dict(self.cfg), seed=self.cfg.seed)
        t0 = time.time()
        result = None
        for step in steps:
            fn = {"sample": self.sample, "build": self.build, "train": self.train, "eval": self.evaluate,
                  "report": self.report}[step]
            result = fn()
        self.log(f"[run] finished in {time.time() - t0:.0f}s; outputs in {self.dir.path}")
        return result if isinstance(result, Path) else None
