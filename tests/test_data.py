"""dc.data: TensorDataset, DataLoader batching / seeded shuffling / resumable state, IDX files,
MNIST from a directory, digits and teacher-regression data."""
import gzip

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.data import (DataLoader, Dataset, TensorDataset, load_digits, load_mnist,
                           read_idx, teacher_regression, write_idx)


def dataset(n=10):
    x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    return TensorDataset(x, np.arange(n, dtype=np.int64))


def labels_of(loader):
    return [b[1].data.tolist() for b in loader]


def test_tensor_dataset_checks_first_dimension():
    with pytest.raises(ValueError, match=r"same first dimension.*\(4, 2\), \(5,\)"):
        TensorDataset(np.zeros((4, 2)), np.zeros(5))
    ds = dataset(4)
    assert len(ds) == 4 and ds[2][1] == 2


@pytest.mark.parametrize("drop_last,expected", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batching_in_order(drop_last, expected):
    loader = DataLoader(dataset(10), batch_size=4, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(expected)
    assert [len(b[1]) for b in batches] == expected
    x, y = batches[0]
    assert isinstance(x, dc.Tensor) and x.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(y.data, [0, 1, 2, 3])
    np.testing.assert_array_equal(x.data, np.arange(12.0).reshape(4, 3))


def test_generic_dataset_is_stacked():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.float32(i) * np.ones(2, np.float32), i * i

    (x, y), = list(DataLoader(Squares(), batch_size=5))
    assert x.dtype == np.float32 and x.shape == (5, 2)
    assert y.data.dtype.kind == "i" and y.data.tolist() == [0, 1, 4, 9, 16]


def test_shuffle_is_seeded():
    a = labels_of(DataLoader(dataset(20), batch_size=5, shuffle=True, seed=3))
    b = labels_of(DataLoader(dataset(20), batch_size=5, shuffle=True, seed=3))
    c = labels_of(DataLoader(dataset(20), batch_size=5, shuffle=True, seed=4))
    assert a == b and a != c
    assert sorted(sum(a, [])) == list(range(20)) and sum(a, []) != list(range(20))
    loader = DataLoader(dataset(20), batch_size=5, shuffle=True, seed=3)
    assert labels_of(loader) != labels_of(loader)  # each epoch draws a new order
    g = DataLoader(dataset(20), batch_size=5, shuffle=True,
                   generator=np.random.default_rng(3))
    assert labels_of(g) == a


def test_shuffle_follows_manual_seed():
    dc.manual_seed(7)
    a = labels_of(DataLoader(dataset(20), batch_size=20, shuffle=True))
    dc.manual_seed(7)
    b = labels_of(DataLoader(dataset(20), batch_size=20, shuffle=True))
    dc.manual_seed(8)
    c = labels_of(DataLoader(dataset(20), batch_size=20, shuffle=True))
    assert a == b and a != c


@pytest.mark.parametrize("stop_after", [0, 2, 4])
def test_state_restore_resumes_exactly(stop_after, tmp_path):
    """Checkpoint after `stop_after` batches of epoch 2 (0 = at the epoch boundary)."""
    def loader():
        return DataLoader(dataset(23), batch_size=5, shuffle=True, seed=11)
    ref = loader()
    uninterrupted = [labels_of(ref) for _ in range(4)]

    run = loader()
    seen = [labels_of(run)]
    it = iter(run)
    partial = [next(it)[1].data.tolist() for _ in range(stop_after)]
    dc.save(tmp_path / "dl.safetensors", {"loader": run.state_dict()})
    resumed = loader()
    resumed.load_state_dict(dc.load(tmp_path / "dl.safetensors")["loader"])
    seen.append(partial + labels_of(resumed))
    seen += [labels_of(resumed) for _ in range(2)]
    assert seen == uninterrupted


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(dataset(), batch_size=0)
    with pytest.raises(ValueError, match="not both"):
        DataLoader(dataset(), seed=1, generator=np.random.default_rng(1))


# --- IDX ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(dtype, suffix, tmp_path):
    a = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / f"x-idx{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_idx_reads_big_endian_header(tmp_path):
    raw = bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 1]) + bytes([1, 2, 0xFF, 0xFE])
    (tmp_path / "h").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "h"), [[258], [-2]])


@pytest.mark.parametrize("raw,match", [
    (b"\x00\x00", "truncated: 2 bytes"),
    (b"\x01\x00\x08\x01" + b"\x00" * 8, "not an IDX file: magic number 01000801"),
    (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x00", "not an IDX file"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"header declares 3 dimensions \(16 bytes\)"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", r"truncated: shape \(5,\).*needs 13 bytes"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01ab", "longer than its header says"),
])
def test_idx_corrupt_files(raw, match, tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_corrupt_gzip_and_missing(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((100, 10), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="not a valid gzip file"):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


def test_load_mnist_from_directory(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 3)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
    train, test = load_mnist(tmp_path)
    assert len(train) == 6 and len(test) == 3
    x, y = train.arrays
    assert x.shape == (6, 784) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == np.int64 and y.tolist() == list(range(6))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels of shape \(4,\), expected \(3,\)"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_mnist(tmp_path / "empty")


# --- built-in data ------------------------------------------------------------------------
def test_load_digits_split():
    pytest.importorskip("sklearn")
    train, test = load_digits(test_fraction=0.25, seed=0)
    x, y = train.arrays
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.25 * 1797) < 10
    assert x.shape[1] == 64 and x.dtype == np.float32 and x.min() == 0 and x.max() == 1
    assert y.dtype == np.int64
    counts = np.bincount(test.arrays[1], minlength=10) / np.bincount(
        np.concatenate([y, test.arrays[1]]))
    np.testing.assert_allclose(counts, 0.25, atol=0.01)  # stratified
    again = load_digits(test_fraction=0.25, seed=0)[1].arrays[0]
    other = load_digits(test_fraction=0.25, seed=1)[1].arrays[0]
    np.testing.assert_array_equal(test.arrays[0], again)
    assert not np.array_equal(test.arrays[0], other)


def test_teacher_regression():
    a = teacher_regression(50, 4, 2, hidden=(8, 8), seed=1)
    b = teacher_regression(50, 4, 2, hidden=(8, 8), seed=1)
    c = teacher_regression(50, 4, 2, hidden=(8, 8), seed=1, noise=0.1)
    x, y = a.arrays
    assert x.shape == (50, 4) and y.shape == (50, 2) and y.dtype == np.float32
    np.testing.assert_array_equal(y, b.arrays[1])
    np.testing.assert_array_equal(x, c.arrays[0])
    diff = c.arrays[1] - y
    assert 0.05 < diff.std() < 0.15
    assert y.std() > 0.1
