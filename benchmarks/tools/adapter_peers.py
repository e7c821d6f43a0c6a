"""Implementations in any language side by side (SPEC §adapter-protocol's timing request, §step-benchmark):
per cell, Python implementations (in this process) and adapters (programs speaking the
adapter protocol, e.g. a Rust one) time the same training step in one run, in an order
that rotates between rounds, so they share the machine's load.

    feste bench --adapter "adapters/feste/target/release/feste-adapter" --impl fast --cells tiny-16x64
    python -m benchmarks.tools.adapter_peers --adapter "python -m conformance.vectors.adapter --impl fast" --rounds 3

Each round asks every peer for the median of `--steps` steps (an adapter: one `time`
request, its `warmup` untimed steps first). Reported per cell: each peer's median
(min-max) over the rounds in ms, and each peer's per-round ratio to the first peer
(median and range). A peer that cannot run a cell (an `error` or `skipped` reply, a
preset it lacks) shows why instead of a number.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
from pathlib import Path

from benchmarks.lib import accounting
from benchmarks.lib.harness import parse_cell
from benchmarks.lib.timing import time_calls


class PythonPeer:
    """A module of the contract timed in this process (benchmarks/lib/harness.py's step)."""

    def __init__(self, name: str):
        self.name = name
        self.impl = importlib.import_module(name)
        self.steps: dict[str, object] = {}

    def measure(self, preset: str, B: int, T: int, steps: int, warmup: int) -> float:
        from benchmarks.lib.harness import TrainStep

        key = f"{preset}-{B}x{T}"
        if key not in self.steps:
            self.steps[key] = TrainStep(self.impl, self.impl.preset(preset), B, T, warmup=warmup)
        return time_calls(self.steps[key], steps).median_wall

    def close(self) -> None:
        self.steps.clear()


class AdapterPeer:
    """An adapter process, timed through the protocol's `time` request."""

    def __init__(self, command: str, timeout: float):
        from conformance.vectors.protocol import Adapter

        self.adapter = Adapter(command)
        hello = self.adapter.start()
        impl = hello["implementation"]
        self.name = f"{impl['name']} {impl.get('version', '')}".strip()
        self.timeout = timeout

    def measure(self, preset: str, B: int, T: int, steps: int, warmup: int) -> float:
        reply = self.adapter.request({"type": "time", "cell": {"preset": preset, "batch": B, "seq_len": T},
                                      "steps": steps, "warmup": warmup}, self.timeout)
        if reply.get("type") != "timing":
            detail = " ".join(str(reply[k]) for k in ("code", "reason", "message") if reply.get(k))
            raise RuntimeError(f"{reply.get('type')}: {detail or reply}")
        return statistics.median(reply["seconds"])

    def close(self) -> None:
        self.adapter.stop(graceful=True)


def _stats(values):
    return statistics.median(values), min(values), max(values)


def measure(peers, cells, rounds: int, steps: int, warmup: int, printer=print) -> list[dict]:
    rows = []
    for cell in cells:
        preset, B, T = parse_cell(cell)
        results: dict[str, list[float]] = {p.name: [] for p in peers}
        failed: dict[str, str] = {}
        for r in range(rounds):
            order = peers[r % len(peers):] + peers[:r % len(peers)]
            if r % 2:
                order = order[::-1]
            for peer in order:
                if peer.name in failed:
                    continue
                try:
                    results[peer.name].append(peer.measure(preset, B, T, steps, warmup if r == 0 else 1))
                except Exception as exc:  # a cell one peer cannot run: say why, keep the others
                    failed[peer.name] = f"{type(exc).__name__}: {exc}"
        row = {"cell": cell, "results": results, "failed": failed}
        rows.append(row)
        printer(format_row(row, [p.name for p in peers]))
    return rows


def format_row(row: dict, names: list[str]) -> str:
    cells = [row["cell"]]
    first = row["results"][names[0]]
    for name in names:
        if name in row["failed"]:
            cells += [f"n/a ({row['failed'][name]})", ""]
            continue
        values = row["results"][name]
        ms = _stats([1e3 * v for v in values])
        cells.append(f"{ms[0]:.1f} ({ms[1]:.1f}-{ms[2]:.1f})")
        if name == names[0] or names[0] in row["failed"]:
            cells.append("1.00x" if name == names[0] else "")
        else:
            ratio = _stats([v / f for v, f in zip(values, first)])
            cells.append(f"{ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f})")
    return "| " + " | ".join(cells) + " |"


def header(names: list[str]) -> str:
    cols = ["cell"] + [c for n in names for c in (f"{n} ms", f"{n} / {names[0]}")]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def main(argv: list[str] | None = None) -> int:
    default_cells = ",".join(accounting.cell_id(p, B, T) for p in accounting.PRESET_NAMES for B, T in accounting.CELLS)
    parser = argparse.ArgumentParser(prog="feste bench --adapter", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", action="append", default=[], metavar="CMD",
                        help="an adapter command line (repeatable): a peer timed through the protocol")
    parser.add_argument("--impl", action="append", default=[], metavar="NAME",
                        help="a Python implementation timed in this process (repeatable; the first peer listed "
                             "is the one ratios are taken against: Python implementations come first)")
    parser.add_argument("--cells", default=default_cells, help="comma-separated PRESET-BxT (default: the nine)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per cell, alternating order (default 5)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before a peer's first measurement")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds an adapter may take per request")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    if not args.adapter and not args.impl:
        parser.error("name at least one --adapter or --impl")
    if args.rounds < 1 or args.steps < 1 or args.warmup < 1:
        parser.error("--rounds, --steps and --warmup must be positive")
    peers = [PythonPeer(name) for name in args.impl] + [AdapterPeer(cmd, args.timeout) for cmd in args.adapter]
    names = [p.name for p in peers]
    if len(set(names)) != len(names):
        parser.error(f"two peers share a name: {names}")
    cells = [c for c in args.cells.split(",") if c]
    command = "feste bench " + " ".join(sys.argv[1:] if argv is None else argv)
    print(header(names), flush=True)
    try:
        rows = measure(peers, cells, args.rounds, args.steps, args.warmup, printer=lambda s: print(s, flush=True))
    finally:
        for peer in peers:
            peer.close()
    text = "\n".join([f"# Peers side by side: {', '.join(names)}", "", f"Command: `{command}`  ",
                      f"{args.rounds} rounds per cell in alternating order; each figure: median (min-max) over the "
                      f"rounds of the median of {args.steps} steps; ratios per round against {names[0]}.", "",
                      header(names)] + [format_row(r, names) for r in rows]) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
