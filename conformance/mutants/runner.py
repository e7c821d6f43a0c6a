"""Apply a mutant to a copy of `reference` or `fast` and run the suite on it.

How one mutant is run (the choices, and why):
- `reference/`, `fast/`, `feste/` and `conformance/` (the packages in use) are copied
  into a fresh temporary directory, without __pycache__, and the mutant's
  snippet is replaced in the copy of its package. A test file the mutant
  names outside conformance/ (a path from the project root, such as fast's
  own tests in tests/fast_internals/) is copied with the rest of its directory, to the
  same place. The repository is never
  touched, so mutants can run while other people work in the checkout.
- pytest runs in a subprocess with that directory as its working directory
  and first on PYTHONPATH: `python -m pytest` puts the working directory
  first on sys.path and the copied test files make pytest's rootdir insertion
  point at the copy too, so the mutated package is the one imported. The
  run checks that from the report header (the path of the implementation)
  and calls the mutant an error otherwise.
- Numba: every run gets its own empty NUMBA_CACHE_DIR inside the temporary
  directory, so no kernel compiled from the unmutated source (or from
  another mutant) can be loaded in place of the mutated one: a `fast` mutant
  recompiles every kernel its tests call (the bulk of its run time).
- Options: `--impl PACKAGE -x -p no:cacheprovider -m "not slow and not corpus"`,
  restricted to the mutant's `tests` files (and to `-k SELECT` when the
  mutant names the tests that must catch it). `-x` stops at the first failure,
  so a caught mutant costs little and the first failing test is "the test
  that caught it". HYPOTHESIS_PROFILE=mutation is the derandomized `ci`
  profile without the shrink phase: a failing example is all a mutant run
  needs, and shrinking one can take a minute. Slow and corpus tests are left out: every mutant must be
  caught by the quick loop, which is what developers run, and the result does
  not depend on a downloaded corpus. The derandomized profile makes the
  outcome reproducible; BLAS and Numba use one thread each so that two
  mutants can run side by side on a 2-core machine.
- Outcome: pytest exit code 1 with a FAILED/ERROR line is "caught"; so is a
  test process that the mutant crashes (a segmentation fault, bus error,
  abort, floating-point or illegal-instruction signal, for instance a kernel
  writing out of bounds): the suite fails on that code, as mutmut and
  Stryker count it. Exit code 0 is "survived" (a hole in the suite);
  anything else (collection or import error, no tests collected, timeout, a
  crash of the unmutated copy) is "error": a mutant that breaks imports
  proves nothing about the suite.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import anchor
from .catalogue import Mutant

MARK_EXPRESSION = "not slow and not corpus"
DEFAULT_TIMEOUT = 600.0


def package_dirs() -> dict[str, Path]:
    """The directories of the `reference`, `fast` and `conformance` packages in use."""
    import importlib.util

    dirs = {}
    for name in ("reference", "fast", "feste", "conformance"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            dirs[name] = Path(spec.origin).resolve().parent
    return dirs


def test_path(name: str) -> str:
    """Where a test file a mutant names lives, from the project root: a bare
    file name is a file of conformance/, a name with a '/' is already a path."""
    return name if "/" in name else f"conformance/{name}"


def project_root() -> Path:
    """The directory holding the conformance package (and fast's own tests/)."""
    return package_dirs()["conformance"].parent


def check_mutant(mutant: Mutant) -> list[str]:
    """Problems that make a catalogue entry invalid (empty list: valid).

    The original snippet must occur exactly once in the current source (so
    the catalogue cannot silently rot when the code changes), the mutated
    file must still compile, and the named test files must exist."""
    from .catalogue import BLIND_SPOTS, PACKAGES

    dirs = package_dirs()
    if mutant.package not in PACKAGES or mutant.package not in dirs:
        return [f"{mutant.id}: package {mutant.package!r} is not one of {PACKAGES} or does not import"]
    problems = []
    where = f"{mutant.package}/{mutant.file}"
    path = dirs[mutant.package] / mutant.file
    if not path.is_file():
        return [f"{mutant.id}: {where} does not exist"]
    source = path.read_text(encoding="utf-8")
    count = anchor.count(source, mutant.original)
    if count != 1:
        problems.append(f"{mutant.id}: the original snippet's code (comments aside) occurs {count} times in "
                        f"{where} (must be exactly once): {mutant.original!r}")
    if mutant.original == mutant.replacement:
        problems.append(f"{mutant.id}: replacement equals the original")
    if count == 1:
        try:
            compile(anchor.apply(source, mutant.original, mutant.replacement), str(path), "exec")
        except SyntaxError as exc:
            problems.append(f"{mutant.id}: mutated {where} does not compile: {exc}")
    if not mutant.tests:
        problems.append(f"{mutant.id}: no test files named")
    for name in mutant.tests:
        if not (dirs["conformance"].parent / test_path(name)).is_file():
            problems.append(f"{mutant.id}: test file {test_path(name)} does not exist")
    if mutant.blind_spot is not None and mutant.blind_spot not in BLIND_SPOTS:
        problems.append(f"{mutant.id}: unknown blind spot {mutant.blind_spot!r}")
    return problems


def apply_mutant(mutant: Mutant | None, dest: Path, tests: tuple[str, ...] = ()) -> Path:
    """Copy `reference`, `fast` (when it imports), `feste` and `conformance` into `dest`,
    with the directories of the `tests` (and the mutant's) outside conformance/, and
    apply `mutant` (None: an unmutated baseline copy). Returns `dest`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name, directory in package_dirs().items():
        shutil.copytree(directory, dest / name, ignore=ignore)
    root = project_root()
    names = tuple(tests) + (mutant.tests if mutant is not None else ())
    for folder in sorted({Path(test_path(t)).parent for t in names} - {Path("conformance")}):
        if not (dest / folder).exists():
            shutil.copytree(root / folder, dest / folder, ignore=ignore)
    if mutant is not None:
        target = dest / mutant.package / mutant.file
        source = target.read_text(encoding="utf-8")
        try:
            mutated = anchor.apply(source, mutant.original, mutant.replacement)
        except ValueError as exc:
            raise ValueError(f"mutant {mutant.id} in {mutant.package}/{mutant.file}: {exc}") from None
        target.write_text(mutated, encoding="utf-8")
    return dest


@dataclass
class MutantResult:
    id: str
    status: str  # "caught", "survived", "error"; for the baseline "passed" or "error"
    caught_by: str | None  # first failing test id
    seconds: float
    detail: str  # the failure line, or why the run is an error
    command: str

    @property
    def ok(self) -> bool:
        return self.status in ("caught", "passed")


# test ids may hold spaces (parametrized strings); the message follows " - "
_SUMMARY = re.compile(r"^(FAILED|ERROR) (.+?)(?: - (.*))?$", re.MULTILINE)


def _environment(workdir: Path, mutant_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FESTE_", "PYTEST_", "HYPOTHESIS_")) and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(workdir), HYPOTHESIS_PROFILE="mutation", FESTE_MUTANT=mutant_id,
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", NUMBA_CACHE_DIR=str(workdir / ".numba-cache"))
    return env


def run_mutant(mutant: Mutant | None, tests: tuple[str, ...] | None = None,
               timeout: float = DEFAULT_TIMEOUT, package: str = "reference", vectors: str | None = None) -> MutantResult:
    """Run the mutant's test files on a mutated copy of its package (or, with
    `mutant=None`, the given `tests` on an unmutated copy of `package`: the
    baseline)."""
    if vectors is not None:
        return run_mutant_vectors(mutant, vectors, timeout, package)
    mutant_id = mutant.id if mutant is not None else f"baseline-{package}"
    tests = tests if tests is not None else mutant.tests
    package = mutant.implementation if mutant is not None else package
    cmd = [sys.executable, "-m", "pytest", *(test_path(t) for t in tests),
           "--impl", package, "-x", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-m", MARK_EXPRESSION, "-rfE", "--tb=line", "-o", "addopts="]
    if mutant is not None and mutant.select:
        cmd += ["-k", mutant.select]
    return _run_in_copy(mutant, mutant_id, package, cmd, timeout, tests,
                        marker=f"feste impl {package}: version", who="the one imported")


def run_mutant_vectors(mutant: Mutant | None, vectors: str, timeout: float = DEFAULT_TIMEOUT,
                       package: str = "reference") -> MutantResult:
    """The vector path (SPEC §vectors): the mutated package served by the Python adapter, judged by a vector
    set built beforehand from the unmutated reference, `-x` so the first failing case is the catch."""
    mutant_id = (mutant.id if mutant is not None else f"baseline-{package}") + "@vectors"
    package = mutant.implementation if mutant is not None else package
    adapter = shlex.join([sys.executable, "-m", "conformance.vectors.adapter", "--impl", package])  # a path may hold spaces
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "conformance.vectors", f"--vectors={Path(vectors).resolve()}",
           f"--adapter={adapter}", "-x", "-p", "no:cacheprovider", "-rfE", "--tb=line", "-o", "addopts="]
    return _run_in_copy(mutant, mutant_id, package, cmd, timeout, (), marker="", who="the one the adapter imported")


def _run_in_copy(mutant: Mutant | None, mutant_id: str, package: str, cmd: list[str], timeout: float,
                 tests: tuple[str, ...], marker: str, who: str) -> MutantResult:
    """`cmd` in a fresh copy of the packages with `mutant` applied; an error unless the output shows
    that the copied `package` was imported (its path, and `marker` when given)."""
    shown = " ".join(cmd[1:])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"feste-mutant-{mutant_id}-") as tmp:
        workdir = Path(tmp).resolve()
        apply_mutant(mutant, workdir, tests)
        try:
            proc = subprocess.run(cmd, cwd=workdir, env=_environment(workdir, mutant_id),
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return MutantResult(mutant_id, "error", None, time.perf_counter() - start,
                                f"timed out after {timeout:.0f}s", shown)
        seconds = time.perf_counter() - start
        out = proc.stdout + proc.stderr
        if marker not in out or str(workdir / package / "__init__.py") not in out:
            return MutantResult(mutant_id, "error", None, seconds,
                                f"the copied {package} package was not {who}:\n" + _tail(out), shown)
    return _verdict(proc.returncode, out, mutant is None, mutant_id, seconds, shown, workdir)


# signals by which a process dies of what it ran itself (not of a stop from outside, nor of a timeout)
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL)
# a frame of faulthandler's dump ("most recent call first"): File "PATH", line N in NAME
_FRAME = re.compile(r'^\s*File "(.+?)", line \d+ in (\S+)', re.MULTILINE)


def _crashed_test(out: str, workdir: Path | None) -> str | None:
    """The test running when the process crashed, from faulthandler's dump of the crashing thread."""
    for path, name in _FRAME.findall(out):
        if Path(path).name.startswith("test_") and name.startswith("test"):
            if workdir is not None and path.startswith(str(workdir) + os.sep):
                path = path[len(str(workdir)) + 1:]
            return f"{path}::{name}"
    return None


def _verdict(returncode: int, out: str, baseline: bool, mutant_id: str, seconds: float, shown: str,
             workdir: Path | None = None) -> MutantResult:
    """A finished pytest run as a verdict: exit 1 with a FAILED/ERROR line, or a crash of the
    test process (CRASH_SIGNALS), is "caught" (for the unmutated baseline: an error), exit 0
    "survived" (the baseline: "passed"), anything else an error."""
    if returncode < 0 and -returncode in CRASH_SIGNALS and not baseline:
        return MutantResult(mutant_id, "caught", _crashed_test(out, workdir) or "(the test process)", seconds,
                            f"crashed: {signal.Signals(-returncode).name}", shown)
    found = _SUMMARY.findall(out)
    if returncode == 1 and found:
        kind, test_id, message = found[0]
        if baseline:
            return MutantResult(mutant_id, "error", test_id, seconds,
                                f"the unmutated copy fails: {kind} {test_id} - {message}", shown)
        return MutantResult(mutant_id, "caught", test_id, seconds, message.strip(), shown)
    if returncode == 0:
        return MutantResult(mutant_id, "passed" if baseline else "survived", None, seconds, _tail(out, 3), shown)
    return MutantResult(mutant_id, "error", None, seconds, f"pytest exit code {returncode}:\n" + _tail(out), shown)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_baselines(mutants: list[Mutant], timeout: float = DEFAULT_TIMEOUT,
                  vectors: str | None = None) -> dict[str, MutantResult]:
    """For each package the mutants touch, its mutants' test files (or the vectors) on an
    unmutated copy ({package: result}): a caught mutant must be the mutant's doing."""
    results = {}
    for package in sorted({m.implementation for m in mutants}):
        files = tuple(sorted({t for m in mutants if m.implementation == package for t in m.tests}))
        results[package] = run_mutant(None, files, timeout, package=package, vectors=vectors)
    return results


def run_mutants(mutants: list[Mutant], jobs: int = 2, timeout: float = DEFAULT_TIMEOUT,
                progress: bool = False, vectors: str | None = None) -> dict[str, MutantResult]:
    """Run mutants `jobs` at a time; returns {id: result} in catalogue order."""
    results: dict[str, MutantResult] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(mutants), desc="mutants", unit="mutant")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {m.id: pool.submit(run_mutant, m, None, timeout, m.package, vectors) for m in mutants}
        for mutant in mutants:
            results[mutant.id] = futures[mutant.id].result()
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{mutant.id}: {results[mutant.id].status}")
    if bar is not None:
        bar.close()
    return results


def format_report(mutants: list[Mutant], results: dict[str, MutantResult]) -> str:
    """The catalogue report: one line per mutant, with the test that caught it."""
    lines = []
    width = max((len(m.id) for m in mutants), default=10)
    for m in mutants:
        r = results.get(m.id)
        status = r.status if r else "not run"
        caught = r.caught_by if r and r.caught_by else (r.detail.splitlines()[0] if r and r.detail else "")
        secs = f"{r.seconds:5.1f}s" if r else "     "
        lines.append(f"{m.id:<{width}}  {status:<8} {secs}  {m.package}/{m.file}: {m.description}")
        lines.append(f"{'':<{width}}    -> {caught}")
    counts = {s: sum(1 for r in results.values() if r.status == s) for s in ("caught", "survived", "error")}
    lines.append(f"{len(mutants)} mutants: {counts['caught']} caught, {counts['survived']} survived, "
                 f"{counts['error']} errors")
    return "\n".join(lines)
