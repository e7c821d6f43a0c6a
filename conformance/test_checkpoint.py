"""FESTE_CKPT version 1 (SPEC §checkpoint).

Oracle: golden bytes from a minimal independent writer below (struct and
hand-typed tensor orders and JSON strings, copied from the SPEC text, never
from the implementation), plus round trips, an exact size formula, every
truncation point, targeted corruptions and memory/atomicity checks.
"""
from __future__ import annotations

import math
import os
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.assertions import assert_bitwise, assert_bytes_equal

# V, C, NH, L, block_size
SMALL = dict(vocab_size=11, n_embd=4, n_heads=2, n_layers=2, block_size=3)
SMALL_CONFIG_JSON = '{"vocab_size":11,"n_embd":4,"n_heads":2,"n_layers":2,"block_size":3,"dropout_rate":0.0}'

# --- the independent writer: orders typed from SPEC §checkpoint ----------------------
BLOCK = ["ln1.gamma", "ln1.beta", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
         "out.weight", "out.bias", "ln2.gamma", "ln2.beta", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def shapes_of(V, C, L, block_size):
    shapes = {"token_embedding": (V, C), "position_embedding": (block_size, C)}
    per_block = {"ln1.gamma": (C,), "ln1.beta": (C,), "q.weight": (C, C), "q.bias": (C,),
                 "k.weight": (C, C), "k.bias": (C,), "v.weight": (C, C), "v.bias": (C,),
                 "out.weight": (C, C), "out.bias": (C,), "ln2.gamma": (C,), "ln2.beta": (C,),
                 "fc1.weight": (C, 4 * C), "fc1.bias": (4 * C,), "fc2.weight": (4 * C, C), "fc2.bias": (C,)}
    for i in range(L):
        for k, s in per_block.items():
            shapes[f"blocks.{i}.{k}"] = s
    shapes.update({"ln_final.gamma": (C,), "ln_final.beta": (C,), "output_weight": (C, V)})
    return shapes


def optimizer_file_order(L):
    """SPEC §checkpoint step 4, typed out: m_tok, m_pos, v_tok, v_pos; per block m_ln1.gamma,
    m_ln1.beta, v_ln1.gamma, v_ln1.beta, m of q.w..out.b, v of the same eight,
    m_ln2.*, v_ln2.*, m of fc1.w..fc2.b, v of the same four; m_lnf.gamma,
    m_lnf.beta, m_out, v_lnf.gamma, v_lnf.beta, v_out."""
    order = [("m", "token_embedding"), ("m", "position_embedding"),
             ("v", "token_embedding"), ("v", "position_embedding")]
    attn = ["q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias", "out.weight", "out.bias"]
    mlp = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for i in range(L):
        b = f"blocks.{i}."
        order += [("m", b + "ln1.gamma"), ("m", b + "ln1.beta"), ("v", b + "ln1.gamma"), ("v", b + "ln1.beta")]
        order += [("m", b + n) for n in attn] + [("v", b + n) for n in attn]
        order += [("m", b + "ln2.gamma"), ("m", b + "ln2.beta"), ("v", b + "ln2.gamma"), ("v", b + "ln2.beta")]
        order += [("m", b + n) for n in mlp] + [("v", b + n) for n in mlp]
    order += [("m", "ln_final.gamma"), ("m", "ln_final.beta"), ("m", "output_weight"),
              ("v", "ln_final.gamma"), ("v", "ln_final.beta"), ("v", "output_weight")]
    return order


class GoldenWriter:
    """Appends pieces and remembers each section boundary and tensor data range."""

    def __init__(self):
        self.out = bytearray()
        self.boundaries = []  # offsets where a section or tensor starts
        self.tensor_headers = []  # offset of each tensor's u32 ndim, in file order
        self.tensor_data = []  # (start, end) of each tensor's f32 values

    def mark(self):
        self.boundaries.append(len(self.out))

    def u8(self, x):
        self.out += struct.pack("<B", x)

    def u32(self, x):
        self.out += struct.pack("<I", x)

    def blob(self, text: str):
        data = text.encode("utf-8")
        self.u32(len(data))
        self.out += data

    def tensor(self, array):
        self.mark()
        self.tensor_headers.append(len(self.out))
        array = np.asarray(array, dtype=np.float32)
        self.u32(array.ndim)
        for d in array.shape:
            self.u32(d)
        self.u32(array.size)
        start = len(self.out)
        for x in array.ravel():  # element by element, little-endian f32
            self.out += struct.pack("<f", x)
        self.tensor_data.append((start, len(self.out)))


def golden_bytes(config_json, tensors, L, optimizer=None, tokenizer_json=None, metadata_json="") -> GoldenWriter:
    """tensors: name -> array; optimizer: (step, beta1, beta2, eps, {(moment, name): array})."""
    w = GoldenWriter()
    w.out += b"FESTE_CKPT"
    w.u8(1)
    w.mark()
    w.blob(config_json)
    w.tensor(tensors["token_embedding"])
    w.tensor(tensors["position_embedding"])
    w.mark()
    w.u32(L)
    for i in range(L):
        for name in BLOCK:
            w.tensor(tensors[f"blocks.{i}.{name}"])
    for name in ("ln_final.gamma", "ln_final.beta", "output_weight"):
        w.tensor(tensors[name])
    w.mark()
    if optimizer is None:
        w.u8(0)
    else:
        step, b1, b2, eps, moments = optimizer
        w.u8(1)
        w.out += struct.pack("<Q", step) + struct.pack("<fff", b1, b2, eps)
        for key in optimizer_file_order(L):
            w.tensor(moments[key])
    w.mark()
    if tokenizer_json is None:
        w.u8(0)
    else:
        w.u8(1)
        w.blob(tokenizer_json)
    w.mark()
    w.blob(metadata_json)
    w.mark()
    return w


def hand_tokenizer_json():
    """Canonical Feste tokenizer JSON (SPEC §tokenizer) for one merge ("a", "b"), typed out."""
    vocab = ",".join(f'"<{b:02x}>":{b}' for b in range(256))
    return '{"vocab":{' + vocab + ',"<61><62>":256},"merges":[["<61>","<62>"]],"unk_token":"<unk>"}'


# --- fixtures ----------------------------------------------------------------------
def _random_params(impl, config, seed):
    rng = np.random.default_rng(seed)
    return impl.Params(config, rng.standard_normal(impl.n_params(config)).astype(np.float32))


def _training_state(impl, config, seed, step=7):
    state = impl.AdamWState(m=_random_params(impl, config, seed + 1), v=_random_params(impl, config, seed + 2),
                            step=step, beta1=0.9, beta2=0.95, eps=1e-8)
    state.v.data[...] = np.abs(state.v.data)
    return state


def _golden_for(impl, config_json, params, state=None, tok_json=None, meta_json=None):
    L = params.config.n_layers
    tensors = {name: params[name] for name in params.names()}
    optimizer = None
    if state is not None:
        moments = {}
        for moment, name in optimizer_file_order(L):
            moments[(moment, name)] = (state.m if moment == "m" else state.v)[name]
        optimizer = (state.step, state.beta1, state.beta2, state.eps, moments)
    return golden_bytes(config_json, tensors, L, optimizer, tok_json, meta_json)


STEP0_META = '{"step":0,"best_val_loss":null,"best_val_step":0}'  # a new run's (best_val_loss +inf: null)


def _small_file(impl, seed, config_json=SMALL_CONFIG_JSON, tok_json=None, meta_json=STEP0_META):
    """The independent writer's inference file of SMALL's random parameters (`seed`)
    with these JSON sections (the golden object: .out, .boundaries, .tensor_data)."""
    return _golden_for(impl, config_json, _random_params(impl, impl.Config(**SMALL), seed), tok_json=tok_json,
                       meta_json=meta_json)


@pytest.fixture
def small_training(impl):
    """(checkpoint, golden writer) for a training checkpoint with a tokenizer
    (vocab_size 257: the hand tokenizer's 256 bytes and one merge)."""
    config = impl.Config(**{**SMALL, "vocab_size": 257})
    params = _random_params(impl, config, 0)
    state = _training_state(impl, config, 10)
    tok = impl.Tokenizer.from_json(hand_tokenizer_json())
    meta = {"step": 7, "best_val_loss": 4.123, "best_val_step": 5}
    ckpt = impl.Checkpoint(config, params, state, tok, meta)
    config_json = SMALL_CONFIG_JSON.replace('"vocab_size":11', '"vocab_size":257')
    golden = _golden_for(impl, config_json, params, state, hand_tokenizer_json(),
                         '{"step":7,"best_val_loss":4.123,"best_val_step":5}')
    return ckpt, golden


# --- golden bytes ----------------------------------------------------------------------
def test_inference_checkpoint_golden_bytes(impl):
    """Inference-only: flag 0 for optimizer and tokenizer; best_val_loss +inf written null."""
    config = impl.Config(**SMALL)
    params = _random_params(impl, config, 1)
    ckpt = impl.Checkpoint(config, params, None, None, {"step": 0, "best_val_loss": math.inf, "best_val_step": 0})
    want = _golden_for(impl, SMALL_CONFIG_JSON, params, meta_json=STEP0_META)
    assert_bytes_equal("inference checkpoint", impl.checkpoint_to_bytes(ckpt), bytes(want.out), {"impl": impl.name})


def test_checkpoint_defaults_are_an_untrained_inference_checkpoint(impl):
    """SPEC §checkpoint API: `Checkpoint(config, params)` has no optimizer, no
    tokenizer and the metadata {"step": 0, "best_val_loss": inf, "best_val_step": 0},
    so its bytes are the inference golden file with `{"step":0,"best_val_loss":null,"best_val_step":0}`."""
    config = impl.Config(**SMALL)
    params = _random_params(impl, config, 1)
    ckpt = impl.Checkpoint(config, params)
    assert ckpt.optimizer is None and ckpt.tokenizer is None and ckpt.kind == "inference"
    assert ckpt.metadata == {"step": 0, "best_val_loss": math.inf, "best_val_step": 0}, ckpt.metadata
    want = _golden_for(impl, SMALL_CONFIG_JSON, params, meta_json='{"step":0,"best_val_loss":null,"best_val_step":0}')
    assert_bytes_equal("default checkpoint", impl.checkpoint_to_bytes(ckpt), bytes(want.out), {"impl": impl.name})


def test_training_checkpoint_golden_bytes(impl, small_training):
    ckpt, golden = small_training
    assert_bytes_equal("training checkpoint", impl.checkpoint_to_bytes(ckpt), bytes(golden.out), {"impl": impl.name})


def test_reads_golden_bytes(impl, small_training):
    """Reading the independent writer's file gives back every tensor, bit for bit."""
    ckpt, golden = small_training
    got = impl.checkpoint_from_bytes(bytes(golden.out))
    assert got.config == ckpt.config
    assert_bitwise("params", got.params.data, ckpt.params.data)
    assert_bitwise("m", got.optimizer.m.data, ckpt.optimizer.m.data)
    assert_bitwise("v", got.optimizer.v.data, ckpt.optimizer.v.data)
    assert got.optimizer.step == 7
    assert (got.optimizer.beta1, got.optimizer.beta2, got.optimizer.eps) == tuple(
        float(np.float32(x)) for x in (0.9, 0.95, 1e-8))
    assert got.tokenizer.merges == [(0x61, 0x62)]
    assert got.metadata == {"step": 7, "best_val_loss": float(np.float32(4.123)), "best_val_step": 5}


@pytest.mark.parametrize("rate, text", [(0.1, "0.1"), (0.0, "0.0"), (0.5, "0.5"), (0.25, "0.25"),
                                        (1e-7, "1e-7"), (0.001234, "0.001234"), (0.000001, "0.000001")])
def test_config_json_dropout_float_format(impl, rate, text):
    """serde_json writes f32 with ryu: shortest round-trip digits; decimal for
    1e-6 <= x < 1e13 (ryu's format32 uses -6 < kk <= 13), else d.ddde-N."""
    config = impl.Config(**{**SMALL, "dropout_rate": rate})
    data = impl.checkpoint_to_bytes(impl.Checkpoint(config, _random_params(impl, config, 2)))
    want = SMALL_CONFIG_JSON.replace('"dropout_rate":0.0', f'"dropout_rate":{text}').encode()
    (length,) = struct.unpack_from("<I", data, 11)
    assert_bytes_equal("config JSON", data[15:15 + length], want)


# Expected strings: ryu's format32 test outputs (1e30, 0.000001, 12345.0,
# 0.001234, 1.234) and the same rules worked by hand for the rest:
# 4.123 -> digits 4123, exponent 0; 1e-7 -> kk = -6, so scientific "1e-7";
# 1.5e-7 -> "1.5e-7"; 3.4028235e38 (f32 max); 1e13 has kk = 14 > 13 -> "1e13";
# 123456789012 -> f32 123456790528, shortest digits 12345679 -> "123456790000.0".
FLOAT_CASES = [(4.123, "4.123"), (1e30, "1e30"), (1e-6, "0.000001"), (12345.0, "12345.0"),
               (0.001234, "0.001234"), (1.234, "1.234"), (1e-7, "1e-7"), (1.5e-7, "1.5e-7"),
               (3.4028235e38, "3.4028235e38"), (1e13, "1e13"), (123456789012.0, "123456790000.0"),
               (6.2383246, "6.2383246"), (2.0, "2.0"), (0.0, "0.0"), (1e-45, "1e-45"),
               # 1.0: one digit, kk = 1; -0.0 (>= 0, so a valid loss) keeps its sign, as ryu's does,
               # since only "-0.0" reads back to the same float32
               (1.0, "1.0"), (-0.0, "-0.0"),
               # the last decimal exponent: kk = 13 with no fraction (1e12 is f32 999999995904)
               (1e12, "1000000000000.0")]


def _metadata_json(data: bytes) -> bytes:
    # the metadata is the last section: find its u32 length by scanning back for '{"step"'
    start = data.rindex(b'{"step"')
    (length,) = struct.unpack_from("<I", data, start - 4)
    assert start + length == len(data)
    return data[start:]


@pytest.mark.parametrize("loss, text", FLOAT_CASES)
def test_metadata_float_format(impl, loss, text):
    config = impl.Config(**SMALL)
    ckpt = impl.Checkpoint(config, _random_params(impl, config, 3), None, None,
                           {"step": 12, "best_val_loss": loss, "best_val_step": 10})
    want = f'{{"step":12,"best_val_loss":{text},"best_val_step":10}}'.encode()
    assert_bytes_equal("metadata JSON", _metadata_json(impl.checkpoint_to_bytes(ckpt)), want)


@pytest.mark.parametrize("loss", [math.inf, -math.inf, math.nan])
def test_nonfinite_best_val_loss_is_null_and_reads_back_inf(impl, loss):
    config = impl.Config(**SMALL)
    ckpt = impl.Checkpoint(config, _random_params(impl, config, 4), None, None,
                           {"step": 1, "best_val_loss": loss, "best_val_step": 0})
    data = impl.checkpoint_to_bytes(ckpt)
    assert _metadata_json(data) == b'{"step":1,"best_val_loss":null,"best_val_step":0}'
    assert impl.checkpoint_from_bytes(data).metadata["best_val_loss"] == math.inf


RYU_F32 = re.compile(r"-?(0\.0|[1-9][0-9]*\.[0-9]+|0\.0*[1-9][0-9]*|[1-9](\.[0-9]*[1-9])?e-?[1-9][0-9]?)$")


def test_metadata_float_shortest_roundtrip_property(impl):
    """For any finite float32 loss: the written number parses back to the same
    float32, has ryu's layout, and no shorter correctly rounded decimal round-trips."""
    config = impl.Config(**SMALL)
    params = _random_params(impl, config, 5)

    @given(x=st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=0.0))
    def check(x):
        data = impl.checkpoint_to_bytes(impl.Checkpoint(config, params, None, None,
                                                        {"step": 0, "best_val_loss": x, "best_val_step": 0}))
        text = _metadata_json(data)[len(b'{"step":0,"best_val_loss":'):-len(b',"best_val_step":0}')].decode()
        assert RYU_F32.match(text), text
        assert np.float32(float(text)) == np.float32(x)
        digits = len(re.sub(r"e.*|[.-]", "", text).strip("0")) or 1
        for n in range(1, digits):
            with np.errstate(over="ignore"):  # near float32 max a shorter decimal rounds to inf: != x, as it should
                shorter = np.float32(float(f"{np.float32(x):.{n - 1}e}"))
            assert shorter != np.float32(x), (text, n)

    check()


# --- round trips and sizes ------------------------------------------------------------
def test_round_trip_is_exact(impl, small_training, tmp_path):
    ckpt, _ = small_training
    data = impl.checkpoint_to_bytes(ckpt)
    back = impl.checkpoint_from_bytes(data)
    assert_bytes_equal("bytes -> checkpoint -> bytes", impl.checkpoint_to_bytes(back), data)
    path = tmp_path / "model.ckpt"
    impl.save_checkpoint(path, ckpt)
    assert_bytes_equal("file", path.read_bytes(), data)
    loaded = impl.load_checkpoint(path)
    assert_bitwise("params", loaded.params.data, ckpt.params.data)
    assert_bitwise("m", loaded.optimizer.m.data, ckpt.optimizer.m.data)
    assert_bitwise("v", loaded.optimizer.v.data, ckpt.optimizer.v.data)
    assert loaded.tokenizer.to_json() == ckpt.tokenizer.to_json()
    assert loaded.config == ckpt.config and loaded.optimizer.step == ckpt.optimizer.step


def _expected_size(shapes, L, training, tok_len, meta_len, config_len):
    """SPEC §checkpoint byte count: magic+version, u32+config, tensors (u32 ndim, dims, u32
    numel, f32s), u32 n_blocks, flags, u64+3 f32, u32+tokenizer, u32+metadata."""
    tensor = sum(4 * (2 + len(s)) + 4 * math.prod(s) for s in shapes.values())
    size = 11 + 4 + config_len + tensor + 4 + 1 + 1 + 4 + meta_len
    if training:
        size += 8 + 12 + 2 * tensor
    if tok_len is not None:
        size += 4 + tok_len
    return size


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_preset_sizes_and_training_is_about_3x(impl, name):
    config = impl.preset(name)
    params = impl.Params(config)  # zeros: the size does not depend on values
    meta = {"step": 0, "best_val_loss": math.inf, "best_val_step": 0}
    inference = len(impl.checkpoint_to_bytes(impl.Checkpoint(config, params, None, None, meta)))
    training = len(impl.checkpoint_to_bytes(impl.Checkpoint(config, params, impl.adamw_init(params), None, meta)))
    cfg_json = (f'{{"vocab_size":{config.vocab_size},"n_embd":{config.n_embd},"n_heads":{config.n_heads},'
                f'"n_layers":{config.n_layers},"block_size":{config.block_size},"dropout_rate":0.0}}')
    shapes = shapes_of(config.vocab_size, config.n_embd, config.n_layers, config.block_size)
    meta_len = len(STEP0_META)
    assert inference == _expected_size(shapes, config.n_layers, False, None, meta_len, len(cfg_json))
    assert training == _expected_size(shapes, config.n_layers, True, None, meta_len, len(cfg_json))
    assert 2.95 < training / inference < 3.05


# --- malformed files -------------------------------------------------------------------
OFFSET = re.compile(r"offset (\d+)")


def _expect_error(impl, data: bytes, *words, max_offset=None, offset=None):
    """The CheckpointError `impl` raises reading `data`: its message names a byte offset (the one in
    `.offset`; at most `max_offset`, exactly `offset` where given) and each of `words`."""
    with pytest.raises(impl.CheckpointError) as info:
        impl.checkpoint_from_bytes(data)
    message = str(info.value)
    match = OFFSET.search(message)
    assert match, f"error does not name a byte offset: {message}"
    # SPEC §checkpoint: .offset is the offset the message names; bytes have no file, so no .path
    assert info.value.offset == int(match.group(1)), f".offset is {info.value.offset!r}: {message}"
    assert info.value.path is None, f"checkpoint_from_bytes error with .path {info.value.path!r}"
    if max_offset is not None:
        assert int(match.group(1)) <= max_offset, message
    if offset is not None:
        assert int(match.group(1)) == offset, f"offset {match.group(1)}, expected {offset}: {message}"
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    return message


def _peak_while_rejecting(impl, data: bytes) -> int:
    """The peak of Python allocations (tracemalloc) while `impl` refuses `data` (_expect_error)."""
    tracemalloc.start()
    try:
        _expect_error(impl, data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_bad_magic(impl, small_training):
    _, golden = small_training
    data = bytearray(golden.out)
    data[0:10] = b"FESTE_CKPU"
    _expect_error(impl, bytes(data), "magic", offset=0)
    _expect_error(impl, b"PK\x03\x04" + bytes(40), "magic", offset=0)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_bad_version(impl, small_training, version):
    _, golden = small_training
    data = bytearray(golden.out)
    data[10] = version
    _expect_error(impl, bytes(data), "version", str(version), offset=10)  # the u8 after the 10-byte magic


def test_truncation_at_every_byte(impl, small_training):
    """Every proper prefix fails (every section boundary, every tensor header
    and inside every tensor), naming an offset inside the prefix."""
    _, golden = small_training
    data = bytes(golden.out)
    cuts = set(range(0, 64)) | set(golden.boundaries) | {b + 1 for b in golden.boundaries}
    cuts |= {(a + b) // 2 for a, b in golden.tensor_data} | {b - 1 for a, b in golden.tensor_data}
    cuts |= set(range(0, len(data), 37)) | {len(data) - 1}
    cuts = sorted(c for c in cuts if c < len(data))
    assert len(golden.boundaries) > 50
    for cut in cuts:
        _expect_error(impl, data[:cut], max_offset=cut)


def test_trailing_garbage(impl, small_training):
    _, golden = small_training
    _expect_error(impl, bytes(golden.out) + b"\x00", "end", offset=len(golden.out))
    _expect_error(impl, bytes(golden.out) + b"extra bytes", offset=len(golden.out))


def _replace_at(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


def test_absurd_lengths_fail_without_allocating(impl, small_training):
    """Lengths of ~4 GB in the config, tokenizer and metadata prefixes and a
    huge ndim, dim and numel: an error, and tracemalloc's peak stays small."""
    _, golden = small_training
    data = bytes(golden.out)
    huge = struct.pack("<I", 0xFFFFFFF0)
    first_tensor = golden.boundaries[1]
    tok_section = golden.boundaries[-3]
    meta_section = golden.boundaries[-2]
    cases = {
        "config length": _replace_at(data, 11, huge),
        "ndim": _replace_at(data, first_tensor, huge),
        "dim": _replace_at(data, first_tensor + 4, huge),
        "numel": _replace_at(data, first_tensor + 12, huge),
        "tokenizer length": _replace_at(data, tok_section + 1, huge),
        "metadata length": _replace_at(data, meta_section, huge),
    }
    for what, bad in cases.items():
        peak = _peak_while_rejecting(impl, bad)
        assert peak < 4 * len(data) + (1 << 20), f"{what}: peak {peak} bytes while rejecting"


def _parameter_header_bytes(L: int) -> int:
    """The u32 n_blocks and every parameter tensor's header (u32 ndim, ndim x u32 dims, u32 numel) of
    a model with L blocks, from the independent writer's shapes (SPEC §checkpoint layout)."""
    return 4 + sum(4 * (2 + len(shape)) for shape in shapes_of(1, 1, L, 1).values())


@pytest.mark.parametrize("n_layers, padding, spaces", [
    (1, 0, 0), (1000, 0, 0), (2**31, 0, 0), (100_000, 1000, 0),
    (5000, "headers-1", 0),  # one byte short of the parameter headers: the minimum is exact
    (5000, 0, 1_000_000),  # a config JSON padded with whitespace: what remains is counted after it
], ids=["1-layer", "1000-layers", "2^31-layers", "kilobyte-for-10^5-layers", "one-byte-short", "padded-config"])
def test_config_claiming_huge_model_fails_before_allocating(impl, n_layers, padding, spaces):
    """A ~130-byte file whose config claims ~10^12 parameters (or 2^31 layers);
    one with a kilobyte after its first tensor header, far less than the
    headers of 10^5 layers need; one whose bytes after the config are one fewer
    than the parameter headers of its 5000 layers; one whose config JSON carries
    a megabyte of whitespace (valid JSON) ahead of 16 bytes of parameters
    (SPEC §checkpoint: the parameter headers' minimum size is checked against
    what remains before the parameter table is built). Each is refused at the
    start of the parameters, naming them, and the peak allocation stays under
    1 MiB (the padded config: SPEC's bound, 4 x the file's size + 1 MiB), which
    the table of thousands of layers would exceed."""
    cfg = (b'{"vocab_size":100000000,"n_embd":8192,"n_heads":8,"n_layers":%d,"block_size":4096,'
           b'"dropout_rate":0.0}' % n_layers) + b" " * spaces
    first_header = struct.pack("<IIII", 2, 100000000, 8192, 0)
    if padding == "headers-1":
        padding = _parameter_header_bytes(n_layers) - 1 - len(first_header)
    data = b"FESTE_CKPT\x01" + struct.pack("<I", len(cfg)) + cfg + first_header + bytes(padding)
    peak = _peak_while_rejecting(impl, data)
    # SPEC's bound; without a megabyte of config JSON to parse, nothing is allocated: under 1 MiB
    limit = 4 * len(data) + (1 << 20) if spaces else 1 << 20
    assert peak < limit, f"peak {peak} bytes while rejecting a file of {len(data)} bytes"
    _expect_error(impl, data, "parameters", offset=15 + len(cfg))


@pytest.mark.parametrize("n_layers", [1, 2, 50])
def test_a_file_holding_exactly_the_parameter_headers_is_read_up_to_the_first_values(impl, n_layers):
    """SPEC §checkpoint: the parameters are refused at once only when what remains after the
    config is less than the parameter headers' minimum size (exactly: u32 n_blocks and each
    tensor's u32 ndim, dims and u32 numel). With exactly that many bytes after the config,
    the first header is read and the file is refused at the first byte of token_embedding's
    values (160 KB, more than all the headers), naming that tensor, as truncated."""
    cfg = b'{"vocab_size":10000,"n_embd":4,"n_heads":2,"n_layers":%d,"block_size":3,"dropout_rate":0.0}' % n_layers
    first_header = struct.pack("<IIII", 2, 10000, 4, 40000)
    data = (b"FESTE_CKPT\x01" + struct.pack("<I", len(cfg)) + cfg + first_header
            + bytes(_parameter_header_bytes(n_layers) - len(first_header)))
    _expect_error(impl, data, "token_embedding", "truncated", offset=15 + len(cfg) + len(first_header))


def test_a_tensor_of_2_to_the_31_values_has_a_valid_header(impl):
    """SPEC §checkpoint: numel is a u32, so a tensor of 2^31 values (vocab_size 2^21 x n_embd
    1024) has a valid header (numel 2^31 = the product of its dims); a file that stops after
    it, with more than the parameter headers' minimum size after the config, is refused at
    the first byte of those values, naming the tensor, without allocating them."""
    cfg = b'{"vocab_size":2097152,"n_embd":1024,"n_heads":1,"n_layers":1,"block_size":1,"dropout_rate":0.0}'
    header = struct.pack("<IIII", 2, 2**21, 1024, 2**31)
    data = b"FESTE_CKPT\x01" + struct.pack("<I", len(cfg)) + cfg + header + bytes(_parameter_header_bytes(1))
    _expect_error(impl, data, "token_embedding", "truncated", offset=15 + len(cfg) + len(header))
    assert _peak_while_rejecting(impl, data) < 1 << 20

def test_shape_contradicting_config(impl):
    """Config says n_embd 4, the independent writer writes n_embd 8 tensors: reject,
    naming the tensor. Also n_blocks != n_layers, and numel != prod(dims)."""
    config8 = impl.Config(**{**SMALL, "n_embd": 8})
    params8 = _random_params(impl, config8, 6)
    bad = _golden_for(impl, SMALL_CONFIG_JSON, params8, meta_json=STEP0_META)
    _expect_error(impl, bytes(bad.out), "token_embedding", offset=bad.tensor_headers[0] + 4)  # its dims

    good = _small_file(impl, 7)
    data = bytes(good.out)
    n_blocks_at = good.boundaries[3]
    _expect_error(impl, _replace_at(data, n_blocks_at, struct.pack("<I", 3)), "n_blocks", offset=n_blocks_at)
    first = good.boundaries[1]  # token_embedding: ndim 2, dims 11 4, numel 44
    _expect_error(impl, _replace_at(data, first + 12, struct.pack("<I", 43)), "numel", offset=first + 12)


@pytest.mark.parametrize("section, text, word", [
    ("config_json", '{"vocab_size":11,"n_embd":4,"n_heads":2,"n_layers":2,"block_size":3,"dropout_rate":0.0', "config"),
    ("config_json", '{"vocab_size":11,"n_embd":4,"n_heads":2,"n_layers":2,"block_size":3}', "dropout_rate"),
    ("config_json", '{"vocab_size":11,"n_embd":4,"n_heads":3,"n_layers":2,"block_size":3,"dropout_rate":0.0}',
     "n_heads"),
    ("config_json", '{"vocab_size":11,"n_embd":4,"n_heads":2,"n_layers":2,"block_size":3,"dropout_rate":NaN}',
     "config"),
    ("config_json", '[11,4,2,2,3,0.0]', "config"),
    ("config_json", '{"vocab_size":"11","n_embd":4,"n_heads":2,"n_layers":2,"block_size":3,"dropout_rate":0.0}',
     "vocab_size"),
    ("config_json", '{"vocab_size":11,"n_embd":4,"n_heads":2,"n_layers":2,"block_size":3,"dropout_rate":"0.1"}',
     "dropout_rate"),
    ("config_json", '{"vocab_size":11,"n_embd":4,"n_heads":2,"n_layers":2,"block_size":3,"dropout_rate":true}',
     "dropout_rate"),
    ("config_json", '{"vocab_size":11,"n_embd":4,"n_heads":2,"n_layers":2,"block_size":3,"dropout_rate":0.0,'
     '"bias":true}', "bias"),  # exactly the listed keys: an unknown one too
    ("meta_json", '{"step":0,"best_val_loss":null}', "best_val_step"),
    ("meta_json", '{"step":-1,"best_val_loss":null,"best_val_step":0}', "step"),
    ("meta_json", '{"step":0,"best_val_loss":"x","best_val_step":0}', "best_val_loss"),
    ("meta_json", '{"step":0,"best_val_loss":null,"best_val_step":0', "metadata"),
    ("meta_json", '\xff', "metadata"),
    ("meta_json", '5', "metadata"), ("meta_json", 'null', "metadata"), ("meta_json", '[0,null,0]', "metadata"),
])
def test_invalid_config_and_metadata_json(impl, section, text, word):
    """A config or metadata JSON section that is malformed, not an object, incomplete, with
    an unknown key, or out of range is refused with the word that names what is wrong, at
    the first byte of that section's JSON text (SPEC §checkpoint: the offset of a refused
    JSON section, whatever is wrong in it)."""
    golden = _small_file(impl, 8, **{section: text})
    at = 15 if section == "config_json" else golden.boundaries[-2] + 4  # after the section's u32 length
    _expect_error(impl, bytes(golden.out), word, offset=at)


def test_invalid_tokenizer_json_and_flags(impl):
    """An invalid tokenizer JSON is refused at the first byte of its text, a flag byte other
    than 0 and 1 at that byte (SPEC §checkpoint)."""
    bad = _small_file(impl, 10, tok_json='{"vocab":{}}')
    _expect_error(impl, bytes(bad.out), "tokenizer", offset=bad.boundaries[-3] + 5)  # after the flag and u32 length
    good = _small_file(impl, 10)
    flag_at = good.boundaries[-4]  # has_optimizer
    _expect_error(impl, _replace_at(bytes(good.out), flag_at, b"\x02"), "has_optimizer", offset=flag_at)
    flag_at = good.boundaries[-3]  # has_tokenizer
    _expect_error(impl, _replace_at(bytes(good.out), flag_at, b"\x07"), "has_tokenizer", offset=flag_at)


def test_tokenizer_larger_than_model_vocab(impl):
    """A 257-token tokenizer in a checkpoint whose model has vocab_size 11: refused at the
    first byte of the tokenizer JSON."""
    golden = _small_file(impl, 11, tok_json=hand_tokenizer_json())
    _expect_error(impl, bytes(golden.out), "vocab", offset=golden.boundaries[-3] + 5)


# --- values outside their SPEC §checkpoint ranges --------------------------------------------
def _betas_at(golden) -> int:
    """Offset of f32 beta1 in a training file: after the last parameter
    tensor (a third of the tensors), its u8 has_optimizer and u64 step."""
    return golden.tensor_data[len(golden.tensor_data) // 3 - 1][1] + 1 + 8


@pytest.mark.parametrize("field, value", [
    ("beta1", 1.0), ("beta1", -0.25), ("beta1", math.nan), ("beta2", 1.0), ("beta2", 1.5),
    ("beta2", -math.inf), ("eps", 0.0), ("eps", -1e-8), ("eps", math.nan), ("eps", math.inf),
])
def test_optimizer_hyperparameters_out_of_range(impl, small_training, field, value):
    """SPEC §checkpoint: betas in [0, 1), eps > 0 (and finite): the f32 after the u64
    step is rejected, the error naming the field and the offset of the three, which are
    checked together (beta1's)."""
    _, golden = small_training
    data = bytes(golden.out)
    at = _betas_at(golden) + 4 * ("beta1", "beta2", "eps").index(field)
    bad = _replace_at(data, at, struct.pack("<f", value))
    _expect_error(impl, bad, field, offset=_betas_at(golden))


def test_optimizer_hyperparameters_at_their_limits_are_read(impl, small_training):
    """The closed ends of the ranges: beta1 = beta2 = 0 and the smallest
    positive f32 eps are valid and read back exactly."""
    _, golden = small_training
    at = _betas_at(golden)
    data = _replace_at(bytes(golden.out), at, struct.pack("<fff", 0.0, 0.0, np.nextafter(np.float32(0), 1)))
    state = impl.checkpoint_from_bytes(data).optimizer
    assert (state.beta1, state.beta2, state.eps) == (0.0, 0.0, float(np.nextafter(np.float32(0), 1)))


@pytest.mark.parametrize("which", ["token_embedding", "last parameter", "first moment", "last moment"])
@pytest.mark.parametrize("change", ["numel+1", "numel-1", "dims-transposed", "ndim-flattened"])
def test_tensor_header_contradicting_its_shape(impl, small_training, which, change):
    """SPEC §checkpoint: each tensor's ndim and dims must be the config's shape and its
    numel their product. Corrupted headers, in the parameters and in the
    optimizer moments: numel one more or one less than the product (dims
    intact), dims transposed (the same numel), ndim 1 with the product as its
    dim. Each fails naming the tensor, at the first byte of the field found wrong: the
    numel, the dims (a transpose) or the ndim (a flattened tensor)."""
    ckpt, golden = small_training
    data = bytes(golden.out)
    n_params = len(golden.tensor_headers) // 3  # a training file: the parameters, then m and v of each
    index = {"token_embedding": 0, "last parameter": n_params - 1, "first moment": n_params,
             "last moment": len(golden.tensor_headers) - 1}[which]
    start = golden.tensor_headers[index]
    ndim = struct.unpack_from("<I", data, start)[0]
    dims = struct.unpack_from(f"<{ndim}I", data, start + 4)
    numel_at = start + 4 + 4 * ndim
    numel = math.prod(dims)
    if change == "numel+1":
        header = struct.pack(f"<I{ndim}II", ndim, *dims, numel + 1)
    elif change == "numel-1":
        header = struct.pack(f"<I{ndim}II", ndim, *dims, numel - 1)
    elif change == "dims-transposed":
        if ndim < 2:
            pytest.skip("a 1-D tensor has no transpose")
        header = struct.pack(f"<I{ndim}II", ndim, *reversed(dims), numel)
    else:  # what a writer that flattens tensors would emit: ndim 1, then the values
        if ndim < 2:
            pytest.skip("already 1-D")
        header = struct.pack("<III", 1, numel, numel)
    wrong_field = {"numel+1": numel_at, "numel-1": numel_at, "dims-transposed": start + 4, "ndim-flattened": start}
    message = _expect_error(impl, data[:start] + header + data[numel_at + 4:], offset=wrong_field[change])
    name = _file_order(ckpt.config.n_layers)[index][1]
    assert name in message, f"the message does not name the tensor {name}: {message}"


# --- files: errors and atomic writes -----------------------------------------------------
def test_a_truncated_file_names_the_offset_and_what_was_expected_there(impl, small_training):
    """SPEC §checkpoint: any failure names the byte offset and what was expected
    there. A file cut inside each field names the first byte of that field and
    the field in the layout's words: the magic, the version, the config JSON's
    length and text, a tensor's ndim, dims, numel and values (a parameter's and
    a moment's), n_blocks, the has_optimizer flag, the optimizer step and
    hyperparameters, the has_tokenizer flag, the tokenizer JSON's length and
    text, the metadata JSON's length and text."""
    ckpt, golden = small_training
    data = bytes(golden.out)
    L = ckpt.config.n_layers
    # output_weight's header (ndim 2, two dims, numel): a cut there leaves more than the headers' minimum
    # size after the config, which a cut in the first header does not (that file is refused at once)
    out = golden.tensor_headers[len(golden.tensor_headers) // 3 - 1]
    q_bias = _tensor_offset(golden, L, "blocks.0.q.bias")
    m_tok = golden.tensor_headers[len(golden.tensor_headers) // 3]  # the first moment's header
    n_blocks = golden.boundaries[3]  # after the config, token_embedding and position_embedding
    has_optimizer = golden.tensor_data[len(golden.tensor_headers) // 3 - 1][1]  # after the last parameter's values
    has_tokenizer, metadata = golden.boundaries[-3], golden.boundaries[-2]
    fields = [  # (first byte of the field, bytes of it present, the words naming it)
        (0, 5, ("magic",)), (10, 0, ("version",)), (11, 1, ("config",)), (15, 5, ("config",)),
        (out, 2, ("ndim", "output_weight")), (out + 4, 3, ("dims", "output_weight")),
        (out + 12, 1, ("numel", "output_weight")), (q_bias, 4, ("blocks.0.q.bias",)),
        (n_blocks, 2, ("blocks",)), (m_tok + 4, 6, ("dims", "m[token_embedding]")),
        (has_optimizer, 0, ("has_optimizer",)), (has_optimizer + 1, 3, ("step",)),
        (has_optimizer + 9, 5, ("beta1",)), (has_tokenizer, 0, ("has_tokenizer",)),
        (has_tokenizer + 1, 2, ("tokenizer",)), (has_tokenizer + 5, 7, ("tokenizer",)),
        (metadata, 3, ("metadata",)), (metadata + 4, 10, ("metadata",)),
    ]
    for at, present, words in fields:
        message = _expect_error(impl, data[:at + present], "expected", *words, offset=at)
        assert "truncated" in message, message


@pytest.mark.parametrize("metadata", [[0, 1.5, 0], 5, None, {"step": 0, "best_val_loss": 1.0}],
                         ids=["list", "int", "None", "missing-key"])
def test_writing_metadata_that_is_not_the_three_keys_is_refused(impl, metadata):
    """SPEC §checkpoint: the metadata is an object of exactly step, best_val_loss
    and best_val_step; a writer given anything else raises CheckpointError naming
    the metadata (not a TypeError from inside)."""
    config = impl.Config(**SMALL)
    ckpt = impl.Checkpoint(config, impl.init_params(config), metadata=metadata)
    with pytest.raises(impl.CheckpointError, match="metadata"):
        impl.checkpoint_to_bytes(ckpt)


def test_load_errors_name_the_path(impl, tmp_path):
    for path, word in [(tmp_path / "missing.ckpt", "missing.ckpt"), (tmp_path, "directory")]:
        with pytest.raises(impl.CheckpointError, match=word):
            impl.load_checkpoint(path)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(impl.CheckpointError, match="offset 0"):
        impl.load_checkpoint(empty)
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(b"FESTE_CKPT\x01\x10\x00")
    with pytest.raises(impl.CheckpointError, match="cut.ckpt"):
        impl.load_checkpoint(truncated)


def test_load_errors_carry_the_path_and_the_offset(impl, small_training, tmp_path):
    """SPEC §checkpoint: a CheckpointError of `load_checkpoint` names the file in its
    message and holds it in `.path`; one about the bytes also names the byte offset where
    reading stopped, in the message and in `.offset`, and what was expected there (an
    empty file: the magic, at offset 0). Cases: a missing file, a directory, an empty
    file, a truncated one and a NaN inside a tensor, a parameter or a moment (found
    while the tensors are copied)."""
    ckpt, golden = small_training
    at = _tensor_offset(golden, ckpt.config.n_layers, "blocks.0.q.bias") + 4
    moments = {m: _tensor_offset(golden, ckpt.config.n_layers, "ln_final.beta", m) + 4 for m in ("m", "v")}
    files = {"empty.ckpt": b"", "cut.ckpt": bytes(golden.out)[:40],
             "nan.ckpt": _replace_at(bytes(golden.out), at, struct.pack("<f", np.nan)),
             **{f"nan-{m}.ckpt": _replace_at(bytes(golden.out), a, struct.pack("<f", np.nan)) for m, a in moments.items()}}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    cases = [(tmp_path / "missing.ckpt", None, ()), (tmp_path, None, ()), (tmp_path / "empty.ckpt", 0, ("magic",)),
             (tmp_path / "cut.ckpt", None, ()), (tmp_path / "nan.ckpt", at, ("blocks.0.q.bias",)),
             *[(tmp_path / f"nan-{m}.ckpt", a, (f"{m}[ln_final.beta]",)) for m, a in moments.items()]]
    for path, offset, words in cases:
        with pytest.raises(impl.CheckpointError) as info:
            impl.load_checkpoint(path)
        exc, message = info.value, str(info.value)
        assert str(path) in message, f"{path}: the message does not name the file: {message}"
        assert exc.path is not None and os.fspath(exc.path) == str(path), f"{path}: .path is {exc.path!r}"
        for word in words:
            assert word in message, f"{path}: {word!r} not in: {message}"
        if path.name in files:  # malformed bytes: the offset, in the message and in .offset
            match = OFFSET.search(message)
            assert match and exc.offset == int(match.group(1)), f"{path}: .offset {exc.offset!r}, message {message}"
            if offset is not None:
                assert exc.offset == offset, f"{path}: offset {exc.offset}, expected {offset}: {message}"


class ExplodingTokenizer:
    """Its JSON cannot be produced: the writer fails after the tensors."""

    def to_json(self):
        raise RuntimeError("tokenizer exploded mid-write")


def test_failed_write_keeps_previous_file(impl, small_training, tmp_path):
    ckpt, golden = small_training
    path = tmp_path / "run" / "best.ckpt"
    path.parent.mkdir()
    impl.save_checkpoint(path, ckpt)
    before = path.read_bytes()
    broken = impl.Checkpoint(ckpt.config, ckpt.params.zeros_like(), ckpt.optimizer, ExplodingTokenizer(),
                             dict(ckpt.metadata))
    with pytest.raises(RuntimeError, match="exploded"):
        impl.save_checkpoint(path, broken)
    assert_bytes_equal("file after a failed write", path.read_bytes(), before)
    assert sorted(os.listdir(path.parent)) == ["best.ckpt"], "temporary file left behind"


def test_failed_rename_keeps_previous_file(impl, small_training, tmp_path, monkeypatch):
    ckpt, _ = small_training
    path = tmp_path / "final.ckpt"
    impl.save_checkpoint(path, ckpt)
    before = path.read_bytes()

    def failing_replace(src, dst, *a, **k):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    monkeypatch.setattr(os, "rename", failing_replace)
    ckpt2 = impl.Checkpoint(ckpt.config, ckpt.params.zeros_like(), None, None, dict(ckpt.metadata))
    with pytest.raises(OSError, match="simulated"):
        impl.save_checkpoint(path, ckpt2)
    monkeypatch.undo()
    assert_bytes_equal("file after a failed rename", path.read_bytes(), before)
    assert sorted(os.listdir(tmp_path)) == ["final.ckpt"], "temporary file left behind"
    impl.save_checkpoint(path, ckpt2)  # and a good write does replace it
    assert impl.load_checkpoint(path).optimizer is None


def test_save_rejects_invalid_checkpoints(impl, tmp_path):
    config = impl.Config(**SMALL)
    params = _random_params(impl, config, 12)
    meta = {"step": 0, "best_val_loss": 1.0, "best_val_step": 0}
    for bad in (impl.Checkpoint(config, params.astype(np.float64), None, None, meta),
                impl.Checkpoint(config, params, None, None, {"step": 0}),
                impl.Checkpoint(impl.Config(**{**SMALL, "vocab_size": 12}), params, None, None, meta)):
        with pytest.raises(impl.CheckpointError):
            impl.save_checkpoint(tmp_path / "x.ckpt", bad)
    assert not (tmp_path / "x.ckpt").exists()
    assert os.listdir(tmp_path) == []


def _with_step(impl, state, step):
    return impl.AdamWState(m=state.m, v=state.v, step=step, beta1=state.beta1, beta2=state.beta2, eps=state.eps)


def test_largest_optimizer_step_is_written_and_read(impl, small_training):
    """SPEC §checkpoint: the optimizer step is a u64, so 2^64 - 1 is written and read back."""
    ckpt, _ = small_training
    big = impl.Checkpoint(ckpt.config, ckpt.params, _with_step(impl, ckpt.optimizer, 2 ** 64 - 1), ckpt.tokenizer,
                          dict(ckpt.metadata))
    assert impl.checkpoint_from_bytes(impl.checkpoint_to_bytes(big)).optimizer.step == 2 ** 64 - 1


def test_save_errors_name_the_path(impl, small_training, tmp_path):
    """SPEC §checkpoint: saving to a directory or into a directory that does not exist is a
    CheckpointError naming the path (in the message and in .path); nothing is written."""
    ckpt, _ = small_training
    for path in (tmp_path, tmp_path / "no-such-dir" / "x.ckpt"):
        with pytest.raises(impl.CheckpointError) as info:
            impl.save_checkpoint(path, ckpt)
        assert str(path) in str(info.value), f"{path}: {info.value}"
        assert info.value.path is not None and os.fspath(info.value.path) == str(path), info.value.path
    assert os.listdir(tmp_path) == []


def test_writing_names_what_is_invalid(impl, small_training, tmp_path):
    """SPEC §checkpoint (Writing): checkpoint_to_bytes and save_checkpoint refuse an
    invalid Checkpoint with a CheckpointError naming what is wrong: `Checkpoint` for
    another object, else the field (config, params, optimizer, metadata); no file is
    written."""
    ckpt, _ = small_training
    config, params, state = ckpt.config, ckpt.params, ckpt.optimizer
    meta = dict(ckpt.metadata)
    other = impl.Config(**SMALL)
    bad_state = impl.AdamWState(m=impl.Params(other), v=state.v, step=1, beta1=0.9, beta2=0.95, eps=1e-8)
    negative_step = impl.AdamWState(m=state.m, v=state.v, step=-1, beta1=0.9, beta2=0.95, eps=1e-8)
    cases = [({"config": config, "params": params}, "Checkpoint"),
             (impl.Checkpoint("tiny", params, None, None, meta), "config"),
             (impl.Checkpoint(config, _random_params(impl, other, 5), None, None, meta), "params"),
             (impl.Checkpoint(config, params.astype(np.float64), None, None, meta), "params"),
             (impl.Checkpoint(config, params, bad_state, None, meta), "optimizer"),
             (impl.Checkpoint(config, params, negative_step, None, meta), "optimizer.step"),
             (impl.Checkpoint(config, params, _with_step(impl, state, True), None, meta), "optimizer.step"),
             (impl.Checkpoint(config, params, _with_step(impl, state, 2.5), None, meta), "optimizer.step"),
             (impl.Checkpoint(config, params, _with_step(impl, state, 2 ** 64), None, meta), "optimizer.step"),
             (impl.Checkpoint(config, params, None, None, {"step": 0}), "metadata")]
    for bad, word in cases:
        for write in (impl.checkpoint_to_bytes, lambda c: impl.save_checkpoint(tmp_path / "x.ckpt", c)):
            with pytest.raises(impl.CheckpointError) as info:
                write(bad)
            assert word in str(info.value), f"{word!r} not in: {info.value}"
    assert os.listdir(tmp_path) == []


# --- hostile input: values, ranges, nesting, special files ---------------------------------
def _file_order(L) -> list[tuple[str | None, str]]:
    """(moment, name) of every tensor of a training file with L blocks, in file order:
    the parameters (moment None), then the moments in SPEC order."""
    params = ["token_embedding", "position_embedding"] + [f"blocks.{i}.{n}" for i in range(L) for n in BLOCK] + \
        ["ln_final.gamma", "ln_final.beta", "output_weight"]
    return [(None, n) for n in params] + list(optimizer_file_order(L))


def _tensor_offset(golden, L, name, moment=None):
    """Byte offset of the first value of a tensor in a golden file (the writer records
    each tensor's data span in file order)."""
    return golden.tensor_data[_file_order(L).index((moment, name))][0]


@pytest.mark.parametrize("moment, name, index, value", [
    (None, "blocks.1.q.weight", 5, np.nan), (None, "output_weight", 0, np.inf),
    ("m", "token_embedding", 7, -np.inf), ("v", "blocks.0.fc1.bias", 3, np.nan),
    ("v", "ln_final.gamma", 2, -0.5),  # a second moment is a mean of squares: never negative
    ("v", "blocks.1.out.weight", 4, np.inf),  # >= 0 but not finite
])
def test_non_finite_or_negative_v_values_are_refused_with_tensor_and_index(impl, small_training, moment, name, index,
                                                                            value):
    """A NaN, inf or (in v) negative value in a tensor: CheckpointError naming the
    tensor, the index and the byte offset of that very value (SPEC §checkpoint);
    save_checkpoint refuses to write the same state."""
    ckpt, golden = small_training
    L = ckpt.config.n_layers
    at = _tensor_offset(golden, L, name, moment) + 4 * index
    bad = _replace_at(bytes(golden.out), at, struct.pack("<f", value))
    label = name if moment is None else f"{moment}[{name}]"
    message = _expect_error(impl, bad, label, "finite")
    assert f"offset {at}" in message, message
    assert re.search(re.escape(repr(float(value))), message, re.IGNORECASE), f"the value is not named: {message}"
    if moment is None:
        assert f"[{name}]" not in message, f"a parameter named as a moment's entry: {message}"
    if moment == "v":  # what a second moment must be; a parameter or m is never asked to be >= 0
        assert ">= 0" in message, message
    else:
        assert ">= 0" not in message, message
    shape = (ckpt.params if moment is None else getattr(ckpt.optimizer, moment))[name].shape
    assert str(tuple(int(i) for i in np.unravel_index(index, shape))) in message, message
    target = ckpt.params if moment is None else getattr(ckpt.optimizer, moment)
    target[name].ravel()[index] = value
    with pytest.raises(impl.CheckpointError, match=re.escape(label)) as info:
        impl.checkpoint_to_bytes(ckpt)
    assert "finite" in str(info.value) and ((">= 0" in str(info.value)) == (moment == "v")), str(info.value)
    if moment is None:
        assert f"[{name}]" not in str(info.value), f"a parameter named as a moment's entry: {info.value}"


@pytest.mark.parametrize("data", ["FESTE_CKPT", None, [70, 69]], ids=["str", "None", "list"])
def test_reading_anything_but_bytes_is_a_checkpoint_error(impl, data):
    """SPEC §checkpoint: checkpoint_from_bytes takes bytes (or a bytearray or
    memoryview); anything else is a CheckpointError saying so, at no offset."""
    with pytest.raises(impl.CheckpointError, match="bytes") as info:
        impl.checkpoint_from_bytes(data)
    assert info.value.offset is None and info.value.path is None


def test_negative_zero_in_v_is_a_valid_second_moment(impl, small_training):
    ckpt, golden = small_training
    at = _tensor_offset(golden, ckpt.config.n_layers, "token_embedding", "v")
    data = _replace_at(bytes(golden.out), at, struct.pack("<f", -0.0))
    back = impl.checkpoint_from_bytes(data)
    assert np.signbit(back.optimizer.v["token_embedding"].ravel()[0])
    assert impl.checkpoint_to_bytes(back) == data


@pytest.mark.parametrize("meta, word", [
    ('{"step":3,"best_val_loss":1.5,"best_val_step":4}', "best_val_step"),  # best measured after the last step
    ('{"step":3,"best_val_loss":-0.5,"best_val_step":1}', ">= 0"),  # a cross-entropy is never negative
    ('{"step":3,"best_val_loss":1e39,"best_val_step":1}', "float32"),  # not a float32: was read as inf
    ('{"step":3,"best_val_loss":1e400,"best_val_step":1}', "float32"),  # Python's json reads it as inf
    ('{"step":3,"best_val_loss":' + "9" * 400 + ',"best_val_step":1}', "float32"),  # beyond a double
    # step and best_val_step: ints in [0, 2^64), never bool, never a float
    ('{"step":18446744073709551616,"best_val_loss":1.5,"best_val_step":1}', "step"),
    ('{"step":3,"best_val_loss":1.5,"best_val_step":-1}', "best_val_step"),
    ('{"step":true,"best_val_loss":1.5,"best_val_step":0}', "step"),
    ('{"step":3,"best_val_loss":1.5,"best_val_step":1.0}', "best_val_step"),
])
def test_metadata_values_are_range_checked(impl, meta, word):
    """SPEC §checkpoint (Metadata ranges): a metadata value out of its range is refused,
    naming the metadata and the key, at the first byte of the metadata JSON."""
    config = impl.Config(**SMALL)
    data = _golden_for(impl, SMALL_CONFIG_JSON, _random_params(impl, config, 13), meta_json=meta)
    _expect_error(impl, bytes(data.out), "metadata", word, offset=data.boundaries[-2] + 4)


def test_metadata_steps_take_the_whole_u64_range(impl):
    """SPEC §checkpoint: step and best_val_step are ints in [0, 2^64): 2^64 - 1 is written and
    read back (the largest), as is 0."""
    config = impl.Config(**SMALL)
    top = 2**64 - 1
    for step, best_step in ((top, top), (top, 0), (0, 0)):
        meta = {"step": step, "best_val_loss": 1.5, "best_val_step": best_step}
        data = impl.checkpoint_to_bytes(impl.Checkpoint(config, _random_params(impl, config, 16), None, None, meta))
        assert _metadata_json(data) == f'{{"step":{step},"best_val_loss":1.5,"best_val_step":{best_step}}}'.encode()
        assert impl.checkpoint_from_bytes(data).metadata == meta


@pytest.mark.parametrize("meta, word", [
    ({"step": 3, "best_val_loss": 1.5, "best_val_step": 4}, "best_val_step"),
    ({"step": 3, "best_val_loss": -0.5, "best_val_step": 1}, ">= 0"),
    ({"step": 2**64, "best_val_loss": 1.5, "best_val_step": 1}, "step"),
    ({"step": 3, "best_val_loss": 1.5, "best_val_step": -1}, "best_val_step"),
    ({"step": True, "best_val_loss": 1.5, "best_val_step": 0}, "step"),
    ({"step": 3, "best_val_loss": 1.5, "best_val_step": 1.0}, "best_val_step"),
])
def test_save_refuses_metadata_it_could_not_read_back(impl, tmp_path, meta, word):
    config = impl.Config(**SMALL)
    with pytest.raises(impl.CheckpointError, match=word):
        impl.save_checkpoint(tmp_path / "x.ckpt", impl.Checkpoint(config, _random_params(impl, config, 14),
                                                                    None, None, meta))
    assert os.listdir(tmp_path) == []


DEEP = 100_000  # far beyond any recursion limit


@pytest.mark.parametrize("section", ["config", "tokenizer", "metadata"])
@pytest.mark.parametrize("shape", ["array", "object"])
def test_deeply_nested_json_is_a_checkpoint_error(impl, section, shape):
    """JSON nested 100,000 deep in any of the three JSON sections: CheckpointError
    naming the section (never RecursionError)."""
    deep = "[" * DEEP + "]" * DEEP if shape == "array" else '{"a":' * DEEP + "0" + "}" * DEEP
    parts = {"config": SMALL_CONFIG_JSON, "tokenizer": None, "metadata": STEP0_META}
    parts[section] = deep
    _expect_error(impl, bytes(_small_file(impl, 15, parts["config"], parts["tokenizer"], parts["metadata"]).out),
                  section)


def test_a_fifo_or_device_is_refused_without_blocking(impl, tmp_path):
    """load_checkpoint on a FIFO with no writer (open() would block forever) and on
    /dev/zero (endless): CheckpointError naming the path, at once. A thread does the
    load so that a regression fails here instead of hanging the suite."""
    import threading

    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)
    paths = [(fifo, "FIFO")] + ([(Path("/dev/zero"), "device")] if Path("/dev/zero").exists() else [])
    for path, word in paths:
        outcome = {}

        def load():
            try:
                impl.load_checkpoint(path)
                outcome["error"] = None
            except Exception as exc:  # noqa: BLE001 - judged below
                outcome["error"] = exc

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        thread.join(20)
        if thread.is_alive():
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock the reader so the thread can end
            pytest.fail(f"load_checkpoint({path}) blocked")
        assert isinstance(outcome["error"], impl.CheckpointError), outcome
        assert word in str(outcome["error"]) and str(path) in str(outcome["error"]), outcome["error"]
