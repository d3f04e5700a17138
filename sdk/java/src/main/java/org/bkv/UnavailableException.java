package org.bkv;

/**
 * {@code BKV_ERR_UNAVAILABLE}: no connection, a timeout, or the vault said it is
 * unavailable. Retry with backoff.
 */
public final class UnavailableException extends BkvException
{
	private static final long serialVersionUID = 1L;

	UnavailableException(String message, int httpStatus, long retryAfterMillis)
	{
		super(BkvException.ERR_UNAVAILABLE, message, httpStatus, retryAfterMillis);
	}

	/** The HTTP status when something answered (503), 0 otherwise. */
	public int httpStatus()
	{
		return httpStatus;
	}

	/** How long the vault asked the client to wait, in milliseconds; 0 if it did not say. */
	public long retryAfterMillis()
	{
		return retryAfterMillis;
	}
}
