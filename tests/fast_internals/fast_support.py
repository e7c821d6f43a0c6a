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


def check_found_gemms_multiply(found, seed: int) -> None:
    """`fast._blas._load_openblas()`'s answer (set-threads function, gemm by dtype)
    multiplies a product with a column-major (transposed) operand exactly, in float32
    and float64, through the lanes fast launches it on."""
    import numpy as np

    import fast._blas as fb

    assert found is not None
    set_local, gemms = found
    assert sorted(str(d) for d in gemms) == ["float32", "float64"]
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        a = rng.integers(-4, 5, (300, 70)).astype(dtype)
        b = rng.integers(-4, 5, (70, 90)).astype(dtype).T.copy().T  # column-major: a transposed layout
        out = np.full((300, 90), np.nan, dtype=dtype)
        plan = fb._plan((fb.Product(a, b, out),), np.dtype(dtype))
        assert plan is not None
        fb._gemm_lanes(gemms[np.dtype(dtype)], set_local, plan.calls, plan.starts, dtype(1.0), dtype(0.0))
        assert np.array_equal(out, a @ b), dtype
