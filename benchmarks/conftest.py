"""Shared benchmark fixtures. Benchmarks take the `impl` fixture, which the
conformance plugin parametrizes (`--impl` works here too), and the
`corpus_bytes` fixture (the cached Shakespeare corpus).

`matmul_peak` is the float32 matmul peak measured once per session (SPEC §performance); every training-step benchmark reads it to report its fraction.

Every benchmark's `extra_info["runtime"]`, and the JSON's
`machine_info["feste_runtime"]`, record the BLAS library, version, threading
layer and kernel architecture (threadpoolctl), Numba's threads and threading
layer, and a warning when a variable pins older BLAS kernels than the CPU
supports (benchmarks/lib/runtime.py).

`--peer torch` adds the PyTorch peer (benchmarks/lib/torch_peer.py) to the
training-step benchmarks; each cell's benchmarks run next to each other
(implementations, then the peer), so a cell's figures share the machine's load.

Timed runs are never spread over pytest-xdist workers (pyproject's `-n auto`
is for the test suites): benchmarks running side by side would time each
other's load, and pytest-benchmark turns timing off under xdist. With
`--benchmark-disable` (each benchmark once, the CI smoke run) they may spread.
"""
from __future__ import annotations

import os

import pytest

from benchmarks.lib import accounting, runtime, torch_peer

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



def pytest_xdist_auto_num_workers(config):
    """`-n auto` / `-n logical` means no workers when the benchmarks are timed."""
    return None if benchmarks_disabled(config) else 0


def pytest_addoption(parser):
    parser.addoption("--peer", action="append", default=[], choices=torch_peer.PEERS,
                     help="also time this peer on the training-step cells, the way its users would write "
                          "the model (repeatable; 'torch': PyTorch eager, needs the 'torch' extra)")


def pytest_collection_modifyitems(config, items):
    """Peer benchmarks only with --peer; training-step benchmarks grouped by cell."""
    if not config.getoption("peer"):
        dropped = [item for item in items if "peer" in getattr(item, "fixturenames", ())]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if item not in dropped]
    def cell_rank(item):
        spec = getattr(item, "callspec", None)
        if spec is None or "preset_name" not in spec.params or not item.name.startswith("test_train_step"):
            return None
        return (accounting.PRESET_NAMES.index(spec.params["preset_name"]),
                accounting.CELLS.index((spec.params["B"], spec.params["T"])))

    # a stable sort of the training-step items among themselves, others stay put
    slots = [i for i, item in enumerate(items) if cell_rank(item) is not None]
    ranked = sorted((items[i] for i in slots), key=cell_rank)
    for i, item in zip(slots, ranked):
        items[i] = item


def pytest_generate_tests(metafunc):
    if "peer" in metafunc.fixturenames:
        peers = metafunc.config.getoption("peer")
        metafunc.parametrize("peer", list(dict.fromkeys(peers)), ids=[f"peer-{p}" for p in dict.fromkeys(peers)])


def pytest_benchmark_update_machine_info(config, machine_info):
    """The report header's facts (benchmarks/lib/runtime.py), taken at the end of the session."""
    machine_info["feste_runtime"] = runtime.runtime_info()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """After each benchmark: its extra_info["runtime"] (BLAS, Numba, kernel warnings)."""
    yield
    bench = getattr(item, "funcargs", {}).get("benchmark")
    if bench is not None:
        bench.extra_info["runtime"] = runtime.runtime_info()
