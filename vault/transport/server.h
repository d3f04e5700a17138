/*
 * server.h - one worker's HTTP(S) server: libevent evhttp, TLS through
 * bufferevent_openssl, the Connect protocol (connect.c) and /healthz (/metrics has a
 * listener of its own: metrics.h).
 *
 * The transport sees requests, statuses and encoded messages only. It reaches the token
 * and the database through the handlers, never directly: it does not call PKCS#11.
 */
#ifndef BKV_SERVER_H
#define BKV_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "auth.h"
#include "handlers.h"
#include "metrics.h"
#include "ratelimit.h"

#define BKV_CONNECT_MAX_BODY     (64 * 1024)
#define BKV_SERVER_DRAIN_SECONDS 2

/* What one worker gives one client at most ([limits] in bkvd's configuration). */
typedef struct bkv_server_limits {
	uint32_t max_header_bytes; /* request line and headers; evhttp answers 400 beyond */
	uint32_t max_headers;      /* header fields in one request; 431 beyond */
	uint32_t idle_timeout_s;   /* no byte in either direction for this long: closed */
	uint32_t read_timeout_s;   /* a request must arrive whole within this of its first byte
	                              (of the connection, for the first one: TLS handshake too) */
	uint32_t max_connections;  /* open connections; beyond it new ones are closed at once */
} bkv_server_limits;

typedef struct bkv_server_settings {
	int listen_fd; /* bound and listening (SO_REUSEPORT), owned by the caller */
	SSL_CTX *tls;  /* NULL for plain HTTP */
	const bkv_auth *auth;
	bkv_metrics *metrics;
	FILE *request_log; /* JSON lines, one per request; NULL for none */
	/* Re-establishes the worker's token session after a device failure. */
	bool (*recover_token)(void *arg);
	void *recover_arg;
	bkv_rate_limiter *rate_limiter; /* shared by the workers; NULL for no limits */
	bkv_server_limits limits;
	/* Fibers to run RPCs on, so that while one waits for its commit the loop serves
	 * others, or NULL to run each on the loop. Whoever waits on a fiber yields
	 * (storage.h, bkv_storage_set_waiter); the loop resumes the waiting fibers when wake_fd
	 * (an eventfd, or -1) is readable, and every 100 ms while any waits. */
	struct bkv_fibers *fibers;
	int wake_fd;
} bkv_server_settings;

/* Serves until SIGTERM/SIGINT: then stops accepting, closes idle connections, lets requests
 * in flight finish (for at most BKV_SERVER_DRAIN_SECONDS) and returns 0: at once when no
 * connection is open. Returns non-zero if the loop cannot start. */
int bkv_server_run(const bkv_server_settings *settings, bkv_vault *vault);

/* ---- connect.c ---- */

struct evhttp_request;
typedef struct bkv_server_ctx bkv_server_ctx;
void bkv_connect_handle(bkv_server_ctx *ctx, struct evhttp_request *req, const char *method);

/* A socket bound to host:port with SO_REUSEPORT and TCP_NODELAY; port 0 picks one. With
 * listening false it only holds the port (the kernel routes no connection to it), so the
 * master can reserve the port while each worker listens on a socket of its own and the
 * kernel spreads connections across them. */
int bkv_listen(const char *host, const char *port, bool listening, char *why, size_t why_len);

/* A socket bound to host:port (what names it in messages); shared: with SO_REUSEPORT, as
 * bkv_listen. Without it (SO_REUSEADDR only, so connections left in TIME_WAIT do not count)
 * its bind fails while any other socket listens on the address, including the SO_REUSEPORT
 * listeners of another bkvd: *in_use is then true and why says so. */
int bkv_bind(const char *what, const char *host, const char *port, bool shared, bool listening,
             bool *in_use, char *why, size_t why_len);

#endif
