"""The mutation catalogue: proof that the conformance suite can fail.

Each mutant is one deliberate defect in `reference` or `fast`: (id, file,
the exact original snippet, its replacement, what it breaks, the test files
to run, the package, optionally the tests that must catch it and the blind
spot it stands for).
`meta_tests/test_mutation.py` applies each to a copy of the package and
requires the suite to fail on it; `python -m conformance.mutants` prints the
catalogue report (mutant -> the test that caught it). See runner.py for how
a mutant is applied and run.
"""
from .catalogue import APPLIES, BLIND_SPOTS, MUTANTS, PACKAGES, Mutant
from .runner import MutantResult, apply_mutant, check_mutant, run_baselines, run_mutant, run_mutants

__all__ = ["APPLIES", "BLIND_SPOTS", "MUTANTS", "Mutant", "MutantResult", "PACKAGES", "apply_mutant",
           "check_mutant", "run_baselines", "run_mutant", "run_mutants"]
