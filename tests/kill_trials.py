"""kill -9 during checkpoint saves: what a run directory holds after, and whether the next start recovers
(SPEC §run-directories). A robustness trial, not a benchmark: the test is tests/test_robustness.py, this is
the wider trial behind its numbers.

    python tests/kill_trials.py CORPUS OUT_DIR                 # 8 trials of a C=128 model
    python tests/kill_trials.py CORPUS OUT_DIR --preset medium --trials 3

Each trial starts `feste train --checkpoint-interval 1` (reference, B=1, T=8,
so saving dominates), waits for a first latest.ckpt, then (`--when save`)
for a later save to create its `.latest.ckpt.XXXXXXXX.tmp`, sleeps a random
part of a save's duration and sends SIGKILL; or (`--when random`) kills at a
random time. It then records the temp files left and their size, whether
latest.ckpt and best.ckpt load (and their steps), and runs `feste train
--resume latest.ckpt` for two more steps: its exit code, the temp files it
removed and those left. One JSON line per trial.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

TEMP = re.compile(r"\.(latest|best|final)\.ckpt\.[0-9a-f]{8}\.tmp")
SIZES = {"tiny": ["--n-embd", "128", "--n-heads", "4", "--n-layers", "3"], "medium": ["--preset", "medium"]}


def feste(*argv) -> list[str]:
    return [sys.executable, "-m", "feste", "-q", *map(str, argv)]


def trial(corpus: Path, run_dir: Path, size: str, when: str, rng: random.Random) -> dict:
    import reference

    trainer = subprocess.Popen(feste("train", "--corpus", corpus, "--vocab-size", 300, "--block-size", 256,
                                     "--batch-size", 1, "--seq-len", 8, "--eval-batches", 1, "--impl", "reference",
                                     *SIZES[size], "--steps", 100000, "--eval-interval", 100000,
                                     "--checkpoint-interval", 1, "--run-dir", run_dir),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not (run_dir / "latest.ckpt").exists():
        if trainer.poll() is not None:
            raise SystemExit(f"the trainer ended: {trainer.stderr.read().decode()[-500:]}")
        time.sleep(0.001)
    if when == "save":
        time.sleep(rng.uniform(0, 2.0))  # not always the first save
        while not any(TEMP.fullmatch(n) for n in os.listdir(run_dir)):
            time.sleep(0.0002)
        time.sleep(rng.uniform(0, 0.05 if size == "tiny" else 1.0))  # somewhere inside the write
    else:
        time.sleep(rng.uniform(0.05, 3.0))
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    temps = sorted(n for n in os.listdir(run_dir) if TEMP.fullmatch(n))
    row = {"model": size, "kill": when, "temps": temps,
           "temp_mb": round(sum((run_dir / n).stat().st_size for n in temps) / 1e6, 1)}
    for name in ("latest", "best"):
        try:
            row[name] = reference.load_checkpoint(run_dir / f"{name}.ckpt").metadata["step"]
        except Exception as exc:  # noqa: BLE001 - recorded: this is what the trial looks for
            row[name] = f"FAILS: {exc}"
    if isinstance(row["latest"], int):
        resumed = subprocess.run(feste("train", "--resume", run_dir / "latest.ckpt", "--steps", row["latest"] + 2,
                                       "--impl", "reference"), capture_output=True, text=True)
        row.update(resume_exit=resumed.returncode, resume_error=resumed.stderr.strip()[-300:],
                   removed=re.findall(r"removed (\S+?),", resumed.stdout),
                   temps_after_resume=sorted(n for n in os.listdir(run_dir) if TEMP.fullmatch(n)))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tests/kill_trials.py", description=__doc__.split("\n\n")[0])
    p.add_argument("corpus", type=Path)
    p.add_argument("out", type=Path, help="a directory for the trials' run directories")
    p.add_argument("--preset", choices=sorted(SIZES), default="tiny")
    p.add_argument("--when", choices=["save", "random"], default="save")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    for i in range(args.trials):
        run_dir = args.out / f"{args.preset}-{args.when}-{i}"
        row = trial(args.corpus, run_dir, args.preset, args.when, rng)
        print(json.dumps({"trial": i, **row}), flush=True)
        if args.preset == "medium":  # 235 MB each
            for name in ("latest.ckpt", "best.ckpt", "final.ckpt"):
                (run_dir / name).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
