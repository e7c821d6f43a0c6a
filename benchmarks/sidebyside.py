"""Side by side in one process (SPEC section 9.4): per cell, the implementation's
training step, the PyTorch peer's and the float32 matmul peak, measured in
alternating order round after round, so the three share the machine's load.

    python benchmarks/sidebyside.py --threads 1 --rounds 5
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/sidebyside.py --threads 2 --out runs/sbs2.md

Each round measures, per cell, in an order that rotates between rounds:
the median wall time of `--steps` implementation steps, the median of
`--steps` peer steps, and the median GFLOP/s of `--peak-repeats` 2048 x 2048
float32 matmuls. Reported per cell: medians over the rounds and, for the
two ratios (fraction of the peak, peer / implementation), the median and
range of the per-round ratios (each from one round's three measurements,
seconds apart). The header records what ran (benchmarks/runtime.py).
Without torch the peer columns say why.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(args) -> tuple[list[dict], dict]:
    import importlib

    import numpy as np

    import accounting
    import runtime
    import torch_peer
    from harness import TrainStep

    impl = importlib.import_module(args.impl)
    a, b = accounting.matmul_operands(accounting.PEAK_N)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    peak_flops = accounting.matmul_flops(accounting.PEAK_N)
    peer_missing = torch_peer.available()
    rows = []
    for cell in args.cells:
        preset, shape = cell.split("-")
        B, T = (int(x) for x in shape.split("x"))
        config = impl.preset(preset)
        flops = accounting.training_flops(config, B, T)
        mine = TrainStep(impl, config, B, T, warmup=2)
        theirs = None if peer_missing else torch_peer.TorchTrainStep(config, B, T, args.threads, warmup=2)
        jobs = {"impl": lambda: _median_time(mine, args.steps),
                "peak": lambda: peak_flops / _median_time(lambda: np.matmul(a, b, out=out), args.peak_repeats) / 1e9}
        if theirs is not None:
            jobs["peer"] = lambda: _median_time(theirs, args.steps)
        rounds = []
        names = list(jobs)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            if r % 2:
                order.reverse()
            rounds.append({name: jobs[name]() for name in order})
        row = {"cell": cell, "flops": flops, "rounds": rounds}
        rows.append(row)
        print(format_row(row), flush=True)
        del mine, theirs
    info = runtime.runtime_info()
    info["peer"] = peer_missing or "torch " + __import__("torch").__version__
    return rows, info


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def format_row(row: dict) -> str:
    rounds = row["rounds"]
    peak = _stats([r["peak"] for r in rounds])
    ms = _stats([1e3 * r["impl"] for r in rounds])
    frac = _stats([row["flops"] / r["impl"] / (r["peak"] * 1e9) for r in rounds])
    cells = [row["cell"], f"{peak[0]:.0f} ({peak[1]:.0f}-{peak[2]:.0f})", f"{ms[0]:.1f} ({ms[1]:.1f}-{ms[2]:.1f})",
             f"{100 * frac[0]:.0f}% ({100 * frac[1]:.0f}-{100 * frac[2]:.0f})"]
    if "peer" in rounds[0]:
        pms = _stats([1e3 * r["peer"] for r in rounds])
        ratio = _stats([r["peer"] / r["impl"] for r in rounds])
        cells += [f"{pms[0]:.1f} ({pms[1]:.1f}-{pms[2]:.1f})", f"{ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f})"]
    else:
        cells += ["n/a", "n/a"]
    return "| " + " | ".join(cells) + " |"


def format_table(rows: list[dict], info: dict, args, command: str) -> str:
    import runtime

    out = [f"# Side by side: {args.impl}, the float32 matmul peak and the PyTorch peer, {args.threads} thread(s)", "",
           f"Command: `{command}`  ", f"{args.rounds} rounds per cell, alternating order; each figure: median "
           f"(min-max) over the rounds; ms: median of {args.steps} steps per round; peak: median of "
           f"{args.peak_repeats} matmuls per round. Peer: {info['peer']}.", ""]
    out += [line + "  " for line in runtime.header_lines(info)] + [""]
    out += [f"| cell | peak GFLOP/s | {args.impl} ms | {args.impl} share of peak | torch ms | torch / {args.impl} |",
            "|---|---|---|---|---|---|"]
    out += [format_row(row) for row in rows]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    import accounting

    default_cells = ",".join(accounting.cell_id(p, B, T) for p in accounting.PRESET_NAMES for B, T in accounting.CELLS)
    parser = argparse.ArgumentParser(prog="benchmarks/sidebyside.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", default="fast")
    parser.add_argument("--threads", type=int, required=True, help="threads for the implementation, BLAS and torch")
    parser.add_argument("--cells", default=default_cells, help="comma-separated PRESET-BxT (default: the nine)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per measurement (default 5)")
    parser.add_argument("--peak-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.steps < 1 or args.peak_repeats < 1:
        parser.error("--threads, --rounds, --steps and --peak-repeats must be positive")
    if os.environ.get("FESTE_SBS_CHILD") != "1":
        # thread variables must be set before numpy, Numba and torch load: re-run in a child
        env = dict(os.environ, FESTE_SBS_CHILD="1", **{v: str(args.threads) for v in THREAD_VARS})
        import subprocess

        return subprocess.call([sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)], env=env)
    args.cells = [c for c in args.cells.split(",") if c]
    command = "python benchmarks/sidebyside.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"| cell | peak GFLOP/s | {args.impl} ms | share of peak | torch ms | torch / {args.impl} |", flush=True)
    rows, info = measure(args)
    text = format_table(rows, info, args, command)
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
