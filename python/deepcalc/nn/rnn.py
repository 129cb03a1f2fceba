"""The Elman RNN, h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), as torch.nn.RNN (same
signature, parameter names and initialization), trained by backpropagation through time.

Each layer is one input-projection GEMM over all time steps, then the recurrence as one
primitive (ops/rnn.py: the whole loop forward, and backpropagation through time as a primitive of
its own), so every derivative (``backward``, ``dc.grad``, ``dc.hvp``, ``dc.jvp``, ...) is exact
at any order."""
from __future__ import annotations


import numpy as np

from ..autodiff.graph import Tensor
from ..ops import stack
from ..ops.rnn import NONLINEARITIES, rnn_sequence
from ..ops._convert import as_tensor
from . import _checks
from . import functional as F
from . import init
from .module import Module, Parameter



class RNN(Module):
    """Multi-layer Elman RNN over a sequence x of shape (T, N, input_size), or (N, T, input_size)
    with ``batch_first``; an unbatched (T, input_size) input is accepted too, as in torch.

    ``nonlinearity`` is 'tanh', 'relu' or 'identity' (the linear RNN h_t = W h_{t-1} + ...).
    Parameters of layer k: ``weight_ih_l{k}`` (hidden, in), ``weight_hh_l{k}`` (hidden, hidden),
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (hidden,), all drawn U(-1/sqrt(hidden), 1/sqrt(hidden)) as
    torch does.  ``forward(x, h0=None)`` returns ``(output, h_n)``: output holds the last layer's
    h_t for every t, shaped like x with hidden_size features; h_n (num_layers, N, hidden) holds
    every layer's last state."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dtype=np.float32, generator=None):
        super().__init__()
        self.input_size = _checks.integer("RNN", "input_size", input_size)
        self.hidden_size = _checks.integer("RNN", "hidden_size", hidden_size)
        self.num_layers = _checks.integer("RNN", "num_layers", num_layers)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"RNN: nonlinearity must be one of {NONLINEARITIES}, got "
                             f"{nonlinearity!r}")
        dtype = _checks.float_dtype("RNN", dtype)
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, bool(bias), bool(batch_first)
        H = self.hidden_size
        for k in range(self.num_layers):
            fan = self.input_size if k == 0 else H
            # torch draws every RNN parameter U(-1/sqrt(hidden), 1/sqrt(hidden))
            setattr(self, f"weight_ih_l{k}", Parameter(init.torch_default((H, fan), H, dtype,
                                                                          generator)))
            setattr(self, f"weight_hh_l{k}", Parameter(init.torch_default((H, H), H, dtype,
                                                                          generator)))
            if self.bias:
                setattr(self, f"bias_ih_l{k}", Parameter(init.torch_default((H,), H, dtype,
                                                                            generator)))
                setattr(self, f"bias_hh_l{k}", Parameter(init.torch_default((H,), H, dtype,
                                                                            generator)))

    def layer_parameters(self, k: int):
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer k (biases None without bias)."""
        p = self._parameters
        return (p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], p.get(f"bias_ih_l{k}"),
                p.get(f"bias_hh_l{k}"))

    def _check_input(self, x, h0):
        ref = self._parameters["weight_ih_l0"]
        x = as_tensor(x, ref, "RNN")
        if x.dtype != ref.dtype:
            raise F.mixed_dtypes("RNN", "input", x.dtype, "weight_ih_l0", ref.dtype)
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
            raise ValueError(f"RNN: expected input {layout} or (T, input_size) with input_size "
                             f"{self.input_size}, got shape {tuple(x.shape)}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x.reshape(x.shape[0], 1, x.shape[1])
        elif self.batch_first:
            x = x.swapaxes(0, 1)
        N = x.shape[1]
        want = (self.num_layers, N, self.hidden_size)
        if h0 is not None:
            h0 = as_tensor(h0, ref, "RNN")
            if h0.dtype != ref.dtype:
                raise F.mixed_dtypes("RNN", "h0", h0.dtype, "weight_ih_l0", ref.dtype)
            if unbatched and h0.shape == (self.num_layers, self.hidden_size):
                h0 = h0.reshape(want)
            if h0.shape != want:
                raise ValueError(f"RNN: h0 must have shape {want} (num_layers, N, hidden_size), "
                                 f"got {tuple(h0.shape)}")
        return x, h0, unbatched

    def forward(self, x, h0=None):
        x, h0, unbatched = self._check_input(x, h0)
        T, N = x.shape[0], x.shape[1]
        if T == 0:
            raise ValueError("RNN: the sequence is empty (T = 0)")
        H = self.hidden_size
        last = []
        for k in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_parameters(k)
            b = b_ih + b_hh if self.bias else None
            # the input projection of every time step in one GEMM: (T N, in) -> (T, N, H)
            proj = F.linear(x.reshape(T * N, x.shape[-1]), w_ih, b).reshape(T, N, H)
            h0k = h0[k] if h0 is not None else Tensor(np.zeros((N, H), proj.dtype))
            x = rnn_sequence(proj, h0k, w_hh, self.nonlinearity)
            last.append(x[T - 1])
        h_n = stack(last, axis=0)
        if unbatched:
            return x.reshape(T, H), h_n.reshape(self.num_layers, H)
        return (x.swapaxes(0, 1) if self.batch_first else x), h_n

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"nonlinearity={self.nonlinearity!r}, bias={self.bias}, "
                f"batch_first={self.batch_first}")
