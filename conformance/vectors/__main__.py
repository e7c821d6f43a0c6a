"""`python -m conformance.vectors build DIR`: write the vector set (SPEC §vectors-build).
`python -m conformance.vectors check DIR`: verify a set (SHA256SUMS, index, every case.json against the schema)."""
from __future__ import annotations

import argparse
import sys


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
    from pathlib import Path

    from . import SPEC_VERSION
    from .build import build

    target = Path(args.dir) / SPEC_VERSION
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target} exists: the set is not rebuilt over it (--overwrite replaces it)")
    summary = build(args.dir)
    per = ", ".join(f"{k} {v}" for k, v in sorted(summary["components"].items()))
    print(f"components: {per}")
    print(f"wrote {summary['cases']} cases, {summary['bytes'] / 1e6:.1f} MB, to {summary['dir']} "
          f"in {summary['seconds']:.1f} s")
    return 0


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
