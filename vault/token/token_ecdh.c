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

static int point_to_uncompressed(const EC_GROUP *g, const EC_POINT *p, uint8_t out[65], BN_CTX *bn)
{
	return EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, out, 65, bn) == 65;
}

/* 1 if x(p) equals x (p not the identity), else 0. */
static int x_matches(const EC_GROUP *g, const EC_POINT *p, const uint8_t x[32], BN_CTX *bn)
{
	uint8_t enc[65];
	if (EC_POINT_is_at_infinity(g, p) || !point_to_uncompressed(g, p, enc, bn))
		return 0;
	int eq = sodium_memcmp(enc + 1, x, 32) == 0;
	sodium_memzero(enc, sizeof(enc));
	return eq;
}

bkv_token_err p256_dh_full_point(p256_x_only_dh_fn dh, void *ctx,
                                 const uint8_t server_public[P256_UNCOMPRESSED_BYTES],
                                 const uint8_t peer_compressed[33], uint8_t out_compressed[33])
{
	bkv_token_err err = BKV_TOKEN_ERR_NOMEM;
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	BN_CTX *bn = BN_CTX_secure_new();
	EC_POINT *p = g ? EC_POINT_new(g) : NULL;
	EC_POINT *shifted = g ? EC_POINT_new(g) : NULL;
	EC_POINT *s = g ? EC_POINT_new(g) : NULL;
	EC_POINT *c = g ? EC_POINT_new(g) : NULL;
	EC_POINT *sum = g ? EC_POINT_new(g) : NULL;
	BIGNUM *x1_bn = BN_secure_new();
	uint8_t enc[P256_UNCOMPRESSED_BYTES];
	uint8_t x1[32], x2[32];
	if (bn == NULL || p == NULL || shifted == NULL || s == NULL || c == NULL || sum == NULL ||
	    x1_bn == NULL)
		goto done;
	err = BKV_TOKEN_ERR_ARGUMENT;
	if (EC_POINT_oct2point(g, p, peer_compressed, 33, bn) != 1 ||
	    EC_POINT_is_at_infinity(g, p) ||
	    EC_POINT_oct2point(g, s, server_public, P256_UNCOMPRESSED_BYTES, bn) != 1)
		goto done;
	err = BKV_TOKEN_ERR_NOMEM;

	/* x1 = x(sk * P) */
	if (!point_to_uncompressed(g, p, enc, bn))
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

	/* C = (x1, y) with even y; keep C if x(C + S) = x2, else -C. */
	err = BKV_TOKEN_ERR_DEVICE;
	if (BN_bin2bn(x1, 32, x1_bn) == NULL ||
	    EC_POINT_set_compressed_coordinates(g, c, x1_bn, 0, bn) != 1)
		goto done;
	if (EC_POINT_add(g, sum, c, s, bn) != 1)
		goto done;
	if (!x_matches(g, sum, x2, bn)) {
		if (EC_POINT_invert(g, c, bn) != 1 || EC_POINT_add(g, sum, c, s, bn) != 1)
			goto done;
		/* Neither candidate fits: the token's answers are inconsistent. */
		if (!x_matches(g, sum, x2, bn))
			goto done;
	}
	if (EC_POINT_point2oct(g, c, POINT_CONVERSION_COMPRESSED, out_compressed, 33, bn) != 33)
		goto done;
	err = BKV_TOKEN_OK;
done:
	ERR_clear_error();
	if (err != BKV_TOKEN_OK)
		sodium_memzero(out_compressed, 33);
	sodium_memzero(x1, sizeof(x1));
	sodium_memzero(x2, sizeof(x2));
	sodium_memzero(enc, sizeof(enc));
	BN_clear_free(x1_bn);
	EC_POINT_clear_free(sum);
	EC_POINT_clear_free(c);
	EC_POINT_free(s);
	EC_POINT_free(shifted);
	EC_POINT_free(p);
	BN_CTX_free(bn);
	EC_GROUP_free(g);
	return err;
}
