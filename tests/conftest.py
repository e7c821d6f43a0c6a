"""Fixtures shared by the application tests."""
import os

import numpy as np
import pytest

WORDS = ("to be or not that is the question whether tis nobler in mind suffer slings arrows of "
         "outrageous fortune take arms against a sea troubles and by opposing end them").split()


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """~15 KB of seeded pseudo-verse: enough tokens for T = 8 batches and validation."""
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=8)).capitalize() + "," for _ in range(400)]
    path = tmp_path_factory.mktemp("corpus") / "verse.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class ClosedPipe:
    """A stdout whose reader has gone (`feste ... | head -1`): every write raises BrokenPipeError."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.fixture
def closed_pipe() -> ClosedPipe:
    """A stdout whose reader has gone: put it in place with monkeypatch.setattr(sys, "stdout", closed_pipe)."""
    return ClosedPipe()


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    """The umask the test relies on, set here whatever the process inherited, and restored."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)
