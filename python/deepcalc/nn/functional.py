"""Stateless layer functions (``dc.nn.functional``): linear, activations, dropout, losses.

Losses take logits and are numerically stable (log-softmax / log-sigmoid forms); reductions
follow torch: 'mean' (the default), 'sum' or 'none'."""
from __future__ import annotations

import numpy as np

from .. import _core, ops
from ..autodiff.graph import Tensor, in_transform, wrap
from ..creation import default_generator
from ..ops import gelu, log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401  (re-exported)
from ..ops._convert import as_tensor
from ..ops.linear import linear_act
from ..ops.norm import batch_norm_train, layer_norm as _layer_norm

ACTIVATIONS = ("none", "relu", "tanh", "sigmoid", "gelu")


_ACTIVATION_FNS = {"none": lambda x: x, "relu": ops.relu, "tanh": ops.tanh,
                   "sigmoid": ops.sigmoid, "gelu": ops.gelu}


def activation_fn(name):
    """The activation function for a name in ACTIVATIONS (None means 'none')."""
    fn = _ACTIVATION_FNS.get("none" if name is None else name)
    if fn is None:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return fn


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
    activation_fn(activation)  # validates the name
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise TypeError(f"linear: x is {x.dtype}, weight is {weight.dtype}"
                        + (f", bias is {bias.dtype}" if bias is not None else "")
                        + "; deepcalc never mixes dtypes silently")
    return linear_act(x, weight, bias, activation or "none")


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


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5):
    """Batch normalization of x (N, C) or (N, C, L) over N (and L) per channel, as torch.

    Training mode normalizes with the batch mean and biased variance and, when running
    statistics are given, updates them in place: mean <- (1 - momentum) mean + momentum
    batch_mean, var <- (1 - momentum) var + momentum * unbiased batch variance.  They are left
    untouched while a function transform (grad, jvp, jacrev, hessian, ...) evaluates the layer.
    Eval mode normalizes with the running statistics."""
    x = as_tensor(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"batch_norm: expected x of shape (N, C) or (N, C, L), got {x.shape}")
    c = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: x has {c} channels (shape {x.shape}), {name} has "
                             f"shape {tuple(t.shape)}")
    if (weight is None) != (bias is None):
        raise ValueError("batch_norm: weight and bias must both be given or both be None")
    if training or running_mean is None:
        m = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1)
        if m <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input size {x.shape}")
        y, mu, invstd = batch_norm_train(x, weight, bias, eps)
        if running_mean is not None and not in_transform():
            if running_mean.dtype != x.dtype or running_var.dtype != x.dtype:
                raise TypeError(f"batch_norm: x is {x.dtype} but running_mean is "
                                f"{running_mean.dtype} and running_var {running_var.dtype}; "
                                "deepcalc never mixes dtypes silently")
            _core.batchnorm_update_running(running_mean.data, running_var.data, mu, invstd, m,
                                           float(momentum), float(eps))
        return y
    # eval: an affine map with constant scale and shift per channel
    shape = (c,) if x.ndim == 2 else (1, c, 1)
    invstd = 1.0 / np.sqrt(np.asarray(running_var.data, np.float64) + eps)
    scale = wrap((invstd).astype(x.dtype).reshape(shape))
    shift = wrap((-np.asarray(running_mean.data, np.float64) * invstd).astype(x.dtype).reshape(shape))
    y = x * scale + shift
    if weight is not None:
        y = y * weight.reshape(shape) + bias.reshape(shape)
    return y


def layer_norm(x, normalized_shape=None, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalization over the last axis (``normalized_shape`` must be that axis' size)."""
    x = as_tensor(x)
    c = x.shape[-1] if x.ndim else 0
    if normalized_shape is not None:
        ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if ns != (c,):
            raise ValueError(f"layer_norm: normalized_shape {ns} must equal the last axis of x "
                             f"(shape {x.shape}); deepcalc normalizes over the last axis")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"layer_norm: x has {c} features in its last axis (shape {x.shape}), "
                             f"{name} has shape {tuple(t.shape)}")
    if (weight is None) != (bias is None):
        raise ValueError("layer_norm: weight and bias must both be given or both be None")
    return _layer_norm(x, weight, bias, eps)
