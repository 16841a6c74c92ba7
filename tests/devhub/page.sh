#!/usr/bin/env bash
# The dev Hub's operator page in headless Chromium, tapped like a phone (tests/e2e/cdp_click.mjs):
# one approval approved, one denied; each decision must then be signed and served to the
# appliance, and a summary containing markup must show as text.
#
#   tests/devhub/page.sh       # needs chromium and Node >= 22 (or 20 with --experimental-websocket)
#
# The page is HTTPS with the dev Hub's self-signed key: Chromium trusts exactly that key through
# --ignore-certificate-errors-spki-list (a wrapper passed to cdp_click.mjs as CHROMIUM).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
log() { printf '[devhub/page.sh] %s\n' "$*" >&2; }

DEVHUB_BIN="${DEVHUB_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawgate-devhub}"
[ -x "$DEVHUB_BIN" ] || cargo build --locked -q -p clawgate-devhub
command -v chromium >/dev/null || { log "chromium is missing (apt-get install chromium)"; exit 1; }
NODE_FLAGS=""
case "$(node --version)" in v2[0-1].*) NODE_FLAGS="--experimental-websocket" ;; esac

WORK="$(mktemp -d)"
HUB_PID=""
cleanup() {
  if [ -n "$HUB_PID" ]; then kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
STATE="$WORK/hub"
"$DEVHUB_BIN" --state "$STATE" --listen "127.0.0.1:$PORT" >"$WORK/hub.out" 2>"$WORK/hub.log" &
HUB_PID=$!
for _ in $(seq 1 200); do [ -f "$STATE/url" ] && break; sleep 0.05; done
URL="https://127.0.0.1:$PORT"
PIN_B64="$(sed -n 's/.*--ignore-certificate-errors-spki-list=//p' "$WORK/hub.out")"
CURL=(curl -sS -k --pinnedpubkey "sha256//$PIN_B64")

"$DEVHUB_BIN" token --state "$STATE" --tenant page-test --out "$WORK/token.json" >/dev/null
TOKEN="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$WORK/token.json")"
CRED="$("${CURL[@]}" -H 'Content-Type: application/json' \
  --data "{\"token\":\"$TOKEN\",\"hostname\":\"page\",\"version\":\"0.1.0\"}" "$URL/v1/enroll" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["credential"])')"

ask() { # approval id, summary
  local now; now="$(date +%s)"
  "${CURL[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $CRED" -H 'Content-Type: application/json' \
    --data "{\"approval_id\":\"$1\",\"action_hash\":\"$(printf 'cd%.0s' $(seq 32))\",\"class\":\"yellow_external\",\"summary\":\"$2\",\"agent\":\"main\",\"tool\":\"exec\",\"created_at\":$now,\"expires_at\":$((now + 86400))}" \
    "$URL/v1/approvals"
}
[ "$(ask ap_00000000000000a1 'exec: curl https://example.com/install.sh <b>bold</b>')" = 201 ]
[ "$(ask ap_00000000000000d1 'exec: scp notes.txt backup.example.net:')" = 201 ]

printf '#!/bin/sh\nexec chromium --ignore-certificate-errors-spki-list=%s "$@"\n' "$PIN_B64" >"$WORK/chromium"
chmod +x "$WORK/chromium"
OPERATOR="$(cat "$STATE/operator-token")"
tap() { # selector, expected text; prints the page text
  CHROMIUM="$WORK/chromium" node $NODE_FLAGS "$ROOT/tests/e2e/cdp_click.mjs" \
    --url "$URL/ui#token=$OPERATOR" --selector "$1" --expect-text "$2" --timeout-ms 40000
}
page1="$(tap '#approve-ap_00000000000000a1' 'Sent allow_once for ap_00000000000000a1')"
page2="$(tap '#deny-ap_00000000000000d1' 'Sent deny for ap_00000000000000d1')"

status() { "${CURL[@]}" -H "Authorization: Bearer $CRED" "$URL/v1/approvals/$1"; }
check() { # approval id, expected decision
  status "$1" | python3 -c '
import json, sys
s = json.load(sys.stdin)
want = sys.argv[1]
assert s["status"] == "decided", s
d = s["decision"]["signed"]
assert d["decision"] == want and d["tenant_id"] == "page-test" and d["decided_by"] == "user:devhub-operator", d
print("ok", s["approval_id"], want)' "$2"
}
check ap_00000000000000a1 allow_once
check ap_00000000000000d1 deny
# Markup in a summary is text: the page text (innerText) shows the tags literally.
grep -q '<b>bold</b>' <<<"$page2" || { log "summary markup was not shown as text"; exit 1; }
log "ok: approve and deny tapped in headless Chromium, decisions signed and served"
