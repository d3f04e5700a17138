/*
 * test_key.c - behaviour tests of the backup key's API (cmocka): generation, the text form
 * (64 lowercase hex digits in 16 groups of 4) and parsing it back, with every way a typed or
 * pasted key can be wrong reported at the right 1-based position.
 *
 * Expected texts are written out by hand from the documented format, never produced by the
 * code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bkv.h"
#include "testutil.h"

/* Two keys whose texts together use every hex digit in both halves of a byte. */
static const bkv_key ASCENDING = {{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
                                   0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                                   0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}};
static const char ASCENDING_TEXT[] = "0123 4567 89ab cdef 0123 4567 89ab cdef "
                                     "0123 4567 89ab cdef 0123 4567 89ab cdef";
static const bkv_key DESCENDING = {{0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
                                    0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
                                    0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00,
                                    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78}};
static const char DESCENDING_TEXT[] = "fedc ba98 7654 3210 ffee ddcc bbaa 9988 "
                                      "7766 5544 3322 1100 0f1e 2d3c 4b5a 6978";

/* ASCENDING_TEXT with no separators. */
static const char ASCENDING_DIGITS[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void assert_key_equal(const bkv_key *a, const bkv_key *b)
{
	assert_memory_equal(a->bytes, b->bytes, BKV_KEY_BYTES);
}

static void assert_parses_to(const char *text, size_t text_len, const bkv_key *expected)
{
	bkv_key key;
	bkv_error error = {0};
	assert_int_equal(bkv_key_parse(text, text_len, &key, &error), BKV_OK);
	assert_key_equal(&key, expected);
}

static void assert_parse_fails(const char *text, size_t text_len, const char *message)
{
	bkv_key key;
	memset(&key, 0x5a, sizeof(key));
	bkv_error error = {0};
	assert_int_equal(bkv_key_parse(text, text_len, &key, &error), BKV_ERR_ARGUMENT);
	assert_int_equal(error.status, BKV_ERR_ARGUMENT);
	assert_string_equal(error.message, message);
	assert_true(tu_is_zero(&key, sizeof(key))); /* no partial key is left behind */
}

/* ASCENDING_TEXT with the character at 0-based offset replaced by c. */
static void ascending_with(char text[sizeof(ASCENDING_TEXT)], size_t offset, char c)
{
	memcpy(text, ASCENDING_TEXT, sizeof(ASCENDING_TEXT));
	text[offset] = c;
}

/* ---- generation ---- */

static void generate_gives_a_fresh_nonzero_key_each_time(void **state)
{
	(void)state;
	bkv_key a, b;
	assert_int_equal(bkv_key_generate(&a), BKV_OK);
	assert_int_equal(bkv_key_generate(&b), BKV_OK);
	assert_false(tu_is_zero(&a, sizeof(a)));
	assert_memory_not_equal(a.bytes, b.bytes, BKV_KEY_BYTES);
}

static void generate_rejects_null(void **state)
{
	(void)state;
	assert_int_equal(bkv_key_generate(NULL), BKV_ERR_ARGUMENT);
}

static void generated_key_survives_format_and_parse(void **state)
{
	(void)state;
	for (int i = 0; i < 200; i++) {
		bkv_key key, parsed;
		char text[BKV_KEY_TEXT_BYTES];
		bkv_error error = {0};
		assert_int_equal(bkv_key_generate(&key), BKV_OK);
		assert_int_equal(bkv_key_format(&key, text, sizeof(text)), BKV_OK);
		assert_int_equal(bkv_key_parse(text, strlen(text), &parsed, &error), BKV_OK);
		assert_key_equal(&parsed, &key);
	}
}

/* ---- format ---- */

static void format_writes_known_keys_as_written_by_hand(void **state)
{
	(void)state;
	char text[BKV_KEY_TEXT_BYTES];
	assert_int_equal(bkv_key_format(&ASCENDING, text, sizeof(text)), BKV_OK);
	assert_string_equal(text, ASCENDING_TEXT);
	assert_int_equal(bkv_key_format(&DESCENDING, text, sizeof(text)), BKV_OK);
	assert_string_equal(text, DESCENDING_TEXT);
}

static void format_is_16_groups_of_4_lowercase_digits_in_79_characters(void **state)
{
	(void)state;
	bkv_key key;
	char text[BKV_KEY_TEXT_BYTES + 8];
	memset(text, 'X', sizeof(text));
	assert_int_equal(bkv_key_generate(&key), BKV_OK);
	assert_int_equal(bkv_key_format(&key, text, sizeof(text)), BKV_OK);
	assert_int_equal(strlen(text), 79);
	assert_int_equal(BKV_KEY_TEXT_BYTES, 80);
	for (size_t i = 0; i < 79; i++) {
		if (i % 5 == 4)
			assert_int_equal(text[i], ' ');
		else
			assert_true((text[i] >= '0' && text[i] <= '9') ||
			            (text[i] >= 'a' && text[i] <= 'f'));
	}
	assert_int_equal(text[80], 'X'); /* nothing written past the NUL */
}

static void format_fits_exactly_80_bytes_and_rejects_79(void **state)
{
	(void)state;
	char text[BKV_KEY_TEXT_BYTES];
	memset(text, 'X', sizeof(text));
	assert_int_equal(bkv_key_format(&ASCENDING, text, BKV_KEY_TEXT_BYTES - 1),
	                 BKV_ERR_ARGUMENT);
	assert_int_equal(text[0], 'X'); /* a short buffer is left untouched */
	assert_int_equal(bkv_key_format(&ASCENDING, text, BKV_KEY_TEXT_BYTES), BKV_OK);
	assert_string_equal(text, ASCENDING_TEXT);
}

static void format_rejects_null_arguments(void **state)
{
	(void)state;
	char text[BKV_KEY_TEXT_BYTES];
	assert_int_equal(bkv_key_format(NULL, text, sizeof(text)), BKV_ERR_ARGUMENT);
	assert_int_equal(bkv_key_format(&ASCENDING, NULL, sizeof(text)), BKV_ERR_ARGUMENT);
}

/* ---- parse: what it accepts ---- */

static void parse_accepts_the_formatted_text(void **state)
{
	(void)state;
	assert_parses_to(ASCENDING_TEXT, strlen(ASCENDING_TEXT), &ASCENDING);
	assert_parses_to(DESCENDING_TEXT, strlen(DESCENDING_TEXT), &DESCENDING);
}

static void parse_accepts_upper_case(void **state)
{
	(void)state;
	static const char upper[] = "FEDC BA98 7654 3210 FFEE DDCC BBAA 9988 "
	                            "7766 5544 3322 1100 0F1E 2D3C 4B5A 6978";
	assert_parses_to(upper, strlen(upper), &DESCENDING);
}

static void parse_accepts_digits_without_separators(void **state)
{
	(void)state;
	assert_parses_to(ASCENDING_DIGITS, strlen(ASCENDING_DIGITS), &ASCENDING);
}

static void parse_accepts_dashes(void **state)
{
	(void)state;
	static const char dashed[] = "0123-4567-89ab-cdef-0123-4567-89ab-cdef-"
	                             "0123-4567-89ab-cdef-0123-4567-89ab-cdef";
	assert_parses_to(dashed, strlen(dashed), &ASCENDING);
}

static void parse_accepts_line_breaks(void **state)
{
	(void)state;
	static const char unix_lines[] = "0123 4567 89ab cdef\n0123 4567 89ab cdef\n"
	                                 "0123 4567 89ab cdef\n0123 4567 89ab cdef\n";
	static const char dos_lines[] = "0123456789abcdef\r\n0123456789abcdef\r\n"
	                                "0123456789abcdef\r\n0123456789abcdef\r\n";
	assert_parses_to(unix_lines, strlen(unix_lines), &ASCENDING);
	assert_parses_to(dos_lines, strlen(dos_lines), &ASCENDING);
}

static void parse_accepts_mixed_case_and_separators_anywhere(void **state)
{
	(void)state;
	static const char mixed[] = "  fE-dC BA98--7654 \r\n3210ffEE ddcc-bbaa 9988\n"
	                            "77 66 55 44-3322 1100\n0f1E2d3C 4b5A 6978 \n\n";
	assert_parses_to(mixed, strlen(mixed), &DESCENDING);
}

static void parse_reads_only_text_len_bytes(void **state)
{
	(void)state;
	char text[sizeof(ASCENDING_TEXT) + 2];
	memcpy(text, ASCENDING_TEXT, strlen(ASCENDING_TEXT));
	text[strlen(ASCENDING_TEXT)] = 'z'; /* past text_len, and no NUL terminator */
	text[strlen(ASCENDING_TEXT) + 1] = '0';
	assert_parses_to(text, strlen(ASCENDING_TEXT), &ASCENDING);
}

/* ---- parse: what it rejects, and where ---- */

static void parse_rejects_every_letter_beyond_f_at_its_position(void **state)
{
	(void)state;
	char text[sizeof(ASCENDING_TEXT)];
	char expected[64];
	for (char c = 'g'; c <= 'z'; c++) {
		/* Offset 11 is the '9' of the third group: position 12. */
		ascending_with(text, 11, c);
		snprintf(expected, sizeof(expected), "invalid character '%c' at position 12", c);
		assert_parse_fails(text, strlen(text), expected);
		ascending_with(text, 11, (char)(c - 'a' + 'A'));
		snprintf(expected, sizeof(expected), "invalid character '%c' at position 12",
		         c - 'a' + 'A');
		assert_parse_fails(text, strlen(text), expected);
	}
}

static void parse_rejects_punctuation_at_its_position(void **state)
{
	(void)state;
	static const char punctuation[] = ".,:;_+=/\\|!?#*()[]{}<>'\"`~@$%^&";
	char text[sizeof(ASCENDING_TEXT)];
	char expected[64];
	for (size_t i = 0; i < strlen(punctuation); i++) {
		/* Offsets 4 (a separator's place), 0 (first) and 78 (last). */
		ascending_with(text, 4, punctuation[i]);
		snprintf(expected, sizeof(expected), "invalid character '%c' at position 5",
		         punctuation[i]);
		assert_parse_fails(text, strlen(text), expected);
		ascending_with(text, 0, punctuation[i]);
		snprintf(expected, sizeof(expected), "invalid character '%c' at position 1",
		         punctuation[i]);
		assert_parse_fails(text, strlen(text), expected);
		ascending_with(text, 78, punctuation[i]);
		snprintf(expected, sizeof(expected), "invalid character '%c' at position 79",
		         punctuation[i]);
		assert_parse_fails(text, strlen(text), expected);
	}
}

static void parse_rejects_a_hex_prefix(void **state)
{
	(void)state;
	static const char prefixed[] = "0x0123456789abcdef0123456789abcdef"
	                               "0123456789abcdef0123456789abcdef";
	assert_parse_fails(prefixed, strlen(prefixed), "invalid character 'x' at position 2");
}

static void parse_rejects_tab_and_other_whitespace(void **state)
{
	(void)state;
	char text[sizeof(ASCENDING_TEXT)];
	ascending_with(text, 9, '\t');
	assert_parse_fails(text, strlen(text), "invalid character 0x09 at position 10");
	ascending_with(text, 9, '\v');
	assert_parse_fails(text, strlen(text), "invalid character 0x0b at position 10");
	ascending_with(text, 9, '\f');
	assert_parse_fails(text, strlen(text), "invalid character 0x0c at position 10");
}

static void parse_rejects_nul_inside_text_len(void **state)
{
	(void)state;
	char text[sizeof(ASCENDING_TEXT)];
	ascending_with(text, 40, '\0');
	assert_parse_fails(text, sizeof(ASCENDING_TEXT) - 1,
	                   "invalid character 0x00 at position 41");
}

static void parse_rejects_non_ascii_bytes(void **state)
{
	(void)state;
	/* "é" in UTF-8 (c3 a9) in place of the second group's first digit. */
	static const char accented[] = "0123 \xc3\xa9"
	                               "567 89ab cdef 0123 4567 89ab cdef "
	                               "0123 4567 89ab cdef 0123 4567 89ab cdef";
	assert_parse_fails(accented, strlen(accented), "invalid character 0xc3 at position 6");
	char text[sizeof(ASCENDING_TEXT)];
	ascending_with(text, 70, (char)0xff);
	assert_parse_fails(text, strlen(text), "invalid character 0xff at position 71");
	ascending_with(text, 70, (char)0x7f); /* DEL */
	assert_parse_fails(text, strlen(text), "invalid character 0x7f at position 71");
}

static void parse_reports_the_first_invalid_character(void **state)
{
	(void)state;
	char text[sizeof(ASCENDING_TEXT)];
	ascending_with(text, 30, '!');
	text[20] = 'q';
	assert_parse_fails(text, strlen(text), "invalid character 'q' at position 21");
}

static void parse_reports_an_invalid_character_before_the_digit_count(void **state)
{
	(void)state;
	assert_parse_fails("12 g", 4, "invalid character 'g' at position 4");
}

static void parse_rejects_63_digits(void **state)
{
	(void)state;
	assert_parse_fails(ASCENDING_DIGITS, 63, "expected 64 hex digits, found 63");
	/* One group of three: the formatted text minus its last digit. */
	assert_parse_fails(ASCENDING_TEXT, strlen(ASCENDING_TEXT) - 1,
	                   "expected 64 hex digits, found 63");
}

static void parse_rejects_65_digits(void **state)
{
	(void)state;
	char text[sizeof(ASCENDING_TEXT) + 1];
	memcpy(text, ASCENDING_TEXT, strlen(ASCENDING_TEXT));
	text[strlen(ASCENDING_TEXT)] = '0';
	assert_parse_fails(text, strlen(ASCENDING_TEXT) + 1, "expected 64 hex digits, found 65");
	static const char twice[] =
	    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	    " 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_parse_fails(twice, strlen(twice), "expected 64 hex digits, found 128");
}

static void parse_rejects_empty_input(void **state)
{
	(void)state;
	assert_parse_fails("", 0, "expected 64 hex digits, found 0");
	assert_parse_fails(ASCENDING_TEXT, 0, "expected 64 hex digits, found 0");
	assert_parse_fails(" -\r\n ", 5, "expected 64 hex digits, found 0");
}

static void parse_rejects_null_arguments(void **state)
{
	(void)state;
	bkv_key key;
	bkv_error error = {0};
	assert_int_equal(bkv_key_parse(NULL, 10, &key, &error), BKV_ERR_ARGUMENT);
	assert_int_equal(error.status, BKV_ERR_ARGUMENT);
	assert_int_equal(bkv_key_parse(ASCENDING_TEXT, strlen(ASCENDING_TEXT), NULL, &error),
	                 BKV_ERR_ARGUMENT);
	/* The error is optional. */
	assert_int_equal(bkv_key_parse("g", 1, &key, NULL), BKV_ERR_ARGUMENT);
	assert_int_equal(bkv_key_parse(ASCENDING_TEXT, strlen(ASCENDING_TEXT), &key, NULL), BKV_OK);
	assert_key_equal(&key, &ASCENDING);
}

/* ---- wipe ---- */

static void wipe_zeroes_the_key_and_accepts_null(void **state)
{
	(void)state;
	bkv_key key = DESCENDING;
	bkv_key_wipe(&key);
	assert_true(tu_is_zero(&key, sizeof(key)));
	bkv_key_wipe(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(generate_gives_a_fresh_nonzero_key_each_time),
	    cmocka_unit_test(generate_rejects_null),
	    cmocka_unit_test(generated_key_survives_format_and_parse),
	    cmocka_unit_test(format_writes_known_keys_as_written_by_hand),
	    cmocka_unit_test(format_is_16_groups_of_4_lowercase_digits_in_79_characters),
	    cmocka_unit_test(format_fits_exactly_80_bytes_and_rejects_79),
	    cmocka_unit_test(format_rejects_null_arguments),
	    cmocka_unit_test(parse_accepts_the_formatted_text),
	    cmocka_unit_test(parse_accepts_upper_case),
	    cmocka_unit_test(parse_accepts_digits_without_separators),
	    cmocka_unit_test(parse_accepts_dashes),
	    cmocka_unit_test(parse_accepts_line_breaks),
	    cmocka_unit_test(parse_accepts_mixed_case_and_separators_anywhere),
	    cmocka_unit_test(parse_reads_only_text_len_bytes),
	    cmocka_unit_test(parse_rejects_every_letter_beyond_f_at_its_position),
	    cmocka_unit_test(parse_rejects_punctuation_at_its_position),
	    cmocka_unit_test(parse_rejects_a_hex_prefix),
	    cmocka_unit_test(parse_rejects_tab_and_other_whitespace),
	    cmocka_unit_test(parse_rejects_nul_inside_text_len),
	    cmocka_unit_test(parse_rejects_non_ascii_bytes),
	    cmocka_unit_test(parse_reports_the_first_invalid_character),
	    cmocka_unit_test(parse_reports_an_invalid_character_before_the_digit_count),
	    cmocka_unit_test(parse_rejects_63_digits),
	    cmocka_unit_test(parse_rejects_65_digits),
	    cmocka_unit_test(parse_rejects_empty_input),
	    cmocka_unit_test(parse_rejects_null_arguments),
	    cmocka_unit_test(wipe_zeroes_the_key_and_accepts_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
