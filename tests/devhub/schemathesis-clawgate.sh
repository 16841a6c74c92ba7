#!/usr/bin/env bash
# Schemathesis (the same pinned venv as schemathesis.sh) against clawgate's own HTTP API,
# wrapper/openapi.json, served by `clawgate serve` on its Unix sockets. Schemathesis speaks TCP
# only, so tests/devhub/unix_bridge.py fronts the hook and admin sockets on a loopback port
# (requests and answers relayed unchanged). Fails on any 5xx, any answer that breaks the
# document, any schema-invalid request accepted, any undocumented method not answered 405.
#
#   tests/devhub/schemathesis-clawgate.sh        # CLAWGATE_BIN or target/debug/clawgate
#
# Not checked: `positive_data_acceptance` (as for the dev Hub: a schema-valid request may be
# refused by design, e.g. approving an approval id that does not exist).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

ST_VERSION="${ST_VERSION:-4.32.5}"
ST_MAX_EXAMPLES="${ST_MAX_EXAMPLES:-100}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/clawgate-schemathesis"
VENV="$CACHE/venv-$ST_VERSION"

log() { printf '[devhub/schemathesis-clawgate.sh] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/schemathesis" ]; then
  log "creating $VENV (schemathesis==$ST_VERSION)"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION"
fi

CLAWGATE_BIN="${CLAWGATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawgate}"
if [ ! -x "$CLAWGATE_BIN" ]; then
  log "cargo build --locked -q --bin clawgate"
  cargo build --locked -q --bin clawgate
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ "${CLAWGATE_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

STATE="$WORK/state"
cat >"$WORK/clawgate.toml" <<TOML
state_dir = "$STATE"
[admin]
listen = "off"
[approvals]
# A call that must be approved is held this long (the default holds the fuzzer minutes).
wait_seconds = 1
[egress]
listen = "off"
connect_listen = "off"
TOML
env -i PATH="$PATH" CLAWGATE_STATE_DIR="$STATE" CLAWGATE_LOG=info \
  "$CLAWGATE_BIN" serve --config "$WORK/clawgate.toml" >/dev/null 2>"$WORK/serve.log" &
PIDS+=($!)
for _ in $(seq 1 400); do [ -S "$STATE/hook.sock" ] && [ -S "$STATE/admin.sock" ] && break; sleep 0.05; done
[ -S "$STATE/hook.sock" ] || { log "clawgate serve did not start"; cat "$WORK/serve.log" >&2; exit 1; }

python3 "$HERE/unix_bridge.py" --hook "$STATE/hook.sock" --admin "$STATE/admin.sock" --port-file "$WORK/port" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
PORT="$(cat "$WORK/port")"
log "clawgate serve behind http://127.0.0.1:$PORT"

rc=0
cd "$WORK" # schemathesis writes .schemathesis/ in its working directory
"$VENV/bin/schemathesis" run "$ROOT/wrapper/openapi.json" \
  --url "http://127.0.0.1:$PORT" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$ST_MAX_EXAMPLES" \
  --request-timeout 20 \
  --seed "${ST_SEED:-1}" \
  --generation-database none \
  --report-dir "$WORK/report" \
  --no-color ${ST_EXTRA:-} || rc=$?

if grep -q 'panicked' "$WORK/serve.log"; then log "clawgate serve panicked"; rc=1; fi
kill -0 "${PIDS[0]}" 2>/dev/null || { log "clawgate serve died"; rc=1; }
log "exit $rc"
exit "$rc"
