"""Precision chosen from what the hardware does natively: training's, and the bf16-or-fp32 rule
inference uses (:func:`selfalign.models.hf.inference_dtype`). It lives with the models because
both sides use it and it imports nothing first-party.

TRL's configs default to ``bf16=True``. On a CPU without native bf16 arithmetic (x86 without
AVX-512 BF16 or AMX, most laptops and many cloud EPYC/Xeon parts) PyTorch emulates bf16 and
training is an order of magnitude slower than fp32: on a 2-core AVX2-only AMD EPYC,
``bench/train.py`` measured 120 s per SFT step in bf16 against 6.7 s in fp32 (docs/RESULTS.md).
So ``auto`` picks:

* CUDA device: bf16 where the GPU supports it (Ampere and newer), else fp16;
* CPU with native bf16 (x86 ``avx512_bf16`` or ``amx_bf16``; Arm ``bf16``): bf16;
* any other CPU: fp32.

A config may force ``fp32``, ``bf16`` or ``fp16``; ``bench/train.py`` measures which is faster
on the machine it runs on.

>>> choose_precision("auto", cuda=False, flags={"avx2", "fma"}).name
'fp32'
>>> choose_precision("auto", cuda=False, flags={"avx2", "avx512f", "avx512_bf16"}).name
'bf16'
>>> choose_precision("bf16", cuda=False, flags={"avx2"}).reason
'forced by the config (train.precision: bf16)'
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: CPU feature flags (as /proc/cpuinfo names them) that mean bf16 arithmetic in hardware
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    reason: str

    def trainer_kwargs(self) -> dict[str, bool]:
        """The ``TrainingArguments`` switches for this precision (both are always set: TRL
        defaults ``bf16`` to True)."""
        return {"bf16": self.name == "bf16", "fp16": self.name == "fp16"}

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def cpu_flags() -> set[str]:
    """The CPU's feature flags: x86 'flags' or Arm 'Features' from /proc/cpuinfo (empty where
    there is none, e.g. macOS: fp32 is then the safe answer)."""
    path = Path("/proc/cpuinfo")
    flags: set[str] = set()
    try:
        text = path.read_text()
    except OSError:
        return flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_cpu_bf16(flags: set[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def choose_precision(requested: str = "auto", cuda: bool | None = None, flags: set[str] | None = None) -> Precision:
    """The precision to train in; ``cuda``/``flags`` default to this machine's."""
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return Precision(requested, f"forced by the config (train.precision: {requested})")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        import torch

        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "CUDA device with bf16 support")
        return Precision("fp16", "CUDA device without bf16 support")
    flags = cpu_flags() if flags is None else flags
    present = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if present:
        return Precision("bf16", f"CPU with native bf16 ({', '.join(present)})")
    return Precision("fp32", "CPU without native bf16 (no avx512_bf16/amx_bf16/bf16 flag): bf16 would be emulated, "
                             "far slower (bench/train.py measures it)")
