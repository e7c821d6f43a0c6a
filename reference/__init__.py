"""reference: the specification in code (SPEC.md), in readable, vectorised NumPy.

It holds what an implementation must compute and nothing else: config,
parameter table and init, layers, loss, model, dropout, optimiser, schedule,
tokenizer, data, the checkpoint and log formats, generation. The file rules
those formats share (atomic writes: `atomic_io`; regular files only and strict
JSON: `input_checks`) live here too, as public modules the application reuses.
The trainer, run directories and MPI plumbing are the application's
(`feste/`), which drives any implementation. `__all__` is the implementation
contract (one table: `reference/contract.py`): any module exporting these
names with the same signatures can be checked by the conformance suite
(`pytest --pyargs conformance --impl MODULE`).
"""
__version__ = "0.1.0"
# ruff: noqa: F401  (the imports below are the re-exports that __all__, built from contract.py, lists)

# config and parameter table (SPEC §model)
from .config import PRESETS, Config, preset
from .params import ParamSpec, Params, init_params, n_params, param_table

# tokenizer and data (SPEC §tokenizer and §data); the corpus functions live in
# reference.corpus and are not part of the contract
from .tokenizer import Tokenizer
from .data import TextDataLoader, random_batch, train_val_split

# model: layer pairs, loss, forward and backward (SPEC §model)
from .layers import (
    attention_backward, attention_forward, embedding_backward, embedding_forward,
    gelu_backward, gelu_forward, layernorm_backward, layernorm_forward,
    linear_backward, linear_forward,
)
from .loss import cross_entropy_backward, cross_entropy_forward
from .model import backward, forward

# dropout: the counter-based generator and the masks (SPEC §dropout)
from .dropout import DropoutKey, dropout_mask, philox4x32

# optimiser, clipping, schedule (SPEC §optimiser)
from .optim import AdamWState, adamw_init, adamw_step, clip_grad_norm, grad_norm, learning_rate

# checkpoints, FESTE_CKPT v1 (SPEC §checkpoint)
from .checkpoint import (
    Checkpoint, CheckpointError, checkpoint_from_bytes, checkpoint_to_bytes, load_checkpoint, save_checkpoint,
)

# CSV training log (SPEC §training)
from .logger import CSV_HEADER, TrainingLogger, format_log_row

# generation (SPEC §training)
from .generate import generate


# the contract: one table (reference/contract.py) names each export, its SPEC section and kind
from .contract import NAMES as _CONTRACT_NAMES  # noqa: E402

__all__ = list(_CONTRACT_NAMES)
