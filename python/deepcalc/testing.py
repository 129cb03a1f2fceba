"""Public derivative checks: compare reverse-mode and forward-mode Jacobians with central finite
differences in float64, and report exactly which input, output and element disagree."""
from __future__ import annotations

import numpy as np

from .autodiff.graph import Tensor, no_grad, wrap
from .autodiff.pytree import flatten
from .func.transforms import jacfwd, jacrev, vjp


class GradcheckError(AssertionError):
    """A derivative check failed; the message says where and by how much."""


def _outputs(f, inputs):
    out = f(*inputs)
    outs, _ = flatten(out)
    return outs


def _numerical_jacobians(f, inputs, eps):
    """J[k][i] of shape out_k.shape + in_i.shape by central differences."""
    with no_grad():
        outs0 = _outputs(f, inputs)
        jacs = [[np.zeros(o.shape + x.shape) for x in inputs] for o in outs0]
        for i, x in enumerate(inputs):
            # perturb in place through an nd index: reshape(-1) of a non-contiguous (e.g.
            # transposed) input would be a copy, and the perturbation would be lost
            for j, idx in enumerate(np.ndindex(*x.shape)):
                orig = x.data[idx]
                x.data[idx] = orig + eps
                plus = [o.data.astype(np.float64) for o in _outputs(f, inputs)]
                x.data[idx] = orig - eps
                minus = [o.data.astype(np.float64) for o in _outputs(f, inputs)]
                x.data[idx] = orig
                for k, (p, m) in enumerate(zip(plus, minus)):
                    jacs[k][i].reshape(p.shape + (-1,))[..., j] = (p - m) / (2 * eps)
    return outs0, jacs


def _analytic(mode, f, inputs, n_out):
    """Per output k, a tuple of Jacobians per input, by 'reverse' or 'forward' mode."""
    res = []
    for k in range(n_out):
        def fk(*xs, k=k):
            return flatten(f(*xs))[0][k]
        tr = jacrev if mode == "reverse" else jacfwd
        res.append(tr(fk, argnums=tuple(range(len(inputs))))(*inputs))
    return res


def _compare(mode, k, i, num, ana, atol, rtol, out_shape, in_shape):
    diff = np.abs(num - ana)
    bad = diff > atol + rtol * np.abs(num)
    if not bad.any():
        return None
    flat = np.argmax(np.where(bad, diff, -1))
    idx = np.unravel_index(flat, num.shape)
    out_idx, in_idx = idx[:len(out_shape)], idx[len(out_shape):]
    return (f"{mode}-mode Jacobian of output {k} (shape {out_shape}) with respect to input {i} "
            f"(shape {in_shape}) is wrong at output element {tuple(map(int, out_idx))}, input "
            f"element {tuple(map(int, in_idx))}: finite differences give {num[idx]:.8g}, "
            f"{mode} mode gives {ana[idx]:.8g} ({int(bad.sum())} of {bad.size} entries outside "
            f"atol={atol}, rtol={rtol})")


def gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, check_forward=True,
              raise_exception=True) -> bool:
    """Check ``f``'s reverse-mode (and forward-mode) Jacobians against central differences.

    ``inputs`` is a Tensor or a tuple of float64 Tensors; ``f`` returns a Tensor or a tuple of
    Tensors.  Returns True, or raises ``GradcheckError`` naming the input, the output, the
    element, and the expected vs computed values (returns False if ``raise_exception=False``).
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"gradcheck: input {i} is a {type(x).__name__}, expected a Tensor")
        if x.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {x.dtype}; finite differences need "
                            "float64 inputs")
    outs0, num = _numerical_jacobians(f, inputs, eps)
    modes = ["reverse"] + (["forward"] if check_forward else [])
    for mode in modes:
        ana = _analytic(mode, f, inputs, len(outs0))
        for k, o in enumerate(outs0):
            for i, x in enumerate(inputs):
                a = ana[k][i].data.astype(np.float64)
                msg = _compare(mode, k, i, num[k][i], a, atol, rtol, o.shape, x.shape)
                if msg:
                    if raise_exception:
                        raise GradcheckError("gradcheck: " + msg)
                    return False
    return True


def gradgradcheck(f, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3,
                  check_forward=True, raise_exception=True, seed=0) -> bool:
    """Check second derivatives: gradcheck the function ``(inputs, v) -> vjp(f, inputs)(v)``
    for a random cotangent ``v`` (or the given ``grad_outputs``)."""
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    outs = flatten(f(*inputs))[0]
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = tuple(wrap(rng.standard_normal(o.shape)) for o in outs)
    else:
        grad_outputs = (grad_outputs,) if isinstance(grad_outputs, Tensor) else tuple(grad_outputs)
    n = len(inputs)

    def first_order(*args):
        xs, vs = args[:n], args[n:]
        _, vjp_fn = vjp(lambda *a: tuple(flatten(f(*a))[0]), *xs)
        return vjp_fn(tuple(vs))

    return gradcheck(first_order, inputs + tuple(grad_outputs), eps, atol, rtol, check_forward,
                     raise_exception)
