"""Stateless layer functions (``dc.nn.functional``): linear, activations, dropout, losses.

Losses take logits and are numerically stable (log-softmax / log-sigmoid forms); reductions
follow torch: 'mean' (the default), 'sum' or 'none'."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..autodiff.graph import Tensor, wrap
from ..creation import default_generator
from ..ops import gelu, log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401  (re-exported)
from ..ops._convert import as_tensor

ACTIVATIONS = ("none", "relu", "tanh", "sigmoid", "gelu")


def activation_fn(name):
    """The activation function for a name in ACTIVATIONS (None means 'none')."""
    name = "none" if name is None else name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return {"none": lambda x: x, "relu": ops.relu, "tanh": ops.tanh, "sigmoid": ops.sigmoid,
            "gelu": ops.gelu}[name]


def linear(x, weight, bias=None, activation=None):
    """act(x @ weight.T + bias) with weight in (out_features, in_features) layout."""
    x = as_tensor(x)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has {x.shape[-1] if x.ndim else 0} features (shape {x.shape}), "
                         f"weight expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
    y = ops.matmul(x, ops.transpose(weight))
    if bias is not None:
        y = y + bias
    return activation_fn(activation)(y)


def dropout(x, p: float = 0.5, training: bool = True, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    g = generator or default_generator()
    keep = (g.random(x.shape) >= p).astype(x.dtype) / x.dtype.type(1 - p)
    return x * wrap(keep)


def _reduce(loss: Tensor, reduction: str, op: str):
    if reduction == "mean":
        return ops.mean(loss)
    if reduction == "sum":
        return ops.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _targets(op, logits: Tensor, target):
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got {t.dtype}")
    if logits.ndim != 2 or t.shape != (logits.shape[0],):
        raise ValueError(f"{op}: expected input (N, C) and target (N,), got input {logits.shape} "
                         f"and target {t.shape}")
    return t


def nll_loss(log_probs, target, weight=None, ignore_index: int = -100, reduction: str = "mean"):
    """Negative log-likelihood of integer targets under log-probabilities (N, C)."""
    log_probs = as_tensor(log_probs)
    t = _targets("nll_loss", log_probs, target)
    n, c = log_probs.shape
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= c))
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexError(f"nll_loss: target {int(t[i])} at position {i} is out of range for "
                         f"{c} classes")
    safe_t = np.where(valid, t, 0)
    w = np.ones(c, log_probs.dtype) if weight is None else np.asarray(
        weight.data if isinstance(weight, Tensor) else weight, log_probs.dtype)
    wt = (w[safe_t] * valid).astype(log_probs.dtype)
    picked = log_probs[np.arange(n), safe_t]
    losses = -picked * wrap(wt)
    if reduction == "mean":
        denom = wt.sum()
        return ops.sum(losses) / (denom if denom != 0 else np.nan)
    return _reduce(losses, reduction, "nll_loss")


def cross_entropy(logits, target, weight=None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0):
    """Softmax cross-entropy from logits (N, C) and integer targets (N,), as torch defines it,
    including class weights, ``ignore_index`` and label smoothing eps:
    (1 - eps) * nll + eps / C * sum_c(-w_c log p_c)."""
    logits = as_tensor(logits)
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    logp = log_softmax(logits, axis=-1)
    loss = nll_loss(logp, target, weight, ignore_index, reduction)
    if label_smoothing == 0:
        return loss
    t = _targets("cross_entropy", logits, target)
    c = logits.shape[1]
    valid = (t != ignore_index).astype(logits.dtype)
    if weight is None:
        smooth = -ops.sum(logp, axis=1)
    else:
        w = wrap(np.asarray(weight.data if isinstance(weight, Tensor) else weight, logits.dtype))
        smooth = -ops.sum(logp * w, axis=1)
    smooth = smooth * wrap(valid)
    if reduction == "mean":
        if weight is None:
            denom = valid.sum()
        else:
            wv = np.asarray(weight.data if isinstance(weight, Tensor) else weight, logits.dtype)
            denom = (wv[np.where(valid > 0, t, 0)] * valid).sum()
        smooth = ops.sum(smooth) / (denom if denom != 0 else np.nan)
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy")
    return loss * (1 - label_smoothing) + smooth * (label_smoothing / c)


def binary_cross_entropy_with_logits(logits, target, pos_weight=None, reduction: str = "mean"):
    """-[p y log s(x) + (1 - y) log(1 - s(x))] computed stably as
    (1 - y) x + (1 + (p - 1) y) * softplus(-x), softplus(z) = max(z, 0) + log(1 + exp(-|z|))."""
    logits = as_tensor(logits)
    target = as_tensor(target, logits)
    if target.shape != logits.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: target shape {target.shape} != "
                         f"input shape {logits.shape}")
    sp = ops.relu(-logits) + ops.log(1 + ops.exp(-ops.abs(logits)))
    coef = 1 if pos_weight is None else 1 + (as_tensor(pos_weight, logits) - 1) * target
    return _reduce((1 - target) * logits + coef * sp, reduction, "binary_cross_entropy_with_logits")


def mse_loss(pred, target, reduction: str = "mean"):
    """Squared error: 'mean' (torch's default), 'sum' (the sum-of-squares L2 loss) or 'none'."""
    pred = as_tensor(pred)
    target = as_tensor(target, pred)
    if pred.shape != target.shape:
        raise ValueError(f"mse_loss: prediction shape {pred.shape} != target shape {target.shape}")
    d = pred - target
    return _reduce(d * d, reduction, "mse_loss")
