#!/usr/bin/env python3
"""Clawgate enrolled against the dev Hub, gating real OpenClaw tool calls (issue #6, "Must show" 1).

    bash tests/e2e/setup.sh                          # once: Node 24, OpenClaw 2026.9.6, Chromium
    cargo build --workspace                          # or CLAWGATE_BIN / CLAWGATE_DEVHUB_BIN
    python3 tests/e2e/hub_e2e_test.py -v             # about 1 minute

One world for the whole class: the dev Hub binary (`clawgate-devhub`, HTTPS on a free loopback
port, its own state dir under the world's temp root), a fake LLM, one `clawgate serve` enrolled
with the dev Hub *before* it starts (`clawgate enroll --hub URL --token-file F --pin HEX`, token
minted through the dev Hub's admin API, bundle trust file from `clawgate keygen`, tier 2) and one
OpenClaw gateway configured by `clawgate openclaw configure`, exactly as clawgate_e2e_test.py does.
Cases run in name order:

  01  a yellow_external call (curl sending data, carrying SECRET_REF(demo)) is held, shows up on
      the dev Hub, is approved by tapping Approve on the dev Hub's page in headless Chromium, and
      then runs (the echo endpoint gets the real secret; the model sees it redacted);
  02  another yellow_external call is denied on the page: it never runs, the model sees the denial;
  03  a bundle published on the dev Hub's page (tier 2 -> 1; file chosen, Publish tapped in headless
      Chromium) is in force within one event round-trip (well under the appliance's 25 s
      long-poll), and the same kind of call that ran unasked just before is now asked on the Hub
      (denied there through the admin API: it never runs);
  04  the planted secret is nowhere the dev Hub got it: not in its admin API, its page (HTML and
      rendered text), its log, its state directory (SQLite files byte-swept), nor anywhere else
      under the temp root; positive controls show the Hub did receive the summaries and the audit.

Only loopback is used. Skips when the prerequisites are missing, unless CLAWGATE_E2E_REQUIRE=1
(run.sh sets it): then it fails.
Env: CLAWGATE_BIN (default target/debug/clawgate, else target/release/clawgate), CLAWGATE_DEVHUB_BIN
(default target/debug/clawgate-devhub), plus harness.py's (NODE24, OPENCLAW_MJS, CHROMIUM,
CLAWGATE_E2E_KEEP=1, CLAWGATE_E2E_KEEP_ON_FAIL=1).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
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
    ClawgateCase, print_timings, TIMINGS, HarnessError, Timed, require, unix_http_get, wait_until,
)


def _default_bin(name: str) -> str:
    for profile in ("debug", "release"):
        p = REPO / "target" / profile / name
        if p.exists():
            return str(p)
    return str(REPO / "target" / "debug" / name)


CLAWGATE = os.environ.get("CLAWGATE_BIN") or _default_bin("clawgate")
DEVHUB = os.environ.get("CLAWGATE_DEVHUB_BIN") or _default_bin("clawgate-devhub")
PLUGIN_DIR = REPO / "wrapper" / "openclaw-plugin"
WAIT_SECONDS = 45
TENANT = "tenant-e2e"
BUNDLE_KEY_ID = "e2e-bundle-key"
# The appliance long-polls the Hub's event channel for 25 s (wrapper/src/hublink POLL_WAIT); a
# bundle in force well before that came with the event the publish announced, not with a re-poll.
BUNDLE_ROUND_TRIP_BOUND = 10.0



class PinnedHub:
    """HTTPS client for the dev Hub on loopback, pinned to the exact certificate in its state dir
    (`tls-cert.der`): the handshake is not chain-verified (self-signed), the peer certificate must
    be byte-identical to the pinned one or nothing is sent."""

    def __init__(self, port: int, cert_der: bytes, operator_token: str):
        self.port = port
        self.cert_der = cert_der
        self.operator = operator_token

    def request(self, method: str, path: str, body: bytes | None = None, *, auth: bool = True,
                content_type: str = "application/json", timeout: float = 10.0) -> tuple[int, bytes]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                if s.getpeercert(binary_form=True) != self.cert_der:
                    raise HarnessError("dev Hub presented a certificate other than the pinned one")
                head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close"]
                if auth:
                    head.append(f"Authorization: Bearer {self.operator}")
                if body is not None:
                    head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
                s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
                data = b""
                while True:
                    try:
                        chunk = s.recv(65536)
                    except ssl.SSLError:
                        break
                    if not chunk:
                        break
                    data += chunk
        hdr, _, payload = data.partition(b"\r\n\r\n")
        status = int(hdr.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in hdr.lower():
            out, rest = b"", payload
            while rest:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    break
                out, rest = out + rest[:size], rest[size + 2:]
            payload = out
        return status, payload

    def json(self, method: str, path: str, payload=None):
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.request(method, path, body)
        if status >= 300:
            raise HarnessError(f"dev Hub {method} {path}: {status} {data[:500]!r}")
        return json.loads(data)

    def overview(self) -> dict:
        return self.json("GET", "/admin/overview")


class HubE2E(ClawgateCase):
    CLAWGATE = CLAWGATE
    BINARIES = ((CLAWGATE, "cargo build --workspace (or set CLAWGATE_BIN)"),
                (DEVHUB, "cargo build --workspace (or set CLAWGATE_DEVHUB_BIN)"))
    ENV_PREFIXES = ("CLAWGATE_", "DEVHUB_")

    # ------------------------------------------------------------------------------------------
    # setup / teardown
    # ------------------------------------------------------------------------------------------

    SETUP = "setup: dev Hub + enroll + fake LLM + clawgate serve + configure + gateway"

    @classmethod
    def _setup_world(cls):
        cls.page_texts: list[str] = []          # what headless Chromium rendered of the Hub page
        e = cls.e
        require(Path(e.env()["HOME"]) == e.home and str(e.home).startswith(str(e.root)), e.env()["HOME"])
        cls.llm = e.start_fake_llm()

        # --- the dev Hub (its own binary, loopback, state under the temp root) ---
        cls.hub_state = e.root / "devhub"
        cls.hub_port = harness.free_port()
        cls.hub_proc = e.spawn("devhub", [DEVHUB, "--state", str(cls.hub_state),
                                          "--listen", f"127.0.0.1:{cls.hub_port}",
                                          "--heartbeat-seconds", "5"], env=cls.cg_env())
        m = cls.hub_proc.wait_for_log(r"--ignore-certificate-errors-spki-list=(\S+)", 30, "dev Hub start")
        cls.hub_pin_b64 = m.group(1)
        pin_hex = cls.hub_proc.wait_for_log(r"TLS SPKI pin \(sha256 hex\): ([0-9a-f]{64})", 5).group(1)
        cls.hub_url = f"https://127.0.0.1:{cls.hub_port}"
        require((cls.hub_state / "url").read_text().strip() == cls.hub_url, "dev Hub url file")
        cls.hub = PinnedHub(cls.hub_port, (cls.hub_state / "tls-cert.der").read_bytes(),
                            (cls.hub_state / "operator-token").read_text().strip())
        # Chromium trusts exactly the dev Hub's key (as tests/devhub/page.sh does).
        cls.chromium_wrapper = e.root / "chromium-devhub"
        cls.chromium_wrapper.write_text(
            f'#!/bin/sh\nexec "{e.tools.chromium}" --ignore-certificate-errors-spki-list={cls.hub_pin_b64} "$@"\n')
        cls.chromium_wrapper.chmod(0o755)

        # --- clawgate config, bundle trust, enrollment (before serve starts) ---
        cls.cg_dir = e.root / "clawgate"
        cls.cg_dir.mkdir()
        cls.cg_state = cls.cg_dir / "state"
        cls.hook_sock = cls.cg_state / "hook.sock"
        cls.bundle_key = cls.cg_dir / "bundle.key"
        r = cls.cg("keygen", "--key-id", BUNDLE_KEY_ID, "--secret-key", str(cls.bundle_key))
        require(r.rc == 0 and "[[key]]" in r.stdout, r.describe())
        cls.trust_file = cls.cg_dir / "bundle-trust.toml"
        cls.trust_file.write_text(r.stdout[r.stdout.index("[[key]]"):])
        cls.admin_port = harness.free_port()
        cls.egress_port = harness.free_port()
        cls.cg_config = cls.cg_dir / "clawgate.toml"
        cls.cg_config.write_text(
            f'state_dir = "{cls.cg_state}"\n'
            f'[admin]\nlisten = "127.0.0.1:{cls.admin_port}"\n'
            f'[egress]\nlisten = "127.0.0.1:{cls.egress_port}"\nconnect_listen = "127.0.0.1:{harness.free_port()}"\n'
            f'[egress.upstreams]\nopenai = "{cls.llm.base}"\nanthropic = "{cls.llm.base}"\n'
            f'[approvals]\nwait_seconds = {WAIT_SECONDS}\n'
            f'[policy]\ntier = 2\ntrust_file = "{cls.trust_file}"\n')
        token = cls.hub.json("POST", "/admin/tokens", {"tenant": TENANT})
        require(token.get("hub") == cls.hub_url and token.get("token"), {k: type(v).__name__ for k, v in token.items()})
        token_file = cls.cg_dir / "enroll.json"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(token, f)
        with Timed("setup: clawgate enroll"):
            r = cls.cg("enroll", "--hub", cls.hub_url, "--token-file", str(token_file), "--pin", pin_hex,
                       "--config", str(cls.cg_config))
        require(r.rc == 0, r.describe())
        require(not token_file.exists() or cls.hub_url not in token_file.read_text(), "token file not consumed")
        cls.cg_logs: list[Path] = []
        cls._start_daemon("clawgate")
        health = json.loads(unix_http_get(str(cls.hook_sock), "/v1/health")[1])
        require(health.get("status") == "ok" and health.get("vault") is True, health)
        require((health.get("hub") or {}).get("enrolled") is True and health.get("tier") == "balanced", health)

        # --- the secret: random, planted in the vault, scoped to exec on 127.0.0.1 ---
        cls.secret = "cg-hub-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))
        r = cls.cg("vault", "put", "demo", "--tool", "exec", "--host", "127.0.0.1", stdin=cls.secret + "\n",
                   env={"CLAWGATE_STATE_DIR": str(cls.cg_state)})
        require(r.rc == 0, r.describe())
        for route in ("openai", "anthropic"):
            key = f"sk-e2e-{route}-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))
            r = cls.cg("vault", "put", f"provider.{route}", "--tool", "clawgate:egress", "--host", "127.0.0.1",
                       stdin=key + "\n", env={"CLAWGATE_STATE_DIR": str(cls.cg_state)})
            require(r.rc == 0, r.describe())

        # --- OpenClaw: the harness's config, then `clawgate openclaw configure` ---
        e.write_config(plugins=[])
        r = cls.cg("openclaw", "configure", "--openclaw-config", str(e.config_path),
                   "--plugin-dir", str(PLUGIN_DIR), "--route", f"{harness.OPENAI_PROVIDER_ID}=openai",
                   "--config", str(cls.cg_config))
        require(r.rc == 0, r.describe())
        cfg = json.loads(e.config_path.read_text())
        entry = ((cfg.get("plugins") or {}).get("entries") or {}).get("clawgate") or {}
        require(entry.get("enabled") is True and entry.get("config", {}).get("socketPath") == str(cls.hook_sock),
                entry)
        e.start_gateway(timeout=180)

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------

    def health(self) -> dict:
        return json.loads(unix_http_get(str(self.hook_sock), "/v1/health")[1])

    def extra_report(self) -> list[str]:
        parts = [f"--- dev Hub log tail ---\n{self.hub_proc.tail(40)}"]
        try:
            ov = self.hub.overview()
            parts.append("--- dev Hub overview (pending/decided/bundle_reports) ---\n" + json.dumps(
                {k: ov.get(k) for k in ("pending", "decided", "bundles", "bundle_reports")}, indent=1)[:4000])
        except Exception as ex:  # noqa: BLE001 - diagnostics only
            parts.append(f"(dev Hub overview failed: {ex!r})")
        return parts

    def wait_hub_pending(self, needle: str, thread: threading.Thread, timeout: float = 40.0) -> dict:
        """The approval request for `needle` as the dev Hub holds it (pending)."""
        def find():
            for a in self.hub.overview().get("pending") or []:
                if needle in a.get("summary", ""):
                    return a
            if not thread.is_alive():
                raise HarnessError(f"the turn ended before an approval for {needle!r} reached the dev Hub")
            return None
        return wait_until(find, timeout, f"pending approval for {needle!r} on the dev Hub", interval=0.3,
                          on_fail=self.report)

    def hub_decided(self, approval_id: str) -> dict | None:
        for a in self.hub.overview().get("decided") or []:
            if a.get("approval_id") == approval_id:
                return a
        return None

    def tap_on_hub_page(self, selector: str, expect: str, extra: tuple[str, ...] = ()) -> str:
        """Taps `selector` on the dev Hub's operator page in headless Chromium (phone viewport)."""
        link = f"{self.hub_url}/ui#token={self.hub.operator}"
        click = harness.run_cmd(
            [self.e.tools.node, str(HERE / "cdp_click.mjs"), "--url", link, "--selector", selector,
             "--expect-text", expect, "--timeout-ms", "30000", *extra],
            env=dict(self.cg_env(), CHROMIUM=str(self.chromium_wrapper)), cwd=str(HERE), timeout=60)
        self.check(click.rc == 0, f"cdp_click failed\n{click.describe()}")
        self.check(expect in click.stdout, f"the dev Hub page did not confirm {expect!r}\n{click.describe()}")
        self.page_texts.append(click.stdout)
        return click.stdout

    def echoes(self, path: str, since: int) -> list[dict]:
        return [x for x in self.llm.echoes() if x["n"] > since and x["path"] == path]

    def decision_outcomes(self, turn) -> set[str]:
        ids = {fake_llm.norm_id(c["id"]) for c in turn.issued_calls}
        return {r["body"].get("outcome") for r in self.audit() if r["kind"] == "decision"
                and fake_llm.norm_id((r["body"].get("ctx") or {}).get("tool_call_id")) in ids}

    # ------------------------------------------------------------------------------------------
    # 01: yellow_external, approved on the dev Hub's page in headless Chromium, then runs
    # ------------------------------------------------------------------------------------------

    def test_01_yellow_external_approved_on_hub_page_then_runs(self):
        s = self.secret
        n0 = len(self.llm.echoes())
        cmd = (f"curl -fsS -H 'Authorization: Bearer SECRET_REF(demo)' -d note=hub-approved "
               f"http://127.0.0.1:{self.llm.port}/echo/hub-a")
        r = self.cg("classify", "--tier", "2", "--shell", cmd)
        cls_ = json.loads(r.stdout.strip().splitlines()[-1])
        self.check(cls_.get("class") == "yellow_external" and cls_.get("decision") == "ask", f"classify: {cls_}")
        self.llm.next({"tool": "exec", "args": {"command": cmd}})
        with Timed("01 yellow_external -> approved on the dev Hub page (whole turn)"):
            th, box = self.turn_in_thread(lambda: self.e.agent_turn("Post the note", session_id="hub-01"))
            ap = self.wait_hub_pending("/echo/hub-a", th)
            self.check(th.is_alive(), "turn not held while the approval is pending on the Hub")
            self.check(not self.echoes("/echo/hub-a", n0), "the call ran before the approval")
            self.check(ap.get("class") == "yellow_external" and ap.get("tenant") == TENANT
                       and ap.get("tool") == "exec", f"Hub approval: {ap}")
            self.check("SECRET_REF(demo)" in ap.get("summary", ""), f"summary: {ap.get('summary')!r}")
            aid = ap["approval_id"]
            with Timed("01   cdp_click tap Approve on the dev Hub page"):
                self.tap_on_hub_page(f"#approve-{aid}", f"Sent allow_once for {aid}")
            turn = self.join_turn(th, box, 90)
        self.assertTurnOk(turn)
        got = self.echoes("/echo/hub-a", n0)
        self.check(len(got) == 1, f"echo endpoint got {len(got)} requests for /echo/hub-a", turn)
        auth = {k.lower(): v for k, v in got[0]["headers"].items()}.get("authorization")
        self.check(auth == f"Bearer {s}", "the approved call did not receive the real secret value", turn)
        self.check("echo /echo/hub-a received SECRET_REF(demo)" in turn.seen,
                   "model did not see the (redacted) result of the approved call", turn)
        self.check("Clawgate" not in turn.seen, "model saw a Clawgate message instead of the result", turn)
        d = self.hub_decided(aid)
        self.check(d and d.get("decision") == "allow_once", f"Hub shows {d}")
        self.check("approved" in self.decision_outcomes(turn), f"outcomes {self.decision_outcomes(turn)}")
        type(self).approved_id = aid

    # ------------------------------------------------------------------------------------------
    # 02: yellow_external, denied on the page: never runs
    # ------------------------------------------------------------------------------------------

    def test_02_yellow_external_denied_on_hub_page_never_runs(self):
        n0 = len(self.llm.echoes())
        cmd = f"curl -fsS -d note=hub-denied http://127.0.0.1:{self.llm.port}/echo/hub-b"
        self.llm.next({"tool": "exec", "args": {"command": cmd}})
        with Timed("02 yellow_external -> denied on the dev Hub page (whole turn)"):
            th, box = self.turn_in_thread(lambda: self.e.agent_turn("Post the other note", session_id="hub-02"))
            ap = self.wait_hub_pending("/echo/hub-b", th)
            self.check(th.is_alive(), "turn not held while the approval is pending on the Hub")
            aid = ap["approval_id"]
            with Timed("02   cdp_click tap Deny on the dev Hub page"):
                self.tap_on_hub_page(f"#deny-{aid}", f"Sent deny for {aid}")
            turn = self.join_turn(th, box, 90)
        self.assertTurnOk(turn)
        self.check("owner denied" in turn.seen, "model did not see 'owner denied'", turn)
        time.sleep(0.5)
        self.check(not self.echoes("/echo/hub-b", n0), "the denied call ran", turn)
        d = self.hub_decided(aid)
        self.check(d and d.get("decision") == "deny", f"Hub shows {d}")
        self.check("owner_denied" in self.decision_outcomes(turn), f"outcomes {self.decision_outcomes(turn)}")

    # ------------------------------------------------------------------------------------------
    # 03: a bundle published on the dev Hub changes a decision within one event round-trip
    # ------------------------------------------------------------------------------------------

    def test_03_bundle_published_on_hub_changes_a_decision(self):
        # Before: a loopback GET is yellow, allowed unasked at tier 2.
        n0 = len(self.llm.echoes())
        before = f"curl -fsS http://127.0.0.1:{self.llm.port}/echo/hub-c1"
        pending0 = len(self.hub.overview().get("pending") or [])
        self.llm.next({"tool": "exec", "args": {"command": before}})
        with Timed("03 before the bundle: loopback GET runs unasked at tier 2"):
            turn = self.e.agent_turn("Fetch the status", session_id="hub-03a")
        self.assertTurnOk(turn)
        self.check(len(self.echoes("/echo/hub-c1", n0)) == 1, "the call did not run at tier 2", turn)
        self.check("echo /echo/hub-c1 received" in turn.seen, "model did not see the result", turn)
        self.check(len(self.hub.overview().get("pending") or []) == pending0, "an approval was opened at tier 2")
        h = self.health()
        self.check(h.get("tier") == "balanced" and h.get("bundle") is None, f"health before the bundle: {h}")

        # Publish tier 1, version 2, on the dev Hub's page: the file chosen in #bundle-file, Publish
        # tapped in headless Chromium. The time below includes Chromium's start (an upper bound).
        bundle = self.cg_dir / "bundle-v2.json"
        r = self.cg("policy", "sign", str(REPO / "policies" / "default"), "--secret-key", str(self.bundle_key),
                    "--key-id", BUNDLE_KEY_ID, "--tenant", TENANT, "--version", "2", "--tier", "1",
                    "--out", str(bundle))
        self.check(r.rc == 0, f"policy sign failed\n{r.describe()}")
        with Timed("03 publish -> bundle in force on the appliance"):
            t0 = time.monotonic()
            self.tap_on_hub_page("#publish-bundle", f"Published version 2 for {TENANT}.",
                                 ("--set-file", f"#bundle-file={bundle}"))
            t_published = time.monotonic()

            def in_force():
                h = self.health()
                return h if (h.get("bundle") or {}).get("version") == 2 and h.get("tier") == "supervised" else None
            h = wait_until(in_force, 30, "bundle 2 (tier 1) in force", interval=0.05, on_fail=self.report)
            took = time.monotonic() - t0
            after_answer = max(0.0, time.monotonic() - t_published)
        TIMINGS.append((f"03   tap Publish -> in force: {took:.2f}s, after the page's answer: {after_answer:.2f}s "
                        f"(bound {BUNDLE_ROUND_TRIP_BOUND:.0f}s)", took))
        pubs = [b for b in self.hub.overview().get("bundles") or [] if b[0] == TENANT and b[1] == 2]
        self.check(len(pubs) == 1, f"the dev Hub holds {pubs}")
        self.check(took < BUNDLE_ROUND_TRIP_BOUND,
                   f"bundle took {took:.1f}s to be in force: not within one event round-trip")
        self.check(h["bundle"].get("expired") is False, f"health: {h}")
        kinds = [r["kind"] for r in self.audit()]
        self.check(any(k.startswith("bundle.") and "reject" not in k for k in kinds), f"no bundle record: {kinds}")

        # After: the same kind of call is asked on the Hub now; denied there, it never runs.
        n1 = len(self.llm.echoes())
        after = f"curl -fsS http://127.0.0.1:{self.llm.port}/echo/hub-c2"
        self.llm.next({"tool": "exec", "args": {"command": after}})
        with Timed("03 after the bundle: the same call is asked on the Hub (denied via admin API)"):
            th, box = self.turn_in_thread(lambda: self.e.agent_turn("Fetch the status again", session_id="hub-03b"))
            ap = self.wait_hub_pending("/echo/hub-c2", th)
            self.check(ap.get("class") == "yellow", f"Hub approval: {ap}")
            self.check(not self.echoes("/echo/hub-c2", n1), "the call ran before a decision")
            self.hub.json("POST", f"/admin/approvals/{ap['approval_id']}/decide", {"decision": "deny"})
            turn = self.join_turn(th, box, 90)
        self.assertTurnOk(turn)
        self.check("owner denied" in turn.seen, "model did not see 'owner denied'", turn)
        time.sleep(0.5)
        self.check(not self.echoes("/echo/hub-c2", n1), "the denied call ran", turn)
        # The Hub got the appliance's report on the bundle: (appliance, version, status, reason).
        reports = wait_until(lambda: [b for b in self.hub.overview().get("bundle_reports") or [] if b[1] == 2],
                             20, "the bundle report on the dev Hub", on_fail=self.report)
        self.check(reports[-1][3] is None and "reject" not in reports[-1][2], f"bundle reports: {reports}")

    # ------------------------------------------------------------------------------------------
    # 04: the secret is nowhere the dev Hub got it
    # ------------------------------------------------------------------------------------------

    def test_04_secret_never_reaches_the_hub(self):
        s = self.secret
        # Let the audit chain reach the Hub first (shipped every 10 s), so the sweep covers it.
        last = max(r["seq"] for r in self.audit())
        wait_until(lambda: any(a.get("last_seq", 0) >= last and not a.get("breaks")
                               for a in self.hub.overview().get("audit") or []),
                   45, f"the dev Hub holding the audit chain up to seq {last}", interval=0.5, on_fail=self.report)
        ov_raw = self.hub.request("GET", "/admin/overview")[1].decode("utf-8", "replace")
        ov = json.loads(ov_raw)
        # Positive controls: the Hub did get the summaries (with the reference, not the value).
        summaries = " ".join(a.get("summary", "") for a in ov.get("decided") or [])
        self.check("/echo/hub-a" in summaries and "SECRET_REF(demo)" in summaries,
                   f"the approved call's summary is not on the Hub: {summaries!r}")
        self.check(len(self.page_texts) == 3 and any("hub-a" in t for t in self.page_texts),
                   "no page text from the taps (is the page check blind?)")
        status, html = self.hub.request("GET", "/ui", auth=False)
        self.check(status == 200 and b"<html" in html.lower(), f"GET /ui: {status}")
        leaks = {}
        if s in ov_raw:
            leaks["admin API /admin/overview"] = True
        if s.encode() in html:
            leaks["page HTML /ui"] = True
        if any(s in t for t in self.page_texts):
            leaks["page text rendered in Chromium"] = True
        if s in self.hub_proc.log_text():
            leaks["dev Hub log"] = True
        hub_files = [p for p in sorted(self.hub_state.rglob("*")) if p.is_file()]
        self.check(any(p.name.startswith("devhub.db") for p in hub_files), f"no dev Hub database: {hub_files}")
        hits = [str(p) for p in hub_files if s.encode() in p.read_bytes()]
        if hits:
            leaks["dev Hub state (byte sweep)"] = hits
        sweep = []
        for p in sorted(self.e.root.rglob("*")):
            try:
                if p.is_file() and not p.is_symlink() and s.encode() in p.read_bytes():
                    sweep.append(str(p))
            except OSError:
                continue
        if sweep:
            leaks["byte sweep of the temp root"] = sweep
        self.check(not self.llm.requests_containing(s), "a model request carried the secret value")
        self.check(not leaks, "secret value found in: " + json.dumps(leaks, indent=1))
        # The secret is in the vault only as ciphertext: the same search finds the reference.
        self.check("SECRET_REF(demo)" in ov_raw, "the search found not even the reference")


def tearDownModule():
    print_timings()


if __name__ == "__main__":
    unittest.main()
