"""pytest-benchmark suites (SPEC section 9); benchmarks/conftest.py holds their fixtures and options."""
