"""Data-parallel training over MPI (mpi4py, imported on first use): the process group,
collectives of Tensors and arrays, DistributedDataParallel (bucketed, overlapped gradient
averaging), DistributedSampler, and fault handling that stops every rank when one fails.

    mpirun -n 4 python train.py        # each process: dc.distributed.init(), then as below

See docs/distributed.md.  Without MPI every function works on a world of one process.
"""
from .collectives import all_gather, all_reduce, broadcast
from .ddp import DistributedDataParallel
from .sampler import DistributedSampler
from .world import (RankFailure, barrier, init, is_main_process, launcher_world_size, rank,
                    report_failure, world_size)

__all__ = ["init", "rank", "world_size", "is_main_process", "barrier", "all_reduce",
           "broadcast", "all_gather", "DistributedDataParallel", "DistributedSampler",
           "RankFailure", "report_failure", "launcher_world_size"]
