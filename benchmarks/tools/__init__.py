"""Commands over the suites and the library: `python -m benchmarks.tools.NAME --help`."""
