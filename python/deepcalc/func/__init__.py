"""Function transforms (``dc.vmap``, ``dc.grad``, ``dc.vjp``, ``dc.jvp``, ``dc.jacrev``, ``dc.jacfwd``,
``dc.hessian``, ``dc.hvp``, ...) and ``functional_call``: the layer above the ops, below the
user API."""
from .functional import functional_call
from .transforms import (grad, hessian, hvp, jacfwd, jacobian_logdet, jacrev, jvp,
                         value_and_grad, vjp)
from .vmap import vmap

__all__ = ["functional_call", "vmap", "grad", "value_and_grad", "vjp", "jvp", "jacrev", "jacfwd",
           "hessian", "hvp", "jacobian_logdet"]
