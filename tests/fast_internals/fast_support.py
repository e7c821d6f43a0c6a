"""Helpers of fast's own tests (tests/fast_internals/), importable by the processes they start."""
from __future__ import annotations

import importlib
import pkgutil


def fast_kernels() -> dict:
    """Every Numba dispatcher defined in a fast/ module, by `module.name`."""
    import numba

    import fast

    found = {}
    for info in pkgutil.iter_modules(fast.__path__):
        module = importlib.import_module(f"fast.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    return found
