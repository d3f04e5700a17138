package org.bkv;

/** What the vault holds for an account ({@code bkv_account_status}). */
public final class AccountStatus
{
	private final boolean registered;
	private final RecordState state;
	private final Suite suite;
	private final long attemptsUsed;
	private final long attemptLimit;
	private final long recordVersion;
	private final long registeredAtEpochSecond;
	private final long destroyedAtEpochSecond;

	/** From the eight numbers bkv_jni.c returns, in bkv_account_status's order. */
	AccountStatus(long[] fields)
	{
		this.registered = fields[0] != 0;
		this.suite = Suite.of(fields[1]);
		this.attemptsUsed = fields[2];
		this.attemptLimit = fields[3];
		this.recordVersion = fields[4];
		this.registeredAtEpochSecond = fields[5];
		this.state = RecordState.of(fields[6]);
		this.destroyedAtEpochSecond = fields[7];
	}

	public RecordState state()
	{
		return state;
	}

	/**
	 * Whether a key the password recovers is there ({@code state() == REGISTERED}, or a vault
	 * from before record states said so).
	 */
	public boolean registered()
	{
		return registered;
	}

	public Suite suite()
	{
		return suite;
	}

	public long attemptsUsed()
	{
		return attemptsUsed;
	}

	public long attemptLimit()
	{
		return attemptLimit;
	}

	/**
	 * Counts per account from 1; also set for a destroyed key (the tombstone's version, which
	 * {@link BkvClient#registerReplacing} takes to register a new key over it).
	 */
	public long recordVersion()
	{
		return recordVersion;
	}

	/** Seconds since the Unix epoch. */
	public long registeredAtEpochSecond()
	{
		return registeredAtEpochSecond;
	}

	/** Seconds since the Unix epoch when {@code state() == DESTROYED}, else 0. */
	public long destroyedAtEpochSecond()
	{
		return destroyedAtEpochSecond;
	}

	@Override public String toString()
	{
		return "AccountStatus{state=" + state + ", suite=" + suite +
		    ", attemptsUsed=" + attemptsUsed + ", attemptLimit=" + attemptLimit +
		    ", recordVersion=" + recordVersion + "}";
	}
}
