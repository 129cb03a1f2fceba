"""Diagnostics of training (``dc.diagnose``): why gradients vanish and explode, and what
BatchNorm does to the loss landscape.

* ``GradientMonitor``: per layer and per step, gradient norm, weight norm, update-to-weight
  ratio, activation mean / std and dead-ReLU fraction (a ``fit`` callback or a context manager);
* ``jacobian_spectrum``: singular values of the input-output Jacobian and of each layer's;
* ``rnn_gradient_norms``: ||d h_T / d h_t|| of a recurrent module for every t;
* Santurkar et al. (2018): ``internal_covariate_shift``, ``loss_landscape``,
  ``gradient_predictiveness``, ``effective_beta_smoothness`` (and ``along_gradient``, all three
  from one set of evaluations);
* ``plot``: figures of the above (matplotlib, imported when a figure is drawn).
"""
from . import plot
from .monitor import GradientMonitor
from .smoothness import (along_gradient, effective_beta_smoothness, gradient_predictiveness,
                         internal_covariate_shift, loss_landscape)
from .spectrum import jacobian_spectrum, rnn_gradient_norms

__all__ = ["GradientMonitor", "jacobian_spectrum", "rnn_gradient_norms",
           "internal_covariate_shift", "loss_landscape", "gradient_predictiveness",
           "effective_beta_smoothness", "along_gradient", "plot"]
