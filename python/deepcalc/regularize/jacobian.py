"""Jacobian regularization (Hoffman, Roberts & Yaida 2019, "Robust Learning with Jacobian
Regularization"): estimates of ||J(x)||_F^2, J = d f(x) / d x of a network with a (B, C)
output, per sample, and the penalty lam / 2 * mean_i ||J(x_i)||_F^2.

Estimators (each unbiased for ||J||_F^2; their cost and variance decide which wins):

* ``'reverse'``: C / n_proj * sum_p ||v_p^T J||^2, v_p uniform on the unit sphere of R^C (a
  Gaussian normalized per sample), as in the paper.  One VJP per projection.  With s_k the
  squared singular values of J (sum s_k = ||J||_F^2),
  Var = (2 / n_proj) (C sum s_k^2 - (sum s_k)^2) / (C + 2): 0 when all s_k are equal, at most
  2 (C - 1) / (C + 2) ||J||_F^4 / n_proj.
* ``'forward'``: 1 / n_proj * sum_p ||J u_p||^2 with u_p ~ N(0, I) in input space.  One JVP per
  projection.  Var = (2 / n_proj) sum s_k^2 = 2 ||J^T J||_F^2 / n_proj, always above the
  reverse estimator's (by the factor (C + 2) / C at least), so per projection 'reverse' is the
  better estimator; 'forward' is the one to take where a JVP is cheaper than a VJP (no reverse
  graph to keep: long chains, little memory) or where the model has forward-mode rules only.
* ``'exact'``: ||J||_F^2 column by column: one VJP per output when C <= the input size,
  else one JVP per input feature (forward mode wins when the input is smaller than the
  output); no variance.

Every path is differentiable in the parameters (the penalty's gradient is a second-order
quantity).  ``JacobianRegularizer`` on an MLP (``nn.MLP``, a ``Sequential`` of Linear +
element-wise activations, Dropout in eval mode) in ``'reverse'`` mode calls the fused kernel
(ops/jacobian.py, cpp/jacobian): one native call for v^T J, the penalty and its gradient.

BatchNorm in training mode couples the samples through the batch statistics: the estimates
then use the gradient of sum_i v_i . f(x)_i with respect to each x_i, which includes how x_i
moves the other samples' outputs; in eval mode (running statistics) samples are independent.
"""
from __future__ import annotations

import math

import numpy as np

from ..autodiff.graph import STATE, Tensor, enable_grad, watch
from ..autodiff.engine import grad as autograd_grad
from ..creation import check_generator, default_generator
from ..func.transforms import jvp
from ..nn.layers import Dropout, Identity, Linear, Standardize
from ..nn.mlp import MLP
from ..nn.module import Sequential
from ..ops import jacobian as _jac
from ..ops import matmul, mean, reshape, sum
from ..ops._convert import as_tensor

MODES = ("reverse", "forward", "exact")


def _check(op, n_proj, mode, generator):
    if isinstance(n_proj, bool) or not isinstance(n_proj, (int, np.integer)) or n_proj < 1:
        raise ValueError(f"{op}: n_proj must be an integer >= 1, got {n_proj!r}")
    if mode not in MODES:
        raise ValueError(f"{op}: unknown mode {mode!r}; expected one of {MODES}")
    check_generator(op, generator)


def sphere_projections(generator, n_proj: int, B: int, C: int, dtype) -> np.ndarray:
    """(n_proj, B, C) directions uniform on the unit sphere of R^C (Gaussians normalized)."""
    g = generator.standard_normal((n_proj, B, C))
    return (g / np.linalg.norm(g, axis=-1, keepdims=True)).astype(dtype)


def _output(op, f, x):
    out = f(x)
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: the model must map x {tuple(x.shape)} to a (B, C) output with "
                         f"B = {x.shape[0]}, got "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    return out


def _sq_rows(u, B):
    return sum(reshape(u * u, (B, -1)), axis=1)


def jacobian_norm_sq(model_or_fn, x, n_proj: int = 1, mode: str = "reverse", generator=None):
    """Per-sample estimate of ||J(x_i)||_F^2 (a (B,) Tensor) for a model or function mapping
    x (B, ...) to a (B, C) output; see the module docstring for the modes and their variance.
    Differentiable in the model's parameters (and in x when x requires grad) whenever grad mode
    is on; ``generator`` (numpy Generator, default deepcalc's seeded one) draws the projections."""
    op = "jacobian_norm_sq"
    _check(op, n_proj, mode, generator)
    if not callable(model_or_fn):
        raise TypeError(f"{op}: model_or_fn must be callable, got {type(model_or_fn).__name__}")
    x = as_tensor(x, op=op)
    if x.ndim < 1 or x.dtype.kind != "f":
        raise ValueError(f"{op}: x must be a float (B, ...) batch, got shape {x.shape} dtype "
                         f"{x.dtype}")
    gen = generator or default_generator()
    B = x.shape[0]
    graph = STATE.grad_enabled
    if mode == "forward":
        total = None
        for _ in range(n_proj):
            t = Tensor(gen.standard_normal(x.shape).astype(x.dtype))
            with enable_grad():
                _, jt = jvp(lambda z: _output(op, model_or_fn, z), (x,), (t,))
            sq = sum(jt * jt, axis=1)
            total = sq if total is None else total + sq
        return total * (1.0 / n_proj) if graph else total.detach() * (1.0 / n_proj)
    with enable_grad():
        xw = watch(x)
        out = _output(op, model_or_fn, xw)
        C = out.shape[1]
        n_in = int(np.prod(x.shape[1:]))
        if mode == "exact" and n_in < C:   # fewer JVPs (one per input) than VJPs (one per output)
            return _exact_forward(op, model_or_fn, x, n_in, graph)
        if mode == "reverse":
            vs = sphere_projections(gen, n_proj, B, C, out.dtype)
            cots, factor = [Tensor(v) for v in vs], C / n_proj
        else:
            cots, factor = [Tensor(np.eye(C, dtype=out.dtype)[None, c].repeat(B, 0))
                            for c in range(C)], 1.0
        total = None
        for k, v in enumerate(cots):
            (u,) = autograd_grad(out, [xw], grad_outputs=[v], create_graph=graph,
                                 retain_graph=graph or k + 1 < len(cots))
            if u is None:  # the output does not depend on x
                continue
            sq = _sq_rows(u, B)
            total = sq if total is None else total + sq
    if total is None:
        return Tensor(np.zeros(B, out.dtype))
    return total * factor if graph else total.detach() * factor


def _exact_forward(op, f, x, n_in, graph):
    """sum_i ||J e_i||^2 over the input features i (one JVP each, the same feature of every
    sample at once)."""
    B, total = x.shape[0], None
    for i in range(n_in):
        t = np.zeros((B, n_in), x.dtype)
        t[:, i] = 1
        with enable_grad():
            _, jt = jvp(lambda z: _output(op, f, z), (x,), (Tensor(t.reshape(x.shape)),))
        sq = sum(jt * jt, axis=1)
        total = sq if total is None else total + sq
    return total if graph else total.detach()


def mlp_chain(model):
    """See ``_chain``: (weights, biases, activations) or None."""
    chain = _chain(model)
    return None if chain is None else chain[:3]


def _chain(model):
    """(weights, biases, activations) of a model that is a chain of Linear layers with
    element-wise activations (``nn.MLP``, ``nn.Linear``, ``Sequential`` of Linear, ReLU / Tanh /
    Sigmoid / GELU, Identity, Dropout in eval mode, nested, or wrapped in
    ``dc.distributed.DistributedDataParallel``; a ``Standardize`` before the first
    Linear is folded into it: W' = W / std, b' = b - W' mean, as differentiable ops), or None
    for any other model (the fused Jacobian kernel applies exactly to the chains this returns)."""
    layers, pending, raw = [], [], []

    def walk(m):
        if isinstance(m, Linear):
            if m.weight_multiplier != 1.0 or m.bias_multiplier != 1.0 or m._forward_hooks \
                    or m._forward_pre_hooks:
                return False
            w, b = m.weight, m.bias
            raw.append((m.weight, m.bias, None))
            if pending:
                mu, std = pending.pop()
                raw[-1] = (m.weight, m.bias, (mu, std))
                w = w / std
                b = (-matmul(w, mu)) if b is None else b - matmul(w, mu)
            layers.append([w, b, m.activation or "none"])
            return True
        if isinstance(m, Standardize) and not layers and not pending \
                and not (m._forward_hooks or m._forward_pre_hooks) and m.mean.ndim == 1:
            pending.append((m.mean, m.std))
            return True
        if m._forward_hooks or m._forward_pre_hooks:
            return False
        if isinstance(m, (Sequential, MLP)):
            return all(walk(c) for c in m._modules.values())
        if type(m).__name__ == "DistributedDataParallel":  # its forward is its module's
            return walk(m.module)
        if isinstance(m, Identity) or (isinstance(m, Dropout) and (not m.training or m.p == 0)):
            return True
        name = getattr(m, "fused_name", None)
        if name is not None and layers and layers[-1][2] == "none":
            layers[-1][2] = name
            return True
        return False

    if not hasattr(model, "_modules") or not walk(model) or not layers or pending:
        return None
    return tuple(list(col) for col in zip(*layers)) + (raw,)


def _forward_from_graph(out, raw, acts, x):
    """(outputs, preactivations) of the chain's layers read from the graph of ``out`` (the
    model's output at x in this step), or None unless every node is the chain's fused linear
    on the chain's own parameters and the first layer's input is x (or Standardize(x))."""
    ys, zs = [None] * len(raw), [None] * len(raw)
    node = getattr(out, "grad_fn", None)
    for l in range(len(raw) - 1, -1, -1):
        w, b, std = raw[l]
        if node is None or node.prim.name != "linear" or node.inputs[1] is not w \
                or node.params["activation"] != acts[l] \
                or (b is None) != (len(node.inputs) == 2) \
                or (b is not None and node.inputs[2] is not b):
            return None
        ys[l] = node.out_data
        zs[l] = node.saved if acts[l] == "gelu" else None
        first = node.inputs[0]
        node = first.grad_fn
    if std is None:
        if first is not x and first.data is not x.data:
            return None
    elif first.shape != x.shape or not np.array_equal(
            first.data, (x.data - std[0].data) / std[1].data):
        return None
    if any(y is None or not y.flags.c_contiguous for y in ys):
        return None
    return ys, zs


class JacobianRegularizer:
    """``reg(model, x)`` = lam / 2 * mean over the batch of an estimate of ||J(x_i)||_F^2, a
    scalar Tensor to add to the loss (``dc.train.fit(..., regularizer=reg)`` adds it for you).

    On an MLP chain (see ``mlp_chain``) in ``'reverse'`` mode with x (B, in) that does not
    require grad, the fused kernel computes the penalty and its gradient in one native call;
    any other model or mode takes the generic path (``jacobian_norm_sq``).  Both draw the same
    projections from the same generator state, so they give the same value.  ``last_path`` says
    which ran ('fused' or 'generic'); ``fused=False`` forces the generic path.

    ``reg(model, x, out=out)`` with ``out = model(x)`` of this step lets the kernel reuse that
    forward's activations (read from out's graph, checked to be this chain's) instead of
    recomputing them; ``fit`` passes it (``takes_output``)."""

    takes_output = True

    def __init__(self, lam: float, n_proj: int = 1, mode: str = "reverse", generator=None,
                 fused: bool = True):
        op = "JacobianRegularizer"
        _check(op, n_proj, mode, generator)
        if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating, np.integer)) \
                or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"{op}: lam must be a finite number >= 0, got {lam!r}")
        self.lam, self.n_proj, self.mode = float(lam), int(n_proj), mode
        self.generator, self.fused, self.last_path = generator, bool(fused), None
        self.reused_forward = False

    def __call__(self, model, x, out=None):
        x = as_tensor(x, op="JacobianRegularizer")
        chain = _chain(model) if self.fused and self.mode == "reverse" else None
        if chain is not None and x.ndim == 2 and not x.requires_grad:
            ws, bs, acts, raw = chain
            forward = _forward_from_graph(out, raw, acts, x) if out is not None else None
            self.reused_forward = forward is not None
            B, C = x.shape[0], ws[-1].shape[0]
            gen = self.generator or default_generator()
            v = sphere_projections(gen, self.n_proj, B, C, x.dtype).reshape(self.n_proj * B, C)
            scale = self.lam / 2 * C / (self.n_proj * max(B, 1))
            self.last_path = "fused"
            return _jac.jacobian_penalty(x, Tensor(v), ws, bs, acts, self.n_proj, scale, forward)
        self.last_path = "generic"
        est = jacobian_norm_sq(model, x, self.n_proj, self.mode, self.generator)
        return mean(est) * (self.lam / 2)

    def __repr__(self):
        return f"JacobianRegularizer(lam={self.lam}, n_proj={self.n_proj}, mode={self.mode!r})"
