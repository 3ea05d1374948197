"""Typed, frozen values that flow between stages.

A prompt is either a tuple of chat :class:`Message` (the chat template of the model is applied)
or a plain ``str`` (sent as raw text, no template: used for scoring a text "alone").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence, Union

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


Prompt = Union[tuple[Message, ...], str]


class MessageError(TypeError, ValueError):
    """A message that is not ``{role: str, content: str}`` (a TypeError for the callers that
    catch those, a ValueError so that the CLI reports it in one line)."""


def as_prompt(value: Any) -> Prompt:
    """Turn a str, a list of {role, content} dicts or of Messages into a :data:`Prompt`.

    >>> as_prompt([{"role": "user", "content": 5}])
    Traceback (most recent call last):
    ...
    selfalign.types.MessageError: message 0: 'content' must be a string, got int 5
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, bytes)) or not hasattr(value, "__iter__"):
        raise MessageError(f"a prompt must be a string or a list of messages, got {type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, dict) and "role" in m and "content" in m:
            for k in ("role", "content"):
                if not isinstance(m[k], str):
                    raise MessageError(f"message {i}: {k!r} must be a string, got {type(m[k]).__name__} {m[k]!r:.60}")
            if not m["role"]:
                raise MessageError(f"message {i}: empty 'role'")
            out.append(Message(m["role"], m["content"]))
        else:
            raise MessageError(f"message {i}: a message must be a dict with 'role' and 'content', got {m!r:.80}")
    return tuple(out)


def user(text: str, system: str | None = None) -> tuple[Message, ...]:
    """A one-turn chat prompt."""
    msgs = [Message("system", system)] if system else []
    return tuple(msgs + [Message("user", text)])


def ends_with_prefill(messages: Sequence[Any]) -> bool:
    """A chat prompt whose last message is the assistant's (after at least one other) asks the
    model to continue that message rather than answer: every backend treats it so.

    >>> ends_with_prefill([{"role": "user", "content": "Review"}, {"role": "assistant", "content": "```"}])
    True
    >>> ends_with_prefill(user("hi")), ends_with_prefill([{"role": "assistant", "content": "x"}])
    (False, False)
    """
    if len(messages) < 2:
        return False
    last = messages[-1]
    return (last["role"] if isinstance(last, dict) else last.role) == "assistant"


def prompt_to_json(prompt: Prompt) -> Any:
    return prompt if isinstance(prompt, str) else [m.to_dict() for m in prompt]


@dataclass(frozen=True)
class GenParams:
    """The semantic generation parameters: everything that changes *what* is generated."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    logprobs: bool = False

    def __post_init__(self) -> None:
        if not self.temperature >= 0:  # NaN too
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class GenRequest:
    """Ask for ``n`` completions of ``prompt``. Sample ``i`` is drawn with seed
    :func:`sample_seed` ``(seed, i)``, so it is reproducible whatever batch it lands in.

    ``indices`` restricts generation to some sample indices (the store uses it to fill gaps).
    """

    prompt: Prompt
    params: GenParams = field(default_factory=GenParams)
    n: int = 1
    seed: int = 0
    indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", as_prompt(self.prompt))
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")

    def sample_indices(self) -> tuple[int, ...]:
        return self.indices if self.indices is not None else tuple(range(self.n))


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: Literal["stop", "length"]
    n_tokens: int
    index: int = 0
    token_logprobs: tuple[float, ...] | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cached")
        if d["token_logprobs"] is not None:
            d["token_logprobs"] = list(d["token_logprobs"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], cached: bool = False) -> "Completion":
        lp = d.get("token_logprobs")
        return cls(
            text=d["text"],
            finish_reason=d["finish_reason"],
            n_tokens=int(d["n_tokens"]),
            index=int(d.get("index", 0)),
            token_logprobs=tuple(lp) if lp is not None else None,
            cached=cached,
        )


@dataclass(frozen=True)
class GenResult:
    request: GenRequest
    completions: tuple[Completion, ...]
    prompt_tokens: int = 0

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probability of ``completion`` given ``prompt`` (chat prompt: after the assistant header)."""

    prompt: Prompt
    completion: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", as_prompt(self.prompt))


@dataclass(frozen=True)
class ScoreResult:
    request: ScoreRequest
    token_logprobs: tuple[float, ...]

    @property
    def total(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def mean(self) -> float:
        return self.total / max(1, len(self.token_logprobs))


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a request with ``seed`` (stable across processes)."""
    h = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
