/*
 * rpc.h - one Connect unary call over libcurl: protobuf in, protobuf out, or a decoded
 * Connect error (code, message, bkv.v1.AttemptInfo detail).
 */
#ifndef BKV_CLIENT_RPC_H
#define BKV_CLIENT_RPC_H

#include <curl/curl.h>

#include "bkv/v1/vault.pb-c.h"
#include "internal.h"

typedef struct rpc_error {
	char code[32];     /* Connect code, e.g. "permission_denied"; "" on transport errors */
	char message[200]; /* the vault's message */
	bool has_attempt_info;
	uint32_t attempts_remaining;
	uint32_t attempt_limit;
} rpc_error;

typedef struct rpc_endpoint {
	const char *base_url; /* no trailing slash */
	CURLSH *share;        /* connection cache shared by the client's calls */
	const char *ca_file;
	const char *pinned_key; /* "sha256//..." or NULL */
	long timeout_ms;
} rpc_endpoint;

/* Decodes a Connect error body ({"code","message","details"}) into err. Any input is
 * safe: unknown or malformed parts are left empty. */
void bkvi_rpc_decode_error(const uint8_t *body, size_t len, long http, rpc_error *err);

/* Calls method with request; on success *response is unpacked (free it with
 * protobuf_c_message_free_unpacked). BKV_ERR_UNAVAILABLE on transport failure, otherwise
 * the error is in *err and the status is mapped from its code. */
bkv_status bkvi_rpc_call(const rpc_endpoint *endpoint, const char *method, const char *bearer,
                         const ProtobufCMessage *request,
                         const ProtobufCMessageDescriptor *response_descriptor,
                         ProtobufCMessage **response, rpc_error *err, bkv_error *error);

#endif
