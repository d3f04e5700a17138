package org.bkv;

/**
 * {@code BKV_ERR_DATA_LOSS}: the vault's stored record for the account failed its integrity check.
 * Report it to the vault's operator.
 */
public final class DataLossException extends BkvException
{
	private static final long serialVersionUID = 1L;

	DataLossException(String message)
	{
		super(BkvException.ERR_DATA_LOSS, message, 0, 0);
	}
}
