"""Checkpoints without pickle: ``save(path, state)`` writes a nested dict to one safetensors
file (arrays as tensors under flattened keys like "model/layer.0.weight", everything else as
JSON in the metadata, a CRC32 per tensor) atomically; ``load(path)`` returns the same structure.
The reader trusts nothing in the file: types and generators come from fixed tables, every size
is checked against the file before anything is allocated, and checksums are verified."""
from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import stat
import struct
import zlib

import numpy as np

from .autodiff.graph import Tensor

_FORMAT = "deepcalc.checkpoint"
_VERSION = 1
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header

# safetensors dtype names <-> little-endian numpy dtypes (the format is little-endian)
_DTYPES = {"BOOL": np.dtype("|b1"), "U8": np.dtype("|u1"), "I8": np.dtype("|i1"),
           "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
           "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
           "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
           "C64": np.dtype("<c8")}
_DTYPE_NAMES = {dt: name for name, dt in _DTYPES.items()}

# The bit generators a checkpoint may name, and the dtypes of the arrays in their states
# (MT19937's key is uint32; Philox's counter/key/buffer and SFC64's state are uint64).
_BIT_GENERATORS = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM,
                   "Philox": np.random.Philox, "SFC64": np.random.SFC64,
                   "MT19937": np.random.MT19937}
_STATE_DTYPES = {"<u4": np.uint32, "<u8": np.uint64}
_INT_STRING = re.compile(r"-?[0-9]+")


# --- generator state <-> JSON ----------------------------------------------------------------
def generator_state(gen: np.random.Generator) -> dict:
    """A JSON-able copy of ``gen.bit_generator.state``; ints (128-bit for PCG64) as strings."""
    def enc(v):
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items()}
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return str(int(v))
        if isinstance(v, np.ndarray):
            return {"__ndarray__": [str(int(x)) for x in v.ravel()], "dtype": v.dtype.str}
        return v
    return enc(gen.bit_generator.state)


def _decode_generator_value(v, where: str):
    if isinstance(v, dict) and "__ndarray__" in v:
        dtype = _STATE_DTYPES.get(v.get("dtype")) if isinstance(v.get("dtype"), str) else None
        items = v["__ndarray__"]
        if set(v) != {"__ndarray__", "dtype"} or dtype is None or not isinstance(items, list) \
                or not all(isinstance(x, str) and _INT_STRING.fullmatch(x) for x in items):
            raise ValueError(f"field '{where}': expected an array of integer strings with "
                             f"dtype {' or '.join(_STATE_DTYPES)}")
        try:
            return np.array([int(x) for x in items], dtype=dtype)
        except (OverflowError, ValueError) as e:
            raise ValueError(f"field '{where}': {e}") from e
    if isinstance(v, dict):
        return {k: _decode_generator_value(x, f"{where}/{k}") for k, x in v.items()}
    if isinstance(v, str) and _INT_STRING.fullmatch(v):
        try:
            return int(v)
        except ValueError as e:  # more digits than int() accepts
            raise ValueError(f"field '{where}': {e}") from e
    return v


def set_generator_state(gen: np.random.Generator, state: dict,
                        where: str = "generator") -> np.random.Generator:
    """Restore a state made by ``generator_state`` into ``gen`` (same bit generator kind).
    A malformed state raises ValueError naming the field (under ``where``)."""
    decoded = _decode_generator_value(state, where)
    try:
        gen.bit_generator.state = decoded
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError) as e:
        kind = type(gen.bit_generator).__name__
        raise ValueError(f"field '{where}': not a valid {kind} state "
                         f"({type(e).__name__}: {e})") from e
    return gen


def generator_from_state(state: dict, where: str = "generator") -> np.random.Generator:
    """A new Generator whose bit generator (one of PCG64, PCG64DXSM, Philox, SFC64, MT19937)
    is in ``state``. Names outside that table are refused, never looked up."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    kind = _BIT_GENERATORS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError(f"field '{where}/bit_generator': {name!r} is not a supported bit "
                         f"generator (expected one of {', '.join(_BIT_GENERATORS)})")
    return set_generator_state(np.random.Generator(kind()), state, where)


# --- nested structure <-> (skeleton JSON, flat arrays) -------------------------------------
def _encode(value, path: str, arrays: dict):
    if isinstance(value, (Tensor, np.ndarray)):
        arr = value.data if isinstance(value, Tensor) else value
        dtype = arr.dtype.newbyteorder("<")  # the format is little-endian
        if dtype not in _DTYPE_NAMES:
            raise TypeError(f"save: the array at '{path or '/'}' has dtype {arr.dtype}; "
                            "checkpoints hold bool, (u)int8-64, float16/32/64 and complex64")
        key, n = path or "_", 1
        while key in arrays or key == "__metadata__":  # the header's reserved key
            n += 1
            key = f"{path}#{n}"
        arrays[key] = np.ascontiguousarray(arr, dtype=dtype)
        shape = list(arr.shape)
        if isinstance(value, Tensor):
            return {"__tensor__": key, "shape": shape, "requires_grad": bool(value.requires_grad)}
        return {"__array__": key, "shape": shape}
    if isinstance(value, np.random.Generator):
        return {"__generator__": generator_state(value)}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        sub = lambda k: f"{path}/{k}" if path else str(k)  # noqa: E731
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, sub(k), arrays) for k, v in value.items()}
        for k in value:
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"save: dict key {k!r} at '{path}' is a {type(k).__name__}; "
                                "keys must be str, int, float, bool or None")
        return {"__dict__": [[k, _encode(v, sub(k), arrays)] for k, v in value.items()]}
    raise TypeError(f"save: the value at '{path or '/'}' is a {type(value).__name__}; "
                    "leaves must be Tensors, numpy arrays, np.random.Generators or JSON values "
                    "(deepcalc never pickles)")


# The keys each marked node of the skeleton has; a plain dict never has "__" keys (save
# writes those dicts as "__dict__" pairs), so any other "__" key is corruption.
_NODE_KEYS = {"__tensor__": {"__tensor__", "shape", "requires_grad"},
              "__array__": {"__array__", "shape"}, "__generator__": {"__generator__"},
              "__tuple__": {"__tuple__"}, "__dict__": {"__dict__"}}


def _decoded_array(node: dict, marker: str, arrays: dict, used: set, where: str):
    key, shape = node[marker], node["shape"]
    if not isinstance(key, str) or key not in arrays:
        raise ValueError(f"field '{where}': refers to tensor {key!r}, which the file lacks")
    if key in used:
        raise ValueError(f"field '{where}': tensor {key!r} is referred to twice")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) \
            or math.prod(shape) != arrays[key].size:
        raise ValueError(f"field '{where}': shape {shape!r} does not fit tensor {key!r} "
                         f"of {arrays[key].size} elements")
    used.add(key)
    return arrays[key].reshape(shape)


def _decode(node, arrays: dict, used: set, where: str):
    if isinstance(node, list):
        return [_decode(v, arrays, used, f"{where}/{i}") for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node  # a JSON scalar
    sub = lambda k: f"{where}/{k}" if where else str(k)  # noqa: E731
    markers = [k for k in node if k.startswith("__")]
    if not markers:
        return {k: _decode(v, arrays, used, sub(k)) for k, v in node.items()}
    marker = markers[0]
    if len(markers) > 1 or marker not in _NODE_KEYS or set(node) != _NODE_KEYS[marker]:
        raise ValueError(f"field '{where or '/'}': unexpected keys {sorted(node)}")
    if marker == "__tensor__":
        arr = _decoded_array(node, marker, arrays, used, where)
        if not isinstance(node["requires_grad"], bool):
            raise ValueError(f"field '{where}/requires_grad': expected true or false")
        try:
            return Tensor(arr, requires_grad=node["requires_grad"])
        except TypeError as e:  # requires_grad on an integer tensor
            raise ValueError(f"field '{where}': {e}") from e
    if marker == "__array__":
        return _decoded_array(node, marker, arrays, used, where)
    if marker == "__generator__":
        return generator_from_state(node["__generator__"], where)
    items = node[marker]
    if not isinstance(items, list):
        raise ValueError(f"field '{where}/{marker}': expected a list")
    if marker == "__tuple__":
        return tuple(_decode(v, arrays, used, f"{where}/{i}") for i, v in enumerate(items))
    out = {}  # "__dict__": [key, value] pairs, keys being JSON scalars
    for pair in items:
        if not (isinstance(pair, list) and len(pair) == 2
                and (pair[0] is None or isinstance(pair[0], (str, int, float)))):
            raise ValueError(f"field '{where}/__dict__': expected [key, value] pairs with "
                             f"str, int, float, bool or null keys, got {pair!r:.80}")
        out[pair[0]] = _decode(pair[1], arrays, used, sub(pair[0]))
    return out


# --- the safetensors file: 8-byte header length, JSON header, tensor bytes -----------------
def _crc32(arr: np.ndarray) -> str:
    return f"{zlib.crc32(arr.reshape(-1).view(np.uint8)):08x}"


def _header_bytes(arrays: dict, meta: dict) -> bytes:
    """The length-prefixed JSON header for ``arrays`` laid out in that order, padded with
    spaces to 8 bytes as safetensors does, so the data section starts aligned."""
    header, offset = {"__metadata__": meta}, 0
    for key, arr in arrays.items():
        header[key] = {"dtype": _DTYPE_NAMES[arr.dtype], "shape": list(arr.shape),
                       "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def _invalid(path: str, why: str) -> ValueError:
    return ValueError(f"load: {path} is not a valid deepcalc checkpoint (truncated or "
                      f"corrupt): {why}")


def _no_duplicates(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        keys = [k for k, _ in pairs]
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return out


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _read_header(f, path: str, size: int) -> tuple[dict, int]:
    """The parsed header (tensor entries validated by ``_check_entries``) and where the data
    section starts."""
    if size == 0:
        raise _invalid(path, "the file is empty")
    if size < 8:
        raise _invalid(path, f"truncated: {size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > size - 8:
        raise _invalid(path, f"the header length {n} is larger than the file ({size} bytes)")
    if n > _MAX_HEADER:
        raise _invalid(path, f"the header length {n} exceeds safetensors' {_MAX_HEADER}")
    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _invalid(path, f"the header is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise _invalid(path, f"the header is a JSON {type(header).__name__}, not an object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _invalid(path, "the header's __metadata__ is not an object of strings")
    _check_entries(path, header, size - 8 - n)
    return header, 8 + n


def _check_entries(path: str, header: dict, data_len: int) -> None:
    """Each tensor entry has a listed dtype, a shape of sizes and offsets whose span is exactly
    its byte count; together the spans tile the data section of ``data_len`` bytes. So no
    size read from the file is trusted before it is checked against the file's size."""
    spans = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _invalid(path, f"tensor {key!r}: expected dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise _invalid(path, f"tensor {key!r}: dtype {dtype!r} is not one of "
                           f"{', '.join(_DTYPES)}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise _invalid(path, f"tensor {key!r}: shape {shape!r} is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            raise _invalid(path, f"tensor {key!r}: data_offsets {offsets!r} is not [begin, end]")
        nbytes = math.prod(shape) * _DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _invalid(path, f"tensor {key!r}: shape {shape} of {dtype} needs {nbytes} "
                           f"bytes, data_offsets {offsets} hold {offsets[1] - offsets[0]}")
        if offsets[1] > data_len:
            raise _invalid(path, f"truncated: tensor {key!r} ends at byte {offsets[1]} of the "
                           f"data section, which holds {data_len} bytes")
        spans.append((offsets[0], offsets[1], key))
    end = 0
    for begin, stop, key in sorted(spans):
        if begin != end:
            raise _invalid(path, f"tensor {key!r} starts at byte {begin} of the data section, "
                           f"expected {end} (tensors overlap or leave a gap)")
        end = stop
    if end != data_len:
        raise _invalid(path, f"{data_len - end} bytes after the last tensor")


def _read_tensors(f, path: str, header: dict, data_start: int, checksums: dict) -> dict:
    """Each tensor read straight into its own new (aligned, writeable) array, its CRC32
    compared with ``checksums`` where the file has them."""
    arrays = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        flat = np.empty(math.prod(entry["shape"]), dtype=_DTYPES[entry["dtype"]])
        buf, got = memoryview(flat.view(np.uint8)), 0
        f.seek(data_start + entry["data_offsets"][0])
        while got < len(buf):
            n = f.readinto(buf[got:])
            if not n:
                raise _invalid(path, f"truncated while reading tensor {key!r}")
            got += n
        if key in checksums and _crc32(flat) != checksums[key]:
            raise _invalid(path, f"tensor {key!r} fails its CRC32 check (stored "
                           f"{checksums[key]}, computed {_crc32(flat)})")
        arrays[key] = flat.reshape(entry["shape"])
    return arrays


def _tree_crc32(tree: str) -> str:
    return f"{zlib.crc32(tree.encode('utf-8', 'surrogatepass')):08x}"


def _checksums(meta: dict, header: dict, path: str) -> dict:
    """The per-tensor CRC32s in the metadata (none in files written by other tools), after
    checking the skeleton's own CRC32 against the tree text."""
    if "crc32" not in meta:
        return {}
    try:
        sums = json.loads(meta["crc32"])
    except (ValueError, RecursionError) as e:
        raise _invalid(path, f"metadata field 'crc32' is not valid JSON: {e}") from e
    if not isinstance(sums, dict) or set(sums) != set(header) - {"__metadata__"} \
            or not all(isinstance(v, str) for v in sums.values()):
        raise _invalid(path, "metadata field 'crc32' does not map every tensor to a CRC32")
    if "tree_crc32" not in meta:
        raise _invalid(path, "metadata field 'tree_crc32' is missing")
    if _tree_crc32(meta["tree"]) != meta["tree_crc32"]:
        raise _invalid(path, f"metadata field 'tree' fails its CRC32 check (stored "
                       f"{meta['tree_crc32']}, computed {_tree_crc32(meta['tree'])})")
    return sums


# --- save / load -------------------------------------------------------------------------
def _os_error(e: OSError, message: str, path: str) -> OSError:
    """``e`` again, but naming the checkpoint (not the hidden temporary file)."""
    if e.errno is None:
        return OSError(f"{message}: {e}")
    return OSError(e.errno, f"{message}: {e.strerror}", path)  # OSError picks the subclass


def _create_temp(directory: str, mode: int):
    """A new file next to the checkpoint, created with ``mode`` less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".tmp-{secrets.token_hex(6)}.safetensors")
        try:
            return tmp, os.open(tmp, flags, mode)
        except FileExistsError:
            continue


def _write_atomic(path: str, chunks) -> None:
    """Write ``chunks`` to a temporary file in ``path``'s directory, fsync it and rename it
    over ``path``: a failure leaves any previous checkpoint intact and no temporary behind.
    A new file gets 0o666 less the umask, as open() gives; an overwritten one keeps its mode.
    The temporary is never created more open than either (it holds the data before the rename)."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"save: {path} is a directory; give the "
                                "checkpoint a file name", path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise _os_error(e, f"save: cannot write checkpoint {path}", path) from e
    try:
        tmp, fd = _create_temp(directory, 0o666 if mode is None else mode)
    except OSError as e:
        raise _os_error(e, f"save: cannot create checkpoint {path} (in {directory})",
                        path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:  # the umask may have narrowed it
                os.fchmod(f.fileno(), mode)
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _os_error(e, f"save: writing checkpoint {path} failed", path) from e
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # not every platform or file system can fsync a directory


def save(path, state: dict) -> None:
    """Write ``state`` (a nested dict of Tensors, arrays, Generators and JSON values) to
    ``path`` as safetensors, with a CRC32 of each tensor's bytes and of the skeleton. The file
    is written next to ``path`` and moved into place with ``os.replace``, so a failed save
    leaves any previous checkpoint intact."""
    if not isinstance(state, dict):
        raise TypeError(f"save: state must be a dict, got {type(state).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError("save: the checkpoint path is empty")
    arrays: dict = {}
    tree = json.dumps(_encode(state, "", arrays), separators=(",", ":"))
    # widest items first, so every tensor starts at a multiple of its item size
    arrays = dict(sorted(arrays.items(), key=lambda kv: -kv[1].itemsize))
    sums = {key: _crc32(arr) for key, arr in arrays.items()}
    meta = {"format": _FORMAT, "version": str(_VERSION), "tree": tree,
            "tree_crc32": _tree_crc32(tree), "crc32": json.dumps(sums, separators=(",", ":"))}
    chunks = [_header_bytes(arrays, meta)]
    chunks += [arr.reshape(-1).view(np.uint8) for arr in arrays.values()]
    _write_atomic(path, chunks)


def load(path) -> dict:
    """Read a checkpoint written by ``save``. Arrays saved from Tensors come back as Tensors
    (``requires_grad`` restored), arrays saved as numpy arrays as writeable numpy arrays,
    Generators as new Generators in the saved state, tuples as tuples. Checksums are
    verified where the file has them; any malformed or corrupt file raises ValueError naming
    ``path`` and the offending field or tensor."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"load: {path} is a directory, not a "
                                "checkpoint file", path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"load: no such checkpoint file: {path}", path)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"load: {path} is not a regular file")
    with open(path, "rb", buffering=0) as f:
        header, data_start = _read_header(f, path, os.fstat(f.fileno()).st_size)
        meta = header.get("__metadata__", {})
        if meta.get("format") != _FORMAT:
            raise ValueError(f"load: {path} is a safetensors file but not a deepcalc checkpoint "
                             "(no deepcalc metadata); read it with safetensors.numpy.load_file")
        version = meta.get("version", "0")
        if not version.isascii() or not version.isdigit():
            raise _invalid(path, f"metadata field 'version' is {version!r}, not a number")
        if int(version) > _VERSION:
            raise ValueError(f"load: {path} has checkpoint format version {version}, this "
                             f"deepcalc reads up to {_VERSION}")
        if "tree" not in meta:
            raise _invalid(path, "metadata field 'tree' is missing")
        checksums = _checksums(meta, header, path)
        arrays = _read_tensors(f, path, header, data_start, checksums)
    try:
        tree = json.loads(meta["tree"])
        if not isinstance(tree, dict):
            raise ValueError(f"is a {type(tree).__name__}, not an object")
        return _decode(tree, arrays, set(), "")
    except RecursionError as e:
        raise _invalid(path, "metadata field 'tree' is nested too deeply") from e
    except ValueError as e:
        raise _invalid(path, f"metadata field 'tree': {e}") from e
