"""Training-step benchmarks: the seed's table (SPEC §performance).

One full step (forward, loss, backward, gradient norm and clip, AdamW) on a
fixed random batch, for every implementation and the nine cells tiny, small,
medium x (B, T) = (16, 64), (8, 128), (4, 256). Building the state and the
warm-up step (Numba compiles there) happen before the timing. `extra_info`
holds the implementation, threads, tokens per step, tokens/s, training FLOPs
per step, FLOP/s and the fraction of the float32 matmul peak measured in the
same session (`test_matmul_peak` is that measurement as its own benchmark).

    python -m pytest benchmarks/suites/bench_step.py                 # every impl, every cell
    feste bench                                                      # the same, as the seed's table
    python -m pytest benchmarks/suites/bench_step.py --peer torch    # and the PyTorch peer beside each cell
    python -m pytest benchmarks/suites/bench_step.py -k "train_step and not peer" --impl fast
                                                                     # dropout 0.1 beside dropout 0, per cell

`test_train_step_dropout` is the same step with dropout 0.1 (GPT-2's rate,
SPEC §dropout; each step draws new masks, as in training). Training-step items are
sorted by cell (benchmarks/conftest.py), so it runs right after the cell's
`test_train_step`: the dropout cost is the ratio of the two medians.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.lib import accounting, torch_peer
from benchmarks.lib.harness import TrainStep
from benchmarks.lib.timing import median_seconds


def test_matmul_peak(benchmark, matmul_peak):
    """np.matmul on 2048 x 2048 float32: the peak every step is measured against.

    The session fixture measured it once already (the figure the step
    benchmarks use); this benchmark times it again with pytest-benchmark's
    statistics so it is tracked across revisions like everything else."""
    a, b = accounting.matmul_operands(accounting.PEAK_N)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: BLAS thread pool start
    benchmark.group = "matmul peak"
    benchmark(np.matmul, a, b, out=out)
    median = median_seconds(benchmark)
    flops = accounting.matmul_flops(accounting.PEAK_N)
    benchmark.extra_info.update({
        "n": accounting.PEAK_N, "flops": flops, "blas_threads": accounting.blas_threads(),
        "session_peak_gflops": matmul_peak.gflops,
    })
    if median is not None:
        benchmark.extra_info["gflops"] = flops / median / 1e9
    # the product really was computed (a cheap spot check: one output element)
    assert np.isclose(out[0, 0], np.dot(a[0, :].astype(np.float64), b[:, 0].astype(np.float64)),
                      rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("B,T", accounting.CELLS, ids=[f"{B}x{T}" for B, T in accounting.CELLS])
@pytest.mark.parametrize("preset_name", accounting.PRESET_NAMES)
def test_train_step(benchmark, impl, matmul_peak, preset_name, B, T):
    config = impl.preset(preset_name)
    step = TrainStep(impl, config, B, T, warmup=1)  # compile + warm-up, untimed
    benchmark.group = f"train step {accounting.cell_id(preset_name, B, T)}"
    benchmark(step)
    loss = float(step.last_loss)
    assert np.isfinite(loss), f"{impl.name} {preset_name} B={B} T={T}: non-finite loss {loss}"
    info = accounting.step_info(impl.name, config, preset_name, B, T, matmul_peak, median_seconds(benchmark))
    benchmark.extra_info.update(info)


DROPOUT = 0.1  # GPT-2's rate


@pytest.mark.parametrize("B,T", accounting.CELLS, ids=[f"{B}x{T}" for B, T in accounting.CELLS])
@pytest.mark.parametrize("preset_name", accounting.PRESET_NAMES)
def test_train_step_dropout(benchmark, impl, matmul_peak, preset_name, B, T):
    """test_train_step with dropout DROPOUT at the four sites (SPEC §dropout)."""
    config = impl.preset(preset_name)
    step = TrainStep(impl, config, B, T, warmup=1, dropout=DROPOUT)
    benchmark.group = f"train step {accounting.cell_id(preset_name, B, T)}"
    benchmark(step)
    assert np.isfinite(float(step.last_loss)), f"{impl.name} {preset_name} B={B} T={T} dropout: non-finite loss"
    info = accounting.step_info(impl.name, config, preset_name, B, T, matmul_peak, median_seconds(benchmark))
    info["dropout"] = DROPOUT
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("B,T", accounting.CELLS, ids=[f"{B}x{T}" for B, T in accounting.CELLS])
@pytest.mark.parametrize("preset_name", accounting.PRESET_NAMES)
def test_train_step_peer(benchmark, peer, matmul_peak, preset_name, B, T):
    """The peer (`--peer torch`: benchmarks/lib/torch_peer.py) on the same cell, batch,
    init and thread count as the implementations; skipped with the reason when
    its library is missing."""
    import reference

    why_not = torch_peer.available()
    if why_not:
        pytest.skip(why_not)
    config = reference.preset(preset_name)
    threads = accounting.numba_threads() or accounting.blas_threads() or 1
    step = torch_peer.TorchTrainStep(config, B, T, threads, warmup=1)  # warm-up, untimed
    benchmark.group = f"train step {accounting.cell_id(preset_name, B, T)}"
    benchmark(step)
    assert np.isfinite(step.last_loss), f"peer {peer} {preset_name} B={B} T={T}: non-finite loss"
    info = accounting.step_info(f"peer:{peer}", config, preset_name, B, T, matmul_peak, median_seconds(benchmark))
    info.update({"peer": peer, "peer_threads": step.threads, "peer_version": step.torch_version,
                 "peer_backend": step.backend})
    benchmark.extra_info.update(info)
