"""The suite's power measured by a mutation tool nobody here wrote (mutmut 3).

The hand-written catalogue (`conformance.mutants`) grades itself: each of its
mutants was chosen with its test in mind. This package runs mutmut, which
generates every operator mutant it knows (comparisons, boolean operators,
constants, strings, arguments, assignments...) in every function of the
chosen files, and judges the result against a committed triage file:

- `targets.toml`: the mutation targets: which files, and which tests with
  which implementation judge them (`--impl reference` for reference/, the
  trainer's tests for the trainer, `--impl fast` for fast's Python code);
- `triage/`: every surviving mutant that is equivalent (no test could
  kill it without asserting something SPEC does not promise), each with a
  one-line argument; a survivor not listed there fails the run;
- `report.md`: the last full report (by module and by operator), with the
  command that produced it.

Why mutmut and not cosmic-ray: mutmut 3 records, in one traced run of the
selected tests, which tests call each function, and runs each mutant in a
process forked from a server that has already imported numpy, the suite and
(for fast) the compiled kernels but run no test (a fork of a process that
ran tests could hang on a lock one of its threads held), switching mutants
through a trampoline
rather than rewriting files; cosmic-ray starts a fresh test command per
mutant (imports, collection and, for fast, a Numba compile each time) and
needs the test command chosen per module by hand. On two shared cores that
is the difference between minutes and hours per module. mutmut skips
decorated functions, so Numba kernels (`@njit`) are not among its mutants:
`python -m conformance.mutation kernels` samples their comparison, boolean
and constant operators instead, each in a copy of `fast` with an empty
Numba cache (the catalogue runner's machinery).

    python -m conformance.mutation run reference/optim.py      # one file (its target's tests)
    python -m conformance.mutation run --target reference      # a whole target
    python -m conformance.mutation run --changed-since main    # the files a change touches (CI)
    python -m conformance.mutation report                      # the report of the last runs
    python -m conformance.mutation kernels --sample 3          # Numba kernel sample
"""
