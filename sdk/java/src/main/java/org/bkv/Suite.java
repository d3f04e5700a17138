package org.bkv;

/** The OPAQUE cipher suite a registration uses ({@code bkv_suite}). */
public enum Suite {
	/** The first suite the vault lists. */
	VAULT_PREFERENCE(Native.SUITE_VAULT_PREFERENCE),
	P256_SHA256(Native.SUITE_P256_SHA256),
	RISTRETTO255_SHA512(Native.SUITE_RISTRETTO255_SHA512);

	final int code;

	Suite(int code)
	{
		this.code = code;
	}

	static Suite of(long code)
	{
		for (Suite suite : values()) {
			if (suite.code == code) {
				return suite;
			}
		}
		throw new IllegalStateException("libbkv returned an unknown suite " + code);
	}
}
