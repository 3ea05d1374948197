"""Iterated online RLHF after Bai et al. 2022 (HH, arXiv 2204.05862, §4.5).

Each round:

1. the **current** policy samples ``samples`` answers to that round's training questions (a new
   slice of the bundled QA train split each round, as HH collected new comparisons each week);
2. the samples become preference pairs with a gold label (:func:`selfalign.reward.pairs.verifiable_pairs`:
   an answer with the gold answer beats one without; "I don't know" beats a wrong answer to a
   question no sample answers), the place where HH used crowdworkers;
3. the preference model is retrained from the base on the pairs of **all** rounds so far;
4. the policy is trained with RL (RLOO with a KL penalty, :mod:`selfalign.train.rloo`) from the
   current policy against that PM;
5. the new policy is evaluated on held-out questions: gold accuracy of its samples and the PM's
   mean reward, with intervals (every RL step also logs the gold accuracy of its own training
   samples and the KL estimates of :mod:`selfalign.train.rloo`).

Every sample and reward goes through the store and every training is skipped when its inputs are
unchanged, so a killed run, re-run, resumes at the step it stopped in and repeats nothing.

Deviations: HH's online rounds used human comparisons of the deployed model's conversations and PPO;
here labels come from gold answers (so the PM can be checked exactly) and RL is RLOO. The PM is
retrained from the base each round (HH fine-tuned on the union), the policy continues from the
previous round's (as HH did).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfalign.train.reward import PMConfig
from selfalign.train.rloo import RLOOTrainConfig


@dataclass
class OnlineConfig:
    policy: str = "smollm2-135m"  # the initial policy (also the PM's base)
    rounds: int = 2
    questions_per_round: int = 100  # new bundled train questions each round
    samples: int = 4  # answers per question (the pairs come from these)
    n_test: int = 100  # held-out questions (bundled test split)
    eval_samples: int = 4
    temperature: float = 1.0
    max_tokens: int = 32
    pm: PMConfig = field(default_factory=PMConfig)
    rl: RLOOTrainConfig = field(default_factory=lambda: RLOOTrainConfig(max_steps=20))
    store: str = ""
    out: str = "runs/rlhf-online"
    seed: int = 0
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.pm, dict):
            self.pm = PMConfig(**self.pm)
        if isinstance(self.rl, dict):
            self.rl = RLOOTrainConfig(**self.rl)
        if self.rounds < 1 or self.questions_per_round < 1 or self.n_test < 1:
            raise ValueError("rounds, questions_per_round and n_test must be >= 1")
        if self.samples < 2 or self.eval_samples < 1:
            raise ValueError("samples must be >= 2 (a pair needs two answers) and eval_samples >= 1")
        from selfalign.data.formats import load_qa

        have = sum(1 for q in load_qa("bundled", split="train") if q.answerable)
        if self.rounds * self.questions_per_round > have:
            raise ValueError(f"{self.rounds} rounds x {self.questions_per_round} questions need "
                             f"{self.rounds * self.questions_per_round} training questions; the bundled train split "
                             f"has {have}")


@dataclass
class OnlineResult:
    """One row per round (0 = the initial policy): its policy, pairs, PM, RL run and held-out scores."""
    rounds: list[dict[str, Any]]
    test_questions: int


def run(cfg: OnlineConfig, store: Any = None, base_path: str | None = None,
        progress: Callable[[str], None] | None = None) -> OnlineResult:
    from selfalign.critique.bon import qa_prompt
    from selfalign.data.formats import load_qa
    from selfalign.evals.stats import mean_ci
    from selfalign.judges.correctness import contains_answer
    from selfalign.models.hf import HFModel
    from selfalign.models.registry import require_trainable
    from selfalign.reward.pairs import verifiable_pairs
    from selfalign.train.reward import CachedPM, PreferenceModel, train_pm
    from selfalign.rlhf.frontier import step_monitor
    from selfalign.store.cache import CachedModel, Store
    from selfalign.train.rloo import train_rloo
    from selfalign.types import GenParams, GenRequest

    say = progress or (lambda m: None)
    store = store if store is not None else Store(cfg.store or None)
    base = base_path or require_trainable(cfg.policy, "policy")
    train_qs = [q for q in load_qa("bundled", split="train") if q.answerable]
    test_qs = [q for q in load_qa("bundled", split="test") if q.answerable][: cfg.n_test]
    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    test_prompts = [qa_prompt(q.question) for q in test_qs]
    policy_dir, policy_id = base, cfg.policy
    all_pairs: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []

    def evaluate(model_dir: str, pm: Any, label: str) -> dict[str, Any]:
        pol = CachedModel(HFModel(model_dir), store, description=f"online: eval {label}")
        res = pol.generate([GenRequest(p, params, n=cfg.eval_samples, seed=cfg.seed + 1) for p in test_prompts],
                           description=f"online: held-out samples ({label})")
        gold = [sum(contains_answer(t, q.answers) for t in r.texts) / len(r.texts) for q, r in zip(test_qs, res)]
        flat_p = [p for p, r in zip(test_prompts, res) for _ in r.texts]
        rewards = pm.rewards(flat_p, [t for r in res for t in r.texts])
        per_q = [sum(rewards[i * cfg.eval_samples:(i + 1) * cfg.eval_samples]) / cfg.eval_samples
                 for i in range(len(test_qs))]
        return {"gold": mean_ci(gold, cfg.bootstrap, cfg.seed), "pm_reward": mean_ci(per_q, cfg.bootstrap, cfg.seed)}

    for r in range(1, cfg.rounds + 1):
        out = Path(cfg.out) / f"round{r}"
        qs = train_qs[(r - 1) * cfg.questions_per_round: r * cfg.questions_per_round]
        prompts = [qa_prompt(q.question) for q in qs]
        say(f"round {r}: {len(qs)} questions x {cfg.samples} samples from the current policy")
        pol = CachedModel(HFModel(policy_dir), store, description=f"online round {r}")
        res = pol.generate([GenRequest(p, params, n=cfg.samples, seed=cfg.seed) for p in prompts],
                           description=f"online round {r}: samples")
        pairs = verifiable_pairs(qs, [x.texts for x in res], prompts, 1, cfg.seed)
        for p in pairs:
            p.setdefault("meta", {})["round"] = r
        all_pairs += pairs
        say(f"round {r}: PM on {len(all_pairs)} pairs from rounds 1-{r}")
        pm_res = train_pm(all_pairs, base, out / "pm", cfg.pm, base_id=cfg.policy)
        pm = CachedPM(PreferenceModel(str(pm_res.model_dir), cfg.pm.max_length, cfg.pm.score_batch_tokens), store)
        if r == 1:
            rounds.append({"round": 0, "policy": policy_dir, **evaluate(policy_dir, pm, "initial policy, round-1 PM")})
        say(f"round {r}: RL (RLOO, beta {cfg.rl.beta}) from the current policy against the round-{r} PM")
        rl_prompts = [[m.to_dict() for m in p] for p in prompts]
        rl = train_rloo(rl_prompts, pm.rewards, pm.model_id, policy_dir, out / "policy", cfg.rl,
                        base_id=f"{policy_id}", monitor=step_monitor(qs, rl_prompts))
        policy_dir, policy_id = str(rl.model_dir), f"{policy_id}+online{r}"
        rounds.append({"round": r, "policy": policy_dir, "pairs_new": len(pairs), "pairs_total": len(all_pairs),
                       "pm_dir": str(pm_res.model_dir), "pm_skipped": pm_res.skipped, "rl_skipped": rl.skipped,
                       "rl_seconds": rl.seconds, "rl_history": rl.history or [],
                       **evaluate(policy_dir, pm, f"round {r}")})
    return OnlineResult(rounds=rounds, test_questions=len(test_qs))
