#!/usr/bin/env bash
# Create the project virtualenv (default .venv) if it is missing.
# Prefers python3.11, falls back to python3. On Debian, `python3 -m venv` needs the
# python3-venv package (ensurepip); install it (as root directly, else via sudo) if missing.
set -euo pipefail

VENV=${1:-.venv}
if [[ -x "$VENV/bin/python" ]]; then
  exit 0
fi

PYTHON=$(command -v python3.11 || command -v python3 || true)
if [[ -z "$PYTHON" ]]; then
  echo "ensure-venv: no python3 found; install Python >= 3.11 (apt-get install python3)" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "ensure-venv: $PYTHON is older than 3.11" >&2
  exit 1
fi

if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
  rm -rf "$VENV"
  version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  if [[ $(id -u) -eq 0 ]]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
    echo "ensure-venv: '$PYTHON -m venv' failed; install python${version}-venv as root" >&2
    exit 1
  fi
  echo "ensure-venv: installing python${version}-venv" >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "python${version}-venv"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
