// tests/interop/interop.mjs - a third-party RFC 9807 client (@serenity-kit/opaque, opaque-ke
// compiled to WASM) and a third-party Connect client (connect-es, code generated from
// proto/bkv/v1/vault.proto by protoc-gen-es) against a running bkvd. Run by tests/interop/run.
//
//   node interop.mjs GEN_DIR
//
// Environment: BKV_VAULT (https://127.0.0.1:PORT), BKV_CA_FILE (the vault's TLS certificate),
// BKV_TOKEN (a bearer token for a fresh account), BKV_INTEROP_SETUP_PASSED (checks already passed
// by the run script, counted in the summary). Prints "ok ..." / "not ok ..." lines and
// "N passed, M failed"; exits non-zero on any failure.
import { createHmac, createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import * as opaque from "@serenity-kit/opaque";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

const genDir = process.argv[2];
if (!genDir) {
  console.error("usage: node interop.mjs GEN_DIR");
  process.exit(2);
}
const pb = await import(pathToFileURL(join(genDir, "bkv/v1/vault_pb.js")).href);
const { BackupKeyVault, Suite, AttemptInfoSchema } = pb;

const vault = process.env.BKV_VAULT;
const ca = readFileSync(process.env.BKV_CA_FILE);
const token = process.env.BKV_TOKEN.trim();

let passed = Number(process.env.BKV_INTEROP_SETUP_PASSED || 0);
let failed = 0;
function check(name, cond, detail) {
  if (cond) {
    passed++;
    console.log(`ok ${passed + failed} - ${name}`);
  } else {
    failed++;
    console.log(`not ok ${passed + failed} - ${name}${detail === undefined ? "" : ": " + detail}`);
  }
  return cond;
}
function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}
function fatal(name, err) {
  check(name, false, err instanceof Error ? err.stack || err.message : String(err));
  finish();
}

const b64u = (bytes) => Buffer.from(bytes).toString("base64url");
const unb64u = (s) => new Uint8Array(Buffer.from(s, "base64url"));
const eq = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

// HKDF-Expand (RFC 5869) with SHA-512, for L <= 64: T(1) = HMAC(PRK, info || 0x01).
function hkdfExpandSha512(prk, info, length) {
  const t1 = createHmac("sha512", prk)
    .update(Buffer.concat([Buffer.from(info), Buffer.from([1])]))
    .digest();
  return t1.subarray(0, length);
}
// nonce(12) || AES-256-GCM(key, nonce, plaintext, aad) (ciphertext || tag)
function seal(key, plaintext, aad) {
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]);
}
function open(key, sealed, aad) {
  sealed = Buffer.from(sealed);
  const nonce = sealed.subarray(0, 12);
  const tag = sealed.subarray(sealed.length - 16);
  const ct = sealed.subarray(12, sealed.length - 16);
  const d = createDecipheriv("aes-256-gcm", key, nonce);
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(tag);
  return Buffer.concat([d.update(ct), d.final()]);
}

const transport = createConnectTransport({
  baseUrl: vault,
  httpVersion: "1.1",
  useBinaryFormat: true,
  nodeOptions: { ca },
});
const client = createClient(BackupKeyVault, transport);
const auth = { headers: { Authorization: `Bearer ${token}` } };

await opaque.ready;
const suite = Suite.RISTRETTO255_SHA512;
const password = "correct horse battery staple";

// GetConfig
let config;
try {
  config = await client.getConfig({});
} catch (e) {
  fatal("GetConfig", e);
}
check("GetConfig: suites include SUITE_RISTRETTO255_SHA512", config.suites.includes(suite),
  JSON.stringify(config.suites));
const ksf = config.ksf;
check("GetConfig: ksf argon2id t=3 m=65536 p=4",
  ksf && ksf.algorithm === "argon2id" && ksf.iterations === 3 && ksf.memoryKib === 65536 &&
    ksf.parallelism === 4,
  JSON.stringify(ksf));
check("GetConfig: context is empty", config.context.length === 0,
  Buffer.from(config.context).toString("hex"));
const serverKey = config.serverKeys.find((k) => k.suite === suite);
check("GetConfig: a ristretto255 server key of 32 bytes", serverKey && serverKey.publicKey.length === 32);
const keyStretching = {
  "argon2id-custom": { iterations: ksf.iterations, memory: ksf.memoryKib, parallelism: ksf.parallelism },
};

// Register
const backupKey = randomBytes(32);
let exportKey;
try {
  const { clientRegistrationState, registrationRequest } = opaque.client.startRegistration({ password });
  const rs = await client.registerStart({ suite, registrationRequest: unb64u(registrationRequest) }, auth);
  const reg = opaque.client.finishRegistration({
    password,
    clientRegistrationState,
    registrationResponse: b64u(rs.registrationResponse),
    keyStretching,
  });
  exportKey = unb64u(reg.exportKey);
  check("serenity-kit sees the server key GetConfig published",
    eq(unb64u(reg.serverStaticPublicKey), serverKey.publicKey));
  const wrapKey = hkdfExpandSha512(exportKey, "bkv-v1 wrap", 32);
  const wrappedKey = seal(wrapKey, backupKey, "bkv-v1 wrap");
  const rf = await client.registerFinish({
    suite,
    registrationRecord: unb64u(reg.registrationRecord),
    wrappedKey,
    attemptLimit: 0,
  }, auth);
  check("RegisterStart/RegisterFinish with a serenity-kit registration",
    rf.recordVersion > 0n && rf.attemptLimit === 10, `version ${rf.recordVersion} limit ${rf.attemptLimit}`);
} catch (e) {
  fatal("register", e);
}

// Recover with the right password
try {
  const status = await client.getStatus({}, auth);
  check("GetStatus: registered with SUITE_RISTRETTO255_SHA512", status.registered && status.suite === suite);
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  const rs = await client.recoverStart({ suite, ke1: unb64u(startLoginRequest) }, auth);
  check("RecoverStart: 9 attempts remaining", rs.attemptsRemaining === 9, String(rs.attemptsRemaining));
  const login = opaque.client.finishLogin({
    password,
    clientLoginState,
    loginResponse: b64u(rs.ke2),
    keyStretching,
  });
  if (!check("serenity-kit accepts the vault's KE2 (finishLogin)", login))
    finish();
  check("finishLogin export_key equals the registration's", eq(unb64u(login.exportKey), exportKey));
  const rf = await client.recoverFinish({ ticket: rs.ticket, ke3: unb64u(login.finishLoginRequest) }, auth);
  check("RecoverFinish accepts serenity-kit's KE3", rf.sealedKey.length === 12 + 60 + 16,
    `sealed_key ${rf.sealedKey.length} bytes`);
  const releaseKey = hkdfExpandSha512(unb64u(login.sessionKey), "bkv-v1 release", 32);
  const wrapped = open(releaseKey, rf.sealedKey, "bkv-v1 release");
  const key = open(hkdfExpandSha512(unb64u(login.exportKey), "bkv-v1 wrap", 32), wrapped, "bkv-v1 wrap");
  check("the recovered key equals the registered one", eq(key, backupKey));
} catch (e) {
  fatal("recover", e);
}

// A wrong password
try {
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password: "wrong password" });
  const rs = await client.recoverStart({ suite, ke1: unb64u(startLoginRequest) }, auth);
  check("RecoverStart (wrong password): 9 attempts remaining (counter was reset)",
    rs.attemptsRemaining === 9, String(rs.attemptsRemaining));
  const login = opaque.client.finishLogin({
    password: "wrong password",
    clientLoginState,
    loginResponse: b64u(rs.ke2),
    keyStretching,
  });
  check("serenity-kit finishLogin fails with the wrong password", login === undefined || login === null);
  let err;
  try {
    await client.recoverFinish({ ticket: rs.ticket, ke3: randomBytes(64) }, auth);
  } catch (e) {
    err = ConnectError.from(e);
  }
  check("RecoverFinish with a random KE3 -> permission_denied",
    err && err.code === Code.PermissionDenied, err ? `${Code[err.code]}: ${err.rawMessage}` : "succeeded");
  const infos = err ? err.findDetails(AttemptInfoSchema) : [];
  check("the error carries bkv.v1.AttemptInfo{attempts_remaining 9, attempt_limit 10}",
    infos.length === 1 && infos[0].attemptsRemaining === 9 && infos[0].attemptLimit === 10,
    JSON.stringify(infos));
  const status = await client.getStatus({}, auth);
  check("GetStatus: 1 attempt used of 10", status.attemptsUsed === 1 && status.attemptLimit === 10,
    `${status.attemptsUsed}/${status.attemptLimit}`);
} catch (e) {
  fatal("wrong password", e);
}

finish();
