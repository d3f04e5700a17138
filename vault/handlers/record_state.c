/*
 * record_state.c - the token vouches for every record's mutable state.
 *
 * Each state a handler commits carries HMAC-SHA256 under the token's bkv-state-mac-1 key
 * over:
 *   "bkv-v1 record-state" || I2OSP(len(account_id), 2) || account_id || suite (4) ||
 *   state (4) || record_version (8) || len(registration_id) (1) || registration_id ||
 *   attempts_used (4) || attempt_limit (4) || guess_seq (8) || last_finished_seq (8) ||
 *   registered_at (8) || destroyed_at (8)
 * and every read verifies it (in constant time) before anything of the row is used. A row
 * changed outside bkvd (a counter lowered, a tombstone turned back into a record, fields
 * moved between rows) is refused with DATA_LOSS and an audit event. The sealed blob is not
 * covered: it carries its own AEAD tag, bound to account, suite, record version and
 * registration id (record_seal.h). What the MAC cannot stop is stated in docs/SECURITY.md.
 */
#include <sodium.h>

#include "handlers.h"
#include "opaque/wire.h"

#define STATE_LABEL "bkv-v1 record-state"
#define STATE_MAX                                                                                  \
	(sizeof(STATE_LABEL) - 1 + 2 + BKV_ACCOUNT_ID_MAX + 4 + 4 + 8 + 1 +                        \
	 BKV_STORAGE_REG_ID_MAX + 4 + 4 + 8 + 8 + 8 + 8)

static bkv_token_err state_mac(bkv_token *token, const bkv_record *r,
                               uint8_t mac[BKV_TOKEN_STATE_MAC_BYTES])
{
	uint8_t data[STATE_MAX];
	opaque_writer w = opaque_writer_init(data, sizeof(data));
	opaque_writer_put(&w, (const uint8_t *)STATE_LABEL, sizeof(STATE_LABEL) - 1);
	opaque_writer_uint(&w, 2, r->account_id_len);
	opaque_writer_put(&w, r->account_id, r->account_id_len);
	opaque_writer_uint(&w, 4, r->suite);
	opaque_writer_uint(&w, 4, r->state);
	opaque_writer_uint(&w, 8, r->record_version);
	opaque_writer_uint(&w, 1, r->registration_id_len);
	opaque_writer_put(&w, r->registration_id, r->registration_id_len);
	opaque_writer_uint(&w, 4, r->attempts_used);
	opaque_writer_uint(&w, 4, r->attempt_limit);
	opaque_writer_uint(&w, 8, r->guess_seq);
	opaque_writer_uint(&w, 8, r->last_finished_seq);
	opaque_writer_uint(&w, 8, (uint64_t)r->registered_at);
	opaque_writer_uint(&w, 8, (uint64_t)r->destroyed_at);
	if (w.overflow || r->account_id_len > BKV_ACCOUNT_ID_MAX ||
	    r->registration_id_len > BKV_STORAGE_REG_ID_MAX)
		return BKV_TOKEN_ERR_ARGUMENT;
	return bkv_token_state_mac(token, data, w.pos, mac);
}

bkv_token_err bkv_record_mac(bkv_token *token, bkv_record *r)
{
	bkv_token_err err = state_mac(token, r, r->mac);
	r->mac_len = err == BKV_TOKEN_OK ? BKV_TOKEN_STATE_MAC_BYTES : 0;
	return err;
}

bool bkv_record_in_range(const bkv_record *r)
{
	const opaque_sizes *sizes = opaque_suite_sizes((opaque_suite_id)r->suite);
	if (sizes == NULL || r->record_version == 0 || r->attempt_limit == 0 ||
	    r->attempts_used > r->attempt_limit || r->last_finished_seq > r->guess_seq ||
	    (r->registration_id_len != 0 && r->registration_id_len != BKV_REGISTRATION_ID_BYTES))
		return false;
	if (r->state == BKV_RECORD_DESTROYED)
		return r->sealed_len == 0;
	const size_t min = BKV_RECORD_SEAL_OVERHEAD_MIN + sizes->registration_record + 1;
	const size_t max =
	    BKV_RECORD_SEAL_OVERHEAD_MAX + sizes->registration_record + BKV_WRAPPED_KEY_MAX;
	return r->state == BKV_RECORD_LIVE && r->sealed_len >= min && r->sealed_len <= max;
}

bkvd_status bkvd_status_data_loss(bkv_vault *v, bkv_account account, const char *why)
{
	bkv_audit_reason(v, "record_refused", account, why);
	return bkvd_status_error(BKV_CODE_DATA_LOSS,
	                         "the vault's stored record for this account failed its integrity "
	                         "check and is not used");
}

bkvd_status bkv_load_record(bkv_vault *v, bkv_account account, bkv_record *r)
{
	bkv_storage_err serr = bkv_storage_get(v->storage, account.id, account.len, r);
	if (serr == BKV_STORAGE_CORRUPT)
		return bkvd_status_data_loss(v, account, "a stored value is out of range");
	if (serr != BKV_STORAGE_OK)
		return bkvd_status_from_storage(serr);
	if (r->account_id_len != account.len || memcmp(r->account_id, account.id, account.len) != 0)
		return bkvd_status_data_loss(v, account, "a row was returned for another account");
	if (r->mac_len == 0)
		return bkvd_status_data_loss(
		    v, account,
		    "a record has no state MAC: run `bkvd rewrap` once after "
		    "upgrading");
	uint8_t expected[BKV_TOKEN_STATE_MAC_BYTES];
	bkv_token_err terr = state_mac(v->token, r, expected);
	if (terr != BKV_TOKEN_OK)
		return bkvd_status_from_token(v, terr);
	const bool ok = r->mac_len == sizeof(expected) &&
	                sodium_memcmp(expected, r->mac, sizeof(expected)) == 0;
	if (!ok)
		return bkvd_status_data_loss(v, account,
		                             "a record's state MAC does not match: the row was "
		                             "changed outside bkvd");
	if (!bkv_record_in_range(r))
		return bkvd_status_data_loss(v, account, "a MAC-verified record is out of range");
	return bkvd_status_ok();
}

void bkvd_write_expected(bkv_vault *v)
{
	bkv_storage_expect_write(v->storage);
}

void bkvd_write_settled(bkv_vault *v)
{
	bkv_storage_expect_end(v->storage);
}

bkvd_status bkv_update_record(bkv_vault *v, bkv_record *next, const bkv_record *current,
                              bool *stale)
{
	*stale = false;
	bkv_token_err terr = bkv_record_mac(v->token, next);
	if (terr != BKV_TOKEN_OK)
		return bkvd_status_from_token(v, terr);
	bkv_storage_err serr =
	    current != NULL ? bkv_storage_update(v->storage, next, current->mac, current->mac_len)
	                    : bkv_storage_insert(v->storage, next);
	/* SEAL_FLOOR: next carries a blob under a retired seal-key version, read or sealed
	 * before the rotation; the caller's next round reads the row (re-sealed by rewrap) or
	 * seals under the refreshed keys. */
	if (serr == BKV_STORAGE_STALE || serr == BKV_STORAGE_NOT_FOUND ||
	    serr == BKV_STORAGE_EXISTS || serr == BKV_STORAGE_SEAL_FLOOR) {
		*stale = true;
		return bkvd_status_error(BKV_CODE_ABORTED,
		                         "the record changed meanwhile; try again");
	}
	return bkvd_status_from_storage(serr);
}

void bkv_credential_identifier(bkv_account account, const uint8_t *registration_id,
                               size_t registration_id_len, uint8_t out[BKV_CREDENTIAL_ID_MAX],
                               size_t *out_len)
{
	memcpy(out, account.id, account.len);
	if (registration_id_len > 0)
		memcpy(out + account.len, registration_id, registration_id_len);
	*out_len = account.len + registration_id_len;
}
