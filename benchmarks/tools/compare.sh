#!/usr/bin/env bash
# Compare the benchmarks of two revisions on this machine (SPEC §performance).
#
#   benchmarks/tools/compare.sh BASE_REV [HEAD_REV] [options] [-- PYTEST_ARGS...]
#
# Checks out BASE_REV and HEAD_REV (default HEAD) as detached `git worktree`s
# in a temporary directory; both sides are timed by the same benchmarks
# against their own reference/ and fast/. Two methods (SPEC §regression-tracking):
#
#   ab (the default): benchmarks/tools/abtest.py, this checkout's: interleaved rounds in fresh
#       processes (base and head alternately), CPU time per training step, and
#       per cell a one-sided Wilcoxon signed-rank test on the paired log ratios:
#       REGRESSION when the slowdown is significant (p < --alpha, 0.01) and its
#       median exceeds --threshold (5%). Catches a 10% slowdown on this shared 2-core machine
#       (benchmarks/tools/prove_regression.sh: 9+ of 10 trials; clean re-runs: at most 1 of 10).
#   threshold: the HEAD revision's benchmarks/ on both sides;
#       pytest-benchmark's `--benchmark-autosave` on the base, then
#       `--benchmark-compare --benchmark-compare-fail=<--fail>` on the head; one run
#       per side, so the threshold must exceed the run-to-run noise (up to 67% here).
#
# Exit status 0: no regression; 1: a regression; 2: usage or setup error.
#
# Options:
#   --method ab|threshold   (default ab)
#   --impl NAME        ab: the implementation module (default fast)
#   --cells LIST       ab: comma-separated PRESET-BxT cells (default tiny-16x64,small-8x128,medium-4x256)
#   --rounds N         ab: paired rounds per trial (default 10)
#   --trials N         ab: independent A/B trials, each with its own verdict (default 1)
#   --threshold PCT    ab: median slowdown that, when significant, is a regression (default 5)
#   --alpha P          ab: the test's level (default 0.01)
#   --outlier PCT      ab: a round whose base or head is further than this from its side's
#                      median is set aside as a load event (default 20)
#   --seconds S        ab: timed seconds per cell and process (default 1.5)
#   --fail EXPR        threshold: pytest-benchmark fail expression (default $FESTE_COMPARE_FAIL or
#                      median:100%: above the run-to-run noise benchmarks/tools/noise.py measured
#                      on this shared 2-core machine, up to 67%; SPEC §performance-targets)
#   --bench FILES      threshold: benchmark files under benchmarks/suites/, comma-separated
#                      (default bench_step.py)
#   --head-patch FILE  apply this patch (git apply) to the head worktree before running;
#                      the regression proof (benchmarks/tools/prove_regression.sh) uses it to
#                      slow a kernel deliberately. Not for everyday use.
#   --threads N        run both sides with N threads (OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=N);
#                      default: 1 for ab, the environment's setting for threshold. On a loaded
#                      machine one thread is far less noisy: a busy-waiting BLAS pool sharing
#                      2 cores with other work slows down 10-50x (SPEC §performance)
#   --keep             keep the temporary worktrees and print where they are
# threshold: everything after `--` goes to pytest on both sides (e.g. --impl fast -k "medium").
# Results are kept in .benchmarks/compare/BASE..HEAD/ (git-ignored).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "compare.sh: $*" >&2; exit 2; }

fail_expr="${FESTE_COMPARE_FAIL:-median:100%}"
bench_files="bench_step.py"
method="ab"
ab_args=()
head_patch=""
keep=0
threads=""
revs=()
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --fail) [ $# -ge 2 ] || die "--fail needs a value such as median:25%"; fail_expr="$2"; shift 2 ;;
        --bench) [ $# -ge 2 ] || die "--bench needs a comma-separated list of files"; bench_files="$2"; shift 2 ;;
        --head-patch) [ $# -ge 2 ] || die "--head-patch needs a patch file"; head_patch="$2"; shift 2 ;;
        --threads) [ $# -ge 2 ] || die "--threads needs a number"; threads="$2"; shift 2 ;;
        --method) [ $# -ge 2 ] || die "--method needs ab or threshold"; method="$2"; shift 2 ;;
        --impl|--cells|--rounds|--trials|--threshold|--alpha|--seconds|--outlier)
            [ $# -ge 2 ] || die "$1 needs a value"; ab_args+=("$1" "$2"); shift 2 ;;
        --keep) keep=1; shift ;;
        --) shift; pytest_args=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) revs+=("$1"); shift ;;
    esac
done
[ "${#revs[@]}" -ge 1 ] || { usage >&2; die "BASE_REV is required"; }
[ "${#revs[@]}" -le 2 ] || die "at most two revisions (BASE_REV [HEAD_REV]), got: ${revs[*]}"
case "$method" in
    ab|threshold) ;;
    *) die "--method '$method' is neither ab nor threshold" ;;
esac
if [ "$method" = threshold ] && [ "${#ab_args[@]}" -gt 0 ]; then
    die "${ab_args[0]} belongs to --method ab"
fi
if [ -n "$threads" ]; then
    case "$threads" in
        ''|*[!0-9]*|0) die "--threads '$threads' is not a positive integer" ;;
    esac
    [ "$method" = ab ] && ab_args+=(--threads "$threads")
    export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
        NUMBA_NUM_THREADS="$threads"
fi
case "$fail_expr" in
    *:*%|*:*) ;;
    *) die "--fail '$fail_expr' is not a pytest-benchmark expression such as median:25% or min:0.001" ;;
esac

repo="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || die "not inside a git repository"
# the directory holding this script's `benchmarks` package (abtest comes from here)
package_parent="$(cd "$(dirname "$0")/../.." && pwd)"
base_rev="${revs[0]}"
head_rev="${revs[1]:-HEAD}"
base_sha="$(git -C "$repo" rev-parse --verify --quiet "${base_rev}^{commit}")" \
    || die "BASE_REV '$base_rev' is not a commit in $repo"
head_sha="$(git -C "$repo" rev-parse --verify --quiet "${head_rev}^{commit}")" \
    || die "HEAD_REV '$head_rev' is not a commit in $repo"
if [ -n "$head_patch" ]; then
    [ -f "$head_patch" ] || die "--head-patch '$head_patch': no such file"
    head_patch="$(cd "$(dirname "$head_patch")" && pwd)/$(basename "$head_patch")"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/feste-compare.XXXXXX")"
cleanup() {
    if [ "$keep" -eq 1 ]; then
        echo "compare.sh: kept worktrees in $tmp (remove with: git worktree remove --force $tmp/base; git worktree remove --force $tmp/head)"
        return
    fi
    git -C "$repo" worktree remove --force "$tmp/base" >/dev/null 2>&1 || true
    git -C "$repo" worktree remove --force "$tmp/head" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

git -C "$repo" worktree add --detach --quiet "$tmp/base" "$base_sha" || die "cannot create the base worktree"
git -C "$repo" worktree add --detach --quiet "$tmp/head" "$head_sha" || die "cannot create the head worktree"
if [ -n "$head_patch" ]; then
    git -C "$tmp/head" apply "$head_patch" || die "--head-patch $head_patch does not apply to $head_rev"
    echo "compare.sh: applied $head_patch to the head worktree"
fi
# one benchmark suite for both sides: the head revision's (the base may predate it)
rm -rf "$tmp/base/benchmarks"
cp -R "$tmp/head/benchmarks" "$tmp/base/benchmarks"

if [ "$method" = ab ]; then
    dest="$repo/.benchmarks/compare/${base_sha:0:10}..${head_sha:0:10}${head_patch:+-patched}-$$"
    mkdir -p "$dest"
    rc=0
    PYTHONPATH="$package_parent" python -m benchmarks.tools.abtest "$tmp/base" "$tmp/head" --cache-root "$tmp" \
        --json "$dest/abtest.json" "${ab_args[@]}" || rc=$?
    case "$rc" in
        0) echo "compare.sh: OK: no regression of $head_rev against $base_rev (abtest; results in $dest)" ;;
        1) echo "compare.sh: REGRESSION: $head_rev is slower than $base_rev (abtest; results in $dest)" ;;
        *) echo "compare.sh: the A/B run failed (exit code $rc)" >&2; exit 2 ;;
    esac
    exit "$rc"
fi

targets=()
IFS=',' read -r -a files <<< "$bench_files"
for f in "${files[@]}"; do
    [ -f "$tmp/head/benchmarks/suites/$f" ] || die "--bench: benchmarks/suites/$f does not exist at $head_rev"
    targets+=("benchmarks/suites/$f")
done

storage="$tmp/storage"
run_side() {  # run_side NAME EXTRA_PYTEST_ARGS...
    local side="$1"; shift
    echo "== compare.sh: $side ($( [ "$side" = base ] && echo "$base_rev $base_sha" || echo "$head_rev $head_sha"))"
    # the worktree's own packages, not the editable install's: cwd and PYTHONPATH first
    (cd "$tmp/$side" && PYTHONPATH="$tmp/$side${PYTHONPATH:+:$PYTHONPATH}" NUMBA_CACHE_DIR="$tmp/numba-$side" \
        python -m pytest "${targets[@]}" -p no:randomly -p no:cacheprovider \
        --benchmark-storage="file://$storage" --benchmark-columns=median,iqr,rounds \
        "$@" "${pytest_args[@]}") 2>&1 | tee "$tmp/$side.log"
    return "${PIPESTATUS[0]}"
}
check_paths() {  # the run must have imported the worktree's built-ins, not the checkout's
    local side="$1"
    if grep -E "^feste impl (reference|fast): version" "$tmp/$side.log" | grep -v -F "$tmp/$side/" >/dev/null; then
        grep -E "^feste impl" "$tmp/$side.log" >&2
        die "the $side run imported an implementation from outside its worktree"
    fi
}

rc=0
run_side base --benchmark-autosave || rc=$?
[ "$rc" -eq 0 ] || die "the base run failed (pytest exit code $rc); see $tmp/base.log"
check_paths base
# without a header line the check above cannot see the paths: require one
grep -q -E "^feste impl [^:]+: version" "$tmp/base.log" || die "the base run printed no implementation header"
ls "$storage"/*/0001_*.json >/dev/null 2>&1 || die "the base run saved no benchmark results (all skipped?)"

rc=0
run_side head --benchmark-autosave --benchmark-compare=0001 --benchmark-compare-fail="$fail_expr" || rc=$?
check_paths head

dest="$repo/.benchmarks/compare/${base_sha:0:10}..${head_sha:0:10}"
mkdir -p "$dest"
cp "$storage"/*/*.json "$tmp/base.log" "$tmp/head.log" "$dest/"
if grep -q "Performance has regressed" "$tmp/head.log"; then
    echo "compare.sh: REGRESSION: $head_rev is slower than $base_rev beyond $fail_expr (results in $dest)"
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "compare.sh: the head run failed (pytest exit code $rc; results in $dest)" >&2
    exit 2
fi
echo "compare.sh: OK: no benchmark of $head_rev is slower than $base_rev beyond $fail_expr (results in $dest)"
