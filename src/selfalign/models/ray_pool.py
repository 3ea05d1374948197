"""The ``ray`` backend: one model spec served by N Ray actors, for data-parallel generation and
scoring (extra ``selfalign[ray]``).

Spec: ``ray:<N>:<any other spec>`` (``ray:2:smollm2-135m``, ``ray:4:hf:org/model+bf16``,
``ray:8:vllm:org/model``). Each actor loads the inner spec with the registry and answers its share
of every call; the parent process merges the answers in order, so the store that wraps this model
(:class:`selfalign.store.cache.CachedModel`) stays the one writer and every result lands in it.

Why the output does not depend on N: every sample carries its own seed
(:func:`selfalign.types.sample_seed`), the ``hf`` backend's sampler draws each sample from its own
generator, and a call's samples are cut, in the store's length order, at sample level into
pieces of the inner batch size: with ``CachedModel``'s chunks of N x that size each actor decodes
exactly a batch one worker would have decoded in turn (decoding is not batch-invariant in fp32:
the same batches are what makes the samples the same); texts to score are cut into pieces of the
same size. The model id is the inner model's:
samples and scores made with 1 worker or 8 are the same store rows, and a run can resume with
another N.

Cluster: ``ray.init()`` joins the cluster in ``$RAY_ADDRESS`` (``ray start --head`` on one machine,
``ray start --address=<head>:6379`` on the others, see README "Scale-out"), else starts a local one.
``$SELFALIGN_RAY_THREADS`` (default 1) sets the torch threads of each actor: on a 2-core machine,
2 actors x 1 thread. Actors reserve no CPU in Ray's accounting and are spread over nodes
(``SPREAD``), so the actors of a trained sibling model can start while the first ones live.

Not covered: streaming progress inside an actor's share (the progress bar moves when a share
returns), and a worker that dies mid-call fails the call (a re-run takes what is in the store).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from selfalign.models.base import MissingExtra, ModelError, ProgressFn, context_length
from selfalign.models.registry import load_model, trainable_path
from selfalign.types import GenRequest, GenResult, ScoreRequest, ScoreResult


def parse(spec: str) -> tuple[int, str]:
    """``ray:<N>:<inner>`` -> (N, inner).

    >>> parse("ray:2:hf:org/model+bf16")
    (2, 'hf:org/model+bf16')
    """
    _, _, rest = spec.partition(":")
    n, _, inner = rest.partition(":")
    if not n.isdigit() or int(n) < 1 or not inner:
        raise ModelError(f"ray model spec {spec!r}: expected ray:<workers>:<model spec>, e.g. ray:2:smollm2-135m")
    if inner.startswith("ray:"):
        raise ModelError(f"ray model spec {spec!r}: a pool of pools is not supported")
    return int(n), inner


def split_samples(requests: Sequence[GenRequest], size: int) -> list[list[tuple[int, GenRequest]]]:
    """Consecutive pieces of at most ``size`` samples, in order, cutting a request's sample
    indices where a piece ends; each part is (position of its request, the request restricted to
    those indices: same prompt, parameters and seed, so every sample is the one it would be whole).

    >>> from selfalign.types import GenParams
    >>> reqs = [GenRequest("p", GenParams(), 3, 0), GenRequest("q", GenParams(), 3, 1)]
    >>> [[(i, r.sample_indices()) for i, r in piece] for piece in split_samples(reqs, 4)]
    [[(0, (0, 1, 2)), (1, (0,))], [(1, (1, 2))]]
    """
    pieces: list[list[tuple[int, GenRequest]]] = []
    cur: list[tuple[int, GenRequest]] = []
    room = size
    for i, r in enumerate(requests):
        idx = list(r.sample_indices())
        while idx:
            take, idx = idx[:room], idx[room:]
            cur.append((i, GenRequest(r.prompt, r.params, r.n, r.seed, tuple(take))))
            room -= len(take)
            if room == 0:
                pieces.append(cur)
                cur, room = [], size
    if cur:
        pieces.append(cur)
    return pieces


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra("ray", "ray", "the ray backend (ray:<N>:<spec>)") from None
    return ray


class RayPool:
    """N actors holding one model spec; the backend protocols of the inner model (generate, and
    score where it can)."""

    def __init__(self, workers: int, inner: str, **options: Any):
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", configure_logging=True)
        trainable_path(inner)  # the embedded model converted once here, not by N actors racing
        threads = int(os.environ.get("SELFALIGN_RAY_THREADS", "1") or 1)
        # a GPU each where the cluster has enough (a share of them where it has fewer): without a
        # request every actor would see every GPU and load onto the first (untested: no GPU here)
        gpus = float(ray.cluster_resources().get("GPU", 0))
        need = {"num_gpus": min(1.0, gpus / workers)} if gpus else {}
        actor = ray.remote(num_cpus=0, scheduling_strategy="SPREAD", **need)(_Worker)
        self.workers = [actor.remote(inner, threads, options) for _ in range(workers)]
        infos = ray.get([w.info.remote() for w in self.workers])
        ids = {i["model_id"] for i in infos}
        if len(ids) != 1:  # e.g. a local path that differs between machines
            raise ModelError(f"the {workers} workers of {inner!r} loaded different models: {sorted(ids)}")
        info = infos[0]
        self.ray = ray
        self.inner = inner
        self.model_id: str = info["model_id"]
        self.sampler: str | None = info["sampler"]
        self.can_score: bool = info["can_score"]
        self.can_train: bool = info["can_train"]
        self.train_path: str | None = info["train_path"]
        self.context_length: int | None = info["context_length"]
        # one CachedModel chunk = one inner batch per worker
        self.inner_batch = int(info["batch_size"] or 64)
        self.batch_size = self.inner_batch * len(self.workers)

    def wrap_spec(self, spec: str) -> str:
        """The spec of a sibling model (e.g. one a stage just trained) served the same way."""
        return f"ray:{len(self.workers)}:{spec}"

    def _dispatch(self, method: str, pieces: list[list[Any]], done: Any) -> None:
        """Piece i to worker i mod N (an actor answers its calls in order), ``done(i, answers)`` as
        each piece returns. Each piece is exactly a batch one worker's CachedModel chunk would be."""
        pending = {getattr(self.workers[i % len(self.workers)], method).remote(p): i for i, p in enumerate(pieces)}
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            done(i, self.ray.get(ready[0]))

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None) -> list[GenResult]:
        reqs = list(requests)
        pieces = split_samples(reqs, self.inner_batch)
        by_req: list[list[Any]] = [[] for _ in reqs]

        def done(i: int, got: list[GenResult]) -> None:
            for (k, _), res in zip(pieces[i], got):
                by_req[k].extend(res.completions)
            if progress:
                progress(sum(len(r.completions) for r in got), sum(c.n_tokens for r in got for c in r.completions))

        self._dispatch("generate", [[r for _, r in p] for p in pieces], done)
        return [GenResult(r, tuple(sorted(cs, key=lambda c: c.index))) for r, cs in zip(reqs, by_req)]

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        reqs = list(requests)
        pieces = [reqs[i:i + self.inner_batch] for i in range(0, len(reqs), self.inner_batch)]
        got: dict[int, list[ScoreResult]] = {}
        self._dispatch("score", pieces, got.__setitem__)
        return [r for i in range(len(pieces)) for r in got[i]]


class _Worker:
    """One actor: the inner model, loaded once, with its own torch thread count."""

    def __init__(self, spec: str, threads: int, options: dict[str, Any]):
        import torch

        torch.set_num_threads(max(1, threads))
        self.model = load_model(spec, **options)

    def info(self) -> dict[str, Any]:
        m = self.model
        return {"model_id": m.model_id, "sampler": getattr(m, "sampler", None),
                "can_score": bool(getattr(m, "can_score", False)), "can_train": bool(getattr(m, "can_train", False)),
                "train_path": getattr(m, "train_path", None), "context_length": context_length(m),
                "batch_size": getattr(m, "batch_size", None)}

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        return self.model.generate(requests)

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        return self.model.score(requests)
