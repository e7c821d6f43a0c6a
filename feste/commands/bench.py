"""`feste bench ARGS`: the benchmarks' report, `python -m benchmarks.tools.report ARGS`
(the seed's table; SPEC §performance), or, given `--rounds N` or `--adapter CMD`, peers
side by side in rotating rounds, `python -m benchmarks.tools.side_by_side ARGS`."""
from __future__ import annotations

import importlib

from ..common import NON_NEGATIVE, POSITIVE, add_overwrite_option, check_output, float_range


# what running the benchmarks imports, from the 'test' extra: {module: its distribution}
TEST_EXTRA = {"pytest": "pytest", "pytest_benchmark": "pytest-benchmark", "threadpoolctl": "threadpoolctl"}


def missing_test_extra() -> list[str]:
    """The distributions of TEST_EXTRA that do not import in this interpreter (the one
    the report and its pytest run in)."""
    missing = []
    for module, dist in TEST_EXTRA.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    return missing


def run(args) -> int:
    """`feste bench ARGS`: benchmarks.tools.report's main with ARGS (the seed's table; SPEC §performance),
    or benchmarks.tools.side_by_side's given --rounds or --adapter."""
    side_by_side = bool(args.adapter) or args.rounds is not None
    misplaced = [f"--{flag.replace('_', '-')}" for flag in (REPORT_ONLY if side_by_side else SIDE_BY_SIDE_ONLY)
                 if getattr(args, flag) not in (None, False)]
    if side_by_side and [a for a in args.pytest_args if a != "--"]:
        misplaced.append("-- PYTEST_ARGS")
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)}: " + (
            "not for side-by-side rounds (--rounds N, --adapter CMD), which run no pytest-benchmark" if side_by_side
            else "only for side-by-side rounds: add --rounds N (or --adapter CMD)"))
    if args.out is not None:  # the default runs/bench is the command's own, rewritten each run
        check_output(args.out, args.overwrite, "--out", directory=True)
    # rendering a JSON runs no benchmark; side by side runs no pytest
    missing = missing_test_extra() if args.json is None and not side_by_side else []
    if missing:
        raise ValueError(f"benchmarking needs the test extra ({', '.join(missing)} not installed): "
                         "pip install 'feste-spec[test]'")
    extra = [f"--impl={name}" for name in args.impl or []] + [f"--peer={name}" for name in args.peer or []]
    if side_by_side:
        # peers side by side in rotating rounds (SPEC §step-benchmark; adapters: SPEC §adapter-protocol)
        extra += [f"--adapter={cmd}" for cmd in args.adapter or []]
        extra += [f"--{flag.replace('_', '-')}={getattr(args, flag)}"
                  for flag in ("out", "threads", *SIDE_BY_SIDE_ONLY) if getattr(args, flag) is not None]
        from benchmarks.tools import side_by_side as tool

        return _main_exit_code(tool.main, extra)
    from benchmarks.tools import report  # installed with the project (pyproject's packages)

    extra += [f"--{flag.replace('_', '-')}={getattr(args, flag)}" for flag in
              ("out", "json", "baseline", "min_rounds", "max_time", "threads") if getattr(args, flag) is not None]
    extra += ["--components"] if args.components else []
    pytest_args = [a for a in args.pytest_args if a != "--"]
    extra += ["--", *pytest_args] if pytest_args else []
    return _main_exit_code(report.main, extra)


def _main_exit_code(main, argv: list[str]) -> int:
    """A benchmark tool's `main(argv)`; its own usage errors (argparse's SystemExit) as their exit code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


# the options of each tool that the other does not take (--impl, --peer, --out, --threads: both)
SIDE_BY_SIDE_ONLY = ("cells", "rounds", "steps", "peak_repeats")
REPORT_ONLY = ("json", "baseline", "min_rounds", "max_time", "components")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the training step of every implementation (the seed's table), "
                                        "or peers side by side in rotating rounds",
                       description="Run the benchmarks' report (python -m benchmarks.tools.report): training-step benchmarks over the nine cells, "
                                   "printed in the seed's layout with % of matmul peak and speedups; "
                                   "writes runs/bench/report.md (and report.png with the 'plot' extra). "
                                   "Given --rounds N or --adapter CMD, peers side by side in rotating rounds instead "
                                   "(python -m benchmarks.tools.side_by_side): the --impl implementations, the PyTorch "
                                   "peer and adapters (programs in any language) timed per cell with the matmul peak in "
                                   "one process, in an order that rotates every round; writes runs/bench/side_by_side.md. "
                                   "The report needs the 'test' extra (pytest, pytest-benchmark, threadpoolctl): "
                                   "pip install -e '.[test]'. Guide: docs/BENCHMARKS.md.")
    p.add_argument("--impl", action="append", metavar="NAME", help="implementation (repeatable; default: all)")
    p.add_argument("--out", metavar="DIR",
                   help="output directory, new or empty unless --overwrite (default runs/bench, rewritten each run)")
    add_overwrite_option(p, "write into a non-empty --out DIR, replacing its report files")
    p.add_argument("--json", metavar="FILE", help="render an existing pytest-benchmark JSON instead of running")
    p.add_argument("--baseline", metavar="NAME", help="speedups relative to this implementation (default reference)")
    p.add_argument("--min-rounds", type=POSITIVE, metavar="N", help="pytest-benchmark minimum rounds")
    p.add_argument("--max-time", type=float_range(0.0, low_open=True), metavar="S", help="pytest-benchmark max time per benchmark")
    p.add_argument("--threads", type=POSITIVE, metavar="N",
                   help="BLAS and Numba threads, and torch's (default: all; 1 is far less noisy on a loaded machine; "
                        "side by side with --peer torch: required)")
    p.add_argument("--peer", action="append", choices=["torch"],
                   help="also time PyTorch on every cell in the same run, the way its users write the model "
                        "(needs the 'torch' extra: pip install -e '.[torch]')")
    p.add_argument("--components", action="store_true", help="where the time goes: components at medium size")
    p.add_argument("--adapter", action="append", metavar="CMD",
                   help="time a program speaking the adapter protocol (SPEC §adapter-protocol; e.g. a Rust implementation) "
                        "beside the --impl implementations, side by side in rotating rounds; repeatable")
    p.add_argument("--rounds", type=POSITIVE, metavar="N",
                   help="side by side in rotating rounds, N per cell (default 5 with --adapter), instead of pytest-benchmark")
    p.add_argument("--cells", metavar="LIST", help="side by side: comma-separated PRESET-BxT (default: the nine)")
    p.add_argument("--steps", type=POSITIVE, metavar="N", help="side by side: timed steps per measurement (default 5)")
    p.add_argument("--peak-repeats", type=NON_NEGATIVE, metavar="N",
                   help="side by side: matmuls per peak measurement (default 5; 0: no peak)")
    p.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS", help="passed to pytest, e.g. -- -k tiny")
    p.set_defaults(func=run)
