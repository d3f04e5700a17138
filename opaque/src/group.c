/*
 * group.c - the suite table (RFC 9807 configurations, RFC 9497 context strings) and the
 * public element and key-pair helpers that dispatch to a suite's group.
 */
#include <sodium.h>

#include "core.h"

/* contextString = "OPRFV1-" || I2OSP(mode = 0x00, 1) || "-" || identifier (RFC 9497 3.1) */
#define P256_CONTEXT "OPRFV1-\x00-P256-SHA256"
#define R255_CONTEXT "OPRFV1-\x00-ristretto255-SHA512"

#define SIZES(noe, nh)                                                                             \
	{                                                                                          \
		.Noe = (noe), .Ns = 32, .Nh = (nh), .Npk = (noe), .Nsk = 32, .Nn = 32, .Nm = (nh), \
		.Nx = (nh), .Nok = 32, .Nseed = 32, .registration_request = (noe),                 \
		.registration_response = 2 * (noe),                                                \
		.registration_record = (noe) + (nh) + 32 + (nh), .envelope = 32 + (nh),            \
		.ke1 = (noe) + 32 + (noe),                                                         \
		.ke2 = (noe) + 32 + ((noe) + 32 + (nh)) + 32 + (noe) + (nh), .ke3 = (nh),          \
		.export_key = (nh), .session_key = (nh),                                           \
	}

static const opaque_suite suites[] = {
    {
        .id = OPAQUE_SUITE_P256_SHA256,
        .name = "P256-SHA256",
        .hash = OPAQUE_HASH_SHA256,
        .group = &opaque_group_p256,
        .sizes = SIZES(33, 32),
        .hash_to_group_dst = OPAQUE_SLICE_STR("HashToGroup-" P256_CONTEXT),
        .hash_to_scalar_dst = OPAQUE_SLICE_STR("HashToScalar-" P256_CONTEXT),
        .derive_key_pair_dst = OPAQUE_SLICE_STR("DeriveKeyPair" P256_CONTEXT),
    },
    {
        .id = OPAQUE_SUITE_RISTRETTO255_SHA512,
        .name = "ristretto255-SHA512",
        .hash = OPAQUE_HASH_SHA512,
        .group = &opaque_group_ristretto255,
        .sizes = SIZES(32, 64),
        .hash_to_group_dst = OPAQUE_SLICE_STR("HashToGroup-" R255_CONTEXT),
        .hash_to_scalar_dst = OPAQUE_SLICE_STR("HashToScalar-" R255_CONTEXT),
        .derive_key_pair_dst = OPAQUE_SLICE_STR("DeriveKeyPair" R255_CONTEXT),
    },
};

const opaque_suite *opaque_suite_get(opaque_suite_id id)
{
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (suites[i].id == id) {
			/* Idempotent and thread-safe; selects libsodium's fastest code paths. */
			if (sodium_init() < 0)
				return NULL;
			return &suites[i];
		}
	}
	return NULL;
}

const opaque_sizes *opaque_suite_sizes(opaque_suite_id suite)
{
	const opaque_suite *s = opaque_suite_get(suite);
	return s ? &s->sizes : NULL;
}

const char *opaque_suite_name(opaque_suite_id suite)
{
	const opaque_suite *s = opaque_suite_get(suite);
	return s ? s->name : "unknown suite";
}

opaque_err opaque_element_validate(opaque_suite_id suite, const uint8_t *element,
                                   size_t element_len)
{
	const opaque_suite *s = opaque_suite_get(suite);
	if (s == NULL || element == NULL)
		return OPAQUE_ERR_ARGUMENT;
	return s->group->element_validate(element, element_len);
}

opaque_err opaque_scalar_mult(opaque_suite_id suite, const uint8_t *scalar, size_t scalar_len,
                              const uint8_t *element, size_t element_len, uint8_t *out,
                              size_t out_len)
{
	const opaque_suite *s = opaque_suite_get(suite);
	if (s == NULL || scalar == NULL || element == NULL || out == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (out_len != s->group->element_len)
		return OPAQUE_ERR_BUFFER;
	if (scalar_len != s->group->scalar_len)
		return OPAQUE_ERR_LENGTH;
	if (element_len != s->group->element_len)
		return OPAQUE_ERR_LENGTH;
	opaque_err err = s->group->scalar_validate(scalar);
	if (err == OPAQUE_OK)
		err = s->group->scalar_mult(scalar, element, out); /* validates element */
	if (err != OPAQUE_OK)
		sodium_memzero(out, out_len);
	return err;
}

opaque_err opaque_generate_ake_key_pair(opaque_suite_id suite, uint8_t *private_key,
                                        size_t private_key_len, uint8_t *public_key,
                                        size_t public_key_len)
{
	const opaque_suite *s = opaque_suite_get(suite);
	if (s == NULL || private_key == NULL || public_key == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (private_key_len != s->sizes.Nsk || public_key_len != s->sizes.Npk)
		return OPAQUE_ERR_BUFFER;
	opaque_err err = s->group->random_scalar(private_key);
	if (err == OPAQUE_OK)
		err = s->group->scalar_mult_base(private_key, public_key);
	if (err != OPAQUE_OK) {
		sodium_memzero(private_key, private_key_len);
		sodium_memzero(public_key, public_key_len);
	}
	return err;
}

opaque_err opaque_kdf_expand(opaque_suite_id suite, const uint8_t *prk, size_t prk_len,
                             const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
	const opaque_suite *s = opaque_suite_get(suite);
	if (s == NULL || prk == NULL || (info == NULL && info_len > 0) || out == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (prk_len != s->sizes.Nh)
		return OPAQUE_ERR_LENGTH;
	opaque_slice part = OPAQUE_SLICE(info, info_len);
	return opaque_hkdf_expand(s->hash, prk, prk_len, &part, 1, out, out_len);
}
