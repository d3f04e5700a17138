package org.bkv;

/** What the vault holds for an account ({@code bkv_record_state}). */
public enum RecordState {
	/** The vault did not say (a vault from before record states). */
	UNKNOWN,
	/** Never registered, or deleted. */
	ABSENT,
	/** A key the password recovers. */
	REGISTERED,
	/** The attempt limit was reached: the key is gone for good; a tombstone stays. */
	DESTROYED;

	static RecordState of(long code) {
		RecordState[] states = values();
		if (code < 0 || code >= states.length) {
			throw new IllegalStateException("libbkv returned an unknown record state " + code);
		}
		return states[(int) code];
	}
}
