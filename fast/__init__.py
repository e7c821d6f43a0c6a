"""fast: the optimised twin of `reference` (SPEC §contract and §performance).

Same public names and signatures as `reference` (`__all__` is the contract).
Config, parameter table, checkpoint container, CSV logger and the sequential
data loader are re-exported from `reference` (nothing
to optimise); the tokenizer, layers, loss, model, optimiser, batch gather
and generation have their own multi-core Numba kernels and BLAS matmuls
(`fast/_numba.py` holds the compilation policy). `fast.warmup()` compiles
(or loads from the on-disk cache) every kernel and returns the seconds taken.
"""
__version__ = "0.1.0"

# re-exported: nothing to optimise (SPEC §contract)
from reference.config import PRESETS, Config, preset
from reference.params import ParamSpec, Params, init_params, n_params, param_table
from reference.checkpoint import (
    Checkpoint, CheckpointError, checkpoint_from_bytes, checkpoint_to_bytes, load_checkpoint, save_checkpoint,
)
from reference.logger import CSV_HEADER, TrainingLogger, format_log_row

# tokenizer (SPEC §tokenizer) and data (SPEC §data)
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

# dropout: Philox masks in Numba; the key names a training step's masks (SPEC §dropout)
from reference.dropout import DropoutKey
from .dropout import dropout_mask, philox4x32

# optimiser, clipping (own kernels), schedule and state (re-exported) (SPEC §optimiser)
from .optim import AdamWState, adamw_init, adamw_step, clip_grad_norm, grad_norm, learning_rate

# generation with a key/value cache (SPEC §training)
from .generate import generate


from ._warmup import warmup

# the contract: exactly reference's public names (conformance/test_contract.py checks each)
from reference import __all__ as _contract  # noqa: E402

__all__ = list(_contract)
