/*
 * token_rotation.c - a serving session picks up seal keys rotated in after it loaded its
 * keys, without a restart.
 *
 * `bkvd rotate-seal-key` creates bkv-seal-N+1 in the token while workers serve with
 * session copies of the keys they loaded at start. Each worker calls
 * bkv_token_refresh_seal_keys before it seals a record, so a new record is sealed under
 * the newest version in the token. That alone cannot close the race with
 * `bkvd delete-seal-key` (a worker may refresh just before a rotation and commit just
 * after the deletion): the seal floor in storage does (storage.h).
 */
#include "token_internal.h"

bkv_token_err bkv_token_refresh_seal_keys(bkv_token *t)
{
	if (t == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	if (t->nseal == 0)
		return BKV_TOKEN_ERR_KEY_MISSING; /* bkv_token_load_keys first */
	for (;;) {
		const uint32_t newest = t->seal[t->nseal - 1].version;
		if (newest == UINT32_MAX)
			return BKV_TOKEN_OK;
		bkv_token_err err = token_load_seal_version(t, newest + 1);
		if (err == BKV_TOKEN_ERR_KEY_MISSING)
			return BKV_TOKEN_OK;
		if (err != BKV_TOKEN_OK)
			return err;
	}
}
