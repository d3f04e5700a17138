/*
 * test_backup.c - behaviour tests of encrypted backup files (cmocka), held against
 * docs/BACKUP-FORMAT.md: round trips at the chunk-size edges, the documented layout (checked
 * by decrypting with OpenSSL directly, outside libbkv), and every kind of damage a backup can
 * suffer, each with its own status: truncation, modified bytes, reordered chunks, chunks from
 * another file, appended data, a wrong key, not a backup at all. Also: only authenticated
 * plaintext is ever written, I/O errors surface as such, and memory stays flat as the file
 * grows (peak RSS of child processes streaming 16 MiB and 256 MiB).
 *
 * Offsets and sizes come from the format document (77-byte header, 5-byte chunk header,
 * 65536-byte chunks, 16-byte tags), never from the code under test.
 */
#define _GNU_SOURCE /* fopencookie */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <sodium.h>

#include "bkv.h"
#include "testutil.h"

/* From docs/BACKUP-FORMAT.md. */
#define HEADER              77
#define SALT_AT             13
#define COMMITMENT_AT       45
#define CHUNK               65536
#define CHUNK_HEADER        5
#define TAG                 16
#define FULL_RECORD         (CHUNK_HEADER + CHUNK + TAG) /* 65557 */
#define RECORD_AT(i)        ((size_t)HEADER + (size_t)(i)*FULL_RECORD)
#define THREE_CHUNKS        (2 * CHUNK + 1000) /* two full chunks and a final one of 1000 bytes */
#define THREE_CHUNKS_SEALED (HEADER + 2 * FULL_RECORD + CHUNK_HEADER + 1000 + TAG)

typedef struct blob {
	uint8_t *data;
	size_t len;
} blob;

typedef struct fixture {
	bkv_key key;
	blob plain;  /* THREE_CHUNKS random bytes */
	blob sealed; /* plain under key */
} fixture;

static blob random_blob(size_t len)
{
	blob b = {malloc(len > 0 ? len : 1), len};
	assert_non_null(b.data);
	randombytes_buf(b.data, len);
	return b;
}

static blob copy_blob(const blob *b)
{
	blob c = {malloc(b->len > 0 ? b->len : 1), b->len};
	assert_non_null(c.data);
	memcpy(c.data, b->data, b->len);
	return c;
}

static void free_blob(blob *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

/* A seekable stream holding data (tmpfile, since fmemopen may refuse 0 bytes). */
static FILE *stream_of(const uint8_t *data, size_t len)
{
	FILE *f = tmpfile();
	assert_non_null(f);
	if (len > 0)
		assert_int_equal(fwrite(data, 1, len, f), len);
	rewind(f);
	return f;
}

typedef bkv_status (*crypt_fn)(const bkv_key *, FILE *, FILE *, uint64_t, bkv_progress_fn, void *,
                               bkv_error *);

static bkv_status run_crypt(crypt_fn fn, const bkv_key *key, const uint8_t *data, size_t len,
                            blob *out, bkv_error *error)
{
	FILE *in = stream_of(data, len);
	char *out_data = NULL;
	size_t out_len = 0;
	FILE *out_stream = open_memstream(&out_data, &out_len);
	assert_non_null(out_stream);
	memset(error, 0, sizeof(*error));
	const bkv_status status = fn(key, in, out_stream, len, NULL, NULL, error);
	assert_int_equal(fclose(out_stream), 0);
	fclose(in);
	out->data = (uint8_t *)out_data;
	out->len = out_len;
	return status;
}

static blob encrypt_ok(const bkv_key *key, const blob *plain)
{
	blob sealed;
	bkv_error error;
	assert_int_equal(
	    run_crypt(bkv_backup_encrypt, key, plain->data, plain->len, &sealed, &error), BKV_OK);
	return sealed;
}

/* Decrypts sealed and checks the status and that the message contains message_part. Returns
 * the plaintext written. */
static blob decrypt_expect(const bkv_key *key, const blob *sealed, bkv_status expected,
                           const char *message_part)
{
	blob plain;
	bkv_error error;
	const bkv_status status =
	    run_crypt(bkv_backup_decrypt, key, sealed->data, sealed->len, &plain, &error);
	if (status != expected || (message_part != NULL && !strstr(error.message, message_part)))
		fail_msg("expected %s (\"%s\"), got %s: \"%s\"", bkv_status_name(expected),
		         message_part != NULL ? message_part : "", bkv_status_name(status),
		         error.message);
	if (expected != BKV_OK)
		assert_int_equal(error.status, expected);
	return plain;
}

static void expect_failure(const bkv_key *key, const blob *sealed, bkv_status expected,
                           const char *message_part)
{
	blob plain = decrypt_expect(key, sealed, expected, message_part);
	free_blob(&plain);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(bkv_key_generate(&f->key), BKV_OK);
	f->plain = random_blob(THREE_CHUNKS);
	f->sealed = encrypt_ok(&f->key, &f->plain);
	assert_int_equal(f->sealed.len, THREE_CHUNKS_SEALED);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	free_blob(&f->plain);
	free_blob(&f->sealed);
	free(f);
	return 0;
}

/* The documented file size for a plaintext of len bytes. */
static size_t sealed_size(size_t len)
{
	const size_t full = len / CHUNK, rest = len % CHUNK;
	return HEADER + full * FULL_RECORD + (rest == 0 && len > 0 ? 0 : CHUNK_HEADER + rest + TAG);
}

/* ---- round trips ---- */

static void round_trip(size_t len)
{
	bkv_key key;
	assert_int_equal(bkv_key_generate(&key), BKV_OK);
	blob plain = random_blob(len);
	blob sealed = encrypt_ok(&key, &plain);
	assert_int_equal(sealed.len, sealed_size(len));
	blob opened = decrypt_expect(&key, &sealed, BKV_OK, NULL);
	assert_int_equal(opened.len, len);
	if (len > 0)
		assert_memory_equal(opened.data, plain.data, len);
	free_blob(&opened);
	free_blob(&sealed);
	free_blob(&plain);
}

static void round_trip_empty_file(void **state)
{
	(void)state;
	round_trip(0);
	assert_int_equal(sealed_size(0), 98);
}

static void round_trip_one_byte(void **state)
{
	(void)state;
	round_trip(1);
	assert_int_equal(sealed_size(1), 99);
}

static void round_trip_one_byte_short_of_a_chunk(void **state)
{
	(void)state;
	round_trip(CHUNK - 1);
}

static void round_trip_exactly_one_chunk(void **state)
{
	(void)state;
	round_trip(CHUNK);
	assert_int_equal(sealed_size(CHUNK), 65634);
}

static void round_trip_one_byte_over_a_chunk(void **state)
{
	(void)state;
	round_trip(CHUNK + 1);
	assert_int_equal(sealed_size(CHUNK + 1), 65656);
}

static void round_trip_10_mib(void **state)
{
	(void)state;
	round_trip(10 * 1024 * 1024);
}

/* ---- the layout, checked against the document with OpenSSL directly ---- */

static void header_and_chunk_headers_are_as_documented(void **state)
{
	fixture *f = *state;
	static const uint8_t magic[8] = {'b', 'k', 'v', 'b', 'a', 'k', '\r', '\n'};
	const uint8_t *s = f->sealed.data;
	assert_memory_equal(s, magic, 8);
	assert_int_equal(s[8], 1);
	static const uint8_t chunk_size[4] = {0x00, 0x01, 0x00, 0x00};
	assert_memory_equal(s + 9, chunk_size, 4);
	static const uint8_t full_chunk[5] = {0x00, 0x00, 0x01, 0x00, 0x00};
	assert_memory_equal(s + RECORD_AT(0), full_chunk, 5);
	assert_memory_equal(s + RECORD_AT(1), full_chunk, 5);
	static const uint8_t final_chunk[5] = {0x01, 0x00, 0x00, 0x03, 0xe8}; /* 1000 */
	assert_memory_equal(s + RECORD_AT(2), final_chunk, 5);
}

static void empty_file_is_one_empty_final_chunk(void **state)
{
	fixture *f = *state;
	blob empty = {NULL, 0};
	blob sealed = encrypt_ok(&f->key, &empty);
	assert_int_equal(sealed.len, HEADER + CHUNK_HEADER + TAG);
	static const uint8_t final_empty[5] = {0x01, 0x00, 0x00, 0x00, 0x00};
	assert_memory_equal(sealed.data + HEADER, final_empty, 5);
	free_blob(&sealed);
}

static void full_last_chunk_is_the_final_chunk(void **state)
{
	fixture *f = *state;
	blob plain = random_blob(2 * CHUNK);
	blob sealed = encrypt_ok(&f->key, &plain);
	assert_int_equal(sealed.len, HEADER + 2 * FULL_RECORD);
	static const uint8_t final_full[5] = {0x01, 0x00, 0x01, 0x00, 0x00};
	assert_int_equal(sealed.data[RECORD_AT(0)], 0x00);
	assert_memory_equal(sealed.data + RECORD_AT(1), final_full, 5);
	free_blob(&sealed);
	free_blob(&plain);
}

/* HKDF-SHA256(key, salt, "bkv-v1 backup") -> 64 bytes, with OpenSSL rather than libbkv. */
static void reference_keys(const bkv_key *key, const uint8_t *salt, uint8_t okm[64])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key->bytes, 32),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, 32),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)"bkv-v1 backup", 13),
	    OSSL_PARAM_construct_end(),
	};
	assert_int_equal(EVP_KDF_derive(ctx, okm, 64, params), 1);
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
}

static void file_decrypts_by_the_document_alone(void **state)
{
	fixture *f = *state;
	const uint8_t *s = f->sealed.data;
	uint8_t okm[64];
	reference_keys(&f->key, s + SALT_AT, okm);

	uint8_t commitment[32];
	unsigned int commitment_len = 0;
	assert_non_null(
	    HMAC(EVP_sha256(), okm + 32, 32, s, COMMITMENT_AT, commitment, &commitment_len));
	assert_memory_equal(s + COMMITMENT_AT, commitment, 32);

	uint8_t *plain = malloc(CHUNK);
	assert_non_null(plain);
	for (size_t i = 0; i < 3; i++) {
		const uint8_t *record = s + RECORD_AT(i);
		const size_t length = i < 2 ? CHUNK : 1000;
		uint8_t nonce[12] = {0};
		nonce[10] = (uint8_t)i;
		nonce[11] = i == 2 ? 0x01 : 0x00;
		uint8_t aad[HEADER + CHUNK_HEADER];
		memcpy(aad, s, HEADER);
		memcpy(aad + HEADER, record, CHUNK_HEADER);
		EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
		int n = 0;
		assert_int_equal(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, okm, nonce), 1);
		assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)sizeof(aad)), 1);
		assert_int_equal(
		    EVP_DecryptUpdate(ctx, plain, &n, record + CHUNK_HEADER, (int)length), 1);
		assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG,
		                                     (void *)(record + CHUNK_HEADER + length)),
		                 1);
		assert_int_equal(EVP_DecryptFinal_ex(ctx, plain + n, &n), 1);
		EVP_CIPHER_CTX_free(ctx);
		assert_memory_equal(plain, f->plain.data + i * CHUNK, length);
	}
	free(plain);
}

static void every_file_gets_a_fresh_salt(void **state)
{
	fixture *f = *state;
	blob again = encrypt_ok(&f->key, &f->plain);
	assert_int_equal(again.len, f->sealed.len);
	assert_memory_not_equal(again.data + SALT_AT, f->sealed.data + SALT_AT, 32);
	assert_memory_not_equal(again.data + RECORD_AT(0), f->sealed.data + RECORD_AT(0), 64);
	free_blob(&again);
}

/* ---- truncation ---- */

static void expect_cut_at(const fixture *f, size_t len, const char *message_part)
{
	blob cut = {f->sealed.data, len};
	expect_failure(&f->key, &cut, BKV_ERR_TRUNCATED, message_part);
}

static void cut_inside_the_header_is_truncated(void **state)
{
	fixture *f = *state;
	expect_cut_at(f, 0, "header is cut short (0 of 77");
	expect_cut_at(f, 5, "header is cut short (5 of 77");
	expect_cut_at(f, 40, "header is cut short (40 of 77");
	expect_cut_at(f, HEADER - 1, "header is cut short (76 of 77");
}

static void cut_right_after_the_header_is_truncated(void **state)
{
	fixture *f = *state;
	expect_cut_at(f, HEADER, "ends after the header");
}

static void cut_inside_a_chunk_header_is_truncated(void **state)
{
	fixture *f = *state;
	expect_cut_at(f, RECORD_AT(1) + 3, "chunk 1 is cut short");
}

static void cut_in_the_middle_of_a_chunk_is_truncated(void **state)
{
	fixture *f = *state;
	expect_cut_at(f, RECORD_AT(1) + 30000, "chunk 1 is cut short");
	expect_cut_at(f, RECORD_AT(0) + FULL_RECORD - 1, "chunk 0 is cut short");
	/* Inside the final chunk too. */
	expect_cut_at(f, THREE_CHUNKS_SEALED - 1, "chunk 2 is cut short");
	expect_cut_at(f, RECORD_AT(2) + CHUNK_HEADER + 10, "chunk 2 is cut short");
}

static void cut_at_a_chunk_boundary_is_truncated(void **state)
{
	fixture *f = *state;
	expect_cut_at(f, RECORD_AT(1), "ends after chunk 0 without the final chunk");
}

static void dropping_the_final_chunk_is_truncated(void **state)
{
	fixture *f = *state;
	expect_cut_at(f, RECORD_AT(2), "ends after chunk 1 without the final chunk");
}

/* ---- modification ---- */

static void expect_flip(const fixture *f, size_t offset, bkv_status expected,
                        const char *message_part)
{
	blob damaged = copy_blob(&f->sealed);
	damaged.data[offset] ^= 0x01;
	expect_failure(&f->key, &damaged, expected, message_part);
	free_blob(&damaged);
}

static void flipped_byte_in_chunk_0_is_tampered(void **state)
{
	fixture *f = *state;
	expect_flip(f, RECORD_AT(0) + CHUNK_HEADER, BKV_ERR_TAMPERED,
	            "chunk 0 failed authentication");
	expect_flip(f, RECORD_AT(0) + CHUNK_HEADER + 40000, BKV_ERR_TAMPERED,
	            "chunk 0 failed authentication");
}

static void flipped_byte_in_the_last_chunk_is_tampered(void **state)
{
	fixture *f = *state;
	expect_flip(f, RECORD_AT(2) + CHUNK_HEADER + 999, BKV_ERR_TAMPERED,
	            "chunk 2 failed authentication");
}

static void flipped_byte_in_a_chunk_tag_is_tampered(void **state)
{
	fixture *f = *state;
	expect_flip(f, RECORD_AT(1) + CHUNK_HEADER + CHUNK, BKV_ERR_TAMPERED,
	            "chunk 1 failed authentication");
	expect_flip(f, THREE_CHUNKS_SEALED - 1, BKV_ERR_TAMPERED, "chunk 2 failed authentication");
}

static void flipped_byte_in_a_chunk_header_is_tampered(void **state)
{
	fixture *f = *state;
	/* final 0 -> 1 on a full chunk: a valid header, but sealed under the other nonce. */
	expect_flip(f, RECORD_AT(0), BKV_ERR_TAMPERED, "chunk 0 failed authentication");
	/* final 1 -> 0 on a short chunk, and a non-final chunk's length: invalid headers. */
	expect_flip(f, RECORD_AT(2), BKV_ERR_TAMPERED, "chunk 2 has an invalid chunk header");
	expect_flip(f, RECORD_AT(1) + 4, BKV_ERR_TAMPERED, "chunk 1 has an invalid chunk header");
}

static void final_chunk_length_changed_is_tampered_or_truncated(void **state)
{
	fixture *f = *state;
	blob changed = copy_blob(&f->sealed);
	/* 1000 -> 992: the tag no longer lines up. */
	changed.data[RECORD_AT(2) + 4] = 0xe0;
	expect_failure(&f->key, &changed, BKV_ERR_TAMPERED, "chunk 2 failed authentication");
	/* 1000 -> 1001: more than the file holds, which is what truncation looks like (the
	 * documented price of telling truncation apart). */
	changed.data[RECORD_AT(2) + 4] = 0xe9;
	expect_failure(&f->key, &changed, BKV_ERR_TRUNCATED, "chunk 2 is cut short");
	free_blob(&changed);
}

static void unknown_final_flag_is_tampered(void **state)
{
	fixture *f = *state;
	blob damaged = copy_blob(&f->sealed);
	damaged.data[RECORD_AT(1)] = 0x02;
	expect_failure(&f->key, &damaged, BKV_ERR_TAMPERED, "chunk 1 has an invalid chunk header");
	free_blob(&damaged);
}

static void flipped_byte_in_the_commitment_or_salt_is_a_wrong_key(void **state)
{
	fixture *f = *state;
	expect_flip(f, COMMITMENT_AT, BKV_ERR_WRONG_KEY, "another key");
	expect_flip(f, HEADER - 1, BKV_ERR_WRONG_KEY, "another key");
	expect_flip(f, SALT_AT + 7, BKV_ERR_WRONG_KEY, "another key");
}

/* ---- reordering, foreign chunks, appended data ---- */

static void swapped_chunks_are_tampered_and_named(void **state)
{
	fixture *f = *state;
	blob swapped = copy_blob(&f->sealed);
	memcpy(swapped.data + RECORD_AT(0), f->sealed.data + RECORD_AT(1), FULL_RECORD);
	memcpy(swapped.data + RECORD_AT(1), f->sealed.data + RECORD_AT(0), FULL_RECORD);
	expect_failure(&f->key, &swapped, BKV_ERR_TAMPERED, "chunk 0 is chunk 1 of this file");
	free_blob(&swapped);
}

static void final_chunk_moved_forward_is_tampered(void **state)
{
	fixture *f = *state;
	/* header, chunk 0, final chunk 2: chunk 1 dropped. */
	const size_t final_record = THREE_CHUNKS_SEALED - RECORD_AT(2);
	blob dropped = {malloc(RECORD_AT(1) + final_record), RECORD_AT(1) + final_record};
	assert_non_null(dropped.data);
	memcpy(dropped.data, f->sealed.data, RECORD_AT(1));
	memcpy(dropped.data + RECORD_AT(1), f->sealed.data + RECORD_AT(2), final_record);
	expect_failure(&f->key, &dropped, BKV_ERR_TAMPERED, "chunk 1 is chunk 2 of this file");
	free_blob(&dropped);
}

static void repeated_chunk_is_tampered(void **state)
{
	fixture *f = *state;
	blob repeated = copy_blob(&f->sealed);
	memcpy(repeated.data + RECORD_AT(1), f->sealed.data + RECORD_AT(0), FULL_RECORD);
	expect_failure(&f->key, &repeated, BKV_ERR_TAMPERED, "chunk 1 is chunk 0 of this file");
	free_blob(&repeated);
}

static void chunk_from_another_file_with_the_same_key_is_tampered(void **state)
{
	fixture *f = *state;
	blob other = encrypt_ok(&f->key, &f->plain); /* same key, same plaintext, other salt */
	blob mixed = copy_blob(&f->sealed);
	memcpy(mixed.data + RECORD_AT(1), other.data + RECORD_AT(1), FULL_RECORD);
	expect_failure(&f->key, &mixed, BKV_ERR_TAMPERED,
	               "chunk 1 failed authentication (modified, reordered or from another file)");
	/* The other file's final chunk in place of ours. */
	free_blob(&mixed);
	mixed = copy_blob(&f->sealed);
	memcpy(mixed.data + RECORD_AT(2), other.data + RECORD_AT(2), mixed.len - RECORD_AT(2));
	expect_failure(&f->key, &mixed, BKV_ERR_TAMPERED, "chunk 2 failed authentication");
	free_blob(&mixed);
	free_blob(&other);
}

static void expect_appended(const fixture *f, const blob *sealed, const uint8_t *extra,
                            size_t extra_len, const char *message_part)
{
	blob longer = {malloc(sealed->len + extra_len), sealed->len + extra_len};
	assert_non_null(longer.data);
	memcpy(longer.data, sealed->data, sealed->len);
	memcpy(longer.data + sealed->len, extra, extra_len);
	expect_failure(&f->key, &longer, BKV_ERR_TAMPERED, message_part);
	free_blob(&longer);
}

static void data_after_the_final_chunk_is_tampered(void **state)
{
	fixture *f = *state;
	static const uint8_t one[1] = {0};
	expect_appended(f, &f->sealed, one, 1, "data after the final chunk (chunk 2)");
	/* A whole record appended: the final chunk again. */
	expect_appended(f, &f->sealed, f->sealed.data + RECORD_AT(2), f->sealed.len - RECORD_AT(2),
	                "data after the final chunk");
	/* After a full final chunk, and after an empty one. */
	blob full = random_blob(CHUNK);
	blob sealed_full = encrypt_ok(&f->key, &full);
	expect_appended(f, &sealed_full, one, 1, "data after the final chunk (chunk 0)");
	blob empty = {NULL, 0};
	blob sealed_empty = encrypt_ok(&f->key, &empty);
	expect_appended(f, &sealed_empty, one, 1, "data after the final chunk (chunk 0)");
	free_blob(&sealed_empty);
	free_blob(&sealed_full);
	free_blob(&full);
}

/* ---- keys and formats ---- */

static void wrong_key_is_detected_before_any_chunk(void **state)
{
	fixture *f = *state;
	bkv_key other;
	assert_int_equal(bkv_key_generate(&other), BKV_OK);
	blob plain = decrypt_expect(&other, &f->sealed, BKV_ERR_WRONG_KEY, "another key");
	assert_int_equal(plain.len, 0);
	free_blob(&plain);
	/* A key one bit away. */
	other = f->key;
	other.bytes[31] ^= 0x80;
	expect_failure(&other, &f->sealed, BKV_ERR_WRONG_KEY, "another key");
}

static void bad_magic_is_not_a_backup(void **state)
{
	fixture *f = *state;
	expect_flip(f, 0, BKV_ERR_FORMAT, "not a bkv backup");
	expect_flip(f, 7, BKV_ERR_FORMAT, "not a bkv backup");
	static const char text[] = "Dear diary, today I made a backup.\n";
	blob diary = {(uint8_t *)text, sizeof(text) - 1};
	expect_failure(&f->key, &diary, BKV_ERR_FORMAT, "not a bkv backup");
	blob short_text = {(uint8_t *)text, 3};
	expect_failure(&f->key, &short_text, BKV_ERR_FORMAT, "not a bkv backup");
	/* CR LF turned into LF by a text-mode transfer. */
	blob unix_lines = copy_blob(&f->sealed);
	memmove(unix_lines.data + 6, unix_lines.data + 7, unix_lines.len - 7);
	unix_lines.len--;
	expect_failure(&f->key, &unix_lines, BKV_ERR_FORMAT, "not a bkv backup");
	free_blob(&unix_lines);
}

static void unknown_version_is_a_format_error(void **state)
{
	fixture *f = *state;
	blob changed = copy_blob(&f->sealed);
	changed.data[8] = 2;
	expect_failure(&f->key, &changed, BKV_ERR_FORMAT, "version 2");
	changed.data[8] = 0;
	expect_failure(&f->key, &changed, BKV_ERR_FORMAT, "version 0");
	free_blob(&changed);
}

static void other_chunk_size_is_a_format_error(void **state)
{
	fixture *f = *state;
	blob changed = copy_blob(&f->sealed);
	changed.data[11] = 0x80; /* 0x00018000 */
	expect_failure(&f->key, &changed, BKV_ERR_FORMAT, "chunk size 98304");
	free_blob(&changed);
}

/* ---- what is written, progress, arguments, I/O ---- */

static void only_authenticated_chunks_are_written(void **state)
{
	fixture *f = *state;
	blob damaged = copy_blob(&f->sealed);
	damaged.data[RECORD_AT(2) + CHUNK_HEADER] ^= 0x01;
	blob plain = decrypt_expect(&f->key, &damaged, BKV_ERR_TAMPERED, "chunk 2");
	assert_int_equal(plain.len, 2 * CHUNK);
	assert_memory_equal(plain.data, f->plain.data, 2 * CHUNK);
	free_blob(&plain);
	free_blob(&damaged);
}

typedef struct progress_log {
	int calls;
	uint64_t last_done;
	uint64_t total;
	bool monotonic;
} progress_log;

static void log_progress(void *arg, uint64_t done, uint64_t total)
{
	progress_log *log = arg;
	log->monotonic = log->monotonic && done >= log->last_done;
	log->last_done = done;
	log->total = total;
	log->calls++;
}

static void progress_counts_input_bytes_every_16_chunks_and_at_the_end(void **state)
{
	(void)state;
	bkv_key key;
	assert_int_equal(bkv_key_generate(&key), BKV_OK);
	/* 48 full chunks and a final 1-byte one: calls after chunks 15, 31, 47 and 48. */
	blob plain = random_blob(48 * CHUNK + 1);
	FILE *in = stream_of(plain.data, plain.len);
	char *sealed_data = NULL;
	size_t sealed_len = 0;
	FILE *out = open_memstream(&sealed_data, &sealed_len);
	progress_log log = {.monotonic = true};
	bkv_error error;
	assert_int_equal(bkv_backup_encrypt(&key, in, out, 12345, log_progress, &log, &error),
	                 BKV_OK);
	fclose(out);
	fclose(in);
	assert_int_equal(log.calls, 4);
	assert_true(log.monotonic);
	assert_int_equal(log.last_done, plain.len);
	assert_int_equal(log.total, 12345);

	in = stream_of((uint8_t *)sealed_data, sealed_len);
	out = fopen("/dev/null", "wb");
	assert_non_null(out);
	log = (progress_log){.monotonic = true};
	assert_int_equal(bkv_backup_decrypt(&key, in, out, 0, log_progress, &log, &error), BKV_OK);
	fclose(out);
	fclose(in);
	assert_int_equal(log.calls, 4);
	assert_true(log.monotonic);
	assert_int_equal(log.last_done, sealed_len);
	assert_int_equal(log.total, 0);
	free(sealed_data);
	free_blob(&plain);
}

static void null_arguments_are_rejected(void **state)
{
	fixture *f = *state;
	FILE *in = stream_of(f->plain.data, 10);
	FILE *out = fopen("/dev/null", "wb");
	assert_non_null(out);
	bkv_error error;
	assert_int_equal(bkv_backup_encrypt(NULL, in, out, 0, NULL, NULL, &error),
	                 BKV_ERR_ARGUMENT);
	assert_int_equal(bkv_backup_encrypt(&f->key, NULL, out, 0, NULL, NULL, &error),
	                 BKV_ERR_ARGUMENT);
	assert_int_equal(bkv_backup_encrypt(&f->key, in, NULL, 0, NULL, NULL, NULL),
	                 BKV_ERR_ARGUMENT);
	assert_int_equal(bkv_backup_decrypt(NULL, in, out, 0, NULL, NULL, &error),
	                 BKV_ERR_ARGUMENT);
	assert_int_equal(bkv_backup_decrypt(&f->key, NULL, out, 0, NULL, NULL, &error),
	                 BKV_ERR_ARGUMENT);
	assert_int_equal(bkv_backup_decrypt(&f->key, in, NULL, 0, NULL, NULL, NULL),
	                 BKV_ERR_ARGUMENT);
	fclose(out);
	fclose(in);
}

static void read_and_write_failures_are_io_errors(void **state)
{
	fixture *f = *state;
	bkv_error error;
	/* An input opened for writing only cannot be read. */
	FILE *in = fopen("/dev/null", "wb");
	FILE *out = fopen("/dev/null", "wb");
	assert_non_null(in);
	assert_non_null(out);
	assert_int_equal(bkv_backup_encrypt(&f->key, in, out, 0, NULL, NULL, &error), BKV_ERR_IO);
	assert_int_equal(bkv_backup_decrypt(&f->key, in, out, 0, NULL, NULL, &error), BKV_ERR_IO);
	fclose(in);
	fclose(out);
	/* /dev/full: every write fails with ENOSPC. */
	out = fopen("/dev/full", "wb");
	assert_non_null(out);
	in = stream_of(f->plain.data, f->plain.len);
	assert_int_equal(bkv_backup_encrypt(&f->key, in, out, 0, NULL, NULL, &error), BKV_ERR_IO);
	assert_non_null(strstr(error.message, "writing the output failed"));
	fclose(in);
	clearerr(out);
	in = stream_of(f->sealed.data, f->sealed.len);
	assert_int_equal(bkv_backup_decrypt(&f->key, in, out, 0, NULL, NULL, &error), BKV_ERR_IO);
	fclose(in);
	fclose(out);
}

/* ---- constant memory ---- */

/* A read-only stream of `remaining` pattern bytes and a write-only sink, both without memory
 * that grows with the data. */
static ssize_t pattern_read(void *cookie, char *buf, size_t size)
{
	uint64_t *remaining = cookie;
	const size_t n = size < *remaining ? size : (size_t)*remaining;
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)((*remaining - i) * 131);
	*remaining -= n;
	return (ssize_t)n;
}

static ssize_t sink_write(void *cookie, const char *buf, size_t size)
{
	(void)cookie;
	(void)buf;
	return (ssize_t)size;
}

/* Peak RSS in KiB of a child process that encrypts `bytes` pattern bytes into a sink, or
 * (decrypt) that decrypts them from a pipe into which a grandchild encrypts them. */
static long peak_rss_kib(const bkv_key *key, bool decrypt, uint64_t bytes)
{
	int report[2];
	assert_int_equal(pipe(report), 0);
	const pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(report[0]);
		uint64_t remaining = bytes;
		int data[2] = {-1, -1};
		pid_t producer = -1;
		FILE *in, *out;
		if (decrypt) {
			if (pipe(data) != 0)
				_exit(2);
			producer = fork();
			if (producer == 0) {
				close(data[0]);
				in = fopencookie(&remaining, "r",
				                 (cookie_io_functions_t){.read = pattern_read});
				out = fdopen(data[1], "w");
				const bkv_status s =
				    bkv_backup_encrypt(key, in, out, 0, NULL, NULL, NULL);
				_exit(s == BKV_OK && fclose(out) == 0 ? 0 : 3);
			}
			close(data[1]);
			in = fdopen(data[0], "r");
		} else {
			in = fopencookie(&remaining, "r",
			                 (cookie_io_functions_t){.read = pattern_read});
		}
		out = fopencookie(NULL, "w", (cookie_io_functions_t){.write = sink_write});
		const bkv_status s = decrypt
		                         ? bkv_backup_decrypt(key, in, out, 0, NULL, NULL, NULL)
		                         : bkv_backup_encrypt(key, in, out, 0, NULL, NULL, NULL);
		struct rusage usage;
		getrusage(RUSAGE_SELF, &usage);
		int producer_status = 0;
		if (producer > 0 && waitpid(producer, &producer_status, 0) != producer)
			_exit(5);
		const long peak = s == BKV_OK && producer_status == 0 ? usage.ru_maxrss : -1;
		if (write(report[1], &peak, sizeof(peak)) != (ssize_t)sizeof(peak))
			_exit(4);
		_exit(0);
	}
	close(report[1]);
	long peak = -1;
	assert_int_equal(read(report[0], &peak, sizeof(peak)), sizeof(peak));
	close(report[0]);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(peak > 0);
	return peak;
}

static void memory_stays_flat_from_16_to_256_mib(void **state)
{
	fixture *f = *state;
	for (int decrypt = 0; decrypt <= 1; decrypt++) {
		const long small = peak_rss_kib(&f->key, decrypt, 16u << 20);
		const long large = peak_rss_kib(&f->key, decrypt, 256u << 20);
		print_message("%s: peak RSS %ld KiB for 16 MiB, %ld KiB for 256 MiB\n",
		              decrypt ? "decrypt" : "encrypt", small, large);
		assert_true(large - small < 1024);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(round_trip_empty_file),
	    cmocka_unit_test(round_trip_one_byte),
	    cmocka_unit_test(round_trip_one_byte_short_of_a_chunk),
	    cmocka_unit_test(round_trip_exactly_one_chunk),
	    cmocka_unit_test(round_trip_one_byte_over_a_chunk),
	    cmocka_unit_test(round_trip_10_mib),
	    cmocka_unit_test_setup_teardown(header_and_chunk_headers_are_as_documented, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(empty_file_is_one_empty_final_chunk, setup, teardown),
	    cmocka_unit_test_setup_teardown(full_last_chunk_is_the_final_chunk, setup, teardown),
	    cmocka_unit_test_setup_teardown(file_decrypts_by_the_document_alone, setup, teardown),
	    cmocka_unit_test_setup_teardown(every_file_gets_a_fresh_salt, setup, teardown),
	    cmocka_unit_test_setup_teardown(cut_inside_the_header_is_truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(cut_right_after_the_header_is_truncated, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(cut_inside_a_chunk_header_is_truncated, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(cut_in_the_middle_of_a_chunk_is_truncated, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(cut_at_a_chunk_boundary_is_truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(dropping_the_final_chunk_is_truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(flipped_byte_in_chunk_0_is_tampered, setup, teardown),
	    cmocka_unit_test_setup_teardown(flipped_byte_in_the_last_chunk_is_tampered, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(flipped_byte_in_a_chunk_tag_is_tampered, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(flipped_byte_in_a_chunk_header_is_tampered, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(final_chunk_length_changed_is_tampered_or_truncated,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(unknown_final_flag_is_tampered, setup, teardown),
	    cmocka_unit_test_setup_teardown(flipped_byte_in_the_commitment_or_salt_is_a_wrong_key,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(swapped_chunks_are_tampered_and_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(final_chunk_moved_forward_is_tampered, setup, teardown),
	    cmocka_unit_test_setup_teardown(repeated_chunk_is_tampered, setup, teardown),
	    cmocka_unit_test_setup_teardown(chunk_from_another_file_with_the_same_key_is_tampered,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(data_after_the_final_chunk_is_tampered, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(wrong_key_is_detected_before_any_chunk, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(bad_magic_is_not_a_backup, setup, teardown),
	    cmocka_unit_test_setup_teardown(unknown_version_is_a_format_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(other_chunk_size_is_a_format_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(only_authenticated_chunks_are_written, setup, teardown),
	    cmocka_unit_test(progress_counts_input_bytes_every_16_chunks_and_at_the_end),
	    cmocka_unit_test_setup_teardown(null_arguments_are_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(read_and_write_failures_are_io_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(memory_stays_flat_from_16_to_256_mib, setup, teardown),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
