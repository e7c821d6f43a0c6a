"""The runner's session state (SPEC §vector-runner): options, the set's case list, the
one adapter process of the session, and the per-component summary."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import INDEX_FORMAT, SPEC_VERSION
from .protocol import Adapter, AdapterFailed

VECTORS_ENV = "FESTE_VECTORS"
ADAPTER_ENV = "FESTE_ADAPTER"
DEFAULT_TIMEOUT = 300.0


class CaseMismatch(pytest.fail.Exception):
    """The adapter answered a case and the answer is wrong (outputs, an error code, ok where an error is
    expected): the only failure an expected-failures line excuses. A crash, a timeout or a broken reply is
    pytest.fail's plain failure, never excused, so a listed reason cannot hide one (SPEC §vector-runner)."""


def mismatch(message: str):
    """Fail the running case with CaseMismatch; the message is the whole report (no traceback)."""
    __tracebackhide__ = True
    raise CaseMismatch(message, pytrace=False)


def expected_failure_raises(item):
    """The `raises` of an expected-failure xfail on `item`: CaseMismatch for a vector case, else None (any failure)."""
    return CaseMismatch if getattr(item, "originalname", None) == "test_case" and \
        item.module.__name__.endswith("vectors.test_vectors") else None


@dataclass
class VectorOptions:
    vectors: str
    adapter: str
    timeout: float


def add_options(group) -> None:
    group.addoption("--vectors", default=None, metavar="DIR",
                    help="a vector set built by `python -m conformance.vectors build DIR` (DIR or "
                         f"DIR/<spec version>; fallback ${VECTORS_ENV}); run with --adapter (SPEC §vector-runner)")
    group.addoption("--adapter", default=None, metavar="CMD",
                    help="command line of an adapter speaking SPEC §adapter-protocol's protocol, e.g. "
                         f"\"python -m conformance.vectors.adapter --impl fast\" (fallback ${ADAPTER_ENV})")
    group.addoption("--vectors-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                    help=f"per-case timeout; the adapter is restarted after one (default {DEFAULT_TIMEOUT:g})")


def vector_options(config) -> VectorOptions | None:
    vectors = config.getoption("--vectors", None) or os.environ.get(VECTORS_ENV) or None
    adapter = config.getoption("--adapter", None) or os.environ.get(ADAPTER_ENV) or None
    if vectors is None and adapter is None:
        return None
    if vectors is None or adapter is None:
        raise pytest.UsageError("--vectors and --adapter go together (SPEC §vector-runner): "
                                f"got --vectors {vectors!r}, --adapter {adapter!r}")
    return VectorOptions(vectors, adapter, config.getoption("--vectors-timeout", DEFAULT_TIMEOUT))


def version_dir(path: str) -> Path:
    """DIR itself when it holds index.json, else DIR/<SPEC_VERSION>; a UsageError naming what is there."""
    root = Path(path)
    if (root / "index.json").is_file():
        return root
    if (root / SPEC_VERSION / "index.json").is_file():
        return root / SPEC_VERSION
    present = sorted(p.name for p in root.iterdir() if (p / "index.json").is_file()) if root.is_dir() else []
    raise pytest.UsageError(
        f"--vectors {path}: no index.json in it or in {SPEC_VERSION}/ (this suite's spec version)"
        + (f"; it holds versions {', '.join(present)}" if present else "")
        + "; build one with `python -m conformance.vectors build DIR`")


def vector_cases(path: str) -> tuple[Path, list[dict]]:
    root = version_dir(path)
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--vectors {path}: cannot read index.json: {exc}") from None
    if index.get("format") != INDEX_FORMAT:
        raise pytest.UsageError(f"--vectors {path}: index.json format {index.get('format')!r}, "
                                f"this runner reads {INDEX_FORMAT}")
    return root, index["cases"]


def adapter_for(config) -> Adapter:
    """The session's adapter, started on first use (a UsageError if it cannot start at all)."""
    adapter = getattr(config, "_feste_adapter", None)
    if adapter is None:
        adapter = Adapter(vector_options(config).adapter)
        try:
            adapter.start()
        except AdapterFailed as exc:
            raise pytest.UsageError(f"--adapter: {exc}\n{adapter.stderr_tail()}") from None
        config._feste_adapter = adapter
        config.add_cleanup(lambda: adapter.stop(graceful=True))
    return adapter


def header_lines(config) -> list[str]:
    opts = vector_options(config)
    if opts is None:
        return []
    adapter = adapter_for(config)
    hello = adapter.hello
    impl = hello["implementation"]
    root = version_dir(opts.vectors)
    return [f"feste vectors: {root} (spec version {root.name})",
            f"feste adapter: {impl['name']} {impl.get('version', '')} via {opts.adapter!r}, "
            f"{len(hello['operations'])} operations, timeout {opts.timeout:g} s"
            + (f", {impl['path']}" if impl.get("path") else "")]


def summary_lines(terminalreporter) -> list[str]:
    """Per component: cases the adapter really ran (passed, failed, expected failures) and those it did not."""
    table: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(outcome, []):
            props = dict(getattr(report, "user_properties", []) or [])
            if "vector_component" not in props or report.when not in ("call", "setup"):
                continue
            if report.when == "setup" and outcome != "skipped":
                continue
            row = table.setdefault(props["vector_component"], {})
            key = outcome if props.get("vector_ran") or outcome != "skipped" else "not run"
            row[key] = row.get(key, 0) + 1
    lines = []
    for comp in sorted(table):
        row = table[comp]
        ran = sum(v for k, v in row.items() if k != "not run")
        parts = ", ".join(f"{k} {v}" for k, v in sorted(row.items()))
        lines.append(f"{comp:<12} ran {ran:>4} of {ran + row.get('not run', 0):>4}  ({parts})")
    adapter = getattr(terminalreporter.config, "_feste_adapter", None)  # this process's (not xdist's workers')
    if lines and adapter is not None:
        lines.append(f"adapter processes started: {adapter.starts} (one serves every case; each crash, timeout or "
                     "broken reply starts another)")
    return lines
