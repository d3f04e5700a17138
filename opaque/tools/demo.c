/*
 * demo.c - bkv-opaque-demo: registers "alice" and logs her in with the right and then a wrong
 * password, client and server in one process, for both OPAQUE suites. Uses only the public
 * API (opaque/opaque.h). Exits non-zero if anything behaves unexpectedly.
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "opaque/opaque.h"

#define FINGERPRINT_BYTES 8

static const char demo_user[] = "alice";
static const char demo_password[] = "correct horse battery staple";
static const char demo_wrong_password[] = "correct horse battery stapler";
static const char demo_context[] = "bkv-opaque-demo";

/* The project default KSF: Argon2id t=3, m=64 MiB, p=4. */
static const opaque_ksf demo_ksf = {
    .id = OPAQUE_KSF_ARGON2ID,
    .iterations = 3,
    .memory_kib = 65536,
    .parallelism = 4,
};

/* Everything secret, in one place so a single sodium_memzero wipes it on every exit path. */
static struct demo_secrets {
	opaque_soft_server_keys server_keys;
	opaque_client_registration_state registration_state;
	opaque_client_login_state client_state;
	opaque_server_login_state server_state;
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t registration_export_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t login_export_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t client_session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t server_session_key[OPAQUE_MAX_HASH_BYTES];
} secrets;

/* Protocol messages: public, but wiped anyway with the rest. */
static struct demo_messages {
	uint8_t registration_request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t registration_response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
} messages;

/* Hex of the first FINGERPRINT_BYTES bytes: enough to compare, useless to an attacker. */
static const char *fingerprint(const uint8_t *bytes, size_t len,
                               char out[2 * FINGERPRINT_BYTES + 1])
{
	size_t n = len < FINGERPRINT_BYTES ? len : FINGERPRINT_BYTES;

	sodium_bin2hex(out, 2 * FINGERPRINT_BYTES + 1, bytes, n);
	return out;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reports an unexpected error; returns false so callers can `return check(...)`. */
static bool check(opaque_err err, const char *what)
{
	if (err == OPAQUE_OK) {
		return true;
	}
	fprintf(stderr, "UNEXPECTED: %s failed: %s\n", what, opaque_strerror(err));
	return false;
}

static bool fail(const char *what)
{
	fprintf(stderr, "UNEXPECTED: %s\n", what);
	return false;
}

static bool run_suite(opaque_suite_id suite)
{
	const opaque_sizes *sz = opaque_suite_sizes(suite);
	const opaque_config config = {
	    .suite = suite,
	    .context = (const uint8_t *)demo_context,
	    .context_len = sizeof(demo_context) - 1,
	    .ksf = demo_ksf,
	};
	const uint8_t *user = (const uint8_t *)demo_user;
	const size_t user_len = sizeof(demo_user) - 1;
	const uint8_t *password = (const uint8_t *)demo_password;
	const size_t password_len = sizeof(demo_password) - 1;
	const uint8_t *wrong = (const uint8_t *)demo_wrong_password;
	const size_t wrong_len = sizeof(demo_wrong_password) - 1;
	char fp1[2 * FINGERPRINT_BYTES + 1];
	char fp2[2 * FINGERPRINT_BYTES + 1];
	opaque_err err;
	double t;

	if (sz == NULL) {
		return fail("opaque_suite_sizes returned NULL for a supported suite");
	}
	printf("\n[%s]\n", opaque_suite_name(suite));

	/* Server setup: a random OPRF seed and AKE key pair, kept in memory here. */
	if (!check(opaque_soft_server_keys_generate(&secrets.server_keys, suite),
	           "opaque_soft_server_keys_generate")) {
		return false;
	}
	const opaque_server_keys *keys = &secrets.server_keys.keys;
	printf("  setup     server generated its OPRF seed and AKE key pair"
	       " (public key %s...)\n",
	       fingerprint(keys->server_public_key, sz->Npk, fp1));

	/* Registration: three messages; the password never leaves the client. */
	if (!check(opaque_client_registration_start(
	               &config, password, password_len, &secrets.registration_state,
	               messages.registration_request, sz->registration_request),
	           "opaque_client_registration_start") ||
	    !check(opaque_server_registration_response(
	               &config, keys, user, user_len, messages.registration_request,
	               sz->registration_request, messages.registration_response,
	               sz->registration_response),
	           "opaque_server_registration_response")) {
		return false;
	}
	t = now_seconds();
	if (!check(opaque_client_registration_finish(
	               &config, &secrets.registration_state, password, password_len, NULL,
	               messages.registration_response, sz->registration_response, secrets.record,
	               sz->registration_record, secrets.registration_export_key, sz->export_key),
	           "opaque_client_registration_finish")) {
		return false;
	}
	t = now_seconds() - t;
	if (!check(
	        opaque_registration_record_validate(suite, secrets.record, sz->registration_record),
	        "opaque_registration_record_validate")) {
		return false;
	}
	printf("  register  %s: request %zu B -> response %zu B -> record %zu B, stored by the"
	       " server\n",
	       demo_user, sz->registration_request, sz->registration_response,
	       sz->registration_record);
	printf("            client export key %s...  (client: %.2f s, mostly Argon2id)\n",
	       fingerprint(secrets.registration_export_key, sz->export_key, fp1), t);

	/* Login with the right password: both sides end with the same session key. */
	if (!check(opaque_client_login_start(&config, password, password_len, &secrets.client_state,
	                                     messages.ke1, sz->ke1),
	           "opaque_client_login_start") ||
	    !check(opaque_server_login_start(&config, keys, NULL, user, user_len, secrets.record,
	                                     sz->registration_record, messages.ke1, sz->ke1,
	                                     &secrets.server_state, messages.ke2, sz->ke2),
	           "opaque_server_login_start")) {
		return false;
	}
	t = now_seconds();
	if (!check(opaque_client_login_finish(
	               &config, &secrets.client_state, password, password_len, NULL, messages.ke2,
	               sz->ke2, messages.ke3, sz->ke3, secrets.client_session_key, sz->session_key,
	               secrets.login_export_key, sz->export_key),
	           "opaque_client_login_finish")) {
		return false;
	}
	t = now_seconds() - t;
	if (!check(opaque_server_login_finish(&secrets.server_state, messages.ke3, sz->ke3,
	                                      secrets.server_session_key, sz->session_key),
	           "opaque_server_login_finish")) {
		return false;
	}
	printf("  login     %s, right password: KE1 %zu B -> KE2 %zu B -> KE3 %zu B\n"
	       "            (client: %.2f s, mostly Argon2id)\n",
	       demo_user, sz->ke1, sz->ke2, sz->ke3, t);
	if (sodium_memcmp(secrets.client_session_key, secrets.server_session_key,
	                  sz->session_key) != 0) {
		return fail("client and server session keys differ");
	}
	printf("            session key: client %s... = server %s...  match\n",
	       fingerprint(secrets.client_session_key, sz->session_key, fp1),
	       fingerprint(secrets.server_session_key, sz->session_key, fp2));
	if (sodium_memcmp(secrets.login_export_key, secrets.registration_export_key,
	                  sz->export_key) != 0) {
		return fail("the login export key differs from the registration export key");
	}
	printf("            export key:  login  %s... = registration's  match\n",
	       fingerprint(secrets.login_export_key, sz->export_key, fp1));

	/* Login with a wrong password: the server cannot tell and answers normally; the client
	 * fails to open its envelope and never produces a KE3. */
	if (!check(opaque_client_login_start(&config, wrong, wrong_len, &secrets.client_state,
	                                     messages.ke1, sz->ke1),
	           "opaque_client_login_start (wrong password)") ||
	    !check(opaque_server_login_start(&config, keys, NULL, user, user_len, secrets.record,
	                                     sz->registration_record, messages.ke1, sz->ke1,
	                                     &secrets.server_state, messages.ke2, sz->ke2),
	           "opaque_server_login_start (wrong password)")) {
		return false;
	}
	memset(secrets.client_session_key, 0xa5, sizeof(secrets.client_session_key));
	memset(secrets.login_export_key, 0xa5, sizeof(secrets.login_export_key));
	err = opaque_client_login_finish(&config, &secrets.client_state, wrong, wrong_len, NULL,
	                                 messages.ke2, sz->ke2, messages.ke3, sz->ke3,
	                                 secrets.client_session_key, sz->session_key,
	                                 secrets.login_export_key, sz->export_key);
	if (err == OPAQUE_OK) {
		return fail("the client accepted a wrong password");
	}
	if (err != OPAQUE_ERR_ENVELOPE_RECOVERY) {
		fprintf(stderr, "UNEXPECTED: wrong password gave \"%s\", expected \"%s\"\n",
		        opaque_strerror(err), opaque_strerror(OPAQUE_ERR_ENVELOPE_RECOVERY));
		return false;
	}
	if (!sodium_is_zero(secrets.client_session_key, sz->session_key) ||
	    !sodium_is_zero(secrets.login_export_key, sz->export_key)) {
		return fail("opaque_client_login_finish left key material in its outputs on error");
	}
	printf("  login     %s, wrong password: KE1 -> KE2, then the client stops with\n"
	       "            \"%s\"\n",
	       demo_user, opaque_strerror(err));

	/* Without the password nobody can produce a valid KE3; a guessed one is refused. */
	randombytes_buf(messages.ke3, sz->ke3);
	err = opaque_server_login_finish(&secrets.server_state, messages.ke3, sz->ke3,
	                                 secrets.server_session_key, sz->session_key);
	if (err != OPAQUE_ERR_CLIENT_AUTH) {
		fprintf(stderr, "UNEXPECTED: a random KE3 gave \"%s\", expected \"%s\"\n",
		        opaque_strerror(err), opaque_strerror(OPAQUE_ERR_CLIENT_AUTH));
		return false;
	}
	printf("            and a guessed KE3 is refused by the server with\n"
	       "            \"%s\"\n",
	       opaque_strerror(err));
	return true;
}

int main(void)
{
	static const opaque_suite_id suites[] = {
	    OPAQUE_SUITE_P256_SHA256,
	    OPAQUE_SUITE_RISTRETTO255_SHA512,
	};
	bool ok = true;

	if (sodium_init() < 0) {
		fprintf(stderr, "UNEXPECTED: sodium_init failed\n");
		return 1;
	}
	printf("bkv-opaque-demo: OPAQUE (RFC 9807) registration and login, client and server in"
	       " one process.\n"
	       "The server never sees the password; it stores only a registration record.\n"
	       "Client key stretching: Argon2id t=%u m=%u KiB p=%u (project default).\n"
	       "Secrets are shown only as fingerprints: their first %d bytes in hex.\n",
	       demo_ksf.iterations, demo_ksf.memory_kib, demo_ksf.parallelism, FINGERPRINT_BYTES);

	for (size_t i = 0; ok && i < sizeof(suites) / sizeof(suites[0]); i++) {
		ok = run_suite(suites[i]);
		opaque_soft_server_keys_wipe(&secrets.server_keys);
		sodium_memzero(&secrets, sizeof(secrets));
		sodium_memzero(&messages, sizeof(messages));
	}

	if (!ok) {
		fprintf(stderr, "\nbkv-opaque-demo: FAILED\n");
		return 1;
	}
	printf("\nAll steps behaved as expected for both suites.\n");
	return 0;
}
