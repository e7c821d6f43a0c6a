"""Shared benchmark fixtures: the `impl` parametrization (same names as the
conformance suite: `--impl` is registered by the conformance plugin) and the
corpus."""
from __future__ import annotations

import os

import pytest

from conformance.plugin import implementations


def pytest_generate_tests(metafunc):
    # benchmarks take `bench_impl` (the conformance plugin owns `impl`)
    if "bench_impl" in metafunc.fixturenames:
        impls = implementations(metafunc.config)
        metafunc.parametrize("bench_impl", impls, ids=[i.name for i in impls], scope="session")


def thread_count() -> int:
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1
