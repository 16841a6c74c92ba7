#!/usr/bin/env python3
"""Smoke test of the e2e harness against a real OpenClaw 2026.9.6 (stdlib unittest).

    bash tests/e2e/setup.sh            # once: Node 24, OpenClaw, Chromium
    python3 tests/e2e/smoke_test.py -v

Uses a throw-away probe plugin (written to a temp dir) instead of the Clawgate plugin:
  * before_tool_call (lowest priority) blocks any command containing `hookBlockPattern`
    (default "rm -rf") with blockReason "probe: blocked";
  * a trusted tool policy blocks commands containing `trustedBlockPattern` with "probe-trusted: blocked";
  * every hook call is appended to `eventsLog` (JSONL).
Skips (not fails) when setup.sh has not been run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
from harness import E2E, MODEL_ANTHROPIC, HarnessUnavailable, PluginSpec, Timed, Tools, print_timings  # noqa: E402


PROBE_ID = "e2e-probe"
PROBE_MANIFEST = {
    "id": PROBE_ID,
    "name": "E2E Probe",
    "description": "Harness smoke-test probe",
    "activation": {"onStartup": True},
    "configSchema": {"type": "object", "additionalProperties": True},
    "contracts": {"trustedToolPolicies": ["e2e-probe-trusted"]},
}
PROBE_PACKAGE = {"name": PROBE_ID, "version": "1.0.0", "type": "module",
                 "openclaw": {"extensions": ["./index.js"]}}
PROBE_INDEX_JS = r"""
import { appendFileSync } from "node:fs";

const commandOf = (event) => {
  const p = (event && event.params) || {};
  if (typeof p.command === "string") return p.command;
  if (p.args && typeof p.args.command === "string") return p.args.command;   // tool_call {id, args}
  return "";
};

export default {
  id: "e2e-probe",
  name: "E2E Probe",
  description: "Harness smoke-test probe",
  register(api) {
    const cfg = api.pluginConfig || {};
    const log = (hook, data) => {
      if (!cfg.eventsLog) return;
      try {
        appendFileSync(cfg.eventsLog, JSON.stringify({ t: Date.now(), pid: process.pid, hook, ...data }) + "\n");
      } catch {}
    };
    log("register", { mode: api.registrationMode, argv: process.argv.slice(2, 4) });
    const hookPattern = cfg.hookBlockPattern || "rm -rf";
    const trustedPattern = cfg.trustedBlockPattern || "TRUSTED-DENY";

    api.registerTrustedToolPolicy({
      id: "e2e-probe-trusted",
      description: "probe trusted policy",
      evaluate(event, ctx) {
        const cmd = commandOf(event);
        log("trusted_policy", { toolName: event.toolName, command: cmd, argv: process.argv.slice(2, 4) });
        if (cmd.includes(trustedPattern)) return { allow: false, reason: "probe-trusted: blocked" };
        return undefined;
      },
    });

    api.on("before_tool_call", async (event, ctx) => {
      const cmd = commandOf(event);
      log("before_tool_call", { toolName: event.toolName, command: cmd, toolCallId: event.toolCallId,
                                argv: process.argv.slice(2, 4) });
      if (cmd.includes(hookPattern)) return { block: true, blockReason: "probe: blocked" };
      return {};
    }, { priority: -1000 });

    api.on("after_tool_call", (event) => {
      log("after_tool_call", { toolName: event.toolName, command: commandOf(event), error: event.error || null });
    });
  },
};
"""


def write_probe_plugin(root: Path) -> Path:
    d = root / "probe-plugin"
    d.mkdir(parents=True, exist_ok=True)
    (d / "openclaw.plugin.json").write_text(json.dumps(PROBE_MANIFEST, indent=2))
    (d / "package.json").write_text(json.dumps(PROBE_PACKAGE, indent=2))
    (d / "index.js").write_text(PROBE_INDEX_JS)
    return d


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tools_or_skip(require_chromium=False) -> Tools:
    try:
        return Tools.find(require_chromium=require_chromium)
    except HarnessUnavailable as e:
        raise unittest.SkipTest(str(e))


class TurnAsserts(unittest.TestCase):
    e: E2E

    def assertTurnOk(self, turn):
        if not turn.ok:
            self.fail(f"agent turn failed\n{turn.describe()}\n{self.e.failure_report()}")


# ------------------------------------------------------------------------------------------------
# Gateway path: (a) openai allow, (b) openai block, (c) anthropic-messages allow + block
# ------------------------------------------------------------------------------------------------

class GatewaySmoke(TurnAsserts):
    @classmethod
    def setUpClass(cls):
        tools = tools_or_skip()
        cls.e = E2E(tools=tools)
        try:
            cls.events = cls.e.root / "probe-events.jsonl"
            plugin_dir = write_probe_plugin(cls.e.root)
            with Timed("gateway: fake LLM start"):
                cls.llm = cls.e.start_fake_llm()
            cls.e.write_config(plugins=[PluginSpec(dir=str(plugin_dir), id=PROBE_ID,
                                                   config={"eventsLog": str(cls.events)},
                                                   before_tool_call_timeout_ms=30000)])
            with Timed("gateway: cold start to ready"):
                cls.e.start_gateway(timeout=180)
        except BaseException:
            cls.e.close(failed=True)
            raise

    @classmethod
    def tearDownClass(cls):
        with Timed("gateway: shutdown"):
            cls.e.close()

    def test_0_readyz(self):
        self.assertEqual(self.e.readyz(), 200, self.e.failure_report())

    def test_a_openai_exec_runs_and_model_sees_output(self):
        listing = self.e.workspace / "listing"
        listing.mkdir()
        marker = "planted-marker-7f3a9c"
        for i in range(120):  # > 1 KiB of output: the transcript event gets zstd-compressed
            (listing / f"file-{i:04d}-padding-padding.txt").touch()
        (listing / marker).touch()
        self.llm.next({"tool": "exec", "args": {"command": f"ls {listing}"}})
        with Timed("(a) openai-completions turn: exec ls"):
            turn = self.e.agent_turn("Please list the files", session_id="smoke-a")
        self.assertTurnOk(turn)
        self.assertEqual(len(turn.issued_calls), 1, turn.describe())
        self.assertIn(marker, turn.seen, turn.describe())
        self.assertIn("file-0000-padding-padding.txt", turn.seen)
        self.assertIn("Tool said: ", turn.final_text)
        self.assertIn(marker, turn.final_text)
        # Wire format: streamed OpenAI chat completions with usage.
        first = turn.requests[0]
        self.assertEqual(first["api"], "openai")
        self.assertTrue(first["path"].endswith("/v1/chat/completions"), first["path"])
        self.assertTrue(first["body"].get("stream"))
        self.assertEqual(first["body"].get("stream_options"), {"include_usage": True})
        self.assertEqual(first["headers"].get("authorization") or first["headers"].get("Authorization"),
                         "Bearer sk-fake-openai")
        # Hooks fired in the gateway process.
        hooks = [ev["hook"] for ev in read_events(self.events) if ev.get("command") == f"ls {listing}"]
        self.assertIn("trusted_policy", hooks)
        self.assertIn("before_tool_call", hooks)
        # The planted marker is findable in the stored transcript (compressed event decoded).
        with Timed("(a) grep transcripts"):
            hits = self.e.grep_state(marker)
        self.assertTrue(any("(transcript)" in h for h in hits), hits)
        events = self.e.transcript_events(session_id="smoke-a")
        self.assertTrue(events and any(ev["compressed"] for ev in events),
                        "expected at least one zstd-compressed transcript event")

    def test_b_openai_rm_rf_blocked_by_hook(self):
        victim = self.e.root / "victim-b"
        victim.mkdir()
        (victim / "precious.txt").write_text("keep me")
        cmd = f"rm -rf {victim}"
        self.llm.next({"tool": "exec", "args": {"command": cmd}})
        with Timed("(b) openai-completions turn: rm -rf blocked"):
            turn = self.e.agent_turn("Please clean up", session_id="smoke-b")
        self.assertTurnOk(turn)
        self.assertIn("probe: blocked", turn.seen, turn.describe())
        self.assertIn("Tool said: probe: blocked", turn.final_text)
        self.assertTrue((victim / "precious.txt").exists(), "victim was deleted despite the block")
        evs = [ev for ev in read_events(self.events) if ev.get("command") == cmd]
        self.assertIn("before_tool_call", [ev["hook"] for ev in evs])
        self.assertIn("probe: blocked", [ev.get("error") for ev in evs if ev["hook"] == "after_tool_call"])

    def test_c_anthropic_messages_allow_then_block(self):
        victim = self.e.root / "victim-c"
        victim.mkdir()
        rm = f"rm -rf {victim}"
        # One turn, two model calls: echo (allowed), then rm -rf (blocked), then the text answer.
        self.llm.next({"chain": [{"tool": "exec", "args": {"command": "echo hello-from-anthropic"}},
                                 {"tool": "exec", "args": {"command": rm}}]})
        with Timed("(c) anthropic-messages turn: echo + rm -rf (chain)"):
            turn = self.e.agent_turn("Please run both", session_id="smoke-c", extra_args=["--model", MODEL_ANTHROPIC])
        self.assertTurnOk(turn)
        self.assertTrue(turn.requests, "no model requests")
        self.assertTrue(all(r["api"] == "anthropic" and r["path"].endswith("/v1/messages") for r in turn.requests),
                        [r["path"] for r in turn.requests])
        self.assertEqual(turn.requests[0]["headers"].get("x-api-key"), "sk-ant-fake")
        self.assertEqual(len(turn.issued_calls), 2, turn.describe())
        texts = [turn.tool_results.get(k) for k in turn.tool_results]
        self.assertEqual(len(texts), 2, turn.describe())
        self.assertIn("hello-from-anthropic", turn.seen)
        self.assertIn("probe: blocked", turn.seen)
        self.assertTrue(victim.exists())
        self.assertEqual(turn.final_text.strip(), "Tool said: probe: blocked", turn.describe())


# ------------------------------------------------------------------------------------------------
# Embedded paths without a gateway: (d) agent --local, (e) agent exec
# ------------------------------------------------------------------------------------------------

class EmbeddedSmoke(TurnAsserts):
    @classmethod
    def setUpClass(cls):
        tools = tools_or_skip()
        cls.e = E2E(tools=tools)
        try:
            cls.events = cls.e.root / "probe-events.jsonl"
            cls.plugin_dir = write_probe_plugin(cls.e.root)
            cls.llm = cls.e.start_fake_llm()
            cls.e.write_config(plugins=[PluginSpec(dir=str(cls.plugin_dir), id=PROBE_ID,
                                                   config={"eventsLog": str(cls.events)})])
        except BaseException:
            cls.e.close(failed=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.e.close()

    def test_d_agent_local_hooks_fire(self):
        victim = self.e.root / "victim-d"
        victim.mkdir()
        rm = f"rm -rf {victim}"
        self.llm.next({"chain": [{"tool": "exec", "args": {"command": "echo hello-local"}},
                                 {"tool": "exec", "args": {"command": rm}}]})
        with Timed("(d) agent --local turn: echo + rm -rf"):
            turn = self.e.agent_local("Please run both", session_id="smoke-d")
        self.assertTurnOk(turn)
        self.assertIn("hello-local", turn.seen, turn.describe())
        self.assertIn("probe: blocked", turn.seen, turn.describe())
        self.assertTrue(victim.exists())
        argvs = {tuple(ev.get("argv") or ()) for ev in read_events(self.events) if ev["hook"] == "before_tool_call"}
        self.assertIn(("agent", "--local"), argvs)

    def test_e_agent_exec_blocked_by_trusted_policy(self):
        victim = self.e.root / "victim-e"
        victim.mkdir()
        rm = f"rm -rf {victim}"
        exec_cfg = self.e.root / "openclaw.exec.json"
        # Same world, but the trusted policy (the only tier that fires in `agent exec`) blocks rm -rf.
        self.e.write_config(path=exec_cfg, plugins=[PluginSpec(
            dir=str(self.plugin_dir), id=PROBE_ID,
            config={"eventsLog": str(self.events), "trustedBlockPattern": "rm -rf"})])
        self.llm.next({"tool": "exec", "args": {"command": rm}})
        with Timed("(e) agent exec: rm -rf blocked by trusted policy"):
            turn = self.e.agent_exec("Please clean up", config=exec_cfg)
        self.assertTurnOk(turn)
        self.assertTrue(turn.json and turn.json.get("ok"), turn.describe())
        self.assertIn("probe-trusted: blocked", turn.seen, turn.describe())
        self.assertTrue(victim.exists())
        evs = [ev for ev in read_events(self.events) if ev.get("command") == rm]
        hooks = [ev["hook"] for ev in evs]
        self.assertIn("trusted_policy", hooks)
        if "before_tool_call" not in hooks:
            sys.stderr.write("\n  note: before_tool_call did not fire in `agent exec` (known OpenClaw bypass, "
                             "CONTRACT §6); the trusted policy did.\n")


# ------------------------------------------------------------------------------------------------
# cdp_click.mjs against a local form
# ------------------------------------------------------------------------------------------------

FORM_PAGE = b"""<!doctype html><html><head><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Approve?</title></head><body>
<h1>Approval request</h1><p>Agent wants to run: <code>rm -rf /tmp/x</code></p>
<form method="post" action="/decide"><input type="hidden" name="decision" value="approve">
<button id="approve" type="submit" style="font-size:20px;padding:16px 40px">Approve</button></form>
<p style="margin-top:40px"><a href="/js">js variant</a></p>
</body></html>"""

JS_PAGE = b"""<!doctype html><html><head><meta name="viewport" content="width=device-width,initial-scale=1">
</head><body><p id="status">pending</p>
<button id="go" style="width:300px;height:80px" onclick="
  fetch('/decide', {method:'POST', body:'decision=approve'}).then(r => r.text()).then(t => {
    document.getElementById('status').textContent = 'approved via fetch';
  });">Approve</button></body></html>"""


class _FormHandler(BaseHTTPRequestHandler):
    posts: list[bytes] = []

    def log_message(self, *a):
        pass

    def _send(self, body: bytes, ctype="text/html; charset=utf-8"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/js":
            return self._send(JS_PAGE)
        if self.path == "/":
            return self._send(FORM_PAGE)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        _FormHandler.posts.append(body)
        self._send(b"<!doctype html><html><body><h1>approved</h1><p>decision recorded: "
                   + body.replace(b"<", b"&lt;") + b"</p></body></html>")


class CdpClickSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tools = tools_or_skip(require_chromium=True)
        _FormHandler.posts = []
        cls.srv = ThreadingHTTPServer(("127.0.0.1", 0), _FormHandler)
        cls.base = f"http://127.0.0.1:{cls.srv.server_address[1]}"
        threading.Thread(target=cls.srv.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()
        cls.srv.server_close()

    def run_click(self, *args, timeout=60):
        argv = [self.tools.node, str(HERE / "cdp_click.mjs"), *args]
        env = dict(os.environ, CHROMIUM=self.tools.chromium)
        return harness.run_cmd(argv, env=env, cwd=str(HERE), timeout=timeout)

    def test_tap_form_submit_shows_approved(self):
        n0 = len(_FormHandler.posts)
        with Timed("cdp_click: tap form button (navigation)"):
            r = self.run_click("--url", self.base + "/", "--selector", "#approve", "--expect-text", "approved",
                               "--timeout-ms", "30000")
        self.assertEqual(r.rc, 0, r.describe())
        self.assertIn("approved", r.stdout)
        self.assertIn("decision recorded: decision=approve", r.stdout)
        self.assertEqual(len(_FormHandler.posts) - n0, 1, "expected exactly one POST")
        self.assertIn("input: touch", r.stderr, r.describe())

    def test_tap_js_button_dom_change(self):
        with Timed("cdp_click: tap JS button (DOM change)"):
            r = self.run_click("--url", self.base + "/js", "--selector", "#go", "--expect-text", "approved via fetch",
                               "--timeout-ms", "30000")
        self.assertEqual(r.rc, 0, r.describe())
        self.assertIn("approved via fetch", r.stdout)

    def test_missing_selector_fails_nonzero(self):
        with Timed("cdp_click: missing selector -> timeout"):
            r = self.run_click("--url", self.base + "/", "--selector", "#nope", "--timeout-ms", "4000")
        self.assertNotEqual(r.rc, 0, r.describe())
        self.assertEqual(r.stdout, "")

    def test_wrong_expected_text_fails_nonzero(self):
        r = self.run_click("--url", self.base + "/", "--selector", "#approve", "--expect-text", "denied",
                           "--timeout-ms", "5000")
        self.assertNotEqual(r.rc, 0, r.describe())


# ------------------------------------------------------------------------------------------------
# fake_llm unit checks (no OpenClaw needed)
# ------------------------------------------------------------------------------------------------

class FakeLLMUnit(unittest.TestCase):
    def test_tool_result_detection_both_apis(self):
        import fake_llm
        oa = {"messages": [{"role": "user", "content": "x"},
                           {"role": "assistant", "tool_calls": [{"id": "call_1"}]},
                           {"role": "tool", "tool_call_id": "call1", "content": [{"type": "text", "text": "out"}]},
                           {"role": "user", "content": "internal context"}]}
        self.assertEqual([r["text"] for r in fake_llm.tool_results_after_last_assistant("openai", oa)], ["out"])
        an = {"messages": [{"role": "user", "content": "x"},
                           {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1"}]},
                           {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                         "content": [{"type": "text", "text": "res"}]}]}]}
        self.assertEqual([r["text"] for r in fake_llm.tool_results_after_last_assistant("anthropic", an)], ["res"])
        self.assertEqual(fake_llm.norm_id("call_ab-12"), "callab12")


class FakeLLMWire(unittest.TestCase):
    """The fake's SSE streams reassemble into the scripted calls (no OpenClaw needed)."""

    @classmethod
    def setUpClass(cls):
        import fake_llm
        cls.fl = fake_llm
        fake_llm.Handler.state = fake_llm.State(None, 0.0)
        cls.srv = fake_llm.Server(("127.0.0.1", 0), fake_llm.Handler)
        cls.base = f"http://127.0.0.1:{cls.srv.server_address[1]}"
        threading.Thread(target=cls.srv.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()
        cls.srv.server_close()

    def post(self, path, obj):
        req = urllib.request.Request(self.base + path, data=json.dumps(obj).encode(), method="POST",
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("content-type"), r.read().decode()

    def test_openai_stream_roundtrip(self):
        args = {"command": "echo 'hi there' && ls -la /tmp", "workdir": "/tmp"}
        self.post("/_control/next", {"tool": "exec", "args": args})
        st, ctype, text = self.post("/v1/chat/completions", {
            "model": "m", "stream": True, "stream_options": {"include_usage": True}, "tools": [{}],
            "messages": [{"role": "user", "content": "go"}]})
        self.assertEqual(st, 200)
        self.assertTrue(ctype.startswith("text/event-stream"))
        frames = [f[len("data: "):] for f in text.split("\n\n") if f.startswith("data: ")]
        self.assertEqual(frames[-1], "[DONE]")
        chunks = [json.loads(f) for f in frames[:-1]]
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertIn("prompt_tokens", chunks[-1]["usage"])
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "tool_calls")
        arg_text, name, cid = "", None, None
        for c in chunks[:-1]:
            for tc in c["choices"][0]["delta"].get("tool_calls", []):
                cid = tc.get("id") or cid
                name = tc.get("function", {}).get("name") or name
                arg_text += tc.get("function", {}).get("arguments", "")
        self.assertEqual((name, json.loads(arg_text)), ("exec", args))
        # Follow-up with the tool result (sanitized id) gets it quoted back.
        st, _, text = self.post("/v1/chat/completions", {"model": "m", "stream": False, "tools": [{}], "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [{"id": cid, "type": "function"}]},
            {"role": "tool", "tool_call_id": self.fl.norm_id(cid), "content": "hi there"}]})
        self.assertEqual(json.loads(text)["choices"][0]["message"]["content"], "Tool said: hi there")

    def test_anthropic_stream_roundtrip_chain(self):
        a1, a2 = {"command": "echo one"}, {"path": "/etc/hostname"}
        self.post("/_control/next", {"chain": [{"tool": "exec", "args": a1}, {"tool": "read", "args": a2}],
                                     "usage": {"input": 100, "output": 7, "cache_read": 50, "cache_write": 25}})

        def call(messages):
            st, ctype, text = self.post("/v1/messages", {"model": "claude", "stream": True, "tools": [{}],
                                                         "messages": messages})
            self.assertEqual(st, 200)
            events = []
            for frame in text.strip().split("\n\n"):
                lines = dict(line.split(": ", 1) for line in frame.split("\n"))
                events.append((lines["event"], json.loads(lines["data"])))
            return events

        ev = call([{"role": "user", "content": "go"}])
        names = [n for n, _ in ev]
        self.assertEqual(names[0], "message_start")
        self.assertEqual(names[-2:], ["message_delta", "message_stop"])
        u = ev[0][1]["message"]["usage"]
        self.assertEqual((u["input_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"]),
                         (100, 50, 25))
        self.assertEqual(ev[-2][1]["delta"]["stop_reason"], "tool_use")
        self.assertEqual(ev[-2][1]["usage"]["output_tokens"], 7)
        start = next(d for n, d in ev if n == "content_block_start")
        self.assertEqual(start["content_block"]["type"], "tool_use")
        self.assertEqual(start["content_block"]["input"], {})
        partial = "".join(d["delta"]["partial_json"] for n, d in ev
                          if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        self.assertEqual(json.loads(partial), a1)
        tid = start["content_block"]["id"]
        hist = [{"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": tid, "name": "exec", "input": a1}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid, "content": "one"}]}]
        ev2 = call(hist)
        start2 = next(d for n, d in ev2 if n == "content_block_start")
        self.assertEqual(start2["content_block"]["name"], "read")          # second chain step
        tid2 = start2["content_block"]["id"]
        hist += [{"role": "assistant", "content": [{"type": "tool_use", "id": tid2, "name": "read", "input": a2}]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid2,
                                               "content": [{"type": "text", "text": "myhost"}]}]}]
        ev3 = call(hist)
        text3 = "".join(d["delta"]["text"] for n, d in ev3 if n == "content_block_delta")
        self.assertEqual(text3, "Tool said: myhost")
        self.assertEqual(ev3[-2][1]["delta"]["stop_reason"], "end_turn")

    def test_side_calls_do_not_consume_script(self):
        self.post("/_control/script", [{"tool": "exec", "args": {"command": "x"}}])
        _, _, text = self.post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "t"}]})
        self.assertEqual(json.loads(text)["choices"][0]["message"]["content"], "nothing to do")
        with urllib.request.urlopen(self.base + "/_control/state", timeout=5) as r:
            self.assertEqual(len(json.loads(r.read())["queue"]), 1)
        self.post("/_control/reset", {})


def tearDownModule():
    print_timings()


if __name__ == "__main__":
    unittest.main()
