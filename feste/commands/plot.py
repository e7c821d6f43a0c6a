"""`feste plot RUN_DIR`: train/validation loss and the learning rate against step (needs matplotlib)."""
from __future__ import annotations

import io
from pathlib import Path

from reference.atomic_io import atomic_write
from reference.logger import read_log
from reference.optim import learning_rate
from feste.rundir import RunDirError, read_run_json

from ..common import add_overwrite_option, check_file, check_output, one_line_errors


def _schedule_from_run_json(run_dir: Path, last_step: int):
    """(steps, lr) of every step up to the last logged one, from the run's
    settings; None when run.json is missing or unreadable (the plot then shows
    the logged learning rates only)."""
    try:
        s = read_run_json(run_dir)["settings"]
        steps = list(range(last_step + 1))
        lrs = [learning_rate(k, s["lr"], s["warmup_steps"], s["max_steps"], s["schedule"], s["min_lr"])
               for k in steps]
    except (RunDirError, ValueError, KeyError, TypeError):
        return None
    return steps, lrs


def run(args) -> int:
    """Plot train/validation loss and the learning rate of a run against the step."""
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist or is not a directory")
    # --out is the user's: refused if it exists (unless --overwrite); the default is the run's own plot, redrawn
    out = check_output(args.out, args.overwrite) if args.out else check_output(run_dir / "loss.png", True, "plot")
    log_path = check_file(run_dir / "training_log.csv", "training log")
    rows = read_log(log_path)
    if not rows:
        raise ValueError(f"{log_path} has no rows to plot")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("plotting needs matplotlib: pip install 'feste-spec[plot]'") from None
    steps = [r["step"] for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    ax_loss.plot(steps, [r["train_loss"] for r in rows], marker="o", label="train loss")
    ax_loss.plot(steps, [r["val_loss"] for r in rows], marker="s", label="validation loss")
    ax_loss.set_ylabel("cross-entropy (nats)")
    ax_loss.set_title(f"{run_dir.name}: loss against step")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend()
    schedule = _schedule_from_run_json(run_dir, steps[-1])
    if schedule is not None:  # the whole schedule, not just the logged steps
        ax_lr.plot(*schedule, color="tab:green", label="learning rate (run.json schedule)")
    ax_lr.plot(steps, [r["learning_rate"] for r in rows], "o", color="tab:green", label="logged")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(True, alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write(out, png.getvalue())  # never a half-written PNG
    print(f"Plot saved to: {out}")
    return 0


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser(
        "plot", help="plot a run's loss and learning rate against step (needs matplotlib)",
        description="Write a PNG of train and validation loss and the learning rate against "
                    "step from RUN_DIR/training_log.csv. Needs the optional 'plot' extra."))
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory holding training_log.csv")
    p.add_argument("--out", metavar="PNG", default=None,
                   help="output file, new unless --overwrite (default RUN_DIR/loss.png, redrawn each time)")
    add_overwrite_option(p, "replace --out if it exists")
    p.set_defaults(func=run)
