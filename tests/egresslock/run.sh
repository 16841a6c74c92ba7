#!/usr/bin/env bash
# The egress lock for real: nftables in network namespaces this test creates, `clawgate serve`
# watching the table, a throwaway agent user and another user making real connections.
# Needs root. Installs nftables, iproute2, curl and python3 from Debian if missing.
#
#   CLAWGATE_BIN=/path/to/target/debug/clawgate tests/egresslock/run.sh
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "run as root (network namespaces, nftables, throwaway users)" >&2
    exit 2
fi
: "${CLAWGATE_BIN:?set CLAWGATE_BIN to a clawgate binary, e.g. target/debug/clawgate}"
CLAWGATE_BIN=$(realpath "$CLAWGATE_BIN")
export CLAWGATE_BIN
need=()
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v setpriv >/dev/null || need+=(util-linux)
[ -x /usr/bin/python3 ] || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
nft --version
exec /usr/bin/python3 "$(dirname "$(realpath "$0")")/egresslock_test.py"
