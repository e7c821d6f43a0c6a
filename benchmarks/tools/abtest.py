"""Regression tracking that survives a noisy shared machine (SPEC §regression-tracking):
interleaved A/B rounds in fresh processes, judged by a paired test.

    python -m benchmarks.tools.abtest BASE_DIR HEAD_DIR [--cells tiny-16x64,...] [--rounds 10]
    python -m benchmarks.tools.abtest --worker --cells tiny-16x64 --impl fast     # one side, one process

Each round starts one fresh process per side (BASE_DIR and HEAD_DIR: two
source trees, each importing its own implementation through PYTHONPATH and
its own Numba cache; both time with this package's harness and timer), in
alternating order (base first in even rounds, head first in odd ones), so
both sides see the same slice of the machine's load. A process builds each
cell's training step (lib/harness.py's TrainStep), runs warm-up steps, then
times steps for about `--seconds` per cell (lib/timing.py) and reports the
median CPU time per step (`time.process_time`: time other processes take
from the cores is not counted, as wall time would count it) and the median
wall time.

Per cell and round the paired log ratio d = ln(head / base) is formed, over
the rounds in which neither process was disturbed: a round whose base or
head time lies more than `outlier` (default 20%) from its own side's median
over the rounds is set aside as a load event (a whole process slowed by a
neighbour's burst), and reported; a 10% change of the code moves every round
of one side alike, so it is never set aside. With fewer than 6 rounds left
the cell is "too noisy" (not flagged; run more rounds). The verdict for a
cell is REGRESSION when both hold:
- the slowdown is real: a one-sided Wilcoxon signed-rank test
  (exact distribution, ties included; no normality assumed, so a round
  spoiled by the machine's load only moves ranks) rejects "d is symmetric
  around 0" at level `alpha` (default 0.01);
- it is large enough to matter: the median paired change exp(median d) - 1
  exceeds `threshold` (default 5%: half the 10% to be caught, and above the
  few-percent bias two checkouts of the same code can show).
Exit status: 0 no regression, 1 a regression in some cell, 2 usage or setup error.
`--trials N` repeats the whole A/B N times and reports each verdict (the
regression proof, benchmarks/tools/prove_regression.sh, counts them).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.lib.harness import parse_cell
from benchmarks.lib.timing import time_calls
from benchmarks.tools import timed_child_env

# the directory holding this `benchmarks` package: a side's worker imports it from here
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
DEFAULT_CELLS = ("tiny-16x64", "small-8x128", "medium-4x256")
MIN_ROUNDS = 6  # fewest undisturbed rounds a verdict is given on


# --- statistics -------------------------------------------------------------------
def signed_rank_p(diffs: list[float]) -> float:
    """One-sided exact p-value of the Wilcoxon signed-rank test for H0 "the
    differences are symmetric around 0" against "they are shifted above 0":
    P(W+ >= observed W+) when every sign is equally likely. Zeros are dropped;
    tied magnitudes get their average rank (the exact distribution is then
    computed on doubled ranks, which are integers).

    Written here rather than taken from `scipy.stats.wilcoxon`, for two
    measured reasons. Its `method="exact"` uses the distribution without
    ties even when magnitudes tie: on benchmarks/tests/test_abtest.py's nine
    tied rounds and one disturbed one it gives p = 43/1024 = 0.0420 where
    the exact distribution with ties gives 47/1024 = 0.0459 (too small: a
    false alarm made likelier). Its exact answer under ties,
    `method=PermutationMethod(n_resamples=inf)`, enumerates all 2**n sign
    patterns: 2.8 s at 10 rounds, 44 s at 14 and 150 s at 16 on the shared
    2-core machine (scipy 1.17.1), against under a millisecond here (the
    subset-sum count below is O(n * sum of ranks)). Without ties the two
    agree, and the tests check that against scipy (the `bench` extra)."""
    nonzero = [d for d in diffs if d != 0.0]
    n = len(nonzero)
    if n == 0:
        return 1.0
    order = sorted(range(n), key=lambda i: abs(nonzero[i]))
    ranks2 = [0] * n  # doubled average ranks
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(nonzero[order[j + 1]]) == abs(nonzero[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks2[order[k]] = i + j + 2  # 2 * average of ranks i+1..j+1
        i = j + 1
    observed = sum(r for r, d in zip(ranks2, nonzero) if d > 0)
    # counts[s] = number of sign patterns whose positive doubled ranks sum to s
    counts = [1] + [0] * sum(ranks2)
    for r in ranks2:
        for s in range(len(counts) - 1, r - 1, -1):
            counts[s] += counts[s - r]
    return sum(counts[observed:]) / 2 ** n


def verdict(base: list[float], head: list[float], threshold: float, alpha: float, outlier: float = 0.2) -> dict:
    """Paired rounds of one cell -> median change, p-value and whether it is a
    regression (significant at `alpha` and a median change above `threshold`),
    over the rounds where neither side is more than `outlier` from its side's median."""
    if len(base) != len(head) or not base:
        raise ValueError(f"need paired, non-empty rounds; got {len(base)} base and {len(head)} head")
    mb, mh = statistics.median(base), statistics.median(head)
    kept = [(b, h) for b, h in zip(base, head) if abs(b / mb - 1) <= outlier and abs(h / mh - 1) <= outlier]
    d = [math.log(h / b) for b, h in kept]
    out = {"rounds": len(base), "kept": len(d), "set_aside": len(base) - len(d)}
    if len(d) < MIN_ROUNDS:
        return dict(out, change=float("nan"), low=float("nan"), high=float("nan"), p=1.0, regression=False,
                    too_noisy=True)
    p = signed_rank_p(d)
    change = math.expm1(statistics.median(d))
    return dict(out, change=change, low=math.expm1(min(d)), high=math.expm1(max(d)), p=p,
                regression=p < alpha and change > threshold, too_noisy=False)


# --- one side, one process ----------------------------------------------------------
def worker(impl_name: str, cells: list[str], seconds: float, warmup: int) -> list[dict]:
    """Time each cell's training step in this process (the caller set PYTHONPATH,
    threads and the Numba cache); one dict per cell."""
    import importlib

    from benchmarks.lib.harness import TrainStep

    impl = importlib.import_module(impl_name)
    out = []
    for cell in cells:
        preset, B, T = parse_cell(cell)
        step = TrainStep(impl, impl.preset(preset), B, T, warmup=warmup)
        timings = time_calls(step, seconds=seconds, min_calls=5, max_calls=1000)
        out.append({"cell": cell, "steps": timings.calls, "cpu_s": timings.median_cpu,
                    "wall_s": timings.median_wall, "impl_file": getattr(impl, "__file__", None)})
        del step
    return out


def tool_path(cache_root: Path) -> Path:
    """A directory holding only this `benchmarks` package (a symlink), first on a
    worker's PYTHONPATH: the worker times with this harness whatever the tree
    holds, and imports everything else (the implementation) from the tree."""
    path = Path(cache_root) / "abtest-tool"
    link = path / "benchmarks"
    if not link.exists():
        path.mkdir(parents=True, exist_ok=True)
        link.symlink_to(PACKAGE_PARENT / "benchmarks", target_is_directory=True)
    return path


def run_side(tree: Path, args, cache: Path) -> list[dict]:
    """One fresh process timing every cell on the source tree `tree`."""
    tool = tool_path(args.cache_root)
    env = timed_child_env(args.threads or None, PYTHONPATH=os.pathsep.join([str(tool), str(tree)]),
                          NUMBA_CACHE_DIR=str(cache))
    cmd = [sys.executable, "-m", "benchmarks.tools.abtest", "--worker", "--impl", args.impl,
           "--cells", ",".join(args.cells), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, cwd=tool, env=env,  # `-m` puts the cwd first on sys.path
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker on {tree} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for r in results:  # each side must import its own tree's implementation
        if r["impl_file"] and not Path(r["impl_file"]).resolve().is_relative_to(tree.resolve()):
            raise RuntimeError(f"the worker for {tree} imported {args.impl} from {r['impl_file']}")
    return results


def ab(base: Path, head: Path, args, trial: int = 0) -> dict:
    """Interleaved rounds; per cell the rounds' CPU medians and the verdict."""
    caches = {side: Path(args.cache_root) / f"numba-{side}" for side in ("base", "head")}
    times = {side: {cell: [] for cell in args.cells} for side in ("base", "head")}
    walls = {side: {cell: [] for cell in args.cells} for side in ("base", "head")}
    for r in range(args.rounds):
        order = ("base", "head") if (r + trial) % 2 == 0 else ("head", "base")
        for side in order:
            for res in run_side(base if side == "base" else head, args, caches[side]):
                times[side][res["cell"]].append(res["cpu_s"])
                walls[side][res["cell"]].append(res["wall_s"])
        print(f"abtest: trial {trial + 1} round {r + 1}/{args.rounds}: " + "; ".join(
            f"{c} base {1e3 * times['base'][c][-1]:.1f} head {1e3 * times['head'][c][-1]:.1f} ms cpu"
            for c in args.cells), flush=True)
    cells = {}
    for cell in args.cells:
        v = verdict(times["base"][cell], times["head"][cell], args.threshold / 100, args.alpha, args.outlier / 100)
        v["wall_change"] = math.expm1(statistics.median(
            math.log(h / b) for b, h in zip(walls["base"][cell], walls["head"][cell])))
        v["base_cpu_ms"] = [1e3 * t for t in times["base"][cell]]
        v["head_cpu_ms"] = [1e3 * t for t in times["head"][cell]]
        cells[cell] = v
    return {"cells": cells, "regression": any(v["regression"] for v in cells.values())}


def format_trial(result: dict, args) -> str:
    lines = [f"| cell | CPU time change (median of paired rounds) | range | rounds kept | wall change | "
             f"p (slower) | verdict (p < {args.alpha:g} and change > {args.threshold:g}%) |", "|---|---|---|---|---|---|---|"]
    for cell, v in result["cells"].items():
        word = "REGRESSION" if v["regression"] else ("too noisy" if v["too_noisy"] else "ok")
        lines.append(f"| {cell} | {100 * v['change']:+.1f}% | {100 * v['low']:+.1f}% .. {100 * v['high']:+.1f}% | "
                     f"{v['kept']} of {v['rounds']} | {100 * v['wall_change']:+.1f}% | {v['p']:.4f} | {word} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.abtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", type=Path, metavar="DIR", help="BASE_DIR HEAD_DIR: two source trees")
    parser.add_argument("--worker", action="store_true", help="time the cells in this process (one side)")
    parser.add_argument("--impl", default="fast", help="implementation module (default fast)")
    parser.add_argument("--cells", default=",".join(DEFAULT_CELLS),
                        help=f"comma-separated PRESET-BxT cells (default {','.join(DEFAULT_CELLS)})")
    parser.add_argument("--rounds", type=int, default=10, help="paired rounds per trial (default 10)")
    parser.add_argument("--trials", type=int, default=1, help="independent A/B trials (default 1)")
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per cell and process (default 1.5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per cell and process (default 2)")
    parser.add_argument("--threshold", type=float, default=5.0,
                        help="median percent slowdown that, when significant, is a regression (default 5)")
    parser.add_argument("--alpha", type=float, default=0.01, help="test level (default 0.01)")
    parser.add_argument("--outlier", type=float, default=20.0,
                        help="percent from its side's median beyond which a round is set aside (default 20)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for both sides (default 1; 0: the environment's)")
    parser.add_argument("--cache-root", default=None, help="where the two Numba caches live (default: beside the trees)")
    parser.add_argument("--json", type=Path, default=None, help="write every trial's rounds and verdicts here")
    args = parser.parse_args(argv)
    args.cells = [c for c in args.cells.split(",") if c]
    try:
        for cell in args.cells:
            parse_cell(cell)
    except ValueError as exc:
        parser.error(str(exc))
    if args.worker:
        print(json.dumps(worker(args.impl, args.cells, args.seconds, args.warmup)))
        return 0
    if len(args.trees) != 2:
        parser.error("give BASE_DIR and HEAD_DIR (or --worker)")
    if args.rounds < 5:
        parser.error(f"--rounds must be at least 5 (with fewer the test cannot reach alpha 0.05), got {args.rounds}")
    if args.trials < 1 or args.seconds <= 0 or args.warmup < 1 or args.threads < 0 or not 0 < args.alpha < 1:
        parser.error("--trials >= 1, --seconds > 0, --warmup >= 1, --threads >= 0 and 0 < --alpha < 1")
    base, head = (t.resolve() for t in args.trees)
    for tree in (base, head):
        if not (tree / args.impl.split(".")[0]).exists():
            parser.error(f"{tree} has no {args.impl.split('.')[0]}/: not a source tree of this project")
    if args.cache_root is None:
        args.cache_root = str(base.parent / "abtest-numba")
    print(f"abtest: {args.impl}, cells {', '.join(args.cells)}, {args.rounds} rounds x {args.trials} trials, "
          f"threads {args.threads or 'environment'}; regression = median slowdown > {args.threshold:g}% and "
          f"p < {args.alpha:g} (one-sided Wilcoxon signed-rank on paired CPU-time log ratios)", flush=True)
    try:
        results = []
        for trial in range(args.trials):
            result = ab(base, head, args, trial)
            results.append(result)
            print(f"\nabtest: trial {trial + 1}/{args.trials}: "
                  f"{'REGRESSION' if result['regression'] else 'no regression'}\n" + format_trial(result, args) + "\n",
                  flush=True)
    except RuntimeError as exc:
        print(f"abtest: {exc}", file=sys.stderr)
        return 2
    flagged = sum(r["regression"] for r in results)
    print(f"abtest: flagged {flagged} of {args.trials} trials")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "trials": results},
                                        indent=1))
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
