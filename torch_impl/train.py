"""The trainer (SPEC section 7), written once in `reference/train.py`, run
with torch_impl's forward, backward, clipping, AdamW and generation unless
told otherwise."""
from __future__ import annotations

from reference.train import TrainingDiverged, TrainResult, TrainSettings  # noqa: F401  (re-exported)
from reference.train import train as _train


def train(settings: TrainSettings, tokens=None, tokenizer=None, impl=None, progress: bool = True,
          printer=None, group=None, init=None) -> TrainResult:
    """reference.train with `impl` defaulting to the `torch_impl` module."""
    if impl is None:
        import torch_impl as impl
    return _train(settings, tokens=tokens, tokenizer=tokenizer, impl=impl, progress=progress, printer=printer,
                  group=group, init=init)
