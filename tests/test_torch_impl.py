"""torch_impl outside the contract (SPEC §torch-impl): its correctly rounded
square root over the whole float range, and its place in the project
(nothing imports it unless asked; importing it changes no torch setting).

Its conformance is the whole suite, run with `--impl torch_impl` (.ci/run).
The AdamW tests there check the square root only on the values AdamW meets;
here it is checked against NumPy's (the IEEE square root) on every float32
significand and on random bit patterns of every exponent, edges included.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the optional extra `torch`)")

from torch_impl._ieee import sqrt_rn  # noqa: E402  (after the skip)

UINT = {np.float32: np.uint32, np.float64: np.uint64}


def _assert_sqrt_rn(x: np.ndarray) -> None:
    got = sqrt_rn(torch.from_numpy(x)).numpy()
    want = np.sqrt(x)  # the IEEE square root
    bits = UINT[x.dtype.type]
    differ = got.view(bits) != want.view(bits)
    assert not differ.any(), (
        f"sqrt_rn differs from the IEEE square root at {int(differ.sum())} of {x.size} {x.dtype} inputs, "
        f"first {x[differ][:3]!r}: got {got[differ][:3]!r}, expected {want[differ][:3]!r}")


def test_sqrt_rn_float32_every_significand():
    """Every float32 in [1, 4): every significand with an even and an odd
    exponent (the two cases of the root's rounding)."""
    _assert_sqrt_rn(np.arange(0x3F800000, 0x40800000, dtype=np.uint32).view(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_sqrt_rn_every_exponent_and_edges(dtype):
    """Random bit patterns of non-negative floats (every exponent, subnormals
    included), plus 0, the extremes, +inf and NaN."""
    bits = UINT[dtype]
    rng = np.random.default_rng(11)
    x = rng.integers(0, np.iinfo(bits).max >> 1, 500_000, dtype=bits, endpoint=True).view(dtype)
    info = np.finfo(dtype)
    edges = np.array([0.0, info.smallest_subnormal, info.tiny, info.max, 1.0, 2.0, 4.0, np.inf, np.nan], dtype=dtype)
    _assert_sqrt_rn(np.concatenate([x[np.isfinite(x)], edges]))


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_nothing_imports_torch_unless_asked():
    """reference, fast, the application and the conformance plugin import
    neither torch nor torch_impl (heavy imports only where used: pyproject's extras)."""
    out = _run("import sys, reference, feste.cli, conformance.plugin\n"
               "try:\n    import fast\nexcept ImportError:\n    pass\n"
               "print(','.join(sorted(n for n in ('torch', 'torch_impl') if n in sys.modules)))\n")
    assert out == "", f"imported without being asked: {out}"


@pytest.mark.slow
def test_import_changes_no_torch_setting():
    """Threads, default dtype and grad mode are torch's own after the import."""
    out = _run("import torch\n"
               "before = (torch.get_num_threads(), torch.get_num_interop_threads(), torch.get_default_dtype(),"
               " torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled())\n"
               "import torch_impl\n"
               "after = (torch.get_num_threads(), torch.get_num_interop_threads(), torch.get_default_dtype(),"
               " torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled())\n"
               "print(before == after)\n")
    assert out == "True"
