package org.bkv;

/** {@code BKV_ERR_TRUNCATED}: the backup file ends early. */
public final class BackupTruncatedException extends BkvException
{
	private static final long serialVersionUID = 1L;

	BackupTruncatedException(String message)
	{
		super(BkvException.ERR_TRUNCATED, message, 0, 0);
	}
}
