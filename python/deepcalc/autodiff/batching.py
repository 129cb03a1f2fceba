"""vmap's batched values and the helpers rules and ops use with them (the dispatch itself is
``_dispatch_batched`` in graph.py, next to ``apply``).

Inside ``vmap(f)`` each mapped argument is a Tensor whose ``.data`` is a ``BatchedData``: the
whole batch (``value``, a Tensor of the level below, the mapped axis first) and the vmap
``level`` it belongs to.  Such a Tensor shows ``f`` the shape of one slice (``BatchedData``
reports the logical ``shape``, ``dtype``, ``ndim`` and ``size``) and refuses to give its values
away (``__array__`` raises), so data-dependent Python code fails loudly instead of reading the
wrong numbers.

``apply`` (graph.py) hands a primitive whose inputs (or array parameters) are batched at an
active level: the primitive's ``batch`` rule runs on the values of the level
below, once on the whole batch, and its result is wrapped again.  The rule returns its output
with the mapped axis first, or ``NotImplemented`` for a case it does not cover, in which case
the primitive's ``decompose`` (the same function written with other deepcalc ops, run on the
batched tensors themselves) computes it.  Reverse and forward mode record the primitive at the
batched level as usual (``apply``), so transforms nest with vmap in any order: the VJP and JVP
rules then run on batched tensors, and their ops are batched in turn.

The mapped axis is always axis 0 of ``value`` (JAX moves batch axes lazily; deepcalc moves them
once, where ``in_axes`` says, which keeps every rule short).
"""
from __future__ import annotations

import numpy as np

from .graph import BatchedData, BatchInfo, Tensor, wrap

__all__ = ["BatchInfo", "is_batched", "batched", "constant", "values", "bdim_shape"]


def is_batched(x) -> bool:
    """Whether ``x`` is a Tensor batched by an enclosing ``vmap``."""
    return isinstance(x, Tensor) and type(x.data) is BatchedData


def batched(value: Tensor, level: int) -> Tensor:
    """The Tensor of ``level`` whose slices are ``value``'s rows (no history of its own)."""
    return wrap(BatchedData(value, level))


def bdim_shape(x, rank: int):
    """The physical shape of a batched ``x`` (mapped axis first) with its logical rank raised to
    ``rank`` by size-1 axes right after the mapped axis, so it broadcasts like the slice."""
    shape = x.shape
    return shape[:1] + (1,) * (rank - (len(shape) - 1)) + shape[1:]


def constant(fn, *tensors) -> Tensor:
    """``wrap(fn(*arrays))`` for an element-wise NumPy ``fn`` (comparisons, masks, signs) of
    Tensors that may be batched: the result is batched where an input is, slice by slice,
    and records nothing (it is a constant of the graph)."""
    level = 0
    for t in tensors:
        d = t.data if isinstance(t, Tensor) else None
        if type(d) is BatchedData and d.level > level:
            level = d.level
    if not level:
        return wrap(np.asarray(fn(*[t.data if isinstance(t, Tensor) else t for t in tensors])))
    ranks = [(t.ndim if isinstance(t, Tensor) else np.ndim(t)) for t in tensors]
    rank = max(ranks)
    parts = []
    for t in tensors:
        if isinstance(t, Tensor) and type(t.data) is BatchedData and t.data.level == level:
            v = t.data.value
            parts.append(_reshape_const(v, bdim_shape(v, rank)))
        else:
            parts.append(t)
    return batched(constant(fn, *parts), level)


def _reshape_const(v: Tensor, shape) -> Tensor:
    """A reshape of a value whose history does not matter (constants)."""
    d = v.data
    if type(d) is BatchedData:
        return batched(_reshape_const(d.value, d.value.shape[:1] + tuple(shape)), d.level)
    return wrap(d.reshape(shape))


def values(x: Tensor) -> np.ndarray:
    """The array beneath every vmap level of ``x`` (the mapped axes first, outermost first): for
    checks that hold slice by slice exactly when they hold for all values (e.g. that integer
    targets are in range)."""
    d = x.data
    while type(d) is BatchedData:
        d = d.value.data
    return d

