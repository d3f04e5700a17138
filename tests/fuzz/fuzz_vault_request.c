/*
 * fuzz_vault_request.c - the vault's request decoding path: every RPC request message as
 * protobuf-c unpacks it from an untrusted body, then the decoders of the vault's own
 * formats that an attacker can hand back (the recovery ticket plaintext parser and the
 * sealed record header; the registration ticket has fuzz_registration_ticket.c).
 *
 * Byte 0 picks the decoder; the rest is the input. A message that decodes (with no unknown
 * fields, which protobuf-c re-encodes canonically) must re-encode to bytes that decode
 * again to the same encoding. The recovery ticket parser must accept exactly the
 * well-formed plaintexts of format 2 (ticket.h), decided here independently, and hand back
 * their fields:
 *   format (1) = 2 || suite (1) || record_version (8) || guess_seq (8) || expires_at (8) ||
 *   len(registration_id) (1) || registration_id (0 or 16) || expected_client_mac (Nh) ||
 *   session_key (Nh)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bkv/v1/vault.pb-c.h"
#include "record_seal.h"
#include "ticket.h"

static const ProtobufCMessageDescriptor *const requests[] = {
    &bkv__v1__get_config_request__descriptor,      &bkv__v1__register_start_request__descriptor,
    &bkv__v1__register_finish_request__descriptor, &bkv__v1__recover_start_request__descriptor,
    &bkv__v1__recover_finish_request__descriptor,  &bkv__v1__get_status_request__descriptor,
    &bkv__v1__delete_request__descriptor,          &bkv__v1__attempt_info__descriptor,
};
#define NREQUESTS (sizeof(requests) / sizeof(requests[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_protobuf(const ProtobufCMessageDescriptor *d, const uint8_t *in, size_t len)
{
	ProtobufCMessage *msg = protobuf_c_message_unpack(d, NULL, len, in);
	if (msg == NULL)
		return;
	if (msg->n_unknown_fields > 0) {
		protobuf_c_message_free_unpacked(msg, NULL);
		return;
	}
	const size_t packed_len = protobuf_c_message_get_packed_size(msg);
	uint8_t *packed = malloc(packed_len ? packed_len : 1);
	if (packed == NULL)
		abort();
	if (protobuf_c_message_pack(msg, packed) != packed_len)
		abort();
	ProtobufCMessage *again = protobuf_c_message_unpack(d, NULL, packed_len, packed);
	if (again == NULL || protobuf_c_message_get_packed_size(again) != packed_len)
		abort();
	protobuf_c_message_free_unpacked(again, NULL);
	protobuf_c_message_free_unpacked(msg, NULL);
	free(packed);
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (size_t i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

#define TICKET_FORMAT  2
#define TICKET_REG_LEN (1 + 1 + 8 + 8 + 8) /* where len(registration_id) is */

static void check_ticket(const uint8_t *in, size_t len)
{
	bkv_ticket t;
	memset(&t, 0xA5, sizeof(t));
	const bool accepted = bkv_ticket_parse(in, len, &t);
	const size_t nh = len >= 2 && in[1] == OPAQUE_SUITE_P256_SHA256           ? 32
	                  : len >= 2 && in[1] == OPAQUE_SUITE_RISTRETTO255_SHA512 ? 64
	                                                                          : 0;
	const size_t reg_len = len > TICKET_REG_LEN ? in[TICKET_REG_LEN] : 0;
	const bool well_formed = nh != 0 && len > TICKET_REG_LEN && in[0] == TICKET_FORMAT &&
	                         (reg_len == 0 || reg_len == BKV_REGISTRATION_ID_BYTES) &&
	                         len == TICKET_REG_LEN + 1 + reg_len + 2 * nh;
	if (accepted != well_formed)
		abort();
	if (!accepted)
		return;
	const uint8_t *reg_id = in + TICKET_REG_LEN + 1;
	const uint8_t *mac = reg_id + reg_len;
	if ((int)t.suite != in[1] || t.record_version != be64(in + 2) ||
	    t.guess_seq != be64(in + 10) || (uint64_t)t.expires_at != be64(in + 18) ||
	    t.registration_id_len != reg_len ||
	    (reg_len > 0 && memcmp(t.registration_id, reg_id, reg_len) != 0) ||
	    (int)t.state.suite != in[1] || memcmp(t.state.expected_client_mac, mac, nh) != 0 ||
	    memcmp(t.state.session_key, mac + nh, nh) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t which = data[0];
	/* Exact-size heap copy so ASan sees any read past the end. */
	uint8_t *in = malloc(size - 1 ? size - 1 : 1);
	if (in == NULL)
		abort();
	memcpy(in, data + 1, size - 1);
	const size_t len = size - 1;
	if (which < NREQUESTS) {
		check_protobuf(requests[which], in, len);
	} else if (which & 1) {
		check_ticket(in, len);
	} else {
		const uint32_t version = bkv_record_seal_key_version(in, len);
		if (version != 0 &&
		    (len < BKV_RECORD_SEAL_OVERHEAD_MIN ||
		     (in[0] != BKV_RECORD_SEAL_FORMAT && in[0] != BKV_RECORD_SEAL_FORMAT_LEGACY)))
			abort();
	}
	free(in);
	return 0;
}
