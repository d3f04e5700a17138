/*
 * backup.c - encrypted backup files (docs/BACKUP-FORMAT.md): a 77-byte header that commits
 * to the key, then AES-256-GCM chunks of 64 KiB under the STREAM construction (the nonce is
 * the chunk's position and a final flag), so that a wrong key, a truncated file, a modified,
 * reordered or foreign chunk and data after the end each fail with their own status.
 *
 * Invariants: memory is constant whatever the file size (one allocation per call, holding one
 * input and one output record; nothing is allocated per chunk); decryption writes a chunk's
 * plaintext only after its tag verified; the derived keys, the cipher state and both buffers
 * are wiped before they are freed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <sodium.h>

#include "internal.h"
#include "opaque/wire.h"

static const uint8_t MAGIC[] = {'b', 'k', 'v', 'b', 'a', 'k', '\r', '\n'};

#define MAGIC_BYTES           sizeof(MAGIC)
#define FORMAT_VERSION        1
#define SALT_BYTES            32
#define COMMITMENT_BYTES      32
#define COMMITTED_BYTES       (MAGIC_BYTES + 1 + 4 + SALT_BYTES)   /* what the commitment covers */
#define HEADER_BYTES          (COMMITTED_BYTES + COMMITMENT_BYTES) /* 77 */
#define CHUNK_HEADER_BYTES    5 /* final flag (1), plaintext length (4) */
#define TAG_BYTES             16
#define NONCE_BYTES           12
#define RECORD_MAX_BYTES      (CHUNK_HEADER_BYTES + BKV_BACKUP_CHUNK_BYTES + TAG_BYTES)
#define CHUNK_KEY_BYTES       32
#define COMMITMENT_KEY_BYTES  32
#define KEY_INFO              "bkv-v1 backup"
#define PROGRESS_EVERY_CHUNKS 16 /* 1 MiB */
#define REORDER_WINDOW        64 /* positions tried either side when a chunk fails */

typedef struct backup_stream {
	EVP_CIPHER_CTX *cipher; /* keyed once per file; only the nonce changes per chunk */
	bkv_progress_fn progress;
	void *progress_arg;
	uint64_t total_hint;
	uint64_t done; /* bytes read from the input so far */
	/* The current chunk's AAD: the file header, then the chunk's own header. */
	uint8_t aad[HEADER_BYTES + CHUNK_HEADER_BYTES];
	uint8_t in[RECORD_MAX_BYTES];  /* plaintext (encrypt) or ciphertext and tag (decrypt) */
	uint8_t out[RECORD_MAX_BYTES]; /* chunk header, ciphertext and tag, or plaintext */
} backup_stream;

static bkv_status io_failure(bkv_error *error, const char *what, int errnum)
{
	char reason[128] = "unknown error";
	if (errnum != 0)
		(void)strerror_r(errnum, reason, sizeof(reason));
	return bkvi_fail(error, BKV_ERR_IO, "%s failed: %s", what, reason);
}

/* Whether in has no byte left: reads one byte ahead and pushes it back. */
static bkv_status at_end(FILE *in, bool *end, bkv_error *error)
{
	const int c = getc(in);
	if (c == EOF && ferror(in))
		return io_failure(error, "reading the input", errno);
	*end = c == EOF;
	if (!*end)
		ungetc(c, in); /* one byte of push-back always succeeds */
	return BKV_OK;
}

static bkv_status flush_output(FILE *out, bkv_error *error)
{
	if (fflush(out) != 0)
		return io_failure(error, "writing the output", errno);
	return BKV_OK;
}

static void report_progress(backup_stream *s, uint64_t index, bool final)
{
	if (s->progress != NULL && (final || (index + 1) % PROGRESS_EVERY_CHUNKS == 0))
		s->progress(s->progress_arg, s->done, s->total_hint);
}

/* HKDF-SHA256(ikm = key, salt, info = "bkv-v1 backup") -> chunk key || commitment key. */
static bool derive_keys(const bkv_key *key, const uint8_t *salt,
                        uint8_t okm[CHUNK_KEY_BYTES + COMMITMENT_KEY_BYTES])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
	EVP_KDF_CTX *kdf_ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key->bytes,
	                                      BKV_KEY_BYTES),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, SALT_BYTES),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)KEY_INFO,
	                                      sizeof(KEY_INFO) - 1),
	    OSSL_PARAM_construct_end(),
	};
	const bool ok =
	    kdf_ctx != NULL &&
	    EVP_KDF_derive(kdf_ctx, okm, CHUNK_KEY_BYTES + COMMITMENT_KEY_BYTES, params) == 1;
	EVP_KDF_CTX_free(kdf_ctx); /* cleanses the key it holds */
	EVP_KDF_free(kdf);
	return ok;
}

/* Keys s->cipher for the file whose committed header bytes are in s->aad and computes the
 * commitment tag over them. */
static bool start_file(backup_stream *s, const bkv_key *key, const uint8_t *salt, int encrypt,
                       uint8_t commitment[COMMITMENT_BYTES])
{
	uint8_t okm[CHUNK_KEY_BYTES + COMMITMENT_KEY_BYTES];
	const bool ok =
	    derive_keys(key, salt, okm) &&
	    EVP_CipherInit_ex(s->cipher, EVP_aes_256_gcm(), NULL, okm, NULL, encrypt) == 1 &&
	    crypto_auth_hmacsha256(commitment, s->aad, COMMITTED_BYTES, okm + CHUNK_KEY_BYTES) == 0;
	sodium_memzero(okm, sizeof(okm));
	return ok;
}

/* STREAM: the 11-byte big-endian chunk index, then the final flag. */
static void chunk_nonce(uint8_t nonce[NONCE_BYTES], uint64_t index, uint8_t final)
{
	opaque_writer w = opaque_writer_init(nonce, NONCE_BYTES);
	opaque_writer_uint(&w, 3, 0); /* the index's top bytes: 2^64 chunks are never reached */
	opaque_writer_uint(&w, 8, index);
	opaque_writer_uint(&w, 1, final);
}

/* Seals the first length bytes of s->in as chunk index into s->out: the chunk header, the
 * ciphertext and the tag. */
static bool seal_chunk(backup_stream *s, uint64_t index, uint8_t final, size_t length)
{
	uint8_t *chunk_header = s->aad + HEADER_BYTES;
	opaque_writer w = opaque_writer_init(chunk_header, CHUNK_HEADER_BYTES);
	opaque_writer_uint(&w, 1, final);
	opaque_writer_uint(&w, 4, length);
	memcpy(s->out, chunk_header, CHUNK_HEADER_BYTES);

	uint8_t *ciphertext = s->out + CHUNK_HEADER_BYTES;
	uint8_t nonce[NONCE_BYTES];
	chunk_nonce(nonce, index, final);
	int n;
	return EVP_EncryptInit_ex(s->cipher, NULL, NULL, NULL, nonce) == 1 &&
	       EVP_EncryptUpdate(s->cipher, NULL, &n, s->aad, (int)sizeof(s->aad)) == 1 &&
	       EVP_EncryptUpdate(s->cipher, ciphertext, &n, s->in, (int)length) == 1 &&
	       EVP_EncryptFinal_ex(s->cipher, ciphertext + n, &n) == 1 &&
	       EVP_CIPHER_CTX_ctrl(s->cipher, EVP_CTRL_GCM_GET_TAG, TAG_BYTES,
	                           ciphertext + length) == 1;
}

/* Opens the chunk in s->in (length bytes of ciphertext, then the tag) as chunk index into
 * s->out. The chunk header is already in s->aad. */
static bool open_chunk(backup_stream *s, uint64_t index, uint8_t final, size_t length)
{
	uint8_t nonce[NONCE_BYTES];
	chunk_nonce(nonce, index, final);
	int n;
	return EVP_DecryptInit_ex(s->cipher, NULL, NULL, NULL, nonce) == 1 &&
	       EVP_DecryptUpdate(s->cipher, NULL, &n, s->aad, (int)sizeof(s->aad)) == 1 &&
	       EVP_DecryptUpdate(s->cipher, s->out, &n, s->in, (int)length) == 1 &&
	       EVP_CIPHER_CTX_ctrl(s->cipher, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, s->in + length) ==
	           1 &&
	       EVP_DecryptFinal_ex(s->cipher, s->out + n, &n) == 1;
}

/* Chunk index failed under its own nonce. A chunk of this file that was moved opens under
 * the nonce of the position it came from, so nearby positions are tried to say so. */
static bkv_status chunk_failed(backup_stream *s, uint64_t index, uint8_t final, size_t length,
                               bkv_error *error)
{
	const uint64_t first = index > REORDER_WINDOW ? index - REORDER_WINDOW : 0;
	for (uint64_t origin = first; origin <= index + REORDER_WINDOW; origin++) {
		if (origin != index && open_chunk(s, origin, final, length))
			return bkvi_fail(error, BKV_ERR_TAMPERED,
			                 "chunk %" PRIu64 " is chunk %" PRIu64
			                 " of this file (chunks reordered, dropped or repeated)",
			                 index, origin);
	}
	return bkvi_fail(error, BKV_ERR_TAMPERED,
	                 "chunk %" PRIu64
	                 " failed authentication (modified, reordered or from another file)",
	                 index);
}

static bkv_status write_header(backup_stream *s, const bkv_key *key, FILE *out, bkv_error *error)
{
	uint8_t salt[SALT_BYTES];
	randombytes_buf(salt, sizeof(salt));
	opaque_writer w = opaque_writer_init(s->aad, HEADER_BYTES);
	opaque_writer_put(&w, MAGIC, MAGIC_BYTES);
	opaque_writer_uint(&w, 1, FORMAT_VERSION);
	opaque_writer_uint(&w, 4, BKV_BACKUP_CHUNK_BYTES);
	opaque_writer_put(&w, salt, SALT_BYTES);
	uint8_t commitment[COMMITMENT_BYTES];
	if (!start_file(s, key, salt, 1, commitment))
		return bkvi_fail(error, BKV_ERR_INTERNAL, "deriving the backup keys failed");
	opaque_writer_put(&w, commitment, COMMITMENT_BYTES);
	if (fwrite(s->aad, 1, HEADER_BYTES, out) != HEADER_BYTES)
		return io_failure(error, "writing the output", errno);
	return BKV_OK;
}

static bkv_status header_truncated(bkv_error *error, size_t got)
{
	return bkvi_fail(error, BKV_ERR_TRUNCATED, "the header is cut short (%zu of %zu bytes)",
	                 got, HEADER_BYTES);
}

/* Reads and checks the header, keys s->cipher and checks the key against the commitment. */
static bkv_status read_header(backup_stream *s, const bkv_key *key, FILE *in, bkv_error *error)
{
	const size_t got = fread(s->aad, 1, HEADER_BYTES, in);
	if (got < HEADER_BYTES && ferror(in))
		return io_failure(error, "reading the input", errno);

	opaque_reader r = opaque_reader_init(s->aad, got);
	const size_t magic_seen = got < MAGIC_BYTES ? got : MAGIC_BYTES;
	if (memcmp(opaque_reader_take(&r, magic_seen), MAGIC, magic_seen) != 0)
		return bkvi_fail(error, BKV_ERR_FORMAT,
		                 "not a bkv backup (the file does not start with \"bkvbak\")");
	uint64_t version, chunk_bytes;
	if (magic_seen < MAGIC_BYTES || !opaque_reader_uint(&r, 1, &version))
		return header_truncated(error, got);
	if (version != FORMAT_VERSION)
		return bkvi_fail(error, BKV_ERR_FORMAT,
		                 "unsupported backup format version %" PRIu64, version);
	if (!opaque_reader_uint(&r, 4, &chunk_bytes))
		return header_truncated(error, got);
	if (chunk_bytes != BKV_BACKUP_CHUNK_BYTES)
		return bkvi_fail(error, BKV_ERR_FORMAT, "unsupported chunk size %" PRIu64,
		                 chunk_bytes);
	const uint8_t *salt = opaque_reader_take(&r, SALT_BYTES);
	const uint8_t *stored = salt != NULL ? opaque_reader_take(&r, COMMITMENT_BYTES) : NULL;
	if (stored == NULL)
		return header_truncated(error, got);

	uint8_t expected[COMMITMENT_BYTES];
	if (!start_file(s, key, salt, 0, expected))
		return bkvi_fail(error, BKV_ERR_INTERNAL, "deriving the backup keys failed");
	if (sodium_memcmp(expected, stored, COMMITMENT_BYTES) != 0)
		return bkvi_fail(error, BKV_ERR_WRONG_KEY,
		                 "the backup was made with another key (or its header is damaged)");
	return BKV_OK;
}

/* Reads chunk index: its header into the AAD, its ciphertext and tag into s->in. */
static bkv_status read_chunk(backup_stream *s, FILE *in, uint64_t index, uint8_t *final,
                             size_t *length, bkv_error *error)
{
	uint8_t *chunk_header = s->aad + HEADER_BYTES;
	size_t got = fread(chunk_header, 1, CHUNK_HEADER_BYTES, in);
	if (got < CHUNK_HEADER_BYTES && ferror(in))
		return io_failure(error, "reading the input", errno);
	if (got == 0 && index == 0)
		return bkvi_fail(error, BKV_ERR_TRUNCATED, "the file ends after the header");
	if (got == 0)
		return bkvi_fail(error, BKV_ERR_TRUNCATED,
		                 "the file ends after chunk %" PRIu64 " without the final chunk",
		                 index - 1);

	opaque_reader r = opaque_reader_init(chunk_header, got);
	uint64_t flag, plaintext_bytes;
	if (!opaque_reader_uint(&r, 1, &flag) || !opaque_reader_uint(&r, 4, &plaintext_bytes))
		return bkvi_fail(error, BKV_ERR_TRUNCATED, "chunk %" PRIu64 " is cut short", index);
	/* Every chunk but the final one is full. */
	if (flag > 1 || plaintext_bytes > BKV_BACKUP_CHUNK_BYTES ||
	    (flag == 0 && plaintext_bytes != BKV_BACKUP_CHUNK_BYTES))
		return bkvi_fail(error, BKV_ERR_TAMPERED,
		                 "chunk %" PRIu64 " has an invalid chunk header", index);

	const size_t body = (size_t)plaintext_bytes + TAG_BYTES;
	got = fread(s->in, 1, body, in);
	if (got < body && ferror(in))
		return io_failure(error, "reading the input", errno);
	if (got < body)
		return bkvi_fail(error, BKV_ERR_TRUNCATED,
		                 "chunk %" PRIu64 " is cut short (%zu of %zu bytes)", index,
		                 CHUNK_HEADER_BYTES + got, CHUNK_HEADER_BYTES + body);
	s->done += CHUNK_HEADER_BYTES + body;
	*final = (uint8_t)flag;
	*length = (size_t)plaintext_bytes;
	return BKV_OK;
}

static bkv_status encrypt_stream(backup_stream *s, const bkv_key *key, FILE *in, FILE *out,
                                 bkv_error *error)
{
	bkv_status status = write_header(s, key, out, error);
	if (status != BKV_OK)
		return status;
	for (uint64_t index = 0;; index++) {
		const size_t length = fread(s->in, 1, BKV_BACKUP_CHUNK_BYTES, in);
		if (length < BKV_BACKUP_CHUNK_BYTES && ferror(in))
			return io_failure(error, "reading the input", errno);
		/* A full chunk is the final one when nothing follows it. */
		bool final = length < BKV_BACKUP_CHUNK_BYTES;
		if (!final) {
			status = at_end(in, &final, error);
			if (status != BKV_OK)
				return status;
		}
		if (!seal_chunk(s, index, final, length))
			return bkvi_fail(error, BKV_ERR_INTERNAL,
			                 "encrypting chunk %" PRIu64 " failed", index);
		const size_t record = CHUNK_HEADER_BYTES + length + TAG_BYTES;
		if (fwrite(s->out, 1, record, out) != record)
			return io_failure(error, "writing the output", errno);
		s->done += length;
		report_progress(s, index, final);
		if (final)
			return flush_output(out, error);
	}
}

static bkv_status decrypt_stream(backup_stream *s, const bkv_key *key, FILE *in, FILE *out,
                                 bkv_error *error)
{
	bkv_status status = read_header(s, key, in, error);
	if (status != BKV_OK)
		return status;
	s->done = HEADER_BYTES;
	for (uint64_t index = 0;; index++) {
		uint8_t final = 0;
		size_t length = 0;
		status = read_chunk(s, in, index, &final, &length, error);
		if (status != BKV_OK)
			return status;
		if (!open_chunk(s, index, final, length))
			return chunk_failed(s, index, final, length, error);
		if (final) {
			bool end = false;
			status = at_end(in, &end, error);
			if (status != BKV_OK)
				return status;
			if (!end)
				return bkvi_fail(error, BKV_ERR_TAMPERED,
				                 "data after the final chunk (chunk %" PRIu64 ")",
				                 index);
		}
		if (fwrite(s->out, 1, length, out) != length)
			return io_failure(error, "writing the output", errno);
		report_progress(s, index, final);
		if (final)
			return flush_output(out, error);
	}
}

static bkv_status run(bool encrypt, const bkv_key *key, FILE *in, FILE *out, uint64_t total_hint,
                      bkv_progress_fn progress, void *progress_arg, bkv_error *error)
{
	if (key == NULL || in == NULL || out == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "key, in and out must not be NULL");
	if (sodium_init() < 0)
		return bkvi_fail(error, BKV_ERR_INTERNAL, "libsodium failed to initialise");
	backup_stream *s = malloc(sizeof(*s));
	if (s == NULL)
		return bkvi_fail(error, BKV_ERR_NOMEM, "out of memory");
	s->cipher = EVP_CIPHER_CTX_new();
	s->progress = progress;
	s->progress_arg = progress_arg;
	s->total_hint = total_hint;
	s->done = 0;
	bkv_status status;
	if (s->cipher == NULL)
		status = bkvi_fail(error, BKV_ERR_NOMEM, "out of memory");
	else if (encrypt)
		status = encrypt_stream(s, key, in, out, error);
	else
		status = decrypt_stream(s, key, in, out, error);
	EVP_CIPHER_CTX_free(s->cipher); /* cleanses the key schedule */
	sodium_memzero(s, sizeof(*s));
	free(s);
	return status;
}

bkv_status bkv_backup_encrypt(const bkv_key *key, FILE *in, FILE *out, uint64_t total_hint,
                              bkv_progress_fn progress, void *progress_arg, bkv_error *error)
{
	return run(true, key, in, out, total_hint, progress, progress_arg, error);
}

bkv_status bkv_backup_decrypt(const bkv_key *key, FILE *in, FILE *out, uint64_t total_hint,
                              bkv_progress_fn progress, void *progress_arg, bkv_error *error)
{
	return run(false, key, in, out, total_hint, progress, progress_arg, error);
}
