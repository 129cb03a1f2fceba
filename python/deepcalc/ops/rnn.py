"""The Elman recurrence over a whole sequence as one primitive, and its backward through time as
another, so a training step runs two tight loops of native GEMMs instead of T small ops each
way.  With p_t the input projection (x_t W_ih^T + biases, computed outside by one GEMM),

    forward:   z_t = p_t + h_{t-1} W^T,  h_t = act(z_t)                    t = 0 .. T-1
    backward:  dz_t = (g_t + dh_t) * act'(z_t),  dh_{t-1} = dz_t W,  dh_T = 0
               dp_t = dz_t,  dh0 = dh_{-1},  dW = sum_t dz_t^T h_{t-1}

act is tanh, relu or identity; act'(z_t) is read from h_t (1 - h_t^2, [h_t > 0], 1).  The
forward's JVP is the tangent recurrence t_h_t = act'(z_t) (t_p_t + t_h_{t-1} W^T + h_{t-1} t_W^T)
in ops; the backward's rules are those of the same loop written in ops (``_backward_composite``),
so every order is exact (``create_graph``, ``hvp``, ``jvp`` of gradients)."""
from __future__ import annotations

import numpy as np

from ..autodiff.composite import composite_jvp, composite_vjp
from ..autodiff.batching import constant
from ..autodiff.graph import Primitive, apply
from .linalg import gemm, matmul
from .shape import concatenate, expand_dims, getitem, materialize, reshape, stack, transpose

NONLINEARITIES = ("tanh", "relu", "identity")


def _act_derivative_array(hs: np.ndarray, nonlinearity: str):
    """act'(z) from h = act(z), as an array (None for identity: act' = 1)."""
    if nonlinearity == "tanh":
        d = np.multiply(hs, hs)
        return np.subtract(1, d, out=d)
    if nonlinearity == "relu":
        return (hs > 0).astype(hs.dtype)
    return None


def _act_derivative(hs, nonlinearity: str):
    """act'(z) from h = act(z), as ops (relu's mask is a constant; None for identity)."""
    if nonlinearity == "tanh":
        return 1 - hs * hs
    if nonlinearity == "relu":
        return constant(lambda h: (h > 0).astype(h.dtype), hs)
    return None


class RNNSequence(Primitive):
    """(p (T, N, H), h0 (N, H), W (H, H)) -> hs (T, N, H), every hidden state."""
    name = "rnn_sequence"

    def batch(self, info, proj, h0, w, *, nonlinearity):
        """Slices with a shared W are more rows of one recurrence: (B, T, N, H) runs as
        (T, B*N, H).  A batched W: ``decompose``."""
        if info.batched[2]:
            return NotImplemented
        size, T, N, H = (info.size,) + (proj.shape[1:] if info.batched[0] else proj.shape)
        p = transpose(materialize(proj, info.batched[0], size), (1, 0, 2, 3))
        h = materialize(h0, info.batched[1], size)
        hs = apply(self, (reshape(p, (T, size * N, H)), reshape(h, (size * N, H)), w),
                   {"nonlinearity": nonlinearity})
        return transpose(reshape(hs, (T, size, N, H)), (1, 0, 2, 3))

    def decompose(self, proj, h0, w, *, nonlinearity):
        """The recurrence as deepcalc ops, one step at a time."""
        from .elementwise import relu, tanh
        act = {"tanh": tanh, "relu": relu, "identity": lambda v: v}[nonlinearity]
        h, out = h0, []
        for t in range(proj.shape[0]):
            h = act(getitem(proj, t) + matmul(h, transpose(w)))
            out.append(h)
        return stack(out, axis=0)

    def forward(self, proj, h0, w, *, nonlinearity):
        T = proj.shape[0]
        hs = np.empty(proj.shape, proj.dtype)
        w = np.ascontiguousarray(w)
        h = np.ascontiguousarray(h0)
        for t in range(T):
            z = gemm(h, w, trans_b=True)          # (N, H) = h_{t-1} W^T
            z += proj[t]
            if nonlinearity == "tanh":
                np.tanh(z, out=hs[t])
            elif nonlinearity == "relu":
                np.maximum(z, 0, out=hs[t])
            else:
                hs[t] = z
            h = hs[t]
        return hs

    def vjp(self, ctx, g):
        proj, h0, w = ctx.inputs
        dproj, dh0, dw = apply(_rnn_sequence_backward, (g, ctx.out, h0, w), ctx.params)
        return (dproj if proj.requires_grad else None, dh0 if h0.requires_grad else None,
                dw if w.requires_grad else None)

    def jvp(self, ctx, t_proj, t_h0, t_w):
        proj, h0, w = ctx.inputs
        hs = ctx.out
        T = proj.shape[0]
        u = t_proj
        if t_w is not None:   # h_{t-1} t_W^T for every step in one GEMM
            prev = _previous_states(hs, h0)
            term = reshape(matmul(reshape(prev, (-1, prev.shape[-1])), transpose(t_w)), hs.shape)
            u = term if u is None else u + term
        a = _act_derivative(hs, ctx.params["nonlinearity"])
        th, out = t_h0, []   # t_proj and t_w both None means t_h0 is not: z is never None
        for t in range(T):
            z = getitem(u, t) if u is not None else None
            if th is not None:
                rec = matmul(th, transpose(w))
                z = rec if z is None else z + rec
            th = z if a is None else getitem(a, t) * z
            out.append(th)
        return stack(out, axis=0)


def _previous_states(hs, h0):
    """(h_{-1} = h0, h_0, ..., h_{T-2}) stacked: the state each step multiplies by W."""
    if hs.shape[0] == 1:
        return expand_dims(h0, 0)
    return concatenate([expand_dims(h0, 0), getitem(hs, slice(0, hs.shape[0] - 1))], axis=0)


def _backward_composite(nonlinearity):
    """The backward loop in ops: (g, hs, h0, W) -> (dp, dh0, dW), differentiable in all four."""
    def backward(g, hs, h0, w):
        T = hs.shape[0]
        a = _act_derivative(hs, nonlinearity)
        dh, dzs = None, [None] * T
        for t in range(T - 1, -1, -1):
            gt = getitem(g, t)
            s = gt if dh is None else gt + dh
            dz = s if a is None else s * getitem(a, t)
            dzs[t] = dz
            dh = matmul(dz, w)
        dproj = stack(dzs, axis=0)
        prev = _previous_states(hs, h0)
        H = hs.shape[-1]
        dw = matmul(transpose(reshape(dproj, (-1, H))), reshape(prev, (-1, H)))
        return dproj, dh, dw
    return backward


class RNNSequenceBackward(Primitive):
    """(g (T, N, H), hs, h0, W) -> (dp (T, N, H), dh0 (N, H), dW (H, H)): backpropagation
    through time of ``RNNSequence`` for the cotangent g of every hidden state."""
    name = "rnn_sequence_backward"
    multiple_results = True

    def decompose(self, g, hs, h0, w, *, nonlinearity):
        """Under vmap: the loop in ops (every slice gets its own dW)."""
        return tuple(_backward_composite(nonlinearity)(g, hs, h0, w))

    def forward(self, g, hs, h0, w, *, nonlinearity):
        T, N, H = hs.shape
        w = np.ascontiguousarray(w)
        a = _act_derivative_array(hs, nonlinearity)
        dproj = np.empty(hs.shape, hs.dtype)
        dh = None
        for t in range(T - 1, -1, -1):
            dz = dproj[t]
            if dh is None:
                dz[...] = g[t]
            else:
                np.add(g[t], dh, out=dz)
            if a is not None:
                dz *= a[t]
            dh = gemm(dz, w)                      # (N, H) = dz_t W
        # dW = dz_0^T h0 + sum_{t >= 1} dz_t^T h_{t-1}
        dw = gemm(np.ascontiguousarray(h0), dproj[0], trans_a=True).T
        if T > 1:
            dw = dw + gemm(dproj[1:].reshape(-1, H), hs[:-1].reshape(-1, H), trans_a=True)
        return dproj, dh, np.ascontiguousarray(dw)

    def vjp(self, ctx, *cotangents):
        return composite_vjp(_backward_composite(ctx.params["nonlinearity"]), ctx, cotangents)

    def jvp(self, ctx, *tangents):
        return composite_jvp(_backward_composite(ctx.params["nonlinearity"]), ctx, tangents)


_rnn_sequence = RNNSequence()
_rnn_sequence_backward = RNNSequenceBackward()


def rnn_sequence(proj, h0, w, nonlinearity: str):
    """Every hidden state h_t = act(p_t + h_{t-1} W^T) of one layer, t = 0 .. T-1.

    proj (T, N, H): the input projections with the biases; h0 (N, H); w (H, H).  Shapes and
    dtypes are checked here, with the op's name."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"rnn_sequence: nonlinearity must be one of {NONLINEARITIES}, got "
                         f"{nonlinearity!r}")
    if proj.ndim != 3 or h0.ndim != 2 or w.ndim != 2:
        raise ValueError(f"rnn_sequence: expected proj (T, N, H), h0 (N, H) and w (H, H), got "
                         f"shapes {proj.shape}, {h0.shape} and {w.shape}")
    T, N, H = proj.shape
    if T == 0 or h0.shape != (N, H) or w.shape != (H, H):
        raise ValueError(f"rnn_sequence: expected proj (T >= 1, N, H), h0 (N, H) and w (H, H) of "
                         f"one N and H, got shapes {proj.shape}, {h0.shape} and {w.shape}")
    if not (proj.dtype == h0.dtype == w.dtype) or proj.dtype.kind != "f":
        raise TypeError(f"rnn_sequence: proj, h0 and w must share one float dtype, got "
                        f"{proj.dtype}, {h0.dtype} and {w.dtype}")
    return apply(_rnn_sequence, (proj, h0, w), {"nonlinearity": nonlinearity})
