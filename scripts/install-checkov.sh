#!/usr/bin/env bash
# Installs checkov (Bicep static checks, tests/static/test_checkov.py) into a venv of its own: checkov
# pins an old `packaging` that would clash with the app's packages in .venv.
#
# Where: .venv/checkov by default (CHECKOV_VENV overrides). Inside .venv, so the existing .gitignore,
# .funcignore, ruff's exclude and `make clean` already cover it. Idempotent: it does nothing when the
# pinned version is installed, and needs only Python 3.11+ and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION="3.3.30"
PYTHON="${PYTHON:-python3}"
VENV="${CHECKOV_VENV:-.venv/checkov}"
LOCK="scripts/checkov.lock"   # checkov's dependencies as tested (constraints)
STAMP="$VENV/.installed-checkov-$CHECKOV_VERSION-$(cksum < "$LOCK" | cut -d' ' -f1)"

if [[ -f "$STAMP" && -x "$VENV/bin/checkov" ]]; then
  exit 0
fi
case "$VENV" in ""|"/"|"."|".venv") echo "refusing CHECKOV_VENV=$VENV" >&2; exit 2 ;; esac
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" \
  -c "$LOCK"
touch "$STAMP"
echo "checkov $CHECKOV_VERSION installed in $VENV"
