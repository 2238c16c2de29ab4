#!/usr/bin/env bash
# Proves the repository stands alone: clones the committed HEAD into an empty temporary folder and
# runs the README's test command there (`make test`: a fresh .venv, packages from the registries,
# Azurite from npm). Slow (minutes), so not part of `make test` or .ci/run; run it before a release
# or after moving files around. Uncommitted changes are not in the clone. KEEP=1 keeps the folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
head=$(git -C "$root" rev-parse HEAD)
tmp=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then echo "clone kept in $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
if [ -n "$(git -C "$root" status --porcelain)" ]; then
  echo "note: uncommitted changes are not part of the clone" >&2
fi
# --no-local copies the objects as a remote clone would (no hard links into this checkout).
git clone --quiet --no-local --no-checkout "$root" "$tmp/repo"
git -C "$tmp/repo" checkout --quiet --detach "$head"
echo "testing $head in $tmp/repo"
cd "$tmp/repo"
make test
