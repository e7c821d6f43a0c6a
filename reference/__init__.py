"""reference: the whole Feste training system in readable, vectorised NumPy.

It *is* the specification in code (SPEC.md). `__all__` is the implementation
contract: any module exporting these names with the same signatures can be
checked by the conformance suite (`pytest --pyargs conformance --impl MODULE`).
"""
__version__ = "0.1.0"

# config and parameter table (SPEC section 2)
from .config import PRESETS, Config, preset
from .params import ParamSpec, Params, init_params, n_params, param_table

# tokenizer and data (SPEC sections 5 and 6); the corpus functions live in
# reference.corpus and are not part of the contract
from .tokenizer import Tokenizer
from .data import TextDataLoader, random_batch, train_val_split

# model: layer pairs, loss, forward and backward (SPEC section 2)
from .layers import (
    attention_backward, attention_forward, embedding_backward, embedding_forward,
    gelu_backward, gelu_forward, layernorm_backward, layernorm_forward,
    linear_backward, linear_forward,
)
from .loss import cross_entropy_backward, cross_entropy_forward
from .model import backward, forward

# dropout: the counter-based generator and the masks (SPEC section 2.7)
from .dropout import DropoutKey, dropout_mask, philox4x32

# optimiser, clipping, schedule (SPEC section 3)
from .optim import AdamWState, adamw_init, adamw_step, clip_grad_norm, grad_norm, learning_rate

# checkpoints, FESTE_CKPT v1 (SPEC section 4)
from .checkpoint import (
    Checkpoint, CheckpointError, checkpoint_from_bytes, checkpoint_to_bytes, load_checkpoint, save_checkpoint,
)

# CSV training log (SPEC section 7)
from .logger import CSV_HEADER, TrainingLogger, format_log_row

# generation (SPEC section 7)
from .generate import generate

# the trainer, written once for every implementation (SPEC section 7)
from .train import TrainingDiverged, TrainSettings, train

__all__ = [
    "Config", "PRESETS", "preset",
    "ParamSpec", "Params", "param_table", "n_params", "init_params",
    "Tokenizer", "train_val_split", "TextDataLoader", "random_batch",
    "embedding_forward", "embedding_backward", "layernorm_forward", "layernorm_backward",
    "linear_forward", "linear_backward", "attention_forward", "attention_backward",
    "gelu_forward", "gelu_backward", "cross_entropy_forward", "cross_entropy_backward",
    "forward", "backward",
    "DropoutKey", "philox4x32", "dropout_mask",
    "grad_norm", "clip_grad_norm", "AdamWState", "adamw_init", "adamw_step", "learning_rate",
    "Checkpoint", "CheckpointError", "checkpoint_to_bytes", "checkpoint_from_bytes",
    "save_checkpoint", "load_checkpoint",
    "CSV_HEADER", "format_log_row", "TrainingLogger",
    "generate",
    "TrainSettings", "train", "TrainingDiverged",
]
