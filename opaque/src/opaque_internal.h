/*
 * opaque_internal.h - internals shared between the core's source files and its tests.
 *
 * Not installed and not part of the API. The *_with_randomness functions take every random
 * value as an argument; the public functions draw them from the CSPRNG and call these. The
 * RFC vector tests call them with the vectors' inputs. Production code must not.
 */
#ifndef OPAQUE_INTERNAL_H
#define OPAQUE_INTERNAL_H

#include "opaque/opaque.h"
#include "opaque/oprf.h"

typedef enum opaque_hash_id {
	OPAQUE_HASH_SHA256 = 1,
	OPAQUE_HASH_SHA512 = 2,
} opaque_hash_id;

/* ---- RFC 9380 ---- */

#define OPAQUE_XMD_MAX_OUT 255 /* the largest len_in_bytes supported; every use here is <= 96 */

/* expand_message_xmd. A DST over 255 bytes is hashed first (RFC 9380 5.3.3). */
opaque_err opaque_expand_message_xmd(opaque_hash_id hash, const uint8_t *msg, size_t msg_len,
                                     const uint8_t *dst, size_t dst_len, uint8_t *out,
                                     size_t out_len);

/* hash_to_field for P-256 (L = 48) into the base field (modulus p) or the scalar field
 * (modulus n): count elements of 32 bytes big-endian, written to out[0..count*32). */
typedef enum opaque_p256_field {
	OPAQUE_P256_FIELD_BASE = 0,
	OPAQUE_P256_FIELD_SCALAR = 1,
} opaque_p256_field;

opaque_err opaque_p256_hash_to_field(opaque_p256_field field, const uint8_t *msg, size_t msg_len,
                                     const uint8_t *dst, size_t dst_len, size_t count,
                                     uint8_t *out);

/* map_to_curve_simple_swu for P-256: u is 32 bytes big-endian (< p); out is x || y, each
 * 32 bytes big-endian. Constant time in u. */
opaque_err opaque_p256_map_to_curve(const uint8_t u[32], uint8_t out_xy[64]);

/* P256_XMD:SHA-256_SSWU_RO_ hash_to_curve: out is x || y, 32 bytes each, big-endian. */
opaque_err opaque_p256_hash_to_curve(const uint8_t *msg, size_t msg_len, const uint8_t *dst,
                                     size_t dst_len, uint8_t out_xy[64]);

/* ---- Group ---- */

/* Variable-base scalar multiplication: out = SerializeElement(scalar * element). Validates
 * element and rejects an identity result. Used by the core and by bkv-bench-opaque. */
opaque_err opaque_scalar_mult(opaque_suite_id suite, const uint8_t *scalar, size_t scalar_len,
                              const uint8_t *element, size_t element_len, uint8_t *out,
                              size_t out_len);

/* ---- Deterministic entry points (tests only) ---- */

opaque_err opaque_oprf_blind_with_randomness(opaque_suite_id suite, const uint8_t *input,
                                             size_t input_len, const uint8_t *blind,
                                             size_t blind_len, uint8_t *blinded_element,
                                             size_t blinded_element_len);

opaque_err opaque_client_registration_start_with_randomness(
    const opaque_config *config, const uint8_t *password, size_t password_len, const uint8_t *blind,
    size_t blind_len, opaque_client_registration_state *state, uint8_t *registration_request,
    size_t registration_request_len);

opaque_err opaque_client_registration_finish_with_randomness(
    const opaque_config *config, opaque_client_registration_state *state, const uint8_t *password,
    size_t password_len, const opaque_identities *identities, const uint8_t *registration_response,
    size_t registration_response_len, const uint8_t envelope_nonce[OPAQUE_NONCE_BYTES],
    uint8_t *registration_record, size_t registration_record_len, uint8_t *export_key,
    size_t export_key_len);

opaque_err opaque_client_login_start_with_randomness(
    const opaque_config *config, const uint8_t *password, size_t password_len, const uint8_t *blind,
    size_t blind_len, const uint8_t client_nonce[OPAQUE_NONCE_BYTES],
    const uint8_t client_keyshare_seed[OPAQUE_SEED_BYTES], opaque_client_login_state *state,
    uint8_t *ke1, size_t ke1_len);

opaque_err opaque_server_login_start_with_randomness(
    const opaque_config *config, const opaque_server_keys *keys,
    const opaque_identities *identities, const uint8_t *credential_identifier,
    size_t credential_identifier_len, const uint8_t *registration_record,
    size_t registration_record_len, const uint8_t *ke1, size_t ke1_len,
    const uint8_t masking_nonce[OPAQUE_NONCE_BYTES], const uint8_t server_nonce[OPAQUE_NONCE_BYTES],
    const uint8_t server_keyshare_seed[OPAQUE_SEED_BYTES], opaque_server_login_state *state,
    uint8_t *ke2, size_t ke2_len);

#endif
