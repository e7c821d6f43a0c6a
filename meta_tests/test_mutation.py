"""Proof that the suite can fail: the mutation meta-test.

Every mutant of the catalogue (conformance/mutants/catalogue.py) is one
deliberate defect in `reference` or `fast`. Each is applied to a copy of the
packages in a temporary directory and its test files are run on it in a
subprocess, with a fresh Numba cache (conformance/mutants/runner.py documents
the options and why); the suite must fail. A mutant that survives is a hole
in the suite: add the missing check (in the test file that owns the
behaviour) rather than removing the mutant.

The catalogue checks are quick and always run; running the mutants is marked
slow (docs/MEASUREMENTS.md gives the time) and runs in CI's full
suite. A package's mutants run when that package is among the
implementations under test: they are variants of `reference` and `fast`, not
of a third-party module. The terminal summary prints the catalogue with the
test that caught each mutant (`python -m conformance.mutants` prints the
same report standalone).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.mutants import (
    APPLIES, BLIND_SPOTS, MUTANTS, PACKAGES, check_mutant, run_baselines, run_mutant, run_mutants,
)
from conformance.selection import selected_names

# At least this many single-defect variants of each mutated implementation.
MIN_MUTANTS = {"reference": 25, "fast": 10}
JOBS_ENV = "FESTE_MUTATION_JOBS"


def test_catalogue_ids_are_unique_and_described():
    ids = [m.id for m in MUTANTS]
    for package, least in MIN_MUTANTS.items():
        n = sum(m.package == package for m in MUTANTS)
        assert n >= least, f"the catalogue has {n} mutants of {package}, fewer than {least}"
    assert len(ids) == len(set(ids)), "a mutant id is used twice"
    for m in MUTANTS:
        assert m.id.replace("-", "").isalnum() and m.id == m.id.lower(), f"{m.id}: use kebab-case ids"
        assert m.description.strip(), f"{m.id}: no description"
        assert m.package in PACKAGES, f"{m.id}: unknown package {m.package}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_blind_spot_has_a_mutant(package):
    """Each blind-spot class (a defect the suite once could not see) has at least
    one mutant in each implementation where it applies (catalogue.APPLIES)."""
    have = {m.blind_spot for m in MUTANTS if m.package == package}
    missing = [f"{c} ({BLIND_SPOTS[c]})" for c in APPLIES[package] if c not in have]
    assert not missing, f"{package}: no mutant for " + "; ".join(missing)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_catalogue_entry_matches_the_source(mutant):
    """The snippet occurs exactly once in the current reference source, the
    mutated file compiles, the named test files exist: when the code moves,
    this fails and the entry must be updated (no silent rot)."""
    problems = check_mutant(mutant)
    assert not problems, "\n".join(problems)


# the implementations the mutants run on (a `feste` mutant, of the trainer, runs on reference)
IMPLEMENTATIONS = ("reference", "fast")


def _runnable_packages(config) -> list[str]:
    return [p for p in IMPLEMENTATIONS if p in selected_names(config)]


@pytest.fixture(scope="session")
def mutation_results(request):
    """Runs the baselines and every selected mutant once, two at a time."""
    if os.environ.get("FESTE_MUTANT"):
        pytest.skip("inside a mutant run: the mutants are run from the unmutated suite, never from a mutant")
    packages = _runnable_packages(request.config)
    if not packages:
        pytest.skip("mutants are variants of reference and fast: run with --impl reference or --impl fast")
    selected = {item.callspec.params["mutant"].id for item in request.session.items
                if item.originalname == "test_mutant_is_caught" and hasattr(item, "callspec")}
    mutants = [m for m in MUTANTS if m.id in selected and m.implementation in packages and not check_mutant(m)]
    jobs = int(os.environ.get(JOBS_ENV, min(2, os.cpu_count() or 1)))
    results = run_mutants(mutants, jobs=jobs)
    baselines = run_baselines([m for m in MUTANTS if m.implementation in packages])
    return {"mutants": results, "baselines": baselines}


@pytest.mark.slow
@pytest.mark.parametrize("package", IMPLEMENTATIONS)
def test_unmutated_copy_passes(package, mutation_results):
    """Without a mutation the same runs pass: a caught mutant is the mutant's doing."""
    baseline = mutation_results["baselines"].get(package)
    if baseline is None:
        pytest.skip(f"{package} is not among the implementations under test")
    assert baseline.status == "passed", f"{baseline.command}\n{baseline.detail}"


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_mutant_is_caught(mutant, mutation_results, record_property):
    problems = check_mutant(mutant)
    assert not problems, "\n".join(problems)
    if mutant.id not in mutation_results["mutants"]:
        pytest.skip(f"mutant run on {mutant.implementation}, which is not among the implementations under test")
    result = mutation_results["mutants"][mutant.id]
    record_property("mutant", mutant.id)
    record_property("caught_by", result.caught_by or result.status)
    record_property("seconds", round(result.seconds, 1))
    if result.status == "survived":
        pytest.fail(f"mutant {mutant.id} survived ({mutant.description}, {mutant.package}/{mutant.file}): "
                    f"no test in {', '.join(mutant.tests)} fails on it. Add the check that "
                    f"catches it.\n  {result.command}", pytrace=False)
    assert result.status == "caught", (
        f"mutant {mutant.id}: the run is an error, not a catch:\n{result.detail}\n  {result.command}")


@pytest.mark.slow
def test_runner_reports_an_equivalent_mutant_as_survived(pytestconfig):
    """The runner can say "survived": a mutant that only adds the parentheses
    Python's left-to-right evaluation already implies changes no behaviour, so
    every test passes on it."""
    if "reference" not in selected_names(pytestconfig) or os.environ.get("FESTE_MUTANT"):
        pytest.skip("mutants are variants of reference: run with --impl reference")
    from conformance.mutants import Mutant

    harmless = Mutant("same-order", "optim.py", "lr_f * mhat / (np.sqrt(vhat) + eps_f)",
                      "(lr_f * mhat) / (np.sqrt(vhat) + eps_f)", "parentheses that change nothing",
                      ("test_optim.py",))
    assert not check_mutant(harmless)
    result = run_mutant(harmless)
    assert result.status == "survived", f"{result.command}\n{result.detail}"


@pytest.mark.slow
def test_runner_counts_a_crashed_test_process_as_caught(pytestconfig):
    """A mutant that crashes the test process (here a read of address 0, as a
    kernel writing out of bounds does) fails the suite: the verdict is
    "caught", naming the test that was running, not an error."""
    if "reference" not in selected_names(pytestconfig) or os.environ.get("FESTE_MUTANT"):
        pytest.skip("mutants are variants of reference: run with --impl reference")
    from conformance.mutants import Mutant

    crash = Mutant("segfault", "optim.py", "lr_f * mhat / (np.sqrt(vhat) + eps_f)",
                   "__import__('ctypes').string_at(0) and lr_f * mhat / (np.sqrt(vhat) + eps_f)",
                   "a read of address 0", ("test_optim.py",))
    assert not check_mutant(crash)
    result = run_mutant(crash)
    assert result.status == "caught", f"{result.command}\n{result.detail}"
    assert result.detail == "crashed: SIGSEGV"
    assert result.caught_by.startswith("conformance/test_optim.py::test"), result.caught_by


def test_a_crash_is_caught_only_for_a_mutant_and_only_of_its_own_making():
    """The unmutated copy crashing is an error (nothing is proven), and so is a
    process stopped from outside (SIGKILL, SIGTERM): neither is the suite failing."""
    from conformance.mutants.runner import _verdict

    dump = ('Fatal Python error: Segmentation fault\n\nCurrent thread 0x7f (most recent call first):\n'
            '  File "/tmp/w/fast/_embedding.py", line 42 in bucket_rows\n'
            '  File "/tmp/w/conformance/test_layers.py", line 9 in test_embedding_backward\n'
            '  File "/usr/lib/python3/site-packages/_pytest/python.py", line 159 in pytest_pyfunc_call\n')
    mutant = _verdict(-11, dump, False, "m", 1.0, "cmd", Path("/tmp/w"))
    assert (mutant.status, mutant.caught_by) == ("caught", "conformance/test_layers.py::test_embedding_backward")
    assert _verdict(-6, "", False, "m", 1.0, "cmd").status == "caught"
    assert _verdict(-11, dump, True, "baseline", 1.0, "cmd").status == "error"
    for outside in (-9, -15, 2):
        assert _verdict(outside, dump, False, "m", 1.0, "cmd").status == "error"


def _comments_edited(source: str) -> str:
    """Every comment of `source` rewritten (what a prose edit does)."""
    import io
    import tokenize

    lines = source.split("\n")
    for tok in reversed(list(tokenize.generate_tokens(io.StringIO(source).readline))):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start[0] - 1, tok.start[1]
            lines[row] = lines[row][:col] + "# reworded " + lines[row][col + 1:][::-1]
    return "\n".join(lines)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_editing_comments_cannot_break_a_mutant(mutant):
    """Mutants anchor on code: with every comment of the file reworded, the
    snippet still occurs once and the mutated code is the same."""
    from conformance.mutants import anchor
    from conformance.mutants.runner import package_dirs

    source = (package_dirs()[mutant.package] / mutant.file).read_text(encoding="utf-8")
    edited = _comments_edited(source)
    assert edited != source or "#" not in source
    assert anchor.count(edited, mutant.original) == 1
    assert anchor.code_only(anchor.apply(edited, mutant.original, mutant.replacement)) == \
        anchor.code_only(anchor.apply(source, mutant.original, mutant.replacement))


def test_anchor_by_hand():
    """Whole lines take their comments with them; an in-line snippet keeps the
    rest of its line; a '#' in a string is code; a snippet found twice is refused."""
    from conformance.mutants import anchor

    src = "a = 1  # one\nb = a * 2  # [P] two\nc = '#x'  # str\nd = b\n"
    assert anchor.apply(src, "b = a * 2  # old words\n", "b = a * 3\n") == "a = 1  # one\nb = a * 3\nc = '#x'  # str\nd = b\n"
    assert anchor.apply(src, "a * 2", "a * 5") == "a = 1  # one\nb = a * 5  # [P] two\nc = '#x'  # str\nd = b\n"
    assert anchor.apply(src, "c = '#x'\nd = b\n", "c = 0\n") == "a = 1  # one\nb = a * 2  # [P] two\nc = 0\n"
    assert anchor.count(src + "b = a * 2\n", "b = a * 2\n") == 2
    with pytest.raises(ValueError, match="occurs 2 times"):
        anchor.apply(src + "b = a * 2\n", "b = a * 2\n", "x\n")
