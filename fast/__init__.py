"""fast: the optimised twin of `reference` (SPEC sections 1 and 9).

Same public names and signatures as `reference` (`__all__` is the contract).
Config, parameter table, checkpoint container, CSV logger and CLI plumbing
are re-exported from `reference`; the tokenizer, layers, loss, model,
optimiser and generation have their own multi-core Numba kernels and BLAS
matmuls (`fast/_numba.py` holds the compilation policy).
"""
__version__ = "0.1.0"

# re-exported: nothing to optimise (SPEC section 1)
from reference.config import PRESETS, Config, preset
from reference.params import ParamSpec, Params, init_params, n_params, param_table

# optimiser, clipping (own kernels), schedule and state (re-exported) (SPEC section 3)
from .optim import AdamWState, adamw_init, adamw_step, clip_grad_norm, grad_norm, learning_rate

__all__ = [
    "Config", "PRESETS", "preset",
    "ParamSpec", "Params", "param_table", "n_params", "init_params",
    "grad_norm", "clip_grad_norm", "AdamWState", "adamw_init", "adamw_step", "learning_rate",
]
