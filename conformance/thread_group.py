"""N processes of SPEC §micro-batches stood in for by N threads of one process.

`ThreadGroup` implements the methods of `feste.accumulate.SoloGroup`
over queues, so the suite can check without MPI that the trainer's bytes do
not depend on how a batch is shared: `run_ranks(n, fn)` calls `fn(group)`
in n threads, one group per rank, and returns their results by rank. Every
message is a copy (as between processes); a rank that fails makes the
others fail at their next wait instead of hanging (`TIMEOUT` bounds the
rest). The real transport, over MPI, is feste/distributed.py.
"""
from __future__ import annotations

import queue
import threading

import numpy as np

TIMEOUT = 120.0  # seconds any wait may take before the test fails


class _Shared:
    def __init__(self, n: int):
        self.n = n
        self.channels = {(a, b): queue.Queue() for a in range(n) for b in range(n)}
        self.barrier = threading.Barrier(n, timeout=TIMEOUT)
        self.slots: list = [None] * n


class _Receive:
    def __init__(self, channel: queue.Queue, buf: np.ndarray):
        self.channel, self.buf = channel, buf

    def complete(self) -> None:
        data = self.channel.get(timeout=TIMEOUT)
        if data is None:
            raise RuntimeError("another rank failed")
        self.buf[...] = data


def _message(buf) -> np.ndarray:
    """A copy of `buf` as MPI would send it: numbers only (MPI has no datatype for
    NumPy's object arrays, so code that works here must work over MPI too)."""
    data = np.array(buf, copy=True)
    if data.dtype.kind not in "biufc":
        raise TypeError(f"a message of dtype {data.dtype}: MPI sends arrays of numbers only")
    return data


class ThreadGroup:
    """One rank of a group of threads (the SoloGroup methods)."""

    def __init__(self, shared: _Shared, rank: int):
        self.shared, self.rank, self.size = shared, rank, shared.n

    def send(self, buf, dest):
        self.shared.channels[self.rank, dest].put(_message(buf))
        return None  # complete at once: the copy is in flight

    def recv(self, buf, source):
        return _Receive(self.shared.channels[source, self.rank], buf)

    def wait(self, requests) -> None:
        for request in requests:
            if request is not None:
                request.complete()

    def _exchange(self, value):
        """Every rank's `value`, by rank (two barriers: publish, then read)."""
        self.shared.slots[self.rank] = value
        self.shared.barrier.wait()
        values = list(self.shared.slots)
        self.shared.barrier.wait()
        return values

    def broadcast(self, buf, root) -> None:
        values = self._exchange(_message(buf) if self.rank == root else None)
        if self.rank != root:
            buf[...] = values[root]

    def allgather(self, values):
        return np.stack([np.asarray(v) for v in self._exchange(_message(values))])

    def barrier(self) -> None:
        self.shared.barrier.wait()

    def fail(self) -> None:
        """Wake every rank waiting on this one."""
        self.shared.barrier.abort()
        for (a, b), channel in self.shared.channels.items():
            if a == self.rank:
                channel.put(None)


def run_ranks(n: int, fn) -> list:
    """fn(group) in n threads, one ThreadGroup per rank; their results by rank.
    The first exception of any rank is raised here."""
    shared = _Shared(n)
    results: list = [None] * n
    errors: list = [None] * n

    def body(rank: int) -> None:
        group = ThreadGroup(shared, rank)
        try:
            results[rank] = fn(group)
        except BaseException as exc:  # noqa: BLE001 - reported after the join
            errors[rank] = exc
            group.fail()

    threads = [threading.Thread(target=body, args=(r,), name=f"rank-{r}") for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for exc in errors:
        if exc is not None and not isinstance(exc, threading.BrokenBarrierError):
            raise exc
    for exc in errors:
        if exc is not None:
            raise exc
    return results
