"""fast's own tests: its kernels, compilation policy and workspaces (SPEC §fast).

They import `fast` directly. They run in the README's `pytest` (with no
--impl, or with --impl naming fast), and are skipped when --impl judges other
implementations only (`pytest --impl reference`): the suite that judges any
implementation is conformance/, which `pytest --pyargs conformance --impl
my.module` runs without these.
"""
import pytest

from conformance.selection import selected_names


@pytest.fixture(autouse=True)
def _fast_under_test(request):
    if "fast" not in selected_names(request.config):
        pytest.skip("fast is not among the implementations under test (--impl): its own tests run with it")
