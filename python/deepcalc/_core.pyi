"""Type stub for deepcalc._core, the native kernels (cpp/bindings/).  Every function validates
its arguments (dtype float32/float64, never mixed; shapes; C-contiguity or row-major layout; an
output or in-place state never overlapping another argument), raises TypeError/ValueError naming
the op and the shapes otherwise, and releases the GIL.  Empty inputs give empty results (NumPy's
shapes); NaN and +-inf propagate on every CPU path exactly as through the scalar reference."""
from __future__ import annotations

import numpy as np

# --- runtime and threads -------------------------------------------------------------------
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def cpu_capability() -> str: ...            # 'scalar' | 'avx2' | 'avx512' (after the override)
def cpu_detected_capability() -> str: ...   # what cpuid + XGETBV allow
def cpu_capability_error() -> str: ...      # '' unless DEEPCALC_CPU_CAPABILITY was invalid

# Output-buffer cache (common/host_cache.h): outputs >= 256 KiB reuse freed blocks.
def host_cache_empty() -> None: ...
def host_cache_set_limit(bytes: int) -> None: ...
def host_cache_stats() -> dict[str, int]: ...

# --- GEMM (cpp/gemm) -----------------------------------------------------------------------
def gemm(a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False,
         alpha: float = 1.0, beta: float = 0.0, out: np.ndarray | None = None) -> np.ndarray:
    """alpha * op(a) @ op(b) + beta * out; 2-D or 3-D (batched; a 2-D operand or a batch of 1
    broadcasts, 1 with 0 gives 0); operands row-major with unit stride in the last axis; beta == 0
    does not read out."""
def linear_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None,
                   activation: str = "none", save_preactivation: bool = False
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """(act(x @ w.T + bias), preactivation or None); x (N, IN), w (OUT, IN)."""
def linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, saved: np.ndarray | None = None,
                    activation: str = "none", need_dx: bool = True, need_dw: bool = True,
                    need_db: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(dx, dw, db); saved is the output y for relu/tanh/sigmoid, the preactivation for gelu."""
def activation_backward(dy: np.ndarray, saved: np.ndarray | None, activation: str) -> np.ndarray:
    """dy * act'(saved); relu'(y) = [y > 0], NaN for NaN y (so NaN in dy or saved gives NaN)."""

# --- softmax (cpp/softmax), special functions (cpp/special) ----------------------------------
def softmax_forward(x: np.ndarray, log: bool = False) -> np.ndarray: ...
def softmax_backward(y: np.ndarray, dy: np.ndarray, log: bool = False) -> np.ndarray: ...
def erf(x: np.ndarray) -> np.ndarray: ...

# --- normalization (cpp/norm) ----------------------------------------------------------------
def batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None,
                            eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, invstd) for x (N, C) or (N, C, L), statistics per channel."""
def batchnorm_update_running(running_mean: np.ndarray, running_var: np.ndarray, mean: np.ndarray,
                             invstd: np.ndarray, count: int, momentum: float, eps: float) -> None: ...
def batchnorm_forward_eval(x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray,
                           gamma: np.ndarray | None, beta: np.ndarray | None,
                           eps: float) -> np.ndarray: ...
def batchnorm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, invstd: np.ndarray,
                       gamma: np.ndarray | None
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]: ...
def layernorm_forward(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None,
                      eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, invstd) normalizing over the last axis; mean/invstd shaped x.shape[:-1]
    (a last axis of size 0 gives mean 0 and invstd NaN, as torch)."""
def layernorm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, invstd: np.ndarray,
                       gamma: np.ndarray | None
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]: ...
# Forward-mode tangents (batch: BatchNorm x (N, C) or (N, C, L), statistics per channel over N
# and L; else LayerNorm over the last axis, mean/invstd x.shape[:-1]). Per group of M values,
# xhat = (x - mean) invstd, avg over the group, sumP over gamma's other axes; gamma None means 1,
# a None tangent is zero:
#   r = avg(xhat t_x),  t_xhat = invstd (t_x - avg(t_x) - xhat r)
#   forward:  t_y = gamma t_xhat + xhat t_gamma + t_beta
#   backward: h = gamma dy, th = gamma t_dy + t_gamma dy, m1 = avg(h xhat),
#     dx = invstd (h - avg(h) - xhat m1),
#     t_dx = -invstd r dx + invstd (th - avg(th) - t_xhat m1 - xhat (avg(th xhat) + avg(h t_xhat))),
#     t_dgamma = sumP(t_dy xhat + dy t_xhat), t_dbeta = sumP(t_dy)   (None when gamma is None).
def norm_forward_jvp(x: np.ndarray, mean: np.ndarray, invstd: np.ndarray, gamma: np.ndarray | None,
                     t_x: np.ndarray | None, t_gamma: np.ndarray | None, t_beta: np.ndarray | None,
                     batch: bool) -> np.ndarray: ...
def norm_backward_jvp(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, invstd: np.ndarray,
                      gamma: np.ndarray | None, t_dy: np.ndarray | None, t_x: np.ndarray | None,
                      t_gamma: np.ndarray | None, batch: bool
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]: ...

# --- fused optimizer steps (cpp/optim), in place ---------------------------------------------
def adam_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
              lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, step: int,
              decoupled_weight_decay: bool, max_exp_avg_sq: np.ndarray | None = None) -> None: ...
def sgd_step(param: np.ndarray, grad: np.ndarray, momentum_buffer: np.ndarray | None, lr: float,
             momentum: float, dampening: float, weight_decay: float, nesterov: bool,
             first_step: bool) -> None: ...

# --- all-pairs discounted reachability (cpp/impact) ------------------------------------------
# R(x; y) = max over policies of E[gamma^N(x -> y)]: R(y; y) = 1, R(x; y) = gamma max_a
# sum_z P(z | x, a) R(z; y). Deterministic: BFS per source, gamma^d (0 if unreachable).
def reach_deterministic(next: np.ndarray, gamma: float, dtype: np.dtype) -> np.ndarray:
    """(S, S) reachabilities of next (S, A) int64 (entries in [0, S)), as dtype (float32/64)."""
def reach_stochastic(indptr: np.ndarray, indices: np.ndarray, probs: np.ndarray, S: int, A: int,
                     gamma: float, tol: float, max_iter: int, dtype: np.dtype
                     ) -> tuple[np.ndarray, int, float]:
    """(R, iterations, residual) by value iteration from R = I; CSR rows x * A + a (indptr
    (S*A+1,) int64, indices int64, probs float64 summing to 1 per row)."""

# --- fused Jacobian penalty of an MLP (cpp/jacobian) -----------------------------------------
# Layers h_l = act_l(h_{l-1} W_l^T + b_l), h_0 = x (B, IN); v (n_proj * B, C), row p*B + i is
# projection p of sample i. u = v^T J (n_proj * B, IN), sq_i = sum_p ||u_{p*B+i}||^2,
# penalty = scale * sum_i sq_i; with grads, its gradient in every W_l and b_l (None for no bias).
# forward_outputs (layer l's output (B, d_l)) and forward_preacts (z of gelu layers, else None):
# the caller's forward at x, which the kernel then reuses instead of recomputing.
def jacobian_penalty(x: np.ndarray, v: np.ndarray, weights: list[np.ndarray],
                     biases: list[np.ndarray | None], activations: list[str], n_proj: int,
                     scale: float, grads: bool, forward_outputs: list[np.ndarray] | None = None,
                     forward_preacts: list[np.ndarray | None] | None = None
                     ) -> tuple[float, np.ndarray, np.ndarray, list[np.ndarray] | None,
                                list[np.ndarray | None] | None]: ...

# --- attention (cpp/attention) -----------------------------------------------------------------
# q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv), C-contiguous, one float dtype; mask 4-D,
# broadcastable to (B, H, Lq, Lk) with Lk contiguous values: bool (True = may attend) or additive.
def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None,
                      causal: bool = False, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]: ...
def attention_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray, o: np.ndarray, lse: np.ndarray,
                       dout: np.ndarray, mask: np.ndarray | None = None, causal: bool = False,
                       scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def attention_jvp(q: np.ndarray, k: np.ndarray, v: np.ndarray, o: np.ndarray, lse: np.ndarray,
                  tq: np.ndarray | None = None, tk: np.ndarray | None = None,
                  tv: np.ndarray | None = None, mask: np.ndarray | None = None,
                  causal: bool = False, scale: float = 1.0) -> np.ndarray: ...
