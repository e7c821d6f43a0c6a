"""The mutation tool's own bookkeeping (conformance/mutation, docs/MUTATION_TESTING.md):
how a mutmut state becomes verdicts, how triage files judge survivors, how the score
is counted, and which mutants a resumed run takes up. mutmut itself is not run here:
each test builds the state mutmut leaves behind (a mutated copy of a module and its
.meta file of exit codes) in a temporary folder."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conformance.mutation import __main__ as tool

# a module as mutmut 3 writes it: the original function renamed `x_NAME__mutmut_orig`
# beside one function per mutant, `x_NAME__mutmut_N`
MUTATED = textwrap.dedent('''\
    def x_clip__mutmut_orig(norm, max_norm):
        if norm > max_norm:
            return max_norm / norm
        return 1.0
    def x_clip__mutmut_1(norm, max_norm):
        if norm >= max_norm:
            return max_norm / norm
        return 1.0
    def x_clip__mutmut_2(norm, max_norm):
        if norm > max_norm:
            return max_norm * norm
        return 1.0
    def x_clip__mutmut_3(norm, max_norm):
        if norm > max_norm:
            return max_norm / norm
        return 2.0
    def x_check__mutmut_orig(n):
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
    def x_check__mutmut_1(n):
        if n < 1:
            raise ValueError(f"N MUST BE POSITIVE, GOT {n}")
    def x_check__mutmut_2(n):
        if n < 1 or True:
            raise ValueError(f"n must be positive, got {n}")
''')
# exit codes as mutmut records them: 1 a failing test (killed), 0 every test passed
# (survived), 33 no test calls the function, None not run yet, 24 a timeout
CODES = {"pkg.mod.x_clip__mutmut_1": 0, "pkg.mod.x_clip__mutmut_2": 1, "pkg.mod.x_clip__mutmut_3": None,
         "pkg.mod.x_check__mutmut_1": 0, "pkg.mod.x_check__mutmut_2": 24}


def write_state(workdir: Path, codes: dict = CODES) -> None:
    (workdir / "mutants" / "pkg").mkdir(parents=True)
    (workdir / "mutants" / "pkg" / "mod.py").write_text(MUTATED)
    (workdir / "mutants" / "pkg" / "mod.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))


def write_triage(folder: Path, **files: str) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(textwrap.dedent(text))
    return folder


def mutants_by_key(tmp_path, triage_text: str = "") -> dict[str, tool.Mutant]:
    write_state(tmp_path / "work")
    triage = tool.Triage.load(write_triage(tmp_path / "triage", **({"pkg.mod": triage_text} if triage_text else {})))
    return {m.key: m for m in tool.describe_mutants(tmp_path / "work", ["pkg/mod.py"], triage)}


def test_verdicts_operators_and_contexts(tmp_path):
    """Each mutant's status follows its exit code; its change is the differing line of the
    original and the mutant; its operator and context are read from the syntax trees."""
    m = mutants_by_key(tmp_path)
    assert {k: v.status for k, v in m.items()} == {
        "pkg.mod.x_clip__mutmut_1": "survived", "pkg.mod.x_clip__mutmut_2": "killed",
        "pkg.mod.x_clip__mutmut_3": "not checked", "pkg.mod.x_check__mutmut_1": "survived",
        "pkg.mod.x_check__mutmut_2": "killed"}
    first = m["pkg.mod.x_clip__mutmut_1"]
    assert (first.function, first.before, first.after) == ("pkg.mod.clip", "if norm > max_norm:",
                                                           "if norm >= max_norm:")
    assert (first.operator, first.context) == ("comparison", "code")
    assert (m["pkg.mod.x_clip__mutmut_2"].operator, m["pkg.mod.x_clip__mutmut_3"].operator) == ("arithmetic", "number")
    assert (m["pkg.mod.x_check__mutmut_1"].operator, m["pkg.mod.x_check__mutmut_1"].context) == ("string-case", "raise")
    assert m["pkg.mod.x_check__mutmut_2"].operator == "condition"
    assert m["pkg.mod.x_check__mutmut_2"].timeout and not m["pkg.mod.x_clip__mutmut_2"].timeout
    assert [k for k, v in m.items() if v.surviving] == ["pkg.mod.x_clip__mutmut_1", "pkg.mod.x_check__mutmut_1"]


def test_triage_entries_and_rules_judge_survivors_only_where_they_match(tmp_path):
    """An [[equivalent]] entry matches its function and its before/after lines (white space
    aside); a [[rule]] its operator and context (and function when it names one). A match
    turns a survivor into an equivalent mutant with the entry's reason; nothing else is judged."""
    m = mutants_by_key(tmp_path, '''\
        [[equivalent]]
        function = "pkg.mod.clip"
        before = '  if norm > max_norm:'
        after = 'if norm >= max_norm:  '
        reason = "at norm == max_norm the factor is exactly 1"

        [[rule]]
        name = "check-message-case"
        function = "pkg.mod.check"
        operator = "string-case"
        context = "raise"
        reason = "the case of the message"

        [[rule]]
        name = "other-function"
        function = "pkg.mod.elsewhere"
        operator = "*"
        context = "code"
        reason = "never matches here"
        ''')
    assert m["pkg.mod.x_clip__mutmut_1"].equivalent == "at norm == max_norm the factor is exactly 1"
    assert m["pkg.mod.x_check__mutmut_1"].equivalent.startswith("rule check-message-case:")
    assert not [k for k, v in m.items() if v.surviving]
    assert m["pkg.mod.x_clip__mutmut_2"].equivalent is None  # killed mutants are never judged


def test_a_triage_entry_without_its_reason_is_refused_naming_the_file(tmp_path):
    folder = write_triage(tmp_path / "triage", **{"pkg.mod": '''\
        [[equivalent]]
        function = "pkg.mod.clip"
        before = "a"
        after = "b"
        '''})
    with pytest.raises(SystemExit, match=r"pkg\.mod\.toml.*pkg\.mod\.clip.*reason"):
        tool.Triage.load(folder)
    (folder / "pkg.mod.toml").write_text("[[equivalent]\n")
    with pytest.raises(SystemExit, match=r"pkg\.mod\.toml"):
        tool.Triage.load(folder)


def test_the_score_leaves_out_equivalent_and_not_run_mutants(tmp_path):
    """Score = killed / (generated - equivalent - not run): here 2 killed (one by timeout),
    1 equivalent, 1 surviving, 1 not run: 2 / (5 - 1 - 1)."""
    m = mutants_by_key(tmp_path, '''\
        [[rule]]
        name = "check-message-case"
        operator = "string-case"
        context = "raise"
        reason = "the case of the message"
        ''')
    report = tool.format_report(list(m.values()), "python -m conformance.mutation run pkg/mod.py")
    row = next(line for line in report.splitlines() if line.startswith("| pkg.mod |"))
    assert row == "| pkg.mod | 5 | 2 | 1 | 1 | 1 | 0 | 1 | 66.7% |"


def _fake_mutmut(tmp_path, monkeypatch, codes: dict) -> list:
    """A target state in tmp_path/work with these exit codes (and a trace), and mutmut
    replaced by a recorder: the list of the commands the tool starts."""
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "prepare_workdir", lambda name, target: tmp_path / "work")
    write_state(tmp_path / "work", codes)
    (tmp_path / "work" / "mutants" / "mutmut-stats.json").write_text("{}")
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(tool.subprocess, "run", fake_run)
    monkeypatch.setattr(tool.shutil, "which", lambda name, path=None: "/usr/bin/mutmut")  # not installed by '.[test]'
    return commands


def test_a_run_on_some_files_takes_up_only_the_mutants_without_a_verdict(tmp_path, monkeypatch):
    """An interrupted run goes on where it stopped; --again runs every mutant of the files."""
    commands = _fake_mutmut(tmp_path, monkeypatch, CODES)
    target = {"files": ["pkg/mod.py", "pkg/other.py"], "tests": []}
    assert tool.run_target("t", target, ["pkg/mod.py"], 2, []) == 0
    assert commands[-1][-1:] == ["pkg.mod.x_clip__mutmut_3"] and "pkg.mod.x_clip__mutmut_1" not in commands[-1]
    tool.run_target("t", target, ["pkg/mod.py"], 2, [], again=True)
    assert commands[-1][-1:] == ["pkg.mod.*"]
    write_state(tmp_path / "again", {k: 1 for k in CODES})
    monkeypatch.setattr(tool, "prepare_workdir", lambda name, target: tmp_path / "again")
    (tmp_path / "again" / "mutants" / "mutmut-stats.json").write_text("{}")
    n = len(commands)
    assert tool.run_target("t", target, ["pkg/mod.py"], 2, []) == 0
    assert len(commands) == n  # every mutant has its verdict: mutmut is not started


def test_a_changed_source_keeps_its_verdicts_and_is_traced_again(tmp_path, monkeypatch):
    """Editing a mutated file (a fix, a test helper) must not wipe the file's
    verdicts: mutmut itself mutates the changed functions afresh and keeps the
    others by their hashes. The tool only drops mutmut's record of which tests
    call which function, so that new functions are traced."""
    root = tmp_path / "root"
    (root / "pkg").mkdir(parents=True)
    source = root / "pkg" / "mod.py"
    source.write_text("def f():\n    return 1\n")
    monkeypatch.setattr(tool, "ROOT", root)
    monkeypatch.setattr(tool, "WORK", tmp_path / "work")
    monkeypatch.setattr(tool, "PACKAGES", ("pkg",))
    monkeypatch.setattr(tool, "DOCUMENTS", ())
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    target = {"files": ["pkg/mod.py"], "tests": ["tests"]}
    workdir = tool.prepare_workdir("t", target)
    meta, stats = workdir / "mutants" / "pkg" / "mod.py.meta", workdir / "mutants" / "mutmut-stats.json"
    meta.parent.mkdir(parents=True)
    meta.write_text('{"exit_code_by_key": {"pkg.mod.x_f__mutmut_1": 1}}')
    stats.write_text("{}")

    tool.prepare_workdir("t", target)  # unchanged: nothing is touched
    assert meta.is_file() and stats.is_file()

    source.write_text("def f():\n    return 2\n")
    tool.prepare_workdir("t", target)
    assert meta.read_text() == '{"exit_code_by_key": {"pkg.mod.x_f__mutmut_1": 1}}', "the verdicts were wiped"
    assert not stats.exists(), "which tests call which function was not traced again"


def test_tests_added_to_a_target_or_another_process_isolation_keep_its_verdicts_and_any_other_change_does_not(tmp_path, monkeypatch):
    """A test file added to a target's selection can only kill more mutants: the
    verdicts stand and the trace is taken again (mutmut would reset every verdict
    against a trace taken with the old selection). A test left out, or a changed
    option, can make a killed mutant survive: the trace is kept, so mutmut sees
    the change and resets the verdicts."""
    root = tmp_path / "root"
    for folder in ("pkg", "tests", "more_tests"):
        (root / folder).mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("def f():\n    return 1\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.setattr(tool, "ROOT", root)
    monkeypatch.setattr(tool, "WORK", tmp_path / "work")
    monkeypatch.setattr(tool, "PACKAGES", ("pkg",))
    monkeypatch.setattr(tool, "DOCUMENTS", ())
    stats = tool.prepare_workdir("t", {"files": ["pkg/mod.py"], "tests": ["tests", "-m", "not slow"]}) \
        / "mutants" / "mutmut-stats.json"

    def selection_becomes(tests, **mutmut):
        stats.parent.mkdir(parents=True, exist_ok=True)
        stats.write_text("{}")
        tool.prepare_workdir("t", {"files": ["pkg/mod.py"], "tests": tests, "mutmut": mutmut})
        return "kept" if stats.exists() else "dropped"

    assert selection_becomes(["tests", "-m", "not slow"]) == "kept"  # unchanged
    assert selection_becomes(["tests", "more_tests", "-m", "not slow"]) == "dropped"  # a test folder added
    assert selection_becomes(["tests", "-m", "not slow"]) == "kept"  # ... and left out again
    assert selection_becomes(["tests", "-m", "not slow or slow"]) == "kept"  # another marker
    assert selection_becomes(["tests", "-m", "more_tests", "not slow or slow"]) == "kept"  # an option's value
    assert selection_becomes(["tests", "-m", "more_tests", "not slow or slow", "no_such_dir"]) == "kept"
    # the process a mutant runs in changes no outcome; a time limit can
    tests = ["tests", "-m", "more_tests", "not slow or slow", "no_such_dir"]
    assert selection_becomes(tests, process_isolation="fork") == "dropped"  # the default is the fork server
    assert selection_becomes(tests, process_isolation="fork") == "kept"
    assert selection_becomes(tests, process_isolation="fork", timeout_multiplier=2) == "kept"


def test_a_rerun_takes_the_survivors_or_the_timeouts_asked_for(tmp_path, monkeypatch):
    """`--rerun-survivors` runs the untriaged survivors again (after new tests),
    `--rerun-timeouts` the mutants mutmut's time limit killed (a hang that was
    not the mutant's own, such as a lock held across a fork, is judged again);
    each drops the trace so that it is taken again."""
    write_state(tmp_path / "t")
    stats = tmp_path / "t" / "mutants" / "mutmut-stats.json"
    monkeypatch.setattr(tool, "WORK", tmp_path)
    monkeypatch.setattr(tool, "load_targets", lambda: {"t": {"files": ["pkg/mod.py"], "tests": []}})
    monkeypatch.setattr(tool.Triage, "load", classmethod(lambda cls, path=None: cls()))
    asked = []
    monkeypatch.setattr(tool, "run_target", lambda name, target, files, jobs, rerun, *a: asked.append(rerun) or 0)
    for flags in (["--rerun-survivors"], ["--rerun-timeouts"], ["--rerun-survivors", "--rerun-timeouts"]):
        stats.write_text("{}")
        tool.main(["run", "pkg/mod.py", *flags])
        assert not stats.exists()
    assert [sorted(r) for r in asked] == [
        ["pkg.mod.x_check__mutmut_1", "pkg.mod.x_clip__mutmut_1"], ["pkg.mod.x_check__mutmut_2"],
        ["pkg.mod.x_check__mutmut_1", "pkg.mod.x_check__mutmut_2", "pkg.mod.x_clip__mutmut_1"]]


def test_a_sample_draws_that_many_of_each_files_pending_mutants_the_same_way_each_time(tmp_path, monkeypatch):
    """`run --sample N`: at most N of each file's mutants without a verdict, the same
    draw for the same seed, another for another seed, never a mutant already judged."""
    pending = {f"pkg.mod.x_clip__mutmut_{i}": None for i in range(1, 41)}
    commands = _fake_mutmut(tmp_path, monkeypatch, {**pending, "pkg.mod.x_check__mutmut_1": 0})
    target = {"files": ["pkg/mod.py"], "tests": []}
    drawn = []
    for seed in (0, 0, 1):
        assert tool.run_target("t", target, ["pkg/mod.py"], 2, [], sample=7, seed=seed) == 0
        names = commands[-1][commands[-1].index("2") + 1:]
        assert len(names) == len(set(names)) == 7 and set(names) <= set(pending), names
        drawn.append(names)
    assert drawn[0] == drawn[1] and drawn[0] != drawn[2]
    assert tool.run_target("t", target, ["pkg/mod.py"], 2, [], sample=100) == 0
    assert sorted(commands[-1][4:]) == sorted(pending)  # fewer pending than asked for: all of them


def test_every_kernel_site_is_anchored_once_as_the_runner_matches_it():
    """Each sampled kernel mutant quotes a snippet whose code (comments aside, as
    the catalogue's runner matches it) occurs exactly once in its file, so no
    sampled mutant is refused, or applied elsewhere, when it runs."""
    from conformance.mutants import anchor
    from conformance.mutation import kernels

    for path in sorted((kernels.ROOT / "fast").glob("*.py")):
        if path.name not in kernels.FAMILY_TESTS:
            continue
        source = path.read_text(encoding="utf-8")
        for m in kernels.sites(path):
            assert anchor.count(source, m.original) == 1, m.id
