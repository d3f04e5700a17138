/*
 * test_auth.c - behaviour tests of bearer-token verification (cmocka). The tests mint their
 * own tokens: HS256 through libjwt (as bkvd dev-token does) and by hand with libsodium's
 * HMAC-SHA256, so a header or claim set can say what libjwt would never write (a repeated
 * member, a float exp, crit); ES256 with a P-256 key OpenSSL generates per run, and the
 * high-S twin of a valid signature computed as S' = n - S.
 *
 * Every rejection test has a twin that differs in the one rule under test and verifies, so
 * a rejection cannot come from a mistake in the test's own signer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "auth.h"

#define NOW        INT64_C(1800000000)
#define LIFETIME   3600
#define SKEW       60
#define ISSUER     "https://auth.example"
#define AUDIENCE   "bkv"
#define TOKEN_TEXT (BKV_AUTH_TOKEN_MAX * 2)

static const char SECRET[] = "a test secret that is at least thirty-two bytes";
static const char HS256_HEADER[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char ES256_HEADER[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";

typedef struct fixture {
	bkv_auth hs256;
	bkv_auth es256;
	EVP_PKEY *es256_key;
	char es256_public_pem[4096];
	size_t es256_public_pem_len;
} fixture;

/* snprintf that fails the test instead of truncating. */
__attribute__((format(printf, 3, 4))) static void text(char *out, size_t out_max,
                                                       const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	int n = vsnprintf(out, out_max, format, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < out_max);
}

static char *write_temp(const void *bytes, size_t len)
{
	char *path = strdup("/tmp/bkv-test-auth-XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	close(fd);
	return path;
}

static bool init_auth(bkv_auth *auth, const char *algorithm, const void *key, size_t key_len,
                      int64_t max_lifetime_s, int64_t clock_skew_s, char *why, size_t why_len)
{
	char *path = write_temp(key, key_len);
	bkv_auth_settings s = {algorithm, path, ISSUER, AUDIENCE, max_lifetime_s, clock_skew_s};
	bool ok = bkv_auth_init(auth, &s, why, why_len);
	unlink(path);
	free(path);
	return ok;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	char why[256];
	assert_true(init_auth(&f->hs256, "HS256", SECRET, strlen(SECRET), LIFETIME, SKEW, why,
	                      sizeof(why)));
	f->es256_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(f->es256_key);
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PUBKEY(bio, f->es256_key), 1);
	int n = BIO_read(bio, f->es256_public_pem, sizeof(f->es256_public_pem));
	assert_true(n > 0);
	f->es256_public_pem_len = (size_t)n;
	BIO_free(bio);
	assert_true(init_auth(&f->es256, "ES256", f->es256_public_pem, f->es256_public_pem_len,
	                      LIFETIME, SKEW, why, sizeof(why)));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	bkv_auth_free(&f->hs256);
	bkv_auth_free(&f->es256);
	EVP_PKEY_free(f->es256_key);
	free(f);
	return 0;
}

/* ---- minting ---- */

static size_t b64url(char *out, size_t out_max, const uint8_t *bytes, size_t len)
{
	assert_true(sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING) <=
	            out_max);
	sodium_bin2base64(out, out_max, bytes, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return strlen(out);
}

/* "Bearer <b64(header)>.<b64(claims)>." into out; returns the offset of the signing input. */
static size_t signing_input(char *out, const char *header, const char *claims)
{
	strcpy(out, "Bearer ");
	size_t at = strlen(out);
	at += b64url(out + at, TOKEN_TEXT - at, (const uint8_t *)header, strlen(header));
	out[at++] = '.';
	at += b64url(out + at, TOKEN_TEXT - at, (const uint8_t *)claims, strlen(claims));
	out[at] = '\0';
	return strlen("Bearer ");
}

static void append_signature(char *out, const uint8_t *signature, size_t len)
{
	size_t at = strlen(out);
	out[at++] = '.';
	b64url(out + at, TOKEN_TEXT - at, signature, len);
}

static void hs256_sign_with(char *out, const char *header, const char *claims, const void *key,
                            size_t key_len)
{
	const size_t from = signing_input(out, header, claims);
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, key_len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)out + from, strlen(out + from));
	crypto_auth_hmacsha256_final(&st, mac);
	append_signature(out, mac, sizeof(mac));
}

static void hs256(char *out, const char *header, const char *claims)
{
	hs256_sign_with(out, header, claims, SECRET, strlen(SECRET));
}

/* R || S of an ES256 signature, S in low form (S <= n/2); high_s gets the twin n - S. */
static void es256_raw(const fixture *f, const char *input, uint8_t raw[64], uint8_t high_s[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_non_null(md);
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, f->es256_key), 1);
	uint8_t der[128];
	size_t der_len = sizeof(der);
	assert_int_equal(EVP_DigestSign(md, der, &der_len, (const uint8_t *)input, strlen(input)),
	                 1);
	EVP_MD_CTX_free(md);
	const uint8_t *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	assert_non_null(sig);
	EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	const BIGNUM *n = EC_GROUP_get0_order(group);
	BIGNUM *s = BN_dup(ECDSA_SIG_get0_s(sig));
	BIGNUM *twin = BN_new();
	assert_int_equal(BN_sub(twin, n, s), 1);
	if (BN_cmp(s, twin) > 0) { /* s was the high one */
		BIGNUM *t = s;
		s = twin;
		twin = t;
	}
	assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32), 32);
	assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
	assert_int_equal(BN_bn2binpad(twin, high_s, 32), 32);
	BN_free(s);
	BN_free(twin);
	EC_GROUP_free(group);
	ECDSA_SIG_free(sig);
}

/* True when OpenSSL itself accepts R || S over input with the fixture's key. */
static bool openssl_verifies(const fixture *f, const char *input, const uint8_t raw[64])
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	assert_int_equal(
	    ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL)), 1);
	uint8_t *der = NULL;
	int der_len = i2d_ECDSA_SIG(sig, &der);
	assert_true(der_len > 0);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, f->es256_key), 1);
	int rc = EVP_DigestVerify(md, der, (size_t)der_len, (const uint8_t *)input, strlen(input));
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	ECDSA_SIG_free(sig);
	return rc == 1;
}

typedef enum { LOW_S, HIGH_S } s_form;

static void es256(const fixture *f, char *out, const char *claims, s_form form)
{
	const size_t from = signing_input(out, ES256_HEADER, claims);
	uint8_t raw[64], high_s[32];
	es256_raw(f, out + from, raw, high_s);
	if (form == HIGH_S) {
		memcpy(raw + 32, high_s, 32);
		assert_true(
		    openssl_verifies(f, out + from, raw)); /* the twin is a valid signature */
	}
	append_signature(out, raw, sizeof(raw));
}

/* The claims of a good token, with extra members spliced in before the closing brace. */
static void claims_with(char *out, size_t out_max, const char *sub, int64_t exp, const char *extra)
{
	text(out, out_max,
	     "{\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\",\"sub\":\"%s\",\"iat\":%lld,"
	     "\"exp\":%lld%s}",
	     sub, (long long)NOW, (long long)exp, extra);
}

/* ---- verifying ---- */

static bool verify_at(const bkv_auth *auth, const char *token, int64_t now, char *account,
                      const char **why)
{
	uint8_t buf[BKV_AUTH_ACCOUNT_MAX];
	size_t len = 0;
	*why = NULL;
	bool ok = bkv_auth_verify(auth, token, now, buf, &len, why);
	if (ok) {
		assert_true(len >= 1 && len <= BKV_AUTH_ACCOUNT_MAX);
		memcpy(account, buf, len);
		account[len] = '\0';
	} else {
		assert_non_null(*why);
	}
	return ok;
}

static void assert_accepted(const bkv_auth *auth, const char *token, const char *account)
{
	char got[BKV_AUTH_ACCOUNT_MAX + 1];
	const char *why;
	bool ok = verify_at(auth, token, NOW, got, &why);
	if (!ok)
		fail_msg("rejected: %s", why);
	assert_string_equal(got, account);
}

/* Rejected, for a reason that names `reason`. */
static void assert_rejected_at(const bkv_auth *auth, const char *token, int64_t now,
                               const char *reason)
{
	char got[BKV_AUTH_ACCOUNT_MAX + 1];
	const char *why;
	assert_false(verify_at(auth, token, now, got, &why));
	if (strstr(why, reason) == NULL)
		fail_msg("rejected for \"%s\", expected a reason naming \"%s\"", why, reason);
}

static void assert_rejected(const bkv_auth *auth, const char *token, const char *reason)
{
	assert_rejected_at(auth, token, NOW, reason);
}

static char token[TOKEN_TEXT];
static char claims[TOKEN_TEXT];

static void hs256_claims(const char *extra, int64_t exp)
{
	claims_with(claims, sizeof(claims), "alice", exp, extra);
	hs256(token, HS256_HEADER, claims);
}

/* ---- good tokens ---- */

static void libjwt_minted_token_verifies(void **state)
{
	fixture *f = *state;
	char *jwt = bkv_auth_mint(&f->hs256, "alice", NOW, LIFETIME);
	assert_non_null(jwt);
	text(token, sizeof(token), "Bearer %s", jwt);
	free(jwt);
	assert_accepted(&f->hs256, token, "alice");
}

static void hand_signed_hs256_token_verifies(void **state)
{
	fixture *f = *state;
	hs256_claims("", NOW + 600);
	assert_accepted(&f->hs256, token, "alice");
}

static void es256_low_s_token_verifies(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "bob", NOW + 600, "");
	es256(f, token, claims, LOW_S);
	assert_accepted(&f->es256, token, "bob");
}

/* ---- signatures and algorithms ---- */

/* The same claims signed by another P-256 key, and this key's signature moved onto other
 * claims: both refused, while the token they were made from verifies. */
static void es256_signature_by_another_key_or_over_other_claims_is_rejected(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "bob", NOW + 600, "");
	es256(f, token, claims, LOW_S);
	assert_accepted(&f->es256, token, "bob");
	const char *signature = strrchr(token, '.');
	char other_claims[TOKEN_TEXT], moved[TOKEN_TEXT];
	claims_with(other_claims, sizeof(other_claims), "eve", NOW + 600, "");
	es256(f, moved, other_claims, LOW_S);
	char *dot = strrchr(moved, '.');
	text(dot, sizeof(moved) - (size_t)(dot - moved), "%s", signature);
	assert_rejected(&f->es256, moved, "signature");

	fixture other = *f;
	other.es256_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(other.es256_key);
	es256(&other, token, claims, LOW_S);
	EVP_PKEY_free(other.es256_key);
	assert_rejected(&f->es256, token, "signature");
}

/* A PEM public key from an RFC 7517 JWK's x and y (base64url), P-256. */
static size_t p256_pem_from_jwk(const char *x, const char *y, char *pem, size_t pem_max)
{
	uint8_t point[65] = {0x04};
	size_t len = 0;
	assert_int_equal(sodium_base642bin(point + 1, 32, x, strlen(x), NULL, &len, NULL,
	                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
	                 0);
	assert_int_equal(len, 32);
	assert_int_equal(sodium_base642bin(point + 33, 32, y, strlen(y), NULL, &len, NULL,
	                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
	                 0);
	assert_int_equal(len, 32);
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
	    OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)),
	    OSSL_PARAM_construct_end()};
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pk = NULL;
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PUBKEY(bio, pk), 1);
	const int n = BIO_read(bio, pem, (int)pem_max);
	assert_true(n > 0);
	BIO_free(bio);
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(ctx);
	return (size_t)n;
}

/* RFC 7515 A.3: its ES256 token and public key. Its S is the high one of the pair, so the
 * token is refused as not low-S; with S replaced by n - S (its low-S twin, equally valid)
 * the signature is accepted and the token gets as far as the claims (its iss is "joe");
 * with one bit of R changed it does not. */
static void rfc7515_es256_signature_verifies(void **state)
{
	(void)state;
	static const char header_claims[] = "eyJhbGciOiJFUzI1NiJ9."
	                                    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dH"
	                                    "A6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0"
	                                    "cnVlfQ";
	static const char signature[] = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-"
	                                "F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
	char pem[1024];
	const size_t pem_len =
	    p256_pem_from_jwk("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
	                      "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", pem, sizeof(pem));
	bkv_auth auth;
	char why[256];
	assert_true(init_auth(&auth, "ES256", pem, pem_len, LIFETIME, SKEW, why, sizeof(why)));
	text(token, sizeof(token), "Bearer %s.%s", header_claims, signature);
	assert_rejected(&auth, token, "low-S");

	uint8_t raw[64];
	size_t len = 0;
	assert_int_equal(sodium_base642bin(raw, sizeof(raw), signature, strlen(signature), NULL,
	                                   &len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
	                 0);
	assert_int_equal(len, 64);
	EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	BIGNUM *s = BN_bin2bn(raw + 32, 32, NULL);
	assert_int_equal(BN_sub(s, EC_GROUP_get0_order(group), s), 1);
	assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
	BN_free(s);
	EC_GROUP_free(group);
	text(token, sizeof(token), "Bearer %s", header_claims);
	append_signature(token, raw, sizeof(raw));
	assert_rejected(&auth, token, "issuer");
	raw[5] ^= 0x10;
	text(token, sizeof(token), "Bearer %s", header_claims);
	append_signature(token, raw, sizeof(raw));
	assert_rejected(&auth, token, "signature");
	bkv_auth_free(&auth);
}

static void hs256_token_signed_with_another_secret_is_rejected(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "alice", NOW + 600, "");
	static const char other[] = "another secret that is at least thirty-two bytes";
	hs256_sign_with(token, HS256_HEADER, claims, other, strlen(other));
	assert_rejected(&f->hs256, token, "signature");
}

/* RFC 7515 A.1: its HS256 token and 64-byte key. The signature is accepted, so the token
 * gets as far as the claims (its iss is "joe"); with one signature bit changed it does not. */
static void rfc7515_hs256_signature_verifies(void **state)
{
	(void)state;
	static const char k[] =
	    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUu"
	    "TwjAzZr1Z9CAow";
	static const char rfc_token[] = "Bearer eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
	                                "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly"
	                                "9leGFtcGxlLmNvbS9pc19yb290Ijp0"
	                                "cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
	uint8_t key[64];
	size_t key_len = 0;
	assert_int_equal(sodium_base642bin(key, sizeof(key), k, strlen(k), NULL, &key_len, NULL,
	                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
	                 0);
	assert_int_equal(key_len, 64);
	bkv_auth auth;
	char why[256];
	assert_true(init_auth(&auth, "HS256", key, key_len, LIFETIME, SKEW, why, sizeof(why)));
	assert_rejected(&auth, rfc_token, "issuer");
	text(token, sizeof(token), "%s", rfc_token);
	token[strlen(token) - 2] = token[strlen(token) - 2] == 'X' ? 'Y' : 'X';
	assert_rejected(&auth, token, "signature");
	bkv_auth_free(&auth);
}

/* A secret longer than SHA-256's block is hashed first (RFC 2104): minted by libjwt, whose
 * HMAC is OpenSSL's, it verifies here. */
static void hs256_secret_longer_than_a_block_verifies(void **state)
{
	(void)state;
	static const char long_secret[] =
	    "a secret longer than the sixty-four bytes of one SHA-256 block, so HMAC hashes it";
	assert_true(strlen(long_secret) > 64);
	bkv_auth auth;
	char why[256];
	assert_true(init_auth(&auth, "HS256", long_secret, strlen(long_secret), LIFETIME, SKEW, why,
	                      sizeof(why)));
	char *jwt = bkv_auth_mint(&auth, "carol", NOW, LIFETIME);
	assert_non_null(jwt);
	text(token, sizeof(token), "Bearer %s", jwt);
	free(jwt);
	assert_accepted(&auth, token, "carol");
	bkv_auth_free(&auth);
}

/* A tag of another length than 32 bytes, or claims changed after signing, never verify. */
static void hs256_signature_of_wrong_length_or_over_other_claims_is_rejected(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "alice", NOW + 600, "");
	const size_t from = signing_input(token, HS256_HEADER, claims);
	uint8_t mac[crypto_auth_hmacsha256_BYTES + 1];
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, (const uint8_t *)SECRET, strlen(SECRET));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)token + from, strlen(token + from));
	crypto_auth_hmacsha256_final(&st, mac);
	mac[crypto_auth_hmacsha256_BYTES] = 0;
	char signed_input[TOKEN_TEXT];
	text(signed_input, sizeof(signed_input), "%s", token);
	append_signature(token, mac, crypto_auth_hmacsha256_BYTES - 1);
	assert_rejected(&f->hs256, token, "signature");
	text(token, sizeof(token), "%s", signed_input);
	append_signature(token, mac, crypto_auth_hmacsha256_BYTES + 1);
	assert_rejected(&f->hs256, token, "signature");
	text(token, sizeof(token), "%s", signed_input);
	append_signature(token, mac, crypto_auth_hmacsha256_BYTES);
	assert_accepted(&f->hs256, token, "alice");
	/* the same tag over claims naming another account */
	char other_claims[TOKEN_TEXT];
	claims_with(other_claims, sizeof(other_claims), "mallory", NOW + 600, "");
	signing_input(token, HS256_HEADER, other_claims);
	append_signature(token, mac, crypto_auth_hmacsha256_BYTES);
	assert_rejected(&f->hs256, token, "signature");
}

static void es256_high_s_twin_is_rejected(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "bob", NOW + 600, "");
	es256(f, token, claims, HIGH_S);
	assert_rejected(&f->es256, token, "low-S");
}

static void es256_signature_of_wrong_length_is_rejected(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "bob", NOW + 600, "");
	const size_t from = signing_input(token, ES256_HEADER, claims);
	uint8_t raw[64], high_s[32];
	es256_raw(f, token + from, raw, high_s);
	append_signature(token, raw, 63);
	assert_rejected(&f->es256, token, "64 bytes");
}

static void algorithm_none_is_rejected(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "alice", NOW + 600, "");
	signing_input(token, "{\"alg\":\"none\"}", claims);
	strcat(token, ".");
	assert_rejected(&f->hs256, token, "malformed"); /* RFC 7519 6.1: an empty signature */
	hs256(token, "{\"alg\":\"none\"}", claims);
	assert_rejected(&f->hs256, token, "algorithm");
}

static void algorithm_other_than_the_pinned_one_is_rejected(void **state)
{
	fixture *f = *state;
	/* HS256 signed with the ES256 vault's public key as the secret: the classic confusion */
	claims_with(claims, sizeof(claims), "bob", NOW + 600, "");
	hs256_sign_with(token, HS256_HEADER, claims, f->es256_public_pem, f->es256_public_pem_len);
	assert_rejected(&f->es256, token, "algorithm");
	/* and an ES256 token offered to the HS256 vault */
	es256(f, token, claims, LOW_S);
	assert_rejected(&f->hs256, token, "algorithm");
	hs256(token, "{\"alg\":\"HS512\"}", claims);
	assert_rejected(&f->hs256, token, "algorithm");
	hs256(token, "{\"typ\":\"JWT\"}", claims);
	assert_rejected(&f->hs256, token, "algorithm");
}

/* ---- the header ---- */

static void crit_header_is_rejected(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "alice", NOW + 600, ",\"x-ext\":1");
	hs256(token, "{\"alg\":\"HS256\",\"crit\":[\"x-ext\"]}", claims);
	assert_rejected(&f->hs256, token, "crit");
	hs256(token, "{\"alg\":\"HS256\",\"crit\":[]}", claims);
	assert_rejected(&f->hs256, token, "crit");
	hs256(token, "{\"alg\":\"HS256\",\"x-ext\":[]}", claims); /* the twin without crit */
	assert_accepted(&f->hs256, token, "alice");
}

static void duplicate_header_parameter_is_rejected(void **state)
{
	fixture *f = *state;
	claims_with(claims, sizeof(claims), "alice", NOW + 600, "");
	hs256(token, "{\"alg\":\"none\",\"alg\":\"HS256\"}", claims);
	assert_rejected(&f->hs256, token, "repeats");
	hs256(token, "{\"alg\":\"HS256\",\"alg\":\"HS256\"}", claims);
	assert_rejected(&f->hs256, token, "repeats");
}

/* ---- the claims ---- */

static void duplicate_sub_is_rejected(void **state)
{
	fixture *f = *state;
	hs256_claims(",\"sub\":\"mallory\"", NOW + 600);
	assert_rejected(&f->hs256, token, "repeats");
}

static void any_duplicate_claim_is_rejected(void **state)
{
	fixture *f = *state;
	hs256_claims(",\"exp\":1", NOW + 600);
	assert_rejected(&f->hs256, token, "repeats");
	hs256_claims(",\"iss\":\"" ISSUER "\"", NOW + 600);
	assert_rejected(&f->hs256, token, "repeats");
}

static void issuer_must_match(void **state)
{
	fixture *f = *state;
	text(claims, sizeof(claims),
	     "{\"iss\":\"https://other.example\",\"aud\":\"bkv\",\"sub\":\"a\",\"exp\":%lld}",
	     (long long)NOW + 600);
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "issuer");
	text(claims, sizeof(claims), "{\"aud\":\"bkv\",\"sub\":\"a\",\"exp\":%lld}",
	     (long long)NOW + 600);
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "issuer");
}

static void audience_as_string_or_array_must_name_the_vault(void **state)
{
	fixture *f = *state;
#define AUD_CLAIMS "{\"iss\":\"" ISSUER "\",\"aud\":%s,\"sub\":\"a\",\"exp\":%lld}"
	const char *accepted[] = {"\"bkv\"", "[\"other\",\"bkv\"]", "[\"bkv\"]"};
	const char *rejected[] = {"\"other\"", "[\"other\"]", "[]", "[1,{}]", "7", "null"};
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		text(claims, sizeof(claims), AUD_CLAIMS, accepted[i], (long long)NOW + 600);
		hs256(token, HS256_HEADER, claims);
		assert_accepted(&f->hs256, token, "a");
	}
	for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
		text(claims, sizeof(claims), AUD_CLAIMS, rejected[i], (long long)NOW + 600);
		hs256(token, HS256_HEADER, claims);
		assert_rejected(&f->hs256, token, "aud");
	}
}

static void expiry_is_required_and_must_be_a_non_negative_integer(void **state)
{
	fixture *f = *state;
	text(claims, sizeof(claims), "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":\"a\"}");
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "exp");
	const char *bad[] = {"1800000600.0", "1.8e9", "\"1800000600\"", "-1", "0", "true", "null"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text(claims, sizeof(claims),
		     "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":\"a\",\"exp\":%s}", bad[i]);
		hs256(token, HS256_HEADER, claims);
		assert_rejected(&f->hs256, token, "exp");
	}
}

static void expiry_near_int64_max_is_rejected_without_overflow(void **state)
{
	fixture *f = *state;
	hs256_claims("", INT64_MAX);
	assert_rejected(&f->hs256, token, "lifetime");
	hs256_claims("", INT64_MAX - SKEW + 1);
	assert_rejected(&f->hs256, token, "lifetime");
	/* beyond int64: the JSON parser refuses the number */
	text(claims, sizeof(claims),
	     "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":\"a\",\"exp\":9223372036854775808}");
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "malformed");
	/* a clock near INT64_MAX: no sum overflows, and a token with a sane lifetime passes */
	char got[BKV_AUTH_ACCOUNT_MAX + 1];
	const char *why;
	text(claims, sizeof(claims),
	     "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":\"a\",\"exp\":%lld}",
	     (long long)INT64_MAX);
	hs256(token, HS256_HEADER, claims);
	assert_true(verify_at(&f->hs256, token, INT64_MAX - 10, got, &why));
	assert_false(verify_at(&f->hs256, token, INT64_MIN, got, &why));
}

static void expiry_is_checked_with_the_clock_skew(void **state)
{
	fixture *f = *state;
	hs256_claims("", NOW - SKEW);
	assert_accepted(&f->hs256, token, "alice");
	hs256_claims("", NOW - SKEW - 1);
	assert_rejected(&f->hs256, token, "expired");
}

static void lifetime_is_bounded(void **state)
{
	fixture *f = *state;
	hs256_claims("", NOW + LIFETIME + SKEW);
	assert_accepted(&f->hs256, token, "alice");
	hs256_claims("", NOW + LIFETIME + SKEW + 1);
	assert_rejected(&f->hs256, token, "lifetime");
}

static void issued_in_the_future_is_rejected(void **state)
{
	fixture *f = *state;
	text(claims, sizeof(claims),
	     "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":\"a\",\"iat\":%lld,\"exp\":%lld}",
	     (long long)NOW + SKEW, (long long)NOW + 600);
	hs256(token, HS256_HEADER, claims);
	assert_accepted(&f->hs256, token, "a");
	text(claims, sizeof(claims),
	     "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":\"a\",\"iat\":%lld,\"exp\":%lld}",
	     (long long)NOW + SKEW + 1, (long long)NOW + 600);
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "iat");
	text(claims, sizeof(claims),
	     "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":\"a\",\"iat\":%lld,\"exp\":%lld}",
	     (long long)INT64_MAX, (long long)NOW + 600);
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "iat");
}

static void not_before_in_the_future_is_rejected(void **state)
{
	fixture *f = *state;
	char extra[64];
	text(extra, sizeof(extra), ",\"nbf\":%lld", (long long)NOW + SKEW);
	hs256_claims(extra, NOW + 600);
	assert_accepted(&f->hs256, token, "alice");
	text(extra, sizeof(extra), ",\"nbf\":%lld", (long long)NOW + SKEW + 1);
	hs256_claims(extra, NOW + 600);
	assert_rejected(&f->hs256, token, "nbf");
	hs256_claims(",\"nbf\":9223372036854775807", NOW + 600);
	assert_rejected(&f->hs256, token, "nbf");
}

static void time_claims_that_are_not_integers_are_rejected(void **state)
{
	fixture *f = *state;
	const char *iat[] = {",\"nbf\":1.5", ",\"nbf\":\"0\"", ",\"nbf\":-1"};
	for (size_t i = 0; i < sizeof(iat) / sizeof(iat[0]); i++) {
		hs256_claims(iat[i], NOW + 600);
		assert_rejected(&f->hs256, token, "nbf");
	}
#define IAT_CLAIMS "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":\"a\",\"iat\":%s,\"exp\":%lld}"
	const char *bad[] = {"1800000000.5", "\"1800000000\"", "-1", "[]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text(claims, sizeof(claims), IAT_CLAIMS, bad[i], (long long)NOW + 600);
		hs256(token, HS256_HEADER, claims);
		assert_rejected(&f->hs256, token, "iat");
	}
}

static void subject_must_be_a_string_of_1_to_256_bytes(void **state)
{
	fixture *f = *state;
	char sub[BKV_AUTH_ACCOUNT_MAX + 2];
	memset(sub, 'x', sizeof(sub));
	sub[BKV_AUTH_ACCOUNT_MAX] = '\0';
	claims_with(claims, sizeof(claims), sub, NOW + 600, "");
	hs256(token, HS256_HEADER, claims);
	assert_accepted(&f->hs256, token, sub);
	sub[BKV_AUTH_ACCOUNT_MAX] = 'x';
	sub[BKV_AUTH_ACCOUNT_MAX + 1] = '\0';
	claims_with(claims, sizeof(claims), sub, NOW + 600, "");
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "subject");
	claims_with(claims, sizeof(claims), "", NOW + 600, "");
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "subject");
	text(claims, sizeof(claims),
	     "{\"iss\":\"" ISSUER "\",\"aud\":\"bkv\",\"sub\":42,\"exp\":%lld}",
	     (long long)NOW + 600);
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "subject");
	/* an embedded NUL would make "a\0b" read as "a" to strlen: the parser refuses it */
	claims_with(claims, sizeof(claims), "a\\u0000b", NOW + 600, "");
	hs256(token, HS256_HEADER, claims);
	assert_rejected(&f->hs256, token, "malformed");
}

/* ---- the token's shape ---- */

static void malformed_tokens_are_rejected(void **state)
{
	fixture *f = *state;
	hs256_claims("", NOW + 600);
	char copy[TOKEN_TEXT];
	/* a fourth part */
	text(copy, sizeof(copy), "%s.AAAA", token);
	assert_rejected(&f->hs256, copy, "malformed");
	/* two parts */
	*strrchr(copy, '.') = '\0';
	*strrchr(copy, '.') = '\0';
	assert_rejected(&f->hs256, copy, "malformed");
	/* padding, and a character outside base64url */
	text(copy, sizeof(copy), "%s=", token);
	assert_rejected(&f->hs256, copy, "malformed");
	text(copy, sizeof(copy), "%s", token);
	copy[strlen("Bearer ") + 2] = '+';
	assert_rejected(&f->hs256, copy, "malformed");
	/* an empty signature */
	text(copy, sizeof(copy), "%s", token);
	strrchr(copy, '.')[1] = '\0';
	assert_rejected(&f->hs256, copy, "malformed");
	/* a header that is JSON but not an object, and claims that are not JSON */
	hs256(token, "[\"HS256\"]", claims);
	assert_rejected(&f->hs256, token, "malformed");
	hs256(token, HS256_HEADER, "{\"sub\":");
	assert_rejected(&f->hs256, token, "malformed");
}

static void authorization_header_must_be_a_bearer_token_of_bounded_size(void **state)
{
	fixture *f = *state;
	char got[BKV_AUTH_ACCOUNT_MAX + 1];
	const char *why;
	assert_false(verify_at(&f->hs256, NULL, NOW, got, &why));
	hs256_claims("", NOW + 600);
	assert_rejected(&f->hs256, token + strlen("Bearer "), "Bearer");
	/* padded with a claim to just over the cap: refused before any parsing */
	static char pad[BKV_AUTH_TOKEN_MAX];
	static char extra[BKV_AUTH_TOKEN_MAX];
	memset(pad, 'p', BKV_AUTH_TOKEN_MAX * 3 / 4);
	text(extra, sizeof(extra), ",\"x\":\"%s\"", pad);
	hs256_claims(extra, NOW + 600);
	assert_true(strlen(token) - strlen("Bearer ") > BKV_AUTH_TOKEN_MAX);
	assert_rejected(&f->hs256, token, "too long");
}

/* ---- configuration ---- */

static void settings_that_would_overflow_are_refused(void **state)
{
	(void)state;
	bkv_auth auth;
	char why[256];
	assert_false(
	    init_auth(&auth, "HS256", SECRET, strlen(SECRET), INT64_MAX, 1, why, sizeof(why)));
	assert_non_null(strstr(why, "max_lifetime"));
	assert_true(
	    init_auth(&auth, "HS256", SECRET, strlen(SECRET), INT64_MAX - 1, 1, why, sizeof(why)));
	bkv_auth_free(&auth);
	assert_false(init_auth(&auth, "HS512", SECRET, strlen(SECRET), 60, 1, why, sizeof(why)));
	assert_false(init_auth(&auth, "HS256", "short", 5, 60, 1, why, sizeof(why)));
}

/* ES256 needs a P-256 public key in PEM: another curve, an RSA key, a private key or no
 * PEM at all stops the start with a message that names the file's problem. */
static void es256_key_must_be_a_p256_public_key(void **state)
{
	fixture *f = *state;
	bkv_auth auth;
	char why[512], pem[8192];
	assert_true(init_auth(&auth, "ES256", f->es256_public_pem, f->es256_public_pem_len,
	                      LIFETIME, SKEW, why, sizeof(why)));
	bkv_auth_free(&auth);
	EVP_PKEY *keys[] = {EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"),
	                    EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048),
	                    EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		assert_non_null(keys[i]);
		BIO *bio = BIO_new(BIO_s_mem());
		assert_int_equal(PEM_write_bio_PUBKEY(bio, keys[i]), 1);
		const int n = BIO_read(bio, pem, sizeof(pem));
		BIO_free(bio);
		EVP_PKEY_free(keys[i]);
		assert_true(n > 0);
		assert_false(
		    init_auth(&auth, "ES256", pem, (size_t)n, LIFETIME, SKEW, why, sizeof(why)));
		assert_non_null(strstr(why, "ES256 needs a P-256 public key"));
		assert_non_null(strstr(why, "another type or curve"));
	}
	/* the fixture's private key, and a secret that is no PEM */
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(bio, f->es256_key, NULL, NULL, 0, NULL, NULL), 1);
	const int n = BIO_read(bio, pem, sizeof(pem));
	BIO_free(bio);
	assert_true(n > 0);
	assert_false(init_auth(&auth, "ES256", pem, (size_t)n, LIFETIME, SKEW, why, sizeof(why)));
	assert_non_null(strstr(why, "no PEM public key"));
	assert_false(
	    init_auth(&auth, "ES256", SECRET, strlen(SECRET), LIFETIME, SKEW, why, sizeof(why)));
	assert_non_null(strstr(why, "no PEM public key"));
}

/* ---- the cache of verified tokens ----
 * Each test first checks that the cache was used where it says so (the hit counter), so
 * that a rule it then shows still holding held for a cached token and not for a fresh
 * verify. */

static void assert_hits(const bkv_auth *auth, uint64_t before, uint64_t more)
{
	assert_int_equal(bkv_auth_cache_hits(auth) - before, more);
}

/* The attack: a token is used once while valid, then again after its expiry, or with the
 * clock set back before its nbf or iat, or so far back that its exp lies beyond the
 * lifetime. The cached token is checked against the clock at each use, as a fresh one is. */
static void a_cached_token_is_checked_against_the_clock_at_every_use(void **state)
{
	fixture *f = *state;
	char extra[64], got[BKV_AUTH_ACCOUNT_MAX + 1];
	const char *why;
	text(extra, sizeof(extra), ",\"nbf\":%lld", (long long)NOW + 10); /* iat is NOW */
	claims_with(claims, sizeof(claims), "clock", NOW + 100, extra);
	hs256(token, HS256_HEADER, claims);
	const uint64_t hits = bkv_auth_cache_hits(&f->hs256);
	assert_true(verify_at(&f->hs256, token, NOW, got, &why));
	assert_hits(&f->hs256, hits, 0); /* the first use verifies */
	assert_true(verify_at(&f->hs256, token, NOW + 100 + SKEW, got, &why));
	assert_string_equal(got, "clock");
	assert_hits(&f->hs256, hits, 1); /* the second comes from the cache */
	const struct {
		int64_t now;
		const char *reason;
	} refused[] = {
	    {NOW + 100 + SKEW + 1, "expired"},
	    {NOW + 10 - SKEW - 1, "nbf"},
	    {NOW - SKEW - 1, "iat"},
	    {NOW + 100 - LIFETIME - SKEW - 1, "lifetime"},
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		assert_rejected_at(&f->hs256, token, refused[i].now, refused[i].reason);
	assert_true(verify_at(&f->hs256, token, NOW, got, &why));
	assert_hits(&f->hs256, hits, 2); /* only the accepted uses count */
}

/* The attack: a valid token is verified, then one that differs from it in one character
 * (of the signature, of the claims, or one character appended) is sent. None of them may
 * ride on the cached verify. */
static void a_token_that_differs_from_a_cached_one_is_verified_on_its_own(void **state)
{
	fixture *f = *state;
	for (int alg = 0; alg < 2; alg++) {
		const bkv_auth *auth = alg == 0 ? &f->hs256 : &f->es256;
		claims_with(claims, sizeof(claims), "mallory", NOW + 600, "");
		if (alg == 0)
			hs256(token, HS256_HEADER, claims);
		else
			es256(f, token, claims, LOW_S);
		assert_accepted(auth, token, "mallory");
		const uint64_t hits = bkv_auth_cache_hits(auth);
		assert_accepted(auth, token, "mallory");
		assert_hits(auth, hits, 1);
		char altered[TOKEN_TEXT];
		const size_t len = strlen(token);
		const char *dot = strchr(token + strlen("Bearer "), '.');
		const size_t at[] = {len - 2, (size_t)(dot - token) + 3};
		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
			memcpy(altered, token, len + 1);
			altered[at[i]] = altered[at[i]] == 'A' ? 'B' : 'A';
			assert_rejected(auth, altered, "");
		}
		text(altered, sizeof(altered), "%sA", token);
		assert_rejected(auth, altered, "malformed");
		assert_hits(auth, hits, 1);
	}
}

/* More tokens than the cache has slots, each for its own account, in two rounds: every
 * answer names the token's own account, whichever token last held its slot. */
static void each_token_answers_for_its_own_account_when_slots_are_shared(void **state)
{
	fixture *f = *state;
	enum { TOKENS = 3000 };
	char **tokens = calloc(TOKENS, sizeof(*tokens));
	assert_non_null(tokens);
	char sub[32], got[BKV_AUTH_ACCOUNT_MAX + 1];
	const char *why;
	for (int i = 0; i < TOKENS; i++) {
		text(sub, sizeof(sub), "account-%d", i);
		claims_with(claims, sizeof(claims), sub, NOW + 600, "");
		hs256(token, HS256_HEADER, claims); /* the signers write TOKEN_TEXT-sized buffers */
		tokens[i] = strdup(token);
		assert_non_null(tokens[i]);
	}
	const uint64_t hits = bkv_auth_cache_hits(&f->hs256);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < TOKENS; i++) {
			text(sub, sizeof(sub), "account-%d", i);
			assert_true(verify_at(&f->hs256, tokens[i], NOW, got, &why));
			assert_string_equal(got, sub);
		}
	}
	/* some of the second round came from the cache, and not all: slots were shared */
	const uint64_t more = bkv_auth_cache_hits(&f->hs256) - hits;
	assert_true(more > 0 && more < TOKENS);
	for (int i = 0; i < TOKENS; i++)
		free(tokens[i]);
	free(tokens);
}

/* A token refused once is refused again: refusals are never cached, and a token that was
 * rejected for its time is accepted once its time comes, with its own account. */
static void a_refused_token_is_not_remembered(void **state)
{
	fixture *f = *state;
	char extra[64], got[BKV_AUTH_ACCOUNT_MAX + 1];
	const char *why;
	text(extra, sizeof(extra), ",\"nbf\":%lld", (long long)NOW + 1000);
	claims_with(claims, sizeof(claims), "later", NOW + 2000, extra);
	hs256(token, HS256_HEADER, claims);
	const uint64_t hits = bkv_auth_cache_hits(&f->hs256);
	assert_false(verify_at(&f->hs256, token, NOW, got, &why));
	assert_false(verify_at(&f->hs256, token, NOW, got, &why));
	assert_true(verify_at(&f->hs256, token, NOW + 1000, got, &why));
	assert_string_equal(got, "later");
	assert_hits(&f->hs256, hits, 0);
	hs256_sign_with(token, HS256_HEADER, claims, "another secret of at least thirty-two bytes",
	                strlen("another secret of at least thirty-two bytes"));
	assert_rejected(&f->hs256, token, "signature");
	assert_rejected(&f->hs256, token, "signature");
	assert_hits(&f->hs256, hits, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(libjwt_minted_token_verifies),
	    cmocka_unit_test(hand_signed_hs256_token_verifies),
	    cmocka_unit_test(es256_low_s_token_verifies),
	    cmocka_unit_test(hs256_token_signed_with_another_secret_is_rejected),
	    cmocka_unit_test(rfc7515_hs256_signature_verifies),
	    cmocka_unit_test(hs256_secret_longer_than_a_block_verifies),
	    cmocka_unit_test(hs256_signature_of_wrong_length_or_over_other_claims_is_rejected),
	    cmocka_unit_test(es256_high_s_twin_is_rejected),
	    cmocka_unit_test(es256_signature_of_wrong_length_is_rejected),
	    cmocka_unit_test(es256_signature_by_another_key_or_over_other_claims_is_rejected),
	    cmocka_unit_test(rfc7515_es256_signature_verifies),
	    cmocka_unit_test(es256_key_must_be_a_p256_public_key),
	    cmocka_unit_test(algorithm_none_is_rejected),
	    cmocka_unit_test(algorithm_other_than_the_pinned_one_is_rejected),
	    cmocka_unit_test(crit_header_is_rejected),
	    cmocka_unit_test(duplicate_header_parameter_is_rejected),
	    cmocka_unit_test(duplicate_sub_is_rejected),
	    cmocka_unit_test(any_duplicate_claim_is_rejected),
	    cmocka_unit_test(issuer_must_match),
	    cmocka_unit_test(audience_as_string_or_array_must_name_the_vault),
	    cmocka_unit_test(expiry_is_required_and_must_be_a_non_negative_integer),
	    cmocka_unit_test(expiry_near_int64_max_is_rejected_without_overflow),
	    cmocka_unit_test(expiry_is_checked_with_the_clock_skew),
	    cmocka_unit_test(lifetime_is_bounded),
	    cmocka_unit_test(issued_in_the_future_is_rejected),
	    cmocka_unit_test(not_before_in_the_future_is_rejected),
	    cmocka_unit_test(time_claims_that_are_not_integers_are_rejected),
	    cmocka_unit_test(subject_must_be_a_string_of_1_to_256_bytes),
	    cmocka_unit_test(malformed_tokens_are_rejected),
	    cmocka_unit_test(authorization_header_must_be_a_bearer_token_of_bounded_size),
	    cmocka_unit_test(settings_that_would_overflow_are_refused),
	    cmocka_unit_test(a_cached_token_is_checked_against_the_clock_at_every_use),
	    cmocka_unit_test(a_token_that_differs_from_a_cached_one_is_verified_on_its_own),
	    cmocka_unit_test(each_token_answers_for_its_own_account_when_slots_are_shared),
	    cmocka_unit_test(a_refused_token_is_not_remembered),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
