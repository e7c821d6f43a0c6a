"""The performance accounting (SPEC §performance) against independent oracles:
a hand-derived figure and a count that walks every matmul of the model."""
from __future__ import annotations

import numpy as np
import pytest

import reference
from benchmarks.lib import accounting


def _matmul_walk_forward_flops(config, B, T) -> int:
    """Oracle: list every matmul of one forward pass as (rows, inner, cols)
    and add 2*rows*inner*cols. Attention is per (batch, head): QK^T is
    (T, hs) @ (hs, T) and AV is (T, T) @ (T, hs), full squares."""
    C, V, NH = config.n_embd, config.vocab_size, config.n_heads
    hs = C // NH
    shapes = []
    for _ in range(config.n_layers):
        shapes += [(B * T, C, C)] * 4  # q, k, v, out projections
        shapes += [(B * T, C, 4 * C), (B * T, 4 * C, C)]  # fc1, fc2
        shapes += [(T, hs, T)] * (B * NH)  # QK^T per (b, head)
        shapes += [(T, T, hs)] * (B * NH)  # AV per (b, head)
    shapes.append((B * T, C, V))  # output projection
    return sum(2 * m * k * n for m, k, n in shapes)


def test_tiny_16x64_by_hand():
    """tiny: L=3, C=128, V=512; B=16, T=64 (B*T = 1024).
    weights: 12*C*C = 196,608 per layer, x3 = 589,824; + C*V = 65,536 -> 655,360;
      x 2 x 1024 = 1,342,177,280.
    attention: L*4*B*T*T*C = 3*4*16*64*64*128 = 100,663,296.
    forward = 1,442,840,576; training = 3x = 4,328,521,728."""
    config = reference.preset("tiny")
    assert accounting.forward_flops(config, 16, 64) == 1_442_840_576
    assert accounting.training_flops(config, 16, 64) == 4_328_521_728


@pytest.mark.parametrize("preset_name", accounting.PRESET_NAMES)
@pytest.mark.parametrize("B,T", accounting.CELLS)
def test_formula_matches_matmul_walk(preset_name, B, T):
    config = reference.preset(preset_name)
    assert accounting.forward_flops(config, B, T) == _matmul_walk_forward_flops(config, B, T)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_batch_shape_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="B must be a positive int"):
        accounting.forward_flops(reference.preset("tiny"), bad, 64)


def test_seed_table_covers_the_nine_cells():
    """The seed's M1 table: Tiny 25/45/120, Small 50/90/250, Medium 200/450/1200 ms."""
    want = {"tiny": (25, 45, 120), "small": (50, 90, 250), "medium": (200, 450, 1200)}
    for name, row in want.items():
        for (B, T), ms in zip(accounting.CELLS, row):
            assert accounting.SEED_M1_MS[(name, B, T)] == ms
    assert len(accounting.SEED_M1_MS) == 9


def test_peak_fraction_is_flops_over_time_over_peak():
    """A 2 GFLOP piece of work in 0.1 s is 20 GFLOP/s; against a 40 GFLOP/s peak: 0.5."""
    peak = accounting.MatmulPeak(gflops=40.0, median_s=0.43, n=2048, repeats=3, blas_threads=2)
    assert peak.fraction(2e9, 0.1) == pytest.approx(0.5, rel=1e-12)


def test_measured_peak_is_consistent_with_its_own_median():
    """The measured GFLOP/s is 2*n^3 / median / 1e9 (small n so the test is fast)."""
    peak = accounting.measure_matmul_peak(n=64, repeats=3, warmup=1)
    assert peak.gflops == pytest.approx(2 * 64 ** 3 / peak.median_s / 1e9, rel=1e-12)
    assert peak.gflops > 0 and peak.n == 64 and peak.repeats == 3


def test_fixed_batch_targets_are_next_tokens():
    from benchmarks.lib.harness import fixed_batch

    x, y = fixed_batch(vocab_size=7, B=3, T=5)
    assert x.shape == y.shape == (3, 5) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert x.min() >= 0 and max(x.max(), y.max()) < 7
    x2, _ = fixed_batch(vocab_size=7, B=3, T=5)
    np.testing.assert_array_equal(x, x2)  # fixed: the same batch every call
