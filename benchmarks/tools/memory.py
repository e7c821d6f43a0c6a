"""Peak memory of a training step, measured in a fresh process (SPEC §activation-memory and §performance).

    python -m benchmarks.tools.memory --impl fast --preset medium --batch 4 --seq 256
    python -m benchmarks.tools.memory --impl reference --preset medium --batch 8 --seq 128 --steps 3

Prints one JSON line. The measurement runs in a fresh process (`--child`),
because `ru_maxrss` is the process's high-water mark; it reads it at four
points:
1. after import and a tiny warm-up step (Numba compiles there; kernels are
   compiled per type, not per shape, so the measured step compiles nothing):
   `rss_after_warmup_mb`;
2. after building the state (params, AdamW state, batch): `rss_after_setup_mb`;
3. after the first step's forward + backward, which tracemalloc also traces
   (numpy reports its data buffers to it): `tracemalloc_peak_mb` and
   `after_forward_mb` are the traced bytes above the state, at the peak and
   after the forward; `rss_increment_mb` is the high-water mark's rise;
4. after `--steps` whole training steps (clip and AdamW too): `peak_rss_mb`,
   the whole process, and `step_increment_mb` = 4 - 2, what the step adds
   above its state (activations, caches, gradients).
The parent adds SPEC §activation-memory's prediction (`predicted`: cache, logits and one
gradient buffer; `predicted_total_mb`). The other fresh-process probes
(tokenizer_memory, scaling_probe) read the high-water mark with `maxrss_bytes`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys

MB = 1e6


def maxrss_bytes() -> int:
    """The process's peak resident set size in bytes (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def maxrss_mb() -> float:
    return maxrss_bytes() / MB


def run_fresh(module: str, args: list[str], timeout: float = 1800, env=None) -> dict:
    """`python -m MODULE --child ARGS` in a fresh process; its last stdout line as JSON."""
    cmd = [sys.executable, "-m", module, "--child", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def predicted_bytes(config, B: int, T: int, itemsize: int = 4) -> dict[str, float]:
    """SPEC §activation-memory: cache elements per token L (16C + 2 + NH T) + 2C + 1 + V;
    plus logits (V per token) and one gradient buffer."""
    import reference

    C, V, L, NH = config.n_embd, config.vocab_size, config.n_layers, config.n_heads
    per_token = L * (16 * C + 2 + NH * T) + 2 * C + 1 + V
    return {
        "cache_mb": B * T * per_token * itemsize / MB,
        "logits_mb": B * T * V * itemsize / MB,
        "grads_mb": reference.n_params(config) * itemsize / MB,
        "cache_bytes_per_token": per_token * itemsize,
    }


def child(impl_name: str, preset_name: str, B: int, T: int, steps: int) -> dict:
    """The measurement, in this (fresh) process."""
    import tracemalloc

    import numpy as np

    from benchmarks.lib.harness import MAX_NORM, LEARNING_RATE, TrainStep

    impl = importlib.import_module(impl_name)
    config = impl.preset(preset_name)
    TrainStep(impl, impl.preset("tiny").replace(block_size=8), 1, 8, warmup=1)  # compile, untimed
    after_warmup = maxrss_bytes()
    step = TrainStep(impl, config, B, T, warmup=0)
    after_setup = maxrss_bytes()

    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    logits, loss, cache = impl.forward(step.params, step.x, step.y)
    after_forward, _ = tracemalloc.get_traced_memory()
    grads = impl.backward(step.params, cache)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after_backward = maxrss_bytes()
    assert np.isfinite(loss) and logits is not None, f"{impl_name}: non-finite loss {loss}"
    impl.clip_grad_norm(grads, MAX_NORM)
    impl.adamw_step(step.params, grads, step.state, LEARNING_RATE)
    del logits, cache, grads
    for _ in range(steps - 1):
        step()
    after_steps = maxrss_bytes()
    return {
        "impl": impl_name, "preset": preset_name, "B": B, "T": T, "steps": steps,
        "n_params": int(step.params.data.size), "params_mb": step.params.data.nbytes / MB,
        "rss_after_warmup_mb": round(after_warmup / MB, 1),
        "rss_after_setup_mb": round(after_setup / MB, 1),
        "after_forward_mb": (after_forward - base) / MB,
        "tracemalloc_peak_mb": (peak - base) / MB,
        "rss_increment_mb": (after_backward - after_setup) / MB,
        "peak_rss_mb": round(after_steps / MB, 1),
        "step_increment_mb": round((after_steps - after_setup) / MB, 1),
    }


def measure(impl: str, preset: str, B: int, T: int, steps: int = 1, timeout: float = 1800) -> dict:
    """`child` in a fresh process, with SPEC §activation-memory's prediction added."""
    import reference

    result = run_fresh("benchmarks.tools.memory", ["--impl", impl, "--preset", preset, "--batch", B, "--seq", T,
                                                    "--steps", steps], timeout)
    p = result["predicted"] = predicted_bytes(reference.preset(preset), B, T)
    result["predicted_total_mb"] = p["cache_mb"] + p["logits_mb"] + p["grads_mb"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", default="fast", help="implementation module (reference, fast, my.module)")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--batch", "-B", type=int, default=8)
    parser.add_argument("--seq", "-T", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1, help="training steps in all (default 1)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.seq < 1:
        parser.error(f"--steps, --batch and --seq must be >= 1, got {args.steps}, {args.batch}, {args.seq}")
    if args.child:
        print(json.dumps(child(args.impl, args.preset, args.batch, args.seq, args.steps)))
        return 0
    try:
        importlib.import_module(args.impl).preset(args.preset)
    except ImportError as exc:
        parser.error(f"--impl {args.impl}: cannot import: {exc}")
    except ValueError as exc:
        parser.error(f"--preset: {exc}")
    try:
        print(json.dumps(measure(args.impl, args.preset, args.batch, args.seq, args.steps)))
    except RuntimeError as exc:
        print(f"memory: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
