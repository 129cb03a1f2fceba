"""dc.distributed: a world of one process here, and two ranks under ``mpirun -n 2`` (the scripts
in tests/mpi/, launched once each; skipped without mpi4py or mpirun)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import distributed as D
from deepcalc.distributed import cost
from deepcalc.nn import functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(dc.__file__)))


def _find_mpirun():
    """The mpirun of this Python's environment (the mpich wheel puts it beside python), else
    the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpirun")


MPIRUN = _find_mpirun()


def _have_mpi() -> bool:
    if MPIRUN is None:
        return False
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


needs_mpi = pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and mpirun "
                               "(pip install 'deepcalc[mpi]')")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _mpirun(args, timeout):
    t0 = time.perf_counter()
    proc = subprocess.run([MPIRUN, "-n", "2", sys.executable, *args], env=_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=HERE)
    return proc, time.perf_counter() - t0


# --- a world of one process -------------------------------------------------------------
def test_importing_deepcalc_does_not_import_mpi4py():
    code = "import sys, deepcalc; assert 'mpi4py' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_without_mpi4py_a_world_of_one_and_a_launcher_without_it_is_an_error():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import numpy as np, deepcalc as dc\n"
            "D = dc.distributed\n"
            "assert (D.rank(), D.world_size()) == (0, 1)\n"
            "assert D.all_reduce(np.array([2.0, 3.0])).tolist() == [2.0, 3.0]\n"
            "print(type(D.init()).__name__)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "LocalWorld", out.stderr
    env = _env()
    env["PMI_SIZE"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "mpi4py is not installed" in out.stderr


def test_collectives_in_a_world_of_one_keep_kind_and_value():
    assert (D.rank(), D.world_size(), D.is_main_process()) == (0, 1, True)
    a = np.array([[1.0, -2.0]])
    r = D.all_reduce(a)
    assert isinstance(r, np.ndarray) and r.tolist() == a.tolist() and r is not a
    t = D.all_reduce(dc.tensor(np.array([4, 6])), "mean")
    assert isinstance(t, dc.Tensor) and t.data.tolist() == [4.0, 6.0]
    assert D.all_reduce(5, "max") == 5 and D.broadcast(2.5) == 2.5
    g = D.all_gather(np.array([1, 2]))
    assert len(g) == 1 and g[0].tolist() == [1, 2]
    D.barrier()
    with pytest.raises(ValueError, match="all_reduce: op must be one of"):
        D.all_reduce(a, "avg")
    with pytest.raises(TypeError, match="all_reduce: expected a Tensor, a numpy array"):
        D.all_reduce("x")
    with pytest.raises(ValueError, match=r"broadcast: src must be a rank in \[0, 1\)"):
        D.broadcast(a, src=1)


def _train(model, steps, x, y, accumulate=False):
    opt = dc.optim.Adam(model.parameters(), lr=1e-2)
    for k in range(steps):
        xb, yb = dc.tensor(x[k * 8:(k + 1) * 8]), dc.tensor(y[k * 8:(k + 1) * 8])
        opt.zero_grad()
        if accumulate:
            with model.no_sync():
                (F.cross_entropy(model(xb[:4]), yb[:4]) * 0.5).backward()
            (F.cross_entropy(model(xb[4:]), yb[4:]) * 0.5).backward()
        else:
            F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return np.concatenate([p.data.ravel() for p in model.parameters()])


def test_ddp_in_a_world_of_one_trains_as_the_plain_model():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)

    def net():
        dc.manual_seed(1)
        return dc.nn.MLP([6, 12, 3], activation="tanh", dtype=np.float64)
    plain = _train(net(), 5, x, y)
    ddp = D.DistributedDataParallel(net(), bucket_mb=1e-4)
    assert len(ddp.bucket_sizes) == 4 and sum(ddp.bucket_sizes) == ddp.num_parameters()
    np.testing.assert_allclose(_train(ddp, 5, x, y), plain, rtol=0, atol=1e-12)
    acc = D.DistributedDataParallel(net(), bucket_mb=1e-4)
    np.testing.assert_allclose(_train(acc, 5, x, y, accumulate=True), plain, rtol=0, atol=1e-12)


def test_ddp_errors_name_the_parameter():
    dc.manual_seed(0)
    x = dc.tensor(np.ones((2, 4)))
    ddp = D.DistributedDataParallel(dc.nn.MLP([4, 3, 2], dtype=np.float64))
    loss = ddp(x).sum()
    loss.backward(retain_graph=True)
    once = [p.grad.data.copy() for p in ddp.parameters()]
    loss.backward()     # a second complete backward accumulates, as without the wrapper
    for p, g in zip(ddp.parameters(), once):
        np.testing.assert_allclose(p.grad.data, 2 * g, rtol=1e-15)

    class Unused(dc.nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = dc.nn.Linear(4, 2), dc.nn.Linear(4, 2)

        def forward(self, x):
            return self.used(x)
    ddp = D.DistributedDataParallel(Unused())
    loss = ddp(dc.tensor(np.ones((2, 4), np.float32))).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"gave no gradient to \['unused.weight', "
                                           r"'unused.bias'\]"):
        ddp.synchronize()
    with pytest.raises(RuntimeError, match="'used.bias' got a second gradient before the "
                                           "first was averaged"):
        loss.backward()
    with pytest.raises(ValueError, match="bucket_mb must be a number > 0"):
        D.DistributedDataParallel(Unused(), bucket_mb=0)
    with pytest.raises(TypeError, match="module must be a Module"):
        D.DistributedDataParallel(lambda x: x)


def test_ddp_nan_gradient_is_named_before_communication():
    dc.manual_seed(0)
    ddp = D.DistributedDataParallel(dc.nn.MLP([3, 2], dtype=np.float64))
    w = ddp.module.layer0.weight
    loss = ddp(dc.tensor(np.ones((1, 3)))).sum() + 0.0 * dc.sqrt(w * 0.0).sum()
    with pytest.raises(FloatingPointError, match=r"rank 0: the gradient of 'layer0.weight' "
                                                 r"has 6 NaN/Inf values"):
        loss.backward()
    # the half step was dropped: the next batch trains as usual
    ddp.module.zero_grad()
    ddp(dc.tensor(np.ones((1, 3)))).sum().backward()
    assert np.isfinite(w.grad.data).all() and w.grad.data.tolist() == [[1.0] * 3] * 2


def test_sampler_shards_are_disjoint_equal_and_reshuffled():
    ds = dc.data.TensorDataset(np.arange(10.0)[:, None], np.arange(10))
    shards = [D.DistributedSampler(ds, num_replicas=3, rank=r, seed=7) for r in range(3)]
    idx = [s.indices() for s in shards]
    assert [len(s) for s in shards] == [4, 4, 4]
    allidx = np.concatenate(idx)
    assert sorted(set(allidx.tolist())) == list(range(10))   # all samples, 2 padded repeats
    perm = np.random.default_rng(7).permutation(10)
    padded = np.concatenate([perm, perm[:2]])
    for r in range(3):
        assert idx[r].tolist() == padded[r::3].tolist()
    before = shards[0].indices()
    shards[0].set_epoch(1)
    assert shards[0].indices().tolist() == np.concatenate(
        [np.random.default_rng(8).permutation(10)] * 2)[:12][0::3].tolist()
    assert shards[0].indices().tolist() != before.tolist()
    shards[0].set_epoch(0)
    assert shards[0].indices().tolist() == before.tolist()
    dropped = [D.DistributedSampler(ds, num_replicas=3, rank=r, seed=7, drop_last=True)
               for r in range(3)]
    assert [len(s) for s in dropped] == [3, 3, 3]
    assert sorted(np.concatenate([s.indices() for s in dropped]).tolist()) == \
        sorted(perm[:9].tolist())
    # as a DataLoader's dataset: batches of this rank's samples
    xb, yb = next(iter(dc.data.DataLoader(shards[1], batch_size=3)))
    assert yb.data.tolist() == idx[1][:3].tolist() and xb.data[:, 0].tolist() == yb.data.tolist()
    with pytest.raises(ValueError, match=r"rank must be in \[0, 3\)"):
        D.DistributedSampler(ds, num_replicas=3, rank=3)
    with pytest.raises(ValueError, match="set_epoch: epoch must be an integer >= 0"):
        shards[0].set_epoch(-1)
    with pytest.raises(TypeError, match="dataset must have __len__ and __getitem__"):
        D.DistributedSampler(5)


def test_fit_distributed_in_a_world_of_one_equals_fit(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((48, 5)), rng.integers(0, 3, 48)

    def run(distributed, out):
        dc.manual_seed(0)
        model = dc.nn.MLP([5, 8, 3], activation="relu", dtype=np.float64)
        opt = dc.optim.SGD(model.parameters(), lr=0.1)
        loader = dc.data.DataLoader(D.DistributedSampler(dc.data.TensorDataset(x, y), seed=2),
                                    batch_size=8)
        if not distributed:   # the same batches, epoch by epoch
            loader.dataset.set_epoch(0)
        h = dc.train.fit(model, F.cross_entropy, opt, loader, epochs=1, progress=False,
                         checkpoint_dir=str(out), distributed=distributed)
        return h, np.concatenate([p.data.ravel() for p in model.parameters()]), model
    h1, p1, m1 = run(False, tmp_path / "a")
    h2, p2, m2 = run(True, tmp_path / "b")
    np.testing.assert_array_equal(p1, p2)
    assert h1["loss"] == h2["loss"]
    # fit removed its wrapper's hooks: the model trains alone again
    assert all(p._node is None or not p._node.hooks for p in m2.parameters())
    assert sorted(os.listdir(tmp_path / "b")) == ["last.safetensors"]


def test_cost_model_against_hand_computed_values():
    # 2 (p-1) alpha + 2 (p-1)/p n beta, p = 4, n = 1e6 B: 6 us + 1.5 ms
    assert cost.ring_allreduce_seconds(1e6, 4, 1e-6, 1e-9) == pytest.approx(1.506e-3, rel=1e-12)
    assert cost.ring_allreduce_seconds(1e6, 1, 1e-6, 1e-9) == 0.0
    n = np.array([1e3, 1e5, 1e6])
    t = 2 * (2 - 1) * 3e-6 + 2 * (2 - 1) / 2 * n * 2e-10
    alpha, beta = cost.fit_alpha_beta(n, t, 2)
    assert alpha == pytest.approx(3e-6, rel=1e-9) and beta == pytest.approx(2e-10, rel=1e-9)
    assert cost.bucket_bytes([4, 4, 10, 1, 1], 8) == [8, 10, 2]
    # backward 2 s, buckets of 1 and 3 bytes; p = 2, alpha 0, beta 1 s/B: T(n, 2) = n seconds.
    # overlap: bucket 1 ready at 0.5 s, done at 1.5; bucket 2 ready at 2, done at 5: 3 exposed
    s = cost.simulate_step(1.0, 2.0, [1, 3], 2, 0.0, 1.0)
    assert s["exposed_s"] == pytest.approx(3.0) and s["step_s"] == pytest.approx(6.0)
    assert s["efficiency"] == pytest.approx(0.5)
    # no overlap: both start at 2 s, done at 6: 4 exposed
    assert cost.simulate_step(1.0, 2.0, [1, 3], 2, 0.0, 1.0, overlap=False)["exposed_s"] == \
        pytest.approx(4.0)
    assert cost.simulate_step(1.0, 2.0, [1, 3], 1, 0.0, 1.0)["efficiency"] == 1.0


# --- two ranks -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """tests/mpi/ddp_checks.py under mpirun -n 2: every rank's measurements."""
    tmp = tmp_path_factory.mktemp("ddp")
    path = str(tmp / "results.json")
    proc, _ = _mpirun([os.path.join(HERE, "mpi", "ddp_checks.py"), path, str(tmp)], 120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    with open(path) as f:
        return json.load(f)


@needs_mpi
def test_two_ranks_collectives(two_ranks):
    for r, out in enumerate(two_ranks):
        assert out["world"] == [r, 2]
        assert out["all_reduce_sum"] == [3.0, 6.0]
        assert out["all_reduce_mean_tensor"] == [2.0]
        assert out["all_reduce_max_int"] == 4
        assert out["broadcast"] == [8.0, 8.0, 8.0]
        assert out["all_gather"] == [[0, 0], [1, 10]]
        assert "all_reduce: rank 1 gives shape (3,)" in out["all_reduce_mismatch"]
        assert ("the model on rank 1 differs from rank 0's: 'layer0.weight': rank 0 (16, 10)"
                in out["model_mismatch"])


@needs_mpi
def test_two_ranks_equal_one_process_with_the_whole_batch(two_ranks):
    for out in two_ranks:
        for opt in ("sgd", "adam"):
            for model in ("mlp", "bn"):
                assert out[f"{model}_{opt}_float64"] < 1e-12, (model, opt)
                assert out[f"{model}_{opt}_float32"] < 1e-5, (model, opt)
            # BatchNorm statistics are per rank: not those of the whole batch
            assert out[f"bn_{opt}_float64_vs_full_batch_stats"] > 1e-3
            for dt in ("float64", "float32"):
                assert out[f"bn_{opt}_{dt}_running_stats"] == 0.0


@needs_mpi
def test_two_ranks_any_bucket_size_out_of_order_and_no_sync(two_ranks):
    for out in two_ranks:
        assert [out[f"buckets_{mb}_count"] for mb in (1e-4, 4e-3, 0.02, 25)] == [6, 3, 1, 1]
        assert out["buckets_max_gap_between_sizes"] == 0.0
        assert out["buckets_gap_to_reference"] < 1e-12
        assert out["out_of_order_gap"] < 1e-12
        # rebuilt after the first step in the order the gradients came (not registration's)
        assert out["out_of_order_bucket_order"][0] != "head.bias"
        assert sorted(out["out_of_order_bucket_order"]) == sorted(
            f"{m}.{w}" for m in ("head", "first", "middle") for w in ("weight", "bias"))
        assert out["no_sync_gap"] < 1e-12


@needs_mpi
def test_two_ranks_sampler(two_ranks):
    for out in two_ranks:
        for epoch in ("0", "1"):
            a, b = out["sampler_shards"][epoch]
            assert len(a) == len(b) == 6
            assert sorted(set(a + b)) == list(range(11))      # one padded repeat
        assert out["sampler_shards"]["0"] != out["sampler_shards"]["1"]
        assert out["sampler_drop_last_len"] == 5


@needs_mpi
def test_two_ranks_fit_metrics_files_and_resume(two_ranks):
    r0, r1 = two_ranks

    def metrics(h):
        return [{k: v for k, v in e.items() if k != "time"} for e in h]   # time is per rank
    assert metrics(r0["fit_history"]) == metrics(r1["fit_history"])   # the same on every rank
    for epoch, logs in enumerate(r0["fit_history"]):   # the mean over both ranks' batches
        both = r0["fit_step_losses"][str(epoch)] + r1["fit_step_losses"][str(epoch)]
        assert len(both) == 8 and logs["loss"] == pytest.approx(np.mean(both), rel=1e-12)
    assert r0["fit_params_across_ranks"] == 0.0
    assert r0["fit_files"] == ["last.safetensors"]
    assert r0["fit_resume_gap"] == 0.0 and r1["fit_resume_gap"] == 0.0
    assert r0["fit_resume_history_equal"] and r1["fit_resume_history_equal"]


@needs_mpi
@pytest.mark.parametrize("mode,message", [
    ("raise", "rank 1 failed: ValueError: injected failure at step 3"),
    ("nan", "rank 1 failed: FloatingPointError: DistributedDataParallel: rank 1: the gradient "
            "of 'layer0.weight' has 128 NaN/Inf values"),
    ("loop", "rank 1 failed: RuntimeError: injected failure in the user's loop"),
])
def test_a_failing_rank_stops_every_rank_naming_it(mode, message):
    proc, seconds = _mpirun([os.path.join(HERE, "mpi", "fault.py"), mode], 60)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert seconds < 20, seconds
    assert f"stopping rank 0 of 2: {message}" in text, text[-3000:]


@needs_mpi
def test_cli_under_mpirun(tmp_path):
    args = ["-m", "deepcalc.cli", "train", "mlp", "--dataset", "teacher", "--hidden", "16",
            "--epochs", "2", "--batch-size", "32", "--no-progress", "--out", str(tmp_path)]
    proc, _ = _mpirun(args, 120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test loss") == 1 and "2 rank(s)" in proc.stdout
    assert {"last.safetensors", "metrics.json"} <= set(os.listdir(tmp_path))
    with open(tmp_path / "metrics.json") as f:
        first = json.load(f)
    assert len(first["epochs"]) == 2
    proc, _ = _mpirun(args[:args.index("--epochs") + 1] + ["3"] +
                      args[args.index("--epochs") + 2:] + ["--resume"], 120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "metrics.json") as f:
        resumed = json.load(f)
    assert resumed["epochs"][:2] == first["epochs"] and len(resumed["epochs"]) == 3
