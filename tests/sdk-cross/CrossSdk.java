import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.HexFormat;
import org.bkv.AccountStatus;
import org.bkv.BackupKey;
import org.bkv.BkvClient;
import org.bkv.BkvException;
import org.bkv.Suite;
import org.bkv.WrongPasswordException;

/**
 * The Java side of tests/test_sdk_cross.sh: one bkv call through the Java binding per run,
 * with the same command line as tests/sdk-cross/cross_sdk.py (the Python side).
 *
 *   java -Dorg.bkv.library=libbkvjni.so -cp bkv.jar:bkv-cross-sdk.jar CrossSdk \
 *       URL CA_FILE T,M,P SUITE TOKEN_FILE COMMAND [ARGS]
 *
 *   recover PASSWORD_FILE             prints the key as 64 lowercase hex digits
 *   change-password OLD_FILE NEW_FILE
 *   register PASSWORD_FILE KEY_OUT    a key from BackupKey.generate, registered in place of
 *                                     whatever the account holds; its hex written to KEY_OUT
 *   status                            state=... suite=... attempts_used=N attempt_limit=N
 *                                     record_version=N
 *
 * SUITE (p256-sha256, ristretto255-sha512) is the registration's suite; T,M,P the client's
 * Argon2id parameters. Passwords are read from their files as UTF-8 text and passed as
 * char[], so the binding's own UTF-8 encoding is what the other SDKs must agree with.
 * Exit status: 0, 3 for a wrong password (attempts remaining on stderr), 1 otherwise.
 */
public final class CrossSdk
{
	private CrossSdk()
	{
	}

	private static char[] password(String file) throws IOException
	{
		byte[] bytes = Files.readAllBytes(Path.of(file));
		try {
			CharBuffer text = StandardCharsets.UTF_8.newDecoder()
			                      .onMalformedInput(CodingErrorAction.REPORT)
			                      .onUnmappableCharacter(CodingErrorAction.REPORT)
			                      .decode(ByteBuffer.wrap(bytes));
			char[] chars = Arrays.copyOf(text.array(), text.limit());
			Arrays.fill(text.array(), '\0');
			return chars;
		} catch (CharacterCodingException e) {
			throw new IOException(file + " is not UTF-8", e);
		} finally {
			Arrays.fill(bytes, (byte)0);
		}
	}

	private static String suiteName(Suite suite)
	{
		return suite == Suite.P256_SHA256 ? "p256-sha256" : "ristretto255-sha512";
	}

	private static Suite suite(String name)
	{
		switch (name) {
		case "p256-sha256":
			return Suite.P256_SHA256;
		case "ristretto255-sha512":
			return Suite.RISTRETTO255_SHA512;
		default:
			throw new IllegalArgumentException("unknown suite " + name);
		}
	}

	private static int run(String[] args) throws IOException, BkvException
	{
		if (args.length < 6) {
			System.err.println(
			    "usage: CrossSdk URL CA_FILE T,M,P SUITE TOKEN_FILE COMMAND [ARGS]");
			return 2;
		}
		String[] argon2 = args[2].split(",", -1);
		if (argon2.length != 3) {
			throw new IllegalArgumentException("Argon2id parameters are T,M,P");
		}
		BkvClient.Options options =
		    new BkvClient.Options()
		        .caFile(args[1])
		        .suite(suite(args[3]))
		        .argon2(Integer.parseInt(argon2[0]), Integer.parseInt(argon2[1]),
		                Integer.parseInt(argon2[2]));
		String token = Files.readString(Path.of(args[4]), StandardCharsets.US_ASCII).trim();
		String command = args[5];
		int want = command.equals("status")            ? 6
		           : command.equals("recover")         ? 7
		           : command.equals("change-password") ? 8
		           : command.equals("register")        ? 8
		                                               : -1;
		if (want != args.length) {
			System.err.println("CrossSdk: unknown command or wrong arguments: " +
			                   command);
			return 2;
		}
		try (BkvClient client = new BkvClient(args[0], options)) {
			switch (command) {
			case "status": {
				AccountStatus s = client.status(token);
				System.out.println(
				    "state=" + s.state().name().toLowerCase() +
				    " suite=" + (s.registered() ? suiteName(s.suite()) : "-") +
				    " attempts_used=" + s.attemptsUsed() + " attempt_limit=" +
				    s.attemptLimit() + " record_version=" + s.recordVersion());
				return 0;
			}
			case "recover": {
				char[] pw = password(args[6]);
				byte[] key = null;
				try {
					key = client.recover(token, pw);
					System.out.println(HexFormat.of().formatHex(key));
				} finally {
					Arrays.fill(pw, '\0');
					if (key != null) {
						Arrays.fill(key, (byte)0);
					}
				}
				return 0;
			}
			case "change-password": {
				char[] old = password(args[6]);
				char[] now = password(args[7]);
				try {
					client.changePassword(token, old, now);
				} finally {
					Arrays.fill(old, '\0');
					Arrays.fill(now, '\0');
				}
				return 0;
			}
			default: { // register
				char[] pw = password(args[6]);
				byte[] key = BackupKey.generate();
				try {
					long replaces = client.status(token).recordVersion();
					long version =
					    client.registerReplacing(token, pw, key, 0, replaces);
					Files.writeString(Path.of(args[7]),
					                  HexFormat.of().formatHex(key) + "\n",
					                  StandardOpenOption.CREATE_NEW,
					                  StandardOpenOption.WRITE);
					System.out.println("record_version=" + version);
				} finally {
					Arrays.fill(pw, '\0');
					Arrays.fill(key, (byte)0);
				}
				return 0;
			}
			}
		}
	}

	public static void main(String[] args)
	{
		int rc;
		try {
			rc = run(args);
		} catch (WrongPasswordException e) {
			System.err.println("CrossSdk: wrong password: " + e.attemptsRemaining() +
			                   " attempts remaining");
			rc = 3;
		} catch (BkvException | IOException | RuntimeException e) {
			System.err.println("CrossSdk: " + e);
			rc = 1;
		}
		System.exit(rc);
	}
}
