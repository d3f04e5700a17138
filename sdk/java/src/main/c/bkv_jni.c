/*
 * bkv_jni.c - libbkvjni, the native half of the Java binding (org.bkv.Native): each
 * native method copies its Java arguments into buffers of its own, calls libbkv, and
 * returns the result or throws what BkvException.fromNative makes of the bkv_error.
 *
 * Invariants:
 * - Every buffer that held a password, a bearer token or a key (the copies of Java arrays,
 *   the bkv_key structs, the key's text) is wiped before it is freed or goes out of scope,
 *   on every path. Java arrays are only read with GetByteArrayRegion and written with
 *   SetByteArrayRegion, so the JVM makes no copy of its own that would escape the wipe.
 * - Every JNI call that can raise is checked; with an exception pending, a function only
 *   wipes, frees and returns.
 * - A client handle is the bkv_client pointer. BkvClient's lock keeps clientFree from
 *   running beside another call on the same client, which is all libbkv asks.
 */
#include <errno.h>
#include <jni.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bkv.h>

#include "org_bkv_BkvException.h"
#include "org_bkv_Native.h"

/* BkvException's codes are bkv.h's. */
_Static_assert(org_bkv_BkvException_ERR_ARGUMENT == BKV_ERR_ARGUMENT, "ERR_ARGUMENT");
_Static_assert(org_bkv_BkvException_ERR_WRONG_PASSWORD == BKV_ERR_WRONG_PASSWORD,
               "ERR_WRONG_PASSWORD");
_Static_assert(org_bkv_BkvException_ERR_DESTROYED == BKV_ERR_DESTROYED, "ERR_DESTROYED");
_Static_assert(org_bkv_BkvException_ERR_NOT_REGISTERED == BKV_ERR_NOT_REGISTERED,
               "ERR_NOT_REGISTERED");
_Static_assert(org_bkv_BkvException_ERR_UNAUTHENTICATED == BKV_ERR_UNAUTHENTICATED,
               "ERR_UNAUTHENTICATED");
_Static_assert(org_bkv_BkvException_ERR_UNAVAILABLE == BKV_ERR_UNAVAILABLE, "ERR_UNAVAILABLE");
_Static_assert(org_bkv_BkvException_ERR_PROTOCOL == BKV_ERR_PROTOCOL, "ERR_PROTOCOL");
_Static_assert(org_bkv_BkvException_ERR_IO == BKV_ERR_IO, "ERR_IO");
_Static_assert(org_bkv_BkvException_ERR_FORMAT == BKV_ERR_FORMAT, "ERR_FORMAT");
_Static_assert(org_bkv_BkvException_ERR_TRUNCATED == BKV_ERR_TRUNCATED, "ERR_TRUNCATED");
_Static_assert(org_bkv_BkvException_ERR_TAMPERED == BKV_ERR_TAMPERED, "ERR_TAMPERED");
_Static_assert(org_bkv_BkvException_ERR_WRONG_KEY == BKV_ERR_WRONG_KEY, "ERR_WRONG_KEY");
_Static_assert(org_bkv_BkvException_ERR_NOMEM == BKV_ERR_NOMEM, "ERR_NOMEM");
_Static_assert(org_bkv_BkvException_ERR_INTERNAL == BKV_ERR_INTERNAL, "ERR_INTERNAL");
_Static_assert(org_bkv_BkvException_ERR_ALREADY_REGISTERED == BKV_ERR_ALREADY_REGISTERED,
               "ERR_ALREADY_REGISTERED");
_Static_assert(org_bkv_BkvException_ERR_CONFLICT == BKV_ERR_CONFLICT, "ERR_CONFLICT");
_Static_assert(org_bkv_BkvException_ERR_DATA_LOSS == BKV_ERR_DATA_LOSS, "ERR_DATA_LOSS");
_Static_assert(org_bkv_BkvException_ERR_TLS == BKV_ERR_TLS, "ERR_TLS");
_Static_assert(org_bkv_BkvException_ERR_HTTP == BKV_ERR_HTTP, "ERR_HTTP");
_Static_assert(org_bkv_BkvException_ERR_RATE_LIMITED == BKV_ERR_RATE_LIMITED, "ERR_RATE_LIMITED");

/* So are Native's sizes, suites and record states. */
_Static_assert(org_bkv_Native_KEY_BYTES == BKV_KEY_BYTES, "KEY_BYTES");
_Static_assert(org_bkv_Native_SUITE_VAULT_PREFERENCE == BKV_SUITE_VAULT_PREFERENCE,
               "SUITE_VAULT_PREFERENCE");
_Static_assert(org_bkv_Native_SUITE_P256_SHA256 == BKV_SUITE_P256_SHA256, "SUITE_P256_SHA256");
_Static_assert(org_bkv_Native_SUITE_RISTRETTO255_SHA512 == BKV_SUITE_RISTRETTO255_SHA512,
               "SUITE_RISTRETTO255_SHA512");
_Static_assert(org_bkv_Native_RECORD_UNKNOWN == BKV_RECORD_UNKNOWN, "RECORD_UNKNOWN");
_Static_assert(org_bkv_Native_RECORD_ABSENT == BKV_RECORD_ABSENT, "RECORD_ABSENT");
_Static_assert(org_bkv_Native_RECORD_REGISTERED == BKV_RECORD_REGISTERED, "RECORD_REGISTERED");
_Static_assert(org_bkv_Native_RECORD_DESTROYED == BKV_RECORD_DESTROYED, "RECORD_DESTROYED");

/* Fields of bkv_account_status that Native.status returns, in its order. */
enum { STATUS_FIELDS = 8 };
/* bkv_key_format's text without its NUL. */
enum { KEY_TEXT_CHARS = BKV_KEY_TEXT_BYTES - 1 };

/* Resolved once by JNI_OnLoad, kept as global references. */
static jclass bkv_exception_class;
static jmethodID bkv_exception_from_native;
static jclass out_of_memory_class;

/* memset through a volatile pointer, so the compiler cannot drop a wipe of a buffer that
 * is freed or goes out of scope right after (explicit_bzero is not everywhere Android is). */
static void *(*const volatile wipe_memset)(void *, int, size_t) = memset;

static void wipe(void *bytes, size_t len)
{
	if (bytes != NULL && len > 0)
		wipe_memset(bytes, 0, len);
}

static jclass global_class(JNIEnv *env, const char *name)
{
	jclass local = (*env)->FindClass(env, name);
	if (local == NULL)
		return NULL;
	jclass global = (*env)->NewGlobalRef(env, local);
	(*env)->DeleteLocalRef(env, local);
	return global;
}

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved)
{
	(void)reserved;
	JNIEnv *env = NULL;
	if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK)
		return JNI_ERR;
	bkv_exception_class = global_class(env, "org/bkv/BkvException");
	if (bkv_exception_class == NULL)
		return JNI_ERR;
	bkv_exception_from_native = (*env)->GetStaticMethodID(
	    env, bkv_exception_class, "fromNative", "(I[BIJZJJ)Lorg/bkv/BkvException;");
	if (bkv_exception_from_native == NULL)
		return JNI_ERR;
	out_of_memory_class = global_class(env, "java/lang/OutOfMemoryError");
	if (out_of_memory_class == NULL)
		return JNI_ERR;
	return JNI_VERSION_1_6;
}

/* Throws the BkvException for a failed call's status and error, with info's attempts
 * when the call was a recovery (info may be NULL). */
static void throw_bkv_error(JNIEnv *env, bkv_status status, const bkv_error *error,
                            const bkv_recover_info *info)
{
	size_t len = strnlen(error->message, sizeof(error->message));
	jbyteArray message = (*env)->NewByteArray(env, (jsize)len);
	if (message == NULL)
		return;
	(*env)->SetByteArrayRegion(env, message, 0, (jsize)len, (const jbyte *)error->message);
	if ((*env)->ExceptionCheck(env))
		return;
	bool attempts_known = info != NULL && info->attempts_known;
	jobject exception = (*env)->CallStaticObjectMethod(
	    env, bkv_exception_class, bkv_exception_from_native, (jint)status, message,
	    (jint)error->http_status, (jlong)error->retry_after_ms, (jboolean)attempts_known,
	    (jlong)(attempts_known ? info->attempts_remaining : 0),
	    (jlong)(attempts_known ? info->attempt_limit : 0));
	if ((*env)->ExceptionCheck(env) || exception == NULL)
		return;
	(*env)->Throw(env, (jthrowable)exception);
}

/* Throws the BkvException for a failure of libbkvjni's own around a libbkv call. */
__attribute__((format(printf, 3, 4))) static void throw_own_error(JNIEnv *env, bkv_status status,
                                                                  const char *fmt, ...)
{
	bkv_error error = {.status = status};
	va_list args;
	va_start(args, fmt);
	vsnprintf(error.message, sizeof(error.message), fmt, args);
	va_end(args);
	throw_bkv_error(env, status, &error, NULL);
}

/* A copy of a Java byte[] (a password, a token, a URL, a path) in memory of our own,
 * NUL-terminated for the calls that take C strings. A NULL array leaves bytes NULL, which
 * libbkv refuses with BKV_ERR_ARGUMENT where it is not allowed. */
typedef struct jni_bytes {
	char *bytes;
	size_t len;
} jni_bytes;

/* false with an exception pending */
static bool jni_bytes_copy(JNIEnv *env, jbyteArray array, jni_bytes *out)
{
	out->bytes = NULL;
	out->len = 0;
	if (array == NULL)
		return true;
	jsize len = (*env)->GetArrayLength(env, array);
	char *bytes = malloc((size_t)len + 1);
	if (bytes == NULL) {
		(*env)->ThrowNew(env, out_of_memory_class, "libbkvjni: copying an argument");
		return false;
	}
	(*env)->GetByteArrayRegion(env, array, 0, len, (jbyte *)bytes);
	if ((*env)->ExceptionCheck(env)) {
		wipe(bytes, (size_t)len);
		free(bytes);
		return false;
	}
	bytes[len] = '\0';
	out->bytes = bytes;
	out->len = (size_t)len;
	return true;
}

static void jni_bytes_free(jni_bytes *copy)
{
	if (copy->bytes != NULL) {
		wipe(copy->bytes, copy->len + 1);
		free(copy->bytes);
	}
	copy->bytes = NULL;
	copy->len = 0;
}

/* A new byte[] holding len bytes; NULL with an exception pending. */
static jbyteArray new_byte_array(JNIEnv *env, const void *bytes, size_t len)
{
	jbyteArray array = (*env)->NewByteArray(env, (jsize)len);
	if (array == NULL)
		return NULL;
	(*env)->SetByteArrayRegion(env, array, 0, (jsize)len, (const jbyte *)bytes);
	if ((*env)->ExceptionCheck(env)) {
		(*env)->DeleteLocalRef(env, array);
		return NULL;
	}
	return array;
}

/* A Java byte[32] into *key (BackupKey and BkvClient check the length first); false with
 * an exception pending, and *key wiped. */
static bool key_from_array(JNIEnv *env, jbyteArray array, bkv_key *key)
{
	(*env)->GetByteArrayRegion(env, array, 0, BKV_KEY_BYTES, (jbyte *)key->bytes);
	if ((*env)->ExceptionCheck(env)) {
		bkv_key_wipe(key);
		return false;
	}
	return true;
}

static bkv_client *client_of(jlong handle)
{
	return (bkv_client *)(intptr_t)handle;
}

JNIEXPORT jstring JNICALL Java_org_bkv_Native_version(JNIEnv *env, jclass cls)
{
	(void)cls;
	return (*env)->NewStringUTF(env, bkv_version());
}

JNIEXPORT jlong JNICALL Java_org_bkv_Native_clientNew(JNIEnv *env, jclass cls, jbyteArray vault_url,
                                                      jbyteArray ca_file, jbyteArray pinned_cert,
                                                      jlong timeout_ms, jint suite,
                                                      jint argon2_iterations,
                                                      jint argon2_memory_kib,
                                                      jint argon2_parallelism)
{
	(void)cls;
	jni_bytes url = {0}, ca = {0}, pin = {0};
	bkv_client *client = NULL;
	if (!jni_bytes_copy(env, vault_url, &url) || !jni_bytes_copy(env, ca_file, &ca) ||
	    !jni_bytes_copy(env, pinned_cert, &pin))
		goto done;
	bkv_client_config config = {
	    .vault_url = url.bytes,
	    .ca_file = ca.bytes,
	    .pinned_cert = pin.bytes,
	    .timeout_ms = (long)timeout_ms,
	    .suite = (bkv_suite)suite,
	    .argon2_iterations = (uint32_t)argon2_iterations,
	    .argon2_memory_kib = (uint32_t)argon2_memory_kib,
	    .argon2_parallelism = (uint32_t)argon2_parallelism,
	};
	bkv_error error = {0};
	bkv_status status = bkv_client_new(&config, &client, &error);
	if (status != BKV_OK) {
		client = NULL;
		throw_bkv_error(env, status, &error, NULL);
	}
done:
	jni_bytes_free(&url);
	jni_bytes_free(&ca);
	jni_bytes_free(&pin);
	return (jlong)(intptr_t)client;
}

JNIEXPORT void JNICALL Java_org_bkv_Native_clientFree(JNIEnv *env, jclass cls, jlong handle)
{
	(void)env;
	(void)cls;
	bkv_client_free(client_of(handle));
}

/* bkv_register_replacing; returns the new record version (0 with an exception pending). */
JNIEXPORT jlong JNICALL Java_org_bkv_Native_register(JNIEnv *env, jclass cls, jlong handle,
                                                     jbyteArray token, jbyteArray password,
                                                     jbyteArray key_array, jint attempt_limit,
                                                     jlong replaces_record_version)
{
	(void)cls;
	jni_bytes token_copy = {0}, password_copy = {0};
	bkv_key key = {0};
	uint64_t record_version = 0;
	if (!jni_bytes_copy(env, token, &token_copy) ||
	    !jni_bytes_copy(env, password, &password_copy) || !key_from_array(env, key_array, &key))
		goto done;
	bkv_error error = {0};
	bkv_status status = bkv_register_replacing(
	    client_of(handle), token_copy.bytes, password_copy.bytes, password_copy.len, &key,
	    (uint32_t)attempt_limit, (uint64_t)replaces_record_version, &record_version, &error);
	if (status != BKV_OK) {
		record_version = 0;
		throw_bkv_error(env, status, &error, NULL);
	}
done:
	bkv_key_wipe(&key);
	jni_bytes_free(&token_copy);
	jni_bytes_free(&password_copy);
	return (jlong)record_version;
}

JNIEXPORT jbyteArray JNICALL Java_org_bkv_Native_recover(JNIEnv *env, jclass cls, jlong handle,
                                                         jbyteArray token, jbyteArray password)
{
	(void)cls;
	jni_bytes token_copy = {0}, password_copy = {0};
	bkv_key key = {0};
	jbyteArray result = NULL;
	if (!jni_bytes_copy(env, token, &token_copy) ||
	    !jni_bytes_copy(env, password, &password_copy))
		goto done;
	bkv_recover_info info = {0};
	bkv_error error = {0};
	bkv_status status = bkv_recover(client_of(handle), token_copy.bytes, password_copy.bytes,
	                                password_copy.len, &key, &info, &error);
	if (status != BKV_OK) {
		throw_bkv_error(env, status, &error, &info);
		goto done;
	}
	result = new_byte_array(env, key.bytes, sizeof(key.bytes));
done:
	bkv_key_wipe(&key);
	jni_bytes_free(&token_copy);
	jni_bytes_free(&password_copy);
	return result;
}

JNIEXPORT void JNICALL Java_org_bkv_Native_changePassword(JNIEnv *env, jclass cls, jlong handle,
                                                          jbyteArray token, jbyteArray old_password,
                                                          jbyteArray new_password)
{
	(void)cls;
	jni_bytes token_copy = {0}, old_copy = {0}, new_copy = {0};
	if (!jni_bytes_copy(env, token, &token_copy) ||
	    !jni_bytes_copy(env, old_password, &old_copy) ||
	    !jni_bytes_copy(env, new_password, &new_copy))
		goto done;
	bkv_recover_info info = {0};
	bkv_error error = {0};
	bkv_status status =
	    bkv_change_password(client_of(handle), token_copy.bytes, old_copy.bytes, old_copy.len,
	                        new_copy.bytes, new_copy.len, &info, &error);
	if (status != BKV_OK)
		throw_bkv_error(env, status, &error, &info);
done:
	jni_bytes_free(&token_copy);
	jni_bytes_free(&old_copy);
	jni_bytes_free(&new_copy);
}

JNIEXPORT jlongArray JNICALL Java_org_bkv_Native_status(JNIEnv *env, jclass cls, jlong handle,
                                                        jbyteArray token)
{
	(void)cls;
	jni_bytes token_copy = {0};
	jlongArray result = NULL;
	if (!jni_bytes_copy(env, token, &token_copy))
		goto done;
	bkv_account_status account = {0};
	bkv_error error = {0};
	bkv_status status = bkv_status_get(client_of(handle), token_copy.bytes, &account, &error);
	if (status != BKV_OK) {
		throw_bkv_error(env, status, &error, NULL);
		goto done;
	}
	const jlong fields[STATUS_FIELDS] = {
	    account.registered ? 1 : 0,    (jlong)account.suite,
	    (jlong)account.attempts_used,  (jlong)account.attempt_limit,
	    (jlong)account.record_version, (jlong)account.registered_at_unix,
	    (jlong)account.state,          (jlong)account.destroyed_at_unix,
	};
	result = (*env)->NewLongArray(env, STATUS_FIELDS);
	if (result == NULL)
		goto done;
	(*env)->SetLongArrayRegion(env, result, 0, STATUS_FIELDS, fields);
	if ((*env)->ExceptionCheck(env)) {
		(*env)->DeleteLocalRef(env, result);
		result = NULL;
	}
done:
	jni_bytes_free(&token_copy);
	return result;
}

JNIEXPORT jboolean JNICALL Java_org_bkv_Native_delete(JNIEnv *env, jclass cls, jlong handle,
                                                      jbyteArray token)
{
	(void)cls;
	jni_bytes token_copy = {0};
	bool deleted = false;
	if (!jni_bytes_copy(env, token, &token_copy))
		goto done;
	bkv_error error = {0};
	bkv_status status = bkv_delete(client_of(handle), token_copy.bytes, &deleted, &error);
	if (status != BKV_OK) {
		deleted = false;
		throw_bkv_error(env, status, &error, NULL);
	}
done:
	jni_bytes_free(&token_copy);
	return deleted ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jbyteArray JNICALL Java_org_bkv_Native_keyGenerate(JNIEnv *env, jclass cls)
{
	(void)cls;
	bkv_key key = {0};
	jbyteArray result = NULL;
	bkv_status status = bkv_key_generate(&key);
	if (status != BKV_OK) {
		throw_own_error(env, status, "%s", bkv_status_name(status));
		goto done;
	}
	result = new_byte_array(env, key.bytes, sizeof(key.bytes));
done:
	bkv_key_wipe(&key);
	return result;
}

JNIEXPORT jbyteArray JNICALL Java_org_bkv_Native_keyFormat(JNIEnv *env, jclass cls,
                                                           jbyteArray key_array)
{
	(void)cls;
	bkv_key key = {0};
	char text[BKV_KEY_TEXT_BYTES] = {0};
	jbyteArray result = NULL;
	if (!key_from_array(env, key_array, &key))
		goto done;
	bkv_status status = bkv_key_format(&key, text, sizeof(text));
	if (status != BKV_OK) {
		throw_own_error(env, status, "%s", bkv_status_name(status));
		goto done;
	}
	result = new_byte_array(env, text, KEY_TEXT_CHARS);
done:
	bkv_key_wipe(&key);
	wipe(text, sizeof(text));
	return result;
}

JNIEXPORT jbyteArray JNICALL Java_org_bkv_Native_keyParse(JNIEnv *env, jclass cls, jbyteArray text)
{
	(void)cls;
	jni_bytes text_copy = {0};
	bkv_key key = {0};
	jbyteArray result = NULL;
	if (!jni_bytes_copy(env, text, &text_copy))
		goto done;
	bkv_error error = {0};
	bkv_status status = bkv_key_parse(text_copy.bytes, text_copy.len, &key, &error);
	if (status != BKV_OK) {
		throw_bkv_error(env, status, &error, NULL);
		goto done;
	}
	result = new_byte_array(env, key.bytes, sizeof(key.bytes));
done:
	bkv_key_wipe(&key);
	jni_bytes_free(&text_copy);
	return result;
}

/* bkv_backup_decrypt or bkv_backup_encrypt from input_path into a new output_path, as the
 * CLI's file_crypt.c does: an existing output is refused, the output is written to a
 * mkstemp file beside it (mode 0600) and renamed into place only after the whole file is
 * done (and verified), so a failure leaves nothing behind. */
JNIEXPORT void JNICALL Java_org_bkv_Native_backup(JNIEnv *env, jclass cls, jboolean decrypt,
                                                  jbyteArray key_array, jbyteArray input_path,
                                                  jbyteArray output_path)
{
	(void)cls;
	jni_bytes in_path = {0}, out_path = {0};
	bkv_key key = {0};
	FILE *in = NULL, *out = NULL;
	char *partial = NULL; /* the temporary output, while it exists */
	if (!jni_bytes_copy(env, input_path, &in_path) ||
	    !jni_bytes_copy(env, output_path, &out_path) || !key_from_array(env, key_array, &key))
		goto done;
	if (access(out_path.bytes, F_OK) == 0) {
		throw_own_error(env, BKV_ERR_ARGUMENT, "%s already exists; not overwriting it",
		                out_path.bytes);
		goto done;
	}
	struct stat st;
	in = fopen(in_path.bytes, "rb");
	if (in == NULL || fstat(fileno(in), &st) != 0) {
		throw_own_error(env, BKV_ERR_IO, "cannot read %s: %s", in_path.bytes,
		                strerror(errno));
		goto done;
	}
	size_t partial_len = out_path.len + sizeof(".partial-XXXXXX");
	partial = malloc(partial_len);
	if (partial == NULL) {
		(*env)->ThrowNew(env, out_of_memory_class, "libbkvjni: a temporary file name");
		goto done;
	}
	snprintf(partial, partial_len, "%s.partial-XXXXXX", out_path.bytes);
	int fd = mkstemp(partial);
	if (fd < 0) {
		throw_own_error(env, BKV_ERR_IO, "cannot create %s: %s", partial, strerror(errno));
		free(partial);
		partial = NULL;
		goto done;
	}
	out = fdopen(fd, "wb");
	if (out == NULL) {
		throw_own_error(env, BKV_ERR_IO, "cannot create %s: %s", partial, strerror(errno));
		close(fd);
		goto done;
	}
	uint64_t total = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	bkv_error error = {0};
	bkv_status status = decrypt ? bkv_backup_decrypt(&key, in, out, total, NULL, NULL, &error)
	                            : bkv_backup_encrypt(&key, in, out, total, NULL, NULL, &error);
	if (status != BKV_OK) {
		throw_bkv_error(env, status, &error, NULL);
		goto done;
	}
	if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
		throw_own_error(env, BKV_ERR_IO, "writing %s failed: %s", partial, strerror(errno));
		goto done;
	}
	int closed = fclose(out);
	out = NULL;
	if (closed != 0) {
		throw_own_error(env, BKV_ERR_IO, "writing %s failed: %s", partial, strerror(errno));
		goto done;
	}
	if (rename(partial, out_path.bytes) != 0) {
		throw_own_error(env, BKV_ERR_IO, "cannot create %s: %s", out_path.bytes,
		                strerror(errno));
		goto done;
	}
	free(partial);
	partial = NULL;
done:
	if (out != NULL)
		fclose(out);
	if (in != NULL)
		fclose(in);
	if (partial != NULL) {
		unlink(partial);
		free(partial);
	}
	bkv_key_wipe(&key);
	jni_bytes_free(&in_path);
	jni_bytes_free(&out_path);
}
