"""Micro-batches, gradient accumulation and data-parallel processes (SPEC §micro-batches).

The trainer (feste/trainer.py) calls this module for a step's gradient and
for the validation loss; it fixes the order of every sum, so that the bytes
depend on the batch, the micro-batch size b and the implementation only,
never on how many processes share the work (N) or how many micro-batches
each runs (K):

    rows of micro-batch m:  m*b .. (m+1)*b - 1          (M = N*K micro-batches, B = M*b)
    process r runs:         m = j*N + r, j = 0..K-1
    g_m = backward(params, cache_m, mean_over=B*T)
    G   = (...((g_0 + g_1) + g_2) + ...) + g_{M-1}      elementwise, in the dtype
    loss = fsum(loss_0 .. loss_{M-1}) / M

A process group is anything with the methods of `SoloGroup` (the one-process
group, no communication): `feste.distributed.MPIGroup` over MPI, and
conformance/thread_group.py's threads for the suite. The relay below is
written once against those methods.

Dimension legend: B batch, T time, b micro-batch rows, M micro-batches.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np

# Elements per message of the relay: a chunk is added and forwarded while the
# next one arrives. Chunking changes no element's arithmetic (SPEC §micro-batches).
RELAY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Split:
    """How a step's batch of B rows is shared: N processes x K micro-batches of b rows."""

    batch_size: int  # B, the rows of a step (random_batch)
    processes: int  # N, the size of the process group
    grad_accum: int  # K, micro-batches per process

    def __post_init__(self):
        for name in ("batch_size", "processes", "grad_accum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        B, N, K = self.batch_size, self.processes, self.grad_accum
        if B % (N * K):
            raise ValueError(f"batch_size {B} cannot be cut into {N} process(es) x grad_accum {K} micro-batches "
                             f"of equal size: B must be a multiple of N*K = {N * K} (SPEC §micro-batches)")

    @property
    def n_micro(self) -> int:
        """M = N*K micro-batches per step."""
        return self.processes * self.grad_accum

    @property
    def micro_batch(self) -> int:
        """b = B / M rows per micro-batch."""
        return self.batch_size // self.n_micro

    def micro_batches(self, rank: int) -> list[int]:
        """The global micro-batches process `rank` runs, in order: j*N + rank."""
        return [j * self.processes + rank for j in range(self.grad_accum)]

    def rows(self, m: int) -> slice:
        """Rows of micro-batch m in the step's batch."""
        return slice(m * self.micro_batch, (m + 1) * self.micro_batch)


class SoloGroup:
    """The process group of one process: what every group provides, with no
    one to talk to. MPIGroup (feste/distributed.py) and the suite's
    ThreadGroup implement the same methods for N processes."""

    rank = 0
    size = 1

    def send(self, buf: np.ndarray, dest: int):
        """Start sending `buf` (contiguous) to `dest`; returns a request for `wait`.
        The buffer must not change until the request has completed."""
        raise RuntimeError("a one-process group has no one to send to")

    def recv(self, buf: np.ndarray, source: int):
        """Start receiving into `buf` from `source` (messages between two
        processes arrive in the order sent); returns a request for `wait`."""
        raise RuntimeError("a one-process group has no one to receive from")

    def wait(self, requests) -> None:
        """Complete the requests (each with the group's deadline)."""
        if requests:
            raise RuntimeError("a one-process group has no requests")

    def broadcast(self, buf: np.ndarray, root: int) -> None:
        """Copy root's `buf` into every process's `buf` (bytes only)."""

    def allgather(self, values: np.ndarray) -> np.ndarray:
        """Every process's `values` (1-D, the same length and dtype everywhere),
        stacked by rank: [size, len]."""
        return np.asarray(values)[None, :].copy()

    def barrier(self) -> None:
        """Return when every process has called it."""


SOLO = SoloGroup()

MESSAGE_BYTES = 2048  # an error message as gathered from every process (UTF-8, cut to this)


class ProcessFailed(RuntimeError):
    """Another process of the group failed (its rank and message are in the text)."""


def together(exc: BaseException) -> BaseException:
    """Mark `exc` as raised by every process of the group at the same point
    (SPEC §micro-batches), so that the command line reports it once, from rank 0."""
    exc.every_process = True
    return exc


def raised_together(exc: BaseException) -> bool:
    return bool(getattr(exc, "every_process", False))


def gather_texts(group, text: str, flag: bool) -> list[tuple[bool, str]]:
    """Every process's (flag, text), by rank, the same list on every process
    (UTF-8, each text cut to MESSAGE_BYTES)."""
    buf = np.zeros(MESSAGE_BYTES + 1, dtype=np.uint8)
    raw = text.encode("utf-8")[:MESSAGE_BYTES]
    buf[0] = 1 if flag else 0
    buf[1:1 + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    rows = group.allgather(buf)
    return [(bool(row[0]), bytes(row[1:]).rstrip(b"\0").decode("utf-8", "replace")) for row in rows]


class SetupCheck:
    """Every process calls exactly one of `passed(note)` (its setup is done)
    or `failed(exc)`: the outcomes are gathered, and if any process failed,
    all raise together (SPEC §micro-batches): a failing process its own error, the
    others ProcessFailed naming the first failing rank and its message.
    `passed` returns every process's note, by rank (rank 0's run directory,
    for instance). With one process, `failed` re-raises and `passed` returns [note]."""

    def __init__(self, group):
        self.group, self.open = group, True

    def passed(self, note: str = "") -> list[str]:
        return self._gather(None, note)

    def failed(self, exc: BaseException):
        """Raise `exc` (together with the others' failures, when setup is still open)."""
        if self.open and self.group.size > 1:
            self._gather(exc, "")
        raise exc

    def _gather(self, exc: BaseException | None, note: str) -> list[str]:
        self.open = False
        if self.group.size == 1:
            return [note]
        failed = exc is not None
        outcomes = gather_texts(self.group, f"{type(exc).__name__}: {exc}" if failed else note, failed)
        if failed:
            raise together(exc)
        errors = [(rank, text) for rank, (bad, text) in enumerate(outcomes) if bad]
        if errors:
            rank, first = errors[0]
            raise together(ProcessFailed(f"process {rank} of {self.group.size} failed to set up: {first}"))
        return [text for _, text in outcomes]

# --- the implementation's part: backward with mean_over and accumulate --------------
def supports_micro_batches(impl) -> bool:
    """Whether impl.backward takes `accumulate` and `mean_over` (SPEC §contract, §backward)."""
    try:
        parameters = inspect.signature(impl.backward).parameters
    except (TypeError, ValueError):
        return False
    return "accumulate" in parameters and "mean_over" in parameters


def check_split(impl, split: Split) -> None:
    """More than one micro-batch needs backward's micro-batch arguments (SPEC §contract)."""
    if split.n_micro > 1 and not supports_micro_batches(impl):
        name = getattr(impl, "__name__", type(impl).__name__)
        raise ValueError(f"{name}.backward takes no accumulate/mean_over arguments (SPEC §contract, §backward), so it "
                         f"can run one micro-batch per step only: use grad_accum 1 and one process "
                         f"(asked for {split.processes} process(es) x grad_accum {split.grad_accum})")


def forward_rows(impl, params, x, y, rows: slice, dropout=None):
    """forward on `rows` of the batch; with dropout on, the masks of those rows
    in the whole batch (`dropout(row_offset)` gives the key). -> (loss, cache)."""
    if dropout is None:
        _, loss, cache = impl.forward(params, x[rows], y[rows])
    else:
        _, loss, cache = impl.forward(params, x[rows], y[rows], dropout=dropout(rows.start))
    return float(loss), cache


# --- one step's gradient ---------------------------------------------------------------
def relay(group, g: np.ndarray, running: np.ndarray, source: int | None, dest: int | None) -> np.ndarray:
    """One link of the ordered sum: S = S_prev + g, S_prev received from
    `source` into `running` chunk by chunk (None: S = g, nothing received),
    each chunk forwarded to `dest` (None: kept) as soon as it is added.
    Returns the flat buffer holding S (`g` itself when source is None)."""
    bounds = [(lo, min(lo + RELAY_CHUNK, g.size)) for lo in range(0, g.size, RELAY_CHUNK)]
    sends = []
    if source is None:
        out = g
        if dest is not None:
            sends = [group.send(g[lo:hi], dest) for lo, hi in bounds]
    else:
        out = running
        receives = [group.recv(running[lo:hi], source) for lo, hi in bounds]  # all posted at once
        for (lo, hi), request in zip(bounds, receives):
            group.wait([request])
            chunk = running[lo:hi]
            np.add(chunk, g[lo:hi], out=chunk)  # S_m = S_{m-1} + g_m, one rounding per element
            if dest is not None:
                sends.append(group.send(chunk, dest))
    group.wait(sends)
    return out


def step_gradient(impl, params, x, y, split: Split, group=SOLO, running=None, dropout=None):
    """(loss, G) of one step (SPEC §micro-batches): this process's micro-batches of the
    batch (x, y) [B, T], their gradients summed in micro-batch order with the
    other processes', and the step's loss. Every process returns the same G
    bytes and loss. `running`: with N > 1, a gradient Params for the relay's
    running sum (reused across steps; it holds G afterwards). `dropout`: None,
    or a function row_offset -> the forward's dropout key."""
    B, T = x.shape
    N, M = split.processes, split.n_micro
    if split.batch_size != B or group.size != N:
        raise ValueError(f"the split {split} does not fit a batch of {B} rows on {group.size} process(es)")
    losses = []
    if N == 1 and M == 1:  # one batch: exactly the loop of §trainer
        loss, cache = forward_rows(impl, params, x, y, split.rows(0), dropout)
        return loss, impl.backward(params, cache)
    grads = None
    for m in split.micro_batches(group.rank):
        loss, cache = forward_rows(impl, params, x, y, split.rows(m), dropout)
        losses.append(loss)
        if N == 1:  # one process: add each micro-batch into the first one's buffer
            if grads is None:
                grads = impl.backward(params, cache, mean_over=B * T)
            else:
                impl.backward(params, cache, accumulate=grads, mean_over=B * T)
            del cache
            continue
        g = impl.backward(params, cache, mean_over=B * T)
        del cache
        r = group.rank
        relay(group, g.data, running.data, None if m == 0 else (r - 1) % N, None if m == M - 1 else (r + 1) % N)
        del g
    if N > 1:
        group.broadcast(running.data, N - 1)  # G is rank N-1's running sum
        grads = running
    # losses[r, j] is micro-batch j*N + r; fsum is correctly rounded, so its order is moot
    gathered = group.allgather(np.asarray(losses, dtype=np.float64))
    return math.fsum(gathered.ravel().tolist()) / M, grads


# --- validation ------------------------------------------------------------------------
def evaluate(impl, params, windows: tuple[np.ndarray, np.ndarray], batch_size: int, group=SOLO) -> float:
    """Mean cross-entropy over all validation windows (SPEC §trainer, §micro-batches): batches
    of `batch_size` rows (the micro-batch b; B when there is one), batch e on
    rank e mod N, the losses gathered and combined in batch order: the float64
    sum of loss_e * rows_e over e, divided by the window count."""
    x_all, y_all = windows
    starts = list(range(0, len(x_all), batch_size))
    per_rank = -(-len(starts) // group.size)
    mine = np.full(per_rank, np.nan)
    for i, start in enumerate(starts[group.rank::group.size]):
        _, loss, _ = impl.forward(params, x_all[start:start + batch_size], y_all[start:start + batch_size])
        mine[i] = float(loss)
    gathered = group.allgather(mine)  # [N, per_rank]: batch e is gathered[e % N, e // N]
    total, count = 0.0, 0
    for e, start in enumerate(starts):
        rows = len(x_all[start:start + batch_size])
        total += float(gathered[e % group.size, e // group.size]) * rows
        count += rows
    return total / count
