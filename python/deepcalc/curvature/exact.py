"""The exact trace of the Hessian of a chain of Linear layers (an MLP, or a Sequential of
Linear, activation, Standardize, eval-mode BatchNorm, Dropout in eval mode ...), layer by layer.

For a Linear layer z = m_w a W^T + m_b b (a its input, which does not depend on W or b), and
a loss that is a mean over samples that do not interact,
    d^2 L / dW_ij^2 = m_w^2 sum_n a_nj^2 d^2 L / dz_ni^2,   d^2 L / db_i^2 = m_b^2 sum_n d^2 L / dz_ni^2,
so tr H_(W, b) = sum_n (m_w^2 ||a_n||^2 + m_b^2) sum_i d^2 L / dz_ni^2.  Since z-Hessian blocks
of different samples are zero, one HVP in z with tangent e_i in every row gives the i-th
diagonal entry of every sample's block: out_features HVPs per layer (of the network above
it) give the layer's trace exactly."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor, no_grad, wrap
from ..func.transforms import hvp
from ..nn import MLP, BatchNorm1d, Linear, Sequential
from ..nn.functional import activation_fn


def _chain(module, prefix=""):
    """The leaves of nested Sequential / MLP containers in execution order, with names."""
    if isinstance(module, (Sequential, MLP)):
        out = []
        for name, child in module.named_children():
            out += _chain(child, f"{prefix}{name}.")
        return out
    return [(prefix, module)]


def layerwise_trace(op) -> float:
    """tr of a ``HessianOperator`` over parameters of Linear layers, exactly (see the module
    docstring); ``op.n_matvecs`` is increased by the HVPs spent (one per output unit of every
    Linear with a parameter in the operator, per batch)."""
    from .operators import HessianOperator
    if not isinstance(op, HessianOperator) or op.wrt != "params":
        raise TypeError("trace(method='exact'): needs a HessianOperator over parameters, got "
                        f"{type(op).__name__}")
    chain = _chain(op.model)
    variables = set(op.names)
    covered = set()
    for prefix, m in chain:
        names = {f"{prefix}{k}" for k, _ in m.named_parameters()}
        if names & variables and not isinstance(m, Linear):
            raise ValueError(f"trace(method='exact'): parameters {sorted(names & variables)} "
                             f"belong to a {type(m).__name__}, not a Linear layer")
        covered |= names & variables
    if covered != variables:
        raise ValueError("trace(method='exact'): the model is not a chain of layers "
                         f"(Sequential / MLP); parameters not reached: {sorted(variables - covered)}")
    mode = op.model.training
    if op.batch_norm is not None:
        op.model.train(op.batch_norm == "train")
    try:
        for _, m in chain:
            if isinstance(m, BatchNorm1d) and m.training:
                raise ValueError("trace(method='exact'): BatchNorm1d in training mode couples "
                                 "the samples; use batch_norm='eval' or method='hutch++'")
        total, count = 0.0, 0
        for x, y in op._batches:
            x = x if isinstance(x, Tensor) else wrap(np.asarray(x))
            n = int(x.shape[0])
            total += n * _batch_trace(op, chain, variables, x, y)
            count += n
    finally:
        op.model.train(mode)
    if count == 0:
        raise ValueError("trace(method='exact'): the batches are empty")
    return total / count


def _batch_trace(op, chain, variables, x, y):
    total = 0.0
    h = x
    for p, (prefix, m) in enumerate(chain):
        wname, bname = f"{prefix}weight", f"{prefix}bias"
        if isinstance(m, Linear) and (wname in variables or bname in variables):
            a = np.asarray(h.data, np.float64).reshape(h.shape[0], -1)
            with no_grad():
                z0 = m.fuse_activation(h, None)
            act = activation_fn(m.activation)
            rest = chain[p + 1:]

            def f(z, act=act, rest=rest):
                out = act(z)
                for _, nxt in rest:
                    out = nxt(out)
                return op.loss_fn(out, y)
            c = np.zeros(a.shape[0])
            if wname in variables:
                c += m.weight_multiplier ** 2 * (a ** 2).sum(axis=1)
            if bname in variables and m.bias is not None:
                c += m.bias_multiplier ** 2
            for i in range(m.out_features):
                t = np.zeros(z0.shape, z0.dtype)
                t[:, i] = 1
                _, hz = hvp(f, (z0,), (wrap(t),))
                op.n_matvecs += 1
                total += float(c @ np.asarray(hz.data[:, i], np.float64))
        with no_grad():
            h = m(h)
    return total
