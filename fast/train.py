"""The trainer (SPEC section 7), written once in `reference/train.py`.

`reference.train.train` takes the implementation module as a parameter and
calls only contract names on it; this wrapper runs it with `fast`'s kernels
(forward, backward, clipping, AdamW, generation) unless told otherwise.
"""
from __future__ import annotations

from reference.train import TrainingDiverged, TrainResult, TrainSettings  # noqa: F401  (re-exported)
from reference.train import train as _train


def train(settings: TrainSettings, tokens=None, tokenizer=None, impl=None, progress: bool = True,
          printer=None, group=None, init=None) -> TrainResult:
    """reference.train with `impl` defaulting to the `fast` module."""
    if impl is None:
        import fast as impl
    return _train(settings, tokens=tokens, tokenizer=tokenizer, impl=impl, progress=progress, printer=printer,
                  group=group, init=init)
