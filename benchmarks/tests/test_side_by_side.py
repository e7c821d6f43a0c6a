"""Peers side by side in rotating rounds (benchmarks/tools/side_by_side.py): the
rotation, a row formed by hand from made-up rounds, a peer that cannot run a
cell, the usage errors, and one real run of the reference and the matmul peak."""
from __future__ import annotations

import pytest

from benchmarks.tools import side_by_side


class FakePeer:
    """Returns fixed seconds per cell and records each call (name, cell, warmup)."""

    def __init__(self, name, seconds, log, refuse=()):
        self.name, self.seconds, self.log, self.refuse = name, seconds, log, set(refuse)
        self.description = name

    def measure(self, preset, B, T, steps, warmup):
        self.log.append((self.name, f"{preset}-{B}x{T}", warmup))
        if preset in self.refuse:
            raise RuntimeError(f"skipped: no {preset} here")
        return self.seconds

    def end_cell(self):
        self.log.append((self.name, "end", None))

    def close(self):
        pass


def test_rounds_rotate_and_reverse_and_warm_up_first():
    """Three jobs over four rounds: abc, then the rotation bca reversed (acb), cab,
    then abc reversed (cba); the first measurement of each job in a cell gets the
    warm-up (here 3), every later one 1."""
    log = []
    a, b = FakePeer("a", 0.01, log), FakePeer("b", 0.02, log)
    peak = FakePeer(side_by_side.PEAK, 100.0, log)
    side_by_side.measure([a, b], ["tiny-16x64"], rounds=4, steps=1, warmup=3, peak=peak, printer=lambda s: None)
    order = "".join(name[0] if name != side_by_side.PEAK else "c" for name, cell, _ in log if cell != "end")
    assert order == "abc" "acb" "cab" "cba"
    assert [w for _, cell, w in log if cell != "end"] == [3, 3, 3] + [1] * 9
    assert [name for name, cell, _ in log if cell == "end"] == ["a", "b", side_by_side.PEAK]


def test_row_by_hand():
    """Two rounds of tiny 16x64 (4,328,521,728 training FLOPs): fast 50 then 40 ms,
    torch 90 then 60 ms, peak 100 then 80 GFLOP/s. Per round: fast's share of the
    peak 86.57/100 = 86.6% and 108.2/80 = 135.3%, torch's 48.1% and 90.2%; torch /
    fast 1.80 and 1.50. Medians of two are their means: 90 GFLOP/s, 45.0 ms,
    110.9%, 75.0 ms, 69.1%, 1.65x."""
    row = {"cell": "tiny-16x64", "flops": 4_328_521_728, "failed": {},
           "rounds": [{"fast": 0.050, "torch": 0.090, side_by_side.PEAK: 100.0},
                      {"fast": 0.040, "torch": 0.060, side_by_side.PEAK: 80.0}]}
    assert side_by_side.format_row(row, ["fast", "torch"], with_peak=True) == (
        "| tiny-16x64 | 90 (80-100) | 45.0 (40.0-50.0) | 111% (87-135) | 1.00x "
        "| 75.0 (60.0-90.0) | 69% (48-90) | 1.65x (1.50-1.80) |")
    without_peak = dict(row, rounds=[{k: v for k, v in r.items() if k != side_by_side.PEAK} for r in row["rounds"]])
    assert side_by_side.format_row(without_peak, ["fast", "torch"], with_peak=False) == (
        "| tiny-16x64 | 45.0 (40.0-50.0) | 1.00x | 75.0 (60.0-90.0) | 1.65x (1.50-1.80) |")
    header = side_by_side.header(["fast", "torch"], with_peak=True).splitlines()[0]
    assert header == ("| cell | peak GFLOP/s | fast ms | fast share of peak | fast / fast | torch ms "
                      "| torch share of peak | torch / fast |")


def test_a_peer_that_cannot_run_a_cell_says_why_and_the_others_go_on():
    log = []
    a, b = FakePeer("a", 0.01, log), FakePeer("b", 0.03, log, refuse={"small"})
    lines = []
    rows = side_by_side.measure([a, b], ["small-8x128", "tiny-16x64"], rounds=3, steps=2, warmup=1,
                                printer=lines.append)
    assert lines[0] == "| small-8x128 | 10.0 (10.0-10.0) | 1.00x | n/a (RuntimeError: skipped: no small here) |  |"
    assert lines[1] == "| tiny-16x64 | 10.0 (10.0-10.0) | 1.00x | 30.0 (30.0-30.0) | 3.00x (3.00-3.00) |"
    assert sum(1 for name, cell, _ in log if name == "b" and cell == "small-8x128") == 1  # not asked again
    assert rows[1]["rounds"] == [{"a": 0.01, "b": 0.03}] * 3


@pytest.mark.parametrize("args,message", [
    (["--cells", "tiny-16x64"], "name at least one peer"),
    (["--peer", "torch", "--impl", "fast"], "--peer torch needs --threads N"),
    (["--impl", "fast", "--cells", "tiny16x64"], "'tiny16x64' is not PRESET-BxT"),
    (["--impl", "fast", "--cells", "huge-1x8"], "unknown preset 'huge'"),
    (["--impl", "fast", "--rounds", "0"], "must be positive"),
    (["--impl", "fast", "--peak-repeats", "-1"], "--peak-repeats 0 or more"),
    (["--impl", "no_such_module_here", "--cells", "tiny-16x64"], "--impl no_such_module_here: cannot import"),
])
def test_usage_errors_are_clear(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        side_by_side.main(args + ["--out", str(tmp_path)])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_help_names_every_kind_of_peer(capsys):
    with pytest.raises(SystemExit) as exc:
        side_by_side.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert all(flag in out for flag in ("--impl NAME", "--peer", "--adapter CMD", "--peak-repeats", "--threads"))


def test_a_real_run_of_the_reference_beside_the_peak(tmp_path, capsys):
    """The reference's tiny 16x64 step and the matmul peak, two rounds, in this
    process: the table is printed and written, every figure a number."""
    assert side_by_side.main(["--impl", "reference", "--cells", "tiny-16x64", "--rounds", "2", "--steps", "1",
                              "--warmup", "1", "--peak-repeats", "1", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "side_by_side.md").read_text()
    assert text.startswith("# Side by side: reference; the environment's threads")
    row = next(line for line in text.splitlines() if line.startswith("| tiny-16x64 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 5 and cells[4] == "1.00x" and "n/a" not in row, row
    assert cells[3].endswith(")") and "%" in cells[3], row
    assert row in capsys.readouterr().out


def test_the_report_hands_rounds_and_adapters_to_this_tool(capsys, tmp_path):
    """`python -m benchmarks.tools.report --rounds N ...` (the command older measurements
    name) is this tool: its usage errors are this tool's."""
    from benchmarks.tools import report

    with pytest.raises(SystemExit) as exc:
        report.main(["--rounds", "3", "--peer", "torch", "--impl", "fast", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "side_by_side" in err and "--peer torch needs --threads N" in err
