/*
 * auth.c - JWT verification with libjwt (OpenSSL backend) and the pinned algorithm.
 * libjwt parses the token; this file decides whether it is acceptable.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <sodium.h>

#include "auth.h"

#define KEY_FILE_MAX 16384

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
	if (s->max_lifetime_s <= 0 || s->clock_skew_s < 0) {
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
	memset(auth, 0, sizeof(*auth));
}

/* aud may be a string or an array of strings (RFC 7519 4.1.3). */
static bool audience_matches(jwt_t *jwt, const char *audience)
{
	const char *single = jwt_get_grant(jwt, "aud");
	if (single != NULL)
		return strcmp(single, audience) == 0;
	char *json = jwt_get_grants_json(jwt, "aud");
	if (json == NULL)
		return false;
	bool found = false;
	json_t *arr = json_loads(json, 0, NULL);
	free(json);
	if (json_is_array(arr)) {
		size_t i;
		json_t *item;
		json_array_foreach(arr, i, item)
		{
			if (json_is_string(item) && strcmp(json_string_value(item), audience) == 0)
				found = true;
		}
	}
	json_decref(arr);
	return found;
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
	if (strlen(token) > BKV_AUTH_TOKEN_MAX) {
		*why = "the bearer token is too long";
		return false;
	}
	jwt_t *jwt = NULL;
	if (jwt_decode(&jwt, token, auth->key, (int)auth->key_len) != 0 || jwt == NULL) {
		*why = "invalid bearer token (malformed or bad signature)";
		return false;
	}
	bool ok = false;
	if ((int)jwt_get_alg(jwt) != auth->alg) {
		*why = "the bearer token's algorithm is not the one this vault accepts";
		goto done;
	}
	const char *iss = jwt_get_grant(jwt, "iss");
	if (iss == NULL || strcmp(iss, auth->issuer) != 0) {
		*why = "the bearer token's issuer is not accepted";
		goto done;
	}
	if (!audience_matches(jwt, auth->audience)) {
		*why = "the bearer token is not for this vault (aud)";
		goto done;
	}
	errno = 0;
	const long exp = jwt_get_grant_int(jwt, "exp");
	if (errno != 0 || exp <= 0) {
		*why = "the bearer token has no expiry (exp)";
		goto done;
	}
	if ((int64_t)exp + auth->clock_skew_s < now) {
		*why = "the bearer token has expired";
		goto done;
	}
	if ((int64_t)exp > now + auth->max_lifetime_s + auth->clock_skew_s) {
		*why = "the bearer token's lifetime exceeds what this vault accepts";
		goto done;
	}
	errno = 0;
	const long iat = jwt_get_grant_int(jwt, "iat");
	if (errno == 0 && (int64_t)iat > now + auth->clock_skew_s) {
		*why = "the bearer token was issued in the future (iat)";
		goto done;
	}
	errno = 0;
	const long nbf = jwt_get_grant_int(jwt, "nbf");
	if (errno == 0 && (int64_t)nbf > now + auth->clock_skew_s) {
		*why = "the bearer token is not valid yet (nbf)";
		goto done;
	}
	const char *sub = jwt_get_grant(jwt, "sub");
	const size_t sub_len = sub ? strlen(sub) : 0;
	if (sub_len == 0 || sub_len > BKV_AUTH_ACCOUNT_MAX) {
		*why = "the bearer token's subject (account id) must be 1 to 256 bytes";
		goto done;
	}
	memcpy(account, sub, sub_len);
	*account_len = sub_len;
	ok = true;
done:
	jwt_free(jwt);
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
