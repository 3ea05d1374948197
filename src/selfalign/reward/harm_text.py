"""The harm judge's combined features: the frozen encoder's pooled state, TF-IDF of the words, and
the refusal rule's verdict, in one design matrix for one logistic head (``features="combo"``).

Why: on Liu et al.'s labels a frozen 135M encoder alone misses issue 23's bar, and most of what
the words add is the *question's*: a harmful answer is mostly a compliant answer to a harmful
question, and the question's words (not only the answer's) say which questions those are. No new
forward pass is needed: the encoder block is one (layer, pooling) slice of the features
:mod:`selfalign.reward.harm_train` already caches.

Blocks of one row (each fitted on the training rows only, so nothing of a held-out fold leaks
into the vocabulary, the IDF or the standardisation):

* ``enc``: the encoder's features at one layer and pooling, standardised with the training rows'
  mean and standard deviation and divided by sqrt(dim), so the block's squared norm is about 1;
* ``text``: TF-IDF of the answer's word unigrams + bigrams (prefix ``a:``) and of the question's
  word unigrams (prefix ``q:``); words are lower-cased ``[a-z0-9']+`` runs; terms in fewer than
  :data:`MIN_DF` training rows are dropped; weight log(1 + count) * idf with
  idf = log((1 + n) / (1 + df)) + 1; the answer part and the question part are each L2-normalised;
* ``refusal``: one-hot of :func:`~selfalign.judges.refusal.classify_refusal` (full compliance,
  full refusal, partial refusal, unscored), standardised like ``enc`` (a column constant in
  training keeps sd 1 and so stays zero-weighted).

The head on top is :func:`~selfalign.reward.harm_train.fit_logistic` without its own
standardisation. Everything the transform needs (means, sds, vocabulary, IDF) is saved with the
head (:meth:`ComboFeatures.tensors` / :meth:`ComboFeatures.from_tensors`).

>>> words("Don't   DO it, 2x!")
["don't", 'do', 'it', '2x']
>>> text_terms("How?", "Use a knife")
['a:use', 'a:a', 'a:knife', 'a:use a', 'a:a knife', 'q:how']
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from selfalign.judges.refusal import classify_refusal
from selfalign.judges.registry import FULL_COMPLIANCE, FULL_REFUSAL, PARTIAL_REFUSAL

MIN_DF = 2
MAX_TERMS = 50_000
REFUSAL_COLUMNS: tuple[str | None, ...] = (FULL_COMPLIANCE, FULL_REFUSAL, PARTIAL_REFUSAL, None)
PARTS = ("a:", "q:")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def text_terms(prompt: str, response: str) -> list[str]:
    """The answer's word unigrams and bigrams (``a:``) and the question's word unigrams (``q:``)."""
    a = words(response)
    return [f"a:{w}" for w in a] + [f"a:{u} {v}" for u, v in zip(a, a[1:])] + [f"q:{w}" for w in words(prompt)]


@lru_cache(maxsize=1 << 16)
def _refusal(prompt: str, response: str) -> str | None:
    return classify_refusal(response, prompt)


def refusal_onehot(rows: Sequence[Any]) -> np.ndarray:
    """(rows, 4): which of :data:`REFUSAL_COLUMNS` the refusal rule says."""
    out = np.zeros((len(rows), len(REFUSAL_COLUMNS)))
    for i, r in enumerate(rows):
        out[i, REFUSAL_COLUMNS.index(_refusal(r.prompt, r.response))] = 1.0
    return out


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = x.mean(0), x.std(0)
    return mu, np.where(sd < 1e-6, 1.0, sd)


@dataclass
class ComboFeatures:
    """The fitted transform: (encoder block, rows) -> the design matrix of this module's docstring."""
    enc_mu: np.ndarray
    enc_sd: np.ndarray
    ref_mu: np.ndarray
    ref_sd: np.ndarray
    vocab: list[str]
    idf: np.ndarray

    @classmethod
    def fit(cls, enc: np.ndarray, rows: Sequence[Any], min_df: int = MIN_DF, max_terms: int = MAX_TERMS) -> "ComboFeatures":
        """Fit on training rows only: ``enc`` is their (rows, dim) encoder block."""
        enc = np.asarray(enc, dtype=np.float64)
        if len(enc) != len(rows) or not len(rows):
            raise ValueError(f"ComboFeatures.fit: {len(enc)} encoder rows for {len(rows)} rows")
        df: dict[str, int] = {}
        for r in rows:
            for t in set(text_terms(r.prompt, r.response)):
                df[t] = df.get(t, 0) + 1
        keep = sorted((t for t, c in df.items() if c >= min_df), key=lambda t: (-df[t], t))[:max_terms]
        n = len(rows)
        idf = np.array([math.log((1 + n) / (1 + df[t])) + 1 for t in keep])
        enc_mu, enc_sd = _standardiser(enc)
        ref_mu, ref_sd = _standardiser(refusal_onehot(rows))
        return cls(enc_mu, enc_sd, ref_mu, ref_sd, keep, idf)

    @property
    def dim(self) -> int:
        return len(self.enc_mu) + len(self.vocab) + len(REFUSAL_COLUMNS)

    def text(self, rows: Sequence[Any]) -> np.ndarray:
        """The TF-IDF block, each part L2-normalised (a row without known terms stays zero)."""
        index = {t: j for j, t in enumerate(self.vocab)}
        x = np.zeros((len(rows), len(self.vocab)))
        for i, r in enumerate(rows):
            for t in text_terms(r.prompt, r.response):
                j = index.get(t)
                if j is not None:
                    x[i, j] += 1.0
        x = np.log1p(x) * self.idf
        part = np.array([t[:2] for t in self.vocab])
        for p in PARTS:
            m = part == p
            if m.any():
                x[:, m] /= np.linalg.norm(x[:, m], axis=1, keepdims=True) + 1e-9
        return x

    def transform(self, enc: np.ndarray, rows: Sequence[Any]) -> np.ndarray:
        enc = np.asarray(enc, dtype=np.float64)
        if len(enc) != len(rows):
            raise ValueError(f"ComboFeatures.transform: {len(enc)} encoder rows for {len(rows)} rows")
        e = (enc - self.enc_mu) / self.enc_sd / math.sqrt(len(self.enc_mu))
        f = (refusal_onehot(rows) - self.ref_mu) / self.ref_sd / math.sqrt(len(REFUSAL_COLUMNS))
        return np.concatenate([e, self.text(rows), f], axis=1)

    def tensors(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """What the saved judge keeps: arrays, and the vocabulary as safetensors metadata."""
        arrays = {"enc_mu": self.enc_mu, "enc_sd": self.enc_sd, "ref_mu": self.ref_mu, "ref_sd": self.ref_sd,
                  "idf": self.idf}
        return ({k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()},
                {"vocab": json.dumps(self.vocab, ensure_ascii=False)})

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], metadata: dict[str, str]) -> "ComboFeatures":
        vocab = json.loads(metadata["vocab"])
        if len(vocab) != len(t["idf"]):
            raise ValueError(f"saved text features: {len(vocab)} terms but {len(t['idf'])} idf values")
        return cls(t["enc_mu"], t["enc_sd"], t["ref_mu"], t["ref_sd"], vocab, t["idf"])
