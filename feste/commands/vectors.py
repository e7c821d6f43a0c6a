"""`feste vectors build DIR`: write the language-neutral vector set (SPEC §vectors),
the same as `python -m conformance.vectors build DIR`."""
from __future__ import annotations

from ..common import one_line_errors


def run(args) -> int:
    from conformance.vectors.__main__ import run as build_run

    return build_run(args)


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser(
        "vectors", help="build or check the language-neutral conformance vectors",
        description="build: generate the conformance vectors from reference into DIR/<spec version>/: one "
                    "directory per case with case.json and data.safetensors, plus index.json and SHA256SUMS "
                    "(SPEC §vectors). check: verify a set against its SHA256SUMS and JSON Schema. "
                    "Run them on any implementation with `pytest --pyargs conformance.vectors --vectors DIR "
                    "--adapter CMD`."))
    from conformance.vectors.__main__ import add_arguments

    add_arguments(p)
    p.set_defaults(func=run)
