#!/usr/bin/env bash
# Idempotent installer for the SDK compatibility tests (tests/sdk).
#
#   a Python venv with the official `openai` and `anthropic` SDKs, pinned with their whole
#   dependency closure in tests/sdk/requirements.txt (installed with --no-deps, then `pip check`)
#
# The venv lives in ${CLAWGATE_SDK_CACHE:-$HOME/.cache/clawgate-sdk}/venv and is rebuilt when the
# SHA-256 of requirements.txt (or the Python version) changes. If `python3 -m venv` lacks ensurepip
# (Debian without python3-venv) and we are root, python3-venv is installed with apt-get.
# Prints the resulting paths as KEY=VALUE lines (eval-able) at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQ="$HERE/requirements.txt"
CACHE="${CLAWGATE_SDK_CACHE:-$HOME/.cache/clawgate-sdk}"
VENV="$CACHE/venv"
PY="${PYTHON:-python3}"

log() { printf '[sdk-setup] %s\n' "$*" >&2; }

command -v "$PY" >/dev/null || { log "$PY not found"; exit 1; }
key="$(sha256sum "$REQ" | cut -d' ' -f1) $("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
stamp="$VENV/.clawgate-requirements"

if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  log "venv up to date ($VENV)"
else
  mkdir -p "$CACHE"
  # ensurepip is split out of Debian's python3 (package python3-venv / python3.X-venv).
  if ! "$PY" -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      log "python3 has no ensurepip and we are not root: run 'apt-get update && apt-get install -y python3-venv' as root"; exit 1
    fi
    log "installing Debian python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends python3-venv >&2
  fi
  log "building venv in $VENV"
  # The stamp is written last: an interrupted build is redone on the next run.
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
      --only-binary=:all: -r "$REQ" >&2
  "$VENV/bin/python" -m pip check >&2
  echo "$key" >"$stamp"
fi

versions="$("$VENV/bin/python" -c 'from importlib.metadata import version as v; print(v("openai"), v("anthropic"))')"
log "openai ${versions% *}, anthropic ${versions#* }"
echo "CLAWGATE_SDK_CACHE=$CACHE"
echo "SDK_PYTHON=$VENV/bin/python"
echo "OPENAI_VERSION=${versions% *}"
echo "ANTHROPIC_VERSION=${versions#* }"
