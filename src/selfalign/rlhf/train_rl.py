"""``python -m selfalign.rlhf.train_rl``, the earlier name of ``python -m selfalign.train.rloo``
(RLOO against a saved preference model, as a script that ``accelerate launch`` runs
data-parallel); the script now lives with the other trainers in :mod:`selfalign.train.rloo`."""

from __future__ import annotations

from selfalign.train.rloo import bind_pm, main

__all__ = ["bind_pm", "main"]

if __name__ == "__main__":
    main()
