"""Shared-prefix forward for training: the tokens every row of a batch starts with run once.

Every honesty training row starts with the same 64 tokens (the chat template's system message
and the honesty instruction) out of about 105; a batch of 8 rows runs those 64 tokens 8 times in
a plain forward pass. With the shared-prefix forward the backbone runs the common prefix once
(batch 1, keeping its keys and values), repeats that KV for the batch, and runs only each row's
tail on top of it, with positions continuing after the prefix. The hidden states returned are
the same as a plain forward pass's (the prefix's row repeated, then the tails'), so the loss
and the gradients are the same up to float rounding: the prefix's KV feeds every row's tail
through the repeat, whose backward sums the rows' gradients into the one prefix pass, exactly
as the plain pass's separate copies of the prefix would add up. On the demo's rows (64 shared
of ~105 tokens, 8 rows) a step runs 392 + padding token positions instead of ~840
(``bench/train.py``, docs/RESULTS.md).

**Packed tails.** Where the rows are right-padded (TRL's collators pad on the right) the tails
are also packed: every row's real tail tokens go into one row of ``sum(lengths)`` positions, with
a mask that lets each token see the whole prefix and its own row's earlier tokens only, and
position ids continuing after the prefix, so no padding runs at all and the prefix's KV is not
repeated. Packing trades padding for a wider attention (each packed token scores the whole
packed row, masked), so it runs only where a rough cost count says it is cheaper: per layer a
position costs about 12 h^2 multiply-adds in the linear layers (h the hidden size) and 4 h per
key it attends to (so the attention's quadratic part never outgrows the padding it saves). The
demo's batches (8 rows, tails of 41 tokens on average, 25% padding) ran 1.10-1.18x faster per step
packed than padded (``bench/train.py --variants ours-nopack,ours --rows
runs/quick/datasets/confidence-verb.jsonl``, docs/RESULTS.md). Hidden states at pad positions, which a plain pass computes but no loss, mask
or pooling at a real token reads, are zeros when packed. Packing needs an attention that takes a
custom mask (``eager``, ``sdpa``); others run the tails padded.

It is the same idea as vLLM's prefix caching applied to a training step, and needs no kernel of
its own: two calls of the model's own backbone through its own KV cache. It applies only where
it is exact, else the plain forward runs:

* the batch has at least 2 rows and a common prefix of at least ``min_prefix`` tokens, every
  row attending to all of it (a left-padded batch shares pads, not a prefix);
* nothing asked for a cache or passed one (generation, which a trainer also calls, runs as is),
  no ``inputs_embeds``, no attention/hidden-state outputs;
* no gradient checkpointing (it drops caches) and, in training mode, no dropout anywhere in the
  backbone, LoRA's included (one prefix pass would share its dropout masks across rows): LoRA
  dropout is 0 by default. This is looked up at each call, since PEFT adds its adapters after the
  forward is installed.

Speed-only: outside the training fingerprint (``train.shared_prefix``, default on); tests check
that losses and gradients match the plain forward.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Hashable, Iterator, Sequence


def cache_kwarg(fn: Any) -> str:
    """The name a transformers forward takes its KV cache by: ``cache`` since transformers 5.24
    (``past_key_values`` is deprecated there and removed in 5.40), ``past_key_values`` before."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


#: the fewest shared tokens worth a second backbone call
MIN_PREFIX = 16


def common_prefix_length(input_ids: Any, attention_mask: Any = None, position_ids: Any = None) -> int:
    """How many leading positions every row of ``input_ids`` ([B, L]) shares: the same token, attended
    to by every row (mask 1), at the same position id; at most L - 1 (a tail of one token at least).

    >>> import torch
    >>> ids = torch.tensor([[5, 6, 7, 8, 1], [5, 6, 7, 9, 0]])
    >>> common_prefix_length(ids), common_prefix_length(ids, torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 0]]))
    (3, 0)
    """
    same = (input_ids == input_ids[:1]).all(0)
    if attention_mask is not None:
        same &= (attention_mask != 0).all(0)
    if position_ids is not None:
        same &= (position_ids == position_ids[:1]).all(0)
    n = int(same.int().cumprod(0).sum())
    return min(n, input_ids.shape[1] - 1)


def _has_dropout(backbone: Any) -> bool:
    import torch

    cfg = getattr(backbone, "config", None)
    if any(float(getattr(cfg, k, 0.0) or 0.0) > 0 for k in ("attention_dropout", "hidden_dropout", "dropout")):
        return True
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in backbone.modules())


def right_padded_lengths(mask: Any) -> Any:
    """Each row's number of real positions when every row of ``mask`` ([B, T]) is ones then zeros,
    else None (left padding, holes, or no mask given).

    >>> import torch
    >>> right_padded_lengths(torch.tensor([[1, 1, 0], [1, 1, 1]])).tolist(), right_padded_lengths(torch.tensor([[0, 1]]))
    ([2, 3], None)
    """
    import torch

    if mask is None:
        return None
    lengths = (mask != 0).sum(1)
    expected = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    return lengths if bool(((mask != 0) == expected).all()) else None


def packing_pays(prefix: int, lengths: list[int], hidden: int) -> bool:
    """Whether packed tails cost less than padded ones, counting per layer ~12 h^2 multiply-adds
    per position (the linear layers) and 4 h per key a position attends to.

    >>> packing_pays(64, [30, 55, 41, 38, 47, 33, 52, 32], 576)   # the demo: a quarter is padding
    True
    >>> packing_pays(64, [40] * 8, 576)                            # no padding: packing only widens attention
    False
    """
    s, b, t = sum(lengths), len(lengths), max(lengths)
    per_key = 4 / (12 * hidden)
    packed = s * (1 + (prefix + s) * per_key)
    padded = b * t * (1 + (prefix + t) * per_key)
    return packed < padded


def _packed_mask(prefix: int, lengths: Any, attn: str, dtype: Any) -> Any:
    """[1, 1, S, prefix + S] for S packed tail tokens: each sees the prefix and its own row's tokens
    up to itself. Boolean for SDPA (True: attend), additive for eager attention."""
    import torch

    row = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    pos = torch.arange(len(row), device=lengths.device)
    own = (row[:, None] == row[None, :]) & (pos[:, None] >= pos[None, :])
    allowed = torch.cat([torch.ones((len(row), prefix), dtype=torch.bool, device=own.device), own], dim=1)[None, None]
    if attn == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=own.device).masked_fill(~allowed, torch.finfo(dtype).min)


class SharedPrefixStats:
    """Counts for the log: calls that shared a prefix (and of those, packed their tails), and token
    positions run vs a plain pass."""

    def __init__(self) -> None:
        self.shared_calls = 0
        self.packed_calls = 0
        self.plain_calls = 0
        self.positions_run = 0
        self.positions_plain = 0

    def saved_fraction(self) -> float:
        return 1 - self.positions_run / self.positions_plain if self.positions_plain else 0.0


def install(backbone: Any, min_prefix: int = MIN_PREFIX, pack: bool = True) -> SharedPrefixStats:
    """Make ``backbone`` (a transformers decoder stack: ``model.model`` of a causal LM or a sequence
    classifier) run each batch's common prefix once, packing the tails where it pays (``pack``; off:
    always padded, as ``bench/train.py``'s ``ours-nopack``). Idempotent; returns its counters."""
    if getattr(backbone, "_selfalign_shared_prefix", None) is not None:
        return backbone._selfalign_shared_prefix
    import torch
    from transformers import DynamicCache
    from transformers.modeling_outputs import BaseModelOutputWithPast

    original = backbone.forward
    cache_kw = cache_kwarg(original)
    stats = SharedPrefixStats()

    @functools.wraps(original)
    def forward(input_ids: Any = None, attention_mask: Any = None, position_ids: Any = None, *args: Any, **kw: Any):
        plain = (input_ids is None or args or kw.get("inputs_embeds") is not None
                 or kw.get(cache_kw) is not None or kw.get("past_key_values") is not None or kw.get("use_cache")
                 or kw.get("output_attentions") or kw.get("output_hidden_states")
                 or getattr(backbone, "gradient_checkpointing", False) or input_ids.dim() != 2
                 or input_ids.shape[0] < 2
                 # looked up at each call: PEFT adds its LoRA dropout after this is installed, and dropout
                 # acts only in training mode
                 or (backbone.training and _has_dropout(backbone)))
        p = 0 if plain else common_prefix_length(input_ids, attention_mask, position_ids)
        if p < min_prefix:
            stats.plain_calls += 1
            return original(input_ids, attention_mask, position_ids, *args, **kw)
        b, n = input_ids.shape
        kw = {k: v for k, v in kw.items() if k not in ("use_cache", cache_kw, "past_key_values")}
        attn = getattr(backbone.config, "_attn_implementation", None)
        lengths = right_padded_lengths(attention_mask) if attn in ("eager", "sdpa") else None
        tails = None if lengths is None else (lengths - p).tolist()
        packed = pack and tails is not None and min(tails) > 0 and packing_pays(p, tails, backbone.config.hidden_size)
        cache = DynamicCache(config=backbone.config)  # filled in place by the prefix pass
        pre = original(input_ids=input_ids[:1, :p],
                       attention_mask=None if attention_mask is None else attention_mask[:1, :p],
                       position_ids=None if position_ids is None else position_ids[:1, :p],
                       use_cache=True, **{cache_kw: cache}, **kw)
        hidden = pre.last_hidden_state.expand(b, -1, -1)
        stats.shared_calls += 1
        stats.positions_plain += b * n
        if not packed:
            cache.batch_repeat_interleave(b)  # differentiable: the backward sums every row's share
            tail = original(input_ids=input_ids[:, p:], attention_mask=attention_mask,
                            position_ids=None if position_ids is None else position_ids[:, p:],
                            use_cache=True, **{cache_kw: cache}, **kw)
            stats.positions_run += p + b * (n - p)
            return BaseModelOutputWithPast(last_hidden_state=torch.cat([hidden, tail.last_hidden_state], dim=1))
        # packed: the real tail tokens of every row in one row, after the one prefix
        assert lengths is not None and attn is not None
        tail_len = lengths - p
        rows, cols = attention_mask[:, p:].nonzero(as_tuple=True)  # row by row: the packed order
        cols = cols + p
        pos = (cols if position_ids is None else position_ids[rows, cols])[None]
        mask = _packed_mask(p, tail_len, attn, pre.last_hidden_state.dtype)
        tail = original(input_ids=input_ids[rows, cols][None], attention_mask=mask, position_ids=pos,
                        use_cache=True, **{cache_kw: cache}, **kw).last_hidden_state[0]
        flat = tail.new_zeros((b * n, tail.shape[-1])).index_copy(0, rows * n + cols, tail)  # pads: zeros
        stats.packed_calls += 1
        stats.positions_run += p + len(rows)
        return BaseModelOutputWithPast(last_hidden_state=torch.cat([hidden, flat.view(b, n, -1)[:, p:]], dim=1))

    backbone.forward = forward
    backbone._selfalign_shared_prefix = stats
    backbone._selfalign_plain_forward = original
    return stats


def uninstall(backbone: Any) -> None:
    """Put the plain forward back."""
    if getattr(backbone, "_selfalign_shared_prefix", None) is None:
        return
    del backbone.forward  # the instance attribute: the class's forward shows through again
    backbone._selfalign_shared_prefix = None
    backbone._selfalign_plain_forward = None


@contextlib.contextmanager
def plain_forward(backbone: Any) -> Iterator[None]:
    """Inside the block ``backbone`` runs its plain forward (every row reads its whole prefix), the
    comparison the scoring benches and tests make; nothing changes where nothing is installed."""
    original = getattr(backbone, "_selfalign_plain_forward", None)
    if original is None:
        yield
        return
    shared = backbone.forward
    backbone.forward = original
    try:
        yield
    finally:
        backbone.forward = shared


def prompt_runs(keys: Sequence[Hashable], lengths: Sequence[int], group_min: int | None) -> list[list[int]]:
    """Runs of item indices to cut into batches, for scorers whose items share prompts: each prompt
    (``keys``) with at least ``group_min`` items is a run of its own (by ``lengths``), so the
    shared-prefix forward runs that prompt once per batch; the other items form one run in length
    order, as a plain scorer batches everything (``group_min`` None: that one run only). Depends
    only on the items, so a re-run call gets the batches it had.

    >>> prompt_runs(["a", "b", "a", "a", "b"], [5, 3, 9, 7, 4], 3)
    [[0, 3, 2], [1, 4]]
    >>> prompt_runs(["a", "b", "a", "a", "b"], [5, 3, 9, 7, 4], None)
    [[1, 4, 0, 3, 2]]
    """
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    runs: list[list[int]] = []
    rest: list[int] = []
    for g in groups.values():
        if group_min is not None and len(g) >= group_min:
            runs.append(sorted(g, key=lambda i: (lengths[i], i)))
        else:
            rest += g
    if rest:
        runs.append(sorted(rest, key=lambda i: (lengths[i], i)))
    return runs
