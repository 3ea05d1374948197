"""How selfalign talks while it works: one verbosity for every command (``-q`` quiet, ``-v``
verbose), lines flushed as they are written (a run under ``nohup`` or in CI shows them at once),
and third-party noise kept out of the log.

Third-party output: when stderr is not a terminal, the progress bars of transformers, datasets
and huggingface_hub (``\\r``-redrawn bars that a log file keeps as one unreadable line) are off;
selfalign's own progress prints plain lines instead (``store/cache.py``, ``train/base.py``).
transformers' own log is at ``error`` unless ``-v``. Warnings that selfalign itself causes by how
it calls a library are filtered by exact message where they are raised (see ``KNOWN_WARNINGS``);
nothing else is hidden.
"""

from __future__ import annotations

import sys
import warnings

#: 0 = quiet (errors and results only), 1 = normal, 2 = verbose
_level = 1

#: (category, message regex, why it is ours to silence)
KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (FutureWarning, r".*is_gradient_checkpointing.*deprecated",
     "TRL 1.16 asks the model the old name while building a trainer; selfalign sets the new one "
     "(train/base.py _checkpointing_kwarg), so the notice is for TRL, not for our users"),
)


def set_verbosity(level: int) -> None:
    global _level
    _level = max(0, min(2, level))


def verbosity() -> int:
    return _level


def say(message: str) -> None:
    """A progress or result line on stdout (hidden by ``-q``), flushed at once."""
    if _level >= 1:
        print(message, flush=True)


def detail(message: str) -> None:
    """A line shown only with ``-v``."""
    if _level >= 2:
        print(message, flush=True)


def filter_known_warnings() -> None:
    for category, pattern, _why in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)


def quiet_libraries(tty: bool | None = None) -> None:
    """Turn off third-party progress bars when stderr is not a terminal (``tty`` overrides the
    check) and keep transformers' log at ``error`` unless verbose. Done through the libraries'
    own environment switches, so nothing heavy is imported for it (a library a user already
    configured through them keeps their setting); for one already imported, through its API too."""
    import os

    filter_known_warnings()
    tty = sys.stderr.isatty() if tty is None else tty
    if _level < 2:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not tty:
        for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
            os.environ.setdefault(name, "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        if _level < 2:
            tlog.set_verbosity_error()
        if not tty:
            tlog.disable_progress_bar()
    if "datasets" in sys.modules and not tty:
        from datasets.utils import logging as dlog

        dlog.disable_progress_bar()
