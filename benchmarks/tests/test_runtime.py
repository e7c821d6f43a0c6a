"""benchmarks/lib/runtime.py: the kernel-pinning warning by hand, and the record's
fields from this process's own BLAS (threadpoolctl)."""
from __future__ import annotations

from benchmarks.lib import runtime

HASWELL = {"internal_api": "openblas", "version": "0.3.31", "architecture": "Haswell", "filepath": "libopenblas.so"}


def test_pinned_older_kernel_is_reported_with_its_variable():
    flags = {"sse2", "avx", "avx2", "fma", "avx512f"}
    warnings = runtime.kernel_warnings([HASWELL], flags, {"OPENBLAS_CORETYPE": "Haswell"})
    assert len(warnings) == 1
    assert "Haswell kernels (AVX2) on a CPU with AVX512" in warnings[0]
    assert "pinned by OPENBLAS_CORETYPE=Haswell" in warnings[0]
    assert runtime.NATIVE_COMMAND in warnings[0]


def test_no_warning_when_the_kernel_matches_the_cpu_or_is_unknown():
    avx2_cpu = {"avx", "avx2"}
    assert runtime.kernel_warnings([HASWELL], avx2_cpu, {}) == []
    assert runtime.kernel_warnings([dict(HASWELL, architecture="SkylakeX")], avx2_cpu | {"avx512f"}, {}) == []
    assert runtime.kernel_warnings([dict(HASWELL, architecture="NewArch")], {"avx512f"}, {}) == []
    assert runtime.kernel_warnings([HASWELL], set(), {}) == []  # flags unknown: no claim
    # older kernel without a variable: still said, with the cause
    (warning,) = runtime.kernel_warnings([HASWELL], {"avx512f"}, {})
    assert "no variable set" in warning


def test_runtime_record_of_this_process():
    import numpy  # noqa: F401  (loads its BLAS)

    info = runtime.runtime_info()
    assert info["blas"], "threadpoolctl found no BLAS although numpy is imported"
    for lib in info["blas"]:
        assert lib["version"] and lib["architecture"] and lib["threading_layer"] and lib["num_threads"] >= 1
    assert info["numba_threads"] >= 1 and info["numba_threading_layer"]
    lines = runtime.header_lines(info)
    assert lines[0].startswith("BLAS: ") and any(line.startswith("Numba ") for line in lines)
