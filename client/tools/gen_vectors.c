/*
 * gen_vectors.c - writes docs/vectors/bkv-v1.json (run through scripts/gen-vectors): the
 * bkv-level test vectors, from fixed inputs, computed by libbkv's own functions.
 *
 *   for each suite: export_key -> wrap_key -> wrapped_key     (bkvi_keywrap_wrap)
 *                   session_key -> release_key -> sealed_key  (the vault's seal_for_release
 *                   formula; opened back with bkvi_keywrap_open_release)
 *   one backup file: key, salt, plaintext -> file             (bkv_backup_encrypt)
 *
 * The randomness (GCM nonces, the backup salt) is fixed by installing a libsodium
 * randombytes implementation that hands out the fixed bytes in order before anything calls
 * sodium_init; the generator fails if the library asks for more or fewer random bytes than
 * expected. Intermediates the library keeps to itself (wrap_key, release_key, the backup
 * file's okm) are recomputed here through OpenSSL EVP and checked against the outputs: the
 * generator refuses to write a file whose pieces do not agree with each other.
 *
 * This program is the code under test's output, not an oracle: tests/test_bkv_vectors.c,
 * sdk/python/tests/test_vectors.py and sdk/java/.../VectorsTest.java recompute every value
 * independently.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <sodium.h>

#include "bkv.h"
#include "keywrap.h"
#include "opaque/opaque.h"

#define WRAP_INFO    "bkv-v1 wrap"
#define RELEASE_INFO "bkv-v1 release"
#define BACKUP_INFO  "bkv-v1 backup"
#define PLAINTEXT    "bkv test vector: a short backup.\n"

/* ---- fixed randomness ---- */

static const uint8_t *rng_next;
static size_t rng_left;
static bool rng_armed;

/* Outside a vector (sodium_init's guard-page canary), real randomness. */
static void rng_fill(void *buf, size_t size)
{
	if (!rng_armed) {
		if (getrandom(buf, size, 0) != (ssize_t)size)
			abort();
		return;
	}
	if (size > rng_left) {
		fprintf(stderr, "gen-vectors: the library asked for %zu random bytes, %zu fixed\n",
		        size, rng_left);
		abort();
	}
	memcpy(buf, rng_next, size);
	rng_next += size;
	rng_left -= size;
}

static void rng_expect(const uint8_t *bytes, size_t len)
{
	rng_next = bytes;
	rng_left = len;
	rng_armed = true;
}

/* True when the library took exactly the fixed bytes. */
static bool rng_done(void)
{
	rng_armed = false;
	return rng_left == 0;
}

static const char *rng_name(void)
{
	return "bkv-gen-vectors-fixed";
}

static uint32_t rng_random(void)
{
	uint32_t v;
	rng_fill(&v, sizeof(v));
	return v;
}

static struct randombytes_implementation fixed_rng = {
    .implementation_name = rng_name,
    .random = rng_random,
    .stir = NULL,
    .uniform = NULL,
    .buf = rng_fill,
    .close = NULL,
};

/* ---- helpers ---- */

static void die(const char *what)
{
	fprintf(stderr, "gen-vectors: %s\n", what);
	exit(1);
}

static void pattern(uint8_t *out, size_t len, uint8_t start)
{
	for (size_t i = 0; i < len; i++)
		out[i] = (uint8_t)(start + i);
}

static json_t *hex(const uint8_t *bytes, size_t len)
{
	char *text = malloc(len * 2 + 1);
	if (text == NULL)
		die("out of memory");
	sodium_bin2hex(text, len * 2 + 1, bytes, len);
	json_t *j = json_string(text);
	free(text);
	return j;
}

static void set_hex(json_t *obj, const char *name, const uint8_t *bytes, size_t len)
{
	json_object_set_new(obj, name, hex(bytes, len));
}

static void hkdf(const char *digest, int mode, const uint8_t *ikm, size_t ikm_len,
                 const uint8_t *salt, size_t salt_len, const char *info, uint8_t *out,
                 size_t out_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
	EVP_KDF_CTX *ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[6];
	size_t n = 0;
	params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
	params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
	if (salt != NULL)
		params[n++] =
		    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
	params[n++] =
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
	params[n] = OSSL_PARAM_construct_end();
	if (ctx == NULL || EVP_KDF_derive(ctx, out, out_len, params) != 1)
		die("HKDF failed");
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
}

/* The vault's seal_for_release (vault/handlers/recover.c), which is static there. */
static void seal(const uint8_t key[32], const uint8_t nonce[12], const char *aad, const uint8_t *in,
                 size_t in_len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0;
	memcpy(out, nonce, 12);
	if (ctx == NULL || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1 ||
	    EVP_EncryptUpdate(ctx, out + 12, &n, in, (int)in_len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, out + 12 + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + in_len) != 1)
		die("AES-GCM failed");
	EVP_CIPHER_CTX_free(ctx);
}

/* ---- the vectors ---- */

static json_t *keywrap_vector(opaque_suite_id suite, const char *hash, const char *digest)
{
	const size_t nh = opaque_suite_sizes(suite)->Nh;
	uint8_t export_key[64], session_key[64], wrap_nonce[12], release_nonce[12];
	uint8_t wrap_key[32], release_key[32];
	uint8_t wrapped[BKV_WRAPPED_KEY_BYTES], sealed[BKV_WRAPPED_KEY_BYTES + 28];
	uint8_t opened[BKV_WRAPPED_KEY_BYTES];
	size_t opened_len = 0;
	bkv_key key, unwrapped;
	const uint8_t tag = (uint8_t)(suite * 0x10);

	pattern(export_key, nh, (uint8_t)(0x00 + tag));
	pattern(session_key, nh, (uint8_t)(0x80 + tag));
	pattern(key.bytes, BKV_KEY_BYTES, (uint8_t)(0x40 + tag));
	pattern(wrap_nonce, sizeof(wrap_nonce), (uint8_t)(0xa0 + suite));
	pattern(release_nonce, sizeof(release_nonce), (uint8_t)(0xc0 + suite));

	rng_expect(wrap_nonce, sizeof(wrap_nonce));
	if (bkvi_keywrap_wrap(suite, export_key, &key, wrapped) != BKV_OK || !rng_done())
		die("bkvi_keywrap_wrap failed or did not take exactly one nonce");
	if (bkvi_keywrap_unwrap(suite, export_key, wrapped, sizeof(wrapped), &unwrapped) !=
	        BKV_OK ||
	    memcmp(unwrapped.bytes, key.bytes, BKV_KEY_BYTES) != 0)
		die("bkvi_keywrap_unwrap does not give the key back");

	hkdf(digest, EVP_KDF_HKDF_MODE_EXPAND_ONLY, export_key, nh, NULL, 0, WRAP_INFO, wrap_key,
	     32);
	hkdf(digest, EVP_KDF_HKDF_MODE_EXPAND_ONLY, session_key, nh, NULL, 0, RELEASE_INFO,
	     release_key, 32);
	seal(release_key, release_nonce, RELEASE_INFO, wrapped, sizeof(wrapped), sealed);
	if (bkvi_keywrap_open_release(suite, session_key, sealed, sizeof(sealed), opened,
	                              sizeof(opened), &opened_len) != BKV_OK ||
	    opened_len != sizeof(wrapped) || memcmp(opened, wrapped, sizeof(wrapped)) != 0)
		die("bkvi_keywrap_open_release does not give wrapped_key back");

	json_t *v = json_object();
	json_object_set_new(v, "suite", json_string(opaque_suite_name(suite)));
	json_object_set_new(v, "suite_id", json_integer(suite));
	json_object_set_new(v, "hash", json_string(hash));
	set_hex(v, "export_key", export_key, nh);
	json_object_set_new(v, "wrap_info", json_string(WRAP_INFO));
	set_hex(v, "wrap_key", wrap_key, sizeof(wrap_key));
	set_hex(v, "backup_key", key.bytes, BKV_KEY_BYTES);
	set_hex(v, "wrap_nonce", wrap_nonce, sizeof(wrap_nonce));
	json_object_set_new(v, "wrap_aad", json_string(WRAP_INFO));
	set_hex(v, "wrapped_key", wrapped, sizeof(wrapped));
	set_hex(v, "session_key", session_key, nh);
	json_object_set_new(v, "release_info", json_string(RELEASE_INFO));
	set_hex(v, "release_key", release_key, sizeof(release_key));
	set_hex(v, "release_nonce", release_nonce, sizeof(release_nonce));
	json_object_set_new(v, "release_aad", json_string(RELEASE_INFO));
	set_hex(v, "sealed_key", sealed, sizeof(sealed));
	sodium_memzero(&key, sizeof(key));
	sodium_memzero(&unwrapped, sizeof(unwrapped));
	return v;
}

static json_t *backup_vector(void)
{
	bkv_key key;
	uint8_t salt[32], okm[64], commitment[32];
	char *file = NULL, *back = NULL;
	size_t file_len = 0, back_len = 0;
	unsigned int mac_len = 0;
	pattern(key.bytes, BKV_KEY_BYTES, 0x60);
	pattern(salt, sizeof(salt), 0xe0);

	FILE *in = fmemopen((void *)PLAINTEXT, strlen(PLAINTEXT), "rb");
	FILE *out = open_memstream(&file, &file_len);
	rng_expect(salt, sizeof(salt));
	if (in == NULL || out == NULL ||
	    bkv_backup_encrypt(&key, in, out, 0, NULL, NULL, NULL) != BKV_OK || !rng_done())
		die("bkv_backup_encrypt failed or did not take exactly one salt");
	fclose(in);
	fclose(out);
	const size_t want = 77 + 5 + strlen(PLAINTEXT) + 16;
	if (file_len != want || memcmp(file + 13, salt, sizeof(salt)) != 0)
		die("the backup file does not have the documented layout");

	in = fmemopen(file, file_len, "rb");
	out = open_memstream(&back, &back_len);
	if (in == NULL || out == NULL ||
	    bkv_backup_decrypt(&key, in, out, 0, NULL, NULL, NULL) != BKV_OK)
		die("bkv_backup_decrypt failed");
	fclose(in);
	fclose(out);
	if (back_len != strlen(PLAINTEXT) || memcmp(back, PLAINTEXT, back_len) != 0)
		die("bkv_backup_decrypt does not give the plaintext back");

	hkdf("SHA256", EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND, key.bytes, BKV_KEY_BYTES, salt,
	     sizeof(salt), BACKUP_INFO, okm, sizeof(okm));
	if (HMAC(EVP_sha256(), okm + 32, 32, (const uint8_t *)file, 45, commitment, &mac_len) ==
	        NULL ||
	    memcmp(commitment, file + 45, 32) != 0)
		die("the header's commitment is not HMAC-SHA256(commitment_key, header[0..44])");

	uint8_t nonce[12] = {0};
	nonce[11] = 0x01; /* chunk 0, final */
	uint8_t aad[82];
	memcpy(aad, file, 82); /* the header and the chunk header follow each other */

	json_t *v = json_object();
	set_hex(v, "backup_key", key.bytes, BKV_KEY_BYTES);
	set_hex(v, "salt", salt, sizeof(salt));
	set_hex(v, "plaintext", (const uint8_t *)PLAINTEXT, strlen(PLAINTEXT));
	json_object_set_new(v, "info", json_string(BACKUP_INFO));
	set_hex(v, "okm", okm, sizeof(okm));
	set_hex(v, "chunk_key", okm, 32);
	set_hex(v, "commitment_key", okm + 32, 32);
	set_hex(v, "header", (const uint8_t *)file, 77);
	set_hex(v, "commitment", commitment, sizeof(commitment));
	set_hex(v, "chunk0_header", (const uint8_t *)file + 77, 5);
	set_hex(v, "chunk0_nonce", nonce, sizeof(nonce));
	set_hex(v, "chunk0_aad", aad, sizeof(aad));
	set_hex(v, "chunk0_ciphertext", (const uint8_t *)file + 82, strlen(PLAINTEXT));
	set_hex(v, "chunk0_tag", (const uint8_t *)file + 82 + strlen(PLAINTEXT), 16);
	set_hex(v, "file", (const uint8_t *)file, file_len);
	free(file);
	free(back);
	sodium_memzero(&key, sizeof(key));
	sodium_memzero(okm, sizeof(okm));
	return v;
}

int main(void)
{
	if (randombytes_set_implementation(&fixed_rng) != 0 || sodium_init() < 0)
		die("cannot install the fixed randomness");

	json_t *root = json_object();
	json_object_set_new(
	    root, "provenance",
	    json_string("generated by client/tools/gen_vectors.c (scripts/gen-vectors) with "
	                "libbkv's own functions (bkvi_keywrap_wrap, bkvi_keywrap_open_release, "
	                "bkv_backup_encrypt) and fixed randomness; formulas in docs/PROTOCOL.md "
	                "\"The backup key and how the client protects it\" and "
	                "docs/BACKUP-FORMAT.md \"Keys\" and \"Chunk "
	                "records\"; checked independently by tests/test_bkv_vectors.c (OpenSSL "
	                "EVP), sdk/python/tests/test_vectors.py and sdk/java "
	                "VectorsTest.java"));
	json_object_set_new(root, "version", json_integer(1));
	json_t *suites = json_array();
	json_array_append_new(suites,
	                      keywrap_vector(OPAQUE_SUITE_P256_SHA256, "SHA-256", "SHA256"));
	json_array_append_new(
	    suites, keywrap_vector(OPAQUE_SUITE_RISTRETTO255_SHA512, "SHA-512", "SHA512"));
	json_object_set_new(root, "keywrap", suites);
	json_object_set_new(root, "backup_file", backup_vector());

	if (json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0 ||
	    fputc('\n', stdout) == EOF || fflush(stdout) != 0)
		die("cannot write the vectors");
	json_decref(root);
	return 0;
}
