#!/usr/bin/env python3
"""A loopback HTTP front for `clawgate serve`'s Unix sockets, so HTTP-only tools (schemathesis)
can test wrapper/openapi.json. Each request is forwarded unchanged, on a fresh connection, to the
socket that serves its path: /v1/approvals... and /metrics to the admin socket, every other path
to the hook socket (/v1/health is on both; the hook one is used). The answer is relayed
unchanged (status, headers, body). Standard library only.

    unix_bridge.py --hook STATE/hook.sock --admin STATE/admin.sock --port-file FILE

Listens on 127.0.0.1 on a free port and writes the port to FILE once it listens.
"""
import argparse
import http.client
import http.server
import socket
import sys

MAX_BODY = 8 * 1024 * 1024


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.unix_path)
        self.sock = s


def make_handler(hook, admin):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length) if length else None
            path = self.path.split("?", 1)[0]
            target = admin if path.startswith("/v1/approvals") or path == "/metrics" else hook
            conn = UnixConnection(target)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            headers["Connection"] = "close"
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except Exception as e:  # the daemon dropped the connection: report it as 502
                msg = f"bridge: {type(e).__name__}".encode()
                self.send_response(502)
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)
                return
            finally:
                conn.close()
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def __getattr__(self, name):
            # Every method, including ones http.server does not know (QUERY, ...): forwarded, so
            # the daemon's own answer is what the fuzzer sees.
            if name.startswith("do_"):
                return self.forward
            raise AttributeError(name)

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hook", required=True)
    ap.add_argument("--admin", required=True)
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(a.hook, a.admin))
    with open(a.port_file, "w") as f:
        f.write(str(server.server_address[1]))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
