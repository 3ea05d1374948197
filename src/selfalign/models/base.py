"""Batch-first model protocols. A backend implements only these; the store wraps it with
caching, logging, resume and progress.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

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
