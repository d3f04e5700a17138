/*
 * recover.c - RecoverStart and RecoverFinish: the attempt limit that holds.
 *
 * RecoverStart computes KE2 (with the token), seals the ticket, and only then commits
 * attempts_used + 1 and guess_seq + 1 with a conditional update on exactly the row it read.
 * KE2 leaves this file only after that commit; if the commit fails nothing is sent, and if
 * the token or the database fails first no attempt is consumed. A concurrent request that
 * moved the row first makes the commit fail as stale, and the whole step is redone on the
 * new row, so K concurrent guessers get at most attempt_limit KE2s between two successes.
 *
 * RecoverFinish checks KE3 in constant time and finishes the guess exactly once
 * (guess_seq > last_finished_seq, in one transaction): success resets the counter and
 * releases the wrapped key sealed under a key derived from session_key; a failure that
 * used the last attempt destroys the record in the same transaction.
 */
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "handlers.h"
#include "ticket.h"

#define COMMIT_RETRIES      16
#define RELEASE_INFO        "bkv-v1 release"
#define RELEASE_NONCE_BYTES 12
#define RELEASE_TAG_BYTES   16

static bkv_status destroyed_status(uint32_t attempt_limit)
{
	bkv_status st = bkv_status_error(BKV_CODE_FAILED_PRECONDITION,
	                                 "no attempts left: the backup key has been destroyed and "
	                                 "can no longer be recovered");
	st.has_attempt_info = true;
	st.attempts_remaining = 0;
	st.attempt_limit = attempt_limit;
	return st;
}

/* The limit was reached and no success followed: the key is gone for good. Only the
 * record that was read is destroyed; *replaced is set if it was replaced meanwhile (the
 * caller re-reads and serves the new record). */
static bkv_status destroy_record(bkv_vault *v, bkv_account account, const bkv_record *record,
                                 bool *replaced)
{
	const uint32_t attempt_limit = record->attempt_limit;
	bkv_storage_err err = bkv_storage_destroy_exhausted(v->storage, account.id, account.len,
	                                                    record->record_version);
	*replaced = err == BKV_STORAGE_STALE;
	if (err != BKV_STORAGE_OK && err != BKV_STORAGE_NOT_FOUND)
		return bkv_status_from_storage(err);
	if (err == BKV_STORAGE_OK)
		bkv_audit(v, "destroyed", account, NULL, 0);
	return destroyed_status(attempt_limit);
}

/* Opens the sealed record: registration_record || wrapped_key. */
static bkv_token_err open_record(bkv_vault *v, bkv_account account, const bkv_record *record,
                                 uint8_t *plaintext, size_t *plaintext_len)
{
	if (record->sealed_len < BKV_RECORD_SEAL_OVERHEAD)
		return BKV_TOKEN_ERR_AUTH;
	*plaintext_len = record->sealed_len - BKV_RECORD_SEAL_OVERHEAD;
	const size_t record_len =
	    opaque_suite_sizes((opaque_suite_id)record->suite)->registration_record;
	if (*plaintext_len <= record_len ||
	    *plaintext_len > OPAQUE_MAX_REGISTRATION_RECORD_BYTES + BKV_WRAPPED_KEY_MAX)
		return BKV_TOKEN_ERR_AUTH;
	return bkv_record_open(v->token, account.id, account.len, (opaque_suite_id)record->suite,
	                       record->record_version, record->sealed, record->sealed_len,
	                       plaintext, *plaintext_len);
}

bkv_status bkv_recover_start(bkv_vault *v, bkv_account account,
                             const Bkv__V1__RecoverStartRequest *req,
                             Bkv__V1__RecoverStartResponse *resp, bkv_reply_buffers *buf)
{
	bkv__v1__recover_start_response__init(resp);
	if (!bkv_account_valid(account))
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT,
		                        "account id must be 1 to 256 bytes");
	opaque_suite_id suite;
	if (!bkv_suite_enabled(v, req->suite, &suite))
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT, "suite is not enabled");
	const opaque_sizes *sizes = opaque_suite_sizes(suite);
	if (req->ke1.len != sizes->ke1)
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT, "ke1 has the wrong length");
	const opaque_server_keys *keys = bkv_token_server_keys(v->token, suite);
	const opaque_config config = bkv_opaque_config(v, suite);

	bkv_record record;
	bkv_ticket ticket;
	uint8_t plaintext[OPAQUE_MAX_REGISTRATION_RECORD_BYTES + BKV_WRAPPED_KEY_MAX];
	size_t plaintext_len = 0, ticket_len = 0;
	uint32_t attempts_used = 0, attempt_limit = 0;
	bkv_status st = bkv_status_error(BKV_CODE_UNAVAILABLE,
	                                 "the vault is busy with this account; try again");
	memset(&ticket, 0, sizeof(ticket));
	for (int round = 0; round < COMMIT_RETRIES; round++) {
		bkv_storage_err serr =
		    bkv_storage_get(v->storage, account.id, account.len, &record);
		if (serr != BKV_STORAGE_OK) {
			st = bkv_status_from_storage(serr);
			break;
		}
		if (record.suite != (uint32_t)suite) {
			st = bkv_status_error(BKV_CODE_FAILED_PRECONDITION,
			                      "the backup key is registered with another suite");
			break;
		}
		if (record.attempts_used >= record.attempt_limit) {
			bool replaced;
			st = destroy_record(v, account, &record, &replaced);
			if (replaced)
				continue;
			break;
		}
		bkv_token_err terr = open_record(v, account, &record, plaintext, &plaintext_len);
		if (terr != BKV_TOKEN_OK) {
			st = bkv_status_from_token(terr);
			break;
		}
		opaque_err oerr =
		    opaque_server_login_start(&config, keys, NULL, account.id, account.len,
		                              plaintext, sizes->registration_record, req->ke1.data,
		                              req->ke1.len, &ticket.state, buf->ke2, sizes->ke2);
		if (oerr != OPAQUE_OK) {
			st = oerr == OPAQUE_ERR_SERVER_KEYS
			         ? bkv_status_from_server_keys(v)
			         : bkv_status_error(BKV_CODE_INVALID_ARGUMENT,
			                            opaque_strerror(oerr));
			break;
		}
		ticket.suite = suite;
		ticket.record_version = record.record_version;
		ticket.guess_seq = record.guess_seq + 1;
		ticket.expires_at = (int64_t)time(NULL) + v->settings.ticket_lifetime_s;
		terr = bkv_ticket_seal(v->token, account, &ticket, buf->ticket, sizeof(buf->ticket),
		                       &ticket_len);
		if (terr != BKV_TOKEN_OK) {
			st = bkv_status_from_token(terr);
			break;
		}
		/* The commit point: KE2 may leave only if this succeeds. */
		serr = bkv_storage_commit_attempt(v->storage, account.id, account.len,
		                                  record.record_version, record.guess_seq,
		                                  &attempts_used, &attempt_limit);
		if (serr == BKV_STORAGE_STALE)
			continue; /* another request moved the row: redo on the new one */
		if (serr == BKV_STORAGE_EXHAUSTED) {
			bool replaced;
			st = destroy_record(v, account, &record, &replaced);
			if (replaced)
				continue;
		} else if (serr != BKV_STORAGE_OK)
			st = bkv_status_from_storage(serr);
		else
			st = bkv_status_ok();
		break;
	}
	sodium_memzero(plaintext, sizeof(plaintext));
	sodium_memzero(&ticket, sizeof(ticket));
	if (st.code != BKV_CODE_OK) {
		sodium_memzero(buf->ke2, sizeof(buf->ke2));
		sodium_memzero(buf->ticket, sizeof(buf->ticket));
		return st;
	}
	bkv_audit(v, "attempt_used", account, "attempts_used", attempts_used);
	resp->ke2.data = buf->ke2;
	resp->ke2.len = sizes->ke2;
	resp->ticket.data = buf->ticket;
	resp->ticket.len = ticket_len;
	resp->attempts_remaining = attempt_limit - attempts_used;
	return st;
}

/* sealed_key = nonce || AES-256-GCM(HKDF-Expand(session_key, "bkv-v1 release", 32),
 *                                   nonce, wrapped_key, AAD = "bkv-v1 release") */
static bool seal_for_release(opaque_suite_id suite, const uint8_t *session_key,
                             const uint8_t *wrapped_key, size_t wrapped_len, uint8_t *out,
                             size_t *out_len)
{
	uint8_t key[32];
	bool ok = false;
	EVP_CIPHER_CTX *ctx = NULL;
	int n = 0, final_len = 0;
	if (opaque_kdf_expand(suite, session_key, opaque_suite_sizes(suite)->Nh,
	                      (const uint8_t *)RELEASE_INFO, sizeof(RELEASE_INFO) - 1, key,
	                      sizeof(key)) != OPAQUE_OK)
		goto done;
	randombytes_buf(out, RELEASE_NONCE_BYTES);
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out) == 1 &&
	     EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)RELEASE_INFO,
	                       (int)(sizeof(RELEASE_INFO) - 1)) == 1 &&
	     EVP_EncryptUpdate(ctx, out + RELEASE_NONCE_BYTES, &n, wrapped_key, (int)wrapped_len) ==
	         1 &&
	     EVP_EncryptFinal_ex(ctx, out + RELEASE_NONCE_BYTES + n, &final_len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, RELEASE_TAG_BYTES,
	                         out + RELEASE_NONCE_BYTES + wrapped_len) == 1;
	*out_len = RELEASE_NONCE_BYTES + wrapped_len + RELEASE_TAG_BYTES;
done:
	EVP_CIPHER_CTX_free(ctx);
	sodium_memzero(key, sizeof(key));
	return ok;
}

bkv_status bkv_recover_finish(bkv_vault *v, bkv_account account,
                              const Bkv__V1__RecoverFinishRequest *req,
                              Bkv__V1__RecoverFinishResponse *resp, bkv_reply_buffers *buf)
{
	bkv__v1__recover_finish_response__init(resp);
	if (!bkv_account_valid(account))
		return bkv_status_error(BKV_CODE_INVALID_ARGUMENT,
		                        "account id must be 1 to 256 bytes");
	bkv_ticket ticket;
	bkv_record record;
	uint8_t plaintext[OPAQUE_MAX_REGISTRATION_RECORD_BYTES + BKV_WRAPPED_KEY_MAX];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	size_t plaintext_len = 0;
	bkv_status st;
	memset(plaintext, 0, sizeof(plaintext));
	memset(session_key, 0, sizeof(session_key));

	bkv_token_err terr =
	    bkv_ticket_open(v->token, account, req->ticket.data, req->ticket.len, &ticket);
	if (terr == BKV_TOKEN_ERR_AUTH) {
		st = bkv_status_error(BKV_CODE_INVALID_ARGUMENT,
		                      "invalid ticket (forged, damaged or for another account)");
		goto done;
	}
	if (terr != BKV_TOKEN_OK) {
		st = bkv_status_from_token(terr);
		goto done;
	}
	const opaque_sizes *sizes = opaque_suite_sizes(ticket.suite);
	if ((int64_t)time(NULL) > ticket.expires_at) {
		st = bkv_status_error(BKV_CODE_FAILED_PRECONDITION,
		                      "the recovery ticket has expired; start the recovery again");
		goto done;
	}
	if (req->ke3.len != sizes->ke3) {
		st = bkv_status_error(BKV_CODE_INVALID_ARGUMENT, "ke3 has the wrong length");
		goto done;
	}
	bkv_storage_err serr = bkv_storage_get(v->storage, account.id, account.len, &record);
	if (serr != BKV_STORAGE_OK) {
		st = bkv_status_from_storage(serr);
		goto done;
	}
	if (record.record_version != ticket.record_version ||
	    ticket.guess_seq <= record.last_finished_seq) {
		st =
		    bkv_status_error(BKV_CODE_FAILED_PRECONDITION,
		                     "the ticket was already used or the key was registered again");
		goto done;
	}
	/* Open before finishing, so a success is never committed without the key at hand. */
	terr = open_record(v, account, &record, plaintext, &plaintext_len);
	if (terr != BKV_TOKEN_OK) {
		st = bkv_status_from_token(terr);
		goto done;
	}
	const bool success =
	    opaque_server_login_finish(&ticket.state, req->ke3.data, req->ke3.len, session_key,
	                               sizes->session_key) == OPAQUE_OK;
	bkv_finish_result result;
	serr =
	    bkv_storage_finish_attempt(v->storage, account.id, account.len, ticket.record_version,
	                               ticket.guess_seq, success, &result, NULL);
	if (serr == BKV_STORAGE_STALE || serr == BKV_STORAGE_NOT_FOUND) {
		st =
		    bkv_status_error(BKV_CODE_FAILED_PRECONDITION,
		                     "the ticket was already used or the key was registered again");
		goto done;
	}
	if (serr != BKV_STORAGE_OK) {
		st = bkv_status_from_storage(serr);
		goto done;
	}
	if (!success) {
		st = bkv_status_error(BKV_CODE_PERMISSION_DENIED, "wrong password");
		if (result.destroyed) {
			bkv_audit(v, "destroyed", account, NULL, 0);
			st.message = "wrong password; no attempts left: the backup key has been "
			             "destroyed";
		}
		st.has_attempt_info = true;
		st.attempts_remaining = result.attempt_limit - result.attempts_used;
		st.attempt_limit = result.attempt_limit;
		goto done;
	}
	const size_t record_len = sizes->registration_record;
	size_t sealed_len = 0;
	if (!seal_for_release(ticket.suite, session_key, plaintext + record_len,
	                      plaintext_len - record_len, buf->sealed_key, &sealed_len)) {
		st = bkv_status_error(BKV_CODE_INTERNAL, "cannot seal the key for release");
		goto done;
	}
	bkv_audit(v, "recovered", account, "record_version", record.record_version);
	resp->sealed_key.data = buf->sealed_key;
	resp->sealed_key.len = sealed_len;
	resp->record_version = record.record_version;
	st = bkv_status_ok();
done:
	sodium_memzero(&ticket, sizeof(ticket));
	sodium_memzero(plaintext, sizeof(plaintext));
	sodium_memzero(session_key, sizeof(session_key));
	return st;
}
