#!/usr/bin/env python3
"""Scriptable fake LLM for Clawgate end-to-end tests (Python 3 stdlib only).

Speaks, on 127.0.0.1 only:
  * OpenAI Chat Completions   POST .../chat/completions   (SSE when "stream": true, else JSON)
  * Anthropic Messages        POST .../v1/messages        (SSE when "stream": true, else JSON)
  * GET .../models            (a tiny model list, for clients that probe)

Behaviour per request
  * If the messages after the last assistant message contain tool results (a follow-up inside a turn):
      - if the scripted entry that produced the tool call has a further step ("chain"), emit it;
      - otherwise reply with plain text quoting every tool result: "Tool said: <text>" so a test can see
        exactly what the model was shown.
  * Else (a new turn) and the request offers tools: pop the next scripted entry and emit it
    (a tool call, a text, or an HTTP error). Nothing scripted -> plain text "nothing to do".
  * Requests without tools (title / summary side calls) never consume the script; they get
    plain text "nothing to do".

Script entries (JSON), queued through POST /_control/next (one entry or a list) or --script FILE:
  {"tool": "exec", "args": {"command": "ls"}}               one tool call
  {"calls": [{"tool": ..., "args": ...}, ...]}                parallel tool calls in one response
  {"chain": [entry, entry, ...]}                              one step per model call within the turn
  {"text": "hello"}                                           plain text answer
  {"error": {"status": 429, "message": "rate limited"}}      HTTP error in the provider's format
  optional on any entry: "usage": {"input": N, "output": N, "cache_read": N, "cache_write": N}
                         "text" together with "tool": text emitted before the tool call
                         "match": "substring"  only consumed by a turn whose request JSON contains it

Control endpoints
  POST /_control/next      append entry/entries        POST /_control/script  replace the queue
  POST /_control/reset     clear queue + request log   GET  /_control/requests[?since=N]
  GET  /_control/state     queue + counters            GET  /_control/health
  GET  /_control/echoes    what /echo/ received

Every request (including unknown paths) is appended to the JSONL log (--log PATH) as
{"seq","t","method","path","headers","body","api","tool_results","reply"}, except:

Echo endpoint (a stand-in for an API an agent calls with a credential)
  GET/POST /echo/<anything>  answers 200 text/plain "echo <path> received <Authorization header minus "Bearer ">"
  and keeps {"n","t","method","path","headers","body"} in memory only (GET /_control/echoes[?since=N]),
  never in the JSONL log or on stderr: tests put real secrets in these headers and then check that
  the secret appears nowhere on disk.

Usage: fake_llm.py [--host 127.0.0.1] [--port N|0] [--log PATH] [--script FILE] [--port-file PATH]
                   [--chunk-delay-ms N]
Env fallbacks: FAKE_LLM_PORT, FAKE_LLM_LOG, FAKE_LLM_SCRIPT.
On start prints "FAKE_LLM_LISTENING 127.0.0.1:<port>" on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NOTHING_TO_DO = "nothing to do"
TOOL_SAID_PREFIX = "Tool said: "


# ----------------------------------------------------------------------------------------------
# Request parsing helpers (also imported by harness.py)
# ----------------------------------------------------------------------------------------------

def detect_api(path: str) -> str | None:
    p = path.split("?", 1)[0].rstrip("/")
    if p.endswith("/chat/completions"):
        return "openai"
    if p.endswith("/messages"):
        return "anthropic"
    return None


def _text_of(content) -> str:
    """Flatten OpenAI/Anthropic message content (string or list of parts) into text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                if part.get("type") in ("text", "input_text", "output_text") and "text" in part:
                    out.append(str(part["text"]))
                elif part.get("type") == "tool_result":
                    out.append(_text_of(part.get("content")))
                elif "text" in part:
                    out.append(str(part["text"]))
        return "\n".join(out)
    if isinstance(content, dict):
        return _text_of([content])
    return str(content)


def _is_assistant(msg: dict) -> bool:
    return isinstance(msg, dict) and msg.get("role") == "assistant"


def tool_results_after_last_assistant(api: str, body: dict) -> list[dict]:
    """Tool results the model is being shown in this request (the ones after the last assistant message).

    Returns [{"tool_call_id": id, "text": text, "is_error": bool|None}] in message order."""
    msgs = body.get("messages") or []
    last_asst = -1
    for i, m in enumerate(msgs):
        if _is_assistant(m):
            last_asst = i
    out = []
    for m in msgs[last_asst + 1:]:
        if not isinstance(m, dict):
            continue
        if api == "openai" and m.get("role") == "tool":
            out.append({"tool_call_id": m.get("tool_call_id"), "text": _text_of(m.get("content")), "is_error": None})
        elif api == "anthropic" and m.get("role") == "user" and isinstance(m.get("content"), list):
            for part in m["content"]:
                if isinstance(part, dict) and part.get("type") == "tool_result":
                    out.append({"tool_call_id": part.get("tool_use_id"), "text": _text_of(part.get("content")),
                                "is_error": part.get("is_error")})
    return out


def all_tool_results(api: str, body: dict) -> list[dict]:
    """Every tool result anywhere in the request's history."""
    out = []
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        if api == "openai" and m.get("role") == "tool":
            out.append({"tool_call_id": m.get("tool_call_id"), "text": _text_of(m.get("content"))})
        elif api == "anthropic" and m.get("role") == "user" and isinstance(m.get("content"), list):
            for part in m["content"]:
                if isinstance(part, dict) and part.get("type") == "tool_result":
                    out.append({"tool_call_id": part.get("tool_use_id"), "text": _text_of(part.get("content"))})
    return out


def norm_id(tool_call_id) -> str:
    """OpenClaw sanitizes tool call ids on the wire ("call_ab12" comes back as "callab12"): compare
    ids by their alphanumeric characters only."""
    return "".join(ch for ch in str(tool_call_id or "") if ch.isalnum())


def estimate_tokens(obj) -> int:
    try:
        n = len(json.dumps(obj, ensure_ascii=False))
    except (TypeError, ValueError):
        n = len(str(obj))
    return max(1, n // 4)


# ----------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------

class State:
    def __init__(self, log_path: str | None, chunk_delay: float):
        self.lock = threading.Lock()
        self.queue: list[dict] = []
        self.requests: list[dict] = []
        self.log_path = log_path
        self.chunk_delay = chunk_delay
        self.seq = itertools.count(1)
        # tool_call_id -> (entry, step index) for chained entries
        self.calls: dict[str, tuple[dict, int]] = {}
        self.consumed = 0
        self.echoes: list[dict] = []   # /echo/ requests: memory only (may hold secrets)

    def enqueue(self, entries, replace=False):
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("script must be an object or a list of objects")
        with self.lock:
            if replace:
                self.queue = []
            self.queue.extend(entries)
            return len(self.queue)

    def pop_for(self, body_text: str) -> dict | None:
        with self.lock:
            for i, e in enumerate(self.queue):
                m = e.get("match")
                if m is None or m in body_text:
                    self.consumed += 1
                    return self.queue.pop(i)
            return None

    def record(self, rec: dict):
        with self.lock:
            rec["seq"] = next(self.seq)
            self.requests.append(rec)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    f.flush()

    def reset(self):
        with self.lock:
            self.queue = []
            self.requests = []
            self.calls = {}
            self.consumed = 0
            self.echoes = []


# ----------------------------------------------------------------------------------------------
# Reply planning
# ----------------------------------------------------------------------------------------------

def _new_id(api: str) -> str:
    return ("call_" if api == "openai" else "toolu_") + secrets.token_hex(12)


def plan_reply(state: State, api: str, body: dict, body_text: str) -> dict:
    """Returns {"kind": "text"|"tools"|"error", "text": str, "calls": [{id,name,args}], "usage": {...}}."""
    results = tool_results_after_last_assistant(api, body)
    entry = None
    step = None
    if results:
        # Follow-up inside a turn: does the entry that produced the call have another step?
        with state.lock:
            link = None
            for r in results:
                link = state.calls.get(norm_id(r.get("tool_call_id"))) or link
        if link is not None:
            parent, idx = link
            chain = parent.get("chain") or []
            if idx + 1 < len(chain):
                entry, step = parent, idx + 1
        if entry is None:
            quoted = "\n".join(TOOL_SAID_PREFIX + (r.get("text") or "") for r in results)
            return {"kind": "text", "text": quoted, "calls": [], "usage": None, "source": "tool_result_echo"}
    else:
        if not body.get("tools"):
            return {"kind": "text", "text": NOTHING_TO_DO, "calls": [], "usage": None, "source": "no_tools"}
        entry = state.pop_for(body_text)
        if entry is None:
            return {"kind": "text", "text": NOTHING_TO_DO, "calls": [], "usage": None, "source": "empty_script"}
        if entry.get("chain"):
            step = 0

    spec = entry["chain"][step] if step is not None else entry
    usage = spec.get("usage") or entry.get("usage")
    if "error" in spec:
        err = spec["error"] if isinstance(spec["error"], dict) else {"message": str(spec["error"])}
        return {"kind": "error", "status": int(err.get("status", 500)), "text": err.get("message", "fake error"),
                "calls": [], "usage": None, "source": "script"}
    calls = []
    raw_calls = spec.get("calls") or ([{"tool": spec["tool"], "args": spec.get("args", {})}] if "tool" in spec else [])
    for c in raw_calls:
        cid = c.get("id") or _new_id(api)
        calls.append({"id": cid, "name": c["tool"], "args": c.get("args", {})})
        if step is not None:
            with state.lock:
                state.calls[norm_id(cid)] = (entry, step)
    if calls:
        return {"kind": "tools", "text": spec.get("text") or "", "calls": calls, "usage": usage, "source": "script"}
    return {"kind": "text", "text": spec.get("text", NOTHING_TO_DO), "calls": [], "usage": usage, "source": "script"}


def usage_numbers(plan: dict, body: dict) -> dict:
    u = plan.get("usage") or {}
    out_text = plan.get("text", "") + "".join(json.dumps(c["args"]) + c["name"] for c in plan.get("calls", []))
    return {
        "input": int(u.get("input", estimate_tokens(body.get("messages")))),
        "output": int(u.get("output", max(1, len(out_text) // 4))),
        "cache_read": int(u.get("cache_read", 0)),
        "cache_write": int(u.get("cache_write", 0)),
    }


def _fragments(s: str, n: int = 3) -> list[str]:
    """Split a string into up to n non-empty pieces (to exercise fragment reassembly)."""
    if len(s) <= 1:
        return [s]
    size = max(1, -(-len(s) // n))
    return [s[i:i + size] for i in range(0, len(s), size)]


# ----------------------------------------------------------------------------------------------
# Wire formats
# ----------------------------------------------------------------------------------------------

def openai_stream_events(plan: dict, body: dict, model: str):
    cid = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())
    u = usage_numbers(plan, body)

    def chunk(delta, finish=None):
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_fake", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                               "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    if plan.get("text"):
        for frag in _fragments(plan["text"]):
            yield chunk({"content": frag})
    for i, c in enumerate(plan.get("calls", [])):
        yield chunk({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                      "function": {"name": c["name"], "arguments": ""}}]})
        for frag in _fragments(json.dumps(c["args"], ensure_ascii=False)):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]})
    yield chunk({}, "tool_calls" if plan.get("calls") else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
               "system_fingerprint": "fp_fake", "choices": [],
               "usage": {"prompt_tokens": u["input"] + u["cache_read"], "completion_tokens": u["output"],
                         "total_tokens": u["input"] + u["cache_read"] + u["output"],
                         "prompt_tokens_details": {"cached_tokens": u["cache_read"], "audio_tokens": 0},
                         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                       "accepted_prediction_tokens": 0,
                                                       "rejected_prediction_tokens": 0}}}


def openai_json(plan: dict, body: dict, model: str) -> dict:
    u = usage_numbers(plan, body)
    msg = {"role": "assistant", "content": plan.get("text") or None, "refusal": None}
    if plan.get("calls"):
        msg["tool_calls"] = [{"id": c["id"], "type": "function",
                              "function": {"name": c["name"], "arguments": json.dumps(c["args"], ensure_ascii=False)}}
                             for c in plan["calls"]]
    return {"id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": msg, "logprobs": None,
                         "finish_reason": "tool_calls" if plan.get("calls") else "stop"}],
            "usage": {"prompt_tokens": u["input"] + u["cache_read"], "completion_tokens": u["output"],
                      "total_tokens": u["input"] + u["cache_read"] + u["output"],
                      "prompt_tokens_details": {"cached_tokens": u["cache_read"]}}}


def anthropic_usage(u: dict, output: int | None = None) -> dict:
    return {"input_tokens": u["input"], "cache_creation_input_tokens": u["cache_write"],
            "cache_read_input_tokens": u["cache_read"], "output_tokens": u["output"] if output is None else output}


def anthropic_stream_events(plan: dict, body: dict, model: str):
    mid = "msg_" + secrets.token_hex(12)
    u = usage_numbers(plan, body)
    yield "message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": anthropic_usage(u, output=1)}}
    idx = 0
    if plan.get("text"):
        yield "content_block_start", {"type": "content_block_start", "index": idx,
                                      "content_block": {"type": "text", "text": ""}}
        yield "ping", {"type": "ping"}
        for frag in _fragments(plan["text"]):
            yield "content_block_delta", {"type": "content_block_delta", "index": idx,
                                          "delta": {"type": "text_delta", "text": frag}}
        yield "content_block_stop", {"type": "content_block_stop", "index": idx}
        idx += 1
    for c in plan.get("calls", []):
        yield "content_block_start", {"type": "content_block_start", "index": idx,
                                      "content_block": {"type": "tool_use", "id": c["id"], "name": c["name"],
                                                        "input": {}}}
        yield "content_block_delta", {"type": "content_block_delta", "index": idx,
                                      "delta": {"type": "input_json_delta", "partial_json": ""}}
        for frag in _fragments(json.dumps(c["args"], ensure_ascii=False)):
            yield "content_block_delta", {"type": "content_block_delta", "index": idx,
                                          "delta": {"type": "input_json_delta", "partial_json": frag}}
        yield "content_block_stop", {"type": "content_block_stop", "index": idx}
        idx += 1
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": "tool_use" if plan.get("calls") else "end_turn",
                                      "stop_sequence": None},
                            "usage": anthropic_usage(u)}
    yield "message_stop", {"type": "message_stop"}


def anthropic_json(plan: dict, body: dict, model: str) -> dict:
    u = usage_numbers(plan, body)
    content = []
    if plan.get("text"):
        content.append({"type": "text", "text": plan["text"]})
    for c in plan.get("calls", []):
        content.append({"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]})
    return {"id": "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use" if plan.get("calls") else "end_turn",
            "stop_sequence": None, "usage": anthropic_usage(u)}


# ----------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------

def _compact(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm/1"
    state: State = None  # set in main()

    def log_message(self, fmt, *args):  # quiet; everything goes to the JSONL log
        if os.environ.get("FAKE_LLM_VERBOSE"):
            sys.stderr.write("fake_llm: " + (fmt % args) + "\n")

    # -- io helpers --
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send_json(self, status: int, obj, extra_headers=None):
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_sse(self, extra_headers=None):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        if self.state.chunk_delay:
            time.sleep(self.state.chunk_delay)

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _echo(self, method: str, raw: bytes = b""):
        """/echo/...: remember the request in memory (never logged) and answer with its auth header."""
        st = self.state
        with st.lock:
            st.echoes.append({"n": len(st.echoes) + 1, "t": time.time(), "method": method, "path": self.path,
                              "headers": dict(self.headers), "body": raw.decode("utf-8", "replace")})
        # The credential without its "Bearer " prefix: OpenClaw masks "Bearer <token>" in tool output
        # itself, which would hide whether Clawgate redacted it.
        auth = self.headers.get("Authorization") or ""
        cred = auth.split(None, 1)[1] if auth.lower().startswith("bearer ") and " " in auth else auth
        data = f"echo {urlsplit(self.path).path} received {cred}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    # -- verbs --
    def do_GET(self):
        url = urlsplit(self.path)
        st = self.state
        if url.path.startswith("/echo/"):
            return self._echo("GET")
        if url.path == "/_control/echoes":
            since = int((parse_qs(url.query).get("since") or ["0"])[0])
            with st.lock:
                echoes = [e for e in st.echoes if e["n"] > since]
            return self._send_json(200, echoes)
        if url.path == "/_control/health":
            return self._send_json(200, {"ok": True})
        if url.path == "/_control/requests":
            since = int((parse_qs(url.query).get("since") or ["0"])[0])
            with st.lock:
                reqs = [r for r in st.requests if r["seq"] > since]
            return self._send_json(200, reqs)
        if url.path == "/_control/state":
            with st.lock:
                return self._send_json(200, {"queue": st.queue, "requests": len(st.requests),
                                             "consumed": st.consumed})
        if url.path.rstrip("/").endswith("/models"):
            st.record({"t": time.time(), "method": "GET", "path": self.path, "headers": dict(self.headers),
                       "body": None, "api": None, "tool_results": [], "reply": {"kind": "models"}})
            return self._send_json(200, {"object": "list", "data": [
                {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]})
        st.record({"t": time.time(), "method": "GET", "path": self.path, "headers": dict(self.headers),
                   "body": None, "api": None, "tool_results": [], "reply": {"kind": "not_found"}})
        return self._send_json(404, {"error": {"message": "not found: " + url.path}})

    def do_POST(self):
        url = urlsplit(self.path)
        st = self.state
        raw = self._read_body()
        if url.path.startswith("/echo/"):
            return self._echo("POST", raw)
        if url.path.startswith("/_control/"):
            try:
                payload = json.loads(raw or b"null")
                if url.path == "/_control/next":
                    n = st.enqueue(payload)
                elif url.path == "/_control/script":
                    n = st.enqueue(payload if payload is not None else [], replace=True)
                elif url.path == "/_control/reset":
                    st.reset()
                    n = 0
                else:
                    return self._send_json(404, {"error": "unknown control endpoint"})
            except (ValueError, TypeError) as e:
                return self._send_json(400, {"error": str(e)})
            return self._send_json(200, {"ok": True, "queued": n})

        api = detect_api(url.path)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        rec = {"t": time.time(), "method": "POST", "path": self.path, "headers": dict(self.headers),
               "body": body if body is not None else raw.decode("utf-8", "replace"), "api": api}
        if api is None or not isinstance(body, dict):
            rec.update(tool_results=[], reply={"kind": "not_found" if api is None else "bad_json"})
            st.record(rec)
            if api is None:
                return self._send_json(404, {"error": {"message": "not found: " + url.path}})
            return self._send_json(400, {"error": {"type": "invalid_request_error", "message": "invalid JSON"}})

        body_text = raw.decode("utf-8", "replace")
        plan = plan_reply(st, api, body, body_text)
        rec["tool_results"] = tool_results_after_last_assistant(api, body)
        rec["reply"] = {"kind": plan["kind"], "text": plan.get("text"), "source": plan.get("source"),
                        "calls": plan.get("calls"), "stream": bool(body.get("stream"))}
        st.record(rec)
        model = body.get("model") or "fake-model"

        if plan["kind"] == "error":
            status = plan["status"]
            if api == "openai":
                err = {"error": {"message": plan["text"], "type": "fake_error", "param": None, "code": None}}
            else:
                etype = {429: "rate_limit_error", 401: "authentication_error", 529: "overloaded_error"}.get(
                    status, "api_error")
                err = {"type": "error", "error": {"type": etype, "message": plan["text"]}}
            return self._send_json(status, err)

        hdrs = {"x-request-id": "req_" + secrets.token_hex(8)}
        if api == "anthropic":
            hdrs["request-id"] = hdrs.pop("x-request-id")
        if not body.get("stream"):
            obj = openai_json(plan, body, model) if api == "openai" else anthropic_json(plan, body, model)
            return self._send_json(200, obj, hdrs)

        self._start_sse(hdrs)
        try:
            if api == "openai":
                for ev in openai_stream_events(plan, body, model):
                    self._chunk(b"data: " + _compact(ev) + b"\n\n")
                self._chunk(b"data: [DONE]\n\n")
            else:
                for name, ev in anthropic_stream_events(plan, body, model):
                    self._chunk(b"event: " + name.encode() + b"\ndata: "
                                + _compact(ev) + b"\n\n")
            self._end_chunks()
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients (Node's keep-alive pool, curl) resetting idle connections is not an error.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("FAKE_LLM_PORT", "18911")))
    ap.add_argument("--log", default=os.environ.get("FAKE_LLM_LOG"))
    ap.add_argument("--script", default=os.environ.get("FAKE_LLM_SCRIPT"))
    ap.add_argument("--port-file")
    ap.add_argument("--chunk-delay-ms", type=float, default=2.0)
    ap.add_argument("port_pos", nargs="?", type=int, help="port (positional alternative to --port)")
    a = ap.parse_args(argv)
    port = a.port_pos if a.port_pos is not None else a.port
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("fake_llm only listens on loopback")

    state = State(a.log, a.chunk_delay_ms / 1000.0)
    if a.script:
        with open(a.script, encoding="utf-8") as f:
            state.enqueue(json.load(f))
    Handler.state = state
    srv = Server((a.host, port), Handler)
    real_port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(real_port))
        os.replace(tmp, a.port_file)
    print(f"FAKE_LLM_LISTENING {a.host}:{real_port}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
