package org.bkv;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetEncoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** The binding's own copies of secrets: made here, wiped by the caller in a finally. */
final class Secrets
{
	private Secrets()
	{
	}

	/**
	 * text as UTF-8 in an array of its own, with no other copy left behind: the encoder
	 * writes into one buffer sized for the worst case, which is wiped after the copy. An
	 * unpaired surrogate is not text: IllegalArgumentException.
	 */
	static byte[] utf8(char[] text, String what)
	{
		CharsetEncoder encoder = StandardCharsets.UTF_8.newEncoder()
		                             .onMalformedInput(CodingErrorAction.REPORT)
		                             .onUnmappableCharacter(CodingErrorAction.REPORT);
		ByteBuffer out = ByteBuffer.allocate(Math.multiplyExact(text.length, 3));
		try {
			CoderResult result = encoder.encode(CharBuffer.wrap(text), out, true);
			if (result.isUnderflow()) {
				result = encoder.flush(out);
			}
			if (!result.isUnderflow()) {
				throw new IllegalArgumentException(
				    what + " is not valid UTF-16 (an unpaired surrogate)");
			}
			return Arrays.copyOf(out.array(), out.position());
		} finally {
			Arrays.fill(out.array(), (byte)0);
		}
	}

	/** A token, URL or path as UTF-8; the C side makes it a C string, so NUL is refused. */
	static byte[] cString(String text, String what)
	{
		if (text.indexOf('\0') >= 0) {
			throw new IllegalArgumentException(what + " contains a NUL character");
		}
		return text.getBytes(StandardCharsets.UTF_8);
	}

	static void wipe(byte[] bytes)
	{
		if (bytes != null) {
			Arrays.fill(bytes, (byte)0);
		}
	}
}
