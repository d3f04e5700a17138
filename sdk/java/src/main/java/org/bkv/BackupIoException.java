package org.bkv;

/** {@code BKV_ERR_IO}: reading or writing a backup file failed; the message names the file. */
public final class BackupIoException extends BkvException
{
	private static final long serialVersionUID = 1L;

	BackupIoException(String message)
	{
		super(BkvException.ERR_IO, message, 0, 0);
	}
}
