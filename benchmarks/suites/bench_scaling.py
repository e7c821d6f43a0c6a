"""Data-parallel scaling and the cost of gradient accumulation (SPEC §micro-batches, §scaling).

Medium, a step of B=8 rows of T=256 (two micro-batches of the seed's 4x256
cell), each case in fresh processes (benchmarks/tools/scaling_probe.py) so thread
settings and peak memory are the case's own:

| case | processes | threads each | grad_accum | micro-batch |
|---|---|---|---|---|
| accum-1proc-1thread | 1 | 1 | 2 | 4 |
| mpi-2proc-1thread | 2 (`mpiexec -n 2`) | 1 | 1 | 4 |
| accum-1proc-2threads | 1 | 2 | 2 | 4 |
| single-1proc-1thread | 1 | 1 | 1 | 8 |

The first three do the same work with the same bytes (SPEC §micro-batches); the last is
the same step as one batch: the first against it is the overhead of
accumulation (and its memory saving). extra_info holds the probe's steady
figures (median step seconds, tokens/s, peak RSS per process); the
benchmark's own time is the whole subprocess (start-up and warm-up
included). With --benchmark-disable (the CI smoke run) the cases run the tiny
preset for one step.

    python -m pytest benchmarks/suites/bench_scaling.py --impl fast       # pytest-benchmark
    python -m benchmarks.suites.bench_scaling --impl fast --rounds 3      # the four cases as a table
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest

PROBE = "benchmarks.tools.scaling_probe"
B, T = 8, 256
# (id, processes, threads per process, grad_accum)
CASES = [
    ("accum-1proc-1thread", 1, 1, 2),
    ("mpi-2proc-1thread", 2, 1, 1),
    ("accum-1proc-2threads", 1, 2, 2),
    ("single-1proc-1thread", 1, 1, 1),
]
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def mpi_missing() -> str | None:
    """Why an MPI case cannot run here, or None."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'feste-spec[mpi]')"
    if shutil.which("mpiexec") is None:
        return "no mpiexec on PATH (pip install 'feste-spec[mpi]')"
    return None


def run_case(impl: str, processes: int, threads: int, grad_accum: int, preset: str = "medium",
             steps: int = 5, timeout: float = 1800) -> dict:
    """One case in fresh processes; the probe's JSON line as a dict."""
    env = dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})
    cmd = [sys.executable, "-m", PROBE, "--impl", impl, "--preset", preset, "--batch", str(B), "--seq", str(T),
           "--grad-accum", str(grad_accum), "--steps", str(steps)]
    if processes > 1:
        cmd = ["mpiexec", "-n", str(processes), *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case, processes, threads, grad_accum", CASES, ids=[c[0] for c in CASES])
def test_scaling(benchmark, impl, case, processes, threads, grad_accum):
    if processes > 1 and mpi_missing():
        pytest.skip(mpi_missing())
    disabled = benchmark.disabled
    preset, steps = ("tiny", 1) if disabled else ("medium", 5)
    result = {}

    def run():
        result.update(run_case(impl.name, processes, threads, grad_accum, preset, steps))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({"impl": impl.name, "component": f"scaling {case}", **result})
    assert result["processes"] == processes and result["micro_batch"] == B // (processes * grad_accum)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suites.bench_scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", default="fast")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case and round")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of the four cases, interleaved (a shared machine's load drifts)")
    args = parser.parse_args(argv)
    print(f"{args.preset}, B={B}, T={T}, impl {args.impl}, {args.steps} timed steps per case, {args.rounds} "
          f"round(s); load average {os.getloadavg()[0]:.1f} at the start")
    results: dict[str, list[dict]] = {case: [] for case, *_ in CASES}
    for _ in range(args.rounds):
        for case, processes, threads, grad_accum in CASES:
            if processes > 1 and mpi_missing():
                continue
            results[case].append(run_case(args.impl, processes, threads, grad_accum, args.preset, args.steps))
    print(f"load average {os.getloadavg()[0]:.1f} at the end; per case: the median over rounds of each "
          "round's median step, the fastest step seen, tokens/s at that median, CPU seconds per step (all "
          "processes)")
    print(f"{'case':<24}{'procs':>6}{'threads':>8}{'K':>3}{'b':>3}{'median s':>10}{'min s':>8}"
          f"{'tokens/s':>10}{'CPU s':>8}  peak RSS MB per process")
    for case, processes, threads, grad_accum in CASES:
        rs = results[case]
        if not rs:
            print(f"{case:<24} skipped: {mpi_missing()}")
            continue
        median = statistics.median(r["median_s"] for r in rs)
        fastest = min(r["min_s"] for r in rs)
        rss = [max(r["peak_rss_mb"][i] for r in rs) for i in range(processes)]
        cpu = statistics.median(r["cpu_s"] for r in rs)
        print(f"{case:<24}{processes:>6}{threads:>8}{grad_accum:>3}{rs[0]['micro_batch']:>3}{median:>10.3f}"
              f"{fastest:>8.3f}{B * T / median:>10.1f}{cpu:>8.2f}  {rss}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
