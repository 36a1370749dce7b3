#!/usr/bin/env bash
# Build the real Catalyst operator (its `manager` binary) from source, into a cache keyed
# by the source's content, and print the binary's path.
#
#   bash tests/cluster/catalyst_build.sh      # build if missing, print .../manager
#
# Env:
#   DEVJOBS_CATALYST_SRC  the operator/ folder of a Catalyst checkout
#                         (default: <repo>/../shared/catalyst/operator)
#   DEVJOBS_CACHE_DIR     cache root (default ${XDG_CACHE_HOME:-~/.cache}/devjobs)
#   GO                    go binary (default: go on PATH, else /usr/local/go/bin/go)
#
# Output: $CACHE/catalyst/<sha256 of the source's file paths and bytes>/manager. The
# source may be read-only (it is copied, and go may write go.sum there); the binary is
# linked beside the cache and renamed into place, so the path never names a partial file.
# Exit 3 (and a message) when there is no source.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

SRC="${DEVJOBS_CATALYST_SRC:-$repo/../shared/catalyst/operator}"
CACHE="${DEVJOBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/devjobs}"
ROOT="$CACHE/catalyst"

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--p=2} -buildvcs=false"

log() { printf '[catalyst_build.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [[ ! -f "$SRC/go.mod" || ! -d "$SRC/cmd" ]]; then
    echo "catalyst_build.sh: no Catalyst operator source at $SRC;" \
        "set DEVJOBS_CATALYST_SRC to a Catalyst checkout's operator/ folder" >&2
    exit 3
fi
SRC="$(cd "$SRC" && pwd)"

# Paths (relative to SRC) and bytes of every file, VCS metadata and build output excluded.
source_hash() {
    (cd "$SRC" && find . \( -name .git -o -name bin \) -prune -o -type f -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}
hash="$(source_hash)"
OUT_DIR="$ROOT/$hash"
BIN="$OUT_DIR/manager"

if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
fi

[[ -x "$GO" ]] || { echo "catalyst_build.sh: no Go toolchain (set GO=...)" >&2; exit 1; }
mkdir -p "$ROOT"
# One build at a time (two test runs may start on a fresh machine together).
exec 9>"$ROOT/.build.lock"
flock 9
if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
fi

WORK="$(mktemp -d "$ROOT/.build-XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
start=$(date +%s)
log "building $SRC (content $hash) with $("$GO" version)"
cp -r "$SRC" "$WORK/operator"
chmod -R u+w "$WORK/operator"
(
    cd "$WORK/operator"
    "$GO" build -trimpath -ldflags '-s -w' -o "$WORK/manager" ./cmd
) >&2
[[ -x "$WORK/manager" ]] || { echo "catalyst_build.sh: go build produced no manager" >&2; exit 1; }
mkdir -p "$OUT_DIR"
mv -f "$WORK/manager" "$BIN"
log "built $BIN in $(($(date +%s) - start)) s ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
