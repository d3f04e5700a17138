/*
 * metrics.c - lock-free shared counters, their Prometheus text rendering, and the
 * plain-HTTP listener that serves them ([vault] metrics_listen), apart from the public
 * port: the public port never answers /metrics.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "handlers.h"
#include "metrics.h"
#include "server_internal.h"

const char *const bkv_metrics_method_names[BKV_METRICS_METHODS] = {
    "GetConfig",     "RegisterStart", "RegisterFinish", "RecoverStart",
    "RecoverFinish", "GetStatus",     "Delete",         "unknown",
};

const char *const bkv_metrics_token_op_names[BKV_METRICS_TOKEN_OPS] = {
    "encrypt",
    "decrypt",
    "hmac",
    "ecdh",
};

/* Upper bounds in microseconds. */
static const uint64_t bucket_bounds_us[BKV_METRICS_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, UINT64_MAX,
};

bkv_metrics *bkv_metrics_create(void)
{
	void *p = mmap(NULL, sizeof(bkv_metrics), PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void bkv_metrics_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void bkv_metrics_observe(bkv_histogram *h, uint64_t micros)
{
	for (size_t i = 0; i < BKV_METRICS_BUCKETS; i++) {
		if (micros <= bucket_bounds_us[i])
			bkv_metrics_add(&h->buckets[i], 1);
	}
	bkv_metrics_add(&h->count, 1);
	bkv_metrics_add(&h->sum_us, micros);
}

static uint64_t load(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void render_histogram(FILE *f, const char *name, const char *label_key, const char *label,
                             const bkv_histogram *h)
{
	for (size_t i = 0; i < BKV_METRICS_BUCKETS; i++) {
		if (bucket_bounds_us[i] == UINT64_MAX)
			fprintf(f, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name,
			        label_key, label, load(&h->buckets[i]));
		else
			fprintf(f, "%s_bucket{%s=\"%s\",le=\"%g\"} %" PRIu64 "\n", name, label_key,
			        label, (double)bucket_bounds_us[i] / 1e6, load(&h->buckets[i]));
	}
	fprintf(f, "%s_sum{%s=\"%s\"} %g\n", name, label_key, label,
	        (double)load(&h->sum_us) / 1e6);
	fprintf(f, "%s_count{%s=\"%s\"} %" PRIu64 "\n", name, label_key, label, load(&h->count));
}

char *bkv_metrics_render(const bkv_metrics *m, const bkv_metrics_extra *extra, size_t *len)
{
	char *out = NULL;
	FILE *f = open_memstream(&out, len);
	if (f == NULL)
		return NULL;
	fprintf(f, "# HELP bkv_requests_total RPCs by method and Connect code.\n"
	           "# TYPE bkv_requests_total counter\n");
	for (size_t i = 0; i < BKV_METRICS_METHODS; i++) {
		for (size_t c = 0; c < BKV_METRICS_CODES; c++) {
			uint64_t n = load(&m->requests[i][c]);
			if (n > 0)
				fprintf(f,
				        "bkv_requests_total{method=\"%s\",code=\"%s\"} %" PRIu64
				        "\n",
				        bkv_metrics_method_names[i], bkv_code_name((bkv_code)c), n);
		}
	}
	fprintf(f, "# HELP bkv_request_duration_seconds RPC latency.\n"
	           "# TYPE bkv_request_duration_seconds histogram\n");
	for (size_t i = 0; i < BKV_METRICS_METHODS; i++)
		render_histogram(f, "bkv_request_duration_seconds", "method",
		                 bkv_metrics_method_names[i], &m->latency[i]);
	fprintf(f, "# HELP bkv_token_operation_duration_seconds PKCS#11 operation latency.\n"
	           "# TYPE bkv_token_operation_duration_seconds histogram\n");
	for (size_t i = 0; i < BKV_METRICS_TOKEN_OPS; i++)
		render_histogram(f, "bkv_token_operation_duration_seconds", "op",
		                 bkv_metrics_token_op_names[i], &m->token_latency[i]);
	fprintf(f,
	        "# HELP bkv_attempts_consumed_total Recovery attempts committed.\n"
	        "# TYPE bkv_attempts_consumed_total counter\n"
	        "bkv_attempts_consumed_total %" PRIu64 "\n"
	        "# HELP bkv_records_destroyed_total Records destroyed after the attempt limit.\n"
	        "# TYPE bkv_records_destroyed_total counter\n"
	        "bkv_records_destroyed_total %" PRIu64 "\n"
	        "# HELP bkv_worker_restarts_total Worker processes restarted after a crash.\n"
	        "# TYPE bkv_worker_restarts_total counter\n"
	        "bkv_worker_restarts_total %" PRIu64 "\n",
	        load(&m->attempts_consumed), load(&m->records_destroyed),
	        load(&m->worker_restarts));
	fprintf(f, "# HELP bkv_rate_limited_total Requests a rate limit refused, by method.\n"
	           "# TYPE bkv_rate_limited_total counter\n");
	for (size_t i = 0; i < BKV_METRICS_METHODS; i++)
		fprintf(f, "bkv_rate_limited_total{method=\"%s\"} %" PRIu64 "\n",
		        bkv_metrics_method_names[i], load(&m->rate_limited[i]));
	if (extra != NULL && extra->render != NULL)
		extra->render(f, extra->arg);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

typedef struct metrics_source {
	const bkv_metrics *m;
	const bkv_metrics_extra *extra;
} metrics_source;

static void on_metrics_request(struct evhttp_request *req, void *arg)
{
	const metrics_source *src = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || strcmp(path, "/metrics") != 0 ||
	    evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		bkv_reply_text(req, 404, "text/plain", "not found\n", 10);
		return;
	}
	size_t len = 0;
	char *text = bkv_metrics_render(src->m, src->extra, &len);
	if (text != NULL)
		bkv_reply_text(req, 200, "text/plain; version=0.0.4", text, len);
	else
		bkv_reply_text(req, 500, "text/plain", "metrics unavailable\n", 20);
	free(text);
}

static void on_stop(evutil_socket_t sig, short events, void *arg)
{
	(void)sig;
	(void)events;
	event_base_loopbreak(arg);
}

int bkv_metrics_serve(int listen_fd, const bkv_metrics *m, const bkv_metrics_extra *extra)
{
	const metrics_source src = {m, extra};
	int rc = 1;
	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	struct event *sigterm = NULL, *sigint = NULL;
	if (http == NULL)
		goto done;
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
	evhttp_set_max_body_size(http, 1024);
	evhttp_set_max_headers_size(http, 8192);
	evhttp_set_timeout(http, 10);
	evhttp_set_gencb(http, on_metrics_request, (void *)&src);
	if (evhttp_accept_socket_with_handle(http, listen_fd) == NULL) {
		close(listen_fd);
		goto done;
	}
	sigterm = evsignal_new(base, SIGTERM, on_stop, base);
	sigint = evsignal_new(base, SIGINT, on_stop, base);
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
