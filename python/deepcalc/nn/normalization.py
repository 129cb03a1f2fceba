"""BatchNorm1d (with Santurkar et al.'s noisy variant) and LayerNorm modules."""
from __future__ import annotations

import numpy as np

from ..autodiff.batching import is_batched
from ..autodiff.graph import Tensor, in_transform
from ..autodiff.randomness import draw_tensor
from ..ops import cast, reshape
from ..creation import default_generator
from ..ops._convert import as_tensor
from . import _checks
from . import functional as F
from .module import Module, Parameter


class BatchNorm1d(Module):
    """Batch normalization over (N, C) or (N, C, L) inputs, as torch.nn.BatchNorm1d.

    Training mode uses the batch mean and biased variance and updates ``running_mean`` and the
    unbiased ``running_var`` with ``momentum``; eval mode uses the running statistics.  The
    running statistics are not updated while a function transform (dc.grad, dc.jacrev,
    dc.hessian, dc.hvp, dc.jvp, ...) evaluates the layer, so derivatives of a training-mode
    network leave the module's state as it was.

    ``noise`` turns on the "noisy BatchNorm" of Santurkar et al. (2018, "How does batch
    normalization help optimization?", section 2.1): after normalization (and the affine map)
    each activation gets additive noise  m_c + s_c * z  with z ~ N(0, 1) i.i.d. per element,
    where per feature c the mean m_c ~ U(-noise_mean, noise_mean) and the standard deviation
    s_c ~ U(noise_std_min, noise_std_max) are redrawn at every training step, so the
    distribution feeding the next layer shifts from step to step (internal covariate shift by
    construction).  Draws come from ``generator`` (default: deepcalc's seeded generator).
    ``last_noise`` holds the (m, s) of the latest step.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32,
                 noise: bool = False, noise_mean: float = 0.5, noise_std_min: float = 1.0,
                 noise_std_max: float = 2.0, generator=None):
        super().__init__()
        num_features = _checks.integer("BatchNorm1d", "num_features", num_features)
        eps = _checks.real("BatchNorm1d", "eps", eps, 0.0)
        if momentum is not None:
            momentum = _checks.probability("BatchNorm1d", "momentum (a float or None)", momentum)
        dtype = _checks.float_dtype("BatchNorm1d", dtype)
        if noise:
            noise_mean = _checks.real("BatchNorm1d", "noise_mean", noise_mean, 0.0)
            noise_std_min = _checks.real("BatchNorm1d", "noise_std_min", noise_std_min, 0.0)
            noise_std_max = _checks.real("BatchNorm1d", "noise_std_max", noise_std_max,
                                         noise_std_min)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
        self.noise, self.generator = noise, generator
        self.noise_mean, self.noise_std = noise_mean, (noise_std_min, noise_std_max)
        self.last_noise = None

    def forward(self, x):
        bufs, params = self._buffers, self._parameters  # one lookup each (hot path)
        ref = "weight" if self.affine else "running_mean"
        ref_t = params["weight"] if self.affine else bufs["running_mean"]
        if not isinstance(x, Tensor):
            x = as_tensor(x, ref_t, "BatchNorm1d")
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d: expected input (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L), got {tuple(x.shape)}")
        if ref_t is not None and x.dtype != ref_t.dtype:
            raise F.mixed_dtypes("BatchNorm1d", "input", x.dtype, ref, ref_t.dtype)
        track, training = self.track_running_stats, self.training
        if training and track and is_batched(x):
            raise RuntimeError(
                "BatchNorm1d: in training mode under vmap the batch statistics would be taken "
                "over each mapped slice, and the running statistics cannot take one update per "
                "slice; use eval mode (module.eval()), or track_running_stats=False to "
                "normalize each slice by its own statistics")
        momentum = self.momentum
        if training and track and not in_transform():
            nbt = bufs["num_batches_tracked"].data
            nbt[...] += 1
            if momentum is None:  # torch: a cumulative moving average of the batch statistics
                momentum = 1.0 / float(nbt)
        y = F.batch_norm(x, bufs["running_mean"] if track else None,
                         bufs["running_var"] if track else None,
                         params["weight"], params["bias"], training or not track,
                         0.0 if momentum is None else momentum, self.eps)
        if self.noise and self.training:
            y = y + self._noise(x.shape, x.dtype)
        return y

    def _noise(self, shape, dtype):
        g = self.generator or default_generator()
        c = self.num_features

        def sample(lead):
            return (g.uniform(-self.noise_mean, self.noise_mean, lead + (c,)),
                    g.uniform(self.noise_std[0], self.noise_std[1], lead + (c,)),
                    g.standard_normal(lead + tuple(shape)))
        # replayed under randomness='same'; drawn per slice under vmap's 'different'
        m, s, z = draw_tensor("BatchNorm1d (noise=True)", sample)
        self.last_noise = (m, s) if is_batched(m) else (m.data, s.data)
        bshape = (1, c) if len(shape) == 2 else (1, c, 1)
        return cast(reshape(m, bshape) + reshape(s, bshape) * z, np.dtype(dtype))

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}"
                + (", noise=True" if self.noise else ""))


class LayerNorm(Module):
    """Layer normalization over the last axis (size ``normalized_shape``), as torch.nn.LayerNorm."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5, elementwise_affine: bool = True,
                 dtype=np.float32):
        super().__init__()
        if isinstance(normalized_shape, (tuple, list)):
            shape = tuple(normalized_shape)
            if len(shape) != 1:
                raise ValueError(f"LayerNorm: deepcalc normalizes over the last axis only; got "
                                 f"normalized_shape {shape}")
            normalized_shape = shape[0]
        normalized_shape = _checks.integer("LayerNorm", "normalized_shape", normalized_shape)
        dtype = _checks.float_dtype("LayerNorm", dtype)
        self.normalized_shape = normalized_shape
        self.eps = _checks.real("LayerNorm", "eps", eps, 0.0)
        if elementwise_affine:
            self.weight = Parameter(np.ones(normalized_shape, dtype))
            self.bias = Parameter(np.zeros(normalized_shape, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"
