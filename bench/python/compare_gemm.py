"""float32 GEMM benchmark: deepcalc._core (gemm, linear_forward) vs NumPy (its BLAS, OpenBLAS)
vs torch (MKL / oneDNN) in one run, same thread count for all, median of repeats.
Usage: PYTHONPATH=python python bench/python/compare_gemm.py [--threads 2] [--rounds 3] [--peak-bin PATH]
With several rounds (the whole table repeated), a summary gives each row's median speedup over
the rounds, which is what to quote on a machine shared with other work."""
import argparse
import os
import re
import subprocess
import time

import numpy as np
from threadpoolctl import threadpool_limits

from deepcalc import _core

try:
    import torch
except ImportError:  # torch columns are left out
    torch = None

DEFAULT_PEAK_BIN = os.path.join(os.path.dirname(__file__), "..", "..", "build", "bench", "bench", "cpp", "gemm_bench")


def median_times(fns, budget_s=0.4, min_samples=15):
    """(median, min) seconds per call of each fn, timed one fn at a time (with a pause between) so that
    one library's spinning worker threads do not steal the cores from the next one. Samples are
    short (one call, or ~50 us of calls for tiny shapes) so that, on a shared machine, the
    median is of samples no other process interrupted."""
    times = []
    for f in fns:
        time.sleep(0.25)  # OpenBLAS workers spin up to ~2^28 cycles after a call
        f()
        t0 = time.perf_counter()
        f()
        once = max(time.perf_counter() - t0, 1e-7)
        inner = max(1, int(50e-6 / once))
        ts = []
        deadline = time.perf_counter() + budget_s
        while len(ts) < min_samples or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            ts.append((time.perf_counter() - t0) / inner)
        times.append((float(np.median(ts)), float(np.min(ts))))
    return times


SPEEDUPS = {}  # row name -> list of (speedup vs numpy, speedup vs torch) per round


def row(name, flops, fns):
    """fns: dict label -> callable, deepcalc first. Prints median GFLOP/s and deepcalc's speedup
    (ratio of medians; in brackets the ratio of best times, which shared-machine noise spares)."""
    labels = list(fns)
    med_min = median_times([fns[k] for k in labels])
    ts = [t for t, _ in med_min]
    best = [b for _, b in med_min]
    gf = {k: flops / t * 1e-9 for k, t in zip(labels, ts)}
    cells = "  ".join(f"{k} {gf[k]:6.1f}" for k in labels)
    ratios = "  ".join(f"x{ts[i] / ts[0]:.2f} (best x{best[i] / best[0]:.2f}) vs {labels[i]}"
                       for i in range(1, len(labels)))
    print(f"{name:<26} {cells}   {ratios}", flush=True)
    SPEEDUPS.setdefault(name, []).append([ts[i] / ts[0] for i in range(1, len(labels))])
    return gf, ts


def contenders(dc_fn, np_fn, torch_fn):
    fns = {"deepcalc": dc_fn, "numpy": np_fn}
    if torch is not None:
        fns["torch"] = torch_fn
    return fns


def squares(rng):
    print("\n-- square C = A @ B (GFLOP/s) --")
    for n in (64, 128, 256, 512, 1024, 2048):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        ta, tb = (torch.from_numpy(a), torch.from_numpy(b)) if torch else (None, None)
        row(f"n={n}", 2.0 * n**3, contenders(lambda: _core.gemm(a, b), lambda: a @ b, lambda: torch.mm(ta, tb)))


def mlp(rng, batch=128, sizes=(784, 256, 256, 10)):
    print(f"\n-- MLP {'-'.join(map(str, sizes))} training products at batch {batch} (GFLOP/s) --")
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        x = rng.standard_normal((batch, fan_in), dtype=np.float32)
        w = rng.standard_normal((fan_out, fan_in), dtype=np.float32)  # torch layout (OUT, IN)
        dz = rng.standard_normal((batch, fan_out), dtype=np.float32)
        tx, tw, tdz = (torch.from_numpy(v) for v in (x, w, dz)) if torch else (None,) * 3
        flops = 2.0 * batch * fan_in * fan_out
        tag = f"{fan_in}->{fan_out}"
        row(f"fwd  x@W.T   {tag}", flops,
            contenders(lambda: _core.gemm(x, w, trans_b=True), lambda: x @ w.T, lambda: tx @ tw.T))
        row(f"bwd  dZ@W    {tag}", flops,
            contenders(lambda: _core.gemm(dz, w), lambda: dz @ w, lambda: tdz @ tw))
        row(f"bwd  dZ.T@X  {tag}", flops,
            contenders(lambda: _core.gemm(dz, x, trans_a=True), lambda: dz.T @ x, lambda: tdz.T @ tx))


def fused(rng, n=128, fan_in=784, fan_out=256):
    print(f"\n-- fused relu(x W + b), x ({n}, {fan_in}), W ({fan_in}, {fan_out}) (GFLOP/s of the product) --")
    x = rng.standard_normal((n, fan_in), dtype=np.float32)
    W = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
    b = rng.standard_normal(fan_out, dtype=np.float32)
    w_t = np.ascontiguousarray(W.T)  # deepcalc / torch keep the weight as (OUT, IN)
    tx, tw, tb = (torch.from_numpy(v) for v in (x, w_t, b)) if torch else (None,) * 3
    row("relu linear", 2.0 * n * fan_in * fan_out,
        contenders(lambda: _core.linear_forward(x, w_t, b, "relu"), lambda: np.maximum(x @ W + b, 0),
                   lambda: torch.relu(torch.nn.functional.linear(tx, tw, tb))))


def fma_peak(peak_bin):
    try:
        out = subprocess.run([peak_bin, "--peak"], capture_output=True, text=True, timeout=120).stdout
        return float(re.search(r"peak, 1 core: ([0-9.]+)", out).group(1))
    except (OSError, AttributeError, subprocess.TimeoutExpired):
        return None


def single_thread_peak(rng, peak_bin):
    print("\n-- single thread n=2048 vs the core's float32 FMA peak --")
    n = 2048
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    set_threads(1)
    ta, tb = (torch.from_numpy(a), torch.from_numpy(b)) if torch else (None, None)
    with threadpool_limits(1):
        gf, _ = row("n=2048, 1 thread", 2.0 * n**3,
                    contenders(lambda: _core.gemm(a, b), lambda: a @ b, lambda: torch.mm(ta, tb)))
    peak = fma_peak(peak_bin)
    if peak is None:
        print(f"FMA peak unknown: build bench/cpp (see its CMakeLists.txt) or pass --peak-bin ({peak_bin})")
    else:
        print(f"FMA peak (gemm_bench --peak, 1 core): {peak:.1f} GFLOP/s; deepcalc reaches "
              f"{100 * gf['deepcalc'] / peak:.1f}%, numpy {100 * gf['numpy'] / peak:.1f}%")


def set_threads(n):
    _core.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--peak-bin", default=DEFAULT_PEAK_BIN)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"deepcalc path {_core.cpu_capability()}, threads {args.threads}, numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch else ", torch not installed"))
    for r in range(args.rounds):
        if args.rounds > 1:
            print(f"\n==== round {r + 1} of {args.rounds} ====")
        set_threads(args.threads)
        with threadpool_limits(args.threads):
            squares(rng)
            mlp(rng)
            fused(rng)
        single_thread_peak(rng, args.peak_bin)
    if args.rounds > 1:
        print(f"\n==== deepcalc speedup, median over {args.rounds} rounds ====")
        for name, runs in SPEEDUPS.items():
            med = np.median(np.array(runs), axis=0)
            print(f"{name:<26} " + "  ".join(f"x{v:.2f} vs {lab}" for v, lab in zip(med, ["numpy", "torch"])))


if __name__ == "__main__":
    main()
