"""The kernels' output-buffer cache (dc.memory): reuse, limits, and that cached outputs are
ordinary, independent, writeable arrays that never alias a live result."""
import gc
import threading

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import _core


@pytest.fixture
def fresh_cache():
    gc.collect()
    old = dc.memory.cache_stats()["limit_bytes"]
    dc.memory.empty_cache()
    dc.memory.set_cache_limit(1 << 30)
    yield
    gc.collect()
    dc.memory.set_cache_limit(old)
    dc.memory.empty_cache()


def big_pair(n=512, dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)


def test_freed_output_is_reused(fresh_cache):
    a, b = big_pair()
    c = _core.gemm(a, b)
    addr = c.ctypes.data
    s0 = dc.memory.cache_stats()
    assert s0["live_bytes"] >= c.nbytes and s0["idle_bytes"] == 0
    del c
    s1 = dc.memory.cache_stats()
    assert s1["idle_blocks"] == 1 and s1["live_bytes"] == s0["live_bytes"] - s1["idle_bytes"]
    c2 = _core.gemm(a, b)
    assert c2.ctypes.data == addr
    assert dc.memory.cache_stats()["hits"] == s1["hits"] + 1
    np.testing.assert_allclose(c2, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)


def test_live_outputs_never_alias(fresh_cache):
    a, b = big_pair()
    outs = [_core.gemm(a, b, alpha=float(i)) for i in range(4)]
    assert len({o.ctypes.data for o in outs}) == 4
    for i, o in enumerate(outs):
        np.testing.assert_allclose(o, i * (a.astype(np.float64) @ b), rtol=1e-4, atol=1e-2)


def test_cached_array_is_an_ordinary_array(fresh_cache):
    a, b = big_pair(dtype=np.float64)
    c = _core.gemm(a, b)
    assert c.flags.c_contiguous and c.flags.writeable and c.flags.aligned
    assert c.ctypes.data % 64 == 0
    view = c[1:, ::2]
    del c
    gc.collect()
    assert dc.memory.cache_stats()["idle_blocks"] == 0  # the view keeps the block alive
    view[...] = 1.0
    assert view.sum() == view.size


def test_small_outputs_bypass_the_cache(fresh_cache):
    a, b = big_pair(64)
    before = dc.memory.cache_stats()
    c = _core.gemm(a, b)  # 16 KiB
    assert c.flags.owndata
    del c
    after = dc.memory.cache_stats()
    assert (after["hits"], after["misses"], after["idle_blocks"]) == \
        (before["hits"], before["misses"], 0)


def test_limit_and_empty_cache(fresh_cache):
    a, b = big_pair()
    nbytes = a.nbytes
    outs = [_core.gemm(a, b) for _ in range(3)]
    dc.memory.set_cache_limit(2 * nbytes)
    del outs
    s = dc.memory.cache_stats()
    assert s["idle_bytes"] <= 2 * nbytes and s["evictions"] >= 1
    dc.memory.empty_cache()
    assert dc.memory.cache_stats()["idle_bytes"] == 0


def test_disabled_cache_allocates_normally(fresh_cache):
    dc.memory.set_cache_limit(0)
    a, b = big_pair()
    c = _core.gemm(a, b)
    assert c.flags.owndata and c.base is None
    del c
    assert dc.memory.cache_stats()["idle_bytes"] == 0
    with pytest.raises(ValueError, match="set_cache_limit"):
        dc.memory.set_cache_limit(-1)


def test_training_loop_reuses_blocks(fresh_cache):
    """Forward + backward of a BatchNorm layer repeated: after the first step every large
    output comes from the cache."""
    x = dc.tensor(np.random.default_rng(1).standard_normal((512, 256)).astype(np.float32),
                  requires_grad=True)
    layer = dc.nn.BatchNorm1d(256)
    for step in range(4):
        x.grad = None
        layer(x).sum().backward()
        if step == 0:
            misses = dc.memory.cache_stats()["misses"]
    assert dc.memory.cache_stats()["misses"] == misses


def test_threads_share_the_cache_safely(fresh_cache):
    a, b = big_pair(256)
    ref = a.astype(np.float64) @ b
    errors = []
    live_before = dc.memory.cache_stats()["live_bytes"]

    def work():
        try:
            for _ in range(20):
                c = _core.gemm(a, b)
                np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-3)
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    gc.collect()
    assert dc.memory.cache_stats()["live_bytes"] == live_before
