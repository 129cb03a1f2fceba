"""Shape primitives: broadcast_to / sum_to (a transpose pair), reshape, transpose, indexing
with its scatter-add adjoint, concatenate and stack.  Each is linear, so its JVP applies the
op itself to the tangent and its VJP is the adjoint op."""
from __future__ import annotations

import math

import numpy as np

from ..autodiff.batching import bdim_shape
from ..autodiff.graph import BatchedData, BatchInfo, Primitive, Tensor, apply, wrap
from ._convert import (as_tensor, check_permutation, check_shape, normalize_axis,
                       normalize_one_axis)


def _zeros(t: Tensor) -> Tensor:
    return wrap(np.zeros(t.shape, t.dtype))


class BroadcastTo(Primitive):
    name = "broadcast_to"

    def batch(self, info, x, shape):
        x = _reshape_to(x, bdim_shape(x, len(shape)))
        return apply(self, (x,), {"shape": (info.size,) + tuple(shape)})

    def forward(self, x, shape):
        return np.broadcast_to(x, shape)

    array_rule = True

    def vjp(self, ctx, g):
        return (sum_to(g, ctx.inputs[0].data.shape),)

    def jvp(self, ctx, t):
        return broadcast_to(t, ctx.params["shape"])


class SumTo(Primitive):
    """Sum a broadcast result back down to ``shape`` (the adjoint of broadcasting)."""
    name = "sum_to"

    def batch(self, info, x, shape):
        extra = x.ndim - 1 - len(shape)  # leading slice axes summed away: size 1, then dropped
        keep = (info.size,) + (1,) * extra + tuple(shape)
        y = x if x.shape == keep else apply(self, (x,), {"shape": keep})
        return _reshape_to(y, (info.size,) + tuple(shape))

    def forward(self, x, shape):
        return sum_to_array(x, shape)

    array_rule = True

    def vjp(self, ctx, g):
        return (broadcast_to(g, ctx.inputs[0].data.shape),)

    def jvp(self, ctx, t):
        return sum_to(t, ctx.params["shape"])


def broadcast_to(x, shape) -> Tensor:
    """``x`` broadcast to ``shape``, as a read-only view (a plain array stays an array: the
    VJP rules that run on arrays use it too)."""
    if type(x) is np.ndarray:
        return np.broadcast_to(x, shape)
    x = as_tensor(x, None, "broadcast_to")
    shape = check_shape("broadcast_to", (shape,) if isinstance(shape, int) else shape)
    if x.shape == shape:
        return x
    try:
        np.broadcast_shapes(x.shape, shape)
        if len(shape) < x.ndim:
            raise ValueError
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}") from None
    return apply(_broadcast_to, (x,), {"shape": shape})


def sum_to_array(x: np.ndarray, shape) -> np.ndarray:
    """``sum_to`` on a plain array."""
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    x = x.sum(axis=axes, keepdims=True) if axes else x
    return x if type(x) is np.ndarray else np.asarray(x)  # a full sum gives a NumPy scalar


def sum_to(x: Tensor, shape) -> Tensor:
    """Sum ``x`` over the axes that broadcasting added to reach it from ``shape`` (a plain
    array stays an array)."""
    if x.shape == shape:
        return x
    if type(x) is np.ndarray:
        return sum_to_array(x, shape)
    return apply(_sum_to, (x,), {"shape": tuple(shape)})


class Reshape(Primitive):
    name = "reshape"

    def batch(self, info, x, shape):
        return apply(self, (x,), {"shape": (info.size,) + tuple(shape)})

    def forward(self, x, shape):
        return x.reshape(shape)

    array_rule = True

    def vjp(self, ctx, g):
        return (g.reshape(ctx.inputs[0].data.shape),)

    def jvp(self, ctx, t):
        return _reshape_to(t, ctx.params["shape"])  # resolved by reshape()


def _resolve_shape(old, shape):
    size = math.prod(old)
    known = math.prod(s for s in shape if s != -1)
    bad = shape.count(-1) > 1 or any(s < -1 for s in shape)
    if not bad and -1 in shape:
        bad = known == 0 or size % known != 0
        shape = tuple(size // known if s == -1 else s for s in shape) if not bad else shape
    if bad or math.prod(shape) != size:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {old} ({size} elements) "
                         f"into {shape}")
    return shape


def reshape(x, *shape) -> Tensor:
    x = as_tensor(x, None, "reshape")
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    new = _resolve_shape(x.shape, check_shape("reshape", shape, infer=True))
    if new == x.shape:
        return x
    return apply(_reshape, (x,), {"shape": new})


class Transpose(Primitive):
    name = "transpose"

    def batch(self, info, x, axes):
        return apply(self, (x,), {"axes": (0,) + tuple(a + 1 for a in axes)})

    def forward(self, x, axes):
        return x.transpose(axes)

    array_rule = True

    def vjp(self, ctx, g):
        return (apply(self, (g,), {"axes": tuple(int(a) for a in np.argsort(ctx.params["axes"]))}),)

    def jvp(self, ctx, t):
        return apply(self, (t,), ctx.params)


def transpose(x, axes=None) -> Tensor:
    """Permute axes (reverse them when ``axes`` is None), like ``np.transpose``."""
    return _permute("transpose", x, axes)


def permute(x, *axes) -> Tensor:
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return _permute("permute", x, axes)


def _permute(op, x, axes) -> Tensor:
    x = as_tensor(x, None, op)
    if axes is None:
        axes = tuple(range(x.ndim))[::-1]
    else:
        axes = check_permutation(op, axes, x.ndim, x.shape)
    if axes == tuple(range(x.ndim)):
        return x
    return apply(_transpose, (x,), {"axes": axes})


def swapaxes(x, a: int, b: int) -> Tensor:
    x = as_tensor(x, None, "swapaxes")
    if x.data.ndim == 2 and {a, b} in ({0, 1}, {-1, -2}):
        return apply(_transpose, (x,), _T2)
    a = normalize_one_axis("swapaxes", a, x.ndim, scalar_ok=True)
    b = normalize_one_axis("swapaxes", b, x.ndim, scalar_ok=True)
    axes = list(range(x.ndim))
    if x.ndim:
        axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


def expand_dims(x, axis: int) -> Tensor:
    x = as_tensor(x, None, "expand_dims")
    axis = normalize_one_axis("expand_dims", axis, x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(x, axis=None) -> Tensor:
    x = as_tensor(x, None, "squeeze")
    axes = normalize_axis("squeeze", axis, x.ndim) if axis is not None else \
        tuple(i for i, n in enumerate(x.shape) if n == 1)
    if any(x.shape[a] != 1 for a in axes):
        raise ValueError(f"squeeze: axis {axis} of a tensor of shape {x.shape} is not of size 1")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


def flatten(x, start_axis: int = 0) -> Tensor:
    """Merge the axes from ``start_axis`` on into one (a 0-d tensor becomes 1-d, as torch)."""
    x = as_tensor(x, None, "flatten")
    start = normalize_one_axis("flatten", start_axis, x.ndim, scalar_ok=True)
    return reshape(x, x.shape[:start] + (-1,))


def _is_basic(index) -> bool:
    """True for indices made only of ints, slices, None and Ellipsis (NumPy basic indexing)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis))) for i in items)


def _normalize_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _batched_index(index):
    """(the index with a full slice in front for the mapped axis, the axis where NumPy then
    puts the mapped axis: 0, or after the broadcast index axes when advanced indices (arrays,
    and ints among them) are not adjacent, NumPy's rule)."""
    items = index if isinstance(index, tuple) else (index,)
    phys = (slice(None),) + items
    adv = [i for i, it in enumerate(items)
           if isinstance(it, (np.ndarray, list)) and not isinstance(it, bool)]
    if not adv:
        return phys, 0
    ints = [i for i, it in enumerate(items) if isinstance(it, (int, np.integer))
            and not isinstance(it, bool)]
    where = sorted(adv + ints)
    if where[-1] - where[0] + 1 == len(where):
        return phys, 0
    arrays = []
    for i in adv:
        a = np.asarray(items[i])
        arrays.extend(np.nonzero(a) if a.dtype == bool else (a,))
    return phys, len(np.broadcast_shapes(*(a.shape for a in arrays)))


class GetItem(Primitive):
    name = "getitem"

    def batch(self, info, x, index):
        phys, moved = _batched_index(index)
        out = apply(self, (x,), {"index": phys})
        return moveaxis(out, moved, 0) if moved else out

    def forward(self, x, index):
        out = x[index]
        return np.asarray(out) if not isinstance(out, np.ndarray) else out

    def vjp(self, ctx, g):
        return (index_add(ctx.inputs[0].shape, ctx.params["index"], g),)

    def jvp(self, ctx, t):
        return getitem(t, ctx.params["index"])


class IndexAdd(Primitive):
    """zeros(shape) with ``g`` added at ``index`` (repeated indices accumulate): the adjoint
    of indexing."""
    name = "index_add"

    def batch(self, info, g, shape, index):
        phys, moved = _batched_index(index)
        if moved:  # g's mapped axis sits after the broadcast index axes, as indexing puts it
            g = moveaxis(g, 0, moved)
        return apply(self, (g,), {"shape": (info.size,) + tuple(shape), "index": phys})

    def forward(self, g, shape, index):
        out = np.zeros(shape, dtype=g.dtype)
        if _is_basic(index):
            out[index] += g
        else:
            np.add.at(out, index, g)
        return out

    def vjp(self, ctx, g):
        return (getitem(g, ctx.params["index"]),)

    def jvp(self, ctx, t):
        return index_add(ctx.params["shape"], ctx.params["index"], t)


def getitem(x, index) -> Tensor:
    x = as_tensor(x, None, "getitem")
    index = _normalize_index(index)
    try:
        return apply(_getitem, (x,), {"index": index})
    except IndexError as e:
        raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape "
                         f"{x.shape}: {e}") from None


def index_add(shape, index, g: Tensor) -> Tensor:
    return apply(_index_add, (g,), {"shape": tuple(shape), "index": index})


def _sequence_rule(self, info, *xs, axis):
    """``batch`` of concatenate and stack: every operand with the mapped axis first, the axis
    one further right."""
    xs = tuple(materialize(x, b, info.size) for x, b in zip(xs, info.batched))
    return apply(self, xs, {"axis": axis + 1})


class Concatenate(Primitive):
    name = "concatenate"

    batch = _sequence_rule

    def forward(self, *xs, axis):
        return np.concatenate(xs, axis=axis)

    def vjp(self, ctx, g):
        axis, out = ctx.params["axis"], []
        start = 0
        for x in ctx.inputs:
            n = x.shape[axis]
            idx = (slice(None),) * axis + (slice(start, start + n),)
            out.append(getitem(g, idx))
            start += n
        return tuple(out)

    def jvp(self, ctx, *ts):
        return concatenate([t if t is not None else _zeros(x) for x, t in zip(ctx.inputs, ts)],
                           axis=ctx.params["axis"])


class Stack(Primitive):
    name = "stack"

    batch = _sequence_rule

    def forward(self, *xs, axis):
        return np.stack(xs, axis=axis)

    def vjp(self, ctx, g):
        axis = ctx.params["axis"]
        return tuple(getitem(g, (slice(None),) * axis + (i,)) for i in range(len(ctx.inputs)))

    def jvp(self, ctx, *ts):
        return stack([t if t is not None else _zeros(x) for x, t in zip(ctx.inputs, ts)],
                     axis=ctx.params["axis"])


def _sequence_operands(op, xs, axis):
    if isinstance(xs, (Tensor, np.ndarray, str)) or not hasattr(xs, "__iter__"):
        raise TypeError(f"{op}: expected a sequence of tensors, got {type(xs).__name__}")
    xs = list(xs)
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__} ({axis!r})")
    if not xs:
        raise ValueError(f"{op}: needs at least one tensor")
    first = next((x for x in xs if isinstance(x, Tensor)), None)
    xs = [as_tensor(x, first, op) for x in xs]
    dtypes = {x.dtype for x in xs}
    if len(dtypes) > 1:
        raise TypeError(f"{op}: tensors have dtypes {sorted(map(str, dtypes))}; deepcalc never "
                        "mixes dtypes silently")
    return xs


def concatenate(xs, axis: int = 0) -> Tensor:
    xs = _sequence_operands("concatenate", xs, axis)
    nd = xs[0].ndim
    if nd == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
    axis = normalize_one_axis("concatenate", axis, nd)
    for x in xs:
        if x.ndim != nd or x.shape[:axis] + x.shape[axis + 1:] != xs[0].shape[:axis] + xs[0].shape[axis + 1:]:
            raise ValueError(f"concatenate: shapes {[x.shape for x in xs]} differ outside "
                             f"axis {axis}")
    return apply(_concatenate, tuple(xs), {"axis": axis})


def stack(xs, axis: int = 0) -> Tensor:
    xs = _sequence_operands("stack", xs, axis)
    if any(x.shape != xs[0].shape for x in xs):
        raise ValueError(f"stack: all tensors must have the same shape, got {[x.shape for x in xs]}")
    axis = normalize_one_axis("stack", axis, xs[0].ndim + 1)
    return apply(_stack, tuple(xs), {"axis": axis})


# --- moving and aligning the mapped axis (vmap's batching rules) ------------------------------

def moveaxis(x: Tensor, src: int, dst: int) -> Tensor:
    """``x`` with axis ``src`` moved to ``dst`` (a recorded transpose; no copy)."""
    nd = x.ndim
    src, dst = src % nd, dst % nd
    if src == dst:
        return x
    axes = [a for a in range(nd) if a != src]
    axes.insert(dst, src)
    return transpose(x, tuple(axes))


def align(info: BatchInfo, args, rank=None):
    """Batched inputs reshaped to broadcast against the others slice by slice: each gets size-1
    axes after the mapped axis up to the largest logical rank; unbatched inputs are left as
    they are (NumPy's broadcasting aligns them on the right)."""
    if rank is None:
        rank = max(info.ndim(x, i) for i, x in enumerate(args))
    out = []
    for x, b in zip(args, info.batched):
        if b and x.ndim - 1 < rank:
            x = _reshape_to(x, bdim_shape(x, rank))
        out.append(x)
    return out


def align_array(a, is_batched: bool, rank: int):
    """``align`` for an array parameter (a constant mask or statistic; it may be batched by an
    enclosing vmap, then it is reshaped by ops)."""
    if is_batched and a.ndim - 1 < rank:
        if type(a) is BatchedData:
            return _reshape_to(wrap(a), bdim_shape(a, rank)).data
        return a.reshape(bdim_shape(a, rank))
    return a


def materialize(x: Tensor, flag: bool, size: int) -> Tensor:
    """``x`` with the mapped axis first: unbatched inputs broadcast to the batch (a read-only
    view, nothing copied)."""
    return x if flag else broadcast_to(x, (size,) + x.shape)


def materialize_array(a, flag: bool, size: int):
    """``materialize`` for an array parameter (batched by an enclosing vmap or not)."""
    if flag:
        return a
    if type(a) is BatchedData:
        return broadcast_to(wrap(a), (size,) + a.shape).data
    return np.broadcast_to(a, (size,) + a.shape)


def _reshape_to(x: Tensor, shape) -> Tensor:
    return x if x.shape == tuple(shape) else apply(_reshape, (x,), {"shape": tuple(shape)})


_T2 = {"axes": (1, 0)}
_broadcast_to = BroadcastTo()
_sum_to = SumTo()
_reshape = Reshape()
_transpose = Transpose()
_getitem = GetItem()
_index_add = IndexAdd()
_concatenate = Concatenate()
_stack = Stack()
