"""Stateless layer functions (``dc.nn.functional``): linear, activations, dropout, losses.

Losses take logits and are numerically stable (log-softmax / log-sigmoid forms); reductions
follow torch: 'mean' (the default), 'sum' or 'none'."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..autodiff.batching import constant, is_batched, values
from ..autodiff.graph import Tensor, in_transform, wrap
from ..autodiff.randomness import draw_tensor
from ..creation import default_generator
from ..ops import gelu, log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401  (re-exported)
from ..ops._convert import as_tensor
from ..ops.attention import scaled_dot_product_attention  # noqa: F401  (re-exported)
from ..ops.linear import linear_act
from ..ops.norm import (batch_norm_eval, batch_norm_train, layer_norm as _layer_norm,
                        update_running_stats)
from . import _checks

__all__ = ["ACTIVATIONS", "activation_fn", "linear", "relu", "tanh", "sigmoid", "gelu", "softmax",
           "log_softmax", "dropout", "nll_loss", "cross_entropy",
           "binary_cross_entropy_with_logits", "mse_loss", "batch_norm", "layer_norm",
           "scaled_dot_product_attention"]

ACTIVATIONS = ("none", "relu", "tanh", "sigmoid", "gelu")


_ACTIVATION_FNS = {"none": lambda x: x, "relu": ops.relu, "tanh": ops.tanh,
                   "sigmoid": ops.sigmoid, "gelu": ops.gelu}


def activation_fn(name, op: str = "activation_fn"):
    """The activation function for a name in ACTIVATIONS (None means 'none')."""
    try:
        fn = _ACTIVATION_FNS.get("none" if name is None else name)
    except TypeError:  # an unhashable name
        fn = None
    if fn is None:
        raise ValueError(f"{op}: unknown activation {name!r}; expected None or one of "
                         f"{ACTIVATIONS}")
    return fn


def mixed_dtypes(op: str, a: str, da, b: str, db) -> TypeError:
    """The one message for mixed float dtypes: ``a`` should have had ``b``'s dtype."""
    return TypeError(f"{op}: {a} is {da} but {b} is {db}; expected {a} of {b}'s dtype ({db}): "
                     "deepcalc never mixes dtypes silently, convert one with .astype()")


def _check_float_input(op: str, x: Tensor, what: str = "input") -> None:
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: {what} must be float32 or float64, got {x.data.dtype}")


def _check_probability(op: str, name: str, p) -> None:
    if not (p.__class__ is float and 0.0 <= p <= 1.0):  # else: say what is wrong with p
        _checks.probability(op, name, p)


def linear(x, weight, bias=None, activation=None):
    """act(x @ weight.T + bias) with weight in (out_features, in_features) layout."""
    x = as_tensor(x, op="linear")
    if not isinstance(weight, Tensor):
        weight = as_tensor(weight, x, "linear")
    if bias is not None and not isinstance(bias, Tensor):
        bias = as_tensor(bias, weight, "linear")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has {x.shape[-1] if x.ndim else 0} features (shape {x.shape}), "
                         f"weight expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
    activation_fn(activation, "linear")  # validates the name
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise TypeError(f"linear: x is {x.dtype}, weight is {weight.dtype}"
                        + (f", bias is {bias.dtype}" if bias is not None else "")
                        + f"; expected {'x and bias' if bias is not None else 'x'} of the "
                        f"weight's dtype ({weight.dtype}): deepcalc never mixes dtypes silently, "
                        "convert one with .astype()")
    return linear_act(x, weight, bias, activation or "none")


def dropout(x, p: float = 0.5, training: bool = True, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout)."""
    _check_probability("dropout", "p", p)
    x = as_tensor(x, op="dropout")
    if not training or p == 0:
        return x
    _check_float_input("dropout", x)
    if p == 1:
        return x * 0.0
    g = generator or default_generator()
    # replayed under jacfwd's randomness='same'; one mask per slice under vmap's 'different'
    u = draw_tensor("dropout", lambda lead: g.random(lead + x.shape))
    scale = x.dtype.type(1 - p)
    return x * constant(lambda a: (a >= p).astype(x.dtype) / scale, u)


def _reduce(loss: Tensor, reduction: str, op: str):
    if reduction == "mean":
        return ops.mean(loss)
    if reduction == "sum":
        return ops.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _targets(op, logits: Tensor, target):
    _check_float_input(op, logits)
    if is_batched(target):  # per-slice targets under vmap: a batched Tensor
        t = target
    else:
        t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got {t.dtype}")
    if logits.ndim != 2 or t.shape != (logits.shape[0],):
        raise ValueError(f"{op}: expected input (N, C) and target (N,), got input {logits.shape} "
                         f"and target {t.shape}")
    return t


def _class_weight(op: str, weight, c: int, dtype) -> np.ndarray | None:
    """The per-class weight as an array of the input's dtype and shape (C,), or None.  A Python
    list takes the input's dtype; an array or Tensor must already have it (the dtype rule)."""
    if weight is None:
        return None
    if isinstance(weight, (Tensor, np.ndarray)):
        w = weight.data if isinstance(weight, Tensor) else weight
    else:
        try:
            w = np.asarray(weight, dtype)
        except (TypeError, ValueError):
            raise TypeError(f"{op}: weight must be a Tensor or array-like of {c} floats (one per "
                            f"class), got {type(weight).__name__}") from None
    if w.shape != (c,):
        raise ValueError(f"{op}: weight has shape {w.shape}, expected ({c},): one weight per "
                         f"class, and the input has {c} classes")
    if w.dtype != dtype:
        raise mixed_dtypes(op, "weight", w.dtype, "the input", dtype)
    return w


def nll_loss(log_probs, target, weight=None, ignore_index: int = -100, reduction: str = "mean"):
    """Negative log-likelihood of integer targets under log-probabilities (N, C)."""
    log_probs = as_tensor(log_probs, op="nll_loss")
    t = _targets("nll_loss", log_probs, target)
    n, c = log_probs.shape
    w = _class_weight("nll_loss", weight, c, log_probs.dtype)
    if isinstance(t, Tensor):
        return _nll_batched(log_probs, t, w, ignore_index, reduction)
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= c))
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexError(f"nll_loss: target {int(t[i])} at position {i} is out of range for "
                         f"{c} classes")
    safe_t = np.where(valid, t, 0)
    wt = valid.astype(log_probs.dtype) if w is None else (w[safe_t] * valid).astype(log_probs.dtype)
    picked = log_probs[np.arange(n), safe_t]
    losses = -picked * wrap(wt)
    if reduction == "mean":
        denom = wt.sum()
        return ops.sum(losses) / (denom if denom != 0 else np.nan)
    return _reduce(losses, reduction, "nll_loss")


def _target_weights(t: Tensor, w, ignore_index: int, dtype) -> Tensor:
    """The weight of each target (0 where ignored) as a constant Tensor, batched as t is."""
    def weights(a):
        valid = a != ignore_index
        return (valid if w is None else w[np.where(valid, a, 0)] * valid).astype(dtype)
    return constant(weights, t)


def _nll_batched(log_probs, t: Tensor, w, ignore_index: int, reduction: str):
    """nll_loss for targets batched by vmap: the picked log-probabilities as a product with
    one-hot rows (indexing by per-slice targets), the targets checked on all slices at once."""
    c, dtype = log_probs.shape[1], log_probs.dtype
    tv = values(t)
    bad = (tv != ignore_index) & ((tv < 0) | (tv >= c))
    if bad.any():
        raise IndexError(f"nll_loss: target {int(tv[bad][0])} is out of range for {c} classes")
    onehot = constant(lambda a: (np.where(a != ignore_index, a, 0)[..., None] ==
                                 np.arange(c)).astype(dtype), t)
    wt = _target_weights(t, w, ignore_index, dtype)
    losses = -ops.sum(log_probs * onehot, axis=1) * wt
    if reduction == "mean":
        return ops.sum(losses) / ops.sum(wt)
    return _reduce(losses, reduction, "nll_loss")


def cross_entropy(logits, target, weight=None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0):
    """Softmax cross-entropy from logits (N, C) and integer targets (N,), as torch defines it,
    including class weights, ``ignore_index`` and label smoothing eps:
    (1 - eps) * nll + eps / C * sum_c(-w_c log p_c)."""
    logits = as_tensor(logits, op="cross_entropy")
    _check_probability("cross_entropy", "label_smoothing", label_smoothing)
    t = _targets("cross_entropy", logits, target)
    c = logits.shape[1]
    w = _class_weight("cross_entropy", weight, c, logits.dtype)
    logp = log_softmax(logits, axis=-1)
    loss = nll_loss(logp, t, w, ignore_index, reduction)
    if label_smoothing == 0:
        return loss
    if isinstance(t, Tensor):  # batched targets (vmap)
        valid = constant(lambda a: (a != ignore_index).astype(logits.dtype), t)
        smooth = -ops.sum(logp if w is None else logp * wrap(w), axis=1) * valid
        if reduction == "mean":
            smooth = ops.sum(smooth) / ops.sum(_target_weights(t, w, ignore_index, logits.dtype))
        else:
            smooth = _reduce(smooth, reduction, "cross_entropy")
        return loss * (1 - label_smoothing) + smooth * (label_smoothing / c)
    valid = (t != ignore_index).astype(logits.dtype)
    smooth = -ops.sum(logp if w is None else logp * wrap(w), axis=1) * wrap(valid)
    if reduction == "mean":
        denom = valid.sum() if w is None else (w[np.where(valid > 0, t, 0)] * valid).sum()
        smooth = ops.sum(smooth) / (denom if denom != 0 else np.nan)
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy")
    return loss * (1 - label_smoothing) + smooth * (label_smoothing / c)


def _loss_operands(op: str, input, target, what: str):
    """(input, target) as float Tensors of one dtype and one shape, or an error naming op."""
    input = as_tensor(input, op=op)
    _check_float_input(op, input)
    target = as_tensor(target, input, op)
    if target.data.dtype.kind == "f" and target.dtype != input.dtype:
        raise mixed_dtypes(op, "target", target.dtype, what, input.dtype)
    return input, target


def binary_cross_entropy_with_logits(logits, target, pos_weight=None, reduction: str = "mean"):
    """-[p y log s(x) + (1 - y) log(1 - s(x))] computed stably as
    (1 - y) x + (1 + (p - 1) y) * softplus(-x), softplus(z) = max(z, 0) + log(1 + exp(-|z|))."""
    op = "binary_cross_entropy_with_logits"
    logits, target = _loss_operands(op, logits, target, "logits")
    if target.shape != logits.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: target shape {target.shape} != "
                         f"input shape {logits.shape}")
    if pos_weight is not None:
        pos_weight = as_tensor(pos_weight, logits, op)
        if pos_weight.data.dtype.kind == "f" and pos_weight.dtype != logits.dtype:
            raise mixed_dtypes(op, "pos_weight", pos_weight.dtype, "logits", logits.dtype)
    sp = ops.relu(-logits) + ops.log(1 + ops.exp(-ops.abs(logits)))
    coef = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    return _reduce((1 - target) * logits + coef * sp, reduction, op)


def mse_loss(pred, target, reduction: str = "mean"):
    """Squared error: 'mean' (torch's default), 'sum' (the sum-of-squares L2 loss) or 'none'."""
    pred, target = _loss_operands("mse_loss", pred, target, "pred")
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
    x = as_tensor(x, op="batch_norm")
    if x.ndim not in (2, 3):
        raise ValueError(f"batch_norm: expected x of shape (N, C) or (N, C, L), got {x.shape}")
    _check_float_input("batch_norm", x, "x")
    c, dt = x.shape[1], x.dtype
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"batch_norm: {name} must be a Tensor, got {type(t).__name__}")
        if t.shape != (c,):
            raise ValueError(f"batch_norm: x has {c} channels (shape {x.shape}), {name} has "
                             f"shape {tuple(t.shape)}")
        if t.dtype != dt:
            raise mixed_dtypes("batch_norm", "x", dt, name, t.dtype)
    if (weight is None) != (bias is None):
        raise ValueError("batch_norm: weight and bias must both be given or both be None")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: running_mean and running_var must both be given or both "
                         "be None")
    if training or running_mean is None:
        m = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1)
        if m <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input size {x.shape}")
        y, mu, invstd = batch_norm_train(x, weight, bias, eps)
        if running_mean is not None and not in_transform():
            _check_probability("batch_norm", "momentum", momentum)
            update_running_stats(running_mean.data, running_var.data, mu.data, invstd.data, m,
                                 momentum, eps)
        return y
    # eval: an affine map with constant scale and shift per channel, one native pass
    return batch_norm_eval(x, running_mean.data, running_var.data, weight, bias, eps)


def layer_norm(x, normalized_shape=None, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalization over the last axis (``normalized_shape`` must be that axis' size)."""
    x = as_tensor(x, op="layer_norm")
    _check_float_input("layer_norm", x, "x")
    c = x.shape[-1] if x.ndim else 0
    if normalized_shape is not None:
        ns = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else \
            tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else None
        if ns is None:
            raise TypeError(f"layer_norm: normalized_shape must be an int or a tuple of ints, got "
                            f"{type(normalized_shape).__name__}")
        if ns != (c,):
            raise ValueError(f"layer_norm: normalized_shape {ns} must equal the last axis of x "
                             f"(shape {x.shape}); deepcalc normalizes over the last axis")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"layer_norm: {name} must be a Tensor, got {type(t).__name__}")
        if t.shape != (c,):
            raise ValueError(f"layer_norm: x has {c} features in its last axis (shape {x.shape}), "
                             f"{name} has shape {tuple(t.shape)}")
        if t.dtype != x.dtype:
            raise mixed_dtypes("layer_norm", "x", x.dtype, name, t.dtype)
    if (weight is None) != (bias is None):
        raise ValueError("layer_norm: weight and bias must both be given or both be None")
    return _layer_norm(x, weight, bias, eps)
