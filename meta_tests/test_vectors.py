"""The vector machinery itself (SPEC §vectors): the set is deterministic and
valid against its schema, our safetensors files are read by the real library,
the comparisons fail on wrong outputs, and the runner reports crashes,
timeouts, wrong codes, skips and unsupported operations as SPEC §adapter-protocol and §vector-runner say.
(Whether implementations pass the vectors is the runner's job, in CI.)"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conformance.expected_failures import parse_expected_failures
from conformance.fixtures import run_feste as feste_cli
from conformance.vectors import CASE_SCHEMA, ERROR_CODES, PROTOCOL_SCHEMA, SPEC_VERSION, safetensors_io as st
from conformance.vectors.adapter import OPERATIONS
from conformance.vectors.build import build
from conformance.vectors.compare import check_tensor

ROOT = Path(__file__).resolve().parent.parent  # the repository
SMALL = ["config", "data", "logger", "optim"]  # a set that builds in a second and covers files, tensors, errors


def jsonschema_or_skip():
    if os.environ.get("CI"):
        import jsonschema  # CI installs the test extra: a missing validator is a failure there
    return pytest.importorskip("jsonschema", reason="jsonschema (the test extra) validates case.json")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("vectors")
    summary = build(root, components=SMALL)
    return summary["dir"]


def test_two_builds_give_identical_bytes_and_sums(tmp_path, small_set):
    again = build(tmp_path, components=SMALL)["dir"]
    files = sorted(p.relative_to(small_set) for p in small_set.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (small_set / rel).read_bytes() == (again / rel).read_bytes(), rel
    sums = (small_set / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(files) - 1  # every file but SHA256SUMS itself
    for line in sums:
        digest, rel = line.split("  ")
        assert hashlib.sha256((small_set / rel).read_bytes()).hexdigest() == digest, rel


def test_every_case_json_matches_the_schema_and_the_index(small_set):
    jsonschema = jsonschema_or_skip()
    validator = jsonschema.Draft202012Validator(json.loads(CASE_SCHEMA.read_text()))
    index = json.loads((small_set / "index.json").read_text())
    assert index["spec_version"] == SPEC_VERSION == small_set.name
    for entry in index["cases"]:
        case = json.loads((small_set / entry["path"] / "case.json").read_text())
        errors = [e.message for e in validator.iter_errors(case)]
        assert not errors, (entry["path"], errors)
        assert case["path"] == entry["path"] and case["spec_version"] == SPEC_VERSION
        tensors = st.read(small_set / entry["path"] / "data.safetensors")
        assert sorted(k[3:] for k in tensors if k.startswith("in.")) == case["inputs"]
        if "outputs" in case["expect"]:
            for name, spec in case["expect"]["outputs"].items():
                want = tensors[f"out.{name}"]
                assert st.dtype_name(want.dtype) == spec["dtype"] and list(want.shape) == spec["shape"]


def test_the_schema_refuses_a_literal_tolerance_without_its_name():
    jsonschema = jsonschema_or_skip()
    validator = jsonschema.Draft202012Validator(json.loads(CASE_SCHEMA.read_text()))
    entry = {"compare": "rel", "dtype": "F64", "shape": [], "limit": 1e-5}
    assert list(validator.iter_errors({**_minimal_case(), "expect": {"outputs": {"loss": entry}, "files": {}}}))
    entry["limit_name"] = "LOSS_RTOL"
    assert not list(validator.iter_errors({**_minimal_case(), "expect": {"outputs": {"loss": entry}, "files": {}}}))


def _minimal_case() -> dict:
    return {"format": "feste-vector/1", "path": "a/b/c", "spec_version": SPEC_VERSION, "component": "a",
            "operation": "b", "args": {}, "inputs": [], "files": {}, "verdict": "valid", "flags": [],
            "optional": False, "description": "x"}


def spec_section(anchor: str) -> str:
    """SPEC.md's text from `<a id="anchor">` to the next anchor."""
    text = (ROOT / "SPEC.md").read_text(encoding="utf-8")
    start = text.index(f'<a id="{anchor}"></a>')
    end = text.find('<a id="', start + 1)
    return text[start:end if end > 0 else len(text)]


def test_spec_the_schema_and_the_runner_know_the_same_error_codes_flags_and_operations():
    """SPEC §error-codes, §flags and §operations are what an adapter author reads; the schema, the runner's
    code list and the Python adapter must say the same, in SPEC's order for the codes."""
    schema = json.loads(CASE_SCHEMA.read_text(encoding="utf-8"))["$defs"]
    codes = re.findall(r"^\| `([a-z0-9.-]+)` \|", spec_section("error-codes"), re.M)
    assert codes == list(ERROR_CODES) == schema["error_code"]["enum"]
    flags = re.findall(r"`([a-z0-9_-]+)`(?=[:,])", spec_section("flags"))
    assert sorted(flags) == sorted(schema["flag"]["enum"])
    operations = re.findall(r"^\| `([a-z]+/[a-z-]+)` \|", spec_section("operations"), re.M)
    assert operations and sorted(operations) == sorted(OPERATIONS)


def test_our_safetensors_files_are_read_by_the_safetensors_library(tmp_path):
    numpy_st = pytest.importorskip("safetensors.numpy", reason="the interop extra's safetensors checks our writer")
    tensors = {"out.b": np.arange(6, dtype=np.float32).reshape(2, 3), "in.a": np.array([1, -2], dtype=np.int64),
               "in.mask": np.array([True, False, True]), "out.s": np.float64(3.5), "in.u": np.arange(3, dtype=np.uint32),
               "in.x": np.arange(5, dtype=np.uint8)}
    path = tmp_path / "t.safetensors"
    st.write(path, tensors)
    theirs = numpy_st.load_file(str(path))
    assert sorted(theirs) == sorted(tensors)
    for name, arr in tensors.items():
        assert theirs[name].dtype == np.asarray(arr).dtype and np.array_equal(theirs[name], arr), name
    # and ours reads theirs (an adapter's outputs may come from any writer)
    numpy_st.save_file({k: np.asarray(v) for k, v in tensors.items()}, str(tmp_path / "theirs.safetensors"))
    back = st.read(tmp_path / "theirs.safetensors")
    for name, arr in tensors.items():
        assert np.array_equal(back[name], arr), name


@pytest.mark.parametrize("kind, limit, want, bad, good", [
    ("exact", None, np.array([1.0, 2.0], np.float32), np.array([1.0, np.nextafter(np.float32(2), 3)], np.float32),
     np.array([1.0, 2.0], np.float32)),
    ("ulp", 2, np.array([1.0], np.float32), np.array([1.0000004], np.float32), np.array([1.0000001], np.float32)),
    ("scaled_max", 1e-5, np.array([100.0, 0.0], np.float32), np.array([100.0, 0.002], np.float32),
     np.array([100.0, 0.0009], np.float32)),
    ("rel_norm", 1e-4, np.array([3.0, 4.0], np.float32), np.array([3.0, 4.001], np.float32),
     np.array([3.0, 4.0001], np.float32)),
    ("rel", 1e-5, np.float64(2.0), np.float64(2.0001), np.float64(2.00001)),
])
def test_each_comparison_passes_within_and_fails_beyond_its_limit(kind, limit, want, bad, good):
    spec = {"compare": kind, "dtype": st.dtype_name(np.asarray(want).dtype), "shape": list(np.shape(want))}
    if limit is not None:
        spec.update(limit=limit, limit_name="TEST")
    check_tensor("t", good, want, spec, {}, {})
    with pytest.raises(AssertionError, match="t:"):
        check_tensor("t", bad, want, spec, {}, {})
    with pytest.raises(AssertionError, match="the case asks for"):
        check_tensor("t", np.asarray(good, dtype=np.float16), want, spec, {}, {})


# --- the runner against misbehaving adapters ---------------------------------------------------------
FAKE = textwrap.dedent('''
    """A Python adapter on reference that misbehaves on purpose (tests/test_vectors.py)."""
    import json, os, sys, time
    import reference
    from conformance.vectors import adapter as A

    mode, target = sys.argv[1], sys.argv[2]
    ops = sorted(A.OPERATIONS)
    if mode == "unsupported":
        ops = [o for o in ops if o != target]
    print(json.dumps({"type": "hello", "protocol": 1, "implementation": {"name": "fake-" + mode, "version": "0"},
                      "operations": ops}), flush=True)
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["type"] == "bye":
            break
        path = json.load(open(os.path.join(msg["case"], "case.json")))["path"]
        reply = A.run_case(reference, msg["case"], msg["out"], msg["id"])
        if path == target:
            if mode == "crash":
                print("about to crash", file=sys.stderr, flush=True)
                os._exit(3)
            if mode == "hang":
                time.sleep(120)
            if mode == "garbage":
                print("not json", flush=True)
                continue
            if mode == "skip":
                reply = {"type": "skipped", "id": msg["id"], "reason": "float64 is not built here"}
            if mode == "wrong-code":
                reply["code"] = "input.invalid"
            if mode == "accept":
                reply = {"type": "ok", "id": msg["id"]}
            if mode == "refuse":
                reply = {"type": "error", "id": msg["id"], "code": "checkpoint.bad-config"}
            if mode == "unknown-code":
                reply = {"type": "error", "id": msg["id"], "code": "adapter.failed", "message": "no handler"}
            if mode == "perturb":
                row = os.path.join(msg["out"], "row.txt")
                open(row, "a").write("x")
            if mode == "perturb-tensor":
                from conformance.vectors import safetensors_io as st
                p = os.path.join(msg["out"], "outputs.safetensors")
                t = st.read(p)
                name = "out.lr" if "out.lr" in t else "out.param.token_embedding"
                t[name] = t[name].copy()
                t[name].flat[3] *= 1 + 1e-12 if name == "out.lr" else 2
                st.write(p, t)
        print(json.dumps(reply), flush=True)
''')


def run_vectors(tmp_path, small_set, mode, target, *extra, timeout=None):
    script = tmp_path / "fake_adapter.py"
    script.write_text(FAKE)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "conformance.vectors", f"--vectors={small_set}",
           "--adapter=" + shlex.join([sys.executable, str(script), mode, target]), "-p", "no:cacheprovider", "-rs", *extra]
    if timeout:
        cmd.append(f"--vectors-timeout={timeout}")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def case_count(small_set) -> int:
    return len(json.loads((small_set / "index.json").read_text())["cases"])


def test_a_clean_adapter_passes_and_the_summary_counts_what_ran(tmp_path, small_set):
    rc, out = run_vectors(tmp_path, small_set, "clean", "-")
    assert rc == 0, out
    assert f"{case_count(small_set)} passed" in out
    assert "feste adapter: fake-clean 0" in out
    assert "logger       ran    6 of    6" in out
    assert "adapter processes started: 1 " in out  # one process served every case


@pytest.mark.parametrize("mode, target, expect", [
    ("crash", "logger/row/plain", "the adapter exited (status 3)"),
    ("garbage", "logger/row/plain", "not JSON"),
    ("perturb", "logger/row/plain", "row.txt: bytes differ at offset"),
    ("perturb-tensor", "optim/lr/cosine", "ulp > limit 1 ulp, 1 elements over; worst at index (3,): got 0.000297"),
    ("wrong-code", "config/validate/zero-vocab", "expected error config.invalid, got input.invalid"),
    ("accept", "config/validate/zero-vocab", "expected error config.invalid, the adapter replied ok"),
    ("unknown-code", "config/validate/zero-vocab", "replied error code 'adapter.failed' (no handler), which is not "
     "one of SPEC §error-codes' codes; the case expects error config.invalid"),
    ("unknown-code", "logger/row/plain", "which is not one of SPEC §error-codes' codes; the case expects outputs"),
])
def test_the_runner_fails_the_case_that_misbehaves_and_only_that_one(tmp_path, small_set, mode, target, expect):
    rc, out = run_vectors(tmp_path, small_set, mode, target)
    assert rc == 1, out
    assert f"1 failed, {case_count(small_set) - 1} passed" in out, out
    assert expect in out, out
    assert target in out
    restarted = mode in ("crash", "garbage")  # the process that broke the protocol is replaced
    assert f"adapter processes started: {2 if restarted else 1} " in out
    if mode == "crash":
        assert "about to crash" in out  # the adapter's stderr tail is shown


def test_a_timeout_fails_the_case_and_a_fresh_adapter_runs_the_rest(tmp_path, small_set):
    rc, out = run_vectors(tmp_path, small_set, "hang", "data/split/n1237-f0.1", "-k", "data or logger", timeout=3)
    assert rc == 1, out
    assert "timed out after 3 s" in out and "data/split/n1237-f0.1" in out
    assert "1 failed" in out and " passed" in out
    assert "adapter processes started: 2 " in out


def test_skips_are_never_passes(tmp_path, small_set):
    rc, out = run_vectors(tmp_path, small_set, "skip", "logger/header/csv")
    assert rc == 0, out
    assert "1 skipped" in out and "float64 is not built here" in out
    assert "logger       ran    5 of    6" in out
    rc, out = run_vectors(tmp_path, small_set, "unsupported", "logger/row")
    assert rc == 0, out
    assert "5 skipped" in out and "does not serve logger/row" in out
    assert "logger       ran    1 of    6" in out


@pytest.mark.parametrize("mode, excused", [("perturb", True), ("unknown-code", True), ("crash", False),
                                           ("garbage", False)])
def test_expected_failures_excuse_wrong_answers_never_a_broken_adapter(tmp_path, small_set, mode, excused):
    """A listed case may fail by its answer (wrong bytes, an error code SPEC does not list); a crash or a reply
    that is not JSON fails the run even for a listed case, so a listed reason cannot hide one."""
    listed = tmp_path / "xfail.txt"
    listed.write_text("test_vectors.py::test_case[logger/row/plain]  # the fake adapter gets it wrong\n")
    rc, out = run_vectors(tmp_path, small_set, mode, "logger/row/plain", f"--expected-failures={listed}")
    if excused:
        assert rc == 0 and "1 xfailed" in out, out
    else:
        assert rc == 1 and "1 failed" in out and "xfailed" not in out, out
        assert "never an expected failure" in out, out


def test_the_python_adapter_speaks_the_schema(tmp_path, small_set):
    jsonschema = jsonschema_or_skip()
    validator = jsonschema.Draft202012Validator(json.loads(PROTOCOL_SCHEMA.read_text()))
    index = json.loads((small_set / "index.json").read_text())
    requests = []
    for i, entry in enumerate(index["cases"][:12]):
        out = tmp_path / f"out{i}"
        out.mkdir()
        requests.append({"type": "run", "id": i, "case": str(small_set / entry["path"]), "out": str(out)})
    requests += [{"type": "time", "id": 99, "cell": {"preset": "nonesuch", "batch": 1, "seq_len": 4}, "steps": 1},
                 {"type": "bye"}]
    for msg in requests:
        assert not list(validator.iter_errors(msg)), msg
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "conformance.vectors.adapter", "--impl", "reference"],
                          input="".join(json.dumps(m) + "\n" for m in requests), capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert replies[0]["type"] == "hello" and len(replies) == len(requests)  # hello, then one reply per request but bye
    for reply in replies:
        errors = [e.message for e in validator.iter_errors(reply)]
        assert not errors, (reply, errors)
    assert [r["id"] for r in replies[1:]] == [m["id"] for m in requests[:-1]]
    assert replies[-1]["type"] == "error"  # an unknown preset


# --- adapters as benchmark peers (SPEC §adapter-protocol item 3, feste bench --adapter) ----------------------------
TIMER = textwrap.dedent('''
    import json, sys
    name, seconds = sys.argv[1], float(sys.argv[2])
    print(json.dumps({"type": "hello", "protocol": 1, "implementation": {"name": name, "version": "1"},
                      "operations": []}), flush=True)
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["type"] == "bye":
            break
        if msg["cell"]["preset"] != "tiny":
            print(json.dumps({"type": "skipped", "id": msg["id"], "reason": "only tiny here"}), flush=True)
            continue
        print(json.dumps({"type": "timing", "id": msg["id"], "seconds": [seconds] * msg["steps"]}), flush=True)
''')


def test_bench_times_adapters_as_peers_in_one_run(tmp_path):
    script = tmp_path / "timer.py"
    script.write_text(TIMER)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "feste", "bench", "--adapter", shlex.join([sys.executable, str(script), "one", "0.01"]),
                           "--adapter", shlex.join([sys.executable, str(script), "two", "0.03"]), "--cells", "tiny-16x64,small-8x128",
                           "--rounds", "3", "--steps", "2", "--peak-repeats", "0", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| tiny-16x64 | 10.0 (10.0-10.0) | 1.00x | 30.0 (30.0-30.0) | 3.00x (3.00-3.00) |" in proc.stdout
    assert "n/a (RuntimeError: skipped: only tiny here)" in proc.stdout
    assert "3.00x" in (tmp_path / "out" / "side_by_side.md").read_text()


def test_an_acceptable_case_passes_on_a_refusal_and_fails_on_wrong_outputs(tmp_path):
    """SPEC §case-json: `acceptable` (behaviour SPEC leaves open): the expected outputs or a refusal with any
    code of SPEC §error-codes pass; wrong outputs, and an error code SPEC does not list, fail."""
    paths = {"checkpoint/read/config-integer-dropout-rate", "checkpoint/read/inference"}
    one = build(tmp_path / "set", components=["checkpoint"], paths=paths)["dir"]
    case = json.loads((one / "checkpoint/read/config-integer-dropout-rate/case.json").read_text())
    assert case["verdict"] == "acceptable" and "open" in case["flags"]
    rc, out = run_vectors(tmp_path, one, "clean", "-")
    assert rc == 0 and "2 passed" in out, out
    for mode, target, want_rc in [("refuse", "checkpoint/read/config-integer-dropout-rate", 0),
                                  ("refuse", "checkpoint/read/inference", 1),
                                  ("unknown-code", "checkpoint/read/config-integer-dropout-rate", 1),
                                  ("perturb-tensor", "checkpoint/read/config-integer-dropout-rate", 1)]:
        rc, out = run_vectors(tmp_path, one, mode, target)
        assert rc == want_rc, (mode, target, out)


# --- the whole set, as a user builds it (SPEC §vectors-build) -------------------------------------------------------
def spec_counts() -> dict[str, int]:
    """SPEC §vectors-build's table: cases per component."""
    return {c: int(n) for c, n in re.findall(r"^\| ([a-z]+) \| (\d+) \|", spec_section("vectors-build"), re.M)}


# operations whose cases carry a model config with attention: a single-head config must sit beside multi-head ones
ATTENTION_OPS = {"model/forward", "model/backward", "generate/greedy", "generate/sample", "train/step-gradient",
                 "train/trajectory", "params/init", "params/table", "checkpoint/write"}


@pytest.mark.slow
def test_the_whole_set_from_feste_vectors_build(tmp_path, capsys):
    """`feste vectors build` twice, with two BLAS threads and once without the test extra with one, gives
    identical bytes; the set stays under 20 MB and holds the cases per component SPEC §vectors-build lists and
    every operation of §operations, with single-head configs beside multi-head ones; `feste vectors check`
    passes it and names a changed file; building over it is refused."""
    from conformance.workers import BLAS_THREAD_ENVS

    def threads(n: int) -> dict:
        return dict(os.environ, PYTHONPATH=str(ROOT), **{name: str(n) for name in BLAS_THREAD_ENVS})

    # a process whose BLAS pool has two threads: float32 products round otherwise than with one, so the build
    # must not compute the expected values there
    proc = subprocess.run([sys.executable, "-m", "feste", "vectors", "build", str(tmp_path / "a")],
                          capture_output=True, text=True, env=threads(2), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    wrote = re.search(r"wrote (\d+) cases, ([\d.]+) MB, to (.+) in ([\d.]+) s", out)
    assert wrote, out
    one = tmp_path / "a" / SPEC_VERSION
    code, out, err = feste_cli(capsys, "vectors", "build", tmp_path / "a")
    assert code == 1 and err.startswith("feste vectors: error: ") and "--overwrite" in err and err.count("\n") == 1
    # the second build as the core install runs it (numpy, no test extra: pytest, hypothesis and jsonschema
    # cannot be imported), in a process of its own with one BLAS thread (so it builds in that process): a
    # generator importing a test module fails here
    core = ("import sys; sys.modules.update(pytest=None, hypothesis=None, jsonschema=None); "
            "from feste.cli import main; sys.exit(main(['vectors', 'build', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", core, str(tmp_path / "b")], capture_output=True, text=True,
                          env=threads(1), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    two = tmp_path / "b" / SPEC_VERSION
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    differ = [str(rel) for rel in files if (one / rel).read_bytes() != (two / rel).read_bytes()]
    assert not differ, f"two builds differ in {len(differ)} files: {differ[:10]}"

    size = sum((one / rel).stat().st_size for rel in files)
    assert size < 20e6, f"the set is {size / 1e6:.2f} MB; SPEC §vectors-build keeps it under 20 MB"
    assert f"{size / 1e6:.1f}" == wrote[2], (size, out)  # the size the build states is the set's
    index = json.loads((one / "index.json").read_text())
    assert int(wrote[1]) == len(index["cases"]) == sum(spec_counts().values())
    assert index["components"] == spec_counts()
    assert sorted(index["operations"]) == sorted(OPERATIONS)
    heads: dict[str, set[int]] = {}
    for entry in index["cases"]:
        case = json.loads((one / entry["path"] / "case.json").read_text())
        op = f"{case['component']}/{case['operation']}"
        if op == "layers/attention":
            heads.setdefault(op, set()).add(case["args"]["n_heads"])
        elif op in ATTENTION_OPS and "config" in case:
            heads.setdefault(op, set()).add(case["config"]["n_heads"])
    for op in ATTENTION_OPS | {"layers/attention"}:
        assert 1 in heads.get(op, ()) and max(heads[op]) > 1, f"{op}: n_heads of its cases {heads.get(op)}"
    flags: dict[str, set[str]] = {}
    for entry in index["cases"]:
        flags.setdefault(f"{entry['component']}/{entry['operation']}", set()).update(entry["flags"])
        assert entry["optional"] == ("float64" in entry["flags"]), entry  # float64 and only float64 is optional
        assert (entry["verdict"] == "acceptable") == ("open" in entry["flags"]), entry
    for op, want in {"model/backward": {"moved", "blocked", "sharp", "float64", "dropout"},
                     "model/forward": {"malformed", "dropout"}, "loss/cross-entropy": {"blocked", "sharp", "float64"},
                     "layers/attention": {"blocked", "sharp", "float64"}, "tokenizer/train": {"unicode"},
                     "tokenizer/encode": {"unicode", "held-out"}, "tokenizer/decode": {"held-out", "malformed"},
                     "checkpoint/read": {"malformed", "open"}, "train/step-gradient": {"dropout"}}.items():
        assert want <= flags[op], f"{op}: no case flagged {sorted(want - flags[op])}"

    code, out, err = feste_cli(capsys, "vectors", "check", tmp_path / "a")
    assert code == 0 and f"checked {len(index['cases'])} cases" in out and "all valid" in out, (out, err)
    victim = one / "optim" / "adamw" / "mh-t7" / "data.safetensors"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    code, out, err = feste_cli(capsys, "vectors", "check", tmp_path / "a")
    assert code == 1 and "optim/adamw/mh-t7/data.safetensors: sha256 differs from SHA256SUMS" in err, (out, err)


def test_a_missing_set_is_named_and_check_refuses_it(tmp_path, capsys):
    code, out, err = feste_cli(capsys, "vectors", "check", tmp_path / "nothing")
    assert code == 1 and "nothing: no vector set (no index.json in it or in" in err, (out, err)


# --- Feste's published verdict (docs/FESTE.md, README) ---------------------------------------------------------
def test_festes_published_verdict_adds_up_to_the_set_and_its_expected_failures():
    """docs/FESTE.md's table per component counts SPEC §vectors-build's cases, its failures are the lines of
    adapters/feste/expected-failures.txt (which CI holds Feste to, strictly), and README quotes its totals and its table: a
    table edited by hand, or a list changed without it, fails here (the passes themselves are CI's run)."""
    doc = (ROOT / "docs" / "FESTE.md").read_text(encoding="utf-8")
    rows = {comp: tuple(map(int, nums)) for comp, *nums in
            re.findall(r"^\| ([a-z]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", doc, re.M)}
    assert {comp: row[0] for comp, row in rows.items()} == spec_counts()
    for comp, (cases, passed, failed, unsupported) in rows.items():
        assert passed + failed + unsupported == cases, comp
    listed = collections.Counter()
    for entry in parse_expected_failures(ROOT / "adapters" / "feste" / "expected-failures.txt"):
        match = re.fullmatch(r"test_vectors\.py::test_case\[([a-z]+)/[a-z0-9_.-]+/[a-z0-9_.-]+\]", entry.pattern)
        assert match, f"{entry.source}: not one vector case: {entry.pattern}"
        listed[match[1]] += 1
    assert {comp: row[2] for comp, row in rows.items() if row[2]} == dict(listed)
    totals = [sum(row[i] for row in rows.values()) for i in range(4)]
    assert re.search(r"^\| \*\*total\*\* \| " + r" \| ".join(rf"\*\*{n}\*\*" for n in totals) + r" \|$", doc, re.M)
    assert f"spec version {SPEC_VERSION} ({totals[0]} cases)" in doc
    readme_text = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = " ".join(readme_text.split())
    assert (f"spec version {SPEC_VERSION} ({totals[0]} cases) it passes {totals[1]}, fails {totals[2]} and "
            f"cannot be asked {totals[3]}") in readme
    readme_rows = {comp: tuple(map(int, nums)) for comp, *nums in
                   re.findall(r"^\| ([a-z]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| .+ \|$", readme_text, re.M)}
    assert readme_rows == rows, "README's table per component differs from docs/FESTE.md's"


def test_a_failed_build_leaves_the_previous_set_whole_and_no_half_set(tmp_path, monkeypatch):
    """SPEC §vectors-build: the set appears whole or not at all; a generator failing half-way through an
    --overwrite keeps the set that was there, and leaves no temporary directory behind."""
    from conformance.vectors import build as B

    old = os.umask(0o022)
    try:
        first = build(tmp_path, components=["logger"])["dir"]
    finally:
        os.umask(old)
    assert first == tmp_path / SPEC_VERSION and (first.stat().st_mode & 0o777) == 0o755
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}

    def half_then_fail(components=None):
        yield from B.cases_config()
        raise RuntimeError("a generator failed")

    monkeypatch.setattr(B, "build_cases", half_then_fail)
    with pytest.raises(RuntimeError, match="a generator failed"):
        build(tmp_path, components=["config"])
    assert {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == [SPEC_VERSION]
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="a generator failed"):
        build(fresh, components=["config"])
    assert list(fresh.iterdir()) == []  # nothing to refuse the next build over


def test_the_python_adapter_names_a_module_it_cannot_import(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "conformance.vectors.adapter", "--impl", "no_such_impl"],
                          input="", capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr.splitlines()[-1] == ("python -m conformance.vectors.adapter: error: --impl no_such_impl: cannot "
                                            "import module 'no_such_impl': ModuleNotFoundError: No module named "
                                            "'no_such_impl'"), proc.stderr
    assert "Traceback" not in proc.stderr
