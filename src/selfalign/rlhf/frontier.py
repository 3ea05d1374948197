"""Best-of-N against RL at equal KL, scored by a held-out preference model and by gold answers.

Bai et al. 2022 (arXiv 2204.05862), §4.3 and App. B.6: the policy is improved two ways against
a *training* preference model, by Best-of-N sampling (no training; its KL from the policy is
analytic, log N - (N-1)/N) and by RL with a KL penalty (:mod:`selfalign.train.rloo`; its KL is
measured), and both are scored by a *test* preference model (in the paper, one trained on the
other half of the data: :func:`selfalign.reward.pairs.halves_by_prompt`) and plotted against
sqrt(KL), where HH find reward roughly linear. Here the prompts are the bundled QA set's
held-out questions, so every point also has a **gold accuracy**: if RL or BoN over-optimise
the training PM, the test reward and the gold accuracy fall while the training reward rises.

For BoN, each held-out prompt gets N_max samples from the policy; the training PM picks the best
of the first N (nested pools, as in :mod:`selfalign.critique.bon`). For RL, every snapshot of the
policy (step 0 = the initial policy) samples ``eval_samples`` answers per held-out prompt; its
KL(snapshot || initial) is :func:`selfalign.train.rloo.sequence_kl` on those samples. Every RL
step also logs, on its training completions, TRL's KL, the per-sequence KL with a non-negative
estimator, the training PM's reward, the test PM's reward and the gold accuracy
(:func:`step_monitor`), so the whole trajectory is visible, not only the snapshots.

Deviations: the same PM may serve as training and test PM when no second one is given (then the
test reward is not held out and the report says so); KL for RL is estimated from samples
(intervals from the bootstrap over prompts).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from selfalign.evals.stats import mean_ci
from selfalign.train.rloo import RLOOTrainConfig


#: ``pm`` of a frontier that a pipeline (``selfalign rlhf quick``) fills in after training it
PENDING = "<trained by the pipeline>"


def require_pm(cfg: "FrontierConfig") -> None:
    """A frontier needs its training PM (``pm``); a config may leave it to a pipeline until then."""
    if not cfg.pm or cfg.pm == PENDING:
        raise ValueError("pm: the training preference model's directory is required (selfalign pm train)")


@dataclass
class FrontierConfig:
    policy: str = "smollm2-135m"
    pm: str = ""  # the training PM directory (optimised against)
    test_pm: str = ""  # the evaluation PM directory (default: pm, then not held out)
    n_rl_prompts: int = 200  # RL prompts: bundled train questions
    n_test: int = 100  # held-out prompts: bundled test questions
    ns: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    eval_samples: int = 4  # RL snapshots: samples per held-out prompt
    temperature: float = 1.0
    max_tokens: int = 32
    rl: RLOOTrainConfig = field(default_factory=lambda: RLOOTrainConfig(snapshot_steps=[5, 10, 20]))
    store: str = ""
    out: str = "runs/rlhf-frontier"
    seed: int = 0
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.rl, dict):
            self.rl = RLOOTrainConfig(**self.rl)
        for name in ("pm", "test_pm"):
            path = getattr(self, name)
            if path and path != PENDING and not Path(path, "config.json").is_file():
                raise ValueError(f"{name}: {path}: not a saved model directory (no config.json)")
        if not self.ns or min(self.ns) < 1:
            raise ValueError(f"ns must be integers >= 1, got {self.ns}")
        self.ns = sorted(set(self.ns))
        if self.eval_samples < 1 or self.n_test < 1 or self.n_rl_prompts < 1:
            raise ValueError("eval_samples, n_test and n_rl_prompts must be >= 1")


def bon_points(policy: Any, items: Sequence[Any], prompts: Sequence[Any], train_pm: Any, test_pm: Any,
               cfg: FrontierConfig) -> list[dict[str, Any]]:
    """One point per N: KL, training/test PM reward and gold accuracy of the training PM's pick."""
    from selfalign.critique.bon import bon_kl
    from selfalign.judges.correctness import contains_answer
    from selfalign.types import GenParams, GenRequest

    n_max = cfg.ns[-1]
    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    res = policy.generate([GenRequest(p, params, n=n_max, seed=cfg.seed) for p in prompts],
                          description=f"best-of-{n_max} samples")
    flat_p = [p for p, r in zip(prompts, res) for _ in r.texts]
    flat_t = [t for r in res for t in r.texts]
    tr = train_pm.rewards(flat_p, flat_t)
    te = test_pm.rewards(flat_p, flat_t)
    points = []
    for n in cfg.ns:
        picks_tr, picks_te, gold = [], [], []
        for q, (it, r) in enumerate(zip(items, res)):
            base = q * n_max
            best = max(range(n), key=lambda i: (tr[base + i], -i))
            picks_tr.append(tr[base + best])
            picks_te.append(te[base + best])
            gold.append(float(contains_answer(r.texts[best], it.answers)))
        points.append({"method": "bon", "n": n, "kl": bon_kl(n), "train_reward": mean_ci(picks_tr, cfg.bootstrap, cfg.seed),
                       "test_reward": mean_ci(picks_te, cfg.bootstrap, cfg.seed), "gold": mean_ci(gold, cfg.bootstrap, cfg.seed),
                       "per_prompt": {"train_reward": picks_tr, "test_reward": picks_te, "gold": gold}})
    return points


def policy_point(model: Any, initial: Any, items: Sequence[Any], prompts: Sequence[Any], train_pm: Any, test_pm: Any,
                 cfg: FrontierConfig, step: int) -> dict[str, Any]:
    """Rewards, gold accuracy and KL from the initial policy of one RL snapshot."""
    from selfalign.judges.correctness import contains_answer
    from selfalign.train.rloo import sequence_kl
    from selfalign.types import GenParams, GenRequest

    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    res = model.generate([GenRequest(p, params, n=cfg.eval_samples, seed=cfg.seed + 1) for p in prompts],
                         description=f"RL step {step}: samples")
    samples = [r.texts for r in res]
    flat_p = [p for p, ss in zip(prompts, samples) for _ in ss]
    flat_t = [t for ss in samples for t in ss]
    tr, te = train_pm.rewards(flat_p, flat_t), test_pm.rewards(flat_p, flat_t)
    k = cfg.eval_samples
    per_q_tr = [sum(tr[q * k:(q + 1) * k]) / k for q in range(len(prompts))]
    per_q_te = [sum(te[q * k:(q + 1) * k]) / k for q in range(len(prompts))]
    gold = [sum(contains_answer(t, it.answers) for t in ss) / k for it, ss in zip(items, samples)]
    kl = sequence_kl(model, initial, prompts, samples) if step else {"kl": 0.0, "kl_k3": 0.0, "n": len(flat_t)}
    return {"method": "rl", "step": step, "kl": max(0.0, kl["kl"]), "kl_raw": kl["kl"], "kl_k3": kl["kl_k3"],
            "train_reward": mean_ci(per_q_tr, cfg.bootstrap, cfg.seed), "test_reward": mean_ci(per_q_te, cfg.bootstrap, cfg.seed),
            "gold": mean_ci(gold, cfg.bootstrap, cfg.seed),
            "per_prompt": {"train_reward": per_q_tr, "test_reward": per_q_te, "gold": gold}}


def step_monitor(items: Sequence[Any], prompts: Sequence[Any], test_pm: Any = None) -> Any:
    """Per RL step, on the training completions: the test PM's mean reward (when one is given) and
    the gold accuracy (the share that contains a gold answer of its question)."""
    from selfalign.judges.correctness import contains_answer

    def last_user(p: Any) -> str:
        return p if isinstance(p, str) else str([m for m in p if m["role"] == "user"][-1]["content"])

    answers = {last_user(p): it.answers for it, p in zip(items, prompts)}

    def monitor(ps: Sequence[Any], completions: Sequence[Any]) -> dict[str, float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        gold = [float(contains_answer(t, answers.get(last_user(p), ()))) for p, t in zip(ps, texts)]
        out = {"gold": sum(gold) / len(gold)}
        if test_pm is not None:
            te = test_pm.rewards(list(ps), texts)
            out["test_reward"] = sum(te) / len(te)
        return out

    return monitor


def sqrt_kl_fit(points: Sequence[dict[str, Any]], key: str = "test_reward") -> dict[str, float]:
    """Least-squares line reward = a + b sqrt(KL) through the points (HH §4.3 find reward roughly
    linear in sqrt(KL)), with R^2; NaNs when fewer than 3 points or no spread in KL.

    >>> f = sqrt_kl_fit([{"kl": k, "r": {"value": 1 + 2 * k ** 0.5}} for k in (0, 1, 4)], "r")
    >>> round(f["slope"], 6), round(f["intercept"], 6), round(f["r2"], 6)
    (2.0, 1.0, 1.0)
    """
    xs = [math.sqrt(max(0.0, p["kl"])) for p in points]
    ys = [p[key]["value"] for p in points]
    nan = {"slope": math.nan, "intercept": math.nan, "r2": math.nan, "points": len(xs)}
    if len(xs) < 3:
        return nan
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return nan
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return {"slope": b, "intercept": a, "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan, "points": len(xs)}


def vs_initial(points: list[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> None:
    """Add to each point its paired difference from the method's first point (BoN N=1, RL step 0)
    on the same held-out prompts, for each reward and gold accuracy (bootstrap over prompts):
    a much tighter test of "did it improve" than two overlapping intervals."""
    from selfalign.evals.stats import paired_bootstrap

    for method in ("bon", "rl"):
        ps = [p for p in points if p["method"] == method and "per_prompt" in p]
        if not ps:
            continue
        first = ps[0]["per_prompt"]
        for p in ps:
            p["vs_initial"] = {}
            for key in ("train_reward", "test_reward", "gold"):
                d = paired_bootstrap(first[key], p["per_prompt"][key], resamples=resamples, seed=seed)
                p["vs_initial"][key] = {"value": d.diff, "lo": d.lo, "hi": d.hi}


def _fits(points: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in ("bon", "rl"):
        ps = [p for p in points if p["method"] == method]
        if ps:
            out[method] = {key: sqrt_kl_fit(ps, key) for key in ("train_reward", "test_reward", "gold")}
    return out


def _held_out(cfg: FrontierConfig) -> tuple[list[Any], list[Any]]:
    from selfalign.critique.bon import qa_prompt
    from selfalign.data.formats import load_qa

    items = [it for it in load_qa("bundled", split="test") if it.answerable][:cfg.n_test]
    return items, [qa_prompt(it.question) for it in items]


@dataclass
class FrontierResult:
    """The frontier's points (BoN and/or RL), their sqrt(KL) and line fits, and the RL run's history."""
    points: list[dict[str, Any]]
    held_out_test_pm: bool
    rl_history: list[dict[str, Any]]
    rl_seconds: float
    test_prompts: int
    rl_prompts: int
    sqrt_kl: list[float]
    sqrt_kl_fits: dict[str, dict[str, dict[str, float]]]
    rl_model: str | None = None  # the trained policy (no RL run: None)

    def to_dict(self) -> dict[str, Any]:
        """As the report and ``report.json`` take it (no ``rl_model`` key when no RL ran)."""
        d = asdict(self)
        if self.rl_model is None:
            del d["rl_model"]
        return d


def run_bon(cfg: FrontierConfig, policy: Any, train_pm: Any, test_pm: Any | None = None,
            progress: Any = None) -> FrontierResult:
    """Best-of-N only (``selfalign rlhf bon``): one point per N on the held-out prompts."""
    require_pm(cfg)
    test_pm = test_pm or train_pm
    items, prompts = _held_out(cfg)
    if progress:
        progress(f"best-of-N (N up to {cfg.ns[-1]}) on {len(prompts)} held-out prompts")
    points = bon_points(policy, items, prompts, train_pm, test_pm, cfg)
    vs_initial(points, cfg.bootstrap, cfg.seed)
    return FrontierResult(points=points, held_out_test_pm=test_pm is not train_pm, test_prompts=len(prompts),
                          rl_prompts=0, rl_seconds=0.0, rl_history=[], sqrt_kl_fits=_fits(points),
                          sqrt_kl=[math.sqrt(max(0.0, p["kl"])) for p in points])


def run_rl(cfg: FrontierConfig, policy: Any, train_pm: Any, test_pm: Any | None = None, base_path: str | None = None,
           progress: Any = None) -> FrontierResult:
    """RLOO against the training PM (``selfalign rlhf rl``), then one point per snapshot (step 0 =
    the initial policy): KL from the initial policy, both PMs' rewards and gold accuracy."""
    require_pm(cfg)
    from selfalign.critique.bon import qa_prompt
    from selfalign.data.formats import load_qa
    from selfalign.models.registry import require_trainable
    from selfalign.train.rloo import snapshots, train_rloo

    test_pm = test_pm or train_pm
    items, prompts = _held_out(cfg)
    rl_items = [it for it in load_qa("bundled", split="train") if it.answerable][:cfg.n_rl_prompts]
    base = base_path or require_trainable(cfg.policy, "policy")
    if progress:
        progress(f"RLOO on {len(rl_items)} prompts against the training PM (beta {cfg.rl.beta})")
    rl_prompts = [[m.to_dict() for m in qa_prompt(it.question)] for it in rl_items]
    res = train_rloo(rl_prompts, train_pm.rewards, train_pm.model_id, base, Path(cfg.out) / "rl", cfg.rl,
                     base_id=cfg.policy, monitor=step_monitor(rl_items, rl_prompts, test_pm))
    final = max((int(h.get("step", 0)) for h in res.history or []), default=0)
    snaps = [(s, p) for s, p in snapshots(Path(cfg.out) / "rl") if s < final]
    steps: list[tuple[int, Any]] = [(0, None), *snaps, (max(final, 1), res.model_dir)]
    points = []
    for step, path in steps:
        if progress:
            progress(f"scoring RL step {step}")
        model = policy if path is None else policy.sibling(str(path))
        points.append(policy_point(model, policy, items, prompts, train_pm, test_pm, cfg, step))
    vs_initial(points, cfg.bootstrap, cfg.seed)
    return FrontierResult(points=points, held_out_test_pm=test_pm is not train_pm, rl_history=res.history or [],
                          rl_seconds=res.seconds, test_prompts=len(prompts), rl_prompts=len(rl_prompts),
                          rl_model=str(res.model_dir), sqrt_kl=[math.sqrt(max(0.0, p["kl"])) for p in points],
                          sqrt_kl_fits=_fits(points))


def run(cfg: FrontierConfig, policy: Any, train_pm: Any, test_pm: Any | None = None, base_path: str | None = None,
        progress: Any = None) -> FrontierResult:
    """BoN points, an RL run with snapshots, and each snapshot's point. ``policy`` is store-wrapped."""
    bon = run_bon(cfg, policy, train_pm, test_pm, progress)
    rl = run_rl(cfg, policy, train_pm, test_pm, base_path, progress)
    return replace(rl, points=bon.points + rl.points, sqrt_kl=bon.sqrt_kl + rl.sqrt_kl,
                   sqrt_kl_fits={**bon.sqrt_kl_fits, **rl.sqrt_kl_fits})


def headline(frontier: FrontierResult) -> dict[str, Any]:
    """The numbers ``selfalign runs`` lists for a frontier run (percent, 95% intervals): the gold
    accuracy of the initial policy, of Best-of-N at its largest N and of RL at its last step."""
    def pct(ci: dict[str, Any]) -> dict[str, float]:
        return {k: 100 * float(ci[k]) for k in ("value", "lo", "hi")}

    pts = frontier.points
    out: dict[str, Any] = {}
    first = next((p for p in pts if p["method"] == "rl" and p.get("step") == 0), None) or \
        next((p for p in pts if p["method"] == "bon" and p.get("n") == 1), None)
    if first:
        out["initial gold %"] = pct(first["gold"])
    bon = [p for p in pts if p["method"] == "bon"]
    if bon:
        top = max(bon, key=lambda p: p["n"])
        out[f"BoN N={top['n']} gold %"] = pct(top["gold"])
    rl = [p for p in pts if p["method"] == "rl"]
    if rl:
        last = max(rl, key=lambda p: p["step"])
        out[f"RL step {last['step']} gold %"] = pct(last["gold"])
    return out
