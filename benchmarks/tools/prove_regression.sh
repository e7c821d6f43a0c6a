#!/usr/bin/env bash
# Proof that regression tracking catches 10% on this noisy machine (SPEC §regression-tracking):
# a deliberately 10%-slower training step is flagged by benchmarks/tools/compare.sh in at
# least 9 of 10 trials, and a clean re-run of the same revision in at most 1 of 10.
#
#   benchmarks/tools/prove_regression.sh [REV] [--impl NAME] [--slowdown PCT] [--trials N]
#                                  [--cells LIST] [--rounds N] [--threads N]
#
# 1. Writes a patch against REV (default HEAD) that makes NAME's model `forward`
#    (default impl: fast) spin, before its work, for PCT% (default 10) of the CPU
#    time of the previous training step (from one forward's start to the next,
#    the spin itself not counted): every step after the first costs exactly
#    PCT% more CPU time, spent on the CPU like any slower kernel (a sleep would
#    not be CPU time).
# 2. benchmarks/tools/compare.sh REV REV --head-patch PATCH --trials N  -> counts flagged trials
# 3. benchmarks/tools/compare.sh REV REV --trials N                     -> counts false alarms
#    (2 and 3 run at the same time, each printed when both are done)
# Exit status 0 only if the slowed head is flagged in at least N - N/10 trials
# and the clean one in at most N/10 (9 and 1 of 10). Default cells: tiny-16x64
# (the shortest step, so the most trials per minute; pass --cells for others).
set -euo pipefail
die() { echo "prove_regression.sh: $*" >&2; exit 2; }

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
rev="HEAD"
impl="fast"
slowdown=10
trials=10
ab_args=(--cells tiny-16x64)
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        --impl) [ $# -ge 2 ] || die "--impl needs a name"; impl="$2"; shift 2 ;;
        --slowdown) [ $# -ge 2 ] || die "--slowdown needs a percentage"; slowdown="$2"; shift 2 ;;
        --trials) [ $# -ge 2 ] || die "--trials needs a number"; trials="$2"; shift 2 ;;
        --cells|--rounds|--threads|--seconds) [ $# -ge 2 ] || die "$1 needs a value"; ab_args+=("$1" "$2"); shift 2 ;;
        -*) die "unknown option $1" ;;
        *) rev="$1"; shift ;;
    esac
done
case "$slowdown" in ''|*[!0-9]*|0) die "--slowdown '$slowdown' must be a positive integer percentage" ;; esac
case "$trials" in ''|*[!0-9]*|0) die "--trials '$trials' must be a positive integer" ;; esac
sha="$(git -C "$repo" rev-parse --verify --quiet "${rev}^{commit}")" || die "REV '$rev' is not a commit"
model="${impl//./\/}/model.py"
git -C "$repo" cat-file -e "$sha:$model" 2>/dev/null || die "$model does not exist at $rev"
git -C "$repo" show "$sha:$model" | grep -q "^def forward(" || die "$model at $rev defines no top-level forward()"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/feste-prove.XXXXXX")"
cleanup() { git -C "$repo" worktree remove --force "$tmp/patchwork" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT

# the slowdown, written as a patch in a throwaway worktree (nothing is committed)
git -C "$repo" worktree add --detach --quiet "$tmp/patchwork" "$sha"
cat >> "$tmp/patchwork/$model" <<EOF


# --- deliberately slowed by benchmarks/tools/prove_regression.sh (never committed) ---
import time as _slow_time

_unslowed_forward = forward
_slow_state = {"start": None, "spin": 0.0}


def forward(params, tokens, targets=None, **options):
    # spin for $slowdown% of the previous step's CPU time (this forward's start minus the
    # previous one's, less the previous spin): each step costs $slowdown% more CPU time
    now = _slow_time.process_time()
    if _slow_state["start"] is not None:
        spin = ($slowdown / 100) * (now - _slow_state["start"] - _slow_state["spin"])
        until = now + spin
        while _slow_time.process_time() < until:
            pass
        _slow_state["spin"] = spin
    _slow_state["start"] = now
    return _unslowed_forward(params, tokens, targets, **options)
EOF
git -C "$tmp/patchwork" diff > "$tmp/slow.patch"
git -C "$repo" worktree remove --force "$tmp/patchwork"
echo "prove_regression.sh: slowdown patch ($model forward spins $slowdown% of each step's CPU time):"
cat "$tmp/slow.patch"

count() { grep -E -o "abtest: flagged [0-9]+ of [0-9]+ trials" "$1" | tail -1 | awk '{print $3}'; }
verdicts() { grep -E "^abtest: trial [0-9]+/[0-9]+: " "$1" 2>/dev/null || true; }
flagged_so_far() { verdicts "$1" | grep -c "REGRESSION" || true; }
# each trial's verdict is printed as it arrives, so a run stopped early (the
# machine's time, a signal) still shows what it measured, and says so
shown_slowed=0 shown_clean=0
progress() {
    local lines n
    for side in slowed clean; do
        lines="$(verdicts "$tmp/$side.log")"
        n=0; [ -z "$lines" ] || n="$(printf '%s\n' "$lines" | wc -l)"
        if [ "$side" = slowed ]; then shown=$shown_slowed; else shown=$shown_clean; fi
        if [ "$n" -gt "$shown" ]; then
            printf '%s\n' "$lines" | tail -n $((n - shown)) | sed "s/^/prove_regression.sh: [$side] /"
            if [ "$side" = slowed ]; then shown_slowed=$n; else shown_clean=$n; fi
        fi
    done
}
stopped() {
    trap - INT TERM
    kill "$slowed_pid" "$clean_pid" 2>/dev/null || true
    progress
    echo "prove_regression.sh: STOPPED before the end: slowed flagged in $(flagged_so_far "$tmp/slowed.log") of" \
         "$(verdicts "$tmp/slowed.log" | wc -l) finished trials, clean in $(flagged_so_far "$tmp/clean.log") of" \
         "$(verdicts "$tmp/clean.log" | wc -l) (no verdict)" >&2
    cleanup
    exit 2
}
# the two comparisons run at the same time (each alternates its own base and head
# processes; on a shared machine that halves the wall time), their output in two logs
set +e
: > "$tmp/slowed.log"; : > "$tmp/clean.log"
"$here/compare.sh" "$sha" "$sha" --head-patch "$tmp/slow.patch" --impl "$impl" --trials "$trials" "${ab_args[@]}" \
    > "$tmp/slowed.log" 2>&1 &
slowed_pid=$!
clean_pid=""
trap stopped INT TERM
sleep 5  # let the first one create its worktrees (git's worktree lock)
"$here/compare.sh" "$sha" "$sha" --impl "$impl" --trials "$trials" "${ab_args[@]}" > "$tmp/clean.log" 2>&1 &
clean_pid=$!
while kill -0 "$slowed_pid" 2>/dev/null || kill -0 "$clean_pid" 2>/dev/null; do
    sleep 10 & wait $!  # (a signal interrupts the wait, not a foreground sleep)
    progress
done
wait "$slowed_pid"
wait "$clean_pid"
trap - INT TERM
progress
set -e
echo "== slowed by $slowdown% (compare.sh --head-patch):"; cat "$tmp/slowed.log"
echo "== clean re-run:"; cat "$tmp/clean.log"
slowed="$(count "$tmp/slowed.log")"
clean="$(count "$tmp/clean.log")"
[ -n "$slowed" ] && [ -n "$clean" ] || die "compare.sh did not report its trial counts (see the output above)"
allowed=$((trials / 10))
echo "prove_regression.sh: slowed by $slowdown%: flagged in $slowed of $trials trials (want >= $((trials - allowed)))"
echo "prove_regression.sh: clean re-run:   flagged in $clean of $trials trials (want <= $allowed)"
if [ "$slowed" -ge $((trials - allowed)) ] && [ "$clean" -le "$allowed" ]; then
    echo "prove_regression.sh: PROVEN: the $slowdown% slowdown was caught and the clean re-run passed"
    exit 0
fi
echo "prove_regression.sh: NOT PROVEN" >&2
exit 1
