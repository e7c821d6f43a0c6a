"""The vector runner (SPEC §vector-runner): one test per case of a vector set, run by an
adapter over the protocol.

    pytest --pyargs conformance.vectors --vectors DIR --adapter "CMD ..."

Without --vectors and --adapter (a plain `pytest` of the repository) the one
placeholder test is skipped with that reason. Comparisons come from each
case (compare.py); nothing here knows a tolerance.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import ERROR_CODES
from . import safetensors_io as st
from .compare import check_file, check_tensor
from .protocol import AdapterFailed
from .runner import adapter_for, mismatch, vector_cases, vector_options


def pytest_generate_tests(metafunc):
    if "vector_case" not in metafunc.fixturenames:
        return
    opts = vector_options(metafunc.config)
    if opts is None:
        metafunc.parametrize("vector_case", [None], ids=["no-vectors"])
        return
    root, entries = vector_cases(opts.vectors)
    metafunc.parametrize("vector_case", [(root, e) for e in entries], ids=[e["path"] for e in entries])


def test_case(vector_case, request, tmp_path):
    if vector_case is None:
        pytest.skip("no vector set and adapter given: run with --vectors DIR --adapter \"CMD\" (SPEC §vector-runner)")
    root, entry = vector_case
    config = request.config
    case_dir = root / entry["path"]
    case = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
    request.node.user_properties.append(("vector_component", case["component"]))
    adapter = adapter_for(config)
    op = f"{case['component']}/{case['operation']}"
    impl = adapter.hello["implementation"]["name"]
    context = {"impl": impl, "case": case["path"]}
    if op not in adapter.hello["operations"]:
        pytest.skip(f"{impl} does not serve {op}")
    out = tmp_path / "out"
    out.mkdir()
    try:
        reply = adapter.request({"type": "run", "case": str(case_dir.resolve()), "out": str(out.resolve())},
                                vector_options(config).timeout)
    except AdapterFailed as exc:
        request.node.user_properties.append(("vector_ran", True))
        tail = adapter.stderr_tail()
        pytest.fail(f"{case['path']}: {exc}; the adapter is restarted for the next case (a crash, a timeout or a "
                    "broken reply is never an expected failure)"
                    + (f"\nadapter stderr (last lines):\n{tail}" if tail else ""), pytrace=False)
    kind = reply.get("type")
    if kind == "skipped":
        pytest.skip(f"{impl} skipped it: {reply.get('reason', '(no reason given)')}")
    request.node.user_properties.append(("vector_ran", True))
    expect = case["expect"]
    message = f" ({reply['message']})" if reply.get("message") else ""
    if kind == "error" and reply.get("code") not in ERROR_CODES:
        # not a refusal SPEC knows (an adapter's own failure code, a typo): never an expected error, and never
        # one of the answers an `acceptable` case allows
        wanted = f"error {expect['error']}" if "error" in expect else "outputs"
        mismatch(f"{case['path']}: the adapter replied error code {reply.get('code')!r}{message}, which is not "
                 f"one of SPEC §error-codes' codes; the case expects {wanted}")
    if "error" in expect:
        if kind == "ok":
            mismatch(f"{case['path']}: expected error {expect['error']}, the adapter replied ok (accepted the input)")
        if kind != "error":
            pytest.fail(f"{case['path']}: unexpected reply {reply!r}", pytrace=False)
        if reply.get("code") != expect["error"]:
            mismatch(f"{case['path']}: expected error {expect['error']}, got {reply.get('code')}{message}")
        return
    if kind == "error":
        if case["verdict"] == "acceptable":
            return  # SPEC leaves it open (the case's flags say how); refusing is one of the allowed answers
        mismatch(f"{case['path']}: the adapter replied error {reply.get('code')}{message}; the case expects outputs")
    if kind != "ok":
        pytest.fail(f"{case['path']}: unexpected reply {reply!r}", pytrace=False)
    try:
        check_outputs(case, case_dir, out, context)
    except AssertionError as exc:
        mismatch(str(exc))  # the message is the whole story (SPEC §vector-runner)


def check_outputs(case: dict, case_dir: Path, out: Path, context: dict) -> None:
    expected = {k[4:]: v for k, v in st.read(case_dir / "data.safetensors").items() if k.startswith("out.")}
    outputs = case["expect"]["outputs"]
    got = {}
    if outputs:
        path = out / "outputs.safetensors"
        if not path.exists():
            raise AssertionError(f"{case['path']}: the adapter replied ok but wrote no outputs.safetensors")
        got = {k[4:]: v for k, v in st.read(path).items() if k.startswith("out.")}
    errors = []
    for name, spec in outputs.items():
        try:
            check_tensor(name, got.get(name), expected[name], spec, expected, context)
        except AssertionError as exc:
            errors.append(str(exc))
    for name in case["expect"]["files"]:
        path = out / name
        try:
            check_file(name, path.read_bytes() if path.is_file() else None,
                       (case_dir / f"out.{name}").read_bytes(), context)
        except AssertionError as exc:
            errors.append(str(exc))
    if errors:
        raise AssertionError(f"{case['path']}: {len(errors)} of {len(outputs) + len(case['expect']['files'])} "
                             "outputs differ:\n" + "\n".join(errors))
