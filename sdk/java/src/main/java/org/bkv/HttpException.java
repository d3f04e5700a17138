package org.bkv;

/**
 * {@code BKV_ERR_HTTP}: something answered, but not with the Connect protocol: a proxy's
 * 502/504, a wrong path's 404 page, a bare 401. Check the vault URL and proxies.
 */
public final class HttpException extends BkvException
{
	private static final long serialVersionUID = 1L;

	HttpException(String message, int httpStatus)
	{
		super(BkvException.ERR_HTTP, message, httpStatus, 0);
	}

	/** The HTTP status of the answer. */
	public int httpStatus()
	{
		return httpStatus;
	}
}
