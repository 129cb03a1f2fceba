"""Santurkar et al. (2018, "How Does Batch Normalization Help Optimization?") measures, as
functions of a model, a loss, a batch (x, y) and a step:

* ``internal_covariate_shift`` (their Definition 2.1): for layer i, the gradient G of the loss
  with respect to layer i's parameters, and G' the same gradient after every parameter below
  layer i has taken the optimizer's step (layer i and those above unchanged), on the same batch;
  ICS_i = ||G - G'||, reported with cos(G, G');
* ``loss_landscape`` (their Fig. 4a): L(w - eta g) for step sizes eta along the gradient g;
* ``gradient_predictiveness`` (Fig. 4b): ||g(w) - g(w - eta g)|| over the same steps;
* ``effective_beta_smoothness`` (Fig. 4c): max over the steps of
  ||g(w) - g(w - eta g)|| / ||eta g||, the largest gradient change per unit of distance moved.

For a quadratic L(w) = 1/2 w^T A w - b^T w (gradient g = A w - b):
L(w - eta g) = L(w) - eta ||g||^2 + eta^2/2 g^T A g, g(w) - g(w - eta g) = eta A g, and the
effective beta-smoothness is ||A g|| / ||g|| (A's largest eigenvalue when g is its eigenvector).

Nothing here changes the model: its parameters, its buffers (BatchNorm running statistics) and
the random generators it draws from are as they were before the call; every evaluation draws
the same random numbers (noisy BatchNorm's noise is the same at w and at w - eta g), so the
measures see the weights change, not the noise."""
from __future__ import annotations

import numpy as np

from ._common import (Frozen, check_etas, check_loss_fn, check_model, flat_norm, layer_groups,
                      optimizer_update)


def internal_covariate_shift(model, loss_fn, x, y, step, layers=None) -> dict:
    """ICS of every layer (Santurkar et al., Definition 2.1) on the batch (x, y).

    ``step``: a learning rate (the update is plain SGD, w - lr g) or an Optimizer over the
    model's parameters (its actual update, taken on trial and undone).  ``layers``: None (one
    layer per module owning parameters), a list of such module names, or a dict layer -> list
    of parameter names.  "Below" layer i means every parameter registered before layer i's
    first one (input-side layers of a Sequential or MLP), whether or not it is reported.
    Returns layer -> {'l2': ||G - G'||, 'cosine': cos(G, G'), 'grad_norm': ||G||}.  A network
    of one layer has nothing below it: l2 is 0 and the cosine 1."""
    op = "internal_covariate_shift"
    check_model(op, model)
    check_loss_fn(op, loss_fn)
    groups = layer_groups(model, layers)
    frozen = Frozen(model)
    try:
        _, grads = frozen.loss_and_grad(loss_fn, x, y)
        stepped = optimizer_update(model, step, grads)
        order = frozen.names
        out = {}
        for layer, names in groups.items():
            first = min(order.index(n) for n in names)
            below = order[:first]
            G = [grads[n] for n in names]
            if below:
                weights = dict(frozen.current)
                weights.update({n: stepped[n] for n in below})
                _, moved = frozen.loss_and_grad(loss_fn, x, y, weights)
                G2 = [moved[n] for n in names]
            else:
                G2 = G
            diff = flat_norm([a - b for a, b in zip(G, G2)])
            na, nb = flat_norm(G), flat_norm(G2)
            dot = sum(float(np.vdot(a, b)) for a, b in zip(G, G2))
            cos = dot / (na * nb) if na > 0 and nb > 0 else float("nan")
            out[layer] = {"l2": diff, "cosine": cos, "grad_norm": na}
        return out
    finally:
        frozen.restore()


def along_gradient(model, loss_fn, x, y, etas, gradients: bool = True) -> dict:
    """Everything measured along the gradient direction from one set of evaluations: the loss
    L(w - eta g) for each eta in ``etas`` and, with ``gradients``, the gradient there.

    Returns {'etas', 'loss' (L(w)), 'grad_norm' (||g||), 'losses', 'loss_range' (max - min of
    the losses), and with gradients: 'gradient_change' (||g(w) - g(w - eta g)|| per eta),
    'beta_ratios' (gradient_change / (eta ||g||)) and 'beta_smoothness' (their max)}.  Costs
    one gradient plus one loss (or gradient) evaluation per step size."""
    op = "along_gradient"
    check_model(op, model)
    check_loss_fn(op, loss_fn)
    etas = check_etas(op, etas)
    frozen = Frozen(model)
    try:
        loss0, g = frozen.loss_and_grad(loss_fn, x, y)
        gnorm = flat_norm(g.values())
        losses, changes = [], []
        for eta in etas:
            w = {n: a - a.dtype.type(eta) * g[n] for n, a in frozen.current.items()}
            if gradients:
                value, g2 = frozen.loss_and_grad(loss_fn, x, y, w)
                changes.append(flat_norm([g[n] - g2[n] for n in g]))
            else:
                value = frozen.loss(loss_fn, x, y, w)
            losses.append(value)
        losses = np.array(losses)
        out = {"etas": etas, "loss": loss0, "grad_norm": gnorm, "losses": losses,
               "loss_range": float(np.max(losses) - np.min(losses))}
        if gradients:
            changes = np.array(changes)
            ratios = changes / (etas * gnorm) if gnorm > 0 else np.zeros_like(changes)
            out.update(gradient_change=changes, beta_ratios=ratios,
                       beta_smoothness=float(np.max(ratios)))
        return out
    finally:
        frozen.restore()


def loss_landscape(model, loss_fn, x, y, etas) -> dict:
    """L(w - eta g) for each step size in ``etas`` (g the gradient at the model's weights w):
    {'etas', 'losses', 'loss' (L(w)), 'range' (max - min of the losses)}.  Forward passes only,
    one per step size, plus one gradient."""
    r = along_gradient(model, loss_fn, x, y, etas, gradients=False)
    return {"etas": r["etas"], "losses": r["losses"], "loss": r["loss"], "range": r["loss_range"]}


def gradient_predictiveness(model, loss_fn, x, y, etas) -> dict:
    """||g(w) - g(w - eta g)|| for each step size in ``etas``: {'etas', 'gradient_change',
    'max'}.  How well the gradient here predicts the gradient after the step (small: the
    gradient is predictive)."""
    r = along_gradient(model, loss_fn, x, y, etas)
    return {"etas": r["etas"], "gradient_change": r["gradient_change"],
            "max": float(np.max(r["gradient_change"]))}


def effective_beta_smoothness(model, loss_fn, x, y, etas) -> float:
    """max over eta in ``etas`` of ||g(w) - g(w - eta g)|| / ||eta g||: the largest change of
    the gradient per unit of distance moved along it (a local Lipschitz constant of the
    gradient; ||A g|| / ||g|| for a quadratic with Hessian A)."""
    return along_gradient(model, loss_fn, x, y, etas)["beta_smoothness"]
