/*
 * fuzz_ke1.c - fuzzes the server's parsing of KE1 in opaque_server_login_start with a valid
 * stored record, for both suites.
 */
#include "fuzz_common.h"

#include <string.h>

#define HARNESS "fuzz-ke1"

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
	fuzz_msg_t ke1;
	opaque_err err;
	int is_real;

	fuzz_msg_make(&ke1, data, size, sz->ke1, f->ke1);
	is_real = fuzz_msg_equals(&ke1, f->ke1, sz->ke1);
	memset(&state, FUZZ_SENTINEL, sizeof(state));
	memset(ke2, FUZZ_SENTINEL, sizeof(ke2));
	err = opaque_server_login_start_with_randomness(
	    &f->config, &f->soft.keys, &f->identities, f->credential_identifier,
	    f->credential_identifier_len, f->registration_record, sz->registration_record,
	    ke1.bytes, ke1.len, f->masking_nonce, f->server_nonce, f->server_keyshare_seed, &state,
	    ke2, sz->ke2);
	if (err == OPAQUE_OK) {
		if (ke1.len != sz->ke1) {
			fuzz_fail(HARNESS, "accepted a KE1 of the wrong length");
		}
		if (opaque_element_validate(f->config.suite, ke1.bytes, sz->Noe) != OPAQUE_OK ||
		    opaque_element_validate(f->config.suite, ke1.bytes + sz->Noe + sz->Nn,
		                            sz->Npk) != OPAQUE_OK) {
			fuzz_fail(HARNESS, "accepted a KE1 with an invalid element");
		}
		if (is_real && (memcmp(ke2, f->ke2, sz->ke2) != 0 ||
		                memcmp(state.expected_client_mac,
		                       f->server_state.expected_client_mac, sz->Nm) != 0 ||
		                memcmp(state.session_key, f->server_state.session_key,
		                       sz->session_key) != 0)) {
			fuzz_fail(HARNESS, "the real KE1 gave a different KE2 or server state");
		}
	} else {
		if (is_real) {
			fuzz_fail(HARNESS, "the real KE1 was rejected");
		}
		fuzz_check_no_partial_output(HARNESS, "partial expected_client_mac after an error",
		                             state.expected_client_mac,
		                             sizeof(state.expected_client_mac));
		fuzz_check_no_partial_output(HARNESS, "partial session_key after an error",
		                             state.session_key, sizeof(state.session_key));
	}
	opaque_server_login_state_wipe(&state);
	fuzz_msg_free(&ke1);
	return 0;
}
