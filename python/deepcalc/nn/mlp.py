"""The multilayer perceptron as composed functions: f1 = W1 x + b1, a1 = act(f1), ...,
with the parametrizations studied in the literature and an explicit, readable backprop.

``MLP.backprop`` is the hand-derived delta recursion (no autodiff), kept next to the model so
the two can be compared (tests check they agree):

    delta_L     = dC/dy_hat * a_L'(z_L)
    delta_{l-1} = (delta_l W_l) * a'(z_{l-1})          (W_l is (out, in), batch rows)
    dC/dW_l     = delta_l^T a_{l-1}                    dC/db_l = sum over the batch of delta_l
"""
from __future__ import annotations

import math

import numpy as np

from ..ops import erf
from . import _checks
from . import functional as F
from . import init as winit
from .layers import Linear
from .module import Module

INITS = ("torch", "standard_normal", "xavier", "he", "ntk", "mup")


def _act_and_derivative(name, z):
    """(a(z), a'(z)) as NumPy arrays."""
    if name in (None, "none"):
        return z, np.ones_like(z)
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if name == "tanh":
        a = np.tanh(z)
        return a, 1 - a * a
    if name == "sigmoid":
        a = 1 / (1 + np.exp(-z))
        return a, a * (1 - a)
    if name == "gelu":
        cdf = 0.5 * (1 + erf(z / math.sqrt(2)).data)
        return z * cdf, cdf + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    raise ValueError(f"unknown activation {name!r}")


class MLP(Module):
    """Fully connected network with layer sizes ``sizes = [in, h1, ..., out]``.

    ``activation`` follows every hidden layer; ``output_activation`` (default None: logits)
    follows the last.  ``init`` chooses what the initial weights scale:

    * ``'torch'``: torch.nn.Linear's default, U(+-1/sqrt(fan_in)) for weights and biases;
    * ``'standard_normal'``: every weight and bias N(0, 1) (the classic tutorial network);
    * ``'xavier'``: Glorot & Bengio (2010), Var W = 2/(fan_in + fan_out), biases 0;
    * ``'he'``: He et al. (2015), Var W = 2/fan_in, biases 0 (for ReLU);
    * ``'ntk'``: NTK parametrization (Jacot et al., 2018): parameters N(0, 1), the forward pass
      computes W x / sqrt(fan_in) + beta b (``ntk_beta``, default 0.1), so the scaling lives in
      the forward pass and the learning rate need not shrink with width;
    * ``'mup'``: maximal-update parametrization (Yang & Hu, 2021; Tensor Programs V, Table 3):
      Var W = 1/fan_in for input and hidden layers, 1/fan_in^2 for the output layer, biases 0;
      use ``mup_param_groups`` for its per-layer learning rates.
    """

    def __init__(self, sizes, activation="tanh", init="torch", output_activation=None,
                 bias=True, dtype=np.float32, generator=None, ntk_beta: float = 0.1):
        super().__init__()
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"MLP: sizes must be a list of layer widths [in, h1, ..., out], got "
                            f"{type(sizes).__name__}") from None
        if len(sizes) < 2 or any(not isinstance(s, bool) and isinstance(s, (int, np.integer))
                                 and s <= 0 for s in sizes):
            raise ValueError(f"MLP: sizes must list at least an input and an output size, all "
                             f"positive, got {sizes}")
        sizes = [_checks.integer("MLP", f"sizes[{i}]", s) for i, s in enumerate(sizes)]
        if init not in INITS:
            raise ValueError(f"MLP: unknown init {init!r}; expected one of {INITS}")
        F.activation_fn(activation, "MLP")
        F.activation_fn(output_activation, "MLP (output_activation)")
        ntk_beta = _checks.real("MLP", "ntk_beta", ntk_beta)
        self.sizes, self.init, self.activation = sizes, init, activation
        self.output_activation = output_activation
        n_layers = len(sizes) - 1
        for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
            act = activation if i < n_layers - 1 else output_activation
            layer = Linear(fi, fo, bias=bias, activation=act, dtype=dtype)
            self._init_layer(layer, i, n_layers, dtype, generator, ntk_beta)
            self.add_module(f"layer{i}", layer)

    def _init_layer(self, layer, i, n_layers, dtype, gen, ntk_beta):
        shape = (layer.out_features, layer.in_features)
        fan_in = layer.in_features
        zeros = np.zeros(layer.out_features, dtype)
        w, b = None, zeros
        if self.init == "torch":
            return
        if self.init == "standard_normal":
            w = winit.standard_normal(shape, dtype, gen)
            b = winit.standard_normal((layer.out_features,), dtype, gen)
        elif self.init == "xavier":
            w = winit.xavier_uniform(shape, dtype, gen)
        elif self.init == "he":
            w = winit.kaiming_normal(shape, dtype, gen)
        elif self.init == "ntk":
            w = winit.standard_normal(shape, dtype, gen)
            b = winit.standard_normal((layer.out_features,), dtype, gen)
            layer.weight_multiplier = 1.0 / math.sqrt(fan_in)
            layer.bias_multiplier = ntk_beta
        elif self.init == "mup":
            std = 1.0 / fan_in if i == n_layers - 1 else 1.0 / math.sqrt(fan_in)
            w = (winit.standard_normal(shape, np.float64, gen) * std).astype(dtype)
        layer.weight.data[...] = w
        if layer.bias is not None:
            layer.bias.data[...] = b

    @property
    def layers(self):
        return list(self.children())

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def mup_param_groups(self, lr: float, optimizer: str = "adam", base_width: int | None = None):
        """Parameter groups with muP learning rates (Tensor Programs V, Table 3), relative to a
        model whose hidden width is ``base_width`` (default: this one's first hidden width).
        Adam: hidden and output weights lr * base/fan_in; input weights and biases lr.
        SGD: input weights and biases lr * fan_out/base; output weights lr * base/fan_in;
        hidden weights lr."""
        layers = self.layers
        base = base_width or self.sizes[1]
        groups = []
        for i, layer in enumerate(layers):
            first, last = i == 0, i == len(layers) - 1
            if optimizer == "adam":
                wlr = lr if first else lr * base / layer.in_features
                blr = lr
            elif optimizer == "sgd":
                wlr = lr * layer.out_features / base if first else \
                    lr * base / layer.in_features if last else lr
                blr = lr * layer.out_features / base if not last else lr
            else:
                raise ValueError(f"mup_param_groups: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
            groups.append({"params": [layer.weight], "lr": wlr})
            if layer.bias is not None:
                groups.append({"params": [layer.bias], "lr": blr})
        return groups

    def backprop(self, x, y, loss: str = "mse"):
        """Gradients of the loss by the delta recursion, in NumPy, without autodiff.

        ``loss='mse'``: C = 1/(2N) sum_i ||y_hat_i - y_i||^2 (the quadratic cost), y (N, out).
        ``loss='cross_entropy'``: mean softmax cross-entropy of the logits, y integer (N,);
        requires ``output_activation=None``.
        Returns ``(w_grads, b_grads)``: lists of arrays shaped like each layer's weight / bias.
        """
        x = np.asarray(getattr(x, "data", x))
        y = np.asarray(getattr(y, "data", y))
        layers = self.layers
        # forward, keeping every pre-activation z_l and activation a_l
        a, acts, derivs = x, [x], []
        for i, layer in enumerate(layers):
            W = layer.weight.data * layer.weight_multiplier
            z = a @ W.T
            if layer.bias is not None:
                z = z + layer.bias.data * layer.bias_multiplier
            a, da = _act_and_derivative(layer.activation, z)
            acts.append(a)
            derivs.append(da)
        n = x.shape[0]
        if loss == "mse":
            dC_dyhat = (a - y) / n
        elif loss == "cross_entropy":
            if self.output_activation not in (None, "none"):
                raise ValueError("backprop: cross_entropy expects logits (output_activation=None)")
            p = np.exp(a - a.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(n), y] -= 1
            dC_dyhat = p / n
        else:
            raise ValueError(f"backprop: loss must be 'mse' or 'cross_entropy', got {loss!r}")
        delta = dC_dyhat * derivs[-1]
        w_grads, b_grads = [None] * len(layers), [None] * len(layers)
        for l in range(len(layers) - 1, -1, -1):
            layer = layers[l]
            w_grads[l] = (delta.T @ acts[l]) * layer.weight_multiplier
            b_grads[l] = delta.sum(axis=0) * layer.bias_multiplier if layer.bias is not None else None
            if l > 0:
                W = layer.weight.data * layer.weight_multiplier
                delta = (delta @ W) * derivs[l - 1]
        return w_grads, b_grads

    def extra_repr(self):
        return f"sizes={self.sizes}, activation={self.activation!r}, init={self.init!r}"
