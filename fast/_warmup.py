"""Compile every kernel once on tiny inputs (SPEC §performance).

Numba compiles a kernel on its first call and stores the machine code on
disk (`cache=True`), so only the first run on a machine pays; later
processes load it. `warmup()` makes that cost explicit and measurable: the
CLI prints "compiling kernels (first run only)..." around it, and the
benchmarks report its seconds. Not part of the contract.
"""
from __future__ import annotations

import time

import numpy as np


def warmup(dtypes=(np.float32,)) -> float:
    """Run every fast code path (tokenizer, batches, forward, backward, clip,
    AdamW, greedy and sampled generation) on a tiny model; return the seconds taken."""
    import fast
    from fast._blas import warm as warm_blas

    t0 = time.perf_counter()
    text = b"to be, or not to be, that is the question: " * 4
    tok = fast.Tokenizer.train(text, 270)
    ids = tok.encode(text).astype(np.int64)
    for dtype in dtypes:
        config = fast.Config(vocab_size=270, n_embd=8, n_heads=2, n_layers=1, block_size=8)
        params = fast.init_params(config, seed=0, dtype=dtype)
        x, y = fast.random_batch(ids, 2, 4, 0, 0)
        _, _, cache = fast.forward(params, x, y)
        grads = fast.backward(params, cache)
        fast.clip_grad_norm(grads, 1e-6)
        fast.adamw_step(params, grads, fast.adamw_init(params), 1e-3)
        fast.generate(params, ids[:3], 7, temperature=0.0)
        fast.generate(params, ids[:3], 2, temperature=1.0, top_k=5)
        warm_blas((dtype,))  # the blocked products of larger models
        for fn, args in ((fast.layernorm_forward, (np.ones((2, 4), dtype), np.ones(4, dtype), np.zeros(4, dtype))),
                         (fast.gelu_forward, (np.ones((2, 4), dtype),)),
                         (fast.linear_forward, (np.ones((2, 4), dtype), np.ones((4, 3), dtype), np.ones(3, dtype))),
                         (fast.attention_forward, (np.ones((1, 2, 4), dtype),) * 3 + (2,)),
                         (fast.embedding_forward, (np.zeros((1, 2), np.int64), np.ones((3, 4), dtype),
                                                   np.ones((2, 4), dtype)))):
            out, c = fn(*args)
        fast.layernorm_backward(np.ones((2, 4), dtype), fast.layernorm_forward(
            np.arange(8, dtype=dtype).reshape(2, 4), np.ones(4, dtype), np.zeros(4, dtype))[1])
        fast.gelu_backward(np.ones((2, 4), dtype), fast.gelu_forward(np.ones((2, 4), dtype))[1])
        fast.attention_backward(np.ones((1, 2, 4), dtype), fast.attention_forward(*(np.ones((1, 2, 4), dtype),) * 3, 2)[1])
        fast.embedding_backward(np.ones((1, 2, 4), dtype), c)
        fast.cross_entropy_backward(fast.cross_entropy_forward(np.ones((1, 2, 5), dtype), np.zeros((1, 2), np.int64))[1])
    return time.perf_counter() - t0
