"""Same inputs, same bytes: across thread counts and repeated calls (SPEC §performance and §parallel-split).

- Thread-count independence: every function gives the same bytes with one
  Numba thread and with all of them (conformance/threads.py: the one knob
  the suite turns). For an implementation that does not use Numba it holds
  trivially; fast holds it by splitting work by output ownership or fixed
  chunks, never by thread count.
- Repeated calls: calling the same function again (an implementation may
  reuse workspaces from the first call), interleaving calls, and holding
  caches, gradients and logits across calls give the same bytes, and never
  overwrite what a caller holds.

The tests of fast's own machinery (its fastmath policy, compile cache,
workspaces and kernels against naive loops) are fast's, in tests/fast_internals/.
"""
from __future__ import annotations

import numpy as np
import pytest

from conformance.assertions import assert_bitwise
from conformance.cases import flat_params, model_case
from conformance.threads import all_threads, numba_threads

pytest.importorskip("numba")


# --- optimiser ------------------------------------------------------------------
@pytest.mark.parametrize("what", ["adamw", "clip", "grad_norm"])
def test_optim_thread_count_independent(impl, what):
    """Same bytes with 1 Numba thread and with all of them."""
    results = []
    for n in (1, all_threads()):
        with numba_threads(n):
            params = flat_params(impl, 0, 0.05)
            grads = flat_params(impl, 1, 0.3)
            if what == "adamw":
                state = impl.adamw_init(params)
                impl.adamw_step(params, grads, state, 1e-3)
                impl.adamw_step(params, grads, state, 1e-3)
                results.append(params.data.tobytes() + state.m.data.tobytes() + state.v.data.tobytes())
            elif what == "clip":
                norm = impl.clip_grad_norm(grads, 0.5)
                results.append(grads.data.tobytes() + np.float64(norm).tobytes())
            else:
                results.append(np.float64(impl.grad_norm(grads)).tobytes())
    assert results[0] == results[1], f"{impl.name} {what}: 1 thread and {all_threads()} threads differ"


# --- model, tokenizer, generation -----------------------------------------------
def _step_bytes(impl, params, tokens, targets, dropout=None) -> bytes:
    extra = {} if dropout is None else {"dropout": dropout}
    logits, loss, cache = impl.forward(params, tokens, targets, **extra)
    grads = impl.backward(params, cache)
    return np.asarray(logits).tobytes() + np.float64(loss).tobytes() + grads.data.tobytes()


@pytest.mark.parametrize("dropout_rate", [0.0, 0.2], ids=["no-dropout", "dropout"])
def test_forward_backward_thread_count_independent(impl, dropout_rate):
    """Logits, loss and every gradient byte are the same with 1 thread and
    with all, with and without dropout (SPEC §dropout: the masks are drawn per row
    or per (batch, head), whichever thread runs it)."""
    params, tokens, targets = model_case(impl, dropout_rate=dropout_rate)
    dropout = impl.DropoutKey(seed=4, step=9) if dropout_rate else None
    results = []
    for n in (1, all_threads()):
        with numba_threads(n):
            results.append(_step_bytes(impl, params, tokens, targets, dropout))
    assert results[0] == results[1], f"{impl.name}: forward/backward bytes depend on the thread count"


def test_second_backward_after_reuse_keeps_the_dropout_masks(impl):
    """backward may be called twice on one cache (SPEC §backward); with dropout the
    second call must use the forward's masks even after the activations'
    workspace went to a forward with another key (fast re-runs the forward
    with the cache's key)."""
    params, tokens, targets = model_case(impl, dropout_rate=0.3)
    key_a, key_b = impl.DropoutKey(seed=1, step=2), impl.DropoutKey(seed=1, step=3)
    _, _, cache = impl.forward(params, tokens, targets, dropout=key_a)
    first = impl.backward(params, cache).data.copy()
    _, _, other = impl.forward(params, tokens, targets, dropout=key_b)  # may take the released workspace
    second = impl.backward(params, cache).data.copy()
    assert_bitwise("second backward with dropout", second, first, {"impl": impl.name})
    assert not np.array_equal(impl.backward(params, other).data, first), "steps 2 and 3 gave the same gradients"


def test_dropout_masks_thread_count_independent(impl):
    """dropout_mask and philox4x32 give the same bits with 1 thread and with all."""
    rng = np.random.default_rng(3)
    counters = rng.integers(0, 2**32, size=(1000, 4), dtype=np.uint64).astype(np.uint32)
    results = []
    for n in (1, all_threads()):
        with numba_threads(n):
            masks = [np.asarray(impl.dropout_mask(7, 3, 1, site, shape, 0.3)).tobytes()
                     for site, shape in ((1, (3, 4, 33, 33)), (2, (5, 33, 70)))]
            results.append(b"".join(masks) + np.asarray(impl.philox4x32(counters, counters[:, :2])).tobytes())
    assert results[0] == results[1], f"{impl.name}: dropout masks depend on the thread count"


def test_workspace_reuse_gives_identical_results(impl):
    """Repeated and interleaved calls (workspaces reused, caches held across
    calls) give the same bytes as the first call on fresh inputs."""
    params, tokens, targets = model_case(impl)
    other_params, other_tokens, other_targets = model_case(impl, seed=9)
    first = _step_bytes(impl, params, tokens, targets)
    held = []
    for _ in range(3):  # hold caches and gradients so several workspaces are live at once
        logits, loss, cache = impl.forward(other_params, other_tokens, other_targets)
        held.append((logits, cache, impl.backward(other_params, cache)))
        assert _step_bytes(impl, params, tokens, targets) == first
    # a cache stays valid while later forwards run: backward on the oldest one
    grads_old = impl.backward(other_params, held[0][1])
    assert_bitwise("gradients from a held cache", grads_old.data, held[0][2].data, {"impl": impl.name})
    # returned logits and gradients are not overwritten by later calls
    assert_bitwise("held logits", held[0][0], held[2][0], {"impl": impl.name})


def test_gradients_held_by_caller_are_not_reused(impl):
    """A gradient Params the caller keeps is never overwritten by a later backward."""
    params, tokens, targets = model_case(impl)
    p2, t2, y2 = model_case(impl, seed=11)
    _, _, c1 = impl.forward(params, tokens, targets)
    g1 = impl.backward(params, c1)
    kept = g1.data.copy()
    for _ in range(3):
        _, _, c = impl.forward(p2, t2, y2)
        impl.backward(p2, c)
        _, _, c = impl.forward(p2, t2, y2)
        impl.backward(p2, c)
    assert_bitwise("kept gradients", g1.data, kept, {"impl": impl.name})


def test_logits_held_by_caller_are_not_reused(impl):
    """Logits the caller keeps are never overwritten by a later forward of the
    same shape (which runs on the same workspace)."""
    params, tokens, targets = model_case(impl)
    p2, t2, y2 = model_case(impl, seed=11)
    logits, _, _ = impl.forward(params, tokens, targets)
    kept = logits.copy()
    for _ in range(3):
        impl.forward(p2, t2, y2)
    assert_bitwise("kept logits", logits, kept, {"impl": impl.name})


def test_tokenizer_thread_count_independent(impl):
    """Merges and encodings are the same with 1 thread and with all."""
    text = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 40)
    results = []
    for n in (1, all_threads()):
        with numba_threads(n):
            tok = impl.Tokenizer.train(text, 300)
            results.append((tok.merges, tok.encode(text).tobytes()))
    assert results[0] == results[1], f"{impl.name}: tokenizer results depend on the thread count"


def test_generation_thread_count_independent(impl):
    """Greedy and sampled generation give the same ids with 1 thread and with all."""
    params, tokens, _ = model_case(impl)
    results = []
    for n in (1, all_threads()):
        with numba_threads(n):
            greedy = impl.generate(params, tokens[0, :5], 30, temperature=0.0)  # crosses block_size 24
            sampled = impl.generate(params, tokens[0, :5], 12, temperature=0.8, top_k=10, seed=3)
            results.append((greedy.tolist(), sampled.tolist()))
    assert results[0] == results[1]
