/*
 * test_vault_http.c - integration test of bkvd over HTTPS (cmocka). A development vault from
 * scripts/dev-vault (SoftHSM2, self-signed TLS, SQLite) runs as `bkvd serve --listen
 * 127.0.0.1:0 --workers 2`; the test drives it through libbkv for both suites (register,
 * recover, change password, the countdown to destruction, delete, status, restarts, bad
 * tokens, vault down, TLS verification and pinning; the record lifecycle: create-only and
 * compare-and-set registration, per-account record versions, tombstones, tickets of an
 * earlier registration, records refused with data_loss), with raw libcurl requests that must
 * get their Connect error and change nothing (malformed bodies, bad points, limits, routing,
 * headers, auth; /healthz, /metrics), with 16 concurrent guessers, and with SIGKILLed
 * workers and master.
 *
 *   tests/with-vault test-vault-http BKVD DEV_VAULT_SCRIPT
 *
 * with-vault exports BKV_TEST_DIR and removes it (and any bkvd left running from it)
 * afterwards; without it the test makes and removes its own directory. The test is a child
 * subreaper, so workers orphaned by a killed master are waited for, and an exit handler
 * kills whatever is left.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "bkv.h"
#include "testblock.h"
#include "testhttp.h"
#include "testproc.h"
#include "bkv/v1/vault.pb-c.h"
#include "opaque/opaque.h"

extern char **environ;

/* ------------------------------------------------------------------------------------ */
/* Settings                                                                              */
/* ------------------------------------------------------------------------------------ */

#define WORKERS           2
#define CLIENT_TIMEOUT_MS 15000L
#define START_TIMEOUT_MS  15000
#define STOP_TIMEOUT_MS   15000
#define ORPHAN_TIMEOUT_MS 8000
#define MAX_SECRETS       256
#define MAX_PIDS          64
#define GUESSERS          16
#define BURST_LIMIT       10u
#define DEFAULT_LIMIT     10u
#define READ_TIMEOUT_S    2 /* [limits] read_timeout of the test vault */
#define MAX_BODY          (64 * 1024)

static const char PASSWORD[] = "correct horse battery staple";
static const char WRONG_PASSWORD[] = "correct horse battery stapler";
static const char NEW_PASSWORD[] = "Tr0ub4dor&3 and a bit more";
static const char CONTEXT[] = "bkv-v1";

/* Test states (prestate) for the tests that run once per suite. */
static bkv_suite suite_p256 = BKV_SUITE_P256_SHA256;
static bkv_suite suite_r255 = BKV_SUITE_RISTRETTO255_SHA512;

typedef struct vault_env {
	const char *bkvd;
	const char *dev_vault;
	char dir[PATH_MAX];
	bool own_dir;
	char vault_dir[PATH_MAX];
	char conf[PATH_MAX];
	char ca[PATH_MAX];
	char other_cert[PATH_MAX];
	char port_file[PATH_MAX];
	char metrics_port_file[PATH_MAX];
	char serve_log[PATH_MAX];
	char request_log[PATH_MAX];
	char audit_log[PATH_MAX];
	uint8_t log_key[32];
	pid_t master;
	unsigned workers; /* --workers of the running vault: WORKERS unless a test changed it */
	unsigned port;
	char url[64];
	char metrics_url[64]; /* the plain-HTTP metrics listener (--metrics-listen) */
} vault_env;

static vault_env env;
static volatile sig_atomic_t master_for_signal; /* what a fatal signal kills */
static double test_started_ms;

/* Strings that must never appear in a log: every bearer token the test used. */
static char *secrets[MAX_SECRETS];
static size_t nsecrets;
/* Account ids (the logs hold only a keyed hash) and their cached tokens. */
static struct {
	char *account;
	char *token;
} tokens[MAX_SECRETS];
static size_t ntokens;

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                         */
/* ------------------------------------------------------------------------------------ */

static void remember_secret(const char *s)
{
	if (nsecrets < MAX_SECRETS)
		secrets[nsecrets++] = strdup(s);
}

/* Runs argv[0] (PATH lookup) with stdin from /dev/null and stdout captured into out
 * (NUL-terminated, newlines kept). Returns the wait status, or -1. */
static int run_capture(char *const argv[], char *out, size_t cap)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		return -1;
	}
	size_t len = 0;
	for (;;) {
		char sink[512];
		char *dst = len + 1 < cap ? out + len : sink;
		size_t room = len + 1 < cap ? cap - len - 1 : sizeof(sink);
		ssize_t n = read(fds[0], dst, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (dst != sink)
			len += (size_t)n;
	}
	close(fds[0]);
	if (cap > 0)
		out[len] = '\0';
	return wait_child(pid);
}

/* ------------------------------------------------------------------------------------ */
/* Processes                                                                             */
/* ------------------------------------------------------------------------------------ */

static bool pid_gone(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return true;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	const char *rp = strrchr(buf, ')');
	char state = 'R';
	return rp != NULL && sscanf(rp + 1, " %c", &state) == 1 && state == 'Z';
}

/* Waits (reaping it if it is ours, e.g. an orphan handed to this subreaper) until pid has
 * exited, up to timeout_ms. */
static bool wait_gone(pid_t pid, int timeout_ms)
{
	const double deadline = now_ms() + timeout_ms;
	do {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD && pid_gone(pid)))
			return true;
		sleep_ms(10);
	} while (now_ms() < deadline);
	return false;
}

/* SIGKILL and reap every child of this process still around. */
static void kill_all_children(void)
{
	for (int round = 0; round < 20; round++) {
		pid_t kids[MAX_PIDS];
		size_t n = tp_bkvd_workers(getpid(), kids, MAX_PIDS);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++)
			kill(kids[i], SIGKILL);
		for (size_t i = 0; i < n; i++)
			wait_gone(kids[i], 2000);
	}
}

/* ------------------------------------------------------------------------------------ */
/* Raw HTTP with libcurl                                                                 */
/* ------------------------------------------------------------------------------------ */

static bool http_request(const char *verb, const char *path, const char *const *headers,
                         const void *body, size_t len, http_reply *r)
{
	return tu_http_request(env.ca, env.url, CLIENT_TIMEOUT_MS, verb, path, headers, body, len,
	                       r);
}

/* POST /bkv.v1.BackupKeyVault/<method>. authorization is the whole header value (or NULL
 * for none); content_type and version NULL leave those headers out. */
static void rpc_raw(const char *method, const char *authorization, const char *content_type,
                    const char *version, const void *body, size_t len, http_reply *r)
{
	char path[256], ct[256], ver[256], *auth = NULL;
	const char *headers[4];
	size_t n = 0;
	snprintf(path, sizeof(path), "/bkv.v1.BackupKeyVault/%s", method);
	if (content_type != NULL) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		headers[n++] = ct;
	}
	if (version != NULL) {
		snprintf(ver, sizeof(ver), "Connect-Protocol-Version: %s", version);
		headers[n++] = ver;
	}
	if (authorization != NULL) {
		if (asprintf(&auth, "Authorization: %s", authorization) < 0)
			fail_msg("out of memory");
		headers[n++] = auth;
	}
	headers[n] = NULL;
	bool ok = http_request("POST", path, headers, body, len, r);
	free(auth);
	if (!ok)
		fail_msg("POST %s: no HTTP answer: %s", path, r->error);
}

static char *bearer(const char *token)
{
	char *s = NULL;
	if (asprintf(&s, "Bearer %s", token) < 0)
		fail_msg("out of memory");
	return s;
}

/* A Connect error: the HTTP status, application/json, and code (and message if given). */
static void check_connect_error(const http_reply *r, long http, const char *code,
                                const char *message)
{
	if (r->status != http)
		fail_msg("HTTP %ld, want %ld (body: %s)", r->status, http, r->body ? r->body : "");
	assert_string_equal(r->content_type, "application/json");
	json_error_t jerr;
	json_t *root = json_loadb(r->body, r->len, 0, &jerr);
	if (root == NULL)
		fail_msg("the error body is not JSON: %s", r->body);
	const char *got_code = json_string_value(json_object_get(root, "code"));
	const char *got_message = json_string_value(json_object_get(root, "message"));
	if (got_code == NULL || strcmp(got_code, code) != 0 ||
	    (message != NULL && (got_message == NULL || strcmp(got_message, message) != 0))) {
		char copy[512];
		snprintf(copy, sizeof(copy), "%s", r->body);
		json_decref(root);
		fail_msg("Connect error %s, want code \"%s\" message \"%s\"", copy, code,
		         message ? message : "(any)");
	}
	json_decref(root);
}

static bool healthz_ok(void)
{
	http_reply r;
	if (!http_request("GET", "/healthz", NULL, NULL, 0, &r))
		return false;
	const bool ok = r.status == 200 && r.body != NULL && strcmp(r.body, "ok\n") == 0;
	http_reply_free(&r);
	return ok;
}

/* ------------------------------------------------------------------------------------ */
/* Metrics                                                                               */
/* ------------------------------------------------------------------------------------ */

static char *metrics_text(void)
{
	http_reply r;
	if (!tu_http_request(env.ca, env.metrics_url, CLIENT_TIMEOUT_MS, "GET", "/metrics", NULL,
	                     NULL, 0, &r))
		fail_msg("GET /metrics failed: %s", r.error);
	if (r.status != 200)
		fail_msg("GET /metrics: HTTP %ld", r.status);
	if (strncmp(r.content_type, "text/plain", 10) != 0)
		fail_msg("GET /metrics: Content-Type %s", r.content_type);
	return r.body;
}

/* The value of the sample named exactly key (name{labels}); false if absent. */
static bool metric_find(const char *text, const char *key, double *value)
{
	const size_t klen = strlen(key);
	for (const char *line = text; line != NULL && *line != '\0';) {
		const char *eol = strchr(line, '\n');
		if (line[0] != '#' && strncmp(line, key, klen) == 0 && line[klen] == ' ') {
			*value = strtod(line + klen + 1, NULL);
			return true;
		}
		line = eol ? eol + 1 : NULL;
	}
	return false;
}

/* Counters only appear once they are non-zero: absent is 0. */
static double metric(const char *text, const char *key)
{
	double v = 0;
	return metric_find(text, key, &v) ? v : 0;
}

static double metric_required(const char *text, const char *key)
{
	double v = 0;
	if (!metric_find(text, key, &v))
		fail_msg("/metrics has no sample %s", key);
	return v;
}

/* The sum of every sample whose line starts with prefix. */
static double metric_sum(const char *text, const char *prefix)
{
	const size_t plen = strlen(prefix);
	double sum = 0;
	for (const char *line = text; line != NULL && *line != '\0';) {
		const char *eol = strchr(line, '\n');
		if (strncmp(line, prefix, plen) == 0) {
			const char *space =
			    memchr(line, ' ', eol ? (size_t)(eol - line) : strlen(line));
			if (space != NULL)
				sum += strtod(space + 1, NULL);
		}
		line = eol ? eol + 1 : NULL;
	}
	return sum;
}

static double current_metric(const char *key)
{
	char *text = metrics_text();
	double v = metric(text, key);
	free(text);
	return v;
}

/* A histogram's buckets are cumulative, +Inf equals _count, and _sum is plausible.
 * Returns _count. */
static double check_histogram(const char *text, const char *name, const char *label)
{
	char key[256], prefix[256];
	snprintf(key, sizeof(key), "%s_count{%s}", name, label);
	const double count = metric_required(text, key);
	snprintf(key, sizeof(key), "%s_sum{%s}", name, label);
	const double sum = metric_required(text, key);
	snprintf(key, sizeof(key), "%s_bucket{%s,le=\"+Inf\"}", name, label);
	const double inf = metric_required(text, key);
	if (inf != count)
		fail_msg("%s{%s}: +Inf bucket %g != count %g", name, label, inf, count);
	if (sum < 0 || sum > count * 30.0)
		fail_msg("%s{%s}: implausible sum %g s for %g samples", name, label, sum, count);
	snprintf(prefix, sizeof(prefix), "%s_bucket{%s,le=", name, label);
	const size_t plen = strlen(prefix);
	double previous = 0;
	int buckets = 0;
	for (const char *line = text; line != NULL && *line != '\0';) {
		const char *eol = strchr(line, '\n');
		if (strncmp(line, prefix, plen) == 0) {
			const char *space = strchr(line, ' ');
			const double v = strtod(space + 1, NULL);
			if (v < previous)
				fail_msg("%s{%s}: buckets not cumulative", name, label);
			previous = v;
			buckets++;
		}
		line = eol ? eol + 1 : NULL;
	}
	if (buckets < 2)
		fail_msg("%s{%s}: %d buckets", name, label, buckets);
	return count;
}

/* ------------------------------------------------------------------------------------ */
/* The vault: setup, start, stop                                                         */
/* ------------------------------------------------------------------------------------ */

static bool read_port(const char *port_file, unsigned *port)
{
	char *text = slurp(port_file, NULL);
	bool ok = false;
	if (text != NULL && strchr(text, '\n') != NULL) {
		unsigned long p = strtoul(text, NULL, 10);
		if (p > 0 && p < 65536) {
			*port = (unsigned)p;
			ok = true;
		}
	}
	free(text);
	return ok;
}

/* Reaps the master if it has exited (status in *status). */
static bool master_exited(int *status)
{
	if (env.master <= 0)
		return true;
	int st = 0;
	pid_t r = waitpid(env.master, &st, WNOHANG);
	if (r == env.master || (r < 0 && errno == ECHILD)) {
		if (status != NULL)
			*status = st;
		env.master = 0;
		master_for_signal = 0;
		return true;
	}
	return false;
}

static bool vault_start(void)
{
	unlink(env.port_file);
	unlink(env.metrics_port_file);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, env.serve_log,
	                                 O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
	if (env.workers == 0)
		env.workers = WORKERS;
	char workers[16];
	snprintf(workers, sizeof(workers), "%u", env.workers);
	char *argv[] = {(char *)env.bkvd,
	                "serve",
	                "--config",
	                env.conf,
	                "--listen",
	                "127.0.0.1:0",
	                "--workers",
	                workers,
	                "--port-file",
	                env.port_file,
	                "--metrics-listen",
	                "127.0.0.1:0",
	                "--metrics-port-file",
	                env.metrics_port_file,
	                NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, env.bkvd, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		fprintf(stderr, "cannot start %s: %s\n", env.bkvd, strerror(rc));
		return false;
	}
	env.master = pid;
	master_for_signal = pid;
	const double deadline = now_ms() + START_TIMEOUT_MS;
	bool have_port = false;
	unsigned metrics_port = 0;
	while (!(have_port = read_port(env.port_file, &env.port) &&
	                     read_port(env.metrics_port_file, &metrics_port)) &&
	       now_ms() < deadline) {
		if (master_exited(NULL))
			break;
		sleep_ms(10);
	}
	if (!have_port) {
		fprintf(stderr, "bkvd did not write its port\n");
		print_log_tail(env.serve_log);
		return false;
	}
	snprintf(env.url, sizeof(env.url), "https://127.0.0.1:%u", env.port);
	snprintf(env.metrics_url, sizeof(env.metrics_url), "http://127.0.0.1:%u", metrics_port);
	/* Ready: both workers forked and one of them answering. */
	while (now_ms() < deadline) {
		pid_t kids[MAX_PIDS];
		if (master_exited(NULL))
			break;
		if (tp_bkvd_workers(env.master, kids, MAX_PIDS) == env.workers && healthz_ok())
			return true;
		sleep_ms(20);
	}
	fprintf(stderr, "bkvd did not become ready\n");
	print_log_tail(env.serve_log);
	return false;
}

/* Stops the master with sig and waits for it; SIGKILLs it (and its workers) if it does not
 * stop in time. *status gets the master's wait status. */
static bool vault_stop(int sig, int *status)
{
	if (env.master <= 0)
		return true;
	pid_t workers[MAX_PIDS];
	const size_t nworkers = tp_bkvd_workers(env.master, workers, MAX_PIDS);
	kill(env.master, sig);
	const double deadline = now_ms() + STOP_TIMEOUT_MS;
	int st = 0;
	while (!master_exited(&st) && now_ms() < deadline)
		sleep_ms(10);
	bool ok = true;
	if (env.master > 0) {
		fprintf(stderr, "bkvd did not stop within %d ms: SIGKILL\n", STOP_TIMEOUT_MS);
		kill(env.master, SIGKILL);
		for (size_t i = 0; i < nworkers; i++)
			kill(workers[i], SIGKILL);
		st = wait_child(env.master);
		env.master = 0;
		master_for_signal = 0;
		ok = false;
	}
	if (status != NULL)
		*status = st;
	return ok;
}

static PGconn *reads_held; /* test_a_waiting_database_read_stalls_no_worker's lock */

/* Per-test setup: the vault is up, with WORKERS workers and no lock of a test on its
 * database (a failed test may have left it otherwise). */
static int ensure_vault(void **state)
{
	(void)state;
	test_started_ms = now_ms();
	if (reads_held != NULL) {
		PQfinish(reads_held); /* the server ends its transaction, and the lock */
		reads_held = NULL;
	}
	if (env.master > 0 && env.workers == WORKERS && !master_exited(NULL) && healthz_ok())
		return 0;
	env.workers = WORKERS;
	vault_stop(SIGKILL, NULL);
	return vault_start() ? 0 : -1;
}

static int report_time(void **state)
{
	(void)state;
	print_message("    (%.2f s)\n", (now_ms() - test_started_ms) / 1000.0);
	return 0;
}

static void on_fatal_signal(int sig)
{
	const pid_t m = (pid_t)master_for_signal;
	if (m > 0)
		kill(m, SIGKILL); /* its workers get SIGTERM (PR_SET_PDEATHSIG) */
	_exit(128 + sig);
}

static void cleanup_at_exit(void)
{
	if (env.master > 0) {
		kill(env.master, SIGKILL);
		wait_child(env.master);
		env.master = 0;
		master_for_signal = 0;
	}
	kill_all_children();
	if (env.own_dir && env.dir[0] != '\0')
		nftw(env.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	for (size_t i = 0; i < nsecrets; i++)
		free(secrets[i]);
	for (size_t i = 0; i < ntokens; i++) {
		free(tokens[i].account);
		free(tokens[i].token);
	}
	nsecrets = ntokens = 0;
}

static int group_setup(void **state)
{
	(void)state;
	const char *base = getenv("BKV_TEST_DIR");
	if (base != NULL && base[0] != '\0') {
		snprintf(env.dir, sizeof(env.dir), "%s", base);
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(env.dir, sizeof(env.dir), "%s/bkv-vault-http.XXXXXX", tmp ? tmp : "/tmp");
		if (mkdtemp(env.dir) == NULL) {
			perror("mkdtemp");
			return -1;
		}
		env.own_dir = true;
	}
	path_join(env.vault_dir, env.dir, "vault");
	path_join(env.port_file, env.dir, "port");
	path_join(env.metrics_port_file, env.dir, "metrics-port");
	path_join(env.serve_log, env.dir, "bkvd-serve.log");
	path_join(env.other_cert, env.dir, "other-cert.pem");

	/* scripts/dev-vault: token, TLS certificate, bkvd.conf and the key ceremony. */
	char out[PATH_MAX];
	char *dv_argv[] = {(char *)env.dev_vault, env.vault_dir, NULL};
	int st = run_capture(dv_argv, out, sizeof(out));
	if (st != 0) {
		fprintf(stderr, "%s %s failed (status %d)\n", env.dev_vault, env.vault_dir, st);
		return -1;
	}
	chomp(out);
	memcpy(env.conf, out, sizeof(env.conf));
	path_join(env.ca, env.vault_dir, "tls/cert.pem");
	path_join(env.request_log, env.vault_dir, "requests.log");
	path_join(env.audit_log, env.vault_dir, "audit.log");
	char hsm_conf[PATH_MAX], log_key[PATH_MAX];
	path_join(hsm_conf, env.vault_dir, "hsm/softhsm2.conf");
	path_join(log_key, env.vault_dir, "log.key");
	setenv("SOFTHSM2_CONF", hsm_conf, 1);
	size_t key_len = 0;
	char *key = slurp(log_key, &key_len);
	if (key == NULL || key_len != sizeof(env.log_key)) {
		fprintf(stderr, "cannot read %s\n", log_key);
		free(key);
		return -1;
	}
	memcpy(env.log_key, key, sizeof(env.log_key));
	free(key);

	/* Another self-signed certificate, for the pinning test. */
	char keyout[PATH_MAX];
	path_join(keyout, env.dir, "other-key.pem");
	char *ossl_argv[] = {"openssl",
	                     "req",
	                     "-x509",
	                     "-newkey",
	                     "ec",
	                     "-pkeyopt",
	                     "ec_paramgen_curve:P-256",
	                     "-nodes",
	                     "-days",
	                     "1",
	                     "-subj",
	                     "/CN=not the vault",
	                     "-addext",
	                     "subjectAltName=IP:127.0.0.1",
	                     "-keyout",
	                     keyout,
	                     "-out",
	                     env.other_cert,
	                     NULL};
	char sink[64];
	if (run_capture(ossl_argv, sink, sizeof(sink)) != 0) {
		fprintf(stderr, "openssl req failed\n");
		return -1;
	}
	/* A short request deadline, for test_a_client_gone_while_its_attempt_commits. */
	FILE *conf = fopen(env.conf, "a");
	if (conf == NULL || fprintf(conf, "\n[limits]\nread_timeout = %d\n", READ_TIMEOUT_S) < 0 ||
	    fclose(conf) != 0) {
		fprintf(stderr, "cannot append [limits] to %s\n", env.conf);
		return -1;
	}
	return vault_start() ? 0 : -1;
}

/* True if bkvd's stderr holds an AddressSanitizer/UBSan/LeakSanitizer report (a build
 * with -DBKV_SANITIZE=ON), which is then shown. */
static bool serve_log_has_sanitizer_report(void)
{
	char *text = slurp(env.serve_log, NULL);
	const bool found = text != NULL && (strstr(text, "Sanitizer") != NULL ||
	                                    strstr(text, "runtime error:") != NULL);
	free(text);
	if (found)
		print_log_tail(env.serve_log);
	return found;
}

static int group_teardown(void **state)
{
	(void)state;
	int status = 0;
	bool ok = vault_stop(SIGTERM, &status);
	if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bkvd did not stop cleanly (status %d)\n", status);
		ok = false;
	}
	if (serve_log_has_sanitizer_report()) {
		fprintf(stderr, "bkvd reported sanitizer findings\n");
		ok = false;
	}
	/* Every request, refused or not, ended the write it announced (handlers.h): else the
	 * committer would hold commits for writes that never come. */
	char *log = slurp(env.serve_log, NULL);
	if (log == NULL || strstr(log, "announced writes were still open") != NULL) {
		fprintf(stderr, "bkvd's workers left announced writes open (or no log)\n");
		ok = false;
	}
	free(log);
	return ok ? 0 : -1;
}

/* ------------------------------------------------------------------------------------ */
/* Accounts, tokens and libbkv                                                           */
/* ------------------------------------------------------------------------------------ */

/* `bkvd dev-token [--lifetime=...] ACCOUNT`; the token is remembered as a secret. */
static char *mint_token(const char *account, const char *lifetime_option)
{
	char out[4096];
	char *argv[7];
	size_t n = 0;
	argv[n++] = (char *)env.bkvd;
	argv[n++] = "dev-token";
	argv[n++] = "--config";
	argv[n++] = env.conf;
	if (lifetime_option != NULL)
		argv[n++] = (char *)lifetime_option;
	argv[n++] = (char *)account;
	argv[n] = NULL;
	int st = run_capture(argv, out, sizeof(out));
	chomp(out);
	if (st != 0 || strlen(out) < 20)
		fail_msg("bkvd dev-token %s failed (status %d)", account, st);
	remember_secret(out);
	return strdup(out);
}

/* A one-hour token for account, minted once. */
static const char *token_for(const char *account)
{
	for (size_t i = 0; i < ntokens; i++) {
		if (strcmp(tokens[i].account, account) == 0)
			return tokens[i].token;
	}
	if (ntokens == MAX_SECRETS)
		fail_msg("too many accounts");
	tokens[ntokens].token = mint_token(account, NULL);
	tokens[ntokens].account = strdup(account);
	return tokens[ntokens++].token;
}

static const char *suite_tag(bkv_suite suite)
{
	return suite == BKV_SUITE_P256_SHA256 ? "p256" : "r255";
}

static void account_name(char *out, size_t cap, const char *what, bkv_suite suite)
{
	snprintf(out, cap, "http-%s-%s", what, suite_tag(suite));
}

static bkv_client *make_client(bkv_suite suite, bool cheap, const char *ca, const char *pinned,
                               const char *url)
{
	bkv_client_config cfg = {
	    .vault_url = url ? url : env.url,
	    .ca_file = ca,
	    .pinned_cert = pinned,
	    .timeout_ms = CLIENT_TIMEOUT_MS,
	    .suite = suite,
	};
	if (cheap) {
		cfg.argon2_iterations = 1;
		cfg.argon2_memory_kib = 1024;
		cfg.argon2_parallelism = 1;
	}
	bkv_client *c = NULL;
	bkv_error err = {0};
	bkv_status st = bkv_client_new(&cfg, &c, &err);
	if (st != BKV_OK)
		fail_msg("bkv_client_new: %s: %s", bkv_status_name(st), err.message);
	return c;
}

static bkv_client *cheap_client(bkv_suite suite)
{
	return make_client(suite, true, env.ca, NULL, NULL);
}

#define EXPECT_STATUS(call, want, err)                                                             \
	do {                                                                                       \
		const bkv_status got_ = (call);                                                    \
		if (got_ != (want))                                                                \
			fail_msg("%s: got %s (%s), want %s", #call, bkv_status_name(got_),         \
			         (err).message, bkv_status_name(want));                            \
	} while (0)

static void do_register(bkv_client *c, const char *token, const char *password, const bkv_key *key,
                        uint32_t limit)
{
	bkv_error err = {0};
	EXPECT_STATUS(bkv_register(c, token, password, strlen(password), key, limit, &err), BKV_OK,
	              err);
}

static void expect_recover(bkv_client *c, const char *token, const char *password,
                           const bkv_key *want)
{
	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(bkv_recover(c, token, password, strlen(password), &got, &info, &err), BKV_OK,
	              err);
	assert_memory_equal(got.bytes, want->bytes, BKV_KEY_BYTES);
	bkv_key_wipe(&got);
}

static bkv_account_status get_status(bkv_client *c, const char *token)
{
	bkv_account_status s;
	bkv_error err = {0};
	EXPECT_STATUS(bkv_status_get(c, token, &s, &err), BKV_OK, err);
	return s;
}

static void assert_same_status(const bkv_account_status *a, const bkv_account_status *b)
{
	if (a->registered != b->registered || a->suite != b->suite ||
	    a->attempts_used != b->attempts_used || a->attempt_limit != b->attempt_limit ||
	    a->record_version != b->record_version ||
	    a->registered_at_unix != b->registered_at_unix || a->state != b->state ||
	    a->destroyed_at_unix != b->destroyed_at_unix)
		fail_msg("account status changed: registered %d->%d state %d->%d suite %d->%d used "
		         "%u->%u limit %u->%u version %llu->%llu destroyed_at %lld->%lld",
		         a->registered, b->registered, a->state, b->state, a->suite, b->suite,
		         a->attempts_used, b->attempts_used, a->attempt_limit, b->attempt_limit,
		         (unsigned long long)a->record_version,
		         (unsigned long long)b->record_version, (long long)a->destroyed_at_unix,
		         (long long)b->destroyed_at_unix);
}

/* Registers key over the account's current record (live or destroyed) with
 * bkv_register_replacing; the new version is the old one + 1. Returns it. */
static uint64_t do_replace(bkv_client *c, const char *token, const char *password,
                           const bkv_key *key, uint32_t limit)
{
	const bkv_account_status s = get_status(c, token);
	if (s.state != BKV_RECORD_REGISTERED && s.state != BKV_RECORD_DESTROYED)
		fail_msg("nothing to replace (state %d)", s.state);
	bkv_error err = {0};
	uint64_t version = 0;
	EXPECT_STATUS(bkv_register_replacing(c, token, password, strlen(password), key, limit,
	                                     s.record_version, &version, &err),
	              BKV_OK, err);
	assert_int_equal(version, s.record_version + 1);
	return version;
}

/* Every recovery of a destroyed key: BKV_ERR_DESTROYED, attempts known (none left), and
 * a message that says destroyed, never "no key registered". */
static void expect_destroyed(bkv_client *c, const char *token, const char *password, uint32_t limit)
{
	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	memset(&info, 0xa5, sizeof(info));
	EXPECT_STATUS(bkv_recover(c, token, password, strlen(password), &got, &info, &err),
	              BKV_ERR_DESTROYED, err);
	assert_int_equal(err.status, BKV_ERR_DESTROYED);
	assert_true(info.destroyed);
	assert_true(info.attempts_known);
	assert_int_equal(info.attempts_remaining, 0);
	assert_int_equal(info.attempt_limit, limit);
	if (strstr(err.message, "destroyed") == NULL ||
	    strstr(err.message, "cannot be recovered") == NULL ||
	    strstr(err.message, "no key") != NULL)
		fail_msg("a destroyed key's message: \"%s\"", err.message);
}

/* hex(BLAKE2b-128 keyed with log.key) of the account id, as the vault logs it. */
static void account_hash(const char *account, char out[33])
{
	uint8_t digest[16];
	crypto_generichash(digest, sizeof(digest), (const uint8_t *)account, strlen(account),
	                   env.log_key, sizeof(env.log_key));
	sodium_bin2hex(out, 33, digest, sizeof(digest));
}

typedef struct audit_counts {
	unsigned attempt_used;
	unsigned destroyed;
	unsigned registered;
	unsigned recovered;
	unsigned used_value[64]; /* how often each attempts_used value was logged */
} audit_counts;

/* The audit events for account from byte offset `from` of audit.log on. */
/* Calls each(line, arg) for every whole line of the JSON-lines file path from byte offset
 * from on (a last line without its newline is still being written, and skipped); a line
 * that is not JSON fails the test. */
static void each_json_line(const char *path, long from, void (*each)(json_t *line, void *arg),
                           void *arg)
{
	size_t len = 0;
	char *text = slurp(path, &len);
	if (text == NULL)
		fail_msg("cannot read %s", path);
	char *line = text + (from < (long)len ? from : (long)len);
	for (char *eol; (eol = strchr(line, '\n')) != NULL; line = eol + 1) {
		*eol = '\0';
		json_t *j = json_loads(line, 0, NULL);
		if (j == NULL)
			fail_msg("%s: a line is not JSON: %s", path, line);
		each(j, arg);
		json_decref(j);
	}
	free(text);
}

typedef struct audit_scan_arg {
	const char *hash;
	audit_counts *counts;
} audit_scan_arg;

static void count_audit_event(json_t *j, void *arg)
{
	const audit_scan_arg *a = arg;
	audit_counts *c = a->counts;
	const char *event = json_string_value(json_object_get(j, "event"));
	const char *acct = json_string_value(json_object_get(j, "account"));
	if (event == NULL || acct == NULL || strcmp(acct, a->hash) != 0)
		return;
	if (strcmp(event, "attempt_used") == 0) {
		c->attempt_used++;
		json_int_t used = json_integer_value(json_object_get(j, "attempts_used"));
		if (used >= 0 && used < 64)
			c->used_value[used]++;
	} else if (strcmp(event, "destroyed") == 0) {
		c->destroyed++;
	} else if (strcmp(event, "registered") == 0) {
		c->registered++;
	} else if (strcmp(event, "recovered") == 0) {
		c->recovered++;
	}
}

static audit_counts audit_scan(const char *account, long from)
{
	audit_counts c;
	memset(&c, 0, sizeof(c));
	char hash[33];
	account_hash(account, hash);
	audit_scan_arg a = {hash, &c};
	each_json_line(env.audit_log, from, count_audit_event, &a);
	return c;
}

/* A real KE1 for suite (the client's first login message). */
static size_t make_ke1(bkv_suite suite, uint8_t ke1[OPAQUE_MAX_KE1_BYTES])
{
	const opaque_suite_id id = (opaque_suite_id)suite;
	const opaque_config cfg = {
	    id, (const uint8_t *)CONTEXT, sizeof(CONTEXT) - 1, {OPAQUE_KSF_IDENTITY, 0, 0, 0}};
	const size_t len = opaque_suite_sizes(id)->ke1;
	opaque_client_login_state st;
	assert_int_equal(opaque_client_login_start(&cfg, (const uint8_t *)PASSWORD,
	                                           sizeof(PASSWORD) - 1, &st, ke1, len),
	                 OPAQUE_OK);
	opaque_client_login_state_wipe(&st);
	return len;
}

/* A packed RecoverStartRequest; *len gets its size. malloc'd. */
static uint8_t *pack_recover_start(uint32_t suite, const uint8_t *ke1, size_t ke1_len, size_t *len)
{
	Bkv__V1__RecoverStartRequest req = BKV__V1__RECOVER_START_REQUEST__INIT;
	req.suite = (Bkv__V1__Suite)suite;
	req.ke1 = (ProtobufCBinaryData){ke1_len, (uint8_t *)ke1};
	*len = bkv__v1__recover_start_request__get_packed_size(&req);
	uint8_t *buf = malloc(*len);
	assert_non_null(buf);
	assert_int_equal(bkv__v1__recover_start_request__pack(&req, buf), *len);
	return buf;
}

/* ------------------------------------------------------------------------------------ */
/* libbkv: both suites                                                                   */
/* ------------------------------------------------------------------------------------ */

static void test_register_recover(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "register", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key key;
	assert_int_equal(bkv_key_generate(&key), BKV_OK);
	do_register(c, token, PASSWORD, &key, 0);
	expect_recover(c, token, PASSWORD, &key);
	/* Twice: a success resets the counter and leaves the record in place. */
	expect_recover(c, token, PASSWORD, &key);
	bkv_account_status s = get_status(c, token);
	assert_true(s.registered);
	assert_int_equal(s.suite, suite);
	assert_int_equal(s.attempts_used, 0);
	assert_int_equal(s.attempt_limit, DEFAULT_LIMIT);
	assert_int_equal(s.state, BKV_RECORD_REGISTERED);
	assert_int_equal(s.record_version, 1); /* versions count per account */
	assert_int_equal(s.destroyed_at_unix, 0);
	bkv_client_free(c);
}

static void test_change_password(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "change", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 0);
	const bkv_account_status before = get_status(c, token);

	bkv_error err = {0};
	bkv_recover_info info;
	EXPECT_STATUS(bkv_change_password(c, token, PASSWORD, strlen(PASSWORD), NEW_PASSWORD,
	                                  strlen(NEW_PASSWORD), &info, &err),
	              BKV_OK, err);
	const bkv_account_status after = get_status(c, token);
	assert_true(after.registered);
	assert_int_equal(after.record_version, before.record_version + 1);
	assert_int_equal(after.attempts_used, 0);

	/* The old password no longer opens it (one attempt used), the new one does. */
	bkv_key got;
	EXPECT_STATUS(bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err),
	              BKV_ERR_WRONG_PASSWORD, err);
	assert_true(info.attempts_known);
	assert_int_equal(info.attempts_remaining, DEFAULT_LIMIT - 1);
	expect_recover(c, token, NEW_PASSWORD, &key);

	/* A wrong old password changes nothing. */
	EXPECT_STATUS(bkv_change_password(c, token, WRONG_PASSWORD, strlen(WRONG_PASSWORD),
	                                  PASSWORD, strlen(PASSWORD), &info, &err),
	              BKV_ERR_WRONG_PASSWORD, err);
	expect_recover(c, token, NEW_PASSWORD, &key);
	assert_int_equal(get_status(c, token).record_version, after.record_version);
	bkv_client_free(c);
}

/* A password change must not quietly reset a limit the integrator chose. */
static void test_change_password_keeps_limit(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "change-limit", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 3);
	assert_int_equal(get_status(c, token).attempt_limit, 3);
	bkv_error err = {0};
	bkv_recover_info info;
	EXPECT_STATUS(bkv_change_password(c, token, PASSWORD, strlen(PASSWORD), NEW_PASSWORD,
	                                  strlen(NEW_PASSWORD), &info, &err),
	              BKV_OK, err);
	const bkv_account_status s = get_status(c, token);
	bkv_client_free(c);
	if (s.attempt_limit != 3)
		fail_msg("after bkv_change_password the attempt limit is %u, was 3",
		         s.attempt_limit);
}

static void expect_wrong(bkv_client *c, const char *token, uint32_t remaining, uint32_t limit)
{
	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(
	    bkv_recover(c, token, WRONG_PASSWORD, strlen(WRONG_PASSWORD), &got, &info, &err),
	    BKV_ERR_WRONG_PASSWORD, err);
	char want[BKV_MESSAGE_BYTES];
	snprintf(want, sizeof(want), "wrong password: %u attempt%s left", remaining,
	         remaining == 1 ? "" : "s");
	assert_string_equal(err.message, want);
	assert_int_equal(err.status, BKV_ERR_WRONG_PASSWORD);
	assert_true(info.attempts_known);
	assert_int_equal(info.attempts_remaining, remaining);
	assert_int_equal(info.attempt_limit, limit);
	assert_false(info.destroyed);
}

static void test_wrong_password_countdown(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "countdown", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key key;
	bkv_key_generate(&key);

	/* The default limit: "9 attempts left"; a success then resets the counter. */
	do_register(c, token, PASSWORD, &key, 0);
	expect_wrong(c, token, DEFAULT_LIMIT - 1, DEFAULT_LIMIT);
	assert_int_equal(get_status(c, token).attempts_used, 1);
	expect_recover(c, token, PASSWORD, &key);
	assert_int_equal(get_status(c, token).attempts_used, 0);

	/* Limit 3: 2 left, 1 left, destroyed. */
	do_replace(c, token, PASSWORD, &key, 3);
	expect_wrong(c, token, 2, 3);
	assert_int_equal(get_status(c, token).attempts_used, 1);
	expect_wrong(c, token, 1, 3);
	assert_int_equal(get_status(c, token).attempts_used, 2);

	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(
	    bkv_recover(c, token, WRONG_PASSWORD, strlen(WRONG_PASSWORD), &got, &info, &err),
	    BKV_ERR_DESTROYED, err);
	assert_int_equal(err.status, BKV_ERR_DESTROYED);
	assert_string_equal(err.message, "wrong password; no attempts left: the vault has "
	                                 "destroyed the backup key, and it cannot be recovered");
	assert_true(info.destroyed);
	assert_true(info.attempts_known);
	assert_int_equal(info.attempts_remaining, 0);
	assert_int_equal(info.attempt_limit, 3);

	/* Gone for good, whatever the password: destroyed, not "not registered". */
	const bkv_account_status s = get_status(c, token);
	assert_false(s.registered);
	assert_int_equal(s.state, BKV_RECORD_DESTROYED);
	expect_destroyed(c, token, PASSWORD, 3);
	expect_destroyed(c, token, WRONG_PASSWORD, 3);
	bkv_client_free(c);
}

static void test_delete(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "delete", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 0);
	bkv_error err = {0};
	bool deleted = false;
	EXPECT_STATUS(bkv_delete(c, token, &deleted, &err), BKV_OK, err);
	assert_true(deleted);
	assert_false(get_status(c, token).registered);
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err),
	              BKV_ERR_NOT_REGISTERED, err);
	EXPECT_STATUS(bkv_delete(c, token, &deleted, &err), BKV_OK, err);
	assert_false(deleted);
	const bkv_account_status gone = get_status(c, token);
	assert_int_equal(gone.state, BKV_RECORD_ABSENT);
	assert_int_equal(gone.record_version, 0);
	/* Registering again (create only) works after a delete, from version 1 again. */
	do_register(c, token, PASSWORD, &key, 0);
	expect_recover(c, token, PASSWORD, &key);
	assert_int_equal(get_status(c, token).record_version, 1);
	bkv_client_free(c);
}

static void test_status_fields(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "status", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_account_status s = get_status(c, token);
	assert_false(s.registered);
	assert_int_equal(s.state, BKV_RECORD_ABSENT);
	assert_int_equal(s.attempts_used, 0);
	assert_int_equal(s.attempt_limit, 0);
	assert_int_equal(s.record_version, 0);
	assert_int_equal(s.registered_at_unix, 0);
	assert_int_equal(s.destroyed_at_unix, 0);

	bkv_key key;
	bkv_key_generate(&key);
	const time_t t0 = time(NULL);
	do_register(c, token, PASSWORD, &key, 7);
	const time_t t1 = time(NULL);
	s = get_status(c, token);
	assert_true(s.registered);
	assert_int_equal(s.suite, suite);
	assert_int_equal(s.attempts_used, 0);
	assert_int_equal(s.attempt_limit, 7);
	assert_int_equal(s.record_version, 1);
	assert_int_equal(s.state, BKV_RECORD_REGISTERED);
	assert_in_range(s.registered_at_unix, t0 - 2, t1 + 2);

	expect_wrong(c, token, 6, 7);
	const bkv_account_status after_wrong = get_status(c, token);
	assert_int_equal(after_wrong.attempts_used, 1);
	assert_int_equal(after_wrong.record_version, s.record_version);

	/* Registering again over it: the next record version, a fresh counter. */
	do_replace(c, token, PASSWORD, &key, 0);
	const bkv_account_status again = get_status(c, token);
	assert_int_equal(again.record_version, s.record_version + 1);
	assert_int_equal(again.attempts_used, 0);
	assert_int_equal(again.attempt_limit, DEFAULT_LIMIT);

	/* Above the vault's maximum (20): refused, the record stays. */
	bkv_error err = {0};
	EXPECT_STATUS(bkv_register_replacing(c, token, PASSWORD, strlen(PASSWORD), &key, 21,
	                                     again.record_version, NULL, &err),
	              BKV_ERR_ARGUMENT, err);
	const bkv_account_status unchanged = get_status(c, token);
	assert_same_status(&again, &unchanged);
	bkv_client_free(c);
}

/* ------------------------------------------------------------------------------------ */
/* The record lifecycle: compare-and-set registration, per-account versions, tombstones  */
/* ------------------------------------------------------------------------------------ */

/* The cheap client's OPAQUE configuration, so raw requests derive what libbkv derives. */
static opaque_config cheap_config(bkv_suite suite)
{
	return (opaque_config){(opaque_suite_id)suite,
	                       (const uint8_t *)CONTEXT,
	                       sizeof(CONTEXT) - 1,
	                       {OPAQUE_KSF_ARGON2ID, 1, 1024, 1}};
}

/* The bkv.v1.AttemptInfo detail of a Connect error body; false if there is none. */
static bool error_attempt_info(const http_reply *r, uint32_t *remaining, uint32_t *limit)
{
	json_t *root = json_loadb(r->body, r->len, 0, NULL);
	json_t *details = json_object_get(root, "details");
	bool found = false;
	size_t i;
	json_t *d;
	json_array_foreach(details, i, d)
	{
		const char *type = json_string_value(json_object_get(d, "type"));
		const char *value = json_string_value(json_object_get(d, "value"));
		if (type == NULL || value == NULL || strcmp(type, "bkv.v1.AttemptInfo") != 0)
			continue;
		uint8_t raw[64];
		size_t raw_len = 0;
		if (sodium_base642bin(raw, sizeof(raw), value, strlen(value), NULL, &raw_len, NULL,
		                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 &&
		    sodium_base642bin(raw, sizeof(raw), value, strlen(value), NULL, &raw_len, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0)
			continue;
		Bkv__V1__AttemptInfo *info = bkv__v1__attempt_info__unpack(NULL, raw_len, raw);
		if (info != NULL) {
			*remaining = info->attempts_remaining;
			*limit = info->attempt_limit;
			bkv__v1__attempt_info__free_unpacked(info, NULL);
			found = true;
		}
	}
	json_decref(root);
	return found;
}

static void expect_attempt_info(const http_reply *r, uint32_t remaining, uint32_t limit)
{
	uint32_t got_remaining = 0, got_limit = 0;
	if (!error_attempt_info(r, &got_remaining, &got_limit))
		fail_msg("no AttemptInfo detail in %s", r->body);
	if (got_remaining != remaining || got_limit != limit)
		fail_msg("AttemptInfo{%u, %u}, want {%u, %u}", got_remaining, got_limit, remaining,
		         limit);
}

/* A raw RecoverStart with password: KE2 and ticket in *start (HTTP 200 required), KE3 of
 * the login (right or wrong) in ke3. */
static void raw_recover_start(bkv_suite suite, const char *token, const char *password,
                              Bkv__V1__RecoverStartResponse **start,
                              uint8_t ke3[OPAQUE_MAX_KE3_BYTES], size_t *ke3_len)
{
	const opaque_config oc = cheap_config(suite);
	const opaque_sizes *sizes = opaque_suite_sizes(oc.suite);
	opaque_client_login_state login;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES], export_key[OPAQUE_MAX_HASH_BYTES];
	assert_int_equal(opaque_client_login_start(&oc, (const uint8_t *)password, strlen(password),
	                                           &login, ke1, sizes->ke1),
	                 OPAQUE_OK);
	size_t len;
	uint8_t *packed = pack_recover_start(suite, ke1, sizes->ke1, &len);
	char *auth = bearer(token);
	http_reply r;
	rpc_raw("RecoverStart", auth, "application/proto", "1", packed, len, &r);
	free(auth);
	free(packed);
	if (r.status != 200)
		fail_msg("RecoverStart: HTTP %ld %s", r.status, r.body);
	*start = bkv__v1__recover_start_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	http_reply_free(&r);
	assert_non_null(*start);
	const opaque_err oerr = opaque_client_login_finish(
	    &oc, &login, (const uint8_t *)password, strlen(password), NULL, (*start)->ke2.data,
	    (*start)->ke2.len, ke3, sizes->ke3, session_key, sizes->session_key, export_key,
	    sizes->export_key);
	if (oerr == OPAQUE_ERR_ENVELOPE_RECOVERY)
		randombytes_buf(ke3, sizes->ke3);
	else
		assert_int_equal(oerr, OPAQUE_OK);
	*ke3_len = sizes->ke3;
	opaque_client_login_state_wipe(&login);
	sodium_memzero(session_key, sizeof(session_key));
	sodium_memzero(export_key, sizeof(export_key));
}

/* A raw RecoverFinish; the reply is the caller's to free. */
static void raw_recover_finish(const char *token, const ProtobufCBinaryData *ticket,
                               const uint8_t *ke3, size_t ke3_len, http_reply *r)
{
	Bkv__V1__RecoverFinishRequest req = BKV__V1__RECOVER_FINISH_REQUEST__INIT;
	req.ticket = *ticket;
	req.ke3 = (ProtobufCBinaryData){ke3_len, (uint8_t *)ke3};
	uint8_t packed[2048];
	const size_t len = bkv__v1__recover_finish_request__get_packed_size(&req);
	assert_true(len <= sizeof(packed));
	bkv__v1__recover_finish_request__pack(&req, packed);
	char *auth = bearer(token);
	rpc_raw("RecoverFinish", auth, "application/proto", "1", packed, len, r);
	free(auth);
}

/* A raw RegisterStart and the client's RegistrationRecord for it. */
typedef struct raw_registration {
	bkv_suite suite;
	Bkv__V1__RegisterStartResponse *start;
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	size_t record_len;
} raw_registration;

static void raw_register_start(bkv_suite suite, const char *token, raw_registration *reg)
{
	memset(reg, 0, sizeof(*reg));
	reg->suite = suite;
	const opaque_config oc = cheap_config(suite);
	const opaque_sizes *sizes = opaque_suite_sizes(oc.suite);
	opaque_client_registration_state state;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	assert_int_equal(opaque_client_registration_start(&oc, (const uint8_t *)PASSWORD,
	                                                  strlen(PASSWORD), &state, request,
	                                                  sizes->registration_request),
	                 OPAQUE_OK);
	Bkv__V1__RegisterStartRequest req = BKV__V1__REGISTER_START_REQUEST__INIT;
	req.suite = (Bkv__V1__Suite)suite;
	req.registration_request = (ProtobufCBinaryData){sizes->registration_request, request};
	uint8_t packed[512];
	const size_t len = bkv__v1__register_start_request__pack(&req, packed);
	char *auth = bearer(token);
	http_reply r;
	rpc_raw("RegisterStart", auth, "application/proto", "1", packed, len, &r);
	free(auth);
	if (r.status != 200)
		fail_msg("RegisterStart: HTTP %ld %s", r.status, r.body);
	reg->start = bkv__v1__register_start_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	http_reply_free(&r);
	assert_non_null(reg->start);
	assert_true(reg->start->registration_ticket.len > 0);
	assert_int_equal(opaque_client_registration_finish(
	                     &oc, &state, (const uint8_t *)PASSWORD, strlen(PASSWORD), NULL,
	                     reg->start->registration_response.data,
	                     reg->start->registration_response.len, reg->record,
	                     sizes->registration_record, export_key, sizes->export_key),
	                 OPAQUE_OK);
	reg->record_len = sizes->registration_record;
	opaque_client_registration_state_wipe(&state);
	sodium_memzero(export_key, sizeof(export_key));
}

static void raw_registration_free(raw_registration *reg)
{
	if (reg->start != NULL)
		bkv__v1__register_start_response__free_unpacked(reg->start, NULL);
	reg->start = NULL;
}

/* A raw RegisterFinish of reg with ticket (NULL: none) and replaces; the reply is the
 * caller's to free. The wrapped key is opaque to the vault: any 60 bytes do. */
static void raw_register_finish(const char *token, const raw_registration *reg,
                                const ProtobufCBinaryData *ticket, uint64_t replaces, http_reply *r)
{
	uint8_t wrapped[60];
	memset(wrapped, 0x33, sizeof(wrapped));
	Bkv__V1__RegisterFinishRequest req = BKV__V1__REGISTER_FINISH_REQUEST__INIT;
	req.suite = (Bkv__V1__Suite)reg->suite;
	req.registration_record = (ProtobufCBinaryData){reg->record_len, (uint8_t *)reg->record};
	req.wrapped_key = (ProtobufCBinaryData){sizeof(wrapped), wrapped};
	if (ticket != NULL)
		req.registration_ticket = *ticket;
	req.replaces_record_version = replaces;
	uint8_t packed[1024];
	const size_t len = bkv__v1__register_finish_request__get_packed_size(&req);
	assert_true(len <= sizeof(packed));
	bkv__v1__register_finish_request__pack(&req, packed);
	char *auth = bearer(token);
	rpc_raw("RegisterFinish", auth, "application/proto", "1", packed, len, r);
	free(auth);
}

/* bkv_register only creates: a second registration is refused and the first key stays. */
static void test_register_is_create_only(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "create-only", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key first, second;
	bkv_key_generate(&first);
	bkv_key_generate(&second);
	do_register(c, token, PASSWORD, &first, 0);
	const bkv_account_status before = get_status(c, token);
	assert_int_equal(before.record_version, 1);

	bkv_error err = {0};
	EXPECT_STATUS(bkv_register(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD), &second, 5, &err),
	              BKV_ERR_ALREADY_REGISTERED, err);
	assert_int_equal(err.status, BKV_ERR_ALREADY_REGISTERED);
	assert_non_null(strstr(err.message, "already registered"));
	/* replaces 0 is the same create-only call. */
	uint64_t version = 99;
	EXPECT_STATUS(bkv_register_replacing(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD), &second,
	                                     5, 0, &version, &err),
	              BKV_ERR_ALREADY_REGISTERED, err);
	assert_int_equal(version, 0);
	const bkv_account_status after = get_status(c, token);
	assert_same_status(&before, &after);
	expect_recover(c, token, PASSWORD, &first);
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(bkv_recover(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD), &got, &info, &err),
	              BKV_ERR_WRONG_PASSWORD, err);
	bkv_client_free(c);
}

/* bkv_register_replacing replaces exactly the version named: any other is a conflict that
 * changes nothing; the right one gives version + 1 and the new password only. */
static void test_register_replacing(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "replacing", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key first, second;
	bkv_key_generate(&first);
	bkv_key_generate(&second);
	do_register(c, token, PASSWORD, &first, 4);
	expect_wrong(c, token, 3, 4);
	const bkv_account_status before = get_status(c, token);
	assert_int_equal(before.record_version, 1);
	assert_int_equal(before.attempts_used, 1);

	bkv_error err = {0};
	const uint64_t wrong_versions[] = {2, 7, UINT64_MAX};
	for (size_t i = 0; i < sizeof(wrong_versions) / sizeof(wrong_versions[0]); i++) {
		uint64_t version = 99;
		EXPECT_STATUS(bkv_register_replacing(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD),
		                                     &second, 0, wrong_versions[i], &version, &err),
		              BKV_ERR_CONFLICT, err);
		assert_int_equal(err.status, BKV_ERR_CONFLICT);
		assert_int_equal(version, 0);
		const bkv_account_status unchanged = get_status(c, token);
		assert_same_status(&before, &unchanged);
	}
	print_message("    conflict: %s\n", err.message);
	expect_recover(c, token, PASSWORD, &first); /* resets the counter */

	uint64_t version = 0;
	EXPECT_STATUS(bkv_register_replacing(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD), &second,
	                                     0, before.record_version, &version, &err),
	              BKV_OK, err);
	assert_int_equal(version, before.record_version + 1);
	const bkv_account_status after = get_status(c, token);
	assert_true(after.registered);
	assert_int_equal(after.state, BKV_RECORD_REGISTERED);
	assert_int_equal(after.record_version, version);
	assert_int_equal(after.attempts_used, 0);
	assert_int_equal(after.attempt_limit, DEFAULT_LIMIT);
	expect_recover(c, token, NEW_PASSWORD, &second);
	expect_wrong(c, token, DEFAULT_LIMIT - 1, DEFAULT_LIMIT); /* the old password */

	/* The replaced version is stale now: replacing it again is a conflict. */
	EXPECT_STATUS(bkv_register_replacing(c, token, PASSWORD, strlen(PASSWORD), &first, 0,
	                                     before.record_version, NULL, &err),
	              BKV_ERR_CONFLICT, err);
	expect_recover(c, token, NEW_PASSWORD, &second);
	bkv_client_free(c);
}

/* bkv_change_password racing a replacement of the version it is recovering: whatever the
 * interleaving, the change either wins (the new password opens a key) or says
 * BKV_ERR_CONFLICT and changed nothing (the replacement stands, the new password opens
 * nothing); it never overwrites the replacement. */
typedef struct change_racer {
	bkv_client *client;
	const char *token;
	pthread_barrier_t *go;
	const bkv_key *key; /* the replacer's */
	uint64_t replaces;  /* the replacer's */
	bool change;        /* change the password, or replace */
	bkv_status status;
	char message[BKV_MESSAGE_BYTES];
} change_racer;

static void *change_race(void *arg)
{
	change_racer *r = arg;
	bkv_error err = {0};
	bkv_recover_info info;
	pthread_barrier_wait(r->go);
	if (r->change)
		r->status = bkv_change_password(r->client, r->token, PASSWORD, strlen(PASSWORD),
		                                NEW_PASSWORD, strlen(NEW_PASSWORD), &info, &err);
	else
		r->status = bkv_register_replacing(r->client, r->token, PASSWORD, strlen(PASSWORD),
		                                   r->key, 7, r->replaces, NULL, &err);
	snprintf(r->message, sizeof(r->message), "%s", err.message);
	return NULL;
}

static void test_change_password_racing_a_replacement(void **state)
{
	(void)state;
	const char *token = token_for("http-change-race");
	bkv_client *c = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	unsigned changed = 0, conflicts = 0;
	bkv_key first;
	bkv_key_generate(&first);
	do_register(c, token, PASSWORD, &first, 5);
	for (int round = 0; round < 8; round++) {
		/* Each round starts from a record under PASSWORD. */
		const bkv_account_status before = get_status(c, token);
		bkv_key theirs;
		bkv_key_generate(&theirs);
		pthread_barrier_t go;
		pthread_barrier_init(&go, NULL, 2);
		change_racer r[2] = {
		    {.client = cheap_client(BKV_SUITE_VAULT_PREFERENCE),
		     .token = token,
		     .go = &go,
		     .change = true},
		    {.client = cheap_client(BKV_SUITE_VAULT_PREFERENCE),
		     .token = token,
		     .go = &go,
		     .key = &theirs,
		     .replaces = before.record_version},
		};
		pthread_t threads[2];
		for (int k = 0; k < 2; k++) {
			if (pthread_create(&threads[k], NULL, change_race, &r[k]) != 0)
				abort(); /* the barrier would wait forever */
		}
		for (int k = 0; k < 2; k++)
			pthread_join(threads[k], NULL);
		pthread_barrier_destroy(&go);
		bkv_client_free(r[0].client);
		bkv_client_free(r[1].client);
		/* The replacement names the version read before the round: it can only lose to a
		 * password change that committed first. */
		if (r[1].status != BKV_OK && r[1].status != BKV_ERR_CONFLICT)
			fail_msg("round %d: the replacement: %s (%s)", round,
			         bkv_status_name(r[1].status), r[1].message);
		const bkv_account_status after = get_status(c, token);
		bkv_error err = {0};
		bkv_key got;
		bkv_recover_info info;
		if (r[0].status == BKV_OK) {
			changed++;
			/* The change committed last: the new password opens whichever key it
			 * recovered (the replacement's, if that came first). */
			EXPECT_STATUS(bkv_recover(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD),
			                          &got, &info, &err),
			              BKV_OK, err);
			const bool is_theirs = memcmp(got.bytes, theirs.bytes, BKV_KEY_BYTES) == 0;
			if (r[1].status == BKV_OK) {
				assert_true(is_theirs);
				assert_int_equal(after.record_version, before.record_version + 2);
				assert_int_equal(after.attempt_limit,
				                 7); /* the recovered record's */
			} else {
				assert_false(is_theirs);
				assert_int_equal(after.record_version, before.record_version + 1);
				assert_int_equal(after.attempt_limit, 5);
			}
			bkv_key_wipe(&got);
		} else if (r[0].status == BKV_ERR_CONFLICT) {
			conflicts++;
			if (r[1].status != BKV_OK)
				fail_msg("round %d: both lost: %s / %s", round, r[0].message,
				         r[1].message);
			assert_int_equal(after.record_version, before.record_version + 1);
			assert_int_equal(after.attempt_limit, 7);
			expect_recover(c, token, PASSWORD, &theirs);
			EXPECT_STATUS(bkv_recover(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD),
			                          &got, &info, &err),
			              BKV_ERR_WRONG_PASSWORD, err);
			if (strstr(r[0].message, "password was not changed") == NULL &&
			    strstr(r[0].message, "changed during the recovery") == NULL)
				fail_msg("round %d: conflict message \"%s\"", round, r[0].message);
		} else {
			fail_msg("round %d: bkv_change_password: %s (%s)", round,
			         bkv_status_name(r[0].status), r[0].message);
		}
		/* Back to PASSWORD for the next round. */
		do_replace(c, token, PASSWORD, &first, 5);
		bkv_key_wipe(&theirs);
	}
	print_message("    8 rounds: the change won %u, lost with BKV_ERR_CONFLICT %u\n", changed,
	              conflicts);
	bkv_client_free(c);
}

/* record_version counts per account: a fresh account starts at 1 whatever the others did. */
static void test_versions_per_account(void **state)
{
	(void)state;
	bkv_client *c = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	bkv_key key;
	bkv_key_generate(&key);
	/* Some history on another account first. */
	const char *busy = token_for("http-versions-busy");
	do_register(c, busy, PASSWORD, &key, 0);
	for (int i = 0; i < 3; i++)
		do_replace(c, busy, PASSWORD, &key, 0);
	assert_int_equal(get_status(c, busy).record_version, 4);
	for (int i = 0; i < 2; i++) {
		char account[64];
		snprintf(account, sizeof(account), "http-versions-fresh-%d", i);
		const char *token = token_for(account);
		bkv_error err = {0};
		uint64_t version = 0;
		EXPECT_STATUS(bkv_register_replacing(c, token, PASSWORD, strlen(PASSWORD), &key, 0,
		                                     0, &version, &err),
		              BKV_OK, err);
		assert_int_equal(version, 1);
		assert_int_equal(get_status(c, token).record_version, 1);
	}
	assert_int_equal(get_status(c, busy).record_version, 4);
	bkv_client_free(c);
}

/* The limit reached: a tombstone that says "destroyed" every time, to status and recovery,
 * that create-only registration does not pass, and that a registration naming its version
 * replaces. */
static void test_tombstone(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "tombstone", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key key, next;
	bkv_key_generate(&key);
	bkv_key_generate(&next);
	do_register(c, token, PASSWORD, &key, 2);
	const long audit_from = file_size(env.audit_log);
	expect_wrong(c, token, 1, 2);
	const time_t t0 = time(NULL);
	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(
	    bkv_recover(c, token, WRONG_PASSWORD, strlen(WRONG_PASSWORD), &got, &info, &err),
	    BKV_ERR_DESTROYED, err);
	const time_t t1 = time(NULL);
	assert_true(info.destroyed);
	assert_true(info.attempts_known);
	assert_int_equal(info.attempts_remaining, 0);
	assert_int_equal(info.attempt_limit, 2);
	assert_non_null(strstr(err.message, "cannot be recovered"));

	const bkv_account_status dead = get_status(c, token);
	assert_false(dead.registered);
	assert_int_equal(dead.state, BKV_RECORD_DESTROYED);
	assert_in_range(dead.destroyed_at_unix, t0 - 2, t1 + 2);
	assert_int_equal(dead.record_version, 1);
	assert_int_equal(dead.suite, suite);
	assert_int_equal(dead.attempts_used, 2);
	assert_int_equal(dead.attempt_limit, 2);
	assert_true(dead.registered_at_unix > 0);

	/* Every later recovery, right password or wrong: destroyed. */
	for (int i = 0; i < 3; i++) {
		expect_destroyed(c, token, PASSWORD, 2);
		expect_destroyed(c, token, WRONG_PASSWORD, 2);
	}
	EXPECT_STATUS(bkv_change_password(c, token, PASSWORD, strlen(PASSWORD), NEW_PASSWORD,
	                                  strlen(NEW_PASSWORD), &info, &err),
	              BKV_ERR_DESTROYED, err);
	assert_true(info.destroyed);
	/* Raw RecoverStart on the tombstone: failed_precondition with AttemptInfo{0, limit},
	 * every time, and no KE2. */
	for (int i = 0; i < 2; i++) {
		uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
		const size_t ke1_len = make_ke1(suite, ke1);
		size_t len;
		uint8_t *packed = pack_recover_start(suite, ke1, ke1_len, &len);
		char *auth = bearer(token);
		http_reply r;
		rpc_raw("RecoverStart", auth, "application/proto", "1", packed, len, &r);
		check_connect_error(&r, 400, "failed_precondition", NULL);
		expect_attempt_info(&r, 0, 2);
		http_reply_free(&r);
		free(auth);
		free(packed);
	}
	/* One destruction, whatever came after. */
	assert_int_equal(audit_scan(account, audit_from).destroyed, 1);

	/* Create-only registration does not pass a tombstone; a wrong version conflicts. */
	EXPECT_STATUS(bkv_register(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD), &next, 0, &err),
	              BKV_ERR_ALREADY_REGISTERED, err);
	print_message("    over a tombstone: %s\n", err.message);
	EXPECT_STATUS(bkv_register_replacing(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD), &next, 0,
	                                     dead.record_version + 1, NULL, &err),
	              BKV_ERR_CONFLICT, err);
	const bkv_account_status still = get_status(c, token);
	assert_same_status(&dead, &still);

	/* Replacing the tombstone's version registers anew. */
	uint64_t version = 0;
	EXPECT_STATUS(bkv_register_replacing(c, token, NEW_PASSWORD, strlen(NEW_PASSWORD), &next, 3,
	                                     dead.record_version, &version, &err),
	              BKV_OK, err);
	assert_int_equal(version, dead.record_version + 1);
	const bkv_account_status alive = get_status(c, token);
	assert_true(alive.registered);
	assert_int_equal(alive.state, BKV_RECORD_REGISTERED);
	assert_int_equal(alive.destroyed_at_unix, 0);
	assert_int_equal(alive.attempts_used, 0);
	assert_int_equal(alive.attempt_limit, 3);
	assert_int_equal(alive.record_version, version);
	expect_recover(c, token, NEW_PASSWORD, &next);
	expect_wrong(c, token, 2, 3);
	bkv_client_free(c);
}

/* Delete removes a tombstone: then create-only registration works, from version 1. */
static void test_delete_tombstone(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "delete-tombstone", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 1);
	do_replace(c, token, PASSWORD, &key, 1); /* version 2 */
	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(
	    bkv_recover(c, token, WRONG_PASSWORD, strlen(WRONG_PASSWORD), &got, &info, &err),
	    BKV_ERR_DESTROYED, err);
	const bkv_account_status dead = get_status(c, token);
	assert_int_equal(dead.state, BKV_RECORD_DESTROYED);
	assert_int_equal(dead.record_version, 2);

	bool deleted = false;
	EXPECT_STATUS(bkv_delete(c, token, &deleted, &err), BKV_OK, err);
	assert_true(deleted);
	const bkv_account_status none = get_status(c, token);
	assert_false(none.registered);
	assert_int_equal(none.state, BKV_RECORD_ABSENT);
	assert_int_equal(none.record_version, 0);
	assert_int_equal(none.destroyed_at_unix, 0);
	EXPECT_STATUS(bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err),
	              BKV_ERR_NOT_REGISTERED, err);
	assert_false(info.destroyed);
	/* Replacing a version that no longer exists: a conflict. */
	EXPECT_STATUS(
	    bkv_register_replacing(c, token, PASSWORD, strlen(PASSWORD), &key, 0, 2, NULL, &err),
	    BKV_ERR_CONFLICT, err);
	uint64_t version = 0;
	EXPECT_STATUS(bkv_register_replacing(c, token, PASSWORD, strlen(PASSWORD), &key, 0, 0,
	                                     &version, &err),
	              BKV_OK, err);
	assert_int_equal(version, 1);
	expect_recover(c, token, PASSWORD, &key);
	bkv_client_free(c);
}

/* A recovery ticket from one registration never finishes against another, even with the
 * same password and, after Delete, the same record version; a replayed ticket is refused.
 * Each refusal carries AttemptInfo and changes nothing. */
static void test_ticket_of_an_earlier_registration(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	char account[64];
	account_name(account, sizeof(account), "stale-ticket", suite);
	const char *token = token_for(account);
	bkv_client *c = cheap_client(suite);
	bkv_key key, other;
	bkv_key_generate(&key);
	bkv_key_generate(&other);
	do_register(c, token, PASSWORD, &key, 5);

	/* A replayed ticket: finished once (key released), then again. */
	Bkv__V1__RecoverStartResponse *start = NULL;
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
	size_t ke3_len = 0;
	raw_recover_start(suite, token, PASSWORD, &start, ke3, &ke3_len);
	http_reply r;
	raw_recover_finish(token, &start->ticket, ke3, ke3_len, &r);
	if (r.status != 200)
		fail_msg("RecoverFinish: HTTP %ld %s", r.status, r.body);
	Bkv__V1__RecoverFinishResponse *finish =
	    bkv__v1__recover_finish_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	assert_non_null(finish);
	assert_int_equal(finish->record_version, 1);
	bkv__v1__recover_finish_response__free_unpacked(finish, NULL);
	http_reply_free(&r);
	const bkv_account_status before_replay = get_status(c, token);
	raw_recover_finish(token, &start->ticket, ke3, ke3_len, &r);
	check_connect_error(&r, 400, "failed_precondition", NULL);
	expect_attempt_info(&r, 5, 5); /* the success reset the counter */
	http_reply_free(&r);
	const bkv_account_status after_replay = get_status(c, token);
	assert_same_status(&before_replay, &after_replay);
	bkv__v1__recover_start_response__free_unpacked(start, NULL);

	/* A ticket taken before a replacement (same password) does not finish after it. */
	raw_recover_start(suite, token, PASSWORD, &start, ke3, &ke3_len);
	do_replace(c, token, PASSWORD, &other, 5); /* version 2 */
	raw_recover_finish(token, &start->ticket, ke3, ke3_len, &r);
	check_connect_error(&r, 400, "failed_precondition", NULL);
	expect_attempt_info(&r, 5, 5);
	print_message("    ticket from before a replacement: %s\n", r.body);
	http_reply_free(&r);
	bkv__v1__recover_start_response__free_unpacked(start, NULL);

	/* A ticket taken before Delete and a new registration (same password, and the same
	 * record version 1 again): refused too. */
	raw_recover_start(suite, token, PASSWORD, &start, ke3, &ke3_len);
	bkv_error err = {0};
	bool deleted = false;
	EXPECT_STATUS(bkv_delete(c, token, &deleted, &err), BKV_OK, err);
	assert_true(deleted);
	do_register(c, token, PASSWORD, &key, 5);
	const bkv_account_status fresh = get_status(c, token);
	assert_int_equal(fresh.record_version, 1);
	raw_recover_finish(token, &start->ticket, ke3, ke3_len, &r);
	check_connect_error(&r, 400, "failed_precondition", NULL);
	expect_attempt_info(&r, 5, 5);
	http_reply_free(&r);
	bkv__v1__recover_start_response__free_unpacked(start, NULL);
	const bkv_account_status unchanged = get_status(c, token);
	assert_same_status(&fresh, &unchanged);
	expect_recover(c, token, PASSWORD, &key);

	/* A wrong password's raw finish: permission_denied with AttemptInfo. */
	raw_recover_start(suite, token, WRONG_PASSWORD, &start, ke3, &ke3_len);
	raw_recover_finish(token, &start->ticket, ke3, ke3_len, &r);
	check_connect_error(&r, 403, "permission_denied", NULL);
	expect_attempt_info(&r, 4, 5);
	http_reply_free(&r);
	bkv__v1__recover_start_response__free_unpacked(start, NULL);
	sodium_memzero(ke3, sizeof(ke3));
	bkv_client_free(c);
}

/* RegisterFinish below libbkv: the registration ticket is required and bound to the
 * account and suite; compare-and-set answers already_exists and aborted with HTTP 409.
 * Every refusal changes nothing. */
static void test_raw_register_finish(void **state)
{
	(void)state;
	const bkv_suite suite = BKV_SUITE_RISTRETTO255_SHA512;
	const char *token = token_for("http-raw-register");
	const char *other_token = token_for("http-raw-register-other");
	const char *empty_token = token_for("http-raw-register-empty");
	bkv_client *c = cheap_client(suite);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 0);
	const bkv_account_status before = get_status(c, token);
	const bkv_account_status empty_before = get_status(c, empty_token);
	assert_int_equal(empty_before.state, BKV_RECORD_ABSENT);

	raw_registration reg, other_reg, p256_reg;
	raw_register_start(suite, token, &reg);
	raw_register_start(suite, other_token, &other_reg);
	raw_register_start(BKV_SUITE_P256_SHA256, token, &p256_reg);
	http_reply r;

	/* No ticket. */
	raw_register_finish(token, &reg, NULL, before.record_version, &r);
	check_connect_error(&r, 400, "invalid_argument", NULL);
	assert_non_null(strstr(r.body, "registration_ticket is required"));
	http_reply_free(&r);
	/* Another account's ticket. */
	raw_register_finish(token, &reg, &other_reg.start->registration_ticket,
	                    before.record_version, &r);
	check_connect_error(&r, 400, "invalid_argument", NULL);
	print_message("    another account's ticket: %s\n", r.body);
	http_reply_free(&r);
	/* A ticket for the other suite. */
	raw_register_finish(token, &reg, &p256_reg.start->registration_ticket,
	                    before.record_version, &r);
	check_connect_error(&r, 400, "invalid_argument", NULL);
	http_reply_free(&r);
	/* A damaged ticket. */
	uint8_t damaged[512];
	const ProtobufCBinaryData *t = &reg.start->registration_ticket;
	assert_true(t->len <= sizeof(damaged));
	memcpy(damaged, t->data, t->len);
	damaged[t->len / 2] ^= 0x01;
	const ProtobufCBinaryData damaged_ticket = {t->len, damaged};
	raw_register_finish(token, &reg, &damaged_ticket, before.record_version, &r);
	check_connect_error(&r, 400, "invalid_argument", NULL);
	http_reply_free(&r);

	/* Compare-and-set: create-only over a record; a wrong version; a version on an
	 * account without a record. */
	raw_register_finish(token, &reg, &reg.start->registration_ticket, 0, &r);
	check_connect_error(&r, 409, "already_exists", NULL);
	http_reply_free(&r);
	raw_register_finish(token, &reg, &reg.start->registration_ticket, before.record_version + 1,
	                    &r);
	check_connect_error(&r, 409, "aborted", NULL);
	http_reply_free(&r);
	raw_registration empty_reg;
	raw_register_start(suite, empty_token, &empty_reg);
	raw_register_finish(empty_token, &empty_reg, &empty_reg.start->registration_ticket, 1, &r);
	check_connect_error(&r, 409, "aborted", NULL);
	http_reply_free(&r);

	/* Nothing changed anywhere. */
	const bkv_account_status after = get_status(c, token);
	assert_same_status(&before, &after);
	const bkv_account_status empty_after = get_status(c, empty_token);
	assert_same_status(&empty_before, &empty_after);
	expect_recover(c, token, PASSWORD, &key);

	/* The same ticket with the right version: registered, version + 1. */
	raw_register_finish(token, &reg, &reg.start->registration_ticket, before.record_version,
	                    &r);
	if (r.status != 200)
		fail_msg("RegisterFinish with the right version: HTTP %ld %s", r.status, r.body);
	Bkv__V1__RegisterFinishResponse *done =
	    bkv__v1__register_finish_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	assert_non_null(done);
	assert_int_equal(done->record_version, before.record_version + 1);
	bkv__v1__register_finish_response__free_unpacked(done, NULL);
	http_reply_free(&r);
	/* And create-only on the empty account with its own ticket: version 1. */
	raw_register_finish(empty_token, &empty_reg, &empty_reg.start->registration_ticket, 0, &r);
	if (r.status != 200)
		fail_msg("RegisterFinish create-only: HTTP %ld %s", r.status, r.body);
	done = bkv__v1__register_finish_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	assert_non_null(done);
	assert_int_equal(done->record_version, 1);
	bkv__v1__register_finish_response__free_unpacked(done, NULL);
	http_reply_free(&r);

	raw_registration_free(&reg);
	raw_registration_free(&other_reg);
	raw_registration_free(&p256_reg);
	raw_registration_free(&empty_reg);
	bkv_client_free(c);
}

/* A row changed outside bkvd (the attempt counter lowered with sqlite3): the vault refuses
 * it with data_loss, and libbkv says BKV_ERR_DATA_LOSS on every call that reads it. */
static void test_data_loss(void **state)
{
	(void)state;
	if (getenv("BKV_DEV_VAULT_STORAGE") != NULL)
		skip(); /* edits the SQLite file; tests/test_recovery.c tampers on PostgreSQL */
	const char *account = "http-data-loss";
	const char *token = token_for(account);
	bkv_client *c = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 5);
	expect_wrong(c, token, 4, 5);
	char db[PATH_MAX], sql[512];
	path_join(db, env.vault_dir, "bkv.db");
	snprintf(sql, sizeof(sql),
	         "UPDATE records SET attempts_used = 0 WHERE account_id = CAST('%s' AS BLOB);"
	         "SELECT changes();",
	         account);
	char *argv[] = {"sqlite3", "-batch", "-bail", "-cmd", ".timeout 5000", db, sql, NULL};
	char out[64];
	const int st = run_capture(argv, out, sizeof(out));
	if (st != 0)
		fail_msg("sqlite3 %s failed (status %d): is the sqlite3 CLI installed "
		         "(scripts/deps)?",
		         db, st);
	chomp(out);
	assert_string_equal(out, "1");

	bkv_error err = {0};
	bkv_account_status s;
	EXPECT_STATUS(bkv_status_get(c, token, &s, &err), BKV_ERR_DATA_LOSS, err);
	assert_non_null(strstr(err.message, "integrity check"));
	print_message("    %s\n", err.message);
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err),
	              BKV_ERR_DATA_LOSS, err);
	EXPECT_STATUS(bkv_register(c, token, PASSWORD, strlen(PASSWORD), &key, 0, &err),
	              BKV_ERR_DATA_LOSS, err);
	EXPECT_STATUS(
	    bkv_register_replacing(c, token, PASSWORD, strlen(PASSWORD), &key, 0, 1, NULL, &err),
	    BKV_ERR_DATA_LOSS, err);
	EXPECT_STATUS(bkv_change_password(c, token, PASSWORD, strlen(PASSWORD), NEW_PASSWORD,
	                                  strlen(NEW_PASSWORD), &info, &err),
	              BKV_ERR_DATA_LOSS, err);
	char *auth = bearer(token);
	http_reply r;
	rpc_raw("GetStatus", auth, "application/proto", "1", "", 0, &r);
	check_connect_error(&r, 500, "data_loss", NULL);
	http_reply_free(&r);
	free(auth);
	/* Delete does not read the record: the account holder can start over. */
	bool deleted = false;
	EXPECT_STATUS(bkv_delete(c, token, &deleted, &err), BKV_OK, err);
	assert_true(deleted);
	assert_int_equal(get_status(c, token).state, BKV_RECORD_ABSENT);
	do_register(c, token, PASSWORD, &key, 0);
	expect_recover(c, token, PASSWORD, &key);
	assert_string_equal(bkv_status_name(BKV_ERR_DATA_LOSS),
	                    "stored record refused (data loss)");
	bkv_client_free(c);
}

/* ------------------------------------------------------------------------------------ */
/* libbkv: authentication, availability, TLS                                             */
/* ------------------------------------------------------------------------------------ */

static void expect_unauthenticated(bkv_client *c, const char *token, const char *why)
{
	bkv_error err = {0};
	bkv_account_status s;
	EXPECT_STATUS(bkv_status_get(c, token, &s, &err), BKV_ERR_UNAUTHENTICATED, err);
	if (why != NULL && strstr(err.message, why) == NULL)
		fail_msg("message \"%s\" does not say \"%s\"", err.message, why);
	bkv_key key, got;
	bkv_key_generate(&key);
	bkv_recover_info info;
	EXPECT_STATUS(bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err),
	              BKV_ERR_UNAUTHENTICATED, err);
	EXPECT_STATUS(bkv_register(c, token, PASSWORD, strlen(PASSWORD), &key, 0, &err),
	              BKV_ERR_UNAUTHENTICATED, err);
	bool deleted;
	EXPECT_STATUS(bkv_delete(c, token, &deleted, &err), BKV_ERR_UNAUTHENTICATED, err);
}

static char *tampered(const char *token)
{
	char *t = strdup(token);
	char *sig = strrchr(t, '.');
	assert_non_null(sig);
	sig[5] = sig[5] == 'A' ? 'B' : 'A'; /* a whole 6-bit group, not padding bits */
	remember_secret(t);
	return t;
}

static void test_bad_tokens(void **state)
{
	(void)state;
	const char *account = "http-tokens";
	const char *good = token_for(account);
	bkv_client *c = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, good, PASSWORD, &key, 0);
	const bkv_account_status before = get_status(c, good);

	expect_unauthenticated(c, "garbage", "invalid bearer token");
	expect_unauthenticated(c, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "invalid bearer token");
	char *expired = mint_token(account, "--lifetime=-120");
	expect_unauthenticated(c, expired, "expired");
	char *forged = tampered(good);
	expect_unauthenticated(c, forged, "invalid bearer token");

	/* None of that touched the account. */
	bkv_account_status after = get_status(c, good);
	assert_same_status(&before, &after);
	expect_recover(c, good, PASSWORD, &key);
	free(expired);
	free(forged);
	bkv_client_free(c);
}

/* A loopback port nobody listens on. */
static unsigned closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void test_vault_down(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", closed_port());
	const char *token = token_for("http-down");
	bkv_client *c = make_client(BKV_SUITE_VAULT_PREFERENCE, true, env.ca, NULL, url);
	bkv_error err = {0};
	bkv_account_status s;
	EXPECT_STATUS(bkv_status_get(c, token, &s, &err), BKV_ERR_UNAVAILABLE, err);
	assert_non_null(strstr(err.message, "cannot reach the vault"));
	bkv_key key, got;
	bkv_key_generate(&key);
	bkv_recover_info info;
	EXPECT_STATUS(bkv_register(c, token, PASSWORD, strlen(PASSWORD), &key, 0, &err),
	              BKV_ERR_UNAVAILABLE, err);
	EXPECT_STATUS(bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err),
	              BKV_ERR_UNAVAILABLE, err);
	bool deleted;
	EXPECT_STATUS(bkv_delete(c, token, &deleted, &err), BKV_ERR_UNAVAILABLE, err);
	bkv_client_free(c);
}

/* A status call that must fail in TLS, before any request reaches the vault. */
static void expect_tls_refused(bkv_client *c, const char *token)
{
	const long logged = file_size(env.request_log);
	bkv_error err = {0};
	bkv_account_status s;
	EXPECT_STATUS(bkv_status_get(c, token, &s, &err), BKV_ERR_TLS, err);
	print_message("    refused: %s\n", err.message);
	if (file_size(env.request_log) != logged)
		fail_msg("the vault logged a request the client should never have sent");
}

static void test_tls(void **state)
{
	(void)state;
	const char *token = token_for("http-tls");
	bkv_key key;
	bkv_key_generate(&key);

	/* The CA file: works. */
	bkv_client *c = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	do_register(c, token, PASSWORD, &key, 0);
	bkv_client_free(c);

	/* No CA file: the system store does not know the dev certificate; refused. */
	c = make_client(BKV_SUITE_VAULT_PREFERENCE, true, NULL, NULL, NULL);
	expect_tls_refused(c, token);
	bkv_client_free(c);

	/* Another certificate as the CA: refused. */
	c = make_client(BKV_SUITE_VAULT_PREFERENCE, true, env.other_cert, NULL, NULL);
	expect_tls_refused(c, token);
	bkv_client_free(c);

	/* Pinned to the vault's certificate: works. */
	c = make_client(BKV_SUITE_VAULT_PREFERENCE, true, env.ca, env.ca, NULL);
	expect_recover(c, token, PASSWORD, &key);
	bkv_client_free(c);

	/* Pinned to another certificate (the CA still trusts the vault): refused. */
	c = make_client(BKV_SUITE_VAULT_PREFERENCE, true, env.ca, env.other_cert, NULL);
	expect_tls_refused(c, token);
	bkv_client_free(c);

	/* A pinned certificate that cannot be read: a TLS error up front. */
	bkv_client_config cfg = {.vault_url = env.url, .pinned_cert = "/nonexistent/cert.pem"};
	bkv_error err = {0};
	bkv_client *none = NULL;
	EXPECT_STATUS(bkv_client_new(&cfg, &none, &err), BKV_ERR_TLS, err);
	assert_null(none);

	/* Plain http:// to the TLS port: no answer the client accepts. */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", env.port);
	c = make_client(BKV_SUITE_VAULT_PREFERENCE, true, env.ca, NULL, url);
	bkv_account_status s;
	const bkv_status st = bkv_status_get(c, token, &s, &err);
	if (st == BKV_OK)
		fail_msg("a plain-HTTP request to the TLS port succeeded");
	bkv_client_free(c);
}

/* ------------------------------------------------------------------------------------ */
/* Raw HTTP: each case gets its Connect error and changes nothing                       */
/* ------------------------------------------------------------------------------------ */

static const char *const raw_accounts[2] = {"http-raw-p256", "http-raw-r255"};
static const bkv_suite raw_suites[2] = {BKV_SUITE_P256_SHA256, BKV_SUITE_RISTRETTO255_SHA512};

typedef struct raw_snapshot {
	bkv_account_status status[2];
	pid_t workers[MAX_PIDS];
	size_t nworkers;
	double restarts;
} raw_snapshot;

static raw_snapshot raw_begin(void)
{
	raw_snapshot snap;
	memset(&snap, 0, sizeof(snap));
	for (size_t i = 0; i < 2; i++) {
		const char *token = token_for(raw_accounts[i]);
		bkv_client *c = cheap_client(raw_suites[i]);
		snap.status[i] = get_status(c, token);
		if (!snap.status[i].registered || snap.status[i].attempts_used != 0) {
			bkv_key key;
			memset(key.bytes, (int)(0x40 + i), sizeof(key.bytes));
			if (snap.status[i].state == BKV_RECORD_ABSENT)
				do_register(c, token, PASSWORD, &key, 0);
			else
				do_replace(c, token, PASSWORD, &key, 0);
			snap.status[i] = get_status(c, token);
		}
		bkv_client_free(c);
	}
	snap.nworkers = tp_bkvd_workers(env.master, snap.workers, MAX_PIDS);
	assert_int_equal(snap.nworkers, WORKERS);
	snap.restarts = current_metric("bkv_worker_restarts_total");
	return snap;
}

/* Nothing changed, no worker died, and the vault still serves real requests. */
static void raw_end(const raw_snapshot *before)
{
	for (size_t i = 0; i < 2; i++) {
		const char *token = token_for(raw_accounts[i]);
		bkv_client *c = cheap_client(raw_suites[i]);
		bkv_account_status now = get_status(c, token);
		assert_same_status(&before->status[i], &now);
		bkv_key key;
		memset(key.bytes, (int)(0x40 + i), sizeof(key.bytes));
		expect_recover(c, token, PASSWORD, &key);
		bkv_client_free(c);
	}
	assert_true(healthz_ok());
	pid_t workers[MAX_PIDS];
	const size_t n = tp_bkvd_workers(env.master, workers, MAX_PIDS);
	if (n != before->nworkers || memcmp(workers, before->workers, n * sizeof(pid_t)) != 0)
		fail_msg("the worker processes changed (a worker died)");
	assert_true(current_metric("bkv_worker_restarts_total") == before->restarts);
}

static void test_raw_garbage_body(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[1]));
	static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	                                  0xff, 0xff, 0xff, 0x01, 'n',  'o',  't',  ' ',
	                                  'p',  'r',  'o',  't',  'o',  0x00, 0x07, 0x13};
	static const char *const methods[] = {"RecoverStart",   "RecoverFinish", "RegisterStart",
	                                      "RegisterFinish", "GetStatus",     "Delete"};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		http_reply r;
		rpc_raw(methods[i], auth, "application/proto", "1", garbage, sizeof(garbage), &r);
		check_connect_error(&r, 400, "invalid_argument",
		                    "the request body is not a valid protobuf message");
		http_reply_free(&r);
	}
	free(auth);
	raw_end(&snap);
}

static void test_raw_truncated_protobuf(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[1]));
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	const size_t ke1_len = make_ke1(BKV_SUITE_RISTRETTO255_SHA512, ke1);
	size_t len;
	uint8_t *packed = pack_recover_start(BKV_SUITE_RISTRETTO255_SHA512, ke1, ke1_len, &len);
	/* Cut inside the KE1 field, right after its length prefix, and after the tag alone. */
	const size_t cuts[] = {len - 1, len / 2, 4, 3, 1};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		http_reply r;
		rpc_raw("RecoverStart", auth, "application/proto", "1", packed, cuts[i], &r);
		check_connect_error(&r, 400, "invalid_argument",
		                    "the request body is not a valid protobuf message");
		http_reply_free(&r);
	}
	free(packed);
	free(auth);
	raw_end(&snap);
}

static void test_raw_wrong_lengths(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	for (size_t i = 0; i < 2; i++) {
		char *auth = bearer(token_for(raw_accounts[i]));
		const size_t right = opaque_suite_sizes((opaque_suite_id)raw_suites[i])->ke1;
		uint8_t ke1[OPAQUE_MAX_KE1_BYTES + 8];
		make_ke1(raw_suites[i], ke1);
		const size_t lengths[] = {10, 0, right - 1, right + 1};
		for (size_t j = 0; j < sizeof(lengths) / sizeof(lengths[0]); j++) {
			size_t len;
			uint8_t *packed = pack_recover_start(raw_suites[i], ke1, lengths[j], &len);
			http_reply r;
			rpc_raw("RecoverStart", auth, "application/proto", "1", packed, len, &r);
			check_connect_error(&r, 400, "invalid_argument",
			                    "ke1 has the wrong length");
			http_reply_free(&r);
			free(packed);
		}
		/* A KE3 of the wrong length with a garbage ticket: the ticket fails first. */
		Bkv__V1__RecoverFinishRequest fin = BKV__V1__RECOVER_FINISH_REQUEST__INIT;
		uint8_t junk[40];
		memset(junk, 0x5a, sizeof(junk));
		fin.ticket = (ProtobufCBinaryData){sizeof(junk), junk};
		fin.ke3 = (ProtobufCBinaryData){10, junk};
		uint8_t packed[128];
		const size_t plen = bkv__v1__recover_finish_request__pack(&fin, packed);
		http_reply r;
		rpc_raw("RecoverFinish", auth, "application/proto", "1", packed, plen, &r);
		check_connect_error(&r, 400, "invalid_argument",
		                    "invalid ticket (forged, damaged or for another account)");
		http_reply_free(&r);
		free(auth);
	}
	raw_end(&snap);
}

static void test_raw_invalid_points(void **state)
{
	const bkv_suite suite = *(bkv_suite *)*state;
	const size_t i = suite == BKV_SUITE_P256_SHA256 ? 0 : 1;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[i]));
	const size_t ke1_len = opaque_suite_sizes((opaque_suite_id)suite)->ke1;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	/* All 0xff: the blinded element is not a point (and not canonical). */
	memset(ke1, 0xff, sizeof(ke1));
	size_t len;
	uint8_t *packed = pack_recover_start(suite, ke1, ke1_len, &len);
	http_reply r;
	rpc_raw("RecoverStart", auth, "application/proto", "1", packed, len, &r);
	check_connect_error(&r, 400, "invalid_argument", NULL);
	print_message("    all-0xff KE1: %s\n", r.body);
	http_reply_free(&r);
	free(packed);
	/* All zero: the identity element. */
	memset(ke1, 0, sizeof(ke1));
	packed = pack_recover_start(suite, ke1, ke1_len, &len);
	rpc_raw("RecoverStart", auth, "application/proto", "1", packed, len, &r);
	check_connect_error(&r, 400, "invalid_argument", NULL);
	print_message("    all-zero KE1: %s\n", r.body);
	http_reply_free(&r);
	free(packed);
	/* A valid blinded element but an invalid client key share (last element 0xff...). */
	make_ke1(suite, ke1);
	const size_t npk = opaque_suite_sizes((opaque_suite_id)suite)->Npk;
	memset(ke1 + ke1_len - npk, 0xff, npk);
	packed = pack_recover_start(suite, ke1, ke1_len, &len);
	rpc_raw("RecoverStart", auth, "application/proto", "1", packed, len, &r);
	check_connect_error(&r, 400, "invalid_argument", NULL);
	print_message("    bad client key share: %s\n", r.body);
	http_reply_free(&r);
	free(packed);
	free(auth);
	raw_end(&snap);
}

static void test_raw_wrong_suite(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[1])); /* registered with ristretto255 */
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	size_t ke1_len = make_ke1(BKV_SUITE_RISTRETTO255_SHA512, ke1);
	const uint32_t bad_suites[] = {7, 0, 3, 0xffffffffu};
	for (size_t i = 0; i < sizeof(bad_suites) / sizeof(bad_suites[0]); i++) {
		size_t len;
		uint8_t *packed = pack_recover_start(bad_suites[i], ke1, ke1_len, &len);
		http_reply r;
		rpc_raw("RecoverStart", auth, "application/proto", "1", packed, len, &r);
		check_connect_error(&r, 400, "invalid_argument", "suite is not enabled");
		http_reply_free(&r);
		free(packed);
	}
	/* RegisterStart with suite 7: refused the same way. */
	Bkv__V1__RegisterStartRequest reg = BKV__V1__REGISTER_START_REQUEST__INIT;
	reg.suite = (Bkv__V1__Suite)7;
	reg.registration_request = (ProtobufCBinaryData){32, ke1};
	uint8_t packed[128];
	size_t len = bkv__v1__register_start_request__pack(&reg, packed);
	http_reply r;
	rpc_raw("RegisterStart", auth, "application/proto", "1", packed, len, &r);
	check_connect_error(&r, 400, "invalid_argument", "suite is not enabled");
	http_reply_free(&r);
	/* An enabled suite that is not the one the key was registered with. */
	ke1_len = make_ke1(BKV_SUITE_P256_SHA256, ke1);
	uint8_t *start = pack_recover_start(BKV_SUITE_P256_SHA256, ke1, ke1_len, &len);
	rpc_raw("RecoverStart", auth, "application/proto", "1", start, len, &r);
	check_connect_error(&r, 400, "failed_precondition",
	                    "the backup key is registered with another suite");
	http_reply_free(&r);
	free(start);
	free(auth);
	raw_end(&snap);
}

static void test_raw_oversize_body(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[1]));
	uint8_t *big = calloc(1, MAX_BODY + 4096);
	assert_non_null(big);
	http_reply r;
	rpc_raw("RecoverStart", auth, "application/proto", "1", big, MAX_BODY + 1, &r);
	check_connect_error(&r, 429, "resource_exhausted", "request body exceeds 64 KiB");
	http_reply_free(&r);
	rpc_raw("RecoverStart", auth, "application/proto", "1", big, MAX_BODY + 4096, &r);
	check_connect_error(&r, 429, "resource_exhausted", "request body exceeds 64 KiB");
	http_reply_free(&r);
	/* No token needed to be told it is too big: the size is checked first. */
	rpc_raw("RecoverStart", NULL, "application/proto", "1", big, MAX_BODY + 1, &r);
	check_connect_error(&r, 429, "resource_exhausted", "request body exceeds 64 KiB");
	http_reply_free(&r);
	/* Exactly 64 KiB passes the size check (and is not protobuf: zero tags). */
	rpc_raw("RecoverStart", auth, "application/proto", "1", big, MAX_BODY, &r);
	check_connect_error(&r, 400, "invalid_argument",
	                    "the request body is not a valid protobuf message");
	http_reply_free(&r);
	free(big);
	/* Above evhttp's own cap (1 MiB) evhttp answers by itself, before the Connect layer:
	 * not a Connect error (see the report), but refused, and nothing breaks. */
	const size_t huge_len = 2u * 1024 * 1024;
	uint8_t *huge = calloc(1, huge_len);
	assert_non_null(huge);
	char header[2048];
	snprintf(header, sizeof(header), "Authorization: %s", auth);
	const char *const headers[] = {"Content-Type: application/proto",
	                               "Connect-Protocol-Version: 1", header, NULL};
	if (http_request("POST", "/bkv.v1.BackupKeyVault/RecoverStart", headers, huge, huge_len,
	                 &r)) {
		print_message("    2 MiB body: HTTP %ld %s\n", r.status, r.content_type);
		assert_true(r.status == 413 || r.status == 429);
		http_reply_free(&r);
	} else {
		print_message("    2 MiB body: no answer (%s)\n", r.error);
	}
	free(huge);
	free(auth);
	raw_end(&snap);
}

static void test_raw_unknown_method(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[1]));
	http_reply r;
	rpc_raw("StealKey", auth, "application/proto", "1", "", 0, &r);
	check_connect_error(&r, 404, "unimplemented", "unknown method");
	http_reply_free(&r);
	rpc_raw("getstatus", auth, "application/proto", "1", "", 0, &r);
	check_connect_error(&r, 404, "unimplemented", "unknown method");
	http_reply_free(&r);
	/* Outside the service: a plain 404. */
	assert_true(http_request("POST", "/bkv.v1.Other/GetStatus", NULL, "", 0, &r));
	assert_int_equal(r.status, 404);
	http_reply_free(&r);
	free(auth);
	raw_end(&snap);
}

static void test_raw_wrong_content_type(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[1]));
	static const char *const types[] = {"application/json", "application/grpc", "text/plain",
	                                    "application/proto+json", "application/protobuf"};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		http_reply r;
		rpc_raw("GetStatus", auth, types[i], "1", "", 0, &r);
		check_connect_error(&r, 415, "invalid_argument",
		                    "Content-Type must be application/proto");
		assert_string_equal(r.accept_post, "application/proto");
		http_reply_free(&r);
	}
	http_reply r;
	rpc_raw("GetStatus", auth, NULL, "1", "", 0, &r); /* curl's default form type */
	check_connect_error(&r, 415, "invalid_argument", "Content-Type must be application/proto");
	http_reply_free(&r);
	free(auth);
	raw_end(&snap);
}

static void test_raw_get_on_rpc(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[1]));
	char header[2048];
	snprintf(header, sizeof(header), "Authorization: %s", auth);
	const char *const headers[] = {"Content-Type: application/proto", header, NULL};
	static const char *const methods[] = {"GetStatus", "RecoverStart", "Delete", "GetConfig"};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char path[128];
		snprintf(path, sizeof(path), "/bkv.v1.BackupKeyVault/%s", methods[i]);
		http_reply r;
		assert_true(http_request("GET", path, headers, NULL, 0, &r));
		check_connect_error(&r, 405, "unimplemented", "unary RPCs take POST");
		assert_string_equal(r.allow, "POST");
		http_reply_free(&r);
	}
	free(auth);
	raw_end(&snap);
}

static void test_raw_protocol_version(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	char *auth = bearer(token_for(raw_accounts[1]));
	static const char *const versions[] = {"2", "0", "1.0", "11"};
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		http_reply r;
		rpc_raw("GetStatus", auth, "application/proto", versions[i], "", 0, &r);
		check_connect_error(&r, 400, "invalid_argument",
		                    "unsupported Connect-Protocol-Version (this vault speaks 1)");
		http_reply_free(&r);
	}
	/* Without the header (curl): accepted. */
	http_reply r;
	rpc_raw("GetStatus", auth, "application/proto", NULL, "", 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.content_type, "application/proto");
	Bkv__V1__GetStatusResponse *resp =
	    bkv__v1__get_status_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	assert_non_null(resp);
	assert_true(resp->registered);
	bkv__v1__get_status_response__free_unpacked(resp, NULL);
	http_reply_free(&r);
	free(auth);
	raw_end(&snap);
}

/* Every string in secrets[], and every account id, is absent from the vault's logs. */
static void check_logs_hold_no_secrets(void)
{
	const char *logs[] = {env.request_log, env.audit_log, env.serve_log};
	for (size_t l = 0; l < sizeof(logs) / sizeof(logs[0]); l++) {
		size_t len = 0;
		char *text = slurp(logs[l], &len);
		if (text == NULL) {
			if (l < 2)
				fail_msg("cannot read %s", logs[l]);
			continue;
		}
		for (size_t i = 0; i < nsecrets; i++) {
			const char *s = secrets[i];
			const char *sig = strrchr(s, '.');
			if (memmem(text, len, s, strlen(s)) != NULL ||
			    (sig != NULL && strlen(sig) > 8 &&
			     memmem(text, len, sig + 1, strlen(sig + 1)) != NULL)) {
				free(text);
				fail_msg("a bearer token (or its signature) is in %s", logs[l]);
			}
		}
		for (size_t i = 0; i < ntokens; i++) {
			const char *a = tokens[i].account;
			if (memmem(text, len, a, strlen(a)) != NULL) {
				free(text);
				fail_msg("account id \"%s\" appears in clear in %s", a, logs[l]);
			}
		}
		if (memmem(text, len, PASSWORD, strlen(PASSWORD)) != NULL ||
		    memmem(text, len, WRONG_PASSWORD, strlen(WRONG_PASSWORD)) != NULL) {
			free(text);
			fail_msg("a password is in %s", logs[l]);
		}
		free(text);
	}
}

/* A request-log line of a request refused as unauthenticated: no account is named. */
static void count_refused(json_t *j, void *arg)
{
	const char *code = json_string_value(json_object_get(j, "code"));
	if (code == NULL || strcmp(code, "unauthenticated") != 0)
		return;
	const char *acct = json_string_value(json_object_get(j, "account"));
	assert_non_null(acct);
	assert_string_equal(acct, "");
	(*(unsigned *)arg)++;
}

static void test_raw_authorization(void **state)
{
	(void)state;
	raw_snapshot snap = raw_begin();
	const long log_from = file_size(env.request_log);
	const char *good = token_for(raw_accounts[1]);
	char *expired = mint_token(raw_accounts[1], "--lifetime=-120");
	char *forged = tampered(good);
	char *expired_auth = bearer(expired);
	char *forged_auth = bearer(forged);
	char *long_token = malloc(9001);
	assert_non_null(long_token);
	memset(long_token, 'a', 9000);
	long_token[9000] = '\0';
	char *long_auth = bearer(long_token);
	char *lower = NULL;
	assert_true(asprintf(&lower, "bearer %s", good) > 0);
	remember_secret(lower + 7);
	const struct {
		const char *authorization;
		const char *message;
	} cases[] = {
	    {NULL, "missing Authorization: Bearer token"},
	    {"Basic dXNlcjpwYXNzd29yZA==", "the Authorization header must be \"Bearer <token>\""},
	    {lower, "the Authorization header must be \"Bearer <token>\""},
	    {"Bearer", "the Authorization header must be \"Bearer <token>\""},
	    /* evhttp trims trailing blanks from header values: this is "Bearer". */
	    {"Bearer ", "the Authorization header must be \"Bearer <token>\""},
	    {"Bearer  ", "the Authorization header must be \"Bearer <token>\""},
	    {"Bearer x", "invalid bearer token (malformed or bad signature)"},
	    {"Bearer not.a.jwt", "invalid bearer token (malformed or bad signature)"},
	    {forged_auth, "invalid bearer token (malformed or bad signature)"},
	    {expired_auth, "the bearer token has expired"},
	    {long_auth, "the bearer token is too long"},
	};
	static const char *const methods[] = {"GetStatus", "RecoverStart", "RegisterStart",
	                                      "Delete"};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
			http_reply r;
			rpc_raw(methods[m], cases[i].authorization, "application/proto", "1", "", 0,
			        &r);
			check_connect_error(&r, 401, "unauthenticated", cases[i].message);
			http_reply_free(&r);
		}
	}
	/* GetConfig needs no token. */
	http_reply r;
	rpc_raw("GetConfig", NULL, "application/proto", "1", "", 0, &r);
	assert_int_equal(r.status, 200);
	http_reply_free(&r);

	/* Each refusal is in the request log, as unauthenticated and with no account. */
	unsigned refused = 0;
	each_json_line(env.request_log, log_from, count_refused, &refused);
	assert_int_equal(refused, (sizeof(cases) / sizeof(cases[0])) *
	                              (sizeof(methods) / sizeof(methods[0])));
	check_logs_hold_no_secrets();
	free(expired);
	free(forged);
	free(expired_auth);
	free(forged_auth);
	free(long_token);
	free(long_auth);
	free(lower);
	raw_end(&snap);
}

static void test_healthz_and_metrics(void **state)
{
	(void)state;
	http_reply r;
	assert_true(http_request("GET", "/healthz", NULL, NULL, 0, &r));
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok\n");
	http_reply_free(&r);
	/* Metrics are on their own listener only: the public port does not know /metrics. */
	assert_true(http_request("GET", "/metrics", NULL, NULL, 0, &r));
	assert_int_equal(r.status, 404);
	http_reply_free(&r);

	/* Known traffic, then exact counter deltas. */
	char *m0 = metrics_text();
	const char *token = token_for("http-metrics");
	bkv_client *c = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 0);
	expect_recover(c, token, PASSWORD, &key);                 /* 1 attempt consumed */
	expect_wrong(c, token, DEFAULT_LIMIT - 1, DEFAULT_LIMIT); /* 1 more */
	bkv_error err = {0};
	EXPECT_STATUS(
	    bkv_register_replacing(c, token, PASSWORD, strlen(PASSWORD), &key, 1, 1, NULL, &err),
	    BKV_OK, err);
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(
	    bkv_recover(c, token, WRONG_PASSWORD, strlen(WRONG_PASSWORD), &got, &info, &err),
	    BKV_ERR_DESTROYED, err); /* 1 more, and a destruction */
	bkv_client_free(c);
	char *m1 = metrics_text();

	static const char *const names[] = {"bkv_requests_total", "bkv_request_duration_seconds",
	                                    "bkv_token_operation_duration_seconds",
	                                    "bkv_attempts_consumed_total",
	                                    "bkv_records_destroyed_total"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char help[128];
		snprintf(help, sizeof(help), "# TYPE %s ", names[i]);
		if (strstr(m1, help) == NULL)
			fail_msg("/metrics lacks %s", names[i]);
	}
	const double consumed = metric_required(m1, "bkv_attempts_consumed_total") -
	                        metric_required(m0, "bkv_attempts_consumed_total");
	const double destroyed = metric_required(m1, "bkv_records_destroyed_total") -
	                         metric_required(m0, "bkv_records_destroyed_total");
	assert_true(consumed == 3);
	assert_true(destroyed == 1);
#define DELTA(key) (metric(m1, key) - metric(m0, key))
	assert_true(DELTA("bkv_requests_total{method=\"RegisterFinish\",code=\"ok\"}") == 2);
	assert_true(DELTA("bkv_requests_total{method=\"RecoverStart\",code=\"ok\"}") == 3);
	assert_true(DELTA("bkv_requests_total{method=\"RecoverFinish\",code=\"ok\"}") == 1);
	assert_true(
	    DELTA("bkv_requests_total{method=\"RecoverFinish\",code=\"permission_denied\"}") == 2);
	assert_true(DELTA("bkv_requests_total{method=\"GetStatus\",code=\"ok\"}") == 3);
#undef DELTA
	/* Across everything so far: the histograms agree with the counters. */
	static const char *const methods[] = {"GetConfig",    "RegisterStart", "RegisterFinish",
	                                      "RecoverStart", "RecoverFinish", "GetStatus",
	                                      "Delete",       "unknown"};
	double total_requests = 0;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char label[64], prefix[128];
		snprintf(label, sizeof(label), "method=\"%s\"", methods[i]);
		snprintf(prefix, sizeof(prefix), "bkv_requests_total{method=\"%s\",", methods[i]);
		const double count = check_histogram(m1, "bkv_request_duration_seconds", label);
		const double requests = metric_sum(m1, prefix);
		if (count != requests)
			fail_msg("%s: %g latency samples but %g requests", methods[i], count,
			         requests);
		total_requests += requests;
	}
	assert_true(total_requests > 50);
	assert_true(
	    metric_sum(m1, "bkv_requests_total{method=\"unknown\",code=\"unimplemented\"}") > 0);
	static const char *const ops[] = {"encrypt", "decrypt", "hmac", "ecdh"};
	double token_ops = 0, token_ops_before = 0;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		char label[64], key_name[128];
		snprintf(label, sizeof(label), "op=\"%s\"", ops[i]);
		token_ops += check_histogram(m1, "bkv_token_operation_duration_seconds", label);
		snprintf(key_name, sizeof(key_name),
		         "bkv_token_operation_duration_seconds_count{%s}", label);
		token_ops_before += metric(m0, key_name);
	}
	/* Registrations seal, recoveries open and run the AKE: the token was busy. */
	assert_true(token_ops - token_ops_before >= 8);
	metric_required(m1, "bkv_worker_restarts_total");
	print_message("    %g requests, %g token operations, %g attempts consumed so far\n",
	              total_requests, token_ops, metric(m1, "bkv_attempts_consumed_total"));
	free(m0);
	free(m1);
}

/* ------------------------------------------------------------------------------------ */
/* Concurrency: K guessers, exactly attempt_limit attempts                               */
/* ------------------------------------------------------------------------------------ */

typedef struct guesser {
	bkv_client *client;
	const char *token;
	pthread_barrier_t *barrier;
	unsigned calls, wrong, destroyed, not_registered, unavailable, other;
	bkv_status other_status;
	char other_message[BKV_MESSAGE_BYTES];
} guesser;

static void *guess_until_gone(void *arg)
{
	guesser *g = arg;
	pthread_barrier_wait(g->barrier);
	for (unsigned i = 0; i < 200; i++) {
		bkv_error err = {0};
		bkv_key got;
		bkv_recover_info info;
		g->calls++;
		const bkv_status st = bkv_recover(g->client, g->token, WRONG_PASSWORD,
		                                  strlen(WRONG_PASSWORD), &got, &info, &err);
		if (st == BKV_ERR_WRONG_PASSWORD) {
			g->wrong++;
		} else if (st == BKV_ERR_DESTROYED) {
			g->destroyed++;
			break;
		} else if (st == BKV_ERR_NOT_REGISTERED) {
			g->not_registered++;
			break;
		} else if (st == BKV_ERR_UNAVAILABLE) {
			g->unavailable++; /* "busy with this account": nothing consumed */
		} else {
			g->other++;
			g->other_status = st;
			snprintf(g->other_message, sizeof(g->other_message), "%s", err.message);
			break;
		}
	}
	return NULL;
}

static void test_concurrent_guessers(void **state)
{
	(void)state;
	const char *target = "http-burst";
	const char *bystander = "http-burst-bystander";
	const char *target_token = token_for(target);
	const char *bystander_token = token_for(bystander);
	bkv_client *c = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	bkv_key key, other_key;
	bkv_key_generate(&key);
	bkv_key_generate(&other_key);
	do_register(c, bystander_token, PASSWORD, &other_key, 0);
	do_register(c, target_token, PASSWORD, &key, BURST_LIMIT);
	const long audit_from = file_size(env.audit_log);
	char *m0 = metrics_text();

	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, GUESSERS);
	guesser g[GUESSERS];
	pthread_t threads[GUESSERS];
	/* Half share one handle (libbkv is thread-safe), half have their own. */
	bkv_client *own[GUESSERS] = {0};
	for (size_t i = 0; i < GUESSERS; i++) {
		memset(&g[i], 0, sizeof(g[i]));
		g[i].client = i % 2 == 0 ? c : (own[i] = cheap_client(BKV_SUITE_VAULT_PREFERENCE));
		g[i].token = target_token;
		g[i].barrier = &barrier;
	}
	const double t0 = now_ms();
	for (size_t i = 0; i < GUESSERS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, guess_until_gone, &g[i]), 0);
	for (size_t i = 0; i < GUESSERS; i++)
		pthread_join(threads[i], NULL);
	const double elapsed = now_ms() - t0;
	pthread_barrier_destroy(&barrier);
	for (size_t i = 0; i < GUESSERS; i++)
		bkv_client_free(own[i]);

	unsigned calls = 0, wrong = 0, destroyed = 0, not_registered = 0, unavailable = 0;
	for (size_t i = 0; i < GUESSERS; i++) {
		calls += g[i].calls;
		wrong += g[i].wrong;
		destroyed += g[i].destroyed;
		not_registered += g[i].not_registered;
		unavailable += g[i].unavailable;
		if (g[i].other > 0)
			fail_msg("guesser %zu: unexpected %s: %s", i,
			         bkv_status_name(g[i].other_status), g[i].other_message);
	}
	char *m1 = metrics_text();
	const double consumed =
	    metric(m1, "bkv_attempts_consumed_total") - metric(m0, "bkv_attempts_consumed_total");
	const double destructions =
	    metric(m1, "bkv_records_destroyed_total") - metric(m0, "bkv_records_destroyed_total");
	free(m0);
	free(m1);
	const audit_counts audit = audit_scan(target, audit_from);
	print_message("    %d guessers, %.0f ms: %u calls, %u wrong-password, %u destroyed, %u "
	              "not registered, %u busy; %g attempts consumed, %g destroyed; audit: %u "
	              "attempts, %u destroyed\n",
	              GUESSERS, elapsed, calls, wrong, destroyed, not_registered, unavailable,
	              consumed, destructions, audit.attempt_used, audit.destroyed);

	/* Exactly attempt_limit KE2s went out, each counted once, 1..limit. */
	assert_true(consumed == BURST_LIMIT);
	assert_int_equal(audit.attempt_used, BURST_LIMIT);
	for (unsigned v = 1; v <= BURST_LIMIT; v++) {
		if (audit.used_value[v] != 1)
			fail_msg("attempts_used=%u logged %u times", v, audit.used_value[v]);
	}
	assert_true(destructions == 1);
	assert_int_equal(audit.destroyed, 1);
	/* Each consuming call ended in WRONG_PASSWORD or DESTROYED; no call was told
	 * WRONG_PASSWORD without consuming one. */
	assert_true(wrong <= BURST_LIMIT);
	assert_true(wrong + destroyed >= BURST_LIMIT);
	/* Every guesser learned that the key was destroyed: a tombstone, never "not
	 * registered". */
	assert_int_equal(not_registered, 0);
	assert_int_equal(destroyed, GUESSERS);

	const bkv_account_status gone = get_status(c, target_token);
	assert_false(gone.registered);
	assert_int_equal(gone.state, BKV_RECORD_DESTROYED);
	assert_int_equal(gone.attempts_used, BURST_LIMIT);
	expect_destroyed(c, target_token, PASSWORD, BURST_LIMIT);
	/* The bystander was untouched. */
	const bkv_account_status s = get_status(c, bystander_token);
	assert_true(s.registered);
	assert_int_equal(s.attempts_used, 0);
	assert_int_equal(audit_scan(bystander, audit_from).attempt_used, 0);
	expect_recover(c, bystander_token, PASSWORD, &other_key);
	bkv_client_free(c);
}

static void longer_recover_start(json_t *j, void *arg)
{
	const char *method = json_string_value(json_object_get(j, "method"));
	const double ms = json_number_value(json_object_get(j, "latency_ms"));
	double *longest = arg;
	if (method != NULL && strcmp(method, "RecoverStart") == 0 && ms > *longest)
		*longest = ms;
}

/* The longest RecoverStart in the request log since offset from, in ms. */
static double longest_recover_start_ms(long from)
{
	double longest = 0;
	each_json_line(env.request_log, from, longer_recover_start, &longest);
	return longest;
}

/* A request that will write announces its write before it computes, so that the committer
 * may hold a commit for it (handlers.h); a refused one ends its announcement with it, or
 * the committer would hold later commits for writes that never come. RecoverStarts for an
 * account that was never registered announce and write nothing; afterwards /metrics shows
 * no announcement open. On both backends: each runs its workers' commits in a group. */
static void test_refused_writes_end_their_announcements(void **state)
{
	(void)state;
	char *m0 = metrics_text();
	double v = 0;
	assert_true(metric_find(m0, "bkv_commits_total", &v));
	free(m0);
	const bkv_suite suite = BKV_SUITE_RISTRETTO255_SHA512;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	const size_t ke1_len = make_ke1(suite, ke1);
	size_t len;
	uint8_t *packed = pack_recover_start(suite, ke1, ke1_len, &len);
	char *auth = bearer(token_for("http-never-registered"));
	for (int i = 0; i < 4; i++) {
		http_reply r;
		rpc_raw("RecoverStart", auth, "application/proto", "1", packed, len, &r);
		if (r.status != 404)
			fail_msg("RecoverStart of an account never registered: HTTP %ld %s",
			         r.status, r.body);
		http_reply_free(&r);
	}
	free(auth);
	free(packed);
	char *m1 = metrics_text();
	assert_true(metric_required(m1, "bkv_commit_writes_announced") == 0);
	assert_true(metric_required(m1, "bkv_commit_writes_total") >=
	            metric_required(m1, "bkv_commits_total"));
	free(m1);
}

/* Holds back every write to the vault's records until tb_release_writes (testblock.h). */
static tb_block hold_db_writes(void)
{
	char db_path[PATH_MAX];
	path_join(db_path, env.vault_dir, "bkv.db");
	return tb_block_writes(db_path, getenv("BKV_DEV_VAULT_STORAGE"));
}

/* A client that hangs up while its RecoverStart waits for the commit (the test holds the
 * database's write lock) costs that connection only. The request outlives its connection:
 * the worker closes it at read_timeout while the request waits on a fiber (the loop runs
 * meanwhile), and evhttp keeps the request without its connection. When the lock is free
 * the attempt is committed (fail-safe: counted, though no KE2 went out), the answer goes
 * nowhere and frees the request, and the worker goes on. bkv_connect_handle logs before it
 * answers and touches the request no more after; the sanitizer build runs this path
 * (libevent's own reads are outside its view). With a committer, where the workers run
 * requests on fibers: SQLite's test vault is given one, PostgreSQL always has one. */
static void test_a_client_gone_while_its_attempt_commits(void **state)
{
	(void)state;
	const bkv_suite suite = BKV_SUITE_RISTRETTO255_SHA512;
	const char *token = token_for("http-gone");
	bkv_client *c = cheap_client(suite);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 10);
	pid_t before[MAX_PIDS], after[MAX_PIDS];
	const size_t n_before = tp_bkvd_workers(env.master, before, MAX_PIDS);

	tb_block held = hold_db_writes();
	const opaque_config oc = cheap_config(suite);
	const opaque_sizes *sizes = opaque_suite_sizes(oc.suite);
	opaque_client_login_state login;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	assert_int_equal(opaque_client_login_start(&oc, (const uint8_t *)PASSWORD, strlen(PASSWORD),
	                                           &login, ke1, sizes->ke1),
	                 OPAQUE_OK);
	opaque_client_login_state_wipe(&login);
	size_t len;
	uint8_t *packed = pack_recover_start(suite, ke1, sizes->ke1, &len);
	const long log_from = file_size(env.request_log);
	char *auth = bearer(token), *auth_header = NULL;
	assert_true(asprintf(&auth_header, "Authorization: %s", auth) > 0);
	const char *headers[] = {"Content-Type: application/proto", "Connect-Protocol-Version: 1",
	                         auth_header, NULL};
	http_reply r;
	const bool answered =
	    tu_http_request(env.ca, env.url, 500, "POST", "/bkv.v1.BackupKeyVault/RecoverStart",
	                    headers, packed, len, &r);
	http_reply_free(&r);
	free(packed);
	free(auth);
	free(auth_header);
	/* no answer while its commit waits for the lock; curl has closed the connection */
	assert_false(answered);
	/* past the request's deadline, within the committer's 5 s wait for the lock (SQLite's
	 * busy timeout, PostgreSQL's statement_timeout) */
	sleep_ms(READ_TIMEOUT_S * 1000 + 700);
	tb_release_writes(&held);

	const double deadline = now_ms() + 10000;
	uint32_t used = 0;
	while ((used = get_status(c, token).attempts_used) == 0 && now_ms() < deadline)
		sleep_ms(10);
	assert_int_equal(used, 1);
	/* answered (and logged) only after its connection's deadline had closed it. The worker
	 * logs it when its fiber resumes after the commit, which may come after another worker
	 * answered the status above: wait for the line, not just for the commit. */
	double longest = 0;
	while ((longest = longest_recover_start_ms(log_from)) == 0 && now_ms() < deadline)
		sleep_ms(10);
	assert_true(longest >= READ_TIMEOUT_S * 1000.0);
	assert_true(healthz_ok());
	const size_t n_after = tp_bkvd_workers(env.master, after, MAX_PIDS);
	assert_int_equal(n_after, n_before);
	assert_memory_equal(after, before, n_before * sizeof(pid_t));
	expect_recover(c, token, PASSWORD, &key);
	assert_int_equal(get_status(c, token).attempts_used, 0);
	bkv_client_free(c);
}

/* Restarts the vault with n workers. */
static void restart_with_workers(unsigned n)
{
	int status = -1;
	assert_true(vault_stop(SIGTERM, &status));
	env.workers = n;
	assert_true(vault_start());
}

/* A database read that waits stalls no worker: on PostgreSQL a read yields its fiber while
 * the server works, and the worker answers other requests meanwhile. With one worker, the
 * test holds every read behind a lock (ACCESS EXCLUSIVE on the records and the rate
 * buckets), sends a GetStatus (its client gives up; the request goes on) and, once its
 * read waits at the server, asks /healthz on a new connection: answered while the same
 * read, the same session's same statement, still waits. A read that blocked its worker
 * would leave /healthz unanswered until the statement timeout (5 s) ended that read.
 * SQLite's reads wait on no server: PostgreSQL only. */
static void test_a_waiting_database_read_stalls_no_worker(void **state)
{
	(void)state;
	const char *url = getenv("BKV_DEV_VAULT_STORAGE");
	if (url == NULL)
		skip();
	restart_with_workers(1);
	reads_held = tb_block_reads(url);
	PGconn *held = reads_held;
	PGresult *res;
	char *auth = bearer(token_for("http-read-waits")), *auth_header = NULL;
	assert_true(asprintf(&auth_header, "Authorization: %s", auth) > 0);
	const char *headers[] = {"Content-Type: application/proto", "Connect-Protocol-Version: 1",
	                         auth_header, NULL};
	http_reply r;
	assert_false(tu_http_request(env.ca, env.url, 300, "POST",
	                             "/bkv.v1.BackupKeyVault/GetStatus", headers, "", 0, &r));
	http_reply_free(&r);
	/* the statements waiting for the lock, as pid@start */
	const char *waiting_sql = "SELECT coalesce(string_agg(pid || '@' || query_start, ','), '') "
	                          "FROM pg_stat_activity WHERE datname = current_database() AND "
	                          "wait_event_type = 'Lock'";
	char before[256] = "";
	const double deadline = now_ms() + 10000;
	while (before[0] == '\0' && now_ms() < deadline) {
		res = PQexec(held, waiting_sql);
		assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
		snprintf(before, sizeof(before), "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		if (before[0] == '\0')
			sleep_ms(10);
	}
	assert_true(before[0] != '\0');
	assert_null(strchr(before, ',')); /* one worker, one connection: one read */
	assert_true(healthz_ok());
	res = PQexec(held, waiting_sql);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), before);
	PQclear(res);
	tb_release_reads(&reads_held);
	free(auth);
	free(auth_header);
	restart_with_workers(WORKERS);
}

/* ------------------------------------------------------------------------------------ */
/* Restarts and kills                                                                    */
/* ------------------------------------------------------------------------------------ */

static void test_restart(void **state)
{
	(void)state;
	const bkv_suite suites[2] = {BKV_SUITE_P256_SHA256, BKV_SUITE_RISTRETTO255_SHA512};
	bkv_key keys[2];
	const char *toks[2];
	bkv_account_status before[2];
	for (size_t i = 0; i < 2; i++) {
		char account[64];
		account_name(account, sizeof(account), "restart", suites[i]);
		toks[i] = token_for(account);
		bkv_client *c = cheap_client(suites[i]);
		bkv_key_generate(&keys[i]);
		do_register(c, toks[i], PASSWORD, &keys[i], 0);
		expect_wrong(c, toks[i], DEFAULT_LIMIT - 1, DEFAULT_LIMIT);
		before[i] = get_status(c, toks[i]);
		bkv_client_free(c);
	}
	const double t0 = now_ms();
	int status = -1;
	assert_true(vault_stop(SIGTERM, &status));
	const double stop_ms = now_ms() - t0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(vault_start());
	print_message("    SIGTERM stop %.0f ms, start %.0f ms\n", stop_ms,
	              now_ms() - t0 - stop_ms);
	for (size_t i = 0; i < 2; i++) {
		bkv_client *c = cheap_client(suites[i]);
		const bkv_account_status after = get_status(c, toks[i]);
		assert_same_status(&before[i], &after);
		expect_recover(c, toks[i], PASSWORD, &keys[i]);
		bkv_client_free(c);
	}
}

/* The worker (of workers[]) holding an established connection on the vault's port, or 0. */
static pid_t worker_with_connection(const pid_t *workers, size_t n)
{
	unsigned long inodes[128];
	size_t ninodes = 0;
	static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	for (size_t t = 0; t < 2; t++) {
		FILE *f = fopen(tables[t], "r");
		char line[512];
		if (f == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL && ninodes < 128) {
			unsigned lport, st;
			unsigned long inode;
			if (sscanf(line,
			           " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*s %*s %*s %*u "
			           "%*u %lu",
			           &lport, &st, &inode) == 3 &&
			    lport == env.port && st == 1 && inode != 0)
				inodes[ninodes++] = inode;
		}
		fclose(f);
	}
	for (size_t w = 0; w < n; w++) {
		char dir[64];
		snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)workers[w]);
		DIR *d = opendir(dir);
		if (d == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char path[384], link[64];
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			ssize_t len = readlink(path, link, sizeof(link) - 1);
			unsigned long inode;
			if (len <= 0)
				continue;
			link[len] = '\0';
			if (sscanf(link, "socket:[%lu]", &inode) != 1)
				continue;
			for (size_t i = 0; i < ninodes; i++) {
				if (inodes[i] == inode) {
					closedir(d);
					return workers[w];
				}
			}
		}
		closedir(d);
	}
	return 0;
}

typedef struct looper {
	bkv_client *client;
	const char *token;
	atomic_uint calls, wrong, unavailable, other, after_kill;
	atomic_bool killed, done, in_call;
	atomic_uint max_used_seen; /* attempt_limit - attempts_remaining, from the answers */
} looper;

static void *loop_wrong_guesses(void *arg)
{
	looper *l = arg;
	/* Stop before the limit of 10: at most 8 calls, each consuming at most one attempt,
	 * and one more attempt if the kill cut a call after its write was queued (the write
	 * may still be committed, and curl sends the request again on a new connection). */
	while (atomic_load(&l->calls) < 8 && atomic_load(&l->after_kill) < 3) {
		bkv_error err = {0};
		bkv_key got;
		bkv_recover_info info;
		atomic_fetch_add(&l->calls, 1);
		atomic_store(&l->in_call, true);
		const bkv_status st = bkv_recover(l->client, l->token, WRONG_PASSWORD,
		                                  strlen(WRONG_PASSWORD), &got, &info, &err);
		atomic_store(&l->in_call, false);
		if (st == BKV_ERR_WRONG_PASSWORD) {
			atomic_fetch_add(&l->wrong, 1);
			if (info.attempts_known) {
				const unsigned used = info.attempt_limit - info.attempts_remaining;
				unsigned seen = atomic_load(&l->max_used_seen);
				while (used > seen && !atomic_compare_exchange_weak(
				                          &l->max_used_seen, &seen, used)) {
				}
			}
		} else if (st == BKV_ERR_UNAVAILABLE || st == BKV_ERR_PROTOCOL) {
			atomic_fetch_add(&l->unavailable, 1); /* the kill cut this one */
		} else {
			atomic_fetch_add(&l->other, 1);
		}
		if (atomic_load(&l->killed))
			atomic_fetch_add(&l->after_kill, 1);
	}
	atomic_store(&l->done, true);
	return NULL;
}

/* Polls GetStatus; attempts_used must never go down. Violations are recorded, not
 * asserted, so no assertion jumps out while the guesser thread still runs. */
typedef struct monitor {
	bkv_client *client;
	const char *token;
	uint32_t last;
	unsigned polls, failures;
	char violation[128];
} monitor;

static void monitor_poll(monitor *m)
{
	bkv_account_status s;
	bkv_error err = {0};
	/* Without a handle of its own, a fresh one per poll, so the monitor holds no
	 * connection open. */
	bkv_client *c = m->client ? m->client : cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	const bkv_status st = bkv_status_get(c, m->token, &s, &err);
	if (c != m->client)
		bkv_client_free(c);
	if (st != BKV_OK) {
		m->failures++; /* its connection may have been on the killed worker */
		return;
	}
	m->polls++;
	if (!s.registered && m->violation[0] == '\0')
		snprintf(m->violation, sizeof(m->violation), "the account vanished");
	if (s.attempts_used < m->last && m->violation[0] == '\0')
		snprintf(m->violation, sizeof(m->violation), "attempts_used went down: %u -> %u",
		         m->last, s.attempts_used);
	if (s.attempts_used > m->last)
		m->last = s.attempts_used;
}

static void test_kill_worker(void **state)
{
	(void)state;
	const char *account = "http-kill-worker";
	const char *token = token_for(account);
	bkv_client *setup = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(setup, token, PASSWORD, &key, 10);
	bkv_client_free(setup);
	const double restarts_before = current_metric("bkv_worker_restarts_total");
	pid_t workers[MAX_PIDS];
	const size_t nworkers = tp_bkvd_workers(env.master, workers, MAX_PIDS);
	assert_int_equal(nworkers, WORKERS);

	looper l;
	memset(&l, 0, sizeof(l));
	l.client = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	l.token = token;
	monitor m = {.client = NULL, .token = token};
	const double consumed_before = current_metric("bkv_attempts_consumed_total");
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, loop_wrong_guesses, &l), 0);

	double deadline = now_ms() + 10000;
	while (atomic_load(&l.wrong) < 2 && !atomic_load(&l.done) && now_ms() < deadline)
		monitor_poll(&m);
	/* Kill while the guesser is inside a call, the worker holding its connection (the
	 * only one open: the monitor opens a fresh one per poll and closes it). */
	while (!atomic_load(&l.in_call) && !atomic_load(&l.done) && now_ms() < deadline) {
	}
	pid_t victim = worker_with_connection(workers, nworkers);
	const bool serving = victim != 0;
	if (victim == 0)
		victim = workers[0];
	const bool in_flight = atomic_load(&l.in_call);
	assert_int_equal(kill(victim, SIGKILL), 0);
	atomic_store(&l.killed, true);
	const double killed_at = now_ms();
	m.client = cheap_client(BKV_SUITE_VAULT_PREFERENCE);

	deadline = now_ms() + 20000;
	while (!atomic_load(&l.done) && now_ms() < deadline) {
		monitor_poll(&m);
		sleep_ms(2);
	}
	pthread_join(thread, NULL);
	if (m.violation[0] != '\0')
		fail_msg("%s", m.violation);

	/* The master restarts the worker. */
	deadline = now_ms() + 10000;
	bool restarted = false;
	while (!restarted && now_ms() < deadline) {
		pid_t now[MAX_PIDS];
		const size_t n = tp_bkvd_workers(env.master, now, MAX_PIDS);
		bool victim_gone = true;
		for (size_t i = 0; i < n; i++)
			victim_gone = victim_gone && now[i] != victim;
		restarted = n == WORKERS && victim_gone;
		if (!restarted)
			sleep_ms(10);
	}
	assert_true(restarted);
	const double restart_ms = now_ms() - killed_at;
	assert_true(current_metric("bkv_worker_restarts_total") == restarts_before + 1);
	for (int i = 0; i < 20; i++)
		monitor_poll(&m);
	if (m.violation[0] != '\0')
		fail_msg("%s", m.violation);
	const double consumed = current_metric("bkv_attempts_consumed_total") - consumed_before;
	print_message("    killed worker %d (%s, %s); guesser: %u calls, %u wrong, %u cut by the "
	              "kill; %g attempts consumed; restarted in %.0f ms; %u status polls (%u "
	              "failed), attempts_used %u\n",
	              (int)victim, serving ? "serving the guesser" : "first worker",
	              in_flight ? "guesser mid-call" : "guesser between calls",
	              atomic_load(&l.calls), atomic_load(&l.wrong), atomic_load(&l.unavailable),
	              consumed, restart_ms, m.polls, m.failures, m.last);
	/* Each committed attempt was counted (the metric is bumped just after the commit, so a
	 * kill in between could leave it one short). */
	assert_true(consumed <= m.last && m.last <= consumed + 1);
	assert_int_equal(atomic_load(&l.other), 0);
	assert_true(m.polls > 0);
	/* Every committed guess is still counted, and the account is still served. */
	assert_true(m.last >= atomic_load(&l.max_used_seen));
	assert_true(m.last >= atomic_load(&l.wrong));
	expect_recover(m.client, token, PASSWORD, &key);
	assert_int_equal(get_status(m.client, token).attempts_used, 0);
	char *log = slurp(env.serve_log, NULL);
	char needle[96];
	snprintf(needle, sizeof(needle), "worker %d killed by signal 9; restarting it",
	         (int)victim);
	const bool logged = log != NULL && strstr(log, needle) != NULL;
	free(log);
	assert_true(logged);
	bkv_client_free(l.client);
	bkv_client_free(m.client);
}

static void test_kill_master(void **state)
{
	(void)state;
	const char *account = "http-kill-master";
	const char *token = token_for(account);
	bkv_client *c = cheap_client(BKV_SUITE_P256_SHA256);
	bkv_key key;
	bkv_key_generate(&key);
	do_register(c, token, PASSWORD, &key, 10);
	expect_wrong(c, token, 9, 10);
	expect_wrong(c, token, 8, 10);
	const bkv_account_status before = get_status(c, token);
	assert_int_equal(before.attempts_used, 2);
	bkv_client_free(c);

	pid_t workers[MAX_PIDS];
	const size_t nworkers = tp_bkvd_workers(env.master, workers, MAX_PIDS);
	assert_int_equal(nworkers, WORKERS);
	const pid_t old_master = env.master;
	assert_int_equal(kill(old_master, SIGKILL), 0);
	const int status = wait_child(old_master);
	env.master = 0;
	master_for_signal = 0;
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	/* A new master on the same database and token (the orphans drain meanwhile). */
	const double t0 = now_ms();
	assert_true(vault_start());
	const double start_ms = now_ms() - t0;
	c = cheap_client(BKV_SUITE_P256_SHA256);
	const bkv_account_status after = get_status(c, token);
	assert_same_status(&before, &after);
	expect_recover(c, token, PASSWORD, &key);
	bkv_client_free(c);

	/* The old workers follow their master (PR_SET_PDEATHSIG) and come back to this
	 * subreaper to be waited for: none is left behind. */
	const double t1 = now_ms();
	for (size_t i = 0; i < nworkers; i++) {
		if (!wait_gone(workers[i], ORPHAN_TIMEOUT_MS))
			fail_msg("worker %d outlived its SIGKILLed master", (int)workers[i]);
	}
	print_message("    restart after SIGKILL %.0f ms; orphaned workers gone after %.0f ms\n",
	              start_ms, now_ms() - t1);
}

/* ------------------------------------------------------------------------------------ */
/* The vault's published Argon2id parameters (t=3, m=64 MiB, p=4)                         */
/* ------------------------------------------------------------------------------------ */

static void test_published_parameters(void **state)
{
	(void)state;
	http_reply r;
	rpc_raw("GetConfig", NULL, "application/proto", "1", "", 0, &r);
	assert_int_equal(r.status, 200);
	Bkv__V1__GetConfigResponse *cfg =
	    bkv__v1__get_config_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	http_reply_free(&r);
	assert_non_null(cfg);
	assert_non_null(cfg->ksf);
	assert_string_equal(cfg->ksf->algorithm, "argon2id");
	assert_int_equal(cfg->ksf->iterations, 3);
	assert_int_equal(cfg->ksf->memory_kib, 65536);
	assert_int_equal(cfg->ksf->parallelism, 4);
	assert_int_equal(cfg->n_suites, 2);
	assert_int_equal(cfg->suites[0], BKV__V1__SUITE__SUITE_RISTRETTO255_SHA512);
	assert_int_equal(cfg->default_attempt_limit, DEFAULT_LIMIT);
	bkv__v1__get_config_response__free_unpacked(cfg, NULL);

	const char *token = token_for("http-published-ksf");
	bkv_client *c = make_client(BKV_SUITE_VAULT_PREFERENCE, false, env.ca, NULL, NULL);
	bkv_key key;
	bkv_key_generate(&key);
	const double t0 = now_ms();
	do_register(c, token, PASSWORD, &key, 0);
	expect_recover(c, token, PASSWORD, &key);
	print_message("    register + recover with t=3 m=65536 p=4: %.0f ms\n", now_ms() - t0);
	assert_int_equal(get_status(c, token).suite, BKV_SUITE_RISTRETTO255_SHA512);
	bkv_client_free(c);
	/* A client with cheap parameters derives other keys: it cannot open this record. */
	c = cheap_client(BKV_SUITE_VAULT_PREFERENCE);
	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	EXPECT_STATUS(bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err),
	              BKV_ERR_WRONG_PASSWORD, err);
	bkv_client_free(c);
}

static void test_logs_clean(void **state)
{
	(void)state;
	check_logs_hold_no_secrets();
	if (serve_log_has_sanitizer_report())
		fail_msg("bkvd reported sanitizer findings");
}

/* ------------------------------------------------------------------------------------ */

/* One test per suite, named like test_delete/suite_p256. */
#define TEST_ENTRY(name, f, state)                                                                 \
	{                                                                                          \
		name, f, ensure_vault, report_time, state                                          \
	}
#define SUITE_TEST(f, suite) TEST_ENTRY(#f "/" #suite, f, &suite)
#define PER_SUITE(f)         SUITE_TEST(f, suite_p256), SUITE_TEST(f, suite_r255)
#define ONCE(f)              cmocka_unit_test_setup_teardown(f, ensure_vault, report_time)

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s BKVD DEV_VAULT_SCRIPT (under tests/with-vault)\n",
		        argv[0]);
		return 2;
	}
	env.bkvd = argv[1];
	env.dev_vault = argv[2];
	setenv("BKVD", env.bkvd, 1);
	/* Workers orphaned by a killed master are re-parented here, to be waited for. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	struct sigaction sa = {.sa_handler = on_fatal_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	atexit(cleanup_at_exit);
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;

	const struct CMUnitTest tests[] = {
	    PER_SUITE(test_register_recover),
	    PER_SUITE(test_change_password),
	    PER_SUITE(test_change_password_keeps_limit),
	    PER_SUITE(test_wrong_password_countdown),
	    PER_SUITE(test_delete),
	    PER_SUITE(test_status_fields),
	    PER_SUITE(test_register_is_create_only),
	    PER_SUITE(test_register_replacing),
	    ONCE(test_change_password_racing_a_replacement),
	    ONCE(test_versions_per_account),
	    PER_SUITE(test_tombstone),
	    PER_SUITE(test_delete_tombstone),
	    PER_SUITE(test_ticket_of_an_earlier_registration),
	    ONCE(test_raw_register_finish),
	    ONCE(test_data_loss),
	    ONCE(test_bad_tokens),
	    ONCE(test_vault_down),
	    ONCE(test_tls),
	    ONCE(test_raw_garbage_body),
	    ONCE(test_raw_truncated_protobuf),
	    ONCE(test_raw_wrong_lengths),
	    PER_SUITE(test_raw_invalid_points),
	    ONCE(test_raw_wrong_suite),
	    ONCE(test_raw_oversize_body),
	    ONCE(test_raw_unknown_method),
	    ONCE(test_raw_wrong_content_type),
	    ONCE(test_raw_get_on_rpc),
	    ONCE(test_raw_protocol_version),
	    ONCE(test_raw_authorization),
	    ONCE(test_healthz_and_metrics),
	    ONCE(test_concurrent_guessers),
	    ONCE(test_a_client_gone_while_its_attempt_commits),
	    ONCE(test_a_waiting_database_read_stalls_no_worker),
	    ONCE(test_refused_writes_end_their_announcements),
	    ONCE(test_restart),
	    ONCE(test_kill_worker),
	    ONCE(test_kill_master),
	    ONCE(test_published_parameters),
	    ONCE(test_logs_clean),
	};
	const int failed =
	    cmocka_run_group_tests_name("vault_http", tests, group_setup, group_teardown);
	curl_global_cleanup();
	return failed;
}
