/*
 * jsonline.c - compact JSON objects for log lines, written straight into a bounded buffer
 * (jsonline.h). Invariant: buf[0..len) is always what has been appended so far; once
 * overflow is set nothing more is appended and the line is refused whole.
 */
#include <stdio.h>
#include <string.h>

#include "jsonline.h"

static void put(bkv_jsonline *l, const char *bytes, size_t n)
{
	if (l->overflow || n > l->cap - l->len) {
		l->overflow = true;
		return;
	}
	memcpy(l->buf + l->len, bytes, n);
	l->len += n;
}

/* As jansson's dump_string without JSON_ENSURE_ASCII or JSON_ESCAPE_SLASH. */
static void put_string(bkv_jsonline *l, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	put(l, "\"", 1);
	const char *run = s;
	for (const char *c = s;; c++) {
		const unsigned char ch = (unsigned char)*c;
		if (ch != '\0' && ch != '"' && ch != '\\' && ch >= 0x20)
			continue;
		put(l, run, (size_t)(c - run));
		if (ch == '\0')
			break;
		char seq[6] = {'\\', 0, 0, 0, 0, 0};
		size_t n = 2;
		switch (ch) {
		case '"':
		case '\\':
			seq[1] = (char)ch;
			break;
		case '\b':
			seq[1] = 'b';
			break;
		case '\f':
			seq[1] = 'f';
			break;
		case '\n':
			seq[1] = 'n';
			break;
		case '\r':
			seq[1] = 'r';
			break;
		case '\t':
			seq[1] = 't';
			break;
		default:
			memcpy(seq + 1, "u00", 3);
			seq[4] = hex[ch >> 4];
			seq[5] = hex[ch & 15];
			n = 6;
		}
		put(l, seq, n);
		run = c + 1;
	}
	put(l, "\"", 1);
}

static void put_key(bkv_jsonline *l, const char *key)
{
	if (!l->first)
		put(l, ",", 1);
	l->first = false;
	put_string(l, key);
	put(l, ":", 1);
}

void bkv_jsonline_begin(bkv_jsonline *l, char *buf, size_t cap)
{
	*l = (bkv_jsonline){.buf = buf, .cap = cap, .first = true};
	put(l, "{", 1);
}

void bkv_jsonline_string(bkv_jsonline *l, const char *key, const char *value)
{
	put_key(l, key);
	put_string(l, value);
}

void bkv_jsonline_int(bkv_jsonline *l, const char *key, long long value)
{
	char text[32];
	const int n = snprintf(text, sizeof(text), "%lld", value);
	put_key(l, key);
	put(l, text, (size_t)n);
}

/* As jansson's jsonp_dtostr with precision 12 (the C locale's '.' assumed, as bkvd never
 * calls setlocale): %.12g, ".0" after a whole number, no '+' or leading zeros in an exponent. */
void bkv_jsonline_real(bkv_jsonline *l, const char *key, double value)
{
	char text[40];
	int n = snprintf(text, sizeof(text), "%.12g", value);
	put_key(l, key);
	if (n < 0 || (size_t)n + 3 >= sizeof(text)) {
		l->overflow = true;
		return;
	}
	size_t len = (size_t)n;
	if (strchr(text, '.') == NULL && strchr(text, 'e') == NULL) {
		memcpy(text + len, ".0", 3);
		len += 2;
	}
	char *start = strchr(text, 'e');
	if (start != NULL) {
		start++;
		char *end = start + 1;
		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, len - (size_t)(end - text) + 1);
			len -= (size_t)(end - start);
		}
	}
	put(l, text, len);
}

bool bkv_jsonline_end(bkv_jsonline *l)
{
	put(l, "}\n", 2);
	return !l->overflow;
}
