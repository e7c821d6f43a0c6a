"""Benchmarks of any implementation of the contract (SPEC §performance).

- `suites/`: pytest-benchmark suites (`bench_*.py`), parametrized over the
  implementations like the conformance suite (`--impl`): the training step
  on the nine cells (with `--peer torch`, PyTorch beside each), components,
  tokenizer, fast's own kernels, data-parallel scaling;
- `lib/`: what is timed and how (the one timer, FLOPs and the matmul peak,
  the training step, phases, runtime record, the PyTorch peer);
- `tools/`: commands over the suites and the library: `report` (`feste
  bench`), `side_by_side` (`feste bench --rounds N` or `--adapter CMD`:
  implementations, the PyTorch peer and adapters in rotating rounds),
  `compare.sh` and `abtest` (regression between two revisions),
  `prove_regression.sh`, `noise`, `memory`, `tokenizer_memory`,
  `scaling_probe`; each is `python -m benchmarks.tools.NAME --help`;
- `tests/`: the library's and the tools' own tests.

    python -m pytest benchmarks                          # every suite, timed
    python -m pytest benchmarks --benchmark-disable -q   # each benchmark once, and the tests
    feste bench                                          # the seed's table (tools/report.py)
    feste bench --impl fast --peer torch --threads 1 --rounds 5   # side by side (tools/side_by_side.py)
"""
