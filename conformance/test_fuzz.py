"""A bounded fuzz of the two file formats read from disk, hostile input (SPEC §checkpoint and §tokenizer).

Valid files are mutated (bit flips and byte sets in place, truncations,
deletions, insertions, appended bytes; conformance.strategies) and read
back. The only outcomes allowed:

- the promised error type (CheckpointError; ValueError for tokenizer JSON),
  never another exception, a hang or a crash;
- or a load that changes nothing silently. A checkpoint must then serialize
  back to exactly the mutated bytes, except where an edit respelled one of
  its JSON sections (the reader accepts any whitespace and number spelling);
  then every tensor still equals the f32 values at its offset in the mutated
  file, and the canonical bytes read back to themselves. A tokenizer must
  have the original merges, and the original unk_token unless an edit fell
  inside that string.

The number of examples is ten times the hypothesis profile's
(HYPOTHESIS_PROFILE=ci: 600 per test, derandomized), about a second each;
`hypothesis.event` labels every outcome (pytest --hypothesis-show-statistics).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from conformance.strategies import in_place_mutation, structural_mutation
from conformance.test_checkpoint import (
    SMALL, SMALL_CONFIG_JSON, _golden_for, _random_params, _training_state, hand_tokenizer_json,
)

FUZZ = settings(max_examples=10 * settings.default.max_examples)


@pytest.fixture(scope="module")
def valid_checkpoint(impl):
    """A training checkpoint with tokenizer, from the independent writer: (bytes,
    golden writer, hot offsets). Metadata step 7, best 4.123 at step 5."""
    config = impl.Config(**{**SMALL, "vocab_size": 257})
    params = _random_params(impl, config, 20)
    state = _training_state(impl, config, 21)
    golden = _golden_for(impl, SMALL_CONFIG_JSON.replace('"vocab_size":11', '"vocab_size":257'), params, state,
                         hand_tokenizer_json(), '{"step":7,"best_val_loss":4.123,"best_val_step":5}')
    data = bytes(golden.out)
    assert impl.checkpoint_to_bytes(impl.checkpoint_from_bytes(data)) == data  # the fuzz starts from a valid file
    # the length prefixes, headers and flags: where a single bit changes the file's structure
    hot = tuple(sorted(set(golden.boundaries) | {0, 10, 11, 15} | {start for start, _ in golden.tensor_data}))
    return data, golden, hot


def _json_spans(golden) -> list[tuple[int, int]]:
    """[start, end) of the three JSON texts (after their u32 length): config,
    tokenizer, metadata, from the golden writer's section marks."""
    config_start = 11 + 4
    tok_section, meta_section = golden.boundaries[-3], golden.boundaries[-2]
    return [(config_start, golden.boundaries[1]), (tok_section + 1 + 4, meta_section), (meta_section + 4, len(golden.out))]


def _tensors_equal_file(impl, loaded, data: bytes, golden) -> None:
    """Every tensor of `loaded` holds the f32 values at its offset in `data`."""
    from conformance.test_checkpoint import BLOCK, optimizer_file_order

    L = loaded.config.n_layers
    names = ["token_embedding", "position_embedding"] + [f"blocks.{i}.{n}" for i in range(L) for n in BLOCK] + \
        ["ln_final.gamma", "ln_final.beta", "output_weight"]
    order = [(None, n) for n in names] + list(optimizer_file_order(L))
    for (moment, name), (start, end) in zip(order, golden.tensor_data):
        source = loaded.params if moment is None else getattr(loaded.optimizer, moment)
        want = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=start)
        assert source[name].ravel().tobytes() == want.tobytes(), (moment, name)


def _kind(exc: Exception) -> str:
    """An error message without its numbers and specifics, for `event` statistics."""
    text = re.sub(r"at byte offset \d+: ", "", str(exc))
    text = re.sub(r"\d+|'[^']*'|\"[^\"]*\"|\([^)]*\)|\[[^]]*\]", "_", text)
    return f"{type(exc).__name__}: {' '.join(text.split()[:6])}"


def _load_or_error(impl, data: bytes):
    """The loaded checkpoint (its values checked as SPEC §checkpoint promises), or None after the promised error."""
    try:
        loaded = impl.checkpoint_from_bytes(data)
    except impl.CheckpointError as exc:
        event(_kind(exc))
        return None
    assert np.isfinite(loaded.params.data).all(), "loaded a non-finite parameter"
    if loaded.optimizer is not None:
        assert np.isfinite(loaded.optimizer.m.data).all() and np.isfinite(loaded.optimizer.v.data).all()
        assert (loaded.optimizer.v.data >= 0).all(), "loaded a negative second moment"
    meta = loaded.metadata
    assert meta["best_val_step"] <= meta["step"] and meta["best_val_loss"] >= 0
    return loaded


@FUZZ
@given(data=st.data())
def test_checkpoint_in_place_mutations(impl, valid_checkpoint, data):
    original, golden, hot = valid_checkpoint
    edits, mutated = data.draw(in_place_mutation(original, hot), label="mutation")
    loaded = _load_or_error(impl, mutated)
    if loaded is None:
        return
    again = impl.checkpoint_to_bytes(loaded)
    if again == mutated:
        event("loaded: same bytes" + (" (unchanged)" if mutated == original else ""))
        return
    # only a JSON section may be spelled differently; everything else is what the file holds
    spans = _json_spans(golden)
    outside = [offset for offset, _ in edits if not any(a <= offset < b for a, b in spans)
               and mutated[offset] != original[offset]]
    assert not outside, f"loaded a file edited outside its JSON at {outside}, and it re-serializes differently"
    _tensors_equal_file(impl, loaded, mutated, golden)
    assert impl.checkpoint_to_bytes(impl.checkpoint_from_bytes(again)) == again
    event("loaded: a JSON section respelled")


@FUZZ
@given(data=st.data())
def test_checkpoint_structural_mutations(impl, valid_checkpoint, data):
    original, _, hot = valid_checkpoint
    edit, mutated = data.draw(structural_mutation(original, hot), label="mutation")
    loaded = _load_or_error(impl, mutated)
    if loaded is not None:
        assert impl.checkpoint_to_bytes(loaded) == mutated, f"{edit[0]} at {edit[1]} loaded to other bytes"
        event("loaded: same bytes")


@pytest.fixture(scope="module")
def valid_tokenizer_json(impl):
    text = ("the quick brown fox jumps over the lazy dog; " * 8 + "ünïcödé ✓ \x00\x01 end").encode("utf-8")
    # not the default unk_token: an edit that hides the key ("un+_token") must not pass as a reset to "<unk>"
    tokenizer = impl.Tokenizer(impl.Tokenizer.train(text, 280).merges, unk_token="<my-unk>")
    assert tokenizer.vocab_size == 280
    raw = tokenizer.to_json().encode("utf-8")
    unk = raw.rindex(b'"<my-unk>"') + 1
    hot = (0, 9, raw.index(b'"merges"'), raw.index(b'"unk_token"'), unk, len(raw) - 8)
    return tokenizer, raw, (unk, unk + len("<my-unk>")), hot


def _tokenizer_outcome(impl, tokenizer, mutated: bytes, inside_unk: bool) -> None:
    """ValueError, or the same merges and (unless every edit was inside the unk_token
    string) the same unk_token, and a canonical form that reads back to itself."""
    try:
        loaded = impl.Tokenizer.from_json(mutated)
    except ValueError as exc:
        event(_kind(exc))
        return
    assert loaded.merges == tokenizer.merges, "a mutated tokenizer JSON loaded with other merges"
    if loaded.unk_token != tokenizer.unk_token:
        assert inside_unk, "unk_token changed by an edit outside it"
        event("loaded: unk_token edited")
    else:
        event("loaded: same tokenizer")
    again = loaded.to_json()
    assert impl.Tokenizer.from_json(again).to_json() == again


@FUZZ
@given(data=st.data())
def test_tokenizer_json_in_place_mutations(impl, valid_tokenizer_json, data):
    tokenizer, raw, (a, b), hot = valid_tokenizer_json
    edits, mutated = data.draw(in_place_mutation(raw, hot, max_edits=1), label="mutation")
    _tokenizer_outcome(impl, tokenizer, mutated, all(a <= offset < b for offset, _ in edits))


@FUZZ
@given(data=st.data())
def test_tokenizer_json_structural_mutations(impl, valid_tokenizer_json, data):
    tokenizer, raw, (a, b), hot = valid_tokenizer_json
    (kind, offset, payload), mutated = data.draw(structural_mutation(raw, hot), label="mutation")
    # inside the unk_token string [a, b): an insertion at a..b, a deletion of bytes a..b-1
    inside = (kind == "insert" and a <= offset <= b) or (kind == "delete" and a <= offset and offset + payload <= b)
    _tokenizer_outcome(impl, tokenizer, mutated, inside)
