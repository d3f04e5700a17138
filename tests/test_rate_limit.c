/*
 * test_rate_limit.c - the token buckets of vault/handlers/ratelimit.c (cmocka): refill,
 * burst, the retry_after rounding, the rule syntax, a full table, two processes
 * hammering one bucket in the shared table, and the per-address and per-account checks. The clock
 * is the now_ms argument, set by each test; expected figures are worked out by hand from the rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit.h"

#define T0 INT64_C(1800000000000)

static bkv_rate_limiter *limiter(size_t slots)
{
	bkv_rate_config config;
	bkv_rate_config_defaults(&config);
	bkv_rate_limiter *l = bkv_rate_limiter_create(&config, slots);
	assert_non_null(l);
	return l;
}

static void key_of(uint8_t key[BKV_RATE_KEY_BYTES], uint32_t n)
{
	memset(key, 0, BKV_RATE_KEY_BYTES);
	memcpy(key + 8, &n, sizeof(n)); /* the first 8 bytes pick the slot: all collide */
}

static unsigned takes(bkv_rate_limiter *l, const uint8_t *key, const bkv_rate_rule *r,
                      int64_t now_ms, unsigned n)
{
	unsigned taken = 0;
	uint32_t retry;
	for (unsigned i = 0; i < n; i++)
		taken += bkv_rate_take(l, key, r, now_ms, &retry);
	return taken;
}

static void burst_is_taken_at_once_then_refused(void **state)
{
	(void)state;
	bkv_rate_limiter *l = limiter(16);
	const bkv_rate_rule r = {10, 60, 5}; /* 10/min burst 5 */
	uint8_t key[BKV_RATE_KEY_BYTES];
	key_of(key, 1);
	assert_int_equal(takes(l, key, &r, T0, 5), 5);
	uint32_t retry = 0;
	assert_false(bkv_rate_take(l, key, &r, T0, &retry));
	assert_int_equal(retry, 6000); /* one token every 60 s / 10 */
	bkv_rate_limiter_destroy(l);
}

static void bucket_refills_at_the_rule_s_rate(void **state)
{
	(void)state;
	bkv_rate_limiter *l = limiter(16);
	const bkv_rate_rule r = {10, 60, 5};
	uint8_t key[BKV_RATE_KEY_BYTES];
	key_of(key, 1);
	assert_int_equal(takes(l, key, &r, T0, 5), 5);
	uint32_t retry = 0;
	assert_false(bkv_rate_take(l, key, &r, T0 + 5999, &retry));
	assert_int_equal(retry, 1); /* 5999 of 6000 ms refilled */
	assert_true(bkv_rate_take(l, key, &r, T0 + 6000, &retry));
	assert_false(bkv_rate_take(l, key, &r, T0 + 6000, &retry));
	assert_int_equal(retry, 6000);
	/* 30 s later: 5 more, never more than the burst however long it waits */
	assert_int_equal(takes(l, key, &r, T0 + 36000, 10), 5);
	assert_int_equal(takes(l, key, &r, T0 + 36000 + 86400000, 10), 5);
	bkv_rate_limiter_destroy(l);
}

static void retry_after_rounds_up_to_the_millisecond(void **state)
{
	(void)state;
	bkv_rate_limiter *l = limiter(16);
	const bkv_rate_rule r = {7, 1, 1}; /* 7/s: one every 142.857 ms */
	uint8_t key[BKV_RATE_KEY_BYTES];
	key_of(key, 1);
	uint32_t retry = 0;
	assert_true(bkv_rate_take(l, key, &r, T0, &retry));
	assert_false(bkv_rate_take(l, key, &r, T0, &retry));
	assert_int_equal(retry, 143);
	assert_false(bkv_rate_take(l, key, &r, T0 + 142, &retry));
	assert_int_equal(retry, 1);
	assert_true(bkv_rate_take(l, key, &r, T0 + 143, &retry));
	bkv_rate_limiter_destroy(l);
}

static void clock_going_back_refills_nothing(void **state)
{
	(void)state;
	bkv_rate_limiter *l = limiter(16);
	const bkv_rate_rule r = {1, 60, 1};
	uint8_t key[BKV_RATE_KEY_BYTES];
	key_of(key, 1);
	uint32_t retry = 0;
	assert_true(bkv_rate_take(l, key, &r, T0, &retry));
	assert_false(bkv_rate_take(l, key, &r, T0 - 3600000, &retry));
	assert_int_equal(retry, 60000);
	assert_false(bkv_rate_take(l, key, &r, T0 + 59999, &retry));
	assert_true(bkv_rate_take(l, key, &r, T0 + 60000, &retry));
	bkv_rate_limiter_destroy(l);
}

static void rule_zero_never_limits(void **state)
{
	(void)state;
	bkv_rate_limiter *l = limiter(16);
	const bkv_rate_rule off = {0, 0, 0};
	uint8_t key[BKV_RATE_KEY_BYTES];
	key_of(key, 1);
	assert_int_equal(takes(l, key, &off, T0, 1000), 1000);
	bkv_rate_limiter_destroy(l);
}

static void keys_have_buckets_of_their_own(void **state)
{
	(void)state;
	bkv_rate_limiter *l = limiter(16);
	const bkv_rate_rule r = {1, 60, 2};
	uint8_t a[BKV_RATE_KEY_BYTES], b[BKV_RATE_KEY_BYTES];
	key_of(a, 1);
	key_of(b, 2);
	assert_int_equal(takes(l, a, &r, T0, 5), 2);
	assert_int_equal(takes(l, b, &r, T0, 5), 2);
	bkv_rate_limiter_destroy(l);
}

static void full_table_evicts_a_refilled_bucket_first(void **state)
{
	(void)state;
	bkv_rate_limiter *l = limiter(16); /* keys from key_of share one probe window of 8 */
	const bkv_rate_rule r = {1, 60, 1};
	uint8_t key[BKV_RATE_KEY_BYTES];
	uint32_t retry;
	/* eight empty buckets fill the window; key 1 becomes full again one minute later */
	for (uint32_t k = 1; k <= 8; k++) {
		key_of(key, k);
		assert_true(bkv_rate_take(l, key, &r, k == 1 ? T0 - 60000 : T0, &retry));
	}
	/* a ninth key takes key 1's slot: keys 2..8 stay empty */
	key_of(key, 9);
	assert_true(bkv_rate_take(l, key, &r, T0 + 1, &retry));
	for (uint32_t k = 2; k <= 8; k++) {
		key_of(key, k);
		assert_false(bkv_rate_take(l, key, &r, T0 + 1, &retry));
	}
	/* with no refilled bucket left, the one nearest to refilled goes: a fresh key is
	 * served and the table's memory stays bounded */
	key_of(key, 10);
	assert_true(bkv_rate_take(l, key, &r, T0 + 2, &retry));
	bkv_rate_limiter_destroy(l);
}

static void processes_sharing_the_table_never_exceed_the_burst(void **state)
{
	(void)state;
	bkv_rate_limiter *l = limiter(1024);
	const bkv_rate_rule r = {1, 3600, 50};
	unsigned *taken = mmap(NULL, 2 * sizeof(unsigned), PROT_READ | PROT_WRITE,
	                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(taken != MAP_FAILED);
	uint8_t key[BKV_RATE_KEY_BYTES];
	key_of(key, 7);
	pid_t pids[2];
	for (int i = 0; i < 2; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			/* within one second: at most one token refills (1/h) */
			taken[i] = takes(l, key, &r, T0 + i, 20000);
			_exit(0);
		}
	}
	for (int i = 0; i < 2; i++) {
		int status;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(taken[0] + taken[1], 50);
	munmap(taken, 2 * sizeof(unsigned));
	bkv_rate_limiter_destroy(l);
}

static void rules_parse_from_the_config_syntax(void **state)
{
	(void)state;
	bkv_rate_rule r;
	assert_true(bkv_rate_rule_parse("10/min burst 5", &r));
	assert_int_equal(r.count, 10);
	assert_int_equal(r.period_s, 60);
	assert_int_equal(r.burst, 5);
	assert_true(bkv_rate_rule_parse("3/s", &r));
	assert_int_equal(r.count, 3);
	assert_int_equal(r.period_s, 1);
	assert_int_equal(r.burst, 3);
	assert_true(bkv_rate_rule_parse("100/h burst 100000", &r));
	assert_int_equal(r.period_s, 3600);
	assert_int_equal(r.burst, 100000);
	assert_true(bkv_rate_rule_parse("0", &r));
	assert_int_equal(r.count, 0);
	assert_true(bkv_rate_rule_parse("off", &r));
	assert_int_equal(r.count, 0);
	const char *bad[] = {"",
	                     "10",
	                     "10/",
	                     "10/day",
	                     "-1/min",
	                     "0/min",
	                     "100001/min",
	                     "10/min burst",
	                     "10/mins",
	                     "10/min 5",
	                     "10/min burst 0",
	                     "10/min burst 5 x",
	                     "1e3/s",
	                     " 10/min",
	                     "10/min burst 100001"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bkv_rate_rule_parse(bad[i], &r))
			fail_msg("accepted \"%s\"", bad[i]);
	}
}

/* A vault with only a log key: the checks touch nothing else (no storage: not shared). */
static bkv_vault vault_with_log_key(uint8_t fill)
{
	bkv_vault v;
	memset(&v, 0, sizeof(v));
	memset(v.settings.log_key, fill, sizeof(v.settings.log_key));
	return v;
}

static void address_checks_keep_a_bucket_per_address_and_method(void **state)
{
	(void)state;
	bkv_rate_config config;
	bkv_rate_config_defaults(&config);
	config.per_address[BKV_RATE_RECOVER_START] = (bkv_rate_rule){1, 60, 2};
	bkv_rate_limiter *l = bkv_rate_limiter_create(&config, 64);
	assert_non_null(l);
	const bkv_vault v = vault_with_log_key(1);
	uint32_t retry = 0;
	const int rs = BKV_RATE_RECOVER_START;
	assert_true(bkv_rate_check_address(l, &v, rs, "192.0.2.1", T0, &retry));
	assert_true(bkv_rate_check_address(l, &v, rs, "192.0.2.1", T0, &retry));
	assert_false(bkv_rate_check_address(l, &v, rs, "192.0.2.1", T0, &retry));
	assert_int_equal(retry, 60000);
	assert_true(bkv_rate_check_address(l, &v, rs, "192.0.2.2", T0, &retry));
	/* RegisterStart has a bucket of its own (the default, 100/min burst 100) */
	assert_true(
	    bkv_rate_check_address(l, &v, BKV_RATE_REGISTER_START, "192.0.2.1", T0, &retry));
	/* no limit for a method without a rule or outside the list (GetConfig) */
	for (int i = 0; i < 50; i++) {
		assert_true(
		    bkv_rate_check_address(l, &v, BKV_RATE_DELETE, "192.0.2.1", T0, &retry));
		assert_true(bkv_rate_check_address(l, &v, -1, "192.0.2.1", T0, &retry));
	}
	bkv_rate_limiter_destroy(l);
}

static void account_checks_keep_a_bucket_per_account(void **state)
{
	(void)state;
	bkv_rate_config config;
	bkv_rate_config_defaults(&config);
	config.per_account[BKV_RATE_GET_STATUS] = (bkv_rate_rule){1, 1, 1};
	bkv_rate_limiter *l = bkv_rate_limiter_create(&config, 64);
	assert_non_null(l);
	bkv_vault v = vault_with_log_key(2);
	const bkv_account alice = {(const uint8_t *)"alice", 5};
	const bkv_account bob = {(const uint8_t *)"bob", 3};
	uint32_t retry = 0;
	const int gs = BKV_RATE_GET_STATUS;
	assert_true(bkv_rate_check_account(l, &v, gs, alice, T0, &retry));
	assert_false(bkv_rate_check_account(l, &v, gs, alice, T0, &retry));
	assert_int_equal(retry, 1000);
	assert_true(bkv_rate_check_account(l, &v, gs, bob, T0, &retry));
	assert_true(bkv_rate_check_account(l, &v, gs, alice, T0 + 1000, &retry));
	/* an address bucket and an account bucket never share a key */
	assert_true(bkv_rate_check_address(l, &v, gs, "alice", T0 + 1000, &retry));
	bkv_rate_limiter_destroy(l);
}

static void disabled_limits_and_no_limiter_never_refuse(void **state)
{
	(void)state;
	bkv_rate_config config;
	bkv_rate_config_defaults(&config);
	config.enabled = false;
	config.per_account[BKV_RATE_GET_STATUS] = (bkv_rate_rule){1, 3600, 1};
	bkv_rate_limiter *l = bkv_rate_limiter_create(&config, 64);
	assert_non_null(l);
	bkv_vault v = vault_with_log_key(3);
	const bkv_account alice = {(const uint8_t *)"alice", 5};
	uint32_t retry = 0;
	for (int i = 0; i < 5; i++) {
		assert_true(bkv_rate_check_account(l, &v, BKV_RATE_GET_STATUS, alice, T0, &retry));
		assert_true(
		    bkv_rate_check_account(NULL, &v, BKV_RATE_GET_STATUS, alice, T0, &retry));
		assert_true(bkv_rate_check_address(NULL, &v, BKV_RATE_GET_STATUS, "a", T0, &retry));
	}
	bkv_rate_limiter_destroy(l);
}

static void methods_are_found_by_their_rpc_names(void **state)
{
	(void)state;
	assert_int_equal(bkv_rate_method_find("RecoverStart"), BKV_RATE_RECOVER_START);
	assert_int_equal(bkv_rate_method_find("GetStatus"), BKV_RATE_GET_STATUS);
	assert_int_equal(bkv_rate_method_find("GetConfig"), -1);
	assert_int_equal(bkv_rate_method_find("recoverstart"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(burst_is_taken_at_once_then_refused),
	    cmocka_unit_test(bucket_refills_at_the_rule_s_rate),
	    cmocka_unit_test(retry_after_rounds_up_to_the_millisecond),
	    cmocka_unit_test(clock_going_back_refills_nothing),
	    cmocka_unit_test(rule_zero_never_limits),
	    cmocka_unit_test(keys_have_buckets_of_their_own),
	    cmocka_unit_test(full_table_evicts_a_refilled_bucket_first),
	    cmocka_unit_test(processes_sharing_the_table_never_exceed_the_burst),
	    cmocka_unit_test(rules_parse_from_the_config_syntax),
	    cmocka_unit_test(address_checks_keep_a_bucket_per_address_and_method),
	    cmocka_unit_test(account_checks_keep_a_bucket_per_account),
	    cmocka_unit_test(disabled_limits_and_no_limiter_never_refuse),
	    cmocka_unit_test(methods_are_found_by_their_rpc_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
