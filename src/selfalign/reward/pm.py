"""The preference model's earlier home: the PM (config, encoder, trainer, scorer, cached scorer)
now lives with the other trainers in :mod:`selfalign.train.reward`. These names, and
``python -m selfalign.reward.pm``, keep working."""

from __future__ import annotations

from selfalign.train.reward import (COLUMNS, CachedPM, PMConfig, PMEncoder, PMTrainResult, PreferenceModel,
                                    fingerprint, load_seq_cls, main, train_pm)

__all__ = ["COLUMNS", "CachedPM", "PMConfig", "PMEncoder", "PMTrainResult", "PreferenceModel", "fingerprint",
           "load_seq_cls", "main", "train_pm"]

if __name__ == "__main__":
    main()
