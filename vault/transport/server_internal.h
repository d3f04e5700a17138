/*
 * server_internal.h - the per-worker server context shared by server.c and connect.c.
 */
#ifndef BKV_SERVER_INTERNAL_H
#define BKV_SERVER_INTERNAL_H

#include <event2/event.h>

#include "server.h"

struct bkv_server_ctx {
	const bkv_server_settings *settings;
	bkv_vault *vault;
	struct event_base *base;
	/* Token recovery with exponential backoff (ms). */
	bool token_down;
	uint64_t token_retry_at_ms;
	uint64_t token_backoff_ms;
	/* Connections open on this worker (server.c), and whether it is shutting down. */
	struct bkv_connection *connections;
	uint32_t connection_count;
	bool draining;
	/* RPCs waiting for a free fiber, oldest first, and the tick that resumes waiting
	 * fibers while any is busy. */
	struct rpc_call *calls_head, *calls_tail;
	struct event *fiber_tick;
	/* The descriptor a fiber waits on (a database socket), once (bkv_fibers_set_watch). */
	struct event *fiber_fd;
};

uint64_t bkv_now_ms(void);
/* Answers req with code and text of len bytes, as Content-Type type. */
struct evhttp_request;
void bkv_reply_text(struct evhttp_request *req, int code, const char *type, const char *text,
                    size_t len);
uint64_t bkv_now_us(void);
/* evhttp_send_reply, then the response joined into one piece of the connection's output,
 * so that TLS sends it as one record with one write(2). */
struct evbuffer;
void bkv_send_reply(struct evhttp_request *req, int code, const char *reason,
                    struct evbuffer *body);

#endif
