"""This CPU's measured ceiling, for every bench's "share of peak" column.

``peak_gflops`` times matrix products at the embedded model's linear-layer shapes (a microbenchmark
on this machine, not a datasheet figure); ``flops_per_position`` counts what one token position
costs the backbone's linear layers (2 x their weights; attention's own products and the output
layer left out: under 5% of a position's work at these lengths, and the output layer runs only
where a bench's way needs it). A figure's share of peak is then
``positions x flops_per_position / seconds / peak``.
"""

from __future__ import annotations

import time

import torch


def peak_gflops(dtype: torch.dtype, rows: int = 512) -> dict[str, float]:
    """GEMM GFLOP/s at the embedded model's linear-layer shapes (K x N) with ``rows`` rows; best of 5."""
    out = {}
    for k, n in ((576, 576), (576, 192), (576, 1536), (1536, 576)):
        a, b = torch.randn(rows, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(10):
                a @ b
            best = min(best, (time.perf_counter() - t) / 10)
        out[f"{k}x{n}"] = 2 * rows * k * n / best / 1e9
    return out


def flops_per_position(model: torch.nn.Module) -> int:
    """2 x the weights of the backbone's linear layers (the output layer and any score head left out)."""
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), model)
    return 2 * sum(m.weight.numel() for m in backbone.modules() if isinstance(m, torch.nn.Linear))


def share(positions: int, seconds: float, fpp: int, peak: float) -> tuple[float, float]:
    """(GFLOP/s achieved, share of ``peak``) for ``positions`` token positions run in ``seconds``."""
    achieved = positions * fpp / seconds / 1e9
    return achieved, achieved / peak
