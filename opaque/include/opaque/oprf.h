/*
 * oprf.h - the RFC 9497 OPRF in mode 0x00 (OPRF), for P256-SHA256 and ristretto255-SHA512.
 *
 * Scalars and elements are the RFC's SerializeScalar / SerializeElement encodings: P-256
 * scalars big-endian, ristretto255 scalars little-endian, P-256 elements compressed SEC1.
 * Every deserialized element is validated: wrong length, non-canonical encodings, points
 * off the curve and the identity are rejected (see opaque_err).
 */
#ifndef OPAQUE_OPRF_H
#define OPAQUE_OPRF_H

#include "opaque/opaque.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Blind: a fresh random blind (Ns bytes) and blinded_element (Noe bytes). */
opaque_err opaque_oprf_blind(opaque_suite_id suite, const uint8_t *input, size_t input_len,
                             uint8_t *blind, size_t blind_len, uint8_t *blinded_element,
                             size_t blinded_element_len);

/* BlindEvaluate: evaluated_element = private_key * blinded_element. */
opaque_err opaque_oprf_blind_evaluate(opaque_suite_id suite, const uint8_t *private_key,
                                      size_t private_key_len, const uint8_t *blinded_element,
                                      size_t blinded_element_len, uint8_t *evaluated_element,
                                      size_t evaluated_element_len);

/* Finalize: output has Nh bytes. */
opaque_err opaque_oprf_finalize(opaque_suite_id suite, const uint8_t *input, size_t input_len,
                                const uint8_t *blind, size_t blind_len,
                                const uint8_t *evaluated_element, size_t evaluated_element_len,
                                uint8_t *output, size_t output_len);

/* DeriveKeyPair(seed, info) in OPRF mode: seed has 32 bytes. public_key may be NULL. */
opaque_err opaque_oprf_derive_key_pair(opaque_suite_id suite, const uint8_t *seed, size_t seed_len,
                                       const uint8_t *info, size_t info_len, uint8_t *private_key,
                                       size_t private_key_len, uint8_t *public_key,
                                       size_t public_key_len);

/* HashToScalar(input) with the default DST "HashToScalar-" || contextString. */
opaque_err opaque_oprf_hash_to_scalar(opaque_suite_id suite, const uint8_t *input, size_t input_len,
                                      uint8_t *scalar, size_t scalar_len);

#ifdef __cplusplus
}
#endif

#endif
