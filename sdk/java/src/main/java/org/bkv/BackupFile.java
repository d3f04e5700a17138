package org.bkv;

import java.util.Objects;

/**
 * Encrypts and decrypts backup files with the backup key (docs/BACKUP-FORMAT.md), streaming
 * in constant memory. As {@code bkv encrypt} and {@code bkv decrypt} do, the output must
 * not exist; it is written to a temporary file beside it (mode 0600) and renamed into place
 * only when the whole file is done, and verified when decrypting, so a failure leaves
 * nothing behind. The key stays the caller's.
 */
public final class BackupFile
{
	private BackupFile()
	{
	}

	/**
	 * @throws InvalidArgumentException the output exists
	 * @throws BackupIoException the input cannot be read or the output written
	 */
	public static void encrypt(byte[] key, String inputPath, String outputPath)
	    throws BkvException
	{
		crypt(false, key, inputPath, outputPath);
	}

	/**
	 * @throws WrongBackupKeyException the file was encrypted with another key
	 * @throws BackupTamperedException a chunk failed authentication or is out of place
	 * @throws BackupTruncatedException the file ends early
	 * @throws BackupFormatException not a bkv backup
	 * @throws InvalidArgumentException the output exists
	 * @throws BackupIoException the input cannot be read or the output written
	 */
	public static void decrypt(byte[] key, String inputPath, String outputPath)
	    throws BkvException
	{
		crypt(true, key, inputPath, outputPath);
	}

	private static void crypt(boolean decrypt, byte[] key, String inputPath, String outputPath)
	    throws BkvException
	{
		BkvClient.checkKey(key);
		Native.backup(decrypt, key,
		              Secrets.cString(Objects.requireNonNull(inputPath, "inputPath"),
		                              "the input path"),
		              Secrets.cString(Objects.requireNonNull(outputPath, "outputPath"),
		                              "the output path"));
	}
}
