"""dc.save / dc.load: nested round trip (Tensors, arrays, Generators, JSON values), atomic
writes, and clear errors for missing, truncated and corrupt files."""
import os

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import serialization


def nested_state():
    rng = np.random.default_rng(5)
    rng.standard_normal(3)  # advance, so the state is not a fresh seed
    return {
        "model": {"layer.0.weight": dc.tensor(np.arange(6, dtype=np.float32).reshape(2, 3),
                                              requires_grad=True),
                  "layer.0.bias": np.array([1.5, -2.25]),
                  "steps": np.array([[1, 2], [3, 4]], dtype=np.int32),
                  "scalar": np.array(3.0, dtype=np.float64)},
        "optim": {"state": {0: {"step": 4, "exp_avg": np.ones(3, np.float32)}},
                  "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0]}]},
        "rng": rng,
        "meta": {"epoch": 3, "loss": 0.125, "name": "run/1", "tags": ["a", None, True],
                 "__odd__": 1, "empty": {}},
        "history": [np.zeros(2), {"x": 1}],
    }


def test_round_trip(tmp_path):
    state = nested_state()
    path = tmp_path / "ckpt.safetensors"
    dc.save(path, state)
    out = dc.load(path)
    w = out["model"]["layer.0.weight"]
    assert isinstance(w, dc.Tensor) and w.requires_grad and w.dtype == np.float32
    np.testing.assert_array_equal(w.data, state["model"]["layer.0.weight"].data)
    for key in ("layer.0.bias", "steps", "scalar"):
        a, b = out["model"][key], state["model"][key]
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert out["optim"]["state"][0]["step"] == 4  # int key kept
    assert out["optim"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert out["meta"] == state["meta"]
    np.testing.assert_array_equal(out["history"][0], np.zeros(2))
    assert out["history"][1] == {"x": 1}
    assert out["rng"].standard_normal(4).tolist() == state["rng"].standard_normal(4).tolist()
    out["model"]["layer.0.bias"][0] = 7.0  # loaded arrays are writeable


def test_generator_state_helpers_are_json():
    import json
    g = np.random.default_rng(123)
    g.integers(10, size=5)
    s = json.loads(json.dumps(serialization.generator_state(g)))
    assert isinstance(s["state"]["state"], str) and int(s["state"]["state"]) > 2**64
    h = serialization.generator_from_state(s)
    k = serialization.set_generator_state(np.random.default_rng(0), s)
    assert k.bit_generator.state == h.bit_generator.state == g.bit_generator.state
    assert h.random(3).tolist() == g.random(3).tolist()


def test_failed_write_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    dc.save(path, {"a": np.ones(3)})
    before = path.read_bytes()

    def boom(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        dc.save(path, {"a": np.zeros(1000)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"]  # no temporary left behind
    with pytest.raises(TypeError, match="at 'a/b'.*object"):
        dc.save(path, {"a": {"b": object()}})
    np.testing.assert_array_equal(dc.load(path)["a"], np.ones(3))


def test_truncated_and_corrupt_files(tmp_path):
    path = tmp_path / "runs.safetensors"
    dc.save(path, nested_state())
    raw = path.read_bytes()
    for n in (len(raw) - 4, 100, 5):
        path.write_bytes(raw[:n])
        with pytest.raises(ValueError, match="is not a valid deepcalc checkpoint") as info:
            dc.load(path)
        assert str(path) in str(info.value)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        dc.load(path)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        dc.load(tmp_path / "missing.safetensors")


def test_plain_safetensors_file_is_rejected(tmp_path):
    from safetensors.numpy import save_file
    path = tmp_path / "plain.safetensors"
    save_file({"w": np.ones(2, np.float32)}, str(path))
    with pytest.raises(ValueError, match="not a deepcalc checkpoint"):
        dc.load(path)
