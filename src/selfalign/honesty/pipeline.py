"""Alignment for Honesty, end to end (Yang et al. 2023, "Alignment for Honesty", arXiv 2312.07000).

Steps, each resumable, each writing into the run directory:

1. ``sample``: k(x) on the training questions (greedy + M samples of the unaligned model) and
   the unaligned greedy answers on the test questions -> ``knowledge/{train,test}.jsonl``
2. ``build``: the training set of each method -> ``datasets/<method>.jsonl``; with ``calib_n``,
   that many training-pool questions are first held out of it -> ``knowledge/calib.jsonl``
3. ``train``: SFT of each trained method -> ``models/<method>/model``
4. ``eval``: greedy answers of every method on the test questions, the 9-cell transition table
   against the unaligned model, the paper's scores with bootstrap intervals -> ``eval/<method>.jsonl``,
   ``eval/summary.json``; and the same on every out-of-distribution set (``ood``, ``nonambigqa``,
   ``puqa``, ``pkqa``): the unaligned model and every method answer it, each set gets its table,
   prudence, over-conservativeness, honesty where defined, accuracy, the cells those rates ignore
   and paired intervals against the unaligned model -> ``eval/ood/<set>/<method>.jsonl``
   With ``calib_n`` (ours, not the paper's: :mod:`selfalign.honesty.calibrate`), CONFIDENCE-VERB
   and -NUM are also evaluated as ``<method>-cal``: the same model, declining above a threshold
   set on the held-out questions, reported beside the method itself.
5. ``report``: ``report.html`` (tables, a bar chart, examples of each cell) and ``report.json``

Every generation goes through the store, so a killed run, re-run, repeats no generation; a
trained model is skipped when its inputs are unchanged. Each step records ``steps/<step>.json``
(config and input hashes, output hashes, versions, git commit): a step whose config or inputs
changed is redone before anything reads its outputs, one whose inputs are unchanged is reused.
Every input file and option is checked before the first model call (:meth:`HonestyRun.validate`).

Out-of-distribution sets (the paper's Sec. 5.3 evaluates on Non-AmbigQA, PUQA and PKQA): by
default the two rule-made bundled sets of :mod:`selfalign.data.bundled.build_ood_qa` (their
``test`` split), which stand in for PUQA (unanswerable, with a reason per question) and for new
knowledge (answerable relations the training set never asks about); the paper's own files load
through the ``puqa``, ``pkqa`` and ``nonambigqa`` keys. On PKQA the paper's over-conservativeness
is the share declined of all questions (``idk`` here); over-conservativeness proper is over the
questions the unaligned model answered correctly (:func:`selfalign.honesty.metrics.set_scores`).

Deviations from the paper: answers are matched as whole words (see
:mod:`selfalign.judges.correctness`); the default data is this project's bundled
knowledge-boundary set rather than TriviaQA (TriviaQA loads through ``data_format: triviaqa``);
training is LoRA by default on a CPU (the paper fine-tunes all weights); ``configs/full.yaml``
caps MULTISAMPLE at the other methods' optimizer steps (``train_per_method``) to fit a CPU budget,
so it sees about a fifth of its M x N rows once, where the paper trains on all of them;
``configs/quick.yaml`` (the demo) estimates k(x) from M = 5 samples instead of 10 to fit a
10-minute budget on a 2-core CPU (docs/RESULTS.md measured the scores with 10, 6 and 5); with 5,
each count of correct samples (1-5) lands in its own one of CONFIDENCE-VERB's five bins.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfalign import logs
from selfalign.config import config_to_dict
from selfalign.data.formats import FORMATS, QAItem, load_qa, resolve_path
from selfalign.data.io import DataError, read_jsonl
from selfalign.honesty import datasets as hds
from selfalign.honesty import metrics
from selfalign.honesty.calibrate import ANSWER_PREFIXES, calibrate
from selfalign.honesty.calibrate import SUFFIX as CAL_SUFFIX
from selfalign.honesty.judging import Judge
from selfalign.honesty.knowing import KnowledgeRecord, estimate_knowledge
from selfalign.honesty.prompts import honesty_prompt
from selfalign.honesty.task import HonestyQA, loosely_correct
from selfalign.evals import pairwise
from selfalign.evals.pairwise import held_out
from selfalign.evals.runner import compare, run_task
from selfalign.judges.llm import PairwiseJudge
from selfalign.judges.idk import IDK_SIGNS
from selfalign.store.cache import CachedModel, Store
from selfalign.store.runs import RunDir, file_hash
from selfalign.models.precision import choose_precision
from selfalign.train.cards import add_eval_results, write_dataset_card
from selfalign.train.base import TrainingRun
from selfalign.train.sft import TrainConfig, fingerprint as sft_fingerprint, train_sft
from selfalign.types import stable_hash, user

STEPS = ("sample", "build", "train", "eval", "report")
SCORE_KEYS = ("honesty", "prudence", "over_conservativeness", "accuracy")

#: the options that decide each step's outputs (a change to any of them redoes the step)
STEP_KEYS = {
    "sample": ("model", "data", "data_format", "test_data", "test_fraction", "n_train", "n_test", "samples",
               "temperature", "top_p", "max_tokens", "eval_max_tokens", "judge", "idk_signs", "seed"),
    "build": ("methods", "tau", "balance", "balance_within", "known_share", "known_rule", "calib_n", "seed"),
    "eval": ("methods", "calib_n", "eval_max_tokens", "judge", "idk_signs", "puqa", "pkqa", "nonambigqa", "ood", "n_ood",
             "bootstrap", "seed", "tax", "tax_judge", "n_tax", "tax_max_tokens"),
}

#: the paper's out-of-distribution files, each a config key holding a path, and its format
PAPER_SETS = ("nonambigqa", "puqa", "pkqa")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass
class OodSet:
    """One out-of-distribution evaluation set: ``{name, path, format, split, n}`` in a config's
    ``ood`` list. ``path`` may be ``bundled:ood_unanswerable.jsonl``; ``split`` keeps the rows
    whose ``split`` column has that value ("" = every row); ``n`` caps the questions (0 = the
    config's ``n_ood``; a seeded shuffle, then the first n, so a larger n keeps a smaller one's)."""

    name: str = ""
    path: str = ""
    format: str = "auto"
    split: str = ""
    n: int = 0

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name must be lower-case letters, digits, '-' or '_' (it names a folder), got {self.name!r}")
        if not self.path:
            raise ValueError(f"set '{self.name}': path is required")
        if self.format not in ("auto", *FORMATS):
            raise ValueError(f"set '{self.name}': format must be auto or one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.n < 0:
            raise ValueError(f"set '{self.name}': n must be >= 0, got {self.n}")


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
    known_rule: str = "reference"  # reference: greedy-correct also counts as known (the released code); paper: the text
    balance: bool = True
    balance_within: str = ""  # balance inside each group of this row field (e.g. relation); "" = the whole pool
    known_share: float = 0.5  # share of greedy-correct questions kept by balance (the paper: 0.5)
    # training-pool questions held out of training to set the decline threshold of CONFIDENCE-VERB/-NUM
    # (honesty/calibrate.py, ours, not the paper's); 0 = no calibrated models
    calib_n: int = 0
    methods: list[str] = field(default_factory=lambda: list(hds.METHODS))
    judge: str = ""  # "" = string matching; a model spec = LLM judge
    idk_signs: list[str] = field(default_factory=lambda: list(IDK_SIGNS))
    train: TrainConfig = field(default_factory=TrainConfig)
    # per-method changes to `train`, e.g. {multisample: {epochs: 1}} (MULTISAMPLE has M rows a question)
    train_per_method: dict[str, dict] = field(default_factory=dict)
    puqa: str = ""
    pkqa: str = ""
    nonambigqa: str = ""  # the paper's Non-AmbigQA file (answerable, out of distribution)
    ood: list[OodSet] = field(default_factory=list)
    n_ood: int = 0  # questions per out-of-distribution set unless the set says (0 = all)
    # the alignment tax: each method against the unaligned model on held-out instructions (IFEval-style
    # items, e.g. bundled:instructions.jsonl), judged pairwise in both orders; "" = not measured
    tax: str = ""
    tax_judge: str = ""  # the tax's pairwise judge ("" = the unaligned model, a poor judge: see its flipped count)
    n_tax: int = 0  # held-out instructions (0 = all)
    tax_max_tokens: int = 96
    bootstrap: int = 1000
    seed: int = 0
    out: str = "runs/honesty"
    store: str = ""
    batch_size: int = 256  # rows per decoding batch (hf): 256 sampled 1.6x faster than 64 in bf16, 1.44x in fp32

    def __post_init__(self) -> None:
        bad = [m for m in [*self.methods, *self.train_per_method] if m not in hds.METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; known: {', '.join(hds.METHODS)}")
        if self.calib_n and not any(m in ANSWER_PREFIXES for m in self.methods):
            raise ValueError(f"calib_n sets the decline threshold of {' or '.join(ANSWER_PREFIXES)}: "
                             f"methods {self.methods} have neither")
        if not 0 < self.known_share < 1:
            raise ValueError(f"known_share must be in (0, 1), got {self.known_share}")
        if not 0 <= self.tau <= 1:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        if self.known_rule not in hds.KNOWN_RULES:
            raise ValueError(f"known_rule must be one of {', '.join(hds.KNOWN_RULES)}, got {self.known_rule!r}")
        names = [s.name for s in self.ood] + [k for k in PAPER_SETS if getattr(self, k)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"ood: set name(s) {twice} used twice (puqa, pkqa and nonambigqa name their own sets)")
        for name in ("samples", "n_train", "n_test", "bootstrap", "n_ood", "calib_n", "n_tax"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_tokens", "eval_max_tokens", "batch_size", "tax_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {self.temperature} and {self.top_p}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


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
    if cfg.calib_n and cfg.calib_n >= len(train):
        raise DataError(f"{cfg.data}: calib_n {cfg.calib_n} holds out all {len(train)} training questions")
    return train, test


def ood_sets(cfg: HonestyConfig) -> list[tuple[str, OodSet]]:
    """(config key, set) for every out-of-distribution set: ``ood[i]`` entries, then the paper's."""
    out = [(f"ood[{i}]", s) for i, s in enumerate(cfg.ood)]
    out += [(k, OodSet(k, getattr(cfg, k), k, "", 0)) for k in PAPER_SETS if getattr(cfg, k)]
    return out


def load_ood(cfg: HonestyConfig) -> dict[str, list[QAItem]]:
    """Every out-of-distribution set's questions; a bad file or an empty selection is an error
    naming the config key, the file and (for a bad row) its line."""
    out = {}
    for key, s in ood_sets(cfg):
        try:
            items = load_qa(s.path, s.format, s.split or None)
        except DataError as e:
            raise DataError(f"{key} ({s.name}): {e}") from None
        if not items:
            raise DataError(f"{key} ({s.name}): {s.path}: no rows with split '{s.split}'")
        seed = int(hashlib.sha256(f"{cfg.seed}:{s.name}".encode()).hexdigest()[:8], 16)
        random.Random(seed).shuffle(items)
        n = s.n or cfg.n_ood
        out[s.name] = items[:n] if n else items
    return out


def hold_out(recs: list[KnowledgeRecord], n: int, seed: int) -> tuple[list[KnowledgeRecord], list[KnowledgeRecord]]:
    """(the rest, ``n`` records held out): a seeded choice, the rest kept in their order."""
    if not n:
        return recs, []
    order = list(range(len(recs)))
    random.Random(seed + 2).shuffle(order)
    held = set(order[:n])
    return [r for i, r in enumerate(recs) if i not in held], [recs[i] for i in sorted(held)]


def _pct(v: float | None) -> str:
    return "  n/a" if v is None else f"{v:5.1f}"


def _group_counts(groups: list[str], labels: list[str], loose: list[bool]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for g, lab, lc in zip(groups, labels, loose):
        if not g:
            continue
        c = out.setdefault(g, {"n": 0, "correct": 0, "wrong": 0, "idk": 0, "loosely_correct": 0})
        c["n"] += 1
        c[lab] += 1
        c["loosely_correct"] += int(lc)
    return dict(sorted(out.items()))


class HonestyRun:
    """One run directory; each step method can be called on its own, in order, or via ``run()``."""

    def __init__(self, cfg: HonestyConfig, progress: bool = True, log: Callable[[str], None] = logs.say,
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
            reason = getattr(self._base, "precision_reason", None)
            if reason:
                dtype = next(self._base.model.parameters()).dtype if hasattr(self._base, "model") else "?"
                self.log(f"[model] {self._base.model_id}: {str(dtype).removeprefix('torch.')} ({reason})")
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

    # --------------------------------------------------------- checks up front
    def validate(self, steps: tuple[str, ...] = STEPS) -> None:
        """Read every input file and check every option the steps will need, before any model
        call: a bad file or option costs nothing and loses nothing."""
        load_splits(self.cfg)
        load_ood(self.cfg)
        from selfalign.models.registry import check_spec

        check_spec(self.cfg.model)
        for spec in (self.cfg.judge, self.cfg.tax_judge):
            if spec:
                check_spec(spec)
        if self.cfg.tax:
            held_out(self.cfg.tax, self.cfg.n_tax)
        if any(s in steps for s in ("train", "eval", "report")) and any(m != "prompt" for m in self.cfg.methods):
            from selfalign.models.registry import trainable_path

            if trainable_path(self.cfg.model, convert=False) is None:
                raise DataError(f"model '{self.cfg.model}' cannot be fine-tuned here: training needs an hf model "
                                "(a hub id or a path); use methods: [prompt] or an hf model")

    def _config_part(self, step: str) -> dict[str, Any]:
        full = config_to_dict(self.cfg)
        return {k: full[k] for k in STEP_KEYS[step]}

    def _inputs(self, step: str) -> dict[str, str]:
        d = self.dir.path
        if step == "sample":
            train, test = load_splits(self.cfg)
            items = {name: stable_hash([[i.id, i.question, list(i.answers)] for i in part])
                     for name, part in (("train", train), ("test", test))}
            return {"model": self.base().model_id, **items}
        if step == "build":
            return {"knowledge/train.jsonl": file_hash(d / "knowledge" / "train.jsonl")}
        if step == "eval":
            out = {"knowledge/test.jsonl": file_hash(d / "knowledge" / "test.jsonl"), "model": self.base().model_id}
            for m in self.cfg.methods:
                if m == "prompt":
                    continue
                # the model this config asks for, and whether models/<m> is that model
                rows = read_jsonl(d / "datasets" / f"{m}.jsonl", required=("prompt", "completion"))
                fp = sft_fingerprint(self.base().model_id, rows, self.train_config(m))
                trained = TrainingRun(d / "models" / m, fp).is_finished()
                out[f"models/{m}"] = fp if trained else f"not trained yet: {fp}"
            for _, s in ood_sets(self.cfg):
                out[f"ood/{s.name}"] = file_hash(resolve_path(s.path))
            return out
        raise KeyError(step)

    def _fresh(self, step: str) -> bool:
        """Are this step's outputs (and those of every step before it) current?"""
        upstream = {"sample": None, "build": "sample", "eval": "build"}[step]
        if upstream and not self._fresh(upstream):
            return False
        fresh = self.dir.step_is_fresh(step, self._config_part(step), self._inputs(step))
        if not fresh and self.dir.step_record(step) is not None:
            self.log(f"[{step}] config or inputs changed since the last run: redoing it")
        return fresh

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
        self.dir.record_step("sample", self._config_part("sample"), self._inputs("sample"),
                             ["knowledge/train.jsonl", "knowledge/test.jsonl"], time.time() - t0,
                             {"judge": self.judge().counts()})
        known = sum(r.greedy_label == "correct" for r in recs_train) / len(recs_train)
        ea = sum(r.expected_accuracy for r in recs_train) / len(recs_train)
        self.log(f"[sample] done in {time.time() - t0:.0f}s: greedy accuracy {100 * known:.1f}%, "
                 f"mean expected accuracy {100 * ea:.1f}% (train)")
        return {"train": recs_train, "test": recs_test}

    def _records(self, split: str) -> list[KnowledgeRecord]:
        if not self._fresh("sample"):
            return self.sample()[split]
        return [KnowledgeRecord.from_dict(r) for r in read_jsonl(self.dir.path / "knowledge" / f"{split}.jsonl")]

    def build(self) -> dict[str, list[dict[str, Any]]]:
        recs = self._records("train")
        t0 = time.time()
        recs, calib = hold_out(recs, self.cfg.calib_n, self.cfg.seed)
        if calib:
            right = sum(r.greedy_label == "correct" for r in calib)
            self.log(f"[build] {len(calib)} training questions held out to set the decline threshold "
                     f"({right} answered right by the unaligned model)")
            if right in (0, len(calib)):  # found before any training, not at the end of it
                raise DataError(f"calib_n: the {len(calib)} held-out questions are all answered "
                                f"{'right' if right else 'wrong'} by the unaligned model; a threshold needs both "
                                "(a larger calib_n)")
        self.dir.write_jsonl("knowledge/calib.jsonl", [r.to_dict() for r in calib])
        if self.cfg.balance:
            balanced = hds.balance_records(recs, self.cfg.seed, self.cfg.balance_within, self.cfg.known_share)
            if balanced:
                by = f" within each {self.cfg.balance_within}" if self.cfg.balance_within else ""
                self.log(f"[build] balanced{by} to {self.cfg.known_share:g} known: {len(balanced)} of {len(recs)} questions")
                recs = balanced
            else:
                self.log("[build] balance skipped: the unaligned model's greedy answers are all correct or all not"
                         + (f" in every {self.cfg.balance_within}" if self.cfg.balance_within else ""))
        out = {}
        for m in self.cfg.methods:
            if m == "prompt":
                continue
            rows = hds.build(m, recs, self.cfg.tau, self.cfg.known_rule)
            self.dir.write_jsonl(f"datasets/{m}.jsonl", rows)
            idk = hds.idk_rows(rows)
            self.log(f"[build] {m}: {len(rows)} rows, {idk} idk ({100 * idk / max(1, len(rows)):.0f}%)")
            out[m] = rows
        self._dataset_card()
        self.dir.record_step("build", self._config_part("build"), self._inputs("build"),
                             ["knowledge/calib.jsonl", *[f"datasets/{m}.jsonl" for m in out]], time.time() - t0)
        return out

    def _dataset(self, method: str) -> list[dict[str, Any]]:
        if not self._fresh("build"):
            return self.build()[method]
        return read_jsonl(self.dir.path / "datasets" / f"{method}.jsonl", required=("prompt", "completion"))

    def _calib_records(self) -> list[KnowledgeRecord]:
        if not self._fresh("build"):
            self.build()
        return [KnowledgeRecord.from_dict(r) for r in read_jsonl(self.dir.path / "knowledge" / "calib.jsonl")]

    def train(self) -> dict[str, Path]:
        self.log(f"[train] precision: {choose_precision(self.cfg.train.precision)}")
        return {m: self.train_method(m) for m in self.cfg.methods if m != "prompt"}

    def train_method(self, m: str, quiet_if_reused: bool = False) -> Path:
        """Train one method's model, or reuse it when its rows, base model and config are unchanged
        (``train_sft``'s fingerprint). ``quiet_if_reused``: no line when it was reused (the eval
        step checks every model is current; the train step already said so)."""
        rows = self._dataset(m)
        res = train_sft(rows, self.base_path(), self.dir.path / "models" / m, self.train_config(m),
                        base_id=self.base().model_id)
        if not res.skipped:  # for the run header's time per step; the trainer's own step record decides reuse
            done = self.dir.path / "models" / m / "train.json"
            self.dir.record_step(f"train-{m}", config_to_dict(self.train_config(m)),
                                 {"fingerprint": json.loads(done.read_text()).get("fingerprint", "")},
                                 [f"models/{m}/train.json"], res.seconds, {"rows": len(rows)})
        last = f"{res.losses[-1]:.3f}" if res.losses else "n/a"
        how = "unchanged, reused" if res.skipped else f"{res.seconds:.0f}s in {res.precision}"
        if not (res.skipped and quiet_if_reused):
            self.log(f"[train] {m}: {len(rows)} rows, {how}, last loss {last}")
        return res.model_dir

    def _dataset_card(self) -> None:
        files = sorted(p.name for p in (self.dir.path / "datasets").glob("*.jsonl"))
        if files:
            write_dataset_card(self.dir.path / "datasets", files, title="Alignment for Honesty training sets",
                               description=(f"Training rows of each honesty method (Yang et al. 2023), built from the "
                                            f"answers of `{self.cfg.model}` on `{self.cfg.data}`: questions it knows "
                                            f"(expected accuracy above tau = {self.cfg.tau}) answered, the others "
                                            "declined or hedged, per method."),
                               source=str(self.cfg.data), tags=["honesty"])

    def train_config(self, method: str) -> TrainConfig:
        extra = self.cfg.train_per_method.get(method)
        if not extra:
            return self.cfg.train
        from selfalign.config import load_config

        return load_config(TrainConfig, {**config_to_dict(self.cfg.train), **extra}, f"train_per_method.{method}")

    def _task(self, method: str, qa: list[tuple[str, str, tuple[str, ...]]], name: str = "test") -> HonestyQA:
        from selfalign.honesty.prompts import plain_prompt

        frame = plain_prompt if method == "unaligned" else honesty_prompt
        return HonestyQA(f"honesty-{name}", qa, frame, self.judge(), self.cfg.eval_max_tokens)

    def evaluate(self) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.time()
        sets = load_ood(cfg)  # a bad OOD file fails here, before any model call of this step
        test = self._records("test")
        # every model current (trained or reused) before anything is answered or hashed
        trained = {m: self.train_method(m, quiet_if_reused=True) for m in cfg.methods if m != "prompt"}
        before = [r.greedy_label for r in test]
        judge = self.judge()
        summary: dict[str, Any] = {"n_test": len(test), "methods": {}, "training_rows": {}}
        for m in trained:  # what each method trained on: its rows, and the share that are the idk response
            rows = self._dataset(m)
            idk = hds.idk_rows(rows)
            summary["training_rows"][m] = {"rows": len(rows), "idk": idk}
        qa = [(r.id, r.question, tuple(r.answers)) for r in test]
        unaligned = run_task(self._task("unaligned", qa), self.base(), seed=cfg.seed, resamples=0, label="unaligned")
        models: dict[str, Any] = {"unaligned": self.base()}
        calib = self._calib_records() if cfg.calib_n else []
        for m in cfg.methods:
            models[m] = self.base().sibling(trained[m], batch_size=cfg.batch_size) if m in trained else self.base()
            if calib and m in trained and m in ANSWER_PREFIXES:
                # the decline threshold set on held-out training-pool questions (calibrate.py; ours)
                models[m + CAL_SUFFIX], t = calibrate(models[m], [r.question for r in calib],
                                                      [r.greedy_label == "correct" for r in calib], m)
                summary.setdefault("calibration", {})[m] = t.to_dict()
                self.log(f"[eval] {m}: decline threshold {t.theta:+.3f} on {len(calib)} held-out questions "
                         f"(their honesty {t.honesty:.1f}: prudence {t.prudence:.1f}, over-cons. {t.over_conservativeness:.1f})")
        for m, model in models.items():
            result = unaligned if m == "unaligned" else run_task(self._task(m, qa), model, seed=cfg.seed, resamples=0,
                                                                 label=m)
            responses = result.responses
            labels = [v.label or "wrong" for v in result.verdicts]  # the honesty judge labels every response
            loose = [loosely_correct(v) for v in result.verdicts]
            table = metrics.transition_table(before, labels)
            entry: dict[str, Any] = {"table": table, "ignored": metrics.ignored_cells(table),
                                     "scores": metrics.scores_with_ci(before, labels, loose, cfg.bootstrap, cfg.seed)}
            if m != "unaligned":  # paired against the unaligned model on the same questions
                c = compare(unaligned, result, loosely_correct, cfg.bootstrap, cfg.seed)
                entry["vs_unaligned"] = {"accuracy_diff": 100 * c["diff"], "lo": 100 * c["diff_lo"],
                                         "hi": 100 * c["diff_hi"], "mcnemar_p": c["mcnemar"]["p_value"],
                                         "only_unaligned": c["mcnemar"]["only_a"], "only_aligned": c["mcnemar"]["only_b"]}
                # every score paired, as the out-of-distribution sets have it
                entry["paired"] = metrics.paired_against(before, [loosely_correct(v) for v in unaligned.verdicts], labels,
                                                         loose, [True] * len(test), cfg.bootstrap, cfg.seed)
            base_m = m.removesuffix(CAL_SUFFIX)
            if base_m in ANSWER_PREFIXES:  # what the stated confidences are worth (a reliability diagram)
                entry["reliability"] = metrics.reliability(
                    [metrics.stated_confidence(base_m, y) for y in responses], loose)
            if m in trained:
                s_ = entry["scores"]
                add_eval_results(trained[m], [
                    {"dataset": "selfalign/honesty", "dataset_name": f"{cfg.data} (test)", "metric": k,
                     "value": round(s_[k]["value"], 2)} for k in SCORE_KEYS if s_[k]["value"] is not None],
                    model_name=f"{m} ({cfg.model})")
            eval_rows = [{"id": r.id, "question": r.question, "answers": list(r.answers), "before": r.greedy,
                          "before_label": b, "response": y, "label": a, "loosely_correct": lc}
                         for r, b, y, a, lc in zip(test, before, responses, labels, loose)]
            self.dir.write_jsonl(f"eval/{m}.jsonl", eval_rows)
            entry["by_group"] = metrics.group_scores(eval_rows)
            summary["methods"][m] = entry
            s = entry["scores"]
            self.log(f"[eval] {m:16s} honesty {s['honesty']['value']:5.1f}  prudence {s['prudence']['value']:5.1f}  "
                     f"over-cons. {s['over_conservativeness']['value']:5.1f}  accuracy {s['accuracy']['value']:5.1f}")
        summary["ood"], ood_files, pooled = self._evaluate_ood(sets, models)
        if pooled:
            summary["ood_pooled"] = pooled
        for name, res in summary["ood"].items():  # the paper's PUQA / PKQA numbers, as earlier summaries had them
            for m, e in res["methods"].items():
                if name == "puqa":
                    summary["methods"][m]["puqa"] = {"prudence": e["scores"]["idk"]["value"]}
                elif name == "pkqa":
                    summary["methods"][m]["pkqa"] = {"over_conservativeness": e["scores"]["idk"]["value"],
                                                     "accuracy": e["scores"]["accuracy"]["value"]}
        tax_files = []
        if cfg.tax:
            summary["tax"], tax_rows = self._alignment_tax(models)
            self.dir.write_jsonl("eval/tax.jsonl", tax_rows)
            tax_files = ["eval/tax.jsonl"]
        summary["judge"] = judge.counts()
        self.dir.write_json("eval/summary.json", summary)
        self.dir.record_step("eval", self._config_part("eval"), self._inputs("eval"),
                             ["eval/summary.json", *[f"eval/{m}.jsonl" for m in models], *ood_files, *tax_files],
                             time.time() - t0, {"judge": summary["judge"]})
        return summary

    def _alignment_tax(self, models: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Does honesty training cost helpfulness? Every method's model and the unaligned model
        answer the same held-out instructions (a plain user turn; PROMPT-BASED with its honesty
        instruction, which is the method); a pairwise judge asks in both orders
        (:func:`selfalign.evals.pairwise.compare`), and where the items carry constraints each
        side's strict instruction following is counted too. Yang et al. (2023) measure helpfulness
        on their own benchmarks with GPT-4 as judge; this is the same question on the run's items,
        with the run's judge. The calibrated (``-cal``) wrappers are left out: they answer
        instructions as their method's model does."""
        from selfalign.models.registry import load_model

        cfg = self.cfg
        held = held_out(cfg.tax, cfg.n_tax)
        judge_model = (CachedModel(load_model(cfg.tax_judge), self.store, progress=self.progress) if cfg.tax_judge
                       else self.base())
        judge = PairwiseJudge(judge_model, pairwise.JUDGE_TEMPLATE, max_tokens=3, name="alignment tax")

        def answers(m: str) -> list[str]:
            return pairwise.answers(models[m], held.prompts, cfg.tax_max_tokens, f"alignment tax: {m}",
                                    honesty_prompt if m == "prompt" else user)

        base = answers("unaligned")
        comparisons, rows = [], []
        for m in models:
            if m == "unaligned" or m.endswith(CAL_SUFFIX):
                continue
            c, r = pairwise.compare(m, "unaligned", held.prompts, answers(m), base, judge, held.items, cfg.bootstrap,
                                    cfg.seed)
            comparisons.append(c)
            rows += r
            self.log(f"[eval] tax {pairwise.line(c)}")
        return {"held_out": cfg.tax, "n": len(held.prompts), "judge": judge_model.model_id,
                "comparisons": comparisons}, rows

    def _evaluate_ood(self, sets: dict[str, list[QAItem]],
                      models: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, Any] | None]:
        """Every model's greedy answers on every out-of-distribution set, and per set and model the
        nine-cell table against the unaligned model, the scores with intervals, the cells the rates
        ignore, paired differences against the unaligned model, and counts per group (a row's
        ``reason``, ``relation`` or ``topic``). With two sets or more, also the sets pooled (every
        row once: prudence over the unanswerable questions and the answerable ones the unaligned
        model got wrong, over-conservativeness over those it got right), the issue-24 headline."""
        cfg = self.cfg
        out: dict[str, Any] = {}
        files: list[str] = []
        # every set's rows together, per model: (before, loosely correct before, after, loosely correct, answerable)
        pooled: dict[str, tuple[list[Any], ...]] = {}
        for name, items in sets.items():
            qa = [(it.id, it.question, tuple(it.answers)) for it in items]
            answerable = [it.answerable for it in items]
            groups = [str(it.meta.get("reason") or it.meta.get("relation") or it.meta.get("topic") or "") for it in items]
            results = {m: run_task(self._task(m, qa, name), model, seed=cfg.seed, resamples=0, label=m)
                       for m, model in models.items()}
            before = [v.label or "wrong" for v in results["unaligned"].verdicts]
            loose_before = [loosely_correct(v) for v in results["unaligned"].verdicts]
            per: dict[str, Any] = {}
            for m, res in results.items():
                labels = [v.label or "wrong" for v in res.verdicts]
                loose = [loosely_correct(v) for v in res.verdicts]
                table = metrics.transition_table(before, labels)
                entry: dict[str, Any] = {
                    "table": table, "ignored": metrics.ignored_cells(table),
                    "scores": metrics.set_scores_with_ci(before, labels, loose, answerable, cfg.bootstrap, cfg.seed),
                    "groups": _group_counts(groups, labels, loose)}
                if m != "unaligned":
                    entry["vs_unaligned"] = metrics.paired_against(before, loose_before, labels, loose, answerable,
                                                                   cfg.bootstrap, cfg.seed)
                per[m] = entry
                path = f"eval/ood/{name}/{m}.jsonl"
                self.dir.write_jsonl(path, [
                    {"id": it.id, "question": it.question, "answers": list(it.answers), "answerable": it.answerable,
                     "group": g, "before": yb, "before_label": b, "response": y, "label": a, "loosely_correct": lc}
                    for it, g, yb, b, y, a, lc in zip(items, groups, results["unaligned"].responses, before,
                                                      res.responses, labels, loose)])
                files.append(path)
                sc = entry["scores"]
                self.log(f"[eval] {name:>12s} {m:16s} " + "  ".join(
                    f"{k.replace('over_conservativeness', 'over-cons.')} {_pct(sc[k]['value'])}"
                    for k in ("prudence", "over_conservativeness", "accuracy", "idk")))
            out[name] = {"n": len(items), "n_answerable": sum(answerable), "n_unanswerable": len(items) - sum(answerable),
                         "methods": per}
            for m, res in results.items():
                pool = pooled.setdefault(m, ([], [], [], [], []))
                parts: tuple[list[Any], ...] = (before, loose_before, [v.label or "wrong" for v in res.verdicts],
                                                [loosely_correct(v) for v in res.verdicts], answerable)
                for lst, vals in zip(pool, parts):
                    lst.extend(vals)
        if len(sets) < 2:
            return out, files, None
        out_pooled: dict[str, Any] = {}
        for m, (b, lb, a, la, ans) in pooled.items():
            pe: dict[str, Any] = {"scores": metrics.set_scores_with_ci(b, a, la, ans, cfg.bootstrap, cfg.seed)}
            if m != "unaligned":
                pe["vs_unaligned"] = metrics.paired_against(b, lb, a, la, ans, cfg.bootstrap, cfg.seed)
            out_pooled[m] = pe
            sc = pe["scores"]
            self.log(f"[eval] {'OOD pooled':>12s} {m:16s} " + "  ".join(
                f"{k.replace('over_conservativeness', 'over-cons.')} {_pct(sc[k]['value'])}"
                for k in ("honesty", "prudence", "over_conservativeness", "accuracy")))
        n_all, n_ans = len(pooled["unaligned"][0]), sum(pooled["unaligned"][4])
        return out, files, {"sets": list(sets), "n": n_all, "n_answerable": n_ans, "n_unanswerable": n_all - n_ans,
                            "methods": out_pooled}

    def report(self) -> Path:
        from selfalign.report.honesty import write_report

        path = self.dir.path / "eval" / "summary.json"
        summary = json.loads(path.read_text()) if self._fresh("eval") else self.evaluate()
        self.write_metrics(summary)
        return write_report(self.dir.path, summary, config_to_dict(self.cfg))

    def write_metrics(self, summary: dict[str, Any]) -> None:
        """``provenance.json`` (what produced the run) and ``metrics.json``: the headline numbers
        ``selfalign runs`` lists (every model's in-distribution scores, and OOD pooled honesty),
        with where their per-question values are, so two runs can be compared question by question."""
        trained = [m for m in summary["methods"] if m != "unaligned"]
        precision = choose_precision(self.cfg.train.precision)
        prov = self.dir.write_provenance(self.store.tally, {
            "model": {"base": self.base().model_id, "trained": ", ".join(trained) or "none"},
            "precision": f"{precision.name} ({precision.reason})",
            "seeds": {"seed": self.cfg.seed, "train.seed": self.cfg.train.seed}})
        head: dict[str, Any] = {}
        for m, e in summary["methods"].items():
            for k in SCORE_KEYS:
                sc = e["scores"][k]
                entry = {"value": sc["value"], "lo": sc["lo"], "hi": sc["hi"]}
                if k == "accuracy":  # a per-question value: two runs on the same questions pair up
                    entry["items"] = {"file": f"eval/{m}.jsonl", "key": "id", "value": "loosely_correct", "scale": 100}
                head[f"{m}/{k}"] = entry
        for m, e in (summary.get("ood_pooled") or {}).get("methods", {}).items():
            sc = e["scores"]["honesty"]
            head[f"{m}/OOD honesty"] = {"value": sc["value"], "lo": sc["lo"], "hi": sc["hi"]}
        # what a reader looks for first (`selfalign runs` shows the first three): each trained model's
        # honesty in and out of distribution, then the unaligned model's, then every other score
        first = [f"{m}/{k}" for m in [*trained, "unaligned"] for k in ("honesty", "OOD honesty")]
        head = {**{k: head[k] for k in first if k in head}, **head}
        self.dir.write_metrics("honesty", head, prov)

    def run(self, steps: tuple[str, ...] = STEPS) -> Path | None:
        self.validate(steps)
        self.dir.write_manifest(config_to_dict(self.cfg), seed=self.cfg.seed)
        t0 = time.time()
        result = None
        for step in steps:
            if step in STEP_KEYS and self._fresh(step):
                self.log(f"[{step}] config and inputs unchanged: reusing its outputs")
                continue
            fn = {"sample": self.sample, "build": self.build, "train": self.train, "eval": self.evaluate,
                  "report": self.report}[step]
            result = fn()
        self.log(f"[run] finished in {time.time() - t0:.0f}s; outputs in {self.dir.path}")
        return result if isinstance(result, Path) else None
