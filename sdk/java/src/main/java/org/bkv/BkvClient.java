package org.bkv;

import java.io.Closeable;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A client of one bkv vault (libbkv's {@code bkv_client}): registers a 32-byte backup key
 * under a password, recovers it, changes the password, reads and deletes the account's
 * record. Each call takes the account's bearer token (a JWT from the application's auth
 * service).
 *
 * <p>Passwords are {@code byte[]} (any bytes) or {@code char[]} (sent as UTF-8). The
 * binding's own copies (the UTF-8 encoding, the native buffers) are wiped before each call
 * returns; the caller's arrays are left as they are, for the caller to wipe with
 * {@code Arrays.fill} when done. Keys are {@code byte[32]}: a recovered key belongs to the
 * caller, who wipes it. Strings (the token, the URL, the paths) cannot be wiped.
 *
 * <p>Calls may run on several threads at once. {@link #close()} waits for running calls,
 * frees the native client, and makes every later call throw IllegalStateException. Calls
 * block on the network: on Android, never on the main thread. It is {@link Closeable} (an
 * AutoCloseable whose close() throws nothing) so that Kotlin's {@code use { }} takes it with
 * any standard library.
 */
public final class BkvClient implements Closeable
{
	/** The bytes of a backup key ({@code BKV_KEY_BYTES}). */
	public static final int KEY_BYTES = Native.KEY_BYTES;

	/** What {@code bkv_client_config} holds besides the URL. */
	public static final class Options
	{
		private String caFile;
		private String pinnedCert;
		private long timeoutMillis;
		private Suite suite = Suite.VAULT_PREFERENCE;
		private int argon2Iterations;
		private int argon2MemoryKib;
		private int argon2Parallelism;

		/** A PEM CA bundle to trust instead of the system's; read at each call. */
		public Options caFile(String path)
		{
			this.caFile = path;
			return this;
		}

		/**
		 * A PEM certificate whose public key the vault must present; read by the
		 * constructor.
		 */
		public Options pinnedCert(String path)
		{
			this.pinnedCert = path;
			return this;
		}

		/** Per request; 0 (the default) for 30 s. */
		public Options timeoutMillis(long millis)
		{
			if (millis < 0) {
				throw new IllegalArgumentException(
				    "timeoutMillis must not be negative");
			}
			this.timeoutMillis = millis;
			return this;
		}

		/** The suite a registration prefers. */
		public Options suite(Suite suite)
		{
			this.suite = Objects.requireNonNull(suite, "suite");
			return this;
		}

		/**
		 * Argon2id parameters of the application's own instead of the vault's published
		 * ones (which libbkv holds to its floor, docs/SDK.md). Every recovery must use the
		 * same.
		 */
		public Options argon2(int iterations, int memoryKib, int parallelism)
		{
			if (iterations < 0 || memoryKib < 0 || parallelism < 0) {
				throw new IllegalArgumentException(
				    "Argon2id parameters must not be negative");
			}
			this.argon2Iterations = iterations;
			this.argon2MemoryKib = memoryKib;
			this.argon2Parallelism = parallelism;
			return this;
		}
	}

	private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
	private long handle; // the bkv_client *; 0 once closed

	/** A client with the system's CA certificates and the vault's parameters. */
	public BkvClient(String vaultUrl) throws BkvException
	{
		this(vaultUrl, new Options());
	}

	/**
	 * A client for the vault at {@code vaultUrl} ("https://host[:port][/path]"; http:// only
	 * on a loopback address). Makes no network call.
	 *
	 * @throws InvalidArgumentException the URL or the options are not valid
	 * @throws TlsException the pinned certificate cannot be read
	 */
	public BkvClient(String vaultUrl, Options options) throws BkvException
	{
		Objects.requireNonNull(vaultUrl, "vaultUrl");
		Objects.requireNonNull(options, "options");
		handle = Native.clientNew(
		    Secrets.cString(vaultUrl, "the vault URL"),
		    options.caFile == null ? null : Secrets.cString(options.caFile, "the CA file"),
		    options.pinnedCert == null
		        ? null
		        : Secrets.cString(options.pinnedCert, "the pinned certificate"),
		    options.timeoutMillis, options.suite.code, options.argon2Iterations,
		    options.argon2MemoryKib, options.argon2Parallelism);
	}

	/** The version of the libbkv loaded, e.g. "0.1.0". */
	public static String libraryVersion()
	{
		return Native.version();
	}

	/**
	 * Registers key under password with the vault's default attempt limit; only creates.
	 *
	 * @throws AlreadyRegisteredException a key or a destroyed key's tombstone is there
	 */
	public void register(String token, byte[] password, byte[] key) throws BkvException
	{
		registerReplacing(token, password, key, 0, 0);
	}

	/** As {@link #register(String, byte[], byte[])} with the password's UTF-8. */
	public void register(String token, char[] password, byte[] key) throws BkvException
	{
		registerReplacing(token, password, key, 0, 0);
	}

	/**
	 * As {@link #register(String, byte[], byte[])} with attemptLimit (0: the vault's default).
	 */
	public void register(String token, byte[] password, byte[] key, int attemptLimit)
	    throws BkvException
	{
		registerReplacing(token, password, key, attemptLimit, 0);
	}

	/** As {@link #register(String, byte[], byte[], int)} with the password's UTF-8. */
	public void register(String token, char[] password, byte[] key, int attemptLimit)
	    throws BkvException
	{
		registerReplacing(token, password, key, attemptLimit, 0);
	}

	/**
	 * Registers key in place of the record whose version is replacesRecordVersion (from
	 * {@link #status}; a destroyed key's tombstone is replaced the same way), or creates it
	 * if that is 0. Returns the new record version.
	 *
	 * @throws ConflictException the record is not that version any more; nothing changed
	 * @throws AlreadyRegisteredException replacesRecordVersion is 0 and a record exists
	 */
	public long registerReplacing(String token, byte[] password, byte[] key, int attemptLimit,
	                              long replacesRecordVersion) throws BkvException
	{
		Objects.requireNonNull(password, "password");
		checkKey(key);
		if (attemptLimit < 0 || replacesRecordVersion < 0) {
			throw new IllegalArgumentException(
			    "attemptLimit and replacesRecordVersion must not be negative");
		}
		byte[] tokenBytes = tokenBytes(token);
		lock.readLock().lock();
		try {
			return Native.register(open(), tokenBytes, password, key, attemptLimit,
			                       replacesRecordVersion);
		} finally {
			lock.readLock().unlock();
			Secrets.wipe(tokenBytes);
		}
	}

	/**
	 * As {@link #registerReplacing(String, byte[], byte[], int, long)} with the password's
	 * UTF-8.
	 */
	public long registerReplacing(String token, char[] password, byte[] key, int attemptLimit,
	                              long replacesRecordVersion) throws BkvException
	{
		byte[] utf8 =
		    Secrets.utf8(Objects.requireNonNull(password, "password"), "the password");
		try {
			return registerReplacing(token, utf8, key, attemptLimit,
			                         replacesRecordVersion);
		} finally {
			Secrets.wipe(utf8);
		}
	}

	/**
	 * Recovers the account's key: a new {@code byte[32]} the caller owns and wipes.
	 *
	 * @throws WrongPasswordException with the attempts left
	 * @throws DestroyedException the last attempt failed, now or earlier
	 * @throws NotRegisteredException the vault holds nothing for the account
	 */
	public byte[] recover(String token, byte[] password) throws BkvException
	{
		Objects.requireNonNull(password, "password");
		byte[] tokenBytes = tokenBytes(token);
		lock.readLock().lock();
		try {
			return Native.recover(open(), tokenBytes, password);
		} finally {
			lock.readLock().unlock();
			Secrets.wipe(tokenBytes);
		}
	}

	/** As {@link #recover(String, byte[])} with the password's UTF-8. */
	public byte[] recover(String token, char[] password) throws BkvException
	{
		byte[] utf8 =
		    Secrets.utf8(Objects.requireNonNull(password, "password"), "the password");
		try {
			return recover(token, utf8);
		} finally {
			Secrets.wipe(utf8);
		}
	}

	/**
	 * Recovers with oldPassword, then registers the same key under newPassword in place of
	 * exactly the record it recovered, keeping its attempt limit.
	 *
	 * @throws WrongPasswordException oldPassword is wrong (an attempt was used)
	 * @throws ConflictException the record changed in between; the password is not changed
	 */
	public void changePassword(String token, byte[] oldPassword, byte[] newPassword)
	    throws BkvException
	{
		Objects.requireNonNull(oldPassword, "oldPassword");
		Objects.requireNonNull(newPassword, "newPassword");
		byte[] tokenBytes = tokenBytes(token);
		lock.readLock().lock();
		try {
			Native.changePassword(open(), tokenBytes, oldPassword, newPassword);
		} finally {
			lock.readLock().unlock();
			Secrets.wipe(tokenBytes);
		}
	}

	/** As {@link #changePassword(String, byte[], byte[])} with the passwords' UTF-8. */
	public void changePassword(String token, char[] oldPassword, char[] newPassword)
	    throws BkvException
	{
		byte[] oldUtf8 = Secrets.utf8(Objects.requireNonNull(oldPassword, "oldPassword"),
		                              "the old password");
		byte[] newUtf8 = null;
		try {
			newUtf8 = Secrets.utf8(Objects.requireNonNull(newPassword, "newPassword"),
			                       "the new password");
			changePassword(token, oldUtf8, newUtf8);
		} finally {
			Secrets.wipe(oldUtf8);
			Secrets.wipe(newUtf8);
		}
	}

	/** What the vault holds for the account; a destroyed key is a status, not an exception. */
	public AccountStatus status(String token) throws BkvException
	{
		byte[] tokenBytes = tokenBytes(token);
		lock.readLock().lock();
		try {
			return new AccountStatus(Native.status(open(), tokenBytes));
		} finally {
			lock.readLock().unlock();
			Secrets.wipe(tokenBytes);
		}
	}

	/**
	 * Deletes the account's record, a destroyed key's tombstone included. Returns whether
	 * there was one.
	 */
	public boolean delete(String token)throws BkvException
	{
		byte[] tokenBytes = tokenBytes(token);
		lock.readLock().lock();
		try {
			return Native.delete(open(), tokenBytes);
		} finally {
			lock.readLock().unlock();
			Secrets.wipe(tokenBytes);
		}
	}

	/**
	 * Frees the native client (waiting for calls running on it); later calls throw.
	 * Idempotent.
	 */
	@Override public void close()
	{
		lock.writeLock().lock();
		try {
			if (handle != 0) {
				Native.clientFree(handle);
				handle = 0;
			}
		} finally {
			lock.writeLock().unlock();
		}
	}

	/** The native client, under the read lock. */
	private long open()
	{
		if (handle == 0) {
			throw new IllegalStateException("the BkvClient is closed");
		}
		return handle;
	}

	private static byte[] tokenBytes(String token)
	{
		return Secrets.cString(Objects.requireNonNull(token, "token"), "the token");
	}

	static void checkKey(byte[] key)
	{
		Objects.requireNonNull(key, "key");
		if (key.length != KEY_BYTES) {
			throw new IllegalArgumentException("a backup key is " + KEY_BYTES +
			                                   " bytes, not " + key.length);
		}
	}
}
