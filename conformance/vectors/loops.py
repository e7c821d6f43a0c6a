"""Loops over the contract that both sides of a vector run: the generator with
reference (expected values), the Python adapter with the implementation it
serves."""
from __future__ import annotations

import numpy as np


def trajectory(impl, params, xs, ys, kw) -> np.ndarray:
    """SPEC §operations train/trajectory: per step forward, backward, clip and
    AdamW with the step's learning rate; the losses (float64). Updates `params`."""
    state = impl.adamw_init(params)
    losses = []
    for s in range(xs.shape[0]):
        _, loss, cache = impl.forward(params, xs[s], ys[s])
        grads = impl.backward(params, cache)
        impl.clip_grad_norm(grads, kw["max_norm"])
        lr = impl.learning_rate(s, kw["base_lr"], kw["warmup_steps"], kw["total_steps"], kw["schedule"], kw["min_lr"])
        impl.adamw_step(params, grads, state, lr, kw["beta1"], kw["beta2"], kw["eps"], kw["weight_decay"])
        losses.append(loss)
    return np.array(losses, dtype=np.float64)
