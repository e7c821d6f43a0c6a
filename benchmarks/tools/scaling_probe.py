"""Training steps with micro-batches and processes, timed in a fresh process (SPEC §micro-batches, §scaling).

    python -m benchmarks.tools.scaling_probe --impl fast --preset medium --batch 8 --seq 256 --grad-accum 2
    mpiexec -n 2 python -m benchmarks.tools.scaling_probe --impl fast --preset medium --batch 8 --seq 256

A step is what the trainer does per update (SPEC §micro-batches): the batch of the
step (`random_batch`), this process's micro-batches' forward and backward,
the ordered sum with the other processes' (relay and broadcast), the loss
gathered, clipping and AdamW. One untimed step first (Numba loads or
compiles; workspaces are made), then `--steps` timed ones; rank 0 times each
step from the end of the previous one (every step ends with a broadcast and
an allgather, so the processes are in step). Prints one JSON line (rank 0):
the median and minimum step seconds, tokens/s = B*T / median, the CPU
seconds of a step summed over the processes (median per process: on a
loaded machine, the work a step costs when wall time is not to be had;
it counts spinning waits too), and each process's peak RSS (`ru_maxrss`) in MB. Thread counts are the environment's
(NUMBA_NUM_THREADS): suites/bench_scaling.py sets them per case.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time

import numpy as np

from benchmarks.tools.memory import maxrss_mb
from feste.accumulate import SOLO, Split, step_gradient


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.scaling_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", required=True, help="implementation module (reference, fast, my.module)")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--batch", type=int, default=8, help="B, the rows of a step")
    parser.add_argument("--seq", type=int, default=256, help="T")
    parser.add_argument("--grad-accum", type=int, default=1, help="K, micro-batches per process")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one untimed)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    from feste.distributed import process_group

    group = process_group() or SOLO
    impl = importlib.import_module(args.impl)
    config = impl.preset(args.preset)
    split = Split(args.batch, group.size, args.grad_accum)
    B, T = args.batch, args.seq
    params = impl.init_params(config, seed=0)
    state = impl.adamw_init(params)
    running = impl.Params(config) if group.size > 1 else None
    tokens = np.random.default_rng(1234).integers(0, config.vocab_size, size=200_000)
    times, cpu = [], []
    group.barrier()
    last, last_cpu = time.perf_counter(), time.process_time()
    for step in range(args.steps + 1):
        x, y = impl.random_batch(tokens, B, T, 0, step)
        _, grads = step_gradient(impl, params, x, y, split, group, running)
        impl.clip_grad_norm(grads, 1.0)
        impl.adamw_step(params, grads, state, 3e-4)
        del grads
        now, now_cpu = time.perf_counter(), time.process_time()
        if step:  # step 0 is the warm-up
            times.append(now - last)
            cpu.append(now_cpu - last_cpu)
        last, last_cpu = now, now_cpu
    rss = group.allgather(np.array([maxrss_mb()]))[:, 0]
    cpu_per_step = group.allgather(np.array([statistics.median(cpu)]))[:, 0]
    if group.rank == 0:
        median = statistics.median(times)
        print(json.dumps({
            "impl": args.impl, "preset": args.preset, "B": B, "T": T, "processes": group.size,
            "grad_accum": args.grad_accum, "micro_batch": split.micro_batch,
            "numba_threads": os.environ.get("NUMBA_NUM_THREADS"), "steps": args.steps,
            "median_s": round(median, 4), "min_s": round(min(times), 4),
            "tokens_per_s": round(B * T / median, 1),
            "cpu_s": round(float(cpu_per_step.sum()), 4),
            "peak_rss_mb": [round(float(r), 1) for r in rss],
            "n_params": int(params.data.size),
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
