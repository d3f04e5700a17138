/*
 * bkv.h - libbkv, the client of the bkv backup key vault.
 *
 * The backup key is 32 random bytes, shown to people as 64 lowercase hex digits in 16
 * groups of 4. With a password, the key can be kept in the vault: the client wraps it
 * with the OPAQUE export key, so the vault never holds it in the clear, and the vault
 * hands the wrapped key back only after an OPAQUE login, with a hard attempt limit.
 *
 * Conventions (docs/SDK.md has more):
 *
 * - Every buffer has an explicit length. Pointers are borrowed for the call only: libbkv
 *   keeps none of them after it returns (bkv_client_new copies what it needs from its
 *   config), and allocates nothing the caller must free except the bkv_client.
 * - A pointer argument may be NULL only where its description says so. A NULL where it
 *   may not be is BKV_ERR_ARGUMENT (never a crash), except bkv_key_wipe and
 *   bkv_client_free, which accept NULL and do nothing.
 * - Errors are a bkv_status plus, where the call takes a bkv_error *error, a message you
 *   can show. error may always be NULL; it is written only on failure.
 * - Thread safety: there is no global state of libbkv's own. A bkv_client may be used from
 *   several threads at once (each call has its own connection handle and OPAQUE state);
 *   only bkv_client_free must not run while another call uses the same client. Every
 *   function without a client is thread-safe on distinct arguments.
 * - Every call to the vault can fail with the transport statuses: BKV_ERR_UNAVAILABLE
 *   (retry later), BKV_ERR_RATE_LIMITED (retry after error->retry_after_ms), BKV_ERR_TLS
 *   (do not retry), BKV_ERR_HTTP (not a vault's answer), BKV_ERR_UNAUTHENTICATED,
 *   BKV_ERR_PROTOCOL (the vault's answer was malformed) and BKV_ERR_NOMEM; the lists below
 *   name only what else a call returns. Every secret libbkv holds is wiped before it is
 *   freed, on every path.
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

/* A status with a human-readable message, e.g. "wrong password: 3 attempts left". The
 * caller owns it (usually on the stack); calls only write it, on failure. */
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

/* A short English name of status ("wrong password"); "unknown status" for a value not in
 * the enum. A static string: never NULL, never freed. */
BKV_API const char *bkv_status_name(bkv_status status);

/* The version of the library loaded, e.g. "0.1.0" (BKV_VERSION_STRING is the version of
 * the headers a program was built with). A static string: never NULL, never freed. */
BKV_API const char *bkv_version(void);

/* ---- The backup key ---- */

typedef struct bkv_key {
	uint8_t bytes[BKV_KEY_BYTES];
} bkv_key;

/* 32 bytes from the OS CSPRNG (libsodium) into *key. key: not NULL.
 * Returns BKV_OK, BKV_ERR_ARGUMENT (key NULL), BKV_ERR_INTERNAL (libsodium cannot start). */
BKV_API bkv_status bkv_key_generate(bkv_key *key);
/* 64 lowercase hex digits in 16 groups of 4 separated by spaces, NUL-terminated, into
 * text (text_len >= BKV_KEY_TEXT_BYTES). key, text: not NULL. The text is the key: wipe it
 * after use. Returns BKV_OK or BKV_ERR_ARGUMENT (NULL, or text_len too small). */
BKV_API bkv_status bkv_key_format(const bkv_key *key, char *text, size_t text_len);
/* Accepts upper and lower case, and spaces, dashes and line breaks anywhere. Anything
 * else fails with BKV_ERR_ARGUMENT and a message naming the 1-based position of the first
 * problem ("invalid character 'g' at position 12", or "invalid character 0x09 at
 * position 10" for unprintable bytes); a wrong number of digits is reported as such
 * ("expected 64 hex digits, found 63"). *key is zeroed on failure. text (text_len bytes,
 * need not be NUL-terminated) and key: not NULL (BKV_ERR_ARGUMENT). */
BKV_API bkv_status bkv_key_parse(const char *text, size_t text_len, bkv_key *key, bkv_error *error);
/* Zeroes *key in a way the compiler cannot drop. NULL: nothing. */
BKV_API void bkv_key_wipe(bkv_key *key);

/* ---- The vault client ---- */

typedef enum bkv_suite {
	BKV_SUITE_VAULT_PREFERENCE = 0, /* the first suite the vault lists */
	BKV_SUITE_P256_SHA256 = 1,
	BKV_SUITE_RISTRETTO255_SHA512 = 2,
} bkv_suite;

/* Borrowed by bkv_client_new for the call only: every string is copied or read there. */
typedef struct bkv_client_config {
	/* "https://host[:port][/path]", checked by libcurl's URL parser: http:// only when the
	 * host is a loopback address (127.0.0.0/8, [::1], localhost); no user name or
	 * password, query or fragment. Not NULL. */
	const char *vault_url;
	const char *ca_file; /* PEM CA bundle; NULL for the system's. Read at each call */
	/* PEM certificate whose public key the vault must present; NULL for none. Read by
	 * bkv_client_new. Without ca_file the pin is the whole trust: the chain and the host
	 * name are then not verified (a self-signed vault works), only the key. With ca_file
	 * both are checked. */
	const char *pinned_cert;
	long timeout_ms; /* per request; 0 for 30 s */
	bkv_suite suite; /* preference for registration */
	/* Argon2id parameters; all 0 (the default) takes the vault's published ones, which a
	 * registration refuses below libbkv's floor (RFC 9106's t=3, m=64 MiB, p=4, or as
	 * costly). Parameters set here are the application's own decision and are not held
	 * to the floor (tests use light ones); every recovery must use the same. */
	uint32_t argon2_iterations;
	uint32_t argon2_memory_kib;
	uint32_t argon2_parallelism;
} bkv_client_config;

typedef struct bkv_client bkv_client;

/* A client for one vault, into *client (NULL on failure); free it with bkv_client_free.
 * config, config->vault_url, client: not NULL. Makes no network call (the vault's
 * configuration is fetched by the first call that needs it, and kept). May be called
 * from any thread where libcurl's global init is thread-safe (libcurl >= 7.84 built with
 * CURL_VERSION_THREADSAFE, as Debian 12's is); elsewhere, make the first client before
 * starting threads.
 * Returns BKV_OK, BKV_ERR_ARGUMENT (the URL, the suite, or only some Argon2id parameters
 * set), BKV_ERR_TLS (pinned_cert cannot be read as a PEM certificate), BKV_ERR_NOMEM,
 * BKV_ERR_INTERNAL (libsodium or libcurl cannot start). */
BKV_API bkv_status bkv_client_new(const bkv_client_config *config, bkv_client **client,
                                  bkv_error *error);
/* Frees client and wipes what it held; NULL: nothing. No other call may be using it. */
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

/* For every call below: client and account_token (the bearer token, a JWT from the
 * integrator's auth service, NUL-terminated) are not NULL; a password is password_len
 * bytes (1 to 65535, any bytes; not NULL), borrowed and never copied. Out-parameters are
 * written on success only, except where said.
 *
 * bkv_register only creates: if the account already has a key, or the tombstone of a
 * destroyed one, it fails with BKV_ERR_ALREADY_REGISTERED and changes nothing. key: not
 * NULL. attempt_limit: 0 for the vault's default; above the vault's maximum is
 * BKV_ERR_ARGUMENT (from the vault).
 * Returns BKV_OK, BKV_ERR_ARGUMENT, BKV_ERR_ALREADY_REGISTERED, BKV_ERR_PROTOCOL (also:
 * the vault's Argon2id parameters are below libbkv's floor; nothing was sent then), the
 * transport statuses. */
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
 * key written down. Returns what bkv_register returns, and BKV_ERR_CONFLICT. */
BKV_API bkv_status bkv_register_replacing(bkv_client *client, const char *account_token,
                                          const char *password, size_t password_len,
                                          const bkv_key *key, uint32_t attempt_limit,
                                          uint64_t replaces_record_version,
                                          uint64_t *out_record_version, bkv_error *error);
/* Recovers the account's key into *out_key (not NULL; all zero on failure). out_info may be
 * NULL; if not, it is always written (also on failure: the attempts left after a wrong
 * password, destroyed for a destroyed key).
 * Returns BKV_OK, BKV_ERR_ARGUMENT, BKV_ERR_WRONG_PASSWORD (attempts left),
 * BKV_ERR_DESTROYED (the last attempt failed, or the key was destroyed earlier:
 * out_info->destroyed), BKV_ERR_NOT_REGISTERED (the vault holds nothing for the
 * account), BKV_ERR_CONFLICT (the key was registered again during the recovery: retry),
 * BKV_ERR_DATA_LOSS, BKV_ERR_PROTOCOL (also: the vault's release of the key does not
 * verify), the transport statuses. */
BKV_API bkv_status bkv_recover(bkv_client *client, const char *account_token, const char *password,
                               size_t password_len, bkv_key *out_key, bkv_recover_info *out_info,
                               bkv_error *error);
/* Recovers with the old password, then registers the same key under the new one in place
 * of exactly the record version it recovered, keeping that record's attempt limit.
 * BKV_ERR_CONFLICT (and the password is not changed) if the record was replaced, deleted
 * or destroyed in between. out_info: as for bkv_recover (may be NULL). Checks the
 * vault's Argon2id parameters against libbkv's floor before recovering (BKV_ERR_PROTOCOL,
 * no attempt used). Returns what bkv_recover and bkv_register_replacing return. */
BKV_API bkv_status bkv_change_password(bkv_client *client, const char *account_token,
                                       const char *old_password, size_t old_password_len,
                                       const char *new_password, size_t new_password_len,
                                       bkv_recover_info *out_info, bkv_error *error);
/* What the vault holds for the account, into *out (not NULL; zeroed on failure).
 * Returns BKV_OK, BKV_ERR_ARGUMENT, BKV_ERR_DATA_LOSS, BKV_ERR_PROTOCOL (also: the
 * answer contradicts itself), the transport statuses. A destroyed key is BKV_OK with
 * out->state BKV_RECORD_DESTROYED. */
BKV_API bkv_status bkv_status_get(bkv_client *client, const char *account_token,
                                  bkv_account_status *out, bkv_error *error);
/* Deletes the account's record, a destroyed key's tombstone included; a later
 * bkv_register starts again at record version 1. *deleted (may be NULL) says whether
 * there was one. Returns BKV_OK, BKV_ERR_ARGUMENT, the transport statuses. */
BKV_API bkv_status bkv_delete(bkv_client *client, const char *account_token, bool *deleted,
                              bkv_error *error);

/* ---- Backup files (docs/BACKUP-FORMAT.md) ---- */

#define BKV_BACKUP_CHUNK_BYTES 65536

/* Called every few chunks and at the end with the bytes read from `in` so far; total is
 * the caller's total_hint (0 when unknown), so passing the input's size makes done reach
 * it. */
typedef void (*bkv_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Streams in to out in constant memory (about 128 KiB). out is flushed, not closed or
 * synced; error is set only on failure. total_hint (0 if unknown) only feeds progress.
 * key, in, out: not NULL (BKV_ERR_ARGUMENT); progress may be NULL (then progress_arg is
 * unused). The streams stay the caller's; two calls may run at once on different streams.
 * Returns BKV_OK, BKV_ERR_ARGUMENT, BKV_ERR_IO, BKV_ERR_NOMEM, BKV_ERR_INTERNAL. */
BKV_API bkv_status bkv_backup_encrypt(const bkv_key *key, FILE *in, FILE *out, uint64_t total_hint,
                                      bkv_progress_fn progress, void *progress_arg,
                                      bkv_error *error);
/* Writes plaintext to out as chunks verify; on any error the output so far must be
 * discarded (the caller deletes it). Truncation, reordering, chunks from another file and
 * a wrong key each fail with their own status. Arguments as for bkv_backup_encrypt.
 * Returns BKV_OK, BKV_ERR_ARGUMENT, BKV_ERR_IO, BKV_ERR_FORMAT, BKV_ERR_TRUNCATED,
 * BKV_ERR_TAMPERED, BKV_ERR_WRONG_KEY, BKV_ERR_NOMEM, BKV_ERR_INTERNAL. */
BKV_API bkv_status bkv_backup_decrypt(const bkv_key *key, FILE *in, FILE *out, uint64_t total_hint,
                                      bkv_progress_fn progress, void *progress_arg,
                                      bkv_error *error);

#ifdef __cplusplus
}
#endif

#endif
