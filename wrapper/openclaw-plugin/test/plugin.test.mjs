// Tests for the Clawgate OpenClaw plugin: a stub hook server on a Unix socket and a fake `api`.
// Run: node --test test/

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import plugin, { CONFIG_DEFAULTS, HOOK_PRIORITY, PLUGIN_VERSION } from "../index.js";

const here = dirname(fileURLToPath(import.meta.url));
const manifest = JSON.parse(readFileSync(join(here, "..", "openclaw.plugin.json"), "utf8"));
const pkg = JSON.parse(readFileSync(join(here, "..", "package.json"), "utf8"));

const SECRET = "sk-live-PLANTED-SECRET-123";
let dir;
let sock;
let server;
let requests; // [{path, body}]
let respond; // (req, res, body) => void, set per test
let ids = 0;
const newId = () => `call_${++ids}`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "clawgate-plugin-"));
  sock = join(dir, "hook.sock");
  server = createServer((req, res) => {
    res.on("error", () => {});
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      requests.push({ path: req.url, method: req.method, type: req.headers["content-type"],
        plugin: req.headers["x-clawgate-plugin"], body });
      respond(req, res, body);
    });
  });
  await new Promise((resolve) => server.listen(sock, resolve));
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  requests = [];
  respond = json(200, { params: {} });
  process.env.CLAWGATE_HOOK_SOCKET = sock;
});

function json(status, value) {
  return (req, res) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(typeof value === "string" ? value : JSON.stringify(value));
  };
}

/** Echo the event's params back as an allow decision. */
const allowEcho = (req, res, body) => json(200, { params: body.event.params })(req, res);

function fakeApi(pluginConfig) {
  const reg = { policies: [], hooks: {}, hookOpts: {}, middlewares: [], warnings: [] };
  const api = {
    id: "clawgate",
    registrationMode: "full",
    pluginConfig,
    logger: { info() {}, error() {}, warn: (m) => reg.warnings.push(m) },
    registerTrustedToolPolicy: (p) => reg.policies.push(p),
    on: (name, handler, opts) => {
      reg.hooks[name] = handler;
      reg.hookOpts[name] = opts;
    },
    registerAgentToolResultMiddleware: (handler, options) => reg.middlewares.push({ handler, options }),
  };
  plugin.register(api);
  return reg;
}

const toolEvent = (toolCallId, params = { command: "echo hi" }) => ({
  toolName: "exec", params, runId: "run-1", toolCallId,
});
const toolCtx = (toolCallId, extra = {}) => ({
  toolName: "exec", agentId: "main", sessionKey: "agent:main:main", sessionId: "s-1", runId: "run-1",
  toolCallId, trace: { traceId: "t", spanId: "s" }, requester: { senderIsOwner: true }, ...extra,
});

test("register wires the trusted policy, every hook and the middleware", () => {
  const reg = fakeApi();
  assert.equal(plugin.id, "clawgate");
  assert.equal(typeof plugin.name, "string");
  assert.equal(typeof plugin.description, "string");
  assert.equal(reg.policies.length, 1);
  assert.equal(reg.policies[0].id, "clawgate");
  assert.equal(typeof reg.policies[0].description, "string");
  assert.equal(typeof reg.policies[0].evaluate, "function");
  assert.deepEqual(Object.keys(reg.hooks).sort(), ["after_tool_call", "before_tool_call", "llm_output"]);
  assert.equal(reg.middlewares.length, 1);
  assert.deepEqual(reg.middlewares[0].options, { runtimes: ["openclaw"] });
  // register can run again (full + discovery): each call registers afresh.
  const again = fakeApi();
  assert.equal(again.policies.length, 1);
});

test("before_tool_call runs at the lowest priority", () => {
  const reg = fakeApi();
  assert.equal(reg.hookOpts.before_tool_call.priority, HOOK_PRIORITY);
  assert.ok(HOOK_PRIORITY <= -1_000_000);
  for (const name of ["after_tool_call", "llm_output"]) {
    assert.ok((reg.hookOpts[name]?.priority ?? 0) >= HOOK_PRIORITY);
  }
});

test("allow returns explicit params, exactly {params}", async () => {
  const reg = fakeApi();
  respond = json(200, { params: { command: "echo rewritten" }, extra: "ignored" });
  const id = newId();
  const out = await reg.hooks.before_tool_call(toolEvent(id), toolCtx(id));
  assert.deepEqual(out, { params: { command: "echo rewritten" } });
  assert.equal(requests.length, 1);
  assert.equal(requests[0].path, "/v1/before_tool_call");
  assert.equal(requests[0].method, "POST");
  assert.equal(requests[0].type, "application/json");
  // The daemon reports this version to the Hub; it must be the package's.
  assert.equal(requests[0].plugin, pkg.version);
  assert.equal(PLUGIN_VERSION, pkg.version);
});

test("trusted policy posts to /v1/trusted_policy and returns the same shapes", async () => {
  const reg = fakeApi();
  respond = allowEcho;
  const id = newId();
  const out = await reg.policies[0].evaluate(toolEvent(id), toolCtx(id));
  assert.deepEqual(out, { params: { command: "echo hi" } });
  assert.equal(requests[0].path, "/v1/trusted_policy");

  respond = json(200, { block: true, blockReason: "denied by Clawgate: test" });
  const id2 = newId();
  assert.deepEqual(await reg.policies[0].evaluate(toolEvent(id2), toolCtx(id2)),
    { block: true, blockReason: "denied by Clawgate: test" });
});

test("block returns {block, blockReason}", async () => {
  const reg = fakeApi();
  respond = json(200, { block: true, blockReason: "Clawgate: rm -rf / is critical", params: { x: 1 } });
  const id = newId();
  const out = await reg.hooks.before_tool_call(toolEvent(id), toolCtx(id));
  assert.deepEqual(out, { block: true, blockReason: "Clawgate: rm -rf / is critical" });
});

test("request body: event as received, ctx reduced to the allowed fields", async () => {
  const reg = fakeApi();
  respond = allowEcho;
  const id = newId();
  const ac = new AbortController();
  const event = { ...toolEvent(id), derivedPaths: ["/tmp/x"], someFn() {} };
  const ctx = toolCtx(id, {
    abortSignal: ac.signal, getSessionExtension: () => 1, workspaceDir: "/home/x", channelId: "c1",
    toolKind: "code_mode_exec", toolInputKind: "javascript",
  });
  await reg.hooks.before_tool_call(event, ctx);
  const { body } = requests[0];
  assert.deepEqual(body.event, {
    toolName: "exec", params: { command: "echo hi" }, runId: "run-1", toolCallId: id, derivedPaths: ["/tmp/x"],
  });
  assert.deepEqual(Object.keys(body.ctx).sort(), [
    "agentId", "channelId", "requester", "runId", "sessionId", "sessionKey", "toolCallId", "toolInputKind",
    "toolKind", "toolName", "trace",
  ]);
  assert.deepEqual(body.ctx.requester, { senderIsOwner: true });
});

test("hook server down (no socket) throws", async () => {
  process.env.CLAWGATE_HOOK_SOCKET = join(dir, "absent.sock");
  const reg = fakeApi();
  const id = newId();
  await assert.rejects(reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), /ENOENT|ECONNREFUSED/);
  await assert.rejects(reg.policies[0].evaluate(toolEvent(id), toolCtx(id)), /ENOENT|ECONNREFUSED/);
  assert.ok(reg.warnings.some((w) => w.includes(id)), "warns with the toolCallId");
});

test("HTTP 500 throws", async () => {
  const reg = fakeApi();
  respond = json(500, { params: {} });
  const id = newId();
  await assert.rejects(reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), /HTTP 500/);
});

test("malformed JSON throws without quoting the body", async () => {
  const reg = fakeApi();
  respond = json(200, `{"params": "${SECRET}`);
  const id = newId();
  await assert.rejects(reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), (err) => {
    assert.match(err.message, /not JSON/);
    assert.ok(!err.message.includes(SECRET));
    return true;
  });
});

test("wrongly shaped decisions throw", async () => {
  const reg = fakeApi();
  const bad = [
    {}, { allow: true }, [], null, "ok", { params: [] }, { params: "x" }, { block: true },
    { block: true, blockReason: 7 }, { block: "yes", blockReason: "x" }, { block: 1, params: {} },
  ];
  for (const answer of bad) {
    respond = json(200, JSON.stringify(answer));
    const id = newId();
    await assert.rejects(reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), /malformed decision/,
      `answer ${JSON.stringify(answer)} must throw`);
  }
  // block:false with params is an allow.
  respond = json(200, { block: false, params: { a: 1 } });
  const id = newId();
  assert.deepEqual(await reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), { params: { a: 1 } });
});

test("deadline exceeded throws within the deadline", async () => {
  const reg = fakeApi({ decisionDeadlineMs: 150 });
  respond = () => {}; // never answers
  const id = newId();
  const start = Date.now();
  await assert.rejects(reg.policies[0].evaluate(toolEvent(id), toolCtx(id)), /no answer within 150 ms/);
  const elapsed = Date.now() - start;
  assert.ok(elapsed >= 140 && elapsed < 1500, `elapsed ${elapsed} ms`);
});

test("ctx.abortSignal aborts the decision", async () => {
  const reg = fakeApi();
  respond = () => {};
  const id = newId();
  const ac = new AbortController();
  const pending = reg.hooks.before_tool_call(toolEvent(id), toolCtx(id, { abortSignal: ac.signal }));
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(pending, /aborted/);
  const id2 = newId();
  await assert.rejects(reg.hooks.before_tool_call(toolEvent(id2), toolCtx(id2, { abortSignal: ac.signal })), /aborted/);
});

test("oversized response throws (streamed and declared)", async () => {
  const reg = fakeApi();
  const big = `{"params":{"x":"${"a".repeat(8 * 1024 * 1024)}"}}`;
  respond = (req, res) => {
    res.writeHead(200, { "content-type": "application/json" }); // chunked, no length
    res.end(big);
  };
  const id = newId();
  await assert.rejects(reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), /larger than/);
  respond = json(200, big); // with content-length
  const id2 = newId();
  await assert.rejects(reg.hooks.before_tool_call(toolEvent(id2), toolCtx(id2)), /larger than/);
});

test("dedupe: trusted policy then hook for one call hit the server once", async () => {
  const reg = fakeApi();
  respond = allowEcho;
  const id = newId();
  const first = await reg.policies[0].evaluate(toolEvent(id), toolCtx(id));
  // OpenClaw hands the hook the params the policy returned.
  const second = await reg.hooks.before_tool_call(toolEvent(id, first.params), toolCtx(id));
  assert.deepEqual(first, { params: { command: "echo hi" } });
  assert.deepEqual(second, first);
  assert.notEqual(second, first, "each caller gets its own object");
  assert.equal(requests.length, 1);
  assert.equal(requests[0].path, "/v1/trusted_policy");
});

test("dedupe: concurrent callers share one in-flight request; key order does not matter", async () => {
  const reg = fakeApi();
  let release;
  respond = (req, res, body) => { release = () => allowEcho(req, res, body); };
  const id = newId();
  const a = reg.policies[0].evaluate(toolEvent(id, { a: 1, b: 2 }), toolCtx(id));
  const b = reg.hooks.before_tool_call(toolEvent(id, { b: 2, a: 1 }), toolCtx(id));
  await new Promise((r) => setTimeout(r, 50));
  release();
  assert.deepEqual(await a, { params: { a: 1, b: 2 } });
  assert.deepEqual(await b, { params: { a: 1, b: 2 } });
  assert.equal(requests.length, 1);
});

test("dedupe: the hook matches the params a trusted policy rewrote", async () => {
  const reg = fakeApi();
  respond = json(200, { params: { command: "echo safe" } });
  const id = newId();
  const first = await reg.policies[0].evaluate(toolEvent(id), toolCtx(id));
  const second = await reg.hooks.before_tool_call(toolEvent(id, first.params), toolCtx(id));
  assert.deepEqual(second, { params: { command: "echo safe" } });
  assert.equal(requests.length, 1);
});

test("dedupe: same toolCallId with different params asks again", async () => {
  const reg = fakeApi();
  respond = allowEcho;
  const id = newId();
  await reg.policies[0].evaluate(toolEvent(id, { command: "echo one" }), toolCtx(id));
  const out = await reg.hooks.before_tool_call(toolEvent(id, { command: "rm -rf /" }), toolCtx(id));
  assert.deepEqual(out, { params: { command: "rm -rf /" } });
  assert.equal(requests.length, 2);
  assert.equal(requests[1].path, "/v1/before_tool_call");
  assert.deepEqual(requests[1].body.event.params, { command: "rm -rf /" });
});

test("dedupe: no toolCallId, no memo; failures are not remembered", async () => {
  const reg = fakeApi();
  respond = allowEcho;
  const ev = { toolName: "exec", params: { command: "ls" } };
  await reg.policies[0].evaluate(ev, { toolName: "exec" });
  await reg.hooks.before_tool_call(ev, { toolName: "exec" });
  assert.equal(requests.length, 2);

  const id = newId();
  respond = json(503, {});
  await assert.rejects(reg.policies[0].evaluate(toolEvent(id), toolCtx(id)), /HTTP 503/);
  respond = allowEcho;
  assert.deepEqual(await reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), { params: { command: "echo hi" } });
  assert.equal(requests.length, 4);
});

const resultEvent = (id) => ({
  toolCallId: id, toolName: "exec", args: { command: "cat .env" }, cwd: "/work", isError: false,
  result: { content: [{ type: "text", text: `TOKEN=${SECRET}` }], details: { status: "completed", exitCode: 0 } },
});
const resultCtx = { runtime: "openclaw", agentId: "main", sessionId: "s-1", sessionKey: "agent:main:main", runId: "run-1" };

test("tool_result middleware returns the server's redacted result", async () => {
  const reg = fakeApi();
  const redacted = { content: [{ type: "text", text: "TOKEN=SECRET_REF(openai)" }], details: { status: "completed" } };
  respond = json(200, { result: redacted });
  const id = newId();
  const out = await reg.middlewares[0].handler(resultEvent(id), resultCtx);
  assert.deepEqual(out, { result: redacted });
  assert.equal(requests[0].path, "/v1/tool_result");
  assert.deepEqual(requests[0].body.event, resultEvent(id));
  assert.equal(requests[0].body.ctx.runtime, "openclaw");
  assert.equal(requests[0].body.ctx.toolCallId, id);
});

test("tool_result middleware withholds the result on any failure", async () => {
  const failures = {
    "server error": () => { respond = json(500, { result: {} }); },
    "malformed JSON": () => { respond = json(200, "{"); },
    "wrong shape": () => { respond = json(200, { result: { content: "text" } }); },
    "no result": () => { respond = json(200, {}); },
    "bad block": () => { respond = json(200, { result: { content: [{ type: "text", text: 1 }] } }); },
    "server down": () => { process.env.CLAWGATE_HOOK_SOCKET = join(dir, "absent.sock"); },
    "deadline": () => { respond = () => {}; },
  };
  for (const [name, arrange] of Object.entries(failures)) {
    process.env.CLAWGATE_HOOK_SOCKET = sock;
    arrange();
    const reg = fakeApi({ toolResultDeadlineMs: 100 });
    const out = await reg.middlewares[0].handler(resultEvent(newId()), resultCtx);
    assert.ok(out && out.result, `${name}: returns a replacement`);
    assert.ok(!JSON.stringify(out).includes(SECRET), `${name}: raw secret must not pass`);
    assert.equal(out.result.content.length, 1);
    assert.equal(out.result.content[0].type, "text");
    assert.match(out.result.content[0].text, /withheld.*Clawgate could not check it for secrets/);
    assert.equal(out.result.details.status, "error");
    assert.ok(!reg.warnings.join("\n").includes(SECRET), `${name}: logs hold no secret`);
  }
});

test("after_tool_call and llm_output post fire-and-forget and swallow errors", async () => {
  let reg = fakeApi();
  respond = json(204, "");
  const id = newId();
  const ev = { toolName: "exec", params: { command: `echo ${SECRET}` }, toolCallId: id, result: { content: [] }, durationMs: 3 };
  assert.equal(await reg.hooks.after_tool_call(ev, toolCtx(id)), undefined);
  const usage = { runId: "run-1", sessionId: "s-1", provider: "fake", model: "m", assistantTexts: [], usage: { input: 1, output: 2 } };
  assert.equal(await reg.hooks.llm_output(usage, { runId: "run-1", agentId: "main", workspaceDir: "/w" }), undefined);
  assert.deepEqual(requests.map((r) => r.path), ["/v1/after_tool_call", "/v1/llm_output"]);
  assert.deepEqual(requests[1].body.ctx, { runId: "run-1", agentId: "main" });

  respond = json(500, {});
  assert.equal(await reg.hooks.after_tool_call(ev, toolCtx(id)), undefined);
  process.env.CLAWGATE_HOOK_SOCKET = join(dir, "absent.sock");
  reg = fakeApi();
  assert.equal(await reg.hooks.after_tool_call(ev, toolCtx(id)), undefined);
  assert.equal(await reg.hooks.llm_output(usage, {}), undefined);
  assert.equal(reg.warnings.length, 2);
  assert.ok(!reg.warnings.join("\n").includes(SECRET), "logs hold no params");

  // Observer deadline: never answered, still resolves.
  process.env.CLAWGATE_HOOK_SOCKET = sock;
  reg = fakeApi({ observeDeadlineMs: 100 });
  respond = () => {};
  assert.equal(await reg.hooks.after_tool_call(ev, toolCtx(id)), undefined);
  assert.match(reg.warnings[0], /no answer within 100 ms/);
});

test("config: socketPath from pluginConfig, env override wins, defaults", async () => {
  delete process.env.CLAWGATE_HOOK_SOCKET;
  let reg = fakeApi({ socketPath: sock });
  respond = allowEcho;
  let id = newId();
  assert.deepEqual(await reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), { params: { command: "echo hi" } });

  process.env.CLAWGATE_HOOK_SOCKET = sock;
  reg = fakeApi({ socketPath: join(dir, "absent.sock") });
  id = newId();
  assert.deepEqual(await reg.hooks.before_tool_call(toolEvent(id), toolCtx(id)), { params: { command: "echo hi" } });

  assert.equal(CONFIG_DEFAULTS.socketPath, "/run/clawgate/hook.sock");
  assert.ok(CONFIG_DEFAULTS.decisionDeadlineMs > 60_000, "must exceed the server's 60 s approval wait");
  assert.equal(CONFIG_DEFAULTS.toolResultDeadlineMs, 10_000);
  assert.equal(CONFIG_DEFAULTS.observeDeadlineMs, 5_000);
});

test("manifest and package.json match what index.js registers and reads", () => {
  const reg = fakeApi();
  assert.equal(manifest.id, plugin.id);
  assert.deepEqual(manifest.activation, { onStartup: true });
  assert.equal(typeof manifest.version, "string");
  assert.deepEqual(manifest.contracts.trustedToolPolicies, reg.policies.map((p) => p.id));
  assert.deepEqual(manifest.contracts.agentToolResultMiddleware, reg.middlewares[0].options.runtimes);
  const schema = manifest.configSchema;
  assert.equal(schema.type, "object");
  assert.equal(schema.additionalProperties, false);
  assert.deepEqual(Object.keys(schema.properties).sort(), Object.keys(CONFIG_DEFAULTS).sort());
  assert.equal(schema.properties.socketPath.type, "string");
  for (const key of ["decisionDeadlineMs", "observeDeadlineMs", "toolResultDeadlineMs"]) {
    assert.equal(schema.properties[key].type, "integer", key);
  }
  assert.equal(pkg.name, "@clawgate/openclaw-plugin");
  assert.equal(pkg.type, "module");
  assert.deepEqual(pkg.openclaw.extensions, ["./index.js"]);
  assert.match(pkg.scripts.test, /^node --test test\//);
  assert.deepEqual(pkg.dependencies ?? {}, {});
});

test("index.js imports only node: built-ins", () => {
  const src = readFileSync(join(here, "..", "index.js"), "utf8");
  const specifiers = [...src.matchAll(/^\s*import\s[^;]*?from\s+["']([^"']+)["']/gm)].map((m) => m[1]);
  assert.ok(specifiers.length > 0);
  for (const s of specifiers) assert.ok(s.startsWith("node:"), s);
  assert.ok(!/\bimport\s*\(/.test(src), "no dynamic imports");
});
