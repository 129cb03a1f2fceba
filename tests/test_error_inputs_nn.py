"""What the user API (dc.nn, dc.nn.functional, dc.optim, dc.data, dc.train) must reject, as a
table in the manner of torch's OpInfo ``error_inputs``: each row is (id, callable, exception type,
words the message must contain), driven by one parametrized test.  A row's id starts with the
public name it exercises, and a test checks that every public name has a row.

Value tests (momentum=None against torch, strided parameters against contiguous ones, NaN
reaching the running statistics) follow the table."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import nn
from deepcalc.data import DataLoader, TensorDataset
from deepcalc.nn import functional as F
from deepcalc.optim import lr_scheduler
from deepcalc.train import EarlyStopping, History, evaluate, fit

f32, f64 = np.float32, np.float64


def _x(shape=(4, 3), dtype=f32):
    return dc.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


def _labels():
    return np.array([0, 1, 2, 0])


def _params():
    return [nn.Parameter(np.zeros(3, f32))]


def _sgd(params=None):
    return dc.optim.SGD(params or _params(), lr=0.1)


def _set(obj, key, value):
    obj[key] = value


def _setattr(obj, name, value):
    setattr(obj, name, value)


def _dataset(n=4):
    return TensorDataset(np.zeros((n, 3), f32), np.zeros(n, np.int64))


def _loader(n=4, **kw):
    return DataLoader(_dataset(n), batch_size=2, **kw)


def _fit(train=None, val=None, **kw):
    model = nn.Linear(3, 3)
    kw.setdefault("progress", False)
    return fit(model, F.cross_entropy, dc.optim.SGD(model.parameters(), lr=0.1),
               train if train is not None else _loader(), val=val, **kw)


class _EmptyIterable:
    """A loader without __len__ that yields nothing (the empty case only iteration reveals)."""

    def __iter__(self):
        return iter(())


def _bn_eval(dtype=f32):
    return nn.BatchNorm1d(3, dtype=dtype).eval()


def _ce_w(weight, **kw):
    return F.cross_entropy(_x(), _labels(), weight=weight, **kw)


def _nll_w(weight):
    return F.nll_loss(F.log_softmax(_x()), _labels(), weight=weight)


# (id, callable, exception type, words the message must contain)
ERROR_INPUTS = [
    # --- containers: a function or a string must not vanish from the model ---------------------
    ("Sequential/function", lambda: nn.Sequential(nn.Linear(3, 3), dc.relu, nn.Linear(3, 3)),
     TypeError, ["Sequential", "argument 1", "function relu", "not a Module subclass", "nn.ReLU()"]),
    ("Sequential/string", lambda: nn.Sequential(nn.Linear(3, 3), "relu"),
     TypeError, ["Sequential", "argument 1", "str", "not a Module subclass"]),
    ("Sequential/class", lambda: nn.Sequential(nn.ReLU), TypeError,
     ["argument 0", "not a Module subclass", "ReLU(...)", "not the class"]),
    ("Sequential/dict-value", lambda: nn.Sequential(OrderedDict(fc=nn.Linear(3, 3), act=dc.tanh)),
     TypeError, ["Sequential", "module 'act'", "function tanh", "not a Module subclass"]),
    ("Sequential.append/function", lambda: nn.Sequential(nn.Linear(3, 3)).append(dc.relu),
     TypeError, ["Sequential.append", "function relu", "not a Module subclass"]),
    ("Sequential.__setitem__/int", lambda: _set(nn.Sequential(nn.Linear(3, 3)), 0, 5),
     TypeError, ["Sequential", "index 0", "int", "not a Module subclass"]),
    ("Sequential.__getitem__/out-of-range", lambda: nn.Sequential(nn.ReLU())[3],
     IndexError, ["Sequential", "index 3", "out of range", "1 modules"]),
    ("ModuleList/function", lambda: nn.ModuleList([nn.Linear(3, 3), dc.relu]),
     TypeError, ["ModuleList", "element 1", "function relu", "not a Module subclass"]),
    ("ModuleList/not-iterable", lambda: nn.ModuleList(3), TypeError,
     ["ModuleList", "iterable of Modules", "int"]),
    ("ModuleList/single-module", lambda: nn.ModuleList(nn.Linear(3, 3)), TypeError,
     ["ModuleList", "single Linear", "append"]),
    ("ModuleList.append/string", lambda: nn.ModuleList().append("relu"),
     TypeError, ["ModuleList.append", "str", "not a Module subclass"]),
    ("ModuleList.extend/function", lambda: nn.ModuleList().extend([nn.ReLU(), dc.relu]),
     TypeError, ["ModuleList.extend", "element 1", "function relu", "not a Module subclass"]),
    ("ModuleList.insert/function", lambda: nn.ModuleList([nn.ReLU()]).insert(0, dc.relu),
     TypeError, ["ModuleList.insert", "function relu", "not a Module subclass"]),
    ("ModuleList.__setitem__/function", lambda: _set(nn.ModuleList([nn.ReLU()]), 0, dc.relu),
     TypeError, ["ModuleList", "index 0", "function relu", "not a Module subclass"]),
    ("ModuleList.__setitem__/out-of-range", lambda: _set(nn.ModuleList([nn.ReLU()]), 1, nn.ReLU()),
     IndexError, ["ModuleList", "index 1", "out of range"]),
    ("ModuleList.__getitem__/string", lambda: nn.ModuleList([nn.ReLU()])["0"],
     TypeError, ["ModuleList", "integers or slices", "str"]),
    ("ModuleList.__iadd__/function", lambda: nn.ModuleList().__iadd__([dc.relu]),
     TypeError, ["ModuleList +=", "element 0", "not a Module subclass"]),
    ("Module.add_module/function", lambda: nn.Module().add_module("act", dc.relu),
     TypeError, ["add_module", "function relu", "'act'", "not a Module subclass"]),
    ("Module.add_module/dotted-name", lambda: nn.Module().add_module("a.b", nn.ReLU()),
     KeyError, ["add_module", "no '.'", "'a.b'"]),
    ("Module.add_module/int-name", lambda: nn.Module().add_module(1, nn.ReLU()),
     TypeError, ["add_module", "name must be a str", "int"]),
    ("Module.register_buffer/empty-name", lambda: nn.Module().register_buffer("", None),
     KeyError, ["register_buffer", "non-empty"]),
    ("Module.register_parameter/dotted-name",
     lambda: nn.Module().register_parameter("w.1", nn.Parameter(np.zeros(2, f32))),
     KeyError, ["register_parameter", "'w.1'"]),
    ("Module.__setattr__/child-replaced-by-function",
     lambda: _setattr(nn.Sequential(nn.ReLU()), "0", dc.relu),
     TypeError, ["Sequential", "cannot assign function", "child module '0'", "Module or None"]),
    ("Module.load_state_dict/not-a-dict", lambda: nn.Linear(2, 2).load_state_dict(nn.Linear(2, 2)),
     TypeError, ["load_state_dict for Linear", "expected a dict", "got Linear"]),
    ("Parameter/int-data", lambda: nn.Parameter(np.zeros(3, np.int64)), TypeError,
     ["Parameter", "float", "int64"]),

    # --- layer constructors -------------------------------------------------------------------
    ("Linear/zero-features", lambda: nn.Linear(0, 3), ValueError,
     ["Linear", "in_features", "positive integer", "got 0"]),
    ("Linear/negative-features", lambda: nn.Linear(3, -2), ValueError,
     ["Linear", "out_features", "positive integer", "got -2"]),
    ("Linear/float-features", lambda: nn.Linear(2.5, 3), TypeError,
     ["Linear", "in_features", "integer", "float 2.5"]),
    ("Linear/whole-float-features", lambda: nn.Linear(3, 4.0), TypeError,
     ["Linear", "out_features", "integer", "float 4.0"]),
    ("Linear/bool-features", lambda: nn.Linear(True, 3), TypeError,
     ["Linear", "in_features", "integer", "bool"]),
    ("Linear/activation", lambda: nn.Linear(3, 2, activation="swish"), ValueError,
     ["Linear", "unknown activation 'swish'", "relu"]),
    ("Linear/int-dtype", lambda: nn.Linear(3, 2, dtype=np.int32), TypeError,
     ["Linear", "dtype", "float32 or float64", "int32"]),
    ("Linear/None-dtype", lambda: nn.Linear(3, 2, dtype=None), TypeError,
     ["Linear", "dtype", "float32 or float64", "None"]),
    ("Linear/multiplier", lambda: nn.Linear(3, 2, weight_multiplier="2"), TypeError,
     ["Linear", "weight_multiplier", "number", "str"]),
    ("Linear/forward-float64-input", lambda: nn.Linear(3, 2)(_x(dtype=f64)), TypeError,
     ["linear", "x is float64", "weight is float32", "expected"]),
    ("Linear/forward-features", lambda: nn.Linear(4, 2)(_x()), ValueError,
     ["linear", "x has 3 features", "weight expects 4"]),
    ("Linear/forward-string", lambda: nn.Linear(3, 2)("abc"), TypeError,
     ["linear", "expected a number, a bool, an ndarray or a nested list", "str"]),
    ("MLP/one-size", lambda: nn.MLP([3]), ValueError, ["MLP", "sizes must list", "[3]"]),
    ("MLP/zero-size", lambda: nn.MLP([3, 0, 2]), ValueError, ["MLP", "positive", "[3, 0, 2]"]),
    ("MLP/float-size", lambda: nn.MLP([3, 2.5, 2]), TypeError,
     ["MLP", "sizes[1]", "integer", "float 2.5"]),
    ("MLP/not-a-list", lambda: nn.MLP(5), TypeError, ["MLP", "sizes", "list", "int"]),
    ("MLP/init", lambda: nn.MLP([3, 2], init="lecun"), ValueError, ["MLP", "unknown init 'lecun'"]),
    ("MLP/activation", lambda: nn.MLP([3, 4, 2], activation="swish"), ValueError,
     ["MLP", "unknown activation 'swish'"]),
    ("MLP/output-activation", lambda: nn.MLP([3, 2], output_activation="softmax"), ValueError,
     ["MLP (output_activation)", "unknown activation 'softmax'"]),
    ("MLP.backprop/loss", lambda: nn.MLP([3, 2]).backprop(np.zeros((2, 3), f32), np.zeros((2, 2)),
                                                        loss="l1"),
     ValueError, ["backprop", "'mse' or 'cross_entropy'", "'l1'"]),
    ("MLP.mup_param_groups/optimizer", lambda: nn.MLP([3, 4, 2]).mup_param_groups(0.1, "rmsprop"),
     ValueError, ["mup_param_groups", "'adam' or 'sgd'"]),
    ("ReLU/forward-string", lambda: nn.ReLU()("abc"), TypeError, ["relu", "str"]),
    ("Tanh/forward-int", lambda: nn.Tanh()(dc.tensor(np.zeros(3, np.int64))), TypeError,
     ["tanh", "float32 or float64", "int64"]),
    ("Sigmoid/forward-int", lambda: nn.Sigmoid()(dc.tensor(np.zeros(3, np.int64))), TypeError,
     ["sigmoid", "float32 or float64", "int64"]),
    ("GELU/approximate", lambda: nn.GELU("fast"), ValueError,
     ["GELU", "approximate", "'none' or 'tanh'", "'fast'"]),
    ("Softmax/float-axis", lambda: nn.Softmax(1.0), TypeError, ["Softmax", "axis", "integer"]),
    ("Dropout/p-above-1", lambda: nn.Dropout(1.5), ValueError, ["Dropout", "p", "[0, 1]", "1.5"]),
    ("Dropout/p-negative", lambda: nn.Dropout(-0.1), ValueError, ["Dropout", "p", "[0, 1]"]),
    ("Dropout/p-string", lambda: nn.Dropout("0.5"), TypeError, ["Dropout", "p", "number", "str"]),
    ("Dropout/p-nan", lambda: nn.Dropout(float("nan")), ValueError, ["Dropout", "p", "nan"]),
    ("Dropout/generator", lambda: nn.Dropout(0.5, generator=3), TypeError,
     ["Dropout", "generator", "numpy.random.Generator", "int"]),
    ("Dropout/forward-string", lambda: nn.Dropout(0.5)("abc"), TypeError,
     ["dropout", "expected a number, a bool, an ndarray or a nested list", "str"]),
    ("Dropout/forward-ragged-list", lambda: nn.Dropout(0.5)([[1.0], [1.0, 2.0]]), ValueError,
     ["dropout", "ragged"]),
    ("Flatten/0-d", lambda: nn.Flatten()(dc.tensor(np.float32(1))), ValueError,
     ["Flatten", "batch axis", "0-d"]),
    ("Standardize/shapes", lambda: nn.Standardize(np.zeros(3, f32), np.ones(2, f32)), ValueError,
     ["Standardize", "one shape", "(3,)", "(2,)"]),
    ("Standardize/zero-std", lambda: nn.Standardize(np.zeros(3, f32), np.zeros(3, f32)),
     ValueError, ["Standardize", "std must be > 0"]),
    ("Standardize.fit/1-d", lambda: nn.Standardize.fit(np.zeros(5)), ValueError,
     ["Standardize.fit", "(N, features)", "(5,)"]),
    ("RNN/zero-input-size", lambda: nn.RNN(0, 4), ValueError,
     ["RNN", "input_size", "positive integer", "0"]),
    ("RNN/unknown-nonlinearity", lambda: nn.RNN(3, 4, nonlinearity="gelu"), ValueError,
     ["RNN", "nonlinearity", "tanh", "gelu"]),
    ("RNN/wrong-input-size", lambda: nn.RNN(3, 4)(np.ones((5, 2, 7), np.float32)), ValueError,
     ["RNN", "(T, N, input_size)", "input_size 3", "(5, 2, 7)"]),
    ("RNN/wrong-h0-shape", lambda: nn.RNN(3, 4)(np.ones((5, 2, 3), np.float32),
                                              np.ones((2, 2, 4), np.float32)), ValueError,
     ["RNN", "h0", "(1, 2, 4)", "(2, 2, 4)"]),
    ("RNN/empty-sequence", lambda: nn.RNN(3, 4)(np.ones((0, 2, 3), np.float32)), ValueError,
     ["RNN", "empty", "T = 0"]),
    ("RNN/mixed-dtypes", lambda: nn.RNN(3, 4)(np.ones((5, 2, 3), np.float64)), TypeError,
     ["RNN", "float64", "float32", "weight_ih_l0"]),
    ("BatchNorm1d/zero-features", lambda: nn.BatchNorm1d(0), ValueError,
     ["BatchNorm1d", "num_features", "positive integer"]),
    ("BatchNorm1d/float-features", lambda: nn.BatchNorm1d(3.0), TypeError,
     ["BatchNorm1d", "num_features", "integer", "float"]),
    ("BatchNorm1d/momentum-negative", lambda: nn.BatchNorm1d(3, momentum=-0.1), ValueError,
     ["BatchNorm1d", "momentum", "[0, 1]", "-0.1"]),
    ("BatchNorm1d/momentum-above-1", lambda: nn.BatchNorm1d(3, momentum=1.5), ValueError,
     ["BatchNorm1d", "momentum", "[0, 1]", "1.5"]),
    ("BatchNorm1d/momentum-string", lambda: nn.BatchNorm1d(3, momentum="0.1"), TypeError,
     ["BatchNorm1d", "momentum", "float or None", "str"]),
    ("BatchNorm1d/eps-negative", lambda: nn.BatchNorm1d(3, eps=-1e-5), ValueError,
     ["BatchNorm1d", "eps", "[0, inf]"]),
    ("BatchNorm1d/int-dtype", lambda: nn.BatchNorm1d(3, dtype=np.int64), TypeError,
     ["BatchNorm1d", "dtype", "float32 or float64"]),
    ("BatchNorm1d/noise-std-range",
     lambda: nn.BatchNorm1d(3, noise=True, noise_std_min=2.0, noise_std_max=1.0), ValueError,
     ["BatchNorm1d", "noise_std_max", "[2, inf]"]),
    ("BatchNorm1d/eval-float64-input", lambda: _bn_eval()(_x(dtype=f64)), TypeError,
     ["BatchNorm1d", "input is float64", "weight is float32", "expected input of weight's dtype"]),
    ("BatchNorm1d/train-float64-input", lambda: nn.BatchNorm1d(3)(_x(dtype=f64)), TypeError,
     ["BatchNorm1d", "input is float64", "float32"]),
    ("BatchNorm1d/eval-float32-input-float64-layer", lambda: _bn_eval(f64)(_x()), TypeError,
     ["BatchNorm1d", "input is float32", "weight is float64"]),
    ("BatchNorm1d/no-affine-float64-input",
     lambda: nn.BatchNorm1d(3, affine=False).eval()(_x(dtype=f64)), TypeError,
     ["BatchNorm1d", "input is float64", "running_mean is float32"]),
    ("BatchNorm1d/forward-string", lambda: nn.BatchNorm1d(3)("abc"), TypeError,
     ["BatchNorm1d", "expected a number, a bool, an ndarray or a nested list", "str"]),
    ("BatchNorm1d/float16-input", lambda: nn.BatchNorm1d(3)(np.zeros((4, 3), np.float16)),
     TypeError, ["BatchNorm1d", "float32 and float64", "float16"]),
    ("BatchNorm1d/forward-channels", lambda: nn.BatchNorm1d(4)(_x()), ValueError,
     ["BatchNorm1d", "expected input (N, 4)", "(4, 3)"]),
    ("LayerNorm/shape-mismatch", lambda: nn.LayerNorm(4)(_x()), ValueError,
     ["layer_norm", "normalized_shape (4,)", "last axis of x", "(4, 3)"]),
    ("LayerNorm/two-axes", lambda: nn.LayerNorm((3, 4)), ValueError,
     ["LayerNorm", "last axis only", "(3, 4)"]),
    ("LayerNorm/zero", lambda: nn.LayerNorm(0), ValueError,
     ["LayerNorm", "normalized_shape", "positive integer"]),
    ("LayerNorm/float", lambda: nn.LayerNorm(3.5), TypeError,
     ["LayerNorm", "normalized_shape", "integer", "float"]),
    ("LayerNorm/eps-negative", lambda: nn.LayerNorm(3, eps=-1.0), ValueError,
     ["LayerNorm", "eps"]),
    ("LayerNorm/int-dtype", lambda: nn.LayerNorm(3, dtype=np.int32), TypeError,
     ["LayerNorm", "dtype", "float32 or float64"]),
    ("LayerNorm/float64-input", lambda: nn.LayerNorm(3)(_x(dtype=f64)), TypeError,
     ["layer_norm", "x is float64", "weight is float32", "expected x of weight's dtype"]),

    # --- nn.init ----------------------------------------------------------------------------
    ("init.xavier_uniform/1-d", lambda: nn.init.xavier_uniform((3,)), ValueError,
     ["xavier_uniform", "fan_in and fan_out", "at least 2", "(3,)"]),
    ("init.kaiming_normal/zero-dim", lambda: nn.init.kaiming_normal((3, 0)), ValueError,
     ["kaiming_normal", "(3, 0)"]),
    ("init.standard_normal/negative", lambda: nn.init.standard_normal((3, -1)), ValueError,
     ["standard_normal", "non-negative integers", "(3, -1)"]),
    ("init.torch_default/float-shape", lambda: nn.init.torch_default((2.5, 3), 3), ValueError,
     ["torch_default", "non-negative integers"]),

    # --- nn.functional ------------------------------------------------------------------------
    ("functional.activation_fn/unknown", lambda: F.activation_fn("swish"), ValueError,
     ["unknown activation 'swish'", "'gelu'"]),
    ("functional.activation_fn/unhashable", lambda: F.activation_fn(["relu"]), ValueError,
     ["unknown activation ['relu']"]),
    ("functional.linear/weight-1d", lambda: F.linear(_x(), _x((3,))), ValueError,
     ["linear", "weight must be 2-D", "(3,)"]),
    ("functional.linear/bias-shape", lambda: F.linear(_x(), _x((2, 3)), _x((3,))), ValueError,
     ["linear", "bias has shape (3,)", "expected (2,)"]),
    ("functional.linear/bias-dtype", lambda: F.linear(_x(), _x((2, 3)), _x((2,), f64)), TypeError,
     ["linear", "bias is float64", "weight is float32"]),
    ("functional.linear/activation", lambda: F.linear(_x(), _x((2, 3)), None, "elu"), ValueError,
     ["linear", "unknown activation 'elu'"]),
    ("functional.linear/weight-string", lambda: F.linear(_x(), "w"), TypeError,
     ["linear", "expected a number, a bool, an ndarray or a nested list", "str"]),
    ("functional.scaled_dot_product_attention/rank",
     lambda: F.scaled_dot_product_attention(_x((2, 4)), _x((1, 1, 2, 4)), _x((1, 1, 2, 4))),
     ValueError, ["scaled_dot_product_attention", "q must be 4-D", "(2, 4)"]),
    ("functional.scaled_dot_product_attention/head-dim",
     lambda: F.scaled_dot_product_attention(_x((1, 1, 2, 4)), _x((1, 1, 2, 3)), _x((1, 1, 2, 4))),
     ValueError, ["scaled_dot_product_attention", "head dim 4", "has 3"]),
    ("functional.scaled_dot_product_attention/mask-shape",
     lambda: F.scaled_dot_product_attention(*[_x((1, 1, 2, 4))] * 3, mask=np.ones((3, 3), bool)),
     ValueError, ["scaled_dot_product_attention", "(3, 3)", "(1, 1, 2, 2)"]),
    ("functional.scaled_dot_product_attention/mask-dtype",
     lambda: F.scaled_dot_product_attention(*[_x((1, 1, 2, 4))] * 3,
                                            mask=np.ones((2, 2), np.int64)),
     TypeError, ["scaled_dot_product_attention", "boolean", "int64"]),
    ("functional.scaled_dot_product_attention/dtypes",
     lambda: F.scaled_dot_product_attention(_x((1, 1, 2, 4)), _x((1, 1, 2, 4)),
                                            _x((1, 1, 2, 4), f64)),
     TypeError, ["scaled_dot_product_attention", "float64", "one dtype"]),
    ("functional.dropout/p", lambda: F.dropout(_x(), 2.0), ValueError, ["dropout", "p", "[0, 1]"]),
    ("functional.dropout/int-input", lambda: F.dropout(dc.tensor(np.ones(4, np.int64)), 0.5),
     TypeError, ["dropout", "float32 or float64", "int64"]),
    ("functional.cross_entropy/weight-too-long", lambda: _ce_w(np.ones(5, f32)), ValueError,
     ["cross_entropy", "weight has shape (5,)", "expected (3,)", "3 classes"]),
    ("functional.cross_entropy/weight-too-short", lambda: _ce_w(np.ones(2, f32)), ValueError,
     ["cross_entropy", "weight has shape (2,)", "expected (3,)", "3 classes"]),
    ("functional.cross_entropy/weight-too-short-smoothed",
     lambda: _ce_w(np.ones(2, f32), label_smoothing=0.1), ValueError,
     ["cross_entropy", "weight has shape (2,)", "3 classes"]),
    ("functional.cross_entropy/weight-2d", lambda: _ce_w(np.ones((3, 1), f32)), ValueError,
     ["cross_entropy", "weight has shape (3, 1)", "expected (3,)"]),
    ("functional.cross_entropy/weight-int", lambda: _ce_w(np.ones(3, np.int64)), TypeError,
     ["cross_entropy", "weight is int64", "float32"]),
    ("functional.cross_entropy/weight-float64", lambda: _ce_w(dc.tensor(np.ones(3))), TypeError,
     ["cross_entropy", "weight is float64", "float32"]),
    ("functional.cross_entropy/weight-string", lambda: _ce_w("abc"), TypeError,
     ["cross_entropy", "weight", "str"]),
    ("functional.cross_entropy/int-logits",
     lambda: F.cross_entropy(dc.tensor(np.zeros((4, 3), np.int64)), _labels()), TypeError,
     ["cross_entropy", "input must be float32 or float64", "int64"]),
    ("functional.cross_entropy/float-targets",
     lambda: F.cross_entropy(_x(), _labels().astype(f32)), TypeError,
     ["cross_entropy", "integer class indices", "float32"]),
    ("functional.cross_entropy/target-shape", lambda: F.cross_entropy(_x(), _labels()[:3]),
     ValueError, ["cross_entropy", "input (N, C) and target (N,)", "(3,)"]),
    ("functional.cross_entropy/label-smoothing", lambda: F.cross_entropy(_x(), _labels(),
                                                                        label_smoothing=1.5),
     ValueError, ["cross_entropy", "label_smoothing", "[0, 1]"]),
    ("functional.cross_entropy/reduction", lambda: F.cross_entropy(_x(), _labels(),
                                                                  reduction="avg"),
     ValueError, ["reduction must be 'mean', 'sum' or 'none'", "'avg'"]),
    ("functional.nll_loss/weight-too-short", lambda: _nll_w(np.ones(2, f32)), ValueError,
     ["nll_loss", "weight has shape (2,)", "expected (3,)", "3 classes"]),
    ("functional.nll_loss/weight-too-long", lambda: _nll_w(np.ones(4, f32)), ValueError,
     ["nll_loss", "weight has shape (4,)", "3 classes"]),
    ("functional.nll_loss/weight-float64", lambda: _nll_w(np.ones(3)), TypeError,
     ["nll_loss", "weight is float64", "float32"]),
    ("functional.nll_loss/target-range", lambda: F.nll_loss(_x(), np.array([0, 1, 2, 3])),
     IndexError, ["nll_loss", "target 3 at position 3", "out of range for 3 classes"]),
    ("functional.mse_loss/float64-target", lambda: F.mse_loss(_x(), _x(dtype=f64)), TypeError,
     ["mse_loss", "target is float64", "pred is float32", "expected target of pred's dtype"]),
    ("functional.mse_loss/shape", lambda: F.mse_loss(_x(), _x((4, 2))), ValueError,
     ["mse_loss", "(4, 3)", "(4, 2)"]),
    ("functional.mse_loss/int-pred", lambda: F.mse_loss(dc.tensor(np.zeros(3, np.int64)), _x((3,))),
     TypeError, ["mse_loss", "float32 or float64", "int64"]),
    ("functional.mse_loss/string-target", lambda: F.mse_loss(_x(), "abc"), TypeError,
     ["mse_loss", "nested list of numbers", "str"]),
    ("functional.binary_cross_entropy_with_logits/float64-target",
     lambda: F.binary_cross_entropy_with_logits(_x(), _x(dtype=f64)), TypeError,
     ["binary_cross_entropy_with_logits", "target is float64", "logits is float32"]),
    ("functional.binary_cross_entropy_with_logits/float64-pos-weight",
     lambda: F.binary_cross_entropy_with_logits(_x(), _x(), pos_weight=np.ones(3)), TypeError,
     ["binary_cross_entropy_with_logits", "pos_weight is float64", "logits is float32"]),
    ("functional.binary_cross_entropy_with_logits/shape",
     lambda: F.binary_cross_entropy_with_logits(_x(), _x((4, 1))), ValueError,
     ["binary_cross_entropy_with_logits", "(4, 1)", "(4, 3)"]),
    ("functional.batch_norm/eval-float64-x",
     lambda: F.batch_norm(_x(dtype=f64), _x((3,)), _x((3,))), TypeError,
     ["batch_norm", "x is float64", "running_mean is float32"]),
    ("functional.batch_norm/weight-dtype",
     lambda: F.batch_norm(_x(), weight=_x((3,), f64), bias=_x((3,), f64), training=True),
     TypeError, ["batch_norm", "x is float32", "weight is float64"]),
    ("functional.batch_norm/weight-shape",
     lambda: F.batch_norm(_x(), weight=_x((4,)), bias=_x((4,)), training=True), ValueError,
     ["batch_norm", "3 channels", "weight has shape (4,)"]),
    ("functional.batch_norm/weight-without-bias",
     lambda: F.batch_norm(_x(), weight=_x((3,)), training=True), ValueError,
     ["batch_norm", "weight and bias must both be given"]),
    ("functional.batch_norm/running-mean-without-var",
     lambda: F.batch_norm(_x(), _x((3,)), None, training=True), ValueError,
     ["batch_norm", "running_mean and running_var must both be given"]),
    ("functional.batch_norm/momentum",
     lambda: F.batch_norm(_x(), _x((3,)), _x((3,)), training=True, momentum=1.5), ValueError,
     ["batch_norm", "momentum", "[0, 1]", "1.5"]),
    ("functional.batch_norm/momentum-None",
     lambda: F.batch_norm(_x(), _x((3,)), _x((3,)), training=True, momentum=None), TypeError,
     ["batch_norm", "momentum", "number", "NoneType"]),
    ("functional.batch_norm/list-weight",
     lambda: F.batch_norm(_x(), weight=[1., 1., 1.], bias=[0., 0., 0.], training=True), TypeError,
     ["batch_norm", "weight must be a Tensor", "list"]),
    ("functional.batch_norm/4-d", lambda: F.batch_norm(_x((2, 3, 4, 5)), training=True),
     ValueError, ["batch_norm", "(N, C) or (N, C, L)", "(2, 3, 4, 5)"]),
    ("functional.batch_norm/int-x", lambda: F.batch_norm(dc.tensor(np.ones((4, 3), np.int64)),
                                                         training=True),
     TypeError, ["batch_norm", "x must be float32 or float64", "int64"]),
    ("functional.batch_norm/one-value",
     lambda: F.batch_norm(_x((1, 3)), training=True), ValueError,
     ["batch_norm", "more than 1 value per channel", "(1, 3)"]),
    ("functional.layer_norm/weight-dtype",
     lambda: F.layer_norm(_x(dtype=f64), 3, _x((3,)), _x((3,))), TypeError,
     ["layer_norm", "x is float64", "weight is float32"]),
    ("functional.layer_norm/weight-shape", lambda: F.layer_norm(_x(), 3, _x((4,)), _x((4,))),
     ValueError, ["layer_norm", "3 features", "weight has shape (4,)"]),
    ("functional.layer_norm/normalized-shape", lambda: F.layer_norm(_x(), 4), ValueError,
     ["layer_norm", "normalized_shape (4,)", "(4, 3)"]),
    ("functional.layer_norm/float-normalized-shape", lambda: F.layer_norm(_x(), 3.0), TypeError,
     ["layer_norm", "normalized_shape", "int or a tuple of ints", "float"]),
    ("functional.layer_norm/int-x", lambda: F.layer_norm(dc.tensor(np.ones((4, 3), np.int64))),
     TypeError, ["layer_norm", "x must be float32 or float64", "int64"]),
    ("functional.relu/string", lambda: F.relu("abc"), TypeError, ["relu", "str"]),
    ("functional.tanh/int", lambda: F.tanh(dc.tensor(np.ones(2, np.int64))), TypeError,
     ["tanh", "float32 or float64", "int64"]),
    ("functional.sigmoid/int", lambda: F.sigmoid(dc.tensor(np.ones(2, np.int64))), TypeError,
     ["sigmoid", "float32 or float64", "int64"]),
    ("functional.gelu/approximate", lambda: F.gelu(_x(), "fast"), ValueError,
     ["gelu", "approximate", "'fast'"]),
    ("functional.softmax/axis", lambda: F.softmax(_x(), 2), ValueError,
     ["softmax", "axis 2", "out of range", "2 dimensions"]),
    ("functional.softmax/scalar", lambda: F.softmax(dc.tensor(np.float32(1))), ValueError,
     ["softmax", "at least 1 dimension"]),
    ("functional.log_softmax/int", lambda: F.log_softmax(dc.tensor(np.ones(3, np.int64))),
     TypeError, ["log_softmax", "float32 or float64", "int64"]),

    # --- optim ------------------------------------------------------------------------------
    ("Adam/one-beta", lambda: dc.optim.Adam(_params(), betas=(0.9,)), ValueError,
     ["Adam", "betas must be a pair", "(0.9,)"]),
    ("Adam/three-betas", lambda: dc.optim.Adam(_params(), betas=(0.9, 0.99, 0.9)), ValueError,
     ["Adam", "betas must be a pair"]),
    ("Adam/beta-scalar", lambda: dc.optim.Adam(_params(), betas=0.9), ValueError,
     ["Adam", "betas must be a pair", "0.9"]),
    ("Adam/beta-1", lambda: dc.optim.Adam(_params(), betas=(0.9, 1.0)), ValueError,
     ["Adam", "betas[1]", "[0, 1)", "1.0"]),
    ("Adam/beta-negative", lambda: dc.optim.Adam(_params(), betas=(-0.1, 0.9)), ValueError,
     ["Adam", "betas[0]", "[0, 1)"]),
    ("Adam/lr-negative", lambda: dc.optim.Adam(_params(), lr=-1e-3), ValueError,
     ["Adam", "lr", "[0, inf]", "-0.001"]),
    ("Adam/lr-string", lambda: dc.optim.Adam(_params(), lr="1e-3"), TypeError,
     ["Adam", "lr", "number", "str"]),
    ("Adam/eps-negative", lambda: dc.optim.Adam(_params(), eps=-1.0), ValueError, ["Adam", "eps"]),
    ("Adam/weight-decay-negative", lambda: dc.optim.Adam(_params(), weight_decay=-0.1), ValueError,
     ["Adam", "weight_decay"]),
    ("Adam/empty-params", lambda: dc.optim.Adam([]), ValueError,
     ["Adam", "optimizer got an empty parameter list"]),
    ("Adam/module-as-params", lambda: dc.optim.Adam(nn.Linear(2, 2)), TypeError,
     ["Adam", "Linear (a Module)", "model.parameters()"]),
    ("Adam/group-lr", lambda: dc.optim.Adam([{"params": _params(), "lr": -1.0}]), ValueError,
     ["Adam (param group 0)", "lr"]),
    ("AdamW/beta-1", lambda: dc.optim.AdamW(_params(), betas=(1.0, 0.9)), ValueError,
     ["AdamW", "betas[0]", "[0, 1)"]),
    ("AdamW/weight-decay-negative", lambda: dc.optim.AdamW(_params(), weight_decay=-1e-2),
     ValueError, ["AdamW", "weight_decay"]),
    ("SGD/lr-negative", lambda: dc.optim.SGD(_params(), lr=-0.1), ValueError, ["SGD", "lr"]),
    ("SGD/momentum-negative", lambda: dc.optim.SGD(_params(), momentum=-0.9), ValueError,
     ["SGD", "momentum", "-0.9"]),
    ("SGD/dampening", lambda: dc.optim.SGD(_params(), momentum=0.9, dampening=2.0), ValueError,
     ["SGD", "dampening", "[0, 1]"]),
    ("SGD/nesterov-without-momentum", lambda: dc.optim.SGD(_params(), nesterov=True), ValueError,
     ["SGD", "Nesterov", "momentum > 0", "dampening 0"]),
    ("SGD/nesterov-with-dampening",
     lambda: dc.optim.SGD(_params(), momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     ["SGD", "Nesterov", "dampening 0.1"]),
    ("SGD/weight-decay-negative", lambda: dc.optim.SGD(_params(), weight_decay=-1.0), ValueError,
     ["SGD", "weight_decay"]),
    ("SGD/single-tensor", lambda: dc.optim.SGD(_params()[0]), TypeError,
     ["SGD", "single Tensor", "list"]),
    ("SGD/dict-params", lambda: dc.optim.SGD({"params": _params()}), TypeError,
     ["SGD", "got a dict", "wrap the group in a list"]),
    ("SGD/set-params", lambda: dc.optim.SGD(set(_params())), TypeError, ["SGD", "set"]),
    ("SGD/int-params", lambda: dc.optim.SGD(3), TypeError, ["SGD", "iterable", "int"]),
    ("SGD/no-grad-param", lambda: dc.optim.SGD([dc.tensor(np.zeros(2, f32))]), ValueError,
     ["SGD", "does not require grad"]),
    ("SGD/duplicate-param", lambda: dc.optim.SGD(_params() * 2), ValueError,
     ["SGD", "more than one parameter group"]),
    ("SGD/empty-params", lambda: dc.optim.SGD(iter([])), ValueError,
     ["optimizer got an empty parameter list"]),
    ("RMSprop/alpha-above-1", lambda: dc.optim.RMSprop(_params(), alpha=1.5), ValueError,
     ["RMSprop", "alpha", "[0, 1]", "1.5"]),
    ("RMSprop/alpha-negative", lambda: dc.optim.RMSprop(_params(), alpha=-0.5), ValueError,
     ["RMSprop", "alpha"]),
    ("RMSprop/eps-negative", lambda: dc.optim.RMSprop(_params(), eps=-1e-8), ValueError,
     ["RMSprop", "eps"]),
    ("RMSprop/momentum-negative", lambda: dc.optim.RMSprop(_params(), momentum=-1.0), ValueError,
     ["RMSprop", "momentum"]),
    ("RMSprop/empty-params", lambda: dc.optim.RMSprop([]), ValueError,
     ["RMSprop", "optimizer got an empty parameter list"]),
    ("Optimizer.add_param_group/not-a-dict", lambda: _sgd().add_param_group(_params()), TypeError,
     ["SGD.add_param_group", "expected a dict", "list"]),
    ("Optimizer.add_param_group/bad-hyperparameter",
     lambda: _sgd().add_param_group({"params": _params(), "momentum": -1.0}), ValueError,
     ["SGD (param group 1)", "momentum"]),
    ("Optimizer.load_state_dict/group-count",
     lambda: _sgd().load_state_dict({"state": {}, "param_groups": []}), ValueError,
     ["SGD.load_state_dict", "0 parameter groups", "this optimizer has 1"]),
    ("clip_grad_norm_/negative", lambda: dc.optim.clip_grad_norm_(_params(), -1.0), ValueError,
     ["clip_grad_norm_", "max_norm", "-1.0"]),
    ("clip_grad_norm_/norm-type-string", lambda: dc.optim.clip_grad_norm_(_params(), 1.0, "fro"),
     TypeError, ["clip_grad_norm_", "norm_type", "str"]),
    ("clip_grad_value_/negative", lambda: dc.optim.clip_grad_value_(_params(), -0.5), ValueError,
     ["clip_grad_value_", "clip_value", "-0.5"]),
    ("lr_scheduler.LRScheduler/not-an-optimizer", lambda: lr_scheduler.StepLR(_params(), 2),
     TypeError, ["StepLR", "list is not an Optimizer"]),
    ("lr_scheduler.StepLR/step-size-0", lambda: lr_scheduler.StepLR(_sgd(), 0), ValueError,
     ["StepLR", "step_size", "positive integer"]),
    ("lr_scheduler.StepLR/float-step-size", lambda: lr_scheduler.StepLR(_sgd(), 2.5), TypeError,
     ["StepLR", "step_size", "integer"]),
    ("lr_scheduler.CosineAnnealingLR/T-max-0", lambda: lr_scheduler.CosineAnnealingLR(_sgd(), 0),
     ValueError, ["CosineAnnealingLR", "T_max", "positive integer"]),
    ("lr_scheduler.LinearLR/start-factor", lambda: lr_scheduler.LinearLR(_sgd(), start_factor=0),
     ValueError, ["LinearLR", "start_factor", "(0, 1]"]),
    ("lr_scheduler.LinearLR/total-iters", lambda: lr_scheduler.LinearLR(_sgd(), total_iters=0),
     ValueError, ["LinearLR", "total_iters", "positive integer"]),
    ("lr_scheduler.LambdaLR/not-callable", lambda: lr_scheduler.LambdaLR(_sgd(), 0.5), TypeError,
     ["LambdaLR", "lr_lambda 0", "float", "function of the epoch"]),
    ("lr_scheduler.LambdaLR/count", lambda: lr_scheduler.LambdaLR(_sgd(), [abs, abs]), ValueError,
     ["LambdaLR", "expected 1 lr_lambdas", "got 2"]),

    # --- data -------------------------------------------------------------------------------
    ("DataLoader/batch-size-None", lambda: DataLoader(_dataset(), batch_size=None), ValueError,
     ["DataLoader", "batch_size must be a positive integer", "None"]),
    ("DataLoader/batch-size-0", lambda: DataLoader(_dataset(), batch_size=0), ValueError,
     ["DataLoader", "batch_size must be a positive integer", "0"]),
    ("DataLoader/batch-size-negative", lambda: DataLoader(_dataset(), batch_size=-2), ValueError,
     ["DataLoader", "batch_size", "-2"]),
    ("DataLoader/batch-size-float", lambda: DataLoader(_dataset(), batch_size=2.5), ValueError,
     ["DataLoader", "batch_size", "2.5"]),
    ("DataLoader/batch-size-whole-float", lambda: DataLoader(_dataset(), batch_size=2.0),
     ValueError, ["DataLoader", "batch_size", "2.0"]),
    ("DataLoader/batch-size-string", lambda: DataLoader(_dataset(), batch_size="2"), ValueError,
     ["DataLoader", "batch_size", "'2'"]),
    ("DataLoader/batch-size-bool", lambda: DataLoader(_dataset(), batch_size=True), ValueError,
     ["DataLoader", "batch_size", "True"]),
    ("DataLoader/dataset", lambda: DataLoader(5), TypeError,
     ["DataLoader", "__len__ and __getitem__", "int"]),
    ("DataLoader/generator-and-seed",
     lambda: DataLoader(_dataset(), seed=1, generator=np.random.default_rng(1)), ValueError,
     ["DataLoader", "not both"]),
    ("DataLoader/generator-type", lambda: DataLoader(_dataset(), generator=1), TypeError,
     ["DataLoader", "generator", "numpy.random.Generator", "int"]),
    ("DataLoader/seed-negative", lambda: DataLoader(_dataset(), seed=-1), ValueError,
     ["DataLoader", "seed", "-1"]),
    ("DataLoader.load_state_dict/order-shape",
     lambda: _loader().load_state_dict({"generator": None, "order": np.arange(3), "position": 0}),
     ValueError, ["DataLoader.load_state_dict", "shape (3,)", "4 samples"]),
    ("Dataset/abstract-len", lambda: len(dc.data.Dataset()), NotImplementedError, []),
    ("TensorDataset/no-arrays", lambda: TensorDataset(), ValueError,
     ["TensorDataset", "at least one array"]),
    ("TensorDataset/lengths", lambda: TensorDataset(np.zeros((4, 2)), np.zeros(5)), ValueError,
     ["TensorDataset", "same first dimension", "(4, 2), (5,)"]),
    ("teacher_regression/zero-samples", lambda: dc.data.teacher_regression(0, 3, 1), ValueError,
     ["teacher_regression", "n_samples", "positive integer"]),
    ("teacher_regression/hidden", lambda: dc.data.teacher_regression(5, 3, 1, hidden=(4, 0)),
     ValueError, ["teacher_regression", "hidden[1]"]),
    ("teacher_regression/noise", lambda: dc.data.teacher_regression(5, 3, 1, noise=-1.0),
     ValueError, ["teacher_regression", "noise", ">= 0"]),
    ("load_digits/test-fraction", lambda: dc.data.load_digits(test_fraction=1.0), ValueError,
     ["load_digits", "test_fraction", "(0, 1)"]),
    ("read_idx/missing", lambda: dc.data.read_idx("/nonexistent/x.idx"), FileNotFoundError,
     ["read_idx", "no such file"]),
    ("write_idx/dtype", lambda: dc.data.write_idx("/nonexistent/x.idx", np.zeros(2, np.int64)),
     ValueError, ["write_idx", "int64"]),
    ("load_mnist/missing", lambda: dc.data.load_mnist("/nonexistent"), FileNotFoundError,
     ["load_mnist", "never downloads"]),

    # --- train ------------------------------------------------------------------------------
    ("fit/empty-training-loader", lambda: _fit(DataLoader(_dataset(0))), ValueError,
     ["fit: the training loader yielded no batches"]),
    ("fit/drop-last-only-batch", lambda: _fit(DataLoader(_dataset(3), batch_size=4,
                                                         drop_last=True)),
     ValueError, ["fit: the training loader yielded no batches", "drop_last"]),
    ("fit/empty-training-iterable", lambda: _fit(_EmptyIterable()), ValueError,
     ["fit: the training loader yielded no batches", "epoch 0"]),
    ("fit/empty-validation-loader", lambda: _fit(val=DataLoader(_dataset(0))), ValueError,
     ["fit: the validation loader yielded no batches"]),
    ("fit/empty-validation-iterable", lambda: _fit(val=_EmptyIterable()), ValueError,
     ["fit: the validation loader yielded no batches"]),
    ("fit/epochs-negative", lambda: _fit(epochs=-1), ValueError,
     ["fit", "epochs", "integer >= 0", "-1"]),
    ("fit/epochs-float", lambda: _fit(epochs=1.5), ValueError, ["fit", "epochs", "1.5"]),
    ("fit/train-not-iterable", lambda: _fit(train=5), TypeError,
     ["fit", "training loader", "iterable of (x, y) batches", "int"]),
    ("fit/optimizer", lambda: fit(nn.Linear(3, 3), F.cross_entropy, "sgd", _loader(),
                                  progress=False),
     TypeError, ["fit", "optimizer must be an Optimizer", "str"]),
    ("fit/loss-fn", lambda: fit(nn.Linear(3, 3), "cross_entropy", _sgd(), _loader(),
                                progress=False),
     TypeError, ["fit", "loss_fn", "str"]),
    ("fit/model", lambda: fit(None, F.cross_entropy, _sgd(), _loader(), progress=False),
     TypeError, ["fit", "model", "NoneType"]),
    ("fit/scheduler", lambda: _fit(scheduler=0.1), TypeError, ["fit", "scheduler", "float"]),
    ("fit/max-grad-norm", lambda: _fit(max_grad_norm=0.0), ValueError,
     ["fit", "max_grad_norm", "> 0"]),
    ("fit/resume-without-dir", lambda: _fit(resume=True), ValueError,
     ["fit", "resume=True", "checkpoint_dir"]),
    ("fit/callback", lambda: _fit(callbacks=[print]), TypeError,
     ["fit", "callbacks[0]", "Callback"]),
    ("evaluate/empty-loader", lambda: evaluate(nn.Linear(3, 3), F.cross_entropy,
                                               DataLoader(_dataset(0))),
     ValueError, ["evaluate: the evaluation loader yielded no batches"]),
    ("evaluate/empty-iterable", lambda: evaluate(nn.Linear(3, 3), F.cross_entropy,
                                                 _EmptyIterable()),
     ValueError, ["evaluate: the evaluation loader yielded no batches"]),
    ("evaluate/loss-fn", lambda: evaluate(nn.Linear(3, 3), None, _loader()), TypeError,
     ["evaluate", "loss_fn", "NoneType"]),
    ("History.best/mode", lambda: History([{"loss": 1.0}]).best("loss", "lowest"), ValueError,
     ["History.best", "'min' or 'max'", "'lowest'"]),
    ("History.best/missing", lambda: History([{"loss": 1.0}]).best("accuracy"), KeyError,
     ["History.best", "no metric 'accuracy'"]),
    ("EarlyStopping/mode", lambda: EarlyStopping(mode="lowest"), ValueError,
     ["EarlyStopping", "'min' or 'max'"]),
    ("EarlyStopping/patience", lambda: EarlyStopping(patience=-1), ValueError,
     ["EarlyStopping", "patience", "-1"]),
    ("EarlyStopping/min-delta", lambda: EarlyStopping(min_delta=-0.1), ValueError,
     ["EarlyStopping", "min_delta"]),
    ("EarlyStopping.on_epoch_end/metric",
     lambda: EarlyStopping("val_acc").on_epoch_end(0, {"loss": 1.0}, None), KeyError,
     ["EarlyStopping", "'val_acc'", "['loss']"]),
    # the Transformer layers and models, decoding, and the sequence data (helper tfm)
    ("Embedding/index-out-of-range", lambda: nn.Embedding(4, 3)(np.array([0, 4])), IndexError,
     ["embedding", "index 4", "4 rows"]),
    ("Embedding/float-indices", lambda: nn.Embedding(4, 3)(np.array([0.0, 1.0])), TypeError,
     ["embedding", "integers", "float64"]),
    ("Embedding/padding-idx-out-of-range", lambda: nn.Embedding(4, 3, padding_idx=4), ValueError,
     ["Embedding", "padding_idx", "4"]),
    ("PositionalEncoding/longer-than-max-len",
     lambda: nn.PositionalEncoding(6, 0.0, max_len=5)(np.zeros((1, 6, 6), f32)), ValueError,
     ["PositionalEncoding", "max_len 5"]),
    ("PositionalEncoding/wrong-width", lambda: nn.PositionalEncoding(6)(np.zeros((1, 3, 5), f32)),
     ValueError, ["PositionalEncoding", "6)", "(1, 3, 5)"]),
    ("MultiHeadAttention/heads-do-not-divide", lambda: nn.MultiHeadAttention(10, 4), ValueError,
     ["MultiHeadAttention", "embed_dim (10)", "num_heads (4)"]),
    ("MultiheadAttention/key-padding-mask-shape",
     lambda: nn.MultiheadAttention(8, 2, batch_first=True)(
         *[np.zeros((2, 3, 8), f32)] * 3, key_padding_mask=np.zeros((2, 4), bool)), ValueError,
     ["MultiHeadAttention", "key_padding_mask", "(2, 4)", "(2, 3)"]),
    ("TransformerEncoderLayer/unknown-activation",
     lambda: nn.TransformerEncoderLayer(8, 2, activation="tanh"), ValueError,
     ["TransformerEncoderLayer", "activation", "tanh"]),
    ("TransformerDecoderLayer/memory-width",
     lambda: nn.TransformerDecoderLayer(8, 2, 16, batch_first=True)(np.zeros((2, 3, 8), f32),
                                                                    np.zeros((2, 4, 6), f32)),
     ValueError, ["TransformerDecoderLayer", "memory", "d_model = 8", "(2, 4, 6)"]),
    ("TransformerEncoder/not-a-layer", lambda: nn.TransformerEncoder("layer", 2), TypeError,
     ["TransformerEncoder", "layer Module", "str"]),
    ("TransformerDecoder/negative-layers",
     lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), -1), ValueError,
     ["TransformerDecoder", "num_layers", "-1"]),
    ("Transformer/wrong-d-model",
     lambda: nn.Transformer(8, 2, 1, 1, 16)(np.zeros((3, 2, 6), f32), np.zeros((3, 2, 6), f32)),
     ValueError, ["Transformer", "d_model = 8"]),
    ("Seq2SeqTransformer/token-out-of-range",
     lambda: nn.Seq2SeqTransformer(5, 5, 8, 2, 1, 1, 16)(np.array([[1, 9]]), np.array([[1]])),
     IndexError, ["Seq2SeqTransformer", "token 9", "vocabulary of 5"]),
    ("TransformerLM/float-tokens", lambda: nn.TransformerLM(5, 8, 2, 1, 16)(np.zeros((1, 3))),
     TypeError, ["TransformerLM", "integer tokens", "float64"]),
    ("decoding.generate/negative-temperature",
     lambda: nn.decoding.generate(nn.TransformerLM(5, 8, 2, 1, 16), np.array([[1]]), 2,
                                  temperature=-1.0), ValueError, ["generate", "temperature", "-1"]),
    ("decoding.greedy_decode/zero-max-len",
     lambda: nn.decoding.greedy_decode(nn.Seq2SeqTransformer(5, 5, 8, 2, 1, 1, 16),
                                       np.array([[3, 4]]), 0, 1, 2), ValueError,
     ["greedy_decode", "max_len", ">= 1", "0"]),
    ("seq2seq.task_splits/unknown-task", lambda: dc.data.seq2seq.task_splits("rotate", 4, 2),
     ValueError, ["seq2seq task", "'rotate'", "reverse"]),
    ("task_splits/too-many-phrase-test-pairs", lambda: dc.data.task_splits("phrase", 4, 100),
     ValueError, ["phrase", "n_test", "100"]),
    ("make_task/min-len-above-max-len", lambda: dc.data.make_task("copy", 4, min_len=5, max_len=3),
     ValueError, ["seq2seq task copy", "min_len 5 > max_len 3"]),
    ("Seq2SeqData/no-pairs", lambda: dc.data.Seq2SeqData("copy", dc.data.Vocab([]), []),
     ValueError, ["Seq2SeqData", "at least one", "pair"]),
    ("Vocab/unknown-token", lambda: dc.data.Vocab(["a"]).encode(["x"]), KeyError,
     ["Vocab.encode", "'x'", "not in the vocabulary"]),
    ("CharCorpus/short-text", lambda: dc.data.CharCorpus("ab"), ValueError,
     ["CharCorpus", "at least 4 characters"]),
    ("load_pydoc_topics/val-fraction", lambda: dc.data.load_pydoc_topics(1.5), ValueError,
     ["CharCorpus", "val_fraction", "1.5"]),
]


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else str(exc)  # a KeyError's str() adds quotes


@pytest.mark.parametrize("fn, exc_type, words", [row[1:] for row in ERROR_INPUTS],
                         ids=[row[0] for row in ERROR_INPUTS])
def test_error_input(fn, exc_type, words):
    with pytest.raises(Exception) as info:
        fn()
    assert isinstance(info.value, exc_type), f"raised {type(info.value).__name__}: {info.value}"
    msg = _message(info.value)
    missing = [w for w in words if w not in msg]
    assert not missing, f"message {msg!r} lacks {missing}"


def test_row_ids_are_unique():
    ids = [row[0] for row in ERROR_INPUTS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


# public names with nothing to reject: Identity takes anything, a handle only removes itself,
# Callback is a protocol of no-op hooks
_NOTHING_TO_REJECT = {"Identity", "RemovableHandle", "Callback", "functional", "init",
                      "lr_scheduler"}


def _public_names():
    import inspect
    names = [n for n in dc.nn.__all__] + [n for n in dc.optim.__all__] + list(dc.data.__all__)
    names += [f"functional.{n}" for n in F.__all__ if callable(getattr(F, n))]
    names += [f"init.{n}" for n in nn.init.__all__]
    names += [f"lr_scheduler.{n}" for n, v in vars(lr_scheduler).items()
              if inspect.isclass(v) and issubclass(v, lr_scheduler.LRScheduler)]
    names += ["fit", "evaluate", "History", "EarlyStopping", "Callback"]
    return [n for n in names if n not in _NOTHING_TO_REJECT]


@pytest.mark.parametrize("name", _public_names())
def test_every_public_name_has_a_row(name):
    prefixes = {row[0].split("/")[0] for row in ERROR_INPUTS}
    assert any(p == name or p.startswith(name + ".") for p in prefixes), \
        f"{name} has no row in ERROR_INPUTS"


# --- value tests ------------------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("shape", [(6, 3), (5, 3, 4)])
def test_batchnorm_momentum_none_is_the_cumulative_average_like_torch(shape):
    torch = _torch()
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(3, momentum=None, dtype=f64)
    tbn = torch.nn.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    batches = [rng.standard_normal(shape) * (i + 1) + i for i in range(5)]
    for x in batches:
        np.testing.assert_allclose(bn(dc.tensor(x)).data, tbn(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean.data, tbn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data, tbn.running_var.numpy(), rtol=1e-12)
    assert int(bn.num_batches_tracked.data) == int(tbn.num_batches_tracked) == 5
    # the definition: the plain mean of the batch means (and of the unbiased batch variances)
    axes = (0,) if len(shape) == 2 else (0, 2)
    np.testing.assert_allclose(bn.running_mean.data, np.mean([b.mean(axis=axes) for b in batches],
                                                             axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data, np.mean([b.var(axis=axes, ddof=1)
                                                             for b in batches], axis=0),
                               rtol=1e-12)
    bn.eval(), tbn.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(bn(dc.tensor(x)).data, tbn(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


def test_batchnorm_momentum_none_leaves_state_alone_under_a_transform():
    bn = nn.BatchNorm1d(3, momentum=None, dtype=f64)
    x = dc.tensor(np.random.default_rng(1).standard_normal((6, 3)))
    dc.grad(lambda x: bn(x).sum())(x)
    assert int(bn.num_batches_tracked.data) == 0
    np.testing.assert_array_equal(bn.running_mean.data, np.zeros(3))
    np.testing.assert_array_equal(bn.running_var.data, np.ones(3))


def test_batchnorm_and_dropout_take_array_likes_as_tensors():
    """A list (or ndarray) input is converted as every deepcalc op converts it, taking the
    layer's dtype, and gives what the same Tensor gives."""
    rows = [[1.0, 2.0, 3.0], [4.0, 6.0, 5.0], [0.0, -1.0, 2.0]]
    for dtype in (f32, f64):
        a, b = nn.BatchNorm1d(3, dtype=dtype), nn.BatchNorm1d(3, dtype=dtype)
        y = a(rows)
        assert y.dtype == dtype
        np.testing.assert_array_equal(y.data, b(dc.tensor(np.array(rows, dtype))).data)
        np.testing.assert_array_equal(a.running_var.data, b.running_var.data)
    d = nn.Dropout(0.5).eval()
    np.testing.assert_array_equal(d(rows).data, np.array(rows, f32))
    dc.manual_seed(3)
    y1 = nn.Dropout(0.5)(rows).data
    dc.manual_seed(3)
    np.testing.assert_array_equal(y1, nn.Dropout(0.5)(dc.tensor(np.array(rows, f32))).data)


def _strided_cases():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3))
    return {
        "linear": lambda xs, ps: F.linear(xs, ps[0], ps[1], "tanh"),
        "batch_norm": lambda xs, ps: F.batch_norm(xs, weight=ps[0][0], bias=ps[1],
                                                  training=True),
        "layer_norm": lambda xs, ps: F.layer_norm(xs, 3, ps[0][0], ps[1]),
    }, x


@pytest.mark.parametrize("op", ["linear", "batch_norm", "layer_norm"])
@pytest.mark.parametrize("dtype", [f32, f64])
def test_strided_bias_and_gamma_equal_the_contiguous_result(op, dtype):
    cases, x = _strided_cases()
    fn = cases[op]
    rng = np.random.default_rng(3)
    w_full = rng.standard_normal((3, 6)).astype(dtype)   # [:, ::2] is a strided (3, 3) weight
    b_full = rng.standard_normal(6).astype(dtype)        # [::2] is a strided (3,) bias / gamma
    results = []
    for strided in (True, False):
        xs = dc.tensor(x.astype(dtype), requires_grad=True)
        wf = dc.tensor(w_full, requires_grad=True)
        bf = dc.tensor(b_full, requires_grad=True)
        if strided:
            w, b = wf[:, ::2], bf[::2]
            assert not w.data.flags.c_contiguous and not b.data.flags.c_contiguous
        else:
            w = dc.tensor(np.ascontiguousarray(w_full[:, ::2]), requires_grad=True)
            b = dc.tensor(np.ascontiguousarray(b_full[::2]), requires_grad=True)
        y = fn(xs, (w, b))
        (y * dc.tensor(np.cos(np.arange(y.size)).reshape(y.shape).astype(dtype))).sum().backward()
        gw = wf.grad.data[:, ::2] if strided else w.grad.data
        gb = bf.grad.data[::2] if strided else b.grad.data
        if strided:  # the elements the views skip get no gradient
            assert not bf.grad.data[1::2].any()
        results.append((y.data, xs.grad.data, gb) + ((gw,) if op == "linear" else ()))
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)


def test_nan_batch_variance_reaches_the_running_var():
    """A NaN in a channel of the batch makes that channel's running statistics NaN (nothing
    clamps or skips it), and leaves the other channels finite."""
    for dtype in (f32, f64):
        for shape in ((4, 3), (4, 3, 2)):
            bn = nn.BatchNorm1d(3, dtype=dtype)
            x = np.random.default_rng(4).standard_normal(shape).astype(dtype)
            x[1, 0] = np.nan
            bn(dc.tensor(x))
            assert np.isnan(bn.running_var.data[0]) and np.isnan(bn.running_mean.data[0])
            assert np.isfinite(bn.running_var.data[1:]).all()
            bn.eval()  # eval mode normalizes with the NaN statistics: channel 0 is NaN
            y = bn(dc.tensor(np.ones(shape, dtype))).data
            assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1:]).all()


@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("dtype", [f32, f64])
def test_linear_activation_propagates_nan(activation, dtype):
    """NaN in x (or in the bias) reaches every output it feeds, whatever the fused activation."""
    x = np.ones((3, 4), dtype)
    x[0, 1] = np.nan
    w = dc.tensor(np.full((5, 4), 0.1, dtype))
    b = np.zeros(5, dtype)
    b[2] = np.nan
    y = F.linear(dc.tensor(x), w, dc.tensor(b), activation).data
    assert np.isnan(y[0]).all()
    assert np.isnan(y[1:, 2]).all()
    assert np.isfinite(np.delete(y[1:], 2, axis=1)).all()
    layer = nn.Linear(4, 5, activation=activation, dtype=dtype)
    assert np.isnan(layer(dc.tensor(x)).data[0]).all()


def test_sequential_and_module_list_keep_working_as_lists():
    """The checks do not change what the containers do with Modules."""
    a, b, c = nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)
    ml = nn.ModuleList([a])
    ml.append(b).extend([c])
    ml.insert(1, nn.Tanh())
    assert [type(m).__name__ for m in ml] == ["Linear", "Tanh", "ReLU", "Linear"]
    ml[1] = nn.Sigmoid()
    del ml[2]
    assert [type(m).__name__ for m in ml] == ["Linear", "Sigmoid", "Linear"]
    assert list(dict(ml.named_children())) == ["0", "1", "2"]
    assert len(list(ml.parameters())) == 4
    ml += [nn.Identity()]
    assert len(ml) == 4 and isinstance(ml[-1], nn.Identity) and len(ml[1:3]) == 2
    seq = nn.Sequential(a, b, c)
    seq[1] = nn.Tanh()
    x = dc.tensor(np.ones((3, 2), f32))
    np.testing.assert_allclose(seq(x).data, c(dc.tanh(a(x))).data)
    assert isinstance(seq[0:2], nn.Sequential) and len(seq[0:2]) == 2
