"""Operator mutants of fast's Numba kernels, sampled (`python -m conformance.mutation kernels`).

mutmut leaves decorated functions alone, and a Numba kernel cannot take a
trampoline anyway: a mutant of a kernel is only real once the kernel is
compiled again. So each kernel mutant is a one-place edit of a copy of
`fast` run with an empty Numba cache, by the catalogue's runner
(conformance/mutants/runner.py: the copy, the subprocess, the verdict), on
the test files of the kernel's family. That costs a compile per mutant
(tens of seconds to minutes), hence a sample: for every kernel (a function
decorated with `kernel` from fast/_numba.py) and every operator class it
contains, `--per-kernel` sites drawn with a fixed seed:

- comparison: `<` <-> `<=`, `>` <-> `>=`, `==` <-> `!=`;
- boolean: `and` <-> `or`;
- constant: an int or float literal n -> n + 1 (mutmut's number operator).

Results go to build/mutation/kernels/results.json (kept between runs: a
mutant already judged on the same source is not run again) and into the
report of `python -m conformance.mutation report`. Equivalent survivors are
recorded in triage/ like mutmut's (function fast.MODULE.KERNEL).
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from conformance.mutants import anchor

ROOT = Path(__file__).resolve().parent.parent.parent
STATE = ROOT / "build" / "mutation" / "kernels" / "results.json"
OPERATORS = ("comparison", "boolean", "constant")

# the conformance files that exercise each kernel family (`--impl fast`, quick tests), and fast's own
# tests of its kernels (tests/fast_internals, as in mutmut's fast target: some kernels, such as the
# float32 exp and tanh the softmax and GELU kernels inline, are called alone only there)
# test_agreement: the model's gradients against reference's (fast's own float32/float64 comparisons share a
# kernel's slip; the fused backward kernels are reached through the model only)
_MODEL = ("test_layers.py", "test_model.py", "test_agreement.py")
FAMILY_TESTS = {
    family: (*tests, "tests/fast_internals/test_fast_kernels.py") for family, tests in {
        **{name: _MODEL for name in ("_blas.py", "_softmax.py", "_attention.py", "_colsum.py", "_embedding.py",
                                     "_gelu.py", "_layernorm.py", "layers.py", "loss.py")},
        "model.py": ("test_model.py", "test_accumulate.py", "test_agreement.py"),
        "optim.py": ("test_optim.py",),
        "dropout.py": ("test_dropout.py", "test_agreement.py"),  # the attention-dropout backward: the model's
        "data.py": ("test_data.py",),
        "tokenizer.py": ("test_tokenizer.py",),
        "generate.py": ("test_generate.py",),
    }.items()
}

# a `-k` expression narrowing those files to the family's tests
FAMILY_SELECT: dict[str, str] = {}

_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


@dataclass
class KernelMutant:
    id: str  # fast.layers._kernel:comparison:L123:C8
    file: str  # layers.py (in fast/)
    function: str  # fast.layers._kernel
    operator: str
    line: int
    before: str  # the source line
    after: str  # the mutated line
    original: str  # the snippet replaced in the copy (unique in the file)
    replacement: str
    status: str = "not run"  # caught, survived, error
    caught_by: str | None = None
    source_sha: str = ""


def _is_kernel(fn: ast.FunctionDef) -> bool:
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Name) and target.id == "kernel":
            return True
    return False


def _splice(lines: list[str], node: ast.AST, text: str) -> list[str]:
    """`lines` (the node's lines) with the node's source replaced by `text`."""
    first, last = lines[0], lines[-1]
    head = first[:node.col_offset]
    tail = last[node.end_col_offset:]
    return (head + text + tail).splitlines() or [""]


def sites(path: Path) -> list[KernelMutant]:
    """Every comparison, boolean and constant mutant of the kernels in one file of fast/."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    sha = hashlib.sha256(source.encode()).hexdigest()
    out = []
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or not _is_kernel(fn):
            continue
        function = f"fast.{path.stem}.{fn.name}"
        for node in ast.walk(fn):
            if node is fn or getattr(node, "lineno", None) is None or node.lineno <= fn.body[0].lineno - 1:
                continue
            variants = []
            if isinstance(node, ast.Compare):
                for i, op in enumerate(node.ops):
                    if type(op) in _SWAP:
                        new = ast.Compare(node.left, list(node.ops), node.comparators)
                        new.ops[i] = _SWAP[type(op)]()
                        variants.append(("comparison", "(" + ast.unparse(new) + ")"))
            elif isinstance(node, ast.BoolOp):
                new = ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(), node.values)
                variants.append(("boolean", "(" + ast.unparse(new) + ")"))
            elif (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
                  and not isinstance(node.value, bool)):
                variants.append(("constant", repr(node.value + 1)))
            for operator, text in variants:
                span = lines[node.lineno - 1:node.end_lineno]
                mutated = _splice(span, node, text)
                start = node.lineno - 1
                original = "\n".join(span) + "\n"
                replacement = "\n".join(mutated) + "\n"
                # widen upwards until unique as the runner matches it: on code, comments aside
                while anchor.count(source, original) != 1 and start > 0:
                    start -= 1
                    original = lines[start] + "\n" + original
                    replacement = lines[start] + "\n" + replacement
                if anchor.count(source, original) != 1:
                    continue
                out.append(KernelMutant(
                    f"{function}:{operator}:L{node.lineno}:C{node.col_offset}", path.name, function, operator,
                    node.lineno, "\n".join(s.strip() for s in span), "\n".join(s.strip() for s in mutated),
                    original, replacement, source_sha=sha))
    return out


def sample(per_kernel: int, seed: int = 0, operators=OPERATORS) -> list[KernelMutant]:
    """`per_kernel` sites per (kernel, operator class), drawn with a fixed seed."""
    rng = random.Random(seed)
    per_file = []
    for path in sorted((ROOT / "fast").glob("*.py")):
        if path.name not in FAMILY_TESTS:
            continue
        by_group: dict[tuple[str, str], list[KernelMutant]] = {}
        for m in sites(path):
            if m.operator in operators:
                by_group.setdefault((m.function, m.operator), []).append(m)
        chosen = []
        for key in sorted(by_group):
            group = by_group[key]
            chosen += rng.sample(group, min(per_kernel, len(group)))
        per_file.append(chosen)
    # interleaved file by file, so that a run cut short (--limit) still covers every family
    return [m for row in itertools.zip_longest(*per_file) for m in row if m is not None]


def load_state() -> dict[str, dict]:
    return json.loads(STATE.read_text()) if STATE.is_file() else {}


def save_state(state: dict[str, dict]) -> None:
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state, indent=1, sort_keys=True))


def run(mutants: list[KernelMutant], jobs: int, timeout: float, rerun_survivors: bool = False) -> list[KernelMutant]:
    """Run the mutants not yet judged on their current source (and, asked to, the survivors);
    record each verdict as it comes."""
    from concurrent.futures import ThreadPoolExecutor

    from conformance.mutants.catalogue import Mutant
    from conformance.mutants.runner import run_mutant

    state = load_state()
    todo = [m for m in mutants
            if state.get(m.id, {}).get("source_sha") != m.source_sha
            or state[m.id]["status"] == "error" or rerun_survivors and state[m.id]["status"] == "survived"]

    def one(m: KernelMutant) -> KernelMutant:
        catalogue_mutant = Mutant(m.id.replace(":", "-"), m.file, m.original, m.replacement,
                                  f"{m.operator} mutant of {m.function}", FAMILY_TESTS[m.file], package="fast",
                                  select=FAMILY_SELECT.get(m.file))
        result = run_mutant(catalogue_mutant, timeout=timeout)
        m.status, m.caught_by = result.status, result.caught_by
        print(f"{m.status:9} {m.id}  {m.before!r} -> {m.after!r}  {result.caught_by or result.detail[-200:]}",
              flush=True)
        return m

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for m in pool.map(one, todo):
            state[m.id] = asdict(m)
            save_state(state)
    return [KernelMutant(**state[m.id]) if m.id in state else m for m in mutants]
