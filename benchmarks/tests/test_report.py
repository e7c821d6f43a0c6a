"""The report (benchmarks/tools/report.py): tables from hand-made pytest-benchmark
JSON with hand-computed figures, the chart's missing-matplotlib path, and one
end-to-end run against a test double implementation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import reference
from benchmarks.lib import accounting
from benchmarks.tools import report



def _bench(impl, preset_name, B, T, median, fraction, peak=100.0):
    return {
        "name": f"test_train_step[{impl}-{preset_name}-{B}x{T}]",
        "stats": {"median": median},
        "extra_info": {"impl": impl, "preset": preset_name, "B": B, "T": T, "threads": 2,
                       "fraction_of_matmul_peak": fraction, "matmul_peak_gflops": peak},
    }


def _hand_json():
    """tiny 16x64: reference 200 ms, fast 50 ms -> fast is 4.00x; small 8x128 only reference."""
    return {
        "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.11"},
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "datetime": "2026-01-01T00:00:00",
        "benchmarks": [
            _bench("reference", "tiny", 16, 64, 0.200, 0.2164),
            _bench("fast", "tiny", 16, 64, 0.050, 0.8657),
            _bench("reference", "small", 8, 128, 1.5, 0.05),
            {"name": "test_matmul_peak", "stats": {"median": 0.1718},
             "extra_info": {"session_peak_gflops": 100.0, "blas_threads": 2}},
        ],
    }


def test_step_info_rates_by_hand():
    """tiny 16x64 trains 4,328,521,728 FLOPs per step (test_accounting). In 50 ms that is
    86.57 GFLOP/s; against a 100 GFLOP/s peak, 0.8657; 1024 tokens / 0.05 s = 20,480 tokens/s."""
    peak = accounting.MatmulPeak(gflops=100.0, median_s=0.1718, n=2048, repeats=7, blas_threads=2)
    info = accounting.step_info("fast", reference.preset("tiny"), "tiny", 16, 64, peak, 0.050)
    assert info["tokens_per_step"] == 1024
    assert info["tokens_per_s"] == pytest.approx(20_480.0, rel=1e-12)
    assert info["flop_per_s"] == pytest.approx(86.57043456e9, rel=1e-12)
    assert info["fraction_of_matmul_peak"] == pytest.approx(0.8657043456, rel=1e-12)
    assert info["seed_m1_ms"] == 25.0 and info["median_ms"] == pytest.approx(50.0)
    # without a median (timing disabled) only the static fields are present
    static = accounting.step_info("fast", reference.preset("tiny"), "tiny", 16, 64, peak, None)
    assert "tokens_per_s" not in static and static["training_flops_per_step"] == 4_328_521_728


def test_report_table_cells_by_hand():
    run = report.load_step_run(_hand_json())
    assert run.impls == ["reference", "fast"] and run.peak_gflops == 100.0
    assert report.speedup(run, "fast", "reference", ("tiny", 16, 64)) == pytest.approx(4.0)
    text = report.format_report(run)
    # fast: 50 ms, 86.6% of peak, 200/50 = 4.00x over reference, seed M1 25 ms
    assert "| Tiny | 0.8M | 50.0 ms (86.6% peak, 4.00x; M1 25) | n/a (M1 45) | n/a (M1 120) |" in text
    # reference is the baseline: no speedup in its own cells; small 8x128 is 1.5 s
    assert "| Tiny | 0.8M | 200 ms (21.6% peak; M1 25) |" in text
    assert "| Small | 3.5M | n/a (M1 50) | 1500 ms (5.0% peak; M1 90) | n/a (M1 250) |" in text
    assert "| Medium | 19.6M | ~200 ms | ~450 ms | ~1200 ms |" in text  # the seed's table
    assert "**100.0 GFLOP/s**" in text and "commit 0123456789" in text


def test_not_benchmark_json_is_a_clear_error():
    with pytest.raises(ValueError, match="x.json: not pytest-benchmark JSON"):
        report.load_step_run({"foo": 1}, "x.json")
    bad = {"benchmarks": [{"name": "test_train_step[a]", "extra_info": {"impl": "a"}}]}
    with pytest.raises(ValueError, match=r"has no extra_info \['preset', 'B', 'T'\]"):
        report.load_step_run(bad, "x.json")


def test_markdown_is_written_without_matplotlib(tmp_path, monkeypatch, capsys):
    """matplotlib is an optional extra: without it the report says so and still writes Markdown."""
    src = tmp_path / "step.json"
    src.write_text(json.dumps(_hand_json()))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert report.main(["--json", str(src), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "matplotlib is not installed" in printed and "pip install -e '.[plot]'" in printed
    assert (tmp_path / "out" / "report.md").read_text().startswith("# Training-step benchmarks")
    assert not (tmp_path / "out" / "report.png").exists()


def test_chart_is_a_png_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    run = report.load_step_run(_hand_json())
    assert report.write_chart(run, tmp_path / "c.png") is None
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


DOUBLE = '''
"""Test double for the report's end-to-end test: the contract names a training
step needs, doing matmul-shaped work. Not a model."""
import numpy as np
from reference import preset, init_params, Params

def forward(params, tokens, targets=None):
    x = params["token_embedding"][tokens]                      # (B, T, C)
    logits = x @ params["output_weight"]                       # (B, T, V)
    return logits, float(np.log(params.config.vocab_size)), x

def backward(params, cache):
    return params.zeros_like()

def clip_grad_norm(grads, max_norm=1.0):
    return float(np.sqrt(np.sum(grads.data.astype(np.float64) ** 2)))

def adamw_init(params):
    return {"t": 0}

def adamw_step(params, grads, state, lr, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1):
    state["t"] += 1
'''


@pytest.mark.slow
def test_report_end_to_end(tmp_path):
    """The report runs suites/bench_step.py for a named implementation and renders its table."""
    (tmp_path / "report_double_impl.py").write_text(textwrap.dedent(DOUBLE))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.tools.report", "--impl", "report_double_impl", "--out", str(out),
         "--min-rounds", "1", "--max-time", "0.01", "--", "-k", "tiny and 16x64"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (out / "report.md").read_text()
    assert "## report_double_impl" in text
    row = next(line for line in text.splitlines() if line.startswith("| Tiny | 0.8M |") and "peak" in line)
    assert row.split(" | ")[3].startswith("n/a")  # only 16x64 was selected
    data = json.loads((out / "step.json").read_text())
    info = data["benchmarks"][-1]["extra_info"]
    assert info["impl"] == "report_double_impl" and info["tokens_per_step"] == 1024
    assert info["fraction_of_matmul_peak"] > 0


def test_feste_bench_forwards_to_report(tmp_path):
    """`feste bench` is a thin wrapper: its options reach report.py unchanged."""
    from feste.cli import main

    src = tmp_path / "step.json"
    src.write_text(json.dumps(_hand_json()))
    out = tmp_path / "out"
    assert main(["bench", "--json", str(src), "--out", str(out), "--baseline", "fast"]) == 0
    text = (out / "report.md").read_text()
    # with fast as the baseline, reference's 200 ms cell shows 50/200 = 0.25x
    assert "| Tiny | 0.8M | 200 ms (21.6% peak, 0.25x; M1 25) |" in text
    # a missing --json is the report's usage error (a fresh --out: an existing one is refused first)
    assert main(["bench", "--json", str(tmp_path / "missing.json"), "--out", str(tmp_path / "out2")]) == 2


def test_components_table_shares_by_hand():
    """Phases 30 + 60 + 1 + 9 = 100 ms: forward is 30% of the step, backward 60%."""
    def b(component, impl, median):
        return {"name": "x", "stats": {"median": median}, "extra_info": {"impl": impl, "component": component}}

    data = {"benchmarks": [b("step: forward", "reference", 0.030), b("step: backward", "reference", 0.060),
                           b("step: clip", "reference", 0.001), b("step: adamw", "reference", 0.009),
                           b("gelu forward", "fast", 0.0025)]}
    text = report.format_components(data)
    assert "| step: forward | 30.0 ms (30% of step) | n/a |" in text
    assert "| step: backward | 60.0 ms (60% of step) | n/a |" in text
    assert "| gelu forward | n/a | 2.50 ms |" in text


def test_peer_columns_and_runtime_header_by_hand():
    """tiny 16x64: fast 50 ms, peer torch 90 ms -> 90/50 = 1.80x; the header says what ran."""
    data = _hand_json()
    data["machine_info"]["feste_runtime"] = {
        "blas": [{"internal_api": "openblas", "version": "0.3.31", "architecture": "Haswell",
                  "threading_layer": "pthreads", "num_threads": 1, "filepath": "libopenblas.so"}],
        "numba": "0.68.1", "numba_threads": 1, "numba_threading_layer": "omp", "cpu_isa": "avx512",
        "env": {"OPENBLAS_CORETYPE": "Haswell"}, "kernel_warnings": ["pinned by OPENBLAS_CORETYPE=Haswell"]}
    data["benchmarks"].append({
        "name": "test_train_step_peer[peer-torch-tiny-16x64]", "stats": {"median": 0.090},
        "extra_info": {"impl": "peer:torch", "peer": "torch", "preset": "tiny", "B": 16, "T": 64,
                       "fraction_of_matmul_peak": 0.4809, "peer_version": "2.13.0", "peer_threads": 1}})
    run = report.load_step_run(data)
    assert run.impls == ["reference", "fast"] and list(run.peers) == ["torch"]
    text = report.format_report(run)
    assert "| tiny-16x64 | 90.0 ms | 48.1% | 200 ms | 21.6% | 0.45x | 50.0 ms | 86.6% | 1.80x |" in text
    assert "kernel Haswell, threading pthreads, 1 threads" in text
    assert "Numba 0.68.1: 1 threads, threading layer omp" in text
    assert "**Warning: pinned by OPENBLAS_CORETYPE=Haswell**" in text
