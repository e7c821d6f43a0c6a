"""The parameter table and the `Params` container (SPEC §model and §checkpoint).

One table, in checkpoint order, drives everything that walks the parameters:
init, the flat buffer and its named views, gradients, AdamW state, the weight
decay mask and checkpoint I/O.

Dimension legend: V vocab, C n_embd, L n_layers, block_size max T.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .config import Config

BLOCK_TENSORS = (
    "ln1.gamma", "ln1.beta",
    "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
    "out.weight", "out.bias",
    "ln2.gamma", "ln2.beta",
    "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
)


@dataclass(frozen=True)
class ParamSpec:
    """One row of the parameter table."""

    name: str  # e.g. "blocks.0.q.weight"
    shape: tuple[int, ...]
    init: str  # "normal" (draw * std), "zeros" or "ones"
    std: float  # standard deviation for "normal", else 0.0
    decayed: bool  # AdamW weight decay applies (2-D weight matrices only)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def param_table(config: Config) -> list[ParamSpec]:
    """Every parameter tensor in checkpoint order (SPEC §checkpoint)."""
    V, C, L = config.vocab_size, config.n_embd, config.n_layers
    std = 0.02
    resid_std = 0.02 / math.sqrt(2 * L)  # attention-out and fc2 (GPT-2 residual scaling)
    rows = [
        ParamSpec("token_embedding", (V, C), "normal", std, False),
        ParamSpec("position_embedding", (config.block_size, C), "normal", std, False),
    ]
    for i in range(L):
        def row(suffix, shape, init, s=0.0, decayed=False):
            rows.append(ParamSpec(f"blocks.{i}.{suffix}", shape, init, s, decayed))

        row("ln1.gamma", (C,), "ones")
        row("ln1.beta", (C,), "zeros")
        for proj in ("q", "k", "v"):
            row(f"{proj}.weight", (C, C), "normal", std, True)
            row(f"{proj}.bias", (C,), "zeros")
        row("out.weight", (C, C), "normal", resid_std, True)
        row("out.bias", (C,), "zeros")
        row("ln2.gamma", (C,), "ones")
        row("ln2.beta", (C,), "zeros")
        row("fc1.weight", (C, 4 * C), "normal", std, True)
        row("fc1.bias", (4 * C,), "zeros")
        row("fc2.weight", (4 * C, C), "normal", resid_std, True)
        row("fc2.bias", (C,), "zeros")
    rows += [
        ParamSpec("ln_final.gamma", (C,), "ones", 0.0, False),
        ParamSpec("ln_final.beta", (C,), "zeros", 0.0, False),
        ParamSpec("output_weight", (C, V), "normal", std, True),
    ]
    return rows


def n_params(config: Config) -> int:
    """Total number of scalar parameters, the sizes of `param_table` summed in closed
    form (O(1), so an absurd config is sized without building its table):
    V*C + T*C (embeddings) + L*(12*C*C + 13*C) (blocks) + 2*C (final LayerNorm) + C*V (output)."""
    V, C, L, T = config.vocab_size, config.n_embd, config.n_layers, config.block_size
    return V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C + C * V


class Params:
    """All parameters (or gradients, or AdamW moments) in one flat buffer.

    `params["blocks.0.q.weight"]` is a view into `params.data`, so zeroing is
    one fill, AdamW is one pass and a checkpoint is one walk over the table.
    """

    def __init__(self, config: Config, data: np.ndarray | None = None, dtype=np.float32):
        self.config = config
        self.table = param_table(config)
        total = sum(spec.size for spec in self.table)
        if data is None:
            data = np.zeros(total, dtype=dtype)
        if data.ndim != 1 or data.size != total:
            raise ValueError(f"Params data must be a flat array of {total} values, got shape {data.shape}")
        if data.dtype not in (np.float32, np.float64):
            raise ValueError(f"Params data must be float32 or float64, got {data.dtype}")
        self.data = data
        self._views: dict[str, np.ndarray] = {}
        self._offsets: dict[str, int] = {}
        offset = 0
        for spec in self.table:
            self._offsets[spec.name] = offset
            self._views[spec.name] = data[offset:offset + spec.size].reshape(spec.shape)
            offset += spec.size

    # --- mapping interface -------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._views[name]
        except KeyError:
            raise KeyError(f"no parameter named {name!r}") from None

    def __setitem__(self, name: str, value) -> None:
        self[name][...] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def names(self) -> list[str]:
        return list(self._views)

    def items(self):
        return self._views.items()

    def offset(self, name: str) -> int:
        """Start of the named tensor inside the flat buffer."""
        return self._offsets[name]

    @property
    def dtype(self):
        return self.data.dtype

    def copy(self) -> "Params":
        return Params(self.config, self.data.copy())

    def zeros_like(self) -> "Params":
        return Params(self.config, np.zeros_like(self.data))

    def astype(self, dtype) -> "Params":
        return Params(self.config, self.data.astype(dtype))

    def decay_mask(self) -> np.ndarray:
        """Flat bool array: True where AdamW weight decay applies (SPEC §optimiser)."""
        mask = np.zeros(self.data.size, dtype=bool)
        for spec in self.table:
            if spec.decayed:
                start = self._offsets[spec.name]
                mask[start:start + spec.size] = True
        return mask

    def __repr__(self) -> str:
        return f"Params({self.config}, {self.data.size} values, {self.data.dtype})"


def init_params(config: Config, seed: int = 0, dtype=np.float32) -> Params:
    """GPT-2 init (SPEC §model): one seeded Generator, checkpoint order,
    float32 standard-normal draws scaled by float32(std); ones and zeros draw nothing.
    float64 params hold the same float32 draws, widened."""
    rng = np.random.default_rng(seed)
    params = Params(config, dtype=dtype)
    for spec in params.table:
        if spec.init == "normal":
            params[spec.name] = rng.standard_normal(spec.shape, dtype=np.float32) * np.float32(spec.std)
        elif spec.init == "ones":
            params[spec.name] = 1.0
        # "zeros": the buffer already holds zeros
    return params
