"""Conformance: the byte-level BPE tokenizer (SPEC §tokenizer).

Independent oracles: hand-derived vectors (derivation in each docstring), a
pure-Python loop version of Feste's algorithm on token *strings* (written
here, sharing no code with any implementation), golden JSON from a minimal
writer in this file, and round-trip properties on arbitrary text and bytes.
"""
from __future__ import annotations

import json
import os
import random
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conformance.fixtures import terminal_stderr
from conformance.strategies import byte_strings, pair_heavy_bytes, repetitive_texts, texts


# --- the oracle: Feste's training loop on token strings, pure Python -----------
def hexs(b: int) -> str:
    return "<%02x>" % b


def oracle_replace(tokens: list[str], pair: tuple[str, str]) -> list[str]:
    """Left to right, no overlap: a matched pair is consumed whole."""
    out, i = [], 0
    while i < len(tokens):
        if i + 1 < len(tokens) and tokens[i] == pair[0] and tokens[i + 1] == pair[1]:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return out


def oracle_train(data: bytes, n_merges: int) -> list[tuple[str, str]]:
    """Count every adjacent pair (overlapping windows), sort by (-count, left
    string, right string), take the first whose concatenation is not already
    a token, replace, repeat; stop when no pair is left."""
    tokens = [hexs(b) for b in data]
    vocab = {hexs(b) for b in range(256)}
    merges = []
    for _ in range(n_merges):
        counts: dict[tuple[str, str], int] = {}
        for i in range(len(tokens) - 1):
            pair = (tokens[i], tokens[i + 1])
            counts[pair] = counts.get(pair, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        choice = next((pair for pair, _ in ranked if pair[0] + pair[1] not in vocab), None)
        if choice is None:
            break
        merges.append(choice)
        vocab.add(choice[0] + choice[1])
        tokens = oracle_replace(tokens, choice)
    return merges


def oracle_encode(data: bytes, merges: list[tuple[str, str]]) -> list[str]:
    tokens = [hexs(b) for b in data]
    for pair in merges:
        tokens = oracle_replace(tokens, pair)
    return tokens


def token_strings(merges) -> list[str]:
    """Token string of every id, derived here from the (left_id, right_id) merges."""
    strings = [hexs(b) for b in range(256)]
    for left, right in merges:
        strings.append(strings[left] + strings[right])
    return strings


def merge_strings(tok) -> list[tuple[str, str]]:
    strings = token_strings(tok.merges)
    return [(strings[a], strings[b]) for a, b in tok.merges]


def golden_json(merges_str: list[tuple[str, str]], unk: str = "<unk>") -> str:
    """Minimal independent writer of the canonical form: no spaces, vocab in id order."""
    vocab = [hexs(b) for b in range(256)] + [a + b for a, b in merges_str]
    body = ",".join(f'"{s}":{i}' for i, s in enumerate(vocab))
    merges = ",".join(f'["{a}","{b}"]' for a, b in merges_str)
    return f'{{"vocab":{{{body}}},"merges":[{merges}],"unk_token":"{unk}"}}'


# --- hand-derived vectors --------------------------------------------------------
def test_hand_derived_aaabdaaabac(impl):
    """"aaabdaaabac" (a=97, b=98, c=99, d=100), three merges.

    Pairs: (a,a) 4 (each "aaa" holds two overlapping), (a,b) 2, the rest 1.
    Merge 0: (a,a) -> 256. "aaab" -> [256 a b]: [256 a b d 256 a b a c].
    Pairs: (256,a) 2, (a,b) 2, others 1. Tie: compare ("<61><61>","<61>")
    with ("<61>","<62>"): "<61>" is a proper prefix of "<61><61>", so it is
    smaller: merge 1 is (a,b) -> 257: [256 257 d 256 257 a c].
    Merge 2: (256,257) occurs twice -> 258: [258 d 258 a c].
    """
    tok = impl.Tokenizer.train("aaabdaaabac", 259)
    assert [tuple(m) for m in tok.merges] == [(97, 97), (97, 98), (256, 257)]
    assert tok.vocab_size == 259
    ids = tok.encode("aaabdaaabac")
    assert ids.dtype == np.int32
    assert ids.tolist() == [258, 100, 258, 97, 99]


def test_hand_derived_tie_between_pairs_a_merge_created(impl):
    """"abaabbaaaba" (a=97, b=98), four merges: a tie among pairs that merges
    created, decided by the right strings (SPEC §tokenizer step 3).

    Pairs: (a,b) 3, (b,a) 3, (a,a) 3, (b,b) 1. Tie: ("<61>","<61>") is the
    smallest, merge 0 is (a,a) -> X=256: [a b X b b X a b a].
    Pairs: (a,b) 2, (b,X) 2, the rest 1; "<61>" < "<62>": merge 1 is (a,b) ->
    Y=257: [Y X b b X Y a].
    Pairs, each once: (Y,X), (X,b), (b,b), (b,X), (X,Y), (Y,a). The smallest
    left string is X's "<61><61>"; of its rights, Y's "<61><62>" < b's "<62>":
    merge 2 is (X,Y) = (256, 257) -> 258 (although b = 98 < 257, and (X,b)
    was counted first): [Y X b b 258 a].
    Pairs, each once: (Y,X), (X,b), (b,b), (b,258), (258,a): merge 3 is (X,b).
    """
    tok = impl.Tokenizer.train("abaabbaaaba", 260)
    assert [tuple(m) for m in tok.merges] == [(97, 97), (97, 98), (256, 257), (256, 98)]
    assert tok.encode("abaabbaaaba").tolist() == [257, 259, 98, 258, 97]


def test_overlapping_pairs_and_runs(impl):
    """Training on "aaaa": the windows (0,1), (1,2), (2,3) are all (a,a), so
    the count is 3 and merge 0 is (a,a) -> 256. Replacing left to right
    without overlap turns "aaaa" into [256 256]; merge 1 is then (256,256)
    -> 257 (count 1) and the text is one token: no pair is left, so
    training stops early at vocab 258 although 260 was asked for.

    Encoding with merge 0 alone, left to right: "aaa" -> [256 a] (not
    [a 256]), "aaaaa" -> [256 256 a], "aaaaaa" -> [256 256 256].
    """
    tok = impl.Tokenizer.train("aaaa", 260)
    assert [tuple(m) for m in tok.merges] == [(97, 97), (256, 256)]
    assert tok.vocab_size == 258
    assert tok.encode("aaaa").tolist() == [257]
    one = impl.Tokenizer.train("aaaa", 257)
    assert one.encode("aaa").tolist() == [256, 97]
    assert one.encode("aaaaa").tolist() == [256, 256, 97]
    assert one.encode("aaaaaa").tolist() == [256, 256, 256]
    assert one.encode("baaab").tolist() == [98, 256, 97, 98]
    assert one.encode("a").tolist() == [97]
    assert one.encode("").tolist() == []


def test_tie_break_compares_strings_not_ids(impl):
    """"abzabzab cycy": pairs (a,b) 3, (b,z) 2, (z,a) 2, (c,y) 2, others 1.
    Merge 0: (a,b) -> 256 = "<61><62>"; text [256 z 256 z 256 ' ' c y c y].
    Now (256,z), (z,256) and (c,y) all occur twice. By ids the smallest pair
    would be (99,121) = (c,y); by strings "<61><62>" < "<63>" < "<7a>", so
    merge 1 is (256, z) = (256, 122): text [257 257 256 ' ' c y c y].
    Merge 2: (c,y) is the only pair left with count 2 -> (99, 121).
    """
    tok = impl.Tokenizer.train("abzabzab cycy", 259)
    assert [tuple(m) for m in tok.merges] == [(97, 98), (256, 122), (99, 121)]
    assert tok.encode("abzabzab cycy").tolist() == [257, 257, 256, 32, 258, 258]


def test_tie_break_holds_for_a_pair_that_ties_last(impl):
    """"abzaby" (a=97, b=98, y=121, z=122), two merges.

    Pairs: (a,b) 2, the rest 1. Merge 0: (a,b) -> 256 = "<61><62>"; text
    [256 z 256 y]. Now (256,z), (z,256) and (256,y) all occur once. The
    smallest left string is "<61><62>" (< "<7a>"), and between its two
    pairs the right strings decide: "<79>" < "<7a>", so merge 1 is (256, y)
    = (256, 121) although (256, z) comes first in the text (a count that
    only takes over when strictly higher keeps the first pair seen).
    Encoding "abzaby": [256 z 257].
    """
    tok = impl.Tokenizer.train("abzaby", 258)
    assert [tuple(m) for m in tok.merges] == [(97, 98), (256, 121)]
    assert merge_strings(tok) == oracle_train(b"abzaby", 2)
    assert tok.encode("abzaby").tolist() == [256, 122, 257]


def test_no_pairs_means_no_merges(impl):
    """Texts shorter than two bytes have no pair: zero merges, vocab 256."""
    for text in ("", "x", b"\xff"):
        tok = impl.Tokenizer.train(text, 300)
        assert list(tok.merges) == [] and tok.vocab_size == 256


def test_every_byte_value_trains_and_encodes(impl):
    """SPEC §tokenizer: training and encoding take any bytes, NUL (0x00) and 0xff included:
    the merges and the encoding equal the loop oracle's."""
    data = bytes(range(256)) + b"\x00\x00\xff\xff\x00\x00\x00\xff\xff\x01\x00" * 3
    tok = impl.Tokenizer.train(data, 262)
    assert merge_strings(tok) == oracle_train(data, 6)
    strings = token_strings(tok.merges)
    assert [strings[i] for i in tok.encode(data).tolist()] == oracle_encode(data, oracle_train(data, 6))


def test_train_accepts_bytes_and_str_alike(impl):
    """A str is trained on its UTF-8 bytes: the same merges as the bytes."""
    text = "naïve café, naïve café"
    a = impl.Tokenizer.train(text, 270)
    b = impl.Tokenizer.train(text.encode("utf-8"), 270)
    assert [tuple(m) for m in a.merges] == [tuple(m) for m in b.merges]
    assert a.encode(text).tolist() == b.encode(text.encode("utf-8")).tolist()


# --- the naive loop oracle ---------------------------------------------------------
@given(data=pair_heavy_bytes, n_merges=st.integers(0, 12), other=pair_heavy_bytes)
@example(data=b"aaaaa", n_merges=3, other=b"aaaaaaa")
@example(data=b"ab ab ab \xff\xff\xff", n_merges=12, other=b"")
def test_training_and_encoding_match_loop_oracle(impl, data, n_merges, other):
    tok = impl.Tokenizer.train(data, 256 + n_merges)
    want = oracle_train(data, n_merges)
    assert merge_strings(tok) == want
    assert tok.vocab_size == 256 + len(want)
    strings = token_strings(tok.merges)
    for text in (data, other):
        ids = tok.encode(text)
        assert ids.dtype == np.int32
        assert [strings[i] for i in ids.tolist()] == oracle_encode(text, want)


@given(text=repetitive_texts, n_merges=st.integers(1, 20))
def test_text_training_matches_loop_oracle(impl, text, n_merges):
    data = text.encode("utf-8")
    tok = impl.Tokenizer.train(text, 256 + n_merges)
    want = oracle_train(data, n_merges)
    assert merge_strings(tok) == want
    strings = token_strings(tok.merges)
    assert [strings[i] for i in tok.encode(text).tolist()] == oracle_encode(data, want)


def test_longer_text_matches_loop_oracle(impl):
    """A few kilobytes of word-like text, 40 merges: long runs of merges on
    tokens that are themselves merges."""
    rng = random.Random(1234)
    words = ["to", "be", "or", "not", "the", "thee", "thou", "that", "is", "question", "a", "aa"]
    text = " ".join(rng.choice(words) for _ in range(700)).encode()
    tok = impl.Tokenizer.train(text, 296)
    want = oracle_train(text, 40)
    assert merge_strings(tok) == want
    strings = token_strings(tok.merges)
    assert [strings[i] for i in tok.encode(text).tolist()] == oracle_encode(text, want)


# --- round trips ---------------------------------------------------------------------
SAMPLE = ("To be, or not to be, that is the question: Whether 'tis nobler in the mind "
          "to suffer the slings and arrows of outrageous fortune. " * 4
          + "Naïve café 日本語 😀😀 déjà vu — “quotes”\n" * 3)


@pytest.fixture(scope="module")
def sample_tokenizer(impl):
    return impl.Tokenizer.train(SAMPLE, 330)


@given(text=texts)
@example(text="")
@example(text="a")
@example(text="😀")
@example(text="To be, or not to be")
@example(text="e\u0301\u0301 combining")
def test_text_round_trip(sample_tokenizer, text):
    ids = sample_tokenizer.encode(text)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert sample_tokenizer.decode(ids) == text
    assert sample_tokenizer.decode_bytes(ids) == text.encode("utf-8")


@given(data=byte_strings)
@example(data=b"")
@example(data=b"\x00")
@example(data=b"\xff")
@example(data=b"\xc3")  # a truncated two-byte sequence
@example(data=b"\xf0\x9f\x98")  # a truncated emoji
@example(data=b"caf\xe9 \xff\xfe")  # Latin-1, not UTF-8
def test_bytes_round_trip(sample_tokenizer, data):
    ids = sample_tokenizer.encode(data)
    assert sample_tokenizer.decode_bytes(ids) == data
    assert sample_tokenizer.decode(ids) == data.decode("utf-8", errors="replace")


@given(data=byte_strings, n_merges=st.integers(0, 30))
def test_round_trip_when_trained_on_the_input(impl, data, n_merges):
    tok = impl.Tokenizer.train(data, 256 + n_merges)
    ids = tok.encode(data)
    assert tok.decode_bytes(ids) == data
    assert ids.size <= max(len(data), 0)
    assert np.all((ids >= 0) & (ids < tok.vocab_size))


def test_decode_replaces_invalid_utf8(impl):
    tok = impl.Tokenizer.train(b"", 256)
    ids = tok.encode(b"ok\xff")
    assert tok.decode(ids) == "ok\ufffd"
    assert tok.decode_bytes(ids) == b"ok\xff"
    assert tok.decode([]) == "" and tok.decode_bytes([]) == b""
    assert tok.decode([104, 105]) == "hi"  # a plain list of ints is accepted


# --- JSON ------------------------------------------------------------------------------
ABC_MERGES = [("<61>", "<61>"), ("<61>", "<62>"), ("<61><61>", "<61><62>")]  # from "aaabdaaabac"


def test_to_json_is_canonical(impl):
    """Canonical bytes: keys vocab, merges, unk_token; no spaces; vocab in id order."""
    tok = impl.Tokenizer.train("aaabdaaabac", 259)
    assert tok.to_json() == golden_json(ABC_MERGES)


def test_json_round_trip(impl, sample_tokenizer, tmp_path):
    text = sample_tokenizer.to_json()
    back = impl.Tokenizer.from_json(text)
    assert [tuple(m) for m in back.merges] == [tuple(m) for m in sample_tokenizer.merges]
    assert back.vocab_size == sample_tokenizer.vocab_size
    assert back.to_json() == text
    assert back.encode(SAMPLE).tolist() == sample_tokenizer.encode(SAMPLE).tolist()
    path = tmp_path / "tokenizer.json"
    sample_tokenizer.save(path)
    assert path.read_bytes() == text.encode("utf-8")
    loaded = impl.Tokenizer.load(path)
    assert loaded.to_json() == text
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temp files left


def feste_style_json(merges_str, seed=7) -> str:
    """What Feste writes (serde_json pretty, HashMap order): merges first,
    unk_token in the middle, vocab entries shuffled, indented."""
    vocab = [hexs(b) for b in range(256)] + [a + b for a, b in merges_str]
    entries = list(enumerate(vocab))
    random.Random(seed).shuffle(entries)
    lines = ["{", '  "merges": [']
    lines.append(",\n".join(f'    [\n      "{a}",\n      "{b}"\n    ]' for a, b in merges_str))
    lines += ["  ],", '  "unk_token": "<unk>",', '  "vocab": {']
    lines.append(",\n".join(f'    "{s}": {i}' for i, s in entries))
    lines += ["  }", "}"]
    return "\n".join(lines)


def test_reads_feste_style_file(impl, tmp_path):
    """Any key order, any whitespace, vocab in any order: the same tokenizer."""
    path = tmp_path / "feste_tokenizer.json"
    path.write_text(feste_style_json(ABC_MERGES))
    tok = impl.Tokenizer.load(path)
    assert [tuple(m) for m in tok.merges] == [(97, 97), (97, 98), (256, 257)]
    assert tok.vocab_size == 259
    assert tok.encode("aaabdaaabac").tolist() == [258, 100, 258, 97, 99]
    assert tok.to_json() == golden_json(ABC_MERGES)


def _doc(merges_str=ABC_MERGES):
    return json.loads(golden_json(merges_str))


def _bad_docs():
    """(id, JSON text, what the error message must name)."""
    cases = []

    def add(name, text, match):
        cases.append(pytest.param(text, match, id=name))

    add("not-json", '{"vocab": {', "malformed")
    add("not-an-object", "[1, 2]", "object")
    d = _doc(); del d["vocab"]; add("no-vocab", json.dumps(d), "vocab")
    d = _doc(); del d["merges"]; add("no-merges", json.dumps(d), "merges")
    d = _doc(); d["merges"][1] = ["<61>", "<zz>"]; add("merge-unknown-token", json.dumps(d), "unknown token")
    d = _doc(); d["merges"][0] = ["<61><61>", "<61>"]; add("merge-uses-later-token", json.dumps(d), "unknown token")
    d = _doc(); d["merges"][2] = ["<61>"]; add("merge-not-a-pair", json.dumps(d), "pair")
    d = _doc(); d["vocab"]["<61><62>"] = 258; d["vocab"]["<61><61><61><62>"] = 257
    add("vocab-merges-disagree", json.dumps(d), "disagree")
    d = _doc(); del d["vocab"]["<61><61><61><62>"]; add("vocab-too-small", json.dumps(d), "disagree")
    d = _doc(); d["vocab"]["<extra>"] = 259; add("vocab-too-large", json.dumps(d), "disagree")
    d = _doc(); d["merges"].pop(); add("merge-missing", json.dumps(d), "disagree")
    d = _doc(); d["vocab"]["<41>"] = 97; d["vocab"]["<61>"] = 65; add("byte-token-wrong-id", json.dumps(d), "<41>|<61>")
    d = _doc(); d["vocab"]["<61>"] = "97"; add("id-not-int", json.dumps(d), "int")
    d = _doc(); d["vocab"] = [1]; add("vocab-not-object", json.dumps(d), "vocab")
    d = _doc(); d["merges"] = {"<61>": "<61>"}; add("merges-not-list", json.dumps(d), "merges")
    d = _doc(); d["vocab"]["<61><62>"] = 256; add("two-strings-one-id", json.dumps(d), "same id")
    # hostile input: what config and metadata JSON already refused
    good = golden_json(ABC_MERGES)
    add("unknown-key", good.replace('"unk_token"', '"un+_token"'), "unknown key")  # one flipped bit
    add("extra-key", good[:-1] + ',"added_tokens":[]}', "unknown key")
    add("duplicate-top-key", good[:-1] + ',"unk_token":"<pad>"}', "duplicate key 'unk_token'")
    add("duplicate-vocab-key", good.replace('"<00>":0,', '"<00>":0,"<00>":0,', 1), "duplicate key '<00>'")
    add("nested-array", "[" * 100_000 + "]" * 100_000, "nested too deeply")
    add("nested-in-vocab", good.replace('"<00>":0', '"<00>":' + "[" * 100_000 + "]" * 100_000, 1),
        "nested too deeply")
    add("nan-id", good.replace('"<00>":0', '"<00>":NaN', 1), "NaN")
    return cases


@pytest.mark.parametrize("text, match", _bad_docs())
def test_bad_json_is_a_clear_value_error(impl, text, match):
    with pytest.raises(ValueError, match=match):
        impl.Tokenizer.from_json(text)


@pytest.mark.parametrize("merges, word", [
    ([(97, 256)], "unknown token"),  # the id merge 0 itself defines
    ([(256, 97)], "unknown token"),
    ([(97, 98), (97, 257)], "unknown token"),
    ([(-1, 97)], "unknown token"),
    ([(97, 98), (97, 98)], "unique"),  # "ab" twice
    ([(97, 98), (256, 99), (98, 99), (97, 258)], "unique"),  # "abc" as (ab, c), then as (a, bc)
    ([("x", 98)], "pair of ints"),
    ([(97, 98, 99)], "pair of ints"),
], ids=["self", "ahead", "ahead-later", "negative", "twice", "same-string", "not-int", "triple"])
def test_a_merge_list_naming_unknown_ids_or_spelling_a_string_twice_is_refused(impl, merges, word):
    """SPEC §tokenizer: `Tokenizer(merges)` takes merge k as a pair of ids below
    256 + k and refuses, with a ValueError, one that is not a pair of ints, one
    naming an id not yet defined ("unknown token") and one spelling the string
    of an existing token ("unique")."""
    with pytest.raises(ValueError, match=word):
        impl.Tokenizer(merges)


@pytest.mark.parametrize("s", [None, 7, {"vocab": {}}], ids=["None", "int", "dict"])
def test_from_json_of_neither_str_nor_bytes_is_a_value_error(impl, s):
    """SPEC §tokenizer: from_json takes the JSON text (str or UTF-8 bytes); anything
    else is a ValueError saying so."""
    with pytest.raises(ValueError, match="str or bytes"):
        impl.Tokenizer.from_json(s)


# --- optional fields (SPEC §tokenizer) ------------------------------------------------------------
def test_unk_token_is_optional_and_defaults_to_unk(impl):
    """SPEC §tokenizer: `unk_token` is optional on reading (default "<unk>"), and the
    canonical JSON always writes it."""
    doc = _doc()
    del doc["unk_token"]
    tok = impl.Tokenizer.from_json(json.dumps(doc))
    assert [tuple(m) for m in tok.merges] == [(97, 97), (97, 98), (256, 257)]
    assert tok.to_json() == golden_json(ABC_MERGES)


@pytest.mark.parametrize("unk", ["<|endoftext|>", "", "\u00bfunk?"])
def test_a_given_unk_token_is_kept_and_written_back(impl, unk, tmp_path):
    """A file's own unk_token survives reading, writing and a checkpoint round
    trip (SPEC §tokenizer: "kept and written back"); encode never produces it."""
    doc = _doc()
    doc["unk_token"] = unk
    tok = impl.Tokenizer.from_json(json.dumps(doc, indent=2))
    assert tok.to_json() == golden_json(ABC_MERGES, unk=json.dumps(unk)[1:-1])
    assert impl.Tokenizer.from_json(tok.to_json()).to_json() == tok.to_json()
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    assert impl.Tokenizer.load(path).to_json() == tok.to_json()
    config = impl.Config(vocab_size=259, n_embd=4, n_heads=2, n_layers=1, block_size=4)
    ckpt = impl.Checkpoint(config, impl.init_params(config), None, tok)
    assert impl.checkpoint_from_bytes(impl.checkpoint_to_bytes(ckpt)).tokenizer.to_json() == tok.to_json()
    assert tok.encode("aaabdaaabac").tolist() == [258, 100, 258, 97, 99]


def test_equal_tokenizers_have_the_same_merges_and_unk_token(impl):
    """SPEC §tokenizer: two tokenizers are equal (`==`) when their merges and
    their unk_token are, that is when their canonical JSON is the same."""
    doc = _doc()
    tok = impl.Tokenizer.from_json(json.dumps(doc))
    assert tok == impl.Tokenizer.from_json(json.dumps(doc, indent=2))
    doc["unk_token"] = "<|endoftext|>"
    assert tok != impl.Tokenizer.from_json(json.dumps(doc)), "tokenizers with other unk_tokens compared equal"
    doc = _doc()
    doc["merges"], doc["vocab"] = doc["merges"][:2], {k: v for k, v in doc["vocab"].items() if v < 258}
    assert tok != impl.Tokenizer.from_json(json.dumps(doc)), "tokenizers with other merges compared equal"
    assert tok != tok.to_json()


@pytest.mark.parametrize("unk", [None, 7, ["<unk>"]], ids=["null", "int", "list"])
def test_unk_token_must_be_a_string(impl, unk):
    doc = _doc()
    doc["unk_token"] = unk
    with pytest.raises(ValueError, match="unk_token"):
        impl.Tokenizer.from_json(json.dumps(doc))


def test_load_names_the_file(impl, tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        impl.Tokenizer.load(bad)
    with pytest.raises(OSError):
        impl.Tokenizer.load(tmp_path / "missing.json")
    with pytest.raises(OSError, match="no-such-dir"):
        impl.Tokenizer.train("abab", 257).save(tmp_path / "no-such-dir" / "tok.json")


def test_load_refuses_a_file_over_the_limit_before_reading_it(impl, tmp_path):
    """SPEC §tokenizer: Tokenizer.load reads a regular file of at most 1 GiB; a larger one
    is an OSError naming it, raised before anything is read. The file here is sparse
    (2^30 + 1 bytes on disk as a hole), so a reader that read it first would allocate
    a gigabyte and then fail on its content with a ValueError."""
    path = tmp_path / "huge_tokenizer.json"
    with open(path, "wb") as fh:
        fh.truncate((1 << 30) + 1)
    if os.stat(path).st_blocks * 512 > 1 << 20:
        pytest.skip(f"the file system of {tmp_path} does not keep sparse files (the test would write 1 GiB)")
    with pytest.raises(OSError, match=re.escape(str(path))):
        impl.Tokenizer.load(path)


def _stderr_written_by_training(impl, monkeypatch, **kwargs) -> str:
    """What Tokenizer.train writes to stderr when stderr is a terminal."""
    terminal = terminal_stderr(monkeypatch)
    impl.Tokenizer.train(b"ab ab abc abcd " * 20, 270, **kwargs)
    return terminal.getvalue()


def test_training_shows_progress_only_when_asked(impl, monkeypatch):
    """SPEC §tokenizer: `progress=True` shows a progress bar on stderr when
    stderr is a terminal; by default training writes nothing there."""
    assert _stderr_written_by_training(impl, monkeypatch) == "", "training wrote to the terminal unasked"
    assert _stderr_written_by_training(impl, monkeypatch, progress=True), "progress=True showed nothing on a terminal"


def test_training_progress_writes_nothing_to_a_stderr_that_is_not_a_terminal(impl, monkeypatch):
    """SPEC §tokenizer: the progress bar of `progress=True` is shown only when stderr is
    a terminal; a stderr redirected to a file or a pipe (here a buffer that says it is
    no terminal) gets nothing, as with the default."""
    redirected = terminal_stderr(monkeypatch, terminal=False)
    impl.Tokenizer.train(b"ab ab abc abcd " * 20, 270, progress=True)
    assert redirected.getvalue() == "", f"progress=True wrote to a stderr that is not a terminal: {redirected.getvalue()[:80]!r}"


# --- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("vocab_size", [0, 1, 255, -5, 300.0, "300", True, None])
def test_vocab_size_not_an_int_from_256_is_rejected(impl, vocab_size):
    """SPEC §contract-errors: `vocab_size` not an int >= 256 (a float, a
    string, a bool too) is a ValueError naming vocab_size."""
    with pytest.raises(ValueError, match="vocab_size"):
        impl.Tokenizer.train("hello", vocab_size)


@pytest.mark.parametrize("text", [123, None, ["ab"], np.frombuffer(b"ab", dtype=np.uint8)],
                         ids=["int", "None", "list", "ndarray"])
def test_text_neither_str_nor_bytes_is_a_type_error(impl, text):
    """SPEC §contract-errors: training on, or encoding, a text that is neither
    a str nor bytes is a TypeError naming `text` and the type given."""
    given = type(text).__name__
    with pytest.raises(TypeError, match=rf"\btext\b.*\b{given}\b"):
        impl.Tokenizer.train(text, 300)
    with pytest.raises(TypeError, match=rf"\btext\b.*\b{given}\b"):
        impl.Tokenizer.train("ab", 257).encode(text)


@pytest.mark.parametrize("ids, match", [
    ([104, 259], "259"),
    ([-1], "-1"),
    ([10_000], "10000"),
    (np.array([1.5]), "integer"),
])
def test_decode_rejects_ids_out_of_range(impl, ids, match):
    tok = impl.Tokenizer.train("aaabdaaabac", 259)
    with pytest.raises(ValueError, match=match):
        tok.decode(ids)
    with pytest.raises(ValueError, match=match):
        tok.decode_bytes(ids)


@pytest.mark.parametrize("ids", [[[104, 105]], np.zeros((2, 3), dtype=np.int32), np.int64(5), 5,
                                 np.zeros((0, 3), dtype=np.int64)],
                         ids=["nested-list", "batch", "numpy-scalar", "int", "empty-batch"])
def test_decode_rejects_ids_not_1d(impl, ids):
    """SPEC §contract-errors: decode and decode_bytes take a 1-D sequence of ids; a batch
    [B, T] (the shape of a model's tokens) or a scalar is a ValueError naming `1-D`,
    never a decoding of the flattened ids."""
    tok = impl.Tokenizer.train("aaabdaaabac", 259)
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(ids)
    with pytest.raises(ValueError, match="1-D"):
        tok.decode_bytes(ids)


# --- the full corpus ---------------------------------------------------------------------------
@pytest.mark.corpus
@pytest.mark.slow
def test_shakespeare_vocab_512(impl, corpus_bytes):
    """Full corpus to vocab 512: 256 merges, exact round trip, and the first
    merge is the most frequent adjacent byte pair (counted here with a
    Counter, ties by strings), the first 30 merges on a 20 kB prefix agree
    with the loop oracle."""
    tok = impl.Tokenizer.train(corpus_bytes, 512)
    assert tok.vocab_size == 512
    ids = tok.encode(corpus_bytes)
    assert ids.dtype == np.int32
    assert tok.decode_bytes(ids) == corpus_bytes
    assert ids.size < len(corpus_bytes) // 1.5  # 256 merges compress English text well
    pairs = Counter(zip(corpus_bytes, corpus_bytes[1:]))
    best = min(pairs.items(), key=lambda kv: (-kv[1], hexs(kv[0][0]), hexs(kv[0][1])))[0]
    assert tuple(tok.merges[0]) == best
    prefix = corpus_bytes[:20_000]
    small = impl.Tokenizer.train(prefix, 286)
    assert merge_strings(small) == oracle_train(prefix, 30)


# --- reference internals ----------------------------------------------------------------------
@given(data=pair_heavy_bytes, n_merges=st.integers(0, 12))
def test_reference_sorting_path_matches_oracle(data, n_merges):
    """reference.tokenizer counts pairs in a dense [W*W] table for vocabularies
    up to 2048 and recounts by sorting above that; force the sorting path on
    small inputs and hold it to the same loop oracle (reference only: the
    switch is an internal of reference.tokenizer, not of the contract)."""
    import reference.tokenizer as rt

    saved = rt._DENSE_PAIR_SLOTS
    rt._DENSE_PAIR_SLOTS = 0
    try:
        merges = rt.train_merges(np.frombuffer(data, dtype=np.uint8), n_merges)
    finally:
        rt._DENSE_PAIR_SLOTS = saved
    strings = token_strings(merges)
    assert [(strings[a], strings[b]) for a, b in merges] == oracle_train(data, n_merges)


@given(data=pair_heavy_bytes, n_merges=st.integers(0, 12), slice_size=st.integers(1, 9),
       dense=st.booleans(), other=pair_heavy_bytes)
# the first count over several slices decides the merges: a count that kept only the last
# slice's pairs would merge (a,b) then (ab,c) and miss (x,y)
@example(data=b"abcabcxyxyxyab", n_merges=4, slice_size=2, dense=True, other=b"xyabcxy")
@example(data=b"abcabcxyxyxyab", n_merges=4, slice_size=2, dense=False, other=b"xyabcxy")
def test_reference_slices_match_oracle(data, n_merges, slice_size, dense, other):
    """reference.tokenizer counts pairs and finds occurrences over slices of
    _SLICE positions (so its memory per corpus byte is bounded, SPEC §tokenizer): with
    slices of 1..9 positions, pairs and runs ("aaaa") cross slice boundaries all
    the time, and training (dense and sorting paths) and encoding must still
    match the loop oracle."""
    import reference.tokenizer as rt

    saved = rt._SLICE, rt._DENSE_PAIR_SLOTS
    rt._SLICE, rt._DENSE_PAIR_SLOTS = slice_size, (saved[1] if dense else 0)
    try:
        merges = rt.train_merges(np.frombuffer(data, dtype=np.uint8), n_merges)
        encoded = rt.apply_merges(np.frombuffer(other, dtype=np.uint8), merges)
    finally:
        rt._SLICE, rt._DENSE_PAIR_SLOTS = saved
    strings = token_strings(merges)
    want = oracle_train(data, n_merges)
    assert [(strings[a], strings[b]) for a, b in merges] == want
    assert [strings[i] for i in encoded.tolist()] == oracle_encode(other, want)


def test_reference_encodes_ids_above_16_bits():
    """SPEC §tokenizer puts no bound on the vocabulary: reference.tokenizer holds the
    working ids in uint16 while every id fits (vocab <= 2^16) and in int32 above, so a
    tokenizer of 65,792 tokens (the merges of every ordered byte pair, two bytes each)
    must encode ids up to 65,791 exactly, as the loop oracle does (reference only: fast
    refuses vocabularies over 2^14, and the dtype switch is an internal of reference)."""
    import reference.tokenizer as rt

    merges = [(a, b) for a in range(256) for b in range(256)]  # token 256 + 256a + b = bytes (a, b)
    data = b"\xff\xff\xfe\xfe\x00\x01\xff"
    encoded = rt.apply_merges(np.frombuffer(data, dtype=np.uint8), merges)
    strings = token_strings(merges)
    assert [strings[i] for i in encoded.tolist()] == oracle_encode(data, [(strings[a], strings[b]) for a, b in merges])
    assert encoded.tolist() == [65791, 65534, 257, 255], encoded.tolist()


def test_load_refuses_fifo_and_devices_at_once(impl, tmp_path):
    """A FIFO with no writer would block open() forever; /dev/zero never ends."""
    import os
    import threading

    fifo = tmp_path / "tok.json"
    os.mkfifo(fifo)
    outcome = {}

    def load(path):
        try:
            impl.Tokenizer.load(path)
        except Exception as exc:  # noqa: BLE001 - judged below
            outcome[str(path)] = exc

    for path, word in [(fifo, "FIFO"), ("/dev/zero", "device")]:
        thread = threading.Thread(target=load, args=(path,), daemon=True)
        thread.start()
        thread.join(20)
        if thread.is_alive():
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock the reader so the thread can end
            pytest.fail(f"Tokenizer.load({path}) blocked")
        assert isinstance(outcome[str(path)], OSError) and word in str(outcome[str(path)]), outcome
