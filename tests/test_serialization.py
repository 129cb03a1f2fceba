"""dc.save / dc.load: nested round trip (Tensors, arrays, Generators, JSON values), atomic
writes (modes, errors naming the checkpoint), checksums, and clear errors for missing,
truncated, corrupt and crafted files."""
import json
import os
import stat
import struct

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


def test_every_dtype_byte_order_and_reserved_key_round_trips(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    state = {"__metadata__": np.ones(2),  # the safetensors header's own key
             "big_endian": np.arange(4, dtype=">f4"), "empty": np.zeros((0, 3), np.float32),
             **{np.dtype(t).name: np.arange(3).astype(t) for t in (
                 bool, np.uint8, np.int8, np.uint16, np.int16, np.float16, np.uint32, np.int32,
                 np.float32, np.uint64, np.int64, np.float64, np.complex64)}}
    dc.save(path, state)
    out = dc.load(path)
    assert sorted(out) == sorted(state)
    for key, a in state.items():
        b = out[key]
        assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("<"), key
        assert b.flags.aligned and b.flags.writeable and b.dtype.isnative
        np.testing.assert_array_equal(b, a)
    for bad in (np.array(["a"]), np.array([1], dtype=object), np.zeros(2, np.complex128)):
        with pytest.raises(TypeError, match="the array at 'x/y' has dtype"):
            dc.save(path, {"x": {"y": bad}})


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


# --- helpers that craft files by hand -------------------------------------------------------
def read_raw(path):
    """(header dict, data bytes) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_raw(path, header, data=b""):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def with_tree(path, edit):
    """Rewrite ``path``'s skeleton JSON through ``edit`` (checksums dropped, as another tool
    writing the file would)."""
    header, data = read_raw(path)
    meta = header["__metadata__"]
    del meta["crc32"], meta["tree_crc32"]
    tree = json.loads(meta["tree"])
    edit(tree)
    meta["tree"] = json.dumps(tree)
    write_raw(path, header, data)


def test_generator_name_from_the_file_is_never_looked_up(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    for name in ("seed", "default_rng", "Generator", "__class__", ["PCG64"], None):
        dc.save(path, {"rng": np.random.default_rng(1)})
        with_tree(path, lambda t: t["rng"]["__generator__"].update(bit_generator=name))
        before = np.random.get_state()[1].copy()
        with pytest.raises(ValueError, match="'rng/bit_generator'.*not a supported") as info:
            dc.load(path)
        assert str(path) in str(info.value)
        np.testing.assert_array_equal(np.random.get_state()[1], before)  # global RNG untouched
    with pytest.raises(ValueError, match="'generator/bit_generator'"):
        serialization.generator_from_state({"bit_generator": "seed"})  # DataLoader's path


def test_generator_state_arrays_only_take_listed_dtypes(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    g = np.random.Generator(np.random.MT19937(2))
    for bad in ({"dtype": "O"}, {"dtype": "<f8"}, {"__ndarray__": ["1", "x"]},
                {"__ndarray__": [str(2**40)]}, {"extra": 1}):
        dc.save(path, {"g": g})
        with_tree(path, lambda t: t["g"]["__generator__"]["state"]["key"].update(bad))
        with pytest.raises(ValueError, match="'g/state/key'") as info:
            dc.load(path)
        assert str(path) in str(info.value)
    dc.save(path, {"g": g})
    with_tree(path, lambda t: t["g"]["__generator__"]["state"].pop("pos"))
    with pytest.raises(ValueError, match="field 'g': not a valid MT19937 state"):
        dc.load(path)
    header, data = read_raw(path)
    header["__metadata__"]["tree"] = "[1]"  # the root of a state is a dict
    write_raw(path, header, data)
    with pytest.raises(ValueError, match="'tree': is a list, not an object"):
        dc.load(path)


@pytest.mark.parametrize("edit, field", [
    (lambda t: t["a"].update(__array__="nope"), "field 'a': refers to tensor 'nope'"),
    (lambda t: t["a"].update(shape=[4]), "field 'a': shape \\[4\\]"),
    (lambda t: t["a"].update(shape=[-1, -3]), "field 'a': shape"),
    (lambda t: t["a"].update(__tensor__="a"), "field 'a': unexpected keys"),
    (lambda t: t.update(b={"__pickle__": "os.system"}), "field 'b': unexpected keys"),
    (lambda t: t.update(b=dict(t["a"])), "field 'b': tensor 'a' is referred to twice"),
    (lambda t: t["t"].update(requires_grad="yes"), "field 't/requires_grad'"),
    (lambda t: t["i"].update(requires_grad=True), "field 'i': .*floating-point"),
    (lambda t: t.update(d={"__dict__": [[[1], 2]]}), "field 'd/__dict__'"),
    (lambda t: t.update(d={"__dict__": {"k": 1}}), "field 'd/__dict__': expected a list"),
    (lambda t: t.update(d={"__tuple__": 3}), "field 'd/__tuple__'"),
])
def test_corrupt_skeleton_names_path_and_field(tmp_path, edit, field):
    path = tmp_path / "ckpt.safetensors"
    dc.save(path, {"a": np.ones(3), "t": dc.tensor(np.ones(2)), "i": dc.tensor(np.arange(2))})
    with_tree(path, edit)
    with pytest.raises(ValueError, match=field) as info:
        dc.load(path)
    assert str(path) in str(info.value)


def test_corrupt_header_is_refused_before_allocating(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    meta = {"format": "deepcalc.checkpoint", "version": "1", "tree": '{"a":1}'}
    cases = [
        ({"w": {"dtype": "F32", "shape": [10**12], "data_offsets": [0, 8]}}, "needs 4000000000000"),
        ({"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 0]}}, "needs"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, "truncated: tensor 'w'"),
        ({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}, "dtype 'BF16'"),
        ({"w": {"dtype": "object", "shape": [1], "data_offsets": [0, 8]}}, "dtype 'object'"),
        ({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, "dtype \\['F32'\\]"),
        ({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}, "shape \\[1.5\\]"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, "data_offsets"),
        ({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
          "v": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, "overlap or leave a gap"),
        ({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, "6 bytes after"),
        ({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2], "x": 1}}, "tensor 'w'"),
        ({"w": [1]}, "tensor 'w'"),
    ]
    for header, message in cases:
        write_raw(path, {"__metadata__": meta, **header}, bytes(8))
        with pytest.raises(ValueError, match=message) as info:
            dc.load(path)
        assert str(path) in str(info.value)
    write_raw(path, {"__metadata__": {"format": 1}})
    with pytest.raises(ValueError, match="__metadata__ is not an object of strings"):
        dc.load(path)
    write_raw(path, {"__metadata__": {**meta, "version": "one"}})
    with pytest.raises(ValueError, match="'version' is 'one'"):
        dc.load(path)


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"\x05\x00\x00", "truncated: 3 bytes"),
    (struct.pack("<Q", 10**6) + b"{}", "header length 1000000 is larger than the file"),
    (struct.pack("<Q", 4) + b"{no}", "header is not valid JSON"),
    (struct.pack("<Q", 2) + b"\xff\xfe", "header is not valid JSON"),
    (struct.pack("<Q", 2) + b"[]", "header is a JSON list"),
    (struct.pack("<Q", 9) + b'{"a":NaN}', "header is not valid JSON"),
    (struct.pack("<Q", 15) + b'{"a":[],"a":[]}', "duplicate key 'a'"),
    (struct.pack("<Q", 200000) + b"[" * 100000 + b"]" * 100000, "header is not valid JSON"),
], ids=["empty", "short", "long-header", "not-json", "not-utf8", "list", "nan", "duplicate",
        "deep"])
def test_malformed_files_name_the_path(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        dc.load(path)
    assert str(path) in str(info.value)


def test_load_a_directory_or_missing_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory") as info:
        dc.load(tmp_path)
    assert str(tmp_path) in str(info.value) and "corrupt" not in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        dc.load(tmp_path / "missing.safetensors")
    assert str(tmp_path / "missing.safetensors") in str(info.value)


def test_flipped_byte_in_data_is_caught(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    state = {"model": {"w": np.arange(1000, dtype=np.float32), "b": np.ones(7)}, "epoch": 3}
    dc.save(path, state)
    header, data = read_raw(path)
    raw = bytearray(path.read_bytes())
    begin, end = header["model/w"]["data_offsets"]
    raw[len(raw) - len(data) + begin + 1234] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt\\): tensor 'model/w' fails its CRC32") as info:
        dc.load(path)
    assert str(path) in str(info.value)
    dc.save(path, state)  # a flipped digit in the skeleton ("epoch":3 -> 7) is caught too
    path.write_bytes(path.read_bytes().replace(b'\\"epoch\\":3', b'\\"epoch\\":7'))
    with pytest.raises(ValueError, match="metadata field 'tree' fails its CRC32"):
        dc.load(path)


def test_files_without_checksums_load_and_ours_load_elsewhere(tmp_path):
    from safetensors.numpy import load_file, save_file
    path = tmp_path / "ckpt.safetensors"
    state = nested_state()
    dc.save(path, state)
    theirs = load_file(str(path))  # our files are plain safetensors
    np.testing.assert_array_equal(theirs["model/layer.0.weight"], np.arange(6).reshape(2, 3))
    header, _ = read_raw(path)
    meta = {k: v for k, v in header["__metadata__"].items() if "crc32" not in k}
    other = tmp_path / "other.safetensors"
    save_file(theirs, str(other), metadata=meta)  # another tool, no checksums
    out = dc.load(other)
    np.testing.assert_array_equal(out["model"]["layer.0.weight"].data,
                                  state["model"]["layer.0.weight"].data)
    assert out["rng"].random(3).tolist() == state["rng"].random(3).tolist()


def test_modes_follow_the_umask_and_overwrites_keep_theirs(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        path = tmp_path / "ckpt.safetensors"
        dc.save(path, {"a": np.ones(2)})
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        dc.save(path, {"a": np.ones(3)})
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not tightened to 0600
        os.chmod(path, 0o640)
        dc.save(path, {"a": np.ones(4)})
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        os.umask(0o077)
        dc.save(tmp_path / "private.safetensors", {"a": np.ones(2)})
        assert stat.S_IMODE(os.stat(tmp_path / "private.safetensors").st_mode) == 0o600
        os.umask(0)  # the temporary holding a private checkpoint's data is never wider
        os.chmod(path, 0o600)
        modes = []
        real_open = os.open
        monkeypatch.setattr(os, "open", lambda f, flags, mode=0o777, **kw: (
            modes.append((os.path.basename(f), mode)), real_open(f, flags, mode, **kw))[1])
        dc.save(path, {"a": np.ones(4)})
        monkeypatch.undo()
        assert [m for f, m in modes if f.startswith(".tmp-")] == [0o600]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(old)
    assert len(dc.load(path)["a"]) == 4


def test_unwritable_targets_name_the_checkpoint(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    for target, error in ((tmp_path / "file" / "ckpt.safetensors", NotADirectoryError),
                          (tmp_path / "missing" / "ckpt.safetensors", FileNotFoundError),
                          (tmp_path, IsADirectoryError)):
        with pytest.raises(error) as info:
            dc.save(target, {"a": np.ones(2)})
        assert str(target) in str(info.value) and ".tmp-" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["file"]
