"""``vmap``: map a function over an axis of its inputs, running each primitive once on the
whole batch through its batching rule (autodiff/batching.py), as ``jax.vmap`` and
``torch.func.vmap`` do."""
from __future__ import annotations

import numpy as np

from ..autodiff.batching import batched
from ..autodiff.graph import STATE, BatchedData, Tensor, new_level, wrap
from ..autodiff.pytree import flatten
from ..autodiff.randomness import check_policy
from ..ops.shape import broadcast_to, concatenate, getitem, moveaxis
from ._checks import check_chunk, describe

__all__ = ["vmap"]


def _check_axis_spec(op, spec, where):
    if spec is not None and (not isinstance(spec, int) or isinstance(spec, bool)):
        raise TypeError(f"{op}: {where} must be an int or None (or a structure of them "
                        f"matching the values), got {spec!r}")


def _spread(op, spec, tree, where):
    """One axis (int or None) per leaf of ``tree``: an int or None applies to every leaf;
    a tuple / list / dict must match the tree's structure."""
    if spec is None or isinstance(spec, int):
        _check_axis_spec(op, spec, where)
        leaves, _ = flatten(tree)
        return [spec] * len(leaves)
    if isinstance(spec, (tuple, list)):
        if not isinstance(tree, (tuple, list)) or len(tree) != len(spec):
            raise ValueError(f"{op}: {where} {spec!r} has {len(spec)} entries but the value is "
                             f"{describe(tree)}")
        return [a for s, t in zip(spec, tree) for a in _spread(op, s, t, where)]
    if isinstance(spec, dict):
        if not isinstance(tree, dict) or set(spec) != set(tree):
            raise ValueError(f"{op}: {where} is a dict with keys {sorted(map(str, spec))} but the "
                             f"value is {describe(tree)}")
        return [a for k in tree for a in _spread(op, spec[k], tree[k], where)]
    raise TypeError(f"{op}: {where} must be an int, None, or a tuple/list/dict of them, got "
                    f"{type(spec).__name__}")


def vmap(f, in_axes=0, out_axes=0, randomness: str = "error", chunk_size=None):
    """``f`` mapped over axis ``in_axes`` of its arguments: ``vmap(f)(x)[i] == f(x[i])``.

    * ``in_axes``: an int (the mapped axis of every argument), None (not mapped), or a tuple
      with one entry per positional argument, each an int, None, or a structure matching that
      argument (tuples, lists, dicts of Tensors); negative axes count from the end.
    * ``out_axes``: where the mapped axis goes in each output (int, None for outputs that do
      not depend on it, or a structure matching the outputs).
    * ``randomness``: what random layers inside ``f`` draw (Dropout): 'error' (raise),
      'different' (fresh numbers per slice) or 'same' (one draw shared by every slice).
    * ``chunk_size``: at most this many slices run at once (peak memory grows with it); the
      result is the same.

    Every primitive runs once on the whole batch (or chunk) through its batching rule, never
    once per slice.  vmap nests with itself and composes with grad, vjp, jvp, jacrev, jacfwd,
    hessian, hvp and functional_call in any order.  Inside ``f`` the tensors show the shape of
    one slice; reading their values (``.item()``, ``bool()``, NumPy conversion) raises.
    """
    if not callable(f):
        raise TypeError(f"vmap: f must be callable, got {type(f).__name__}")
    check_policy("vmap", randomness)
    check_chunk("vmap", chunk_size)
    if not (in_axes is None or isinstance(in_axes, (int, tuple, list))):
        raise TypeError(f"vmap: in_axes must be an int, None, or a tuple/list with one entry per "
                        f"argument, got {type(in_axes).__name__}")

    def wrapper(*args):
        if isinstance(in_axes, (tuple, list)):
            if len(in_axes) != len(args):
                raise ValueError(f"vmap: in_axes has {len(in_axes)} entries but f was called "
                                 f"with {len(args)} positional arguments")
            specs = [_spread("vmap", s, a, "in_axes") for s, a in zip(in_axes, args)]
        else:
            specs = [_spread("vmap", in_axes, a, "in_axes") for a in args]
        flat_args, axes, rebuilds, sizes = [], [], [], []
        for i, (a, spec) in enumerate(zip(args, specs)):
            leaves, rebuild = flatten(a)
            rebuilds.append(rebuild)
            fixed = []
            for x, ax in zip(leaves, spec):
                if ax is not None:
                    if isinstance(x, np.ndarray):
                        x = wrap(x)
                    if not isinstance(x, Tensor):
                        raise TypeError(f"vmap: argument {i} is mapped (in_axes {ax}) but holds "
                                        f"a {type(x).__name__}, not a Tensor; give it in_axes "
                                        "None")
                    if not -x.ndim <= ax < x.ndim or x.ndim == 0:
                        raise ValueError(f"vmap: in_axes {ax} is out of range for argument {i} "
                                         f"of shape {x.shape} (a {x.ndim}-d tensor)")
                    ax %= x.ndim
                    sizes.append((i, x.shape[ax]))
                fixed.append(x)
                axes.append(ax)
            flat_args.append(fixed)
        if not sizes:
            raise ValueError("vmap: no argument is mapped (in_axes is None for all of them); "
                             "at least one Tensor argument must have a mapped axis")
        if len({n for _, n in sizes}) > 1:
            desc = ", ".join(f"argument {i} has size {n}" for i, n in sizes)
            raise ValueError(f"vmap: the mapped axes must all have the same size, but {desc}")
        size = sizes[0][1]
        leaves = [x for group in flat_args for x in group]
        if chunk_size is None or chunk_size >= size:
            return _run(f, leaves, axes, flat_args, rebuilds, size, out_axes, randomness)
        pieces = []
        for start in range(0, size, chunk_size):
            stop = min(start + chunk_size, size)
            part = [x if ax is None else getitem(x, (slice(None),) * ax + (slice(start, stop),))
                    for x, ax in zip(leaves, axes)]
            pieces.append(_run(f, part, axes, flat_args, rebuilds, stop - start, out_axes,
                               randomness, chunked=True))
        return _join_chunks(pieces)
    return wrapper


def _run(f, leaves, axes, groups, rebuilds, size, out_axes, randomness, chunked=False):
    level = new_level()
    mapped = [x if ax is None else batched(moveaxis(x, ax, 0), level)
              for x, ax in zip(leaves, axes)]
    call_args, i = [], 0
    for group, rebuild in zip(groups, rebuilds):
        call_args.append(rebuild(mapped[i:i + len(group)]))
        i += len(group)
    STATE.vmap_levels.append(level)
    STATE.vmap_info[level] = (size, randomness)
    try:
        out = f(*call_args)
    finally:
        STATE.vmap_levels.remove(level)
        del STATE.vmap_info[level]
    outs, rebuild_out = flatten(out)
    spec = _spread("vmap", out_axes, out, "out_axes")
    results = []
    for j, (o, ax) in enumerate(zip(outs, spec)):
        if not isinstance(o, Tensor):
            raise TypeError(f"vmap: f must return Tensors (or tuples/lists/dicts of them); "
                            f"output {j} is {type(o).__name__}")
        d = o.data
        mine = type(d) is BatchedData and d.level == level
        if ax is None:
            if mine:
                raise ValueError(f"vmap: out_axes is None for output {j} but it depends on the "
                                 "mapped inputs; give it an axis")
            results.append(o)
            continue
        value = d.value if mine else broadcast_to(o, (size,) + o.shape)
        if not -value.ndim <= ax < value.ndim:
            raise ValueError(f"vmap: out_axes {ax} is out of range for output {j} (shape "
                             f"{o.shape} per slice, {value.ndim}-d with the mapped axis)")
        results.append(moveaxis(value, 0, ax % value.ndim))
    if chunked:
        return results, spec, rebuild_out
    return rebuild_out(results)


def _join_chunks(pieces):
    first, spec, rebuild_out = pieces[0]
    joined = []
    for j, ax in enumerate(spec):
        if ax is None:
            joined.append(first[j])
        else:
            nd = first[j].ndim
            joined.append(concatenate([p[0][j] for p in pieces], axis=ax % nd))
    return rebuild_out(joined)
