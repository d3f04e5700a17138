/*
 * fuzz_ke2.c - fuzzes the client's parsing of KE2 in opaque_client_login_finish (after a real
 * opaque_client_login_start), for both suites. Only the server's real KE2 may succeed.
 */
#include "fuzz_common.h"

#include <string.h>

#define HARNESS "fuzz-ke2"

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
	opaque_client_login_state state = f->client_state;
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	fuzz_msg_t ke2;
	opaque_err err;
	int is_real;

	fuzz_msg_make(&ke2, data, size, sz->ke2, f->ke2);
	is_real = fuzz_msg_equals(&ke2, f->ke2, sz->ke2);
	memset(ke3, FUZZ_SENTINEL, sizeof(ke3));
	memset(session_key, FUZZ_SENTINEL, sizeof(session_key));
	memset(export_key, FUZZ_SENTINEL, sizeof(export_key));
	err = opaque_client_login_finish(&f->config, &state, f->password, f->password_len,
	                                 &f->identities, ke2.bytes, ke2.len, ke3, sz->ke3,
	                                 session_key, sz->session_key, export_key, sz->export_key);
	if (!fuzz_all(state.blind, sizeof(state.blind), 0) ||
	    !fuzz_all(state.client_secret, sizeof(state.client_secret), 0)) {
		fuzz_fail(HARNESS, "client login state not wiped");
	}
	if (err == OPAQUE_OK) {
		if (!is_real) {
			fuzz_fail(HARNESS, "accepted a KE2 that is not the server's");
		}
		if (memcmp(ke3, f->ke3, sz->ke3) != 0 ||
		    memcmp(session_key, f->session_key, sz->session_key) != 0 ||
		    memcmp(export_key, f->export_key, sz->export_key) != 0) {
			fuzz_fail(HARNESS, "the real KE2 gave a different KE3 or keys");
		}
	} else {
		if (is_real) {
			fuzz_fail(HARNESS, "the real KE2 was rejected");
		}
		fuzz_check_no_partial_output(HARNESS, "partial session_key after an error",
		                             session_key, sz->session_key);
		fuzz_check_no_partial_output(HARNESS, "partial export_key after an error",
		                             export_key, sz->export_key);
	}
	fuzz_msg_free(&ke2);
	return 0;
}
