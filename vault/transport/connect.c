/*
 * connect.c - the Connect protocol (connectrpc.com) for unary RPCs over evhttp:
 *
 *   POST /bkv.v1.BackupKeyVault/<Method>
 *   Content-Type: application/proto, Connect-Protocol-Version: 1 (optional for curl)
 *   200 + application/proto on success;
 *   an HTTP status from Connect's table + application/json {"code","message","details"}
 *   on error, with bkv.v1.AttemptInfo as a detail where attempts matter, and
 *   bkv.v1.RetryInfo plus a Retry-After header when a rate limit (ratelimit.h) refuses.
 *
 * Bodies are capped here (64 KiB) rather than in evhttp, so an oversize request still
 * gets a proper Connect error; only bodies over evhttp's own limit (1 MiB) get evhttp's
 * plain 413 (libevent 2.1 offers no hook to replace it). Nothing in this file logs a token, a
 * password or an OPAQUE message: the request log (log_request) has the method, status, code,
 * latency, request id, peer and a keyed hash of the account.
 */
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>

#include "jsonline.h"
#include "ratelimit.h"
#include "server_internal.h"

typedef enum rpc_method {
	METHOD_GET_CONFIG,
	METHOD_REGISTER_START,
	METHOD_REGISTER_FINISH,
	METHOD_RECOVER_START,
	METHOD_RECOVER_FINISH,
	METHOD_GET_STATUS,
	METHOD_DELETE,
	METHOD_UNKNOWN,
} rpc_method;

static const struct {
	const char *name;
	const ProtobufCMessageDescriptor *request;
	bool needs_auth;
} methods[] = {
    [METHOD_GET_CONFIG] = {"GetConfig", &bkv__v1__get_config_request__descriptor, false},
    [METHOD_REGISTER_START] = {"RegisterStart", &bkv__v1__register_start_request__descriptor, true},
    [METHOD_REGISTER_FINISH] = {"RegisterFinish", &bkv__v1__register_finish_request__descriptor,
                                true},
    [METHOD_RECOVER_START] = {"RecoverStart", &bkv__v1__recover_start_request__descriptor, true},
    [METHOD_RECOVER_FINISH] = {"RecoverFinish", &bkv__v1__recover_finish_request__descriptor, true},
    [METHOD_GET_STATUS] = {"GetStatus", &bkv__v1__get_status_request__descriptor, true},
    [METHOD_DELETE] = {"Delete", &bkv__v1__delete_request__descriptor, true},
};

/* Storage for whichever response the method produces. */
typedef union response_storage {
	Bkv__V1__GetConfigResponse get_config;
	Bkv__V1__RegisterStartResponse register_start;
	Bkv__V1__RegisterFinishResponse register_finish;
	Bkv__V1__RecoverStartResponse recover_start;
	Bkv__V1__RecoverFinishResponse recover_finish;
	Bkv__V1__GetStatusResponse get_status;
	Bkv__V1__DeleteResponse delete_;
} response_storage;

#define TOKEN_BACKOFF_MIN_MS 100
#define TOKEN_BACKOFF_MAX_MS 5000

_Static_assert(BKV_METRICS_CODES == BKV_CODE_COUNT, "one metrics row per bkv_code");

static int http_status(bkv_code code)
{
	switch (code) {
	case BKV_CODE_OK:
		return 200;
	case BKV_CODE_INVALID_ARGUMENT:
	case BKV_CODE_FAILED_PRECONDITION:
		return 400;
	case BKV_CODE_UNAUTHENTICATED:
		return 401;
	case BKV_CODE_PERMISSION_DENIED:
		return 403;
	case BKV_CODE_NOT_FOUND:
		return 404;
	case BKV_CODE_RESOURCE_EXHAUSTED:
		return 429;
	case BKV_CODE_UNIMPLEMENTED:
		return 501;
	case BKV_CODE_UNAVAILABLE:
		return 503;
	case BKV_CODE_INTERNAL:
	case BKV_CODE_DATA_LOSS:
		return 500;
	case BKV_CODE_ALREADY_EXISTS:
	case BKV_CODE_ABORTED:
		return 409;
	}
	return 500;
}

static void add_detail(json_t *body, const char *type, const uint8_t *packed, size_t n)
{
	char b64[64];
	sodium_bin2base64(b64, sizeof(b64), packed, n, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	json_t *detail = json_object();
	json_object_set_new(detail, "type", json_string(type));
	json_object_set_new(detail, "value", json_string(b64));
	json_t *details = json_object_get(body, "details");
	if (details == NULL) {
		details = json_array();
		json_object_set_new(body, "details", details);
	}
	json_array_append_new(details, detail);
}

/* {"code","message","details":[{"type":"bkv.v1.AttemptInfo","value":base64}]}; with
 * retry_after_ms > 0 a bkv.v1.RetryInfo detail and Retry-After (seconds, rounded up). */
static void send_error(struct evhttp_request *req, int http, const bkvd_status *st,
                       uint32_t retry_after_ms)
{
	json_t *body = json_object();
	json_object_set_new(body, "code", json_string(bkv_code_name(st->code)));
	json_object_set_new(body, "message", json_string(st->message));
	uint8_t packed[32];
	if (st->has_attempt_info) {
		Bkv__V1__AttemptInfo info = BKV__V1__ATTEMPT_INFO__INIT;
		info.attempts_remaining = st->attempts_remaining;
		info.attempt_limit = st->attempt_limit;
		add_detail(body, "bkv.v1.AttemptInfo", packed,
		           bkv__v1__attempt_info__pack(&info, packed));
	}
	if (retry_after_ms > 0) {
		Bkv__V1__RetryInfo info = BKV__V1__RETRY_INFO__INIT;
		info.retry_after_ms = retry_after_ms;
		add_detail(body, "bkv.v1.RetryInfo", packed,
		           bkv__v1__retry_info__pack(&info, packed));
		char seconds[16];
		snprintf(seconds, sizeof(seconds), "%u",
		         retry_after_ms / 1000 + (retry_after_ms % 1000 != 0));
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", seconds);
	}
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct evbuffer *buf = evbuffer_new();
	if (text != NULL && buf != NULL)
		evbuffer_add(buf, text, strlen(text));
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	bkv_send_reply(req, http, NULL, buf);
	if (buf != NULL)
		evbuffer_free(buf);
}

static void send_message(struct evhttp_request *req, const ProtobufCMessage *msg)
{
	const size_t len = protobuf_c_message_get_packed_size(msg);
	struct evbuffer *buf = evbuffer_new();
	uint8_t *space = NULL;
	struct evbuffer_iovec vec;
	if (buf == NULL || evbuffer_reserve_space(buf, (ev_ssize_t)(len ? len : 1), &vec, 1) < 1) {
		bkvd_status st = bkvd_status_error(BKV_CODE_INTERNAL, "out of memory");
		if (buf != NULL)
			evbuffer_free(buf);
		send_error(req, 500, &st, 0);
		return;
	}
	space = vec.iov_base;
	vec.iov_len = protobuf_c_message_pack(msg, space);
	evbuffer_commit_space(buf, &vec, 1);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/proto");
	bkv_send_reply(req, 200, "OK", buf);
	evbuffer_free(buf);
}

/* Request ids come from a pool of random bytes refilled 32 ids at a time: one getrandom(2)
 * per 32 requests instead of one per request. The ids are not secret (each is sent to its
 * client), only unique; a fork empties the pool, so no two processes hand out the same ids. */
#define REQUEST_ID_BYTES 8
static uint8_t request_id_pool[32 * REQUEST_ID_BYTES];
static size_t request_id_used = sizeof(request_id_pool);

static void request_id_pool_forget(void)
{
	request_id_used = sizeof(request_id_pool);
}

/* A random 64-bit request id in hex, sent back in X-Request-Id and written to the request
 * log, so a client's report can be matched with the log line. */
static void request_id_new(struct evhttp_request *req, char id[17])
{
	static bool atfork_registered;
	if (!atfork_registered)
		atfork_registered = pthread_atfork(NULL, NULL, request_id_pool_forget) == 0;
	uint8_t raw[REQUEST_ID_BYTES];
	if (!atfork_registered) {
		randombytes_buf(raw, sizeof(raw)); /* no pool without its fork guard */
	} else {
		if (request_id_used + REQUEST_ID_BYTES > sizeof(request_id_pool)) {
			randombytes_buf(request_id_pool, sizeof(request_id_pool));
			request_id_used = 0;
		}
		memcpy(raw, request_id_pool + request_id_used, sizeof(raw));
		request_id_used += REQUEST_ID_BYTES;
	}
	sodium_bin2hex(id, 17, raw, sizeof(raw));
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", id);
}

/* UTC now in RFC 3339 with milliseconds. The part up to the seconds is formatted once per
 * second (gmtime_r and strftime are the costly part), the milliseconds every time. */
static void log_timestamp(char ts[64])
{
	static time_t cached_second = -1;
	static char cached[24];
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != cached_second) {
		struct tm tm;
		if (gmtime_r(&now.tv_sec, &tm) == NULL ||
		    strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
			ts[0] = '\0';
			cached_second = -1;
			return;
		}
		cached_second = now.tv_sec;
	}
	snprintf(ts, 64, "%s.%03dZ", cached, (int)(now.tv_nsec / 1000000));
}

/* One JSON line per RPC: UTC time in RFC 3339 with milliseconds, request id, peer address
 * (the balancer's behind one), method, HTTP status, Connect code, latency, the keyed hash
 * of the account, and for unauthenticated the reason: bkv_auth_verify's static text,
 * never the token. Written directly (jsonline.h), the same text jansson makes of it. */
static void log_request(bkv_server_ctx *ctx, const char *peer, const char *request_id,
                        const char *method, int http, const bkvd_status *st, uint64_t micros,
                        const uint8_t *account, size_t account_len)
{
	FILE *log = ctx->settings->request_log;
	if (log == NULL)
		return;
	char account_hash[33] = "";
	if (account_len > 0)
		bkv_account_hash(ctx->vault, (bkv_account){account, account_len}, account_hash);
	char ts[64];
	log_timestamp(ts);
	char text[2048];
	bkv_jsonline line;
	bkv_jsonline_begin(&line, text, sizeof(text));
	bkv_jsonline_string(&line, "ts", ts);
	bkv_jsonline_string(&line, "request_id", request_id);
	bkv_jsonline_string(&line, "peer", peer);
	bkv_jsonline_string(&line, "method", method);
	bkv_jsonline_int(&line, "status", http);
	bkv_jsonline_string(&line, "code", bkv_code_name(st->code));
	bkv_jsonline_real(&line, "latency_ms", (double)micros / 1000.0);
	bkv_jsonline_string(&line, "account", account_hash);
	if (st->code == BKV_CODE_UNAUTHENTICATED)
		bkv_jsonline_string(&line, "reason", st->message);
	if (bkv_jsonline_end(&line))
		fwrite(text, 1, line.len, log);
	else
		fprintf(stderr, "bkvd: a request log line (request %s) exceeds %zu bytes\n",
		        request_id, sizeof(text));
	fflush(log);
}

/* True when the token is usable now; tries a reopen when its backoff has elapsed. */
static bool token_ready(bkv_server_ctx *ctx)
{
	if (!ctx->token_down)
		return true;
	const uint64_t now = bkv_now_ms();
	if (now < ctx->token_retry_at_ms)
		return false;
	if (bkv_vault_reopen_token(ctx->vault)) {
		ctx->token_down = false;
		ctx->token_backoff_ms = TOKEN_BACKOFF_MIN_MS;
		return true;
	}
	ctx->token_backoff_ms = ctx->token_backoff_ms * 2 > TOKEN_BACKOFF_MAX_MS
	                            ? TOKEN_BACKOFF_MAX_MS
	                            : ctx->token_backoff_ms * 2;
	ctx->token_retry_at_ms = now + ctx->token_backoff_ms;
	return false;
}

/* The per-address limit (account NULL, before auth) or the per-account one (after auth). */
static bool rate_check(bkv_server_ctx *ctx, struct evhttp_request *req, int rate_method,
                       const bkv_account *account, uint32_t *retry_after_ms)
{
	bkv_rate_limiter *limiter = ctx->settings->rate_limiter;
	if (limiter == NULL || rate_method < 0)
		return true;
	const int64_t now_ms = bkv_rate_now_ms();
	if (account != NULL)
		return bkv_rate_check_account(limiter, ctx->vault, rate_method, *account, now_ms,
		                              retry_after_ms);
	char *address = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(evhttp_request_get_connection(req), &address, &port);
	return bkv_rate_check_address(limiter, ctx->vault, rate_method, address ? address : "",
	                              now_ms, retry_after_ms);
}

static bkvd_status call_handler(bkv_vault *v, rpc_method method, bkv_account account,
                                const ProtobufCMessage *request, ProtobufCMessage **response,
                                response_storage *out, bkv_reply_buffers *buf)
{
	switch (method) {
	case METHOD_GET_CONFIG:
		*response = &out->get_config.base;
		return bkvd_get_config(v, &out->get_config, buf);
	case METHOD_REGISTER_START:
		*response = &out->register_start.base;
		return bkvd_register_start(v, account, (const void *)request, &out->register_start,
		                           buf);
	case METHOD_REGISTER_FINISH:
		*response = &out->register_finish.base;
		return bkvd_register_finish(v, account, (const void *)request,
		                            &out->register_finish);
	case METHOD_RECOVER_START:
		*response = &out->recover_start.base;
		return bkvd_recover_start(v, account, (const void *)request, &out->recover_start,
		                          buf);
	case METHOD_RECOVER_FINISH:
		*response = &out->recover_finish.base;
		return bkvd_recover_finish(v, account, (const void *)request, &out->recover_finish,
		                           buf);
	case METHOD_GET_STATUS:
		*response = &out->get_status.base;
		return bkvd_get_status(v, account, &out->get_status);
	case METHOD_DELETE:
		*response = &out->delete_.base;
		return bkvd_delete(v, account, &out->delete_);
	case METHOD_UNKNOWN:
		break;
	}
	/* bkv_connect_handle answers unknown methods before dispatch; nothing reaches here. */
	*response = NULL;
	return bkvd_status_error(BKV_CODE_UNIMPLEMENTED, "unknown method");
}

/* A method that writes a record announces its write before it computes (handlers.h). */
static bkvd_status dispatch(bkv_server_ctx *ctx, rpc_method method, bkv_account account,
                            const ProtobufCMessage *request, ProtobufCMessage **response,
                            response_storage *out, bkv_reply_buffers *buf)
{
	const bool writes = method == METHOD_REGISTER_FINISH || method == METHOD_RECOVER_START ||
	                    method == METHOD_RECOVER_FINISH || method == METHOD_DELETE;
	if (writes)
		bkvd_write_expected(ctx->vault);
	const bkvd_status st =
	    call_handler(ctx->vault, method, account, request, response, out, buf);
	if (writes)
		bkvd_write_settled(ctx->vault);
	return st;
}

/* The client's address for the request log, taken before the handler runs: on a fiber the
 * connection may be gone by the time the answer is ready. */
static void peer_of(bkv_server_ctx *ctx, struct evhttp_request *req, char peer[128])
{
	peer[0] = '\0';
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	if (ctx->settings->request_log == NULL || conn == NULL)
		return;
	char *address = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(conn, &address, &port);
	if (address != NULL)
		snprintf(peer, 128, strchr(address, ':') ? "[%s]:%u" : "%s:%u", address,
		         (unsigned)port);
}

void bkv_connect_handle(bkv_server_ctx *ctx, struct evhttp_request *req, const char *name)
{
	const uint64_t started = bkv_now_us();
	bkv_metrics *metrics = ctx->settings->metrics;
	char request_id[17], peer[128];
	request_id_new(req, request_id);
	peer_of(ctx, req, peer);
	rpc_method method = METHOD_UNKNOWN;
	for (rpc_method i = 0; i < METHOD_UNKNOWN; i++) {
		if (strcmp(name, methods[i].name) == 0)
			method = i;
	}
	uint8_t account_id[BKV_AUTH_ACCOUNT_MAX];
	size_t account_len = 0;
	ProtobufCMessage *request = NULL;
	bkv_reply_buffers *buf = NULL;
	bkvd_status st = bkvd_status_ok();
	int http = 0;
	uint32_t retry_after_ms = 0;
	response_storage out;
	ProtobufCMessage *response = NULL;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);

	if (method == METHOD_UNKNOWN) {
		st = bkvd_status_error(BKV_CODE_UNIMPLEMENTED, "unknown method");
		http = 404;
		goto reply;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		st = bkvd_status_error(BKV_CODE_UNIMPLEMENTED, "unary RPCs take POST");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
		http = 405;
		goto reply;
	}
	const char *content_type = evhttp_find_header(in, "Content-Type");
	if (content_type == NULL || strcmp(content_type, "application/proto") != 0) {
		st = bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                       "Content-Type must be application/proto");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Accept-Post",
		                  "application/proto");
		http = 415;
		goto reply;
	}
	const char *version = evhttp_find_header(in, "Connect-Protocol-Version");
	if (version != NULL && strcmp(version, "1") != 0) {
		st =
		    bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                      "unsupported Connect-Protocol-Version (this vault speaks 1)");
		goto reply;
	}
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	const size_t body_len = evbuffer_get_length(body);
	if (body_len > BKV_CONNECT_MAX_BODY) {
		st = bkvd_status_error(BKV_CODE_RESOURCE_EXHAUSTED, "request body exceeds 64 KiB");
		goto reply;
	}
	const int rate_method = bkv_rate_method_find(methods[method].name);
	if (!rate_check(ctx, req, rate_method, NULL, &retry_after_ms)) {
		st = bkvd_status_error(BKV_CODE_RESOURCE_EXHAUSTED,
		                       "too many requests from this address; retry later");
		goto reply;
	}
	if (methods[method].needs_auth) {
		const char *why = NULL;
		if (!bkv_auth_verify(ctx->settings->auth, evhttp_find_header(in, "Authorization"),
		                     (int64_t)time(NULL), account_id, &account_len, &why)) {
			account_len = 0;
			st = bkvd_status_error(BKV_CODE_UNAUTHENTICATED, why);
			goto reply;
		}
		const bkv_account account = {account_id, account_len};
		if (!rate_check(ctx, req, rate_method, &account, &retry_after_ms)) {
			st = bkvd_status_error(BKV_CODE_RESOURCE_EXHAUSTED,
			                       "too many requests for this account; retry later");
			goto reply;
		}
	}
	const uint8_t *data = body_len ? evbuffer_pullup(body, (ev_ssize_t)body_len) : NULL;
	request = protobuf_c_message_unpack(methods[method].request, NULL, body_len, data);
	if (request == NULL) {
		st = bkvd_status_error(BKV_CODE_INVALID_ARGUMENT,
		                       "the request body is not a valid protobuf message");
		goto reply;
	}
	if (!token_ready(ctx)) {
		st = bkvd_status_error(BKV_CODE_UNAVAILABLE,
		                       "the vault's key token is unavailable; try again later");
		goto reply;
	}
	buf = malloc(sizeof(*buf));
	if (buf == NULL) {
		st = bkvd_status_error(BKV_CODE_INTERNAL, "out of memory");
		goto reply;
	}
	st = dispatch(ctx, method, (bkv_account){account_id, account_len}, request, &response, &out,
	              buf);
	if (st.code == BKV_CODE_UNAVAILABLE && !bkv_vault_token_healthy(ctx->vault)) {
		ctx->token_down = true;
		ctx->token_backoff_ms = TOKEN_BACKOFF_MIN_MS;
		ctx->token_retry_at_ms = bkv_now_ms();
	}
reply:;
	/* Logged first: answering may free req (its connection closed while a fiber
	 * waited), so nothing after the answer touches it. */
	const uint64_t micros = bkv_now_us() - started;
	if (metrics != NULL && retry_after_ms > 0)
		bkv_metrics_add(&metrics->rate_limited[method], 1);
	if (metrics != NULL) {
		bkv_metrics_add(&metrics->requests[method][st.code], 1);
		bkv_metrics_observe(&metrics->latency[method], micros);
	}
	log_request(ctx, peer, request_id,
	            method == METHOD_UNKNOWN ? "unknown" : methods[method].name,
	            st.code == BKV_CODE_OK ? 200
	            : http                 ? http
	                                   : http_status(st.code),
	            &st, micros, account_id, account_len);
	if (st.code == BKV_CODE_OK)
		send_message(req, response);
	else
		send_error(req, http ? http : http_status(st.code), &st, retry_after_ms);
	if (request != NULL)
		protobuf_c_message_free_unpacked(request, NULL);
	if (buf != NULL) {
		sodium_memzero(buf, sizeof(*buf));
		free(buf);
	}
	sodium_memzero(account_id, sizeof(account_id));
}
