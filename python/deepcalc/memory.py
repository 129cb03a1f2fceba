"""The kernels' output-buffer cache.

Native kernels (GEMM, fused linear, normalization, softmax) write their results into new
arrays. Arrays of 256 KiB or more take their memory from a cache of blocks that earlier
results gave back when NumPy freed them: a training step asks for the same shapes as the step
before, and a reused block costs no page faults, whereas fresh memory from the operating
system is faulted in and zero-filled page by page (for a 16 MiB tensor, about as long as a
BatchNorm forward pass over it).

The arrays are ordinary NumPy arrays (their ``.base`` is a capsule that owns the block). The
cache holds at most ``limit`` idle bytes (default 2 GiB, or ``DEEPCALC_HOST_CACHE_MB`` in the
environment at import; 0 turns it off) and evicts the least recently freed blocks first.
Memory of arrays still alive is never counted against the limit and never reused.

    >>> import deepcalc as dc
    >>> dc.memory.empty_cache()           # hand idle blocks back to the system
    >>> sorted(dc.memory.cache_stats())   # doctest: +NORMALIZE_WHITESPACE
    ['evictions', 'hits', 'idle_blocks', 'idle_bytes', 'limit_bytes', 'live_bytes',
     'min_cached_bytes', 'misses']
"""
from __future__ import annotations

from . import _core

__all__ = ["empty_cache", "cache_stats", "set_cache_limit"]


def empty_cache() -> None:
    """Free every idle block. Arrays still alive keep their memory."""
    _core.host_cache_empty()


def cache_stats() -> dict:
    """Counters of the cache: ``idle_bytes`` / ``idle_blocks`` (kept for reuse), ``live_bytes``
    (held by arrays alive now), ``limit_bytes``, ``hits`` / ``misses`` (requests served from /
    not from the cache), ``evictions`` and ``min_cached_bytes`` (smaller arrays bypass it)."""
    return dict(_core.host_cache_stats())


def set_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` idle bytes (evicting now if over); 0 disables the cache."""
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"set_cache_limit: nbytes must be >= 0, got {nbytes}")
    _core.host_cache_set_limit(nbytes)
