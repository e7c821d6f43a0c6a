"""Run-to-run noise of the benchmarks on this machine: run the same suite N
times (default 5) and report, per benchmark, the spread of the medians.

    python benchmarks/noise.py                       # bench_step.py, 5 runs, every impl
    python benchmarks/noise.py --runs 5 -- --impl fast -k "medium"

Spread = (max median - min median) / min median over the runs. A regression
threshold for `compare.sh --fail median:X%` must sit above the largest
spread of the benchmarks it guards, or a clean re-run fails; SPEC section 9
records the figures measured here and the threshold chosen from them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def spreads(runs: list[dict]) -> dict[str, dict]:
    """Per benchmark fullname: the medians of each run and their spread.
    Only benchmarks present in every run are reported."""
    if not runs:
        raise ValueError("no runs to compare")
    medians: dict[str, list[float]] = {}
    for i, data in enumerate(runs):
        if "benchmarks" not in data:
            raise ValueError(f"run {i}: not pytest-benchmark JSON (no 'benchmarks' list)")
        for bench in data["benchmarks"]:
            median = (bench.get("stats") or {}).get("median")
            if median:
                medians.setdefault(bench["fullname"], []).append(float(median))
    out = {}
    for name, values in medians.items():
        if len(values) != len(runs):
            continue
        lo, hi = min(values), max(values)
        out[name] = {"medians": values, "spread": (hi - lo) / lo,
                     "rel_stdev": statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0}
    return out


def format_spreads(table: dict[str, dict]) -> str:
    lines = ["| benchmark | medians (ms) | spread (max-min)/min | rel. stdev |", "|---|---|---|---|"]
    for name, row in sorted(table.items(), key=lambda kv: -kv[1]["spread"]):
        short = name.split("::")[-1]
        medians = ", ".join(f"{m * 1e3:.1f}" for m in row["medians"])
        lines.append(f"| {short} | {medians} | {100 * row['spread']:.1f}% | {100 * row['rel_stdev']:.1f}% |")
    if table:
        worst = max(row["spread"] for row in table.values())
        typical = statistics.median(row["spread"] for row in table.values())
        lines += ["", f"largest spread {100 * worst:.1f}%, median spread {100 * typical:.1f}% "
                      f"over {len(next(iter(table.values()))['medians'])} runs"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="benchmarks/noise.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repeated runs (default 5)")
    parser.add_argument("--bench", default="bench_step.py", help="benchmark file under benchmarks/")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "noise.md",
                        help="where to write the Markdown table")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error(f"--runs must be at least 2, got {args.runs}")
    target = HERE / args.bench
    if not target.is_file():
        parser.error(f"--bench {args.bench}: no such file {target}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="feste-noise-") as tmp:
        for i in range(args.runs):
            path = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, "-m", "pytest", str(target), "-q", "-p", "no:randomly",
                   "-p", "no:cacheprovider", f"--benchmark-json={path}",
                   "--benchmark-columns=median,iqr,rounds", *extra]
            print(f"noise: run {i + 1}/{args.runs}: {' '.join(cmd)}", flush=True)
            rc = subprocess.call(cmd, cwd=REPO)
            if rc != 0 or not path.exists():
                print(f"noise: run {i + 1} failed (pytest exit code {rc})", file=sys.stderr)
                return rc or 1
            runs.append(json.loads(path.read_text()))
    text = format_spreads(spreads(runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print("\n" + text + f"\n\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
