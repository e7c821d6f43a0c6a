"""How `feste` reads its command line (SPEC §command-line): negative numbers,
unknown flags, `--version`, missing extras, and the one policy for outputs
the user names.

Run in-process through `feste.cli.main(argv)` / `build_parser()` with capsys.
Oracles: argparse's parsed namespace, the one-line error contract ("PROG:
error: MESSAGE", exit 2 for usage, 1 for errors found while running), and
the files on disk before and after.
"""
from __future__ import annotations

import argparse

import pytest

from conformance.fixtures import run_feste as feste
from feste import cli

# placeholders for each subcommand's positional arguments (parsing only: nothing is read)
POSITIONALS = {"generate": ["x.ckpt"], "inspect": ["x.ckpt"], "export": ["x.ckpt", "out"],
               "import": ["hf", "x.ckpt"], "plot": ["run"]}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def options_taking_a_value():
    """(subcommand, flag, action) of every option that takes one value, in every subcommand."""
    return [(name, action.option_strings[-1], action) for name, sub in subcommands().items()
            for action in sub._actions if action.option_strings and action.nargs is None]


# --- negative numbers ---------------------------------------------------------------------
@pytest.mark.parametrize("command, flag, action", options_taking_a_value(),
                         ids=[f"{c} {f}" for c, f, _ in options_taking_a_value()])
def test_a_negative_number_in_any_notation_is_a_value(capsys, command, flag, action):
    """`--lr -1e-3` gives the option its value (argparse took it for a flag and said
    "expected one argument"): it is parsed, or the option's own check names it."""
    argv = [command, *POSITIONALS.get(command, []), flag, "-1e-3"]
    try:
        namespace = cli.build_parser().parse_args(argv)
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2 and "-1e-3" in err and "expected one argument" not in err, err
        assert err.startswith(f"feste {command}: error: ") and err.count("\n") == 1, err
        return
    value = getattr(namespace, action.dest)
    assert value in (-1e-3, "-1e-3", ["-1e-3"]), f"feste {' '.join(argv)}: {action.dest} = {value!r}"


@pytest.mark.parametrize("argv, code, message", [
    (["train", "--lr", "-1e-3"], 1, "--lr: lr must be a finite number in [0.0, inf), got -0.001"),
    (["train", "--lr", "-inf"], 2, "--lr: expected a finite number, got '-inf'"),
    (["generate", "x.ckpt", "--temperature", "-2.5E-1"], 2, "must be in [0.0, inf), got -2.5E-1"),
    (["bench", "--max-time", "-1e-3"], 2, "must be in (0.0, inf), got -1e-3"),
    (["tokenizer", "--vocab-size", "-1e3"], 2, "expected an integer, got '-1e3'"),
    (["tokenizer", "--vocab-size", "255"], 2, "must be >= 256, got 255"),
])
def test_negative_numbers_reach_the_range_check(capsys, tmp_path, argv, code, message):
    got, out, err = feste(capsys, "-q", *argv, *(["--run-dir", tmp_path / "run"] if argv[0] == "train" else []))
    assert got == code and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


# --- the number of steps ---------------------------------------------------------------------
SMALL_MODEL = ["--vocab-size", "300", "--n-embd", "16", "--n-heads", "2", "--n-layers", "1",
               "--block-size", "16", "--batch-size", "4", "--seq-len", "8", "--eval-batches", "2", "--impl", "reference"]


@pytest.mark.parametrize("how, source", [
    (["--steps", "0"], "--steps"), (["--max-steps", "-5"], "--max-steps"), (["--steps", "-5"], "--steps"),
    ("max_steps = 0\n", "config"),
])
def test_a_run_makes_at_least_one_step(capsys, corpus_file, tmp_path, how, source):
    """`--steps 0` was accepted (and wrote best.ckpt and final.ckpt of the untrained
    model) while `--steps -5` said the minimum is 1: every source of max_steps now
    gets the same answer, before anything is written."""
    flags = how
    if isinstance(how, str):
        (tmp_path / "run.toml").write_text(how)
        flags = ["--config", tmp_path / "run.toml"]
    code, out, err = feste(capsys, "-q", "train", "--corpus", corpus_file, *SMALL_MODEL, *flags,
                           "--run-dir", tmp_path / "run")
    assert code == 1 and err.count("\n") == 1, err
    assert f"{source}" in err and "max_steps must be >= 1, got" in err, err
    assert not (tmp_path / "run").exists()


def test_the_demo_makes_at_least_one_step(capsys, corpus_file, tmp_path):
    code, out, err = feste(capsys, "-q", "demo", "--corpus", corpus_file, "--steps", "0", "--impl", "reference",
                           "--run-dir", tmp_path / "demo")
    assert code == 2 and "--steps: must be >= 1, got 0" in err and err.count("\n") == 1, err
    assert not (tmp_path / "demo").exists()


# --- unknown flags and names -----------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "--lrr", "1e-3"], "feste train: error: unrecognized arguments: --lrr 1e-3; did you mean --lr? "
                                 "(see feste train --help)"),
    (["train", "--stpes=5"], "feste train: error: unrecognized arguments: --stpes=5; did you mean --steps?"),
    (["generate", "x.ckpt", "--temprature", "0"], "feste generate: error: unrecognized arguments: --temprature 0; "
                                                  "did you mean --temperature?"),
    (["inspect", "x.ckpt", "extra"], "feste inspect: error: unrecognized arguments: extra (see feste inspect --help)"),
    (["export", "x.ckpt", "out", "--overwirte"], "feste export: error: unrecognized arguments: --overwirte; "
                                                 "did you mean --overwrite?"),
    (["--quite", "corpus"], "feste: error: unrecognized arguments: --quite; did you mean --quiet?"),
    (["trian"], "invalid choice: 'trian' (choose from 'corpus', "),
    (["trian"], "; did you mean 'train'? (see feste --help)"),
    (["--verison"], "feste: error: the following arguments are required: COMMAND; unrecognized arguments: "
                    "--verison; did you mean --version? (see feste --help)"),
    (["inspect", "--jsn"], "feste inspect: error: the following arguments are required: CKPT; unrecognized "
                           "arguments: --jsn; did you mean --json?"),
    (["train", "--preset", "tinny"], "feste train: error: argument --preset: invalid choice: 'tinny' (choose from "
                                     "'tiny', 'small', 'medium'); did you mean 'tiny'?"),
])
def test_an_unknown_flag_names_the_subcommand_and_the_closest_flag(capsys, argv, message):
    """An unknown flag after a subcommand pointed to `feste --help`; it is the
    subcommand's usage error, with the closest flag it has (difflib)."""
    code, out, err = feste(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_flag_far_from_every_other_gets_no_suggestion(capsys):
    code, out, err = feste(capsys, "inspect", "x.ckpt", "--zzzzzz")
    assert code == 2 and err == "feste inspect: error: unrecognized arguments: --zzzzzz (see feste inspect --help)\n"


# --- feste --version -------------------------------------------------------------------------
def test_version_prints_the_package_and_each_implementation(capsys):
    """One line for the package, then one per shipped implementation saying whether
    it imports here; the oracle imports each module itself."""
    import importlib

    import feste

    code, out, err = feste_version(capsys)
    lines = out.splitlines()
    assert code == 0 and err == "" and lines[0].startswith(f"feste-spec {feste.__version__} (Python "), out
    assert [line.split(" ")[0].rstrip(":") for line in lines[1:]] == ["reference", "fast", "torch_impl"], out
    for line in lines[1:]:
        name = line.split(" ")[0].rstrip(":")
        try:
            module = importlib.import_module(name)
        except ImportError:
            module = None
        available = module is not None and all(hasattr(module, n) for n in cli.IMPL_NAMES_NEEDED)
        assert (": available (" in line) == available, line
        assert line.endswith(", the default --impl") == (name == cli.default_impl_name()), line
    assert lines[1].startswith(f"reference {feste.__version__}: available (numpy "), out


def test_version_says_why_an_implementation_is_missing(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch_impl", None)  # import torch_impl -> ImportError
    code, out, err = feste_version(capsys)
    line = next(line for line in out.splitlines() if line.startswith("torch_impl"))
    assert code == 0 and line.startswith("torch_impl: not available: cannot import module 'torch_impl'"), line
    assert line.endswith("(pip install 'feste-spec[torch]')"), line


def feste_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    out, err = capsys.readouterr()
    return info.value.code, out, err


# --- feste bench without the test extra ------------------------------------------------------
@pytest.mark.parametrize("module", ["pytest", "pytest_benchmark"])
def test_bench_without_the_test_extra_names_the_install_command(capsys, monkeypatch, module):
    """`feste bench` died with "No module named pytest" from inside its benchmark run;
    it says what to install, in one line, as `plot` and `export` do (and starts nothing)."""
    import sys

    from benchmarks.tools import report  # the benchmarks' report, which `feste bench` runs

    started = []
    monkeypatch.setattr(report, "main", lambda argv: started.append(argv) or 0)
    monkeypatch.setitem(sys.modules, module, None)  # import MODULE -> ImportError
    code, out, err = feste(capsys, "bench", "--impl", "reference")
    assert code == 1 and started == [] and err.count("\n") == 1, err
    assert "pip install 'feste-spec[test]'" in err and module.replace("_", "-") in err, err
    # rendering an existing JSON runs no benchmark: it needs no pytest
    code, out, err = feste(capsys, "bench", "--json", "step.json")
    assert code == 0 and len(started) == 1 and "--json=step.json" in started[0], err


def test_bench_rounds_run_the_side_by_side_tool_with_every_flag(capsys, monkeypatch):
    """`feste bench --rounds N` (or `--adapter CMD`) is benchmarks/tools/side_by_side.py
    with the flags given (`--rounds` reached no tool before: the report ignored it);
    a flag of the other tool is refused, naming it, before anything runs."""
    from benchmarks.tools import report, side_by_side

    started = []
    monkeypatch.setattr(side_by_side, "main", lambda argv: started.append(argv) or 0)
    monkeypatch.setattr(report, "main", lambda argv: pytest.fail("the report started"))
    code, out, err = feste(capsys, "bench", "--impl", "fast", "--peer", "torch", "--threads", "1", "--rounds", "3",
                           "--cells", "tiny-16x64", "--steps", "2", "--peak-repeats", "0")
    assert code == 0 and started == [["--impl=fast", "--peer=torch", "--threads=1", "--cells=tiny-16x64",
                                      "--rounds=3", "--steps=2", "--peak-repeats=0"]], (started, err)
    code, out, err = feste(capsys, "bench", "--adapter", "my-adapter --flag", "--impl", "fast")
    assert code == 0 and started[-1] == ["--impl=fast", "--adapter=my-adapter --flag"], started
    for argv, named in [(["--rounds", "2", "--json", "x.json"], "--json"), (["--adapter", "a", "--components"],
                        "--components"), (["--cells", "tiny-16x64"], "--cells"), (["--steps", "2"], "--steps"),
                        (["--rounds", "2", "--", "-k", "tiny"], "-- PYTEST_ARGS")]:
        code, out, err = feste(capsys, "bench", "--impl", "fast", *argv)
        assert code == 1 and err.count("\n") == 1 and named in err, (argv, err)
    assert len(started) == 2
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    assert "benchmarks.tools.side_by_side" in capsys.readouterr().out  # the help names the one tool


@pytest.mark.parametrize("signum", [15, 2], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_bench_with_its_exit_code(capsys, monkeypatch, signum):
    """Every command runs under cli.main's StopSignals: `feste bench` stopped by SIGTERM
    exits 143 and by SIGINT 130 (128 + the signal, as `feste train`), with one line naming
    the signal, and the handlers it found are back afterwards. The test's own handler
    stands for what a command without one met: SIGTERM's default, death by the signal."""
    import signal

    from benchmarks.tools import report

    class Unhandled(Exception):
        pass

    def outside(signum, frame):
        raise Unhandled(f"signal {signum} reached the handler outside the command")

    previous = signal.signal(signal.SIGINT, outside), signal.signal(signal.SIGTERM, outside)
    try:
        monkeypatch.setattr(report, "main", lambda argv: signal.raise_signal(signum))
        code, out, err = feste(capsys, "bench", "--impl", "reference")
        assert code == 128 + signum and err == f"feste bench: stopped by {signal.Signals(signum).name}\n", (code, err)
        assert signal.getsignal(signal.SIGINT) is outside and signal.getsignal(signal.SIGTERM) is outside
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


# --- outputs the user names: one policy --------------------------------------------------------
LOG = ("step,elapsed_seconds,learning_rate,train_loss,val_loss,train_perplexity,val_perplexity,sample,grad_norm\n"
       '0,0.10,0.000000,6.2383,6.2383,512.00,512.00,"",1.0000\n'
       '5,0.20,0.001000,5.0000,5.1000,148.41,164.02,"",1.0000\n')


def output_case(command, tmp_path, corpus_file):
    """(argv before the output, the output, argv after it, is it a directory) of `command`."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_log.csv").write_text(LOG)
    ckpt = tmp_path / "in.ckpt"
    ckpt.write_bytes(b"not read: the output is checked first")
    return {
        "tokenizer": (["tokenizer", "--corpus", corpus_file, "--vocab-size", "260", "--out"], tmp_path / "tok.json",
                      [], False),
        "plot": (["plot", run, "--out"], tmp_path / "loss.png", [], False),
        "import": (["import", tmp_path / "hf_in"], tmp_path / "out.ckpt", [], False),
        "export": (["export", ckpt], tmp_path / "hf_out", [], True),
        "bench": (["bench", "--impl", "reference", "--out"], tmp_path / "bench", [], True),
    }[command]


@pytest.mark.parametrize("command", ["tokenizer", "plot", "import", "export", "bench"])
def test_an_existing_output_is_refused_without_overwrite(capsys, monkeypatch, tmp_path, corpus_file, command):
    """`tokenizer --out` and `plot --out` replaced an existing file silently while
    export and import asked for --overwrite: now every subcommand that writes where
    the user says refuses an existing output (a directory: a non-empty one) before
    any work, naming the path and the flag, and leaves it as it was."""
    import subprocess

    from benchmarks.tools import report  # what `feste bench` runs

    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("the benchmarks started"))
    monkeypatch.setattr(report, "main", lambda *a, **k: pytest.fail("the benchmarks started"))
    before, out_path, after, is_dir = output_case(command, tmp_path, corpus_file)
    target = out_path / "keep.txt" if is_dir else out_path
    target.parent.mkdir(exist_ok=True)
    target.write_text("the user's")
    code, out, err = feste(capsys, *before, out_path, *after)
    assert code == 1 and err.count("\n") == 1, err
    assert f"{out_path} exists" in err and "--overwrite" in err, err
    assert out == "" and target.read_text() == "the user's"  # no work done, nothing replaced
    if is_dir:
        assert [p.name for p in out_path.iterdir()] == ["keep.txt"]


def test_tokenizer_checks_its_output_before_training(capsys, tmp_path, corpus_file):
    """`--out DIR` trained for the whole run, then failed on the path."""
    code, out, err = feste(capsys, "tokenizer", "--corpus", corpus_file, "--vocab-size", "260", "--out", tmp_path)
    assert code == 1 and out == "" and f"--out {tmp_path} is a directory" in err, err
    code, out, err = feste(capsys, "tokenizer", "--corpus", corpus_file, "--out", tmp_path / "no" / "tok.json")
    assert code == 1 and out == "" and f"directory {tmp_path / 'no'} does not exist" in err, err


def test_overwrite_replaces_the_output(capsys, tmp_path, corpus_file):
    tok = tmp_path / "tok.json"
    tok.write_text("old")
    code, out, err = feste(capsys, "-q", "tokenizer", "--corpus", corpus_file, "--vocab-size", "260", "--out", tok,
                           "--overwrite")
    assert code == 0 and tok.read_text().startswith('{"vocab":'), err
    pytest.importorskip("matplotlib", reason="feste plot needs the plot extra")
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_log.csv").write_text(LOG)
    png = tmp_path / "loss.png"
    png.write_text("old")
    code, out, err = feste(capsys, "plot", run, "--out", png, "--overwrite")
    assert code == 0 and png.read_bytes().startswith(b"\x89PNG"), err
    for _ in range(2):  # the default RUN_DIR/loss.png is the run's own plot: redrawn each time
        code, out, err = feste(capsys, "plot", run)
        assert code == 0 and (run / "loss.png").read_bytes().startswith(b"\x89PNG"), err


def test_overwrite_never_replaces_a_device(capsys, tmp_path):
    """Replacing a FIFO or a device by rename would swap out a special file (/dev/null)."""
    import os

    run = tmp_path / "run"
    run.mkdir()
    (run / "training_log.csv").write_text(LOG)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    code, out, err = feste(capsys, "plot", run, "--out", fifo, "--overwrite")
    assert code == 1 and "FIFO" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["tokenizer", "plot", "import", "export", "bench"])
def test_help_states_the_output_policy(capsys, command):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in text and "unless --overwrite" in text, text


# --- a failed write names the user's path ------------------------------------------------------
def need_safetensors():
    """feste export needs the interop extra: skip without it, as tests/test_hf.py does
    (and fail under FESTE_REQUIRE_INTEROP=1, which CI sets where it installs the extra)."""
    import os

    try:
        import safetensors  # noqa: F401
    except ImportError:
        if os.environ.get("FESTE_REQUIRE_INTEROP") == "1":
            pytest.fail("safetensors (the interop extra) is missing (FESTE_REQUIRE_INTEROP=1)")
        pytest.skip("feste export needs the interop extra (safetensors)")


def small_checkpoint(path):
    from reference.checkpoint import Checkpoint, save_checkpoint
    from reference.config import Config
    from reference.params import init_params

    config = Config(vocab_size=300, n_embd=8, n_heads=2, n_layers=1, block_size=8)
    save_checkpoint(path, Checkpoint(config, init_params(config, seed=0)))
    return path


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"),
                    reason="needs Linux's /proc: a directory where no one, not even root, can create an entry")
def test_an_export_into_an_unwritable_place_names_the_users_path(capsys, tmp_path):
    """It named the hidden staging directory (/proc/.hf.k2j3x9.tmp) it had tried to create."""
    need_safetensors()
    ckpt = small_checkpoint(tmp_path / "a.ckpt")
    code, out, err = feste(capsys, "export", ckpt, "/proc/feste-export-test")
    assert code == 1 and err.startswith("feste export: error: /proc/feste-export-test: "), err
    assert ".tmp" not in err and err.count("\n") == 1, err


def test_an_export_on_a_full_disk_names_the_file_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    import errno
    import os

    need_safetensors()
    ckpt = small_checkpoint(tmp_path / "a.ckpt")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)  # every file's data reaches the disk through fsync
    code, out, err = feste(capsys, "export", ckpt, tmp_path / "hf")
    assert code == 1 and f"{tmp_path / 'hf'}/model.safetensors: {os.strerror(errno.ENOSPC)}" in err, err
    assert ".tmp" not in err and sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt"]


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root may write in a read-only (0o555) directory")
def test_an_output_in_a_read_only_directory_is_refused_before_work(capsys, tmp_path, corpus_file):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, out, err = feste(capsys, "tokenizer", "--corpus", corpus_file, "--out", locked / "tok.json")
    finally:
        locked.chmod(0o755)
    assert code == 1 and out == "" and f"--out {locked / 'tok.json'}: cannot write in {locked}" in err, err


def test_a_closed_pipe_after_version_ends_quietly(capsys, monkeypatch, closed_pipe):
    """`feste --version | head -1`: the text printed while parsing meets the closed pipe too
    (argparse's --help swallows the error itself)."""
    import sys

    monkeypatch.setattr(sys, "stdout", closed_pipe)
    code = cli.main(["--version"])
    monkeypatch.undo()
    assert code == cli.EXIT_BROKEN_PIPE and capsys.readouterr().err == ""
