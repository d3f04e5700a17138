package org.bkv;

import java.lang.annotation.Native;
import java.nio.charset.StandardCharsets;

/**
 * A libbkv call failed: {@link #code()} is its {@code bkv_status} (bkv.h), the message is
 * libbkv's, meant to be shown. Each status an application acts on has its own subclass
 * (docs/SDK.md, "Errors and what to do about them"); out of memory, internal errors and
 * statuses newer than this binding are this class itself.
 */
public class BkvException extends Exception
{
	private static final long serialVersionUID = 1L;

	// bkv.h's bkv_status values; bkv_jni.c checks each against bkv.h when it is compiled.
	@Native public static final int ERR_ARGUMENT = 1;
	@Native public static final int ERR_WRONG_PASSWORD = 2;
	@Native public static final int ERR_DESTROYED = 3;
	@Native public static final int ERR_NOT_REGISTERED = 4;
	@Native public static final int ERR_UNAUTHENTICATED = 5;
	@Native public static final int ERR_UNAVAILABLE = 6;
	@Native public static final int ERR_PROTOCOL = 7;
	@Native public static final int ERR_IO = 8;
	@Native public static final int ERR_FORMAT = 9;
	@Native public static final int ERR_TRUNCATED = 10;
	@Native public static final int ERR_TAMPERED = 11;
	@Native public static final int ERR_WRONG_KEY = 12;
	@Native public static final int ERR_NOMEM = 13;
	@Native public static final int ERR_INTERNAL = 14;
	@Native public static final int ERR_ALREADY_REGISTERED = 15;
	@Native public static final int ERR_CONFLICT = 16;
	@Native public static final int ERR_DATA_LOSS = 17;
	@Native public static final int ERR_TLS = 18;
	@Native public static final int ERR_HTTP = 19;
	@Native public static final int ERR_RATE_LIMITED = 20;

	private final int code;
	final int httpStatus;
	final long retryAfterMillis;

	BkvException(int code, String message, int httpStatus, long retryAfterMillis)
	{
		super(message);
		this.code = code;
		this.httpStatus = httpStatus;
		this.retryAfterMillis = retryAfterMillis;
	}

	/** The {@code bkv_status} value (one of the {@code ERR_} constants, or a newer one). */
	public int code()
	{
		return code;
	}

	/**
	 * Called by bkv_jni.c with a failed call's bkv_error (message: its bytes, UTF-8 with
	 * control characters already replaced by libbkv) and, for the recovery calls, its
	 * bkv_recover_info.
	 */
	static BkvException fromNative(int code, byte[] message, int httpStatus,
	                               long retryAfterMillis, boolean attemptsKnown,
	                               long attemptsRemaining, long attemptLimit)
	{
		String text = new String(message, StandardCharsets.UTF_8);
		switch (code) {
		case ERR_ARGUMENT:
			return new InvalidArgumentException(text);
		case ERR_WRONG_PASSWORD:
			return new WrongPasswordException(text, attemptsKnown, attemptsRemaining,
			                                  attemptLimit);
		case ERR_DESTROYED:
			return new DestroyedException(text);
		case ERR_NOT_REGISTERED:
			return new NotRegisteredException(text);
		case ERR_UNAUTHENTICATED:
			return new UnauthenticatedException(text);
		case ERR_UNAVAILABLE:
			return new UnavailableException(text, httpStatus, retryAfterMillis);
		case ERR_PROTOCOL:
			return new ProtocolException(text);
		case ERR_IO:
			return new BackupIoException(text);
		case ERR_FORMAT:
			return new BackupFormatException(text);
		case ERR_TRUNCATED:
			return new BackupTruncatedException(text);
		case ERR_TAMPERED:
			return new BackupTamperedException(text);
		case ERR_WRONG_KEY:
			return new WrongBackupKeyException(text);
		case ERR_ALREADY_REGISTERED:
			return new AlreadyRegisteredException(text);
		case ERR_CONFLICT:
			return new ConflictException(text);
		case ERR_DATA_LOSS:
			return new DataLossException(text);
		case ERR_TLS:
			return new TlsException(text);
		case ERR_HTTP:
			return new HttpException(text, httpStatus);
		case ERR_RATE_LIMITED:
			return new RateLimitedException(text, httpStatus, retryAfterMillis);
		default:
			return new BkvException(code, text, httpStatus, retryAfterMillis);
		}
	}
}
