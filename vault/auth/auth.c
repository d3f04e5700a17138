/*
 * auth.c - JWT verification with the pinned algorithm, signatures checked here: HS256 with
 * HMAC-SHA-256 from a state keyed once at init (constant-time compare), ES256 with OpenSSL
 * and the P-256 public key parsed once at init (libjwt only mints development tokens).
 * This file decodes the header and claims itself (bounds-checked
 * base64url, JSON that refuses repeated members), once, and decides whether they are
 * acceptable.
 * Every time claim is compared without overflow, whatever integer a signer put in it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "auth.h"

#define KEY_FILE_MAX 16384
/* Tokens verified lately, per process: a recovery's RPCs carry the same token, and a hit
 * costs one BLAKE2b of the token where a verify costs two JSON parses and the signature
 * (an ECDSA verify, for ES256). Power of two. */
#define CACHE_SLOTS 1024

typedef enum { CLAIM_ABSENT, CLAIM_VALID, CLAIM_INVALID } claim_state;

/* The time claims, which are checked against the clock at every use. */
typedef struct token_times {
	int64_t exp;
	int64_t iat;
	int64_t nbf;
	claim_state iat_state;
	claim_state nbf_state;
} token_times;

/* A token that passed every check: its digest (never the token itself), its time claims
 * and its sub. Only the time claims can turn a verified token away again. */
typedef struct cached_token {
	uint8_t digest[crypto_generichash_BYTES];
	bool used;
	token_times times;
	size_t account_len;
	uint8_t account[BKV_AUTH_ACCOUNT_MAX];
} cached_token;

struct bkv_auth_cache {
	cached_token slot[CACHE_SLOTS];
	uint64_t hits;
};

static bool read_file(const char *path, uint8_t **out, size_t *len, char *why, size_t why_len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(why, why_len, "cannot read auth key file %s: %s", path, strerror(errno));
		return false;
	}
	uint8_t *buf = sodium_malloc(KEY_FILE_MAX);
	size_t n = buf ? fread(buf, 1, KEY_FILE_MAX, f) : 0;
	bool too_long = buf && fgetc(f) != EOF;
	fclose(f);
	if (buf == NULL || too_long || n == 0) {
		snprintf(why, why_len, "auth key file %s is empty or too large", path);
		sodium_free(buf);
		return false;
	}
	*out = buf;
	*len = n;
	return true;
}

/* ES256: the key file's PEM public key, which must be a P-256 one. */
static bool es256_load(bkv_auth *auth, const char *path, char *why, size_t why_len)
{
	BIO *bio = BIO_new_mem_buf(auth->key, (int)auth->key_len);
	EVP_PKEY *pk = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	char group[32] = "";
	const bool p256 = pk != NULL && EVP_PKEY_is_a(pk, "EC") &&
	                  EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
	                                                 sizeof(group), NULL) == 1 &&
	                  strcmp(group, SN_X9_62_prime256v1) == 0;
	ERR_clear_error();
	if (!p256) {
		snprintf(
		    why, why_len,
		    "[auth] ES256 needs a P-256 public key in PEM (-----BEGIN PUBLIC KEY-----); "
		    "%s holds %s",
		    path, pk == NULL ? "no PEM public key" : "a key of another type or curve");
		EVP_PKEY_free(pk);
		return false;
	}
	auth->es256_key = pk;
	return true;
}

bool bkv_auth_init(bkv_auth *auth, const bkv_auth_settings *s, char *why, size_t why_len)
{
	memset(auth, 0, sizeof(*auth));
	if (sodium_init() < 0) {
		snprintf(why, why_len, "cannot initialize libsodium");
		return false;
	}
	if (strcmp(s->algorithm, "ES256") == 0) {
		auth->alg = JWT_ALG_ES256;
	} else if (strcmp(s->algorithm, "HS256") == 0) {
		auth->alg = JWT_ALG_HS256;
	} else {
		snprintf(why, why_len, "[auth] algorithm must be ES256 or HS256");
		return false;
	}
	if (s->issuer == NULL || s->issuer[0] == '\0' || s->audience == NULL ||
	    s->audience[0] == '\0' || strlen(s->issuer) >= sizeof(auth->issuer) ||
	    strlen(s->audience) >= sizeof(auth->audience)) {
		snprintf(why, why_len, "[auth] issuer and audience are required");
		return false;
	}
	int64_t window;
	if (s->max_lifetime_s <= 0 || s->clock_skew_s < 0 ||
	    __builtin_add_overflow(s->max_lifetime_s, s->clock_skew_s, &window)) {
		snprintf(why, why_len, "[auth] max_lifetime must be positive, clock_skew >= 0");
		return false;
	}
	if (!read_file(s->key_file, &auth->key, &auth->key_len, why, why_len))
		return false;
	if (auth->alg == JWT_ALG_HS256 && auth->key_len < 32) {
		snprintf(why, why_len, "[auth] an HS256 secret must be at least 32 bytes");
		bkv_auth_free(auth);
		return false;
	}
	if (auth->alg == JWT_ALG_HS256) {
		crypto_auth_hmacsha256_state *state = sodium_malloc(sizeof(*state));
		if (state == NULL ||
		    crypto_auth_hmacsha256_init(state, auth->key, auth->key_len) != 0) {
			snprintf(why, why_len, "[auth] cannot key HMAC-SHA-256");
			sodium_free(state);
			bkv_auth_free(auth);
			return false;
		}
		auth->hs256_state = state;
	}
	if (auth->alg == JWT_ALG_ES256 && !es256_load(auth, s->key_file, why, why_len)) {
		bkv_auth_free(auth);
		return false;
	}
	auth->cache = calloc(1, sizeof(*auth->cache));
	if (auth->cache == NULL) {
		snprintf(why, why_len, "[auth] out of memory for the cache of verified tokens");
		bkv_auth_free(auth);
		return false;
	}
	snprintf(auth->issuer, sizeof(auth->issuer), "%s", s->issuer);
	snprintf(auth->audience, sizeof(auth->audience), "%s", s->audience);
	auth->max_lifetime_s = s->max_lifetime_s;
	auth->clock_skew_s = s->clock_skew_s;
	return true;
}

void bkv_auth_free(bkv_auth *auth)
{
	if (auth->key != NULL)
		sodium_free(auth->key);
	if (auth->hs256_state != NULL)
		sodium_free(auth->hs256_state); /* sodium_free wipes it */
	EVP_PKEY_free(auth->es256_key);
	if (auth->cache != NULL) {
		sodium_memzero(auth->cache, sizeof(*auth->cache));
		free(auth->cache);
	}
	memset(auth, 0, sizeof(*auth));
}

/*
 * The token's three parts, split and decoded here rather than read back from libjwt: libjwt
 * and jansson resolve a repeated member last-wins, so a token could carry two subs and be
 * read one way by the signer's tooling and another way here. Header and claims are parsed
 * with JSON_REJECT_DUPLICATES, and every claim is read from that parse.
 */
typedef struct jwt_parts {
	json_t *header;
	json_t *claims;
	uint8_t signature[64];
	size_t signature_len;
	size_t signing_input_len; /* header "." claims: the bytes the signature covers */
} jwt_parts;

/* base64url without padding (RFC 7515 2), canonical: libsodium refuses stray bits. */
static bool base64url_decode(const char *text, size_t text_len, uint8_t *out, size_t out_max,
                             size_t *out_len)
{
	const char *end = NULL;
	if (text_len == 0 || sodium_base642bin(out, out_max, text, text_len, NULL, out_len, &end,
	                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return false;
	return end == text + text_len;
}

static json_t *decode_json_object(const char *text, size_t text_len, bool *repeats)
{
	uint8_t bytes[BKV_AUTH_TOKEN_MAX];
	size_t len = 0;
	if (!base64url_decode(text, text_len, bytes, sizeof(bytes), &len))
		return NULL;
	json_error_t error;
	json_t *object = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, &error);
	if (object == NULL && json_error_code(&error) == json_error_duplicate_key)
		*repeats = true;
	if (!json_is_object(object)) {
		json_decref(object);
		return NULL;
	}
	return object;
}

static void jwt_parts_free(jwt_parts *parts)
{
	json_decref(parts->header);
	json_decref(parts->claims);
	memset(parts, 0, sizeof(*parts));
}

static bool jwt_parts_split(const char *token, jwt_parts *parts, const char **why)
{
	memset(parts, 0, sizeof(*parts));
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL) {
		*why = "invalid bearer token (malformed or bad signature)";
		return false;
	}
	bool repeats = false;
	parts->header = decode_json_object(token, (size_t)(dot1 - token), &repeats);
	parts->claims = decode_json_object(dot1 + 1, (size_t)(dot2 - dot1 - 1), &repeats);
	const char *signature = dot2 + 1;
	parts->signing_input_len = (size_t)(dot2 - token);
	if (parts->header == NULL || parts->claims == NULL ||
	    !base64url_decode(signature, strlen(signature), parts->signature,
	                      sizeof(parts->signature), &parts->signature_len)) {
		*why = repeats ? "the bearer token repeats a header parameter or claim"
		               : "invalid bearer token (malformed or bad signature)";
		jwt_parts_free(parts);
		return false;
	}
	return true;
}

/* n/2 for P-256 (floor). An ECDSA signature (R, S) verifies as (R, n - S) too; accepting
 * only S <= n/2 makes each signature unique, so a token cannot be re-encoded into a second
 * valid token. */
static const uint8_t P256_HALF_ORDER[32] = {
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8};

static bool header_acceptable(const bkv_auth *auth, const jwt_parts *parts, const char **why)
{
	const char *expected = auth->alg == JWT_ALG_ES256 ? "ES256" : "HS256";
	const char *alg = json_string_value(json_object_get(parts->header, "alg"));
	if (alg == NULL || strcmp(alg, expected) != 0) {
		*why = "the bearer token's algorithm is not the one this vault accepts";
		return false;
	}
	/* RFC 7515 4.1.11: a recipient that does not understand an extension listed in crit
	 * must reject the token, and this vault understands none. */
	if (json_object_get(parts->header, "crit") != NULL) {
		*why =
		    "the bearer token names a critical extension (crit) this vault does not know";
		return false;
	}
	if (auth->alg == JWT_ALG_ES256 && parts->signature_len != 64) {
		*why = "the bearer token's ES256 signature is not 64 bytes (R || S)";
		return false;
	}
	if (auth->alg == JWT_ALG_ES256 &&
	    memcmp(parts->signature + 32, P256_HALF_ORDER, sizeof(P256_HALF_ORDER)) > 0) {
		*why = "the bearer token's ES256 signature is not in low-S form";
		return false;
	}
	return true;
}

/* HS256 (RFC 7515 A.1): HMAC-SHA-256 over the signing input with the configured secret,
 * from the state keyed at init; the 32-byte tag is compared in constant time. The signature
 * was decoded canonically (jwt_parts_split), so its text has exactly one form. */
static bool hs256_verifies(const bkv_auth *auth, const char *token, const jwt_parts *parts)
{
	if (parts->signature_len != crypto_auth_hmacsha256_BYTES)
		return false;
	crypto_auth_hmacsha256_state state;
	uint8_t tag[crypto_auth_hmacsha256_BYTES];
	memcpy(&state, auth->hs256_state, sizeof(state));
	crypto_auth_hmacsha256_update(&state, (const unsigned char *)token,
	                              parts->signing_input_len);
	crypto_auth_hmacsha256_final(&state, tag);
	const bool ok = crypto_verify_32(tag, parts->signature) == 0;
	sodium_memzero(&state, sizeof(state));
	sodium_memzero(tag, sizeof(tag));
	return ok;
}

/* ES256 (RFC 7518 3.4): ECDSA P-256 with SHA-256 over the signing input. The signature is
 * R || S, 64 bytes with S in low form (header_acceptable), handed to OpenSSL as DER. */
static bool es256_verifies(const bkv_auth *auth, const char *token, const jwt_parts *parts)
{
	if (parts->signature_len != 64)
		return false;
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(parts->signature, 32, NULL);
	BIGNUM *s = BN_bin2bn(parts->signature + 32, 32, NULL);
	unsigned char *der = NULL;
	int der_len = -1;
	if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s) == 1) {
		r = s = NULL; /* sig's now */
		der_len = i2d_ECDSA_SIG(sig, &der);
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	EVP_MD_CTX *md = der_len > 0 ? EVP_MD_CTX_new() : NULL;
	const bool ok = md != NULL &&
	                EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, auth->es256_key) == 1 &&
	                EVP_DigestVerify(md, der, (size_t)der_len, (const unsigned char *)token,
	                                 parts->signing_input_len) == 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	ERR_clear_error();
	return ok;
}

/* aud may be a string or an array of strings (RFC 7519 4.1.3). */
static bool audience_matches(const json_t *claims, const char *audience)
{
	const json_t *aud = json_object_get(claims, "aud");
	if (json_is_string(aud))
		return strcmp(json_string_value(aud), audience) == 0;
	size_t i;
	const json_t *item;
	json_array_foreach(aud, i, item)
	{
		if (json_is_string(item) && strcmp(json_string_value(item), audience) == 0)
			return true;
	}
	return false;
}

/* A NumericDate (RFC 7519 2) as this vault takes it: a non-negative JSON integer. jansson
 * refuses integers beyond int64 when it parses; fractions and strings are refused here. */
static claim_state numeric_date(const json_t *claims, const char *name, int64_t *seconds)
{
	const json_t *value = json_object_get(claims, name);
	if (value == NULL)
		return CLAIM_ABSENT;
	if (!json_is_integer(value) || json_integer_value(value) < 0)
		return CLAIM_INVALID;
	*seconds = (int64_t)json_integer_value(value);
	return CLAIM_VALID;
}

/* t > now + slack, without overflow: a limit past INT64_MAX is never exceeded. */
static bool later_than(int64_t t, int64_t now, int64_t slack)
{
	int64_t limit;
	return !__builtin_add_overflow(now, slack, &limit) && t > limit;
}

/* The time claims as they are written: exp required and non-zero, iat and nbf optional;
 * each a NumericDate. */
static bool times_read(const json_t *claims, token_times *t, const char **why)
{
	if (numeric_date(claims, "exp", &t->exp) != CLAIM_VALID || t->exp == 0) {
		*why = "the bearer token has no valid expiry (exp)";
		return false;
	}
	t->iat_state = numeric_date(claims, "iat", &t->iat);
	if (t->iat_state == CLAIM_INVALID) {
		*why = "the bearer token's issue time (iat) is not a valid date";
		return false;
	}
	t->nbf_state = numeric_date(claims, "nbf", &t->nbf);
	if (t->nbf_state == CLAIM_INVALID) {
		*why = "the bearer token's not-before time (nbf) is not a valid date";
		return false;
	}
	return true;
}

/* The time claims against the clock now: at the first verify and at every cached use. */
static bool times_acceptable(const bkv_auth *auth, const token_times *t, int64_t now,
                             const char **why)
{
	/* exp + skew < now, written so that neither side can overflow */
	if (later_than(now, t->exp, auth->clock_skew_s)) {
		*why = "the bearer token has expired";
		return false;
	}
	if (later_than(t->exp, now, auth->max_lifetime_s + auth->clock_skew_s)) {
		*why = "the bearer token's lifetime exceeds what this vault accepts";
		return false;
	}
	if (t->iat_state == CLAIM_VALID && later_than(t->iat, now, auth->clock_skew_s)) {
		*why = "the bearer token was issued in the future (iat)";
		return false;
	}
	if (t->nbf_state == CLAIM_VALID && later_than(t->nbf, now, auth->clock_skew_s)) {
		*why = "the bearer token is not valid yet (nbf)";
		return false;
	}
	return true;
}

static bool claims_acceptable(const bkv_auth *auth, const json_t *claims, int64_t now,
                              token_times *times, const char **why)
{
	const char *iss = json_string_value(json_object_get(claims, "iss"));
	if (iss == NULL || strcmp(iss, auth->issuer) != 0) {
		*why = "the bearer token's issuer is not accepted";
		return false;
	}
	if (!audience_matches(claims, auth->audience)) {
		*why = "the bearer token is not for this vault (aud)";
		return false;
	}
	return times_read(claims, times, why) && times_acceptable(auth, times, now, why);
}

/* The slot a token's digest maps to; *hit when it holds that token. */
static cached_token *cache_slot(const bkv_auth *auth, const uint8_t *digest, bool *hit)
{
	uint64_t index;
	memcpy(&index, digest, sizeof(index));
	cached_token *c = &auth->cache->slot[index & (CACHE_SLOTS - 1)];
	*hit = c->used && sodium_memcmp(c->digest, digest, sizeof(c->digest)) == 0;
	return c;
}

uint64_t bkv_auth_cache_hits(const bkv_auth *auth)
{
	return auth->cache->hits;
}

bool bkv_auth_verify(const bkv_auth *auth, const char *authorization, int64_t now, uint8_t *account,
                     size_t *account_len, const char **why)
{
	static const char bearer[] = "Bearer ";
	if (authorization == NULL) {
		*why = "missing Authorization: Bearer token";
		return false;
	}
	if (strncmp(authorization, bearer, sizeof(bearer) - 1) != 0) {
		*why = "the Authorization header must be \"Bearer <token>\"";
		return false;
	}
	const char *token = authorization + sizeof(bearer) - 1;
	if (strnlen(token, BKV_AUTH_TOKEN_MAX + 1) > BKV_AUTH_TOKEN_MAX) {
		*why = "the bearer token is too long";
		return false;
	}
	uint8_t digest[crypto_generichash_BYTES];
	crypto_generichash(digest, sizeof(digest), (const unsigned char *)token, strlen(token),
	                   NULL, 0);
	bool hit;
	cached_token *cached = cache_slot(auth, digest, &hit);
	if (hit) {
		if (!times_acceptable(auth, &cached->times, now, why))
			return false;
		memcpy(account, cached->account, cached->account_len);
		*account_len = cached->account_len;
		auth->cache->hits++;
		return true;
	}
	jwt_parts parts;
	if (!jwt_parts_split(token, &parts, why))
		return false;
	bool ok = false;
	token_times times;
	if (!header_acceptable(auth, &parts, why))
		goto done;
	if (!(auth->alg == JWT_ALG_HS256 ? hs256_verifies(auth, token, &parts)
	                                 : es256_verifies(auth, token, &parts))) {
		*why = "invalid bearer token (malformed or bad signature)";
		goto done;
	}
	if (!claims_acceptable(auth, parts.claims, now, &times, why))
		goto done;
	const json_t *sub = json_object_get(parts.claims, "sub");
	const size_t sub_len = json_is_string(sub) ? json_string_length(sub) : 0;
	if (sub_len == 0 || sub_len > BKV_AUTH_ACCOUNT_MAX) {
		*why = "the bearer token's subject (account id) must be 1 to 256 bytes";
		goto done;
	}
	memcpy(account, json_string_value(sub), sub_len);
	*account_len = sub_len;
	memcpy(cached->digest, digest, sizeof(digest));
	cached->times = times;
	memcpy(cached->account, account, sub_len);
	cached->account_len = sub_len;
	cached->used = true;
	ok = true;
done:
	jwt_parts_free(&parts);
	return ok;
}

char *bkv_auth_mint(const bkv_auth *auth, const char *account, int64_t now, int64_t lifetime_s)
{
	if (auth->alg != JWT_ALG_HS256 || lifetime_s > auth->max_lifetime_s)
		return NULL;
	jwt_t *jwt = NULL;
	char *out = NULL;
	if (jwt_new(&jwt) == 0 &&
	    jwt_set_alg(jwt, JWT_ALG_HS256, auth->key, (int)auth->key_len) == 0 &&
	    jwt_add_grant(jwt, "iss", auth->issuer) == 0 &&
	    jwt_add_grant(jwt, "aud", auth->audience) == 0 &&
	    jwt_add_grant(jwt, "sub", account) == 0 &&
	    jwt_add_grant_int(jwt, "iat", (long)now) == 0 &&
	    jwt_add_grant_int(jwt, "exp", (long)(now + lifetime_s)) == 0)
		out = jwt_encode_str(jwt);
	jwt_free(jwt);
	return out;
}
