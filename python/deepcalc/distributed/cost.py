"""The alpha-beta cost model of ring allreduce, and a simulation of a data-parallel step.

Ring allreduce of n bytes over p ranks is a reduce-scatter then an all-gather, each p - 1
steps in which every rank sends one n/p-byte chunk to its neighbour:

    T(n, p) = 2 (p - 1) alpha + 2 (p - 1) / p * n * beta

(alpha: latency per message, seconds; beta: seconds per byte; the reduction's arithmetic is
folded into beta).  ``simulate_step`` plays the buckets of one step through that model: the
backward pass produces the gradients at an even rate, bucket k can start when its last
gradient is ready and when bucket k-1 is done (one reduction at a time, as MPI runs them),
and whatever communication outlasts the backward is exposed.
"""
from __future__ import annotations

import numpy as np


def ring_allreduce_seconds(nbytes: float, p: int, alpha: float, beta: float) -> float:
    """T(n, p) = 2 (p - 1) alpha + 2 (p - 1) / p * n beta; 0 for one rank."""
    if p < 1:
        raise ValueError(f"ring_allreduce_seconds: p must be >= 1, got {p}")
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes * beta


def fit_alpha_beta(nbytes, seconds, p: int) -> tuple[float, float]:
    """alpha and beta from measured allreduce times on p ranks, by least squares of
    T = a + b n (so alpha = a / (2 (p - 1)), beta = b / (2 (p - 1) / p))."""
    n, t = np.asarray(nbytes, np.float64), np.asarray(seconds, np.float64)
    if p < 2 or n.shape != t.shape or n.size < 2:
        raise ValueError(f"fit_alpha_beta: needs p >= 2 and at least two (bytes, seconds) "
                         f"pairs of equal length, got p={p}, {n.size} sizes, {t.size} times")
    b, a = np.polyfit(n, t, 1)
    return float(a / (2 * (p - 1))), float(b / (2 * (p - 1) / p))


def bucket_bytes(param_bytes, bucket_bytes_cap: float) -> list[float]:
    """The bucket sizes DistributedDataParallel makes: parameters (given in the order the
    backward reaches them) grouped up to the cap, a larger parameter alone."""
    buckets, current = [], 0.0
    for n in param_bytes:
        if current and current + n > bucket_bytes_cap:
            buckets.append(current)
            current = 0.0
        current += n
    if current:
        buckets.append(current)
    return buckets


def simulate_step(forward_s: float, backward_s: float, buckets, p: int, alpha: float,
                  beta: float, overlap: bool = True) -> dict:
    """One step's time on p ranks: forward, backward with the buckets' reductions overlapping
    it (or all after it, ``overlap=False``), and the communication left exposed."""
    total = float(sum(buckets))
    ready, done = 0.0, 0.0      # bytes of gradient produced so far; when the link is free
    for nb in buckets:
        ready += nb
        start = backward_s * ready / total if overlap else backward_s
        done = max(start, done) + ring_allreduce_seconds(nb, p, alpha, beta)
    exposed = max(0.0, done - backward_s) if p > 1 else 0.0
    step = forward_s + backward_s + exposed
    return {"step_s": step, "exposed_s": exposed, "efficiency": (forward_s + backward_s) / step}
