"""Gradients as products of Jacobians: the singular values of a network's input-output Jacobian
and of each layer's (``jacobian_spectrum``), and how d h_T / d h_t of a recurrent network
shrinks or grows with T - t (``rnn_gradient_norms``).

The backward pass multiplies the output gradient by every layer's Jacobian transposed, so
dL/dx = J_1^T ... J_L^T dL/dy: singular values of the product far below 1 make gradients
vanish, far above 1 explode; a product whose singular values are all 1 (an isometry) passes
them through unchanged.  For an RNN, d h_T / d h_t = prod_{s=t+1..T} diag(act'(z_s)) W, which
for the linear RNN is W^(T-t): its norm follows W's eigenvalues."""
from __future__ import annotations

import numpy as np

from ..autodiff.engine import grad as autograd_grad
from ..autodiff.graph import Tensor, no_grad
from ..func import jacrev
from ..nn.mlp import MLP
from ..nn.module import Module, Sequential
from ..nn.normalization import BatchNorm1d
from ..ops._convert import as_tensor
from ._common import Frozen


def _batch(op, model, x) -> Tensor:
    ref = next(model.parameters(), None)
    x = as_tensor(x, ref, op)
    if x.ndim == 1:
        x = x.reshape(1, x.shape[0])
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{op}: x must be one example (features,) or a batch (N, features) with "
                         f"N >= 1, got shape {tuple(x.shape)}")
    return x


def _couples_examples(layers) -> bool:
    """Whether an example's output depends on the other examples (BatchNorm in training mode)."""
    return any(isinstance(m, BatchNorm1d) and (m.training or not m.track_running_stats)
               for layer in layers for m in layer.modules())


def _example_jacobian(fn, a: Tensor, i: int, coupled: bool) -> np.ndarray:
    """d fn(a)[i] / d a[i] as a (out_features, in_features) float64 array: the Jacobian of
    example i's output in its own input, the other examples held fixed (they matter only
    through BatchNorm's batch statistics, and only then is the whole batch evaluated)."""
    if coupled:
        J = jacrev(lambda z: fn(z)[i])(a).data          # (out, N, in)
        return np.asarray(J[:, i, :], np.float64)
    J = jacrev(lambda z: fn(z)[0])(a[i:i + 1]).data    # (out, 1, in)
    return np.asarray(J[:, 0, :], np.float64)


def _singular_values(J: np.ndarray) -> np.ndarray:
    """Descending singular values; all NaN when J holds NaN or Inf (an overflowed network has
    no spectrum to report, and the NaN says so)."""
    if not np.isfinite(J).all():
        return np.full(min(J.shape), np.nan)
    return np.linalg.svd(J, compute_uv=False)


def _default_layers(op, model):
    if isinstance(model, (Sequential, MLP)):
        return list(model.named_children())
    raise TypeError(f"{op}: cannot split a {type(model).__name__} into layers; pass layers=[...] "
                    "(the modules applied in sequence), or layers=[] for the input-output "
                    "Jacobian only")


def jacobian_spectrum(model, x, layers=None, examples: int = 4) -> dict:
    """Singular values of the input-output Jacobian d f(x_i) / d x_i, and of each layer's
    Jacobian d a_l / d a_{l-1} at the same examples, for the first ``examples`` rows of ``x``.

    ``layers``: None (the children of a Sequential or MLP, applied in order), a list of modules
    or of (name, module) pairs whose composition is the model (checked), or [] to skip them.
    With BatchNorm in training mode an example's Jacobian holds the other examples of the batch
    fixed.  The model (parameters, running statistics, random generators) is left unchanged.

    Returns {'singular_values': (E, k) array, descending, of the full Jacobian;
    'layers': {name: (E, k_l) array}; 'isometry_gap': the mean over examples of
    sqrt(mean(log(s)^2)) of the full Jacobian (0 for an isometry; inf if a singular value is 0);
    'log10_max', 'log10_min': of the full Jacobian's singular values, averaged over examples}.
    An example whose Jacobian is not finite (the network overflowed) has NaN singular values."""
    op = "jacobian_spectrum"
    if not isinstance(model, Module):
        raise TypeError(f"{op}: model must be a dc.nn.Module, got {type(model).__name__}")
    x = _batch(op, model, x)
    if isinstance(examples, bool) or not isinstance(examples, (int, np.integer)) or examples < 1:
        raise ValueError(f"{op}: examples must be an integer >= 1, got {examples!r}")
    if layers is None:
        layers = _default_layers(op, model)
    layers = [(l if isinstance(l, tuple) else (f"{i}:{type(l).__name__}", l))
              for i, l in enumerate(layers)]
    coupled = _couples_examples([model])
    E = min(int(examples), x.shape[0])
    frozen = Frozen(model)
    try:
        full = [_singular_values(_example_jacobian(model, x, i, coupled)) for i in range(E)]
        per_layer = {}
        if layers:
            frozen.reset()
            acts = [x]
            with no_grad():
                for _, m in layers:
                    acts.append(m(acts[-1]))
                frozen.reset()
                out = model(x)
            if acts[-1].shape != out.shape or not np.allclose(acts[-1].data, out.data,
                                                              rtol=1e-4, atol=1e-5):
                raise ValueError(f"{op}: applying the layers {[n for n, _ in layers]} in order "
                                 "does not give the model's output; pass the modules the model "
                                 "applies, in order")
            for (name, m), a in zip(layers, acts[:-1]):
                frozen.reset()
                per_layer[name] = np.stack([_singular_values(_example_jacobian(m, a, i, coupled))
                                            for i in range(E)])
    finally:
        frozen.restore()
    s = np.stack(full)
    with np.errstate(divide="ignore"):
        logs = np.log(s)
    gap = float(np.mean(np.sqrt(np.mean(logs ** 2, axis=1))))
    return {"singular_values": s, "layers": per_layer, "isometry_gap": gap,
            "log10_max": float(np.mean(logs[:, 0]) / np.log(10)),
            "log10_min": float(np.mean(logs[:, -1]) / np.log(10))}


def rnn_gradient_norms(model, x, h0=None, cotangent=None, reduction: str = "mean"):
    """||d h_T / d h_t|| for t = 0 .. T (h_0 the initial state, h_T the last one) of a recurrent
    module ``model(x, h0) -> (output, h_n)`` such as ``dc.nn.RNN`` (the state is h_n, all
    layers); x is (T, N, in), or (N, T, in) for a ``batch_first`` model.

    ``cotangent`` None: the spectral norm of the Jacobian, per example (one backward pass per
    state coordinate).  ``cotangent`` u (a vector of the state's size per example, or the
    state's shape): the norm of u^T d h_T / d h_t, the gradient that a loss with dL/dh_T = u
    sends back to h_t (one backward pass).  ``reduction``: 'mean' over the batch, giving (T+1,),
    or 'none', giving (T+1, N).  The model is evaluated step by step (T calls of one step) so
    that every h_t is an input the gradient can be taken at."""
    op = "rnn_gradient_norms"
    if not isinstance(model, Module):
        raise TypeError(f"{op}: model must be a dc.nn.Module, got {type(model).__name__}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"{op}: reduction must be 'mean' or 'none', got {reduction!r}")
    ref = next(model.parameters(), None)
    x = as_tensor(x, ref, op)
    if x.ndim != 3:
        raise ValueError(f"{op}: x must be a batch of sequences (T, N, in) (or (N, T, in) with "
                         f"batch_first), got shape {tuple(x.shape)}")
    batch_first = bool(getattr(model, "batch_first", False))
    T = x.shape[1] if batch_first else x.shape[0]
    if T == 0:
        raise ValueError(f"{op}: the sequence is empty (T = 0)")
    if h0 is None:
        with no_grad():
            _, probe = model(x[:, :1] if batch_first else x[:1])
        h = Tensor(np.zeros_like(probe.data))
    else:
        h = as_tensor(h0, ref, op)
    deltas = []
    for t in range(T + 1):
        d = Tensor(np.zeros_like(h.data), requires_grad=True)   # h_t + 0: dL/dd_t = dL/dh_t
        deltas.append(d)
        h = h + d
        if t < T:
            _, h = model(x[:, t:t + 1] if batch_first else x[t:t + 1], h)
    shape = h.shape                      # (layers, N, H) for dc.nn.RNN
    N = shape[1] if len(shape) == 3 else shape[0]
    state = int(np.prod(shape)) // N

    def per_example(g: np.ndarray) -> np.ndarray:   # (layers, N, H) -> (N, layers H)
        return np.moveaxis(g, -2, 0).reshape(N, state) if len(shape) == 3 else \
            g.reshape(N, state)

    def from_example(u: np.ndarray) -> np.ndarray:  # inverse of per_example
        if len(shape) == 3:
            return np.moveaxis(u.reshape(N, shape[0], shape[2]), 0, -2)
        return u.reshape(shape)

    if cotangent is not None:
        u = np.asarray(getattr(cotangent, "data", cotangent), h.dtype)
        if u.shape == (state,):
            u = np.broadcast_to(u, (N, state))
        elif u.shape == shape:
            u = per_example(u)
        elif u.shape != (N, state):
            raise ValueError(f"{op}: cotangent must have the state's size {state} per example "
                             f"(shape ({state},), ({N}, {state}) or {shape}), got {u.shape}")
        grads = autograd_grad(h, deltas, grad_outputs=Tensor(np.ascontiguousarray(
            from_example(u))), allow_unused=True)
        norms = np.stack([np.linalg.norm(per_example(_dense(g, d)), axis=1)
                          for g, d in zip(grads, deltas)])
    else:
        rows = [[] for _ in deltas]       # rows[t][k]: (N, state), row k of d h_T / d h_t
        for k in range(state):
            e = np.zeros((N, state), h.dtype)
            e[:, k] = 1
            grads = autograd_grad(h, deltas, grad_outputs=Tensor(np.ascontiguousarray(
                from_example(e))), retain_graph=True, allow_unused=True)
            for t, (g, d) in enumerate(zip(grads, deltas)):
                rows[t].append(per_example(_dense(g, d)))
        norms = np.stack([np.linalg.norm(np.stack(r, axis=1).astype(np.float64), ord=2,
                                         axis=(1, 2)) for r in rows])
    return norms.mean(axis=1) if reduction == "mean" else norms


def _dense(g, like: Tensor) -> np.ndarray:
    return np.zeros_like(like.data) if g is None else np.asarray(g.data)
