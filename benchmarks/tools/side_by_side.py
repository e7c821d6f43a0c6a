"""Peers side by side in rotating rounds: `feste bench --rounds N` (or `--adapter CMD`),
`python -m benchmarks.tools.side_by_side`.

Per cell, every peer times the same training step (SPEC §step-benchmark) in one
run, beside the float32 matmul peak (SPEC §flops), in an order that rotates from
round to round (and reverses in odd rounds), so that all share the machine's load.
A peer is one of:

  --impl NAME     a Python implementation of the contract, timed in this process
                  (benchmarks/lib/harness.py's step; repeatable)
  --peer torch    PyTorch, written the way its users write the model
                  (benchmarks/lib/torch_peer.py; the 'torch' extra; needs --threads)
  --adapter CMD   a program in any language speaking the adapter protocol, timed
                  through its `time` request (SPEC §adapter-protocol; repeatable)

    feste bench --impl fast --peer torch --threads 1 --rounds 5
    feste bench --adapter adapters/feste/target/release/feste-adapter --impl fast --cells tiny-16x64
    python -m benchmarks.tools.side_by_side --impl fast --adapter "python -m conformance.vectors.adapter --impl fast"

Each round measures, per cell, every peer's median wall time over `--steps` steps
(after `--warmup` untimed steps before a peer's first measurement of the cell, one
before each later one) and the peak's median GFLOP/s over `--peak-repeats` matmuls
(2048 x 2048 float32, after one untimed call; `--peak-repeats 0`: no peak). Reported
per cell: the peak, and per peer its ms, its share of the peak (training FLOPs /
time / peak) and its ratio to the first peer listed (peer / first: above 1, the
first is faster), each as the median (min-max) of its per-round values. A share
or a ratio is formed within one round, from measurements seconds apart: that is
what survives a load that moves absolute times by 2-10x. Python implementations
come first, then torch, then the adapters. A peer that cannot run a cell (an
`error` or `skipped` reply, a preset it lacks, torch not installed) shows why
instead of a number, and the others go on.

With `--threads N` the measurement runs in a child process whose thread variables
(OMP, OpenBLAS, MKL, Numba) are N before numpy, Numba and torch load; torch gets N
too, and adapters inherit the variables. The table is printed as it grows and
written to OUT/side_by_side.md.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.lib import accounting
from benchmarks.lib.harness import parse_cell
from benchmarks.lib.timing import time_calls
from benchmarks.tools import timed_child_env

DEFAULT_OUT = Path("runs") / "bench"
CHILD_ENV = "FESTE_SIDE_BY_SIDE_CHILD"  # set in the child process that measures (--threads)
PEAK = "matmul peak"  # the peak's key in a round's measurements (refused as a peer's name)


# --- the peers: measure(preset, B, T, steps, warmup) -> median seconds per step -------------
class PythonPeer:
    """A module of the contract, timed in this process (harness.TrainStep), one cell's state at a time."""

    def __init__(self, name: str):
        self.name = name
        self.impl = importlib.import_module(name)
        self.cell: tuple | None = None
        self.step = None
        version = getattr(self.impl, "__version__", None)
        where = getattr(self.impl, "__file__", None) or "namespace package"
        self.description = f"{name} ({where}" + (f", version {version})" if version else ")")

    def _make_step(self, preset: str, B: int, T: int):
        from benchmarks.lib.harness import TrainStep

        return TrainStep(self.impl, self.impl.preset(preset), B, T, warmup=0)

    def measure(self, preset: str, B: int, T: int, steps: int, warmup: int) -> float:
        if self.cell != (preset, B, T):
            self.step = None  # the previous cell's state goes before this one's is built
            self.step = self._make_step(preset, B, T)
            self.cell = (preset, B, T)
        for _ in range(warmup):
            self.step()
        return time_calls(self.step, steps).median_wall

    def end_cell(self) -> None:
        self.cell, self.step = None, None

    def close(self) -> None:
        self.end_cell()


class TorchPeer(PythonPeer):
    """The PyTorch peer (benchmarks/lib/torch_peer.py) at `threads` threads."""

    def __init__(self, threads: int):
        from benchmarks.lib import torch_peer

        self.name, self.threads = "torch", threads
        self.cell, self.step = None, None
        self.missing = torch_peer.available()  # None, or why torch cannot run
        self.description = (f"torch: {self.missing}" if self.missing else
                            f"torch {importlib.import_module('torch').__version__} (eager, {threads} threads)")

    def _make_step(self, preset: str, B: int, T: int):
        import reference
        from benchmarks.lib import torch_peer

        if self.missing:
            raise RuntimeError(self.missing)
        return torch_peer.TorchTrainStep(reference.preset(preset), B, T, self.threads, warmup=0)


class AdapterPeer:
    """An adapter process, timed through the protocol's `time` request."""

    def __init__(self, command: str, timeout: float):
        from conformance.vectors.protocol import Adapter

        self.adapter = Adapter(command)
        hello = self.adapter.start()
        impl = hello["implementation"]
        self.name = f"{impl['name']} {impl.get('version', '')}".strip()
        self.description = f"{self.name} (adapter: {command})"
        self.timeout = timeout

    def measure(self, preset: str, B: int, T: int, steps: int, warmup: int) -> float:
        reply = self.adapter.request({"type": "time", "cell": {"preset": preset, "batch": B, "seq_len": T},
                                      "steps": steps, "warmup": warmup}, self.timeout)
        if reply.get("type") != "timing":
            detail = " ".join(str(reply[k]) for k in ("code", "reason", "message") if reply.get(k))
            raise RuntimeError(f"{reply.get('type')}: {detail or reply}")
        return statistics.median(reply["seconds"])

    def end_cell(self) -> None:
        pass

    def close(self) -> None:
        self.adapter.stop(graceful=True)


class MatmulPeak:
    """The float32 matmul peak (SPEC §flops) as one more job of a round: measure() -> GFLOP/s."""

    name = PEAK

    def __init__(self, repeats: int, n: int = accounting.PEAK_N):
        import numpy as np

        self.repeats = repeats
        self.a, self.b = accounting.matmul_operands(n)
        self.out = np.empty_like(self.a)
        self.flops = accounting.matmul_flops(n)
        self._matmul = lambda: np.matmul(self.a, self.b, out=self.out)

    def measure(self, preset: str, B: int, T: int, steps: int, warmup: int) -> float:
        self._matmul()  # one untimed call, as the session peak has
        return self.flops / time_calls(self._matmul, self.repeats).median_wall / 1e9

    def end_cell(self) -> None:
        pass

    def close(self) -> None:
        pass


# --- the one timing loop ----------------------------------------------------------------------
def rotation(jobs: list, r: int) -> list:
    """The order of round r: rotated by r, reversed in odd rounds."""
    order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
    return order[::-1] if r % 2 else order


def measure(peers: list, cells: list[str], rounds: int, steps: int, warmup: int, peak=None,
            printer=print) -> list[dict]:
    """Per cell, `rounds` rounds over the peers (and the peak, when given) in rotating
    order. A row: the cell, its training FLOPs, per round {name: seconds per step (the
    peak: GFLOP/s)}, and {name: why} for a peer that could not run the cell."""
    import reference

    jobs = list(peers) + ([peak] if peak is not None else [])
    rows = []
    for cell in cells:
        preset, B, T = parse_cell(cell)
        measured: list[dict[str, float]] = [{} for _ in range(rounds)]
        failed: dict[str, str] = {}
        for r in range(rounds):
            for job in rotation(jobs, r):
                if job.name in failed:
                    continue
                first = not any(job.name in m for m in measured[:r])
                try:
                    measured[r][job.name] = job.measure(preset, B, T, steps, warmup if first else 1)
                except Exception as exc:  # a cell one peer cannot run: say why, keep the others
                    failed[job.name] = f"{type(exc).__name__}: {exc}"
        for job in jobs:
            job.end_cell()
        row = {"cell": cell, "flops": accounting.training_flops(reference.preset(preset), B, T),
               "rounds": measured, "failed": failed}
        rows.append(row)
        printer(format_row(row, [p.name for p in peers], peak is not None))
    return rows


# --- the table --------------------------------------------------------------------------------
def _spread(values: list[float], fmt: str, scale: float = 1.0, suffix: str = "") -> str:
    """'median (min-max)' of `values` x `scale`."""
    if not values:
        return "n/a"
    m, lo, hi = (scale * v for v in (statistics.median(values), min(values), max(values)))
    return f"{m:{fmt}}{suffix} ({lo:{fmt}}-{hi:{fmt}})"


def header(names: list[str], with_peak: bool) -> str:
    cols = ["cell"] + (["peak GFLOP/s"] if with_peak else [])
    for n in names:
        cols += [f"{n} ms"] + ([f"{n} share of peak"] if with_peak else []) + [f"{n} / {names[0]}"]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def format_row(row: dict, names: list[str], with_peak: bool) -> str:
    """One Markdown row: the peak, and per peer ms, share of the peak and ratio to the
    first peer, each as median (min-max) over the rounds; shares and ratios per round."""
    rounds, failed, first = row["rounds"], row["failed"], names[0]
    cells = [row["cell"]]
    if with_peak:
        cells.append(f"n/a ({failed[PEAK]})" if PEAK in failed else _spread([r[PEAK] for r in rounds if PEAK in r],
                                                                           ".0f"))
    for name in names:
        if name in failed:
            cells += [f"n/a ({failed[name]})"] + [""] * (2 if with_peak else 1)
            continue
        cells.append(_spread([r[name] for r in rounds if name in r], ".1f", 1e3))
        if with_peak:
            cells.append(_spread([row["flops"] / r[name] / (r[PEAK] * 1e9) for r in rounds
                                  if name in r and PEAK in r], ".0f", 100, "%"))
        if name == first:
            cells.append("1.00x")
        elif first in failed:
            cells.append("")
        else:
            cells.append(_spread([r[name] / r[first] for r in rounds if name in r and first in r], ".2f",
                                 suffix="x"))
    return "| " + " | ".join(cells) + " |"


def format_report(rows: list[dict], peers: list, args, command: str, runtime_lines: list[str]) -> str:
    names = [p.name for p in peers]
    threads = f"{args.threads} thread(s)" if args.threads else "the environment's threads"
    peak = (f"peak: median of {args.peak_repeats} matmuls (2048 x 2048 float32) per round"
            if args.peak_repeats else "no peak (--peak-repeats 0)")
    out = [f"# Side by side: {', '.join(names)}; {threads}", "", f"Command: `{command}`  ",
           f"{args.rounds} rounds per cell in rotating order; each figure: median (min-max) over the rounds; "
           f"ms: median of {args.steps} steps per round; {peak}; shares of the peak and ratios "
           f"(peer / {names[0]}) formed per round.", "", "Peers: " + "; ".join(p.description for p in peers) + ".",
           ""]
    out += [line + "  " for line in runtime_lines] + ([""] if runtime_lines else [])
    out += [header(names, bool(args.peak_repeats))] + [format_row(r, names, bool(args.peak_repeats)) for r in rows]
    return "\n".join(out) + "\n"


# --- the command ------------------------------------------------------------------------------
def default_cells() -> str:
    return ",".join(accounting.cell_id(p, B, T) for p in accounting.PRESET_NAMES for B, T in accounting.CELLS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.side_by_side",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", action="append", default=[], metavar="NAME",
                        help="a Python implementation timed in this process (repeatable; the first peer listed "
                             "is the one ratios are taken against: Python implementations come first)")
    parser.add_argument("--peer", action="append", default=[], choices=["torch"],
                        help="PyTorch, the way its users write the model (needs --threads and the 'torch' extra)")
    parser.add_argument("--adapter", action="append", default=[], metavar="CMD",
                        help="an adapter command line (repeatable): a peer timed through the protocol")
    parser.add_argument("--cells", default=default_cells(), help="comma-separated PRESET-BxT (default: the nine)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per cell, rotating order (default 5)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps before a peer's first measurement of a cell (default 2)")
    parser.add_argument("--peak-repeats", type=int, default=5,
                        help="matmuls per peak measurement (default 5; 0: no peak, no shares)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS and torch's threads for the run (default: the "
                             "environment's; 1 is far less noisy on a loaded machine)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds an adapter may take per request")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"directory for side_by_side.md (default {DEFAULT_OUT})")
    return parser


def main(argv: list[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(given)
    if not (args.impl or args.peer or args.adapter):
        parser.error("name at least one peer: --impl NAME, --peer torch or --adapter CMD")
    if min(args.rounds, args.steps, args.warmup) < 1 or args.peak_repeats < 0:
        parser.error("--rounds, --steps and --warmup must be positive, --peak-repeats 0 or more")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be positive, got {args.threads}")
    if args.peer and args.threads is None:
        parser.error("--peer torch needs --threads N (the implementations, BLAS and torch all get N)")
    cells = [c for c in args.cells.split(",") if c]
    try:
        import reference

        for cell in cells:
            reference.preset(parse_cell(cell)[0])
    except (ValueError, KeyError) as exc:
        parser.error(f"--cells: {exc}")
    if not cells:
        parser.error("--cells: no cell given")
    if args.threads is not None and os.environ.get(CHILD_ENV) != "1":
        env = timed_child_env(args.threads, **{CHILD_ENV: "1"})
        return subprocess.call([sys.executable, "-m", "benchmarks.tools.side_by_side", *given], env=env)

    peers: list = []
    try:
        for name in args.impl:
            try:
                peers.append(PythonPeer(name))
            except ImportError as exc:
                parser.error(f"--impl {name}: cannot import it ({exc})")
        peers += [TorchPeer(args.threads) for _ in args.peer]
        peers += [AdapterPeer(cmd, args.timeout) for cmd in args.adapter]
        names = [p.name for p in peers]
        if len(set(names)) != len(names) or PEAK in names:
            parser.error(f"two peers share a name: {names}")
        peak = MatmulPeak(args.peak_repeats) if args.peak_repeats else None
        print(header(names, peak is not None), flush=True)
        rows = measure(peers, cells, args.rounds, args.steps, args.warmup, peak,
                       printer=lambda line: print(line, flush=True))
    finally:
        for peer in peers:
            peer.close()
    try:
        from benchmarks.lib import runtime

        runtime_lines = runtime.header_lines(runtime.runtime_info())
    except ImportError as exc:  # threadpoolctl (the 'test' extra) is what names the BLAS
        runtime_lines = [f"BLAS and thread record unavailable: {exc}."]
    text = format_report(rows, peers, args, "python -m benchmarks.tools.side_by_side " + shlex.join(given),
                         runtime_lines)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "side_by_side.md"
    path.write_text(text)
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
