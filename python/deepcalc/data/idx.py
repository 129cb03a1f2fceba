"""MNIST-format IDX files: ``read_idx`` / ``write_idx`` (gzip when the name ends in .gz) and
``load_mnist(root)`` reading the four MNIST files from a user directory (never downloads).

Layout: 2 zero bytes, a dtype code, ndim; ndim big-endian uint32 sizes; big-endian data."""
from __future__ import annotations

import gzip
import os

import numpy as np

from .dataset import TensorDataset

_CODES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: str) -> bytes:
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_idx: no such file: {path}")
    if not path.endswith(".gz"):
        with open(path, "rb") as f:
            return f.read()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError; a cut stream an EOFError
        raise ValueError(f"read_idx: {path} is not a valid gzip file (truncated or corrupt): "
                         f"{e}") from e


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file, in native byte order."""
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"read_idx: {path} is truncated: {len(raw)} bytes, an IDX file starts "
                         "with a 4-byte magic number")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _CODES:
        raise ValueError(f"read_idx: {path} is not an IDX file: magic number {raw[:4].hex()}, "
                         "expected 0000 then a dtype code in 08,09,0b,0c,0d,0e and ndim")
    dtype, ndim = _CODES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path} is truncated: the header declares {ndim} "
                         f"dimensions ({header} bytes) but the file has {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(f"read_idx: {path} is {what}: shape {shape} of {dtype.name} needs "
                         f"{expected} bytes, the file has {len(raw)}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file."""
    path = os.fspath(path)
    a = np.asarray(array)
    codes = {d.newbyteorder("=").str: c for c, d in _CODES.items()}
    code = codes.get(a.dtype.newbyteorder("=").str)
    if code is None or a.ndim > 255:
        raise ValueError(f"write_idx: cannot store {a.dtype} with {a.ndim} dims in IDX "
                         "(uint8, int8, int16, int32, float32, float64; at most 255 dims)")
    body = (bytes([0, 0, code, a.ndim]) + np.array(a.shape, ">u4").tobytes()
            + a.astype(_CODES[code]).tobytes())
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(body)


_MNIST = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find(root: str, name: str) -> str:
    tried = []
    for folder in (root, os.path.join(root, "MNIST", "raw")):
        for candidate in (name, name + ".gz", name.replace("-idx", ".idx")):
            path = os.path.join(folder, candidate)
            if os.path.exists(path):
                return path
            tried.append(path)
    raise FileNotFoundError(f"load_mnist: {name} not found; tried {', '.join(tried)}. deepcalc "
                            "never downloads data: put the MNIST IDX files in that directory")


def load_mnist(root, dtype=np.float32, flatten: bool = True):
    """(train, test) TensorDatasets of MNIST read from ``root``: images scaled to [0, 1]
    (shape (N, 784), or (N, 28, 28) with ``flatten=False``) and int64 labels."""
    root = os.fspath(root)
    out = []
    for split, (img_name, lbl_name) in _MNIST.items():
        img_path, lbl_path = _find(root, img_name), _find(root, lbl_name)
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"load_mnist: {img_path} holds {images.dtype} of shape "
                             f"{images.shape}, expected uint8 images (N, rows, cols)")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"load_mnist: {lbl_path} holds labels of shape {labels.shape}, "
                             f"expected ({images.shape[0]},) to match {img_path}")
        x = images.astype(dtype) / dtype(255)
        out.append(TensorDataset(x.reshape(len(x), -1) if flatten else x,
                                 labels.astype(np.int64)))
    return tuple(out)
