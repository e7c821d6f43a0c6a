"""The benchmarks' small library: what is timed and how, for the suites and the tools.

- `timing`: the one timer (`time_calls`: wall and CPU seconds per call) and
  the reader of pytest-benchmark's medians;
- `accounting`: training FLOPs, the float32 matmul peak, the nine cells (SPEC §flops);
- `harness`: the training step every benchmark times (`TrainStep`, the fixed batch);
- `phases`: where a step's time goes (phases, time inside the matmuls);
- `runtime`: what the numbers were measured on (BLAS, Numba, kernel warnings);
- `torch_peer`: the PyTorch peer, the same model written the way its users write it.

It imports nothing from an implementation at import time, so it serves any of them.
"""
