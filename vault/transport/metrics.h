/*
 * metrics.h - request and token metrics shared by all worker processes (the master maps
 * them MAP_SHARED before forking; workers update them with atomic adds), rendered in the
 * Prometheus text format at GET /metrics on a listener of their own ([vault]
 * metrics_listen, plain HTTP), never on the public port.
 */
#ifndef BKV_METRICS_H
#define BKV_METRICS_H

#include <stdint.h>
#include <stdio.h>

#define BKV_METRICS_METHODS   8  /* the seven RPCs and "unknown" */
#define BKV_METRICS_CODES     13 /* bkv_code values (BKV_CODE_COUNT) */
#define BKV_METRICS_BUCKETS   14
#define BKV_METRICS_TOKEN_OPS 4

typedef struct bkv_histogram {
	uint64_t buckets[BKV_METRICS_BUCKETS]; /* cumulative counts per upper bound */
	uint64_t count;
	uint64_t sum_us;
} bkv_histogram;

typedef struct bkv_metrics {
	uint64_t requests[BKV_METRICS_METHODS][BKV_METRICS_CODES];
	bkv_histogram latency[BKV_METRICS_METHODS];
	bkv_histogram token_latency[BKV_METRICS_TOKEN_OPS];
	uint64_t attempts_consumed;
	uint64_t records_destroyed;
	uint64_t worker_restarts;
	uint64_t rate_limited[BKV_METRICS_METHODS]; /* requests a rate limit refused */
} bkv_metrics;

extern const char *const bkv_metrics_method_names[BKV_METRICS_METHODS];
extern const char *const bkv_metrics_token_op_names[BKV_METRICS_TOKEN_OPS];

/* Shared anonymous mapping; NULL on failure. */
bkv_metrics *bkv_metrics_create(void);
void bkv_metrics_observe(bkv_histogram *h, uint64_t micros);
void bkv_metrics_add(uint64_t *counter, uint64_t n);
/* More samples, written after m's in the same exposition (NULL: none). */
typedef struct bkv_metrics_extra {
	void (*render)(FILE *f, void *arg);
	void *arg;
} bkv_metrics_extra;
/* Writes the Prometheus text exposition into a malloc'd string. */
char *bkv_metrics_render(const bkv_metrics *m, const bkv_metrics_extra *extra, size_t *len);
/* Serves GET /metrics (and 404 for anything else) in plain HTTP on listen_fd (bound and
 * listening; owned from here on) until SIGTERM or SIGINT; returns 0 then, non-zero if the
 * loop cannot start. Runs in a process of its own (bkvd serve forks it). */
int bkv_metrics_serve(int listen_fd, const bkv_metrics *m, const bkv_metrics_extra *extra);

#endif
