package org.bkv;

/**
 * {@code BKV_ERR_TAMPERED}: a chunk of the backup failed authentication, is out of order, has an
 * invalid header, or data follows the final chunk.
 */
public final class BackupTamperedException extends BkvException
{
	private static final long serialVersionUID = 1L;

	BackupTamperedException(String message)
	{
		super(BkvException.ERR_TAMPERED, message, 0, 0);
	}
}
