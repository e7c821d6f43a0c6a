"""`feste train --init-from CKPT_OR_HF_DIR`: a new run from given weights (SPEC §trainer).

Oracles: the files the runs write (run.json, the logs, the checkpoints read
back), the source run's own last validation loss (the new run's step 0
evaluates the same weights on the same windows, so it must be that number
exactly), an uninterrupted fine-tuning run against a stopped-and-resumed one
and against its run.json given as --config (identical final checkpoints), and
for every refusal "one line on stderr, exit 1, naming the file and the value,
no run directory". The Hugging Face directory path is in tests/test_hf.py.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conformance.fixtures import run_feste as feste
from feste import cli
from reference import Config, Tokenizer, init_params
from reference.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from feste.trainer import TrainSettings, train

MODEL = ["--vocab-size", "300", "--n-embd", "16", "--n-heads", "2", "--n-layers", "1", "--block-size", "16"]
DATA = ["--batch-size", "4", "--seq-len", "8", "--eval-batches", "2", "--eval-interval", "3", "--lr", "1e-2",
        "--warmup", "1", "--impl", "reference"]


def val_losses(run_dir):
    with open(run_dir / "training_log.csv", newline="") as f:
        return {int(row["step"]): float(row["val_loss"]) for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, corpus_file):
    """A short run whose final.ckpt the tests start from (V 300, C 16, block 16)."""
    run_dir = tmp_path_factory.mktemp("source") / "run"
    code = cli.main([str(a) for a in ["-q", "train", "--corpus", corpus_file, *MODEL, *DATA, "--steps", "6",
                                      "--run-dir", run_dir]])
    assert code == 0
    return run_dir


def finetune(capsys, corpus_file, init, run_dir, *extra):
    return feste(capsys, "-q", "train", "--corpus", corpus_file, *DATA, "--init-from", init, "--run-dir", run_dir,
                 *extra)


def test_starts_a_new_run_from_the_weights(capsys, corpus_file, source_run, tmp_path):
    """Step 0, fresh AdamW, its own run directory; the model, its sizes and the tokenizer
    are the checkpoint's; step 0's validation loss is the source run's last one."""
    init = source_run / "final.ckpt"
    code, out, err = finetune(capsys, corpus_file, init, tmp_path / "ft", "--steps", "4", "--seed", "3")
    assert code == 0, err
    assert f"(from the weights of {init})" in out
    source, final = load_checkpoint(init), load_checkpoint(tmp_path / "ft" / "final.ckpt")
    assert final.metadata["step"] == 4 and final.optimizer.step == 4
    assert final.config == source.config and final.tokenizer.to_json() == source.tokenizer.to_json()
    assert final.params.data.tobytes() != source.params.data.tobytes()  # it trained
    settings = json.loads((tmp_path / "ft" / "run.json").read_text())["settings"]
    assert settings["init_from"] == str(init)
    assert (settings["n_embd"], settings["n_heads"], settings["n_layers"], settings["block_size"],
            settings["vocab_size"]) == (16, 2, 1, 16, 300)
    losses = val_losses(tmp_path / "ft")
    assert sorted(losses) == [0, 3, 4]
    assert losses[0] == val_losses(source_run)[6]  # the same weights on the same validation windows
    with open(tmp_path / "ft" / "steps.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == [0, 1, 2, 3, 4]


def test_dropout_is_the_runs(capsys, corpus_file, source_run, tmp_path):
    """Dropout is a training setting: the new run's config takes --dropout, the weights are the same."""
    code, _, err = finetune(capsys, corpus_file, source_run / "final.ckpt", tmp_path / "ft", "--steps", "1",
                            "--lr", "0", "--dropout", "0.25")  # lr 0: one update that leaves the weights as they are
    assert code == 0, err
    final = load_checkpoint(tmp_path / "ft" / "final.ckpt")
    assert final.config.dropout_rate == np.float32(0.25)
    assert final.params.data.tobytes() == load_checkpoint(source_run / "final.ckpt").params.data.tobytes()


def test_default_run_directory(capsys, corpus_file, source_run, tmp_path, monkeypatch):
    """Without --run-dir a fine-tuning run gets a new runs/finetune-<time> (not the preset's name)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = feste(capsys, "-q", "train", "--corpus", corpus_file, *DATA, "--init-from",
                         source_run / "final.ckpt", "--steps", "1")
    assert code == 0, err
    (made,) = (tmp_path / "runs").iterdir()
    assert made.name.startswith("finetune-") and (made / "final.ckpt").is_file()


def test_resume_and_repeat(capsys, corpus_file, source_run, tmp_path):
    """A fine-tuning run stopped and resumed ends with the bytes of the uninterrupted one;
    its run.json keeps init_from across the resume, and given as --config repeats the run."""
    init, common = source_run / "final.ckpt", ["--steps", "7", "--checkpoint-interval", "2"]
    code, _, err = finetune(capsys, corpus_file, init, tmp_path / "a", *common)
    assert code == 0, err
    code, _, err = finetune(capsys, corpus_file, init, tmp_path / "b", *common, "--stop-at", "4")
    assert code == 0, err
    code, _, err = feste(capsys, "-q", "train", "--resume", tmp_path / "b" / "final.ckpt", "--impl", "reference")
    assert code == 0, err
    want = (tmp_path / "a" / "final.ckpt").read_bytes()
    assert (tmp_path / "b" / "final.ckpt").read_bytes() == want
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["settings"]["init_from"] == str(init) and len(run["resumes"]) == 1
    code, _, err = feste(capsys, "-q", "train", "--config", tmp_path / "b" / "run.json", "--run-dir", tmp_path / "c",
                         "--impl", "reference")
    assert code == 0, err
    assert (tmp_path / "c" / "final.ckpt").read_bytes() == want


def _no_tokenizer(tmp_path, source_run):
    ckpt = load_checkpoint(source_run / "final.ckpt")
    save_checkpoint(tmp_path / "bare.ckpt", Checkpoint(ckpt.config, ckpt.params))
    return tmp_path / "bare.ckpt"


def _vocab_larger_than_tokenizer(tmp_path, source_run):
    ckpt = load_checkpoint(source_run / "final.ckpt")
    config = ckpt.config.replace(vocab_size=320)
    save_checkpoint(tmp_path / "wide.ckpt", Checkpoint(config, init_params(config, seed=0),
                                                       tokenizer=ckpt.tokenizer))
    return tmp_path / "wide.ckpt"


def _toml(text):
    def make(tmp_path, source_run):
        (tmp_path / "c.toml").write_text(text)
        return source_run / "final.ckpt"
    return make


REFUSED = {  # case: (what makes the init file, extra flags, expected text in the one line)
    "preset flag": (None, ["--preset", "small"], "--preset cannot be given with --init-from"),
    "shape flag": (None, ["--n-embd", "16"], "--n-embd cannot be given with --init-from"),
    "vocab flag": (None, ["--vocab-size", "300"], "--vocab-size cannot be given with --init-from"),
    "with resume": (None, ["--resume", "x.ckpt"], "--init-from: init_from starts a new run"),
    "block too short": (None, ["--seq-len", "32"], "--seq-len: seq_len 32 exceeds block_size 16 of init_from"),
    "config vocab": (_toml("vocab_size = 512\n"), ["--config", "{tmp}/c.toml"],
                     "c.toml: vocab_size 512, which contradicts init_from"),
    "config preset": (_toml('preset = "small"\n'), ["--config", "{tmp}/c.toml"],
                      "c.toml: preset 'small' has n_embd 256, which contradicts init_from"),
    "config shape": (_toml("n_layers = 2\n"), ["--config", "{tmp}/c.toml"],
                     "c.toml: n_layers 2, which contradicts init_from"),
    "no tokenizer": (_no_tokenizer, [], "has no tokenizer"),
    "vocab larger than tokenizer": (_vocab_larger_than_tokenizer, [],
                                    "the model's vocab_size 320 differs from its tokenizer's 300 tokens"),
    "missing file": (lambda tmp, src: tmp / "nope.ckpt", [], "nope.ckpt"),
    "not a model directory": (lambda tmp, src: tmp, [], "config.json: missing"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused(capsys, corpus_file, source_run, tmp_path, case):
    """Each refusal: one line naming the value (and the file), exit 1, no run directory."""
    make, extra, expected = REFUSED[case]
    init = source_run / "final.ckpt" if make is None else make(tmp_path, source_run)
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    code, _, err = finetune(capsys, corpus_file, init, tmp_path / "ft", *extra)
    assert code != 0
    assert err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err and not (tmp_path / "ft").exists()


def test_resume_of_an_inference_checkpoint_points_to_init_from(capsys, source_run, tmp_path):
    """An imported (inference) checkpoint cannot be resumed: the refusal names the way in."""
    ckpt = load_checkpoint(source_run / "final.ckpt")
    save_checkpoint(tmp_path / "inference.ckpt", Checkpoint(ckpt.config, ckpt.params, tokenizer=ckpt.tokenizer))
    code, _, err = feste(capsys, "-q", "train", "--resume", tmp_path / "inference.ckpt", "--impl", "reference")
    assert code == 1 and err.count("\n") == 1
    assert "inference.ckpt is an inference-only checkpoint" in err and "--init-from" in err


def test_api(corpus_file, tmp_path):
    """train(TrainSettings(init_from=...)) reads the file, fills the sizes, and refuses a
    vocab_size (the default 512 included) other than the model's."""
    tok = Tokenizer.train(corpus_file.read_bytes(), 280)
    config = Config(vocab_size=280, n_embd=8, n_heads=2, n_layers=1, block_size=12)
    save_checkpoint(tmp_path / "m.ckpt", Checkpoint(config, init_params(config, seed=1), tokenizer=tok))
    base = dict(init_from=str(tmp_path / "m.ckpt"), corpus=str(corpus_file), batch_size=2, seq_len=8,
                max_steps=2, eval_batches=1)
    with pytest.raises(ValueError, match="vocab_size 512 contradicts init_from .*m.ckpt, whose model has "
                                         "vocab_size 280"):
        train(TrainSettings(**base, run_dir=str(tmp_path / "r0")), progress=False, printer=lambda line: None)
    assert not (tmp_path / "r0").exists()
    result = train(TrainSettings(**base, vocab_size=280, run_dir=str(tmp_path / "r1")), progress=False,
                   printer=lambda line: None)
    assert result.step == 2 and result.config == config and result.tokenizer.to_json() == tok.to_json()
    with pytest.raises(ValueError, match="config.json: missing"):  # a directory is a Hugging Face one
        train(TrainSettings(**{**base, "init_from": str(tmp_path)}, vocab_size=280), progress=False)
