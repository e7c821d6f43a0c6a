"""`feste train`: train or resume a model; one flag per TrainSettings field (SPEC §command-line).

The flags are generated from `feste.trainer.TrainSettings` (feste/settings.py):
`max_steps` is `--max-steps`, its type, default and the comment on its line
are the flag's. Older short names stay as aliases (ALIASES). Settings come in
layers, each overriding the one before: TrainSettings' defaults; with
`--resume`, the original run's run.json; `--config FILE` (TOML, or a JSON
object such as a run.json); the flags given. Under `mpiexec -n N` this is
one of N processes (SPEC §micro-batches): rank 0 alone prints and writes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import sys
from pathlib import Path

from feste.accumulate import SOLO, SetupCheck, Split
from feste.rundir import LOG_NAME, RUN_JSON, STEPS_NAME, read_run_json
from feste.trainer import MODEL_SIZES, TrainingInterrupted, TrainSettings, init_settings, read_init, train
from reference.config import PRESETS, preset
from reference.optim import SCHEDULES

from ..common import EXIT_ERROR, add_impl_option, check_file, float_range, load_impl, one_line_errors
from ..corpus import fetch_corpus
from ..distributed import DEFAULT_TIMEOUT, LaunchError, launched_rank, process_group, run_together
from ..settings import add_setting_arguments, given_flags, given_values, read_config, setting_fields

# the names these settings had before the flags were generated; both work
ALIASES = {"max_steps": ("--steps",), "warmup_steps": ("--warmup",), "grad_clip": ("--clip",),
           "sample_prompt": ("--prompt",), "sample_temperature": ("--temperature",), "sample_top_k": ("--top-k",)}
METAVARS = {"corpus": "FILE", "run_dir": "DIR", "resume": "CKPT", "init_from": "CKPT_OR_HF_DIR"}
CHOICES = {"preset": tuple(PRESETS), "schedule": SCHEDULES}
# what a run.json records about how its run was started, not what the run is: a
# resume does not take these from it (nor stop_at), and neither does a run.json
# given as --config (which starts a new run with the same settings)
RUN_ONLY = {"run_dir", "resume", "overwrite", "stop_at"}
# with --init-from these come from the weights: as flags they are refused
MODEL_FIELDS = ("preset", *MODEL_SIZES, "vocab_size")


def _resumed_run_json(args) -> Path | None:
    """With --resume, the original run's run.json (in --run-dir, else beside the
    checkpoint) if it exists; else None (the trainer says that it is missing)."""
    if args.resume is None:
        return None
    run_dir = Path(args.run_dir) if args.run_dir is not None else Path(args.resume).parent
    return run_dir / RUN_JSON if (run_dir / RUN_JSON).exists() else None


def settings_layers(args) -> list[tuple[str, dict]]:
    """(source, {field: value}) in increasing precedence, for the settings and their error messages."""
    layers = []
    run_json = _resumed_run_json(args)
    if run_json is not None:  # the original run's settings, as `feste train --resume` has always read them
        saved = read_run_json(run_json.parent)["settings"]
        # init_from too: the resumed run continues from its own checkpoint (run.json keeps where it began)
        layers.append((str(run_json), {k: v for k, v in saved.items() if k not in RUN_ONLY | {"init_from"}}))
    if args.config is not None:
        config = read_config(check_file(args.config, "config"), TrainSettings, run_json_drops=RUN_ONLY - {"stop_at"})
        if config.get("resume") is not None and args.resume is None:
            # the run's own settings (its run.json, the first layer) are found through --resume alone
            raise ValueError(
                f"config {args.config}: resume {config['resume']} cannot come from a config file: a resumed run "
                "takes its settings from its run.json, which only the --resume flag finds (else every other "
                "setting would be a new run's default). Give it as the flag: "
                + shlex.join(["feste", "train", "--resume", str(config["resume"]), "--config", str(args.config)]))
        layers.append((f"config {args.config}", config))
    flags = given_flags(args)
    for name, value in given_values(args, setting_fields(TrainSettings)).items():
        layers.append((flags[name], {name: value}))
    return layers


def settings_from_args(args, processes: int = 1, notes: list | None = None, **overrides):
    """(TrainSettings, init) from the layers (see the module docstring), validated. A bad
    value is reported with where it came from (the flag, the config file or run.json).
    A resume whose grad_accum comes from run.json keeps the run's micro-batch b
    on `processes` processes: grad_accum = batch_size / (processes * b) (SPEC §micro-batches).
    With init_from, `init` is the Checkpoint it names (read here once, a Hugging Face
    directory through feste.hf.import_hf, whose notes go to `notes`) and the
    model settings are its model's (`_init_model`); else None."""
    values, source = {}, {}
    for where, layer in [*settings_layers(args), ("the caller", overrides)]:
        values.update(layer)
        source.update({name: where for name in layer})
    run_json = _resumed_run_json(args)
    if run_json is not None and source.get("grad_accum", str(run_json)) == str(run_json):
        values["grad_accum"] = _grad_accum_keeping(run_json.parent, values, processes)
    init = None
    try:
        TrainSettings(**values).validate()
        if values.get("init_from") is not None:
            init = _init_model(values, source, given_flags(args), notes)
        settings = TrainSettings(**values)
        settings.validate()
        if init is not None:
            init_settings(settings, init.config)  # what the trainer checks, before any work
    except ValueError as exc:
        name = str(exc).split(" ", 1)[0].rstrip(":")
        where = source.get(name)
        raise ValueError(f"{where}: {exc}" if where else str(exc)) from None
    return settings, init


def _init_model(values: dict, source: dict, flags: dict, notes: list | None):
    """--init-from PATH: the Checkpoint it names (feste.trainer.read_init: a FESTE_CKPT file,
    or a Hugging Face GPT-2 directory imported as `feste import` does). The model settings become its
    model's: a flag among MODEL_FIELDS is refused, and one from a config file (or the
    model its preset describes) must agree with the weights. Updates `values`."""
    path = values["init_from"]
    given_as = source["init_from"] if source["init_from"].startswith("--") else f"init_from ({source['init_from']})"
    for name in MODEL_FIELDS:
        if name in flags:
            raise ValueError(f"{flags[name]} cannot be given with {given_as} {path}: the model's shape and "
                             "vocabulary come with its weights")
    init = read_init(path if Path(path).is_dir() else check_file(path, "init_from checkpoint"), notes=notes)
    config = init.config
    described = preset(values["preset"]) if "preset" in source else None
    for name in (*MODEL_SIZES, "vocab_size"):
        value, where = values.get(name), source.get(name)
        if value is None and described is not None and name != "vocab_size":
            value, where = getattr(described, name), f"{source['preset']}: preset {values['preset']!r} has"
        elif value is not None and where is not None:
            where = f"{where}:"
        if where is not None and value is not None and value != getattr(config, name):
            raise ValueError(f"{where} {name} {value}, which contradicts init_from {path}, whose model has {name} "
                             f"{getattr(config, name)}: the model's shape and vocabulary come with its weights")
    values.update({name: getattr(config, name) for name in (*MODEL_SIZES, "vocab_size")})
    return init


def _grad_accum_keeping(run_dir: Path, values: dict, processes: int) -> int:
    """The grad_accum that keeps the run's micro-batch on `processes` processes
    (the run's own grad_accum when its run.json predates micro-batches)."""
    b = read_run_json(run_dir).get("micro_batch")
    B = values.get("batch_size", TrainSettings.batch_size)
    if not isinstance(b, int):
        return values.get("grad_accum", TrainSettings.grad_accum)
    if b < 1 or B % (processes * b):
        raise ValueError(f"the run in {run_dir} has micro-batches of {b} rows, which {processes} process(es) cannot "
                         f"keep with batch_size {B} ({B} is not a multiple of {processes} x {b}): pass --grad-accum "
                         "(the run then continues, but not bit for bit, SPEC §micro-batches)")
    return B // (processes * b)


def summary(result, settings: TrainSettings, impl) -> dict:
    """What a script needs after `feste train --json` (SPEC §command-line)."""
    run_dir = Path(os.path.abspath(result.run_dir))  # absolute: a script may run elsewhere
    best = result.best_val_loss
    return {
        "run_dir": str(run_dir),
        "run_json": str(run_dir / RUN_JSON),
        "log": str(run_dir / LOG_NAME),
        "steps_log": str(run_dir / STEPS_NAME),
        "checkpoints": {kind: os.path.abspath(path) for kind, path in result.checkpoints.items()},
        "impl": impl.__name__,
        "config": dataclasses.asdict(result.config),
        "step": result.step,
        "max_steps": settings.max_steps,
        "stop_reason": result.stop_reason,
        "best_val_loss": best if math.isfinite(best) else None,
        "best_val_step": result.best_val_step,
        "last_row": result.history[-1] if result.history else None,
        "seconds": round(result.elapsed, 3),
    }


def resume_command(checkpoint: str, impl, processes: int = 1, stop_at: int | None = None) -> str:
    """The command that continues a stopped run from `checkpoint` (its run.json
    supplies every setting but stop_at, which is per call)."""
    argv = ["feste", "train", "--resume", str(checkpoint), "--impl", impl.__name__]
    if stop_at is not None:
        argv += ["--stop-at", str(stop_at)]
    if processes > 1:
        argv = ["mpiexec", "-n", str(processes), *argv]
    return shlex.join(argv)


def stopped_line(command: str, exc: TrainingInterrupted, impl, processes: int = 1, stop_at: int | None = None) -> str:
    """The one line of a run a signal stopped (`feste COMMAND: stopped by ...`) and, when
    it left a checkpoint to resume (`impl`: the implementation it ran), the command that does."""
    line = f"feste {command}: {exc}"
    if exc.checkpoint is not None and impl is not None:
        line += "; resume with: " + resume_command(exc.checkpoint, impl, processes, stop_at)
    return line


def run(args) -> int:
    """Train (or resume) a model with every knob on the command line or in a
    config file; under `mpiexec -n N` as one of N processes (SPEC §micro-batches).
    SIGINT and SIGTERM stop at a step boundary with latest.ckpt written: one
    line saying how to resume, exit code 128 + signal (130, 143; SPEC §trainer)."""
    try:
        group = process_group(args.mpi_timeout)  # None: this process alone (mpi4py is not imported)
    except LaunchError:
        if launched_rank() not in (None, 0):
            return EXIT_ERROR  # every process finds the same: rank 0 says it
        raise
    stopped = {}
    try:
        if group is None:
            return _run(args, SOLO, stopped)
        from ..cli import USER_ERRORS

        return run_together(group, lambda: _run(args, group, stopped), USER_ERRORS)
    except TrainingInterrupted as exc:
        print(stopped_line("train", exc, stopped.get("impl"), stopped.get("processes", 1), stopped.get("stop_at")),
              file=sys.stderr, flush=True)
        return exc.exit_code


def _run(args, group, stopped: dict) -> int:
    """The command on one process; `stopped` learns what a resume command needs."""
    setup = SetupCheck(group)  # a failure on any process stops all, reported once by rank 0
    try:
        impl = load_impl(args.impl)
        notes: list[str] = []  # what importing --init-from's Hugging Face directory did beyond copying
        settings, init = settings_from_args(args, processes=group.size, notes=notes)
        stopped.update(impl=impl, processes=group.size, stop_at=settings.stop_at)
        Split(settings.batch_size, group.size, settings.grad_accum)  # fits the processes, before any work
        if settings.resume is not None:
            check_file(settings.resume, "checkpoint")
        if settings.corpus is not None:
            check_file(settings.corpus, "corpus")
        elif settings.resume is not None and _resumed_run_json(args) is None:
            pass  # no run to continue: the trainer refuses it by name, with no corpus download first
        elif group.rank == 0:
            fetch_corpus(progress=args.progress)  # the trainer reads the cached copy
        setup.passed()
    except BaseException as exc:
        setup.failed(exc)
        raise
    if group.rank != 0:
        train(settings, impl=impl, progress=False, group=group, init=init)
        return 0
    from tqdm.auto import tqdm

    def say(line: str) -> None:  # with --json, stdout holds only the summary
        # through tqdm: the progress bar is cleared first and redrawn after, so a line never lands inside it
        tqdm.write(line, file=sys.stderr if args.json else sys.stdout)
        (sys.stderr if args.json else sys.stdout).flush()

    say(f"feste train: impl {impl.__name__}" + (f", {group.size} processes" if group.size > 1 else ""))
    for note in notes:
        say(f"note: {note}")
    result = train(settings, impl=impl, progress=args.progress, printer=say,
                   group=None if group.size == 1 else group, init=init)
    if args.json:
        print(json.dumps(summary(result, settings, impl), indent=2))
        return 0
    say(f"Stopped at step {result.step} ({result.stop_reason}); best validation loss "
        f"{result.best_val_loss:.4f} at step {result.best_val_step}")
    last = result.history[-1] if result.history else None
    if last is not None and last["step"] % settings.eval_interval:
        say(f"The final evaluation (step {last['step']}, validation loss {last['val_loss']:.4f}) does not count for "
            f"\"best\" (only the regular evaluations, every {settings.eval_interval} steps, do: SPEC §trainer), so "
            "final.ckpt can be better than best.ckpt")
    say(f"Training log: {result.run_dir / LOG_NAME} (every step: {result.run_dir / STEPS_NAME})")
    for kind, path in result.checkpoints.items():
        say(f"Checkpoint ({kind}): {path}")
    return 0


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser(
        "train", help="train or resume a model with every knob",
        description="Train a GPT-2-style model (SPEC §training). Writes run.json (the resolved settings), "
                    "training_log.csv, steps.csv and best/latest/final training checkpoints to --run-dir; a "
                    "new run refuses a non-empty directory it did not create (see --overwrite). Settings: "
                    "TrainSettings' defaults, then with --resume the original run's run.json (in --run-dir, "
                    "else beside the checkpoint), then --config FILE, then the flags given; one flag per "
                    "TrainSettings field. A resumed run refuses settings that would change its model, data or "
                    "batch order (SPEC §trainer). --init-from CKPT_OR_HF_DIR starts a new run (step 0, fresh "
                    "AdamW) from a checkpoint's or a Hugging Face GPT-2 directory's weights and tokenizer: "
                    "fine-tuning; the model's shape and vocabulary are then the weights' (SPEC §trainer)."))
    p.add_argument("--config", metavar="FILE", default=None,
                   help="TOML file of settings (keys: the field names below with underscores, e.g. "
                        "max_steps = 2000), or a JSON object of them such as a run's run.json; flags override it")
    add_setting_arguments(p, TrainSettings, aliases=ALIASES, metavars=METAVARS, choices=CHOICES)
    p.add_argument("--mpi-timeout", type=float_range(0.0, low_open=True), default=DEFAULT_TIMEOUT, metavar="S",
                   help="under mpiexec: a process that waits this many seconds for another (failed, hung or "
                        f"killed) stops every process with a message (default: {DEFAULT_TIMEOUT:g})")
    p.add_argument("--json", action="store_true",
                   help="print one JSON summary on stdout at the end (run_dir, run_json, log, steps_log, checkpoints, impl, "
                        "config, step, max_steps, stop_reason, best_val_loss, best_val_step, last_row, seconds); "
                        "the progress lines go to stderr")
    add_impl_option(p)
    p.set_defaults(func=run)
