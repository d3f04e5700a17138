package org.bkv;

/** The OPAQUE cipher suite a registration uses ({@code bkv_suite}). */
public enum Suite {
	/** The first suite the vault lists. */
	VAULT_PREFERENCE(0),
	P256_SHA256(1),
	RISTRETTO255_SHA512(2);

	final int code;

	Suite(int code) {
		this.code = code;
	}

	static Suite of(long code) {
		for (Suite suite : values()) {
			if (suite.code == code) {
				return suite;
			}
		}
		throw new IllegalStateException("libbkv returned an unknown suite " + code);
	}
}
