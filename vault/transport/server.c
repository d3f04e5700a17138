/*
 * server.c - one worker's event loop: the listening socket, TLS, routing and graceful
 * shutdown. Requests are handled synchronously on the loop (the token serializes work
 * inside a process anyway); concurrency comes from running several worker processes on
 * the same SO_REUSEPORT port.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>

#include "server_internal.h"

#define SERVICE_PREFIX    "/bkv.v1.BackupKeyVault/"
#define EVHTTP_BODY_LIMIT (1024 * 1024) /* above the Connect cap, which answers properly */
#define DRAIN_SECONDS     2

uint64_t bkv_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t bkv_now_ms(void)
{
	return bkv_now_us() / 1000u;
}

int bkv_listen(const char *host, const char *port, bool listening, char *why, size_t why_len)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(why, why_len, "cannot resolve listen address %s:%s: %s", host, port,
		         gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		            ai->ai_protocol);
		if (fd < 0)
			continue;
		int one = 1;
		/* TCP_NODELAY on the listener is inherited by accepted sockets: without it TLS
		 * responses stall ~40 ms on Nagle plus delayed ACK. */
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
		    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
		    (listening && listen(fd, 1024) != 0)) {
			snprintf(why, why_len, "cannot listen on %s:%s: %s", host, port,
			         strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

static void reply_text(struct evhttp_request *req, int code, const char *type, const char *text,
                       size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	if (buf != NULL)
		evbuffer_add(buf, text, len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	evhttp_send_reply(req, code, NULL, buf);
	if (buf != NULL)
		evbuffer_free(buf);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	bkv_server_ctx *ctx = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const bool get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;
	if (path == NULL) {
		reply_text(req, 400, "text/plain", "bad request\n", 12);
	} else if (strncmp(path, SERVICE_PREFIX, sizeof(SERVICE_PREFIX) - 1) == 0) {
		bkv_connect_handle(ctx, req, path + sizeof(SERVICE_PREFIX) - 1);
	} else if (strcmp(path, "/healthz") == 0 && get) {
		reply_text(req, 200, "text/plain", "ok\n", 3);
	} else { /* /metrics included: it is served on [vault] metrics_listen only */
		reply_text(req, 404, "text/plain", "not found\n", 10);
	}
}

static struct bufferevent *make_tls_bev(struct event_base *base, void *arg)
{
	SSL *ssl = SSL_new((SSL_CTX *)arg);
	if (ssl == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                      BEV_OPT_CLOSE_ON_FREE);
}

typedef struct shutdown_state {
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	bool draining;
} shutdown_state;

static void on_signal(evutil_socket_t sig, short events, void *arg)
{
	(void)sig;
	(void)events;
	shutdown_state *s = arg;
	if (s->draining)
		return;
	s->draining = true;
	/* Stop accepting; give connections in flight a moment to finish. */
	if (s->bound != NULL)
		evhttp_del_accept_socket(s->http, s->bound);
	s->bound = NULL;
	struct timeval grace = {DRAIN_SECONDS, 0};
	event_base_loopexit(s->base, &grace);
}

int bkv_server_run(const bkv_server_settings *settings, bkv_vault *vault)
{
	int rc = 1;
	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	struct event *sigterm = NULL, *sigint = NULL;
	if (http == NULL)
		goto done;
	bkv_server_ctx ctx = {.settings = settings, .vault = vault, .base = base};
	evhttp_set_default_content_type(http, NULL);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_max_body_size(http, EVHTTP_BODY_LIMIT);
	evhttp_set_timeout(http, 30);
	if (settings->tls != NULL)
		evhttp_set_bevcb(http, make_tls_bev, settings->tls);
	evhttp_set_gencb(http, on_request, &ctx);
	/* evhttp closes the socket it accepts on when freed; give it its own descriptor. */
	int fd = dup(settings->listen_fd);
	shutdown_state sd = {.base = base, .http = http};
	sd.bound = fd >= 0 ? evhttp_accept_socket_with_handle(http, fd) : NULL;
	if (sd.bound == NULL) {
		if (fd >= 0)
			close(fd);
		goto done;
	}
	sigterm = evsignal_new(base, SIGTERM, on_signal, &sd);
	sigint = evsignal_new(base, SIGINT, on_signal, &sd);
	if (sigterm == NULL || sigint == NULL || event_add(sigterm, NULL) != 0 ||
	    event_add(sigint, NULL) != 0)
		goto done;
	rc = event_base_dispatch(base) < 0 ? 1 : 0;
done:
	if (sigterm != NULL)
		event_free(sigterm);
	if (sigint != NULL)
		event_free(sigint);
	if (http != NULL)
		evhttp_free(http);
	if (base != NULL)
		event_base_free(base);
	return rc;
}
