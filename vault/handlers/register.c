/*
 * register.c - RegisterStart and RegisterFinish. Registration needs no attempt
 * accounting: the caller is authenticated as the account by the integrator's JWT, and
 * RegisterFinish replaces the record with a new record_version and a fresh counter.
 *
 * The stored plaintext is registration_record || wrapped_key, sealed by the token and
 * bound to the account, suite and record_version (record_seal.h).
 */
#include <sodium.h>

#include "handlers.h"

bkv_status bkv_register_start(bkv_vault *v, bkv_account account,
                              const Bkv__V1__RegisterStartRequest *req,
                              Bkv__V1__RegisterStartResponse *resp, bkv_reply_buffers *buf)
{
	bkv__v1__register_start_response__init(resp);
	if (!bkv_account_valid(account))
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT,
		                        "account id must be 1 to 256 bytes");
	opaque_suite_id suite;
	if (!bkv_suite_enabled(v, req->suite, &suite))
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT, "suite is not enabled");
	const opaque_server_keys *keys = bkv_token_server_keys(v->token, suite);
	const opaque_config config = bkv_opaque_config(v, suite);
	const size_t len = opaque_suite_sizes(suite)->registration_response;
	opaque_err err = opaque_server_registration_response(
	    &config, keys, account.id, account.len, req->registration_request.data,
	    req->registration_request.len, buf->registration_response, len);
	if (err == OPAQUE_ERR_SERVER_KEYS)
		return bkv_status_from_server_keys(v);
	if (err != OPAQUE_OK)
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT, opaque_strerror(err));
	resp->registration_response.data = buf->registration_response;
	resp->registration_response.len = len;
	return bkv_status_ok();
}

bkv_status bkv_register_finish(bkv_vault *v, bkv_account account,
                               const Bkv__V1__RegisterFinishRequest *req,
                               Bkv__V1__RegisterFinishResponse *resp)
{
	bkv__v1__register_finish_response__init(resp);
	if (!bkv_account_valid(account))
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT,
		                        "account id must be 1 to 256 bytes");
	opaque_suite_id suite;
	if (!bkv_suite_enabled(v, req->suite, &suite))
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT, "suite is not enabled");
	const size_t record_len = opaque_suite_sizes(suite)->registration_record;
	opaque_err oerr = opaque_registration_record_validate(suite, req->registration_record.data,
	                                                      req->registration_record.len);
	if (oerr != OPAQUE_OK)
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT, opaque_strerror(oerr));
	if (req->wrapped_key.len == 0 || req->wrapped_key.len > BKV_WRAPPED_KEY_MAX)
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT,
		                        "wrapped_key must be 1 to 256 bytes");
	uint32_t limit =
	    req->attempt_limit ? req->attempt_limit : v->settings.default_attempt_limit;
	if (limit > v->settings.max_attempt_limit)
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT,
		                        "attempt_limit exceeds the vault's maximum");

	bkv_record record = {0};
	memcpy(record.account_id, account.id, account.len);
	record.account_id_len = account.len;
	record.suite = (uint32_t)suite;
	record.attempt_limit = limit;
	bkv_storage_err serr = bkv_storage_next_record_version(v->storage, &record.record_version);
	if (serr != BKV_STORAGE_OK)
		return bkv_status_from_storage(serr);

	uint8_t plaintext[OPAQUE_MAX_REGISTRATION_RECORD_BYTES + BKV_WRAPPED_KEY_MAX];
	const size_t plaintext_len = record_len + req->wrapped_key.len;
	memcpy(plaintext, req->registration_record.data, record_len);
	memcpy(plaintext + record_len, req->wrapped_key.data, req->wrapped_key.len);
	record.sealed_len = plaintext_len + BKV_RECORD_SEAL_OVERHEAD;
	record.seal_key_version = bkv_token_seal_version(v->token);
	bkv_token_err terr =
	    bkv_record_seal(v->token, account.id, account.len, suite, record.record_version,
	                    plaintext, plaintext_len, record.sealed, record.sealed_len);
	sodium_memzero(plaintext, sizeof(plaintext));
	if (terr != BKV_TOKEN_OK)
		return bkv_status_from_token(terr);
	serr = bkv_storage_put(v->storage, &record);
	if (serr != BKV_STORAGE_OK)
		return bkv_status_from_storage(serr);
	bkv_audit(v, "registered", account, "record_version", record.record_version);
	resp->record_version = record.record_version;
	resp->attempt_limit = limit;
	return bkv_status_ok();
}
