/*
 * keywrap.c - wrapping the backup key with the OPAQUE export key, and opening the
 * vault's release of it (formulas in keywrap.h). AES-256-GCM through OpenSSL EVP.
 */
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "keywrap.h"

#define NONCE_BYTES  12
#define TAG_BYTES    16
#define WRAP_INFO    "bkv-v1 wrap"
#define RELEASE_INFO "bkv-v1 release"

/* out = nonce || ciphertext || tag, or (decrypt) plaintext from such an input. */
static bool gcm(bool encrypt, const uint8_t key[32], const char *aad, const uint8_t *in,
                size_t in_len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0;
	bool ok = ctx != NULL;
	const size_t aad_len = strlen(aad);
	if (encrypt) {
		randombytes_buf(out, NONCE_BYTES);
		ok = ok && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out) == 1 &&
		     EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)aad_len) == 1 &&
		     EVP_EncryptUpdate(ctx, out + NONCE_BYTES, &n, in, (int)in_len) == 1 &&
		     EVP_EncryptFinal_ex(ctx, out + NONCE_BYTES + n, &n) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES,
		                         out + NONCE_BYTES + in_len) == 1;
	} else {
		const size_t ct_len = in_len - NONCE_BYTES - TAG_BYTES;
		ok = ok && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, in) == 1 &&
		     EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)aad_len) == 1 &&
		     EVP_DecryptUpdate(ctx, out, &n, in + NONCE_BYTES, (int)ct_len) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES,
		                         (void *)(in + NONCE_BYTES + ct_len)) == 1 &&
		     EVP_DecryptFinal_ex(ctx, out + n, &n) == 1;
		if (!ok)
			sodium_memzero(out, ct_len);
	}
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

static bool derive(opaque_suite_id suite, const uint8_t *prk, const char *info, uint8_t out[32])
{
	return opaque_kdf_expand(suite, prk, opaque_suite_sizes(suite)->Nh, (const uint8_t *)info,
	                         strlen(info), out, 32) == OPAQUE_OK;
}

bkv_status bkvi_keywrap_wrap(opaque_suite_id suite, const uint8_t *export_key, const bkv_key *key,
                             uint8_t wrapped[BKV_WRAPPED_KEY_BYTES])
{
	uint8_t wrap_key[32];
	bool ok = derive(suite, export_key, WRAP_INFO, wrap_key) &&
	          gcm(true, wrap_key, WRAP_INFO, key->bytes, BKV_KEY_BYTES, wrapped);
	sodium_memzero(wrap_key, sizeof(wrap_key));
	return ok ? BKV_OK : BKV_ERR_INTERNAL;
}

bkv_status bkvi_keywrap_unwrap(opaque_suite_id suite, const uint8_t *export_key,
                               const uint8_t *wrapped, size_t wrapped_len, bkv_key *key)
{
	if (wrapped_len != BKV_WRAPPED_KEY_BYTES)
		return BKV_ERR_PROTOCOL;
	uint8_t wrap_key[32];
	bool ok = derive(suite, export_key, WRAP_INFO, wrap_key) &&
	          gcm(false, wrap_key, WRAP_INFO, wrapped, wrapped_len, key->bytes);
	sodium_memzero(wrap_key, sizeof(wrap_key));
	return ok ? BKV_OK : BKV_ERR_PROTOCOL;
}

bkv_status bkvi_keywrap_open_release(opaque_suite_id suite, const uint8_t *session_key,
                                     const uint8_t *sealed, size_t sealed_len, uint8_t *wrapped,
                                     size_t wrapped_cap, size_t *wrapped_len)
{
	if (sealed_len <= NONCE_BYTES + TAG_BYTES ||
	    sealed_len - NONCE_BYTES - TAG_BYTES > wrapped_cap)
		return BKV_ERR_PROTOCOL;
	uint8_t release_key[32];
	bool ok = derive(suite, session_key, RELEASE_INFO, release_key) &&
	          gcm(false, release_key, RELEASE_INFO, sealed, sealed_len, wrapped);
	sodium_memzero(release_key, sizeof(release_key));
	*wrapped_len = sealed_len - NONCE_BYTES - TAG_BYTES;
	return ok ? BKV_OK : BKV_ERR_PROTOCOL;
}
