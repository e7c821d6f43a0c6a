"""Model configuration and the three presets (SPEC §model).

Dimension legend: V vocab, C n_embd, NH n_heads, L n_layers, block_size max T.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .dropout import check_rate


@dataclass(frozen=True)
class Config:
    """GPT-2 model shape. Field order is the checkpoint JSON order (SPEC §checkpoint)."""

    vocab_size: int = 512  # V: number of token ids
    n_embd: int = 128  # C: width of the residual stream
    n_heads: int = 4  # NH: attention heads, C % NH == 0
    n_layers: int = 3  # L: transformer blocks
    block_size: int = 256  # maximum sequence length T
    dropout_rate: float = 0.0  # dropout probability p (SPEC §dropout), stored as its float32 value; 0.0 in every preset

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_embd", "n_heads", "n_layers", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"Config.{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"Config.{name} must be positive, got {value}")
        if self.n_embd % self.n_heads != 0:
            raise ValueError(
                f"Config.n_embd ({self.n_embd}) must be divisible by n_heads ({self.n_heads})"
            )
        try:  # rounded to float32, as the checkpoint stores it: a resumed run has the same p
            rate = check_rate(self.dropout_rate)
        except ValueError as exc:
            raise ValueError(f"Config.dropout_rate: {exc}") from None
        object.__setattr__(self, "dropout_rate", rate)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_heads

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, Config] = {
    "tiny": Config(vocab_size=512, n_embd=128, n_heads=4, n_layers=3, block_size=256),
    "small": Config(vocab_size=512, n_embd=256, n_heads=4, n_layers=4, block_size=256),
    "medium": Config(vocab_size=512, n_embd=512, n_heads=8, n_layers=6, block_size=256),
}


def preset(name: str) -> Config:
    """The named preset (tiny, small, medium)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
