"""pytest plugin: choose the implementations the conformance suite runs against.

Registered through the `pytest11` entry point (pyproject.toml), so both
`pytest` in the repository and `pytest --pyargs conformance --impl my.module`
from anywhere work.

Options (docs/CHECKING_AN_IMPLEMENTATION.md):
  --impl NAME               repeatable; `reference`, `fast` or a dotted module
                            path. Fallback: $FESTE_IMPL (comma-separated).
                            Default: every built-in implementation that imports.
  --expected-failures FILE  test-id glob patterns an implementation knowingly
                            fails; each matching test becomes xfail(strict=True).
                            Fallback: $FESTE_EXPECTED_FAILURES.
  --vectors DIR --adapter CMD  run the language-neutral vectors on a program
                            speaking the adapter protocol (SPEC §vector-runner).

Test ids carry the implementation name (`test_x[fast-...]`). The report
header prints each implementation's path and version, numpy and numba
versions, thread counts and the relevant environment variables.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conformance.expected_failures import ExpectedFailure, expected_failure_files, parse_expected_failures
from conformance.fixtures import corpus_bytes, ref  # noqa: F401  (fixtures registered with the plugin)
from conformance.profiles import hypothesis_profile, register_profiles
from conformance.reporting import header_lines, write_summary
from conformance.vectors import runner as vector_runner
from conformance.selection import (
    BUILTIN, Implementation, invocation_dir_on_path, load_module, requested_names, implementations,
)
from conformance.workers import isolate_numba_cache, share_cores_among_workers, share_numba_threads_among_workers

# the BLAS thread limit of a pytest-xdist worker (conformance/workers.py), kept for the session
BLAS_LIMITER = pytest.StashKey[object]()


def pytest_addoption(parser):
    group = parser.getgroup("feste", "Feste conformance suite")
    group.addoption(
        "--impl",
        action="append",
        default=None,
        metavar="NAME",
        help="implementation to test: 'reference', 'fast' or a dotted module path "
        "(repeatable; fallback $FESTE_IMPL, comma-separated; default: every built-in that imports)",
    )
    group.addoption(
        "--expected-failures",
        action="append",
        default=None,
        metavar="FILE",
        help="file of test-id glob patterns (one per line, '# reason' comments) that the "
        "implementation knowingly fails; matching tests become xfail(strict=True) "
        "(repeatable; fallback $FESTE_EXPECTED_FAILURES)",
    )
    vector_runner.add_options(group)  # --vectors, --adapter, --vectors-timeout (SPEC §vector-runner)


# --- configuration --------------------------------------------------------------
def pytest_configure(config):
    isolate_numba_cache(config)  # first: before any implementation imports Numba
    config.stash[BLAS_LIMITER] = share_cores_among_workers()  # one BLAS thread pool per worker's share of the cores
    config.addinivalue_line("markers", "slow: long-running tests (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "corpus: needs the Shakespeare corpus (`feste corpus`)")
    requested = requested_names(config)
    impls: list[Implementation] = []
    errors: list[str] = []
    if requested:
        invocation_dir_on_path(config)
        for name in requested:
            try:
                impls.append(Implementation(name, load_module(name)))
            except Exception as exc:  # a user-named module must import: say why it did not
                raise pytest.UsageError(f"--impl {name}: cannot import module {name!r}: "
                                        f"{type(exc).__name__}: {exc}") from exc
    elif vector_runner.vector_options(config) is not None:
        pass  # a vector run judges the adapter's implementation: no built-in module is imported
    else:
        for name in BUILTIN:
            try:
                module = load_module(name)
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
    for path in expected_failure_files(config):
        try:
            expected += parse_expected_failures(path)
        except FileNotFoundError:
            raise pytest.UsageError(f"--expected-failures {path}: no such file") from None
        except ValueError as exc:
            raise pytest.UsageError(f"--expected-failures: {exc}") from None
    config._feste_expected = expected
    register_profiles()


# set once Numba is loaded (conformance/workers.py: the worker's share of Numba's threads)
NUMBA_SHARED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before each test until Numba is loaded: the worker's share of Numba's threads."""
    if not item.config.stash.get(NUMBA_SHARED, False):
        item.config.stash[NUMBA_SHARED] = share_numba_threads_among_workers()


def pytest_report_header(config):
    return header_lines(config, hypothesis_profile()) + vector_runner.header_lines(config)


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
    here = Path(__file__).resolve().parent
    if Path(module_path).resolve().parent not in (here, here / "vectors"):
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
                    strict=True, reason=f"expected failure ({entry.source}): {entry.reason}",
                    raises=vector_runner.expected_failure_raises(item)))
                break


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under pytest-xdist the workers collect, not this process (which writes
    the summary): match the expected-failure patterns against the test ids a
    worker collected, so "matched no collected test" stays true."""
    for nodeid in ids:
        filename = Path(nodeid.partition("::")[0]).name
        for entry in getattr(node.config, "_feste_expected", []):
            if entry.matches(nodeid, filename):
                if nodeid not in entry.matched:
                    entry.matched.append(nodeid)
                break


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    write_summary(terminalreporter, config)
    rows = vector_runner.summary_lines(terminalreporter)
    if rows:
        terminalreporter.section("feste vectors: cases the adapter really ran, per component")
        for line in rows:
            terminalreporter.write_line(line)
