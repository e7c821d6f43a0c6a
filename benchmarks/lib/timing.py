"""The one timer of the benchmark tools, and the reader of pytest-benchmark's.

`time_calls(fn, ...)` calls `fn` repeatedly and records, per call, the wall
time (`time.perf_counter`) and the CPU time of this process
(`time.process_time`: what other processes take from the cores is not
counted, as wall time would count it). The matmul peak (accounting.py), the
side-by-side rounds of implementations, the PyTorch peer and adapters
(tools/side_by_side.py) and the A/B
worker (tools/abtest.py) all time with it. The pytest-benchmark suites time
with pytest-benchmark itself; `median_seconds(benchmark)` reads its result.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Timings:
    """Seconds per call, in call order."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.wall)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def time_calls(fn, calls: int | None = None, *, seconds: float | None = None, min_calls: int = 1,
               max_calls: int | None = None) -> Timings:
    """Time `fn()` `calls` times, or, with `seconds`, until that much wall time
    has passed (at least `min_calls`, at most `max_calls` calls). Nothing is
    called untimed here: warm up before."""
    if (calls is None) == (seconds is None):
        raise ValueError("give exactly one of calls and seconds")
    if calls is not None and calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    if seconds is not None and (seconds <= 0 or min_calls < 1):
        raise ValueError(f"need seconds > 0 and min_calls >= 1, got seconds={seconds}, min_calls={min_calls}")
    out = Timings()
    deadline = None if seconds is None else time.perf_counter() + seconds
    while True:
        if calls is not None and out.calls >= calls:
            break
        if deadline is not None and out.calls >= min_calls and (
                time.perf_counter() >= deadline or (max_calls is not None and out.calls >= max_calls)):
            break
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        out.wall.append(time.perf_counter() - w0)
        out.cpu.append(time.process_time() - c0)
    return out


def median_seconds(benchmark) -> float | None:
    """Median seconds per call of a finished pytest-benchmark; None when timing is disabled."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return None
    return float(stats.stats.median)
