// tests/interop/vectors.mjs - before interop.mjs trusts the third-party OPAQUE packages, check
// them against the RFC 9807 test vectors (tests/vectors/opaque-rfc9807.json): @serenity-kit/opaque
// on C.1.1 and C.1.2 (ristretto255-SHA512), @serenity-kit/opaque-p256 on C.1.5 and C.1.6
// (P256-SHA256), with the packages' random numbers scripted from the vectors' inputs.
//
//   node vectors.mjs VECTORS_JSON
//
// What the packages' API lets us compare, byte for byte: registration_request,
// registration_response, KE1, and KE2 up to server_mac. The rest (registration_upload,
// server_mac, KE3, session_key, export_key) depends on KSF = Identity and the context
// "OPAQUE-POC", which neither package exposes (they fix the context to empty and offer only
// Argon2id); interop.mjs covers that part against bkvd, whose C implementation matches every
// vector output (tests/test_vectors.c). Also checks that the WebAssembly of each package
// carries the final RFC's labels and none of the drafts'. Prints "ok"/"not ok" lines, numbered
// from BKV_INTEROP_SETUP_PASSED + 1, and "vectors: N passed, M failed" (N counting those
// already passed); exits non-zero on any failure.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as r255 from "@serenity-kit/opaque";
import * as p256 from "@serenity-kit/opaque-p256";
import { check, summary } from "./tap.mjs";

const vectorsPath = process.argv[2];
if (!vectorsPath) {
  console.error("usage: node vectors.mjs VECTORS_JSON");
  process.exit(2);
}
const vectors = JSON.parse(readFileSync(vectorsPath, "utf8")).vectors;

function same(name, got, want) {
  return check(name, got === want, `\n    got  ${got}\n    want ${want}`);
}

const hex = (h) => Buffer.from(h, "hex");
const b64u = (bytes) => Buffer.from(bytes).toString("base64url");
const toHex = (s) => Buffer.from(s, "base64url").toString("hex");

// The packages are Rust (opaque-ke 4) compiled to WebAssembly; their randomness comes from
// crypto.getRandomValues. Scripted here: each call takes the next value. A ristretto255
// scalar is drawn from 64 bytes reduced mod the group order, so a 32-byte little-endian
// scalar is padded with zeros; any other size mismatch, or a call with nothing scripted,
// is recorded and fails the check.
const realGetRandomValues = globalThis.crypto.getRandomValues.bind(globalThis.crypto);
let script = null;
const scriptErrors = [];
Object.defineProperty(globalThis.crypto, "getRandomValues", {
  configurable: true,
  value: (array) => {
    if (script === null) return realGetRandomValues(array);
    const next = script.shift();
    if (next === undefined) {
      scriptErrors.push(`unscripted call for ${array.length} bytes`);
      return realGetRandomValues(array);
    }
    const { bytes, padTo } = next;
    if (array.length !== (padTo || bytes.length)) {
      scriptErrors.push(`call for ${array.length} bytes, scripted ${padTo || bytes.length}`);
    }
    array.fill(0);
    array.set(bytes.subarray(0, Math.min(bytes.length, array.length)));
    return array;
  },
});
function scripted(values, fn) {
  script = values;
  scriptErrors.length = 0;
  try {
    return fn();
  } finally {
    const left = script.length;
    script = null;
    if (left > 0) scriptErrors.push(`${left} scripted values not used`);
  }
}

// The final RFC's labels, and the drafts' that must not appear, in each package's WebAssembly.
const require = createRequire(import.meta.url);
function wasmOf(pkg) {
  const js = readFileSync(require.resolve(pkg), "utf8");
  const m = js.match(/'([A-Za-z0-9+/=]{100000,})'/);
  return m ? Buffer.from(m[1], "base64") : null;
}
const finalLabels = ["OPAQUEv1-", "OPAQUE-DeriveDiffieHellmanKeyPair", "OPAQUE-DeriveKeyPair",
  "OPRFV1-", "HashToGroup-", "CredentialResponsePad", "MaskingKey", "ExportKey"];
const draftLabels = ["RFCXXXX", "OPAQUE-DeriveAuthKeyPair", "VOPRF"];

const packages = [
  { pkg: "@serenity-kit/opaque", lib: r255, sections: ["C.1.1", "C.1.2"], scalar: 64, mac: 64 },
  { pkg: "@serenity-kit/opaque-p256", lib: p256, sections: ["C.1.5", "C.1.6"], scalar: 32, mac: 32 },
];
for (const { pkg, lib, sections, scalar, mac } of packages) {
  await lib.ready;
  const wasm = wasmOf(pkg);
  if (check(`${pkg}: its WebAssembly module found`, wasm !== null)) {
    const missing = finalLabels.filter((l) => !wasm.includes(l));
    const present = draftLabels.filter((l) => wasm.includes(l));
    check(`${pkg}: RFC 9807/9497 labels present, draft labels absent`,
      missing.length === 0 && present.length === 0,
      `missing ${JSON.stringify(missing)}, draft ${JSON.stringify(present)}`);
  }
  const real = vectors.filter((v) => sections.includes(v.rfc9807_section));
  check(`${pkg}: vectors ${sections.join(", ")} in the file`, real.length === sections.length);
  for (const v of real) {
    const i = v.inputs;
    const out = v.outputs;
    const name = `${pkg} ${v.rfc9807_section}`;
    const password = hex(i.password).toString("latin1");
    const userIdentifier = hex(i.credential_identifier).toString("latin1");
    const identifiers = i.client_identity
      ? { client: hex(i.client_identity).toString("latin1"),
          server: hex(i.server_identity).toString("latin1") }
      : undefined;
    try {
      // ServerSetup = oprf_seed || server private key || the fake record's public key.
      const serverSetup = b64u(Buffer.concat([hex(i.oprf_seed), hex(i.server_private_key),
        hex(i.server_public_key)]));
      same(`${name}: server public key`, toHex(lib.server.getPublicKey(serverSetup)),
        i.server_public_key);
      const reg = scripted([{ bytes: hex(i.blind_registration), padTo: scalar }],
        () => lib.client.startRegistration({ password }));
      check(`${name}: randomness scripted (registration)`, scriptErrors.length === 0,
        scriptErrors.join("; "));
      same(`${name}: registration_request`, toHex(reg.registrationRequest),
        out.registration_request);
      const rr = lib.server.createRegistrationResponse({
        serverSetup, userIdentifier, registrationRequest: reg.registrationRequest });
      same(`${name}: registration_response`, toHex(rr.registrationResponse),
        out.registration_response);
      const login = scripted([{ bytes: hex(i.blind_login), padTo: scalar },
        { bytes: hex(i.client_keyshare_seed) }, { bytes: hex(i.client_nonce) }],
      () => lib.client.startLogin({ password }));
      check(`${name}: randomness scripted (KE1)`, scriptErrors.length === 0,
        scriptErrors.join("; "));
      same(`${name}: KE1`, toHex(login.startLoginRequest), out.KE1);
      // The server draws a scalar it does not use for a registered user first.
      const server = scripted([{ bytes: Buffer.alloc(scalar, 7) }, { bytes: hex(i.masking_nonce) },
        { bytes: hex(i.server_keyshare_seed) }, { bytes: hex(i.server_nonce) }],
      () => lib.server.startLogin({
        serverSetup, registrationRecord: b64u(hex(out.registration_upload)),
        startLoginRequest: login.startLoginRequest, userIdentifier, identifiers }));
      check(`${name}: randomness scripted (KE2)`, scriptErrors.length === 0,
        scriptErrors.join("; "));
      const ke2 = toHex(server.loginResponse);
      same(`${name}: KE2 up to server_mac`, ke2.slice(0, -2 * mac), out.KE2.slice(0, -2 * mac));
    } catch (e) {
      check(`${name}`, false, e instanceof Error ? e.stack || e.message : String(e));
    }
  }
}
summary("vectors: ");
