/*
 * token.h - the vault's custody of its keys in a PKCS#11 token (an HSM in production,
 * SoftHSM2 in tests), loaded in-process through p11-kit.
 *
 * This is the only code in the vault that calls PKCS#11. Everything above it sees
 * operations, never key material:
 *   - AES-256-GCM seal/unseal under a versioned record-sealing key or the ticket key;
 *   - the OPAQUE server operations (opaque_server_keys): HKDF-Expand of oprf_seed as HMAC
 *     inside the token, and the AKE Diffie-Hellman (CKM_ECDH1_DERIVE on P-256; for
 *     ristretto255, which PKCS#11 lacks, a software key kept sealed by the token and
 *     unsealed only into locked, non-dumpable memory).
 *
 * One bkv_token is one PKCS#11 session: use one per worker process (SoftHSM serializes
 * threads inside a process). A bkv_token is not thread-safe.
 *
 * Key labels (one set per token):
 *   bkv-seal-N                 AES-256 record-sealing key, version N >= 1
 *   bkv-ticket-1               AES-256 ticket key (recovery and registration tickets)
 *   bkv-state-mac-1            generic secret of 32 bytes, HMAC-SHA256 only: vouches for
 *                              every record's mutable state (attempt counters)
 *   bkv-oprf-seed-<suite>      generic secret of Nh bytes, HMAC only
 *   bkv-ake-p256-sha256        EC P-256 key pair, private key derive-only
 *   bkv-ake-ristretto255-sha512  data object: the ristretto255 private key sealed under
 *                              a record-sealing key
 */
#ifndef BKV_TOKEN_H
#define BKV_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "opaque/opaque.h"

typedef enum bkv_token_err {
	BKV_TOKEN_OK = 0,
	BKV_TOKEN_ERR_ARGUMENT,    /* bad argument or configuration */
	BKV_TOKEN_ERR_MODULE,      /* the PKCS#11 module cannot be loaded or initialized */
	BKV_TOKEN_ERR_NO_TOKEN,    /* no token with the configured label */
	BKV_TOKEN_ERR_PIN,         /* the token rejected the PIN */
	BKV_TOKEN_ERR_KEY_MISSING, /* a required key is not in the token: run `bkvd init` */
	BKV_TOKEN_ERR_KEY_IN_USE,  /* refused: the key is still needed */
	BKV_TOKEN_ERR_AUTH,        /* sealed data failed authentication (tampered or moved) */
	BKV_TOKEN_ERR_DEVICE,      /* the token failed during an operation; retry later */
	BKV_TOKEN_ERR_NOMEM,
} bkv_token_err;

const char *bkv_token_strerror(bkv_token_err err);

#define BKV_TOKEN_LABEL_MAX 32
#define BKV_TOKEN_PIN_MAX   256
#define BKV_TOKEN_IV_BYTES  12
#define BKV_TOKEN_TAG_BYTES 16

typedef struct bkv_token_config {
	const char *module_path; /* e.g. /usr/lib/softhsm/libsofthsm2.so */
	const char *token_label;
	const char *pin; /* never logged; copied into locked memory */
	size_t pin_len;
} bkv_token_config;

typedef struct bkv_token bkv_token;

/* Loads the module, finds the token by label, opens a session and logs in. On failure
 * writes a one-line reason (never the PIN) to why. */
bkv_token_err bkv_token_open(const bkv_token_config *config, bkv_token **token, char *why,
                             size_t why_len);
/* Logs out, closes the session, finalizes the module and wipes every secret. */
void bkv_token_close(bkv_token *token);

/* ---- The key ceremony (bkvd init) ---- */

/* Called once per key with what happened to it. public_key is set for AKE keys. */
typedef void (*bkv_token_report_fn)(void *arg, const char *label, const char *what,
                                    const uint8_t *public_key, size_t public_key_len);

/* Creates every missing key for the given suites. Existing keys are kept unless replace is
 * true, in which case they are destroyed and created anew (all sealed data is then lost). */
bkv_token_err bkv_token_create_keys(bkv_token *token, const opaque_suite_id *suites, size_t nsuites,
                                    bool replace, bkv_token_report_fn report, void *report_arg);

/* ---- Service ---- */

/* Finds the keys for the given suites and makes session copies of them (sensitive and
 * non-extractable like the originals: 2-3x faster than token objects). */
bkv_token_err bkv_token_load_keys(bkv_token *token, const opaque_suite_id *suites, size_t nsuites);

/* The OPAQUE server operations for a loaded suite, or NULL. Their failures surface as
 * OPAQUE_ERR_SERVER_KEYS; bkv_token_last_error then says why. */
const opaque_server_keys *bkv_token_server_keys(bkv_token *token, opaque_suite_id suite);
bkv_token_err bkv_token_last_error(const bkv_token *token);

/* BKV_TOKEN_OK if the session still answers and is logged in, else BKV_TOKEN_ERR_DEVICE. */
bkv_token_err bkv_token_check(bkv_token *token);

/* Closes and reopens the session, logs in again and reloads the keys of the last
 * bkv_token_load_keys. Used after BKV_TOKEN_ERR_DEVICE, with backoff by the caller. */
bkv_token_err bkv_token_reopen(bkv_token *token);

/* Optional: called after each timed token operation, for metrics. */
typedef enum bkv_token_op {
	BKV_TOKEN_OP_ENCRYPT = 0,
	BKV_TOKEN_OP_DECRYPT = 1,
	BKV_TOKEN_OP_HMAC = 2,
	BKV_TOKEN_OP_ECDH = 3,
} bkv_token_op;
typedef void (*bkv_token_observer_fn)(void *arg, bkv_token_op op, uint64_t micros);
void bkv_token_set_observer(bkv_token *token, bkv_token_observer_fn fn, void *arg);

/* ---- AES-256-GCM in the token ---- */

typedef enum bkv_token_aead_key {
	BKV_TOKEN_KEY_SEAL = 1,   /* bkv-seal-<version> */
	BKV_TOKEN_KEY_TICKET = 2, /* bkv-ticket-1; version must be 1 */
} bkv_token_aead_key;

/* The newest loaded record-sealing key version (0 if none). Decrypting under a newer
 * version found in the token loads it, and it becomes the newest; so does
 * bkv_token_refresh_seal_keys. */
uint32_t bkv_token_seal_version(const bkv_token *token);

/* out = ciphertext || tag; out_len must be plaintext_len + BKV_TOKEN_TAG_BYTES.
 * iv in: a fresh random IV; out: the IV the token actually used. Tokens that choose GCM
 * IVs themselves (FIPS-mode HSMs) write theirs back; the caller must store iv after the
 * call, never its own copy from before it. */
bkv_token_err bkv_token_encrypt(bkv_token *token, bkv_token_aead_key key, uint32_t version,
                                uint8_t iv[BKV_TOKEN_IV_BYTES], const uint8_t *aad, size_t aad_len,
                                const uint8_t *plaintext, size_t plaintext_len, uint8_t *out,
                                size_t out_len);
/* plaintext_len must be in_len - BKV_TOKEN_TAG_BYTES. BKV_TOKEN_ERR_AUTH if the tag or AAD
 * does not match, BKV_TOKEN_ERR_KEY_MISSING for an unknown version. */
bkv_token_err bkv_token_decrypt(bkv_token *token, bkv_token_aead_key key, uint32_t version,
                                const uint8_t iv[BKV_TOKEN_IV_BYTES], const uint8_t *aad,
                                size_t aad_len, const uint8_t *in, size_t in_len,
                                uint8_t *plaintext, size_t plaintext_len);

/* After bkv_token_load_keys: one real round trip of every operation the loaded keys must
 * do (token_preflight.c). On failure why names the key, the PKCS#11 functions and
 * mechanism, and the CKR name; bkvd refuses to start or report ready. */
bkv_token_err bkv_token_preflight(bkv_token *token, char *why, size_t why_len);
/* "CKR_MECHANISM_INVALID", ... for a CK_RV. */
const char *bkv_token_ckr_name(unsigned long rv);
/* The CK_RV of the token's last failed PKCS#11 call (0 if none). */
unsigned long bkv_token_last_rv(const bkv_token *token);

/* ---- The record-state MAC ---- */

#define BKV_TOKEN_STATE_MAC_LABEL "bkv-state-mac-1"
#define BKV_TOKEN_STATE_MAC_BYTES 32

/* HMAC-SHA256(bkv-state-mac-1, data) computed inside the token. */
bkv_token_err bkv_token_state_mac(bkv_token *token, const uint8_t *data, size_t data_len,
                                  uint8_t mac[BKV_TOKEN_STATE_MAC_BYTES]);

/* ---- Seal-key rotation ---- */

/* Creates bkv-seal-<newest+1> in the token; *version receives it. A serving session
 * seals with it from its next bkv_token_refresh_seal_keys. */
bkv_token_err bkv_token_rotate_seal_key(bkv_token *token, uint32_t *version);
/* After bkv_token_load_keys: loads every seal key newer than the newest loaded one
 * (bkv-seal-<newest+1>, <newest+2>, ... until one is missing), so that
 * bkv_token_seal_version names the newest version in the token. One object lookup by
 * label when there is nothing new. Versions loaded before stay loaded, even once deleted
 * from the token: records under them keep opening, and the seal floor (storage.h) is what
 * keeps anything new from being committed under them. */
bkv_token_err bkv_token_refresh_seal_keys(bkv_token *token);
/* Lists the seal-key versions present in the token, ascending. */
bkv_token_err bkv_token_seal_versions(bkv_token *token, uint32_t *versions, size_t max,
                                      size_t *count);
/* Re-seals the ristretto255 AKE key's data object under the newest loaded seal key if an
 * older one seals it. *resealed says whether anything changed. */
bkv_token_err bkv_token_reseal_ake_key(bkv_token *token, bool *resealed);

/* Destroys bkv-seal-<version>. The caller must have checked that no record uses it; the
 * token refuses the newest version and the one sealing the ristretto255 AKE key. */
bkv_token_err bkv_token_delete_seal_key(bkv_token *token, uint32_t version);

#endif
