"""Data-parallel training over MPI: the process group of `mpiexec -n N feste train` (SPEC §micro-batches).

The order of every sum is fixed in feste/accumulate.py; this module only
moves bytes: point-to-point messages for the relay of the ordered gradient
sum, a broadcast of the result, allgathers of losses and setup errors. No
MPI reduction is used (MPI_Reduce/Allreduce combine in an order the library
chooses).

mpi4py (the `mpi` extra: `pip install 'feste-spec[mpi]'`, which also
installs MPICH and its `mpiexec`) is imported only when a launcher started
more than one process. Every blocking MPI call runs under a watchdog: a
process that waits longer than the deadline for another one (which failed,
hung or was killed) prints one line and calls MPI_Abort, which ends every
process of the run.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

# Launcher variables holding the number of processes started (SPEC §micro-batches):
# MPICH's Hydra, Intel MPI and Slurm's PMI2 set PMI_SIZE; Open MPI
# OMPI_COMM_WORLD_SIZE; Hydra also MPI_LOCALNRANKS (processes on this node).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID")
DEFAULT_TIMEOUT = 300.0  # seconds: longer than any step, evaluation or checkpoint write of rank 0
INSTALL_HINT = "pip install 'feste-spec[mpi]' (mpi4py and MPICH)"
_TAG = 15  # the relay's messages


class LaunchError(RuntimeError):
    """Started by an MPI launcher in a way this process cannot honour (no mpi4py)."""


def launched_size(environ=None) -> tuple[int, str] | None:
    """(N, variable) when a launcher's variables say it started N processes, else None."""
    environ = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value), name
    return None


def launched_rank(environ=None) -> int | None:
    environ = os.environ if environ is None else environ
    for name in RANK_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def process_group(timeout: float = DEFAULT_TIMEOUT, environ=None, stderr=None):
    """The MPI process group when a launcher started more than one process,
    else None (one process: mpi4py is not even imported). LaunchError when
    the launcher says N > 1 but mpi4py cannot be imported."""
    launched = launched_size(environ)
    if launched is None or launched[0] <= 1:
        return None
    n, variable = launched
    try:
        from mpi4py import MPI
    except ImportError as exc:
        rank = launched_rank(environ)
        who = f"process {rank} of {n}" if rank is not None else f"one of {n} processes"
        raise LaunchError(f"started by an MPI launcher as {who} ({variable}={n}) but mpi4py cannot be imported "
                          f"({exc}): {INSTALL_HINT}") from None
    return MPIGroup(MPI, MPI.COMM_WORLD, timeout, stderr=stderr)


class MPIGroup:
    """The group methods of feste.accumulate.SoloGroup over an MPI communicator."""

    def __init__(self, mpi, comm, timeout: float = DEFAULT_TIMEOUT, stderr=None):
        if not (timeout > 0):
            raise ValueError(f"the MPI timeout must be > 0 seconds, got {timeout!r}")
        self.MPI, self.comm, self.timeout = mpi, comm, float(timeout)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.stderr = stderr
        self._lock = threading.Lock()
        self._waiting: tuple[float, str] | None = None  # (deadline, what) of the blocking call in progress
        self._watchdog = threading.Thread(target=self._watch, name="feste-mpi-watchdog", daemon=True)
        self._watchdog.start()

    # --- the deadline on every blocking call ------------------------------------------
    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 10))
            with self._lock:
                waiting = self._waiting
            if waiting is not None and time.monotonic() > waiting[0]:
                self.abort(f"waited {self.timeout:g} s for {waiting[1]}, which failed, hung or was killed "
                           "(--mpi-timeout)")

    def _blocking(self, what: str, call, *args):
        with self._lock:
            self._waiting = (time.monotonic() + self.timeout, what)
        try:
            return call(*args)
        finally:
            with self._lock:
                self._waiting = None

    # --- the group methods (feste/accumulate.py) ----------------------------------
    def send(self, buf: np.ndarray, dest: int):
        return self.comm.Isend(buf, dest=dest, tag=_TAG), f"rank {dest}"

    def recv(self, buf: np.ndarray, source: int):
        return self.comm.Irecv(buf, source=source, tag=_TAG), f"rank {source}"

    def wait(self, requests) -> None:
        for request, peer in requests:
            self._blocking(peer, request.Wait)

    def broadcast(self, buf: np.ndarray, root: int) -> None:
        self._blocking(f"rank {root}'s broadcast", self.comm.Bcast, buf, root)

    def allgather(self, values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values)
        out = np.empty((self.size, values.size), dtype=values.dtype)
        self._blocking("every rank (allgather)", self.comm.Allgather, values, out)
        return out

    def barrier(self) -> None:
        self._blocking("every rank (barrier)", self.comm.Barrier)

    # --- ending -------------------------------------------------------------------------
    def abort(self, message: str, code: int = 1) -> None:
        """One line on stderr naming this rank, then MPI_Abort: every process ends."""
        stream = self.stderr or sys.stderr
        try:
            print(f"feste: rank {self.rank} of {self.size}: {message}; stopping all {self.size} processes",
                  file=stream, flush=True)
        finally:
            try:
                self.comm.Abort(code)
            finally:
                os._exit(code)  # MPICH's MPI_Abort can return to the caller before the launcher ends it


def run_together(group, body, user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run `body()` (a subcommand's work) on every process of `group` and
    make its failure one clear message (SPEC §micro-batches):

    - an error every process raised together (tagged by
      feste.accumulate.together: a setup failure gathered from all, a
      divergence seen by all) or an interrupt: rank 0 re-raises it for the
      command line to print; the others return 1 (128 + the signal) quietly;
    - any other error is this process's alone: one line naming the rank, then
      MPI_Abort ends every process (the others may be waiting for this one).
    """
    from feste.accumulate import raised_together

    try:
        return body()
    except KeyboardInterrupt as exc:
        if group.rank == 0:
            raise
        return getattr(exc, "exit_code", 130)  # 143 for SIGTERM (feste.trainer.TrainingInterrupted)
    except BaseException as exc:  # noqa: BLE001 - every failure must end the whole group
        if raised_together(exc):
            if group.rank == 0:
                raise
            return 1
        kind = "error" if isinstance(exc, user_errors) else f"internal error: {type(exc).__name__}"
        group.abort(f"{kind}: {exc}")
        raise  # not reached: MPI_Abort does not return
