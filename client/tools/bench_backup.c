/*
 * bench_backup.c - bkv-bench-backup: throughput of bkv_backup_encrypt and bkv_backup_decrypt
 * on a file in /dev/shm written to /dev/null, next to `age` (X25519 recipient) and
 * `openssl enc -aes-256-ctr -pbkdf2` on the same file, each the best of a few runs. Prints
 * figures and ratios only; it never passes or fails on speed. Exits non-zero only when a
 * step fails. The programs it compares against are run, never installed.
 */
#include <errno.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "bkv.h"

#define DEFAULT_SIZE_MIB 1024
#define MAX_SIZE_MIB     (64 * 1024)
#define RUNS             3
#define BLOCK_BYTES      (1024 * 1024)

extern char **environ;

typedef struct bench_paths {
	char plain[128];  /* the input, kept with --keep and reused when its size matches */
	char sealed[128]; /* bkv's output, the input of the decryption runs */
	char age_key[128];
	char age_sealed[128];
} bench_paths;

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mb_per_s(uint64_t bytes, double seconds)
{
	return (double)bytes / 1e6 / seconds;
}

static bool in_path(const char *program)
{
	const char *path = getenv("PATH");
	char candidate[4096];
	while (path != NULL && *path != '\0') {
		const char *colon = strchr(path, ':');
		const size_t len = colon != NULL ? (size_t)(colon - path) : strlen(path);
		snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)len, path, program);
		if (access(candidate, X_OK) == 0)
			return true;
		path = colon != NULL ? colon + 1 : NULL;
	}
	return false;
}

/* Runs argv to completion; true when it exits with status 0. */
static bool run_program(char *const argv[])
{
	pid_t pid;
	int status;
	fflush(stdout); /* keep our output in order with the child's */
	const int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
	if (rc != 0) {
		fprintf(stderr, "bkv-bench-backup: cannot run %s: %s\n", argv[0], strerror(rc));
		return false;
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bkv-bench-backup: %s failed\n", argv[0]);
		return false;
	}
	return true;
}

/* Best (shortest) wall time of RUNS runs of argv, or a negative value on failure. */
static double time_program(char *const argv[])
{
	double best = -1;
	for (int run = 0; run < RUNS; run++) {
		const double start = now_seconds();
		if (!run_program(argv))
			return -1;
		const double elapsed = now_seconds() - start;
		if (best < 0 || elapsed < best)
			best = elapsed;
	}
	return best;
}

static bool make_input(const char *path, uint64_t bytes)
{
	struct stat st;
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == bytes) {
		printf("reusing %s\n", path);
		return true;
	}
	printf("writing %llu MiB of random data to %s\n", (unsigned long long)(bytes >> 20), path);
	FILE *f = fopen(path, "wb");
	uint8_t *block = malloc(BLOCK_BYTES);
	uint8_t seed[randombytes_SEEDBYTES];
	bool ok = f != NULL && block != NULL;
	randombytes_buf(seed, sizeof(seed));
	for (uint64_t done = 0; ok && done < bytes; done += BLOCK_BYTES) {
		seed[0]++; /* a fresh ChaCha20 stream per block; far faster than the OS RNG */
		if (seed[0] == 0)
			seed[1]++;
		randombytes_buf_deterministic(block, BLOCK_BYTES, seed);
		ok = fwrite(block, 1, BLOCK_BYTES, f) == BLOCK_BYTES;
	}
	if (f != NULL && fclose(f) != 0)
		ok = false;
	free(block);
	if (!ok)
		fprintf(stderr, "bkv-bench-backup: cannot write %s: %s\n", path, strerror(errno));
	return ok;
}

/* One bkv pass from in_path to out_path; the elapsed time, or a negative value on error. */
static double bkv_pass(bool encrypt, const bkv_key *key, const char *in_path, const char *out_path)
{
	FILE *in = fopen(in_path, "rb");
	FILE *out = fopen(out_path, "wb");
	bkv_error error = {0};
	bkv_status status = BKV_ERR_IO;
	const double start = now_seconds();
	if (in != NULL && out != NULL)
		status = encrypt ? bkv_backup_encrypt(key, in, out, 0, NULL, NULL, &error)
		                 : bkv_backup_decrypt(key, in, out, 0, NULL, NULL, &error);
	if (out != NULL && fclose(out) != 0 && status == BKV_OK)
		status = BKV_ERR_IO;
	const double elapsed = now_seconds() - start;
	if (in != NULL)
		fclose(in);
	if (status != BKV_OK) {
		fprintf(stderr, "bkv-bench-backup: bkv %s %s -> %s: %s: %s\n",
		        encrypt ? "encrypt" : "decrypt", in_path, out_path, bkv_status_name(status),
		        error.message);
		return -1;
	}
	return elapsed;
}

static double bkv_best(bool encrypt, const bkv_key *key, const char *in_path)
{
	double best = -1;
	for (int run = 0; run < RUNS; run++) {
		const double elapsed = bkv_pass(encrypt, key, in_path, "/dev/null");
		if (elapsed < 0)
			return -1;
		if (best < 0 || elapsed < best)
			best = elapsed;
	}
	return best;
}

/* Makes an identity in key_path and returns its recipient (public key). */
static bool age_identity(const char *key_path, char *recipient, size_t recipient_len)
{
	char command[512];
	unlink(key_path); /* age-keygen refuses to overwrite */
	snprintf(command, sizeof(command), "age-keygen -o '%s' 2>/dev/null && age-keygen -y '%s'",
	         key_path, key_path);
	FILE *p = popen(command, "r");
	bool ok = p != NULL && fgets(recipient, (int)recipient_len, p) != NULL;
	if (p != NULL && pclose(p) != 0)
		ok = false;
	if (ok)
		recipient[strcspn(recipient, "\r\n")] = '\0';
	return ok && recipient[0] != '\0';
}

typedef struct age_result {
	double encrypt_seconds; /* negative when not measured */
	double decrypt_seconds;
} age_result;

static bool bench_age(const bench_paths *paths, age_result *result)
{
	result->encrypt_seconds = result->decrypt_seconds = -1;
	if (!in_path("age") || !in_path("age-keygen")) {
		printf("  age: not installed, skipped (Debian: apt-get install age)\n");
		return true;
	}
	char recipient[128];
	if (!age_identity(paths->age_key, recipient, sizeof(recipient))) {
		fprintf(stderr, "bkv-bench-backup: cannot make an age identity\n");
		return false;
	}
	char *encrypt[] = {"age", "-r", recipient, "-o", "/dev/null", (char *)paths->plain, NULL};
	char *seal[] = {
	    "age", "-r", recipient, "-o", (char *)paths->age_sealed, (char *)paths->plain, NULL};
	char *decrypt[] = {
	    "age", "-d", "-i", (char *)paths->age_key, "-o", "/dev/null", (char *)paths->age_sealed,
	    NULL};
	result->encrypt_seconds = time_program(encrypt);
	if (result->encrypt_seconds < 0 || !run_program(seal))
		return false;
	result->decrypt_seconds = time_program(decrypt);
	return result->decrypt_seconds >= 0;
}

static double bench_openssl(const bench_paths *paths)
{
	if (!in_path("openssl")) {
		printf("  openssl: not installed, skipped (Debian: apt-get install openssl)\n");
		return 0;
	}
	char *enc[] = {"openssl", "enc", "-aes-256-ctr",       "-pbkdf2", "-pass",
	               "pass:x",  "-in", (char *)paths->plain, "-out",    "/dev/null",
	               NULL};
	return time_program(enc);
}

static void print_rate(const char *what, uint64_t bytes, double seconds)
{
	printf("  %-44s %8.0f MB/s  (%.3f s)\n", what, mb_per_s(bytes, seconds), seconds);
}

static void print_ratio(const char *what, double bkv_seconds, double other_seconds)
{
	if (bkv_seconds > 0 && other_seconds > 0)
		printf("  %-44s %8.2fx\n", what, other_seconds / bkv_seconds);
}

static int usage(FILE *f, int rc)
{
	fprintf(f,
	        "usage: bkv-bench-backup [--size-mib N] [--keep]\n\n"
	        "Times bkv backup encryption and decryption of an N MiB random file in /dev/shm\n"
	        "(default %d) written to /dev/null, and age and openssl enc on the same file.\n"
	        "--keep leaves the input file in /dev/shm for the next run.\n",
	        DEFAULT_SIZE_MIB);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long size_mib = DEFAULT_SIZE_MIB;
	bool keep = false;
	for (int i = 1; i < argc; i++) {
		char *end = NULL;
		if (strcmp(argv[i], "--keep") == 0) {
			keep = true;
		} else if (strcmp(argv[i], "--size-mib") == 0 && i + 1 < argc) {
			errno = 0;
			size_mib = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || size_mib == 0 || size_mib > MAX_SIZE_MIB)
				return usage(stderr, 2);
		} else {
			return usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr,
			             strcmp(argv[i], "--help") == 0 ? 0 : 2);
		}
	}
	if (sodium_init() < 0)
		return 1;

	const uint64_t bytes = (uint64_t)size_mib << 20;
	bench_paths paths;
	snprintf(paths.plain, sizeof(paths.plain), "/dev/shm/bkv-bench-backup-%luMiB.bin",
	         size_mib);
	snprintf(paths.sealed, sizeof(paths.sealed), "/dev/shm/bkv-bench-backup.%ld.bkv",
	         (long)getpid());
	snprintf(paths.age_key, sizeof(paths.age_key), "/dev/shm/bkv-bench-backup.%ld.age-key",
	         (long)getpid());
	snprintf(paths.age_sealed, sizeof(paths.age_sealed), "/dev/shm/bkv-bench-backup.%ld.age",
	         (long)getpid());
	if (!make_input(paths.plain, bytes))
		return 1;

	bkv_key key;
	bkv_key_generate(&key);
	bool ok = true;
	double bkv_encrypt = -1, bkv_decrypt = -1, openssl_encrypt = -1;
	age_result age = {-1, -1};
	printf("%lu MiB from /dev/shm to /dev/null, best of %d runs each\n", size_mib, RUNS);
	bkv_encrypt = bkv_best(true, &key, paths.plain);
	ok = bkv_encrypt > 0 && bkv_pass(true, &key, paths.plain, paths.sealed) >= 0;
	if (ok)
		bkv_decrypt = bkv_best(false, &key, paths.sealed);
	ok = ok && bkv_decrypt > 0;
	if (ok) {
		print_rate("bkv encrypt (AES-256-GCM, 64 KiB chunks)", bytes, bkv_encrypt);
		print_rate("bkv decrypt", bytes, bkv_decrypt);
	}
	ok = ok && bench_age(&paths, &age);
	if (age.encrypt_seconds > 0) {
		print_rate("age -r (X25519, ChaCha20-Poly1305) encrypt", bytes,
		           age.encrypt_seconds);
		print_rate("age -d decrypt", bytes, age.decrypt_seconds);
	}
	if (ok) {
		openssl_encrypt = bench_openssl(&paths);
		ok = openssl_encrypt >= 0;
	}
	if (openssl_encrypt > 0)
		print_rate("openssl enc -aes-256-ctr -pbkdf2 (no MAC)", bytes, openssl_encrypt);
	if (ok) {
		printf("ratios (bkv throughput / other's; above 1 means bkv is faster)\n");
		print_ratio("bkv encrypt / age encrypt", bkv_encrypt, age.encrypt_seconds);
		print_ratio("bkv decrypt / age decrypt", bkv_decrypt, age.decrypt_seconds);
		print_ratio("bkv encrypt / openssl enc", bkv_encrypt, openssl_encrypt);
	}

	bkv_key_wipe(&key);
	unlink(paths.sealed);
	unlink(paths.age_key);
	unlink(paths.age_sealed);
	if (!keep)
		unlink(paths.plain);
	return ok ? 0 : 1;
}
