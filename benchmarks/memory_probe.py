"""Peak memory of a training step, measured in a fresh process (SPEC section 9).

    python benchmarks/memory_probe.py --impl reference --preset medium --batch 8 --seq 128

Prints one JSON line. `ru_maxrss` is the process's high-water mark, so the
probe reads it at three points:
1. after import and a tiny warm-up step (Numba compiles there; kernels are
   compiled per type, not per shape, so the medium step compiles nothing);
2. after building the medium state (params, AdamW state, batch);
3. after `--steps` medium training steps.
`step_increment_mb` = 3 - 2 is what the step itself adds above its state
(activations, caches, gradients); `peak_rss_mb` is the whole process.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TrainStep  # noqa: E402


def maxrss_mb() -> float:
    """The process's peak resident set size in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e6 if sys.platform == "darwin" else rss * 1024 / 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/memory_probe.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", required=True, help="implementation module (reference, fast, my.module)")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    try:
        impl = importlib.import_module(args.impl)
    except ImportError as exc:
        parser.error(f"--impl {args.impl}: cannot import: {exc}")
    try:
        config = impl.preset(args.preset)
    except ValueError as exc:
        parser.error(f"--preset: {exc}")
    TrainStep(impl, impl.preset("tiny").replace(block_size=8), 1, 8, warmup=1)  # compile, untimed
    after_warmup = maxrss_mb()
    step = TrainStep(impl, config, args.batch, args.seq, warmup=0)
    after_setup = maxrss_mb()
    for _ in range(args.steps):
        step()
    after_steps = maxrss_mb()
    print(json.dumps({
        "n_params": int(step.params.data.size),
        "rss_after_warmup_mb": round(after_warmup, 1),
        "rss_after_setup_mb": round(after_setup, 1),
        "peak_rss_mb": round(after_steps, 1),
        "step_increment_mb": round(after_steps - after_setup, 1),
        "steps": args.steps,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
