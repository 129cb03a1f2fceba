"""BatchNorm1d and LayerNorm forward + backward as users call them (dc.nn layers, training
mode), deepcalc vs torch.nn in the same run with the same threads, float32, taking turns in
every round (bench/python/_timing.py).  Prints medians of rounds, torch/deepcalc ratios (median
of per-round ratios; best rounds' ratio in brackets), and the achieved memory bandwidth next to
a plain copy's measured in the same run (the bound these kernels race against).

Bytes counted per forward + backward: the kernels must read x and write y (forward), read dy
and x and write dx (backward): 5 x the array size.  Our kernels make a second read pass over x
(forward) and over dy and x (backward), so 8 x is what they actually move.

Each round runs a case `--inner` times in a row (default 10): switching between the two
libraries costs a cold cache and the other OpenMP runtime's threads still spinning, which
matters for the 0.1 ms (256, 1024) case.

    python bench/python/compare_norm.py [--threads 2] [--repeats 30] [--inner 10]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _timing import alternate, ratio

import deepcalc as dc

try:
    import torch
except ImportError:
    torch = None


def median_time(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_gbs(a, repeats):
    dst = np.empty_like(a)
    t = median_time(lambda: np.copyto(dst, a), repeats)
    return 2 * a.nbytes / t / 1e9  # read + write


def fwd_bwd_dc(layer, x, dy):
    xt, g = dc.tensor(x, requires_grad=True), dc.tensor(dy)

    def run():
        xt.grad = None
        layer.zero_grad()
        layer(xt).backward(g)
    return run


def fwd_bwd_torch(layer, x, dy):
    xt, g = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)

    def run():
        xt.grad = None
        layer.zero_grad(set_to_none=True)
        layer(xt).backward(g)
    return run


def case(name, x, dy, ours, theirs, repeats, inner, copy):
    fns = {"dc": fwd_bwd_dc(ours, x, dy)}
    if torch is not None:
        fns["torch"] = fwd_bwd_torch(theirs, x, dy)
    times = alternate(fns, repeats, inner)
    t_dc = statistics.median(times["dc"])
    gbs = 5 * x.nbytes / t_dc / 1e9
    line = f"{name:<26}{t_dc * 1e3:>10.3f}"
    if torch is not None:
        med, best = ratio(times["torch"], times["dc"])
        line += f"{statistics.median(times['torch']) * 1e3:>10.3f}{med:>9.2f}x [{best:.2f}x]"
    else:
        line += f"{'-':>10}{'-':>18}"
    print(line + f"{gbs:>9.1f}{gbs / copy:>8.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--inner", type=int, default=10)
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"float32, {args.threads} threads, median of {args.repeats} rounds x {args.inner}; GB/s counts 5 x size "
          "(read x, write y, read dy and x, write dx)")
    print(f"{'case':<26}{'dc ms':>10}{'torch ms':>10}{'torch/dc':>18}{'GB/s':>9}{'/copy':>8}")
    for n, c in ((4096, 1024), (256, 1024)):
        x = rng.standard_normal((n, c)).astype(np.float32)
        dy = rng.standard_normal((n, c)).astype(np.float32)
        copy = copy_gbs(x, args.repeats)
        theirs = torch.nn.BatchNorm1d(c) if torch is not None else None
        case(f"BatchNorm1d ({n}, {c})", x, dy, dc.nn.BatchNorm1d(c), theirs, args.repeats, args.inner, copy)
        print(f"{'  plain copy, same size':<26}{'':>38}{copy:>9.1f}")
    x = rng.standard_normal((8192, 512)).astype(np.float32)
    dy = rng.standard_normal((8192, 512)).astype(np.float32)
    copy = copy_gbs(x, args.repeats)
    theirs = torch.nn.LayerNorm(512) if torch is not None else None
    case("LayerNorm (8192, 512)", x, dy, dc.nn.LayerNorm(512), theirs, args.repeats, args.inner, copy)
    print(f"{'  plain copy, same size':<26}{'':>38}{copy:>9.1f}")


if __name__ == "__main__":
    main()
