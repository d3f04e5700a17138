package org.bkv;

/**
 * {@code BKV_ERR_RATE_LIMITED}: the vault said resource_exhausted (too many requests).
 * Retry after {@link #retryAfterMillis()}, or back off if it is 0.
 */
public final class RateLimitedException extends BkvException
{
	private static final long serialVersionUID = 1L;

	RateLimitedException(String message, int httpStatus, long retryAfterMillis)
	{
		super(BkvException.ERR_RATE_LIMITED, message, httpStatus, retryAfterMillis);
	}

	/** The HTTP status of the answer (429). */
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
