"""Scaled dot-product attention, deepcalc's fused kernels vs torch's SDPA in the same run, float32,
same threads, taking turns in every round (bench/python/_timing.py). Prints medians of rounds
and torch/deepcalc ratios (median of per-round ratios; best rounds' ratio in brackets); each
turn times three calls in a row, so the thread pools' wake-up after the pause is not measured:

* forward + backward at (B, H, L, D) = (4, 8, 512, 64), non-causal and causal (issue 12 targets:
  at least 1.7x and 2.8x faster than torch);
* forward alone (no grad) and its GFLOP/s, 4 B H L^2 D FLOPs (halved when causal), as a fraction
  of --peak (default 232 GFLOP/s, the nominal FMA peak of two Zen 4 cores; bench/cpp's
  attention_bench measures the machine's own; target 70%);
* peak memory of one forward at L = 16384, D = 64, one head, beyond q, k, v and the output,
  each library in a subprocess of its own: the growth of the resident set's high-water mark
  over the forward (target < 64 MiB; an L x L float32 table is 1 GiB);
* the tangent (dc.jvp along q, k, v) at (4, 8, 512, 64): its time over the forward's (target
  at most 2.5x) and against torch.func.jvp under the math backend, torch's only way to get it
  (target at least 4x faster).

    python bench/python/compare_attention.py [--threads 2] [--rounds 10] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np
from _timing import alternate, ratio

import deepcalc as dc

try:
    import torch
except ImportError:
    torch = None

SDPA = dc.nn.functional.scaled_dot_product_attention
PAUSE = 0.3  # a library's worker threads spin after its call: let them settle before the other's


def _arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]


def fwd_bwd(shape, causal):
    q, k, v, g = _arrays(shape)
    xs = [dc.tensor(a, requires_grad=True) for a in (q, k, v)]
    gt = dc.tensor(g)

    def ours():
        for x in xs:
            x.grad = None
        SDPA(*xs, causal=causal).backward(gt)
    fns = {"dc": ours}
    if torch is not None:
        ts = [torch.from_numpy(a).requires_grad_() for a in (q, k, v)]
        gtt = torch.from_numpy(g)

        def theirs():
            for t in ts:
                t.grad = None
            torch.nn.functional.scaled_dot_product_attention(*ts, is_causal=causal).backward(gtt)
        fns["torch"] = theirs
    return fns


def forward_only(shape, causal):
    q, k, v, _ = _arrays(shape)
    xs = [dc.tensor(a) for a in (q, k, v)]
    fns = {"dc": lambda: SDPA(*xs, causal=causal)}
    if torch is not None:
        ts = [torch.from_numpy(a) for a in (q, k, v)]

        def theirs():
            with torch.no_grad():
                torch.nn.functional.scaled_dot_product_attention(*ts, is_causal=causal)
        fns["torch"] = theirs
    return fns


def tangent(shape):
    q, k, v, _ = _arrays(shape)
    tq, tk, tv, _ = _arrays(shape, seed=1)
    xs = tuple(dc.tensor(a) for a in (q, k, v))
    ts = tuple(dc.tensor(a) for a in (tq, tk, tv))
    fns = {"dc forward": lambda: SDPA(*xs),
           "dc jvp": lambda: dc.jvp(SDPA, xs, ts)}
    if torch is not None:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        tx = tuple(torch.from_numpy(a) for a in (q, k, v))
        tt = tuple(torch.from_numpy(a) for a in (tq, tk, tv))

        def theirs():
            with sdpa_kernel(SDPBackend.MATH):
                torch.func.jvp(torch.nn.functional.scaled_dot_product_attention, tx, tt)
        fns["torch jvp (math)"] = theirs
    return fns


_MEMORY_SCRIPT = """
import json, sys
import numpy as np
lib, L, D, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def status(key):  # kB
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, 1, L, D)).astype(np.float32) for _ in range(3))
small = [a[:, :, :64].copy() for a in (q, k, v)]
if lib == "dc":
    import deepcalc as dc
    dc.set_num_threads(threads)
    f = lambda a, b, c: dc.nn.functional.scaled_dot_product_attention(*map(dc.tensor, (a, b, c)))
else:
    import torch
    torch.set_num_threads(threads)
    def f(a, b, c):
        with torch.no_grad():
            return torch.nn.functional.scaled_dot_product_attention(
                *map(torch.from_numpy, (a, b, c)))
f(*small)                                   # libraries and thread pools loaded
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")                           # the high-water mark VmHWM restarts at VmRSS
before = status("VmRSS")
o = f(q, k, v)
after = status("VmHWM")
print(json.dumps({"beyond_MiB": (after - before) / 1024 - q.nbytes / 2**20}))
"""


def memory(lib, L, D, threads):
    """Growth of the resident set's high-water mark over one forward (Linux: reset through
    /proc/self/clear_refs just before), less the output's size: what the forward needs beyond
    q, k, v (allocated before) and its output, in MiB."""
    # a fixed mmap threshold: every large block is mapped fresh and unmapped when freed, so
    # pages freed before the call (the inputs' float64 drafts) are not silently reused
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, lib, str(L), str(D),
                           str(threads)], capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        return None, proc.stderr.strip().splitlines()[-1:]
    return json.loads(proc.stdout)["beyond_MiB"], None


def show(title, times, base="dc", flops=None, peak=None):
    print(f"\n{title}")
    t_base = statistics.median(times[base])
    for name, ts in times.items():
        t = statistics.median(ts)
        line = f"  {name:<20}{t * 1e3:9.2f} ms"
        if name == base and flops:
            g = flops / t / 1e9
            line += f"  {g:6.0f} GFLOP/s = {100 * g / peak:3.0f}% of {peak:.0f}"
        if name != base and not name.startswith("dc"):
            med, best = ratio(ts, times[base])
            line += f"   {name}/{base} = {med:.2f}x [{best:.2f}x]"
        print(line)
    return t_base


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--peak", type=float, default=232.0, help="FMA peak, GFLOP/s")
    ap.add_argument("--quick", action="store_true", help="(2, 4, 256, 64), L = 4096, 3 rounds")
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    shape = (2, 4, 256, 64) if args.quick else (4, 8, 512, 64)
    rounds = 3 if args.quick else args.rounds
    long_l = 4096 if args.quick else 16384
    b, h, L, D = shape
    print(f"attention, float32, {args.threads} threads, (B, H, L, D) = {shape}, torch "
          f"{torch.__version__ if torch is not None else 'not installed'}, kernels "
          f"{dc._core.cpu_capability()}")
    for causal in (False, True):
        show(f"forward + backward, {'causal' if causal else 'non-causal'}",
             alternate(fwd_bwd(shape, causal), rounds, inner=3, pause=PAUSE))
    for causal in (False, True):
        fl = 4 * b * h * L * L * D * (0.5 if causal else 1.0)
        show(f"forward, {'causal' if causal else 'non-causal'}",
             alternate(forward_only(shape, causal), rounds, inner=3, pause=PAUSE), flops=fl,
             peak=args.peak)
    times = alternate(tangent(shape), rounds, inner=3, pause=PAUSE)
    t_jvp = show("tangent along q, k, v (dc.jvp; torch.func.jvp on the math backend)", times,
                 base="dc jvp")
    t_fwd = statistics.median(times["dc forward"])
    print(f"  dc jvp / dc forward = {t_jvp / t_fwd:.2f}x (the forward, then the tangent kernel: "
          f"{(t_jvp - t_fwd) / t_fwd:.2f}x the forward's time)")
    print(f"\npeak memory of one forward beyond q, k, v and the output, (1, 1, {long_l}, 64)")
    for lib in ("dc", "torch") if torch is not None else ("dc",):
        mib, err = memory(lib, long_l, 64, args.threads)
        print(f"  {lib:<20}" + (f"{mib:9.1f} MiB" if err is None else f"failed: {err}"))


if __name__ == "__main__":
    main()
