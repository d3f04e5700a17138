/*
 * h2c.c - RFC 9380 for P-256: hash_to_field (section 5.2, L = 48) and the suite
 * P256_XMD:SHA-256_SSWU_RO_ (section 8.2) with the simplified SWU map (section 6.6.2,
 * straight-line form of appendix F.2).
 *
 * The input is the password, so the map runs without secret-dependent branches or
 * BN_mod_sqrt: p = 3 (mod 4), so the square root is x^((p+1)/4) and the square test
 * is the Legendre symbol x^((p-1)/2), both through BN_mod_exp_mont_consttime, and every
 * choice between two candidates is a masked select over fixed-width bytes. Field
 * multiplications use BN_mod_mul on fixed 256-bit operands.
 */
#include <openssl/err.h>
#include <sodium.h>

#include "core.h"
#include "p256.h"

#define FE_BYTES      32
#define L_BYTES       48 /* ceil((ceil(log2(p)) + k) / 8) with k = 128 */
#define H2C_MAX_COUNT 2

/* out = choose_b ? b : a, without branching on choose_b (0 or 1). */
static void ct_select(uint8_t *out, const uint8_t *a, const uint8_t *b, unsigned int choose_b)
{
	const uint8_t mask = (uint8_t)(0u - choose_b);
	for (size_t i = 0; i < FE_BYTES; i++)
		out[i] = (uint8_t)(a[i] ^ (mask & (a[i] ^ b[i])));
}

/* 1 if the 32-byte big-endian value equals small (0 or 1), else 0; no early exit. */
static unsigned int ct_equals_small(const uint8_t *v, uint8_t small)
{
	unsigned int acc = 0;
	for (size_t i = 0; i < FE_BYTES - 1; i++)
		acc |= v[i];
	acc |= (unsigned int)(v[FE_BYTES - 1] ^ small);
	return ((acc - 1) >> 8) & 1;
}

opaque_err opaque_p256_hash_to_field_parts(opaque_p256_field field, const opaque_slice *msg,
                                           size_t nmsg, const uint8_t *dst, size_t dst_len,
                                           size_t count, uint8_t *out)
{
	const p256_ctx *c = p256_get();
	if (c == NULL)
		return OPAQUE_ERR_CRYPTO;
	if (count == 0 || count > H2C_MAX_COUNT)
		return OPAQUE_ERR_ARGUMENT;
	const BIGNUM *modulus = field == OPAQUE_P256_FIELD_SCALAR ? c->n : c->p;

	uint8_t uniform[H2C_MAX_COUNT * L_BYTES];
	opaque_err err = opaque_expand_message_xmd_parts(OPAQUE_HASH_SHA256, msg, nmsg, dst,
	                                                 dst_len, uniform, count * L_BYTES);
	if (err != OPAQUE_OK)
		goto wipe;
	err = OPAQUE_ERR_CRYPTO;
	BN_CTX *bn = BN_CTX_secure_new();
	BIGNUM *t = BN_secure_new();
	BIGNUM *r = BN_secure_new();
	if (bn == NULL || t == NULL || r == NULL)
		goto done;
	BN_set_flags(t, BN_FLG_CONSTTIME);
	for (size_t i = 0; i < count; i++) {
		if (BN_bin2bn(uniform + i * L_BYTES, L_BYTES, t) == NULL ||
		    BN_mod(r, t, modulus, bn) != 1 ||
		    BN_bn2binpad(r, out + i * FE_BYTES, FE_BYTES) != FE_BYTES)
			goto done;
	}
	err = OPAQUE_OK;
done:
	ERR_clear_error();
	BN_clear_free(t);
	BN_clear_free(r);
	BN_CTX_free(bn);
wipe:
	sodium_memzero(uniform, sizeof(uniform));
	return err;
}

opaque_err opaque_p256_hash_to_field(opaque_p256_field field, const uint8_t *msg, size_t msg_len,
                                     const uint8_t *dst, size_t dst_len, size_t count, uint8_t *out)
{
	if ((msg == NULL && msg_len > 0) || dst == NULL || out == NULL)
		return OPAQUE_ERR_ARGUMENT;
	opaque_slice m = OPAQUE_SLICE(msg, msg_len);
	return opaque_p256_hash_to_field_parts(field, &m, 1, dst, dst_len, count, out);
}

/* gx = x^3 + A*x + B */
static int curve_rhs(BIGNUM *gx, const BIGNUM *x, const p256_ctx *c, BN_CTX *bn)
{
	BIGNUM *t = BN_CTX_get(bn);
	return t != NULL && BN_mod_sqr(t, x, c->p, bn) && BN_mod_add(t, t, c->a, c->p, bn) &&
	       BN_mod_mul(gx, t, x, c->p, bn) && BN_mod_add(gx, gx, c->b, c->p, bn);
}

static int to_bytes(const BIGNUM *v, uint8_t out[FE_BYTES])
{
	return BN_bn2binpad(v, out, FE_BYTES) == FE_BYTES;
}

opaque_err opaque_p256_map_to_curve(const uint8_t u_bytes[32], uint8_t out_xy[64])
{
	const p256_ctx *c = p256_get();
	if (c == NULL)
		return OPAQUE_ERR_CRYPTO;
	if (u_bytes == NULL || out_xy == NULL)
		return OPAQUE_ERR_ARGUMENT;

	opaque_err err = OPAQUE_ERR_CRYPTO;
	/* Byte images of the candidates, selected in constant time. */
	uint8_t x1_b[FE_BYTES], x2_b[FE_BYTES], gx1_b[FE_BYTES], gx2_b[FE_BYTES];
	uint8_t t_b[FE_BYTES], s_b[FE_BYTES], x_b[FE_BYTES], gx_b[FE_BYTES];
	uint8_t y_b[FE_BYTES], ny_b[FE_BYTES];
	BN_CTX *bn = BN_CTX_secure_new();
	if (bn == NULL)
		goto done;
	BN_CTX_start(bn);
	BIGNUM *u = BN_CTX_get(bn), *tv1 = BN_CTX_get(bn), *den = BN_CTX_get(bn);
	BIGNUM *inv = BN_CTX_get(bn), *x1 = BN_CTX_get(bn), *x2 = BN_CTX_get(bn);
	BIGNUM *gx1 = BN_CTX_get(bn), *gx2 = BN_CTX_get(bn), *t = BN_CTX_get(bn);
	BIGNUM *y = BN_CTX_get(bn);
	if (y == NULL || BN_bin2bn(u_bytes, FE_BYTES, u) == NULL)
		goto end;
	BN_set_flags(u, BN_FLG_CONSTTIME);

	/* tv1 = Z * u^2; den = tv1^2 + tv1 = Z^2 u^4 + Z u^2; inv = inv0(den) = den^(p-2) */
	if (!BN_mod_sqr(t, u, c->p, bn) || !BN_mod_mul(tv1, c->z, t, c->p, bn) ||
	    !BN_mod_sqr(den, tv1, c->p, bn) || !BN_mod_add(den, den, tv1, c->p, bn))
		goto end;
	BN_set_flags(den, BN_FLG_CONSTTIME);
	if (!BN_mod_exp_mont_consttime(inv, den, c->p_minus_2, c->p, bn, c->mont_p))
		goto end;
	/* x1 = (-B / A) * (1 + inv), or B / (Z * A) when inv = 0 */
	if (!BN_mod_add(t, inv, BN_value_one(), c->p, bn) ||
	    !BN_mod_mul(x1, c->minus_b_over_a, t, c->p, bn) || !to_bytes(x1, x1_b) ||
	    !to_bytes(inv, t_b) || !to_bytes(c->b_over_za, s_b))
		goto end;
	ct_select(x1_b, x1_b, s_b, ct_equals_small(t_b, 0));
	if (BN_bin2bn(x1_b, FE_BYTES, x1) == NULL)
		goto end;
	/* gx1 = x1^3 + A x1 + B; x2 = Z u^2 x1; gx2 = x2^3 + A x2 + B */
	if (!curve_rhs(gx1, x1, c, bn) || !BN_mod_mul(x2, tv1, x1, c->p, bn) ||
	    !curve_rhs(gx2, x2, c, bn))
		goto end;
	/* e1 = is_square(gx1): the Legendre symbol gx1^((p-1)/2) is 0 or 1 */
	BN_set_flags(gx1, BN_FLG_CONSTTIME);
	if (!BN_mod_exp_mont_consttime(t, gx1, c->p_minus_1_half, c->p, bn, c->mont_p) ||
	    !to_bytes(t, t_b))
		goto end;
	const unsigned int e1 = ct_equals_small(t_b, 0) | ct_equals_small(t_b, 1);
	/* (x, gx) = e1 ? (x1, gx1) : (x2, gx2); y = sqrt(gx) = gx^((p+1)/4) */
	if (!to_bytes(x2, x2_b) || !to_bytes(gx1, gx1_b) || !to_bytes(gx2, gx2_b))
		goto end;
	ct_select(x_b, x2_b, x1_b, e1);
	ct_select(gx_b, gx2_b, gx1_b, e1);
	if (BN_bin2bn(gx_b, FE_BYTES, t) == NULL)
		goto end;
	BN_set_flags(t, BN_FLG_CONSTTIME);
	if (!BN_mod_exp_mont_consttime(y, t, c->p_plus_1_quarter, c->p, bn, c->mont_p) ||
	    !to_bytes(y, y_b) || !BN_mod_sub(t, c->p, y, c->p, bn) || !to_bytes(t, ny_b))
		goto end;
	/* sgn0(y) must equal sgn0(u) */
	ct_select(y_b, y_b, ny_b, (unsigned int)((u_bytes[FE_BYTES - 1] ^ y_b[FE_BYTES - 1]) & 1));
	memcpy(out_xy, x_b, FE_BYTES);
	memcpy(out_xy + FE_BYTES, y_b, FE_BYTES);
	err = OPAQUE_OK;
end:
	BN_CTX_end(bn);
done:
	ERR_clear_error();
	BN_CTX_free(bn);
	sodium_memzero(x1_b, sizeof(x1_b));
	sodium_memzero(x2_b, sizeof(x2_b));
	sodium_memzero(gx1_b, sizeof(gx1_b));
	sodium_memzero(gx2_b, sizeof(gx2_b));
	sodium_memzero(t_b, sizeof(t_b));
	sodium_memzero(s_b, sizeof(s_b));
	sodium_memzero(x_b, sizeof(x_b));
	sodium_memzero(gx_b, sizeof(gx_b));
	sodium_memzero(y_b, sizeof(y_b));
	sodium_memzero(ny_b, sizeof(ny_b));
	return err;
}

static int point_from_xy(const p256_ctx *c, EC_POINT *pt, const uint8_t xy[64], BN_CTX *bn)
{
	BN_CTX_start(bn);
	BIGNUM *x = BN_CTX_get(bn), *y = BN_CTX_get(bn);
	int ok = y != NULL && BN_bin2bn(xy, FE_BYTES, x) != NULL &&
	         BN_bin2bn(xy + FE_BYTES, FE_BYTES, y) != NULL &&
	         EC_POINT_set_affine_coordinates(c->group, pt, x, y, bn) == 1;
	BN_CTX_end(bn);
	return ok;
}

opaque_err opaque_p256_hash_to_curve_parts(const opaque_slice *msg, size_t nmsg, const uint8_t *dst,
                                           size_t dst_len, uint8_t out_xy[64])
{
	const p256_ctx *c = p256_get();
	if (c == NULL)
		return OPAQUE_ERR_CRYPTO;
	uint8_t u[2 * FE_BYTES];
	uint8_t q[2][64];
	EC_POINT *q0 = NULL, *q1 = NULL;
	BN_CTX *bn = NULL;
	opaque_err err;
	OPAQUE_TRY(
	    opaque_p256_hash_to_field_parts(OPAQUE_P256_FIELD_BASE, msg, nmsg, dst, dst_len, 2, u));
	OPAQUE_TRY(opaque_p256_map_to_curve(u, q[0]));
	OPAQUE_TRY(opaque_p256_map_to_curve(u + FE_BYTES, q[1]));
	err = OPAQUE_ERR_CRYPTO;
	bn = BN_CTX_secure_new();
	q0 = EC_POINT_new(c->group);
	q1 = EC_POINT_new(c->group);
	if (bn == NULL || q0 == NULL || q1 == NULL || !point_from_xy(c, q0, q[0], bn) ||
	    !point_from_xy(c, q1, q[1], bn) || EC_POINT_add(c->group, q0, q0, q1, bn) != 1)
		goto done;
	/* The cofactor of P-256 is 1, so clear_cofactor is the identity map. */
	if (EC_POINT_is_at_infinity(c->group, q0))
		OPAQUE_FAIL(OPAQUE_ERR_INVALID_INPUT);
	BN_CTX_start(bn);
	BIGNUM *x = BN_CTX_get(bn), *y = BN_CTX_get(bn);
	int ok = y != NULL && EC_POINT_get_affine_coordinates(c->group, q0, x, y, bn) == 1 &&
	         to_bytes(x, out_xy) && to_bytes(y, out_xy + FE_BYTES);
	BN_CTX_end(bn);
	if (ok)
		err = OPAQUE_OK;
done:
	ERR_clear_error();
	EC_POINT_clear_free(q0);
	EC_POINT_clear_free(q1);
	BN_CTX_free(bn);
	sodium_memzero(u, sizeof(u));
	sodium_memzero(q, sizeof(q));
	return err;
}

opaque_err opaque_p256_hash_to_curve(const uint8_t *msg, size_t msg_len, const uint8_t *dst,
                                     size_t dst_len, uint8_t out_xy[64])
{
	if ((msg == NULL && msg_len > 0) || dst == NULL || out_xy == NULL)
		return OPAQUE_ERR_ARGUMENT;
	opaque_slice m = OPAQUE_SLICE(msg, msg_len);
	return opaque_p256_hash_to_curve_parts(&m, 1, dst, dst_len, out_xy);
}
