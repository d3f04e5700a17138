/*
 * fuzz_registration_record.c - fuzzes RegistrationRecord parsing: the server's upload check
 * opaque_registration_record_validate, then opaque_server_login_start with that record and a
 * real KE1, for both suites.
 */
#include "fuzz_common.h"

#include <string.h>

#define HARNESS "fuzz-registration-record"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_fixtures_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const fuzz_fixture_t *f = fuzz_fixture(data, size);
	const opaque_sizes *sz = f->sz;
	opaque_server_login_state state;
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	fuzz_msg_t record;
	opaque_err valid, err;
	int is_real;

	fuzz_msg_make(&record, data, size, sz->registration_record, f->registration_record);
	is_real = fuzz_msg_equals(&record, f->registration_record, sz->registration_record);
	valid = opaque_registration_record_validate(f->config.suite, record.bytes, record.len);
	if (valid == OPAQUE_OK && record.len != sz->registration_record) {
		fuzz_fail(HARNESS, "validated a record of the wrong length");
	}
	if (is_real && valid != OPAQUE_OK) {
		fuzz_fail(HARNESS, "the real record does not validate");
	}

	/* A server that skipped the upload check must still refuse to use a bad record, since
	 * ake_dh may only ever see a validated client_public_key. */
	memset(&state, FUZZ_SENTINEL, sizeof(state));
	memset(ke2, FUZZ_SENTINEL, sizeof(ke2));
	err = opaque_server_login_start_with_randomness(
	    &f->config, &f->soft.keys, &f->identities, f->credential_identifier,
	    f->credential_identifier_len, record.bytes, record.len, f->ke1, sz->ke1,
	    f->masking_nonce, f->server_nonce, f->server_keyshare_seed, &state, ke2, sz->ke2);
	if (valid == OPAQUE_OK && err != OPAQUE_OK) {
		fuzz_fail(HARNESS, "a valid record was refused by opaque_server_login_start");
	}
	if (valid != OPAQUE_OK && err == OPAQUE_OK) {
		fuzz_fail(HARNESS, "an invalid record was used by opaque_server_login_start");
	}
	if (err != OPAQUE_OK) {
		fuzz_check_no_partial_output(HARNESS, "partial expected_client_mac after an error",
		                             state.expected_client_mac,
		                             sizeof(state.expected_client_mac));
		fuzz_check_no_partial_output(HARNESS, "partial session_key after an error",
		                             state.session_key, sizeof(state.session_key));
	} else if (is_real && memcmp(ke2, f->ke2, sz->ke2) != 0) {
		fuzz_fail(HARNESS, "the real record gave a different KE2");
	}
	opaque_server_login_state_wipe(&state);
	fuzz_msg_free(&record);
	return 0;
}
