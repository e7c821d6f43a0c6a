"""pytest plugin: choose the implementations the conformance suite runs against.

Registered through the `pytest11` entry point, so both `pytest` in the
repository and `pytest --pyargs conformance --impl my.module` from anywhere
work. `--impl` is repeatable; `FESTE_IMPL` (comma-separated) is the fallback;
the default is every built-in implementation that imports.
"""
from __future__ import annotations

import importlib
import inspect
import os
import platform

import pytest

BUILTIN = ("reference", "fast")
ENV_VAR = "FESTE_IMPL"
REQUIRE_CORPUS_ENV = "FESTE_REQUIRE_CORPUS"


class MissingName(AttributeError):
    pass


class Implementation:
    """An implementation under test: a module exposing `reference.__all__`.

    Attribute access forwards to the module; a name the module does not export
    skips the test that needs it (the contract test fails once for it instead).
    """

    def __init__(self, name: str, module):
        self.name = name
        self.module = module

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        try:
            return getattr(self.module, attr)
        except AttributeError:
            pytest.skip(f"{self.name} is missing {attr} (see test_contract)")

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


def _requested(config) -> list[str]:
    names = config.getoption("--impl")
    if not names:
        env = os.environ.get(ENV_VAR, "").strip()
        names = [n.strip() for n in env.split(",") if n.strip()] if env else []
    return names


def _load(name: str):
    return importlib.import_module(name)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running tests (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "corpus: needs the Shakespeare corpus (`feste corpus`)")
    requested = _requested(config)
    impls: list[Implementation] = []
    errors: list[str] = []
    if requested:
        for name in requested:
            try:
                impls.append(Implementation(name, _load(name)))
            except Exception as exc:  # a user-named module must import: say why it did not
                raise pytest.UsageError(f"--impl {name}: cannot import module {name!r}: {exc}") from exc
    else:
        for name in BUILTIN:
            try:
                impls.append(Implementation(name, _load(name)))
            except ImportError as exc:
                errors.append(f"{name}: {exc}")
    config._feste_impls = impls
    config._feste_import_errors = errors
    _register_hypothesis_profiles()


def _register_hypothesis_profiles():
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    settings.register_profile("dev", deadline=None, max_examples=25,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", deadline=None, max_examples=60, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def implementations(config) -> list[Implementation]:
    return list(getattr(config, "_feste_impls", []))


def pytest_report_header(config):
    import numpy

    lines = []
    for impl in implementations(config):
        lines.append(f"feste impl {impl.name}: version {impl.version}, {impl.path}")
    for err in getattr(config, "_feste_import_errors", []):
        lines.append(f"feste impl not available: {err}")
    try:
        import numba

        numba_info = f"numba {numba.__version__}, threads {numba.config.NUMBA_NUM_THREADS}"
    except ImportError:
        numba_info = "numba not installed"
    lines.append(f"numpy {numpy.__version__}, {numba_info}, cpus {os.cpu_count()}, python {platform.python_version()}")
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("FESTE_", "NUMBA_", "OMP_", "OPENBLAS_", "MKL_", "HYPOTHESIS_"))}
    if env:
        lines.append("env: " + " ".join(f"{k}={v}" for k, v in sorted(env.items())))
    return lines


def pytest_generate_tests(metafunc):
    if "impl" in metafunc.fixturenames:
        impls = implementations(metafunc.config)
        if not impls:
            raise pytest.UsageError("no implementation could be imported; name one with --impl")
        metafunc.parametrize("impl", impls, ids=[i.name for i in impls], scope="session")


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
    from reference.corpus import cached_corpus_path

    path = cached_corpus_path()
    if path is None or not path.exists():
        message = "Shakespeare corpus not cached: run `feste corpus` first"
        if os.environ.get(REQUIRE_CORPUS_ENV) == "1":
            pytest.fail(message + f" ({REQUIRE_CORPUS_ENV}=1)")
        pytest.skip(message)
    return path.read_bytes()


def signature_of(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "<no signature>"
