"""The trainer (SPEC section 7).

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
import types

import numpy as np
import pytest

from conformance.assertions import assert_bitwise
from conformance.tolerances import LEARNING_MIN_DROP

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
    return impl.TrainSettings(**base)


def run(impl, s, tokens=TOKENS, **kw):
    return impl.train(s, tokens=tokens, tokenizer=None, impl=impl.module, progress=False,
                      printer=lambda line: None, **kw)


def log_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        del r["elapsed_seconds"]  # wall time is the only column allowed to differ
    return rows


def test_first_steps_match_a_hand_written_loop(impl, tmp_path):
    """init -> batch(seed, s) -> forward/backward -> clip -> adamw(lr(s)): 3 steps, bitwise."""
    s = settings(impl, tmp_path, max_steps=3, warmup_steps=2, schedule="cosine", min_lr=1e-4, grad_clip=0.5)
    result = run(impl, s)
    config = s.model_config()
    params = impl.init_params(config, seed=s.seed)
    state = impl.adamw_init(params)
    train_tokens, _ = impl.train_val_split(TOKENS, s.val_fraction)
    for step in range(3):
        x, y = impl.random_batch(train_tokens, s.batch_size, s.seq_len, s.seed, step)
        _, _, cache = impl.forward(params, x, y)
        grads = impl.backward(params, cache)
        impl.clip_grad_norm(grads, s.grad_clip)
        lr = impl.learning_rate(step, s.lr, s.warmup_steps, s.max_steps, "cosine", 1e-4)
        impl.adamw_step(params, grads, state, lr, s.beta1, s.beta2, s.eps, s.weight_decay)
    assert result.step == 3 and state.step == 3
    assert_bitwise("params after 3 steps", result.params.data, params.data)
    assert_bitwise("m after 3 steps", result.optimizer.m.data, state.m.data)


def test_dropout_steps_match_a_hand_written_loop_and_evaluate_without_dropout(impl, tmp_path):
    """With dropout 0.3, step s draws the masks of DropoutKey(seed, s) (SPEC
    2.7, 7.3): 3 steps of a hand-written loop give the trainer's bytes; the
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
    With dropout the resumed run takes the rate from the checkpoint (its own
    settings say 0 here) and draws the uninterrupted run's masks."""
    kw = dict(max_steps=20, schedule=schedule, min_lr=3e-4, dropout=dropout)
    full = run(impl, settings(impl, tmp_path / "a", **kw))
    s = settings(impl, tmp_path / "b", stop_at=first_leg, **kw)
    part = run(impl, s)
    assert part.step == first_leg and part.stop_reason == "stop_at"
    resumed = run(impl, dataclasses.replace(s, stop_at=None, resume=str(part.checkpoints["final"]), dropout=0.0))
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
    # the header and the columns of SPEC 7; lr of row s is learning_rate(s)
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
    calls = {"n": 0}

    def backward(params, cache):
        grads = impl.module.backward(params, cache)
        calls["n"] += 1
        if calls["n"] == 8:
            grads.data[3] = np.nan
        return grads

    wrapped = types.SimpleNamespace(**{n: getattr(impl.module, n) for n in dir(impl.module) if not n.startswith("_")})
    wrapped.backward = backward
    s = settings(impl, tmp_path, checkpoint_interval=5)
    with pytest.raises(impl.TrainingDiverged) as info:
        impl.train(s, tokens=TOKENS, impl=wrapped, progress=False, printer=lambda line: None)
    message = str(info.value)
    assert "step 7" in message, message
    named = message.rsplit(" ", 1)[-1]
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
