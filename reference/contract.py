"""The implementation contract, written once: every public name an
implementation exports, the SPEC section that specifies it, and its kind.

`reference.__all__` is built from this table; the suite's contract checks,
its "missing name" messages and SPEC §contract's list are checked against it
(conformance/test_contract.py). A section is named by its anchor in SPEC.md
(`§forward`), never by number, so renumbering cannot make a message point
elsewhere; the test checks that every anchor cited here exists.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple


class ContractName(NamedTuple):
    name: str
    section: str  # a SPEC.md anchor, e.g. "forward" (cited as SPEC §forward)
    kind: str  # "class", "function" or "value"
    module: str  # the module of reference (and of an implementation) that holds it, e.g. "layers"


_CONFIG = "config"
_FORWARD = "forward"
_BACKWARD = "backward"
_DROPOUT = "dropout"
_OPTIM = "optimiser"
_CKPT = "checkpoint"
_TOKENIZER = "tokenizer"
_LOG = "csv-log"

# module -> its names in contract order: (name, SPEC section, kind)
_BY_MODULE: dict[str, tuple[tuple[str, str, str], ...]] = {
    "config": (("Config", _CONFIG, "class"), ("PRESETS", _CONFIG, "value"), ("preset", _CONFIG, "function")),
    "params": (("ParamSpec", _CONFIG, "class"), ("Params", _CONFIG, "class"), ("param_table", _CONFIG, "function"),
               ("n_params", _CONFIG, "function"), ("init_params", _CONFIG, "function")),
    "tokenizer": (("Tokenizer", _TOKENIZER, "class"),),
    "data": (("train_val_split", "split", "function"), ("TextDataLoader", "sequential-loader", "class"),
             ("random_batch", "random-batches", "function")),
    "layers": (("embedding_forward", _FORWARD, "function"), ("embedding_backward", _BACKWARD, "function"),
               ("layernorm_forward", _FORWARD, "function"), ("layernorm_backward", _BACKWARD, "function"),
               ("linear_forward", _FORWARD, "function"), ("linear_backward", _BACKWARD, "function"),
               ("attention_forward", _FORWARD, "function"), ("attention_backward", _BACKWARD, "function"),
               ("gelu_forward", _FORWARD, "function"), ("gelu_backward", _BACKWARD, "function")),
    "loss": (("cross_entropy_forward", _FORWARD, "function"), ("cross_entropy_backward", _BACKWARD, "function")),
    "model": (("forward", _FORWARD, "function"), ("backward", _BACKWARD, "function")),
    "dropout": (("DropoutKey", _DROPOUT, "class"), ("philox4x32", _DROPOUT, "function"),
                ("dropout_mask", _DROPOUT, "function")),
    "optim": (("grad_norm", _OPTIM, "function"), ("clip_grad_norm", _OPTIM, "function"),
              ("AdamWState", _OPTIM, "class"), ("adamw_init", _OPTIM, "function"),
              ("adamw_step", _OPTIM, "function"), ("learning_rate", _OPTIM, "function")),
    "checkpoint": (("Checkpoint", _CKPT, "class"), ("CheckpointError", _CKPT, "class"),
                   ("checkpoint_to_bytes", _CKPT, "function"), ("checkpoint_from_bytes", _CKPT, "function"),
                   ("save_checkpoint", _CKPT, "function"), ("load_checkpoint", _CKPT, "function")),
    "logger": (("CSV_HEADER", _LOG, "value"), ("format_log_row", _LOG, "function"), ("TrainingLogger", _LOG, "class")),
    "generate": (("generate", "generation", "function"),),
}
CONTRACT: tuple[ContractName, ...] = tuple(ContractName(name, section, kind, module)
                                           for module, rows in _BY_MODULE.items() for name, section, kind in rows)

NAMES: tuple[str, ...] = tuple(row.name for row in CONTRACT)
MODULES: tuple[str, ...] = tuple(_BY_MODULE)  # in contract order
_BY_NAME = {row.name: row for row in CONTRACT}


def section_of(name: str) -> str:
    """'SPEC §forward' for a contract name; 'SPEC §contract' for any other."""
    row = _BY_NAME.get(name)
    return f"SPEC §{row.section}" if row else "SPEC §contract"


def exports(package: str, own: tuple[str, ...]) -> dict[str, object]:
    """The contract's names for an implementation `package` (its `__init__` makes them its
    globals): each name of a module in `own` from `package.<module>`, which must hold it
    (a module may re-export a name of reference's own, as fast.optim does AdamWState),
    every other name from `reference.<module>` (nothing to optimise: config, parameter
    table, checkpoint container, CSV logger). ValueError for a module the contract does
    not name; AttributeError, at import, for a name an own module lacks."""
    unknown = [m for m in own if m not in MODULES]
    if unknown:
        raise ValueError(f"{package}: {', '.join(unknown)} are not modules of the contract ({', '.join(MODULES)})")
    return {row.name: getattr(importlib.import_module(f"{package if row.module in own else 'reference'}.{row.module}"),
                              row.name)
            for row in CONTRACT}
