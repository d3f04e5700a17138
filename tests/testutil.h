/*
 * testutil.h - small helpers shared by the bkv test programs: hex decoding and encoding and
 * an all-zero check. Header-only (static inline) so each test stays a single source file.
 */
#ifndef BKV_TESTUTIL_H
#define BKV_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static inline int tu_hex_nibble(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

/* Decodes hex_len hex digits (an even number) into out[0..cap). Returns the number of bytes
 * written, or -1 on an odd length, a bad digit or too small a buffer. */
static inline long tu_hex_decode_n(const char *hex, size_t hex_len, uint8_t *out, size_t cap)
{
	if (hex_len % 2 != 0 || hex_len / 2 > cap) {
		return -1;
	}
	for (size_t i = 0; i < hex_len / 2; i++) {
		int hi = tu_hex_nibble(hex[2 * i]);
		int lo = tu_hex_nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			return -1;
		}
		out[i] = (uint8_t)((hi << 4) | lo);
	}
	return (long)(hex_len / 2);
}

static inline long tu_hex_decode(const char *hex, uint8_t *out, size_t cap)
{
	return tu_hex_decode_n(hex, strlen(hex), out, cap);
}

/* Lowercase hex of in[0..len) into out, which needs 2 * len + 1 bytes. Returns out. */
static inline char *tu_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * len] = '\0';
	return out;
}

static inline void tu_hex_fprint(FILE *f, const uint8_t *in, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		fprintf(f, "%02x", in[i]);
	}
}

static inline int tu_is_zero(const void *p, size_t len)
{
	const uint8_t *b = (const uint8_t *)p;
	uint8_t acc = 0;
	for (size_t i = 0; i < len; i++) {
		acc |= b[i];
	}
	return acc == 0;
}

#endif
