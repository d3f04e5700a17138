/*
 * jsonline.h - one compact JSON object written into a caller's fixed buffer, member by
 * member, for log lines: the same text json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(12))
 * makes of an object built in that order (strings escaped as jansson escapes them: '"', '\\'
 * and control characters; reals as %.12g with ".0" added to a whole number), without building
 * the object. Bounded: a line that does not fit is reported by bkv_jsonline_end, never cut.
 */
#ifndef BKV_JSONLINE_H
#define BKV_JSONLINE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct bkv_jsonline {
	char *buf;
	size_t cap;
	size_t len;
	bool overflow;
	bool first;
} bkv_jsonline;

void bkv_jsonline_begin(bkv_jsonline *l, char *buf, size_t cap);
void bkv_jsonline_string(bkv_jsonline *l, const char *key, const char *value);
void bkv_jsonline_int(bkv_jsonline *l, const char *key, long long value);
void bkv_jsonline_real(bkv_jsonline *l, const char *key, double value);
/* Closes the object and adds "\n"; false when the line did not fit in cap bytes. */
bool bkv_jsonline_end(bkv_jsonline *l);

#endif
