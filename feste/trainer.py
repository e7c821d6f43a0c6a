"""The trainer (SPEC §training), written once for every implementation.

`train(settings, impl=module)` takes the implementation as a parameter: it
calls only contract names on it (init_params, forward, backward,
clip_grad_norm, adamw_init, adamw_step, learning_rate, generate), so
`fast` (or a third-party module) trains with its own kernels through this
same loop. Data (random_batch, train_val_split), checkpoints, the run
directory and the CSV logs are shared containers.

Step semantics. "Step s" is the state after s AdamW updates. For
s = start, start+1, ..., end (max_steps, or stop_at if set):
    batch s = random_batch(train, B, T, seed, s)   (a pure function of (seed, s))
        cut into micro-batches of b rows, shared by the processes of `group`
        (SPEC §micro-batches: feste/accumulate.py fixes the order of every sum)
    loss, grads = forward/backward on batch s (dropout masks of DropoutKey(seed, s)
        when the config's dropout_rate > 0); norm = clip_grad_norm(grads)
    stop (TrainingDiverged) if loss or norm is not finite: nothing is updated
    if s is a checkpoint step (s % checkpoint_interval == 0, s > start): latest.ckpt,
        written only now that the state after s updates has given a finite loss
    if s % eval_interval == 0 or s == end: evaluate, log a row, maybe sample
    if s == end (or early stopping): stop
    if SIGINT or SIGTERM came (StopSignals; every process agrees): latest.ckpt, TrainingInterrupted
    adamw_step with learning_rate(s); one steps.csv row
A checkpoint holds the state after `metadata.step` updates, so a run resumed
from it continues at that step and makes exactly the same updates.
"""
from __future__ import annotations

import dataclasses
import filecmp
import functools
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reference.atomic_io import atomic_write
from .accumulate import SOLO, SetupCheck, Split, check_split, evaluate, step_gradient, together
from reference.checkpoint import Checkpoint, config_to_json, load_checkpoint, save_checkpoint
from reference.config import PRESETS, Config, preset
from reference.dropout import check_rate
from reference.logger import StepLogger, TrainingLogger, perplexity
from reference.optim import SCHEDULES
from reference.params import Params, n_params
from .rundir import (  # noqa: F401  (the file names are part of this module's interface)
    BEST, FINAL, LATEST, LOG_NAME, RUN_JSON, STEPS_NAME, RunDir, RunDirError, read_run_json,
)

# Settings a resumed run may change (SPEC §trainer): how long it runs, the
# learning-rate schedule (to recover from a divergence with a lower lr), and
# what is evaluated, sampled and saved when. Every other setting (model, data,
# batch order, AdamW betas and eps, the validation set) is fixed for the
# run's life, and so is every setting added later unless listed here.
RESUME_MAY_CHANGE = (
    "max_steps", "stop_at", "lr", "warmup_steps", "schedule", "min_lr", "grad_clip", "weight_decay",
    "eval_interval", "sample_interval", "sample_tokens", "sample_prompt", "sample_temperature", "sample_top_k",
    "checkpoint_interval", "patience",
    "corpus",  # another path is fine when the tokens are the same (checked by their sha256)
    "grad_accum",  # the micro-batch split: with the same micro-batch size the bytes do not change (SPEC §micro-batches)
    "run_dir", "resume", "overwrite",  # where and from what: not settings of the run itself
)


@dataclass
class TrainSettings:
    """Every knob of a training run (written to RUN_DIR/run.json)."""

    # --- model ---
    preset: str = "tiny"  # tiny, small or medium (SPEC §model); the sizes below override its fields
    n_embd: int | None = None  # C, if not the preset's
    n_heads: int | None = None  # NH, if not the preset's
    n_layers: int | None = None  # L, if not the preset's
    block_size: int | None = None  # longest context, if not the preset's
    vocab_size: int = 512  # tokenizer size to train, and the model's V
    dropout: float = 0.0  # dropout rate p at GPT-2's four sites (SPEC §dropout); fixed for the run's life (a resume keeps it)
    # --- data ---
    corpus: str | None = None  # a UTF-8 text file; None = the cached Shakespeare corpus
    val_fraction: float = 0.1  # last fraction of the tokens held out for validation
    batch_size: int = 16  # B
    seq_len: int = 64  # T, <= block_size
    grad_accum: int = 1  # K micro-batches per process: a step's B rows run as processes x K micro-batches (SPEC §micro-batches)
    # --- optimisation ---
    max_steps: int = 1000  # number of AdamW updates (the schedule's total_steps)
    stop_at: int | None = None  # stop early after this many updates, as if interrupted (resume later)
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 100  # linear warmup from 0 (SPEC §optimiser)
    schedule: str = "constant"  # after warmup: "constant" or "cosine"
    min_lr: float = 0.0  # cosine floor
    grad_clip: float = 1.0  # clip the global gradient norm to this
    weight_decay: float = 0.1  # AdamW decoupled decay on the 2-D weights
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW denominator epsilon
    # --- evaluation, samples, checkpoints ---
    eval_interval: int = 100  # evaluate and log every N steps (and at the last step)
    eval_batches: int = 8  # validation windows: the first eval_batches * B sequential windows
    sample_interval: int = 200  # put a generated sample in the log every M steps (a multiple of eval_interval to show)
    sample_tokens: int = 48  # tokens generated per sample
    sample_prompt: str = "To be, or not to be"  # prompt for the samples
    sample_temperature: float = 0.8  # sampling temperature (0 = greedy)
    sample_top_k: int | None = 40  # top-k for samples (None = all tokens)
    checkpoint_interval: int = 500  # write latest.ckpt every K steps (0 = never)
    patience: int | None = None  # stop after this many evaluations without a new best (None = never)
    seed: int = 0  # parameter init, batch order and samples
    run_dir: str | None = None  # run.json, logs, checkpoints; None = new runs/<preset>-<time>, runs/finetune-<time> with init_from (resume: the checkpoint's)
    resume: str | None = None  # a training checkpoint of a run directory (run.json beside it) to continue that run from; a copy elsewhere needs run_dir naming the run that holds its bytes
    init_from: str | None = None  # a new run (step 0, fresh AdamW) from these weights and tokenizer: a checkpoint or (command line) a Hugging Face GPT-2 directory
    overwrite: bool = False  # a new run may replace the run files of a non-empty run directory

    def validate(self) -> None:
        """ValueError naming the first bad setting."""
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        positive = ["vocab_size", "batch_size", "seq_len", "grad_accum", "max_steps", "eval_interval",
                    "eval_batches", "sample_interval", "sample_tokens"]
        optional_positive = ["n_embd", "n_heads", "n_layers", "block_size", "patience", "sample_top_k", "stop_at"]
        non_negative = ["warmup_steps", "checkpoint_interval", "seed"]
        for name in positive + optional_positive + non_negative:
            value = getattr(self, name)
            if value is None and name in optional_positive:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < (0 if name in non_negative else 1):
                raise ValueError(f"{name} must be {'>= 0' if name in non_negative else '>= 1'}, got {value}")
        if self.vocab_size < 256:
            raise ValueError(f"vocab_size must be >= 256 (the byte tokens), got {self.vocab_size}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"grad_accum {self.grad_accum} must divide batch_size {self.batch_size}: a step's rows "
                             "are cut into micro-batches of equal size (SPEC §micro-batches)")
        floats = {"lr": (0.0, None), "min_lr": (0.0, None), "grad_clip": (0.0, None), "weight_decay": (0.0, None),
                  "beta1": (0.0, 1.0), "beta2": (0.0, 1.0), "eps": (0.0, None), "sample_temperature": (0.0, None)}
        for name, (low, high) in floats.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or (high is not None and value >= high):
                raise ValueError(f"{name} must be a finite number in [{low}, {high if high else 'inf'}), got {value!r}")
        if self.grad_clip <= 0 or self.eps <= 0:
            raise ValueError(f"grad_clip and eps must be > 0, got {self.grad_clip}, {self.eps}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.stop_at is not None and self.stop_at > self.max_steps:
            raise ValueError(f"stop_at ({self.stop_at}) must not exceed max_steps ({self.max_steps})")
        if self.schedule == "cosine" and self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        try:
            p = check_rate(self.dropout)
        except ValueError as exc:
            raise ValueError(f"dropout: {exc}") from None
        if p > 0 and self.seed >= 2**64:
            raise ValueError(f"seed must be < 2^64 with dropout (it is the Philox key, SPEC §dropout), got {self.seed}")
        for name in ("corpus", "run_dir", "resume", "init_from"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, os.PathLike)) or not str(value)):
                raise ValueError(f"{name} must be a non-empty path or None, got {value!r}")
        if not isinstance(self.overwrite, bool):
            raise ValueError(f"overwrite must be True or False, got {self.overwrite!r}")
        if self.init_from is not None and self.resume is not None:
            raise ValueError("init_from starts a new run from given weights; resume continues a run from its own "
                             "checkpoint: give one of them")
        if self.overwrite and self.resume is not None:
            target = "" if self.run_dir is None else f" {self.run_dir}"
            raise ValueError(f"overwrite cannot be combined with resume: overwrite replaces the run files of the run "
                             f"directory{target} with a new run, while resume {self.resume} continues the run in "
                             f"the checkpoint's own directory {Path(self.resume).parent}; nothing was written")

    def model_config(self, vocab_size: int | None = None) -> Config:
        """The preset with the explicit sizes applied (ValueError if inconsistent)."""
        changes = {k: getattr(self, k) for k in ("n_embd", "n_heads", "n_layers", "block_size")
                   if getattr(self, k) is not None}
        changes["vocab_size"] = self.vocab_size if vocab_size is None else vocab_size
        changes["dropout_rate"] = self.dropout
        return preset(self.preset).replace(**changes)


MODEL_SIZES = ("n_embd", "n_heads", "n_layers", "block_size")  # the model's shape beyond vocab_size


def init_settings(settings: TrainSettings, config: Config) -> TrainSettings:
    """The settings of a run starting from a model of `config` (init_from): its
    sizes are the model's (n_embd, n_heads, n_layers, block_size filled in, so
    run.json records them; preset is then unused), its vocab_size the model's
    vocabulary. ValueError naming the first setting that contradicts the model."""
    for name in MODEL_SIZES:
        ours, theirs = getattr(settings, name), getattr(config, name)
        if ours is not None and ours != theirs:
            raise ValueError(f"{name} {ours} contradicts init_from {settings.init_from}, whose model has {name} "
                             f"{theirs}: the model's shape comes with its weights")
    if settings.vocab_size != config.vocab_size:
        raise ValueError(f"vocab_size {settings.vocab_size} contradicts init_from {settings.init_from}, whose model "
                         f"has vocab_size {config.vocab_size}: the tokenizer comes with the weights")
    if settings.seq_len > config.block_size:
        raise ValueError(f"seq_len {settings.seq_len} exceeds block_size {config.block_size} of init_from "
                         f"{settings.init_from}: the model has no position embedding beyond it")
    return dataclasses.replace(settings, **{name: getattr(config, name) for name in MODEL_SIZES})


def read_init(path, init: Checkpoint | None = None, notes: list | None = None) -> Checkpoint:
    """The weights (and tokenizer) a run with init_from=`path` starts from: `init`
    when the caller has read them, else `path` read here: a Hugging Face GPT-2
    directory through feste.hf.import_hf (its notes appended to `notes`), or a
    FESTE_CKPT file. ValueError when they cannot start a run: no tokenizer, or a
    vocabulary other than the tokenizer's."""
    if init is None:
        if Path(path).is_dir():
            from .hf import import_hf  # needs safetensors (the interop extra: hf.InteropMissing, a ValueError)

            init = import_hf(path, notes=notes)
        else:
            init = load_checkpoint(path)
    if not isinstance(init, Checkpoint):
        raise ValueError(f"init must be a Checkpoint, got {type(init).__name__}")
    if init.tokenizer is None:
        raise ValueError(f"init_from {path} has no tokenizer: fine-tuning encodes the corpus with the tokenizer the "
                         "weights were trained with (export or import the model with its tokenizer.json)")
    mismatch = vocabulary_mismatch(init)
    if mismatch:
        raise ValueError(f"init_from {path}: {mismatch}")
    return init


def vocabulary_mismatch(checkpoint: Checkpoint) -> str | None:
    """Why `checkpoint`'s model and tokenizer cannot be used together, or None: a
    model whose vocab_size is not its tokenizer's size (FESTE_CKPT allows a smaller
    tokenizer, SPEC §checkpoint) would produce ids the tokenizer cannot decode.
    Training from it (read_init) and `feste generate` refuse it before any work."""
    if checkpoint.tokenizer is None or checkpoint.tokenizer.vocab_size == checkpoint.config.vocab_size:
        return None
    return (f"the model's vocab_size {checkpoint.config.vocab_size} differs from its tokenizer's "
            f"{checkpoint.tokenizer.vocab_size} tokens (the model would produce ids the tokenizer cannot decode)")


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm stopped being finite; nothing was updated at `step`."""

    def __init__(self, message: str, step: int, last_checkpoint: str | None):
        super().__init__(message)
        self.step = step
        self.last_checkpoint = last_checkpoint


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run (SPEC §trainer): `signum`, the `step` it stopped
    at (None: before training started) and the `checkpoint` that resumes it (None:
    nothing to resume). A KeyboardInterrupt, so code that stops on Ctrl-C stops on it;
    `exit_code` is the shell's convention, 128 + signum (130, 143)."""

    def __init__(self, message: str, signum: int, step: int | None = None, checkpoint: str | None = None):
        super().__init__(message)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # what ends a run cleanly (a scheduler's preemption is SIGTERM)
FORCE_AFTER = 1.0  # seconds: a second signal this long after the first stops at once (not a duplicate delivery)


class StopSignals:
    """SIGINT and SIGTERM while a run is in progress (SPEC §trainer), as a context manager.

    Outside the training loop a signal raises TrainingInterrupted at once (nothing
    is lost). Inside it (`deferred`), the first one is recorded in `signum` and the
    loop stops at its next step boundary, writing latest.ckpt; another one at least
    FORCE_AFTER seconds later raises at once (the same key press delivered twice, by
    the terminal to the process group and by mpiexec to its processes, is one
    request). A signal whose disposition is SIG_IGN on entry stays ignored: a job
    started with `&` or `nohup` was told not to stop on the shell's Ctrl-C. Signal
    handlers exist only in the main thread: elsewhere this does nothing."""

    def __init__(self):
        self.signum: int | None = None
        self.deferred = False
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) != signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._first_at = signum, now
            if self.deferred:
                return
        elif self.deferred and now - self._first_at < FORCE_AFTER:
            return
        raise TrainingInterrupted(f"stopped by {signal.Signals(signum).name}", signum)

    def agreed(self, group) -> int | None:
        """The signal every process of `group` stops for (the first rank's that
        received one), or None; a collective call with more than one process."""
        if group.size == 1:
            return self.signum
        mine = np.array([self.signum or 0], dtype=np.int64)
        received = [int(v) for v in group.allgather(mine)[:, 0] if v]
        return received[0] if received else None


@dataclass
class TrainResult:
    config: Config
    params: object  # the final Params
    optimizer: object  # the final AdamWState
    tokenizer: object | None
    step: int  # completed AdamW updates
    best_val_loss: float
    best_val_step: int
    stop_reason: str  # "max_steps", "stop_at" or "early_stopping"
    history: list[dict] = field(default_factory=list)  # the logged rows of this call
    run_dir: Path | None = None
    checkpoints: dict[str, Path] = field(default_factory=dict)  # "best", "latest", "final" -> path
    elapsed: float = 0.0  # wall seconds of this call


# --- helpers -------------------------------------------------------------------
def _write_json(path: Path, doc: dict) -> None:
    atomic_write(path, (json.dumps(doc, indent=2, default=str) + "\n").encode("utf-8"))


def validation_windows(val_tokens: np.ndarray, seq_len: int, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n_windows` sequential windows of the validation tokens
    (starts 0, T, 2T, ...): inputs and targets, int64 [N, T]; fewer if the split is short."""
    T = seq_len
    available = (len(val_tokens) - 1) // T
    if available < 1:
        raise ValueError(f"the validation split has {len(val_tokens)} tokens; need at least seq_len + 1 = {T + 1}")
    n = min(n_windows, available)
    starts = np.arange(n) * T  # [N]
    index = starts[:, None] + np.arange(T)[None, :]  # [N, T]
    val = np.asarray(val_tokens, dtype=np.int64)
    return val[index], val[index + 1]


def console_line(step: int, elapsed: float, lr: float, loss: float, val: float) -> str:
    """`Step  200 | Time:   5400.0s | LR: 0.000060 | Loss: 5.89 | Val: 5.91 | PPL: 368.7` (PPL = exp(val))."""
    return (f"Step {step:4d} | Time: {elapsed:8.1f}s | LR: {lr:.6f} | Loss: {loss:.2f} | "
            f"Val: {val:.2f} | PPL: {perplexity(val):5.1f}")


def _sample_text(impl, params, tokenizer, settings: TrainSettings) -> str:
    if tokenizer is None:
        return ""
    prompt = np.asarray(tokenizer.encode(settings.sample_prompt), dtype=np.int64)
    if prompt.size == 0:
        return ""
    ids = impl.generate(params, prompt[-params.config.block_size:], settings.sample_tokens,
                        settings.sample_temperature, settings.sample_top_k, settings.seed)
    return tokenizer.decode(ids)


def load_tokens(settings: TrainSettings, tokenizer=None, progress: bool = True, tokenizer_cls=None):
    """(tokens, tokenizer): the corpus (settings.corpus or the cached Shakespeare
    corpus) encoded with `tokenizer`, which is trained first if None (with
    `tokenizer_cls`, default reference.Tokenizer: implementations must agree on merges)."""
    from reference.corpus import load_corpus
    from reference.tokenizer import Tokenizer

    text = load_corpus(settings.corpus)
    if len(text) == 0:
        raise ValueError(f"the corpus {settings.corpus or '(Shakespeare)'} is empty")
    if tokenizer is None:
        tokenizer = (tokenizer_cls or Tokenizer).train(text, settings.vocab_size, progress=progress)
    return np.asarray(tokenizer.encode(text), dtype=np.int64), tokenizer


def tokens_sha256(tokens: np.ndarray) -> str:
    """sha256 of the token stream as little-endian int64 (recorded in run.json: a
    resumed run must train on the same tokens), hashed in slices (no full copy)."""
    digest = hashlib.sha256()
    for start in range(0, len(tokens), 1 << 20):
        digest.update(np.ascontiguousarray(tokens[start:start + (1 << 20)], dtype="<i8").tobytes())
    return digest.hexdigest()


def training_memory_bytes(config: Config, batch_size: int, seq_len: int) -> int:
    """A lower bound of what one training step needs, in bytes (float32): parameters,
    gradients and the two AdamW moments (4 copies of n_params), plus the reference
    forward's cache (SPEC §activation-memory, L (16C + 2 + NH T) + 2C + 1 + V elements per
    token) and the logits (V per token) for B*T tokens."""
    C, L, V, NH, T = config.n_embd, config.n_layers, config.vocab_size, config.n_heads, seq_len
    per_token = L * (16 * C + 2 + NH * T) + 2 * C + 1 + 2 * V
    return 4 * (4 * n_params(config) + batch_size * T * per_token)


def machine_memory_bytes() -> int | None:
    """This machine's physical memory, or the cgroup (container) limit if lower; None if unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    if total is not None and total <= 0:  # sysconf's -1 for indeterminate: no physical size
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = int(text) if total is None else min(total, int(text))
    return total if total and total > 0 else None


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def check_fits_in_memory(config: Config, batch_size: int, seq_len: int) -> None:
    """ValueError, before anything is allocated, if training `config` at B x T needs
    more memory than the machine has (`training_memory_bytes`, `machine_memory_bytes`)."""
    need, have = training_memory_bytes(config, batch_size, seq_len), machine_memory_bytes()
    if have is not None and need > have:
        raise ValueError(
            f"the model {config_to_json(config)} has {n_params(config):,} parameters: training it at "
            f"batch_size={batch_size}, seq_len={seq_len} needs at least {_gib(need)} (parameters, gradients, "
            f"AdamW moments, activations), more than this machine's {_gib(have)}")


def _params_finite(params) -> bool:
    """All parameters finite: their float64 sum is (float32 values cannot overflow it)."""
    return math.isfinite(float(np.sum(params.data, dtype=np.float64)))


def _same_bytes(a: Path, b: Path) -> bool:
    """Whether regular files a and b hold the same bytes (False when b is missing or not a regular file)."""
    try:
        return b.is_file() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def resume_run_dir(settings: TrainSettings) -> Path:
    """The directory of the run that `settings.resume` continues (SPEC §run-directories), or
    RunDirError naming the checkpoint and the directory it may not go to.

    A checkpoint in a run directory (its real file has a run.json beside it)
    belongs to that run: `run_dir` may only name that same directory. A
    checkpoint outside any run directory (a copy) needs `run_dir`, one of whose
    checkpoints (latest, best, final) must have its bytes."""
    resume = Path(settings.resume)
    home = Path(os.path.realpath(resume)).parent  # where the file really lives
    run_dir = None if settings.run_dir is None else Path(settings.run_dir)
    if (home / RUN_JSON).is_file():
        if resume.parent.is_dir() and os.path.samefile(resume.parent, home):
            home = resume.parent  # named as the user named it
        if run_dir is None:
            return home
        if not (run_dir.is_dir() and os.path.samefile(run_dir, home)):
            raise RunDirError(
                f"cannot resume {resume} in {run_dir}: the checkpoint belongs to the run in {home} (that run's "
                f"run.json is beside it) and a resumed run continues its own run, never another directory "
                f"(SPEC §run-directories); nothing was written to either. To continue it, leave out --run-dir (or name {home}); "
                f"to continue it elsewhere, copy the whole directory {home} and resume from the copy")
        return run_dir
    if run_dir is None:
        return resume.parent  # read_run_json says that run.json is missing
    if not (run_dir / RUN_JSON).is_file():
        raise RunDirError(
            f"cannot resume {resume} in {run_dir}: neither the checkpoint's directory {resume.parent} nor {run_dir} "
            f"holds a run.json, and a resumed run continues the run its checkpoint came from (SPEC §run-directories); nothing "
            "was written. Name that run's directory with --run-dir, or start a new run without --resume")
    if not any(_same_bytes(resume, run_dir / name) for name in (LATEST, BEST, FINAL)):
        raise RunDirError(
            f"cannot resume {resume} in {run_dir}: the checkpoint lies outside any run directory (no run.json beside "
            f"it in {resume.parent}) and none of the checkpoints of {run_dir} ({LATEST}, {BEST}, {FINAL}) has its "
            "bytes, so nothing shows that it came from that run (its logs cannot: runs of the same model and data "
            "share their first evaluations); a resumed run continues only its own run (SPEC §run-directories), "
            f"nothing was written. If it is that run's, copy it into {run_dir} and resume from the copy there")
    return run_dir


def _check_resume(settings: TrainSettings, previous: dict, checkpoint: Checkpoint, run_dir: Path) -> dict:
    """Refuse a resume that would not continue the run recorded in run_dir/run.json;
    returns {setting: [old, new]} for the settings that change (RESUME_MAY_CHANGE)."""
    where = run_dir / RUN_JSON
    try:
        run_config = Config(**previous["config"])
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{where}: invalid config: {exc}") from None
    if config_to_json(run_config) != config_to_json(checkpoint.config):
        raise ValueError(
            f"{settings.resume} does not belong to the run in {run_dir}: its config "
            f"{config_to_json(checkpoint.config)} differs from the run's {config_to_json(run_config)}")
    saved, defaults = previous["settings"], TrainSettings()
    fixed, changed = [], {}
    for f in dataclasses.fields(TrainSettings):
        old, new = saved.get(f.name, getattr(defaults, f.name)), getattr(settings, f.name)
        if f.name in ("run_dir", "resume", "overwrite", "stop_at", "init_from") or old == new:  # per call
            continue
        if f.name in RESUME_MAY_CHANGE:
            changed[f.name] = [old, new]
        else:
            fixed.append(f"{f.name} {new!r} (the run has {old!r})")
    if fixed:
        may = ", ".join(n for n in RESUME_MAY_CHANGE if n not in ("run_dir", "resume", "overwrite"))
        raise ValueError(
            f"cannot resume the run in {run_dir} with a different {'; '.join(fixed)}: the model, the data, the "
            f"batch order and the optimizer's moments are fixed for a run's life (SPEC §trainer). A resumed "
            f"run may change only {may}; start a new run for anything else")
    state = checkpoint.optimizer
    for name in ("beta1", "beta2", "eps"):
        if np.float32(getattr(settings, name)) != np.float32(getattr(state, name)):
            raise ValueError(f"{settings.resume}: AdamW {name} {getattr(state, name)!r} in the checkpoint differs "
                             f"from the run's {getattr(settings, name)!r}")
    start = int(checkpoint.metadata["step"])
    end = settings.max_steps if settings.stop_at is None else settings.stop_at
    if start > end:
        raise ValueError(f"the checkpoint is at step {start}, beyond the last step {end} of this run")
    return changed


# --- the loop --------------------------------------------------------------------
def train(settings: TrainSettings, tokens=None, tokenizer=None, impl=None, progress: bool = True,
          printer=None, group=None, init: Checkpoint | None = None) -> TrainResult:
    """Train (or resume) a model; see the module docstring for the exact step semantics.

    tokens: the whole token stream (int array); None = load the corpus and
    tokenize it (training a tokenizer of settings.vocab_size unless `tokenizer`
    is given; on resume the checkpoint's tokenizer). impl: the implementation
    module (default `reference`). progress: a progress bar on stderr when it is
    a terminal. printer: called with each console line (default: print through
    tqdm so the progress bar stays intact). group: the processes sharing each
    step (SPEC §micro-batches; feste.distributed.MPIGroup under mpiexec), None = this
    process alone; every process calls train with the same arguments, and
    rank 0 alone writes files and prints. init: with settings.init_from, the
    Checkpoint it names when the caller has read it (None = read it here).
    Raises ValueError for bad settings or data (and a resume that would change
    the run), RunDirError when the run directory is locked by another trainer,
    belongs to another run or lacks its run.json, CheckpointError for a bad
    resume file, TrainingDiverged when the loss or gradient norm is not finite.
    With a group, a failure during setup on any process, and a divergence,
    are raised by every process together (feste.accumulate.together).
    """
    if impl is None:
        import reference as impl
    group = SOLO if group is None else group
    with StopSignals() as stops:
        return _train(settings, tokens, tokenizer, impl, progress, printer, group, stops, init)


def _train(settings, tokens, tokenizer, impl, progress, printer, group, stops: StopSignals,
           init: Checkpoint | None) -> TrainResult:
    """train() with SIGINT and SIGTERM handled by `stops`."""
    setup = SetupCheck(group)
    run = None
    try:
        if not isinstance(settings, TrainSettings):
            raise ValueError(f"settings must be a TrainSettings, got {type(settings).__name__}")
        settings.validate()
        split = Split(settings.batch_size, group.size, settings.grad_accum)
        check_split(impl, split)
        T = settings.seq_len
        checkpoint = None
        if settings.resume is None:  # catch inconsistent or absurd sizes before the (slow) corpus work
            if settings.init_from is not None:  # a new run from given weights: the model is theirs
                init = read_init(settings.init_from, init)
                settings = init_settings(settings, init.config)
                if tokenizer is not None and tokenizer.to_json() != init.tokenizer.to_json():
                    raise ValueError(f"the tokenizer given differs from init_from {settings.init_from}'s, the one "
                                     "its weights were trained with")
                tokenizer = init.tokenizer
            fresh_config = settings.model_config()
            if T > fresh_config.block_size:
                raise ValueError(f"seq_len={T} exceeds the model's block_size={fresh_config.block_size}")
            check_fits_in_memory(fresh_config, split.micro_batch, T)
        else:
            checkpoint = load_checkpoint(settings.resume)
            if checkpoint.optimizer is None:
                raise ValueError(f"{settings.resume} is an inference-only checkpoint: resuming needs a training "
                                 "checkpoint (with optimizer state); init_from (--init-from) starts a new run from "
                                 "its weights")
        # the run directory is locked before the corpus work, so a second trainer stops at once
        run_path = settings.run_dir
        if checkpoint is not None:
            # before locking, so that a refused resume touches nothing (checked again once locked)
            run_path = resume_run_dir(settings)
            _check_resume(settings, read_run_json(run_path), checkpoint, run_path)
        if group.rank == 0:  # rank 0 alone owns the run directory (SPEC §micro-batches)
            run = RunDir.claim(run_path, settings.preset if settings.init_from is None else "finetune",
                               resume=checkpoint is not None,
                               overwrite=settings.overwrite)
        else:
            run = _Follower(run_path)
        return _train_in(run, settings, checkpoint, tokens, tokenizer, impl, progress, printer, group, split,
                         setup, stops, None if settings.init_from is None else init)
    except BaseException as exc:
        if isinstance(exc, TrainingInterrupted) and exc.step is None:  # before training: what resumes is the input
            exc.checkpoint = getattr(settings, "resume", None)
            exc.args = (f"{exc} before training started" + ("" if exc.checkpoint else " (nothing to resume)"),)
        if run is not None:
            run.abandon()  # a directory this call created and never wrote to does not stay behind
        setup.failed(exc)  # during setup: every process stops together; later: re-raised as it is
        raise
    finally:
        if run is not None:
            run.release()


class _Follower:
    """The run directory as a process other than rank 0 sees it: never
    claimed, locked or written; its path is rank 0's once setup is agreed."""

    def __init__(self, path):
        self.path = None if path is None else Path(path)
        self.removed_temps: list[Path] = []

    def abandon(self) -> None:
        pass

    def release(self) -> None:
        pass


class _Nowhere:
    """What a process other than rank 0 writes its logs to."""

    def log(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def last_elapsed(self) -> float:
        return 0.0


def _train_in(run, settings: TrainSettings, checkpoint, tokens, tokenizer, impl, progress, printer, group,
              split: Split, setup: SetupCheck, stops: StopSignals, init: Checkpoint | None = None) -> TrainResult:
    """train() inside its locked run directory (rank 0's; the others follow it), in phases:
    what the run trains on and starts from, checked by every process before anything is
    written (_read_tokens, _starting_point, _split_tokens); the run's files (_run_doc and
    the loggers); then the optimiser steps (_Loop.run)."""
    lead = group.rank == 0
    printer = _console(printer, lead)
    previous, changed = None, {}
    if checkpoint is not None:
        previous = read_run_json(run.path)
        changed = _check_resume(settings, previous, checkpoint, run.path)
        if tokenizer is None:
            tokenizer = checkpoint.tokenizer
    tokens, tokenizer, digest = _read_tokens(settings, tokens, tokenizer, impl, progress, previous, run.path)
    start = _starting_point(settings, checkpoint, impl, init)
    data = _split_tokens(settings, tokens, tokenizer, digest, start.config, impl)
    b = split.micro_batch
    if previous is not None:
        was = previous.get("micro_batch", settings.batch_size)
        if was != b:
            printer(f"note: micro-batches of {b} rows where the run had {was}: the run continues correctly, but not "
                    f"bit for bit as it would have (the gradient's sums are cut differently, SPEC §micro-batches)")
    running = None if group.size == 1 else Params(start.config, dtype=start.params.data.dtype)  # the relay's sum
    # every process has set up (nothing is written before): each learns rank 0's run directory
    run_dir = Path(setup.passed(str(run.path))[0])

    # --- run files (rank 0) ---
    if lead:
        _write_json(run_dir / RUN_JSON, _run_doc(settings, previous, checkpoint, changed, run_dir, start, data, impl,
                                                 group, b))
        logger = TrainingLogger(run_dir / LOG_NAME, truncate_from=start.step)
        steps_log = StepLogger(run_dir / STEPS_NAME, truncate_from=start.step)
    else:
        logger = steps_log = _Nowhere()

    loop = _Loop(settings, impl, group, split, running, run_dir, checkpoint, start, data, logger, steps_log, printer)
    printer(f"Run directory: {run_dir}" + (f" (resumed at step {start.step})" if checkpoint is not None else "")
            + (f" (from the weights of {settings.init_from})" if init is not None else ""))
    for path in run.removed_temps:
        printer(f"removed {path.name}, left by an interrupted write")
    return loop.run(stops, progress and lead)


def _console(printer, lead: bool):
    """Where console lines go: `printer`, else through tqdm (the progress bar stays intact);
    nowhere on processes other than rank 0."""
    from tqdm.auto import tqdm

    if not lead:
        def printer(line):
            pass
    elif printer is None:
        def printer(line):
            tqdm.write(line, file=sys.stdout)
    return printer


def _read_tokens(settings: TrainSettings, tokens, tokenizer, impl, progress, previous: dict | None, run_dir):
    """(tokens, tokenizer, sha256): the token stream given, or the corpus loaded and
    encoded (training a tokenizer if there is none); ValueError if it is not a 1-D integer
    array, or if a resumed run's tokens differ from those recorded in its run.json."""
    if tokens is None:
        tokens, tokenizer = load_tokens(settings, tokenizer, progress=progress,
                                        tokenizer_cls=getattr(impl, "Tokenizer", None))
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens must be a 1-D integer array, got shape {tokens.shape}, dtype {tokens.dtype}")
    digest = tokens_sha256(tokens)
    if previous is not None and previous.get("tokens_sha256", digest) != digest:
        raise ValueError(f"cannot resume the run in {run_dir}: its tokens differ from the run's ({len(tokens):,} "
                         f"tokens, sha256 {digest[:12]}..., the run has {previous.get('tokens'):,} tokens, sha256 "
                         f"{previous['tokens_sha256'][:12]}...): the corpus or the tokenizer changed")
    return tokens, tokenizer, digest


@dataclass
class _Start:
    """What one call of train() starts from: the state after `step` AdamW updates and the
    best regular validation loss so far (a new run: step 0, none yet)."""

    config: Config
    params: object  # Params
    state: object  # AdamWState
    step: int
    best_val: float
    best_step: int


def _starting_point(settings: TrainSettings, checkpoint, impl, init: Checkpoint | None) -> _Start:
    """The resumed checkpoint's state, or a new run's: init_params of the run's seed, or
    the weights of init_from; a fresh AdamW state."""
    if checkpoint is not None:
        return _Start(checkpoint.config, checkpoint.params, checkpoint.optimizer,
                      int(checkpoint.metadata["step"]), float(checkpoint.metadata["best_val_loss"]),
                      int(checkpoint.metadata["best_val_step"]))
    config = settings.model_config(settings.vocab_size)
    if init is None:
        params = impl.init_params(config, seed=settings.seed)
    else:  # the given weights, under this run's dropout rate (a training setting, not a weight)
        params = Params(config, init.params.data.astype(np.float32, copy=True))
    return _Start(config, params, impl.adamw_init(params), 0, math.inf, 0)


@dataclass
class _Data:
    """The tokens a run trains on and the validation set it is judged by."""

    tokens: np.ndarray  # the whole stream
    digest: str  # its tokens_sha256
    tokenizer: object | None  # what encoded it (None: tokens given without one)
    train: np.ndarray  # the first part: random_batch draws from it
    val: np.ndarray  # the held-out part
    windows: tuple[np.ndarray, np.ndarray]  # the validation windows: inputs, targets [N, T]


def _split_tokens(settings: TrainSettings, tokens, tokenizer, digest: str, config: Config, impl) -> _Data:
    """The train/validation split (the implementation's own train_val_split when it has
    one: they must agree exactly, SPEC §data) and the validation windows; ValueError when
    the tokens, the tokenizer or seq_len do not fit the model, or a split is too short."""
    from reference import data

    T = settings.seq_len
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= config.vocab_size):
        raise ValueError(f"tokens hold ids outside [0, vocab_size={config.vocab_size})")
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens, more than the model's "
                         f"vocab_size {config.vocab_size}")
    if T > config.block_size:
        raise ValueError(f"seq_len={T} exceeds the model's block_size={config.block_size}")
    train_tokens, val_tokens = getattr(impl, "train_val_split", data.train_val_split)(tokens, settings.val_fraction)
    if len(train_tokens) < T + 1:
        raise ValueError(f"the training split has {len(train_tokens)} tokens; need at least seq_len + 1 = {T + 1}")
    windows = validation_windows(val_tokens, T, settings.eval_batches * settings.batch_size)
    return _Data(tokens, digest, tokenizer, train_tokens, val_tokens, windows)


def _run_doc(settings: TrainSettings, previous: dict | None, checkpoint, changed: dict, run_dir: Path,
             start: _Start, data: _Data, impl, group, micro_batch: int) -> dict:
    """run.json (SPEC §run-directories): the settings and the data of the run, how it
    began, and one entry per resume (the step, the checkpoint and what changed)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    resumes = [] if previous is None else list(previous.get("resumes", []))
    if checkpoint is not None:
        resumes.append({"step": start.step, "checkpoint": str(settings.resume), "at": now, "changed": changed})
    recorded = dataclasses.replace(settings, run_dir=str(run_dir))
    if previous is not None:  # how the run began stays recorded across its resumes
        recorded = dataclasses.replace(recorded, init_from=previous["settings"].get("init_from"))
    return {
        "settings": dataclasses.asdict(recorded),
        "config": dataclasses.asdict(start.config),
        "n_params": int(start.params.data.size),
        "impl": getattr(impl, "__name__", str(impl)),
        "tokens": int(data.tokens.size), "tokens_sha256": data.digest,
        "train_tokens": int(len(data.train)), "val_tokens": int(len(data.val)),
        "validation_windows": int(len(data.windows[0])),
        "started": now if previous is None else previous.get("started", now),
        "resumes": resumes,
        "processes": group.size, "grad_accum": settings.grad_accum, "micro_batch": micro_batch,
    }


class _Loop:
    """The optimiser steps of one train() call (the module docstring's step semantics),
    from start.step to `end`, and the checkpoints and log rows they write."""

    def __init__(self, settings: TrainSettings, impl, group, split: Split, running, run_dir: Path, checkpoint,
                 start: _Start, data: _Data, logger, steps_log, printer):
        from reference import data as spec_data

        self.settings, self.impl, self.group, self.split, self.running = settings, impl, group, split, running
        self.lead = group.rank == 0
        self.run_dir, self.resumed, self.data = run_dir, checkpoint is not None, data
        self.logger, self.steps_log, self.printer = logger, steps_log, printer
        # batches from the implementation when it has its own (they must agree exactly, SPEC §data)
        self.random_batch = getattr(impl, "random_batch", spec_data.random_batch)
        self.config, self.params, self.state = start.config, start.params, start.state
        self.start, self.best_val, self.best_step = start.step, start.best_val, start.best_step
        self.end = settings.max_steps if settings.stop_at is None else settings.stop_at  # the last step of this call
        self.stop_reason = "max_steps" if self.end == settings.max_steps else "stop_at"
        self.paths = {"best": run_dir / BEST, "latest": run_dir / LATEST, "final": run_dir / FINAL}
        self.written: dict[str, Path] = {}  # kind -> path, in the order last written (by rank 0)
        self.latest_step = None  # the step latest.ckpt holds, once this call wrote it
        # evaluations since the last new best, as the uninterrupted run would count them
        self.stale = sum(1 for e in range(self.best_step + 1, self.start) if e % settings.eval_interval == 0) \
            if self.start else 0
        self.history: list[dict] = []  # the logged rows of this call
        # wall time continues across resumes: the per-step record has the time after every step
        self.elapsed0 = steps_log.last_elapsed() if self.start else 0.0
        if self.start and self.elapsed0 == 0.0:
            self.elapsed0 = logger.last_elapsed()
        self.t0 = time.perf_counter()  # reset when the steps begin

    # --- the end of the run ---
    def run(self, stops: StopSignals, progress: bool) -> TrainResult:
        """Every step of this call, then final.ckpt; TrainingInterrupted or TrainingDiverged
        if a signal or a non-finite value stops it first. The logs are closed however it ends."""
        from tqdm.auto import tqdm

        self.t0 = time.perf_counter()
        bar = tqdm(total=self.end, initial=self.start, disable=None if progress else True, unit="step",
                   dynamic_ncols=True, file=sys.stderr, leave=False)
        step = self.start
        stops.deferred = True  # from here a signal stops the run at a step boundary, with latest.ckpt written
        try:
            while not self.step(step, stops):
                step += 1
                bar.update(1)
            self.save("final", step)
        except TrainingInterrupted as exc:
            if exc.step is None:  # a second signal, forced: the step in progress is abandoned
                good = self.last_good(step)
                raise TrainingInterrupted(f"{exc} at step {step} (forced by a second signal)"
                                          + (f"; {good} resumes the run" if good else "; nothing to resume"),
                                          exc.signum, step, good) from None
            raise
        finally:
            stops.deferred = False
            bar.close()
            self.logger.close()
            self.steps_log.close()
        return TrainResult(self.config, self.params, self.state, self.data.tokenizer, step, self.best_val,
                           self.best_step, self.stop_reason, self.history, self.run_dir, self.written,
                           time.perf_counter() - self.t0)

    def elapsed(self, now: float | None = None) -> float:
        """Seconds of training of the whole run at `now` (default: this moment): the
        resumed run's elapsed time plus this call's since its steps began."""
        return self.elapsed0 + (time.perf_counter() if now is None else now) - self.t0

    # --- one optimiser step ---
    def step(self, step: int, stops: StopSignals) -> bool:
        """Step `step`: its gradient, latest.ckpt at a checkpoint step, an evaluation at an
        eval step, then (unless the run ends here, or a signal stops it) the AdamW update;
        one steps.csv row. True when the run ends at this step."""
        s, impl = self.settings, self.impl
        t_step = time.perf_counter()
        last = step == self.end
        lr = impl.learning_rate(step, s.lr, s.warmup_steps, s.max_steps, s.schedule, s.min_lr)
        if not _params_finite(self.params):  # an update overflowed: forward would refuse them
            self.steps_log.log(step, self.elapsed(t_step), lr, math.nan, math.nan, 0.0)
            raise self.diverged(step, f"the parameters after update {step - 1} are not finite")
        loss, grads, norm = self.gradient(step, lr)
        compute = time.perf_counter() - t_step
        # the state after `step` updates has just given a finite loss: now it may replace latest.ckpt
        if s.checkpoint_interval and step > self.start and step % s.checkpoint_interval == 0:
            self.save("latest", step)
        early = False
        if step % s.eval_interval == 0 or last:
            early = self.evaluation(step, lr, loss, norm, last)
        stop = last or early
        if not stop:
            # the state after `step` updates gave a finite loss: a stop now loses nothing (SPEC §trainer)
            signum = stops.agreed(self.group)
            if signum is not None:
                raise self.interrupted(signum, step)
            t_update = time.perf_counter()
            impl.adamw_step(self.params, grads, self.state, lr, s.beta1, s.beta2, s.eps, s.weight_decay)
            compute += time.perf_counter() - t_update
        del grads  # one gradient buffer per step (fast reuses it)
        self.steps_log.log(step, self.elapsed(), lr, loss, norm,
                           s.batch_size * s.seq_len / max(compute, 1e-9))
        return stop

    def gradient(self, step: int, lr: float):
        """(loss, clipped grads, pre-clip norm) of batch `step`, over this process's
        micro-batches; TrainingDiverged (nothing updated) if the loss or the norm is not finite."""
        s, impl = self.settings, self.impl
        x, y = self.random_batch(self.data.train, s.batch_size, s.seq_len, s.seed, step)
        # with dropout, the masks of step s (SPEC §dropout), a micro-batch those of its rows: row_offset -> key
        # (SPEC §micro-batches); evaluation and samples run without
        dropout = None if self.config.dropout_rate == 0 else functools.partial(impl.DropoutKey, s.seed, step)
        with np.errstate(all="ignore"):  # non-finite values are detected just below, not warned about
            # this process's micro-batches, their gradients summed in the order of SPEC §micro-batches
            loss, grads = step_gradient(impl, self.params, x, y, self.split, self.group, self.running, dropout)
            norm = float(impl.clip_grad_norm(grads, s.grad_clip))
        if not (math.isfinite(loss) and math.isfinite(norm)):
            self.steps_log.log(step, self.elapsed(), lr, loss, norm, 0.0)
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            raise self.diverged(step, f"the {what} is not finite (loss {loss}, gradient norm {norm})")
        return loss, grads, norm

    # --- evaluation and checkpoints at an interval ---
    def evaluation(self, step: int, lr: float, loss: float, norm: float, last: bool) -> bool:
        """The validation loss at `step` (an eval_interval multiple, or the last step), a
        sample every sample_interval steps: one training-log row and console line; best.ckpt
        on a new best. True when patience runs out (early stopping)."""
        s = self.settings
        with np.errstate(all="ignore"):
            # batches of b rows (SPEC §micro-batches)
            val = evaluate(self.impl, self.params, self.data.windows, self.split.micro_batch, self.group)
            sample = ""
            if self.lead and (step % s.sample_interval == 0 or last):
                sample = _sample_text(self.impl, self.params, self.data.tokenizer, s)
        elapsed = self.elapsed()
        self.logger.log(step, elapsed, lr, loss, val, sample, norm)
        self.history.append({"step": step, "elapsed": elapsed, "lr": lr, "train_loss": loss,
                             "val_loss": val, "grad_norm": norm, "sample": sample})
        self.printer(console_line(step, elapsed, lr, loss, val))
        if step % s.eval_interval != 0:  # best tracking and patience use the regular evaluations only
            return False
        if self.improves(step, val):
            self.best_val, self.best_step, self.stale = val, step, 0
            self.save("best", step)
            return False
        self.stale += 1
        if s.patience is None or self.stale < s.patience:
            return False
        self.stop_reason = "early_stopping"
        self.printer(f"early stopping at step {step}: no new best validation loss in "
                     f"{self.stale} evaluations (best {self.best_val:.4f} at step {self.best_step})")
        return True

    def improves(self, step: int, val: float) -> bool:
        """Whether the regular evaluation of `step` finds a new best: `val` below the best so far,
        compared as float32, the precision checkpoints hold it in (SPEC §checkpoint), so that a
        resumed run decides as the uninterrupted one did. A best measured at `step` itself can only
        be a resumed checkpoint's (a new run starts with none): this evaluation measures it again,
        and it stays the best the uninterrupted run had just found."""
        if step == self.best_step and math.isfinite(self.best_val):
            return True
        return bool(np.float32(val) < np.float32(self.best_val))

    def save(self, kind: str, step: int) -> None:
        """best.ckpt, latest.ckpt or final.ckpt: the state after `step` updates (rank 0 writes it)."""
        if kind == "latest":
            self.latest_step = None
        if self.lead:
            meta = {"step": step, "best_val_loss": self.best_val, "best_val_step": self.best_step}
            save_checkpoint(self.paths[kind], Checkpoint(self.config, self.params, self.state, self.data.tokenizer,
                                                         meta))
        self.written.pop(kind, None)
        self.written[kind] = self.paths[kind]
        if kind == "latest":
            self.latest_step = step

    # --- how a run stops early ---
    def last_good(self, step: int) -> str | None:
        """The newest checkpoint whose step gave a finite loss, if any."""
        if self.written:
            return str(list(self.written.values())[-1])
        return str(self.settings.resume) if self.resumed and step > self.start else None

    def interrupted(self, signum: int, step: int) -> TrainingInterrupted:
        """Stop at `step` for `signum`: latest.ckpt holds the state after `step`
        updates (its forward gave a finite loss), unless a second signal cut the save short."""
        name = signal.Signals(signum).name
        try:
            if self.latest_step != step:
                self.save("latest", step)
        except TrainingInterrupted:  # forced: the save is abandoned, its temporary file removed
            good = self.last_good(step)
            return together(TrainingInterrupted(
                f"stopped by {name} at step {step} while writing latest.ckpt (abandoned)"
                + (f"; {good} resumes the run" if good else "; nothing to resume"), signum, step, good))
        return together(TrainingInterrupted(
            f"stopped by {name} at step {step}: {self.paths['latest']} holds the state after {step} updates",
            signum, step, str(self.paths["latest"])))

    def diverged(self, step: int, what: str) -> TrainingDiverged:
        """Stop at `step`, naming the last good checkpoint."""
        good = self.last_good(step)
        if good is not None:
            last = f"Last good checkpoint (its step gave a finite loss): {good}"
        else:
            last = ("the checkpoint this run resumed from already fails at its own step" if self.resumed
                    else "Last good checkpoint: none written yet")
        # every process sees the same loss and G, so all stop here together (SPEC §micro-batches)
        return together(TrainingDiverged(f"training stopped at step {step}: {what}; nothing was updated. {last}",
                                         step, good))
