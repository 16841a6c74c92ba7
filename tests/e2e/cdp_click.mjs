#!/usr/bin/env node
// Tap an element of a web page like a person on a phone would, using headless Chromium over the
// Chrome DevTools Protocol. No npm dependencies: needs Node >= 22 (global WebSocket), e.g. the
// Node 24 that tests/e2e/setup.sh installs.
//
// Usage:
//   node cdp_click.mjs --url URL --selector 'CSS' [--expect-text TEXT] [--timeout-ms N]
//                      [--chromium PATH] [--screenshot out.png] [--mouse-only] [--verbose]
//                      [--set-file 'CSS=PATH']
//
// Steps: start `chromium --headless=new --no-sandbox --remote-debugging-port=0 --user-data-dir=<tmp>`,
// emulate a 390x844 mobile viewport with touch, open URL, wait for the selector, tap its centre
// with Input.dispatchTouchEvent (falls back to Input.dispatchMouseEvent when the tap produced no
// click), wait for the navigation / DOM change, optionally wait for --expect-text, print the
// resulting page text (document.body.innerText) on stdout. --set-file first puts the local file
// PATH into the <input type=file> matching CSS (DOM.setFileInputFiles, what a person picking the
// file in the chooser does), e.g. to upload a bundle before tapping Publish.
//
// Exit codes: 0 ok, 1 failure, 2 usage error, 3 timeout. Diagnostics go to stderr.
// Chromium is confined to loopback: every non-loopback request goes to a dead proxy.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const USAGE =
  "usage: node cdp_click.mjs --url URL --selector CSS [--expect-text TEXT] [--timeout-ms N] " +
  "[--chromium PATH] [--screenshot PNG] [--mouse-only] [--verbose] [--set-file CSS=PATH]";

function parseArgs(argv) {
  const o = { timeoutMs: 30000, chromium: process.env.CHROMIUM || "chromium", mouseOnly: false, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case "--url": o.url = val(); break;
      case "--selector": o.selector = val(); break;
      case "--expect-text": o.expectText = val(); break;
      case "--timeout-ms": o.timeoutMs = Number(val()); break;
      case "--chromium": o.chromium = val(); break;
      case "--screenshot": o.screenshot = val(); break;
      case "--mouse-only": o.mouseOnly = true; break;
      case "--verbose": o.verbose = true; break;
      case "--set-file": {
        const v = val();
        const eq = v.lastIndexOf("=");
        if (eq <= 0 || eq === v.length - 1) usage("--set-file wants CSS=PATH");
        o.setFile = { selector: v.slice(0, eq), path: v.slice(eq + 1) };
        break;
      }
      case "-h": case "--help": console.log(USAGE); process.exit(0);
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!o.url || !o.selector) usage("--url and --selector are required");
  if (!Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0) usage("--timeout-ms must be a positive number");
  return o;
}

function usage(msg) {
  process.stderr.write(`cdp_click: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const t0 = Date.now();
const log = (...a) => process.stderr.write(`cdp_click [${((Date.now() - t0) / 1000).toFixed(2)}s] ${a.join(" ")}\n`);
const vlog = (...a) => { if (opts.verbose) log(...a); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const remaining = () => opts.timeoutMs - (Date.now() - t0);

if (typeof WebSocket !== "function") {
  process.stderr.write(`cdp_click: this Node (${process.version}) has no global WebSocket; use Node >= 22\n`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// Chromium process
// ---------------------------------------------------------------------------------------------
const userDataDir = mkdtempSync(join(tmpdir(), "cdp-click-"));
let chrome = null;
let chromeStderr = "";
let exiting = false;
let closing = false; // set once we close the browser ourselves

function cleanup() {
  if (chrome && chrome.exitCode === null && chrome.signalCode === null) {
    try { process.kill(-chrome.pid, "SIGKILL"); } catch { try { chrome.kill("SIGKILL"); } catch {} }
  }
  try { rmSync(userDataDir, { recursive: true, force: true, maxRetries: 3 }); } catch {}
}

function finish(code, msg) {
  if (exiting) return;
  exiting = true;
  if (msg) log(msg);
  if (code !== 0 && chromeStderr && opts.verbose) process.stderr.write(`--- chromium stderr (tail) ---\n${chromeStderr.slice(-3000)}\n`);
  cleanup();
  process.exit(code);
}

process.on("SIGINT", () => finish(130, "interrupted"));
process.on("SIGTERM", () => finish(143, "terminated"));
process.on("uncaughtException", (e) => finish(1, `error: ${e && e.stack || e}`));
process.on("unhandledRejection", (e) => finish(1, `error: ${e && e.stack || e}`));
const globalTimer = setTimeout(() => finish(3, `timeout after ${opts.timeoutMs} ms`), opts.timeoutMs);

function startChromium() {
  const args = [
    "--headless=new", "--no-sandbox", "--remote-debugging-port=0", `--user-data-dir=${userDataDir}`,
    "--remote-debugging-address=127.0.0.1",
    "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--no-pings", "--metrics-recording-only", "--mute-audio",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication",
    // Loopback only: anything else goes to a dead proxy and fails.
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost;[::1]",
    "about:blank",
  ];
  vlog("spawn", opts.chromium, args.join(" "));
  chrome = spawn(opts.chromium, args, { stdio: ["ignore", "ignore", "pipe"], detached: true });
  chrome.on("error", (e) => finish(1, `cannot start chromium (${opts.chromium}): ${e.message}`));
  chrome.on("exit", (code, sig) => { if (!exiting && !closing) finish(1, `chromium exited early (code=${code} signal=${sig})\n${chromeStderr.slice(-2000)}`); });
  chrome.stderr.setEncoding("utf8");
  chrome.stderr.on("data", (d) => { chromeStderr += d; if (chromeStderr.length > 200000) chromeStderr = chromeStderr.slice(-100000); });
}

async function devtoolsUrl() {
  const file = join(userDataDir, "DevToolsActivePort");
  while (remaining() > 0) {
    const m = chromeStderr.match(/DevTools listening on (ws:\/\/\S+)/);
    if (m) return m[1];
    if (existsSync(file)) {
      const [port, path] = readFileSync(file, "utf8").split("\n");
      if (port && path) return `ws://127.0.0.1:${port.trim()}${path.trim()}`;
    }
    await sleep(50);
  }
  throw new Error("DevTools endpoint never appeared");
}

// ---------------------------------------------------------------------------------------------
// Minimal CDP client (flattened sessions over the browser websocket)
// ---------------------------------------------------------------------------------------------
class CDP {
  constructor(ws) {
    this.ws = ws; this.nextId = 1; this.pending = new Map(); this.listeners = [];
    ws.addEventListener("message", (ev) => {
      const msg = JSON.parse(typeof ev.data === "string" ? ev.data : Buffer.from(ev.data).toString("utf8"));
      if (msg.id !== undefined && this.pending.has(msg.id)) {
        const { resolve, reject, method } = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error) reject(new Error(`${method}: ${msg.error.message} ${msg.error.data || ""}`));
        else resolve(msg.result);
      } else if (msg.method) {
        for (const l of [...this.listeners]) l(msg);
      }
    });
    ws.addEventListener("close", () => { if (!exiting && !closing) finish(1, "DevTools websocket closed"); });
  }
  static connect(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.addEventListener("open", () => resolve(new CDP(ws)), { once: true });
      ws.addEventListener("error", (e) => reject(new Error(`websocket error connecting to ${url}: ${e.message || e.type}`)), { once: true });
    });
  }
  send(method, params = {}, sessionId) {
    const id = this.nextId++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify(msg));
    });
  }
  on(fn) { this.listeners.push(fn); return () => { this.listeners = this.listeners.filter((x) => x !== fn); }; }
  waitFor(pred, ms, what) {
    return new Promise((resolve, reject) => {
      const off = this.on((m) => { if (pred(m)) { clearTimeout(t); off(); resolve(m); } });
      const t = setTimeout(() => { off(); reject(new Error(`timed out waiting for ${what}`)); }, Math.max(1, ms));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Main flow
// ---------------------------------------------------------------------------------------------
async function main() {
  startChromium();
  const wsUrl = await devtoolsUrl();
  vlog("devtools", wsUrl);
  const cdp = await CDP.connect(wsUrl);

  const { targetId } = await cdp.send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await cdp.send("Target.attachToTarget", { targetId, flatten: true });
  const S = (method, params) => cdp.send(method, params, sessionId);
  const fromPage = (m) => m.sessionId === sessionId;

  // Track the main frame's navigations.
  let mainFrameId = null;
  let navCount = 0;          // committed main-frame navigations
  let navStarted = 0;        // main-frame navigations requested/started
  let loadCount = 0;
  cdp.on((m) => {
    if (!fromPage(m)) return;
    if (m.method === "Page.frameNavigated" && !m.params.frame.parentId) { navCount++; mainFrameId = m.params.frame.id; vlog("frameNavigated", m.params.frame.url); }
    if ((m.method === "Page.frameRequestedNavigation" || m.method === "Page.frameStartedNavigating" ||
         m.method === "Page.frameStartedLoading") && (!mainFrameId || m.params.frameId === mainFrameId)) navStarted++;
    if (m.method === "Page.loadEventFired") loadCount++;
    if (m.method === "Runtime.exceptionThrown") vlog("page exception", JSON.stringify(m.params.exceptionDetails.text));
  });

  await S("Page.enable");
  await S("Runtime.enable");
  await S("Emulation.setDeviceMetricsOverride", {
    width: 390, height: 844, deviceScaleFactor: 3, mobile: true,
    screenOrientation: { type: "portraitPrimary", angle: 0 },
  });
  await S("Emulation.setTouchEmulationEnabled", { enabled: true, maxTouchPoints: 5 });
  await S("Emulation.setUserAgentOverride", {
    userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36",
  });
  const frameTree = await S("Page.getFrameTree");
  mainFrameId = frameTree.frameTree.frame.id;

  const evaluate = async (expression) => {
    const r = await S("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`evaluate failed: ${r.exceptionDetails.text} ${r.exceptionDetails.exception?.description || ""}`);
    return r.result.value;
  };
  const evalSafe = async (expression) => { try { return await evaluate(expression); } catch { return undefined; } };
  const pageText = () => evalSafe("document.body ? document.body.innerText : ''");

  // Navigate.
  const loaded = cdp.waitFor((m) => fromPage(m) && m.method === "Page.loadEventFired", remaining(), "page load");
  const nav = await S("Page.navigate", { url: opts.url });
  if (nav.errorText) throw new Error(`navigation to ${opts.url} failed: ${nav.errorText}`);
  await loaded;
  log(`loaded ${opts.url}`);

  // Wait for the selector to exist and have a box.
  const selJson = JSON.stringify(opts.selector);
  const locate = `(() => {
    const el = document.querySelector(${selJson});
    if (!el) return null;
    el.scrollIntoView({ block: "center", inline: "center" });
    const r = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    const visible = r.width > 0 && r.height > 0 && cs.visibility !== "hidden" && cs.display !== "none";
    return { x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height, visible,
             disabled: !!el.disabled, tag: el.tagName };
  })()`;
  let box = null;
  while (remaining() > 0) {
    box = await evalSafe(locate);
    if (box && box.visible && !box.disabled) break;
    await sleep(100);
  }
  if (!box || !box.visible) throw new Error(`selector ${opts.selector} not found/visible`);
  log(`found ${opts.selector} <${box.tag.toLowerCase()}> at (${box.x.toFixed(0)},${box.y.toFixed(0)}) ${box.w.toFixed(0)}x${box.h.toFixed(0)}`);

  if (opts.setFile) {
    if (!existsSync(opts.setFile.path)) throw new Error(`--set-file: no file ${opts.setFile.path}`);
    const { root } = await S("DOM.getDocument", { depth: 0 });
    const { nodeId } = await S("DOM.querySelector", { nodeId: root.nodeId, selector: opts.setFile.selector });
    if (!nodeId) throw new Error(`--set-file: selector ${opts.setFile.selector} not found`);
    await S("DOM.setFileInputFiles", { nodeId, files: [opts.setFile.path] });
    const n = await evaluate(`document.querySelector(${JSON.stringify(opts.setFile.selector)}).files.length`);
    if (n !== 1) throw new Error(`--set-file: the input holds ${n} files`);
    log(`set ${opts.setFile.selector} to ${opts.setFile.path}`);
  }

  // Instrument the page so we can tell whether the tap produced a click.
  const before = await pageText();
  await evaluate(`(() => { window.__cdpClicks = 0; window.__cdpMarker = ${JSON.stringify(String(Math.random()))};
    document.addEventListener("click", () => { window.__cdpClicks++; }, true); return true; })()`);
  const navBefore = navCount, startedBefore = navStarted, loadBefore = loadCount;
  const reacted = async () => {
    if (navStarted > startedBefore || navCount > navBefore) return "navigation";
    const st = await evalSafe("({ clicks: window.__cdpClicks, marker: window.__cdpMarker })");
    if (!st || st.marker === undefined) return "navigation";
    if (st.clicks > 0) return "click";
    return null;
  };

  let method = null;
  if (!opts.mouseOnly) {
    const p = { x: box.x, y: box.y, radiusX: 4, radiusY: 4, force: 1, id: 1 };
    await S("Input.dispatchTouchEvent", { type: "touchStart", touchPoints: [p] });
    await sleep(60);
    await S("Input.dispatchTouchEvent", { type: "touchEnd", touchPoints: [] });
    const until = Date.now() + Math.min(2000, Math.max(200, remaining() - 500));
    while (Date.now() < until) {
      const r = await reacted();
      if (r) { method = `touch (${r})`; break; }
      await sleep(50);
    }
    if (!method) log("tap produced no click; falling back to mouse events");
  }
  if (!method) {
    const base = { x: box.x, y: box.y, button: "left", pointerType: "mouse" };
    await S("Input.dispatchMouseEvent", { ...base, type: "mouseMoved", button: "none" });
    await S("Input.dispatchMouseEvent", { ...base, type: "mousePressed", clickCount: 1, buttons: 1 });
    await sleep(40);
    await S("Input.dispatchMouseEvent", { ...base, type: "mouseReleased", clickCount: 1, buttons: 0 });
    const until = Date.now() + Math.min(3000, Math.max(200, remaining() - 500));
    while (Date.now() < until) {
      const r = await reacted();
      if (r) { method = `mouse (${r})`; break; }
      await sleep(50);
    }
    if (!method) throw new Error("neither touch nor mouse input produced a click on the element");
  }
  log(`input: ${method}`);

  // Wait for the effect: a navigation to finish loading, or the DOM text to change.
  let text = null;
  while (remaining() > 0) {
    const navigated = navStarted > startedBefore || navCount > navBefore;
    if (navigated) {
      if (loadCount > loadBefore) {
        text = await pageText();
        if (text !== undefined && (!opts.expectText || text.includes(opts.expectText))) break;
      }
    } else {
      text = await pageText();
      if (text !== undefined && text !== before && (!opts.expectText || text.includes(opts.expectText))) break;
      if (opts.expectText && text && text.includes(opts.expectText)) break;
    }
    await sleep(100);
  }
  if (remaining() <= 0) {
    const t = (await pageText()) || "";
    throw new Error(opts.expectText
      ? `expected text ${JSON.stringify(opts.expectText)} did not appear; page text:\n${t.slice(0, 2000)}`
      : `page did not change after the tap; page text:\n${t.slice(0, 2000)}`);
  }
  // Let late DOM updates settle briefly.
  await sleep(150);
  text = (await pageText()) ?? text;
  if (opts.expectText && !text.includes(opts.expectText)) {
    throw new Error(`expected text ${JSON.stringify(opts.expectText)} not on the page:\n${text.slice(0, 2000)}`);
  }
  if (opts.screenshot) {
    const shot = await S("Page.captureScreenshot", { format: "png" });
    writeFileSync(opts.screenshot, Buffer.from(shot.data, "base64"));
    log(`screenshot ${opts.screenshot}`);
  }
  const finalUrl = await evalSafe("location.href");
  log(`done url=${finalUrl}`);
  process.stdout.write(text.endsWith("\n") ? text : text + "\n");
  closing = true;
  try { await Promise.race([cdp.send("Browser.close"), sleep(2000)]); } catch {}
}

main().then(
  () => { clearTimeout(globalTimer); finish(0); },
  (e) => finish(remaining() <= 0 ? 3 : 1, `error: ${e && e.message || e}`),
);
