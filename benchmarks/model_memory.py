"""Peak memory of one forward+backward against the prediction of SPEC section 2.4.

    python benchmarks/model_memory.py                       # reference, medium, B=4, T=256
    python benchmarks/model_memory.py --impl fast --preset small -B 8 -T 128

Each measurement runs in a fresh subprocess (`--child`), which builds the
params and the batch, runs a tiny warm-up forward+backward (BLAS thread pool,
Numba compilation), then measures one forward+backward two ways:
- `tracemalloc_peak_mb`: the peak of traced allocations (numpy reports its
  data buffers to tracemalloc) above the state before the call;
- `rss_increment_mb`: `ru_maxrss` after minus before (the process high-water
  mark, so it includes the allocator's and BLAS's own buffers).
Prints one JSON line with both and the SPEC prediction.
"""
from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys

import numpy as np

MB = 1e6


def predicted_bytes(config, B: int, T: int, itemsize: int = 4) -> dict[str, float]:
    """SPEC section 2.4: cache elements per token L (16C + 2 + NH T) + 2C + 1 + V;
    plus logits (V per token) and one gradient buffer."""
    C, V, L, NH = config.n_embd, config.vocab_size, config.n_layers, config.n_heads
    per_token = L * (16 * C + 2 + NH * T) + 2 * C + 1 + V
    n_params = sum(int(np.prod(s.shape)) for s in importlib.import_module("reference").param_table(config))
    return {
        "cache_mb": B * T * per_token * itemsize / MB,
        "logits_mb": B * T * V * itemsize / MB,
        "grads_mb": n_params * itemsize / MB,
        "cache_bytes_per_token": per_token * itemsize,
    }


def maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def child(impl_name: str, preset_name: str, B: int, T: int) -> dict:
    import tracemalloc

    impl = importlib.import_module(impl_name)
    config = impl.preset(preset_name)
    params = impl.init_params(config, seed=0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, config.vocab_size, (B, T))
    targets = rng.integers(0, config.vocab_size, (B, T))
    # warm-up on a tiny config: thread pools, compilation; not the measured shapes
    tiny = impl.Config(vocab_size=8, n_embd=8, n_heads=2, n_layers=1, block_size=4)
    tp = impl.init_params(tiny, seed=0)
    impl.backward(tp, impl.forward(tp, np.zeros((1, 4), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))[2])

    rss_before = maxrss_bytes()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    logits, loss, cache = impl.forward(params, tokens, targets)
    after_forward, _ = tracemalloc.get_traced_memory()
    grads = impl.backward(params, cache)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = maxrss_bytes()
    assert np.isfinite(loss) and grads is not None and logits is not None
    return {
        "impl": impl_name, "preset": preset_name, "B": B, "T": T,
        "after_forward_mb": (after_forward - base) / MB,
        "tracemalloc_peak_mb": (peak - base) / MB,
        "rss_increment_mb": (rss_after - rss_before) / MB,
        "params_mb": params.data.nbytes / MB,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", default="reference")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("-B", type=int, default=4)
    parser.add_argument("-T", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.impl, args.preset, args.B, args.T)))
        return 0
    out = subprocess.run([sys.executable, __file__, "--child", "--impl", args.impl, "--preset", args.preset,
                          "-B", str(args.B), "-T", str(args.T)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        return out.returncode
    result = json.loads(out.stdout.strip().splitlines()[-1])
    import reference

    result["predicted"] = predicted_bytes(reference.preset(args.preset), args.B, args.T)
    p = result["predicted"]
    result["predicted_total_mb"] = p["cache_mb"] + p["logits_mb"] + p["grads_mb"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
