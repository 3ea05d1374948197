"""``selfalign export PATH --to-hub ORG/NAME``: push a trained model or a produced dataset to the
Hugging Face Hub, card included.

What can be pushed is a folder with a card (:mod:`selfalign.train.cards` writes them): a model
folder (``config.json`` + ``README.md``: every saved SFT/DPO/RL policy, PM and judge) goes to a
model repository, a dataset folder (``README.md`` whose metadata lists ``configs``: the honesty
training sets, synthesis output, preference pairs) to a dataset repository. ``PATH`` is such a
folder, or a run folder holding exactly one (else ``--folder`` picks one of those listed).

The upload is built first (:func:`build_upload`: the repository type and one
``CommitOperationAdd`` per file, checkpoints and temporary folders left out) and checked (the
card parses with ``ModelCard``/``DatasetCard``); ``--dry-run`` prints it and stops, so what would
be pushed is seen, and tested, without a network or a token. The push itself is
``HfApi.create_repo(exist_ok=True)`` then one ``create_commit`` of those operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: never uploaded: resumable checkpoints, a save in progress, caches
SKIP_PARTS = ("checkpoints", "model.tmp", "__pycache__", ".cache")


@dataclass
class Upload:
    folder: Path
    repo_id: str
    repo_type: str  # "model" or "dataset"
    files: list[str] = field(default_factory=list)  # paths relative to folder
    size: int = 0

    def operations(self) -> list[Any]:
        from huggingface_hub import CommitOperationAdd

        return [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(self.folder / f)) for f in self.files]


def kind_of(folder: Path) -> str | None:
    """``model``, ``dataset`` or None (not a folder selfalign can push)."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    if (folder / "config.json").is_file():
        return "model"
    head = card.read_text(errors="replace")[:4000]
    return "dataset" if head.startswith("---") and "configs:" in head else None


def pushable(path: str | Path) -> list[Path]:
    """``path`` itself when it can be pushed, else every pushable folder under it (sorted)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(2, "no such folder", str(p))
    if kind_of(p):
        return [p]
    return sorted(d for d in (c.parent for c in p.rglob("README.md"))
                  if kind_of(d) and not any(part in SKIP_PARTS for part in d.relative_to(p).parts))


def build_upload(path: str | Path, repo_id: str, folder: str = "") -> Upload:
    """The upload for ``path`` (see the module doc); a clear error for a bad repository id, a path
    with nothing to push or more than one candidate without ``folder``."""
    from huggingface_hub import DatasetCard, ModelCard
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        raise ValueError(f"--to-hub must be ORG/NAME, got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"--to-hub {repo_id!r}: {e}") from None
    root = Path(path)
    target = root / folder if folder else root
    found = pushable(target)
    if not found:
        raise ValueError(f"{target}: no model or dataset folder with a card (README.md) to push")
    if len(found) > 1:
        listing = ", ".join(str(d.relative_to(target)) for d in found)
        raise ValueError(f"{target} holds {len(found)} pushable folders ({listing}): name one with --folder")
    src = found[0]
    kind = kind_of(src) or "model"
    (ModelCard if kind == "model" else DatasetCard).load(src / "README.md")  # a card the Hub can read
    files = sorted(str(f.relative_to(src)) for f in src.rglob("*")
                   if f.is_file() and not any(part in SKIP_PARTS for part in f.relative_to(src).parts))
    return Upload(src, repo_id, kind, files, sum((src / f).stat().st_size for f in files))


def push(up: Upload, *, private: bool = False, token: str | None = None, message: str = "") -> str:
    """Create the repository when missing and commit every file in one commit; the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(up.repo_id, repo_type=up.repo_type, private=private, exist_ok=True)
    info = api.create_commit(up.repo_id, operations=up.operations(), repo_type=up.repo_type,
                             commit_message=message or f"selfalign export of {up.folder.name}")
    return str(getattr(info, "commit_url", info))
