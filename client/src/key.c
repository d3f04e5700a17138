/*
 * key.c - the backup key: generation from the OS CSPRNG, and its text form (64 lowercase hex
 * digits in 16 groups of 4). Hex is encoded and decoded without branches or table lookups on
 * the key's digits, so the time taken does not depend on the key; parsing branches only on
 * whether a character is a digit at all. Partial results are wiped on every path.
 */
#include <string.h>

#include <sodium.h>

#include "internal.h"

#define KEY_DIGITS   (2 * BKV_KEY_BYTES)
#define GROUP_DIGITS 4

bkv_status bkv_key_generate(bkv_key *key)
{
	if (key == NULL)
		return BKV_ERR_ARGUMENT;
	if (sodium_init() < 0)
		return BKV_ERR_INTERNAL;
	randombytes_buf(key->bytes, sizeof(key->bytes));
	return BKV_OK;
}

/* '0'..'9' for 0..9, 'a'..'f' for 10..15: the 39 that separates '9' + 1 from 'a' is added
 * under a mask that is all ones exactly when nibble > 9. */
static char hex_digit(unsigned int nibble)
{
	return (char)('0' + nibble + (((9u - nibble) >> 8) & 39u));
}

bkv_status bkv_key_format(const bkv_key *key, char *text, size_t text_len)
{
	if (key == NULL || text == NULL || text_len < BKV_KEY_TEXT_BYTES)
		return BKV_ERR_ARGUMENT;
	size_t pos = 0;
	for (size_t i = 0; i < KEY_DIGITS; i++) {
		if (i > 0 && i % GROUP_DIGITS == 0)
			text[pos++] = ' ';
		const unsigned int byte = key->bytes[i / 2];
		text[pos++] = hex_digit(i % 2 == 0 ? byte >> 4 : byte & 0x0fu);
	}
	text[pos] = '\0';
	return BKV_OK;
}

/* The value of hex digit c in *value and true, or false when c is no hex digit. The masks
 * follow libsodium's sodium_hex2bin: 0xff when c is a decimal digit, resp. a letter a-f in
 * either case, computed without branching on c. */
static bool hex_value(unsigned char c, unsigned int *value)
{
	const unsigned int decimal = c ^ 48u;
	const unsigned int decimal_mask = ((decimal - 10u) >> 8) & 0xffu;
	const unsigned int letter = (c & ~32u) - 55u;
	const unsigned int letter_mask = (((letter - 10u) ^ (letter - 16u)) >> 8) & 0xffu;
	*value = ((decimal_mask & decimal) | (letter_mask & letter)) & 0x0fu;
	return (decimal_mask | letter_mask) != 0;
}

static bool is_separator(unsigned char c)
{
	return c == ' ' || c == '-' || c == '\n' || c == '\r';
}

static bkv_status invalid_character(bkv_error *error, unsigned char c, size_t position)
{
	if (c > ' ' && c < 0x7f)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "invalid character '%c' at position %zu",
		                 c, position);
	return bkvi_fail(error, BKV_ERR_ARGUMENT, "invalid character 0x%02x at position %zu",
	                 (unsigned int)c, position);
}

bkv_status bkv_key_parse(const char *text, size_t text_len, bkv_key *key, bkv_error *error)
{
	if (key == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "key is NULL");
	sodium_memzero(key, sizeof(*key));
	if (text == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "key text is NULL");

	uint8_t bytes[BKV_KEY_BYTES] = {0};
	size_t digits = 0;
	bkv_status status = BKV_OK;
	for (size_t i = 0; i < text_len; i++) {
		const unsigned char c = (unsigned char)text[i];
		unsigned int value;
		if (hex_value(c, &value)) {
			if (digits < KEY_DIGITS)
				bytes[digits / 2] |=
				    (uint8_t)(digits % 2 == 0 ? value << 4 : value);
			digits++;
		} else if (!is_separator(c)) {
			status = invalid_character(error, c, i + 1);
			break;
		}
	}
	if (status == BKV_OK && digits != KEY_DIGITS)
		status = bkvi_fail(error, BKV_ERR_ARGUMENT, "expected %d hex digits, found %zu",
		                   KEY_DIGITS, digits);
	if (status == BKV_OK)
		memcpy(key->bytes, bytes, sizeof(bytes));
	sodium_memzero(bytes, sizeof(bytes));
	return status;
}

void bkv_key_wipe(bkv_key *key)
{
	if (key != NULL)
		sodium_memzero(key, sizeof(*key));
}
