"""What the suite reports: the header (each implementation's path and version,
numpy/numba/thread counts, the environment that changes numerics) and the
terminal summaries (stale expected-failure patterns, the mutation catalogue's
mutant -> catching test table)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from conformance.expected_failures import expected_failure_files
from conformance.selection import implementations

# environment variables that change numerics, threading or test selection
REPORTED_ENV_PREFIXES = ("FESTE_", "NUMBA_", "OMP_", "OPENBLAS_", "MKL_", "BLIS_",
                         "VECLIB_", "HYPOTHESIS_", "PYTHONHASHSEED", "CI")


def _thread_info() -> str:
    """Numba version and thread count, without importing numba when no
    implementation under test did (importing it costs ~1 s per pytest run)."""
    import sys
    from importlib import metadata

    numba = sys.modules.get("numba")
    if numba is not None:
        return (f"numba {numba.__version__} (threads {numba.config.NUMBA_NUM_THREADS}, "
                f"layer {numba.config.THREADING_LAYER})")
    try:
        version = metadata.version("numba")
    except metadata.PackageNotFoundError:
        return "numba not installed"
    threads = os.environ.get("NUMBA_NUM_THREADS") or f"{os.cpu_count()} (default)"
    return f"numba {version} (not imported; threads {threads})"


def header_lines(config, hypothesis_profile: str) -> list[str]:
    import numpy

    lines = []
    for impl in implementations(config):
        lines.append(f"feste impl {impl.name}: version {impl.version}, {impl.path}")
    for err in getattr(config, "_feste_import_errors", []):
        lines.append(f"feste impl not available: {err}")
    lines.append(f"numpy {numpy.__version__}, {_thread_info()}, cpus {os.cpu_count()}, "
                 f"python {platform.python_version()}, hypothesis profile {hypothesis_profile}")
    for path in expected_failure_files(config):
        n = sum(1 for e in config._feste_expected if e.source.startswith(f"{Path(path)}:"))
        lines.append(f"feste expected failures: {path} ({n} patterns)")
    env = {k: v for k, v in os.environ.items() if k.startswith(REPORTED_ENV_PREFIXES)}
    lines.append("env: " + (" ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(none relevant)"))
    return lines


def write_summary(terminalreporter, config) -> None:
    stale = [e for e in getattr(config, "_feste_expected", []) if not e.matched]
    if stale:
        terminalreporter.section("feste expected failures")
        for entry in stale:
            terminalreporter.write_line(
                f"{entry.source}: pattern {entry.pattern!r} matched no collected test")
    # the mutation meta-test records (mutant, caught_by, seconds) per mutant
    rows = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            props = dict(getattr(report, "user_properties", []) or [])
            if "mutant" in props and report.when == "call":
                rows.append((props["mutant"], outcome, props.get("seconds", ""), props.get("caught_by", "")))
    if rows:
        terminalreporter.section("feste mutation catalogue: mutant -> the test that caught it")
        width = max(len(r[0]) for r in rows)
        for mutant, outcome, seconds, caught_by in sorted(rows):
            verdict = "caught" if outcome == "passed" else "NOT CAUGHT"
            terminalreporter.write_line(f"{mutant:<{width}}  {verdict:<10} {seconds:>5}s  {caught_by}")
