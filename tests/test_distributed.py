"""Data-parallel training over MPI (SPEC §micro-batches): feste/distributed.py and `mpiexec -n N feste train`.

Tests marked `mpi` start real processes with `mpiexec` on this machine
(loopback / shared memory only); they skip with the reason when mpi4py or
mpiexec is missing, unless FESTE_REQUIRE_MPI=1 (.ci/run installs the `mpi`
extra and sets it), when they fail instead. Oracles: one process with the
same micro-batch size (the bytes must not depend on the number of
processes), and for faults the contract "every process ends within a bounded
time, with one line naming the rank".
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
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
        import mpi4py  # noqa: F401  (only whether it imports)
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
    expected = r"process 1 of 2 \(PMI_SIZE=2\).*pip install 'feste-spec\[mpi\]'"
    with pytest.raises(distributed.LaunchError, match=expected):
        distributed.process_group(environ={"PMI_SIZE": "2", "PMI_RANK": "1"})


# --- with MPI: the group's bytes, and a hung rank ---------------------------------------------
STEP_SCRIPT = r"""
import hashlib, sys
import numpy as np
import reference
from feste.accumulate import SOLO, Split, evaluate, step_gradient
from feste.distributed import process_group
impl = __import__(sys.argv[1])
monkey_chunk = int(sys.argv[2])
import feste.accumulate as acc
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


# --- with MPI: `mpiexec -n N feste train` ------------------------------------------------------
SMALL = ["--vocab-size", "300", "--n-embd", "16", "--n-heads", "2", "--n-layers", "1", "--block-size", "16",
         "--batch-size", "4", "--seq-len", "8", "--eval-batches", "2", "--eval-interval", "5",
         "--checkpoint-interval", "5", "-q"]




def feste_cmd(*args):
    return ["-m", "feste.cli", "train", *map(str, args)]


def run_one(argv, timeout=600):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=timeout)


def logged(run_dir):
    """The training log without its elapsed-seconds column (wall time may differ)."""
    rows = (run_dir / "training_log.csv").read_text().splitlines()
    return [",".join(r.split(",")[:1] + r.split(",")[2:]) for r in rows]


@pytest.mark.mpi
@pytest.mark.parametrize("impl_name", ["reference", "fast"])
def test_two_processes_train_as_one_with_twice_the_accumulation(mpiexec, corpus_file, tmp_path, impl_name):
    """mpiexec -n 2 (grad_accum 1) against 1 process with grad_accum 2: the same
    checkpoint bytes (final, best, latest) and the same logged numbers."""
    common = ["--corpus", corpus_file, *SMALL, "--steps", 20, "--impl", impl_name]
    one = run_one(feste_cmd(*common, "--grad-accum", 2, "--run-dir", tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = run_mpi(mpiexec, 2, feste_cmd(*common, "--run-dir", tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("Stopped at step 20") == 1, "rank 0 alone prints"
    for name in ("final.ckpt", "best.ckpt", "latest.ckpt"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert logged(tmp_path / "two") == logged(tmp_path / "one")
    doc = json.loads((tmp_path / "two" / "run.json").read_text())
    assert (doc["processes"], doc["grad_accum"], doc["micro_batch"]) == (2, 1, 2)


@pytest.mark.mpi
def test_two_processes_fine_tune_as_one(mpiexec, corpus_file, tmp_path):
    """--init-from under mpiexec -n 2 (every process reads the weights itself) against one
    process with grad_accum 2: the same checkpoint bytes and logged numbers (SPEC §trainer, §micro-batches)."""
    source = run_one(feste_cmd("--corpus", corpus_file, *SMALL, "--steps", 6, "--impl", "reference",
                               "--run-dir", tmp_path / "source"))
    assert source.returncode == 0, source.stderr
    common = ["--corpus", corpus_file, "--init-from", tmp_path / "source" / "final.ckpt", "--batch-size", 4,
              "--seq-len", 8, "--eval-batches", 2, "--eval-interval", 5, "--steps", 10, "--impl", "reference", "-q"]
    one = run_one(feste_cmd(*common, "--grad-accum", 2, "--run-dir", tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = run_mpi(mpiexec, 2, feste_cmd(*common, "--run-dir", tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("(from the weights of") == 1, "rank 0 alone prints"
    assert (tmp_path / "two" / "final.ckpt").read_bytes() == (tmp_path / "one" / "final.ckpt").read_bytes()
    assert logged(tmp_path / "two") == logged(tmp_path / "one")


@pytest.mark.mpi
def test_a_two_process_run_resumes_in_one_process(mpiexec, corpus_file, tmp_path):
    """Stopped at step 8 by 2 processes, resumed by one: without --grad-accum the
    resume keeps the micro-batch (grad_accum 2) and ends with the bytes of an
    uninterrupted 2-process run."""
    common = ["--corpus", corpus_file, *SMALL, "--steps", 20]
    whole = run_mpi(mpiexec, 2, feste_cmd(*common, "--run-dir", tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    part = run_mpi(mpiexec, 2, feste_cmd(*common, "--run-dir", tmp_path / "split", "--stop-at", 8))
    assert part.returncode == 0, part.stderr
    resumed = run_one(["-m", "feste.cli", "train", "--resume", str(tmp_path / "split" / "final.ckpt"), "-q"])
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "split" / "final.ckpt").read_bytes() == (tmp_path / "whole" / "final.ckpt").read_bytes()
    assert logged(tmp_path / "split") == logged(tmp_path / "whole")
    assert json.loads((tmp_path / "split" / "run.json").read_text())["grad_accum"] == 2


@pytest.mark.mpi
@pytest.mark.parametrize("n, extra, message", [
    (2, ["--batch-size", 3], "batch_size 3 cannot be cut into 2 process(es) x grad_accum 1"),
    (4, ["--batch-size", 2], "batch_size 2 cannot be cut into 4 process(es)"),
    (2, ["--corpus", "missing.txt"], "corpus missing.txt does not exist"),
])
def test_bad_launches_are_one_message_before_any_work(mpiexec, corpus_file, tmp_path, n, extra, message):
    out = run_mpi(mpiexec, n, feste_cmd("--corpus", corpus_file, *SMALL, "--run-dir", tmp_path / "run", *extra),
                  cwd=tmp_path)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert errors == [f"feste train: error: {message}" + errors[0][len("feste train: error: " + message):]], errors
    assert message in errors[0]
    assert not (tmp_path / "run").exists(), "nothing may be created before the processes agree"


def rank_pids(marker: str) -> dict[int, int]:
    """{rank: pid} of the running feste processes whose command line holds `marker`."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
            environ = open(f"/proc/{entry}/environ", "rb").read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if marker in cmdline and "feste.cli" in cmdline:
            for item in environ:
                if item.startswith("PMI_RANK="):
                    found[int(item.split("=", 1)[1])] = int(entry)
    return found


def default_signals():
    """SIGINT and SIGTERM at their defaults in the launched job, whatever this process
    inherited (under `nohup` or `&`, SIGINT arrives ignored and children keep that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_long_run(mpiexec, corpus_file, run_dir, *extra):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    argv = feste_cmd("--corpus", corpus_file, *SMALL, "--steps", 100000, "--run-dir", run_dir, *extra)
    proc = subprocess.Popen([mpiexec, "-n", "2", sys.executable, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # training has started: rank 0 logs every step
        steps = run_dir / "steps.csv"
        if steps.exists() and len(steps.read_text().splitlines()) > 20 and len(rank_pids(str(run_dir))) == 2:
            return proc, rank_pids(str(run_dir))
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the run did not start: {proc.communicate()[1][-2000:]}")


def ended_within(proc, seconds):
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the run did not end within {seconds} s") from None
    return proc.returncode, err


def assert_all_gone(run_dir, seconds=30):
    """Every process of the run has ended (a stopped one may take the launcher a moment to reap)."""
    deadline = time.monotonic() + seconds
    while rank_pids(str(run_dir)):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes outlived the run: {rank_pids(str(run_dir))}")
        time.sleep(0.2)


def assert_checkpoints_whole(run_dir):
    from reference.checkpoint import load_checkpoint

    for path in run_dir.glob("*.ckpt"):
        load_checkpoint(path)  # raises on a partial file


@pytest.mark.mpi
def test_a_killed_rank_ends_the_run(mpiexec, corpus_file, tmp_path):
    """SIGKILL to rank 1 mid-run: mpiexec ends every process within 30 s with a
    non-zero status; every checkpoint left is whole."""
    run_dir = tmp_path / "run"
    proc, pids = start_long_run(mpiexec, corpus_file, run_dir)
    os.kill(pids[1], signal.SIGKILL)
    code, err = ended_within(proc, 30)
    assert code != 0, err
    assert_all_gone(run_dir)
    assert_checkpoints_whole(run_dir)


@pytest.mark.mpi
@pytest.mark.parametrize("signum, target", [(signal.SIGTERM, "mpiexec"), (signal.SIGINT, "mpiexec"),
                                            (signal.SIGTERM, "rank 1")],
                         ids=["SIGTERM", "SIGINT", "SIGTERM to rank 1 alone"])
def test_a_signal_stops_every_process_at_one_step_and_the_resume_gives_the_same_bytes(mpiexec, corpus_file,
                                                                                      tmp_path, signum, target):
    """SIGTERM (a scheduler's preemption) or SIGINT to mpiexec, which forwards it to
    both processes, or SIGTERM to rank 1 alone: the processes agree on one step, rank
    0 writes latest.ckpt there, the job exits 128 + signal with one stderr line holding
    the exact resume command (`mpiexec -n 2 feste train --resume ...`); that command,
    run to a few steps on, gives the bytes of an uninterrupted 2-process run."""
    import shlex

    run_dir = tmp_path / "cut"
    proc, pids = start_long_run(mpiexec, corpus_file, run_dir, "--checkpoint-interval", 100000, "--impl", "reference")
    if target == "mpiexec":
        proc.send_signal(signum)
    else:
        os.kill(pids[1], signum)
    code, err = ended_within(proc, 60)
    assert code == 128 + signum, err
    assert_all_gone(run_dir)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    name = signal.Signals(signum).name
    k = int(re.search(rf"stopped by {name} at step (\d+): ", lines[0])[1])
    from reference.checkpoint import load_checkpoint

    assert load_checkpoint(run_dir / "latest.ckpt").metadata["step"] == k
    command = shlex.split(lines[0].split("; resume with: ", 1)[1])
    assert command[:6] == ["mpiexec", "-n", "2", "feste", "train", "--resume"], lines[0]
    end = k + 7
    resumed = run_mpi(mpiexec, 2, ["-m", "feste.cli", *command[4:], "-q", "--stop-at", str(end)])
    assert resumed.returncode == 0, resumed.stderr
    whole = run_mpi(mpiexec, 2, feste_cmd("--corpus", corpus_file, *SMALL, "--steps", 100000, "--checkpoint-interval",
                                          100000, "--impl", "reference", "--run-dir", tmp_path / "whole",
                                          "--stop-at", end))
    assert whole.returncode == 0, whole.stderr
    assert (run_dir / "final.ckpt").read_bytes() == (tmp_path / "whole" / "final.ckpt").read_bytes()
    assert logged(run_dir) == logged(tmp_path / "whole")


@pytest.mark.mpi
def test_a_hung_rank_stops_the_run_with_one_message(mpiexec, corpus_file, tmp_path):
    """SIGSTOP to rank 1 mid-run (alive, silent), --mpi-timeout 20 (above any
    pause of this machine under load): rank 0 says what it waited for and
    aborts; every process ends (the stopped one too)."""
    run_dir = tmp_path / "run"
    proc, pids = start_long_run(mpiexec, corpus_file, run_dir, "--mpi-timeout", 20)
    os.kill(pids[1], signal.SIGSTOP)
    code, err = ended_within(proc, 90)
    assert code != 0
    ours = [line for line in err.splitlines() if line.startswith("feste")]
    # rank 0 waits for rank 1's relay message or broadcast, or in a collective (then it cannot tell who is late)
    assert len(ours) == 1 and re.match(r"feste: rank 0 of 2: waited 20 s for (rank 1|every rank)", ours[0]), err
    assert_all_gone(run_dir)
    assert_checkpoints_whole(run_dir)


FAILING_IMPL = r"""
import os
from reference import *  # noqa: F401,F403
from reference import __all__  # noqa: F401
import reference

calls = 0


def backward(params, cache, accumulate=None, mean_over=None):
    global calls
    calls += 1
    if os.environ.get("PMI_RANK") == "1" and calls == 12:
        raise RuntimeError("injected failure in rank 1's backward")
    return reference.backward(params, cache, accumulate=accumulate, mean_over=mean_over)
"""


@pytest.mark.mpi
def test_a_failing_rank_stops_every_process_with_its_message(mpiexec, corpus_file, tmp_path):
    """An exception in rank 1 alone (its 12th backward): one line naming rank 1
    and the error, every process ends, no final checkpoint."""
    (tmp_path / "failing_impl.py").write_text(FAILING_IMPL)
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.monotonic()
    out = run_mpi(mpiexec, 2, feste_cmd("--corpus", corpus_file, *SMALL, "--steps", 50, "--run-dir", run_dir,
                                        "--impl", "failing_impl"), timeout=120, env=env)
    assert out.returncode != 0
    ours = [line for line in out.stderr.splitlines() if line.startswith("feste")]
    assert ours == ["feste: rank 1 of 2: internal error: RuntimeError: injected failure in rank 1's backward; "
                    "stopping all 2 processes"], out.stderr
    assert time.monotonic() - start < 120
    assert not (run_dir / "final.ckpt").exists()
    assert_checkpoints_whole(run_dir)


def test_resume_keeps_the_micro_batch_unless_told(corpus_file, tmp_path):
    """One process: a run of grad_accum 2 resumed without --grad-accum keeps it
    (bit for bit); resumed with --grad-accum 1 it continues with a note that it
    is no longer bit for bit."""
    common = ["--corpus", corpus_file, *SMALL, "--steps", 12]
    whole = run_one(feste_cmd(*common, "--grad-accum", 2, "--run-dir", tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    for run, extra in (("kept", []), ("changed", ["--grad-accum", "1"])):
        part = run_one(feste_cmd(*common, "--grad-accum", 2, "--run-dir", tmp_path / run, "--stop-at", 6))
        assert part.returncode == 0, part.stderr
        resumed = run_one(["-m", "feste.cli", "train", "--resume", str(tmp_path / run / "final.ckpt"), "-q", *extra])
        assert resumed.returncode == 0, resumed.stderr
        same = (tmp_path / run / "final.ckpt").read_bytes() == (tmp_path / "whole" / "final.ckpt").read_bytes()
        note = "note: micro-batches of 4 rows where the run had 2" in resumed.stdout
        assert (same, note) == ((True, False) if run == "kept" else (False, True)), (run, resumed.stdout)
