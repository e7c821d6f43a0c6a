"""`python -m conformance.vectors build DIR`: write the vector set (SPEC 13.1)."""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build"], help="build: generate the vector set from reference")
    parser.add_argument("dir", metavar="DIR", help="output directory; the set goes to DIR/<spec version>/ "
                        "(replaced if it exists)")


def run(args) -> int:
    from .build import build

    summary = build(args.dir)
    per = ", ".join(f"{k} {v}" for k, v in sorted(summary["components"].items()))
    print(f"components: {per}")
    print(f"wrote {summary['cases']} cases, {summary['bytes'] / 1e6:.1f} MB, to {summary['dir']} "
          f"in {summary['seconds']:.1f} s")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.vectors",
                                     description="Language-neutral conformance vectors (SPEC section 13).")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
