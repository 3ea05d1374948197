"""The ``generate`` stage: a prompts JSONL -> a completions JSONL, through the store.

Input rows need ``prompt`` (a string, or a list of ``{role, content}`` messages) or
``messages`` (a chat whose last turn is the user's). Output rows are TRL prompt-completion
rows: ``prompt`` (as a message list), ``completion`` (one assistant message), and ``meta``
(sample index, seed, finish reason, tokens, model, and the input row's own ``meta``/``id``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfalign.data.io import DataError, check_output_path, read_jsonl, write_jsonl
from selfalign.models.base import context_length
from selfalign.store.cache import CachedModel, Store
from selfalign.types import GenParams, GenRequest, as_prompt, prompt_to_json


#: sane caps, checked before anything loads (beyond them a typo, not a wish: --max-tokens 1e9 once
#: tried to allocate 384 GB); the model's own context is checked once it is loaded
MAX_TOKENS = 1 << 17
MAX_N = 10_000


@dataclass
class GenerateConfig:
    input: str = ""
    output: str = "completions.jsonl"
    model: str = "smollm2-135m"
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    batch_size: int = 256  # rows per forward pass (hf)
    chunk_size: int = 128  # samples committed to the store at a time
    store: str = ""
    base_url: str = ""  # for openai:<model>

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.n > MAX_N:
            raise ValueError(f"n must be <= {MAX_N}, got {self.n}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("max_tokens", "batch_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_tokens > MAX_TOKENS:
            raise ValueError(f"max_tokens must be <= {MAX_TOKENS}, got {self.max_tokens}")


def _row_prompt(row: dict[str, Any], path: str, line: int):
    value = row.get("prompt", row.get("messages"))
    if isinstance(value, str):
        return (as_prompt([{"role": "user", "content": value}]))
    if isinstance(value, list) and value:
        try:
            return as_prompt(value)
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}:{line}: field {'prompt' if 'prompt' in row else 'messages'}: {e}") from None
    raise DataError(f"{path}:{line}: field 'prompt' must be a non-empty string or list of messages, got {value!r}")


def load_prompts(path: str | Path) -> list[tuple[Any, dict[str, Any]]]:
    rows = read_jsonl(path, any_of=[("prompt", "messages")])
    return [(_row_prompt(r, str(path), i + 1), r) for i, r in enumerate(rows)]


def run(cfg: GenerateConfig, model: Any = None, progress: bool = True) -> list[dict[str, Any]]:
    """Generate ``cfg.n`` completions per prompt; returns the rows it wrote to ``cfg.output``."""
    if not cfg.input:
        raise DataError("generate: no input file given")
    # everything is checked before a model loads: the prompts, where the output goes (a missing
    # folder is created when writing; a directory or an unwritable folder is refused), the store
    prompts = load_prompts(cfg.input)
    if not prompts:
        raise DataError(f"{cfg.input}: no prompts")
    check_output_path(cfg.output, "--output")
    store = None if isinstance(model, CachedModel) else Store(cfg.store or None)
    if model is None:
        from selfalign.models.registry import load_model

        model = load_model(cfg.model, batch_size=cfg.batch_size, base_url=cfg.base_url or None)
    context = context_length(model)
    if context is not None and cfg.max_tokens >= context:
        raise ValueError(f"max_tokens {cfg.max_tokens} does not fit the context of {cfg.model} ({context} tokens)")
    cached = model if isinstance(model, CachedModel) else CachedModel(model, store, progress=progress,
                                                                               chunk_size=cfg.chunk_size)
    params = GenParams(cfg.temperature, cfg.top_p, cfg.max_tokens, tuple(cfg.stop))
    reqs = [GenRequest(p, params, n=cfg.n, seed=cfg.seed) for p, _ in prompts]
    results = cached.generate(reqs)
    out = []
    for (p, row), res in zip(prompts, results):
        for c in res.completions:
            meta = {"index": c.index, "seed": cfg.seed, "finish_reason": c.finish_reason, "n_tokens": c.n_tokens,
                    "model": cached.model_id, "cached": c.cached}
            if "meta" in row:
                meta["input"] = row["meta"]
            if "id" in row:
                meta["id"] = row["id"]
            out.append({"prompt": prompt_to_json(p), "completion": [{"role": "assistant", "content": c.text}], "meta": meta})
    write_jsonl(cfg.output, out)
    return out
