/*
 * bench_opaque.c - bkv-bench-opaque: what the server's OPAQUE KE2 costs against its floor,
 * for each suite, with every figure saying what it includes.
 *
 * Per suite it measures, with the libraries' own primitives:
 *   mult_var    one variable-base scalar multiplication on an already-decoded point
 *               (P-256: EC_POINT_mul(k, P), no decode, no encode; ristretto255:
 *               crypto_scalarmult_ristretto255, which cannot be split: it decodes, multiplies
 *               and encodes);
 *   mult_base   one fixed-base multiplication (EC_POINT_mul(k, G) / _ristretto255_base);
 *   decode      decoding one received element with the library below (P-256:
 *               EC_POINT_oct2point of 33 bytes, a square root and an on-curve check;
 *               ristretto255: _is_valid_point): the yardstick the floor uses;
 *   decode_lib  the same through this library's decoder (opaque_element_validate, which
 *               also allocates its EC_POINT and BN_CTX);
 *   encode      P-256 only: EC_POINT_point2oct compressed from a multiplication's result
 *               (one field inversion); libsodium does not expose it;
 *   KE2         opaque_server_login_start, the whole call, with software server keys;
 *   reg         opaque_server_registration_response, the whole call.
 * The floor of a KE2 is 4 mult_var + 1 mult_base (OPRF evaluation, 3DH dh1 dh2 dh3, the
 * server key share); for P-256 a second floor adds one decode per received element (blinded
 * element, client key share, client public key: 3) and one encode per element KE2 sends or
 * hashes into its key schedule (evaluated element, server key share, dh1, dh2, dh3: 5).
 * "KE2 at x % of the floor" is floor time / KE2 time.
 *
 * Timing: R rounds (default 7) after one discarded warm-up round. A round gives every figure
 * a slice of time, in batches of 10 ms alternating between the figures (A B C ... A B C ...),
 * and keeps each figure's fastest batch: on a shared machine a batch that another process
 * preempted is slower, never faster, so the fastest batch is the figure's own cost. Figures
 * are min / median / max over rounds; ratios are computed within each round.
 *
 * Counting: this target is linked with -Wl,--wrap for the group primitives (CMakeLists.txt),
 * so every call the library makes to them passes through a counter here. Production builds
 * are not linked this way and carry no counter. Counts are per KE2 call, server side only.
 *
 * Prints figures only; it never passes or fails on speed. Exits non-zero only if an
 * operation returns an error.
 */
#include <errno.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opaque/opaque.h"

#define DEFAULT_ROUNDS  7
#define MAX_ROUNDS      99
#define DEFAULT_SLICE   0.5
#define BATCH_SECONDS   0.01 /* a round alternates the figures in batches this long */
#define MAX_SLICE       60.0
#define COUNT_KE2_CALLS 64
#define KE1_POOL        16

/* ---- Operation counters, fed by the --wrap'ed primitives ---- */

enum {
	CNT_EC_MUL_VAR,      /* EC_POINT_mul with a point argument */
	CNT_EC_MUL_BASE,     /* EC_POINT_mul with a generator scalar */
	CNT_EC_DECOMPRESS,   /* set_compressed_coordinates, oct2point of a compressed point, or a
	                      * BN_mod_exp_mont to the square-root exponent (p+1)/4 */
	CNT_EC_OCT2POINT_UN, /* oct2point of an uncompressed point */
	CNT_EC_COMPRESS,     /* point2oct compressed (into a buffer) */
	CNT_EC_POINT2OCT_UN, /* point2oct uncompressed (into a buffer) */
	CNT_EC_ON_CURVE,     /* explicit EC_POINT_is_on_curve */
	CNT_EC_SET_AFFINE,   /* set_affine_coordinates (OpenSSL checks the curve inside) */
	CNT_EC_POINT_NEW,    /* EC_POINT_new: allocations */
	CNT_BN_CTX_NEW,      /* BN_CTX_new / BN_CTX_secure_new: allocations */
	CNT_R255_MUL,        /* crypto_scalarmult_ristretto255 */
	CNT_R255_BASE,       /* crypto_scalarmult_ristretto255_base */
	CNT_R255_VALID,      /* crypto_core_ristretto255_is_valid_point: an extra decode */
	CNT_R255_FROM_HASH,  /* crypto_core_ristretto255_from_hash */
	CNT_HASH,            /* crypto_hash_sha{256,512}_init: plain hashes started */
	CNT_HMAC,            /* crypto_auth_hmacsha{256,512}_init: HMAC keys absorbed */
	CNT_COUNT
};

static unsigned long counters[CNT_COUNT];

int __real_EC_POINT_mul(const EC_GROUP *g, EC_POINT *r, const BIGNUM *n, const EC_POINT *q,
                        const BIGNUM *m, BN_CTX *ctx);
int __wrap_EC_POINT_mul(const EC_GROUP *g, EC_POINT *r, const BIGNUM *n, const EC_POINT *q,
                        const BIGNUM *m, BN_CTX *ctx);
int __wrap_EC_POINT_mul(const EC_GROUP *g, EC_POINT *r, const BIGNUM *n, const EC_POINT *q,
                        const BIGNUM *m, BN_CTX *ctx)
{
	counters[CNT_EC_MUL_BASE] += n != NULL;
	counters[CNT_EC_MUL_VAR] += q != NULL;
	return __real_EC_POINT_mul(g, r, n, q, m, ctx);
}

/* (p+1)/4 for P-256: a BN_mod_exp_mont to this exponent is a decompression's square root. */
static BIGNUM *sqrt_exponent;

int __real_BN_mod_exp_mont(BIGNUM *r, const BIGNUM *a, const BIGNUM *e, const BIGNUM *m,
                           BN_CTX *ctx, BN_MONT_CTX *mont);
int __wrap_BN_mod_exp_mont(BIGNUM *r, const BIGNUM *a, const BIGNUM *e, const BIGNUM *m,
                           BN_CTX *ctx, BN_MONT_CTX *mont);
int __wrap_BN_mod_exp_mont(BIGNUM *r, const BIGNUM *a, const BIGNUM *e, const BIGNUM *m,
                           BN_CTX *ctx, BN_MONT_CTX *mont)
{
	if (sqrt_exponent != NULL && BN_cmp(e, sqrt_exponent) == 0)
		counters[CNT_EC_DECOMPRESS]++;
	return __real_BN_mod_exp_mont(r, a, e, m, ctx, mont);
}

static bool sqrt_exponent_init(void)
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	sqrt_exponent = BN_new();
	bool ok = g != NULL && sqrt_exponent != NULL &&
	          EC_GROUP_get_curve(g, sqrt_exponent, NULL, NULL, NULL) == 1 &&
	          BN_add_word(sqrt_exponent, 1) == 1 &&
	          BN_rshift(sqrt_exponent, sqrt_exponent, 2) == 1;
	EC_GROUP_free(g);
	return ok;
}

int __real_EC_POINT_set_compressed_coordinates(const EC_GROUP *g, EC_POINT *p, const BIGNUM *x,
                                               int y_bit, BN_CTX *ctx);
int __wrap_EC_POINT_set_compressed_coordinates(const EC_GROUP *g, EC_POINT *p, const BIGNUM *x,
                                               int y_bit, BN_CTX *ctx);
int __wrap_EC_POINT_set_compressed_coordinates(const EC_GROUP *g, EC_POINT *p, const BIGNUM *x,
                                               int y_bit, BN_CTX *ctx)
{
	counters[CNT_EC_DECOMPRESS]++;
	return __real_EC_POINT_set_compressed_coordinates(g, p, x, y_bit, ctx);
}

int __real_EC_POINT_oct2point(const EC_GROUP *g, EC_POINT *p, const unsigned char *buf, size_t len,
                              BN_CTX *ctx);
int __wrap_EC_POINT_oct2point(const EC_GROUP *g, EC_POINT *p, const unsigned char *buf, size_t len,
                              BN_CTX *ctx);
int __wrap_EC_POINT_oct2point(const EC_GROUP *g, EC_POINT *p, const unsigned char *buf, size_t len,
                              BN_CTX *ctx)
{
	if (len > 0 && (buf[0] & 0xfe) == 0x02)
		counters[CNT_EC_DECOMPRESS]++;
	else if (len > 0 && buf[0] == 0x04)
		counters[CNT_EC_OCT2POINT_UN]++;
	return __real_EC_POINT_oct2point(g, p, buf, len, ctx);
}

size_t __real_EC_POINT_point2oct(const EC_GROUP *g, const EC_POINT *p, point_conversion_form_t f,
                                 unsigned char *buf, size_t len, BN_CTX *ctx);
size_t __wrap_EC_POINT_point2oct(const EC_GROUP *g, const EC_POINT *p, point_conversion_form_t f,
                                 unsigned char *buf, size_t len, BN_CTX *ctx);
size_t __wrap_EC_POINT_point2oct(const EC_GROUP *g, const EC_POINT *p, point_conversion_form_t f,
                                 unsigned char *buf, size_t len, BN_CTX *ctx)
{
	if (buf != NULL) {
		counters[CNT_EC_COMPRESS] += f == POINT_CONVERSION_COMPRESSED;
		counters[CNT_EC_POINT2OCT_UN] += f != POINT_CONVERSION_COMPRESSED;
	}
	return __real_EC_POINT_point2oct(g, p, f, buf, len, ctx);
}

int __real_EC_POINT_is_on_curve(const EC_GROUP *g, const EC_POINT *p, BN_CTX *ctx);
int __wrap_EC_POINT_is_on_curve(const EC_GROUP *g, const EC_POINT *p, BN_CTX *ctx);
int __wrap_EC_POINT_is_on_curve(const EC_GROUP *g, const EC_POINT *p, BN_CTX *ctx)
{
	counters[CNT_EC_ON_CURVE]++;
	return __real_EC_POINT_is_on_curve(g, p, ctx);
}

int __real_EC_POINT_set_affine_coordinates(const EC_GROUP *g, EC_POINT *p, const BIGNUM *x,
                                           const BIGNUM *y, BN_CTX *ctx);
int __wrap_EC_POINT_set_affine_coordinates(const EC_GROUP *g, EC_POINT *p, const BIGNUM *x,
                                           const BIGNUM *y, BN_CTX *ctx);
int __wrap_EC_POINT_set_affine_coordinates(const EC_GROUP *g, EC_POINT *p, const BIGNUM *x,
                                           const BIGNUM *y, BN_CTX *ctx)
{
	counters[CNT_EC_SET_AFFINE]++;
	return __real_EC_POINT_set_affine_coordinates(g, p, x, y, ctx);
}

EC_POINT *__real_EC_POINT_new(const EC_GROUP *g);
EC_POINT *__wrap_EC_POINT_new(const EC_GROUP *g);
EC_POINT *__wrap_EC_POINT_new(const EC_GROUP *g)
{
	counters[CNT_EC_POINT_NEW]++;
	return __real_EC_POINT_new(g);
}

BN_CTX *__real_BN_CTX_new(void);
BN_CTX *__wrap_BN_CTX_new(void);
BN_CTX *__wrap_BN_CTX_new(void)
{
	counters[CNT_BN_CTX_NEW]++;
	return __real_BN_CTX_new();
}

BN_CTX *__real_BN_CTX_secure_new(void);
BN_CTX *__wrap_BN_CTX_secure_new(void);
BN_CTX *__wrap_BN_CTX_secure_new(void)
{
	counters[CNT_BN_CTX_NEW]++;
	return __real_BN_CTX_secure_new();
}

int __real_crypto_scalarmult_ristretto255(unsigned char *q, const unsigned char *n,
                                          const unsigned char *p);
int __wrap_crypto_scalarmult_ristretto255(unsigned char *q, const unsigned char *n,
                                          const unsigned char *p);
int __wrap_crypto_scalarmult_ristretto255(unsigned char *q, const unsigned char *n,
                                          const unsigned char *p)
{
	counters[CNT_R255_MUL]++;
	return __real_crypto_scalarmult_ristretto255(q, n, p);
}

int __real_crypto_scalarmult_ristretto255_base(unsigned char *q, const unsigned char *n);
int __wrap_crypto_scalarmult_ristretto255_base(unsigned char *q, const unsigned char *n);
int __wrap_crypto_scalarmult_ristretto255_base(unsigned char *q, const unsigned char *n)
{
	counters[CNT_R255_BASE]++;
	return __real_crypto_scalarmult_ristretto255_base(q, n);
}

int __real_crypto_core_ristretto255_is_valid_point(const unsigned char *p);
int __wrap_crypto_core_ristretto255_is_valid_point(const unsigned char *p);
int __wrap_crypto_core_ristretto255_is_valid_point(const unsigned char *p)
{
	counters[CNT_R255_VALID]++;
	return __real_crypto_core_ristretto255_is_valid_point(p);
}

int __real_crypto_core_ristretto255_from_hash(unsigned char *p, const unsigned char *r);
int __wrap_crypto_core_ristretto255_from_hash(unsigned char *p, const unsigned char *r);
int __wrap_crypto_core_ristretto255_from_hash(unsigned char *p, const unsigned char *r)
{
	counters[CNT_R255_FROM_HASH]++;
	return __real_crypto_core_ristretto255_from_hash(p, r);
}

int __real_crypto_hash_sha256_init(crypto_hash_sha256_state *s);
int __wrap_crypto_hash_sha256_init(crypto_hash_sha256_state *s);
int __wrap_crypto_hash_sha256_init(crypto_hash_sha256_state *s)
{
	counters[CNT_HASH]++;
	return __real_crypto_hash_sha256_init(s);
}

int __real_crypto_hash_sha512_init(crypto_hash_sha512_state *s);
int __wrap_crypto_hash_sha512_init(crypto_hash_sha512_state *s);
int __wrap_crypto_hash_sha512_init(crypto_hash_sha512_state *s)
{
	counters[CNT_HASH]++;
	return __real_crypto_hash_sha512_init(s);
}

int __real_crypto_auth_hmacsha256_init(crypto_auth_hmacsha256_state *s, const unsigned char *k,
                                       size_t n);
int __wrap_crypto_auth_hmacsha256_init(crypto_auth_hmacsha256_state *s, const unsigned char *k,
                                       size_t n);
int __wrap_crypto_auth_hmacsha256_init(crypto_auth_hmacsha256_state *s, const unsigned char *k,
                                       size_t n)
{
	counters[CNT_HMAC]++;
	return __real_crypto_auth_hmacsha256_init(s, k, n);
}

int __real_crypto_auth_hmacsha512_init(crypto_auth_hmacsha512_state *s, const unsigned char *k,
                                       size_t n);
int __wrap_crypto_auth_hmacsha512_init(crypto_auth_hmacsha512_state *s, const unsigned char *k,
                                       size_t n);
int __wrap_crypto_auth_hmacsha512_init(crypto_auth_hmacsha512_state *s, const unsigned char *k,
                                       size_t n)
{
	counters[CNT_HMAC]++;
	return __real_crypto_auth_hmacsha512_init(s, k, n);
}

/* ---- Fixture ---- */

static const char bench_context[] = "bkv-bench-opaque";
static const char bench_user[] = "alice";
static const char bench_password[] = "correct horse battery staple";

typedef struct bench_fixture {
	opaque_suite_id suite;
	const char *name;
	const opaque_sizes *sz;
	opaque_config config;
	opaque_soft_server_keys server_keys;
	uint8_t registration_request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t ke1[KE1_POOL][OPAQUE_MAX_KE1_BYTES];
	size_t next_ke1;
	/* Raw primitives: a scalar and a valid element, in both the encoded and decoded form. */
	uint8_t scalar[32];
	uint8_t element[OPAQUE_MAX_ELEMENT_BYTES];
	EC_GROUP *group;
	EC_POINT *point;    /* element, decoded (affine) */
	EC_POINT *jacobian; /* a multiplication's result, as EC_POINT_mul leaves it */
	EC_POINT *result;
	BIGNUM *k;
	BN_CTX *bn;
} bench_fixture;

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool check(opaque_err err, const bench_fixture *f, const char *what)
{
	if (err == OPAQUE_OK)
		return true;
	fprintf(stderr, "bkv-bench-opaque: %s: %s failed: %s\n", f->name, what,
	        opaque_strerror(err));
	return false;
}

static bool check_ssl(int ok, const bench_fixture *f, const char *what)
{
	if (ok)
		return true;
	fprintf(stderr, "bkv-bench-opaque: %s: %s failed\n", f->name, what);
	return false;
}

/* One whole login, checked end to end, so the benchmark never times a broken path. */
static bool login_once(bench_fixture *f)
{
	const uint8_t *pw = (const uint8_t *)bench_password;
	const size_t pw_len = sizeof(bench_password) - 1;
	const opaque_sizes *sz = f->sz;
	opaque_client_login_state cst;
	opaque_server_login_state sst;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES], ke2[OPAQUE_MAX_KE2_BYTES], ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t csk[OPAQUE_MAX_HASH_BYTES], ssk[OPAQUE_MAX_HASH_BYTES], ek[OPAQUE_MAX_HASH_BYTES];
	bool ok =
	    check(opaque_client_login_start(&f->config, pw, pw_len, &cst, ke1, sz->ke1), f,
	          "client_login_start") &&
	    check(opaque_server_login_start(&f->config, &f->server_keys.keys, NULL,
	                                    (const uint8_t *)bench_user, sizeof(bench_user) - 1,
	                                    f->record, sz->registration_record, ke1, sz->ke1, &sst,
	                                    ke2, sz->ke2),
	          f, "server_login_start") &&
	    check(opaque_client_login_finish(&f->config, &cst, pw, pw_len, NULL, ke2, sz->ke2, ke3,
	                                     sz->ke3, csk, sz->session_key, ek, sz->export_key),
	          f, "client_login_finish") &&
	    check(opaque_server_login_finish(&sst, ke3, sz->ke3, ssk, sz->session_key), f,
	          "server_login_finish");
	if (ok && sodium_memcmp(csk, ssk, sz->session_key) != 0) {
		fprintf(stderr, "bkv-bench-opaque: %s: session keys differ\n", f->name);
		ok = false;
	}
	sodium_memzero(&cst, sizeof(cst));
	sodium_memzero(&sst, sizeof(sst));
	sodium_memzero(csk, sizeof(csk));
	sodium_memzero(ssk, sizeof(ssk));
	sodium_memzero(ek, sizeof(ek));
	return ok;
}

static bool fixture_init(bench_fixture *f, opaque_suite_id suite)
{
	const uint8_t *pw = (const uint8_t *)bench_password;
	const size_t pw_len = sizeof(bench_password) - 1;
	opaque_client_registration_state reg;
	opaque_client_login_state cst;
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t sk[OPAQUE_MAX_SCALAR_BYTES];
	memset(f, 0, sizeof(*f));
	f->suite = suite;
	f->name = opaque_suite_name(suite);
	f->sz = opaque_suite_sizes(suite);
	if (f->sz == NULL) {
		fprintf(stderr, "bkv-bench-opaque: suite %d unknown to the library\n", (int)suite);
		return false;
	}
	/* The KSF runs only on the client: identity here, it is not what we measure. */
	f->config.suite = suite;
	f->config.context = (const uint8_t *)bench_context;
	f->config.context_len = sizeof(bench_context) - 1;
	f->config.ksf.id = OPAQUE_KSF_IDENTITY;
	bool ok =
	    check(opaque_soft_server_keys_generate(&f->server_keys, suite), f, "keys_generate") &&
	    check(opaque_client_registration_start(&f->config, pw, pw_len, &reg,
	                                           f->registration_request,
	                                           f->sz->registration_request),
	          f, "client_registration_start") &&
	    check(opaque_server_registration_response(
	              &f->config, &f->server_keys.keys, (const uint8_t *)bench_user,
	              sizeof(bench_user) - 1, f->registration_request, f->sz->registration_request,
	              response, f->sz->registration_response),
	          f, "server_registration_response") &&
	    check(opaque_client_registration_finish(
	              &f->config, &reg, pw, pw_len, NULL, response, f->sz->registration_response,
	              f->record, f->sz->registration_record, export_key, f->sz->export_key),
	          f, "client_registration_finish") &&
	    login_once(f) &&
	    check(opaque_generate_ake_key_pair(suite, sk, f->sz->Nsk, f->element, f->sz->Npk), f,
	          "generate_ake_key_pair");
	/* KE1s made outside any timing; the server draws fresh randomness for each KE2. */
	for (size_t i = 0; ok && i < KE1_POOL; i++) {
		ok = check(
		    opaque_client_login_start(&f->config, pw, pw_len, &cst, f->ke1[i], f->sz->ke1),
		    f, "client_login_start");
		sodium_memzero(&cst, sizeof(cst));
	}
	/* A scalar for the raw multiplications: a fresh private key (valid, non-zero). */
	uint8_t unused[OPAQUE_MAX_ELEMENT_BYTES];
	ok = ok &&
	     check(opaque_generate_ake_key_pair(suite, f->scalar, f->sz->Nsk, unused, f->sz->Npk),
	           f, "generate_ake_key_pair");
	if (ok && suite == OPAQUE_SUITE_P256_SHA256) {
		f->group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
		f->point = f->group ? EC_POINT_new(f->group) : NULL;
		f->jacobian = f->group ? EC_POINT_new(f->group) : NULL;
		f->result = f->group ? EC_POINT_new(f->group) : NULL;
		f->k = BN_secure_new();
		f->bn = BN_CTX_secure_new();
		ok = check_ssl(
		    f->point != NULL && f->jacobian != NULL && f->result != NULL && f->k != NULL &&
		        f->bn != NULL && BN_bin2bn(f->scalar, 32, f->k) != NULL &&
		        EC_POINT_oct2point(f->group, f->point, f->element, 33, f->bn) == 1,
		    f, "P-256 set-up");
		if (ok) {
			/* As the library does: the constant-time ladder for secret scalars. */
			BN_set_flags(f->k, BN_FLG_CONSTTIME);
			ok = check_ssl(
			    EC_POINT_mul(f->group, f->jacobian, NULL, f->point, f->k, f->bn) == 1,
			    f, "EC_POINT_mul");
		}
	}
	sodium_memzero(&reg, sizeof(reg));
	sodium_memzero(export_key, sizeof(export_key));
	sodium_memzero(sk, sizeof(sk));
	return ok;
}

static void fixture_wipe(bench_fixture *f)
{
	EC_POINT_free(f->point);
	EC_POINT_free(f->jacobian);
	EC_POINT_free(f->result);
	EC_GROUP_free(f->group);
	BN_clear_free(f->k);
	BN_CTX_free(f->bn);
	opaque_soft_server_keys_wipe(&f->server_keys);
	sodium_memzero(f, sizeof(*f));
}

/* ---- The figures ---- */

typedef bool (*op_fn)(bench_fixture *f);

static bool op_ke2(bench_fixture *f)
{
	opaque_server_login_state sst;
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	const uint8_t *ke1 = f->ke1[f->next_ke1++ % KE1_POOL];
	bool ok = check(opaque_server_login_start(
	                    &f->config, &f->server_keys.keys, NULL, (const uint8_t *)bench_user,
	                    sizeof(bench_user) - 1, f->record, f->sz->registration_record, ke1,
	                    f->sz->ke1, &sst, ke2, f->sz->ke2),
	                f, "server_login_start");
	sodium_memzero(&sst, sizeof(sst));
	return ok;
}

static bool op_reg(bench_fixture *f)
{
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	return check(opaque_server_registration_response(
	                 &f->config, &f->server_keys.keys, (const uint8_t *)bench_user,
	                 sizeof(bench_user) - 1, f->registration_request,
	                 f->sz->registration_request, response, f->sz->registration_response),
	             f, "server_registration_response");
}

static bool op_mult_var(bench_fixture *f)
{
	if (f->suite == OPAQUE_SUITE_P256_SHA256)
		return check_ssl(EC_POINT_mul(f->group, f->result, NULL, f->point, f->k, f->bn) ==
		                     1,
		                 f, "EC_POINT_mul");
	uint8_t out[32];
	return check_ssl(crypto_scalarmult_ristretto255(out, f->scalar, f->element) == 0, f,
	                 "crypto_scalarmult_ristretto255");
}

static bool op_mult_base(bench_fixture *f)
{
	if (f->suite == OPAQUE_SUITE_P256_SHA256)
		return check_ssl(EC_POINT_mul(f->group, f->result, f->k, NULL, NULL, f->bn) == 1, f,
		                 "EC_POINT_mul");
	uint8_t out[32];
	return check_ssl(crypto_scalarmult_ristretto255_base(out, f->scalar) == 0, f,
	                 "crypto_scalarmult_ristretto255_base");
}

static bool op_decode(bench_fixture *f)
{
	if (f->suite == OPAQUE_SUITE_P256_SHA256)
		return check_ssl(EC_POINT_oct2point(f->group, f->result, f->element, 33, f->bn) ==
		                     1,
		                 f, "EC_POINT_oct2point");
	return check_ssl(crypto_core_ristretto255_is_valid_point(f->element) == 1, f,
	                 "crypto_core_ristretto255_is_valid_point");
}

static bool op_decode_lib(bench_fixture *f)
{
	return check(opaque_element_validate(f->suite, f->element, f->sz->Noe), f,
	             "opaque_element_validate");
}

static bool op_encode(bench_fixture *f)
{
	uint8_t out[33];
	return check_ssl(EC_POINT_point2oct(f->group, f->jacobian, POINT_CONVERSION_COMPRESSED, out,
	                                    sizeof(out), f->bn) == sizeof(out),
	                 f, "EC_POINT_point2oct");
}

enum {
	FIG_MULT_VAR,
	FIG_MULT_BASE,
	FIG_DECODE,
	FIG_DECODE_LIB,
	FIG_ENCODE,
	FIG_KE2,
	FIG_REG,
	FIG_COUNT
};

static const struct figure {
	const char *name;
	op_fn fn;
	const char *p256;
	const char *r255;
} figures[FIG_COUNT] = {
    {"mult_var", op_mult_var, "EC_POINT_mul(k, P), P decoded, result not encoded",
     "crypto_scalarmult_ristretto255 (decode + mult + encode)"},
    {"mult_base", op_mult_base, "EC_POINT_mul(k, G), result not encoded",
     "crypto_scalarmult_ristretto255_base (mult + encode)"},
    {"decode", op_decode, "EC_POINT_oct2point, 33 bytes (sqrt + on-curve check)",
     "crypto_core_ristretto255_is_valid_point"},
    {"decode_lib", op_decode_lib, "opaque_element_validate: this library's decoder + allocs",
     "opaque_element_validate: encoding checks + is_valid_point"},
    {"encode", op_encode, "EC_POINT_point2oct compressed, from a mult result",
     NULL /* not exposed by libsodium */},
    {"KE2", op_ke2, "opaque_server_login_start, whole call, soft server keys",
     "opaque_server_login_start, whole call, soft server keys"},
    {"reg", op_reg, "opaque_server_registration_response, whole call",
     "opaque_server_registration_response, whole call"},
};

/* Runs op for `slice` seconds; returns seconds per operation, or a negative on error. */
static double time_slice(bench_fixture *f, op_fn op, double slice)
{
	unsigned long n = 0;
	const double start = now_seconds();
	double elapsed;
	do {
		if (!op(f))
			return -1.0;
		n++;
		elapsed = now_seconds() - start;
	} while (elapsed < slice);
	return elapsed / (double)n;
}

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

typedef struct stats {
	double min, med, max;
} stats;

static stats stats_of(const double *v, int n)
{
	double s[MAX_ROUNDS];
	memcpy(s, v, (size_t)n * sizeof(double));
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	stats r = {s[0], n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0, s[n - 1]};
	return r;
}

/* Operations per KE2, server call only. */
static bool count_ke2(bench_fixture *f, double per_ke2[CNT_COUNT])
{
	unsigned long total[CNT_COUNT] = {0};
	for (int i = 0; i < COUNT_KE2_CALLS; i++) {
		unsigned long before[CNT_COUNT];
		memcpy(before, counters, sizeof(before));
		if (!op_ke2(f))
			return false;
		for (int c = 0; c < CNT_COUNT; c++)
			total[c] += counters[c] - before[c];
	}
	for (int c = 0; c < CNT_COUNT; c++)
		per_ke2[c] = (double)total[c] / COUNT_KE2_CALLS;
	return true;
}

static void print_stats_us(const char *label, stats s, const char *what)
{
	printf("  %-12s %9.2f %9.2f %9.2f  %s\n", label, s.min * 1e6, s.med * 1e6, s.max * 1e6,
	       what);
}

static void print_stats_pct(const char *label, stats s, const char *what)
{
	printf("  %-12s %8.1f%% %8.1f%% %8.1f%%  %s\n", label, s.min * 100, s.med * 100,
	       s.max * 100, what);
}

static bool run_suite(opaque_suite_id suite, int rounds, double slice)
{
	bench_fixture f;
	double t[FIG_COUNT][MAX_ROUNDS];
	double floor_t[MAX_ROUNDS], codec_t[MAX_ROUNDS], pct[MAX_ROUNDS], pct_codec[MAX_ROUNDS];
	double per_ke2[CNT_COUNT];
	bool ok = fixture_init(&f, suite);
	const bool p256 = suite == OPAQUE_SUITE_P256_SHA256;
	/* Round 0 warms up and is discarded. */
	const int batches = slice / BATCH_SECONDS < 1.0 ? 1 : (int)(slice / BATCH_SECONDS);
	for (int r = 0; ok && r <= rounds; r++) {
		double best[FIG_COUNT] = {0};
		for (int b = 0; ok && b < (r == 0 ? batches / 2 + 1 : batches); b++) {
			for (int i = 0; ok && i < FIG_COUNT; i++) {
				if (!p256 && figures[i].r255 == NULL)
					continue;
				const double s = time_slice(&f, figures[i].fn, BATCH_SECONDS);
				ok = s > 0.0;
				if (b == 0 || s < best[i])
					best[i] = s;
			}
		}
		for (int i = 0; r > 0 && i < FIG_COUNT; i++)
			t[i][r - 1] = best[i];
	}
	ok = ok && count_ke2(&f, per_ke2);
	if (!ok) {
		fixture_wipe(&f);
		return false;
	}
	for (int r = 0; r < rounds; r++) {
		floor_t[r] = 4 * t[FIG_MULT_VAR][r] + t[FIG_MULT_BASE][r];
		codec_t[r] = floor_t[r] + 3 * t[FIG_DECODE][r] + 5 * t[FIG_ENCODE][r];
		pct[r] = floor_t[r] / t[FIG_KE2][r];
		pct_codec[r] = codec_t[r] / t[FIG_KE2][r];
	}
	printf("\n%s (%s), %d rounds x %.3g s per figure, interleaved in %.0f ms batches;"
	       " fastest batch per round\n",
	       f.name, p256 ? OpenSSL_version(OPENSSL_VERSION) : "libsodium", rounds, slice,
	       BATCH_SECONDS * 1000);
	printf("  %-12s %9s %9s %9s  %s\n", "us per op", "min", "median", "max",
	       "what it includes");
	for (int i = 0; i < FIG_COUNT; i++) {
		const char *what = p256 ? figures[i].p256 : figures[i].r255;
		if (what != NULL)
			print_stats_us(figures[i].name, stats_of(t[i], rounds), what);
		else
			printf("  %-12s %9s %9s %9s  %s\n", figures[i].name, "-", "-", "-",
			       "not exposed by libsodium: inside each mult_var");
	}
	print_stats_us("floor", stats_of(floor_t, rounds), "4 mult_var + 1 mult_base");
	if (p256)
		print_stats_us("floor+codec", stats_of(codec_t, rounds),
		               "floor + 3 decode (one per received element) + 5 encode (KE2's)");
	print_stats_pct("KE2/floor", stats_of(pct, rounds),
	                "floor time / KE2 time, per round (100% = nothing but the floor)");
	if (p256)
		print_stats_pct("KE2/fl+codec", stats_of(pct_codec, rounds),
		                "floor+codec time / KE2 time, per round");
	printf("  operations per KE2 (counted, server call only, mean of %d calls):\n",
	       COUNT_KE2_CALLS);
	if (p256) {
		printf("    %-46s %6.2f\n", "EC_POINT_mul variable-base", per_ke2[CNT_EC_MUL_VAR]);
		printf("    %-46s %6.2f\n", "EC_POINT_mul fixed-base", per_ke2[CNT_EC_MUL_BASE]);
		printf("    %-46s %6.2f\n", "decompressions (square roots of a received x)",
		       per_ke2[CNT_EC_DECOMPRESS]);
		printf("    %-46s %6.2f\n", "compressions (33-byte encodes)",
		       per_ke2[CNT_EC_COMPRESS]);
		printf("    %-46s %6.2f\n", "uncompressed decodes / encodes",
		       per_ke2[CNT_EC_OCT2POINT_UN] + per_ke2[CNT_EC_POINT2OCT_UN]);
		printf("    %-46s %6.2f\n", "explicit on-curve checks", per_ke2[CNT_EC_ON_CURVE]);
		printf("    %-46s %6.2f\n", "set_affine_coordinates (OpenSSL's curve check)",
		       per_ke2[CNT_EC_SET_AFFINE]);
		printf("    %-46s %6.2f\n", "EC_POINT_new + BN_CTX_new (allocations)",
		       per_ke2[CNT_EC_POINT_NEW] + per_ke2[CNT_BN_CTX_NEW]);
	} else {
		printf("    %-46s %6.2f\n", "scalarmult_ristretto255 (decode+mult+encode)",
		       per_ke2[CNT_R255_MUL]);
		printf("    %-46s %6.2f\n", "scalarmult_ristretto255_base", per_ke2[CNT_R255_BASE]);
		printf("    %-46s %6.2f\n", "is_valid_point (extra decodes)",
		       per_ke2[CNT_R255_VALID]);
		printf("    %-46s %6.2f\n", "from_hash", per_ke2[CNT_R255_FROM_HASH]);
	}
	printf("    %-46s %6.2f\n", "plain SHA-2 hashes started (sha*_init)", per_ke2[CNT_HASH]);
	printf("    %-46s %6.2f\n", "HMAC keys absorbed (hmacsha*_init)", per_ke2[CNT_HMAC]);
	fflush(stdout);
	fixture_wipe(&f);
	return true;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: bkv-bench-opaque [--rounds R] [--slice S] [--suite p256|ristretto255]\n"
	        "  Server-side OPAQUE KE2 against its floor, per suite; see the header of\n"
	        "  opaque/tools/bench_opaque.c for what each figure includes.\n"
	        "  --rounds R   measured rounds (default %d, at most %d), after one warm-up\n"
	        "  --slice S    seconds per figure per round (default %.2g); --seconds S is the\n"
	        "               same (the option's earlier name)\n",
	        DEFAULT_ROUNDS, MAX_ROUNDS, DEFAULT_SLICE);
}

int main(int argc, char **argv)
{
	opaque_suite_id suites[2] = {OPAQUE_SUITE_P256_SHA256, OPAQUE_SUITE_RISTRETTO255_SHA512};
	size_t nsuites = 2;
	int rounds = DEFAULT_ROUNDS;
	double slice = DEFAULT_SLICE;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (i + 1 < argc && strcmp(argv[i], "--suite") == 0) {
			i++;
			if (strcmp(argv[i], "p256") == 0)
				suites[0] = OPAQUE_SUITE_P256_SHA256;
			else if (strcmp(argv[i], "ristretto255") == 0)
				suites[0] = OPAQUE_SUITE_RISTRETTO255_SHA512;
			else {
				usage(stderr);
				return 2;
			}
			nsuites = 1;
			continue;
		}
		if (i + 1 < argc &&
		    (strcmp(argv[i], "--rounds") == 0 || strcmp(argv[i], "--slice") == 0 ||
		     strcmp(argv[i], "--seconds") == 0)) {
			const bool is_rounds = argv[i][2] == 'r';
			char *end;
			errno = 0;
			const double v = strtod(argv[++i], &end);
			if (errno != 0 || *end != '\0' || end == argv[i] || !isfinite(v) ||
			    v <= 0.0 ||
			    (is_rounds ? (v > MAX_ROUNDS || v != floor(v)) : v > MAX_SLICE)) {
				usage(stderr);
				return 2;
			}
			if (is_rounds)
				rounds = (int)v;
			else
				slice = v;
			continue;
		}
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0 || !sqrt_exponent_init()) {
		fprintf(stderr, "bkv-bench-opaque: initialisation failed\n");
		return 1;
	}
	printf("bkv-bench-opaque: server side, one thread; %s; libsodium %s\n"
	       "client KSF: identity (it runs on the client only, and the client is not timed)\n",
	       OpenSSL_version(OPENSSL_VERSION), sodium_version_string());
	for (size_t i = 0; i < nsuites; i++) {
		if (!run_suite(suites[i], rounds, slice))
			return 1;
	}
	return 0;
}
