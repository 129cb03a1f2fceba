"""Regularizers that penalize a model's sensitivity to its input (``dc.regularize``)."""
from .jacobian import JacobianRegularizer, jacobian_norm_sq, mlp_chain

__all__ = ["jacobian_norm_sq", "JacobianRegularizer", "mlp_chain"]
