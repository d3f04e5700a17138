package org.bkv;

/** {@code BKV_ERR_UNAUTHENTICATED}: the vault rejected the account token. Get a fresh one. */
public final class UnauthenticatedException extends BkvException
{
	private static final long serialVersionUID = 1L;

	UnauthenticatedException(String message)
	{
		super(BkvException.ERR_UNAUTHENTICATED, message, 0, 0);
	}
}
