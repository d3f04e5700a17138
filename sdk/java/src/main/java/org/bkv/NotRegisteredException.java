package org.bkv;

/** {@code BKV_ERR_NOT_REGISTERED}: the vault holds no key for the account. Offer to register. */
public final class NotRegisteredException extends BkvException
{
	private static final long serialVersionUID = 1L;

	NotRegisteredException(String message)
	{
		super(BkvException.ERR_NOT_REGISTERED, message, 0, 0);
	}
}
