package org.bkv;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.util.Arrays;
import java.util.Random;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * BackupFile over bkv_backup_encrypt and bkv_backup_decrypt: a round trip over several
 * chunks, each damage with its own exception, and a failure leaves no output behind.
 */
class BackupFileTest
{
	@TempDir Path dir;

	private byte[] key;
	private byte[] plain;
	private Path plainFile;
	private Path encrypted;

	@BeforeEach void encryptAFileOfThreeChunks() throws Exception
	{
		key = BackupKey.generate();
		plain = new byte[200_000]; // 64 KiB chunks: three full ones and a short one
		new Random(7).nextBytes(plain);
		plainFile = Files.write(dir.resolve("plain"), plain);
		encrypted = dir.resolve("plain.bkv");
		BackupFile.encrypt(key, plainFile.toString(), encrypted.toString());
	}

	/** The names in dir besides the inputs: the output and any temporary file left. */
	private Set<String> leftovers() throws IOException
	{
		try (Stream<Path> files = Files.list(dir)) {
			return Set.copyOf(files.map(p -> p.getFileName().toString())
			                      .filter(n
			                              -> !n.equals("plain") &&
			                                     !n.equals("plain.bkv") &&
			                                     !n.equals("damaged"))
			                      .toList());
		}
	}

	@Test void decrypt_gives_back_what_encrypt_took() throws Exception
	{
		byte[] sealed = Files.readAllBytes(encrypted);
		assertTrue(sealed.length > plain.length);
		assertFalse(Arrays.equals(Arrays.copyOf(sealed, plain.length), plain));
		Path out = dir.resolve("out");
		BackupFile.decrypt(key, encrypted.toString(), out.toString());
		assertArrayEquals(plain, Files.readAllBytes(out));
		assertEquals(
		    Set.of(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE),
		    Files.getPosixFilePermissions(out));
		assertEquals(Set.of("out"), leftovers());
	}

	@Test void another_key_is_wrong_backup_key_and_leaves_nothing() throws Exception
	{
		WrongBackupKeyException e = assertThrows(
		    WrongBackupKeyException.class,
		    ()
		        -> BackupFile.decrypt(BackupKey.generate(), encrypted.toString(),
		                              dir.resolve("out").toString()));
		assertEquals(BkvException.ERR_WRONG_KEY, e.code());
		assertEquals(Set.of(), leftovers());
	}

	@Test void a_file_cut_in_half_is_truncated_and_leaves_nothing() throws Exception
	{
		byte[] sealed = Files.readAllBytes(encrypted);
		Path damaged =
		    Files.write(dir.resolve("damaged"), Arrays.copyOf(sealed, sealed.length / 2));
		assertThrows(BackupTruncatedException.class,
		             ()
		                 -> BackupFile.decrypt(key, damaged.toString(),
		                                       dir.resolve("out").toString()));
		assertEquals(Set.of(), leftovers());
	}

	@Test void a_flipped_byte_is_tampered_and_leaves_nothing() throws Exception
	{
		byte[] sealed = Files.readAllBytes(encrypted);
		sealed[sealed.length / 2] ^= 1;
		Path damaged = Files.write(dir.resolve("damaged"), sealed);
		assertThrows(BackupTamperedException.class,
		             ()
		                 -> BackupFile.decrypt(key, damaged.toString(),
		                                       dir.resolve("out").toString()));
		assertEquals(Set.of(), leftovers());
	}

	@Test void a_file_that_is_not_a_backup_is_format() throws Exception
	{
		assertThrows(BackupFormatException.class,
		             ()
		                 -> BackupFile.decrypt(key, plainFile.toString(),
		                                       dir.resolve("out").toString()));
		assertEquals(Set.of(), leftovers());
	}

	@Test void an_input_that_cannot_be_read_is_io_naming_it()
	{
		String missing = dir.resolve("missing").toString();
		BackupIoException e = assertThrows(
		    BackupIoException.class,
		    () -> BackupFile.encrypt(key, missing, dir.resolve("out").toString()));
		assertTrue(e.getMessage().contains("cannot read " + missing), e.getMessage());
	}

	@Test void an_output_in_a_directory_that_does_not_exist_is_io()
	{
		assertThrows(BackupIoException.class,
		             ()
		                 -> BackupFile.encrypt(key, plainFile.toString(),
		                                       dir.resolve("no/such/dir/out").toString()));
	}

	@Test void an_existing_output_is_refused_and_kept() throws Exception
	{
		Path existing = Files.writeString(dir.resolve("out"), "keep me");
		InvalidArgumentException e = assertThrows(
		    InvalidArgumentException.class,
		    () -> BackupFile.decrypt(key, encrypted.toString(), existing.toString()));
		assertTrue(e.getMessage().contains("already exists"), e.getMessage());
		assertEquals("keep me", Files.readString(existing));
	}

	@Test void a_key_that_is_not_32_bytes_is_refused_before_libbkv()
	{
		assertThrows(IllegalArgumentException.class,
		             ()
		                 -> BackupFile.encrypt(new byte[16], plainFile.toString(),
		                                       dir.resolve("out").toString()));
	}
}
