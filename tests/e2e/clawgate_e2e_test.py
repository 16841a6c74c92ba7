#!/usr/bin/env python3
"""Clawgate gates real OpenClaw tool calls: end-to-end test (stdlib unittest, uses harness.py).

    bash tests/e2e/setup.sh                          # once: Node 24, OpenClaw 2026.9.6, Chromium
    cargo build --release --locked                   # or CLAWGATE_BIN=/path/to/clawgate
    python3 tests/e2e/clawgate_e2e_test.py -v        # about 3-4 minutes

One world for the whole class: a fake LLM, one `clawgate serve` (tier 2, 45 s approval wait, admin
page on a free loopback port, vault secret `demo` scoped to tool exec / host 127.0.0.1) and one
OpenClaw gateway whose config gets the real plugin from `clawgate openclaw configure`. Every case
asserts what the model was shown (the tool result in the next LLM request) and the side effects on
disk. Cases run in name order; test_10 SIGKILLs the daemon, test_11 restarts it and checks the audit.

Skips when the prerequisites are missing, unless CLAWGATE_E2E_REQUIRE=1 (run.sh sets it): then it fails.
Env: CLAWGATE_BIN (default target/release/clawgate), plus harness.py's (NODE24, OPENCLAW_MJS, CHROMIUM,
CLAWGATE_E2E_KEEP=1, CLAWGATE_E2E_KEEP_ON_FAIL=1).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import string
import sys
import threading
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import fake_llm  # noqa: E402
import harness  # noqa: E402
from harness import (  # noqa: E402
    ClawgateCase, print_timings, MODEL_ANTHROPIC, HarnessError, Timed, require, unix_http_get, wait_until,
)

CLAWGATE = os.environ.get("CLAWGATE_BIN") or str(REPO / "target" / "release" / "clawgate")
PLUGIN_DIR = REPO / "wrapper" / "openclaw-plugin"
WAIT_SECONDS = 45



class ClawgateE2E(ClawgateCase):
    CLAWGATE = CLAWGATE
    BINARIES = ((CLAWGATE, "cargo build --release (or set CLAWGATE_BIN)"),)

    # ------------------------------------------------------------------------------------------
    # setup / teardown
    # ------------------------------------------------------------------------------------------

    SETUP = "setup: fake LLM + clawgate serve + configure + gateway"

    @classmethod
    def _setup_world(cls):
        cls.calls: dict[str, list[dict]] = {}       # case -> tool calls the fake issued
        cls.approval_ids: dict[str, str] = {}
        e = cls.e
        # HOME of every OpenClaw process (and of the shell `exec` runs) is the world's temp HOME:
        # `rm -rf ~/` can only ever hit that.
        require(Path(e.env()["HOME"]) == e.home and str(e.home).startswith(str(e.root)), e.env()["HOME"])
        cls.llm = e.start_fake_llm()

        # --- clawgate serve ---
        cls.cg_dir = e.root / "clawgate"
        cls.cg_dir.mkdir()
        cls.cg_state = cls.cg_dir / "state"                 # created 0700 by the daemon
        cls.hook_sock = cls.cg_state / "hook.sock"
        cls.admin_port = harness.free_port()
        cls.egress_port = harness.free_port()
        cls.cg_config = cls.cg_dir / "clawgate.toml"
        # Every model request goes through the egress proxy to the fake LLM.
        cls.cg_config.write_text(
            f'state_dir = "{cls.cg_state}"\n'
            f'[admin]\nlisten = "127.0.0.1:{cls.admin_port}"\n'
            f'[egress]\nlisten = "127.0.0.1:{cls.egress_port}"\nconnect_listen = "127.0.0.1:{harness.free_port()}"\n'
            f'[egress.upstreams]\nopenai = "{cls.llm.base}"\nanthropic = "{cls.llm.base}"\n'
            f'[approvals]\nwait_seconds = {WAIT_SECONDS}\n'
            f'[policy]\ntier = 2\n')
        cls.cg_logs: list[Path] = []
        cls._start_daemon("clawgate")
        health = json.loads(unix_http_get(str(cls.hook_sock), "/v1/health")[1])
        require(health.get("status") == "ok" and health.get("vault") is True, health)
        mode = cls.cg_state.stat().st_mode & 0o777
        require(mode & 0o077 == 0, f"state dir mode {oct(mode)}")

        # --- the secret: random, planted while the daemon runs (it picks vault changes up itself) ---
        cls.secret = "cg-e2e-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))
        r = cls.cg("vault", "put", "demo", "--tool", "exec", "--host", "127.0.0.1", stdin=cls.secret + "\n",
                   env={"CLAWGATE_STATE_DIR": str(cls.cg_state)})
        require(r.rc == 0, r.describe())
        # The real provider keys, only ever in the vault; OpenClaw holds the agent's local token.
        cls.provider_keys = {}
        for route in ("openai", "anthropic"):
            key = f"sk-e2e-{route}-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))
            r = cls.cg("vault", "put", f"provider.{route}", "--tool", "clawgate:egress", "--host", "127.0.0.1",
                       stdin=key + "\n", env={"CLAWGATE_STATE_DIR": str(cls.cg_state)})
            require(r.rc == 0, r.describe())
            cls.provider_keys[route] = key

        # --- OpenClaw config: the harness's plain config, then `clawgate openclaw configure` on it ---
        # `direct` bypasses the proxy on purpose: it stands for "the hook server is down while the
        # model is still reachable" in case 10 (in production the egress lock blocks such traffic).
        direct = {"direct": {"baseUrl": cls.llm.base + "/v1", "apiKey": "sk-direct", "api": "openai-completions",
                             "models": [{"id": harness.OPENAI_MODEL_ID, "name": "Direct", "input": ["text"],
                                         "contextWindow": 128000, "maxTokens": 4096, "reasoning": False,
                                         "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}}]}}
        e.write_config(plugins=[], extra={"models": {"providers": direct}})
        r = cls.cg("openclaw", "configure", "--openclaw-config", str(e.config_path),
                   "--plugin-dir", str(PLUGIN_DIR), "--route", f"{harness.OPENAI_PROVIDER_ID}=openai",
                   "--config", str(cls.cg_config))
        require(r.rc == 0, r.describe())
        require("direct" in r.stdout and "does not go through" in r.stdout, r.describe())
        cfg = json.loads(e.config_path.read_text())
        plugins = cfg.get("plugins") or {}
        entry = (plugins.get("entries") or {}).get("clawgate") or {}
        require(plugins.get("enabled") is True, plugins)
        require(str(PLUGIN_DIR) in ((plugins.get("load") or {}).get("paths") or []), plugins)
        require(entry.get("enabled") is True, entry)
        require(entry.get("config", {}).get("socketPath") == str(cls.hook_sock), entry)
        require(entry.get("config", {}).get("decisionDeadlineMs") == (WAIT_SECONDS + 5) * 1000, entry)
        require(entry.get("hooks", {}).get("timeouts", {}).get("before_tool_call") == (WAIT_SECONDS + 10) * 1000, entry)
        require(entry.get("hooks", {}).get("allowConversationAccess") is True, entry)
        # The rest of the harness config survived.
        require(cfg["gateway"]["port"] == e.gateway_port and "fake" in cfg["models"]["providers"], cfg)
        # Model providers point at the proxy and carry the agent's local token, not a real key.
        proxy = f"http://127.0.0.1:{cls.egress_port}"
        providers = cfg["models"]["providers"]
        require(providers[harness.OPENAI_PROVIDER_ID]["baseUrl"] == proxy + "/openai/v1", providers)
        require(providers["anthropic"]["baseUrl"] == proxy + "/anthropic", providers)
        cls.agent_token = providers["anthropic"]["apiKey"]
        require(cls.agent_token.startswith("cgt_")
                and providers[harness.OPENAI_PROVIDER_ID]["apiKey"] == cls.agent_token, providers)
        # Idempotent: a second run changes nothing.
        before = e.config_path.read_text()
        r = cls.cg("openclaw", "configure", "--openclaw-config", str(e.config_path),
                   "--plugin-dir", str(PLUGIN_DIR), "--config", str(cls.cg_config))
        require(r.rc == 0 and e.config_path.read_text() == before, r.describe())

        e.start_gateway(timeout=180)

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------

    def remember(self, case: str, turn):
        self.calls.setdefault(case, []).extend(turn.issued_calls)

    def audit_raw(self) -> str:
        r = self.cg("audit", "show", "--config", str(self.cg_config), "--json", "--limit", "1000")
        return r.stdout + r.stderr

    def approvals(self) -> list[dict]:
        r = self.cg("approvals", "list", "--config", str(self.cg_config), "--json")
        if r.rc != 0:
            raise HarnessError(f"approvals list failed\n{r.describe()}")
        return (json.loads(r.stdout) or {}).get("approvals") or []

    def wait_pending(self, needle: str, thread: threading.Thread, timeout: float = 40.0) -> dict:
        def find():
            for a in self.approvals():
                if a.get("status") == "pending" and needle in json.dumps(a):
                    return a
            if not thread.is_alive():
                raise HarnessError(f"the turn ended before an approval for {needle!r} appeared")
            return None
        return wait_until(find, timeout, f"pending approval for {needle!r}", interval=0.3,
                          on_fail=self.report)

    def canary(self, name: str) -> Path:
        p = self.e.home / name
        p.write_text("canary: must survive\n")
        return p

    # ------------------------------------------------------------------------------------------
    # 1-2: gateway path, openai-completions streamed
    # ------------------------------------------------------------------------------------------

    def test_01_gateway_openai_exec_ls_runs(self):
        self.canary("canary-01.txt")
        (self.e.workspace / "workspace-marker-01.txt").write_text("x")
        self.llm.next({"chain": [{"tool": "exec", "args": {"command": "ls"}},
                                 {"tool": "exec", "args": {"command": "ls -a ~"}}]})
        with Timed("01 gateway openai: exec ls allowed"):
            turn = self.e.agent_turn("List the files", session_id="cg-01")
        self.remember("01", turn)
        self.assertTurnOk(turn)
        self.check(len(turn.issued_calls) == 2, "expected two tool calls", turn)
        first = turn.requests[0]
        self.check(first["api"] == "openai" and first["body"].get("stream") is True, "not streamed openai", turn)
        self.check("workspace-marker-01.txt" in turn.seen, "model did not see the `ls` output", turn)
        # `~` in the agent's shell is the world's temp HOME (so later `rm -rf ~/` can only hit that).
        self.check("canary-01.txt" in turn.seen, "model did not see the temp HOME listing", turn)
        self.check("Clawgate" not in turn.seen, "an allowed call carried a Clawgate message", turn)

    def test_02_gateway_rm_rf_home_blocked_critical(self):
        canary = self.canary("canary-02.txt")
        self.llm.next({"tool": "exec", "args": {"command": "rm -rf ~/"}})
        with Timed("02 gateway openai: rm -rf ~/ blocked (critical)"):
            turn = self.e.agent_turn("Clean up my home", session_id="cg-02")
        self.remember("02", turn)
        self.assertTurnOk(turn)
        self.check(len(turn.tool_results) == 1, "expected one tool result", turn)
        self.check("critical" in turn.seen and "Clawgate" in turn.seen,
                   "model did not see Clawgate's critical reason", turn)
        self.check(canary.exists(), "canary deleted: rm -rf ~/ ran", turn)
        self.check("Tool said: " in turn.final_text and "critical" in turn.final_text, "final text", turn)

    # ------------------------------------------------------------------------------------------
    # 3-4: approvals (held call approved on the phone page; denied via the CLI)
    # ------------------------------------------------------------------------------------------

    def test_03_ask_approved_on_approval_page(self):
        profile = self.e.home / ".profile"
        profile.unlink(missing_ok=True)
        self.llm.next({"tool": "exec", "args": {"command": "echo approved >> ~/.profile"}})
        with Timed("03 ask -> approved in headless Chromium (whole turn)"):
            t0 = time.monotonic()
            th, box = self.turn_in_thread(lambda: self.e.agent_turn("Update my profile", session_id="cg-03"))
            ap = self.wait_pending(".profile", th)
            held_for = time.monotonic() - t0
            self.check(th.is_alive(), "turn not held while the approval is pending")
            self.check(not profile.exists(), "~/.profile written before approval")
            self.approval_ids["03"] = ap["id"]
            r = self.cg("approvals", "url", "--config", str(self.cg_config))
            self.check(r.rc == 0, f"approvals url failed\n{r.describe()}")
            link = r.stdout.strip().splitlines()[-1].strip()
            self.check(link.startswith(f"http://127.0.0.1:{self.admin_port}/approvals?token="), f"link {link!r}")
            expect = f"Done: {ap['id'].replace('-', ' ')} approved"
            with Timed("03   cdp_click tap approve"):
                click = harness.run_cmd(
                    [self.e.tools.node, str(HERE / "cdp_click.mjs"), "--url", link,
                     "--selector", f'button[data-action="approve"][data-id="{ap["id"]}"]',
                     "--expect-text", expect, "--timeout-ms", "30000"],
                    env=dict(os.environ, CHROMIUM=self.e.tools.chromium), cwd=str(HERE), timeout=60)
            self.check(click.rc == 0, f"cdp_click failed\n{click.describe()}")
            self.check(expect in click.stdout, f"page did not confirm\n{click.describe()}")
            turn = self.join_turn(th, box, 90)
        self.remember("03", turn)
        self.assertTurnOk(turn)
        self.check(held_for < WAIT_SECONDS, f"approval appeared only after {held_for:.1f}s", turn)
        self.check(profile.exists() and "approved" in profile.read_text(), "~/.profile lacks 'approved'", turn)
        self.check(len(turn.tool_results) == 1, "expected one tool result", turn)
        self.check("Clawgate" not in turn.seen and "blocked" not in turn.seen.lower(),
                   "model saw a block instead of a normal result", turn)
        st = [a for a in self.approvals() if a["id"] == ap["id"]]
        self.check(not st or st[0].get("status") != "pending", f"approval still pending: {st}")

    def test_04_ask_denied_never_runs_and_sticks(self):
        bashrc = self.e.home / ".bashrc"
        bashrc.write_text("# bashrc\n")
        cmd = "echo denied >> ~/.bashrc"
        self.llm.next({"tool": "exec", "args": {"command": cmd}})
        with Timed("04 ask -> denied via CLI (whole turn)"):
            th, box = self.turn_in_thread(lambda: self.e.agent_turn("Update my bashrc", session_id="cg-04"))
            ap = self.wait_pending(".bashrc", th)
            self.approval_ids["04"] = ap["id"]
            self.check(th.is_alive(), "turn not held while the approval is pending")
            r = self.cg("approvals", "deny", ap["id"], "--config", str(self.cg_config))
            self.check(r.rc == 0, f"approvals deny failed\n{r.describe()}")
            turn = self.join_turn(th, box, 90)
        self.remember("04", turn)
        self.assertTurnOk(turn)
        self.check("owner denied" in turn.seen, "model did not see 'owner denied'", turn)
        self.check("denied" not in bashrc.read_text(), "~/.bashrc was written despite the denial", turn)
        # Retrying the same action in a new turn is blocked at once (no new approval, no wait).
        n_pending = len([a for a in self.approvals() if a.get("status") == "pending"])
        self.llm.next({"tool": "exec", "args": {"command": cmd}})
        with Timed("04 retry of the denied action (new turn)"):
            t0 = time.monotonic()
            retry = self.e.agent_turn("Try again", session_id="cg-04b")
            took = time.monotonic() - t0
        self.remember("04", retry)
        self.assertTurnOk(retry)
        self.check("owner denied" in retry.seen, "retry not blocked with 'owner denied'", retry)
        self.check(took < WAIT_SECONDS - 10, f"retry was held ({took:.1f}s)", retry)
        self.check(len([a for a in self.approvals() if a.get("status") == "pending"]) == n_pending,
                   "retry opened a new approval", retry)
        self.check("denied" not in bashrc.read_text(), "~/.bashrc written on retry", retry)

    # ------------------------------------------------------------------------------------------
    # 5-6: SECRET_REF
    # ------------------------------------------------------------------------------------------

    def test_05_secret_ref_in_scope_injected_and_never_stored(self):
        s = self.secret
        n0 = len(self.llm.echoes())
        cmd = (f"curl -fsS -H 'Authorization: Bearer SECRET_REF(demo)' "
               f"http://127.0.0.1:{self.llm.port}/echo/x")
        self.llm.next({"tool": "exec", "args": {"command": cmd}})
        with Timed("05 SECRET_REF in scope: curl 127.0.0.1 (turn)"):
            turn = self.e.agent_turn("Call the API", session_id="cg-05")
        self.remember("05", turn)
        self.assertTurnOk(turn)
        echoes = [x for x in self.llm.echoes() if x["n"] > n0 and x["path"] == "/echo/x"]
        self.check(len(echoes) == 1, f"echo endpoint got {len(echoes)} requests for /echo/x", turn)
        auth = {k.lower(): v for k, v in echoes[0]["headers"].items()}.get("authorization")
        self.check(auth == f"Bearer {s}", "echo endpoint did not receive the real secret value "
                   f"(got {'SECRET_REF' if auth and 'SECRET_REF' in auth else 'something else'})", turn)
        # The tool result printed the value back; the model got it redacted.
        self.check("echo /echo/x received SECRET_REF(demo)" in turn.seen,
                   "model did not see the redacted tool result", turn)
        self.check(not self.llm.requests_containing(s), "a model request carried the secret value", turn)
        # Positive control for the search below: the stored transcript holds the redacted result.
        self.check(any("(transcript)" in h for h in self.e.grep_state("echo /echo/x received SECRET_REF(demo)")),
                   "redacted tool result not found in the transcripts (is the transcript search blind?)", turn)

        with Timed("05   grep everything for the value"):
            leaks = self.find_secret(s)
        self.check(not leaks, "secret value found in: " + json.dumps(leaks, indent=1), turn)
        # The daemon's audit shows the resolution (name, never value).
        recs = self.audit()
        res = [r for r in recs if r["kind"] == "secret.resolved"
               and any(fake_llm.norm_id(r["body"].get("ctx", {}).get("tool_call_id")) == fake_llm.norm_id(c["id"])
                       for c in turn.issued_calls)]
        self.check(res and res[0]["body"].get("secret") == "demo", f"no secret.resolved record: {recs[-5:]}")
        # What ran referenced the env variable, not the value.
        ids = {fake_llm.norm_id(c["id"]) for c in turn.issued_calls}
        ran = [r["body"] for r in recs if r["kind"] == "executed"
               and fake_llm.norm_id(r["body"].get("ctx", {}).get("tool_call_id")) in ids]
        self.check(ran and "CLAWGATE_SECRET_DEMO" in ran[0].get("summary", "") and ran[0].get("status") == "completed",
                   f"executed record does not show the env-var rewrite: {ran}")

    def find_secret(self, s: str) -> dict:
        """Every place the value is stored: transcripts (decoded), state files, every log, the audit,
        the fake LLM's request log and memory, and finally a byte sweep of the whole temp root."""
        e = self.e
        leaks: dict[str, list[str]] = {}

        def add(where, hits):
            if hits:
                leaks[where] = list(hits)

        extra_states = [d for d in (e.root / "local-state", e.root / "exec-state") if d.exists()]
        add("openclaw transcripts + state (grep_state)", e.grep_state(s, roots=extra_states))
        add("gateway log", [e.gateway.log_path] if s in e.gateway_log() else [])
        for log in sorted(e.logs.glob("*")):
            if log.is_file() and s.encode() in log.read_bytes():
                leaks.setdefault("logs dir", []).append(str(log))
        add("clawgate log", [str(p) for p in self.cg_logs if s in p.read_text(errors="replace")])
        add("clawgate audit (audit show)", ["audit"] if s in self.audit_raw() else [])
        add("fake LLM request log (file)",
            [e.fake.log_path] if s in Path(e.fake.log_path).read_text(errors="replace") else [])
        add("fake LLM requests (memory)", [str(r["seq"]) for r in self.llm.requests()
                                           if s in json.dumps(r, ensure_ascii=False)])
        sweep = []
        for p in sorted(e.root.rglob("*")):
            try:
                if p.is_file() and not p.is_symlink() and s.encode() in p.read_bytes():
                    sweep.append(str(p))
            except OSError:
                continue
        add("byte sweep of the temp root", sweep)
        return leaks

    def test_06_secret_ref_out_of_scope_refused(self):
        n0 = len(self.llm.echoes())
        cmd = (f"curl -fsS -H 'Authorization: Bearer SECRET_REF(demo)' "
               f"http://localhost:{self.llm.port}/echo/y")
        self.llm.next({"tool": "exec", "args": {"command": cmd}})
        with Timed("06 SECRET_REF out of scope: curl localhost (turn)"):
            turn = self.e.agent_turn("Call the API again", session_id="cg-06")
        self.remember("06", turn)
        self.assertTurnOk(turn)
        self.check("may not be used here" in turn.seen and "exfiltration" in turn.seen,
                   "model did not see the scope reason", turn)
        got = [x for x in self.llm.echoes() if x["n"] > n0]
        self.check(not got, f"echo endpoint was called: {[x['path'] for x in got]}", turn)
        ids = {fake_llm.norm_id(c["id"]) for c in turn.issued_calls}
        refused = [r for r in self.audit() if r["kind"] == "secret.refused"
                   and fake_llm.norm_id(r["body"].get("ctx", {}).get("tool_call_id")) in ids]
        self.check(refused, "no secret.refused audit record for this call", turn)
        self.check("localhost" in json.dumps(refused[0]["body"]), f"refusal record: {refused[0]}")
        self.check(not self.find_secret(self.secret), "secret value stored somewhere after case 6")

    # ------------------------------------------------------------------------------------------
    # 7: anthropic-messages provider
    # ------------------------------------------------------------------------------------------

    def test_07_gateway_anthropic_allow_and_block(self):
        canary = self.canary("canary-07.txt")
        (self.e.workspace / "workspace-marker-07.txt").write_text("x")
        self.llm.next({"chain": [{"tool": "exec", "args": {"command": "ls"}},
                                 {"tool": "exec", "args": {"command": "rm -rf ~/"}}]})
        with Timed("07 gateway anthropic: ls allowed + rm -rf ~/ blocked"):
            turn = self.e.agent_turn("List then clean", session_id="cg-07", extra_args=["--model", MODEL_ANTHROPIC])
        self.remember("07", turn)
        self.assertTurnOk(turn)
        self.check(turn.requests and all(r["api"] == "anthropic" and r["body"].get("stream") for r in turn.requests),
                   "not streamed anthropic-messages", turn)
        self.check(len(turn.tool_results) == 2, "expected two tool results", turn)
        self.check("workspace-marker-07.txt" in turn.seen, "model did not see the ls output", turn)
        self.check("critical" in turn.seen and "Clawgate" in turn.seen, "model did not see the block", turn)
        self.check(canary.exists(), "canary deleted", turn)

    # ------------------------------------------------------------------------------------------
    # 8-9: embedded paths
    # ------------------------------------------------------------------------------------------

    def test_08_agent_local_allow_and_block(self):
        canary = self.canary("canary-08.txt")
        (self.e.workspace / "workspace-marker-08.txt").write_text("x")
        self.llm.next({"chain": [{"tool": "exec", "args": {"command": "ls"}},
                                 {"tool": "exec", "args": {"command": "rm -rf ~/"}}]})
        # `agent --local` refuses to run against a state dir a gateway is running for: own state dir,
        # same (configured) openclaw.json, same HOME.
        local_state = self.e.root / "local-state"
        local_state.mkdir(exist_ok=True)
        with Timed("08 agent --local: ls allowed + rm -rf ~/ blocked"):
            turn = self.e.agent_local("List then clean", session_id="cg-08",
                                      env={"OPENCLAW_STATE_DIR": str(local_state)})
        self.remember("08", turn)
        self.assertTurnOk(turn)
        self.check(len(turn.tool_results) == 2, "expected two tool results", turn)
        self.check("workspace-marker-08.txt" in turn.seen, "model did not see the ls output", turn)
        self.check("critical" in turn.seen and "Clawgate" in turn.seen, "model did not see the block", turn)
        self.check(canary.exists(), "canary deleted", turn)

    def test_09_agent_exec_trusted_policy_blocks(self):
        canary = self.canary("canary-09.txt")
        # `agent exec` keeps the trusted policy only when the activation-source config explicitly
        # enables the plugin: run it with a state dir holding the configured openclaw.json.
        exec_state = self.e.root / "exec-state"
        exec_state.mkdir(exist_ok=True)
        (exec_state / "openclaw.json").write_text(self.e.config_path.read_text())
        self.llm.next({"tool": "exec", "args": {"command": "rm -rf ~/"}})
        with Timed("09 agent exec: rm -rf ~/ blocked by trusted policy"):
            turn = self.e.agent_exec("Clean up", config=self.e.config_path, state_dir=str(exec_state))
        self.remember("09", turn)
        self.check(canary.exists(), "canary deleted: agent exec ran rm -rf ~/", turn)
        self.check(len(turn.issued_calls) == 1, "the fake issued no call", turn)
        self.check("critical" in turn.seen and "Clawgate" in turn.seen,
                   "model did not see Clawgate's block", turn)
        out = turn.run.stdout
        self.check("critical" in out, "JSON output does not show the block", turn)
        self.assertTurnOk(turn)
        ids = {fake_llm.norm_id(c["id"]) for c in turn.issued_calls}
        recs = [r for r in self.audit() if r["kind"] == "decision"
                and fake_llm.norm_id(r["body"].get("ctx", {}).get("tool_call_id")) in ids]
        self.check(recs and all(r["body"].get("outcome") == "denied" for r in recs),
                   f"no denied decision audited for the agent exec call: {recs}", turn)
        self.check(any(r["body"].get("hook") == "trusted_policy" for r in recs),
                   f"not decided through the trusted policy: {recs}", turn)

    # ------------------------------------------------------------------------------------------
    # 10-11: daemon killed -> fail closed; restart -> audit intact
    # ------------------------------------------------------------------------------------------

    def test_10_daemon_sigkilled_fails_closed(self):
        target = self.e.home / "after-kill"
        target.unlink(missing_ok=True)
        d = self.daemon
        os.kill(d.pid, signal.SIGKILL)
        d.popen.wait(timeout=10)
        try:
            # The proxy died with the daemon: no model request leaves at all.
            n0 = len(self.llm.requests())
            with Timed("10 daemon SIGKILLed: the model is unreachable through the dead proxy"):
                turn = self.e.agent_turn("Say hi", session_id="cg-10a", timeout_s=15)
            self.check(len(self.llm.requests()) == n0, "a model request reached the LLM with the proxy dead", turn)
            # A model reached around the proxy (`direct`): the hook fails closed.
            self.llm.next({"tool": "exec", "args": {"command": "touch ~/after-kill"}})
            with Timed("10 daemon SIGKILLed: touch ~/after-kill blocked"):
                turn = self.e.agent_turn("Touch the file", session_id="cg-10",
                                         extra_args=["--model", f"direct/{harness.OPENAI_MODEL_ID}"])
            self.remember("10", turn)
            self.assertTurnOk(turn)
            self.check(len(turn.tool_results) == 1, "expected one tool result", turn)
            seen = turn.seen
            self.check("policy evaluation failed" in seen or "hook failed" in seen,
                       "model did not see OpenClaw's fail-closed text", turn)
            time.sleep(0.5)
            self.check(not target.exists(), "~/after-kill created with the daemon dead", turn)
        finally:
            with Timed("10 restart clawgate serve"):
                self.e.stop(d)
                self._start_daemon("clawgate-restarted")

    def test_11_audit_after_restart(self):
        if not self.daemon.alive():
            self._start_daemon("clawgate-restarted-2")
        with Timed("11 audit verify + records"):
            r = self.cg("audit", "verify", "--config", str(self.cg_config))
            self.check(r.rc == 0, f"audit verify failed\n{r.describe()}")
            recs = self.audit()
        kinds = [r["kind"] for r in recs]
        self.check(kinds.count("daemon.started") >= 2, f"restart not audited: {kinds}")
        decisions = [r for r in recs if r["kind"] == "decision"]
        by_id: dict[str, list[dict]] = {}
        for r in decisions:
            by_id.setdefault(fake_llm.norm_id(r["body"].get("ctx", {}).get("tool_call_id")), []).append(r)
        missing = []
        for case in ("01", "02", "03", "04", "05", "06", "07", "08", "09"):
            for c in self.calls.get(case, []):
                if not by_id.get(fake_llm.norm_id(c["id"])):
                    missing.append((case, c["id"], c["args"].get("command")))
        self.check(not missing, f"tool calls without an audit decision: {missing}\nkinds: {kinds}")
        for case in ("02",):
            for c in self.calls.get(case, []):
                outs = {r["body"].get("outcome") for r in by_id[fake_llm.norm_id(c["id"])]}
                self.check("denied" in outs, f"case {case}: outcomes {outs}")
        for c in self.calls.get("03", []):
            outs = {r["body"].get("outcome") for r in by_id[fake_llm.norm_id(c["id"])]}
            self.check("approved" in outs, f"case 03 outcomes {outs}")
            ap = self.approval_ids.get("03")
            trail = [r["kind"] for r in recs if r["body"].get("approval") == ap
                     and fake_llm.norm_id(r["body"].get("tool_call_id")) == fake_llm.norm_id(c["id"])]
            for kind in ("approval.created", "approval.approved", "grant.used"):
                self.check(kind in trail, f"case 03: no {kind} record for {ap} / {c['id']}: {trail}")
        for c in self.calls.get("04", [])[:1]:
            outs = {r["body"].get("outcome") for r in by_id[fake_llm.norm_id(c["id"])]}
            self.check("owner_denied" in outs, f"case 04 outcomes {outs}")
        # Records carry OpenClaw's context: agent, session key, run id and trace id.
        gw = [r for case in ("01", "02", "05") for c in self.calls.get(case, [])
              for r in by_id.get(fake_llm.norm_id(c["id"]), [])]
        ctxs = [r["body"].get("ctx") or {} for r in gw]
        self.check(all(c.get("agent") == "main" and c.get("session_key") and c.get("run_id") for c in ctxs),
                   f"ctx fields missing: {ctxs}")
        self.check(all((r["body"].get("ctx") or {}).get("trace_id") for r in decisions),
                   f"decision records without OpenClaw's trace id: {[r['seq'] for r in decisions]}")
        # One trace per turn: the turn's decisions and its llm_output share OpenClaw's trace id.
        for case in ("01", "07"):
            traces = {(r["body"].get("ctx") or {}).get("trace_id") for c in self.calls.get(case, [])
                      for r in by_id.get(fake_llm.norm_id(c["id"]), [])}
            self.check(len(traces) == 1, f"case {case}: decisions of one turn carry trace ids {traces}")
            usage = [r for r in recs if r["kind"] == "llm_output"
                     and (r["body"].get("ctx") or {}).get("trace_id") in traces]
            self.check(usage, f"case {case}: no llm_output record with the turn's trace id {traces}")
        self.check(not self.find_secret(self.secret), "secret value stored somewhere at the end")

    # ------------------------------------------------------------------------------------------
    # 12: the egress proxy (runs last: it puts the secret into a file and a user message)
    # ------------------------------------------------------------------------------------------

    def usage_requests(self) -> dict[tuple[str, str, str], int]:
        r = self.cg("usage", "show", "--json", "--config", str(self.cg_config))
        self.check(r.rc == 0, f"usage show failed\n{r.describe()}")
        # One bucket per hour: summed, or a turn that crosses an hour's end reads as a drop.
        totals: dict[tuple[str, str, str], int] = {}
        for b in json.loads(r.stdout):
            key = (b["agent"], b["provider"], b["model"])
            totals[key] = totals.get(key, 0) + b["requests"]
        return totals

    def test_12_llm_traffic_goes_through_the_proxy_redacted_keyed_metered(self):
        if not self.daemon.alive():
            self._start_daemon("clawgate-restarted-3")
        s = self.secret
        alnum = string.ascii_letters + string.digits
        ghp_file = "ghp_" + "".join(secrets.choice(alnum) for _ in range(36))
        ghp_typed = "ghp_" + "".join(secrets.choice(alnum) for _ in range(36))
        notes = self.e.workspace / "notes-12.txt"
        notes.write_text(f"db password: {s}\nGITHUB_TOKEN={ghp_file}\n")
        usage_before = self.usage_requests()
        seq0 = self.llm.last_seq()
        self.llm.next({"tool": "read", "args": {"path": str(notes)}})
        with Timed("12 proxy: file with secrets read, secrets typed by the user"):
            turn = self.e.agent_turn(f"Read my notes. My password is {s} and my token {ghp_typed}.",
                                     session_id="cg-12")
        self.remember("12", turn)
        self.assertTurnOk(turn)
        self.check(len(turn.tool_results) == 1, "expected one tool result (the read)", turn)
        reqs = self.llm.model_requests(seq0)
        self.check(len(reqs) >= 2, f"expected the prompt and the tool-result request, got {len(reqs)}", turn)
        wire = json.dumps(reqs, ensure_ascii=False)
        for name, value in (("vault secret", s), ("github token in the file", ghp_file),
                            ("github token typed", ghp_typed), ("agent token", self.agent_token)):
            self.check(value not in wire, f"the {name} reached the model provider", turn)
        # What the user typed reached the provider redacted by the proxy (the tool result was
        # already redacted by the hook server). Found by its text, not by position: a retry the
        # gateway still owed an earlier case (test_10 killed the daemon) can arrive first.
        typed = [json.dumps(r["body"], ensure_ascii=False) for r in reqs]
        typed = [body for body in typed if "Read my notes." in body]
        self.check(typed and all("SECRET_REF(demo)" in body for body in typed),
                   f"the typed secret did not arrive as SECRET_REF(demo) ({len(typed)} requests hold the message)",
                   turn)
        # The provider got the real key from the vault, never the local token.
        for r in reqs:
            headers = {k.lower(): v for k, v in r["headers"].items()}
            self.check(headers.get("authorization") == f"Bearer {self.provider_keys['openai']}",
                       "the upstream request did not carry the real provider key", turn)
        # Metered exactly: one more request per model request of the turn.
        key = ("main", "openai", harness.OPENAI_MODEL_ID)

        def metered():
            return self.usage_requests().get(key, 0) - usage_before.get(key, 0) == len(reqs)
        wait_until(metered, 10, f"usage of {key} grows by {len(reqs)}",
                   on_fail=lambda: f"before {usage_before}, now {self.usage_requests()}")


def tearDownModule():
    print_timings()


if __name__ == "__main__":
    unittest.main()
