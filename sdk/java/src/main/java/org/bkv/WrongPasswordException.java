package org.bkv;

/**
 * {@code BKV_ERR_WRONG_PASSWORD}: the password did not open the key, and attempts remain.
 * Ask again, saying how many are left.
 */
public final class WrongPasswordException extends BkvException
{
	private static final long serialVersionUID = 1L;

	private final boolean attemptsKnown;
	private final long attemptsRemaining;
	private final long attemptLimit;

	WrongPasswordException(String message, boolean attemptsKnown, long attemptsRemaining,
	                       long attemptLimit)
	{
		super(BkvException.ERR_WRONG_PASSWORD, message, 0, 0);
		this.attemptsKnown = attemptsKnown;
		this.attemptsRemaining = attemptsRemaining;
		this.attemptLimit = attemptLimit;
	}

	/** Whether the vault said how many attempts are left (a bkv vault always does). */
	public boolean attemptsKnown()
	{
		return attemptsKnown;
	}

	/** The attempts left after this one; valid when {@link #attemptsKnown()}. */
	public long attemptsRemaining()
	{
		return attemptsRemaining;
	}

	/** The account's attempt limit; valid when {@link #attemptsKnown()}. */
	public long attemptLimit()
	{
		return attemptLimit;
	}
}
