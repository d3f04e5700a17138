/*
 * ratelimit.c - token buckets in a shared table (see ratelimit.h).
 *
 * A bucket counts in units where one request costs period_ms units and the bucket refills
 * count units per millisecond, so "count per period" is exact in integers: capacity is
 * burst * period_ms (at most 100000 * 3600000), and the refill of one call is bounded by
 * clamping the elapsed time to capacity milliseconds, so no product exceeds 2^63.
 *
 * One process-shared robust mutex guards the table: a take probes at most PROBE slots and
 * does a few integer operations under it. A worker that dies holding it leaves it to the
 * next locker, which marks it consistent (the slots are always in a usable state).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <sodium.h>

#include "ratelimit.h"

#define PROBE 8

const char *const bkv_rate_method_names[BKV_RATE_METHODS] = {
    [BKV_RATE_REGISTER_START] = "RegisterStart", [BKV_RATE_REGISTER_FINISH] = "RegisterFinish",
    [BKV_RATE_RECOVER_START] = "RecoverStart",   [BKV_RATE_RECOVER_FINISH] = "RecoverFinish",
    [BKV_RATE_GET_STATUS] = "GetStatus",         [BKV_RATE_DELETE] = "Delete",
};

typedef struct slot {
	uint8_t key[BKV_RATE_KEY_BYTES];
	uint64_t level;     /* units */
	int64_t updated_ms; /* of the last take */
	int64_t full_at_ms; /* when the bucket is full again; 0 = free slot */
} slot;

struct bkv_rate_limiter {
	pthread_mutex_t lock;
	bkv_rate_config config;
	size_t mapped;
	size_t nslots;  /* a power of two */
	uint64_t takes; /* PostgreSQL prunes every PRUNE_EVERY takes of this host */
	slot slots[];
};

int bkv_rate_method_find(const char *name)
{
	for (int i = 0; i < BKV_RATE_METHODS; i++) {
		if (strcmp(name, bkv_rate_method_names[i]) == 0)
			return i;
	}
	return -1;
}

void bkv_rate_config_defaults(bkv_rate_config *c)
{
	memset(c, 0, sizeof(*c));
	c->enabled = true;
	/* A person registers or recovers a few times a day and can only guess attempt_limit
	 * times anyway; a script that loops is stopped after the burst. */
	c->per_account[BKV_RATE_REGISTER_START] = (bkv_rate_rule){10, 60, 10};
	c->per_account[BKV_RATE_RECOVER_START] = (bkv_rate_rule){10, 60, 10};
	c->per_account[BKV_RATE_GET_STATUS] = (bkv_rate_rule){60, 60, 30};
	/* An address may stand for many people (NAT): ten times an account's budget. */
	c->per_address[BKV_RATE_REGISTER_START] = (bkv_rate_rule){100, 60, 100};
	c->per_address[BKV_RATE_RECOVER_START] = (bkv_rate_rule){100, 60, 100};
	c->per_address[BKV_RATE_GET_STATUS] = (bkv_rate_rule){600, 60, 300};
}

static bool parse_count(const char *text, char **end, uint32_t *out)
{
	if (*text < '0' || *text > '9')
		return false;
	errno = 0;
	unsigned long v = strtoul(text, end, 10);
	if (errno != 0 || v < 1 || v > BKV_RATE_COUNT_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

bool bkv_rate_rule_parse(const char *text, bkv_rate_rule *rule)
{
	memset(rule, 0, sizeof(*rule));
	if (strcmp(text, "0") == 0 || strcmp(text, "off") == 0)
		return true;
	char *p;
	bkv_rate_rule r = {0};
	if (!parse_count(text, &p, &r.count) || *p != '/')
		return false;
	p++;
	static const struct {
		const char *name;
		uint32_t seconds;
	} units[] = {{"s", 1}, {"min", 60}, {"h", 3600}};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && r.period_s == 0; i++) {
		const size_t n = strlen(units[i].name);
		if (strncmp(p, units[i].name, n) == 0 && (p[n] == '\0' || p[n] == ' ')) {
			r.period_s = units[i].seconds;
			p += n;
		}
	}
	if (r.period_s == 0)
		return false;
	r.burst = r.count;
	while (*p == ' ')
		p++;
	if (strncmp(p, "burst ", 6) == 0) {
		p += 6;
		while (*p == ' ')
			p++;
		if (!parse_count(p, &p, &r.burst))
			return false;
		while (*p == ' ')
			p++;
	}
	if (*p != '\0')
		return false;
	*rule = r;
	return true;
}

bkv_rate_limiter *bkv_rate_limiter_create(const bkv_rate_config *config, size_t slots)
{
	size_t n = 16;
	while (n < slots && n < (SIZE_MAX / 2) / sizeof(slot))
		n *= 2;
	const size_t size = sizeof(bkv_rate_limiter) + n * sizeof(slot);
	bkv_rate_limiter *l =
	    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (l == MAP_FAILED)
		return NULL;
	pthread_mutexattr_t attr;
	bool ok = pthread_mutexattr_init(&attr) == 0;
	ok = ok && pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) == 0 &&
	     pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) == 0 &&
	     pthread_mutex_init(&l->lock, &attr) == 0;
	pthread_mutexattr_destroy(&attr);
	if (!ok) {
		munmap(l, size);
		return NULL;
	}
	l->config = *config;
	l->mapped = size;
	l->nslots = n;
	return l;
}

void bkv_rate_limiter_destroy(bkv_rate_limiter *l)
{
	if (l == NULL)
		return;
	pthread_mutex_destroy(&l->lock);
	munmap(l, l->mapped);
}

static void lock(bkv_rate_limiter *l)
{
	if (pthread_mutex_lock(&l->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&l->lock);
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/* The bucket arithmetic, shared by the table and (in SQL) PostgreSQL. */
typedef struct bucket_units {
	uint64_t capacity, cost, refill_per_ms;
} bucket_units;

static bucket_units units_of(const bkv_rate_rule *r)
{
	const uint64_t period_ms = (uint64_t)r->period_s * 1000;
	return (bucket_units){(uint64_t)r->burst * period_ms, period_ms, r->count};
}

static uint32_t retry_after(const bucket_units *u, uint64_t level)
{
	const uint64_t ms = div_up(u->cost - level, u->refill_per_ms);
	return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)(ms == 0 ? 1 : ms);
}

/* Which slot gives way to a new key first: a free or refilled one (a refilled bucket is the
 * same as none), else the one that refills soonest. */
static int64_t eviction_rank(const slot *s, int64_t now_ms)
{
	return s->full_at_ms <= now_ms ? INT64_MIN : s->full_at_ms;
}

/* The slot for key: its own if it has one in its probe window, else the window's slot
 * that gives way first (*fresh then). */
static slot *find_slot(bkv_rate_limiter *l, const uint8_t key[BKV_RATE_KEY_BYTES], int64_t now_ms,
                       bool *fresh)
{
	uint64_t start;
	memcpy(&start, key, sizeof(start));
	slot *victim = NULL;
	for (size_t i = 0; i < PROBE; i++) {
		slot *s = &l->slots[(start + i) & (l->nslots - 1)];
		if (s->full_at_ms != 0 && memcmp(s->key, key, BKV_RATE_KEY_BYTES) == 0) {
			*fresh = false;
			return s;
		}
		if (victim == NULL || eviction_rank(s, now_ms) < eviction_rank(victim, now_ms))
			victim = s;
	}
	*fresh = true;
	return victim;
}

bool bkv_rate_take(bkv_rate_limiter *l, const uint8_t key[BKV_RATE_KEY_BYTES],
                   const bkv_rate_rule *rule, int64_t now_ms, uint32_t *retry_after_ms)
{
	if (rule->count == 0)
		return true;
	const bucket_units u = units_of(rule);
	lock(l);
	bool fresh;
	slot *s = find_slot(l, key, now_ms, &fresh);
	uint64_t level = u.capacity;
	if (!fresh && now_ms > s->updated_ms) {
		const uint64_t elapsed = (uint64_t)(now_ms - s->updated_ms);
		level = s->level + (elapsed < u.capacity ? elapsed : u.capacity) * u.refill_per_ms;
		if (level > u.capacity)
			level = u.capacity;
	} else if (!fresh) {
		level = s->level; /* the clock went back: no refill */
	}
	const bool taken = level >= u.cost;
	if (taken)
		level -= u.cost;
	else
		*retry_after_ms = retry_after(&u, level);
	memcpy(s->key, key, BKV_RATE_KEY_BYTES);
	s->level = level;
	if (fresh || now_ms > s->updated_ms)
		s->updated_ms = now_ms;
	const uint64_t to_full = div_up(u.capacity - level, u.refill_per_ms);
	s->full_at_ms = s->updated_ms + (int64_t)to_full + 1; /* never 0 */
	__atomic_fetch_add(&l->takes, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&l->lock);
	return taken;
}

/* BLAKE2b-128 keyed with the log key over scope || method || id. */
static void bucket_key(const bkv_vault *v, char scope, int method, const uint8_t *id, size_t id_len,
                       uint8_t key[BKV_RATE_KEY_BYTES])
{
	crypto_generichash_state st;
	const uint8_t head[2] = {(uint8_t)scope, (uint8_t)method};
	crypto_generichash_init(&st, v->settings.log_key, sizeof(v->settings.log_key),
	                        BKV_RATE_KEY_BYTES);
	crypto_generichash_update(&st, head, sizeof(head));
	crypto_generichash_update(&st, id, id_len);
	crypto_generichash_final(&st, key, BKV_RATE_KEY_BYTES);
}

bool bkv_rate_check_address(bkv_rate_limiter *l, const bkv_vault *v, int method,
                            const char *address, int64_t now_ms, uint32_t *retry_after_ms)
{
	if (l == NULL || !l->config.enabled || method < 0 || method >= BKV_RATE_METHODS ||
	    l->config.per_address[method].count == 0)
		return true;
	uint8_t key[BKV_RATE_KEY_BYTES];
	bucket_key(v, 'P', method, (const uint8_t *)address, strlen(address), key);
	return bkv_rate_take(l, key, &l->config.per_address[method], now_ms, retry_after_ms);
}

#define PRUNE_EVERY 4096

bool bkv_rate_check_account(bkv_rate_limiter *l, bkv_vault *v, int method, bkv_account account,
                            int64_t now_ms, uint32_t *retry_after_ms)
{
	if (l == NULL || !l->config.enabled || method < 0 || method >= BKV_RATE_METHODS ||
	    l->config.per_account[method].count == 0)
		return true;
	const bkv_rate_rule *rule = &l->config.per_account[method];
	uint8_t key[BKV_RATE_KEY_BYTES];
	bucket_key(v, 'A', method, account.id, account.len, key);
	if (!bkv_rate_take(l, key, rule, now_ms, retry_after_ms))
		return false;
	if (!bkv_storage_shares_rate_buckets(v->storage))
		return true;
	/* every replica's takes, in one UPSERT; a database that fails lets the request on,
	 * where the handlers meet the same failure */
	const bucket_units u = units_of(rule);
	bool taken = true;
	uint64_t level = 0;
	if (bkv_storage_rate_take(v->storage, key, sizeof(key), u.capacity, u.cost, u.refill_per_ms,
	                          now_ms, &taken, &level) != BKV_STORAGE_OK)
		return true;
	if (!taken)
		*retry_after_ms = retry_after(&u, level);
	if (__atomic_load_n(&l->takes, __ATOMIC_RELAXED) % PRUNE_EVERY == 0)
		bkv_storage_rate_prune(v->storage, now_ms);
	return taken;
}

int64_t bkv_rate_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
