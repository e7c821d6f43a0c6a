"""The mutation catalogue: proof that the conformance suite can fail.

Each mutant is one deliberate defect in `reference`: (id, file, the exact
original snippet, its replacement, what it breaks, the test files to run).
`conformance/test_mutation.py` applies each to a copy of the package and
requires the suite to fail on it; `python -m conformance.mutants` prints the
catalogue report (mutant -> the test that caught it). See runner.py for how
a mutant is applied and run.
"""
from .catalogue import MUTANTS, Mutant
from .runner import MutantResult, apply_mutant, check_mutant, run_mutant, run_mutants

__all__ = ["MUTANTS", "Mutant", "MutantResult", "apply_mutant", "check_mutant", "run_mutant",
           "run_mutants"]
