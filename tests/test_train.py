"""Shared training pieces: precision chosen from the hardware, TRL's defaults overridden,
the `python -m` entry point."""

import json

import pytest

from conftest import kill_training_at
from selfalign.config import ConfigError, load_config
from selfalign.models import precision as prec
from selfalign.train.base import TrainConfig, trainer_args

ROWS = [{"prompt": [{"role": "user", "content": f"Q{i}"}], "completion": [{"role": "assistant", "content": "Paris"}]}
        for i in range(8)]


def test_a_cpu_without_native_bf16_trains_in_fp32(monkeypatch, tmp_path):
    from trl import SFTConfig

    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2", "fma", "avx512f"})  # AVX-512 but no BF16 extension
    p = prec.choose_precision("auto", cuda=False)
    assert p.name == "fp32" and "without native bf16" in p.reason
    args = SFTConfig(**trainer_args(TrainConfig(), tmp_path, p))
    assert args.bf16 is False and args.fp16 is False  # TRL alone would say bf16=True
    assert not args.gradient_checkpointing  # TRL alone would say True


def test_a_cpu_with_native_bf16_trains_in_bf16(monkeypatch):
    for flag in ("avx512_bf16", "amx_bf16", "bf16"):
        monkeypatch.setattr(prec, "cpu_flags", lambda f=flag: {"avx2", f})
        assert prec.choose_precision("auto", cuda=False).name == "bf16"


def test_the_config_overrides_the_choice(monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2"})
    assert prec.choose_precision("bf16", cuda=False).name == "bf16"
    assert prec.choose_precision("fp32", cuda=False).trainer_kwargs() == {"bf16": False, "fp16": False}
    with pytest.raises(ConfigError, match="precision must be one of"):
        load_config(TrainConfig, {"precision": "int4"})


def test_cpu_flags_reads_this_machine():
    flags = prec.cpu_flags()
    import platform

    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        assert "sse2" in flags  # every x86-64 CPU has it: proves the parser read the flags line


def test_sft_records_the_precision_it_chose(tiny_model_dir, tmp_path, monkeypatch):
    from selfalign.train.sft import train_sft

    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2"})
    cfg = TrainConfig(epochs=1, batch_size=4, lora_r=4, max_steps=1)
    res = train_sft(ROWS, str(tiny_model_dir), tmp_path / "out", cfg)
    info = json.loads((tmp_path / "out" / "train.json").read_text())
    assert res.precision == info["precision"] == "fp32"
    # a precision change alone does not invalidate the trained model (same weights asked for)
    again = train_sft(ROWS, str(tiny_model_dir), tmp_path / "out", TrainConfig(**{**vars(cfg), "precision": "fp32"}))
    assert again.skipped


def test_output_layer_on_labelled_positions_only_gives_the_same_losses_and_weights(tiny_model_dir, tmp_path):
    """TRL scores every position on a CPU; scoring only the labelled ones must change nothing but time."""
    import torch
    import trl.trainer.utils as tu
    from safetensors.torch import load_file

    from selfalign.train.base import completion_positions_only
    from selfalign.train.sft import train_sft

    rows = [{"prompt": [{"role": "user", "content": f"Question number {i} about a long topic " * (1 + i % 3)}],
             "completion": [{"role": "assistant", "content": "Paris" + " is it" * (i % 4)}]} for i in range(8)]
    out = {}
    for on in (False, True):
        cfg = TrainConfig(epochs=1, batch_size=4, lora_r=4, max_steps=2, logging_steps=1, warmup_ratio=0.0,
                          labelled_positions_only=on, precision="fp32")
        res = train_sft(rows, str(tiny_model_dir), tmp_path / f"on{on}", cfg)
        assert tu._use_triton(torch.device("cpu")) is on  # the option reached TRL's decision
        weights = load_file(str(next((tmp_path / f"on{on}" / "model").glob("*.safetensors"))))
        out[on] = (res.losses, weights)
    completion_positions_only(False)
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-4)
    assert len(out[True][0]) == 2
    for k, w in out[False][1].items():
        assert torch.allclose(w, out[True][1][k], atol=1e-5), k


def test_the_attention_kernel_while_training_changes_speed_not_losses(tiny_model_dir, tmp_path, monkeypatch):
    """auto = eager on a CPU; eager and SDPA train to the same losses and share one fingerprint."""
    import torch
    import transformers

    from selfalign.train.base import attn_kwargs
    from selfalign.train.sft import fingerprint, train_sft

    assert attn_kwargs(TrainConfig()) == ({} if torch.cuda.is_available() else {"attn_implementation": "eager"})
    assert attn_kwargs(TrainConfig(attn_implementation="sdpa")) == {"attn_implementation": "sdpa"}
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        TrainConfig(attn_implementation="fast")  # a typo fails when the config is read, before any work
    asked: list = []
    orig = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*a, **kw):
        asked.append(kw.get("attn_implementation"))
        return orig(*a, **kw)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    losses = {}
    for attn in ("eager", "sdpa"):
        cfg = TrainConfig(epochs=1, batch_size=4, lora_r=4, max_steps=2, logging_steps=1, warmup_ratio=0.0,
                          precision="fp32", attn_implementation=attn)
        losses[attn] = train_sft(ROWS, str(tiny_model_dir), tmp_path / attn, cfg).losses
    assert asked == ["eager", "sdpa"]  # the option reached the model
    assert len(losses["eager"]) == 2 and losses["eager"] == pytest.approx(losses["sdpa"], rel=1e-4)
    assert fingerprint("b", ROWS, TrainConfig(attn_implementation="eager")) == fingerprint("b", ROWS, TrainConfig())


def test_python_m_entry_point(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = subprocess.run([sys.executable, "-m", "selfalign.train.sft", "--rows", str(rows), "--base", str(tiny_model_dir),
                          "--out", str(tmp_path / "m"), "--set", "max_steps=1", "--set", "lora_r=4",
                          "--set", "batch_size=4"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1].split(":", 1)[1])
    assert res["model_dir"].endswith("model") and (tmp_path / "m" / "model" / "config.json").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Q"}\n')
    for extra, message in (([], "bad.jsonl:1: missing column(s) 'completion'"), (["--set", "lr=1"], "unknown key 'lr'")):
        out = subprocess.run([sys.executable, "-m", "selfalign.train.sft", "--rows", str(bad), "--base", str(tiny_model_dir),
                              "--out", str(tmp_path / "bad"), *extra], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "bad").exists()


PAIRS = [{"prompt": [{"role": "user", "content": f"Q{i}"}], "chosen": [{"role": "assistant", "content": "Paris"}],
          "rejected": [{"role": "assistant", "content": "Lima, I think, or maybe not"}]} for i in range(8)]


def _kd_rows() -> list[dict]:
    """Context-distillation rows (selfalign.rlhf.distill.distill_rows' shape): 3 teacher tokens per
    answer position, their log-probabilities leaving 0.4 for the rest."""
    import math

    rows = []
    for i in range(8):
        ids = [5 + (7 * i + j) % 40 for j in range(10)]
        pos = list(range(6, 9))
        rows.append({"input_ids": ids, "positions": pos, "teacher_ids": [[ids[p + 1], 3, 4] for p in pos],
                     "teacher_logprobs": [[math.log(0.4), math.log(0.15), math.log(0.05)] for _ in pos]})
    return rows


# (entry point, rows, extra arguments, is the saved model a causal LM whose weights must have moved)
ENTRY_POINTS = {
    "sft": ("selfalign.train.sft", ROWS, [], True),
    "dpo": ("selfalign.train.dpo", PAIRS, ["--set", "beta=0.5"], True),
    "pm": ("selfalign.train.reward", PAIRS, [], False),
    "rloo": ("selfalign.train.rloo", [{"prompt": r["prompt"]} for r in ROWS],
             ["--reward-model", "{base}", "--set", "num_generations=2", "--set", "max_completion_length=4"], True),
    "distill": ("selfalign.train.distill", None, [], True),
}


@pytest.mark.parametrize("method", list(ENTRY_POINTS))
def test_accelerate_launch_two_cpu_processes(method, tiny_model_dir, tmp_path):
    """Every trainer data-parallel under `accelerate launch` (two CPU processes, gloo): both
    processes finish, rank 0 saves a model that loads (and, for a policy, differs from the base)."""
    import os
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    module, rows, extra, causal = ENTRY_POINTS[method]
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists():
        launcher = Path(shutil.which("accelerate") or "accelerate")
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows if rows is not None else _kd_rows())))
    # on a machine without GPUs, --multi_gpu is torchrun with the gloo backend (accelerate's --cpu
    # with several processes means its MPI launcher, which needs mpirun and oneCCL)
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", module, "--rows", str(path), "--base", str(tiny_model_dir),
           "--out", str(tmp_path / "ddp"), "--set", "max_steps=2", "--set", "lora=false", "--set", "batch_size=2",
           "--set", "learning_rate=0.01", *[a.format(base=tiny_model_dir) for a in extra]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(m) for m in re.findall(r"selfalign-train: (\{[^{}]*\})", out.stdout)]
    assert sorted(r["process"] for r in results) == [0, 1] and all(r["world_size"] == 2 for r in results)
    saved = tmp_path / "ddp" / "model"
    assert json.loads((tmp_path / "ddp" / "train.json").read_text())["n_rows"] == 8
    if causal:
        before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
        after = AutoModelForCausalLM.from_pretrained(saved).state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
    else:  # the PM: a sequence-classification model with its trained scalar head
        pm = AutoModelForSequenceClassification.from_pretrained(saved)
        assert pm.config.num_labels == 1


def test_the_scripts_refuse_bad_options_before_loading(tiny_model_dir, tmp_path):
    """The RL script checks its PM folder and its rows' prompts, the distillation script its rows'
    shapes, before anything loads."""
    import subprocess
    import sys

    rows = tmp_path / "p.jsonl"
    rows.write_text(json.dumps({"prompt": "not messages"}) + "\n")
    for pm, message in ((tmp_path / "nope", "not a saved preference model"), (tiny_model_dir, "p.jsonl:1: field 'prompt'")):
        out = subprocess.run([sys.executable, "-m", "selfalign.train.rloo", "--rows", str(rows), "--base",
                              str(tiny_model_dir), "--out", str(tmp_path / "rl"), "--reward-model", str(pm)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "rl").exists()
    bad = _kd_rows()
    bad[1]["teacher_logprobs"] = bad[1]["teacher_logprobs"][:2]  # 3 positions, 2 log-prob lists
    rows.write_text("".join(json.dumps(r) + "\n" for r in bad))
    for module in ("selfalign.train.distill", "selfalign.rlhf.distill"):  # the earlier name runs the same script
        out = subprocess.run([sys.executable, "-m", module, "--rows", str(rows), "--base",
                              str(tiny_model_dir), "--out", str(tmp_path / "kd")], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "p.jsonl:2: 3 positions but 3 teacher_ids and 2 teacher_logprobs" in out.stderr, out.stderr
        assert not (tmp_path / "kd").exists()


@pytest.mark.parametrize("old,new", [("selfalign.reward.pm", "selfalign.train.reward"),
                                     ("selfalign.rlhf.train_rl", "selfalign.train.rloo"),
                                     ("selfalign.rlhf.distill", "selfalign.train.distill")])
def test_every_trainer_lives_under_train_and_its_earlier_name_still_runs(old, new, tmp_path):
    """The PM, RL and distillation trainers moved under train/ (TRL's shape: config + trainer +
    script); the earlier module names are aliases that run the same script."""
    import importlib
    import subprocess
    import sys

    assert importlib.import_module(old).main is importlib.import_module(new).main
    extra = ["--reward-model", str(tmp_path)] if new.endswith("rloo") else []
    out = subprocess.run([sys.executable, "-m", old, "--rows", str(tmp_path / "missing.jsonl"), "--base", "x",
                          "--out", str(tmp_path / "o"), *extra], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "missing.jsonl" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_python_config_and_a_yaml_config_fingerprint_alike(tmp_path):
    """epochs=2 from Python and epochs: 2 through YAML (coerced to the declared float) are the same
    training, so a finished run is reused whichever way the config came."""
    from selfalign.config import config_from_yaml
    from selfalign.train.base import TrainConfig, fingerprint

    rows = [{"prompt": "a", "completion": "b"}]
    a = TrainConfig(epochs=2, learning_rate=1)
    b = config_from_yaml(TrainConfig, None, ["epochs=2", "learning_rate=1"])
    assert fingerprint("sft", "m", rows, a, ("prompt", "completion")) == fingerprint("sft", "m", rows, b, ("prompt", "completion"))


def test_the_precision_training_runs_in_is_part_of_the_fingerprint(monkeypatch):
    """bf16 and fp32 train different weights (different losses on the same rows), so a model
    trained in one is never reused for the other; ``auto`` counts as what it resolves to here."""
    from selfalign.train.base import TrainConfig, fingerprint

    rows, cols = [{"prompt": "a", "completion": "b"}], ("prompt", "completion")

    def fp(precision: str) -> str:
        return fingerprint("sft", "m", rows, TrainConfig(precision=precision), cols)

    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2"})  # no native bf16: auto = fp32
    assert fp("auto") == fp("fp32") != fp("bf16")
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2", "avx512_bf16"})  # native bf16: auto = bf16
    assert fp("auto") == fp("bf16") != fp("fp32")


def test_a_finished_training_is_reused_only_while_its_record_matches_the_disk(tmp_path):
    """TrainingRun decides reuse through the one freshness check (RunDir.step_is_fresh): the same
    fingerprint with the model and train.json unchanged is reused; another fingerprint, a changed
    weight file or a deleted train.json is not."""
    from selfalign.models.precision import choose_precision
    from selfalign.train.base import TrainConfig, TrainingRun
    from selfalign.train.dpo import DPOResult

    run = TrainingRun(tmp_path / "t", "fp-1")
    assert run.finished(3) is None and not (tmp_path / "t").exists()  # asking creates nothing
    run.model_dir.mkdir(parents=True)
    (run.model_dir / "config.json").write_text("{}")
    (run.model_dir / "model.safetensors").write_bytes(b"weights")
    run.finish([1.0, 0.5], 3, "base", TrainConfig(), choose_precision("fp32"), {"margins": [0.1, 0.2]})
    again = TrainingRun(tmp_path / "t", "fp-1").finished(3, DPOResult, ("margins",))
    assert isinstance(again, DPOResult) and again.skipped and again.losses == [1.0, 0.5] and again.margins == [0.1, 0.2]
    assert TrainingRun(tmp_path / "t", "fp-2").finished(3) is None
    (run.model_dir / "model.safetensors").write_bytes(b"weightz")
    assert TrainingRun(tmp_path / "t", "fp-1").finished(3) is None
    (run.model_dir / "model.safetensors").write_bytes(b"weights")
    assert TrainingRun(tmp_path / "t", "fp-1").finished(3) is not None
    # a training finished before step records were kept (train.json only) is adopted, not retrained
    record = tmp_path / "t" / "steps" / "training.json"
    record.unlink()
    assert TrainingRun(tmp_path / "t", "fp-2").finished(3) is None and not record.exists()
    assert TrainingRun(tmp_path / "t", "fp-1").finished(3) is not None and record.exists()
    run.done.unlink()
    assert TrainingRun(tmp_path / "t", "fp-1").finished(3) is None


class _Killed(Exception):
    pass


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_a_training_killed_after_a_checkpoint_resumes_to_the_uninterrupted_one(method, tiny_model_dir, tmp_path,
                                                                               monkeypatch):
    """Issue 26: killed after step 3 (checkpoint at 2, logs every 3 steps), re-run: the same weights,
    byte for byte, and the same train.json but for wall times. Fails without
    :class:`selfalign.train.base.ResumeState`: the resumed run's first loss averages step 3 alone
    instead of steps 1-3, its running token count restarts at the resume, its train_loss covers
    only the steps after it."""
    import selfalign.train.base as base
    from selfalign.train.dpo import DPOTrainConfig, train_dpo
    from selfalign.train.sft import train_sft

    rows = [{"prompt": [{"role": "user", "content": f"Question {i} " * (1 + i % 3)}],
             "completion": [{"role": "assistant", "content": "Paris" + " is" * (i % 4)}]} for i in range(12)]
    if method == "dpo":
        rows = [{"prompt": r["prompt"], "chosen": r["completion"],
                 "rejected": [{"role": "assistant", "content": f"Lima {i}"}]} for i, r in enumerate(rows)]
    kw = dict(epochs=1, batch_size=2, lora_r=4, logging_steps=3, save_steps=2, precision="fp32")
    cfg = DPOTrainConfig(**kw) if method == "dpo" else TrainConfig(**kw)
    train = train_dpo if method == "dpo" else train_sft

    def text(out):
        info = json.loads((out / "train.json").read_text())
        for k in ("seconds",):
            info.pop(k)
        for h in info["log_history"]:
            for k in ("train_runtime", "train_samples_per_second", "train_steps_per_second"):
                h.pop(k, None)
        return info, (out / "model" / "model.safetensors").read_bytes()

    train(rows, str(tiny_model_dir), tmp_path / "whole", cfg)

    undo = kill_training_at(monkeypatch, 3, _Killed)
    with pytest.raises(_Killed):
        train(rows, str(tiny_model_dir), tmp_path / "killed", cfg)
    assert (tmp_path / "killed" / "checkpoints" / "checkpoint-2" / base.ResumeState.FILE).exists()
    undo()
    train(rows, str(tiny_model_dir), tmp_path / "killed", cfg)
    whole, killed = text(tmp_path / "whole"), text(tmp_path / "killed")
    assert [h.get("num_tokens") for h in killed[0]["log_history"]] == [h.get("num_tokens") for h in whole[0]["log_history"]]
    assert killed[0] == whole[0]
    assert killed[1] == whole[1]
    assert len(whole[0]["losses"]) == 2 and whole[0]["log_history"][-1]["train_loss"] > 0
