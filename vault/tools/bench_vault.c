/*
 * bench_vault.c - bkv-bench-vault: a load benchmark of the vault service. Prints figures
 * only; it never passes or fails on speed.
 *
 * It starts `bkvd serve` on a development vault (scripts/dev-vault), registers N accounts
 * (untimed), then runs C keep-alive HTTPS connections, one thread each, that run full
 * recoveries (RecoverStart + RecoverFinish with the correct password) over random accounts
 * for D seconds, either closed loop (each connection starts its next recovery when the
 * previous ends: the peak rate) or paced (open loop: recoveries scheduled at a fixed rate,
 * latency counted from each one's schedule, so a stalled reply charges everything queued
 * behind it: no coordinated omission). --half-peak runs both: the peak, then paced at half
 * of it. It prints recoveries/s, latency percentiles (p50 to p99.9), errors, and the CPU
 * that bkvd and the load generator spent per recovery.
 *
 * In the same run it measures the floor: a bkv_vault built in-process exactly like a
 * worker's (same token, keys, database and settings), its handlers called directly and
 * single-threaded with the same client work, with a breakdown of where a recovery's time
 * goes; and the CPU ratio of the two (bkvd's CPU per recovery over the handlers'). Closed
 * loop, HTTP and floor alternate in short slices, so both see the same host (a shared
 * machine's load and fsync latency drift within seconds); paced, the floor follows the
 * unbroken paced run. Every figure is labelled with what it includes, and each run ends
 * with a `summary:` line of key=value pairs for scripts (--quiet prints only those).
 *
 * The client is the OPAQUE core's software client with the identity KSF, over raw Connect
 * calls on libcurl, not libbkv: libbkv runs the vault's Argon2id, which is client-only work
 * and would measure the load generator instead of the vault.
 *
 * The floor's breakdown comes from the token's observer and from wrapped storage and audit
 * calls (-Wl,--wrap, see vault/CMakeLists.txt); each wrapper calls straight through.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "auth.h"
#include "config.h"
#include "handlers.h"

#define PROG "bkv-bench-vault"

#define DEFAULT_ACCOUNTS    200u
#define DEFAULT_CONNECTIONS 8u
#define DEFAULT_SECONDS     10.0
#define MAX_ACCOUNTS        1000000u
#define MAX_CONNECTIONS     1024u
#define MAX_WORKERS         256u
#define MAX_SECONDS         1200.0

#define ACCOUNT_PREFIX    "bkv-bench-"
#define PASSWORD          "correct horse battery staple"
#define WRAPPED_KEY_BYTES 60 /* what libbkv sends: nonce (12) || AES-GCM(32-byte key) || tag */
#define RELEASE_INFO      "bkv-v1 release"
#define RELEASE_NONCE     12
#define RELEASE_TAG       16

#define REQUEST_MAX      4096
#define RESPONSE_MAX     65536
#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS  20000
#define HTTP_TIMEOUT_MS  30000L
#define FLOOR_WARMUP_S   0.5
#define SLICE_S          0.5 /* closed loop: HTTP and floor slices alternate, this long each */
#define MIN_PACED_RATE   0.1
#define MAX_PACED_RATE   1000000.0
#define LATE_NS          1000000u /* a paced start more than 1 ms after its schedule is late */

enum {
	M_GET_CONFIG,
	M_REGISTER_START,
	M_REGISTER_FINISH,
	M_RECOVER_START,
	M_RECOVER_FINISH,
	M_COUNT
};
static const char *const method_names[M_COUNT] = {"GetConfig", "RegisterStart", "RegisterFinish",
                                                  "RecoverStart", "RecoverFinish"};

/* The bkvd master while it runs, for the signal handler. */
static volatile sig_atomic_t g_server_pid;

/* ---- Small helpers ---- */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static void set_why(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
}

static uint64_t rng_next(uint64_t *state)
{
	/* splitmix64 */
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static int cmp_u32(const void *a, const void *b)
{
	const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, in milliseconds. */
static double percentile_ms(const uint32_t *sorted, size_t n, double p)
{
	if (n == 0)
		return 0.0;
	const double rank = p / 100.0 * (double)n;
	size_t k = (size_t)rank;
	if ((double)k < rank)
		k++;
	k = k == 0 ? 1 : k > n ? n : k;
	return (double)sorted[k - 1] / 1000.0;
}

/* ---- Options and setup ---- */

typedef struct options {
	unsigned accounts;
	unsigned connections;
	unsigned workers;
	double seconds;
	const char *vault_dir;
	double paced_rate; /* recoveries/s over all connections; 0 = closed loop */
	bool half_peak;    /* closed loop, then paced at half the rate it measured */
	bool quiet;        /* only the summary lines */
	bool reuse_tokens; /* each account's token for all its recoveries, not one each */
} options;

typedef struct bench_account {
	char id[32];
	size_t id_len;
	struct curl_slist *headers; /* Content-Type, Connect-Protocol-Version, Authorization */
	uint8_t wrapped[WRAPPED_KEY_BYTES];
} bench_account;

typedef struct bench {
	options opt;
	unsigned ncpu;
	char dir[PATH_MAX];
	char config_path[PATH_MAX];
	char bkvd[PATH_MAX];
	char log_path[PATH_MAX];
	char port_path[PATH_MAX];
	char es256_key_path[PATH_MAX]; /* the ES256 vault's private key (scripts/dev-vault) */
	bkvd_config config;
	uint16_t port;
	char urls[M_COUNT][128];
	struct curl_slist *anon_headers;
	opaque_suite_id suite;
	const opaque_sizes *sizes;
	uint8_t context[256];
	size_t context_len;
	opaque_config client; /* the vault's suite and context; identity KSF */
	bench_account *accounts;
	bkv_auth auth;   /* mints HS256 tokens, and checks every token minted before the run */
	EVP_PKEY *es256; /* mints ES256 tokens on an ES256 vault; NULL otherwise */
} bench;

static void help(void)
{
	printf("usage: " PROG " --vault-dir DIR [--accounts N] [--connections C] [--seconds D]\n"
	       "                       [--workers W] [--paced RATE | --half-peak] [--quiet]\n"
	       "                       [--reuse-tokens]\n\n"
	       "Load benchmark of bkvd: starts `bkvd serve` on the development vault in DIR\n"
	       "(prepared with scripts/dev-vault DIR, which is run here if DIR has no bkvd.conf;\n"
	       "BKV_DEV_VAULT_AUTH=ES256 scripts/dev-vault DIR makes one with ES256 tokens, as\n"
	       "deployments run), registers N accounts, then C keep-alive HTTPS connections\n"
	       "run full recoveries (RecoverStart + RecoverFinish) for D seconds, and the same\n"
	       "handlers, token and storage are called in-process for D seconds: the floor.\n"
	       "bkvd is stopped at the end. Prints figures only.\n\n"
	       "Closed loop (the default): each connection starts its next recovery when the\n"
	       "previous one ends; HTTP and floor alternate in %.1f s slices, so both see the\n"
	       "same host. Latency counts from each recovery's start.\n"
	       "Paced (--paced RATE, open loop): recoveries are scheduled at RATE per second in\n"
	       "all, spread evenly over the connections, for D seconds without a break; a\n"
	       "recovery whose connection is still busy starts late, and its latency counts\n"
	       "from its scheduled start (no coordinated omission). The floor runs after it.\n\n"
	       "  --vault-dir DIR    the development vault (required)\n"
	       "  --accounts N       accounts registered before the run (default %u)\n"
	       "  --connections C    concurrent connections, one thread each (default %u)\n"
	       "  --seconds D        duration of each measurement (default %.0f)\n"
	       "  --workers W        bkvd worker processes (default: bkvd's own default)\n"
	       "  --paced RATE       open-loop load at RATE recoveries/s (see above)\n"
	       "  --half-peak        closed loop (the peak), then paced at half the peak it\n"
	       "                     measured; prints both and the paced p99/p50\n"
	       "  --quiet            print only the machine-readable `summary:` lines\n"
	       "  --reuse-tokens     each account's token, minted before the run, for all its\n"
	       "                     recoveries (default: one token minted per recovery)\n\n"
	       "Environment: BKVD, the bkvd to run (default: the one next to this program).\n",
	       SLICE_S, DEFAULT_ACCOUNTS, DEFAULT_CONNECTIONS, DEFAULT_SECONDS);
}

static bool parse_unsigned(const char *name, const char *text, unsigned min, unsigned max,
                           unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
		fail("--%s must be %u to %u", name, min, max);
		return false;
	}
	*out = (unsigned)v;
	return true;
}

/* 0 = go on, 1 = exit 0 (help), 2 = usage error. */
static int parse_options(int argc, char **argv, options *o)
{
	static const struct option longopts[] = {
	    {"accounts", required_argument, NULL, 'a'},
	    {"connections", required_argument, NULL, 'c'},
	    {"seconds", required_argument, NULL, 's'},
	    {"workers", required_argument, NULL, 'w'},
	    {"vault-dir", required_argument, NULL, 'd'},
	    {"paced", required_argument, NULL, 'p'},
	    {"half-peak", no_argument, NULL, 'H'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"reuse-tokens", no_argument, NULL, 'R'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'a':
			if (!parse_unsigned("accounts", optarg, 1, MAX_ACCOUNTS, &o->accounts))
				return 2;
			break;
		case 'c':
			if (!parse_unsigned("connections", optarg, 1, MAX_CONNECTIONS,
			                    &o->connections))
				return 2;
			break;
		case 'w':
			if (!parse_unsigned("workers", optarg, 1, MAX_WORKERS, &o->workers))
				return 2;
			break;
		case 's': {
			char *end;
			o->seconds = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(o->seconds >= 0.1) ||
			    o->seconds > MAX_SECONDS) {
				fail("--seconds must be 0.1 to %.0f", MAX_SECONDS);
				return 2;
			}
			break;
		}
		case 'd':
			o->vault_dir = optarg;
			break;
		case 'p': {
			char *end;
			o->paced_rate = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(o->paced_rate >= MIN_PACED_RATE) ||
			    o->paced_rate > MAX_PACED_RATE) {
				fail("--paced must be %g to %.0f recoveries/s", MIN_PACED_RATE,
				     MAX_PACED_RATE);
				return 2;
			}
			break;
		}
		case 'H':
			o->half_peak = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'R':
			o->reuse_tokens = true;
			break;
		case 'h':
			help();
			return 1;
		default:
			return 2;
		}
	}
	if (optind != argc) {
		fail("unexpected argument \"%s\"", argv[optind]);
		return 2;
	}
	if (o->vault_dir == NULL) {
		fail("--vault-dir is required (see --help)");
		return 2;
	}
	if (o->half_peak && o->paced_rate > 0) {
		fail("--paced and --half-peak exclude each other (--half-peak picks the rate)");
		return 2;
	}
	if (o->connections > o->accounts) {
		/* Each connection owns a share of the accounts, so no two connections race on one
		 * account (a newer guess finishing first makes an older ticket stale). */
		fail("--connections (%u) must not exceed --accounts (%u)", o->connections,
		     o->accounts);
		return 2;
	}
	return 0;
}

/* Runs path with args, stdout to our stderr; returns its exit status or -1. */
static int run_program(char *const argv[])
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(STDERR_FILENO, STDOUT_FILENO);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], argv);
		fprintf(stderr, PROG ": cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool locate_bkvd(bench *b)
{
	const char *env = getenv("BKVD");
	if (env != NULL && env[0] != '\0') {
		snprintf(b->bkvd, sizeof(b->bkvd), "%s", env);
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0) {
			fail("cannot find this program's path; set BKVD");
			return false;
		}
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash != NULL)
			*slash = '\0';
		if (strlen(self) + sizeof("/bkvd") > sizeof(b->bkvd)) {
			fail("path too long");
			return false;
		}
		snprintf(b->bkvd, sizeof(b->bkvd), "%s/bkvd", self);
	}
	if (access(b->bkvd, X_OK) != 0) {
		fail("cannot run bkvd at %s (set BKVD)", b->bkvd);
		return false;
	}
	return true;
}

/* Makes DIR a development vault unless it has a bkvd.conf, and points SoftHSM at it. */
static bool prepare_vault(bench *b)
{
	if (mkdir(b->opt.vault_dir, 0700) != 0 && errno != EEXIST) {
		fail("cannot create %s: %s", b->opt.vault_dir, strerror(errno));
		return false;
	}
	if (realpath(b->opt.vault_dir, b->dir) == NULL) {
		fail("%s: %s", b->opt.vault_dir, strerror(errno));
		return false;
	}
	if (strlen(b->dir) > PATH_MAX - 64) {
		fail("%s: path too long", b->dir);
		return false;
	}
	snprintf(b->config_path, sizeof(b->config_path), "%s/bkvd.conf", b->dir);
	snprintf(b->log_path, sizeof(b->log_path), "%s/bench-bkvd.log", b->dir);
	snprintf(b->port_path, sizeof(b->port_path), "%s/bench-bkvd.port", b->dir);
	if (access(b->config_path, F_OK) != 0) {
		char script[PATH_MAX];
		snprintf(script, sizeof(script), "%s/scripts/dev-vault", BKV_SOURCE_DIR);
		fprintf(stderr, "preparing a development vault in %s (scripts/dev-vault)\n",
		        b->dir);
		if (setenv("BKVD", b->bkvd, 1) != 0)
			return false;
		char *argv[] = {script, b->dir, NULL};
		int rc = run_program(argv);
		if (rc != 0) {
			fail("%s %s failed (exit %d)", script, b->dir, rc);
			return false;
		}
	}
	char hsm_conf[PATH_MAX];
	snprintf(hsm_conf, sizeof(hsm_conf), "%s/hsm/softhsm2.conf", b->dir);
	if (access(hsm_conf, R_OK) == 0 && setenv("SOFTHSM2_CONF", hsm_conf, 1) != 0)
		return false;
	char why[512];
	if (!bkvd_config_load(b->config_path, &b->config, why, sizeof(why))) {
		fail("%s", why);
		return false;
	}
	/* The benchmark mints the account tokens: with the HS256 secret, or with the ES256
	 * private key that scripts/dev-vault (BKV_DEV_VAULT_AUTH=ES256) keeps beside it. */
	snprintf(b->es256_key_path, sizeof(b->es256_key_path), "%s/dev-jwt-es256.key", b->dir);
	if (strcmp(b->config.auth_algorithm, "HS256") != 0 &&
	    (strcmp(b->config.auth_algorithm, "ES256") != 0 ||
	     access(b->es256_key_path, R_OK) != 0)) {
		fail("%s: the benchmark mints account tokens, so it needs the development HS256 "
		     "secret or the ES256 private key %s (scripts/dev-vault)",
		     b->config_path, b->es256_key_path);
		return false;
	}
	return true;
}

/* ---- bkvd ---- */

static void on_fatal_signal(int sig)
{
	const pid_t pid = (pid_t)g_server_pid;
	if (pid > 0)
		kill(pid, SIGTERM);
	signal(sig, SIG_DFL);
	raise(sig);
}

static bool read_port(const char *path, uint16_t *port)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	char line[32];
	bool ok = fgets(line, sizeof(line), f) != NULL && strchr(line, '\n') != NULL;
	fclose(f);
	if (!ok)
		return false;
	unsigned long v = strtoul(line, NULL, 10);
	if (v == 0 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* The first line of bkvd's log that holds what, into out without its "bkvd: " and newline;
 * false if there is none. */
static bool log_line(const char *log_path, const char *what, char *out, size_t cap)
{
	FILE *f = fopen(log_path, "r");
	if (f == NULL)
		return false;
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, what) == NULL)
			continue;
		line[strcspn(line, "\n")] = '\0';
		snprintf(out, cap, "%s", strncmp(line, "bkvd: ", 6) == 0 ? line + 6 : line);
		found = true;
	}
	fclose(f);
	return found;
}

/* bkvd's default worker count, from its "listening on URL with N workers" line. */
static bool read_worker_count(bench *b)
{
	char line[1024];
	const char *with = log_line(b->log_path, "bkvd: listening on ", line, sizeof(line))
	                       ? strstr(line, " with ")
	                       : NULL;
	unsigned n = 0;
	if (with == NULL || sscanf(with, " with %u worker", &n) != 1 || n == 0 || n > MAX_WORKERS) {
		fail("cannot read the worker count from %s", b->log_path);
		return false;
	}
	b->opt.workers = n;
	return true;
}

static bool start_server(bench *b)
{
	unlink(b->port_path);
	int log = open(b->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (log < 0) {
		fail("cannot create %s: %s", b->log_path, strerror(errno));
		return false;
	}
	char workers[16];
	snprintf(workers, sizeof(workers), "%u", b->opt.workers);
	const pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		/* bkvd goes down with this process, however it ends. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(log, STDOUT_FILENO);
		dup2(log, STDERR_FILENO);
		signal(SIGPIPE, SIG_DFL); /* run bkvd as it would run anywhere else */
		/* no --workers: bkvd's own default for the configured backend */
		char *argv[] = {
		    (char *)b->bkvd, "serve",       "--config",    (char *)b->config_path,
		    "--listen",      "127.0.0.1:0", "--port-file", (char *)b->port_path,
		    "--workers",     workers,       NULL};
		if (b->opt.workers == 0)
			argv[8] = NULL;
		execv(b->bkvd, argv);
		fprintf(stderr, PROG ": cannot run %s: %s\n", b->bkvd, strerror(errno));
		_exit(127);
	}
	close(log);
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		return false;
	}
	g_server_pid = pid;
	const uint64_t deadline = now_ns() + (uint64_t)START_TIMEOUT_MS * 1000000u;
	while (now_ns() < deadline) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			g_server_pid = 0;
			fail("bkvd serve exited at start-up (%s %d); see %s",
			     WIFEXITED(status) ? "exit" : "signal",
			     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
			     b->log_path);
			return false;
		}
		if (read_port(b->port_path, &b->port))
			return b->opt.workers > 0 || read_worker_count(b);
		usleep(20000);
	}
	fail("bkvd serve wrote no port within %d s; see %s", START_TIMEOUT_MS / 1000, b->log_path);
	return false;
}

static void stop_server(void)
{
	const pid_t pid = (pid_t)g_server_pid;
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	const uint64_t deadline = now_ns() + (uint64_t)STOP_TIMEOUT_MS * 1000000u;
	int status;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ns() > deadline) {
			fail("bkvd did not stop within %d s; killing it", STOP_TIMEOUT_MS / 1000);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		usleep(20000);
	}
	g_server_pid = 0;
}

/* How many times the bkvd log says a worker was restarted. */
static unsigned count_restarts(const char *log_path)
{
	FILE *f = fopen(log_path, "r");
	if (f == NULL)
		return 0;
	char line[1024];
	unsigned n = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "restarting it") != NULL)
			n++;
	}
	fclose(f);
	return n;
}

/* CPU time of the master's children (the workers), from /proc. */
typedef struct cpu_sample {
	size_t n;
	pid_t pid[MAX_WORKERS];
	uint64_t ticks[MAX_WORKERS];
} cpu_sample;

static void sample_workers(pid_t master, cpu_sample *s)
{
	s->n = 0;
	DIR *d = opendir("/proc");
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && s->n < MAX_WORKERS) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		char path[64], buf[1024];
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		/* pid (comm) state ppid ... field 14 utime, 15 stime */
		const char *p = strrchr(buf, ')');
		if (p == NULL)
			continue;
		char state;
		long ppid;
		unsigned long utime, stime;
		if (sscanf(p + 1, " %c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &state,
		           &ppid, &utime, &stime) != 4 ||
		    ppid != (long)master)
			continue;
		s->pid[s->n] = (pid_t)pid;
		s->ticks[s->n] = (uint64_t)utime + stime;
		s->n++;
	}
	closedir(d);
}

/* Per worker CPU seconds between two samples (a worker absent from before counts whole). */
static double worker_cpu_delta(const cpu_sample *before, const cpu_sample *after, double *each,
                               size_t *n)
{
	const double tick = (double)sysconf(_SC_CLK_TCK);
	double total = 0;
	*n = after->n;
	for (size_t i = 0; i < after->n; i++) {
		uint64_t base = 0;
		for (size_t j = 0; j < before->n; j++) {
			if (before->pid[j] == after->pid[i])
				base = before->ticks[j];
		}
		each[i] = (double)(after->ticks[i] - base) / tick;
		total += each[i];
	}
	return total;
}

/* Busy CPU ticks of the whole host (user, nice, system, irq, softirq, steal). */
static uint64_t host_busy_ticks(void)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[8] = {0};
	int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
	                   &v[3], &v[4], &v[5], &v[6], &v[7])
	          : 0;
	if (f != NULL)
		fclose(f);
	if (n != 8)
		return 0;
	return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

static double ticks_to_s(uint64_t ticks)
{
	return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

/* ---- The client side: raw OPAQUE (identity KSF), timed in thread CPU time ---- */

static bool client_login_start(const bench *b, opaque_client_login_state *state, uint8_t *ke1,
                               uint64_t *cpu)
{
	const uint64_t t = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	opaque_err err = opaque_client_login_start(&b->client, (const uint8_t *)PASSWORD,
	                                           sizeof(PASSWORD) - 1, state, ke1, b->sizes->ke1);
	*cpu += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t;
	return err == OPAQUE_OK;
}

static bool client_login_finish(const bench *b, opaque_client_login_state *state,
                                const uint8_t *ke2, size_t ke2_len, uint8_t *ke3,
                                uint8_t *session_key, uint64_t *cpu)
{
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	const uint64_t t = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	opaque_err err = opaque_client_login_finish(
	    &b->client, state, (const uint8_t *)PASSWORD, sizeof(PASSWORD) - 1, NULL, ke2, ke2_len,
	    ke3, b->sizes->ke3, session_key, b->sizes->session_key, export_key,
	    b->sizes->export_key);
	*cpu += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t;
	sodium_memzero(export_key, sizeof(export_key));
	return err == OPAQUE_OK;
}

/* Opens sealed_key = nonce || AES-256-GCM(HKDF-Expand(session_key, RELEASE_INFO, 32),
 * AAD = RELEASE_INFO) || tag and checks it holds the account's wrapped key. */
static bool client_open_release(const bench *b, const uint8_t *session_key, const uint8_t *sealed,
                                size_t sealed_len, const bench_account *a, uint64_t *cpu)
{
	const uint64_t t = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	uint8_t key[32], plain[WRAPPED_KEY_BYTES];
	int n = 0;
	bool ok =
	    sealed_len == RELEASE_NONCE + WRAPPED_KEY_BYTES + RELEASE_TAG &&
	    opaque_kdf_expand(b->suite, session_key, b->sizes->Nh, (const uint8_t *)RELEASE_INFO,
	                      sizeof(RELEASE_INFO) - 1, key, sizeof(key)) == OPAQUE_OK;
	EVP_CIPHER_CTX *ctx = ok ? EVP_CIPHER_CTX_new() : NULL;
	ok = ctx != NULL && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, sealed) == 1 &&
	     EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)RELEASE_INFO,
	                       (int)(sizeof(RELEASE_INFO) - 1)) == 1 &&
	     EVP_DecryptUpdate(ctx, plain, &n, sealed + RELEASE_NONCE, WRAPPED_KEY_BYTES) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, RELEASE_TAG,
	                         (void *)(sealed + RELEASE_NONCE + WRAPPED_KEY_BYTES)) == 1 &&
	     EVP_DecryptFinal_ex(ctx, plain + n, &n) == 1 &&
	     sodium_memcmp(plain, a->wrapped, WRAPPED_KEY_BYTES) == 0;
	EVP_CIPHER_CTX_free(ctx);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(plain, sizeof(plain));
	*cpu += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t;
	return ok;
}

/* ---- Connect over libcurl: one easy handle per connection, reused (keep-alive) ---- */

typedef struct conn {
	CURL *curl;
	uint8_t body[RESPONSE_MAX];
	size_t body_len;
	bool overflow;
	char curl_error[CURL_ERROR_SIZE];
	long connects; /* new TCP+TLS connections made */
} conn;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	conn *c = arg;
	const size_t n = size * nmemb;
	if (n > sizeof(c->body) - c->body_len) {
		c->overflow = true;
		return 0;
	}
	memcpy(c->body + c->body_len, ptr, n);
	c->body_len += n;
	return n;
}

static bool conn_init(conn *c, const bench *b)
{
	memset(c, 0, sizeof(*c));
	c->curl = curl_easy_init();
	if (c->curl == NULL)
		return false;
	CURL *h = c->curl;
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_error);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, HTTP_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (b->config.tls_cert[0] != '\0') {
		/* The development certificate is self-signed: it is its own CA. */
		curl_easy_setopt(h, CURLOPT_CAINFO, b->config.tls_cert);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	}
	return true;
}

static void conn_free(conn *c)
{
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	c->curl = NULL;
}

/* POSTs request to method; on 200 application/proto unpacks the response. */
static bool rpc(conn *c, const bench *b, int method, struct curl_slist *headers,
                const ProtobufCMessage *request, const ProtobufCMessageDescriptor *descriptor,
                ProtobufCMessage **response, char *why, size_t why_len)
{
	uint8_t packed[REQUEST_MAX];
	*response = NULL;
	const size_t len = protobuf_c_message_get_packed_size(request);
	if (len > sizeof(packed)) {
		set_why(why, why_len, "%s: request too large", method_names[method]);
		return false;
	}
	protobuf_c_message_pack(request, packed);
	c->body_len = 0;
	c->overflow = false;
	c->curl_error[0] = '\0';
	curl_easy_setopt(c->curl, CURLOPT_URL, b->urls[method]);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, packed);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)len);
	CURLcode rc = curl_easy_perform(c->curl);
	long connects = 0;
	curl_easy_getinfo(c->curl, CURLINFO_NUM_CONNECTS, &connects);
	c->connects += connects;
	if (rc != CURLE_OK) {
		set_why(why, why_len, "%s: %s", method_names[method],
		        c->curl_error[0] ? c->curl_error : curl_easy_strerror(rc));
		return false;
	}
	long http = 0;
	char *content_type = NULL;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
	curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &content_type);
	if (http != 200 || content_type == NULL || strcmp(content_type, "application/proto") != 0) {
		/* Connect error bodies are short JSON: show it as it came. */
		const int shown = (int)(c->body_len < 200 ? c->body_len : 200);
		set_why(why, why_len, "%s: HTTP %ld %.*s", method_names[method], http, shown,
		        (const char *)c->body);
		return false;
	}
	*response = protobuf_c_message_unpack(descriptor, NULL, c->body_len, c->body);
	if (*response == NULL) {
		set_why(why, why_len, "%s: the response is not valid protobuf",
		        method_names[method]);
		return false;
	}
	return true;
}

/* GetConfig: the vault's preferred suite and its context, so the client matches it. */
static bool fetch_config(conn *c, bench *b, char *why, size_t why_len)
{
	Bkv__V1__GetConfigRequest req = BKV__V1__GET_CONFIG_REQUEST__INIT;
	Bkv__V1__GetConfigResponse *resp;
	if (!rpc(c, b, M_GET_CONFIG, b->anon_headers, &req.base,
	         &bkv__v1__get_config_response__descriptor, (ProtobufCMessage **)&resp, why,
	         why_len))
		return false;
	bool ok = resp->n_suites > 0 && resp->context.len <= sizeof(b->context) &&
	          opaque_suite_sizes((opaque_suite_id)resp->suites[0]) != NULL;
	if (ok) {
		b->suite = (opaque_suite_id)resp->suites[0];
		b->sizes = opaque_suite_sizes(b->suite);
		memcpy(b->context, resp->context.data, resp->context.len);
		b->context_len = resp->context.len;
		b->client = (opaque_config){
		    b->suite, b->context, b->context_len, {OPAQUE_KSF_IDENTITY, 0, 0, 0}};
	} else {
		set_why(why, why_len, "GetConfig: no usable suite or context");
	}
	bkv__v1__get_config_response__free_unpacked(resp, NULL);
	return ok;
}

static bool register_account(conn *c, const bench *b, bench_account *a, char *why, size_t why_len)
{
	const opaque_sizes *sz = b->sizes;
	opaque_client_registration_state state;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	Bkv__V1__RegisterStartResponse *start = NULL;
	Bkv__V1__RegisterFinishResponse *finish = NULL;
	bool ok = false;
	if (opaque_client_registration_start(&b->client, (const uint8_t *)PASSWORD,
	                                     sizeof(PASSWORD) - 1, &state, request,
	                                     sz->registration_request) != OPAQUE_OK) {
		set_why(why, why_len, "opaque_client_registration_start failed");
		goto done;
	}
	Bkv__V1__RegisterStartRequest sreq = BKV__V1__REGISTER_START_REQUEST__INIT;
	sreq.suite = (Bkv__V1__Suite)b->suite;
	sreq.registration_request = (ProtobufCBinaryData){sz->registration_request, request};
	if (!rpc(c, b, M_REGISTER_START, a->headers, &sreq.base,
	         &bkv__v1__register_start_response__descriptor, (ProtobufCMessage **)&start, why,
	         why_len))
		goto done;
	if (opaque_client_registration_finish(
	        &b->client, &state, (const uint8_t *)PASSWORD, sizeof(PASSWORD) - 1, NULL,
	        start->registration_response.data, start->registration_response.len, record,
	        sz->registration_record, export_key, sz->export_key) != OPAQUE_OK) {
		set_why(why, why_len, "opaque_client_registration_finish failed");
		goto done;
	}
	randombytes_buf(a->wrapped, sizeof(a->wrapped));
	Bkv__V1__RegisterFinishRequest freq = BKV__V1__REGISTER_FINISH_REQUEST__INIT;
	freq.suite = (Bkv__V1__Suite)b->suite;
	freq.registration_record = (ProtobufCBinaryData){sz->registration_record, record};
	freq.wrapped_key = (ProtobufCBinaryData){sizeof(a->wrapped), a->wrapped};
	freq.registration_ticket = start->registration_ticket;
	ok = rpc(c, b, M_REGISTER_FINISH, a->headers, &freq.base,
	         &bkv__v1__register_finish_response__descriptor, (ProtobufCMessage **)&finish, why,
	         why_len);
done:
	opaque_client_registration_state_wipe(&state);
	sodium_memzero(export_key, sizeof(export_key));
	if (start != NULL)
		bkv__v1__register_start_response__free_unpacked(start, NULL);
	if (finish != NULL)
		bkv__v1__register_finish_response__free_unpacked(finish, NULL);
	return ok;
}

/* One recovery's timings over HTTP. */
typedef struct http_sample {
	uint32_t total_us;  /* the whole recovery, client work included; paced: from its schedule */
	uint32_t rpcs_us;   /* inside the two RPCs: client OPAQUE excluded */
	uint32_t start_us;  /* RecoverStart */
	uint32_t finish_us; /* RecoverFinish */
} http_sample;

static uint32_t us_since(uint64_t t0, uint64_t t1)
{
	const uint64_t us = (t1 - t0) / 1000u;
	return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static struct curl_slist *account_headers(const bench *b, const bench_account *a, bool check,
                                          char *why, size_t why_len);

/* One full recovery; its latency counts from scheduled (paced) or, if 0, from its start.
 * Its token is minted for it, as a client with one token per session has (--reuse-tokens:
 * the account's token minted before the run). */
static bool recover_http(conn *c, const bench *b, const bench_account *a, uint64_t scheduled,
                         http_sample *s, uint64_t *client_cpu, char *why, size_t why_len)
{
	struct curl_slist *fresh = NULL;
	if (!b->opt.reuse_tokens && (fresh = account_headers(b, a, false, why, why_len)) == NULL)
		return false;
	struct curl_slist *const headers = fresh != NULL ? fresh : a->headers;
	const opaque_sizes *sz = b->sizes;
	opaque_client_login_state state;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES], ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	Bkv__V1__RecoverStartResponse *start = NULL;
	Bkv__V1__RecoverFinishResponse *finish = NULL;
	bool ok = false;
	const uint64_t t0 = now_ns();
	if (!client_login_start(b, &state, ke1, client_cpu)) {
		set_why(why, why_len, "opaque_client_login_start failed");
		goto done;
	}
	Bkv__V1__RecoverStartRequest sreq = BKV__V1__RECOVER_START_REQUEST__INIT;
	sreq.suite = (Bkv__V1__Suite)b->suite;
	sreq.ke1 = (ProtobufCBinaryData){sz->ke1, ke1};
	const uint64_t t1 = now_ns();
	if (!rpc(c, b, M_RECOVER_START, headers, &sreq.base,
	         &bkv__v1__recover_start_response__descriptor, (ProtobufCMessage **)&start, why,
	         why_len))
		goto done;
	const uint64_t t2 = now_ns();
	if (!client_login_finish(b, &state, start->ke2.data, start->ke2.len, ke3, session_key,
	                         client_cpu)) {
		set_why(why, why_len, "opaque_client_login_finish failed (KE2 does not verify)");
		goto done;
	}
	Bkv__V1__RecoverFinishRequest freq = BKV__V1__RECOVER_FINISH_REQUEST__INIT;
	freq.ticket = start->ticket;
	freq.ke3 = (ProtobufCBinaryData){sz->ke3, ke3};
	const uint64_t t3 = now_ns();
	if (!rpc(c, b, M_RECOVER_FINISH, headers, &freq.base,
	         &bkv__v1__recover_finish_response__descriptor, (ProtobufCMessage **)&finish, why,
	         why_len))
		goto done;
	const uint64_t t4 = now_ns();
	if (!client_open_release(b, session_key, finish->sealed_key.data, finish->sealed_key.len, a,
	                         client_cpu)) {
		set_why(why, why_len, "the released key does not open to the registered one");
		goto done;
	}
	const uint64_t t5 = now_ns();
	s->total_us = us_since(scheduled != 0 && scheduled < t0 ? scheduled : t0, t5);
	s->start_us = us_since(t1, t2);
	s->finish_us = us_since(t3, t4);
	s->rpcs_us = s->start_us + s->finish_us;
	ok = true;
done:
	opaque_client_login_state_wipe(&state);
	sodium_memzero(session_key, sizeof(session_key));
	if (start != NULL)
		bkv__v1__recover_start_response__free_unpacked(start, NULL);
	if (finish != NULL)
		bkv__v1__recover_finish_response__free_unpacked(finish, NULL);
	curl_slist_free_all(fresh);
	return ok;
}

/* ---- The HTTP load ---- */

/* Shared by the main thread and the connections: every phase change is a barrier. */
typedef struct load_control {
	pthread_barrier_t barrier;
	uint64_t slice_start, slice_end; /* written before the start barrier */
	double paced_rate;               /* recoveries/s over all connections; 0 = closed loop */
	bool stop;
} load_control;

typedef struct loader {
	const bench *b;
	unsigned index;
	load_control *control;
	conn c;
	uint64_t rng;
	http_sample *samples;
	size_t n, cap;
	uint64_t client_cpu_ns;
	unsigned long errors;
	unsigned long late;    /* paced: started more than LATE_NS after the schedule */
	unsigned long dropped; /* paced: never started, the run having overrun too far */
	long warmup_connects;
	char first_error[320];
	bool ready;
} loader;

static void loader_error(loader *l, const char *why)
{
	if (l->errors++ == 0)
		snprintf(l->first_error, sizeof(l->first_error), "%s", why);
}

/* Connection k owns accounts k, k + C, k + 2C, ...: it picks one of them at random. */
static const bench_account *pick_account(loader *l)
{
	const unsigned n = l->b->opt.accounts, conns = l->b->opt.connections;
	const unsigned owned = (n - l->index + conns - 1) / conns;
	return &l->b->accounts[l->index + conns * (unsigned)(rng_next(&l->rng) % owned)];
}

static void keep_sample(loader *l, const http_sample *s)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4096;
		http_sample *grown = realloc(l->samples, cap * sizeof(*grown));
		if (grown == NULL) {
			loader_error(l, "out of memory");
			l->ready = false;
			return;
		}
		l->samples = grown;
		l->cap = cap;
	}
	l->samples[l->n++] = *s;
}

static void sleep_until(uint64_t t_ns)
{
	const struct timespec ts = {(time_t)(t_ns / 1000000000u), (long)(t_ns % 1000000000u)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
	}
}

/* Closed loop: the next recovery starts when the previous one ends, until the deadline. */
static void closed_slice(loader *l, uint64_t deadline)
{
	char why[320];
	http_sample s;
	while (l->ready && now_ns() < deadline) {
		if (!recover_http(&l->c, l->b, pick_account(l), 0, &s, &l->client_cpu_ns, why,
		                  sizeof(why))) {
			loader_error(l, why);
			continue;
		}
		keep_sample(l, &s);
	}
}

/*
 * Open loop: the run's k-th recovery is scheduled at start + k / rate, and connection i
 * takes k = i, i + C, i + 2C, ... up to the deadline. Each one starts at its schedule, or
 * as soon as the connection is free if it is still busy (a late start); its latency
 * counts from the schedule either way, so a slow reply delays and charges the requests
 * queued behind it. If the run overruns its deadline by more than its own length, the
 * rest is counted as dropped rather than run.
 */
static void paced_slice(loader *l, uint64_t start, uint64_t deadline, double rate)
{
	char why[320];
	http_sample s;
	const double interval = 1e9 / rate;
	const double conns = (double)l->b->opt.connections;
	const uint64_t give_up = deadline + (deadline - start);
	for (uint64_t k = 0; l->ready; k++) {
		const uint64_t scheduled =
		    start + (uint64_t)(((double)l->index + (double)k * conns) * interval);
		if (scheduled >= deadline)
			break;
		uint64_t now = now_ns();
		if (now >= give_up) {
			l->dropped++;
			continue;
		}
		if (now < scheduled)
			sleep_until(scheduled);
		else if (now - scheduled > LATE_NS)
			l->late++;
		if (!recover_http(&l->c, l->b, pick_account(l), scheduled, &s, &l->client_cpu_ns,
		                  why, sizeof(why))) {
			loader_error(l, why);
			continue;
		}
		keep_sample(l, &s);
	}
}

/* Warms up, then runs recoveries in the slices the main thread opens and closes. */
static void *load_thread(void *arg)
{
	loader *l = arg;
	const bench *b = l->b;
	load_control *ctl = l->control;
	char why[320];
	http_sample s;
	/* An untimed recovery first, so the TLS handshake is out of the measurement. */
	l->ready = conn_init(&l->c, b);
	if (!l->ready)
		loader_error(l, "curl_easy_init failed");
	else if (!recover_http(&l->c, b, pick_account(l), 0, &s, &l->client_cpu_ns, why,
	                       sizeof(why)))
		loader_error(l, why);
	l->warmup_connects = l->c.connects;
	l->c.connects = 0;
	l->client_cpu_ns = 0;
	pthread_barrier_wait(&ctl->barrier); /* ready */
	for (;;) {
		pthread_barrier_wait(&ctl->barrier); /* slice start */
		if (ctl->stop)
			break;
		if (ctl->paced_rate > 0)
			paced_slice(l, ctl->slice_start, ctl->slice_end, ctl->paced_rate);
		else
			closed_slice(l, ctl->slice_end);
		pthread_barrier_wait(&ctl->barrier); /* slice end */
	}
	return NULL;
}

typedef struct http_result {
	double paced_rate; /* scheduled recoveries/s; 0 = closed loop */
	double seconds;
	size_t recoveries;
	unsigned long errors;
	unsigned long late, dropped; /* paced only */
	char first_error[320];
	uint32_t *total, *rpcs, *start, *finish; /* sorted */
	uint64_t client_cpu_ns;
	uint64_t self_cpu_ns;
	double worker_cpu_s;
	double worker_each_s[MAX_WORKERS];
	size_t nworkers;
	long warmup_connects, run_connects;
	double host_busy_s; /* every process on the host */
} http_result;

static void http_result_free(http_result *r)
{
	free(r->total);
	free(r->rpcs);
	free(r->start);
	free(r->finish);
}

/* ---- The in-process floor ---- */

enum { S_GET, S_UPDATE, S_COUNT };

/* Where the floor's handler time goes. Only the floor (single-threaded) fills it. */
typedef struct floor_profile {
	uint64_t token_us[4];
	unsigned long token_n[4];
	uint64_t storage_ns[S_COUNT];
	unsigned long storage_n[S_COUNT];
	uint64_t audit_ns;
	unsigned long audit_n;
	unsigned long events;
} floor_profile;

static floor_profile g_profile;

bkv_storage_err __real_bkv_storage_get(bkv_storage *s, const uint8_t *account_id,
                                       size_t account_id_len, bkv_record *out);
bkv_storage_err __wrap_bkv_storage_get(bkv_storage *s, const uint8_t *account_id,
                                       size_t account_id_len, bkv_record *out);
bkv_storage_err __real_bkv_storage_update(bkv_storage *s, const bkv_record *r,
                                          const uint8_t *expected_mac, size_t expected_mac_len);
bkv_storage_err __wrap_bkv_storage_update(bkv_storage *s, const bkv_record *r,
                                          const uint8_t *expected_mac, size_t expected_mac_len);
void __real_bkv_audit(const bkv_vault *v, const char *event, bkv_account account,
                      const char *extra_key, uint64_t extra_value);
bkv_storage_err __wrap_bkv_storage_get(bkv_storage *s, const uint8_t *account_id,
                                       size_t account_id_len, bkv_record *out)
{
	const uint64_t t = now_ns();
	bkv_storage_err err = __real_bkv_storage_get(s, account_id, account_id_len, out);
	g_profile.storage_ns[S_GET] += now_ns() - t;
	g_profile.storage_n[S_GET]++;
	return err;
}

bkv_storage_err __wrap_bkv_storage_update(bkv_storage *s, const bkv_record *r,
                                          const uint8_t *expected_mac, size_t expected_mac_len)
{
	const uint64_t t = now_ns();
	bkv_storage_err err = __real_bkv_storage_update(s, r, expected_mac, expected_mac_len);
	g_profile.storage_ns[S_UPDATE] += now_ns() - t;
	g_profile.storage_n[S_UPDATE]++;
	return err;
}

void __wrap_bkv_audit(const bkv_vault *v, const char *event, bkv_account account,
                      const char *extra_key, uint64_t extra_value)
{
	const uint64_t t = now_ns();
	__real_bkv_audit(v, event, account, extra_key, extra_value);
	g_profile.audit_ns += now_ns() - t;
	g_profile.audit_n++;
}

static void on_token_op(void *arg, bkv_token_op op, uint64_t micros)
{
	(void)arg;
	if ((unsigned)op < 4) {
		g_profile.token_us[op] += micros;
		g_profile.token_n[op]++;
	}
}

/* What a worker's event hook does, minus the shared-memory metrics. */
static void on_event(void *arg, const char *event)
{
	(void)arg;
	if (strcmp(event, "attempt_used") == 0 || strcmp(event, "destroyed") == 0)
		g_profile.events++;
}

/* As bkvd's open_log, except that "-" (stderr) goes to /dev/null to keep the output clean. */
static FILE *open_log(const char *path)
{
	if (path[0] == '\0')
		return NULL;
	return fopen(strcmp(path, "-") == 0 ? "/dev/null" : path, "a");
}

/* As bkvd_open_token (bkvd/main.c), reporting through fail(). */
static bool open_token(const bkvd_config *c, bkv_token **token)
{
	char why[512];
	if (!bkvd_config_open_token(c, token, why, sizeof(why))) {
		fail("%s", why);
		return false;
	}
	return true;
}

static void vault_close(bkv_vault *v)
{
	if (v->settings.audit != NULL)
		fclose(v->settings.audit);
	bkv_storage_close(v->storage);
	bkv_token_close(v->token);
	sodium_memzero(v->settings.log_key, sizeof(v->settings.log_key));
	v->settings.audit = NULL;
	v->storage = NULL;
	v->token = NULL;
}

/* A worker's bkv_vault (bkvd/cmd_serve.c worker_main), without the server around it. */
static bool vault_open(const bkvd_config *c, bkv_vault *v)
{
	char why[512];
	memset(v, 0, sizeof(*v));
	if (!open_token(c, &v->token))
		return false;
	bkv_token_err terr = bkv_token_load_keys(v->token, c->suites, c->nsuites);
	if (terr != BKV_TOKEN_OK) {
		fail("token: %s", bkv_token_strerror(terr));
		vault_close(v);
		return false;
	}
	if (bkv_storage_open(c->storage, &v->storage, why, sizeof(why)) != BKV_STORAGE_OK) {
		fail("%s", why);
		vault_close(v);
		return false;
	}
	bkv_vault_settings *s = &v->settings;
	memcpy(s->suites, c->suites, c->nsuites * sizeof(c->suites[0]));
	s->nsuites = c->nsuites;
	s->context = c->context;
	s->context_len = c->context_len;
	s->ksf = c->ksf;
	s->default_attempt_limit = c->default_attempt_limit;
	s->max_attempt_limit = c->max_attempt_limit;
	s->ticket_lifetime_s = c->ticket_lifetime_s;
	s->audit = open_log(c->audit_log);
	s->event_hook = on_event;
	s->event_arg = NULL;
	if (!bkvd_config_load_log_key(c, s->log_key, why, sizeof(why))) {
		fail("%s", why);
		vault_close(v);
		return false;
	}
	bkv_token_set_observer(v->token, on_token_op, NULL);
	return true;
}

static bool recover_inprocess(bkv_vault *v, const bench *b, const bench_account *a,
                              bkv_reply_buffers *start_buf, bkv_reply_buffers *finish_buf,
                              uint64_t *handler_ns, uint64_t *client_cpu, char *why, size_t why_len)
{
	const opaque_sizes *sz = b->sizes;
	const bkv_account acc = {(const uint8_t *)a->id, a->id_len};
	opaque_client_login_state state;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES], ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	bool ok = false;
	if (!client_login_start(b, &state, ke1, client_cpu)) {
		set_why(why, why_len, "opaque_client_login_start failed");
		goto done;
	}
	Bkv__V1__RecoverStartRequest sreq = BKV__V1__RECOVER_START_REQUEST__INIT;
	sreq.suite = (Bkv__V1__Suite)b->suite;
	sreq.ke1 = (ProtobufCBinaryData){sz->ke1, ke1};
	Bkv__V1__RecoverStartResponse sresp;
	uint64_t t = now_ns();
	bkvd_status st = bkvd_recover_start(v, acc, &sreq, &sresp, start_buf);
	*handler_ns += now_ns() - t;
	if (st.code != BKV_CODE_OK) {
		set_why(why, why_len, "bkvd_recover_start: %s: %s", bkv_code_name(st.code),
		        st.message);
		goto done;
	}
	if (!client_login_finish(b, &state, sresp.ke2.data, sresp.ke2.len, ke3, session_key,
	                         client_cpu)) {
		set_why(why, why_len, "opaque_client_login_finish failed (KE2 does not verify)");
		goto done;
	}
	Bkv__V1__RecoverFinishRequest freq = BKV__V1__RECOVER_FINISH_REQUEST__INIT;
	freq.ticket = sresp.ticket;
	freq.ke3 = (ProtobufCBinaryData){sz->ke3, ke3};
	Bkv__V1__RecoverFinishResponse fresp;
	t = now_ns();
	st = bkvd_recover_finish(v, acc, &freq, &fresp, finish_buf);
	*handler_ns += now_ns() - t;
	if (st.code != BKV_CODE_OK) {
		set_why(why, why_len, "bkvd_recover_finish: %s: %s", bkv_code_name(st.code),
		        st.message);
		goto done;
	}
	if (!client_open_release(b, session_key, fresp.sealed_key.data, fresp.sealed_key.len, a,
	                         client_cpu)) {
		set_why(why, why_len, "the released key does not open to the registered one");
		goto done;
	}
	ok = true;
done:
	opaque_client_login_state_wipe(&state);
	sodium_memzero(session_key, sizeof(session_key));
	return ok;
}

typedef struct floor_result {
	double seconds;
	unsigned long recoveries;
	unsigned long errors;
	char first_error[320];
	uint64_t handler_ns;
	uint64_t client_cpu_ns;
	uint64_t thread_cpu_ns; /* the floor's thread: handlers + client OPAQUE + the loop */
	uint64_t self_cpu_ns;   /* the whole process, for the host's CPU account */
	double host_busy_s;
	floor_profile profile;
} floor_result;

/* The floor's state across its slices. */
typedef struct floor_state {
	bkv_vault vault;
	bkv_reply_buffers bufs[2];
	uint64_t rng;
} floor_state;

/* Runs in-process recoveries until deadline; counts them in r if r is not NULL. */
static void floor_slice(floor_state *f, const bench *b, uint64_t deadline, floor_result *r)
{
	char why[320];
	uint64_t handler_ns = 0, client_cpu = 0;
	unsigned long done = 0, errors = 0;
	const uint64_t t0 = now_ns(), cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	const uint64_t thread0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	const uint64_t host0 = host_busy_ticks();
	while (now_ns() < deadline) {
		const bench_account *a = &b->accounts[rng_next(&f->rng) % b->opt.accounts];
		if (recover_inprocess(&f->vault, b, a, &f->bufs[0], &f->bufs[1], &handler_ns,
		                      &client_cpu, why, sizeof(why)))
			done++;
		else if (errors++ == 0 && r != NULL && r->errors == 0)
			snprintf(r->first_error, sizeof(r->first_error), "%s", why);
	}
	if (r == NULL)
		return;
	const uint64_t t1 = now_ns(), cpu1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	r->thread_cpu_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - thread0;
	r->host_busy_s += ticks_to_s(host_busy_ticks() - host0);
	r->seconds += (double)(t1 - t0) / 1e9;
	r->recoveries += done;
	r->errors += errors;
	r->handler_ns += handler_ns;
	r->client_cpu_ns += client_cpu;
	r->self_cpu_ns += cpu1 - cpu0;
}

/* Sorted copies of one field of every sample. */
static uint32_t *sorted_field(const loader *loaders, unsigned n, size_t total, size_t offset)
{
	uint32_t *out = malloc((total ? total : 1) * sizeof(uint32_t));
	if (out == NULL)
		return NULL;
	size_t k = 0;
	for (unsigned i = 0; i < n; i++) {
		for (size_t j = 0; j < loaders[i].n; j++)
			memcpy(&out[k++], (const uint8_t *)&loaders[i].samples[j] + offset,
			       sizeof(uint32_t));
	}
	qsort(out, total, sizeof(uint32_t), cmp_u32);
	return out;
}

/* One HTTP slice: opens it for the connections, waits until every one is done, and adds
 * its time and the CPU spent on the host to h. */
static void http_slice(load_control *ctl, uint64_t seconds_ns, http_result *h, cpu_sample *before,
                       cpu_sample *after)
{
	const uint64_t host0 = host_busy_ticks();
	const uint64_t cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	sample_workers((pid_t)g_server_pid, before);
	const uint64_t t0 = now_ns();
	ctl->slice_start = t0;
	ctl->slice_end = t0 + seconds_ns;
	pthread_barrier_wait(&ctl->barrier); /* start */
	pthread_barrier_wait(&ctl->barrier); /* end: every connection is idle */
	if (ctl->paced_rate > 0 && now_ns() < ctl->slice_end)
		sleep_until(
		    ctl->slice_end); /* the schedule's window, though its last reply came early */
	const uint64_t t1 = now_ns();
	sample_workers((pid_t)g_server_pid, after);
	h->self_cpu_ns += clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
	h->host_busy_s += ticks_to_s(host_busy_ticks() - host0);
	h->seconds += (double)(t1 - t0) / 1e9;
	double each[MAX_WORKERS];
	size_t nworkers;
	h->worker_cpu_s += worker_cpu_delta(before, after, each, &nworkers);
	for (size_t w = 0; w < nworkers && w < MAX_WORKERS; w++)
		h->worker_each_s[w] += each[w];
	if (nworkers > h->nworkers)
		h->nworkers = nworkers;
}

/*
 * One measurement. Closed loop (paced_rate 0): HTTP slices and floor slices alternate,
 * SLICE_S each, until each has had --seconds, so both see the same host (a shared
 * machine's load and fsync latency drift). Paced: one unbroken HTTP run of --seconds (a
 * schedule must not pause), then the floor for --seconds. During an HTTP slice the floor
 * is idle; during a floor slice the connections wait and bkvd idles. The floor's vault is
 * open, like a worker's, all along. With_floor false: HTTP only (fr stays zero). A slice
 * lasts until its last recovery ends, so h->seconds includes any overrun.
 */
static bool run_measurement(const bench *b, double paced_rate, bool with_floor, http_result *h,
                            floor_result *fr)
{
	const unsigned n = b->opt.connections;
	loader *loaders = calloc(n, sizeof(*loaders));
	pthread_t *threads = calloc(n, sizeof(*threads));
	cpu_sample *before = malloc(sizeof(*before)), *after = malloc(sizeof(*after));
	floor_state *f = calloc(1, sizeof(*f));
	load_control ctl = {.stop = false, .paced_rate = paced_rate};
	bool ok = false, vault_ok = false;
	memset(h, 0, sizeof(*h));
	memset(fr, 0, sizeof(*fr));
	h->paced_rate = paced_rate;
	if (loaders == NULL || threads == NULL || before == NULL || after == NULL || f == NULL ||
	    pthread_barrier_init(&ctl.barrier, NULL, n + 1) != 0) {
		fail("out of memory");
		goto done;
	}
	if (with_floor) {
		vault_ok = vault_open(&b->config, &f->vault);
		if (!vault_ok)
			goto done;
		randombytes_buf(&f->rng, sizeof(f->rng));
		floor_slice(f, b, now_ns() + (uint64_t)(FLOOR_WARMUP_S * 1e9), NULL);
	}
	for (unsigned i = 0; i < n; i++) {
		loaders[i] = (loader){.b = b, .index = i, .control = &ctl};
		randombytes_buf(&loaders[i].rng, sizeof(loaders[i].rng));
		if (pthread_create(&threads[i], NULL, load_thread, &loaders[i]) != 0) {
			fail("cannot start thread %u", i);
			abort(); /* the threads already started would wait forever */
		}
	}
	pthread_barrier_wait(&ctl.barrier); /* every connection is warm */
	memset(&g_profile, 0, sizeof(g_profile));
	if (paced_rate > 0) {
		http_slice(&ctl, (uint64_t)(b->opt.seconds * 1e9), h, before, after);
		if (with_floor)
			floor_slice(f, b, now_ns() + (uint64_t)(b->opt.seconds * 1e9), fr);
	} else {
		const unsigned slices = (unsigned)(b->opt.seconds / SLICE_S + 0.5) > 0
		                            ? (unsigned)(b->opt.seconds / SLICE_S + 0.5)
		                            : 1;
		const uint64_t slice_ns = (uint64_t)(b->opt.seconds / slices * 1e9);
		for (unsigned i = 0; i < slices; i++) {
			http_slice(&ctl, slice_ns, h, before, after);
			if (with_floor)
				floor_slice(f, b, now_ns() + slice_ns, fr);
		}
	}
	ctl.stop = true;
	pthread_barrier_wait(&ctl.barrier);
	for (unsigned i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	fr->profile = g_profile;
	for (unsigned i = 0; i < n; i++) {
		h->recoveries += loaders[i].n;
		h->errors += loaders[i].errors;
		h->late += loaders[i].late;
		h->dropped += loaders[i].dropped;
		h->client_cpu_ns += loaders[i].client_cpu_ns;
		h->warmup_connects += loaders[i].warmup_connects;
		h->run_connects += loaders[i].c.connects;
		if (loaders[i].errors > 0 && h->first_error[0] == '\0')
			snprintf(h->first_error, sizeof(h->first_error), "%s",
			         loaders[i].first_error);
	}
	h->total = sorted_field(loaders, n, h->recoveries, offsetof(http_sample, total_us));
	h->rpcs = sorted_field(loaders, n, h->recoveries, offsetof(http_sample, rpcs_us));
	h->start = sorted_field(loaders, n, h->recoveries, offsetof(http_sample, start_us));
	h->finish = sorted_field(loaders, n, h->recoveries, offsetof(http_sample, finish_us));
	ok = h->total != NULL && h->rpcs != NULL && h->start != NULL && h->finish != NULL;
	if (!ok)
		fail("out of memory");
done:
	if (loaders != NULL) {
		for (unsigned i = 0; i < n; i++) {
			conn_free(&loaders[i].c);
			free(loaders[i].samples);
		}
	}
	if (vault_ok)
		vault_close(&f->vault);
	if (f != NULL) {
		sodium_memzero(f->bufs, sizeof(f->bufs));
		free(f);
	}
	free(loaders);
	free(threads);
	free(before);
	free(after);
	return ok;
}

/* ---- Accounts ---- */

/* base64url without padding of len bytes at out + *at, advancing *at. */
static bool append_b64url(char *out, size_t cap, size_t *at, const uint8_t *bytes, size_t len)
{
	if (sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING) > cap - *at)
		return false;
	sodium_bin2base64(out + *at, cap - *at, bytes, len,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	*at += strlen(out + *at);
	return true;
}

/* An ES256 token as an issuer would sign it (RFC 7515, RFC 7518 3.4: R || S), with S in
 * the low form the vault requires (docs/PROTOCOL.md). Returns malloc'd text or NULL. */
static char *mint_es256(EVP_PKEY *key, const bkvd_config *c, const char *sub, int64_t now,
                        int64_t lifetime)
{
	static const char header[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
	char claims[1024];
	const int n = snprintf(claims, sizeof(claims),
	                       "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"%s\",\"iat\":%" PRId64
	                       ",\"exp\":%" PRId64 "}",
	                       c->auth_issuer, c->auth_audience, sub, now, now + lifetime);
	char *out = malloc(BKV_AUTH_TOKEN_MAX);
	size_t at = 0;
	if (n < 0 || (size_t)n >= sizeof(claims) || out == NULL ||
	    !append_b64url(out, BKV_AUTH_TOKEN_MAX, &at, (const uint8_t *)header,
	                   sizeof(header) - 1) ||
	    at + 1 >= BKV_AUTH_TOKEN_MAX)
		goto fail;
	out[at++] = '.';
	if (!append_b64url(out, BKV_AUTH_TOKEN_MAX, &at, (const uint8_t *)claims, (size_t)n))
		goto fail;
	const size_t signed_len = at;
	uint8_t der[80], raw[64];
	size_t der_len = sizeof(der);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	const bool signed_ok =
	    md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
	    EVP_DigestSign(md, der, &der_len, (const uint8_t *)out, signed_len) == 1;
	EVP_MD_CTX_free(md);
	const uint8_t *p = der;
	ECDSA_SIG *sig = signed_ok ? d2i_ECDSA_SIG(NULL, &p, (long)der_len) : NULL;
	EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	BIGNUM *s = sig ? BN_dup(ECDSA_SIG_get0_s(sig)) : NULL, *twin = BN_new();
	bool ok = s != NULL && twin != NULL && group != NULL &&
	          BN_sub(twin, EC_GROUP_get0_order(group), s) == 1;
	if (ok && BN_cmp(s, twin) > 0) /* high S: its twin n - S is the low one */
		BN_copy(s, twin);
	ok = ok && BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) == 32 &&
	     BN_bn2binpad(s, raw + 32, 32) == 32 && at + 1 < BKV_AUTH_TOKEN_MAX;
	BN_free(s);
	BN_free(twin);
	EC_GROUP_free(group);
	ECDSA_SIG_free(sig);
	if (!ok)
		goto fail;
	out[at++] = '.';
	if (!append_b64url(out, BKV_AUTH_TOKEN_MAX, &at, raw, sizeof(raw)))
		goto fail;
	return out;
fail:
	free(out);
	return NULL;
}

static EVP_PKEY *load_es256_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f != NULL)
		fclose(f);
	if (key != NULL && !EVP_PKEY_is_a(key, "EC")) {
		EVP_PKEY_free(key);
		key = NULL;
	}
	return key;
}

/* The headers of every RPC, and authorization (a whole header line) when not NULL. */
static struct curl_slist *rpc_headers(const char *authorization)
{
	const char *const lines[] = {"Content-Type: application/proto",
	                             "Connect-Protocol-Version: 1", "Expect:", authorization};
	const size_t n = authorization != NULL ? 4 : 3;
	struct curl_slist *list = NULL;
	for (size_t i = 0; i < n; i++) {
		struct curl_slist *more = curl_slist_append(list, lines[i]);
		if (more == NULL) {
			curl_slist_free_all(list);
			return NULL;
		}
		list = more;
	}
	return list;
}

/* The headers of one account's RPCs, with a token minted for them. check: the token is
 * first verified as the vault will (a token it would refuse is a benchmark bug). */
static struct curl_slist *account_headers(const bench *b, const bench_account *a, bool check,
                                          char *why, size_t why_len)
{
	/* Issued up to a minute back, a different second each time, so that two tokens an
	 * account gets within a second differ (HS256 signs deterministically). */
	static uint64_t minted;
	const int64_t now = (int64_t)time(NULL);
	const int64_t issued =
	    now - (int64_t)(__atomic_fetch_add(&minted, 1, __ATOMIC_RELAXED) % 60);
	const int64_t lifetime = b->config.auth_max_lifetime_s;
	char *jwt = b->es256 ? mint_es256(b->es256, &b->config, a->id, issued, lifetime)
	                     : bkv_auth_mint(&b->auth, a->id, issued, lifetime);
	if (jwt == NULL) {
		set_why(why, why_len, "cannot mint an account token");
		return NULL;
	}
	char header[BKV_AUTH_TOKEN_MAX + 32];
	snprintf(header, sizeof(header), "Authorization: Bearer %s", jwt);
	free(jwt);
	const char *refused = NULL;
	uint8_t sub[BKV_AUTH_ACCOUNT_MAX];
	size_t sub_len = 0;
	if (check && !bkv_auth_verify(&b->auth, header + strlen("Authorization: "), now, sub,
	                              &sub_len, &refused)) {
		set_why(why, why_len, "a minted account token is refused: %s", refused);
		return NULL;
	}
	struct curl_slist *headers = rpc_headers(header);
	if (headers == NULL)
		set_why(why, why_len, "out of memory");
	return headers;
}

static bool make_accounts(bench *b)
{
	char why[512];
	bkv_auth_settings s = {
	    .algorithm = b->config.auth_algorithm,
	    .key_file = b->config.auth_key_file,
	    .issuer = b->config.auth_issuer,
	    .audience = b->config.auth_audience,
	    .max_lifetime_s = b->config.auth_max_lifetime_s,
	    .clock_skew_s = b->config.auth_clock_skew_s,
	};
	const int64_t lifetime = b->config.auth_max_lifetime_s;
	if ((double)lifetime < 4 * b->opt.seconds + 300) { /* --half-peak: three runs */
		fail("[auth] max_lifetime (%" PRId64 " s) is too short for --seconds %.0f",
		     lifetime, b->opt.seconds);
		return false;
	}
	if (!bkv_auth_init(&b->auth, &s, why, sizeof(why))) {
		fail("%s", why);
		return false;
	}
	if (strcmp(b->config.auth_algorithm, "ES256") == 0 &&
	    (b->es256 = load_es256_key(b->es256_key_path)) == NULL) {
		fail("cannot read the ES256 private key %s", b->es256_key_path);
		return false;
	}
	b->anon_headers = rpc_headers(NULL);
	b->accounts = calloc(b->opt.accounts, sizeof(*b->accounts));
	bool ok = b->anon_headers != NULL && b->accounts != NULL;
	const uint32_t run_id = randombytes_random();
	for (unsigned i = 0; ok && i < b->opt.accounts; i++) {
		bench_account *a = &b->accounts[i];
		/* Fresh accounts per run: registration is create-only, and the vault may be
		 * reused from an earlier run. */
		snprintf(a->id, sizeof(a->id), ACCOUNT_PREFIX "%08x-%06u", run_id, i);
		a->id_len = strlen(a->id);
		a->headers = account_headers(b, a, true, why, sizeof(why));
		if (a->headers == NULL) {
			fail("%s", why);
			ok = false;
		}
	}
	return ok;
}

static void free_accounts(bench *b)
{
	if (b->accounts != NULL) {
		for (unsigned i = 0; i < b->opt.accounts; i++)
			curl_slist_free_all(b->accounts[i].headers);
	}
	free(b->accounts);
	b->accounts = NULL;
	curl_slist_free_all(b->anon_headers);
	b->anon_headers = NULL;
	EVP_PKEY_free(b->es256);
	b->es256 = NULL;
	bkv_auth_free(&b->auth); /* also when it was never initialized: it is zeroed */
}

static bool register_all(bench *b, double *seconds)
{
	conn *c = malloc(sizeof(*c));
	char why[512];
	bool ok = c != NULL && conn_init(c, b);
	if (!ok) {
		fail("out of memory");
		free(c);
		return false;
	}
	for (unsigned i = 0; i < M_COUNT; i++)
		snprintf(b->urls[i], sizeof(b->urls[i]),
		         "%s://127.0.0.1:%u/bkv.v1.BackupKeyVault/%s",
		         b->config.tls_cert[0] ? "https" : "http", b->port, method_names[i]);
	ok = fetch_config(c, b, why, sizeof(why));
	const uint64_t t0 = now_ns();
	for (unsigned i = 0; ok && i < b->opt.accounts; i++)
		ok = register_account(c, b, &b->accounts[i], why, sizeof(why));
	*seconds = (double)(now_ns() - t0) / 1e9;
	if (!ok)
		fail("%s", why);
	conn_free(c);
	free(c);
	return ok;
}

/* ---- Report ---- */

static const char *fs_name(const char *storage_url)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s",
	         strncmp(storage_url, "sqlite:", 7) == 0 ? storage_url + 7 : storage_url);
	char *slash = strrchr(path, '/');
	if (slash != NULL)
		*slash = '\0';
	struct statfs st;
	if (statfs(path[0] ? path : "/", &st) != 0)
		return "unknown file system";
	switch ((unsigned long)st.f_type) {
	case 0xEF53:
		return "ext4";
	case 0x58465342:
		return "xfs";
	case 0x9123683E:
		return "btrfs";
	case 0x01021994:
		return "tmpfs, so fsync is free";
	case 0x794c7630:
		return "overlayfs";
	default:
		return "file system";
	}
}

static bool g_quiet; /* --quiet: only the summary lines reach stdout */

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	if (g_quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

static bool is_postgresql(const char *storage)
{
	return strncmp(storage, "postgresql://", 13) == 0 ||
	       strncmp(storage, "postgres://", 11) == 0;
}

/* True if the URL turns synchronous_commit off (options=-c synchronous_commit=off). */
static bool url_async_commit(const char *storage)
{
	char lower[BKVD_PATH_MAX];
	size_t i = 0;
	for (; storage[i] != '\0' && i < sizeof(lower) - 1; i++)
		lower[i] = (char)((storage[i] >= 'A' && storage[i] <= 'Z') ? storage[i] - 'A' + 'a'
		                                                           : storage[i]);
	lower[i] = '\0';
	return strstr(lower, "synchronous_commit%3doff") != NULL ||
	       strstr(lower, "synchronous_commit=off") != NULL;
}

static void print_header(const bench *b)
{
	report("%s: vault %s, suite %s, %u accounts, %.1f s per measurement\n", PROG, b->dir,
	       bkvd_suite_config_name(b->suite), b->opt.accounts, b->opt.seconds);
	report("  bkvd: %u worker%s on %u CPU%s, the load generator on the same host\n",
	       b->opt.workers, b->opt.workers == 1 ? "" : "s", b->ncpu, b->ncpu == 1 ? "" : "s");
	char shown[BKVD_PATH_MAX];
	bkv_storage_url_redacted(b->config.storage, shown, sizeof(shown));
	if (is_postgresql(b->config.storage) && url_async_commit(b->config.storage))
		report("  storage: %s (PostgreSQL; synchronous_commit=off from the URL: COMMIT "
		       "returns before the WAL flush, not durable, a reference only)\n",
		       shown);
	else if (is_postgresql(b->config.storage))
		report("  storage: %s (PostgreSQL; synchronous_commit as the server sets it, on by "
		       "default: each COMMIT waits for the WAL flush)\n",
		       shown);
	else
		report("  storage: %s (%s; synchronous=FULL: each commit waits for its fsync)\n",
		       shown, fs_name(b->config.storage));
	char line[1024];
	if (log_line(b->log_path, " commits", line, sizeof(line)))
		report("  bkvd says: %s\n", line); /* who commits, and why ([vault] committer) */
	if (b->opt.reuse_tokens)
		report("  auth: %s bearer tokens, one per account, minted before the run and used\n"
		       "  for all its recoveries: after its first RPC each worker has it cached\n",
		       b->config.auth_algorithm);
	else
		report(
		    "  auth: %s bearer tokens, one minted per recovery by the load generator, as\n"
		    "  a client with one token per session has: RecoverStart checks the\n"
		    "  signature, RecoverFinish finds the token in the worker's cache\n",
		    b->config.auth_algorithm);
	report("  client KSF: identity. The KSF runs only on the client; the vault's Argon2id "
	       "(t=%u, %u KiB)\n  would measure the load generator, not the vault.\n",
	       b->config.ksf.iterations, b->config.ksf.memory_kib);
}

static double http_rate(const http_result *r)
{
	return r->seconds > 0 ? (double)r->recoveries / r->seconds : 0.0;
}

/* p99 / p50 of the whole recovery, or 0 without samples. */
static double tail_ratio(const http_result *r)
{
	const double p50 = percentile_ms(r->total, r->recoveries, 50);
	return p50 > 0 ? percentile_ms(r->total, r->recoveries, 99) / p50 : 0.0;
}

static void print_http(const bench *b, const http_result *r)
{
	const double per = r->recoveries ? (double)r->recoveries : 1.0;
	const size_t n = r->recoveries;
	if (r->paced_rate > 0) {
		report("http  paced (open loop) at %.0f recoveries/s scheduled, %u conns x %u "
		       "workers: achieved %.0f recoveries/s over %.2f s  errors %lu\n",
		       r->paced_rate, b->opt.connections, b->opt.workers, http_rate(r), r->seconds,
		       r->errors);
		report("      latency, each recovery from its scheduled start (a wait for its "
		       "connection and the client's OPAQUE work included):\n");
	} else {
		report("http  closed loop, %u conns x %u workers: %.0f recoveries/s  errors %lu\n",
		       b->opt.connections, b->opt.workers, http_rate(r), r->errors);
		report("      latency, each recovery from its start (the client's OPAQUE work "
		       "included):\n");
	}
	report("      p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  p99.9 %.1f ms  (p99/p50 %.2f, %zu "
	       "recoveries)\n",
	       percentile_ms(r->total, n, 50), percentile_ms(r->total, n, 90),
	       percentile_ms(r->total, n, 99), percentile_ms(r->total, n, 99.9), tail_ratio(r), n);
	if (r->paced_rate > 0) {
		const double scheduled = (double)n + (double)r->errors + (double)r->dropped;
		report(
		    "      late starts: %lu of %.0f (%.1f %%) began more than %.0f ms after their "
		    "schedule (their connection was still busy, or the load generator's thread "
		    "ran late)\n",
		    r->late, scheduled, scheduled > 0 ? 100.0 * (double)r->late / scheduled : 0.0,
		    (double)LATE_NS / 1e6);
		if (r->dropped > 0)
			report(
			    "      dropped: %lu scheduled recoveries never started (the run fell "
			    "more than its own length behind: the rate is above what bkvd "
			    "serves)\n",
			    r->dropped);
	}
	if (r->errors > 0)
		report("      first error: %s\n", r->first_error);
	report("      server side as the client sees it (the two RPCs, client OPAQUE excluded): "
	       "p50 %.1f ms  p99 %.1f ms  p99.9 %.1f ms"
	       "  (RecoverStart p50 %.1f, RecoverFinish p50 %.1f)\n",
	       percentile_ms(r->rpcs, n, 50), percentile_ms(r->rpcs, n, 99),
	       percentile_ms(r->rpcs, n, 99.9), percentile_ms(r->start, n, 50),
	       percentile_ms(r->finish, n, 50));
	report("      CPU per recovery: bkvd %.2f ms (its worker processes, user + system), load "
	       "generator %.2f ms (client OPAQUE %.2f ms, the rest curl + TLS)\n",
	       r->worker_cpu_s * 1e3 / per, ms(r->self_cpu_ns) / per, ms(r->client_cpu_ns) / per);
	const double others = r->host_busy_s - r->worker_cpu_s - (double)r->self_cpu_ns / 1e9;
	report("      host CPU over %.1f s (%.1f CPU-s available): bkvd workers", r->seconds,
	       r->seconds * b->ncpu);
	for (size_t i = 0; i < r->nworkers; i++)
		report("%s %.2f s", i ? " +" : "", r->worker_each_s[i]);
	report(", load generator %.2f s, other processes %.2f s\n", (double)r->self_cpu_ns / 1e9,
	       others > 0 ? others : 0.0);
	report("      %ld TLS handshakes before the run, %ld reconnects during it (keep-alive)\n",
	       r->warmup_connects, r->run_connects);
	double lo = 0, hi = 0;
	for (size_t i = 0; i < r->nworkers; i++) {
		lo = i == 0 || r->worker_each_s[i] < lo ? r->worker_each_s[i] : lo;
		hi = r->worker_each_s[i] > hi ? r->worker_each_s[i] : hi;
	}
	if (r->nworkers > 1 && lo < 0.5 * hi)
		report(
		    "      uneven: a keep-alive connection stays on the worker that accepted it, "
		    "and SO_REUSEPORT spreads connections by hash, not by load\n");
}

/* The in-process handlers' CPU per recovery: the floor thread's CPU minus the client's. */
static double handler_cpu_ms(const floor_result *f)
{
	if (f->recoveries == 0 || f->thread_cpu_ns < f->client_cpu_ns)
		return 0.0;
	return ms(f->thread_cpu_ns - f->client_cpu_ns) / (double)f->recoveries;
}

static double bkvd_cpu_ms(const http_result *h)
{
	return h->recoveries ? h->worker_cpu_s * 1e3 / (double)h->recoveries : 0.0;
}

static double cpu_ratio(const http_result *h, const floor_result *f)
{
	const double in_process = handler_cpu_ms(f);
	return in_process > 0 ? bkvd_cpu_ms(h) / in_process : 0.0;
}

static void print_floor(const bench *b, const floor_result *f)
{
	const double n = f->recoveries ? (double)f->recoveries : 1.0;
	const double rate = f->seconds > 0 ? (double)f->recoveries / f->seconds : 0.0;
	const double handler_ms = ms(f->handler_ns) / n;
	const double client_ms = ms(f->client_cpu_ns) / n;
	const double handlers_rate =
	    f->handler_ns ? (double)f->recoveries / (ms(f->handler_ns) / 1e3) : 0.0;
	report("floor in-process (1 thread, no HTTP): %.0f recoveries/s  (handlers %.2f ms + "
	       "client OPAQUE %.2f ms per recovery, wall time)  errors %lu\n",
	       rate, handler_ms, client_ms, f->errors);
	if (f->errors > 0)
		report("      first error: %s\n", f->first_error);
	const floor_profile *p = &f->profile;
	static const char *const token_names[4] = {"encrypt", "decrypt", "hmac", "ecdh"};
	double token_ms = 0;
	report("      handlers only: %.0f recoveries per handler wall-second (fsync waits "
	       "included); per recovery, wall time:\n",
	       handlers_rate);
	report("        token   ");
	for (int i = 0; i < 4; i++) {
		if (p->token_n[i] == 0)
			continue;
		const double t = (double)p->token_us[i] / 1e3 / n;
		token_ms += t;
		report(" %s %.1fx %.3f ms", token_names[i], (double)p->token_n[i] / n, t);
	}
	report("  = %.3f ms\n", token_ms);
	static const char *const storage_names[S_COUNT] = {"get", "update"};
	double storage_ms = 0;
	report("        storage ");
	for (int i = 0; i < S_COUNT; i++) {
		const double t = ms(p->storage_ns[i]) / n;
		storage_ms += t;
		report(" %s %.1fx %.3f ms", storage_names[i], (double)p->storage_n[i] / n, t);
	}
	report("  = %.3f ms\n", storage_ms);
	const double audit_ms = ms(p->audit_ns) / n;
	report("        audit log %.3f ms; the rest %.3f ms (OPAQUE server math%s, ticket and "
	       "release sealing)\n",
	       audit_ms, handler_ms - token_ms - storage_ms - audit_ms,
	       b->suite == OPAQUE_SUITE_RISTRETTO255_SHA512 ? " with the ristretto255 DH" : "");
	report("        handler CPU %.2f ms of the %.2f ms (the difference is waiting, mostly "
	       "fsync)\n",
	       handler_cpu_ms(f), handler_ms);
	const double others = f->host_busy_s - (double)f->self_cpu_ns / 1e9;
	report("        host CPU over %.1f s: this process %.2f s, other processes %.2f s\n",
	       f->seconds, (double)f->self_cpu_ns / 1e9, others > 0 ? others : 0.0);
}

/* The CPU comparison of the HTTP run h against the in-process floor f. */
static void print_cpu(const bench *b, const http_result *h, const floor_result *f,
                      const char *floor_note)
{
	const double bkvd_ms = bkvd_cpu_ms(h), in_process_ms = handler_cpu_ms(f);
	if (h->recoveries == 0 || in_process_ms <= 0) {
		report("CPU: no ratio (no recoveries on one side)\n");
		return;
	}
	report("bkvd CPU per recovery / in-process handler CPU per recovery (crypto + token + "
	       "storage) = %.2f (goal <= 1.2)\n",
	       bkvd_ms / in_process_ms);
	report("      bkvd %.3f ms: user + system CPU of bkvd's worker processes over the HTTP "
	       "run / recoveries; the handlers plus the rest (HTTP, TLS, JWT, protobuf, "
	       "request and audit logging)\n",
	       bkvd_ms);
	report("      in-process %.3f ms%s: the floor thread's CPU minus the client's OPAQUE "
	       "work / recoveries; OPAQUE server math, token (SoftHSM runs in-process), "
	       "storage, audit log, ticket sealing\n",
	       in_process_ms, floor_note);
	if (is_postgresql(b->config.storage))
		report("      PostgreSQL's server processes are counted on neither side (only "
		       "libpq's share)\n");
	else if (strncmp(fs_name(b->config.storage), "tmpfs", 5) != 0)
		report(
		    "      on a disk the floor commits each write alone (its fsync's CPU counted "
		    "here) where bkvd's writes share commits, so the ratio reads lower than "
		    "with the database on tmpfs, where a commit costs no fsync on either side\n");
	const double per_bkvd = 1e3 / bkvd_ms, per_handler = 1e3 / in_process_ms;
	report("per CPU-second: %.0f recoveries per bkvd CPU-second over HTTPS vs %.0f per "
	       "handler CPU-second in-process (%.2f of it; 1 / the ratio above)\n",
	       per_bkvd, per_handler, per_bkvd / per_handler);
	const double lg = (double)h->self_cpu_ns / 1e9;
	report("      this host over the HTTP run: bkvd used %.2f of %.1f CPU-s, the load "
	       "generator %.2f (%.0f %%); with all %u CPUs to itself bkvd could serve at most "
	       "%.0f recoveries/s (a CPU bound only: fsync waits and lock contention lower "
	       "it)\n",
	       h->worker_cpu_s, h->seconds * b->ncpu, lg,
	       h->seconds > 0 ? 100.0 * lg / (h->seconds * b->ncpu) : 0.0, b->ncpu,
	       per_bkvd * b->ncpu);
}

/* One machine-readable line per run; every key always present (0 when not measured). */
static void print_summary(const bench *b, const http_result *h, const floor_result *f)
{
	const size_t n = h->recoveries;
	const double floor_rate = f->seconds > 0 ? (double)f->recoveries / f->seconds : 0.0;
	printf("summary: mode=%s target_rate=%.1f rate=%.1f recoveries=%zu errors=%lu late=%lu "
	       "dropped=%lu conns=%u workers=%u seconds=%.2f p50_ms=%.3f p90_ms=%.3f "
	       "p99_ms=%.3f p999_ms=%.3f p99_p50=%.3f bkvd_cpu_ms=%.4f handler_cpu_ms=%.4f "
	       "cpu_ratio=%.3f floor_rate=%.1f\n",
	       h->paced_rate > 0 ? "paced" : "closed", h->paced_rate, http_rate(h), n, h->errors,
	       h->late, h->dropped, b->opt.connections, b->opt.workers, h->seconds,
	       percentile_ms(h->total, n, 50), percentile_ms(h->total, n, 90),
	       percentile_ms(h->total, n, 99), percentile_ms(h->total, n, 99.9), tail_ratio(h),
	       bkvd_cpu_ms(h), handler_cpu_ms(f), cpu_ratio(h, f), floor_rate);
}

int main(int argc, char **argv)
{
	static bench b;
	b.opt = (options){.accounts = DEFAULT_ACCOUNTS,
	                  .connections = DEFAULT_CONNECTIONS,
	                  .seconds = DEFAULT_SECONDS};
	const int parsed = parse_options(argc, argv, &b.opt);
	if (parsed != 0)
		return parsed == 1 ? 0 : 2;
	g_quiet = b.opt.quiet;
	const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	b.ncpu = ncpu > 0 ? (unsigned)ncpu : 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fail("cannot initialize libsodium or libcurl");
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_fatal_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 1;
	http_result http = {0}, paced = {0};
	floor_result floor_r = {0}, no_floor = {0};
	if (!locate_bkvd(&b) || !prepare_vault(&b) || !make_accounts(&b))
		goto done;
	if (!start_server(&b))
		goto done;
	double reg_seconds = 0;
	if (!register_all(&b, &reg_seconds)) {
		fail("registration failed; bkvd's log is %s", b.log_path);
		goto done;
	}
	print_header(&b);
	report("  registered %u accounts in %.2f s (untimed); each connection owns 1/%u of "
	       "them\n",
	       b.opt.accounts, reg_seconds, b.opt.connections);
	if (b.opt.paced_rate > 0)
		report(
		    "  paced: one unbroken HTTP run, then the in-process floor (not interleaved: "
		    "a schedule must not pause)\n\n");
	else
		report(
		    "  HTTP and in-process floor alternate in %.1f s slices, so both see the same "
		    "host\n\n",
		    SLICE_S);
	if (b.opt.half_peak)
		report("== the peak: closed loop\n");
	bool measured = run_measurement(&b, b.opt.paced_rate, true, &http, &floor_r);
	double half = 0;
	if (measured && b.opt.half_peak) {
		half = http_rate(&http) / 2;
		if (!(half >= MIN_PACED_RATE)) {
			fail("the closed-loop run measured no rate to halve");
			measured = false;
		}
	}
	if (measured && b.opt.half_peak) {
		print_http(&b, &http);
		print_floor(&b, &floor_r);
		print_cpu(&b, &http, &floor_r, "");
		report("\n== half of the peak, paced: %.0f recoveries/s scheduled (open loop, %.1f "
		       "s)\n",
		       half, b.opt.seconds);
		measured = run_measurement(&b, half, false, &paced, &no_floor);
	}
	const unsigned restarts = count_restarts(b.log_path);
	stop_server();
	if (!measured)
		goto done;
	if (b.opt.half_peak) {
		print_http(&b, &paced);
		print_cpu(&b, &paced, &floor_r, " (the closed-loop run's floor)");
	} else {
		print_http(&b, &http);
		print_floor(&b, &floor_r);
		print_cpu(&b, &http, &floor_r, "");
	}
	if (restarts > 0)
		report("bkvd restarted a worker %u time%s during the run (see %s)\n", restarts,
		       restarts == 1 ? "" : "s", b.log_path);
	char commits[1024];
	if (log_line(b.log_path, "commits carried", commits, sizeof(commits)))
		report("bkvd's group commit over its whole run (registration included): %s\n",
		       commits);
	if (b.opt.half_peak) {
		const size_t n = paced.recoveries;
		report(
		    "\nhalf-peak: peak %.0f recoveries/s (closed loop); paced at %.0f/s, achieved "
		    "%.0f/s: p50 %.1f ms  p99 %.1f ms  p99.9 %.1f ms\n",
		    http_rate(&http), half, http_rate(&paced), percentile_ms(paced.total, n, 50),
		    percentile_ms(paced.total, n, 99), percentile_ms(paced.total, n, 99.9));
		report("p99/p50 = %.2f (goal <= 3)\n", tail_ratio(&paced));
	}
	print_summary(&b, &http, &floor_r);
	if (b.opt.half_peak) {
		print_summary(&b, &paced, &floor_r);
		printf("summary: mode=half-peak peak_rate=%.1f target_rate=%.1f rate=%.1f "
		       "p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f p99_p50=%.3f\n",
		       http_rate(&http), half, http_rate(&paced),
		       percentile_ms(paced.total, paced.recoveries, 50),
		       percentile_ms(paced.total, paced.recoveries, 99),
		       percentile_ms(paced.total, paced.recoveries, 99.9), tail_ratio(&paced));
	}
	rc = 0;
done:
	stop_server();
	http_result_free(&http);
	http_result_free(&paced);
	free_accounts(&b);
	curl_global_cleanup();
	return rc;
}
