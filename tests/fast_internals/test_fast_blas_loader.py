"""fast/_blas.py's loader finds the gemm of an OpenBLAS of any of the symbol
namings it knows (its docstring: NumPy 2's ILP64 scipy-openblas suffixes its
symbols and takes 64-bit sizes; other builds name them plainly, with 64-bit
or 32-bit sizes).

NumPy's own library has one naming, so the others are checked on a stand-in:
a small C library with `openblas_set_num_threads_local` and a naive
row-major `cblas_?gemm` under the naming being checked, compiled here (the
test is skipped without a C compiler), put where the loader searches, after
a file that is no library.
"""
from __future__ import annotations

import ctypes
import fnmatch
import os
import shutil
import subprocess
import types

import numpy as np
import pytest

from fast_support import check_found_gemms_multiply

fb = pytest.importorskip("fast._blas")

STAND_IN = r"""
#include <stdint.h>
static __thread int threads = 1;
int openblas_set_num_threads_local(int n) { int prev = threads; threads = n; return prev; }
#define GEMM(NAME, REAL) \
void NAME(int order, int ta, int tb, SIZE m, SIZE n, SIZE k, REAL alpha, const REAL *a, SIZE lda, \
          const REAL *b, SIZE ldb, REAL beta, REAL *c, SIZE ldc) { \
    for (SIZE i = 0; i < m; i++) for (SIZE j = 0; j < n; j++) { \
        REAL s = 0; \
        for (SIZE p = 0; p < k; p++) \
            s += (ta == 112 ? a[p * lda + i] : a[i * lda + p]) * (tb == 112 ? b[j * ldb + p] : b[p * ldb + j]); \
        c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]); } }
GEMM(cblas_sgemmSUFFIX, float)
GEMM(cblas_dgemmSUFFIX, double)
"""


PLACES = ["../numpy.libs/libopenblas", ".libs/libscipy_openblas", ".libs/libopenblas"]  # under numpy/
NAMINGS = [("64_", ctypes.c_int64), ("", ctypes.c_int)]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("suffix, size_t", NAMINGS, ids=["ilp64", "lp64"])
def test_loader_finds_the_gemm_of_each_symbol_naming_and_place(tmp_path, monkeypatch, place, suffix, size_t):
    """A library where NumPy's wheels (of this or an older layout) put theirs, whose gemm
    symbols are named cblas_sgemm64_ (64-bit sizes) or cblas_sgemm (32-bit sizes),
    is found with that naming and size, past a file of the same pattern that is no
    library; a launch through its sgemm and dgemm computes a @ b (small integers: exact)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in library")
    src = tmp_path / "standin.c"
    src.write_text(STAND_IN.replace("SUFFIX", suffix).replace("SIZE", "int64_t" if suffix else "int"))
    lib = tmp_path / "standin.so"
    built = subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, f"the stand-in library does not compile:\n{built.stderr}"
    broken = tmp_path / "broken.so"
    broken.write_text("not a shared library")
    here = os.path.dirname(np.__file__)
    files = {os.path.join(here, f"{place}_0broken.so"): str(broken),  # sorted before the stand-in
             os.path.join(here, f"{place}_standin.so"): str(lib)}

    def glob_stand_in(pattern):  # these two files are all there is
        return sorted(real for virtual, real in files.items() if fnmatch.fnmatchcase(virtual, pattern))

    monkeypatch.setattr(fb, "glob", types.SimpleNamespace(glob=glob_stand_in))  # fast/_blas.py's glob only
    found = fb._load_openblas()
    assert found is not None, f"the stand-in {place}_standin.so with cblas_sgemm{suffix} was not found"
    for dtype, gemm in found[1].items():
        assert gemm.argtypes[3] is size_t, f"{dtype}: sizes passed as {gemm.argtypes[3].__name__}"
    check_found_gemms_multiply(found, seed=3)
