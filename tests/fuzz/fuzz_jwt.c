/*
 * fuzz_jwt.c - bearer-token verification (vault/auth).
 *
 * Input layout:
 *   byte 0   bit 0 clear: raw mode, the rest is the Authorization header value as a client
 *            sends it. Nobody but this harness knows the HS256 key, so no input may verify.
 *            bit 0 set: signed mode, the rest is header JSON, a 0x00 byte, claims JSON; the
 *            harness base64url-encodes both and signs them with the fixture's key, so every
 *            input gets past the signature and the fuzzer reaches the header and claim
 *            checks. A token that verifies must then obey every rule, checked here
 *            independently of auth.c: no repeated member, alg HS256, no crit, an integer
 *            exp inside the accepted window, and the account equal to sub.
 *   Raw inputs also go to an ES256 verifier whose P-256 public key is made at start and
 *   whose private key is dropped at once: no raw input may verify there either. That drives
 *   auth.c's ES256 path (the R || S signature turned into DER for OpenSSL) with any bytes.
 *   tests/fuzz/corpus/fuzz-jwt holds a good signed token and a raw one to start from.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "auth.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW      INT64_C(1800000000)
#define LIFETIME 3600
#define SKEW     60

static const char SECRET[] = "fuzzing secret that is at least 32 bytes long";
static bkv_auth auth, es256_auth;

_Noreturn static void fail(const char *what)
{
	fprintf(stderr, "fuzz-jwt: %s\n", what);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char path[] = "/tmp/bkv-fuzz-jwt-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, SECRET, sizeof(SECRET) - 1) != (ssize_t)(sizeof(SECRET) - 1))
		abort();
	close(fd);
	bkv_auth_settings s = {"HS256", path, "bkv-fuzz", "bkv", LIFETIME, SKEW};
	char why[256];
	if (!bkv_auth_init(&auth, &s, why, sizeof(why)))
		abort();
	unlink(path);

	char es_path[] = "/tmp/bkv-fuzz-jwt-es256-XXXXXX";
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	FILE *f = (fd = mkstemp(es_path)) >= 0 ? fdopen(fd, "w") : NULL;
	if (key == NULL || f == NULL || PEM_write_PUBKEY(f, key) != 1 || fclose(f) != 0)
		abort();
	EVP_PKEY_free(key); /* nobody can sign for it now */
	bkv_auth_settings es = {"ES256", es_path, "bkv-fuzz", "bkv", LIFETIME, SKEW};
	if (!bkv_auth_init(&es256_auth, &es, why, sizeof(why)))
		abort();
	unlink(es_path);
	return 0;
}

static size_t append_b64url(char *out, size_t at, size_t out_max, const uint8_t *bytes, size_t len)
{
	sodium_bin2base64(out + at, out_max - at, bytes, len,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return at + strlen(out + at);
}

/* "Bearer <b64(header)>.<b64(claims)>.<b64(HMAC-SHA256)>", malloc'd. */
static char *signed_token(const uint8_t *header, size_t header_len, const uint8_t *claims,
                          size_t claims_len)
{
	const size_t max = 16 + 2 * (header_len + claims_len) + 64;
	char *out = malloc(max);
	if (out == NULL)
		abort();
	strcpy(out, "Bearer ");
	const size_t from = strlen(out);
	size_t at = append_b64url(out, from, max, header, header_len);
	out[at++] = '.';
	at = append_b64url(out, at, max, claims, claims_len);
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, (const uint8_t *)SECRET, sizeof(SECRET) - 1);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)out + from, at - from);
	crypto_auth_hmacsha256_final(&st, mac);
	out[at++] = '.';
	append_b64url(out, at, max, mac, sizeof(mac));
	return out;
}

/* The rules a verified token must obey, read from the JSON the harness signed. */
static void check_accepted(const uint8_t *header, size_t header_len, const uint8_t *claims,
                           size_t claims_len, const uint8_t *account, size_t account_len)
{
	json_t *h = json_loadb((const char *)header, header_len, JSON_REJECT_DUPLICATES, NULL);
	json_t *c = json_loadb((const char *)claims, claims_len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(h) || !json_is_object(c))
		fail("accepted a header or claims that are not JSON objects without repeats");
	const char *alg = json_string_value(json_object_get(h, "alg"));
	if (alg == NULL || strcmp(alg, "HS256") != 0)
		fail("accepted an algorithm other than HS256");
	if (json_object_get(h, "crit") != NULL)
		fail("accepted a crit header");
	const json_t *exp = json_object_get(c, "exp");
	if (!json_is_integer(exp) || json_integer_value(exp) < NOW - SKEW ||
	    json_integer_value(exp) > NOW + LIFETIME + SKEW)
		fail("accepted an exp outside the window");
	const json_t *sub = json_object_get(c, "sub");
	if (!json_is_string(sub) || json_string_length(sub) != account_len ||
	    memcmp(json_string_value(sub), account, account_len) != 0)
		fail("the account is not the token's sub");
	json_decref(h);
	json_decref(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 2 * BKV_AUTH_TOKEN_MAX)
		return 0;
	const bool signed_mode = (data[0] & 1) != 0;
	data++;
	size--;
	char *value;
	const uint8_t *header = data, *claims = NULL;
	size_t header_len = size, claims_len = 0;
	if (signed_mode) {
		const uint8_t *nul = memchr(data, 0, size);
		if (nul == NULL)
			return 0;
		header_len = (size_t)(nul - data);
		claims = nul + 1;
		claims_len = size - header_len - 1;
		value = signed_token(header, header_len, claims, claims_len);
	} else {
		value = malloc(size + 1);
		if (value == NULL)
			abort();
		memcpy(value, data, size);
		value[size] = '\0';
	}
	uint8_t account[BKV_AUTH_ACCOUNT_MAX];
	size_t account_len = 0;
	const char *why = NULL;
	const bool ok = bkv_auth_verify(&auth, value, NOW, account, &account_len, &why);
	if (ok && !signed_mode)
		fail("a forgery verified: the raw input does not know the key");
	if (ok && (account_len == 0 || account_len > BKV_AUTH_ACCOUNT_MAX))
		fail("account length out of range");
	if (ok)
		check_accepted(header, header_len, claims, claims_len, account, account_len);
	if (!ok && why == NULL)
		fail("rejected without a reason");
	if (!signed_mode) {
		why = NULL;
		if (bkv_auth_verify(&es256_auth, value, NOW, account, &account_len, &why))
			fail("an ES256 forgery verified: nobody holds the private key");
		if (why == NULL)
			fail("rejected without a reason");
	}
	free(value);
	return 0;
}
