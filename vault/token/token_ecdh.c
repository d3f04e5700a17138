/*
 * token_ecdh.c - P-256 Diffie-Hellman with a token that returns only the x-coordinate.
 *
 * CKM_ECDH1_DERIVE with CKD_NULL yields x(sk * P). RFC 9807's 3DH needs the whole point
 * Q = sk * P, and x alone leaves two candidates, (x, y) and (x, -y). A second derivation
 * on the shifted point P + G gives x(Q + S), with S = sk * G the public key; exactly one
 * candidate C has x(C + S) equal to it (the other would need 2S = 0 or y = 0). When
 * P = -G the shift would hit the identity, so P + 2G and 2S are used instead.
 *
 * Points reaching the token are validated first: SoftHSM answers an off-curve point with
 * CKR_GENERAL_ERROR, which would look like a token failure.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <sodium.h>

#include "token_internal.h"
#include "token_ecdh.h"

bkv_token_err token_ecdh_x(bkv_token *t, CK_OBJECT_HANDLE private_key,
                           const uint8_t peer_uncompressed[P256_UNCOMPRESSED_BYTES], uint8_t x[32])
{
	CK_ECDH1_DERIVE_PARAMS params = {
	    .kdf = CKD_NULL,
	    .pSharedData = NULL,
	    .ulSharedDataLen = 0,
	    .pPublicData = (CK_BYTE_PTR)peer_uncompressed,
	    .ulPublicDataLen = P256_UNCOMPRESSED_BYTES,
	};
	CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &params, sizeof(params)};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_ULONG len = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, &no, sizeof(no)},
	    {CKA_SENSITIVE, &no, sizeof(no)},   {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	};
	CK_OBJECT_HANDLE derived;
	const uint64_t started = token_now_us();
	CK_RV rv = t->fn->C_DeriveKey(t->session, &mech, private_key, tmpl,
	                              sizeof(tmpl) / sizeof(tmpl[0]), &derived);
	if (rv != CKR_OK)
		return token_rv(t, rv);
	CK_ATTRIBUTE value = {CKA_VALUE, x, 32};
	rv = t->fn->C_GetAttributeValue(t->session, derived, &value, 1);
	t->fn->C_DestroyObject(t->session, derived);
	token_observe(t, BKV_TOKEN_OP_ECDH, started);
	if (rv == CKR_OK && value.ulValueLen != 32)
		rv = CKR_GENERAL_ERROR;
	if (rv != CKR_OK) {
		sodium_memzero(x, 32);
		return token_rv(t, rv);
	}
	return BKV_TOKEN_OK;
}

/* P-256 and the constants the recovery needs, built once and read-only afterwards. */
typedef struct p256_curve {
	EC_GROUP *group;
	BIGNUM *p, *a, *b;
	BIGNUM *sqrt_exponent; /* (p + 1) / 4: p = 3 (mod 4) */
	BN_MONT_CTX *mont;
} p256_curve;

static p256_curve curve;
static bool curve_ok;
static pthread_once_t curve_once = PTHREAD_ONCE_INIT;

static void curve_init(void)
{
	BN_CTX *bn = BN_CTX_new();
	curve.group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	curve.p = BN_new();
	curve.a = BN_new();
	curve.b = BN_new();
	curve.sqrt_exponent = BN_new();
	curve.mont = BN_MONT_CTX_new();
	curve_ok = bn != NULL && curve.group != NULL && curve.p != NULL && curve.a != NULL &&
	           curve.b != NULL && curve.sqrt_exponent != NULL && curve.mont != NULL &&
	           EC_GROUP_get_curve(curve.group, curve.p, curve.a, curve.b, bn) == 1 &&
	           BN_add(curve.sqrt_exponent, curve.p, BN_value_one()) == 1 &&
	           BN_rshift(curve.sqrt_exponent, curve.sqrt_exponent, 2) == 1 &&
	           BN_MONT_CTX_set(curve.mont, curve.p, bn) == 1;
	BN_CTX_free(bn);
}

static int point_to_uncompressed(const EC_GROUP *g, const EC_POINT *p, uint8_t out[65], BN_CTX *bn)
{
	return EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, out, 65, bn) == 65;
}

/* c = (x, y) with y = (x^3 + ax + b)^((p+1)/4): the shared secret's x never meets
 * BN_mod_sqrt's variable-time square root. *y_odd receives y's parity. */
static int point_from_secret_x(const uint8_t x[32], EC_POINT *c, uint8_t *y_odd, BN_CTX *bn)
{
	BN_CTX_start(bn);
	BIGNUM *xb = BN_CTX_get(bn), *rhs = BN_CTX_get(bn), *y = BN_CTX_get(bn);
	int ok = y != NULL && BN_bin2bn(x, 32, xb) != NULL &&
	         BN_mod_sqr(rhs, xb, curve.p, bn) == 1 &&
	         BN_mod_add(rhs, rhs, curve.a, curve.p, bn) == 1 &&
	         BN_mod_mul(rhs, rhs, xb, curve.p, bn) == 1 &&
	         BN_mod_add(rhs, rhs, curve.b, curve.p, bn) == 1;
	if (ok) {
		BN_set_flags(rhs, BN_FLG_CONSTTIME);
		ok = BN_mod_exp_mont_consttime(y, rhs, curve.sqrt_exponent, curve.p, bn,
		                               curve.mont) == 1 &&
		     /* fails unless y^2 = rhs, i.e. x is on the curve */
		     EC_POINT_set_affine_coordinates(curve.group, c, xb, y, bn) == 1;
		*y_odd = (uint8_t)BN_is_odd(y);
	}
	BN_CTX_end(bn);
	return ok;
}

/* x(p) into out (32 bytes), or zeros for the identity. */
static int x_of(const EC_POINT *p, uint8_t out[32], BN_CTX *bn)
{
	uint8_t enc[65];
	memset(out, 0, 32);
	if (EC_POINT_is_at_infinity(curve.group, p))
		return 1;
	if (!point_to_uncompressed(curve.group, p, enc, bn))
		return 0;
	memcpy(out, enc + 1, 32);
	sodium_memzero(enc, sizeof(enc));
	return 1;
}

bkv_token_err p256_dh_full_point(p256_x_only_dh_fn dh, void *ctx,
                                 const uint8_t server_public[P256_UNCOMPRESSED_BYTES],
                                 const uint8_t peer_compressed[33], uint8_t out_compressed[33])
{
	pthread_once(&curve_once, curve_init);
	if (!curve_ok)
		return BKV_TOKEN_ERR_NOMEM;
	const EC_GROUP *g = curve.group;
	bkv_token_err err = BKV_TOKEN_ERR_NOMEM;
	BN_CTX *bn = BN_CTX_secure_new();
	EC_POINT *p = EC_POINT_new(g);
	EC_POINT *shifted = EC_POINT_new(g);
	EC_POINT *s = EC_POINT_new(g);
	EC_POINT *c = EC_POINT_new(g);
	EC_POINT *sum = EC_POINT_new(g);
	uint8_t enc[P256_UNCOMPRESSED_BYTES];
	uint8_t x1[32], x2[32], sum_x[2][32];
	uint8_t y_odd = 0;
	if (bn == NULL || p == NULL || shifted == NULL || s == NULL || c == NULL || sum == NULL)
		goto done;
	err = BKV_TOKEN_ERR_ARGUMENT;
	/* Inside KE2 the key share is decoded already: take its uncompressed form (checked on
	 * the curve again by oct2point, without the square root a decompression costs). */
	const bool lent = opaque_p256_lent_uncompressed(peer_compressed, enc);
	if ((lent ? EC_POINT_oct2point(g, p, enc, sizeof(enc), bn)
	          : EC_POINT_oct2point(g, p, peer_compressed, 33, bn)) != 1 ||
	    EC_POINT_is_at_infinity(g, p) ||
	    EC_POINT_oct2point(g, s, server_public, P256_UNCOMPRESSED_BYTES, bn) != 1)
		goto done;
	err = BKV_TOKEN_ERR_NOMEM;

	/* x1 = x(sk * P) */
	if (!lent && !point_to_uncompressed(g, p, enc, bn))
		goto done;
	err = dh(ctx, enc, x1);
	if (err != BKV_TOKEN_OK)
		goto done;
	err = BKV_TOKEN_ERR_NOMEM;

	/* shifted = P + G, or P + 2G (and S := 2S) when P = -G. x2 = x(sk * shifted). */
	const EC_POINT *gen = EC_GROUP_get0_generator(g);
	if (EC_POINT_add(g, shifted, p, gen, bn) != 1)
		goto done;
	if (EC_POINT_is_at_infinity(g, shifted)) {
		/* P = -G: shifted = (P + G) + G = P + 2G = G. */
		if (EC_POINT_add(g, shifted, shifted, gen, bn) != 1 ||
		    EC_POINT_dbl(g, s, s, bn) != 1)
			goto done;
	}
	if (!point_to_uncompressed(g, shifted, enc, bn))
		goto done;
	err = dh(ctx, enc, x2);
	if (err != BKV_TOKEN_OK)
		goto done;

	/* The candidates C = (x1, y) and -C: exactly one has x(candidate + S) = x2. Both sums
	 * are computed and the choice is a masked bit, so timing does not tell which. */
	err = BKV_TOKEN_ERR_DEVICE;
	if (!point_from_secret_x(x1, c, &y_odd, bn) || EC_POINT_add(g, sum, c, s, bn) != 1 ||
	    !x_of(sum, sum_x[0], bn) || EC_POINT_invert(g, c, bn) != 1 ||
	    EC_POINT_add(g, sum, c, s, bn) != 1 || !x_of(sum, sum_x[1], bn))
		goto done;
	const uint8_t first = (uint8_t)(sodium_memcmp(sum_x[0], x2, 32) == 0);
	const uint8_t second = (uint8_t)(sodium_memcmp(sum_x[1], x2, 32) == 0);
	/* Neither or both fit: the token's answers are inconsistent. */
	if ((first ^ second) == 0)
		goto done;
	/* SerializeElement: 0x02 | parity of the chosen y; -C has the other parity. */
	out_compressed[0] = (uint8_t)(0x02 | ((y_odd ^ second) & 1));
	memcpy(out_compressed + 1, x1, 32);
	err = BKV_TOKEN_OK;
done:
	ERR_clear_error();
	if (err != BKV_TOKEN_OK)
		sodium_memzero(out_compressed, 33);
	sodium_memzero(x1, sizeof(x1));
	sodium_memzero(x2, sizeof(x2));
	sodium_memzero(sum_x, sizeof(sum_x));
	sodium_memzero(enc, sizeof(enc));
	EC_POINT_clear_free(sum);
	EC_POINT_clear_free(c);
	EC_POINT_free(s);
	EC_POINT_free(shifted);
	EC_POINT_free(p);
	BN_CTX_free(bn);
	return err;
}
