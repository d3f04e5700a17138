/*
 * token_internal.h - the bkv_token structure and helpers shared by the token's source
 * files. Nothing outside vault/token/ includes this.
 */
#ifndef BKV_TOKEN_INTERNAL_H
#define BKV_TOKEN_INTERNAL_H

#include <p11-kit/pkcs11.h>

#include "token.h"

#define TOKEN_MAX_SEAL_KEYS     64
#define TOKEN_NUM_SUITES        2
#define P256_UNCOMPRESSED_BYTES 65
#define R255_SEALED_KEY_BYTES   (4 + BKV_TOKEN_IV_BYTES + 32 + BKV_TOKEN_TAG_BYTES)

typedef struct token_suite_keys {
	bkv_token *token;
	opaque_suite_id suite;
	bool loaded;
	CK_OBJECT_HANDLE oprf_seed;                  /* session copy of bkv-oprf-seed-<suite> */
	CK_OBJECT_HANDLE ake_private;                /* P-256: session copy of the private key */
	uint8_t ake_public[P256_UNCOMPRESSED_BYTES]; /* P-256: uncompressed public key */
	uint8_t *r255_private_key;                   /* ristretto255: locked, non-dumpable memory */
	opaque_server_keys keys;
} token_suite_keys;

typedef struct token_seal_key {
	uint32_t version;
	CK_OBJECT_HANDLE handle; /* session copy */
} token_seal_key;

struct bkv_token {
	CK_FUNCTION_LIST *fn;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE session;
	bool session_open;
	char label[BKV_TOKEN_LABEL_MAX + 1];
	char *pin; /* sodium_malloc: locked, guarded, wiped on free */
	size_t pin_len;
	token_seal_key seal[TOKEN_MAX_SEAL_KEYS];
	size_t nseal;
	CK_OBJECT_HANDLE ticket;
	bool ticket_loaded;
	CK_OBJECT_HANDLE state_mac; /* session copy of bkv-state-mac-1 */
	bool state_mac_loaded;
	token_suite_keys suites[TOKEN_NUM_SUITES];
	opaque_suite_id loaded_suites[TOKEN_NUM_SUITES];
	size_t nloaded;
	bkv_token_err last_error;
	CK_RV last_rv; /* of the last failed PKCS#11 call */
	bkv_token_observer_fn observer;
	void *observer_arg;
	uint8_t *scratch; /* TOKEN_SCRATCH_BYTES of locked memory for decryption */
};

#define TOKEN_SCRATCH_BYTES 4096

/* Monotonic microseconds, and reporting one operation to the observer. */
uint64_t token_now_us(void);
void token_observe(bkv_token *t, bkv_token_op op, uint64_t started_us);

/* Map a PKCS#11 return value to a bkv_token_err (and remember it as last_error). */
bkv_token_err token_rv(bkv_token *t, CK_RV rv);

/* Label helpers. */
const char *token_suite_label_part(opaque_suite_id suite); /* "p256-sha256", ... */
void token_label(char *out, size_t out_len, const char *prefix, opaque_suite_id suite);

/* Finds exactly one token object of class with label; BKV_TOKEN_ERR_KEY_MISSING if none. */
bkv_token_err token_find(bkv_token *t, CK_OBJECT_CLASS cls, const char *label,
                         CK_OBJECT_HANDLE *handle);
/* Session copy of a token object (CKA_TOKEN = FALSE); the object itself on a token that
 * cannot copy it. */
bkv_token_err token_session_copy(bkv_token *t, CK_OBJECT_HANDLE obj, CK_OBJECT_HANDLE *copy);
/* Destroys h if it is a session copy; never a token object. */
void token_drop_session_copy(bkv_token *t, CK_OBJECT_HANDLE h);
/* Reads a non-sensitive attribute into buf; *len in: capacity, out: length. */
bkv_token_err token_get_attribute(bkv_token *t, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                                  void *buf, size_t *len);

/* Loads bkv-seal-<version>, newer than every loaded version, as a session copy: it becomes
 * the newest loaded version. KEY_MISSING if the token has no such key, NOMEM if the
 * session holds TOKEN_MAX_SEAL_KEYS already. */
bkv_token_err token_load_seal_version(bkv_token *t, uint32_t version, CK_OBJECT_HANDLE *handle);

/* The versions of every bkv-seal-N secret key in the token, with token-object handles. */
bkv_token_err token_list_seal_keys(bkv_token *t, token_seal_key *keys, size_t max, size_t *count);

/* ristretto255 AKE key sealing (token_opaque.c). */
bkv_token_err token_seal_r255_key(bkv_token *t, const uint8_t private_key[32],
                                  uint8_t sealed[R255_SEALED_KEY_BYTES]);
bkv_token_err token_unseal_r255_key(bkv_token *t, const uint8_t *sealed, size_t sealed_len,
                                    uint8_t private_key[32]);
/* Prepares suites[i] after the handles are loaded: wires opaque_server_keys. */
bkv_token_err token_suite_keys_load(bkv_token *t, token_suite_keys *sk);
void token_suite_keys_clear(token_suite_keys *sk);

/* P-256 ECDH through CKM_ECDH1_DERIVE (token_ecdh.c). */
bkv_token_err token_ecdh_x(bkv_token *t, CK_OBJECT_HANDLE private_key,
                           const uint8_t peer_uncompressed[P256_UNCOMPRESSED_BYTES], uint8_t x[32]);

#endif
