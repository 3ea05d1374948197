"""Batch-first model protocols. A backend implements only these; the store wraps it with
caching, logging, resume and progress.

Two layers:

* a **backend** (``hf``, ``openai``, ``vllm``, ``scripted``) implements :class:`Generator` and,
  where it can, :class:`Scorer`, and says what it can do with ``can_score``/``can_train``;
* a **stage** receives a :class:`StageModel`: the store-wrapped backend
  (:class:`selfalign.store.cache.CachedModel`), built by :func:`selfalign.models.registry.load_model`
  for every spec, trained directories included. A backend that cannot score raises
  :class:`CannotScore`, the same error for every backend.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from selfalign.types import GenRequest, GenResult, ScoreRequest, ScoreResult

#: called by a backend after each finished sample: (number of samples, number of new tokens)
ProgressFn = Callable[[int, int], None]


class ModelError(RuntimeError):
    """A model could not be found, loaded or called."""


class MissingExtra(ModelError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, what: str):
        super().__init__(
            f"{what} needs the Python package '{package}', which is not installed. "
            f"Install it with: pip install 'selfalign[{extra}]'"
        )


class CannotScore(ModelError):
    """This model cannot return per-token log-probabilities of a given text."""

    def __init__(self, model_id: str, why: str = ""):
        super().__init__(f"model '{model_id}' cannot score texts (per-token log-probabilities)"
                         f"{': ' + why if why else ''}. Use an hf model (hub id or local path) as the scorer.")


@runtime_checkable
class Generator(Protocol):
    #: stable identity of the model: name plus revision (weights hash, or path + mtime)
    model_id: str

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None) -> list[GenResult]:
        """One result per request, each with one completion per sample index, in index order."""
        ...


@runtime_checkable
class Scorer(Protocol):
    model_id: str

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Per-token log-probabilities of each completion given its prompt."""
        ...


@runtime_checkable
class StageModel(Protocol):
    """What every stage receives: a store-wrapped model (cached, logged, resumable)."""

    model_id: str
    #: per-token log-probabilities of given texts (``score``) are available
    can_score: bool
    #: the weights can be fine-tuned here (``train_path`` is what a trainer loads)
    can_train: bool
    train_path: str | None

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None,
                 description: str | None = None) -> list[GenResult]:
        ...

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Raises :class:`CannotScore` when ``can_score`` is False."""
        ...

    def sibling(self, spec: Any, **options: Any) -> "StageModel":
        """Another model (e.g. a directory a stage has trained) through the same store."""
        ...


def context_length(model: Any) -> int | None:
    """The context length of ``model`` (behind a store wrapper too), where the backend tells it."""
    model = getattr(model, "backend", model)
    n = getattr(model, "context_length", None)
    if isinstance(n, int) and n > 0:
        return n
    config = getattr(getattr(model, "model", None), "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        n = getattr(config, attr, None)
        if isinstance(n, int) and n > 0:
            return n
    return None
