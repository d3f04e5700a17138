package org.bkv;

/**
 * {@code BKV_ERR_DESTROYED}: no attempts left, the vault destroyed the key (by this attempt or
 * earlier). It exists only if written down.
 */
public final class DestroyedException extends BkvException
{
	private static final long serialVersionUID = 1L;

	DestroyedException(String message)
	{
		super(BkvException.ERR_DESTROYED, message, 0, 0);
	}
}
