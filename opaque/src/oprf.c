/*
 * oprf.c - RFC 9497 OPRF mode (0x00): Blind, BlindEvaluate, Finalize, DeriveKeyPair and
 * HashToScalar, generic over the suite's group.
 *
 * Every element that arrives from outside is validated before use; the blind and derived
 * private keys are wiped on every path.
 */
#include <sodium.h>

#include "core.h"

#define MAX_INPUT_LEN 65535 /* inputs are length-prefixed with I2OSP(len, 2) */

opaque_err opaque_oprf_derive_key_pair_internal(const opaque_suite *suite, const uint8_t *seed,
                                                const uint8_t *info, size_t info_len,
                                                uint8_t *private_key, uint8_t *public_key)
{
	if (info_len > MAX_INPUT_LEN)
		return OPAQUE_ERR_ARGUMENT;
	const opaque_group *g = suite->group;
	/* deriveInput = seed || I2OSP(len(info), 2) || info; try counters 0..255 */
	const uint8_t info_len_be[2] = {(uint8_t)(info_len >> 8), (uint8_t)info_len};
	for (unsigned int counter = 0; counter <= 255; counter++) {
		const uint8_t counter_byte = (uint8_t)counter;
		opaque_slice parts[4] = {OPAQUE_SLICE(seed, OPAQUE_SEED_BYTES),
		                         OPAQUE_SLICE(info_len_be, 2), OPAQUE_SLICE(info, info_len),
		                         OPAQUE_SLICE(&counter_byte, 1)};
		opaque_err err = g->hash_to_scalar(parts, 4, suite->derive_key_pair_dst.data,
		                                   suite->derive_key_pair_dst.len, private_key);
		if (err != OPAQUE_OK) {
			sodium_memzero(private_key, g->scalar_len);
			return err;
		}
		if (!sodium_is_zero(private_key, g->scalar_len)) {
			if (public_key == NULL)
				return OPAQUE_OK;
			err = g->scalar_mult_base(private_key, public_key);
			if (err != OPAQUE_OK)
				sodium_memzero(private_key, g->scalar_len);
			return err;
		}
	}
	return OPAQUE_ERR_DERIVE_KEY_PAIR;
}

opaque_err opaque_oprf_blind_internal(const opaque_suite *suite, const uint8_t *input,
                                      size_t input_len, const uint8_t *blind,
                                      uint8_t *blinded_element)
{
	const opaque_group *g = suite->group;
	opaque_slice msg = OPAQUE_SLICE(input, input_len);
	opaque_err err = g->scalar_validate(blind);
	if (err != OPAQUE_OK)
		return err;
	return g->hash_to_group_mult(&msg, 1, suite->hash_to_group_dst.data,
	                             suite->hash_to_group_dst.len, blind, blinded_element);
}

opaque_err opaque_oprf_finalize_internal(const opaque_suite *suite, const uint8_t *input,
                                         size_t input_len, const uint8_t *blind,
                                         const uint8_t *evaluated_element, uint8_t *output)
{
	const opaque_group *g = suite->group;
	uint8_t inverse[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t unblinded[OPAQUE_MAX_ELEMENT_BYTES];
	opaque_err err;
	if (input_len > MAX_INPUT_LEN)
		return OPAQUE_ERR_ARGUMENT;
	OPAQUE_TRY(g->scalar_invert(blind, inverse));
	OPAQUE_TRY(g->scalar_mult(inverse, evaluated_element, unblinded)); /* validates it */
	/* Hash(I2OSP(len(input), 2) || input || I2OSP(len(unblinded), 2) || unblinded ||
	 *      "Finalize") */
	const uint8_t input_len_be[2] = {(uint8_t)(input_len >> 8), (uint8_t)input_len};
	const uint8_t element_len_be[2] = {0, (uint8_t)g->element_len};
	opaque_slice parts[5] = {OPAQUE_SLICE(input_len_be, 2), OPAQUE_SLICE(input, input_len),
	                         OPAQUE_SLICE(element_len_be, 2),
	                         OPAQUE_SLICE(unblinded, g->element_len),
	                         OPAQUE_SLICE_STR("Finalize")};
	opaque_hash(suite->hash, parts, 5, output);
done:
	sodium_memzero(inverse, sizeof(inverse));
	sodium_memzero(unblinded, sizeof(unblinded));
	return err;
}

/* ---- Public API: argument checks, then the internals above ---- */

static opaque_err check_suite(opaque_suite_id id, const opaque_suite **suite)
{
	*suite = opaque_suite_get(id);
	return *suite ? OPAQUE_OK : OPAQUE_ERR_ARGUMENT;
}

opaque_err opaque_oprf_blind_with_randomness(opaque_suite_id suite_id, const uint8_t *input,
                                             size_t input_len, const uint8_t *blind,
                                             size_t blind_len, uint8_t *blinded_element,
                                             size_t blinded_element_len)
{
	const opaque_suite *suite;
	if (check_suite(suite_id, &suite) != OPAQUE_OK || (input == NULL && input_len > 0) ||
	    blind == NULL || blinded_element == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (input_len > MAX_INPUT_LEN)
		return OPAQUE_ERR_ARGUMENT;
	if (blinded_element_len != suite->sizes.Noe)
		return OPAQUE_ERR_BUFFER;
	if (blind_len != suite->sizes.Ns)
		return OPAQUE_ERR_LENGTH;
	opaque_err err =
	    opaque_oprf_blind_internal(suite, input, input_len, blind, blinded_element);
	if (err != OPAQUE_OK)
		sodium_memzero(blinded_element, blinded_element_len);
	return err;
}

opaque_err opaque_oprf_blind(opaque_suite_id suite_id, const uint8_t *input, size_t input_len,
                             uint8_t *blind, size_t blind_len, uint8_t *blinded_element,
                             size_t blinded_element_len)
{
	const opaque_suite *suite;
	if (check_suite(suite_id, &suite) != OPAQUE_OK || blind == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (blind_len != suite->sizes.Ns)
		return OPAQUE_ERR_BUFFER;
	opaque_err err = suite->group->random_scalar(blind);
	if (err == OPAQUE_OK)
		err =
		    opaque_oprf_blind_with_randomness(suite_id, input, input_len, blind, blind_len,
		                                      blinded_element, blinded_element_len);
	if (err != OPAQUE_OK)
		sodium_memzero(blind, blind_len);
	return err;
}

opaque_err opaque_oprf_blind_evaluate(opaque_suite_id suite_id, const uint8_t *private_key,
                                      size_t private_key_len, const uint8_t *blinded_element,
                                      size_t blinded_element_len, uint8_t *evaluated_element,
                                      size_t evaluated_element_len)
{
	const opaque_suite *suite;
	if (check_suite(suite_id, &suite) != OPAQUE_OK || private_key == NULL ||
	    blinded_element == NULL || evaluated_element == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (evaluated_element_len != suite->sizes.Noe)
		return OPAQUE_ERR_BUFFER;
	if (private_key_len != suite->sizes.Ns)
		return OPAQUE_ERR_LENGTH;
	const opaque_group *g = suite->group;
	if (blinded_element_len != suite->sizes.Noe)
		return OPAQUE_ERR_LENGTH;
	opaque_err err = g->scalar_validate(private_key);
	if (err == OPAQUE_OK) /* the multiplication validates blinded_element */
		err = g->scalar_mult(private_key, blinded_element, evaluated_element);
	if (err != OPAQUE_OK)
		sodium_memzero(evaluated_element, evaluated_element_len);
	return err;
}

opaque_err opaque_oprf_finalize(opaque_suite_id suite_id, const uint8_t *input, size_t input_len,
                                const uint8_t *blind, size_t blind_len,
                                const uint8_t *evaluated_element, size_t evaluated_element_len,
                                uint8_t *output, size_t output_len)
{
	const opaque_suite *suite;
	if (check_suite(suite_id, &suite) != OPAQUE_OK || (input == NULL && input_len > 0) ||
	    blind == NULL || evaluated_element == NULL || output == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (output_len != suite->sizes.Nh)
		return OPAQUE_ERR_BUFFER;
	if (blind_len != suite->sizes.Ns || evaluated_element_len != suite->sizes.Noe)
		return OPAQUE_ERR_LENGTH;
	opaque_err err = suite->group->scalar_validate(blind);
	if (err == OPAQUE_OK)
		err = opaque_oprf_finalize_internal(suite, input, input_len, blind,
		                                    evaluated_element, output);
	if (err != OPAQUE_OK)
		sodium_memzero(output, output_len);
	return err;
}

opaque_err opaque_oprf_derive_key_pair(opaque_suite_id suite_id, const uint8_t *seed,
                                       size_t seed_len, const uint8_t *info, size_t info_len,
                                       uint8_t *private_key, size_t private_key_len,
                                       uint8_t *public_key, size_t public_key_len)
{
	const opaque_suite *suite;
	if (check_suite(suite_id, &suite) != OPAQUE_OK || seed == NULL ||
	    (info == NULL && info_len > 0) || private_key == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (private_key_len != suite->sizes.Ns ||
	    (public_key != NULL && public_key_len != suite->sizes.Noe))
		return OPAQUE_ERR_BUFFER;
	if (seed_len != OPAQUE_SEED_BYTES)
		return OPAQUE_ERR_LENGTH;
	opaque_err err = opaque_oprf_derive_key_pair_internal(suite, seed, info, info_len,
	                                                      private_key, public_key);
	if (err != OPAQUE_OK && public_key != NULL)
		sodium_memzero(public_key, public_key_len);
	return err;
}

opaque_err opaque_oprf_hash_to_scalar(opaque_suite_id suite_id, const uint8_t *input,
                                      size_t input_len, uint8_t *scalar, size_t scalar_len)
{
	const opaque_suite *suite;
	if (check_suite(suite_id, &suite) != OPAQUE_OK || (input == NULL && input_len > 0) ||
	    scalar == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (scalar_len != suite->sizes.Ns)
		return OPAQUE_ERR_BUFFER;
	opaque_slice msg = OPAQUE_SLICE(input, input_len);
	return suite->group->hash_to_scalar(&msg, 1, suite->hash_to_scalar_dst.data,
	                                    suite->hash_to_scalar_dst.len, scalar);
}
