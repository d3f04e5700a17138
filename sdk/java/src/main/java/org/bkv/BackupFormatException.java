package org.bkv;

/** {@code BKV_ERR_FORMAT}: the file is not in the bkv backup format (docs/BACKUP-FORMAT.md). */
public final class BackupFormatException extends BkvException
{
	private static final long serialVersionUID = 1L;

	BackupFormatException(String message)
	{
		super(BkvException.ERR_FORMAT, message, 0, 0);
	}
}
