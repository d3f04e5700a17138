/*
 * test_replicas.c - three bkvd replicas on one PostgreSQL database (cmocka). The replicas
 * share the database and the one SoftHSM2 token and each writes its own audit log; the test
 * checks that the attempt limit holds across them: concurrent guessing spread over the three
 * consumes exactly the limit, a replica SIGKILLed mid-flight loses nothing committed, a
 * PostgreSQL restart under load fails requests with "unavailable" and then heals without
 * lowering a counter, and a recovery ticket from one replica finishes on a second and cannot
 * be replayed on a third. One more test checks what libbkv reports for a guess whose
 * RecoverFinish failed under that concurrency, and one that two replicas racing to replace
 * the same record version (compare-and-set on the shared database) let exactly one win.
 *
 *   tests/with-postgres tests/with-vault test-replicas BKVD DEV_VAULT_SCRIPT
 *
 * with-postgres runs a throw-away cluster (BKV_TEST_PG_URL, BKV_TEST_PG_CTL); with-vault
 * gives the directory (BKV_TEST_DIR) and removes it and any bkvd left from it. Each replica
 * runs in a process group of its own, so one kill reaches its master and its workers; an exit
 * handler and a signal handler kill every group that is still up.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
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
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "bkv.h"
#include "testhttp.h"
#include "testproc.h"
#include "bkv/v1/vault.pb-c.h"
#include "opaque/opaque.h"

extern char **environ;

/* ------------------------------------------------------------------------------------ */
/* Settings                                                                              */
/* ------------------------------------------------------------------------------------ */

#define REPLICAS          3
#define WORKERS           2 /* per replica */
#define CLIENT_TIMEOUT_MS 15000L
#define START_TIMEOUT_MS  20000
#define STOP_TIMEOUT_MS   15000
#define MAX_PIDS          64
#define MAX_TOKENS        32
#define LIMIT             10u
#define NOTE_BYTES        (BKV_MESSAGE_BYTES + 64) /* status name: message */

/* Concurrent guessing */
#define GUESSERS       18
#define MIN_GUESSES    200u
#define GUESS_DEADLINE 40000.0 /* ms */

/* kill -9 */
#define KILL_GUESSERS    6
#define KILL_VICTIM      2 /* replica 3 */
#define KILL_PACE_MS     150
#define KILL_AFTER_USED  2u /* attempts used before D is registered and the kill armed */
#define KILL_BUDGET      4  /* calls started before the kill is armed */
#define KILL_DEADLINE_MS 30000.0

/* PostgreSQL restart */
#define OUTAGE_SLEEP_MS   1000
#define MAX_EVENTS        8192
#define F_LIMIT           20u
#define F_MAX_WRONG       12u
#define F_PACE_MS         100
#define RECOVERY_DEADLINE 20000.0

static const char PASSWORD[] = "correct horse battery staple";
static const char WRONG_PASSWORD[] = "correct horse battery stapler";
static const char CONTEXT[] = "bkv-v1";

typedef struct replica {
	char conf[PATH_MAX];
	char port_file[PATH_MAX];
	char metrics_port_file[PATH_MAX];
	char serve_log[PATH_MAX];
	char audit_log[PATH_MAX];
	char request_log[PATH_MAX];
	pid_t master; /* also its process group; 0 when down */
	unsigned port;
	char url[64];
	char metrics_url[64]; /* the plain-HTTP metrics listener (--metrics-listen) */
} replica;

typedef struct test_env {
	const char *bkvd;
	const char *dev_vault;
	const char *pg_url;
	const char *pg_ctl;
	char pg_port[16];
	char dir[PATH_MAX];
	bool own_dir;
	char vault_dir[PATH_MAX];
	char base_conf[PATH_MAX];
	char ca[PATH_MAX];
	char pg_ctl_log[PATH_MAX];
	uint8_t log_key[32];
	replica r[REPLICAS];
	bool pg_stopped; /* by test 3; if it failed midway, the next setup or exit starts it */
	/* The bystander B, registered once, by the first test. */
	bkv_key key_b;
	bkv_account_status status_b;
} test_env;

static test_env env;
static volatile sig_atomic_t group_for_signal[REPLICAS]; /* what a fatal signal kills */
static volatile sig_atomic_t pg_ctl_running;             /* what a fatal signal waits for */
static double test_started_ms;

static struct {
	char *account;
	char *token;
} tokens[MAX_TOKENS];
static size_t ntokens;

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Spawns argv[0] (PATH lookup) with stdin from /dev/null, no descriptor but 0-2 inherited
 * (the client threads' sockets stay here), stdout and stderr appended to log (or captured
 * into a pipe whose read end goes to *pipe_fd), in a new process group if new_group. */
static bool spawn(char *const argv[], const char *log, int *pipe_fd, bool new_group, pid_t *pid)
{
	int fds[2] = {-1, -1};
	if (pipe_fd != NULL && pipe2(fds, O_CLOEXEC) != 0)
		return false;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (pipe_fd != NULL) {
		posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
		posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	} else {
		posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log,
		                                 O_WRONLY | O_CREAT | O_APPEND, 0600);
		posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
	}
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	sigset_t none;
	sigemptyset(&none);
	if (new_group)
		posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, new_group ? POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP
	                                          : POSIX_SPAWN_SETSIGMASK);
	const int rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (pipe_fd != NULL) {
		close(fds[1]);
		if (rc != 0)
			close(fds[0]);
		else
			*pipe_fd = fds[0];
	}
	if (rc != 0)
		fprintf(stderr, "cannot start %s: %s\n", argv[0], strerror(rc));
	return rc == 0;
}

/* Runs argv and captures its stdout (NUL-terminated). Returns the wait status, or -1. */
static int run_capture(char *const argv[], char *out, size_t cap)
{
	int fd = -1;
	pid_t pid;
	if (!spawn(argv, NULL, &fd, false, &pid))
		return -1;
	size_t len = 0;
	for (;;) {
		char sink[512];
		char *dst = len + 1 < cap ? out + len : sink;
		size_t room = len + 1 < cap ? cap - len - 1 : sizeof(sink);
		ssize_t n = read(fd, dst, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (dst != sink)
			len += (size_t)n;
	}
	close(fd);
	if (cap > 0)
		out[len] = '\0';
	return wait_child(pid);
}

/* Runs argv with its output appended to log, in a process group of its own (a server it
 * starts must not share ours). Returns the wait status, or -1. */
static int run_logged(char *const argv[], const char *log)
{
	pid_t pid;
	if (!spawn(argv, log, NULL, true, &pid))
		return -1;
	pg_ctl_running = pid;
	const int status = wait_child(pid);
	pg_ctl_running = 0;
	return status;
}

/* ------------------------------------------------------------------------------------ */
/* Processes                                                                             */
/* ------------------------------------------------------------------------------------ */

static bool in_group(long pid, int parent, int group, long pgid)
{
	(void)pid;
	(void)parent;
	return group == pgid;
}

/* Live (not zombie) processes whose process group is pgid. */
static size_t group_members(pid_t pgid, pid_t *out, size_t max)
{
	return tp_processes(in_group, pgid, out, max);
}

static size_t workers_of(const replica *r, pid_t *out, size_t max)
{
	return r->master > 0 ? tp_bkvd_workers(r->master, out, max) : 0;
}

/* ------------------------------------------------------------------------------------ */
/* Raw HTTP with libcurl                                                                 */
/* ------------------------------------------------------------------------------------ */

/* Never fails the test, so threads may use it. */
static bool http_request(const char *base, const char *verb, const char *path,
                         const char *const *headers, const void *body, size_t len, http_reply *r)
{
	return tu_http_request(env.ca, base, CLIENT_TIMEOUT_MS, verb, path, headers, body, len, r);
}

/* POST /bkv.v1.BackupKeyVault/<method> to replica i, application/proto, with the bearer
 * token. */
static void rpc_raw(int i, const char *method, const char *token, const void *body, size_t len,
                    http_reply *r)
{
	char path[256], *auth = NULL;
	snprintf(path, sizeof(path), "/bkv.v1.BackupKeyVault/%s", method);
	if (asprintf(&auth, "Authorization: Bearer %s", token) < 0)
		fail_msg("out of memory");
	const char *headers[] = {"Content-Type: application/proto", "Connect-Protocol-Version: 1",
	                         auth, NULL};
	const bool ok = http_request(env.r[i].url, "POST", path, headers, body, len, r);
	sodium_memzero(auth, strlen(auth));
	free(auth);
	if (!ok)
		fail_msg("POST %s to replica %d: no HTTP answer: %s", path, i + 1, r->error);
}

/* A Connect error: the HTTP status, application/json, and code. */
static void check_connect_error(const http_reply *r, long http, const char *code)
{
	if (r->status != http)
		fail_msg("HTTP %ld, want %ld (body: %s)", r->status, http, r->body ? r->body : "");
	assert_string_equal(r->content_type, "application/json");
	json_t *root = json_loadb(r->body, r->len, 0, NULL);
	if (root == NULL)
		fail_msg("the error body is not JSON: %s", r->body);
	const char *got = json_string_value(json_object_get(root, "code"));
	const bool same = got != NULL && strcmp(got, code) == 0;
	json_decref(root);
	if (!same)
		fail_msg("Connect error %s, want code \"%s\"", r->body, code);
}

static bool healthz_ok(int i)
{
	http_reply r;
	if (!http_request(env.r[i].url, "GET", "/healthz", NULL, NULL, 0, &r))
		return false;
	const bool ok = r.status == 200 && r.body != NULL && strcmp(r.body, "ok\n") == 0;
	http_reply_free(&r);
	return ok;
}

/* ------------------------------------------------------------------------------------ */
/* Metrics (each replica's own: its workers share them, replicas do not)                 */
/* ------------------------------------------------------------------------------------ */

/* The value of the sample named exactly key (name{labels}); absent counters are 0. */
static double metric(const char *text, const char *key)
{
	const size_t klen = strlen(key);
	for (const char *line = text; line != NULL && *line != '\0';) {
		const char *eol = strchr(line, '\n');
		if (line[0] != '#' && strncmp(line, key, klen) == 0 && line[klen] == ' ')
			return strtod(line + klen + 1, NULL);
		line = eol ? eol + 1 : NULL;
	}
	return 0;
}

static double replica_metric(int i, const char *key)
{
	http_reply r;
	if (!http_request(env.r[i].metrics_url, "GET", "/metrics", NULL, NULL, 0, &r))
		fail_msg("GET /metrics on replica %d failed: %s", i + 1, r.error);
	if (r.status != 200)
		fail_msg("GET /metrics on replica %d: HTTP %ld", i + 1, r.status);
	const double v = metric(r.body, key);
	http_reply_free(&r);
	return v;
}

#define M_CONSUMED  "bkv_attempts_consumed_total"
#define M_DESTROYED "bkv_records_destroyed_total"
#define M_KE2       "bkv_requests_total{method=\"RecoverStart\",code=\"ok\"}"

typedef struct metric_snapshot {
	double consumed[REPLICAS], destroyed[REPLICAS], ke2[REPLICAS];
} metric_snapshot;

static metric_snapshot snapshot_metrics(void)
{
	metric_snapshot s;
	for (int i = 0; i < REPLICAS; i++) {
		s.consumed[i] = replica_metric(i, M_CONSUMED);
		s.destroyed[i] = replica_metric(i, M_DESTROYED);
		s.ke2[i] = replica_metric(i, M_KE2);
	}
	return s;
}

/* ------------------------------------------------------------------------------------ */
/* The replicas: configuration, start, stop, kill                                        */
/* ------------------------------------------------------------------------------------ */

/* The dev vault's bkvd.conf with storage on PostgreSQL and this replica's own logs. */
static bool write_replica_conf(const replica *r)
{
	char *base = slurp(env.base_conf, NULL);
	FILE *out = fopen(r->conf, "w");
	if (base == NULL || out == NULL) {
		free(base);
		if (out != NULL)
			fclose(out);
		return false;
	}
	int replaced = 0;
	for (char *line = base; *line != '\0';) {
		char *eol = strchr(line, '\n');
		if (eol != NULL)
			*eol = '\0';
		if (strncmp(line, "storage =", 9) == 0) {
			fprintf(out, "storage = %s\n", env.pg_url);
			replaced++;
		} else if (strncmp(line, "audit_log =", 11) == 0) {
			fprintf(out, "audit_log = %s\n", r->audit_log);
			replaced++;
		} else if (strncmp(line, "request_log =", 13) == 0) {
			fprintf(out, "request_log = %s\n", r->request_log);
			replaced++;
		} else {
			fprintf(out, "%s\n", line);
		}
		line = eol ? eol + 1 : line + strlen(line);
	}
	free(base);
	return fclose(out) == 0 && replaced == 3;
}

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

/* Reaps the master if it has exited. */
static bool master_exited(replica *r, int *status)
{
	if (r->master <= 0)
		return true;
	int st = 0;
	pid_t got = waitpid(r->master, &st, WNOHANG);
	if (got == r->master || (got < 0 && errno == ECHILD)) {
		if (status != NULL)
			*status = st;
		r->master = 0;
		return true;
	}
	return false;
}

/* Every process of the replica's group is gone (its master is reaped elsewhere; orphaned
 * workers go to init). */
static bool group_gone(pid_t pgid, int timeout_ms)
{
	const double deadline = now_ms() + timeout_ms;
	do {
		pid_t left[MAX_PIDS];
		if (group_members(pgid, left, MAX_PIDS) == 0)
			return true;
		sleep_ms(10);
	} while (now_ms() < deadline);
	return false;
}

/* SIGKILL the whole instance, master and workers, and wait for every one of them. */
static bool replica_kill(int i)
{
	replica *r = &env.r[i];
	if (r->master <= 0)
		return true;
	const pid_t pgid = r->master;
	kill(-pgid, SIGKILL);
	wait_child(pgid);
	r->master = 0;
	group_for_signal[i] = 0;
	return group_gone(pgid, 5000);
}

static void replica_spawn(int i)
{
	replica *r = &env.r[i];
	unlink(r->port_file);
	unlink(r->metrics_port_file);
	char workers[16];
	snprintf(workers, sizeof(workers), "%d", WORKERS);
	char *argv[] = {(char *)env.bkvd,
	                "serve",
	                "--config",
	                r->conf,
	                "--listen",
	                "127.0.0.1:0",
	                "--workers",
	                workers,
	                "--port-file",
	                r->port_file,
	                "--metrics-listen",
	                "127.0.0.1:0",
	                "--metrics-port-file",
	                r->metrics_port_file,
	                NULL};
	pid_t pid;
	if (spawn(argv, r->serve_log, NULL, true, &pid)) {
		r->master = pid;
		group_for_signal[i] = pid;
	}
}

/* Waits until the replica has written its port, has all its workers, and answers. */
static bool replica_wait_ready(int i)
{
	replica *r = &env.r[i];
	const double deadline = now_ms() + START_TIMEOUT_MS;
	bool have_port = false;
	unsigned metrics_port = 0;
	while (r->master > 0 &&
	       !(have_port = read_port(r->port_file, &r->port) &&
	                     read_port(r->metrics_port_file, &metrics_port)) &&
	       now_ms() < deadline) {
		if (master_exited(r, NULL))
			break;
		sleep_ms(10);
	}
	if (!have_port) {
		fprintf(stderr, "replica %d did not write its port\n", i + 1);
		print_log_tail(r->serve_log);
		return false;
	}
	snprintf(r->url, sizeof(r->url), "https://127.0.0.1:%u", r->port);
	snprintf(r->metrics_url, sizeof(r->metrics_url), "http://127.0.0.1:%u", metrics_port);
	while (now_ms() < deadline) {
		pid_t kids[MAX_PIDS];
		if (master_exited(r, NULL))
			break;
		if (workers_of(r, kids, MAX_PIDS) == WORKERS && healthz_ok(i))
			return true;
		sleep_ms(20);
	}
	fprintf(stderr, "replica %d did not become ready\n", i + 1);
	print_log_tail(r->serve_log);
	return false;
}

static bool replica_up(int i)
{
	return env.r[i].master > 0 && !master_exited(&env.r[i], NULL) && healthz_ok(i);
}

/* Starts every replica that is not serving, all at once (their schema migrations race,
 * under PostgreSQL's advisory lock), then waits for them. */
static bool replicas_ensure(void)
{
	bool started[REPLICAS] = {false};
	for (int i = 0; i < REPLICAS; i++) {
		if (replica_up(i))
			continue;
		replica_kill(i);
		replica_spawn(i);
		started[i] = true;
	}
	bool ok = true;
	for (int i = 0; i < REPLICAS; i++) {
		if (started[i])
			ok = replica_wait_ready(i) && ok;
	}
	return ok;
}

/* SIGTERM, and wait; SIGKILL the group if it does not stop in time. */
static bool replica_stop(int i, int *status)
{
	replica *r = &env.r[i];
	if (r->master <= 0)
		return true;
	const pid_t pgid = r->master;
	kill(r->master, SIGTERM);
	const double deadline = now_ms() + STOP_TIMEOUT_MS;
	int st = 0;
	while (!master_exited(r, &st) && now_ms() < deadline)
		sleep_ms(10);
	bool ok = true;
	if (r->master > 0) {
		fprintf(stderr, "replica %d did not stop within %d ms: SIGKILL\n", i + 1,
		        STOP_TIMEOUT_MS);
		replica_kill(i);
		ok = false;
	}
	group_for_signal[i] = 0;
	if (status != NULL)
		*status = st;
	return group_gone(pgid, 5000) && ok;
}

/* ------------------------------------------------------------------------------------ */
/* PostgreSQL                                                                            */
/* ------------------------------------------------------------------------------------ */

/* BKV_TEST_PG_CTL (pg_ctl -D DATA -l LOG -w -t 30 -m fast) with args. `start` after a
 * `stop` needs the port again: with-postgres passed it with -o at the first start only
 * (postmaster.opts serves `restart`, not `start`). */
static bool pg_ctl(const char *action)
{
	char port_opt[32];
	snprintf(port_opt, sizeof(port_opt), "-p %s", env.pg_port);
	char *stop_argv[] = {(char *)env.pg_ctl, "stop", NULL};
	char *start_argv[] = {(char *)env.pg_ctl, "start", "-o", port_opt, NULL};
	char *const *argv = strcmp(action, "stop") == 0 ? stop_argv : start_argv;
	const int st = run_logged(argv, env.pg_ctl_log);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "pg_ctl %s failed (status %d)\n", action, st);
		print_log_tail(env.pg_ctl_log);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------------------ */
/* Setup and teardown                                                                    */
/* ------------------------------------------------------------------------------------ */

static void on_fatal_signal(int sig)
{
	for (int i = 0; i < REPLICAS; i++) {
		const pid_t g = (pid_t)group_for_signal[i];
		if (g > 0)
			kill(-g, SIGKILL);
	}
	/* A pg_ctl start cut short could leave a server starting after with-postgres has
	 * looked for it: let it finish (pg_ctl -w -t 30), so with-postgres stops it. */
	const pid_t p = (pid_t)pg_ctl_running;
	if (p > 0)
		waitpid(p, NULL, 0);
	_exit(128 + sig);
}

static void cleanup_at_exit(void)
{
	for (int i = 0; i < REPLICAS; i++)
		replica_kill(i);
	if (env.pg_stopped && env.pg_ctl != NULL) {
		pg_ctl("start");
		env.pg_stopped = false;
	}
	if (env.own_dir && env.dir[0] != '\0')
		nftw(env.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	for (size_t i = 0; i < ntokens; i++) {
		sodium_memzero(tokens[i].token, strlen(tokens[i].token));
		free(tokens[i].account);
		free(tokens[i].token);
	}
	ntokens = 0;
}

/* `bkvd dev-token ACCOUNT` (one hour), minted once per account. Main thread only. */
static const char *token_for(const char *account)
{
	for (size_t i = 0; i < ntokens; i++) {
		if (strcmp(tokens[i].account, account) == 0)
			return tokens[i].token;
	}
	if (ntokens == MAX_TOKENS)
		fail_msg("too many accounts");
	char out[4096];
	char *argv[] = {(char *)env.bkvd, "dev-token",     "--config",
	                env.r[0].conf,    (char *)account, NULL};
	int st = run_capture(argv, out, sizeof(out));
	chomp(out);
	if (st != 0 || strlen(out) < 20)
		fail_msg("bkvd dev-token %s failed (status %d)", account, st);
	tokens[ntokens].token = strdup(out);
	tokens[ntokens].account = strdup(account);
	sodium_memzero(out, sizeof(out));
	return tokens[ntokens++].token;
}

static bkv_client *make_client(int i, bkv_suite suite)
{
	bkv_client_config cfg = {
	    .vault_url = env.r[i].url,
	    .ca_file = env.ca,
	    .timeout_ms = CLIENT_TIMEOUT_MS,
	    .suite = suite,
	    .argon2_iterations = 1,
	    .argon2_memory_kib = 1024,
	    .argon2_parallelism = 1,
	};
	bkv_client *c = NULL;
	bkv_error err = {0};
	bkv_status st = bkv_client_new(&cfg, &c, &err);
	if (st != BKV_OK)
		fail_msg("bkv_client_new: %s: %s", bkv_status_name(st), err.message);
	return c;
}

#define EXPECT_STATUS(call, want, err)                                                             \
	do {                                                                                       \
		const bkv_status got_ = (call);                                                    \
		if (got_ != (want))                                                                \
			fail_msg("%s: got %s (%s), want %s", #call, bkv_status_name(got_),         \
			         (err).message, bkv_status_name(want));                            \
	} while (0)

static void do_register(int i, const char *token, const bkv_key *key, uint32_t limit)
{
	bkv_client *c = make_client(i, BKV_SUITE_VAULT_PREFERENCE);
	bkv_error err = {0};
	const bkv_status st = bkv_register(c, token, PASSWORD, strlen(PASSWORD), key, limit, &err);
	bkv_client_free(c);
	if (st != BKV_OK)
		fail_msg("bkv_register on replica %d: %s (%s)", i + 1, bkv_status_name(st),
		         err.message);
}

static void expect_recover(int i, const char *token, const bkv_key *want)
{
	bkv_client *c = make_client(i, BKV_SUITE_VAULT_PREFERENCE);
	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	const bkv_status st = bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err);
	bkv_client_free(c);
	if (st != BKV_OK)
		fail_msg("bkv_recover on replica %d: %s (%s)", i + 1, bkv_status_name(st),
		         err.message);
	assert_memory_equal(got.bytes, want->bytes, BKV_KEY_BYTES);
	bkv_key_wipe(&got);
}

/* A destroyed key: every replica says so (a tombstone), never "not registered". */
static void expect_destroyed(int i, const char *token, uint32_t limit)
{
	bkv_client *c = make_client(i, BKV_SUITE_VAULT_PREFERENCE);
	bkv_error err = {0};
	bkv_key got;
	bkv_recover_info info;
	const bkv_status st = bkv_recover(c, token, PASSWORD, strlen(PASSWORD), &got, &info, &err);
	bkv_account_status s;
	const bkv_status sst = bkv_status_get(c, token, &s, &err);
	bkv_client_free(c);
	if (st != BKV_ERR_DESTROYED)
		fail_msg("bkv_recover on replica %d: %s (%s), want BKV_ERR_DESTROYED", i + 1,
		         bkv_status_name(st), err.message);
	assert_true(info.destroyed && info.attempts_known);
	assert_int_equal(info.attempts_remaining, 0);
	assert_int_equal(info.attempt_limit, limit);
	assert_int_equal(sst, BKV_OK);
	assert_false(s.registered);
	assert_int_equal(s.state, BKV_RECORD_DESTROYED);
	assert_true(s.destroyed_at_unix > 0);
}

static bkv_account_status get_status(int i, const char *token)
{
	bkv_client *c = make_client(i, BKV_SUITE_VAULT_PREFERENCE);
	bkv_account_status s;
	bkv_error err = {0};
	const bkv_status st = bkv_status_get(c, token, &s, &err);
	bkv_client_free(c);
	if (st != BKV_OK)
		fail_msg("bkv_status_get on replica %d: %s (%s)", i + 1, bkv_status_name(st),
		         err.message);
	return s;
}

static void assert_same_status(const char *what, const bkv_account_status *a,
                               const bkv_account_status *b)
{
	if (a->registered != b->registered || a->suite != b->suite ||
	    a->attempts_used != b->attempts_used || a->attempt_limit != b->attempt_limit ||
	    a->record_version != b->record_version ||
	    a->registered_at_unix != b->registered_at_unix)
		fail_msg("%s: status changed: registered %d->%d used %u->%u limit %u->%u version "
		         "%llu->%llu",
		         what, a->registered, b->registered, a->attempts_used, b->attempts_used,
		         a->attempt_limit, b->attempt_limit, (unsigned long long)a->record_version,
		         (unsigned long long)b->record_version);
}

/* The bystander is untouched and recovers on every replica. */
static void check_bystander(void)
{
	for (int i = 0; i < REPLICAS; i++) {
		const bkv_account_status s = get_status(i, token_for("replicas-B"));
		assert_same_status("bystander B", &env.status_b, &s);
	}
	for (int i = 0; i < REPLICAS; i++)
		expect_recover(i, token_for("replicas-B"), &env.key_b);
	/* Each success resets a counter that was already 0: nothing else moves. */
	const bkv_account_status s = get_status(0, token_for("replicas-B"));
	assert_same_status("bystander B after recoveries", &env.status_b, &s);
}

static int group_setup(void **state)
{
	(void)state;
	env.pg_url = getenv("BKV_TEST_PG_URL");
	env.pg_ctl = getenv("BKV_TEST_PG_CTL");
	if (env.pg_url == NULL || env.pg_ctl == NULL) {
		fprintf(stderr, "BKV_TEST_PG_URL and BKV_TEST_PG_CTL are not set: run under "
		                "tests/with-postgres\n");
		return -1;
	}
	/* postgresql://postgres@127.0.0.1:PORT/bkv */
	const char *colon = strrchr(env.pg_url, ':');
	const unsigned long port = colon ? strtoul(colon + 1, NULL, 10) : 0;
	if (port == 0 || port > 65535) {
		fprintf(stderr, "no port in BKV_TEST_PG_URL %s\n", env.pg_url);
		return -1;
	}
	snprintf(env.pg_port, sizeof(env.pg_port), "%lu", port);

	const char *base = getenv("BKV_TEST_DIR");
	if (base != NULL && base[0] != '\0') {
		snprintf(env.dir, sizeof(env.dir), "%s", base);
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(env.dir, sizeof(env.dir), "%s/bkv-replicas.XXXXXX", tmp ? tmp : "/tmp");
		if (mkdtemp(env.dir) == NULL) {
			perror("mkdtemp");
			return -1;
		}
		env.own_dir = true;
	}
	path_join(env.vault_dir, env.dir, "vault");
	path_join(env.pg_ctl_log, env.dir, "pg_ctl.log");

	/* One dev vault: token, TLS certificate, bkvd.conf, key ceremony. */
	const double t0 = now_ms();
	char out[PATH_MAX];
	char *dv_argv[] = {(char *)env.dev_vault, env.vault_dir, NULL};
	int st = run_capture(dv_argv, out, sizeof(out));
	if (st != 0) {
		fprintf(stderr, "%s %s failed (status %d)\n", env.dev_vault, env.vault_dir, st);
		return -1;
	}
	chomp(out);
	snprintf(env.base_conf, sizeof(env.base_conf), "%s", out);
	path_join(env.ca, env.vault_dir, "tls/cert.pem");
	char hsm_conf[PATH_MAX], log_key[PATH_MAX];
	path_join(hsm_conf, env.vault_dir, "hsm/softhsm2.conf");
	path_join(log_key, env.vault_dir, "log.key");
	setenv("SOFTHSM2_CONF", hsm_conf, 1); /* the one token every replica uses */
	size_t key_len = 0;
	char *key = slurp(log_key, &key_len);
	if (key == NULL || key_len != sizeof(env.log_key)) {
		fprintf(stderr, "cannot read %s\n", log_key);
		free(key);
		return -1;
	}
	memcpy(env.log_key, key, sizeof(env.log_key));
	sodium_memzero(key, key_len);
	free(key);
	const double t1 = now_ms();

	for (int i = 0; i < REPLICAS; i++) {
		replica *r = &env.r[i];
		char name[64];
		snprintf(name, sizeof(name), "replica-%d.conf", i + 1);
		path_join(r->conf, env.dir, name);
		snprintf(name, sizeof(name), "port-%d", i + 1);
		path_join(r->port_file, env.dir, name);
		snprintf(name, sizeof(name), "metrics-port-%d", i + 1);
		path_join(r->metrics_port_file, env.dir, name);
		snprintf(name, sizeof(name), "serve-%d.log", i + 1);
		path_join(r->serve_log, env.dir, name);
		snprintf(name, sizeof(name), "audit-%d.log", i + 1);
		path_join(r->audit_log, env.dir, name);
		snprintf(name, sizeof(name), "requests-%d.log", i + 1);
		path_join(r->request_log, env.dir, name);
		if (!write_replica_conf(r)) {
			fprintf(stderr, "cannot write %s\n", r->conf);
			return -1;
		}
	}
	if (!replicas_ensure())
		return -1;
	print_message("    dev vault %.0f ms; three replicas up in %.0f ms (%s)\n", t1 - t0,
	              now_ms() - t1, env.pg_url);
	return 0;
}

static bool serve_logs_have_sanitizer_report(void)
{
	bool found = false;
	for (int i = 0; i < REPLICAS; i++) {
		char *text = slurp(env.r[i].serve_log, NULL);
		const bool here = text != NULL && (strstr(text, "Sanitizer") != NULL ||
		                                   strstr(text, "runtime error:") != NULL);
		free(text);
		if (here)
			print_log_tail(env.r[i].serve_log);
		found = found || here;
	}
	return found;
}

static int group_teardown(void **state)
{
	(void)state;
	bool ok = true;
	for (int i = 0; i < REPLICAS; i++) {
		int status = 0;
		const bool was_up = env.r[i].master > 0;
		if (!replica_stop(i, &status) ||
		    (was_up && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))) {
			fprintf(stderr, "replica %d did not stop cleanly (status %d)\n", i + 1,
			        status);
			ok = false;
		}
	}
	if (serve_logs_have_sanitizer_report()) {
		fprintf(stderr, "bkvd reported sanitizer findings\n");
		ok = false;
	}
	return ok ? 0 : -1;
}

/* Per test: PostgreSQL and all three replicas up (a failed test may have left one down). */
static int ensure_all(void **state)
{
	(void)state;
	test_started_ms = now_ms();
	if (env.pg_stopped) {
		if (!pg_ctl("start"))
			return -1;
		env.pg_stopped = false;
	}
	return replicas_ensure() ? 0 : -1;
}

static int report_time(void **state)
{
	(void)state;
	print_message("    (%.2f s)\n", (now_ms() - test_started_ms) / 1000.0);
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Audit logs                                                                            */
/* ------------------------------------------------------------------------------------ */

/* hex(BLAKE2b-128 keyed with log.key) of the account id, as the vault logs it. */
static void account_hash(const char *account, char out[33])
{
	uint8_t digest[16];
	crypto_generichash(digest, sizeof(digest), (const uint8_t *)account, strlen(account),
	                   env.log_key, sizeof(env.log_key));
	sodium_bin2hex(out, 33, digest, sizeof(digest));
}

#define MAX_USED_VALUE 64

typedef struct audit_counts {
	unsigned attempt_used;
	unsigned destroyed;
	unsigned recovered;
	unsigned used_value[MAX_USED_VALUE]; /* how often each attempts_used value was logged */
	unsigned bad_lines;
} audit_counts;

static void audit_add(audit_counts *c, const char *path, const char *account, long from)
{
	char hash[33];
	account_hash(account, hash);
	size_t len = 0;
	char *text = slurp(path, &len);
	if (text == NULL)
		return; /* nothing logged yet */
	for (char *line = text + (from < (long)len ? from : (long)len); *line != '\0';) {
		char *eol = strchr(line, '\n');
		if (eol != NULL)
			*eol = '\0';
		json_t *j = json_loads(line, 0, NULL);
		if (j == NULL && line[0] != '\0')
			c->bad_lines++;
		const char *event = json_string_value(json_object_get(j, "event"));
		const char *acct = json_string_value(json_object_get(j, "account"));
		if (event != NULL && acct != NULL && strcmp(acct, hash) == 0) {
			if (strcmp(event, "attempt_used") == 0) {
				c->attempt_used++;
				json_int_t used =
				    json_integer_value(json_object_get(j, "attempts_used"));
				if (used >= 0 && used < MAX_USED_VALUE)
					c->used_value[used]++;
			} else if (strcmp(event, "destroyed") == 0) {
				c->destroyed++;
			} else if (strcmp(event, "recovered") == 0) {
				c->recovered++;
			}
		}
		json_decref(j);
		line = eol ? eol + 1 : line + strlen(line);
	}
	free(text);
}

typedef struct audit_offsets {
	long at[REPLICAS];
} audit_offsets;

static audit_offsets audit_mark(void)
{
	audit_offsets o;
	for (int i = 0; i < REPLICAS; i++)
		o.at[i] = file_size(env.r[i].audit_log);
	return o;
}

/* ------------------------------------------------------------------------------------ */
/* 1. Concurrent guessing across the three replicas                                      */
/* ------------------------------------------------------------------------------------ */

typedef struct guess_totals {
	atomic_uint calls, wrong, unconfirmed, destroyed, not_registered, unavailable, ok, other;
	atomic_uint inconsistent; /* attempts_known, yet attempt_limit is not the account's */
	atomic_uint calls_per_replica[REPLICAS];
	pthread_barrier_t go;
	pthread_mutex_t lock;
	char other_message[NOTE_BYTES];
} guess_totals;

typedef struct guesser {
	guess_totals *totals;
	bkv_client *client;
	const char *token;
	int replica;
	uint32_t limit;
	double deadline;
} guesser;

/* bkv.h: attempts_remaining and attempt_limit are valid when attempts_known. */
static bool info_consistent(const bkv_recover_info *info, uint32_t limit)
{
	return !info->attempts_known ||
	       (info->attempt_limit == limit && info->attempts_remaining < limit);
}

/* Wrong passwords for the account until it is gone (and at least MIN_GUESSES calls were
 * made by all threads together). Records, never asserts. */
static void *guess_until_gone(void *arg)
{
	guesser *g = arg;
	guess_totals *t = g->totals;
	bool gone = false;
	pthread_barrier_wait(&t->go);
	while (!(gone && atomic_load(&t->calls) >= MIN_GUESSES) && now_ms() < g->deadline) {
		bkv_error err = {0};
		bkv_key got;
		bkv_recover_info info;
		const bkv_status st = bkv_recover(g->client, g->token, WRONG_PASSWORD,
		                                  strlen(WRONG_PASSWORD), &got, &info, &err);
		atomic_fetch_add(&t->calls, 1);
		atomic_fetch_add(&t->calls_per_replica[g->replica], 1);
		if (!info_consistent(&info, g->limit))
			atomic_fetch_add(&t->inconsistent, 1);
		switch (st) {
		case BKV_ERR_WRONG_PASSWORD:
			/* "unconfirmed": it got a KE2, but its RecoverFinish failed (the record was
			 * destroyed meanwhile, or a later guess finished first) */
			if (strstr(err.message, "did not confirm") != NULL)
				atomic_fetch_add(&t->unconfirmed, 1);
			else
				atomic_fetch_add(&t->wrong, 1);
			break;
		case BKV_ERR_DESTROYED:
			atomic_fetch_add(&t->destroyed, 1);
			gone = true;
			break;
		case BKV_ERR_NOT_REGISTERED:
			atomic_fetch_add(&t->not_registered, 1);
			gone = true;
			break;
		case BKV_ERR_UNAVAILABLE:
			atomic_fetch_add(&t->unavailable, 1);
			break;
		case BKV_OK:
			atomic_fetch_add(&t->ok, 1); /* a wrong password opened the key?! */
			bkv_key_wipe(&got);
			break;
		default:
			atomic_fetch_add(&t->other, 1);
			pthread_mutex_lock(&t->lock);
			snprintf(t->other_message, sizeof(t->other_message), "%s: %s",
			         bkv_status_name(st), err.message);
			pthread_mutex_unlock(&t->lock);
			break;
		}
	}
	return NULL;
}

/* GUESSERS threads, spread over the replicas, released together; wrong passwords until the
 * account is gone. Returns the milliseconds it took. */
static double guess_burst(const char *token, uint32_t limit, guess_totals *t)
{
	memset(t, 0, sizeof(*t));
	pthread_barrier_init(&t->go, NULL, GUESSERS + 1);
	pthread_mutex_init(&t->lock, NULL);
	guesser g[GUESSERS];
	pthread_t threads[GUESSERS];
	for (int i = 0; i < GUESSERS; i++) {
		g[i] = (guesser){.totals = t,
		                 .client = make_client(i % REPLICAS, BKV_SUITE_VAULT_PREFERENCE),
		                 .token = token,
		                 .replica = i % REPLICAS,
		                 .limit = limit,
		                 .deadline = now_ms() + GUESS_DEADLINE};
	}
	for (int i = 0; i < GUESSERS; i++) {
		if (pthread_create(&threads[i], NULL, guess_until_gone, &g[i]) != 0)
			abort(); /* the barrier would wait forever */
	}
	const double t0 = now_ms();
	pthread_barrier_wait(&t->go); /* all at once */
	for (int i = 0; i < GUESSERS; i++)
		pthread_join(threads[i], NULL);
	const double elapsed = now_ms() - t0;
	for (int i = 0; i < GUESSERS; i++)
		bkv_client_free(g[i].client);
	pthread_barrier_destroy(&t->go);
	pthread_mutex_destroy(&t->lock);
	return elapsed;
}

static void test_concurrent_guessing_across_three_replicas_consumes_exactly_the_limit(void **state)
{
	(void)state;
	const char *token_a = token_for("replicas-A");
	bkv_key key_a;
	bkv_key_generate(&key_a);
	do_register(0, token_a, &key_a, LIMIT);
	const bkv_account_status before = get_status(1, token_a);
	assert_true(before.registered);
	assert_int_equal(before.attempt_limit, LIMIT);
	assert_int_equal(before.attempts_used, 0);

	const metric_snapshot m0 = snapshot_metrics();
	const audit_offsets from = audit_mark();

	guess_totals t;
	const double elapsed = guess_burst(token_a, LIMIT, &t);

	/* What the replicas counted, each on its own. */
	const metric_snapshot m1 = snapshot_metrics();
	double consumed = 0, destroyed = 0, ke2 = 0;
	char per_replica[128] = "";
	for (int i = 0; i < REPLICAS; i++) {
		const double c = m1.consumed[i] - m0.consumed[i];
		consumed += c;
		destroyed += m1.destroyed[i] - m0.destroyed[i];
		ke2 += m1.ke2[i] - m0.ke2[i];
		const size_t used = strlen(per_replica);
		snprintf(per_replica + used, sizeof(per_replica) - used, "%s%g (%u calls)",
		         i ? ", " : "", c, atomic_load(&t.calls_per_replica[i]));
	}
	audit_counts audit;
	memset(&audit, 0, sizeof(audit));
	for (int i = 0; i < REPLICAS; i++)
		audit_add(&audit, env.r[i].audit_log, "replicas-A", from.at[i]);

	print_message("    %d threads, %u guesses in %.0f ms: %u wrong, %u wrong but unconfirmed "
	              "(finish failed), %u destroyed, %u not registered, %u unavailable, %u "
	              "other; %u answers with an inconsistent attempt count\n",
	              GUESSERS, atomic_load(&t.calls), elapsed, atomic_load(&t.wrong),
	              atomic_load(&t.unconfirmed), atomic_load(&t.destroyed),
	              atomic_load(&t.not_registered), atomic_load(&t.unavailable),
	              atomic_load(&t.other), atomic_load(&t.inconsistent));
	print_message("    attempts consumed per replica (metrics): %s; total %g, KE2 issued %g, "
	              "destroyed %g; audit: %u attempt_used, %u destroyed\n",
	              per_replica, consumed, ke2, destroyed, audit.attempt_used, audit.destroyed);

	if (atomic_load(&t.ok) != 0)
		fail_msg("%u wrong-password guesses recovered the key", atomic_load(&t.ok));
	if (atomic_load(&t.other) != 0)
		fail_msg("%u guesses failed unexpectedly, e.g. %s", atomic_load(&t.other),
		         t.other_message);
	assert_true(atomic_load(&t.calls) >= MIN_GUESSES);
	/* Exactly the limit: ten KE2s across the three replicas, each counted once. */
	assert_true(consumed == LIMIT);
	assert_true(ke2 == LIMIT);
	assert_true(destroyed == 1);
	assert_int_equal(audit.bad_lines, 0);
	assert_int_equal(audit.attempt_used, LIMIT);
	for (unsigned v = 1; v <= LIMIT; v++) {
		if (audit.used_value[v] != 1)
			fail_msg("attempts_used %u was logged %u times (want once)", v,
			         audit.used_value[v]);
	}
	assert_int_equal(audit.destroyed, 1);
	/* A wrong-password answer needs a KE2; the rest found the key gone: destroyed, which
	 * none was told was "not registered". */
	assert_true(atomic_load(&t.wrong) + atomic_load(&t.unconfirmed) <= LIMIT);
	assert_int_equal(atomic_load(&t.not_registered), 0);
	assert_true(atomic_load(&t.destroyed) > 0);

	/* A is gone, everywhere, whatever the password. */
	for (int i = 0; i < REPLICAS; i++) {
		const bkv_account_status s = get_status(i, token_a);
		assert_false(s.registered);
		expect_destroyed(i, token_a, LIMIT);
	}
	check_bystander();
	bkv_key_wipe(&key_a);
}

/* A guess whose RecoverFinish fails after its KE2 (the record was destroyed by another
 * replica meanwhile, or a later guess finished first) still tells the caller how many
 * attempts are left, consistently: bkv.h makes attempts_remaining and attempt_limit valid
 * together when attempts_known. Bursts until such a guess happened (at most three). */
static void test_a_guess_whose_finish_fails_still_reports_a_consistent_attempt_count(void **state)
{
	(void)state;
	unsigned unconfirmed = 0, inconsistent = 0, calls = 0, bursts = 0;
	for (; bursts < 3 && unconfirmed == 0; bursts++) {
		char account[64];
		snprintf(account, sizeof(account), "replicas-H%u", bursts);
		const char *token = token_for(account);
		bkv_key key;
		bkv_key_generate(&key);
		do_register((int)bursts % REPLICAS, token, &key, LIMIT);
		guess_totals t;
		guess_burst(token, LIMIT, &t);
		unconfirmed += atomic_load(&t.unconfirmed);
		inconsistent += atomic_load(&t.inconsistent);
		calls += atomic_load(&t.calls);
		if (atomic_load(&t.other) != 0)
			fail_msg("%u guesses failed unexpectedly, e.g. %s", atomic_load(&t.other),
			         t.other_message);
		bkv_key_wipe(&key);
	}
	print_message("    %u burst%s, %u guesses: %u wrong but unconfirmed, %u answers with "
	              "attempts_known and an attempt_limit that is not the account's\n",
	              bursts, bursts == 1 ? "" : "s", calls, unconfirmed, inconsistent);
	if (unconfirmed == 0)
		print_message("    (no guess had its finish fail: nothing to check this time)\n");
	if (inconsistent != 0)
		fail_msg("libbkv: %u bkv_recover answers had attempts_known with attempt_limit 0 "
		         "(client.c recover_with sets attempts_known from RecoverStart, which "
		         "carries no limit)",
		         inconsistent);
}

/* ------------------------------------------------------------------------------------ */
/* 2. kill -9 of one replica mid-flight                                                  */
/* ------------------------------------------------------------------------------------ */

typedef struct kill_guesser {
	bkv_client *clients[REPLICAS];
	const char *token;
	int home; /* the replica it starts on; it moves on when that one is gone */
	atomic_int target;
	atomic_bool in_call, stop;
	atomic_bool killed;    /* set by the main thread just after the kill */
	atomic_int cut_status; /* of its call to the victim in flight at the kill, or -1 */
	atomic_int *budget;    /* shared, until the kill */
	atomic_bool *armed;    /* D is registered: the victim's guessers go on freely */
	atomic_uint calls, wrong, unconfirmed, gone, unavailable, after_kill_answers, other;
	atomic_uint max_used_seen; /* attempt_limit - attempts_remaining, from the answers */
	char other_message[NOTE_BYTES];
	double deadline;
} kill_guesser;

static void *guess_through_kill(void *arg)
{
	kill_guesser *g = arg;
	while (!atomic_load(&g->stop) && now_ms() < g->deadline) {
		const int target = atomic_load(&g->target);
		const bool killed_before = atomic_load(&g->killed);
		/* Before the kill, all guessers together start a few calls only, so attempts are
		 * left when it comes however slow the machine; once it is armed the victim's own
		 * guessers go on, to be caught mid-call. */
		if (!killed_before && (g->home != KILL_VICTIM || !atomic_load(g->armed)) &&
		    atomic_fetch_sub(g->budget, 1) <= 0) {
			sleep_ms(1);
			continue;
		}
		bkv_error err = {0};
		bkv_key got;
		bkv_recover_info info;
		atomic_store(&g->in_call, true);
		const bkv_status st = bkv_recover(g->clients[target], g->token, WRONG_PASSWORD,
		                                  strlen(WRONG_PASSWORD), &got, &info, &err);
		atomic_store(&g->in_call, false);
		atomic_fetch_add(&g->calls, 1);
		const bool across_kill = !killed_before && atomic_load(&g->killed);
		if (across_kill && target == KILL_VICTIM)
			atomic_store(&g->cut_status, (int)st);
		if (st == BKV_ERR_WRONG_PASSWORD || st == BKV_ERR_DESTROYED) {
			if (st == BKV_ERR_WRONG_PASSWORD && strstr(err.message, "did not confirm"))
				atomic_fetch_add(&g->unconfirmed, 1);
			else if (st == BKV_ERR_WRONG_PASSWORD)
				atomic_fetch_add(&g->wrong, 1);
			/* (attempt_limit 0 would be an answer without the numbers) */
			if (info.attempts_known && info.attempt_limit != 0) {
				const unsigned used = info.attempt_limit - info.attempts_remaining;
				unsigned seen = atomic_load(&g->max_used_seen);
				while (used > seen && !atomic_compare_exchange_weak(
				                          &g->max_used_seen, &seen, used)) {
				}
			}
			if (killed_before && target != KILL_VICTIM)
				atomic_fetch_add(&g->after_kill_answers, 1);
		}
		if (st == BKV_ERR_DESTROYED || st == BKV_ERR_NOT_REGISTERED) {
			atomic_fetch_add(&g->gone, 1);
			break;
		} else if (st == BKV_ERR_UNAVAILABLE || st == BKV_ERR_PROTOCOL) {
			atomic_fetch_add(&g->unavailable, 1);
			/* Like a load balancer: the replica is gone, use the next one. */
			if (target == KILL_VICTIM && atomic_load(&g->killed))
				atomic_store(&g->target, (KILL_VICTIM + 1) % REPLICAS);
		} else if (st != BKV_ERR_WRONG_PASSWORD) {
			atomic_fetch_add(&g->other, 1);
			snprintf(g->other_message, sizeof(g->other_message), "%s: %s",
			         bkv_status_name(st), err.message);
			if (st == BKV_OK)
				bkv_key_wipe(&got);
		}
		sleep_ms(KILL_PACE_MS);
	}
	return NULL;
}

/* GetStatus polls on a live replica: attempts_used never goes down, and the record stays
 * until it is gone for good. Records, never asserts. */
typedef struct status_monitor {
	bkv_client *client;
	const char *token;
	unsigned polls, failures, polls_after_kill;
	uint32_t last_used;
	uint64_t version;
	bool gone;
	uint32_t used_when_gone;
	char violation[160];
} status_monitor;

static void monitor_poll(status_monitor *m, bool after_kill)
{
	bkv_account_status s;
	bkv_error err = {0};
	if (m->gone)
		return;
	if (bkv_status_get(m->client, m->token, &s, &err) != BKV_OK) {
		m->failures++;
		return;
	}
	m->polls++;
	if (!s.registered) {
		m->gone = true;
		m->used_when_gone = m->last_used;
		return;
	}
	if (after_kill)
		m->polls_after_kill++;
	if (m->version == 0)
		m->version = s.record_version;
	if (s.record_version != m->version && m->violation[0] == '\0')
		snprintf(m->violation, sizeof(m->violation), "record_version changed: %llu -> %llu",
		         (unsigned long long)m->version, (unsigned long long)s.record_version);
	if (s.attempts_used < m->last_used && m->violation[0] == '\0')
		snprintf(m->violation, sizeof(m->violation), "attempts_used went down: %u -> %u",
		         m->last_used, s.attempts_used);
	if (s.attempts_used > m->last_used)
		m->last_used = s.attempts_used;
}

static void test_kill_9_of_one_replica_mid_flight_loses_nothing_committed(void **state)
{
	(void)state;
	const char *token_c = token_for("replicas-C");
	const char *token_d = token_for("replicas-D");
	bkv_key key_c, key_d;
	bkv_key_generate(&key_c);
	bkv_key_generate(&key_d);
	do_register(0, token_c, &key_c, LIMIT);
	const metric_snapshot m0 = snapshot_metrics();
	const audit_offsets from = audit_mark();
	bkv_client *register_client = make_client(KILL_VICTIM, BKV_SUITE_VAULT_PREFERENCE);

	kill_guesser g[KILL_GUESSERS];
	pthread_t threads[KILL_GUESSERS];
	memset(g, 0, sizeof(g));
	atomic_int budget;
	atomic_bool armed;
	atomic_init(&budget, KILL_BUDGET);
	atomic_init(&armed, false);
	for (int i = 0; i < KILL_GUESSERS; i++) {
		g[i].budget = &budget;
		g[i].armed = &armed;
		for (int r = 0; r < REPLICAS; r++)
			g[i].clients[r] = make_client(r, BKV_SUITE_VAULT_PREFERENCE);
		g[i].token = token_c;
		g[i].home = i % REPLICAS;
		atomic_store(&g[i].target, g[i].home);
		atomic_store(&g[i].cut_status, -1);
		g[i].deadline = now_ms() + KILL_DEADLINE_MS;
	}
	status_monitor m = {.client = make_client(0, BKV_SUITE_VAULT_PREFERENCE), .token = token_c};
	const pid_t victim_group = env.r[KILL_VICTIM].master;
	pid_t victim_workers[MAX_PIDS];
	const size_t nvictim_workers = workers_of(&env.r[KILL_VICTIM], victim_workers, MAX_PIDS);

	for (int i = 0; i < KILL_GUESSERS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, guess_through_kill, &g[i]), 0);

	/* Let a few attempts land, then register D on the victim, then kill it while one of
	 * its guessers is inside a call. */
	double deadline = now_ms() + 10000;
	while (m.last_used < KILL_AFTER_USED && !m.gone && now_ms() < deadline) {
		monitor_poll(&m, false);
		sleep_ms(5);
	}
	bkv_error reg_err = {0};
	const bkv_status reg =
	    bkv_register(register_client, token_d, PASSWORD, strlen(PASSWORD), &key_d, 0, &reg_err);
	atomic_store(&armed, true);
	unsigned in_flight = 0;
	deadline = now_ms() + 5000;
	while (in_flight == 0 && now_ms() < deadline) {
		for (int i = 0; i < KILL_GUESSERS; i++)
			in_flight +=
			    g[i].home == KILL_VICTIM && atomic_load(&g[i].in_call) ? 1u : 0u;
		if (in_flight == 0)
			sleep_ms(1);
	}
	const double killed_at = now_ms();
	kill(-victim_group, SIGKILL);
	for (int i = 0; i < KILL_GUESSERS; i++)
		atomic_store(&g[i].killed, true);
	int master_status = wait_child(victim_group);
	env.r[KILL_VICTIM].master = 0;
	group_for_signal[KILL_VICTIM] = 0;
	const bool all_gone = group_gone(victim_group, 5000);
	const double gone_ms = now_ms() - killed_at;
	/* What the kill left, on a live replica: every attempt committed so far. */
	monitor_poll(&m, true);
	const uint32_t used_at_kill = m.last_used;
	const bool registered_after_kill = !m.gone;

	/* The other two go on serving until C reaches its limit. */
	deadline = now_ms() + KILL_DEADLINE_MS;
	while (!m.gone && now_ms() < deadline) {
		monitor_poll(&m, true);
		sleep_ms(2);
	}
	for (int i = 0; i < KILL_GUESSERS; i++)
		atomic_store(&g[i].stop, true);
	for (int i = 0; i < KILL_GUESSERS; i++)
		pthread_join(threads[i], NULL);

	unsigned calls = 0, wrong = 0, unavailable = 0, after_kill = 0, other = 0, unconfirmed = 0,
	         max_seen = 0;
	const char *other_message = "";
	char cut[128] = "";
	for (int i = 0; i < KILL_GUESSERS; i++) {
		calls += atomic_load(&g[i].calls);
		wrong += atomic_load(&g[i].wrong);
		unavailable += atomic_load(&g[i].unavailable);
		if (atomic_load(&g[i].cut_status) >= 0) {
			const size_t used = strlen(cut);
			snprintf(cut + used, sizeof(cut) - used, "%s%s", used ? ", " : "",
			         bkv_status_name((bkv_status)atomic_load(&g[i].cut_status)));
		}
		after_kill += atomic_load(&g[i].after_kill_answers);
		unconfirmed += atomic_load(&g[i].unconfirmed);
		if (atomic_load(&g[i].other) > 0) {
			other += atomic_load(&g[i].other);
			other_message = g[i].other_message;
		}
		if (atomic_load(&g[i].max_used_seen) > max_seen)
			max_seen = atomic_load(&g[i].max_used_seen);
		for (int r = 0; r < REPLICAS; r++)
			bkv_client_free(g[i].clients[r]);
	}
	bkv_client_free(register_client);
	bkv_client_free(m.client);

	/* Every replica's audit log, the victim's too: it survives the kill. */
	audit_counts audit;
	memset(&audit, 0, sizeof(audit));
	for (int i = 0; i < REPLICAS; i++)
		audit_add(&audit, env.r[i].audit_log, "replicas-C", from.at[i]);
	unsigned distinct = 0, duplicates = 0, max_logged = 0;
	for (unsigned v = 1; v < MAX_USED_VALUE; v++) {
		if (audit.used_value[v] > 0) {
			distinct++;
			max_logged = v;
		}
		if (audit.used_value[v] > 1)
			duplicates++;
	}
	double live_consumed = 0;
	for (int i = 0; i < REPLICAS; i++) {
		if (i != KILL_VICTIM)
			live_consumed += replica_metric(i, M_CONSUMED) - m0.consumed[i];
	}

	print_message(
	    "    killed replica %d (master %d and %zu workers) with %u guesser%s mid-call "
	    "on it; all gone after %.0f ms; attempts_used just after: %u\n",
	    KILL_VICTIM + 1, (int)victim_group, nvictim_workers, in_flight,
	    in_flight == 1 ? "" : "s", gone_ms, used_at_kill);
	print_message("    guessers: %u calls, %u wrong, %u wrong but unconfirmed, %u unavailable; "
	              "calls cut by the kill ended in: %s; %u answered by the live replicas "
	              "after the kill; monitor: %u polls (%u after the kill, %u failed), last "
	              "attempts_used %u before the record went\n",
	              calls, wrong, unconfirmed, unavailable, cut[0] ? cut : "(none)", after_kill,
	              m.polls, m.polls_after_kill, m.failures, m.used_when_gone);
	print_message("    audit: %u attempt_used lines, %u distinct values up to %u, %u "
	              "destroyed; live replicas' metrics: %g consumed\n",
	              audit.attempt_used, distinct, max_logged, audit.destroyed, live_consumed);

	if (reg != BKV_OK)
		fail_msg("registering D on replica %d: %s (%s)", KILL_VICTIM + 1,
		         bkv_status_name(reg), reg_err.message);
	assert_true(WIFSIGNALED(master_status) && WTERMSIG(master_status) == SIGKILL);
	if (!all_gone)
		fail_msg("processes of the killed replica are still running");
	assert_int_equal(nvictim_workers, WORKERS);
	if (m.violation[0] != '\0')
		fail_msg("%s", m.violation);
	if (other != 0)
		fail_msg("%u guesses failed unexpectedly, e.g. %s", other, other_message);
	/* The kill landed while C still had attempts left, and the record outlived it. */
	assert_true(registered_after_kill);
	assert_true(used_at_kill < LIMIT);
	assert_true(m.polls_after_kill > 0);
	/* The live replicas kept serving, and C went only at its limit. */
	assert_true(after_kill > 0);
	assert_true(m.gone);
	for (int i = 0; i < REPLICAS; i++) {
		if (i != KILL_VICTIM) {
			assert_true(healthz_ok(i));
			assert_false(get_status(i, token_c).registered);
		}
	}
	assert_int_equal(audit.bad_lines, 0);
	assert_int_equal(duplicates, 0);
	assert_int_equal(audit.attempt_used, distinct);
	assert_int_equal(max_logged, LIMIT);
	/* Only an attempt committed by the victim just before it died can miss its line. */
	assert_true(distinct + in_flight >= LIMIT);
	assert_true(in_flight > 0); /* the kill really was mid-flight */
	assert_int_equal(audit.destroyed, 1);
	assert_true(max_seen <= LIMIT);

	/* D, committed on the victim just before the kill, recovers on the others. */
	for (int i = 0; i < REPLICAS; i++) {
		if (i != KILL_VICTIM)
			expect_recover(i, token_d, &key_d);
	}
	/* The victim comes back on the same database and still knows D. */
	const double t0 = now_ms();
	assert_true(replicas_ensure());
	print_message("    replica %d restarted in %.0f ms\n", KILL_VICTIM + 1, now_ms() - t0);
	expect_recover(KILL_VICTIM, token_d, &key_d);
	expect_destroyed(KILL_VICTIM, token_c, LIMIT);
	check_bystander();
	bkv_key_wipe(&key_c);
	bkv_key_wipe(&key_d);
}

/* ------------------------------------------------------------------------------------ */
/* 3. Restart PostgreSQL under load                                                      */
/* ------------------------------------------------------------------------------------ */

typedef struct call_event {
	double start, end;
	bkv_status status;
} call_event;

typedef struct restart_load {
	bkv_client *e_client; /* replica 1: correct-password recoveries of E */
	bkv_client *f_client; /* replica 2: paced wrong guesses for F */
	const char *token_e, *token_f;
	const bkv_key *key_e;
	atomic_bool stop;
	atomic_uint nevents;
	call_event events[MAX_EVENTS];
	atomic_uint wrong_key; /* E recovered, but not its key */
	char e_other[NOTE_BYTES];
	/* F */
	atomic_uint f_calls, f_wrong, f_unavailable, f_other;
	char f_other_message[NOTE_BYTES];
	double deadline;
} restart_load;

static void *recover_e_loop(void *arg)
{
	restart_load *l = arg;
	while (!atomic_load(&l->stop) && now_ms() < l->deadline &&
	       atomic_load(&l->nevents) < MAX_EVENTS) {
		bkv_error err = {0};
		bkv_key got;
		bkv_recover_info info;
		const double t0 = now_ms();
		const bkv_status st = bkv_recover(l->e_client, l->token_e, PASSWORD,
		                                  strlen(PASSWORD), &got, &info, &err);
		const double t1 = now_ms();
		if (st == BKV_OK) {
			if (memcmp(got.bytes, l->key_e->bytes, BKV_KEY_BYTES) != 0)
				atomic_fetch_add(&l->wrong_key, 1);
			bkv_key_wipe(&got);
		} else if (st != BKV_ERR_UNAVAILABLE) {
			snprintf(l->e_other, sizeof(l->e_other), "%s: %s", bkv_status_name(st),
			         err.message);
		}
		/* The only writer: fill the slot, then publish it. */
		const unsigned n = atomic_load(&l->nevents);
		l->events[n] = (call_event){t0, t1, st};
		atomic_store(&l->nevents, n + 1);
		if (st != BKV_OK)
			sleep_ms(20); /* do not spin on a vault that is down */
	}
	return NULL;
}

static void *guess_f_loop(void *arg)
{
	restart_load *l = arg;
	while (!atomic_load(&l->stop) && now_ms() < l->deadline &&
	       atomic_load(&l->f_wrong) < F_MAX_WRONG) {
		bkv_error err = {0};
		bkv_key got;
		bkv_recover_info info;
		const bkv_status st = bkv_recover(l->f_client, l->token_f, WRONG_PASSWORD,
		                                  strlen(WRONG_PASSWORD), &got, &info, &err);
		atomic_fetch_add(&l->f_calls, 1);
		if (st == BKV_ERR_WRONG_PASSWORD) {
			atomic_fetch_add(&l->f_wrong, 1);
		} else if (st == BKV_ERR_UNAVAILABLE) {
			atomic_fetch_add(&l->f_unavailable, 1);
		} else {
			atomic_fetch_add(&l->f_other, 1);
			snprintf(l->f_other_message, sizeof(l->f_other_message), "%s: %s",
			         bkv_status_name(st), err.message);
			if (st == BKV_OK)
				bkv_key_wipe(&got);
		}
		sleep_ms(F_PACE_MS);
	}
	return NULL;
}

static unsigned oks_after(const restart_load *l, unsigned n, double t)
{
	unsigned count = 0;
	for (unsigned i = 0; i < n; i++)
		count += l->events[i].status == BKV_OK && l->events[i].start >= t ? 1u : 0u;
	return count;
}

static void test_postgresql_restart_under_load_is_unavailable_then_heals(void **state)
{
	(void)state;
	const char *token_e = token_for("replicas-E");
	const char *token_f = token_for("replicas-F");
	bkv_key key_e, key_f;
	bkv_key_generate(&key_e);
	bkv_key_generate(&key_f);
	do_register(0, token_e, &key_e, LIMIT);
	do_register(1, token_f, &key_f, F_LIMIT);
	const bkv_account_status e_before = get_status(2, token_e);
	const bkv_account_status f_before = get_status(2, token_f);
	assert_int_equal(e_before.attempts_used, 0);
	assert_int_equal(f_before.attempts_used, 0);

	restart_load *l = calloc(1, sizeof(*l));
	assert_non_null(l);
	l->e_client = make_client(0, BKV_SUITE_VAULT_PREFERENCE);
	l->f_client = make_client(1, BKV_SUITE_VAULT_PREFERENCE);
	l->token_e = token_e;
	l->token_f = token_f;
	l->key_e = &key_e;
	l->deadline = now_ms() + 60000;
	status_monitor mf = {.client = make_client(2, BKV_SUITE_VAULT_PREFERENCE),
	                     .token = token_f};
	pthread_t te, tf;
	assert_int_equal(pthread_create(&te, NULL, recover_e_loop, l), 0);
	assert_int_equal(pthread_create(&tf, NULL, guess_f_loop, l), 0);

	/* Under way: a few recoveries done. */
	double deadline = now_ms() + 10000;
	while (oks_after(l, atomic_load(&l->nevents), 0) < 3 && now_ms() < deadline) {
		monitor_poll(&mf, false);
		sleep_ms(10);
	}
	const double stop0 = now_ms();
	const bool stopped = pg_ctl("stop");
	env.pg_stopped = stopped;
	const double stop1 = now_ms();
	const double sleep_until = now_ms() + OUTAGE_SLEEP_MS;
	while (now_ms() < sleep_until) {
		monitor_poll(&mf, false);
		sleep_ms(20);
	}
	const double start0 = now_ms();
	const bool started = stopped && pg_ctl("start");
	if (started)
		env.pg_stopped = false;
	const double start1 = now_ms();
	const unsigned f_wrong_at_start = atomic_load(&l->f_wrong);
	/* Healed: three recoveries begun after PostgreSQL was back succeed, and F's guesses are
	 * answered again. */
	deadline = now_ms() + RECOVERY_DEADLINE;
	while (started &&
	       (oks_after(l, atomic_load(&l->nevents), start1) < 3 ||
	        (atomic_load(&l->f_wrong) < f_wrong_at_start + 2 &&
	         atomic_load(&l->f_wrong) < F_MAX_WRONG)) &&
	       now_ms() < deadline) {
		monitor_poll(&mf, false);
		sleep_ms(10);
	}
	const double healed = now_ms();
	atomic_store(&l->stop, true);
	pthread_join(te, NULL);
	pthread_join(tf, NULL);
	for (int i = 0; i < 20; i++)
		monitor_poll(&mf, false);

	const unsigned n = atomic_load(&l->nevents);
	unsigned ok = 0, unavailable = 0, other = 0, ok_after = 0;
	double first_unavailable = 0, first_unavailable_end = 0, first_ok_after = 0;
	for (unsigned i = 0; i < n; i++) {
		const call_event *ev = &l->events[i];
		if (ev->status == BKV_OK) {
			ok++;
			if (ev->start >= start1) {
				ok_after++;
				if (first_ok_after == 0)
					first_ok_after = ev->end;
			}
		} else if (ev->status == BKV_ERR_UNAVAILABLE) {
			unavailable++;
			if (first_unavailable == 0) {
				first_unavailable = ev->start;
				first_unavailable_end = ev->end;
			}
		} else {
			other++;
		}
	}
	double first_ok_after_outage = 0;
	for (unsigned i = 0; i < n; i++) {
		if (l->events[i].status == BKV_OK && first_unavailable > 0 &&
		    l->events[i].start > first_unavailable) {
			first_ok_after_outage = l->events[i].end;
			break;
		}
	}
	print_message("    pg_ctl stop %.0f ms, down %.0f ms, pg_ctl start %.0f ms; E loop: %u "
	              "calls, %u ok, %u unavailable, %u other; client-visible outage %.0f ms "
	              "(first unavailable -> first success), healed %.0f ms after the start "
	              "returned\n",
	              stop1 - stop0, start1 - stop0, start1 - start0, n, ok, unavailable, other,
	              first_ok_after_outage > 0 ? first_ok_after_outage - first_unavailable : -1,
	              first_ok_after > 0 ? first_ok_after - start1 : -1);
	print_message("    F: %u calls, %u wrong (%u after the restart), %u unavailable, %u other; "
	              "monitor %u polls (%u failed), attempts_used %u\n",
	              atomic_load(&l->f_calls), atomic_load(&l->f_wrong),
	              atomic_load(&l->f_wrong) - f_wrong_at_start, atomic_load(&l->f_unavailable),
	              atomic_load(&l->f_other), mf.polls, mf.failures, mf.last_used);
	bkv_client_free(l->e_client);
	bkv_client_free(l->f_client);
	bkv_client_free(mf.client);
	const unsigned wrong_key = atomic_load(&l->wrong_key);
	const unsigned f_wrong = atomic_load(&l->f_wrong);
	const unsigned f_wrong_after = f_wrong - f_wrong_at_start;
	const unsigned f_unavailable = atomic_load(&l->f_unavailable);
	const unsigned f_other = atomic_load(&l->f_other);
	char e_other[NOTE_BYTES], f_other_message[NOTE_BYTES];
	snprintf(e_other, sizeof(e_other), "%s", l->e_other);
	snprintf(f_other_message, sizeof(f_other_message), "%s", l->f_other_message);
	free(l);

	assert_true(stopped);
	assert_true(started);
	if (wrong_key != 0)
		fail_msg("%u recoveries of E returned another key", wrong_key);
	/* During the outage requests fail with "unavailable", and only with that. */
	if (other != 0)
		fail_msg("%u recoveries of E failed with something else than unavailable, e.g. "
		         "%s",
		         other, e_other);
	if (unavailable == 0)
		fail_msg("PostgreSQL was down %.0f ms and no request failed", start1 - stop0);
	/* Nothing failed before the outage began: a call may have started before the stop
	 * (it was in flight when PostgreSQL went away), but its answer came after. */
	assert_true(first_unavailable_end >= stop0);
	/* ... then succeed again. */
	if (ok_after < 3)
		fail_msg("only %u recoveries succeeded in the %.0f ms after PostgreSQL came back",
		         ok_after, healed - start1);
	if (f_other != 0)
		fail_msg("%u wrong guesses for F failed unexpectedly, e.g. %s", f_other,
		         f_other_message);
	assert_true(f_wrong_after >= 2 || f_wrong >= F_MAX_WRONG);
	if (mf.violation[0] != '\0')
		fail_msg("F: %s", mf.violation);

	/* No counter lowered, no record lost or replaced. */
	const bkv_account_status e_after = get_status(2, token_e);
	assert_true(e_after.registered);
	assert_int_equal(e_after.record_version, e_before.record_version);
	expect_recover(2, token_e, &key_e);
	assert_int_equal(get_status(1, token_e).attempts_used, 0);
	const bkv_account_status f_after = get_status(0, token_f);
	assert_true(f_after.registered);
	assert_int_equal(f_after.record_version, f_before.record_version);
	/* Every answered guess is counted; a guess cut by the outage may be counted too (an
	 * in-doubt commit errs on the safe side), none is refunded. */
	if (f_after.attempts_used < f_wrong || f_after.attempts_used > f_wrong + f_unavailable)
		fail_msg("F: attempts_used %u after %u wrong answers and %u unavailable",
		         f_after.attempts_used, f_wrong, f_unavailable);
	assert_true(f_after.attempts_used >= mf.last_used);
	for (int i = 0; i < REPLICAS; i++)
		expect_recover(i, token_e, &key_e);
	expect_recover(1, token_f, &key_f);
	check_bystander();
	bkv_key_wipe(&key_e);
	bkv_key_wipe(&key_f);
}

/* ------------------------------------------------------------------------------------ */
/* 4. Tickets are stateless across replicas                                              */
/* ------------------------------------------------------------------------------------ */

/* release_key = HKDF-Expand(session_key, "bkv-v1 release", 32); wrap_key likewise from
 * export_key with "bkv-v1 wrap"; both AES-256-GCM nonce || ct || tag (docs/PROTOCOL.md). */
static bool open_gcm(opaque_suite_id suite, const uint8_t *prk, const char *info, const uint8_t *in,
                     size_t in_len, uint8_t *out, size_t out_len)
{
	uint8_t key[32];
	if (in_len != 12 + out_len + 16 ||
	    opaque_kdf_expand(suite, prk, opaque_suite_sizes(suite)->Nh, (const uint8_t *)info,
	                      strlen(info), key, sizeof(key)) != OPAQUE_OK)
		return false;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0;
	const bool ok =
	    ctx != NULL && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, in) == 1 &&
	    EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)info, (int)strlen(info)) == 1 &&
	    EVP_DecryptUpdate(ctx, out, &n, in + 12, (int)out_len) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + 12 + out_len)) == 1 &&
	    EVP_DecryptFinal_ex(ctx, out + n, &n) == 1;
	EVP_CIPHER_CTX_free(ctx);
	sodium_memzero(key, sizeof(key));
	return ok;
}

static void ticket_across_replicas(bkv_suite suite, const char *account)
{
	const char *token = token_for(account);
	bkv_key key;
	bkv_key_generate(&key);
	bkv_client *c = make_client(0, suite);
	bkv_error err = {0};
	EXPECT_STATUS(bkv_register(c, token, PASSWORD, strlen(PASSWORD), &key, LIMIT, &err), BKV_OK,
	              err);
	bkv_client_free(c);
	const bkv_account_status before = get_status(0, token);
	assert_int_equal(before.suite, suite);
	const opaque_suite_id id = (opaque_suite_id)suite;
	const opaque_sizes *sizes = opaque_suite_sizes(id);
	/* The cheap client's parameters, so the raw client derives the same keys. */
	const opaque_config oc = {
	    id, (const uint8_t *)CONTEXT, sizeof(CONTEXT) - 1, {OPAQUE_KSF_ARGON2ID, 1, 1024, 1}};

	/* RecoverStart on replica 1. */
	opaque_client_login_state login;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES], ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES], export_key[OPAQUE_MAX_HASH_BYTES];
	assert_int_equal(opaque_client_login_start(&oc, (const uint8_t *)PASSWORD, strlen(PASSWORD),
	                                           &login, ke1, sizes->ke1),
	                 OPAQUE_OK);
	Bkv__V1__RecoverStartRequest sreq = BKV__V1__RECOVER_START_REQUEST__INIT;
	sreq.suite = (Bkv__V1__Suite)suite;
	sreq.ke1 = (ProtobufCBinaryData){sizes->ke1, ke1};
	uint8_t packed[1024];
	size_t len = bkv__v1__recover_start_request__get_packed_size(&sreq);
	assert_true(len <= sizeof(packed));
	bkv__v1__recover_start_request__pack(&sreq, packed);
	http_reply r;
	rpc_raw(0, "RecoverStart", token, packed, len, &r);
	if (r.status != 200)
		fail_msg("RecoverStart on replica 1: HTTP %ld %s", r.status, r.body);
	Bkv__V1__RecoverStartResponse *start =
	    bkv__v1__recover_start_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	http_reply_free(&r);
	assert_non_null(start);
	assert_int_equal(start->attempts_remaining, LIMIT - 1);
	assert_int_equal(opaque_client_login_finish(
	                     &oc, &login, (const uint8_t *)PASSWORD, strlen(PASSWORD), NULL,
	                     start->ke2.data, start->ke2.len, ke3, sizes->ke3, session_key,
	                     sizes->session_key, export_key, sizes->export_key),
	                 OPAQUE_OK);

	/* RecoverFinish on replica 2: the key is released. */
	Bkv__V1__RecoverFinishRequest freq = BKV__V1__RECOVER_FINISH_REQUEST__INIT;
	freq.ticket = start->ticket;
	freq.ke3 = (ProtobufCBinaryData){sizes->ke3, ke3};
	uint8_t finish_packed[2048];
	const size_t flen = bkv__v1__recover_finish_request__get_packed_size(&freq);
	assert_true(flen <= sizeof(finish_packed));
	bkv__v1__recover_finish_request__pack(&freq, finish_packed);
	bkv__v1__recover_start_response__free_unpacked(start, NULL);
	rpc_raw(1, "RecoverFinish", token, finish_packed, flen, &r);
	if (r.status != 200)
		fail_msg("RecoverFinish on replica 2 of a ticket from replica 1: HTTP %ld %s",
		         r.status, r.body);
	Bkv__V1__RecoverFinishResponse *finish =
	    bkv__v1__recover_finish_response__unpack(NULL, r.len, (const uint8_t *)r.body);
	http_reply_free(&r);
	assert_non_null(finish);
	assert_int_equal(finish->record_version, before.record_version);
	uint8_t wrapped[12 + BKV_KEY_BYTES + 16];
	bkv_key got;
	assert_true(open_gcm(id, session_key, "bkv-v1 release", finish->sealed_key.data,
	                     finish->sealed_key.len, wrapped, sizeof(wrapped)));
	assert_true(open_gcm(id, export_key, "bkv-v1 wrap", wrapped, sizeof(wrapped), got.bytes,
	                     sizeof(got.bytes)));
	assert_memory_equal(got.bytes, key.bytes, BKV_KEY_BYTES);
	bkv__v1__recover_finish_response__free_unpacked(finish, NULL);
	const bkv_account_status after = get_status(2, token);
	assert_int_equal(after.attempts_used, 0); /* the success reset the counter */

	/* The same ticket and KE3 on replica 3: refused, and nothing changes. */
	const double refused_before = replica_metric(
	    2, "bkv_requests_total{method=\"RecoverFinish\",code=\"failed_precondition\"}");
	rpc_raw(2, "RecoverFinish", token, finish_packed, flen, &r);
	check_connect_error(&r, 400, "failed_precondition");
	http_reply_free(&r);
	assert_true(replica_metric(2, "bkv_requests_total{method=\"RecoverFinish\",code="
	                              "\"failed_precondition\"}") == refused_before + 1);
	const bkv_account_status replayed = get_status(0, token);
	assert_same_status("after the replay", &after, &replayed);
	expect_recover(2, token, &key);

	sodium_memzero(session_key, sizeof(session_key));
	sodium_memzero(export_key, sizeof(export_key));
	sodium_memzero(wrapped, sizeof(wrapped));
	bkv_key_wipe(&got);
	bkv_key_wipe(&key);
}

static void test_tickets_are_stateless_across_replicas(void **state)
{
	(void)state;
	ticket_across_replicas(BKV_SUITE_RISTRETTO255_SHA512, "replicas-G-r255");
	ticket_across_replicas(BKV_SUITE_P256_SHA256, "replicas-G-p256");
	check_bystander();
}

/* ------------------------------------------------------------------------------------ */
/* 5. Compare-and-set registration across replicas                                       */
/* ------------------------------------------------------------------------------------ */

#define CAS_ROUNDS 6

typedef struct cas_racer {
	bkv_client *client;
	const char *token;
	const char *password;
	const bkv_key *key;
	uint64_t replaces;
	pthread_barrier_t *go;
	bkv_status status;
	uint64_t version;
	char message[BKV_MESSAGE_BYTES];
} cas_racer;

static void *race_replace(void *arg)
{
	cas_racer *r = arg;
	bkv_error err = {0};
	pthread_barrier_wait(r->go);
	r->status = bkv_register_replacing(r->client, r->token, r->password, strlen(r->password),
	                                   r->key, 0, r->replaces, &r->version, &err);
	snprintf(r->message, sizeof(r->message), "%s", err.message);
	return NULL;
}

static bkv_status recover_on(int i, const char *token, const char *password, bkv_key *got)
{
	bkv_client *c = make_client(i, BKV_SUITE_VAULT_PREFERENCE);
	bkv_error err = {0};
	bkv_recover_info info;
	const bkv_status st = bkv_recover(c, token, password, strlen(password), got, &info, &err);
	bkv_client_free(c);
	return st;
}

/* Two replicas replace the same record version at once: exactly one wins (version + 1, its
 * password and key), the other gets BKV_ERR_CONFLICT and changed nothing. */
static void test_two_replicas_racing_to_replace_one_version_let_exactly_one_win(void **state)
{
	(void)state;
	const char *token = token_for("replicas-R");
	static const char *const passwords[2] = {"racer zero's password", "racer one's password"};
	bkv_key keys[2], got;
	bkv_key_generate(&keys[0]);
	bkv_key_generate(&keys[1]);
	do_register(0, token, &keys[0], LIMIT);
	unsigned wins[2] = {0, 0};
	for (int round = 0; round < CAS_ROUNDS; round++) {
		const bkv_account_status before = get_status(round % REPLICAS, token);
		assert_true(before.registered);
		pthread_barrier_t go;
		pthread_barrier_init(&go, NULL, 2);
		cas_racer r[2];
		pthread_t threads[2];
		for (int k = 0; k < 2; k++) {
			/* Racer k on replica (round + k) % 3, so every pair meets. */
			r[k] = (cas_racer){.client = make_client((round + k) % REPLICAS,
			                                         BKV_SUITE_VAULT_PREFERENCE),
			                   .token = token,
			                   .password = passwords[k],
			                   .key = &keys[k],
			                   .replaces = before.record_version,
			                   .go = &go};
		}
		for (int k = 0; k < 2; k++) {
			if (pthread_create(&threads[k], NULL, race_replace, &r[k]) != 0)
				abort(); /* the barrier would wait forever */
		}
		for (int k = 0; k < 2; k++)
			pthread_join(threads[k], NULL);
		pthread_barrier_destroy(&go);
		for (int k = 0; k < 2; k++)
			bkv_client_free(r[k].client);

		int winner = -1;
		for (int k = 0; k < 2; k++) {
			if (r[k].status == BKV_OK)
				winner = winner < 0 ? k : 2; /* 2: both won */
		}
		if (winner < 0 || winner == 2 || r[1 - winner].status != BKV_ERR_CONFLICT)
			fail_msg(
			    "round %d (replicas %d and %d, replacing version %llu): racer 0 %s "
			    "(%s), racer 1 %s (%s); want exactly one ok and one conflict",
			    round, round % REPLICAS + 1, (round + 1) % REPLICAS + 1,
			    (unsigned long long)before.record_version, bkv_status_name(r[0].status),
			    r[0].message, bkv_status_name(r[1].status), r[1].message);
		const int loser = 1 - winner;
		wins[winner]++;
		assert_int_equal(r[winner].version, before.record_version + 1);
		assert_int_equal(r[loser].version, 0);
		/* Every replica sees the winner's record. */
		for (int i = 0; i < REPLICAS; i++) {
			const bkv_account_status s = get_status(i, token);
			assert_true(s.registered);
			assert_int_equal(s.record_version, before.record_version + 1);
			assert_int_equal(s.attempts_used, 0);
		}
		/* The loser's password does not open it (one attempt), the winner's does, on the
		 * third replica. */
		const int third = (round + 2) % REPLICAS;
		const bkv_status lost = recover_on(third, token, passwords[loser], &got);
		if (lost != BKV_ERR_WRONG_PASSWORD)
			fail_msg("the loser's password: %s, want wrong password",
			         bkv_status_name(lost));
		assert_int_equal(recover_on(third, token, passwords[winner], &got), BKV_OK);
		assert_memory_equal(got.bytes, keys[winner].bytes, BKV_KEY_BYTES);
		bkv_key_wipe(&got);
		print_message(
		    "    round %d: replica %d won over replica %d (version %llu -> %llu); "
		    "the loser: %s\n",
		    round, (round + winner) % REPLICAS + 1, (round + loser) % REPLICAS + 1,
		    (unsigned long long)before.record_version,
		    (unsigned long long)r[winner].version, r[loser].message);
	}
	print_message("    %d rounds: racer 0 won %u, racer 1 won %u\n", CAS_ROUNDS, wins[0],
	              wins[1]);
	check_bystander();
	bkv_key_wipe(&keys[0]);
	bkv_key_wipe(&keys[1]);
}

/* ------------------------------------------------------------------------------------ */

/* The bystander B, registered on replica 3 and seen on replica 1, before the other tests
 * (which check that nothing they do touches it). */
static void test_a_bystander_registered_on_one_replica_is_seen_on_the_others(void **state)
{
	(void)state;
	bkv_key_generate(&env.key_b);
	do_register(2, token_for("replicas-B"), &env.key_b, 0);
	env.status_b = get_status(0, token_for("replicas-B"));
	assert_true(env.status_b.registered);
	assert_int_equal(env.status_b.attempts_used, 0);
	assert_int_equal(env.status_b.attempt_limit, LIMIT);
	check_bystander();
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, ensure_all, report_time)

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr,
		        "usage: %s BKVD DEV_VAULT_SCRIPT (under tests/with-postgres "
		        "tests/with-vault)\n",
		        argv[0]);
		return 2;
	}
	env.bkvd = argv[1];
	env.dev_vault = argv[2];
	setenv("BKVD", env.bkvd, 1);
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
	    TEST(test_a_bystander_registered_on_one_replica_is_seen_on_the_others),
	    TEST(test_concurrent_guessing_across_three_replicas_consumes_exactly_the_limit),
	    TEST(test_a_guess_whose_finish_fails_still_reports_a_consistent_attempt_count),
	    TEST(test_kill_9_of_one_replica_mid_flight_loses_nothing_committed),
	    TEST(test_postgresql_restart_under_load_is_unavailable_then_heals),
	    TEST(test_tickets_are_stateless_across_replicas),
	    TEST(test_two_replicas_racing_to_replace_one_version_let_exactly_one_win),
	};
	const int failed =
	    cmocka_run_group_tests_name("replicas", tests, group_setup, group_teardown);
	curl_global_cleanup();
	return failed;
}
