"""Timing shared by the comparison scripts.

The benchmark machine is shared: bursts of other work only ever add time, and they come and go
within seconds. Timing all of one library and then all of the other lets a burst land on one
side only, so the callables here take turns within every round, and ratios are taken round by
round (median of the per-round ratios) as well as from the best rounds.
"""
from __future__ import annotations

import statistics
import time


def alternate(fns, rounds, inner=1, warmup=3, pause=0.0):
    """Time each callable of ``fns`` (name -> fn) for ``rounds`` rounds of ``inner`` calls, all
    callables taking turns within each round, with an untimed ``pause`` (seconds) before each
    turn (another library's thread pool may still be spinning). Returns name -> seconds per call,
    one per round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return times


def ratio(slow, fast):
    """(median of per-round ratios slow/fast, ratio of the best rounds)."""
    per_round = statistics.median(s / f for s, f in zip(slow, fast))
    return per_round, min(slow) / min(fast)
