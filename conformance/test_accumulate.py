"""Micro-batches (SPEC §backward and §micro-batches): backward's `mean_over` and
`accumulate` arguments, and the trainer's ordered sum over micro-batches and
processes.

Oracles: the definition itself (`accumulate` must equal computing the
gradient and adding it, bitwise); the whole batch, whose gradient the
ordered sum of its micro-batches must reproduce up to summation order
(float64: 1e-12); a hand-written loop of SPEC §micro-batches's formula for the
trainer; and an in-process group of threads (conformance/thread_group.py)
standing in for N processes, which must not change a byte.
"""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

import reference
from conformance.assertions import assert_bitwise, assert_grads_close, assert_scaled_max
from conformance.test_model import params_for, tokens_for
from conformance.tolerances import ACCUM_F64_REL_NORM, ACCUM_GRAD_REL_NORM, ORACLE_F64_RTOL
from feste.trainer import TrainSettings, train  # the harness that drives the implementation

# not a preset, sizes off every block size of fast (T 37, C 24, NH 6)
ODD = reference.Config(vocab_size=61, n_embd=24, n_heads=6, n_layers=2, block_size=40)
DTYPES = [np.float32, np.float64]
DT_IDS = ["f32", "f64"]


def perturbed_params(impl, config, dtype, seed=0):
    """Params drawn N(0, 0.2^2), gammas 1 + N(0, 0.2^2) (test_model.params_for):
    biases and betas non-zero, so a gradient written to the wrong place cannot
    hide behind the GPT-2 init's zeros and ones. Skips an implementation without `dtype`."""
    return params_for(impl, config, dtype, seed=seed, std=0.2)


# --- backward's arguments (SPEC §backward) ---------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_mean_over_the_batch_is_the_default(impl, dtype):
    params = perturbed_params(impl, ODD, dtype)
    x, y = tokens_for(ODD, 3, 37)
    _, _, cache = impl.forward(params, x, y)
    want = impl.backward(params, cache).data.copy()
    got = impl.backward(params, cache, mean_over=3 * 37).data
    assert_bitwise("backward(mean_over=B*T) vs backward()", got, want, {"impl": impl.name})


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_accumulate_adds_the_gradient_exactly(impl, dtype):
    """backward(accumulate=A, mean_over=n) leaves A = A0 + g, g being what
    backward(mean_over=n) returns, one rounding per element, and returns A;
    twice in a row (state must not leak between calls), params untouched."""
    params = perturbed_params(impl, ODD, dtype)
    before = params.data.copy()
    x, y = tokens_for(ODD, 3, 37)
    _, _, cache = impl.forward(params, x, y)
    n = 5 * 3 * 37
    g = impl.backward(params, cache, mean_over=n).data.copy()
    rng = np.random.default_rng(1)
    a0 = rng.normal(0.0, 1e-3, g.size).astype(dtype)
    acc = reference.Params(ODD, a0.copy())
    out = impl.backward(params, cache, accumulate=acc, mean_over=n)
    assert out is acc, f"{impl.name}: backward(accumulate=A) must return A itself"
    context = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    assert_bitwise("A after one accumulate", acc.data, a0 + g, context)
    impl.backward(params, cache, accumulate=acc, mean_over=n)
    assert_bitwise("A after two accumulates", acc.data, (a0 + g) + g, context)
    assert_bitwise("params after accumulating backwards", params.data, before, context)
    again = impl.backward(params, cache, mean_over=n).data
    assert_bitwise("backward(mean_over=n) after the accumulates", again, g, context)


def test_mean_over_divides_the_loss_gradient(impl):
    """float64: the gradient with mean_over = 3*B*T is the default one divided
    by 3, up to the rounding of where the division happens (ORACLE_F64_RTOL)."""
    params = perturbed_params(impl, ODD, np.float64)
    x, y = tokens_for(ODD, 2, 37)
    _, _, cache = impl.forward(params, x, y)
    whole = impl.backward(params, cache).data.copy()
    third = impl.backward(params, cache, mean_over=3 * 2 * 37).data
    assert_scaled_max("backward(mean_over=3BT) * 3", third * 3.0, whole, ORACLE_F64_RTOL, {"impl": impl.name})


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("b", [1, 2, 3])
def test_micro_batches_sum_to_the_whole_batch(impl, dtype, b):
    """B = 6 rows cut into micro-batches of b, each backward with mean_over =
    B*T added in order (SPEC §micro-batches), against backward on the whole batch: the
    same sums in another order (ACCUM_GRAD_REL_NORM, float64 ACCUM_F64_REL_NORM)."""
    params = perturbed_params(impl, ODD, dtype)
    B, T = 6, 37
    x, y = tokens_for(ODD, B, T)
    _, loss, cache = impl.forward(params, x, y)
    whole = impl.backward(params, cache).copy()
    acc, losses = None, []
    for m in range(B // b):
        rows = slice(m * b, (m + 1) * b)
        _, loss_m, cache_m = impl.forward(params, x[rows], y[rows])
        losses.append(loss_m)
        if acc is None:
            acc = impl.backward(params, cache_m, mean_over=B * T)
        else:
            impl.backward(params, cache_m, accumulate=acc, mean_over=B * T)
    limit = ACCUM_GRAD_REL_NORM if dtype == np.float32 else ACCUM_F64_REL_NORM
    assert_grads_close(acc, whole, limit, {"impl": impl.name, "dtype": np.dtype(dtype).name, "b": b})
    assert np.mean(losses) == pytest.approx(loss, rel=limit)


def test_bad_micro_batch_arguments_are_named(impl):
    params = perturbed_params(impl, ODD, np.float32)
    x, y = tokens_for(ODD, 2, 5)
    _, _, cache = impl.forward(params, x, y)
    acc = impl.backward(params, cache).copy()
    kept = acc.data.copy()
    for bad in (0, 9, True, 2.5, "10"):
        with pytest.raises(ValueError, match="mean_over"):
            impl.backward(params, cache, mean_over=bad)
    other = reference.Config(vocab_size=61, n_embd=24, n_heads=6, n_layers=1, block_size=40)
    for bad in (params, acc.data, reference.Params(other), acc.astype(np.float64)):
        with pytest.raises(ValueError, match="accumulate"):
            impl.backward(params, cache, accumulate=bad)
    assert_bitwise("A after refused calls", acc.data, kept, {"impl": impl.name})


def test_accumulate_into_the_params_own_buffer_is_refused(impl):
    """SPEC §errors: accumulate must be a gradient buffer, not the params themselves,
    and a second Params over the params' own buffer is the params too: adding the
    gradients there would change the parameters. ValueError naming accumulate;
    nothing is modified."""
    params = perturbed_params(impl, ODD, np.float32)
    x, y = tokens_for(ODD, 2, 5)
    _, _, cache = impl.forward(params, x, y)
    kept = params.data.copy()
    alias = impl.Params(params.config, params.data)
    assert alias.data is params.data
    with pytest.raises(ValueError, match="accumulate"):
        impl.backward(params, cache, accumulate=alias)
    assert_bitwise("params after a refused accumulate", params.data, kept, {"impl": impl.name})


# --- the ordered sum over micro-batches and processes (SPEC §micro-batches) --------------------------
def step_case(impl, B=8, T=37, seed=0):
    params = perturbed_params(impl, ODD, np.float32, seed=seed)
    x, y = tokens_for(ODD, B, T, seed=seed)
    return params, x, y


def hand_step(impl, params, x, y, b):
    """SPEC §micro-batches written out: micro-batch m is rows m*b..(m+1)*b-1, g_m its
    backward with mean_over = B*T, G = (g_0 + g_1) + ... in order, the loss
    fsum(loss_m) / M."""
    import math

    B, T = x.shape
    G, losses = None, []
    for m in range(B // b):
        _, loss, cache = impl.forward(params, x[m * b:(m + 1) * b], y[m * b:(m + 1) * b])
        g = impl.backward(params, cache, mean_over=B * T).data.copy()
        G = g if G is None else G + g
        losses.append(float(loss))
    return math.fsum(losses) / len(losses), G


def test_split_validates_its_sizes():
    from feste.accumulate import Split

    assert (Split(12, 2, 3).micro_batch, Split(12, 2, 3).n_micro) == (2, 6)
    assert Split(12, 2, 3).micro_batches(1) == [1, 3, 5]
    assert Split(12, 2, 3).rows(5) == slice(10, 12)
    for bad, word in (((12, 5, 1), "multiple of N\\*K = 5"), ((4, 8, 1), "multiple of N\\*K = 8"),
                      ((12, 1, 0), "grad_accum"), ((12, 1, True), "grad_accum"), ((0, 1, 1), "batch_size")):
        with pytest.raises(ValueError, match=word):
            Split(*bad)


def test_split_refuses_a_non_integer_and_names_n_times_k():
    """SPEC §micro-batches: B, N and K are integers >= 1 (a float is refused even
    when it divides B), and B must be a multiple of N*K, the message naming that
    product (including when only K > 1 keeps B from being divided)."""
    from feste.accumulate import Split

    with pytest.raises(ValueError, match="grad_accum must be an integer >= 1, got 2.0"):
        Split(12, 1, 2.0)
    for bad, word in (((9, 1, 2), "multiple of N\\*K = 2 \\("), ((9, 2, 2), "multiple of N\\*K = 4 \\(")):
        with pytest.raises(ValueError, match=word):
            Split(*bad)


def test_one_process_accumulation_is_the_ordered_sum(impl):
    """step_gradient with one process and K = 4 micro-batches equals the hand-written formula, bitwise."""
    from feste.accumulate import Split, step_gradient

    params, x, y = step_case(impl)
    want_loss, want = hand_step(impl, params, x, y, 2)
    loss, grads = step_gradient(impl.module, params, x, y, Split(8, 1, 4))
    assert_bitwise("G of 4 micro-batches", grads.data, want, {"impl": impl.name})
    assert loss == want_loss


def test_one_micro_batch_is_the_plain_backward(impl):
    """M = 1 is the step of SPEC §trainer exactly, and calls backward(params, cache)
    only: an implementation whose backward predates SPEC §micro-batches still trains so;
    asked for more micro-batches it is refused, naming the missing arguments."""
    from feste.accumulate import Split, check_split, step_gradient

    params, x, y = step_case(impl)
    _, loss, cache = impl.forward(params, x, y)
    want = impl.backward(params, cache).data.copy()

    def old_backward(params, cache):
        return impl.module.backward(params, cache)

    old = types.SimpleNamespace(__name__="old_impl", forward=impl.module.forward, backward=old_backward)
    got_loss, got = step_gradient(old, params, x, y, Split(8, 1, 1))
    assert_bitwise("G of one micro-batch", got.data, want, {"impl": impl.name})
    assert got_loss == float(loss)
    check_split(old, Split(8, 1, 1))
    with pytest.raises(ValueError, match="old_impl.backward takes no accumulate/mean_over"):
        check_split(old, Split(8, 1, 2))


def test_a_backward_without_the_micro_batch_arguments_is_named():
    """SPEC §micro-batches: more than one micro-batch with a backward lacking
    accumulate/mean_over is refused, naming the implementation by its
    `__name__`, else by its type's name; a backward whose signature cannot be
    read (a builtin's: `max` has none) counts as lacking them."""
    from feste.accumulate import Split, check_split

    unreadable = types.SimpleNamespace(__name__="c_impl", forward=None, backward=max)
    with pytest.raises(ValueError, match="^c_impl.backward takes no accumulate/mean_over arguments"):
        check_split(unreadable, Split(8, 1, 2))

    class ObjectImpl:  # an implementation that is an object, not a module: no __name__
        @staticmethod
        def backward(params, cache):
            raise AssertionError("not called")

    with pytest.raises(ValueError, match="^ObjectImpl.backward takes no accumulate/mean_over arguments"):
        check_split(ObjectImpl(), Split(8, 2, 1))
    check_split(ObjectImpl(), Split(8, 1, 1))  # one micro-batch needs nothing more


def test_a_backward_with_only_one_of_the_micro_batch_arguments_is_refused():
    """SPEC §micro-batches: more than one micro-batch needs a backward taking both
    `accumulate` and `mean_over` (§contract): one of them alone is refused."""
    from feste.accumulate import Split, check_split

    def only_mean_over(params, cache, mean_over=None):
        raise AssertionError("not called")

    def only_accumulate(params, cache, accumulate=None):
        raise AssertionError("not called")

    for backward in (only_mean_over, only_accumulate):
        half = types.SimpleNamespace(__name__="half_impl", forward=None, backward=backward)
        with pytest.raises(ValueError, match="^half_impl.backward takes no accumulate/mean_over arguments"):
            check_split(half, Split(8, 1, 2))


def test_a_split_that_does_not_fit_the_step_is_refused(impl):
    """SPEC §micro-batches: step_gradient refuses a split whose B is not the
    batch's rows, or whose N is not the group's size, before any forward."""
    from feste.accumulate import Split, step_gradient

    params, x, y = step_case(impl)  # 8 rows
    for split, word in ((Split(4, 1, 1), "a batch of 8 rows on 1 process"),
                        (Split(16, 1, 2), "a batch of 8 rows on 1 process"),
                        (Split(8, 2, 1), "a batch of 8 rows on 1 process")):
        with pytest.raises(ValueError, match=f"^the split .* does not fit {word}"):
            step_gradient(impl.module, params, x, y, split)


@pytest.mark.parametrize("chunk", [None, 1000], ids=["one-chunk", "chunked"])
def test_processes_do_not_change_a_byte(impl, monkeypatch, chunk):
    """N processes x K micro-batches for N*K = 4 (threads standing in for
    processes): the same G, loss and validation loss on every rank as one
    process with 4 micro-batches, bit for bit; also with the relay's messages
    cut into chunks of 1000 elements (a partial last one)."""
    from conformance.thread_group import run_ranks
    from feste.accumulate import Split, evaluate, step_gradient

    if chunk is not None:
        monkeypatch.setattr("feste.accumulate.RELAY_CHUNK", chunk)
    params, x, y = step_case(impl)
    windows = tokens_for(ODD, 7, 37, seed=3)  # 7 windows: a short last batch of b = 2 rows

    def step(N, K):
        def rank(group):
            running = reference.Params(ODD) if N > 1 else None
            loss, grads = step_gradient(impl.module, params, x, y, Split(8, N, K), group, running)
            return loss, grads.data.copy(), evaluate(impl.module, params, windows, 2, group)
        return run_ranks(N, rank)

    want_loss, want, want_val = step(1, 4)[0]
    for N, K in ((2, 2), (4, 1)):
        for r, (loss, got, val) in enumerate(step(N, K)):
            context = {"impl": impl.name, "N": N, "K": K, "rank": r}
            assert_bitwise("G", got, want, context)
            assert (loss, val) == (want_loss, want_val), context


@pytest.mark.parametrize("n", [2, 3])
def test_a_setup_failure_stops_every_process_together(n):
    """SPEC §micro-batches: the processes' setup outcomes are gathered
    (SetupCheck, threads standing in for n processes). All passed: each learns
    every process's note, by rank. Ranks 1 (and 2) failed: every rank raises
    together, the failing ones their own error, rank 0 ProcessFailed naming the
    first failing rank, 1, and its error (type and message, cut to 2048 bytes
    of UTF-8: here inside a two-byte character)."""
    from conformance.thread_group import run_ranks
    from feste.accumulate import ProcessFailed, SetupCheck, raised_together

    notes = run_ranks(n, lambda group: SetupCheck(group).passed(f"note {group.rank}"))
    assert notes == [[f"note {r}" for r in range(n)]] * n
    long = "x" + "é" * 2048  # "ValueError: x" is 13 bytes, so byte 2048 is the first of an é
    errors = {1: ValueError(long), 2: OSError("rank 2 failed too")}
    errors = {r: exc for r, exc in errors.items() if r < n}

    def rank(group):
        setup = SetupCheck(group)
        try:
            if group.rank in errors:
                setup.failed(errors[group.rank])
            return setup.passed("ready")
        except Exception as exc:  # noqa: BLE001 - each rank's outcome is the test's
            return exc

    outcomes = run_ranks(n, rank)
    assert all(outcomes[r] is exc for r, exc in errors.items()), outcomes
    assert isinstance(outcomes[0], ProcessFailed), outcomes[0]
    assert all(raised_together(exc) for exc in outcomes), "every process raises at the same point"
    text = str(outcomes[0])
    kept = "ValueError: x" + "é" * ((2048 - 13) // 2)  # the whole characters of the first 2048 bytes
    assert "process 1 " in text and kept in text and kept + "é" not in text, text
    assert "rank 2 failed too" not in text


def test_setup_notes_and_errors_are_gathered_whole():
    """SPEC §micro-batches: the notes every process passes and a failing rank's
    error reach every process as they were (here ending in "X" and in spaces,
    which no padding of the message may eat)."""
    from conformance.thread_group import run_ranks
    from feste.accumulate import ProcessFailed, SetupCheck

    notes = run_ranks(2, lambda group: SetupCheck(group).passed(f"run-{group.rank}-XX  "))
    assert notes == [["run-0-XX  ", "run-1-XX  "]] * 2

    def rank(group):
        setup = SetupCheck(group)
        try:
            if group.rank == 1:
                setup.failed(ValueError("bad value X"))
            return setup.passed("ready")
        except Exception as exc:  # noqa: BLE001 - each rank's outcome is the test's
            return exc

    outcomes = run_ranks(2, rank)
    assert isinstance(outcomes[0], ProcessFailed) and str(outcomes[0]).endswith("ValueError: bad value X"), outcomes


def test_a_failure_after_setup_is_the_process_own():
    """SPEC §micro-batches: once setup has ended (every process passed), a
    failure is the failing process's alone: SetupCheck.failed re-raises it at once,
    with no exchange and not marked as raised by every process (it ends the group
    through MPI_Abort); with one process likewise. An error nobody marked
    (feste.accumulate.together) is not one every process raised."""
    from conformance.thread_group import run_ranks
    from feste.accumulate import SetupCheck, raised_together

    assert not raised_together(ValueError("one process's"))

    def rank(group):
        setup = SetupCheck(group)
        setup.passed("ready")
        error = OSError(f"disk full on rank {group.rank}")
        try:
            setup.failed(error)
        except OSError as exc:
            return exc is error, raised_together(exc)
        return "no error", None

    for n in (1, 2):
        assert run_ranks(n, rank) == [(True, False)] * n, n


def test_a_signal_one_process_received_stops_every_process():
    """SPEC §micro-batches: at a step boundary the processes exchange the signals
    they received, so a signal that reached one of them (here rank 1 of 2) stops
    all; the first rank's signal wins; with none, none stops."""
    import signal

    from conformance.thread_group import run_ranks
    from feste.trainer import StopSignals

    for received, want in (({1: signal.SIGTERM}, signal.SIGTERM), ({}, None),
                           ({0: signal.SIGINT, 1: signal.SIGTERM}, signal.SIGINT)):
        def rank(group):
            stops = StopSignals()  # not entered: the signal is recorded as its handler would
            stops.signum = received.get(group.rank)
            return stops.agreed(group)
        assert run_ranks(2, rank) == [want, want], received


def test_validation_is_shared_not_repeated_by_processes(impl, tmp_path):
    """SPEC §micro-batches: validation batch e runs on rank e mod N, so N processes
    run, together, the forwards one process runs with the same micro-batches: two
    processes x grad_accum 1 make exactly as many forward calls in all as one
    process x grad_accum 2."""
    import threading

    calls = []

    def forward(*args, **kw):
        calls.append(threading.current_thread().name)
        return impl.module.forward(*args, **kw)

    wrapped = types.SimpleNamespace(**{n: getattr(impl.module, n) for n in dir(impl.module) if not n.startswith("_")})
    wrapped.forward = forward
    counts = []
    for processes, k in ((1, 2), (2, 1)):
        calls.clear()
        s = trainer_settings(impl, tmp_path / f"{processes}", grad_accum=k, max_steps=4)
        train_ranks(types.SimpleNamespace(module=wrapped), s, processes)
        counts.append(len(calls))
    assert counts[0] == counts[1], f"forward calls: {counts[0]} by one process, {counts[1]} by two"


def test_validation_loss_in_batches(impl):
    """evaluate: batches of b rows, weighted by their rows, summed in batch order."""
    from feste.accumulate import evaluate

    params, _, _ = step_case(impl)
    x, y = tokens_for(ODD, 7, 37, seed=3)
    total = 0.0
    for start in range(0, 7, 3):
        total += impl.forward(params, x[start:start + 3], y[start:start + 3])[1] * len(x[start:start + 3])
    assert evaluate(impl.module, params, (x, y), 3) == total / 7


# --- the trainer (SPEC §trainer with 7.5) ---------------------------------------------------------
from conformance.test_train import TOKENS, hand_written_loop, log_rows  # noqa: E402  (the trainer tests' data and loop)


def trainer_settings(impl, run_dir, **kw):
    """The trainer tests' small model (C 16, L 1, block 16) with B = 8 rows of T = 8."""
    base = dict(preset="tiny", n_embd=16, n_heads=2, n_layers=1, block_size=16, vocab_size=256,
                batch_size=8, seq_len=8, max_steps=12, lr=3e-3, warmup_steps=3, eval_interval=4,
                eval_batches=2, sample_interval=8, checkpoint_interval=5, run_dir=str(run_dir))
    base.update(kw)
    return TrainSettings(**base)


def train_ranks(impl, settings, processes=1):
    """Train on `processes` threads standing in for processes; rank 0's result."""
    from conformance.thread_group import run_ranks

    def rank(group):
        return train(settings, tokens=TOKENS, impl=impl.module, progress=False, printer=lambda line: None,
                          group=group if processes > 1 else None)
    return run_ranks(processes, rank)[0]


def run_files(run_dir):
    """What a run leaves that must not depend on the split: checkpoint bytes and log rows (elapsed dropped)."""
    files = {name: (run_dir / name).read_bytes() for name in ("best.ckpt", "latest.ckpt", "final.ckpt")}
    return files, log_rows(run_dir / "training_log.csv")


def test_trainer_step_is_the_ordered_sum(impl, tmp_path):
    """grad_accum 4 (b = 2): three trainer steps equal a hand-written loop of
    SPEC §micro-batches's formula followed by clip and AdamW, bitwise."""
    s = trainer_settings(impl, tmp_path / "run", grad_accum=4, max_steps=3, warmup_steps=2, grad_clip=0.5)
    result = train_ranks(impl, s)
    params, state = hand_written_loop(
        impl, s, 3, lambda params, x, y: reference.Params(params.config, hand_step(impl, params, x, y, 2)[1]))
    assert_bitwise("params after 3 accumulated steps", result.params.data, params.data, {"impl": impl.name})
    assert_bitwise("v after 3 accumulated steps", result.optimizer.v.data, state.v.data, {"impl": impl.name})


def test_trainer_bytes_do_not_depend_on_the_split(impl, tmp_path):
    """b = 2 rows: 1 process x 4 micro-batches, 2 x 2 and 4 x 1 (threads
    standing in for processes) write the same checkpoints, byte for byte, and
    the same log (losses, validation losses, norms, samples); only rank 0 writes."""
    want = None
    for processes, k in ((1, 4), (2, 2), (4, 1)):
        run_dir = tmp_path / f"n{processes}"
        result = train_ranks(impl, trainer_settings(impl, run_dir, grad_accum=k), processes)
        assert result.step == 12
        got = run_files(run_dir)
        run = json.loads((run_dir / "run.json").read_text())
        assert (run["processes"], run["grad_accum"], run["micro_batch"]) == (processes, k, 2)
        if want is None:
            want = got
            continue
        for name in want[0]:
            assert got[0][name] == want[0][name], f"{name} of {processes} x {k} differs from 1 x 4 [impl={impl.name}]"
        assert got[1] == want[1], f"the log of {processes} x {k} differs from 1 x 4 [impl={impl.name}]"


def test_accumulation_agrees_with_the_single_batch(impl, tmp_path):
    """grad_accum 4 against one batch of the same 8 rows, 12 steps: the loss of
    every logged step within TRAJECTORY_LOSS_RTOL (the sums differ in order only)."""
    from conformance.tolerances import TRAJECTORY_LOSS_RTOL

    one = train_ranks(impl, trainer_settings(impl, tmp_path / "one", grad_accum=1))
    four = train_ranks(impl, trainer_settings(impl, tmp_path / "four", grad_accum=4))
    a = np.array([h["train_loss"] for h in one.history])
    b = np.array([h["train_loss"] for h in four.history])
    assert a[-1] < a[0], "the run did not learn"
    np.testing.assert_allclose(b, a, rtol=TRAJECTORY_LOSS_RTOL)


def test_resume_with_another_split_of_the_same_micro_batch(impl, tmp_path):
    """Stopped at step 7 by 1 process x 4 micro-batches, resumed by 2 x 2 (and
    a stop at 7 by 2 x 2 resumed by 1 x 4): the files of the uninterrupted 1 x 4 run."""
    import dataclasses

    train_ranks(impl, trainer_settings(impl, tmp_path / "whole", grad_accum=4))
    want = run_files(tmp_path / "whole")
    for first, second in (((1, 4), (2, 2)), ((2, 2), (1, 4))):
        run_dir = tmp_path / f"split{first[0]}"
        s = trainer_settings(impl, run_dir, grad_accum=first[1], stop_at=7)
        part = train_ranks(impl, s, first[0])
        resumed = dataclasses.replace(s, stop_at=None, grad_accum=second[1], resume=str(part.checkpoints["final"]))
        train_ranks(impl, resumed, second[0])
        got = run_files(run_dir)
        assert got[0]["final.ckpt"] == want[0]["final.ckpt"], f"{first} then {second} [impl={impl.name}]"
        assert got[1] == want[1], f"log of {first} then {second} [impl={impl.name}]"


@pytest.mark.parametrize("processes, k, word", [(1, 3, "grad_accum 3"), (3, 1, "3 process"), (16, 1, "16 process"),
                                                 (1, 0, "grad_accum")])
def test_a_split_that_does_not_fit_is_refused(impl, tmp_path, processes, k, word):
    with pytest.raises(ValueError, match=word):
        train_ranks(impl, trainer_settings(impl, tmp_path / "run", grad_accum=k), processes)
    assert not (tmp_path / "run" / "final.ckpt").exists()


def test_dropout_masks_follow_the_rows_not_the_split(impl, tmp_path):
    """With dropout (SPEC §dropout) a micro-batch draws the masks of its rows in
    the whole batch (its row offset): 1 x 4 and 2 x 2 micro-batches write the
    same bytes, and against one batch of 8 rows every logged loss agrees to
    TRAJECTORY_LOSS_RTOL (masks drawn per micro-batch from row 0 would not)."""
    from conformance.tolerances import TRAJECTORY_LOSS_RTOL

    impl.DropoutKey  # skips an implementation without dropout, with the reason
    runs = {}
    for processes, k in ((1, 1), (1, 4), (2, 2)):
        run_dir = tmp_path / f"{processes}x{k}"
        runs[processes, k] = train_ranks(impl, trainer_settings(impl, run_dir, grad_accum=k, dropout=0.2), processes)
        runs[processes, k].files = run_files(run_dir)
    assert runs[2, 2].files == runs[1, 4].files, f"dropout: 2 x 2 differs from 1 x 4 [impl={impl.name}]"
    one = np.array([h["train_loss"] for h in runs[1, 1].history])
    four = np.array([h["train_loss"] for h in runs[1, 4].history])
    np.testing.assert_allclose(four, one, rtol=TRAJECTORY_LOSS_RTOL)


def test_processes_without_a_run_dir_share_the_one_rank_0_creates(impl, tmp_path, monkeypatch):
    """SPEC §micro-batches, §run-directories: with run_dir None (no --run-dir) rank 0
    creates a new runs/<preset>-<time> and every process learns it when setup ends:
    two processes (threads standing in) both return that one directory."""
    import dataclasses
    from pathlib import Path

    from conformance.thread_group import run_ranks

    monkeypatch.chdir(tmp_path)
    s = dataclasses.replace(trainer_settings(impl, "unused", max_steps=2, eval_interval=2), run_dir=None)
    results = run_ranks(2, lambda group: train(s, tokens=TOKENS, impl=impl.module, progress=False,
                                               printer=lambda line: None, group=group))
    created = list((tmp_path / "runs").iterdir())
    assert len(created) == 1 and (created[0] / "final.ckpt").is_file(), created
    assert [Path(r.run_dir).resolve() for r in results] == [created[0].resolve()] * 2, [r.run_dir for r in results]
