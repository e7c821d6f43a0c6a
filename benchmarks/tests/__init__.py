"""Tests of the benchmarks' library and tools (the suites themselves are smoke-run with --benchmark-disable)."""
