"""vmap's core: batched values, and the dispatch of a primitive to its batching rule.

Inside ``vmap(f)`` each mapped argument is a Tensor whose ``.data`` is a ``BatchedData``: the
whole batch (``value``, a Tensor of the level below, the mapped axis first) and the vmap
``level`` it belongs to.  Such a Tensor shows ``f`` the shape of one slice (``BatchedData``
reports the logical ``shape``, ``dtype``, ``ndim`` and ``size``) and refuses to give its values
away (``__array__`` raises), so data-dependent Python code fails loudly instead of reading the
wrong numbers.

``apply`` (graph.py) hands a primitive whose inputs (or array parameters) are batched at an
active level to ``dispatch``: the primitive's ``batch`` rule runs on the values of the level
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

import math

import numpy as np

from .graph import STATE, BatchedData, Tensor, wrap

__all__ = ["BatchInfo", "dispatch", "is_batched", "batched", "elementwise_rule",
           "unary_rule", "constant", "bdim_shape", "align", "materialize", "moveaxis"]


class BatchInfo:
    """What a batching rule sees besides its inputs: ``size`` (the mapped axis' length),
    ``batched`` (per input: carries the mapped axis first) and ``params`` (the names of array
    parameters that carry it)."""

    __slots__ = ("size", "batched", "params", "level")

    def __init__(self, size, batched, params, level):
        self.size, self.batched, self.params, self.level = size, batched, params, level

    def ndim(self, x, i: int) -> int:
        """The logical (per-slice) rank of input ``i`` given as ``x``."""
        return x.ndim - 1 if self.batched[i] else x.ndim


def is_batched(x) -> bool:
    """Whether ``x`` is a Tensor batched by an enclosing ``vmap``."""
    return isinstance(x, Tensor) and type(x.data) is BatchedData


def batched(value: Tensor, level: int) -> Tensor:
    """The Tensor of ``level`` whose slices are ``value``'s rows (no history of its own)."""
    return wrap(BatchedData(value, level))


def _level_of(inputs, params):
    level = 0
    for t in inputs:
        d = t.data
        if type(d) is BatchedData and d.level > level:
            level = d.level
    for v in params.values():
        if type(v) is BatchedData and v.level > level:
            level = v.level
    return level


def dispatch(prim, inputs, params):
    """The batched output(s) of ``prim`` (``BatchedData``, or a tuple of them), or None when no
    input is batched at an active level (``apply`` then runs the primitive as usual)."""
    level = _level_of(inputs, params)
    if not level:
        return None
    if level not in STATE.vmap_levels:
        raise RuntimeError(f"{prim.name}: a batched tensor was used outside the vmap that made it "
                           "(a value of vmap's function escaped, e.g. into a global)")
    args, flags, size = [], [], None
    for t in inputs:
        d = t.data
        if type(d) is BatchedData and d.level == level:
            args.append(d.value)
            flags.append(True)
            size = d.value.shape[0]
        else:
            args.append(t)
            flags.append(False)
    names = []
    orig = params
    if params:
        new = {}
        for k, v in params.items():
            if type(v) is BatchedData and v.level == level:
                value = v.value.data
                if type(value) is not np.ndarray and type(value) is not BatchedData:
                    value = np.asarray(value)
                new[k] = value
                names.append(k)
                size = v.value.shape[0]
            else:
                new[k] = v
        params = new
    info = BatchInfo(size, tuple(flags), frozenset(names), level)
    rule = getattr(prim, "batch", None)
    out = NotImplemented if rule is None else rule(info, *args, **params)
    if out is NotImplemented:
        return _decompose(prim, inputs, orig, info)
    return _wrap_out(prim, out, level, size)


class _Decomposed:
    """The result of a primitive computed by its ``decompose`` on batched tensors: already
    recorded by the ops it is made of (``apply`` returns it as it is)."""
    __slots__ = ("out",)

    def __init__(self, out):
        self.out = out


def _decompose(prim, inputs, params, info):
    fn = getattr(prim, "decompose", None)
    if fn is None:
        shapes = ", ".join(f"{'batched ' if b else ''}{t.shape}"
                           for t, b in zip(inputs, info.batched))
        raise NotImplementedError(f"vmap: {prim.name} has no batching rule for inputs "
                                  f"({shapes}); file an issue with this message")
    # the original parameters: batched ones as batched arrays again (the decomposition sees
    # the logical values, as f does)
    return _Decomposed(fn(*inputs, **params))


def _wrap_out(prim, out, level, size):
    def one(o):
        if not isinstance(o, Tensor):
            o = wrap(np.asarray(o))
        if o.ndim == 0 or o.shape[0] != size:
            raise RuntimeError(f"{prim.name}: batching rule returned shape {o.shape}, expected "
                               f"the mapped axis of size {size} first")
        return BatchedData(o, level)
    if type(out) is tuple:
        return tuple(one(o) for o in out)
    return one(out)


# --- helpers for rules ----------------------------------------------------------------------

def moveaxis(x: Tensor, src: int, dst: int) -> Tensor:
    """``x`` with axis ``src`` moved to ``dst`` (a recorded transpose; no copy)."""
    from ..ops.shape import transpose
    nd = x.ndim
    src, dst = src % nd, dst % nd
    if src == dst:
        return x
    axes = [a for a in range(nd) if a != src]
    axes.insert(dst, src)
    return transpose(x, tuple(axes))


def bdim_shape(x, rank: int):
    """The physical shape of a batched ``x`` (mapped axis first) with its logical rank raised to
    ``rank`` by size-1 axes right after the mapped axis, so it broadcasts like the slice."""
    shape = x.shape
    return shape[:1] + (1,) * (rank - (len(shape) - 1)) + shape[1:]


def align(info: BatchInfo, args, rank=None):
    """Batched inputs reshaped to broadcast against the others slice by slice: each gets size-1
    axes after the mapped axis up to the largest logical rank; unbatched inputs are left as
    they are (NumPy's broadcasting aligns them on the right)."""
    from ..ops.shape import reshape
    if rank is None:
        rank = max(info.ndim(x, i) for i, x in enumerate(args))
    out = []
    for x, b in zip(args, info.batched):
        if b and x.ndim - 1 < rank:
            x = reshape(x, bdim_shape(x, rank))
        out.append(x)
    return out


def align_array(a, is_batched: bool, rank: int):
    """``align`` for an array parameter (a constant mask or statistic; it may be batched by an
    enclosing vmap, then it is reshaped by ops)."""
    if is_batched and a.ndim - 1 < rank:
        if type(a) is BatchedData:
            from ..ops.shape import reshape
            return reshape(wrap(a), bdim_shape(a, rank)).data
        return a.reshape(bdim_shape(a, rank))
    return a


def materialize(x: Tensor, flag: bool, size: int) -> Tensor:
    """``x`` with the mapped axis first: unbatched inputs broadcast to the batch (a read-only
    view, nothing copied)."""
    if flag:
        return x
    from ..ops.shape import broadcast_to
    return broadcast_to(x, (size,) + x.shape)


def materialize_array(a, flag: bool, size: int):
    """``materialize`` for an array parameter (batched by an enclosing vmap or not)."""
    if flag:
        return a
    if type(a) is BatchedData:
        from ..ops.shape import broadcast_to
        return broadcast_to(wrap(a), (size,) + a.shape).data
    return np.broadcast_to(a, (size,) + a.shape)


def elementwise_rule(info: BatchInfo, prim, args, params):
    """The rule of an element-wise primitive that broadcasts its operands: align them and run
    it once on the whole batch."""
    from .graph import apply
    return apply(prim, tuple(align(info, args)), params)


def unary_rule(self, info, x, **params):
    """``batch`` for a one-input primitive that acts on each element (or each slice) alike: the
    primitive itself on the whole batch."""
    from .graph import apply
    return apply(self, (x,), params)


def binary_rule(self, info, *args, **params):
    """``batch`` for an element-wise primitive with broadcasting operands."""
    return elementwise_rule(info, self, args, params)


def same_shape_rule(self, info, *args, **params):
    """``batch`` for an element-wise primitive whose operands share one shape (native kernels
    that do not broadcast): every operand with the mapped axis first."""
    from .graph import apply
    return apply(self, tuple(materialize(x, b, info.size) for x, b in zip(args, info.batched)),
                 params)


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


def physical(x: Tensor):
    """(value, level) of a batched ``x``: for code that reads the values of constants that do
    not need the slice view (integer targets, masks), e.g. to validate them all at once."""
    d = x.data
    return d.value, d.level


def values(x: Tensor) -> np.ndarray:
    """The array beneath every vmap level of ``x`` (the mapped axes first, outermost first): for
    checks that hold slice by slice exactly when they hold for all values (e.g. that integer
    targets are in range)."""
    d = x.data
    while type(d) is BatchedData:
        d = d.value.data
    return d


def batch_size(level: int) -> int:
    return STATE.vmap_info[level][0]


def prod(shape) -> int:
    return math.prod(shape)
