/*
 * record_seal.c - sealing and opening account records (format in record_seal.h). The
 * header is parsed with explicit bounds; the AAD is rebuilt from the caller's view of
 * where the record belongs, never from the stored bytes alone.
 */
#include <string.h>

#include <sodium.h>

#include "record_seal.h"

#define AAD_LABEL "bkv-v1 record"
#define AAD_MAX (sizeof(AAD_LABEL) - 1 + 2 + BKV_ACCOUNT_ID_MAX + 1 + 8 + 4)

static void put_be(uint8_t *out, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *in, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | in[i];
	return v;
}

static size_t build_aad(uint8_t aad[AAD_MAX], const uint8_t *account_id, size_t account_id_len,
			opaque_suite_id suite, uint64_t record_version, uint32_t key_version)
{
	size_t n = 0;
	memcpy(aad, AAD_LABEL, sizeof(AAD_LABEL) - 1);
	n += sizeof(AAD_LABEL) - 1;
	put_be(aad + n, account_id_len, 2);
	n += 2;
	memcpy(aad + n, account_id, account_id_len);
	n += account_id_len;
	aad[n++] = (uint8_t)suite;
	put_be(aad + n, record_version, 8);
	n += 8;
	put_be(aad + n, key_version, 4);
	n += 4;
	return n;
}

static bool account_ok(const uint8_t *account_id, size_t account_id_len)
{
	return account_id != NULL && account_id_len >= 1 && account_id_len <= BKV_ACCOUNT_ID_MAX;
}

bkv_token_err bkv_record_seal(bkv_token *token, const uint8_t *account_id,
			      size_t account_id_len, opaque_suite_id suite,
			      uint64_t record_version, const uint8_t *plaintext,
			      size_t plaintext_len, uint8_t *out, size_t out_len)
{
	if (token == NULL || !account_ok(account_id, account_id_len) || out == NULL ||
	    (plaintext == NULL && plaintext_len > 0) ||
	    out_len != plaintext_len + BKV_RECORD_SEAL_OVERHEAD)
		return BKV_TOKEN_ERR_ARGUMENT;
	const uint32_t key_version = bkv_token_seal_version(token);
	if (key_version == 0)
		return BKV_TOKEN_ERR_KEY_MISSING;
	uint8_t aad[AAD_MAX];
	const size_t aad_len =
		build_aad(aad, account_id, account_id_len, suite, record_version, key_version);
	out[0] = BKV_RECORD_SEAL_FORMAT;
	put_be(out + 1, key_version, 4);
	uint8_t *iv = out + 5;
	randombytes_buf(iv, BKV_TOKEN_IV_BYTES);
	return bkv_token_encrypt(token, BKV_TOKEN_KEY_SEAL, key_version, iv, aad, aad_len,
				 plaintext, plaintext_len, out + BKV_RECORD_SEAL_HEADER_BYTES,
				 plaintext_len + BKV_TOKEN_TAG_BYTES);
}

uint32_t bkv_record_seal_key_version(const uint8_t *sealed, size_t sealed_len)
{
	if (sealed == NULL || sealed_len < BKV_RECORD_SEAL_OVERHEAD ||
	    sealed[0] != BKV_RECORD_SEAL_FORMAT)
		return 0;
	return (uint32_t)get_be(sealed + 1, 4);
}

bkv_token_err bkv_record_open(bkv_token *token, const uint8_t *account_id,
			      size_t account_id_len, opaque_suite_id suite,
			      uint64_t record_version, const uint8_t *sealed, size_t sealed_len,
			      uint8_t *plaintext, size_t plaintext_len)
{
	if (token == NULL || !account_ok(account_id, account_id_len) || sealed == NULL ||
	    (plaintext == NULL && plaintext_len > 0))
		return BKV_TOKEN_ERR_ARGUMENT;
	const uint32_t key_version = bkv_record_seal_key_version(sealed, sealed_len);
	if (key_version == 0 || plaintext_len != sealed_len - BKV_RECORD_SEAL_OVERHEAD)
		return BKV_TOKEN_ERR_AUTH;
	uint8_t aad[AAD_MAX];
	const size_t aad_len =
		build_aad(aad, account_id, account_id_len, suite, record_version, key_version);
	return bkv_token_decrypt(token, BKV_TOKEN_KEY_SEAL, key_version, sealed + 5, aad,
				 aad_len, sealed + BKV_RECORD_SEAL_HEADER_BYTES,
				 sealed_len - BKV_RECORD_SEAL_HEADER_BYTES, plaintext,
				 plaintext_len);
}
