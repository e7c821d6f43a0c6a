"""Which implementations the suite judges: `--impl` (or $FESTE_IMPL), the
built-ins that import, and the proxy tests talk to (`Implementation`: a
missing contract name skips the test that needs it, with the SPEC section,
instead of failing in a cascade)."""
from __future__ import annotations

import importlib
import os

import pytest

BUILTIN = ("reference", "fast")
ENV_VAR = "FESTE_IMPL"


def contract_names() -> frozenset[str]:
    """The public names every implementation exports (reference/contract.py, the one table)."""
    from reference.contract import NAMES

    return frozenset(NAMES)


def spec_section(name: str) -> str:
    """The SPEC section that specifies a contract name, e.g. 'SPEC §forward Forward' (reference/contract.py)."""
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


def requested_names(config) -> list[str]:
    names = config.getoption("--impl")
    if not names:
        env = os.environ.get(ENV_VAR, "").strip()
        names = [n.strip() for n in env.split(",") if n.strip()] if env else []
    unique: list[str] = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique


def load_module(name: str):
    return importlib.import_module(name)


def invocation_dir_on_path(config) -> None:
    """Put the directory pytest was started from first on sys.path, as
    `python -m pytest` does and plain `pytest` does not, so that
    `pytest --pyargs conformance --impl my_gpt` run next to my_gpt.py imports
    it (docs/CHECKING_AN_IMPLEMENTATION.md "Running the suite on it")."""
    import sys

    here = str(config.invocation_params.dir)
    if not any(os.path.abspath(p or os.curdir) == here for p in sys.path):
        sys.path.insert(0, here)


def implementations(config) -> list[Implementation]:
    return list(getattr(config, "_feste_impls", []))


def selected_names(config) -> list[str]:
    """Names of the implementations under test (what --impl chose)."""
    return [impl.name for impl in implementations(config)]
