"""Curvature of the loss (``deepcalc.curvature``): Hessian, generalized Gauss-Newton and
empirical Fisher as matrix-free operators; their extreme eigenvalues (thick-restart Lanczos),
per-layer spectra, trace (Hutch++ / Hutchinson with confidence intervals), spectral density
(stochastic Lanczos quadrature), basin measures (sharpness, effective dimension, log-volume),
filter-normalized loss-landscape slices, and the empirical NTK Gram matrix.
"""
from .basin import basin_measures, effective_dimension, log_volume, sharpness
from .density import SpectralDensity, density, plot_density
from .landscape import LossSlice, filter_normalized_direction, loss_slice, plot_slice
from .lanczos import (block_spectra, bottom_eigenvalues, lanczos, layer_groups,
                      top_eigenvalues)
from .ntk import ntk_gram, output_jacobian
from .operators import CurvatureOperator, FisherOperator, GGNOperator, HessianOperator
from .trace import TraceEstimate, trace

__all__ = ["CurvatureOperator", "HessianOperator", "GGNOperator", "FisherOperator",
           "top_eigenvalues", "bottom_eigenvalues", "block_spectra", "layer_groups", "lanczos",
           "trace", "TraceEstimate", "density", "SpectralDensity", "plot_density",
           "sharpness", "effective_dimension", "log_volume", "basin_measures",
           "filter_normalized_direction", "loss_slice", "LossSlice", "plot_slice",
           "output_jacobian", "ntk_gram"]
