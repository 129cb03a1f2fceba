"""What every public op, creation function and transform must reject, and what its message says:
one table row per bad input (as torch's OpInfo ``error_inputs``), driven by one test.  Then the
value contracts that the same sweep of bad inputs fixed: NaN through maximum / minimum and
max / min and their gradients (torch's conventions), integer true division, reductions of 0-d
tensors, logsumexp over an empty axis, and the inputs that must still be accepted."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.autodiff.graph import wrap

NAN = np.nan


def _x():
    return dc.ones(2, 3)


def _x64():
    return dc.ones(2, 3, dtype=np.float64)


def _xi():
    return dc.tensor(np.arange(6).reshape(2, 3))


def _sq(a):
    return (a * a).sum()


_V = dc.ones(3, dtype=np.float64)
_ROW = dc.ones(1, 3, dtype=np.float64)


def _f16():
    """A float16 tensor that got past the creation functions (wrap never checks)."""
    return wrap(np.ones(3, np.float16))


# (id, callable, exception type, words the message must contain); the first word is the op.
ERRORS = [
    # --- element-wise arithmetic: dtype mixes, shapes, values that are not numbers
    ("add_shapes", lambda: _x() + dc.ones(4, 3), ValueError, ["add", "(2, 3)", "(4, 3)", "broadcast"]),
    ("add_mixed_floats", lambda: _x() + dc.ones(3, dtype=np.float64), TypeError,
     ["add", "float32 (2, 3)", "float64 (3,)", ".astype()"]),
    ("add_None", lambda: dc.ones(2) + None, TypeError, ["add", "NoneType"]),
    ("add_str", lambda: _x() + "a", TypeError, ["add", "str"]),
    ("add_complex", lambda: _x() + 1j, TypeError, ["add", "complex"]),
    ("add_complex_array", lambda: _x() + np.ones(3, complex), TypeError, ["add", "complex128"]),
    ("add_ragged_list", lambda: _x() + [[1], [1, 2]], ValueError, ["add", "ragged"]),
    ("add_float16_array", lambda: _x() + np.ones(3, np.float16), TypeError,
     ["add", "deepcalc supports float32 and float64; got float16"]),
    ("sub_shapes", lambda: dc.sub(_x(), dc.ones(2)), ValueError, ["sub", "(2, 3)", "(2,)"]),
    ("mul_shapes", lambda: _x() * dc.ones(2), ValueError, ["mul", "(2, 3)", "(2,)"]),
    ("mul_object", lambda: _x() * object(), TypeError, ["mul", "object"]),
    ("div_mixed_floats", lambda: _x() / _x64(), TypeError, ["div", "float32", "float64"]),
    ("div_None", lambda: _x() / None, TypeError, ["div", "NoneType"]),
    ("pow_shapes", lambda: _x() ** dc.ones(4), ValueError, ["pow", "(2, 3)", "(4,)"]),
    ("pow_str", lambda: _x() ** "a", TypeError, ["pow", "str"]),
    ("maximum_shapes", lambda: dc.maximum(_x(), dc.ones(4)), ValueError,
     ["maximum", "(2, 3)", "(4,)", "broadcast"]),
    ("maximum_mixed_floats", lambda: dc.maximum(_x(), _x64()), TypeError,
     ["maximum", "float32", "float64"]),
    ("minimum_str", lambda: dc.minimum(_x(), "a"), TypeError, ["minimum", "str"]),
    ("minimum_shapes", lambda: dc.minimum(dc.ones(3), dc.ones(2)), ValueError,
     ["minimum", "(3,)", "(2,)"]),
    ("where_shapes", lambda: dc.where(np.ones(4, bool), _x(), _x()), ValueError,
     ["where", "(4,)", "(2, 3)"]),
    ("where_mixed_floats", lambda: dc.where(np.ones(3, bool), _x(), _x64()), TypeError,
     ["where", "float32", "float64"]),
    ("where_cond_None", lambda: dc.where(None, _x(), _x()), TypeError, ["where", "NoneType"]),
    ("less_None", lambda: _x() < None, TypeError, ["less", "NoneType"]),
    ("equal_mixed_floats", lambda: _x() == _x64(), TypeError, ["equal", "float32", "float64"]),
    # --- unary ops: float-only ones name the dtype and shape; nothing becomes NaN silently
    ("exp_None", lambda: dc.exp(None), TypeError, ["exp", "NoneType"]),
    ("exp_int", lambda: dc.exp(_xi()), TypeError, ["exp", "int64", "(2, 3)"]),
    ("log_str", lambda: dc.log("abc"), TypeError, ["log", "str"]),
    ("sqrt_bool", lambda: dc.sqrt(dc.tensor(np.ones(2, bool))), TypeError, ["sqrt", "bool"]),
    ("tanh_int", lambda: dc.tanh(_xi()), TypeError, ["tanh", "int64"]),
    ("tanh_float16", lambda: dc.tanh(_f16()), TypeError,
     ["tanh", "deepcalc supports float32 and float64; got float16"]),
    ("sigmoid_int", lambda: dc.sigmoid(_xi()), TypeError, ["sigmoid", "int64"]),
    ("relu_int", lambda: dc.relu(_xi()), TypeError, ["relu", "int64"]),
    ("erf_int", lambda: dc.erf(_xi()), TypeError, ["erf", "int64"]),
    ("gelu_approximate", lambda: dc.gelu(_x(), "fast"), ValueError, ["gelu", "'none' or 'tanh'"]),
    ("gelu_tanh_int", lambda: dc.gelu(_xi(), approximate="tanh"), TypeError, ["gelu", "int64"]),
    ("abs_str", lambda: dc.abs("a"), TypeError, ["abs", "str"]),
    ("neg_None", lambda: dc.neg(None), TypeError, ["neg", "NoneType"]),
    ("sign_None", lambda: dc.sign(None), TypeError, ["sign", "NoneType"]),
    ("clip_no_bounds", lambda: dc.clip(_x()), ValueError, ["clip", "min", "max"]),
    ("clip_min_above_max", lambda: dc.clip(_x(), 2, 1), ValueError, ["clip", "2.0", "1.0"]),
    ("clip_tensor_bound", lambda: dc.clip(_x(), dc.ones(3), 2), TypeError,
     ["clip", "min must be a number", "(3,)"]),
    ("clip_str_bound", lambda: dc.clip(_x(), max="a"), TypeError, ["clip", "max", "str"]),
    # --- linear algebra
    ("matmul_shapes", lambda: dc.ones(2, 3) @ dc.ones(4, 5), ValueError, ["matmul", "(2, 3)", "(4, 5)"]),
    ("matmul_0d", lambda: dc.matmul(dc.tensor(1.0), _x()), ValueError, ["matmul", "()", "(2, 3)"]),
    ("matmul_int", lambda: _xi() @ _xi().T, TypeError, ["matmul", "int64"]),
    ("matmul_mixed_floats", lambda: _x() @ dc.ones(3, 2, dtype=np.float64), TypeError,
     ["matmul", "float32", "float64"]),
    ("matmul_batch", lambda: dc.ones(2, 2, 3) @ dc.ones(3, 3, 2), ValueError,
     ["matmul", "batch", "(2, 2, 3)", "(3, 3, 2)"]),
    ("inv_not_square", lambda: dc.inv(_x()), ValueError, ["inv", "square", "(2, 3)"]),
    ("inv_int", lambda: dc.inv(dc.tensor(np.eye(2, dtype=int))), TypeError, ["inv", "int64"]),
    ("inv_singular", lambda: dc.inv(dc.zeros(2, 2)), np.linalg.LinAlgError,
     ["inv", "singular", "(2, 2)"]),
    ("slogdet_not_square", lambda: dc.slogdet(_x()), ValueError, ["slogdet", "square", "(2, 3)"]),
    ("slogdet_None", lambda: dc.slogdet(None), TypeError, ["slogdet", "NoneType"]),
    # --- reductions: axes out of range, not ints, repeated; 0-d and empty inputs
    ("sum_axis_out_of_range", lambda: dc.sum(_x(), axis=2), IndexError,
     ["sum", "axis 2", "2 dimensions", "[-2, 1]"]),
    ("sum_axis_float", lambda: dc.sum(_x(), axis=1.5), TypeError, ["sum", "axis", "float", "1.5"]),
    ("sum_axis_str", lambda: dc.sum(_x(), axis="a"), TypeError, ["sum", "axis", "str"]),
    ("sum_axis_repeated", lambda: dc.sum(_x(), axis=(0, -2)), ValueError, ["sum", "repeated axis"]),
    ("sum_0d_axis_1", lambda: dc.sum(dc.tensor(1.0), axis=1), IndexError,
     ["sum", "axis 1", "0 dimensions", "[-1, 0]"]),
    ("mean_axis", lambda: dc.mean(_x(), 5), IndexError, ["mean", "axis 5", "2 dimensions"]),
    ("mean_int", lambda: dc.mean(_xi()), TypeError, ["mean", "int64"]),
    ("mean_empty", lambda: dc.mean(dc.zeros(0, 3), axis=0), ValueError, ["mean", "empty", "(0, 3)"]),
    ("max_axis", lambda: dc.max(_x(), 2), IndexError, ["max", "axis 2", "2 dimensions"]),
    ("max_axis_float", lambda: _x().max(0.0), TypeError, ["max", "axis", "float"]),
    ("max_empty", lambda: dc.max(dc.zeros(0, 3)), ValueError, ["max", "empty", "(0, 3)"]),
    ("min_axis_negative", lambda: dc.min(_x(), -3), IndexError, ["min", "axis -3", "2 dimensions"]),
    ("min_empty_axis", lambda: dc.min(dc.zeros(3, 0), axis=1), ValueError, ["min", "empty", "(3, 0)"]),
    ("var_ddof", lambda: dc.var(_x(), 1, ddof=3), ValueError, ["var", "ddof=3", "(2, 3)"]),
    ("var_int", lambda: dc.var(_xi()), TypeError, ["var", "int64"]),
    ("std_axis", lambda: dc.std(_x(), -3), IndexError, ["std", "axis -3", "2 dimensions"]),
    ("std_ddof", lambda: dc.std(_x(), ddof=6), ValueError, ["std", "6 elements", "ddof=6"]),
    ("logsumexp_axis", lambda: dc.logsumexp(_x(), 3), IndexError, ["logsumexp", "axis 3"]),
    ("logsumexp_int", lambda: dc.logsumexp(_xi()), TypeError, ["logsumexp", "int64"]),
    ("softmax_axis", lambda: dc.softmax(_x(), 2), IndexError, ["softmax", "axis 2", "2 dimensions"]),
    ("softmax_axis_float", lambda: dc.softmax(_x(), 0.5), TypeError, ["softmax", "axis", "float"]),
    ("softmax_int", lambda: dc.softmax(_xi()), TypeError, ["softmax", "int64"]),
    ("log_softmax_0d", lambda: dc.log_softmax(dc.tensor(1.0)), ValueError,
     ["log_softmax", "at least 1 dimension"]),
    # --- shape ops: axes never wrap around, sizes are never truncated
    ("transpose_axis_out_of_range", lambda: dc.transpose(_x(), (0, 3)), IndexError,
     ["transpose", "axis 3", "2 dimensions", "[-2, 1]"]),
    ("transpose_repeated", lambda: dc.transpose(_x(), (1, 1)), ValueError,
     ["transpose", "repeated axis", "(2, 3)"]),
    ("transpose_too_few", lambda: dc.transpose(_x(), (0,)), ValueError,
     ["transpose", "(0,)", "permutation", "(2, 3)"]),
    ("transpose_float_axes", lambda: dc.transpose(_x(), (0.0, 1.0)), TypeError,
     ["transpose", "axis must be an int", "float"]),
    ("permute_out_of_range", lambda: dc.ones(2, 3, 4).permute(0, 1, 5), IndexError,
     ["permute", "axis 5", "3 dimensions"]),
    ("permute_negative_wrap", lambda: _x().permute(-3, 0), IndexError, ["permute", "axis -3"]),
    ("permute_repeated", lambda: dc.permute(_x(), 0, -2), ValueError, ["permute", "repeated axis"]),
    ("swapaxes_out_of_range", lambda: dc.swapaxes(_x(), 0, 2), IndexError,
     ["swapaxes", "axis 2", "2 dimensions"]),
    ("swapaxes_float", lambda: dc.swapaxes(dc.ones(2, 3, 4), 0.5, 1), TypeError,
     ["swapaxes", "axis must be an int", "float"]),
    ("flatten_out_of_range", lambda: dc.flatten(_x(), 5), IndexError,
     ["flatten", "axis 5", "2 dimensions"]),
    ("flatten_negative_wrap", lambda: dc.flatten(_x(), -3), IndexError, ["flatten", "axis -3"]),
    ("flatten_float", lambda: dc.flatten(_x(), 1.0), TypeError, ["flatten", "axis must be an int"]),
    ("expand_dims_out_of_range", lambda: dc.expand_dims(_x(), 3), IndexError,
     ["expand_dims", "axis 3", "3 dimensions"]),
    ("expand_dims_tuple", lambda: dc.expand_dims(_x(), (0, 1)), TypeError,
     ["expand_dims", "axis must be an int", "tuple"]),
    ("squeeze_not_one", lambda: dc.squeeze(_x(), 0), ValueError, ["squeeze", "axis 0", "(2, 3)", "size 1"]),
    ("squeeze_out_of_range", lambda: dc.squeeze(_x(), 2), IndexError, ["squeeze", "axis 2"]),
    ("squeeze_float", lambda: dc.squeeze(_x(), 0.0), TypeError, ["squeeze", "axis", "float"]),
    ("reshape_float", lambda: dc.reshape(dc.ones(5), 2.5, 2), TypeError, ["reshape", "ints", "2.5"]),
    ("reshape_size", lambda: _x().reshape(4, 2), ValueError, ["reshape", "(2, 3)", "(4, 2)"]),
    ("reshape_two_inferred", lambda: _x().reshape(-1, -1), ValueError, ["reshape", "(-1, -1)"]),
    ("reshape_negative", lambda: _x().reshape(-2, 3), ValueError, ["reshape", "(-2, 3)"]),
    ("reshape_None", lambda: _x().reshape(None), TypeError, ["reshape", "ints", "NoneType"]),
    ("broadcast_to_shape", lambda: dc.broadcast_to(_x(), (3, 3)), ValueError,
     ["broadcast_to", "(2, 3)", "(3, 3)"]),
    ("broadcast_to_float", lambda: dc.broadcast_to(_x(), (2, 3.5)), TypeError,
     ["broadcast_to", "ints", "3.5"]),
    ("broadcast_to_negative", lambda: dc.broadcast_to(_x(), (-1, 3)), ValueError,
     ["broadcast_to", "non-negative", "(-1, 3)"]),
    ("concatenate_axis", lambda: dc.concatenate([_x(), _x()], 2), IndexError,
     ["concatenate", "axis 2", "2 dimensions"]),
    ("concatenate_shapes", lambda: dc.concatenate([dc.ones(2, 3), dc.ones(2, 4)]), ValueError,
     ["concatenate", "(2, 3)", "(2, 4)"]),
    ("concatenate_tensor", lambda: dc.concatenate(_x()), TypeError,
     ["concatenate", "sequence of tensors", "Tensor"]),
    ("concatenate_axis_None", lambda: dc.concatenate([_x(), _x()], None), TypeError,
     ["concatenate", "axis must be an int", "NoneType"]),
    ("concatenate_empty", lambda: dc.concatenate([]), ValueError, ["concatenate", "at least one"]),
    ("concatenate_0d", lambda: dc.concatenate([dc.tensor(1.0), dc.tensor(2.0)]), ValueError,
     ["concatenate", "zero-dimensional"]),
    ("concatenate_dtypes", lambda: dc.concatenate([_x(), _xi()]), TypeError,
     ["concatenate", "float32", "int64"]),
    ("concatenate_None", lambda: dc.concatenate([_x(), None]), TypeError, ["concatenate", "NoneType"]),
    ("stack_shapes", lambda: dc.stack([dc.ones(2, 3), dc.ones(3, 2)]), ValueError,
     ["stack", "(2, 3)", "(3, 2)"]),
    ("stack_axis", lambda: dc.stack([_x(), _x()], 3), IndexError, ["stack", "axis 3", "3 dimensions"]),
    ("stack_tensor", lambda: dc.stack(_x()), TypeError, ["stack", "sequence of tensors"]),
    ("stack_empty", lambda: dc.stack([]), ValueError, ["stack", "at least one"]),
    ("getitem_out_of_range", lambda: _x()[5], IndexError, ["getitem", "(2, 3)"]),
    ("iter_0d", lambda: list(dc.tensor(1.0)), TypeError, ["iteration over a 0-d tensor"]),
    ("astype_float16", lambda: _x().astype(np.float16), TypeError,
     ["astype", "deepcalc supports float32 and float64; got float16"]),
    ("astype_complex", lambda: dc.astype(_x(), np.complex64), TypeError, ["astype", "complex64"]),
    ("astype_unknown", lambda: _x().astype("foo"), TypeError, ["astype", "'foo'", "not a dtype"]),
    # --- creation: numbers, bools, ndarrays, nested lists of numbers; nothing else
    ("tensor_None", lambda: dc.tensor(None), TypeError, ["tensor", "NoneType"]),
    ("tensor_str", lambda: dc.tensor("abc"), TypeError, ["tensor", "str"]),
    ("tensor_complex", lambda: dc.tensor([1 + 2j]), TypeError, ["tensor", "list", "complex128"]),
    ("tensor_complex_array", lambda: dc.tensor(np.ones(2, complex)), TypeError, ["tensor", "complex128"]),
    ("tensor_object_array", lambda: dc.tensor(np.array([1, None])), TypeError, ["tensor", "object"]),
    ("tensor_ragged", lambda: dc.tensor([[1, 2], [3]]), ValueError, ["tensor", "ragged"]),
    ("tensor_dict", lambda: dc.tensor({1: 2}), TypeError, ["tensor", "dict"]),
    ("tensor_float16", lambda: dc.tensor(np.ones(3, np.float16)), TypeError,
     ["tensor", "deepcalc supports float32 and float64; got float16"]),
    ("tensor_float16_requires_grad", lambda: dc.tensor(np.ones(3, np.float16), requires_grad=True),
     TypeError, ["tensor", "deepcalc supports float32 and float64; got float16"]),
    ("tensor_dtype_float16", lambda: dc.tensor([1.0], dtype=np.float16), TypeError,
     ["tensor", "float16"]),
    ("tensor_longdouble", lambda: dc.tensor(np.ones(2, np.longdouble)), TypeError,
     ["tensor", "float32 and float64"]),
    ("tensor_int_requires_grad", lambda: dc.tensor(np.arange(3), requires_grad=True), TypeError,
     ["tensor", "only float tensors can require grad", "int64"]),
    ("tensor_unknown_dtype", lambda: dc.tensor([1.0], dtype="abc"), TypeError, ["tensor", "'abc'"]),
    ("zeros_float_size", lambda: dc.zeros(2.7), TypeError, ["zeros", "sizes must be ints", "2.7"]),
    ("zeros_negative", lambda: dc.zeros(-1, 2), ValueError, ["zeros", "non-negative", "(-1, 2)"]),
    ("zeros_float16", lambda: dc.zeros(2, dtype=np.float16), TypeError, ["zeros", "float16"]),
    ("ones_float_size", lambda: dc.ones(2.0), TypeError, ["ones", "sizes must be ints", "2.0"]),
    ("ones_tuple_float", lambda: dc.ones((2, 3.0)), TypeError, ["ones", "3.0"]),
    ("ones_int_requires_grad", lambda: dc.ones(2, dtype=np.int64, requires_grad=True), TypeError,
     ["ones", "require grad", "int64"]),
    ("full_float_size", lambda: dc.full(2.5, 1.0), TypeError, ["full", "ints", "2.5"]),
    ("full_None_value", lambda: dc.full((2,), None), TypeError, ["full", "fill value", "NoneType"]),
    ("zeros_like_None", lambda: dc.zeros_like(None), TypeError, ["zeros_like", "NoneType"]),
    ("ones_like_str", lambda: dc.ones_like("abc"), TypeError, ["ones_like", "str"]),
    ("arange_str", lambda: dc.arange("a"), TypeError, ["arange", "numbers", "str"]),
    ("arange_zero_step", lambda: dc.arange(0, 1, 0), ValueError, ["arange", "step", "non-zero"]),
    ("eye_float", lambda: dc.eye(2.5), TypeError, ["eye", "ints", "2.5"]),
    ("eye_negative", lambda: dc.eye(-1), ValueError, ["eye", "non-negative"]),
    ("randn_float_size", lambda: dc.randn(2.5), TypeError, ["randn", "ints", "2.5"]),
    ("randn_int_dtype", lambda: dc.randn(2, dtype=np.int64), TypeError,
     ["randn", "float32 or float64", "int64"]),
    ("rand_negative", lambda: dc.rand(-2), ValueError, ["rand", "non-negative", "(-2,)"]),
    ("manual_seed_float", lambda: dc.manual_seed(1.5), TypeError, ["manual_seed", "int", "float"]),
    # --- transforms
    ("grad_not_scalar", lambda: dc.grad(lambda a: a * 2)(_V), ValueError,
     ["grad", "single-element", "shape (3,)"]),
    ("grad_has_aux_not_tuple", lambda: dc.grad(_sq, has_aux=True)(_V), TypeError,
     ["grad", "has_aux=True requires f to return a tuple (output, aux)", "Tensor of shape ()"]),
    ("grad_has_aux_rows", lambda: dc.grad(lambda a: a[:2] * 2, has_aux=True)(_V), TypeError,
     ["grad", "has_aux=True", "Tensor of shape (2,)"]),
    ("grad_has_aux_triple", lambda: dc.grad(lambda a: (_sq(a), a, a), has_aux=True)(_V), TypeError,
     ["grad", "has_aux=True", "tuple of length 3"]),
    ("grad_argnums_range", lambda: dc.grad(_sq, argnums=1)(_V), ValueError,
     ["grad", "argnums 1", "1 positional"]),
    ("grad_argnums_float", lambda: dc.grad(_sq, argnums=0.5)(_V), TypeError,
     ["grad", "argnums must be an int or a tuple of ints", "0.5"]),
    ("grad_argnums_empty", lambda: dc.grad(_sq, argnums=())(_V), ValueError, ["grad", "non-empty"]),
    ("grad_argnums_repeated", lambda: dc.grad(lambda a, b: _sq(a * b), argnums=(0, -2))(_V, _V),
     ValueError, ["grad", "(0, -2)", "twice"]),
    ("grad_ndarray", lambda: dc.grad(_sq)(np.ones(3)), TypeError, ["grad", "Tensor", "ndarray"]),
    ("grad_int_tensor", lambda: dc.grad(_sq)(_xi()), TypeError, ["grad", "float", "int64"]),
    ("grad_float16", lambda: dc.grad(_sq)(_f16()), TypeError,
     ["grad", "deepcalc supports float32 and float64; got float16"]),
    ("grad_not_callable", lambda: dc.grad(3), TypeError, ["grad", "callable", "int"]),
    ("value_and_grad_not_scalar", lambda: dc.value_and_grad(lambda a: a)(_V), ValueError,
     ["value_and_grad", "single-element", "(3,)"]),
    ("value_and_grad_has_aux", lambda: dc.value_and_grad(_sq, has_aux=True)(_V), TypeError,
     ["value_and_grad", "has_aux=True", "tuple (output, aux)"]),
    ("vjp_ndarray", lambda: dc.vjp(lambda a: a, np.ones(3)), TypeError, ["vjp", "Tensor", "ndarray"]),
    ("vjp_output", lambda: dc.vjp(lambda a: 1.0, _V), TypeError, ["vjp", "output", "float"]),
    ("vjp_cotangent_shape", lambda: dc.vjp(lambda a: a * 2, _V)[1](dc.ones(2, dtype=np.float64)),
     ValueError, ["vjp", "cotangent", "(2,)", "(3,)"]),
    ("vjp_cotangent_count", lambda: dc.vjp(lambda a: (a, a), _V)[1](_V), ValueError,
     ["vjp", "1 cotangents", "2 outputs"]),
    ("vjp_cotangent_None", lambda: dc.vjp(lambda a: a * 2, _V)[1](None), TypeError,
     ["vjp", "cotangent", "NoneType", "(3,)"]),
    ("jvp_bare_primal", lambda: dc.jvp(lambda a: a * 2, _ROW, _ROW), TypeError,
     ["jvp", "primals must be a tuple of Tensors", "got Tensor", "(x,)"]),
    ("jvp_bare_tangent", lambda: dc.jvp(lambda a: a * 2, (_ROW,), _ROW), TypeError,
     ["jvp", "tangents must be a tuple"]),
    ("jvp_counts", lambda: dc.jvp(lambda a: a, (_V,), (_V, _V)), ValueError,
     ["jvp", "1 primals", "2 tangents"]),
    ("jvp_tangent_shape", lambda: dc.jvp(lambda a: a, (_V,), (dc.ones(2, dtype=np.float64),)),
     ValueError, ["jvp", "tangent", "(2,)", "(3,)"]),
    ("jvp_tangent_dtype", lambda: dc.jvp(lambda a: a, (_V,), (dc.ones(3),)), ValueError,
     ["jvp", "tangent float32", "float64"]),
    ("jvp_tangent_None", lambda: dc.jvp(lambda a: a, (_V,), (None,)), TypeError,
     ["jvp", "tangent", "NoneType"]),
    ("jvp_output", lambda: dc.jvp(lambda a: 2.0, (_V,), (_V,)), TypeError, ["jvp", "output", "float"]),
    ("hvp_bare_primal", lambda: dc.hvp(_sq, _ROW, _ROW), TypeError,
     ["hvp", "primals must be a tuple of Tensors", "(x,)"]),
    ("hvp_not_scalar", lambda: dc.hvp(lambda a: a * a, (_V,), (_V,)), ValueError,
     ["hvp", "single-element", "(3,)"]),
    ("jacrev_argnums", lambda: dc.jacrev(lambda a: a, argnums=2)(_V), ValueError,
     ["jacrev", "argnums 2", "1 positional"]),
    ("jacrev_has_aux", lambda: dc.jacrev(lambda a: a * 2, has_aux=True)(_V), TypeError,
     ["jacrev", "has_aux=True", "(3,)"]),
    ("jacrev_dict_input", lambda: dc.jacrev(lambda d: d["a"])({"a": _V}), TypeError,
     ["jacrev", "Tensor", "dict"]),
    ("jacrev_output", lambda: dc.jacrev(lambda a: 2.0)(_V), TypeError, ["jacrev", "output", "float"]),
    ("jacrev_chunk_size", lambda: dc.jacrev(lambda a: a, chunk_size=0), ValueError,
     ["jacrev", "chunk_size", "0"]),
    ("jacfwd_argnums", lambda: dc.jacfwd(lambda a: a, argnums=-2)(_V), ValueError,
     ["jacfwd", "argnums -2"]),
    ("jacfwd_int_input", lambda: dc.jacfwd(lambda a: a)(_xi()), TypeError, ["jacfwd", "int64"]),
    ("jacfwd_output", lambda: dc.jacfwd(lambda a: (a, a))(_V), TypeError, ["jacfwd", "output", "tuple"]),
    ("hessian_argnums", lambda: dc.hessian(_sq, argnums=3)(_V), ValueError, ["hessian", "argnums 3"]),
    ("hessian_ndarray", lambda: dc.hessian(_sq)(np.ones(3)), TypeError, ["hessian", "ndarray"]),
    ("jacobian_logdet_not_square", lambda: dc.jacobian_logdet(lambda a: a[:2], _V), ValueError,
     ["jacobian_logdet", "3 inputs", "2 outputs", "square"]),
    ("jacobian_logdet_ndarray", lambda: dc.jacobian_logdet(lambda a: a, np.ones(3)), TypeError,
     ["jacobian_logdet", "ndarray"]),
    ("vmap_not_callable", lambda: dc.vmap(3), TypeError, ["vmap", "callable", "int"]),
    ("vmap_sizes", lambda: dc.vmap(lambda a, b: a + b)(_V, dc.tensor(np.ones(4))), ValueError,
     ["vmap", "argument 0 has size 3", "argument 1 has size 4"]),
    ("vmap_axis", lambda: dc.vmap(lambda a: a, in_axes=1)(_V), ValueError,
     ["vmap", "in_axes 1", "argument 0", "(3,)"]),
    ("vmap_scalar", lambda: dc.vmap(lambda a: a)(dc.tensor(1.0)), ValueError,
     ["vmap", "in_axes 0", "()"]),
    ("vmap_in_axes_type", lambda: dc.vmap(lambda a: a, in_axes="0"), TypeError,
     ["vmap", "in_axes", "str"]),
    ("vmap_in_axes_structure", lambda: dc.vmap(lambda a: a, in_axes=([0, 0],))(_V), ValueError,
     ["vmap", "in_axes", "2 entries", "(3,)"]),
    ("vmap_nothing_mapped", lambda: dc.vmap(lambda a: a, in_axes=None)(_V), ValueError,
     ["vmap", "no argument is mapped"]),
    ("vmap_not_tensor", lambda: dc.vmap(lambda a: a)(3.0), TypeError,
     ["vmap", "argument 0", "float", "in_axes None"]),
    ("vmap_output", lambda: dc.vmap(lambda a: 2.0)(_V), TypeError, ["vmap", "output 0", "float"]),
    ("vmap_out_axes_none", lambda: dc.vmap(lambda a: a, out_axes=None)(_V), ValueError,
     ["vmap", "out_axes is None", "output 0"]),
    ("vmap_randomness", lambda: dc.vmap(lambda a: a, randomness="never"), ValueError,
     ["vmap", "randomness", "'never'"]),
    ("vmap_chunk_size", lambda: dc.vmap(lambda a: a, chunk_size=-1), ValueError,
     ["vmap", "chunk_size", "-1"]),
    ("vmap_reads_values", lambda: dc.vmap(lambda a: a * float(a.sum()))(_V), RuntimeError,
     ["vmap", "float()", "batched tensor"]),
]


@pytest.mark.parametrize("name, fn, exc, words", ERRORS, ids=[row[0] for row in ERRORS])
def test_error_inputs(name, fn, exc, words):
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"{name}: {type(info.value).__name__}({message!r}) lacks {missing}"


def test_every_public_op_has_error_rows():
    """Each op, creation function and transform that deepcalc exports has a row above."""
    mine = ("deepcalc.ops", "deepcalc.creation", "deepcalc.func.transforms", "deepcalc.func.vmap")
    public = {n for n in dc.__all__
              if callable(getattr(dc, n)) and getattr(getattr(dc, n), "__module__", "").startswith(mine)}
    covered = {row[3][0] for row in ERRORS}
    assert len(public) > 60
    assert public <= covered, sorted(public - covered)


def test_axis_errors_are_index_and_value_errors():
    """torch raises IndexError for a bad axis; NumPy's AxisError is also a ValueError, so code
    catching either keeps working."""
    for fn in (lambda: dc.sum(_x(), axis=2), lambda: dc.transpose(_x(), (0, 3)),
               lambda: dc.stack([_x()], axis=-4)):
        with pytest.raises(IndexError):
            fn()
        with pytest.raises(ValueError):
            fn()


# --- NaN and ties through maximum / minimum (torch's values and gradients) -------------------

_A = np.array([NAN, 1.0, 2.0, 2.0, 3.0, -1.0])
_B = np.array([1.0, NAN, 2.0, 3.0, 1.0, NAN])
_G = np.arange(1.0, 7.0)
# torch.maximum / torch.minimum on _A, _B and their gradients for the cotangent _G: NaN from
# either side; at a tie each input gets half; where a NaN is involved both get all of it
_TORCH = {
    "maximum": ([NAN, NAN, 2, 3, 3, NAN], [1, 2, 1.5, 0, 5, 6], [1, 2, 1.5, 4, 0, 6]),
    "minimum": ([NAN, NAN, 2, 2, 1, NAN], [1, 2, 1.5, 4, 0, 6], [1, 2, 1.5, 0, 5, 6]),
}


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maximum_minimum_nan_and_ties_match_torch(name, dtype):
    out_ref, ga_ref, gb_ref = _TORCH[name]
    a = dc.tensor(_A.astype(dtype), requires_grad=True)
    b = dc.tensor(_B.astype(dtype), requires_grad=True)
    out = getattr(dc, name)(a, b)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.data, out_ref)
    np.testing.assert_array_equal(out.data, getattr(np, name)(_A, _B).astype(dtype))
    out.backward(dc.tensor(_G.astype(dtype)))
    np.testing.assert_array_equal(a.grad.data, ga_ref)
    np.testing.assert_array_equal(b.grad.data, gb_ref)
    # argument order does not matter for the value, and the gradients swap
    a.grad = b.grad = None
    getattr(dc, name)(b, a).backward(dc.tensor(_G.astype(dtype)))
    np.testing.assert_array_equal(a.grad.data, ga_ref)
    np.testing.assert_array_equal(b.grad.data, gb_ref)


def test_maximum_against_torch_when_installed():
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(3)
    a_np = r.integers(-2, 3, (4, 5)).astype(np.float64)
    b_np = r.integers(-2, 3, (5,)).astype(np.float64)  # broadcast, many ties
    a_np[0, 1] = b_np[3] = NAN
    g_np = r.standard_normal((4, 5))
    for name in ("maximum", "minimum"):
        a, b = dc.tensor(a_np, requires_grad=True), dc.tensor(b_np, requires_grad=True)
        getattr(dc, name)(a, b).backward(dc.tensor(g_np))
        at = torch.tensor(a_np, requires_grad=True)
        bt = torch.tensor(b_np, requires_grad=True)
        getattr(torch, name)(at, bt).backward(torch.tensor(g_np))
        np.testing.assert_allclose(a.grad.data, at.grad.numpy(), rtol=1e-15)
        np.testing.assert_allclose(b.grad.data, bt.grad.numpy(), rtol=1e-15)


def test_maximum_jvp_matches_its_vjp():
    a_np = np.array([[1.0, 2.0, NAN], [0.0, 5.0, 2.0]])
    b_np = np.array([1.0, 3.0, 2.0])
    ta, tb = np.full((2, 3), 1.0), np.array([10.0, 20.0, 30.0])
    _, t = dc.jvp(dc.maximum, (dc.tensor(a_np), dc.tensor(b_np)), (dc.tensor(ta), dc.tensor(tb)))
    # tie: (1 + 10) / 2; b wins: 20; NaN: both; b wins: 10; a wins: 1; tie: (1 + 30) / 2
    np.testing.assert_array_equal(t.data, [[5.5, 20, 31], [10, 1, 15.5]])


# --- max / min reductions with NaN -----------------------------------------------------------

@pytest.mark.parametrize("name", ["max", "min"])
def test_reduction_gradient_goes_to_the_nan(name):
    x = dc.tensor(np.array([1.0, NAN, 2.0]), requires_grad=True)
    out = getattr(dc, name)(x)
    assert np.isnan(out.item())
    out.backward()
    np.testing.assert_array_equal(x.grad.data, [0, 1, 0])     # torch.max(x).backward()
    # two NaNs share it (torch's evenly-distributed rule), other slices keep their ties rule
    x = dc.tensor(np.array([[NAN, 3.0, NAN], [2.0, 2.0, -1.0], [4.0, -4.0, 0.0]]),
                  requires_grad=True)
    out = getattr(dc, name)(x, axis=1, keepdims=True)
    assert out.shape == (3, 1) and np.isnan(out.data[0, 0])
    out.sum().backward()
    row2 = [1, 0, 0] if name == "max" else [0, 1, 0]
    row1 = [0.5, 0.5, 0] if name == "max" else [0, 0, 1]
    np.testing.assert_array_equal(x.grad.data, [[0.5, 0, 0.5], row1, row2])
    # forward mode agrees
    _, t = dc.jvp(lambda a: getattr(dc, name)(a, axis=0), (dc.tensor(x.data),),
                  (dc.tensor(np.arange(9.0).reshape(3, 3)),))
    assert np.isfinite(t.data).all()


# --- dtypes of integer arithmetic ------------------------------------------------------------

def test_integer_true_division_gives_float32():
    a = dc.tensor(np.array([1, 2, 7]))
    b = dc.tensor(np.array([2, 4, 2]))
    q = a / b
    assert q.dtype == np.float32                       # torch: the default float dtype
    np.testing.assert_array_equal(q.data, np.array([0.5, 0.5, 3.5], np.float32))
    assert (q + dc.ones(3)).dtype == np.float32        # the next float32 op no longer raises
    assert (1 / a).dtype == np.float32 and (a / 2).dtype == np.float32
    assert (a / dc.ones(3, dtype=np.float64)).dtype == np.float64
    assert (a ** 0.5).dtype == np.float32 and (a ** 2).dtype == np.int64
    np.testing.assert_allclose((a ** 0.5).data, np.sqrt([1, 2, 7]), rtol=1e-7)


def test_clip_keeps_integer_tensors_integer():
    x = dc.tensor(np.arange(5))
    y = dc.clip(x, 1, 3)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y.data, [1, 1, 2, 3, 3])
    assert dc.clip(x, 0.5, 3).dtype == np.float32


# --- reductions of 0-d tensors and over empty axes --------------------------------------------

@pytest.mark.parametrize("name, value, grad", [("sum", 2.5, 1), ("mean", 2.5, 1), ("max", 2.5, 1),
                                               ("min", 2.5, 1), ("logsumexp", 2.5, 1),
                                               ("var", 0.0, 0)])
@pytest.mark.parametrize("axis", [0, -1, (0,), None])
def test_reductions_of_0d_tensors_accept_axis_0_and_minus_1(name, value, grad, axis):
    x = dc.tensor(np.array(2.5), requires_grad=True)
    out = getattr(dc, name)(x, axis=axis)
    assert out.shape == ()
    assert out.item() == value
    out.backward()
    assert x.grad.item() == grad
    assert getattr(dc, name)(x, axis=axis, keepdims=True).shape == ()


def test_logsumexp_over_an_empty_axis_is_minus_inf():
    x = dc.tensor(np.zeros((0, 3)), requires_grad=True)
    out = dc.logsumexp(x, axis=0)
    assert out.shape == (3,)
    np.testing.assert_array_equal(out.data, [-np.inf] * 3)   # torch.logsumexp(zeros(0, 3), 0)
    assert dc.logsumexp(x, axis=1).shape == (0,)
    assert dc.logsumexp(x, axis=0, keepdims=True).shape == (1, 3)
    assert dc.logsumexp(x).item() == -np.inf
    out.sum().backward()
    assert x.grad.shape == (0, 3)


def test_flatten_and_swapaxes_of_a_0d_tensor():
    x = dc.tensor(2.0)
    assert dc.flatten(x).shape == (1,)                        # torch.flatten(tensor(2.))
    assert dc.swapaxes(x, 0, -1).shape == ()
    assert dc.squeeze(x, 0).shape == ()


# --- what is still accepted ---------------------------------------------------------------------

def test_tensor_accepts_numbers_bools_ndarrays_and_nested_lists():
    assert dc.tensor(True).dtype == np.bool_
    assert dc.tensor(3).dtype == np.int64 and dc.tensor(3.0).dtype == np.float32  # as torch
    assert dc.tensor([[1, 2], [3, 4]]).shape == (2, 2)
    assert dc.tensor([1.5, 2]).dtype == np.float32
    assert dc.tensor(np.arange(3)).dtype == np.int64
    a64 = np.ones(3)
    assert dc.tensor(a64).data is a64                         # wrapped, not copied
    # an explicit dtype converts float16 data (no silent precision choice)
    assert dc.tensor(np.ones(2, np.float16), dtype=np.float32).dtype == np.float32
    assert dc.tensor([1, 2], requires_grad=True).dtype == np.float32
    assert dc.zeros((2, 3)).shape == dc.ones(2, 3).shape == (2, 3)
    assert dc.zeros(np.int64(2)).shape == (2,)
    assert dc.zeros(2, dtype=np.int32).dtype == np.int32
    assert dc.full((2,), np.float32(1.5)).data.tolist() == [1.5, 1.5]
    assert dc.eye(2, 3).shape == (2, 3)
    assert dc.arange(0, 1, 0.25).data.tolist() == [0, 0.25, 0.5, 0.75]
    x = dc.ones(2, 3)
    assert (x + np.float32(2)).dtype == np.float32 and (x * [1, 2, 3]).shape == (2, 3)
    assert dc.stack(t for t in (x, x)).shape == (2, 2, 3)     # any iterable of tensors


def test_jvp_and_hvp_take_tuples_or_lists():
    x = dc.tensor(np.array([[1.0, 2.0, 3.0]]))
    out, t = dc.jvp(lambda a: a * 2, [x], [dc.ones_like(x)])
    assert out.shape == t.shape == (1, 3)
    value, hv = dc.hvp(lambda a: (a * a * a).sum(), (x,), (dc.ones_like(x),))
    assert hv.shape == (1, 3)
    np.testing.assert_allclose(hv.data, 6 * x.data)


def test_python_int_keeps_an_integer_tensor_integer():
    """torch's rule: int tensor (op) Python int stays int; a Python float gives the default float."""
    a = dc.tensor(np.array([1, 2], np.int64))
    assert (a + 1).dtype == np.int64 and (1 - a).dtype == np.int64 and (a * 3).dtype == np.int64
    np.testing.assert_array_equal((a + 1).data, [2, 3])
    assert (a * 1.5).dtype == np.float32 and (a / 2).dtype == np.float32
