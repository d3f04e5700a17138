package org.bkv;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.crypto.Cipher;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/vectors/bkv-v1.json (written by libbkv, scripts/gen-vectors) recomputed independently
 * with javax.crypto: HKDF (RFC 5869) on Mac HmacSHA256/HmacSHA512, AES/GCM/NoPadding; then
 * the vector's backup file decrypted through BackupFile. The file's path comes from the
 * system property bkv.test.vectors (src/test/run-with-vault.sh).
 */
class VectorsTest
{
	@TempDir Path dir;

	private static Map<String, Object> vectors;

	@BeforeAll
	static void load() throws Exception
	{
		String path = System.getProperty("bkv.test.vectors");
		assertNotNull(path, "the system property bkv.test.vectors names docs/vectors/bkv-v1.json");
		vectors = asMap(new Json(Files.readString(Path.of(path))).value());
	}

	@Test
	void hkdfMatchesRfc5869Case1() throws Exception
	{
		byte[] ikm = new byte[22];
		java.util.Arrays.fill(ikm, (byte)0x0b);
		byte[] salt = HexFormat.of().parseHex("000102030405060708090a0b0c");
		byte[] info = HexFormat.of().parseHex("f0f1f2f3f4f5f6f7f8f9");
		assertEquals("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
		             HexFormat.of().formatHex(expand("HmacSHA256", hmac("HmacSHA256", salt, ikm), info, 42)));
	}

	@Test
	void keyWrapAndReleaseForBothSuites() throws Exception
	{
		List<Object> suites = asList(vectors.get("keywrap"));
		assertEquals(2, suites.size());
		for (int i = 0; i < suites.size(); i++) {
			Map<String, Object> v = asMap(suites.get(i));
			assertEquals(Long.valueOf(i + 1), v.get("suite_id"));
			String mac = v.get("hash").equals("SHA-256") ? "HmacSHA256" : "HmacSHA512";
			assertEquals(v.get("hash").equals("SHA-256") ? 32 : 64, hex(v, "export_key").length);
			byte[] wrapKey = expand(mac, hex(v, "export_key"), ascii("bkv-v1 wrap"), 32);
			assertArrayEquals(hex(v, "wrap_key"), wrapKey);
			byte[] wrapped = seal(wrapKey, hex(v, "wrap_nonce"), ascii("bkv-v1 wrap"),
			                      hex(v, "backup_key"));
			assertArrayEquals(hex(v, "wrapped_key"), wrapped);
			byte[] releaseKey = expand(mac, hex(v, "session_key"), ascii("bkv-v1 release"), 32);
			assertArrayEquals(hex(v, "release_key"), releaseKey);
			assertArrayEquals(hex(v, "sealed_key"),
			                  seal(releaseKey, hex(v, "release_nonce"), ascii("bkv-v1 release"), wrapped));
		}
	}

	@Test
	void backupFile() throws Exception
	{
		Map<String, Object> v = asMap(vectors.get("backup_file"));
		byte[] plain = hex(v, "plaintext");
		byte[] okm = expand("HmacSHA256", hmac("HmacSHA256", hex(v, "salt"), hex(v, "backup_key")),
		                    ascii("bkv-v1 backup"), 64);
		assertArrayEquals(hex(v, "okm"), okm);

		ByteArrayOutputStream header = new ByteArrayOutputStream();
		header.write(ascii("bkvbak\r\n"));
		header.write(new byte[] {1, 0, 1, 0, 0});
		header.write(hex(v, "salt"));
		header.write(hmac("HmacSHA256", java.util.Arrays.copyOfRange(okm, 32, 64), header.toByteArray()));
		assertArrayEquals(hex(v, "header"), header.toByteArray());

		ByteArrayOutputStream file = new ByteArrayOutputStream();
		file.write(header.toByteArray());
		file.write(new byte[] {1, (byte)(plain.length >>> 24), (byte)(plain.length >>> 16),
		                       (byte)(plain.length >>> 8), (byte)plain.length});
		byte[] nonce = new byte[12];
		nonce[11] = 1; /* chunk 0, final */
		byte[] sealed = seal(java.util.Arrays.copyOf(okm, 32), nonce, file.toByteArray(), plain);
		file.write(sealed, 12, sealed.length - 12);
		assertArrayEquals(hex(v, "file"), file.toByteArray());

		Path source = dir.resolve("vector.bkv"), out = dir.resolve("vector.out");
		Files.write(source, hex(v, "file"));
		BackupFile.decrypt(hex(v, "backup_key"), source.toString(), out.toString());
		assertArrayEquals(plain, Files.readAllBytes(out));
	}

	/* ---- HKDF and AES-GCM on javax.crypto ---- */

	private static byte[] hmac(String alg, byte[] key, byte[] data) throws Exception
	{
		Mac mac = Mac.getInstance(alg);
		mac.init(new SecretKeySpec(key, alg));
		return mac.doFinal(data);
	}

	/** HKDF-Expand, RFC 5869 2.3: T(i) = HMAC(PRK, T(i-1) | info | i). */
	private static byte[] expand(String alg, byte[] prk, byte[] info, int length) throws Exception
	{
		Mac mac = Mac.getInstance(alg);
		mac.init(new SecretKeySpec(prk, alg));
		ByteArrayOutputStream out = new ByteArrayOutputStream();
		byte[] t = new byte[0];
		for (int i = 1; out.size() < length; i++) {
			mac.update(t);
			mac.update(info);
			mac.update((byte)i);
			t = mac.doFinal();
			out.write(t);
		}
		return java.util.Arrays.copyOf(out.toByteArray(), length);
	}

	/** nonce || ciphertext || tag */
	private static byte[] seal(byte[] key, byte[] nonce, byte[] aad, byte[] plain) throws Exception
	{
		Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
		c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, nonce));
		c.updateAAD(aad);
		byte[] ct = c.doFinal(plain);
		byte[] out = new byte[nonce.length + ct.length];
		System.arraycopy(nonce, 0, out, 0, nonce.length);
		System.arraycopy(ct, 0, out, nonce.length, ct.length);
		return out;
	}

	private static byte[] ascii(String s)
	{
		return s.getBytes(StandardCharsets.US_ASCII);
	}

	private static byte[] hex(Map<String, Object> v, String name)
	{
		Object text = v.get(name);
		assertNotNull(text, name);
		return HexFormat.of().parseHex((String)text);
	}

	@SuppressWarnings("unchecked")
	private static Map<String, Object> asMap(Object o)
	{
		return (Map<String, Object>)o;
	}

	@SuppressWarnings("unchecked")
	private static List<Object> asList(Object o)
	{
		return (List<Object>)o;
	}

	/** Just enough JSON for the vectors file: objects, arrays, strings, integers. */
	private static final class Json
	{
		private final String s;
		private int at;

		Json(String s)
		{
			this.s = s;
		}

		Object value()
		{
			skip();
			char c = s.charAt(at);
			if (c == '{') {
				Map<String, Object> m = new LinkedHashMap<>();
				at++;
				for (skip(); s.charAt(at) != '}'; skip()) {
					String key = string();
					skip();
					expect(':');
					m.put(key, value());
					skip();
					if (s.charAt(at) == ',')
						at++;
				}
				at++;
				return m;
			}
			if (c == '[') {
				List<Object> l = new ArrayList<>();
				at++;
				for (skip(); s.charAt(at) != ']'; skip()) {
					l.add(value());
					skip();
					if (s.charAt(at) == ',')
						at++;
				}
				at++;
				return l;
			}
			if (c == '"')
				return string();
			int start = at;
			while (at < s.length() && (Character.isDigit(s.charAt(at)) || s.charAt(at) == '-'))
				at++;
			if (start == at)
				throw new IllegalArgumentException("unexpected JSON at " + at);
			return Long.valueOf(s.substring(start, at));
		}

		private String string()
		{
			expect('"');
			StringBuilder b = new StringBuilder();
			for (char c; (c = s.charAt(at++)) != '"';)
				b.append(c == '\\' ? s.charAt(at++) : c);
			return b.toString();
		}

		private void expect(char c)
		{
			if (s.charAt(at++) != c)
				throw new IllegalArgumentException("expected " + c + " at " + (at - 1));
		}

		private void skip()
		{
			while (Character.isWhitespace(s.charAt(at)))
				at++;
		}
	}
}
