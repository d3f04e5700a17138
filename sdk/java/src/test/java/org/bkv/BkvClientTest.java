package org.bkv;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * BkvClient against a real bkvd (a development vault that src/test/run-with-vault.sh
 * starts on 127.0.0.1). System properties: bkv.test.url, bkv.test.caFile (the vault's
 * certificate), bkv.test.otherCaFile (a certificate that did not sign it), bkv.test.bkvd
 * and bkv.test.config (to mint a token per account with `bkvd dev-token`). Each test uses
 * accounts of its own.
 */
class BkvClientTest
{
	private static final AtomicInteger accounts = new AtomicInteger();
	private static final byte[] PASSWORD = "correct horse".getBytes(StandardCharsets.UTF_8);
	private static final byte[] WRONG = "battery staple".getBytes(StandardCharsets.UTF_8);

	private BkvClient client;

	private static String property(String name)
	{
		String value = System.getProperty(name);
		if (value == null) {
			throw new IllegalStateException(
			    "-D" + name +
			    " is not set (run the tests with src/test/run-with-vault.sh)");
		}
		return value;
	}

	/** Light Argon2id (the tests' own choice: not held to libbkv's floor). */
	private static BkvClient.Options options()
	{
		return new BkvClient.Options()
		    .caFile(property("bkv.test.caFile"))
		    .argon2(1, 1024, 1);
	}

	/** A bearer token for a new account no other test uses. */
	private static String newAccountToken() throws IOException, InterruptedException
	{
		String account =
		    "java-" + ProcessHandle.current().pid() + "-" + accounts.incrementAndGet();
		ProcessBuilder builder =
		    new ProcessBuilder(property("bkv.test.bkvd"), "dev-token", "--config",
		                       property("bkv.test.config"), account)
		        .redirectError(ProcessBuilder.Redirect.INHERIT);
		// A sanitizer runtime preloaded into this JVM is not for bkvd, which links its own.
		builder.environment().remove("LD_PRELOAD");
		Process p = builder.start();
		ByteArrayOutputStream out = new ByteArrayOutputStream();
		try (InputStream in = p.getInputStream()) {
			in.transferTo(out);
		}
		assertEquals(0, p.waitFor(), "bkvd dev-token");
		return out.toString(StandardCharsets.US_ASCII).trim();
	}

	@BeforeEach void open() throws BkvException
	{
		client = new BkvClient(property("bkv.test.url"), options());
	}

	@AfterEach void close()
	{
		client.close();
	}

	private void registerThenRecover(Suite suite) throws Exception
	{
		try (BkvClient c =
		         new BkvClient(property("bkv.test.url"), options().suite(suite))) {
			String token = newAccountToken();
			byte[] key = BackupKey.generate();
			c.register(token, PASSWORD, key);
			assertArrayEquals(key, c.recover(token, PASSWORD));
			AccountStatus status = c.status(token);
			assertEquals(suite, status.suite());
			assertEquals(RecordState.REGISTERED, status.state());
			assertTrue(status.registered());
			assertEquals(1, status.recordVersion());
			assertEquals(0, status.attemptsUsed());
			assertTrue(status.registeredAtEpochSecond() > 0);
		}
	}

	@Test void register_then_recover_with_p256_sha256() throws Exception
	{
		registerThenRecover(Suite.P256_SHA256);
	}

	@Test void register_then_recover_with_ristretto255_sha512() throws Exception
	{
		registerThenRecover(Suite.RISTRETTO255_SHA512);
	}

	@Test
	void a_wrong_password_says_attempts_remaining_and_the_last_one_destroys() throws Exception
	{
		String token = newAccountToken();
		byte[] key = BackupKey.generate();
		client.register(token, PASSWORD, key, 2);
		WrongPasswordException wrong =
		    assertThrows(WrongPasswordException.class, () -> client.recover(token, WRONG));
		assertEquals(BkvException.ERR_WRONG_PASSWORD, wrong.code());
		assertTrue(wrong.attemptsKnown());
		assertEquals(1, wrong.attemptsRemaining());
		assertEquals(2, wrong.attemptLimit());
		assertEquals(1, client.status(token).attemptsUsed());

		assertThrows(DestroyedException.class, () -> client.recover(token, WRONG));
		AccountStatus status = client.status(token);
		assertEquals(RecordState.DESTROYED, status.state());
		assertFalse(status.registered());
		assertTrue(status.destroyedAtEpochSecond() > 0);
		DestroyedException gone =
		    assertThrows(DestroyedException.class, () -> client.recover(token, PASSWORD));
		assertEquals(BkvException.ERR_DESTROYED, gone.code());
	}

	@Test void a_new_account_is_absent_and_recovering_it_is_not_registered() throws Exception
	{
		String token = newAccountToken();
		AccountStatus status = client.status(token);
		assertEquals(RecordState.ABSENT, status.state());
		assertFalse(status.registered());
		assertThrows(NotRegisteredException.class, () -> client.recover(token, PASSWORD));
	}

	@Test void delete_removes_the_record_once() throws Exception
	{
		String token = newAccountToken();
		client.register(token, PASSWORD, BackupKey.generate());
		assertTrue(client.delete(token));
		assertEquals(RecordState.ABSENT, client.status(token).state());
		assertFalse(client.delete(token));
		assertThrows(NotRegisteredException.class, () -> client.recover(token, PASSWORD));
	}

	@Test void register_only_creates_and_replacing_takes_the_current_version() throws Exception
	{
		String token = newAccountToken();
		byte[] first = BackupKey.generate();
		byte[] second = BackupKey.generate();
		client.register(token, PASSWORD, first);
		assertThrows(AlreadyRegisteredException.class,
		             () -> client.register(token, WRONG, second));
		assertArrayEquals(first, client.recover(token, PASSWORD));

		assertEquals(2, client.registerReplacing(token, WRONG, second, 0, 1));
		assertArrayEquals(second, client.recover(token, WRONG));
		ConflictException stale =
		    assertThrows(ConflictException.class,
		                 () -> client.registerReplacing(token, PASSWORD, first, 0, 1));
		assertEquals(BkvException.ERR_CONFLICT, stale.code());
		assertArrayEquals(second, client.recover(token, WRONG));
	}

	@Test void change_password_with_char_arrays_sends_utf8_and_keeps_the_key() throws Exception
	{
		String token = newAccountToken();
		byte[] key = BackupKey.generate();
		char[] oldPassword = "pässwörd €1".toCharArray();
		char[] newPassword = "ünïcode 😀 new".toCharArray();
		client.register(token, oldPassword, key);
		client.changePassword(token, oldPassword, newPassword);
		assertArrayEquals("pässwörd €1".toCharArray(), oldPassword,
		                  "the caller's array is the caller's");

		assertThrows(WrongPasswordException.class,
		             () -> client.recover(token, oldPassword));
		// The same password as UTF-8 bytes made by the JDK, not by the binding.
		assertArrayEquals(
		    key, client.recover(token, "ünïcode 😀 new".getBytes(StandardCharsets.UTF_8)));
		assertEquals(2, client.status(token).recordVersion());
	}

	@Test void change_password_with_a_wrong_password_changes_nothing() throws Exception
	{
		String token = newAccountToken();
		byte[] key = BackupKey.generate();
		client.register(token, PASSWORD, key);
		assertThrows(WrongPasswordException.class,
		             () -> client.changePassword(token, WRONG, WRONG));
		assertArrayEquals(key, client.recover(token, PASSWORD));
	}

	@Test
	void a_closed_client_throws_illegal_state_and_closing_again_is_harmless() throws Exception
	{
		String token = newAccountToken();
		client.close();
		assertThrows(IllegalStateException.class, () -> client.status(token));
		assertThrows(IllegalStateException.class, () -> client.recover(token, PASSWORD));
		assertThrows(IllegalStateException.class,
		             () -> client.register(token, PASSWORD, BackupKey.generate()));
		assertThrows(IllegalStateException.class, () -> client.delete(token));
		assertThrows(IllegalStateException.class,
		             () -> client.changePassword(token, PASSWORD, WRONG));
		assertDoesNotThrow(client::close);
	}

	@Test void a_ca_file_that_did_not_sign_the_vault_is_a_tls_error() throws Exception
	{
		String token = newAccountToken();
		try (BkvClient c = new BkvClient(
		         property("bkv.test.url"),
		         new BkvClient.Options().caFile(property("bkv.test.otherCaFile")))) {
			TlsException e = assertThrows(TlsException.class, () -> c.status(token));
			assertEquals(BkvException.ERR_TLS, e.code());
		}
	}

	@Test void a_ca_file_that_does_not_exist_is_a_tls_error() throws Exception
	{
		String token = newAccountToken();
		try (BkvClient c =
		         new BkvClient(property("bkv.test.url"),
		                       new BkvClient.Options().caFile(
		                           property("bkv.test.otherCaFile") + ".missing"))) {
			assertThrows(TlsException.class, () -> c.status(token));
		}
	}

	@Test void a_pinned_certificate_must_be_the_vaults() throws Exception
	{
		String token = newAccountToken();
		try (BkvClient pinnedOther =
		         new BkvClient(property("bkv.test.url"),
		                       options().pinnedCert(property("bkv.test.otherCaFile")));
		     BkvClient pinnedVault =
		         new BkvClient(property("bkv.test.url"),
		                       options().pinnedCert(property("bkv.test.caFile")))) {
			assertThrows(TlsException.class, () -> pinnedOther.status(token));
			assertEquals(RecordState.ABSENT, pinnedVault.status(token).state());
		}
	}

	@Test void a_pinned_certificate_that_cannot_be_read_fails_the_constructor()
	{
		assertThrows(TlsException.class,
		             ()
		                 -> new BkvClient(property("bkv.test.url"),
		                                  options().pinnedCert(property("bkv.test.caFile") +
		                                                       ".missing")));
	}

	@Test void a_token_the_vault_rejects_is_unauthenticated_in_every_call() throws BkvException
	{
		String bad = "not-a-token";
		UnauthenticatedException e =
		    assertThrows(UnauthenticatedException.class, () -> client.status(bad));
		assertEquals(BkvException.ERR_UNAUTHENTICATED, e.code());
		byte[] key = BackupKey.generate();
		assertThrows(UnauthenticatedException.class,
		             () -> client.register(bad, PASSWORD, key));
		assertThrows(UnauthenticatedException.class,
		             () -> client.registerReplacing(bad, PASSWORD, key, 0, 1));
		assertThrows(UnauthenticatedException.class, () -> client.recover(bad, PASSWORD));
		assertThrows(UnauthenticatedException.class,
		             () -> client.changePassword(bad, PASSWORD, WRONG));
		assertThrows(UnauthenticatedException.class, () -> client.delete(bad));
	}

	@Test void a_path_where_no_vault_answers_is_an_http_error_with_its_status() throws Exception
	{
		String token = newAccountToken();
		try (BkvClient c =
		         new BkvClient(property("bkv.test.url") + "/not/the/vault", options())) {
			HttpException e = assertThrows(HttpException.class, () -> c.status(token));
			assertEquals(404, e.httpStatus());
		}
	}

	@Test void a_vault_that_does_not_answer_is_unavailable() throws Exception
	{
		String token = newAccountToken();
		// Port 1 on loopback: nothing listens there in the test's environment.
		try (BkvClient c = new BkvClient("https://127.0.0.1:1", options())) {
			UnavailableException e =
			    assertThrows(UnavailableException.class, () -> c.status(token));
			assertEquals(0, e.httpStatus());
		}
	}

	@Test void plain_http_to_a_host_that_is_not_loopback_is_refused_by_the_constructor()
	{
		InvalidArgumentException e =
		    assertThrows(InvalidArgumentException.class,
		                 () -> new BkvClient("http://vault.example", options()));
		assertEquals(BkvException.ERR_ARGUMENT, e.code());
		assertNotEquals("", e.getMessage());
	}

	@Test void an_empty_password_is_refused_by_libbkv() throws Exception
	{
		String token = newAccountToken();
		assertThrows(InvalidArgumentException.class,
		             () -> client.register(token, new byte[0], BackupKey.generate()));
		assertThrows(InvalidArgumentException.class,
		             () -> client.recover(token, new char[0]));
	}

	@Test void arguments_java_can_check_are_checked_before_libbkv() throws Exception
	{
		String token = newAccountToken();
		assertThrows(IllegalArgumentException.class,
		             () -> client.register(token, PASSWORD, new byte[33]));
		assertThrows(IllegalArgumentException.class,
		             () -> client.recover(token, new char[] {'a', '\ud800'}));
		assertThrows(IllegalArgumentException.class, () -> client.status(token + "\0"));
		assertThrows(NullPointerException.class, () -> client.recover(null, PASSWORD));
		assertThrows(IllegalArgumentException.class,
		             () -> new BkvClient.Options().argon2(-1, 0, 0));
	}

	@Test void calls_on_several_threads_share_one_client() throws Exception
	{
		String[] tokens = {newAccountToken(), newAccountToken(), newAccountToken()};
		byte[][] keys = new byte[tokens.length][];
		Thread[] threads = new Thread[tokens.length];
		Throwable[] failures = new Throwable[tokens.length];
		for (int i = 0; i < tokens.length; i++) {
			int n = i;
			keys[n] = BackupKey.generate();
			threads[n] = new Thread(() -> {
				try {
					client.register(tokens[n], PASSWORD, keys[n]);
					assertArrayEquals(keys[n],
					                  client.recover(tokens[n], PASSWORD));
				} catch (Throwable t) {
					failures[n] = t;
				}
			});
			threads[n].start();
		}
		for (int i = 0; i < tokens.length; i++) {
			threads[i].join();
			if (failures[i] != null) {
				throw new AssertionError("thread " + i, failures[i]);
			}
		}
	}

	@Test
	void close_waits_for_a_running_call_and_later_calls_throw_illegal_state() throws Exception
	{
		String token = newAccountToken();
		// A "vault" that accepts the connection and never answers: the call runs until its
		// 1.5 s timeout, and close() must wait for it rather than free the client under it.
		ServerSocket silent = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
		try {
			Thread acceptor = new Thread(() -> {
				try (Socket held = silent.accept()) {
					held.getInputStream().transferTo(
					    OutputStream.nullOutputStream());
				} catch (IOException closed) {
					// the test is over
				}
			});
			acceptor.start();
			BkvClient shared =
			    new BkvClient("https://127.0.0.1:" + silent.getLocalPort(),
			                  options().timeoutMillis(1500));
			Throwable[] ended = new Throwable[1];
			Thread caller = new Thread(() -> {
				try {
					shared.status(token);
				} catch (Throwable t) {
					ended[0] = t;
				}
			});
			caller.start();
			Thread.sleep(300); // the call is waiting for the silent vault
			long started = System.nanoTime();
			shared.close();
			long closeMillis = (System.nanoTime() - started) / 1_000_000;
			caller.join();
			assertTrue(closeMillis >= 800,
			           "close() returned after " + closeMillis + " ms");
			assertTrue(ended[0] instanceof UnavailableException,
			           String.valueOf(ended[0]));
			assertThrows(IllegalStateException.class, () -> shared.status(token));
			acceptor.join(); // the client hung up at its timeout
		} finally {
			silent.close();
		}
	}
}
