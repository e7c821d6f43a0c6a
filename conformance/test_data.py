"""Conformance: train/validation split, sequential loader, random batches (SPEC §data).

Independent oracles: hand-derived split sizes, tokens = arange(n) so that a
batch spells out the positions it was cut from (x[b, t] = start + t), a naive
loop that lists the windows, and the SPEC's offset formula evaluated here
with numpy's Generator directly.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.strategies import loader_shapes


def loop_windows(n: int, T: int) -> list[int]:
    """Window starts 0, T, 2T, ... while start + T + 1 <= n, by a plain loop."""
    starts, s = [], 0
    while s + T + 1 <= n:
        starts.append(s)
        s += T
    return starts


# --- split ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, val_fraction, n_train", [
    (100, 0.1, 90),  # 100 * 0.9 = 90 exactly
    (10, 0.1, 9),  # 10 * 0.9 = 9.000000000000002 in float64 -> 9
    (7, 0.1, 6),  # 6.3 -> 6
    (19, 0.1, 17),  # 17.1 -> 17: the validation split gets the remainder, 2
    (5, 0.0, 5),  # no validation split
    (3, 0.5, 1),  # 1.5 -> 1
    (0, 0.1, 0),
])
def test_split_sizes_hand_derived(impl, n, val_fraction, n_train):
    """n_train = int(n * (1.0 - val_fraction)) in float64 (SPEC §data)."""
    tokens = np.arange(n, dtype=np.int32)
    train, val = impl.train_val_split(tokens, val_fraction)
    assert len(train) == n_train and len(val) == n - n_train
    assert train.tolist() == list(range(n_train))
    assert val.tolist() == list(range(n_train, n))


@given(n=st.integers(0, 5000), val_fraction=st.floats(0.0, 0.99))
def test_split_partitions_in_order(impl, n, val_fraction):
    tokens = np.arange(n, dtype=np.int64)
    train, val = impl.train_val_split(tokens, val_fraction)
    assert len(train) == int(n * (1.0 - val_fraction))
    assert np.concatenate([train, val]).tolist() == tokens.tolist()


def test_split_default_is_ten_percent(impl):
    train, val = impl.train_val_split(np.arange(1000))
    assert (len(train), len(val)) == (900, 100)


@pytest.mark.parametrize("val_fraction", [-0.1, 1.0, 1.5, float("nan"), "0.1", None, False, True])
def test_split_rejects_bad_fraction(impl, val_fraction):
    """SPEC §contract-errors: val_fraction not a number in [0, 1), NaN refused; a bool is not a
    number there (False would otherwise pass as 0)."""
    with pytest.raises(ValueError, match="val_fraction"):
        impl.train_val_split(np.arange(10), val_fraction)


# --- sequential loader -------------------------------------------------------------
def test_loader_hand_derived(impl):
    """22 tokens 0..21, T=3, B=2, val_fraction 0.1: n_train = int(22*0.9) =
    int(19.8) = 19, so train = 0..18 and val = 19..21.
    Train windows start at 0, 3, 6, 9, 12, 15 (15+3+1 = 19 <= 19; 18 would
    need token 22): 6 windows, 3 batches of 2:
      batch 0: x [[0,1,2],[3,4,5]]      y [[1,2,3],[4,5,6]]
      batch 1: x [[6,7,8],[9,10,11]]    y [[7,8,9],[10,11,12]]
      batch 2: x [[12,13,14],[15,16,17]] y [[13,14,15],[16,17,18]]
    then None. Validation (19, 20, 21) holds no window (0 + 3 + 1 > 3)."""
    loader = impl.TextDataLoader(np.arange(22), 3, 2)
    assert loader.num_windows() == 6 and loader.num_batches() == 3
    want = [([[0, 1, 2], [3, 4, 5]], [[1, 2, 3], [4, 5, 6]]),
            ([[6, 7, 8], [9, 10, 11]], [[7, 8, 9], [10, 11, 12]]),
            ([[12, 13, 14], [15, 16, 17]], [[13, 14, 15], [16, 17, 18]])]
    for x_want, y_want in want:
        x, y = loader.next_batch()
        assert x.tolist() == x_want and y.tolist() == y_want
    assert loader.next_batch() is None
    # the epoch rewinds: the next call starts over
    x, _ = loader.next_batch()
    assert x.tolist() == want[0][0]
    loader.set_validation(True)
    assert loader.num_windows() == 0 and loader.num_batches() == 0
    assert loader.next_batch() is None


def test_last_partial_batch_is_dropped(impl):
    """25 tokens, val_fraction 0: windows at 0, 4, ..., 20 -> (25-1)//4 = 6
    windows; B = 4 gives one full batch (windows 0..3); windows 4, 5 are dropped."""
    loader = impl.TextDataLoader(np.arange(25), 4, 4, val_fraction=0.0)
    assert loader.num_windows() == 6 and loader.num_batches() == 1
    x, y = loader.next_batch()
    assert x[:, 0].tolist() == [0, 4, 8, 12]
    assert loader.next_batch() is None


@given(shape=loader_shapes(), seed=st.integers(0, 2**32 - 1))
def test_loader_matches_loop_windows(impl, shape, seed):
    """Every split, every batch: inputs tokens[s:s+T], targets tokens[s+1:s+T+1],
    windows in order, non-overlapping inputs, B per batch, partial batch dropped."""
    n, T, B, val_fraction = shape
    tokens = np.random.default_rng(seed).integers(0, 512, size=n).astype(np.int32)
    loader = impl.TextDataLoader(tokens, T, B, val_fraction)
    n_train = int(n * (1.0 - val_fraction))
    for validation, split in ((False, tokens[:n_train]), (True, tokens[n_train:])):
        loader.set_validation(validation)
        starts = loop_windows(len(split), T)
        n_batches = len(starts) // B
        assert loader.num_windows() == len(starts)
        assert loader.num_batches() == n_batches
        got = list(loader)
        assert len(got) == n_batches
        for i, (x, y) in enumerate(got):
            assert x.shape == (B, T) and y.shape == (B, T)
            assert x.dtype == np.int64 and y.dtype == np.int64
            for b in range(B):
                s = starts[i * B + b]
                assert x[b].tolist() == split[s:s + T].tolist()
                assert y[b].tolist() == split[s + 1:s + T + 1].tolist()
        again = loader.next_batch()  # the epoch ended and rewound
        if n_batches:
            assert np.array_equal(again[0], got[0][0])
        else:
            assert again is None


def test_windows_do_not_overlap_and_shift_by_one(impl):
    tokens = np.arange(1000)
    loader = impl.TextDataLoader(tokens, 7, 5)
    seen = []
    for x, y in loader:
        assert np.array_equal(y, x + 1)  # shift by one
        seen.extend(x.ravel().tolist())
    assert len(seen) == len(set(seen))  # every input position used at most once
    assert seen == list(range(len(seen)))  # consecutive windows tile the split in order


def test_set_validation_and_reset(impl):
    """100 tokens, T=4, B=2: train 0..89, val 90..99.
    Validation windows start at 90, 94 (94+5 = 99 <= 100 ... index 98 last
    target): (10-1)//4 = 2 windows, one batch."""
    loader = impl.TextDataLoader(np.arange(100), 4, 2)
    first, _ = loader.next_batch()
    loader.next_batch()
    loader.reset()
    again, _ = loader.next_batch()
    assert np.array_equal(first, again)
    loader.set_validation(True)
    assert loader.num_windows() == 2
    x, y = loader.next_batch()
    assert x.tolist() == [[90, 91, 92, 93], [94, 95, 96, 97]]
    assert y.tolist() == [[91, 92, 93, 94], [95, 96, 97, 98]]
    assert loader.next_batch() is None
    loader.set_validation(False)
    x, _ = loader.next_batch()
    assert x[0, 0] == 0


def test_windows_per_split(impl):
    """The seed demo prints "Training examples" and "Validation examples":
    1000 tokens, T=64 -> train 900 tokens, (900-1)//64 = 14 windows;
    validation 100 tokens, (100-1)//64 = 1 window."""
    loader = impl.TextDataLoader(np.arange(1000), 64, 16)
    assert loader.num_windows(validation=False) == 14
    assert loader.num_windows(validation=True) == 1
    assert loader.num_windows() == 14  # the current split is training


@pytest.mark.parametrize("n, T, B, match", [
    (5, 5, 1, "seq_len"),  # 5 tokens < T + 1 = 6
    (0, 1, 1, "seq_len"),
    (100, 0, 1, "seq_len"),
    (100, -3, 1, "seq_len"),
    (100, 4, 0, "batch_size"),
    (100, 4, -1, "batch_size"),
    (10, 9, 1, "training split"),  # 10 tokens fit one window but train has int(9.0) = 9
])
def test_loader_bad_input(impl, n, T, B, match):
    with pytest.raises(ValueError, match=match):
        impl.TextDataLoader(np.arange(n), T, B)


def test_loader_rejects_non_integer_arguments(impl):
    with pytest.raises(ValueError, match="seq_len"):
        impl.TextDataLoader(np.arange(100), 2.5, 1)
    with pytest.raises(ValueError, match="tokens"):
        impl.TextDataLoader(np.arange(100).reshape(10, 10), 4, 1)
    with pytest.raises(ValueError, match="tokens"):  # SPEC §contract-errors: a 1-D integer array
        impl.TextDataLoader(np.arange(100, dtype=np.float64), 4, 1)


# --- random batches ------------------------------------------------------------------
@given(n=st.integers(2, 400), T=st.integers(1, 16), B=st.integers(1, 8),
       seed=st.integers(0, 2**63 - 1), step=st.integers(0, 10**9))
def test_random_batch_offsets_follow_the_spec(impl, n, T, B, seed, step):
    """offsets = default_rng([seed, step]).integers(0, n - T, size=B); with
    tokens = arange(n) the inputs spell their offsets: x[b, t] = o_b + t."""
    if n < T + 1:
        n = T + 1
    x, y = impl.random_batch(np.arange(n), B, T, seed, step)
    offsets = np.random.default_rng([seed, step]).integers(0, n - T, size=B)
    want = offsets[:, None] + np.arange(T)[None, :]
    assert x.shape == (B, T) and y.shape == (B, T)
    assert x.dtype == np.int64 and y.dtype == np.int64
    assert np.array_equal(x, want)
    assert np.array_equal(y, want + 1)
    assert y.max() <= n - 1


def test_random_batch_is_a_pure_function(impl):
    tokens = np.random.default_rng(0).integers(0, 512, size=10_000).astype(np.int32)
    a = impl.random_batch(tokens, 8, 32, 1234, 77)
    np.random.seed(99)  # the global RNG must play no part
    b = impl.random_batch(tokens, 8, 32, 1234, 77)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(a[1][:, :-1], a[0][:, 1:])  # shift by one
    other_step = impl.random_batch(tokens, 8, 32, 1234, 78)
    other_seed = impl.random_batch(tokens, 8, 32, 1235, 77)
    assert not np.array_equal(a[0], other_step[0])
    assert not np.array_equal(a[0], other_seed[0])


def test_random_batch_smallest_corpus(impl):
    """n = T + 1: the only offset is 0 (integers(0, 1))."""
    x, y = impl.random_batch(np.arange(5), 3, 4, 0, 0)
    assert x.tolist() == [[0, 1, 2, 3]] * 3 and y.tolist() == [[1, 2, 3, 4]] * 3


@pytest.mark.parametrize("n, B, T, seed, step, match", [
    (4, 1, 4, 0, 0, "seq_len"),  # 4 tokens < T + 1
    (100, 0, 4, 0, 0, "batch_size"),
    (100, 2, 0, 0, 0, "seq_len"),
    (100, 2, 4, -1, 0, "seed"),
    (100, 2, 4, 0, -1, "step"),
])
def test_random_batch_bad_input(impl, n, B, T, seed, step, match):
    with pytest.raises(ValueError, match=match):
        impl.random_batch(np.arange(n), B, T, seed, step)


# --- on the real corpus --------------------------------------------------------------
@pytest.mark.corpus
def test_byte_level_corpus_windows(impl, corpus_bytes):
    """Byte tokens of the full corpus (no tokenizer needed): 90/10 split,
    windows count (n-1)//T per split, the first and last batch in place."""
    tokens = np.frombuffer(corpus_bytes, dtype=np.uint8)
    n = tokens.size
    loader = impl.TextDataLoader(tokens, 256, 16)
    n_train = int(n * 0.9)
    assert loader.num_windows(validation=False) == (n_train - 1) // 256
    assert loader.num_windows(validation=True) == (n - n_train - 1) // 256
    x, y = loader.next_batch()
    assert bytes(x[0].astype(np.uint8)) == corpus_bytes[:256]
    assert bytes(y[15].astype(np.uint8)) == corpus_bytes[15 * 256 + 1:16 * 256 + 1]
