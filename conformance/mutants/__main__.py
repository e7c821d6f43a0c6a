"""Print the mutation catalogue report: `python -m conformance.mutants`.

    python -m conformance.mutants                 # run every mutant, 2 at a time
    python -m conformance.mutants --list          # the catalogue only, checked, not run
    python -m conformance.mutants ID [ID ...]     # run some mutants
    python -m conformance.mutants --package fast  # only the mutants of one package
    python -m conformance.mutants --jobs 1        # one at a time
    python -m conformance.mutants --vectors DIR   # judge each mutant by the vector set alone (SPEC §vectors)

Exit status 1 if a catalogue entry is invalid, a mutant survives or a run errs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .catalogue import APPLIES, MUTANTS, PACKAGES
from .runner import DEFAULT_TIMEOUT, check_mutant, format_report, run_baselines, run_mutants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.mutants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", help="mutant ids to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print and check the catalogue without running it")
    parser.add_argument("--package", choices=PACKAGES, help="only the mutants of this package")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="mutants run side by side (default: min(2, cpus))")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per mutant")
    parser.add_argument("--vectors", metavar="DIR",
                        help="judge the mutants through the language-neutral vectors instead of the suite: DIR is "
                             "a set built from the unmutated reference (`python -m conformance.vectors build DIR`); "
                             "the report gives the fraction caught")
    args = parser.parse_args(argv)

    known = {m.id: m for m in MUTANTS}
    unknown = [i for i in args.ids if i not in known]
    if unknown:
        parser.error(f"unknown mutant id(s): {', '.join(unknown)}; see --list")
    mutants = [known[i] for i in args.ids] if args.ids else list(MUTANTS)
    if args.package:
        mutants = [m for m in mutants if m.package == args.package]

    problems = [p for m in mutants for p in check_mutant(m)]
    for problem in problems:
        print(f"INVALID {problem}")
    if args.list:
        for m in mutants:
            spot = f" <{m.blind_spot}>" if m.blind_spot else ""
            print(f"{m.id:<36} {m.package}/{m.file}: {m.description}{spot}  [{', '.join(m.tests)}]")
        print(f"{len(mutants)} mutants: " + ", ".join(
            f"{sum(m.package == p for m in mutants)} of {p}" for p in PACKAGES))
        for package in PACKAGES:
            have = {m.blind_spot for m in mutants if m.package == package}
            missing = [c for c in APPLIES[package] if c not in have]
            if missing and not args.ids:
                print(f"{package}: no mutant for blind spot(s) {', '.join(missing)}")
        return 1 if problems else 0
    if problems:
        return 1

    start = time.perf_counter()
    baselines = run_baselines(mutants, args.timeout, vectors=args.vectors)
    for baseline in baselines.values():
        if not baseline.ok:
            print(f"{baseline.id} (unmutated copy) does not pass, mutants would prove nothing:\n{baseline.detail}")
            return 1
    results = run_mutants(mutants, jobs=args.jobs, timeout=args.timeout, progress=True, vectors=args.vectors)
    print(format_report(mutants, results))
    if args.vectors:
        for package in PACKAGES:
            mine = [r for m, r in zip(mutants, results.values()) if m.package == package]
            if mine:
                caught = sum(r.status == "caught" for r in mine)
                print(f"through the vectors alone: {package} {caught} of {len(mine)} mutants caught "
                      f"({100 * caught / len(mine):.0f}%)")
    print(f"wall time {time.perf_counter() - start:.0f}s with --jobs {args.jobs} (baselines "
          + ", ".join(f"{b.id} {b.seconds:.1f}s" for b in baselines.values()) + ")")
    return 0 if all(r.status == "caught" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
