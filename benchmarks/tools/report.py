"""The seed's table for every implementation: `feste bench` (or
`python -m benchmarks.tools.report`).

Runs the training-step benchmarks (`suites/bench_step.py`) with pytest-benchmark,
then prints, per implementation, the seed's layout (model x batch/seq, median
ms per step) with the fraction of the float32 matmul peak measured in the same
run, the speedup over the baseline implementation (reference) and the seed's
M1 figure for orientation. Writes the same tables as Markdown and, when
matplotlib is installed (`pip install -e '.[plot]'`), a PNG bar chart.

    feste bench                                        # every impl that imports
    feste bench --impl fast --out runs/bench
    feste bench --json runs/bench/step.json            # re-render, no run
    feste bench -- -k "tiny"                           # extra pytest arguments
    feste bench --impl fast --peer torch --threads 1   # PyTorch beside each cell
    feste bench --impl fast --peer torch --threads 1 --rounds 5
                                  # side by side in rotating rounds: benchmarks/tools/side_by_side.py

The header records what the numbers were measured on (benchmarks/lib/runtime.py):
BLAS library, version, threading layer and kernel architecture, Numba's
threads and layer, and a warning when a variable such as OPENBLAS_CORETYPE
pins older kernels than the CPU has. With native kernels:
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE feste bench ...`.

The PyTorch peer (`--peer torch`, benchmarks/lib/torch_peer.py) has its
pytest-benchmark benchmark run right after each cell's implementations (one
table, chart and JSON with the rest). Given `--rounds N` or `--adapter CMD`,
this command is the side-by-side tool instead (benchmarks/tools/side_by_side.py,
which takes the arguments): implementations, the PyTorch peer, adapters and
the matmul peak measured per cell in rotating rounds in one process, the way
to compare on a loaded machine.

`--components` runs `suites/bench_components.py` instead and prints where the time of
a medium step goes (each layer's forward and backward, AdamW, gradient norm)
and, per cell of the table, GEMM against the rest (`-- -k where_time_goes`
for only that).
"""
from __future__ import annotations

from benchmarks.tools import split_pytest_args, timed_child_env  # noqa: E402

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.lib import accounting, runtime

SUITES = Path(__file__).resolve().parents[1] / "suites"
DEFAULT_OUT = Path("runs") / "bench"
COLUMN_TITLES = [f"batch={B}, seq={T}" for B, T in accounting.CELLS]


# --- reading pytest-benchmark JSON ------------------------------------------
@dataclass
class StepRun:
    """Training-step results of one benchmark run, keyed by impl then (preset, B, T)."""

    steps: dict[str, dict[tuple[str, int, int], dict]] = field(default_factory=dict)
    # the peers (--peer torch), keyed by peer name then (preset, B, T)
    peers: dict[str, dict[tuple[str, int, int], dict]] = field(default_factory=dict)
    # the same steps with dropout (test_train_step_dropout), keyed by impl then (preset, B, T)
    dropout: dict[str, dict[tuple[str, int, int], dict]] = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)  # benchmarks/lib/runtime.py's record
    peak_gflops: float | None = None
    peak_threads: int | None = None
    machine: str = ""
    commit: str = ""
    date: str = ""

    @property
    def impls(self) -> list[str]:
        return list(self.steps)


def load_step_run(data: dict, source: str = "benchmark JSON") -> StepRun:
    """Collect `test_train_step` results (and the matmul peak) from pytest-benchmark JSON."""
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{source}: not pytest-benchmark JSON (no 'benchmarks' list)")
    run = StepRun()

    def file_under(table: dict, owner: str, bench: dict, info: dict, name: str) -> None:
        # table[info[owner]][(preset, B, T)] = extra_info with the median, owner: "impl" or "peer"
        missing = [k for k in (owner, "preset", "B", "T") if k not in info]
        if missing:
            raise ValueError(f"{source}: benchmark {name} has no extra_info {missing}")
        key = (info["preset"], int(info["B"]), int(info["T"]))
        table.setdefault(info[owner], {})[key] = dict(info, median_s=(bench.get("stats") or {}).get("median"))

    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        name = bench.get("name", "")
        if name.startswith("test_train_step_peer"):
            file_under(run.peers, "peer", bench, info, name)
        elif name.startswith("test_train_step"):
            file_under(run.dropout if name.startswith("test_train_step_dropout") else run.steps, "impl",
                       bench, info, name)
            if run.peak_gflops is None and info.get("matmul_peak_gflops"):
                run.peak_gflops = float(info["matmul_peak_gflops"])
        elif name.startswith("test_matmul_peak"):
            # the session measurement all steps were divided by
            if info.get("session_peak_gflops"):
                run.peak_gflops = float(info["session_peak_gflops"])
            run.peak_threads = info.get("blas_threads")
    machine = data.get("machine_info") or {}
    run.runtime = machine.get("feste_runtime") or {}
    cpu = (machine.get("cpu") or {})
    run.machine = ", ".join(str(x) for x in (
        cpu.get("brand_raw") or machine.get("processor") or machine.get("machine"),
        f"{cpu.get('count', os.cpu_count())} cpus" if cpu or os.cpu_count() else None,
        f"python {machine.get('python_version')}" if machine.get("python_version") else None,
    ) if x)
    commit = data.get("commit_info") or {}
    if commit.get("id"):
        run.commit = str(commit["id"])[:10] + (" (dirty)" if commit.get("dirty") else "")
    run.date = str(data.get("datetime", ""))
    return run


# --- the tables ----------------------------------------------------------------
def _params_label(preset_name: str) -> str:
    import reference

    return f"{reference.n_params(reference.preset(preset_name)) / 1e6:.1f}M"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def _table(header_cells: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header_cells) + " |", "|" + "---|" * len(header_cells)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def speedup(run: StepRun, impl: str, baseline: str, key) -> float | None:
    """baseline median / impl median for one cell, None if either is missing."""
    mine = run.steps.get(impl, {}).get(key, {}).get("median_s")
    base = run.steps.get(baseline, {}).get(key, {}).get("median_s")
    if not mine or not base:
        return None
    return base / mine


def format_report(run: StepRun, baseline: str | None = None) -> str:
    """Markdown: one seed-layout table per implementation, then the seed's M1 table."""
    impls = run.impls
    if baseline is None:
        baseline = "reference" if "reference" in impls else (impls[0] if impls else None)
    out = ["# Training-step benchmarks (SPEC §performance)", ""]
    context = [x for x in (run.machine, f"commit {run.commit}" if run.commit else "", run.date) if x]
    if context:
        out += ["Run: " + "; ".join(context) + ".", ""]
    if run.peak_gflops:
        threads = f", {run.peak_threads} BLAS threads" if run.peak_threads else ""
        out += [f"Float32 matmul peak measured in this run (np.matmul 2048 x 2048, median): "
                f"**{run.peak_gflops:.1f} GFLOP/s**{threads}.", ""]
    runtime_lines = runtime.header_lines(run.runtime)
    if runtime_lines:
        out += [line + "  " for line in runtime_lines[:-1]] + runtime_lines[-1:] + [""]
    out += ["Each cell: median ms per training step (forward, loss, backward, clip, AdamW); "
            "the fraction of the matmul peak the step achieves (training FLOPs / time / peak); "
            f"the speedup over `{baseline}`; the seed's M1 figure for orientation "
            "(Rust on an 8-core M1, another machine).", ""]
    if not impls:
        out += ["No training-step results (every benchmark skipped, or timing was disabled).", ""]
    for impl in impls:
        cells = run.steps[impl]
        threads = sorted({c.get("threads") for c in cells.values() if c.get("threads")})
        out += [f"## {impl}" + (f" (threads {', '.join(map(str, threads))})" if threads else ""), ""]
        rows = []
        for name in accounting.PRESET_NAMES:
            row = [name.capitalize(), _params_label(name)]
            for B, T in accounting.CELLS:
                key = (name, B, T)
                cell = cells.get(key)
                m1 = accounting.SEED_M1_MS[key]
                if not cell or not cell.get("median_s"):
                    row.append(f"n/a (M1 {m1:g})")
                    continue
                parts = [f"{100 * cell['fraction_of_matmul_peak']:.1f}% peak"] \
                    if cell.get("fraction_of_matmul_peak") is not None else []
                s = speedup(run, impl, baseline, key)
                if impl != baseline and s is not None:
                    parts.append(f"{s:.2f}x")
                row.append(f"{_ms(cell['median_s'])} ({', '.join(parts)}; M1 {m1:g})" if parts
                           else f"{_ms(cell['median_s'])} (M1 {m1:g})")
            rows.append(row)
        out += _table(["Model", "Params", *COLUMN_TITLES], rows) + [""]
    out += _peer_tables(run)
    out += _dropout_tables(run)
    out += ["## Seed: Feste (Rust), M1 MacBook Pro, 8 cores", ""]
    rows = [[name.capitalize(), _params_label(name),
             *[f"~{accounting.SEED_M1_MS[(name, B, T)]:g} ms" for B, T in accounting.CELLS]]
            for name in accounting.PRESET_NAMES]
    out += _table(["Model", "Params", *COLUMN_TITLES], rows) + [""]
    return "\n".join(out)


def _peer_tables(run: StepRun) -> list[str]:
    """Per peer: each implementation's cells beside the peer's, with peer ms / impl ms."""
    out = []
    for peer, cells in run.peers.items():
        some = next(iter(cells.values()), {})
        version = f" {some['peer_version']}" if some.get("peer_version") else ""
        backend = some.get("peer_backend") or {}
        how = ", ".join(f"{k} {v}" for k, v in backend.items())
        out += [f"## Peer: {peer}{version} (eager, the way its users write the model)", "",
                "Same cells, batch, init and thread count, measured in this run next to each "
                f"implementation's cell ({peer} threads: {some.get('peer_threads', '?')}"
                + (f"; {how}" if how else "") + "). Ratio: peer ms / implementation ms "
                "(above 1: the implementation is faster).", ""]
        header = ["Cell", f"{peer} ms", f"{peer} % peak"]
        for impl in run.impls:
            header += [f"{impl} ms", f"{impl} % peak", f"{peer} / {impl}"]
        rows = []
        for name in accounting.PRESET_NAMES:
            for B, T in accounting.CELLS:
                key = (name, B, T)
                theirs = cells.get(key) or {}
                if not theirs.get("median_s") and not any(run.steps[i].get(key) for i in run.impls):
                    continue
                row = [accounting.cell_id(name, B, T), _ms(theirs["median_s"]) if theirs.get("median_s") else "n/a",
                       _pct(theirs.get("fraction_of_matmul_peak"))]
                for impl in run.impls:
                    mine = run.steps[impl].get(key) or {}
                    ratio = (theirs["median_s"] / mine["median_s"]
                             if mine.get("median_s") and theirs.get("median_s") else None)
                    row += [_ms(mine["median_s"]) if mine.get("median_s") else "n/a",
                            _pct(mine.get("fraction_of_matmul_peak")),
                            f"{ratio:.2f}x" if ratio is not None else "n/a"]
                rows.append(row)
        out += _table(header, rows) + [""]
    return out


def _dropout_tables(run: StepRun) -> list[str]:
    """Per implementation: each cell's step with dropout beside the one without
    (measured one after the other in this run), and their ratio."""
    out = []
    for impl, cells in run.dropout.items():
        p = next(iter(cells.values()), {}).get("dropout", "?")
        out += [f"## {impl}: dropout {p} (SPEC §dropout)", "",
                "The same step with dropout at the four sites, measured right after the cell's step "
                "without; cost: ratio - 1.", ""]
        rows = []
        for name in accounting.PRESET_NAMES:
            for B, T in accounting.CELLS:
                key = (name, B, T)
                with_, without = cells.get(key) or {}, run.steps.get(impl, {}).get(key) or {}
                if not with_.get("median_s"):
                    continue
                ratio = with_["median_s"] / without["median_s"] if without.get("median_s") else None
                rows.append([accounting.cell_id(name, B, T),
                             _ms(without["median_s"]) if without.get("median_s") else "n/a",
                             _ms(with_["median_s"]), f"{ratio:.3f}" if ratio is not None else "n/a"])
        out += _table(["Cell", "ms, dropout 0", f"ms, dropout {p}", "ratio"], rows) + [""]
    return out


def _pct(fraction) -> str:
    return f"{100 * fraction:.1f}%" if fraction is not None else "n/a"


def write_chart(run: StepRun, path: Path) -> str | None:
    """Grouped bars (log ms) per cell: one bar per implementation plus the seed's M1.
    Returns None when written, else the reason it was not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("matplotlib is not installed, so no PNG chart was written "
                "(install the optional extra: pip install -e '.[plot]')")
    keys = [(name, B, T) for name in accounting.PRESET_NAMES for B, T in accounting.CELLS]
    series = [(impl, [run.steps[impl].get(k, {}).get("median_s") for k in keys]) for impl in run.impls]
    series += [(f"peer: {peer}", [cells.get(k, {}).get("median_s") for k in keys])
               for peer, cells in run.peers.items()]
    series.append(("seed M1 (Rust)", [accounting.SEED_M1_MS[k] / 1e3 for k in keys]))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(keys))]
        heights = [v * 1e3 if v else 0.0 for v in values]
        ax.bar(xs, heights, width, label=label, hatch="//" if label.startswith("seed") else None)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)), [f"{n}\n{B}x{T}" for n, B, T in keys])
    ax.set_ylabel("ms per training step (median, log)")
    peak = f"; matmul peak {run.peak_gflops:.0f} GFLOP/s" if run.peak_gflops else ""
    ax.set_title(f"Training step time per implementation{peak}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# --- running ------------------------------------------------------------------
def pytest_command(target: str, json_path: Path, impls: list[str], min_rounds: int | None,
                   max_time: float | None, extra: list[str], peers: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(SUITES / target), "-q", "-p", "no:randomly",
           "-p", "no:cacheprovider", f"--benchmark-json={json_path}",
           "--benchmark-columns=median,iqr,rounds"]
    for impl in impls:
        cmd += ["--impl", impl]
    for peer in peers:
        cmd += ["--peer", peer]
    if min_rounds is not None:
        cmd.append(f"--benchmark-min-rounds={min_rounds}")
    if max_time is not None:
        cmd.append(f"--benchmark-max-time={max_time}")
    return cmd + extra


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_pytest_args(list(sys.argv[1:] if argv is None else argv))
    if any(a.split("=")[0] in ("--rounds", "--adapter") for a in argv):
        from benchmarks.tools import side_by_side

        return side_by_side.main(argv + (["--", *extra] if extra else []))
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", action="append", default=[], metavar="NAME",
                        help="implementation to benchmark (repeatable; default: every built-in that imports)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"directory for step.json, report.md, report.png (default {DEFAULT_OUT})")
    parser.add_argument("--json", type=Path, default=None,
                        help="render an existing pytest-benchmark JSON instead of running")
    parser.add_argument("--baseline", default=None, help="implementation speedups are relative to (default reference)")
    parser.add_argument("--min-rounds", type=int, default=None, help="pytest-benchmark --benchmark-min-rounds")
    parser.add_argument("--max-time", type=float, default=None, help="pytest-benchmark --benchmark-max-time")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS for the run (default: the environment's; "
                             "1 is far less noisy on a loaded machine, SPEC §regression-tracking)")
    parser.add_argument("--peer", action="append", default=[], choices=["torch"],
                        help="also time this peer on every cell in the same run (PyTorch eager, the way its "
                             "users write the model: benchmarks/lib/torch_peer.py; needs the 'torch' extra)")
    parser.add_argument("--rounds", metavar="N",
                        help="side by side in rotating rounds instead of pytest-benchmark: the arguments go to "
                             "benchmarks/tools/side_by_side.py (also given --adapter; see its --help)")
    parser.add_argument("--components", action="store_true",
                        help="run bench_components.py and report where a medium step's time goes")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be positive, got {args.threads}")
    env = timed_child_env(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.components:
        json_path = args.out / "components.json"
        rc = subprocess.call(pytest_command("bench_components.py", json_path, args.impl,
                                            args.min_rounds, args.max_time, extra), env=env)
        if not json_path.exists():
            print(f"report: the component benchmarks wrote no results (pytest exit code {rc})", file=sys.stderr)
            return rc or 1
        text = format_components(json.loads(json_path.read_text()), str(json_path))
        (args.out / "components.md").write_text(text + "\n")
        print("\n" + text)
        print(f"\nwritten: {args.out / 'components.md'}")
        return rc

    rc = 0
    if args.json is not None:
        json_path = args.json
        if not json_path.is_file():
            parser.error(f"--json {json_path}: no such file")
    else:
        json_path = args.out / "step.json"
        if json_path.exists():
            json_path.unlink()
        cmd = pytest_command("bench_step.py", json_path, args.impl, args.min_rounds, args.max_time, extra,
                             tuple(args.peer))
        print("running:", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, env=env)
        if not json_path.exists():
            print(f"report: the step benchmarks wrote no results (pytest exit code {rc})", file=sys.stderr)
            return rc or 1
    try:
        run = load_step_run(json.loads(json_path.read_text()), str(json_path))
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"report: cannot read {json_path}: {exc}", file=sys.stderr)
        return 1
    text = format_report(run, args.baseline)
    md_path = args.out / "report.md"
    md_path.write_text(text + "\n")
    print("\n" + text)
    print(f"written: {md_path}")
    why_not = write_chart(run, args.out / "report.png")
    print(why_not if why_not else f"written: {args.out / 'report.png'}")
    return rc


# --- where the time goes (bench_components.py) --------------------------------
def format_components(data: dict, source: str = "benchmark JSON") -> str:
    """Markdown: component medians per implementation, each as a share of its
    medium training step when the step phases were measured."""
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{source}: not pytest-benchmark JSON (no 'benchmarks' list)")
    rows: dict[str, dict[str, float]] = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        median = (bench.get("stats") or {}).get("median")
        if "impl" not in info or "component" not in info or median is None:
            continue
        rows.setdefault(info["component"], {})[info["impl"]] = median
    impls = sorted({impl for r in rows.values() for impl in r}, key=lambda n: (n != "reference", n))
    out = ["# Where the time goes: components at medium size (SPEC §performance)", "",
           "Median per call. Layers at medium (C=512, NH=8) with B=8, T=128; "
           "the training-step phases are one medium 8x128 step split into its parts.", ""]
    if not rows:
        return "\n".join(out + ["No component results (skipped, or timing was disabled).", ""])
    # the step phases also as a share of their sum: where a training step's time goes
    phase_total = {impl: sum(r[impl] for c, r in rows.items() if c.startswith("step: ") and impl in r)
                   for impl in impls}

    def cell(component, impl):
        if impl not in rows[component]:
            return "n/a"
        value = rows[component][impl]
        if component.startswith("step: ") and phase_total[impl]:
            return f"{_ms(value)} ({100 * value / phase_total[impl]:.0f}% of step)"
        return _ms(value)

    table_rows = [[component, *[cell(component, i) for i in impls]] for component in rows
                  if not component.startswith("cell ")]
    return "\n".join(out + _table(["Component", *impls], table_rows) + [""] + _cell_profiles(data))


def _cell_profiles(data: dict) -> list[str]:
    """Per cell: the step's phases and GEMM against the rest (bench_components'
    test_step_where_time_goes, benchmarks/lib/phases.py)."""
    rows = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        p = info.get("profile")
        if not p or "cell" not in info:
            continue
        ms = lambda s: f"{1e3 * s:.1f}"  # noqa: E731
        peak = info.get("matmul_peak_gflops")

        def gemm(kind):
            if not p.get(kind):
                return "n/a"
            rate = p[kind + " flops"] / p[kind] / 1e9
            return (f"{ms(p[kind])} ({100 * p[kind] / p['step']:.0f}%; {rate:.0f} GFLOP/s"
                    + (f", {100 * rate / peak:.0f}% of peak)" if peak else ")"))
        rest = f"{ms(p['rest'])} ({100 * p['rest'] / p['step']:.0f}%)" if p.get("has_gemm") else "n/a"
        rows.append([info["impl"], info["cell"], ms(p["step"]), gemm("linear gemm"), gemm("attention gemm"), rest,
                     ms(p["forward"]), ms(p["backward"]), ms(p["clip"]), ms(p["adamw"])])
    if not rows:
        return []
    return ["## Where each cell's step goes: GEMM against the rest", "",
            "Median of 3 steps, ms (share of the step). GEMM: time inside the implementation's matmul "
            "function (fast: fast._blas.matmuls_into), with its rate against the session's matmul peak; "
            "the rest: every other kernel and the Python between them.", ""] + _table(
        ["impl", "cell", "step", "linear GEMM", "attention GEMM", "the rest", "forward", "backward", "clip", "AdamW"],
        rows) + [""]


if __name__ == "__main__":
    sys.exit(main())
