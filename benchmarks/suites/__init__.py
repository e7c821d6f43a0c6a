"""pytest-benchmark suites (SPEC §performance); benchmarks/conftest.py holds their fixtures and options."""
