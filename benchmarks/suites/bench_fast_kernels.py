"""Benchmarks specific to `fast` (SPEC §fast): kernel compile time,
KV-cache generation throughput, and a few kernels at the medium 4x256 shape.

    python -m pytest benchmarks/suites/bench_fast_kernels.py
    python -m pytest benchmarks/suites/bench_fast_kernels.py -k generate

Targets are recorded in `extra_info` (`target`, `within_target`), never
asserted: timings on the shared 2-core machine are noisy. Compilation runs in
fresh subprocesses with an empty NUMBA_CACHE_DIR (first run: compile and
write the cache) and then the same directory (a later run: load it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.lib.timing import median_seconds

fast = pytest.importorskip("fast")

COMPILE_TARGET_S = 60.0
GENERATE_TARGETS = {"tiny": 2000.0, "medium": 300.0}  # greedy tokens/s, batch 1, with the KV cache
GENERATE_TOKENS = 200  # inside block_size: the cache path, no sliding window

_WARMUP = "import json, fast; print(json.dumps({'seconds': fast.warmup()}))"


def _warmup_seconds(cache_dir: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _WARMUP], env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def test_compile_time(benchmark, tmp_path):
    """fast.warmup() in a fresh process: compile everything (empty cache), then load it."""
    cache_dir = str(tmp_path / "numba-cache")
    results = {}

    def run():
        results["compile"] = _warmup_seconds(cache_dir)
        results["cached"] = _warmup_seconds(cache_dir)

    benchmark.group = "fast compile"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({
        "compile_seconds": results["compile"], "cached_seconds": results["cached"],
        "target_seconds": COMPILE_TARGET_S, "within_target": results["compile"] <= COMPILE_TARGET_S,
    })
    assert results["cached"] < results["compile"], "loading the cache was not faster than compiling"


@pytest.mark.parametrize("preset_name", sorted(GENERATE_TARGETS))
def test_generate_tokens_per_second(benchmark, preset_name):
    """Greedy generation, batch 1, GENERATE_TOKENS new tokens from a 5-token prompt."""
    config = fast.preset(preset_name)
    params = fast.init_params(config, seed=0)
    prompt = np.arange(1, 6)
    fast.generate(params, prompt, 4, temperature=0.0)  # compile / warm up
    benchmark.group = "fast generate"
    ids = benchmark.pedantic(fast.generate, args=(params, prompt, GENERATE_TOKENS),
                             kwargs={"temperature": 0.0}, rounds=3, iterations=1)
    assert ids.shape == (prompt.size + GENERATE_TOKENS,)
    median = median_seconds(benchmark)
    if median:
        rate = GENERATE_TOKENS / median
        benchmark.extra_info.update({"preset": preset_name, "tokens_per_second": rate,
                                     "target": GENERATE_TARGETS[preset_name],
                                     "within_target": rate >= GENERATE_TARGETS[preset_name]})


@pytest.fixture(scope="module")
def medium_cell():
    config = fast.preset("medium")
    B, T = 4, 256
    C, NH, V = config.n_embd, config.n_heads, config.vocab_size
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return dict(B=B, T=T, C=C, NH=NH, V=V, x=f32(B * T, C), gamma=f32(C), beta=f32(C),
                qh=f32(B, NH, T, C // NH), kh=f32(B, NH, T, C // NH), vh=f32(B, NH, T, C // NH),
                logits=f32(B * T, V), targets=rng.integers(0, V, B * T))


@pytest.mark.parametrize("kernel", ["layernorm", "attention", "softmax_xent"])
def test_kernel_medium_4x256(benchmark, medium_cell, kernel):
    """One kernel (or kernel group) at the medium B=4, T=256 shape, outputs preallocated."""
    from fast._attention import attention_forward_heads
    from fast._layernorm import layernorm_forward_into
    from fast.loss import softmax_xent_into

    m = medium_cell
    N = m["B"] * m["T"]
    if kernel == "layernorm":
        out, mean, rstd = np.empty_like(m["x"]), np.empty(N, np.float32), np.empty(N, np.float32)
        fn, args = layernorm_forward_into, (m["x"], m["gamma"], m["beta"], np.float32(1e-5), out, mean, rstd)
    elif kernel == "attention":
        att = np.empty((m["B"], m["NH"], m["T"], m["T"]), np.float32)
        yh = np.empty_like(m["qh"])
        fn, args = attention_forward_heads, (m["qh"], m["kh"], m["vh"], np.float32(0.125), att, yh)
    else:
        fn, args = softmax_xent_into, (m["logits"], m["targets"], np.empty(N, np.float32),
                                       np.empty_like(m["logits"]))
    from fast._blas import single_threaded_blas

    fn(*args)  # compile
    benchmark.group = "fast kernels medium 4x256"
    with single_threaded_blas():  # as inside fast.forward / fast.backward
        benchmark(fn, *args)
    benchmark.extra_info.update({"kernel": kernel, "threads": fast._numba.num_threads()})
