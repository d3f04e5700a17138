/*
 * fuzz_element.c - fuzzes group element decoding through opaque_element_validate for both
 * suites, and checks that OPRF BlindEvaluate accepts exactly the elements it accepts.
 */
#include "fuzz_common.h"

#include "opaque/oprf.h"

#include <string.h>

#define HARNESS "fuzz-element"

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
	opaque_suite_id suite = f->config.suite;
	uint8_t evaluated[OPAQUE_MAX_ELEMENT_BYTES];
	fuzz_msg_t element;
	opaque_err valid, err;

	fuzz_msg_make(&element, data, size, sz->Noe, f->soft.keys.server_public_key);
	valid = opaque_element_validate(suite, element.bytes, element.len);
	if (valid == OPAQUE_OK && element.len != sz->Noe) {
		fuzz_fail(HARNESS, "validated an element of the wrong length");
	}
	if (fuzz_msg_equals(&element, f->soft.keys.server_public_key, sz->Npk) &&
	    valid != OPAQUE_OK) {
		fuzz_fail(HARNESS, "the server public key does not validate");
	}

	err = opaque_oprf_blind_evaluate(suite, f->server_private_key, sz->Ns, element.bytes,
	                                 element.len, evaluated, sz->Noe);
	if ((valid == OPAQUE_OK) != (err == OPAQUE_OK)) {
		fuzz_fail(HARNESS, "element_validate and oprf_blind_evaluate disagree");
	}
	if (err == OPAQUE_OK && opaque_element_validate(suite, evaluated, sz->Noe) != OPAQUE_OK) {
		fuzz_fail(HARNESS, "oprf_blind_evaluate produced an invalid element");
	}
	fuzz_msg_free(&element);
	return 0;
}
