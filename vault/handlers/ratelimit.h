/*
 * ratelimit.h - token-bucket rate limits per account and per client address, per method.
 *
 * Counted attempts (recover.c) stay the security boundary; these limits only keep a script
 * from spending the HSM's and the database's time. A check runs before any token or
 * storage work of the request: per address before the bearer token is verified, per
 * account right after.
 *
 * The buckets live in one table in shared memory, mapped by the master before it forks,
 * so all workers of a host share them. Keys are a keyed hash (the log key) of the scope,
 * the method and the account id or address: the table never holds an account id. The
 * table has a fixed number of slots; a new key takes a free slot, a slot whose bucket has
 * refilled (it is equivalent to an absent one), or else the slot nearest to refilled.
 * When the storage shares buckets between hosts (PostgreSQL), the per-account bucket is
 * also taken there, so all replicas share one per-account budget.
 */
#ifndef BKV_RATELIMIT_H
#define BKV_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "handlers.h"

enum {
	BKV_RATE_REGISTER_START,
	BKV_RATE_REGISTER_FINISH,
	BKV_RATE_RECOVER_START,
	BKV_RATE_RECOVER_FINISH,
	BKV_RATE_GET_STATUS,
	BKV_RATE_DELETE,
	BKV_RATE_METHODS,
};

#define BKV_RATE_COUNT_MAX 100000u
#define BKV_RATE_BURST_MAX 100000u
#define BKV_RATE_KEY_BYTES 16
#define BKV_RATE_SLOTS     16384u /* shared table size: 40 bytes a slot */

/* count requests per period_s, at most burst at once; count 0 = no limit. */
typedef struct bkv_rate_rule {
	uint32_t count;
	uint32_t period_s; /* 1, 60 or 3600 */
	uint32_t burst;
} bkv_rate_rule;

typedef struct bkv_rate_config {
	bool enabled;
	bkv_rate_rule per_account[BKV_RATE_METHODS];
	bkv_rate_rule per_address[BKV_RATE_METHODS];
} bkv_rate_config;

extern const char *const bkv_rate_method_names[BKV_RATE_METHODS];

/* The index of a method name, or -1 (GetConfig and unknown names are never limited). */
int bkv_rate_method_find(const char *name);

/* The defaults: generous for a person, tight for a script (docs/DEPLOYMENT.md). */
void bkv_rate_config_defaults(bkv_rate_config *config);

/* "N/s", "N/min" or "N/h", optionally followed by "burst M" (default M = N); "0" or "off"
 * for no limit. N and M are 1 .. 100000. */
bool bkv_rate_rule_parse(const char *text, bkv_rate_rule *rule);

typedef struct bkv_rate_limiter bkv_rate_limiter;

/* A shared anonymous mapping of the table (call before fork); NULL on failure. slots is
 * rounded up to a power of two (at least 16). */
bkv_rate_limiter *bkv_rate_limiter_create(const bkv_rate_config *config, size_t slots);
void bkv_rate_limiter_destroy(bkv_rate_limiter *limiter);

/* Takes one request from the bucket key under rule at now_ms. False when the bucket is
 * empty: then *retry_after_ms is when the next request would be taken (at least 1). */
bool bkv_rate_take(bkv_rate_limiter *limiter, const uint8_t key[BKV_RATE_KEY_BYTES],
                   const bkv_rate_rule *rule, int64_t now_ms, uint32_t *retry_after_ms);

/* The checks bkv_connect_handle makes. method is a BKV_RATE_* index or -1 (no limit). */
bool bkv_rate_check_address(bkv_rate_limiter *limiter, const bkv_vault *v, int method,
                            const char *address, int64_t now_ms, uint32_t *retry_after_ms);
bool bkv_rate_check_account(bkv_rate_limiter *limiter, bkv_vault *v, int method,
                            bkv_account account, int64_t now_ms, uint32_t *retry_after_ms);

/* Wall-clock milliseconds (the PostgreSQL buckets compare them across hosts). */
int64_t bkv_rate_now_ms(void);

#endif
