"""`python -m conformance.vectors build DIR`: write the vector set (SPEC §vectors-build).
`python -m conformance.vectors check DIR`: verify a set (SHA256SUMS, index, every case.json against the schema)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build", "check"],
                        help="build: generate the vector set from reference into DIR/<spec version>/ (an existing "
                             "one only with --overwrite); check: verify the set in DIR (its SHA256SUMS, index.json, "
                             "and every case.json against case.schema.json; needs jsonschema, in the test extra)")
    parser.add_argument("dir", metavar="DIR", help="the vector directory (DIR or DIR/<spec version>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="build: replace an existing DIR/<spec version> (refused otherwise)")


def run(args) -> int:
    """Build or check; a user's error (an existing set without --overwrite, no jsonschema for check) is
    raised as OSError or ValueError, which `feste vectors` and main() print as one line."""
    if args.action == "check":
        from .build import check

        try:
            import jsonschema  # noqa: F401
        except ImportError:
            raise ValueError("check validates case.json with jsonschema, which is not installed "
                             "(it is in the test extra: pip install -e '.[test]')") from None
        problems, count = check(args.dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"checked {count} cases in {args.dir}: " + (f"{len(problems)} problems" if problems else "all valid"))
        return 1 if problems else 0
    from . import SPEC_VERSION
    from .build import build

    target = Path(args.dir) / SPEC_VERSION
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target} exists: the set is not rebuilt over it (--overwrite replaces it)")
    if not one_blas_thread():
        return build_in_child(args)
    summary = build(args.dir)
    per = ", ".join(f"{k} {v}" for k, v in sorted(summary["components"].items()))
    print(f"components: {per}")
    print(f"wrote {summary['cases']} cases, {summary['bytes'] / 1e6:.1f} MB, to {summary['dir']} "
          f"in {summary['seconds']:.1f} s")
    return 0


def one_blas_thread() -> bool:
    """Whether this process's BLAS pool was started with one thread (SPEC §vectors-build)."""
    from conformance.workers import BLAS_THREAD_ENVS

    return all(os.environ.get(name) == "1" for name in BLAS_THREAD_ENVS)


def build_in_child(args) -> int:
    """The build in a child process whose BLAS pool has one thread: float32 products summed by several
    threads round differently from one thread's, so the expected values, and the set's bytes, would depend on
    the machine's core count (SPEC §vectors-build). Its output and exit status are the build's."""
    import subprocess

    from conformance.workers import BLAS_THREAD_ENVS

    root = str(Path(__file__).resolve().parents[2])  # where conformance/ and reference/ are imported from
    env = dict(os.environ, **{name: "1" for name in BLAS_THREAD_ENVS})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "conformance.vectors", "build", str(args.dir)]
    return subprocess.run(argv + (["--overwrite"] if args.overwrite else []), env=env).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.vectors",
                                     description="Language-neutral conformance vectors (SPEC §vectors).")
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except (OSError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
