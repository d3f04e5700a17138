package org.bkv;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/**
 * What BkvException.fromNative makes of a bkv_error: the class for each status and the
 * numbers each carries. (That the codes are bkv.h's is checked when bkv_jni.c compiles.)
 * The statuses a real vault is hard to make answer with (rate limits, 503) are covered here.
 */
class BkvExceptionTest
{
	private static BkvException make(int code, String message, int http, long retryMillis)
	{
		return BkvException.fromNative(code, message.getBytes(StandardCharsets.UTF_8), http,
		                               retryMillis, false, 0, 0);
	}

	@Test void each_status_an_application_acts_on_has_its_class()
	{
		Object[][] expected = {
		    {BkvException.ERR_ARGUMENT, InvalidArgumentException.class},
		    {BkvException.ERR_WRONG_PASSWORD, WrongPasswordException.class},
		    {BkvException.ERR_DESTROYED, DestroyedException.class},
		    {BkvException.ERR_NOT_REGISTERED, NotRegisteredException.class},
		    {BkvException.ERR_UNAUTHENTICATED, UnauthenticatedException.class},
		    {BkvException.ERR_UNAVAILABLE, UnavailableException.class},
		    {BkvException.ERR_PROTOCOL, ProtocolException.class},
		    {BkvException.ERR_IO, BackupIoException.class},
		    {BkvException.ERR_FORMAT, BackupFormatException.class},
		    {BkvException.ERR_TRUNCATED, BackupTruncatedException.class},
		    {BkvException.ERR_TAMPERED, BackupTamperedException.class},
		    {BkvException.ERR_WRONG_KEY, WrongBackupKeyException.class},
		    {BkvException.ERR_ALREADY_REGISTERED, AlreadyRegisteredException.class},
		    {BkvException.ERR_CONFLICT, ConflictException.class},
		    {BkvException.ERR_DATA_LOSS, DataLossException.class},
		    {BkvException.ERR_TLS, TlsException.class},
		    {BkvException.ERR_HTTP, HttpException.class},
		    {BkvException.ERR_RATE_LIMITED, RateLimitedException.class},
		};
		for (Object[] row : expected) {
			int code = (Integer)row[0];
			BkvException e = make(code, "m", 0, 0);
			assertSame(row[1], e.getClass(), "status " + code);
			assertEquals(code, e.code());
			assertEquals("m", e.getMessage());
		}
	}

	@Test void statuses_without_a_class_are_bkv_exceptions_with_their_code()
	{
		int[] codes = {BkvException.ERR_NOMEM, BkvException.ERR_INTERNAL, 99};
		for (int code : codes) {
			BkvException e = make(code, "m", 0, 0);
			assertSame(BkvException.class, e.getClass(), "status " + code);
			assertEquals(code, e.code());
		}
	}

	@Test void rate_limited_carries_retry_after_and_http_status()
	{
		RateLimitedException e = (RateLimitedException)make(BkvException.ERR_RATE_LIMITED,
		                                                    "rate limited", 429, 1500);
		assertEquals(1500, e.retryAfterMillis());
		assertEquals(429, e.httpStatus());
	}

	@Test void unavailable_carries_retry_after_and_http_status()
	{
		UnavailableException e = (UnavailableException)make(BkvException.ERR_UNAVAILABLE,
		                                                    "try later", 503, 2000);
		assertEquals(2000, e.retryAfterMillis());
		assertEquals(503, e.httpStatus());
	}

	@Test void http_carries_its_status()
	{
		assertEquals(502,
		             ((HttpException)make(BkvException.ERR_HTTP, "bad gateway", 502, 0))
		                 .httpStatus());
	}

	@Test void wrong_password_carries_the_attempts()
	{
		WrongPasswordException e = (WrongPasswordException)BkvException.fromNative(
		    BkvException.ERR_WRONG_PASSWORD, new byte[0], 0, 0, true, 4294967295L,
		    4294967295L);
		assertTrue(e.attemptsKnown());
		assertEquals(4294967295L, e.attemptsRemaining());
		assertEquals(4294967295L, e.attemptLimit());
		WrongPasswordException unknown =
		    (WrongPasswordException)make(BkvException.ERR_WRONG_PASSWORD, "", 0, 0);
		assertFalse(unknown.attemptsKnown());
	}

	@Test void a_message_that_is_not_utf8_is_decoded_with_replacement_characters()
	{
		BkvException e =
		    BkvException.fromNative(BkvException.ERR_PROTOCOL,
		                            new byte[] {'a', (byte)0xff, 'b'}, 0, 0, false, 0, 0);
		assertEquals("a\ufffdb", e.getMessage());
	}
}
