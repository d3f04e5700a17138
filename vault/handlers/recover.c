/*
 * recover.c - RecoverStart and RecoverFinish: the attempt limit that holds.
 *
 * Every row is read through bkv_load_record (the token's state MAC verified) and written
 * through bkv_update_record (compare-and-set on the MAC that was verified).
 *
 * RecoverStart computes KE2 (with the token) under the record's own OPRF key (account id ||
 * registration id), seals the ticket, and only then commits attempts_used + 1 and
 * guess_seq + 1 over exactly the row it read.
 * KE2 leaves this file only after that commit; if the commit fails nothing is sent, and if
 * the token or the database fails first no attempt is consumed. A concurrent request that
 * moved the row first makes the commit fail as stale, and the whole step is redone on the
 * new row, so K concurrent guessers get at most attempt_limit KE2s between two successes.
 *
 * RecoverFinish checks KE3 in constant time and finishes the guess exactly once
 * (guess_seq > last_finished_seq, in one transaction): success resets the counter and
 * releases the wrapped key sealed under a key derived from session_key; a failure that
 * used the last attempt destroys the key material in the same transaction and leaves a
 * tombstone, so every later call says the key was destroyed.
 *
 * Every failure that concerns a registered or destroyed record carries AttemptInfo.
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

static bkvd_status with_attempts(bkvd_status st, const bkv_record *r)
{
	st.has_attempt_info = true;
	st.attempt_limit = r->attempt_limit;
	st.attempts_remaining =
	    r->state == BKV_RECORD_DESTROYED || r->attempts_used >= r->attempt_limit
	        ? 0
	        : r->attempt_limit - r->attempts_used;
	return st;
}

static bkvd_status destroyed_status(const bkv_record *r)
{
	return with_attempts(
	    bkvd_status_error(BKV_CODE_FAILED_PRECONDITION,
	                      "no attempts left: the backup key has been destroyed "
	                      "and can no longer be recovered"),
	    r);
}

/* The key material is gone for good; the tombstone keeps what a user must be told. */
static void tombstone(bkv_record *r)
{
	r->state = BKV_RECORD_DESTROYED;
	r->destroyed_at = (int64_t)time(NULL);
	r->seal_key_version = 0;
	sodium_memzero(r->sealed, sizeof(r->sealed));
	r->sealed_len = 0;
}

#define RECORD_PLAINTEXT_MAX (OPAQUE_MAX_REGISTRATION_RECORD_BYTES + BKV_WRAPPED_KEY_MAX)

/* Opens the sealed record: registration_record || wrapped_key. The record was verified by
 * bkv_load_record, so its suite and lengths are in range. */
static bkv_token_err open_record(bkv_vault *v, bkv_account account, const bkv_record *record,
                                 uint8_t *plaintext, size_t *plaintext_len)
{
	return bkv_record_open(v->token, account.id, account.len, (opaque_suite_id)record->suite,
	                       record->record_version, record->registration_id,
	                       record->registration_id_len, record->sealed, record->sealed_len,
	                       plaintext, RECORD_PLAINTEXT_MAX, plaintext_len);
}

/* One round of RecoverStart on a verified live record with attempts left: KE2 and the
 * ticket into buf, then the commit. *stale if the row moved first. */
static bkvd_status start_attempt(bkv_vault *v, bkv_account account, opaque_suite_id suite,
                                 const Bkv__V1__RecoverStartRequest *req, const bkv_record *record,
                                 bkv_reply_buffers *buf, size_t *ticket_len, bkv_record *next,
                                 bool *stale)
{
	const opaque_sizes *sizes = opaque_suite_sizes(suite);
	const opaque_server_keys *keys = bkv_token_server_keys(v->token, suite);
	const opaque_config config = bkv_opaque_config(v, suite);
	uint8_t plaintext[RECORD_PLAINTEXT_MAX];
	uint8_t credential_id[BKV_CREDENTIAL_ID_MAX];
	size_t plaintext_len = 0, credential_id_len = 0;
	bkv_ticket ticket;
	memset(&ticket, 0, sizeof(ticket));
	bkvd_status st = bkvd_status_ok();
	*stale = false;
	bkv_token_err terr = open_record(v, account, record, plaintext, &plaintext_len);
	if (terr != BKV_TOKEN_OK) {
		st = bkvd_status_from_token(v, terr);
		goto done;
	}
	bkv_credential_identifier(account, record->registration_id, record->registration_id_len,
	                          credential_id, &credential_id_len);
	opaque_err oerr =
	    opaque_server_login_start(&config, keys, NULL, credential_id, credential_id_len,
	                              plaintext, sizes->registration_record, req->ke1.data,
	                              req->ke1.len, &ticket.state, buf->ke2, sizes->ke2);
	if (oerr != OPAQUE_OK) {
		st = oerr == OPAQUE_ERR_SERVER_KEYS
		         ? bkvd_status_from_server_keys(v)
		         : with_attempts(
		               bkvd_status_error(BKV_CODE_INVALID_ARGUMENT, opaque_strerror(oerr)),
		               record);
		goto done;
	}
	ticket.suite = suite;
	ticket.record_version = record->record_version;
	ticket.guess_seq = record->guess_seq + 1;
	ticket.expires_at = (int64_t)time(NULL) + v->settings.ticket_lifetime_s;
	memcpy(ticket.registration_id, record->registration_id, record->registration_id_len);
	ticket.registration_id_len = record->registration_id_len;
	terr = bkv_ticket_seal(v->token, account, &ticket, buf->ticket, sizeof(buf->ticket),
	                       ticket_len);
	if (terr != BKV_TOKEN_OK) {
		st = bkvd_status_from_token(v, terr);
		goto done;
	}
	/* The commit point: KE2 may leave only if this succeeds. */
	*next = *record;
	next->attempts_used = record->attempts_used + 1;
	next->guess_seq = record->guess_seq + 1;
	st = bkv_update_record(v, next, record, stale);
done:
	sodium_memzero(plaintext, sizeof(plaintext));
	sodium_memzero(&ticket, sizeof(ticket));
	sodium_memzero(credential_id, sizeof(credential_id));
	return st;
}

bkvd_status bkvd_recover_start(bkv_vault *v, bkv_account account,
                               const Bkv__V1__RecoverStartRequest *req,
                               Bkv__V1__RecoverStartResponse *resp, bkv_reply_buffers *buf)
{
	bkv__v1__recover_start_response__init(resp);
	if (!bkv_account_valid(account))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "account id must be 1 to 256 bytes");
	opaque_suite_id suite;
	if (!bkv_suite_enabled(v, req->suite, &suite))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT, "suite is not enabled");
	const opaque_sizes *sizes = opaque_suite_sizes(suite);
	if (req->ke1.len != sizes->ke1)
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT, "ke1 has the wrong length");

	bkv_record record, next;
	size_t ticket_len = 0;
	bkvd_status st = bkvd_status_busy();
	for (int round = 0; round < COMMIT_RETRIES; round++) {
		bool stale = false;
		bkvd_status loaded = bkv_load_record(v, account, &record);
		if (loaded.code != BKV_CODE_OK) {
			st = loaded;
			break;
		}
		if (record.state == BKV_RECORD_DESTROYED) {
			st = destroyed_status(&record);
			break;
		}
		if (record.suite != (uint32_t)suite) {
			st = with_attempts(
			    bkvd_status_error(BKV_CODE_FAILED_PRECONDITION,
			                      "the backup key is registered with another suite"),
			    &record);
			break;
		}
		if (record.attempts_used >= record.attempt_limit) {
			/* The last attempt was started but never finished. */
			next = record;
			tombstone(&next);
			st = bkv_update_record(v, &next, &record, &stale);
			if (stale) {
				st = bkvd_status_busy();
				continue;
			}
			if (st.code == BKV_CODE_OK) {
				bkv_audit(v, "destroyed", account, NULL, 0);
				st = destroyed_status(&next);
			}
			break;
		}
		st =
		    start_attempt(v, account, suite, req, &record, buf, &ticket_len, &next, &stale);
		if (!stale)
			break;
		st = bkvd_status_busy();
	}
	if (st.code != BKV_CODE_OK) {
		sodium_memzero(buf->ke2, sizeof(buf->ke2));
		sodium_memzero(buf->ticket, sizeof(buf->ticket));
		return st;
	}
	bkv_audit(v, "attempt_used", account, "attempts_used", next.attempts_used);
	resp->ke2.data = buf->ke2;
	resp->ke2.len = sizes->ke2;
	resp->ticket.data = buf->ticket;
	resp->ticket.len = ticket_len;
	resp->attempts_remaining = next.attempt_limit - next.attempts_used;
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

/* Whether the ticket is for this registration's guess that is still unfinished. */
static bool ticket_current(const bkv_ticket *t, const bkv_record *r)
{
	return t->record_version == r->record_version &&
	       t->registration_id_len == r->registration_id_len &&
	       sodium_memcmp(t->registration_id, r->registration_id, r->registration_id_len) == 0 &&
	       t->guess_seq > r->last_finished_seq && t->guess_seq <= r->guess_seq;
}

bkvd_status bkvd_recover_finish(bkv_vault *v, bkv_account account,
                                const Bkv__V1__RecoverFinishRequest *req,
                                Bkv__V1__RecoverFinishResponse *resp, bkv_reply_buffers *buf)
{
	bkv__v1__recover_finish_response__init(resp);
	if (!bkv_account_valid(account))
		return bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                         "account id must be 1 to 256 bytes");
	bkv_ticket ticket;
	bkv_record record, next;
	uint8_t plaintext[RECORD_PLAINTEXT_MAX];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	size_t plaintext_len = 0;
	bkvd_status st;
	memset(plaintext, 0, sizeof(plaintext));
	memset(session_key, 0, sizeof(session_key));

	bkv_token_err terr =
	    bkv_ticket_open(v->token, account, req->ticket.data, req->ticket.len, &ticket);
	if (terr == BKV_TOKEN_ERR_AUTH) {
		st = bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                       "invalid ticket (forged, damaged or for another account)");
		goto done;
	}
	if (terr != BKV_TOKEN_OK) {
		st = bkvd_status_from_token(v, terr);
		goto done;
	}
	const opaque_sizes *sizes = opaque_suite_sizes(ticket.suite);
	if (req->ke3.len != sizes->ke3) {
		st = bkvd_status_error(BKV_CODE_INVALID_ARGUMENT, "ke3 has the wrong length");
		goto done;
	}
	const bool success =
	    opaque_server_login_finish(&ticket.state, req->ke3.data, req->ke3.len, session_key,
	                               sizes->session_key) == OPAQUE_OK;
	st = bkvd_status_busy();
	for (int round = 0; round < COMMIT_RETRIES; round++) {
		bool stale = false;
		st = bkv_load_record(v, account, &record);
		if (st.code != BKV_CODE_OK)
			goto done;
		if (record.state == BKV_RECORD_DESTROYED) {
			st = destroyed_status(&record);
			goto done;
		}
		if (!ticket_current(&ticket, &record)) {
			st = with_attempts(
			    bkvd_status_error(BKV_CODE_FAILED_PRECONDITION,
			                      "the ticket was already used or the key was "
			                      "registered again"),
			    &record);
			goto done;
		}
		if ((int64_t)time(NULL) > ticket.expires_at) {
			st = with_attempts(
			    bkvd_status_error(BKV_CODE_FAILED_PRECONDITION,
			                      "the recovery ticket has expired; start the "
			                      "recovery again"),
			    &record);
			goto done;
		}
		/* Open before finishing, so a success is never committed without the key. */
		if (success) {
			terr = open_record(v, account, &record, plaintext, &plaintext_len);
			if (terr != BKV_TOKEN_OK) {
				st = bkvd_status_from_token(v, terr);
				goto done;
			}
		}
		next = record;
		next.last_finished_seq = ticket.guess_seq;
		if (success)
			next.attempts_used = 0;
		else if (next.attempts_used >= next.attempt_limit)
			tombstone(&next);
		st = bkv_update_record(v, &next, &record, &stale);
		if (!stale)
			break;
		st = bkvd_status_busy();
	}
	if (st.code != BKV_CODE_OK)
		goto done;
	if (!success) {
		st = with_attempts(bkvd_status_error(BKV_CODE_PERMISSION_DENIED, "wrong password"),
		                   &next);
		if (next.state == BKV_RECORD_DESTROYED) {
			bkv_audit(v, "destroyed", account, NULL, 0);
			st.message = "wrong password; no attempts left: the backup key has been "
			             "destroyed";
		}
		goto done;
	}
	const size_t record_len = sizes->registration_record;
	size_t sealed_len = 0;
	if (!seal_for_release(ticket.suite, session_key, plaintext + record_len,
	                      plaintext_len - record_len, buf->sealed_key, &sealed_len)) {
		st = bkvd_status_error(BKV_CODE_INTERNAL, "cannot seal the key for release");
		goto done;
	}
	bkv_audit(v, "recovered", account, "record_version", record.record_version);
	resp->sealed_key.data = buf->sealed_key;
	resp->sealed_key.len = sealed_len;
	resp->record_version = record.record_version;
	st = bkvd_status_ok();
done:
	sodium_memzero(&ticket, sizeof(ticket));
	sodium_memzero(plaintext, sizeof(plaintext));
	sodium_memzero(session_key, sizeof(session_key));
	return st;
}
