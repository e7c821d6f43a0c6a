"""Hypothesis strategies, in one module, with labelled draws.

Profiles (`dev`, `ci`, both with `deadline=None` because Numba compiles on
first call) are registered by the plugin; HYPOTHESIS_PROFILE picks one.
"""
from __future__ import annotations

from hypothesis import strategies as st

import reference

# --- texts and bytes (tokenizer, corpus) ------------------------------------
# Arbitrary Unicode text (including "", astral-plane emoji, combining marks)
texts = st.text(max_size=200)
# Arbitrary bytes, including invalid UTF-8
byte_strings = st.binary(max_size=200)
# Small alphabets make repeated pairs, hence merges, likely
repetitive_texts = st.text(alphabet="ab c\n", min_size=0, max_size=120)
# Bytes over a tiny alphabet with a non-ASCII byte: runs ("aaaa"), overlapping
# pairs and ties in the pair counts are the common case, not the rare one
pair_heavy_bytes = st.lists(st.sampled_from(b"aab \xff"), max_size=150).map(bytes)


# --- token arrays for the data loader (SPEC §data) ------------------------
@st.composite
def loader_shapes(draw):
    """(n_tokens, seq_len, batch_size, val_fraction) the loader accepts:
    the training split holds at least seq_len + 1 tokens."""
    seq_len = draw(st.integers(1, 9), label="seq_len")
    batch_size = draw(st.integers(1, 4), label="batch_size")
    val_fraction = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5]), label="val_fraction")
    n = draw(st.integers(seq_len + 1, 300), label="n_tokens")
    if int(n * (1.0 - val_fraction)) < seq_len + 1:
        n = 2 * (seq_len + 1) + 2  # with val_fraction <= 0.5 the split now fits
    return n, seq_len, batch_size, val_fraction


# --- model configs and token arrays -----------------------------------------
@st.composite
def small_configs(draw, max_embd: int = 16, max_layers: int = 2, max_block: int = 8):
    """A small valid Config: n_heads divides n_embd."""
    n_heads = draw(st.integers(1, 4), label="n_heads")
    head_size = draw(st.integers(1, max(1, max_embd // n_heads)), label="head_size")
    return reference.Config(
        vocab_size=draw(st.integers(2, 24), label="vocab_size"),
        n_embd=n_heads * head_size,
        n_heads=n_heads,
        n_layers=draw(st.integers(1, max_layers), label="n_layers"),
        block_size=draw(st.integers(1, max_block), label="block_size"),
    )


@st.composite
def config_and_batch(draw, **config_kwargs):
    """(config, B, T, seed) with T <= block_size, B >= 1."""
    config = draw(small_configs(**config_kwargs), label="config")
    B = draw(st.integers(1, 3), label="B")
    T = draw(st.integers(1, config.block_size), label="T")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    return config, B, T, seed


# --- optimiser (SPEC §optimiser) ------------------------------------------------
@st.composite
def schedule_args(draw):
    """(base_lr, warmup_steps, total_steps, schedule, min_lr) for learning_rate."""
    base = draw(st.floats(1e-6, 1.0), label="base_lr")
    warmup = draw(st.integers(0, 20), label="warmup_steps")
    total = draw(st.integers(warmup, warmup + 40), label="total_steps")
    schedule = draw(st.sampled_from(["constant", "cosine"]), label="schedule")
    min_lr = draw(st.floats(0.0, base), label="min_lr")
    return base, warmup, total, schedule, min_lr


# --- byte mutations of valid files (the fuzz of SPEC §checkpoint and §tokenizer) ----------------------
def _offset(draw, hot: tuple[int, ...], last: int) -> int:
    """An offset in [0, last]: any, or near a `hot` one (headers, lengths, flags)."""
    if hot and draw(st.booleans(), label="near a hot offset"):
        return min(max(draw(st.sampled_from(hot), label="hot") + draw(st.integers(-2, 8), label="delta"), 0), last)
    return draw(st.integers(0, last), label="offset")


@st.composite
def in_place_edits(draw, size: int, hot: tuple[int, ...] = (), max_edits: int = 3):
    """1..max_edits edits [(offset, new byte)] that keep the length: a bit flip or
    a byte set, at any offset or near a `hot` one (headers, lengths, flags)."""
    edits = []
    for _ in range(draw(st.integers(1, max_edits), label="n_edits")):
        offset = _offset(draw, hot, size - 1)
        if draw(st.booleans(), label="flip a bit"):
            edits.append((offset, ("flip", draw(st.integers(0, 7), label="bit"))))
        else:
            edits.append((offset, ("set", draw(st.integers(0, 255), label="byte"))))
    return edits


def apply_in_place(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for offset, (kind, value) in edits:
        out[offset] = out[offset] ^ (1 << value) if kind == "flip" else value
    return bytes(out)


@st.composite
def structural_edit(draw, size: int, hot: tuple[int, ...] = ()):
    """One edit that changes the length: (kind, offset, payload) with kind truncate,
    delete (payload: count), insert or append (payload: bytes)."""
    kind = draw(st.sampled_from(["truncate", "delete", "insert", "append"]), label="kind")
    offset = _offset(draw, hot, size)
    if kind == "delete":
        return kind, min(offset, size - 1), draw(st.integers(1, 16), label="count")
    if kind in ("insert", "append"):
        return kind, offset, draw(st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from([b" ", b"\n", b"0"])),
                                  label="payload")
    return kind, offset, None


def apply_structural(data: bytes, edit) -> bytes:
    kind, offset, payload = edit
    if kind == "truncate":
        return data[:offset]
    if kind == "delete":
        return data[:offset] + data[offset + payload:]
    if kind == "insert":
        return data[:offset] + payload + data[offset:]
    return data + payload


@st.composite
def in_place_mutation(draw, data: bytes, hot: tuple[int, ...] = (), max_edits: int = 3):
    """(edits, `data` with them applied): in_place_edits of a valid file."""
    edits = draw(in_place_edits(len(data), hot, max_edits), label="edits")
    return edits, apply_in_place(data, edits)


@st.composite
def structural_mutation(draw, data: bytes, hot: tuple[int, ...] = ()):
    """(edit, `data` with it applied): a structural_edit of a valid file."""
    edit = draw(structural_edit(len(data), hot), label="edit")
    return edit, apply_structural(data, edit)