/*
 * test_opaque.c - behaviour tests of the OPAQUE core's API (cmocka). Every test that is not
 * suite-specific runs for both suites, P256-SHA256 and ristretto255-SHA512: round trips,
 * wrong passwords, tampered messages, invalid group elements, argument and buffer checks,
 * wiping of states and secrets, fake records and pluggable server keys.
 *
 * Expected values come from the RFCs (sizes, invalid encodings, generators) or from protocol
 * relations (client == server, registration == login, output independent of the blind),
 * never from running this code and pasting its output. The byte-exact checks against the
 * RFC test vectors live in test_vectors.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <sodium.h>

#include "opaque/opaque.h"
#include "opaque/oprf.h"
#include "opaque_internal.h"
#include "testutil.h"

/* ------------------------------------------------------------------------------------ */
/* Fixture and helpers                                                                   */
/* ------------------------------------------------------------------------------------ */

static opaque_suite_id suite_p256 = OPAQUE_SUITE_P256_SHA256;
static opaque_suite_id suite_r255 = OPAQUE_SUITE_RISTRETTO255_SHA512;

#define LIT(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

static const char PASSWORD[] = "CorrectHorseBatteryStaple";
static const char OTHER_PASSWORD[] = "CorrectHorseBatteryStapler";
static const char CONTEXT[] = "bkv test context";
static const char CRED_ID[] = "alice@example.org";

/* SEC1-compressed P-256 generator (SEC 2; its y is odd) and the RFC 9496 ristretto255
 * basepoint. */
static const char P256_G_HEX[] =
    "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
static const char R255_G_HEX[] = "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76";

/* The P-256 field prime p and group order n, and the ristretto255 group order L (little
 * endian), from SEC 2 and RFC 9496. */
static const char P256_P_HEX[] = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff";
static const char P256_N_HEX[] = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
static const char P256_B_HEX[] = "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b";
static const char R255_L_LE_HEX[] =
    "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";

typedef struct fx {
	opaque_suite_id suite;
	const opaque_sizes *sz;
	opaque_config cfg;
	opaque_soft_server_keys soft;
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
} fx;

/* One login: both sides' states and every message and output. */
typedef struct session {
	opaque_client_login_state cst;
	opaque_server_login_state sst;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t client_session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t server_session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
} session;

static int setup(void **state)
{
	opaque_suite_id suite = *(opaque_suite_id *)*state;
	fx *f = calloc(1, sizeof *f);
	if (f == NULL) {
		return -1;
	}
	f->suite = suite;
	f->sz = opaque_suite_sizes(suite);
	if (f->sz == NULL) {
		free(f);
		return -1;
	}
	f->cfg.suite = suite;
	f->cfg.context = (const uint8_t *)CONTEXT;
	f->cfg.context_len = sizeof CONTEXT - 1;
	f->cfg.ksf.id = OPAQUE_KSF_IDENTITY;
	if (opaque_soft_server_keys_generate(&f->soft, suite) != OPAQUE_OK) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	opaque_soft_server_keys_wipe(&f->soft);
	free(f);
	return 0;
}

static const char *suite_label(const fx *f)
{
	return f->suite == OPAQUE_SUITE_P256_SHA256 ? "P256-SHA256" : "ristretto255-SHA512";
}

static size_t generator(opaque_suite_id suite, uint8_t out[OPAQUE_MAX_ELEMENT_BYTES])
{
	long n = tu_hex_decode(suite == OPAQUE_SUITE_P256_SHA256 ? P256_G_HEX : R255_G_HEX, out,
	                       OPAQUE_MAX_ELEMENT_BYTES);
	assert_true(n > 0);
	return (size_t)n;
}

static void hex32(const char *hex, uint8_t out[32])
{
	assert_int_equal(tu_hex_decode(hex, out, 32), 32);
}

static void assert_err(opaque_err got, opaque_err want)
{
	if (got != want) {
		fail_msg("expected %s, got %s", opaque_strerror(want), opaque_strerror(got));
	}
}

static void assert_err_in(opaque_err got, const opaque_err *set, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		if (got == set[i]) {
			return;
		}
	}
	fail_msg("%s: unexpected result %s", what, opaque_strerror(got));
}

static void flip_bit(uint8_t *buf, size_t byte, unsigned bit)
{
	buf[byte] = (uint8_t)(buf[byte] ^ (1u << bit));
}

/* Registration through the public API with the given config, keys and identities. */
static opaque_err try_register(const fx *f, const opaque_config *cfg,
                               const opaque_server_keys *keys, const char *password,
                               const opaque_identities *ids, uint8_t *record, uint8_t *export_key)
{
	opaque_client_registration_state st;
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	size_t pw_len = strlen(password);
	opaque_err rc = opaque_client_registration_start(cfg, (const uint8_t *)password, pw_len,
	                                                 &st, req, f->sz->registration_request);
	if (rc != OPAQUE_OK) {
		return rc;
	}
	rc = opaque_server_registration_response(cfg, keys, LIT(CRED_ID), req,
	                                         f->sz->registration_request, resp,
	                                         f->sz->registration_response);
	if (rc != OPAQUE_OK) {
		opaque_client_registration_state_wipe(&st);
		return rc;
	}
	return opaque_client_registration_finish(
	    cfg, &st, (const uint8_t *)password, pw_len, ids, resp, f->sz->registration_response,
	    record, f->sz->registration_record, export_key, f->sz->export_key);
}

static const opaque_identities NO_IDS = {NULL, 0, NULL, 0};

/* Registers PASSWORD with default identities into f->record / f->export_key. */
static void register_user(fx *f)
{
	assert_err(
	    try_register(f, &f->cfg, &f->soft.keys, PASSWORD, &NO_IDS, f->record, f->export_key),
	    OPAQUE_OK);
}

static void client_start(const fx *f, const opaque_config *cfg, session *s, const char *password)
{
	memset(s, 0, sizeof *s);
	assert_err(opaque_client_login_start(cfg, (const uint8_t *)password, strlen(password),
	                                     &s->cst, s->ke1, f->sz->ke1),
	           OPAQUE_OK);
}

static opaque_err server_start(const fx *f, const opaque_config *cfg,
                               const opaque_server_keys *keys, const opaque_identities *ids,
                               const uint8_t *record, const uint8_t *ke1, session *s)
{
	return opaque_server_login_start(cfg, keys, ids, LIT(CRED_ID), record,
	                                 f->sz->registration_record, ke1, f->sz->ke1, &s->sst,
	                                 s->ke2, f->sz->ke2);
}

static opaque_err client_finish(const fx *f, const opaque_config *cfg, session *s,
                                const char *password, const opaque_identities *ids)
{
	return opaque_client_login_finish(cfg, &s->cst, (const uint8_t *)password, strlen(password),
	                                  ids, s->ke2, f->sz->ke2, s->ke3, f->sz->ke3,
	                                  s->client_session_key, f->sz->session_key, s->export_key,
	                                  f->sz->export_key);
}

static opaque_err server_finish(const fx *f, session *s)
{
	return opaque_server_login_finish(&s->sst, s->ke3, f->sz->ke3, s->server_session_key,
	                                  f->sz->session_key);
}

/* A whole successful login with f's config, keys and record. */
static void login_ok(fx *f, session *s)
{
	client_start(f, &f->cfg, s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s->ke1, s),
	           OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, s, PASSWORD, &NO_IDS), OPAQUE_OK);
	assert_err(server_finish(f, s), OPAQUE_OK);
}

static const opaque_err ELEMENT_ERRORS[] = {
    OPAQUE_ERR_ELEMENT_IDENTITY, OPAQUE_ERR_ELEMENT_NOT_ON_CURVE, OPAQUE_ERR_ELEMENT_NONCANONICAL};

/* ------------------------------------------------------------------------------------ */
/* Sizes, names, strerror                                                                */
/* ------------------------------------------------------------------------------------ */

static void test_suite_sizes_match_rfc9807(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = f->sz;
	/* RFC 9807 section 7 / RFC 9497 section 4: P-256 Noe = Npk = 33, Nh = 32;
	 * ristretto255 Noe = Npk = 32, Nh = 64. Ns = Nsk = Nn = Nseed = Nok = 32. */
	size_t noe = f->suite == OPAQUE_SUITE_P256_SHA256 ? 33 : 32;
	size_t nh = f->suite == OPAQUE_SUITE_P256_SHA256 ? 32 : 64;
	assert_int_equal(sz->Noe, noe);
	assert_int_equal(sz->Npk, noe);
	assert_int_equal(sz->Ns, 32);
	assert_int_equal(sz->Nsk, 32);
	assert_int_equal(sz->Nh, nh);
	assert_int_equal(sz->Nm, nh);
	assert_int_equal(sz->Nx, nh);
	assert_int_equal(sz->Nn, 32);
	assert_int_equal(sz->Nok, 32);
	assert_int_equal(sz->Nseed, 32);
	/* Message layouts, RFC 9807 sections 4.1, 5.1, 6.1. */
	assert_int_equal(sz->registration_request, noe);
	assert_int_equal(sz->registration_response, noe + noe);
	assert_int_equal(sz->envelope, 32 + nh);
	assert_int_equal(sz->registration_record, noe + nh + 32 + nh);
	assert_int_equal(sz->ke1, noe + 32 + noe);
	assert_int_equal(sz->ke2, noe + 32 + (noe + 32 + nh) + 32 + noe + nh);
	assert_int_equal(sz->ke3, nh);
	assert_int_equal(sz->export_key, nh);
	assert_int_equal(sz->session_key, nh);
	/* The OPAQUE_MAX_* bounds hold. */
	assert_true(sz->registration_request <= OPAQUE_MAX_REGISTRATION_REQUEST_BYTES);
	assert_true(sz->registration_response <= OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES);
	assert_true(sz->registration_record <= OPAQUE_MAX_REGISTRATION_RECORD_BYTES);
	assert_true(sz->ke1 <= OPAQUE_MAX_KE1_BYTES);
	assert_true(sz->ke2 <= OPAQUE_MAX_KE2_BYTES);
	assert_true(sz->ke3 <= OPAQUE_MAX_KE3_BYTES);
	const char *name = opaque_suite_name(f->suite);
	assert_non_null(name);
	assert_true(name[0] != '\0');
}

static void test_unknown_suite_has_no_sizes_and_no_real_name(void **state)
{
	(void)state;
	static const int unknown[] = {0, 3, 255, -1};
	const char *p256 = opaque_suite_name(OPAQUE_SUITE_P256_SHA256);
	const char *r255 = opaque_suite_name(OPAQUE_SUITE_RISTRETTO255_SHA512);
	assert_string_not_equal(p256, r255);
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		assert_null(opaque_suite_sizes((opaque_suite_id)unknown[i]));
		/* opaque.h's "NULL for an unknown suite" may be read as covering
		 * opaque_suite_name too; the core returns a placeholder. Either way it must
		 * not name a real suite. */
		const char *name = opaque_suite_name((opaque_suite_id)unknown[i]);
		if (name != NULL) {
			assert_string_not_equal(name, p256);
			assert_string_not_equal(name, r255);
		}
	}
}

static void test_strerror_gives_a_distinct_nonempty_message_for_every_error(void **state)
{
	(void)state;
	const char *msgs[OPAQUE_ERR_CRYPTO + 1];
	for (int e = OPAQUE_OK; e <= OPAQUE_ERR_CRYPTO; e++) {
		msgs[e] = opaque_strerror((opaque_err)e);
		assert_non_null(msgs[e]);
		assert_true(msgs[e][0] != '\0');
		for (int k = 0; k < e; k++) {
			if (strcmp(msgs[k], msgs[e]) == 0) {
				fail_msg("errors %d and %d share the message \"%s\"", k, e,
				         msgs[e]);
			}
		}
	}
	/* Never NULL, even for values outside the enum. */
	assert_non_null(opaque_strerror((opaque_err)(OPAQUE_ERR_CRYPTO + 1)));
	assert_non_null(opaque_strerror((opaque_err)-1));
	assert_non_null(opaque_strerror((opaque_err)1000));
}

/* ------------------------------------------------------------------------------------ */
/* Round trips                                                                           */
/* ------------------------------------------------------------------------------------ */

static void test_login_after_registration_gives_equal_client_and_server_session_keys(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	login_ok(f, &s);
	assert_memory_equal(s.client_session_key, s.server_session_key, f->sz->session_key);
	assert_false(tu_is_zero(s.client_session_key, f->sz->session_key));
}

static void test_login_export_key_equals_registration_export_key(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	login_ok(f, &s);
	assert_memory_equal(s.export_key, f->export_key, f->sz->export_key);
	assert_false(tu_is_zero(f->export_key, f->sz->export_key));
}

static void test_two_logins_give_different_session_keys_and_the_same_export_key(void **state)
{
	fx *f = *state;
	session a, b;
	register_user(f);
	login_ok(f, &a);
	login_ok(f, &b);
	assert_memory_not_equal(a.client_session_key, b.client_session_key, f->sz->session_key);
	assert_memory_equal(a.export_key, b.export_key, f->sz->export_key);
}

static void test_server_state_holds_the_expected_client_mac_and_session_key(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_OK);
	/* KE3 is exactly client_mac; the state's fields are part of the interface. */
	assert_memory_equal(s.sst.expected_client_mac, s.ke3, f->sz->ke3);
	assert_memory_equal(s.sst.session_key, s.client_session_key, f->sz->session_key);
	assert_err(server_finish(f, &s), OPAQUE_OK);
}

static void test_empty_context_is_allowed(void **state)
{
	fx *f = *state;
	session s;
	f->cfg.context = NULL;
	f->cfg.context_len = 0;
	register_user(f);
	login_ok(f, &s);
	assert_memory_equal(s.client_session_key, s.server_session_key, f->sz->session_key);
	assert_memory_equal(s.export_key, f->export_key, f->sz->export_key);
}

static void test_context_mismatch_between_client_and_server_fails_server_auth(void **state)
{
	fx *f = *state;
	session s;
	opaque_config other = f->cfg;
	other.context = (const uint8_t *)"another context";
	other.context_len = strlen("another context");
	register_user(f);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &other, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	/* The context is in the preamble that server_mac covers (RFC 9807 section 6.4.2). */
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_ERR_SERVER_AUTH);
}

static void test_identities_round_trip(void **state)
{
	fx *f = *state;
	session s;
	const opaque_identities ids = {LIT("alice"), LIT("vault.example.org")};
	assert_err(
	    try_register(f, &f->cfg, &f->soft.keys, PASSWORD, &ids, f->record, f->export_key),
	    OPAQUE_OK);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &ids, f->record, s.ke1, &s), OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &ids), OPAQUE_OK);
	assert_err(server_finish(f, &s), OPAQUE_OK);
	assert_memory_equal(s.client_session_key, s.server_session_key, f->sz->session_key);
	assert_memory_equal(s.export_key, f->export_key, f->sz->export_key);
}

static void test_explicit_identities_equal_to_the_public_keys_match_the_defaults(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	/* RFC 9807 section 4.1.2: a missing identity defaults to the public key. */
	const opaque_identities ids = {f->record, f->sz->Npk, f->soft.keys.server_public_key,
	                               f->sz->Npk};
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &ids), OPAQUE_OK);
	assert_err(server_finish(f, &s), OPAQUE_OK);
	assert_memory_equal(s.client_session_key, s.server_session_key, f->sz->session_key);
}

static void test_client_identity_changed_since_registration_fails_envelope_recovery(void **state)
{
	fx *f = *state;
	session s;
	const opaque_identities reg_ids = {LIT("alice"), LIT("vault.example.org")};
	const opaque_identities login_ids = {LIT("mallory"), LIT("vault.example.org")};
	assert_err(
	    try_register(f, &f->cfg, &f->soft.keys, PASSWORD, &reg_ids, f->record, f->export_key),
	    OPAQUE_OK);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &login_ids, f->record, s.ke1, &s),
	           OPAQUE_OK);
	/* The envelope's auth_tag covers the cleartext credentials, identities included. */
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &login_ids),
	           OPAQUE_ERR_ENVELOPE_RECOVERY);
}

static void test_server_identity_mismatch_between_client_and_server_fails_server_auth(void **state)
{
	fx *f = *state;
	session s;
	const opaque_identities ids = {LIT("alice"), LIT("vault.example.org")};
	const opaque_identities server_ids = {LIT("alice"), LIT("evil.example.org")};
	assert_err(
	    try_register(f, &f->cfg, &f->soft.keys, PASSWORD, &ids, f->record, f->export_key),
	    OPAQUE_OK);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &server_ids, f->record, s.ke1, &s),
	           OPAQUE_OK);
	/* The client's envelope recovers (its identities match registration), but the
	 * identities are in the preamble that server_mac covers. */
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &ids), OPAQUE_ERR_SERVER_AUTH);
}

/* ------------------------------------------------------------------------------------ */
/* Argon2id                                                                              */
/* ------------------------------------------------------------------------------------ */

static const opaque_ksf ARGON2_SMALL = {OPAQUE_KSF_ARGON2ID, 1, 1024, 1};

static void test_argon2id_round_trip_at_small_params(void **state)
{
	fx *f = *state;
	session s;
	f->cfg.ksf = ARGON2_SMALL;
	register_user(f);
	login_ok(f, &s);
	assert_memory_equal(s.client_session_key, s.server_session_key, f->sz->session_key);
	assert_memory_equal(s.export_key, f->export_key, f->sz->export_key);
}

/* A registration with every random value fixed, so only the KSF can change export_key. */
static void fixed_registration_export_key(fx *f, const opaque_ksf *ksf, uint8_t *export_key)
{
	opaque_config cfg = f->cfg;
	opaque_client_registration_state st;
	uint8_t blind[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t nonce[OPAQUE_NONCE_BYTES];
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	cfg.ksf = *ksf;
	assert_err(opaque_oprf_hash_to_scalar(f->suite, LIT("fixed blind"), blind, f->sz->Ns),
	           OPAQUE_OK);
	memset(nonce, 0x42, sizeof nonce);
	assert_err(opaque_client_registration_start_with_randomness(&cfg, LIT(PASSWORD), blind,
	                                                            f->sz->Ns, &st, req,
	                                                            f->sz->registration_request),
	           OPAQUE_OK);
	assert_err(opaque_server_registration_response(&cfg, &f->soft.keys, LIT(CRED_ID), req,
	                                               f->sz->registration_request, resp,
	                                               f->sz->registration_response),
	           OPAQUE_OK);
	assert_err(opaque_client_registration_finish_with_randomness(
	               &cfg, &st, LIT(PASSWORD), &NO_IDS, resp, f->sz->registration_response, nonce,
	               record, f->sz->registration_record, export_key, f->sz->export_key),
	           OPAQUE_OK);
}

static void test_different_argon2id_params_give_different_export_keys(void **state)
{
	fx *f = *state;
	uint8_t base[OPAQUE_MAX_HASH_BYTES], again[OPAQUE_MAX_HASH_BYTES];
	uint8_t other[OPAQUE_MAX_HASH_BYTES];
	const size_t n = f->sz->export_key;
	const opaque_ksf more_iterations = {OPAQUE_KSF_ARGON2ID, 2, 1024, 1};
	const opaque_ksf more_memory = {OPAQUE_KSF_ARGON2ID, 1, 2048, 1};
	const opaque_ksf more_lanes = {OPAQUE_KSF_ARGON2ID, 1, 1024, 2};
	const opaque_ksf identity = {OPAQUE_KSF_IDENTITY, 0, 0, 0};

	fixed_registration_export_key(f, &ARGON2_SMALL, base);
	/* Control: the same parameters and randomness give the same key. */
	fixed_registration_export_key(f, &ARGON2_SMALL, again);
	assert_memory_equal(base, again, n);

	fixed_registration_export_key(f, &more_iterations, other);
	assert_memory_not_equal(base, other, n);
	fixed_registration_export_key(f, &more_memory, other);
	assert_memory_not_equal(base, other, n);
	fixed_registration_export_key(f, &more_lanes, other);
	assert_memory_not_equal(base, other, n);
	fixed_registration_export_key(f, &identity, other);
	assert_memory_not_equal(base, other, n);
}

static void
test_login_with_other_argon2id_params_than_registration_fails_envelope_recovery(void **state)
{
	fx *f = *state;
	session s;
	opaque_config login_cfg = f->cfg;
	f->cfg.ksf = ARGON2_SMALL;
	login_cfg.ksf = ARGON2_SMALL;
	login_cfg.ksf.iterations = 2;
	register_user(f);
	client_start(f, &login_cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	assert_err(client_finish(f, &login_cfg, &s, PASSWORD, &NO_IDS),
	           OPAQUE_ERR_ENVELOPE_RECOVERY);
}

static void test_unknown_ksf_fails_with_argument(void **state)
{
	fx *f = *state;
	opaque_config cfg = f->cfg;
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	cfg.ksf.id = (opaque_ksf_id)7;
	/* Rejected at the first call that looks at the KSF, whichever that is. */
	assert_err(try_register(f, &cfg, &f->soft.keys, PASSWORD, &NO_IDS, record, export_key),
	           OPAQUE_ERR_ARGUMENT);
}

/* ------------------------------------------------------------------------------------ */
/* Wrong password, wrong KE3, wrong server                                               */
/* ------------------------------------------------------------------------------------ */

static void test_wrong_password_fails_at_client_with_envelope_recovery(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	client_start(f, &f->cfg, &s, OTHER_PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	memset(s.client_session_key, 0xaa, sizeof s.client_session_key);
	memset(s.export_key, 0xaa, sizeof s.export_key);
	assert_err(client_finish(f, &f->cfg, &s, OTHER_PASSWORD, &NO_IDS),
	           OPAQUE_ERR_ENVELOPE_RECOVERY);
	/* Output secrets are wiped on the error path. */
	assert_true(tu_is_zero(s.client_session_key, f->sz->session_key));
	assert_true(tu_is_zero(s.export_key, f->sz->export_key));
}

static void test_server_rejects_random_ke3_with_client_auth(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	randombytes_buf(s.ke3, f->sz->ke3);
	memset(s.server_session_key, 0, sizeof s.server_session_key);
	assert_err(server_finish(f, &s), OPAQUE_ERR_CLIENT_AUTH);
	assert_true(tu_is_zero(s.server_session_key, f->sz->session_key));
}

static void test_server_rejects_ke3_from_another_session_with_client_auth(void **state)
{
	fx *f = *state;
	session a, b;
	register_user(f);
	client_start(f, &f->cfg, &a, PASSWORD);
	client_start(f, &f->cfg, &b, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, a.ke1, &a),
	           OPAQUE_OK);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, b.ke1, &b),
	           OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, &a, PASSWORD, &NO_IDS), OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, &b, PASSWORD, &NO_IDS), OPAQUE_OK);
	/* Session b's server gets session a's (genuine) KE3. */
	memcpy(b.ke3, a.ke3, f->sz->ke3);
	assert_err(server_finish(f, &b), OPAQUE_ERR_CLIENT_AUTH);
	assert_memory_not_equal(b.server_session_key, a.client_session_key, f->sz->session_key);
	assert_memory_not_equal(b.server_session_key, b.client_session_key, f->sz->session_key);
	/* And session a still completes with its own KE3. */
	assert_err(server_finish(f, &a), OPAQUE_OK);
	assert_memory_equal(a.server_session_key, a.client_session_key, f->sz->session_key);
}

static void test_login_with_wrong_credential_identifier_fails_envelope_recovery(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	client_start(f, &f->cfg, &s, PASSWORD);
	/* Another identifier gives another OPRF key, hence another randomized_password. */
	assert_err(opaque_server_login_start(&f->cfg, &f->soft.keys, &NO_IDS, LIT("bob"), f->record,
	                                     f->sz->registration_record, s.ke1, f->sz->ke1, &s.sst,
	                                     s.ke2, f->sz->ke2),
	           OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_ERR_ENVELOPE_RECOVERY);
}

static void test_server_with_another_ake_key_fails_envelope_recovery(void **state)
{
	fx *f = *state;
	session s;
	opaque_soft_server_keys *other = calloc(1, sizeof *other);
	uint8_t sk[OPAQUE_MAX_SCALAR_BYTES], pk[OPAQUE_MAX_ELEMENT_BYTES];
	assert_non_null(other);
	register_user(f);
	/* Same oprf_seed, different AKE key pair. */
	assert_err(opaque_generate_ake_key_pair(f->suite, sk, f->sz->Nsk, pk, f->sz->Npk),
	           OPAQUE_OK);
	assert_err(opaque_soft_server_keys_init(other, f->suite, f->soft.oprf_seed, f->sz->Nh, sk,
	                                        f->sz->Nsk),
	           OPAQUE_OK);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &other->keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	/* server_public_key is part of the cleartext credentials under the envelope's MAC. */
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_ERR_ENVELOPE_RECOVERY);
	opaque_soft_server_keys_wipe(other);
	free(other);
}

/* ------------------------------------------------------------------------------------ */
/* Tampering                                                                             */
/* ------------------------------------------------------------------------------------ */

typedef struct msg_field {
	const char *name;
	size_t off;
	size_t len;
} msg_field;

enum {
	KE2_EVALUATED,
	KE2_MASKING_NONCE,
	KE2_MASKED_RESPONSE,
	KE2_SERVER_NONCE,
	KE2_SERVER_KEYSHARE,
	KE2_SERVER_MAC,
	KE2_NFIELDS
};

/* KE2 = evaluated_message || masking_nonce || masked_response || server_nonce ||
 * server_public_keyshare || server_mac (RFC 9807 sections 4.1.3 and 6.1). */
static void ke2_fields(const opaque_sizes *sz, msg_field out[KE2_NFIELDS])
{
	const size_t lens[KE2_NFIELDS] = {sz->Noe, sz->Nn,  sz->Npk + sz->Nn + sz->Nm,
	                                  sz->Nn,  sz->Npk, sz->Nm};
	static const char *const names[KE2_NFIELDS] = {"evaluated_message",      "masking_nonce",
	                                               "masked_response",        "server_nonce",
	                                               "server_public_keyshare", "server_mac"};
	size_t off = 0;
	for (int i = 0; i < KE2_NFIELDS; i++) {
		out[i].name = names[i];
		out[i].off = off;
		out[i].len = lens[i];
		off += lens[i];
	}
	assert_int_equal(off, sz->ke2);
}

enum { KE1_BLINDED, KE1_CLIENT_NONCE, KE1_CLIENT_KEYSHARE, KE1_NFIELDS };

/* KE1 = blinded_message || client_nonce || client_public_keyshare. */
static void ke1_fields(const opaque_sizes *sz, msg_field out[KE1_NFIELDS])
{
	const size_t lens[KE1_NFIELDS] = {sz->Noe, sz->Nn, sz->Npk};
	static const char *const names[KE1_NFIELDS] = {"blinded_message", "client_nonce",
	                                               "client_public_keyshare"};
	size_t off = 0;
	for (int i = 0; i < KE1_NFIELDS; i++) {
		out[i].name = names[i];
		out[i].off = off;
		out[i].len = lens[i];
		off += lens[i];
	}
	assert_int_equal(off, sz->ke1);
}

/* Bit positions tried in each field: first, middle and last byte. */
static const struct {
	int where; /* 0 first byte, 1 middle, 2 last */
	unsigned bit;
} FLIPS[] = {{0, 0}, {0, 7}, {1, 3}, {2, 0}, {2, 7}};
#define NFLIPS (sizeof FLIPS / sizeof FLIPS[0])

static size_t flip_byte(const msg_field *fl, size_t k)
{
	return FLIPS[k].where == 0 ? 0 : FLIPS[k].where == 1 ? fl->len / 2 : fl->len - 1;
}

/* Flips bits in one KE2 field and checks that the client rejects it with one of allowed,
 * wiping its state and output secrets. */
static void ke2_tamper(fx *f, int field, const opaque_err *allowed, size_t nallowed)
{
	msg_field fields[KE2_NFIELDS];
	ke2_fields(f->sz, fields);
	const msg_field *fl = &fields[field];
	register_user(f);
	for (size_t k = 0; k < NFLIPS; k++) {
		session s;
		size_t byte = flip_byte(fl, k);
		char what[128];
		client_start(f, &f->cfg, &s, PASSWORD);
		assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
		           OPAQUE_OK);
		flip_bit(s.ke2, fl->off + byte, FLIPS[k].bit);
		memset(s.client_session_key, 0xaa, sizeof s.client_session_key);
		memset(s.export_key, 0xaa, sizeof s.export_key);
		opaque_err rc = client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS);
		snprintf(what, sizeof what, "%s KE2 %s byte %zu bit %u", suite_label(f), fl->name,
		         byte, FLIPS[k].bit);
		print_message("%s -> %s\n", what, opaque_strerror(rc));
		assert_err_in(rc, allowed, nallowed, what);
		assert_true(tu_is_zero(s.client_session_key, f->sz->session_key));
		assert_true(tu_is_zero(s.export_key, f->sz->export_key));
		assert_true(tu_is_zero(&s.cst, sizeof s.cst));
		opaque_server_login_state_wipe(&s.sst);
	}
}

/* A changed evaluated element unblinds to another OPRF output: the envelope does not
 * recover (or the element itself is invalid). */
static void test_ke2_with_flipped_evaluated_message_is_rejected(void **state)
{
	static const opaque_err allowed[] = {
	    OPAQUE_ERR_ENVELOPE_RECOVERY, OPAQUE_ERR_ELEMENT_IDENTITY,
	    OPAQUE_ERR_ELEMENT_NOT_ON_CURVE, OPAQUE_ERR_ELEMENT_NONCANONICAL};
	ke2_tamper(*state, KE2_EVALUATED, allowed, 4);
}

/* The masking nonce and the masked response unmask to a wrong server_public_key ||
 * envelope. RFC 9807 only asks for EnvelopeRecoveryError; an implementation that decodes
 * the unmasked server_public_key first reports an element error instead. */
static const opaque_err UNMASK_ERRORS[] = {
    OPAQUE_ERR_ENVELOPE_RECOVERY, OPAQUE_ERR_ELEMENT_IDENTITY, OPAQUE_ERR_ELEMENT_NOT_ON_CURVE,
    OPAQUE_ERR_ELEMENT_NONCANONICAL};

static void test_ke2_with_flipped_masking_nonce_is_rejected(void **state)
{
	ke2_tamper(*state, KE2_MASKING_NONCE, UNMASK_ERRORS, 4);
}

static void test_ke2_with_flipped_masked_response_is_rejected(void **state)
{
	ke2_tamper(*state, KE2_MASKED_RESPONSE, UNMASK_ERRORS, 4);
}

/* The envelope recovers, but the nonce is in the transcript that server_mac covers. */
static void test_ke2_with_flipped_server_nonce_fails_server_auth(void **state)
{
	static const opaque_err allowed[] = {OPAQUE_ERR_SERVER_AUTH};
	ke2_tamper(*state, KE2_SERVER_NONCE, allowed, 1);
}

static void test_ke2_with_flipped_server_keyshare_is_rejected(void **state)
{
	static const opaque_err allowed[] = {OPAQUE_ERR_SERVER_AUTH, OPAQUE_ERR_ELEMENT_IDENTITY,
	                                     OPAQUE_ERR_ELEMENT_NOT_ON_CURVE,
	                                     OPAQUE_ERR_ELEMENT_NONCANONICAL};
	ke2_tamper(*state, KE2_SERVER_KEYSHARE, allowed, 4);
}

static void test_ke2_with_flipped_server_mac_fails_server_auth(void **state)
{
	static const opaque_err allowed[] = {OPAQUE_ERR_SERVER_AUTH};
	ke2_tamper(*state, KE2_SERVER_MAC, allowed, 1);
}

static void test_tampered_ke3_is_rejected_by_server_with_client_auth(void **state)
{
	fx *f = *state;
	register_user(f);
	for (size_t byte = 0; byte < f->sz->ke3; byte += f->sz->ke3 / 4) {
		session s;
		client_start(f, &f->cfg, &s, PASSWORD);
		assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
		           OPAQUE_OK);
		assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_OK);
		flip_bit(s.ke3, byte, (unsigned)(byte % 8));
		memset(s.server_session_key, 0, sizeof s.server_session_key);
		assert_err(server_finish(f, &s), OPAQUE_ERR_CLIENT_AUTH);
		assert_memory_not_equal(s.server_session_key, s.client_session_key,
		                        f->sz->session_key);
		assert_true(tu_is_zero(&s.sst, sizeof s.sst));
	}
}

/* Flips bits in one KE1 field: the server either rejects the element, or the session that
 * follows fails at the client with one of client_allowed. */
static void ke1_tamper(fx *f, int field, const opaque_err *client_allowed, size_t nclient)
{
	msg_field fields[KE1_NFIELDS];
	ke1_fields(f->sz, fields);
	const msg_field *fl = &fields[field];
	register_user(f);
	for (size_t k = 0; k < NFLIPS; k++) {
		session s;
		uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
		size_t byte = flip_byte(fl, k);
		char what[128];
		client_start(f, &f->cfg, &s, PASSWORD);
		memcpy(ke1, s.ke1, f->sz->ke1);
		flip_bit(ke1, fl->off + byte, FLIPS[k].bit);
		snprintf(what, sizeof what, "%s KE1 %s byte %zu bit %u", suite_label(f), fl->name,
		         byte, FLIPS[k].bit);
		opaque_err rc =
		    server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, ke1, &s);
		if (rc != OPAQUE_OK) {
			print_message("%s -> server: %s\n", what, opaque_strerror(rc));
			assert_err_in(rc, ELEMENT_ERRORS, 3, what);
			assert_true(tu_is_zero(&s.sst, sizeof s.sst));
			opaque_client_login_state_wipe(&s.cst);
			continue;
		}
		rc = client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS);
		print_message("%s -> client: %s\n", what, opaque_strerror(rc));
		assert_err_in(rc, client_allowed, nclient, what);
		opaque_server_login_state_wipe(&s.sst);
	}
}

static void test_ke1_with_flipped_blinded_message_fails_the_session(void **state)
{
	ke1_tamper(*state, KE1_BLINDED, UNMASK_ERRORS, 4);
}

static void test_ke1_with_flipped_client_nonce_fails_the_session(void **state)
{
	/* The client MACs its own KE1; the server's transcript has the changed one. */
	static const opaque_err allowed[] = {OPAQUE_ERR_SERVER_AUTH};
	ke1_tamper(*state, KE1_CLIENT_NONCE, allowed, 1);
}

static void test_ke1_with_flipped_client_keyshare_fails_the_session(void **state)
{
	static const opaque_err allowed[] = {OPAQUE_ERR_SERVER_AUTH};
	ke1_tamper(*state, KE1_CLIENT_KEYSHARE, allowed, 1);
}

/* ------------------------------------------------------------------------------------ */
/* Invalid group elements                                                                */
/* ------------------------------------------------------------------------------------ */

typedef struct bad_element {
	char what[64];
	uint8_t enc[OPAQUE_MAX_ELEMENT_BYTES];
	opaque_err expected;
	opaque_err alternative; /* also accepted, or OPAQUE_OK for none */
} bad_element;

#define MAX_BAD 12

/* The smallest x > 0 for which x^3 - 3x + b is not a square mod p (Euler's criterion,
 * computed with OpenSSL's bignums): 0x02 || x is not the encoding of any P-256 point. */
static void p256_x_without_square_root(uint8_t out[32])
{
	BN_CTX *ctx = BN_CTX_new();
	BIGNUM *p = NULL, *b = NULL;
	BIGNUM *x = BN_new(), *rhs = BN_new(), *t = BN_new(), *three = BN_new();
	assert_non_null(ctx);
	assert_true(BN_hex2bn(&p, P256_P_HEX) > 0 && BN_hex2bn(&b, P256_B_HEX) > 0);
	assert_true(x != NULL && rhs != NULL && t != NULL && three != NULL);
	assert_true(BN_set_word(three, 3) == 1);
	for (BN_ULONG i = 1;; i++) {
		assert_true(i < 1000);
		assert_true(BN_set_word(x, i) == 1);
		assert_true(BN_mod_sqr(t, x, p, ctx) == 1);
		assert_true(BN_mod_mul(rhs, t, x, p, ctx) == 1); /* x^3 */
		assert_true(BN_mod_mul(t, three, x, p, ctx) == 1);
		assert_true(BN_mod_sub(rhs, rhs, t, p, ctx) == 1); /* - 3x */
		assert_true(BN_mod_add(rhs, rhs, b, p, ctx) == 1); /* + b */
		if (BN_kronecker(rhs, p, ctx) == -1) {
			break;
		}
	}
	assert_int_equal(BN_bn2binpad(x, out, 32), 32);
	BN_free(p);
	BN_free(b);
	BN_free(x);
	BN_free(rhs);
	BN_free(t);
	BN_free(three);
	BN_CTX_free(ctx);
}

static void add_bad(bad_element *list, size_t *n, const char *what, const uint8_t *enc,
                    size_t enc_len, opaque_err expected, opaque_err alternative)
{
	assert_true(*n < MAX_BAD);
	bad_element *e = &list[(*n)++];
	snprintf(e->what, sizeof e->what, "%s", what);
	memset(e->enc, 0, sizeof e->enc);
	memcpy(e->enc, enc, enc_len);
	e->expected = expected;
	e->alternative = alternative;
}

static void add_bad_hex(bad_element *list, size_t *n, const char *what, const char *hex,
                        opaque_err expected)
{
	uint8_t enc[OPAQUE_MAX_ELEMENT_BYTES];
	long len = tu_hex_decode(hex, enc, sizeof enc);
	assert_true(len > 0);
	add_bad(list, n, what, enc, (size_t)len, expected, OPAQUE_OK);
}

/*
 * Full-length encodings that are not valid non-identity elements, each with the error the
 * API promises. P-256 (SEC1 compressed): the identity, an x with no square root, x >= p and
 * bad prefixes. ristretto255: the identity, canonical encodings that do not decode (RFC 9496
 * A.2: non-square x^2, negative xy, s = -1), s >= p and negative s (low bit set).
 * Each is also checked to be invalid by an independent implementation (OpenSSL, libsodium).
 */
static size_t bad_elements(opaque_suite_id suite, bad_element list[MAX_BAD])
{
	size_t n = 0;
	uint8_t enc[OPAQUE_MAX_ELEMENT_BYTES];
	if (suite == OPAQUE_SUITE_P256_SHA256) {
		uint8_t g[OPAQUE_MAX_ELEMENT_BYTES];
		generator(suite, g);
		memset(enc, 0, sizeof enc);
		add_bad(list, &n, "identity (0x00 || zeros)", enc, 33, OPAQUE_ERR_ELEMENT_IDENTITY,
		        OPAQUE_OK);
		enc[0] = 0x02;
		p256_x_without_square_root(enc + 1);
		add_bad(list, &n, "x with no square root", enc, 33, OPAQUE_ERR_ELEMENT_NOT_ON_CURVE,
		        OPAQUE_OK);
		enc[0] = 0x03;
		hex32(P256_P_HEX, enc + 1);
		add_bad(list, &n, "x = p", enc, 33, OPAQUE_ERR_ELEMENT_NONCANONICAL, OPAQUE_OK);
		enc[0] = 0x02;
		memset(enc + 1, 0xff, 32);
		add_bad(list, &n, "x = 2^256 - 1", enc, 33, OPAQUE_ERR_ELEMENT_NONCANONICAL,
		        OPAQUE_OK);
		/* opaque.h: a prefix other than 02/03 is a non-canonical encoding. */
		memcpy(enc, g, 33);
		enc[0] = 0x04;
		add_bad(list, &n, "prefix 0x04", enc, 33, OPAQUE_ERR_ELEMENT_NONCANONICAL,
		        OPAQUE_OK);
		enc[0] = 0x05;
		add_bad(list, &n, "prefix 0x05", enc, 33, OPAQUE_ERR_ELEMENT_NONCANONICAL,
		        OPAQUE_OK);
		/* Not the identity either (that is 0x00 || zeros here). */
		enc[0] = 0x00;
		add_bad(list, &n, "prefix 0x00 with a non-zero x", enc, 33,
		        OPAQUE_ERR_ELEMENT_NONCANONICAL, OPAQUE_OK);

		/* Independent check: OpenSSL does not decode any of them (its identity
		 * encoding is the single byte 0x00). */
		EC_GROUP *grp = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
		EC_POINT *pt = EC_POINT_new(grp);
		assert_non_null(pt);
		for (size_t i = 0; i < n; i++) {
			if (EC_POINT_oct2point(grp, pt, list[i].enc, 33, NULL) == 1) {
				fail_msg("test data: OpenSSL decodes \"%s\"", list[i].what);
			}
		}
		EC_POINT_free(pt);
		EC_GROUP_free(grp);
	} else {
		memset(enc, 0, sizeof enc);
		add_bad(list, &n, "identity (32 zero bytes)", enc, 32, OPAQUE_ERR_ELEMENT_IDENTITY,
		        OPAQUE_OK);
		add_bad_hex(list, &n, "non-square x^2 (RFC 9496 A.2)",
		            "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
		            OPAQUE_ERR_ELEMENT_NOT_ON_CURVE);
		add_bad_hex(list, &n, "negative xy (RFC 9496 A.2)",
		            "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
		            OPAQUE_ERR_ELEMENT_NOT_ON_CURVE);
		add_bad_hex(list, &n, "s = -1 (RFC 9496 A.2)",
		            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		            OPAQUE_ERR_ELEMENT_NOT_ON_CURVE);
		add_bad_hex(list, &n, "s = p",
		            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		            OPAQUE_ERR_ELEMENT_NONCANONICAL);
		add_bad_hex(list, &n, "s = 2^255 - 1",
		            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		            OPAQUE_ERR_ELEMENT_NONCANONICAL);
		add_bad_hex(list, &n, "s = p + 1 (even, >= p)",
		            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		            OPAQUE_ERR_ELEMENT_NONCANONICAL);
		add_bad_hex(list, &n, "zero with the high bit set",
		            "0000000000000000000000000000000000000000000000000000000000000080",
		            OPAQUE_ERR_ELEMENT_NONCANONICAL);
		generator(suite, enc);
		enc[31] |= 0x80;
		add_bad(list, &n, "the basepoint with the high bit set", enc, 32,
		        OPAQUE_ERR_ELEMENT_NONCANONICAL, OPAQUE_OK);
		add_bad_hex(list, &n, "negative s = 1",
		            "0100000000000000000000000000000000000000000000000000000000000000",
		            OPAQUE_ERR_ELEMENT_NONCANONICAL);
		add_bad_hex(list, &n, "negative s (RFC 9496 A.2)",
		            "ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20",
		            OPAQUE_ERR_ELEMENT_NONCANONICAL);

		/* Independent check: libsodium rejects all but the identity, which it
		 * accepts as a valid (identity) element, and the high-bit encodings, which
		 * libsodium 1.0.18 (Debian 12) also accepts: it ignores bit 255 when
		 * decoding, so the core must reject them itself. */
		for (size_t i = 1; i < n; i++) {
			if ((list[i].enc[31] & 0x80) == 0 &&
			    crypto_core_ristretto255_is_valid_point(list[i].enc) == 1) {
				fail_msg("test data: libsodium accepts \"%s\"", list[i].what);
			}
		}
	}
	return n;
}

static void assert_bad_element_result(const bad_element *e, opaque_err got, const char *where)
{
	if (got == e->expected || (e->alternative != OPAQUE_OK && got == e->alternative)) {
		return;
	}
	fail_msg("%s: %s: expected %s, got %s", where, e->what, opaque_strerror(e->expected),
	         opaque_strerror(got));
}

static void test_element_validate_accepts_valid_elements(void **state)
{
	fx *f = *state;
	uint8_t g[OPAQUE_MAX_ELEMENT_BYTES], sk[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t pk[OPAQUE_MAX_ELEMENT_BYTES];
	assert_int_equal(generator(f->suite, g), f->sz->Noe);
	assert_err(opaque_element_validate(f->suite, g, f->sz->Noe), OPAQUE_OK);
	assert_err(opaque_element_validate(f->suite, f->soft.keys.server_public_key, f->sz->Npk),
	           OPAQUE_OK);
	assert_err(opaque_generate_ake_key_pair(f->suite, sk, f->sz->Nsk, pk, f->sz->Npk),
	           OPAQUE_OK);
	assert_err(opaque_element_validate(f->suite, pk, f->sz->Npk), OPAQUE_OK);
	if (f->suite == OPAQUE_SUITE_P256_SHA256) {
		/* -G: the same x with the other prefix. */
		g[0] = 0x02;
		assert_err(opaque_element_validate(f->suite, g, f->sz->Noe), OPAQUE_OK);
	}
}

/* The P-256 decoder (its own square root) against OpenSSL's EC_POINT_oct2point: for random
 * x with either prefix (about half of them on the curve) both accept the same encodings, and
 * the decoded point is the right one: 1 * P re-encodes to the input and 2 * P matches
 * OpenSSL's doubling of its own decoding. */
static void test_p256_decoding_agrees_with_openssl(void **state)
{
	(void)state;
	EC_GROUP *grp = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	EC_POINT *pt = EC_POINT_new(grp);
	BN_CTX *bn = BN_CTX_new();
	assert_non_null(bn);
	uint8_t one[32] = {0}, two[32] = {0};
	one[31] = 1;
	two[31] = 2;
	int accepted = 0;
	for (int i = 0; i < 2000; i++) {
		uint8_t enc[33], out[33], want[33];
		randombytes_buf(enc, sizeof enc);
		enc[0] = (uint8_t)(0x02 | (enc[0] & 1));
		const int ossl = EC_POINT_oct2point(grp, pt, enc, 33, bn) == 1;
		const opaque_err rc = opaque_element_validate(suite_p256, enc, 33);
		if (ossl != (rc == OPAQUE_OK)) {
			fail_msg("OpenSSL %s, opaque_element_validate says %s",
			         ossl ? "decodes" : "rejects", opaque_strerror(rc));
		}
		if (!ossl) {
			/* Off the curve, or (chance ~2^-32) x >= p. */
			assert_true(rc == OPAQUE_ERR_ELEMENT_NOT_ON_CURVE ||
			            rc == OPAQUE_ERR_ELEMENT_NONCANONICAL);
			continue;
		}
		accepted++;
		assert_err(opaque_scalar_mult(suite_p256, one, 32, enc, 33, out, 33), OPAQUE_OK);
		assert_memory_equal(out, enc, 33);
		assert_int_equal(EC_POINT_dbl(grp, pt, pt, bn), 1);
		assert_int_equal(
		    EC_POINT_point2oct(grp, pt, POINT_CONVERSION_COMPRESSED, want, 33, bn), 33);
		assert_err(opaque_scalar_mult(suite_p256, two, 32, enc, 33, out, 33), OPAQUE_OK);
		assert_memory_equal(out, want, 33);
	}
	/* About half of all x are on the curve: both outcomes were exercised. */
	assert_true(accepted > 800 && accepted < 1200);
	BN_CTX_free(bn);
	EC_POINT_free(pt);
	EC_GROUP_free(grp);
}

static void test_element_validate_rejects_invalid_elements_with_the_specific_error(void **state)
{
	fx *f = *state;
	bad_element list[MAX_BAD];
	size_t n = bad_elements(f->suite, list);
	for (size_t i = 0; i < n; i++) {
		assert_bad_element_result(
		    &list[i], opaque_element_validate(f->suite, list[i].enc, f->sz->Noe),
		    "opaque_element_validate");
	}
}

static void test_element_validate_rejects_wrong_lengths(void **state)
{
	fx *f = *state;
	uint8_t g[OPAQUE_MAX_ELEMENT_BYTES + 1] = {0};
	generator(f->suite, g);
	assert_err(opaque_element_validate(f->suite, g, f->sz->Noe - 1), OPAQUE_ERR_LENGTH);
	assert_err(opaque_element_validate(f->suite, g, f->sz->Noe + 1), OPAQUE_ERR_LENGTH);
	assert_err(opaque_element_validate(f->suite, g, 0), OPAQUE_ERR_LENGTH);
	if (f->suite == OPAQUE_SUITE_P256_SHA256) {
		/* SEC1's one-byte identity encoding is still the wrong length here. */
		const uint8_t zero = 0;
		opaque_err rc = opaque_element_validate(f->suite, &zero, 1);
		assert_true(rc == OPAQUE_ERR_LENGTH || rc == OPAQUE_ERR_ELEMENT_IDENTITY);
	}
}

static void test_registration_request_with_invalid_element_is_rejected(void **state)
{
	fx *f = *state;
	bad_element list[MAX_BAD];
	size_t n = bad_elements(f->suite, list);
	for (size_t i = 0; i < n; i++) {
		uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
		memset(resp, 0, sizeof resp);
		opaque_err rc = opaque_server_registration_response(
		    &f->cfg, &f->soft.keys, LIT(CRED_ID), list[i].enc, f->sz->registration_request,
		    resp, f->sz->registration_response);
		assert_bad_element_result(&list[i], rc, "registration request");
		assert_true(tu_is_zero(resp, sizeof resp));
	}
}

static void test_registration_response_with_invalid_evaluated_element_is_rejected(void **state)
{
	fx *f = *state;
	bad_element list[MAX_BAD];
	size_t n = bad_elements(f->suite, list);
	for (size_t i = 0; i < n; i++) {
		opaque_client_registration_state st;
		uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
		uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
		uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
		uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
		assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &st, req,
		                                            f->sz->registration_request),
		           OPAQUE_OK);
		assert_err(opaque_server_registration_response(&f->cfg, &f->soft.keys, LIT(CRED_ID),
		                                               req, f->sz->registration_request,
		                                               resp, f->sz->registration_response),
		           OPAQUE_OK);
		memcpy(resp, list[i].enc, f->sz->Noe);
		memset(export_key, 0xaa, sizeof export_key);
		opaque_err rc = opaque_client_registration_finish(
		    &f->cfg, &st, LIT(PASSWORD), &NO_IDS, resp, f->sz->registration_response,
		    record, f->sz->registration_record, export_key, f->sz->export_key);
		assert_bad_element_result(&list[i], rc, "registration response evaluated element");
		assert_true(tu_is_zero(export_key, f->sz->export_key));
		assert_true(tu_is_zero(&st, sizeof st));
	}
}

/* Replaces one KE1 element with each invalid encoding: server_login_start must reject it. */
static void ke1_invalid_element(fx *f, int field)
{
	bad_element list[MAX_BAD];
	msg_field fields[KE1_NFIELDS];
	size_t n = bad_elements(f->suite, list);
	ke1_fields(f->sz, fields);
	register_user(f);
	for (size_t i = 0; i < n; i++) {
		session s;
		client_start(f, &f->cfg, &s, PASSWORD);
		memcpy(s.ke1 + fields[field].off, list[i].enc, fields[field].len);
		opaque_err rc =
		    server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s);
		assert_bad_element_result(&list[i], rc, fields[field].name);
		assert_true(tu_is_zero(s.ke2, sizeof s.ke2));
		assert_true(tu_is_zero(&s.sst, sizeof s.sst));
		opaque_client_login_state_wipe(&s.cst);
	}
}

static void test_ke1_with_invalid_blinded_message_is_rejected(void **state)
{
	ke1_invalid_element(*state, KE1_BLINDED);
}

static void test_ke1_with_invalid_client_keyshare_is_rejected(void **state)
{
	ke1_invalid_element(*state, KE1_CLIENT_KEYSHARE);
}

static void test_record_with_invalid_client_public_key_is_rejected(void **state)
{
	fx *f = *state;
	bad_element list[MAX_BAD];
	size_t n = bad_elements(f->suite, list);
	register_user(f);
	assert_err(
	    opaque_registration_record_validate(f->suite, f->record, f->sz->registration_record),
	    OPAQUE_OK);
	for (size_t i = 0; i < n; i++) {
		session s;
		uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
		memcpy(record, f->record, f->sz->registration_record);
		memcpy(record, list[i].enc, f->sz->Npk);
		assert_bad_element_result(&list[i],
		                          opaque_registration_record_validate(
		                              f->suite, record, f->sz->registration_record),
		                          "opaque_registration_record_validate");
		client_start(f, &f->cfg, &s, PASSWORD);
		opaque_err rc = server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, record, s.ke1, &s);
		assert_bad_element_result(&list[i], rc, "server_login_start record");
		assert_true(tu_is_zero(s.ke2, sizeof s.ke2));
		opaque_client_login_state_wipe(&s.cst);
	}
}

/* Replaces one KE2 element with each invalid encoding: client_login_finish must reject it. */
static void ke2_invalid_element(fx *f, int field)
{
	bad_element list[MAX_BAD];
	msg_field fields[KE2_NFIELDS];
	size_t n = bad_elements(f->suite, list);
	ke2_fields(f->sz, fields);
	register_user(f);
	for (size_t i = 0; i < n; i++) {
		session s;
		client_start(f, &f->cfg, &s, PASSWORD);
		assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
		           OPAQUE_OK);
		memcpy(s.ke2 + fields[field].off, list[i].enc, fields[field].len);
		memset(s.client_session_key, 0xaa, sizeof s.client_session_key);
		memset(s.export_key, 0xaa, sizeof s.export_key);
		opaque_err rc = client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS);
		assert_bad_element_result(&list[i], rc, fields[field].name);
		assert_true(tu_is_zero(s.client_session_key, f->sz->session_key));
		assert_true(tu_is_zero(s.export_key, f->sz->export_key));
		assert_true(tu_is_zero(&s.cst, sizeof s.cst));
		opaque_server_login_state_wipe(&s.sst);
	}
}

static void test_ke2_with_invalid_evaluated_element_is_rejected(void **state)
{
	ke2_invalid_element(*state, KE2_EVALUATED);
}

static void test_ke2_with_invalid_server_keyshare_is_rejected(void **state)
{
	ke2_invalid_element(*state, KE2_SERVER_KEYSHARE);
}

static void test_oprf_blind_evaluate_rejects_invalid_elements(void **state)
{
	fx *f = *state;
	bad_element list[MAX_BAD];
	uint8_t sk[OPAQUE_MAX_SCALAR_BYTES], out[OPAQUE_MAX_ELEMENT_BYTES];
	size_t n = bad_elements(f->suite, list);
	assert_err(opaque_oprf_hash_to_scalar(f->suite, LIT("key"), sk, f->sz->Ns), OPAQUE_OK);
	for (size_t i = 0; i < n; i++) {
		assert_bad_element_result(&list[i],
		                          opaque_oprf_blind_evaluate(f->suite, sk, f->sz->Ns,
		                                                     list[i].enc, f->sz->Noe, out,
		                                                     f->sz->Noe),
		                          "opaque_oprf_blind_evaluate");
	}
}

/* ------------------------------------------------------------------------------------ */
/* Scalars and keys                                                                      */
/* ------------------------------------------------------------------------------------ */

static void test_soft_keys_public_key_is_private_key_times_generator(void **state)
{
	fx *f = *state;
	uint8_t g[OPAQUE_MAX_ELEMENT_BYTES], pk[OPAQUE_MAX_ELEMENT_BYTES];
	generator(f->suite, g);
	assert_err(opaque_oprf_blind_evaluate(f->suite, f->soft.server_private_key, f->sz->Nsk, g,
	                                      f->sz->Noe, pk, f->sz->Npk),
	           OPAQUE_OK);
	assert_memory_equal(pk, f->soft.keys.server_public_key, f->sz->Npk);
	assert_int_equal(f->soft.keys.suite, f->suite);
}

static void test_generated_ake_key_pair_matches_and_is_fresh(void **state)
{
	fx *f = *state;
	uint8_t g[OPAQUE_MAX_ELEMENT_BYTES], sk1[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t sk2[OPAQUE_MAX_SCALAR_BYTES], pk1[OPAQUE_MAX_ELEMENT_BYTES];
	uint8_t pk2[OPAQUE_MAX_ELEMENT_BYTES], derived[OPAQUE_MAX_ELEMENT_BYTES];
	generator(f->suite, g);
	assert_err(opaque_generate_ake_key_pair(f->suite, sk1, f->sz->Nsk, pk1, f->sz->Npk),
	           OPAQUE_OK);
	assert_err(opaque_generate_ake_key_pair(f->suite, sk2, f->sz->Nsk, pk2, f->sz->Npk),
	           OPAQUE_OK);
	assert_memory_not_equal(sk1, sk2, f->sz->Nsk);
	assert_err(opaque_oprf_blind_evaluate(f->suite, sk1, f->sz->Nsk, g, f->sz->Noe, derived,
	                                      f->sz->Npk),
	           OPAQUE_OK);
	assert_memory_equal(derived, pk1, f->sz->Npk);
}

static void test_soft_keys_init_rejects_zero_or_unreduced_private_key(void **state)
{
	fx *f = *state;
	opaque_soft_server_keys *soft = calloc(1, sizeof *soft);
	uint8_t seed[OPAQUE_MAX_HASH_BYTES] = {1};
	uint8_t sk[32];
	assert_non_null(soft);
	memset(sk, 0, sizeof sk);
	assert_err(opaque_soft_server_keys_init(soft, f->suite, seed, f->sz->Nh, sk, 32),
	           OPAQUE_ERR_SCALAR);
	/* The group order itself (P-256 n big-endian; ristretto255 L little-endian). */
	hex32(f->suite == OPAQUE_SUITE_P256_SHA256 ? P256_N_HEX : R255_L_LE_HEX, sk);
	assert_err(opaque_soft_server_keys_init(soft, f->suite, seed, f->sz->Nh, sk, 32),
	           OPAQUE_ERR_SCALAR);
	memset(sk, 0xff, sizeof sk);
	assert_err(opaque_soft_server_keys_init(soft, f->suite, seed, f->sz->Nh, sk, 32),
	           OPAQUE_ERR_SCALAR);
	free(soft);
}

static void test_soft_keys_init_rejects_wrong_lengths(void **state)
{
	fx *f = *state;
	opaque_soft_server_keys *soft = calloc(1, sizeof *soft);
	uint8_t seed[OPAQUE_MAX_HASH_BYTES + 1] = {1};
	assert_non_null(soft);
	assert_err(opaque_soft_server_keys_init(soft, f->suite, seed, f->sz->Nh - 1,
	                                        f->soft.server_private_key, f->sz->Nsk),
	           OPAQUE_ERR_LENGTH);
	assert_err(opaque_soft_server_keys_init(soft, f->suite, seed, f->sz->Nh + 1,
	                                        f->soft.server_private_key, f->sz->Nsk),
	           OPAQUE_ERR_LENGTH);
	assert_err(opaque_soft_server_keys_init(soft, f->suite, seed, f->sz->Nh,
	                                        f->soft.server_private_key, f->sz->Nsk - 1),
	           OPAQUE_ERR_LENGTH);
	free(soft);
}

static void test_soft_keys_wipe_zeroes_the_secrets(void **state)
{
	fx *f = *state;
	opaque_soft_server_keys *soft = calloc(1, sizeof *soft);
	assert_non_null(soft);
	assert_err(opaque_soft_server_keys_generate(soft, f->suite), OPAQUE_OK);
	assert_false(tu_is_zero(soft->server_private_key, f->sz->Nsk));
	opaque_soft_server_keys_wipe(soft);
	assert_true(tu_is_zero(soft->oprf_seed, sizeof soft->oprf_seed));
	assert_true(tu_is_zero(soft->server_private_key, sizeof soft->server_private_key));
	free(soft);
}

/* ------------------------------------------------------------------------------------ */
/* OPRF                                                                                  */
/* ------------------------------------------------------------------------------------ */

static void oprf_run(const fx *f, const uint8_t *sk, const uint8_t *input, size_t input_len,
                     uint8_t *blind, uint8_t *out)
{
	uint8_t blinded[OPAQUE_MAX_ELEMENT_BYTES], evaluated[OPAQUE_MAX_ELEMENT_BYTES];
	assert_err(
	    opaque_oprf_blind(f->suite, input, input_len, blind, f->sz->Ns, blinded, f->sz->Noe),
	    OPAQUE_OK);
	assert_err(opaque_oprf_blind_evaluate(f->suite, sk, f->sz->Ns, blinded, f->sz->Noe,
	                                      evaluated, f->sz->Noe),
	           OPAQUE_OK);
	assert_err(opaque_oprf_finalize(f->suite, input, input_len, blind, f->sz->Ns, evaluated,
	                                f->sz->Noe, out, f->sz->Nh),
	           OPAQUE_OK);
}

static void test_oprf_output_depends_on_input_and_key_but_not_on_the_blind(void **state)
{
	fx *f = *state;
	uint8_t sk1[OPAQUE_MAX_SCALAR_BYTES], sk2[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t b1[OPAQUE_MAX_SCALAR_BYTES], b2[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t o1[OPAQUE_MAX_HASH_BYTES], o2[OPAQUE_MAX_HASH_BYTES];
	uint8_t seed[32];
	memset(seed, 7, sizeof seed);
	assert_err(opaque_oprf_derive_key_pair(f->suite, seed, sizeof seed, LIT("info"), sk1,
	                                       f->sz->Ns, NULL, 0),
	           OPAQUE_OK);
	seed[0] = 8;
	assert_err(opaque_oprf_derive_key_pair(f->suite, seed, sizeof seed, LIT("info"), sk2,
	                                       f->sz->Ns, NULL, 0),
	           OPAQUE_OK);
	oprf_run(f, sk1, LIT("input"), b1, o1);
	oprf_run(f, sk1, LIT("input"), b2, o2);
	assert_memory_not_equal(b1, b2, f->sz->Ns);
	assert_memory_equal(o1, o2, f->sz->Nh);
	oprf_run(f, sk2, LIT("input"), b2, o2);
	assert_memory_not_equal(o1, o2, f->sz->Nh);
	oprf_run(f, sk1, LIT("inpuT"), b2, o2);
	assert_memory_not_equal(o1, o2, f->sz->Nh);
}

static void test_oprf_derive_key_pair_public_key_is_private_key_times_generator(void **state)
{
	fx *f = *state;
	uint8_t seed[32], sk[OPAQUE_MAX_SCALAR_BYTES], pk[OPAQUE_MAX_ELEMENT_BYTES];
	uint8_t g[OPAQUE_MAX_ELEMENT_BYTES], derived[OPAQUE_MAX_ELEMENT_BYTES];
	memset(seed, 0xa3, sizeof seed);
	generator(f->suite, g);
	assert_err(opaque_oprf_derive_key_pair(f->suite, seed, sizeof seed, LIT("test key"), sk,
	                                       f->sz->Ns, pk, f->sz->Noe),
	           OPAQUE_OK);
	assert_err(
	    opaque_oprf_blind_evaluate(f->suite, sk, f->sz->Ns, g, f->sz->Noe, derived, f->sz->Noe),
	    OPAQUE_OK);
	assert_memory_equal(derived, pk, f->sz->Noe);
}

/* ------------------------------------------------------------------------------------ */
/* Buffers, lengths, arguments, unknown suites                                           */
/* ------------------------------------------------------------------------------------ */

static size_t adjust(size_t n, int delta)
{
	return delta < 0 ? n - 1 : n + 1;
}

static void test_wrong_output_buffer_length_fails_with_buffer(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = f->sz;
	static uint8_t big[1024];
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t sk[OPAQUE_MAX_SCALAR_BYTES], blind[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t element[OPAQUE_MAX_ELEMENT_BYTES];
	uint8_t seed[32] = {1};
	register_user(f);
	assert_err(opaque_oprf_hash_to_scalar(f->suite, LIT("k"), sk, sz->Ns), OPAQUE_OK);
	for (int d = -1; d <= 1; d += 2) {
		opaque_client_registration_state rst;
		session s;
		/* Registration. */
		assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, big,
		                                            adjust(sz->registration_request, d)),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
		                                            sz->registration_request),
		           OPAQUE_OK);
		assert_err(opaque_server_registration_response(
		               &f->cfg, &f->soft.keys, LIT(CRED_ID), req, sz->registration_request,
		               big, adjust(sz->registration_response, d)),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_server_registration_response(&f->cfg, &f->soft.keys, LIT(CRED_ID),
		                                               req, sz->registration_request, resp,
		                                               sz->registration_response),
		           OPAQUE_OK);
		assert_err(opaque_client_registration_finish(&f->cfg, &rst, LIT(PASSWORD), &NO_IDS,
		                                             resp, sz->registration_response, big,
		                                             adjust(sz->registration_record, d),
		                                             f->export_key, sz->export_key),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
		                                            sz->registration_request),
		           OPAQUE_OK);
		assert_err(opaque_client_registration_finish(&f->cfg, &rst, LIT(PASSWORD), &NO_IDS,
		                                             resp, sz->registration_response,
		                                             big + 512, sz->registration_record,
		                                             big, adjust(sz->export_key, d)),
		           OPAQUE_ERR_BUFFER);
		/* Login. */
		assert_err(opaque_client_login_start(&f->cfg, LIT(PASSWORD), &s.cst, big,
		                                     adjust(sz->ke1, d)),
		           OPAQUE_ERR_BUFFER);
		client_start(f, &f->cfg, &s, PASSWORD);
		assert_err(opaque_server_login_start(&f->cfg, &f->soft.keys, &NO_IDS, LIT(CRED_ID),
		                                     f->record, sz->registration_record, s.ke1,
		                                     sz->ke1, &s.sst, big, adjust(sz->ke2, d)),
		           OPAQUE_ERR_BUFFER);
		assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
		           OPAQUE_OK);
		opaque_client_login_state saved = s.cst;
		opaque_server_login_state saved_server = s.sst;
		const size_t lens[3][3] = {
		    {adjust(sz->ke3, d), sz->session_key, sz->export_key},
		    {sz->ke3, adjust(sz->session_key, d), sz->export_key},
		    {sz->ke3, sz->session_key, adjust(sz->export_key, d)},
		};
		for (int k = 0; k < 3; k++) {
			s.cst = saved;
			assert_err(opaque_client_login_finish(
			               &f->cfg, &s.cst, LIT(PASSWORD), &NO_IDS, s.ke2, sz->ke2, big,
			               lens[k][0], big + 256, lens[k][1], big + 512, lens[k][2]),
			           OPAQUE_ERR_BUFFER);
		}
		s.cst = saved;
		assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_OK);
		assert_err(opaque_server_login_finish(&s.sst, s.ke3, sz->ke3, big,
		                                      adjust(sz->session_key, d)),
		           OPAQUE_ERR_BUFFER);
		s.sst = saved_server;
		assert_err(server_finish(f, &s), OPAQUE_OK);
		/* Everything else with an output. */
		assert_err(
		    opaque_fake_record_create(f->suite, big, adjust(sz->registration_record, d)),
		    OPAQUE_ERR_BUFFER);
		assert_err(opaque_generate_ake_key_pair(f->suite, big, adjust(sz->Nsk, d),
		                                        big + 256, sz->Npk),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_generate_ake_key_pair(f->suite, big, sz->Nsk, big + 256,
		                                        adjust(sz->Npk, d)),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_oprf_blind(f->suite, LIT("x"), big, adjust(sz->Ns, d), big + 256,
		                             sz->Noe),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_oprf_blind(f->suite, LIT("x"), big, sz->Ns, big + 256,
		                             adjust(sz->Noe, d)),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_oprf_blind(f->suite, LIT("x"), blind, sz->Ns, element, sz->Noe),
		           OPAQUE_OK);
		assert_err(opaque_oprf_blind_evaluate(f->suite, sk, sz->Ns, element, sz->Noe, big,
		                                      adjust(sz->Noe, d)),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_oprf_finalize(f->suite, LIT("x"), blind, sz->Ns, element, sz->Noe,
		                                big, adjust(sz->Nh, d)),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_oprf_derive_key_pair(f->suite, seed, sizeof seed, LIT("i"), big,
		                                       adjust(sz->Ns, d), NULL, 0),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_oprf_derive_key_pair(f->suite, seed, sizeof seed, LIT("i"), big,
		                                       sz->Ns, big + 256, adjust(sz->Noe, d)),
		           OPAQUE_ERR_BUFFER);
		assert_err(opaque_oprf_hash_to_scalar(f->suite, LIT("x"), big, adjust(sz->Ns, d)),
		           OPAQUE_ERR_BUFFER);
	}
}

static void test_wrong_input_message_length_fails_with_length(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = f->sz;
	static uint8_t out[1024];
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES + 1] = {0};
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES + 1] = {0};
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES + 1] = {0};
	uint8_t sk[OPAQUE_MAX_SCALAR_BYTES + 1] = {0};
	uint8_t seed[33] = {1};
	register_user(f);
	memcpy(record, f->record, sz->registration_record);
	assert_err(opaque_oprf_hash_to_scalar(f->suite, LIT("k"), sk, sz->Ns), OPAQUE_OK);
	for (int d = -1; d <= 1; d += 2) {
		opaque_client_registration_state rst;
		session s;
		assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
		                                            sz->registration_request),
		           OPAQUE_OK);
		assert_err(opaque_server_registration_response(
		               &f->cfg, &f->soft.keys, LIT(CRED_ID), req,
		               adjust(sz->registration_request, d), out, sz->registration_response),
		           OPAQUE_ERR_LENGTH);
		assert_err(opaque_server_registration_response(&f->cfg, &f->soft.keys, LIT(CRED_ID),
		                                               req, sz->registration_request, resp,
		                                               sz->registration_response),
		           OPAQUE_OK);
		assert_err(opaque_client_registration_finish(
		               &f->cfg, &rst, LIT(PASSWORD), &NO_IDS, resp,
		               adjust(sz->registration_response, d), out, sz->registration_record,
		               out + 512, sz->export_key),
		           OPAQUE_ERR_LENGTH);
		assert_err(opaque_registration_record_validate(f->suite, record,
		                                               adjust(sz->registration_record, d)),
		           OPAQUE_ERR_LENGTH);

		client_start(f, &f->cfg, &s, PASSWORD);
		assert_err(opaque_server_login_start(&f->cfg, &f->soft.keys, &NO_IDS, LIT(CRED_ID),
		                                     record, adjust(sz->registration_record, d),
		                                     s.ke1, sz->ke1, &s.sst, s.ke2, sz->ke2),
		           OPAQUE_ERR_LENGTH);
		assert_err(opaque_server_login_start(&f->cfg, &f->soft.keys, &NO_IDS, LIT(CRED_ID),
		                                     record, sz->registration_record, s.ke1,
		                                     adjust(sz->ke1, d), &s.sst, s.ke2, sz->ke2),
		           OPAQUE_ERR_LENGTH);
		assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
		           OPAQUE_OK);
		opaque_server_login_state saved_server = s.sst;
		assert_err(opaque_client_login_finish(
		               &f->cfg, &s.cst, LIT(PASSWORD), &NO_IDS, s.ke2, adjust(sz->ke2, d),
		               out, sz->ke3, out + 256, sz->session_key, out + 512, sz->export_key),
		           OPAQUE_ERR_LENGTH);
		assert_err(opaque_server_login_finish(&s.sst, s.ke3, adjust(sz->ke3, d), out,
		                                      sz->session_key),
		           OPAQUE_ERR_LENGTH);
		s.sst = saved_server;
		opaque_server_login_state_wipe(&s.sst);

		/* OPRF inputs of fixed size. */
		uint8_t g[OPAQUE_MAX_ELEMENT_BYTES + 1] = {0};
		generator(f->suite, g);
		assert_err(opaque_oprf_blind_evaluate(f->suite, sk, adjust(sz->Ns, d), g, sz->Noe,
		                                      out, sz->Noe),
		           OPAQUE_ERR_LENGTH);
		assert_err(opaque_oprf_blind_evaluate(f->suite, sk, sz->Ns, g, adjust(sz->Noe, d),
		                                      out, sz->Noe),
		           OPAQUE_ERR_LENGTH);
		assert_err(opaque_oprf_finalize(f->suite, LIT("x"), sk, adjust(sz->Ns, d), g,
		                                sz->Noe, out, sz->Nh),
		           OPAQUE_ERR_LENGTH);
		assert_err(opaque_oprf_derive_key_pair(f->suite, seed, adjust(32, d), LIT("i"), out,
		                                       sz->Ns, NULL, 0),
		           OPAQUE_ERR_LENGTH);
	}
}

static void test_null_arguments_fail_with_argument(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = f->sz;
	const opaque_server_keys *keys = &f->soft.keys;
	static uint8_t b[1024];
	opaque_client_registration_state rst;
	session s;
	register_user(f);
	uint8_t *req = b, *resp = b + 64, *rec = b + 256, *ek = b + 512;

	/* Registration. */
	assert_err(opaque_client_registration_start(NULL, LIT(PASSWORD), &rst, req,
	                                            sz->registration_request),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(
	    opaque_client_registration_start(&f->cfg, NULL, 5, &rst, req, sz->registration_request),
	    OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), NULL, req,
	                                            sz->registration_request),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, NULL,
	                                            sz->registration_request),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
	                                            sz->registration_request),
	           OPAQUE_OK);
	assert_err(opaque_server_registration_response(NULL, keys, LIT(CRED_ID), req,
	                                               sz->registration_request, resp,
	                                               sz->registration_response),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_server_registration_response(&f->cfg, NULL, LIT(CRED_ID), req,
	                                               sz->registration_request, resp,
	                                               sz->registration_response),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_server_registration_response(&f->cfg, keys, NULL, 4, req,
	                                               sz->registration_request, resp,
	                                               sz->registration_response),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_server_registration_response(&f->cfg, keys, LIT(CRED_ID), NULL,
	                                               sz->registration_request, resp,
	                                               sz->registration_response),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_server_registration_response(&f->cfg, keys, LIT(CRED_ID), req,
	                                               sz->registration_request, NULL,
	                                               sz->registration_response),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_server_registration_response(&f->cfg, keys, LIT(CRED_ID), req,
	                                               sz->registration_request, resp,
	                                               sz->registration_response),
	           OPAQUE_OK);
	assert_err(opaque_client_registration_finish(&f->cfg, NULL, LIT(PASSWORD), &NO_IDS, resp,
	                                             sz->registration_response, rec,
	                                             sz->registration_record, ek, sz->export_key),
	           OPAQUE_ERR_ARGUMENT);
	const struct {
		const opaque_config *cfg;
		const uint8_t *pw;
		const uint8_t *resp;
		uint8_t *rec;
		uint8_t *ek;
	} reg_cases[] = {
	    {NULL, (const uint8_t *)PASSWORD, resp, rec, ek},
	    {&f->cfg, NULL, resp, rec, ek},
	    {&f->cfg, (const uint8_t *)PASSWORD, NULL, rec, ek},
	    {&f->cfg, (const uint8_t *)PASSWORD, resp, NULL, ek},
	    {&f->cfg, (const uint8_t *)PASSWORD, resp, rec, NULL},
	};
	for (size_t i = 0; i < sizeof reg_cases / sizeof reg_cases[0]; i++) {
		assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
		                                            sz->registration_request),
		           OPAQUE_OK);
		assert_err(opaque_client_registration_finish(
		               reg_cases[i].cfg, &rst, reg_cases[i].pw, strlen(PASSWORD), &NO_IDS,
		               reg_cases[i].resp, sz->registration_response, reg_cases[i].rec,
		               sz->registration_record, reg_cases[i].ek, sz->export_key),
		           OPAQUE_ERR_ARGUMENT);
		opaque_client_registration_state_wipe(&rst);
	}

	/* Login. */
	assert_err(opaque_client_login_start(NULL, LIT(PASSWORD), &s.cst, s.ke1, sz->ke1),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_client_login_start(&f->cfg, NULL, 5, &s.cst, s.ke1, sz->ke1),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_client_login_start(&f->cfg, LIT(PASSWORD), NULL, s.ke1, sz->ke1),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_client_login_start(&f->cfg, LIT(PASSWORD), &s.cst, NULL, sz->ke1),
	           OPAQUE_ERR_ARGUMENT);
	client_start(f, &f->cfg, &s, PASSWORD);
	const struct {
		const opaque_config *cfg;
		const opaque_server_keys *keys;
		const uint8_t *record;
		const uint8_t *ke1;
		opaque_server_login_state *st;
		uint8_t *ke2;
	} srv_cases[] = {
	    {NULL, keys, f->record, s.ke1, &s.sst, s.ke2},
	    {&f->cfg, NULL, f->record, s.ke1, &s.sst, s.ke2},
	    {&f->cfg, keys, NULL, s.ke1, &s.sst, s.ke2},
	    {&f->cfg, keys, f->record, NULL, &s.sst, s.ke2},
	    {&f->cfg, keys, f->record, s.ke1, NULL, s.ke2},
	    {&f->cfg, keys, f->record, s.ke1, &s.sst, NULL},
	};
	for (size_t i = 0; i < sizeof srv_cases / sizeof srv_cases[0]; i++) {
		assert_err(opaque_server_login_start(
		               srv_cases[i].cfg, srv_cases[i].keys, &NO_IDS, LIT(CRED_ID),
		               srv_cases[i].record, sz->registration_record, srv_cases[i].ke1,
		               sz->ke1, srv_cases[i].st, srv_cases[i].ke2, sz->ke2),
		           OPAQUE_ERR_ARGUMENT);
	}
	assert_err(server_start(f, &f->cfg, keys, &NO_IDS, f->record, s.ke1, &s), OPAQUE_OK);
	opaque_client_login_state saved = s.cst;
	opaque_server_login_state saved_server = s.sst;
	uint8_t *ke3 = b, *skey = b + 128, *xkey = b + 256;
	const struct {
		const opaque_config *cfg;
		opaque_client_login_state *st;
		const uint8_t *pw;
		const uint8_t *ke2;
		uint8_t *ke3;
		uint8_t *sk;
		uint8_t *ek;
	} cli_cases[] = {
	    {NULL, &s.cst, (const uint8_t *)PASSWORD, s.ke2, ke3, skey, xkey},
	    {&f->cfg, NULL, (const uint8_t *)PASSWORD, s.ke2, ke3, skey, xkey},
	    {&f->cfg, &s.cst, NULL, s.ke2, ke3, skey, xkey},
	    {&f->cfg, &s.cst, (const uint8_t *)PASSWORD, NULL, ke3, skey, xkey},
	    {&f->cfg, &s.cst, (const uint8_t *)PASSWORD, s.ke2, NULL, skey, xkey},
	    {&f->cfg, &s.cst, (const uint8_t *)PASSWORD, s.ke2, ke3, NULL, xkey},
	    {&f->cfg, &s.cst, (const uint8_t *)PASSWORD, s.ke2, ke3, skey, NULL},
	};
	for (size_t i = 0; i < sizeof cli_cases / sizeof cli_cases[0]; i++) {
		s.cst = saved;
		assert_err(opaque_client_login_finish(
		               cli_cases[i].cfg, cli_cases[i].st, cli_cases[i].pw, strlen(PASSWORD),
		               &NO_IDS, cli_cases[i].ke2, sz->ke2, cli_cases[i].ke3, sz->ke3,
		               cli_cases[i].sk, sz->session_key, cli_cases[i].ek, sz->export_key),
		           OPAQUE_ERR_ARGUMENT);
	}
	s.cst = saved;
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_OK);
	assert_err(opaque_server_login_finish(NULL, s.ke3, sz->ke3, skey, sz->session_key),
	           OPAQUE_ERR_ARGUMENT);
	s.sst = saved_server;
	assert_err(opaque_server_login_finish(&s.sst, NULL, sz->ke3, skey, sz->session_key),
	           OPAQUE_ERR_ARGUMENT);
	s.sst = saved_server;
	assert_err(opaque_server_login_finish(&s.sst, s.ke3, sz->ke3, NULL, sz->session_key),
	           OPAQUE_ERR_ARGUMENT);
	s.sst = saved_server;
	assert_err(server_finish(f, &s), OPAQUE_OK);

	/* The rest. */
	assert_err(opaque_element_validate(f->suite, NULL, sz->Noe), OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_registration_record_validate(f->suite, NULL, sz->registration_record),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_fake_record_create(f->suite, NULL, sz->registration_record),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_generate_ake_key_pair(f->suite, NULL, sz->Nsk, b, sz->Npk),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_generate_ake_key_pair(f->suite, b, sz->Nsk, NULL, sz->Npk),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_soft_server_keys_init(NULL, f->suite, f->soft.oprf_seed, sz->Nh,
	                                        f->soft.server_private_key, sz->Nsk),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_soft_server_keys_generate(NULL, f->suite), OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_oprf_blind(f->suite, NULL, 3, b, sz->Ns, b + 64, sz->Noe),
	           OPAQUE_ERR_ARGUMENT);
	assert_err(opaque_oprf_hash_to_scalar(f->suite, LIT("x"), NULL, sz->Ns),
	           OPAQUE_ERR_ARGUMENT);
}

static void test_unknown_suite_fails_with_argument(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = f->sz;
	static uint8_t b[2048];
	static const int unknown[] = {0, 3, 255};
	register_user(f);
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		opaque_suite_id bad = (opaque_suite_id)unknown[i];
		opaque_config cfg = f->cfg;
		opaque_client_registration_state rst;
		opaque_client_login_state cst;
		opaque_server_login_state sst;
		opaque_soft_server_keys *soft = calloc(1, sizeof *soft);
		uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
		uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
		uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
		assert_non_null(soft);
		cfg.suite = bad;
		/* The sizes of the real suite, so only the suite is wrong. */
		assert_err(opaque_client_registration_start(&cfg, LIT(PASSWORD), &rst, b,
		                                            sz->registration_request),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
		                                            sz->registration_request),
		           OPAQUE_OK);
		assert_err(opaque_server_registration_response(&cfg, &f->soft.keys, LIT(CRED_ID),
		                                               req, sz->registration_request, b,
		                                               sz->registration_response),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_server_registration_response(&f->cfg, &f->soft.keys, LIT(CRED_ID),
		                                               req, sz->registration_request, resp,
		                                               sz->registration_response),
		           OPAQUE_OK);
		assert_err(opaque_client_registration_finish(
		               &cfg, &rst, LIT(PASSWORD), &NO_IDS, resp, sz->registration_response,
		               b, sz->registration_record, b + 512, sz->export_key),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_client_login_start(&cfg, LIT(PASSWORD), &cst, b, sz->ke1),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_client_login_start(&f->cfg, LIT(PASSWORD), &cst, ke1, sz->ke1),
		           OPAQUE_OK);
		assert_err(opaque_server_login_start(&cfg, &f->soft.keys, &NO_IDS, LIT(CRED_ID),
		                                     f->record, sz->registration_record, ke1,
		                                     sz->ke1, &sst, b, sz->ke2),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_client_login_finish(&cfg, &cst, LIT(PASSWORD), &NO_IDS, b,
		                                      sz->ke2, b + 512, sz->ke3, b + 1024,
		                                      sz->session_key, b + 1536, sz->export_key),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_element_validate(bad, f->soft.keys.server_public_key, sz->Npk),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(
		    opaque_registration_record_validate(bad, f->record, sz->registration_record),
		    OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_fake_record_create(bad, b, sz->registration_record),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_generate_ake_key_pair(bad, b, sz->Nsk, b + 64, sz->Npk),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_soft_server_keys_init(soft, bad, f->soft.oprf_seed, sz->Nh,
		                                        f->soft.server_private_key, sz->Nsk),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_soft_server_keys_generate(soft, bad), OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_oprf_blind(bad, LIT("x"), b, sz->Ns, b + 64, sz->Noe),
		           OPAQUE_ERR_ARGUMENT);
		assert_err(opaque_oprf_hash_to_scalar(bad, LIT("x"), b, sz->Ns),
		           OPAQUE_ERR_ARGUMENT);
		free(soft);
	}
}

static void test_server_keys_of_another_suite_fail_with_argument(void **state)
{
	fx *f = *state;
	opaque_soft_server_keys *other = calloc(1, sizeof *other);
	session s;
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	opaque_client_registration_state rst;
	assert_non_null(other);
	assert_err(opaque_soft_server_keys_generate(other, f->suite == OPAQUE_SUITE_P256_SHA256
	                                                       ? OPAQUE_SUITE_RISTRETTO255_SHA512
	                                                       : OPAQUE_SUITE_P256_SHA256),
	           OPAQUE_OK);
	register_user(f);
	assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
	                                            f->sz->registration_request),
	           OPAQUE_OK);
	assert_err(opaque_server_registration_response(&f->cfg, &other->keys, LIT(CRED_ID), req,
	                                               f->sz->registration_request, resp,
	                                               f->sz->registration_response),
	           OPAQUE_ERR_ARGUMENT);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &other->keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_ERR_ARGUMENT);
	opaque_client_registration_state_wipe(&rst);
	opaque_client_login_state_wipe(&s.cst);
	opaque_soft_server_keys_wipe(other);
	free(other);
}

/* ------------------------------------------------------------------------------------ */
/* Wiping                                                                                */
/* ------------------------------------------------------------------------------------ */

static void test_client_registration_state_is_wiped_after_finish_on_success(void **state)
{
	fx *f = *state;
	opaque_client_registration_state st;
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &st, req,
	                                            f->sz->registration_request),
	           OPAQUE_OK);
	assert_false(tu_is_zero(&st, sizeof st));
	assert_err(opaque_server_registration_response(&f->cfg, &f->soft.keys, LIT(CRED_ID), req,
	                                               f->sz->registration_request, resp,
	                                               f->sz->registration_response),
	           OPAQUE_OK);
	assert_err(opaque_client_registration_finish(
	               &f->cfg, &st, LIT(PASSWORD), &NO_IDS, resp, f->sz->registration_response,
	               f->record, f->sz->registration_record, f->export_key, f->sz->export_key),
	           OPAQUE_OK);
	assert_true(tu_is_zero(&st, sizeof st));
}

static void test_client_registration_state_is_wiped_after_finish_on_failure(void **state)
{
	fx *f = *state;
	opaque_client_registration_state st;
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES] = {0};
	assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &st, req,
	                                            f->sz->registration_request),
	           OPAQUE_OK);
	/* An all-zero response: its evaluated element is invalid on both suites. */
	memset(f->export_key, 0xaa, sizeof f->export_key);
	assert_int_not_equal(opaque_client_registration_finish(
	                         &f->cfg, &st, LIT(PASSWORD), &NO_IDS, resp,
	                         f->sz->registration_response, f->record,
	                         f->sz->registration_record, f->export_key, f->sz->export_key),
	                     OPAQUE_OK);
	assert_true(tu_is_zero(&st, sizeof st));
	assert_true(tu_is_zero(f->export_key, f->sz->export_key));
}

static void test_client_login_state_is_wiped_after_finish_on_success(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_false(tu_is_zero(&s.cst, sizeof s.cst));
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_OK);
	assert_true(tu_is_zero(&s.cst, sizeof s.cst));
	opaque_server_login_state_wipe(&s.sst);
}

static void test_client_login_state_is_wiped_after_finish_on_failure(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	assert_err(client_finish(f, &f->cfg, &s, OTHER_PASSWORD, &NO_IDS),
	           OPAQUE_ERR_ENVELOPE_RECOVERY);
	assert_true(tu_is_zero(&s.cst, sizeof s.cst));
	opaque_server_login_state_wipe(&s.sst);
}

static void test_server_login_state_is_wiped_after_finish_on_success(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	login_ok(f, &s);
	assert_true(tu_is_zero(&s.sst, sizeof s.sst));
}

static void test_server_login_state_is_wiped_after_finish_on_failure(void **state)
{
	fx *f = *state;
	session s;
	register_user(f);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	assert_false(tu_is_zero(&s.sst, sizeof s.sst));
	memset(s.ke3, 0, sizeof s.ke3);
	assert_err(server_finish(f, &s), OPAQUE_ERR_CLIENT_AUTH);
	assert_true(tu_is_zero(&s.sst, sizeof s.sst));
	opaque_client_login_state_wipe(&s.cst);
}

static void test_state_wipe_functions_zero_the_states(void **state)
{
	fx *f = *state;
	session s;
	opaque_client_registration_state rst;
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	register_user(f);
	assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
	                                            f->sz->registration_request),
	           OPAQUE_OK);
	opaque_client_registration_state_wipe(&rst);
	assert_true(tu_is_zero(&rst, sizeof rst));
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_OK);
	opaque_client_login_state_wipe(&s.cst);
	opaque_server_login_state_wipe(&s.sst);
	assert_true(tu_is_zero(&s.cst, sizeof s.cst));
	assert_true(tu_is_zero(&s.sst, sizeof s.sst));
}

/* ------------------------------------------------------------------------------------ */
/* Fake records                                                                          */
/* ------------------------------------------------------------------------------------ */

static void test_fake_record_looks_like_a_record_with_a_zero_envelope(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = f->sz;
	uint8_t a[OPAQUE_MAX_REGISTRATION_RECORD_BYTES], b[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	assert_err(opaque_fake_record_create(f->suite, a, sz->registration_record), OPAQUE_OK);
	assert_err(opaque_fake_record_create(f->suite, b, sz->registration_record), OPAQUE_OK);
	assert_err(opaque_registration_record_validate(f->suite, a, sz->registration_record),
	           OPAQUE_OK);
	assert_err(opaque_element_validate(f->suite, a, sz->Npk), OPAQUE_OK);
	/* RFC 9807 section 10.9: random client_public_key and masking_key, zero envelope. */
	assert_false(tu_is_zero(a + sz->Npk, sz->Nh));
	assert_true(tu_is_zero(a + sz->Npk + sz->Nh, sz->envelope));
	assert_memory_not_equal(a, b, sz->Npk);
	assert_memory_not_equal(a + sz->Npk, b + sz->Npk, sz->Nh);
}

static void test_ke2_from_a_fake_record_has_ke2_length_and_fails_envelope_recovery(void **state)
{
	fx *f = *state;
	session s;
	uint8_t fake[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t big[OPAQUE_MAX_KE2_BYTES + 1];
	assert_err(opaque_fake_record_create(f->suite, fake, f->sz->registration_record),
	           OPAQUE_OK);
	client_start(f, &f->cfg, &s, PASSWORD);
	/* Only a buffer of exactly the real KE2 size is accepted, and it is filled. */
	assert_err(opaque_server_login_start(&f->cfg, &f->soft.keys, &NO_IDS, LIT(CRED_ID), fake,
	                                     f->sz->registration_record, s.ke1, f->sz->ke1, &s.sst,
	                                     big, f->sz->ke2 + 1),
	           OPAQUE_ERR_BUFFER);
	assert_err(server_start(f, &f->cfg, &f->soft.keys, &NO_IDS, fake, s.ke1, &s), OPAQUE_OK);
	assert_false(tu_is_zero(s.ke2 + f->sz->ke2 - f->sz->Nm, f->sz->Nm));
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_ERR_ENVELOPE_RECOVERY);
	opaque_server_login_state_wipe(&s.sst);
}

/* ------------------------------------------------------------------------------------ */
/* Pluggable server keys                                                                 */
/* ------------------------------------------------------------------------------------ */

/* Server keys that delegate to soft keys, count calls, and can be told to fail. */
typedef struct plug {
	opaque_server_keys keys;
	opaque_soft_server_keys *soft;
	int fail_expand, fail_dh;
	int expand_calls, dh_calls;
	uint8_t last_peer[OPAQUE_MAX_ELEMENT_BYTES];
	/* If probe_len > 0, plug_dh also runs opaque_ake_dh(soft private key, probe) from
	 * inside the callback, i.e. while KE2 lends its decoded key share, and keeps the
	 * result: another peer must still be decoded and validated on its own. */
	size_t probe_len;
	uint8_t probe[OPAQUE_MAX_ELEMENT_BYTES];
	opaque_err probe_err;
	uint8_t probe_out[OPAQUE_MAX_ELEMENT_BYTES];
	uint8_t last_out[OPAQUE_MAX_ELEMENT_BYTES];
	/* P-256: what opaque_p256_lent_uncompressed gave for the peer, and for the probe */
	bool lent, probe_lent;
	uint8_t lent_point[65];
} plug;

static opaque_err plug_expand(void *ctx, const uint8_t *info, size_t info_len, uint8_t *out,
                              size_t out_len)
{
	plug *p = ctx;
	p->expand_calls++;
	if (p->fail_expand) {
		return OPAQUE_ERR_SERVER_KEYS;
	}
	return p->soft->keys.oprf_seed_expand(p->soft->keys.ctx, info, info_len, out, out_len);
}

static opaque_err plug_dh(void *ctx, const uint8_t *peer, size_t peer_len, uint8_t *out,
                          size_t out_len)
{
	plug *p = ctx;
	p->dh_calls++;
	if (peer_len <= sizeof p->last_peer) {
		memcpy(p->last_peer, peer, peer_len);
	}
	if (p->fail_dh) {
		return OPAQUE_ERR_SERVER_KEYS;
	}
	if (p->keys.suite == OPAQUE_SUITE_P256_SHA256 && peer_len == 33) {
		uint8_t other[65];
		p->lent = opaque_p256_lent_uncompressed(peer, p->lent_point);
		p->probe_lent =
		    p->probe_len == 33 && opaque_p256_lent_uncompressed(p->probe, other);
	}
	if (p->probe_len > 0) {
		p->probe_err = opaque_ake_dh(p->keys.suite, p->soft->server_private_key, 32,
		                             p->probe, p->probe_len, p->probe_out, out_len);
	}
	opaque_err rc = p->soft->keys.ake_dh(p->soft->keys.ctx, peer, peer_len, out, out_len);
	if (rc == OPAQUE_OK && out_len <= sizeof p->last_out) {
		memcpy(p->last_out, out, out_len);
	}
	return rc;
}

static void plug_init(plug *p, fx *f)
{
	memset(p, 0, sizeof *p);
	p->soft = &f->soft;
	p->keys.suite = f->suite;
	memcpy(p->keys.server_public_key, f->soft.keys.server_public_key, OPAQUE_MAX_ELEMENT_BYTES);
	p->keys.oprf_seed_expand = plug_expand;
	p->keys.ake_dh = plug_dh;
	p->keys.ctx = p;
}

static void test_custom_server_keys_are_used_for_registration_and_login(void **state)
{
	fx *f = *state;
	plug p;
	session s;
	msg_field fields[KE1_NFIELDS];
	plug_init(&p, f);
	ke1_fields(f->sz, fields);
	assert_err(try_register(f, &f->cfg, &p.keys, PASSWORD, &NO_IDS, f->record, f->export_key),
	           OPAQUE_OK);
	assert_true(p.expand_calls >= 1);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &p.keys, &NO_IDS, f->record, s.ke1, &s), OPAQUE_OK);
	/* 3DH uses the server's long-term key once, with the client's ephemeral keyshare
	 * (dh2 = skS * epkU, RFC 9807 section 6.4.2). */
	assert_true(p.dh_calls >= 1);
	assert_memory_equal(p.last_peer, s.ke1 + fields[KE1_CLIENT_KEYSHARE].off, f->sz->Npk);
	assert_err(client_finish(f, &f->cfg, &s, PASSWORD, &NO_IDS), OPAQUE_OK);
	assert_err(server_finish(f, &s), OPAQUE_OK);
	assert_memory_equal(s.client_session_key, s.server_session_key, f->sz->session_key);
	assert_memory_equal(s.export_key, f->export_key, f->sz->export_key);
}

static void test_failing_ake_dh_fails_server_login_start_with_server_keys_and_no_ke2(void **state)
{
	fx *f = *state;
	plug p;
	session s;
	plug_init(&p, f);
	register_user(f);
	p.fail_dh = 1;
	client_start(f, &f->cfg, &s, PASSWORD);
	memset(s.ke2, 0, sizeof s.ke2);
	assert_err(server_start(f, &f->cfg, &p.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_ERR_SERVER_KEYS);
	assert_true(p.dh_calls >= 1);
	assert_true(tu_is_zero(s.ke2, sizeof s.ke2));
	assert_true(tu_is_zero(&s.sst, sizeof s.sst));
	opaque_client_login_state_wipe(&s.cst);
}

/* The token (keys->ake_dh) is promised a validated peer: an invalid client key share must be
 * rejected before ake_dh is ever called, with the element's own error. */
static void test_ake_dh_never_sees_an_invalid_client_keyshare(void **state)
{
	fx *f = *state;
	bad_element list[MAX_BAD];
	msg_field fields[KE1_NFIELDS];
	size_t n = bad_elements(f->suite, list);
	ke1_fields(f->sz, fields);
	register_user(f);
	for (size_t i = 0; i < n; i++) {
		plug p;
		session s;
		plug_init(&p, f);
		client_start(f, &f->cfg, &s, PASSWORD);
		memcpy(s.ke1 + fields[KE1_CLIENT_KEYSHARE].off, list[i].enc, f->sz->Npk);
		opaque_err rc = server_start(f, &f->cfg, &p.keys, &NO_IDS, f->record, s.ke1, &s);
		assert_bad_element_result(&list[i], rc, "client keyshare, plugged keys");
		if (p.dh_calls != 0) {
			fail_msg("%s: ake_dh was called with an invalid key share", list[i].what);
		}
		assert_true(tu_is_zero(s.ke2, sizeof s.ke2));
		opaque_client_login_state_wipe(&s.cst);
	}
	/* And the peer it does get is the KE1 key share, a valid element. */
	plug p;
	session s;
	plug_init(&p, f);
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &p.keys, &NO_IDS, f->record, s.ke1, &s), OPAQUE_OK);
	assert_int_equal(p.dh_calls, 1);
	assert_memory_equal(p.last_peer, s.ke1 + fields[KE1_CLIENT_KEYSHARE].off, f->sz->Npk);
	assert_err(opaque_element_validate(f->suite, p.last_peer, f->sz->Npk), OPAQUE_OK);
	opaque_client_login_state_wipe(&s.cst);
	opaque_server_login_state_wipe(&s.sst);
}

/* KE2 lends its decoded key share to opaque_ake_dh while keys->ake_dh runs. Any other peer
 * given to opaque_ake_dh meanwhile must be decoded and validated as usual: invalid ones are
 * rejected, the generator gives the server's public key (sk * G = pk), and for P-256 the
 * key share's negation (same x, other prefix) gives the negated dh2 (same x, other prefix). */
static void test_opaque_ake_dh_during_ke2_decodes_other_peers_itself(void **state)
{
	fx *f = *state;
	bad_element list[MAX_BAD];
	msg_field fields[KE1_NFIELDS];
	size_t n = bad_elements(f->suite, list);
	ke1_fields(f->sz, fields);
	register_user(f);
	for (size_t i = 0; i <= n + 1; i++) {
		plug p;
		session s;
		plug_init(&p, f);
		client_start(f, &f->cfg, &s, PASSWORD);
		const uint8_t *keyshare = s.ke1 + fields[KE1_CLIENT_KEYSHARE].off;
		p.probe_len = f->sz->Npk;
		if (i < n) {
			memcpy(p.probe, list[i].enc, f->sz->Npk);
		} else if (i == n) {
			generator(f->suite, p.probe);
		} else if (f->suite == OPAQUE_SUITE_P256_SHA256) {
			memcpy(p.probe, keyshare, f->sz->Npk);
			p.probe[0] ^= 0x01; /* 02 <-> 03: -P */
		} else {
			opaque_client_login_state_wipe(&s.cst);
			break;
		}
		assert_err(server_start(f, &f->cfg, &p.keys, &NO_IDS, f->record, s.ke1, &s),
		           OPAQUE_OK);
		assert_int_equal(p.dh_calls, 1);
		if (i < n) {
			if (p.probe_err == OPAQUE_OK) {
				fail_msg("%s: accepted by opaque_ake_dh during KE2", list[i].what);
			}
		} else if (i == n) {
			assert_err(p.probe_err, OPAQUE_OK);
			assert_memory_equal(p.probe_out, f->soft.keys.server_public_key,
			                    f->sz->Npk);
		} else {
			assert_err(p.probe_err, OPAQUE_OK);
			assert_int_equal(p.probe_out[0], p.last_out[0] ^ 0x01);
			assert_memory_equal(p.probe_out + 1, p.last_out + 1, f->sz->Npk - 1);
		}
		opaque_client_login_state_wipe(&s.cst);
		opaque_server_login_state_wipe(&s.sst);
	}
}

/* A token that wants the peer uncompressed gets the key share KE2 decoded, during its
 * ake_dh only, for that peer only, and equal to OpenSSL's own decompression of it. */
static void test_p256_lent_uncompressed_gives_the_key_share_during_ke2_only(void **state)
{
	fx *f = *state;
	msg_field fields[KE1_NFIELDS];
	ke1_fields(f->sz, fields);
	register_user(f);
	plug p;
	session s;
	plug_init(&p, f);
	client_start(f, &f->cfg, &s, PASSWORD);
	const uint8_t *keyshare = s.ke1 + fields[KE1_CLIENT_KEYSHARE].off;
	uint8_t out[65];
	memset(out, 0xAA, sizeof out);
	assert_false(opaque_p256_lent_uncompressed(keyshare, out)); /* not inside KE2 */
	assert_true(tu_is_zero(out, sizeof out));
	p.probe_len = 33;
	generator(f->suite, p.probe); /* another peer, asked for meanwhile */
	assert_err(server_start(f, &f->cfg, &p.keys, &NO_IDS, f->record, s.ke1, &s), OPAQUE_OK);
	assert_int_equal(p.dh_calls, 1);
	assert_true(p.lent);
	assert_false(p.probe_lent);
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	EC_POINT *pt = EC_POINT_new(g);
	uint8_t want[65];
	assert_int_equal(EC_POINT_oct2point(g, pt, keyshare, 33, NULL), 1);
	assert_int_equal(
	    EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, want, sizeof want, NULL), 65);
	assert_memory_equal(p.lent_point, want, 65);
	EC_POINT_free(pt);
	EC_GROUP_free(g);
	assert_false(opaque_p256_lent_uncompressed(keyshare, out)); /* KE2 is over */
	opaque_client_login_state_wipe(&s.cst);
	opaque_server_login_state_wipe(&s.sst);
}

static void
test_failing_oprf_seed_expand_fails_registration_and_login_with_server_keys(void **state)
{
	fx *f = *state;
	plug p;
	session s;
	uint8_t req[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t resp[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES] = {0};
	opaque_client_registration_state rst;
	plug_init(&p, f);
	register_user(f);
	p.fail_expand = 1;
	assert_err(opaque_client_registration_start(&f->cfg, LIT(PASSWORD), &rst, req,
	                                            f->sz->registration_request),
	           OPAQUE_OK);
	assert_err(opaque_server_registration_response(&f->cfg, &p.keys, LIT(CRED_ID), req,
	                                               f->sz->registration_request, resp,
	                                               f->sz->registration_response),
	           OPAQUE_ERR_SERVER_KEYS);
	assert_true(tu_is_zero(resp, sizeof resp));
	client_start(f, &f->cfg, &s, PASSWORD);
	assert_err(server_start(f, &f->cfg, &p.keys, &NO_IDS, f->record, s.ke1, &s),
	           OPAQUE_ERR_SERVER_KEYS);
	assert_true(tu_is_zero(s.ke2, sizeof s.ke2));
	assert_true(tu_is_zero(&s.sst, sizeof s.sst));
	opaque_client_registration_state_wipe(&rst);
	opaque_client_login_state_wipe(&s.cst);
}

/* ------------------------------------------------------------------------------------ */

#define P256_TEST(fn)                                                                              \
	{                                                                                          \
#fn " [P256-SHA256]", fn, setup, teardown, &suite_p256                             \
	}
#define R255_TEST(fn)                                                                              \
	{                                                                                          \
#fn " [ristretto255-SHA512]", fn, setup, teardown, &suite_r255                     \
	}
#define BOTH(fn) P256_TEST(fn), R255_TEST(fn)

int main(void)
{
	if (sodium_init() < 0) {
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unknown_suite_has_no_sizes_and_no_real_name),
	    cmocka_unit_test(test_strerror_gives_a_distinct_nonempty_message_for_every_error),
	    BOTH(test_suite_sizes_match_rfc9807),

	    BOTH(test_login_after_registration_gives_equal_client_and_server_session_keys),
	    BOTH(test_login_export_key_equals_registration_export_key),
	    BOTH(test_two_logins_give_different_session_keys_and_the_same_export_key),
	    BOTH(test_server_state_holds_the_expected_client_mac_and_session_key),
	    BOTH(test_empty_context_is_allowed),
	    BOTH(test_context_mismatch_between_client_and_server_fails_server_auth),
	    BOTH(test_identities_round_trip),
	    BOTH(test_explicit_identities_equal_to_the_public_keys_match_the_defaults),
	    BOTH(test_client_identity_changed_since_registration_fails_envelope_recovery),
	    BOTH(test_server_identity_mismatch_between_client_and_server_fails_server_auth),

	    BOTH(test_argon2id_round_trip_at_small_params),
	    BOTH(test_different_argon2id_params_give_different_export_keys),
	    BOTH(test_login_with_other_argon2id_params_than_registration_fails_envelope_recovery),
	    BOTH(test_unknown_ksf_fails_with_argument),

	    BOTH(test_wrong_password_fails_at_client_with_envelope_recovery),
	    BOTH(test_server_rejects_random_ke3_with_client_auth),
	    BOTH(test_server_rejects_ke3_from_another_session_with_client_auth),
	    BOTH(test_login_with_wrong_credential_identifier_fails_envelope_recovery),
	    BOTH(test_server_with_another_ake_key_fails_envelope_recovery),

	    BOTH(test_ke2_with_flipped_evaluated_message_is_rejected),
	    BOTH(test_ke2_with_flipped_masking_nonce_is_rejected),
	    BOTH(test_ke2_with_flipped_masked_response_is_rejected),
	    BOTH(test_ke2_with_flipped_server_nonce_fails_server_auth),
	    BOTH(test_ke2_with_flipped_server_keyshare_is_rejected),
	    BOTH(test_ke2_with_flipped_server_mac_fails_server_auth),
	    BOTH(test_tampered_ke3_is_rejected_by_server_with_client_auth),
	    BOTH(test_ke1_with_flipped_blinded_message_fails_the_session),
	    BOTH(test_ke1_with_flipped_client_nonce_fails_the_session),
	    BOTH(test_ke1_with_flipped_client_keyshare_fails_the_session),

	    BOTH(test_element_validate_accepts_valid_elements),
	    P256_TEST(test_p256_decoding_agrees_with_openssl),
	    BOTH(test_element_validate_rejects_invalid_elements_with_the_specific_error),
	    BOTH(test_element_validate_rejects_wrong_lengths),
	    BOTH(test_registration_request_with_invalid_element_is_rejected),
	    BOTH(test_registration_response_with_invalid_evaluated_element_is_rejected),
	    BOTH(test_ke1_with_invalid_blinded_message_is_rejected),
	    BOTH(test_ke1_with_invalid_client_keyshare_is_rejected),
	    BOTH(test_record_with_invalid_client_public_key_is_rejected),
	    BOTH(test_ke2_with_invalid_evaluated_element_is_rejected),
	    BOTH(test_ke2_with_invalid_server_keyshare_is_rejected),
	    BOTH(test_oprf_blind_evaluate_rejects_invalid_elements),

	    BOTH(test_soft_keys_public_key_is_private_key_times_generator),
	    BOTH(test_generated_ake_key_pair_matches_and_is_fresh),
	    BOTH(test_soft_keys_init_rejects_zero_or_unreduced_private_key),
	    BOTH(test_soft_keys_init_rejects_wrong_lengths),
	    BOTH(test_soft_keys_wipe_zeroes_the_secrets),
	    BOTH(test_oprf_output_depends_on_input_and_key_but_not_on_the_blind),
	    BOTH(test_oprf_derive_key_pair_public_key_is_private_key_times_generator),

	    BOTH(test_wrong_output_buffer_length_fails_with_buffer),
	    BOTH(test_wrong_input_message_length_fails_with_length),
	    BOTH(test_null_arguments_fail_with_argument),
	    BOTH(test_unknown_suite_fails_with_argument),
	    BOTH(test_server_keys_of_another_suite_fail_with_argument),

	    BOTH(test_client_registration_state_is_wiped_after_finish_on_success),
	    BOTH(test_client_registration_state_is_wiped_after_finish_on_failure),
	    BOTH(test_client_login_state_is_wiped_after_finish_on_success),
	    BOTH(test_client_login_state_is_wiped_after_finish_on_failure),
	    BOTH(test_server_login_state_is_wiped_after_finish_on_success),
	    BOTH(test_server_login_state_is_wiped_after_finish_on_failure),
	    BOTH(test_state_wipe_functions_zero_the_states),

	    BOTH(test_fake_record_looks_like_a_record_with_a_zero_envelope),
	    BOTH(test_ke2_from_a_fake_record_has_ke2_length_and_fails_envelope_recovery),

	    BOTH(test_custom_server_keys_are_used_for_registration_and_login),
	    BOTH(test_failing_ake_dh_fails_server_login_start_with_server_keys_and_no_ke2),
	    BOTH(test_ake_dh_never_sees_an_invalid_client_keyshare),
	    BOTH(test_opaque_ake_dh_during_ke2_decodes_other_peers_itself),
	    P256_TEST(test_p256_lent_uncompressed_gives_the_key_share_during_ke2_only),
	    BOTH(test_failing_oprf_seed_expand_fails_registration_and_login_with_server_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
