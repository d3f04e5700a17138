/*
 * fuzz_common.c - builds the deterministic per-suite fixtures (one full OPAQUE registration
 * and login with fixed keys and randomness) and decodes fuzz inputs into messages.
 */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t context[] = "bkv-fuzz";
static const uint8_t password[] = "correct horse battery staple";
static const uint8_t credential_identifier[] = "fuzz-user";

static fuzz_fixture_t fixtures[2];
static int fixtures_ready[2];

_Noreturn void fuzz_fail(const char *harness, const char *what)
{
	fprintf(stderr, "%s: invariant broken: %s\n", harness, what);
	abort();
}

static void check(opaque_err err, const char *what)
{
	if (err != OPAQUE_OK) {
		fprintf(stderr, "fuzz fixture: %s failed: %s\n", what, opaque_strerror(err));
		abort();
	}
}

static void fixture_build(fuzz_fixture_t *f, opaque_suite_id suite)
{
	opaque_client_registration_state reg_state;
	opaque_client_login_state client_state;
	opaque_server_login_state server_state;
	uint8_t client_session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t login_export_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t oprf_seed[OPAQUE_MAX_HASH_BYTES];
	uint8_t registration_blind[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t login_blind[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t client_nonce[OPAQUE_NONCE_BYTES];
	uint8_t client_keyshare_seed[OPAQUE_SEED_BYTES];
	const opaque_sizes *sz;

	memset(f, 0, sizeof(*f));
	sz = opaque_suite_sizes(suite);
	if (sz == NULL) {
		fuzz_fail("fuzz fixture", "unknown suite");
	}
	f->sz = sz;
	f->config.suite = suite;
	f->config.context = context;
	f->config.context_len = sizeof(context) - 1;
	f->config.ksf.id = OPAQUE_KSF_IDENTITY;
	f->credential_identifier = credential_identifier;
	f->credential_identifier_len = sizeof(credential_identifier) - 1;
	f->password = password;
	f->password_len = sizeof(password) - 1;

	/* Scalars of 32 equal bytes below 0x10 are valid, non-zero and reduced in both suites:
	 * below the P-256 order read big-endian and below the ristretto255 order (2^252 + ...)
	 * read little-endian. */
	memset(f->server_private_key, 0x07, sizeof(f->server_private_key));
	memset(registration_blind, 0x05, sizeof(registration_blind));
	memset(login_blind, 0x06, sizeof(login_blind));
	memset(oprf_seed, 0x42, sizeof(oprf_seed));
	memset(client_nonce, 0x21, sizeof(client_nonce));
	memset(client_keyshare_seed, 0x31, sizeof(client_keyshare_seed));
	memset(f->envelope_nonce, 0x71, sizeof(f->envelope_nonce));
	memset(f->masking_nonce, 0x41, sizeof(f->masking_nonce));
	memset(f->server_nonce, 0x51, sizeof(f->server_nonce));
	memset(f->server_keyshare_seed, 0x61, sizeof(f->server_keyshare_seed));

	check(opaque_soft_server_keys_init(&f->soft, suite, oprf_seed, sz->Nh,
	                                   f->server_private_key, sz->Nsk),
	      "opaque_soft_server_keys_init");

	check(opaque_client_registration_start_with_randomness(
	          &f->config, f->password, f->password_len, registration_blind, sz->Ns,
	          &f->reg_state, f->registration_request, sz->registration_request),
	      "opaque_client_registration_start");
	check(opaque_server_registration_response(
	          &f->config, &f->soft.keys, f->credential_identifier, f->credential_identifier_len,
	          f->registration_request, sz->registration_request, f->registration_response,
	          sz->registration_response),
	      "opaque_server_registration_response");
	reg_state = f->reg_state;
	check(opaque_client_registration_finish_with_randomness(
	          &f->config, &reg_state, f->password, f->password_len, &f->identities,
	          f->registration_response, sz->registration_response, f->envelope_nonce,
	          f->registration_record, sz->registration_record, f->export_key, sz->export_key),
	      "opaque_client_registration_finish");

	check(opaque_client_login_start_with_randomness(
	          &f->config, f->password, f->password_len, login_blind, sz->Ns, client_nonce,
	          client_keyshare_seed, &f->client_state, f->ke1, sz->ke1),
	      "opaque_client_login_start");
	check(opaque_server_login_start_with_randomness(
	          &f->config, &f->soft.keys, &f->identities, f->credential_identifier,
	          f->credential_identifier_len, f->registration_record, sz->registration_record,
	          f->ke1, sz->ke1, f->masking_nonce, f->server_nonce, f->server_keyshare_seed,
	          &f->server_state, f->ke2, sz->ke2),
	      "opaque_server_login_start");
	client_state = f->client_state;
	check(opaque_client_login_finish(&f->config, &client_state, f->password, f->password_len,
	                                 &f->identities, f->ke2, sz->ke2, f->ke3, sz->ke3,
	                                 client_session_key, sz->session_key, login_export_key,
	                                 sz->export_key),
	      "opaque_client_login_finish");
	server_state = f->server_state;
	check(opaque_server_login_finish(&server_state, f->ke3, sz->ke3, f->session_key,
	                                 sz->session_key),
	      "opaque_server_login_finish");

	if (memcmp(client_session_key, f->session_key, sz->session_key) != 0) {
		fuzz_fail("fuzz fixture", "client and server session keys differ");
	}
	if (memcmp(login_export_key, f->export_key, sz->export_key) != 0) {
		fuzz_fail("fuzz fixture", "registration and login export keys differ");
	}
}

static size_t suite_index(const uint8_t *data, size_t size)
{
	return (size > 0 && (data[0] & 1) != 0) ? 1 : 0;
}

const fuzz_fixture_t *fuzz_fixture(const uint8_t *data, size_t size)
{
	size_t i = suite_index(data, size);

	if (!fixtures_ready[i]) {
		fixture_build(&fixtures[i],
		              i == 0 ? OPAQUE_SUITE_P256_SHA256 : OPAQUE_SUITE_RISTRETTO255_SHA512);
		fixtures_ready[i] = 1;
	}
	return &fixtures[i];
}

void fuzz_fixtures_init(void)
{
	static const uint8_t p256 = 0, ristretto255 = 1;

	(void)fuzz_fixture(&p256, 1);
	(void)fuzz_fixture(&ristretto255, 1);
}

void fuzz_msg_make(fuzz_msg_t *msg, const uint8_t *data, size_t size, size_t exact_len,
                   const uint8_t *real)
{
	uint8_t mode = size > 1 ? data[1] : 0;
	const uint8_t *payload = size > 2 ? data + 2 : NULL;
	size_t payload_len = size > 2 ? size - 2 : 0;
	int raw_length = (mode & 0x07) == 0;
	int xor_real = (mode & 0x08) != 0 && real != NULL;
	size_t i;

	msg->len = raw_length ? payload_len : exact_len;
	msg->bytes = malloc(msg->len > 0 ? msg->len : 1);
	if (msg->bytes == NULL) {
		fuzz_fail("fuzz_msg_make", "out of memory");
	}
	for (i = 0; i < msg->len; i++) {
		uint8_t base = (xor_real && i < exact_len) ? real[i] : 0;
		uint8_t delta = i < payload_len ? payload[i] : 0;

		msg->bytes[i] = (uint8_t)(base ^ delta);
	}
}

void fuzz_msg_free(fuzz_msg_t *msg)
{
	free(msg->bytes);
	msg->bytes = NULL;
	msg->len = 0;
}

int fuzz_msg_equals(const fuzz_msg_t *msg, const uint8_t *real, size_t len)
{
	return msg->len == len && memcmp(msg->bytes, real, len) == 0;
}

int fuzz_all(const uint8_t *buf, size_t len, uint8_t value)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (buf[i] != value) {
			return 0;
		}
	}
	return 1;
}

void fuzz_check_no_partial_output(const char *harness, const char *what, const uint8_t *buf,
                                  size_t len)
{
	if (!fuzz_all(buf, len, 0) && !fuzz_all(buf, len, FUZZ_SENTINEL)) {
		fuzz_fail(harness, what);
	}
}
