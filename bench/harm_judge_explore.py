"""Cheap recipes for the harm judge, scored on the dev questions only (issue 23's harm bar).

    .venv/bin/python bench/harm_judge_explore.py [--data FILE] [--cache runs/judges/features]

No new forward pass: every encoder block is a slice of the features bench/harm_judge.py cached
(SmolLM2-135M, layers 5-30, poolings last / mean / answer-mean). The protocol is
selfalign.reward.harm_judge's dev phase: leave one source model out, on the dev half of the
questions split again into two question-disjoint folds, both ways, pooled; per candidate the best
L2, weighting and threshold (0.2-0.8, step 0.05) by the worst kappa over the sources with >= 10%
harmful answers, then their mean accuracy. The test questions are never read here; the winner is
reported once by bench/harm_judge.py (whose grid holds the ``combo`` family).

Candidates: TF-IDF (word 1-2 grams or char 3-5 grams of the answer, with or without the
question's words), the refusal rule's verdict, the question's category (Liu et al.'s ``tag_cat``,
which a judge does not see at inference: a probe only), the question-only part of the encoder
(the mean over the question's tokens, recovered from the cached mean and answer-mean poolings and
the token counts: causal attention makes it identical across answers to one question), several
layers, hand-made answer features, PCA of the encoder block, probability averaging and a
factorised P(question harmful) x P(answer harmful). Also a learning curve: the best combinations
trained on half of each fold's questions.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from typing import Any, Callable

import numpy as np

from selfalign.judges.refusal import classify_refusal
from selfalign.judges.registry import load_labelled
from selfalign.reward.harm_train import POOLINGS, bar_sources, fit_logistic, gold01, loso_indices, scores

DATA = "/work/shared/data/liu-llm-eval/safety_labelled.dev.jsonl"
THRESHOLDS = np.round(np.arange(0.2, 0.81, 0.05), 2)
Maker = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, bool]]


def grams(text: str, kind: str) -> list[str]:
    if kind in ("w1", "w12"):
        t = re.findall(r"[a-z0-9']+", text.lower())
        return t + ([f"{a} {b}" for a, b in zip(t, t[1:])] if kind == "w12" else [])
    s = " " + re.sub(r"\s+", " ", text.lower()) + " "
    return [s[i:i + n] for n in (3, 4, 5) for i in range(len(s) - n + 1)]


class Tfidf:
    """TF-IDF over parts (field, gram kind): log(1 + tf) * idf, each part L2-normalised."""

    def __init__(self, rows: list[Any], parts: list[tuple[str, str]], min_df: int = 2):
        self.rows, self.parts, self.min_df = rows, parts, min_df

    def _docs(self, idx: np.ndarray) -> list[list[str]]:
        return [[f"{f}{k}:{g}" for f, k in self.parts for g in grams(getattr(self.rows[i], f), k)] for i in idx]

    def fit(self, idx: np.ndarray) -> "Tfidf":
        df: dict[str, int] = {}
        for d in self._docs(idx):
            for g in set(d):
                df[g] = df.get(g, 0) + 1
        keep = sorted((g for g, c in df.items() if c >= self.min_df), key=lambda g: (-df[g], g))
        self.vocab = {g: j for j, g in enumerate(keep)}
        self.idf = np.array([math.log((1 + len(idx)) / (1 + df[g])) + 1 for g in keep])
        self.part = np.array([g.split(":", 1)[0] for g in keep])
        return self

    def transform(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros((len(idx), len(self.vocab)))
        for i, d in enumerate(self._docs(idx)):
            for g in d:
                j = self.vocab.get(g)
                if j is not None:
                    out[i, j] += 1
        out = np.log1p(out) * self.idf
        for p in set(self.part.tolist()):
            m = self.part == p
            out[:, m] /= np.linalg.norm(out[:, m], axis=1, keepdims=True) + 1e-9
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--encoder", default="smollm2-135m")
    ap.add_argument("--cache", default="runs/judges/features")
    a = ap.parse_args()

    from selfalign.reward.harm_judge import build_features

    _, rows = load_labelled(a.data)
    feats = build_features(rows, a.encoder, a.cache)
    if not feats["feature_cache"]["cached"]:
        print("note: the features were not cached; they were extracted now")
    X, layers, enc_model = feats["enc"], list(feats["layers"]), feats["encoder"]
    y, bar = gold01(rows), bar_sources(rows)
    lens = np.array([(len(ids), start) for ids, start in (enc_model.encode(r.prompt, r.response) for r in rows)], float)

    def enc(layer: int, pool: str) -> np.ndarray:
        return np.asarray(X[:, layers.index(layer), POOLINGS.index(pool)], dtype=np.float64)

    def qenc(layer: int) -> np.ndarray:  # the mean over the question's tokens (chat header included)
        n, s = lens[:, :1], lens[:, 1:]
        return (n * enc(layer, "mean") - (n - s) * enc(layer, "resp")) / s

    labels = [classify_refusal(r.response, r.prompt) for r in rows]
    REF = np.array([[lab == k for k in ("full_compliance", "full_refusal", "partial_refusal", None)] for lab in labels], float)
    cats = sorted({r.meta.get("category", "") for r in rows})
    CAT = np.array([[r.meta.get("category", "") == c for c in cats] for r in rows], float)

    def hand(r: Any) -> list[float]:
        ans, q = r.response.strip(), r.prompt.strip().strip('"').lower()
        return [len(ans) / 500, float(ans[:2] in ("1.", "1)") or bool(re.search(r"\n\s*2[.)]", ans))),
                float(ans.startswith(('"', "\u201d", "\u201c"))),
                float(bool(re.match(r"(how|what|where|which)\b.*\b(i|we|someone|you)\b", q))),
                float("?" in ans[:200]), float(len(ans.split()) < 12)]
    HAND = np.array([hand(r) for r in rows])

    def dense(f: np.ndarray) -> Maker:
        return lambda tr, te: (f[tr], f[te], True)

    def tfidf(parts: list[tuple[str, str]], min_df: int = 2) -> Maker:
        def make(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
            v = Tfidf(rows, parts, min_df).fit(tr)
            return v.transform(tr), v.transform(te), False
        return make

    def pca(f: np.ndarray, k: int) -> Maker:
        def make(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
            z = (f - f[tr].mean(0)) / (f[tr].std(0) + 1e-6)
            _, s, vt = np.linalg.svd(z[tr], full_matrices=False)
            p = z @ vt[:k].T / (s[:k] / np.sqrt(len(tr)))
            return p[tr], p[te], True
        return make

    def concat(*makers: Maker, scales: tuple[float, ...] | None = None) -> Maker:
        """Dense blocks standardised on the training rows and divided by sqrt(dim); TF-IDF as is."""
        def make(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
            xs_tr, xs_te = [], []
            for k, m in enumerate(makers):
                u, v, st = m(tr, te)
                if st:
                    mu, sd = u.mean(0), u.std(0) + 1e-6
                    u, v = (u - mu) / sd / math.sqrt(u.shape[1]), (v - mu) / sd / math.sqrt(u.shape[1])
                w = 1.0 if scales is None else scales[k]
                xs_tr.append(u * w)
                xs_te.append(v * w)
            return np.concatenate(xs_tr, 1), np.concatenate(xs_te, 1), False
        return make

    def best_of(pred_by_cfg: dict[Any, dict[str, tuple[np.ndarray, np.ndarray]]]) -> tuple[Any, ...]:
        best: tuple[Any, ...] | None = None
        for cfg, pred in pred_by_cfg.items():
            for t in THRESHOLDS:
                tab = {s: scores(p, yy, float(t)) for s, (p, yy) in pred.items()}
                crit = (min(tab[s]["kappa"] for s in bar), float(np.mean([tab[s]["accuracy"] for s in bar])))
                if best is None or crit > best[0]:
                    best = (crit, cfg, float(t), tab)
        assert best is not None
        return best

    def pooled(got: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {s: (np.concatenate([p for p, _ in v]), np.concatenate([t for _, t in v])) for s, v in got.items()}

    def show(name: str, best: tuple[Any, ...], secs: float) -> None:
        crit, cfg, t, tab = best
        cells = "  ".join(f"{s} {100 * tab[s]['accuracy']:.1f}/{tab[s]['kappa']:.3f}" for s in sorted(tab))
        print(f"{name:44s} worst kappa {crit[0]:.3f}  mean acc {100 * crit[1]:.1f}  [{cfg}, t {t:.2f}]  | {cells}  ({secs:.0f} s)",
              flush=True)

    splits = list(loso_indices(rows, "dev"))

    def run(name: str, make: Maker, l2s: tuple[float, ...], frac: float = 1.0) -> None:
        t0 = time.time()
        prompts = np.array([r.prompt for r in rows])
        built = []
        for s, tr, te in splits:
            if frac < 1:  # keep a share of the training fold's questions (the learning curve)
                qs = sorted(set(prompts[tr].tolist()))
                keep = set(np.random.default_rng(1).choice(qs, int(len(qs) * frac), replace=False).tolist())
                tr = np.array([i for i in tr if prompts[i] in keep])
            built.append((s, tr, te, make(tr, te)))
        preds = {}
        for l2 in l2s:
            for bal in (True, False):
                got: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
                for s, tr, te, (u, v, st) in built:
                    h = fit_logistic(u, y[tr], l2, bal, standardize=st)
                    got.setdefault(s, []).append((h.proba(v), y[te]))
                preds[f"l2 {l2:g} {'bal' if bal else 'unw'}"] = pooled(got)
        show(name, best_of(preds), time.time() - t0)

    def run_fused(name: str, fit_pred: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        t0 = time.time()
        got: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for s, tr, te in splits:
            got.setdefault(s, []).append((fit_pred(tr, te), y[te]))
        show(name, best_of({"fused": pooled(got)}), time.time() - t0)

    def lr(f: np.ndarray, l2: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return lambda tr, te: fit_logistic(f[tr], y[tr], l2, True).proba(f[te])

    AQ = [("response", "w12"), ("prompt", "w1")]

    def tf_lr(l2: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def f(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
            v = Tfidf(rows, AQ).fit(tr)
            return fit_logistic(v.transform(tr), y[tr], l2, True, standardize=False).proba(v.transform(te))
        return f

    E, Q, A = enc(25, "mean"), qenc(25), enc(25, "resp")
    QA = np.concatenate([Q, A], 1)
    ENC = (1e-2, 1e-1, 1.0, 10.0)
    TXT = (1e-4, 1e-3, 1e-2, 1e-1)
    CMB = (1e-3, 1e-2, 1e-1)
    print(f"{len(rows)} rows; bar sources {', '.join(bar)}; dev questions only\n")
    P = np.array([r.prompt for r in rows])
    spread = max(float(np.abs(Q[P == p] - Q[P == p][0]).max()) for p in dict.fromkeys(P.tolist()))
    print(f"question-part encoder mean: largest difference across answers to one question {spread:.1e}\n")

    run("encoder L25 mean (the recorded head's family)", dense(E), ENC)
    run("refusal verdict one-hot alone", dense(REF), (1e-2, 1.0))
    run("tf-idf answer w1-2", tfidf([("response", "w12")]), TXT)
    run("tf-idf answer w1-2 + question w1", tfidf(AQ), TXT)
    run("tf-idf answer w1-2 + question w1-2", tfidf([("response", "w12"), ("prompt", "w12")]), TXT)
    run("tf-idf answer w1-2 + question w1, min_df 1", tfidf(AQ, 1), TXT)
    run("tf-idf answer char 3-5", tfidf([("response", "c")]), TXT)
    run("tf-idf answer char 3-5 + question w1", tfidf([("response", "c"), ("prompt", "w1")]), TXT)
    run("tf-idf question w1 alone", tfidf([("prompt", "w1")]), TXT)
    run("encoder question-part L25 alone", dense(Q), (1e-1, 1.0, 10.0))
    run("encoder question-part + answer-mean L25", dense(QA), (1e-1, 1.0, 10.0))
    run("encoder L25 mean + answer-mean", dense(np.concatenate([E, A], 1)), (1e-1, 1.0, 10.0))
    run("encoder L25 mean + category (probe)", concat(dense(E), dense(CAT)), CMB + (1.0,))
    run("encoder L25 mean + tf-idf", concat(dense(E), tfidf(AQ)), CMB + (1.0,))
    run("COMBO: encoder L25 mean + tf-idf + refusal", concat(dense(E), tfidf(AQ), dense(REF)), CMB + (3e-3, 3e-2))
    run("encoder L25 answer-mean + tf-idf question", concat(dense(A), tfidf([("prompt", "w1")])), CMB + (1.0,))
    run("encoder question-part + answer-mean + refusal", concat(dense(Q), dense(A), dense(REF)), CMB + (1.0,))
    run("  ... + tf-idf", concat(dense(Q), dense(A), tfidf(AQ), dense(REF)), CMB + (1.0,))
    run("encoder L15-30 mean + tf-idf + refusal",
        concat(dense(np.concatenate([enc(k, "mean") for k in (15, 20, 25, 30)], 1)), tfidf(AQ), dense(REF)), CMB + (1.0,))
    run("encoder L25 mean + answer-mean + tf-idf + refusal", concat(dense(E), dense(A), tfidf(AQ), dense(REF)), CMB)
    run("combo + hand features (length, list, quote, ...)", concat(dense(E), tfidf(AQ), dense(REF), dense(HAND)), CMB)
    run("combo + answer char 3-5", concat(dense(E), tfidf([("response", "w12"), ("response", "c"), ("prompt", "w1")]),
                                          dense(REF)), CMB)
    run("combo with question w1-2", concat(dense(E), tfidf([("response", "w12"), ("prompt", "w12")]), dense(REF)), CMB)
    for k in (32, 128):
        run(f"combo, encoder block PCA {k}", concat(pca(E, k), tfidf(AQ), dense(REF)), CMB)
    for sc in ((1, 0.5, 1), (1, 2, 1), (2, 1, 1), (0.5, 1, 1), (1, 1, 3)):
        run(f"combo, block weights {sc}", concat(dense(E), tfidf(AQ), dense(REF), scales=sc), CMB)
    run_fused("average P: encoder q+a (l2 10), tf-idf (l2 1e-3)", lambda tr, te: (lr(QA, 10)(tr, te) + tf_lr(1e-3)(tr, te)) / 2)
    run_fused("average P: encoder mean (l2 1), tf-idf", lambda tr, te: (lr(E, 1)(tr, te) + tf_lr(1e-3)(tr, te)) / 2)
    run_fused("average P: 4 layers' q+a heads (l2 10)",
              lambda tr, te: np.mean([lr(np.concatenate([qenc(k), enc(k, "resp")], 1), 10)(tr, te) for k in (15, 20, 25, 30)], 0))

    def factor(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        """sqrt(P(a question with any harmful training answer) x P(harmful | question, answer))."""
        by_q: dict[str, list[int]] = {}
        for i in tr:
            by_q.setdefault(rows[i].prompt, []).append(int(i))
        first = [v[0] for v in by_q.values()]
        anyh = np.array([y[v].max() for v in by_q.values()])
        pq = fit_logistic(Q[first], anyh, 10, True).proba(Q[te])
        return np.sqrt(pq * fit_logistic(QA[tr], y[tr], 10, True).proba(QA[te]))
    run_fused("factorised: P(question) x P(answer)", factor)

    print("\nlearning curve (half of each training fold's questions):")
    run("encoder L25 mean, half the training questions", dense(E), (1.0,), frac=0.5)
    run("COMBO, half the training questions", concat(dense(E), tfidf(AQ), dense(REF)), (1e-2,), frac=0.5)


if __name__ == "__main__":
    main()
