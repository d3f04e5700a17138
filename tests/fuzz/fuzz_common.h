/*
 * fuzz_common.h - shared setup and input decoding for the OPAQUE libFuzzer harnesses.
 *
 * Input layout of every harness:
 *   byte 0   bit 0 picks the suite: 0 = P256-SHA256, 1 = ristretto255-SHA512
 *   byte 1   bits 0-2 == 0: pass the payload with its raw length (exercises length checks);
 *            otherwise pad or truncate it to the message's exact size.
 *            bit 3 set: XOR the payload onto a real, valid message instead of onto zeros,
 *            so the fuzzer reaches the checks behind element decoding (MACs, envelope).
 *   byte 2.. the payload
 *
 * Each suite's fixture is one complete, deterministic registration and login run with fixed
 * keys and fixed randomness, built once per process by fuzz_fixture().
 */
#ifndef BKV_FUZZ_COMMON_H
#define BKV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "opaque/opaque.h"
#include "opaque_internal.h"

typedef struct fuzz_fixture_t {
	opaque_config config;
	const opaque_sizes *sz;
	opaque_soft_server_keys soft; /* never copied: soft.keys.ctx points into it */
	opaque_identities identities;
	const uint8_t *credential_identifier;
	size_t credential_identifier_len;
	const uint8_t *password;
	size_t password_len;

	/* Fixed key material and randomness; harnesses reuse them to stay deterministic. */
	uint8_t server_private_key[OPAQUE_MAX_SCALAR_BYTES]; /* also a valid OPRF key */
	uint8_t envelope_nonce[OPAQUE_NONCE_BYTES];
	uint8_t masking_nonce[OPAQUE_NONCE_BYTES];
	uint8_t server_nonce[OPAQUE_NONCE_BYTES];
	uint8_t server_keyshare_seed[OPAQUE_SEED_BYTES];

	/* Registration. reg_state is the client state right after registration start. */
	opaque_client_registration_state reg_state;
	uint8_t registration_request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t registration_response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t registration_record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];

	/* Login. client_state is taken after KE1, server_state after KE2. */
	opaque_client_login_state client_state;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	opaque_server_login_state server_state;
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
} fuzz_fixture_t;

/* The libFuzzer entry points each harness defines. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Byte value written into output buffers before a call, to see what the call wrote. */
#define FUZZ_SENTINEL 0xA5

/* The fixture for the suite picked by the input's first byte; built on first use. */
const fuzz_fixture_t *fuzz_fixture(const uint8_t *data, size_t size);
/* Builds both suites' fixtures (call from LLVMFuzzerInitialize). */
void fuzz_fixtures_init(void);

/* A message decoded from the fuzz input. bytes is a heap block of exactly len bytes (at least
 * one byte is allocated), so AddressSanitizer catches any read past len. */
typedef struct fuzz_msg_t {
	uint8_t *bytes;
	size_t len;
} fuzz_msg_t;

/* Decodes the input as described above for a message of exact_len bytes; real is the valid
 * message to XOR onto in XOR mode (exact_len bytes). Aborts on allocation failure. */
void fuzz_msg_make(fuzz_msg_t *msg, const uint8_t *data, size_t size, size_t exact_len,
                   const uint8_t *real);
void fuzz_msg_free(fuzz_msg_t *msg);

/* True when msg is exactly the len-byte message real. */
int fuzz_msg_equals(const fuzz_msg_t *msg, const uint8_t *real, size_t len);

/* True when all len bytes of buf equal value. */
int fuzz_all(const uint8_t *buf, size_t len, uint8_t value);

/* Reports a broken invariant and aborts, so libFuzzer saves the input. */
_Noreturn void fuzz_fail(const char *harness, const char *what);

/* Aborts unless buf holds no partial secret: all zero or all FUZZ_SENTINEL. */
void fuzz_check_no_partial_output(const char *harness, const char *what, const uint8_t *buf,
                                  size_t len);

#endif
