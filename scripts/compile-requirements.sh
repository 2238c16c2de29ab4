#!/usr/bin/env bash
# Regenerates requirements.txt (every runtime package, exact versions, hashes) from requirements.in,
# holding each package at the version in requirements.lock (what the tests ran against). Needs
# pip-tools and the package registry; REQUIREMENTS_COMPILER=/path/to/pip-compile if it is not on
# PATH (not PIP_...: pip reads every PIP_* variable as one of its own options).
# docs/decisions.md ("Dependencies") describes when to run it.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp requirements.in requirements.lock "$tmp/"
echo "-c requirements.lock" >> "$tmp/requirements.in"
(cd "$tmp" && "${REQUIREMENTS_COMPILER:-pip-compile}" --quiet --generate-hashes --strip-extras --allow-unsafe \
  --no-header -o requirements.txt requirements.in)
{
  echo "# Runtime dependencies for deployment: every package at the exact version the tests ran against,"
  echo "# with hashes, so a deployment installs exactly what was tested. Generated from requirements.in"
  echo "# by scripts/compile-requirements.sh (docs/decisions.md, \"Dependencies\"); do not edit by hand."
  # pip-compile copies pip's machine-local index options; a deployment must use only PyPI.
  grep -v -E '^(--extra-index-url|--index-url|--find-links|--trusted-host)' "$tmp/requirements.txt" \
    | sed -e '/./,$!d' -e 's|^    #   -c requirements.lock$|    #   requirements.lock|'
} > requirements.txt
echo "requirements.txt regenerated; review with: git diff requirements.txt"
