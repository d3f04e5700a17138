/*
 * opaque.h - OPAQUE-3DH (RFC 9807) over the RFC 9497 OPRF, for two configurations:
 *
 *   OPAQUE_SUITE_P256_SHA256          OPRF P256-SHA256, 3DH on P-256, SHA-256 everywhere
 *   OPAQUE_SUITE_RISTRETTO255_SHA512  OPRF ristretto255-SHA512, 3DH on ristretto255, SHA-512
 *
 * Every message is the raw RFC 9807 encoding, so any conforming third-party client
 * interoperates byte for byte.
 *
 * Conventions (read these once):
 *   - Every buffer argument has an explicit length. Inputs whose length differs from the
 *     suite's size fail with OPAQUE_ERR_LENGTH; outputs whose length differs fail with
 *     OPAQUE_ERR_BUFFER. opaque_suite_sizes() gives every size; OPAQUE_MAX_* bound them all.
 *   - Nothing allocates on the caller's behalf beyond what OpenSSL needs internally.
 *   - There is no global mutable state; every function is safe to call from any thread.
 *   - Every state struct and every output secret is wiped on every error path. State
 *     structs are wiped by the *_finish functions whatever their result.
 *   - Randomness comes from the OS CSPRNG (libsodium randombytes). There is no way to
 *     inject it through this header; the vector tests use an internal interface.
 */
#ifndef OPAQUE_OPAQUE_H
#define OPAQUE_OPAQUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Values match bkv.v1.Suite in proto/bkv/v1/vault.proto. */
typedef enum opaque_suite_id {
	OPAQUE_SUITE_P256_SHA256 = 1,
	OPAQUE_SUITE_RISTRETTO255_SHA512 = 2,
} opaque_suite_id;

typedef enum opaque_err {
	OPAQUE_OK = 0,
	OPAQUE_ERR_ARGUMENT,             /* NULL pointer, unknown suite, bad parameter */
	OPAQUE_ERR_BUFFER,               /* output buffer length is not the suite's size */
	OPAQUE_ERR_LENGTH,               /* input message length is not the suite's size */
	OPAQUE_ERR_ELEMENT_IDENTITY,     /* a group element is the identity */
	OPAQUE_ERR_ELEMENT_NOT_ON_CURVE, /* a group element does not decode to a curve point */
	OPAQUE_ERR_ELEMENT_NONCANONICAL, /* a group element's encoding is not canonical */
	OPAQUE_ERR_SCALAR,               /* a scalar is zero or not reduced */
	OPAQUE_ERR_INVALID_INPUT,        /* RFC 9497 InvalidInputError: input hashes to identity */
	OPAQUE_ERR_DERIVE_KEY_PAIR,      /* RFC 9497 DeriveKeyPairError */
	OPAQUE_ERR_ENVELOPE_RECOVERY,    /* client: wrong password or corrupted record */
	OPAQUE_ERR_SERVER_AUTH,          /* client: KE2's server_mac does not verify */
	OPAQUE_ERR_CLIENT_AUTH,          /* server: KE3's client_mac does not verify */
	OPAQUE_ERR_KSF,                  /* the key-stretching function failed (e.g. memory) */
	OPAQUE_ERR_SERVER_KEYS,          /* a pluggable server-key operation failed */
	OPAQUE_ERR_CRYPTO,               /* an underlying library call failed */
} opaque_err;

/* A static, human-readable message for err. Never NULL. */
const char *opaque_strerror(opaque_err err);

/* Size bounds across both suites. Nn and Nseed are 32 for both. */
#define OPAQUE_NONCE_BYTES                     32
#define OPAQUE_SEED_BYTES                      32
#define OPAQUE_MAX_HASH_BYTES                  64 /* Nh = Nm = Nx */
#define OPAQUE_MAX_ELEMENT_BYTES               33 /* Noe = Npk */
#define OPAQUE_MAX_SCALAR_BYTES                32 /* Ns = Nsk */
#define OPAQUE_OPRF_KEY_SEED_BYTES             32 /* Nok */
#define OPAQUE_MAX_REGISTRATION_REQUEST_BYTES  33
#define OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES 66
#define OPAQUE_MAX_REGISTRATION_RECORD_BYTES   192
#define OPAQUE_MAX_KE1_BYTES                   98
#define OPAQUE_MAX_KE2_BYTES                   320
#define OPAQUE_MAX_KE3_BYTES                   64
/* Bounds on caller-chosen strings (each is length-prefixed with two bytes on the wire). */
#define OPAQUE_MAX_CREDENTIAL_IDENTIFIER_BYTES 1024
#define OPAQUE_MAX_IDENTITY_BYTES              65535
#define OPAQUE_MAX_CONTEXT_BYTES               65535
#define OPAQUE_MAX_PASSWORD_BYTES              65535

/* The sizes of one suite, in RFC 9807 notation plus whole-message sizes. */
typedef struct opaque_sizes {
	size_t Noe, Ns, Nh, Npk, Nsk, Nn, Nm, Nx, Nok, Nseed;
	size_t registration_request;
	size_t registration_response;
	size_t registration_record;
	size_t envelope;
	size_t ke1;
	size_t ke2;
	size_t ke3;
	size_t export_key;
	size_t session_key;
} opaque_sizes;

/* NULL for an unknown suite. */
const opaque_sizes *opaque_suite_sizes(opaque_suite_id suite);
/* The RFC 9497 identifier ("P256-SHA256", ...), or "unknown suite". Never NULL. */
const char *opaque_suite_name(opaque_suite_id suite);

/* The key-stretching function. Identity exists for the RFC vectors only. Argon2id uses a
 * salt of 16 zero bytes and output length Nh, as RFC 9807's Argon2id configuration and
 * opaque-ke do, so identical parameters give identical keys across implementations. */
typedef enum opaque_ksf_id {
	OPAQUE_KSF_IDENTITY = 0,
	OPAQUE_KSF_ARGON2ID = 1,
} opaque_ksf_id;

typedef struct opaque_ksf {
	opaque_ksf_id id;
	uint32_t iterations;  /* t */
	uint32_t memory_kib;  /* m */
	uint32_t parallelism; /* p */
} opaque_ksf;

typedef struct opaque_config {
	opaque_suite_id suite;
	const uint8_t *context; /* may be NULL when context_len is 0 */
	size_t context_len;
	opaque_ksf ksf;
} opaque_config;

/* Optional identities (RFC 9807 CleartextCredentials). A NULL identity pointer, or a NULL
 * opaque_identities pointer for both, means the default: the client's or server's public
 * key. */
typedef struct opaque_identities {
	const uint8_t *client_identity;
	size_t client_identity_len;
	const uint8_t *server_identity;
	size_t server_identity_len;
} opaque_identities;

/*
 * The server's long-term secrets, behind two operations so they can live in a PKCS#11
 * token. The core never sees oprf_seed or the AKE private key, only these results:
 *
 *   oprf_seed_expand: out = HKDF-Expand(oprf_seed, info, out_len) with the suite's hash.
 *   ake_dh:           out = SerializeElement(server_private_key * peer). peer has already
 *                     been validated (on the curve, canonical, not the identity).
 *
 * Each returns OPAQUE_OK or OPAQUE_ERR_SERVER_KEYS. server_public_key is
 * SerializeElement(server_private_key) and has Npk bytes.
 */
typedef struct opaque_server_keys {
	opaque_suite_id suite;
	uint8_t server_public_key[OPAQUE_MAX_ELEMENT_BYTES];
	opaque_err (*oprf_seed_expand)(void *ctx, const uint8_t *info, size_t info_len,
	                               uint8_t *out, size_t out_len);
	opaque_err (*ake_dh)(void *ctx, const uint8_t *peer, size_t peer_len, uint8_t *out,
	                     size_t out_len);
	void *ctx;
} opaque_server_keys;

/* Pure-software server keys, for clients, tests and development. After
 * opaque_soft_server_keys_init, use &soft->keys; do not copy the struct (ctx points at it). */
typedef struct opaque_soft_server_keys {
	opaque_server_keys keys;
	uint8_t oprf_seed[OPAQUE_MAX_HASH_BYTES];
	uint8_t server_private_key[OPAQUE_MAX_SCALAR_BYTES];
} opaque_soft_server_keys;

/* oprf_seed has Nh bytes, server_private_key Nsk bytes (a valid non-zero scalar). */
opaque_err opaque_soft_server_keys_init(opaque_soft_server_keys *soft, opaque_suite_id suite,
                                        const uint8_t *oprf_seed, size_t oprf_seed_len,
                                        const uint8_t *server_private_key,
                                        size_t server_private_key_len);
/* Fresh random oprf_seed and AKE key pair. */
opaque_err opaque_soft_server_keys_generate(opaque_soft_server_keys *soft, opaque_suite_id suite);
void opaque_soft_server_keys_wipe(opaque_soft_server_keys *soft);

/* For a server that keeps its AKE private key in its own (locked) memory rather than in a
 * token. public_key = SerializeElement(private_key * G) (Npk bytes), after checking that
 * private_key (Nsk bytes) is a valid non-zero scalar. */
opaque_err opaque_ake_public_key(opaque_suite_id suite, const uint8_t *private_key,
                                 size_t private_key_len, uint8_t *public_key,
                                 size_t public_key_len);
/* out = SerializeElement(private_key * peer), as opaque_server_keys.ake_dh: peer (Npk
 * bytes) has been validated by the caller. */
opaque_err opaque_ake_dh(opaque_suite_id suite, const uint8_t *private_key, size_t private_key_len,
                         const uint8_t *peer, size_t peer_len, uint8_t *out, size_t out_len);

/* For an ake_dh that hands the P-256 peer to a device wanting it uncompressed: while
 * opaque_server_login_start runs keys->ake_dh, the peer it passed is already decoded and
 * validated, and this writes its uncompressed encoding (0x04 || x || y, 65 bytes) without
 * decoding it again. false (out zeroed) for any other peer or outside that call: decode
 * and validate it yourself then. */
bool opaque_p256_lent_uncompressed(const uint8_t peer[33], uint8_t out[65]);

/* A fresh AKE key pair: private Nsk bytes, public Npk bytes. */
opaque_err opaque_generate_ake_key_pair(opaque_suite_id suite, uint8_t *private_key,
                                        size_t private_key_len, uint8_t *public_key,
                                        size_t public_key_len);

/* HKDF-Expand(prk, info, out_len) with the suite's hash (RFC 5869), for keys derived from
 * export_key or session_key. prk_len must be Nh; out_len at most 255 * Nh. */
opaque_err opaque_kdf_expand(opaque_suite_id suite, const uint8_t *prk, size_t prk_len,
                             const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len);

/* Checks that a serialized element is a valid non-identity element of the suite's group.
 * Returns OPAQUE_OK or one of the OPAQUE_ERR_ELEMENT_* / OPAQUE_ERR_LENGTH errors. For
 * P-256 (compressed SEC1): all zeros is the identity; a prefix other than 0x02/0x03 or
 * x >= p is non-canonical; an x with no point is not on the curve. */
opaque_err opaque_element_validate(opaque_suite_id suite, const uint8_t *element,
                                   size_t element_len);

/* Client-side state between the two halves of each flow. Treat as opaque. */
typedef struct opaque_client_registration_state {
	opaque_suite_id suite;
	uint8_t blind[OPAQUE_MAX_SCALAR_BYTES];
} opaque_client_registration_state;

typedef struct opaque_client_login_state {
	opaque_suite_id suite;
	uint8_t blind[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t client_secret[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
} opaque_client_login_state;

/* Server-side state between KE2 and KE3. It is what the vault seals into its stateless
 * ticket, so its fields are part of the interface: expected_client_mac and session_key
 * each have Nh bytes. */
typedef struct opaque_server_login_state {
	opaque_suite_id suite;
	uint8_t expected_client_mac[OPAQUE_MAX_HASH_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
} opaque_server_login_state;

void opaque_client_registration_state_wipe(opaque_client_registration_state *state);
void opaque_client_login_state_wipe(opaque_client_login_state *state);
void opaque_server_login_state_wipe(opaque_server_login_state *state);

/* ---- Registration (RFC 9807 section 5) ---- */

/* CreateRegistrationRequest. */
opaque_err opaque_client_registration_start(const opaque_config *config, const uint8_t *password,
                                            size_t password_len,
                                            opaque_client_registration_state *state,
                                            uint8_t *registration_request,
                                            size_t registration_request_len);

/* CreateRegistrationResponse. */
opaque_err opaque_server_registration_response(
    const opaque_config *config, const opaque_server_keys *keys,
    const uint8_t *credential_identifier, size_t credential_identifier_len,
    const uint8_t *registration_request, size_t registration_request_len,
    uint8_t *registration_response, size_t registration_response_len);

/* FinalizeRegistrationRequest. Wipes state. export_key has Nh bytes. */
opaque_err opaque_client_registration_finish(
    const opaque_config *config, opaque_client_registration_state *state, const uint8_t *password,
    size_t password_len, const opaque_identities *identities, const uint8_t *registration_response,
    size_t registration_response_len, uint8_t *registration_record, size_t registration_record_len,
    uint8_t *export_key, size_t export_key_len);

/* Checks a RegistrationRecord as the server receives it: length and client_public_key. */
opaque_err opaque_registration_record_validate(opaque_suite_id suite, const uint8_t *record,
                                               size_t record_len);

/* ---- Login (RFC 9807 section 6) ---- */

/* GenerateKE1. */
opaque_err opaque_client_login_start(const opaque_config *config, const uint8_t *password,
                                     size_t password_len, opaque_client_login_state *state,
                                     uint8_t *ke1, size_t ke1_len);

/* GenerateKE2. registration_record is the stored record, or a fake one from
 * opaque_fake_record_create for an unknown credential_identifier (RFC 9807 section 10.9). */
opaque_err
opaque_server_login_start(const opaque_config *config, const opaque_server_keys *keys,
                          const opaque_identities *identities, const uint8_t *credential_identifier,
                          size_t credential_identifier_len, const uint8_t *registration_record,
                          size_t registration_record_len, const uint8_t *ke1, size_t ke1_len,
                          opaque_server_login_state *state, uint8_t *ke2, size_t ke2_len);

/* GenerateKE3. Wipes state. A wrong password fails with OPAQUE_ERR_ENVELOPE_RECOVERY.
 * session_key and export_key have Nh bytes. */
opaque_err opaque_client_login_finish(const opaque_config *config, opaque_client_login_state *state,
                                      const uint8_t *password, size_t password_len,
                                      const opaque_identities *identities, const uint8_t *ke2,
                                      size_t ke2_len, uint8_t *ke3, size_t ke3_len,
                                      uint8_t *session_key, size_t session_key_len,
                                      uint8_t *export_key, size_t export_key_len);

/* ServerFinish: checks KE3 in constant time. Wipes state. session_key has Nh bytes and is
 * written only on success. */
opaque_err opaque_server_login_finish(opaque_server_login_state *state, const uint8_t *ke3,
                                      size_t ke3_len, uint8_t *session_key, size_t session_key_len);

/* A fake RegistrationRecord: a random client_public_key, a random masking_key and an
 * all-zero envelope. Answering an unknown user's KE1 with it gives a KE2 that looks like a
 * real one (RFC 9807 section 10.9). Keep one per server or derive one per identifier so
 * repeated queries look stable. */
opaque_err opaque_fake_record_create(opaque_suite_id suite, uint8_t *registration_record,
                                     size_t registration_record_len);

#ifdef __cplusplus
}
#endif

#endif
