/*
 * storage.h - the vault's record store: one row per account with its counters and its
 * sealed blob. Storage knows rows and counters only; it never sees OPAQUE messages or
 * plaintext, and it never talks to the token.
 *
 * Every call that changes a row is one transaction, committed durably before it returns
 * BKV_STORAGE_OK (SQLite: WAL with synchronous=FULL). A call that returns
 * BKV_STORAGE_UNAVAILABLE committed nothing.
 *
 * The attempt counter moves only through two atomic conditional updates:
 *   commit_attempt:  attempts_used + 1 and guess_seq + 1, only if the record is the one
 *                    the caller computed KE2 for and attempts_used < attempt_limit;
 *   finish_attempt:  marks a guess finished exactly once (guess_seq > last_finished_seq);
 *                    success resets attempts_used to 0, the last failure deletes the row.
 * A backend must give these the same semantics (row locks or conditional updates).
 */
#ifndef BKV_STORAGE_H
#define BKV_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BKV_STORAGE_ACCOUNT_MAX 256
#define BKV_STORAGE_SEALED_MAX  1024

typedef struct bkv_record {
	uint8_t account_id[BKV_STORAGE_ACCOUNT_MAX];
	size_t account_id_len;
	uint32_t suite;
	uint64_t record_version; /* unique across the store, never reused */
	uint32_t attempts_used;
	uint32_t attempt_limit;
	uint64_t guess_seq;         /* monotonic per account, never reset */
	uint64_t last_finished_seq; /* the newest guess that was finished */
	uint32_t seal_key_version;
	uint8_t sealed[BKV_STORAGE_SEALED_MAX];
	size_t sealed_len;
	int64_t registered_at; /* unix seconds */
	int64_t updated_at;
} bkv_record;

typedef enum bkv_storage_err {
	BKV_STORAGE_OK = 0,
	BKV_STORAGE_NOT_FOUND,   /* no record for the account */
	BKV_STORAGE_EXHAUSTED,   /* attempts_used has reached attempt_limit */
	BKV_STORAGE_STALE,       /* the record changed, or the guess was already finished */
	BKV_STORAGE_UNAVAILABLE, /* the database failed; nothing was committed */
	BKV_STORAGE_ARGUMENT,
} bkv_storage_err;

const char *bkv_storage_strerror(bkv_storage_err err);

typedef struct bkv_storage bkv_storage;

/* url: "sqlite:PATH" (or a bare path), or "postgresql://..." / "postgres://..." (a libpq
 * connection URI). Creates or migrates the schema. */
bkv_storage_err bkv_storage_open(const char *url, bkv_storage **storage, char *why, size_t why_len);
void bkv_storage_close(bkv_storage *storage);

/* url with any password replaced by "***" (the userinfo's "user:password@" and a
 * "password=" parameter), for messages and status output. Truncated to out_len. */
void bkv_storage_url_redacted(const char *url, char *out, size_t out_len);

bkv_storage_err bkv_storage_get(bkv_storage *s, const uint8_t *account_id, size_t account_id_len,
                                bkv_record *out);

/* A fresh record_version, never handed out before. Seal the blob under it, then put. */
bkv_storage_err bkv_storage_next_record_version(bkv_storage *s, uint64_t *record_version);

/* Creates or replaces the account's record with r's suite, record_version, attempt_limit,
 * seal_key_version and sealed blob: attempts_used = 0, guess_seq carried over, and
 * last_finished_seq = guess_seq (so no earlier guess can be finished against it).
 * registered_at and updated_at are set to now. */
bkv_storage_err bkv_storage_put(bkv_storage *s, const bkv_record *r);

/* The attempt. Succeeds only if the row still has record_version and guess_seq ==
 * expected_guess_seq and attempts_used < attempt_limit; then attempts_used and guess_seq
 * are incremented and committed. Out: the new attempts_used and attempt_limit.
 * NOT_FOUND, EXHAUSTED, or STALE (someone else moved the row: re-read and retry). */
bkv_storage_err bkv_storage_commit_attempt(bkv_storage *s, const uint8_t *account_id,
                                           size_t account_id_len, uint64_t record_version,
                                           uint64_t expected_guess_seq, uint32_t *attempts_used,
                                           uint32_t *attempt_limit);

typedef struct bkv_finish_result {
	uint32_t attempts_used; /* after the finish */
	uint32_t attempt_limit;
	bool destroyed; /* the failure used the last attempt: the row is gone */
} bkv_finish_result;

/* Finishes guess guess_seq of record record_version exactly once. STALE if the record was
 * replaced or the guess (or a later one) was already finished. On success attempts_used
 * becomes 0 and *record (if not NULL) receives the row, so the caller can release the
 * sealed blob; on failure the row is deleted if attempts_used has reached the limit. */
bkv_storage_err bkv_storage_finish_attempt(bkv_storage *s, const uint8_t *account_id,
                                           size_t account_id_len, uint64_t record_version,
                                           uint64_t guess_seq, bool success,
                                           bkv_finish_result *result, bkv_record *record);

/* Destroys the account's record only if it is still record_version and its attempts are
 * used up (attempts_used >= attempt_limit). NOT_FOUND if there is no record; STALE if the
 * record was replaced or is no longer exhausted (re-read it). */
bkv_storage_err bkv_storage_destroy_exhausted(bkv_storage *s, const uint8_t *account_id,
                                              size_t account_id_len, uint64_t record_version);

/* Deletes the account's record. NOT_FOUND if there was none. */
bkv_storage_err bkv_storage_delete(bkv_storage *s, const uint8_t *account_id,
                                   size_t account_id_len);

/* Records sealed under a key version below min_version, in account order after the given
 * account (NULL/0 to start), at most max. For resumable re-sealing. */
bkv_storage_err bkv_storage_list_sealed_below(bkv_storage *s, uint32_t min_version,
                                              const uint8_t *after, size_t after_len,
                                              bkv_record *out, size_t max, size_t *count);

/* Replaces the sealed blob of a record if it still has record_version. STALE otherwise. */
bkv_storage_err bkv_storage_reseal(bkv_storage *s, const uint8_t *account_id, size_t account_id_len,
                                   uint64_t record_version, uint32_t seal_key_version,
                                   const uint8_t *sealed, size_t sealed_len);

/* How many records a seal-key version still seals. */
bkv_storage_err bkv_storage_count_sealed_with(bkv_storage *s, uint32_t seal_key_version,
                                              uint64_t *count);

#endif
