/*
 * test_bkv_vectors.c - docs/vectors/bkv-v1.json checked twice (cmocka, ctest bkv_vectors):
 *
 *   independently: every value recomputed from the vector's inputs with OpenSSL alone,
 *     HKDF written out by hand on HMAC (RFC 5869) and AES-256-GCM through EVP, following
 *     docs/PROTOCOL.md and docs/BACKUP-FORMAT.md. This is the oracle: the vectors were
 *     written by libbkv (client/tools/gen_vectors.c), the code under test.
 *   with libbkv: the same outputs from the library's own functions (bkvi_keywrap_*,
 *     bkv_backup_encrypt/decrypt), its randomness fixed to the vector's nonce or salt
 *     through a libsodium randombytes implementation, and a changed byte refused.
 *
 * Usage: test-bkv-vectors docs/vectors/bkv-v1.json
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <sodium.h>

#include "bkv.h"
#include "keywrap.h"
#include "opaque/opaque.h"

static json_t *vectors;

/* ---- fixed randomness for the library's nonce or salt ---- */

static const uint8_t *rng_next;
static size_t rng_left;
static bool rng_armed;

static void rng_fill(void *buf, size_t size)
{
	if (!rng_armed) {
		if (getrandom(buf, size, 0) != (ssize_t)size)
			abort();
		return;
	}
	if (size > rng_left)
		abort();
	memcpy(buf, rng_next, size);
	rng_next += size;
	rng_left -= size;
}

static const char *rng_name(void)
{
	return "test-fixed";
}

static uint32_t rng_random(void)
{
	uint32_t v;
	rng_fill(&v, sizeof(v));
	return v;
}

static struct randombytes_implementation fixed_rng = {
    .implementation_name = rng_name, .random = rng_random, .buf = rng_fill};

static void rng_expect(const uint8_t *bytes, size_t len)
{
	rng_next = bytes;
	rng_left = len;
	rng_armed = true;
}

/* ---- reading the vectors ---- */

typedef struct {
	uint8_t b[512];
	size_t len;
} buf;

static buf field(const json_t *obj, const char *name)
{
	buf out = {.len = 0};
	const char *text = json_string_value(json_object_get(obj, name));
	assert_non_null(text);
	assert_int_equal(
	    sodium_hex2bin(out.b, sizeof(out.b), text, strlen(text), NULL, &out.len, NULL), 0);
	assert_int_equal(out.len * 2, strlen(text));
	return out;
}

static const char *text_field(const json_t *obj, const char *name)
{
	const char *text = json_string_value(json_object_get(obj, name));
	assert_non_null(text);
	return text;
}

static void assert_buf(const uint8_t *got, size_t got_len, buf want)
{
	assert_int_equal(got_len, want.len);
	assert_memory_equal(got, want.b, want.len);
}

/* ---- the independent oracle: RFC 5869 on HMAC, AES-256-GCM on EVP ---- */

static void hmac(const EVP_MD *md, const uint8_t *key, size_t key_len, const uint8_t *a,
                 size_t a_len, const uint8_t *b, size_t b_len, uint8_t *out)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	                                                        (char *)EVP_MD_get0_name(md), 0),
	                       OSSL_PARAM_construct_end()};
	size_t n = 0;
	assert_non_null(ctx);
	assert_int_equal(EVP_MAC_init(ctx, key, key_len, params), 1);
	assert_int_equal(EVP_MAC_update(ctx, a, a_len), 1);
	if (b_len > 0)
		assert_int_equal(EVP_MAC_update(ctx, b, b_len), 1);
	assert_int_equal(EVP_MAC_final(ctx, out, &n, 64), 1);
	assert_int_equal(n, EVP_MD_get_size(md));
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
}

/* HKDF-Expand (RFC 5869 2.3): T(i) = HMAC(PRK, T(i-1) | info | i). */
static void hkdf_expand(const EVP_MD *md, const uint8_t *prk, size_t prk_len, const char *info,
                        uint8_t *out, size_t out_len)
{
	const size_t h = (size_t)EVP_MD_get_size(md);
	uint8_t t[64 + 64 + 1], block[64];
	size_t t_len = 0, done = 0;
	for (uint8_t i = 1; done < out_len; i++) {
		memcpy(t + t_len, info, strlen(info));
		t[t_len + strlen(info)] = i;
		hmac(md, prk, prk_len, t, t_len + strlen(info) + 1, NULL, 0, block);
		const size_t n = out_len - done < h ? out_len - done : h;
		memcpy(out + done, block, n);
		done += n;
		memcpy(t, block, h);
		t_len = h;
	}
}

/* nonce || ciphertext || tag */
static size_t gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                       size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0;
	assert_non_null(ctx);
	memcpy(out, nonce, 12);
	assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, out + 12, &n, in, (int)in_len), 1);
	assert_int_equal(EVP_EncryptFinal_ex(ctx, out + 12 + n, &n), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + in_len), 1);
	EVP_CIPHER_CTX_free(ctx);
	return 12 + in_len + 16;
}

/* ---- key wrap and release ---- */

static void check_keywrap(const json_t *v)
{
	const opaque_suite_id suite =
	    (opaque_suite_id)json_integer_value(json_object_get(v, "suite_id"));
	const char *hash = text_field(v, "hash");
	const EVP_MD *md = strcmp(hash, "SHA-256") == 0 ? EVP_sha256() : EVP_sha512();
	assert_true(strcmp(hash, "SHA-256") == 0 || strcmp(hash, "SHA-512") == 0);
	/* the suite's hash as docs/PROTOCOL.md names it */
	assert_int_equal(suite == OPAQUE_SUITE_P256_SHA256 ? 32 : 64, EVP_MD_get_size(md));
	assert_string_equal(text_field(v, "wrap_info"), "bkv-v1 wrap");
	assert_string_equal(text_field(v, "wrap_aad"), "bkv-v1 wrap");
	assert_string_equal(text_field(v, "release_info"), "bkv-v1 release");
	assert_string_equal(text_field(v, "release_aad"), "bkv-v1 release");

	const buf export_key = field(v, "export_key"), session_key = field(v, "session_key");
	const buf key = field(v, "backup_key"), wrap_nonce = field(v, "wrap_nonce");
	const buf release_nonce = field(v, "release_nonce");
	const buf wrapped = field(v, "wrapped_key"), sealed = field(v, "sealed_key");
	assert_int_equal(export_key.len, EVP_MD_get_size(md));
	assert_int_equal(session_key.len, EVP_MD_get_size(md));
	assert_int_equal(key.len, BKV_KEY_BYTES);
	assert_int_equal(wrap_nonce.len, 12);
	assert_int_equal(release_nonce.len, 12);

	/* independently */
	uint8_t wrap_key[32], release_key[32], out[256];
	hkdf_expand(md, export_key.b, export_key.len, "bkv-v1 wrap", wrap_key, 32);
	assert_buf(wrap_key, 32, field(v, "wrap_key"));
	hkdf_expand(md, session_key.b, session_key.len, "bkv-v1 release", release_key, 32);
	assert_buf(release_key, 32, field(v, "release_key"));
	size_t n = gcm_seal(wrap_key, wrap_nonce.b, (const uint8_t *)"bkv-v1 wrap", 11, key.b,
	                    key.len, out);
	assert_buf(out, n, wrapped);
	n = gcm_seal(release_key, release_nonce.b, (const uint8_t *)"bkv-v1 release", 14, wrapped.b,
	             wrapped.len, out);
	assert_buf(out, n, sealed);

	/* with libbkv */
	uint8_t lib_key[32], lib_wrapped[BKV_WRAPPED_KEY_BYTES];
	assert_int_equal(opaque_kdf_expand(suite, export_key.b, export_key.len,
	                                   (const uint8_t *)"bkv-v1 wrap", 11, lib_key, 32),
	                 OPAQUE_OK);
	assert_buf(lib_key, 32, field(v, "wrap_key"));
	bkv_key k;
	memcpy(k.bytes, key.b, BKV_KEY_BYTES);
	rng_expect(wrap_nonce.b, wrap_nonce.len);
	assert_int_equal(bkvi_keywrap_wrap(suite, export_key.b, &k, lib_wrapped), BKV_OK);
	rng_armed = false;
	assert_int_equal(rng_left, 0);
	assert_buf(lib_wrapped, sizeof(lib_wrapped), wrapped);

	bkv_key unwrapped;
	assert_int_equal(
	    bkvi_keywrap_unwrap(suite, export_key.b, wrapped.b, wrapped.len, &unwrapped), BKV_OK);
	assert_memory_equal(unwrapped.bytes, key.b, BKV_KEY_BYTES);
	size_t opened_len = 0;
	assert_int_equal(bkvi_keywrap_open_release(suite, session_key.b, sealed.b, sealed.len, out,
	                                           sizeof(out), &opened_len),
	                 BKV_OK);
	assert_buf(out, opened_len, wrapped);

	/* one changed byte anywhere (nonce, ciphertext, tag) is refused */
	for (size_t i = 0; i < wrapped.len; i += 7) {
		buf bad = wrapped;
		bad.b[i] ^= 0x01;
		assert_int_equal(
		    bkvi_keywrap_unwrap(suite, export_key.b, bad.b, bad.len, &unwrapped),
		    BKV_ERR_PROTOCOL);
	}
	buf bad = sealed;
	bad.b[sealed.len - 1] ^= 0x80;
	assert_int_equal(bkvi_keywrap_open_release(suite, session_key.b, bad.b, bad.len, out,
	                                           sizeof(out), &opened_len),
	                 BKV_ERR_PROTOCOL);
	sodium_memzero(&k, sizeof(k));
}

static void test_keywrap(void **state)
{
	(void)state;
	const json_t *suites = json_object_get(vectors, "keywrap");
	assert_int_equal(json_array_size(suites), 2);
	for (size_t i = 0; i < json_array_size(suites); i++)
		check_keywrap(json_array_get(suites, i));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(suites, 0), "suite_id")),
	                 OPAQUE_SUITE_P256_SHA256);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(suites, 1), "suite_id")),
	                 OPAQUE_SUITE_RISTRETTO255_SHA512);
}

/* ---- the backup file ---- */

static void test_backup_file(void **state)
{
	(void)state;
	const json_t *v = json_object_get(vectors, "backup_file");
	assert_non_null(v);
	assert_string_equal(text_field(v, "info"), "bkv-v1 backup");
	const buf key = field(v, "backup_key"), salt = field(v, "salt");
	const buf plain = field(v, "plaintext"), file = field(v, "file");
	assert_int_equal(key.len, 32);
	assert_int_equal(salt.len, 32);
	assert_true(plain.len > 0 && plain.len < 65536);

	/* independently: HKDF-SHA256 extract then expand to 64 bytes */
	uint8_t prk[32], okm[64];
	hmac(EVP_sha256(), salt.b, salt.len, key.b, key.len, NULL, 0, prk);
	hkdf_expand(EVP_sha256(), prk, sizeof(prk), "bkv-v1 backup", okm, sizeof(okm));
	assert_buf(okm, 64, field(v, "okm"));
	assert_buf(okm, 32, field(v, "chunk_key"));
	assert_buf(okm + 32, 32, field(v, "commitment_key"));

	uint8_t expect[77 + 5 + 512 + 16];
	const uint8_t magic_etc[13] = {'b',  'k',  'v',  'b',  'a',  'k', '\r',
	                               '\n', 0x01, 0x00, 0x01, 0x00, 0x00};
	memcpy(expect, magic_etc, sizeof(magic_etc));
	memcpy(expect + 13, salt.b, 32);
	hmac(EVP_sha256(), okm + 32, 32, expect, 45, NULL, 0, expect + 45);
	assert_buf(expect + 45, 32, field(v, "commitment"));
	assert_buf(expect, 77, field(v, "header"));
	const uint8_t chunk_header[5] = {0x01, (uint8_t)(plain.len >> 24),
	                                 (uint8_t)(plain.len >> 16), (uint8_t)(plain.len >> 8),
	                                 (uint8_t)plain.len};
	memcpy(expect + 77, chunk_header, 5);
	assert_buf(expect + 77, 5, field(v, "chunk0_header"));
	const uint8_t nonce[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01}; /* chunk 0, final */
	assert_buf(nonce, 12, field(v, "chunk0_nonce"));
	assert_buf(expect, 82, field(v, "chunk0_aad"));
	uint8_t sealed[12 + 512 + 16];
	const size_t n = gcm_seal(okm, nonce, expect, 82, plain.b, plain.len, sealed);
	memcpy(expect + 82, sealed + 12, n - 12);
	assert_buf(sealed + 12, plain.len, field(v, "chunk0_ciphertext"));
	assert_buf(sealed + 12 + plain.len, 16, field(v, "chunk0_tag"));
	assert_buf(expect, 82 + n - 12, file);

	/* with libbkv: decrypting gives the plaintext, encrypting with the salt gives the file */
	bkv_key k;
	memcpy(k.bytes, key.b, 32);
	char *out = NULL;
	size_t out_len = 0;
	FILE *in = fmemopen((void *)file.b, file.len, "rb");
	FILE *o = open_memstream(&out, &out_len);
	assert_non_null(in);
	assert_non_null(o);
	assert_int_equal(bkv_backup_decrypt(&k, in, o, 0, NULL, NULL, NULL), BKV_OK);
	fclose(in);
	fclose(o);
	assert_buf((const uint8_t *)out, out_len, plain);
	free(out);

	in = fmemopen((void *)plain.b, plain.len, "rb");
	o = open_memstream(&out, &out_len);
	assert_non_null(in);
	assert_non_null(o);
	rng_expect(salt.b, salt.len);
	assert_int_equal(bkv_backup_encrypt(&k, in, o, 0, NULL, NULL, NULL), BKV_OK);
	rng_armed = false;
	assert_int_equal(rng_left, 0);
	fclose(in);
	fclose(o);
	assert_buf((const uint8_t *)out, out_len, file);
	free(out);

	/* a changed tag byte is refused */
	buf bad = file;
	bad.b[bad.len - 1] ^= 0x01;
	in = fmemopen(bad.b, bad.len, "rb");
	o = open_memstream(&out, &out_len);
	assert_int_equal(bkv_backup_decrypt(&k, in, o, 0, NULL, NULL, NULL), BKV_ERR_TAMPERED);
	fclose(in);
	fclose(o);
	free(out);
	sodium_memzero(&k, sizeof(k));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test-bkv-vectors docs/vectors/bkv-v1.json\n");
		return 2;
	}
	json_error_t err;
	vectors = json_load_file(argv[1], 0, &err);
	if (vectors == NULL) {
		fprintf(stderr, "%s: %s\n", argv[1], err.text);
		return 1;
	}
	if (randombytes_set_implementation(&fixed_rng) != 0 || sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keywrap),
	    cmocka_unit_test(test_backup_file),
	};
	const int failed = cmocka_run_group_tests(tests, NULL, NULL);
	json_decref(vectors);
	return failed;
}
