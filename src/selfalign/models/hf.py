"""The ``hf`` backend: any transformers causal LM, by hub id or local path.

Sampling is our own short decode loop over the model's forward pass rather than
``model.generate``, for reasons measured in ``bench/generate.py`` (docs/RESULTS.md):

* **shared-prefix reuse**: the prompts of a batch usually share a long head (chat template,
  instruction); it is prefilled once, then each distinct prompt's tail once, and the KV cache
  is fanned out to the ``n`` samples of each prompt. The head's KV is also kept for the next
  batch and the next call (reused when their head is the same), as vLLM's prefix caching does.
  ``generate`` would prefill every row. Optionally (``prompt_cache_tokens`` > 0, off by default:
  about 46 KB of fp32 KV per token for SmolLM2-135M) every prefilled prompt's KV is kept across
  calls, and a later prompt that continues one (FSBS's rounds extend their previous round's
  prompts) runs only its new tokens.
* **one batch across temperatures**: requests that differ only in temperature decode in the same
  batch, each row at its own (0: argmax), so a prompt asked for greedily and for samples in one
  call (k(x)) is prefilled once for both; a sampled row divides its logits by its own temperature
  before the same draw, so it picks the token it would pick in a batch of its own.
* **less padding**: tails of similar length are prefilled together, and only the last position
  of a prefill goes through the 49k-wide output layer.
* **the output layer in row slices**: each step's hidden states go through the output layer 128
  rows at a time, and each slice is drawn from (unnormalised exp weights, no softmax) before the
  next is computed: 1.76x faster than one softmaxed pass over 256 rows (``bench/decode_step.py
  --pick``).
* **finished rows leave the batch**: rows that hit EOS or a stop string are pruned from the
  KV cache (once they are an eighth of it), so short answers stop costing compute.
* **per-sample seeds, one batched draw**: every sample has its own ``torch.Generator`` seeded by
  :func:`selfalign.types.sample_seed`, so sample ``i`` of a prompt is the same whatever batch it
  is generated in (which the store's resume relies on); each step draws one uniform per row and
  picks tokens by inverse transform sampling over the batch's cumulative probabilities, instead
  of one ``torch.multinomial`` call per row (a sixth of all decode time before).

Padding sits between the shared head and each prompt's tail, masked out, with position ids
counted over real tokens only, so every row sees exactly its own prompt.

That is exact in arithmetic, not always in floating point: torch's SDPA kernel sums a row's
positions in blocks that padding shifts, so a row's logits depend in the last bit on the batch,
and bf16 rounding carries that into other tokens (2 of 24 greedy answers of the embedded model
between one call and calls of 5; issue 26). :func:`_invariant_attention` (``attention="invariant"``)
sums so that padding does not regroup: a sample is then the same in any batch, head split or chunk
as far as attention goes. It is opt-in: on a CPU with native bf16 (the only CPU where ``auto``
loads bf16) its matmuls, kept off oneDNN, decoded about 2x slower than SDPA (``bench/resume.py``:
0.53x) and scored 3.7x slower (an AMX Xeon, docs/RESULTS.md), and exact resume does not need it. The linear layers are not invariant either: oneDNN's and MKL's
kernels give a row other last bits depending on how many rows they multiply
(``bench/linear_rows.py``), so the embedded model still changed 1 of 24 greedy answers in bf16
between one call and calls of 5, and 4 of 24 sampled requests in fp32 (``bench/resume.py``; the
README names the exception). What holds in every precision, and what exact resume rests on: the
same requests in one call give the same samples whatever came before it (the stored head KV is
reused only for an identical head), and the store sends a re-run call the same chunks
(:class:`selfalign.store.cache.CachedModel`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from selfalign.models.precision import choose_precision
from selfalign.models.base import ModelError, ProgressFn
from selfalign.models.shared_prefix import cache_kwarg, install as install_shared_prefix, plain_forward, prompt_runs
from selfalign.types import (
    Completion,
    GenParams,
    GenRequest,
    GenResult,
    Prompt,
    ScoreRequest,
    ScoreResult,
    ends_with_prefill,
    sample_seed,
)


def model_revision(name: str, revision: str | None = None, commit_hash: str | None = None) -> str:
    """The revision part of a model id: for a local directory a hash of its weight files' names,
    sizes and mtimes (so retrained weights at the same path get a new id), else the hub revision."""
    p = Path(name)
    return _local_revision(p) if p.is_dir() else (revision or commit_hash or "main")


def _local_revision(path: Path) -> str:
    """path + size + mtime of the weight and config files: cheap and changes when they do."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".json", ".gguf", ".model"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _layer_kv(cache: Any) -> list[tuple[Any, Any]]:
    """(keys, values) of each layer of a DynamicCache."""
    return [(lay.keys, lay.values) for lay in cache.layers]


@functools.lru_cache(maxsize=1)
def _buffered_layer_type() -> type:
    """A ``DynamicLayer`` whose keys and values live in a buffer with room for the positions still
    to come, so a decode step writes its one new position in place instead of ``torch.cat``-ing
    the whole cache (a full copy of every layer's KV per step: 19.5% of FSBS's decode time at
    400-token contexts). ``keys``/``values`` are views of the first ``n`` positions, so the
    attention reads exactly what a DynamicLayer would hold. Defined lazily: transformers is
    imported only when a model is."""
    from transformers.cache_utils import DynamicLayer

    class BufferedLayer(DynamicLayer):
        def __init__(self, keys: Any, values: Any, spare: int):
            super().__init__()
            self.dtype, self.device = keys.dtype, keys.device
            self.is_initialized = True
            self._fill(keys, values, spare)

        def _fill(self, keys: Any, values: Any, spare: int) -> None:
            b, h, n, d = keys.shape
            self._kbuf = keys.new_empty((b, h, n + spare, d))
            self._vbuf = values.new_empty((b, h, n + spare, d))
            self._kbuf[..., :n, :] = keys
            self._vbuf[..., :n, :] = values
            self._n = n
            self._view()

        def _view(self) -> None:
            self.keys = self._kbuf[..., :self._n, :]
            self.values = self._vbuf[..., :self._n, :]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            n, m = self._n, key_states.shape[-2]
            if n + m > self._kbuf.shape[-2]:  # out of room: one copy into a buffer twice as long
                self._fill(self.keys, self.values, max(m, n))
            self._kbuf[..., n:n + m, :] = key_states
            self._vbuf[..., n:n + m, :] = value_states
            self._n = n + m
            self._view()
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            # index_select: 1.8x faster than advanced indexing for these copies (greedy prunes often)
            self._kbuf = self._kbuf.index_select(0, indices)
            self._vbuf = self._vbuf.index_select(0, indices)
            self._view()

        def reorder_cache(self, beam_idx: Any) -> None:
            self.batch_select_indices(beam_idx.to(self._kbuf.device))

        def batch_repeat_interleave(self, repeats: int) -> None:
            self._kbuf = self._kbuf.repeat_interleave(repeats, dim=0)
            self._vbuf = self._vbuf.repeat_interleave(repeats, dim=0)
            self._view()

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove > 0:
                raise ValueError("crop takes a negative number of tokens to remove")
            self._n = max(0, self._n + tokens_to_remove)
            self._view()

        def reset(self) -> None:
            self._n = 0
            self._view()

    return BufferedLayer


#: the attention implementation :func:`use_invariant_attention` registers with transformers
INVARIANT_ATTENTION = "selfalign_invariant"


def _invariant_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float,
                         dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """Attention whose output for a row does not depend on the other rows of the batch, on how
    much padding the batch adds (before, between or after the row's real positions) or on how many
    positions one forward pass runs: what a resumed run needs to repeat an uninterrupted one.

    It is transformers' eager attention (bf16 matmuls, the mask added, softmax in fp32), with the
    query heads of one KV head stacked as rows instead of ``repeat_kv`` copying the KV per head,
    and both matmuls run with oneDNN switched off, so they go to torch's own gemm, whose sums run
    over the positions in order in fp32: a masked position adds an exact zero (its softmax weight is
    exp(-huge) = 0), so padding never changes a sum. Measured on an AVX2 CPU
    (``bench/resume.py``, docs/RESULTS.md): torch's fused SDPA kernel and eager attention in fp32
    are not padding-invariant (their blocked sums regroup the real positions: 1-ulp differences that
    bf16 rounding turns into different tokens); this function in bf16 is, bit for bit. In fp32 the
    sums go to MKL's blocked sgemm and are not: fp32 models keep SDPA (see :class:`HFModel`)."""
    import torch

    b, h, q, d = query.shape
    kvh = key.shape[1]
    g = h // kvh
    onednn = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)  # (torch.backends.mkldnn.flags also resets tf32 settings, with a warning)
    try:
        # heads kv*g .. kv*g+g-1 read KV head kv (repeat_kv's layout): their queries stacked as g*q rows
        scores = torch.matmul(query.reshape(b, kvh, g * q, d), key.transpose(2, 3)) * scaling
        scores = scores.view(b, kvh, g, q, -1).float()
        if attention_mask is not None:  # (b, 1, q, kv): 0 where attended, the dtype's minimum elsewhere
            scores = scores + attention_mask[:, :, None]
        weights = torch.softmax(scores, dim=-1).to(query.dtype).view(b, kvh, g * q, -1)
        out = torch.matmul(weights, value)
    finally:
        torch._C._set_mkldnn_enabled(onednn)
    return out.view(b, h, q, d).transpose(1, 2).contiguous(), None


def use_invariant_attention(model: Any) -> bool:
    """Switch ``model`` to :func:`_invariant_attention` (registered with transformers once, with
    eager attention's float masks). False where the model cannot take it (its attention is not
    routed through transformers' attention interface): it keeps its own."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(INVARIANT_ATTENTION, _invariant_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(INVARIANT_ATTENTION, eager_mask)
    try:
        model.set_attn_implementation(INVARIANT_ATTENTION)
    except (ValueError, KeyError, AttributeError, NotImplementedError):
        return False
    return getattr(model.config, "_attn_implementation", None) == INVARIANT_ATTENTION


def _buffered_cache(cache: Any, rows: Any, spare: int) -> Any:
    """A cache holding ``cache``'s KV for the batch rows ``rows`` (an index tensor; rows may repeat:
    the samples of one prompt) in :func:`_buffered_layer_type` layers with ``spare`` free positions."""
    from transformers import DynamicCache

    layer_type = _buffered_layer_type()
    out = DynamicCache()
    out.layers = [layer_type(keys[rows], values[rows], spare) for keys, values in _layer_kv(cache)]
    return out


DTYPES = ("auto", "float32", "bfloat16", "float16")


def inference_dtype(device: str, flags: set[str] | None = None) -> tuple[str, str]:
    """The weights' dtype that ``dtype="auto"`` loads on ``device``, and why.

    On a GPU, bfloat16. On a CPU, bfloat16 where the CPU does bf16 arithmetic natively (x86
    ``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``: the rule training uses,
    :func:`selfalign.models.precision.choose_precision`) and float32 elsewhere, where bf16 is
    emulated and slower than fp32. On a Zen 4 EPYC with native bf16, bf16 weights decoded the
    embedded model 1.96x faster than fp32 with the share of samples that hold the gold answer
    inside fp32's interval (``bench/generate.py``, docs/RESULTS.md); a ``+fp32`` spec suffix
    keeps fp32 anywhere.

    >>> inference_dtype("cpu", {"avx2"})[0], inference_dtype("cpu", {"avx2", "avx512_bf16"})[0]
    ('float32', 'bfloat16')
    """
    if device != "cpu":
        return "bfloat16", f"{device} device"
    p = choose_precision("auto", cuda=False, flags=flags)
    return ("bfloat16" if p.name == "bf16" else "float32"), p.reason


@dataclass
class _Row:
    prompt_idx: int
    req_idx: int
    sample_index: int
    seed: int


class HFModel:
    """A transformers causal LM behind the Generator and Scorer protocols."""

    can_score = True
    #: how samples are drawn from the distribution (part of the store key of sampled completions):
    #: inverse transform sampling with one uniform per token from each sample's own generator
    sampler = "hf-icdf-1"

    def __init__(
        self,
        name_or_path: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int = 256,
        quantize: str | None = None,
        model: Any = None,
        tokenizer: Any = None,
        model_id: str | None = None,
        attention: str = "auto",
    ):
        import torch

        self.torch = torch
        self.name = str(name_or_path)
        loaded_by_name = model is None
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if dtype not in DTYPES:
                raise ModelError(f"unknown dtype={dtype!r}; known: {', '.join(DTYPES)}")
            if dtype != "auto":
                chosen, self.precision_reason = dtype, "asked for"
            elif quantize == "int8":  # dynamic int8 quantises fp32 linear layers
                chosen, self.precision_reason = "float32", "int8 quantises the fp32 weights"
            else:
                chosen, self.precision_reason = inference_dtype(self.device)
            torch_dtype = getattr(torch, chosen)
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.name, revision=revision)
                model = AutoModelForCausalLM.from_pretrained(self.name, revision=revision, dtype=torch_dtype)
            except OSError as e:
                raise ModelError(f"could not load hf model '{self.name}': {e}") from None
            model.to(self.device)
        else:
            self.precision_reason = "a model passed in"
        self.model = model.eval()
        self.tokenizer = tokenizer
        # the keyword the model's forward takes its KV cache by (transformers 5.24 renamed it to `cache`)
        self.cache_kw = cache_kwarg(self.model.forward)
        # (backbone, output layer), found on first use (:meth:`_split_head`), after any quantisation
        self._split: tuple[Any, Any] | None = None
        # the KV of the last shared prompt head (tokens, per-layer (keys, values)), reused across chunks
        self._head_kv: tuple[tuple[int, ...], list[tuple[Any, Any]]] | None = None
        self.head_reuses = 0
        # prompt KV cache across calls (off by default): each prefilled prompt's KV, reused by a later
        # prompt that starts with it (FSBS's rounds continue their previous round's prompts)
        self.prompt_cache_tokens = 0
        self._prompt_kv: "OrderedDict[tuple[int, ...], list[tuple[Any, Any]]]" = OrderedDict()
        self._prompt_kv_tokens = 0
        self.prompt_cache_hits = 0
        # decode into preallocated KV buffers (False: transformers' DynamicCache, a copy per step;
        # kept for the equivalence test and bench/generate.py)
        self.kv_buffer = True
        if quantize == "int8":
            if self.device != "cpu":
                raise ModelError("quantize='int8' is the CPU dynamic int8 path; on a GPU use vllm")
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        elif quantize not in (None, "", "none"):
            raise ModelError(f"unknown quantize={quantize!r}; known: int8")
        # attention="invariant": padding-invariant attention (:func:`_invariant_attention`), so a sample
        # depends less on the batch it was decoded in (opt-in: slower where bf16 is native; "auto" keeps
        # the model's own, SDPA for these models)
        if attention not in ("auto", "invariant"):
            raise ModelError(f"unknown attention={attention!r}; known: auto, invariant")
        self.invariant_attention = attention == "invariant" and use_invariant_attention(self.model)
        if model_id is None:
            rev = model_revision(self.name, revision, getattr(self.model.config, "_commit_hash", None))
            model_id = f"hf:{self.name}@{rev}"
        # the weights' precision is part of the id (fp32 adds nothing): bf16 and fp32 logits differ, so
        # their samples and scores must not share store keys
        precision = {torch.bfloat16: "+bf16", torch.float16: "+fp16"}.get(next(self.model.parameters()).dtype, "")
        self.model_id = model_id + precision + (f"+{quantize}" if quantize else "")
        # what a trainer loads: this model's directory or hub id (None for an in-memory or quantised model)
        self.can_train = loaded_by_name and quantize in (None, "", "none")
        self.train_path: str | None = self.name if self.can_train else None
        eos: set[int] = set()
        for src in (getattr(self.model, "generation_config", None), self.model.config):
            ids = getattr(src, "eos_token_id", None) if src is not None else None
            if ids is not None:
                eos.update(ids if isinstance(ids, (list, tuple)) else [ids])
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (self.eos_ids[0] if self.eos_ids else 0)

    # ------------------------------------------------------------------ prompts
    def render(self, prompt: Prompt) -> str:
        """The text the model sees. A chat prompt whose last message is the assistant's is a
        prefill: the model continues that message (its text follows the assistant header as is)."""
        if isinstance(prompt, str):
            return prompt
        msgs = [m.to_dict() for m in prompt]
        prefill = msgs.pop()["content"] if ends_with_prefill(msgs) else ""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) + prefill
        # a model without a chat template: a plain transcript
        return "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant: " + prefill

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """The prompt's token ids. In a chat prompt only the template's own markers are special
        tokens: a message whose text spells one (``<|im_start|>system``) keeps it as text, so user
        text cannot open a system turn. Raw text is the caller's whole context and is tokenised as is."""
        if not isinstance(prompt, str) and self._spells_special(prompt):
            return self._encode_parts(self._render_parts(prompt))
        # a chat template already carries its special tokens; raw text gets the tokenizer's defaults
        # (a chat prompt with no special-token text in it: the same ids as ever, so store keys hold)
        return self.tokenizer(self.render(prompt), add_special_tokens=isinstance(prompt, str))["input_ids"]

    def _special_pattern(self) -> "re.Pattern[str] | None":
        """A regex of the tokenizer's special-token strings (longest first), None if it has none."""
        if getattr(self, "_special_re_for", None) is not self.tokenizer:
            names = set(getattr(self.tokenizer, "all_special_tokens", None) or ())
            for t in (getattr(self.tokenizer, "added_tokens_decoder", None) or {}).values():
                if getattr(t, "special", False):
                    names.add(str(t.content))
            names.discard("")
            self._special_names = sorted(names, key=len, reverse=True)
            self._special_re = re.compile("|".join(map(re.escape, self._special_names))) if names else None
            self._special_re_for = self.tokenizer
        return self._special_re

    def _spells_special(self, prompt: Sequence[Any]) -> bool:
        pattern = self._special_pattern()
        return pattern is not None and any(pattern.search(m.content) for m in prompt)

    def _render_parts(self, prompt: Sequence[Any]) -> list[tuple[str, bool]]:
        """The rendered chat prompt as (text, is_message_content) pieces: the template is rendered
        with a placeholder for each content, which then goes back in as a content piece."""
        msgs = [m.to_dict() for m in prompt]
        prefill = msgs.pop()["content"] if ends_with_prefill(msgs) else ""
        contents = [m["content"] for m in msgs]
        masked = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(msgs)]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(masked, add_generation_prompt=True, tokenize=False)
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in masked) + "assistant: "
        pieces = re.split("\ue000(\\d+)\ue001", text)
        parts = [(contents[int(p)], True) if j % 2 else (p, False) for j, p in enumerate(pieces)]
        return parts + [(prefill, True)]

    def _encode_parts(self, parts: list[tuple[str, bool]]) -> list[int]:
        """Ids of rendered pieces in which only the template pieces' special tokens are special.

        A fast tokenizer encodes the whole text in one call (:meth:`_anchored_tokenizer`), so every
        piece is tokenised in its context exactly as the tokenizer would; otherwise everything
        between two template markers is tokenised with ``split_special_tokens=True``."""
        pattern = self._special_pattern()
        anchored = self._anchored_tokenizer()
        if pattern is not None and anchored is not None and not any(c and "\ue000" in t for t, c in parts):
            backend, anchor_of, special_of = anchored
            text = "".join(t if c else pattern.sub(lambda m: anchor_of[m.group()], t) for t, c in parts)
            return [special_of.get(i, i) for i in backend.encode(text, add_special_tokens=False).ids]
        ids: list[int] = []
        run: list[str] = []

        def flush() -> None:
            text = "".join(run)
            run.clear()
            if text:
                ids.extend(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

        for text, is_content in parts:
            if is_content or pattern is None:
                run.append(text)
                continue
            pos = 0
            for m in pattern.finditer(text):
                run.append(text[pos:m.start()])
                flush()
                ids.append(self.tokenizer.convert_tokens_to_ids(m.group()))
                pos = m.end()
            run.append(text[pos:])
        flush()
        return ids

    def _anchored_tokenizer(self) -> tuple[Any, dict[str, str], dict[int, int]] | None:
        """A copy of the fast tokenizer that encodes special tokens as text and knows one anchor per
        special token: a non-special added token with the special's flags, put where the template
        has that special, and mapped back to its id. Template markers so split the text where the
        original splits it (a Metaspace "first" prefix included) while message text spelling them
        stays text. (backend, {special: anchor}, {anchor id: special id}); None without a fast tokenizer."""
        cached = getattr(self, "_anchored", None)
        if cached is not None and cached[0] is self.tokenizer:
            return cached[1]
        self._anchored: tuple[Any, tuple[Any, dict[str, str], dict[int, int]] | None] = (self.tokenizer, None)
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or self._special_pattern() is None:
            return None
        try:
            from tokenizers import AddedToken, Tokenizer

            copy = Tokenizer.from_str(backend.to_str())
            flags = {str(t.content): t for t in (getattr(self.tokenizer, "added_tokens_decoder", None) or {}).values()}
            anchor_of: dict[str, str] = {}
            wanted: dict[str, int] = {}
            for name in self._special_names:
                sid = self.tokenizer.convert_tokens_to_ids(name)
                if not isinstance(sid, int):
                    return None
                t = flags.get(name)
                anchor_of[name] = f"\ue000{sid}\ue001"
                wanted[anchor_of[name]] = sid
                copy.add_tokens([AddedToken(anchor_of[name], single_word=getattr(t, "single_word", False),
                                            lstrip=getattr(t, "lstrip", False), rstrip=getattr(t, "rstrip", False),
                                            normalized=False, special=False)])
            copy.encode_special_tokens = True
            copy.no_truncation()
            copy.no_padding()
            special_of = {aid: sid for a, sid in wanted.items() if (aid := copy.token_to_id(a)) is not None}
            if len(special_of) != len(wanted):
                return None
        except Exception:  # noqa: BLE001 - an unusual tokenizer: the split path still holds
            return None
        result = (copy, anchor_of, special_of)
        self._anchored = (self.tokenizer, result)
        return result

    # --------------------------------------------------------------- generation
    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None) -> list[GenResult]:
        torch = self.torch
        encoded = [self.encode_prompt(r.prompt) for r in requests]
        out: list[dict[int, Completion]] = [{} for _ in requests]
        # Requests that differ only in temperature decode together, each row at its own temperature
        # (:meth:`_decode` sets it per row): a prompt asked for greedily and for samples in one call
        # (k(x)) is prefilled once. The group key is the params with the temperature left out.
        groups: dict[GenParams, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(dataclasses.replace(r.params, temperature=0.0), []).append(i)
        with torch.inference_mode():
            for params, idxs in groups.items():
                rows = []
                for i in sorted(idxs, key=lambda i: len(encoded[i])):
                    indices = requests[i].sample_indices()
                    if requests[i].params.greedy:
                        # every greedy sample is the same: decode once, copy afterwards
                        rows.append((i, indices[0] if indices else 0))
                    else:
                        rows.extend((i, s) for s in indices)
                lengths = [len(encoded[i]) + params.max_tokens for i, _ in rows]
                for idx in self._batches(lengths, self.gen_token_budget):
                    chunk = [rows[j] for j in idx]
                    for (i, s), comp in zip(chunk, self._decode(chunk, encoded, requests, params)):
                        out[i][s] = comp
                        if progress:
                            progress(1, comp.n_tokens)
        results = []
        for i, r in enumerate(requests):
            comps = []
            for s in r.sample_indices():
                c = out[i].get(s)
                if c is None:  # greedy copies
                    first = next(iter(out[i].values()))
                    c = Completion(first.text, first.finish_reason, first.n_tokens, s, first.token_logprobs)
                    if progress:
                        progress(1, 0)
                comps.append(c)
            results.append(GenResult(r, tuple(comps), prompt_tokens=len(encoded[i])))
        return results

    def _prefill(self, prompt_ids: list[list[int]]):
        """Prefill distinct prompts, sharing their common head. Returns (last-position states (see
        :meth:`_last_state`), cache, mask, next pos).

        The head's KV is also kept between chunks and calls (:attr:`_head_kv`): the next chunk
        reuses it when its own head is the same (the chat template and instruction every honesty
        prompt starts with), as vLLM's prefix caching does across requests; a different head is
        run from position 0, so a chunk's result never depends on the chunks before it."""
        if self.prompt_cache_tokens > 0:
            hits = [self._longest_cached(p) for p in prompt_ids]
            if any(n for _, n in hits):
                out = self._prefill_cached(prompt_ids, hits)
            else:
                out = self._prefill_shared_head(prompt_ids)
            self._remember(prompt_ids, out[1], out[2])
            return out
        return self._prefill_shared_head(prompt_ids)

    def _prefill_shared_head(self, prompt_ids: list[list[int]]):
        torch = self.torch
        from transformers import DynamicCache

        head = 0
        first = prompt_ids[0]
        shortest = min(len(p) for p in prompt_ids)
        while head < shortest - 1 and all(p[head] == first[head] for p in prompt_ids):
            head += 1
        k = len(prompt_ids)
        cache = DynamicCache()
        dev = self.device
        if head:
            # reuse the stored head's KV only when it is exactly this chunk's head; otherwise run the
            # head alone, in one forward pass from position 0. Extending or cutting a stored head
            # would give KV that depends in the last bit on which heads came before (a forward pass
            # of another length), and at temperature 1 that flips sampled tokens: a chunk's samples
            # would depend on the calls before it (seen between 1 and 2 Ray workers, issue 29).
            stored = self._head_kv
            if stored is not None and stored[0] == tuple(first[:head]):
                for layer, (key, val) in enumerate(stored[1]):
                    cache.update(key, val, layer)
                self.head_reuses += 1
            else:  # only its KV is needed
                self._last_state(input_ids=torch.tensor([first[:head]], device=dev), **{self.cache_kw: cache},
                                 use_cache=True, position_ids=torch.arange(0, head, device=dev)[None])
            self._head_kv = (tuple(first[:head]), _layer_kv(cache))
        head_kv = _layer_kv(cache) if head else []
        tails = [p[head:] for p in prompt_ids]
        # Tails of similar length are prefilled together (padding costs a full forward per pad
        # token), then joined into one batch by :meth:`_join_groups`.
        runs = []
        for group in self._tail_groups([len(t) for t in tails]):
            g, w = len(group), max(len(tails[j]) for j in group)
            gcache = DynamicCache()
            for layer, (key, val) in enumerate(head_kv):
                gcache.update(key, val, layer)
            if head:
                gcache.batch_select_indices(torch.zeros(g, dtype=torch.long, device=dev))
            ids = torch.full((g, w), self.pad_id, dtype=torch.long)
            gmask = torch.zeros((g, head + w), dtype=torch.long)
            gmask[:, :head] = 1
            for r, j in enumerate(group):
                ids[r, w - len(tails[j]):] = torch.tensor(tails[j])
                gmask[r, head + w - len(tails[j]):] = 1
            gpos = (gmask.cumsum(1) - 1).clamp(min=0)[:, head:]
            # only the last position's hidden state is kept; _pick puts it through the output layer
            last = self._last_state(input_ids=ids.to(dev), attention_mask=gmask.to(dev), position_ids=gpos.to(dev),
                                    **{self.cache_kw: gcache}, use_cache=True)
            runs.append((group, head, w, last, _layer_kv(gcache)))
        return self._join_groups(runs, prompt_ids, [head] * k, tails)

    def _join_groups(self, runs: list[tuple[list[int], int, int, Any, list[tuple[Any, Any]]]],
                     prompt_ids: list[list[int]], past: list[int], tails: list[list[int]]):
        """One decoding batch from groups prefilled apart. Each run is (prompt indices, its past
        width, its tail width, last-position states, per-layer KV laid out [past | tail], each part
        left-padded); prompt j has ``past[j]`` tokens of past and ``tails[j]`` after it. The KV of
        every group is padded in front and between to the widest past A and tail W, so each row is
        [pad | past | pad | tail] with the mask hiding the pads; rows come back in prompt order.
        Returns (last-position states, cache, mask, next position)."""
        torch = self.torch
        from transformers import DynamicCache

        dev = self.device
        k = len(prompt_ids)
        A, W = max(past), max(len(t) for t in tails)
        n_layers = max(len(kv) for *_, kv in runs)
        keys: list[list[Any]] = [[] for _ in range(n_layers)]
        vals: list[list[Any]] = [[] for _ in range(n_layers)]
        order: list[int] = []
        for group, ag, wg, _, layer_kv in runs:
            for layer, (key, val) in enumerate(layer_kv):
                keys[layer].append(self._pad_kv(self._pad_kv(key, ag, W - wg), 0, A - ag))
                vals[layer].append(self._pad_kv(self._pad_kv(val, ag, W - wg), 0, A - ag))
            order.extend(group)
        back = torch.tensor(sorted(range(k), key=lambda r: order[r]), device=dev)  # batch position of each prompt
        cache = DynamicCache()
        for layer in range(n_layers):
            cache.update(torch.cat(keys[layer])[back], torch.cat(vals[layer])[back], layer)
        mask = torch.zeros((k, A + W), dtype=torch.long)
        for j, t in enumerate(tails):
            mask[j, A - past[j]:A] = 1
            mask[j, A + W - len(t):] = 1
        last = torch.cat([r[3] for r in runs])[back]
        next_pos = torch.tensor([len(p) for p in prompt_ids], device=dev)
        return last, cache, mask.to(dev), next_pos

    # ------------------------------------------------------- prompt KV across calls
    def _longest_cached(self, prompt: list[int]) -> tuple[tuple[int, ...] | None, int]:
        """The stored prompt sharing the longest prefix with ``prompt`` and that length (capped so
        at least one token of ``prompt`` is run, for its logits); (None, 0) below 16 tokens."""
        best: tuple[tuple[int, ...] | None, int] = (None, 0)
        pt = tuple(prompt)
        for key in self._prompt_kv:
            m = min(len(key), len(pt) - 1)
            if m <= best[1]:
                continue
            n = 0
            if key[:m] == pt[:m]:
                n = m
            else:
                lo, hi = best[1], m  # key[:lo] may or may not match; binary search the first mismatch
                if key[:lo] != pt[:lo]:
                    continue
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if key[:mid] == pt[:mid]:
                        lo = mid
                    else:
                        hi = mid - 1
                n = lo
            if n > best[1]:
                best = (key, n)
        return best if best[1] >= 16 else (None, 0)

    def clear_prompt_cache(self) -> None:
        self._prompt_kv.clear()
        self._prompt_kv_tokens = 0

    def _remember(self, prompt_ids: list[list[int]], cache: Any, mask: Any) -> None:
        """Store each prompt's own KV (its unmasked positions), oldest out beyond the budget."""
        layers = _layer_kv(cache)
        for j, p in enumerate(prompt_ids):
            key = tuple(p)
            if key in self._prompt_kv:
                self._prompt_kv.move_to_end(key)
                continue
            if len(p) > self.prompt_cache_tokens:
                continue
            pos = mask[j].nonzero()[:, 0]
            self._prompt_kv[key] = [(k[j:j + 1, :, pos, :].clone(), v[j:j + 1, :, pos, :].clone()) for k, v in layers]
            self._prompt_kv_tokens += len(p)
        while self._prompt_kv_tokens > self.prompt_cache_tokens and self._prompt_kv:
            old, _ = self._prompt_kv.popitem(last=False)
            self._prompt_kv_tokens -= len(old)

    def _prefill_cached(self, prompt_ids: list[list[int]], hits: list[tuple[tuple[int, ...] | None, int]]):
        """Prefill where prompts continue stored ones: each row's past is its stored prefix (left-padded
        to the group's longest), its tail the rest (left-padded), with position ids over real tokens
        only; the groups are joined as in :meth:`_prefill_shared_head`."""
        torch = self.torch
        from transformers import DynamicCache

        dev = self.device
        a = [n for _, n in hits]
        tails = [p[n:] for p, n in zip(prompt_ids, a)]
        for key, n in hits:
            if key is not None:
                self._prompt_kv.move_to_end(key)
        self.prompt_cache_hits += sum(1 for n in a if n)
        ref = next(self._prompt_kv[key] for key, _ in hits if key is not None)  # shapes and dtype per layer
        runs = []
        for group in self._tail_groups([len(t) for t in tails]):
            ag, wg = max(a[j] for j in group), max(len(tails[j]) for j in group)
            gcache = DynamicCache()
            if ag:
                for layer, (rk, _) in enumerate(ref):
                    ks, vs = [], []
                    for j in group:
                        key, n = hits[j]
                        kz = torch.zeros((1, rk.shape[1], ag, rk.shape[3]), dtype=rk.dtype, device=dev)
                        vz = torch.zeros_like(kz)
                        if key is not None and n:
                            stored_k, stored_v = self._prompt_kv[key][layer]
                            kz[..., ag - n:, :] = stored_k[..., :n, :]
                            vz[..., ag - n:, :] = stored_v[..., :n, :]
                        ks.append(kz)
                        vs.append(vz)
                    gcache.update(torch.cat(ks), torch.cat(vs), layer)
            ids = torch.full((len(group), wg), self.pad_id, dtype=torch.long)
            gmask = torch.zeros((len(group), ag + wg), dtype=torch.long)
            gpos = torch.zeros((len(group), wg), dtype=torch.long)
            for r, j in enumerate(group):
                b = len(tails[j])
                ids[r, wg - b:] = torch.tensor(tails[j])
                gmask[r, ag - a[j]:ag] = 1
                gmask[r, ag + wg - b:] = 1
                gpos[r, wg - b:] = torch.arange(a[j], a[j] + b)
            last = self._last_state(input_ids=ids.to(dev), attention_mask=gmask.to(dev), position_ids=gpos.to(dev),
                                    **{self.cache_kw: gcache}, use_cache=True)
            runs.append((group, ag, wg, last, _layer_kv(gcache)))
        return self._join_groups(runs, prompt_ids, a, tails)

    def _tail_groups(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped by ascending length; a group closes when adding the next would make more
        than a fifth of its tokens padding (groups of fewer than 8 never close: a forward pass
        has a fixed cost)."""
        groups: list[list[int]] = []
        cur: list[int] = []
        real = 0
        for j in sorted(range(len(lengths)), key=lambda j: lengths[j]):
            n = lengths[j]
            if len(cur) >= 8 and (real + n) < 0.8 * (len(cur) + 1) * n:
                groups.append(cur)
                cur, real = [], 0
            cur.append(j)
            real += n
        if cur:
            groups.append(cur)
        return groups

    def _pad_kv(self, t: Any, head: int, pad: int) -> Any:
        """Insert ``pad`` zero positions after the first ``head`` positions (dim -2)."""
        if pad == 0:
            return t
        torch = self.torch
        z = torch.zeros((*t.shape[:-2], pad, t.shape[-1]), dtype=t.dtype, device=t.device)
        return torch.cat([t[..., :head, :], z, t[..., head:, :]], dim=-2)

    def _decode(self, chunk, encoded, requests, params: GenParams) -> list[Completion]:
        """Decode the rows of ``chunk`` ((request, sample index) pairs) in one batch. Their requests
        share ``params`` but may differ in temperature: then each row keeps its own (0: argmax)."""
        torch = self.torch
        dev = self.device
        row_t = [requests[i].params.temperature for i, _ in chunk]
        temps = None
        if len(set(row_t)) == 1:
            params = dataclasses.replace(params, temperature=row_t[0])
        else:
            temps = torch.tensor(row_t, device=dev)
        prompt_of: dict[Any, Any] = {}
        rows: list[_Row] = []
        for i, s in chunk:
            key = tuple(encoded[i])
            if key not in prompt_of:
                prompt_of[key] = len(prompt_of)
            rows.append(_Row(prompt_of[key], i, s, sample_seed(requests[i].seed, s)))
        distinct = [list(k) for k in prompt_of]
        last, cache, mask, next_pos = self._prefill(distinct)
        sel = torch.tensor([r.prompt_idx for r in rows], device=dev)
        if self.kv_buffer:
            cache = _buffered_cache(cache, sel, params.max_tokens)
        else:
            cache.batch_select_indices(sel)
        last, mask, next_pos = last[sel], mask[sel], next_pos[sel]
        # the attention mask grows by one column per step: written in place in a buffer too
        width = mask.shape[1]
        mask_buf = torch.ones((len(rows), width + params.max_tokens), dtype=mask.dtype, device=dev)
        mask_buf[:, :width] = mask
        gens = [torch.Generator(device="cpu").manual_seed(r.seed) for r in rows]
        n = len(rows)
        tokens: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[float]] = [[] for _ in range(n)]
        done: list[Completion | None] = [None] * n
        batch = list(range(n))  # positions in `rows` of the rows in the batch (finished ones until pruned)
        eos = torch.tensor(self.eos_ids or [-1], device=dev)
        for step in range(params.max_tokens):
            nxt, lp = self._pick(last, params, [None if done[a] else gens[a] for a in batch], temps)
            is_eos = torch.isin(nxt, eos).tolist()
            nxt_l = nxt.tolist()
            live = []
            for j, a in enumerate(batch):
                if done[a] is not None:
                    continue
                if is_eos[j]:
                    done[a] = self._finish(tokens[a], lps[a], "stop", params, rows[a].sample_index, eos_count=1)
                    continue
                tokens[a].append(nxt_l[j])
                if lp is not None:
                    lps[a].append(float(lp[j]))
                if params.stop and self._hit_stop(tokens[a], params.stop):
                    done[a] = self._finish(tokens[a], lps[a], "stop", params, rows[a].sample_index)
                    continue
                live.append(j)
            if not live or step == params.max_tokens - 1:
                break
            # Drop finished rows from the batch (and the KV cache) once they are an eighth of it:
            # copying the cache costs about as much as a few decode steps of one row.
            if len(batch) - len(live) >= max(1, len(batch) // 8):
                batch = [batch[j] for j in live]
                kt = torch.tensor(live, device=dev)
                cache.batch_select_indices(kt)
                nxt, mask_buf, next_pos = nxt[kt], mask_buf[kt], next_pos[kt]
                temps = None if temps is None else temps[kt]
            width += 1
            last = self._last_state(input_ids=nxt[:, None], attention_mask=mask_buf[:, :width],
                                    position_ids=next_pos[:, None], **{self.cache_kw: cache}, use_cache=True)
            next_pos = next_pos + 1
        for a in batch:
            if done[a] is None:
                done[a] = self._finish(tokens[a], lps[a], "length", params, rows[a].sample_index)
        return [d for d in done]  # type: ignore[misc]

    #: rows per pass through the output layer: the layer and the draw for 256 rows (50 MB of fp32 logits)
    #: took 102 ms in one slice against 79 ms in two of 128 (bench/decode_step.py --pick, docs/RESULTS.md)
    head_rows = 128

    def _split_head(self) -> tuple[Any, Any]:
        """(backbone, head) where the model's logits are plainly ``head(backbone(...).last_hidden_state)``
        (no soft-capping or scaling), else (None, None): the whole model gives the logits."""
        if self._split is None:
            head = self.model.get_output_embeddings()
            plain = head is not None and not any(getattr(self.model.config, k, None) for k in
                                                 ("final_logit_softcapping", "logit_scale", "logits_scaling"))
            decoder = self.model.get_decoder() if plain and hasattr(self.model, "get_decoder") else None
            self._split = (decoder, head) if decoder is not None and decoder is not self.model else (None, None)
        return self._split

    def _last_state(self, **inputs: Any) -> Any:
        """The last position's hidden state of each row (what :meth:`_pick` puts through the output
        layer), or its logits for a model whose logits are not plainly head(hidden)."""
        backbone, _ = self._split_head()
        if backbone is None:
            return self.model(**inputs, logits_to_keep=1).logits[:, -1, :].float()
        return backbone(**inputs).last_hidden_state[:, -1, :]

    def _pick(self, last: Any, params: GenParams, gens: list[Any], temps: Any = None) -> tuple[Any, Any]:
        """The next token of each row (argmax, or :meth:`_draw`), and its log-probability under the
        model (T = 1) when ``params.logprobs``. The output layer runs ``head_rows`` rows at a time and
        each slice is drawn from before the next is computed, so the full [rows x vocab] logits never
        exist at once. ``temps`` (one per row, 0 for argmax) overrides ``params.temperature``: each
        sampled row's logits are divided by its own temperature before the draw, which is what
        :meth:`_draw` does with one temperature, so a row draws the same token in a mixed batch."""
        torch = self.torch
        _, head = self._split_head()
        picks, lps = [], []
        for a in range(0, last.shape[0], self.head_rows):
            logits = last[a:a + self.head_rows]
            logits = logits if head is None else head(logits).float()
            if temps is not None:
                t = temps[a:a + self.head_rows]
                argmax = t == 0
                nxt = logits.argmax(-1)
                if not bool(argmax.all()):
                    scaled = torch.where(argmax, 1.0, t)[:, None]
                    z = logits.div_(scaled) if not params.logprobs else logits / scaled
                    drawn = self._draw(z, dataclasses.replace(params, temperature=1.0), gens[a:a + self.head_rows],
                                       in_place=True)
                    nxt = torch.where(argmax, nxt, drawn)
            elif params.greedy:
                nxt = logits.argmax(-1)
            else:
                nxt = self._draw(logits, params, gens[a:a + self.head_rows], in_place=not params.logprobs)
            if params.logprobs:
                lps.append(logits.gather(-1, nxt[:, None])[:, 0] - logits.logsumexp(-1))
            picks.append(nxt)
        cat = (lambda t: t[0] if len(t) == 1 else torch.cat(t))
        return cat(picks), (cat(lps) if params.logprobs else None)

    def _draw(self, logits: Any, params: GenParams, gens: list[Any], in_place: bool = False) -> Any:
        """One token per row from softmax(logits / T) (top-p truncated), by inverse transform
        sampling: each row's own generator draws one uniform u, and the token is the first whose
        cumulative weight exceeds u times the total. One batched cumsum and search instead of
        a ``torch.multinomial`` call per row (which took ~1.3 ms each over a 49k vocabulary).
        Without top-p the weights are exp((logits - max) / T), unnormalised: the total scales u, so
        no division by the sum is needed. ``in_place`` lets it overwrite ``logits``.
        Rows whose generator is None (finished, still in the batch) get an arbitrary token."""
        torch = self.torch
        t = params.temperature
        z = (logits.div_(t) if t != 1.0 else logits) if in_place else logits / t
        w = z.sub_(z.amax(-1, keepdim=True)).exp_()
        if params.top_p < 1.0:
            sp, si = (w / w.sum(-1, keepdim=True)).sort(dim=-1, descending=True)
            cut = sp.cumsum(-1) - sp > params.top_p
            sp[cut] = 0.0
            w = torch.zeros_like(w).scatter_(-1, si, sp)
        cdf = w.cumsum_(-1)  # fp32 partial sums of non-negative terms never decrease
        u = torch.tensor([float(torch.rand((), generator=g)) if g is not None else 0.0
                          for g in gens], device=cdf.device)
        # right=True: the first index whose cdf is > u * total, so a zero-weight token is never drawn
        total = cdf[:, -1:]
        idx = torch.searchsorted(cdf, u[:, None] * total, right=True)[:, 0]
        over = idx >= cdf.shape[-1]  # u * total rounded up to the total: take the last possible token
        if bool(over.any()):
            idx = torch.where(over, torch.searchsorted(cdf, total)[:, 0], idx)  # the first to reach the total
        return idx

    def _hit_stop(self, toks: list[int], stop: tuple[str, ...]) -> bool:
        tail = self.tokenizer.decode(toks[-16:], skip_special_tokens=True)
        return any(s in tail for s in stop)

    def _finish(self, toks, lps, reason, params: GenParams, index: int, eos_count: int = 0) -> Completion:
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        n_tokens = len(toks) + eos_count
        if params.stop:
            cut = min((text.find(s) for s in params.stop if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        return Completion(text=text, finish_reason=reason, n_tokens=n_tokens, index=index,
                          token_logprobs=tuple(lps) if params.logprobs else None)

    # ------------------------------------------------------------------ scoring
    #: tokens (rows x padded length) in one scoring forward pass, and positions per log-softmax chunk
    score_token_budget = 8192
    #: rows x (prompt + max new tokens) in one decoding batch: bounds the KV cache (for the
    #: embedded model 32k tokens are ~1.5 GB) while short prompts still fill ``batch_size`` rows
    gen_token_budget = 32768
    score_chunk = 256

    #: scoring runs the prompt once for each batch of answers to it (:func:`prompt_runs`; False: every
    #: row reads its whole prompt, the plain pass kept for ``bench/score.py`` and the equivalence test)
    score_shared_prefix = True
    #: a prompt with at least this many answers in one call gets batches of its own; fewer go with
    #: other prompts' answers, sorted by length (their common template head is still shared)
    score_group_min = 4

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Per-token log-probabilities of each completion. Batches hold at most
        ``score_token_budget`` padded tokens (long texts go alone), and only the completion's
        positions go through the output layer, ``score_chunk`` positions at a time: memory is
        O(budget x hidden + chunk x vocab), never [batch x length x vocab].

        Answers to one prompt are batched together and the backbone runs the tokens every row of
        a batch starts with once (:mod:`selfalign.models.shared_prefix`): Best-of-N's N answers read
        their prompt once instead of N times. The log-probs equal the plain pass's up to float
        rounding (``tests/test_hf.py``; measured in ``bench/score.py``)."""
        pairs = []
        for r in requests:
            p = self.encode_prompt(r.prompt)
            if not p:  # scoring a text "alone": condition on a start token
                bos = self.tokenizer.bos_token_id
                p = [bos if bos is not None else self.pad_id]
            c = self.tokenizer(r.completion, add_special_tokens=False)["input_ids"]
            if not c:
                raise ModelError(f"cannot score an empty completion (prompt {r.prompt!r})")
            pairs.append((p, c))
        results: list[ScoreResult | None] = [None] * len(requests)
        backbone, _ = self._split_head()
        share = self.score_shared_prefix and backbone is not None
        if share:
            install_shared_prefix(backbone)
        total = [len(p) + len(c) for p, c in pairs]
        runs = prompt_runs([tuple(p) for p, _ in pairs], total, self.score_group_min if share else None)
        batches = [b for run in runs for b in self._token_batches(run, total)]
        with self.torch.inference_mode(), self._scoring_attention(), \
                (contextlib.nullcontext() if self.score_shared_prefix else plain_forward(backbone)):
            for idx in batches:
                spans = [(len(pairs[i][0]) - 1, len(pairs[i][1])) for i in idx]  # logit at t predicts token t+1
                seqs = [pairs[i][0] + pairs[i][1] for i in idx]
                for i, lp in zip(idx, self._completion_logprobs(seqs, spans)):
                    results[i] = ScoreResult(requests[i], tuple(lp))
        return results  # type: ignore[return-value]

    #: the attention scoring runs with where decoding uses :func:`_invariant_attention` (``attention="invariant"``):
    #: that function's matmuls avoid oneDNN, which made bf16 scoring 3.9x slower than SDPA on an AMX
    #: Xeon (docs/RESULTS.md). Scoring needs no batch invariance: a re-run call gets the batches it had
    #: (the store's chunks), and its linear layers' bits depend on the batch's rows anyway.
    score_attention = "sdpa"

    @contextlib.contextmanager
    def _scoring_attention(self) -> Iterator[None]:
        if not self.invariant_attention or not self.score_attention:
            yield
            return
        self.model.set_attn_implementation(self.score_attention)
        try:
            yield
        finally:
            self.model.set_attn_implementation(INVARIANT_ATTENTION)

    def _token_batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Consecutive items of ``order`` (sorted by length) in batches of at most ``batch_size``
        rows and ``score_token_budget`` padded tokens; a longer text forms a batch alone."""
        return [[order[j] for j in b] for b in self._batches([lengths[i] for i in order], self.score_token_budget)]

    def _batches(self, lengths: list[int], budget: int) -> list[list[int]]:
        """Consecutive positions of ``lengths`` (ascending) in batches of at most ``batch_size``
        rows and ``budget`` padded tokens; a longer item forms a batch alone."""
        batches: list[list[int]] = []
        cur: list[int] = []
        for i, n in enumerate(lengths):
            if cur and (len(cur) + 1 > self.batch_size or (len(cur) + 1) * n > budget):
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
        return batches

    def _completion_logprobs(self, seqs: list[list[int]], spans: list[tuple[int, int]]) -> list[list[float]]:
        """Log-probabilities of the tokens in ``spans`` ((first predicting position, length) per row)
        of ``seqs``, right-padded into one batch."""
        torch = self.torch
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(seqs), width), dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
            att[j, : len(s)] = 1
        ids, att = ids.to(self.device), att.to(self.device)
        decoder, head = self._split_head()
        if decoder is None:  # a model whose logits are not plainly lm_head(hidden): the full forward
            logits = self.model(input_ids=ids, attention_mask=att).logits
            hidden, project = logits, (lambda h: h)
        else:
            hidden, project = decoder(input_ids=ids, attention_mask=att).last_hidden_state, head
        out = []
        for j, (start, n) in enumerate(spans):
            targets = ids[j, start + 1:start + 1 + n]
            vals = []
            for a in range(0, n, self.score_chunk):
                h = hidden[j, start + a:start + min(n, a + self.score_chunk)]
                logp = torch.log_softmax(project(h).float(), dim=-1)
                vals.append(logp.gather(-1, targets[a:a + len(h), None])[:, 0])
            out.append(torch.cat(vals).cpu().tolist())
        return out
