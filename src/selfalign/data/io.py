"""JSONL (and fields of JSON files) in and out, with errors that name the file, the line and the field."""

from __future__ import annotations

import gzip
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence


class DataError(ValueError):
    pass


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line of a JSONL file, gzip-compressed when its
    name ends in ``.gz``; a broken line or a non-object raises :class:`DataError` naming both."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    f = gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            yield n, row


def read_jsonl(path: str | Path, required: Sequence[str] = (), any_of: Sequence[Sequence[str]] = ()) -> list[dict[str, Any]]:
    """Read every row of a JSONL file (or .jsonl.gz).

    ``required``: columns each row must have; ``any_of``: groups of which each row needs one.
    A broken line or a missing column raises :class:`DataError` naming file and line.
    """
    rows = []
    for n, row in iter_jsonl(path):
        missing = [c for c in required if c not in row]
        if missing:
            raise DataError(f"{path}:{n}: missing column(s) {', '.join(map(repr, missing))}; "
                            f"expected columns: {', '.join(required)}; found: {', '.join(row) or 'none'}")
        for group in any_of:
            if not any(c in row for c in group):
                raise DataError(f"{path}:{n}: needs one of the columns {', '.join(map(repr, group))}; "
                                f"found: {', '.join(row) or 'none'}")
        rows.append(row)
    return rows


def temp_name(path: str | Path) -> Path:
    """A temporary name next to ``path``, unique to this process and call (pid + random): two runs
    writing the same output never share one, and the rename stays on the same filesystem."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a unique temporary file next to ``path``; renamed over ``path`` when the block ends
    without an error, removed when it raises (nothing half-written is left behind)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with tmp.open(mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_path(path: str | Path, what: str = "output") -> Path:
    """Refuse, before any work, an output path that cannot be written: an existing directory, a
    parent that is a file, or a folder that is not writable. A missing parent folder is fine: the
    writers create it (``write_jsonl`` makes its parents)."""
    path = Path(path)
    if not str(path).strip():
        raise DataError(f"{what}: empty path")
    if path.is_dir():
        raise DataError(f"{what} {path}: is a directory; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{what} {path}: folder {parent} is not writable")
    return path


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write atomically: a unique temporary file next to ``path`` (removed if anything fails),
    then a rename. Missing parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_json_field(path: str | Path, key: str, what: str) -> Any:
    """Field ``key`` of the JSON object in ``path``, or a :class:`DataError` naming the file
    (``what`` describes what the file should hold, for the message)."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))[key]
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{p}: expected {what} ({e})") from None
