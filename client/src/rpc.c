/*
 * rpc.c - the Connect protocol client side on libcurl (OpenSSL backend): POST
 * application/proto with Connect-Protocol-Version: 1, TLS verification on, and Connect
 * error bodies decoded with jansson. Bearer tokens go in a header and are never logged.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include "retry_info.pb-c.h"
#include "rpc.h"

#define RESPONSE_MAX (256 * 1024)

typedef struct body {
	uint8_t *data;
	size_t len;
	bool too_big;
} body;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	body *b = arg;
	const size_t n = size * nmemb;
	if (b->len + n > RESPONSE_MAX) {
		b->too_big = true;
		return 0;
	}
	uint8_t *grown = realloc(b->data, b->len + n + 1);
	if (grown == NULL)
		return 0;
	b->data = grown;
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	return n;
}

static bkv_status status_for_code(const char *code)
{
	if (strcmp(code, "unauthenticated") == 0)
		return BKV_ERR_UNAUTHENTICATED;
	if (strcmp(code, "permission_denied") == 0)
		return BKV_ERR_WRONG_PASSWORD;
	if (strcmp(code, "not_found") == 0)
		return BKV_ERR_NOT_REGISTERED;
	if (strcmp(code, "unavailable") == 0)
		return BKV_ERR_UNAVAILABLE;
	if (strcmp(code, "resource_exhausted") == 0)
		return BKV_ERR_RATE_LIMITED;
	if (strcmp(code, "invalid_argument") == 0 || strcmp(code, "failed_precondition") == 0)
		return BKV_ERR_ARGUMENT;
	if (strcmp(code, "already_exists") == 0)
		return BKV_ERR_ALREADY_REGISTERED;
	if (strcmp(code, "aborted") == 0)
		return BKV_ERR_CONFLICT;
	if (strcmp(code, "data_loss") == 0)
		return BKV_ERR_DATA_LOSS;
	return BKV_ERR_PROTOCOL;
}

/* A detail's value: base64 with or without padding (Connect writes it without). */
static bool detail_value(const char *value, uint8_t *raw, size_t cap, size_t *raw_len)
{
	const size_t len = strlen(value);
	return sodium_base642bin(raw, cap, value, len, NULL, raw_len, NULL,
	                         sodium_base64_VARIANT_ORIGINAL_NO_PADDING) == 0 ||
	       sodium_base642bin(raw, cap, value, len, NULL, raw_len, NULL,
	                         sodium_base64_VARIANT_ORIGINAL) == 0;
}

static void decode_detail(const char *type, const uint8_t *raw, size_t raw_len, rpc_error *err)
{
	if (strcmp(type, "bkv.v1.AttemptInfo") == 0) {
		Bkv__V1__AttemptInfo *info = bkv__v1__attempt_info__unpack(NULL, raw_len, raw);
		if (info != NULL) {
			err->has_attempt_info = true;
			err->attempts_remaining = info->attempts_remaining;
			err->attempt_limit = info->attempt_limit;
			bkv__v1__attempt_info__free_unpacked(info, NULL);
		}
	} else if (strcmp(type, "bkv.v1.RetryInfo") == 0) {
		Bkvi__RetryInfo *retry = bkvi__retry_info__unpack(NULL, raw_len, raw);
		if (retry != NULL) {
			err->has_retry_info = true;
			err->retry_after_ms = retry->retry_after_ms;
			bkvi__retry_info__free_unpacked(retry, NULL);
		}
	}
}

/* {"code","message","details":[{"type":"bkv.v1.AttemptInfo","value":base64}, ...]} */
bool bkvi_rpc_decode_error(const uint8_t *data, size_t len, rpc_error *err)
{
	memset(err, 0, sizeof(*err));
	json_t *root = data ? json_loadb((const char *)data, len, 0, NULL) : NULL;
	const char *code = json_string_value(json_object_get(root, "code"));
	if (code == NULL || code[0] == '\0') {
		json_decref(root);
		return false;
	}
	const char *message = json_string_value(json_object_get(root, "message"));
	snprintf(err->code, sizeof(err->code), "%s", code);
	snprintf(err->message, sizeof(err->message), "%s", message ? message : "");
	for (char *m = err->message; *m != '\0'; m++) { /* shown on terminals: no escapes */
		if ((unsigned char)*m < 0x20 || *m == 0x7f)
			*m = '?';
	}
	json_t *details = json_object_get(root, "details");
	size_t i;
	json_t *d;
	json_array_foreach(details, i, d)
	{
		const char *type = json_string_value(json_object_get(d, "type"));
		const char *value = json_string_value(json_object_get(d, "value"));
		uint8_t raw[64];
		size_t raw_len = 0;
		if (type != NULL && value != NULL &&
		    detail_value(value, raw, sizeof(raw), &raw_len))
			decode_detail(type, raw, raw_len, err);
	}
	json_decref(root);
	return true;
}

/* The failures of TLS itself: the peer is not who the configuration trusts, or the trust
 * configuration cannot be read. A retry cannot fix them and a man in the middle causes
 * them, so they are never BKV_ERR_UNAVAILABLE. */
static bool tls_failure(CURLcode rc)
{
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_INVALIDCERTSTATUS:
		return true;
	default:
		return false;
	}
}

/* "type" or "type; parameters" */
static bool content_type_is(const char *content_type, const char *type)
{
	const size_t n = strlen(type);
	return content_type != NULL && strncasecmp(content_type, type, n) == 0 &&
	       (content_type[n] == '\0' || content_type[n] == ';' || content_type[n] == ' ');
}

/* A non-200 answer, or a 200 that is not application/proto: a Connect error, or an answer
 * from something that is not a bkv vault. */
static bkv_status answer_failure(const char *method, const char *base_url, long http,
                                 const char *content_type, const body *b, rpc_error *err,
                                 bkv_error *error)
{
	const bool connect = content_type_is(content_type, "application/json") &&
	                     bkvi_rpc_decode_error(b->data, b->len, err);
	if (!connect) {
		memset(err, 0, sizeof(*err));
		/* The header is the answerer's: shown only up to its first unprintable byte. */
		int type_len = 0;
		while (content_type != NULL && type_len < 64 && content_type[type_len] >= 0x20 &&
		       content_type[type_len] < 0x7f)
			type_len++;
		/* Connect maps a bare 503 to unavailable; anything else is not the vault's word */
		const bkv_status st = http == 503 ? BKV_ERR_UNAVAILABLE : BKV_ERR_HTTP;
		bkvi_fail(error, st, "%s: %s answered HTTP %ld%s%.*s, %s", method, base_url, http,
		          type_len ? " with " : "", type_len, type_len ? content_type : "",
		          http == 503
		              ? "without a Connect error: unavailable, try again later"
		              : "which is not a bkv vault's answer (a proxy, or a wrong URL?)");
		if (error != NULL)
			error->http_status = (int)http;
		return st;
	}
	const bkv_status st = status_for_code(err->code);
	if (st == BKV_ERR_DATA_LOSS) /* the code says it all, whatever the vault's wording */
		bkvi_fail(error, st,
		          "%s: the vault refused its stored record for this account: the record "
		          "failed the vault's integrity check, so nothing was served from it (the "
		          "vault's operator must look into it)",
		          method);
	else if (st == BKV_ERR_RATE_LIMITED && err->has_retry_info)
		bkvi_fail(error, st, "%s: %s (retry after %u ms)", method,
		          err->message[0] ? err->message : err->code, err->retry_after_ms);
	else
		bkvi_fail(error, st, "%s: %s", method, err->message[0] ? err->message : err->code);
	if (error != NULL && (st == BKV_ERR_RATE_LIMITED || st == BKV_ERR_UNAVAILABLE)) {
		error->http_status = (int)http;
		error->retry_after_ms = err->has_retry_info ? err->retry_after_ms : 0;
	}
	return st;
}

bkv_status bkvi_rpc_call(const rpc_endpoint *ep, const char *method, const char *bearer,
                         const ProtobufCMessage *request,
                         const ProtobufCMessageDescriptor *response_descriptor,
                         ProtobufCMessage **response, rpc_error *err, bkv_error *error)
{
	*response = NULL;
	memset(err, 0, sizeof(*err));
	char url[1024];
	snprintf(url, sizeof(url), "%s/bkv.v1.BackupKeyVault/%s", ep->base_url, method);
	const size_t req_len = protobuf_c_message_get_packed_size(request);
	uint8_t *req = malloc(req_len ? req_len : 1);
	char *auth = NULL;
	CURL *curl = curl_easy_init();
	struct curl_slist *headers = NULL;
	body b = {0};
	bkv_status st = BKV_ERR_NOMEM;
	if (req == NULL || curl == NULL)
		goto done;
	protobuf_c_message_pack(request, req);
	headers = curl_slist_append(headers, "Content-Type: application/proto");
	headers = curl_slist_append(headers, "Connect-Protocol-Version: 1");
	headers = curl_slist_append(headers, "Expect:");
	if (bearer != NULL) {
		const size_t n = strlen(bearer) + sizeof("Authorization: Bearer ");
		auth = malloc(n);
		if (auth == NULL)
			goto done;
		snprintf(auth, n, "Authorization: Bearer %s", bearer);
		headers = curl_slist_append(headers, auth);
	}
	if (headers == NULL)
		goto done;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_SHARE, ep->share);
	curl_easy_setopt(curl, CURLOPT_POST, 1L);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)req_len);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, ep->timeout_ms);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	/* A pinned key without a CA file: the pin is the trust. The vault must present
	 * exactly that public key (libcurl checks CURLOPT_PINNEDPUBLICKEY whether or not it
	 * verifies the chain), so the chain and the host name are not verified: a
	 * self-signed certificate, or one for another name, is accepted if and only if its
	 * key is the pinned one. With a CA file (or no pin) both are verified as well. */
	const bool pin_only = ep->pinned_key != NULL && ep->ca_file == NULL;
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, pin_only ? 0L : 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, pin_only ? 0L : 2L);
	curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
	if (ep->ca_file != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, ep->ca_file);
	if (ep->pinned_key != NULL)
		curl_easy_setopt(curl, CURLOPT_PINNEDPUBLICKEY, ep->pinned_key);
	CURLcode rc = curl_easy_perform(curl);
	if (rc != CURLE_OK && tls_failure(rc)) {
		st = bkvi_fail(error, BKV_ERR_TLS,
		               "TLS with %s failed: %s (not the vault configured, or the CA file "
		               "or pinned certificate cannot be used; not retried)",
		               ep->base_url, curl_easy_strerror(rc));
		goto done;
	}
	if (rc != CURLE_OK) {
		st = bkvi_fail(error, BKV_ERR_UNAVAILABLE, "cannot reach the vault at %s: %s",
		               ep->base_url, curl_easy_strerror(rc));
		goto done;
	}
	long http = 0;
	char *content_type = NULL;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
	curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &content_type);
	if (http == 200 && content_type_is(content_type, "application/proto")) {
		*response = protobuf_c_message_unpack(response_descriptor, NULL, b.len, b.data);
		st = *response ? BKV_OK
		               : bkvi_fail(error, BKV_ERR_PROTOCOL,
		                           "the vault's %s response is not valid protobuf", method);
		goto done;
	}
	st = answer_failure(method, ep->base_url, http, content_type, &b, err, error);
done:
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	if (auth != NULL) {
		sodium_memzero(auth, strlen(auth));
		free(auth);
	}
	if (req != NULL)
		sodium_memzero(req, req_len ? req_len : 1);
	free(req);
	if (b.data != NULL) {
		sodium_memzero(b.data, b.len);
		free(b.data);
	}
	return st;
}
