"""Function transforms: grad, value_and_grad, vjp, jvp, jacrev, jacfwd, hessian, hvp,
jacobian_logdet.  They take a function of Tensors (or nested tuples/lists/dicts of Tensors)
and compose freely: ``jvp(grad(f))``, ``grad(jvp)``, ``jacfwd(jacrev(f))``, ``grad(grad(f))``.

How nesting stays correct:
* reverse mode: each ``grad``/``vjp`` differentiates with respect to fresh aliases of its
  inputs, so only paths through those aliases count; it builds a differentiable gradient
  (``create_graph``) exactly when an enclosing reverse transform is watching the inputs;
* forward mode: each ``jvp`` opens a new level; tangents live in per-level slots and the JVP
  rules of level L only see tangents of enclosing levels (see ``graph.apply``).
"""
from __future__ import annotations

import numpy as np

from ..autodiff import engine
from ..autodiff.graph import (STATE, Tensor, dual, enable_grad, new_level, node_of,
                              transform_scope, watch, wrap)
from ..autodiff.pytree import flatten
from ..autodiff.randomness import check_policy, random_scope
from ..ops.linalg import slogdet
from ..ops.shape import concatenate, getitem, moveaxis, reshape
from ._checks import check_chunk, describe
from .vmap import vmap


def _check_tensor(op, x, what="argument"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: every differentiated {what} must be a deepcalc Tensor, got "
                        f"{type(x).__name__}")
    dtype = x.data.dtype
    if dtype.char not in ("f", "d"):
        if dtype.kind == "f":
            raise TypeError(f"{op}: deepcalc supports float32 and float64; got {dtype}")
        raise TypeError(f"{op}: can only differentiate float tensors, got {dtype}")


def _check_callable(op, f):
    if not callable(f):
        raise TypeError(f"{op}: f must be callable, got {type(f).__name__}")


def _split_aux(op, result):
    """(output, aux) from what ``f`` returned under ``has_aux=True`` (as torch.func)."""
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"{op}: has_aux=True requires f to return a tuple (output, aux), got "
                        f"{describe(result)}")
    return result


def _as_tangent(op, what, t, x: Tensor) -> Tensor:
    """A tangent / cotangent for ``x`` given as a Tensor, a number or an array."""
    if not isinstance(t, Tensor):
        if t is None or isinstance(t, (str, bytes)):
            raise TypeError(f"{op}: {what} for {x.dtype}{x.shape} is {type(t).__name__}, "
                            "expected a Tensor of the same shape and dtype")
        t = wrap(np.asarray(t, dtype=x.dtype))
    if t.shape != x.shape or t.dtype != x.dtype:
        raise ValueError(f"{op}: {what} {t.dtype}{t.shape} does not match "
                         f"{'output' if what == 'cotangent' else 'primal'} {x.dtype}{x.shape}")
    return t


def _check_tuple(op, what, v):
    """``primals`` / ``tangents`` of jvp and hvp: a tuple (or list) with one entry per argument
    of ``f``, as torch.func.jvp requires; a bare Tensor would be iterated over its rows."""
    if not isinstance(v, (tuple, list)):
        raise TypeError(f"{op}: {what} must be a tuple of Tensors, got {type(v).__name__}; "
                        f"write (x,) for one argument")
    return tuple(v)


def _argnums_tuple(argnums, nargs, op):
    """``argnums`` (an int or a non-empty tuple of distinct ints) as non-negative ints."""
    nums = (argnums,) if isinstance(argnums, int) else argnums
    if not isinstance(nums, tuple) or not all(isinstance(a, int) and not isinstance(a, bool)
                                              for a in nums):
        raise TypeError(f"{op}: argnums must be an int or a tuple of ints, got {argnums!r}")
    if not nums:
        raise ValueError(f"{op}: argnums must be non-empty")
    for a in nums:
        if not -nargs <= a < nargs:
            raise ValueError(f"{op}: argnums {argnums} out of range for {nargs} positional arguments")
    nums = tuple(a % nargs for a in nums)
    if len(set(nums)) != len(nums):
        raise ValueError(f"{op}: argnums {argnums} name an argument twice")
    return nums


def _prepare(op, args, argnums):
    """Replace the differentiated arguments by watched aliases; return (args, leaves, rebuilds)."""
    args = list(args)
    watched, structs = [], []
    nums = _argnums_tuple(argnums, len(args), op)
    for a in nums:
        leaves, rebuild = flatten(args[a])
        for x in leaves:
            _check_tensor(op, x)
        ws = [watch(x) for x in leaves]
        args[a] = rebuild(ws)
        watched.append(ws)
        structs.append(rebuild)
    return args, watched, structs, nums


def _outer_watching(watched) -> bool:
    """Whether an enclosing reverse transform needs our gradients to be differentiable."""
    return any(w.grad_fn is not None for ws in watched for w in ws)


def _zeros_like(x: Tensor) -> Tensor:
    return wrap(np.zeros(x.shape, x.dtype))  # the same for every slice of a batched x


def _strip_reverse(t: Tensor, keep: bool) -> Tensor:
    """The value handed back to the caller: detached from our private aliases unless an
    enclosing reverse transform still needs the history.  Tangents are kept."""
    if keep or not isinstance(t, Tensor) or not t.requires_grad:
        return t
    v = wrap(t.data)
    v._fw = t._fw
    return v


def value_and_grad(f, argnums=0, has_aux=False):
    """``x -> (f(x), df/dx)`` for a scalar-valued ``f``; ``argnums`` may be a tuple; arguments
    may be Tensors or nested tuples/lists/dicts of Tensors (gradients have the same structure)."""
    return _value_and_grad(f, argnums, has_aux, "value_and_grad")


def _value_and_grad(f, argnums, has_aux, op):
    _check_callable(op, f)

    def wrapper(*args):
        args2, watched, structs, nums = _prepare(op, args, argnums)
        with enable_grad(), transform_scope:
            result = f(*args2)
        out, aux = _split_aux(op, result) if has_aux else (result, None)
        if not isinstance(out, Tensor) or out.data.size != 1:
            raise ValueError(f"{op}: f must return a single-element Tensor, got "
                             f"{describe(out)}; use jacrev / vjp for non-scalar outputs")
        keep = _outer_watching(watched)
        flat = [w for ws in watched for w in ws]
        if out.requires_grad:
            gs = engine.grad(out, flat, create_graph=keep, retain_graph=keep)
        else:
            gs = [None] * len(flat)
        gs = [g if g is not None else _zeros_like(w) for g, w in zip(gs, flat)]
        grads, i = [], 0
        for ws, rebuild in zip(watched, structs):
            grads.append(rebuild(gs[i:i + len(ws)]))
            i += len(ws)
        g_out = grads[0] if isinstance(argnums, int) else tuple(grads)
        value = _strip_reverse(out, keep)
        return ((value, aux), g_out) if has_aux else (value, g_out)
    return wrapper


def grad(f, argnums=0, has_aux=False):
    """``x -> df/dx`` for a scalar-valued ``f`` (see ``value_and_grad``)."""
    vg = _value_and_grad(f, argnums, has_aux, "grad")

    def wrapper(*args):
        (value_aux, g) = vg(*args)
        return (g, value_aux[1]) if has_aux else g
    return wrapper


def vjp(f, *primals):
    """``(f(*primals), vjp_fn)`` where ``vjp_fn(cotangent)`` returns one gradient per primal.
    ``f`` may return a Tensor or a nested structure of Tensors (cotangents match it)."""
    return _vjp("vjp", f, primals)


def _vjp(op, f, primals):
    _check_callable(op, f)
    args, watched, structs, _ = _prepare(op, primals, tuple(range(len(primals))))
    with enable_grad(), transform_scope:
        out = f(*args)
    outs, _ = flatten(out)
    for o in outs:
        _check_tensor(op, o, "output")
    keep = _outer_watching(watched)
    flat = [w for ws in watched for w in ws]

    def vjp_fn(cotangents):
        cts, _ = flatten(cotangents)
        if len(cts) != len(outs):
            raise ValueError(f"{op}: got {len(cts)} cotangents for {len(outs)} outputs")
        pairs = []
        for o, c in zip(outs, cts):
            c = _as_tangent(op, "cotangent", c, o)
            if o.requires_grad:
                pairs.append((o, c))
        create = keep or any(c.requires_grad for _, c in pairs)
        gs = engine.grad([o for o, _ in pairs], flat, [c for _, c in pairs], retain_graph=True,
                         create_graph=create) if pairs else [None] * len(flat)
        gs = [g if g is not None else _zeros_like(w) for g, w in zip(gs, flat)]
        res, i = [], 0
        for ws, rebuild in zip(watched, structs):
            res.append(rebuild(gs[i:i + len(ws)]))
            i += len(ws)
        return tuple(res)

    _, rebuild_out = flatten(out)
    return rebuild_out([_strip_reverse(o, keep) for o in outs]), vjp_fn


def jvp(f, primals, tangents):
    """Forward accumulation: ``(f(*primals), J(primals) @ tangents)``.

    Opens a new forward-mode level; every primitive's JVP rule pushes the tangents through,
    so the cost is about one extra evaluation of ``f``, whatever the number of outputs.
    ``primals`` and ``tangents`` are tuples, one entry per argument of ``f`` (as torch.func)."""
    return _jvp("jvp", f, primals, tangents)


def _jvp(op, f, primals, tangents):
    _check_callable(op, f)
    primals, tangents = _check_tuple(op, "primals", primals), _check_tuple(op, "tangents", tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"{op}: {len(primals)} primals but {len(tangents)} tangents")
    level = new_level()
    STATE.fw_levels.append(level)
    try:
        duals = []
        for p, t in zip(primals, tangents):
            ps, rebuild = flatten(p)
            ts, _ = flatten(t)
            if len(ps) != len(ts):
                raise ValueError(f"{op}: primals and tangents have different structures")
            duals.append(rebuild([_dual(op, x, tx, level) for x, tx in zip(ps, ts)]))
        with transform_scope:
            out = f(*duals)
        outs, rebuild_out = flatten(out)
        prim_out, tan_out = [], []
        for o in outs:
            _check_tensor(op, o, "output")
            fw = o._fw or {}
            tan_out.append(fw[level] if level in fw else _zeros_like(o))
            prim_out.append(_drop_level(o, level))
        return rebuild_out(prim_out), rebuild_out(tan_out)
    finally:
        STATE.fw_levels.remove(level)


def _dual(op, x, t, level) -> Tensor:
    _check_tensor(op, x, "primal")
    return dual(x, _as_tangent(op, "tangent", t, x), level)


def _drop_level(o: Tensor, level) -> Tensor:
    if not o._fw or level not in o._fw:
        return o
    v = wrap(o.data)
    v.requires_grad = o.requires_grad
    if o.requires_grad:
        v._node = node_of(o)
    rest = {k: t for k, t in o._fw.items() if k != level}
    v._fw = rest or None
    return v


def _basis_rows(n: int, start: int, stop: int, shape, dtype) -> Tensor:
    """Rows ``start..stop`` of the n x n identity, each reshaped to ``shape``: a chunk of the
    standard basis (made one chunk at a time, so memory follows the chunk)."""
    e = np.zeros((stop - start, n), dtype=dtype)
    e[np.arange(stop - start), np.arange(start, stop)] = 1
    return wrap(e.reshape((stop - start,) + tuple(shape)))


def _over_basis(fn, batched_fn, basis: Tensor):
    """``batched_fn(basis)`` (``fn`` mapped over the basis vectors), or for a chunk of one
    vector ``fn`` on it with the mapped axis added to each output: a scalar's gradient needs
    no vmap level of size one."""
    if basis.shape[0] > 1:
        return batched_fn(basis)
    leaves, rebuild = flatten(fn(reshape(basis, basis.shape[1:])))
    return rebuild([reshape(o, (1,) + o.shape) if isinstance(o, Tensor) else o for o in leaves])


def _chunks(n: int, chunk_size):
    step = n if chunk_size is None else chunk_size
    return [(a, min(a + step, n)) for a in range(0, n, max(step, 1))]


def jacrev(f, argnums=0, chunk_size=None, has_aux=False):
    """Jacobian by reverse mode: one forward pass, then the VJPs of the standard basis of the
    output, batched by ``vmap`` (``chunk_size`` basis vectors at a time: peak memory grows with
    the chunk, not with the output's size).  The result has shape ``out.shape + in.shape`` (a
    tuple of them for a tuple ``argnums``)."""
    check_chunk("jacrev", chunk_size)
    _check_callable("jacrev", f)

    def wrapper(*args):
        nums = _argnums_tuple(argnums, len(args), "jacrev")
        for a in nums:
            _check_tensor("jacrev", args[a])

        def g(*xs):
            full = list(args)
            for a, x in zip(nums, xs):
                full[a] = x
            return f(*full)
        result, vjp_fn = _vjp("jacrev", g, [args[a] for a in nums])
        out, aux = _split_aux("jacrev", result) if has_aux else (result, None)
        if has_aux:
            vjp_fn0 = vjp_fn
            vjp_fn = lambda c: vjp_fn0((c, _zeros_aux(aux)))  # noqa: E731
        _check_tensor("jacrev", out, "output")
        n_out = out.size
        parts = [[] for _ in nums]
        row_vjp = lambda c: tuple(vjp_fn(c))  # noqa: E731
        batched_vjp = vmap(row_vjp)
        for start, stop in _chunks(n_out, chunk_size):
            gs = _over_basis(row_vjp, batched_vjp,
                             _basis_rows(n_out, start, stop, out.shape, out.dtype))
            for k, gk in enumerate(gs):
                parts[k].append(gk)
        jacs = []
        for k, a in enumerate(nums):
            x = args[a]
            if n_out == 0:
                jacs.append(wrap(np.zeros(out.shape + x.shape, dtype=x.dtype)))
            else:
                rows = parts[k][0] if len(parts[k]) == 1 else concatenate(parts[k])
                jacs.append(reshape(rows, out.shape + x.shape))
        res = jacs[0] if isinstance(argnums, int) else tuple(jacs)
        return (res, aux) if has_aux else res
    return wrapper


def _zeros_aux(aux):
    leaves, rebuild = flatten(aux)
    return rebuild([_zeros_like(a) if isinstance(a, Tensor) else a for a in leaves])


def jacfwd(f, argnums=0, chunk_size=None, randomness="same"):
    """Jacobian by forward mode: the JVPs of the standard basis of the input, batched by
    ``vmap`` (``chunk_size`` at a time), shape ``out.shape + in.shape``.

    f is evaluated once per chunk; ``randomness`` says what random layers inside it (Dropout,
    noisy BatchNorm) draw: 'same' (default) one set of draws for the whole Jacobian, 'different'
    fresh draws for each column, 'error' raise (autodiff/randomness.py)."""
    check_chunk("jacfwd", chunk_size)
    _check_callable("jacfwd", f)
    check_policy("jacfwd", randomness)

    def wrapper(*args):
        nums = _argnums_tuple(argnums, len(args), "jacfwd")
        jacs = []
        for a in nums:
            x = args[a]
            _check_tensor("jacfwd", x)

            def g(xa):
                full = list(args)
                full[a] = xa
                return f(*full)
            cols, out = [], None
            col_jvp = lambda t: _jvp("jacfwd", g, (x,), (t,))  # noqa: E731
            batched_jvp = vmap(col_jvp, randomness=randomness)
            with random_scope(randomness, "jacfwd") as scope:
                for start, stop in _chunks(x.size, chunk_size):
                    scope.next_evaluation()
                    outs, t = _over_basis(col_jvp, batched_jvp,
                                          _basis_rows(x.size, start, stop, x.shape, x.dtype))
                    _check_tensor("jacfwd", outs, "output")
                    out = getitem(outs, 0) if out is None else out
                    cols.append(t)
                if out is None:
                    scope.next_evaluation()
                    out = g(x)
            _check_tensor("jacfwd", out, "output")
            if not cols:
                jacs.append(wrap(np.zeros(out.shape + x.shape, dtype=x.dtype)))
            else:
                t = cols[0] if len(cols) == 1 else concatenate(cols)   # (n_in,) + out.shape
                t = moveaxis(t, 0, -1) if t.ndim > 1 else t
                jacs.append(reshape(t, out.shape + x.shape))
        return jacs[0] if isinstance(argnums, int) else tuple(jacs)
    return wrapper


def hessian(f, argnums=0, randomness="same"):
    """Hessian of a scalar function as forward-over-reverse: ``jacfwd(jacrev(f))``;
    ``randomness`` as in ``jacfwd`` (default 'same': one Dropout mask for the whole Hessian)."""
    _check_callable("hessian", f)
    check_policy("hessian", randomness)
    h = jacfwd(jacrev(f, argnums), argnums, randomness=randomness)

    def wrapper(*args):
        for a in _argnums_tuple(argnums, len(args), "hessian"):
            _check_tensor("hessian", args[a])
        return h(*args)
    return wrapper


def hvp(f, primals, tangents):
    """Hessian-vector product by forward-over-reverse: ``(f(x), H(x) v)`` without forming H."""
    primals, tangents = _check_tuple("hvp", "primals", primals), \
        _check_tuple("hvp", "tangents", tangents)
    if not primals:
        raise ValueError("hvp: needs at least one primal")
    argnums = tuple(range(len(primals)))
    vg = _value_and_grad(f, argnums, False, "hvp")

    def g(*xs):
        value, grads = vg(*xs)
        return grads, value
    (grads, value), (h, _) = _jvp("hvp", g, primals, tangents)
    return value, (h[0] if len(primals) == 1 else h)


def jacobian_logdet(f, x):
    """``(sign, log|det J|)`` of the square Jacobian of ``f`` at ``x`` (``f(x).size == x.size``):
    how much ``f`` expands volume near ``x``.  ``log|det J|`` is differentiable."""
    _check_callable("jacobian_logdet", f)
    _check_tensor("jacobian_logdet", x)
    J = jacrev(f)(x)
    n = x.size
    if J.size != n * n:
        raise ValueError(f"jacobian_logdet: f maps {x.size} inputs (shape {x.shape}) to "
                         f"{J.size // max(n, 1)} outputs; the Jacobian must be square")
    return slogdet(reshape(J, (n, n)))
