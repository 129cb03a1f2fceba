"""Per-op framework overhead: microseconds per op on tiny tensors, forward + backward, deepcalc
vs torch eager in the same run.  Tiny shapes make the kernels free, so what is measured is the
Python/dispatch/graph cost that every op of a real model pays.

The machine is shared: bursts of other work only ever add time, so each case is timed in
rounds that alternate deepcalc and torch, and the figure is the best round of each (median of
rounds printed too).

    python bench/python/overhead.py [--repeats 15]
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


def time_round(fn, make, inner):
    x, w = make()
    t0 = time.perf_counter()
    for _ in range(inner):
        loss = fn(x, w)
        loss.backward()
    return (time.perf_counter() - t0) / inner


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
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
    print(f"per-op overhead, 4x4 float32, forward+backward, {N_OPS} ops per chain, best of "
          f"{args.repeats} alternating rounds (median of rounds in brackets)")
    print(f"{'op':<14}{'deepcalc us/op':>22}{'torch us/op':>22}{'torch/deepcalc':>16}")
    ratios = []
    for name, fn in chains(dc).items():
        t_dc, t_th = [], []
        for _ in range(args.repeats):
            t_dc.append(time_round(fn, make_dc, args.inner) / N_OPS * 1e6)
            if torch is not None:
                t_th.append(time_round(fn, make_torch, args.inner) / N_OPS * 1e6)
        dc_s = f"{min(t_dc):.2f} [{statistics.median(t_dc):.2f}]"
        if torch is not None:
            ratios.append(min(t_th) / min(t_dc))
            th_s = f"{min(t_th):.2f} [{statistics.median(t_th):.2f}]"
            print(f"{name:<14}{dc_s:>22}{th_s:>22}{ratios[-1]:>15.2f}x")
        else:
            print(f"{name:<14}{dc_s:>22}{'-':>22}{'-':>16}")
    if ratios:
        gm = float(np.exp(np.mean(np.log(ratios))))
        print(f"geometric mean torch/deepcalc: {gm:.2f}x (>1 means deepcalc has less overhead)")


if __name__ == "__main__":
    main()
