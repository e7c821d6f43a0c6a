"""The implementation contract (SPEC §contract): every name of
`reference.__all__`, with the same call signature (parameter names, kinds
and defaults; annotations are not compared). A missing or mis-signed name
fails here once, citing the SPEC section that specifies it; tests that need
the name are skipped with the same reason (the `impl` fixture does that)
instead of failing in a cascade."""
import importlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import reference
from conformance.selection import spec_section
from conformance.signatures import signature_mismatch, signature_of
from reference.contract import CONTRACT as TABLE, exports

CONTRACT = list(reference.__all__)


def test_contract_is_nonempty_and_unique():
    assert CONTRACT, "reference.__all__ is empty"
    assert len(CONTRACT) == len(set(CONTRACT)), "reference.__all__ lists a name twice"
    for name in CONTRACT:
        assert hasattr(reference, name), f"reference.__all__ names {name} but reference does not define it"


def spec_text() -> str:
    return (Path(reference.__file__).resolve().parents[1] / "SPEC.md").read_text(encoding="utf-8")


def test_every_contract_name_cites_a_spec_anchor_that_exists():
    """reference/contract.py names each export's section by its SPEC anchor: a
    removed anchor fails here instead of leaving messages that cite a section
    that is not there."""
    anchors = set(re.findall(r'^<a id="([a-z0-9-]+)"></a>$', spec_text(), re.M))
    for row in TABLE:
        assert row.section in anchors, f"{row.name} cites SPEC §{row.section}, which SPEC.md has no anchor for"
    assert spec_section("Config") == "SPEC §config"
    assert spec_section("adamw_step") == "SPEC §optimiser"


def test_the_table_says_what_each_export_is():
    """kind 'class' is a class, 'function' a plain callable, 'value' neither."""
    for row in TABLE:
        obj = getattr(reference, row.name)
        kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "value"
        assert kind == row.kind, f"reference/contract.py says {row.name} is a {row.kind}; reference's is a {kind}"


def test_the_table_says_where_each_export_lives():
    """Each row's module holds the name in reference (fast and torch_impl build their
    exports from that column: contract.exports), and a module the table does not name is refused."""
    for row in TABLE:
        module = importlib.import_module(f"reference.{row.module}")
        assert getattr(module, row.name, None) is getattr(reference, row.name), (
            f"reference/contract.py says {row.name} lives in reference.{row.module}; it does not")
    with pytest.raises(ValueError, match="kernels are not modules of the contract"):
        exports("fast", own=("layers", "kernels"))


def test_spec_section_1_lists_exactly_the_contract():
    """SPEC §contract's table (the names in backticks in its second column,
    call signatures cut at the parenthesis) is the same set as the contract table."""
    text = spec_text()
    start = text.index("## 1. The implementation contract")
    end = min(i for i in (text.find("\n### ", start), text.index("\n## 2.")) if i >= 0)  # 1.1 is the errors
    part = text[start:end]
    listed = set()
    for line in part.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or cells[1].strip() in ("group", "---"):
            continue
        for code in re.findall(r"`([^`]+)`", cells[2]):
            listed.add(re.split(r"[(.\s]", code, maxsplit=1)[0])
    assert listed == set(CONTRACT), (f"SPEC §contract lists but the contract lacks {sorted(listed - set(CONTRACT))}; "
                                     f"the contract has but SPEC §contract lacks {sorted(set(CONTRACT) - listed)}")


@pytest.mark.parametrize("name", CONTRACT)
def test_exports_name(impl, name):
    if not impl.has(name):
        pytest.fail(f"{impl.name} is missing {name} ({spec_section(name)})", pytrace=False)
    want = getattr(reference, name)
    got = getattr(impl.module, name)
    if callable(want) and not inspect.isclass(want):
        why = signature_mismatch(got, want)
        if why is not None:
            pytest.fail(f"{impl.name}.{name} has signature {signature_of(got)}, the contract "
                        f"says {signature_of(want)}: {why} ({spec_section(name)})", pytrace=False)
    elif inspect.isclass(want) and not inspect.isclass(got):
        pytest.fail(f"{impl.name}.{name} is a {type(got).__name__}, the contract says a class "
                    f"({spec_section(name)})", pytrace=False)


# --- what "the same call signature" means (docs/CHECKING_AN_IMPLEMENTATION.md "The contract") ---
def _clip(grads: "reference.Params", max_norm: float = 1.0) -> float:  # the contract's shape, annotated
    raise NotImplementedError


@pytest.mark.parametrize("source", [
    "def f(grads, max_norm=1.0): pass",  # unannotated (once refused)
    "def f(grads: object, max_norm: int = 1) -> None: pass",  # other annotations; 1 == 1.0
    "f = lambda grads, max_norm=1.0: None",  # any callable, not only a def
])
def test_signatures_compare_names_kinds_and_defaults_not_annotations(source):
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - a test fixture: a function written the way a user would
    assert signature_mismatch(namespace["f"], _clip) is None


@pytest.mark.parametrize("source, why", [
    ("def f(g, max_norm=1.0): pass", "takes parameters (g, max_norm)"),
    ("def f(max_norm=1.0, grads=None): pass", "takes parameters (max_norm, grads)"),
    ("def f(grads, max_norm=1.0, extra=0): pass", "takes parameters (grads, max_norm, extra)"),
    ("def f(grads, max_norm=2.0): pass", "default 2.0, the contract's is 1.0"),
    ("def f(grads, max_norm): pass", "'max_norm' has no default"),
    ("def f(grads=None, max_norm=1.0): pass", "'grads' has default None, the contract's default is none"),
    ("def f(grads, *, max_norm=1.0): pass", "'max_norm' is keyword-only"),
    ("def f(grads, /, max_norm=1.0): pass", "'grads' is positional-only"),
    ("def f(grads, max_norm=True): pass", "default True"),
])
def test_signature_differences_are_named(source, why):
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102
    got = signature_mismatch(namespace["f"], _clip)
    assert got is not None and why in got, got


def test_equal_defaults_of_other_types_match():
    """np.float32 and np.dtype("float32") compare equal, as do 0 and 0.0: the call behaves the same."""
    def want(config, seed=0, dtype=np.float32):
        pass

    def got(config, seed=0.0, dtype=np.dtype("float32")):
        pass

    assert signature_mismatch(got, want) is None
    assert signature_of(_clip) == "(grads, max_norm=1.0)"
