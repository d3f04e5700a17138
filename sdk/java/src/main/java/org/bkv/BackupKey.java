package org.bkv;

import java.util.Objects;

/**
 * The backup key: 32 random bytes, shown to people as 64 lowercase hex digits in 16 groups
 * of 4. Every array these methods return belongs to the caller, who wipes it with
 * {@code Arrays.fill} when done; their own copies are wiped before they return.
 */
public final class BackupKey
{
	private BackupKey()
	{
	}

	/** 32 bytes from the OS CSPRNG (libsodium). */
	public static byte[] generate() throws BkvException
	{
		return Native.keyGenerate();
	}

	/** The key's text, "xxxx xxxx ... xxxx" (79 characters), as a char[] that can be wiped. */
	public static char[] format(byte[] key) throws BkvException
	{
		BkvClient.checkKey(key);
		byte[] ascii = Native.keyFormat(key);
		try {
			char[] text = new char[ascii.length];
			for (int i = 0; i < ascii.length; i++) {
				text[i] = (char)ascii[i];
			}
			return text;
		} finally {
			Secrets.wipe(ascii);
		}
	}

	/**
	 * Parses a key's text: upper or lower case hex, with spaces, dashes and line breaks
	 * anywhere.
	 *
	 * @throws InvalidArgumentException with the position of the first problem
	 */
	public static byte[] parse(char[] text) throws BkvException
	{
		byte[] utf8 = Secrets.utf8(Objects.requireNonNull(text, "text"), "the key text");
		try {
			return Native.keyParse(utf8);
		} finally {
			Secrets.wipe(utf8);
		}
	}
}
