#!/usr/bin/env python3
"""Network attempts made as one user (the test runs this under `setpriv --reuid --regid
--clear-groups`). Each attempt opens exactly one socket and makes one connection or sends one
datagram, so the egress lock's counters can be predicted exactly.

argv[1] is a JSON list of attempts:
  {"op": "tcp",  "host": H, "port": P}                       connect, send one HTTP GET
  {"op": "post", "host": H, "port": P, "path": …, "headers": {…}, "body": "…"}
  {"op": "connect", "host": H, "port": P, "target": "h:p"}   an HTTP CONNECT without credentials
  {"op": "udp",  "host": H, "port": P}                       one datagram (a DNS query for UDP 53)
  {"op": "ping", "host": H, "port": 0}                       one ICMP echo request, waits for the reply
  {"op": "hold", "host": H, "port": P, "path": …, "wait_file": F}
                                                             connect now, send a GET once F exists
Prints one JSON object: who ran it (uids, gids, effective capabilities) and one result per
attempt: {"ok": bool, "error": "ECONNREFUSED"…, "status": 200, "body": "…"}.
"""

import errno
import json
import os
import socket
import sys

# A DNS query for example.invalid, type A.
DNS_QUERY = bytes.fromhex("123401000001000000000000076578616d706c6507696e76616c69640000010001")


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def error_name(e):
    return errno.errorcode.get(e.errno, str(e)) if isinstance(e, OSError) and e.errno else type(e).__name__


def http_exchange(host, port, request):
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect((host, port))
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None
    return {"ok": True, "status": status, "body": body.decode("utf-8", "replace")[:2000]}


def ping(host):
    """One ICMP echo request over an ICMP datagram socket (needs net.ipv4.ping_group_range)."""
    v6 = ":" in host
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    with socket.socket(family(host), socket.SOCK_DGRAM, proto) as s:
        s.settimeout(3)
        echo = bytes([128 if v6 else 8, 0, 0, 0, 0, 0, 0, 1]) + b"clawgate"
        s.sendto(echo, (host, 0))
        reply, _ = s.recvfrom(1024)
        return {"ok": True, "reply_type": reply[0]}


def hold(host, port, path, wait_file):
    """Connects now, sends a request only once wait_file exists: a connection opened while the
    lock was down, used after it is back."""
    import time
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect((host, port))
        print("connected", file=sys.stderr, flush=True)
        for _ in range(600):
            if os.path.exists(wait_file):
                break
            time.sleep(0.05)
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        data = s.recv(65536)
        if not data:
            return {"ok": False, "error": "EOF"}
        return {"ok": True, "status": int(data.split(b" ")[1])}


def attempt(a):
    host, port = a["host"], a["port"]
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if a["op"] == "tcp":
            req = f"GET {a.get('path', '/')} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n"
            return http_exchange(host, port, req.encode())
        if a["op"] == "post":
            body = a["body"].encode()
            lines = [f"POST {a['path']} HTTP/1.1", f"host: {authority}", "connection: close",
                     "content-type: application/json", f"content-length: {len(body)}"]
            lines += [f"{k}: {v}" for k, v in a.get("headers", {}).items()]
            return http_exchange(host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        if a["op"] == "connect":
            req = f"CONNECT {a['target']} HTTP/1.1\r\nhost: {a['target']}\r\n\r\n"
            return http_exchange(host, port, req.encode())
        if a["op"] == "ping":
            return ping(host)
        if a["op"] == "hold":
            return hold(host, port, a["path"], a["wait_file"])
        if a["op"] == "udp":
            with socket.socket(family(host), socket.SOCK_DGRAM) as s:
                s.sendto(DNS_QUERY, (host, port))
            return {"ok": True}
        return {"ok": False, "error": "unknown op"}
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        return {"ok": False, "error": error_name(e)}


def cap_eff():
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return line.split()[1]
    return None


def main():
    attempts = json.loads(sys.argv[1])
    print(json.dumps({
        "uids": list(os.getresuid()),
        "gids": list(os.getresgid()),
        "groups": os.getgroups(),
        "cap_eff": cap_eff(),
        "results": [attempt(a) for a in attempts],
    }))


if __name__ == "__main__":
    main()
