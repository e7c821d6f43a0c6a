"""Run mutmut on a chosen path and judge the survivors: `python -m conformance.mutation`.

    python -m conformance.mutation run reference/optim.py      # one file, restricted to its target's tests
    python -m conformance.mutation run --target reference      # every file of a target (targets.toml)
    python -m conformance.mutation run --changed-since main    # the target files a change touches (CI)
    python -m conformance.mutation run reference/optim.py --rerun-survivors   # after adding tests
    python -m conformance.mutation report [--write]            # the report of the last runs
    python -m conformance.mutation show reference/optim.py     # the diff of each untriaged survivor

Each target runs in its own working directory, build/mutation/TARGET/, which
holds symbolic links to the project's packages, a pyproject.toml with the
target's [tool.mutmut] section, and mutmut's state (mutants/, kept between
runs: the functions whose source changed are mutated afresh, the others keep their
verdicts). mutmut needs the Python it runs under: run this from the virtual
environment that has the `mutation` extra installed.

Exit status: 0 when every mutant of the files run is killed, recorded as
equivalent in triage/, or a known survivor listed in open.toml (the
debt not yet triaged, written by `report --write`); 1 when a new one
survives (all survivors are printed with their diffs) or mutmut fails; 2
for a usage error.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the project checkout
WORK = ROOT / "build" / "mutation"
PACKAGES = ("reference", "fast", "conformance", "feste", "torch_impl", "tests", "meta_tests")
DOCUMENTS = ("SPEC.md", "README.md")  # tests read them (a contract test checks SPEC's headings)

# mutmut's exit codes (mutmut.stats.status_by_exit_code) folded into our verdicts
KILLED_CODES = {1, 3, 24, -24, 36, 152, 255, -9, -11, 37}  # failed, internal error, timeouts, crashes
TIMEOUT_CODES = {24, -24, 36, 152, 255}  # counted as killed, and shown apart (a slow run is not a failed test)
SURVIVED_CODES = {0}
NO_TESTS_CODES = {5, 33}


# --- targets and triage -------------------------------------------------------------------
def load_targets() -> dict[str, dict]:
    with open(HERE / "targets.toml", "rb") as fh:
        targets = tomllib.load(fh)
    for name, target in targets.items():
        for key in ("files", "tests"):
            if not isinstance(target.get(key), list):
                raise SystemExit(f"{HERE / 'targets.toml'}: target {name!r} needs a list {key!r}")
    return targets


@dataclass
class Triage:
    equivalent: list[dict] = field(default_factory=list)
    rules: list[dict] = field(default_factory=list)
    open: list[dict] = field(default_factory=list)  # open.toml: known survivors not yet killed or judged
    path: Path = HERE / "triage"

    @classmethod
    def load(cls, path: Path = HERE / "triage") -> "Triage":
        """Every `*.toml` of the triage folder (one file per module, and common.toml for
        rules across modules), and open.toml beside it."""
        equivalent, rules = [], []
        for file in sorted(path.glob("*.toml")):
            with open(file, "rb") as fh:
                try:
                    data = tomllib.load(fh)
                except tomllib.TOMLDecodeError as exc:
                    raise SystemExit(f"{file}: {exc}") from None
            equivalent += [dict(entry, file=file.name) for entry in data.get("equivalent", [])]
            rules += [dict(rule, file=file.name) for rule in data.get("rule", [])]
        known = []
        if (HERE / "open.toml").is_file():
            with open(HERE / "open.toml", "rb") as fh:
                known = list(tomllib.load(fh).get("open", []))
        triage = cls(equivalent, rules, known, path)
        for entry in triage.equivalent:
            missing = [k for k in ("function", "before", "after", "reason") if not entry.get(k)]
            if missing:
                raise SystemExit(f"{path / entry['file']}: the equivalent entry for {entry.get('function')} "
                                 f"lacks {missing}")
        for rule in triage.rules:
            missing = [k for k in ("name", "operator", "context", "reason") if not rule.get(k)]
            if missing:
                raise SystemExit(f"{path / rule['file']}: rule {rule.get('name')} lacks {missing}")
        return triage

    def verdict(self, mutant: "Mutant") -> str | None:
        """The reason `mutant` is equivalent, or None."""
        for entry in self.equivalent:
            if (entry["function"] == mutant.function and _norm(entry["before"]) == _norm(mutant.before)
                    and _norm(entry["after"]) == _norm(mutant.after)):
                return entry["reason"]
        for rule in self.rules:
            operators = rule["operator"] if isinstance(rule["operator"], list) else [rule["operator"]]
            if (("*" in operators or mutant.operator in operators) and rule["context"] == mutant.context
                    and rule.get("function", mutant.function) == mutant.function):
                return f"rule {rule['name']}: {rule['reason']}"
        return None


    def is_open(self, mutant: "Mutant") -> bool:
        """A survivor already recorded in open.toml (reported, counted, but not new)."""
        return any(entry["function"] == mutant.function and _norm(entry["before"]) == _norm(mutant.before)
                   and _norm(entry["after"]) == _norm(mutant.after) for entry in self.open)


def write_open(mutants: list["Mutant"]) -> None:
    """open.toml: every untriaged survivor of the last runs, so CI fails on new ones only."""
    lines = ["# Survivors of `python -m conformance.mutation` not yet killed by a test or judged",
             "# equivalent in triage/: known debt, counted as surviving in report.md. Written by",
             "# `python -m conformance.mutation report --write`; do not add to it by hand: kill or triage.", ""]
    for m in sorted((m for m in mutants if m.surviving), key=lambda m: m.key):
        lines += [f"[[open]]  # {m.key} ({m.operator}, {m.context})", f"function = {json.dumps(m.function)}",
                  f"before = {_toml_str(m.before)}", f"after = {_toml_str(m.after)}", ""]
    (HERE / "open.toml").write_text("\n".join(lines), encoding="utf-8")


def _toml_str(text: str) -> str:
    """`text` as a TOML string: a literal string '...' when it can be one, else a
    multi-line literal string, else a basic string (JSON escapes are TOML's)."""
    if "'" not in text and "\n" not in text:
        return "'" + text + "'"
    if "\'\'\'" not in text and not text.endswith("'"):
        return "\'\'\'\n" + text + "\'\'\'"
    return json.dumps(text)


def _norm(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


# --- one mutant: its change, operator and context -------------------------------------------
@dataclass
class Mutant:
    key: str  # mutmut's name, e.g. reference.optim.x_clip_grad_norm__mutmut_8
    module: str  # reference.optim
    function: str  # reference.optim.clip_grad_norm (methods: reference.tokenizer.Tokenizer.encode)
    file: str  # reference/optim.py
    status: str  # killed, survived, no tests, not checked
    before: str = ""  # the changed lines of the original, stripped
    after: str = ""  # the same lines in the mutant
    operator: str = "other"
    context: str = "code"  # code, raise (an exception's arguments), output (printed or warned text)
    equivalent: str | None = None
    timeout: bool = False  # killed by mutmut's time limit rather than by a failing test

    @property
    def surviving(self) -> bool:
        return self.status in ("survived", "no tests") and self.equivalent is None


_KEY = re.compile(r"^(?P<module>.+?)\.(?P<name>x[_ǁ].*?)__mutmut_(?P<n>\d+)$")


def split_key(key: str) -> tuple[str, str, str]:
    """(module, mangled function name, number) of a mutmut mutant name."""
    m = _KEY.match(key)
    if m is None:
        raise ValueError(f"unexpected mutmut mutant name {key!r}")
    return m["module"], m["name"], m["n"]


def display_name(module: str, mangled: str) -> str:
    """x_clip_grad_norm -> module.clip_grad_norm; xǁTokenizerǁencode -> module.Tokenizer.encode."""
    if mangled.startswith("xǁ"):
        return module + "." + ".".join(part for part in mangled[2:].split("ǁ") if part)
    return module + "." + mangled[2:]


def _functions(tree: ast.AST) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _first_difference(a, b, ancestors=()):
    """The first pair of differing nodes (a, b, ancestors of b) in two ASTs, depth first."""
    if type(a) is not type(b):
        return a, b, ancestors
    if isinstance(a, ast.AST):
        for name in a._fields:
            if name in ("name", "type_comment"):
                continue
            va, vb = getattr(a, name, None), getattr(b, name, None)
            if isinstance(va, list):
                if len(va) != len(vb):
                    return a, b, ancestors
                for xa, xb in zip(va, vb):
                    found = _first_difference(xa, xb, ancestors + (b,))
                    if found:
                        return found
            else:
                found = _first_difference(va, vb, ancestors + (b,))
                if found:
                    return found
        return None
    return None if a == b else (a, b, ancestors)


OUTPUT_CALLS = {"print", "printer", "warn", "echo", "write_line", "log"}


def message_names(function: ast.AST) -> set[str]:
    """Local names whose every use is inside a `raise` (text built for an error message)."""
    inside, outside = set(), set()

    def visit(node, in_raise):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            (inside if in_raise else outside).add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child, in_raise or isinstance(node, ast.Raise))
    visit(function, False)
    return inside - outside


def classify(a, b, ancestors, messages: frozenset | set = frozenset()) -> tuple[str, str]:
    """(operator, context) of the difference a -> b; `messages`: names used only in raises."""
    op = "other"
    parent = ancestors[-1] if ancestors else None
    if isinstance(a, ast.cmpop) or isinstance(parent, ast.Compare) and isinstance(a, list):
        op = "comparison"
    elif isinstance(a, ast.Compare) and isinstance(b, ast.Compare):
        op = "comparison"
    elif isinstance(b, ast.BoolOp) and any(isinstance(v, ast.Constant) and isinstance(v.value, bool)
                                           for v in b.values):
        op = "condition"  # `(cond) and False`, `(cond) or True`: a forced branch
    elif isinstance(a, ast.boolop) or isinstance(a, ast.BoolOp) or isinstance(b, ast.BoolOp):
        op = "boolean"
    elif isinstance(a, ast.operator) or isinstance(a, ast.unaryop):
        op = "arithmetic"
    elif isinstance(a, ast.AugAssign) and isinstance(b, ast.Assign):
        op = "assignment"
    elif isinstance(a, ast.UnaryOp) or isinstance(b, ast.UnaryOp):
        op = "unary"
    elif isinstance(b, ast.Constant) and b.value is None and not (isinstance(a, ast.Constant) and a.value is None):
        op = "argument" if isinstance(parent, (ast.Call, ast.keyword)) else "none"
    elif isinstance(a, ast.Constant) and isinstance(b, ast.Constant) or isinstance(a, (str, int, float, bool)):
        va = a.value if isinstance(a, ast.Constant) else a
        vb = b.value if isinstance(b, ast.Constant) else b
        if isinstance(va, bool) or va is None or isinstance(vb, bool) or vb is None:
            op = "keyword"
        elif isinstance(va, str):
            op = "string"
        else:
            op = "number"
    elif isinstance(a, (ast.Call,)) and isinstance(b, ast.Call):
        op = "argument" if len(a.args) != len(b.args) or len(a.keywords) != len(b.keywords) else "call"
    elif isinstance(a, ast.arguments):
        op = "default"
    elif isinstance(a, (ast.Break, ast.Continue, ast.Pass, ast.Return)) or isinstance(b, (ast.Break, ast.Continue)):
        op = "statement"
    elif isinstance(a, ast.Name) and isinstance(b, ast.Name):
        op = "name"
    elif isinstance(a, ast.Lambda):
        op = "lambda"
    elif isinstance(a, ast.IfExp):
        op = "condition"
    elif isinstance(a, ast.Assign) or isinstance(b, ast.Assign):
        op = "assignment"
    if any(isinstance(n, ast.arguments) for n in ancestors):
        op = "default"
    context = "code"
    if any(isinstance(n, ast.Raise) for n in ancestors) or any(
            isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id in messages for t in n.targets)
            for n in ancestors):
        context = "raise"
    for n in ancestors:
        if isinstance(n, ast.Call):
            callee = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            if callee in OUTPUT_CALLS:
                context = "output"
    if op == "string":
        va = a.value if isinstance(a, ast.Constant) else a
        vb = b.value if isinstance(b, ast.Constant) else b
        if isinstance(vb, str) and isinstance(va, str) and len(vb) == len(va) + 4 and vb.replace("XX", "") == va.replace("XX", ""):
            op = "string-wrap"  # the text kept, with XX on both sides of a literal
        elif isinstance(vb, str) and isinstance(va, str) and vb.lower() == va.lower():
            op = "string-case"  # the text upper- or lower-cased
    return op, context


def exit_codes(workdir: Path, file: str) -> dict[str, int | None]:
    """mutmut's exit code of each mutant of `file` (None: not run yet); {} before mutmut
    has generated them."""
    meta = workdir / "mutants" / (file + ".meta")
    return json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else {}


def describe_mutants(workdir: Path, files: list[str], triage: Triage) -> list[Mutant]:
    """Every mutant of `files` in `workdir`'s mutmut state, with its change and verdicts."""
    out = []
    for file in files:
        mutated = workdir / "mutants" / file
        codes = exit_codes(workdir, file)
        if not codes or not mutated.is_file():
            continue
        source = mutated.read_text(encoding="utf-8")
        functions = _functions(ast.parse(source))
        lines = source.splitlines()
        for key, code in codes.items():
            module, mangled, n = split_key(key)
            status = ("killed" if code in KILLED_CODES else "survived" if code in SURVIVED_CODES
                      else "no tests" if code in NO_TESTS_CODES else "not checked" if code is None else "suspicious")
            mutant = Mutant(key, module, display_name(module, mangled), file, status)
            mutant.timeout = code in TIMEOUT_CODES
            orig, mut = functions.get(f"{mangled}__mutmut_orig"), functions.get(f"{mangled}__mutmut_{n}")
            if orig is not None and mut is not None:
                text_a = lines[orig.lineno - 1:orig.end_lineno]
                text_b = lines[mut.lineno - 1:mut.end_lineno]
                minus, plus = [], []
                for line in difflib.unified_diff(text_a, text_b, lineterm="", n=0):
                    if line.startswith(("---", "+++", "@@")):
                        continue
                    (minus if line.startswith("-") else plus).append(line[1:].strip())
                minus = [m for m in minus if not m.startswith("def ")] or minus
                plus = [p for p in plus if not p.startswith("def ")] or plus
                short = mutant.function.rsplit(".", 1)[-1]
                minus = [m.replace(f"{mangled}__mutmut_orig", short) for m in minus]
                plus = [p.replace(f"{mangled}__mutmut_{n}", short) for p in plus]
                mutant.before, mutant.after = "\n".join(minus), "\n".join(plus)
                found = _first_difference(orig, mut)
                if found is not None:
                    mutant.operator, mutant.context = classify(*found, message_names(orig))
            if mutant.status in ("survived", "no tests"):
                mutant.equivalent = triage.verdict(mutant)
            out.append(mutant)
    return out


# --- running mutmut ----------------------------------------------------------------------------
def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def trace_path(workdir: Path) -> Path:
    """mutmut's record of which tests call which function (and of the configuration it was taken with)."""
    return workdir / "mutants" / "mutmut-stats.json"


# each mutant runs in a process forked from a server that has imported the suite but run nothing: a fork
# of the process that ran the tests (threads: Numba's pool, tqdm's monitor, the micro-batch pool) can wait
# forever on a lock another thread held at the fork, which mutmut would count as a kill by its time limit
DEFAULT_OPTIONS = {"process_isolation": "forkserver"}


def prepare_workdir(name: str, target: dict) -> Path:
    """build/mutation/NAME with links to the packages and the target's mutmut configuration
    (every file of the target is mutated, so mutmut's record of which tests call which
    function is complete; a run then picks the mutants of the files asked for)."""
    workdir = WORK / name
    workdir.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        link = workdir / package
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link)
            link.symlink_to(ROOT / package, target_is_directory=True)
    for document in DOCUMENTS:
        link = workdir / document
        if not link.is_symlink():
            link.symlink_to(ROOT / document)
    sources = sorted({f.split("/", 1)[0] for f in target["files"]})
    others = [p for p in PACKAGES if p not in sources] + list(DOCUMENTS)
    for package in others:  # copied afresh by mutmut at each run: tests added since the last run count
        if (workdir / "mutants" / package).is_file():
            (workdir / "mutants" / package).unlink()
        shutil.rmtree(workdir / "mutants" / package, ignore_errors=True)
    for package in sources:  # the unmutated files of a mutated package, likewise (mutmut keeps old copies)
        for path in (workdir / "mutants" / package).rglob("*.py"):
            if str(path.relative_to(workdir / "mutants")) not in target["files"]:
                path.unlink()
    base = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    base = base.split("\n[tool.mutmut]", 1)[0]
    config = f"""
[tool.mutmut]
# written by `python -m conformance.mutation` for target {name!r}
source_paths = {_toml_list(sources)}
only_mutate = {_toml_list(target["files"])}
also_copy = {_toml_list(others)}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-o", "addopts=", "-q"]
pytest_add_cli_args_test_selection = {_toml_list(target["tests"])}
"""
    options = {**DEFAULT_OPTIONS, **target.get("mutmut", {})}
    for key, value in options.items():
        config += f"{key} = {json.dumps(value)}\n"
    (workdir / "pyproject.toml").write_text(base.rstrip() + "\n" + config, encoding="utf-8")
    # a file whose source changed since the last run: mutmut mutates it again (its source is newer than
    # the mutated copy) and forgets the verdicts of the functions whose text changed, keeping the others
    # (it keeps each function's hash); which tests call which function is traced again, or mutmut would
    # keep the record of the old functions and call a new one's mutants "no tests"
    hashes_path = workdir / "sources.json"
    hashes = json.loads(hashes_path.read_text()) if hashes_path.is_file() else {}
    for file in target["files"]:
        digest = hashlib.sha256((ROOT / file).read_bytes()).hexdigest()
        if hashes.get(file) != digest:
            hashes[file] = digest
            trace_path(workdir).unlink(missing_ok=True)
    hashes_path.write_text(json.dumps(hashes, indent=1, sort_keys=True))
    # tests added to the target's selection can only kill more mutants, and the process a mutant runs in
    # (mutmut's process_isolation) changes no test's outcome, so every verdict stands (the survivors are
    # run again with --rerun-survivors, the timeouts with --rerun-timeouts). mutmut would reset them all,
    # its configuration having changed, but it compares configurations only against a trace it has: the
    # trace is dropped and taken again. Any other change (a test left out, another marker, a time limit)
    # can make a killed mutant survive, and mutmut resets every verdict, as it should.
    selection_path = workdir / "test-selection.json"
    now = {"tests": target["tests"], "mutmut": options}
    if selection_path.is_file():
        before = json.loads(selection_path.read_text())
        if before != now and tests_only_added(before["tests"], now["tests"]) \
                and _outcome_options(before["mutmut"]) == _outcome_options(now["mutmut"]):
            trace_path(workdir).unlink(missing_ok=True)
    selection_path.write_text(json.dumps(now))
    return workdir


def _outcome_options(options: dict) -> dict:
    """The mutmut options a test's outcome can depend on (all but the process a mutant runs in)."""
    return {k: v for k, v in options.items() if k != "process_isolation"}


def tests_only_added(old: list[str], new: list[str]) -> bool:
    """Whether `new` is `old` with test paths (of the checkout, not an option's value) inserted, or `old`."""
    rest = iter(enumerate(new))
    added = []
    for arg in old:
        for i, candidate in rest:
            if candidate == arg:
                break
            added.append(i)
        else:
            return False  # an argument of the old selection is gone
    added += [i for i, _ in rest]
    return all(not new[i].startswith("-") and (i == 0 or not new[i - 1].startswith("-"))
               and (ROOT / new[i].split("::")[0]).exists() for i in added)


def mutmut_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FESTE_", "PYTEST_", "HYPOTHESIS_")) and k != "PYTHONPATH"}
    env.update(HYPOTHESIS_PROFILE="mutation", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", NUMBA_CACHE_DIR=str(workdir / "numba-cache"))
    return env


def run_target(name: str, target: dict, files: list[str], max_children: int, rerun: list[str],
               again: bool = False, sample: int | None = None, seed: int = 0) -> int:
    """mutmut on `files` of the target: the mutants named in `rerun`; else, with `again`, every
    mutant of those files; else those of their mutants without a verdict yet (an interrupted
    run goes on where it stopped; the functions whose source changed start afresh). With
    `sample`, at most that many of those, drawn with `seed` (the rest stay "not run")."""
    workdir = prepare_workdir(name, target)
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if mutmut is None:
        raise SystemExit("mutmut is not installed: pip install -e '.[mutation]'")
    if not rerun and (sorted(files) != sorted(target["files"]) or sample is not None):
        if again:
            rerun = [module_of(f) + ".*" for f in files]
        else:
            codes = {f: exit_codes(workdir, f) for f in files}
            if sample is not None and not any(codes.values()):
                # a sample is drawn from the mutants, which mutmut generates (with its trace of which tests
                # call which function) at the start of any run: one that asks for no mutant
                print(f"== {name}: generating the mutants to draw the sample from", flush=True)
                subprocess.run([mutmut, "run", "--max-children", str(max_children), "no.such.mutant"], cwd=workdir,
                               env=mutmut_env(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                codes = {f: exit_codes(workdir, f) for f in files}
            pending = {f: sorted(key for key, code in codes[f].items() if code is None) for f in files}
            if trace_path(workdir).is_file() and not any(pending.values()):
                print(f"== {name}: every mutant of {' '.join(files)} has its verdict (--again runs them again)")
                return 0
            if sample is not None:  # each file's own draw, so adding a file does not change another's
                pending = {f: random.Random(f"{seed}:{f}").sample(keys, min(sample, len(keys)))
                           for f, keys in pending.items()}
            # before the first run of the target mutmut has not generated the mutants: all of these files'
            rerun = sorted(key for keys in pending.values() for key in keys) or [module_of(f) + ".*" for f in files]
    cmd = [mutmut, "run", "--max-children", str(max_children), *rerun]
    shown = cmd[1:] if len(rerun) <= 4 else [*cmd[1:4], f"<{len(rerun)} mutant names>"]
    print(f"== {name}: {' '.join(files)}\n   (cd {workdir.relative_to(ROOT)} && {' '.join(shown)})", flush=True)
    log = workdir / "mutmut.log"
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=workdir, env=mutmut_env(workdir), stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        print(f"mutmut failed (exit {proc.returncode}); the end of {log}:\n{tail}", file=sys.stderr)
    return proc.returncode


# --- the report ------------------------------------------------------------------------------
def tally(mutants: list[Mutant], by) -> dict[str, Counter]:
    table: dict[str, Counter] = defaultdict(Counter)
    for m in mutants:
        row = table[by(m)]
        row["generated"] += 1
        if m.status == "killed":
            row["killed"] += 1
            row["of which timeout"] += m.timeout
        elif m.equivalent is not None:
            row["equivalent"] += 1
        elif m.status in ("survived", "no tests"):
            row["surviving"] += 1
            if m.status == "no tests":
                row["not covered"] += 1
        else:
            row["not run"] += 1
    return table


def _table(title: str, table: dict[str, Counter]) -> list[str]:
    cols = ("generated", "killed", "of which timeout", "equivalent", "surviving", "not covered", "not run")
    out = [f"| {title} | " + " | ".join(cols) + " | score |", "|---" * (len(cols) + 2) + "|"]
    total = Counter()
    for key in sorted(table):
        total.update(table[key])
    for key, row in [*sorted(table.items()), ("**total**", total)]:
        judged = row["generated"] - row["equivalent"] - row["not run"]
        score = f"{100 * row['killed'] / judged:.1f}%" if judged else "-"
        out.append(f"| {key} | " + " | ".join(str(row[c]) for c in cols) + f" | {score} |")
    return out


def format_report(mutants: list[Mutant], command: str) -> str:
    lines = ["# Mutation report (mutmut)", "",
             "Produced by `" + command + "` (conformance/mutation/__main__.py).",
             "Score = killed / (generated - equivalent - not run). Equivalent mutants are listed in",
             "conformance/mutation/triage/, each with its argument; \"not covered\" survivors are in",
             "functions that no test of their target calls.", ""]
    lines += _table("module", tally(mutants, lambda m: m.module))
    lines += [""] + _table("operator", tally(mutants, lambda m: m.operator))
    survivors = [m for m in mutants if m.surviving]
    lines += ["", f"## Surviving mutants ({len(survivors)})", ""]
    for m in survivors:
        lines.append(f"- `{m.key}` ({m.operator}, {m.context}, {m.status}): `{m.before}` -> `{m.after}`")
    return "\n".join(lines) + "\n"


def module_of(file: str) -> str:
    """reference/optim.py -> reference.optim (a package's __init__.py -> the package)."""
    return file.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def target_of(file: str, targets: dict[str, dict]) -> str | None:
    for name, target in targets.items():
        if file in target["files"]:
            return name
    return None


def changed_files(rev: str) -> list[str]:
    """Files changed between `rev` and HEAD (and uncommitted); none, with a warning, when git cannot tell."""
    proc = subprocess.run(["git", "diff", "--name-only", rev], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"warning: git cannot list the changes since {rev}: {proc.stderr.strip()}", file=sys.stderr)
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def collect(targets: dict[str, dict], triage: Triage, only: set[str] | None = None) -> list[Mutant]:
    mutants = []
    for name, target in targets.items():
        files = [f for f in target["files"] if only is None or f in only]
        mutants += describe_mutants(WORK / name, files, triage)
    return mutants


def kernel_mutants(triage: Triage, done=None) -> list[Mutant]:
    """The kernel sample's results as Mutants (status: killed, survived, not checked)."""
    from . import kernels

    state = kernels.load_state()
    items = [kernels.asdict(m) for m in done] if done is not None else list(state.values())
    out = []
    for item in items:
        status = {"caught": "killed", "survived": "survived"}.get(item["status"], "not checked")
        module = item["function"].rsplit(".", 1)[0]
        m = Mutant(item["id"], module + " (kernels)", item["function"], "fast/" + item["file"], status,
                   item["before"], item["after"], item["operator"], "kernel")
        if status == "survived":
            m.equivalent = triage.verdict(m)
        out.append(m)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.mutation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run mutmut on files or targets, then judge the survivors")
    run.add_argument("files", nargs="*", help="files to mutate (each must belong to a target of targets.toml)")
    run.add_argument("--target", action="append", default=[], help="every file of this target (repeatable)")
    run.add_argument("--changed-since", metavar="REV", help="the target files changed between REV and HEAD")
    run.add_argument("--otherwise", action="append", default=[], metavar="FILE",
                     help="with --changed-since: the file(s) to mutate when the change touches none (CI's sample)")
    run.add_argument("--max-children", type=int, default=min(2, os.cpu_count() or 1),
                     help="mutants run side by side (default: min(2, cpus))")
    run.add_argument("--rerun-survivors", action="store_true",
                     help="run again the survivors of the last run (after adding tests)")
    run.add_argument("--rerun-timeouts", action="store_true",
                     help="run again the mutants killed by mutmut's time limit (counted as killed: a mutant that "
                          "loops forever fails the suite; one that hung for another reason, such as a lock held "
                          "across a fork, must be judged again)")
    run.add_argument("--sample", type=int, metavar="N",
                     help="run at most N of each file's mutants without a verdict, drawn at random with --seed "
                          "(an estimate of the score; the rest stay 'not run' for a later run)")
    run.add_argument("--seed", type=int, default=0, help="the --sample draw's seed (default 0)")
    run.add_argument("--again", action="store_true",
                     help="run every mutant of the files again (default: only those without a verdict; "
                          "the functions whose source changed always start afresh)")
    kern = sub.add_parser("kernels", help="sampled comparison, boolean and constant mutants of fast's Numba "
                                           "kernels, each in a copy of fast with an empty Numba cache")
    kern.add_argument("--per-kernel", type=int, default=1, help="sites per kernel and operator class (default 1)")
    kern.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    kern.add_argument("--only", metavar="SUBSTRING", help="only the sampled mutants whose id contains this")
    kern.add_argument("--limit", type=int, help="run at most this many of the sample (the rest stay 'not run')")
    kern.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="mutants side by side")
    kern.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    kern.add_argument("--list", action="store_true", help="print the sample without running it")
    kern.add_argument("--rerun-survivors", action="store_true", help="run the survivors again (after adding tests)")
    report = sub.add_parser("report", help="the report of the last runs of every target")
    report.add_argument("--write", action="store_true",
                        help="write it to conformance/mutation/report.md, and the untriaged survivors to open.toml")
    show = sub.add_parser("show", help="each untriaged survivor of these files, with its change")
    show.add_argument("files", nargs="*")
    show.add_argument("--toml", action="store_true",
                      help="print them as triage/ entries to complete (reason left empty)")
    args = parser.parse_args(argv)

    targets = load_targets()
    triage = Triage.load()
    if args.command == "kernels":
        from . import kernels

        chosen = kernels.sample(args.per_kernel, args.seed)
        if args.only:
            chosen = [m for m in chosen if args.only in m.id]
        if args.list:
            for m in chosen:
                print(f"{m.id}\n  - {m.before}\n  + {m.after}")
            print(f"{len(chosen)} mutants in {len({m.function for m in chosen})} kernels")
            return 0
        done = kernels.run(chosen[:args.limit] if args.limit else chosen, args.jobs, args.timeout,
                           args.rerun_survivors)
        mutants = kernel_mutants(triage, done)
        print(format_report(mutants, "python -m conformance.mutation " + " ".join(sys.argv[1:] if argv is None
                                                                                 else argv)))
        return 1 if any(m.surviving for m in mutants) else 0
    if args.command == "report":
        text = format_report(collect(targets, triage) + kernel_mutants(triage),
                             "python -m conformance.mutation run FILE` (one file at a time, for the modules "
                             "with verdicts below; the rest: not run) and `python -m conformance.mutation "
                             "report --write")
        print(text)
        if args.write:
            (HERE / "report.md").write_text(text, encoding="utf-8")
            write_open(collect(targets, triage) + kernel_mutants(triage))
        return 0
    if args.command == "show":
        only = set(args.files) or None
        for m in collect(targets, triage, only):
            if m.surviving and args.toml:
                print(f"[[equivalent]]  # {m.key} ({m.operator}, {m.context})\nfunction = {json.dumps(m.function)}\n"
                      f"before = {_toml_str(m.before)}\nafter = {_toml_str(m.after)}\nreason = \"\"\n")
            elif m.surviving:
                print(f"{m.key}  [{m.operator}, {m.context}, {m.status}]\n  - {m.before}\n  + {m.after}")
        return 0

    unknown = [t for t in args.target if t not in targets]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; targets.toml has {sorted(targets)}")
    wanted = list(args.files)
    for t in args.target:
        wanted += targets[t]["files"]
    if args.changed_since:
        wanted += [f for f in changed_files(args.changed_since) if target_of(f, targets)]
    if not wanted and args.changed_since:
        print(f"no target file changed since {args.changed_since}: mutating {args.otherwise or 'nothing'}")
        wanted = list(args.otherwise)
        if not wanted:
            return 0
    if not wanted:
        parser.error("name files, --target or --changed-since")
    by_target: dict[str, list[str]] = defaultdict(list)
    for f in dict.fromkeys(wanted):
        t = target_of(f, targets)
        if t is None:
            parser.error(f"{f} is in no target of {HERE / 'targets.toml'}")
        by_target[t].append(f)
    failed = False
    for name, files in by_target.items():
        rerun = []
        if args.rerun_survivors or args.rerun_timeouts:
            rerun = [m.key for m in describe_mutants(WORK / name, files, triage)
                     if args.rerun_survivors and m.surviving or args.rerun_timeouts and m.timeout]
            trace_path(WORK / name).unlink(missing_ok=True)  # new tests: trace again
            if not rerun:
                continue
        if run_target(name, targets[name], files, args.max_children, rerun, args.again, args.sample,
                      args.seed) != 0:
            failed = True
    mutants = collect({n: targets[n] for n in by_target}, triage, {f for fs in by_target.values() for f in fs})
    print(format_report(mutants, "python -m conformance.mutation " + " ".join(sys.argv[1:] if argv is None else argv)))
    survivors = [m for m in mutants if m.surviving]
    new = [m for m in survivors if not triage.is_open(m)]
    for m in survivors:
        tag = "SURVIVED (known, open.toml)" if triage.is_open(m) else "SURVIVED (new)"
        print(f"{tag} {m.key} [{m.operator}, {m.context}]\n  - {m.before}\n  + {m.after}")
    print(f"{len(survivors)} survivors, {len(new)} of them new (not in open.toml): "
          + ("FAIL" if new or failed else "ok"))
    return 1 if new or failed else 0


if __name__ == "__main__":
    sys.exit(main())
