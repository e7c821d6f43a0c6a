"""Train/validation split, the sequential window loader and seeded random
batches (SPEC §data).

Dimension legend: n tokens in a split, B batch size, T sequence length.
Batches are int64 arrays: inputs x [B, T] and targets y [B, T], y the
inputs shifted by one token.
"""
from __future__ import annotations

import numpy as np


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_tokens(tokens) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be a 1-D array of token ids, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"tokens must be integers, got dtype {arr.dtype}")
    return arr


def _check_fraction(val_fraction) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating)):
        raise ValueError(f"val_fraction must be a number, got {val_fraction!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return float(val_fraction)


def split_point(n: int, val_fraction: float = 0.1) -> int:
    """Number of training tokens: int(n * (1.0 - val_fraction)) in float64 (SPEC §data)."""
    return int(n * (1.0 - _check_fraction(val_fraction)))


def train_val_split(tokens, val_fraction=0.1):
    """(train, val): the first n_train tokens and the rest, n_train = split_point(n).

    The two arrays are views of `tokens` and together are exactly `tokens`.
    """
    tokens = _check_tokens(tokens)  # (n,)
    n_train = split_point(tokens.size, val_fraction)
    return tokens[:n_train], tokens[n_train:]


def num_windows(n: int, seq_len: int) -> int:
    """Windows starting at 0, T, 2T, ... that fit: s + T + 1 <= n, i.e. (n - 1) // T (0 if n < T + 1)."""
    return max(n - 1, 0) // seq_len


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int):
    """x = tokens[s:s+T], y = tokens[s+1:s+T+1] for each start s, as int64 [len(starts), T]."""
    idx = starts[:, None] + np.arange(seq_len)[None, :]  # (B, T)
    x = tokens[idx].astype(np.int64)  # (B, T)
    y = tokens[idx + 1].astype(np.int64)  # (B, T)
    return x, y


class TextDataLoader:
    """Sequential non-overlapping windows over one split, B windows per batch.

    Window w of a split starts at w * T; batch i holds windows i*B .. i*B+B-1,
    so consecutive batches tile the split in order. The last partial batch is
    dropped. `next_batch()` returns None at the end of an epoch and rewinds,
    so the next call starts the next epoch (as Feste's loader does).
    """

    def __init__(self, tokens, seq_len, batch_size, val_fraction=0.1):
        tokens = _check_tokens(tokens)  # (n,)
        self.seq_len = _check_int("seq_len", seq_len, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.val_fraction = _check_fraction(val_fraction)
        if tokens.size < self.seq_len + 1:
            raise ValueError(
                f"corpus has {tokens.size} tokens, fewer than seq_len + 1 = {self.seq_len + 1}: "
                "one window needs T inputs and one more target")
        self.train_tokens, self.val_tokens = train_val_split(tokens, self.val_fraction)
        if self.train_tokens.size < self.seq_len + 1:
            raise ValueError(
                f"training split has {self.train_tokens.size} tokens (of {tokens.size}, "
                f"val_fraction={self.val_fraction}), fewer than seq_len + 1 = {self.seq_len + 1}")
        self.validation = False
        self.position = 0  # index of the next window in the current split

    @property
    def tokens(self) -> np.ndarray:
        """The current split."""
        return self.val_tokens if self.validation else self.train_tokens

    def set_validation(self, flag) -> None:
        """Switch to the validation split (True) or the training split (False), and rewind."""
        self.validation = bool(flag)
        self.position = 0

    def reset(self) -> None:
        """Rewind to the first window of the current split."""
        self.position = 0

    def num_windows(self, validation=None) -> int:
        """Windows in the current split (or in the named one: validation True/False)."""
        split = self.tokens if validation is None else (self.val_tokens if validation else self.train_tokens)
        return num_windows(split.size, self.seq_len)

    def num_batches(self) -> int:
        """Full batches per epoch of the current split."""
        return self.num_windows() // self.batch_size

    def next_batch(self):
        """(x, y) int64 [B, T], or None (and rewind) when no full batch is left."""
        if self.position + self.batch_size > self.num_windows():
            self.position = 0
            return None
        starts = (self.position + np.arange(self.batch_size)) * self.seq_len  # (B,)
        self.position += self.batch_size
        return _windows(self.tokens, starts, self.seq_len)

    def __iter__(self):
        """One epoch of the current split from its start."""
        self.reset()
        while (batch := self.next_batch()) is not None:
            yield batch

    def __len__(self) -> int:
        return self.num_batches()


def batch_offsets(tokens, batch_size, seq_len, seed, step):
    """The checked token array and the B window start offsets of the random
    batch for (seed, step): the drawing half of `random_batch`, shared with
    the implementations that gather the windows their own way."""
    tokens = _check_tokens(tokens)  # (n,)
    batch_size = _check_int("batch_size", batch_size, 1)
    seq_len = _check_int("seq_len", seq_len, 1)
    seed = _check_int("seed", seed, 0)
    step = _check_int("step", step, 0)
    if tokens.size < seq_len + 1:
        raise ValueError(
            f"tokens has {tokens.size} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    rng = np.random.default_rng([seed, step])
    offsets = rng.integers(0, tokens.size - seq_len, size=batch_size)  # (B,) int64
    return tokens, offsets


def random_batch(tokens, batch_size, seq_len, seed, step):
    """(x, y) int64 [B, T] at offsets drawn for (seed, step) (SPEC §data).

    offsets = np.random.default_rng([seed, step]).integers(0, len(tokens) - T, size=B)
    x[b] = tokens[o_b : o_b + T], y[b] = tokens[o_b + 1 : o_b + T + 1]. A pure
    function of its arguments: a resumed run sees the batches it would have seen.
    """
    tokens, offsets = batch_offsets(tokens, batch_size, seq_len, seed, step)  # (n,), (B,)
    return _windows(tokens, offsets, int(seq_len))
