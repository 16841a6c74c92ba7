# Sourced by tests/deb/run.sh (uses its helpers and variables): the package's lifecycle under
# systemd as PID 1, in a systemd-nspawn container booted from a fresh copy of the debootstrap
# root with a private network (its nftables rules never touch the host's). Skipped, with the
# reason, when the container does not boot here.

echo "--- under systemd as PID 1 (systemd-nspawn --boot)"
nroot=$work/nspawn-root
cp -a "$base" "$nroot"
mkdir -p "$nroot$debs"
cp "$deb1" "$deb2" "$nroot$debs/"
# --register=no --keep-unit: there is no host systemd/machined to register with. The unified
# cgroup hierarchy lets systemd in the container manage its services' cgroups.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --boot --directory="$nroot" \
    --machine="$machine" --register=no --keep-unit --private-network \
    </dev/null >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!

# The container's PID 1 is the systemd child of systemd-nspawn.
cpid=
for _ in $(seq 100); do
    for child in $(pgrep -P "$nspawn_pid" || true); do
        [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && cpid=$child
    done
    [ -n "$cpid" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.2
done
inct() { nsenter --target "$cpid" --all -- env -i PATH="$PATHS" LC_ALL=C HOME=/root "$@"; }
booted=
if [ -n "$cpid" ]; then
    for _ in $(seq 90); do
        state=$(inct systemctl is-system-running 2>/dev/null || true)
        case "$state" in running | degraded) booted=$state; break ;; esac
        sleep 1
    done
fi

nspawn_lifecycle() {
    ok "container booted with systemd as PID 1 (system state: $booted)"
    # wait_active UNIT: up to 15 s.
    wait_active() {
        for _ in $(seq 75); do
            [ "$(inct systemctl is-active "$1" 2>/dev/null)" = active ] && return 0
            sleep 0.2
        done
        inct systemctl status --no-pager "$1" || true
        return 1
    }
    prop() { inct systemctl show -p "$2" --value "$1" || true; }

    check "dpkg -i $v1 under systemd" inct dpkg -i "$d1"
    check "clawgate.service started on install" wait_active clawgate.service
    check "started without a vault-key credential (missing search-path credential is not fatal)" \
        fails inct test -e /etc/credstore.encrypted/clawgate-vault-key
    check "hook socket in /run/clawgate (tmpfiles.d, setgid group)" \
        inct sh -c 'test -S /run/clawgate/hook.sock && [ "$(stat -c %G /run/clawgate/hook.sock)" = clawgate-hook ]'
    check "clawgate approvals list against the running service" \
        inct clawgate approvals list --config /etc/clawgate/clawgate.toml
    online=$(inct systemd-analyze security clawgate.service 2>&1 |
        sed -n 's/.*Overall exposure level for clawgate.service: \([0-9.]*\).*/\1/p' || true)
    echo "      | systemd-analyze security clawgate.service (online, in the container): $online"
    check "egress lock not started by the package" fails inct systemctl is-active clawgate-egress-lock.service

    # The vault key as an encrypted credential (host key; no TPM here).
    switch_to_credential() {
        inct systemctl stop clawgate.service &&
            inct sh -c 'mkdir -p /etc/credstore.encrypted && systemd-creds encrypt --name=clawgate-vault-key \
                /var/lib/clawgate/vault.key /etc/credstore.encrypted/clawgate-vault-key &&
                mv /var/lib/clawgate/vault.key /root/vault.key.bak' &&
            sed -i 's|^#     credential = "clawgate-vault-key"$|credential = "clawgate-vault-key"|' \
                "$nroot/etc/clawgate/clawgate.toml" &&
            grep -qx 'credential = "clawgate-vault-key"' "$nroot/etc/clawgate/clawgate.toml" &&
            inct systemctl start clawgate.service && wait_active clawgate.service && sleep 2 &&
            wait_active clawgate.service
    }
    check "vault unlocked from LoadCredentialEncrypted= (key file moved away)" switch_to_credential
    check "systemctl reload clawgate (validate, then SIGHUP)" inct systemctl reload clawgate.service

    # The egress lock unit.
    lock_without_file() {
        ! inct systemctl start clawgate-egress-lock.service &&
            [ "$(prop clawgate-egress-lock.service ActiveState)" = failed ] &&
            inct systemctl --failed --no-legend | grep -q clawgate-egress-lock.service &&
            inct journalctl -u clawgate-egress-lock.service --no-pager | grep -q /etc/clawgate/egress-lock.nft &&
            ! inct nft list table inet clawgate_egress
    }
    check "egress lock without its rule file: failed, listed by --failed, path in the journal" lock_without_file
    cat >"$nroot/etc/clawgate/egress-lock.nft" <<'NFT'
table inet clawgate_egress {}
delete table inet clawgate_egress
table inet clawgate_egress {
    chain output {
        type filter hook output priority filter; policy accept;
        meta skuid 4242 counter reject
    }
}
NFT
    has_table() { inct nft list table inet clawgate_egress >/dev/null 2>&1; }
    # The re-application after a nftables.service start is queued (--no-block): allow 5 s.
    has_table_soon() {
        for _ in $(seq 25); do has_table && return 0; sleep 0.2; done
        return 1
    }
    check "provisioned: systemctl enable --now clawgate-egress-lock" \
        inct systemctl enable --now clawgate-egress-lock.service
    check "table inet clawgate_egress loaded" has_table
    # Debian's /etc/nftables.conf begins with `flush ruleset`; nftables.service is not running yet.
    nftables_then_table() { inct systemctl "$1" nftables.service && has_table_soon; }
    check "systemctl start nftables (flush ruleset) while locked: table re-applied" nftables_then_table start
    check "systemctl restart nftables: table re-applied" nftables_then_table restart
    check "systemctl reload nftables: table re-applied" nftables_then_table reload
    lock_stop_start() {
        inct systemctl stop clawgate-egress-lock.service && ! has_table &&
            inct systemctl start clawgate-egress-lock.service && has_table
    }
    check "stopping the lock deletes only its table; starting restores it" lock_stop_start

    # Provisioning under systemd: the agent's user and a fake OpenClaw config, `provision all`
    # (openclaw and firewall: the vault key is a credential now, which only the service can
    # read, so the secrets steps are the chroot's), then `clawgate doctor` until it passes.
    inct useradd --system --create-home --home-dir /home/openclaw --shell /bin/sh openclaw
    mkdir -p "$nroot/home/openclaw/.openclaw"
    printf '{"models":{"providers":{"openai":{"baseUrl":"https://api.openai.com/v1","apiKey":"sk-nspawn-planted","models":[]}}}}\n' \
        >"$nroot/home/openclaw/.openclaw/openclaw.json"
    inct chown -R openclaw:openclaw /home/openclaw/.openclaw
    printf '[agent]\nuser = "openclaw"\n[openclaw]\nconfig = "/home/openclaw/.openclaw/openclaw.json"\n' \
        >"$nroot/root/provision.toml"
    provisioned=$work/nspawn-provision.log
    check "provision all under systemd" sh -c "nsenter --target $cpid --all -- env -i PATH='$PATHS' LC_ALL=C HOME=/root \
        clawgate provision all --config /root/provision.toml >'$provisioned' 2>&1 || { cat '$provisioned'; exit 1; }"
    sed 's/^/      | /' "$provisioned"
    check "clawgate-egress-lock-status.service enabled and active" \
        sh -c "[ \"\$(nsenter --target $cpid --all -- systemctl is-enabled clawgate-egress-lock-status.service)\" = enabled ]"
    check "clawgate-egress-lock-status.service active" wait_active clawgate-egress-lock-status.service
    check "clawgate.service active after provisioning" wait_active clawgate.service
    nspawn_doctor() {
        local _
        for _ in $(seq 30); do
            inct clawgate doctor >"$work/nspawn-doctor.txt" 2>&1 && return 0
            sleep 0.5
        done
        cat "$work/nspawn-doctor.txt"
        return 1
    }
    check "clawgate doctor passes under systemd (within 15 s of provisioning)" nspawn_doctor
    sed 's/^/      | /' "$work/nspawn-doctor.txt"
    again_nspawn() {
        local out
        out=$(inct clawgate provision all --config /root/provision.toml 2>&1) || { echo "$out"; return 1; }
        grep -q '^openclaw: already done' <<<"$out" && grep -q '^firewall: already done' <<<"$out"
    }
    check "provision all re-run under systemd: already done" again_nspawn
    # The status service stops: the daemon's verdict goes stale and tool calls are blocked.
    inct systemctl stop clawgate-egress-lock-status.service
    stale_blocks() {
        local _
        local out
        for _ in $(seq 40); do
            # doctor exits 1 when a check fails: capture first (pipefail would fail the pipe).
            out=$(inct clawgate doctor --json 2>/dev/null || true)
            grep -q '"name":"daemon health","ok":false' <<<"$out" &&
                grep -q 'egress lock lost' <<<"$out" && return 0
            sleep 0.5
        done
        echo "$out"
        return 1
    }
    check "status service stopped: the daemon counts the lock as lost (doctor: daemon health fails)" stale_blocks
    inct systemctl start clawgate-egress-lock-status.service
    check "status service back: doctor passes again" nspawn_doctor

    main_pid=$(prop clawgate.service MainPID)
    lock_since=$(prop clawgate-egress-lock.service ActiveEnterTimestampMonotonic)
    upgrade_in() { inct env DEBIAN_FRONTEND=noninteractive dpkg -i --force-confdef --force-confold "$d2" </dev/null; }
    check "upgrade to $v2 under systemd" upgrade_in
    check "clawgate.service active after the upgrade" wait_active clawgate.service
    new_pid=$(prop clawgate.service MainPID)
    check "clawgate.service restarted by the upgrade (MainPID $main_pid -> $new_pid)" \
        test "$new_pid" != "$main_pid" -a "$new_pid" != 0
    expect "egress lock left running through the upgrade" "$lock_since" \
        "$(prop clawgate-egress-lock.service ActiveEnterTimestampMonotonic)"
    check "table still loaded after the upgrade" has_table
    check "credential edit kept" grep -qx 'credential = "clawgate-vault-key"' "$nroot/etc/clawgate/clawgate.toml"

    check "dpkg -r under systemd" inct dpkg -r clawgate
    check "service stopped on remove" fails inct systemctl is-active clawgate.service
    check "egress lock stopped on remove: table deleted" fails has_table
    check "state kept on remove" test -f "$nroot/var/lib/clawgate/vault.db"
    check "dpkg -P under systemd" inct dpkg -P clawgate
    check "state, configuration and credential gone" \
        test ! -e "$nroot/var/lib/clawgate" -a ! -e "$nroot/etc/clawgate" -a ! -e "$nroot/etc/credstore.encrypted/clawgate-vault-key"
    leftover=$(find "$nroot/etc/systemd" "$nroot/usr/lib/systemd" -name 'clawgate*' 2>/dev/null || true)
    expect "no unit files or links left under systemd" "" "$leftover"
    check "user clawgate kept" inct getent passwd clawgate
}

if [ -n "$booted" ]; then
    nspawn_lifecycle
else
    skip "systemd-nspawn --boot: the container did not reach running/degraded (see below); the service start, restart on upgrade, credential and egress-lock checks did not run"
    tail -15 "$work/nspawn.log" | sed 's/^/      | /'
fi
if [ -n "$nspawn_pid" ]; then
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 1; done
    nspawn_pid=
    rmdir "/run/systemd/nspawn/propagate/$machine" 2>/dev/null || true
fi
