/*
 * fuzz_ke3.c - fuzzes the server's check of KE3 in opaque_server_login_finish with a real
 * server login state, for both suites. Only the client's real KE3 may succeed.
 */
#include "fuzz_common.h"

#include <string.h>

#define HARNESS "fuzz-ke3"

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
	opaque_server_login_state state = f->server_state;
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	fuzz_msg_t ke3;
	opaque_err err;
	int is_real;

	fuzz_msg_make(&ke3, data, size, sz->ke3, f->ke3);
	is_real = fuzz_msg_equals(&ke3, f->ke3, sz->ke3);
	memset(session_key, FUZZ_SENTINEL, sizeof(session_key));
	err = opaque_server_login_finish(&state, ke3.bytes, ke3.len, session_key, sz->session_key);
	if (!fuzz_all(state.expected_client_mac, sizeof(state.expected_client_mac), 0) ||
	    !fuzz_all(state.session_key, sizeof(state.session_key), 0)) {
		fuzz_fail(HARNESS, "server login state not wiped");
	}
	if (err == OPAQUE_OK) {
		if (!is_real) {
			fuzz_fail(HARNESS, "accepted a KE3 that is not the client's");
		}
		if (memcmp(session_key, f->session_key, sz->session_key) != 0) {
			fuzz_fail(HARNESS, "the real KE3 gave a different session_key");
		}
	} else {
		if (is_real) {
			fuzz_fail(HARNESS, "the real KE3 was rejected");
		}
		fuzz_check_no_partial_output(HARNESS, "session_key written after an error",
		                             session_key, sz->session_key);
	}
	fuzz_msg_free(&ke3);
	return 0;
}
