#!/usr/bin/env bash
# Schemathesis (PyPI, pinned) against the dev Hub with hub/openapi.json, every check but one:
# fails on any 5xx, any answer that breaks the document (status code, content type, headers,
# body schema), any schema-invalid request the Hub accepts, any request accepted without the
# credential, and any undocumented method not answered 405 with Allow.
#
#   tests/devhub/schemathesis.sh                 # DEVHUB_BIN or target/debug/clawgate-devhub
#   ST_MAX_EXAMPLES=200 tests/devhub/schemathesis.sh
#
# Steps: a venv with schemathesis==$ST_VERSION under ~/.cache/clawgate-schemathesis (reused);
# the dev Hub on a free loopback port with a temporary state dir (long polls capped at 1 s so
# the fuzzer is not held 30 s per call); one appliance enrolled with a minted token (curl,
# TLS pinned with --pinnedpubkey); schemathesis run with that credential.
#
# Not checked: `positive_data_acceptance`. The protocol answers 4xx to many schema-valid
# requests by design (a random audit record breaks the chain: 409/422; a random cursor: 410; a
# bundle status for a version never published: 400), so "valid by the schema" does not mean
# "must succeed" here.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

ST_VERSION="${ST_VERSION:-4.32.5}"
ST_MAX_EXAMPLES="${ST_MAX_EXAMPLES:-100}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/clawgate-schemathesis"
VENV="$CACHE/venv-$ST_VERSION"

log() { printf '[devhub/schemathesis.sh] %s\n' "$*" >&2; }

# ---- 1. schemathesis ---------------------------------------------------------------------------
if [ ! -x "$VENV/bin/schemathesis" ]; then
  log "creating $VENV (schemathesis==$ST_VERSION)"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION"
fi
"$VENV/bin/schemathesis" --version >&2

# ---- 2. the dev Hub ----------------------------------------------------------------------------
DEVHUB_BIN="${DEVHUB_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawgate-devhub}"
if [ ! -x "$DEVHUB_BIN" ]; then
  log "cargo build --locked -q -p clawgate-devhub"
  cargo build --locked -q -p clawgate-devhub
fi
[ -x "$DEVHUB_BIN" ] || { log "no dev Hub binary at $DEVHUB_BIN"; exit 1; }

WORK="$(mktemp -d)"
HUB_PID=""
cleanup() {
  if [ -n "$HUB_PID" ]; then kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; fi
  if [ "${DEVHUB_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
STATE="$WORK/hub"
"$DEVHUB_BIN" --state "$STATE" --listen "127.0.0.1:$PORT" --max-wait 1 >"$WORK/hub.out" 2>"$WORK/hub.log" &
HUB_PID=$!
for _ in $(seq 1 200); do [ -f "$STATE/url" ] && break; sleep 0.05; done
[ -f "$STATE/url" ] || { log "the dev Hub did not start"; cat "$WORK/hub.log" >&2; exit 1; }
URL="https://127.0.0.1:$PORT"
PIN_B64="$(sed -n 's/.*--ignore-certificate-errors-spki-list=//p' "$WORK/hub.out")"
log "dev Hub at $URL (pid $HUB_PID)"

# ---- 3. one enrolled appliance -----------------------------------------------------------------
"$DEVHUB_BIN" token --state "$STATE" --tenant schemathesis --out "$WORK/token.json" >/dev/null
TOKEN="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$WORK/token.json")"
# -k skips the CA check (there is none for a self-signed key); --pinnedpubkey checks the key.
ENROLL="$(curl -sS -k --pinnedpubkey "sha256//$PIN_B64" -H 'Content-Type: application/json' \
  --data "{\"token\":\"$TOKEN\",\"hostname\":\"schemathesis\",\"version\":\"0.1.0\"}" "$URL/v1/enroll")"
CREDENTIAL="$(printf '%s' "$ENROLL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["credential"])')"
case "$CREDENTIAL" in cga_*) ;; *) log "enrollment failed"; exit 1 ;; esac

# ---- 4. schemathesis ---------------------------------------------------------------------------
log "schemathesis run hub/openapi.json (every check but positive_data_acceptance; max examples $ST_MAX_EXAMPLES)"
rc=0
cd "$WORK" # schemathesis writes .schemathesis/ in its working directory
"$VENV/bin/schemathesis" run "$ROOT/hub/openapi.json" \
  --url "$URL" \
  --tls-verify false \
  --header "Authorization: Bearer $CREDENTIAL" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$ST_MAX_EXAMPLES" \
  --request-timeout 20 \
  --seed "${ST_SEED:-1}" \
  --generation-database none \
  --report-dir "$WORK/report" \
  --no-color ${ST_EXTRA:-} || rc=$?

if grep -q 'panicked' "$WORK/hub.log"; then log "the dev Hub panicked"; cat "$WORK/hub.log" >&2; rc=1; fi
kill -0 "$HUB_PID" 2>/dev/null || { log "the dev Hub died"; rc=1; }
log "exit $rc"
exit "$rc"
