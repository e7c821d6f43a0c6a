"""The implementation contract (SPEC section 1): every name of
`reference.__all__`, with the same signature. A missing or mis-signed name
fails here once, citing the SPEC section that specifies it; tests that need
the name are skipped with the same reason (the `impl` fixture does that)
instead of failing in a cascade."""
import inspect

import pytest

import reference
from conformance.plugin import MODULE_SECTIONS, NAME_SECTIONS, signature_of, spec_section

CONTRACT = list(reference.__all__)


def test_contract_is_nonempty_and_unique():
    assert CONTRACT, "reference.__all__ is empty"
    assert len(CONTRACT) == len(set(CONTRACT)), "reference.__all__ lists a name twice"
    for name in CONTRACT:
        assert hasattr(reference, name), f"reference.__all__ names {name} but reference does not define it"


def test_every_contract_name_has_a_spec_section():
    """Each name maps to the SPEC section of the reference module defining it
    (conformance.plugin.MODULE_SECTIONS); a new module must be added there, so
    that failure messages keep citing the right section."""
    for name in CONTRACT:
        if name in NAME_SECTIONS:
            continue
        module = getattr(getattr(reference, name), "__module__", None)
        assert module is not None, f"{name} has no __module__: add it to plugin.NAME_SECTIONS"
        short = module.rsplit(".", 1)[-1]
        assert short in MODULE_SECTIONS, (
            f"{name} is defined in {module}, which has no SPEC section in plugin.MODULE_SECTIONS")
    assert spec_section("Config") == "SPEC section 2"
    assert spec_section("PRESETS") == "SPEC section 2"


@pytest.mark.parametrize("name", CONTRACT)
def test_exports_name(impl, name):
    if not impl.has(name):
        pytest.fail(f"{impl.name} is missing {name} ({spec_section(name)})", pytrace=False)
    want = getattr(reference, name)
    got = getattr(impl.module, name)
    if callable(want) and not inspect.isclass(want):
        if signature_of(got) != signature_of(want):
            pytest.fail(f"{impl.name}.{name} has signature {signature_of(got)}, the contract "
                        f"says {signature_of(want)} ({spec_section(name)})", pytrace=False)
    elif inspect.isclass(want) and not inspect.isclass(got):
        pytest.fail(f"{impl.name}.{name} is a {type(got).__name__}, the contract says a class "
                    f"({spec_section(name)})", pytrace=False)
