package org.bkv;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

/** BackupKey over libbkv's bkv_key_generate, bkv_key_format and bkv_key_parse. */
class BackupKeyTest
{
	@Test void generate_gives_32_bytes_that_differ_each_time() throws BkvException
	{
		byte[] a = BackupKey.generate();
		byte[] b = BackupKey.generate();
		assertEquals(32, a.length);
		assertFalse(Arrays.equals(a, b));
	}

	@Test void format_is_16_groups_of_4_lowercase_hex_digits_of_the_key() throws BkvException
	{
		byte[] key = BackupKey.generate();
		String text = new String(BackupKey.format(key));
		assertTrue(text.matches("[0-9a-f]{4}( [0-9a-f]{4}){15}"), text);
		assertEquals(HexFormat.of().formatHex(key), text.replace(" ", ""));
	}

	@Test void parse_takes_upper_case_and_dashes_and_gives_the_key_back() throws BkvException
	{
		byte[] key = BackupKey.generate();
		String hex = HexFormat.of().withUpperCase().formatHex(key);
		String dashed =
		    hex.substring(0, 20) + "-" + hex.substring(20, 40) + "\n" + hex.substring(40);
		assertArrayEquals(key, BackupKey.parse(dashed.toCharArray()));
	}

	@Test void parse_names_the_position_of_a_bad_character()
	{
		char[] text = "000g".concat("0".repeat(60)).toCharArray();
		InvalidArgumentException e =
		    assertThrows(InvalidArgumentException.class, () -> BackupKey.parse(text));
		assertEquals(BkvException.ERR_ARGUMENT, e.code());
		assertTrue(e.getMessage().contains("'g' at position 4"), e.getMessage());
	}

	@Test void parse_says_how_many_digits_it_found()
	{
		InvalidArgumentException e =
		    assertThrows(InvalidArgumentException.class,
		                 () -> BackupKey.parse("0".repeat(63).toCharArray()));
		assertTrue(e.getMessage().contains("found 63"), e.getMessage());
	}

	@Test void format_refuses_a_key_that_is_not_32_bytes()
	{
		assertThrows(IllegalArgumentException.class, () -> BackupKey.format(new byte[31]));
	}
}
