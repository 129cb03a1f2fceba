"""Flattening nested tuples / lists / dicts of Tensors, so transforms accept parameter dicts."""
from __future__ import annotations

from .graph import Tensor


def flatten(tree):
    """(leaves, rebuild) where rebuild(new_leaves) restores the structure."""
    if isinstance(tree, Tensor) or tree is None:
        return [tree], lambda leaves: leaves[0]
    if isinstance(tree, (tuple, list)):
        parts = [flatten(t) for t in tree]
        return _join(parts, lambda xs: type(tree)(xs))
    if isinstance(tree, dict):
        keys = list(tree)
        parts = [flatten(tree[k]) for k in keys]
        return _join(parts, lambda xs: dict(zip(keys, xs)))
    return [tree], lambda leaves: leaves[0]


def _join(parts, make):
    leaves, sizes = [], []
    for lv, _ in parts:
        leaves.extend(lv)
        sizes.append(len(lv))

    def rebuild(new):
        out, i = [], 0
        for (_, rb), n in zip(parts, sizes):
            out.append(rb(new[i:i + n]))
            i += n
        return make(out)
    return leaves, rebuild
