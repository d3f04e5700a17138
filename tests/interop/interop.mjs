// tests/interop/interop.mjs - third-party RFC 9807 clients (@serenity-kit/opaque for
// ristretto255-SHA512, @serenity-kit/opaque-p256 for P256-SHA256: opaque-ke compiled to WASM,
// checked against the RFC's vectors by vectors.mjs) and a third-party Connect client
// (connect-es, code generated from proto/bkv/v1/vault.proto by protoc-gen-es) against a
// running bkvd. Run by tests/interop/run.
//
//   node interop.mjs GEN_DIR
//
// For each suite: register (registration_ticket from RegisterStart handed to RegisterFinish,
// replaces_record_version 0) and recover the exact key; a wrong password (AttemptInfo);
// registering again without replaces_record_version (already_exists), with a wrong version
// (aborted), without or with a forged ticket (invalid_argument), then replacing with the
// current version (a new key under a new password; the old password fails); a small attempt
// limit exhausted (tombstone: GetStatus RECORD_STATE_DESTROYED, every RecoverStart
// failed_precondition with AttemptInfo{0, limit}, create refused, re-registration over it);
// and a counter lowered in the database by one SQL UPDATE (RecoverStart and GetStatus
// data_loss, no KE2).
//
// Environment: BKV_VAULT (https://127.0.0.1:PORT), BKV_CA_FILE (the vault's TLS certificate),
// BKV_TOKENS (JSON: account -> bearer token; accounts r255-main, r255-limit, r255-tamper and
// the same with p256-), BKV_ACCOUNT_PREFIX (the tokens' sub is prefix + account), BKV_DB (the
// vault's SQLite database, edited with the sqlite3 CLI), BKV_INTEROP_SETUP_PASSED (checks
// already passed by the run script, counted in the summary). Prints "ok ..." / "not ok ..."
// lines and "N passed, M failed"; exits non-zero on any failure.
import { createHmac, createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import * as r255 from "@serenity-kit/opaque";
import * as p256 from "@serenity-kit/opaque-p256";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { check, summary } from "./tap.mjs";

const genDir = process.argv[2];
if (!genDir) {
  console.error("usage: node interop.mjs GEN_DIR");
  process.exit(2);
}
const pb = await import(pathToFileURL(join(genDir, "bkv/v1/vault_pb.js")).href);
const { BackupKeyVault, Suite, RecordState, AttemptInfoSchema } = pb;

const vault = process.env.BKV_VAULT;
const ca = readFileSync(process.env.BKV_CA_FILE);
const tokens = JSON.parse(process.env.BKV_TOKENS);
const accountPrefix = process.env.BKV_ACCOUNT_PREFIX;
const db = process.env.BKV_DB;

function fatal(name, err) {
  check(name, false, err instanceof Error ? err.stack || err.message : String(err));
  summary();
}

const b64u = (bytes) => Buffer.from(bytes).toString("base64url");
const unb64u = (s) => new Uint8Array(Buffer.from(s, "base64url"));
const eq = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

// HKDF-Expand (RFC 5869) with the suite's hash, for L <= its output: T(1) = HMAC(PRK, info || 0x01).
function hkdfExpand(hash, prk, info, length) {
  const t1 = createHmac(hash, prk)
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

// The error of a call expected to fail (null if it succeeded), with its AttemptInfo details.
async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    const err = ConnectError.from(e);
    err.attemptInfos = err.findDetails(AttemptInfoSchema);
    return err;
  }
}
const describe = (err) =>
  err ? `${Code[err.code]}: ${err.rawMessage} ${JSON.stringify(err.attemptInfos)}` : "succeeded";
const attemptInfoIs = (err, remaining, limit) =>
  err !== null && err.attemptInfos.length === 1 &&
  err.attemptInfos[0].attemptsRemaining === remaining && err.attemptInfos[0].attemptLimit === limit;

const suites = [
  { tag: "r255", name: "ristretto255-SHA512", id: Suite.RISTRETTO255_SHA512, opaque: r255,
    hash: "sha512", publicKeyLen: 32, ke3Len: 64 },
  { tag: "p256", name: "P256-SHA256", id: Suite.P256_SHA256, opaque: p256,
    hash: "sha256", publicKeyLen: 33, ke3Len: 32 },
];

await r255.ready;
await p256.ready;

// The code generated at test time carries the contract's new fields.
const hasField = (schema, name) => schema.fields.some((f) => f.name === name);
check("generated code: RegisterStartResponse.registration_ticket, RegisterFinishRequest." +
  "registration_ticket and replaces_record_version, GetStatusResponse.state and " +
  "destroyed_at_unix, RecordState",
  hasField(pb.RegisterStartResponseSchema, "registration_ticket") &&
    hasField(pb.RegisterFinishRequestSchema, "registration_ticket") &&
    hasField(pb.RegisterFinishRequestSchema, "replaces_record_version") &&
    hasField(pb.GetStatusResponseSchema, "state") &&
    hasField(pb.GetStatusResponseSchema, "destroyed_at_unix") &&
    RecordState !== undefined && RecordState.DESTROYED === 3 && RecordState.REGISTERED === 2);

// GetConfig
let config;
try {
  config = await client.getConfig({});
} catch (e) {
  fatal("GetConfig", e);
}
check("GetConfig: suites are ristretto255-SHA512 and P256-SHA256",
  config.suites.length === 2 && suites.every((s) => config.suites.includes(s.id)),
  JSON.stringify(config.suites));
const ksf = config.ksf;
check("GetConfig: ksf argon2id t=3 m=65536 p=4",
  ksf && ksf.algorithm === "argon2id" && ksf.iterations === 3 && ksf.memoryKib === 65536 &&
    ksf.parallelism === 4,
  JSON.stringify(ksf));
check("GetConfig: context is empty", config.context.length === 0,
  Buffer.from(config.context).toString("hex"));
const keyStretching = {
  "argon2id-custom": { iterations: ksf.iterations, memory: ksf.memoryKib, parallelism: ksf.parallelism },
};

// One registration with a third-party client. ticket: "none" sends no registration_ticket,
// "forged" a damaged one, "other" one from another RegisterStart of the other suite.
async function register(s, auth, password, { attemptLimit = 0, replaces = 0n, ticket } = {}) {
  const { clientRegistrationState, registrationRequest } =
    s.opaque.client.startRegistration({ password });
  const rs = await client.registerStart({ suite: s.id, registrationRequest: unb64u(registrationRequest) },
    auth);
  const reg = s.opaque.client.finishRegistration({
    password,
    clientRegistrationState,
    registrationResponse: b64u(rs.registrationResponse),
    keyStretching,
  });
  let registrationTicket = rs.registrationTicket;
  if (ticket === "none") registrationTicket = new Uint8Array(0);
  if (ticket === "forged") {
    registrationTicket = Uint8Array.from(rs.registrationTicket);
    registrationTicket[registrationTicket.length >> 1] ^= 1;
  }
  if (ticket === "other") {
    const o = suites.find((x) => x !== s);
    const other = await client.registerStart(
      { suite: o.id, registrationRequest: unb64u(o.opaque.client.startRegistration({ password }).registrationRequest) },
      auth);
    registrationTicket = other.registrationTicket;
  }
  const key = randomBytes(32);
  const exportKey = unb64u(reg.exportKey);
  const wrappedKey = seal(hkdfExpand(s.hash, exportKey, "bkv-v1 wrap", 32), key, "bkv-v1 wrap");
  const rf = await client.registerFinish({
    suite: s.id,
    registrationRecord: unb64u(reg.registrationRecord),
    wrappedKey,
    attemptLimit,
    registrationTicket,
    replacesRecordVersion: replaces,
  }, auth);
  return { rs, rf, reg, key, exportKey };
}

// One recovery: { key } with the right password; with a wrong one, the client's finishLogin
// fails (login null) and a random KE3 of the right length gets the vault's error (err).
async function recover(s, auth, password) {
  const { clientLoginState, startLoginRequest } = s.opaque.client.startLogin({ password });
  const rs = await client.recoverStart({ suite: s.id, ke1: unb64u(startLoginRequest) }, auth);
  const login = s.opaque.client.finishLogin({
    password,
    clientLoginState,
    loginResponse: b64u(rs.ke2),
    keyStretching,
  }) || null;
  if (login === null) {
    const err = await failure(client.recoverFinish({ ticket: rs.ticket, ke3: randomBytes(s.ke3Len) }, auth));
    return { rs, login, err };
  }
  const rf = await client.recoverFinish({ ticket: rs.ticket, ke3: unb64u(login.finishLoginRequest) }, auth);
  const releaseKey = hkdfExpand(s.hash, unb64u(login.sessionKey), "bkv-v1 release", 32);
  const wrapped = open(releaseKey, rf.sealedKey, "bkv-v1 release");
  const key = open(hkdfExpand(s.hash, unb64u(login.exportKey), "bkv-v1 wrap", 32), wrapped, "bkv-v1 wrap");
  return { rs, login, rf, key };
}

function sql(statement) {
  return execFileSync("sqlite3", ["-batch", "-bail", "-cmd", ".timeout 5000", db, statement],
    { encoding: "utf8" }).trim();
}

async function runSuite(s) {
  const auth = (account) => ({ headers: { Authorization: `Bearer ${tokens[`${s.tag}-${account}`]}` } });
  const N = s.name;
  const serverKey = config.serverKeys.find((k) => k.suite === s.id);
  check(`${N}: GetConfig publishes a server key of ${s.publicKeyLen} bytes`,
    serverKey && serverKey.publicKey.length === s.publicKeyLen);
  const password = `correct horse battery staple ${s.tag}`;
  const main = auth("main");

  // Register, recover
  let first;
  try {
    first = await register(s, main, password);
    check(`${N}: RegisterStart returns a registration_ticket`, first.rs.registrationTicket.length > 0,
      `${first.rs.registrationTicket.length} bytes`);
    check(`${N}: the client sees the server key GetConfig published`,
      eq(unb64u(first.reg.serverStaticPublicKey), serverKey.publicKey));
    check(`${N}: RegisterFinish (ticket, replaces_record_version 0) creates record version 1`,
      first.rf.recordVersion === 1n && first.rf.attemptLimit === 10,
      `version ${first.rf.recordVersion} limit ${first.rf.attemptLimit}`);
  } catch (e) {
    fatal(`${N}: register`, e);
  }
  try {
    const status = await client.getStatus({}, main);
    check(`${N}: GetStatus: RECORD_STATE_REGISTERED, registered, version 1, 0 of 10 used`,
      status.state === RecordState.REGISTERED && status.registered && status.suite === s.id &&
        status.recordVersion === 1n && status.attemptsUsed === 0 && status.attemptLimit === 10 &&
        status.destroyedAtUnix === 0n,
      JSON.stringify(status, (k, v) => (typeof v === "bigint" ? String(v) : v)));
    const r = await recover(s, main, password);
    check(`${N}: RecoverStart: 9 attempts remaining`, r.rs.attemptsRemaining === 9, String(r.rs.attemptsRemaining));
    if (!check(`${N}: the client accepts the vault's KE2 (finishLogin)`, r.login !== null))
      summary();
    check(`${N}: finishLogin export_key equals the registration's`, eq(unb64u(r.login.exportKey), first.exportKey));
    check(`${N}: RecoverFinish accepts the client's KE3, sealed_key of 88 bytes`,
      r.rf.sealedKey.length === 12 + 60 + 16, `${r.rf.sealedKey.length} bytes`);
    check(`${N}: the recovered key equals the registered one`, eq(r.key, first.key));
  } catch (e) {
    fatal(`${N}: recover`, e);
  }

  // A wrong password
  try {
    const r = await recover(s, main, "wrong password");
    check(`${N}: RecoverStart (wrong password): 9 attempts remaining (the success reset the counter)`,
      r.rs.attemptsRemaining === 9, String(r.rs.attemptsRemaining));
    check(`${N}: the client's finishLogin fails with the wrong password`, r.login === null);
    check(`${N}: RecoverFinish with a random KE3 -> permission_denied, AttemptInfo{9, 10}`,
      r.err && r.err.code === Code.PermissionDenied && attemptInfoIs(r.err, 9, 10), describe(r.err));
    const status = await client.getStatus({}, main);
    check(`${N}: GetStatus: 1 attempt used of 10`, status.attemptsUsed === 1 && status.attemptLimit === 10,
      `${status.attemptsUsed}/${status.attemptLimit}`);
  } catch (e) {
    fatal(`${N}: wrong password`, e);
  }

  // Compare-and-set registration
  let second;
  try {
    let err = await failure(register(s, main, "another password"));
    check(`${N}: registering again without replaces_record_version -> already_exists`,
      err && err.code === Code.AlreadyExists, describe(err));
    err = await failure(register(s, main, "another password", { replaces: 7n }));
    check(`${N}: replaces_record_version 7 (current is 1) -> aborted`,
      err && err.code === Code.Aborted, describe(err));
    err = await failure(register(s, main, "another password", { replaces: 1n, ticket: "none" }));
    check(`${N}: RegisterFinish without registration_ticket -> invalid_argument`,
      err && err.code === Code.InvalidArgument, describe(err));
    err = await failure(register(s, main, "another password", { replaces: 1n, ticket: "forged" }));
    check(`${N}: RegisterFinish with a damaged registration_ticket -> invalid_argument`,
      err && err.code === Code.InvalidArgument, describe(err));
    err = await failure(register(s, main, "another password", { replaces: 1n, ticket: "other" }));
    check(`${N}: RegisterFinish with a ticket for the other suite -> invalid_argument`,
      err && err.code === Code.InvalidArgument, describe(err));
    const status = await client.getStatus({}, main);
    check(`${N}: the refused registrations changed nothing (version 1, 1 attempt used)`,
      status.recordVersion === 1n && status.attemptsUsed === 1, `${status.recordVersion} ${status.attemptsUsed}`);
    second = await register(s, main, "another password", { replaces: 1n });
    check(`${N}: replaces_record_version 1 -> record version 2`, second.rf.recordVersion === 2n,
      String(second.rf.recordVersion));
    const after = await client.getStatus({}, main);
    check(`${N}: GetStatus after the replacement: version 2, 0 attempts used`,
      after.state === RecordState.REGISTERED && after.recordVersion === 2n && after.attemptsUsed === 0,
      `${after.state} ${after.recordVersion} ${after.attemptsUsed}`);
    const r = await recover(s, main, "another password");
    check(`${N}: the new password recovers the new key`, r.key !== undefined && eq(r.key, second.key));
    const old = await recover(s, main, password);
    check(`${N}: the old password no longer works: permission_denied, AttemptInfo{9, 10}`,
      old.login === null && old.err && old.err.code === Code.PermissionDenied && attemptInfoIs(old.err, 9, 10),
      describe(old.err));
  } catch (e) {
    fatal(`${N}: compare-and-set registration`, e);
  }

  // A small attempt limit exhausted: the tombstone
  try {
    const limited = auth("limit");
    const reg = await register(s, limited, password, { attemptLimit: 2 });
    check(`${N}: registered with attempt_limit 2`, reg.rf.recordVersion === 1n && reg.rf.attemptLimit === 2,
      `${reg.rf.recordVersion} ${reg.rf.attemptLimit}`);
    const w1 = await recover(s, limited, "wrong password 1");
    check(`${N}: first wrong password -> permission_denied, AttemptInfo{1, 2}`,
      w1.err && w1.err.code === Code.PermissionDenied && attemptInfoIs(w1.err, 1, 2), describe(w1.err));
    const w2 = await recover(s, limited, "wrong password 2");
    check(`${N}: second wrong password -> permission_denied, AttemptInfo{0, 2}`,
      w2.err && w2.err.code === Code.PermissionDenied && attemptInfoIs(w2.err, 0, 2), describe(w2.err));
    const status = await client.getStatus({}, limited);
    check(`${N}: GetStatus: RECORD_STATE_DESTROYED, not registered, destroyed_at set, 2 of 2 used, version 1`,
      status.state === RecordState.DESTROYED && !status.registered && status.destroyedAtUnix > 0n &&
        status.attemptsUsed === 2 && status.attemptLimit === 2 && status.recordVersion === 1n,
      JSON.stringify(status, (k, v) => (typeof v === "bigint" ? String(v) : v)));
    const now = BigInt(Math.floor(Date.now() / 1000));
    check(`${N}: destroyed_at is now`, status.destroyedAtUnix <= now && status.destroyedAtUnix > now - 300n,
      `${status.destroyedAtUnix} vs ${now}`);
    for (const attempt of [1, 2]) {
      const { startLoginRequest } = s.opaque.client.startLogin({ password });
      const err = await failure(client.recoverStart({ suite: s.id, ke1: unb64u(startLoginRequest) }, limited));
      check(`${N}: RecoverStart on the tombstone (${attempt}) -> failed_precondition, AttemptInfo{0, 2}`,
        err && err.code === Code.FailedPrecondition && attemptInfoIs(err, 0, 2), describe(err));
    }
    let err = await failure(register(s, limited, password));
    check(`${N}: registering over the tombstone without replaces_record_version -> already_exists`,
      err && err.code === Code.AlreadyExists, describe(err));
    const again = await register(s, limited, "a new password", { replaces: 1n });
    check(`${N}: replaces_record_version = the tombstone's version 1 -> record version 2`,
      again.rf.recordVersion === 2n, String(again.rf.recordVersion));
    const r = await recover(s, limited, "a new password");
    check(`${N}: the key registered over the tombstone recovers`, r.key !== undefined && eq(r.key, again.key));
  } catch (e) {
    fatal(`${N}: tombstone`, e);
  }

  // A counter lowered in the database: nothing is served from the row
  try {
    const tamper = auth("tamper");
    await register(s, tamper, password);
    const w = await recover(s, tamper, "wrong password");
    check(`${N}: a wrong password on a third account -> permission_denied, AttemptInfo{9, 10}`,
      w.err && w.err.code === Code.PermissionDenied && attemptInfoIs(w.err, 9, 10), describe(w.err));
    const where = `account_id = CAST('${accountPrefix}${s.tag}-tamper' AS BLOB)`;
    check(`${N}: its row holds attempts_used 1`, sql(`SELECT attempts_used FROM records WHERE ${where}`) === "1");
    check(`${N}: one UPDATE sets attempts_used to 0`,
      sql(`UPDATE records SET attempts_used = 0 WHERE ${where}; SELECT changes();`) === "1");
    const { startLoginRequest } = s.opaque.client.startLogin({ password });
    let ke2 = null;
    const err = await failure(client.recoverStart({ suite: s.id, ke1: unb64u(startLoginRequest) }, tamper)
      .then((rs) => { ke2 = rs.ke2; }));
    check(`${N}: RecoverStart on the edited row -> data_loss, no KE2`,
      err && err.code === Code.DataLoss && ke2 === null, describe(err));
    const serr = await failure(client.getStatus({}, tamper));
    check(`${N}: GetStatus on the edited row -> data_loss`, serr && serr.code === Code.DataLoss, describe(serr));
    check(`${N}: the refused calls left the row as edited`,
      sql(`SELECT attempts_used FROM records WHERE ${where}`) === "0");
  } catch (e) {
    fatal(`${N}: tamper`, e);
  }
}

for (const s of suites) await runSuite(s);
summary();
