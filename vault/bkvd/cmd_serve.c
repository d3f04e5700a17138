/*
 * cmd_serve.c - `bkvd serve`: one master process and N worker processes.
 *
 * The master checks everything it can before forking (configuration, token, keys,
 * database, logs, TLS files, auth key) and refuses to start with a one-line reason and exit
 * code 2. It refuses a port some other process already listens on (another bkvd would
 * otherwise share it through SO_REUSEPORT and the kernel would split clients between the
 * two vaults), and an SQLite database another `bkvd serve` holds (an flock on
 * DATABASE.bkvd.lock). It then binds the port (SO_REUSEPORT), forks the workers and the
 * metrics process ([vault] metrics_listen), restarts a worker that crashes or could not be
 * forked, passes SIGHUP on to the workers (each reopens its logs, for logrotate), and on
 * SIGTERM/SIGINT tells its children to drain and waits for them (SIGKILL after
 * STOP_TIMEOUT_S). Each signal it acts on and each child's exit is one line on stderr.
 *
 * Each worker loads the PKCS#11 module itself after the fork (a PKCS#11 library must not
 * be used across fork), opens its own token session and storage connection, and runs its
 * own event loop.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <poll.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <sodium.h>

#include "bkvd.h"
#include "fiber.h"
#include "server.h"

#define MAX_WORKERS 256
/* The default worker counts (see bkvd_serve), measured with bkv-bench-vault and
 * scripts/bench-storage: 2 per CPU where a committer runs (SQLite on a disk, PostgreSQL)
 * and where commits cost next to nothing (SQLite on tmpfs: the workers lead their own);
 * 4 per CPU on PostgreSQL without a committer, where each worker blocks in its commits.
 * PostgreSQL with a committer, 3 interleaved runs of 64 connections on 2 CPUs: 920, 898,
 * 974 recoveries/s with 4 workers, 938, 722, 739 with 8, 866, 791, 1021 with 2. */
#define WORKERS_PER_CPU          2
#define BLOCKING_WORKERS_PER_CPU 4
/* With a committer, each worker runs up to this many requests at once on fibers: one
 * waits for its commit while the others compute (fiber.h). */
#define FIBERS_PER_WORKER 16
#define FIBER_STACK_BYTES (1024 * 1024) /* mapped, touched only as deep as a request goes */
#define STOP_TIMEOUT_S    10
#define PORT_WAIT_MS      3000 /* above the workers' 2 s drain (server.c) */

typedef struct serve_options {
	const char *config_path;
	const char *listen;
	const char *port_file;
	const char *metrics_listen;
	const char *metrics_port_file;
	uint32_t workers;
	bool workers_set;
	bool insecure_plaintext;
} serve_options;

static SSL_CTX *make_tls(const bkvd_config *c, char *why, size_t why_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(why, why_len,
		         "cannot load the TLS certificate and key ([vault] tls_cert %.200s, "
		         "tls_key %.200s)",
		         c->tls_cert, c->tls_key);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Logs are created 0600 whatever the umask: they hold account hashes and peer addresses. */
#define LOG_OPEN_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC)

/* Opens a log: NULL for none (""), stderr for "-". False with the reason on stderr if the
 * file cannot be opened. */
static bool open_log(const char *who, const char *key, const char *path, FILE **log)
{
	*log = NULL;
	if (path[0] == '\0')
		return true;
	if (strcmp(path, "-") == 0) {
		*log = stderr;
		return true;
	}
	int fd = open(path, LOG_OPEN_FLAGS, 0600);
	*log = fd >= 0 ? fdopen(fd, "a") : NULL;
	if (*log == NULL) {
		fprintf(stderr, "%s: cannot open [vault] %s %s: %s\n", who, key, path,
		        strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	return true;
}

static void close_log(FILE *log)
{
	if (log != NULL && log != stderr)
		fclose(log);
}

/* The database file when storage is SQLite ("sqlite:PATH" or a bare path, as
 * bkv_storage_open reads it), else NULL. */
static const char *sqlite_path(const char *storage)
{
	if (strncmp(storage, "sqlite:", 7) == 0)
		return storage + 7;
	return strstr(storage, "://") != NULL ? NULL : storage;
}

static bool auth_settings(const bkvd_config *c, bkv_auth *auth, char *why, size_t why_len)
{
	bkv_auth_settings s = {
	    .algorithm = c->auth_algorithm,
	    .key_file = c->auth_key_file,
	    .issuer = c->auth_issuer,
	    .audience = c->auth_audience,
	    .max_lifetime_s = c->auth_max_lifetime_s,
	    .clock_skew_s = c->auth_clock_skew_s,
	};
	return bkv_auth_init(auth, &s, why, why_len);
}

/* ---- Worker ---- */

/* What SIGHUP reopens in a worker: each log's path and the descriptor its FILE writes to.
 * The handler opens the path anew and puts the new file under the same descriptor (dup2),
 * all async-signal-safe; every log line is one fprintf and one fflush, so a line lands
 * whole in the old file or whole in the new one. */
typedef struct reopen_log {
	const char *path;
	int fd;
} reopen_log;
static reopen_log reopen_logs[2];
static size_t nreopen_logs;

static void on_sighup(int sig)
{
	(void)sig;
	const int saved_errno = errno;
	for (size_t i = 0; i < nreopen_logs; i++) {
		const int fd = open(reopen_logs[i].path, LOG_OPEN_FLAGS, 0600);
		if (fd < 0 || dup2(fd, reopen_logs[i].fd) < 0 ||
		    fcntl(reopen_logs[i].fd, F_SETFD, FD_CLOEXEC) < 0) {
			static const char msg[] = "bkvd worker: SIGHUP: cannot reopen a log file; "
			                          "still writing to the old one\n";
			if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
				/* nowhere left to say it */
			}
		}
		if (fd >= 0)
			close(fd);
	}
	errno = saved_errno;
}

static void reopen_on_sighup(const bkvd_config *c, FILE *audit, FILE *request_log)
{
	nreopen_logs = 0;
	if (audit != NULL && audit != stderr)
		reopen_logs[nreopen_logs++] = (reopen_log){c->audit_log, fileno(audit)};
	if (request_log != NULL && request_log != stderr)
		reopen_logs[nreopen_logs++] = (reopen_log){c->request_log, fileno(request_log)};
	struct sigaction sa = {.sa_handler = on_sighup, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigset_t hup;
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	sigprocmask(SIG_UNBLOCK, &hup, NULL);
}

typedef struct worker_ctx {
	bkv_metrics *metrics;
} worker_ctx;

static void on_token_op(void *arg, bkv_token_op op, uint64_t micros)
{
	worker_ctx *w = arg;
	if ((unsigned)op < BKV_METRICS_TOKEN_OPS)
		bkv_metrics_observe(&w->metrics->token_latency[op], micros);
}

static void on_event(void *arg, const char *event)
{
	worker_ctx *w = arg;
	if (strcmp(event, "attempt_used") == 0)
		bkv_metrics_add(&w->metrics->attempts_consumed, 1);
	else if (strcmp(event, "destroyed") == 0)
		bkv_metrics_add(&w->metrics->records_destroyed, 1);
}

typedef struct worker_addr {
	const char *host;
	char port[16]; /* the port the master reserved */
	int ready_fd;  /* a worker writes one byte here once it listens */
} worker_addr;

static int worker_main(const bkvd_config *c, const worker_addr *addr, bool tls,
                       bkv_metrics *metrics, bkv_rate_limiter *limiter, bkv_storage_group *group,
                       uint32_t member, const uint8_t log_key[32])
{
	char why[512];
	bkv_vault vault = {0};
	bkv_vault_settings *s = &vault.settings;
	bkv_server_settings server = {
	    .listen_fd = -1,
	    .wake_fd = -1,
	    .auth = NULL,
	    .metrics = metrics,
	    .rate_limiter = limiter,
	    .limits = {c->limit_max_header_bytes, c->limit_max_headers, c->limit_idle_timeout_s,
	               c->limit_read_timeout_s, c->limit_max_connections},
	};
	bkv_auth auth;
	worker_ctx w = {.metrics = metrics};
	int rc = BKVD_EXIT_STARTUP;
	if (!bkvd_open_token(c, &vault.token))
		return BKVD_EXIT_STARTUP;
	bkv_token_err terr = bkv_token_load_keys(vault.token, c->suites, c->nsuites);
	if (terr != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd worker: %s\n", bkv_token_strerror(terr));
		goto done;
	}
	if (bkv_storage_open(c->storage, &vault.storage, why, sizeof(why)) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd worker: %s\n", why);
		goto done;
	}
	if (group != NULL &&
	    bkv_storage_join_group(vault.storage, group, member) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd worker: cannot join the database's commit group\n");
		goto done;
	}
	const uint32_t lanes = bkv_storage_group_lanes(group);
	if (lanes > 1) {
		server.fibers = bkv_fibers_new(lanes, FIBER_STACK_BYTES);
		if (server.fibers == NULL) {
			fprintf(stderr, "bkvd worker: cannot map %u fiber stacks\n", lanes);
			goto done;
		}
		const bkv_storage_waiter waiter = BKV_FIBERS_WAITER(server.fibers);
		bkv_storage_set_waiter(vault.storage, &waiter);
		server.wake_fd = bkv_storage_group_wake_fd(group, member);
	}
	if (!auth_settings(c, &auth, why, sizeof(why))) {
		fprintf(stderr, "bkvd worker: %s\n", why);
		goto done;
	}
	server.auth = &auth;
	if (tls && (server.tls = make_tls(c, why, sizeof(why))) == NULL) {
		fprintf(stderr, "bkvd worker: %s\n", why);
		goto done;
	}
	if (!open_log("bkvd worker", "audit_log", c->audit_log, &s->audit) ||
	    !open_log("bkvd worker", "request_log", c->request_log, &server.request_log))
		goto done;
	reopen_on_sighup(c, s->audit, server.request_log);
	/* A listening socket of this worker's own on the shared port. */
	server.listen_fd = bkv_listen(addr->host, addr->port, true, why, sizeof(why));
	if (server.listen_fd < 0) {
		fprintf(stderr, "bkvd worker: %s\n", why);
		goto done;
	}
	if (write(addr->ready_fd, "", 1) != 1) {
		/* the master only waits for it at start-up */
	}
	memcpy(s->suites, c->suites, c->nsuites * sizeof(c->suites[0]));
	s->nsuites = c->nsuites;
	s->context = c->context;
	s->context_len = c->context_len;
	s->ksf = c->ksf;
	s->default_attempt_limit = c->default_attempt_limit;
	s->max_attempt_limit = c->max_attempt_limit;
	s->ticket_lifetime_s = c->ticket_lifetime_s;
	s->event_hook = on_event;
	s->event_arg = &w;
	memcpy(s->log_key, log_key, sizeof(s->log_key));
	bkv_token_set_observer(vault.token, on_token_op, &w);
	rc = bkv_server_run(&server, &vault) == 0 ? BKVD_EXIT_OK : BKVD_EXIT_FAILURE;
done:
	close_log(server.request_log);
	close_log(s->audit);
	if (server.listen_fd >= 0)
		close(server.listen_fd);
	SSL_CTX_free(server.tls);
	if (server.auth != NULL)
		bkv_auth_free(&auth);
	bkv_storage_close(vault.storage);
	bkv_token_close(vault.token);
	bkv_fibers_free(server.fibers);
	sodium_memzero(&vault.settings.log_key, sizeof(vault.settings.log_key));
	return rc;
}

/* ---- Master ---- */

/* What the master supervises: the workers and the metrics process; -1 marks a slot whose
 * process is not running (it exited, or its fork failed) and is started again at
 * restart_at unless the master is stopping. */
typedef struct child {
	pid_t pid;
	time_t restart_at;
} child;

typedef struct children {
	child workers[MAX_WORKERS];
	uint32_t nworkers;
	child metrics;   /* pid -1 and never started when metrics_fd < 0 */
	child committer; /* pid -1 and never started unless use_committer */
	bool use_committer;
	int metrics_fd;
	int reserved_fd;
	int lock_fd; /* the database lock: the master's alone, so it goes with the master */
	worker_addr addr;
	bool tls;
	bkv_metrics *metrics_shm;
	bkv_rate_limiter *limiter; /* shared by the workers; NULL when rate limits are off */
	bkv_storage_group *group;  /* the workers' group commit; NULL on PostgreSQL without a
	                            * committer */
	sigset_t child_mask; /* the mask bkvd started with, plus SIGHUP until a worker handles it */
} children;

/* In a child just forked: it dies with the master, takes the children's signal mask and
 * drops the master's descriptors (the metrics listener too unless keep_metrics). */
static void child_setup(const children *ch, bool keep_metrics)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigprocmask(SIG_SETMASK, &ch->child_mask, NULL);
	close(ch->reserved_fd);
	if (ch->metrics_fd >= 0 && !keep_metrics)
		close(ch->metrics_fd);
	if (ch->lock_fd >= 0)
		close(ch->lock_fd);
}

static pid_t spawn_worker(const bkvd_config *c, const children *ch, uint32_t member,
                          const uint8_t log_key[32])
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	child_setup(ch, false);
	_exit(worker_main(c, &ch->addr, ch->tls, ch->metrics_shm, ch->limiter, ch->group, member,
	                  log_key));
}

/* The workers' commit group, for /metrics. */
static void render_group(FILE *f, void *arg)
{
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(arg, &gi);
	fprintf(f,
	        "# HELP bkv_commits_total Commits of the workers' writes (group commit).\n"
	        "# TYPE bkv_commits_total counter\n"
	        "bkv_commits_total %" PRIu64 "\n"
	        "# HELP bkv_commit_writes_total Writes those commits carried.\n"
	        "# TYPE bkv_commit_writes_total counter\n"
	        "bkv_commit_writes_total %" PRIu64 "\n"
	        "# HELP bkv_commits_held_total Commits the committer held for writes on their "
	        "way.\n"
	        "# TYPE bkv_commits_held_total counter\n"
	        "bkv_commits_held_total %" PRIu64 "\n"
	        "# HELP bkv_commit_holds_expired_total Of those, the ones whose hold ran out of "
	        "time.\n"
	        "# TYPE bkv_commit_holds_expired_total counter\n"
	        "bkv_commit_holds_expired_total %" PRIu64 "\n"
	        "# HELP bkv_commit_writes_announced Writes that running requests announced and "
	        "have not queued yet.\n"
	        "# TYPE bkv_commit_writes_announced gauge\n"
	        "bkv_commit_writes_announced %" PRIu32 "\n",
	        gi.batches, gi.writes, gi.held, gi.hold_expired, gi.expected);
}

/* The metrics process holds no key: it only reads the shared counters. */
static pid_t spawn_metrics(const children *ch, uint8_t log_key[32])
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_NAME, "bkvd-metrics"); /* tells it from the workers in ps and /proc */
	sodium_memzero(log_key, 32);
	signal(SIGHUP, SIG_IGN);
	child_setup(ch, true);
	const bkv_metrics_extra group = {render_group, ch->group};
	_exit(bkv_metrics_serve(ch->metrics_fd, ch->metrics_shm,
	                        ch->group != NULL ? &group : NULL) == 0
	          ? BKVD_EXIT_OK
	          : BKVD_EXIT_FAILURE);
}

/*
 * The committer holds no key and no token: on a database connection of its own it runs
 * every commit of the workers' group (bkv_storage_group_commit) until SIGTERM. A process
 * that only commits sleeps most of the time, so the scheduler runs it as soon as its fsync
 * returns; a worker leading the commit waits behind the busy workers for a CPU meanwhile,
 * and so does every write queued behind that commit. While it is not running (not yet
 * started, or restarting) the workers lead their own commits.
 */
static volatile sig_atomic_t committer_stopping;

static void on_committer_term(int sig)
{
	(void)sig;
	committer_stopping = 1;
}

static pid_t spawn_committer(const bkvd_config *c, const children *ch, uint8_t log_key[32])
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_NAME, "bkvd-committer");
	sodium_memzero(log_key, 32);
	signal(SIGHUP, SIG_IGN);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_committer_term; /* no SA_RESTART: a wait ends at once */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	child_setup(ch, false);
	bkv_storage *s = NULL;
	char why[512] = "";
	bkv_storage_err err = bkv_storage_open(c->storage, &s, why, sizeof(why));
	if (err == BKV_STORAGE_OK) {
		err = bkv_storage_group_commit(ch->group, s, &committer_stopping);
		bkv_storage_close(s);
		snprintf(why, sizeof(why), "%s", bkv_storage_strerror(err));
	}
	if (err != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd committer: cannot run the commits: %s\n", why);
		_exit(BKVD_EXIT_STARTUP);
	}
	_exit(BKVD_EXIT_OK);
}

/* A committer, and with it the workers' fibers, pays for its wake-ups wherever an fsync
 * reaches a device. Measured on a disk whose fsync the probe put at 0.09 ms: without a
 * committer 723 / 749 recoveries/s, with one 1087 / 1130. On tmpfs (about 1 us) the two
 * are even, and the workers lead their own commits: one process less. */
#define COMMITTER_FSYNC_MS 0.02

/* What fdatasync of one rewritten page costs beside the database (the median of 9, in
 * ms), or -1 if the probe file cannot be written there. */
static double fsync_ms(const char *db)
{
	char path[PATH_MAX];
	const char *slash = strrchr(db, '/');
	const int dir_len = slash == NULL ? 1 : (slash == db ? 1 : (int)(slash - db));
	if (snprintf(path, sizeof(path), "%.*s/.bkvd-fsync-probe.%d", dir_len,
	             slash == NULL ? "." : db, (int)getpid()) >= (int)sizeof(path))
		return -1;
	const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	static const uint8_t page[4096];
	double t[9];
	bool ok = true;
	for (size_t i = 0; i < 9 && ok; i++) {
		struct timespec a, b;
		ok = pwrite(fd, page, sizeof(page), 0) == (ssize_t)sizeof(page);
		clock_gettime(CLOCK_MONOTONIC, &a);
		ok = ok && fdatasync(fd) == 0;
		clock_gettime(CLOCK_MONOTONIC, &b);
		t[i] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	}
	close(fd);
	unlink(path);
	if (!ok)
		return -1;
	for (size_t i = 1; i < 9; i++) /* insertion sort */
		for (size_t j = i; j > 0 && t[j - 1] > t[j]; j--) {
			const double x = t[j];
			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	return t[4];
}

/* Whether a committer runs the workers' commits ([vault] committer; auto: measured beside
 * an SQLite database, always on PostgreSQL, db NULL), and the start-up line that says so,
 * into line. */
static bool choose_committer(const bkvd_config *c, const char *db, char *line, size_t line_len)
{
	if (db == NULL) {
		/* Each commit waits for a round trip and the server's WAL flush, never nothing. */
		const bool on = c->committer != BKVD_COMMITTER_OFF;
		snprintf(line, line_len, "%s ([vault] committer = %s, PostgreSQL)",
		         on ? "commits run in a committer process"
		            : "each worker runs its own commits, one request at a time",
		         c->committer == BKVD_COMMITTER_AUTO ? "auto" : (on ? "on" : "off"));
		return on;
	}
	const double ms = c->committer == BKVD_COMMITTER_AUTO ? fsync_ms(db) : -1;
	const bool on = c->committer == BKVD_COMMITTER_AUTO ? ms < 0 || ms >= COMMITTER_FSYNC_MS
	                                                    : c->committer == BKVD_COMMITTER_ON;
	const char *what =
	    on ? "commits run in a committer process" : "the workers run their own commits";
	if (c->committer != BKVD_COMMITTER_AUTO)
		snprintf(line, line_len, "%s ([vault] committer = %s)", what, on ? "on" : "off");
	else if (ms < 0)
		snprintf(line, line_len, "%s (fsync beside the database not measured)", what);
	else
		snprintf(line, line_len, "%s (fsync beside the database: %.3f ms)", what, ms);
	return on;
}

/* The supervised processes: the workers, then the metrics process and the committer. */
typedef enum { CHILD_WORKER, CHILD_METRICS, CHILD_COMMITTER } child_kind;
static const char *const child_names[] = {"worker", "metrics process", "committer"};
#define NCHILDREN(ch) ((ch)->nworkers + 2)

static child *child_at(children *ch, uint32_t i, child_kind *kind)
{
	*kind =
	    i < ch->nworkers ? CHILD_WORKER : (i == ch->nworkers ? CHILD_METRICS : CHILD_COMMITTER);
	return *kind == CHILD_WORKER ? &ch->workers[i]
	                             : (*kind == CHILD_METRICS ? &ch->metrics : &ch->committer);
}

static bool children_alive(children *ch)
{
	child_kind kind;
	for (uint32_t i = 0; i < NCHILDREN(ch); i++)
		if (child_at(ch, i, &kind)->pid > 0)
			return true;
	return false;
}

/* To the workers, and with workers_only false to the others too. */
static void signal_children(children *ch, int sig, bool workers_only)
{
	child_kind kind;
	for (uint32_t i = 0; i < NCHILDREN(ch); i++) {
		const child *k = child_at(ch, i, &kind);
		if (k->pid > 0 && (kind == CHILD_WORKER || !workers_only))
			kill(k->pid, sig);
	}
}

/* Starts every process whose slot is empty and due; a failed fork is retried a second
 * later (reported once until a fork succeeds again). False if a fork failed. */
static bool start_missing(const bkvd_config *c, children *ch, uint8_t log_key[32])
{
	static bool fork_failure_reported;
	const time_t now = time(NULL);
	bool forked_all = true;
	for (uint32_t i = 0; i < NCHILDREN(ch); i++) {
		child_kind kind;
		child *k = child_at(ch, i, &kind);
		if (k->pid > 0 || now < k->restart_at ||
		    (kind == CHILD_METRICS && ch->metrics_fd < 0) ||
		    (kind == CHILD_COMMITTER && !ch->use_committer))
			continue;
		k->pid = kind == CHILD_WORKER    ? spawn_worker(c, ch, i, log_key)
		         : kind == CHILD_METRICS ? spawn_metrics(ch, log_key)
		                                 : spawn_committer(c, ch, log_key);
		if (k->pid > 0)
			continue;
		if (!fork_failure_reported)
			fprintf(stderr, "bkvd: cannot fork a %s: %s; retrying every second\n",
			        child_names[kind], strerror(errno));
		fork_failure_reported = true;
		k->pid = -1;
		k->restart_at = now + 1;
		forked_all = false;
	}
	if (forked_all)
		fork_failure_reported = false;
	return forked_all;
}

/* Reaps exited children and reports each on one line; unless stopping, schedules its
 * restart (a second later for one that could not start, which would not start at once
 * either). The master waits for signals with sigtimedwait and has no handlers, so this
 * runs in normal context and may use stdio. */
static void reap_children(children *ch, bool stopping)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (uint32_t i = 0; i < NCHILDREN(ch); i++) {
			child_kind kind;
			child *k = child_at(ch, i, &kind);
			if (k->pid != pid)
				continue;
			k->pid = -1;
			if (kind != CHILD_METRICS)
				bkv_storage_group_reap(ch->group, pid);
			fprintf(stderr, "bkvd: %s %d %s %d%s\n", child_names[kind], (int)pid,
			        WIFSIGNALED(status) ? "killed by signal" : "exited with",
			        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
			        stopping ? "" : "; restarting it");
			if (stopping)
				break;
			if (kind == CHILD_WORKER)
				bkv_metrics_add(&ch->metrics_shm->worker_restarts, 1);
			const bool could_not_start =
			    WIFEXITED(status) && WEXITSTATUS(status) == BKVD_EXIT_STARTUP;
			k->restart_at = time(NULL) + (could_not_start ? 1 : 0);
			break;
		}
	}
}

/* Everything that can be checked before forking, so bad setups fail fast with exit 2. */
static bool preflight(const bkvd_config *c, bool tls)
{
	char why[512];
	bkv_token *token;
	if (!bkvd_open_token(c, &token))
		return false;
	bkv_token_err terr =
	    bkv_token_check_mechanisms(token, c->suites, c->nsuites, why, sizeof(why));
	if (terr == BKV_TOKEN_OK) {
		terr = bkv_token_load_keys(token, c->suites, c->nsuites);
		if (terr != BKV_TOKEN_OK)
			snprintf(why, sizeof(why), "%s", bkvd_token_error(token, terr));
	}
	if (terr == BKV_TOKEN_OK)
		terr = bkv_token_preflight(token, why, sizeof(why));
	bkv_token_close(token);
	if (terr != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd: token \"%s\": %s\n", c->token_label, why);
		return false;
	}
	bkv_storage *storage;
	if (bkv_storage_open(c->storage, &storage, why, sizeof(why)) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd: %s\n", why);
		return false;
	}
	bkv_storage_close(storage);
	/* New databases are created 0600; one from before that, or chmodded since, is served
	 * with a warning rather than refused, so an upgrade does not stop the vault. */
	const char *db = sqlite_path(c->storage);
	struct stat st;
	if (db != NULL && stat(db, &st) == 0 && (st.st_mode & 0077) != 0)
		fprintf(stderr,
		        "bkvd: warning: the database %s (mode %04o) is readable by group or "
		        "others and holds account ids in clear; chmod 600 it and its -wal and "
		        "-shm files\n",
		        db, (unsigned)(st.st_mode & 07777));
	FILE *audit = NULL, *requests = NULL;
	const bool logs_ok = open_log("bkvd", "audit_log", c->audit_log, &audit) &&
	                     open_log("bkvd", "request_log", c->request_log, &requests);
	close_log(audit);
	close_log(requests);
	if (!logs_ok)
		return false;
	bkv_auth auth;
	if (!auth_settings(c, &auth, why, sizeof(why))) {
		fprintf(stderr, "bkvd: %s\n", why);
		return false;
	}
	bkv_auth_free(&auth);
	if (tls) {
		SSL_CTX *ctx = make_tls(c, why, sizeof(why));
		if (ctx == NULL) {
			fprintf(stderr, "bkvd: %s\n", why);
			return false;
		}
		SSL_CTX_free(ctx);
	}
	return true;
}

/* One `bkvd serve` per SQLite database: an flock on DATABASE.bkvd.lock, held by the
 * master and inherited by its children, released when the last of them exits. */
static bool lock_database(const char *db, int *lock_fd)
{
	char path[BKVD_PATH_MAX + 16];
	if ((size_t)snprintf(path, sizeof(path), "%s.bkvd.lock", db) >= sizeof(path)) {
		fprintf(stderr, "bkvd: the database path is too long\n");
		return false;
	}
	const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "bkvd: cannot create the lock file %s: %s\n", path,
		        strerror(errno));
		return false;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			fprintf(stderr,
			        "bkvd: the database %s is already served by another bkvd (%s is "
			        "locked)\n",
			        db, path);
		else
			fprintf(stderr, "bkvd: cannot lock %s: %s\n", path, strerror(errno));
		close(fd);
		return false;
	}
	*lock_fd = fd;
	return true;
}

static uint16_t bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Waits until every worker has written its byte (they listen), for at most 30 s. */
static bool wait_until_listening(int fd, uint32_t workers)
{
	uint32_t seen = 0;
	while (seen < workers) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 30000) != 1)
			return false;
		char buf[64];
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			return false;
		seen += (uint32_t)n;
	}
	return true;
}

/* Written once the workers listen (so a reader can connect at once), then renamed into
 * place so a reader never sees a partial file. */
static bool write_port_file(const char *path, uint16_t port)
{
	char tmp[BKVD_PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0)
		return false;
	return rename(tmp, path) == 0;
}

static void help(void)
{
	printf("usage: bkvd serve [--config FILE] [--listen HOST:PORT] [--workers N]\n"
	       "                  [--insecure-plaintext] [--port-file FILE]\n"
	       "                  [--metrics-listen HOST:PORT] [--metrics-port-file FILE]\n\n"
	       "Serves the vault: a master process and N workers sharing the port (default:\n"
	       "2 per online CPU; 4 on PostgreSQL with [vault] committer = off). TLS is on\n"
	       "unless the listen address is loopback and no certificate is configured, or\n"
	       "--insecure-plaintext is given. Refuses a port another process listens on, and\n"
	       "an SQLite database another bkvd serves.\n"
	       "SIGHUP: the workers reopen their audit and request logs. SIGTERM: drain, stop.\n\n"
	       "  --port-file FILE           write the bound port there (useful with port 0)\n"
	       "  --metrics-listen HOST:PORT serve /metrics there in plain HTTP (overrides\n"
	       "                             [vault] metrics_listen; default: no metrics)\n"
	       "  --metrics-port-file FILE   write the metrics port there\n");
}

static bool parse_options(int argc, char **argv, serve_options *o)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"listen", required_argument, NULL, 'l'},
	    {"workers", required_argument, NULL, 'w'},
	    {"insecure-plaintext", no_argument, NULL, 'I'},
	    {"port-file", required_argument, NULL, 'p'},
	    {"metrics-listen", required_argument, NULL, 'm'},
	    {"metrics-port-file", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:l:w:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			o->config_path = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'w': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end != '\0' || v == 0 || v > MAX_WORKERS) {
				fprintf(stderr, "bkvd serve: --workers must be 1 to %d\n",
				        MAX_WORKERS);
				return false;
			}
			o->workers = (uint32_t)v;
			o->workers_set = true;
			break;
		}
		case 'I':
			o->insecure_plaintext = true;
			break;
		case 'p':
			o->port_file = optarg;
			break;
		case 'm':
			o->metrics_listen = optarg;
			break;
		case 'P':
			o->metrics_port_file = optarg;
			break;
		case 'h':
			help();
			exit(BKVD_EXIT_OK);
		default:
			return false;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "bkvd serve: unexpected argument \"%s\"\n", argv[optind]);
		return false;
	}
	return true;
}

/* The public port: refused if another process listens there (probed without
 * SO_REUSEPORT), then reserved with SO_REUSEPORT for the workers. The probe also picks the
 * port when port is 0. A port in use is probed again for PORT_WAIT_MS: the workers of a
 * master that was killed drain for 2 s before they let go of it, and a restart must not
 * be refused for them. Returns the reserving socket, or -1 with why. */
static int reserve_port(const char *host, const char *port, uint16_t *bound, char *why,
                        size_t why_len)
{
	int probe = -1;
	bool in_use = true;
	for (int waited = 0; probe < 0 && in_use && waited <= PORT_WAIT_MS; waited += 100) {
		if (waited > 0)
			usleep(100 * 1000);
		probe =
		    bkv_bind("the listen address", host, port, false, false, &in_use, why, why_len);
	}
	if (probe < 0)
		return -1;
	*bound = bound_port(probe);
	close(probe);
	char chosen[16];
	snprintf(chosen, sizeof(chosen), "%u", *bound);
	/* The master only reserves the port; each worker listens on a socket of its own. */
	return bkv_listen(host, chosen, false, why, why_len);
}

int bkvd_cmd_serve(int argc, char **argv)
{
	/* A SIGHUP before the workers run must not kill the master. */
	sigset_t mask, old_mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &old_mask);
	serve_options o = {0};
	if (!parse_options(argc, argv, &o))
		return BKVD_EXIT_STARTUP;
	static bkvd_config config;
	if (!bkvd_load_config(o.config_path, &config))
		return BKVD_EXIT_STARTUP;
	const char *listen_addr = o.listen ? o.listen : config.listen;
	char host[256], port[16], why[512];
	if (!bkvd_split_listen(listen_addr, host, sizeof(host), port, sizeof(port))) {
		fprintf(stderr, "bkvd: invalid listen address \"%s\" (want HOST:PORT)\n",
		        listen_addr);
		return BKVD_EXIT_STARTUP;
	}
	const char *metrics_listen = o.metrics_listen ? o.metrics_listen : config.metrics_listen;
	char metrics_host[256], metrics_port[16];
	if (metrics_listen[0] != '\0' &&
	    !bkvd_split_listen(metrics_listen, metrics_host, sizeof(metrics_host), metrics_port,
	                       sizeof(metrics_port))) {
		fprintf(stderr, "bkvd: invalid metrics_listen address \"%s\" (want HOST:PORT)\n",
		        metrics_listen);
		return BKVD_EXIT_STARTUP;
	}
	const bool tls = config.tls_cert[0] != '\0';
	if (!tls && !bkvd_host_is_loopback(host) && !o.insecure_plaintext) {
		fprintf(stderr,
		        "bkvd: TLS is required on %s: set [vault] tls_cert and tls_key, or "
		        "pass --insecure-plaintext\n",
		        host);
		return BKVD_EXIT_STARTUP;
	}
	const char *db = sqlite_path(config.storage);
	char commits[128] = "";
	const bool use_committer = choose_committer(&config, db, commits, sizeof(commits));
	uint32_t workers = o.workers_set ? o.workers : config.workers;
	if (workers == 0) {
		/* A worker without fibers serves one request at a time and sleeps while its
		 * commit is on its way: on PostgreSQL without a committer, more workers than
		 * CPUs keep the CPUs busy meanwhile, and put more writes into each concurrent
		 * WAL flush. With a committer each worker runs FIBERS_PER_WORKER requests at
		 * once, so a few per CPU fill the CPUs. Where commits cost next to nothing,
		 * extra workers only cost context switches. */
		const uint32_t per_cpu =
		    db == NULL && !use_committer ? BLOCKING_WORKERS_PER_CPU : WORKERS_PER_CPU;
		const long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 && n <= MAX_WORKERS / per_cpu ? (uint32_t)n * per_cpu
		                                              : (n > 0 ? MAX_WORKERS : per_cpu);
	}
	int lock_fd = -1;
	if (db != NULL && !lock_database(db, &lock_fd))
		return BKVD_EXIT_STARTUP;
	uint8_t log_key[32];
	if (!preflight(&config, tls) || !bkvd_load_log_key(&config, log_key))
		return BKVD_EXIT_STARTUP;
	static children ch;
	ch.nworkers = workers;
	ch.tls = tls;
	ch.metrics_fd = -1;
	ch.metrics.pid = -1;
	ch.committer.pid = -1;
	ch.lock_fd = lock_fd;
	for (uint32_t i = 0; i < workers; i++)
		ch.workers[i].pid = -1;
	ch.metrics_shm = bkv_metrics_create();
	/* The rate buckets are shared by all workers: mapped here, before the fork. */
	ch.limiter = config.rate_limit.enabled
	                 ? bkv_rate_limiter_create(&config.rate_limit, BKV_RATE_SLOTS)
	                 : NULL;
	uint16_t actual_port = 0, actual_metrics_port = 0;
	ch.reserved_fd = reserve_port(host, port, &actual_port, why, sizeof(why));
	if (ch.reserved_fd >= 0 && metrics_listen[0] != '\0') {
		bool in_use;
		ch.metrics_fd = bkv_bind("metrics_listen", metrics_host, metrics_port, false, true,
		                         &in_use, why, sizeof(why));
		actual_metrics_port = ch.metrics_fd >= 0 ? bound_port(ch.metrics_fd) : 0;
	}
	/* The workers commit together (storage.h, "Group commit"): always on one SQLite
	 * database, on PostgreSQL through a committer. */
	/* (workers <= MAX_WORKERS keeps this at 4 lanes or more) */
	uint32_t lanes = use_committer ? FIBERS_PER_WORKER : 1;
	if (lanes > BKV_STORAGE_GROUP_SLOTS / workers)
		lanes = BKV_STORAGE_GROUP_SLOTS / workers;
	const bool grouped = db != NULL || use_committer;
	ch.group = grouped ? bkv_storage_group_create_lanes(workers, lanes) : NULL;
	const bool mapped = ch.metrics_shm != NULL && (!config.rate_limit.enabled || ch.limiter) &&
	                    (!grouped || ch.group != NULL);
	if (!mapped || ch.reserved_fd < 0 || (metrics_listen[0] != '\0' && ch.metrics_fd < 0)) {
		fprintf(stderr, "bkvd: %s\n",
		        !mapped ? "cannot map shared metrics and rate limits" : why);
		sodium_memzero(log_key, sizeof(log_key));
		return BKVD_EXIT_STARTUP;
	}
	int ready[2];
	if (pipe(ready) != 0) {
		fprintf(stderr, "bkvd: cannot create a pipe: %s\n", strerror(errno));
		sodium_memzero(log_key, sizeof(log_key));
		return BKVD_EXIT_STARTUP;
	}
	/* Restarted workers write too, and nobody reads then: never block on it. */
	fcntl(ready[1], F_SETFL, O_NONBLOCK);
	ch.addr = (worker_addr){.host = host, .ready_fd = ready[1]};
	snprintf(ch.addr.port, sizeof(ch.addr.port), "%u", actual_port);
	/* A client that resets its connection mid-response must cost that connection only,
	 * not the worker and every connection it holds (workers inherit this). */
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "bkvd: listening on %s://%s:%u with %u worker%s\n", tls ? "https" : "http",
	        host, actual_port, workers, workers == 1 ? "" : "s");
	if (ch.metrics_fd >= 0)
		fprintf(stderr, "bkvd: metrics on http://%s:%u/metrics\n", metrics_host,
		        actual_metrics_port);
	ch.use_committer = ch.group != NULL && use_committer;
	fprintf(stderr, "bkvd: %s\n", commits);
	if (bkv_storage_group_lanes(ch.group) > 1)
		fprintf(stderr,
		        "bkvd: each worker serves up to %u requests at once: one waits for its "
		        "commit while the others run\n",
		        bkv_storage_group_lanes(ch.group));

	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	ch.child_mask = old_mask;
	sigaddset(&ch.child_mask, SIGHUP);
	bool start_failed = false;
	if (!start_missing(&config, &ch, log_key) || !wait_until_listening(ready[0], workers) ||
	    (o.port_file != NULL && !write_port_file(o.port_file, actual_port)) ||
	    (o.metrics_port_file != NULL &&
	     !write_port_file(o.metrics_port_file, actual_metrics_port))) {
		fprintf(stderr, "bkvd: the workers could not be forked or did not start "
		                "listening, or a port file cannot be written\n");
		start_failed = true;
		kill(getpid(), SIGTERM); /* handled below: stop the children, then exit 2 */
	}
	close(ready[0]);

	bool stopping = false, killing = false;
	time_t stop_deadline = 0;
	while (!stopping || children_alive(&ch)) {
		struct timespec wait = {1, 0};
		siginfo_t info;
		int sig = sigtimedwait(&mask, &info, &wait);
		if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
			fprintf(stderr, "bkvd: %s from pid %d: stopping the workers\n",
			        sig == SIGTERM ? "SIGTERM" : "SIGINT", (int)info.si_pid);
			stopping = true;
			stop_deadline = time(NULL) + STOP_TIMEOUT_S;
			signal_children(&ch, SIGTERM, false);
		} else if (sig == SIGTERM || sig == SIGINT) {
			fprintf(stderr, "bkvd: %s from pid %d: already stopping\n",
			        sig == SIGTERM ? "SIGTERM" : "SIGINT", (int)info.si_pid);
		} else if (sig == SIGHUP && !stopping) {
			fprintf(stderr, "bkvd: SIGHUP: the workers reopen their logs\n");
			signal_children(&ch, SIGHUP, true);
		} else if (sig == SIGHUP) {
			fprintf(stderr, "bkvd: SIGHUP while stopping: ignored\n");
		}
		if (stopping && time(NULL) > stop_deadline && !killing) {
			fprintf(
			    stderr,
			    "bkvd: children still running %d s after SIGTERM: sending SIGKILL\n",
			    STOP_TIMEOUT_S);
			killing = true;
		}
		if (killing)
			signal_children(&ch, SIGKILL, false);
		reap_children(&ch, stopping);
		if (!stopping)
			start_missing(&config, &ch, log_key);
	}
	close(ch.reserved_fd);
	if (ch.metrics_fd >= 0)
		close(ch.metrics_fd);
	if (lock_fd >= 0)
		close(lock_fd);
	sodium_memzero(log_key, sizeof(log_key));
	close(ready[1]);
	if (ch.group != NULL) {
		bkv_storage_group_info gi;
		bkv_storage_group_info_get(ch.group, &gi);
		if (gi.batches > 0)
			fprintf(stderr,
			        "bkvd: %" PRIu64 " commits carried %" PRIu64 " writes (%" PRIu64
			        " held for writes on their way, %" PRIu64
			        " of them until the hold ran out); %" PRIu64 " WAL checkpoints\n",
			        gi.batches, gi.writes, gi.held, gi.hold_expired, gi.upkeeps);
		/* Every request ends its announcement (handlers.h), so only a worker that died in
		 * a request leaves one. */
		if (gi.expected > 0)
			fprintf(stderr,
			        "bkvd: %" PRIu32 " announced writes were still open at the stop: "
			        "a worker ended in the middle of a request\n",
			        gi.expected);
		bkv_storage_group_free(ch.group);
	}
	fprintf(stderr, "bkvd: stopped\n");
	return start_failed ? BKVD_EXIT_STARTUP : BKVD_EXIT_OK;
}
