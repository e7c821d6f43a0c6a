"""The trainer (SPEC §training).

Oracles: a hand-written loop over the contract functions (the trainer must
make exactly those updates, bit for bit); an uninterrupted run against the
same run stopped, saved and resumed (same parameter bytes, same logged
numbers); lr = 0 (the parameters provably never change, so early stopping
must fire at a step computed by hand); an implementation wrapper that makes
the gradient non-finite at a chosen step.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import signal
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from conformance.assertions import assert_bitwise
from conformance.fixtures import terminal_stderr
from conformance.tolerances import LEARNING_MIN_DROP
from feste.trainer import TrainingDiverged, TrainingInterrupted, TrainSettings, train  # the harness that drives the implementation

V = 256  # byte-sized vocab: no tokenizer needed for synthetic token streams


def markov_tokens(n=6000, seed=0):
    """A low-entropy token stream: each token is followed by one of two successors."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, V, size=(V, 2))
    out = np.empty(n, dtype=np.int64)
    out[0] = 0
    choices = rng.integers(0, 2, size=n)
    for i in range(1, n):
        out[i] = table[out[i - 1], choices[i]]
    return out


TOKENS = markov_tokens()


def settings(impl, tmp_path, **kw):
    """A small model (C 16, L 1, block 16) on B=4, T=8: a few ms per step."""
    base = dict(preset="tiny", n_embd=16, n_heads=2, n_layers=1, block_size=16, vocab_size=V,
                batch_size=4, seq_len=8, max_steps=20, lr=3e-3, warmup_steps=3, eval_interval=5,
                eval_batches=2, sample_interval=10, checkpoint_interval=0, run_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainSettings(**base)


def run(impl, s, tokens=TOKENS, tokenizer=None, **kw):
    return train(s, tokens=tokens, tokenizer=tokenizer, impl=impl.module, progress=False,
                      printer=lambda line: None, **kw)


def byte_tokenizer(impl):
    """The tokenizer of the 256 byte tokens (no merges): TOKENS are its ids."""
    tokenizer = impl.Tokenizer.train(b"any text", V)
    assert tokenizer.vocab_size == V
    return tokenizer


def log_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        del r["elapsed_seconds"]  # wall time is the only column allowed to differ
    return rows


def hand_written_loop(impl, s, steps, gradient):
    """The trainer's updates written out: init_params(seed) and a fresh AdamW state, then for
    step 0 .. steps-1: random_batch(seed, step) -> gradient(params, x, y) -> clip ->
    adamw_step(learning_rate(step) of the settings' schedule). (params, state) after `steps`."""
    params = impl.init_params(s.model_config(), seed=s.seed)
    state = impl.adamw_init(params)
    train_tokens, _ = impl.train_val_split(TOKENS, s.val_fraction)
    for step in range(steps):
        x, y = impl.random_batch(train_tokens, s.batch_size, s.seq_len, s.seed, step)
        grads = gradient(params, x, y)
        impl.clip_grad_norm(grads, s.grad_clip)
        lr = impl.learning_rate(step, s.lr, s.warmup_steps, s.max_steps, s.schedule, s.min_lr)
        impl.adamw_step(params, grads, state, lr, s.beta1, s.beta2, s.eps, s.weight_decay)
    return params, state


def test_first_steps_match_a_hand_written_loop(impl, tmp_path):
    """init -> batch(seed, s) -> forward/backward -> clip -> adamw(lr(s)): 3 steps, bitwise."""
    s = settings(impl, tmp_path, max_steps=3, warmup_steps=2, schedule="cosine", min_lr=1e-4, grad_clip=0.5)
    result = run(impl, s)

    def gradient(params, x, y):
        _, _, cache = impl.forward(params, x, y)
        return impl.backward(params, cache)

    params, state = hand_written_loop(impl, s, 3, gradient)
    assert result.step == 3 and state.step == 3
    assert_bitwise("params after 3 steps", result.params.data, params.data)
    assert_bitwise("m after 3 steps", result.optimizer.m.data, state.m.data)


def test_dropout_steps_match_a_hand_written_loop_and_evaluate_without_dropout(impl, tmp_path):
    """With dropout 0.3, step s draws the masks of DropoutKey(seed, s) (SPEC §dropout, §trainer): 3 steps of a hand-written loop give the trainer's bytes; the
    logged validation losses are those of forward without a key (no dropout
    in evaluation), and the checkpoints' config carries the rate."""
    s = settings(impl, tmp_path, max_steps=3, warmup_steps=1, eval_interval=1, dropout=0.3, seed=5)
    result = run(impl, s)
    config = s.model_config()
    assert config.dropout_rate == float(np.float32(0.3))
    params = impl.init_params(config, seed=s.seed)
    state = impl.adamw_init(params)
    train_tokens, val_tokens = impl.train_val_split(TOKENS, s.val_fraction)
    n = s.eval_batches * s.batch_size
    windows = [(val_tokens[w * 8:w * 8 + 8], val_tokens[w * 8 + 1:w * 8 + 9]) for w in range(n)]
    x_val, y_val = (np.array([w[i] for w in windows], dtype=np.int64) for i in (0, 1))
    for step in range(4):
        val = np.mean([impl.forward(params, x_val[i:i + 4], y_val[i:i + 4])[1] for i in range(0, n, 4)])
        assert result.history[step]["val_loss"] == pytest.approx(val, rel=1e-12), (
            f"step {step}: logged validation loss {result.history[step]['val_loss']} is not the loss "
            f"without dropout {val}")
        if step == 3:
            break
        x, y = impl.random_batch(train_tokens, s.batch_size, s.seq_len, s.seed, step)
        _, loss, cache = impl.forward(params, x, y, dropout=impl.DropoutKey(s.seed, step))
        assert result.history[step]["train_loss"] == loss
        grads = impl.backward(params, cache)
        impl.clip_grad_norm(grads, s.grad_clip)
        lr = impl.learning_rate(step, s.lr, s.warmup_steps, s.max_steps)
        impl.adamw_step(params, grads, state, lr, s.beta1, s.beta2, s.eps, s.weight_decay)
    assert_bitwise("params after 3 steps with dropout", result.params.data, params.data)
    assert impl.load_checkpoint(tmp_path / "run" / "final.ckpt").config.dropout_rate == config.dropout_rate


@pytest.mark.parametrize("schedule, first_leg, dropout", [("constant", 10, 0.0), ("cosine", 7, 0.0),
                                                          ("cosine", 7, 0.2)])
def test_resume_continues_exactly(impl, tmp_path, schedule, first_leg, dropout):
    """N steps + save + resume + the rest == uninterrupted: parameter and moment
    bytes, and every logged number (7 is not a multiple of eval_interval 5, so
    the first leg's extra final row must disappear from the resumed log).
    With dropout the resumed run keeps the rate and draws the uninterrupted
    run's masks (a resume asking for another rate is refused:
    test_resume_refuses_settings_that_change_the_run)."""
    kw = dict(max_steps=20, schedule=schedule, min_lr=3e-4, dropout=dropout)
    full = run(impl, settings(impl, tmp_path / "a", **kw))
    s = settings(impl, tmp_path / "b", stop_at=first_leg, **kw)
    part = run(impl, s)
    assert part.step == first_leg and part.stop_reason == "stop_at"
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(part.checkpoints["final"])))
    assert resumed.config.dropout_rate == full.config.dropout_rate
    assert resumed.step == full.step == 20
    assert_bitwise("params", resumed.params.data, full.params.data)
    assert_bitwise("m", resumed.optimizer.m.data, full.optimizer.m.data)
    assert_bitwise("v", resumed.optimizer.v.data, full.optimizer.v.data)
    assert resumed.optimizer.step == full.optimizer.step == 20
    assert log_rows(tmp_path / "b" / "run" / "training_log.csv") == log_rows(tmp_path / "a" / "run" / "training_log.csv")
    assert (resumed.best_val_loss, resumed.best_val_step) == (full.best_val_loss, full.best_val_step)
    a = impl.load_checkpoint(tmp_path / "a" / "run" / "final.ckpt")
    b = impl.load_checkpoint(tmp_path / "b" / "run" / "final.ckpt")
    assert impl.checkpoint_to_bytes(a) == impl.checkpoint_to_bytes(b)


def test_resume_from_periodic_checkpoint_after_a_crash(impl, tmp_path):
    """A run 'crashes' at step 13 after latest.ckpt was written at step 10; resuming from
    latest.ckpt drops the log rows from step 10 on and redoes them identically."""
    full = run(impl, settings(impl, tmp_path / "a", checkpoint_interval=10))
    s = settings(impl, tmp_path / "b", checkpoint_interval=10, stop_at=13)
    run(impl, s)
    latest = tmp_path / "b" / "run" / "latest.ckpt"
    assert impl.load_checkpoint(latest).metadata["step"] == 10
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(latest)))
    assert_bitwise("params", resumed.params.data, full.params.data)
    assert log_rows(tmp_path / "b" / "run" / "training_log.csv") == log_rows(tmp_path / "a" / "run" / "training_log.csv")


def test_learns_and_logs(impl, tmp_path):
    """On a two-successor Markov stream (entropy ln 2 per token after the first),
    60 steps must take the validation loss at least LEARNING_MIN_DROP below step 0's."""
    s = settings(impl, tmp_path, max_steps=60, lr=1e-2, eval_interval=20, checkpoint_interval=20)
    result = run(impl, s)
    rows = log_rows(tmp_path / "run" / "training_log.csv")
    assert [int(r["step"]) for r in rows] == [0, 20, 40, 60]
    val = [float(r["val_loss"]) for r in rows]
    assert val[0] == pytest.approx(math.log(V), abs=0.1)
    assert val[-1] < val[0] - LEARNING_MIN_DROP, val
    assert [h["step"] for h in result.history] == [0, 20, 40, 60]
    # the header and the columns of SPEC §training; lr of row s is learning_rate(s)
    assert rows[1]["learning_rate"] == f"{impl.learning_rate(20, 1e-2, 3, 60):.6f}"
    for name in ("best.ckpt", "latest.ckpt", "final.ckpt", "run.json", "training_log.csv"):
        assert (tmp_path / "run" / name).exists(), name
    final = impl.load_checkpoint(tmp_path / "run" / "final.ckpt")
    assert final.optimizer is not None and final.optimizer.step == 60 and final.metadata["step"] == 60
    best = impl.load_checkpoint(tmp_path / "run" / "best.ckpt")
    regular = [(float(r["val_loss"]), int(r["step"])) for r in rows]
    assert best.metadata["best_val_step"] == min(regular)[1]
    assert best.metadata["step"] == best.metadata["best_val_step"]
    assert best.metadata["best_val_loss"] == pytest.approx(min(regular)[0], abs=5e-5)
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert doc["settings"]["max_steps"] == 60 and doc["config"]["n_embd"] == 16


def test_samples_every_sample_interval_and_at_the_end(impl, tmp_path):
    """SPEC §trainer: an evaluation at step s carries a sample when s %
    sample_interval == 0 or s == end: generate from sample_prompt with
    sample_temperature, sample_top_k and seed, decoded; the others none. The
    samples at step 0 and at the last step (which makes no update) are those
    of the initial and the final parameters."""
    tokenizer = byte_tokenizer(impl)
    s = settings(impl, tmp_path, max_steps=5, eval_interval=1, sample_interval=2, sample_tokens=6,
                 sample_prompt="To be", sample_temperature=0.8, sample_top_k=5, seed=3)
    result = run(impl, s, tokenizer=tokenizer)
    samples = {h["step"]: h["sample"] for h in result.history}
    assert [step for step, text in samples.items() if text] == [0, 2, 4, 5], samples
    prompt = np.asarray(tokenizer.encode("To be"), dtype=np.int64)

    def sample(params):
        return tokenizer.decode(impl.generate(params, prompt, 6, 0.8, 5, 3))

    assert samples[0] == sample(impl.init_params(s.model_config(), seed=s.seed))
    assert samples[5] == sample(result.params)


def test_a_one_token_prompt_is_sampled(impl, tmp_path):
    """SPEC §trainer: the sample is `generate` from `sample_prompt`; a prompt of
    a single token is a prompt like any other (only an empty one gives none)."""
    tokenizer = byte_tokenizer(impl)
    prompt = np.asarray(tokenizer.encode("T"), dtype=np.int64)
    assert prompt.size == 1
    s = settings(impl, tmp_path, max_steps=1, eval_interval=1, sample_interval=1, sample_tokens=4,
                 sample_prompt="T", sample_temperature=0.8, sample_top_k=5, seed=3)
    result = run(impl, s, tokenizer=tokenizer)
    samples = {h["step"]: h["sample"] for h in result.history}
    want = tokenizer.decode(impl.generate(impl.init_params(s.model_config(), seed=s.seed), prompt, 4, 0.8, 5, 3))
    assert samples[0] == want and want.startswith("T"), samples


def test_early_stopping_with_patience(impl, tmp_path):
    """lr = 0: every update is p*1 - 0*..., so params never change and the validation
    loss repeats exactly. Evals at 0 (the best), 5 and 10 (no improvement): with
    patience 2 training stops at step 10."""
    s = settings(impl, tmp_path, lr=0.0, patience=2, max_steps=40)
    result = run(impl, s)
    assert result.stop_reason == "early_stopping"
    assert result.step == 10 and result.best_val_step == 0
    assert impl.load_checkpoint(tmp_path / "run" / "final.ckpt").metadata["step"] == 10
    assert_bitwise("params with lr 0", result.params.data, impl.init_params(s.model_config(), seed=0).data)


def test_patience_counts_across_a_resume(impl, tmp_path):
    """lr = 0, eval every 5, patience 3: evaluations at 5, 10, 15 do not improve on
    step 0, so training stops at 15, also when split at step 7 and resumed (the
    evaluation at 5 must still count after the resume)."""
    whole = run(impl, settings(impl, tmp_path / "a", lr=0.0, patience=3, max_steps=40))
    assert (whole.stop_reason, whole.step) == ("early_stopping", 15)
    s = settings(impl, tmp_path / "b", lr=0.0, patience=3, max_steps=40, stop_at=7)
    first = run(impl, s)
    assert first.step == 7
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(first.checkpoints["final"])))
    assert (resumed.stop_reason, resumed.step) == ("early_stopping", 15)


def test_non_finite_gradient_stops_and_keeps_last_good_checkpoint(impl, tmp_path):
    """A wrapper implementation poisons the gradients of the 8th backward (step 7):
    train raises naming the step and the last checkpoint written (latest.ckpt or
    best.ckpt, both hold step 5), which stays loadable; no final.ckpt."""
    wrapped = _wrapped(impl, backward=_nan_gradients_at(impl, 8))
    s = settings(impl, tmp_path, checkpoint_interval=5)
    with pytest.raises(TrainingDiverged) as info:
        train(s, tokens=TOKENS, impl=wrapped, progress=False, printer=lambda line: None)
    message = str(info.value)
    assert "step 7" in message, message
    named = message.split("Last good checkpoint (its step gave a finite loss): ", 1)[-1]  # a path may hold spaces
    assert named.endswith(("latest.ckpt", "best.ckpt")), message
    assert impl.load_checkpoint(named).metadata["step"] == 5
    assert impl.load_checkpoint(tmp_path / "run" / "latest.ckpt").metadata["step"] == 5
    assert not (tmp_path / "run" / "final.ckpt").exists()


@pytest.mark.parametrize("kw, word", [
    (dict(batch_size=0), "batch_size"), (dict(lr=-1.0), "lr"), (dict(schedule="linear"), "schedule"),
    (dict(seq_len=32), "seq_len"), (dict(val_fraction=1.5), "val_fraction"), (dict(preset="huge"), "preset"),
    (dict(stop_at=50), "stop_at"), (dict(n_heads=3), "n_heads"), (dict(eval_interval=0), "eval_interval"),
    (dict(dropout=1.0), "dropout"), (dict(dropout=-0.1), "dropout"), (dict(dropout=float("nan")), "dropout"),
    (dict(dropout=0.1, seed=2**64), "seed"),
])
def test_bad_settings_are_named(impl, tmp_path, kw, word):
    with pytest.raises(ValueError, match=word):
        run(impl, settings(impl, tmp_path, **kw))


def test_bad_data_and_resume_file(impl, tmp_path):
    with pytest.raises(ValueError, match="tokens"):
        run(impl, settings(impl, tmp_path), tokens=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="vocab_size"):
        run(impl, settings(impl, tmp_path), tokens=np.full(500, 300))
    config = settings(impl, tmp_path).model_config()
    inference = tmp_path / "inference.ckpt"
    impl.save_checkpoint(inference, impl.Checkpoint(config, impl.init_params(config)))
    with pytest.raises(ValueError, match="inference-only"):
        run(impl, settings(impl, tmp_path, resume=str(inference)))
    with pytest.raises(impl.CheckpointError):
        run(impl, settings(impl, tmp_path, resume=str(tmp_path / "missing.ckpt")))


def test_a_training_split_too_short_for_one_window_is_refused_before_writing(impl, tmp_path):
    """SPEC §trainer: a training split shorter than seq_len + 1 tokens is a
    ValueError naming both counts, raised before the run writes anything (the
    directory it created goes again). 20 tokens, val_fraction 0.6: 8 train
    tokens for T = 8; 9 are enough."""
    s = settings(impl, tmp_path, val_fraction=0.6, max_steps=2, eval_batches=1)
    with pytest.raises(ValueError, match=r"the training split has 8 tokens; need at least seq_len \+ 1 = 9"):
        run(impl, s, tokens=TOKENS[:20])
    assert not (tmp_path / "run").exists()
    run(impl, dataclasses.replace(s, val_fraction=0.55), tokens=TOKENS[:20])  # int(20 * 0.45) = 9


def test_a_checkpoint_whose_adamw_betas_differ_from_the_run_is_refused(impl, tmp_path):
    """SPEC §trainer: beta1, beta2 and eps are fixed for a run's life, "also
    checked against the checkpoint's optimizer header": a checkpoint of the run
    whose header says another beta1 is refused (ValueError naming it)."""
    s = settings(impl, tmp_path, max_steps=4, stop_at=2)
    first = run(impl, s)
    path = first.checkpoints["final"]
    ckpt = impl.load_checkpoint(path)
    ckpt.optimizer.beta1 = 0.5
    impl.save_checkpoint(path, ckpt)
    with pytest.raises(ValueError, match=r"AdamW beta1 0\.5 in the checkpoint differs from the run's 0\.9"):
        run(impl, dataclasses.replace(s, stop_at=None, resume=str(path)))


# --- the run directory belongs to one run (SPEC §run-directories) -----------------------------------
def run_files(run_dir):
    """name -> bytes of every file in a run directory (the lock file's holder text aside)."""
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file() and p.name != ".lock"}


def test_new_run_refuses_a_non_empty_directory_it_did_not_create(impl, tmp_path):
    """A directory holding anything (here a notes file) is not taken by a new run;
    an existing empty one is; --overwrite deletes the run files of the old run
    (a best.ckpt of another model must not survive) and keeps other files."""
    s = settings(impl, tmp_path, max_steps=4, eval_interval=2)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run(impl, s)  # empty and existing: fine
    before = run_files(run_dir)
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match=f"{run_dir}.*not empty"):
        run(impl, settings(impl, tmp_path, max_steps=4, eval_interval=2, seed=1))
    assert run_files(run_dir) == {**before, "notes.txt": b"mine"}
    other = run(impl, settings(impl, tmp_path, max_steps=3, eval_interval=3, n_embd=32, overwrite=True))
    assert (run_dir / "notes.txt").read_text() == "mine"
    for name in ("best.ckpt", "final.ckpt"):  # the new run's (C 32), not a mix with the old one's (C 16)
        assert impl.load_checkpoint(run_dir / name).config.n_embd == 32
    assert_bitwise("final params", impl.load_checkpoint(run_dir / "final.ckpt").params.data, other.params.data)
    assert [int(r["step"]) for r in log_rows(run_dir / "training_log.csv")] == [0, 3]


def test_default_run_directory_is_new_for_each_run(impl, tmp_path, monkeypatch):
    """run_dir None: runs/<preset>-<YYYYmmdd-HHMMSS>, and a second run started in the
    same second gets another directory (suffix -2), never the first one's."""
    monkeypatch.chdir(tmp_path)
    s = settings(impl, tmp_path, max_steps=1, eval_interval=1, run_dir=None)
    first, second = run(impl, s), run(impl, s)
    assert first.run_dir != second.run_dir
    for result in (first, second):
        assert result.run_dir.parent == Path("runs")
        assert re.fullmatch(r"tiny-\d{8}-\d{6}(-\d+)?", result.run_dir.name), result.run_dir
        assert (result.run_dir / "final.ckpt").is_file()


def test_a_locked_run_directory_stops_a_second_trainer_at_once(impl, tmp_path):
    """Another process holds flock(LOCK_EX) on RUN_DIR/.lock (here: this test, with the
    holder's JSON written as SPEC §run-directories says): train raises naming the directory and
    the holder, and writes nothing; once the lock is released the run goes ahead."""
    import fcntl

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = {"pid": 424242, "host": "elsewhere", "started": "2024-01-02T03:04:05+0000"}
    with open(run_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(json.dumps(holder))
        lock.flush()
        with pytest.raises(RuntimeError) as info:
            run(impl, settings(impl, tmp_path, max_steps=2))
        message = str(info.value)
        for text in (str(run_dir), "in use", "pid 424242", "elsewhere", "2024-01-02T03:04:05"):
            assert text in message, message
        assert os.listdir(run_dir) == [".lock"]
    assert run(impl, settings(impl, tmp_path, max_steps=2)).step == 2


def test_resume_continues_only_its_own_run(impl, tmp_path):
    """A checkpoint moved away from its run (no run.json beside it)
    must not resume into some other directory; nor into the run directory of another
    run, whether its model differs (b) or not (c, only its lr differs): a checkpoint
    in its run's directory continues that run only, a moved one only the run whose
    log records its best validation loss (SPEC §run-directories). Refusals name both directories
    and write nothing (the lock files included)."""
    a = settings(impl, tmp_path / "a", max_steps=6, eval_interval=3)
    run(impl, a)
    moved = tmp_path / "moved.ckpt"
    moved.write_bytes((tmp_path / "a" / "run" / "final.ckpt").read_bytes())
    b = settings(impl, tmp_path / "b", max_steps=6, eval_interval=3, n_embd=32)
    run(impl, b)
    c = settings(impl, tmp_path / "c", max_steps=6, eval_interval=3, lr=1e-2)
    run(impl, c)

    def files():
        return {d: {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / d / "run").iterdir()}
                for d in ("a", "b", "c")}

    before = files()
    with pytest.raises(RuntimeError, match="run.json"):
        run(impl, dataclasses.replace(a, run_dir=None, resume=str(moved), max_steps=8))
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c", "moved.ckpt"]
    own = str(tmp_path / "a" / "run" / "final.ckpt")
    for resume, other in ((moved, b), (moved, c), (own, b), (own, c)):
        with pytest.raises(RuntimeError) as info:
            run(impl, dataclasses.replace(a, run_dir=other.run_dir, resume=str(resume), max_steps=8))
        for name in (str(Path(resume).parent), other.run_dir):
            assert name in str(info.value), str(info.value)
        assert files() == before
    # with its own run directory named explicitly, the moved checkpoint continues run a
    resumed = run(impl, dataclasses.replace(a, run_dir=a.run_dir, resume=str(moved), max_steps=8))
    assert resumed.step == 8


@pytest.mark.parametrize("change", [
    dict(preset="small"), dict(n_embd=32), dict(n_layers=2), dict(vocab_size=V + 4), dict(seed=1),
    dict(batch_size=3), dict(seq_len=6), dict(val_fraction=0.2), dict(eval_batches=3), dict(beta2=0.99),
    dict(dropout=0.1),
])
def test_resume_refuses_settings_that_change_the_run(impl, tmp_path, change):
    """`--resume ... --preset small` used to keep the tiny model and
    record "small". Model, data, batch order, AdamW moments and the validation set
    are fixed for the run's life: ValueError naming the setting; nothing written."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    before = run_files(tmp_path / "run")
    name = next(iter(change))
    with pytest.raises(ValueError, match=f"{name} "):
        run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt"), **change))
    assert run_files(tmp_path / "run") == before


def test_resume_may_change_length_schedule_and_reporting(impl, tmp_path):
    """max_steps, lr, eval/sample/checkpoint intervals, patience may change on resume
    (SPEC §trainer); run.json records the change with the step it took effect."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt"),
                                            max_steps=10, lr=1e-3, eval_interval=5, checkpoint_interval=5,
                                            patience=3))
    assert resumed.step == 10
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert doc["settings"]["max_steps"] == 10 and doc["settings"]["lr"] == 1e-3
    (resume,) = doc["resumes"]
    assert resume["step"] == 4 and resume["changed"]["lr"] == [3e-3, 1e-3]
    assert set(resume["changed"]) == {"max_steps", "lr", "eval_interval", "checkpoint_interval", "patience"}


def test_resume_refuses_a_last_step_before_the_checkpoint(impl, tmp_path):
    """SPEC §trainer: a resume whose last step (stop_at, else max_steps) comes
    before the checkpoint's step is refused, naming both steps; nothing is
    written (no line printed: it must not train on past the end)."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=6)
    run(impl, s)
    before = run_files(tmp_path / "run")

    def printer(line):
        raise AssertionError(f"a resume that must be refused printed {line!r}")

    with pytest.raises(ValueError, match="step 6, beyond the last step 4"):
        train(dataclasses.replace(s, stop_at=4, resume=str(tmp_path / "run" / "final.ckpt")), tokens=TOKENS,
              impl=impl.module, progress=False, printer=printer)
    assert run_files(tmp_path / "run") == before


def test_resume_takes_the_tokenizer_from_the_checkpoint(impl, tmp_path):
    """SPEC §trainer: a resumed run's tokenizer comes from the checkpoint (tokens
    given, no tokenizer): its checkpoints carry it and its samples use it."""
    tokenizer = byte_tokenizer(impl)
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, sample_interval=4, stop_at=4)
    run(impl, s, tokenizer=tokenizer)
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt")))
    assert resumed.tokenizer is not None and resumed.tokenizer.to_json() == tokenizer.to_json()
    final = impl.load_checkpoint(tmp_path / "run" / "final.ckpt")
    assert final.tokenizer is not None and final.tokenizer.to_json() == tokenizer.to_json()
    assert all(h["sample"] for h in resumed.history), resumed.history


def test_run_json_records_every_resume(impl, tmp_path):
    """SPEC §trainer: run.json's `resumes` has one entry per resume, in order,
    and its start time is the run's first start; times are YYYY-MM-DDTHH:MM:SS."""
    s = settings(impl, tmp_path, max_steps=9, eval_interval=3, stop_at=3)
    run(impl, s)
    path = tmp_path / "run" / "run.json"
    started = json.loads(path.read_text())["started"]
    run(impl, dataclasses.replace(s, stop_at=6, resume=str(tmp_path / "run" / "final.ckpt")))
    run(impl, dataclasses.replace(s, stop_at=None, lr=1e-3, resume=str(tmp_path / "run" / "final.ckpt")))
    doc = json.loads(path.read_text())
    assert [r["step"] for r in doc["resumes"]] == [3, 6], doc["resumes"]
    assert [r["changed"] for r in doc["resumes"]] == [{}, {"lr": [3e-3, 1e-3]}]
    assert doc["started"] == started
    for when in [started] + [r["at"] for r in doc["resumes"]]:  # local time, YYYY-MM-DDTHH:MM:SS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", when), when


def test_a_fine_tuning_run_keeps_init_from_across_resumes(impl, tmp_path):
    """SPEC §trainer: a run started from given weights (init_from) records them
    in run.json, and a resume (which cannot give init_from) keeps that record."""
    run(impl, settings(impl, tmp_path / "base", max_steps=3, eval_interval=3), tokenizer=byte_tokenizer(impl))
    source = str(tmp_path / "base" / "run" / "final.ckpt")
    s = settings(impl, tmp_path / "tune", max_steps=6, eval_interval=3, stop_at=3, init_from=source)
    run(impl, s)
    path = tmp_path / "tune" / "run" / "run.json"
    assert json.loads(path.read_text())["settings"]["init_from"] == source
    run(impl, dataclasses.replace(s, stop_at=None, init_from=None, resume=str(tmp_path / "tune" / "run" / "final.ckpt")))
    doc = json.loads(path.read_text())
    assert doc["settings"]["init_from"] == source and [r["step"] for r in doc["resumes"]] == [3]


def test_progress_false_shows_no_bar_even_on_a_terminal(impl, tmp_path, monkeypatch):
    """SPEC §trainer, §command-line: train's progress bar appears on stderr when it
    is a terminal and progress is on; progress=False (the command line's -q) shows none."""
    shown = {}
    for progress in (True, False):
        terminal = terminal_stderr(monkeypatch)
        train(settings(impl, tmp_path / str(progress), max_steps=3, eval_interval=3), tokens=TOKENS,
              impl=impl.module, progress=progress, printer=lambda line: None)
        shown[progress] = terminal.getvalue()
    assert "step" in shown[True], shown  # the bar, so the fake terminal is seen as one
    assert shown[False] == "", shown


def test_resume_refuses_other_tokens(impl, tmp_path):
    """The token stream is part of the run (run.json records its sha256)."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    with pytest.raises(ValueError, match="tokens differ"):
        run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt")),
            tokens=markov_tokens(seed=1))


def test_last_good_checkpoint_resumes_with_a_finite_loss(impl, tmp_path):
    """A divergence, scaled down: lr 1e3 without warmup and a checkpoint
    every step diverges; the checkpoint the error names must give a finite loss at
    its own step when resumed (with lr 1e-4), i.e. latest.ckpt is written only once the
    state it holds has produced a finite loss."""
    s = settings(impl, tmp_path, lr=1e3, warmup_steps=0, checkpoint_interval=1, max_steps=12, eval_interval=1,
                 sample_interval=100)
    with pytest.raises(TrainingDiverged) as info:
        run(impl, s)
    good = info.value.last_checkpoint
    assert good is not None and good.endswith("latest.ckpt"), str(info.value)
    k = impl.load_checkpoint(good).metadata["step"]
    assert 0 < k < info.value.step
    resumed = run(impl, dataclasses.replace(s, lr=1e-4, resume=good, stop_at=k + 1))
    assert resumed.history[0]["step"] == k and math.isfinite(resumed.history[0]["train_loss"])
    assert resumed.step == k + 1


def test_non_finite_parameters_after_an_update_stop_the_run(impl, tmp_path):
    """An update that leaves an inf in the parameters (a wrapper's adamw_step) stops the
    run as a divergence at the next step, naming a checkpoint written before it."""
    wrapped = _wrapped(impl, adamw_step=_inf_parameters_after(impl, 6))
    with pytest.raises(TrainingDiverged, match="step 6: the parameters after update 5") as info:
        train(settings(impl, tmp_path, checkpoint_interval=5), tokens=TOKENS, impl=wrapped, progress=False,
                   printer=lambda line: None)
    assert impl.load_checkpoint(info.value.last_checkpoint).metadata["step"] == 5


def test_stale_temporary_files_are_removed_and_only_those(impl, tmp_path):
    """A killed save leaves .latest.ckpt.XXXXXXXX.tmp (8 lower-case hex digits); the
    next start in that run directory removes those of the run's own files and
    leaves every other name alone."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    run_dir = tmp_path / "run"
    ours = [".latest.ckpt.0a1b2c3d.tmp", ".final.ckpt.ffffffff.tmp", ".run.json.12345678.tmp"]
    others = [".latest.ckpt.tmp", ".latest.ckpt.0A1B2C3D.tmp", ".notes.txt.0a1b2c3d.tmp", "latest.ckpt.0a1b2c3d.tmp",
              ".latest.ckpt.0a1b2c3.tmp", "x.tmp"]
    for name in ours + others:
        (run_dir / name).write_bytes(b"partial")
    run(impl, dataclasses.replace(s, stop_at=None, resume=str(run_dir / "final.ckpt")))
    names = set(os.listdir(run_dir))
    assert not names & set(ours)
    assert set(others) <= names


def test_every_step_is_recorded_and_time_continues_across_a_resume(impl, tmp_path):
    """steps.csv has one row per step (step, elapsed, lr, train loss, grad norm,
    tokens/s) that matches the evaluation rows; after a resume its elapsed time goes
    on from where the first leg stopped instead of restarting."""
    s = settings(impl, tmp_path, max_steps=12, eval_interval=4, stop_at=6)
    run(impl, s)
    path = tmp_path / "run" / "steps.csv"
    with open(path, newline="") as f:
        first = list(csv.DictReader(f))
    assert [int(r["step"]) for r in first] == list(range(7))
    run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt")))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "elapsed_seconds", "learning_rate", "train_loss", "grad_norm", "tokens_per_second"]
    assert [int(r["step"]) for r in rows] == list(range(13))
    assert rows[:6] == first[:6]  # the resumed run redoes step 6 (the checkpoint holds 6 updates)
    elapsed = [float(r["elapsed_seconds"]) for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[6] >= elapsed[5]
    for r in rows:
        step = int(r["step"])
        assert float(r["learning_rate"]) == pytest.approx(impl.learning_rate(step, s.lr, s.warmup_steps, 12), rel=1e-7)
        assert math.isfinite(float(r["train_loss"])) and float(r["tokens_per_second"]) > 0
    log = {int(r["step"]): r for r in log_rows(tmp_path / "run" / "training_log.csv")}
    for r in rows:
        if int(r["step"]) in log:
            assert f"{float(r['train_loss']):.4f}" == log[int(r["step"])]["train_loss"]
            assert f"{float(r['grad_norm']):.4f}" == log[int(r["step"])]["grad_norm"]
    elapsed_log = [float(r["elapsed_seconds"]) for r in csv.DictReader(open(tmp_path / "run" / "training_log.csv"))]
    assert elapsed_log == sorted(elapsed_log)


def test_the_logged_learning_rate_follows_the_cosine_schedule_to_its_floor(impl, tmp_path):
    """SPEC §trainer: step s uses learning_rate(s, lr, warmup_steps, max_steps,
    schedule, min_lr), which the training log records (§csv-log); the last step
    is at the cosine floor min_lr."""
    s = settings(impl, tmp_path, max_steps=6, warmup_steps=2, schedule="cosine", min_lr=1e-3, eval_interval=1)
    run(impl, s)
    rows = log_rows(tmp_path / "run" / "training_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(7))
    for r in rows:
        want = impl.learning_rate(int(r["step"]), s.lr, s.warmup_steps, s.max_steps, s.schedule, s.min_lr)
        assert r["learning_rate"] == f"{want:.6f}", r  # SPEC §csv-log: {lr:.6f}
    assert rows[-1]["learning_rate"] == f"{s.min_lr:.6f}"


def test_latest_is_not_written_at_the_step_a_run_starts_from(impl, tmp_path):
    """SPEC §trainer: latest.ckpt is written at a step s that checkpoint_interval
    divides and s > start: a fresh run (start 0) shorter than the interval writes none."""
    result = run(impl, settings(impl, tmp_path, max_steps=3, eval_interval=3, checkpoint_interval=5))
    assert not (tmp_path / "run" / "latest.ckpt").exists()
    assert "latest" not in result.checkpoints and (tmp_path / "run" / "final.ckpt").exists()


def test_a_divergence_before_any_checkpoint_says_none_was_written(impl, tmp_path):
    """SPEC §trainer: the divergence message names the last good checkpoint, else
    (a fresh run) says that none was written."""
    wrapped = _wrapped(impl, backward=_nan_gradients_at(impl))
    with pytest.raises(TrainingDiverged) as info:
        train(settings(impl, tmp_path), tokens=TOKENS, impl=wrapped, progress=False, printer=lambda line: None)
    assert info.value.step == 0 and info.value.last_checkpoint is None
    assert "none written" in str(info.value), str(info.value)


def _wrapped(impl, **replace):
    wrapped = types.SimpleNamespace(**{n: getattr(impl.module, n) for n in dir(impl.module) if not n.startswith("_")})
    for name, fn in replace.items():
        setattr(wrapped, name, fn)
    return wrapped


def _nan_gradients_at(impl, call=None):
    """A backward whose `call`-th call (from 1; None: every call) returns gradients holding a nan."""
    calls = [0]

    def backward(params, cache, **kw):
        grads = impl.module.backward(params, cache, **kw)
        calls[0] += 1
        if call is None or calls[0] == call:
            grads.data[3] = np.nan
        return grads

    return backward


def _inf_parameters_after(impl, call):
    """An adamw_step whose `call`-th call (from 1) leaves an inf in the parameters."""
    calls = [0]

    def adamw_step(params, grads, state, *args):
        impl.module.adamw_step(params, grads, state, *args)
        calls[0] += 1
        if calls[0] == call:
            params.data[0] = np.inf

    return adamw_step


@pytest.fixture
def sigterm_default():
    """SIGTERM at its default disposition while the test runs (train leaves an inherited
    SIG_IGN alone), in the main thread, where signal handlers exist."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers exist only in the main thread")
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_during_setup_stops_at_once_with_nothing_to_resume(impl, tmp_path, sigterm_default):
    """SPEC §trainer: during setup a signal stops at once: TrainingInterrupted with
    the signal, no step and, for a fresh run, no checkpoint (nothing to resume); the
    run directory this call created is removed again."""
    def init_params(*args, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        return impl.module.init_params(*args, **kw)

    with pytest.raises(TrainingInterrupted) as info:
        train(settings(impl, tmp_path), tokens=TOKENS, impl=_wrapped(impl, init_params=init_params),
              progress=False, printer=lambda line: None)
    exc = info.value
    assert (exc.signum, exc.step, exc.checkpoint, exc.exit_code) == (signal.SIGTERM, None, None, 143), str(exc)
    assert str(exc) == "stopped by SIGTERM before training started (nothing to resume)"
    assert not (tmp_path / "run").exists()


def _forced_second_signal(impl, clock=None, gap=1.2):
    """adamw_step sending SIGTERM to this process after the call's first update (the
    run records it, to stop at the next step's boundary), and forward sending a
    second one `gap` seconds later, in that next step's forward: more than a second
    stops the run at once. The gap is slept, or, with `clock` (the monotonic clock
    set by hand, a one-item list), the clock goes from 1000 s to 1000 s + gap: how
    far apart the two are is then the test's choice, not the machine's."""
    sent = []

    def adamw_step(*args, **kw):
        impl.module.adamw_step(*args, **kw)
        if not sent:
            sent.append(1)
            if clock is not None:
                clock[0] = 1000.0
            os.kill(os.getpid(), signal.SIGTERM)

    def forward(*args, **kw):
        if len(sent) == 1:
            sent.append(2)
            if clock is None:
                time.sleep(gap)
            else:
                clock[0] = 1000.0 + gap
            os.kill(os.getpid(), signal.SIGTERM)
        return impl.module.forward(*args, **kw)

    return adamw_step, forward


def test_a_forced_second_signal_names_the_step_and_the_last_good_checkpoint(impl, tmp_path, sigterm_default):
    """SPEC §trainer: a second signal at least one second after the first stops at
    once, abandoning the step in progress; TrainingInterrupted carries that step and
    the newest checkpoint written (here best.ckpt of step 0), which resumes the run."""
    adamw_step, forward = _forced_second_signal(impl)  # after update 0, then in step 1's forward
    s = settings(impl, tmp_path, eval_interval=1)
    with pytest.raises(TrainingInterrupted) as info:
        train(s, tokens=TOKENS, impl=_wrapped(impl, adamw_step=adamw_step, forward=forward),
              progress=False, printer=lambda line: None)
    exc = info.value
    assert (exc.signum, exc.step) == (signal.SIGTERM, 1), str(exc)
    assert exc.checkpoint == str(tmp_path / "run" / "best.ckpt"), str(exc)
    assert impl.load_checkpoint(exc.checkpoint).metadata["step"] == 0


def _first_signal_after_update_0(impl):
    """adamw_step sending SIGTERM to this process once, after update 0: the run
    records it and stops at step 1's boundary."""
    sent = []

    def adamw_step(*args, **kw):
        impl.module.adamw_step(*args, **kw)
        if not sent:
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)
    return adamw_step


def test_a_signal_stops_at_the_next_step_boundary_with_latest_written(impl, tmp_path, sigterm_default):
    """SPEC §trainer: the first signal during the loop stops the run at the next
    step boundary, s = 1 here, after its evaluation (which wrote best.ckpt of that
    same step) and before update 1: latest.ckpt holds the state after 1 update, and
    TrainingInterrupted says so ("stopped by SIGTERM at step 1: RUN/latest.ckpt
    holds the state after 1 updates") and carries the signal, the step and that file."""
    s = settings(impl, tmp_path, eval_interval=1, warmup_steps=0)
    with pytest.raises(TrainingInterrupted) as info:
        train(s, tokens=TOKENS, impl=_wrapped(impl, adamw_step=_first_signal_after_update_0(impl)),
              progress=False, printer=lambda line: None)
    exc, latest = info.value, tmp_path / "run" / "latest.ckpt"
    assert str(exc) == f"stopped by SIGTERM at step 1: {latest} holds the state after 1 updates"
    assert (exc.signum, exc.step, exc.checkpoint, exc.exit_code) == (signal.SIGTERM, 1, str(latest), 143)
    assert impl.load_checkpoint(tmp_path / "run" / "best.ckpt").metadata["step"] == 1  # a best of the same step
    assert impl.load_checkpoint(latest).metadata["step"] == 1


def _second_signal_at_the_stops_save(monkeypatch):
    """The trainer's save_checkpoint sending a second SIGTERM, more than a second after
    the first, as the stop starts writing latest.ckpt."""
    import feste.trainer

    real_save = feste.trainer.save_checkpoint

    def save_checkpoint(path, checkpoint):
        if Path(path).name == "latest.ckpt":
            time.sleep(1.2)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_save(path, checkpoint)

    monkeypatch.setattr(feste.trainer, "save_checkpoint", save_checkpoint)


def test_a_second_signal_while_the_stop_saves_abandons_the_save(impl, tmp_path, sigterm_default, monkeypatch):
    """SPEC §trainer: a second signal, more than a second after the first, while
    the stop writes latest.ckpt abandons that save: "stopped by SIGTERM at step 1
    while writing latest.ckpt (abandoned); RUN/best.ckpt resumes the run", the
    newest checkpoint written carried as the one that resumes; no latest.ckpt
    and no temporary file is left."""
    first = _first_signal_after_update_0(impl)
    _second_signal_at_the_stops_save(monkeypatch)
    with pytest.raises(TrainingInterrupted) as info:
        train(settings(impl, tmp_path, eval_interval=1), tokens=TOKENS, impl=_wrapped(impl, adamw_step=first),
              progress=False, printer=lambda line: None)
    exc, best = info.value, tmp_path / "run" / "best.ckpt"
    assert str(exc) == f"stopped by SIGTERM at step 1 while writing latest.ckpt (abandoned); {best} resumes the run"
    assert (exc.signum, exc.step, exc.checkpoint) == (signal.SIGTERM, 1, str(best))
    assert sorted(os.listdir(tmp_path / "run")) == sorted([".lock", "best.ckpt", "run.json", "steps.csv",
                                                          "training_log.csv"])


def test_a_resumed_run_failing_at_its_own_step_names_no_good_checkpoint(impl, tmp_path):
    """SPEC §trainer: a resumed run whose first step (the one it resumed at) gives
    a non-finite loss has no good checkpoint to name: TrainingDiverged says "the
    checkpoint this run resumed from already fails at its own step"."""
    s = settings(impl, tmp_path, max_steps=6, eval_interval=3, stop_at=3)
    run(impl, s)

    def forward(params, x, targets=None, **kw):
        logits, loss, cache = impl.module.forward(params, x, targets, **kw)
        return logits, (None if loss is None else np.float32(np.nan)), cache

    resume = str(tmp_path / "run" / "final.ckpt")
    with pytest.raises(TrainingDiverged) as info:
        train(dataclasses.replace(s, stop_at=None, resume=resume), tokens=TOKENS,
              impl=_wrapped(impl, forward=forward), progress=False, printer=lambda line: None)
    assert info.value.step == 3 and info.value.last_checkpoint is None, str(info.value)
    assert str(info.value).endswith("the checkpoint this run resumed from already fails at its own step"), str(info.value)


def test_finite_parameters_whose_float32_sum_overflows_are_finite(impl, tmp_path):
    """SPEC §trainer: the parameters' finiteness check is a float64 sum: finite
    parameters whose float32 sum would overflow (3e38 in the position rows past
    seq_len, which no forward reads and no update changes) are trained on."""
    def init_params(config, seed=0, **kw):
        params = impl.module.init_params(config, seed=seed, **kw)
        params["position_embedding"][8:] = 3e38  # rows seq_len .. block_size - 1
        return params

    result = train(settings(impl, tmp_path, max_steps=3), tokens=TOKENS, impl=_wrapped(impl, init_params=init_params),
                   progress=False, printer=lambda line: None)
    assert result.step == 3
    assert (result.params["position_embedding"][8:] == np.float32(3e38)).all()


def test_a_copy_with_the_size_and_time_of_a_run_checkpoint_but_other_bytes_is_refused(impl, tmp_path):
    """SPEC §trainer: a checkpoint outside any run directory resumes only a run one
    of whose checkpoints holds its bytes: a copy of another state with the same
    size and modification time as the run's final.ckpt is refused (RunDirError)."""
    from feste.rundir import RunDirError

    s = settings(impl, tmp_path, max_steps=6, eval_interval=3, stop_at=3)
    run(impl, s)
    final = tmp_path / "run" / "final.ckpt"
    other = impl.load_checkpoint(final)
    other.params.data[0] = np.nextafter(other.params.data[0], np.float32(np.inf))
    copy = tmp_path / "copy.ckpt"
    impl.save_checkpoint(copy, other)
    st = final.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert copy.stat().st_size == st.st_size and copy.read_bytes() != final.read_bytes()
    with pytest.raises(RunDirError, match="has its bytes"):
        run(impl, dataclasses.replace(s, stop_at=None, resume=str(copy)))


def _edit_run_json(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_a_run_json_whose_config_is_invalid_or_another_is_named(impl, tmp_path):
    """SPEC §trainer: resuming, a run.json whose config is no Config is a
    RunDirError "F: invalid config: ...", and a checkpoint whose config differs
    from the run's a ValueError "CKPT does not belong to the run in DIR: its
    config X differs from the run's Y"."""
    from feste.rundir import RunDirError
    from reference.checkpoint import config_to_json

    s = settings(impl, tmp_path, max_steps=6, eval_interval=3, stop_at=3)
    run(impl, s)
    run_dir, path = tmp_path / "run", tmp_path / "run" / "run.json"
    resume = dataclasses.replace(s, stop_at=None, resume=str(run_dir / "final.ckpt"))
    good = path.read_text()
    _edit_run_json(path, lambda doc: doc["config"].update(colour=1))
    with pytest.raises(RunDirError) as info:
        run(impl, resume)
    assert str(info.value).startswith(f"{path}: invalid config: "), str(info.value)
    path.write_text(good)
    _edit_run_json(path, lambda doc: doc["config"].update(n_embd=32))
    with pytest.raises(ValueError) as info:
        run(impl, resume)
    theirs = impl.load_checkpoint(run_dir / "final.ckpt").config
    ours = dataclasses.replace(theirs, n_embd=32)
    assert str(info.value) == (f"{run_dir / 'final.ckpt'} does not belong to the run in {run_dir}: its config "
                               f"{config_to_json(theirs)} differs from the run's {config_to_json(ours)}")


def test_a_setting_the_run_json_lacks_is_compared_at_its_default(impl, tmp_path):
    """SPEC §trainer: a run.json written before a setting existed (here without
    `dropout`, whose default the run used) resumes: the missing setting is its default."""
    s = settings(impl, tmp_path, max_steps=6, eval_interval=3, stop_at=3)
    run(impl, s)
    _edit_run_json(tmp_path / "run" / "run.json", lambda doc: doc["settings"].pop("dropout"))
    assert run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt"))).step == 6


def test_run_json_names_the_model_size_the_implementation_and_the_first_start(impl, tmp_path):
    """SPEC §trainer: run.json's n_params is the model's parameter count, its impl
    the implementation's __name__ (an object without one: its str), its started
    the run's first start, kept by a resume, and a resume named by an os.PathLike
    is recorded as its string."""
    s = settings(impl, tmp_path, max_steps=6, eval_interval=3, stop_at=3)
    wrapped = _wrapped(impl)  # an implementation object without __name__
    train(s, tokens=TOKENS, impl=wrapped, progress=False, printer=lambda line: None)
    path = tmp_path / "run" / "run.json"
    doc = json.loads(path.read_text())
    assert doc["n_params"] == impl.n_params(s.model_config()) and doc["impl"] == str(wrapped), doc
    _edit_run_json(path, lambda doc: doc.update(started="2020-01-02T03:04:05"))
    final = tmp_path / "run" / "final.ckpt"
    run(impl, dataclasses.replace(s, stop_at=None, resume=final))
    doc = json.loads(path.read_text())
    assert doc["impl"] == impl.module.__name__ and doc["started"] == "2020-01-02T03:04:05", doc
    assert doc["settings"]["resume"] == str(final) and doc["resumes"][0]["checkpoint"] == str(final), doc


def test_console_lines_go_to_stdout_by_default(impl, tmp_path, capsys):
    """SPEC §trainer: without a `printer`, train prints its console lines (the run
    directory, then one `Step` line per logged row) on stdout, through tqdm.write."""
    s = settings(impl, tmp_path, max_steps=3, eval_interval=3)
    train(s, tokens=TOKENS, impl=impl.module, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Run directory: {tmp_path / 'run'}", lines
    assert [line.split("|")[0] for line in lines if line.startswith("Step")] == ["Step    0 ", "Step    3 "], lines


def test_run_json_has_exactly_its_keys_and_the_split_sizes(impl, tmp_path):
    """SPEC §trainer: run.json's keys are exactly those SPEC lists, and its sizes
    are the token stream's, the two splits' of train_val_split and the number
    of validation windows (eval_batches * B, fewer if the split is short)."""
    s = settings(impl, tmp_path, max_steps=3, eval_interval=3)
    run(impl, s)
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert sorted(doc) == sorted([
        "settings", "config", "n_params", "impl", "tokens", "tokens_sha256", "train_tokens", "val_tokens",
        "validation_windows", "started", "resumes", "processes", "grad_accum", "micro_batch"]), sorted(doc)
    train_tokens, val_tokens = impl.train_val_split(TOKENS, s.val_fraction)
    assert (doc["tokens"], doc["train_tokens"], doc["val_tokens"]) == (len(TOKENS), len(train_tokens),
                                                                        len(val_tokens)), doc
    assert doc["validation_windows"] == min(s.eval_batches * s.batch_size, (len(val_tokens) - 1) // s.seq_len), doc


def test_the_printer_receives_one_console_line_per_evaluation(impl, tmp_path):
    """SPEC §trainer: every evaluation row gives one console line, `Step {s:4d} | Time: ...
    | PPL: ...`, and `printer` is what it is printed with."""
    lines = []
    train(settings(impl, tmp_path, max_steps=10, eval_interval=5), tokens=TOKENS, impl=impl.module,
          progress=False, printer=lines.append)
    steps = [line for line in lines if line.startswith("Step")]
    assert [int(line.split("|")[0].split()[1]) for line in steps] == [0, 5, 10], lines
    for line in steps:
        assert re.fullmatch(r"Step +\d+ \| Time: +\d+\.\ds \| LR: \d\.\d{6} \| Loss: \d+\.\d\d \| Val: \d+\.\d\d "
                            r"\| PPL: +\d+\.\d", line), line


def test_each_removed_temporary_file_is_printed(impl, tmp_path):
    """SPEC §run-directories: the trainer that removes a killed save's temporary file
    prints `removed NAME` for it."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    (tmp_path / "run" / ".latest.ckpt.0a1b2c3d.tmp").write_bytes(b"partial")
    lines = []
    train(dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt")), tokens=TOKENS,
          impl=impl.module, progress=False, printer=lines.append)
    assert [line for line in lines if line.startswith("removed ")] == [
        "removed .latest.ckpt.0a1b2c3d.tmp, left by an interrupted write"], lines


def test_a_signal_during_a_resumed_runs_setup_carries_the_checkpoint_given(impl, tmp_path, sigterm_default):
    """SPEC §trainer: a signal during the setup of a resumed run stops at once with
    no step and the checkpoint given to resume (which still resumes the run): "stopped
    by SIGTERM before training started", without "(nothing to resume)"."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    resume = str(tmp_path / "run" / "final.ckpt")

    def train_val_split(*args, **kw):  # part of the resumed run's setup
        os.kill(os.getpid(), signal.SIGTERM)
        return impl.module.train_val_split(*args, **kw)

    with pytest.raises(TrainingInterrupted) as info:
        train(dataclasses.replace(s, stop_at=None, resume=resume), tokens=TOKENS,
              impl=_wrapped(impl, train_val_split=train_val_split), progress=False, printer=lambda line: None)
    exc = info.value
    assert (exc.signum, exc.step, exc.checkpoint) == (signal.SIGTERM, None, resume), str(exc)
    assert str(exc) == "stopped by SIGTERM before training started"


def test_patience_counts_across_a_resume_with_an_evaluation_every_step(impl, tmp_path):
    """lr = 0 (the validation loss repeats exactly), eval every step, patience 3: step 0
    is the best and evaluations 1, 2, 3 do not improve, so training stops at 3, also
    when split at step 2 and resumed (the evaluation at 1, right after the best, still
    counts after the resume)."""
    whole = run(impl, settings(impl, tmp_path / "a", lr=0.0, patience=3, eval_interval=1, max_steps=20))
    assert (whole.stop_reason, whole.step) == ("early_stopping", 3)
    s = settings(impl, tmp_path / "b", lr=0.0, patience=3, eval_interval=1, max_steps=20, stop_at=2)
    first = run(impl, s)
    assert (first.stop_reason, first.step) == ("stop_at", 2)
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(first.checkpoints["final"])))
    assert (resumed.stop_reason, resumed.step, resumed.best_val_step) == ("early_stopping", 3, 0)


def test_a_new_runs_logged_time_lies_within_the_call(impl, tmp_path):
    """SPEC §trainer: TrainResult.elapsed is the call's wall seconds, and a new run's
    elapsed_seconds count from when its steps begin: every logged time lies in
    [0, elapsed] (both clocks' readings, no duration asserted)."""
    result = run(impl, settings(impl, tmp_path, max_steps=6, eval_interval=2))
    assert isinstance(result.elapsed, float) and result.elapsed >= 0.0
    times = [row["elapsed"] for row in result.history]
    assert len(times) == 4 and all(0.0 <= t <= result.elapsed for t in times), (times, result.elapsed)


def test_a_divergence_is_detected_without_runtime_warnings(impl, tmp_path):
    """SPEC §trainer: forward, backward and evaluation run with floating-point
    warnings off; a loss that overflows to a non-finite value stops the run as a
    TrainingDiverged, with no RuntimeWarning (turned into an error here)."""
    import warnings

    s = settings(impl, tmp_path, lr=1e3, warmup_steps=0, max_steps=40, eval_interval=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(TrainingDiverged):
            run(impl, s)


def test_a_resume_keeping_the_micro_batch_prints_no_note(impl, tmp_path):
    """SPEC §micro-batches: a resume that changes the micro-batch size b is said; one
    that keeps it (grad_accum 2 again, b = 2 of B = 4) says nothing, and one that
    changes it (grad_accum 1, b = 4) prints the note."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4, grad_accum=2)
    run(impl, s)
    resume = str(tmp_path / "run" / "final.ckpt")
    for grad_accum, noted in [(2, False), (1, True)]:
        lines = []
        train(dataclasses.replace(s, stop_at=None if noted else 6, resume=resume, grad_accum=grad_accum),
              tokens=TOKENS, impl=impl.module, progress=False, printer=lines.append)
        assert any(line.startswith("note: micro-batches of") for line in lines) == noted, lines


def test_a_run_started_from_given_weights_trains_those_weights(impl, tmp_path):
    """SPEC §trainer: init_from starts from a copy of the checkpoint's parameters: with
    lr = 0 the run ends with exactly those parameters (not init_params of its seed)."""
    run(impl, settings(impl, tmp_path / "base", max_steps=3, eval_interval=3), tokenizer=byte_tokenizer(impl))
    source = tmp_path / "base" / "run" / "final.ckpt"
    result = run(impl, settings(impl, tmp_path / "tune", max_steps=2, eval_interval=2, lr=0.0, init_from=str(source)))
    assert_bitwise("params from init_from with lr 0", result.params.data, impl.load_checkpoint(source).params.data)


def test_a_resume_records_no_per_call_setting_as_changed(impl, tmp_path):
    """SPEC §trainer: run.json's resumes record the settings of the run that changed;
    overwrite, like run_dir, resume and stop_at, belongs to one call (a resume cannot
    even give it) and is not recorded."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4, overwrite=True)
    run(impl, s)
    run(impl, dataclasses.replace(s, stop_at=None, overwrite=False, resume=str(tmp_path / "run" / "final.ckpt")))
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [r["changed"] for r in doc["resumes"]] == [{}], doc["resumes"]


def test_a_forced_signal_in_a_resumed_run_names_the_checkpoint_it_resumed_from(impl, tmp_path, sigterm_default):
    """SPEC §trainer: a forced second signal in a resumed run past its first step,
    before the run wrote any checkpoint, carries the checkpoint it resumed from (its
    step gave a finite loss), which resumes the run."""
    s = settings(impl, tmp_path, max_steps=10, eval_interval=5, stop_at=4)
    run(impl, s)
    resume = str(tmp_path / "run" / "final.ckpt")
    adamw_step, forward = _forced_second_signal(impl)  # after update 4, then in step 5's forward (before its evaluation)

    with pytest.raises(TrainingInterrupted) as info:
        train(dataclasses.replace(s, stop_at=None, resume=resume), tokens=TOKENS,
              impl=_wrapped(impl, adamw_step=adamw_step, forward=forward), progress=False, printer=lambda line: None)
    exc = info.value
    assert (exc.signum, exc.step, exc.checkpoint) == (signal.SIGTERM, 5, resume), str(exc)
    assert str(exc).endswith(f"; {resume} resumes the run"), str(exc)


def test_tokens_per_second_is_the_batch_over_the_steps_compute_time(impl, tmp_path):
    """SPEC §csv-log: a row's tokens_per_second is B*T over the seconds of that step's
    forward, backward, clipping and update, which lie within the step: so it is at
    least B*T over the time between two rows' elapsed_seconds, and, with a forward
    that sleeps 20 ms, at most B*T / 0.02 (only the rows' rounding allowed: elapsed
    to 1 ms, the rate to 0.1)."""
    def forward(*args, **kw):
        time.sleep(0.02)
        return impl.module.forward(*args, **kw)

    s = settings(impl, tmp_path, max_steps=4, eval_interval=4, sample_interval=4)
    train(s, tokens=TOKENS, impl=_wrapped(impl, forward=forward), progress=False, printer=lambda line: None)
    with open(tmp_path / "run" / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    tokens = s.batch_size * s.seq_len
    for before, row in zip(rows, rows[1:]):
        rate = float(row["tokens_per_second"])
        between = float(row["elapsed_seconds"]) - float(before["elapsed_seconds"]) + 0.001
        assert tokens / between - 0.05 <= rate <= tokens / 0.02 + 0.05, (before, row)


def test_init_must_be_a_checkpoint(impl, tmp_path):
    """SPEC §trainer: train(settings, init=...) takes the weights init_from names, already
    read; anything but a Checkpoint there is refused ("init must be a Checkpoint, got
    TYPE"), even when init_from names a file that could be read instead."""
    run(impl, settings(impl, tmp_path / "base", max_steps=3, eval_interval=3), tokenizer=byte_tokenizer(impl))
    source = str(tmp_path / "base" / "run" / "final.ckpt")
    with pytest.raises(ValueError, match="init must be a Checkpoint, got str"):
        run(impl, settings(impl, tmp_path / "tune", max_steps=2, eval_interval=2, init_from=source), init=source)
    assert not (tmp_path / "tune" / "run").exists()


def test_an_abandoned_save_says_what_resumes_the_run(impl, tmp_path, sigterm_default, monkeypatch):
    """SPEC §trainer: a second signal that abandons the stop's save of latest.ckpt ends
    the message with "; CKPT resumes the run", CKPT the checkpoint carried, or with
    "; nothing to resume" when it carries none. Here a resumed run stops at its first
    step (4), before writing any checkpoint."""
    s = settings(impl, tmp_path, max_steps=10, eval_interval=5, stop_at=4)
    run(impl, s)
    sent = []

    def forward(*args, **kw):
        if not sent:  # step 4's forward: the first signal, honoured at step 4's boundary
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return impl.module.forward(*args, **kw)

    _second_signal_at_the_stops_save(monkeypatch)
    with pytest.raises(TrainingInterrupted) as info:
        train(dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt")), tokens=TOKENS,
              impl=_wrapped(impl, forward=forward), progress=False, printer=lambda line: None)
    exc = info.value
    assert (exc.signum, exc.step) == (signal.SIGTERM, 4), str(exc)
    head = "stopped by SIGTERM at step 4 while writing latest.ckpt (abandoned)"
    assert str(exc) == head + (f"; {exc.checkpoint} resumes the run" if exc.checkpoint else "; nothing to resume")
    assert not (tmp_path / "run" / "latest.ckpt").exists()


def test_a_refused_resume_names_the_settings_a_resume_may_change(impl, tmp_path):
    """SPEC §trainer: a resume changing a fixed setting is refused with a ValueError
    naming it with both values, and then the settings a resume may change."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    with pytest.raises(ValueError) as info:
        run(impl, dataclasses.replace(s, stop_at=None, seed=1, resume=str(tmp_path / "run" / "final.ckpt")))
    message = str(info.value)
    assert "seed 1 (the run has 0)" in message, message
    may = message.split("may change only", 1)[1]
    for name in ["max_steps", "stop_at", "lr", "warmup_steps", "schedule", "min_lr", "grad_clip", "weight_decay",
                 "eval_interval", "sample_interval", "sample_tokens", "sample_prompt", "sample_temperature",
                 "sample_top_k", "checkpoint_interval", "patience", "corpus"]:
        assert re.search(rf"\b{name}\b", may), (name, message)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_resumed_run_stops_early_where_the_uninterrupted_run_does(impl, tmp_path, seed):
    """SPEC §trainer: a resumed run makes exactly the decisions of an uninterrupted
    one, although its checkpoint holds the best validation loss as float32 (§checkpoint),
    rounded up or down (the step-0 losses of these seeds round both ways). lr = 0:
    every evaluation repeats step 0's loss, so with evaluations every 5 steps and
    patience 2 the run stops at step 10, its best at step 0; so must the run split
    at step 7 (its best before the split) and the run resumed from best.ckpt of step
    0 (whose first evaluation is that best's own, which is no evaluation without improvement)."""
    kw = dict(lr=0.0, patience=2, max_steps=40, seed=seed)
    whole = run(impl, settings(impl, tmp_path / "a", **kw))
    assert (whole.stop_reason, whole.step, whole.best_val_step) == ("early_stopping", 10, 0)
    s = settings(impl, tmp_path / "b", stop_at=7, **kw)
    run(impl, s)
    for checkpoint in ("final.ckpt", "best.ckpt"):
        resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "b" / "run" / checkpoint)))
        assert (resumed.stop_reason, resumed.step, resumed.best_val_step) == ("early_stopping", 10, 0), \
            (checkpoint, f"step-0 validation loss {whole.history[0]['val_loss']!r}")


def test_the_result_history_holds_the_logged_rows_unrounded(impl, tmp_path):
    """SPEC §trainer: TrainResult.history has one dict per training-log row, with
    the keys step, elapsed, lr, train_loss, val_loss, grad_norm and sample, whose
    values §csv-log's format_log_row writes as that row: the log is the header and
    the history's rows, byte for byte."""
    s = settings(impl, tmp_path, max_steps=7, eval_interval=3, sample_interval=3, sample_tokens=4)
    result = run(impl, s, tokenizer=byte_tokenizer(impl))
    keys = ["step", "elapsed", "lr", "train_loss", "val_loss", "grad_norm", "sample"]
    assert [h["step"] for h in result.history] == [0, 3, 6, 7]
    assert all(sorted(h) == sorted(keys) for h in result.history), [sorted(h) for h in result.history]
    rows = [impl.format_log_row(h["step"], h["elapsed"], h["lr"], h["train_loss"], h["val_loss"], h["sample"],
                                h["grad_norm"]) for h in result.history]
    assert (tmp_path / "run" / "training_log.csv").read_text() == "".join(line + "\n" for line in [impl.CSV_HEADER] + rows)


def test_early_stopping_is_said_on_the_console(impl, tmp_path):
    """SPEC §trainer: reaching patience stops the run with the console line `early
    stopping at step s: no new best validation loss in P evaluations (best
    {best:.4f} at step b)`. lr = 0: the evaluations at 5 and 10 repeat step 0's loss."""
    lines = []
    result = train(settings(impl, tmp_path, lr=0.0, patience=2, max_steps=40), tokens=TOKENS, impl=impl.module,
                   progress=False, printer=lines.append)
    assert (result.stop_reason, result.step, result.best_val_step) == ("early_stopping", 10, 0)
    want = (f"early stopping at step 10: no new best validation loss in 2 evaluations "
            f"(best {result.best_val_loss:.4f} at step 0)")
    assert want in lines, lines


def test_a_divergence_names_the_checkpoint_written_last(impl, tmp_path):
    """SPEC §trainer: the divergence message names the most recent checkpoint
    written. latest.ckpt at step 3, then best.ckpt at step 4 (a new best), then a
    non-finite gradient at step 5 (a wrapper's 6th backward): best.ckpt, of step 4."""
    s = settings(impl, tmp_path, eval_interval=4, checkpoint_interval=3, warmup_steps=0)
    with pytest.raises(TrainingDiverged) as info:
        train(s, tokens=TOKENS, impl=_wrapped(impl, backward=_nan_gradients_at(impl, 6)), progress=False, printer=lambda line: None)
    best = tmp_path / "run" / "best.ckpt"
    assert impl.load_checkpoint(best).metadata["step"] == 4  # a new best at step 4, after latest.ckpt of step 3
    assert impl.load_checkpoint(tmp_path / "run" / "latest.ckpt").metadata["step"] == 3
    assert (info.value.step, info.value.last_checkpoint) == (5, str(best)), str(info.value)
    assert str(info.value).endswith(f"Last good checkpoint (its step gave a finite loss): {best}"), str(info.value)


def test_an_evaluation_that_overflows_warns_nothing(impl, tmp_path):
    """SPEC §trainer: the evaluation, like forward and backward, runs under
    numpy.errstate(all="ignore"). The weights given (init_from) hold an embedding of
    +-1e30 for token 255, which only the validation split holds: every validation
    forward squares 1e30 in LayerNorm (an overflow) while training never meets it.
    The run ends without a RuntimeWarning (turned into an error here)."""
    import warnings

    s = settings(impl, tmp_path, max_steps=2, eval_interval=1, init_from=str(tmp_path / "init.ckpt"))
    tokens = _validation_only_token(impl, s, np.where(np.arange(16) % 2, 1e30, -1e30))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = run(impl, s, tokens=tokens)
    assert result.step == 2 and all(math.isfinite(h["train_loss"]) for h in result.history)


def _validation_only_token(impl, s, embedding=None):
    """Tokens in which id 255 is an input of the first validation window and nowhere in
    the training split; with `embedding`, s.init_from written too: init_params of seed 0
    whose embedding of 255 is `embedding`."""
    if embedding is not None:
        config = s.model_config()
        params = impl.init_params(config, seed=0)
        params["token_embedding"][255] = embedding
        impl.save_checkpoint(s.init_from, impl.Checkpoint(config, params, None, byte_tokenizer(impl)))
    tokens = TOKENS % 255
    n_train = len(impl.train_val_split(tokens, s.val_fraction)[0])
    tokens[n_train + 3] = 255
    return tokens


def test_a_run_whose_validation_loss_is_never_finite_has_no_best(impl, tmp_path):
    """SPEC §trainer, §checkpoint: a best is a validation loss below the best so far,
    and none yet is +inf at step 0 (metadata null, 0). A wrapper's forward gives a nan
    loss for any batch holding token 255, which only the validation split holds: every
    validation loss is nan while training goes on. The run finishes with no best:
    best_val_loss inf at step 0, no best.ckpt, final.ckpt's metadata best null at step 0."""
    s = settings(impl, tmp_path, max_steps=3, eval_interval=1)
    result = _train_with_a_nan_validation_loss(impl, s)
    assert [h["step"] for h in result.history] == [0, 1, 2, 3]
    assert all(math.isfinite(h["train_loss"]) and math.isnan(h["val_loss"]) for h in result.history), result.history
    assert (result.best_val_loss, result.best_val_step) == (math.inf, 0)
    assert not (tmp_path / "run" / "best.ckpt").exists() and "best" not in result.checkpoints
    final = impl.load_checkpoint(tmp_path / "run" / "final.ckpt").metadata
    assert (final["step"], final["best_val_loss"], final["best_val_step"]) == (3, math.inf, 0), final


def _train_with_a_nan_validation_loss(impl, s):
    """train(s) on tokens whose id 255 is an input of the first validation window
    only, through a wrapper whose forward gives a nan loss for any batch holding 255:
    every validation loss is nan, every training loss finite."""
    def forward(params, x, *args, **kw):
        logits, loss, cache = impl.module.forward(params, x, *args, **kw)
        return logits, math.nan if (np.asarray(x) == 255).any() else loss, cache

    return train(s, tokens=_validation_only_token(impl, s), impl=_wrapped(impl, forward=forward), progress=False,
                 printer=lambda line: None)


def test_patience_counts_from_the_first_evaluation(impl, tmp_path):
    """SPEC §trainer: every regular evaluation that finds no new best counts toward
    patience, the first one (step 0) included: with every validation loss nan (none is
    a best) and patience 2, evaluations every step, the run stops at step 1."""
    result = _train_with_a_nan_validation_loss(impl, settings(impl, tmp_path, max_steps=5, eval_interval=1,
                                                                 patience=2))
    assert (result.stop_reason, result.step, result.best_val_loss) == ("early_stopping", 1, math.inf)


def test_a_stop_at_a_checkpoint_step_resumes_to_the_uninterrupted_runs_bytes(impl, tmp_path, sigterm_default):
    """SPEC §trainer: a signal stops the run at the next step boundary with
    latest.ckpt holding the state of that step, and resuming from it continues the
    run to the bytes of an uninterrupted one. Here the stop falls at step 2, which
    writes latest.ckpt (checkpoint_interval 2) before its evaluation finds a new
    best: the resumed run's files, latest.ckpt included, are the uninterrupted run's."""
    updates = []

    def adamw_step(*args, **kw):
        impl.module.adamw_step(*args, **kw)
        updates.append(None)
        if len(updates) == 2:  # after update 1: the run stops at step 2's boundary
            os.kill(os.getpid(), signal.SIGTERM)

    kw = dict(max_steps=3, eval_interval=2, checkpoint_interval=2, warmup_steps=0)
    run(impl, settings(impl, tmp_path / "a", **kw))
    s = settings(impl, tmp_path / "b", **kw)
    with pytest.raises(TrainingInterrupted) as info:
        train(s, tokens=TOKENS, impl=_wrapped(impl, adamw_step=adamw_step), progress=False, printer=lambda line: None)
    stopped = tmp_path / "b" / "run"
    assert (info.value.step, info.value.checkpoint) == (2, str(stopped / "latest.ckpt")), str(info.value)
    assert impl.load_checkpoint(stopped / "best.ckpt").metadata["step"] == 2  # the stop's evaluation: a new best
    run(impl, dataclasses.replace(s, resume=info.value.checkpoint))
    whole = tmp_path / "a" / "run"
    for name in ("latest.ckpt", "best.ckpt", "final.ckpt"):
        assert (stopped / name).read_bytes() == (whole / name).read_bytes(), name
    assert log_rows(stopped / "training_log.csv") == log_rows(whole / "training_log.csv")


def test_run_json_records_the_run_directory_used(impl, tmp_path, monkeypatch):
    """SPEC §trainer: run.json holds the resolved settings, their run_dir the directory
    the run writes: the new runs/<preset>-<time> when none was given, and a directory
    given as os.PathLike recorded as its string."""
    monkeypatch.chdir(tmp_path)
    result = run(impl, settings(impl, tmp_path, max_steps=1, eval_interval=1, run_dir=None))
    doc = json.loads((result.run_dir / "run.json").read_text())
    assert doc["settings"]["run_dir"] == str(result.run_dir) and result.run_dir.parent == Path("runs"), doc["settings"]
    given = tmp_path / "given"
    run(impl, settings(impl, tmp_path, max_steps=1, eval_interval=1, run_dir=given))
    assert json.loads((given / "run.json").read_text())["settings"]["run_dir"] == str(given)


def test_a_diverging_step_still_gets_its_steps_row(impl, tmp_path):
    """SPEC §csv-log: a step that diverges still gets its steps.csv row before the
    trainer stops: its learning rate, the loss and gradient norm it met, and tokens per
    second 0. Two ways to diverge: a non-finite gradient at step 7 (a wrapper's 8th
    backward: the loss finite, the norm nan), and parameters an update left non-finite,
    found before step 6's forward (no loss or norm: nan)."""
    for name, wrapped, step in (("gradient", _wrapped(impl, backward=_nan_gradients_at(impl, 8)), 7),
                                ("params", _wrapped(impl, adamw_step=_inf_parameters_after(impl, 6)), 6)):
        s = settings(impl, tmp_path / name)
        with pytest.raises(TrainingDiverged):
            train(s, tokens=TOKENS, impl=wrapped, progress=False, printer=lambda line: None)
        with open(tmp_path / name / "run" / "steps.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["step"]) for r in rows] == list(range(step + 1)), name
        row = rows[-1]
        assert row["learning_rate"] == f"{impl.learning_rate(step, s.lr, s.warmup_steps, s.max_steps):.8g}", (name, row)
        assert (row["grad_norm"], row["tokens_per_second"]) == ("nan", "0.0"), (name, row)
        assert math.isfinite(float(row["train_loss"])) if name == "gradient" else row["train_loss"] == "nan", (name, row)
        assert float(row["elapsed_seconds"]) >= float(rows[-2]["elapsed_seconds"]), (name, rows[-2:])


def test_a_divergence_says_whether_the_loss_or_the_gradient_norm_is_not_finite(impl, tmp_path):
    """SPEC §trainer: the divergence message names which of the loss and the gradient
    norm is not finite, the loss first, with both values: a wrapper's forward giving a
    nan loss at step 0 ("the loss is not finite (loss nan, gradient norm G)"), and a
    wrapper's backward giving a nan gradient at step 0 ("the gradient norm is not finite
    (loss L, gradient norm nan)", L finite)."""
    def forward(*args, **kw):
        logits, _, cache = impl.module.forward(*args, **kw)
        return logits, math.nan, cache

    for name, wrapped, pattern in (
            ("loss", _wrapped(impl, forward=forward), r"the loss is not finite \(loss nan, gradient norm (\S+)\)"),
            ("norm", _wrapped(impl, backward=_nan_gradients_at(impl)), r"the gradient norm is not finite \(loss (\S+), gradient norm nan\)")):
        with pytest.raises(TrainingDiverged) as info:
            train(settings(impl, tmp_path / name), tokens=TOKENS, impl=wrapped, progress=False,
                  printer=lambda line: None)
        found = re.search(pattern, str(info.value))
        assert info.value.step == 0 and found and math.isfinite(float(found[1])), str(info.value)


def test_data_that_does_not_fit_the_model_is_refused_before_writing(impl, tmp_path):
    """SPEC §trainer: refused with a ValueError before the run writes anything (the
    directory it created goes again): token ids outside [0, vocab_size), -1 and
    vocab_size itself; tokens that are not a 1-D integer array; a tokenizer of more
    tokens than vocab_size. The limits themselves run: ids 0 .. vocab_size - 1, and a
    seq_len equal to block_size."""
    s = settings(impl, tmp_path, max_steps=1, eval_interval=1)
    refused = []
    for bad in (-1, V):
        tokens = TOKENS.copy()
        tokens[100] = bad
        refused.append((tokens, None, "vocab_size"))
    refused += [(TOKENS.reshape(2, -1), None, "tokens must be a 1-D integer array"),
                (TOKENS.astype(np.float64), None, "tokens must be a 1-D integer array"),
                (TOKENS, impl.Tokenizer.train(b"aaaa", V + 1), "vocab_size")]
    for tokens, tokenizer, words in refused:
        with pytest.raises(ValueError, match=words):
            run(impl, s, tokens=tokens, tokenizer=tokenizer)
        assert not (tmp_path / "run").exists(), words
    assert (TOKENS.min(), TOKENS.max()) == (0, V - 1)
    result = run(impl, dataclasses.replace(s, seq_len=16, block_size=16), tokenizer=byte_tokenizer(impl))
    assert result.step == 1 and impl.load_checkpoint(result.checkpoints["final"]).config.block_size == 16


def test_the_run_directory_line_says_how_the_run_began(impl, tmp_path):
    """SPEC §trainer: the first console line is `Run directory: DIR`, followed by
    ` (resumed at step N)` on a resume and by ` (from the weights of PATH)` for a run
    from init_from."""
    s = settings(impl, tmp_path / "a", max_steps=4, eval_interval=2, stop_at=2)
    lines = {}
    for name, call in (("new", s), ("resumed", dataclasses.replace(s, stop_at=None,
                                                                      resume=str(tmp_path / "a" / "run" / "final.ckpt"))),
                       ("tuned", settings(impl, tmp_path / "b", max_steps=1, eval_interval=1,
                                          init_from=str(tmp_path / "a" / "run" / "final.ckpt")))):
        lines[name] = []
        train(call, tokens=TOKENS, tokenizer=None if name == "tuned" else byte_tokenizer(impl), impl=impl.module,
              progress=False, printer=lines[name].append)
    assert lines["new"][0] == f"Run directory: {tmp_path / 'a' / 'run'}", lines["new"]
    assert lines["resumed"][0] == f"Run directory: {tmp_path / 'a' / 'run'} (resumed at step 2)", lines["resumed"]
    assert lines["tuned"][0] == (f"Run directory: {tmp_path / 'b' / 'run'} (from the weights of "
                                 f"{tmp_path / 'a' / 'run' / 'final.ckpt'})"), lines["tuned"]


def test_a_run_from_given_weights_gets_a_new_finetune_directory_and_copies_the_weights(impl, tmp_path, monkeypatch):
    """SPEC §trainer: init_from starts a new run whose parameters are a copy of the
    checkpoint's; without run_dir its directory is a new runs/finetune-<time>. The
    Checkpoint the caller read and passed as `init` is left as it was by the training."""
    monkeypatch.chdir(tmp_path)
    run(impl, settings(impl, tmp_path / "base", max_steps=2, eval_interval=2), tokenizer=byte_tokenizer(impl))
    source = tmp_path / "base" / "run" / "final.ckpt"
    init = impl.load_checkpoint(source)
    before = init.params.data.copy()
    result = run(impl, settings(impl, tmp_path, max_steps=3, eval_interval=3, run_dir=None, init_from=str(source)),
                 init=init)
    assert result.run_dir.parent == Path("runs") and re.fullmatch(r"finetune-\d{8}-\d{6}(-\d+)?", result.run_dir.name), \
        result.run_dir
    assert not np.array_equal(result.params.data, before)  # it trained
    assert_bitwise("the init checkpoint's parameters after training", init.params.data, before)


def test_progress_is_on_by_default(impl, tmp_path, monkeypatch):
    """SPEC §trainer: train(..., progress=True, ...): a call that leaves progress out
    shows the bar on stderr when it is a terminal."""
    terminal = terminal_stderr(monkeypatch)
    train(settings(impl, tmp_path, max_steps=3, eval_interval=3), tokens=TOKENS, impl=impl.module,
          printer=lambda line: None)
    assert "step" in terminal.getvalue(), terminal.getvalue()


def test_time_goes_on_from_the_training_log_without_a_steps_log(impl, tmp_path):
    """SPEC §trainer: a resume's elapsed_seconds go on from the last kept steps.csv
    row, and in a run directory whose steps.csv keeps none (here removed, as in one
    written before that file existed) from the last kept training_log.csv row; that
    row's time is set to 1000 s so that the continuation cannot be confused with a
    restart from 0."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=2, stop_at=6)
    run(impl, s)
    run_dir = tmp_path / "run"
    (run_dir / "steps.csv").unlink()
    log = run_dir / "training_log.csv"
    lines = log.read_text().splitlines(keepends=True)
    assert lines[3].startswith("4,")  # the row of step 4: the last one a resume at step 6 keeps
    fields = lines[3].split(",")
    lines[3] = ",".join([fields[0], "1000.00"] + fields[2:])
    log.write_text("".join(lines))
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(run_dir / "final.ckpt")))
    assert [row["step"] for row in resumed.history] == [6, 8]
    assert all(row["elapsed"] >= 1000.0 for row in resumed.history), resumed.history


def test_tokens_per_second_counts_the_update_too(impl, tmp_path):
    """SPEC §csv-log: a row's tokens_per_second is B*T over the seconds of that step's
    forward, backward, clipping and update: with a forward that sleeps 20 ms and an
    update that sleeps 30 ms, every step that updates (all but the last) reports at
    most B*T / 0.05 (the rate's rounding to 0.1 allowed)."""
    def forward(*args, **kw):
        time.sleep(0.02)
        return impl.module.forward(*args, **kw)

    def adamw_step(*args, **kw):
        time.sleep(0.03)
        return impl.module.adamw_step(*args, **kw)

    s = settings(impl, tmp_path, max_steps=3, eval_interval=3, sample_interval=3)
    train(s, tokens=TOKENS, impl=_wrapped(impl, forward=forward, adamw_step=adamw_step), progress=False,
          printer=lambda line: None)
    with open(tmp_path / "run" / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    for row in rows[:-1]:
        assert 0 < float(row["tokens_per_second"]) <= s.batch_size * s.seq_len / 0.05 + 0.05, row


def test_a_forced_stop_says_what_resumes_the_run(impl, tmp_path, sigterm_default):
    """SPEC §trainer: a second signal at least one second after the first stops at
    once, abandoning the step: the TrainingInterrupted names the step and the newest
    checkpoint written, which resumes the run, or says there is nothing to resume.
    Both signals in step 0's forward: nothing written yet; the first after update 0
    and the second in step 1's forward: best.ckpt of step 0."""
    sent = []

    def forward(*args, **kw):
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.2)
            os.kill(os.getpid(), signal.SIGTERM)
        return impl.module.forward(*args, **kw)

    with pytest.raises(TrainingInterrupted) as info:
        train(settings(impl, tmp_path / "a", eval_interval=1), tokens=TOKENS, impl=_wrapped(impl, forward=forward),
              progress=False, printer=lambda line: None)
    assert str(info.value) == "stopped by SIGTERM at step 0 (forced by a second signal); nothing to resume"
    assert (info.value.step, info.value.checkpoint) == (0, None)
    adamw_step, forward = _forced_second_signal(impl)
    with pytest.raises(TrainingInterrupted) as info:
        train(settings(impl, tmp_path / "b", eval_interval=1), tokens=TOKENS,
              impl=_wrapped(impl, adamw_step=adamw_step, forward=forward), progress=False, printer=lambda line: None)
    best = tmp_path / "b" / "run" / "best.ckpt"
    assert str(info.value) == f"stopped by SIGTERM at step 1 (forced by a second signal); {best} resumes the run"


def test_a_tokenizer_given_with_init_from_must_be_the_checkpoints(impl, tmp_path):
    """SPEC §trainer: a run from init_from encodes with the checkpoint's tokenizer; a
    tokenizer given to train as well must be that one: the same one runs, another is a
    ValueError naming the tokenizer and init_from before anything is written."""
    tokenizer = byte_tokenizer(impl)
    run(impl, settings(impl, tmp_path / "base", max_steps=1, eval_interval=1), tokenizer=tokenizer)
    source = str(tmp_path / "base" / "run" / "final.ckpt")
    s = settings(impl, tmp_path, max_steps=1, eval_interval=1, init_from=source)
    other = impl.Tokenizer.train(b"aaaa", V + 1)  # one merge: another tokenizer
    with pytest.raises(ValueError, match=r"tokenizer given differs from init_from .*final\.ckpt"):
        run(impl, s, tokenizer=other)
    assert not (tmp_path / "run").exists()
    result = run(impl, s, tokenizer=impl.Tokenizer.from_json(tokenizer.to_json()))
    assert result.step == 1 and result.tokenizer.to_json() == tokenizer.to_json()


def test_the_stop_reason_says_why_the_call_ended(impl, tmp_path):
    """SPEC §trainer: TrainResult.stop_reason is "max_steps" when the run reached
    max_steps (a stop_at equal to it included), "stop_at" when the call stopped at an
    earlier stop_at (and "early_stopping": test_early_stopping_with_patience)."""
    s = settings(impl, tmp_path, max_steps=4, eval_interval=2, stop_at=2)
    assert run(impl, s).stop_reason == "stop_at"
    resume = dataclasses.replace(s, resume=str(tmp_path / "run" / "final.ckpt"))
    assert run(impl, dataclasses.replace(resume, stop_at=4)).stop_reason == "max_steps"
    assert run(impl, settings(impl, tmp_path / "b", max_steps=2, eval_interval=2)).stop_reason == "max_steps"


def test_patience_counts_every_evaluation_since_the_best_across_a_resume(impl, tmp_path):
    """SPEC §trainer: a resume recomputes the count of evaluations without improvement
    from best_val_step: the regular evaluations after it. lr = 0, evaluations every 5
    steps, patience 3: the best is step 0's and the run stops at 15, also when split at
    step 12, after two evaluations without improvement (5 and 10)."""
    whole = run(impl, settings(impl, tmp_path / "a", lr=0.0, patience=3, max_steps=40))
    assert (whole.stop_reason, whole.step, whole.best_val_step) == ("early_stopping", 15, 0)
    s = settings(impl, tmp_path / "b", lr=0.0, patience=3, max_steps=40, stop_at=12)
    assert run(impl, s).step == 12
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "b" / "run" / "final.ckpt")))
    assert (resumed.stop_reason, resumed.step, resumed.best_val_step) == ("early_stopping", 15, 0)


def test_without_tokens_the_corpus_is_encoded_by_a_tokenizer_trained_on_it(impl, tmp_path, monkeypatch):
    """SPEC §trainer: without tokens, train reads the corpus and encodes it with a
    tokenizer of vocab_size trained on its bytes (§tokenizer): the run's tokenizer is
    Tokenizer.train of the corpus, and run.json's token count and sha256 (of the stream
    as little-endian int64) are those of its encoding. progress=False draws no progress
    bar on a terminal, the tokenizer's included (§command-line: none with -q)."""
    import hashlib

    text = b"To be, or not to be, that is the question: " * 80
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(text)
    terminal = terminal_stderr(monkeypatch)
    s = settings(impl, tmp_path, vocab_size=262, corpus=str(corpus), max_steps=1, eval_interval=1)
    result = train(s, impl=impl.module, progress=False, printer=lambda line: None)
    want = impl.Tokenizer.train(text, 262)
    assert result.tokenizer.to_json() == want.to_json()
    tokens = np.asarray(want.encode(text), dtype="<i8")
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (doc["tokens"], doc["tokens_sha256"]) == (tokens.size, hashlib.sha256(tokens.tobytes()).hexdigest())
    assert terminal.getvalue() == ""


def test_without_tokens_a_given_or_resumed_tokenizer_encodes_the_corpus(impl, tmp_path):
    """SPEC §trainer: without tokens the corpus is encoded by the tokenizer given, or
    on a resume by the checkpoint's; only without either is one trained. A tokenizer
    trained on other text (unlike the corpus's own) given to a run stopped at step 1
    encodes its corpus; the resume, given none, goes on with the checkpoint's (one
    trained on the corpus would change the tokens, which a resume refuses)."""
    import hashlib

    text = b"To be, or not to be, that is the question: " * 80
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(text)
    given = impl.Tokenizer.train(b"quick brown foxes jump over lazy dogs " * 20, 262)
    assert given.to_json() != impl.Tokenizer.train(text, 262).to_json()
    s = settings(impl, tmp_path, vocab_size=262, corpus=str(corpus), max_steps=2, eval_interval=1, stop_at=1)
    first = train(s, tokenizer=given, impl=impl.module, progress=False, printer=lambda line: None)
    tokens = np.asarray(given.encode(text), dtype="<i8")
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert first.tokenizer.to_json() == given.to_json()
    assert doc["tokens_sha256"] == hashlib.sha256(tokens.tobytes()).hexdigest()
    resumed = train(dataclasses.replace(s, stop_at=None, resume=str(first.checkpoints["final"])), impl=impl.module,
                    progress=False, printer=lambda line: None)
    assert resumed.step == 2 and resumed.tokenizer.to_json() == given.to_json()


def test_settings_must_be_train_settings(impl, tmp_path):
    """SPEC §trainer: train given settings that are not a TrainSettings (here the dict
    of one's fields) raises a ValueError naming settings and the type given, before
    anything is written."""
    fields = dataclasses.asdict(settings(impl, tmp_path))
    with pytest.raises(ValueError, match=r"settings must be a TrainSettings, got dict"):
        train(fields, tokens=TOKENS, impl=impl.module, progress=False, printer=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_an_empty_token_stream_is_a_training_split_too_short(impl, tmp_path):
    """SPEC §trainer: a training split shorter than seq_len + 1 tokens is refused
    before the run writes anything; an empty token stream is the shortest ("the
    training split has 0 tokens; need at least seq_len + 1 = 9")."""
    with pytest.raises(ValueError, match=r"the training split has 0 tokens; need at least seq_len \+ 1 = 9"):
        run(impl, settings(impl, tmp_path), tokens=np.zeros(0, dtype=np.int64))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("gap", [0.5, 1.0])
def test_a_second_signal_within_the_second_is_the_same_request_and_one_a_second_later_stops_at_once(
        impl, tmp_path, sigterm_default, monkeypatch, gap):
    """SPEC §trainer: a second signal at least one second (of the monotonic clock) after
    the first stops the run at once, abandoning step 1 (TrainingInterrupted carrying
    best.ckpt of step 0); one within the second is the same request delivered twice,
    so the run stops at step 1's boundary as for one signal, writing latest.ckpt.
    The clock is set by hand: 1.0 s apart is the boundary, and it stops at once."""
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    adamw_step, forward = _forced_second_signal(impl, clock, gap)
    with pytest.raises(TrainingInterrupted) as info:
        train(settings(impl, tmp_path, eval_interval=1, warmup_steps=0), tokens=TOKENS,
              impl=_wrapped(impl, adamw_step=adamw_step, forward=forward), progress=False, printer=lambda line: None)
    exc, run_dir = info.value, tmp_path / "run"
    assert (exc.signum, exc.step) == (signal.SIGTERM, 1), str(exc)
    if gap < 1.0:
        assert str(exc) == f"stopped by SIGTERM at step 1: {run_dir / 'latest.ckpt'} holds the state after 1 updates"
        assert exc.checkpoint == str(run_dir / "latest.ckpt")
    else:
        assert exc.checkpoint == str(run_dir / "best.ckpt"), str(exc)
        assert not (run_dir / "latest.ckpt").exists()
    assert impl.load_checkpoint(exc.checkpoint).metadata["step"] == (1 if gap < 1.0 else 0)


def test_samples_are_empty_without_a_tokenizer_or_with_a_prompt_of_no_tokens(impl, tmp_path):
    """SPEC §trainer: a sample is generated from sample_prompt and decoded with the run's
    tokenizer; a run without one (tokens given alone) has nothing to encode or decode
    with, and a prompt that encodes to no tokens has nothing to continue: every sample
    such a run logs is the empty string, in its history and in training_log.csv."""
    for name, tokenizer, prompt in (("none", None, "To be"), ("empty", byte_tokenizer(impl), "")):
        s = settings(impl, tmp_path / name, max_steps=4, eval_interval=2, sample_interval=2, sample_prompt=prompt)
        result = run(impl, s, tokenizer=tokenizer)
        assert [h["step"] for h in result.history] == [0, 2, 4]
        assert [h["sample"] for h in result.history] == ["", "", ""], (name, result.history)
        assert [r["sample"] for r in log_rows(tmp_path / name / "run" / "training_log.csv")] == ["", "", ""]


def test_a_checkpoint_reached_through_a_symbolic_link_resumes_its_own_run(impl, tmp_path):
    """SPEC §trainer: a checkpoint belongs to the run directory its file lies in; a
    symbolic link to it from elsewhere (no run.json beside the link) names that same
    file, so resuming through the link continues that run, in its directory."""
    s = settings(impl, tmp_path, max_steps=6, eval_interval=3, stop_at=3)
    run(impl, s)
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "mine.ckpt"
    link.symlink_to(tmp_path / "run" / "final.ckpt")
    resumed = run(impl, dataclasses.replace(s, stop_at=None, run_dir=None, resume=str(link)))
    assert resumed.step == 6 and os.path.samefile(resumed.run_dir, tmp_path / "run")
    assert os.listdir(tmp_path / "links") == ["mine.ckpt"]
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [r["step"] for r in doc["resumes"]] == [3]


def test_a_copy_resumed_into_a_directory_without_a_run_is_refused_naming_both(impl, tmp_path):
    """SPEC §trainer: a checkpoint outside any run directory resumes only in the run
    directory named by run_dir, which must hold a run (its run.json): an empty or new
    directory is refused with a RunDirError naming the checkpoint's directory and that
    one, and nothing is written to either."""
    from feste.rundir import RunDirError

    s = settings(impl, tmp_path / "a", max_steps=6, eval_interval=3, stop_at=3)
    run(impl, s)
    (tmp_path / "moved").mkdir()
    copy = tmp_path / "moved" / "final.ckpt"
    copy.write_bytes((tmp_path / "a" / "run" / "final.ckpt").read_bytes())
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "new"):
        with pytest.raises(RunDirError) as info:
            run(impl, dataclasses.replace(s, stop_at=None, run_dir=str(target), resume=str(copy)))
        message = str(info.value)
        assert str(tmp_path / "moved") in message and str(target) in message, message
    assert os.listdir(tmp_path / "empty") == [] and not (tmp_path / "new").exists()
    assert os.listdir(tmp_path / "moved") == ["final.ckpt"]


def test_a_run_checkpoint_that_cannot_be_read_does_not_vouch_for_a_copy(impl, tmp_path, monkeypatch):
    """SPEC §trainer: a checkpoint outside any run directory resumes only a run one of
    whose checkpoints holds its bytes. A checkpoint of the run that cannot be read
    (permission denied) shows nothing: a copy of another state, of the size of the
    run's final.ckpt, resumed into the run whose checkpoints cannot be read is refused
    (RunDirError) and the run is left as it was. The suite may run as root, who reads
    every file, so the refusal to read is made by `open`."""
    import builtins
    import errno

    from feste.rundir import RunDirError

    s = settings(impl, tmp_path, max_steps=6, eval_interval=3, stop_at=3)
    run(impl, s)
    run_dir = tmp_path / "run"
    other = impl.load_checkpoint(run_dir / "final.ckpt")
    other.params.data[0] = np.nextafter(other.params.data[0], np.float32(np.inf))
    (tmp_path / "moved").mkdir()
    copy = tmp_path / "moved" / "final.ckpt"
    impl.save_checkpoint(copy, other)
    assert copy.stat().st_size == (run_dir / "final.ckpt").stat().st_size
    before = run_files(run_dir)
    real_open = builtins.open

    def unreadable_in_the_run(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).parent == run_dir and Path(file).suffix == ".ckpt":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", unreadable_in_the_run)
    with pytest.raises(RunDirError, match="has its bytes"):
        run(impl, dataclasses.replace(s, stop_at=None, resume=str(copy)))
    monkeypatch.undo()
    assert run_files(run_dir) == before


def test_a_resume_without_run_dir_records_no_run_dir_change(impl, tmp_path):
    """SPEC §trainer: run_dir belongs to one call, not to the run, and is never recorded
    as changed: a resume that leaves run_dir out (the run.json records the directory)
    records no change."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    run(impl, dataclasses.replace(s, stop_at=None, run_dir=None, resume=str(tmp_path / "run" / "final.ckpt")))
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [r["changed"] for r in doc["resumes"]] == [{}], doc["resumes"]


def test_a_resume_whose_last_step_is_the_checkpoints_evaluates_it_and_updates_nothing(impl, tmp_path):
    """SPEC §trainer: only a last step before the checkpoint's is refused; a resume
    whose last step (stop_at) is the checkpoint's own step runs that step's
    evaluation and stops without an update: final.ckpt holds the same parameters."""
    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    before = impl.load_checkpoint(tmp_path / "run" / "final.ckpt")
    resumed = run(impl, dataclasses.replace(s, resume=str(tmp_path / "run" / "final.ckpt")))
    assert resumed.step == 4 and [h["step"] for h in resumed.history] == [4], resumed.history
    after = impl.load_checkpoint(tmp_path / "run" / "final.ckpt")
    assert after.metadata["step"] == 4
    assert_bitwise("params after a resume that makes no update", after.params.data, before.params.data)


@pytest.mark.parametrize("n_val, windows", [(8, 0), (9, 1), (24, 2), (25, 3)])
def test_the_validation_windows_are_those_that_fit_and_a_split_without_one_is_refused(impl, tmp_path, n_val,
                                                                                      windows):
    """SPEC §trainer: the validation loss is taken over the first eval_batches * B
    sequential windows of the validation split (starts 0, T, 2T, ...), each of T + 1
    tokens (inputs and their targets), fewer if the split is short: (n - 1) // T of
    them fit in n tokens (run.json's `validation_windows`). A validation split with
    no window (shorter than seq_len + 1 tokens) is refused before the run writes
    anything, naming both counts. val_fraction 0.25 of 4 n tokens: n for validation."""
    s = settings(impl, tmp_path, val_fraction=0.25, max_steps=1, eval_interval=1, eval_batches=2)
    tokens = TOKENS[:4 * n_val]
    if windows == 0:
        with pytest.raises(ValueError, match=rf"^the validation split has {n_val} tokens; need at least seq_len \+ 1 "
                                             rf"= {s.seq_len + 1}$"):
            run(impl, s, tokens=tokens)
        assert not (tmp_path / "run").exists()
        return
    result = run(impl, s, tokens=tokens)
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (doc["val_tokens"], doc["validation_windows"]) == (n_val, windows), doc
    assert all(math.isfinite(h["val_loss"]) for h in result.history), result.history


def test_run_json_records_the_sha256_of_the_tokens_as_little_endian_int64(impl, tmp_path):
    """SPEC §trainer: run.json's tokens_sha256 is the sha256 of the token stream as
    little-endian int64, whatever integer dtype the tokens come in (int32 here), over the
    whole stream: 2^21 + 3 tokens, more than two slices of 2^20 if the hash is taken
    in slices."""
    import hashlib

    tokens = np.tile(TOKENS, (1 << 21) // len(TOKENS) + 1)[:(1 << 21) + 3].astype(np.int32)
    run(impl, settings(impl, tmp_path, max_steps=1, eval_interval=1), tokens=tokens)
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert doc["tokens"] == len(tokens)
    assert doc["tokens_sha256"] == hashlib.sha256(tokens.astype("<i8").tobytes()).hexdigest()


def test_a_resume_with_other_tokens_names_the_run_and_both_streams(impl, tmp_path):
    """SPEC §trainer: a resume compares its tokens' sha256 with run.json's; other
    tokens are a ValueError naming the run directory and both streams' token counts
    and sha256 prefixes."""
    import hashlib

    s = settings(impl, tmp_path, max_steps=8, eval_interval=4, stop_at=4)
    run(impl, s)
    other = markov_tokens(n=5000, seed=1)

    def digest(tokens):
        return hashlib.sha256(np.asarray(tokens, dtype="<i8").tobytes()).hexdigest()[:12]

    with pytest.raises(ValueError) as info:
        run(impl, dataclasses.replace(s, stop_at=None, resume=str(tmp_path / "run" / "final.ckpt")), tokens=other)
    message = str(info.value)
    assert f"cannot resume the run in {tmp_path / 'run'}: its tokens differ" in message, message
    for count, sha in ((5000, digest(other)), (len(TOKENS), digest(TOKENS))):
        assert f"{count:,} tokens, sha256 {sha}..." in message, message
