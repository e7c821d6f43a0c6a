"""Shared benchmark fixtures. Benchmarks take the `impl` fixture, which the
conformance plugin parametrizes (`--impl` works here too), and the
`corpus_bytes` fixture (the cached Shakespeare corpus).

`matmul_peak` is the float32 matmul peak measured once per session (SPEC
section 9); every training-step benchmark reads it to report its fraction.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # benchmarks/ helpers: accounting, harness

import accounting  # noqa: E402

# repeats of the session's peak measurement: fewer when timings are off
PEAK_REPEATS = 7
PEAK_REPEATS_DISABLED = 2


def thread_count() -> int:
    """Threads the implementation may use (Numba's setting, else the CPU count)."""
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1


def benchmarks_disabled(config) -> bool:
    try:
        return bool(config.getoption("benchmark_disable"))
    except ValueError:  # pytest-benchmark not installed
        return True


@pytest.fixture(scope="session")
def matmul_peak(request) -> accounting.MatmulPeak:
    """np.matmul on 2048 x 2048 float32, median GFLOP/s, measured once in this session."""
    repeats = PEAK_REPEATS_DISABLED if benchmarks_disabled(request.config) else PEAK_REPEATS
    return accounting.measure_matmul_peak(accounting.PEAK_N, repeats=repeats)

