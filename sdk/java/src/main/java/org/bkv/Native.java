package org.bkv;

/**
 * The native methods of libbkvjni (src/main/c/bkv_jni.c), one per libbkv call. Arguments
 * are checked and converted by {@link BkvClient}, {@link BackupKey} and {@link BackupFile}; strings
 * arrive as UTF-8 bytes (the C side adds the NUL), and failures are thrown as what
 * {@link BkvException#fromNative} makes of the bkv_error.
 */
final class Native
{
	// bkv.h's numbers that Java code uses; bkv_jni.c checks each when it is compiled.
	@java.lang.annotation.Native static final int KEY_BYTES = 32;
	@java.lang.annotation.Native static final int SUITE_VAULT_PREFERENCE = 0;
	@java.lang.annotation.Native static final int SUITE_P256_SHA256 = 1;
	@java.lang.annotation.Native static final int SUITE_RISTRETTO255_SHA512 = 2;
	@java.lang.annotation.Native static final int RECORD_UNKNOWN = 0;
	@java.lang.annotation.Native static final int RECORD_ABSENT = 1;
	@java.lang.annotation.Native static final int RECORD_REGISTERED = 2;
	@java.lang.annotation.Native static final int RECORD_DESTROYED = 3;

	private Native()
	{
	}

	static
	{
		// -Dorg.bkv.library=/path/libbkvjni.so loads that file; otherwise java.library.path
		// (on Android: the APK's jniLibs) is searched for libbkvjni.so.
		String path = System.getProperty("org.bkv.library");
		if (path != null && !path.isEmpty()) {
			System.load(path);
		} else {
			System.loadLibrary("bkvjni");
		}
	}

	static native String version();

	static native long clientNew(byte[] vaultUrl, byte[] caFile, byte[] pinnedCert,
	                             long timeoutMillis, int suite, int argon2Iterations,
	                             int argon2MemoryKib, int argon2Parallelism)
	    throws BkvException;

	static native void clientFree(long client);

	static native long register(long client, byte[] token, byte[] password, byte[] key,
	                            int attemptLimit, long replacesRecordVersion)
	    throws BkvException;

	static native byte[] recover(long client, byte[] token, byte[] password)
	    throws BkvException;

	static native void changePassword(long client, byte[] token, byte[] oldPassword,
	                                  byte[] newPassword) throws BkvException;

	/**
	 * bkv_account_status's fields in order: registered (0/1), suite, attempts used, attempt
	 *  limit, record version, registered at, state, destroyed at.
	 */
	static native long[] status(long client, byte[] token) throws BkvException;

	static native boolean delete(long client, byte[] token)throws BkvException;

	static native byte[] keyGenerate() throws BkvException;

	/** The key's 79-character text as ASCII bytes (the caller wipes them). */
	static native byte[] keyFormat(byte[] key) throws BkvException;

	static native byte[] keyParse(byte[] text) throws BkvException;

	/**
	 * bkv_backup_decrypt (decrypt) or bkv_backup_encrypt from inputPath to a new outputPath.
	 */
	static native void backup(boolean decrypt, byte[] key, byte[] inputPath, byte[] outputPath)
	    throws BkvException;
}
