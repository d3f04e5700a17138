/*
 * hash.c - SHA-256/SHA-512, HMAC, HKDF (RFC 5869) and expand_message_xmd (RFC 9380
 * section 5.3.1), all over libsodium and all taking scattered inputs so that secrets are
 * never concatenated into temporary buffers.
 */
#include <sodium.h>

#include "core.h"

size_t opaque_hash_len(opaque_hash_id hash)
{
	return hash == OPAQUE_HASH_SHA512 ? crypto_hash_sha512_BYTES : crypto_hash_sha256_BYTES;
}

/* SHA-256 block size 64, SHA-512 block size 128 (the r_in_bytes of RFC 9380). */
static size_t hash_block_len(opaque_hash_id hash)
{
	return hash == OPAQUE_HASH_SHA512 ? 128 : 64;
}

static void hash_init(opaque_hash_id hash, opaque_hash_state *st)
{
	if (hash == OPAQUE_HASH_SHA512)
		crypto_hash_sha512_init(&st->sha512);
	else
		crypto_hash_sha256_init(&st->sha256);
}

static void hash_update(opaque_hash_id hash, opaque_hash_state *st, const uint8_t *p, size_t n)
{
	if (hash == OPAQUE_HASH_SHA512)
		crypto_hash_sha512_update(&st->sha512, p, n);
	else
		crypto_hash_sha256_update(&st->sha256, p, n);
}

static void hash_final(opaque_hash_id hash, opaque_hash_state *st, uint8_t *out)
{
	if (hash == OPAQUE_HASH_SHA512)
		crypto_hash_sha512_final(&st->sha512, out);
	else
		crypto_hash_sha256_final(&st->sha256, out);
	sodium_memzero(st, sizeof(*st));
}

void opaque_hash_init(opaque_hash_id hash, opaque_hash_state *st)
{
	hash_init(hash, st);
}

void opaque_hash_update(opaque_hash_id hash, opaque_hash_state *st, const opaque_slice *parts,
                        size_t nparts)
{
	for (size_t i = 0; i < nparts; i++) {
		if (parts[i].len > 0)
			hash_update(hash, st, parts[i].data, parts[i].len);
	}
}

void opaque_hash_final(opaque_hash_id hash, opaque_hash_state *st, uint8_t *out)
{
	hash_final(hash, st, out);
}

void opaque_hash(opaque_hash_id hash, const opaque_slice *parts, size_t nparts, uint8_t *out)
{
	opaque_hash_state st;
	hash_init(hash, &st);
	opaque_hash_update(hash, &st, parts, nparts);
	hash_final(hash, &st, out);
}

void opaque_hmac_key_init(opaque_hmac_key *k, opaque_hash_id hash, const uint8_t *key,
                          size_t key_len)
{
	/* libsodium's key argument is nonnull even when empty (HKDF-Extract with salt ""). */
	static const uint8_t empty_key[1] = {0};
	if (key_len == 0)
		key = empty_key;
	k->hash = hash;
	if (hash == OPAQUE_HASH_SHA512)
		crypto_auth_hmacsha512_init(&k->st.sha512, key, key_len);
	else
		crypto_auth_hmacsha256_init(&k->st.sha256, key, key_len);
}

void opaque_hmac_keyed(const opaque_hmac_key *k, const opaque_slice *parts, size_t nparts,
                       uint8_t *out)
{
	opaque_hmac_key st = *k; /* the keyed state is reused: work on a copy */
	if (st.hash == OPAQUE_HASH_SHA512) {
		for (size_t i = 0; i < nparts; i++) {
			if (parts[i].len > 0)
				crypto_auth_hmacsha512_update(&st.st.sha512, parts[i].data,
				                              parts[i].len);
		}
		crypto_auth_hmacsha512_final(&st.st.sha512, out);
	} else {
		for (size_t i = 0; i < nparts; i++) {
			if (parts[i].len > 0)
				crypto_auth_hmacsha256_update(&st.st.sha256, parts[i].data,
				                              parts[i].len);
		}
		crypto_auth_hmacsha256_final(&st.st.sha256, out);
	}
	sodium_memzero(&st, sizeof(st));
}

void opaque_hmac_key_wipe(opaque_hmac_key *k)
{
	sodium_memzero(k, sizeof(*k));
}

void opaque_hmac(opaque_hash_id hash, const uint8_t *key, size_t key_len, const opaque_slice *parts,
                 size_t nparts, uint8_t *out)
{
	opaque_hmac_key k;
	opaque_hmac_key_init(&k, hash, key, key_len);
	opaque_hmac_keyed(&k, parts, nparts, out);
	opaque_hmac_key_wipe(&k);
}

void opaque_hkdf_extract(opaque_hash_id hash, const uint8_t *salt, size_t salt_len,
                         const opaque_slice *ikm, size_t nikm, uint8_t *prk)
{
	opaque_hmac(hash, salt, salt_len, ikm, nikm, prk);
}

#define HKDF_MAX_INFO_PARTS 8

opaque_err opaque_hkdf_expand(opaque_hash_id hash, const uint8_t *prk, size_t prk_len,
                              const opaque_slice *info, size_t ninfo, uint8_t *out, size_t out_len)
{
	opaque_hmac_key k;
	opaque_hmac_key_init(&k, hash, prk, prk_len);
	opaque_err err = opaque_hkdf_expand_keyed(&k, info, ninfo, out, out_len);
	opaque_hmac_key_wipe(&k);
	return err;
}

opaque_err opaque_hkdf_expand_keyed(const opaque_hmac_key *prk, const opaque_slice *info,
                                    size_t ninfo, uint8_t *out, size_t out_len)
{
	const size_t hlen = opaque_hash_len(prk->hash);
	if (out_len > 255 * hlen || ninfo > HKDF_MAX_INFO_PARTS)
		return OPAQUE_ERR_ARGUMENT;

	uint8_t block[OPAQUE_MAX_HASH_BYTES];
	opaque_slice parts[HKDF_MAX_INFO_PARTS + 2];
	uint8_t counter = 0;
	size_t done = 0;
	while (done < out_len) {
		size_t n = 0;
		if (counter > 0)
			parts[n++] = OPAQUE_SLICE(block, hlen); /* T(i-1) */
		for (size_t i = 0; i < ninfo; i++)
			parts[n++] = info[i];
		counter++;
		parts[n++] = OPAQUE_SLICE(&counter, 1);
		opaque_hmac_keyed(prk, parts, n, block);
		size_t take = out_len - done < hlen ? out_len - done : hlen;
		memcpy(out + done, block, take);
		done += take;
	}
	sodium_memzero(block, sizeof(block));
	return OPAQUE_OK;
}

#define XMD_MAX_MSG_PARTS 8

opaque_err opaque_expand_message_xmd_parts(opaque_hash_id hash, const opaque_slice *msg,
                                           size_t nmsg, const uint8_t *dst, size_t dst_len,
                                           uint8_t *out, size_t out_len)
{
	const size_t b_len = opaque_hash_len(hash);
	const size_t ell = (out_len + b_len - 1) / b_len;
	if (out_len == 0 || out_len > OPAQUE_XMD_MAX_OUT || ell > 255 || nmsg > XMD_MAX_MSG_PARTS)
		return OPAQUE_ERR_ARGUMENT;

	/* DST longer than 255 bytes is replaced by H("H2C-OVERSIZE-DST-" || DST). */
	uint8_t short_dst[OPAQUE_MAX_HASH_BYTES];
	if (dst_len > 255) {
		opaque_slice p[2] = {OPAQUE_SLICE_STR("H2C-OVERSIZE-DST-"),
		                     OPAQUE_SLICE(dst, dst_len)};
		opaque_hash(hash, p, 2, short_dst);
		dst = short_dst;
		dst_len = b_len;
	}
	const uint8_t dst_len_byte = (uint8_t)dst_len;
	static const uint8_t z_pad[128] = {0};
	const uint8_t l_i_b_str[2] = {(uint8_t)(out_len >> 8), (uint8_t)out_len};
	const uint8_t zero = 0;

	/* b_0 = H(Z_pad || msg || l_i_b_str || I2OSP(0, 1) || DST_prime) */
	opaque_slice parts[XMD_MAX_MSG_PARTS + 5];
	size_t n = 0;
	parts[n++] = OPAQUE_SLICE(z_pad, hash_block_len(hash));
	for (size_t i = 0; i < nmsg; i++)
		parts[n++] = msg[i];
	parts[n++] = OPAQUE_SLICE(l_i_b_str, 2);
	parts[n++] = OPAQUE_SLICE(&zero, 1);
	parts[n++] = OPAQUE_SLICE(dst, dst_len);
	parts[n++] = OPAQUE_SLICE(&dst_len_byte, 1);
	uint8_t b0[OPAQUE_MAX_HASH_BYTES];
	opaque_hash(hash, parts, n, b0);

	/* b_i = H(strxor(b_0, b_(i-1)) || I2OSP(i, 1) || DST_prime), b_1 = H(b_0 || 1 || DST') */
	uint8_t bi[OPAQUE_MAX_HASH_BYTES];
	uint8_t mixed[OPAQUE_MAX_HASH_BYTES];
	size_t done = 0;
	for (size_t i = 1; i <= ell; i++) {
		for (size_t j = 0; j < b_len; j++)
			mixed[j] = i == 1 ? b0[j] : (uint8_t)(b0[j] ^ bi[j]);
		const uint8_t index = (uint8_t)i;
		opaque_slice p[4] = {OPAQUE_SLICE(mixed, b_len), OPAQUE_SLICE(&index, 1),
		                     OPAQUE_SLICE(dst, dst_len), OPAQUE_SLICE(&dst_len_byte, 1)};
		opaque_hash(hash, p, 4, bi);
		size_t take = out_len - done < b_len ? out_len - done : b_len;
		memcpy(out + done, bi, take);
		done += take;
	}
	sodium_memzero(b0, sizeof(b0));
	sodium_memzero(bi, sizeof(bi));
	sodium_memzero(mixed, sizeof(mixed));
	sodium_memzero(short_dst, sizeof(short_dst));
	return OPAQUE_OK;
}

opaque_err opaque_expand_message_xmd(opaque_hash_id hash, const uint8_t *msg, size_t msg_len,
                                     const uint8_t *dst, size_t dst_len, uint8_t *out,
                                     size_t out_len)
{
	if ((msg == NULL && msg_len > 0) || dst == NULL || dst_len == 0 || out == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (hash != OPAQUE_HASH_SHA256 && hash != OPAQUE_HASH_SHA512)
		return OPAQUE_ERR_ARGUMENT;
	opaque_slice m = OPAQUE_SLICE(msg, msg_len);
	return opaque_expand_message_xmd_parts(hash, &m, 1, dst, dst_len, out, out_len);
}

void opaque_random_bytes(uint8_t *out, size_t len)
{
	randombytes_buf(out, len);
}
