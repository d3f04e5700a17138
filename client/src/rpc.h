/*
 * rpc.h - one Connect unary call over libcurl: protobuf in, protobuf out, or a decoded
 * Connect error (code, message, bkv.v1.AttemptInfo and bkv.v1.RetryInfo details).
 *
 * What went wrong decides the status, so that an application retries only what a retry
 * can fix: a TLS failure (untrusted certificate, pin mismatch, unreadable CA file) is
 * BKV_ERR_TLS, never BKV_ERR_UNAVAILABLE; an answer that is not the Connect protocol's (a
 * proxy's 502, a wrong path's 404 page, a bare 401) is BKV_ERR_HTTP with its status.
 */
#ifndef BKV_CLIENT_RPC_H
#define BKV_CLIENT_RPC_H

#include <curl/curl.h>

#include "bkv/v1/vault.pb-c.h"
#include "internal.h"

typedef struct rpc_error {
	char code[32];     /* Connect code, e.g. "permission_denied"; "" if the answer was not a
	                    * Connect error (or there was none) */
	char message[200]; /* the vault's message */
	bool has_attempt_info;
	uint32_t attempts_remaining;
	uint32_t attempt_limit;
	bool has_retry_info;
	uint32_t retry_after_ms;
} rpc_error;

typedef struct rpc_endpoint {
	const char *base_url; /* no trailing slash */
	CURLSH *share;        /* connection cache shared by the client's calls */
	const char *ca_file;
	const char *pinned_key; /* "sha256//..." or NULL */
	long timeout_ms;
} rpc_endpoint;

/* Decodes a Connect error body ({"code","message","details"}) into err; true if it is one
 * (a JSON object with a string "code"). Any input is safe: unknown or malformed parts are
 * left empty, and a body that is no Connect error leaves err->code "". */
bool bkvi_rpc_decode_error(const uint8_t *body, size_t len, rpc_error *err);

/* Calls method with request; on success *response is unpacked (free it with
 * protobuf_c_message_free_unpacked). On failure the status says what failed (rpc.h's
 * opening comment), error->http_status and error->retry_after_ms are set as bkv.h says,
 * and a Connect error's parts are in *err. */
bkv_status bkvi_rpc_call(const rpc_endpoint *endpoint, const char *method, const char *bearer,
                         const ProtobufCMessage *request,
                         const ProtobufCMessageDescriptor *response_descriptor,
                         ProtobufCMessage **response, rpc_error *err, bkv_error *error);

#endif
