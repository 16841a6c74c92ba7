#!/usr/bin/env bash
# CI entry point for the Clawgate end-to-end tests (about 4 minutes warm).
#
#   1. tests/e2e/setup.sh          Node 24 + OpenClaw 2026.9.6 (npm cache) + Chromium (apt, if missing)
#   2. clawgate binary             $CLAWGATE_BIN, or `cargo build --release --locked -q` -> target/release/clawgate
#   3. plugin unit tests           node --test wrapper/openclaw-plugin/test/*.test.mjs (Node 24, and the
#                                  system node when there is one: the plugin supports Node >= 20)
#   4. harness smoke test          python3 tests/e2e/smoke_test.py -v  (only with CLAWGATE_E2E_SMOKE=1)
#   5. Clawgate e2e test           python3 tests/e2e/clawgate_e2e_test.py -v
#   6. dev Hub e2e test            python3 tests/e2e/hub_e2e_test.py -v  (clawgate enrolled against
#                                  clawgate-devhub: $CLAWGATE_DEVHUB_BIN, else the clawgate-devhub next
#                                  to $CLAWGATE_BIN, else `cargo build --locked -q -p clawgate-devhub`)
#
# CLAWGATE_E2E_SUITES selects steps 5-6 (space-separated, default "clawgate hub"), e.g.
# CLAWGATE_E2E_SUITES=hub bash tests/e2e/run.sh.
# Every step runs even if an earlier test step failed; the exit status is non-zero if any failed
# (setup and build failures stop at once). Missing prerequisites fail instead of skipping.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

log() { printf '\n[run.sh] %s\n' "$*" >&2; }
failed=()
step() { # <name> <command...>: run a test step, remember a failure, keep going
  local name="$1"; shift
  local t0=$SECONDS
  log "$name: $*"
  if "$@"; then
    log "$name: ok ($((SECONDS - t0))s)"
  else
    log "$name: FAILED rc=$? ($((SECONDS - t0))s)"
    failed+=("$name")
  fi
}

# ---- 1. prerequisites ------------------------------------------------------------------------
log "setup.sh"
setup_out="$(bash "$HERE/setup.sh")"
while IFS='=' read -r key value; do
  case "$key" in
    CLAWGATE_E2E_CACHE|NODE24|OPENCLAW_MJS|CHROMIUM) export "$key=$value" ;;
  esac
done <<<"$setup_out"
printf '%s\n' "$setup_out" >&2
[ -x "${NODE24:-}" ] || { log "setup.sh did not report NODE24"; exit 1; }
[ -f "${OPENCLAW_MJS:-}" ] || { log "setup.sh did not report OPENCLAW_MJS"; exit 1; }
[ -x "${CHROMIUM:-}" ] || { log "setup.sh did not report CHROMIUM"; exit 1; }

# ---- 2. clawgate -----------------------------------------------------------------------------
if [ -n "${CLAWGATE_BIN:-}" ]; then
  log "using CLAWGATE_BIN=$CLAWGATE_BIN"
else
  log "cargo build --release --locked -q"
  cargo build --release --locked -q
  CLAWGATE_BIN="$ROOT/target/release/clawgate"
fi
[ -x "$CLAWGATE_BIN" ] || { log "no clawgate binary at $CLAWGATE_BIN"; exit 1; }
export CLAWGATE_BIN
"$CLAWGATE_BIN" --version >&2

SUITES=" ${CLAWGATE_E2E_SUITES:-clawgate hub} "
# ---- 2b. the dev Hub (hub_e2e_test.py) -------------------------------------------------------
if [[ "$SUITES" == *" hub "* ]]; then
  if [ -n "${CLAWGATE_DEVHUB_BIN:-}" ]; then
    log "using CLAWGATE_DEVHUB_BIN=$CLAWGATE_DEVHUB_BIN"
  elif [ -x "$(dirname "$CLAWGATE_BIN")/clawgate-devhub" ]; then
    CLAWGATE_DEVHUB_BIN="$(dirname "$CLAWGATE_BIN")/clawgate-devhub"
    log "using the dev Hub next to clawgate: $CLAWGATE_DEVHUB_BIN"
  else
    log "cargo build --locked -q -p clawgate-devhub"
    cargo build --locked -q -p clawgate-devhub
    CLAWGATE_DEVHUB_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawgate-devhub"
  fi
  [ -x "$CLAWGATE_DEVHUB_BIN" ] || { log "no clawgate-devhub binary at $CLAWGATE_DEVHUB_BIN"; exit 1; }
  export CLAWGATE_DEVHUB_BIN
fi

# The tests fail (not skip) when something is missing.
export CLAWGATE_E2E_REQUIRE=1

# ---- 3-6. tests ------------------------------------------------------------------------------
plugin_tests=("$ROOT"/wrapper/openclaw-plugin/test/*.test.mjs)
step "plugin unit tests (node $("$NODE24" --version))" "$NODE24" --test "${plugin_tests[@]}"
if command -v node >/dev/null && [ "$(command -v node)" != "$NODE24" ]; then
  step "plugin unit tests (system node $(node --version))" node --test "${plugin_tests[@]}"
fi
# The harness's own smoke test (probe plugin, ~2 min) proves the harness, not Clawgate: run it
# when changing the harness (CLAWGATE_E2E_SMOKE=1); CI keeps to the Clawgate test.
if [ "${CLAWGATE_E2E_SMOKE:-0}" = 1 ]; then
  step "harness smoke test" python3 "$HERE/smoke_test.py" -v
fi
if [[ "$SUITES" == *" clawgate "* ]]; then
  step "clawgate e2e test" python3 "$HERE/clawgate_e2e_test.py" -v
fi
if [[ "$SUITES" == *" hub "* ]]; then
  step "dev Hub e2e test (enrolled: approve/deny on the Hub page, pushed bundle)" \
    python3 "$HERE/hub_e2e_test.py" -v
fi

if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all e2e steps passed"
