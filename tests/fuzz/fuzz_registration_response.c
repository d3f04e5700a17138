/*
 * fuzz_registration_response.c - fuzzes the client's parsing of a RegistrationResponse in
 * opaque_client_registration_finish (after a real registration start), for both suites.
 */
#include "fuzz_common.h"

#include <string.h>

#define HARNESS "fuzz-registration-response"

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
	opaque_client_registration_state state = f->reg_state;
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	fuzz_msg_t response;
	opaque_err err;
	int is_real;

	fuzz_msg_make(&response, data, size, sz->registration_response, f->registration_response);
	is_real = fuzz_msg_equals(&response, f->registration_response, sz->registration_response);
	memset(record, FUZZ_SENTINEL, sizeof(record));
	memset(export_key, FUZZ_SENTINEL, sizeof(export_key));
	err = opaque_client_registration_finish_with_randomness(
	    &f->config, &state, f->password, f->password_len, &f->identities, response.bytes,
	    response.len, f->envelope_nonce, record, sz->registration_record, export_key,
	    sz->export_key);
	if (!fuzz_all(state.blind, sizeof(state.blind), 0)) {
		fuzz_fail(HARNESS, "registration state not wiped");
	}
	if (err == OPAQUE_OK) {
		if (response.len != sz->registration_response) {
			fuzz_fail(HARNESS, "accepted a response of the wrong length");
		}
		if (opaque_registration_record_validate(f->config.suite, record,
		                                        sz->registration_record) != OPAQUE_OK) {
			fuzz_fail(HARNESS, "produced a record that does not validate");
		}
		if (is_real &&
		    (memcmp(record, f->registration_record, sz->registration_record) != 0 ||
		     memcmp(export_key, f->export_key, sz->export_key) != 0)) {
			fuzz_fail(HARNESS,
			          "the real response gave a different record or export_key");
		}
	} else {
		if (is_real) {
			fuzz_fail(HARNESS, "the real response was rejected");
		}
		fuzz_check_no_partial_output(HARNESS, "partial record after an error", record,
		                             sz->registration_record);
		fuzz_check_no_partial_output(HARNESS, "partial export_key after an error",
		                             export_key, sz->export_key);
	}
	fuzz_msg_free(&response);
	return 0;
}
