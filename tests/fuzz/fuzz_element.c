/*
 * fuzz_element.c - fuzzes group element decoding through opaque_element_validate for both
 * suites, and checks that OPRF BlindEvaluate accepts exactly the elements it accepts. For
 * P-256 the core's decoder (its own square root) must accept exactly the 33-byte encodings
 * OpenSSL's EC_POINT_oct2point accepts.
 */
#include "fuzz_common.h"

#include "opaque/oprf.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
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
	if (suite == OPAQUE_SUITE_P256_SHA256 && element.len == 33) {
		static EC_GROUP *grp;
		if (grp == NULL)
			grp = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
		EC_POINT *pt = grp ? EC_POINT_new(grp) : NULL;
		if (pt == NULL)
			fuzz_fail(HARNESS, "out of memory");
		/* OpenSSL's only 33-byte encodings start with 02 or 03 (its identity is 00). */
		const int ossl = EC_POINT_oct2point(grp, pt, element.bytes, 33, NULL) == 1;
		ERR_clear_error();
		EC_POINT_free(pt);
		if (ossl != (valid == OPAQUE_OK))
			fuzz_fail(HARNESS, "the P-256 decoder and OpenSSL's oct2point disagree");
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
