/*
 * handlers.h - the vault's RPCs as plain functions: decoded protobuf request in, protobuf
 * response or a status out. No HTTP here and no PKCS#11: the handlers reach the token
 * only through bkv_token's operations and storage only through bkv_storage.
 *
 * The recovery invariants live in recover.c:
 *   - an attempt is committed durably before KE2 leaves RecoverStart;
 *   - once attempts_used has reached the limit no KE2 is computed and the record is
 *     destroyed (a tombstone stays);
 *   - a request that failed in the token or the database consumes no attempt;
 *   - a ticket is finished at most once.
 * Every registration evaluates the OPRF under a fresh key (register.c), and every state
 * that is read is first verified with the token's state MAC (record_state.c).
 */
#ifndef BKV_HANDLERS_H
#define BKV_HANDLERS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bkv/v1/vault.pb-c.h"
#include "opaque/opaque.h"
#include "record_seal.h"
#include "storage.h"
#include "token.h"

/* Connect / gRPC status codes the vault uses. */
typedef enum bkv_code {
	BKV_CODE_OK = 0,
	BKV_CODE_INVALID_ARGUMENT,
	BKV_CODE_UNAUTHENTICATED,
	BKV_CODE_PERMISSION_DENIED,
	BKV_CODE_NOT_FOUND,
	BKV_CODE_FAILED_PRECONDITION,
	BKV_CODE_RESOURCE_EXHAUSTED,
	BKV_CODE_UNAVAILABLE,
	BKV_CODE_INTERNAL,
	BKV_CODE_UNIMPLEMENTED,
	BKV_CODE_ALREADY_EXISTS,
	BKV_CODE_ABORTED,
	BKV_CODE_DATA_LOSS,
} bkv_code;
#define BKV_CODE_COUNT 13

const char *bkv_code_name(bkv_code code); /* "invalid_argument", ... */

typedef struct bkvd_status {
	bkv_code code;
	const char *message;   /* static text, safe to show to clients and to log */
	bool has_attempt_info; /* attach bkv.v1.AttemptInfo */
	uint32_t attempts_remaining;
	uint32_t attempt_limit;
} bkvd_status;

#define BKV_WRAPPED_KEY_MAX              256
#define BKV_TICKET_LIFETIME_DEFAULT      60
#define BKV_REGISTRATION_TICKET_LIFETIME 600
/* A ticket: a box (token.h) under the ticket key of (format, suite, record_version,
 * guess_seq, expires_at, registration_id, expected_client_mac, session_key) (ticket.h) */
#define BKV_TICKET_PLAINTEXT_MAX                                                                   \
	(1 + 1 + 8 + 8 + 8 + 1 + BKV_REGISTRATION_ID_BYTES + 2 * OPAQUE_MAX_HASH_BYTES)
#define BKV_TICKET_MAX_BYTES (BKV_TICKET_PLAINTEXT_MAX + BKV_TOKEN_BOX_OVERHEAD_MAX)
/* A registration ticket: a box of (format, suite, registration_id, expires_at) */
#define BKV_REGISTRATION_TICKET_PLAINTEXT (1 + 1 + BKV_REGISTRATION_ID_BYTES + 8)
#define BKV_REGISTRATION_TICKET_BYTES                                                              \
	(BKV_REGISTRATION_TICKET_PLAINTEXT + BKV_TOKEN_BOX_OVERHEAD_MAX)
/* sealed_key = nonce (12) || AES-256-GCM(wrapped_key) || tag (16) */
#define BKV_SEALED_KEY_MAX_BYTES (12 + BKV_WRAPPED_KEY_MAX + 16)

typedef struct bkv_vault_settings {
	opaque_suite_id suites[2]; /* enabled, preferred first */
	size_t nsuites;
	const uint8_t *context;
	size_t context_len;
	opaque_ksf ksf; /* published for clients */
	uint32_t default_attempt_limit;
	uint32_t max_attempt_limit;
	uint32_t ticket_lifetime_s;
	FILE *audit; /* JSON lines; NULL for none */
	/* Optional: told of every audit event ("attempt_used", "destroyed", ...). */
	void (*event_hook)(void *arg, const char *event);
	void *event_arg;
	uint8_t log_key[32]; /* keys the account-id hash in logs */
} bkv_vault_settings;

/* One per worker process: its token session and storage connection. */
typedef struct bkv_vault {
	bkv_vault_settings settings;
	bkv_token *token;
	bkv_storage *storage;
	int64_t seal_keys_checked_ms; /* monotonic; when register.c last looked for a new key */
} bkv_vault;

/* Buffers the responses point into; live until the response is encoded. */
typedef struct bkv_reply_buffers {
	uint8_t registration_response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	uint8_t ticket[BKV_TICKET_MAX_BYTES];
	uint8_t registration_ticket[BKV_REGISTRATION_TICKET_BYTES];
	uint8_t sealed_key[BKV_SEALED_KEY_MAX_BYTES];
	Bkv__V1__Suite suites[2];
	Bkv__V1__ServerKey server_keys[2];
	Bkv__V1__ServerKey *server_key_ptrs[2];
	Bkv__V1__KsfParams ksf;
} bkv_reply_buffers;

/* The authenticated caller: the JWT's sub, 1 to BKV_ACCOUNT_ID_MAX (256) bytes. */
typedef struct bkv_account {
	const uint8_t *id;
	size_t len;
} bkv_account;

/* INVALID_ARGUMENT unless the account id is 1 to BKV_ACCOUNT_ID_MAX bytes. */
bool bkv_account_valid(bkv_account account);

bkvd_status bkvd_get_config(bkv_vault *v, Bkv__V1__GetConfigResponse *resp, bkv_reply_buffers *buf);
bkvd_status bkvd_register_start(bkv_vault *v, bkv_account account,
                                const Bkv__V1__RegisterStartRequest *req,
                                Bkv__V1__RegisterStartResponse *resp, bkv_reply_buffers *buf);
bkvd_status bkvd_register_finish(bkv_vault *v, bkv_account account,
                                 const Bkv__V1__RegisterFinishRequest *req,
                                 Bkv__V1__RegisterFinishResponse *resp);
bkvd_status bkvd_recover_start(bkv_vault *v, bkv_account account,
                               const Bkv__V1__RecoverStartRequest *req,
                               Bkv__V1__RecoverStartResponse *resp, bkv_reply_buffers *buf);
bkvd_status bkvd_recover_finish(bkv_vault *v, bkv_account account,
                                const Bkv__V1__RecoverFinishRequest *req,
                                Bkv__V1__RecoverFinishResponse *resp, bkv_reply_buffers *buf);
bkvd_status bkvd_get_status(bkv_vault *v, bkv_account account, Bkv__V1__GetStatusResponse *resp);
bkvd_status bkvd_delete(bkv_vault *v, bkv_account account, Bkv__V1__DeleteResponse *resp);

/* Whether the worker's token session still answers; and reopening it (with its keys)
 * after a failure. The transport calls these to back off and recover, without touching
 * the token itself. */
bool bkv_vault_token_healthy(bkv_vault *v);
bool bkv_vault_reopen_token(bkv_vault *v);

/* ---- Shared by the handler files ---- */

bkvd_status bkvd_status_ok(void);
bkvd_status bkvd_status_error(bkv_code code, const char *message);
/* UNAVAILABLE after COMMIT_RETRIES rounds lost to concurrent writers of one record. */
bkvd_status bkvd_status_busy(void);
/* Maps a token failure: device trouble is UNAVAILABLE, bad data INTERNAL. */
/* The client's status for a token error. Every token error but a record that fails to
 * open (reported as data loss by its caller) is also logged on stderr with what failed:
 * the PKCS#11 function, mechanism, key label and CKR name (never data or keys). */
bkvd_status bkvd_status_from_token(bkv_vault *v, bkv_token_err err);
bkvd_status bkvd_status_from_storage(bkv_storage_err err);
/* After OPAQUE_ERR_SERVER_KEYS: the token's reason, never OK. */
bkvd_status bkvd_status_from_server_keys(bkv_vault *v);
/* The suite, if the request names an enabled one. */
bool bkv_suite_enabled(const bkv_vault *v, Bkv__V1__Suite suite, opaque_suite_id *out);
opaque_config bkv_opaque_config(const bkv_vault *v, opaque_suite_id suite);

/* Writes an audit event (JSON line) with the keyed hash of the account id. */
void bkv_audit(const bkv_vault *v, const char *event, bkv_account account, const char *extra_key,
               uint64_t extra_value);
/* The same with "reason": a static text without quotes or backslashes. */
void bkv_audit_reason(const bkv_vault *v, const char *event, bkv_account account,
                      const char *reason);

/* ---- Records (record_state.c) ---- */

/* bkv_record.state */
#define BKV_RECORD_LIVE      1
#define BKV_RECORD_DESTROYED 2 /* a tombstone: the sealed key material is gone */

/* Reads the account's record and verifies it: the token's state MAC (constant time), then
 * every value in range. OK; NOT_FOUND; DATA_LOSS for a row changed outside bkvd (audited);
 * or the token's or database's failure. */
bkvd_status bkv_load_record(bkv_vault *v, bkv_account account, bkv_record *r);
/* Every value a handler relies on is in range for what bkvd itself ever writes. */
bool bkv_record_in_range(const bkv_record *r);
/* Sets r->mac for r's state. */
bkv_token_err bkv_record_mac(bkv_token *token, bkv_record *r);
/* MACs next and writes it over current (compare-and-set on current's MAC), or creates it
 * when current is NULL. *stale (with ABORTED) if the row changed since current was read,
 * or one was created meanwhile, or next's blob is under a seal-key version below the seal
 * floor (storage.h): the caller reads the row again, and seals again if it seals. */
bkvd_status bkv_update_record(bkv_vault *v, bkv_record *next, const bkv_record *current,
                              bool *stale);
/* Around a handler that writes a record (RegisterFinish, RecoverStart, RecoverFinish,
 * Delete): its write is announced before it computes, so that a committer may hold a
 * commit for it (bkv_storage_expect_write), and the announcement ends with the handler if
 * it wrote nothing. */
void bkvd_write_expected(bkv_vault *v);
void bkvd_write_settled(bkv_vault *v);
/* DATA_LOSS, audited with why. */
bkvd_status bkvd_status_data_loss(bkv_vault *v, bkv_account account, const char *why);

/* The OPRF credential identifier: account id || registration id (RFC 9807 lets the server
 * choose it; a fresh registration id per registration gives each a fresh OPRF key). */
#define BKV_CREDENTIAL_ID_MAX (BKV_ACCOUNT_ID_MAX + BKV_REGISTRATION_ID_BYTES)
void bkv_credential_identifier(bkv_account account, const uint8_t *registration_id,
                               size_t registration_id_len, uint8_t out[BKV_CREDENTIAL_ID_MAX],
                               size_t *out_len);
/* hex(BLAKE2b-128 keyed with log_key) of the account id, NUL-terminated (33 bytes). */
void bkv_account_hash(const bkv_vault *v, bkv_account account, char out[33]);

#endif
