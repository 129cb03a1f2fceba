"""Filter-normalized loss-landscape slices (Li, Xu, Taylor, Studer & Goldstein 2018,
"Visualizing the loss landscape of neural nets"): L(theta + a d1 (+ b d2)) along random
directions whose every filter (row of a weight matrix: one output unit's incoming weights)
is rescaled to the norm of the same filter of theta, so slices of differently scaled
networks are comparable."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff.graph import Tensor, no_grad, wrap
from ..func.functional import functional_call
from .lanczos import _rng
from .operators import BATCH_NORM_MODES, _as_batches


def filter_normalized_direction(model, params=None, generator=None, ignore_1d=True) -> dict:
    """A Gaussian direction over ``params`` (names; default every parameter) with each filter
    rescaled to its parameter's filter norm: rows of >= 2-D weights (shape (out, ...)), and a
    1-D parameter as one filter when ``ignore_1d`` is False (by default biases and norm
    scales get zero, as Li et al.).  Returns {name: float64 array}."""
    own = dict(model.named_parameters())
    names = list(own) if params is None else list(params)
    for k in names:
        if k not in own:
            raise ValueError(f"filter_normalized_direction: unknown parameter {k!r}; the model "
                             f"has {list(own)}")
    rng = _rng(generator)
    out = {}
    for k in names:
        theta = np.asarray(own[k].data, np.float64)
        d = rng.standard_normal(theta.shape)
        if theta.ndim <= 1:
            if ignore_1d:
                d = np.zeros_like(theta)
            else:
                d *= np.linalg.norm(theta) / max(np.linalg.norm(d), 1e-300)
        else:
            rows_t = np.linalg.norm(theta.reshape(theta.shape[0], -1), axis=1)
            rows_d = np.linalg.norm(d.reshape(d.shape[0], -1), axis=1)
            scale = rows_t / np.maximum(rows_d, 1e-300)
            d *= scale.reshape((-1,) + (1,) * (theta.ndim - 1))
        out[k] = d
    return out


def _mean_loss(model, loss_fn, batches, params):
    total, count = 0.0, 0
    with no_grad():
        for x, y in batches:
            x = x if isinstance(x, Tensor) else wrap(np.asarray(x))
            n = int(x.shape[0])
            total += n * float(loss_fn(functional_call(model, params, x), y).item())
            count += n
    if count == 0:
        raise ValueError("loss_slice: the batches are empty")
    return total / count


@dataclass
class LossSlice:
    """Losses on a 1-D (``betas`` None, ``losses`` (len(alphas),)) or 2-D grid
    (``losses`` (len(alphas), len(betas)), index [i, j] = L(theta + a_i d1 + b_j d2))."""
    alphas: np.ndarray
    betas: np.ndarray | None
    losses: np.ndarray
    directions: list

    def plot(self, path=None, ax=None, title=None, log=False):
        return plot_slice(self, path=path, ax=ax, title=title, log=log)


def loss_slice(model, loss_fn, batches, directions=None, alphas=None, betas=None,
               batch_norm="eval", generator=None, ignore_1d=True) -> LossSlice:
    """Loss along one direction (1-D: ``directions`` a dict or a list of one) or over the
    plane of two (2-D), the mean over ``batches`` (one (x, y) batch or a loader), at the
    model's current parameters plus a d1 + b d2.  Missing directions are drawn with
    ``filter_normalized_direction``; ``alphas`` / ``betas`` default to 41 points in [-1, 1]
    (``betas`` only for 2-D).  ``batch_norm`` as in the curvature operators."""
    if batch_norm not in BATCH_NORM_MODES:
        raise ValueError(f"loss_slice: batch_norm must be None, 'train' or 'eval', got "
                         f"{batch_norm!r}")
    if isinstance(directions, int) and directions in (1, 2):
        directions = [None] * directions
    elif directions is None or isinstance(directions, dict):
        directions = [directions]
    if not 1 <= len(directions) <= 2:
        raise ValueError(f"loss_slice: one or two directions, got {len(directions)}")
    directions = [filter_normalized_direction(model, generator=generator, ignore_1d=ignore_1d)
                  if d is None else d for d in directions]
    own = dict(model.named_parameters())
    base = {k: np.asarray(own[k].data, np.float64) for k in directions[0]}
    for d in directions:
        for k, a in d.items():
            if k not in own or np.shape(a) != own[k].shape:
                raise ValueError(f"loss_slice: direction entry {k!r} of shape {np.shape(a)} "
                                 "does not match a parameter of the model")
    alphas = np.linspace(-1, 1, 41) if alphas is None else np.asarray(alphas, np.float64)
    two = len(directions) == 2
    betas = (np.linspace(-1, 1, 41) if betas is None else np.asarray(betas, np.float64)) \
        if two else None
    batches, _ = _as_batches("loss_slice", batches)
    mode = model.training
    if batch_norm is not None:
        model.train(batch_norm == "train")

    def at(a, b):
        p = {k: wrap((base[k] + a * np.asarray(directions[0][k]) +
                      (b * np.asarray(directions[1][k]) if two else 0.0)).astype(own[k].dtype))
             for k in base}
        return _mean_loss(model, loss_fn, batches, p)
    try:
        if two:
            losses = np.array([[at(a, b) for b in betas] for a in alphas])
        else:
            losses = np.array([at(a, 0.0) for a in alphas])
    finally:
        model.train(mode)
    return LossSlice(alphas, betas, losses, directions)


def plot_slice(s: LossSlice, path=None, ax=None, title=None, log=False):
    """A line (1-D) or a contour plot (2-D) of a ``LossSlice``; returns the path or axes."""
    import matplotlib
    if path is not None and ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 4))
    if s.betas is None:
        ax.plot(s.alphas, s.losses)
        ax.set_xlabel("alpha (filter-normalized direction)")
        ax.set_ylabel("loss")
        if log:
            ax.set_yscale("log")
    else:
        z = np.log10(np.maximum(s.losses, 1e-12)) if log else s.losses
        cs = ax.contour(s.alphas, s.betas, z.T, levels=20)
        ax.clabel(cs, inline=True, fontsize=7)
        ax.set_xlabel("alpha (direction 1)")
        ax.set_ylabel("beta (direction 2)")
    ax.set_title(title or ("loss slice" + (" (log10)" if log and s.betas is not None else "")))
    if path is None:
        return ax
    from ..results import save_figure
    return save_figure(ax.figure, path, close=own)
