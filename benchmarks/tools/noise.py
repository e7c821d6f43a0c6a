"""Run-to-run noise of the benchmarks on this machine: run the same suite N
times (default 5) and report, per benchmark, the spread of the medians.

    python -m benchmarks.tools.noise                       # bench_step.py, 5 runs, every impl
    python -m benchmarks.tools.noise --runs 5 --threads 1 -- --impl fast -k "medium"

Spread = (max - min) / min over the runs of a benchmark's median (and,
separately, of its min). A regression threshold for `compare.sh --fail
STAT:X%` must sit above the largest spread of STAT for the benchmarks it
guards, or a clean re-run fails; SPEC §performance records the figures measured
here and the threshold chosen from them.
"""
from __future__ import annotations

from benchmarks.tools import split_pytest_args, timed_child_env  # noqa: E402

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SUITES = Path(__file__).resolve().parents[1] / "suites"


def spreads(runs: list[dict], stat: str = "median") -> dict[str, dict]:
    """Per benchmark fullname: its `stat` (median, min, mean) in each run and
    their spread. Only benchmarks present in every run are reported."""
    if not runs:
        raise ValueError("no runs to compare")
    medians: dict[str, list[float]] = {}
    for i, data in enumerate(runs):
        if "benchmarks" not in data:
            raise ValueError(f"run {i}: not pytest-benchmark JSON (no 'benchmarks' list)")
        for bench in data["benchmarks"]:
            value = (bench.get("stats") or {}).get(stat)
            if value:
                medians.setdefault(bench["fullname"], []).append(float(value))
    out = {}
    for name, values in medians.items():
        if len(values) != len(runs):
            continue
        lo, hi = min(values), max(values)
        out[name] = {"medians": values, "spread": (hi - lo) / lo,
                     "rel_stdev": statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0}
    return out


def format_spreads(table: dict[str, dict], stat: str = "median") -> str:
    lines = [f"| benchmark | {stat} per run (ms) | spread (max-min)/min | rel. stdev |", "|---|---|---|---|"]
    for name, row in sorted(table.items(), key=lambda kv: -kv[1]["spread"]):
        short = name.split("::")[-1]
        medians = ", ".join(f"{m * 1e3:.1f}" for m in row["medians"])
        lines.append(f"| {short} | {medians} | {100 * row['spread']:.1f}% | {100 * row['rel_stdev']:.1f}% |")
    if table:
        worst = max(row["spread"] for row in table.values())
        typical = statistics.median(row["spread"] for row in table.values())
        lines += ["", f"{stat}: largest spread {100 * worst:.1f}%, median spread {100 * typical:.1f}% "
                      f"over {len(next(iter(table.values()))['medians'])} runs"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_pytest_args(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.noise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repeated runs (default 5)")
    parser.add_argument("--bench", default="bench_step.py", help="benchmark file under benchmarks/suites/")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS for the runs (default: the environment's)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench" / "noise.md",
                        help="where to write the Markdown table")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error(f"--runs must be at least 2, got {args.runs}")
    target = SUITES / args.bench
    if not target.is_file():
        parser.error(f"--bench {args.bench}: no such file {target}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be positive, got {args.threads}")
    env = timed_child_env(args.threads)
    runs = []
    with tempfile.TemporaryDirectory(prefix="feste-noise-") as tmp:
        for i in range(args.runs):
            path = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, "-m", "pytest", str(target), "-q", "-p", "no:randomly",
                   "-p", "no:cacheprovider", f"--benchmark-json={path}",
                   "--benchmark-columns=median,iqr,rounds", *extra]
            print(f"noise: run {i + 1}/{args.runs}: {' '.join(cmd)}", flush=True)
            rc = subprocess.call(cmd, env=env)
            if rc != 0 or not path.exists():
                print(f"noise: run {i + 1} failed (pytest exit code {rc})", file=sys.stderr)
                return rc or 1
            runs.append(json.loads(path.read_text()))
    text = "\n\n".join(format_spreads(spreads(runs, stat), stat) for stat in ("median", "min"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print("\n" + text + f"\n\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
