"""Generate the vector set from `reference` (SPEC §vectors).

Each `cases_<component>()` yields `Case` objects; `build(root)` writes them to
`root/<SPEC_VERSION>/<component>/<handler>/<case>/` with `case.json`,
`data.safetensors` (`in.<name>` inputs, `out.<name>` expected outputs), input
raw files under their own names and expected raw output files as
`out.<filename>`, then `index.json` and `SHA256SUMS`. Everything is a pure
function of the code: fixed seeds, sorted keys, no time stamps.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import reference as R
from reference.atomic_io import current_umask
from conformance import cases as hard
from conformance import tolerances

from . import CASE_FORMAT, INDEX_FORMAT, SPEC_VERSION
from . import safetensors_io as st
from .loops import trajectory

F32, F64 = np.float32, np.float64
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")  # a component, handler or case name (SPEC §vectors-build)


# --- the case record ------------------------------------------------------------
@dataclass
class Case:
    """One vector: what to run and what must come out (SPEC §case-json)."""

    component: str
    operation: str  # the handler
    name: str
    description: str
    args: dict = field(default_factory=dict)
    config: R.Config | None = None
    dtype: str | None = None
    inputs: dict = field(default_factory=dict)  # name -> array (stored as in.<name>)
    files: dict = field(default_factory=dict)  # role -> (filename, bytes)
    outputs: dict = field(default_factory=dict)  # name -> (array, comparison)
    out_files: dict = field(default_factory=dict)  # filename -> bytes (compared exactly)
    error: str | None = None
    verdict: str = "valid"
    flags: tuple = ()
    optional: bool = False

    @property
    def path(self) -> str:
        return f"{self.component}/{self.operation}/{self.name}"

    def case_json(self) -> dict:
        doc = {
            "format": CASE_FORMAT, "path": self.path, "spec_version": SPEC_VERSION,
            "component": self.component, "operation": self.operation, "args": self.args,
            "inputs": sorted(self.inputs), "files": {role: fn for role, (fn, _) in sorted(self.files.items())},
            "verdict": self.verdict, "flags": sorted(set(self.flags)), "optional": self.optional,
            "description": self.description,
        }
        if self.config is not None:
            doc["config"] = config_json(self.config)
        if self.dtype is not None:
            doc["dtype"] = self.dtype
        if self.error is not None:
            doc["expect"] = {"error": self.error}
        else:
            doc["expect"] = {
                "outputs": {name: dict(cmp, dtype=st.dtype_name(arr.dtype), shape=list(np.shape(arr)))
                            for name, (arr, cmp) in sorted(self.outputs.items())},
                "files": {fn: {"compare": "exact"} for fn in sorted(self.out_files)},
            }
        return doc

    def tensors(self) -> dict[str, np.ndarray]:
        out = {f"in.{k}": np.asarray(v) for k, v in self.inputs.items()}
        out.update({f"out.{k}": np.asarray(a) for k, (a, _) in self.outputs.items()})
        return out


def config_json(config: R.Config) -> dict:
    return {"vocab_size": config.vocab_size, "n_embd": config.n_embd, "n_heads": config.n_heads,
            "n_layers": config.n_layers, "block_size": config.block_size,
            "dropout_rate": float(config.dropout_rate)}


# --- comparisons (SPEC §case-json): limits always from conformance/tolerances.py ---------
def exact() -> dict:
    return {"compare": "exact"}


def _tol(kind: str, name: str, **extra) -> dict:
    return {"compare": kind, "limit": float(getattr(tolerances, name)), "limit_name": name, **extra}


def activation(dtype) -> dict:
    """Logits and layer outputs: §tolerances's max-scaled metric."""
    return _tol("scaled_max", "LOGITS_RTOL" if dtype == F32 else "ORACLE_F64_RTOL")


def gradient(dtype, scale: str | None = None) -> dict:
    """A gradient tensor: §tolerances's per tensor norm ratio."""
    extra = {"scale": scale} if scale else {}
    return _tol("rel_norm", "GRAD_REL_NORM" if dtype == F32 else "ORACLE_F64_RTOL", **extra)


def loss_cmp(dtype) -> dict:
    return _tol("rel", "LOSS_RTOL" if dtype == F32 else "ORACLE_F64_RTOL")


def dtype_name(dtype) -> str:
    return "float32" if np.dtype(dtype) == np.float32 else "float64"


# --- shared inputs ------------------------------------------------------------------
# SPEC §tolerances's non-preset config, a single-head one, and fast's blocked size.
MH = R.Config(vocab_size=61, n_embd=24, n_heads=6, n_layers=2, block_size=32)
SH = R.Config(vocab_size=53, n_embd=16, n_heads=1, n_layers=2, block_size=24)
BLOCKED = R.Config(**hard.BLOCKED)
DROP = R.Config(vocab_size=61, n_embd=24, n_heads=6, n_layers=2, block_size=32, dropout_rate=0.1)
BASE = R.Config(vocab_size=512, n_embd=64, n_heads=4, n_layers=2, block_size=64)
# 45,680 parameters: 1.39 of fast's flat chunks (SPEC §parallel-split) for the norm, clip and AdamW kernels
FLAT = R.Config(vocab_size=67, n_embd=40, n_heads=4, n_layers=2, block_size=20)
# conformance/cases.SAME_COUNT's idea at a size that costs the set little: one parameter count (2VC + TC = 448
# in both, 1,336 in all), another layout, so another weight-decay mask (the non-decayed embeddings end at 288 vs
# 256); run one after the other in one adapter process, a mask cached by the count fails the second
SAME_COUNT_A = R.Config(vocab_size=20, n_embd=8, n_heads=2, n_layers=1, block_size=16)
SAME_COUNT_B = R.Config(vocab_size=24, n_embd=8, n_heads=2, n_layers=1, block_size=8)


def rng(*key) -> np.random.Generator:
    return np.random.default_rng(list(key))


def tokens(config: R.Config, B: int, T: int, seed: int) -> np.ndarray:
    return rng(seed, 1).integers(0, config.vocab_size, size=(B, T), dtype=np.int64)  # (B, T)


def param_inputs(params: R.Params, prefix: str = "param") -> dict:
    return {f"{prefix}.{name}": np.array(params[name]) for name in params.names()}


def grads_cmp(grads: R.Params, dtype) -> dict:
    """Every gradient, k.bias against its block's k.weight (SPEC §tolerances)."""
    out = {}
    for name in grads.names():
        scale = f"grad.{name[:-len('k.bias')]}k.weight" if name.endswith(".k.bias") else None
        out[f"grad.{name}"] = (np.array(grads[name]), gradient(dtype, scale))
    return out


def flags_of(config: R.Config, dtype=F32) -> tuple:
    out = []
    if config.n_heads == 1:
        out.append("n_heads-1")
    if config.dropout_rate > 0:
        out.append("dropout")
    if dtype == F64:
        out.append("float64")
    return tuple(out)


# --- config and parameter table -----------------------------------------------------
def cases_config():
    for name, fields in [("preset-tiny", R.preset("tiny").__dict__), ("mh", MH.__dict__), ("sh", SH.__dict__),
                         ("dropout", DROP.__dict__)]:
        cfg = config_json(R.Config(**fields))
        yield Case("config", "validate", name, "a valid config is accepted", args={"config": cfg})
    bad = {
        "heads-not-divisor": dict(vocab_size=61, n_embd=24, n_heads=5, n_layers=2, block_size=32, dropout_rate=0.0),
        "zero-vocab": dict(vocab_size=0, n_embd=24, n_heads=6, n_layers=2, block_size=32, dropout_rate=0.0),
        "zero-layers": dict(vocab_size=61, n_embd=24, n_heads=6, n_layers=0, block_size=32, dropout_rate=0.0),
        "negative-block": dict(vocab_size=61, n_embd=24, n_heads=6, n_layers=2, block_size=-1, dropout_rate=0.0),
        "dropout-one": dict(vocab_size=61, n_embd=24, n_heads=6, n_layers=2, block_size=32, dropout_rate=1.0),
        "dropout-negative": dict(vocab_size=61, n_embd=24, n_heads=6, n_layers=2, block_size=32, dropout_rate=-0.1),
    }
    for name, cfg in bad.items():
        try:
            R.Config(**cfg)
        except ValueError:
            pass
        else:
            raise AssertionError(f"config/validate/{name}: reference accepts {cfg}")
        yield Case("config", "validate", name, f"an invalid config ({name}) is refused", args={"config": cfg},
                   error="config.invalid", flags=("malformed",))


def cases_params():
    for cname, config in [("tiny", R.preset("tiny")), ("small", R.preset("small")), ("medium", R.preset("medium")),
                          ("mh", MH), ("sh", SH)]:
        outs = {"n_params": (np.int64(R.n_params(config)), exact())}
        for spec in R.param_table(config):
            outs[f"shape.{spec.name}"] = (np.array(spec.shape, dtype=np.int64), exact())
            outs[f"init.{spec.name}"] = (np.uint8({"zeros": 0, "ones": 1, "normal": 2}[spec.init]), exact())
            outs[f"std.{spec.name}"] = (np.float64(spec.std), exact())
            outs[f"decayed.{spec.name}"] = (np.uint8(spec.decayed), exact())
        yield Case("params", "table", cname, f"the parameter table of {cname} (SPEC §config)", config=config,
                   outputs=outs, flags=flags_of(config))
    for cname, config, seed in [("mh-seed0", MH, 0), ("sh-seed7", SH, 7), ("flat-seed3", FLAT, 3)]:
        params = R.init_params(config, seed=seed)
        yield Case("params", "init", cname, f"GPT-2 init of {cname} (SPEC §config): standard_normal float32 draws "
                   "times float32(std) in table order", config=config, args={"seed": seed}, dtype="float32",
                   outputs={k: (v, exact()) for k, v in param_inputs(params).items()},
                   flags=flags_of(config) + ("numpy-rng",))


# --- tokenizer ------------------------------------------------------------------------
TEXTS = {
    "hand": b"aaabdaaabac",
    "english": ("To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer "
                "The slings and arrows of outrageous fortune, Or to take arms against a sea of troubles "
                "And by opposing end them. To die-to sleep, No more; and by a sleep to say we end "
                "The heart-ache and the thousand natural shocks That flesh is heir to.\n").encode(),
    "unicode": ("Grüße aus Köln! Ça va? naïve café résumé. Ελληνικά κείμενα. Русский текст. "
                "日本語のテキスト、日本語。 emoji: 🙂🙂🙃 🎭🎭 — “quotes” and ‘more’. Grüße, Köln, café.\n").encode(),
    "runs": b"aaaaaaaaaaaaaaaabbbbbbbbababababab\x00\x00\x00\xff\xfe\xff\xfe aaaa",
}
HELD_OUT = ("Now is the winter of our discontent Made glorious summer by this sun of York; "
            "und die Bäume blühen 🌸. \xff\xfe bytes that are not UTF-8 \x80\x81").encode("utf-8", "surrogateescape")


def cases_tokenizer():
    held_out = HELD_OUT
    for tname, text in TEXTS.items():
        for vocab in (256 + 5, 256 + 40, 256 + 400):
            tok = R.Tokenizer.train(text, vocab)
            merges = np.array(tok.merges, dtype=np.int64).reshape(-1, 2)  # (M, 2)
            flags = ("unicode",) if tname == "unicode" else ()
            yield Case("tokenizer", "train", f"{tname}-v{vocab}",
                       f"BPE training on the {tname} text to vocab {vocab} (SPEC §tokenizer), stopping early when no pair is left",
                       args={"vocab_size": vocab}, files={"text": ("text.bin", text)},
                       outputs={"merges": (merges, exact())}, out_files={"tokenizer.json": tok.to_json().encode()},
                       flags=flags)
            if vocab != 256 + 40:
                continue
            tok_json = tok.to_json().encode()
            for ename, etext, eflags in [("same", text, flags), ("held-out", held_out, ("held-out",)),
                                         ("empty", b"", ())]:
                ids = tok.encode(etext).astype(np.int64)
                yield Case("tokenizer", "encode", f"{tname}-{ename}",
                           f"encode the {ename} text with the tokenizer trained on {tname} (SPEC §tokenizer)",
                           files={"tokenizer": ("tokenizer.json", tok_json), "text": ("text.bin", etext)},
                           outputs={"ids": (ids, exact())}, flags=eflags)
                yield Case("tokenizer", "decode", f"{tname}-{ename}",
                           f"decode the ids of the {ename} text back to its exact bytes (SPEC §tokenizer)",
                           files={"tokenizer": ("tokenizer.json", tok_json)}, inputs={"ids": ids},
                           out_files={"text.bin": tok.decode_bytes(ids)}, flags=eflags)
            yield Case("tokenizer", "load", tname, "load a canonical tokenizer JSON and write it back unchanged",
                       files={"tokenizer": ("tokenizer.json", tok_json)}, out_files={"tokenizer.json": tok_json})
    tok = R.Tokenizer.train(TEXTS["english"], 256 + 40)
    yield Case("tokenizer", "decode", "out-of-range", "an id >= vocab_size is refused",
               files={"tokenizer": ("tokenizer.json", tok.to_json().encode())},
               inputs={"ids": np.array([1, 2, tok.vocab_size], dtype=np.int64)},
               error="input.token-out-of-range", flags=("malformed",))
    spaced = json.dumps(json.loads(tok.to_json()), indent=1).encode()
    yield Case("tokenizer", "load", "whitespace", "a tokenizer JSON with whitespace and newlines is read "
               "(SPEC §tokenizer: any whitespace) and written back canonically",
               files={"tokenizer": ("tokenizer.json", spaced)}, out_files={"tokenizer.json": tok.to_json().encode()})
    doc = json.loads(tok.to_json())
    own_unk = json.dumps(dict(doc, unk_token="<pad>"), separators=(",", ":")).encode()
    assert R.Tokenizer.from_json(own_unk).to_json().encode() == own_unk
    yield Case("tokenizer", "load", "own-unk-token", "a tokenizer JSON's own unk_token is kept (SPEC §tokenizer)",
               files={"tokenizer": ("tokenizer.json", own_unk)}, out_files={"tokenizer.json": own_unk})
    malformed = {
        "not-json": b"{\"vocab\": ",
        "no-merges": json.dumps({"vocab": doc["vocab"]}).encode(),
        "bad-byte-token": json.dumps(dict(doc, vocab=dict(doc["vocab"], **{"<00>": 1, "<01>": 0}))).encode(),
        "unknown-merge": json.dumps(dict(doc, merges=doc["merges"] + [["<zz>", "<00>"]])).encode(),
    }
    for name, data in malformed.items():
        try:
            R.Tokenizer.from_json(data)
        except ValueError:
            pass
        else:
            raise AssertionError(f"tokenizer/load/{name}: reference accepts it")
        yield Case("tokenizer", "load", name, f"a malformed tokenizer JSON ({name}) is refused",
                   files={"tokenizer": ("tokenizer.json", data)}, error="tokenizer.invalid-json", flags=("malformed",))


# --- data -----------------------------------------------------------------------------
def cases_data():
    stream = rng(11).integers(0, 500, size=1237, dtype=np.int64)  # (N,)
    for frac in (0.1, 0.37, 0.0):
        train, val = R.train_val_split(stream, frac)
        yield Case("data", "split", f"n1237-f{frac}", f"the first {1 - frac:g} of the tokens train, the rest val (SPEC §split)",
                   inputs={"tokens": stream}, args={"val_fraction": frac},
                   outputs={"train": (np.asarray(train, np.int64), exact()), "val": (np.asarray(val, np.int64), exact())})
    for T, B, validation in [(16, 4, False), (7, 3, False), (16, 2, True), (33, 5, True)]:
        loader = R.TextDataLoader(stream, T, B, 0.1)
        loader.set_validation(validation)
        xs, ys = [], []
        while (batch := loader.next_batch()) is not None:
            xs.append(batch[0])
            ys.append(batch[1])
        x = np.array(xs, dtype=np.int64).reshape(len(xs), B, T)  # (n_batches, B, T)
        y = np.array(ys, dtype=np.int64).reshape(len(ys), B, T)
        split = "val" if validation else "train"
        yield Case("data", "sequential", f"t{T}-b{B}-{split}", "every batch of one pass of the sequential loader, "
                   "windows 0, T, 2T, ..., the last partial batch dropped (SPEC §sequential-loader)",
                   inputs={"tokens": stream}, args={"seq_len": T, "batch_size": B, "val_fraction": 0.1,
                                                    "validation": validation},
                   outputs={"x": (x, exact()), "y": (y, exact())})
    for B, T, seed, step in [(4, 16, 0, 0), (4, 16, 0, 1), (3, 7, 1234, 99), (8, 64, 5, 100000)]:
        x, y = R.random_batch(stream, B, T, seed, step)
        yield Case("data", "random-batch", f"b{B}-t{T}-seed{seed}-step{step}",
                   "the batch of (seed, step): offsets from default_rng([seed, step]) (SPEC §random-batches)",
                   inputs={"tokens": stream}, args={"batch_size": B, "seq_len": T, "seed": seed, "step": step},
                   outputs={"x": (np.asarray(x, np.int64), exact()), "y": (np.asarray(y, np.int64), exact())},
                   flags=("numpy-rng",))


# --- layers and loss ------------------------------------------------------------------
def _layer_case(op, name, desc, dtype, inputs, outputs, args=None, flags=()):
    cmp = {}
    for k, v in outputs.items():
        cmp[k] = (v, activation(dtype) if k == "out" else gradient(dtype))
    return Case("layers", op, f"{name}-{dtype_name(dtype)}", desc, dtype=dtype_name(dtype), args=args or {},
                inputs=inputs, outputs=cmp, flags=tuple(flags) + (("float64",) if dtype == F64 else ()),
                optional=dtype == F64)


def cases_layers():
    for dtype in (F32, F64):
        g = rng(21)
        # fast's blocked sizes in float32 only: the float64 variants are optional and the set stays small
        for B, T, C, name in [(2, 5, 8, "small"), (3, 101, 72, "blocked")][:2 if dtype == F32 else 1]:
            fl = ("blocked",) if name == "blocked" else ()
            x = g.standard_normal((B, T, C)).astype(dtype) * dtype(3) + dtype(0.5)  # (B, T, C)
            gamma = (1 + 0.3 * g.standard_normal(C)).astype(dtype)
            beta = (0.2 * g.standard_normal(C)).astype(dtype)
            dout = g.standard_normal((B, T, C)).astype(dtype)
            out, cache = R.layernorm_forward(x, gamma, beta)
            dx, dg, db = R.layernorm_backward(dout, cache)
            yield _layer_case("layernorm", name, "LayerNorm forward and backward (SPEC §forward, §backward)", dtype,
                              {"x": x, "gamma": gamma, "beta": beta, "dout": dout},
                              {"out": out, "dx": dx, "dgamma": dg, "dbeta": db}, flags=fl)
            for bias in (True, False) if name == "small" else (True,):
                Cout = 3 * C + 5
                w = (g.standard_normal((C, Cout)) * 0.2).astype(dtype)
                b = (g.standard_normal(Cout) * 0.1).astype(dtype)
                dout2 = g.standard_normal((B, T, Cout)).astype(dtype)
                out, cache = R.linear_forward(x, w, b if bias else None)
                dx, dw, db = R.linear_backward(dout2, cache)
                ins = {"x": x, "w": w, "dout": dout2}
                outs = {"out": out, "dx": dx, "dw": dw}
                if bias:
                    ins["b"], outs["db"] = b, db
                yield _layer_case("linear", f"{name}-{'bias' if bias else 'nobias'}",
                                  "linear y = x @ w + b forward and backward (SPEC §forward, §backward)", dtype, ins, outs, flags=fl)
            xg = (g.standard_normal((B, T, 4 * C)) * 2).astype(dtype)
            xg.flat[:3] = [0, -9, 9]
            dout3 = g.standard_normal((B, T, 4 * C)).astype(dtype)
            out, cache = R.gelu_forward(xg)
            yield _layer_case("gelu", name, "tanh-approximation GELU forward and backward (SPEC §forward)", dtype,
                              {"x": xg, "dout": dout3}, {"out": out, "dx": R.gelu_backward(dout3, cache)}, flags=fl)
            for NH in (1, 2, 4) if name == "small" else (6,):
                q, k, v = (g.standard_normal((B, T, C)).astype(dtype) for _ in range(3))
                out, cache = R.attention_forward(q, k, v, NH)
                dq, dk, dv = R.attention_backward(dout, cache)
                yield _layer_case("attention", f"{name}-nh{NH}", "causal multi-head attention forward and backward "
                                  "(SPEC §forward, §backward)", dtype, {"q": q, "k": k, "v": v, "dout": dout},
                                  {"out": out, "dq": dq, "dk": dk, "dv": dv}, args={"n_heads": NH},
                                  flags=fl + (("n_heads-1",) if NH == 1 else ()))
            if name != "small":
                continue
            # sharp scores: every score near -130 (SPEC §tolerances's adversarial magnitudes)
            q = (g.standard_normal((B, T, C)) * 0.5 + 4).astype(dtype)
            k = (g.standard_normal((B, T, C)) * 0.5 - 4).astype(dtype)
            v = g.standard_normal((B, T, C)).astype(dtype)
            out, cache = R.attention_forward(q, k, v, 2)
            dq, dk, dv = R.attention_backward(dout, cache)
            yield _layer_case("attention", f"{name}-sharp", "attention with every score far below zero "
                              "(a running max started at 0 underflows)", dtype, {"q": q, "k": k, "v": v, "dout": dout},
                              {"out": out, "dq": dq, "dk": dk, "dv": dv}, args={"n_heads": 2}, flags=fl + ("sharp",))
            V = 67
            tok = g.integers(0, V, size=(B, T), dtype=np.int64)
            wte = g.standard_normal((V, C)).astype(dtype)
            wpe = g.standard_normal((T + 3, C)).astype(dtype)
            out, cache = R.embedding_forward(tok, wte, wpe)
            dwte, dwpe = R.embedding_backward(dout, cache)
            yield _layer_case("embedding", name, "token + position embedding and the scatter of its gradient "
                              "(SPEC §forward, §backward)", dtype, {"tokens": tok, "wte": wte, "wpe": wpe, "dout": dout},
                              {"out": out, "dwte": dwte, "dwpe": dwpe}, flags=fl)


def cases_loss():
    for dtype in (F32, F64):
        g = rng(31)
        for B, T, V, shift, name in [(2, 5, 11, 0.0, "small"), (3, 101, 67, 0.0, "blocked"),
                                     (2, 7, 13, -4000.0, "sharp"), (2, 3, 512, 4000.0, "huge")]:
            logits = (g.standard_normal((B, T, V)) * 5 + shift).astype(dtype)  # (B, T, V)
            targets = g.integers(0, V, size=(B, T), dtype=np.int64)
            loss, cache = R.cross_entropy_forward(logits, targets)
            dlogits = R.cross_entropy_backward(cache)
            fl = {"blocked": ("blocked",), "sharp": ("sharp",), "huge": ("sharp",)}.get(name, ())
            yield Case("loss", "cross-entropy", f"{name}-{dtype_name(dtype)}",
                       "mean cross-entropy with max-subtraction and its gradient (SPEC §forward, §backward)",
                       dtype=dtype_name(dtype), inputs={"logits": logits, "targets": targets},
                       outputs={"loss": (np.float64(loss), loss_cmp(dtype)), "dlogits": (dlogits, gradient(dtype))},
                       flags=fl + (("float64",) if dtype == F64 else ()), optional=dtype == F64)


    # every loss term an exact integer (conformance/cases.exact_logits): the float64 mean of 2^14 of
    # them is exact in any summation order, so the loss is compared exactly; a float32 accumulation rounds
    logits, targets, want = hard.exact_logits(F32, N=1 << 14)
    loss, _ = R.cross_entropy_forward(logits, targets)
    assert loss == want
    yield Case("loss", "cross-entropy", "exact-mean-float32", "2^14 positions whose loss terms are exact integers "
               "near +-4000: the float64 mean is exact, a float32 accumulation is not (SPEC §forward)", dtype="float32",
               inputs={"logits": logits, "targets": np.asarray(targets, np.int64)},
               outputs={"loss": (np.float64(loss), exact())}, flags=("sharp",))


# --- model ---------------------------------------------------------------------------
CONDITION = 10  # an expected float32 result is within 1/10 of its budget of the float64 truth


def conditioning(params, tok, tgt, dropout=None) -> float:
    """The largest fraction of its budget by which reference's float32 logits and gradients miss the same
    computation in float64 (§numerics's F32_VS_F64 metrics): a case is usable only well below 1, or the
    expected value's own rounding error, not the implementation's, would decide the verdict."""
    key = None if dropout is None else R.DropoutKey(**dropout)
    p64 = params.astype(F64)
    l32, _, c32 = R.forward(params, tok, tgt, dropout=key)
    l64, _, c64 = R.forward(p64, tok, tgt, dropout=key)
    worst = float(np.max(np.abs(l32 - l64)) / np.max(np.abs(l64))) / tolerances.F32_VS_F64_LOGITS_RTOL
    if tgt is not None:
        g32, g64 = R.backward(params, c32), R.backward(p64, c64)
        for name in g64.names():
            ref = g64[f"{name[:-len('bias')]}weight"] if name.endswith(".k.bias") else g64[name]
            with np.errstate(invalid="ignore", divide="ignore"):  # a zero gradient gives nan: not usable
                ratio = float(np.linalg.norm(g32[name] - g64[name]) / np.linalg.norm(ref))
            worst = max(worst, ratio / tolerances.F32_VS_F64_GRAD_REL_NORM)
    return worst


def _model_case(op, name, desc, config, params, tok, tgt, dtype=F32, dropout=None, flags=()):
    key = None if dropout is None else R.DropoutKey(**dropout)
    if dtype == F32:
        worst = conditioning(params, tok, tgt, dropout)
        if not worst <= 1 / CONDITION:
            raise AssertionError(f"model/{op}/{name}: reference float32 is {worst:.2f} of the budget away from "
                                 "float64: an ill-conditioned case (pick other seeds)")
    logits, loss, cache = R.forward(params, tok, tgt, dropout=key)
    outs = {"logits": (logits, activation(dtype))}
    inputs = dict(param_inputs(params), tokens=tok)
    if tgt is not None:
        inputs["targets"] = tgt
        outs["loss"] = (np.float64(loss), loss_cmp(dtype))
    if op == "backward":
        outs.update(grads_cmp(R.backward(params, cache), dtype))
    return Case("model", op, f"{name}-{dtype_name(dtype)}", desc, config=config, dtype=dtype_name(dtype),
                args={"dropout": dropout}, inputs=inputs, outputs=outs,
                flags=flags_of(config, dtype) + tuple(flags), optional=dtype == F64)


def cases_model():
    for cname, config, B, T in [("mh", MH, 2, 16), ("sh", SH, 3, 11), ("blocked", BLOCKED, *hard.BLOCKED_BT)]:
        tok, tgt = tokens(config, B, T, 1), tokens(config, B, T, 2)
        init = R.init_params(config, seed=5)
        mv = hard.moved(init, seed=6)
        fl = ("blocked",) if cname == "blocked" else ()
        if cname != "blocked":
            yield _model_case("forward", f"{cname}-init", "logits and loss at init (SPEC §forward)", config, init, tok,
                              tgt)
        if cname != "blocked":  # the blocked size's logits are in its backward case (the set stays < 20 MB)
            yield _model_case("forward", f"{cname}-moved-notargets", "logits without targets on moved parameters",
                              config, mv, tok, None, flags=("moved",))
        yield _model_case("backward", f"{cname}-moved", "logits, loss and every gradient on moved parameters "
                          "(SPEC §backward)", config, mv, tok, tgt, flags=fl + ("moved",))
        if cname != "blocked":
            # the first seed whose sharp parameters are well conditioned in float32 (some put a
            # softmax row on an exact tie or a cancelling gradient, where float32 itself is far off)
            sharp = next(p for p in (hard.sharp(init, seed=s) for s in range(7, 100))
                         if conditioning(p, tok, tgt) <= 1 / CONDITION)
            yield _model_case("backward", f"{cname}-sharp", "every attention score and logit far below zero "
                              "(SPEC §tolerances's sharp magnitudes)", config, sharp, tok, tgt, flags=("sharp",))
            yield _model_case("backward", f"{cname}-moved", "the float64 model on moved parameters", config,
                              mv.astype(F64), tok, tgt, dtype=F64, flags=("moved",))
    tok, tgt = tokens(DROP, 2, 16, 3), tokens(DROP, 2, 16, 4)
    mv = hard.moved(R.init_params(DROP, seed=8), seed=9)
    for name, key in [("step0", dict(seed=1, step=0)), ("step7-row2", dict(seed=1, step=7, row_offset=2))]:
        yield _model_case("backward", f"dropout-{name}", "a training forward with dropout masks keyed by "
                          "(seed, step, row_offset) and its backward (SPEC §dropout)", DROP, mv, tok, tgt, dropout=key)
    yield _model_case("forward", "dropout-off", "dropout_rate > 0 but no key: no dropout (evaluation)", DROP, mv,
                      tok, tgt)
    # baseline: the loss at init against its closed form ln V + sigma^2 / 2 (SPEC §config)
    params = R.init_params(BASE, seed=0)
    tok, tgt = tokens(BASE, 4, 64, 10), tokens(BASE, 4, 64, 11)
    _, loss, _ = R.forward(params, tok, tgt)
    want = math.log(BASE.vocab_size) + tolerances.BASELINE_EXCESS_PER_C * BASE.n_embd
    cmp = _tol("abs", "BASELINE_EXPECTED_ABS", value=want)
    assert abs(loss - want) <= cmp["limit"], (loss, want)
    yield Case("model", "baseline", "v512-c64", "the loss at init is ln V + sigma^2/2, sigma^2 = 0.0004 C (SPEC §config)",
               config=BASE, dtype="float32", inputs=dict(param_inputs(params), tokens=tok, targets=tgt),
               args={"dropout": None}, outputs={"loss": (np.float64(loss), cmp)})
    # refused inputs (SPEC §errors)
    init = R.init_params(MH, seed=5)
    bad_tok = tokens(MH, 2, 8, 1)
    bad_tok[1, 3] = MH.vocab_size
    nan = init.copy()
    nan["blocks.1.fc1.bias"][3] = np.nan
    for name, params, tok, tgt, code in [
            ("token-out-of-range", init, bad_tok, tokens(MH, 2, 8, 2), "input.token-out-of-range"),
            ("target-out-of-range", init, tokens(MH, 2, 8, 2), bad_tok, "input.token-out-of-range"),
            ("too-long", init, tokens(MH, 1, MH.block_size + 1, 1), tokens(MH, 1, MH.block_size + 1, 2),
             "input.sequence-too-long"),
            ("nan-param", nan, tokens(MH, 2, 8, 1), tokens(MH, 2, 8, 2), "input.non-finite-param")]:
        try:
            R.forward(params, tok, tgt)
        except ValueError:
            pass
        else:
            raise AssertionError(f"model/forward/{name}: reference accepts it")
        yield Case("model", "forward", name, f"a forward with {name.replace('-', ' ')} is refused (SPEC §errors)",
                   config=MH, dtype="float32", args={"dropout": None},
                   inputs=dict(param_inputs(params), tokens=tok, targets=tgt), error=code, flags=("malformed",))


# --- dropout ---------------------------------------------------------------------------
def cases_dropout():
    # Random123's kat_vectors for philox4x32-10 (the suite's one copy, conformance/cases.py)
    counters = np.array([c for c, _, _ in hard.KAT], dtype=np.uint32)  # (3, 4)
    keys = np.array([k for _, k, _ in hard.KAT], dtype=np.uint32)  # (3, 2)
    want = np.array([o for _, _, o in hard.KAT], dtype=np.uint32)
    assert np.array_equal(R.philox4x32(counters, keys), want)
    yield Case("dropout", "philox", "random123-kat", "Random123's known answers for Philox4x32-10 (SPEC §dropout)",
               inputs={"counter": counters, "key": keys}, outputs={"out": (want, exact())})
    g = rng(41)
    counters = g.integers(0, 2 ** 32, size=(257, 4), dtype=np.uint64).astype(np.uint32)
    keys = g.integers(0, 2 ** 32, size=(257, 2), dtype=np.uint64).astype(np.uint32)
    yield Case("dropout", "philox", "random-257", "Philox4x32-10 on 257 random counters and keys",
               inputs={"counter": counters, "key": keys},
               outputs={"out": (R.philox4x32(counters, keys), exact())})
    for seed, step, layer, site, shape, p, row in [(0, 0, 0, 0, [2, 5, 8], 0.1, 0), (1, 7, 1, 2, [3, 7, 13], 0.5, 0),
                                                  (12345, 99, 2, 1, [2, 3, 5, 5], 0.3, 4),
                                                  (12345, 99, 2, 3, [2, 6, 4], 0.3, 4),
                                                  (2 ** 40 + 3, 2 ** 32 - 1, 0, 2, [1, 9, 17], 0.9, 11)]:
        mask = R.dropout_mask(seed, step, layer, site, tuple(shape), p, row_offset=row)
        yield Case("dropout", "mask", f"seed{seed}-step{step}-l{layer}-s{site}-p{p}-row{row}",
                   "one site's keep mask from the Philox stream keyed by (seed, step, layer, site, element) (SPEC §dropout)",
                   args={"seed": seed, "step": step, "layer": layer, "site": site, "shape": shape, "p": p,
                         "row_offset": row}, outputs={"mask": (np.asarray(mask, dtype=bool), exact())},
                   flags=("dropout",))


    # a word exactly at the threshold is kept (word >= floor(p 2^32)): p chosen as one element's word / 2^32,
    # exact in float32 because that word has 8 trailing zero bits
    from reference.dropout import dropout_words

    shape = (2, 16, 64)
    words = dropout_words(5, 3, 0, 2, shape, row_offset=0).ravel()
    word = next(int(w) for w in words if int(w) % 256 == 0 and int(w) > 0)
    p = float(np.float32(word / 2.0 ** 32))
    assert math.floor(p * 2.0 ** 32) == word
    mask = R.dropout_mask(5, 3, 0, 2, shape, p)
    assert mask.ravel()[list(words).index(word)]
    yield Case("dropout", "mask", "threshold-tie", "an element whose word equals floor(p 2^32) is kept (SPEC §dropout)",
               args={"seed": 5, "step": 3, "layer": 0, "site": 2, "shape": list(shape), "p": p, "row_offset": 0},
               outputs={"mask": (np.asarray(mask, dtype=bool), exact())}, flags=("dropout",))


# --- optimiser, clipping, schedule ------------------------------------------------------
def _grads(config, seed, scale):
    g = R.Params(config)
    g.data[:] = (rng(seed, 2).standard_normal(g.data.shape) * scale).astype(F32)
    return g


def cases_optim():
    for cname, config in [("mh", MH), ("flat", FLAT)]:
        for scale in (1e-3, 0.05) if config is MH else (0.05,):
            grads = _grads(config, 3, scale)
            norm = R.grad_norm(grads)
            yield Case("optim", "grad-norm", f"{cname}-scale{scale:g}", "sqrt of the float64 sum of squares of "
                       "every gradient (SPEC §optimiser)", config=config, dtype="float32",
                       inputs=param_inputs(grads, "grad"),
                       outputs={"norm": (np.float64(norm), _tol("rel", "GRAD_NORM_RTOL"))})
            for max_norm in (1.0, 0.25):
                clipped = grads.copy()
                pre = R.clip_grad_norm(clipped, max_norm)
                state = "clipped" if pre > max_norm else "untouched"
                outs = {f"grad.{n}": (np.array(clipped[n]), _tol("ulp", "CLIP_ULP")) for n in clipped.names()}
                outs["norm"] = (np.float64(pre), _tol("rel", "GRAD_NORM_RTOL"))
                yield Case("optim", "clip", f"{cname}-scale{scale:g}-max{max_norm:g}",
                           f"clip_grad_norm: pre-clip norm {pre:.3g}, max_norm {max_norm:g}: {state} (SPEC §optimiser)",
                           config=config, dtype="float32", args={"max_norm": max_norm},
                           inputs=param_inputs(grads, "grad"), outputs=outs)
    assert R.n_params(SAME_COUNT_A) == R.n_params(SAME_COUNT_B)
    assert not np.array_equal(R.Params(SAME_COUNT_A).decay_mask(), R.Params(SAME_COUNT_B).decay_mask())
    for cname, config, t, lr, wd in [("mh-t0", MH, 0, 1e-3, 0.1), ("mh-t7", MH, 7, 3e-3, 0.1),
                                     ("mh-t100000-wd0.3", MH, 100000, 0.1, 0.3), ("flat-t2", FLAT, 2, 1e-3, 0.1),
                                     ("same-count-a-t7", SAME_COUNT_A, 7, 3e-3, 0.1),
                                     ("same-count-b-t7", SAME_COUNT_B, 7, 3e-3, 0.1)]:
        params = hard.moved(R.init_params(config, seed=1), seed=2)
        grads = _grads(config, 4, 0.01)
        state = R.adamw_init(params)
        if t:
            state.m.data[:] = _grads(config, 5, 0.01).data
            state.v.data[:] = np.abs(_grads(config, 6, 1e-4).data)
            state.step = t
        inputs = {**param_inputs(params), **param_inputs(grads, "grad"), **param_inputs(state.m, "m"),
                  **param_inputs(state.v, "v")}
        p2, s2 = params.copy(), R.AdamWState(state.m.copy(), state.v.copy(), state.step)
        R.adamw_step(p2, grads, s2, lr, weight_decay=wd)
        outs = {**{k: (v, exact()) for k, v in param_inputs(p2).items()},
                **{k: (v, exact()) for k, v in param_inputs(s2.m, "m").items()},
                **{k: (v, exact()) for k, v in param_inputs(s2.v, "v").items()},
                "step": (np.int64(s2.step), exact())}
        same = (" (same-count-a and -b: one parameter count, two layouts, so two weight-decay masks; in one process, "
                "a mask kept by count fails the second)" if cname.startswith("same-count") else "")
        yield Case("optim", "adamw", cname, "one AdamW step, every operation fixed by SPEC §optimiser: identical bytes"
                   + same, config=config, dtype="float32", inputs=inputs, outputs=outs,
                   args={"step": t, "lr": lr, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": wd})
    steps = np.array([0, 1, 2, 99, 100, 101, 150, 500, 999, 1000, 1001, 5000], dtype=np.int64)
    for name, kw in [("constant", dict(base_lr=3e-4, warmup_steps=100, total_steps=1000, schedule="constant",
                                       min_lr=0.0)),
                     ("cosine", dict(base_lr=3e-4, warmup_steps=100, total_steps=1000, schedule="cosine",
                                     min_lr=3e-5)),
                     ("cosine-nowarmup", dict(base_lr=1e-3, warmup_steps=0, total_steps=700, schedule="cosine",
                                              min_lr=0.0))]:
        lr = np.array([R.learning_rate(int(s), **kw) for s in steps], dtype=np.float64)
        yield Case("optim", "lr", name, "the learning rate as a pure function of the step (SPEC §optimiser)", args=kw,
                   inputs={"steps": steps}, outputs={"lr": (lr, _tol("ulp", "LIBM_ULP"))})


# --- checkpoints -------------------------------------------------------------------------
CK = R.Config(vocab_size=300, n_embd=8, n_heads=2, n_layers=1, block_size=8)


def _ckpt_state(config, training: bool, with_tokenizer: bool, best=math.inf):
    params = hard.moved(R.init_params(config, seed=1), seed=2)
    opt = None
    if training:
        opt = R.adamw_init(params)
        opt.m.data[:] = _grads(config, 5, 0.01).data
        opt.v.data[:] = np.abs(_grads(config, 6, 1e-4).data)
        opt.step = 17
        opt.beta1, opt.beta2, opt.eps = float(F32(0.9)), float(F32(0.95)), float(F32(1e-8))
    tok = R.Tokenizer.train(TEXTS["english"], 296) if with_tokenizer else None
    meta = {"step": 17, "best_val_loss": best, "best_val_step": 10 if math.isfinite(best) else 0}
    return R.Checkpoint(config, params, optimizer=opt, tokenizer=tok, metadata=meta)


def _ckpt_case_inputs(ck: R.Checkpoint):
    inputs = param_inputs(ck.params)
    args = {"optimizer": None, "metadata": {"step": ck.metadata["step"], "best_val_step": ck.metadata["best_val_step"],
                                            "best_val_loss": ck.metadata["best_val_loss"]
                                            if math.isfinite(ck.metadata["best_val_loss"]) else None}}
    if ck.optimizer is not None:
        inputs.update(param_inputs(ck.optimizer.m, "m"))
        inputs.update(param_inputs(ck.optimizer.v, "v"))
        args["optimizer"] = {"step": ck.optimizer.step, "beta1": ck.optimizer.beta1, "beta2": ck.optimizer.beta2,
                             "eps": ck.optimizer.eps}
    files = {"tokenizer": ("tokenizer.json", ck.tokenizer.to_json().encode())} if ck.tokenizer else {}
    return inputs, args, files


def _ckpt_read_outputs(ck: R.Checkpoint):
    c = ck.config
    outs = {"config": (np.array([c.vocab_size, c.n_embd, c.n_heads, c.n_layers, c.block_size], np.int64), exact()),
            "dropout_rate": (np.float32(c.dropout_rate), exact()),
            "metadata_step": (np.int64(ck.metadata["step"]), exact()),
            "best_val_step": (np.int64(ck.metadata["best_val_step"]), exact()),
            "best_val_loss": (np.float64(ck.metadata["best_val_loss"]), exact())}
    outs.update({k: (v, exact()) for k, v in param_inputs(ck.params).items()})
    if ck.optimizer is not None:
        outs.update({k: (v, exact()) for k, v in param_inputs(ck.optimizer.m, "m").items()})
        outs.update({k: (v, exact()) for k, v in param_inputs(ck.optimizer.v, "v").items()})
        outs["optimizer_step"] = (np.int64(ck.optimizer.step), exact())
        outs["optimizer_hyper"] = (np.array([ck.optimizer.beta1, ck.optimizer.beta2, ck.optimizer.eps], F32), exact())
    files = {"tokenizer.json": ck.tokenizer.to_json().encode()} if ck.tokenizer is not None else {}
    return outs, files


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def cases_checkpoint():
    variants = [("inference", CK, False, False, math.inf), ("inference-tokenizer", CK, False, True, 2.5),
                ("training", CK, True, False, 3.140625), ("training-tokenizer", CK, True, True, math.inf),
                ("mh-training", MH, True, False, 1e-7), ("sh-inference", SH, False, False, 4.5e-6),
                ("dropout-inference", DROP, False, False, math.inf)]
    for name, config, training, with_tok, best in variants:
        ck = _ckpt_state(config, training, with_tok, best)
        data = R.checkpoint_to_bytes(ck)
        inputs, args, files = _ckpt_case_inputs(ck)
        yield Case("checkpoint", "write", name, "FESTE_CKPT v1 bytes of this state (SPEC §checkpoint)", config=config,
                   dtype="float32", inputs=inputs, args=args, files=files, out_files={"checkpoint.bin": data},
                   flags=flags_of(config))
        outs, out_files = _ckpt_read_outputs(R.checkpoint_from_bytes(data))
        yield Case("checkpoint", "read", name, "read a FESTE_CKPT v1 file back (SPEC §checkpoint)",
                   files={"checkpoint": ("checkpoint.bin", data)}, outputs=outs, out_files=out_files,
                   flags=flags_of(config))
    # malformed files (SPEC §checkpoint "Reading"): each must be refused with its code
    inf = R.checkpoint_to_bytes(_ckpt_state(CK, False, False))
    trn = R.checkpoint_to_bytes(_ckpt_state(CK, True, False))
    (clen,) = struct.unpack_from("<I", inf, 11)
    cfg_end = 15 + clen
    meta_json = R.checkpoint.metadata_to_json(_ckpt_state(CK, False, False).metadata).encode()
    flag_opt = len(inf) - len(meta_json) - 4 - 2  # has_optimizer, then has_tokenizer, then the metadata
    tflag_opt = flag_opt  # the same parameters, so the same offset in the training file
    opt_len = 1 + 8 + 12 + 2 * (len(inf) - 15 - clen - 2 - 4 - len(meta_json) - 4)  # flag, step, betas, m and v
    v_last = tflag_opt + opt_len - 4  # the last value of v[output_weight]
    tok_bad = R.Tokenizer.train(TEXTS["english"], 296).to_json().encode()

    def with_config(text: bytes, base=inf) -> bytes:
        return base[:11] + _u32(len(text)) + text + base[cfg_end:]

    def with_meta(text: bytes, base=inf) -> bytes:
        return base[:len(base) - len(meta_json) - 4] + _u32(len(text)) + text

    def poke(base: bytes, at: int, raw: bytes) -> bytes:
        return base[:at] + raw + base[at + len(raw):]

    malformed = {
        "empty": (b"", "checkpoint.bad-magic"),
        "bad-magic": (b"FESTE_CKPX" + inf[10:], "checkpoint.bad-magic"),
        "other-format": (b"\x89PNG\r\n\x1a\n" + inf[8:], "checkpoint.bad-magic"),
        "version-2": (poke(inf, 10, b"\x02"), "checkpoint.bad-version"),
        "version-0": (poke(inf, 10, b"\x00"), "checkpoint.bad-version"),
        "truncated-in-magic": (inf[:5], "checkpoint.truncated"),
        "truncated-in-config": (inf[:20], "checkpoint.truncated"),
        "truncated-in-tensor": (inf[:cfg_end + 100], "checkpoint.truncated"),
        "truncated-last-byte": (inf[:-1], "checkpoint.truncated"),
        "truncated-optimizer": (trn[:tflag_opt + 30], "checkpoint.truncated"),
        "config-length-huge": (poke(inf, 11, _u32(2 ** 31)), "checkpoint.truncated"),
        "trailing-byte": (inf + b"\x00", "checkpoint.trailing-bytes"),
        "config-not-json": (with_config(b"{\"vocab_size\":300,"), "checkpoint.bad-config"),
        "config-missing-field": (with_config(b'{"vocab_size":300,"n_embd":8,"n_heads":2,"n_layers":1,"block_size":8}'),
                                 "checkpoint.bad-config"),
        "config-invalid": (with_config(b'{"vocab_size":300,"n_embd":8,"n_heads":3,"n_layers":1,"block_size":8,'
                                       b'"dropout_rate":0.0}'), "checkpoint.bad-config"),
        "ndim-wrong": (poke(inf, cfg_end, _u32(3)), "checkpoint.bad-shape"),
        "dim-wrong": (poke(inf, cfg_end + 4, _u32(301)), "checkpoint.bad-shape"),
        "numel-wrong": (poke(inf, cfg_end + 12, _u32(300 * 8 - 1)), "checkpoint.bad-shape"),
        # numel above the shape's on the last tensor: a reader that only bounds numel below runs into the flags
        "numel-too-large": (poke(inf, flag_opt - 4 * CK.n_embd * CK.vocab_size - 4,
                                 _u32(CK.n_embd * CK.vocab_size + 1)), "checkpoint.bad-shape"),
        "has-optimizer-2": (poke(inf, flag_opt, b"\x02"), "checkpoint.bad-flag"),
        "has-tokenizer-7": (poke(inf, flag_opt + 1, b"\x07"), "checkpoint.bad-flag"),
        "beta1-one": (poke(trn, tflag_opt + 9, struct.pack("<f", 1.0)), "checkpoint.bad-optimizer"),
        "eps-zero": (poke(trn, tflag_opt + 17, struct.pack("<f", 0.0)), "checkpoint.bad-optimizer"),
        "tokenizer-not-json": (inf[:flag_opt + 1] + b"\x01" + _u32(5) + b"{\"vo}" + inf[flag_opt + 2:],
                               "checkpoint.bad-tokenizer"),
        "metadata-not-json": (with_meta(b"{\"step\":"), "checkpoint.bad-metadata"),
        "metadata-best-after-step": (with_meta(b'{"step":3,"best_val_loss":1.5,"best_val_step":4}'),
                                     "checkpoint.bad-metadata"),
        "metadata-negative-loss": (with_meta(b'{"step":3,"best_val_loss":-1.0,"best_val_step":1}'),
                                   "checkpoint.bad-metadata"),
        "metadata-extra-key": (with_meta(b'{"step":3,"best_val_loss":null,"best_val_step":1,"x":0}'),
                               "checkpoint.bad-metadata"),
        "nan-parameter": (poke(inf, cfg_end + 16 + 4 * 37, struct.pack("<f", math.nan)), "checkpoint.bad-value"),
        "inf-parameter": (poke(inf, cfg_end + 16, struct.pack("<f", -math.inf)), "checkpoint.bad-value"),
        "negative-second-moment": (poke(trn, v_last, struct.pack("<f", -0.5)), "checkpoint.bad-value"),
    }
    # a tokenizer larger than the model's vocabulary
    small = R.checkpoint_to_bytes(_ckpt_state(MH, False, False))
    (sclen,) = struct.unpack_from("<I", small, 11)
    smeta = R.checkpoint.metadata_to_json(_ckpt_state(MH, False, False).metadata).encode()
    sflag = len(small) - len(smeta) - 4 - 2
    malformed["tokenizer-too-large"] = (small[:sflag + 1] + b"\x01" + _u32(len(tok_bad)) + tok_bad + small[sflag + 2:],
                                        "checkpoint.bad-tokenizer")
    for name, (data, code) in malformed.items():
        try:
            R.checkpoint_from_bytes(data)
        except R.CheckpointError:
            pass
        else:
            raise AssertionError(f"checkpoint/read/{name}: reference reads it")
        yield Case("checkpoint", "read", name, f"a malformed file ({name}) is refused (SPEC §checkpoint Reading)",
                   files={"checkpoint": ("checkpoint.bin", data)}, error=code, flags=("malformed",))
    # readers accept any key order and whitespace in the JSON sections (SPEC §checkpoint JSON)
    spaced = with_config(b'{ "n_embd": 8, "vocab_size": 300, "n_heads": 2, "n_layers": 1,\n "block_size": 8, '
                         b'"dropout_rate": 0.0 }')
    outs, out_files = _ckpt_read_outputs(R.checkpoint_from_bytes(spaced))
    yield Case("checkpoint", "read", "config-spaced-reordered", "a config JSON with whitespace and its keys in "
               "another order is read (SPEC §checkpoint JSON)", files={"checkpoint": ("checkpoint.bin", spaced)},
               outputs=outs, out_files=out_files)
    # SPEC §checkpoint asks for integers where integers are due and says dropout_rate is written as a float; whether
    # a reader takes the integer 0 for it is left open: reference reads it, refusing is as good
    integer_rate = with_config(b'{"vocab_size":300,"n_embd":8,"n_heads":2,"n_layers":1,"block_size":8,'
                               b'"dropout_rate":0}')
    outs, out_files = _ckpt_read_outputs(R.checkpoint_from_bytes(integer_rate))
    yield Case("checkpoint", "read", "config-integer-dropout-rate", "dropout_rate written as the integer 0: "
               "reading it or refusing it are both allowed (SPEC §checkpoint leaves it open)",
               files={"checkpoint": ("checkpoint.bin", integer_rate)}, outputs=outs, out_files=out_files,
               verdict="acceptable", flags=("open",))


# --- CSV log rows -------------------------------------------------------------------------
def cases_logger():
    yield Case("logger", "header", "csv", "the CSV header line (SPEC §csv-log)", out_files={"header.txt": (R.CSV_HEADER + "\n").encode()})
    rows = [
        ("plain", dict(step=200, elapsed=12.345, lr=6e-5, train_loss=2.5, val_loss=2.75, sample="To be, or not",
                       grad_norm=0.98765)),
        ("quotes-newline", dict(step=0, elapsed=0.0, lr=0.0, train_loss=6.2383, val_loss=6.2383,
                                sample='He said "no",\nthen\tleft\r\\', grad_norm=1.0)),
        ("unicode", dict(step=1, elapsed=0.005, lr=3e-4, train_loss=0.125, val_loss=0.375,
                         sample="Grüße 🙂 — ‘x’", grad_norm=12.00005)),
        ("rounding-ties", dict(step=3, elapsed=2.675, lr=1.0000005e-3, train_loss=1.00005, val_loss=0.00015,
                               sample="", grad_norm=2.5e-5)),
        ("huge-loss", dict(step=123456789, elapsed=98765.4321, lr=1.5, train_loss=800.0, val_loss=1000.0,
                           sample="x", grad_norm=1e10)),
    ]
    for name, kw in rows:
        row = R.format_log_row(**kw) + "\n"
        yield Case("logger", "row", name, "one CSV log row (SPEC §csv-log): fixed decimals, the sample quoted with "
                   "control characters escaped and quotes doubled", args=kw, out_files={"row.txt": row.encode()},
                   flags=("unicode",) if name == "unicode" else ())


# --- generation -----------------------------------------------------------------------------
def _greedy_margin(params, ids, n_tokens) -> float:
    """The smallest gap between the top two logits (relative to max |logit|) over the greedy steps."""
    config = params.config
    seq = list(ids)
    worst = math.inf
    for _ in range(n_tokens):
        window = np.array(seq[-config.block_size:], dtype=np.int64)[None, :]
        logits = R.forward(params, window)[0][0, -1].astype(np.float64)
        top = np.sort(logits)[-2:]
        worst = min(worst, (top[1] - top[0]) / np.max(np.abs(logits)))
        seq.append(int(np.argmax(logits)))
    return worst


def tie_params(config: R.Config, low: int, high: int, value: float = 2.0) -> R.Params:
    """Parameters whose logits are exactly `value` at ids `low` and `high` and exactly 0 elsewhere, at every
    position: ln_final has gamma 0 and beta 1 at row 0 (its output is exactly e_0), and output_weight has
    `value` at (0, low) and (0, high) only. Each logit is then one product, the same bits everywhere."""
    params = hard.moved(R.init_params(config, seed=11), seed=12)
    params["ln_final.gamma"][:] = 0
    params["ln_final.beta"][:] = 0
    params["ln_final.beta"][0] = 1
    params["output_weight"][:] = 0
    params["output_weight"][0, [low, high]] = value
    return params


def cases_generate():
    params = tie_params(MH, 3, 7)
    prompt = np.array([5, 1, 60], dtype=np.int64)
    ids = R.generate(params, prompt, 6, temperature=0.0)
    assert list(ids[3:]) == [3] * 6
    yield Case("generate", "greedy", "exact-tie", "logits tied exactly at ids 3 and 7: greedy takes the lowest id "
               "(SPEC §generation)", config=MH, dtype="float32", inputs=dict(param_inputs(params), prompt=prompt),
               args={"n_tokens": 6}, outputs={"ids": (np.asarray(ids, np.int64), exact())})

    # sharp: every attention score far below zero (conformance/cases.sharp), in the decoder's one-query attention
    # too, where a running max started at 0 instead of the first score underflows to 0 / 0
    for cname, config, n_tokens in [("mh", MH, 12), ("sh", SH, 30), ("mh-past-block", MH, 40), ("mh-sharp", MH, 12)]:
        for seed in range(2, 40):
            if cname.endswith("sharp"):
                params = hard.sharp(R.init_params(config, seed=seed), seed=seed + 1)
            else:
                params = hard.moved(R.init_params(config, seed=seed), seed=seed + 1, std=0.3)
            prompt = rng(seed, 3).integers(0, config.vocab_size, size=5, dtype=np.int64)
            # greedy ids are comparable only when no step's top two logits are within the logits budget
            if _greedy_margin(params, prompt, n_tokens) > 4 * tolerances.LOGITS_RTOL:
                break
        else:
            raise AssertionError(f"generate/greedy/{cname}: no seed gives a clear greedy margin")
        ids = R.generate(params, prompt, n_tokens, temperature=0.0)
        inputs = dict(param_inputs(params), prompt=prompt)
        yield Case("generate", "greedy", cname, "greedy generation: argmax of the last position's logits, over the "
                   "last block_size tokens (SPEC §generation)", config=config, dtype="float32", inputs=inputs,
                   args={"n_tokens": n_tokens}, outputs={"ids": (np.asarray(ids, np.int64), exact())},
                   flags=flags_of(config) + (("sharp",) if cname.endswith("sharp") else ()))
        if cname.endswith("sharp"):
            continue  # greedy is enough to see the scores' magnitudes; sampling adds no other path
        for temperature, top_k, s in [(1.0, None, 0), (0.7, 5, 3), (1.5, 1, 9)]:
            ids = R.generate(params, prompt, n_tokens, temperature=temperature, top_k=top_k, seed=s)
            yield Case("generate", "sample", f"{cname}-t{temperature:g}-k{top_k or 'all'}-seed{s}",
                       "sampled generation with default_rng(seed), temperature and top-k (SPEC §generation)", config=config,
                       dtype="float32", inputs=inputs,
                       args={"n_tokens": n_tokens, "temperature": temperature, "top_k": top_k, "seed": s},
                       outputs={"ids": (np.asarray(ids, np.int64), exact())}, flags=flags_of(config) + ("numpy-rng",))


# --- a short training trajectory ---------------------------------------------------------------
def step_gradient(params, x, y, K: int, dropout=None):
    """SPEC §operations train/step-gradient written out with reference's contract functions (SPEC §micro-batches): micro-batch
    m is rows [m b, (m+1) b), its masks those of its rows in the step's batch, its gradient that of its share
    of the step's mean, added in order; the loss is the mean of the micro-batch losses."""
    B, T = x.shape
    b = B // K
    losses, grads = [], None
    for m in range(K):
        rows = slice(m * b, (m + 1) * b)
        key = None if dropout is None else R.DropoutKey(dropout["seed"], dropout["step"], row_offset=m * b)
        _, loss, cache = R.forward(params, x[rows], y[rows], dropout=key)
        losses.append(loss)
        grads = R.backward(params, cache, accumulate=grads, mean_over=B * T)
    return math.fsum(losses) / K, grads


def cases_train():
    for cname, config, B, T, K, dropout in [("mh-k1", MH, 4, 16, 1, None), ("mh-k2", MH, 4, 16, 2, None),
                                            ("sh-k3", SH, 6, 11, 3, None),
                                            ("dropout-k4", DROP, 4, 16, 4, {"seed": 3, "step": 5}),
                                            ("dropout-k2-blocked", DROP, 6, 31, 2, {"seed": 1, "step": 0})]:
        params = hard.moved(R.init_params(config, seed=4), seed=5)
        x, y = tokens(config, B, T, 6), tokens(config, B, T, 7)
        loss, grads = step_gradient(params, x, y, K, dropout)
        outs = {"loss": (np.float64(loss), loss_cmp(F32)), **grads_cmp(grads, F32)}
        yield Case("train", "step-gradient", cname, f"one step's gradient as {K} micro-batch(es) of {B // K} rows, "
                   "summed in order, each the gradient of its share of the step's mean, dropout masks by row "
                   "offset (SPEC §micro-batches)", config=config, dtype="float32", inputs=dict(param_inputs(params), x=x, y=y),
                   args={"grad_accum": K, "dropout": dropout}, outputs=outs, flags=flags_of(config))
    stream = rng(51).integers(0, 40, size=4000, dtype=np.int64)
    stream = (stream // 2) * 2 + (np.arange(4000) % 2)  # some structure to learn
    for cname, config, S, B, T in [("mh", MH, 20, 4, 16), ("sh", SH, 12, 3, 11)]:
        params = R.init_params(config, seed=3)
        xs = np.empty((S, B, T), np.int64)
        ys = np.empty((S, B, T), np.int64)
        for s in range(S):
            xs[s], ys[s] = R.random_batch(stream % config.vocab_size, B, T, 7, s)
        kw = dict(base_lr=3e-3, warmup_steps=3, total_steps=S, schedule="cosine", min_lr=3e-4, max_norm=1.0,
                  beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
        losses = trajectory(R, params.copy(), xs, ys, kw)
        yield Case("train", "trajectory", cname, f"{S} training steps (forward, backward, clip, AdamW on the "
                   "cosine schedule) from init: the loss of every step (SPEC §training, §tolerances)", config=config, dtype="float32",
                   inputs=dict(param_inputs(params), x=xs, y=ys), args=kw,
                   outputs={"loss": (losses, _tol("rel", "TRAJECTORY_LOSS_RTOL"))}, flags=flags_of(config))


FAMILIES = {"config": "cases_config", "params": "cases_params", "tokenizer": "cases_tokenizer", "data": "cases_data",
            "layers": "cases_layers", "loss": "cases_loss", "model": "cases_model", "dropout": "cases_dropout",
            "optim": "cases_optim", "checkpoint": "cases_checkpoint", "logger": "cases_logger",
            "generate": "cases_generate", "train": "cases_train"}


def build_cases(components=None):
    """Every case of the set (or of the named components), in a fixed order."""
    for comp, family in FAMILIES.items():
        if components is None or comp in components:
            yield from globals()[family]()


# --- writing ---------------------------------------------------------------------------
def write_case(root: Path, case: Case) -> None:
    d = root / case.path
    d.mkdir(parents=True, exist_ok=False)
    (d / "case.json").write_text(json.dumps(case.case_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    st.write(d / "data.safetensors", case.tensors())
    for fn, data in case.files.values():
        (d / fn).write_bytes(data)
    for fn, data in case.out_files.items():
        (d / f"out.{fn}").write_bytes(data)


def build(root, progress=None, components=None, paths=None) -> dict:
    """Write the set into root/<SPEC_VERSION>/ (replacing it); return a summary.
    `components`, `paths`: only these components or case paths (the suite's own tests build small sets).
    The set is written into a temporary directory beside it and renamed into place when complete: a build
    that fails leaves the previous set, or none, never half a set."""
    start = time.perf_counter()
    final = Path(root) / SPEC_VERSION
    final.parent.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f".{SPEC_VERSION}.building-", dir=final.parent))
    out.chmod(0o777 & ~current_umask())  # an ordinary directory once renamed (mkdtemp makes it 0700)
    try:
        summary = _write_set(out, progress, components, paths)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{SPEC_VERSION}.replaced-", dir=final.parent))
        final.rename(old / SPEC_VERSION)
        out.rename(final)
        shutil.rmtree(old)
    else:
        out.rename(final)
    return dict(summary, dir=final, seconds=time.perf_counter() - start)


def _write_set(out: Path, progress, components, paths) -> dict:
    """The cases, index.json and SHA256SUMS written into the empty directory `out`."""
    entries = []
    seen = set()
    unknown = sorted(set(components or ()) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown components {unknown}: the set has {', '.join(FAMILIES)}")
    for case in build_cases(components):
        if paths is not None and case.path not in paths:
            continue
        if not all(NAME.fullmatch(part) for part in case.path.split("/")):
            raise AssertionError(f"case path {case.path!r}: each part must match {NAME.pattern} (SPEC §vectors-build)")
        if case.path in seen:
            raise AssertionError(f"duplicate case path {case.path}")
        seen.add(case.path)
        write_case(out, case)
        entries.append({"path": case.path, "component": case.component, "operation": case.operation,
                        "verdict": case.verdict, "optional": case.optional, "flags": sorted(set(case.flags))})
        if progress:
            progress(case.path)
    entries.sort(key=lambda e: e["path"])
    components: dict[str, int] = {}
    operations: dict[str, int] = {}
    for e in entries:
        components[e["component"]] = components.get(e["component"], 0) + 1
        op = f"{e['component']}/{e['operation']}"
        operations[op] = operations.get(op, 0) + 1
    index = {"format": INDEX_FORMAT, "spec_version": SPEC_VERSION, "cases": entries,
             "components": dict(sorted(components.items())), "operations": dict(sorted(operations.items()))}
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}" for p in files]
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"cases": len(entries), "components": components, "bytes": size}


def check(path) -> tuple[list[str], int]:
    """Problems with the set in `path` (DIR or DIR/<version>): SHA256SUMS, index.json against the cases,
    every case.json against the schema and its data file. Returns (problems, number of cases)."""
    import jsonschema

    from . import CASE_SCHEMA

    root = Path(path)
    if not (root / "index.json").is_file():
        root = root / SPEC_VERSION
    if not (root / "index.json").is_file():
        return [f"{path}: no vector set (no index.json in it or in {SPEC_VERSION}/, this suite's spec version); "
                "build one with `python -m conformance.vectors build DIR`"], 0
    problems: list[str] = []
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
        sums = (root / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        return [f"{root}: {exc}"], 0
    listed = set()
    for line in sums:
        digest, _, rel = line.partition("  ")
        listed.add(rel)
        try:
            if hashlib.sha256((root / rel).read_bytes()).hexdigest() != digest:
                problems.append(f"{rel}: sha256 differs from SHA256SUMS")
        except OSError as exc:
            problems.append(f"{rel}: {exc}")
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    for rel in sorted(on_disk - listed):
        problems.append(f"{rel}: not in SHA256SUMS")
    validator = jsonschema.Draft202012Validator(json.loads(CASE_SCHEMA.read_text(encoding="utf-8")))
    for entry in index.get("cases", []):
        where = root / entry["path"]
        try:
            case = json.loads((where / "case.json").read_text(encoding="utf-8"))
            tensors = st.read(where / "data.safetensors")
        except (OSError, ValueError) as exc:
            problems.append(f"{entry['path']}: {exc}")
            continue
        problems += [f"{entry['path']}/case.json: {e.message} at {'/'.join(map(str, e.path))}"
                     for e in validator.iter_errors(case)]
        if case.get("path") != entry["path"] or case.get("spec_version") != root.name:
            problems.append(f"{entry['path']}/case.json: path or spec_version do not match its place")
        if sorted(k[3:] for k in tensors if k.startswith("in.")) != sorted(case.get("inputs", [])):
            problems.append(f"{entry['path']}: data.safetensors inputs differ from case.json's list")
        for name, spec in case.get("expect", {}).get("outputs", {}).items():
            want = tensors.get(f"out.{name}")
            if want is None or st.dtype_name(want.dtype) != spec["dtype"] or list(want.shape) != spec["shape"]:
                problems.append(f"{entry['path']}: expected tensor out.{name} missing or not {spec['dtype']} "
                                f"{spec['shape']}")
        for role, fn in case.get("files", {}).items():
            if not (where / fn).is_file():
                problems.append(f"{entry['path']}: input file {fn} ({role}) missing")
        for fn in case.get("expect", {}).get("files", {}):
            if not (where / f"out.{fn}").is_file():
                problems.append(f"{entry['path']}: expected file out.{fn} missing")
    return problems, len(index.get("cases", []))
