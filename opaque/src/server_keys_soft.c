/*
 * server_keys_soft.c - the pure-software implementation of opaque_server_keys: oprf_seed
 * and the AKE private key held in process memory. For clients, tests and development;
 * the vault uses a PKCS#11 implementation of the same two operations.
 */
#include <sodium.h>

#include "core.h"

static opaque_err soft_oprf_seed_expand(void *ctx, const uint8_t *info, size_t info_len,
                                        uint8_t *out, size_t out_len)
{
	const opaque_soft_server_keys *soft = ctx;
	const opaque_suite *suite = opaque_suite_get(soft->keys.suite);
	if (suite == NULL)
		return OPAQUE_ERR_SERVER_KEYS;
	opaque_slice parts = OPAQUE_SLICE(info, info_len);
	if (opaque_hkdf_expand(suite->hash, soft->oprf_seed, suite->sizes.Nh, &parts, 1, out,
	                       out_len) != OPAQUE_OK)
		return OPAQUE_ERR_SERVER_KEYS;
	return OPAQUE_OK;
}

opaque_err opaque_ake_dh(opaque_suite_id suite_id, const uint8_t *private_key,
                         size_t private_key_len, const uint8_t *peer, size_t peer_len, uint8_t *out,
                         size_t out_len)
{
	const opaque_suite *suite = opaque_suite_get(suite_id);
	if (suite == NULL || private_key == NULL || peer == NULL || out == NULL ||
	    private_key_len != suite->sizes.Nsk || peer_len != suite->sizes.Npk ||
	    out_len != suite->sizes.Npk)
		return OPAQUE_ERR_SERVER_KEYS;
	if (suite->group->scalar_mult(private_key, peer, out) != OPAQUE_OK)
		return OPAQUE_ERR_SERVER_KEYS;
	return OPAQUE_OK;
}

opaque_err opaque_ake_public_key(opaque_suite_id suite_id, const uint8_t *private_key,
                                 size_t private_key_len, uint8_t *public_key, size_t public_key_len)
{
	const opaque_suite *suite = opaque_suite_get(suite_id);
	if (suite == NULL || private_key == NULL || public_key == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (private_key_len != suite->sizes.Nsk || public_key_len != suite->sizes.Npk)
		return OPAQUE_ERR_LENGTH;
	opaque_err err = suite->group->scalar_validate(private_key);
	if (err == OPAQUE_OK)
		err = suite->group->scalar_mult_base(private_key, public_key);
	return err;
}

static opaque_err soft_ake_dh(void *ctx, const uint8_t *peer, size_t peer_len, uint8_t *out,
                              size_t out_len)
{
	const opaque_soft_server_keys *soft = ctx;
	const opaque_suite *suite = opaque_suite_get(soft->keys.suite);
	if (suite == NULL)
		return OPAQUE_ERR_SERVER_KEYS;
	return opaque_ake_dh(soft->keys.suite, soft->server_private_key, suite->sizes.Nsk, peer,
	                     peer_len, out, out_len);
}

opaque_err opaque_soft_server_keys_init(opaque_soft_server_keys *soft, opaque_suite_id suite_id,
                                        const uint8_t *oprf_seed, size_t oprf_seed_len,
                                        const uint8_t *server_private_key,
                                        size_t server_private_key_len)
{
	const opaque_suite *suite = opaque_suite_get(suite_id);
	if (soft == NULL || suite == NULL || oprf_seed == NULL || server_private_key == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (oprf_seed_len != suite->sizes.Nh || server_private_key_len != suite->sizes.Nsk)
		return OPAQUE_ERR_LENGTH;
	sodium_memzero(soft, sizeof(*soft));
	opaque_err err = opaque_ake_public_key(suite_id, server_private_key, server_private_key_len,
	                                       soft->keys.server_public_key, suite->sizes.Npk);
	if (err != OPAQUE_OK) {
		sodium_memzero(soft, sizeof(*soft));
		return err;
	}
	memcpy(soft->oprf_seed, oprf_seed, oprf_seed_len);
	memcpy(soft->server_private_key, server_private_key, server_private_key_len);
	soft->keys.suite = suite_id;
	soft->keys.oprf_seed_expand = soft_oprf_seed_expand;
	soft->keys.ake_dh = soft_ake_dh;
	soft->keys.ctx = soft;
	return OPAQUE_OK;
}

opaque_err opaque_soft_server_keys_generate(opaque_soft_server_keys *soft, opaque_suite_id suite_id)
{
	const opaque_suite *suite = opaque_suite_get(suite_id);
	if (soft == NULL || suite == NULL)
		return OPAQUE_ERR_ARGUMENT;
	uint8_t oprf_seed[OPAQUE_MAX_HASH_BYTES];
	uint8_t private_key[OPAQUE_MAX_SCALAR_BYTES];
	opaque_random_bytes(oprf_seed, suite->sizes.Nh);
	opaque_err err = suite->group->random_scalar(private_key);
	if (err == OPAQUE_OK)
		err = opaque_soft_server_keys_init(soft, suite_id, oprf_seed, suite->sizes.Nh,
		                                   private_key, suite->sizes.Nsk);
	sodium_memzero(oprf_seed, sizeof(oprf_seed));
	sodium_memzero(private_key, sizeof(private_key));
	return err;
}

void opaque_soft_server_keys_wipe(opaque_soft_server_keys *soft)
{
	if (soft != NULL)
		sodium_memzero(soft, sizeof(*soft));
}
