/*
 * server.c - one worker's event loop: the listening socket, TLS, routing and graceful
 * shutdown. Concurrency comes from several worker processes on the same SO_REUSEPORT port
 * and, with fibers (bkv_server_settings.fibers), from several requests in flight in each:
 * a request runs on the loop's thread until it returns or waits for its commit, and while
 * it waits the loop serves others (the token serializes work inside a process anyway, so
 * nothing is lost by running one at a time).
 *
 * The edge is strict and bounded (bkv_server_limits): a client gets at most so many
 * header bytes and fields, must deliver each request whole within read_timeout of its
 * first byte (a trickle that keeps evhttp's per-read idle timer alive is still cut), and a
 * worker holds at most max_connections (beyond it a new connection is closed at once). A
 * request whose framing two HTTP parsers could read differently (duplicate or malformed
 * Content-Length, a coding but chunked, a body on GET, whitespace in a field name; libevent
 * refuses Content-Length with Transfer-Encoding itself) is answered 400 and its connection
 * closed, so nothing after it on that connection is ever read as a request. Accept errors (EMFILE
 * at the descriptor limit) pause the listener with backoff and log one line a minute at most.
 *
 * The loop uses libevent's epoll change list, and each response goes out in the loop pass that
 * made it (bkv_send_reply), so a keep-alive request costs one epoll_ctl, not four. The change
 * list is unsafe with descriptors cloned by dup(): none registered here may be one.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
#include <event2/bufferevent_struct.h> /* ev_write, for bkv_send_reply */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "fiber.h"
#include "server_internal.h"

#define SERVICE_PREFIX        "/bkv.v1.BackupKeyVault/"
#define EVHTTP_BODY_LIMIT     (1024 * 1024) /* above the Connect cap, which answers properly */
#define DRAIN_CHECK_MS        20
#define ACCEPT_BACKOFF_MIN_MS 50
#define ACCEPT_BACKOFF_MAX_MS 1000
#define ACCEPT_LOG_EVERY_S    60
#define FIBER_TICK_MS         100 /* waiting fibers recheck (a dead committer) this often */

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

int bkv_bind(const char *what, const char *host, const char *port, bool shared, bool listening,
             bool *in_use, char *why, size_t why_len)
{
	*in_use = false;
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(why, why_len, "cannot resolve %s %s:%s: %s", what, host, port,
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
		    (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
		    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
		    (listening && listen(fd, 1024) != 0)) {
			*in_use = !shared && errno == EADDRINUSE;
			if (*in_use)
				snprintf(why, why_len,
				         "%s %s:%s is already in use by another process (another "
				         "bkvd?); refusing to share it",
				         what, host, port);
			else
				snprintf(why, why_len, "cannot listen on %s %s:%s: %s", what, host,
				         port, strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

int bkv_listen(const char *host, const char *port, bool listening, char *why, size_t why_len)
{
	bool in_use;
	return bkv_bind("the listen address", host, port, true, listening, &in_use, why, why_len);
}

/* The largest response that bkv_send_reply copies into one piece: one TLS record's payload. */
#define COALESCE_MAX 16384

void bkv_send_reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	evhttp_send_reply(req, code, reason, body);
	if (evcon == NULL)
		return;
	/* evhttp leaves the status line and headers in one chain of the connection's output and
	 * the body in another, and the TLS bufferevent writes each chain as its own record with
	 * its own write(2): joined, a response is one record and one system call. */
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	struct evbuffer *out = bev != NULL ? bufferevent_get_output(bev) : NULL;
	const size_t pending = out != NULL ? evbuffer_get_length(out) : 0;
	if (pending > 0 && pending <= COALESCE_MAX)
		evbuffer_pullup(out, -1);
	/* Write it in this pass of the loop, as if epoll had found the socket writable (it
	 * almost always is; if not, the write waits for epoll as before): the bufferevent's own
	 * write callback runs once the current callback has returned, and the change list then
	 * has no epoll_ctl to make for the response. */
	if (pending > 0)
		event_active(&bev->ev_write, EV_WRITE, 1);
}

void bkv_reply_text(struct evhttp_request *req, int code, const char *type, const char *text,
                    size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	if (buf != NULL)
		evbuffer_add(buf, text, len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	bkv_send_reply(req, code, NULL, buf);
	if (buf != NULL)
		evbuffer_free(buf);
}

/* Answers and closes the connection: nothing after this request on it is read. */
static void refuse_request(struct evhttp_request *req, int code, const char *why)
{
	char text[128];
	int len = snprintf(text, sizeof(text), "%s\n", why);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	bkv_reply_text(req, code, "text/plain", text, (size_t)len);
}

/* RFC 9110 tchar: a field name with anything else (a space before the colon, say) is
 * one a proxy may read under another name than evhttp does. */
static bool is_field_name(const char *name)
{
	static const char tchar_symbols[] = "!#$%&'*+-.^_`|~";
	if (*name == '\0')
		return false;
	for (const char *c = name; *c != '\0'; c++) {
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr(tchar_symbols, *c) != NULL))
			return false;
	}
	return true;
}

static bool is_digits(const char *s)
{
	return *s != '\0' && strspn(s, "0123456789") == strlen(s);
}

/* Why a request's framing is refused (400), or NULL. libevent 2.1.12 (Debian 12) answers
 * 400 itself to Content-Length with Transfer-Encoding, to two Transfer-Encoding fields and
 * to a coding list that starts with "chunked" and goes on; it frames a body by the first of
 * several Content-Length fields, takes another Transfer-Encoding ("gzip") as none, and
 * reads the bytes after a GET's head as the next request: a proxy in front may frame each
 * of these differently, so none of them is served. */
static const char *framing_error(struct evhttp_request *req)
{
	const struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *content_length = NULL, *transfer_encoding = NULL;
	unsigned lengths = 0;
	for (const struct evkeyval *h = in->tqh_first; h != NULL; h = h->next.tqe_next) {
		if (!is_field_name(h->key))
			return "invalid header field name";
		if (evutil_ascii_strcasecmp(h->key, "Content-Length") == 0) {
			lengths++;
			content_length = h->value;
		} else if (evutil_ascii_strcasecmp(h->key, "Transfer-Encoding") == 0) {
			transfer_encoding = h->value;
		}
	}
	if (lengths > 1)
		return "duplicate Content-Length";
	if (transfer_encoding != NULL && evutil_ascii_strcasecmp(transfer_encoding, "chunked") != 0)
		return "unsupported Transfer-Encoding (only chunked)";
	if (lengths > 0 && !is_digits(content_length))
		return "invalid Content-Length";
	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET &&
	    (transfer_encoding != NULL ||
	     (lengths > 0 && strspn(content_length, "0") != strlen(content_length))))
		return "a GET request has no body";
	return NULL;
}

static size_t header_count(struct evhttp_request *req)
{
	size_t n = 0;
	const struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	for (const struct evkeyval *h = in->tqh_first; h != NULL; h = h->next.tqe_next)
		n++;
	return n;
}

/* ---- RPCs on fibers ----
 *
 * With fibers, each RPC runs on one; an RPC that arrives while every fiber is busy waits
 * in a queue (at most one per connection: evhttp reads nothing more from a connection
 * until its request is answered). A fiber that yields leaves its request unanswered, so
 * evhttp keeps it: if the connection closes meanwhile, evhttp detaches the request
 * instead of freeing it, and the answer, when it comes, frees it without sending. */

typedef struct rpc_call {
	bkv_server_ctx *ctx;
	struct evhttp_request *req;
	const char *method; /* in req's URI */
	struct rpc_call *next;
} rpc_call;

static void run_call(void *arg)
{
	rpc_call *call = arg;
	bkv_connect_handle(call->ctx, call->req, call->method);
	free(call);
}

static void check_drained(bkv_server_ctx *ctx)
{
	if (ctx->draining && ctx->connection_count == 0 &&
	    bkv_fibers_busy(ctx->settings->fibers) == 0)
		event_base_loopbreak(ctx->base);
}

/* After fibers ran: start queued RPCs on the free ones, and keep the tick while any is
 * busy. */
static void fibers_ran(bkv_server_ctx *ctx)
{
	bkv_fibers *fibers = ctx->settings->fibers;
	while (bkv_fibers_kicked(fibers))
		bkv_fibers_resume(fibers, false); /* first those that waited for a connection */
	while (ctx->calls_head != NULL) {
		rpc_call *call = ctx->calls_head;
		ctx->calls_head = call->next;
		if (ctx->calls_head == NULL)
			ctx->calls_tail = NULL;
		if (!bkv_fibers_run(fibers, run_call, call)) {
			call->next = ctx->calls_head; /* every fiber is busy: back to the front */
			ctx->calls_head = call;
			if (ctx->calls_tail == NULL)
				ctx->calls_tail = call;
			break;
		}
	}
	const bool busy = bkv_fibers_busy(fibers) > 0;
	if (busy && !evtimer_pending(ctx->fiber_tick, NULL)) {
		const struct timeval tick = {0, FIBER_TICK_MS * 1000};
		evtimer_add(ctx->fiber_tick, &tick);
	} else if (!busy) {
		evtimer_del(ctx->fiber_tick);
	}
	check_drained(ctx);
}

static void handle_rpc(bkv_server_ctx *ctx, struct evhttp_request *req, const char *method)
{
	if (ctx->settings->fibers == NULL) {
		bkv_connect_handle(ctx, req, method);
		return;
	}
	rpc_call *call = malloc(sizeof(*call));
	if (call == NULL) {
		bkv_reply_text(req, 503, "text/plain", "out of memory\n", 14);
		return;
	}
	*call = (rpc_call){.ctx = ctx, .req = req, .method = method};
	if (ctx->calls_tail != NULL)
		ctx->calls_tail->next = call;
	else
		ctx->calls_head = call;
	ctx->calls_tail = call;
	fibers_ran(ctx);
}

/* Reads the wake eventfd back to zero (nonblocking: nothing to read is no error). */
static void clear_wake(int fd)
{
	uint64_t count;
	if (read(fd, &count, sizeof(count)) != (ssize_t)sizeof(count)) {
		/* EAGAIN: nobody wrote since the last read */
	}
}

/* A commit this worker waits for is done (the eventfd): the fibers whose writes are done
 * go on. Or the tick: every waiting fiber looks again (a committer may have died). */
static void on_fibers_wake(evutil_socket_t fd, short events, void *arg)
{
	bkv_server_ctx *ctx = arg;
	if (events & EV_READ)
		clear_wake(fd);
	bkv_fibers_resume(ctx->settings->fibers, !(events & EV_READ));
	fibers_ran(ctx);
}

/* The descriptor a fiber waits on is readable: it goes on. */
static void on_fiber_fd(evutil_socket_t fd, short events, void *arg)
{
	(void)events;
	bkv_server_ctx *ctx = arg;
	bkv_fibers_resume_fd(ctx->settings->fibers, fd);
	fibers_ran(ctx);
}

/* A fiber yields on fd: watch it, once. Armed afresh each time, since a reconnect may
 * give a new socket the number of one closed while it was watched. */
static void watch_fiber_fd(void *arg, int fd)
{
	bkv_server_ctx *ctx = arg;
	event_del(ctx->fiber_fd);
	if (event_assign(ctx->fiber_fd, ctx->base, fd, EV_READ, on_fiber_fd, ctx) != 0 ||
	    event_add(ctx->fiber_fd, NULL) != 0) {
		/* the tick resumes it within FIBER_TICK_MS */
	}
}

/* After the loop: fibers still waiting (the drain time ran out) finish before the
 * connections are freed; their commits end within the commit group's own checks, and a
 * read waiting on its socket looks again at each tick. */
static void finish_fibers(bkv_server_ctx *ctx)
{
	bkv_fibers *fibers = ctx->settings->fibers;
	while (bkv_fibers_busy(fibers) > 0) {
		struct pollfd p = {.fd = ctx->settings->wake_fd, .events = POLLIN};
		if (p.fd >= 0 && poll(&p, 1, FIBER_TICK_MS) > 0)
			clear_wake(p.fd);
		bkv_fibers_resume(fibers, true);
	}
	while (ctx->calls_head != NULL) {
		rpc_call *call = ctx->calls_head;
		ctx->calls_head = call->next;
		free(call); /* its request is freed with its connection */
	}
	ctx->calls_tail = NULL;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	bkv_server_ctx *ctx = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const bool get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;
	const char *framing = framing_error(req);
	if (ctx->draining)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	if (header_count(req) > ctx->settings->limits.max_headers) {
		refuse_request(req, 431, "too many header fields");
	} else if (framing != NULL) {
		refuse_request(req, 400, framing);
	} else if (path == NULL) {
		bkv_reply_text(req, 400, "text/plain", "bad request\n", 12);
	} else if (strncmp(path, SERVICE_PREFIX, sizeof(SERVICE_PREFIX) - 1) == 0) {
		handle_rpc(ctx, req, path + sizeof(SERVICE_PREFIX) - 1);
	} else if (strcmp(path, "/healthz") == 0 && get) {
		bkv_reply_text(req, 200, "text/plain", "ok\n", 3);
	} else { /* /metrics included: it is served on [vault] metrics_listen only */
		bkv_reply_text(req, 404, "text/plain", "not found\n", 10);
	}
}

/* ---- Connections ----
 *
 * evhttp (libevent 2.1) has no per-connection hooks but the bufferevent callback that
 * makes each connection's bufferevent, and a close callback on the connection it builds
 * around it. make_bev creates a bkv_connection with the bufferevent and activates its
 * timer at once; the timer's first run (before any I/O on the new descriptor: it is queued
 * behind the accept, in the same pass of the loop) takes the evhttp connection from the
 * bufferevent's callback argument and registers on_connection_close, which frees it.
 * From then on the timer is the connection's request deadline. */

typedef struct bkv_connection {
	bkv_server_ctx *ctx;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* NULL until adopted */
	struct event *timer;
	struct evbuffer_cb_entry *input_cb, *output_cb;
	bool refused;      /* over max_connections, or no TLS: closed once adopted */
	bool request_open; /* a request has started and its response has not */
	struct bkv_connection *prev, *next;
} bkv_connection;

/* Closes a connection through evhttp's own error path, as if its bufferevent reported
 * what (a read timeout or EOF): evhttp frees it, and on_connection_close frees conn. */
static void connection_fail(bkv_connection *conn, short what)
{
	bufferevent_event_cb event_cb = NULL;
	void *event_arg = NULL;
	bufferevent_getcb(conn->bev, NULL, NULL, &event_cb, &event_arg);
	if (event_cb != NULL)
		event_cb(conn->bev, (short)(BEV_EVENT_READING | what), event_arg);
}

static void arm_deadline(bkv_connection *conn)
{
	struct timeval deadline = {(time_t)conn->ctx->settings->limits.read_timeout_s, 0};
	conn->request_open = true;
	evtimer_add(conn->timer, &deadline);
}

/* Bytes of a request arrived: the first ones start its deadline. */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	bkv_connection *conn = arg;
	if (info->n_added > 0 && !conn->request_open)
		arm_deadline(conn);
}

/* The response is being written: the request is complete. */
static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	bkv_connection *conn = arg;
	if (info->n_added > 0 && conn->request_open) {
		conn->request_open = false;
		evtimer_del(conn->timer);
	}
}

static void on_connection_close(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	bkv_connection *conn = arg;
	bkv_server_ctx *ctx = conn->ctx;
	evbuffer_remove_cb_entry(bufferevent_get_input(conn->bev), conn->input_cb);
	evbuffer_remove_cb_entry(bufferevent_get_output(conn->bev), conn->output_cb);
	event_free(conn->timer);
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		ctx->connections = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	ctx->connection_count--;
	free(conn);
	check_drained(ctx);
}

static void on_connection_timer(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	bkv_connection *conn = arg;
	if (conn->evcon == NULL) {
		void *event_arg = NULL;
		bufferevent_getcb(conn->bev, NULL, NULL, NULL, &event_arg);
		conn->evcon = event_arg;
		evhttp_connection_set_closecb(conn->evcon, on_connection_close, conn);
		if (conn->refused)
			connection_fail(conn, BEV_EVENT_EOF);
		else
			arm_deadline(conn); /* the first request, TLS handshake included */
		return;
	}
	connection_fail(conn, BEV_EVENT_TIMEOUT);
}

typedef struct accept_state {
	struct evconnlistener *listener;
	struct event *retry;
	uint64_t backoff_ms;
	uint64_t logged_at_ms;
	uint64_t unlogged;
	bool logged_once;
} accept_state;

/* The listener's error callback gets evhttp's argument, not ours: one server per process. */
static accept_state *worker_accept;

static void log_rate_limited(accept_state *a, const char *what)
{
	const uint64_t now = bkv_now_ms();
	if (a->logged_once && now - a->logged_at_ms < ACCEPT_LOG_EVERY_S * 1000u) {
		a->unlogged++;
		return;
	}
	fprintf(stderr, "bkvd worker %d: %s (%" PRIu64 " more since the last report)\n",
	        (int)getpid(), what, a->unlogged);
	fflush(stderr);
	a->logged_once = true;
	a->logged_at_ms = now;
	a->unlogged = 0;
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
	bkv_server_ctx *ctx = arg;
	SSL_CTX *tls = ctx->settings->tls;
	struct bufferevent *bev = NULL;
	bkv_connection *conn = calloc(1, sizeof(*conn));
	if (tls != NULL) {
		SSL *ssl = SSL_new(tls);
		if (ssl != NULL)
			bev = bufferevent_openssl_socket_new(
			    base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	}
	/* A TLS connection without its TLS is closed, never served in plaintext. */
	const bool no_tls = tls != NULL && bev == NULL;
	if (bev == NULL)
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (conn != NULL && bev != NULL)
		conn->timer = evtimer_new(base, on_connection_timer, conn);
	if (conn == NULL || bev == NULL || conn->timer == NULL) {
		/* Out of memory. For a NULL bufferevent libevent makes a plain socket one itself:
		 * on a TLS port that would serve plaintext, so the worker stops (and the master
		 * starts another). */
		if (tls != NULL)
			abort();
		free(conn);
		return bev;
	}
	conn->ctx = ctx;
	conn->bev = bev;
	conn->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, conn);
	conn->output_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, conn);
	conn->refused = no_tls || ctx->connection_count >= ctx->settings->limits.max_connections;
	if (conn->refused && !no_tls && worker_accept != NULL)
		log_rate_limited(worker_accept, "max_connections reached; closing new connections");
	conn->next = ctx->connections;
	if (conn->next != NULL)
		conn->next->prev = conn;
	ctx->connections = conn;
	ctx->connection_count++;
	event_active(conn->timer, EV_TIMEOUT, 1);
	if (worker_accept != NULL)
		worker_accept->backoff_ms = 0;
	return bev;
}

/* ---- Accept errors ---- */

static void on_accept_retry(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	accept_state *a = arg;
	if (a->listener != NULL)
		evconnlistener_enable(a->listener);
}

/* accept() failed for another reason than "try again" (EMFILE/ENFILE at the descriptor
 * limit, ENOBUFS, ENOMEM): the connection stays queued and the listener stays readable,
 * so retrying at once would spin. Pause the listener with backoff instead. */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
	(void)arg;
	const int err = errno;
	accept_state *a = worker_accept;
	if (a == NULL)
		return;
	evconnlistener_disable(listener);
	a->backoff_ms = a->backoff_ms == 0 ? ACCEPT_BACKOFF_MIN_MS : a->backoff_ms * 2;
	if (a->backoff_ms > ACCEPT_BACKOFF_MAX_MS)
		a->backoff_ms = ACCEPT_BACKOFF_MAX_MS;
	char what[128];
	snprintf(what, sizeof(what), "accept: %s; pausing new connections", strerror(err));
	log_rate_limited(a, what);
	struct timeval wait = {(time_t)(a->backoff_ms / 1000),
	                       (suseconds_t)(a->backoff_ms % 1000) * 1000};
	evtimer_add(a->retry, &wait);
}

/* ---- Shutdown ---- */

typedef struct shutdown_state {
	bkv_server_ctx *ctx;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	accept_state *accept;
	struct event *drain_check;
	uint64_t drain_until_ms;
} shutdown_state;

static bool connection_idle(const bkv_connection *conn)
{
	return conn->evcon != NULL && !conn->request_open &&
	       evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0;
}

/* While draining: close connections with no request in flight; stop when none is left or
 * the drain time is up. */
static void on_drain_check(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	shutdown_state *s = arg;
	bkv_server_ctx *ctx = s->ctx;
	bkv_connection *next;
	for (bkv_connection *conn = ctx->connections; conn != NULL; conn = next) {
		next = conn->next;
		if (connection_idle(conn))
			connection_fail(conn, BEV_EVENT_EOF);
	}
	if ((ctx->connection_count == 0 && bkv_fibers_busy(ctx->settings->fibers) == 0) ||
	    bkv_now_ms() >= s->drain_until_ms) {
		event_base_loopbreak(ctx->base);
		return;
	}
	struct timeval again = {0, DRAIN_CHECK_MS * 1000};
	evtimer_add(s->drain_check, &again);
}

static void on_signal(evutil_socket_t sig, short events, void *arg)
{
	(void)sig;
	(void)events;
	shutdown_state *s = arg;
	if (s->ctx->draining)
		return;
	s->ctx->draining = true;
	/* Stop accepting; give requests in flight a moment to finish. */
	evtimer_del(s->accept->retry);
	s->accept->listener = NULL;
	if (s->bound != NULL)
		evhttp_del_accept_socket(s->http, s->bound);
	s->bound = NULL;
	s->drain_until_ms = bkv_now_ms() + BKV_SERVER_DRAIN_SECONDS * 1000u;
	on_drain_check(-1, 0, s);
}

int bkv_server_run(const bkv_server_settings *settings, bkv_vault *vault)
{
	int rc = 1;
	const bkv_server_limits *limits = &settings->limits;
	/* The change list folds each request's event changes (reading off while it is
	 * handled, writing on for its response, then off again, reading on) into what differs
	 * at the next epoll_wait: none, when the response is written in the same pass
	 * (bkv_send_reply). libevent warns that it is unsafe with descriptors cloned by dup():
	 * none is registered here (the listener takes settings->listen_fd itself, below). */
	struct event_config *config = event_config_new();
	if (config != NULL)
		event_config_set_flag(config, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	struct event_base *base = config != NULL ? event_base_new_with_config(config) : NULL;
	if (config != NULL)
		event_config_free(config);
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	struct event *sigterm = NULL, *sigint = NULL, *wake = NULL;
	accept_state accept = {0};
	shutdown_state sd = {.http = http, .accept = &accept};
	bkv_server_ctx ctx = {.settings = settings, .vault = vault, .base = base};
	sd.ctx = &ctx;
	if (http == NULL)
		goto done;
	evhttp_set_default_content_type(http, NULL);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_max_body_size(http, EVHTTP_BODY_LIMIT);
	evhttp_set_max_headers_size(http, limits->max_header_bytes);
	evhttp_set_timeout(http, (int)limits->idle_timeout_s);
	evhttp_set_bevcb(http, make_bev, &ctx);
	evhttp_set_gencb(http, on_request, &ctx);
	/* The listener uses the caller's descriptor without closing it (the caller does), and
	 * no copy of it: a dup()ed descriptor would defeat the change list above. Backlog 0:
	 * the socket is listening already. */
	struct evconnlistener *listener = evconnlistener_new(
	    base, NULL, NULL, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 0, settings->listen_fd);
	sd.bound = listener != NULL ? evhttp_bind_listener(http, listener) : NULL;
	if (sd.bound == NULL) {
		if (listener != NULL)
			evconnlistener_free(listener);
		goto done;
	}
	accept.listener = evhttp_bound_socket_get_listener(sd.bound);
	accept.retry = evtimer_new(base, on_accept_retry, &accept);
	sd.drain_check = evtimer_new(base, on_drain_check, &sd);
	sigterm = evsignal_new(base, SIGTERM, on_signal, &sd);
	sigint = evsignal_new(base, SIGINT, on_signal, &sd);
	if (accept.retry == NULL || sd.drain_check == NULL || sigterm == NULL || sigint == NULL ||
	    event_add(sigterm, NULL) != 0 || event_add(sigint, NULL) != 0)
		goto done;
	if (settings->fibers != NULL) {
		ctx.fiber_tick = evtimer_new(base, on_fibers_wake, &ctx);
		ctx.fiber_fd = event_new(base, -1, 0, on_fiber_fd, &ctx);
		wake = settings->wake_fd >= 0
		           ? event_new(base, settings->wake_fd, EV_READ | EV_PERSIST,
		                       on_fibers_wake, &ctx)
		           : NULL;
		if (ctx.fiber_tick == NULL || ctx.fiber_fd == NULL ||
		    (settings->wake_fd >= 0 && wake == NULL) ||
		    (wake != NULL && event_add(wake, NULL) != 0))
			goto done;
		bkv_fibers_set_watch(settings->fibers, watch_fiber_fd, &ctx);
	}
	worker_accept = &accept;
	evconnlistener_set_error_cb(accept.listener, on_accept_error);
	rc = event_base_dispatch(base) < 0 ? 1 : 0;
done:
	worker_accept = NULL;
	if (settings->fibers != NULL) {
		finish_fibers(&ctx);
		bkv_fibers_set_watch(settings->fibers, NULL, NULL);
	}
	if (ctx.fiber_fd != NULL)
		event_free(ctx.fiber_fd);
	if (wake != NULL)
		event_free(wake);
	if (ctx.fiber_tick != NULL)
		event_free(ctx.fiber_tick);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sigint != NULL)
		event_free(sigint);
	if (http != NULL)
		evhttp_free(http);
	/* evhttp_free calls the close callback of connected connections only. */
	while (ctx.connections != NULL) {
		bkv_connection *conn = ctx.connections;
		ctx.connections = conn->next;
		event_free(conn->timer);
		free(conn);
	}
	if (accept.retry != NULL)
		event_free(accept.retry);
	if (sd.drain_check != NULL)
		event_free(sd.drain_check);
	if (base != NULL)
		event_base_free(base);
	return rc;
}
