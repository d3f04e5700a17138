/*
 * register.c - RegisterStart and RegisterFinish.
 *
 * Every registration gets a fresh OPRF key: RegisterStart picks a random registration id,
 * evaluates under credential_identifier = account id || registration id, and hands the id
 * back inside a token-sealed registration ticket. RegisterFinish stores the id with the
 * record, and recovery evaluates under it. So no RegisterStart answer ever evaluates under
 * the key of a live record: an account-token holder cannot use registration to test
 * password guesses against the envelope one counted RecoverStart revealed.
 *
 * RegisterFinish is compare-and-set on the account's record: replaces_record_version 0
 * creates only, N replaces only version N (record versions count per account from 1).
 * The stored plaintext is registration_record || wrapped_key, sealed by the token and
 * bound to the account, suite, record_version and registration id (record_seal.h).
 *
 * Seal-key rotation while serving: a worker looks for a newer seal key in the token at
 * most every SEAL_KEYS_REFRESH_MS (refresh_seal_keys), so it may seal under a key a
 * moment after it was retired. The seal floor is what guarantees no record is committed
 * under a retired key: such a commit is refused and counts as stale, and the next round
 * looks for the new key at once, seals again and commits. The client never sees the
 * rotation.
 */
#include <time.h>

#include <sodium.h>

#include "handlers.h"
#include "ticket.h"

#define COMMIT_RETRIES       16
#define SEAL_KEYS_REFRESH_MS 250

/* Loads a seal key rotated into the token since the last look, if SEAL_KEYS_REFRESH_MS
 * have passed or force. The look is a token object search: on SoftHSM2 it costs about 15
 * state MACs, a quarter of a RegisterFinish, too much for every seal. */
static bkv_token_err refresh_seal_keys(bkv_vault *v, bool force)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	const int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (!force && v->seal_keys_checked_ms != 0 &&
	    now_ms - v->seal_keys_checked_ms < SEAL_KEYS_REFRESH_MS)
		return BKV_TOKEN_OK;
	bkv_token_err err = bkv_token_refresh_seal_keys(v->token);
	if (err == BKV_TOKEN_OK)
		v->seal_keys_checked_ms = now_ms;
	return err;
}

bkvd_status bkvd_register_start(bkv_vault *v, bkv_account account,
                                const Bkv__V1__RegisterStartRequest *req,
                                Bkv__V1__RegisterStartResponse *resp, bkv_reply_buffers *buf)
{
	bkv__v1__register_start_response__init(resp);
	if (!bkv_account_valid(account))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "account id must be 1 to 256 bytes");
	opaque_suite_id suite;
	if (!bkv_suite_enabled(v, req->suite, &suite))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT, "suite is not enabled");
	bkv_registration_ticket ticket = {
	    .suite = suite,
	    .expires_at = (int64_t)time(NULL) + BKV_REGISTRATION_TICKET_LIFETIME,
	};
	randombytes_buf(ticket.registration_id, sizeof(ticket.registration_id));
	uint8_t credential_id[BKV_CREDENTIAL_ID_MAX];
	size_t credential_id_len;
	bkv_credential_identifier(account, ticket.registration_id, sizeof(ticket.registration_id),
	                          credential_id, &credential_id_len);
	const opaque_server_keys *keys = bkv_token_server_keys(v->token, suite);
	const opaque_config config = bkv_opaque_config(v, suite);
	const size_t len = opaque_suite_sizes(suite)->registration_response;
	size_t ticket_len = 0;
	bkvd_status st = bkvd_status_ok();
	opaque_err err = opaque_server_registration_response(
	    &config, keys, credential_id, credential_id_len, req->registration_request.data,
	    req->registration_request.len, buf->registration_response, len);
	if (err == OPAQUE_ERR_SERVER_KEYS)
		st = bkvd_status_from_server_keys(v);
	else if (err != OPAQUE_OK)
		st = bkvd_status_error(BKV_CODE_INVALID_ARGUMENT, opaque_strerror(err));
	else
		st = bkvd_status_from_token(
		    v, bkv_registration_ticket_seal(v->token, account, &ticket,
		                                    buf->registration_ticket,
		                                    sizeof(buf->registration_ticket), &ticket_len));
	sodium_memzero(&ticket, sizeof(ticket));
	sodium_memzero(credential_id, sizeof(credential_id));
	if (st.code != BKV_CODE_OK) {
		sodium_memzero(buf->registration_response, sizeof(buf->registration_response));
		return st;
	}
	resp->registration_response.data = buf->registration_response;
	resp->registration_response.len = len;
	resp->registration_ticket.data = buf->registration_ticket;
	resp->registration_ticket.len = ticket_len;
	return st;
}

/* Checks the request and opens its registration ticket. */
static bkvd_status check_finish(bkv_vault *v, bkv_account account,
                                const Bkv__V1__RegisterFinishRequest *req, opaque_suite_id *suite,
                                uint32_t *limit, bkv_registration_ticket *ticket)
{
	if (!bkv_account_valid(account))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "account id must be 1 to 256 bytes");
	if (!bkv_suite_enabled(v, req->suite, suite))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT, "suite is not enabled");
	opaque_err oerr = opaque_registration_record_validate(*suite, req->registration_record.data,
	                                                      req->registration_record.len);
	if (oerr != OPAQUE_OK)
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT, opaque_strerror(oerr));
	if (req->wrapped_key.len == 0 || req->wrapped_key.len > BKV_WRAPPED_KEY_MAX)
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "wrapped_key must be 1 to 256 bytes");
	*limit = req->attempt_limit ? req->attempt_limit : v->settings.default_attempt_limit;
	if (*limit > v->settings.max_attempt_limit)
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "attempt_limit exceeds the vault's maximum");
	if (req->registration_ticket.len == 0)
		return bkvd_status_error(
		    BKV_CODE_INVALID_ARGUMENT,
		    "registration_ticket is required: pass the one RegisterStart "
		    "returned");
	bkv_token_err terr = bkv_registration_ticket_open(
	    v->token, account, req->registration_ticket.data, req->registration_ticket.len, ticket);
	if (terr == BKV_TOKEN_ERR_AUTH)
		return bkvd_status_error(
		    BKV_CODE_INVALID_ARGUMENT,
		    "invalid registration ticket (forged, damaged or for another "
		    "account)");
	if (terr != BKV_TOKEN_OK)
		return bkvd_status_from_token(v, terr);
	if (ticket->suite != *suite)
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "the registration ticket is for another suite");
	if ((int64_t)time(NULL) > ticket->expires_at)
		return bkvd_status_error(
		    BKV_CODE_FAILED_PRECONDITION,
		    "the registration ticket has expired; start the registration "
		    "again");
	return bkvd_status_ok();
}

/* Decides the new record's place: created (replaces 0) or over *current (replaces N).
 * *have_current says which; ABORTED / ALREADY_EXISTS when the request's expectation does
 * not hold. */
static bkvd_status expect_current(bkv_vault *v, bkv_account account, uint64_t replaces,
                                  const bkv_registration_ticket *ticket, bkv_record *current,
                                  bool *have_current)
{
	bkvd_status st = bkv_load_record(v, account, current);
	*have_current = st.code == BKV_CODE_OK;
	/* One ticket, one registration: no two records share an OPRF key. */
	if (*have_current && current->registration_id_len == BKV_REGISTRATION_ID_BYTES &&
	    sodium_memcmp(current->registration_id, ticket->registration_id,
	                  BKV_REGISTRATION_ID_BYTES) == 0)
		return bkvd_status_error(BKV_CODE_FAILED_PRECONDITION,
		                         "this registration ticket was already used; start the "
		                         "registration again");
	if (st.code == BKV_CODE_NOT_FOUND) {
		if (replaces == 0)
			return bkvd_status_ok();
		return bkvd_status_error(BKV_CODE_ABORTED,
		                         "replaces_record_version names a record that no longer "
		                         "exists; check GetStatus");
	}
	if (st.code != BKV_CODE_OK)
		return st;
	if (replaces == 0)
		return bkvd_status_error(
		    BKV_CODE_ALREADY_EXISTS,
		    current->state == BKV_RECORD_DESTROYED
		        ? "this account's backup key was destroyed; to register a new one, replace "
		          "the destroyed record's version"
		        : "a backup key is already registered for this account; replacing it needs "
		          "its record_version");
	if (current->record_version != replaces)
		return bkvd_status_error(
		    BKV_CODE_ABORTED, "replaces_record_version is not the account's current record "
		                      "version; check GetStatus");
	return bkvd_status_ok();
}

bkvd_status bkvd_register_finish(bkv_vault *v, bkv_account account,
                                 const Bkv__V1__RegisterFinishRequest *req,
                                 Bkv__V1__RegisterFinishResponse *resp)
{
	bkv__v1__register_finish_response__init(resp);
	opaque_suite_id suite = 0;
	uint32_t limit = 0;
	bkv_registration_ticket ticket;
	memset(&ticket, 0, sizeof(ticket));
	bkvd_status st = check_finish(v, account, req, &suite, &limit, &ticket);
	if (st.code != BKV_CODE_OK) {
		sodium_memzero(&ticket, sizeof(ticket));
		return st;
	}
	const size_t record_len = opaque_suite_sizes(suite)->registration_record;
	uint8_t plaintext[OPAQUE_MAX_REGISTRATION_RECORD_BYTES + BKV_WRAPPED_KEY_MAX];
	const size_t plaintext_len = record_len + req->wrapped_key.len;
	memcpy(plaintext, req->registration_record.data, record_len);
	memcpy(plaintext + record_len, req->wrapped_key.data, req->wrapped_key.len);

	bkv_record record, current;
	for (int round = 0; round < COMMIT_RETRIES; round++) {
		bool have_current = false, stale = false;
		st = expect_current(v, account, req->replaces_record_version, &ticket, &current,
		                    &have_current);
		if (st.code != BKV_CODE_OK)
			break;
		memset(&record, 0, sizeof(record));
		memcpy(record.account_id, account.id, account.len);
		record.account_id_len = account.len;
		record.suite = (uint32_t)suite;
		record.state = BKV_RECORD_LIVE;
		record.record_version = have_current ? current.record_version + 1 : 1;
		memcpy(record.registration_id, ticket.registration_id, BKV_REGISTRATION_ID_BYTES);
		record.registration_id_len = BKV_REGISTRATION_ID_BYTES;
		record.attempt_limit = limit;
		/* guess_seq keeps counting, and no earlier guess can be finished against it. */
		record.guess_seq = have_current ? current.guess_seq : 0;
		record.last_finished_seq = record.guess_seq;
		record.registered_at = (int64_t)time(NULL);
		/* After a refused commit (stale, or under a retired key): look at once. */
		bkv_token_err terr = refresh_seal_keys(v, round > 0);
		if (terr == BKV_TOKEN_OK)
			terr = bkv_record_seal(v->token, account.id, account.len, suite,
			                       record.record_version, record.registration_id,
			                       record.registration_id_len, plaintext, plaintext_len,
			                       record.sealed, sizeof(record.sealed),
			                       &record.sealed_len);
		record.seal_key_version =
		    bkv_record_seal_key_version(record.sealed, record.sealed_len);
		if (terr != BKV_TOKEN_OK) {
			st = bkvd_status_from_token(v, terr);
			break;
		}
		st = bkv_update_record(v, &record, have_current ? &current : NULL, &stale);
		/* Moved or created meanwhile: check the expectation again. Or sealed under a
		 * retired key version (the seal floor): seal again under the new one. */
		if (stale) {
			st = bkvd_status_busy();
			continue;
		}
		break;
	}
	sodium_memzero(plaintext, sizeof(plaintext));
	sodium_memzero(&ticket, sizeof(ticket));
	if (st.code != BKV_CODE_OK)
		return st;
	bkv_audit(v, "registered", account, "record_version", record.record_version);
	resp->record_version = record.record_version;
	resp->attempt_limit = limit;
	return st;
}
