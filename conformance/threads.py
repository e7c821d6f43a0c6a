"""The thread-count knob the suite turns (SPEC §parallel-split): Numba's.

An implementation's results must not depend on how many threads run it. The
suite checks that by running the same calls with one Numba thread and with
all of them (`numba_threads`); an implementation that does not use Numba is
unaffected, and holds the property trivially.
"""
from __future__ import annotations

import contextlib


def _numba():
    import numba

    return numba


@contextlib.contextmanager
def numba_threads(n: int):
    """Numba's thread count set to `n` inside the block, restored after it."""
    numba = _numba()
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def all_threads() -> int:
    """The number of threads Numba was started with."""
    return _numba().config.NUMBA_NUM_THREADS
