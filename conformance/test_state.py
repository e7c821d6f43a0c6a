"""State that outlives a call (a blind-spot class): an implementation may keep
workspaces, masks, plans or decoders between calls (fast does, SPEC §fast-model),
but a call's result must not depend on what ran before it.

Oracles: `reference` on the same inputs (SPEC §tolerances budgets; AdamW bitwise), and
the implementation's own result for the same inputs computed fresh (same
bytes: SPEC §tolerances, determinism). The cases are the ones a cache keyed too
coarsely gets wrong: configs with one parameter count but other layouts
(conformance.cases.SAME_COUNT: other n_heads; V and block_size traded), run
interleaved; parameters changed in place between calls (a training loop
updates one Params object, and a decoder or plan kept for that object must
see the new values).
"""
from __future__ import annotations

import numpy as np

from conformance import cases
from conformance.assertions import assert_bitwise, assert_grads_close, assert_scaled_max
from conformance.tolerances import GRAD_REL_NORM, LOGITS_RTOL


def _setup(m, spec: dict, seed: int):
    config = m.Config(**spec)
    params = cases.moved(m.init_params(config, seed=seed), seed=seed)
    rng = np.random.default_rng([seed, 5])
    tokens = rng.integers(0, config.vocab_size, (2, config.block_size))
    targets = rng.integers(0, config.vocab_size, (2, config.block_size))
    return params, tokens, targets


def _step(m, params, tokens, targets):
    logits, loss, cache = m.forward(params, tokens, targets)
    return np.array(logits), loss, m.backward(params, cache).data.copy()


def test_configs_with_one_parameter_count_do_not_share_state(impl, ref):
    """Forward, backward and one AdamW step on three configs with the same
    parameter count, interleaved A, B, C, A, C, B: each against reference, and
    each repeat byte-equal to the first run of its config."""
    counts = {impl.n_params(impl.Config(**spec)) for spec in cases.SAME_COUNT}
    assert len(counts) == 1, f"test setup: SAME_COUNT configs have parameter counts {counts}"
    first = {}
    for i in (0, 1, 2, 0, 2, 1):
        spec = cases.SAME_COUNT[i]
        ctx = {"impl": impl.name, "config": i}
        params, tokens, targets = _setup(impl, spec, seed=i)
        logits, loss, grads = _step(impl, params, tokens, targets)
        state = impl.adamw_init(params)
        impl.adamw_step(params, impl.Params(params.config, grads.copy()), state, 1e-2)
        if i not in first:
            rp, _, _ = _setup(ref, spec, seed=i)
            want_logits, _, want_grads = _step(ref, rp, tokens, targets)
            assert_scaled_max("logits", logits, want_logits, LOGITS_RTOL, ctx)
            got_g, want_g = impl.Params(params.config, grads), ref.Params(rp.config, want_grads)
            assert_grads_close(got_g, want_g, GRAD_REL_NORM, ctx, prefix="grad ")
            rs = ref.adamw_init(rp)
            ref.adamw_step(rp, ref.Params(rp.config, grads.copy()), rs, 1e-2)
            assert_bitwise("params after AdamW (same gradients)", params.data, rp.data, ctx)
            first[i] = (logits, loss, grads, params.data.copy())
        else:
            want = first[i]
            assert_bitwise("logits, again after other configs", logits, want[0], ctx)
            assert loss == want[1], ctx
            assert_bitwise("gradients, again after other configs", grads, want[2], ctx)
            assert_bitwise("params after AdamW, again", params.data, want[3], ctx)


def test_generation_sees_parameters_changed_in_place(impl):
    """generate, then AdamW steps and direct writes into the same Params
    object, then generate again: the same ids as generate on a fresh copy of
    the changed parameters, greedy and sampled. A decoder, or a fused q/k/v
    weight, kept for the object from the first call would still hold the
    first call's values: the test first checks that such stale attention
    weights do change the ids (or it could not see the defect)."""
    spec = cases.SAME_COUNT[0]
    params, tokens, targets = _setup(impl, spec, seed=3)
    prompt = tokens[0, :3]
    L = params.config.n_layers
    qkv = [f"blocks.{i}.{n}.weight" for i in range(L) for n in "qkv"]
    first = {name: params[name].copy() for name in qkv}
    impl.generate(params, prompt, 12, temperature=0.0)
    state = impl.adamw_init(params)
    for _ in range(3):
        _, _, cache = impl.forward(params, tokens, targets)
        impl.adamw_step(params, impl.backward(params, cache), state, 5e-2)
    for i in range(L):  # writes into the views, as a loader would: attention that matters
        params[f"blocks.{i}.q.weight"] *= np.float32(8.0)
        params[f"blocks.{i}.k.weight"] *= np.float32(8.0)
        params[f"blocks.{i}.v.weight"] *= np.float32(-4.0)
    fresh = impl.Params(params.config, params.data.copy())
    stale = impl.Params(params.config, params.data.copy())
    for name, value in first.items():
        stale[name] = value
    greedy = impl.generate(fresh, prompt, 12, temperature=0.0).tolist()
    assert impl.generate(stale, prompt, 12, temperature=0.0).tolist() != greedy, (
        f"test setup: stale q/k/v weights give the same greedy ids {greedy}")
    for kwargs in (dict(temperature=0.0), dict(temperature=0.9, top_k=5, seed=4)):
        want = impl.generate(fresh, prompt, 12, **kwargs).tolist()
        got = impl.generate(params, prompt, 12, **kwargs).tolist()
        assert got == want, f"{impl.name}: generate {kwargs} on parameters changed in place gave {got}, " \
                            f"on a fresh copy {want}"


def test_forward_sees_parameters_changed_in_place(impl):
    """Forward and backward after an in-place change of the parameters equal
    forward and backward on a fresh copy of them, byte for byte."""
    params, tokens, targets = _setup(impl, cases.SAME_COUNT[2], seed=8)
    _step(impl, params, tokens, targets)
    params.data *= np.float32(0.5)
    params["ln_final.beta"] += np.float32(1.0)
    got = _step(impl, params, tokens, targets)
    want = _step(impl, impl.Params(params.config, params.data.copy()), tokens, targets)
    ctx = {"impl": impl.name}
    assert_bitwise("logits after an in-place change", got[0], want[0], ctx)
    assert got[1] == want[1], ctx
    assert_bitwise("gradients after an in-place change", got[2], want[2], ctx)
