#!/usr/bin/env bash
# Build the Feste adapter (adapters/feste/target/release/feste-adapter).
#
#   adapters/feste/build.sh          build it
#   adapters/feste/build.sh test     build it and run its own unit tests (cargo test)
#
# Feste is never copied into this project: its source tree is copied from
# FESTE_SRC into adapters/feste/build/feste (where Cargo.toml's path dependency
# points), a patch is applied to the copy when there is one, and the adapter is
# built against it.
#
# Environment (all optional):
#   FESTE_SRC       Feste's source tree (Cargo.toml, src/).
#                   Default: <project>/../shared/feste/source
#   FESTE_PATCH     a patch applied to the copy with `patch -p1`; empty for none.
#                   Default: <FESTE_SRC>/../debian-crates.patch if it exists (Debian's
#                   crate versions: rand 0.8, rand_distr 0.4, clap 4.0, rayon 1.6)
#   CARGO           the cargo to run. Default: /usr/bin/cargo (Debian's) if present, else cargo
#   CARGO_REGISTRY  a directory registry standing in for crates.io (Debian's packaged
#                   crates); written as source replacement to adapters/feste/.cargo/config.toml
#                   and the build runs --offline. Default: /usr/share/cargo/registry if it
#                   exists; empty to use crates.io with your normal cargo.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

src="${FESTE_SRC:-$root/../shared/feste/source}"
if [ ! -f "$src/Cargo.toml" ] || [ ! -d "$src/src" ]; then
    echo "build.sh: no Feste source tree at $src (set FESTE_SRC to a directory holding Feste's Cargo.toml and src/)" >&2
    exit 2
fi
src="$(cd "$src" && pwd)"
if [ -z "${FESTE_PATCH+set}" ]; then
    FESTE_PATCH=""
    [ -f "$src/../debian-crates.patch" ] && FESTE_PATCH="$(cd "$src/.." && pwd)/debian-crates.patch"
fi
if [ -z "${CARGO:-}" ]; then
    if [ -x /usr/bin/cargo ]; then CARGO=/usr/bin/cargo; else CARGO=cargo; fi
fi
if [ -z "${CARGO_REGISTRY+set}" ]; then
    CARGO_REGISTRY=""
    [ -d /usr/share/cargo/registry ] && CARGO_REGISTRY=/usr/share/cargo/registry
fi

echo "build.sh: Feste from $src${FESTE_PATCH:+ (patched with $FESTE_PATCH)}; cargo: $CARGO${CARGO_REGISTRY:+ (crates from $CARGO_REGISTRY, offline)}"

# A fresh copy each time: the patch applies to pristine source only.
rm -rf "$here/build"
mkdir -p "$here/build"
cp -r "$src" "$here/build/feste"
rm -rf "$here/build/feste/target" "$here/build/feste/Cargo.lock" "$here/build/feste/.cargo"
if [ -n "$FESTE_PATCH" ]; then
    patch -s -p1 -d "$here/build/feste" < "$FESTE_PATCH"
fi

# the hello names the Feste version built against
FESTE_VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$here/build/feste/Cargo.toml" | head -1)"
export FESTE_VERSION

offline=()
rm -rf "$here/.cargo"
if [ -n "$CARGO_REGISTRY" ]; then
    mkdir -p "$here/.cargo"
    printf '[source.crates-io]\nreplace-with = "packaged"\n[source.packaged]\ndirectory = "%s"\n' \
        "$CARGO_REGISTRY" > "$here/.cargo/config.toml"
    offline=(--offline)
    # the lock file pins versions of one registry; another registry needs a new one
    rm -f "$here/Cargo.lock"
fi

cd "$here"   # cargo reads .cargo/config.toml from the working directory up
"$CARGO" build --release "${offline[@]}"
if [ "${1:-}" = test ]; then
    "$CARGO" test --release "${offline[@]}"
elif [ -n "${1:-}" ]; then
    echo "build.sh: unknown argument $1 (use: build.sh [test])" >&2
    exit 2
fi
echo "build.sh: built $here/target/release/feste-adapter"
