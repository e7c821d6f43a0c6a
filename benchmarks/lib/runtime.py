"""What the numbers were measured on (SPEC §flops): the BLAS library,
its version, threading layer and kernel architecture as threadpoolctl
reports them, Numba's thread count and threading layer, the CPU's vector
extensions, and whether an environment variable pins BLAS kernels older
than the CPU supports.

`runtime_info()` goes into every benchmark's `extra_info` (benchmarks/conftest.py)
and into the JSON's `machine_info` (the report's header reads it there).

A pinned kernel matters: this environment may set OPENBLAS_CORETYPE=Haswell,
under which OpenBLAS runs AVX2 kernels on a CPU with AVX-512 and the
"float32 matmul peak" is about half the machine's. The suite never changes
those variables (tests and CI must pass either way); the report says when
they are in force, and docs/BENCHMARKS.md shows how to benchmark with native kernels:
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE feste bench ...`.
"""
from __future__ import annotations

import os

# Variables that change which BLAS kernels run or how they block.
KERNEL_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE", "MKL_ENABLE_INSTRUCTIONS",
               "MKL_DEBUG_CPU_TYPE")
# Thread settings in force (recorded, never changed here).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "NUMBA_THREADING_LAYER", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")

# Vector ISA levels, oldest first, and the CPU flag that shows each.
ISA_LEVELS = ("sse", "avx", "avx2", "avx512")
ISA_FLAG = {"avx": "avx", "avx2": "avx2", "avx512": "avx512f"}
# OpenBLAS kernel architectures (threadpoolctl's `architecture`, lower-cased)
# and the widest ISA level their sgemm kernels use.
OPENBLAS_ARCH_ISA = {
    "skylakex": "avx512", "cooperlake": "avx512", "sapphirerapids": "avx512",
    "haswell": "avx2", "zen": "avx2", "excavator": "avx2",
    "sandybridge": "avx", "bulldozer": "avx", "piledriver": "avx", "steamroller": "avx",
    "nehalem": "sse", "core2": "sse", "penryn": "sse", "dunnington": "sse", "atom": "sse",
    "prescott": "sse", "barcelona": "sse", "opteron": "sse", "katmai": "sse",
}
NATIVE_COMMAND = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE feste bench ..."


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The first CPU's flags from /proc/cpuinfo (empty when unreadable: not Linux)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_isa(flags: set[str]) -> str | None:
    """The widest vector ISA level the flags show, or None when unknown."""
    if not flags:
        return None
    best = "sse"
    for level in ISA_LEVELS[1:]:
        if ISA_FLAG[level] in flags:
            best = level
    return best


def blas_libraries() -> list[dict]:
    """threadpoolctl's record of every BLAS loaded in this process (library,
    version, threading layer, kernel architecture, threads, file)."""
    from threadpoolctl import threadpool_info

    keep = ("internal_api", "prefix", "version", "threading_layer", "architecture", "num_threads")
    return [dict({k: info.get(k) for k in keep}, filepath=os.path.basename(info.get("filepath") or ""))
            for info in threadpool_info() if info.get("user_api") == "blas"]


def numba_info() -> dict:
    """Numba's thread count and threading layer (the layer is known once a
    parallel kernel has run; before that, the configured choice)."""
    try:
        import numba
    except ImportError:
        return {"numba": None}
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = f"not started (configured: {numba.config.THREADING_LAYER})"
    return {"numba": numba.__version__, "numba_threads": int(numba.get_num_threads()),
            "numba_threading_layer": layer}


def kernel_warnings(blas: list[dict], flags: set[str], environ=os.environ) -> list[str]:
    """One sentence per BLAS whose kernel architecture is older than the CPU
    supports, naming the variable that pins it when one is set."""
    have = cpu_isa(flags)
    if have is None:
        return []
    out = []
    for lib in blas:
        arch = (lib.get("architecture") or "").lower()
        uses = OPENBLAS_ARCH_ISA.get(arch)
        if uses is None or ISA_LEVELS.index(uses) >= ISA_LEVELS.index(have):
            continue
        pins = [f"{v}={environ[v]}" for v in KERNEL_VARS if v in environ]
        cause = f"pinned by {', '.join(pins)}" if pins else "no variable set: the library chose it"
        out.append(f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('filepath')}) runs "
                   f"{lib.get('architecture')} kernels ({uses.upper()}) on a CPU with {have.upper()} "
                   f"({cause}); the matmul peak and every BLAS-bound time are below this machine's. "
                   f"Native kernels: {NATIVE_COMMAND}")
    return out


def runtime_info() -> dict:
    """Everything above as one JSON-ready dict."""
    flags = cpu_flags()
    blas = blas_libraries()
    return {
        "blas": blas,
        **numba_info(),
        "cpu_isa": cpu_isa(flags),
        "env": {v: os.environ[v] for v in KERNEL_VARS + THREAD_VARS if v in os.environ},
        "kernel_warnings": kernel_warnings(blas, flags),
    }


def header_lines(info: dict) -> list[str]:
    """Markdown lines for a report header from `runtime_info()`."""
    lines = []
    for lib in info.get("blas") or []:
        lines.append(f"BLAS: {lib.get('internal_api')} {lib.get('version')} ({lib.get('filepath')}), "
                     f"kernel {lib.get('architecture')}, threading {lib.get('threading_layer')}, "
                     f"{lib.get('num_threads')} threads.")
    if info.get("numba"):
        lines.append(f"Numba {info['numba']}: {info.get('numba_threads')} threads, "
                     f"threading layer {info.get('numba_threading_layer')}.")
    if info.get("cpu_isa"):
        lines.append(f"CPU vector extensions: up to {info['cpu_isa'].upper()}.")
    env = info.get("env") or {}
    if env:
        lines.append("Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()) + ".")
    for warning in info.get("kernel_warnings") or []:
        lines.append(f"**Warning: {warning}**")
    return lines
