"""The comparison kinds a case may name (SPEC §case-json), written once on top of
the suite's assertion helpers (conformance/assertions.py), so a vector
failure reads like a failure of the Python path: the tensor, the metric
against its limit, the worst index and both values."""
from __future__ import annotations

import numpy as np

from conformance.assertions import (
    assert_allclose_rel, assert_bitwise, assert_bytes_equal, assert_rel_norm, assert_scaled_max, assert_within_ulp,
)

from .safetensors_io import DTYPES


def check_tensor(name: str, got, want: np.ndarray, spec: dict, expected: dict, context: dict) -> None:
    """Compare one output tensor as its case entry `spec` says; AssertionError naming what differs.
    `expected` holds the case's other expected tensors (for a `scale`)."""
    if got is None:
        raise AssertionError(f"{name}: the adapter wrote no tensor out.{name} (expected {spec['dtype']} "
                             f"{spec['shape']}) [{_ctx(context)}]")
    got = np.asarray(got)
    if got.dtype != DTYPES[spec["dtype"]] or list(got.shape) != list(spec["shape"]):
        raise AssertionError(f"{name}: got {got.dtype} {list(got.shape)}, the case asks for {spec['dtype']} "
                             f"{spec['shape']} [{_ctx(context)}]")
    kind = spec["compare"]
    ctx = dict(context, limit=spec.get("limit_name", "")) if "limit" in spec else context
    if kind == "exact":
        assert_bitwise(name, got, want, context)
    elif kind == "ulp":
        assert_within_ulp(name, got, want, spec["limit"], ctx)
    elif kind == "scaled_max":
        assert_scaled_max(name, got, want, spec["limit"], ctx)
    elif kind == "rel_norm":
        scale = spec.get("scale")
        if scale is not None:
            norm = float(np.linalg.norm(np.asarray(expected[scale], dtype=np.float64)))
            assert_rel_norm(name, got, want, spec["limit"], ctx, scale=norm, scale_name=scale)
        else:
            assert_rel_norm(name, got, want, spec["limit"], ctx)
    elif kind == "rel":
        assert_allclose_rel(name, got, want, spec["limit"], ctx)
    elif kind == "abs":
        got64 = got.astype(np.float64)
        err = np.abs(got64 - spec["value"])
        if not np.all(np.isfinite(got64)) or err.max(initial=0) > spec["limit"]:
            raise AssertionError(f"{name}: |got - {spec['value']!r}| = {err.max(initial=0):.3e} > limit "
                                 f"{spec['limit']:.1e} ({spec.get('limit_name', '')}); got {got64!r} "
                                 f"[{_ctx(context)}]")
    else:
        raise AssertionError(f"{name}: unknown comparison {kind!r} in the case (SPEC §case-json lists them)")


def check_file(name: str, got: bytes | None, want: bytes, context: dict) -> None:
    if got is None:
        raise AssertionError(f"{name}: the adapter wrote no file {name} [{_ctx(context)}]")
    assert_bytes_equal(name, got, want, context)


def _ctx(context: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in context.items())
