"""benchmarks/lib/timing.py, the one timer, and the suites' xdist rule (benchmarks/conftest.py)."""
from __future__ import annotations

import time

import pytest

from benchmarks import conftest
from benchmarks.lib.timing import time_calls


def test_counted_calls_are_each_timed():
    calls = []
    t = time_calls(lambda: calls.append(1), 3)
    assert len(calls) == 3 == t.calls == len(t.wall) == len(t.cpu)
    assert all(w >= 0 for w in t.wall) and all(c >= 0 for c in t.cpu)


def test_timed_calls_stop_after_the_seconds_with_a_floor_and_a_ceiling():
    t = time_calls(lambda: time.sleep(0.02), seconds=0.05, min_calls=5)
    assert t.calls == 5  # the floor, although 0.05 s passed after 3 calls
    assert t.median_wall >= 0.02
    assert time_calls(lambda: None, seconds=10.0, max_calls=7).calls == 7  # the ceiling


def test_cpu_time_counts_work_not_waiting():
    """A 50 ms sleep costs about no CPU time; a loop that runs until this process
    has used 30 ms of CPU costs at least that, however loaded the machine is."""
    def busy():
        end = time.process_time() + 0.03
        while time.process_time() < end:
            pass

    slept, worked = time_calls(lambda: time.sleep(0.05), 1), time_calls(busy, 1)
    assert slept.median_wall >= 0.05 and slept.median_cpu < 0.01
    assert worked.median_cpu >= 0.03 and worked.median_wall >= worked.median_cpu * 0.99


@pytest.mark.parametrize("kwargs", [{}, {"calls": 2, "seconds": 1.0}, {"calls": 0}, {"seconds": 0.0}])
def test_bad_arguments_are_named(kwargs):
    with pytest.raises(ValueError):
        time_calls(lambda: None, **kwargs)


class _Config:
    def __init__(self, disabled):
        self.disabled = disabled

    def getoption(self, name):
        assert name == "benchmark_disable"
        return self.disabled


def test_timed_benchmarks_never_spread_over_xdist_workers():
    """`-n auto` (pyproject's addopts) gives no workers to a timed benchmark run,
    and leaves the choice to xdist when timing is off (the CI smoke run)."""
    assert conftest.pytest_xdist_auto_num_workers(_Config(False)) == 0
    assert conftest.pytest_xdist_auto_num_workers(_Config(True)) is None
