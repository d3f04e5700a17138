package org.bkv;

/**
 * {@code BKV_ERR_PROTOCOL}: the vault's answer was malformed or did not verify, or its Argon2id
 * parameters are below libbkv's floor. Report it; do not retry blindly.
 */
public final class ProtocolException extends BkvException
{
	private static final long serialVersionUID = 1L;

	ProtocolException(String message)
	{
		super(BkvException.ERR_PROTOCOL, message, 0, 0);
	}
}
