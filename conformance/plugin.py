"""pytest plugin: choose the implementations the conformance suite runs against.

Registered through the `pytest11` entry point (pyproject.toml), so both
`pytest` in the repository and `pytest --pyargs conformance --impl my.module`
from anywhere work.

Options (README "Checking your own implementation"):
  --impl NAME               repeatable; `reference`, `fast` or a dotted module
                            path. Fallback: $FESTE_IMPL (comma-separated).
                            Default: every built-in implementation that imports.
  --expected-failures FILE  test-id glob patterns an implementation knowingly
                            fails; each matching test becomes xfail(strict=True).
                            Fallback: $FESTE_EXPECTED_FAILURES.

Test ids carry the implementation name (`test_x[fast-...]`). The report
header prints each implementation's path and version, numpy and numba
versions, thread counts and the relevant environment variables.
"""
from __future__ import annotations

import importlib
import inspect
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BUILTIN = ("reference", "fast")
ENV_VAR = "FESTE_IMPL"
EXPECTED_FAILURES_ENV = "FESTE_EXPECTED_FAILURES"
REQUIRE_CORPUS_ENV = "FESTE_REQUIRE_CORPUS"
# environment variables that change numerics, threading or test selection
REPORTED_ENV_PREFIXES = ("FESTE_", "NUMBA_", "OMP_", "OPENBLAS_", "MKL_", "BLIS_",
                         "VECLIB_", "HYPOTHESIS_", "PYTHONHASHSEED", "CI")

def contract_names() -> frozenset[str]:
    """The public names every implementation exports (reference/contract.py, the one table)."""
    from reference.contract import NAMES

    return frozenset(NAMES)


def spec_section(name: str) -> str:
    """The SPEC section that specifies a contract name, e.g. 'SPEC 2.2 Forward' (reference/contract.py)."""
    from reference.contract import section_of

    return section_of(name)


class Implementation:
    """An implementation under test: a module exposing `reference.__all__`.

    Attribute access forwards to the module; a name the module does not export
    skips the test that needs it, with the reason (test_contract fails once
    for the name instead of every test failing in a cascade).
    """

    def __init__(self, name: str, module):
        self.name = name
        self.module = module

    def __getattr__(self, attr: str):
        try:
            return getattr(self.module, attr)
        except AttributeError:
            if attr not in contract_names():
                # not a contract name: a plain AttributeError, so that probes
                # such as hypothesis' `hypothesis_internal_is_this_a_mock_check`
                # or copy's `__deepcopy__` do not skip the test
                raise AttributeError(f"{self.name} has no attribute {attr!r}") from None
            pytest.skip(f"{self.name} is missing {attr} ({spec_section(attr)}; "
                        "reported once by test_contract)")

    def has(self, attr: str) -> bool:
        return hasattr(self.module, attr)

    @property
    def version(self) -> str:
        return str(getattr(self.module, "__version__", "unknown"))

    @property
    def path(self) -> str:
        return str(getattr(self.module, "__file__", "?"))

    def __repr__(self) -> str:
        return f"Implementation({self.name})"


# --- options ----------------------------------------------------------------
def pytest_addoption(parser):
    group = parser.getgroup("feste", "Feste conformance suite")
    group.addoption(
        "--impl",
        action="append",
        default=None,
        metavar="NAME",
        help="implementation to test: 'reference', 'fast' or a dotted module path "
        f"(repeatable; fallback ${ENV_VAR}, comma-separated; default: every built-in that imports)",
    )
    group.addoption(
        "--expected-failures",
        action="append",
        default=None,
        metavar="FILE",
        help="file of test-id glob patterns (one per line, '# reason' comments) that the "
        "implementation knowingly fails; matching tests become xfail(strict=True) "
        f"(repeatable; fallback ${EXPECTED_FAILURES_ENV})",
    )


def _requested(config) -> list[str]:
    names = config.getoption("--impl")
    if not names:
        env = os.environ.get(ENV_VAR, "").strip()
        names = [n.strip() for n in env.split(",") if n.strip()] if env else []
    unique: list[str] = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique


def _load(name: str):
    return importlib.import_module(name)


def _invocation_dir_on_path(config) -> None:
    """Put the directory pytest was started from first on sys.path, as
    `python -m pytest` does and plain `pytest` does not, so that
    `pytest --pyargs conformance --impl my_gpt` run next to my_gpt.py imports
    it (README "Running the suite on it")."""
    import sys

    here = str(config.invocation_params.dir)
    if not any(os.path.abspath(p or os.curdir) == here for p in sys.path):
        sys.path.insert(0, here)


# --- expected failures --------------------------------------------------------
@dataclass
class ExpectedFailure:
    """One line of an expected-failures file."""

    pattern: str  # fnmatch glob over the test id
    reason: str
    source: str  # "FILE:LINE"
    matched: list[str] = field(default_factory=list)

    def matches(self, nodeid: str, filename: str) -> bool:
        regex = glob_regex(self.pattern)
        return any(regex.fullmatch(form) for form in id_forms(nodeid, filename))


def glob_regex(pattern: str) -> "re.Pattern[str]":
    """`*` matches any run of characters, `?` one character; everything else,
    brackets included, is literal (test ids are full of `[...]`, so fnmatch's
    character classes would silently match the wrong tests)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def id_forms(nodeid: str, filename: str) -> tuple[str, str]:
    """The ids a pattern may be written against: pytest's node id (which
    depends on the rootdir and on how the suite was named on the command
    line), and the stable short id `test_x.py::test_y[impl-...]` built from
    the test file's base name, the same from the repository or via --pyargs."""
    return nodeid, f"{filename}::{nodeid.partition('::')[2]}"


def parse_expected_failures(path: str | os.PathLike) -> list[ExpectedFailure]:
    """Parse an expected-failures file (format in README).

    Each non-blank line that is not a `#` comment holds one glob pattern over
    test ids, optionally followed by `# reason`. A pattern may not contain
    whitespace. Raises ValueError naming the file and line for a bad line and
    OSError (FileNotFoundError) for a missing file.
    """
    path = Path(path)
    entries = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text, _, reason = raw.partition("#")
        pattern = text.strip()
        if not pattern:
            continue
        if len(pattern.split()) != 1:
            raise ValueError(f"{path}:{lineno}: expected one test-id pattern (no spaces) "
                             f"optionally followed by '# reason', got {raw.strip()!r}")
        entries.append(ExpectedFailure(pattern, reason.strip() or "listed as an expected failure",
                                       f"{path}:{lineno}"))
    return entries


def _expected_failure_files(config) -> list[str]:
    files = config.getoption("--expected-failures")
    if not files:
        env = os.environ.get(EXPECTED_FAILURES_ENV, "").strip()
        files = [env] if env else []
    return files


# --- configuration --------------------------------------------------------------
def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running tests (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "corpus: needs the Shakespeare corpus (`feste corpus`)")
    requested = _requested(config)
    impls: list[Implementation] = []
    errors: list[str] = []
    if requested:
        _invocation_dir_on_path(config)
        for name in requested:
            try:
                impls.append(Implementation(name, _load(name)))
            except Exception as exc:  # a user-named module must import: say why it did not
                raise pytest.UsageError(f"--impl {name}: cannot import module {name!r}: "
                                        f"{type(exc).__name__}: {exc}") from exc
    else:
        for name in BUILTIN:
            try:
                module = _load(name)
            except ImportError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if getattr(module, "__file__", None) is None:
                # a directory without __init__.py imports as a namespace package:
                # an implementation still being written, not one to test
                errors.append(f"{name}: no {name}/__init__.py yet (namespace package)")
                continue
            impls.append(Implementation(name, module))
    config._feste_impls = impls
    config._feste_import_errors = errors
    expected: list[ExpectedFailure] = []
    for path in _expected_failure_files(config):
        try:
            expected += parse_expected_failures(path)
        except FileNotFoundError:
            raise pytest.UsageError(f"--expected-failures {path}: no such file") from None
        except ValueError as exc:
            raise pytest.UsageError(f"--expected-failures: {exc}") from None
    config._feste_expected = expected
    _register_hypothesis_profiles()


def _register_hypothesis_profiles():
    try:
        from hypothesis import HealthCheck, Phase, settings
    except ImportError:
        return
    settings.register_profile("dev", deadline=None, max_examples=25,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", deadline=None, max_examples=60, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    # the mutation meta-test (conformance/mutants/runner.py): `ci` without
    # shrinking, since one failing example is all a mutant run needs
    settings.register_profile("mutation", parent=settings.get_profile("ci"),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile(hypothesis_profile())


def hypothesis_profile() -> str:
    return os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")


def implementations(config) -> list[Implementation]:
    return list(getattr(config, "_feste_impls", []))


def selected_names(config) -> list[str]:
    """Names of the implementations under test (what --impl chose)."""
    return [impl.name for impl in implementations(config)]


def _thread_info() -> str:
    """Numba version and thread count, without importing numba when no
    implementation under test did (importing it costs ~1 s per pytest run)."""
    import sys
    from importlib import metadata

    numba = sys.modules.get("numba")
    if numba is not None:
        return (f"numba {numba.__version__} (threads {numba.config.NUMBA_NUM_THREADS}, "
                f"layer {numba.config.THREADING_LAYER})")
    try:
        version = metadata.version("numba")
    except metadata.PackageNotFoundError:
        return "numba not installed"
    threads = os.environ.get("NUMBA_NUM_THREADS") or f"{os.cpu_count()} (default)"
    return f"numba {version} (not imported; threads {threads})"


def pytest_report_header(config):
    import numpy

    lines = []
    for impl in implementations(config):
        lines.append(f"feste impl {impl.name}: version {impl.version}, {impl.path}")
    for err in getattr(config, "_feste_import_errors", []):
        lines.append(f"feste impl not available: {err}")
    lines.append(f"numpy {numpy.__version__}, {_thread_info()}, cpus {os.cpu_count()}, "
                 f"python {platform.python_version()}, hypothesis profile {hypothesis_profile()}")
    for path in _expected_failure_files(config):
        n = sum(1 for e in config._feste_expected if e.source.startswith(f"{Path(path)}:"))
        lines.append(f"feste expected failures: {path} ({n} patterns)")
    env = {k: v for k, v in os.environ.items() if k.startswith(REPORTED_ENV_PREFIXES)}
    lines.append("env: " + (" ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(none relevant)"))
    return lines


def pytest_generate_tests(metafunc):
    if "impl" in metafunc.fixturenames:
        impls = implementations(metafunc.config)
        if not impls:
            raise pytest.UsageError("no implementation could be imported; name one with --impl")
        metafunc.parametrize("impl", impls, ids=[i.name for i in impls], scope="session")


def pytest_pycollect_makemodule(module_path, parent):
    """A suite module named on the command line from outside the rootdir
    (`pytest --pyargs conformance.test_a conformance.test_b` in a user's
    folder) would get node ids relative to itself, `::test_y[...]`, and the
    report would lose the file name. Such modules get the id
    `test_a.py::test_y[...]`, the same as under `--pyargs conformance`."""
    if Path(module_path).resolve().parent != Path(__file__).resolve().parent:
        return None
    try:
        Path(module_path).resolve().relative_to(Path(parent.config.rootpath).resolve())
    except ValueError:
        return pytest.Module.from_parent(parent, path=Path(module_path), nodeid=Path(module_path).name)
    return None


def pytest_collection_modifyitems(config, items):
    expected = getattr(config, "_feste_expected", [])
    if not expected:
        return
    for item in items:
        for entry in expected:
            if entry.matches(item.nodeid, item.path.name):
                entry.matched.append(item.nodeid)
                item.add_marker(pytest.mark.xfail(
                    strict=True, reason=f"expected failure ({entry.source}): {entry.reason}"))
                break


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stale = [e for e in getattr(config, "_feste_expected", []) if not e.matched]
    if stale:
        terminalreporter.section("feste expected failures")
        for entry in stale:
            terminalreporter.write_line(
                f"{entry.source}: pattern {entry.pattern!r} matched no collected test")
    # the mutation meta-test records (mutant, caught_by, seconds) per mutant
    rows = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            props = dict(getattr(report, "user_properties", []) or [])
            if "mutant" in props and report.when == "call":
                rows.append((props["mutant"], outcome, props.get("seconds", ""), props.get("caught_by", "")))
    if rows:
        terminalreporter.section("feste mutation catalogue: mutant -> the test that caught it")
        width = max(len(r[0]) for r in rows)
        for mutant, outcome, seconds, caught_by in sorted(rows):
            verdict = "caught" if outcome == "passed" else "NOT CAUGHT"
            terminalreporter.write_line(f"{mutant:<{width}}  {verdict:<10} {seconds:>5}s  {caught_by}")


# --- fixtures -------------------------------------------------------------------
@pytest.fixture(scope="session")
def ref():
    """The reference implementation, for cross-implementation agreement tests."""
    import reference

    return Implementation("reference", reference)


@pytest.fixture(scope="session")
def corpus_bytes() -> bytes:
    """The cached Shakespeare corpus; tests needing it are marked `corpus`.

    Without a cache the test is skipped with the reason, unless
    FESTE_REQUIRE_CORPUS=1 (CI sets it after `feste corpus`), when it fails.
    """
    try:
        from reference.corpus import cached_corpus_path
    except ImportError as exc:
        path, message = None, f"no corpus support ({exc})"
    else:
        path = cached_corpus_path()
        message = "Shakespeare corpus not cached: run `feste corpus` first"
    if path is None or not path.exists():
        if os.environ.get(REQUIRE_CORPUS_ENV) == "1":
            pytest.fail(message + f" ({REQUIRE_CORPUS_ENV}=1)")
        pytest.skip(message)
    return path.read_bytes()


def signature_of(obj) -> str:
    """The call signature as written, without annotations (what the contract compares)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "<no signature>"
    return str(sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                           return_annotation=sig.empty))


def _same_default(a, b) -> bool:
    """Defaults are equal when `a == b` holds (1 and 1.0, np.float32 and
    np.dtype("float32")), except that a bool only equals a bool."""
    if a is b:
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # an object whose == does not give one truth value
        return False


def signature_mismatch(got, want) -> str | None:
    """Why the call signature of `got` differs from the contract's `want`, or
    None. Compared, in order (README "The contract"): the parameter names,
    their kinds (positional-only, positional-or-keyword, *args, keyword-only,
    **kwargs) and their defaults (present or absent, and equal by `==`, a
    bool only to a bool). Annotations are not compared: they change no call."""
    try:
        g, w = inspect.signature(got).parameters, inspect.signature(want).parameters
    except (TypeError, ValueError) as exc:
        return f"has no inspectable signature ({exc})"
    if list(g) != list(w):
        return f"takes parameters ({', '.join(g)}), the contract ({', '.join(w)})"
    for name, wp in w.items():
        gp = g[name]
        if gp.kind != wp.kind:
            return f"parameter {name!r} is {gp.kind.description}, the contract's is {wp.kind.description}"
        if (gp.default is gp.empty) != (wp.default is wp.empty):
            has = "has no default" if gp.default is gp.empty else f"has default {gp.default!r}"
            want_text = "none" if wp.default is wp.empty else repr(wp.default)
            return f"parameter {name!r} {has}, the contract's default is {want_text}"
        if wp.default is not wp.empty and not _same_default(gp.default, wp.default):
            return f"parameter {name!r} has default {gp.default!r}, the contract's is {wp.default!r}"
    return None
