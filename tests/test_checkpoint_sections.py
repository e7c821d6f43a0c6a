"""The sections `reference.checkpoint.read_checkpoint` reports: what `feste inspect` prints
(SPEC §checkpoint, §command-line).

`read_checkpoint(path) -> (checkpoint, sections, file_size)` is not in the contract: it
serves the `feste` application, so it is tested here, in-process (the mutation target
`reference` runs this file; a subprocess would not see mutmut's mutants).
tests/test_cli.py checks the same through `feste inspect --json` after a training run.
The expected offsets and lengths are summed from SPEC's layout, never read from the file.
"""
from __future__ import annotations

import numpy as np
import pytest

from reference import AdamWState, Checkpoint, Config, Params, Tokenizer, n_params, save_checkpoint
from reference.checkpoint import read_checkpoint

# V, C, NH, L, block_size; the config JSON as SPEC §checkpoint writes it
CONFIG = dict(vocab_size=257, n_embd=4, n_heads=2, n_layers=2, block_size=3)
CONFIG_JSON = '{"vocab_size":257,"n_embd":4,"n_heads":2,"n_layers":2,"block_size":3,"dropout_rate":0.0}'
METADATA = {"step": 7, "best_val_loss": 4.5, "best_val_step": 5}
METADATA_JSON = '{"step":7,"best_val_loss":4.5,"best_val_step":5}'


def tokenizer_json() -> str:
    """Canonical tokenizer JSON (SPEC §tokenizer) with one merge ("a", "b")."""
    vocab = ",".join(f'"<{b:02x}>":{b}' for b in range(256))
    return '{"vocab":{' + vocab + ',"<61><62>":256},"merges":[["<61>","<62>"]],"unk_token":"<unk>"}'


def random_params(config: Config, seed: int) -> Params:
    return Params(config, np.random.default_rng(seed).standard_normal(n_params(config)).astype(np.float32))


@pytest.mark.parametrize("training, with_tokenizer", [(False, False), (True, True), (True, False), (False, True)],
                         ids=["inference", "training+tokenizer", "training", "inference+tokenizer"])
def test_sections_cover_the_file_in_layout_order(tmp_path, training, with_tokenizer):
    """SPEC §command-line (`feste inspect --json`): the sections `header`, `config`,
    `parameters`, `optimizer`, `tokenizer`, `metadata`, in file order, each
    (name, offset, length), together covering the file from byte 0 to its end; an
    absent optimizer or tokenizer is its flag byte alone. The lengths are SPEC
    §checkpoint's layout: the magic and version; the u32 length and config JSON;
    u32 n_blocks and each tensor (u32 ndim, the dims, u32 numel, the f32 values);
    the flag, u64 step, three f32 and two moments per parameter; the flag, u32
    length and tokenizer JSON; the u32 length and metadata JSON."""
    config = Config(**CONFIG)
    params = random_params(config, 0)
    state = None
    if training:
        state = AdamWState(m=random_params(config, 1), v=random_params(config, 2), step=7, beta1=0.9, beta2=0.95,
                           eps=1e-8)
        state.v.data[...] = np.abs(state.v.data)
    tokenizer = Tokenizer.from_json(tokenizer_json()) if with_tokenizer else None
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, Checkpoint(config, params, state, tokenizer, dict(METADATA)))

    tensors = sum(4 * (2 + len(spec.shape)) + 4 * int(np.prod(spec.shape)) for spec in params.table)
    lengths = [("header", len(b"FESTE_CKPT") + 1), ("config", 4 + len(CONFIG_JSON)), ("parameters", 4 + tensors),
               ("optimizer", 1 + (8 + 3 * 4 + 2 * tensors if training else 0)),
               ("tokenizer", 1 + (4 + len(tokenizer_json()) if with_tokenizer else 0)),
               ("metadata", 4 + len(METADATA_JSON))]
    expected, offset = [], 0
    for name, length in lengths:
        expected.append((name, offset, length))
        offset += length

    checkpoint, sections, size = read_checkpoint(path)
    assert [tuple(s) for s in sections] == expected
    assert size == offset == path.stat().st_size
    assert checkpoint.kind == ("training" if training else "inference")
    assert (checkpoint.tokenizer is not None) == with_tokenizer
