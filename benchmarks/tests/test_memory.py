"""benchmarks/tools/memory.py: SPEC §activation-memory's prediction by hand, and one real fresh-process measurement."""
from __future__ import annotations

import pytest

import reference
from benchmarks.tools import memory


def test_prediction_by_hand():
    """tiny: L=3, C=128, NH=4, V=512; B=2, T=8. Cache elements per token:
    3 * (16*128 + 2 + 4*8) + 2*128 + 1 + 512 = 3 * 2082 + 769 = 7015, x 4 bytes = 28,060;
    16 tokens: 448,960 bytes. Logits 16 * 512 * 4 = 32,768 bytes. Gradients: 758,912 params x 4."""
    p = memory.predicted_bytes(reference.preset("tiny"), 2, 8)
    assert p["cache_bytes_per_token"] == 28_060
    assert p["cache_mb"] == pytest.approx(0.448960)
    assert p["logits_mb"] == pytest.approx(0.032768)
    assert p["grads_mb"] == pytest.approx(758_912 * 4 / 1e6)


@pytest.mark.slow
def test_a_fresh_process_measures_the_step():
    """reference, tiny, 2 x 8, two steps: every figure is there and consistent, and
    the process held at least its parameters, gradients and two AdamW moments."""
    r = memory.measure("reference", "tiny", 2, 8, steps=2, timeout=600)
    assert r["n_params"] == 758_912 and r["steps"] == 2
    assert r["rss_after_warmup_mb"] <= r["rss_after_setup_mb"] <= r["peak_rss_mb"]
    assert r["tracemalloc_peak_mb"] >= r["after_forward_mb"] > 0
    assert r["peak_rss_mb"] * 1e6 >= 4 * 4 * r["n_params"]
    assert r["predicted_total_mb"] == pytest.approx(sum(r["predicted"][k] for k in ("cache_mb", "logits_mb",
                                                                                     "grads_mb")))
