"""Features, the logistic head, and leave-one-source-model-out evaluation for the harm judge.

See :mod:`selfalign.reward.harm_judge` for the method, the selection protocol and the measured numbers.
Everything here is numpy/torch; sklearn is not a dependency.

* :class:`FrozenEncoder`: the embedded model (or any causal LM the project's loader resolves),
  frozen, fp32. A (question, answer) pair is rendered exactly as the preference model renders it
  (:class:`~selfalign.train.reward.PMEncoder`: the chat template, ending at the end-of-turn token) and
  three poolings of several layers' hidden states are kept: ``last`` (the end-of-turn token),
  ``mean`` (all tokens) and ``resp`` (the mean over the answer's tokens only). Features are cached
  on disk, keyed by the encoder id, the template, the layers and a hash of the rows.
* :func:`hashed_bow`: the no-encoder baseline, hashed unigrams and bigrams of the answer (and,
  in their own namespace, the question), log counts, L2-normalised.
* ``combo`` (:mod:`selfalign.reward.harm_text`): one layer and pooling of the cached encoder
  features + TF-IDF of the answer's and the question's words + the refusal rule's verdict, one
  design matrix fitted per training fold (:func:`fit_head`).
* :func:`fit_logistic`: L2-regularised logistic regression on standardised features (L-BFGS),
  optionally class-balanced.
* :func:`loso_indices`: train on two source models' answers, test on the third; questions never
  cross between train and test (they are split by a hash of the question text).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from selfalign.judges.registry import HARMFUL, evaluate_labels, HARM_LABELS, NOT_HARMFUL
from selfalign.models.hf import model_revision
from selfalign.models.registry import require_trainable
from selfalign.reward.harm_text import ComboFeatures
from selfalign.train.reward import PMEncoder

POOLINGS = ("last", "mean", "resp")
TEMPLATE = "pm-chat-v1"  # PMEncoder's rendering: chat template, text ends at the end-of-turn token


# ------------------------------------------------------------------ splits
def question_half(question: str, salt: str = "harm-split-v1") -> int:
    """0 (dev) or 1 (test): a stable hash of the question text, so every answer to a question
    lands on the same side."""
    return hashlib.sha256(f"{salt}:{question.strip()}".encode()).digest()[0] & 1


def sources(rows: Sequence[Any]) -> list[str]:
    return sorted({r.meta.get("source_model", "") for r in rows})


# ------------------------------------------------------------------ the logistic head
@dataclass
class Head:
    """p(harmful) = sigmoid(((x - mu) / sd) . w + b)."""
    mu: np.ndarray
    sd: np.ndarray
    w: np.ndarray
    b: float

    def proba(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mu) / self.sd) @ self.w + self.b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, balanced: bool = False, iters: int = 100,
                 seed: int = 0, standardize: bool = True) -> Head:
    """Logistic regression (y = 1: harmful) by full-batch L-BFGS; ``l2`` multiplies half the
    squared weight norm; ``balanced`` weights each class to half of the loss. ``standardize=False``
    for sparse features (bag of words), where a column unseen in training must stay zero-weighted."""
    import torch

    torch.manual_seed(seed)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(set(y.tolist())) < 2:
        raise ValueError("the training rows hold one class only")
    if standardize:
        mu, sd = x.mean(0), x.std(0) + 1e-6
    else:
        mu, sd = np.zeros(x.shape[1]), np.ones(x.shape[1])
    xt = torch.tensor((x - mu) / sd)
    yt = torch.tensor(y)
    if balanced:
        pos = y.mean()
        wt = torch.tensor(np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)))
    else:
        wt = torch.ones(len(y), dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        z = xt @ w + b
        loss = (wt * torch.nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="none")).mean()
        loss = loss + l2 * (w * w).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    return Head(mu, sd, w.detach().numpy().copy(), float(b.detach().item()))


# ------------------------------------------------------------------ metrics
def gold01(rows: Sequence[Any]) -> np.ndarray:
    return np.array([1 if r.gold == HARMFUL else 0 for r in rows])


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, list[dict[str, Any]]]:
    """Expected calibration error of P(harmful) over equal-width bins, and the reliability table
    (per bin: n, mean predicted, observed harmful share)."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    table, total = [], 0.0
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        m = (p >= lo) & ((p < hi) if k < bins - 1 else (p <= hi))
        if not m.any():
            continue
        conf, obs = float(p[m].mean()), float(y[m].mean())
        total += m.sum() / len(p) * abs(conf - obs)
        table.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": int(m.sum()), "predicted": conf, "observed": obs})
    return float(total), table


def scores(p: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """accuracy, kappa, per-class recall (registry.evaluate_labels) and ECE of P(harmful)."""
    pred = [HARMFUL if v >= threshold else NOT_HARMFUL for v in p]
    gold = [HARMFUL if v == 1 else NOT_HARMFUL for v in y]
    res = evaluate_labels(pred, gold, HARM_LABELS)
    res["ece"], res["reliability"] = ece(p, y)
    return res


# ------------------------------------------------------------------ features
def rows_hash(rows: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r.prompt, r.response], ensure_ascii=False).encode())
    return h.hexdigest()


def _tokens(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z0-9']+|[^\sa-z0-9]", text.lower())


def hashed_bow(rows: Sequence[Any], dim: int = 1 << 13) -> np.ndarray:
    """Hashed unigrams + bigrams of the answer, unigrams of the question (own namespace);
    log(1 + count), each row L2-normalised."""
    x = np.zeros((len(rows), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        a = _tokens(r.response)
        grams = [f"a:{t}" for t in a] + [f"b:{s} {t}" for s, t in zip(a, a[1:])] + [f"q:{t}" for t in _tokens(r.prompt)]
        for g in grams:
            x[i, int.from_bytes(hashlib.md5(g.encode()).digest()[:4], "little") % dim] += 1
    x = np.log1p(x)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-9
    return x


class FrozenEncoder:
    """A causal LM's hidden states as features (no gradients; fp32 on a CPU)."""

    def __init__(self, spec: str = "smollm2-135m", layers: Sequence[int] | None = None, max_length: int = 512,
                 batch_tokens: int = 4096):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer


        self.torch = torch
        self.spec = spec
        self.path = require_trainable(spec, role="encoder")
        self.tok = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32)
        self.model.eval()
        n = self.model.config.num_hidden_layers
        self.layers = sorted(set(layers)) if layers else sorted({max(1, round(n * k / 6)) for k in range(1, 7)})
        if any(not 0 <= layer <= n for layer in self.layers):
            raise ValueError(f"layers must be in 0..{n}, got {self.layers}")
        self.enc = PMEncoder(self.tok, max_length)
        self.batch_tokens = batch_tokens
        self.hidden = int(self.model.config.hidden_size)
        self.id = f"{spec}@{model_revision(self.path, None)}"

    def encode(self, prompt: str, response: str) -> tuple[list[int], int]:
        """Token ids (ending at the end of turn) and where the answer starts."""
        ids, _ = self.enc.encode(prompt, response)
        got: Any = self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                                add_generation_prompt=True)
        head = list(got["input_ids"] if hasattr(got, "keys") else got)
        start = len(head) if ids[:len(head)] == head and len(head) < len(ids) else 0
        return ids, start

    def features(self, rows: Sequence[Any], progress: bool = False) -> np.ndarray:
        """(rows, layers, 3 poolings, hidden) float32."""
        torch = self.torch
        enc = [self.encode(r.prompt, r.response) for r in rows]
        out = np.zeros((len(rows), len(self.layers), len(POOLINGS), self.hidden), dtype=np.float32)
        order = sorted(range(len(enc)), key=lambda i: len(enc[i][0]))
        i, t0, done = 0, time.time(), 0
        while i < len(order):
            j = i + 1
            while j < len(order) and (j - i + 1) * len(enc[order[j]][0]) <= self.batch_tokens:
                j += 1
            batch = [enc[k] for k in order[i:j]]
            width = max(len(b[0]) for b in batch)
            ids = torch.full((len(batch), width), self.enc.pad_id, dtype=torch.long)
            att = torch.zeros((len(batch), width), dtype=torch.long)
            for b, (seq, _) in enumerate(batch):
                ids[b, :len(seq)] = torch.tensor(seq)
                att[b, :len(seq)] = 1
            with torch.no_grad():
                hs = self.model.model(input_ids=ids, attention_mask=att, output_hidden_states=True).hidden_states
            for li, layer in enumerate(self.layers):
                h = hs[layer].float().numpy()
                for b, (seq, start) in enumerate(batch):
                    k, n = order[i + b], len(seq)
                    out[k, li, 0] = h[b, n - 1]
                    out[k, li, 1] = h[b, :n].mean(0)
                    out[k, li, 2] = h[b, start:n].mean(0)
            done += len(batch)
            if progress:
                print(f"  features {done}/{len(rows)} ({time.time() - t0:.0f} s)", flush=True)
            i = j
        return out

    def cache_key(self, rows: Sequence[Any]) -> str:
        spec = {"encoder": self.id, "template": TEMPLATE, "max_length": self.enc.max_length, "layers": self.layers,
                "poolings": POOLINGS, "rows": rows_hash(rows)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def cached_features(enc: FrozenEncoder, rows: Sequence[Any], cache_dir: str | Path | None,
                    progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Features of ``rows``, read from ``cache_dir/<key>.safetensors`` when there, else computed
    and written there; also (key, seconds, cached)."""
    from safetensors.numpy import load_file, save_file

    key = enc.cache_key(rows)
    path = Path(cache_dir) / f"{key}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        return load_file(str(path))["x"], {"key": key, "seconds": 0.0, "cached": True}
    t = time.time()
    x = enc.features(rows, progress=progress)
    secs = time.time() - t
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"x": x}, str(tmp), metadata={"encoder": enc.id, "template": TEMPLATE,
                                                "layers": json.dumps(enc.layers), "poolings": json.dumps(POOLINGS)})
        tmp.replace(path)
    return x, {"key": key, "seconds": secs, "cached": False}


# ------------------------------------------------------------------ LOSO and selection
@dataclass(frozen=True)
class HeadConfig:
    """One candidate: the feature set (``enc``: one layer and pooling of the frozen encoder;
    ``bow``: hashed bag of words; ``combo``: that encoder slice + TF-IDF of the words + the refusal
    verdict, :mod:`selfalign.reward.harm_text`), the L2 strength, class balancing and the decision
    threshold."""
    features: str = "enc"
    layer: int = 0
    pooling: str = "last"
    l2: float = 1e-2
    balanced: bool = False
    threshold: float = 0.5

    def name(self) -> str:
        feat = {"enc": f"enc L{self.layer} {self.pooling}", "bow": "bow",
                "combo": f"combo (enc L{self.layer} {self.pooling} + tf-idf + refusal)"}[self.features]
        return f"{feat}, l2 {self.l2:g}, {'balanced' if self.balanced else 'unweighted'}, t {self.threshold:g}"


def pick(feats: dict[str, Any], cfg: HeadConfig) -> np.ndarray:
    """The (rows, dim) matrix a config reads from ``feats`` (``enc``: (rows, layers, poolings,
    hidden) with ``layers``; ``bow``: (rows, dim)); for ``combo`` the encoder slice, which
    :func:`fit_head` joins with the rows' text per training fold."""
    if cfg.features == "bow":
        return np.asarray(feats["bow"])
    li = list(feats["layers"]).index(cfg.layer)
    return np.asarray(feats["enc"][:, li, POOLINGS.index(cfg.pooling)])


def fold_ids(rows: Sequence[Any], phase: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per-row fold ids and the (train fold, test fold) pairs of a phase.

    * ``dev``: only the dev questions (half 0), split again by a second hash into two folds,
      each used once for training and once for testing (cross-fitting): selection sees no test question;
    * ``test``: train on the dev questions, test on the test questions (half 1), once;
    * ``all``: both halves, each trained on the other (every row is tested once)."""
    half = np.array([question_half(r.prompt) for r in rows])
    if phase == "dev":
        sub = np.array([question_half(r.prompt, "harm-dev-fold-v1") for r in rows])
        return np.where(half == 0, sub, -1), [(0, 1), (1, 0)]
    if phase == "test":
        return half, [(0, 1)]
    if phase == "all":
        return half, [(0, 1), (1, 0)]
    raise ValueError(f"phase must be dev, test or all, got {phase!r}")


def loso_indices(rows: Sequence[Any], phase: str) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(held-out source, train indices, test indices) for each source and each of the phase's fold
    pairs: train = the other sources' answers to the train fold's questions, test = the held-out
    source's answers to the test fold's questions. No source and no question is on both sides."""
    fold, pairs = fold_ids(rows, phase)
    src = np.array([r.meta.get("source_model", "") for r in rows])
    for s in sources(rows):
        for a, b in pairs:
            tr = np.where((src != s) & (fold == a))[0]
            te = np.where((src == s) & (fold == b))[0]
            if len(te):
                yield s, tr, te


def fit_head(x: np.ndarray, rows: Sequence[Any], cfg: HeadConfig) -> tuple[Head, ComboFeatures | None]:
    """The head of ``cfg`` fitted on ``rows`` (``x``: their :func:`pick` matrix); for ``combo`` also
    the text/refusal transform, fitted on these rows only. Predict with :func:`head_proba`."""
    y = gold01(rows)
    if cfg.features != "combo":
        return fit_logistic(x, y, cfg.l2, cfg.balanced, standardize=cfg.features != "bow"), None
    combo = ComboFeatures.fit(x, rows)
    return fit_logistic(combo.transform(x, rows), y, cfg.l2, cfg.balanced, standardize=False), combo


def head_proba(head: Head, combo: ComboFeatures | None, x: np.ndarray, rows: Sequence[Any]) -> np.ndarray:
    """P(harmful) of rows whose :func:`pick` matrix is ``x``."""
    return head.proba(x if combo is None else combo.transform(x, rows))


def loso_predict(x: np.ndarray, rows: Sequence[Any], cfg: HeadConfig, phase: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out source -> (P(harmful), gold 0/1), pooled over the phase's fold pairs."""
    y = gold01(rows)
    got: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for s, tr, te in loso_indices(rows, phase):
        head, combo = fit_head(x[tr], [rows[i] for i in tr], cfg)
        got.setdefault(s, []).append((head_proba(head, combo, x[te], [rows[i] for i in te]), y[te]))
    return {s: (np.concatenate([p for p, _ in v]), np.concatenate([t for _, t in v])) for s, v in got.items()}


def table(pred: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float) -> dict[str, dict[str, Any]]:
    return {s: scores(p, y, threshold) for s, (p, y) in pred.items()}


def bar_sources(rows: Sequence[Any], min_share: float = 0.10) -> list[str]:
    """The source models whose answers are at least ``min_share`` harmful (the bar applies to them)."""
    out = []
    for s in sources(rows):
        y = [r.gold == HARMFUL for r in rows if r.meta.get("source_model", "") == s]
        if y and sum(y) / len(y) >= min_share:
            out.append(s)
    return out


def criterion(tab: dict[str, dict[str, Any]], bar: Sequence[str]) -> tuple[float, float]:
    """What selection maximises: the worst kappa over the bar's sources, then their mean accuracy."""
    use = [s for s in bar if s in tab] or list(tab)
    return (min(tab[s]["kappa"] for s in use), float(np.mean([tab[s]["accuracy"] for s in use])))


def grid(layers: Sequence[int], with_encoder: bool = True, with_bow: bool = True,
         l2s: Sequence[float] = (1e-2, 1e-1, 1.0, 10.0),
         bow_l2s: Sequence[float] = (1e-3, 1e-2, 1e-1), with_combo: bool = True,
         combo_l2s: Sequence[float] = (1e-3, 1e-2, 1e-1),
         combo_poolings: Sequence[str] = ("mean", "resp")) -> list[HeadConfig]:
    """Candidates without thresholds (each is scored at every threshold of :data:`THRESHOLDS`).
    The bag of words and ``combo`` are not standardised as a whole (unit-norm blocks), so their L2
    ranges sit lower. ``combo`` needs the encoder and is tried class-balanced only (every
    encoder-only winner was balanced; each combo fit builds its own vocabulary, so it is the slow one)."""
    out = []
    for bal in (False, True):
        if with_encoder:
            out += [HeadConfig("enc", layer, pool, l2, bal) for layer in layers for pool in POOLINGS for l2 in l2s]
        if with_bow:
            out += [HeadConfig("bow", 0, "", l2, bal) for l2 in bow_l2s]
    if with_encoder and with_combo:
        out += [HeadConfig("combo", layer, pool, l2, True) for layer in layers for pool in combo_poolings
                for l2 in combo_l2s]
    return out


#: decision thresholds tried for every candidate (0.2 to 0.8 in steps of 0.05)
THRESHOLDS = tuple(round(0.2 + 0.05 * k, 2) for k in range(13))


def select(feats: dict[str, Any], rows: Sequence[Any], candidates: Sequence[HeadConfig],
           progress: bool = False) -> dict[str, Any]:
    """Score every candidate (at every threshold) by dev-question LOSO; the best by :func:`criterion`."""
    bar = bar_sources(rows)
    results: list[dict[str, Any]] = []
    t0 = time.time()
    for n, cfg in enumerate(candidates):
        pred = loso_predict(pick(feats, cfg), rows, cfg, "dev")
        for t in THRESHOLDS:
            c = HeadConfig(cfg.features, cfg.layer, cfg.pooling, cfg.l2, cfg.balanced, t)
            tab = table(pred, t)
            results.append({"config": c, "table": tab, "criterion": criterion(tab, bar)})
        if progress and (n + 1) % 10 == 0:
            print(f"  selection {n + 1}/{len(candidates)} candidates ({time.time() - t0:.0f} s)", flush=True)
    results.sort(key=lambda r: tuple(r["criterion"]), reverse=True)
    return {"bar_sources": bar, "results": results, "chosen": results[0]["config"], "seconds": time.time() - t0}
