"""Where a training step's time goes (SPEC section 9.2), for any implementation:
the four phases (forward + loss, backward, clip, AdamW), and, for an
implementation whose matmuls go through one function (`fast._blas.matmuls_into`,
found as `<impl>._blas.matmuls_into`, or `matmul_into` in older trees, and
rebound in every module of the package that imported it), the time inside those matmuls: attention products
(batched over (batch, head)) apart from the 2-D ones, with their FLOPs, so
"GEMM vs the rest" is measured, not guessed.

    python benchmarks/profile_step.py --impl fast --cell small-8x128 --steps 10

The wrappers cost ~1 us per matmul (about 100 per step); phases are timed
per step around the contract calls, so the parts add up to the step.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import LEARNING_RATE, MAX_NORM, TrainStep  # noqa: E402

PHASES = ("forward", "backward", "clip", "adamw")


def _flops(p) -> int:
    """Multiply-adds x 2 of one product (a, b, out, ...) or chain (out, ((a, b), ...)):
    full products, as SPEC 9.1 counts (a causal one does ~half)."""
    if len(p) == 2:  # fast._blas.Chain
        out, pairs = p
        return sum(2 * out.size * a.shape[-1] for a, _ in pairs)
    return 2 * p[2].size * p[0].shape[-1]


@contextlib.contextmanager
def timed_matmuls(impl, acc: dict):
    """Rebind the one function `<impl>._blas` runs every product through
    (`matmuls_into`, a launch of several products; else `matmul_into`) in the
    package's modules to a timing wrapper for the duration; yields False when
    the implementation has neither."""
    name = impl.__name__.split(".")[0]
    try:
        blas = importlib.import_module(f"{name}._blas")
    except ImportError:
        yield False
        return
    fname = "matmuls_into" if hasattr(blas, "matmuls_into") else "matmul_into"
    original = getattr(blas, fname, None)
    if original is None:
        yield False
        return
    holders = [m for key, m in list(sys.modules.items())
               if m is not None and (key == name or key.startswith(name + "."))
               and getattr(m, fname, None) is original]

    def record(products, seconds):
        kind = "attention gemm" if products[0][-2 if len(products[0]) == 2 else 2].ndim > 2 else "linear gemm"
        acc[kind] = acc.get(kind, 0.0) + seconds
        acc[kind + " flops"] = acc.get(kind + " flops", 0) + sum(_flops(p) for p in products)

    if fname == "matmuls_into":
        def wrapper(products, *args, **kw):
            start = time.perf_counter()
            result = original(products, *args, **kw)
            record(products, time.perf_counter() - start)
            return result
    else:
        def wrapper(a, b, out, **kw):
            start = time.perf_counter()
            result = original(a, b, out, **kw)
            record(((a, b, out),), time.perf_counter() - start)
            return result

    for m in holders:
        setattr(m, fname, wrapper)
    try:
        yield True
    finally:
        for m in holders:
            setattr(m, fname, original)


def profile(impl, preset: str, B: int, T: int, steps: int = 5, warmup: int = 2) -> dict:
    """Median seconds per step of each phase and of the matmuls inside forward
    and backward, over `steps` steps; GEMM FLOPs per step."""
    step = TrainStep(impl, impl.preset(preset), B, T, warmup=warmup)
    per_step: list[dict] = []
    with timed_matmuls(impl, {}) as has_gemm:
        pass
    for _ in range(steps):
        acc: dict = {}
        with timed_matmuls(impl, acc):
            t0 = time.perf_counter()
            _logits, _loss, cache = impl.forward(step.params, step.x, step.y)
            t1 = time.perf_counter()
            grads = impl.backward(step.params, cache)
            t2 = time.perf_counter()
        impl.clip_grad_norm(grads, MAX_NORM)
        t3 = time.perf_counter()
        impl.adamw_step(step.params, grads, step.state, LEARNING_RATE)
        t4 = time.perf_counter()
        del cache, grads, _logits
        acc.update(forward=t1 - t0, backward=t2 - t1, clip=t3 - t2, adamw=t4 - t3, step=t4 - t0)
        per_step.append(acc)
    keys = sorted({k for s in per_step for k in s})
    out = {k: statistics.median(s.get(k, 0.0) for s in per_step) for k in keys}
    out["has_gemm"] = has_gemm
    if has_gemm:
        out["gemm"] = out.get("linear gemm", 0.0) + out.get("attention gemm", 0.0)
        out["rest"] = out["step"] - out["gemm"]
    return out


def format_profile(cell: str, p: dict, peak_gflops: float | None = None) -> str:
    ms = lambda s: f"{1e3 * s:.1f}"  # noqa: E731
    parts = [f"{cell}: step {ms(p['step'])} ms = forward {ms(p['forward'])} + backward {ms(p['backward'])} "
             f"+ clip {ms(p['clip'])} + adamw {ms(p['adamw'])}"]
    if p.get("has_gemm"):
        for kind in ("linear gemm", "attention gemm"):
            if p.get(kind):
                rate = p[kind + " flops"] / p[kind] / 1e9
                share = f", {100 * rate / peak_gflops:.0f}% of peak" if peak_gflops else ""
                parts.append(f"  {kind}: {ms(p[kind])} ms ({100 * p[kind] / p['step']:.0f}% of step), "
                             f"{rate:.0f} GFLOP/s{share}")
        parts.append(f"  everything else: {ms(p['rest'])} ms ({100 * p['rest'] / p['step']:.0f}% of step)")
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/profile_step.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", default="fast")
    parser.add_argument("--cell", action="append", default=[], help="PRESET-BxT (repeatable; default all nine)")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    import accounting

    impl = importlib.import_module(args.impl)
    cells = args.cell or [accounting.cell_id(p, B, T) for p in accounting.PRESET_NAMES for B, T in accounting.CELLS]
    peak = accounting.measure_matmul_peak(accounting.PEAK_N, repeats=5).gflops
    print(f"matmul peak {peak:.0f} GFLOP/s")
    for cell in cells:
        preset, shape = cell.split("-")
        B, T = (int(x) for x in shape.split("x"))
        print(format_profile(cell, profile(impl, preset, B, T, args.steps), peak), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
