/*
 * keywrap.h - how the client protects the backup key (docs/PROTOCOL.md):
 *
 *   wrap_key    = HKDF-Expand(export_key, "bkv-v1 wrap", 32)       (the suite's hash)
 *   wrapped_key = nonce (12) || AES-256-GCM(wrap_key, nonce, key, AAD = "bkv-v1 wrap")
 *   release_key = HKDF-Expand(session_key, "bkv-v1 release", 32)
 *   sealed_key  = nonce (12) || AES-256-GCM(release_key, nonce, wrapped_key,
 *                                           AAD = "bkv-v1 release")
 */
#ifndef BKV_KEYWRAP_H
#define BKV_KEYWRAP_H

#include "internal.h"
#include "opaque/opaque.h"

#define BKV_WRAPPED_KEY_BYTES (12 + BKV_KEY_BYTES + 16)

bkv_status bkvi_keywrap_wrap(opaque_suite_id suite, const uint8_t *export_key, const bkv_key *key,
                             uint8_t wrapped[BKV_WRAPPED_KEY_BYTES]);
bkv_status bkvi_keywrap_unwrap(opaque_suite_id suite, const uint8_t *export_key,
                               const uint8_t *wrapped, size_t wrapped_len, bkv_key *key);
/* Opens sealed_key into wrapped (which must hold sealed_len - 28 bytes). */
bkv_status bkvi_keywrap_open_release(opaque_suite_id suite, const uint8_t *session_key,
                                     const uint8_t *sealed, size_t sealed_len, uint8_t *wrapped,
                                     size_t wrapped_cap, size_t *wrapped_len);

#endif
