"""The quick RLHF pipeline on one config: split-half preference models -> Best-of-N and RL against
PM_A, scored by PM_B and by gold answers -> the frontier plot against sqrt(KL).

Bai et al. 2022 (HH, arXiv 2204.05862) §4.2-4.3 in one command: ``selfalign rlhf quick -c
configs/rlhf-quick.yaml``. The ``pm`` section is a :class:`~selfalign.reward.run.PMRunConfig` (pairs
made from the policy's own samples with gold labels by default), the ``frontier`` section a
:class:`~selfalign.rlhf.frontier.FrontierConfig` whose ``pm``/``test_pm`` are the two halves' PMs.
Both are validated before anything runs; every step is resumable (store + training fingerprints),
so a re-run after it completes only re-reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from selfalign.reward.run import PMRunConfig, SplitHalfResult
from selfalign.rlhf.frontier import PENDING, FrontierConfig, FrontierResult


@dataclass
class QuickConfig:
    policy: str = "smollm2-135m"
    out: str = "runs/rlhf-quick"
    store: str = ""
    pm: PMRunConfig = field(default_factory=PMRunConfig)
    frontier: FrontierConfig = field(default_factory=FrontierConfig)

    def __post_init__(self) -> None:
        if isinstance(self.pm, dict):
            self.pm = PMRunConfig(**self.pm)
        if isinstance(self.frontier, dict):
            self.frontier = FrontierConfig(**self.frontier)
        # one policy, one store, one output tree for both stages
        self.pm = replace(self.pm, base=self.policy, policy=self.policy, store=self.store,
                          out=str(Path(self.out) / "pm"))
        self.frontier = replace(self.frontier, policy=self.policy, store=self.store, pm=PENDING,
                                out=str(Path(self.out) / "frontier"))


@dataclass
class QuickResult:
    """The split-half PMs' run, the frontier (BoN and RL points) and the frontier config it ran with."""
    split_half: SplitHalfResult
    frontier: FrontierResult
    frontier_config: FrontierConfig


def run(cfg: QuickConfig, policy: Any, store: Any, progress: Callable[[str], None] | None = None) -> QuickResult:
    """``policy``: the store-wrapped policy model (samples for the pairs, BoN and RL evaluation)."""
    from selfalign.train.reward import CachedPM, PreferenceModel
    from selfalign.reward.run import split_half
    from selfalign.rlhf.frontier import run as frontier

    sh = split_half(cfg.pm, policy, store, progress=progress)
    a, b = sh.summary["pms"]["a"]["pm_dir"], sh.summary["pms"]["b"]["pm_dir"]
    fcfg = replace(cfg.frontier, pm=a, test_pm=b)
    train = CachedPM(PreferenceModel(a, fcfg.rl.max_length), store)
    test = CachedPM(PreferenceModel(b, fcfg.rl.max_length), store)
    res = frontier(fcfg, policy, train, test, progress=progress)
    return QuickResult(split_half=sh, frontier=res, frontier_config=fcfg)
