/*
 * testhttp.h - raw HTTP(S) requests with libcurl for the tests that talk to bkvd below
 * libbkv (malformed bodies, headers, /metrics). Header-only (static) so each test stays a
 * single source file.
 */
#ifndef BKV_TESTHTTP_H
#define BKV_TESTHTTP_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

typedef struct http_reply {
	long status;
	char content_type[128];
	char allow[128];
	char accept_post[128];
	char error[128]; /* the transport error, if there was no answer */
	char *body;
	size_t len;
} http_reply;

static inline size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	http_reply *r = arg;
	const size_t n = size * nmemb;
	char *grown = realloc(r->body, r->len + n + 1);
	if (grown == NULL)
		return 0;
	r->body = grown;
	memcpy(r->body + r->len, ptr, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

static inline void header_value(const char *line, size_t len, const char *name, char *out,
                                size_t cap)
{
	const size_t nlen = strlen(name);
	if (len <= nlen + 1 || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
		return;
	const char *v = line + nlen + 1;
	size_t vlen = len - nlen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
		vlen--;
	snprintf(out, cap, "%.*s", (int)vlen, v);
}

static inline size_t on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
	http_reply *r = arg;
	const size_t n = size * nmemb;
	header_value(ptr, n, "Allow", r->allow, sizeof(r->allow));
	header_value(ptr, n, "Accept-Post", r->accept_post, sizeof(r->accept_post));
	return n;
}

static inline void http_reply_free(http_reply *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* verb "GET" or "POST" to base + path over TLS checked against ca_file, with extra header
 * lines (NULL-terminated list). False on a transport failure (r->error says why). Never
 * fails the test itself, so threads may use it. */
static inline bool tu_http_request(const char *ca_file, const char *base, long timeout_ms,
                                   const char *verb, const char *path, const char *const *headers,
                                   const void *body, size_t len, http_reply *r)
{
	memset(r, 0, sizeof(*r));
	CURL *curl = curl_easy_init();
	if (curl == NULL)
		return false;
	char url[512];
	snprintf(url, sizeof(url), "%s%s", base, path);
	struct curl_slist *list = curl_slist_append(NULL, "Expect:");
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		list = curl_slist_append(list, headers[i]);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, r);
	if (strcmp(verb, "POST") == 0) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body != NULL ? body : "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else {
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	}
	CURLcode rc = curl_easy_perform(curl);
	if (rc == CURLE_OK) {
		char *ct = NULL;
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
		curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
		snprintf(r->content_type, sizeof(r->content_type), "%s", ct ? ct : "");
		if (r->body == NULL) {
			r->body = calloc(1, 1);
			r->len = 0;
		}
	} else {
		snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(rc));
		free(r->body);
		r->body = NULL;
		r->len = 0;
	}
	curl_slist_free_all(list);
	curl_easy_cleanup(curl);
	return rc == CURLE_OK;
}

#endif
