/*
 * record_seal.h - the sealed form of an account's record: AES-256-GCM in the token under
 * a versioned record-sealing key, bound to where the record belongs.
 *
 *   sealed = 0x01 || seal_key_version (4, big-endian) || iv (12) || ciphertext || tag (16)
 *   AAD    = "bkv-v1 record" || I2OSP(len(account_id), 2) || account_id || suite (1) ||
 *            record_version (8, big-endian) || seal_key_version (4, big-endian) ||
 *            registration_id (0 or 16 bytes)
 *
 * A sealed record copied to another account, suite, record version or registration, or
 * relabelled with another key version, fails to open with BKV_TOKEN_ERR_AUTH. Records from
 * before registration ids have none (an empty one), and their AAD is unchanged.
 */
#ifndef BKV_RECORD_SEAL_H
#define BKV_RECORD_SEAL_H

#include "token.h"

#define BKV_RECORD_SEAL_FORMAT       0x01
#define BKV_RECORD_SEAL_HEADER_BYTES (1 + 4 + BKV_TOKEN_IV_BYTES)
#define BKV_RECORD_SEAL_OVERHEAD     (BKV_RECORD_SEAL_HEADER_BYTES + BKV_TOKEN_TAG_BYTES)
#define BKV_ACCOUNT_ID_MAX           256
#define BKV_REGISTRATION_ID_BYTES    16

/* registration_id_len is 0 or BKV_REGISTRATION_ID_BYTES (else BKV_TOKEN_ERR_ARGUMENT).
 * Seals under the newest loaded seal key. out_len = plaintext_len + BKV_RECORD_SEAL_OVERHEAD. */
bkv_token_err bkv_record_seal(bkv_token *token, const uint8_t *account_id, size_t account_id_len,
                              opaque_suite_id suite, uint64_t record_version,
                              const uint8_t *registration_id, size_t registration_id_len,
                              const uint8_t *plaintext, size_t plaintext_len, uint8_t *out,
                              size_t out_len);

/* plaintext_len = sealed_len - BKV_RECORD_SEAL_OVERHEAD. */
bkv_token_err bkv_record_open(bkv_token *token, const uint8_t *account_id, size_t account_id_len,
                              opaque_suite_id suite, uint64_t record_version,
                              const uint8_t *registration_id, size_t registration_id_len,
                              const uint8_t *sealed, size_t sealed_len, uint8_t *plaintext,
                              size_t plaintext_len);

/* The seal-key version named in a sealed record's header, or 0 if the header is invalid. */
uint32_t bkv_record_seal_key_version(const uint8_t *sealed, size_t sealed_len);

#endif
