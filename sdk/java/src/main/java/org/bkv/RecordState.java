package org.bkv;

/** What the vault holds for an account ({@code bkv_record_state}). */
public enum RecordState {
	/** The vault did not say (a vault from before record states). */
	UNKNOWN(Native.RECORD_UNKNOWN),
	/** Never registered, or deleted. */
	ABSENT(Native.RECORD_ABSENT),
	/** A key the password recovers. */
	REGISTERED(Native.RECORD_REGISTERED),
	/** The attempt limit was reached: the key is gone for good; a tombstone stays. */
	DESTROYED(Native.RECORD_DESTROYED);

	private final int code;

	RecordState(int code)
	{
		this.code = code;
	}

	static RecordState of(long code)
	{
		for (RecordState state : values()) {
			if (state.code == code) {
				return state;
			}
		}
		throw new IllegalStateException("libbkv returned an unknown record state " + code);
	}
}
