"""Commands over the suites and the library: `python -m benchmarks.tools.NAME --help`."""


def split_pytest_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """A tool's own arguments, and those after `--` that it passes to pytest."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []



# the thread-count variables a tool's `--threads N` sets in its child process
THREAD_COUNT_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# set by pytest-xdist in its workers; a timed run started from inside one (a
# tool under test in the suite's own run) would inherit them, and
# pytest-benchmark reads PYTEST_XDIST_WORKER as "under xdist" and turns timing off
XDIST_WORKER_VARS = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


def timed_child_env(threads: int | None = None, **extra: str) -> dict[str, str]:
    """The environment for a timed child process: ours without xdist's worker
    markers, every thread-count variable set to `threads` when given, plus `extra`."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in XDIST_WORKER_VARS}
    if threads is not None:
        env.update({var: str(threads) for var in THREAD_COUNT_VARS})
    env.update(extra)
    return env
