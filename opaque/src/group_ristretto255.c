/*
 * group_ristretto255.c - the ristretto255 group (RFC 9496) through libsodium, as RFC 9497
 * uses it: HashToGroup = from_hash(expand_message_xmd SHA-512, 64 bytes), HashToScalar =
 * reduce(expand_message_xmd SHA-512, 64 bytes), scalars 32 bytes little-endian.
 *
 * libsodium's decoder accepts the identity and does not say why an encoding failed, so
 * element_validate classifies first: all-zero is the identity, s >= p or a negative s is
 * non-canonical, anything else that does not decode is off the curve.
 */
#include <sodium.h>

#include "core.h"

#define R255_BYTES        crypto_core_ristretto255_BYTES
#define R255_SCALAR_BYTES crypto_core_ristretto255_SCALARBYTES

/* p = 2^255 - 19 and the group order L, little-endian. */
static const uint8_t field_p[32] = {
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
static const uint8_t order_l[32] = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};

/* a < b for 32-byte little-endian numbers, without data-dependent branches. */
static int le_less_than(const uint8_t a[32], const uint8_t b[32])
{
	unsigned int lt = 0, eq = 1;
	for (size_t i = 32; i-- > 0;) {
		unsigned int x = a[i], y = b[i];
		lt |= eq & ((x - y) >> 8 & 1);
		eq &= ((x ^ y) - 1) >> 8 & 1;
	}
	return (int)lt;
}

/* The checks on an encoding that need no decoding: the identity, s >= p, a negative s.
 * (libsodium 1.0.18's decoder ignores the top bit, so s >= p must be checked here.) */
static opaque_err r255_encoding_validate(const uint8_t *e)
{
	if (sodium_is_zero(e, R255_BYTES))
		return OPAQUE_ERR_ELEMENT_IDENTITY;
	if (!le_less_than(e, field_p) || (e[0] & 1))
		return OPAQUE_ERR_ELEMENT_NONCANONICAL;
	return OPAQUE_OK;
}

static opaque_err r255_element_validate(const uint8_t *e, size_t len)
{
	if (len != R255_BYTES)
		return OPAQUE_ERR_LENGTH;
	const opaque_err err = r255_encoding_validate(e);
	if (err != OPAQUE_OK)
		return err;
	if (crypto_core_ristretto255_is_valid_point(e) != 1)
		return OPAQUE_ERR_ELEMENT_NOT_ON_CURVE;
	return OPAQUE_OK;
}

static opaque_err r255_scalar_validate(const uint8_t *k)
{
	if (sodium_is_zero(k, R255_SCALAR_BYTES) || !le_less_than(k, order_l))
		return OPAQUE_ERR_SCALAR;
	return OPAQUE_OK;
}

/* libsodium has no decoded form: "decoding" is the checks its decoder does not do, and the
 * multiplication decodes (and rejects what is not a point). */
static opaque_err r255_element_decode(const uint8_t *e, opaque_decoded *d)
{
	d->enc = e;
	d->point = NULL;
	return r255_encoding_validate(e);
}

static opaque_err r255_scalar_mult_decoded(const uint8_t *k, const opaque_decoded *d, uint8_t *out)
{
	if (crypto_scalarmult_ristretto255(out, k, d->enc) == 0)
		return OPAQUE_OK;
	sodium_memzero(out, R255_BYTES);
	return crypto_core_ristretto255_is_valid_point(d->enc) != 1
	           ? OPAQUE_ERR_ELEMENT_NOT_ON_CURVE
	           : OPAQUE_ERR_ELEMENT_IDENTITY;
}

/* The cheap checks first; the decoding is libsodium's, inside the multiplication, which
 * fails on an encoding that is not a point and on an identity result. Only then is e
 * decoded again, to tell which. */
static opaque_err r255_scalar_mult(const uint8_t *k, const uint8_t *e, uint8_t *out)
{
	opaque_decoded d;
	opaque_err err = r255_element_decode(e, &d);
	return err == OPAQUE_OK ? r255_scalar_mult_decoded(k, &d, out) : err;
}

static void r255_decoded_free(opaque_decoded *d)
{
	d->point = NULL;
}

static void r255_lend(const opaque_decoded *d)
{
	(void)d;
}

static opaque_err r255_scalar_mult_base(const uint8_t *k, uint8_t *out)
{
	if (crypto_scalarmult_ristretto255_base(out, k) != 0)
		return OPAQUE_ERR_SCALAR;
	return OPAQUE_OK;
}

static opaque_err r255_scalar_invert(const uint8_t *k, uint8_t *out)
{
	if (crypto_core_ristretto255_scalar_invert(out, k) != 0)
		return OPAQUE_ERR_SCALAR;
	return OPAQUE_OK;
}

static opaque_err r255_random_scalar(uint8_t *out)
{
	do {
		crypto_core_ristretto255_scalar_random(out);
	} while (sodium_is_zero(out, R255_SCALAR_BYTES));
	return OPAQUE_OK;
}

/* out = k * HashToGroup(msg), HashToGroup = from_hash(expand_message_xmd(msg, 64)). */
static opaque_err r255_hash_to_group_mult(const opaque_slice *msg, size_t nmsg, const uint8_t *dst,
                                          size_t dst_len, const uint8_t *k, uint8_t *out)
{
	uint8_t uniform[crypto_core_ristretto255_HASHBYTES];
	uint8_t point[R255_BYTES];
	opaque_err err = opaque_expand_message_xmd_parts(OPAQUE_HASH_SHA512, msg, nmsg, dst,
	                                                 dst_len, uniform, sizeof(uniform));
	if (err == OPAQUE_OK) {
		crypto_core_ristretto255_from_hash(point, uniform);
		if (sodium_is_zero(point, R255_BYTES))
			err = OPAQUE_ERR_INVALID_INPUT;
		else
			err = r255_scalar_mult(k, point, out);
	}
	sodium_memzero(uniform, sizeof(uniform));
	sodium_memzero(point, sizeof(point));
	return err;
}

static opaque_err r255_hash_to_scalar(const opaque_slice *msg, size_t nmsg, const uint8_t *dst,
                                      size_t dst_len, uint8_t *out)
{
	uint8_t uniform[crypto_core_ristretto255_NONREDUCEDSCALARBYTES];
	opaque_err err = opaque_expand_message_xmd_parts(OPAQUE_HASH_SHA512, msg, nmsg, dst,
	                                                 dst_len, uniform, sizeof(uniform));
	if (err == OPAQUE_OK)
		crypto_core_ristretto255_scalar_reduce(out, uniform);
	sodium_memzero(uniform, sizeof(uniform));
	return err;
}

const opaque_group opaque_group_ristretto255 = {
    .element_len = R255_BYTES,
    .scalar_len = R255_SCALAR_BYTES,
    .element_validate = r255_element_validate,
    .scalar_validate = r255_scalar_validate,
    .scalar_mult = r255_scalar_mult,
    .element_decode = r255_element_decode,
    .scalar_mult_decoded = r255_scalar_mult_decoded,
    .decoded_free = r255_decoded_free,
    .lend = r255_lend,
    .scalar_mult_base = r255_scalar_mult_base,
    .scalar_invert = r255_scalar_invert,
    .random_scalar = r255_random_scalar,
    .hash_to_group_mult = r255_hash_to_group_mult,
    .hash_to_scalar = r255_hash_to_scalar,
};
