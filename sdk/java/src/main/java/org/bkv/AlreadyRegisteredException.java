package org.bkv;

/**
 * {@code BKV_ERR_ALREADY_REGISTERED}: a create-only registration found a key or a destroyed key's
 * tombstone. Read {@link BkvClient#status}, then {@link BkvClient#registerReplacing} if replacing
 * is what the user wants.
 */
public final class AlreadyRegisteredException extends BkvException
{
	private static final long serialVersionUID = 1L;

	AlreadyRegisteredException(String message)
	{
		super(BkvException.ERR_ALREADY_REGISTERED, message, 0, 0);
	}
}
