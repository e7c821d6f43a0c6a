"""What a benchmark times, built once and warmed up outside the timing.

A training step (SPEC §performance) is forward + loss + backward + gradient norm
and clip + AdamW on one fixed batch. `TrainStep` builds the state and runs
`warmup` steps (Numba compiles on the first); calling it runs one step. It only calls contract names (SPEC §contract), so it
works for any implementation; a missing name raises AttributeError (through
the `impl` fixture: skips the benchmark with the reason).
"""
from __future__ import annotations

import numpy as np

BATCH_SEED = 1234  # the fixed random batch every implementation sees
PARAM_SEED = 0
LEARNING_RATE = 3e-4  # the seed's default; any positive value times the same
MAX_NORM = 1.0


def parse_cell(cell: str) -> tuple[str, int, int]:
    """'tiny-16x64' -> ('tiny', 16, 64)."""
    try:
        preset, shape = cell.split("-")
        B, T = (int(x) for x in shape.split("x"))
    except ValueError:
        raise ValueError(f"cell {cell!r} is not PRESET-BxT such as tiny-16x64") from None
    return preset, B, T


def fixed_batch(vocab_size: int, B: int, T: int, seed: int = BATCH_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) int64 [B, T]: fixed random tokens, y the next-token targets of x."""
    if B < 1 or T < 1:
        raise ValueError(f"batch shape must be positive, got B={B}, T={T}")
    rng = np.random.default_rng(seed)
    window = rng.integers(0, vocab_size, size=(B, T + 1), dtype=np.int64)  # (B, T+1)
    return np.ascontiguousarray(window[:, :-1]), np.ascontiguousarray(window[:, 1:])  # (B, T) each


class TrainStep:
    """One full training step of `impl` on a fixed batch; call it to run one
    step. With `dropout` > 0 the config gets that rate and step n draws the
    masks of DropoutKey(PARAM_SEED, n), as the trainer does (SPEC §dropout)."""

    def __init__(self, impl, config, B: int, T: int, warmup: int = 1, dropout: float = 0.0):
        if T > config.block_size:
            raise ValueError(f"T={T} exceeds block_size={config.block_size}")
        self.impl = impl
        config = config.replace(dropout_rate=dropout) if dropout else config
        self.config = config
        self.key = impl.DropoutKey if dropout else None
        self.n = 0  # steps run
        self.B, self.T = B, T
        self.params = impl.init_params(config, seed=PARAM_SEED)
        self.state = impl.adamw_init(self.params)
        self.x, self.y = fixed_batch(config.vocab_size, B, T)
        # resolve every name now, so a missing one skips before any timing
        self._forward, self._backward = impl.forward, impl.backward
        self._clip, self._adamw = impl.clip_grad_norm, impl.adamw_step
        self.last_loss = None
        for _ in range(warmup):
            self()

    def __call__(self) -> float:
        if self.key is None:
            _logits, loss, cache = self._forward(self.params, self.x, self.y)
        else:
            _logits, loss, cache = self._forward(self.params, self.x, self.y, dropout=self.key(PARAM_SEED, self.n))
        self.n += 1
        grads = self._backward(self.params, cache)
        self._clip(grads, MAX_NORM)
        self._adamw(self.params, grads, self.state, LEARNING_RATE)
        self.last_loss = loss
        return loss
