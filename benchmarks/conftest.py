"""Shared benchmark helpers. Benchmarks take the `impl` fixture, which the
conformance plugin parametrizes (`--impl` works here too), and the
`corpus_bytes` fixture (the cached Shakespeare corpus)."""
from __future__ import annotations

import os


def thread_count() -> int:
    """Threads the implementation may use (Numba's setting, else the CPU count)."""
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1
