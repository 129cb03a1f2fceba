"""What ``dc.train.fit(..., distributed=True)`` needs from the process group: wrapping the model,
resharding per epoch, summing metrics over ranks, checking that every rank sees the checkpoint,
and each rank's dropout generator for the checkpoint."""
from __future__ import annotations

import numpy as np

from .ddp import DistributedDataParallel
from .sampler import DistributedSampler
from .world import init


def setup(model, train):
    """(the model to train, the module to checkpoint, the world, whether fit wrapped it)."""
    w = init()
    ddp = model if isinstance(model, DistributedDataParallel) else DistributedDataParallel(model)
    if w.size > 1 and not isinstance(getattr(train, "dataset", None), DistributedSampler):
        if ddp is not model:
            ddp.remove_hooks()
        raise ValueError(f"fit(distributed=True): {w.size} ranks, but the training loader's "
                         "dataset is not a dc.distributed.DistributedSampler, so every rank "
                         "would train on the same batches; use DataLoader(DistributedSampler("
                         "dataset, seed=...), batch_size=per_rank_batch)")
    return ddp, ddp.module, w, ddp is not model


def set_epoch(epoch: int, loaders) -> None:
    """Reshuffle the DistributedSamplers behind ``loaders`` for ``epoch``."""
    for loader in loaders:
        ds = getattr(loader, "dataset", None)
        if isinstance(ds, DistributedSampler):
            ds.set_epoch(epoch)


def sum_over_ranks(w, values):
    """The element-wise sums of ``values`` (numbers) over ranks, as floats."""
    arr = np.array(values, np.float64)
    w.wait([w.iallreduce(arr, "sum")])
    return [float(v) for v in arr]


def checkpoint_exists(w, path) -> bool:
    """Whether ``path`` exists, as every rank sees it; an error when the ranks disagree (a
    distributed resume needs the checkpoint directory on a file system all ranks share)."""
    import os
    seen = w.allgather_obj(bool(os.path.exists(path)))
    if len(set(seen)) > 1:
        have = [r for r, s in enumerate(seen) if s]
        lack = [r for r, s in enumerate(seen) if not s]
        raise FileNotFoundError(f"fit(distributed=True): checkpoint {path} exists on ranks {have} "
                                f"but not on ranks {lack}; put checkpoint_dir on a file system "
                                "every rank shares")
    return seen[0]


def rank_generators(w, generator):
    """Every rank's ``generator`` (as new Generators, on rank 0; None elsewhere)."""
    from ..serialization import generator_from_state, generator_state
    states = w.allgather_obj(generator_state(generator))
    if w.rank != 0:
        return None
    return [generator_from_state(s, f"rank {r} generator") for r, s in enumerate(states)]
