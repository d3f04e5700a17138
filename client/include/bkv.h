/*
 * bkv.h - libbkv, the client of the bkv backup key vault.
 *
 * The backup key is 32 random bytes, shown to people as 64 lowercase hex digits in 16
 * groups of 4. With a password, the key can be kept in the vault: the client wraps it
 * with the OPAQUE export key, so the vault never holds it in the clear, and the vault
 * hands the wrapped key back only after an OPAQUE login, with a hard attempt limit.
 *
 * Conventions: every buffer has an explicit length; errors are a bkv_status plus a
 * message you can show; there is no global state, and a bkv_client may be used from
 * several threads at once. Every secret this library holds is wiped before it is freed.
 */
#ifndef BKV_H
#define BKV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bkv_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What libbkv exports; the library is built with -fvisibility=hidden, so nothing else is. */
#if defined(__GNUC__)
#define BKV_API __attribute__((visibility("default")))
#else
#define BKV_API
#endif

#define BKV_KEY_BYTES      32
#define BKV_KEY_TEXT_BYTES 80 /* "xxxx xxxx ... xxxx" (79 characters) + NUL */
#define BKV_MESSAGE_BYTES  256

typedef enum bkv_status {
	BKV_OK = 0,
	BKV_ERR_ARGUMENT,        /* bad input; the message says which and where */
	BKV_ERR_WRONG_PASSWORD,  /* the password did not open the key; attempts may remain */
	BKV_ERR_DESTROYED,       /* no attempts left: the vault destroyed the key */
	BKV_ERR_NOT_REGISTERED,  /* the vault holds no key for this account */
	BKV_ERR_UNAUTHENTICATED, /* the vault rejected the account token */
	BKV_ERR_UNAVAILABLE,     /* the vault cannot be reached or is temporarily down */
	BKV_ERR_PROTOCOL,        /* the vault's answer was malformed or failed verification */
	BKV_ERR_IO,              /* reading or writing a file failed */
	BKV_ERR_FORMAT,          /* a backup file is not in the bkv format or is corrupted */
	BKV_ERR_TRUNCATED,       /* a backup file ends early */
	BKV_ERR_TAMPERED,        /* a backup chunk failed authentication, is out of order, has
	                          * an invalid chunk header, or data follows the final chunk */
	BKV_ERR_WRONG_KEY,       /* the backup was encrypted with another key (or its salt or
	                          * key commitment is damaged: the two look the same) */
	BKV_ERR_NOMEM,
	BKV_ERR_INTERNAL,
	BKV_ERR_ALREADY_REGISTERED, /* a key, or a destroyed key's tombstone, is in the vault:
	                             * registering needs bkv_register_replacing with its
	                             * record_version */
	BKV_ERR_CONFLICT,           /* the record changed since its version was read (replaced,
	                             * deleted or destroyed meanwhile): check the status, retry */
	BKV_ERR_DATA_LOSS,          /* the vault refused its stored record for the account: the
	                             * record failed the vault's integrity check */
	BKV_ERR_TLS,                /* TLS failed: the vault's certificate is not trusted by the CA
	                             * file (or the system's), does not match the pinned certificate,
	                             * or the CA file cannot be read. Possibly a man in the middle:
	                             * never retry automatically */
	BKV_ERR_HTTP,         /* something answered, but not with the Connect protocol: a proxy's
	                       * 502/504, a wrong path's 404 page, a bare 401; the HTTP status is
	                       * in bkv_error.http_status */
	BKV_ERR_RATE_LIMITED, /* the vault said resource_exhausted (too many requests): retry
	                       * after bkv_error.retry_after_ms (0: the vault did not say) */
} bkv_status;

/* A status with a human-readable message, e.g. "wrong password: 3 attempts left". */
typedef struct bkv_error {
	bkv_status status;
	char message[BKV_MESSAGE_BYTES];
	/* The HTTP status of the answer, set with BKV_ERR_HTTP, BKV_ERR_RATE_LIMITED and (when
	 * something answered) BKV_ERR_UNAVAILABLE; 0 otherwise. */
	int http_status;
	/* With BKV_ERR_RATE_LIMITED or BKV_ERR_UNAVAILABLE: how long the vault asked the
	 * client to wait (its bkv.v1.RetryInfo detail) in milliseconds; 0 if it did not say. */
	uint32_t retry_after_ms;
} bkv_error;

BKV_API const char *bkv_status_name(bkv_status status);

/* The version of the library loaded, e.g. "0.1.0" (BKV_VERSION_STRING is the version of
 * the headers a program was built with). */
BKV_API const char *bkv_version(void);

/* ---- The backup key ---- */

typedef struct bkv_key {
	uint8_t bytes[BKV_KEY_BYTES];
} bkv_key;

/* 32 bytes from the OS CSPRNG. */
BKV_API bkv_status bkv_key_generate(bkv_key *key);
/* 64 lowercase hex digits in 16 groups of 4 separated by spaces, NUL-terminated. */
BKV_API bkv_status bkv_key_format(const bkv_key *key, char *text, size_t text_len);
/* Accepts upper and lower case, and spaces, dashes and line breaks anywhere. Anything
 * else fails with BKV_ERR_ARGUMENT and a message naming the 1-based position of the first
 * problem ("invalid character 'g' at position 12", or "invalid character 0x09 at
 * position 10" for unprintable bytes); a wrong number of digits is reported as such
 * ("expected 64 hex digits, found 63"). *key is zeroed on failure. */
BKV_API bkv_status bkv_key_parse(const char *text, size_t text_len, bkv_key *key, bkv_error *error);
BKV_API void bkv_key_wipe(bkv_key *key);

/* ---- The vault client ---- */

typedef enum bkv_suite {
	BKV_SUITE_VAULT_PREFERENCE = 0, /* the first suite the vault lists */
	BKV_SUITE_P256_SHA256 = 1,
	BKV_SUITE_RISTRETTO255_SHA512 = 2,
} bkv_suite;

typedef struct bkv_client_config {
	const char *vault_url;   /* "https://host:port" (http only for loopback) */
	const char *ca_file;     /* PEM CA bundle; NULL for the system's */
	const char *pinned_cert; /* PEM certificate the server must present exactly; or NULL */
	long timeout_ms;         /* per request; 0 for 30 s */
	bkv_suite suite;         /* preference for registration */
	/* Argon2id parameters; all 0 (the default) takes the vault's published ones. */
	uint32_t argon2_iterations;
	uint32_t argon2_memory_kib;
	uint32_t argon2_parallelism;
} bkv_client_config;

typedef struct bkv_client bkv_client;

BKV_API bkv_status bkv_client_new(const bkv_client_config *config, bkv_client **client,
                                  bkv_error *error);
BKV_API void bkv_client_free(bkv_client *client);

/* What a recovery attempt left behind. Every failure of the vault's recovery calls that
 * concerns a registered or destroyed record says how many attempts are left, so after a
 * wrong password, a destroyed key or a ticket the vault refused, attempts_known is set
 * with both numbers. */
typedef struct bkv_recover_info {
	uint32_t attempts_remaining; /* after this attempt; valid when attempts_known */
	uint32_t attempt_limit;
	bool attempts_known;
	bool destroyed; /* the key is gone for good */
} bkv_recover_info;

/* What the vault holds for an account (GetStatus). */
typedef enum bkv_record_state {
	BKV_RECORD_UNKNOWN = 0,    /* the vault did not say (a vault from before record states) */
	BKV_RECORD_ABSENT = 1,     /* never registered, or deleted */
	BKV_RECORD_REGISTERED = 2, /* a key the password recovers */
	BKV_RECORD_DESTROYED = 3,  /* the attempt limit was reached: the key is gone for good; a
	                            * tombstone stays until it is deleted or replaced */
} bkv_record_state;

typedef struct bkv_account_status {
	bool registered; /* state == BKV_RECORD_REGISTERED */
	bkv_suite suite;
	uint32_t attempts_used;
	uint32_t attempt_limit;
	/* Counts per account from 1; also set for a destroyed key (the tombstone's version,
	 * which bkv_register_replacing takes to register a new key over it). */
	uint64_t record_version;
	int64_t registered_at_unix;
	bkv_record_state state;
	int64_t destroyed_at_unix; /* when state == BKV_RECORD_DESTROYED, else 0 */
} bkv_account_status;

/* account_token is the bearer token (JWT) from the integrator's auth service.
 *
 * bkv_register only creates: if the account already has a key, or the tombstone of a
 * destroyed one, it fails with BKV_ERR_ALREADY_REGISTERED and changes nothing. */
BKV_API bkv_status bkv_register(bkv_client *client, const char *account_token, const char *password,
                                size_t password_len, const bkv_key *key, uint32_t attempt_limit,
                                bkv_error *error);
/* Registers key in place of the record whose record_version is replaces_record_version
 * (from bkv_status_get; a destroyed key's tombstone is replaced the same way), or creates
 * it if replaces_record_version is 0 (then it is bkv_register). BKV_ERR_CONFLICT if the
 * account's record is not that version any more (replaced, deleted or destroyed
 * meanwhile), BKV_ERR_ALREADY_REGISTERED for 0 when a record exists; either way nothing
 * changed. *out_record_version (may be NULL) gets the new version: the replaced one + 1,
 * or 1. The old key is gone from the vault: backups encrypted with it open only with that
 * key written down. */
BKV_API bkv_status bkv_register_replacing(bkv_client *client, const char *account_token,
                                          const char *password, size_t password_len,
                                          const bkv_key *key, uint32_t attempt_limit,
                                          uint64_t replaces_record_version,
                                          uint64_t *out_record_version, bkv_error *error);
/* BKV_ERR_WRONG_PASSWORD (attempts left), BKV_ERR_DESTROYED (the last attempt failed, or
 * the key was destroyed earlier: out_info->destroyed), BKV_ERR_NOT_REGISTERED (the vault
 * holds nothing for the account), BKV_ERR_CONFLICT (the key was registered again during
 * the recovery: retry), BKV_ERR_DATA_LOSS, ... */
BKV_API bkv_status bkv_recover(bkv_client *client, const char *account_token, const char *password,
                               size_t password_len, bkv_key *out_key, bkv_recover_info *out_info,
                               bkv_error *error);
/* Recovers with the old password, then registers the same key under the new one in place
 * of exactly the record version it recovered, keeping that record's attempt limit.
 * BKV_ERR_CONFLICT (and the password is not changed) if the record was replaced, deleted
 * or destroyed in between. */
BKV_API bkv_status bkv_change_password(bkv_client *client, const char *account_token,
                                       const char *old_password, size_t old_password_len,
                                       const char *new_password, size_t new_password_len,
                                       bkv_recover_info *out_info, bkv_error *error);
BKV_API bkv_status bkv_status_get(bkv_client *client, const char *account_token,
                                  bkv_account_status *out, bkv_error *error);
/* Deletes the account's record, a destroyed key's tombstone included; a later
 * bkv_register starts again at record version 1. */
BKV_API bkv_status bkv_delete(bkv_client *client, const char *account_token, bool *deleted,
                              bkv_error *error);

/* ---- Backup files (docs/BACKUP-FORMAT.md) ---- */

#define BKV_BACKUP_CHUNK_BYTES 65536

/* Called every few chunks and at the end with the bytes read from `in` so far; total is
 * the caller's total_hint (0 when unknown), so passing the input's size makes done reach
 * it. */
typedef void (*bkv_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Streams in to out in constant memory (about 128 KiB). out is flushed, not closed or
 * synced; error is set only on failure. total_hint (0 if unknown) only feeds progress. */
BKV_API bkv_status bkv_backup_encrypt(const bkv_key *key, FILE *in, FILE *out, uint64_t total_hint,
                                      bkv_progress_fn progress, void *progress_arg,
                                      bkv_error *error);
/* Writes plaintext to out as chunks verify; on any error the output so far must be
 * discarded (the caller deletes it). Truncation, reordering, chunks from another file and
 * a wrong key each fail with their own status. */
BKV_API bkv_status bkv_backup_decrypt(const bkv_key *key, FILE *in, FILE *out, uint64_t total_hint,
                                      bkv_progress_fn progress, void *progress_arg,
                                      bkv_error *error);

#ifdef __cplusplus
}
#endif

#endif
