/*
 * fuzz_registration_request.c - fuzzes the server's parsing of a RegistrationRequest in
 * opaque_server_registration_response, for both suites.
 */
#include "fuzz_common.h"

#include <string.h>

#define HARNESS "fuzz-registration-request"

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
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	fuzz_msg_t request;
	opaque_err err;

	fuzz_msg_make(&request, data, size, sz->registration_request, f->registration_request);
	memset(response, FUZZ_SENTINEL, sizeof(response));
	err = opaque_server_registration_response(
	    &f->config, &f->soft.keys, f->credential_identifier, f->credential_identifier_len,
	    request.bytes, request.len, response, sz->registration_response);
	if (err == OPAQUE_OK) {
		if (request.len != sz->registration_request) {
			fuzz_fail(HARNESS, "accepted a request of the wrong length");
		}
		if (opaque_element_validate(f->config.suite, response, sz->Noe) != OPAQUE_OK) {
			fuzz_fail(HARNESS, "evaluated_element does not validate");
		}
		if (memcmp(response + sz->Noe, f->soft.keys.server_public_key, sz->Npk) != 0) {
			fuzz_fail(HARNESS, "server_public_key in the response is wrong");
		}
		if (fuzz_msg_equals(&request, f->registration_request, sz->registration_request) &&
		    memcmp(response, f->registration_response, sz->registration_response) != 0) {
			fuzz_fail(HARNESS, "the real request gave a different response");
		}
	} else if (fuzz_msg_equals(&request, f->registration_request, sz->registration_request)) {
		fuzz_fail(HARNESS, "the real request was rejected");
	}
	fuzz_msg_free(&request);
	return 0;
}
