"""Byte-level BPE tokenizer, Feste-compatible (SPEC §tokenizer).

The core is two free functions, minbpe-style: `train_merges` learns the merge
list from byte ids and `apply_merges` replays it on new bytes. The `Tokenizer`
class wraps them (through the class attributes `_train_merges` and
`_apply_merges`, so an optimised implementation subclasses it and plugs in
its own kernels) and adds decoding and the JSON format Feste reads.

One source of truth: the merge list. Token k >= 256 is merge k - 256; its
bytes and its token string ("<%02x>" per byte) are derived from the merges.

Dimension legend: N sequence length (bytes, then tokens), V current vocab
size (256 + merges so far), M number of merges, W = 256 + M the width of a
pair code left * W + right.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .atomic_io import atomic_write
from .input_checks import read_regular, strict_json

N_BYTES = 256  # ids 0..255 are the bytes
UNK_TOKEN = "<unk>"  # written for Feste, never produced by encode
JSON_KEYS = ("vocab", "merges", "unk_token")  # the only keys of the tokenizer JSON, in written order
MAX_JSON_BYTES = 1 << 30  # Tokenizer.load refuses larger files (vocab 2^20 is ~40 MB of JSON)

# Above this many pair slots (V*V) pairs are counted by sorting instead of a
# dense bincount table, so a large vocabulary does not allocate V*V counters.
_DENSE_PAIR_SLOTS = 1 << 22
# Whole-sequence passes (counting every pair, finding a pair's occurrences)
# go over slices of this many positions, so their int64 and bool temporaries
# are O(_SLICE), not O(N): peak memory per corpus byte stays bounded (SPEC §tokenizer).
_SLICE = 1 << 20


def byte_token_string(b: int) -> str:
    """The token string of byte `b`: "<%02x>" in lower-case hex (SPEC §tokenizer)."""
    return f"<{b:02x}>"


def _find_hits(ids: np.ndarray, left: int, right: int) -> np.ndarray:
    """Start positions of the occurrences of (left, right) that greedy
    left-to-right replacement takes (no overlap).

    When left == right a run such as "aaaaa" holds consecutive candidate
    starts; greedy replacement takes the first of each run, skips the next,
    takes the one after, and so on: "aaaaa" -> [X, X, a].
    """
    n = ids.size - 1  # pair starts 0..n-1
    hits = np.concatenate([np.zeros(0, dtype=np.int64)] + [  # (n_hits,) pair starts, slice by slice
        a + np.flatnonzero((ids[a:min(a + _SLICE, n)] == left) & (ids[a + 1:min(a + _SLICE, n) + 1] == right))
        for a in range(0, max(n, 0), _SLICE)])
    if left == right and hits.size > 1:
        # runs of consecutive starts: keep even offsets from each run's first start
        run_first = np.ones(hits.size, dtype=bool)  # (n_hits,)
        run_first[1:] = np.diff(hits) != 1
        first_index = np.maximum.accumulate(np.where(run_first, np.arange(hits.size), 0))
        hits = hits[(hits - hits[first_index]) % 2 == 0]
    return hits


def _replace(ids: np.ndarray, hits: np.ndarray, new_id: int) -> np.ndarray:
    """A new array with the pair starting at each hit replaced by `new_id`."""
    out = np.delete(ids, hits + 1)  # (N - n_hits,) the right halves disappear
    out[hits - np.arange(hits.size)] = new_id  # each earlier hit moved a left half back by one
    return out


def _pair_codes(ids: np.ndarray, starts: np.ndarray, V: int) -> np.ndarray:
    """Code left * V + right of the pairs starting at `starts`."""
    return ids[starts].astype(np.int64) * V + ids[starts + 1]


def _slice_codes(ids: np.ndarray, V: int):
    """The codes of all adjacent pairs, one slice of `_SLICE` pair starts at a time."""
    n = ids.size - 1
    for a in range(0, max(n, 0), _SLICE):
        b = min(a + _SLICE, n)
        yield ids[a:b].astype(np.int64) * V + ids[a + 1:b + 1]  # (b - a,)


def _count_pairs_dense(ids: np.ndarray, V: int) -> np.ndarray:
    """table[left * V + right] = occurrences of every adjacent pair (int64 [V*V])."""
    table = np.zeros(V * V, dtype=np.int64)  # (V*V,)
    for codes in _slice_codes(ids, V):
        table += np.bincount(codes, minlength=V * V)
    return table


def _count_pairs_sparse(ids: np.ndarray, V: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct pair codes ascending, their counts), merged slice by slice: the
    memory is that of the distinct pairs, not of all N - 1 of them."""
    codes, counts = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for chunk in _slice_codes(ids, V):
        new_codes, new_counts = np.unique(chunk, return_counts=True)
        codes, inverse = np.unique(np.concatenate([codes, new_codes]), return_inverse=True)
        merged = np.zeros(codes.size, dtype=np.int64)
        np.add.at(merged, inverse, np.concatenate([counts, new_counts]))
        counts = merged
    return codes, counts


def _touching(positions: np.ndarray, offsets: tuple[int, ...], n: int) -> np.ndarray:
    """Sorted distinct pair starts p + o (o in ascending `offsets`) inside 0..n-2.

    `positions` is sorted with gaps of at least offsets[-1] - offsets[0]
    (true for hits, which never overlap, and for the new tokens), so the
    row-major [p + o] table is already sorted: only neighbours can repeat.
    """
    starts = (positions[:, None] + np.array(offsets)[None, :]).ravel()  # (n_pos * n_off,)
    distinct = np.ones(starts.size, dtype=bool)
    distinct[1:] = starts[1:] != starts[:-1]
    starts = starts[distinct]
    return starts[(starts >= 0) & (starts <= n - 2)]


def train_merges(ids: np.ndarray, n_merges: int, progress: bool = False) -> list[tuple[int, int]]:
    """Learn up to `n_merges` BPE merges from byte ids (SPEC §tokenizer).

    Each round counts all adjacent pairs (overlapping: "aaa" has (a, a)
    twice), takes the highest count, breaks ties by the smallest
    (left token string, right token string) compared as strings, gives the
    new token id 256 + k and string left + right, and replaces the pair left
    to right without overlap. A pair whose concatenated string already names
    a token is never chosen (ids and strings stay one-to-one, as Feste's
    string-keyed vocab requires). Training stops early when no pair is left.

    Worked example, "aaabdaaabac" (a=97, b=98, c=99, d=100):
      round 0: (a,a) occurs 4 times (two per "aaa") -> 256 = "aa";
               text becomes [aa a b d aa a b a c]
      round 1: (aa,a) and (a,b) both occur twice; "<61>" < "<61><61>", so
               (a,b) wins -> 257 = "ab"; text [aa ab d aa ab a c]
      round 2: (aa,ab) occurs twice -> 258
    >>> train_merges(np.frombuffer(b"aaabdaaabac", dtype=np.uint8), 3)
    [(97, 97), (97, 98), (256, 257)]

    The counts are updated, not recounted: replacing the pairs at `hits`
    changes only the pairs that touch a replaced position, so each round
    subtracts the old pairs starting at hits-1, hits, hits+1 and adds the new
    pairs starting just before and at each new token (an exact update).
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= N_BYTES):
        raise ValueError(f"ids must be byte values 0..255, got range [{ids.min()}, {ids.max()}]")
    W = N_BYTES + max(int(n_merges), 0)  # pair code = left * W + right, fixed for the run
    work = ids.astype(np.uint16 if W <= 1 << 16 else np.int32)  # (N,) current token ids
    dense = W * W <= _DENSE_PAIR_SLOTS  # else recount by sorting each round
    if dense:
        table = _count_pairs_dense(work, W)  # (W*W,)
    strings = [byte_token_string(b) for b in range(N_BYTES)]  # token string per id
    known = set(strings)
    forbidden: list[int] = []  # codes of pairs whose concatenation already names a token
    merges: list[tuple[int, int]] = []
    # a bar only when asked for and stderr is a terminal (tqdm's disable=None)
    with tqdm(total=n_merges, desc="BPE merges", unit="merge", disable=None if progress else True) as bar:
        for k in range(n_merges):
            V = N_BYTES + k  # ids 0..V-1 exist
            if work.size < 2:
                break  # no pair left
            if dense:
                codes = np.flatnonzero(table)  # (P,) pairs present
                counts = table[codes]  # (P,)
            else:
                codes, counts = _count_pairs_sparse(work, W)
            if forbidden:
                counts = np.where(np.isin(codes, forbidden), 0, counts)
            # string rank of every id: comparing ranks is comparing strings
            rank = np.empty(V, dtype=np.int64)  # (V,)
            rank[np.argsort(np.array(strings))] = np.arange(V)
            pair = None
            while counts.max() > 0:
                tied = codes[counts == counts.max()]  # (n_tied,)
                left, right = tied // W, tied % W
                i = int(np.argmin(rank[left] * V + rank[right]))  # smallest (left str, right str)
                merged = strings[left[i]] + strings[right[i]]
                if merged not in known:
                    pair = (int(left[i]), int(right[i]))
                    break
                # the pair spells an existing token, e.g. ("<61><62>", "<63>") after
                # ("<61>", "<62><63>"): never choose it (ids and strings stay one-to-one)
                forbidden.append(int(tied[i]))
                counts = np.where(codes == tied[i], 0, counts)
            if pair is None:
                break  # no pair left that may be merged
            merges.append(pair)
            strings.append(merged)
            known.add(merged)
            hits = _find_hits(work, pair[0], pair[1])  # (n_hits,)
            if dense:
                old = _touching(hits, (-1, 0, 1), work.size)
                np.subtract.at(table, _pair_codes(work, old, W), 1)  # pairs that disappear
            work = _replace(work, hits, V)  # (N - n_hits,)
            if dense:
                landed = hits - np.arange(hits.size)  # (n_hits,) positions of the new tokens
                new = _touching(landed, (-1, 0), work.size)
                np.add.at(table, _pair_codes(work, new, W), 1)  # pairs that appear
            bar.update(1)
    return merges


def apply_merges(ids: np.ndarray, merges) -> np.ndarray:
    """Encode byte ids: apply every merge in learned order, each left to right
    without overlap, over the whole sequence (no chunking). Returns int32 ids.

    Worked example with the merges learned from "aaabdaaabac":
      [a a a b d a a a b a c] -(a,a)->256-> [256 a b d 256 a b a c]
      -(a,b)->257-> [256 257 d 256 257 a c] -(256,257)->258-> [258 d 258 a c]
    >>> apply_merges(np.frombuffer(b"aaabdaaabac", dtype=np.uint8),
    ...              [(97, 97), (97, 98), (256, 257)]).tolist()
    [258, 100, 258, 97, 99]
    """
    merges = list(merges)
    dtype = np.uint16 if N_BYTES + len(merges) <= 1 << 16 else np.int32
    work = np.asarray(ids).astype(dtype)  # (N,)
    for k, (left, right) in enumerate(merges):
        if work.size < 2:
            break
        hits = _find_hits(work, left, right)  # (n_hits,)
        if hits.size:
            work = _replace(work, hits, N_BYTES + k)
    return work.astype(np.int32)


def _as_bytes(text_or_bytes, name: str = "text") -> bytes:
    if isinstance(text_or_bytes, str):
        return text_or_bytes.encode("utf-8")
    if isinstance(text_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(text_or_bytes)
    raise TypeError(f"{name} must be str or bytes, got {type(text_or_bytes).__name__}")


class Tokenizer:
    """A byte-level BPE tokenizer: 256 byte tokens plus the learned merges.

    `merges[k] = (left_id, right_id)` defines token 256 + k. `vocab_size` is
    256 + len(merges). `encode` returns int32 ids (numpy array).

    Subclasses replace the two kernels through class attributes:
    `_train_merges(byte_ids: uint8[N], n_merges, progress) -> list of pairs`
    and `_apply_merges(byte_ids: uint8[N], merges) -> int32[N']`.
    """

    _train_merges = staticmethod(train_merges)
    _apply_merges = staticmethod(apply_merges)

    def __init__(self, merges=(), unk_token: str = UNK_TOKEN):
        pairs: list[tuple[int, int]] = []
        token_bytes = [bytes([b]) for b in range(N_BYTES)]  # bytes per id
        seen: dict[bytes, int] = {t: i for i, t in enumerate(token_bytes)}
        for k, pair in enumerate(merges):
            try:
                left, right = (int(x) for x in pair)
            except (TypeError, ValueError):
                raise ValueError(f"merge {k} must be a pair of ints, got {pair!r}") from None
            defined = N_BYTES + k
            if not (0 <= left < defined and 0 <= right < defined):
                raise ValueError(
                    f"merge {k} ({left}, {right}) refers to an unknown token: "
                    f"only ids 0..{defined - 1} exist before token {defined}")
            merged = token_bytes[left] + token_bytes[right]
            if merged in seen:
                raise ValueError(
                    f"merge {k} ({left}, {right}) spells the same token as id {seen[merged]} "
                    f"({_token_string(merged)}): token strings must be unique")
            seen[merged] = defined
            token_bytes.append(merged)
            pairs.append((left, right))
        if not isinstance(unk_token, str):
            raise ValueError(f"unk_token must be a string, got {unk_token!r}")
        self.merges: list[tuple[int, int]] = pairs
        self.unk_token = unk_token
        self._token_bytes = token_bytes
        # decode table: all token bytes back to back, with offsets
        lengths = np.array([len(t) for t in token_bytes], dtype=np.int64)  # (V,)
        self._lengths = lengths
        self._starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # (V,)
        self._table = np.frombuffer(b"".join(token_bytes), dtype=np.uint8)

    # --- training and encoding ---------------------------------------------
    @classmethod
    def train(cls, text_or_bytes, vocab_size, progress=False) -> "Tokenizer":
        """Learn `vocab_size - 256` merges from the UTF-8 bytes of the text (or
        the raw bytes); fewer if the text runs out of pairs."""
        data = _as_bytes(text_or_bytes)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
            raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
        if vocab_size < N_BYTES:
            raise ValueError(f"vocab_size must be at least {N_BYTES} (the byte tokens), got {vocab_size}")
        ids = np.frombuffer(data, dtype=np.uint8)  # (N,)
        merges = cls._train_merges(ids, int(vocab_size) - N_BYTES, progress)
        return cls(merges)

    def encode(self, text_or_bytes) -> np.ndarray:
        """Token ids (int32 [N']) of the UTF-8 bytes of the text (or raw bytes)."""
        data = _as_bytes(text_or_bytes)
        ids = np.frombuffer(data, dtype=np.uint8)  # (N,)
        if not self.merges or ids.size < 2:
            return ids.astype(np.int32)
        return np.asarray(self._apply_merges(ids, self.merges), dtype=np.int32)

    # --- decoding ----------------------------------------------------------
    def _check_ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be a 1-D sequence of token ids, got shape {arr.shape}")
        if arr.size == 0:
            return arr.astype(np.int64)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
        bad = np.flatnonzero((arr < 0) | (arr >= self.vocab_size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"token id {int(arr[i])} at position {i} is out of range 0..{self.vocab_size - 1}")
        return arr.astype(np.int64)

    def decode_bytes(self, ids) -> bytes:
        """The exact bytes the ids stand for (concatenation of token bytes)."""
        ids = self._check_ids(ids)  # (N',)
        lengths = self._lengths[ids]  # (N',)
        total = int(lengths.sum())
        # byte j of the output comes from table[start of its token + offset inside it]
        first = np.cumsum(lengths) - lengths  # (N',) output offset of each token
        src = np.repeat(self._starts[ids] - first, lengths) + np.arange(total)  # (total,)
        return self._table[src].tobytes()

    def decode(self, ids) -> str:
        """Decoded text; invalid UTF-8 is replaced by U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # --- vocabulary --------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return N_BYTES + len(self.merges)

    def token_bytes(self, token_id: int) -> bytes:
        return self._token_bytes[token_id]

    def token_string(self, token_id: int) -> str:
        """Feste's token string: "<%02x>" per byte."""
        return _token_string(self._token_bytes[token_id])

    # --- JSON --------------------------------------------------------------
    def to_json(self) -> str:
        """Canonical Feste JSON: no spaces, keys vocab, merges, unk_token; vocab in id order."""
        strings = [self.token_string(i) for i in range(self.vocab_size)]
        doc = {
            "vocab": {s: i for i, s in enumerate(strings)},
            "merges": [[strings[a], strings[b]] for a, b in self.merges],
            "unk_token": self.unk_token,
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, s) -> "Tokenizer":
        """Read Feste's tokenizer JSON (any key order, any whitespace) and validate it."""
        if not isinstance(s, (str, bytes, bytearray)):
            raise ValueError(f"tokenizer JSON must be str or bytes, got {type(s).__name__}")
        try:
            doc = strict_json(s)  # duplicate keys, NaN and nesting beyond the parser's depth are errors
        except ValueError as exc:
            raise ValueError(f"malformed tokenizer JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"tokenizer JSON must be an object, got {type(doc).__name__}")
        for key in ("vocab", "merges"):
            if key not in doc:
                raise ValueError(f"tokenizer JSON has no {key!r} field")
        unknown = sorted(set(doc) - set(JSON_KEYS))
        if unknown:
            raise ValueError(f"tokenizer JSON has unknown keys {unknown}: expected only {', '.join(JSON_KEYS)}")
        vocab, merge_strings = doc["vocab"], doc["merges"]
        unk = doc.get("unk_token", UNK_TOKEN)
        if not isinstance(vocab, dict):
            raise ValueError(f"tokenizer JSON 'vocab' must be an object, got {type(vocab).__name__}")
        if not isinstance(merge_strings, list):
            raise ValueError(f"tokenizer JSON 'merges' must be a list, got {type(merge_strings).__name__}")
        for token, i in vocab.items():
            if isinstance(i, bool) or not isinstance(i, int):
                raise ValueError(f"vocab entry {token!r} must map to an int id, got {i!r}")
        by_id = {i: t for t, i in vocab.items()}
        if len(by_id) != len(vocab):
            raise ValueError("vocab maps two token strings to the same id")
        for b in range(N_BYTES):
            want = byte_token_string(b)
            if by_id.get(b) != want:
                raise ValueError(f"vocab id {b} must be {want!r} (byte token), got {by_id.get(b)!r}")
        ids_of = dict(vocab)  # string -> id
        merges = []
        for k, entry in enumerate(merge_strings):
            if (not isinstance(entry, list) or len(entry) != 2
                    or not all(isinstance(x, str) for x in entry)):
                raise ValueError(f"merge {k} must be a pair of token strings, got {entry!r}")
            left, right = entry
            new_id = N_BYTES + k
            for side in (left, right):
                if side not in ids_of or ids_of[side] >= new_id:
                    raise ValueError(f"merge {k} {entry!r} refers to unknown token {side!r}")
            if by_id.get(new_id) != left + right:
                raise ValueError(
                    f"vocab and merges disagree: merge {k} {entry!r} defines token {new_id} "
                    f"= {left + right!r}, vocab has {by_id.get(new_id)!r} for id {new_id}")
            merges.append((ids_of[left], ids_of[right]))
        if len(vocab) != N_BYTES + len(merges):
            raise ValueError(
                f"vocab and merges disagree: vocab has {len(vocab)} entries, "
                f"256 + {len(merges)} merges = {N_BYTES + len(merges)}")
        return cls(merges, unk_token=unk)

    def save(self, path) -> None:
        """Write the canonical JSON atomically (temp file in the same directory, fsync, rename)."""
        path = Path(path)
        try:
            atomic_write(path, self.to_json().encode("utf-8"))
        except OSError as exc:
            raise OSError(f"cannot write tokenizer {path}: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Read a tokenizer JSON file (a regular file: a FIFO or device is refused)."""
        path = Path(path)
        data = read_regular(path, "tokenizer file", OSError, max_bytes=MAX_JSON_BYTES)
        try:
            return cls.from_json(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.merges == other.merges and self.unk_token == other.unk_token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _token_string(token: bytes) -> str:
    return "".join(byte_token_string(b) for b in token)
