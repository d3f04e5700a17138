/*
 * test_vectors.c - checks the OPAQUE core byte for byte against the published test vectors:
 *
 *   RFC 9807 (OPAQUE-3DH) Appendix C   opaque-rfc9807.json
 *   RFC 9497 (OPRF, mode 0) Appendix A oprf-rfc9497.json
 *   RFC 9380 (hash to curve) J.1.1, K.1-K.3   h2c-rfc9380.json
 *
 * Usage: test-vectors DIR, where DIR holds the JSON files of tests/vectors (see its README.md
 * for their provenance and field meanings). Prints one "ok", "FAIL" or "skip" line per vector
 * and a summary; exits non-zero on any mismatch, on any error from the library and on any
 * section missing from the JSON, so the test cannot pass having checked nothing.
 *
 * Randomness: the vectors fix every random value (blinds, nonces, keyshare seeds). They are
 * fed through the deterministic *_with_randomness entry points of opaque_internal.h.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "opaque_internal.h"
#include "testutil.h"

#define HEX_CAP 512

/* A decoded hex value from the JSON. */
typedef struct bytes {
	uint8_t b[HEX_CAP];
	size_t len;
} bytes;

/* One vector being checked: every failure is reported against it. */
typedef struct vec {
	const char *rfc;
	char name[192];
	int failed;
} vec;

static int n_passed;
static int n_failed;
static int n_skipped;

/* The generators, to compute k * G through BlindEvaluate (k * element). P-256: SEC1
 * compressed G (SEC 2 / FIPS 186-4; y is odd). ristretto255: the RFC 9496 basepoint. */
static const char P256_GENERATOR_HEX[] =
    "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
static const char RISTRETTO255_GENERATOR_HEX[] =
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76";

__attribute__((format(printf, 3, 4))) static void vec_begin(vec *v, const char *rfc,
                                                            const char *fmt, ...)
{
	va_list ap;
	v->rfc = rfc;
	v->failed = 0;
	va_start(ap, fmt);
	vsnprintf(v->name, sizeof v->name, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void vec_fail(vec *v, const char *fmt, ...)
{
	va_list ap;
	printf("FAIL %s %s: ", v->rfc, v->name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	v->failed = 1;
}

static void vec_end(vec *v)
{
	if (v->failed) {
		n_failed++;
	} else {
		printf("ok %s %s\n", v->rfc, v->name);
		n_passed++;
	}
	fflush(stdout);
}

/* A whole section of a JSON file is missing or malformed: counts as one failure. */
static void section_missing(const char *rfc, const char *what)
{
	printf("FAIL %s %s: missing from the JSON\n", rfc, what);
	n_failed++;
}

static void check_bytes(vec *v, const char *field, const uint8_t *expected, size_t expected_len,
                        const uint8_t *got, size_t got_len)
{
	if (expected_len == got_len && memcmp(expected, got, got_len) == 0) {
		return;
	}
	printf("FAIL %s %s: %s expected ", v->rfc, v->name, field);
	tu_hex_fprint(stdout, expected, expected_len);
	printf(" got ");
	tu_hex_fprint(stdout, got, got_len);
	printf("\n");
	v->failed = 1;
}

static int check_rc(vec *v, const char *what, opaque_err rc)
{
	if (rc == OPAQUE_OK) {
		return 1;
	}
	vec_fail(v, "%s returned %d (%s)", what, (int)rc, opaque_strerror(rc));
	return 0;
}

static const char *get_str(vec *v, json_t *obj, const char *key)
{
	json_t *j = obj != NULL ? json_object_get(obj, key) : NULL;
	if (!json_is_string(j)) {
		vec_fail(v, "field %s missing or not a string", key);
		return NULL;
	}
	return json_string_value(j);
}

/* Loads a hex field. Returns 1 on success; on failure records it against v. */
static int get_hex(vec *v, json_t *obj, const char *key, bytes *out)
{
	const char *s = get_str(v, obj, key);
	out->len = 0;
	if (s == NULL) {
		return 0;
	}
	long n = tu_hex_decode(s, out->b, sizeof out->b);
	if (n < 0) {
		vec_fail(v, "field %s is not valid hex", key);
		return 0;
	}
	out->len = (size_t)n;
	return 1;
}

/* Loads a hex field that must have exactly want bytes (an input fed to a fixed-size
 * parameter). */
static int get_hex_len(vec *v, json_t *obj, const char *key, bytes *out, size_t want)
{
	if (!get_hex(v, obj, key, out)) {
		return 0;
	}
	if (out->len != want) {
		vec_fail(v, "field %s has %zu bytes, expected %zu", key, out->len, want);
		return 0;
	}
	return 1;
}

/* Decodes an RFC 9380 "0x..." big-endian field element into 32 bytes, left-padded. */
static int fe_decode(vec *v, const char *what, const char *s, uint8_t out[32])
{
	if (strncmp(s, "0x", 2) == 0) {
		s += 2;
	}
	size_t n = strlen(s);
	char padded[65];
	if (n > 64) {
		vec_fail(v, "field %s is longer than 32 bytes", what);
		return 0;
	}
	memset(padded, '0', 64 - n);
	memcpy(padded + (64 - n), s, n);
	padded[64] = '\0';
	if (tu_hex_decode(padded, out, 32) != 32) {
		vec_fail(v, "field %s is not valid hex", what);
		return 0;
	}
	return 1;
}

static int get_fe(vec *v, json_t *obj, const char *key, uint8_t out[32])
{
	const char *s = get_str(v, obj, key);
	return s != NULL && fe_decode(v, key, s, out);
}

/* The "x" and "y" of a point object, as x || y. */
static int get_point(vec *v, json_t *obj, const char *key, uint8_t out[64])
{
	json_t *p = obj != NULL ? json_object_get(obj, key) : NULL;
	if (!json_is_object(p)) {
		vec_fail(v, "field %s missing or not an object", key);
		return 0;
	}
	return get_fe(v, p, "x", out) & get_fe(v, p, "y", out + 32);
}

/* A short printable form of an ASCII message for a vector's name. */
static void msg_label(const char *msg, char *out, size_t cap)
{
	size_t n = strlen(msg);
	if (n <= 20) {
		snprintf(out, cap, "msg=\"%s\"", msg);
	} else {
		snprintf(out, cap, "msg=\"%.12s...\" (%zu bytes)", msg, n);
	}
}

/* ------------------------------------------------------------------------------------ */
/* RFC 9807                                                                              */
/* ------------------------------------------------------------------------------------ */

static const char *const RFC9807_REQUIRED[] = {"C.1.1", "C.1.2", "C.1.5",
                                               "C.1.6", "C.2.1", "C.2.3"};
#define RFC9807_NREQUIRED (sizeof RFC9807_REQUIRED / sizeof RFC9807_REQUIRED[0])

/* The configuration block must be one of ours, with the RFC's sizes equal to the library's. */
static int opaque_vector_config(vec *v, json_t *jv, opaque_suite_id *suite, bytes *context)
{
	json_t *c = json_object_get(jv, "config");
	const char *oprf = get_str(v, c, "OPRF");
	const char *group = get_str(v, c, "Group");
	const char *ksf = get_str(v, c, "KSF");
	if (oprf == NULL || group == NULL || ksf == NULL || !get_hex(v, c, "Context", context)) {
		return 0;
	}
	if (strcmp(oprf, "ristretto255-SHA512") == 0 && strcmp(group, "ristretto255") == 0) {
		*suite = OPAQUE_SUITE_RISTRETTO255_SHA512;
	} else if (strcmp(oprf, "P256-SHA256") == 0 &&
	           strcmp(group, "P256_XMD:SHA-256_SSWU_RO_") == 0) {
		*suite = OPAQUE_SUITE_P256_SHA256;
	} else {
		vec_fail(v, "unsupported configuration OPRF=%s Group=%s", oprf, group);
		return 0;
	}
	if (strcmp(ksf, "Identity") != 0) {
		vec_fail(v, "unsupported KSF %s", ksf);
		return 0;
	}
	const opaque_sizes *sz = opaque_suite_sizes(*suite);
	if (sz == NULL) {
		vec_fail(v, "opaque_suite_sizes returned NULL");
		return 0;
	}
	const struct {
		const char *key;
		size_t have;
	} sizes[] = {{"Nh", sz->Nh}, {"Npk", sz->Npk}, {"Nsk", sz->Nsk},
	             {"Nm", sz->Nm}, {"Nx", sz->Nx},   {"Nok", sz->Nok}};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		const char *s = get_str(v, c, sizes[i].key);
		if (s == NULL) {
			return 0;
		}
		if (strtoul(s, NULL, 10) != sizes[i].have) {
			vec_fail(v, "config.%s expected %s got %zu", sizes[i].key, s,
			         sizes[i].have);
		}
	}
	return !v->failed;
}

/* client_identity / server_identity when the vector has them; NULL (the default, the public
 * keys) otherwise. */
static void opaque_vector_identities(json_t *in, bytes *cid, bytes *sid, opaque_identities *ids)
{
	memset(ids, 0, sizeof *ids);
	json_t *c = json_object_get(in, "client_identity");
	json_t *s = json_object_get(in, "server_identity");
	if (json_is_string(c)) {
		long n = tu_hex_decode(json_string_value(c), cid->b, sizeof cid->b);
		cid->len = n < 0 ? 0 : (size_t)n;
		ids->client_identity = cid->b;
		ids->client_identity_len = cid->len;
	}
	if (json_is_string(s)) {
		long n = tu_hex_decode(json_string_value(s), sid->b, sizeof sid->b);
		sid->len = n < 0 ? 0 : (size_t)n;
		ids->server_identity = sid->b;
		ids->server_identity_len = sid->len;
	}
}

/*
 * A real (registered user) vector: runs registration and login with every random value
 * taken from the vector and checks every output, plus the intermediates the API exposes.
 *
 * Not reachable through the API, and therefore covered implicitly:
 *   - randomized_password and auth_key: the envelope's auth_tag is HMAC(auth_key, ...) and
 *     auth_key = Expand(randomized_password, ...); export_key and masking_key are also
 *     expanded from randomized_password. The envelope, masking_key and export_key are all
 *     checked byte for byte, and the client's login finish must recover the same envelope.
 *   - handshake_secret, server_mac_key, client_mac_key: server_mac (the tail of KE2) and
 *     client_mac (KE3) are HMACs under the mac keys, which are expanded from
 *     handshake_secret; session_key is expanded from the same PRK. KE2, KE3 and session_key
 *     are checked byte for byte on both sides.
 * Each step takes its inputs from the vector rather than from the previous step's output,
 * so a failure points at the step that is wrong.
 */
static void run_opaque_real(vec *v, json_t *jv, opaque_suite_id suite, const bytes *context)
{
	const opaque_sizes *sz = opaque_suite_sizes(suite);
	json_t *in = json_object_get(jv, "inputs");
	json_t *im = json_object_get(jv, "intermediates");
	json_t *out = json_object_get(jv, "outputs");
	json_t *poc = json_object_get(jv, "poc_only_intermediates");
	bytes oprf_seed, cred, pwd, env_nonce, mask_nonce, sk_s, pk_s, s_nonce, c_nonce, c_seed;
	bytes s_seed, blind_reg, blind_login, cid, sid;
	bytes x_cpk, x_env, x_oprf_key, x_mask_key;
	bytes x_req, x_resp, x_upload, x_ke1, x_ke2, x_ke3, x_export, x_session;
	opaque_identities ids;
	opaque_err rc;

	int ok = get_hex_len(v, in, "oprf_seed", &oprf_seed, sz->Nh);
	ok &= get_hex(v, in, "credential_identifier", &cred);
	ok &= get_hex(v, in, "password", &pwd);
	ok &= get_hex_len(v, in, "envelope_nonce", &env_nonce, OPAQUE_NONCE_BYTES);
	ok &= get_hex_len(v, in, "masking_nonce", &mask_nonce, OPAQUE_NONCE_BYTES);
	ok &= get_hex(v, in, "server_private_key", &sk_s);
	ok &= get_hex(v, in, "server_public_key", &pk_s);
	ok &= get_hex_len(v, in, "server_nonce", &s_nonce, OPAQUE_NONCE_BYTES);
	ok &= get_hex_len(v, in, "client_nonce", &c_nonce, OPAQUE_NONCE_BYTES);
	ok &= get_hex_len(v, in, "client_keyshare_seed", &c_seed, OPAQUE_SEED_BYTES);
	ok &= get_hex_len(v, in, "server_keyshare_seed", &s_seed, OPAQUE_SEED_BYTES);
	ok &= get_hex(v, in, "blind_registration", &blind_reg);
	ok &= get_hex(v, in, "blind_login", &blind_login);
	ok &= get_hex(v, im, "client_public_key", &x_cpk);
	ok &= get_hex(v, im, "envelope", &x_env);
	ok &= get_hex(v, im, "oprf_key", &x_oprf_key);
	ok &= get_hex(v, poc, "masking_key", &x_mask_key);
	ok &= get_hex(v, out, "registration_request", &x_req);
	ok &= get_hex(v, out, "registration_response", &x_resp);
	ok &= get_hex(v, out, "registration_upload", &x_upload);
	ok &= get_hex(v, out, "KE1", &x_ke1);
	ok &= get_hex(v, out, "KE2", &x_ke2);
	ok &= get_hex(v, out, "KE3", &x_ke3);
	ok &= get_hex(v, out, "export_key", &x_export);
	ok &= get_hex(v, out, "session_key", &x_session);
	if (!ok) {
		return;
	}
	opaque_vector_identities(in, &cid, &sid, &ids);
	opaque_config cfg = {.suite = suite,
	                     .context = context->b,
	                     .context_len = context->len,
	                     .ksf = {.id = OPAQUE_KSF_IDENTITY}};

	/* Server keys: server_public_key must be SerializeElement(server_private_key). */
	opaque_soft_server_keys soft;
	rc = opaque_soft_server_keys_init(&soft, suite, oprf_seed.b, oprf_seed.len, sk_s.b,
	                                  sk_s.len);
	if (!check_rc(v, "opaque_soft_server_keys_init", rc)) {
		return;
	}
	check_bytes(v, "server_public_key", pk_s.b, pk_s.len, soft.keys.server_public_key, sz->Npk);

	/* oprf_key = DeriveKeyPair(Expand(oprf_seed, credential_identifier || "OprfKey", Nok),
	 * "OPAQUE-DeriveKeyPair") (RFC 9807 section 5.2.2). */
	{
		uint8_t info[HEX_CAP + 7];
		uint8_t seed[OPAQUE_OPRF_KEY_SEED_BYTES];
		uint8_t key[OPAQUE_MAX_SCALAR_BYTES];
		static const char label[] = "OPAQUE-DeriveKeyPair";
		memcpy(info, cred.b, cred.len);
		memcpy(info + cred.len, "OprfKey", 7);
		rc = soft.keys.oprf_seed_expand(soft.keys.ctx, info, cred.len + 7, seed, sz->Nok);
		if (check_rc(v, "oprf_seed_expand", rc)) {
			rc = opaque_oprf_derive_key_pair(suite, seed, sz->Nok,
			                                 (const uint8_t *)label, strlen(label), key,
			                                 sz->Ns, NULL, 0);
			if (check_rc(v, "opaque_oprf_derive_key_pair", rc)) {
				check_bytes(v, "oprf_key", x_oprf_key.b, x_oprf_key.len, key,
				            sz->Ns);
			}
		}
	}

	/* Registration. */
	opaque_client_registration_state rst;
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	rc = opaque_client_registration_start_with_randomness(
	    &cfg, pwd.b, pwd.len, blind_reg.b, blind_reg.len, &rst, req, sz->registration_request);
	int reg_started = check_rc(v, "opaque_client_registration_start_with_randomness", rc);
	if (reg_started) {
		check_bytes(v, "registration_request", x_req.b, x_req.len, req,
		            sz->registration_request);
	}
	rc = opaque_server_registration_response(&cfg, &soft.keys, cred.b, cred.len, x_req.b,
	                                         x_req.len, resp, sz->registration_response);
	if (check_rc(v, "opaque_server_registration_response", rc)) {
		check_bytes(v, "registration_response", x_resp.b, x_resp.len, resp,
		            sz->registration_response);
	}
	if (reg_started) {
		rc = opaque_client_registration_finish_with_randomness(
		    &cfg, &rst, pwd.b, pwd.len, &ids, x_resp.b, x_resp.len, env_nonce.b, record,
		    sz->registration_record, export_key, sz->export_key);
		if (check_rc(v, "opaque_client_registration_finish_with_randomness", rc)) {
			/* RegistrationRecord = client_public_key || masking_key || envelope. */
			check_bytes(v, "client_public_key", x_cpk.b, x_cpk.len, record, sz->Npk);
			check_bytes(v, "masking_key", x_mask_key.b, x_mask_key.len,
			            record + sz->Npk, sz->Nh);
			check_bytes(v, "envelope", x_env.b, x_env.len, record + sz->Npk + sz->Nh,
			            sz->Nn + sz->Nm);
			check_bytes(v, "registration_upload", x_upload.b, x_upload.len, record,
			            sz->registration_record);
			check_bytes(v, "export_key (registration)", x_export.b, x_export.len,
			            export_key, sz->export_key);
		}
	}

	/* Login. */
	opaque_client_login_state cst;
	opaque_server_login_state sst;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	rc = opaque_client_login_start_with_randomness(&cfg, pwd.b, pwd.len, blind_login.b,
	                                               blind_login.len, c_nonce.b, c_seed.b, &cst,
	                                               ke1, sz->ke1);
	int login_started = check_rc(v, "opaque_client_login_start_with_randomness", rc);
	if (login_started) {
		check_bytes(v, "KE1", x_ke1.b, x_ke1.len, ke1, sz->ke1);
	}
	rc = opaque_server_login_start_with_randomness(
	    &cfg, &soft.keys, &ids, cred.b, cred.len, x_upload.b, x_upload.len, x_ke1.b, x_ke1.len,
	    mask_nonce.b, s_nonce.b, s_seed.b, &sst, ke2, sz->ke2);
	int server_started = check_rc(v, "opaque_server_login_start_with_randomness", rc);
	if (server_started) {
		check_bytes(v, "KE2", x_ke2.b, x_ke2.len, ke2, sz->ke2);
		/* The server state's fields are part of the interface (the vault's ticket). */
		check_bytes(v, "KE3 (server state expected_client_mac)", x_ke3.b, x_ke3.len,
		            sst.expected_client_mac, sz->Nm);
		check_bytes(v, "session_key (server state)", x_session.b, x_session.len,
		            sst.session_key, sz->session_key);
	}
	if (login_started) {
		rc = opaque_client_login_finish(&cfg, &cst, pwd.b, pwd.len, &ids, x_ke2.b,
		                                x_ke2.len, ke3, sz->ke3, session_key,
		                                sz->session_key, export_key, sz->export_key);
		if (check_rc(v, "opaque_client_login_finish", rc)) {
			check_bytes(v, "KE3", x_ke3.b, x_ke3.len, ke3, sz->ke3);
			check_bytes(v, "session_key (client)", x_session.b, x_session.len,
			            session_key, sz->session_key);
			check_bytes(v, "export_key (login)", x_export.b, x_export.len, export_key,
			            sz->export_key);
		}
	}
	if (server_started) {
		memset(session_key, 0, sizeof session_key);
		rc = opaque_server_login_finish(&sst, x_ke3.b, x_ke3.len, session_key,
		                                sz->session_key);
		if (check_rc(v, "opaque_server_login_finish", rc)) {
			check_bytes(v, "session_key (server)", x_session.b, x_session.len,
			            session_key, sz->session_key);
		}
	}
	opaque_soft_server_keys_wipe(&soft);
}

/*
 * A fake-record vector (RFC 9807 section 10.9): the server answers KE1 with the record
 * client_public_key || masking_key || zeros(Nn + Nm). client_keyshare_seed produced the KE1
 * keyshare, which is an input here; it is not reachable without the login blind, which
 * these vectors do not give.
 */
static void run_opaque_fake(vec *v, json_t *jv, opaque_suite_id suite, const bytes *context)
{
	const opaque_sizes *sz = opaque_suite_sizes(suite);
	json_t *in = json_object_get(jv, "inputs");
	json_t *out = json_object_get(jv, "outputs");
	bytes oprf_seed, cred, mask_nonce, sk_c, pk_c, sk_s, pk_s, s_nonce, s_seed, mask_key, ke1;
	bytes cid, sid, x_ke2, gen;
	opaque_identities ids;
	opaque_err rc;

	int ok = get_hex_len(v, in, "oprf_seed", &oprf_seed, sz->Nh);
	ok &= get_hex(v, in, "credential_identifier", &cred);
	ok &= get_hex_len(v, in, "masking_nonce", &mask_nonce, OPAQUE_NONCE_BYTES);
	ok &= get_hex(v, in, "client_private_key", &sk_c);
	ok &= get_hex_len(v, in, "client_public_key", &pk_c, sz->Npk);
	ok &= get_hex(v, in, "server_private_key", &sk_s);
	ok &= get_hex(v, in, "server_public_key", &pk_s);
	ok &= get_hex_len(v, in, "server_nonce", &s_nonce, OPAQUE_NONCE_BYTES);
	ok &= get_hex_len(v, in, "server_keyshare_seed", &s_seed, OPAQUE_SEED_BYTES);
	ok &= get_hex_len(v, in, "masking_key", &mask_key, sz->Nh);
	ok &= get_hex(v, in, "KE1", &ke1);
	ok &= get_hex(v, out, "KE2", &x_ke2);
	if (!ok) {
		return;
	}
	opaque_vector_identities(in, &cid, &sid, &ids);
	opaque_config cfg = {.suite = suite,
	                     .context = context->b,
	                     .context_len = context->len,
	                     .ksf = {.id = OPAQUE_KSF_IDENTITY}};

	opaque_soft_server_keys soft;
	rc = opaque_soft_server_keys_init(&soft, suite, oprf_seed.b, oprf_seed.len, sk_s.b,
	                                  sk_s.len);
	if (!check_rc(v, "opaque_soft_server_keys_init", rc)) {
		return;
	}
	check_bytes(v, "server_public_key", pk_s.b, pk_s.len, soft.keys.server_public_key, sz->Npk);

	/* client_public_key = client_private_key * G, computed as BlindEvaluate(sk, G). */
	{
		uint8_t pk[OPAQUE_MAX_ELEMENT_BYTES];
		long n =
		    tu_hex_decode(suite == OPAQUE_SUITE_P256_SHA256 ? P256_GENERATOR_HEX
		                                                    : RISTRETTO255_GENERATOR_HEX,
		                  gen.b, sizeof gen.b);
		gen.len = (size_t)n;
		rc = opaque_oprf_blind_evaluate(suite, sk_c.b, sk_c.len, gen.b, gen.len, pk,
		                                sz->Npk);
		if (check_rc(v, "opaque_oprf_blind_evaluate(client_private_key, G)", rc)) {
			check_bytes(v, "client_public_key", pk_c.b, pk_c.len, pk, sz->Npk);
		}
	}

	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES] = {0};
	memcpy(record, pk_c.b, sz->Npk);
	memcpy(record + sz->Npk, mask_key.b, sz->Nh);
	opaque_server_login_state sst;
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	rc = opaque_server_login_start_with_randomness(
	    &cfg, &soft.keys, &ids, cred.b, cred.len, record, sz->registration_record, ke1.b,
	    ke1.len, mask_nonce.b, s_nonce.b, s_seed.b, &sst, ke2, sz->ke2);
	if (check_rc(v, "opaque_server_login_start_with_randomness", rc)) {
		check_bytes(v, "KE2", x_ke2.b, x_ke2.len, ke2, sz->ke2);
	}
	opaque_server_login_state_wipe(&sst);
	opaque_soft_server_keys_wipe(&soft);
}

static void run_rfc9807(json_t *root)
{
	json_t *vectors = json_object_get(root, "vectors");
	int seen[RFC9807_NREQUIRED] = {0};
	if (!json_is_array(vectors)) {
		section_missing("rfc9807", "vectors");
		return;
	}
	size_t i;
	json_t *jv;
	json_array_foreach(vectors, i, jv)
	{
		vec v;
		json_t *js = json_object_get(jv, "rfc9807_section");
		const char *section = json_is_string(js) ? json_string_value(js) : "?";
		vec_begin(&v, "rfc9807", "%s", section);
		json_t *jg = json_object_get(json_object_get(jv, "config"), "Group");
		if (json_is_string(jg) && strcmp(json_string_value(jg), "curve25519") == 0) {
			printf("skip rfc9807 %s (curve25519 AKE not supported)\n", section);
			n_skipped++;
			continue;
		}
		for (size_t k = 0; k < RFC9807_NREQUIRED; k++) {
			if (strcmp(section, RFC9807_REQUIRED[k]) == 0) {
				seen[k] = 1;
			}
		}
		opaque_suite_id suite;
		bytes context;
		if (opaque_vector_config(&v, jv, &suite, &context)) {
			json_t *fake = json_object_get(jv, "fake");
			if (!json_is_boolean(fake)) {
				vec_fail(&v, "field fake missing or not a boolean");
			} else if (json_is_true(fake)) {
				run_opaque_fake(&v, jv, suite, &context);
			} else {
				run_opaque_real(&v, jv, suite, &context);
			}
		}
		vec_end(&v);
	}
	for (size_t k = 0; k < RFC9807_NREQUIRED; k++) {
		if (!seen[k]) {
			section_missing("rfc9807", RFC9807_REQUIRED[k]);
		}
	}
}

/* ------------------------------------------------------------------------------------ */
/* RFC 9497                                                                              */
/* ------------------------------------------------------------------------------------ */

#define MAX_BATCH 8

/* Splits a comma-separated list of hex values (batched vectors). Returns the count, or -1. */
static int get_hex_list(vec *v, json_t *obj, const char *key, bytes *out, int max)
{
	const char *s = get_str(v, obj, key);
	int count = 0;
	if (s == NULL) {
		return -1;
	}
	for (;;) {
		const char *comma = strchr(s, ',');
		size_t n = comma != NULL ? (size_t)(comma - s) : strlen(s);
		if (count == max) {
			vec_fail(v, "field %s has more than %d values", key, max);
			return -1;
		}
		long len = tu_hex_decode_n(s, n, out[count].b, sizeof out[count].b);
		if (len < 0) {
			vec_fail(v, "field %s is not valid hex", key);
			return -1;
		}
		out[count++].len = (size_t)len;
		if (comma == NULL) {
			return count;
		}
		s = comma + 1;
	}
}

/* Blind -> BlindedElement, BlindEvaluate -> EvaluationElement, Finalize -> Output, for
 * each element of the batch, and DeriveKeyPair(Seed, KeyInfo) -> skSm. groupDST is not an
 * input of the API; BlindedElement = Blind * HashToGroup(Input) under that DST covers it. */
static void run_oprf_vector(vec *v, json_t *js, json_t *jv, opaque_suite_id suite)
{
	const opaque_sizes *sz = opaque_suite_sizes(suite);
	static bytes input[MAX_BATCH], blind[MAX_BATCH], blinded[MAX_BATCH], evaluated[MAX_BATCH],
	    output[MAX_BATCH];
	bytes seed, key_info, sk;
	opaque_err rc;

	int ok = get_hex(v, js, "Seed", &seed);
	ok &= get_hex(v, js, "KeyInfo", &key_info);
	ok &= get_hex(v, js, "skSm", &sk);
	if (!ok) {
		return;
	}
	uint8_t derived[OPAQUE_MAX_SCALAR_BYTES];
	rc = opaque_oprf_derive_key_pair(suite, seed.b, seed.len, key_info.b, key_info.len, derived,
	                                 sz->Ns, NULL, 0);
	if (check_rc(v, "opaque_oprf_derive_key_pair", rc)) {
		check_bytes(v, "skSm", sk.b, sk.len, derived, sz->Ns);
	}

	json_t *jb = json_object_get(jv, "batch_size");
	int n = get_hex_list(v, jv, "Input", input, MAX_BATCH);
	int counts[4] = {get_hex_list(v, jv, "Blind", blind, MAX_BATCH),
	                 get_hex_list(v, jv, "BlindedElement", blinded, MAX_BATCH),
	                 get_hex_list(v, jv, "EvaluationElement", evaluated, MAX_BATCH),
	                 get_hex_list(v, jv, "Output", output, MAX_BATCH)};
	if (!json_is_integer(jb)) {
		vec_fail(v, "field batch_size missing or not an integer");
		return;
	}
	if (n < 1 || n != (int)json_integer_value(jb)) {
		vec_fail(v, "Input has %d values, batch_size is %d", n,
		         (int)json_integer_value(jb));
		return;
	}
	for (int k = 0; k < 4; k++) {
		if (counts[k] != n) {
			vec_fail(v, "batch fields have different numbers of values");
			return;
		}
	}
	for (int i = 0; i < n; i++) {
		char field[64];
		uint8_t element[OPAQUE_MAX_ELEMENT_BYTES];
		uint8_t out[OPAQUE_MAX_HASH_BYTES];

		rc = opaque_oprf_blind_with_randomness(suite, input[i].b, input[i].len, blind[i].b,
		                                       blind[i].len, element, sz->Noe);
		snprintf(field, sizeof field, "BlindedElement[%d]", i);
		if (check_rc(v, "opaque_oprf_blind_with_randomness", rc)) {
			check_bytes(v, field, blinded[i].b, blinded[i].len, element, sz->Noe);
		}
		rc = opaque_oprf_blind_evaluate(suite, sk.b, sk.len, blinded[i].b, blinded[i].len,
		                                element, sz->Noe);
		snprintf(field, sizeof field, "EvaluationElement[%d]", i);
		if (check_rc(v, "opaque_oprf_blind_evaluate", rc)) {
			check_bytes(v, field, evaluated[i].b, evaluated[i].len, element, sz->Noe);
		}
		rc = opaque_oprf_finalize(suite, input[i].b, input[i].len, blind[i].b, blind[i].len,
		                          evaluated[i].b, evaluated[i].len, out, sz->Nh);
		snprintf(field, sizeof field, "Output[%d]", i);
		if (check_rc(v, "opaque_oprf_finalize", rc)) {
			check_bytes(v, field, output[i].b, output[i].len, out, sz->Nh);
		}
	}
}

static void run_rfc9497(json_t *root)
{
	static const struct {
		const char *identifier;
		opaque_suite_id suite;
	} wanted[] = {
	    {"P256-SHA256", OPAQUE_SUITE_P256_SHA256},
	    {"ristretto255-SHA512", OPAQUE_SUITE_RISTRETTO255_SHA512},
	};
	json_t *suites = json_object_get(root, "suites");
	if (!json_is_array(suites)) {
		section_missing("rfc9497", "suites");
		return;
	}
	for (size_t w = 0; w < sizeof wanted / sizeof wanted[0]; w++) {
		size_t i;
		json_t *js;
		int found = 0;
		json_array_foreach(suites, i, js)
		{
			json_t *id = json_object_get(js, "identifier");
			json_t *mode = json_object_get(js, "mode_id");
			if (!json_is_string(id) ||
			    strcmp(json_string_value(id), wanted[w].identifier) != 0 ||
			    !json_is_integer(mode) || json_integer_value(mode) != 0) {
				continue;
			}
			json_t *vectors = json_object_get(js, "vectors");
			size_t k;
			json_t *jv;
			json_array_foreach(vectors, k, jv)
			{
				vec v;
				json_t *name = json_object_get(jv, "name");
				vec_begin(&v, "rfc9497", "%s OPRF %s", wanted[w].identifier,
				          json_is_string(name) ? json_string_value(name) : "?");
				run_oprf_vector(&v, js, jv, wanted[w].suite);
				vec_end(&v);
				found++;
			}
		}
		/* RFC 9497 A.1.1 and A.3.1 each have two OPRF-mode vectors. */
		if (found < 2) {
			char what[96];
			snprintf(what, sizeof what, "%s OPRF-mode vectors", wanted[w].identifier);
			section_missing("rfc9497", what);
		}
	}
}

/* ------------------------------------------------------------------------------------ */
/* RFC 9380                                                                              */
/* ------------------------------------------------------------------------------------ */

/* J.1.1: u = hash_to_field(msg, 2), Q0 = map_to_curve(u[0]), Q1 = map_to_curve(u[1]),
 * P = hash_to_curve(msg). */
static void run_h2c_p256(json_t *root)
{
	static const char key[] = "P256_XMD:SHA-256_SSWU_RO_";
	json_t *suite = json_object_get(root, key);
	json_t *jdst = json_object_get(suite, "dst");
	json_t *vectors = json_object_get(suite, "vectors");
	if (!json_is_string(jdst) || !json_is_array(vectors) || json_array_size(vectors) < 5) {
		section_missing("rfc9380", key);
		return;
	}
	const uint8_t *dst = (const uint8_t *)json_string_value(jdst);
	size_t dst_len = strlen(json_string_value(jdst));
	size_t i;
	json_t *jv;
	json_array_foreach(vectors, i, jv)
	{
		vec v;
		char label[64];
		uint8_t u[64], q0[64], q1[64], p[64], got[64];
		json_t *jmsg = json_object_get(jv, "msg");
		const char *msg = json_is_string(jmsg) ? json_string_value(jmsg) : "";
		msg_label(msg, label, sizeof label);
		vec_begin(&v, "rfc9380", "%s %s", key, label);
		json_t *ju = json_object_get(jv, "u");
		int ok = json_is_string(jmsg);
		if (!ok) {
			vec_fail(&v, "field msg missing or not a string");
		}
		if (!json_is_array(ju) || json_array_size(ju) != 2) {
			vec_fail(&v, "field u missing or not two values");
			ok = 0;
		} else {
			json_t *u0 = json_array_get(ju, 0);
			json_t *u1 = json_array_get(ju, 1);
			if (!json_is_string(u0) || !json_is_string(u1)) {
				vec_fail(&v, "field u holds a non-string");
				ok = 0;
			} else {
				ok &= fe_decode(&v, "u[0]", json_string_value(u0), u) &
				      fe_decode(&v, "u[1]", json_string_value(u1), u + 32);
			}
		}
		ok &= get_point(&v, jv, "Q0", q0) & get_point(&v, jv, "Q1", q1) &
		      get_point(&v, jv, "P", p);
		if (ok) {
			const uint8_t *m = (const uint8_t *)msg;
			size_t m_len = strlen(msg);
			opaque_err rc = opaque_p256_hash_to_field(OPAQUE_P256_FIELD_BASE, m, m_len,
			                                          dst, dst_len, 2, got);
			if (check_rc(&v, "opaque_p256_hash_to_field", rc)) {
				check_bytes(&v, "u[0]", u, 32, got, 32);
				check_bytes(&v, "u[1]", u + 32, 32, got + 32, 32);
			}
			rc = opaque_p256_map_to_curve(u, got);
			if (check_rc(&v, "opaque_p256_map_to_curve(u[0])", rc)) {
				check_bytes(&v, "Q0 (x || y)", q0, 64, got, 64);
			}
			rc = opaque_p256_map_to_curve(u + 32, got);
			if (check_rc(&v, "opaque_p256_map_to_curve(u[1])", rc)) {
				check_bytes(&v, "Q1 (x || y)", q1, 64, got, 64);
			}
			rc = opaque_p256_hash_to_curve(m, m_len, dst, dst_len, got);
			if (check_rc(&v, "opaque_p256_hash_to_curve", rc)) {
				check_bytes(&v, "P (x || y)", p, 64, got, 64);
			}
		}
		vec_end(&v);
	}
}

/*
 * K.1-K.3: expand_message_xmd(msg, DST, len_in_bytes) == uniform_bytes.
 *
 * msg_prime and DST_prime are internal to expand_message_xmd; uniform_bytes is a hash of
 * them, so a correct uniform_bytes covers both. The one exception is the long-DST rule
 * (RFC 9380 section 5.3.3): opaque_expand_message_xmd takes dst_len 1..255, so for the
 * 256-byte DST of K.2 this test applies the rule itself, DST = H("H2C-OVERSIZE-DST-" ||
 * long DST), and checks its result against DST_prime (= DST || I2OSP(len(DST), 1)) before
 * using it. For the short DSTs the same DST_prime check just confirms the vector is read
 * right.
 */
static void run_h2c_xmd(json_t *root, const char *key)
{
	json_t *suite = json_object_get(root, key);
	json_t *jdst = json_object_get(suite, "DST");
	json_t *jhash = json_object_get(suite, "hash");
	json_t *tests = json_object_get(suite, "tests");
	if (!json_is_string(jdst) || !json_is_string(jhash) || !json_is_array(tests) ||
	    json_array_size(tests) < 10) {
		section_missing("rfc9380", key);
		return;
	}
	opaque_hash_id hash;
	const EVP_MD *md;
	if (strcmp(json_string_value(jhash), "SHA256") == 0) {
		hash = OPAQUE_HASH_SHA256;
		md = EVP_sha256();
	} else if (strcmp(json_string_value(jhash), "SHA512") == 0) {
		hash = OPAQUE_HASH_SHA512;
		md = EVP_sha512();
	} else {
		section_missing("rfc9380", key);
		return;
	}
	uint8_t dst[256];
	size_t dst_len = strlen(json_string_value(jdst));
	if (dst_len > 255) {
		static const char prefix[] = "H2C-OVERSIZE-DST-";
		unsigned int md_len = 0;
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (ctx == NULL || EVP_DigestInit_ex(ctx, md, NULL) != 1 ||
		    EVP_DigestUpdate(ctx, prefix, strlen(prefix)) != 1 ||
		    EVP_DigestUpdate(ctx, json_string_value(jdst), dst_len) != 1 ||
		    EVP_DigestFinal_ex(ctx, dst, &md_len) != 1) {
			EVP_MD_CTX_free(ctx);
			printf("FAIL rfc9380 %s: OpenSSL digest failed\n", key);
			n_failed++;
			return;
		}
		EVP_MD_CTX_free(ctx);
		dst_len = md_len;
	} else {
		memcpy(dst, json_string_value(jdst), dst_len);
	}

	size_t i;
	json_t *jt;
	json_array_foreach(tests, i, jt)
	{
		vec v;
		char label[64];
		bytes dst_prime, uniform;
		json_t *jmsg = json_object_get(jt, "msg");
		json_t *jlen = json_object_get(jt, "len_in_bytes");
		const char *msg = json_is_string(jmsg) ? json_string_value(jmsg) : "";
		const char *len_str = json_is_string(jlen) ? json_string_value(jlen) : "?";
		msg_label(msg, label, sizeof label);
		vec_begin(&v, "rfc9380", "%s %s len_in_bytes=%s", key, label, len_str);
		int ok = get_hex(&v, jt, "DST_prime", &dst_prime);
		ok &= get_hex(&v, jt, "uniform_bytes", &uniform);
		if (!json_is_string(jmsg) || !json_is_string(jlen)) {
			vec_fail(&v, "field msg or len_in_bytes missing or not a string");
			ok = 0;
		}
		if (ok) {
			uint8_t expected_dst_prime[257];
			memcpy(expected_dst_prime, dst, dst_len);
			expected_dst_prime[dst_len] = (uint8_t)dst_len;
			check_bytes(&v, "DST_prime", dst_prime.b, dst_prime.len, expected_dst_prime,
			            dst_len + 1);

			size_t out_len = (size_t)strtoul(len_str, NULL, 16);
			uint8_t out[OPAQUE_XMD_MAX_OUT];
			if (out_len == 0 || out_len > sizeof out || out_len != uniform.len) {
				vec_fail(&v, "len_in_bytes %s unusable (uniform_bytes has %zu)",
				         len_str, uniform.len);
			} else {
				opaque_err rc = opaque_expand_message_xmd(
				    hash, (const uint8_t *)msg, strlen(msg), dst, dst_len, out,
				    out_len);
				if (check_rc(&v, "opaque_expand_message_xmd", rc)) {
					check_bytes(&v, "uniform_bytes", uniform.b, uniform.len,
					            out, out_len);
				}
			}
		}
		vec_end(&v);
	}
}

static void run_rfc9380(json_t *root)
{
	run_h2c_p256(root);
	run_h2c_xmd(root, "expand_message_xmd_SHA256_38");
	run_h2c_xmd(root, "expand_message_xmd_SHA256_256");
	run_h2c_xmd(root, "expand_message_xmd_SHA512_38");
}

/* ------------------------------------------------------------------------------------ */

static json_t *load(const char *dir, const char *file)
{
	char path[4096];
	json_error_t err;
	snprintf(path, sizeof path, "%s/%s", dir, file);
	json_t *root = json_load_file(path, 0, &err);
	if (root == NULL) {
		printf("FAIL cannot load %s: %s (line %d)\n", path, err.text, err.line);
		n_failed++;
	}
	return root;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s VECTOR_DIR\n", argv[0]);
		return 2;
	}
	static const struct {
		const char *file;
		void (*run)(json_t *);
	} files[] = {
	    {"opaque-rfc9807.json", run_rfc9807},
	    {"oprf-rfc9497.json", run_rfc9497},
	    {"h2c-rfc9380.json", run_rfc9380},
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		json_t *root = load(argv[1], files[i].file);
		if (root != NULL) {
			files[i].run(root);
			json_decref(root);
		}
	}
	if (n_skipped > 0) {
		printf("%d skipped (not supported by this library)\n", n_skipped);
	}
	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed == 0 && n_passed > 0 ? 0 : 1;
}
