/*
 * p256.h - the shared, read-only P-256 context used by group_p256.c and h2c.c.
 *
 * It is built once (pthread_once) and never written afterwards, so any thread may use it.
 */
#ifndef OPAQUE_P256_H
#define OPAQUE_P256_H

#include <openssl/bn.h>
#include <openssl/ec.h>

typedef struct p256_ctx {
	EC_GROUP *group;
	BIGNUM *p;           /* field prime */
	BIGNUM *n;           /* group order */
	BN_MONT_CTX *mont_p; /* Montgomery context for p */
	BN_MONT_CTX *mont_n; /* Montgomery context for n */
	/* SSWU constants (RFC 9380 8.2: A = -3, B = b, Z = -10) */
	BIGNUM *a, *b, *z;
	BIGNUM *minus_b_over_a;   /* -B / A */
	BIGNUM *b_over_za;        /* B / (Z * A), for the exceptional case */
	BIGNUM *p_minus_2;        /* inversion exponent */
	BIGNUM *p_minus_1_half;   /* Legendre exponent (p - 1) / 2 */
	BIGNUM *p_plus_1_quarter; /* square-root exponent (p + 1) / 4, valid as p = 3 mod 4 */
	BIGNUM *n_minus_2;
} p256_ctx;

/* NULL only if OpenSSL failed to allocate at first use. */
const p256_ctx *p256_get(void);

#endif
