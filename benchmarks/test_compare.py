"""Regression tracking (SPEC section 9): compare.sh's argument checking, the
noise arithmetic, and the automated proof that a deliberately slowed kernel is
caught while a clean re-run is not (slow; needs timings, so it is skipped
under --benchmark-disable)."""
from __future__ import annotations

import os
import subprocess

import pytest

import noise

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "compare.sh")
PROVE = os.path.join(HERE, "prove_regression.sh")


def _run(*args, timeout=60):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=HERE)


@pytest.mark.parametrize("args,message", [
    ((), "BASE_REV is required"),
    (("no-such-revision-xyz",), "BASE_REV 'no-such-revision-xyz' is not a commit"),
    (("HEAD", "no-such-revision-xyz"), "HEAD_REV 'no-such-revision-xyz' is not a commit"),
    (("HEAD", "HEAD", "HEAD"), "at most two revisions"),
    (("HEAD", "--fail", "25"), "--fail '25' is not a pytest-benchmark expression"),
    (("HEAD", "--head-patch", "/no/such.patch"), "--head-patch '/no/such.patch': no such file"),
    (("HEAD", "--frobnicate"), "unknown option --frobnicate"),
    (("HEAD", "--threads", "0"), "--threads '0' is not a positive integer"),
])
def test_compare_usage_errors_are_clear(args, message):
    proc = _run(COMPARE, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_compare_help_documents_the_workflow():
    proc = _run(COMPARE, "--help")
    assert proc.returncode == 0
    for needle in ("--benchmark-autosave", "--benchmark-compare-fail", "git worktree", "BASE_REV [HEAD_REV]"):
        assert needle in proc.stdout


def test_noise_spread_by_hand():
    """Medians 100, 120, 110 ms: spread (120 - 100) / 100 = 20%; mean 110, sample
    stdev 10, relative stdev 10/110 = 9.09%. A benchmark missing from one run is left out."""
    def run(ms, extra=()):
        benches = [{"fullname": "b::step", "stats": {"median": ms / 1e3}}]
        benches += [{"fullname": name, "stats": {"median": 0.5}} for name in extra]
        return {"benchmarks": benches}

    table = noise.spreads([run(100, ["b::only_once"]), run(120), run(110)])
    assert list(table) == ["b::step"]
    assert table["b::step"]["spread"] == pytest.approx(0.20)
    assert table["b::step"]["rel_stdev"] == pytest.approx(10 / 110)
    assert "| step | 100.0, 120.0, 110.0 | 20.0% | 9.1% |" in noise.format_spreads(table)
    with pytest.raises(ValueError, match="run 1: not pytest-benchmark JSON"):
        noise.spreads([run(1), {}])


def _committed_forward(impl: str = "reference") -> bool:
    proc = _run("git", "show", f"HEAD:{impl}/model.py")
    return proc.returncode == 0 and "\ndef forward(" in proc.stdout


@pytest.mark.slow
def test_slowed_kernel_is_caught_and_clean_rerun_is_not(request):
    """benchmarks/prove_regression.sh: forward doing its work 10 times (a step ~4x
    slower) must make compare.sh exit 1 at the default threshold (median:100%);
    the same revision compared with itself, 0."""
    if request.config.getoption("benchmark_disable"):
        pytest.skip("timing is disabled (--benchmark-disable); the proof needs timings: "
                    "python -m pytest benchmarks/test_compare.py -m slow")
    if not _committed_forward():
        pytest.skip("reference/model.py with forward() is not committed yet: nothing to slow down")
    # one thread: far less noisy on a shared machine (SPEC section 9)
    proc = _run(PROVE, "--threads", "1", timeout=1800)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert "slowed run: compare.sh exit 1" in proc.stdout, tail
    assert "clean run:  compare.sh exit 0" in proc.stdout, tail
    assert proc.returncode == 0, tail
