#!/usr/bin/env python3
"""A wire-faithful fake of the Anthropic and OpenAI APIs for the SDK tests (Python 3 stdlib only).

Serves, on 127.0.0.1 only:
  * Anthropic Messages          POST /v1/messages           JSON, or SSE when "stream": true
  * OpenAI Chat Completions     POST /v1/chat/completions   JSON, or SSE when "stream": true (the usage
                                                            chunk only with stream_options.include_usage)
  * OpenAI Responses            POST /v1/responses          JSON, or SSE when "stream": true

Shapes follow the official SDKs' own types (anthropic 2.12.0, openai 3.54.0): Anthropic's event
sequence message_start (usage with cache_creation_input_tokens / cache_read_input_tokens) → ping →
content_block_start/delta/stop → message_delta (cumulative usage) → message_stop with `event:` +
`data:` framing; OpenAI chat chunks `data: {...}` ending in `data: [DONE]`, with `"usage": null` on
every chunk and a final `choices: []` chunk carrying usage (incl. prompt_tokens_details.cached_tokens)
when include_usage is set; Responses events with sequence_number ending in response.completed.

Deterministic: ids, timestamps, reply text and token counts derive from the conversation (model +
system/instructions + messages/input), not from the raw body or the credentials, so the same call made
directly and through a proxy gets the same answer (a proxy that injects stream_options still gets the
same ids). A conversation's total input tokens T = 20 + len(canonical conversation JSON); of those
cache_read = T // 2 and cache_write = T // 4 (Anthropic's cache_read_input_tokens /
cache_creation_input_tokens; OpenAI's cached_tokens / cache_write_tokens, a subset of prompt_tokens);
output tokens = the number of text deltas + 1. Every answer is also recorded with its normalised
usage ({"input","output","cache_read","cache_write","cache_write_1h"}: input = uncached input), so a test can compare a
meter against exactly what the fake reported.

Authentication: requests must carry the configured key (--anthropic-key / --openai-key, or
FAKE_ANTHROPIC_KEY / FAKE_OPENAI_KEY) in `x-api-key` or `Authorization: Bearer` (Anthropic; its SDK
2.x sends Bearer) or `Authorization: Bearer` (OpenAI); otherwise 401 in the provider's error format.

Faults (for fault tests), queued with POST /_control/faults (one object or a list); each request takes
the first queued fault whose optional "match" is a substring of its path, and "times" (default 1)
counts down:
  {"kind": "status", "status": 429, "retry_after": 7}   the provider's error JSON (429, 500, 529, ...)
  {"kind": "reset", "after_events": 2}                  a stream cut by a TCP reset after N events
  {"kind": "truncate", "after_events": 2}               a stream that ends cleanly after N events
  {"kind": "truncate_mid_event", "after_events": 2}     ... plus half of the next event
  {"kind": "delay", "ms": 200}                          sleep before every event (slow stream)
  {"kind": "linger", "ms": 300}                         sleep after the last event before ending the body
                                                        (as a distant upstream's end arrives after [DONE])
For a non-streamed request "reset" cuts the body halfway and "truncate" sends half of it.

Control endpoints (never authenticated; loopback only):
  GET  /_control/health             {"ok": true}
  GET  /_control/requests[?since=N] every API request: {"seq","method","path","headers":[[k,v],...],
                                    "body_b64","api","stream","status","usage","model","fault"}
  POST /_control/reset              clear the request log and the fault queue
  POST /_control/faults             queue faults

Usage: fake_upstream.py [--port N] [--port-file PATH] [--anthropic-key K] [--openai-key K]
Prints "FAKE_UPSTREAM_LISTENING 127.0.0.1:<port>" on stdout when ready.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

EPOCH = 1_760_000_000  # every `created` is EPOCH + a hash-derived offset: deterministic


def compact(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# ----------------------------------------------------------------------------------------------
# Deterministic derivations
# ----------------------------------------------------------------------------------------------

def conversation(api: str, body: dict) -> dict:
    """The part of a request that determines the answer (not stream flags, not stream_options)."""
    keys = {
        "anthropic": ("model", "system", "messages", "tools", "max_tokens"),
        "chat": ("model", "messages", "tools"),
        "responses": ("model", "instructions", "input", "tools"),
    }[api]
    return {k: body.get(k) for k in keys if k in body}


def digest(api: str, body: dict) -> str:
    return hashlib.sha256(api.encode() + b"\0" + compact(conversation(api, body))).hexdigest()


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    out = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                for key in ("text", "input_text", "content"):
                    v = part.get(key)
                    if isinstance(v, str):
                        out.append(v)
                        break
                    if isinstance(v, list):
                        out.append(_text_of(v))
                        break
            elif isinstance(part, str):
                out.append(part)
    return " ".join(out)


def last_user_text(api: str, body: dict) -> str:
    if api == "responses":
        inp = body.get("input")
        if isinstance(inp, str):
            return inp
        msgs = inp if isinstance(inp, list) else []
    else:
        msgs = body.get("messages") if isinstance(body.get("messages"), list) else []
    for m in reversed(msgs):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))
    return ""


def reply_text(api: str, body: dict) -> str:
    said = " ".join(last_user_text(api, body).split())
    if len(said) > 120:
        said = said[:120] + "..."
    return f"Fake {api} reply #{digest(api, body)[:6]}: you said \u201c{said}\u201d. Done."


def fragments(text: str) -> list[str]:
    """Split into word-ish pieces (each keeps its trailing space); concatenation == text."""
    out, cur = [], ""
    for ch in text:
        cur += ch
        if ch == " ":
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out or [""]


def token_counts(api: str, body: dict) -> dict:
    """Raw counts: total input T, of which cache_read and cache_write; output."""
    total = 20 + len(compact(conversation(api, body)).decode())
    cache_read = total // 2
    cache_write = total // 4
    output = len(fragments(reply_text(api, body))) + 1
    # Anthropic splits its cache writes by lifetime; a third here are one-hour writes.
    cache_write_1h = cache_write // 3 if api == "anthropic" else 0
    return {"total_input": total, "cache_read": cache_read, "cache_write": cache_write,
            "cache_write_1h": cache_write_1h,
            "uncached": total - cache_read - cache_write, "output": output}


def normalised(c: dict) -> dict:
    return {"input": c["uncached"], "output": c["output"], "cache_read": c["cache_read"],
            "cache_write": c["cache_write"], "cache_write_1h": c["cache_write_1h"]}


def response_model(api: str, requested: str) -> str:
    """Anthropic echoes the requested model; OpenAI answers with a dated snapshot."""
    if api == "anthropic" or not requested:
        return requested or "unknown"
    return requested if requested[-11:-10] == "-" and requested[-10:-6].isdigit() else requested + "-2026-03-17"


def obfuscation(seed: str, n: int) -> str:
    return hashlib.sha256(f"{seed}/{n}".encode()).hexdigest()[: 4 + n % 9]


# ----------------------------------------------------------------------------------------------
# Anthropic
# ----------------------------------------------------------------------------------------------

def anthropic_usage(c: dict, output: int) -> dict:
    return {
        "input_tokens": c["uncached"],
        "cache_creation_input_tokens": c["cache_write"],
        "cache_read_input_tokens": c["cache_read"],
        "cache_creation": {"ephemeral_5m_input_tokens": c["cache_write"] - c["cache_write_1h"],
                           "ephemeral_1h_input_tokens": c["cache_write_1h"]},
        "output_tokens": output,
        "service_tier": "standard",
    }


def anthropic_message(body: dict, d: str, c: dict, model: str) -> dict:
    return {
        "id": "msg_01" + d[:22], "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": reply_text("anthropic", body)}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": anthropic_usage(c, c["output"]),
    }


def anthropic_events(body: dict, d: str, c: dict, model: str) -> list[tuple[str, dict]]:
    text = reply_text("anthropic", body)
    start = {"id": "msg_01" + d[:22], "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": anthropic_usage(c, 1)}
    ev = [("message_start", {"type": "message_start", "message": start}),
          ("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}),
          ("ping", {"type": "ping"})]
    for frag in fragments(text):
        ev.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": frag}}))
    ev.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    # Cumulative usage: the current API restates the input side in message_delta.
    ev.append(("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                 "usage": {"input_tokens": c["uncached"],
                                           "cache_creation_input_tokens": c["cache_write"],
                                           "cache_read_input_tokens": c["cache_read"],
                                           "output_tokens": c["output"]}}))
    ev.append(("message_stop", {"type": "message_stop"}))
    return ev


def anthropic_error(status: int, message: str, d: str) -> dict:
    etype = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
             500: "api_error", 529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_011" + d[:21]}


# ----------------------------------------------------------------------------------------------
# OpenAI
# ----------------------------------------------------------------------------------------------

def chat_usage(c: dict) -> dict:
    return {
        "prompt_tokens": c["total_input"],
        "completion_tokens": c["output"],
        "total_tokens": c["total_input"] + c["output"],
        "prompt_tokens_details": {"cached_tokens": c["cache_read"], "cache_write_tokens": c["cache_write"],
                                  "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def chat_completion(body: dict, d: str, c: dict, model: str) -> dict:
    return {
        "id": "chatcmpl-" + d[:29], "object": "chat.completion", "created": EPOCH + int(d[:5], 16),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply_text("chat", body),
                                             "refusal": None, "annotations": []},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": chat_usage(c), "service_tier": "default", "system_fingerprint": "fp_" + d[30:40],
    }


def chat_events(body: dict, d: str, c: dict, model: str) -> list[tuple[str | None, dict | str]]:
    opts = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    include_usage = opts.get("include_usage") is True
    base = {"id": "chatcmpl-" + d[:29], "object": "chat.completion.chunk", "created": EPOCH + int(d[:5], 16),
            "model": model, "service_tier": "default", "system_fingerprint": "fp_" + d[30:40]}
    out: list = []

    def chunk(choices, usage_present=include_usage, usage=None):
        o = dict(base)
        o["choices"] = choices
        if usage_present:
            o["usage"] = usage
        o["obfuscation"] = obfuscation(d, len(out))
        out.append((None, o))

    chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None, "finish_reason": None}])
    for frag in fragments(reply_text("chat", body)):
        chunk([{"index": 0, "delta": {"content": frag}, "logprobs": None, "finish_reason": None}])
    chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
    if include_usage:
        chunk([], usage=chat_usage(c))
    out.append((None, "[DONE]"))
    return out


def responses_usage(c: dict) -> dict:
    return {
        "input_tokens": c["total_input"],
        "input_tokens_details": {"cached_tokens": c["cache_read"], "cache_write_tokens": c["cache_write"]},
        "output_tokens": c["output"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": c["total_input"] + c["output"],
    }


def response_object(body: dict, d: str, c: dict, model: str, status: str, output: list, usage) -> dict:
    return {
        "id": "resp_" + d[:48], "object": "response", "created_at": EPOCH + int(d[:5], 16),
        "status": status, "background": False, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None, "model": model, "output": output, "parallel_tool_calls": True,
        "previous_response_id": None, "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None}, "safety_identifier": None,
        "service_tier": "default", "store": True, "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto", "tools": [],
        "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": None,
        "metadata": {},
    }


def responses_parts(body: dict, d: str):
    text = reply_text("responses", body)
    item_id = "msg_" + d[8:56]
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    item = {"id": item_id, "type": "message", "status": "completed", "content": [part], "role": "assistant"}
    return text, item_id, part, item


def responses_json(body: dict, d: str, c: dict, model: str) -> dict:
    _, _, _, item = responses_parts(body, d)
    return response_object(body, d, c, model, "completed", [item], responses_usage(c))


def responses_events(body: dict, d: str, c: dict, model: str) -> list[tuple[str, dict]]:
    text, item_id, part, item = responses_parts(body, d)
    ev: list = []

    def add(etype, **fields):
        o = {"type": etype, "sequence_number": len(ev)}
        o.update(fields)
        ev.append((etype, o))

    add("response.created", response=response_object(body, d, c, model, "in_progress", [], None))
    add("response.in_progress", response=response_object(body, d, c, model, "in_progress", [], None))
    add("response.output_item.added", output_index=0,
        item={"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"})
    add("response.content_part.added", item_id=item_id, output_index=0, content_index=0,
        part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
    for frag in fragments(text):
        add("response.output_text.delta", item_id=item_id, output_index=0, content_index=0, delta=frag,
            logprobs=[], obfuscation=obfuscation(d, len(ev)))
    add("response.output_text.done", item_id=item_id, output_index=0, content_index=0, text=text, logprobs=[])
    add("response.content_part.done", item_id=item_id, output_index=0, content_index=0, part=part)
    add("response.output_item.done", output_index=0, item=item)
    add("response.completed", response=response_object(body, d, c, model, "completed", [item], responses_usage(c)))
    return ev


def openai_error(status: int, message: str) -> dict:
    etype, code = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                   404: ("invalid_request_error", "model_not_found"), 429: ("requests", "rate_limit_exceeded"),
                   500: ("server_error", None), 503: ("server_error", None)}.get(status, ("server_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


# ----------------------------------------------------------------------------------------------
# Server
# ----------------------------------------------------------------------------------------------

class State:
    def __init__(self, keys: dict):
        self.keys = keys  # {"anthropic": key, "openai": key}
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.faults: list[dict] = []

    def take_fault(self, path: str) -> dict | None:
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.get("match") is None or f["match"] in path:
                    f["times"] = int(f.get("times", 1)) - 1
                    if f["times"] <= 0:
                        del self.faults[i]
                    return dict(f)
        return None


def detect_api(path: str) -> str | None:
    p = path.rstrip("/")
    if p == "/v1/messages":
        return "anthropic"
    if p == "/v1/chat/completions":
        return "chat"
    if p == "/v1/responses":
        return "responses"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-upstream/1"
    state: State = None  # set in serve()

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_UPSTREAM_VERBOSE"):
            sys.stderr.write("fake_upstream: " + (fmt % args) + "\n")

    # -- io --
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

    def _send(self, status: int, data: bytes, ctype: str = "application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_json(self, status: int, obj, headers=None):
        self._send(status, compact(obj), headers=headers)

    def _reset(self):
        """Abort the connection with a TCP RST."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    # -- verbs --
    def do_GET(self):
        url = urlsplit(self.path)
        st = self.state
        if url.path == "/_control/health":
            return self._send_json(200, {"ok": True})
        if url.path == "/_control/requests":
            since = int((parse_qs(url.query).get("since") or ["0"])[0])
            with st.lock:
                reqs = [r for r in st.requests if r["seq"] > since]
            return self._send_json(200, reqs)
        self._record("GET", b"", None, None, 404)
        return self._send_json(404, {"error": {"message": "not found: " + url.path}})

    def _record(self, method, raw, api, body, status, usage=None, model=None, fault=None) -> dict:
        st = self.state
        rec = {"method": method, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()],
               "body_b64": base64.b64encode(raw).decode(), "api": api,
               "stream": bool(isinstance(body, dict) and body.get("stream") is True),
               "status": status, "usage": usage, "model": model, "fault": fault, "t": time.time()}
        with st.lock:
            rec["seq"] = len(st.requests) + 1
            st.requests.append(rec)
        return rec

    def _authorised(self, api: str) -> bool:
        key = self.state.keys.get("anthropic" if api == "anthropic" else "openai")
        auth = self.headers.get("Authorization") or ""
        bearer = auth[7:] if auth[:7].lower() == "bearer " else None
        if api == "anthropic":
            xkey = self.headers.get("x-api-key")
            presented = [v for v in (xkey, bearer) if v is not None]
            return len(presented) == 1 and presented[0] == key
        return bearer == key and self.headers.get("x-api-key") is None

    def do_POST(self):
        url = urlsplit(self.path)
        st = self.state
        raw = self._read_body()
        if url.path.startswith("/_control/"):
            try:
                payload = json.loads(raw or b"null")
            except ValueError as e:
                return self._send_json(400, {"error": str(e)})
            if url.path == "/_control/reset":
                with st.lock:
                    st.requests.clear()
                    st.faults.clear()
                return self._send_json(200, {"ok": True})
            if url.path == "/_control/faults":
                items = payload if isinstance(payload, list) else [payload]
                with st.lock:
                    st.faults.extend(items)
                return self._send_json(200, {"ok": True, "queued": len(st.faults)})
            return self._send_json(404, {"error": "unknown control endpoint"})

        api = detect_api(url.path)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if api is None:
            self._record("POST", raw, None, body, 404)
            return self._send_json(404, {"error": {"message": "not found: " + url.path}})
        if not isinstance(body, dict):
            self._record("POST", raw, api, None, 400)
            msg = "The request body is not valid JSON."
            return self._send_json(400, anthropic_error(400, msg, "0" * 64) if api == "anthropic"
                                   else openai_error(400, msg))
        d = digest(api, body)
        if not self._authorised(api):
            self._record("POST", raw, api, body, 401)
            if api == "anthropic":
                return self._send_json(401, anthropic_error(401, "invalid x-api-key", d),
                                       headers={"request-id": "req_011" + d[:21]})
            return self._send_json(401, openai_error(401, "Incorrect API key provided."),
                                   headers={"x-request-id": "req_" + d[:32]})

        fault = st.take_fault(url.path)
        req_id_header = ({"request-id": "req_011" + d[:21]} if api == "anthropic"
                         else {"x-request-id": "req_" + d[:32], "openai-processing-ms": "7"})
        if fault and fault.get("kind") == "status":
            status = int(fault.get("status", 500))
            msg = fault.get("message") or {429: "Rate limit exceeded (fake).", 500: "Internal server error (fake)."}.get(
                status, f"Error {status} (fake).")
            headers = dict(req_id_header)
            if fault.get("retry_after") is not None:
                headers["retry-after"] = str(fault["retry_after"])
            self._record("POST", raw, api, body, status, usage=None, model=None, fault=fault)
            err = anthropic_error(status, msg, d) if api == "anthropic" else openai_error(status, msg)
            return self._send_json(status, err, headers=headers)

        c = token_counts(api, body)
        model = response_model(api, body.get("model") or "")
        usage = normalised(c)
        self._record("POST", raw, api, body, 200, usage=usage, model=model, fault=fault)
        delay = (fault or {}).get("ms", 0) / 1000 if (fault or {}).get("kind") == "delay" else 0

        if body.get("stream") is not True:
            obj = {"anthropic": anthropic_message, "chat": chat_completion, "responses": responses_json}[api](
                body, d, c, model)
            data = compact(obj)
            if fault and fault.get("kind") in ("reset", "truncate", "truncate_mid_event"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in req_id_header.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                return self._reset()
            return self._send(200, data, headers=req_id_header)

        events = {"anthropic": anthropic_events, "chat": chat_events, "responses": responses_events}[api](
            body, d, c, model)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in req_id_header.items():
            self.send_header(k, v)
        self.end_headers()
        cut = int(fault.get("after_events", 2)) if fault and fault.get("kind") in (
            "reset", "truncate", "truncate_mid_event") else None
        try:
            for i, (name, data) in enumerate(events):
                frame = (f"event: {name}\n".encode() if name else b"") + b"data: " + (
                    data.encode() if isinstance(data, str) else compact(data)) + b"\n\n"
                if cut is not None and i == cut:
                    kind = fault["kind"]
                    if kind == "reset":
                        return self._reset()
                    if kind == "truncate_mid_event":
                        self._chunk(frame[: len(frame) // 2])
                    self._end_chunks()
                    return
                if delay:
                    time.sleep(delay)
                self._chunk(frame)
            if fault and fault.get("kind") == "linger":
                time.sleep(fault.get("ms", 300) / 1000)
            self._end_chunks()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(port: int = 0, keys: dict | None = None) -> tuple[Server, State]:
    """Start in a background thread (for in-process use); returns (server, state)."""
    state = State(keys or {})
    handler = type("BoundHandler", (Handler,), {"state": state})
    srv = Server(("127.0.0.1", port), handler)
    threading.Thread(target=srv.serve_forever, name="fake-upstream", daemon=True).start()
    return srv, state


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("FAKE_UPSTREAM_PORT", "0")))
    ap.add_argument("--port-file")
    ap.add_argument("--anthropic-key", default=os.environ.get("FAKE_ANTHROPIC_KEY"))
    ap.add_argument("--openai-key", default=os.environ.get("FAKE_OPENAI_KEY"))
    a = ap.parse_args()
    if not a.anthropic_key or not a.openai_key:
        ap.error("--anthropic-key and --openai-key are required")
    state = State({"anthropic": a.anthropic_key, "openai": a.openai_key})
    handler = type("BoundHandler", (Handler,), {"state": state})
    srv = Server(("127.0.0.1", a.port), handler)
    port = srv.server_address[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(a.port_file + ".tmp", a.port_file)
    print(f"FAKE_UPSTREAM_LISTENING 127.0.0.1:{port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
