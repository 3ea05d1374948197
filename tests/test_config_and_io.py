from dataclasses import dataclass, field

import pytest

from selfalign.config import ConfigError, config_from_yaml, load_config
from selfalign.data.io import DataError, read_jsonl, write_jsonl
from selfalign.honesty.pipeline import HonestyConfig


@dataclass
class Inner:
    epochs: float = 1.0


@dataclass
class Outer:
    temperature: float = 1.0
    methods: list[str] = field(default_factory=list)
    train: Inner = field(default_factory=Inner)
    flag: bool = False


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(ConfigError, match="unknown key 'temprature' in Outer \\(did you mean 'temperature'\\?\\)"):
        load_config(Outer, {"temprature": 0.5})
    with pytest.raises(ConfigError, match="'epoch' in Inner \\(did you mean 'epochs'"):
        load_config(Outer, {"train": {"epoch": 2}})


def test_types_are_checked_and_coerced():
    cfg = load_config(Outer, {"temperature": "0.5", "methods": ["a"], "train": {"epochs": 3}, "flag": "true"})
    assert cfg.temperature == 0.5 and cfg.train.epochs == 3.0 and cfg.flag is True
    with pytest.raises(ConfigError, match="temperature: expected float"):
        load_config(Outer, {"temperature": "hot"})
    with pytest.raises(ConfigError, match="methods: expected a list"):
        load_config(Outer, {"methods": "absolute"})


def test_yaml_with_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("temperature: 0.7\ntrain:\n  epochs: 2\n")
    cfg = config_from_yaml(Outer, p, ["train.epochs=5", "methods=[x, y]"])
    assert cfg.temperature == 0.7 and cfg.train.epochs == 5 and cfg.methods == ["x", "y"]
    (tmp_path / "bad.yaml").write_text("a: [1,\nb: 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: line"):
        config_from_yaml(Outer, tmp_path / "bad.yaml")


def test_honesty_config_rejects_unknown_methods():
    with pytest.raises(ConfigError, match="unknown method"):
        load_config(HonestyConfig, {"methods": ["absolut"]})
    with pytest.raises(ConfigError, match="did you mean 'samples'"):
        load_config(HonestyConfig, {"sample": 3})


def test_jsonl_errors_name_file_line_and_columns(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"prompt": "a"}\n\n{"prompt": "b"\n')
    with pytest.raises(DataError, match=r"x.jsonl:3: invalid JSON"):
        read_jsonl(p)
    p.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: missing column\(s\) 'prompt'; expected columns: prompt; found: text"):
        read_jsonl(p, required=["prompt"])
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_write_jsonl_is_atomic(tmp_path):
    p = write_jsonl(tmp_path / "o.jsonl", [{"a": 1}, {"b": "é"}])
    assert read_jsonl(p) == [{"a": 1}, {"b": "é"}]
    assert not (tmp_path / "o.jsonl.tmp").exists()
