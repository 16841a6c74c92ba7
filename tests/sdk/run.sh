#!/usr/bin/env bash
# CI entry point for the SDK compatibility tests (about 30 s warm).
#
#   1. tests/sdk/setup.sh      a venv with the pinned openai + anthropic SDKs (cached in ~/.cache/clawgate-sdk)
#   2. clawgate binary         $CLAWGATE_BIN, default target/debug/clawgate (`cargo build --locked -q
#                              --bin clawgate` first if it does not exist)
#   3. the tests               tests/sdk/test_sdk.py -v with the venv's Python
#
# Missing prerequisites fail instead of skipping (CLAWGATE_SDK_REQUIRE=1). Exit status: the tests'.
# CLAWGATE_SDK_KEEP=1 keeps the temp world (daemon log, state dir) for inspection.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

log() { printf '\n[sdk/run.sh] %s\n' "$*" >&2; }
t0=$SECONDS

# ---- 1. prerequisites ------------------------------------------------------------------------
log "setup.sh"
setup_out="$(bash "$HERE/setup.sh")"
printf '%s\n' "$setup_out" >&2
SDK_PYTHON="$(printf '%s\n' "$setup_out" | sed -n 's/^SDK_PYTHON=//p')"
[ -x "$SDK_PYTHON" ] || { log "setup.sh did not report SDK_PYTHON"; exit 1; }

# ---- 2. clawgate -----------------------------------------------------------------------------
CLAWGATE_BIN="${CLAWGATE_BIN:-$ROOT/target/debug/clawgate}"
if [ ! -x "$CLAWGATE_BIN" ] && [ "$CLAWGATE_BIN" = "$ROOT/target/debug/clawgate" ]; then
  log "cargo build --locked -q --bin clawgate"
  cargo build --locked -q --bin clawgate
fi
[ -x "$CLAWGATE_BIN" ] || { log "no clawgate binary at $CLAWGATE_BIN"; exit 1; }
export CLAWGATE_BIN
"$CLAWGATE_BIN" --version >&2

# ---- 3. tests --------------------------------------------------------------------------------
export CLAWGATE_SDK_REQUIRE=1
log "$SDK_PYTHON tests/sdk/test_sdk.py -v"
rc=0
out="$(mktemp)"
"$SDK_PYTHON" "$HERE/test_sdk.py" -v 2>&1 | tee "$out" >&2 || rc=$?
rc=${PIPESTATUS[0]:-$rc}

# A plain summary line ("N passed, N failed") from unittest's own counts.
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in.*/\1/p' "$out" | tail -n1)
# Distinct tests (a test with failing subTests prints one FAIL line per subTest).
bad=$( (grep -E '^(FAIL|ERROR): ' "$out" || true) | awk '{print $2, $3}' | sort -u | wc -l)
skipped=$(grep -cE ' \.\.\. skipped' "$out" || true)
rm -f "$out"
if [ -z "$ran" ]; then
  log "the test run did not finish (rc=$rc)"
  exit 1
fi
log "SDK tests done in $((SECONDS - t0))s"
echo "sdk: $((ran - bad - skipped)) passed, $bad failed, $skipped skipped"
if [ "$rc" -ne 0 ] || [ "$bad" -ne 0 ]; then
  exit 1
fi
