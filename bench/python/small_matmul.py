"""Small products through the public API, where the per-call path (Tensor, ``.T``, ``apply``,
the binding) costs as much as the arithmetic: ``dc.matmul`` inside ``no_grad`` against NumPy's
``@`` on the same arrays, the two taking turns in every round (bench/python/_timing.py).

    python bench/python/small_matmul.py [--rounds 15] [--inner 2000]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
from _timing import alternate, ratio

import deepcalc as dc


def cases(rng):
    """name -> (a, b, transpose a?, transpose b?): the operands as stored, then viewed."""
    f = np.float32
    return {
        "(64,64) @ (64,64)": (rng.standard_normal((64, 64)).astype(f),
                              rng.standard_normal((64, 64)).astype(f), False, False),
        "(128,10) @ (256,10).T": (rng.standard_normal((128, 10)).astype(f),
                                  rng.standard_normal((256, 10)).astype(f), False, True),
        "(128,256).T @ (128,10)": (rng.standard_normal((128, 256)).astype(f),
                                   rng.standard_normal((128, 10)).astype(f), True, False),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"float32, {args.threads} threads, no_grad, median of {args.rounds} rounds x "
          f"{args.inner} calls")
    print(f"{'case':<26}{'deepcalc us':>13}{'numpy us':>11}{'numpy/deepcalc':>24}")
    for name, (a, b, ta, tb) in cases(rng).items():
        da, db = dc.tensor(a), dc.tensor(b)

        def ours():
            with dc.no_grad():
                dc.matmul(da.T if ta else da, db.T if tb else db)

        def numpy():
            (a.T if ta else a) @ (b.T if tb else b)
        times = alternate({"dc": ours, "np": numpy}, args.rounds, args.inner)
        r, best = ratio(times["np"], times["dc"])
        print(f"{name:<26}{statistics.median(times['dc']) * 1e6:>13.2f}"
              f"{statistics.median(times['np']) * 1e6:>11.2f}{r:>15.2f}x [{best:.2f}x]")


if __name__ == "__main__":
    main()
