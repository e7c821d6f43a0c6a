"""The validation loss the trainer logs (SPEC §data and §training).

Closes the hole the mutant `eval-windows-shifted` found (conformance/mutants):
no test pinned *which* validation windows are evaluated. Oracle: the windows
written out by hand from the SPEC (the validation split is the last
val_fraction of the tokens; windows start at 0, T, 2T, ... of it, inputs
tokens[s:s+T], targets tokens[s+1:s+T+1]; the first eval_batches * B of
them), each batch's forward loss weighted by its size. The same forward on
the same batches in the same order, so the logged value must be equal, not
merely close.

(Kept apart from test_train.py, which its owner was still editing.)
"""
from __future__ import annotations

import numpy as np
import pytest
from feste.trainer import TrainSettings, train  # the harness that drives the implementation

V = 256  # the trainer requires at least the 256 byte tokens


def _stream(n=3001, seed=5):
    rng = np.random.default_rng(seed)
    return ((np.arange(n) * 5 + rng.integers(0, 3, n)) % V).astype(np.int64)


@pytest.mark.parametrize("eval_batches", [2, 50])
def test_logged_val_loss_is_the_mean_over_the_first_sequential_windows(impl, tmp_path, eval_batches):
    """eval_batches=50 asks for more windows than the split holds: all of them are used."""
    tokens = _stream()
    B, T, val_fraction = 4, 8, 0.1
    s = TrainSettings(preset="tiny", n_embd=16, n_heads=2, n_layers=1, block_size=16, vocab_size=V,
                           batch_size=B, seq_len=T, max_steps=6, lr=3e-3, warmup_steps=2,
                           eval_interval=3, eval_batches=eval_batches, sample_interval=1000,
                           checkpoint_interval=0, val_fraction=val_fraction, run_dir=str(tmp_path / "run"))
    result = train(s, tokens=tokens, tokenizer=None, impl=impl.module, progress=False,
                        printer=lambda line: None)
    last = result.history[-1]
    assert last["step"] == result.step == 6

    # by hand: n_train = int(n * (1 - val_fraction)) = int(3001 * 0.9) = 2700
    val = tokens[2700:]  # 301 tokens -> (301 - 1) // 8 = 37 windows available
    n_windows = min(eval_batches * B, (len(val) - 1) // T)
    assert n_windows == {2: 8, 50: 37}[eval_batches]
    total = 0.0
    for first in range(0, n_windows, B):
        starts = np.arange(first, min(first + B, n_windows)) * T  # window w starts at w*T
        x = np.stack([val[s0:s0 + T] for s0 in starts])
        y = np.stack([val[s0 + 1:s0 + T + 1] for s0 in starts])
        _, loss, _ = impl.forward(result.params, x, y)
        total += float(loss) * len(starts)
    want = total / n_windows
    assert last["val_loss"] == want, (
        f"{impl.name}: logged val_loss {last['val_loss']!r} at step 6, but the mean loss over the "
        f"first {n_windows} sequential validation windows is {want!r} (SPEC §data, §training)")
