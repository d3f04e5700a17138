/*
 * token_ecdh.h - full-point P-256 Diffie-Hellman from an x-only oracle (see
 * token_ecdh.c). Separate from the token so tests can drive it with a software oracle.
 */
#ifndef BKV_TOKEN_ECDH_H
#define BKV_TOKEN_ECDH_H

#include <stdint.h>

#include "token.h"

/* x = x-coordinate of sk * peer, peer uncompressed (65 bytes) and valid. */
typedef bkv_token_err (*p256_x_only_dh_fn)(void *ctx, const uint8_t peer[65], uint8_t x[32]);

/* out = SerializeElement(sk * peer) (compressed), given x-only DH with sk and the public
 * key S = sk * G (uncompressed). peer must be a validated, non-identity point. */
bkv_token_err p256_dh_full_point(p256_x_only_dh_fn dh, void *ctx, const uint8_t server_public[65],
                                 const uint8_t peer_compressed[33], uint8_t out_compressed[33]);

#endif
