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

CONTRACT: tuple[ContractName, ...] = tuple(ContractName(*row) for row in (
    ("Config", _CONFIG, "class", "config"), ("PRESETS", _CONFIG, "value", "config"),
    ("preset", _CONFIG, "function", "config"),
    ("ParamSpec", _CONFIG, "class", "params"), ("Params", _CONFIG, "class", "params"),
    ("param_table", _CONFIG, "function", "params"), ("n_params", _CONFIG, "function", "params"),
    ("init_params", _CONFIG, "function", "params"),
    ("Tokenizer", _TOKENIZER, "class", "tokenizer"),
    ("train_val_split", "split", "function", "data"), ("TextDataLoader", "sequential-loader", "class", "data"),
    ("random_batch", "random-batches", "function", "data"),
    ("embedding_forward", _FORWARD, "function", "layers"), ("embedding_backward", _BACKWARD, "function", "layers"),
    ("layernorm_forward", _FORWARD, "function", "layers"), ("layernorm_backward", _BACKWARD, "function", "layers"),
    ("linear_forward", _FORWARD, "function", "layers"), ("linear_backward", _BACKWARD, "function", "layers"),
    ("attention_forward", _FORWARD, "function", "layers"), ("attention_backward", _BACKWARD, "function", "layers"),
    ("gelu_forward", _FORWARD, "function", "layers"), ("gelu_backward", _BACKWARD, "function", "layers"),
    ("cross_entropy_forward", _FORWARD, "function", "loss"), ("cross_entropy_backward", _BACKWARD, "function", "loss"),
    ("forward", _FORWARD, "function", "model"), ("backward", _BACKWARD, "function", "model"),
    ("DropoutKey", _DROPOUT, "class", "dropout"), ("philox4x32", _DROPOUT, "function", "dropout"),
    ("dropout_mask", _DROPOUT, "function", "dropout"),
    ("grad_norm", _OPTIM, "function", "optim"), ("clip_grad_norm", _OPTIM, "function", "optim"),
    ("AdamWState", _OPTIM, "class", "optim"), ("adamw_init", _OPTIM, "function", "optim"),
    ("adamw_step", _OPTIM, "function", "optim"), ("learning_rate", _OPTIM, "function", "optim"),
    ("Checkpoint", _CKPT, "class", "checkpoint"), ("CheckpointError", _CKPT, "class", "checkpoint"),
    ("checkpoint_to_bytes", _CKPT, "function", "checkpoint"), ("checkpoint_from_bytes", _CKPT, "function", "checkpoint"),
    ("save_checkpoint", _CKPT, "function", "checkpoint"), ("load_checkpoint", _CKPT, "function", "checkpoint"),
    ("CSV_HEADER", _LOG, "value", "logger"), ("format_log_row", _LOG, "function", "logger"),
    ("TrainingLogger", _LOG, "class", "logger"),
    ("generate", "generation", "function", "generate"),
))

NAMES: tuple[str, ...] = tuple(row.name for row in CONTRACT)
MODULES: tuple[str, ...] = tuple(dict.fromkeys(row.module for row in CONTRACT))  # in contract order
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
