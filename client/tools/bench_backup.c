/*
 * bench_backup.c - bkv-bench-backup: throughput of backup encryption and decryption with the
 * bkv command (`bkv encrypt` / `bkv decrypt`), next to `age` (X25519 recipient) and
 * `openssl enc -aes-256-ctr -pbkdf2`, on the same random file in /dev/shm written to
 * /dev/null. Every tool, bkv included, runs as a whole process (start-up and key handling
 * included), and the tools are interleaved: round 1 runs each tool once, then round 2, and
 * so on (A B C A B C ...), so a drift of a shared host hits them alike. Prints min, median
 * and max per tool and the ratios of the medians; it never passes or fails on speed. Exits
 * non-zero only when a step fails. The programs it compares against are run, never
 * installed; the files it makes (the key files among them) are removed on every exit path.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
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

#define PROG             "bkv-bench-backup"
#define DEFAULT_SIZE_MIB 1024
#define MAX_SIZE_MIB     (64 * 1024)
#define DEFAULT_RUNS     5
#define MAX_RUNS         100
#define BLOCK_BYTES      (1024 * 1024)
#define MAX_TOOLS        3

extern char **environ;

typedef struct bench_paths {
	char bkv[PATH_MAX]; /* the bkv command */
	char plain[128];    /* the input, kept with --keep and reused when its size matches */
	char key[128];      /* bkv's key file (64 hex digits) */
	char sealed[128];   /* bkv's output, the input of its decryption runs */
	char age_key[128];
	char age_sealed[128];
	char openssl_sealed[128];
} bench_paths;

/* One tool's command and its timings. */
typedef struct tool {
	const char *label;
	char *argv[16];
	double seconds[MAX_RUNS];
} tool;

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig)
{
	(void)sig;
	g_interrupted = 1;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

/* Runs argv to completion with its standard output on /dev/null; true when it exits 0. */
static bool run_program(char *const argv[])
{
	pid_t pid;
	int status;
	posix_spawn_file_actions_t actions;
	if (posix_spawn_file_actions_init(&actions) != 0)
		return false;
	int rc =
	    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	fflush(stdout); /* keep our output in order with the child's */
	if (rc == 0)
		rc = posix_spawnp(&pid, argv[0], &actions, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	if (rc != 0) {
		fprintf(stderr, PROG ": cannot run %s: %s\n", argv[0], strerror(rc));
		return false;
	}
	while (waitpid(pid, &status, 0) != pid) {
		if (errno != EINTR) {
			fprintf(stderr, PROG ": waitpid: %s\n", strerror(errno));
			return false;
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, PROG ": %s failed\n", argv[0]);
		return false;
	}
	return true;
}

/* The wall time of one run of argv, or a negative value on failure. */
static double time_program(char *const argv[])
{
	const double start = now_seconds();
	if (!run_program(argv))
		return -1;
	return now_seconds() - start;
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
	sodium_memzero(seed, sizeof(seed));
	if (!ok)
		fprintf(stderr, PROG ": cannot write %s: %s\n", path, strerror(errno));
	return ok;
}

/* The bkv command: $BKV_CLI, else the bkv next to this program. */
static bool locate_bkv(char *out, size_t out_len)
{
	const char *env = getenv("BKV_CLI");
	if (env != NULL && env[0] != '\0') {
		snprintf(out, out_len, "%s", env);
	} else {
		char self[PATH_MAX];
		const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0) {
			fprintf(stderr, PROG ": cannot find this program's path; set BKV_CLI\n");
			return false;
		}
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash != NULL)
			*slash = '\0';
		if (strlen(self) + sizeof("/bkv") > out_len) {
			fprintf(stderr, PROG ": path too long\n");
			return false;
		}
		snprintf(out, out_len, "%s/bkv", self);
	}
	if (access(out, X_OK) != 0) {
		fprintf(stderr,
		        PROG ": cannot run the bkv command at %s (build it, or set BKV_CLI)\n",
		        out);
		return false;
	}
	return true;
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

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The median of n timings (n >= 1). */
static double median_of(const double *v, int n)
{
	double sorted[MAX_RUNS];
	memcpy(sorted, v, (size_t)n * sizeof(double));
	qsort(sorted, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/* Runs every tool once per round, in order, for runs rounds. */
static bool run_interleaved(tool *tools, int ntools, int runs)
{
	for (int r = 0; r < runs; r++) {
		for (int t = 0; t < ntools; t++) {
			if (g_interrupted)
				return false;
			tools[t].seconds[r] = time_program(tools[t].argv);
			if (tools[t].seconds[r] < 0)
				return false;
		}
	}
	return true;
}

/* MB/s from the slowest, median and fastest run; returns the median time. */
static double print_tool(const tool *t, int runs, uint64_t bytes)
{
	double lo = t->seconds[0], hi = t->seconds[0];
	for (int r = 1; r < runs; r++) {
		lo = t->seconds[r] < lo ? t->seconds[r] : lo;
		hi = t->seconds[r] > hi ? t->seconds[r] : hi;
	}
	const double med = median_of(t->seconds, runs);
	const double mb = (double)bytes / 1e6;
	printf("  %-46s %7.0f / %7.0f / %7.0f MB/s  (median %.3f s)\n", t->label, mb / hi, mb / med,
	       mb / lo, med);
	return med;
}

static void print_ratio(const char *what, double bkv_seconds, double other_seconds)
{
	if (bkv_seconds > 0 && other_seconds > 0)
		printf("  %-46s %7.2fx\n", what, other_seconds / bkv_seconds);
}

static int usage(FILE *f, int rc)
{
	fprintf(f,
	        "usage: " PROG " [--size-mib N] [--runs R] [--keep]\n\n"
	        "Times backup encryption and decryption of an N MiB random file in /dev/shm\n"
	        "(default %d) written to /dev/null, with the bkv command (bkv encrypt/decrypt),\n"
	        "age and openssl enc, each a whole process, interleaved, R runs each (default\n"
	        "%d). --keep leaves the input file in /dev/shm for the next run.\n\n"
	        "Environment: BKV_CLI, the bkv command (default: the one next to this program).\n",
	        DEFAULT_SIZE_MIB, DEFAULT_RUNS);
	return rc;
}

static void remove_files(const bench_paths *paths, bool keep)
{
	unlink(paths->key);
	unlink(paths->sealed);
	unlink(paths->age_key);
	unlink(paths->age_sealed);
	unlink(paths->openssl_sealed);
	if (!keep)
		unlink(paths->plain);
}

int main(int argc, char **argv)
{
	unsigned long size_mib = DEFAULT_SIZE_MIB, runs = DEFAULT_RUNS;
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
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			errno = 0;
			runs = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || runs == 0 || runs > MAX_RUNS)
				return usage(stderr, 2);
		} else {
			return usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr,
			             strcmp(argv[i], "--help") == 0 ? 0 : 2);
		}
	}
	if (sodium_init() < 0)
		return 1;
	/* An interrupt ends the current child (same process group) and then this loop, which
	 * still removes the files. */
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	const uint64_t bytes = (uint64_t)size_mib << 20;
	const long pid = (long)getpid();
	bench_paths paths;
	memset(&paths, 0, sizeof(paths));
	snprintf(paths.plain, sizeof(paths.plain), "/dev/shm/bkv-bench-backup-%luMiB.bin",
	         size_mib);
	snprintf(paths.key, sizeof(paths.key), "/dev/shm/bkv-bench-backup.%ld.key", pid);
	snprintf(paths.sealed, sizeof(paths.sealed), "/dev/shm/bkv-bench-backup.%ld.bkv", pid);
	snprintf(paths.age_key, sizeof(paths.age_key), "/dev/shm/bkv-bench-backup.%ld.age-key",
	         pid);
	snprintf(paths.age_sealed, sizeof(paths.age_sealed), "/dev/shm/bkv-bench-backup.%ld.age",
	         pid);
	snprintf(paths.openssl_sealed, sizeof(paths.openssl_sealed),
	         "/dev/shm/bkv-bench-backup.%ld.openssl", pid);
	if (!locate_bkv(paths.bkv, sizeof(paths.bkv)))
		return 1;
	bool ok = make_input(paths.plain, bytes);

	ok = ok && !g_interrupted;
	/* The inputs of the decryption runs, untimed. */
	char *keygen[] = {paths.bkv, "keygen", "--out", paths.key, NULL};
	char *seal[] = {paths.bkv,   "encrypt",    "--key-file", paths.key,
	                paths.plain, paths.sealed, NULL};
	ok = ok && run_program(keygen) && run_program(seal);
	const bool have_age = in_path("age") && in_path("age-keygen");
	const bool have_openssl = in_path("openssl");
	char recipient[128] = "";
	if (ok && have_age) {
		ok = age_identity(paths.age_key, recipient, sizeof(recipient));
		if (!ok)
			fprintf(stderr, PROG ": cannot make an age identity\n");
		char *age_seal[] = {"age",       "-r", recipient, "-o", paths.age_sealed,
		                    paths.plain, NULL};
		ok = ok && run_program(age_seal);
	}
	if (ok && have_openssl) {
		char *openssl_seal[] = {
		    "openssl",   "enc",  "-aes-256-ctr",       "-pbkdf2", "-pass", "pass:x", "-in",
		    paths.plain, "-out", paths.openssl_sealed, NULL};
		ok = run_program(openssl_seal);
	}

	tool enc[MAX_TOOLS], dec[MAX_TOOLS];
	int nenc = 0, ndec = 0;
	memset(enc, 0, sizeof(enc));
	memset(dec, 0, sizeof(dec));
	enc[nenc++] =
	    (tool){.label = "bkv encrypt (AES-256-GCM, 64 KiB chunks)",
	           .argv = {paths.bkv, "encrypt", "--key-file", paths.key, paths.plain, "-"}};
	dec[ndec++] =
	    (tool){.label = "bkv decrypt",
	           .argv = {paths.bkv, "decrypt", "--key-file", paths.key, paths.sealed, "-"}};
	if (have_age) {
		enc[nenc++] =
		    (tool){.label = "age -r (X25519, ChaCha20-Poly1305) encrypt",
		           .argv = {"age", "-r", recipient, "-o", "/dev/null", paths.plain}};
		dec[ndec++] = (tool){.label = "age -d decrypt",
		                     .argv = {"age", "-d", "-i", paths.age_key, "-o", "/dev/null",
		                              paths.age_sealed}};
	} else {
		printf("  age: not installed, skipped (Debian: apt-get install age)\n");
	}
	if (have_openssl) {
		enc[nenc++] = (tool){.label = "openssl enc -aes-256-ctr -pbkdf2 (no MAC)",
		                     .argv = {"openssl", "enc", "-aes-256-ctr", "-pbkdf2", "-pass",
		                              "pass:x", "-in", paths.plain, "-out", "/dev/null"}};
		dec[ndec++] =
		    (tool){.label = "openssl enc -d -aes-256-ctr -pbkdf2 (no MAC)",
		           .argv = {"openssl", "enc", "-d", "-aes-256-ctr", "-pbkdf2", "-pass",
		                    "pass:x", "-in", paths.openssl_sealed, "-out", "/dev/null"}};
	} else {
		printf("  openssl: not installed, skipped (Debian: apt-get install openssl)\n");
	}

	ok = ok && !g_interrupted;
	if (ok) {
		printf(
		    "%lu MiB from /dev/shm to /dev/null. Each tool, bkv included, runs as a whole "
		    "process (start-up and key handling included); the tools are interleaved, "
		    "one run each per round (A B C A B C ...), %lu rounds.\n",
		    size_mib, runs);
		printf("throughput, min / median / max of %lu runs:\n", runs);
		ok = run_interleaved(enc, nenc, (int)runs) && run_interleaved(dec, ndec, (int)runs);
	}
	if (ok) {
		double enc_med[MAX_TOOLS], dec_med[MAX_TOOLS];
		for (int t = 0; t < nenc; t++)
			enc_med[t] = print_tool(&enc[t], (int)runs, bytes);
		for (int t = 0; t < ndec; t++)
			dec_med[t] = print_tool(&dec[t], (int)runs, bytes);
		printf("ratios of the medians (bkv throughput / other's; above 1 means bkv is "
		       "faster):\n");
		for (int t = 1; t < nenc; t++) {
			char what[96];
			snprintf(what, sizeof(what), "bkv encrypt / %s encrypt", enc[t].argv[0]);
			print_ratio(what, enc_med[0], enc_med[t]);
		}
		for (int t = 1; t < ndec; t++) {
			char what[96];
			snprintf(what, sizeof(what), "bkv decrypt / %s decrypt", dec[t].argv[0]);
			print_ratio(what, dec_med[0], dec_med[t]);
		}
	}
	if (g_interrupted)
		fprintf(stderr, PROG ": interrupted\n");
	remove_files(&paths, keep);
	return ok ? 0 : 1;
}
