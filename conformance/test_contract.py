"""The implementation contract (SPEC section 1): every name of
`reference.__all__`, with the same signature. A missing or mis-signed name
fails here once; tests that need it are skipped with the reason instead of
failing in a cascade."""
import inspect

import pytest

import reference
from conformance.plugin import signature_of

CONTRACT = list(reference.__all__)


def test_contract_is_nonempty_and_unique():
    assert CONTRACT, "reference.__all__ is empty"
    assert len(CONTRACT) == len(set(CONTRACT)), "reference.__all__ lists a name twice"
    for name in CONTRACT:
        assert hasattr(reference, name), f"reference.__all__ names {name} but reference does not define it"


@pytest.mark.parametrize("name", CONTRACT)
def test_exports_name(impl, name):
    if not impl.has(name):
        pytest.fail(f"{impl.name} is missing {name} (SPEC section 1)")
    want = getattr(reference, name)
    got = getattr(impl.module, name)
    if callable(want) and not inspect.isclass(want):
        assert signature_of(got) == signature_of(want), (
            f"{impl.name}.{name} has signature {signature_of(got)}, "
            f"the contract says {signature_of(want)} (SPEC section 1)"
        )
