"""The process group: MPI's COMM_WORLD through mpi4py (imported on first use), or a world of one
process when there is no MPI, plus fault handling so that one failing rank stops them all.

Every wait goes through ``World.wait``, which polls the requests and a fault channel (a
duplicate of the communicator used only for failure notices): a rank that raises sends
"rank r failed: ..." to every other rank, so ranks blocked in a collective raise
``RankFailure`` naming it instead of hanging.  An uncaught exception on any rank ends the job
with ``MPI_Abort`` (after the notice), since MPI cannot finalize with a peer gone.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

_FAULT_TAG = 7301      # a failure notice: "rank r failed: <exception>"
_ACK_TAG = 7302        # a peer read the notice (the failing rank waits for these, briefly)
_ACK_SECONDS = 2.0     # how long a failing rank waits for acknowledgements before MPI_Abort
_SPIN_SECONDS = 2e-3   # busy-poll this long before a wait starts sleeping between polls

_OPS = ("sum", "mean", "max", "min", "prod")


class RankFailure(RuntimeError):
    """Raised on every rank when another rank reported a failure; the message names it."""

    def __init__(self, failed_rank: int, message: str):
        super().__init__(message)
        self.failed_rank = failed_rank


def launcher_world_size() -> int | None:
    """The world size an MPI launcher announced (MPICH's hydra and Slurm's srun set PMI_SIZE,
    Open MPI's mpirun OMPI_COMM_WORLD_SIZE), if any; read without importing mpi4py."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        v = os.environ.get(var)
        if v and v.isdigit():
            return int(v)
    return None


class _DoneRequest:
    """What the world of one process returns for a non-blocking operation: already complete."""

    def Test(self):
        return True


class LocalWorld:
    """A world of one process (no MPI): collectives are copies, barriers return at once."""

    rank, size = 0, 1
    comm = None

    def iallreduce(self, buf: np.ndarray, op: str = "sum"):
        return _DoneRequest()

    def ibcast(self, buf: np.ndarray, root: int = 0):
        return _DoneRequest()

    def iallgather(self, send: np.ndarray, recv: np.ndarray):
        recv[0] = send
        return _DoneRequest()

    def allgather_obj(self, obj):
        return [json.loads(json.dumps(obj))]

    def bcast_obj(self, obj, root: int = 0):
        return json.loads(json.dumps(obj))

    def wait(self, requests) -> None:
        pass

    def barrier(self) -> None:
        pass

    def check_faults(self) -> None:
        pass

    def report_failure(self, exc: BaseException) -> None:
        pass

    def abort(self, code: int = 1) -> None:
        raise SystemExit(code)


class MPIWorld:
    """COMM_WORLD (or ``comm``) through mpi4py, with a fault channel beside it."""

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm.Dup()           # deepcalc's collectives never mix with the user's
        self.fault_comm = comm.Dup()     # failure notices only
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._mpi_ops = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN,
                         "prod": MPI.PROD}
        self._reported = False
        self._notices = []               # isend requests of notices and acks (kept alive)

    # --- collectives: non-blocking, completed by wait() ------------------------------
    def iallreduce(self, buf: np.ndarray, op: str = "sum"):
        return self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self._mpi_ops[op])

    def ibcast(self, buf: np.ndarray, root: int = 0):
        return self.comm.Ibcast(buf, root=root)

    def iallgather(self, send: np.ndarray, recv: np.ndarray):
        return self.comm.Iallgather(send, recv)

    def allgather_obj(self, obj):
        """Small JSON values (metadata) from every rank, as a list by rank."""
        data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
        sizes = np.zeros(self.size, np.int64)
        self.wait([self.iallgather(np.array([data.size], np.int64), sizes)])
        recv = np.empty(int(sizes.sum()), np.uint8)
        displ = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.wait([self.comm.Iallgatherv(data, [recv, sizes, displ, self.MPI.BYTE])])
        return [json.loads(recv[o:o + n].tobytes()) for o, n in zip(displ, sizes)]

    def bcast_obj(self, obj, root: int = 0):
        return self.allgather_obj(obj if self.rank == root else None)[root]

    def barrier(self) -> None:
        self.wait([self.comm.Ibarrier()])

    def wait(self, requests) -> None:
        """Complete ``requests``; raise RankFailure if another rank reports a failure first."""
        pending = [r for r in requests if r is not None]
        t0, pause = time.perf_counter(), 0.0
        while pending:
            pending = [r for r in pending if not r.Test()]
            if not pending:
                return
            self.check_faults()
            if pause or time.perf_counter() - t0 > _SPIN_SECONDS:
                pause = min(max(pause * 2, 5e-5), 1e-3)   # a long wait stops stealing the core
                time.sleep(pause)

    # --- faults -------------------------------------------------------------------------
    def check_faults(self) -> None:
        MPI = self.MPI
        status = MPI.Status()
        if self.fault_comm.Iprobe(source=MPI.ANY_SOURCE, tag=_FAULT_TAG, status=status):
            src = status.Get_source()
            text = self.fault_comm.recv(source=src, tag=_FAULT_TAG)
            self._reported = True        # the failure is another rank's: nothing to notify
            self._notices.append(self.fault_comm.isend(self.rank, dest=src, tag=_ACK_TAG))
            raise RankFailure(src, f"deepcalc.distributed: stopping rank {self.rank} of "
                                   f"{self.size}: rank {src} failed: {text}")

    def report_failure(self, exc: BaseException) -> None:
        """Tell every other rank that this one failed with ``exc`` (once; a RankFailure, which
        is another rank's failure, is not re-reported)."""
        if self._reported or isinstance(exc, RankFailure):
            return
        self._reported = True
        text = f"{type(exc).__name__}: {exc}"
        for r in range(self.size):
            if r != self.rank:
                self._notices.append(self.fault_comm.isend(text, dest=r, tag=_FAULT_TAG))

    def _await_acks(self) -> None:
        """Give the other ranks up to _ACK_SECONDS to read the notice and print their line."""
        MPI = self.MPI
        acked, deadline = set(), time.perf_counter() + _ACK_SECONDS
        while len(acked) < self.size - 1 and time.perf_counter() < deadline:
            status = MPI.Status()
            if self.fault_comm.Iprobe(source=MPI.ANY_SOURCE, tag=_ACK_TAG, status=status):
                acked.add(self.fault_comm.recv(source=status.Get_source(), tag=_ACK_TAG))
            else:
                time.sleep(1e-3)

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)


_WORLD: LocalWorld | MPIWorld | None = None


def init(comm=None):
    """Join the process group: ``mpi4py.MPI.COMM_WORLD`` (or ``comm``) when mpi4py is
    installed, else a world of one process.  Idempotent; the other functions call it.

    Installs an exception hook: an uncaught exception on one rank tells the others (who raise
    RankFailure naming it) and ends the job with MPI_Abort."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    try:
        from mpi4py import MPI
    except ImportError:
        n = launcher_world_size()
        if n is not None and n > 1:
            raise ImportError(f"dc.distributed.init: an MPI launcher started {n} processes but "
                              "mpi4py is not installed (pip install 'deepcalc[mpi]')") from None
        _WORLD = LocalWorld()
        return _WORLD
    _WORLD = MPIWorld(comm if comm is not None else MPI.COMM_WORLD)
    if _WORLD.size > 1:
        _install_excepthook()
    return _WORLD


def _world():
    return _WORLD if _WORLD is not None else init()


def _install_excepthook():
    previous = sys.excepthook

    def hook(kind, value, tb):
        w = _WORLD
        if not isinstance(w, MPIWorld):
            previous(kind, value, tb)
            return
        if isinstance(value, RankFailure):    # the traceback is of the wait, not the fault
            print(str(value), file=sys.stderr, flush=True)
        else:
            previous(kind, value, tb)
            print(f"deepcalc.distributed: rank {w.rank} of {w.size} failed with "
                  f"{kind.__name__}: {value}; stopping every rank", file=sys.stderr, flush=True)
            w.report_failure(value)
            w._await_acks()
        sys.stderr.flush()
        sys.stdout.flush()
        w.abort(1)

    sys.excepthook = hook


def rank() -> int:
    """This process's rank in the world (0 without MPI)."""
    return _world().rank


def world_size() -> int:
    """The number of processes (1 without MPI)."""
    return _world().size


def is_main_process() -> bool:
    """True on rank 0, the rank that prints and writes files."""
    return _world().rank == 0


def barrier() -> None:
    """Wait until every rank reaches this point (raises RankFailure if one fails instead)."""
    _world().barrier()


def report_failure(exc: BaseException) -> None:
    """Tell every other rank that this one failed (their next wait raises RankFailure naming
    this rank).  ``fit(distributed=True)`` and the exception hook call it; call it yourself
    before handling an exception in a loop of your own that the other ranks wait on."""
    _world().report_failure(exc)

