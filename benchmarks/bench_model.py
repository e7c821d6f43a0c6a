"""Model forward + backward (SPEC sections 2 and 9): the nine cells.

`forward(params, x, y)` (logits and loss) then `backward(params, cache)` on a
fixed random batch, for every implementation (`impl` fixture) and the cells
tiny, small, medium x (B, T) = (16, 64), (8, 128), (4, 256); no clipping, no
AdamW (bench_step.py times the whole training step). One untimed call first
(Numba compiles there). FLOPs are the training FLOPs of SPEC section 9
(3 x forward: the backward does two matmuls per forward one).

    python -m pytest benchmarks/bench_model.py                       # every impl
    python -m pytest benchmarks/bench_model.py --impl reference -k tiny

The machine is shared and has 2 cores: medians move by tens of percent from
run to run; compare revisions with compare.sh on an idle machine.
"""
from __future__ import annotations

import numpy as np
import pytest

import accounting
from harness import PARAM_SEED, fixed_batch, median_seconds

ROUNDS = 5


@pytest.mark.parametrize("B,T", accounting.CELLS, ids=[f"{B}x{T}" for B, T in accounting.CELLS])
@pytest.mark.parametrize("preset_name", accounting.PRESET_NAMES)
def test_forward_backward(benchmark, impl, matmul_peak, preset_name, B, T):
    config = impl.preset(preset_name)
    params = impl.init_params(config, seed=PARAM_SEED)
    x, y = fixed_batch(config.vocab_size, B, T)
    forward, backward = impl.forward, impl.backward

    def step():
        _logits, loss, cache = forward(params, x, y)
        backward(params, cache)
        return loss

    loss = step()  # warm-up (compilation), untimed
    assert np.isfinite(loss), f"{impl.name} {preset_name} B={B} T={T}: non-finite loss {loss}"
    benchmark.group = f"forward+backward {accounting.cell_id(preset_name, B, T)}"
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1)
    info = accounting.step_info(impl.name, config, preset_name, B, T, matmul_peak, median_seconds(benchmark))
    info["component"] = "forward+backward"
    benchmark.extra_info.update(info)
