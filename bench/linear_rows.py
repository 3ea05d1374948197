"""Does a row of a matrix product depend on how many rows are multiplied with it? (issue 26)

For each linear layer shape of SmolLM2-135M (hidden 576, MLP 1536, 3 KV heads x 64, vocabulary
49,152), random weights and 200 random input rows: the product of all 200 rows once, then of the
first m rows for m in ``M``, and of rows 7-39 alone; counts the rows whose result is not bit-equal to
the 200-row product's. Then, with the number of rows fixed at B, the same rows put at random
positions among other random rows: counts rows whose result changed (0 means: a kernel called with
one shape gives every row the same bits wherever it sits and whatever sits beside it).

    .venv/bin/python bench/linear_rows.py            # bf16 and fp32, this CPU's kernels
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F

SHAPES = [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)]
M = (1, 2, 3, 5, 8, 16, 17, 24, 32, 33, 64, 100, 199)


def row_counts(dt: torch.dtype, k: int, n: int, g: torch.Generator) -> dict[str, int]:
    w = (torch.randn(n, k, generator=g) * 0.05).to(dt)
    x = torch.randn(200, k, generator=g).to(dt)
    full = F.linear(x, w)
    out = {str(m): int((F.linear(x[:m], w) != full[:m]).any(dim=1).sum()) for m in M}
    out["rows 7-39"] = int((F.linear(x[7:40], w) != full[7:40]).any(dim=1).sum())
    return out


def fixed_shape(dt: torch.dtype, k: int, n: int, b: int, g: torch.Generator, tries: int = 6) -> int:
    w = (torch.randn(n, k, generator=g) * 0.05).to(dt)
    x = torch.randn(b, k, generator=g).to(dt)
    ref = F.linear(x, w)
    changed = 0
    for _ in range(tries):
        perm = torch.randperm(b, generator=g)
        y = torch.randn(b, k, generator=g).to(dt)
        y[perm[:b // 2]] = x[:b // 2]
        changed += int((F.linear(y, w)[perm[:b // 2]] != ref[:b // 2]).any(dim=1).sum())
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precisions", default="bf16,fp32")
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.precisions.split(","):
        dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[name]
        g = torch.Generator().manual_seed(0)
        for k, n in SHAPES:
            counts = row_counts(dt, k, n, g)
            fixed = {b: fixed_shape(dt, k, n, b, g) for b in (16, 32, 64)}
            print(f"{name} {k}x{n}: rows differing from the 200-row product, by rows multiplied: "
                  + " ".join(f"{m}:{c}" for m, c in counts.items())
                  + " | fixed shape, rows moved: " + " ".join(f"B={b}:{c}" for b, c in fixed.items()), flush=True)


if __name__ == "__main__":
    main()
