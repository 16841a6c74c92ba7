#!/usr/bin/env python3
"""The egress lock for real: nftables in network namespaces this test creates, `clawgate serve`
watching it, the agent's user and another user making real connections.

Namespaces (only namespace-internal documentation addresses; nothing leaves this machine):
  VPS       clawgate serve (as a throwaway daemon user whose one capability is an ambient
            CAP_NET_ADMIN, which reading the ruleset needs), the agent's user and another user
            (throwaway, run with setpriv), a loopback relay to the provider (root: the proxy
            accepts plain-http upstreams only on loopback), an unrelated loopback service;
            veths to the two below
  provider  fake LLM provider, 198.51.100.2 / 2001:db8:100::2 port 8080, UDP 53
  hub       stand-in Hub, 203.0.113.2 / 2001:db8:113::2 port 9443

Run by run.sh as root with CLAWGATE_BIN set. Every check prints one line; the first failure
stops the test (exit 1) after cleaning up everything it created.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.environ.get("CLAWGATE_SAMPLES", "/work/shared/openclaw/samples/hook-events.jsonl")
PY = "/usr/bin/python3"  # the agent's user cannot run a python under /root
TAG = str(os.getpid())

PROVIDER4, PROVIDER6 = "198.51.100.2", "2001:db8:100::2"
HUB4, HUB6 = "203.0.113.2", "2001:db8:113::2"
PROVIDER_PORT, HUB_PORT, LOCAL_PORT = 8080, 9443, 9999
RELAY = ("127.0.0.2", 8080)
PROXY, CONNECT = 8787, 8788


class Failed(Exception):
    pass


checks = 0


def check(cond, what, detail=""):
    global checks
    if not cond:
        print(f"FAIL {what}\n     {detail}", flush=True)
        raise Failed(what)
    checks += 1
    print(f"ok   {what}", flush=True)


def sh(*args, ns=None, check_rc=True, stdin=None, env=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
    if check_rc and r.returncode != 0:
        raise Failed(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


class Bed:
    """Everything the test creates, removed in reverse order by cleanup()."""

    def __init__(self):
        self.vps, self.prov, self.hub = f"cgl-vps-{TAG}", f"cgl-prov-{TAG}", f"cgl-hub-{TAG}"
        self.agent, self.other, self.daemon = f"cgagent{TAG}", f"cgother{TAG}", f"cgdaemon{TAG}"
        self.namespaces, self.users, self.procs = [], [], []
        self.tmp = tempfile.mkdtemp(prefix="cg-egresslock-")
        os.chmod(self.tmp, 0o755)
        self.state = os.path.join(self.tmp, "state")
        self.config = os.path.join(self.tmp, "clawgate.toml")
        self.nft_file = os.path.join(self.tmp, "egress-lock.nft")
        self.serve_log = os.path.join(self.tmp, "serve.log")
        self.provider_log = os.path.join(self.tmp, "provider.jsonl")
        self.hub_log = os.path.join(self.tmp, "hub.jsonl")
        self.local_log = os.path.join(self.tmp, "local.jsonl")
        for name in ("servers.py", "probe.py"):
            shutil.copy(os.path.join(HERE, name), self.tmp)
            os.chmod(os.path.join(self.tmp, name), 0o644)
        self.serve = None
        self.call_n = 0

    # ---- setup -------------------------------------------------------------------------
    def make_netns(self):
        for ns in (self.vps, self.prov, self.hub):
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        # Let unprivileged users send ICMP echo (datagram sockets) inside the VPS, so the test can
        # show ICMP refused for the agent and working for another user (this namespace only).
        sh("sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647", ns=self.vps)
        for peer, v4net, v6net, short in ((self.prov, "198.51.100", "2001:db8:100", "p"),
                                           (self.hub, "203.0.113", "2001:db8:113", "h")):
            a, b = f"cgv{short}{TAG}", f"cgx{short}{TAG}"
            sh("ip", "link", "add", a, "netns", self.vps, "type", "veth", "peer", "name", b, "netns", peer)
            for ns, dev, host in ((self.vps, a, 1), (peer, b, 2)):
                sh("ip", "addr", "add", f"{v4net}.{host}/24", "dev", dev, ns=ns)
                sh("ip", "-6", "addr", "add", f"{v6net}::{host}/64", "dev", dev, "nodad", ns=ns)
                sh("ip", "link", "set", dev, "up", ns=ns)

    def make_users(self):
        for u in (self.agent, self.other, self.daemon):
            sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", u)
            self.users.append(u)

    def ids(self, user):
        out = sh("id", "-u", user).stdout.strip(), sh("id", "-g", user).stdout.strip()
        return int(out[0]), int(out[1])

    def start(self, ns, *args, ready=True):
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        self.procs.append(p)
        if ready:
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise Failed(f"{args} did not start: {line}{p.stdout.read() if p.poll() is not None else ''}")
        # Keep draining its output, so a chatty server never blocks on a full pipe.
        threading.Thread(target=p.stdout.read, daemon=True).start()
        return p

    def start_servers(self):
        srv = os.path.join(self.tmp, "servers.py")
        self.start(self.prov, PY, srv, "provider", PROVIDER4, PROVIDER6, str(PROVIDER_PORT), self.provider_log)
        self.start(self.hub, PY, srv, "hub", HUB4, HUB6, str(HUB_PORT), self.hub_log)
        self.start(self.vps, PY, srv, "local", str(LOCAL_PORT), self.local_log)
        self.start(self.vps, PY, srv, "relay", RELAY[0], str(RELAY[1]), PROVIDER4, str(PROVIDER_PORT))

    def clawgate(self, *args, ns=None, stdin=None, check_rc=True):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CLAWGATE_LOG": "warn", "HOME": self.tmp}
        return sh(BIN, *args, ns=ns, stdin=stdin, check_rc=check_rc, env=env)

    def configure(self):
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(f"""state_dir = "{self.state}"
[hook]
allowed_users = ["{self.daemon}", "root"]
[admin]
listen = "off"
[log]
target = "stderr"
[egress]
listen = "127.0.0.1:{PROXY}"
connect_listen = "127.0.0.1:{CONNECT}"
[egress.upstreams]
openai = "http://{RELAY[0]}:{RELAY[1]}"
[egress_lock]
agent_user = "{self.agent}"
required = true
check_seconds = 1
""")
        self.clawgate("--state-dir", self.state, "vault", "init")
        self.provider_key = "sk-provider-real-" + os.urandom(12).hex()
        self.clawgate("--state-dir", self.state, "vault", "put", "provider.openai",
                      "--tool", "clawgate:egress", "--host", RELAY[0], stdin=self.provider_key)
        self.token = self.clawgate("egress", "token", "main", "--config", self.config).stdout.strip()
        # The daemon runs as its own user, like the packaged unit's `clawgate` user.
        sh("chown", "-R", f"{self.daemon}:{self.daemon}", self.state)

    def start_serve(self, net_admin=True):
        """clawgate serve as the daemon's user; with CAP_NET_ADMIN as its one (ambient)
        capability, which reading the nftables ruleset needs."""
        log = open(self.serve_log, "a", encoding="utf-8")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CLAWGATE_LOG": "info"}
        uid, gid = self.ids(self.daemon)
        caps = ["--inh-caps=+net_admin", "--ambient-caps=+net_admin"] if net_admin else []
        self.serve = subprocess.Popen(["ip", "netns", "exec", self.vps, "setpriv", f"--reuid={uid}",
                                       f"--regid={gid}", "--clear-groups", *caps,
                                       BIN, "serve", "--config", self.config],
                                      stdout=subprocess.DEVNULL, stderr=log, env=env)
        self.procs.append(self.serve)
        for _ in range(300):
            if self.health(quiet=True):
                return
            time.sleep(0.05)
        raise Failed(f"clawgate serve did not start:\n{open(self.serve_log).read()}")

    # ---- talking to the daemon -----------------------------------------------------------
    def curl_unix(self, socket_name, method, path, body=None):
        args = ["curl", "-sS", "--max-time", "20", "--unix-socket", os.path.join(self.state, socket_name),
                "-X", method, f"http://clawgate{path}"]
        if body is not None:
            args += ["-H", "content-type: application/json", "--data-binary", "@-"]
        r = sh(*args, stdin=None if body is None else json.dumps(body), check_rc=False)
        return r

    def health(self, quiet=False):
        r = self.curl_unix("hook.sock", "GET", "/v1/health")
        if r.returncode != 0:
            if quiet:
                return None
            raise Failed(f"health: {r.stderr}")
        return json.loads(r.stdout)

    def hook(self):
        """The first allowed before_tool_call sample event, with a fresh toolCallId."""
        self.call_n += 1
        with open(SAMPLES, encoding="utf-8") as f:
            sample = next(json.loads(l) for l in f
                          if '"hook": "before_tool_call"' in l and '"mode": "allow"' in l)
        event = dict(sample["event"])
        ctx = {k: v for k, v in sample["ctx"].items() if k != "abortSignal"}
        call_id = f"call_egresslock_{self.call_n}"
        event["toolCallId"] = ctx["toolCallId"] = call_id
        r = self.curl_unix("hook.sock", "POST", "/v1/before_tool_call", {"event": event, "ctx": ctx})
        if r.returncode != 0:
            raise Failed(f"hook call: {r.stderr}")
        return json.loads(r.stdout)

    def metrics(self):
        r = self.curl_unix("admin.sock", "GET", "/metrics")
        out = {}
        for line in r.stdout.splitlines():
            if line.startswith("clawgate_egress_lock"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def audit(self):
        out = self.clawgate("audit", "show", "--json", "--limit", "10000", "--config", self.config).stdout
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def wait_lock(self, status, timeout=10.0):
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            h = self.health()
            if h["egressLock"] == status:
                return time.monotonic() - start
            time.sleep(0.05)
        raise Failed(f"egress lock not {status} within {timeout} s: {self.health()}")

    # ---- the firewall ----------------------------------------------------------------------
    def provision(self):
        return self.clawgate("provision", "firewall", "--agent-user", self.agent, "--config", self.config,
                             "--write", self.nft_file, "--apply", ns=self.vps)

    def nft_counters(self):
        r = sh("nft", "-j", "list", "table", "inet", "clawgate_egress", ns=self.vps)
        items = json.loads(r.stdout)["nftables"]
        return {i["counter"]["name"]: i["counter"]["packets"] for i in items if "counter" in i}

    def probe_cmd(self, user, attempts):
        uid, gid = self.ids(user)
        return ["ip", "netns", "exec", self.vps, "setpriv", f"--reuid={uid}", f"--regid={gid}",
                "--clear-groups", PY, os.path.join(self.tmp, "probe.py"), json.dumps(attempts)]

    def probe(self, user, attempts):
        r = subprocess.run(self.probe_cmd(user, attempts), capture_output=True, text=True)
        if r.returncode != 0:
            raise Failed(f"probe as {user}: {r.stderr}")
        return self.probe_results(user, r.stdout)

    def probe_results(self, user, stdout):
        uid, gid = self.ids(user)
        out = json.loads(stdout)
        if out["uids"] != [uid] * 3 or out["gids"] != [gid] * 3 or out["groups"] or int(out["cap_eff"], 16) != 0:
            raise Failed(f"the probe did not run as a plain {user}: {out}")
        return out["results"]

    def seen(self, log_path, **match):
        if not os.path.exists(log_path):
            return []
        with open(log_path, encoding="utf-8") as f:
            records = [json.loads(l) for l in f]
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]

    # ---- cleanup ---------------------------------------------------------------------------
    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check_rc=False)
        for u in self.users:
            sh("userdel", u, check_rc=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def tcp(host, port, path="/"):
    return {"op": "tcp", "host": host, "port": port, "path": path}


def udp(host, port=53):
    return {"op": "udp", "host": host, "port": port}


def ping(host):
    return {"op": "ping", "host": host, "port": 0}


def run(bed):
    bed.make_netns()
    bed.make_users()
    bed.start_servers()
    bed.configure()

    # -- Before the lock: the network works for the agent too (so every refusal below is the
    #    lock's doing, not the test bed's).
    r = bed.probe(bed.agent, [tcp(PROVIDER4, PROVIDER_PORT, "/baseline-agent"), tcp(HUB4, HUB_PORT, "/baseline-agent")])
    check(all(x["ok"] and x["status"] == 200 for x in r),
          "without the lock the agent's user reaches the provider and the hub directly", r)

    # -- clawgate serve starts with [egress_lock] configured but no table loaded yet.
    bed.start_serve()
    bed.wait_lock("lost", 5)
    h = bed.health()
    check(h["status"] == "critical" and h["egressLock"] == "lost",
          "serve reports critical health while the lock is missing", h)
    answer = bed.hook()
    check(answer.get("block") is True and "egress lock" in answer.get("blockReason", ""),
          "a tool call is blocked while the lock is missing", answer)

    # -- Provision the lock; a re-run changes nothing.
    out = bed.provision().stdout
    check("written" in out and "loaded and verified" in out, "clawgate provision firewall writes and loads the table", out)
    out = bed.provision().stdout
    check("unchanged" in out and "already in force" in out, "a re-run is a no-op (file unchanged, table left alone)", out)
    with open(bed.nft_file, encoding="utf-8") as f:
        text = f.read()
    uid, _ = bed.ids(bed.agent)
    check(f"meta skuid {uid} jump agent_out" in text and "flush" not in text.replace("never flushes", ""),
          "the file matches the agent's numeric uid and never flushes the ruleset")
    took = bed.wait_lock("held", 5)
    check(took < 3, f"serve sees the lock in force within {took:.2f} s")
    answer = bed.hook()
    check("params" in answer, "with the lock in force the sample tool call is allowed", answer)
    check(bed.nft_counters() == {"agent_allowed_proxy": 0, "agent_rejected_tcp": 0, "agent_rejected_other": 0},
          "counters start at zero", bed.nft_counters())

    # -- The agent's user: the proxy and, through it, the provider.
    chat = {"op": "post", "host": "127.0.0.1", "port": PROXY, "path": "/openai/v1/chat/completions",
            "headers": {"authorization": f"Bearer {bed.token}"},
            "body": json.dumps({"model": "gpt-egresslock", "messages": [{"role": "user", "content": "hi"}]})}
    connect = {"op": "connect", "host": "127.0.0.1", "port": CONNECT, "target": f"{PROVIDER4}:{PROVIDER_PORT}"}
    r = bed.probe(bed.agent, [chat, connect])
    check(r[0]["ok"] and r[0]["status"] == 200 and "hello from the fake provider" in r[0]["body"],
          "the agent reaches the proxy (127.0.0.1:8787) and through it the fake provider", r[0])
    upstream = bed.seen(bed.provider_log, path="/v1/chat/completions")
    check(len(upstream) == 1 and upstream[0]["authorization"] == f"Bearer {bed.provider_key}"
          and bed.token not in json.dumps(upstream),
          "the provider got exactly that request, with the real key and not the agent's token",
          upstream)
    check(r[1]["ok"] and r[1]["status"] == 407,
          "the agent reaches the CONNECT listener (127.0.0.1:8788), which asks for credentials", r[1])

    # -- The agent's user: everything else is refused.
    refused_tcp = [
        tcp(PROVIDER4, PROVIDER_PORT, "/direct-agent"),
        tcp(PROVIDER6, PROVIDER_PORT, "/direct-agent"),
        tcp(HUB4, HUB_PORT, "/direct-agent"),
        tcp(HUB6, HUB_PORT, "/direct-agent"),
        tcp("127.0.0.1", LOCAL_PORT, "/direct-agent"),
        tcp("::1", LOCAL_PORT, "/direct-agent"),
        tcp(RELAY[0], RELAY[1], "/direct-agent"),
    ]
    refused_other = [udp(PROVIDER4), udp(PROVIDER6), udp("127.0.0.1", 53), udp(HUB4, 9443),
                     ping(PROVIDER4), ping(PROVIDER6)]
    r = bed.probe(bed.agent, refused_tcp + refused_other)
    for a, x in zip(refused_tcp, r[:len(refused_tcp)]):
        check(not x["ok"] and x["error"] == "ECONNREFUSED",
              f"agent TCP to {a['host']}:{a['port']} is refused (reset)", x)
    for a, x in zip(refused_other, r[len(refused_tcp):]):
        if a["op"] == "ping" and ":" in a["host"]:
            # The kernel does not report a netfilter rejection to an ICMPv6 datagram socket: the
            # echo just gets no reply. The counter below shows the lock rejected it.
            check(not x["ok"] and x["error"] in ("EPERM", "TimeoutError"),
                  f"agent ICMPv6 echo to {a['host']} gets no reply", x)
            continue
        what = "ICMP echo to" if a["op"] == "ping" else f"UDP to port {a['port']} of"
        check(not x["ok"] and x["error"] == "EPERM", f"agent {what} {a['host']} is refused (EPERM)", x)
    check(not bed.seen(bed.provider_log, path="/direct-agent") and not bed.seen(bed.hub_log, path="/direct-agent")
          and not bed.seen(bed.local_log, path="/direct-agent") and not bed.seen(bed.provider_log, kind="udp"),
          "nothing the agent sent directly reached the provider, the hub or the local service")

    # -- Another user is not affected.
    other_attempts = [
        tcp(PROVIDER4, PROVIDER_PORT, "/direct-other"),
        tcp(PROVIDER6, PROVIDER_PORT, "/direct-other"),
        tcp(HUB4, HUB_PORT, "/direct-other"),
        tcp(HUB6, HUB_PORT, "/direct-other"),
        tcp("127.0.0.1", LOCAL_PORT, "/direct-other"),
        tcp("::1", LOCAL_PORT, "/direct-other"),
        udp(PROVIDER4),
        udp(PROVIDER6),
        ping(PROVIDER4),
        ping(PROVIDER6),
    ]
    r = bed.probe(bed.other, other_attempts)
    check(all(x["ok"] for x in r) and all(x.get("status", 200) == 200 for x in r)
          and [x.get("reply_type") for x in r[-2:]] == [0, 129],
          "another user reaches the provider, the hub and the local service (IPv4 and IPv6, TCP, UDP, ICMP)", r)
    time.sleep(0.3)
    check(len(bed.seen(bed.provider_log, path="/direct-other")) == 2 and len(bed.seen(bed.hub_log, path="/direct-other")) == 2
          and len(bed.seen(bed.local_log, path="/direct-other")) == 2 and len(bed.seen(bed.provider_log, kind="udp")) == 2,
          "and its traffic arrived")

    # -- The counters match the calls exactly.
    want = {"agent_allowed_proxy": 2, "agent_rejected_tcp": len(refused_tcp), "agent_rejected_other": len(refused_other)}
    got = bed.nft_counters()
    check(got == want, f"nft counters match the agent's calls exactly: {got}", f"want {want}")
    out = bed.provision().stdout
    check("already in force" in out and bed.nft_counters() == want,
          "re-running provision firewall leaves the table alone: the counters are kept", out)
    time.sleep(1.5)
    m = bed.metrics()
    check(all(m.get(f'clawgate_egress_lock_packets{{counter="{k}"}}') == v for k, v in want.items())
          and m.get("clawgate_egress_lock_status") == 1,
          "serve's metrics carry the same counters and status 1", m)

    # -- `nft flush ruleset`: detected within seconds, tool calls blocked, restored by a re-run.
    sh("nft", "flush", "ruleset", ns=bed.vps)
    took = bed.wait_lock("lost", 10)
    check(took < 3, f"`nft flush ruleset` detected within {took:.2f} s (check_seconds = 1)")
    answer = bed.hook()
    check(answer.get("block") is True and "is missing" in answer.get("blockReason", ""),
          "tool calls are blocked while the lock is gone", answer)
    r = bed.probe(bed.agent, [tcp(PROVIDER4, PROVIDER_PORT, "/during-gap-agent")])
    check(r[0]["ok"], "(why: with the table flushed the agent could reach the provider directly)", r)
    # A connection the agent opens during the gap and uses after the lock is back.
    go = os.path.join(bed.tmp, "go")
    held = subprocess.Popen(bed.probe_cmd(bed.agent, [{"op": "hold", "host": PROVIDER4, "port": PROVIDER_PORT,
                                                       "path": "/held-agent", "wait_file": go}]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bed.procs.append(held)
    check(held.stderr.readline().strip() == "connected", "the agent opened a direct connection during the gap")
    check(bed.health()["status"] == "critical", "health is critical")
    m = bed.metrics()
    check(m.get("clawgate_egress_lock_status") == 0 and m.get("clawgate_egress_lock_losses_total") == 2,
          "metrics: status 0, two losses (no table at start, the flush)", m)
    out = bed.provision().stdout
    check("loaded and verified" in out, "a re-run of provision firewall restores the table", out)
    took = bed.wait_lock("held", 10)
    check(took < 3, f"the restored lock is seen within {took:.2f} s")
    answer = bed.hook()
    check("params" in answer, "tool calls pass again once the lock is restored", answer)
    open(go, "w").close()
    out, _ = held.communicate(timeout=30)
    r = bed.probe_results(bed.agent, out)
    check(not r[0]["ok"] and not bed.seen(bed.provider_log, path="/held-agent"),
          f"that connection dies at its first packet after the restore ({r[0].get('error')}); nothing reached the provider", r)

    # -- Altered rather than deleted: an accept rule inserted ahead of ours.
    sh("nft", "insert", "rule", "inet", "clawgate_egress", "agent_out", "accept", ns=bed.vps)
    bed.wait_lock("lost", 10)
    answer = bed.hook()
    check(answer.get("block") is True and "was changed" in answer.get("blockReason", ""),
          "an altered table blocks tool calls too (reason names the change)", answer)
    bed.provision()
    bed.wait_lock("held", 10)
    check("params" in bed.hook(), "and they pass again after provision firewall")

    # -- Counters going backwards (table reloaded between two checks): audited as a gap.
    bed.probe(bed.agent, [tcp(PROVIDER4, PROVIDER_PORT, "/direct-agent")])
    time.sleep(1.5)
    sh("nft", "-f", bed.nft_file, ns=bed.vps)
    time.sleep(2.5)
    check(bed.health()["egressLock"] == "held", "a reload by hand keeps the lock held (the table never went missing)")

    # -- The audit trail.
    records = bed.audit()
    lock_events = [(r["kind"], json.loads(r["record"]).get("reason", "")) for r in records
                   if r["kind"].startswith("egress_lock.")]
    kinds = [k for k, _ in lock_events]
    check(kinds == ["egress_lock.lost", "egress_lock.restored", "egress_lock.lost", "egress_lock.restored",
                    "egress_lock.lost", "egress_lock.restored", "egress_lock.lost", "egress_lock.restored"],
          "audit: lost/restored for the missing table at start, the flush, the alteration and the reload gap",
          lock_events)
    check("missing" in lock_events[2][1] and "was changed" in lock_events[4][1] and "went back" in lock_events[6][1],
          "each loss says why", lock_events)
    blocked = [r for r in records if r["kind"] == "decision" and '"egress_unlocked"' in r["record"]]
    check(len(blocked) == 3, f"audit: {len(blocked)} tool calls recorded as blocked by the lock", blocked)
    out = bed.clawgate("audit", "verify", "--config", bed.config).stdout
    check("intact" in out, "the audit chain verifies", out)

    # -- The same daemon without CAP_NET_ADMIN cannot read the ruleset: it must not trust what it
    #    cannot see.
    bed.serve.terminate()
    bed.serve.wait(timeout=20)
    bed.start_serve(net_admin=False)
    bed.wait_lock("lost", 5)
    answer = bed.hook()
    check(answer.get("block") is True and "CAP_NET_ADMIN" in answer.get("blockReason", ""),
          "without CAP_NET_ADMIN the lock cannot be read: tool calls are blocked and the reason says why",
          answer)


def main():
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces, nftables, throwaway users)")
    if not BIN or not os.path.isfile(BIN):
        sys.exit("set CLAWGATE_BIN to the clawgate binary")
    bed = Bed()
    code = 0
    try:
        run(bed)
        print(f"\nPASS: {checks} checks", flush=True)
    except Failed as e:
        code = 1
        print(f"\nFAILED after {checks} checks: {e}", flush=True)
        if os.path.exists(bed.serve_log):
            print("---- serve.log (tail) ----")
            with open(bed.serve_log, encoding="utf-8") as f:
                print("".join(f.readlines()[-40:]))
    finally:
        bed.cleanup()
    sys.exit(code)


BIN = os.environ.get("CLAWGATE_BIN", "")

if __name__ == "__main__":
    main()
