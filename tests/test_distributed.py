"""Data-parallel training over MPI (SPEC 7.5): feste/distributed.py and `mpiexec -n N feste train`.

Tests marked `mpi` start real processes with `mpiexec` on this machine
(loopback / shared memory only); they skip with the reason when mpi4py or
mpiexec is missing, unless FESTE_REQUIRE_MPI=1 (.ci/run installs the `mpi`
extra and sets it), when they fail instead. Oracles: one process with the
same micro-batch size (the bytes must not depend on the number of
processes), and for faults the contract "every process ends within a bounded
time, with one line naming the rank".
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from feste import distributed

REQUIRE_MPI_ENV = "FESTE_REQUIRE_MPI"
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def mpiexec() -> str:
    """Path of mpiexec, with mpi4py importable; else skip (fail under FESTE_REQUIRE_MPI=1)."""
    reason = None
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        reason = "mpi4py is not installed (pip install 'feste-spec[mpi]')"
    path = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if reason is None and path is None:
        reason = "no mpiexec found (pip install 'feste-spec[mpi]' puts MPICH's in the environment)"
    if reason is not None:
        if os.environ.get(REQUIRE_MPI_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_MPI_ENV}=1)")
        pytest.skip(reason)
    return path


def run_mpi(mpiexec, n, argv, timeout=600, env=None, **kw):
    """`mpiexec -n n python argv...` with one thread per process (2 cores here)."""
    env = dict(os.environ if env is None else env, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.run([mpiexec, "-n", str(n), sys.executable, *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


# --- without MPI: finding the launcher -----------------------------------------------------
@pytest.mark.parametrize("environ, want", [
    ({}, None),
    ({"PMI_SIZE": "4", "PMI_RANK": "1"}, (4, "PMI_SIZE")),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, (2, "OMPI_COMM_WORLD_SIZE")),
    ({"MPI_LOCALNRANKS": "3"}, (3, "MPI_LOCALNRANKS")),
    ({"PMI_SIZE": "x"}, None),
])
def test_launcher_variables(environ, want):
    assert distributed.launched_size(environ) == want


def test_one_process_needs_no_mpi(monkeypatch):
    """No launcher, or a launcher of one process: no group, mpi4py not imported."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # importing it would raise ImportError
    assert distributed.process_group(environ={}) is None
    assert distributed.process_group(environ={"PMI_SIZE": "1", "PMI_RANK": "0"}) is None


def test_launched_without_mpi4py_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(distributed.LaunchError, match=r"process 1 of 2 \(PMI_SIZE=2\).*pip install 'feste-spec\[mpi\]'"):
        distributed.process_group(environ={"PMI_SIZE": "2", "PMI_RANK": "1"})


# --- with MPI: the group's bytes, and a hung rank ---------------------------------------------
STEP_SCRIPT = r"""
import hashlib, sys
import numpy as np
import reference
from reference.accumulate import SOLO, Split, evaluate, step_gradient
from feste.distributed import process_group
impl = __import__(sys.argv[1])
monkey_chunk = int(sys.argv[2])
import reference.accumulate as acc
acc.RELAY_CHUNK = monkey_chunk
group = process_group(timeout=120) or SOLO
cfg = reference.Config(vocab_size=61, n_embd=24, n_heads=6, n_layers=2, block_size=40)
params = impl.init_params(cfg, seed=1)
rng = np.random.default_rng(0)
params.data[:] += rng.normal(0, 0.1, params.data.size).astype(np.float32)
x, y = rng.integers(0, 61, (8, 37)), rng.integers(0, 61, (8, 37))
running = reference.Params(cfg) if group.size > 1 else None
loss, grads = step_gradient(impl, params, x, y, Split(8, group.size, 4 // group.size), group, running)
val = evaluate(impl, params, (x[:7], y[:7]), 2, group)
digest = hashlib.sha256(grads.data.tobytes() + np.float64([loss, val]).tobytes()).hexdigest()
every = group.allgather(np.frombuffer(digest.encode(), dtype=np.uint8))
if group.rank == 0:
    print(len({bytes(row) for row in every}), digest)
"""


@pytest.mark.mpi
@pytest.mark.parametrize("impl_name", ["reference", "fast"])
def test_processes_give_the_bytes_of_one(mpiexec, tmp_path, impl_name):
    """One step's G, loss and validation loss: 2 and 4 processes (relay chunks
    of 1000 elements) give every rank the bytes of one process with 4 micro-batches."""
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    one = subprocess.run([sys.executable, str(script), impl_name, "1000"], capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    want = one.stdout.split()[1]
    for n in (2, 4):
        out = run_mpi(mpiexec, n, [str(script), impl_name, "1000"])
        assert out.returncode == 0, out.stderr[-2000:]
        ranks_agreeing, digest = out.stdout.split()
        assert ranks_agreeing == "1", f"the {n} processes hold different bytes"
        assert digest == want, f"{n} processes differ from one process with the same micro-batch"


HANG_SCRIPT = r"""
import os, signal, sys
import numpy as np
from feste.distributed import process_group
group = process_group(timeout=float(sys.argv[1]))
if group.rank == 1:
    os.kill(os.getpid(), signal.SIGSTOP)  # hangs: alive, silent
group.allgather(np.zeros(1))
"""


@pytest.mark.mpi
def test_a_hung_rank_ends_the_run_within_the_deadline(mpiexec, tmp_path):
    """Rank 1 stops (SIGSTOP) before a collective: rank 0's watchdog says which
    rank it waited for and aborts; every process ends within deadline + slack."""
    script = tmp_path / "hang.py"
    script.write_text(HANG_SCRIPT)
    start = time.monotonic()
    out = run_mpi(mpiexec, 2, [str(script), "3"], timeout=120)
    took = time.monotonic() - start
    assert out.returncode != 0
    assert "feste: rank 0 of 2: waited 3 s for every rank (allgather)" in out.stderr, out.stderr
    assert took < 60, f"the run took {took:.0f} s to end"
