#!/usr/bin/env bash
# The systemd second layer (IPAddressDeny=any + IPAddressAllow=localhost) under a real systemd:
# a Debian bookworm root booted twice with systemd-nspawn.
#
#   boot A: cgroup v2 and bpf() allowed       -> `provision firewall --agent-unit` detects support
#           and writes the drop-in; a unit with it cannot send to a non-local address, can to
#           127.0.0.1; the same command outside the unit can
#   boot B: nspawn's defaults (bpf() refused)  -> detection says unsupported and writes nothing;
#           a drop-in forced by hand is silently ignored (the trap detection exists for)
#
# Root only. Installs debootstrap and systemd-container from Debian if missing. The root
# filesystem is cached outside the repository ($CLAWGATE_NSPAWN_ROOT, default
# /var/tmp/clawgate-nspawn/bookworm; about 250 MB, a minute to build). Each container has a
# private network with only loopback and a veth pair inside it: nothing leaves the machine.
#
#   CLAWGATE_BIN=/path/to/target/debug/clawgate tests/egresslock/systemd_layer.sh
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "run as root" >&2
    exit 2
fi
: "${CLAWGATE_BIN:?set CLAWGATE_BIN to a clawgate binary}"
ROOT=${CLAWGATE_NSPAWN_ROOT:-/var/tmp/clawgate-nspawn/bookworm}
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
if [ ! -x "$ROOT/lib/systemd/systemd" ]; then
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$ROOT" \
        http://deb.debian.org/debian >/dev/null
fi

UNIT=cgtest-egresslock.service
DROPIN_DIR="$ROOT/etc/systemd/system/$UNIT.d"
LOG=$(mktemp)
NSPAWN_PID=
fail() { echo "FAIL $*"; exit 1; }
ok() { echo "ok   $*"; }

cleanup() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        in_ct systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$NSPAWN_PID" 2>/dev/null && kill "$NSPAWN_PID"
    fi
    rm -rf "$DROPIN_DIR" "$ROOT/etc/systemd/system/$UNIT" "$ROOT/usr/local/bin/clawgate" "$ROOT/root/cgtest.out" \
        "$ROOT/tmp/egress-lock.nft" "$ROOT/tmp/cgstate"
    rm -f "$LOG"
}
trap cleanup EXIT

in_ct() { nsenter -t "$INIT" -a -- "$@"; }

boot() {
    # $@: extra environment and nspawn options
    env "$@" --register=no --keep-unit --private-network -D "$ROOT" >"$LOG" 2>&1 &
    NSPAWN_PID=$!
    INIT=
    for _ in $(seq 100); do
        INIT=$(pgrep -P "$NSPAWN_PID" -x systemd || true)
        if [ -n "$INIT" ] && [ "$(in_ct systemctl is-system-running 2>/dev/null)" = running ]; then
            break
        fi
        sleep 0.2
    done
    [ -n "$INIT" ] || fail "the container did not boot: $(tail -5 "$LOG")"
    # A non-local destination for the unit to try: a veth pair inside the container's network.
    nsenter -t "$INIT" -n ip link add va type veth peer name vb
    nsenter -t "$INIT" -n ip addr add 192.0.2.1/24 dev va
    nsenter -t "$INIT" -n ip link set va up
    nsenter -t "$INIT" -n ip link set vb up
}

poweroff() {
    in_ct systemctl poweroff >/dev/null 2>&1 || true
    wait "$NSPAWN_PID" || true
    NSPAWN_PID=
}

# The unit: one datagram to a non-local address, one to loopback; what happened goes to a file.
run_unit() {
    rm -f "$ROOT/root/cgtest.out"
    in_ct systemctl daemon-reload
    in_ct systemctl start "$UNIT"
    cat "$ROOT/root/cgtest.out"
}

install -m 0755 "$CLAWGATE_BIN" "$ROOT/usr/local/bin/clawgate"
cat >"$ROOT/etc/systemd/system/$UNIT" <<'EOF'
[Service]
Type=oneshot
ExecStart=/bin/bash -c '((echo x >/dev/udp/192.0.2.2/9) 2>/dev/null && echo remote=sent || echo remote=refused; (echo x >/dev/udp/127.0.0.1/9) 2>/dev/null && echo local=sent || echo local=refused) >/root/cgtest.out'
EOF
provision() {
    in_ct /usr/local/bin/clawgate --state-dir /tmp/cgstate provision firewall --agent-user nobody \
        --write /tmp/egress-lock.nft --agent-unit "$UNIT" | tail -n 1
}

echo "== boot A: cgroup v2, bpf() allowed"
boot SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -b --system-call-filter=bpf --capability=CAP_BPF,CAP_NET_ADMIN
out=$(provision)
[[ $out == *"clawgate-egress-lock.conf: written"* ]] || fail "support not detected: $out"
ok "detected: $out"
[ "$(run_unit | tr '\n' ' ')" = "remote=refused local=sent " ] || fail "drop-in not enforced: $(run_unit)"
ok "the unit with the drop-in cannot send to 192.0.2.2, can to 127.0.0.1"
control=$(in_ct systemd-run --wait -P -q /bin/bash -c '(echo x >/dev/udp/192.0.2.2/9) 2>/dev/null && echo remote=sent || echo remote=refused')
[ "$control" = remote=sent ] || fail "control: $control"
ok "the same send from a unit without it goes out"
out=$(provision)
[[ $out == *"clawgate-egress-lock.conf: unchanged"* ]] || fail "re-run: $out"
ok "a re-run leaves the drop-in unchanged"
out=$(in_ct /usr/local/bin/clawgate --state-dir /tmp/cgstate provision firewall --agent-user nobody \
    --print --agent-unit other.service)
[[ $out == *"other.service.d/clawgate-egress-lock.conf (enforced on this host)"* ]] || fail "--print: $out"
[ ! -e "$ROOT/etc/systemd/system/other.service.d" ] || fail "--print wrote a drop-in"
ok "--print shows the drop-in and the verdict, writes nothing"
poweroff
rm -rf "$DROPIN_DIR"

echo "== boot B: nspawn defaults (bpf() refused by its seccomp filter)"
boot systemd-nspawn -b
out=$(provision)
[[ $out == *"no systemd drop-in"*"could still send"* ]] || fail "not detected as unsupported: $out"
[ ! -e "$DROPIN_DIR" ] || fail "a drop-in was written"
ok "detected as unsupported, nothing written: $out"
mkdir -p "$DROPIN_DIR"
printf '[Service]\nIPAddressDeny=any\nIPAddressAllow=localhost\n' >"$DROPIN_DIR/forced.conf"
[ "$(run_unit | tr '\n' ' ')" = "remote=sent local=sent " ] || fail "unexpected: $(run_unit)"
ok "(why: a drop-in forced by hand is silently ignored here: the unit still sends to 192.0.2.2)"
poweroff
echo "PASS"
