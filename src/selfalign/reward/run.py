"""The preference-model stage: pairs -> train -> evaluate (accuracy, baselines, calibration).

``data``:

* ``verifiable`` (default): pairs with a gold label made from the policy's own samples on the
  bundled QA set (training pairs from its train split, held-out pairs from its test split, whose
  entities never occur in training), see :func:`selfalign.reward.pairs.verifiable_pairs`;
* ``hh:<path>``: Anthropic HH-RLHF transcripts (JSONL or JSONL.gz), split by the first human turn;
* a JSONL of TRL preference rows (``prompt``, ``chosen``, ``rejected``), split by prompt.

Every sample and every reward goes through the store, and training skips when its inputs are
unchanged, so a killed run resumes and a finished one re-runs in seconds.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from selfalign.train.reward import PMConfig


@dataclass
class PMRunConfig:
    base: str = "smollm2-135m"  # the model the score head goes on (trainable: a directory or hub id)
    data: str = "verifiable"  # verifiable | hh:<path> | <preference rows .jsonl>
    policy: str = ""  # verifiable: the model whose samples make the pairs (default: base)
    n_train_questions: int = 0  # verifiable: 0 = the whole train split
    n_test_questions: int = 0  # verifiable: 0 = the whole test split
    samples: int = 8  # verifiable: samples per question
    temperature: float = 1.0
    max_tokens: int = 32
    pairs_per_question: int = 1
    test_fraction: float = 0.2  # hh / rows: the held-out share (by prompt)
    n_pairs: int = 0  # hh / rows: use at most this many (0 = all)
    calib_fraction: float = 0.5  # of the held-out pairs, used to fit the temperature
    store: str = ""
    out: str = "runs/pm"
    seed: int = 0
    bootstrap: int = 1000
    #: preference-model pretraining (HH §4 / Askell et al. 2021 §4's PMP): "" = none, else a pair
    #: source as for ``data`` (all its pairs) trained on first; the PM is then fine-tuned from it on ``data``
    pmp: str = ""
    train: PMConfig = field(default_factory=PMConfig)

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = PMConfig(**self.train)
        kind = self.data.split(":", 1)[0]
        if self.data != "verifiable" and kind != "hh" and not self.data.endswith((".jsonl", ".jsonl.gz")):
            raise ValueError(f"data must be verifiable, hh:<path> or a .jsonl of preference rows, got {self.data!r}")
        if kind == "hh" and not Path(self.data[3:]).is_file():
            raise ValueError(f"data: {self.data[3:]}: no such file")
        if self.data.endswith((".jsonl", ".jsonl.gz")) and kind != "hh" and not Path(self.data).is_file():
            raise ValueError(f"data: {self.data}: no such file")
        if self.samples < 2:
            raise ValueError(f"samples must be >= 2 (a pair needs two answers), got {self.samples}")
        if not 0 < self.test_fraction < 1 or not 0 <= self.calib_fraction < 1:
            raise ValueError("test_fraction must be in (0, 1) and calib_fraction in [0, 1)")
        if self.pmp:
            if self.pmp == self.data:
                raise ValueError("pmp must be another pair source than data (pretraining on the target pairs "
                                 "would train on its own held-out pairs)")
            PMRunConfig(data=self.pmp)  # the same checks as data


def read_pairs(data: str, limit: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of a pair file (``hh:<path>`` transcripts or TRL preference rows), at most
    ``limit`` (0 = all), and how they were read."""
    from selfalign.reward.pairs import load_hh

    if data.startswith("hh:"):
        rows, counts = load_hh(data[3:], limit)
        return rows, {"source": data, **counts}
    from selfalign.data.io import read_jsonl

    rows = read_jsonl(data, required=("prompt", "chosen", "rejected"))[:limit or None]
    return rows, {"source": data, "pairs": len(rows)}


def load_pairs(cfg: PMRunConfig, policy: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(train pairs, test pairs, how they were made). ``policy`` (a StageModel) samples verifiable pairs."""
    from selfalign.reward.pairs import split_by_prompt

    if cfg.data != "verifiable":
        rows, made = read_pairs(cfg.data, cfg.n_pairs)
        train, test = split_by_prompt(rows, cfg.test_fraction, cfg.seed)
        return train, test, made
    if policy is None:
        raise ValueError("verifiable pairs need a policy model to sample from")
    from selfalign.data.formats import load_qa

    tr = [it for it in load_qa("bundled", split="train") if it.answerable][:cfg.n_train_questions or None]
    te = [it for it in load_qa("bundled", split="test") if it.answerable][:cfg.n_test_questions or None]
    def pairs(items: list, split: str) -> list[dict[str, Any]]:
        return sample_verifiable_pairs(policy, items, cfg.samples, cfg.temperature, cfg.max_tokens, cfg.seed,
                                       cfg.pairs_per_question, split)

    return (pairs(tr, "train"), pairs(te, "test"),
            {"source": "verifiable (bundled QA)", "train_questions": len(tr), "test_questions": len(te)})


def sample_verifiable_pairs(policy: Any, items: list, samples: int, temperature: float, max_tokens: int, seed: int,
                            per_question: int = 1, what: str = "train", known_over_idk: bool = False
                            ) -> list[dict[str, Any]]:
    """``samples`` answers of ``policy`` to each question in the QA prompt (through its store), made
    into pairs with a gold label by :func:`selfalign.reward.pairs.verifiable_pairs`."""
    from selfalign.critique.bon import qa_prompt
    from selfalign.reward.pairs import verifiable_pairs
    from selfalign.types import GenParams, GenRequest

    prompts = [qa_prompt(it.question) for it in items]
    params = GenParams(temperature=temperature, max_tokens=max_tokens)
    res = policy.generate([GenRequest(p, params, n=samples, seed=seed) for p in prompts],
                          description=f"samples for {what} pairs")
    return verifiable_pairs(items, [r.texts for r in res], prompts, per_question, seed, known_over_idk)


@dataclass
class PMRunResult:
    """A PM run: the scored held-out rows, the train and test pairs, and the summary."""
    rows: list[dict[str, Any]]
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    summary: dict[str, Any]


@dataclass
class SplitHalfResult(PMRunResult):
    """A split-half run: rows scored by both PMs, the pairs (train tagged by half), the summary (pms, agreement)."""


def run(cfg: PMRunConfig, policy: Any = None, store: Any = None, base_path: str | None = None,
        progress: Any = None) -> PMRunResult:
    """Make or load the pairs, train the PM, evaluate it with its baselines. Returns rows + summary."""
    from selfalign.models.registry import require_trainable
    from selfalign.reward.evaluate import evaluate_pm
    from selfalign.train.reward import CachedPM, PreferenceModel, train_pm

    train, test, made = load_pairs(cfg, policy)
    if not train or not test:
        raise ValueError(f"need training and held-out pairs, got {len(train)} and {len(test)}")
    base = base_path or require_trainable(cfg.base)
    base_id, pmp_info = cfg.base, None
    if cfg.pmp:
        ptrain, ptest, pmade = load_pairs(replace(cfg, data=cfg.pmp, pmp=""), policy)
        if progress:
            progress(f"preference-model pretraining on {len(ptrain) + len(ptest)} pairs ({cfg.pmp})")
        pres = train_pm(ptrain + ptest, base, Path(cfg.out) / "pmp", cfg.train, base_id=cfg.base)
        base, base_id = str(pres.model_dir), f"{cfg.base}+pmp:{pres.model_dir}"
        pmp_info = {"source": pmade, "pairs": len(ptrain) + len(ptest), "pm_dir": str(pres.model_dir),
                    "seconds": pres.seconds, "skipped_training": pres.skipped}
    if progress:
        progress(f"training the PM on {len(train)} pairs")
    res = train_pm(train, base, Path(cfg.out) / "pm", cfg.train, base_id=base_id)
    pm = CachedPM(PreferenceModel(res.model_dir, cfg.train.max_length, cfg.train.score_batch_tokens), store)
    untrained = CachedPM(PreferenceModel(base, cfg.train.max_length, cfg.train.score_batch_tokens, seed=cfg.train.seed),
                         store)
    if progress:
        progress(f"scoring {len(test)} held-out pairs")
    rows, summary = evaluate_pm(pm.rewards, test, untrained.rewards, cfg.calib_fraction, resamples=cfg.bootstrap,
                                seed=cfg.seed)
    train_acc = evaluate_pm(pm.rewards, train[:200], None, 0.0, resamples=200, seed=cfg.seed)[1]["accuracy"]
    summary.update({"made": made, "train_pairs": len(train), "test_pairs": len(test), "train_accuracy": train_acc,
                    "pm_dir": str(res.model_dir), "losses": res.losses, "train_seconds": res.seconds,
                    "truncated": res.truncated, "skipped_training": res.skipped, "pm_id": pm.model_id,
                    "pmp": pmp_info})
    return PMRunResult(rows=rows, train=train, test=test, summary=summary)


def split_half(cfg: PMRunConfig, policy: Any = None, store: Any = None, base_path: str | None = None,
               progress: Any = None) -> SplitHalfResult:
    """HH §4.2's split-half PMs: PM_A and PM_B trained on disjoint halves of the training pairs
    (by prompt), both evaluated on the same held-out pairs, with their agreement (same preferred
    response) and the Spearman rank correlation of their reward gaps. Optimise against PM_A and
    score with PM_B with ``selfalign rlhf frontier --pm <A> --test-pm <B>``."""
    from selfalign.evals.stats import mean_ci, spearman
    from selfalign.models.registry import require_trainable
    from selfalign.reward.evaluate import evaluate_pm
    from selfalign.reward.pairs import halves_by_prompt, prompt_key
    from selfalign.train.reward import CachedPM, PreferenceModel, train_pm

    train, test, made = load_pairs(cfg, policy)
    half_a, half_b = halves_by_prompt(train, cfg.seed)
    if not half_a or not half_b or not test:
        raise ValueError(f"split-half needs pairs in both halves and held out; got {len(half_a)}, {len(half_b)}, "
                         f"{len(test)}")
    base = base_path or require_trainable(cfg.base)
    out: dict[str, Any] = {"made": made, "test_pairs": len(test), "pms": {}}
    gaps: dict[str, list[float]] = {}
    rows: list[dict[str, Any]] = []
    for name, half in (("a", half_a), ("b", half_b)):
        if progress:
            progress(f"training PM_{name.upper()} on {len(half)} pairs")
        res = train_pm(half, base, Path(cfg.out) / f"pm_{name}", cfg.train, base_id=cfg.base)
        pm = CachedPM(PreferenceModel(res.model_dir, cfg.train.max_length, cfg.train.score_batch_tokens), store)
        scored, summary = evaluate_pm(pm.rewards, test, None, cfg.calib_fraction, resamples=cfg.bootstrap,
                                      seed=cfg.seed)
        gaps[name] = [r["reward_chosen"] - r["reward_rejected"] for r in scored]
        out["pms"][name] = {"pm_dir": str(res.model_dir), "train_pairs": len(half), "accuracy": summary["accuracy"],
                            "by_label": summary.get("by_label"), "calibration": summary["calibration"],
                            "length_baseline": summary["length_baseline"], "seconds": res.seconds,
                            "skipped_training": res.skipped}
        rows = scored if not rows else [{**r, f"reward_{name}_chosen": s["reward_chosen"],
                                         f"reward_{name}_rejected": s["reward_rejected"]} for r, s in zip(rows, scored)]
    agree = [float((ga > 0) == (gb > 0)) for ga, gb in zip(gaps["a"], gaps["b"])]
    out["agreement"] = mean_ci(agree, cfg.bootstrap, cfg.seed)
    out["spearman_gaps"] = spearman(gaps["a"], gaps["b"])
    out["prompts_shared_between_halves"] = len({prompt_key(r) for r in half_a} & {prompt_key(r) for r in half_b})
    train = [{**r, "meta": {**(r.get("meta") or {}), "half": n}} for n, h in (("a", half_a), ("b", half_b)) for r in h]
    return SplitHalfResult(rows=rows, train=train, test=test, summary=out)


@dataclass
class PMCurveConfig(PMRunConfig):
    """``pm curve``: a PM's held-out accuracy against the number of comparisons it trained on."""
    fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])  # nested shares of the training prompts

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must be a non-empty list of shares in (0, 1], got {self.fractions}")
        if len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions repeat a share: {self.fractions}")


def learning_curve(cfg: PMCurveConfig, policy: Any = None, store: Any = None, base_path: str | None = None,
                   progress: Any = None) -> PMRunResult:
    """HH (Bai et al. 2022, §3.3 and Figure 7) plots PM accuracy against the number of comparisons
    it was trained on. One PM per share of the training pairs, the shares nested (the first f of
    the training prompts in one seeded order, every pair of a prompt together), each scored on the
    same held-out pairs; the untrained head and the shorter-wins rule are the floor. The largest
    PM against the smallest: a paired bootstrap interval over the held-out pairs. Deviation: HH's
    PMs span 13M-52B parameters and 10^4-10^5+ comparisons; here one base and the pairs given."""
    from selfalign.evals.stats import paired_bootstrap
    from selfalign.models.registry import require_trainable
    from selfalign.reward.evaluate import evaluate_pm, win
    from selfalign.reward.pairs import prompt_key
    from selfalign.train.reward import CachedPM, PreferenceModel, train_pm

    train, test, made = load_pairs(cfg, policy)
    if not train or not test:
        raise ValueError(f"need training and held-out pairs, got {len(train)} and {len(test)}")
    base = base_path or require_trainable(cfg.base)
    prompts = sorted({prompt_key(r) for r in train})
    random.Random(cfg.seed).shuffle(prompts)
    untrained = CachedPM(PreferenceModel(base, cfg.train.max_length, cfg.train.score_batch_tokens, seed=cfg.train.seed),
                         store)
    points: list[dict[str, Any]] = []
    wins: list[list[float]] = []
    summary: dict[str, Any] = {"made": made, "test_pairs": len(test), "train_pairs": len(train),
                               "train_prompts": len(prompts)}
    for f in sorted(cfg.fractions):
        keep = set(prompts[:max(1, round(f * len(prompts)))])
        sub = [r for r in train if prompt_key(r) in keep]
        if progress:
            progress(f"training the PM on {len(sub)} pairs ({100 * f:g}% of the training prompts)")
        res = train_pm(sub, base, Path(cfg.out) / f"pm-{100 * f:g}", cfg.train, base_id=cfg.base)
        pm = CachedPM(PreferenceModel(res.model_dir, cfg.train.max_length, cfg.train.score_batch_tokens), store)
        scored, s = evaluate_pm(pm.rewards, test, untrained.rewards if not points else None, cfg.calib_fraction,
                                resamples=cfg.bootstrap, seed=cfg.seed)
        if not points:
            summary["untrained_head"], summary["length_baseline"] = s["untrained_head"], s["length_baseline"]
        wins.append([win(r["reward_chosen"], r["reward_rejected"]) for r in scored])
        points.append({"fraction": f, "train_pairs": len(sub), "train_prompts": len(keep), "accuracy": s["accuracy"],
                       "ece": s["calibration"]["raw"]["ece"], "pm_dir": str(res.model_dir), "seconds": res.seconds,
                       "skipped_training": res.skipped})
    if len(points) > 1:
        d = paired_bootstrap(wins[0], wins[-1], resamples=cfg.bootstrap, seed=cfg.seed)
        summary["largest_vs_smallest"] = {"value": d.diff, "lo": d.lo, "hi": d.hi}
    summary["points"] = points
    return PMRunResult(rows=points, train=train, test=test, summary=summary)


@dataclass
class PMEvalConfig:
    """``pm eval``: a trained PM directory scored on pairs that are all held out. ``temperature``:
    ``split`` (fit on half the pairs, ECE on the other half), ``saved`` (the PM's
    ``temperature.json`` from ``pm calibrate``) or a number."""

    pm: str = ""
    data: str = ""  # hh:<path> | preference rows .jsonl
    out: str = "runs/pm-eval"
    max_length: int = 512
    temperature: str = "split"
    store: str = ""
    seed: int = 0


@dataclass
class PMCalibrateConfig:
    """``pm calibrate``: fit the temperature of a trained PM on a calibration set of pairs."""

    pm: str = ""
    data: str = ""  # calibration pairs: hh:<path> | preference rows .jsonl
    out: str = "runs/pm-calibrate"
    max_length: int = 512
    store: str = ""
    seed: int = 0


@dataclass
class PMEvalResult:
    """Pairs scored by a saved PM, and the summary the PM report renders."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def check_pm_dir(cfg: PMEvalConfig | PMCalibrateConfig) -> float | None:
    """The PM directory, that a pair file is named, and (``pm eval``) the temperature, checked
    before the PM loads (the callers read the pairs next, also before it loads); returns the
    temperature given (None: fit on a split)."""
    if not Path(cfg.pm, "config.json").is_file():
        raise ValueError(f"{cfg.pm}: not a saved model directory (no config.json)")
    if not cfg.data:
        raise ValueError("data: a pair file is required (hh:<path> | preference rows .jsonl)")
    temperature = getattr(cfg, "temperature", "split")
    if temperature == "split":
        return None
    if temperature == "saved":
        saved = Path(cfg.pm, "temperature.json")
        if not saved.is_file():
            raise ValueError(f"{saved}: no saved temperature (run selfalign pm calibrate first)")
        return float(json.loads(saved.read_text())["temperature"])
    try:
        return float(temperature)
    except ValueError:
        raise ValueError(f"temperature must be split, saved or a number, got {temperature!r}") from None


def evaluate_saved(cfg: PMEvalConfig, store: Any = None) -> PMEvalResult:
    """A trained PM on pairs: accuracy, the shorter-wins baseline, calibration."""
    from selfalign.reward.evaluate import evaluate_pm
    from selfalign.train.reward import CachedPM, PreferenceModel

    temp = check_pm_dir(cfg)
    rows, made = read_pairs(cfg.data)
    model = CachedPM(PreferenceModel(cfg.pm, cfg.max_length), store)
    scored, s = evaluate_pm(model.rewards, rows, None, 0.5, seed=cfg.seed, temperature=temp)
    s.update({"made": made, "train_pairs": 0, "test_pairs": len(rows), "truncated": model.pm.truncated,
              "train_accuracy": s["accuracy"], "pm_dir": cfg.pm})
    return PMEvalResult(scored, s)


def calibrate_saved(cfg: PMCalibrateConfig, store: Any = None) -> PMEvalResult:
    """Temperature scaling (Guo et al. 2017): fit T on these pairs (both orders of each, so the fit
    sees predictions on both sides of 0.5) and save it as ``<pm>/temperature.json``. The ECE of
    the summary is in-sample; ``pm eval --temperature saved`` measures it on other pairs."""
    from selfalign.reward.evaluate import evaluate_pm, fit_temperature
    from selfalign.train.reward import CachedPM, PreferenceModel

    check_pm_dir(cfg)
    rows, made = read_pairs(cfg.data)
    if len(rows) < 2:
        raise ValueError(f"{cfg.data}: calibration needs at least 2 pairs, got {len(rows)}")
    model = CachedPM(PreferenceModel(cfg.pm, cfg.max_length), store)
    prompts = [r["prompt"] for r in rows]
    gaps = [c - j for c, j in zip(model.rewards(prompts, [r["chosen"] for r in rows]),
                                  model.rewards(prompts, [r["rejected"] for r in rows]))]
    T = fit_temperature(gaps + [-g for g in gaps], [True] * len(gaps) + [False] * len(gaps))
    scored, s = evaluate_pm(model.rewards, rows, None, 0.0, seed=cfg.seed, temperature=T)
    s["calibration"]["in_sample"] = True
    s["calibration"]["temperature_given"] = False
    s.update({"made": made, "train_pairs": 0, "test_pairs": len(rows), "truncated": model.pm.truncated,
              "train_accuracy": s["accuracy"], "pm_dir": cfg.pm})
    Path(cfg.pm, "temperature.json").write_text(json.dumps({"temperature": T, "fitted_on": cfg.data, "pairs": len(rows)}))
    return PMEvalResult(scored, s)
