/*
 * account.c - GetStatus and Delete: what the vault holds for the caller, and removing it.
 */
#include "handlers.h"

bkvd_status bkvd_get_status(bkv_vault *v, bkv_account account, Bkv__V1__GetStatusResponse *resp)
{
	bkv__v1__get_status_response__init(resp);
	if (!bkv_account_valid(account))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "account id must be 1 to 256 bytes");
	bkv_record record;
	bkvd_status st = bkv_load_record(v, account, &record);
	if (st.code == BKV_CODE_NOT_FOUND) {
		resp->state = BKV__V1__RECORD_STATE__RECORD_STATE_ABSENT;
		return bkvd_status_ok(); /* registered = false */
	}
	if (st.code != BKV_CODE_OK)
		return st;
	const bool destroyed = record.state == BKV_RECORD_DESTROYED;
	resp->registered = !destroyed;
	resp->state = destroyed ? BKV__V1__RECORD_STATE__RECORD_STATE_DESTROYED
	                        : BKV__V1__RECORD_STATE__RECORD_STATE_REGISTERED;
	resp->suite = (Bkv__V1__Suite)record.suite;
	resp->attempts_used = record.attempts_used;
	resp->attempt_limit = record.attempt_limit;
	resp->record_version = record.record_version;
	resp->registered_at_unix = record.registered_at;
	resp->destroyed_at_unix = destroyed ? record.destroyed_at : 0;
	return bkvd_status_ok();
}

bkvd_status bkvd_delete(bkv_vault *v, bkv_account account, Bkv__V1__DeleteResponse *resp)
{
	bkv__v1__delete_response__init(resp);
	if (!bkv_account_valid(account))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "account id must be 1 to 256 bytes");
	bkv_storage_err err = bkv_storage_delete(v->storage, account.id, account.len);
	if (err == BKV_STORAGE_NOT_FOUND)
		return bkvd_status_ok(); /* deleted = false */
	if (err != BKV_STORAGE_OK)
		return bkvd_status_from_storage(err);
	bkv_audit(v, "deleted", account, NULL, 0);
	resp->deleted = true;
	return bkvd_status_ok();
}
