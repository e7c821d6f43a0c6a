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

# the contract (SPEC §contract), built from its one table: the names of fast's own modules (its
# kernels); config, parameter table, checkpoint container and CSV logger are reference's, re-exported
from reference.contract import NAMES as _CONTRACT_NAMES, exports as _exports

globals().update(_exports(__name__, own=("tokenizer", "data", "layers", "loss", "model", "dropout", "optim",
                                         "generate")))
__all__ = list(_CONTRACT_NAMES)

from ._warmup import warmup  # noqa: E402, F401  (fast.warmup(): not part of the contract)
