"""Attention for decoding steps on a CPU: the query heads that share a key/value head as one matrix.

A decoding step has one query position per row. With grouped-query attention (SmolLM2-135M:
9 query heads over 3 key/value heads) the query heads of one KV head form a [group x dim]
matrix, so a layer's attention is two batched matrix products, ``(q @ K^T) @ V`` per KV head,
with the mask added and a softmax between. On a 2-core Xeon (fp32, 256 rows, 100 positions)
that took 1.9 ms a layer against 3.6 ms for torch's fused CPU kernel through transformers'
SDPA path, with outputs equal to 1e-6 (docs/RESULTS.md, "Sampling speed").

It plugs in through transformers' own extension point (``AttentionInterface`` and
``AttentionMaskInterface``, registered under :data:`NAME` with SDPA's mask), so the model code
is untouched. Anything that is not a plain one-position step (a prefill, scoring, dropout,
attention weights asked for, soft-capping, sinks, a sliding window) goes to transformers' SDPA
function unchanged: only CPU decoding steps take the grouped path.
"""

from __future__ import annotations

import functools
from typing import Any

NAME = "selfalign_grouped_decode"

#: keyword arguments that change attention beyond what the mask says: those calls go to SDPA
_NOT_PLAIN = ("softcap", "s_aux", "sinks", "sliding_window", "position_bias", "output_attentions")


def grouped_decode_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                             dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-function signature: ``query`` [B, Hq, q, D], ``key``/``value``
    [B, Hkv, T, D], ``attention_mask`` SDPA's (bool, True = attend, or additive float; [B, 1, q, T]).
    Returns ([B, q, Hq, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[2] != 1 or dropout or any(kwargs.get(k) for k in _NOT_PLAIN):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    import torch

    b, hq, _, d = query.shape
    hkv = key.shape[1]
    q = query.reshape(b, hkv, hq // hkv, d)  # query heads h = kv * group + g, as repeat_kv pairs them
    scores = torch.matmul(q, key.transpose(-1, -2)) * (d ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        mask = attention_mask[..., -1:, :]  # [B, 1, 1, T]: broadcasts over KV heads and their query heads
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    out = torch.matmul(torch.softmax(scores, dim=-1), value)  # [B, Hkv, group, D]
    return out.reshape(b, hq, 1, d).transpose(1, 2).contiguous(), None


@functools.lru_cache(maxsize=1)
def register() -> str:
    """Register :func:`grouped_decode_attention` (and SDPA's mask for it) with transformers, once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, grouped_decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def use_for_decoding(model: Any) -> bool:
    """Switch ``model`` from SDPA to the grouped decoding step (prefills and scoring keep SDPA).
    Only a model that runs SDPA is switched (an explicit eager or flash choice is kept); returns
    whether it was."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    try:
        model.set_attn_implementation(register())
    except (ValueError, ImportError):  # a model class that refuses custom attention keeps SDPA
        return False
    return True
