"""Commands over the suites and the library: `python -m benchmarks.tools.NAME --help`."""


def split_pytest_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """A tool's own arguments, and those after `--` that it passes to pytest."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []
