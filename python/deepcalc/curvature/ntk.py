"""The per-sample output Jacobian of a model and its Gram matrix, the empirical neural
tangent kernel K = J J^T (J = d f(x_i)_c / d theta, one row per sample and output).  Without
vmap the rows come from one VJP per output element after a single forward pass."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor, wrap
from ..func.functional import functional_call
from ..func.transforms import vjp
from .operators import _Space


def output_jacobian(model, x, params=None) -> np.ndarray:
    """J of shape (N * C, n_params) (float64), rows ordered sample-major (sample i, output c
    at row i * C + c), columns in the order of ``params`` (names; default every parameter)."""
    own = dict(model.named_parameters())
    names = list(own) if params is None else list(params)
    for k in names:
        if k not in own:
            raise ValueError(f"output_jacobian: unknown parameter {k!r}; the model has "
                             f"{list(own)}")
    variables = {k: own[k] for k in names}
    space = _Space(variables)
    x = x if isinstance(x, Tensor) else wrap(np.asarray(x))
    out, vjp_fn = vjp(lambda p: functional_call(model, p, x), variables)
    n_out = int(np.prod(out.shape))
    J = np.empty((n_out, space.size))
    basis = np.zeros(n_out, dtype=out.dtype)
    for i in range(n_out):
        basis[:] = 0
        basis[i] = 1
        (g,) = vjp_fn(wrap(basis.reshape(out.shape).copy()))
        J[i] = space.flatten(g, "output_jacobian")
    return J


def ntk_gram(model, x, params=None) -> np.ndarray:
    """The empirical NTK Gram matrix J J^T, (N * C, N * C), float64."""
    J = output_jacobian(model, x, params)
    return J @ J.T
