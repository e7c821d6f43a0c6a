"""The `feste` command line: demo, train, generate, inspect, plot (SPEC §training).

Run in-process through `main(argv)` with capsys. Oracles: the files a run
writes (read back with the checkpoint reader and the csv module), an
uninterrupted run against a stopped-and-resumed one (identical final
checkpoint bytes), and for bad input the contract "one line on stderr, a
non-zero exit code, no traceback".
"""
from __future__ import annotations

import argparse
import os
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import pytest

from conformance.fixtures import run_feste as feste
from feste import cli





SMALL_MODEL = ["--vocab-size", "300", "--n-embd", "16", "--n-heads", "2", "--n-layers", "1",
               "--block-size", "16", "--batch-size", "4", "--seq-len", "8", "--eval-batches", "2"]


def train_args(impl, corpus, run_dir, *extra):
    return ["-q", "train", "--corpus", corpus, *SMALL_MODEL, "--run-dir", run_dir, "--impl", impl.name, *extra]


@pytest.mark.parametrize("command", ["demo", "train", "generate", "inspect", "export", "import", "plot"])
def test_help_explains_every_flag(capsys, command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        assert action.help and action.help.strip(), f"feste {command}: {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in out, f"{flag} missing from feste {command} --help"


def test_train_then_generate_inspect_plot(impl, capsys, corpus_file, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = feste(capsys, *train_args(impl, corpus_file, run_dir, "--steps", "10", "--eval-interval", "5",
                                               "--lr", "1e-2", "--warmup", "2", "--checkpoint-interval", "5"))
    assert code == 0, err
    assert [line[:9] for line in out.splitlines() if line.startswith("Step")] == ["Step    0", "Step    5", "Step   10"]
    for name in ("run.json", "training_log.csv", "best.ckpt", "latest.ckpt", "final.ckpt"):
        assert (run_dir / name).is_file(), name
    final = impl.load_checkpoint(run_dir / "final.ckpt")
    assert final.metadata["step"] == 10 and final.optimizer.step == 10 and final.tokenizer is not None
    assert final.config.n_embd == 16 and final.config.vocab_size == 300

    code, out, err = feste(capsys, "generate", run_dir / "final.ckpt", "--prompt", "To be", "--tokens", "12",
                           "--temperature", "0", "--impl", impl.name)
    assert code == 0, err
    greedy = impl.generate(final.params, final.tokenizer.encode("To be"), 12, temperature=0.0)
    assert out == final.tokenizer.decode(greedy) + "\n"

    code, out, err = feste(capsys, "inspect", run_dir / "final.ckpt")
    assert code == 0, err
    size = (run_dir / "final.ckpt").stat().st_size
    for text in ("FESTE_CKPT version 1", "kind:        training", f"{size:,} bytes",
                 f"parameters:  {impl.n_params(final.config):,}", '"n_embd":16', "optimizer", "AdamW step 10",
                 "300 tokens", "step:        10", "metadata"):
        assert text in out, f"{text!r} not in:\n{out}"

    code, out, err = feste(capsys, "inspect", "--json", run_dir / "final.ckpt")
    assert code == 0, err
    info = json.loads(out)  # stdout is exactly one JSON document
    assert (info["bytes"], info["kind"], info["format"], info["version"]) == (size, "training", "FESTE_CKPT", 1)
    assert info["config"] == dataclasses.asdict(final.config)
    assert info["parameters"] == impl.n_params(final.config) and info["tensors"] == len(final.params.table)
    assert info["optimizer"]["step"] == 10 and info["tokenizer"] == {"vocab_size": 300}
    assert info["metadata"] == {"step": 10, "best_val_loss": pytest.approx(final.metadata["best_val_loss"]),
                                "best_val_step": final.metadata["best_val_step"]}
    ends = [s["offset"] + s["length"] for s in info["sections"]]
    assert [s["offset"] for s in info["sections"][1:]] == ends[:-1] and ends[-1] == size  # contiguous, whole file
    assert info["sections"][0]["offset"] == 0 and [s["name"] for s in info["sections"]] == [
        "header", "config", "parameters", "optimizer", "tokenizer", "metadata"]

    code, out, err = feste(capsys, "plot", run_dir)
    if code != 0:  # without the optional matplotlib: a clear one-line message
        assert "matplotlib" in err and err.count("\n") == 1
        return
    png = (run_dir / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []
    fifo = tmp_path / "plot.fifo"
    os.mkfifo(fifo)  # a FIFO without a reader: writing to it would block forever
    code, out, err = feste(capsys, "plot", run_dir, "--out", fifo)
    assert code != 0 and "a FIFO" in err and str(fifo) in err and err.count("\n") == 1


def test_resume_from_cli_matches_uninterrupted(impl, capsys, corpus_file, tmp_path):
    common = ["--steps", "12", "--eval-interval", "4", "--lr", "5e-3", "--schedule", "cosine", "--min-lr", "1e-4"]
    code, _, err = feste(capsys, *train_args(impl, corpus_file, tmp_path / "a", *common))
    assert code == 0, err
    code, _, err = feste(capsys, *train_args(impl, corpus_file, tmp_path / "b", *common, "--stop-at", "6"))
    assert code == 0, err
    code, _, err = feste(capsys, *train_args(impl, corpus_file, tmp_path / "b", *common,
                                             "--resume", tmp_path / "b" / "final.ckpt"))
    assert code == 0, err
    assert (tmp_path / "a" / "final.ckpt").read_bytes() == (tmp_path / "b" / "final.ckpt").read_bytes()


def test_dropout_flag_trains_stores_and_resumes(impl, capsys, corpus_file, tmp_path):
    """`--dropout 0.1`: the checkpoints' config JSON holds "dropout_rate":0.1
    (serde_json's f32 format, SPEC §checkpoint), run.json the setting; a run resumed
    from the checkpoint (no --dropout) keeps the rate and ends with the bytes
    of the uninterrupted run (SPEC §dropout, §trainer)."""
    common = ["--steps", "8", "--eval-interval", "4", "--lr", "5e-3", "--dropout", "0.1"]
    code, _, err = feste(capsys, *train_args(impl, corpus_file, tmp_path / "a", *common))
    assert code == 0, err
    final = (tmp_path / "a" / "final.ckpt").read_bytes()
    assert b'"block_size":16,"dropout_rate":0.1}' in final[:200], final[:200]
    assert json.loads((tmp_path / "a" / "run.json").read_text())["settings"]["dropout"] == 0.1
    code, _, err = feste(capsys, *train_args(impl, corpus_file, tmp_path / "b", *common, "--stop-at", "3"))
    assert code == 0, err
    code, _, err = feste(capsys, "-q", "train", "--resume", tmp_path / "b" / "final.ckpt", "--impl", impl.name)
    assert code == 0, err
    assert (tmp_path / "b" / "final.ckpt").read_bytes() == final


def test_resume_reuses_the_runs_settings(impl, capsys, corpus_file, tmp_path):
    """`feste train --resume DIR/final.ckpt` alone: the settings (cosine, lr, sizes, run
    directory) come from DIR/run.json, so the continued run equals the uninterrupted one."""
    common = ["--steps", "12", "--eval-interval", "4", "--lr", "5e-3", "--schedule", "cosine", "--min-lr", "1e-4"]
    code, _, err = feste(capsys, *train_args(impl, corpus_file, tmp_path / "a", *common))
    assert code == 0, err
    code, _, err = feste(capsys, *train_args(impl, corpus_file, tmp_path / "b", *common, "--stop-at", "5"))
    assert code == 0, err
    code, out, err = feste(capsys, "-q", "train", "--resume", tmp_path / "b" / "final.ckpt", "--impl", impl.name)
    assert code == 0, err
    assert "Step   12" in out
    assert (tmp_path / "a" / "final.ckpt").read_bytes() == (tmp_path / "b" / "final.ckpt").read_bytes()


def test_resume_in_a_config_file_says_to_give_it_as_a_flag(impl, capsys, corpus_file, tmp_path):
    """`resume = CKPT` in a config file, without --resume: the run's settings (its run.json)
    are found only through the flag, so the command stops at once with one line naming the
    file, the field and the command to run instead. It used to refuse the resume for
    settings the user never gave (every default against the run's)."""
    code, _, err = feste(capsys, *train_args(impl, corpus_file, tmp_path / "a", "--steps", "4"))
    assert code == 0, err
    checkpoint = tmp_path / "a" / "final.ckpt"
    before = checkpoint.read_bytes()
    config = tmp_path / "more.toml"
    config.write_text(f'resume = "{checkpoint}"\nmax_steps = 8\n')
    code, out, err = feste(capsys, "-q", "train", "--config", config, "--impl", impl.name)
    assert code == 1 and err.count("\n") == 1 and out == "", err
    command = shlex.join(["feste", "train", "--resume", str(checkpoint), "--config", str(config)])  # TMPDIR may hold spaces
    for part in (f"config {config}: resume", command):
        assert part in err, (part, err)
    assert checkpoint.read_bytes() == before
    code, out, err = feste(capsys, "-q", "train", "--resume", checkpoint, "--config", config, "--impl", impl.name)
    assert code == 0 and "Step    8" in out, err


def test_config_file_flags_override_and_json_summary(impl, capsys, corpus_file, tmp_path, monkeypatch):
    """--config TOML gives the settings, flags override it, run.json holds the result,
    --json prints one summary on stdout; and run.json itself, as a config, reproduces
    the run byte for byte."""
    config = tmp_path / "tiny.toml"
    config.write_text('vocab_size = 300\nn_embd = 16\nn_heads = 2\nn_layers = 1\nblock_size = 16\n'
                      'batch_size = 4\nseq_len = 8\neval_batches = 2\nmax_steps = 50\nlr = 1  # overridden\n'
                      'eval_interval = 3\nsample_top_k = "none"\n')
    code, out, err = feste(capsys, "-q", "train", "--config", config, "--corpus", corpus_file, "--steps", "6",
                           "--lr", "5e-3", "--run-dir", tmp_path / "a", "--impl", impl.name, "--json")
    assert code == 0, err
    result = json.loads(out)  # stdout is exactly the summary; the progress lines went to stderr
    assert "Step    3" in err
    saved = json.loads((tmp_path / "a" / "run.json").read_text())["settings"]
    assert (saved["max_steps"], saved["lr"], saved["batch_size"], saved["sample_top_k"]) == (6, 5e-3, 4, None)
    final = impl.load_checkpoint(tmp_path / "a" / "final.ckpt")
    assert result["step"] == 6 == final.metadata["step"] and result["stop_reason"] == "max_steps"
    assert result["best_val_loss"] == pytest.approx(final.metadata["best_val_loss"])
    assert result["best_val_step"] == final.metadata["best_val_step"]
    assert result["checkpoints"]["final"] == str(tmp_path / "a" / "final.ckpt") and result["config"]["n_embd"] == 16
    assert result["run_json"] == str(tmp_path / "a" / "run.json") and result["seconds"] > 0
    # a run.json as config: the same settings less where/how run a was started (its
    # run_dir is not taken, so the repeat gets a new runs/<preset>-<time>)
    monkeypatch.chdir(tmp_path)
    code, out, err = feste(capsys, "-q", "train", "--config", tmp_path / "a" / "run.json", "--impl", impl.name,
                           "--json")
    assert code == 0, err
    again = Path(json.loads(out)["checkpoints"]["final"])
    assert again.is_absolute() and again.parent.parent.resolve() == (tmp_path / "runs").resolve()
    assert again.read_bytes() == (tmp_path / "a" / "final.ckpt").read_bytes()


@pytest.mark.parametrize("name, make, message", [
    ("dup.json", lambda p: p.write_text('{"batch_size": 4, "batch_size": 8}'), "duplicate key 'batch_size'"),
    ("nan.json", lambda p: p.write_text('{"lr": NaN}'), "NaN is not valid JSON"),
    ("deep.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    ("fifo.toml", lambda p: __import__("os").mkfifo(p), "FIFO"),
])
def test_config_files_are_read_strictly(capsys, tmp_path, corpus_file, name, make, message):
    """A config file is read like every other input (SPEC §run-directories): a regular file (a FIFO
    would block), strict JSON (no silent last-wins duplicate, no NaN, no RecursionError)."""
    config = tmp_path / name
    make(config)
    code, out, err = feste(capsys, "-q", "train", "--config", config, "--corpus", corpus_file,
                           "--run-dir", tmp_path / "run")
    assert code == 1 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("text, flags, message", [
    ("batch_sise = 4\n", [], "unknown setting 'batch_sise'"),
    ("batch_size = 0\n", [], "tiny.toml: batch_size must be >= 1"),
    ("batch_size = 2.5\n", [], "batch_size must be int, got 2.5"),
    ("lr = 1e-3\n", ["--lr", "-1"], "--lr: lr must be"),
    ("", ["--top-k", "0"], "--top-k: sample_top_k must be >= 1"),
])
def test_bad_settings_name_their_source(capsys, tmp_path, corpus_file, text, flags, message):
    config = tmp_path / "tiny.toml"
    config.write_text(text)
    code, out, err = feste(capsys, "-q", "train", "--config", config, "--corpus", corpus_file, *flags,
                           "--run-dir", tmp_path / "run")
    assert code == 1 and err.count("\n") == 1 and message in err, err


def test_plot_without_matplotlib_says_so(capsys, corpus_file, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "training_log.csv").write_text(
        "step,elapsed_seconds,learning_rate,train_loss,val_loss,train_perplexity,val_perplexity,sample,grad_norm\n"
        '0,0.10,0.000000,6.2383,6.2383,512.00,512.00,"",1.0000\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = feste(capsys, "plot", run_dir)
    assert code != 0 and "matplotlib" in err and "pip install" in err and err.count("\n") == 1


def _corrupt_files(tmp_path, corpus_file):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"FESTE_CKPT\x01\xff\xff\xff\x7f{")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    return bad, empty


def bad_invocations(tmp_path, corpus_file):
    bad, empty = _corrupt_files(tmp_path, corpus_file)
    missing = tmp_path / "missing.ckpt"
    return [
        ["inspect", missing], ["inspect", tmp_path], ["inspect", bad], ["inspect", corpus_file],
        ["generate", missing], ["generate", bad], ["generate", tmp_path],
        ["generate", bad, "--temperature", "-1"], ["generate", bad, "--top-k", "0"], ["generate", bad, "--tokens", "x"],
        ["train", "--corpus", empty, "--steps", "1"], ["train", "--corpus", tmp_path / "nope.txt"],
        ["train", "--corpus", tmp_path], ["train", "--batch-size", "0"], ["train", "--lr", "-1"],
        ["train", "--steps", "-5"], ["train", "--beta1", "1.5"], ["train", "--schedule", "linear"],
        ["train", "--dropout", "1"], ["train", "--dropout", "-0.1"], ["train", "--dropout", "nan"],
        ["train", "--n-heads", "3", "--corpus", corpus_file], ["train", "--seq-len", "999", "--corpus", corpus_file],
        ["train", "--resume", missing], ["train", "--resume", bad], ["train", "--impl", "no_such_module_xyz"],
        ["train", "--config", tmp_path / "no.toml"], ["train", "--config", bad], ["train", "--top-k", "x"],
        ["plot", tmp_path / "nowhere"], ["plot", tmp_path], ["demo", "--steps", "-1"],
        ["demo", "--corpus", empty],
    ]


def test_bad_input_is_one_line_and_nonzero(capsys, corpus_file, tmp_path):
    for argv in bad_invocations(tmp_path, corpus_file):
        try:
            code = cli.main(["-q", *[str(a) for a in argv]])
        except SystemExit as exc:  # argparse usage errors exit 2
            code = exc.code
        out, err = capsys.readouterr()
        assert code not in (0, None), f"feste {argv}: exit code {code}"
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, f"feste {argv}: stderr is not one line:\n{err}"
        assert "Traceback" not in err and "internal error" not in err, f"feste {argv}: {err}"


def test_inspect_names_the_offset_of_a_truncated_file(impl, capsys, corpus_file, tmp_path):
    config = impl.Config(vocab_size=300, n_embd=16, n_heads=2, n_layers=1, block_size=16)
    path = tmp_path / "cut.ckpt"
    data = impl.checkpoint_to_bytes(impl.Checkpoint(config, impl.init_params(config)))
    path.write_bytes(data[:1000])
    code, out, err = feste(capsys, "inspect", path)
    assert code == 1 and "cut.ckpt" in err and "offset" in err and err.count("\n") == 1


def test_generate_refuses_a_model_wider_than_its_tokenizer_before_generating(capsys, tmp_path, monkeypatch):
    """A FESTE_CKPT may hold a tokenizer smaller than the model's vocabulary (SPEC
    §checkpoint); sampling can then draw an id the tokenizer cannot decode. `feste
    generate` generated first and failed at the decode ("token id 319 ... out of
    range"), the text lost, or succeeded by luck; now it refuses before generating,
    naming the file and both sizes, whatever the seed."""
    import reference
    from reference.checkpoint import Checkpoint, save_checkpoint

    tokenizer = reference.Tokenizer.train(b"to be or not to be, that is the question " * 20, 300)
    assert tokenizer.vocab_size < 320
    config = reference.Config(vocab_size=320, n_embd=16, n_heads=2, n_layers=1, block_size=16)
    path = tmp_path / "wide.ckpt"
    save_checkpoint(path, Checkpoint(config, reference.init_params(config, seed=0), tokenizer=tokenizer))
    calls = []
    monkeypatch.setattr(reference, "generate", lambda *a, **k: calls.append(a) or [0])
    code, out, err = feste(capsys, "generate", path, "--impl", "reference")
    assert code == 1 and err.count("\n") == 1 and out == "", err
    assert str(path) in err and "vocab_size 320" in err and f"{tokenizer.vocab_size} tokens" in err, err
    assert calls == [], "the model generated before the refusal"


def test_default_impl_is_fast_when_available():
    name = cli.default_impl_name()
    try:
        import fast
        complete = all(hasattr(fast, n) for n in cli.IMPL_NAMES_NEEDED)
    except Exception:  # noqa: BLE001
        complete = False
    assert name == ("fast" if complete else "reference")


@pytest.mark.slow
@pytest.mark.parametrize("impl_name", ["reference", "fast"])
def test_demo_runs_for_real(capsys, corpus_file, tmp_path, impl_name):
    """The seed's layout with real numbers: 2 steps of the tiny preset on the
    small corpus. A compiled implementation (fast) reports its kernel
    preparation (compile on the first run, cache load after) before training."""
    if impl_name == "fast":
        pytest.importorskip("fast", reason="the fast implementation does not import here")
    code, out, err = feste(capsys, "-q", "demo", "--corpus", corpus_file, "--steps", "2", "--impl", impl_name,
                           "--run-dir", tmp_path / "demo")
    assert code == 0, err
    assert ("Kernels ready in" in out) == (impl_name == "fast"), out
    for text in ("Training Infrastructure Demonstration", "Initial vocab: 256 (byte-level)", "Target vocab: 512",
                 "Sequence length: 64", "Batch size: 16", "Training examples:", "Validation examples:",
                 "Expected loss: ~6.24 (ln(512))", "Actual loss:", "Perplexity:", "✓ Baseline computed correctly",
                 "Step    0 | Time:", "| LR: 0.000000 |", "Training log saved to:", "Checkpoint saved to:",
                 "✓ All infrastructure components working"):
        assert text in out, f"{text!r} not in demo output:\n{out}"
    assert (tmp_path / "demo" / "final.ckpt").is_file()


def test_reference_imports_neither_fast_nor_the_application():
    """reference/ is the specification in code: importing the whole package
    (every module) pulls in neither `fast` nor `feste` (nothing in reference/ imports the application)."""
    import subprocess

    code = ("import importlib, pkgutil, sys, reference\n"
            "for m in pkgutil.iter_modules(reference.__path__):\n"
            "    importlib.import_module('reference.' + m.name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('fast', 'feste'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing reference loaded {out}"


def test_a_closed_pipe_ends_quietly(capsys, monkeypatch, corpus_file, closed_pipe):
    """`feste corpus | head -1`: the reader leaves, the write raises BrokenPipeError;
    the command ends with 128 + SIGPIPE and says nothing (it is not a failure)."""
    monkeypatch.setattr(sys, "stdout", closed_pipe)
    code = cli.main(["corpus", "--corpus", str(corpus_file)])
    monkeypatch.undo()
    assert code == cli.EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == ""
