package org.bkv;

/**
 * {@code BKV_ERR_ARGUMENT}: bad input, e.g. an empty password or a malformed vault URL; the
 * message says which. Fix the call.
 */
public final class InvalidArgumentException extends BkvException
{
	private static final long serialVersionUID = 1L;

	InvalidArgumentException(String message)
	{
		super(BkvException.ERR_ARGUMENT, message, 0, 0);
	}
}
