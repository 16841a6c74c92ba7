#!/usr/bin/env python3
"""The official `anthropic` and `openai` Python SDKs as real clients of Clawgate's egress proxy.

One world for the whole module: tests/sdk/fake_upstream.py (a deterministic fake of the Anthropic
Messages, OpenAI Chat Completions and OpenAI Responses APIs, streaming and not, with cache token
usage), and one `clawgate serve` whose `[egress]` routes point at it. The real provider keys and the
planted secrets are put into the vault while the daemon runs; each test mints its own agent token
(`clawgate egress token AGENT`), so its usage buckets are its own.

Every parity test makes the same call twice: DIRECTLY to the fake (real key) and THROUGH the proxy
(agent token, base_url = the proxy's route), then checks
  * the SDK-level results are identical (model_dump of every object / every stream event, the
    request id the SDK read from the response headers), and the raw response bytes too;
  * the upstream got the same request both ways: same path, same body (byte for byte, except the
    `stream_options.include_usage` the proxy injects into an OpenAI chat stream that lacks it), the
    same headers (less auth, hop-by-hop, content-length and accept-encoding), the real key in the
    provider's header and never the agent token;
  * `clawgate usage show --json` holds exactly what the fake reported for the proxied call
    (input = uncached input, cache_read, cache_write and its one-hour part, output; per agent ×
    provider × model; the request count; nothing incomplete).
The secret tests plant a vault secret (plain, base64, URL-encoded, JSON-escaped, split across
message parts), a GitHub token and an AWS key pair into every text field the SDKs send, and check
that none of them reaches the upstream in any form (raw body bytes and headers), that the vault
value arrives as SECRET_REF(name), and that redaction is deterministic (prompt caching).
The error tests: a wrong token is the SDK's AuthenticationError; upstream 429/500 are the SDK's
RateLimitError/InternalServerError with the provider's body and retry-after, metered as a request
with no tokens; a stream cut by a reset or truncated is metered as incomplete.

Run with the venv from tests/sdk/setup.sh (tests/sdk/run.sh does everything):
  CLAWGATE_BIN=target/debug/clawgate ~/.cache/clawgate-sdk/venv/bin/python tests/sdk/test_sdk.py -v
Without CLAWGATE_SDK_REQUIRE=1 the tests skip when the binary has no egress proxy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import anthropic
import openai

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(os.environ.get("CLAWGATE_BIN") or ROOT / "target" / "debug" / "clawgate")
REQUIRE = os.environ.get("CLAWGATE_SDK_REQUIRE") == "1"
KEEP = os.environ.get("CLAWGATE_SDK_KEEP") == "1"

ANTHROPIC_MODEL = "claude-sonnet-5-5"
OPENAI_MODEL = "gpt-5.4-mini"

warnings.filterwarnings("ignore", category=DeprecationWarning)

# Requests that go nowhere else: no proxy settings or SDK env from the caller.
for _k in list(os.environ):
    if _k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") or _k.startswith(
            ("OPENAI_", "ANTHROPIC_", "CLAWGATE_STATE")):
        del os.environ[_k]
os.environ["NO_PROXY"] = "127.0.0.1,localhost"


def rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    """The fake upstream, the daemon, its state dir, keys and secrets."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="clawgate-sdk-"))
        self.home = self.root / "home"
        self.home.mkdir()
        self.state = self.root / "state"
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[str, Path] = {}
        # Realistic provider keys: only the fake and the vault ever see them.
        self.anthropic_key = "sk-ant-api03-" + rand(93, string.ascii_letters + string.digits + "-_") + "AA"
        self.openai_key = "sk-proj-" + rand(156, string.ascii_letters + string.digits + "-_")
        self.tokens: dict[str, str] = {}

    # -- processes --
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWGATE_")}
        env["HOME"] = str(self.home)
        env["RUST_BACKTRACE"] = "1"
        return env

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        self.logs[name] = log
        fh = open(log, "ab")
        p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=self.env(), start_new_session=True)
        fh.close()
        self.procs.append(p)
        return p

    def cg(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(BIN), "--state-dir", str(self.state), *args], input=stdin,
                           capture_output=True, text=True, env=self.env(), timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"clawgate {' '.join(args)} -> rc {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def log(self, name: str) -> str:
        p = self.logs.get(name)
        return p.read_text(errors="replace") if p and p.exists() else ""

    def start(self):
        # -- the fake upstream (its own process; control over HTTP) --
        port_file = self.root / "fake.port"
        self.fake_proc = self.spawn("fake_upstream", [sys.executable, str(HERE / "fake_upstream.py"),
                                                       "--port-file", str(port_file),
                                                       "--anthropic-key", self.anthropic_key,
                                                       "--openai-key", self.openai_key])
        deadline = time.monotonic() + 15
        while not port_file.exists():
            if self.fake_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start:\n" + self.log("fake_upstream"))
            time.sleep(0.02)
        self.fake_port = int(port_file.read_text())
        self.fake = f"http://127.0.0.1:{self.fake_port}"

        # -- clawgate serve --
        self.proxy_port = free_port()
        self.proxy = f"http://127.0.0.1:{self.proxy_port}"
        self.config = self.root / "clawgate.toml"
        body = (f'state_dir = "{self.state}"\n'
                f'[admin]\nlisten = "off"\n'
                f'[egress]\nlisten = "127.0.0.1:{self.proxy_port}"\nconnect_listen = "off"\n'
                f'[egress.upstreams]\nanthropic = "{self.fake}"\nopenai = "{self.fake}"\n')
        self.config.write_text(body)
        r = self.cg("validate", "--config", str(self.config), check=False)
        if r.returncode != 0:
            raise RuntimeError(f"clawgate validate rejected the config:\n{self.config.read_text()}\n"
                               f"{r.stdout}{r.stderr}")
        self.daemon = self.spawn("clawgate", [str(BIN), "--state-dir", str(self.state), "serve",
                                              "--config", str(self.config)])
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=0.5):
                    break
            except OSError:
                pass
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("clawgate serve did not open the egress listener:\n" + self.log("clawgate"))
            time.sleep(0.05)

        # -- the vault, filled while the daemon runs (as an operator would) --
        self.cg("vault", "put", "provider.anthropic", "--tool", "*", "--host", "*", stdin=self.anthropic_key + "\n")
        self.cg("vault", "put", "provider.openai", "--tool", "*", "--host", "*", stdin=self.openai_key + "\n")
        # Planted secrets: a vault value (alphanumeric), one full of JSON metacharacters, and two
        # credential formats the rules know (GitHub PAT, AWS key pair).
        self.db_secret = "pg-" + rand(29)
        self.json_secret = 'Qz"' + rand(10) + "\\" + rand(10) + '"/' + rand(4)
        self.cg("vault", "put", "my.db", "--tool", "*", "--host", "*", stdin=self.db_secret + "\n")
        self.cg("vault", "put", "my.json", "--tool", "*", "--host", "*", stdin=self.json_secret + "\n")
        self.ghp = "ghp_" + rand(36)
        self.aws_id = "AKIA" + rand(16, string.ascii_uppercase + "234567")
        self.aws_secret = rand(40, string.ascii_letters + string.digits + "+/")
        self.wait_vault_live()

    def wait_vault_live(self):
        """The daemon picks vault changes up by itself: wait until a proxied request is redacted
        with the new secret and authenticated with the new provider key (at most ~10 s)."""
        tok = self.token("sdk-warmup")
        deadline = time.monotonic() + 10
        last = None
        while time.monotonic() < deadline:
            seq = self.fake_seq()
            body = json.dumps({"model": ANTHROPIC_MODEL, "max_tokens": 8,
                               "messages": [{"role": "user", "content": "warmup " + self.db_secret}]}).encode()
            req = urllib.request.Request(self.proxy + "/anthropic/v1/messages", data=body, method="POST",
                                         headers={"content-type": "application/json", "x-api-key": tok,
                                                  "anthropic-version": "2023-06-01"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    last = (r.status, r.read()[:300])
            except urllib.error.HTTPError as e:
                last = (e.code, e.read()[:300])
            got = self.fake_requests(since=seq)
            if last[0] == 200 and got and b"SECRET_REF(my.db)" in got[-1]["body"]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the daemon did not pick up the vault (last answer {last}):\n" + self.log("clawgate"))

    def stop(self, failed: bool):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if failed or KEEP:
            sys.stderr.write(f"\n[sdk] world kept in {self.root}\n--- clawgate serve log (tail) ---\n"
                             + self.log("clawgate")[-6000:] + "\n")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- agents --
    def token(self, agent: str) -> str:
        if agent not in self.tokens:
            r = self.cg("egress", "token", agent, "--config", str(self.config))
            tok = r.stdout.strip().splitlines()[-1].strip()
            assert tok and " " not in tok, r.stdout
            self.tokens[agent] = tok
        return self.tokens[agent]

    # -- the fake's control endpoints --
    def _control(self, method: str, path: str, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.fake + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def fake_requests(self, since: int = 0) -> list[dict]:
        reqs = self._control("GET", f"/_control/requests?since={since}")
        for r in reqs:
            r["body"] = base64.b64decode(r.pop("body_b64"))
        return reqs

    def fake_seq(self) -> int:
        reqs = self._control("GET", "/_control/requests?since=0")
        return reqs[-1]["seq"] if reqs else 0

    def fault(self, **f):
        self._control("POST", "/_control/faults", f)

    # -- usage --
    def usage(self, agent: str) -> dict:
        """{(provider, model): totals} of `agent`, summed over hours."""
        r = self.cg("usage", "show", "--json", "--agent", agent, "--config", str(self.config))
        out: dict = {}
        for b in json.loads(r.stdout or "[]"):
            if b["agent"] != agent:
                continue
            t = out.setdefault((b["provider"], b["model"]), dict.fromkeys(
                ("input", "output", "cache_read", "cache_write", "cache_write_1h", "requests", "incomplete"), 0))
            for k in t:
                t[k] += int(b[k])
        return out


W: World | None = None
_failed = False


def setUpModule():
    global W
    if not BIN.exists():
        msg = f"no clawgate binary at {BIN} (set CLAWGATE_BIN)"
        if REQUIRE:
            raise RuntimeError(msg)
        raise unittest.SkipTest(msg)
    probe = subprocess.run([str(BIN), "usage", "show", "--help"], capture_output=True, text=True)
    probe2 = subprocess.run([str(BIN), "egress", "token", "--help"], capture_output=True, text=True)
    if probe.returncode != 0 or probe2.returncode != 0:
        msg = f"{BIN} has no egress proxy commands (`usage show`, `egress token`)"
        if REQUIRE:
            raise RuntimeError(msg + "\n" + probe.stderr + probe2.stderr)
        raise unittest.SkipTest(msg)
    W = World()
    try:
        W.start()
    except BaseException:
        W.stop(failed=True)
        raise


def tearDownModule():
    if W is not None:
        W.stop(failed=_failed)


HEADERS_NOT_COMPARED = {
    # credentials (checked separately), hop-by-hop and what a proxy legitimately recomputes
    "authorization", "x-api-key", "host", "content-length", "connection", "keep-alive",
    "transfer-encoding", "accept-encoding", "te", "upgrade", "proxy-connection",
}


class Base(unittest.TestCase):
    maxDiff = None

    def run(self, result=None):
        r = super().run(result)
        global _failed
        if result is not None and (result.failures or result.errors):
            _failed = True
        return r

    # -- clients --
    def anthropic_direct(self, **kw):
        return anthropic.Anthropic(api_key=W.anthropic_key, base_url=W.fake, max_retries=0, **kw)

    def anthropic_proxied(self, agent: str, **kw):
        return anthropic.Anthropic(api_key=W.token(agent), base_url=W.proxy + "/anthropic", max_retries=0, **kw)

    def openai_direct(self, **kw):
        return openai.OpenAI(api_key=W.openai_key, base_url=W.fake + "/v1", max_retries=0, **kw)

    def openai_proxied(self, agent: str, **kw):
        return openai.OpenAI(api_key=W.token(agent), base_url=W.proxy + "/openai/v1", max_retries=0, **kw)

    # -- the upstream's view --
    def one_request(self, since: int) -> dict:
        reqs = W.fake_requests(since=since)
        self.assertEqual(len(reqs), 1, f"expected exactly one upstream request, got {[r['path'] for r in reqs]}")
        return reqs[0]

    def headers_of(self, rec: dict) -> dict:
        out: dict = {}
        for k, v in rec["headers"]:
            out.setdefault(k.lower(), []).append(v)
        return out

    def assert_real_key_only(self, rec: dict, provider: str, agent: str | None = None):
        h = self.headers_of(rec)
        if provider == "anthropic":
            # The proxy puts the real key in Anthropic's own header.
            self.assertEqual(h.get("x-api-key"), [W.anthropic_key])
            self.assertNotIn("authorization", h)
        else:
            self.assertEqual(h.get("authorization"), ["Bearer " + W.openai_key])
            self.assertNotIn("x-api-key", h)
        raw = json.dumps(rec["headers"]).encode() + rec["body"] + rec["path"].encode()
        for tok in W.tokens.values():
            self.assertNotIn(tok.encode(), raw, "an agent token reached the upstream")
        self.assertNotIn(b"cgt_", raw, "something token-shaped reached the upstream")

    def assert_same_upstream_request(self, direct: dict, proxied: dict, *, body_equal: bool = True):
        self.assertEqual(proxied["method"], direct["method"])
        self.assertEqual(proxied["path"], direct["path"])
        if body_equal:
            self.assertEqual(proxied["body"], direct["body"], "the proxy changed a clean body")
        hd = {k: v for k, v in self.headers_of(direct).items() if k not in HEADERS_NOT_COMPARED}
        hp = {k: v for k, v in self.headers_of(proxied).items() if k not in HEADERS_NOT_COMPARED}
        self.assertEqual(hp, hd, "headers differ between the direct and the proxied request")

    # -- usage --
    def expected_usage(self, recs: list[dict]) -> dict:
        out: dict = {}
        for rec in recs:
            model = rec["model"] or json.loads(rec["body"]).get("model")
            prov = "anthropic" if rec["api"] == "anthropic" else "openai"
            t = out.setdefault((prov, model), dict.fromkeys(
                ("input", "output", "cache_read", "cache_write", "cache_write_1h", "requests", "incomplete"), 0))
            for k in ("input", "output", "cache_read", "cache_write", "cache_write_1h"):
                t[k] += (rec["usage"] or {}).get(k, 0)
            t["requests"] += 1
        return out

    def assert_metered(self, agent: str, expected: dict, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = W.usage(agent)
            if got == expected:
                return
            time.sleep(0.1)
        self.assertEqual(got, expected, f"usage of agent {agent}")


# ==============================================================================================
# Parity: the same call directly and through the proxy
# ==============================================================================================

def dump(obj):
    return obj.model_dump(mode="json", warnings=False) if hasattr(obj, "model_dump") else obj


class AnthropicParity(Base):
    def call_both(self, agent: str, fn):
        """fn(client) -> result; returns (direct, proxied, direct_rec, proxied_rec)."""
        s0 = W.fake_seq()
        d = fn(self.anthropic_direct())
        drec = self.one_request(s0)
        s1 = W.fake_seq()
        p = fn(self.anthropic_proxied(agent))
        prec = self.one_request(s1)
        self.assert_real_key_only(prec, "anthropic")
        self.assert_same_upstream_request(drec, prec)
        self.assertEqual(self.headers_of(prec).get("anthropic-version"), self.headers_of(drec).get("anthropic-version"))
        return d, p, drec, prec

    def params(self, text: str):
        return dict(model=ANTHROPIC_MODEL, max_tokens=256, system="You are a terse test assistant.",
                    messages=[{"role": "user", "content": "Earlier question."},
                              {"role": "assistant", "content": "Earlier answer."},
                              {"role": "user", "content": [{"type": "text", "text": text,
                                                            "cache_control": {"type": "ephemeral"}}]}])

    def test_messages_create(self):
        agent = "sdk-a-create"
        d, p, drec, prec = self.call_both(agent, lambda c: c.messages.create(**self.params("Say hi (json).")))
        self.assertEqual(dump(p), dump(d))
        self.assertEqual(p._request_id, d._request_id)
        self.assertIsNotNone(p._request_id)
        self.assertEqual(p.usage.cache_read_input_tokens, prec["usage"]["cache_read"])
        self.assertEqual(p.usage.cache_creation_input_tokens, prec["usage"]["cache_write"])
        self.assertEqual(p.usage.cache_creation.ephemeral_1h_input_tokens, prec["usage"]["cache_write_1h"])
        self.assertEqual(p.usage.input_tokens, prec["usage"]["input"])
        self.assertEqual(p.stop_reason, "end_turn")
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_messages_stream_helper(self):
        agent = "sdk-a-stream-helper"

        def run(c):
            with c.messages.stream(**self.params("Say hi (stream helper).")) as s:
                events = [dump(e) for e in s]
                return events, s.get_final_message(), s.get_final_text()

        (de, dm, dt), (pe, pm, pt), drec, prec = self.call_both(agent, run)
        self.assertEqual(pe, de)
        self.assertEqual(dump(pm), dump(dm))
        self.assertEqual(pt, dt)
        self.assertTrue(pt.startswith("Fake anthropic reply"))
        # The accumulated usage is the cumulative message_delta one (with the cache fields).
        self.assertEqual(pm.usage.output_tokens, prec["usage"]["output"])
        self.assertEqual(pm.usage.cache_read_input_tokens, prec["usage"]["cache_read"])
        self.assertEqual(pm.usage.cache_creation_input_tokens, prec["usage"]["cache_write"])
        self.assertEqual(pm.stop_reason, "end_turn")
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_messages_create_stream_true(self):
        agent = "sdk-a-stream-raw"

        def run(c):
            stream = c.messages.create(stream=True, **self.params("Say hi (raw events)."))
            return [dump(e) for e in stream]

        d, p, drec, prec = self.call_both(agent, run)
        self.assertEqual(p, d)
        types = [e["type"] for e in p]
        self.assertEqual(types[0], "message_start")
        self.assertEqual(types[-2:], ["message_delta", "message_stop"])
        self.assertEqual(p[0]["message"]["usage"]["cache_read_input_tokens"], prec["usage"]["cache_read"])
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_raw_sse_bytes_identical(self):
        agent = "sdk-a-raw-bytes"

        def run(c):
            with c.messages.with_streaming_response.create(stream=True, **self.params("Bytes please.")) as r:
                return r.status_code, r.headers.get("content-type"), b"".join(r.iter_bytes())

        d, p, drec, prec = self.call_both(agent, run)
        self.assertEqual(p, d)
        self.assertIn(b"event: ping\n", p[2])
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_async_stream_and_repeat(self):
        """AsyncAnthropic, two calls on one client (connection reuse through the proxy)."""
        agent = "sdk-a-async"

        async def run(c):
            out = []
            async with c:
                for text in ("Async one.", "Async two."):
                    async with c.messages.stream(**self.params(text)) as s:
                        out.append(([dump(e) async for e in s], dump(await s.get_final_message())))
            return out

        s0 = W.fake_seq()
        d = asyncio.run(run(anthropic.AsyncAnthropic(api_key=W.anthropic_key, base_url=W.fake, max_retries=0)))
        s1 = W.fake_seq()
        p = asyncio.run(run(anthropic.AsyncAnthropic(api_key=W.token(agent), base_url=W.proxy + "/anthropic",
                                                     max_retries=0)))
        precs = W.fake_requests(since=s1)
        self.assertEqual(len(precs), 2)
        self.assertEqual(p, d)
        for rec in precs:
            self.assert_real_key_only(rec, "anthropic")
        self.assertEqual([r["body"] for r in precs], [r["body"] for r in W.fake_requests(since=s0)[:2]])
        self.assert_metered(agent, self.expected_usage(precs))


class OpenAIChatParity(Base):
    def call_both(self, agent: str, fn, *, body_equal: bool = True):
        s0 = W.fake_seq()
        d = fn(self.openai_direct())
        drec = self.one_request(s0)
        s1 = W.fake_seq()
        p = fn(self.openai_proxied(agent))
        prec = self.one_request(s1)
        self.assert_real_key_only(prec, "openai")
        self.assert_same_upstream_request(drec, prec, body_equal=body_equal)
        return d, p, drec, prec

    def params(self, text: str, **extra):
        return dict(model=OPENAI_MODEL, messages=[{"role": "developer", "content": "Be terse."},
                                                  {"role": "user", "content": text}], **extra)

    def test_chat_create(self):
        agent = "sdk-o-chat-json"
        d, p, drec, prec = self.call_both(agent, lambda c: c.chat.completions.create(**self.params("Hi (json).")))
        self.assertEqual(dump(p), dump(d))
        self.assertEqual(p._request_id, d._request_id)
        u = p.usage
        self.assertEqual(u.prompt_tokens_details.cached_tokens, prec["usage"]["cache_read"])
        self.assertEqual(u.prompt_tokens - u.prompt_tokens_details.cached_tokens
                         - u.prompt_tokens_details.cache_write_tokens, prec["usage"]["input"])
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_chat_stream_without_include_usage(self):
        """The proxy injects include_usage upstream (to meter) and hides the extra chunk."""
        agent = "sdk-o-chat-stream-nousage"

        def run(c):
            return [dump(ch) for ch in c.chat.completions.create(stream=True, **self.params("Hi (stream)."))]

        d, p, drec, prec = self.call_both(agent, run, body_equal=False)
        self.assertEqual(p, d)
        self.assertTrue(all(ch["choices"] for ch in p), "a usage-only chunk reached a client that did not ask")
        self.assertTrue(all(ch["usage"] is None for ch in p))
        # Upstream: the direct request had no stream_options; the proxied one asks for usage and is
        # otherwise the same JSON.
        dj, pj = json.loads(drec["body"]), json.loads(prec["body"])
        self.assertNotIn("stream_options", dj)
        self.assertEqual(pj.get("stream_options"), {"include_usage": True})
        pj.pop("stream_options")
        self.assertEqual(pj, dj)
        self.assertIsNotNone(prec["usage"])
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_chat_stream_without_include_usage_raw_bytes(self):
        """Byte view of the same: the only difference from a direct stream is that the upstream,
        asked for usage, put `"usage":null` on every chunk (the usage chunk itself is dropped)."""
        agent = "sdk-o-chat-raw-nousage"

        def run(c):
            with c.chat.completions.with_streaming_response.create(stream=True, **self.params("Raw (no usage).")) as r:
                return b"".join(r.iter_bytes())

        d, p, drec, prec = self.call_both(agent, run, body_equal=False)
        self.assertNotIn(b'"choices":[]', p)
        self.assertEqual(p.replace(b',"usage":null', b""), d)
        self.assertTrue(p.endswith(b"data: [DONE]\n\n"))
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_chat_stream_with_include_usage(self):
        agent = "sdk-o-chat-stream-usage"

        def run(c):
            return [dump(ch) for ch in c.chat.completions.create(
                stream=True, stream_options={"include_usage": True}, **self.params("Hi (stream+usage)."))]

        d, p, drec, prec = self.call_both(agent, run)
        self.assertEqual(p, d)
        last = p[-1]
        self.assertEqual(last["choices"], [])
        self.assertEqual(last["usage"]["prompt_tokens_details"]["cached_tokens"], prec["usage"]["cache_read"])
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_chat_stream_with_include_usage_raw_bytes(self):
        agent = "sdk-o-chat-raw-usage"

        def run(c):
            with c.chat.completions.with_streaming_response.create(
                    stream=True, stream_options={"include_usage": True}, **self.params("Raw (usage).")) as r:
                return b"".join(r.iter_bytes())

        d, p, drec, prec = self.call_both(agent, run)
        self.assertEqual(p, d)
        self.assertIn(b'"choices":[]', p)
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_chat_stream_helper(self):
        """client.chat.completions.stream (the helper; it does not ask for usage)."""
        agent = "sdk-o-chat-helper"

        def run(c):
            with c.chat.completions.stream(**self.params("Hi (helper).")) as s:
                events = [dump(e) for e in s]
                return events, dump(s.get_final_completion())

        d, p, drec, prec = self.call_both(agent, run, body_equal=False)
        self.assertEqual(p, d)
        self.assertIsNone(p[1]["usage"])
        self.assert_metered(agent, self.expected_usage([prec]))


class OpenAIResponsesParity(Base):
    call_both = OpenAIChatParity.call_both

    def params(self, text: str):
        return dict(model=OPENAI_MODEL, instructions="Be terse.",
                    input=[{"role": "user", "content": [{"type": "input_text", "text": text}]}])

    def test_responses_stream_helper(self):
        agent = "sdk-o-resp-helper"

        def run(c):
            with c.responses.stream(**self.params("Hi (responses helper).")) as s:
                events = [dump(e) for e in s]
                return events, dump(s.get_final_response())

        (de, dr), (pe, pr), drec, prec = self.call_both(agent, run)
        self.assertEqual(pe, de)
        self.assertEqual(pr, dr)
        self.assertEqual(pe[-1]["type"], "response.completed")
        u = pr["usage"]
        self.assertEqual(u["input_tokens_details"]["cached_tokens"], prec["usage"]["cache_read"])
        self.assertEqual(u["input_tokens_details"]["cache_write_tokens"], prec["usage"]["cache_write"])
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_responses_create_stream_true(self):
        agent = "sdk-o-resp-raw"

        def run(c):
            return [dump(e) for e in c.responses.create(stream=True, **self.params("Hi (responses raw)."))]

        d, p, drec, prec = self.call_both(agent, run)
        self.assertEqual(p, d)
        self.assertEqual([e["sequence_number"] for e in p], list(range(len(p))))
        self.assert_metered(agent, self.expected_usage([prec]))

    def test_responses_create(self):
        agent = "sdk-o-resp-json"
        d, p, drec, prec = self.call_both(agent, lambda c: c.responses.create(**self.params("Hi (responses json).")))
        self.assertEqual(dump(p), dump(d))
        self.assertEqual(p.output_text, d.output_text)
        self.assertEqual(p._request_id, d._request_id)
        self.assert_metered(agent, self.expected_usage([prec]))


# ==============================================================================================
# Secrets never reach the upstream
# ==============================================================================================

class Secrets(Base):
    def forms(self) -> list[bytes]:
        """Every spelling of a planted secret that must not appear in what the upstream got."""
        out = []
        for s in (W.db_secret, W.json_secret, W.ghp, W.aws_id, W.aws_secret):
            out += [s.encode(), json.dumps(s)[1:-1].encode(), base64.b64encode(s.encode()),
                    urllib.parse.quote(s, safe="").encode()]
        # Long enough pieces that no placeholder could contain them by chance.
        out += [W.db_secret[:16].encode(), W.db_secret[-16:].encode(), W.aws_secret[:20].encode(),
                W.ghp[4:24].encode()]
        return out

    def texts(self) -> list[str]:
        s = W.db_secret
        return [
            f"The database password is {s}, keep it safe.",
            "base64 of it: " + base64.b64encode(s.encode()).decode(),
            "url-encoded: https://db.internal/connect?pw=" + urllib.parse.quote(s, safe="") + "&x=1",
            "config file: " + json.dumps({"password": W.json_secret, "db": s}),
            f"the other one verbatim: {W.json_secret}",
            f"export GITHUB_TOKEN={W.ghp}",
            f"[default]\naws_access_key_id = {W.aws_id}\naws_secret_access_key = {W.aws_secret}\n",
        ]

    def assert_clean(self, recs: list[dict], *, expect_refs=("my.db",)):
        self.assertTrue(recs)
        for rec in recs:
            blob = rec["body"] + b"\n" + json.dumps(rec["headers"]).encode() + rec["path"].encode()
            for form in self.forms():
                self.assertNotIn(form, blob, f"a planted secret reached the upstream ({rec['path']})")
            for name in expect_refs:
                self.assertIn(f"SECRET_REF({name})".encode(), rec["body"])
            json.loads(rec["body"])  # still valid JSON

    def test_anthropic_messages_redacted(self):
        agent = "sdk-secrets-a"
        c = self.anthropic_proxied(agent)
        t = self.texts()
        params = dict(
            model=ANTHROPIC_MODEL, max_tokens=256,
            system=[{"type": "text", "text": "Ops assistant. Prod DSN: postgres://app:" + W.db_secret + "@db/app"}],
            tools=[{"name": "run", "description": "run a command", "input_schema": {
                "type": "object", "properties": {"cmd": {"type": "string"}}}}],
            messages=[
                {"role": "user", "content": [{"type": "text", "text": x} for x in t]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "run",
                                                   "input": {"cmd": f"psql -p '{W.db_secret}'",
                                                             "env": {"GITHUB_TOKEN": W.ghp}}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                              "content": f"AWS_SECRET_ACCESS_KEY={W.aws_secret}\nok"}]},
            ])
        s0 = W.fake_seq()
        m = c.messages.create(**params)
        with c.messages.stream(**params) as s:
            text = s.get_final_text()
        recs = W.fake_requests(since=s0)
        self.assertEqual(len(recs), 2)
        self.assert_clean(recs, expect_refs=("my.db", "my.json"))
        for rec in recs:
            self.assert_real_key_only(rec, "anthropic")
        # The model saw the reference, the answer is what the fake made of the redacted prompt.
        self.assertIn("Fake anthropic reply", m.content[0].text)
        self.assertTrue(text.startswith("Fake anthropic reply"))
        # Deterministic: the same request is redacted to the same bytes (prompt caches stay warm).
        b0, b1 = json.loads(recs[0]["body"]), json.loads(recs[1]["body"])
        b1.pop("stream", None)
        self.assertEqual(b1, b0)
        self.assert_metered(agent, self.expected_usage(recs))

    def test_openai_chat_redacted(self):
        agent = "sdk-secrets-oc"
        c = self.openai_proxied(agent)
        t = self.texts()
        params = dict(model=OPENAI_MODEL, messages=[
            {"role": "system", "content": "DSN postgres://app:" + W.db_secret + "@db/app"},
            {"role": "user", "content": [{"type": "text", "text": x} for x in t]},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "run", "arguments": json.dumps({"cmd": "login", "token": W.ghp,
                                                                     "pw": W.json_secret})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": f"aws_secret_access_key={W.aws_secret} db={W.db_secret}"},
            {"role": "user", "content": "again: " + W.db_secret},
        ])
        s0 = W.fake_seq()
        r1 = c.chat.completions.create(**params)
        chunks = list(c.chat.completions.create(stream=True, **params))
        recs = W.fake_requests(since=s0)
        self.assertEqual(len(recs), 2)
        self.assert_clean(recs, expect_refs=("my.db", "my.json"))
        self.assertIn("SECRET_REF(my.db)", r1.choices[0].message.content)  # echoed by the fake
        self.assertTrue(all(ch.choices for ch in chunks))
        b0, b1 = json.loads(recs[0]["body"]), json.loads(recs[1]["body"])
        for k in ("stream", "stream_options"):
            b1.pop(k, None)
        self.assertEqual(b1, b0)
        self.assert_metered(agent, self.expected_usage(recs))

    def test_openai_responses_redacted(self):
        agent = "sdk-secrets-or"
        c = self.openai_proxied(agent)
        params = dict(model=OPENAI_MODEL, instructions="DSN postgres://app:" + W.db_secret + "@db/app",
                      input=[{"role": "user", "content": [{"type": "input_text", "text": x} for x in self.texts()]},
                             {"type": "function_call", "call_id": "call_9", "name": "run",
                              "arguments": json.dumps({"token": W.ghp})},
                             {"type": "function_call_output", "call_id": "call_9",
                              "output": f"{W.aws_id} {W.aws_secret} {W.db_secret}"}])
        s0 = W.fake_seq()
        with c.responses.stream(**params) as s:
            final = s.get_final_response()
        recs = W.fake_requests(since=s0)
        self.assertEqual(len(recs), 1)
        self.assert_clean(recs, expect_refs=("my.db", "my.json"))
        self.assertEqual(final.status, "completed")
        self.assert_metered(agent, self.expected_usage(recs))

    def test_clean_prompt_is_forwarded_byte_for_byte(self):
        """Text that merely looks technical (hashes, UUIDs, base64 of nothing secret) is not touched."""
        agent = "sdk-secrets-clean"
        text = ("commit 3f2c1e9b8a7d6c5b4a39281706f5e4d3c2b1a098, id 123e4567-e89b-12d3-a456-426614174000, "
                "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, \u00e9\u00e8 \u2603")
        s0 = W.fake_seq()
        self.openai_direct().chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": text}])
        drec = self.one_request(s0)
        s1 = W.fake_seq()
        self.openai_proxied(agent).chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": text}])
        prec = self.one_request(s1)
        self.assertEqual(prec["body"], drec["body"])


    def test_wire_level_json_escapes(self):
        """A body whose strings spell secrets with JSON \\uXXXX escapes (legal JSON no SDK writes,
        sent raw): the proxy decodes before it redacts."""
        agent = "sdk-secrets-wire-esc"
        esc = lambda v: "".join("\\u%04x" % ord(ch) for ch in v)  # noqa: E731
        body = ('{"model":"%s","max_tokens":8,"messages":[{"role":"user","content":"pw %s gh %s"}]}'
                % (ANTHROPIC_MODEL, esc(W.db_secret), esc(W.ghp))).encode()
        s0 = W.fake_seq()
        req = urllib.request.Request(W.proxy + "/anthropic/v1/messages", data=body, method="POST",
                                     headers={"content-type": "application/json", "x-api-key": W.token(agent),
                                              "anthropic-version": "2023-06-01"})
        with urllib.request.urlopen(req, timeout=30) as r:
            self.assertEqual(r.status, 200)
        recs = W.fake_requests(since=s0)
        self.assert_clean(recs)
        self.assertNotIn(esc(W.db_secret)[:60].encode(), recs[0]["body"])

    def test_large_prompt_parity_and_redaction(self):
        """Bodies over 256 KiB are redacted on the blocking pool: a clean one still goes byte for
        byte (and the answers match), one with a secret at its far end is still redacted."""
        agent = "sdk-secrets-large"
        filler = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7919 % 10007}"
                           for i in range(6000))
        self.assertGreater(len(filler), 300_000)
        params = dict(model=OPENAI_MODEL, messages=[{"role": "user", "content": filler}])
        s0 = W.fake_seq()
        d = self.openai_direct().chat.completions.create(**params)
        drec = self.one_request(s0)
        s1 = W.fake_seq()
        p = self.openai_proxied(agent).chat.completions.create(**params)
        prec = self.one_request(s1)
        self.assertEqual(prec["body"], drec["body"])
        self.assertEqual(dump(p), dump(d))
        s2 = W.fake_seq()
        self.openai_proxied(agent).chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": filler + "\npassword: " + W.db_secret}])
        srec = self.one_request(s2)
        self.assert_clean([srec])
        self.assert_metered(agent, self.expected_usage([prec, srec]))


class HiddenSecretSpellings(Base):
    """Secret spellings the brief says must still count: a vault value split across message
    parts, or written as \\uXXXX escapes. Each test is minimal: one request, one planted
    secret, one check."""

    def _assert_no_secret(self, rec: dict, secret: str):
        for piece in (secret, secret[:12], secret[-12:]):
            self.assertNotIn(piece.encode(), rec["body"], f"part of the vault secret reached the upstream: "
                                                          f"{rec['body'][:400]!r}")

    def test_split_across_anthropic_text_blocks(self):
        s0 = W.fake_seq()
        self.anthropic_proxied("sdk-gap-split-a").messages.create(
            model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": [
                {"type": "text", "text": "password part one: " + W.db_secret[:14]},
                {"type": "text", "text": W.db_secret[14:] + " (part two)"}]}])
        self._assert_no_secret(self.one_request(s0), W.db_secret)

    def test_split_across_openai_chat_content_parts(self):
        s0 = W.fake_seq()
        self.openai_proxied("sdk-gap-split-o").chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": [
                {"type": "text", "text": "password part one: " + W.db_secret[:14]},
                {"type": "text", "text": W.db_secret[14:] + " (part two)"}]}])
        self._assert_no_secret(self.one_request(s0), W.db_secret)

    def test_text_level_json_unicode_escapes(self):
        """The agent quotes text in which the vault secret is spelled with JSON \\uXXXX escapes
        (base64 and URL encoding of the same secret are caught; inside `{"db_password": "…"}` the
        password-assignment rule happens to catch it, in prose nothing does)."""
        s0 = W.fake_seq()
        escaped = "".join("\\u%04x" % ord(ch) for ch in W.db_secret)
        self.anthropic_proxied("sdk-gap-esc").messages.create(
            model=ANTHROPIC_MODEL, max_tokens=8,
            messages=[{"role": "user", "content": "the backup value, JSON-escaped as in the dump: " + escaped}])
        rec = self.one_request(s0)
        self.assertNotIn(escaped.encode().replace(b"\\", b"\\\\"), rec["body"],
                         f"the \\u-escaped vault secret reached the upstream: {rec['body'][:300]!r}")


# ==============================================================================================
# Streaming behaviour: no buffering, cancellation, concurrency, token rotation, beta routes
# ==============================================================================================

class Streaming(Base):
    def _arrivals(self, it) -> list[float]:
        t0 = time.monotonic()
        out = []
        for _ in it:
            out.append(time.monotonic() - t0)
        return out

    def test_no_buffering(self):
        """A slow upstream (150 ms before every event): through the proxy the first event arrives
        long before the last, for Anthropic, OpenAI chat in filter mode (include_usage injected)
        and Responses."""
        agent = "sdk-stream-nobuffer"
        calls = {
            "anthropic": lambda: self.anthropic_proxied(agent).messages.create(
                model=ANTHROPIC_MODEL, max_tokens=64, stream=True, messages=[{"role": "user", "content": "slow"}]),
            "chat": lambda: self.openai_proxied(agent).chat.completions.create(
                model=OPENAI_MODEL, stream=True, messages=[{"role": "user", "content": "slow"}]),
            "responses": lambda: self.openai_proxied(agent).responses.create(
                model=OPENAI_MODEL, stream=True, input="slow"),
        }
        for name, call in calls.items():
            with self.subTest(api=name):
                W.fault(kind="delay", ms=150)
                times = self._arrivals(call())
                self.assertGreater(len(times), 8)
                self.assertGreater(times[-1], 1.2, times)
                self.assertLess(times[0], 0.6, f"{name}: first event only after {times[0]:.2f}s of {times[-1]:.2f}s")
                # Events keep trickling: the middle one is well before the end.
                self.assertLess(times[len(times) // 2], times[-1] - 0.4, times)

    def test_client_cancel_is_metered(self):
        """The client closes a slow Anthropic stream after two events: one request, incomplete,
        with the input and cache counts message_start announced."""
        agent = "sdk-stream-cancel"
        W.fault(kind="delay", ms=200)
        s0 = W.fake_seq()
        with self.anthropic_proxied(agent).messages.stream(
                model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": "cancel me"}]) as s:
            for i, _ in enumerate(s):
                if i == 1:
                    break
        prec = self.one_request(s0)
        self.assert_metered(agent, {("anthropic", ANTHROPIC_MODEL): dict(
            input=prec["usage"]["input"], output=1, cache_read=prec["usage"]["cache_read"],
            cache_write=prec["usage"]["cache_write"], cache_write_1h=prec["usage"]["cache_write_1h"], requests=1, incomplete=1)}, timeout=10)

    def test_concurrent_mixed_requests_metered_exactly(self):
        """24 concurrent calls of every kind from one agent: every answer equals its direct twin,
        and the buckets are exactly the sums the fake reported."""
        from concurrent.futures import ThreadPoolExecutor
        agent = "sdk-stream-concurrent"

        def call(kind: str, i: int, proxied: bool):
            text = f"concurrent {kind} #{i}"
            if kind == "a":
                c = self.anthropic_proxied(agent) if proxied else self.anthropic_direct()
                with c.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64,
                                       messages=[{"role": "user", "content": text}]) as s:
                    return dump(s.get_final_message())
            c = self.openai_proxied(agent) if proxied else self.openai_direct()
            if kind == "c":
                return [dump(x) for x in c.chat.completions.create(
                    model=OPENAI_MODEL, stream=True, messages=[{"role": "user", "content": text}])]
            if kind == "r":
                with c.responses.stream(model=OPENAI_MODEL, input=text) as s:
                    return dump(s.get_final_response())
            return dump(c.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": text}]))

        jobs = [(k, i) for i in range(6) for k in "acrj"]
        W.token(agent)  # minted once, before the threads (minting again would replace it)
        direct = {j: call(*j, proxied=False) for j in jobs}
        s0 = W.fake_seq()
        with ThreadPoolExecutor(max_workers=12) as ex:
            proxied = dict(zip(jobs, ex.map(lambda j: call(*j, proxied=True), jobs)))
        for j in jobs:
            self.assertEqual(proxied[j], direct[j], j)
        precs = W.fake_requests(since=s0)
        self.assertEqual(len(precs), len(jobs))
        self.assert_metered(agent, self.expected_usage(precs))

    def test_token_rotation_without_restart(self):
        agent = "sdk-stream-rotate"
        old = W.token(agent)
        self.openai_proxied(agent).chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "a"}])
        new = W.cg("egress", "token", agent, "--config", str(W.config)).stdout.strip().splitlines()[-1].strip()
        self.assertNotEqual(new, old)
        W.tokens[agent] = new
        s0 = W.fake_seq()
        with self.assertRaises(openai.AuthenticationError):
            openai.OpenAI(api_key=old, base_url=W.proxy + "/openai/v1", max_retries=0).chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "b"}])
        self.assertEqual(W.fake_requests(since=s0), [])
        self.openai_proxied(agent).chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "c"}])
        got = W.usage(agent)
        self.assertEqual(sum(v["requests"] for v in got.values()), 2, got)

    def test_anthropic_beta_route_and_headers(self):
        """client.beta.messages (the anthropic-beta header) is identical too."""
        agent = "sdk-stream-beta"

        def run(c):
            with c.beta.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64,
                                        betas=["context-management-2025-06-27"],
                                        messages=[{"role": "user", "content": "beta please"}]) as s:
                return [dump(e) for e in s], dump(s.get_final_message())

        d, p, drec, prec = AnthropicParity.call_both(self, agent, run)
        self.assertEqual(p, d)
        self.assertEqual(self.headers_of(prec).get("anthropic-beta"), ["context-management-2025-06-27"])
        self.assert_metered(agent, self.expected_usage([prec]))


# ==============================================================================================
# Errors
# ==============================================================================================

class Errors(Base):
    def test_wrong_token_anthropic(self):
        s0 = W.fake_seq()
        c = anthropic.Anthropic(api_key="cgt_" + rand(40), base_url=W.proxy + "/anthropic", max_retries=0)
        with self.assertRaises(anthropic.AuthenticationError) as cm:
            c.messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        e = cm.exception
        self.assertEqual(e.status_code, 401)
        self.assertEqual(e.body["type"], "error")
        self.assertEqual(e.body["error"]["type"], "authentication_error")
        self.assertEqual(e.response.headers.get("x-clawgate-error"), "invalid_token")
        self.assertEqual(W.fake_requests(since=s0), [], "a request with a wrong token reached the upstream")

    def test_wrong_token_openai(self):
        s0 = W.fake_seq()
        c = openai.OpenAI(api_key="cgt_" + rand(40), base_url=W.proxy + "/openai/v1", max_retries=0)
        with self.assertRaises(openai.AuthenticationError) as cm:
            c.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
        e = cm.exception
        self.assertEqual(e.status_code, 401)
        self.assertEqual(e.code, "invalid_api_key")
        self.assertEqual(e.response.headers.get("x-clawgate-error"), "invalid_token")
        self.assertEqual(W.fake_requests(since=s0), [])

    def test_real_provider_key_is_not_an_agent_token(self):
        """An agent that somehow holds the real key still cannot use the proxy with it."""
        s0 = W.fake_seq()
        with self.assertRaises(openai.AuthenticationError):
            self.openai_proxied("x").with_options(api_key=W.openai_key).chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(W.fake_requests(since=s0), [])

    def _error_both(self, agent, provider, status, exc, **fault):
        """The same upstream error directly and through the proxy: same SDK exception, body, headers."""
        results = []
        for client in ((self.anthropic_direct(), self.anthropic_proxied(agent)) if provider == "anthropic"
                       else (self.openai_direct(), self.openai_proxied(agent))):
            W.fault(kind="status", status=status, **fault)
            s0 = W.fake_seq()
            with self.assertRaises(exc) as cm:
                if provider == "anthropic":
                    client.messages.create(model=ANTHROPIC_MODEL, max_tokens=8,
                                           messages=[{"role": "user", "content": f"error {status}"}])
                else:
                    client.chat.completions.create(model=OPENAI_MODEL, stream=True,
                                                   messages=[{"role": "user", "content": f"error {status}"}])
            results.append((cm.exception, self.one_request(s0)))
        (de, drec), (pe, prec) = results
        self.assertEqual(pe.status_code, status)
        self.assertEqual(pe.body, de.body)
        self.assertEqual(pe.message, de.message)
        self.assertEqual(pe.request_id, de.request_id)
        self.assertIsNone(pe.response.headers.get("x-clawgate-error"))
        self.assertEqual(pe.response.headers.get("retry-after"), de.response.headers.get("retry-after"))
        self.assert_real_key_only(prec, provider)
        # Metered as one request without tokens, under the requested model.
        model = ANTHROPIC_MODEL if provider == "anthropic" else OPENAI_MODEL
        self.assert_metered(agent, {(provider, model): dict(input=0, output=0, cache_read=0, cache_write=0, cache_write_1h=0,
                                                            requests=1, incomplete=0)})
        return pe

    def test_429_anthropic(self):
        e = self._error_both("sdk-err-429-a", "anthropic", 429, anthropic.RateLimitError, retry_after=17)
        self.assertEqual(e.body["error"]["type"], "rate_limit_error")
        self.assertEqual(e.response.headers.get("retry-after"), "17")

    def test_429_openai(self):
        e = self._error_both("sdk-err-429-o", "openai", 429, openai.RateLimitError, retry_after=3)
        self.assertEqual(e.code, "rate_limit_exceeded")
        self.assertEqual(e.response.headers.get("retry-after"), "3")

    def test_500_anthropic(self):
        self._error_both("sdk-err-500-a", "anthropic", 500, anthropic.InternalServerError)

    def test_500_openai(self):
        self._error_both("sdk-err-500-o", "openai", 500, openai.InternalServerError)

    def test_529_overloaded_anthropic(self):
        e = self._error_both("sdk-err-529-a", "anthropic", 529, anthropic.OverloadedError)
        self.assertEqual(e.body["error"]["type"], "overloaded_error")


class Faults(Base):
    """Broken upstream streams: the client sees the same breakage as direct, usage is marked
    incomplete (and what was seen of it is kept)."""

    def _stream(self, client, provider):
        if provider == "anthropic":
            return [dump(e) for e in client.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=64, stream=True,
                messages=[{"role": "user", "content": "a stream that breaks"}])]
        return [dump(e) for e in client.chat.completions.create(
            model=OPENAI_MODEL, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "a stream that breaks"}])]

    def _both(self, agent, provider, kind, after):
        outs = []
        for client in ((self.anthropic_direct(), self.anthropic_proxied(agent)) if provider == "anthropic"
                       else (self.openai_direct(), self.openai_proxied(agent))):
            W.fault(kind=kind, after_events=after)
            s0 = W.fake_seq()
            try:
                outs.append(("ok", self._stream(client, provider)))
            except Exception as e:  # noqa: BLE001 - which exception is part of the comparison
                outs.append(("raised", type(e).__name__))
            self.one_request(s0)
        return outs

    def wait_usage(self, agent):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = W.usage(agent)
            if got:
                return got
            time.sleep(0.1)
        return W.usage(agent)

    def test_reset_mid_stream_anthropic(self):
        agent = "sdk-fault-reset-a"
        s0 = W.fake_seq()
        (d, p) = self._both(agent, "anthropic", "reset", 3)
        self.assertEqual(d[0], "raised")
        self.assertEqual(p[0], "raised", f"direct raised {d[1]}, proxied returned normally: {p[1]}")
        prec = W.fake_requests(since=s0)[-1]
        got = self.wait_usage(agent)
        # What message_start announced is kept; the request is marked incomplete.
        self.assertEqual(got, {("anthropic", ANTHROPIC_MODEL): dict(
            input=prec["usage"]["input"], output=1, cache_read=prec["usage"]["cache_read"],
            cache_write=prec["usage"]["cache_write"], cache_write_1h=prec["usage"]["cache_write_1h"], requests=1, incomplete=1)})

    def test_reset_mid_stream_openai(self):
        agent = "sdk-fault-reset-o"
        (d, p) = self._both(agent, "openai", "reset", 3)
        self.assertEqual(d[0], "raised")
        self.assertEqual(p[0], "raised", f"direct raised {d[1]}, proxied returned normally: {p[1]}")
        got = self.wait_usage(agent)
        self.assertEqual(got, {("openai", OPENAI_MODEL + "-2026-03-17"): dict(
            input=0, output=0, cache_read=0, cache_write=0, cache_write_1h=0, requests=1, incomplete=1)})

    def test_truncated_stream_openai_without_usage_chunk(self):
        """The stream ends cleanly but before the usage chunk: the client gets what was sent, the
        meter records the request as incomplete."""
        agent = "sdk-fault-trunc-o"
        (d, p) = self._both(agent, "openai", "truncate", 4)
        self.assertEqual(p, d)
        self.assertEqual(p[0], "ok")
        got = self.wait_usage(agent)
        self.assertEqual(got, {("openai", OPENAI_MODEL + "-2026-03-17"): dict(
            input=0, output=0, cache_read=0, cache_write=0, cache_write_1h=0, requests=1, incomplete=1)})

    def test_truncated_stream_anthropic_before_message_delta(self):
        """An Anthropic stream that ends (cleanly) after message_start but before message_delta:
        the output count is only message_start's placeholder, so the request must be marked
        incomplete (the anchors' `usage_complete` rule), input and cache counts kept."""
        agent = "sdk-fault-trunc-a"
        s0 = W.fake_seq()
        (d, p) = self._both(agent, "anthropic", "truncate", 4)
        self.assertEqual(p, d)
        prec = W.fake_requests(since=s0)[-1]
        got = self.wait_usage(agent)
        self.assertEqual(got, {("anthropic", ANTHROPIC_MODEL): dict(
            input=prec["usage"]["input"], output=1, cache_read=prec["usage"]["cache_read"],
            cache_write=prec["usage"]["cache_write"], cache_write_1h=prec["usage"]["cache_write_1h"], requests=1, incomplete=1)})

    def test_openai_chat_stream_closed_at_done_is_complete(self):
        """The openai SDK (sync) stops reading at `data: [DONE]` and closes the response. When the
        upstream's end of body comes a little later (as from any distant provider; here 300 ms),
        the proxy sees the client go first. The client got everything and the usage chunk was
        read, so the request is complete, with or without include_usage."""
        for i, opts in enumerate(({}, {"stream_options": {"include_usage": True}})):
            with self.subTest(**(opts or {"stream_options": None})):
                agent = f"sdk-fault-linger-{i}"
                W.fault(kind="linger", ms=300)
                s0 = W.fake_seq()
                chunks = list(self.openai_proxied(agent).chat.completions.create(
                    model=OPENAI_MODEL, stream=True, messages=[{"role": "user", "content": "linger"}], **opts))
                self.assertEqual(chunks[-1].choices == [], bool(opts))
                prec = self.one_request(s0)
                time.sleep(0.6)  # the upstream's end arrives; nothing is left to happen
                self.assert_metered(agent, self.expected_usage([prec]))

    def test_truncated_mid_event_responses(self):
        """A Responses stream cut in the middle of an event, before response.completed."""
        agent = "sdk-fault-trunc-r"
        outs = []
        for client in (self.openai_direct(), self.openai_proxied(agent)):
            W.fault(kind="truncate_mid_event", after_events=5)
            try:
                outs.append(("ok", [dump(e) for e in client.responses.create(
                    model=OPENAI_MODEL, input="cut me", stream=True)]))
            except Exception as e:  # noqa: BLE001
                outs.append(("raised", type(e).__name__))
        self.assertEqual(outs[1], outs[0])
        got = self.wait_usage(agent)
        (only,) = got.values()
        self.assertEqual((only["requests"], only["incomplete"], only["input"], only["output"]), (1, 1, 0, 0))


if __name__ == "__main__":
    unittest.main()
