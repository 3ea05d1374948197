"""selfalign backends as an ``inspect_ai`` model provider: ``--model selfalign/<spec>`` runs any
selfalign model spec (``smollm2-135m``, ``hf:<hub id or path>``, ``vllm:...``, ``openai:...``,
``scripted:...``) inside ``inspect eval``, every call through the selfalign store (a re-run is
served from it). Registered through the ``inspect_ai`` entry point in ``pyproject.toml``, so
installing selfalign next to inspect (``pip install 'selfalign[inspect]'``) is enough.

It also holds what selfalign's inspect tasks share (:func:`share_metric`). Importing this module
needs inspect_ai; only those tasks import it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from inspect_ai.model import ChatMessage, GenerateConfig, ModelAPI, ModelOutput, modelapi
from inspect_ai.scorer import metric
from inspect_ai.tool import ToolChoice, ToolInfo

from selfalign.models.registry import load_model
from selfalign.store.cache import CachedModel, Store
from selfalign.types import GenParams, GenRequest, Message

#: a score's ``answer`` when the judge could not classify the response: counted, never a class
UNSCORED = "unscored"

#: one model call at a time: inspect runs samples concurrently, a CPU model gains nothing from it
_LOCK = threading.Lock()


def share_metric(name: str, classes: tuple[str, ...], label: str | None = None) -> Any:
    """An inspect metric: the share of scored answers (``answer`` not :data:`UNSCORED`) whose
    ``answer`` is one of ``classes``, over the samples whose score metadata has this ``label``
    (every sample when None); NaN when there are none."""
    @metric(name=name)
    def share() -> Any:
        def compute(scores: list[Any]) -> float:
            got = [s.score.answer for s in scores if s.score.answer != UNSCORED
                   and (label is None or (s.score.metadata or {}).get("label") == label)]
            return sum(a in classes for a in got) / len(got) if got else float("nan")

        return compute

    return share()


def to_messages(messages: list[ChatMessage]) -> tuple[Message, ...]:
    """inspect's chat messages as selfalign's (text content only; tool messages are refused)."""
    out = []
    for m in messages:
        if m.role not in ("system", "user", "assistant"):
            raise ValueError(f"selfalign models take system/user/assistant messages, not {m.role!r}")
        out.append(Message(m.role, m.text))
    return tuple(out)


@modelapi(name="selfalign")
class SelfalignAPI(ModelAPI):
    """``selfalign/<spec>``; ``-M store=<path>`` picks the store (default: selfalign's own)."""

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), **model_args: Any) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        store = model_args.pop("store", None)
        self.model = CachedModel(load_model(model_name, **model_args), Store(store), progress=False)

    def max_connections(self) -> int:
        return 1

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        if tools:
            raise ValueError("selfalign models do not call tools")
        params = GenParams(temperature=config.temperature or 0.0, top_p=config.top_p or 1.0,
                           max_tokens=config.max_tokens or 64, stop=tuple(config.stop_seqs or ()))
        req = GenRequest(to_messages(input), params, n=1, seed=config.seed or 0)

        def call() -> str:
            with _LOCK:
                return self.model.generate([req])[0].texts[0]

        text = await asyncio.to_thread(call)
        return ModelOutput.from_content(model=self.model_name, content=text)
