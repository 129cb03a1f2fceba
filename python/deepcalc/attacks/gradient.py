"""Gradient attacks on a classifier's loss: FGSM (Goodfellow et al. 2015) and projected
gradient descent (Madry et al. 2018) in the L-inf or L2 ball of radius eps around x, every
iterate kept inside the box ``clip = (lo, hi)`` that valid inputs live in.

The model is used as it is (call ``model.eval()`` first for Dropout / BatchNorm); the returned
examples are Tensors that require no grad."""
from __future__ import annotations

import math

import numpy as np

from ..autodiff.engine import grad as autograd_grad
from ..autodiff.graph import Tensor, enable_grad
from ..creation import check_generator, default_generator
from ..nn import functional as F
from ..ops._convert import as_tensor

NORMS = ("linf", "l2")


def _number(op, name, value, minimum, strict=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < minimum or (strict and value == minimum):
        rel = ">" if strict else ">="
        raise ValueError(f"{op}: {name} must be a finite number {rel} {minimum}, got {value!r}")
    return float(value)


def _prepare(op, model, x, y, clip):
    if not callable(model):
        raise TypeError(f"{op}: model must be callable, got {type(model).__name__}")
    x = as_tensor(x, op=op)
    if x.ndim < 1 or x.dtype.kind != "f":
        raise ValueError(f"{op}: x must be a float batch (B, ...), got shape {x.shape} dtype "
                         f"{x.dtype}")
    y = np.asarray(getattr(y, "data", y))
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
        raise ValueError(f"{op}: y must be integer labels of shape ({x.shape[0]},) for x "
                         f"{x.shape}, got shape {y.shape} dtype {y.dtype}")
    if clip is not None:
        try:
            lo, hi = (float(c) for c in clip)
        except (TypeError, ValueError):
            raise TypeError(f"{op}: clip must be None or a pair (lo, hi), got {clip!r}") from None
        if not lo <= hi:
            raise ValueError(f"{op}: clip = ({lo}, {hi}) needs lo <= hi")
        clip = (lo, hi)
    return x.data, y, clip


def _loss_grad(model, x, y, loss_fn):
    """d loss(model(x), y) / dx as an array (the loss summed over the batch, so each sample's
    gradient is its own loss's)."""
    with enable_grad():
        xt = Tensor(x.copy(), requires_grad=True)
        loss = loss_fn(model(xt), Tensor(y))
        (g,) = autograd_grad(loss, [xt])
    return np.zeros_like(x) if g is None else g.data


def _sum_ce(logits, y):
    return F.cross_entropy(logits, y, reduction="sum")


def _box(x, clip):
    return x if clip is None else np.clip(x, clip[0], clip[1])


def _l2_rows(a):
    return np.sqrt(np.sum(a.reshape(a.shape[0], -1).astype(np.float64) ** 2, axis=1)).reshape(
        (-1,) + (1,) * (a.ndim - 1))


def fgsm(model, x, y, eps: float, loss_fn=None, clip=None):
    """x + eps * sign(d loss / dx), then clipped to ``clip`` = (lo, hi) (None: no box);
    ``loss_fn(logits, y)`` defaults to the summed cross-entropy."""
    op = "fgsm"
    eps = _number(op, "eps", eps, 0.0)
    x0, y, clip = _prepare(op, model, x, y, clip)
    g = _loss_grad(model, x0, y, loss_fn or _sum_ce)
    return Tensor(_box(x0 + eps * np.sign(g), clip).astype(x0.dtype))


def pgd(model, x, y, eps: float, alpha: float, steps: int, norm: str = "linf",
        random_start: bool = True, generator=None, loss_fn=None, clip=None):
    """Projected gradient ascent of the loss in the ``norm`` ball (``'linf'`` or ``'l2'``) of
    radius eps around x, ``steps`` steps of size alpha:

    * linf: x <- P(x + alpha * sign(g)),  P clips x - x0 to [-eps, eps] per element;
    * l2:   x <- P(x + alpha * g / ||g||_2) per sample (a zero gradient takes no step),
      P scales x - x0 back to norm eps when it is longer;

    each iterate then clipped to the box ``clip``.  ``random_start`` begins at a uniform point
    of the ball (linf: U(-eps, eps) per element; l2: uniform in the ball) drawn from
    ``generator`` (default deepcalc's seeded one)."""
    op = "pgd"
    eps = _number(op, "eps", eps, 0.0)
    alpha = _number(op, "alpha", alpha, 0.0, strict=True)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"{op}: steps must be an integer >= 0, got {steps!r}")
    if norm not in NORMS:
        raise ValueError(f"{op}: unknown norm {norm!r}; expected one of {NORMS}")
    check_generator(op, generator)
    x0, y, clip = _prepare(op, model, x, y, clip)
    loss_fn = loss_fn or _sum_ce
    gen = generator or default_generator()
    xa = x0.astype(np.float64)
    if random_start and eps > 0:
        if norm == "linf":
            xa = xa + gen.uniform(-eps, eps, x0.shape)
        else:
            d = gen.standard_normal(x0.shape)
            dim = int(np.prod(x0.shape[1:]))
            r = eps * gen.uniform(0, 1, (x0.shape[0],) + (1,) * (x0.ndim - 1)) ** (1 / dim)
            xa = xa + d / np.maximum(_l2_rows(d), 1e-300) * r
        xa = _box(xa, clip)
    for _ in range(steps):
        g = _loss_grad(model, xa.astype(x0.dtype), y, loss_fn).astype(np.float64)
        if norm == "linf":
            xa = xa + alpha * np.sign(g)
            xa = x0 + np.clip(xa - x0, -eps, eps)
        else:
            gn = _l2_rows(g)
            xa = xa + alpha * np.divide(g, gn, out=np.zeros_like(g), where=gn != 0)
            delta = xa - x0
            dn = _l2_rows(delta)
            xa = x0 + delta * np.minimum(1.0, np.divide(eps, dn, out=np.ones_like(dn),
                                                         where=dn != 0))
        xa = _box(xa, clip)
    return Tensor(xa.astype(x0.dtype))
