"""Optimizers (torch.optim idiom), learning-rate schedulers and gradient clipping."""
from . import lr_scheduler
from .adam import Adam, AdamW
from .clip_grad import clip_grad_norm_, clip_grad_value_
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler", "clip_grad_norm_",
           "clip_grad_value_"]
