"""A Python adapter: serves any implementation of the contract over the
adapter protocol (SPEC §adapter-protocol), so reference, fast and torch_impl can be judged
through the vectors exactly as a program in another language is.

    python -m conformance.vectors.adapter --impl reference|fast|torch_impl|my.module

Everything it computes goes through the implementation's public names
(`reference.__all__`); `reference` itself is used only to read case files
through the contract's own types when the implementation re-exports them.
Exceptions become the typed codes of SPEC §error-codes: the Python implementations
share their argument checks (reference.model.check_inputs, the checkpoint
reader), so their messages are classified here, in one table.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from . import PROTOCOL
from . import safetensors_io as st
from .loops import trajectory


class CaseError(Exception):
    """The operation refused its input: reply `error` with this code."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code


class Skip(Exception):
    """This case cannot run on this implementation: reply `skipped`."""


# ValueError messages of the Python implementations -> SPEC §error-codes codes, first match wins
INPUT_CODES = [
    (re.compile(r"outside \[0|out of range 0\.\."), "input.token-out-of-range"),
    (re.compile(r"more than block_size"), "input.sequence-too-long"),
    (re.compile(r"non-finite value"), "input.non-finite-param"),
]
CHECKPOINT_CODES = [
    (re.compile(r"magic .* but only 0 bytes remain|file is empty"), "checkpoint.bad-magic"),  # SPEC §error-codes: empty
    (re.compile(r"truncated file|bytes remain|needs \d+ bytes"), "checkpoint.truncated"),
    (re.compile(r"expected the magic|not a FESTE_CKPT file"), "checkpoint.bad-magic"),
    (re.compile(r"unsupported format version"), "checkpoint.bad-version"),
    (re.compile(r"expected the end of the file"), "checkpoint.trailing-bytes"),
    (re.compile(r"tensor \S+: (expected ndim|expected shape|numel)|n_blocks"), "checkpoint.bad-shape"),
    (re.compile(r"to be 0 or 1"), "checkpoint.bad-flag"),
    (re.compile(r"optimizer hyperparameters"), "checkpoint.bad-optimizer"),
    (re.compile(r"tokenizer"), "checkpoint.bad-tokenizer"),
    (re.compile(r"metadata"), "checkpoint.bad-metadata"),
    (re.compile(r"holds .* at index|every value must be finite"), "checkpoint.bad-value"),
    (re.compile(r"config"), "checkpoint.bad-config"),
]


def classify(message: str, table, default: str) -> str:
    for pattern, code in table:
        if pattern.search(message):
            return code
    return default


# --- reading a case ---------------------------------------------------------------
class Request:
    """One case directory, read once: its case.json, its tensors, its files."""

    def __init__(self, impl, case_dir: str, out_dir: str):
        self.impl = impl
        self.dir = Path(case_dir)
        self.out = Path(out_dir)
        self.case = json.loads((self.dir / "case.json").read_text(encoding="utf-8"))
        self.args = self.case["args"]
        data = self.dir / "data.safetensors"
        self.tensors = {k[3:]: v for k, v in st.read(data).items() if k.startswith("in.")} if data.exists() else {}
        self.dtype = np.float64 if self.case.get("dtype") == "float64" else np.float32
        self.results: dict[str, np.ndarray] = {}

    def file(self, role: str) -> bytes:
        return (self.dir / self.case["files"][role]).read_bytes()

    def config(self):
        return self.impl.Config(**self.case["config"])

    def params(self, prefix: str = "param"):
        """A Params of the case's config and dtype from the `in.<prefix>.<name>` tensors."""
        config = self.config()
        p = self.impl.Params(config, dtype=self.dtype)
        for name in p.names():
            p[name] = self.tensors[f"{prefix}.{name}"]
        return p

    def put(self, name: str, value) -> None:
        self.results[name] = np.asarray(value)

    def put_params(self, prefix: str, params) -> None:
        for name in params.names():
            self.put(f"{prefix}.{name}", np.array(params[name]))

    def write_file(self, name: str, data: bytes) -> None:
        (self.out / name).write_bytes(data)

    def finish(self) -> None:
        if self.results:
            st.write(self.out / "outputs.safetensors", {f"out.{k}": v for k, v in self.results.items()})


# --- operations (SPEC §operations) -----------------------------------------------------------
def op_config_validate(r: Request):
    try:
        r.impl.Config(**r.args["config"])
    except ValueError as exc:
        raise CaseError("config.invalid", str(exc)) from None


def op_params_table(r: Request):
    config = r.config()
    r.put("n_params", np.int64(r.impl.n_params(config)))
    for spec in r.impl.param_table(config):
        r.put(f"shape.{spec.name}", np.array(spec.shape, dtype=np.int64))
        r.put(f"init.{spec.name}", np.uint8({"zeros": 0, "ones": 1, "normal": 2}[spec.init]))
        r.put(f"std.{spec.name}", np.float64(spec.std))
        r.put(f"decayed.{spec.name}", np.uint8(spec.decayed))


def op_params_init(r: Request):
    r.put_params("param", r.impl.init_params(r.config(), seed=r.args["seed"]))


def _tokenizer(r: Request):
    try:
        return r.impl.Tokenizer.from_json(r.file("tokenizer"))
    except ValueError as exc:
        raise CaseError("tokenizer.invalid-json", str(exc)) from None


def op_tokenizer_train(r: Request):
    tok = r.impl.Tokenizer.train(r.file("text"), r.args["vocab_size"])
    r.put("merges", np.array(tok.merges, dtype=np.int64).reshape(-1, 2))
    r.write_file("tokenizer.json", tok.to_json().encode())


def op_tokenizer_encode(r: Request):
    r.put("ids", np.asarray(_tokenizer(r).encode(r.file("text")), dtype=np.int64))


def op_tokenizer_decode(r: Request):
    tok = _tokenizer(r)
    r.write_file("text.bin", tok.decode_bytes(r.tensors["ids"]))


def op_tokenizer_load(r: Request):
    r.write_file("tokenizer.json", _tokenizer(r).to_json().encode())


def op_data_split(r: Request):
    train, val = r.impl.train_val_split(r.tensors["tokens"], r.args["val_fraction"])
    r.put("train", np.asarray(train, np.int64))
    r.put("val", np.asarray(val, np.int64))


def op_data_sequential(r: Request):
    a = r.args
    B, T = a["batch_size"], a["seq_len"]
    loader = r.impl.TextDataLoader(r.tensors["tokens"], T, B, a["val_fraction"])
    loader.set_validation(a["validation"])
    xs, ys = [], []
    while (batch := loader.next_batch()) is not None:
        xs.append(batch[0])
        ys.append(batch[1])
    r.put("x", np.array(xs, dtype=np.int64).reshape(len(xs), B, T))
    r.put("y", np.array(ys, dtype=np.int64).reshape(len(ys), B, T))


def op_data_random_batch(r: Request):
    a = r.args
    x, y = r.impl.random_batch(r.tensors["tokens"], a["batch_size"], a["seq_len"], a["seed"], a["step"])
    r.put("x", np.asarray(x, np.int64))
    r.put("y", np.asarray(y, np.int64))


def op_layers_embedding(r: Request):
    t = r.tensors
    out, cache = r.impl.embedding_forward(t["tokens"], t["wte"], t["wpe"])
    dwte, dwpe = r.impl.embedding_backward(t["dout"], cache)
    r.put("out", out), r.put("dwte", dwte), r.put("dwpe", dwpe)


def op_layers_layernorm(r: Request):
    t = r.tensors
    out, cache = r.impl.layernorm_forward(t["x"], t["gamma"], t["beta"])
    dx, dgamma, dbeta = r.impl.layernorm_backward(t["dout"], cache)
    r.put("out", out), r.put("dx", dx), r.put("dgamma", dgamma), r.put("dbeta", dbeta)


def op_layers_linear(r: Request):
    t = r.tensors
    out, cache = r.impl.linear_forward(t["x"], t["w"], t.get("b"))
    dx, dw, db = r.impl.linear_backward(t["dout"], cache)
    r.put("out", out), r.put("dx", dx), r.put("dw", dw)
    if db is not None:
        r.put("db", db)


def op_layers_attention(r: Request):
    t = r.tensors
    out, cache = r.impl.attention_forward(t["q"], t["k"], t["v"], r.args["n_heads"])
    dq, dk, dv = r.impl.attention_backward(t["dout"], cache)
    r.put("out", out), r.put("dq", dq), r.put("dk", dk), r.put("dv", dv)


def op_layers_gelu(r: Request):
    out, cache = r.impl.gelu_forward(r.tensors["x"])
    r.put("out", out)
    r.put("dx", r.impl.gelu_backward(r.tensors["dout"], cache))


def op_loss_cross_entropy(r: Request):
    loss, cache = r.impl.cross_entropy_forward(r.tensors["logits"], r.tensors["targets"])
    r.put("loss", np.float64(loss))
    r.put("dlogits", r.impl.cross_entropy_backward(cache))


def _forward(r: Request, backward: bool):
    params = r.params()
    key = r.args.get("dropout")
    key = None if key is None else r.impl.DropoutKey(**key)
    try:
        logits, loss, cache = r.impl.forward(params, r.tensors["tokens"], r.tensors.get("targets"), dropout=key)
    except ValueError as exc:
        raise CaseError(classify(str(exc), INPUT_CODES, "input.invalid"), str(exc)) from None
    r.put("logits", logits)
    if loss is not None:
        r.put("loss", np.float64(loss))
    if backward:
        r.put_params("grad", r.impl.backward(params, cache))


def op_model_forward(r: Request):
    _forward(r, backward=False)


def op_model_backward(r: Request):
    _forward(r, backward=True)


op_model_baseline = op_model_forward


def op_dropout_philox(r: Request):
    r.put("out", np.asarray(r.impl.philox4x32(r.tensors["counter"], r.tensors["key"]), dtype=np.uint32))


def op_dropout_mask(r: Request):
    a = r.args
    mask = r.impl.dropout_mask(a["seed"], a["step"], a["layer"], a["site"], tuple(a["shape"]), a["p"],
                               row_offset=a["row_offset"])
    r.put("mask", np.asarray(mask, dtype=bool))


def op_optim_grad_norm(r: Request):
    r.put("norm", np.float64(r.impl.grad_norm(r.params("grad"))))


def op_optim_clip(r: Request):
    grads = r.params("grad")
    r.put("norm", np.float64(r.impl.clip_grad_norm(grads, r.args["max_norm"])))
    r.put_params("grad", grads)


def op_optim_adamw(r: Request):
    a = r.args
    params, grads = r.params(), r.params("grad")
    state = r.impl.adamw_init(params)
    state.m.data[:] = r.params("m").data
    state.v.data[:] = r.params("v").data
    state.step = a["step"]
    r.impl.adamw_step(params, grads, state, a["lr"], a["beta1"], a["beta2"], a["eps"], a["weight_decay"])
    r.put_params("param", params)
    r.put_params("m", state.m)
    r.put_params("v", state.v)
    r.put("step", np.int64(state.step))


def op_optim_lr(r: Request):
    a = r.args
    r.put("lr", np.array([r.impl.learning_rate(int(s), a["base_lr"], a["warmup_steps"], a["total_steps"],
                                               a["schedule"], a["min_lr"]) for s in r.tensors["steps"]], np.float64))


def op_checkpoint_write(r: Request):
    a = r.args
    params = r.params()
    opt = None
    if a["optimizer"] is not None:
        opt = r.impl.adamw_init(params)
        opt.m.data[:] = r.params("m").data
        opt.v.data[:] = r.params("v").data
        o = a["optimizer"]
        opt.step, opt.beta1, opt.beta2, opt.eps = o["step"], o["beta1"], o["beta2"], o["eps"]
    tok = _tokenizer(r) if "tokenizer" in r.case["files"] else None
    meta = dict(a["metadata"])
    if meta["best_val_loss"] is None:
        meta["best_val_loss"] = math.inf
    ck = r.impl.Checkpoint(r.config(), params, optimizer=opt, tokenizer=tok, metadata=meta)
    r.write_file("checkpoint.bin", r.impl.checkpoint_to_bytes(ck))


def op_checkpoint_read(r: Request):
    try:
        ck = r.impl.checkpoint_from_bytes(r.file("checkpoint"))
    except r.impl.CheckpointError as exc:
        raise CaseError(classify(str(exc), CHECKPOINT_CODES, "checkpoint.bad-value"), str(exc)) from None
    c = ck.config
    r.put("config", np.array([c.vocab_size, c.n_embd, c.n_heads, c.n_layers, c.block_size], np.int64))
    r.put("dropout_rate", np.float32(c.dropout_rate))
    r.put_params("param", ck.params)
    if ck.optimizer is not None:
        r.put_params("m", ck.optimizer.m)
        r.put_params("v", ck.optimizer.v)
        r.put("optimizer_step", np.int64(ck.optimizer.step))
        r.put("optimizer_hyper", np.array([ck.optimizer.beta1, ck.optimizer.beta2, ck.optimizer.eps], np.float32))
    r.put("metadata_step", np.int64(ck.metadata["step"]))
    r.put("best_val_step", np.int64(ck.metadata["best_val_step"]))
    r.put("best_val_loss", np.float64(ck.metadata["best_val_loss"]))
    if ck.tokenizer is not None:
        r.write_file("tokenizer.json", ck.tokenizer.to_json().encode())


def op_logger_header(r: Request):
    r.write_file("header.txt", (r.impl.CSV_HEADER + "\n").encode())


def op_logger_row(r: Request):
    r.write_file("row.txt", (r.impl.format_log_row(**r.args) + "\n").encode())


def op_generate_greedy(r: Request):
    ids = r.impl.generate(r.params(), r.tensors["prompt"], r.args["n_tokens"], temperature=0.0)
    r.put("ids", np.asarray(ids, np.int64))


def op_generate_sample(r: Request):
    a = r.args
    ids = r.impl.generate(r.params(), r.tensors["prompt"], a["n_tokens"], temperature=a["temperature"],
                          top_k=a["top_k"], seed=a["seed"])
    r.put("ids", np.asarray(ids, np.int64))


def op_train_trajectory(r: Request):
    r.put("loss", trajectory(r.impl, r.params(), r.tensors["x"], r.tensors["y"], r.args))


def op_train_step_gradient(r: Request):
    """The Python implementations' trainer code (feste/accumulate.py, the harness that drives all of them)."""
    import functools

    from feste.accumulate import Split, step_gradient

    a = r.args
    x, y = r.tensors["x"], r.tensors["y"]
    key = a.get("dropout")
    key = None if key is None else functools.partial(r.impl.DropoutKey, key["seed"], key["step"])
    loss, grads = step_gradient(r.impl, r.params(), x, y, Split(x.shape[0], 1, a["grad_accum"]), dropout=key)
    r.put("loss", np.float64(loss))
    r.put_params("grad", grads)


OPERATIONS = {name[3:].replace("_", "/", 1).replace("_", "-"): fn
              for name, fn in sorted(globals().items()) if name.startswith("op_")}


# --- timing (SPEC §adapter-protocol item 3, §step-benchmark) --------------------------------------------------
def time_steps(impl, cell: dict, steps: int, warmup: int) -> list[float]:
    """Seconds of each of `steps` training steps (forward, loss, backward, norm and clip, AdamW) on a
    fixed batch of the preset's model, after `warmup` untimed ones (compilation happens there)."""
    config = impl.preset(cell["preset"])
    B, T = cell["batch"], cell["seq_len"]
    params = impl.init_params(config, seed=0)
    state = impl.adamw_init(params)
    g = np.random.default_rng([0, 1])
    x = g.integers(0, config.vocab_size, size=(B, T), dtype=np.int64)
    y = g.integers(0, config.vocab_size, size=(B, T), dtype=np.int64)

    def step():
        _, _, cache = impl.forward(params, x, y)
        grads = impl.backward(params, cache)
        impl.clip_grad_norm(grads, 1.0)
        impl.adamw_step(params, grads, state, 1e-4)

    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


# --- the protocol loop -----------------------------------------------------------------------
def serve(impl, name: str, stdin=None, stdout=None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def send(msg: dict) -> None:
        stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
        stdout.flush()

    version = str(getattr(impl, "__version__", "unknown"))
    path = str(getattr(impl, "__file__", "") or "")
    send({"type": "hello", "protocol": PROTOCOL, "implementation": {"name": name, "version": version, "path": path},
          "operations": sorted(OPERATIONS)})
    for line in stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        kind, rid = msg.get("type"), msg.get("id")
        if kind == "bye":
            return 0
        if kind == "time":
            try:
                seconds = time_steps(impl, msg["cell"], msg["steps"], msg.get("warmup", 1))
            except Exception as exc:  # an unknown preset, say: report it, keep serving
                send({"type": "error", "id": rid, "code": "input.invalid", "message": f"{type(exc).__name__}: {exc}"})
                continue
            send({"type": "timing", "id": rid, "seconds": seconds})
            continue
        if kind != "run":
            print(f"adapter: unknown request {line.strip()!r}", file=sys.stderr)
            continue
        send(run_case(impl, msg["case"], msg["out"], rid))
    return 0


def run_case(impl, case_dir: str, out_dir: str, rid) -> dict:
    try:
        r = Request(impl, case_dir, out_dir)
        op = f"{r.case['component']}/{r.case['operation']}"
        fn = OPERATIONS.get(op)
        if fn is None:
            return {"type": "skipped", "id": rid, "reason": f"operation {op} not served"}
        fn(r)
        r.finish()
        return {"type": "ok", "id": rid}
    except CaseError as exc:
        return {"type": "error", "id": rid, "code": exc.code, "message": str(exc)}
    except Skip as exc:
        return {"type": "skipped", "id": rid, "reason": str(exc)}
    except ValueError as exc:  # the contract's refusals: typed by SPEC §errors's messages
        return {"type": "error", "id": rid, "code": classify(str(exc), INPUT_CODES, "input.invalid"),
                "message": str(exc)}
    except Exception as exc:  # any other refusal: the case's own check decides whether it was due
        traceback.print_exc(file=sys.stderr)
        return {"type": "error", "id": rid, "code": "input.invalid", "message": f"{type(exc).__name__}: {exc}"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.vectors.adapter",
        description="Serve a Python implementation of the contract over the adapter protocol (SPEC §adapter-protocol): "
                    "newline-delimited JSON requests on stdin, replies on stdout, logs on stderr.")
    parser.add_argument("--impl", default=os.environ.get("FESTE_IMPL", "reference"),
                        help="implementation module: reference, fast, torch_impl or a dotted path (default: "
                             "$FESTE_IMPL or reference)")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())
    try:
        impl = importlib.import_module(args.impl)
    except Exception as exc:  # one line naming the module (the runner shows the adapter's stderr), not a traceback
        parser.error(f"--impl {args.impl}: cannot import module {args.impl!r}: {type(exc).__name__}: {exc}")
    return serve(impl, args.impl)


if __name__ == "__main__":
    sys.exit(main())
