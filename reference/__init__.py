"""reference: the whole Feste training system in readable, vectorised NumPy.

It *is* the specification in code (SPEC.md). `__all__` is the implementation
contract: any module exporting these names with the same signatures can be
checked by the conformance suite (`pytest --pyargs conformance --impl MODULE`).
"""
__version__ = "0.1.0"

# config and parameter table (SPEC section 2)
from .config import PRESETS, Config, preset
from .params import ParamSpec, Params, init_params, n_params, param_table

# optimiser, clipping, schedule (SPEC section 3)
from .optim import AdamWState, adamw_init, adamw_step, clip_grad_norm, grad_norm, learning_rate

__all__ = [
    "Config", "PRESETS", "preset",
    "ParamSpec", "Params", "param_table", "n_params", "init_params",
    "grad_norm", "clip_grad_norm", "AdamWState", "adamw_init", "adamw_step", "learning_rate",
]
