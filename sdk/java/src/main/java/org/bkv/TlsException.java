package org.bkv;

/**
 * {@code BKV_ERR_TLS}: the vault's certificate is not trusted by the CA file (or the system's), is
 * not the pinned one, or the CA file or pinned certificate cannot be read. This is what a man in
 * the middle looks like: never retry automatically.
 */
public final class TlsException extends BkvException
{
	private static final long serialVersionUID = 1L;

	TlsException(String message)
	{
		super(BkvException.ERR_TLS, message, 0, 0);
	}
}
