"""The suite as a product: the plugin's options, run for real in a subprocess
from a temporary directory outside the repository, the way a third party runs
it (`pytest --pyargs conformance --impl my.module`).

These tests check the machinery (option parsing, the entry point, the report
header, the contract failing once with its SPEC section, skips instead of
cascades, expected failures), not an implementation, so they do not take the
`impl` fixture. The inner runs select `conformance.test_contract` only, which
keeps each run to a second or two and cannot recurse into this file; being
subprocesses (pytest start-up each), they are marked slow, out of the quick loop.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conformance
from conformance.expected_failures import ExpectedFailure, glob_regex, id_forms, parse_expected_failures
from conformance import workers
from conformance.selection import Implementation

# the directory holding the `conformance` and `reference` packages in use
PACKAGE_ROOT = str(Path(conformance.__file__).resolve().parent.parent)

WRAPPER = '''\
"""A third-party implementation: re-exports reference."""
from reference import *  # noqa: F401,F403
from reference import __all__  # noqa: F401
__version__ = "9.9"
'''

# exports all of reference except init_params; preset has a different signature
BROKEN = '''\
import reference
from reference import *  # noqa: F401,F403
__all__ = [n for n in reference.__all__ if n not in ("init_params", "preset")]
del init_params
def preset(name, extra=1):
    return reference.preset(name)
'''


def run_pytest(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """python -m pytest ARGS in `cwd`, with a clean FESTE_* environment."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("FESTE_", "PYTEST_")) and k != "PYTHONPATH"}
    clean["PYTHONPATH"] = os.pathsep.join([str(cwd), PACKAGE_ROOT])
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=clean, capture_output=True, text=True, timeout=300)


@pytest.fixture
def third_party(tmp_path: Path) -> Path:
    (tmp_path / "my_wrap.py").write_text(WRAPPER)
    (tmp_path / "broken_wrap.py").write_text(BROKEN)
    return tmp_path


@pytest.mark.slow
def test_pyargs_from_anywhere_with_a_third_party_module(third_party):
    """The entry point loads the plugin outside the repository; the header
    names the module, its path and version, numpy/numba/threads; test ids
    carry the implementation name; a complete wrapper passes the contract."""
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "--impl", "my_wrap",
                      "-v", env={"NUMBA_NUM_THREADS": "1"})
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert f"feste impl my_wrap: version 9.9, {third_party / 'my_wrap.py'}" in out
    assert "numpy " in out and "numba " in out and "threads 1" in out
    env_line = next((line for line in out.splitlines() if line.startswith("env: ")), "")
    assert "NUMBA_NUM_THREADS=1" in env_line.split(), out
    assert "test_exports_name[my_wrap-Config] PASSED" in out


@pytest.mark.slow
def test_plugin_comes_from_the_entry_point(third_party):
    """Disabling the entry-point plugin by name removes --impl: proof that it
    is the entry point (not a conftest) that registers the options."""
    proc = run_pytest(third_party, "-p", "no:feste_conformance", "--pyargs",
                      "conformance.test_contract", "--impl", "my_wrap")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "unrecognized arguments: --impl" in proc.stderr


@pytest.mark.slow
def test_missing_and_missigned_names_fail_once_citing_the_spec(third_party):
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "--impl", "broken_wrap")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    # once in the failure report (pytest under CI=true repeats full messages in
    # its short summary, so count only above it)
    report = out.split("short test summary info")[0]
    assert report.count("broken_wrap is missing init_params (SPEC §config)") == 1, out
    assert "broken_wrap.preset has signature (name, extra=1)" in out
    assert "2 failed" in out


@pytest.mark.slow
def test_a_test_needing_a_missing_name_is_skipped_with_the_reason(third_party):
    """A test using `impl.init_params` on a module without it is skipped
    (the contract test fails for it once), not failed in a cascade."""
    (third_party / "test_uses_init.py").write_text(textwrap.dedent("""\
        def test_needs_init(impl):
            impl.init_params(impl.preset("tiny"))
        """))
    proc = run_pytest(third_party, "test_uses_init.py", "--impl", "broken_wrap", "-rs")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "1 skipped" in out
    assert "broken_wrap is missing init_params (SPEC §config;" in out


@pytest.mark.slow
def test_impl_is_repeatable_with_an_environment_fallback(third_party):
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "-q", "--co",
                      env={"FESTE_IMPL": "my_wrap, reference"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_exports_name[my_wrap-Config]" in proc.stdout
    assert "test_exports_name[reference-Config]" in proc.stdout
    # --impl wins over the environment, and repeats are allowed
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "-q", "--co",
                      "--impl", "reference", "--impl", "my_wrap", "--impl", "reference",
                      env={"FESTE_IMPL": "broken_wrap"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken_wrap" not in proc.stdout
    assert proc.stdout.count("test_exports_name[reference-Config]") == 1
    assert "test_exports_name[my_wrap-Config]" in proc.stdout


@pytest.mark.slow
def test_an_impl_that_does_not_import_is_a_usage_error(third_party):
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "--impl", "no_such_mod")
    assert proc.returncode == 4
    assert "--impl no_such_mod: cannot import module 'no_such_mod'" in proc.stderr


@pytest.mark.slow
def test_expected_failures_become_strict_xfails(third_party):
    """Listed failures xfail; a listed test that passes fails (strict); a
    pattern that matches nothing is reported; the env var is a fallback."""
    listing = third_party / "expected.txt"
    listing.write_text("# broken_wrap is work in progress\n"
                       "test_contract.py::test_exports_name[broken_wrap-init_params]  # not written\n"
                       "\n"
                       "*[broken_wrap-preset]\n")
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "--impl", "broken_wrap",
                      "--expected-failures", str(listing), "-rx")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "2 xfailed" in out and "failed" not in out.replace("xfailed", "")
    assert "expected failure (" in out and "expected.txt:2): not written" in out
    assert "feste expected failures: " in out and "(2 patterns)" in out

    listing.write_text("*[broken_wrap-Config]\n*[no-such-test]\n")
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "--impl", "broken_wrap",
                      env={"FESTE_EXPECTED_FAILURES": str(listing)})
    out = proc.stdout
    assert proc.returncode == 1
    assert "XPASS(strict)" in out
    assert "pattern '*[no-such-test]' matched no collected test" in out


@pytest.mark.slow
def test_expected_failures_summary_is_right_over_xdist_workers(third_party):
    """With -n 2 the workers collect, not the process that writes the summary:
    a pattern that matched is not reported as matching nothing; a stale one is."""
    listing = third_party / "expected.txt"
    listing.write_text("*[broken_wrap-init_params]\n*[broken_wrap-preset]\n*[no-such-test]\n")
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "--impl", "broken_wrap",
                      "--expected-failures", str(listing), "-n", "2")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "2 xfailed" in out
    assert "pattern '*[no-such-test]' matched no collected test" in out
    assert "pattern '*[broken_wrap-preset]' matched no" not in out, out[-3000:]


@pytest.mark.slow
def test_a_malformed_expected_failures_file_is_a_usage_error(third_party):
    listing = third_party / "bad.txt"
    listing.write_text("ok_pattern\ntwo patterns here\n")
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "--impl", "my_wrap",
                      "--expected-failures", str(listing))
    assert proc.returncode == 4
    assert "bad.txt:2: expected one test-id pattern" in proc.stderr
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "--impl", "my_wrap",
                      "--expected-failures", "missing.txt")
    assert proc.returncode == 4
    assert "--expected-failures missing.txt: no such file" in proc.stderr


def test_glob_brackets_are_literal():
    """Hand-checked cases: fnmatch would read `[ab-c]` as a character class
    and let `*[fast-x]` match any id ending in f, a, s, t, x or a range."""
    assert glob_regex("*[fast-x]").fullmatch("test_a.py::test_b[fast-x]")
    assert not glob_regex("*[fast-x]").fullmatch("test_a.py::test_unique")
    assert glob_regex("test_?.py::*").fullmatch("test_a.py::t[1]")
    assert not glob_regex("test_?.py::*").fullmatch("test_ab.py::t")


def test_ids_match_from_the_repository_and_via_pyargs():
    """pytest writes `::test_b[fast]` when the module itself is the argument
    and `conformance/test_a.py::...` from the repository; the short id is
    the same for both."""
    assert id_forms("::test_b[fast]", "test_a.py")[1] == "test_a.py::test_b[fast]"
    entry = ExpectedFailure("test_a.py::test_b[*]", "r", "f:1")
    assert entry.matches("conformance/test_a.py::test_b[reference]", "test_a.py")
    assert entry.matches("::test_b[reference]", "test_a.py")
    assert not entry.matches("conformance/test_a.py::test_bc[reference]", "test_a.py")


def test_parse_expected_failures(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("  # only a comment\n\na*  # why\nb\n")
    entries = parse_expected_failures(path)
    assert [(e.pattern, e.reason, e.source) for e in entries] == [
        ("a*", "why", f"{path}:3"), ("b", "listed as an expected failure", f"{path}:4")]
    path.write_text("a b\n")
    with pytest.raises(ValueError, match=r"x\.txt:1"):
        parse_expected_failures(path)


def test_only_contract_names_skip():
    """A missing contract name skips with its SPEC section; any other missing
    attribute is a plain AttributeError. (Hypothesis probes fixture values for
    `hypothesis_internal_is_this_a_mock_check`: if that skipped, every @given
    test taking `impl` would be skipped silently.)"""
    import types

    empty = Implementation("empty", types.ModuleType("empty"))
    with pytest.raises(AttributeError):
        empty.hypothesis_internal_is_this_a_mock_check  # noqa: B018
    assert not hasattr(empty, "__deepcopy__")
    with pytest.raises(pytest.skip.Exception, match=r"empty is missing adamw_step \(SPEC §optimiser;"):
        empty.adamw_step  # noqa: B018


@pytest.mark.slow
def test_given_tests_taking_impl_really_run(third_party):
    """End to end: a hypothesis test with the `impl` fixture runs its examples."""
    (third_party / "test_given.py").write_text(textwrap.dedent("""\
        from hypothesis import given, settings, strategies as st
        CALLS = []
        @settings(max_examples=5, database=None)
        @given(x=st.integers())
        def test_draws(impl, x):
            CALLS.append(impl.preset("tiny"))
        def test_after():
            assert len(CALLS) == 5, CALLS
        """))
    proc = run_pytest(third_party, "test_given.py", "--impl", "my_wrap", "-p", "no:randomly")
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr


# --- the third-party commands of docs/CHECKING_AN_IMPLEMENTATION.md, verbatim -------------
GUIDE = Path(PACKAGE_ROOT) / "docs" / "CHECKING_AN_IMPLEMENTATION.md"
# The module of the guide's example, without its own kernels: everything from reference.
MY_GPT = '''\
# my_gpt.py
from reference import *            # noqa: F401,F403  -- everything not yet rewritten
from reference import __all__      # noqa: F401
__version__ = "0.1"
'''


def guide_commands(heading: str) -> list[str]:
    """The commands of the first ```bash block after `heading` in the guide,
    one per line, trailing `# comments` removed."""
    if not GUIDE.is_file():
        pytest.skip(f"no {GUIDE.relative_to(PACKAGE_ROOT)} next to the packages in use ({PACKAGE_ROOT})")
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("```bash", text.index(heading)) + len("```bash")
    block = text[start:text.index("```", start)]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def run_shell(cwd: Path, command: str, **env: str) -> subprocess.CompletedProcess:
    """`command` through bash in `cwd`, as a user types it: `pytest` is the one
    installed next to this Python, and only the packages in use are on
    PYTHONPATH (never `cwd`: putting it there is the plugin's job)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("FESTE_", "PYTEST_")) and k != "PYTHONPATH"}
    clean["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), clean.get("PATH", "")])
    clean["PYTHONPATH"] = PACKAGE_ROOT
    clean.update(env)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=clean, capture_output=True, text=True,
                          timeout=1800)


@pytest.mark.slow
def test_guide_third_party_commands_work_verbatim_from_the_module_folder(tmp_path):
    """Each command of docs/CHECKING_AN_IMPLEMENTATION.md "Running the suite on
    it", exactly as written, in a folder holding only my_gpt.py (a module
    re-exporting reference). Plain
    `pytest` does not put that folder on sys.path; the plugin does. The
    one-file agreement command runs for real; the others collect (the whole
    suite, twice, would take a quarter of an hour), which is where a module
    that does not import, an option that is not registered or a selection
    that matches nothing fails."""
    (tmp_path / "my_gpt.py").write_text(MY_GPT)
    commands = guide_commands("## Running the suite on it")
    assert len(commands) == 5 and all("pytest" in c and "my_gpt" in c for c in commands), commands
    collected = {}
    for command in commands:
        if "conformance.test_agreement" in command:
            proc = run_shell(tmp_path, command)
            assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
            assert " passed" in proc.stdout and "feste impl my_gpt: version 0.1" in proc.stdout, proc.stdout[-2000:]
            continue
        proc = run_shell(tmp_path, command, PYTEST_ADDOPTS="--collect-only -q")
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        ids = [line for line in proc.stdout.splitlines() if "::" in line]
        assert ids and all(line.startswith("test_") for line in ids), f"{command}\n{proc.stdout[-2000:]}"
        collected[command] = ids
    whole, both, quick, env_fallback = collected.values()
    assert any("[my_gpt-" in i for i in whole) and not any("[reference-" in i for i in whole)
    assert any("[reference-" in i for i in both) and any("[my_gpt-" in i for i in both)
    assert 0 < len(quick) < len(whole)
    assert env_fallback == whole


@pytest.mark.slow
def test_several_modules_by_pyargs_keep_their_file_names(third_party):
    """`--pyargs` with two suite modules from a user's folder: the report
    names each test `test_file.py::test_name[...]`, not `::test_name[...]`."""
    proc = run_pytest(third_party, "--pyargs", "conformance.test_contract", "conformance.test_logger",
                      "--impl", "my_wrap", "-rA", "-k", "exports_name and Config or header_is_exact")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED test_contract.py::test_exports_name[my_wrap-Config]" in proc.stdout, proc.stdout
    assert "PASSED test_logger.py::test_header_is_exact[my_wrap]" in proc.stdout, proc.stdout
    assert "PASSED ::" not in proc.stdout


def test_worker_numba_cache_is_one_directory_per_xdist_worker(tmp_path):
    """Outside a worker nothing changes; a worker gets <NUMBA_CACHE_DIR or base>/<id>;
    once set for a worker it is not nested again (an inner pytest in that worker)."""
    base = tmp_path / "base"
    assert workers.worker_numba_cache({}, base) is None
    assert workers.worker_numba_cache({"PYTEST_XDIST_WORKER": "gw1"}, base) == str(base / "gw1")
    mine = {"PYTEST_XDIST_WORKER": "gw0", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    assert workers.worker_numba_cache(mine, base) == str(tmp_path / "numba" / "gw0")
    assert workers.worker_numba_cache(dict(mine, FESTE_NUMBA_CACHE_WORKER="gw0"), base) is None


@pytest.mark.slow
def test_xdist_workers_compile_into_separate_numba_caches(tmp_path):
    """Under `-n 2` each worker's tests see their own NUMBA_CACHE_DIR, set before
    the implementations are imported (Numba reads it at import)."""
    (tmp_path / "test_where.py").write_text(textwrap.dedent("""\
        import os, pathlib
        import pytest

        @pytest.mark.parametrize("i", range(8))
        def test_where(i):
            worker = os.environ["PYTEST_XDIST_WORKER"]
            pathlib.Path(f"{worker}-{i}.txt").write_text(os.environ["NUMBA_CACHE_DIR"])
        """))
    proc = run_pytest(tmp_path, "test_where.py", "-n", "2", "--impl", "reference",
                      env={"NUMBA_CACHE_DIR": str(tmp_path / "numba")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = {p.name.split("-")[0]: p.read_text() for p in tmp_path.glob("gw*-*.txt")}
    assert set(seen) == {"gw0", "gw1"}, seen
    assert seen == {w: str(tmp_path / "numba" / w) for w in ("gw0", "gw1")}


@pytest.mark.parametrize("environ, cpus, expected", [
    ({}, 8, None),  # not a worker: the defaults stand
    ({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2"}, 2, 1),
    ({"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "2"}, 64, 32),
    ({"PYTEST_XDIST_WORKER": "gw3", "PYTEST_XDIST_WORKER_COUNT": "8"}, 2, 1),  # never below one
    ({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2", "OPENBLAS_NUM_THREADS": "2"}, 2, None),
    ({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "1"}, 2, None),
])
def test_workers_share_the_cores_among_their_blas_pools(environ, cpus, expected):
    """conformance/workers.py: an xdist worker's BLAS threads are the cores divided by
    the workers, at least one, unless the environment chose a BLAS thread count."""
    from conformance.workers import worker_blas_threads

    assert worker_blas_threads(environ, cpus) == expected


@pytest.mark.slow
def test_xdist_workers_run_their_share_of_blas_threads(tmp_path):
    """Under `-n 2` each worker's BLAS pool (as threadpoolctl reads it) has
    max(1, cores // 2) threads; a subprocess a test starts keeps the defaults."""
    pytest.importorskip("threadpoolctl")
    (tmp_path / "test_blas.py").write_text(textwrap.dedent("""\
        import os, pathlib, subprocess, sys
        import pytest
        from threadpoolctl import threadpool_info

        def blas_threads():
            return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")

        @pytest.mark.parametrize("i", range(6))
        def test_blas(i):
            child = subprocess.run([sys.executable, "-c", "import numpy; from threadpoolctl import threadpool_info; "
                                    "print(max(p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
            worker = os.environ["PYTEST_XDIST_WORKER"]
            pathlib.Path(f"{worker}-{i}.txt").write_text(f"{blas_threads()} {child}")
        """))
    blank = {v: "" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = run_pytest(tmp_path, "test_blas.py", "-n", "2", "--impl", "reference", env=blank)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = {p.read_text() for p in tmp_path.glob("gw*-*.txt")}
    share, default = max(1, (os.cpu_count() or 1) // 2), os.cpu_count() or 1
    assert seen == {f"{share} {default}"}, seen


@pytest.mark.parametrize("environ, pool, expected", [
    ({}, 8, None),
    ({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2"}, 2, 1),
    ({"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "4"}, 64, 16),
    ({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2", "NUMBA_NUM_THREADS": "2"}, 2, None),
])
def test_workers_share_numba_threads(environ, pool, expected):
    """conformance/workers.py: an xdist worker's tests run with the Numba pool divided
    by the workers, unless NUMBA_NUM_THREADS was chosen."""
    from conformance.workers import worker_numba_threads

    assert worker_numba_threads(environ, pool) == expected


@pytest.mark.slow
def test_xdist_workers_run_their_share_of_numba_threads_and_keep_the_pool(tmp_path):
    """Under `-n 2` each worker's tests start with max(1, pool // 2) Numba threads, and
    the suite's thread knob (conformance/threads.py) still reaches the whole pool."""
    (tmp_path / "test_numba_share.py").write_text(textwrap.dedent("""\
        import os, pathlib
        import numba
        import pytest
        from conformance.threads import all_threads, numba_threads

        @pytest.mark.parametrize("i", range(6))
        def test_numba(i):
            with numba_threads(all_threads()):
                inside = numba.get_num_threads()
            worker = os.environ["PYTEST_XDIST_WORKER"]
            pathlib.Path(f"{worker}-{i}.txt").write_text(f"{numba.get_num_threads()} {inside}")
        """))
    proc = run_pytest(tmp_path, "test_numba_share.py", "-n", "2", "--impl", "reference", env={"NUMBA_NUM_THREADS": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = {p.read_text() for p in tmp_path.glob("gw*-*.txt")}
    pool = os.cpu_count() or 1
    assert seen == {f"{max(1, pool // 2)} {pool}"}, seen
