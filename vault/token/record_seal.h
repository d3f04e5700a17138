/*
 * record_seal.h - the sealed form of an account's record: a box (token.h) in the token under
 * a versioned record-sealing key, bound to where the record belongs.
 *
 *   sealed = 0x02 || seal_key_version (4, big-endian) || box
 *   AAD    = "bkv-v1 record" || I2OSP(len(account_id), 2) || account_id || suite (1) ||
 *            record_version (8, big-endian) || seal_key_version (4, big-endian) ||
 *            registration_id (0 or 16 bytes)
 *
 * Format 0x01, from before seal schemes, still opens: 0x01 || seal_key_version (4) ||
 * iv (12) || GCM ciphertext || tag (16), the same AAD. `bkvd rewrap` moves such records to
 * format 0x02 along with their key version.
 *
 * A sealed record copied to another account, suite, record version or registration, or
 * relabelled with another key version, fails to open with BKV_TOKEN_ERR_AUTH. Records from
 * before registration ids have none (an empty one), and their AAD is unchanged.
 */
#ifndef BKV_RECORD_SEAL_H
#define BKV_RECORD_SEAL_H

#include "token.h"

#define BKV_RECORD_SEAL_FORMAT        0x02
#define BKV_RECORD_SEAL_FORMAT_LEGACY 0x01
#define BKV_RECORD_SEAL_OVERHEAD_MAX  (1 + 4 + BKV_TOKEN_BOX_OVERHEAD_MAX)
/* The least any sealed record adds to its plaintext (format 0x01). */
#define BKV_RECORD_SEAL_OVERHEAD_MIN (1 + 4 + BKV_TOKEN_IV_BYTES + BKV_TOKEN_TAG_BYTES)
#define BKV_RECORD_SEAL_MAX          1024 /* the longest sealed record bkv_record_open takes */
#define BKV_ACCOUNT_ID_MAX           256
#define BKV_REGISTRATION_ID_BYTES    16

/* registration_id_len is 0 or BKV_REGISTRATION_ID_BYTES (else BKV_TOKEN_ERR_ARGUMENT).
 * Seals under the newest loaded seal key into out (out_cap >= plaintext_len +
 * BKV_RECORD_SEAL_OVERHEAD_MAX); *out_len receives the length. */
bkv_token_err bkv_record_seal(bkv_token *token, const uint8_t *account_id, size_t account_id_len,
                              opaque_suite_id suite, uint64_t record_version,
                              const uint8_t *registration_id, size_t registration_id_len,
                              const uint8_t *plaintext, size_t plaintext_len, uint8_t *out,
                              size_t out_cap, size_t *out_len);

/* Opens into plaintext (plaintext_cap >= sealed_len); *plaintext_len receives the length. */
bkv_token_err bkv_record_open(bkv_token *token, const uint8_t *account_id, size_t account_id_len,
                              opaque_suite_id suite, uint64_t record_version,
                              const uint8_t *registration_id, size_t registration_id_len,
                              const uint8_t *sealed, size_t sealed_len, uint8_t *plaintext,
                              size_t plaintext_cap, size_t *plaintext_len);

/* The seal-key version named in a sealed record's header, or 0 if the header is invalid. */
uint32_t bkv_record_seal_key_version(const uint8_t *sealed, size_t sealed_len);

#endif
