"""Config, presets, the parameter table and init (SPEC §config).

Oracles: the literal numbers and names of SPEC §config and §checkpoint (the
checkpoint order), a hand-written parameter-count formula, an init re-derived
here from its one-paragraph description, and sampling statistics."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from conformance.assertions import assert_bitwise
from conformance.tolerances import INIT_STAT_SIGMAS

# SPEC §config: the preset table
PRESET_TABLE = {
    "tiny": dict(n_embd=128, n_layers=3, n_heads=4, n_params=758_912),
    "small": dict(n_embd=256, n_layers=4, n_heads=4, n_params=3_487_232),
    "medium": dict(n_embd=512, n_layers=6, n_heads=8, n_params=19_570_688),
}
# SPEC §checkpoint, item 3: the per-block tensor order of a checkpoint
BLOCK_ORDER = ["ln1.gamma", "ln1.beta", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
               "out.weight", "out.bias", "ln2.gamma", "ln2.beta", "fc1.weight", "fc1.bias", "fc2.weight",
               "fc2.bias"]


# --- Config ---------------------------------------------------------------------------
def test_config_fields_in_design_order(impl):
    names = [f.name for f in dataclasses.fields(impl.Config)]
    assert names == ["vocab_size", "n_embd", "n_heads", "n_layers", "block_size", "dropout_rate"]


@pytest.mark.parametrize("name", list(PRESET_TABLE))
def test_presets_match_design_table(impl, name):
    config = impl.preset(name)
    want = PRESET_TABLE[name]
    assert (config.vocab_size, config.block_size, config.dropout_rate) == (512, 256, 0.0)
    assert (config.n_embd, config.n_layers, config.n_heads) == (want["n_embd"], want["n_layers"], want["n_heads"])
    assert impl.PRESETS[name] == config
    assert impl.n_params(config) == want["n_params"]


@pytest.mark.parametrize("V, C, L, bs", [(512, 128, 3, 256), (7, 6, 2, 5), (2, 1, 1, 1)])
def test_n_params_formula(impl, V, C, L, bs):
    """wte V*C + wpe bs*C + per block (ln1 2C, q/k/v/out 4(C*C + C), ln2 2C,
    fc1 C*4C + 4C, fc2 4C*C + C) = 12 C^2 + 13 C, + final LN 2C + output C*V."""
    config = impl.Config(vocab_size=V, n_embd=C, n_heads=1, n_layers=L, block_size=bs)
    assert impl.n_params(config) == V * C + bs * C + L * (12 * C * C + 13 * C) + 2 * C + C * V


@pytest.mark.parametrize("changes, field", [
    (dict(n_embd=10, n_heads=4), "n_embd"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(n_embd=-4), "n_embd"),
    (dict(n_layers=0), "n_layers"),
    (dict(block_size=0), "block_size"),
    (dict(n_heads=0), "n_heads"),
    (dict(dropout_rate=1.0), "dropout_rate"),
    (dict(dropout_rate=-0.1), "dropout_rate"),
    (dict(n_layers=2.0), "n_layers"),
    (dict(n_layers=True), "n_layers"),
], ids=["heads-divide", "vocab-0", "embd-neg", "layers-0", "block-0", "heads-0", "dropout-1", "dropout-neg",
        "float-layers", "bool-layers"])
def test_config_rejects_bad_values(impl, changes, field):
    base = dict(vocab_size=16, n_embd=8, n_heads=2, n_layers=1, block_size=4)
    with pytest.raises(ValueError, match=field):
        impl.Config(**{**base, **changes})


def test_unknown_preset_is_named(impl):
    with pytest.raises(ValueError, match="huge"):
        impl.preset("huge")


# --- the table ---------------------------------------------------------------------------
def expected_table(config):
    """(name, shape, std, decayed) in checkpoint order, written from SPEC §model and §checkpoint; init std 0 means a ones/zeros tensor."""
    V, C, L, bs = config.vocab_size, config.n_embd, config.n_layers, config.block_size
    resid = 0.02 / math.sqrt(2 * L)
    rows = [("token_embedding", (V, C), 0.02, False), ("position_embedding", (bs, C), 0.02, False)]
    shapes = {"ln1.gamma": (C,), "ln1.beta": (C,), "ln2.gamma": (C,), "ln2.beta": (C,),
              "fc1.weight": (C, 4 * C), "fc1.bias": (4 * C,), "fc2.weight": (4 * C, C), "fc2.bias": (C,)}
    for i in range(L):
        for suffix in BLOCK_ORDER:
            shape = shapes.get(suffix, (C, C) if suffix.endswith("weight") else (C,))
            if suffix in ("out.weight", "fc2.weight"):
                std = resid
            elif suffix.endswith("weight"):
                std = 0.02
            else:
                std = 0.0
            rows.append((f"blocks.{i}.{suffix}", shape, std, suffix.endswith("weight")))
    rows += [("ln_final.gamma", (C,), 0.0, False), ("ln_final.beta", (C,), 0.0, False),
             ("output_weight", (C, V), 0.02, True)]
    return rows


@pytest.mark.parametrize("name", list(PRESET_TABLE))
def test_param_table_is_checkpoint_order(impl, name):
    config = impl.preset(name)
    got = [(s.name, tuple(s.shape), float(s.std), bool(s.decayed)) for s in impl.param_table(config)]
    want = expected_table(config)
    assert [g[0] for g in got] == [w[0] for w in want], "names/order differ from SPEC §checkpoint"
    for g, w in zip(got, want):
        assert g[1] == w[1], f"{g[0]}: shape {g[1]}, expected {w[1]}"
        assert g[2] == w[2], f"{g[0]}: std {g[2]!r}, expected {w[2]!r}"
        assert g[3] == w[3], f"{g[0]}: decayed {g[3]}, expected {w[3]}"
    inits = {s.name: s.init for s in impl.param_table(config)}
    assert all(inits[n] == ("ones" if n.endswith("gamma") else "zeros" if s == 0.0 else "normal")
               for n, _, s, _ in want)


def test_params_container_views_one_buffer(impl):
    config = impl.Config(vocab_size=5, n_embd=4, n_heads=2, n_layers=2, block_size=3)
    params = impl.Params(config)
    assert params.data.dtype == np.float32 and params.data.ndim == 1
    assert params.data.size == impl.n_params(config)
    offset = 0
    for spec in impl.param_table(config):
        view = params[spec.name]
        assert view.shape == tuple(spec.shape)
        assert np.shares_memory(view, params.data)
        assert params.offset(spec.name) == offset
        view[...] = 1.0  # writes land in the flat buffer at the table offset
        assert np.all(params.data[offset:offset + view.size] == 1.0)
        offset += view.size
    assert offset == params.data.size
    mask = params.decay_mask()
    want = np.concatenate([np.full(s.size, s.decayed) for s in impl.param_table(config)])
    assert np.array_equal(mask, want)
    with pytest.raises(ValueError, match="flat array"):
        impl.Params(config, np.zeros(params.data.size + 1, dtype=np.float32))
    for dtype in (np.int64, np.float16):  # SPEC §contract-errors: float32 or float64 only
        with pytest.raises(ValueError, match="float32"):
            impl.Params(config, np.zeros(params.data.size, dtype=dtype))
    with pytest.raises(KeyError, match="no_such"):
        params["no_such"]



def test_params_container_walks_the_table_and_copies(impl):
    """SPEC §config: iteration, names() and items() follow the table; copy, zeros_like and
    astype are new Params with their own buffer, astype converting the values as NumPy does."""
    config = impl.Config(vocab_size=5, n_embd=4, n_heads=2, n_layers=2, block_size=3)
    names = [spec.name for spec in impl.param_table(config)]
    p64 = impl.Params(config, np.linspace(-1, 1, impl.n_params(config)) + 1e-9)  # float64, not float32-exact
    assert list(p64) == names and p64.names() == names and len(p64) == len(names)
    assert [name for name, _ in p64.items()] == names
    assert all(np.shares_memory(view, p64.data) for _, view in p64.items())
    for dtype in (np.float32, np.float64):
        got = p64.astype(dtype)
        assert got.data.dtype == dtype and got.config == config
        assert np.array_equal(got.data, p64.data.astype(dtype))
        assert not np.shares_memory(got.data, p64.data)
    p32 = p64.astype(np.float32)
    assert p32.astype(np.float64).data.dtype == np.float64
    for fresh, want in ((p32.copy(), p32.data), (p32.zeros_like(), np.zeros_like(p32.data))):
        assert fresh.data.dtype == np.float32 and fresh.config == config
        assert np.array_equal(fresh.data, want) and not np.shares_memory(fresh.data, p32.data)


# --- init ----------------------------------------------------------------------------------
def design_init(config, seed):
    """SPEC §config, transcribed: one default_rng(seed); for each parameter in
    checkpoint order, if its std > 0, draw standard_normal(shape, float32) *
    float32(std); gammas are 1, everything else 0, with no draw."""
    rng = np.random.default_rng(seed)
    chunks = []
    for name, shape, std, _ in expected_table(config):
        if std > 0:
            chunks.append((rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).ravel())
        elif name.endswith("gamma"):
            chunks.append(np.ones(math.prod(shape), dtype=np.float32))
        else:
            chunks.append(np.zeros(math.prod(shape), dtype=np.float32))
    return np.concatenate(chunks)


@pytest.mark.parametrize("seed", [0, 1234])
def test_init_matches_design_bit_for_bit(impl, seed):
    config = impl.preset("tiny")
    params = impl.init_params(config, seed=seed)
    assert params.data.dtype == np.float32
    assert_bitwise("init_params", params.data, design_init(config, seed), {"impl": impl.name, "seed": seed})


def test_init_seed_defaults_to_zero(impl):
    """SPEC §config: init_params(config) is init_params(config, seed=0)."""
    config = impl.Config(vocab_size=9, n_embd=4, n_heads=2, n_layers=1, block_size=3)
    assert_bitwise("init_params default seed", impl.init_params(config).data, design_init(config, 0))


def test_float64_init_holds_the_float32_draws(impl):
    config = impl.Config(vocab_size=9, n_embd=4, n_heads=2, n_layers=1, block_size=3)
    try:
        p64 = impl.init_params(config, seed=3, dtype=np.float64)
    except (ValueError, NotImplementedError) as exc:  # SPEC §numerics: an implementation may refuse float64
        pytest.skip(f"{impl.name} refuses float64 params: {exc}")
    # SPEC §config: refused or float64, never silently another dtype (assert_bitwise checks it)
    assert_bitwise("float64 init", p64.data, impl.init_params(config, seed=3).data.astype(np.float64))


@pytest.mark.parametrize("name", ["tiny", "medium"])
def test_init_statistics_per_tensor(impl, name):
    """Each normal tensor: |mean| <= k s/sqrt(n) and |std - s| <= k s/sqrt(2n),
    k = INIT_STAT_SIGMAS; ones and zeros exactly."""
    config = impl.preset(name)
    params = impl.init_params(config, seed=7)
    for spec in impl.param_table(config):
        a = params[spec.name].astype(np.float64)
        n = a.size
        if spec.init == "normal":
            s = spec.std
            mean, std = float(a.mean()), float(a.std())
            assert abs(mean) <= INIT_STAT_SIGMAS * s / math.sqrt(n), f"{spec.name}: mean {mean:.3e} (std {s:.4g}, n {n})"
            assert abs(std - s) <= INIT_STAT_SIGMAS * s / math.sqrt(2 * n), f"{spec.name}: std {std:.5g}, expected {s:.5g}"
        else:
            assert np.all(a == (1.0 if spec.init == "ones" else 0.0)), f"{spec.name} is not all {spec.init}"


def test_init_seeds_differ_and_repeat(impl):
    config = impl.preset("tiny")
    a, b, c = (impl.init_params(config, seed=s).data for s in (5, 5, 6))
    assert_bitwise("same seed", b, a)
    assert not np.array_equal(a, c)
