"""dc.train.fit: the loss decreases, History, EarlyStopping, NaN/divergence stops, per-epoch
checkpoints, bit-exact resume, corrupt checkpoints; and the ``deepcalc`` command end to end."""
import json
import os

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import data, nn, optim
from deepcalc.nn import functional as F
from deepcalc.train import Callback, EarlyStopping, History, fit


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def teacher(n=512, seed=0):
    full = data.teacher_regression(n + 128, 8, 2, seed=seed)
    x, y = full.arrays
    return data.TensorDataset(x[:n], y[:n]), data.TensorDataset(x[n:], y[n:])


def test_fit_decreases_loss_and_fills_history(tmp_path):
    train, val = teacher()
    model = nn.MLP([8, 32, 2], activation="tanh")
    opt = optim.Adam(model.parameters(), lr=1e-2)
    hist = fit(model, F.mse_loss, opt, data.DataLoader(train, 64, shuffle=True, seed=0),
               val=data.DataLoader(val, 128), epochs=6, progress=False)
    assert isinstance(hist, History) and len(hist) == 6
    assert hist["epoch"] == list(range(6))
    assert hist.keys() == ["loss", "time", "val_loss", "epoch"]
    assert hist["loss"][-1] < 0.3 * hist["loss"][0]
    assert hist["val_loss"][-1] < 0.5 * hist["val_loss"][0]
    assert hist.best("val_loss") == min(hist["val_loss"])
    with pytest.raises(KeyError, match="History.best: no metric 'accuracy'"):
        hist.best("accuracy")
    # the logged val_loss is the mean loss over the validation set in eval mode
    xv, yv = val.arrays
    assert hist["val_loss"][-1] == pytest.approx(
        F.mse_loss(model(dc.tensor(xv)), dc.tensor(yv)).item(), rel=1e-5)
    path = tmp_path / "h.json"
    hist.to_json(path)
    assert json.loads(path.read_text())["epochs"] == hist.epochs


def test_fit_classification_logs_accuracy():
    x, y = teacher()[0].arrays
    labels = y.argmax(axis=1).astype(np.int64)
    model = nn.MLP([8, 16, 2], activation="relu")
    hist = fit(model, F.cross_entropy, optim.Adam(model.parameters(), lr=1e-2),
               data.DataLoader(data.TensorDataset(x, labels), 64, shuffle=True, seed=0),
               val=data.DataLoader(data.TensorDataset(x, labels), 512), epochs=4, progress=False)
    assert {"accuracy", "val_accuracy"} <= set(hist.keys())
    assert all(0 <= a <= 1 for a in hist["accuracy"] + hist["val_accuracy"])
    assert hist["val_accuracy"][-1] > 0.8


def test_early_stopping():
    train, val = teacher(128)
    model = nn.MLP([8, 4, 2])
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    # lr 0: the validation loss never improves after the first epoch
    hist = fit(model, F.mse_loss, optim.SGD(model.parameters(), lr=0.0),
               data.DataLoader(train, 32), val=data.DataLoader(val, 64), epochs=10,
               callbacks=[stopper], progress=False)
    assert len(hist) == 3 and stopper.stopped_epoch == 2
    assert stopper.best == hist["val_loss"][0]
    with pytest.raises(KeyError, match="EarlyStopping: metric 'val_acc' not in"):
        fit(model, F.mse_loss, optim.SGD(model.parameters(), lr=0.0), data.DataLoader(train, 32),
            val=data.DataLoader(val, 64), epochs=1, callbacks=[EarlyStopping("val_acc")],
            progress=False)


def test_nan_in_batch_stops_with_epoch_and_step():
    train, _ = teacher(128)
    x, y = train.arrays
    x = x.copy()
    x[3 * 16 + 5, 2] = np.nan  # in the fourth batch of 16
    model = nn.MLP([8, 4, 2])
    with pytest.raises(FloatingPointError, match="input batch at epoch 0, step 3 contains NaN"):
        fit(model, F.mse_loss, optim.SGD(model.parameters(), lr=0.01),
            data.DataLoader(data.TensorDataset(x, y), 16), epochs=2, progress=False)


def test_diverging_loss_stops_with_epoch_and_step():
    train, _ = teacher(256)
    model = nn.MLP([8, 32, 2], activation="relu")
    with pytest.raises(FloatingPointError, match=r"fit: the loss is (nan|inf) at epoch \d+, "
                                                 r"step \d+; lower the learning rate"):
        fit(model, F.mse_loss, optim.SGD(model.parameters(), lr=1e8),
            data.DataLoader(train, 16), epochs=5, progress=False)


def test_checkpoint_written_every_epoch(tmp_path):
    train, val = teacher(128)
    model = nn.MLP([8, 4, 2])
    seen = []

    class Inspect(Callback):
        def on_epoch_end(self, epoch, logs, state):
            ckpt = dc.load(tmp_path / "last.safetensors")
            seen.append(ckpt["epoch"])
            assert len(ckpt["history"]) == epoch + 1
            for k, v in model.state_dict().items():
                np.testing.assert_array_equal(ckpt["model"][k].data, v.data)

    fit(model, F.mse_loss, optim.Adam(model.parameters(), lr=1e-3), data.DataLoader(train, 32),
        val=data.DataLoader(val, 64), epochs=3, checkpoint_dir=tmp_path, callbacks=[Inspect()],
        progress=False)
    assert seen == [0, 1, 2]


def _resume_setup(init_seed, loader_seed):
    dc.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(8, 32, activation="relu"), nn.Dropout(0.2),
                          nn.Linear(32, 2))
    opt = optim.Adam(model.parameters(), lr=3e-3)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    train, val = teacher(200)  # 200 / 32: a ragged last batch
    return (model, opt, sched, data.DataLoader(train, 32, shuffle=True, seed=loader_seed),
            data.DataLoader(val, 64))


@pytest.mark.parametrize("loader_seed", [1, None])
def test_resume_equals_uninterrupted(tmp_path, loader_seed):
    model, opt, sched, train, val = _resume_setup(0, loader_seed)
    straight = fit(model, F.mse_loss, opt, train, val=val, epochs=4, scheduler=sched,
                   progress=False)
    expected = {k: v.data.copy() for k, v in model.state_dict().items()}

    model, opt, sched, train, val = _resume_setup(0, loader_seed)
    fit(model, F.mse_loss, opt, train, val=val, epochs=2, checkpoint_dir=tmp_path,
        scheduler=sched, progress=False)
    # new objects, another seed: everything that matters must come from the checkpoint
    model, opt, sched, train, val = _resume_setup(123, loader_seed)
    resumed = fit(model, F.mse_loss, opt, train, val=val, epochs=4, checkpoint_dir=tmp_path,
                  resume=True, scheduler=sched, progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-3 * 0.7 ** 4)
    assert resumed["epoch"] == [0, 1, 2, 3]
    assert resumed["loss"] == straight["loss"] and resumed["val_loss"] == straight["val_loss"]
    for k, v in model.state_dict().items():
        assert np.array_equal(v.data, expected[k]), k


def test_truncated_checkpoint_clear_error(tmp_path):
    model, opt, _, train, val = _resume_setup(0, 1)
    fit(model, F.mse_loss, opt, train, epochs=1, checkpoint_dir=tmp_path, progress=False)
    path = tmp_path / "last.safetensors"
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="is not a valid deepcalc checkpoint \\(truncated or corrupt\\)"):
        fit(model, F.mse_loss, opt, train, epochs=2, checkpoint_dir=tmp_path, resume=True,
            progress=False)
    path.write_bytes(raw[:5])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        dc.load(path)


# --- the command line ------------------------------------------------------------------------
def test_cli_train_digits_and_resume(tmp_path, capsys):
    from deepcalc.cli import main
    out = str(tmp_path / "run")
    assert main(["train", "mlp", "--dataset", "digits", "--epochs", "1", "--no-progress",
                 "--out", out]) == 0
    assert main(["train", "mlp", "--dataset", "digits", "--epochs", "2", "--no-progress",
                 "--out", out, "--resume"]) == 0
    assert os.path.exists(os.path.join(out, "last.safetensors"))
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    assert metrics["final_test"]["accuracy"] > 0.85
    assert metrics["final_test"]["accuracy"] == metrics["epochs"][-1]["val_accuracy"]
    ckpt = dc.load(os.path.join(out, "last.safetensors"))
    assert ckpt["epoch"] == 1 and {"0.mean", "0.std", "1.layer0.weight"} <= set(ckpt["model"])
    assert "test accuracy" in capsys.readouterr().out


def test_cli_train_teacher_regression(tmp_path):
    from deepcalc.cli import main
    out = str(tmp_path / "reg")
    assert main(["train", "mlp", "--dataset", "teacher", "--epochs", "2", "--hidden", "16",
                 "--activation", "tanh", "--no-progress", "--out", out]) == 0
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert "accuracy" not in metrics["final_test"]
    assert metrics["epochs"][1]["loss"] < metrics["epochs"][0]["loss"]


def test_cli_calculus(capsys):
    from deepcalc.cli import main
    assert main(["calculus"]) == 0
    text = capsys.readouterr().out
    assert "matches forward mode: True" in text
    assert "symmetric: True" in text and "log|det J|" in text


def test_cli_defaults_reach_readme_accuracy(tmp_path):
    # Guards the README's promise: `deepcalc train mlp` with its documented defaults (digits,
    # 128,64 relu, Adam 1e-3, 30 epochs) reaches >= 97.5% test accuracy.  ~2 s on one thread.
    from deepcalc.cli import main
    out = str(tmp_path / "default")
    assert main(["train", "mlp", "--no-progress", "--out", out]) == 0
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert len(metrics["epochs"]) == 30
    assert metrics["final_test"]["accuracy"] >= 0.975


def test_resume_from_a_checkpoint_with_wrong_field_types_names_the_path_and_field(tmp_path):
    import deepcalc as dc
    from deepcalc.nn import functional as F
    rng = np.random.default_rng(0)
    data = dc.data.TensorDataset(rng.standard_normal((8, 3)).astype(np.float32),
                                 rng.integers(0, 2, 8))
    model = dc.nn.Linear(3, 2)
    opt = dc.optim.SGD(model.parameters(), lr=0.1)
    dc.train.fit(model, F.cross_entropy, opt, dc.data.DataLoader(data, batch_size=4), epochs=1,
                 checkpoint_dir=str(tmp_path), progress=False)
    path = tmp_path / "last.safetensors"
    state = dc.load(str(path))
    state["epoch"] = "three"
    dc.save(str(path), state)
    with pytest.raises(ValueError, match=r"last\.safetensors: field 'epoch' is a str, expected an int"):
        dc.train.fit(model, F.cross_entropy, opt, dc.data.DataLoader(data, batch_size=4),
                     epochs=2, checkpoint_dir=str(tmp_path), resume=True, progress=False)


def test_step_hooks_see_gradients_before_the_step_and_the_loss_after():
    train, _ = teacher(128)
    model = nn.MLP([8, 4, 2], activation="tanh")
    opt = optim.SGD(model.parameters(), lr=0.1)
    w = next(iter(model.parameters()))

    class Probe(Callback):
        def __init__(self):
            self.events = []

        def on_after_backward(self, epoch, step, m):
            assert m is model and w.grad is not None
            self.events.append(("grad", epoch, step, w.data.copy(), w.grad.data.copy()))

        def on_step_end(self, epoch, step, loss, m):
            self.events.append(("step", epoch, step, w.data.copy(), loss))

    probe = Probe()
    hist = fit(model, F.mse_loss, opt, data.DataLoader(train, 64), epochs=2, callbacks=[probe],
               progress=False)
    kinds = [(e[0], e[1], e[2]) for e in probe.events]
    assert kinds == [(k, ep, st) for ep in range(2) for st in range(2) for k in ("grad", "step")]
    for before, after in zip(probe.events[::2], probe.events[1::2]):
        np.testing.assert_allclose(after[3], before[3] - 0.1 * before[4], rtol=1e-6, atol=1e-7)
    losses = [e[4] for e in probe.events[1::2]]
    assert hist["loss"][0] == pytest.approx(np.mean(losses[:2]), rel=1e-6)
