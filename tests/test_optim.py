"""dc.optim against torch.optim: optimizers step for step on the same parameters and gradients,
schedulers value for value, checkpoints resume bit for bit, gradient clipping."""
import numpy as np
import pytest

import deepcalc as dc
from deepcalc import optim

SHAPES = [(3, 5), (7,), (2, 3, 4)]


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def make_grads(dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]


def group_spec(params, groups):
    """groups: None (one group) or a list of (indices, overrides)."""
    if groups is None:
        return params
    return [dict(params=[params[i] for i in idx], **kw) for idx, kw in groups]


def run_dc(cls, kwargs, arrays, grads, groups=None):
    params = [dc.tensor(a.copy(), requires_grad=True) for a in arrays]
    opt = cls(group_spec(params, groups), **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = dc.tensor(g)
        opt.step()
    return [p.data for p in params]


def run_torch(cls, kwargs, arrays, grads, groups=None):
    torch = pytest.importorskip("torch")
    params = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    opt = cls(group_spec(params, groups), **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, centered=True, momentum=0.5, eps=1e-4)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_torch(name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    arrays, grads = make_params(dtype), make_grads(dtype, 10)
    ours = run_dc(getattr(optim, name), kwargs, arrays, grads)
    ref = run_torch(getattr(torch.optim, name), kwargs, arrays, grads)
    tol = dict(rtol=2e-6, atol=2e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
    for a, b, start in zip(ours, ref, arrays):
        assert a.dtype == dtype
        assert not np.array_equal(a, start)
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_param_groups_match_torch(name):
    torch = pytest.importorskip("torch")
    kwargs = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    groups = [([0, 2], dict(lr=0.1, weight_decay=0.01)), ([1], dict())]
    arrays, grads = make_params(np.float64), make_grads(np.float64, 10)
    ours = run_dc(getattr(optim, name), kwargs, arrays, grads, groups)
    ref = run_torch(getattr(torch.optim, name), kwargs, arrays, grads, groups)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_updates_in_place_and_never_touches_grad(name):
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=0.1) if name != "Adam" else \
        dict(lr=0.1, weight_decay=0.1)
    base = np.random.default_rng(0).standard_normal((4, 6))
    p = dc.tensor(base.copy(), requires_grad=True)
    q = dc.tensor(base.T.copy().T, requires_grad=True)  # non-contiguous (Fortran-order) data
    assert not q.data.flags.c_contiguous
    shared = np.random.default_rng(1).standard_normal((4, 6))
    saved = shared.copy()
    data_p, data_q = p.data, q.data
    opt = getattr(optim, name)([p, q], **kwargs)
    for _ in range(3):
        p.grad, q.grad = dc.tensor(shared), dc.tensor(shared)
        opt.step()
    assert p.data is data_p and q.data is data_q
    np.testing.assert_array_equal(shared, saved)
    np.testing.assert_array_equal(p.data, q.data)
    assert not np.allclose(p.data, base)


def test_zero_grad_and_params_without_grad():
    a, b = (dc.tensor(np.ones(3), requires_grad=True) for _ in range(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = dc.tensor(np.ones(3))
    opt.step()
    np.testing.assert_array_equal(b.data, np.ones(3))
    assert b not in opt.state and opt.state[a]["step"] == 1
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_add_param_group_and_bad_inputs():
    a, b = (dc.tensor(np.ones(3), requires_grad=True) for _ in range(2))
    opt = optim.SGD([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.5, "momentum": 0.9})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["dampening"] == 0.0
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="single Tensor"):
        optim.Adam(a)
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([dc.tensor(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([a], betas=(0.9, 1.0))


RESUME = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
]


@pytest.mark.parametrize("name,kwargs", RESUME, ids=[n for n, _ in RESUME])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_resume_is_bit_exact(name, kwargs, dtype, tmp_path):
    cls = getattr(optim, name)
    arrays, grads = make_params(dtype), make_grads(dtype, 10)
    groups = [([0], dict(lr=kwargs["lr"] * 2)), ([1, 2], dict())]
    full = run_dc(cls, kwargs, arrays, grads, groups)

    params = [dc.tensor(a.copy(), requires_grad=True) for a in arrays]
    opt = cls(group_spec(params, groups), **kwargs)
    sched = optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for step_grads in grads[:5]:
        for p, g in zip(params, step_grads):
            p.grad = dc.tensor(g)
        opt.step()
    dc.save(tmp_path / "ckpt.safetensors",
            {"params": [p.data for p in params], "optim": opt.state_dict()})
    del opt, sched, params

    ckpt = dc.load(tmp_path / "ckpt.safetensors")
    params = [dc.tensor(a, requires_grad=True) for a in ckpt["params"]]
    opt = cls(group_spec(params, groups), **kwargs)
    opt.load_state_dict(ckpt["optim"])
    assert "initial_lr" in opt.param_groups[0]  # hyperparameters come from the checkpoint
    for step_grads in grads[5:]:
        for p, g in zip(params, step_grads):
            p.grad = dc.tensor(g)
        opt.step()
    for a, b in zip(full, params):
        np.testing.assert_array_equal(a, b.data)


def test_state_dict_is_snapshot_and_torch_shaped():
    p = dc.tensor(np.ones(4), requires_grad=True)
    opt = optim.Adam([p], lr=0.1, amsgrad=True)
    p.grad = dc.tensor(np.full(4, 2.0))
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"] == [dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                       amsgrad=True, params=[0])]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    before = sd["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)
    other = optim.Adam([dc.tensor(np.ones(4), requires_grad=True),
                        dc.tensor(np.ones(4), requires_grad=True)])
    with pytest.raises(ValueError, match="parameter group 0 has 1 parameters"):
        other.load_state_dict(sd)


# --- schedulers ---------------------------------------------------------------------------
SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001)),
    ("LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=6)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=4)),
    ("LambdaLR", dict(lr_lambda=lambda e: 0.95 ** e / (1 + e))),
]


@pytest.mark.parametrize("name,kwargs", SCHEDULERS, ids=[f"{n}-{i}" for i, (n, _) in
                                                        enumerate(SCHEDULERS)])
def test_scheduler_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    a = dc.tensor(np.ones(2), requires_grad=True)
    b = dc.tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.3}], lr=0.1)
    ta, tb = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    topt = torch.optim.SGD([{"params": [ta]}, {"params": [tb], "lr": 0.3}], lr=0.1)
    ours = getattr(optim.lr_scheduler, name)(opt, **kwargs)
    ref = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    seen = set()
    for _ in range(20):
        np.testing.assert_allclose(ours.get_last_lr(), ref.get_last_lr(), rtol=1e-14, atol=0)
        assert [g["lr"] for g in opt.param_groups] == ours.get_last_lr()
        seen.add(round(ours.get_last_lr()[0], 12))
        opt.step(), topt.step()
        ours.step(), ref.step()
    assert len(seen) > 2


def test_scheduler_state_dict_resume(tmp_path):
    def make():
        p = dc.tensor(np.ones(2), requires_grad=True)
        opt = optim.SGD([p], lr=0.5)
        return opt, optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01)
    opt, sched = make()
    lrs = []
    for _ in range(12):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    opt, sched = make()
    for _ in range(5):
        sched.step()
    dc.save(tmp_path / "s.safetensors", {"optim": opt.state_dict(), "sched": sched.state_dict()})
    ckpt = dc.load(tmp_path / "s.safetensors")
    opt, sched = make()
    opt.load_state_dict(ckpt["optim"])
    sched.load_state_dict(ckpt["sched"])
    resumed = lrs[:5]
    for _ in range(7):
        sched.step()
        resumed.append(sched.get_last_lr()[0])
    assert resumed == lrs


def test_lambda_lr_state_dict_excludes_functions():
    opt = optim.SGD([dc.tensor(np.ones(1), requires_grad=True)], lr=1.0)
    sched = optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 ** e)
    sched.step()
    assert "lr_lambdas" not in sched.state_dict()
    assert sched.get_last_lr() == [0.5]


# --- gradient clipping --------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    grads = make_grads(np.float32, 1)[0]
    params = [dc.tensor(np.zeros(s, np.float32), requires_grad=True) for s in SHAPES]
    originals = [g.copy() for g in grads]
    for p, g in zip(params, grads):
        p.grad = dc.tensor(g)
    tparams = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    for p, g in zip(tparams, grads):
        p.grad = torch.tensor(g.copy())
    total = optim.clip_grad_norm_(params, max_norm, norm_type)
    ref = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type)
    assert total.dtype == np.float32
    np.testing.assert_allclose(float(total), ref.item(), rtol=1e-6)
    for p, tp, g, orig in zip(params, tparams, grads, originals):
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(g, orig)  # the old gradient array was not scaled


def test_clip_grad_norm_nonfinite_and_value():
    torch = pytest.importorskip("torch")
    p = dc.tensor(np.zeros(3), requires_grad=True)
    p.grad = dc.tensor(np.array([1.0, np.inf, 2.0]))
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    g = np.array([[-3.0, 0.2], [0.7, 5.0]])
    p = dc.tensor(np.zeros((2, 2)), requires_grad=True)
    p.grad = dc.tensor(g)
    optim.clip_grad_value_([p], 0.5)
    tp = torch.zeros((2, 2), dtype=torch.float64, requires_grad=True)
    tp.grad = torch.tensor(g.copy())
    torch.nn.utils.clip_grad_value_([tp], 0.5)
    np.testing.assert_array_equal(p.grad.data, tp.grad.numpy())
    assert g[0, 0] == -3.0
