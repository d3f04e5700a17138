/*
 * auth.h - who is calling: every RPC but GetConfig carries "Authorization: Bearer <JWT>"
 * issued by the integrator's own auth service, and the JWT's sub is the account id.
 *
 * The algorithm is pinned by configuration (ES256 with a public key, or HS256 with a
 * secret); a token naming any other algorithm, "none" included, is rejected whatever its
 * signature, and so is an ES256 signature in high-S form (its malleable twin). iss and aud
 * must match, exp is required, the lifetime is bounded and the clock skew too; exp, iat
 * and nbf are non-negative JSON integers, compared without overflow. A token with a crit
 * header, or with a header parameter or claim given twice, is rejected. Tokens are never
 * logged.
 */
#ifndef BKV_AUTH_H
#define BKV_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BKV_AUTH_ACCOUNT_MAX 256
#define BKV_AUTH_TOKEN_MAX   8192

typedef struct bkv_auth {
	int alg; /* jwt_alg_t */
	uint8_t *key;
	size_t key_len;
	/* HS256: HMAC-SHA-256 keyed once at init (guarded memory); each verify copies it. */
	void *hs256_state;
	/* ES256: the P-256 public key (an EVP_PKEY), parsed once at init. */
	void *es256_key;
	char issuer[256];
	char audience[256];
	int64_t max_lifetime_s;
	int64_t clock_skew_s;
	/* Tokens this process verified lately (auth.c), so that the RPCs of one recovery pay
	 * for one verify. Per process and not thread-safe: bkvd's workers each have their own
	 * copy from the fork, and each runs one thread. */
	struct bkv_auth_cache *cache;
} bkv_auth;

typedef struct bkv_auth_settings {
	const char *algorithm; /* "ES256" or "HS256" */
	const char *key_file;  /* ES256: PEM public key; HS256: the secret (>= 32 bytes) */
	const char *issuer;
	const char *audience;
	int64_t max_lifetime_s;
	int64_t clock_skew_s;
} bkv_auth_settings;

bool bkv_auth_init(bkv_auth *auth, const bkv_auth_settings *settings, char *why, size_t why_len);
void bkv_auth_free(bkv_auth *auth);

/* Verifies an Authorization header value. On success copies sub into account (1..256
 * bytes). On failure *why is a static message fit for the client. A token this process
 * verified before is taken from the cache once its exp, iat and nbf pass against now
 * again; only verified tokens are kept, under their BLAKE2b digest. */
bool bkv_auth_verify(const bkv_auth *auth, const char *authorization, int64_t now, uint8_t *account,
                     size_t *account_len, const char **why);

/* How many verifies this process answered from its cache of verified tokens. */
uint64_t bkv_auth_cache_hits(const bkv_auth *auth);

/* Mints a token for development (bkvd dev-token). HS256 only. Returns malloc'd text. */
char *bkv_auth_mint(const bkv_auth *auth, const char *account, int64_t now, int64_t lifetime_s);

#endif
