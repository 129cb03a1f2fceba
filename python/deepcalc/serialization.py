"""Checkpoints without pickle: ``save(path, state)`` writes a nested dict to one safetensors
file (arrays as tensors under flattened keys like "model/layer.0.weight", everything else as
JSON in the metadata) atomically; ``load(path)`` returns the same structure."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .autodiff.graph import Tensor

_FORMAT = "deepcalc.checkpoint"
_VERSION = 1


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


def set_generator_state(gen: np.random.Generator, state: dict) -> np.random.Generator:
    """Restore a state made by ``generator_state`` into ``gen`` (same bit generator kind)."""
    def dec(v):
        if isinstance(v, dict) and "__ndarray__" in v:
            return np.array([int(x) for x in v["__ndarray__"]], dtype=np.dtype(v["dtype"]))
        if isinstance(v, dict):
            return {k: dec(x) for k, x in v.items()}
        if isinstance(v, str) and v.lstrip("-").isdigit():
            return int(v)
        return v
    gen.bit_generator.state = dec(state)
    return gen


def generator_from_state(state: dict) -> np.random.Generator:
    """A new Generator whose bit generator (PCG64, Philox, ...) is in ``state``."""
    kind = getattr(np.random, state["bit_generator"])
    return set_generator_state(np.random.Generator(kind()), state)


# --- nested structure <-> (skeleton JSON, flat arrays) -------------------------------------
def _encode(value, path: str, arrays: dict):
    if isinstance(value, (Tensor, np.ndarray)):
        arr = value.data if isinstance(value, Tensor) else value
        key, n = path or "_", 1
        while key in arrays:
            n += 1
            key = f"{path}#{n}"
        arrays[key] = np.ascontiguousarray(arr)
        shape = list(arr.shape)  # safetensors stores 0-d arrays as shape (1,)
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


def _decode(node, arrays: dict):
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        arr = arrays[node["__tensor__"]].reshape(node["shape"])
        return Tensor(arr, requires_grad=node["requires_grad"])
    if "__array__" in node:
        return arrays[node["__array__"]].reshape(node["shape"])
    if "__generator__" in node:
        return generator_from_state(node["__generator__"])
    if "__tuple__" in node:
        return tuple(_decode(v, arrays) for v in node["__tuple__"])
    if "__dict__" in node:
        return {k: _decode(v, arrays) for k, v in node["__dict__"]}
    return {k: _decode(v, arrays) for k, v in node.items()}


def save(path, state: dict) -> None:
    """Write ``state`` (a nested dict of Tensors, arrays, Generators and JSON values) to
    ``path`` as safetensors. The file is written next to ``path`` and moved into place with
    ``os.replace``, so a failed save leaves any previous checkpoint intact."""
    from safetensors.numpy import save as st_save
    if not isinstance(state, dict):
        raise TypeError(f"save: state must be a dict, got {type(state).__name__}")
    path = os.fspath(path)
    arrays: dict = {}
    tree = _encode(state, "", arrays)
    meta = {"format": _FORMAT, "version": str(_VERSION),
            "tree": json.dumps(tree, separators=(",", ":"))}
    data = st_save(arrays, metadata=meta)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path) -> dict:
    """Read a checkpoint written by ``save``. Arrays saved from Tensors come back as Tensors
    (``requires_grad`` restored), arrays saved as numpy arrays as writeable numpy arrays,
    Generators as new Generators in the saved state, tuples as tuples."""
    from safetensors import safe_open
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such checkpoint file: {path}")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: np.array(f.get_tensor(k)) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers/sizes
        raise ValueError(f"load: {path} is not a valid deepcalc checkpoint (truncated or "
                         f"corrupt): {e}") from e
    if meta.get("format") != _FORMAT:
        raise ValueError(f"load: {path} is a safetensors file but not a deepcalc checkpoint "
                         "(no deepcalc metadata); read it with safetensors.numpy.load_file")
    if int(meta.get("version", 0)) > _VERSION:
        raise ValueError(f"load: {path} has checkpoint format version {meta['version']}, this "
                         f"deepcalc reads up to {_VERSION}")
    try:
        return _decode(json.loads(meta["tree"]), arrays)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"load: {path} is not a valid deepcalc checkpoint (corrupt metadata): "
                         f"{e!r}") from e
