/*
 * test_jsonline.c - the request log's direct JSON writer (vault/transport/jsonline.c) against
 * jansson, the library it replaces on that path: for strings with every ASCII control and
 * special character, UTF-8 text, and reals of every magnitude the request log can hold (and
 * beyond), the line must be byte for byte what json_dumps(JSON_COMPACT |
 * JSON_REAL_PRECISION(12)) makes of the same object. A line too long for its buffer is
 * refused, never cut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "jsonline.h"

/* The line jansson makes of {"s": s, "n": n, "r": r}, with "\n". */
static char *jansson_line(const char *s, long long n, double r)
{
	json_t *o = json_object();
	assert_non_null(o);
	assert_int_equal(json_object_set_new(o, "s", json_string(s)), 0);
	assert_int_equal(json_object_set_new(o, "n", json_integer(n)), 0);
	assert_int_equal(json_object_set_new(o, "r", json_real(r)), 0);
	char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(12));
	json_decref(o);
	assert_non_null(text);
	const size_t len = strlen(text);
	char *line = malloc(len + 2);
	assert_non_null(line);
	memcpy(line, text, len);
	memcpy(line + len, "\n", 2);
	free(text);
	return line;
}

static void assert_same_as_jansson(const char *s, long long n, double r)
{
	char buf[4096];
	bkv_jsonline l;
	bkv_jsonline_begin(&l, buf, sizeof(buf));
	bkv_jsonline_string(&l, "s", s);
	bkv_jsonline_int(&l, "n", n);
	bkv_jsonline_real(&l, "r", r);
	assert_true(bkv_jsonline_end(&l));
	char *expected = jansson_line(s, n, r);
	if (l.len != strlen(expected) || memcmp(buf, expected, l.len) != 0)
		fail_msg("jsonline %.*s jansson  %s", (int)l.len, buf, expected);
	free(expected);
}

static void every_ascii_character_is_escaped_as_jansson_does(void **state)
{
	(void)state;
	char s[128];
	for (int c = 1; c < 128; c++)
		s[c - 1] = (char)c;
	s[127] = '\0';
	assert_same_as_jansson(s, 200, 1.5);
	assert_same_as_jansson("", 0, 0.0);
	assert_same_as_jansson("the Authorization header must be \"Bearer <token>\"", 401, 0.25);
	assert_same_as_jansson("back\\slash/and\ttab\r\n", -1, 12.0);
	assert_same_as_jansson("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", 1LL << 62, 3.0);
}

static void reals_are_formatted_as_jansson_does(void **state)
{
	(void)state;
	static const double fixed[] = {0.0,
	                               0.001,
	                               0.01,
	                               1.0,
	                               12.345,
	                               999.999,
	                               1e-4,
	                               1e-5,
	                               1e-7,
	                               123e-9,
	                               1e11,
	                               1e12,
	                               1e13,
	                               1e100,
	                               1e-100,
	                               5e-324,
	                               1.7976931348623157e308,
	                               -0.5,
	                               -1e20,
	                               4294967.295};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		assert_same_as_jansson("x", (long long)i, fixed[i]);
	/* latencies as the request log computes them: microseconds / 1000 */
	for (int i = 0; i < 20000; i++) {
		uint64_t micros = randombytes_uniform(1000000);
		if (i % 4 == 0)
			micros *= randombytes_uniform(100000);
		assert_same_as_jansson("x", i, (double)micros / 1000.0);
	}
	/* and random doubles of every magnitude */
	for (int i = 0; i < 20000; i++) {
		double r;
		do
			randombytes_buf(&r, sizeof(r));
		while (r != r || r - r != 0.0); /* NaN and infinities are not JSON */
		assert_same_as_jansson("x", i, r);
	}
}

static void random_strings_are_escaped_as_jansson_does(void **state)
{
	(void)state;
	for (int i = 0; i < 20000; i++) {
		char s[64];
		const size_t len = randombytes_uniform(sizeof(s));
		for (size_t j = 0; j < len; j++)
			s[j] = (char)(1 + randombytes_uniform(127)); /* ASCII: always valid UTF-8 */
		s[len] = '\0';
		assert_same_as_jansson(s, (long long)randombytes_random() - INT32_MAX, 1.0);
	}
}

static void a_line_that_does_not_fit_is_refused(void **state)
{
	(void)state;
	char buf[32];
	bkv_jsonline l;
	bkv_jsonline_begin(&l, buf, sizeof(buf));
	bkv_jsonline_string(&l, "key", "a value of more than thirty-two bytes in all");
	assert_false(bkv_jsonline_end(&l));
	/* exactly full: {"k":"12345678901234567890123"}\n is 32 bytes */
	bkv_jsonline_begin(&l, buf, sizeof(buf));
	bkv_jsonline_string(&l, "k", "12345678901234567890123");
	assert_true(bkv_jsonline_end(&l));
	assert_int_equal(l.len, 32);
	assert_memory_equal(buf, "{\"k\":\"12345678901234567890123\"}\n", 32);
	bkv_jsonline_begin(&l, buf, sizeof(buf));
	bkv_jsonline_string(&l, "k", "123456789012345678901234");
	assert_false(bkv_jsonline_end(&l));
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_ascii_character_is_escaped_as_jansson_does),
	    cmocka_unit_test(reals_are_formatted_as_jansson_does),
	    cmocka_unit_test(random_strings_are_escaped_as_jansson_does),
	    cmocka_unit_test(a_line_that_does_not_fit_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
