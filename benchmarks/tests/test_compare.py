"""Regression tracking (SPEC §performance): tools/compare.sh's argument checking, the
noise arithmetic, and the automated proof that a deliberately slowed kernel is
caught while a clean re-run is not (slow; needs timings, so it is skipped
under --benchmark-disable)."""
from __future__ import annotations

import os
import subprocess

import pytest

from benchmarks.tools import noise

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
COMPARE = os.path.join(TOOLS, "compare.sh")
PROVE = os.path.join(TOOLS, "prove_regression.sh")


def _run(*args, timeout=60):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=TOOLS)


@pytest.mark.parametrize("args,message", [
    ((), "BASE_REV is required"),
    (("no-such-revision-xyz",), "BASE_REV 'no-such-revision-xyz' is not a commit"),
    (("HEAD", "no-such-revision-xyz"), "HEAD_REV 'no-such-revision-xyz' is not a commit"),
    (("HEAD", "HEAD", "HEAD"), "at most two revisions"),
    (("HEAD", "--fail", "25"), "--fail '25' is not a pytest-benchmark expression"),
    (("HEAD", "--head-patch", "/no/such.patch"), "--head-patch '/no/such.patch': no such file"),
    (("HEAD", "--frobnicate"), "unknown option --frobnicate"),
    (("HEAD", "--threads", "0"), "--threads '0' is not a positive integer"),
    (("HEAD", "--method", "vibes"), "--method 'vibes' is neither ab nor threshold"),
    (("HEAD", "--method", "threshold", "--rounds", "5"), "--rounds belongs to --method ab"),
])
def test_compare_usage_errors_are_clear(args, message):
    proc = _run(COMPARE, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_compare_help_documents_the_workflow():
    proc = _run(COMPARE, "--help")
    assert proc.returncode == 0
    for needle in ("--benchmark-autosave", "--benchmark-compare-fail", "git worktree", "BASE_REV [HEAD_REV]",
                   "Wilcoxon", "--threshold PCT", "--trials N"):
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
    """benchmarks/tools/prove_regression.sh: a training step 10% slower in CPU time (fast's
    forward spins 10% of the previous step) must be flagged by compare.sh's default
    method (abtest) in at least 9 of 10 trials, and a clean re-run in at most 1 of 10."""
    if request.config.getoption("benchmark_disable"):
        pytest.skip("timing is disabled (--benchmark-disable); the proof needs timings: "
                    "python -m pytest benchmarks/tests/test_compare.py -m slow")
    if not _committed_forward("fast"):
        pytest.skip("fast/model.py with forward() is not committed yet: nothing to slow down")
    proc = _run(PROVE, timeout=4 * 3600)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert "PROVEN" in proc.stdout and proc.returncode == 0, tail
