// The Hub protocol's test vectors (hub/testdata/vectors.json), reproduced with Node's own crypto
// (what the TypeScript Hub uses): canonical JSON, byte-identical Ed25519 signatures for decisions,
// commands and keyset statements, the audit hash chain, and every signed example in
// hub/openapi.json verifying against the vector keys.
// Run: node --test hub/testdata/
import { test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, sign, verify, createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const v = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url), "utf8"));
const doc = JSON.parse(readFileSync(new URL("../openapi.json", import.meta.url), "utf8"));

// RFC 8785 restricted to the protocol's payloads: sorted keys (UTF-16 code units, which is what
// Array.prototype.sort compares), no whitespace, JSON.stringify's string escaping, safe integers.
function canonical(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error(`not a safe integer: ${value}`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
}

function privateKey(seedHex) {
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(seedHex, "hex")]);
  return createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
}

function publicKey(base64) {
  const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(base64, "base64")]);
  return createPublicKey({ key: spki, format: "der", type: "spki" });
}

const keys = Object.fromEntries(v.keys.map((k) => [k.kid, k]));

test("public keys derive from the seeds", () => {
  for (const k of v.keys) {
    const spki = createPublicKey(privateKey(k.seed_hex)).export({ format: "der", type: "spki" });
    assert.equal(spki.subarray(-32).toString("base64"), k.public_key, k.kid);
  }
});

test("canonical JSON cases", () => {
  for (const c of v.canonical_json) assert.equal(canonical(c.value), c.canonical);
});

for (const s of v.signatures) {
  test(`${s.name}: canonical bytes, message and signature are byte-identical`, () => {
    assert.equal(canonical(s.payload), s.canonical_utf8);
    assert.equal(s.payload.kid, s.signer, "the payload names its own signer");
    const message = Buffer.concat([Buffer.from(s.prefix, "utf8"), Buffer.from(s.canonical_utf8, "utf8")]);
    assert.equal(message.toString("hex"), s.message_hex);
    const sig = sign(null, message, privateKey(keys[s.signer].seed_hex));
    assert.equal(sig.toString("hex"), s.signature_hex);
    assert.equal(sig.toString("base64"), s.signature_base64);
    assert.ok(verify(null, message, publicKey(keys[s.signer].public_key), sig));
  });
}

test("a changed payload no longer verifies", () => {
  const s = v.signatures.find((x) => x.name === "decision");
  const forged = { ...s.payload, decision: "allow_24h" };
  const message = Buffer.concat([Buffer.from(s.prefix), Buffer.from(canonical(forged))]);
  assert.ok(!verify(null, message, publicKey(keys[s.signer].public_key), Buffer.from(s.signature_hex, "hex")));
});

function auditHash(r) {
  const h = createHash("sha256");
  h.update("clawgate-audit/1\0");
  for (const part of [String(r.seq), String(r.ts), r.kind, r.prev, r.record]) {
    h.update(part, "utf8");
    h.update("\0");
  }
  return h.digest("hex");
}

test("audit chain: every hash recomputes and links to the one before", () => {
  let prev = v.audit_chain.genesis;
  let seq = 1;
  for (const r of v.audit_chain.records) {
    assert.equal(r.seq, seq++);
    assert.equal(r.prev, prev);
    assert.equal(auditHash(r), r.hash);
    prev = r.hash;
  }
});

// Every {signed, signature} object anywhere in the OpenAPI examples.
function* signedObjects(node) {
  if (node && typeof node === "object") {
    if ("signed" in node && "signature" in node) yield node;
    for (const child of Object.values(node)) yield* signedObjects(child);
  }
}

test("every signed example in openapi.json verifies with its kid", () => {
  const prefixes = { decision: "clawgate-decision/1\n", command: "clawgate-command/1\n", keyset: "clawgate-keyset/1\n" };
  let n = 0;
  for (const o of signedObjects(doc.paths)) {
    const kind = "approval_id" in o.signed ? "decision" : "command_id" in o.signed ? "command" : "keyset";
    const message = Buffer.concat([Buffer.from(prefixes[kind]), Buffer.from(canonical(o.signed))]);
    assert.ok(verify(null, message, publicKey(keys[o.signed.kid].public_key), Buffer.from(o.signature, "base64")), kind);
    n++;
  }
  assert.ok(n >= 4, `found ${n} signed examples`);
});
