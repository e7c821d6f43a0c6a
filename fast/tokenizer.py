"""Byte-level BPE training and encoding with incremental pair counts (SPEC §tokenizer, §fast-tokenizer).

Twin of `reference/tokenizer.py`: same merges, same encodings, bit for bit.
The `Tokenizer` class (JSON, save/load, decode) is the reference's; this
module plugs its own kernels into the class's two hooks, `_train_merges`
and `_apply_merges`.

How it is fast. The text lives in a doubly linked list over positions (one
int32 row (token, previous, next) per position; a merged-away position holds
token -1). Every token has a sorted list of the positions where it starts:
the byte tokens' lists by counting sort, a merged token's list appended in
increasing order by the merge that creates it. Applying a merge walks the
shorter of its two tokens' lists, drops stale entries, and replaces left to
right without overlap, exactly the reference's rule. Training also keeps
exact pair counts in a dense [V, V] table, updated per replaced occurrence
(the left and right neighbour pairs lose one, the two new pairs gain one),
so a merge costs O(list length), not a recount of the text; each row (left
id) keeps its best right id, updated on every count change and rescanned
only when its best loses a count.

Tie-break (SPEC §tokenizer): highest count, then the smallest (left string,
right string). Token strings are ranked in Python after every merge (an
insertion into a sorted list), so the kernels compare integers. A pair whose
string already names a token is refused, as in the reference.

Encoding cuts the text at points no token can span (10.4) and encodes the
pieces in parallel.

Dimension legend: N text length in bytes, V vocab size, M = V - 256 merges.
"""
from __future__ import annotations

import bisect

import numpy as np
from numba import prange
from tqdm.auto import tqdm

import reference.tokenizer as _reference

from ._numba import kernel

N_BYTES = 256
# pair counts and the refused-pair flags are dense [V*V] arrays
MAX_VOCAB = 1 << 14
# Encoding cuts the text into pieces of about this many bytes at safe points
# (SPEC §performance): small enough that a piece's nodes stay in cache.
PIECE = 1 << 14


# --- kernels ------------------------------------------------------------------
TOK, PRV, NXT = 0, 1, 2  # columns of the node array: token id, previous, next position


@kernel
def _build_lists(data, V):
    """Linked list over the bytes and the per-token position lists.

    Returns nodes (int32 [N, 3]: token id, previous and next live position,
    -1 at the ends and for merged-away positions; one row per position so a
    visit touches one cache line); pool (int32 [2N]: the positions of each
    byte value, sorted, in [0, N), then room for the merged tokens);
    lst_start, lst_len (int64 [V]: token t's list is pool[start:start+len])."""
    N = data.shape[0]
    nodes = np.empty((N, 3), dtype=np.int32)
    lst_start = np.zeros(V, dtype=np.int64)
    lst_len = np.zeros(V, dtype=np.int64)
    for i in range(N):
        t = data[i]
        nodes[i, TOK] = t
        nodes[i, PRV] = i - 1
        nodes[i, NXT] = i + 1 if i + 1 < N else -1
        lst_len[t] += 1
    for t in range(1, N_BYTES):
        lst_start[t] = lst_start[t - 1] + lst_len[t - 1]
    pool = np.empty(2 * N, dtype=np.int32)
    fill = lst_start[:N_BYTES].copy()
    for i in range(N):
        t = data[i]
        pool[fill[t]] = i
        fill[t] += 1
    return nodes, pool, lst_start, lst_len


@kernel
def _count_inc(r, c, V, counts, forbidden, rank, row_count, row_right):
    """counts[r, c] += 1, keeping row r's best (count, then rank, then id) exact;
    forbidden pairs are counted but never become a row's best."""
    k = r * V + c
    counts[k] += 1
    if forbidden[k]:
        return
    n = counts[k]
    bc = row_count[r]
    bb = row_right[r]
    if n > bc or (n == bc and (rank[c] < rank[bb] or (rank[c] == rank[bb] and c < bb))):
        row_count[r] = n
        row_right[r] = c


@kernel
def _count_dec(r, c, V, counts, row_right, dirty):
    """counts[r, c] -= 1; row r must be rescanned if c was its best column."""
    counts[r * V + c] -= 1
    if row_right[r] == c:
        dirty[r] = True


@kernel
def _rescan_row(r, n_tokens, V, counts, forbidden, rank, row_count, row_right):
    """Row r's best allowed column: highest count, then smallest rank, then smallest id."""
    best_c = 0
    best_b = -1
    base = r * V
    for b in range(n_tokens):
        if forbidden[base + b]:
            continue
        c = counts[base + b]
        if c > best_c or (c == best_c and c > 0 and rank[b] < rank[best_b]):
            best_c = c
            best_b = b
    row_count[r] = best_c
    row_right[r] = best_b


@kernel
def _best_of_rows(n_tokens, rank, row_count, row_right):
    """The pair to merge from the per-row bests: highest count, then smallest
    (rank[left], rank[right]), then smallest (left id, right id).
    Returns (count, left, right); count 0 when no pair is left."""
    best_c = 0
    best_a = -1
    best_b = -1
    for a in range(n_tokens):
        c = row_count[a]
        if c == 0:
            continue
        b = row_right[a]
        if best_a == -1 or c > best_c:
            better = True
        elif c < best_c:
            better = False
        elif rank[a] != rank[best_a]:
            better = rank[a] < rank[best_a]
        elif rank[b] != rank[best_b]:
            better = rank[b] < rank[best_b]
        else:
            better = False  # equal strings: the smaller left id (scanned first) stays
        if better:
            best_c = c
            best_a = a
            best_b = b
    return best_c, best_a, best_b


@kernel(parallel=True)
def _initial_best(nodes, V, counts, forbidden, rank, row_count, row_right):
    """Count every adjacent (overlapping) pair of the byte sequence, then each
    row's best column (one row per parallel iteration, its own slot).
    Returns the first pair to merge."""
    counts[:] = 0
    for i in range(nodes.shape[0] - 1):
        counts[nodes[i, TOK] * V + nodes[i + 1, TOK]] += 1
    for r in prange(N_BYTES):
        _rescan_row(r, N_BYTES, V, counts, forbidden, rank, row_count, row_right)
    return _best_of_rows(N_BYTES, rank, row_count, row_right)


@kernel
def _forbid(a, b, n_tokens, V, counts, forbidden, rank, row_count, row_right):
    """Never choose (a, b) again (its string already names a token); return
    the next pair to merge."""
    forbidden[a * V + b] = True
    _rescan_row(a, n_tokens, V, counts, forbidden, rank, row_count, row_right)
    return _best_of_rows(n_tokens, rank, row_count, row_right)


@kernel
def _merge_pair(a, b, new, V, nodes, pool, lst_start, lst_len, pool_n,
                counts, forbidden, rank, row_count, row_right, dirty, counting):
    """Replace every occurrence of (a, b) by `new`, left to right, no overlap.

    Walks the shorter of the position lists of `a` and `b` (both sorted),
    dropping stale entries as it goes; the positions of `new` are appended to
    the pool in increasing order, so every list stays sorted. If `counting`,
    keeps the pair counts and the per-row bests exact and returns the next
    pair to merge; otherwise returns (0, -1, -1).
    Twin: the merge loop of reference Tokenizer.train / encode."""
    w_new = pool_n[0]
    lst_start[new] = w_new
    scan_left = a == b or lst_len[a] <= lst_len[b]
    t = a if scan_left else b
    s = lst_start[t]
    w = s
    for r in range(s, s + lst_len[t]):
        x = pool[r]
        if nodes[x, TOK] != t:
            continue  # stale: x was merged into something else
        if scan_left:
            p = x
            q = nodes[p, NXT]
            hit = q != -1 and nodes[q, TOK] == b
        else:
            q = x
            p = nodes[q, PRV]
            hit = p != -1 and nodes[p, TOK] == a
        if not hit:
            pool[w] = x
            w += 1
            continue
        pp = nodes[p, PRV]
        nn = nodes[q, NXT]
        if counting:
            _count_dec(a, b, V, counts, row_right, dirty)
            if pp != -1:
                left = nodes[pp, TOK]
                _count_dec(left, a, V, counts, row_right, dirty)
                _count_inc(left, new, V, counts, forbidden, rank, row_count, row_right)
            if nn != -1:
                right = nodes[nn, TOK]
                _count_dec(b, right, V, counts, row_right, dirty)
                _count_inc(new, right, V, counts, forbidden, rank, row_count, row_right)
        nodes[p, TOK] = new
        nodes[q, TOK] = -1
        nodes[p, NXT] = nn
        if nn != -1:
            nodes[nn, PRV] = p
        pool[w_new] = p
        w_new += 1
    lst_len[t] = w - s
    lst_len[new] = w_new - lst_start[new]
    pool_n[0] = w_new
    if not counting:
        return 0, -1, -1
    n_tokens = new + 1
    for r in range(n_tokens):
        if dirty[r]:
            dirty[r] = False
            _rescan_row(r, n_tokens, V, counts, forbidden, rank, row_count, row_right)
    return _best_of_rows(n_tokens, rank, row_count, row_right)


@kernel
def _compact_into(nodes, out):
    """Write the surviving token ids in order into `out`; return how many
    (position 0 is never merged away)."""
    i = 0
    p = 0 if nodes.shape[0] > 0 else -1
    while p != -1:
        out[i] = nodes[p, TOK]
        i += 1
        p = nodes[p, NXT]
    return i


@kernel
def _encode_piece_into(data, merges, V, out):
    """Apply every merge in learned order to the byte ids of `data`; write the
    ids into `out`, return their number. Twin: reference Tokenizer.encode."""
    nodes, pool, lst_start, lst_len = _build_lists(data, V)
    pool_n = np.full(1, data.shape[0], dtype=np.int64)
    unused_i = np.zeros(1, dtype=np.int64)
    unused_b = np.zeros(1, dtype=np.bool_)
    for k in range(merges.shape[0]):
        a = merges[k, 0]
        b = merges[k, 1]
        if lst_len[a] == 0 or lst_len[b] == 0:
            continue  # the pair cannot occur in this piece
        _merge_pair(a, b, N_BYTES + k, V, nodes, pool, lst_start, lst_len, pool_n,
                    unused_i, unused_b, unused_i, unused_i, unused_i, unused_b, False)
    return _compact_into(nodes, out)


@kernel
def _safe_cuts(data, inner, piece):
    """Cut points about every `piece` bytes where no token can span the cut:
    the byte pair across it occurs inside no token (`inner[x, y]` False).
    The pieces then encode independently, exactly. Depends only on the data
    and the vocabulary, never on the thread count."""
    N = data.shape[0]
    cuts = np.empty(N // max(piece, 1) + 2, dtype=np.int64)
    n = 0
    cuts[n] = 0
    n += 1
    i = piece
    while i < N:
        if not inner[data[i - 1], data[i]]:
            cuts[n] = i
            n += 1
            i += piece
        else:
            i += 1
    cuts[n] = N
    n += 1
    return cuts[:n]


@kernel(parallel=True)
def _encode_kernel(data, merges, V, cuts):
    """Encode the pieces between `cuts` in parallel (one piece per
    iteration, each writing its own slice), then close the gaps."""
    n_pieces = cuts.shape[0] - 1
    out = np.empty(data.shape[0], dtype=np.int32)
    lengths = np.zeros(n_pieces, dtype=np.int64)
    for i in prange(n_pieces):
        lo = cuts[i]
        hi = cuts[i + 1]
        lengths[i] = _encode_piece_into(data[lo:hi], merges, V, out[lo:hi])
    n = 0
    for i in range(n_pieces):
        lo = cuts[i]
        for j in range(lengths[i]):
            out[n + j] = out[lo + j]
        n += lengths[i]
    return out[:n].copy()


# --- drivers (validate, allocate, call kernels) -------------------------------
def train_merges(ids: np.ndarray, n_merges: int, progress: bool = False) -> list[tuple[int, int]]:
    """Learn up to `n_merges` merges from byte ids (uint8 [N]); the rule of
    reference.tokenizer.train_merges, including its tie-break and its
    refusal of a pair whose string already names a token."""
    ids = np.ascontiguousarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= N_BYTES):
        raise ValueError(f"ids must be byte values 0..255, got range [{ids.min()}, {ids.max()}]")
    n_merges = max(int(n_merges), 0)
    V = N_BYTES + n_merges  # pair code width, fixed for the run
    if V > MAX_VOCAB:
        raise ValueError(f"vocab_size must be at most {MAX_VOCAB} for fast.Tokenizer, got {V}")
    data = ids.astype(np.uint8, copy=False)
    merges: list[tuple[int, int]] = []
    if n_merges == 0 or data.size < 2:
        return merges
    nodes, pool, lst_start, lst_len = _build_lists(data, V)
    pool_n = np.full(1, data.size, dtype=np.int64)
    counts = np.zeros(V * V, dtype=np.int64)  # [V, V] pair counts
    forbidden = np.zeros(V * V, dtype=np.bool_)  # [V, V] pairs spelling an existing token
    row_count = np.zeros(V, dtype=np.int64)  # best allowed count per left id
    row_right = np.full(V, -1, dtype=np.int64)  # its right id
    dirty = np.zeros(V, dtype=np.bool_)  # rows whose best must be rescanned
    # token strings, and each one's rank in sorted order (ids <-> strings stay one-to-one)
    strings = [f"<{i:02x}>" for i in range(N_BYTES)]
    known = set(strings)
    ordered = sorted(strings)
    rank = np.zeros(V, dtype=np.int64)
    rank[:N_BYTES] = [ordered.index(s) for s in strings]
    # a bar only when asked for and stderr is a terminal (tqdm's disable=None), as the reference's
    with tqdm(total=n_merges, desc="BPE merges", unit="merge", disable=None if progress else True) as bar:
        count, a, b = _initial_best(nodes, V, counts, forbidden, rank, row_count, row_right)
        for k in range(n_merges):
            new = N_BYTES + k
            while count > 0 and strings[a] + strings[b] in known:
                count, a, b = _forbid(a, b, new, V, counts, forbidden, rank, row_count, row_right)
            if count <= 0:
                break  # no pair left that may be merged (SPEC §tokenizer)
            merges.append((int(a), int(b)))
            s = strings[a] + strings[b]
            strings.append(s)
            known.add(s)
            j = bisect.bisect_left(ordered, s)
            ordered.insert(j, s)
            live = rank[:new]
            live[live >= j] += 1  # later strings move up one rank
            rank[new] = j
            count, a, b = _merge_pair(a, b, new, V, nodes, pool, lst_start, lst_len, pool_n,
                                      counts, forbidden, rank, row_count, row_right, dirty, True)
            bar.update(1)
    return merges


def apply_merges(ids: np.ndarray, merges) -> np.ndarray:
    """Encode byte ids (uint8 [N]): every merge in learned order, left to
    right without overlap, as reference.tokenizer.apply_merges. int32 [N']."""
    merges = np.asarray(list(merges), dtype=np.int32).reshape(-1, 2)
    V = N_BYTES + merges.shape[0]
    if V > MAX_VOCAB:
        raise ValueError(f"vocab_size must be at most {MAX_VOCAB} for fast.Tokenizer, got {V}")
    for k in range(merges.shape[0]):
        if merges[k].min() < 0 or merges[k].max() >= N_BYTES + k:
            raise ValueError(f"merge {k} ({merges[k, 0]}, {merges[k, 1]}) uses an id not defined before it")
    data = np.ascontiguousarray(ids).astype(np.uint8, copy=False)
    if data.size == 0:
        return np.zeros(0, dtype=np.int32)
    cuts = _safe_cuts(data, _inner_pairs(merges), PIECE)
    return _encode_kernel(data, merges, V, cuts)


def _inner_pairs(merges: np.ndarray) -> np.ndarray:
    """bool [256, 256]: (x, y) occurs as adjacent bytes inside some token."""
    inner = np.zeros((N_BYTES, N_BYTES), dtype=np.bool_)
    spelled = [bytes([i]) for i in range(N_BYTES)]
    for a, b in merges.tolist():
        spelled.append(spelled[a] + spelled[b])
        inner[spelled[a][-1], spelled[b][0]] = True  # the only new adjacency
    return inner


class Tokenizer(_reference.Tokenizer):
    """reference.Tokenizer (decode, JSON, save/load) with the Numba kernels
    plugged into its two hooks: training and encoding."""

    _train_merges = staticmethod(train_merges)
    _apply_merges = staticmethod(apply_merges)
