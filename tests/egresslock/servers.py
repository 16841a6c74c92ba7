#!/usr/bin/env python3
"""The egress-lock test's stand-ins (stdlib only), each run by the test in its own namespace.

  provider ADDR4 ADDR6 PORT LOG   fake LLM provider: OpenAI chat completions over HTTP on both
                                  addresses, plus UDP port 53 (a DNS stand-in) that only counts
  hub      ADDR4 ADDR6 PORT LOG   stand-in Hub: answers any GET
  local    PORT LOG               an unrelated service on 127.0.0.1 and ::1 inside the VPS
  relay    LISTEN_HOST PORT TO_HOST TO_PORT
                                  TCP relay on loopback to the provider (the proxy allows plain
                                  http upstreams only on loopback; it runs as root, unaffected)

Every request or datagram received is appended to LOG as one JSON line, so the test can show
what reached each stand-in and what never did.
"""

import json
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = {
    "id": "chatcmpl-egresslock",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-egresslock",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello from the fake provider"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
}

_log_lock = threading.Lock()


def log(path, record):
    with _log_lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def handler(name, log_path):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self, body):
            log(
                log_path,
                {
                    "server": name,
                    "kind": "http",
                    "method": self.command,
                    "path": self.path,
                    "peer": self.client_address[0],
                    "authorization": self.headers.get("authorization"),
                    "body": body.decode("utf-8", "replace"),
                },
            )

        def _reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def do_GET(self):
            self._record(b"")
            self._reply(200, {"server": name, "path": self.path})

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            self._record(body)
            if name == "provider" and self.path.endswith("/chat/completions"):
                self._reply(200, ANSWER)
            else:
                self._reply(200, {"server": name, "path": self.path})

        def log_message(self, *args):
            pass

    return Handler


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


class V4Server(ThreadingHTTPServer):
    daemon_threads = True


def serve_http(name, addr4, addr6, port, log_path):
    servers = []
    if addr4:
        servers.append(V4Server((addr4, port), handler(name, log_path)))
    if addr6:
        servers.append(V6Server((addr6, port), handler(name, log_path)))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    return servers


def serve_udp(addr, family, port, log_path):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((addr, port))

    def loop():
        while True:
            data, peer = sock.recvfrom(4096)
            log(log_path, {"server": "provider", "kind": "udp", "port": port, "peer": peer[0], "bytes": len(data)})

    threading.Thread(target=loop, daemon=True).start()


class Relay(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def relay(listen_host, port, to_host, to_port):
    class Pipe(socketserver.BaseRequestHandler):
        def handle(self):
            upstream = socket.create_connection((to_host, to_port), timeout=10)
            done = threading.Event()

            def pump(src, dst):
                try:
                    while True:
                        data = src.recv(65536)
                        if not data:
                            break
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    done.set()

            threading.Thread(target=pump, args=(upstream, self.request), daemon=True).start()
            pump(self.request, upstream)
            done.wait(10)
            upstream.close()

    server = Relay((listen_host, port), Pipe)
    print("ready", flush=True)
    server.serve_forever()


def main():
    mode = sys.argv[1]
    if mode == "provider":
        addr4, addr6, port, log_path = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        serve_http("provider", addr4, addr6, port, log_path)
        serve_udp(addr4, socket.AF_INET, 53, log_path)
        serve_udp(addr6, socket.AF_INET6, 53, log_path)
    elif mode == "hub":
        addr4, addr6, port, log_path = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        serve_http("hub", addr4, addr6, port, log_path)
    elif mode == "local":
        port, log_path = int(sys.argv[2]), sys.argv[3]
        serve_http("local", "127.0.0.1", "::1", port, log_path)
    elif mode == "relay":
        relay(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
        return
    else:
        sys.exit(f"unknown mode {mode}")
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
