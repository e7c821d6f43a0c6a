#!/usr/bin/env bash
# Proof that regression tracking works (SPEC section 9): a deliberately slowed
# kernel is caught by benchmarks/compare.sh, and a clean re-run is not.
#
#   benchmarks/prove_regression.sh [REV] [--impl NAME] [--factor K] [--fail EXPR]
#                                  [--threads N] [-- PYTEST_ARGS...]
#
# 1. Writes a patch against REV (default HEAD) that makes NAME's model
#    `forward` (default impl: reference) do its work K times (default 10): a
#    training step (forward ~ 1/3 of it) then costs about 1 + (K-1)/3 = 4x.
#    K is that large because the slowdown must beat threshold x noise: the
#    default threshold is median:100% and the median moved by up to 67%
#    between clean runs on this shared machine (SPEC section 9.4).
#    --fail and --threads are passed to compare.sh; the slowdown must exceed
#    the threshold, which must exceed the noise (benchmarks/noise.py).
# 2. benchmarks/compare.sh REV REV --head-patch PATCH  -> must exit 1 (regression)
# 3. benchmarks/compare.sh REV REV                     -> must exit 0 (clean)
# Exit status 0 only if both happen. The default selection is one cell
# (-k "small and 8x128"); pass your own after `--`.
set -euo pipefail
die() { echo "prove_regression.sh: $*" >&2; exit 2; }

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
rev="HEAD"
impl="reference"
fail_args=()
thread_args=()
factor=10
pytest_args=(-k "small and 8x128")
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        --impl) [ $# -ge 2 ] || die "--impl needs a name"; impl="$2"; shift 2 ;;
        --fail) [ $# -ge 2 ] || die "--fail needs a value"; fail_args=(--fail "$2"); shift 2 ;;
        --threads) [ $# -ge 2 ] || die "--threads needs a number"; thread_args=(--threads "$2"); shift 2 ;;
        --factor) [ $# -ge 2 ] || die "--factor needs a number"; factor="$2"; shift 2 ;;
        --) shift; pytest_args=("$@"); break ;;
        -*) die "unknown option $1" ;;
        *) rev="$1"; shift ;;
    esac
done
case "$factor" in ''|*[!0-9]*|0|1) die "--factor '$factor' must be an integer >= 2" ;; esac
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


# --- deliberately slowed by benchmarks/prove_regression.sh (never committed) ---
_unslowed_forward = forward


def forward(params, tokens, targets=None):
    for _ in range($factor - 1):  # the same work $factor times
        _unslowed_forward(params, tokens, targets)
    return _unslowed_forward(params, tokens, targets)
EOF
git -C "$tmp/patchwork" diff > "$tmp/slow.patch"
git -C "$repo" worktree remove --force "$tmp/patchwork"
echo "prove_regression.sh: slowdown patch ($model forward runs $factor times):"
cat "$tmp/slow.patch"

set +e
"$here/compare.sh" "$sha" "$sha" --head-patch "$tmp/slow.patch" "${fail_args[@]}" "${thread_args[@]}" \
    -- --impl "$impl" "${pytest_args[@]}"
slowed=$?
"$here/compare.sh" "$sha" "$sha" "${fail_args[@]}" "${thread_args[@]}" -- --impl "$impl" "${pytest_args[@]}"
clean=$?
set -e

echo "prove_regression.sh: slowed run: compare.sh exit $slowed (want 1: regression caught)"
echo "prove_regression.sh: clean run:  compare.sh exit $clean (want 0: no false alarm)"
if [ "$slowed" -eq 1 ] && [ "$clean" -eq 0 ]; then
    echo "prove_regression.sh: PROVEN: the slowed kernel was caught and the clean re-run passed"
    exit 0
fi
echo "prove_regression.sh: NOT PROVEN" >&2
exit 1
