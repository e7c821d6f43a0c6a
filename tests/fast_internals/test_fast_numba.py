"""fast's compilation policy and its on-disk compile cache (SPEC §fastmath).

- fastmath: off, or the named tolerant set (never nnan / ninf / afn), and
  the bitwise kernels' machine code holds no fused multiply-add;
- the cache: a new process loads every kernel from disk instead of compiling
  it, gets the same bytes as the process that compiled them, and a kernel
  whose callee in another file changed is compiled again (not loaded stale);
- the bytes of a training step do not depend on the process's thread settings.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cases import flat_params
from fast_support import fast_kernels

numba = pytest.importorskip("numba")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the project: fast/ and conformance/ import from here


def _run_lines(code: str, env: dict, timeout: float = 900, cwd=ROOT) -> list[str]:
    """Run `code` in a fresh interpreter; its stdout's lines."""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()


def _run(code: str, env: dict, timeout: float = 900, cwd=ROOT) -> str:
    """Run `code` in a fresh interpreter; its stdout's last line."""
    return _run_lines(code, env, timeout, cwd)[-1]


def _env(**extra) -> dict:
    """This process's environment with the project first on PYTHONPATH, and `extra`."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def test_no_kernel_uses_nnan_or_ninf():
    """fast/_numba.py policy: fastmath is off or the named tolerant set, never nnan/ninf/afn."""
    from fast._numba import TOLERANT_FASTMATH

    kernels = fast_kernels()
    assert kernels, "no Numba kernels found in fast/"
    assert not TOLERANT_FASTMATH & {"nnan", "ninf", "afn", "fast"}
    for name, dispatcher in kernels.items():
        flags = dispatcher.targetoptions.get("fastmath", False)
        assert isinstance(dispatcher._cache, numba.core.caching.FunctionCache), f"{name} is not cached on disk"
        if flags:
            assert set(flags) == set(TOLERANT_FASTMATH), f"{name} has fastmath {flags}"


BITWISE_KERNELS = ("fast.optim._adamw_into", "fast.optim._scale_into")



@pytest.mark.parametrize("name", BITWISE_KERNELS)
def test_bitwise_kernels_have_no_fma(name):
    """Bitwise kernels are compiled without fastmath and without contraction:
    their machine code has no fused multiply-add (which would change the last
    bit). Numba disables inspection of code loaded from the disk cache, so the
    kernel's Python function is recompiled here, uncached, with the kernel's
    own target options, for the signatures the public functions use."""
    import importlib

    module_name, kernel_name = name.rsplit(".", 1)
    dispatcher = getattr(importlib.import_module(module_name), kernel_name)
    assert not dispatcher.targetoptions.get("fastmath", False), f"{name} has fastmath on"
    options = {k: v for k, v in dispatcher.targetoptions.items() if k in ("parallel", "fastmath")}
    fresh = numba.njit(cache=False, **options)(dispatcher.py_func)
    # run the public functions once so the signatures are the real ones
    import fast

    params, grads = flat_params(fast, 0, 0.05), flat_params(fast, 1, 10.0)
    fast.adamw_step(params, grads, fast.adamw_init(params), 1e-3)
    fast.clip_grad_norm(grads, 0.5)
    assert dispatcher.signatures, f"{name} was never compiled"
    for sig in dispatcher.signatures:
        fresh.compile(sig)
        asm = fresh.inspect_asm(sig).lower()
        assert "vfmadd" not in asm and "vfmsub" not in asm and "vfnmadd" not in asm, (
            f"{name}{sig}: fused multiply-add in the machine code of a bitwise kernel")


_CACHE_PROBE = """
import json, sys
sys.path.insert(0, {here!r})
import fast
from fast_support import fast_kernels
seconds = fast.warmup()
stats = {{name: (sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()))
         for name, d in fast_kernels().items() if d.signatures}}
print(json.dumps({{"seconds": seconds, "stats": stats}}))
"""


@pytest.fixture(scope="module")
def fresh_then_cached(tmp_path_factory):
    """Two processes, one after the other, with one new NUMBA_CACHE_DIR: the first
    compiles every kernel (warmup() and a training step's), the second loads them.
    Each reports warmup()'s cache statistics and the training step's bytes. One
    compile from nothing serves both tests below (it is the costly part)."""
    env = _env(NUMBA_CACHE_DIR=str(tmp_path_factory.mktemp("numba-cache")))
    probe = _CACHE_PROBE.format(here=str(HERE)) + _STEP_DIGEST
    runs = []
    for _ in range(2):
        *_, stats_line, digest = _run_lines(probe, env)
        runs.append((json.loads(stats_line)["stats"], digest))
    return runs


@pytest.mark.slow
@pytest.mark.xdist_group("fresh-numba-cache")  # one worker computes the fixture once for both
def test_compile_cache_is_reused_by_a_new_process(fresh_then_cached):
    """cache=True: a second process with the same NUMBA_CACHE_DIR loads every
    kernel warmup() uses from disk (cache hits, no misses) instead of compiling."""
    (first, _), (second, _) = fresh_then_cached
    assert first, "warmup compiled no kernels"
    assert any(misses for _, misses in first.values()), "the first process compiled nothing"
    for name, (hits, misses) in second.items():
        assert misses == 0 and hits > 0, f"{name}: {hits} cache hits, {misses} misses in the second process"


_CACHE_KEY_PROBE = """
import importlib
from fast._numba import callee_digest
generate = importlib.import_module("fast.generate")
print(callee_digest(generate._decode_layer.py_func))
"""


def test_the_cache_key_is_the_same_in_every_process():
    """A kernel's cache key (with its callees' sources: fast/_numba.py) must not change
    from one process to the next: a key that does is a miss, and the kernel compiled
    again, at every start. The callees are found by walking sets of names, whose order
    follows the hash seed; generation's decode layer calls kernels of two other files."""
    keys = {_run(_CACHE_KEY_PROBE, _env(PYTHONHASHSEED=str(seed))) for seed in range(6)}
    assert len(keys) == 1, f"the decode layer's cache key differs between processes: {keys}"


_CALLEE = """
from fast._numba import kernel


@kernel(inline=True)
def step(x):
    return x + {increment}
"""

_CALLER = """
from fast._numba import kernel
from callee import step


@kernel
def run(x):
    return step(x) * 10
"""

_CALLER_PROBE = """
import json
from caller import run
print(json.dumps([run(1), sum(run.stats.cache_hits.values())]))
"""


def test_a_changed_callee_in_another_file_is_compiled_again(tmp_path):
    """SPEC §fastmath: a kernel calling a kernel of another file (inlined into it)
    is compiled again when only the callee's file changed, instead of being
    loaded from the disk cache with the old callee's code (Numba's own cache
    checks only the caller's file: it would give 20 twice). Unchanged, the
    second process loads it from the cache."""
    (tmp_path / "caller.py").write_text(_CALLER)
    env = _env(NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env["PYTHONPATH"] = os.pathsep.join((str(tmp_path), env["PYTHONPATH"]))
    seen = []
    for increment in (1, 1, 2):
        (tmp_path / "callee.py").write_text(_CALLEE.format(increment=increment))
        seen.append(json.loads(_run(_CALLER_PROBE, env, timeout=300, cwd=tmp_path)))
    assert seen[0] == [20, 0], f"first process: {seen[0]} (value, cache hits)"
    assert seen[1] == [20, 1], f"an unchanged kernel was not loaded from the cache: {seen[1]}"
    assert seen[2][0] == 30, f"the caller ran its old callee after the callee's file changed: {seen[2]}"


_STEP_DIGEST = """
import hashlib, numpy as np, fast
config = fast.Config(vocab_size=97, n_embd=64, n_heads=4, n_layers=2, block_size=64)
params = fast.init_params(config, seed=3)
rng = np.random.default_rng(3)
# B*T = 512 rows and B*NH = 32 attention matrices: large enough that
# fast/_blas.py cuts the products into several fixed-size blocks
tokens = rng.integers(0, 97, size=(8, 64)); targets = rng.integers(0, 97, size=(8, 64))
logits, loss, cache = fast.forward(params, tokens, targets)
grads = fast.backward(params, cache)
# and a training step with dropout (SPEC §dropout)
dparams = fast.Params(config.replace(dropout_rate=0.1), params.data.copy())
dlogits, _, dcache = fast.forward(dparams, tokens, targets, dropout=fast.DropoutKey(3, 17))
dgrads = fast.backward(dparams, dcache)
print(hashlib.sha256(logits.tobytes() + grads.data.tobytes() + dlogits.tobytes() + dgrads.data.tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_forward_backward_same_bytes_for_any_process_thread_settings():
    """SPEC §parallel-split: the same bytes in fresh processes with NUMBA_NUM_THREADS and
    OPENBLAS_NUM_THREADS at 1 and at the machine's count (BLAS splits an
    sgemm by output blocks; Numba kernels by ownership)."""
    n = str(os.cpu_count() or 1)
    digests = set()
    # 3 threads: an odd count, more threads than cores here (blocks dealt round-robin)
    for numba_threads_, blas_threads in (("1", "1"), (n, "1"), ("1", n), (n, n), ("3", "1")):
        env = _env(NUMBA_NUM_THREADS=numba_threads_, OPENBLAS_NUM_THREADS=blas_threads)
        digests.add(_run(_STEP_DIGEST, env, timeout=600))
    assert len(digests) == 1, f"forward/backward bytes differ across thread settings: {digests}"


@pytest.mark.slow
@pytest.mark.xdist_group("fresh-numba-cache")
def test_freshly_compiled_and_cached_kernels_give_the_same_bytes(fresh_then_cached):
    """SPEC §fastmath: the process that compiles the kernels (an empty Numba cache)
    and a later one that loads them from that cache give the same bytes. With
    `nsz` among the tolerant flags they did not: Numba's parallel kernels
    (reassoc + nsz) ran differently rounded code when freshly compiled than
    when loaded from the cache (the residual + LayerNorm forward first, 5e-7)."""
    (_, fresh), (_, cached) = fresh_then_cached
    assert fresh == cached, "freshly compiled kernels and cached ones give different bytes"


def test_overloaded_helpers_are_called_only_from_their_own_file():
    """fast/_numba.py's cache key follows a kernel's callees through the Numba
    dispatchers its code names; a helper given its kernel form by `@overload`
    (tanh_of, exp_of) is no dispatcher, so a kernel in another file calling it would
    keep its cached code after the helper's file changed. Such helpers stay in their file."""
    import re

    files = sorted((ROOT / "fast").glob("*.py"))
    helpers = {name: path for path in files
               for name in re.findall(r"^@overload\((\w+)", path.read_text(), flags=re.M)}
    assert helpers, "no @overload helper found in fast/ (the check would pass vacuously)"
    for name, home in helpers.items():
        for path in files:
            if path != home and re.search(rf"\b{name}\b", path.read_text()):
                raise AssertionError(f"{path.name} names {name}, an @overload helper of {home.name}")
