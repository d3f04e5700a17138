/*
 * group_p256.c - the P-256 group through OpenSSL 3, as RFC 9497 (P256-SHA256) uses it:
 * compressed 33-byte elements, 32-byte big-endian scalars, HashToGroup =
 * P256_XMD:SHA-256_SSWU_RO_ (h2c.c), HashToScalar = hash_to_field mod n.
 *
 * Secret scalars are multiplied with BN_FLG_CONSTTIME set, which routes OpenSSL to its
 * constant-time ladder, and inverted by Fermat with BN_mod_exp_mont_consttime. Every
 * BN_CTX that touches a secret is a secure one, so its numbers are cleared when freed.
 */
#include <pthread.h>

#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <sodium.h>

#include "core.h"
#include "p256.h"

#define P256_ELEMENT_BYTES 33
#define P256_SCALAR_BYTES  32

static p256_ctx shared_ctx;
static const p256_ctx *shared_ctx_ptr;
static pthread_once_t shared_ctx_once = PTHREAD_ONCE_INIT;

static int bn_mod_inverse_prime(BIGNUM *r, const BIGNUM *a, const BIGNUM *p, BN_CTX *bn)
{
	BIGNUM *e = BN_CTX_get(bn);
	return e != NULL && BN_sub(e, p, BN_value_one()) && BN_sub(e, e, BN_value_one()) &&
	       BN_mod_exp(r, a, e, p, bn);
}

static void shared_ctx_init(void)
{
	p256_ctx *c = &shared_ctx;
	BN_CTX *bn = BN_CTX_new();
	if (bn == NULL)
		return;
	BN_CTX_start(bn);
	BIGNUM *t = BN_CTX_get(bn);
	c->group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	c->p = BN_new();
	c->n = BN_new();
	c->a = BN_new();
	c->b = BN_new();
	c->z = BN_new();
	c->minus_b_over_a = BN_new();
	c->b_over_za = BN_new();
	c->p_minus_2 = BN_new();
	c->p_minus_1_half = BN_new();
	c->p_plus_1_quarter = BN_new();
	c->n_minus_2 = BN_new();
	c->mont_p = BN_MONT_CTX_new();
	c->mont_n = BN_MONT_CTX_new();
	int ok = t != NULL && c->group != NULL && c->p != NULL && c->n != NULL && c->a != NULL &&
	         c->b != NULL && c->z != NULL && c->minus_b_over_a != NULL &&
	         c->b_over_za != NULL && c->p_minus_2 != NULL && c->p_minus_1_half != NULL &&
	         c->p_plus_1_quarter != NULL && c->n_minus_2 != NULL && c->mont_p != NULL &&
	         c->mont_n != NULL;
	ok = ok && EC_GROUP_get_curve(c->group, c->p, c->a, c->b, bn) &&
	     BN_copy(c->n, EC_GROUP_get0_order(c->group)) != NULL &&
	     BN_MONT_CTX_set(c->mont_p, c->p, bn) && BN_MONT_CTX_set(c->mont_n, c->n, bn);
	/* Z = -10 */
	ok = ok && BN_set_word(t, 10) && BN_sub(c->z, c->p, t);
	/* -B / A */
	ok = ok && bn_mod_inverse_prime(t, c->a, c->p, bn) &&
	     BN_mod_mul(c->minus_b_over_a, c->b, t, c->p, bn) &&
	     BN_sub(c->minus_b_over_a, c->p, c->minus_b_over_a);
	/* B / (Z * A) */
	ok = ok && BN_mod_mul(t, c->z, c->a, c->p, bn) && bn_mod_inverse_prime(t, t, c->p, bn) &&
	     BN_mod_mul(c->b_over_za, c->b, t, c->p, bn);
	ok = ok && BN_sub(c->p_minus_2, c->p, BN_value_one()) &&
	     BN_sub(c->p_minus_2, c->p_minus_2, BN_value_one());
	ok = ok && BN_sub(c->p_minus_1_half, c->p, BN_value_one()) &&
	     BN_rshift1(c->p_minus_1_half, c->p_minus_1_half);
	ok = ok && BN_add(c->p_plus_1_quarter, c->p, BN_value_one()) &&
	     BN_rshift(c->p_plus_1_quarter, c->p_plus_1_quarter, 2);
	ok = ok && BN_sub(c->n_minus_2, c->n, BN_value_one()) &&
	     BN_sub(c->n_minus_2, c->n_minus_2, BN_value_one());
	BN_CTX_end(bn);
	BN_CTX_free(bn);
	if (ok)
		shared_ctx_ptr = c;
}

const p256_ctx *p256_get(void)
{
	pthread_once(&shared_ctx_once, shared_ctx_init);
	return shared_ctx_ptr;
}

/* Decodes and validates a compressed element into pt: x < p, then y = (x^3 + ax + b)^((p+1)/4)
 * (p = 3 mod 4) with the shared Montgomery context, given the parity the prefix asks for.
 * EC_POINT_set_affine_coordinates checks the curve equation, which is what rejects an x with
 * no square root: that is the one on-curve check. (OpenSSL's set_compressed_coordinates
 * does the same work but sets up a Montgomery context per call, and checks y^2 twice.) The
 * element is public, so variable time is fine here. */
static opaque_err p256_decode(const p256_ctx *c, const uint8_t *e, size_t len, EC_POINT *pt,
                              BN_CTX *bn)
{
	if (len != P256_ELEMENT_BYTES)
		return OPAQUE_ERR_LENGTH;
	if (sodium_is_zero(e, len))
		return OPAQUE_ERR_ELEMENT_IDENTITY;
	if (e[0] != 0x02 && e[0] != 0x03)
		return OPAQUE_ERR_ELEMENT_NONCANONICAL;
	opaque_err err = OPAQUE_ERR_CRYPTO;
	BN_CTX_start(bn);
	BIGNUM *x = BN_CTX_get(bn), *rhs = BN_CTX_get(bn), *y = BN_CTX_get(bn);
	if (y == NULL || BN_bin2bn(e + 1, 32, x) == NULL)
		goto done;
	if (BN_cmp(x, c->p) >= 0) {
		err = OPAQUE_ERR_ELEMENT_NONCANONICAL;
		goto done;
	}
	if (!BN_mod_sqr(rhs, x, c->p, bn) || !BN_mod_add(rhs, rhs, c->a, c->p, bn) ||
	    !BN_mod_mul(rhs, rhs, x, c->p, bn) || !BN_mod_add(rhs, rhs, c->b, c->p, bn) ||
	    !BN_mod_exp_mont(y, rhs, c->p_plus_1_quarter, c->p, bn, c->mont_p))
		goto done;
	/* y = 0 would be a point of order 2, which P-256 (prime order) does not have; and
	 * p - 0 is not a field element. */
	if (BN_is_zero(y) && (e[0] & 1)) {
		err = OPAQUE_ERR_ELEMENT_NOT_ON_CURVE;
		goto done;
	}
	if (BN_is_odd(y) != (e[0] & 1) && !BN_sub(y, c->p, y))
		goto done;
	if (EC_POINT_set_affine_coordinates(c->group, pt, x, y, bn) != 1) {
		err = OPAQUE_ERR_ELEMENT_NOT_ON_CURVE;
		goto done;
	}
	err = OPAQUE_OK;
done:
	ERR_clear_error();
	BN_CTX_end(bn);
	return err;
}

static opaque_err p256_encode(const p256_ctx *c, const EC_POINT *pt, uint8_t *out, BN_CTX *bn)
{
	if (EC_POINT_is_at_infinity(c->group, pt))
		return OPAQUE_ERR_ELEMENT_IDENTITY;
	if (EC_POINT_point2oct(c->group, pt, POINT_CONVERSION_COMPRESSED, out, P256_ELEMENT_BYTES,
	                       bn) != P256_ELEMENT_BYTES) {
		ERR_clear_error();
		return OPAQUE_ERR_CRYPTO;
	}
	return OPAQUE_OK;
}

/* Decodes and validates e into a new affine point (d->point); d->enc = e. */
static opaque_err p256_element_decode(const uint8_t *e, opaque_decoded *d)
{
	const p256_ctx *c = p256_get();
	d->enc = e;
	d->point = NULL;
	if (c == NULL)
		return OPAQUE_ERR_CRYPTO;
	BN_CTX *bn = BN_CTX_new(); /* the element is public: no secure context needed */
	EC_POINT *pt = EC_POINT_new(c->group);
	opaque_err err = OPAQUE_ERR_CRYPTO;
	if (bn != NULL && pt != NULL)
		err = p256_decode(c, e, P256_ELEMENT_BYTES, pt, bn);
	BN_CTX_free(bn);
	if (err == OPAQUE_OK)
		d->point = pt;
	else
		EC_POINT_free(pt);
	return err;
}

static void p256_decoded_free(opaque_decoded *d)
{
	EC_POINT_free(d->point);
	d->point = NULL;
}

static opaque_err p256_element_validate(const uint8_t *e, size_t len)
{
	if (len != P256_ELEMENT_BYTES)
		return OPAQUE_ERR_LENGTH;
	opaque_decoded d;
	opaque_err err = p256_element_decode(e, &d);
	p256_decoded_free(&d);
	return err;
}

/* Big-endian scalar in [1, n). */
static opaque_err p256_scalar_validate(const uint8_t *k)
{
	static const uint8_t order[32] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	                                  0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	                                  0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
	unsigned int lt = 0, eq = 1;
	for (size_t i = 0; i < 32; i++) {
		unsigned int x = k[i], y = order[i];
		lt |= eq & ((x - y) >> 8 & 1);
		eq &= ((x ^ y) - 1) >> 8 & 1;
	}
	if (!lt || sodium_is_zero(k, P256_SCALAR_BYTES))
		return OPAQUE_ERR_SCALAR;
	return OPAQUE_OK;
}

/* out = k * pt, or k * G when pt is NULL. The scalar is marked BN_FLG_CONSTTIME. */
static opaque_err p256_mult_point(const p256_ctx *c, const uint8_t *k, const EC_POINT *pt,
                                  uint8_t *out, BN_CTX *bn)
{
	opaque_err err = OPAQUE_ERR_CRYPTO;
	EC_POINT *r = EC_POINT_new(c->group);
	BIGNUM *scalar = BN_secure_new();
	if (r == NULL || scalar == NULL || BN_bin2bn(k, P256_SCALAR_BYTES, scalar) == NULL)
		goto done;
	BN_set_flags(scalar, BN_FLG_CONSTTIME);
	if (pt != NULL ? EC_POINT_mul(c->group, r, NULL, pt, scalar, bn) != 1
	               : EC_POINT_mul(c->group, r, scalar, NULL, NULL, bn) != 1)
		goto done;
	err = p256_encode(c, r, out, bn);
done:
	ERR_clear_error();
	BN_clear_free(scalar);
	EC_POINT_clear_free(r);
	return err;
}

static opaque_err p256_scalar_mult_decoded(const uint8_t *k, const opaque_decoded *d, uint8_t *out)
{
	const p256_ctx *c = p256_get();
	if (c == NULL || d->point == NULL)
		return OPAQUE_ERR_CRYPTO;
	BN_CTX *bn = BN_CTX_secure_new();
	opaque_err err = bn ? p256_mult_point(c, k, d->point, out, bn) : OPAQUE_ERR_CRYPTO;
	BN_CTX_free(bn);
	return err;
}

/* The element lent by this thread's KE2 (opaque_group.lend), or NULL. */
static _Thread_local const opaque_decoded *lent;

static void p256_lend(const opaque_decoded *d)
{
	lent = d;
}

bool opaque_p256_lent_uncompressed(const uint8_t peer[33], uint8_t out[65])
{
	memset(out, 0, 65);
	const opaque_decoded *l = lent;
	const p256_ctx *c = p256_get();
	if (c == NULL || l == NULL || l->point == NULL ||
	    memcmp(l->enc, peer, P256_ELEMENT_BYTES) != 0)
		return false;
	BN_CTX *bn = BN_CTX_new();
	const bool ok =
	    bn != NULL && EC_POINT_point2oct(c->group, l->point, POINT_CONVERSION_UNCOMPRESSED, out,
	                                     65, bn) == 65;
	BN_CTX_free(bn);
	if (!ok)
		memset(out, 0, 65);
	return ok;
}

static opaque_err p256_scalar_mult(const uint8_t *k, const uint8_t *element, uint8_t *out)
{
	/* The same bytes decode to the same point: reuse the lent decoding (the encoding is
	 * public, so comparing it in variable time leaks nothing). */
	const opaque_decoded *l = lent;
	if (l != NULL && l->point != NULL && memcmp(l->enc, element, P256_ELEMENT_BYTES) == 0)
		return p256_scalar_mult_decoded(k, l, out);
	opaque_decoded d;
	opaque_err err = p256_element_decode(element, &d);
	if (err == OPAQUE_OK)
		err = p256_scalar_mult_decoded(k, &d, out);
	p256_decoded_free(&d);
	return err;
}

static opaque_err p256_scalar_mult_base(const uint8_t *k, uint8_t *out)
{
	const p256_ctx *c = p256_get();
	if (c == NULL)
		return OPAQUE_ERR_CRYPTO;
	BN_CTX *bn = BN_CTX_secure_new();
	opaque_err err = bn ? p256_mult_point(c, k, NULL, out, bn) : OPAQUE_ERR_CRYPTO;
	BN_CTX_free(bn);
	return err;
}

static opaque_err p256_scalar_invert(const uint8_t *k, uint8_t *out)
{
	const p256_ctx *c = p256_get();
	if (c == NULL)
		return OPAQUE_ERR_CRYPTO;
	opaque_err err = p256_scalar_validate(k);
	if (err != OPAQUE_OK)
		return err;
	err = OPAQUE_ERR_CRYPTO;
	BN_CTX *bn = BN_CTX_secure_new();
	BIGNUM *a = BN_secure_new();
	BIGNUM *r = BN_secure_new();
	if (bn == NULL || a == NULL || r == NULL || BN_bin2bn(k, P256_SCALAR_BYTES, a) == NULL)
		goto done;
	BN_set_flags(a, BN_FLG_CONSTTIME);
	/* k^(n-2) mod n, constant time. */
	if (BN_mod_exp_mont_consttime(r, a, c->n_minus_2, c->n, bn, c->mont_n) != 1 ||
	    BN_bn2binpad(r, out, P256_SCALAR_BYTES) != P256_SCALAR_BYTES)
		goto done;
	err = OPAQUE_OK;
done:
	ERR_clear_error();
	BN_clear_free(a);
	BN_clear_free(r);
	BN_CTX_free(bn);
	return err;
}

static opaque_err p256_random_scalar(uint8_t *out)
{
	/* Rejection sampling: uniform in [1, n); n is close to 2^256 so retries are rare. */
	do {
		opaque_random_bytes(out, P256_SCALAR_BYTES);
	} while (p256_scalar_validate(out) != OPAQUE_OK);
	return OPAQUE_OK;
}

/* out = k * HashToGroup(msg). The hashed point stays affine (x, y) all the way into the
 * multiplication: re-encoding and decompressing it would run OpenSSL's variable-time
 * square root on a value derived from the password. */
static opaque_err p256_hash_to_group_mult(const opaque_slice *msg, size_t nmsg, const uint8_t *dst,
                                          size_t dst_len, const uint8_t *k, uint8_t *out)
{
	const p256_ctx *c = p256_get();
	if (c == NULL)
		return OPAQUE_ERR_CRYPTO;
	uint8_t xy[64];
	opaque_err err;
	BN_CTX *bn = NULL;
	EC_POINT *pt = NULL;
	OPAQUE_TRY(opaque_p256_hash_to_curve_parts(msg, nmsg, dst, dst_len, xy));
	err = OPAQUE_ERR_CRYPTO;
	bn = BN_CTX_secure_new();
	pt = EC_POINT_new(c->group);
	if (bn == NULL || pt == NULL)
		goto done;
	BN_CTX_start(bn);
	BIGNUM *x = BN_CTX_get(bn), *y = BN_CTX_get(bn);
	int ok = y != NULL && BN_bin2bn(xy, 32, x) != NULL && BN_bin2bn(xy + 32, 32, y) != NULL &&
	         EC_POINT_set_affine_coordinates(c->group, pt, x, y, bn) == 1;
	BN_CTX_end(bn);
	if (ok)
		err = p256_mult_point(c, k, pt, out, bn);
done:
	ERR_clear_error();
	EC_POINT_clear_free(pt);
	BN_CTX_free(bn);
	sodium_memzero(xy, sizeof(xy));
	return err;
}

static opaque_err p256_hash_to_scalar(const opaque_slice *msg, size_t nmsg, const uint8_t *dst,
                                      size_t dst_len, uint8_t *out)
{
	return opaque_p256_hash_to_field_parts(OPAQUE_P256_FIELD_SCALAR, msg, nmsg, dst, dst_len, 1,
	                                       out);
}

const opaque_group opaque_group_p256 = {
    .element_len = P256_ELEMENT_BYTES,
    .scalar_len = P256_SCALAR_BYTES,
    .element_validate = p256_element_validate,
    .scalar_validate = p256_scalar_validate,
    .scalar_mult = p256_scalar_mult,
    .element_decode = p256_element_decode,
    .scalar_mult_decoded = p256_scalar_mult_decoded,
    .decoded_free = p256_decoded_free,
    .lend = p256_lend,
    .scalar_mult_base = p256_scalar_mult_base,
    .scalar_invert = p256_scalar_invert,
    .random_scalar = p256_random_scalar,
    .hash_to_group_mult = p256_hash_to_group_mult,
    .hash_to_scalar = p256_hash_to_scalar,
};
