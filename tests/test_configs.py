"""Every shipped config loads strictly into the config class of its stage."""

from pathlib import Path

import pytest

from selfalign.config import ConfigError, config_from_yaml
from selfalign.honesty.pipeline import HonestyConfig
from selfalign.rlhf.quick import QuickConfig
from selfalign.synth.backtranslation import BacktranslationConfig
from selfalign.synth.evol_instruct import EvolConfig
from selfalign.synth.llm2llm import LLM2LLMConfig
from selfalign.synth.redteam import RedTeamConfig
from selfalign.synth.self_instruct import SelfInstructConfig
from selfalign.train.base import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
KINDS = (HonestyConfig, SelfInstructConfig, EvolConfig, BacktranslationConfig, LLM2LLMConfig, RedTeamConfig, TrainConfig,
         QuickConfig)


def test_there_are_configs():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    errors = []
    for kind in KINDS:
        try:
            config_from_yaml(kind, path)
            return
        except ConfigError as e:
            errors.append(f"{kind.__name__}: {e}")
    raise AssertionError(f"{path.name} loads into no config class:\n" + "\n".join(errors))
