/*
 * fuzz_vault_request.c - the vault's request decoding path: every RPC request message as
 * protobuf-c unpacks it from an untrusted body, then the decoders of the vault's own
 * formats that an attacker can hand back (the ticket plaintext parser and the sealed
 * record header).
 *
 * Byte 0 picks the decoder; the rest is the input. A message that decodes (with no unknown
 * fields, which protobuf-c re-encodes canonically) must re-encode to bytes that decode
 * again to the same encoding.
 */
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
		bkv_ticket ticket;
		if (bkv_ticket_parse(in, len, &ticket)) {
			const opaque_sizes *sz = opaque_suite_sizes(ticket.suite);
			if (sz == NULL || len != 1 + 1 + 8 + 8 + 8 + 2 * sz->Nh)
				abort();
		}
	} else {
		const uint32_t version = bkv_record_seal_key_version(in, len);
		if (version != 0 &&
		    (len < BKV_RECORD_SEAL_OVERHEAD || in[0] != BKV_RECORD_SEAL_FORMAT))
			abort();
	}
	free(in);
	return 0;
}
