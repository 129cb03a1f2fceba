"""Per-op framework overhead: microseconds per op on tiny tensors, forward + backward, deepcalc
vs torch eager in the same run.  Tiny shapes make the kernels free, so what is measured is the
Python/dispatch/graph cost that every op of a real model pays.

    python bench/python/overhead.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import deepcalc as dc

try:
    import torch
except ImportError:  # the benchmark still reports deepcalc alone
    torch = None

N_OPS = 20  # ops per timed chain


def chains(lib):
    """name -> function(x, w) running N_OPS ops of one kind, returning a scalar."""
    def add(x, w):
        for _ in range(N_OPS):
            x = x + w
        return x.sum()

    def mul(x, w):
        for _ in range(N_OPS):
            x = x * w
        return x.sum()

    def tanh(x, w):
        for _ in range(N_OPS):
            x = x.tanh()
        return x.sum()

    def matmul(x, w):
        for _ in range(N_OPS):
            x = x @ w
        return x.sum()

    def mixed(x, w):
        for _ in range(N_OPS // 4):
            x = (x @ w + w).tanh() * w
        return x.sum()
    return {"add": add, "mul": mul, "tanh": tanh, "matmul": matmul, "mixed(4 ops)": mixed}


def time_chain(fn, make, repeats, inner):
    times = []
    for _ in range(repeats):
        x, w = make()
        t0 = time.perf_counter()
        for _ in range(inner):
            loss = fn(x, w)
            loss.backward()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inner", type=int, default=200)
    args = ap.parse_args()
    dc.set_num_threads(1)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((4, 4)).astype(np.float32)
    w0 = (rng.standard_normal((4, 4)) * 0.3).astype(np.float32)

    def make_dc():
        return dc.tensor(x0.copy(), requires_grad=True), dc.tensor(w0.copy(), requires_grad=True)

    def make_torch():
        return (torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True))

    if torch is not None:
        torch.set_num_threads(1)
    print(f"per-op overhead, 4x4 float32, forward+backward, {N_OPS} ops per chain, "
          f"median of {args.repeats}")
    print(f"{'op':<14}{'deepcalc us/op':>16}{'torch us/op':>14}{'torch/deepcalc':>16}")
    ratios = []
    for name, fn in chains(dc).items():
        t_dc = time_chain(fn, make_dc, args.repeats, args.inner) / N_OPS * 1e6
        if torch is not None:
            t_th = time_chain(fn, make_torch, args.repeats, args.inner) / N_OPS * 1e6
            ratios.append(t_th / t_dc)
            print(f"{name:<14}{t_dc:>16.2f}{t_th:>14.2f}{t_th / t_dc:>15.2f}x")
        else:
            print(f"{name:<14}{t_dc:>16.2f}{'-':>14}{'-':>16}")
    if ratios:
        gm = float(np.exp(np.mean(np.log(ratios))))
        print(f"geometric mean torch/deepcalc: {gm:.2f}x (>1 means deepcalc has less overhead)")


if __name__ == "__main__":
    main()
