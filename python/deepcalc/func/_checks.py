"""Argument checks and descriptions shared by the transforms (transforms.py, vmap.py)."""
from __future__ import annotations

from ..autodiff.graph import Tensor


def describe(v) -> str:
    """What a value is, for error messages: 'a Tensor of shape (3,)', 'a tuple of length 3',
    'a dict with keys [...]'."""
    if isinstance(v, Tensor):
        return f"a Tensor of shape {v.shape}"
    if isinstance(v, dict):
        return f"a dict with keys {sorted(map(str, v))}"
    if isinstance(v, (tuple, list)):
        return f"a {type(v).__name__} of length {len(v)}"
    return type(v).__name__


def check_chunk(op: str, chunk_size) -> None:
    """``chunk_size`` is a positive int or None."""
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool)
                                   or chunk_size < 1):
        raise ValueError(f"{op}: chunk_size must be a positive int or None, got {chunk_size!r}")
