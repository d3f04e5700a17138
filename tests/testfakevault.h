/*
 * testfakevault.h - a fake vault for the SDK tests: libevent's evhttp on 127.0.0.1, over
 * TLS (a certificate made with the openssl command in a temp dir) and over plain HTTP,
 * answering every request with what the test set last (a proxy's 502 page, a Connect
 * error, a GetConfig response, ...). It runs in a thread of the test process and counts
 * the requests it got per method, so a test can show that a request was never sent.
 *
 * Header-only (static) so each test stays a single source file.
 */
#ifndef BKV_TESTFAKEVAULT_H
#define BKV_TESTFAKEVAULT_H

#include <arpa/inet.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>

#define FAKE_BODY_MAX 4096

typedef struct fake_answer {
	int status;
	const char *content_type; /* NULL: no Content-Type header */
	uint8_t body[FAKE_BODY_MAX];
	size_t body_len;
} fake_answer;

typedef struct fake_vault {
	char dir[256];
	char cert[PATH_MAX], key[PATH_MAX];             /* what the server presents */
	char other_cert[PATH_MAX], other_key[PATH_MAX]; /* a certificate nobody serves */
	unsigned tls_port, plain_port;
	struct event_base *base;
	struct evhttp *tls_http, *plain_http;
	struct event *stop_event;
	int stop_pipe[2];
	SSL_CTX *ssl;
	pthread_t thread;
	pthread_mutex_t lock;
	fake_answer answer;        /* for every method but GetConfig (if config_set) */
	fake_answer config_answer; /* for GetConfig when config_set */
	bool config_set;
	unsigned requests;        /* every request that reached the handler */
	unsigned register_starts; /* of them, RegisterStart */
	bool saw_authorization;   /* the last request carried an Authorization header */
} fake_vault;

static inline void fake_set(fake_vault *f, int status, const char *content_type, const void *body,
                            size_t len)
{
	pthread_mutex_lock(&f->lock);
	f->answer.status = status;
	f->answer.content_type = content_type;
	if (len > FAKE_BODY_MAX)
		abort();
	memcpy(f->answer.body, body, len);
	f->answer.body_len = len;
	pthread_mutex_unlock(&f->lock);
}

static inline void fake_set_config(fake_vault *f, const void *body, size_t len)
{
	pthread_mutex_lock(&f->lock);
	f->config_set = body != NULL;
	f->config_answer.status = 200;
	f->config_answer.content_type = "application/proto";
	if (len > FAKE_BODY_MAX)
		abort();
	if (body != NULL)
		memcpy(f->config_answer.body, body, len);
	f->config_answer.body_len = len;
	pthread_mutex_unlock(&f->lock);
}

static inline unsigned fake_requests(fake_vault *f)
{
	pthread_mutex_lock(&f->lock);
	const unsigned n = f->requests;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static inline void fake_handle(struct evhttp_request *req, void *arg)
{
	fake_vault *f = arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	pthread_mutex_lock(&f->lock);
	f->requests++;
	f->saw_authorization = evhttp_find_header(in, "Authorization") != NULL;
	const bool config = f->config_set && strstr(uri, "/GetConfig") != NULL;
	if (strstr(uri, "/RegisterStart") != NULL)
		f->register_starts++;
	const fake_answer a = config ? f->config_answer : f->answer;
	pthread_mutex_unlock(&f->lock);
	if (a.content_type != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		                  a.content_type);
	struct evbuffer *out = evbuffer_new();
	evbuffer_add(out, a.body, a.body_len);
	evhttp_send_reply(req, a.status, "fake", out);
	evbuffer_free(out);
}

static inline struct bufferevent *fake_tls_bev(struct event_base *base, void *arg)
{
	fake_vault *f = arg;
	return bufferevent_openssl_socket_new(base, -1, SSL_new(f->ssl), BUFFEREVENT_SSL_ACCEPTING,
	                                      BEV_OPT_CLOSE_ON_FREE);
}

static inline void fake_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static inline void *fake_run(void *arg)
{
	fake_vault *f = arg;
	event_base_dispatch(f->base);
	return NULL;
}

static inline bool fake_bind(fake_vault *f, struct evhttp *http, unsigned *port)
{
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	if (bound == NULL)
		return false;
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&a, &len) != 0)
		return false;
	*port = ntohs(a.sin_port);
	evhttp_set_gencb(http, fake_handle, f);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_POST | EVHTTP_REQ_GET);
	return true;
}

/* A self-signed P-256 certificate for 127.0.0.1 and localhost. */
static inline bool fake_make_cert(const char *cert, const char *key)
{
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd),
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
	         "-days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
	         "-keyout '%s' -out '%s' 2>/dev/null",
	         key, cert);
	return system(cmd) == 0;
}

static inline bool fake_start(fake_vault *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	signal(SIGPIPE, SIG_IGN); /* a client that hangs up mid-handshake must not kill the test */
	snprintf(f->dir, sizeof(f->dir), "%s/bkv-fake-vault.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(f->dir) == NULL)
		return false;
	snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/key.pem", f->dir);
	snprintf(f->other_cert, sizeof(f->other_cert), "%s/other-cert.pem", f->dir);
	snprintf(f->other_key, sizeof(f->other_key), "%s/other-key.pem", f->dir);
	if (!fake_make_cert(f->cert, f->key) || !fake_make_cert(f->other_cert, f->other_key))
		return false;
	f->ssl = SSL_CTX_new(TLS_server_method());
	if (f->ssl == NULL || SSL_CTX_use_certificate_chain_file(f->ssl, f->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(f->ssl, f->key, SSL_FILETYPE_PEM) != 1)
		return false;
	f->base = event_base_new();
	f->tls_http = evhttp_new(f->base);
	f->plain_http = evhttp_new(f->base);
	if (f->base == NULL || f->tls_http == NULL || f->plain_http == NULL ||
	    pipe(f->stop_pipe) != 0)
		return false;
	evhttp_set_bevcb(f->tls_http, fake_tls_bev, f);
	if (!fake_bind(f, f->tls_http, &f->tls_port) ||
	    !fake_bind(f, f->plain_http, &f->plain_port))
		return false;
	f->stop_event = event_new(f->base, f->stop_pipe[0], EV_READ, fake_stop_cb, f->base);
	if (f->stop_event == NULL || event_add(f->stop_event, NULL) != 0)
		return false;
	fake_set(f, 500, "text/plain", "no answer set", 13);
	return pthread_create(&f->thread, NULL, fake_run, f) == 0;
}

static inline int fake_remove_entry(const char *path, const struct stat *st, int flag,
                                    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static inline void fake_stop(fake_vault *f)
{
	if (f->base != NULL && f->stop_event != NULL) {
		if (write(f->stop_pipe[1], "x", 1) == 1)
			pthread_join(f->thread, NULL);
	}
	if (f->stop_event != NULL)
		event_free(f->stop_event);
	if (f->tls_http != NULL)
		evhttp_free(f->tls_http);
	if (f->plain_http != NULL)
		evhttp_free(f->plain_http);
	if (f->base != NULL)
		event_base_free(f->base);
	SSL_CTX_free(f->ssl);
	if (f->stop_pipe[0] > 0) {
		close(f->stop_pipe[0]);
		close(f->stop_pipe[1]);
	}
	if (f->dir[0] != '\0')
		nftw(f->dir, fake_remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	pthread_mutex_destroy(&f->lock);
}

#endif
