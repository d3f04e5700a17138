package org.bkv;

/**
 * {@code BKV_ERR_CONFLICT}: the record changed since its version was read (replaced, deleted or
 * destroyed meanwhile). Read the status again and retry.
 */
public final class ConflictException extends BkvException
{
	private static final long serialVersionUID = 1L;

	ConflictException(String message)
	{
		super(BkvException.ERR_CONFLICT, message, 0, 0);
	}
}
