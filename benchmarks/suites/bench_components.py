"""Where the time goes (SPEC §performance): components at medium size.

- each layer's forward and backward at medium (C=512, NH=8) with B=8, T=128;
- one medium 8x128 training step split into its phases (forward + loss,
  backward, gradient norm and clip, AdamW);
- every cell of the seed's table: where its step's time goes, GEMM (linear
  and attention products, with their GFLOP/s) against everything else, and
  the four phases (benchmarks/lib/phases.py);
- AdamW and the gradient norm on the whole medium parameter buffer;
- checkpoint save and load, inference and training, medium (to tmp_path);
- generation tokens/s (tiny and medium);
- peak memory (max RSS, measured in a fresh subprocess) of medium training steps.

    python -m pytest benchmarks/suites/bench_components.py     # every impl
    feste bench --components                                   # as one table

Inputs are built and the function is called once before timing (Numba
compiles there). Every benchmark records `impl`, `component` and `threads` in
`extra_info`, plus a rate where one means something (FLOP/s, tokens/s, MB/s).
Tokenizer training and encoding on the corpus live in bench_tokenizer.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.lib import accounting, phases
from benchmarks.lib.harness import MAX_NORM, TrainStep, fixed_batch
from benchmarks.lib.timing import median_seconds
from benchmarks.tools import memory

MEDIUM = "medium"
B, T = 8, 128  # the seed's middle column


def _info(benchmark, impl, component: str, **extra) -> None:
    nb, bl = accounting.numba_threads(), accounting.blas_threads()
    benchmark.extra_info.update({"impl": impl.name, "component": component,
                                 "threads": max(t for t in (nb, bl, 1) if t is not None),
                                 "numba_threads": nb, "blas_threads": bl, **extra})


def _rate(benchmark, key: str, amount: float) -> None:
    """extra_info[key] = amount / median seconds (when timing is on)."""
    median = median_seconds(benchmark)
    if median:
        benchmark.extra_info[key] = amount / median


def _rng(seed: int = 0):
    return np.random.default_rng(seed)


def _randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


# --- layers: forward and backward ------------------------------------------------
def _layer_cases(impl, config):
    """name -> (forward callable, its args, FLOPs of the forward or None).
    Shapes are those the medium model sees at B=8, T=128."""
    C, V, NH = config.n_embd, config.vocab_size, config.n_heads
    rng = _rng(1)
    x = _randn(rng, B, T, C)  # (B, T, C)
    tokens, targets = fixed_batch(V, B, T)  # (B, T) each
    N = B * T
    return {
        "embedding": (impl.embedding_forward,
                      (tokens, _randn(rng, V, C, scale=0.02), _randn(rng, config.block_size, C, scale=0.02)), None),
        "layernorm": (impl.layernorm_forward, (x, 1 + _randn(rng, C, scale=0.1), _randn(rng, C, scale=0.1)), None),
        "linear C->C (q/k/v/out)": (impl.linear_forward,
                                    (x, _randn(rng, C, C, scale=0.02), _randn(rng, C, scale=0.02)), 2 * N * C * C),
        "linear C->4C (fc1)": (impl.linear_forward,
                               (x, _randn(rng, C, 4 * C, scale=0.02), _randn(rng, 4 * C, scale=0.02)), 8 * N * C * C),
        "linear 4C->C (fc2)": (impl.linear_forward,
                               (_randn(rng, B, T, 4 * C), _randn(rng, 4 * C, C, scale=0.02), _randn(rng, C, scale=0.02)),
                               8 * N * C * C),
        "linear C->V (output)": (impl.linear_forward, (x, _randn(rng, C, V, scale=0.02)), 2 * N * C * V),
        "attention": (impl.attention_forward,
                      (_randn(rng, B, T, C), _randn(rng, B, T, C), _randn(rng, B, T, C), NH), 4 * B * T * T * C),
        "gelu": (impl.gelu_forward, (_randn(rng, B, T, 4 * C),), None),
        "cross_entropy": (impl.cross_entropy_forward, (_randn(rng, B, T, V), targets), None),
    }


LAYERS = ["embedding", "layernorm", "linear C->C (q/k/v/out)", "linear C->4C (fc1)", "linear 4C->C (fc2)",
          "linear C->V (output)", "attention", "gelu", "cross_entropy"]
BACKWARD = {
    "embedding": "embedding_backward", "layernorm": "layernorm_backward", "attention": "attention_backward",
    "gelu": "gelu_backward", "cross_entropy": "cross_entropy_backward",
}


def _slug(name: str) -> str:
    return name.split(" ")[0] + ("" if " " not in name else "_" + name.split("(")[1].rstrip(")").replace("/", ""))


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("layer", LAYERS, ids=[_slug(n) for n in LAYERS])
def test_layer(benchmark, impl, layer, direction):
    config = impl.preset(MEDIUM)
    fwd, args, fwd_flops = _layer_cases(impl, config)[layer]
    out, cache = fwd(*args)  # warm-up (and the cache the backward needs)
    component = f"{layer} {direction}"
    benchmark.group = f"layer {component}"
    if direction == "forward":
        benchmark(fwd, *args)
        flops = fwd_flops
    else:
        bwd = getattr(impl, BACKWARD.get(layer, "linear_backward"))
        if layer == "cross_entropy":
            call = (bwd, cache)  # cross_entropy_backward(cache) -> dlogits
        else:
            dout = _randn(_rng(2), *np.shape(out))
            call = (bwd, dout, cache)
        call[0](*call[1:])  # warm-up
        benchmark(*call)
        flops = None if fwd_flops is None else 2 * fwd_flops  # two matmuls per forward one
    _info(benchmark, impl, component, preset=MEDIUM, B=B, T=T)
    if flops:
        benchmark.extra_info["flops"] = flops
        _rate(benchmark, "flop_per_s", flops)


# --- one medium training step, phase by phase -------------------------------------
_PHASE_STATE: dict[str, tuple] = {}  # impl name -> (step, cache, grads): built once, not per phase


def _phase_state(impl):
    if impl.name not in _PHASE_STATE:
        step = TrainStep(impl, impl.preset(MEDIUM), B, T, warmup=1)
        _logits, _loss, cache = impl.forward(step.params, step.x, step.y)
        _PHASE_STATE[impl.name] = (step, cache, impl.backward(step.params, cache))
    return _PHASE_STATE[impl.name]


@pytest.mark.parametrize("phase", ["forward", "backward", "clip", "adamw"])
def test_step_phase(benchmark, impl, phase):
    """The four parts of a medium 8x128 training step, each timed on its own."""
    step, cache, grads = _phase_state(impl)
    benchmark.group = f"step phase ({MEDIUM} {B}x{T})"
    if phase == "forward":
        benchmark(impl.forward, step.params, step.x, step.y)
    elif phase == "backward":
        benchmark(impl.backward, step.params, cache)
    elif phase == "clip":
        # clipping scales in place: every round starts from the unclipped gradients (copy untimed)
        def fresh():
            return (grads.copy(), MAX_NORM), {}
        benchmark.pedantic(impl.clip_grad_norm, setup=fresh, rounds=20, warmup_rounds=1)
    else:
        benchmark(impl.adamw_step, step.params, grads, step.state, 3e-4)
    _info(benchmark, impl, f"step: {phase}", preset=MEDIUM, B=B, T=T)


# --- every cell: GEMM against the rest --------------------------------------------
@pytest.mark.parametrize("B_,T_", accounting.CELLS, ids=[f"{b}x{t}" for b, t in accounting.CELLS])
@pytest.mark.parametrize("preset_name", accounting.PRESET_NAMES)
def test_step_where_time_goes(benchmark, impl, matmul_peak, preset_name, B_, T_):
    """One cell's step split into phases, and the time inside the implementation's
    matmuls (when it routes them through one function) against the rest."""
    cell = accounting.cell_id(preset_name, B_, T_)
    result = {}

    def run():
        result.update(phases.profile(impl, preset_name, B_, T_, steps=3, warmup=1))

    benchmark.group = "where the time goes (per cell)"
    benchmark.pedantic(run, rounds=1, iterations=1)
    _info(benchmark, impl, f"cell {cell}", preset=preset_name, B=B_, T=T_, cell=cell,
          profile={k: v for k, v in result.items()}, matmul_peak_gflops=matmul_peak.gflops)
    assert result["step"] > 0


# --- optimiser on the whole medium buffer ------------------------------------------
def _medium_grads(impl):
    config = impl.preset(MEDIUM)
    params = impl.init_params(config, seed=0)
    grads = params.zeros_like()
    grads.data[:] = _randn(_rng(3), grads.data.size, scale=1e-3)
    return params, grads


def test_adamw_medium(benchmark, impl):
    params, grads = _medium_grads(impl)
    state = impl.adamw_init(params)
    impl.adamw_step(params, grads, state, 3e-4)  # warm-up / compile
    benchmark.group = "optimizer (medium buffer)"
    benchmark(impl.adamw_step, params, grads, state, 3e-4)
    n = params.data.size
    _info(benchmark, impl, "adamw_step (medium)", n_params=n)
    _rate(benchmark, "params_per_s", n)


def test_grad_norm_medium(benchmark, impl):
    _params, grads = _medium_grads(impl)
    impl.grad_norm(grads)  # warm-up / compile
    benchmark.group = "optimizer (medium buffer)"
    norm = benchmark(impl.grad_norm, grads)
    n = grads.data.size
    _info(benchmark, impl, "grad_norm (medium)", n_params=n)
    _rate(benchmark, "params_per_s", n)
    # 1e-3 * N(0,1) draws: the norm is about 1e-3 * sqrt(n)
    assert 0.9e-3 * np.sqrt(n) < norm < 1.1e-3 * np.sqrt(n)


# --- checkpoints -------------------------------------------------------------------
@pytest.mark.parametrize("op", ["save", "load"])
@pytest.mark.parametrize("kind", ["inference", "training"])
def test_checkpoint(benchmark, impl, tmp_path, kind, op):
    config = impl.preset(MEDIUM)
    params = impl.init_params(config, seed=0)
    state = impl.adamw_init(params) if kind == "training" else None
    ckpt = impl.Checkpoint(config=config, params=params, optimizer=state)
    path = tmp_path / f"{kind}.ckpt"
    impl.save_checkpoint(path, ckpt)
    size = path.stat().st_size
    benchmark.group = f"checkpoint {kind} (medium)"
    if op == "save":
        benchmark(impl.save_checkpoint, path, ckpt)
    else:
        loaded = benchmark(impl.load_checkpoint, path)
        assert loaded.params.data.tobytes() == params.data.tobytes()
    _info(benchmark, impl, f"checkpoint {op} {kind} (medium)", bytes=size)
    _rate(benchmark, "mb_per_s", size / 1e6)


# --- generation --------------------------------------------------------------------
GEN_TOKENS = 32


@pytest.mark.parametrize("preset_name", ["tiny", MEDIUM])
def test_generate(benchmark, impl, preset_name):
    config = impl.preset(preset_name)
    params = impl.init_params(config, seed=0)
    prompt = fixed_batch(config.vocab_size, 1, 8)[0][0]  # 8 fixed prompt ids
    impl.generate(params, prompt, 2, temperature=1.0, top_k=40, seed=0)  # warm-up / compile
    benchmark.group = "generate"
    out = benchmark(impl.generate, params, prompt, GEN_TOKENS, temperature=1.0, top_k=40, seed=0)
    assert len(np.asarray(out)) >= GEN_TOKENS
    _info(benchmark, impl, f"generate {GEN_TOKENS} tokens ({preset_name})", preset=preset_name,
          prompt_tokens=len(prompt), new_tokens=GEN_TOKENS, temperature=1.0, top_k=40)
    _rate(benchmark, "tokens_per_s", GEN_TOKENS)


# --- peak memory ---------------------------------------------------------------------
@pytest.mark.parametrize("B_,T_", accounting.CELLS, ids=[f"{b}x{t}" for b, t in accounting.CELLS])
def test_step_peak_memory(benchmark, impl, B_, T_):
    """Max RSS of a fresh process around one medium training step (tools/memory.py).
    The time recorded is the whole subprocess (imports, setup, steps): not a step time."""
    for name in ("init_params", "adamw_init", "forward", "backward", "clip_grad_norm", "adamw_step"):
        getattr(impl, name)  # skip here, not in the subprocess, if a name is missing
    result = {}

    def probe():
        result.update(memory.measure(impl.name, MEDIUM, B_, T_, timeout=900))

    benchmark.group = "peak memory (medium step, subprocess)"
    benchmark.pedantic(probe, rounds=1, iterations=1)
    _info(benchmark, impl, f"peak memory {MEDIUM} {B_}x{T_}", preset=MEDIUM, B=B_, T=T_,
          **{k: v for k, v in result.items() if k not in ("impl", "preset", "B", "T")})
    # the process held params, grads and two AdamW moments (4 float32 buffers) at least
    assert result["peak_rss_mb"] * 1e6 >= 4 * 4 * result["n_params"] * 0.9
