"""Model names -> backends, loaded lazily (an optional backend's import error never breaks the CLI).

Spec grammar:

* ``smollm2-135m`` (or ``embedded``, or nothing): the embedded default model
* ``hf:<hub id or local path>`` or an existing local directory: the ``hf`` backend
* ``openai:<model>`` with ``base_url`` (option or ``$SELFALIGN_OPENAI_BASE_URL``)
* ``vllm:<hub id or path>`` (extra ``selfalign[vllm]``)
* ``scripted`` or ``scripted:<path.json>`` (a JSON of ``{"rules": {...}, "default": ...}``)
* ``ray:<N>:<any spec above>``: that model served by N Ray actors (extra ``selfalign[ray]``,
  :mod:`selfalign.models.ray_pool`); same model id, so the same store rows as one worker

Without a suffix an embedded or hf model loads in the precision the hardware does natively
(:func:`selfalign.models.hf.inference_dtype`): bf16 on a GPU and on a CPU with native bf16
(x86 ``avx512_bf16``/``amx_bf16``), fp32 on any other CPU. bf16 decoding was about 2x as fast as
fp32 on a Zen 4 EPYC with native bf16 (``bench/generate.py``, docs/RESULTS.md); on a CPU without
it bf16 is emulated and slow. A trailing ``+fp32``, ``+bf16``, ``+fp16`` or ``+int8``
(``smollm2-135m+fp32``, ``runs/x/model+bf16``) asks for that precision on any machine. A model's
id in the store carries its precision (fp32 adds nothing), so samples of one precision are never
served for another.

>>> split_precision("smollm2-135m+bf16")
('smollm2-135m', {'dtype': 'bfloat16'})
>>> split_precision("hf:org/model")
('hf:org/model', {})
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfalign.models.base import ModelError

DEFAULT_MODEL = "smollm2-135m"

BACKENDS = {
    "embedded": "the embedded SmolLM2-135M-Instruct (default), via the hf backend",
    "hf": "any transformers causal LM: hf:<hub id or local path>",
    "openai": "any OpenAI-compatible server: openai:<model> --base-url http://host:port/v1",
    "vllm": "vLLM engine on a GPU: vllm:<hub id or path> (pip install 'selfalign[vllm]')",
    "scripted": "deterministic test double: scripted or scripted:<rules.json>",
    "ray": "any of the above on N Ray actors (data-parallel): ray:<N>:<spec> (pip install 'selfalign[ray]')",
}


#: spec suffix -> the hf backend's loading options
PRECISION_SUFFIXES = {"+fp32": {"dtype": "float32"}, "+bf16": {"dtype": "bfloat16"}, "+fp16": {"dtype": "float16"},
                      "+int8": {"quantize": "int8"}}


def split_precision(spec: str) -> tuple[str, dict[str, str]]:
    """A spec without its precision suffix, and the loading options the suffix stands for."""
    for suffix, opts in PRECISION_SUFFIXES.items():
        if spec.endswith(suffix):
            return spec[: -len(suffix)], dict(opts)
    return spec, {}


def _check_precision(spec: str, precision: dict[str, str]) -> None:
    if spec.startswith("vllm:") and precision.get("dtype") in ("float32", "bfloat16", "float16"):
        return  # vLLM's own dtype option
    if precision and not (spec in (DEFAULT_MODEL, "embedded", "smollm2") or spec.startswith("hf:") or Path(spec).is_dir()):
        raise ModelError(f"a precision suffix ({', '.join(PRECISION_SUFFIXES)}) applies to the embedded and hf models "
                         f"only, not to '{spec}'")


def _ray_pool(spec: str | None) -> tuple[int, str] | None:
    """(workers, inner spec) of a ``ray:<N>:<spec>`` spec, None for any other."""
    if not (spec or "").strip().startswith("ray:"):
        return None
    from selfalign.models.ray_pool import parse

    return parse(str(spec).strip())


def known_models() -> list[str]:
    return [DEFAULT_MODEL, "hf:<id or path>", "openai:<model>", "vllm:<id or path>", "scripted[:rules.json]",
            "ray:<N>:<spec>"]


def load_model(spec: str | None = None, **options: Any):
    """Build a Generator (and Scorer, where the backend can score) from a model spec."""
    pool = _ray_pool(spec)
    if pool is not None:
        from selfalign.models.ray_pool import RayPool

        check_spec(pool[1])
        return RayPool(*pool, **options)
    spec, precision = split_precision((spec or DEFAULT_MODEL).strip())
    options = {**options, **precision}
    _check_precision(spec, precision)
    if spec in (DEFAULT_MODEL, "embedded", "smollm2"):
        from selfalign.models import embedded

        return embedded.load(**_hf_options(options))
    backend, _, rest = spec.partition(":")
    if backend == "hf" and rest:
        from selfalign.models.hf import HFModel

        return HFModel(rest, **_hf_options(options))
    if backend == "openai" and rest:
        from selfalign.models.openai_compat import OpenAICompatModel

        keep = {k: v for k, v in options.items() if k in ("base_url", "api_key_env", "concurrency", "timeout", "max_retries")}
        return OpenAICompatModel(rest, **keep)
    if backend == "vllm" and rest:
        from selfalign.models.vllm import VLLMModel

        extra = {"dtype": options["dtype"]} if options.get("dtype") else {}
        return VLLMModel(rest, revision=options.get("revision"), **extra)
    if backend == "scripted":
        from selfalign.models.scripted import ScriptedModel

        if not rest:
            return ScriptedModel(default="I don't know.")
        path = Path(rest)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"{path}: cannot read scripted rules: {e}") from None
        return ScriptedModel(rules=data.get("rules", {}), default=data.get("default", ""), model_id=f"scripted:{path.name}",
                             delay=float(data.get("delay", 0.0)))
    if Path(spec).is_dir():
        from selfalign.models.hf import HFModel

        return HFModel(spec, **_hf_options(options))
    raise ModelError(f"unknown model '{spec}'. Known: {', '.join(known_models())}")


def check_spec(spec: str | None) -> None:
    """Raise ModelError for a spec that cannot name a model, without loading anything."""
    pool = _ray_pool(spec)
    if pool is not None:
        return check_spec(pool[1])
    spec, precision = split_precision((spec or DEFAULT_MODEL).strip())
    _check_precision(spec, precision)
    if spec in (DEFAULT_MODEL, "embedded", "smollm2") or Path(spec).is_dir():
        return
    backend, _, rest = spec.partition(":")
    if backend in ("hf", "openai", "vllm") and rest:
        return
    if backend == "scripted":
        if rest and not Path(rest).is_file():
            raise ModelError(f"{rest}: scripted rules file not found")
        return
    raise ModelError(f"unknown model '{spec}'. Known: {', '.join(known_models())}")


def trainable_path(spec: str | None, convert: bool = True) -> str | None:
    """What a trainer loads for a model spec (a local directory or a hub id), or None when the
    backend cannot be fine-tuned here (openai, vllm, scripted). ``convert=False`` answers
    without converting the embedded model's weights (for checks before any work). A precision
    suffix names how the model is loaded to answer; training starts from the same weights; a
    ``ray:`` pool trains what its workers serve."""
    pool = _ray_pool(spec)
    if pool is not None:
        return trainable_path(pool[1], convert)
    spec, _ = split_precision((spec or DEFAULT_MODEL).strip())
    if spec in (DEFAULT_MODEL, "embedded", "smollm2"):
        from selfalign.models import embedded

        return str(embedded.ensure_converted() if convert else embedded.model_dir())
    backend, _, rest = spec.partition(":")
    if backend == "hf" and rest:
        return rest
    return spec if Path(spec).is_dir() else None


def require_trainable(spec: str | None, role: str = "base", convert: bool = True) -> str:
    """:func:`trainable_path`, or one error naming the option (``role``) when the model cannot be
    fine-tuned here. ``convert=False`` for checks before any work."""
    path = trainable_path(spec, convert=convert)
    if path is None:
        raise ValueError(f"{role} {spec!r} cannot be fine-tuned here (needs a local directory or hub id)")
    return path


def _hf_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in ("revision", "dtype", "device", "batch_size", "quantize", "attention") and v is not None}
