/*
 * record_seal.c - sealing and opening account records (format in record_seal.h). The
 * header is parsed with explicit bounds; the AAD is rebuilt from the caller's view of
 * where the record belongs, never from the stored bytes alone.
 */
#include <string.h>

#include <sodium.h>

#include "opaque/wire.h"
#include "record_seal.h"

#define AAD_LABEL "bkv-v1 record"
#define AAD_MAX                                                                                    \
	(sizeof(AAD_LABEL) - 1 + 2 + BKV_ACCOUNT_ID_MAX + 1 + 8 + 4 + BKV_REGISTRATION_ID_BYTES)

static size_t build_aad(uint8_t aad[AAD_MAX], const uint8_t *account_id, size_t account_id_len,
                        opaque_suite_id suite, uint64_t record_version, uint32_t key_version,
                        const uint8_t *registration_id, size_t registration_id_len)
{
	opaque_writer w = opaque_writer_init(aad, AAD_MAX);
	opaque_writer_put(&w, (const uint8_t *)AAD_LABEL, sizeof(AAD_LABEL) - 1);
	opaque_writer_uint(&w, 2, account_id_len);
	opaque_writer_put(&w, account_id, account_id_len);
	opaque_writer_uint(&w, 1, (uint64_t)suite);
	opaque_writer_uint(&w, 8, record_version);
	opaque_writer_uint(&w, 4, key_version);
	opaque_writer_put(&w, registration_id, registration_id_len);
	return w.pos; /* AAD_MAX fits every where_ok() binding */
}

static bool where_ok(const uint8_t *account_id, size_t account_id_len,
                     const uint8_t *registration_id, size_t registration_id_len)
{
	return account_id != NULL && account_id_len >= 1 && account_id_len <= BKV_ACCOUNT_ID_MAX &&
	       (registration_id_len == 0 ||
	        (registration_id != NULL && registration_id_len == BKV_REGISTRATION_ID_BYTES));
}

bkv_token_err bkv_record_seal(bkv_token *token, const uint8_t *account_id, size_t account_id_len,
                              opaque_suite_id suite, uint64_t record_version,
                              const uint8_t *registration_id, size_t registration_id_len,
                              const uint8_t *plaintext, size_t plaintext_len, uint8_t *out,
                              size_t out_cap, size_t *out_len)
{
	if (token == NULL ||
	    !where_ok(account_id, account_id_len, registration_id, registration_id_len) ||
	    out == NULL || out_len == NULL || (plaintext == NULL && plaintext_len > 0) ||
	    out_cap < plaintext_len + BKV_RECORD_SEAL_OVERHEAD_MAX)
		return BKV_TOKEN_ERR_ARGUMENT;
	*out_len = 0;
	const uint32_t key_version = bkv_token_seal_version(token);
	if (key_version == 0)
		return BKV_TOKEN_ERR_KEY_MISSING;
	uint8_t aad[AAD_MAX];
	const size_t aad_len = build_aad(aad, account_id, account_id_len, suite, record_version,
	                                 key_version, registration_id, registration_id_len);
	opaque_writer header = opaque_writer_init(out, 5);
	opaque_writer_uint(&header, 1, BKV_RECORD_SEAL_FORMAT);
	opaque_writer_uint(&header, 4, key_version);
	size_t box_len;
	bkv_token_err err =
	    bkv_token_seal_box(token, BKV_TOKEN_KEY_SEAL, key_version, aad, aad_len, plaintext,
	                       plaintext_len, out + 5, out_cap - 5, &box_len);
	if (err == BKV_TOKEN_OK)
		*out_len = 5 + box_len;
	return err;
}

uint32_t bkv_record_seal_key_version(const uint8_t *sealed, size_t sealed_len)
{
	opaque_reader r = opaque_reader_init(sealed, sealed_len);
	uint64_t format, version;
	if (sealed == NULL || sealed_len < BKV_RECORD_SEAL_OVERHEAD_MIN ||
	    !opaque_reader_uint(&r, 1, &format) ||
	    (format != BKV_RECORD_SEAL_FORMAT && format != BKV_RECORD_SEAL_FORMAT_LEGACY) ||
	    !opaque_reader_uint(&r, 4, &version))
		return 0;
	return (uint32_t)version;
}

bkv_token_err bkv_record_open(bkv_token *token, const uint8_t *account_id, size_t account_id_len,
                              opaque_suite_id suite, uint64_t record_version,
                              const uint8_t *registration_id, size_t registration_id_len,
                              const uint8_t *sealed, size_t sealed_len, uint8_t *plaintext,
                              size_t plaintext_cap, size_t *plaintext_len)
{
	if (token == NULL ||
	    !where_ok(account_id, account_id_len, registration_id, registration_id_len) ||
	    sealed == NULL || plaintext_len == NULL || (plaintext == NULL && plaintext_cap > 0))
		return BKV_TOKEN_ERR_ARGUMENT;
	*plaintext_len = 0;
	const uint32_t key_version = bkv_record_seal_key_version(sealed, sealed_len);
	if (key_version == 0 || sealed_len > BKV_RECORD_SEAL_MAX)
		return BKV_TOKEN_ERR_AUTH;
	uint8_t aad[AAD_MAX];
	const size_t aad_len = build_aad(aad, account_id, account_id_len, suite, record_version,
	                                 key_version, registration_id, registration_id_len);
	/* Format 0x01 is a GCM box with a 12-byte IV, without the box's two-byte header. */
	uint8_t legacy[2 + BKV_RECORD_SEAL_MAX];
	const uint8_t *box = sealed + 5;
	size_t box_len = sealed_len - 5;
	if (sealed[0] == BKV_RECORD_SEAL_FORMAT_LEGACY) {
		legacy[0] = BKV_TOKEN_SCHEME_GCM;
		legacy[1] = BKV_TOKEN_IV_BYTES;
		memcpy(legacy + 2, box, box_len);
		box = legacy;
		box_len += 2;
	}
	bkv_token_err err =
	    bkv_token_open_box(token, BKV_TOKEN_KEY_SEAL, key_version, aad, aad_len, box, box_len,
	                       plaintext, plaintext_cap, plaintext_len);
	/* Seal keys are loaded but none has the header's version: the header was changed
	 * (or names a deleted key, which the caller made sure no record uses). */
	if (err == BKV_TOKEN_ERR_KEY_MISSING && bkv_token_seal_version(token) != 0)
		err = BKV_TOKEN_ERR_AUTH;
	return err;
}
