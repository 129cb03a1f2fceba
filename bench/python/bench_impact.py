"""All-pairs discounted reachability on a maze: the native kernel (dc.impact.reachability: one
BFS per source, OpenMP) against the NumPy reference (dc.impact.reachability_reference: Jacobi
value iteration over target columns, the definition of correctness) in the same run, float32
output; and the full impact experiment's wall time.

The reference costs (sweeps = longest distance + 1) x S x A per target column, independently for
every column, so it is run on --ref-targets target columns and its time scaled by
S / ref-targets (said in the output); those columns are also checked against the kernel's.
Native and reference take turns in every round with a pause before each (bench/python/_timing.py).

    python bench/python/bench_impact.py [--width 100 --height 100] [--rounds 3] [--ref-targets 50]
                                        [--experiment]   # also time the full experiment
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from _timing import ratio

import deepcalc as dc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=100)
    p.add_argument("--height", type=int, default=100)
    p.add_argument("--loops", type=float, default=0.1)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ref-targets", type=int, default=50)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--experiment", action="store_true", help="also time the full experiment")
    args = p.parse_args()
    if args.threads:
        dc.set_num_threads(args.threads)
    mdp = dc.impact.maze(args.width, args.height, loops=args.loops, seed=0)
    S = mdp.n_states
    targets = np.random.default_rng(0).choice(S, size=args.ref_targets, replace=False)
    print(f"maze {args.width}x{args.height}: {S} states, {mdp.n_actions} actions, loops {args.loops}, "
          f"gamma_r {args.gamma}, {dc.get_num_threads()} threads, output float32 "
          f"({S * S * 4 / 2**20:.0f} MiB)")
    native, ref = [], []
    R = None
    for _ in range(args.rounds):
        R = None                          # free the last result before timing the next
        time.sleep(0.3)
        t0 = time.perf_counter()
        R = dc.impact.reachability(mdp, args.gamma, dtype=np.float32)
        native.append(time.perf_counter() - t0)
        time.sleep(0.3)
        t0 = time.perf_counter()
        Rr = dc.impact.reachability_reference(mdp, args.gamma, targets=targets)
        ref.append((time.perf_counter() - t0) * S / args.ref_targets)
    err = float(np.max(np.abs(R[:, targets] - Rr)))
    print(f"native:    median {statistics.median(native):.3f} s  (range {min(native):.3f} - {max(native):.3f})")
    print(f"reference: median {statistics.median(ref):.1f} s, scaled from {args.ref_targets} of {S} target "
          f"columns (range {min(ref):.1f} - {max(ref):.1f})")
    med, best = ratio(ref, native)
    print(f"speed-up reference / native: median of rounds {med:.0f}x (best rounds {best:.0f}x); "
          f"max |native - reference| on those columns {err:.2e}")
    print(f"targets: native < 5 s: {'yes' if statistics.median(native) < 5 else 'NO'}; "
          f">= 20x: {'yes' if med >= 20 else 'NO'}")
    if args.experiment:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "deepcalc.cli", "experiment", "impact", "--out", out],
                           check=True)
            t = time.perf_counter() - t0
        print(f"full experiment (7 environments, 5 measures, 4 baselines, 5 seeds, value iteration + "
              f"Q-learning 4000 episodes): {t:.1f} s; target < 600 s: {'yes' if t < 600 else 'NO'}")


if __name__ == "__main__":
    main()
