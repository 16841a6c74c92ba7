// The published bundle test vector, reproduced with Node's own crypto (what a TypeScript Hub
// uses): same public key, same manifest encoding and hash, byte-identical Ed25519 signature.
// Run: node --test policies/testdata/bundle/
import { test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, sign, verify, createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const v = JSON.parse(readFileSync(new URL("./vector-1.json", import.meta.url), "utf8"));
const bundle = JSON.parse(v.bundle_utf8);
const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(v.seed_hex, "hex")]);
const key = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
const manifest = Buffer.from(v.manifest_utf8, "utf8");
const message = Buffer.concat([Buffer.from(v.signed_message_prefix), manifest]);

test("public key derives from the seed", () => {
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  assert.equal(spki.subarray(-32).toString("base64"), v.public_key_base64);
});

test("manifest encoding and hash match", () => {
  assert.equal(manifest.toString("base64"), bundle.manifest);
  assert.equal(createHash("sha256").update(manifest).digest("hex"), v.manifest_sha256_hex);
});

test("Ed25519 signature is byte-identical and verifies", () => {
  assert.equal(sign(null, message, key).toString("base64"), bundle.signatures[0].sig);
  assert.ok(verify(null, message, createPublicKey(key), Buffer.from(bundle.signatures[0].sig, "base64")));
});

test("file hashes in the manifest match the carried files", () => {
  const m = JSON.parse(v.manifest_utf8);
  for (const [path, b64] of Object.entries(bundle.files)) {
    assert.equal(createHash("sha256").update(Buffer.from(b64, "base64")).digest("hex"), m.files[path]);
  }
});
