"""Performance accounting (SPEC §performance): training FLOPs, the float32 matmul
peak, the nine cells of the seed's table and its M1 figures.

Dimension legend: B batch, T sequence length, C n_embd, V vocab, L n_layers.

Used by the benchmark suites (through `benchmarks/conftest.py`) and the tools;
it imports nothing from an implementation, so it can account for any of them.
"""
from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass

import numpy as np

from .timing import time_calls

PRESET_NAMES = ("tiny", "small", "medium")
# (B, T) columns of the seed's table, in its order
CELLS = ((16, 64), (8, 128), (4, 256))
# The seed's per-step times on an M1 MacBook Pro (8 cores), in ms, for
# orientation only: another machine, another language (Rust + Rayon).
SEED_M1_MS = {
    ("tiny", 16, 64): 25.0, ("tiny", 8, 128): 45.0, ("tiny", 4, 256): 120.0,
    ("small", 16, 64): 50.0, ("small", 8, 128): 90.0, ("small", 4, 256): 250.0,
    ("medium", 16, 64): 200.0, ("medium", 8, 128): 450.0, ("medium", 4, 256): 1200.0,
}
# Side of the square float32 matmul that defines the peak (SPEC §performance)
PEAK_N = 2048


def cell_id(preset_name: str, B: int, T: int) -> str:
    """The id used in benchmark names and report rows, e.g. 'tiny-16x64'."""
    return f"{preset_name}-{B}x{T}"


def forward_flops(config, B: int, T: int) -> int:
    """Forward FLOPs of one step (SPEC §performance):
    `2 * (L*12*C*C + C*V) * B*T + L * 4*B*T*T*C`.

    Per token and layer the q, k, v, out projections (4 C*C) and fc1, fc2
    (2 * 4 C*C) are 12 C*C multiply-adds, plus the output projection C*V; a
    multiply-add is 2 FLOPs. QK^T and AV are each 2*B*T*T*C, counted as full
    squares (the causal mask is not subtracted)."""
    for name, value in (("B", B), ("T", T)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    L, C, V = config.n_layers, config.n_embd, config.vocab_size
    return 2 * (L * 12 * C * C + C * V) * B * T + L * 4 * B * T * T * C


def training_flops(config, B: int, T: int) -> int:
    """Training FLOPs of one step: 3 x forward (backward is two matmuls per forward one)."""
    return 3 * forward_flops(config, B, T)


def matmul_flops(n: int) -> int:
    """FLOPs of one n x n by n x n matmul: n*n outputs, n multiply-adds each."""
    return 2 * n ** 3


@dataclass(frozen=True)
class MatmulPeak:
    """The float32 matmul peak measured in this session (SPEC §performance)."""

    gflops: float  # median GFLOP/s of np.matmul on n x n float32
    median_s: float  # median seconds per matmul
    n: int
    repeats: int
    blas_threads: int | None

    def fraction(self, flops: float, seconds: float) -> float:
        """Achieved FLOP/s of a timed piece of work as a fraction of this peak."""
        return flops / seconds / (self.gflops * 1e9)

    def as_info(self) -> dict:
        return {"matmul_peak_gflops": round(self.gflops, 3), "matmul_peak_n": self.n,
                "matmul_peak_repeats": self.repeats}


def matmul_operands(n: int = PEAK_N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two fixed random float32 n x n matrices."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n), dtype=np.float32),
            rng.standard_normal((n, n), dtype=np.float32))


def measure_matmul_peak(n: int = PEAK_N, repeats: int = 7, warmup: int = 1) -> MatmulPeak:
    """Median GFLOP/s of `np.matmul` on n x n float32, after `warmup` untimed calls."""
    if n < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need n >= 1, repeats >= 1, warmup >= 0; got n={n}, repeats={repeats}, warmup={warmup}")
    a, b = matmul_operands(n)
    out = np.empty((n, n), dtype=np.float32)
    for _ in range(warmup):
        np.matmul(a, b, out=out)
    median = time_calls(lambda: np.matmul(a, b, out=out), repeats).median_wall
    return MatmulPeak(matmul_flops(n) / median / 1e9, median, n, repeats, blas_threads())


def blas_threads() -> int | None:
    """Threads NumPy's BLAS uses: threadpoolctl when installed, else the
    OpenBLAS bundled with NumPy wheels asked directly, else None (unknown)."""
    try:
        from threadpoolctl import threadpool_info

        counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
        if counts:
            return int(max(counts))
    except ImportError:
        pass
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "*openblas*")):
        lib = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                       "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(lib, symbol):
                return int(getattr(lib, symbol)())
    return None


def numba_threads() -> int | None:
    """Numba's current thread count, or None without Numba."""
    try:
        import numba
    except ImportError:
        return None
    return int(numba.get_num_threads())


def step_info(impl_name: str, config, preset_name: str, B: int, T: int,
              peak: MatmulPeak, median_s: float | None) -> dict:
    """The `extra_info` of a training-step benchmark (SPEC §performance).

    Rates (tokens/s, FLOP/s, fraction of peak) need the median step time;
    with `--benchmark-disable` there is none and only the static fields are set."""
    tokens = B * T
    flops = training_flops(config, B, T)
    nb, bl = numba_threads(), blas_threads()
    info = {
        "impl": impl_name, "preset": preset_name, "B": B, "T": T, "cell": cell_id(preset_name, B, T),
        "threads": max(t for t in (nb, bl, 1) if t is not None),
        "numba_threads": nb, "blas_threads": bl,
        "tokens_per_step": tokens, "training_flops_per_step": flops,
        "seed_m1_ms": SEED_M1_MS.get((preset_name, B, T)),
        **peak.as_info(),
    }
    if median_s is not None and median_s > 0:
        info.update({
            "median_ms": median_s * 1e3,
            "tokens_per_s": tokens / median_s,
            "flop_per_s": flops / median_s,
            "fraction_of_matmul_peak": peak.fraction(flops, median_s),
        })
    return info
