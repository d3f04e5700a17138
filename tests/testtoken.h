/*
 * testtoken.h - what the tests on a SoftHSM2 token (tests/with-softhsm) share: reading the
 * PIN file and a key-ceremony report that prints nothing. Header-only.
 */
#ifndef BKV_TESTTOKEN_H
#define BKV_TESTTOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The PIN in path without its line break, NUL-terminated in pin[cap]; false if none. */
static inline bool tu_read_pin(const char *path, char *pin, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	size_t n = fread(pin, 1, cap - 1, f);
	fclose(f);
	while (n > 0 && (pin[n - 1] == '\n' || pin[n - 1] == '\r'))
		n--;
	pin[n] = '\0';
	*len = n;
	return n > 0;
}

/* bkv_token_create_keys' report callback, for tests that do not look at it. */
static inline void tu_ignore_report(void *arg, const char *label, const char *what,
                                    const uint8_t *public_key, size_t public_key_len)
{
	(void)arg;
	(void)label;
	(void)what;
	(void)public_key;
	(void)public_key_len;
}

#endif
