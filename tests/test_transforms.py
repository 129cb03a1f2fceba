"""Function transforms against torch.func (float64): jacrev, jacfwd, hessian, hvp, jvp, vjp and
their compositions; perturbation confusion; jacobian_logdet; functional_call over a parameter
dict; gradcheck's failure reports."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.autodiff.graph import Primitive, apply, wrap
from deepcalc.testing import GradcheckError, gradcheck, gradgradcheck

torch = pytest.importorskip("torch")
tf = torch.func

RTOL, ATOL = 1e-10, 1e-12


class _DC:
    tanh, exp = staticmethod(dc.tanh), staticmethod(dc.exp)
    softmax = staticmethod(lambda x, axis: dc.softmax(x, axis))
    logsumexp = staticmethod(lambda x, axis: dc.logsumexp(x, axis))
    T = staticmethod(lambda x: x.T)


class _TO:
    tanh, exp = staticmethod(torch.tanh), staticmethod(torch.exp)
    softmax = staticmethod(lambda x, axis: torch.softmax(x, axis))
    logsumexp = staticmethod(lambda x, axis: torch.logsumexp(x, axis))
    T = staticmethod(lambda x: x.T)


_R = np.random.default_rng(7)
W1_NP, W2_NP = 0.7 * _R.standard_normal((3, 4)), 0.7 * _R.standard_normal((4, 3))


def _consts(m):
    if m is _DC:
        return dc.tensor(W1_NP), dc.tensor(W2_NP)
    return torch.from_numpy(W1_NP), torch.from_numpy(W2_NP)


def mlp_out(m, x):
    """A small MLP, matrix in (2, 3), matrix out (2, 3): softmax(tanh(x W1) W2)."""
    w1, w2 = _consts(m)
    return m.softmax(m.tanh(x @ w1) @ w2, -1)


def mlp_loss(m, x):
    """Scalar: logsumexp over rows of the logits plus a softmax-weighted term."""
    w1, w2 = _consts(m)
    z = m.tanh(x @ w1) @ w2
    return m.logsumexp(z, -1).sum() + (m.softmax(z, 0) * z).sum()


def two_args(m, w, x):
    """Two matrix arguments: tanh(x w) * exp(-x w) of shape (2, 4)."""
    z = x @ w
    return m.tanh(z) * m.exp(-z)


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t.data)


def _close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(_np(a), _np(b), rtol=rtol, atol=atol)


@pytest.fixture
def x_np(rng):
    return rng.standard_normal((2, 3))


def _both(a):
    return dc.tensor(a), torch.from_numpy(a.copy())


# --- Jacobians, Hessians, jvp, vjp against torch.func -------------------------------------------

@pytest.mark.parametrize("transform", ["jacrev", "jacfwd"])
def test_generalized_jacobian_matrix_in_matrix_out(transform, x_np):
    xd, xt = _both(x_np)
    J = getattr(dc, transform)(lambda x: mlp_out(_DC, x))(xd)
    Jt = getattr(tf, transform)(lambda x: mlp_out(_TO, x))(xt)
    assert J.shape == (2, 3, 2, 3)           # out.shape + in.shape
    _close(J, Jt)


@pytest.mark.parametrize("transform", ["jacrev", "jacfwd"])
@pytest.mark.parametrize("argnums", [0, 1, (0, 1), (1, 0)])
def test_jacobian_argnums(transform, argnums, rng):
    w_np, x_np = rng.standard_normal((3, 4)), rng.standard_normal((2, 3))
    J = getattr(dc, transform)(lambda w, x: two_args(_DC, w, x), argnums=argnums)(
        dc.tensor(w_np), dc.tensor(x_np))
    Jt = getattr(tf, transform)(lambda w, x: two_args(_TO, w, x), argnums=argnums)(
        torch.from_numpy(w_np), torch.from_numpy(x_np))
    if isinstance(argnums, int):
        assert J.shape == (2, 4) + (w_np.shape, x_np.shape)[argnums]
        _close(J, Jt)
    else:
        assert isinstance(J, tuple) and len(J) == 2
        for a, jd, jt in zip(argnums, J, Jt):
            assert jd.shape == (2, 4) + (w_np.shape, x_np.shape)[a]
            _close(jd, jt)


def test_hessian(x_np):
    xd, xt = _both(x_np)
    H = dc.hessian(lambda x: mlp_loss(_DC, x))(xd)
    assert H.shape == (2, 3, 2, 3)
    _close(H, tf.hessian(lambda x: mlp_loss(_TO, x))(xt))
    Hm = H.data.reshape(6, 6)
    np.testing.assert_allclose(Hm, Hm.T, rtol=1e-10, atol=1e-12)


def test_hvp(x_np, rng):
    v_np = rng.standard_normal(x_np.shape)
    xd, xt = _both(x_np)
    vd, vt = _both(v_np)
    value, hv = dc.hvp(lambda x: mlp_loss(_DC, x), (xd,), (vd,))
    _, hv_t = tf.jvp(tf.grad(lambda x: mlp_loss(_TO, x)), (xt,), (vt,))
    _close(hv, hv_t)
    _close(value, mlp_loss(_TO, xt))
    _, hv_t2 = torch.autograd.functional.hvp(lambda x: mlp_loss(_TO, x), xt, vt)
    _close(hv, hv_t2)


def test_jvp_and_vjp(x_np, rng):
    t_np, u_np = rng.standard_normal(x_np.shape), rng.standard_normal((2, 3))
    xd, xt = _both(x_np)
    out, tan = dc.jvp(lambda x: mlp_out(_DC, x), (xd,), (dc.tensor(t_np),))
    out_t, tan_t = tf.jvp(lambda x: mlp_out(_TO, x), (xt,), (torch.from_numpy(t_np),))
    _close(out, out_t)
    _close(tan, tan_t)
    out, vjp_fn = dc.vjp(lambda x: mlp_out(_DC, x), xd)
    out_t, vjp_t = tf.vjp(lambda x: mlp_out(_TO, x), xt)
    (g,) = vjp_fn(dc.tensor(u_np))
    (g_t,) = vjp_t(torch.from_numpy(u_np))
    _close(out, out_t)
    _close(g, g_t)


def test_vjp_two_primals_nested_output(rng):
    w_np, x_np = rng.standard_normal((3, 4)), rng.standard_normal((2, 3))
    c1, c2 = rng.standard_normal((2, 4)), rng.standard_normal(())
    f = lambda m: (lambda w, x: (two_args(m, w, x), (x * x).sum()))
    (o1, o2), fn = dc.vjp(f(_DC), dc.tensor(w_np), dc.tensor(x_np))
    (p1, p2), fn_t = tf.vjp(f(_TO), torch.from_numpy(w_np), torch.from_numpy(x_np))
    _close(o1, p1)
    _close(o2, p2)
    gw, gx = fn((dc.tensor(c1), dc.tensor(c2)))
    gw_t, gx_t = fn_t((torch.from_numpy(c1), torch.from_numpy(c2)))
    _close(gw, gw_t)
    _close(gx, gx_t)


# --- compositions ------------------------------------------------------------------------------

def test_jvp_of_grad(x_np, rng):
    v_np = rng.standard_normal(x_np.shape)
    xd, xt = _both(x_np)
    _, t = dc.jvp(dc.grad(lambda x: mlp_loss(_DC, x)), (xd,), (dc.tensor(v_np),))
    _, t_t = tf.jvp(tf.grad(lambda x: mlp_loss(_TO, x)), (xt,), (torch.from_numpy(v_np),))
    _close(t, t_t)


def test_grad_of_jvp(x_np, rng):
    v_np = rng.standard_normal(x_np.shape)
    vd, vt = _both(v_np)
    xd, xt = _both(x_np)
    g = dc.grad(lambda x: dc.jvp(lambda y: mlp_out(_DC, y), (x,), (vd,))[1].sum())(xd)
    g_t = tf.grad(lambda x: tf.jvp(lambda y: mlp_out(_TO, y), (x,), (vt,))[1].sum())(xt)
    _close(g, g_t)


@pytest.mark.parametrize("outer, inner", [("jacfwd", "jacrev"), ("jacrev", "jacrev"),
                                          ("jacfwd", "jacfwd"), ("jacrev", "jacfwd")])
def test_nested_jacobians(outer, inner, rng):
    x_np = rng.standard_normal(3)
    xd, xt = _both(x_np)
    f = lambda m: (lambda x: m.softmax(m.tanh(x) * x, 0))
    H = getattr(dc, outer)(getattr(dc, inner)(f(_DC)))(xd)
    H_t = getattr(tf, outer)(getattr(tf, inner)(f(_TO)))(xt)
    assert H.shape == (3, 3, 3)
    _close(H, H_t)


def test_grad_of_grad():
    f = lambda m: (lambda x: (x ** 3 * m.tanh(x)).sum())
    for x0 in (-1.3, 0.4, 2.0):
        d2 = dc.grad(dc.grad(f(_DC)))(dc.tensor(np.array(x0)))
        d2_t = tf.grad(tf.grad(f(_TO)))(torch.tensor(x0, dtype=torch.float64))
        _close(d2, d2_t)
        d3 = dc.grad(dc.grad(dc.grad(f(_DC))))(dc.tensor(np.array(x0)))
        _close(d3, tf.grad(tf.grad(tf.grad(f(_TO))))(torch.tensor(x0, dtype=torch.float64)))


# --- perturbation confusion ----------------------------------------------------------------------

def _d_inner(kind, fn, at):
    """d fn / dy at y = at (element-wise), by reverse or forward mode."""
    if kind == "grad":
        return dc.grad(lambda y: fn(y).sum())(at)
    return dc.jvp(fn, (at,), (dc.ones_like(at),))[1]


def _d_outer(kind, fn, at):
    if kind == "grad":
        return dc.grad(lambda x: fn(x).sum())(at)
    return dc.jvp(fn, (at,), (dc.ones_like(at),))[1]


PAIRINGS = [(o, i) for o in ("grad", "jvp") for i in ("grad", "jvp")]


@pytest.mark.parametrize("outer, inner", PAIRINGS)
def test_perturbation_confusion_x_times_dxy(outer, inner):
    """d/dx [x * d/dy (x y)|_{y=x}] = d/dx [x * x] = 2x  (confusion gives 3x)."""
    x = dc.tensor(np.array([0.5, -1.25, 3.0]))
    d = _d_outer(outer, lambda x: x * _d_inner(inner, lambda y: x * y, x), x)
    np.testing.assert_allclose(d.data, 2 * x.data, rtol=1e-14)


@pytest.mark.parametrize("outer, inner", PAIRINGS)
def test_perturbation_confusion_siskind_pearlmutter(outer, inner):
    """D(x -> x * D(y -> x + y)(1))(1) = 1 (a confused implementation gives 2)."""
    one = dc.tensor(np.array([1.0]))
    d = _d_outer(outer, lambda x: x * _d_inner(inner, lambda y: x + y, one), one)
    np.testing.assert_allclose(d.data, [1.0], rtol=1e-14)


# --- jacobian_logdet -------------------------------------------------------------------------------

_A = np.array([[0.9, -0.3, 0.2], [0.4, 0.8, -0.5], [-0.2, 0.6, 1.1]])


def _flow(x):
    """x -> tanh(x A) - 0.3 x: its Jacobian is A^T diag... with a negative determinant for the
    inputs used below, so the sign is exercised too."""
    return dc.tanh(x @ dc.tensor(_A)) - 0.3 * x


def _flow_jacobian(x):
    s = 1 - np.tanh(x @ _A) ** 2
    return _A.T * s[:, None] - 0.3 * np.eye(3)


@pytest.mark.parametrize("x0", [[0.3, -0.7, 1.2], [2.0, 1.5, -2.5]])
def test_jacobian_logdet_matches_numpy(x0):
    x = dc.tensor(np.array(x0))
    sign, logdet = dc.jacobian_logdet(_flow, x)
    ref_sign, ref_logdet = np.linalg.slogdet(_flow_jacobian(np.array(x0)))
    assert sign.item() == ref_sign
    np.testing.assert_allclose(logdet.item(), ref_logdet, rtol=1e-12)


def test_jacobian_logdet_signs_differ():
    """The two points above really have Jacobians of different signs (so sign is checked)."""
    s = {np.sign(np.linalg.det(_flow_jacobian(np.array(p))))
         for p in ([0.3, -0.7, 1.2], [2.0, 1.5, -2.5])}
    assert s == {-1.0, 1.0}


def test_jacobian_logdet_gradient_by_finite_differences():
    x = dc.tensor(np.array([0.3, -0.7, 1.2]), requires_grad=True)
    assert gradcheck(lambda x: dc.jacobian_logdet(_flow, x)[1], (x,))
    m = dc.tensor(np.array([[0.2, -0.4], [0.9, 0.1]]), requires_grad=True)
    B = dc.tensor(np.array([[1.0, 0.5], [-0.3, 0.8]]))
    assert gradcheck(lambda m: dc.jacobian_logdet(lambda z: dc.tanh(z @ B) + z ** 3, m)[1], (m,))


def test_jacobian_logdet_rejects_non_square():
    with pytest.raises(ValueError, match="jacobian_logdet: .*3 inputs.*2 outputs"):
        dc.jacobian_logdet(lambda x: x[:2] * 2, dc.tensor(np.ones(3)))


# --- functional_call over a parameter dict -------------------------------------------------------

def _model(m):
    def fn(params, x):
        return m.logsumexp(m.tanh(x @ params["W"] + params["b"]) @ params["V"], -1).sum()
    return fn


def test_functional_call_and_grad_over_dict(rng):
    p_np = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4),
            "V": rng.standard_normal((4, 2))}
    x_np = rng.standard_normal((5, 3))
    params = {k: dc.tensor(v) for k, v in p_np.items()}
    x = dc.tensor(x_np)
    value = dc.func.functional_call(_model(_DC), params, x)
    tparams = {k: torch.from_numpy(v) for k, v in p_np.items()}
    xt = torch.from_numpy(x_np)
    _close(value, _model(_TO)(tparams, xt))
    grads = dc.grad(lambda p: dc.func.functional_call(_model(_DC), p, x))(params)
    grads_t = tf.grad(lambda p: _model(_TO)(p, xt))(tparams)
    assert set(grads) == set(p_np)
    for k in p_np:
        assert grads[k].shape == p_np[k].shape
        _close(grads[k], grads_t[k])
    with pytest.raises(TypeError, match="functional_call"):
        dc.func.functional_call(3, params, x)


# --- gradcheck reports failures ---------------------------------------------------------------

class WrongVjpSquare(Primitive):
    """x^2 with a deliberately wrong VJP (3x instead of 2x) and a right JVP."""
    name = "wrong_vjp_square"

    def forward(self, x):
        return x * x

    def vjp(self, ctx, g):
        return (3 * g * ctx.inputs[0],)

    def jvp(self, ctx, t):
        return 2 * t * ctx.inputs[0]


class WrongJvpScale(Primitive):
    """a * b with a right VJP and a JVP that drops b's tangent."""
    name = "wrong_jvp_mul"

    def forward(self, a, b):
        return a * b

    def vjp(self, ctx, g):
        a, b = ctx.inputs
        return g * b, g * a

    def jvp(self, ctx, ta, tb):
        return ta * ctx.inputs[1] if ta is not None else None


class ConstantFactorSquare(Primitive):
    """x^2 whose VJP/JVP use 2x as a constant: right first derivatives, wrong second ones."""
    name = "constant_factor_square"

    def forward(self, x):
        return x * x

    def vjp(self, ctx, g):
        return (g * wrap(2 * ctx.inputs[0].data),)

    def jvp(self, ctx, t):
        return t * wrap(2 * ctx.inputs[0].data)


def test_gradcheck_reports_wrong_vjp():
    xs = np.array([[0.5, -2.0, 1.0], [0.25, 1.5, -0.75]])
    x = dc.tensor(xs, requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x: apply(WrongVjpSquare(), (x,)), (x,))
    msg = str(info.value)
    # the worst entry is at the largest |x|: x[0, 1] = -2 (2x = -4, the wrong rule gives -6)
    assert "reverse-mode" in msg and "input 0" in msg and "shape (2, 3)" in msg
    assert "output element (0, 1)" in msg and "input element (0, 1)" in msg
    assert "finite differences give -4" in msg and "reverse mode gives -6" in msg
    assert gradcheck(lambda x: apply(WrongVjpSquare(), (x,)), (x,), raise_exception=False) is False


def test_gradcheck_reports_wrong_jvp_and_names_the_input():
    a = dc.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = dc.tensor(np.array([3.0, -5.0]), requires_grad=True)
    f = lambda a, b: apply(WrongJvpScale(), (a, b))
    assert gradcheck(f, (a, b), check_forward=False)
    with pytest.raises(GradcheckError, match=r"forward-mode .*input 1 .*input element \(1,\): "
                                             r"finite differences give 2, forward mode gives 0"):
        gradcheck(f, (a, b))


def test_gradgradcheck_catches_non_differentiable_rule():
    x = dc.tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    f = lambda x: apply(ConstantFactorSquare(), (x,))
    assert gradcheck(f, (x,))
    with pytest.raises(GradcheckError, match="input 0"):
        gradgradcheck(f, (x,))
    assert gradgradcheck(lambda x: x * x, (x,))


def test_gradcheck_requires_float64():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x * 2, (dc.tensor(np.ones(2, np.float32), requires_grad=True),))


def test_gradcheck_on_noncontiguous_input():
    """Regression: gradcheck perturbs inputs in place; on a transposed view it used to perturb a
    copy and report finite differences of 0."""
    x = dc.tensor(np.arange(12.0).reshape(3, 4).T, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda x: (x * x).sum(axis=0), (x,))
    np.testing.assert_array_equal(x.data, np.arange(12.0).reshape(3, 4).T)  # restored


# --- transform argument errors -------------------------------------------------------------------

def test_transform_errors():
    x = dc.tensor(np.ones(3))
    with pytest.raises(ValueError, match="grad: f must return a single-element Tensor"):
        dc.grad(lambda x: x * 2)(x)
    with pytest.raises(ValueError, match="argnums"):
        dc.jacrev(lambda x: x, argnums=2)(x)
    with pytest.raises(ValueError, match="chunk_size"):
        dc.jacfwd(lambda x: x, chunk_size=0)
    with pytest.raises(TypeError, match="float"):
        dc.grad(lambda x: x.sum())(dc.tensor(np.arange(3)))
    with pytest.raises(ValueError, match="jvp: tangent"):
        dc.jvp(lambda x: x, (x,), (dc.tensor(np.ones(2)),))


def test_value_and_grad_argnums_and_has_aux(rng):
    w_np, x_np = rng.standard_normal((3, 4)), rng.standard_normal((2, 3))
    f = lambda m: (lambda w, x: (two_args(m, w, x).sum(), x * 2))
    (value, aux), (gw, gx) = dc.value_and_grad(f(_DC), argnums=(0, 1), has_aux=True)(
        dc.tensor(w_np), dc.tensor(x_np))
    (gw_t, gx_t), (value_t, aux_t) = tf.grad_and_value(f(_TO), argnums=(0, 1), has_aux=True)(
        torch.from_numpy(w_np), torch.from_numpy(x_np))
    _close(value, value_t)
    _close(aux, aux_t)
    _close(gw, gw_t)
    _close(gx, gx_t)
    assert not value.requires_grad
