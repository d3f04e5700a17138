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
/* A sealed AKE private key (token_opaque.c): 0x02 || seal version (4) || box(32 bytes);
 * before seal schemes: seal version (4) || iv (12) || GCM ciphertext (32) || tag (16). */
#define AKE_SEALED_KEY_MAX    (1 + 4 + 32 + BKV_TOKEN_BOX_OVERHEAD_MAX)
#define AKE_SEALED_KEY_LEGACY (4 + BKV_TOKEN_IV_BYTES + 32 + BKV_TOKEN_TAG_BYTES)

typedef struct token_suite_keys {
	bkv_token *token;
	opaque_suite_id suite;
	bool loaded;
	CK_OBJECT_HANDLE oprf_seed;   /* session copy of bkv-oprf-seed-<suite> */
	CK_OBJECT_HANDLE ake_private; /* token ECDH: session copy of the private key */
	uint8_t ake_public[P256_UNCOMPRESSED_BYTES]; /* token ECDH: uncompressed public key */
	uint8_t *sealed_private_key; /* sealed AKE key: Nsk bytes of locked, non-dumpable memory */
	opaque_server_keys keys;
} token_suite_keys;

/* An AES key and, under BKV_TOKEN_SCHEME_CBC_HMAC, its HMAC key (else CK_INVALID_HANDLE). */
typedef struct token_seal_key {
	uint32_t version;
	CK_OBJECT_HANDLE handle; /* session copy */
	CK_OBJECT_HANDLE mac;    /* session copy */
} token_seal_key;

/* A loaded and initialized PKCS#11 module, shared by the bkv_tokens open on it
 * (token_module.c). */
typedef struct token_module token_module;

/* dlopen + C_GetFunctionList + C_Initialize (OS locking, pReserved = init_args or NULL), or
 * another reference to the module if this process has it loaded already. On failure a
 * one-line reason in why: dlerror()'s text, or the step and its CKR name. */
bkv_token_err token_module_open(const char *path, const char *init_args, token_module **module,
                                char *why, size_t why_len);
CK_FUNCTION_LIST *token_module_functions(const token_module *module);
/* Drops the reference; the last one calls C_Finalize (if this process initialized the module)
 * and dlclose. */
void token_module_close(token_module *module);

struct bkv_token {
	token_module *module;
	CK_FUNCTION_LIST *fn; /* token_module_functions(module) */
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE session;
	bool session_open;
	char label[BKV_TOKEN_LABEL_MAX + 1];
	char *pin; /* sodium_malloc: locked, guarded, wiped on free */
	size_t pin_len;
	token_seal_key seal[TOKEN_MAX_SEAL_KEYS];
	size_t nseal;
	token_seal_key ticket;
	bool ticket_loaded;
	bkv_token_p256_ake p256_ake;
	bkv_token_key_store key_store; /* all NULL: sealed AKE keys are data objects */
	CK_ULONG gcm_iv_len;           /* 12, or 16 once the token asked for a 16-byte IV buffer */
	bool gcm_iv_chosen;            /* the token wrote back an IV of its own */
	bool copy_refused;             /* C_CopyObject refused: keys are used as token objects */
	CK_OBJECT_HANDLE state_mac;    /* session copy of bkv-state-mac-1 */
	bool state_mac_loaded;
	token_suite_keys suites[TOKEN_NUM_SUITES];
	opaque_suite_id loaded_suites[TOKEN_NUM_SUITES];
	size_t nloaded;
	bkv_token_err last_error;
	CK_RV last_rv;       /* of the last failed PKCS#11 call */
	char last_call[160]; /* what failed last: function, mechanism and key label */
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

/* token_rv(t, rv), remembering what was called (printf-style) if it failed. */
bkv_token_err token_call(bkv_token *t, CK_RV rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
 * the newest loaded version. ARGUMENT if it is not newer, KEY_MISSING if the token has no
 * such key, NOMEM if the session holds TOKEN_MAX_SEAL_KEYS already. */
bkv_token_err token_load_seal_version(bkv_token *t, uint32_t version);

/* The versions of every bkv-seal-N secret key in the token, with token-object handles
 * (mac: the token object bkv-seal-mac-N, or CK_INVALID_HANDLE). */
bkv_token_err token_list_seal_keys(bkv_token *t, token_seal_key *keys, size_t max, size_t *count);
/* The HMAC key that pairs with an AES key under CBC_HMAC: "bkv-seal-mac-N" for
 * "bkv-seal-N", "bkv-ticket-mac-1" for "bkv-ticket-1". */
void token_mac_label(char *out, size_t out_len, const char *aes_label);
/* True if the token can seal with CKM_AES_GCM (mechanism listed with encrypt and decrypt). */
bool token_has_gcm(bkv_token *t);
/* True if the token lists mechanism type with every flag in need. */
bool token_mechanism_listed(bkv_token *t, CK_MECHANISM_TYPE type, CK_FLAGS need);

/* Sealed AKE private keys (token_opaque.c): sealed under the newest seal key, bound to
 * the suite. *sealed_len receives the length (at most AKE_SEALED_KEY_MAX). */
bkv_token_err token_seal_ake_key(bkv_token *t, opaque_suite_id suite, const uint8_t private_key[32],
                                 uint8_t sealed[AKE_SEALED_KEY_MAX], size_t *sealed_len);
bkv_token_err token_unseal_ake_key(bkv_token *t, opaque_suite_id suite, const uint8_t *sealed,
                                   size_t sealed_len, uint8_t private_key[32]);
/* The sealed AKE key bkv-ake-<suite> (KEY_MISSING if there is none): a data object's value
 * (*h its handle) or, with a key store, the store's blob (*h CK_INVALID_HANDLE). */
bkv_token_err token_read_sealed_ake_key(bkv_token *t, opaque_suite_id suite, CK_OBJECT_HANDLE *h,
                                        uint8_t sealed[AKE_SEALED_KEY_MAX + 1], size_t *len);
/* The seal-key version named by a sealed AKE key, or 0. */
uint32_t token_ake_key_seal_version(const uint8_t *sealed, size_t sealed_len);
/* Whether suite's AKE key is a sealed data object (ristretto255 always; P-256 when
 * p256_ake = sealed) rather than a token key pair. */
bool token_ake_sealed(const bkv_token *t, opaque_suite_id suite);
/* Prepares suites[i] after the handles are loaded: wires opaque_server_keys. */
bkv_token_err token_suite_keys_load(bkv_token *t, token_suite_keys *sk);
void token_suite_keys_clear(token_suite_keys *sk);

/* P-256 ECDH through CKM_ECDH1_DERIVE (token_ecdh.c). */
bkv_token_err token_ecdh_x(bkv_token *t, CK_OBJECT_HANDLE private_key,
                           const uint8_t peer_uncompressed[P256_UNCOMPRESSED_BYTES], uint8_t x[32]);

#endif
