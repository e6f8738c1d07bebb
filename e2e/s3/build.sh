#!/usr/bin/env bash
# Installs the S3-compatible server the file-storage tests run against, into a cache outside
# the checkout, and prints the path of its binary on the last line.
#
#   e2e/s3/build.sh                     install unless the cache already holds this version
#   DOLPHIN_CACHE=/some/dir build.sh    cache under /some/dir instead of ~/.cache/dolphin
#
# The server is s3s-fs, from crates.io: a Rust S3 server that keeps buckets as folders on
# disk. It speaks the S3 API (signature v4, multipart uploads, ranged reads) over HTTP, which
# is what the tests need to exercise Dolphin's S3 code path against a real server on loopback.
# The version is pinned; 0.14.1 is the newest that builds with Rust 1.95 (later ones need
# 1.96). A second run finds the binary and returns at once.
set -euo pipefail

S3S_FS_VERSION=0.14.1
CACHE="${DOLPHIN_CACHE:-$HOME/.cache/dolphin}"
ROOT="$CACHE/s3s-fs-$S3S_FS_VERSION"
BIN="$ROOT/bin/s3s-fs"

if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
fi

command -v cargo >/dev/null || { echo "cargo is not on PATH" >&2; exit 1; }
echo "building s3s-fs $S3S_FS_VERSION into $ROOT (a few minutes on 2 cores)" >&2
started=$SECONDS
# A temporary target folder of its own: the workspace's shared target is not disturbed, and
# nothing is left behind but the binary.
env -u CARGO_TARGET_DIR cargo install --quiet --locked -j2 \
    --root "$ROOT" --version "$S3S_FS_VERSION" --features binary s3s-fs >&2
echo "built s3s-fs in $((SECONDS - started)) s" >&2
echo "$BIN"
