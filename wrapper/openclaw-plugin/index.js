// Clawgate plugin for OpenClaw (>= 2026.9.6).
//
// A thin shim: every tool call, tool result and usage report is forwarded to the Clawgate hook
// server over a Unix socket, and the server's answer is returned to OpenClaw. The plugin holds no
// policy and no secret. Every failure on the decision path throws, which OpenClaw turns into a
// blocked tool call (fail closed); a tool result that cannot be checked is withheld.
//
// Only `node:` built-ins, no dependencies, nothing imported from OpenClaw.

import { request } from "node:http";

// Sent with every request so the daemon can report the plugin's version to the Hub (keep equal
// to package.json's "version").
export const PLUGIN_VERSION = "0.1.0";

export const CONFIG_DEFAULTS = Object.freeze({
  socketPath: "/run/clawgate/hook.sock",
  // Must exceed the hook server's approval wait (60 s): a call held for approval still gets an
  // answer. OpenClaw applies no timeout to trusted policies; for before_tool_call the operator
  // raises plugins.entries.clawgate.hooks.timeouts.before_tool_call above this (default 15 s).
  decisionDeadlineMs: 70_000,
  toolResultDeadlineMs: 10_000,
  observeDeadlineMs: 5_000,
});

// Lowest priority: OpenClaw runs before_tool_call handlers high to low and the last returned
// `params` wins, so the security hook must run last and always return explicit params.
export const HOOK_PRIORITY = -1_000_000;

const PLUGIN_ID = "clawgate";
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
const MEMO_TTL_MS = 5 * 60 * 1000;
const MEMO_MAX_ENTRIES = 10_000;
// The only ctx fields sent to the server: never abortSignal, getSessionExtension or other functions.
const CTX_FIELDS = [
  "agentId", "sessionKey", "sessionId", "runId", "toolCallId", "toolName", "toolKind",
  "toolInputKind", "channelId", "requester", "trace",
];

const isPlainObject = (v) =>
  v !== null && typeof v === "object" && !Array.isArray(v) &&
  (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

/** Config from api.pluginConfig (already validated by the manifest schema), env override last. */
function resolveConfig(pluginConfig, env, warn) {
  const cfg = { ...CONFIG_DEFAULTS };
  const given = isPlainObject(pluginConfig) ? pluginConfig : {};
  if (typeof given.socketPath === "string" && given.socketPath !== "") cfg.socketPath = given.socketPath;
  for (const key of ["decisionDeadlineMs", "toolResultDeadlineMs", "observeDeadlineMs"]) {
    if (given[key] === undefined) continue;
    if (Number.isInteger(given[key]) && given[key] > 0) cfg[key] = given[key];
    else warn(`clawgate: ignoring invalid ${key}; using ${cfg[key]}`);
  }
  if (env.CLAWGATE_HOOK_SOCKET) cfg.socketPath = env.CLAWGATE_HOOK_SOCKET;
  return cfg;
}

function pickCtx(ctx, extra = []) {
  const out = {};
  if (!ctx || typeof ctx !== "object") return out;
  for (const key of [...CTX_FIELDS, ...extra]) {
    if (ctx[key] !== undefined && typeof ctx[key] !== "function") out[key] = ctx[key];
  }
  return out;
}

/**
 * POST a JSON body to the hook server and resolve with the parsed JSON answer. Rejects on any
 * transport error, deadline, abort, non-2xx status, oversized or non-JSON body. Error messages
 * never quote the request or response body (either may hold secrets).
 */
function post(socketPath, path, payload, deadlineMs, signal) {
  return new Promise((resolve, reject) => {
    // JSON.stringify drops functions; a cycle or BigInt throws, which rejects (fail closed).
    let body;
    try {
      body = Buffer.from(JSON.stringify(payload), "utf8");
    } catch {
      reject(new Error(`clawgate: ${path}: event is not serialisable`));
      return;
    }
    if (signal?.aborted) {
      reject(new Error(`clawgate: ${path}: aborted`));
      return;
    }
    let settled = false;
    let timer;
    const onAbort = () => req.destroy(new Error(`clawgate: ${path}: aborted`));
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener?.("abort", onAbort);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(value);
    };
    const req = request({
      socketPath,
      method: "POST",
      path,
      headers: {
        "content-type": "application/json",
        "content-length": body.length,
        "x-clawgate-plugin": PLUGIN_VERSION,
      },
    });
    timer = setTimeout(
      () => req.destroy(new Error(`clawgate: ${path}: no answer within ${deadlineMs} ms`)),
      deadlineMs,
    );
    signal?.addEventListener?.("abort", onAbort, { once: true });
    req.on("error", (err) => finish(err instanceof Error ? err : new Error(String(err))));
    req.on("response", (res) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.resume();
        finish(new Error(`clawgate: ${path}: hook server answered HTTP ${status}`));
        return;
      }
      if (Number(res.headers["content-length"]) > MAX_RESPONSE_BYTES) {
        finish(new Error(`clawgate: ${path}: response larger than ${MAX_RESPONSE_BYTES} bytes`));
        return;
      }
      const chunks = [];
      let size = 0;
      res.on("data", (chunk) => {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) {
          finish(new Error(`clawgate: ${path}: response larger than ${MAX_RESPONSE_BYTES} bytes`));
        } else chunks.push(chunk);
      });
      res.on("error", (err) => finish(err));
      res.on("close", () => finish(new Error(`clawgate: ${path}: response cut short`)));
      res.on("end", () => {
        let parsed;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          // Not the SyntaxError message: since Node 20 it quotes the body.
          finish(new Error(`clawgate: ${path}: response is not JSON`));
          return;
        }
        finish(null, parsed);
      });
    });
    req.end(body);
  });
}

/** Strict reading of a decision: `{block:true, blockReason}` or `{params}`; anything else throws. */
function toDecision(path, body) {
  if (isPlainObject(body)) {
    if (body.block === true) {
      if (typeof body.blockReason === "string") return { block: true, blockReason: body.blockReason };
    } else if ((body.block === undefined || body.block === false) && isPlainObject(body.params)) {
      return { params: body.params };
    }
  }
  throw new Error(`clawgate: ${path}: malformed decision from hook server`);
}

/** Stable JSON (sorted keys) so two equal param objects give the same memo key. */
function stableJson(value) {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined && typeof value[k] !== "function").sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

const callKey = (event, params) =>
  stableJson({ toolName: event?.toolName, toolKind: event?.toolKind, params });

// Decide once per tool call: the trusted policy runs first, then the before_tool_call hook sees
// the same call. Module scope, so it is shared by every registration (full and discovery) in
// this process. Keyed by socket + toolCallId; the entry also records the call it answered so a
// reused id with other params is decided afresh. After a `{params}` decision the hook sees the
// params the policy returned, so those match too.
const memo = new Map(); // key -> { inKey, outKey, promise, expires }

function memoLookup(key, argsKey, now) {
  const entry = memo.get(key);
  if (!entry) return undefined;
  if (entry.expires <= now) {
    memo.delete(key);
    return undefined;
  }
  return entry.inKey === argsKey || entry.outKey === argsKey ? entry : undefined;
}

function memoStore(key, entry, now) {
  memo.delete(key); // re-insert at the end: Map order is age order
  if (memo.size >= MEMO_MAX_ENTRIES) {
    for (const [k, e] of memo) if (e.expires <= now) memo.delete(k);
    for (const k of memo.keys()) {
      if (memo.size < MEMO_MAX_ENTRIES) break;
      memo.delete(k);
    }
  }
  memo.set(key, entry);
}

function decide(cfg, path, event, ctx) {
  const toolCallId = event?.toolCallId ?? ctx?.toolCallId;
  const ask = () =>
    post(cfg.socketPath, path, { event, ctx: pickCtx(ctx) }, cfg.decisionDeadlineMs, ctx?.abortSignal)
      .then((body) => toDecision(path, body));
  if (typeof toolCallId !== "string" || toolCallId === "") return ask();

  const now = Date.now();
  const key = `${cfg.socketPath}\0${toolCallId}`;
  const argsKey = callKey(event, event?.params);
  const hit = memoLookup(key, argsKey, now);
  // Each caller gets its own copy: OpenClaw may hold on to the returned params.
  if (hit) return hit.promise.then((d) => structuredClone(d));

  const entry = { inKey: argsKey, outKey: undefined, promise: ask(), expires: now + MEMO_TTL_MS };
  memoStore(key, entry, now);
  entry.promise.then(
    (d) => {
      if (d.params) entry.outKey = callKey(event, d.params);
    },
    () => {
      if (memo.get(key) === entry) memo.delete(key); // failures are not remembered
    },
  );
  return entry.promise.then((d) => structuredClone(d));
}

/** The replacement shown to the model when a result could not be checked for secrets. */
function withheldResult(toolName, reason) {
  return {
    content: [{
      type: "text",
      text: `The output of tool ${toolName || "(unknown)"} was withheld: Clawgate could not check it ` +
        `for secrets (${reason}). The tool did run; do not re-run it just to see the output.`,
    }],
    // middlewareError lets OpenClaw substitute its own "Message delivered" notice for a message
    // that was in fact sent, so the model does not send it twice.
    details: { status: "error", middlewareError: true, clawgate: "withheld" },
  };
}

/** Minimal check of OpenClaw's AgentToolResult: {content: (text|image)[], details?}. */
function isToolResult(v) {
  return isPlainObject(v) && Array.isArray(v.content) && v.content.every((b) =>
    isPlainObject(b) && (
      (b.type === "text" && typeof b.text === "string") ||
      (b.type === "image" && typeof b.mimeType === "string" && typeof b.data === "string")));
}

function register(api) {
  const logger = api?.logger;
  const warn = (msg) => {
    try {
      logger?.warn?.(msg);
    } catch {
      // a logger failure must not change a decision
    }
  };
  const cfg = resolveConfig(api?.pluginConfig, process.env, warn);
  // Log only the tool name, call id and our own error message: never params or results.
  const label = (event, ctx) =>
    `tool=${event?.toolName ?? ctx?.toolName ?? "?"} toolCallId=${event?.toolCallId ?? ctx?.toolCallId ?? "-"}`;

  const gate = (path) => async (event, ctx) => {
    try {
      return await decide(cfg, path, event, ctx);
    } catch (err) {
      warn(`clawgate: blocking ${label(event, ctx)}: ${err?.message ?? err}`);
      throw err; // OpenClaw blocks the call
    }
  };

  // Trusted tier: runs before every before_tool_call hook, and is the only gate that can fire in
  // `openclaw agent exec` (where ordinary hooks never fire; see README for the condition).
  // OpenClaw applies no timeout here: our deadline is the bound.
  api.registerTrustedToolPolicy({
    id: PLUGIN_ID,
    description: "Clawgate: classify and gate every tool call (fails closed)",
    evaluate: gate("/v1/trusted_policy"),
  });
  api.on("before_tool_call", gate("/v1/before_tool_call"), { priority: HOOK_PRIORITY });

  // What the model sees of a tool result, with vault secrets redacted by the server. OpenClaw
  // passes the raw result through when a middleware returns nothing, so every path returns one.
  api.registerAgentToolResultMiddleware(async (event, ctx) => {
    try {
      // The middleware ctx is {runtime, agentId, sessionId, sessionKey, runId}: add the call's ids.
      const callCtx = { ...ctx, toolCallId: event?.toolCallId, toolName: event?.toolName };
      const body = await post(cfg.socketPath, "/v1/tool_result",
        { event, ctx: pickCtx(callCtx, ["runtime"]) }, cfg.toolResultDeadlineMs, ctx?.abortSignal);
      if (!isPlainObject(body) || !isToolResult(body.result)) {
        throw new Error("clawgate: /v1/tool_result: malformed answer from hook server");
      }
      return { result: body.result };
    } catch (err) {
      warn(`clawgate: withholding result of ${label(event, ctx)}: ${err?.message ?? err}`);
      return { result: withheldResult(event?.toolName, "hook server unavailable or invalid answer") };
    }
  }, { runtimes: ["openclaw"] });

  // Observers: fire-and-forget in OpenClaw; they never reject.
  const observe = (path) => (event, ctx) =>
    post(cfg.socketPath, path, { event, ctx: pickCtx(ctx) }, cfg.observeDeadlineMs).then(
      () => undefined,
      (err) => warn(`clawgate: ${path} not delivered (${label(event, ctx)}): ${err?.message ?? err}`),
    );
  api.on("after_tool_call", observe("/v1/after_tool_call"));
  // Needs plugins.entries.clawgate.hooks.allowConversationAccess: true, else OpenClaw drops it.
  api.on("llm_output", observe("/v1/llm_output"));
}

export default {
  id: PLUGIN_ID,
  name: "Clawgate",
  description: "Gates OpenClaw tool calls through the Clawgate hook server (fails closed).",
  register,
};
