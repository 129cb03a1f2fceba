"""vmap: every primitive of the test table (tests/test_ops.py OPS) batched by its rule equals a
Python loop over the mapped axis (values, VJP and JVP of the mapped function), with in_axes 0,
1, -1 and None mixed, and nested; vmap with grad, jacrev, jacfwd, hessian against torch.func;
chunk_size; randomness; errors."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.nn import functional as F

from test_ops import IDS, OPS, _inputs

B = 3


def _loop(fn, per_slice_args):
    outs = [fn(*a) for a in per_slice_args]
    return np.stack([o.data for o in outs])


def _mapped(arrays, axes, rng):
    """(inputs for vmap, per-slice inputs): each array gets a mapped axis of size B at its
    axis (None: shared)."""
    batched, slices = [], [[] for _ in range(B)]
    for a, ax in zip(arrays, axes):
        if ax is None:
            batched.append(dc.tensor(a))
            for s in slices:
                s.append(dc.tensor(a))
            continue
        stack = np.stack([a] + [a + 0.05 * (k + 1) * rng.standard_normal(a.shape) * (a != 0)
                                for k in range(B - 1)])   # keep zero patterns (masks, ints)
        stack = stack.astype(a.dtype)
        moved = np.moveaxis(stack, 0, ax)
        batched.append(dc.tensor(np.ascontiguousarray(moved)))
        for k in range(B):
            slices[k].append(dc.tensor(stack[k]))
    return batched, slices


def _patterns(specs):
    n = len(specs)
    pats = [(0,) * n]
    if specs[0][0]:  # the first input has at least one axis: map it at its last position
        pats.append((-1,) + (None,) * (n - 1))
    if n > 1:
        pats.append((None,) + (1 if len(specs[1][0]) >= 1 else 0,) + (0,) * (n - 2))
    return pats


@pytest.mark.parametrize("name, fn, ref, specs", OPS, ids=IDS)
def test_vmap_equals_a_loop(name, fn, ref, specs, rng):
    arrays = _inputs(rng, specs)
    for axes in _patterns(specs):
        xs, slices = _mapped(arrays, axes, rng)
        out = dc.vmap(fn, in_axes=axes)(*xs)
        np.testing.assert_allclose(out.data, _loop(fn, slices), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{name} in_axes={axes}")


@pytest.mark.parametrize("name, fn, ref, specs", OPS, ids=IDS)
def test_vjp_and_jvp_of_vmap_equal_a_loop(name, fn, ref, specs, rng):
    arrays = _inputs(rng, specs)
    axes = (0,) * len(arrays)
    xs, slices = _mapped(arrays, axes, rng)
    vf = dc.vmap(fn, in_axes=axes)
    out, vjp_fn = dc.vjp(vf, *xs)
    ct = dc.tensor(rng.standard_normal(out.shape))
    grads = vjp_fn(ct)
    tangents = tuple(dc.tensor(rng.standard_normal(x.shape)) for x in xs)
    _, jv = dc.jvp(vf, tuple(xs), tangents)
    for k in range(B):
        _, vjp_k = dc.vjp(fn, *slices[k])
        for g, gk in zip(grads, vjp_k(dc.tensor(ct.data[k:k + 1].reshape(ct.shape[1:])))):
            np.testing.assert_allclose(g.data[k], gk.data, rtol=1e-9, atol=1e-11,
                                       err_msg=f"{name}: VJP slice {k}")
        _, jk = dc.jvp(fn, tuple(slices[k]), tuple(dc.tensor(t.data[k:k + 1].reshape(t.shape[1:])) for t in tangents))
        np.testing.assert_allclose(jv.data[k], jk.data, rtol=1e-9, atol=1e-11,
                                   err_msg=f"{name}: JVP slice {k}")


@pytest.mark.parametrize("name, fn, ref, specs", OPS[::7], ids=IDS[::7])
def test_nested_vmap_equals_a_double_loop(name, fn, ref, specs, rng):
    arrays = _inputs(rng, specs)
    inner = [np.stack([a * (1 + 0.1 * j) for j in range(2)]).astype(a.dtype) for a in arrays]
    outer = [dc.tensor(np.stack([a * (1 - 0.2 * i) for i in range(B)]).astype(a.dtype))
             for a in inner]
    out = dc.vmap(dc.vmap(fn))(*outer)
    for i in range(B):
        for j in range(2):
            expect = fn(*[dc.tensor(o.data[i, j]) for o in outer])
            np.testing.assert_allclose(out.data[i, j], expect.data, rtol=1e-10, atol=1e-12)


# --- transforms on models, against torch.func --------------------------------------------

def _mlp(kind, rng):
    layers = {"tanh": [dc.nn.Linear(5, 6, dtype=np.float64), dc.nn.Tanh()],
              "gelu": [dc.nn.Linear(5, 6, dtype=np.float64), dc.nn.GELU()],
              "layernorm": [dc.nn.Linear(5, 6, dtype=np.float64), dc.nn.LayerNorm(6, dtype=np.float64),
                            dc.nn.Tanh()],
              "batchnorm": [dc.nn.Linear(5, 6, dtype=np.float64), dc.nn.BatchNorm1d(6, dtype=np.float64),
                            dc.nn.Tanh()]}[kind]
    net = dc.nn.Sequential(*layers, dc.nn.Linear(6, 3, dtype=np.float64))
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    if kind == "batchnorm":
        bn = layers[1]
        bn.running_mean.data[...] = rng.standard_normal(6) * 0.1
        bn.running_var.data[...] = rng.uniform(0.5, 2, 6)
        net.eval()
    return net


def _torch_mlp(net, kind):
    torch = pytest.importorskip("torch")
    mods = []
    for m in net:
        if isinstance(m, dc.nn.Linear):
            lin = torch.nn.Linear(m.in_features, m.out_features, dtype=torch.float64)
            lin.weight.data = torch.tensor(m.weight.data)
            lin.bias.data = torch.tensor(m.bias.data)
            mods.append(lin)
        elif isinstance(m, dc.nn.Tanh):
            mods.append(torch.nn.Tanh())
        elif isinstance(m, dc.nn.GELU):
            mods.append(torch.nn.GELU())
        elif isinstance(m, dc.nn.LayerNorm):
            ln = torch.nn.LayerNorm(6, dtype=torch.float64)
            ln.weight.data = torch.tensor(m.weight.data)
            ln.bias.data = torch.tensor(m.bias.data)
            mods.append(ln)
        else:
            bn = torch.nn.BatchNorm1d(6, dtype=torch.float64)
            bn.weight.data = torch.tensor(m.weight.data)
            bn.bias.data = torch.tensor(m.bias.data)
            bn.running_mean.data = torch.tensor(m.running_mean.data)
            bn.running_var.data = torch.tensor(m.running_var.data)
            mods.append(bn)
    t = torch.nn.Sequential(*mods)
    t.eval()
    return t


@pytest.mark.parametrize("kind", ["tanh", "gelu", "layernorm", "batchnorm"])
def test_model_jacobians_and_hessians_match_torch_func(kind, rng):
    torch = pytest.importorskip("torch")
    net = _mlp(kind, rng)
    tnet = _torch_mlp(net, kind)
    x = rng.standard_normal((4, 5))
    f = lambda v: net(v[None])[0]                     # noqa: E731  one sample -> (3,)
    tf = lambda v: tnet(v[None])[0]                    # noqa: E731
    xs = dc.tensor(x)
    tx = torch.tensor(x)
    J = dc.vmap(dc.jacrev(f))(xs).data
    np.testing.assert_allclose(J, torch.func.vmap(torch.func.jacrev(tf))(tx).detach().numpy(), rtol=1e-9)
    np.testing.assert_allclose(dc.vmap(dc.jacfwd(f))(xs).data, J, rtol=1e-9, atol=1e-12)
    s = lambda v: (f(v) ** 2).sum()                    # noqa: E731
    ts = lambda v: (tf(v) ** 2).sum()                  # noqa: E731
    H = dc.vmap(dc.hessian(s))(xs).data
    np.testing.assert_allclose(H, torch.func.vmap(torch.func.hessian(ts))(tx).detach().numpy(),
                               rtol=1e-8, atol=1e-10)
    G = dc.vmap(dc.grad(s))(xs).data
    np.testing.assert_allclose(G, torch.func.vmap(torch.func.grad(ts))(tx).detach().numpy(), rtol=1e-9)
    # grad of vmap: the gradient of a sum over the batch
    total = lambda v: dc.vmap(s)(v).sum()             # noqa: E731
    np.testing.assert_allclose(dc.grad(total)(xs).data, G, rtol=1e-9, atol=1e-12)


def test_per_sample_gradients_match_torch_func(rng):
    torch = pytest.importorskip("torch")
    net = _mlp("tanh", rng)
    tnet = _torch_mlp(net, "tanh")
    params = {k: v.detach() for k, v in net.named_parameters()}
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)

    def loss(p, xi, yi):
        return F.cross_entropy(dc.func.functional_call(net, p, xi[None]), yi[None])
    g = dc.vmap(dc.grad(loss), in_axes=(None, 0, 0))(params, dc.tensor(x), dc.tensor(y))
    tparams = {k: v.detach() for k, v in tnet.named_parameters()}
    names = dict(zip(tparams, params))

    def tloss(p, xi, yi):
        out = torch.func.functional_call(tnet, p, (xi[None],))
        return torch.nn.functional.cross_entropy(out, yi[None])
    tg = torch.func.vmap(torch.func.grad(tloss), in_dims=(None, 0, 0))(
        tparams, torch.tensor(x), torch.tensor(y))
    for tk, k in names.items():
        np.testing.assert_allclose(g[k].data, tg[tk].detach().numpy(), rtol=1e-9, atol=1e-12)


def test_chunk_size_gives_the_same_results(rng):
    W = dc.tensor(rng.standard_normal((7, 4)))
    f = lambda v: dc.tanh(W @ v)                       # noqa: E731
    x = dc.tensor(rng.standard_normal(4))
    J = dc.jacrev(f)(x).data
    for c in (1, 3, 7, 100):
        np.testing.assert_allclose(dc.jacrev(f, chunk_size=c)(x).data, J, rtol=1e-12)
        np.testing.assert_allclose(dc.jacfwd(f, chunk_size=c)(x).data, J, rtol=1e-12)
    xs = dc.tensor(rng.standard_normal((10, 4)))
    full = dc.vmap(f)(xs).data
    for c in (1, 4, 10):
        np.testing.assert_allclose(dc.vmap(f, chunk_size=c)(xs).data, full)


def test_in_axes_structures_and_out_axes(rng):
    a = dc.tensor(rng.standard_normal((3, 4)))
    b = dc.tensor(rng.standard_normal((4, 3)))
    out = dc.vmap(lambda d: d["x"] * d["y"], in_axes=({"x": 0, "y": 1},))({"x": a, "y": b})
    np.testing.assert_allclose(out.data, a.data * b.data.T)
    two = dc.vmap(lambda u: (u * 2, u.sum()), out_axes=(1, 0))(a)
    np.testing.assert_allclose(two[0].data, (a.data * 2).T)
    np.testing.assert_allclose(two[1].data, a.data.sum(1))
    const = dc.vmap(lambda u, c: c * 1.0, in_axes=(0, None), out_axes=(None))(a, b)
    np.testing.assert_allclose(const.data, b.data)
    # an output that does not depend on the mapped input is broadcast over the batch
    np.testing.assert_allclose(dc.vmap(lambda u: b.sum())(a).data, np.full(3, b.data.sum()))


def test_randomness_policies():
    x = dc.tensor(np.ones((6, 50)))
    drop = lambda v: F.dropout(v, 0.5)                 # noqa: E731
    with pytest.raises(RuntimeError, match="randomness='error'"):
        dc.vmap(drop)(x)
    dc.manual_seed(0)
    same = dc.vmap(drop, randomness="same")(x).data
    assert all(np.array_equal(same[0], r) for r in same)
    dc.manual_seed(0)
    diff = dc.vmap(drop, randomness="different")(x).data
    assert not all(np.array_equal(diff[0], r) for r in diff)
    assert set(np.unique(diff)) <= {0.0, 2.0}


def test_errors_name_the_problem(rng):
    a, b = dc.tensor(np.ones((3, 2))), dc.tensor(np.ones((4, 2)))
    with pytest.raises(ValueError, match="argument 0 has size 3, argument 1 has size 4"):
        dc.vmap(lambda u, v: u + v)(a, b)
    with pytest.raises(ValueError, match="in_axes 2 is out of range for argument 0 of shape"):
        dc.vmap(lambda u: u, in_axes=2)(a)
    with pytest.raises(ValueError, match="out_axes 3 is out of range"):
        dc.vmap(lambda u: u, out_axes=3)(a)
    with pytest.raises(ValueError, match="in_axes has 1 entries but f was called with 2"):
        dc.vmap(lambda u, v: u, in_axes=(0,))(a, a)
    with pytest.raises(RuntimeError, match="needs the values of a batched tensor"):
        dc.vmap(lambda u: u * 2 if u.sum().item() > 0 else u)(a)
    bn = dc.nn.BatchNorm1d(2, dtype=np.float64)
    with pytest.raises(RuntimeError, match="BatchNorm1d: in training mode under vmap"):
        dc.vmap(bn)(dc.tensor(rng.standard_normal((3, 4, 2))))
    bn.eval()
    dc.vmap(bn)(dc.tensor(rng.standard_normal((3, 4, 2))))   # eval mode: fine
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        dc.vmap(lambda u: u, chunk_size=0)


def test_every_registered_primitive_has_a_batching_rule():
    """A batching rule (``batch``) or a decomposition into other ops (``decompose``) for each
    primitive, so vmap never falls back to a loop; the rows above check that they are right."""
    from deepcalc.autodiff.graph import REGISTRY
    import deepcalc.regularize  # noqa: F401  (registers the Jacobian penalty)
    abstract = {"deepcalc.ops.norm._NormForward", "deepcalc.ops.norm._NormForwardJvp",
                "deepcalc.ops.norm._NormBackward", "deepcalc.ops.norm._NormBackwardJvp"}
    missing = sorted(k for k, cls in REGISTRY.items()
                     if k.startswith("deepcalc.") and k not in abstract
                     and getattr(cls, "batch", None) is None
                     and getattr(cls, "decompose", None) is None)
    assert not missing, f"primitives without a batching rule: {missing}"


def test_attention_under_vmap_with_per_slice_masks(rng):
    """Per-slice key-padding masks (a batched mask parameter) and shared ones, fused kernels
    folded over the mapped axis, against a loop; per-sample gradients through attention."""
    q, k, v = (dc.tensor(rng.standard_normal((3, 2, 2, 4, 5))) for _ in range(3))
    keep = rng.random((3, 2, 1, 1, 4)) > 0.3
    keep[..., 0] = True
    mask = dc.tensor(keep)
    f = lambda a, b, c, m: F.scaled_dot_product_attention(a, b, c, mask=m)  # noqa: E731
    out = dc.vmap(f)(q, k, v, mask)
    for i in range(3):
        np.testing.assert_allclose(out.data[i], f(q[i], k[i], v[i], mask[i]).data, rtol=1e-10)
    shared = dc.vmap(f, in_axes=(0, 0, 0, None))(q, k, v, mask[0])
    for i in range(3):
        np.testing.assert_allclose(shared.data[i], f(q[i], k[i], v[i], mask[0]).data, rtol=1e-10)
    loss = lambda a, b, c: (F.scaled_dot_product_attention(a, b, c, causal=True) ** 2).sum()  # noqa: E731,E501
    g = dc.vmap(dc.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    for i in range(3):
        for gi, ref in zip(g, dc.grad(loss, argnums=(0, 1, 2))(q[i], k[i], v[i])):
            np.testing.assert_allclose(gi.data[i], ref.data, rtol=1e-9, atol=1e-12)


def test_embedding_with_per_slice_indices(rng):
    """Per-slice token ids (batched integer indices): lookups and per-sample gradients of the
    table, with a padding row, against a loop."""
    w = dc.tensor(rng.standard_normal((7, 3)))
    idx = dc.tensor(rng.integers(0, 7, (4, 5)))
    emb = dc.nn.Embedding(7, 3, padding_idx=2, dtype=np.float64)
    emb.weight.data[...] = w.data
    out = dc.vmap(lambda i: emb(i))(idx)
    for k in range(4):
        np.testing.assert_allclose(out.data[k], emb(idx[k]).data)
    loss = lambda p, i: (dc.tanh(dc.func.functional_call(emb, p, i)) ** 2).sum()  # noqa: E731
    params = {"weight": emb.weight.detach()}
    g = dc.vmap(dc.grad(loss), in_axes=(None, 0))(params, idx)["weight"].data
    for k in range(4):
        np.testing.assert_allclose(g[k], dc.grad(loss)(params, idx[k])["weight"].data,
                                   rtol=1e-12)
    assert np.all(g[:, 2] == 0)
    tables = dc.tensor(rng.standard_normal((4, 7, 3)))
    from deepcalc.ops.embedding import embedding
    both = dc.vmap(lambda t, i: embedding(i, t))(tables, idx)
    for k in range(4):
        np.testing.assert_allclose(both.data[k], tables.data[k][idx.data[k]])
