package org.bkv;

/**
 * {@code BKV_ERR_WRONG_KEY}: the backup was encrypted with another key (or its salt or key
 * commitment is damaged: the two look the same).
 */
public final class WrongBackupKeyException extends BkvException
{
	private static final long serialVersionUID = 1L;

	WrongBackupKeyException(String message)
	{
		super(BkvException.ERR_WRONG_KEY, message, 0, 0);
	}
}
