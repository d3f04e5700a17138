/*
 * cmd_serve.c - `bkvd serve`: one master process and N worker processes.
 *
 * The master checks everything it can before forking (configuration, token, keys,
 * database, TLS files, auth key) and refuses to start with a one-line reason and exit
 * code 2. It then binds the port (SO_REUSEPORT), forks the workers, restarts a worker that
 * crashes, and on SIGTERM/SIGINT tells the workers to drain and waits for them.
 *
 * Each worker loads the PKCS#11 module itself after the fork (a PKCS#11 library must not
 * be used across fork), opens its own token session and storage connection, and runs its
 * own event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <sodium.h>

#include "bkvd.h"
#include "server.h"

#define MAX_WORKERS    256
#define STOP_TIMEOUT_S 10

typedef struct serve_options {
	const char *config_path;
	const char *listen;
	const char *port_file;
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

static FILE *open_log(const char *path)
{
	if (path[0] == '\0')
		return NULL;
	if (strcmp(path, "-") == 0)
		return stderr;
	return fopen(path, "a");
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
                       bkv_metrics *metrics, const uint8_t log_key[32])
{
	char why[512];
	bkv_vault vault = {0};
	bkv_auth auth;
	SSL_CTX *tls_ctx = NULL;
	worker_ctx w = {.metrics = metrics};
	int rc = BKVD_EXIT_STARTUP;
	int listen_fd = -1;
	bool auth_ok = false;
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
	auth_ok = auth_settings(c, &auth, why, sizeof(why));
	if (!auth_ok) {
		fprintf(stderr, "bkvd worker: %s\n", why);
		goto done;
	}
	if (tls && (tls_ctx = make_tls(c, why, sizeof(why))) == NULL) {
		fprintf(stderr, "bkvd worker: %s\n", why);
		goto done;
	}
	/* A listening socket of this worker's own on the shared port. */
	listen_fd = bkv_listen(addr->host, addr->port, true, why, sizeof(why));
	if (listen_fd < 0) {
		fprintf(stderr, "bkvd worker: %s\n", why);
		goto done;
	}
	if (write(addr->ready_fd, "", 1) != 1) {
		/* the master only waits for it at start-up */
	}
	bkv_vault_settings *s = &vault.settings;
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
	s->event_arg = &w;
	memcpy(s->log_key, log_key, sizeof(s->log_key));
	bkv_token_set_observer(vault.token, on_token_op, &w);

	bkv_server_settings server = {
	    .listen_fd = listen_fd,
	    .tls = tls_ctx,
	    .auth = &auth,
	    .metrics = metrics,
	    .request_log = open_log(c->request_log),
	    .limits = {c->limit_max_header_bytes, c->limit_max_headers, c->limit_idle_timeout_s,
	               c->limit_read_timeout_s, c->limit_max_connections},
	};
	rc = bkv_server_run(&server, &vault) == 0 ? BKVD_EXIT_OK : BKVD_EXIT_FAILURE;
	if (server.request_log != NULL && server.request_log != stderr)
		fclose(server.request_log);
	if (s->audit != NULL && s->audit != stderr)
		fclose(s->audit);
done:
	if (listen_fd >= 0)
		close(listen_fd);
	SSL_CTX_free(tls_ctx);
	if (auth_ok)
		bkv_auth_free(&auth);
	bkv_storage_close(vault.storage);
	bkv_token_close(vault.token);
	sodium_memzero(&vault.settings.log_key, sizeof(vault.settings.log_key));
	return rc;
}

/* ---- Master ---- */

static pid_t spawn_worker(const bkvd_config *c, int reserved_fd, const worker_addr *addr, bool tls,
                          bkv_metrics *metrics, const uint8_t log_key[32], const sigset_t *old_mask)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigprocmask(SIG_SETMASK, old_mask, NULL);
	close(reserved_fd);
	_exit(worker_main(c, addr, tls, metrics, log_key));
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
	       "                  [--insecure-plaintext] [--port-file FILE]\n\n"
	       "Serves the vault: a master process and N workers (default: the number of CPUs)\n"
	       "sharing the port. TLS is on unless the listen address is loopback and no\n"
	       "certificate is configured, or --insecure-plaintext is given.\n\n"
	       "  --port-file FILE   write the bound port there (useful with port 0)\n");
}

static bool parse_options(int argc, char **argv, serve_options *o)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"listen", required_argument, NULL, 'l'},
	    {"workers", required_argument, NULL, 'w'},
	    {"insecure-plaintext", no_argument, NULL, 'I'},
	    {"port-file", required_argument, NULL, 'p'},
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

int bkvd_cmd_serve(int argc, char **argv)
{
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
	const bool tls = config.tls_cert[0] != '\0';
	if (!tls && !bkvd_host_is_loopback(host) && !o.insecure_plaintext) {
		fprintf(stderr,
		        "bkvd: TLS is required on %s: set [vault] tls_cert and tls_key, or "
		        "pass --insecure-plaintext\n",
		        host);
		return BKVD_EXIT_STARTUP;
	}
	uint32_t workers = o.workers_set ? o.workers : config.workers;
	if (workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 && n <= MAX_WORKERS ? (uint32_t)n : 1;
	}
	uint8_t log_key[32];
	if (!preflight(&config, tls) || !bkvd_load_log_key(&config, log_key))
		return BKVD_EXIT_STARTUP;
	bkv_metrics *metrics = bkv_metrics_create();
	/* The master only reserves the port; each worker listens on a socket of its own. */
	int fd = bkv_listen(host, port, false, why, sizeof(why));
	if (metrics == NULL || fd < 0) {
		fprintf(stderr, "bkvd: %s\n", fd < 0 ? why : "cannot map shared metrics");
		return BKVD_EXIT_STARTUP;
	}
	const uint16_t actual_port = bound_port(fd);
	int ready[2];
	if (pipe(ready) != 0) {
		fprintf(stderr, "bkvd: cannot create a pipe: %s\n", strerror(errno));
		return BKVD_EXIT_STARTUP;
	}
	/* Restarted workers write too, and nobody reads then: never block on it. */
	fcntl(ready[1], F_SETFL, O_NONBLOCK);
	worker_addr addr = {.host = host, .ready_fd = ready[1]};
	snprintf(addr.port, sizeof(addr.port), "%u", actual_port);
	/* A client that resets its connection mid-response must cost that connection only,
	 * not the worker and every connection it holds (workers inherit this). */
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "bkvd: listening on %s://%s:%u with %u worker%s\n", tls ? "https" : "http",
	        host, actual_port, workers, workers == 1 ? "" : "s");

	sigset_t mask, old_mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, &old_mask);
	pid_t pids[MAX_WORKERS];
	bool start_failed = false;
	for (uint32_t i = 0; i < workers; i++)
		pids[i] = spawn_worker(&config, fd, &addr, tls, metrics, log_key, &old_mask);
	if (!wait_until_listening(ready[0], workers) ||
	    (o.port_file != NULL && !write_port_file(o.port_file, actual_port))) {
		fprintf(stderr, "bkvd: the workers did not start listening, or the port file "
		                "cannot be written\n");
		start_failed = true;
		kill(getpid(), SIGTERM); /* handled below: stop the workers, then exit 2 */
	}
	close(ready[0]);

	bool stopping = false;
	time_t stop_deadline = 0;
	int alive = (int)workers;
	while (alive > 0) {
		struct timespec wait = {1, 0};
		siginfo_t info;
		int sig = sigtimedwait(&mask, &info, &wait);
		if (sig == SIGTERM || sig == SIGINT) {
			if (!stopping) {
				stopping = true;
				stop_deadline = time(NULL) + STOP_TIMEOUT_S;
				for (uint32_t i = 0; i < workers; i++)
					if (pids[i] > 0)
						kill(pids[i], SIGTERM);
			}
		}
		if (stopping && time(NULL) > stop_deadline) {
			for (uint32_t i = 0; i < workers; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGKILL);
		}
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			for (uint32_t i = 0; i < workers; i++) {
				if (pids[i] != pid)
					continue;
				pids[i] = -1;
				if (stopping) {
					alive--;
					break;
				}
				fprintf(stderr, "bkvd: worker %d %s %d; restarting it\n", (int)pid,
				        WIFSIGNALED(status) ? "killed by signal" : "exited with",
				        WIFSIGNALED(status) ? WTERMSIG(status)
				                            : WEXITSTATUS(status));
				bkv_metrics_add(&metrics->worker_restarts, 1);
				/* A worker that cannot start will not start at once either. */
				if (WIFEXITED(status) && WEXITSTATUS(status) == BKVD_EXIT_STARTUP)
					sleep(1);
				pids[i] = spawn_worker(&config, fd, &addr, tls, metrics, log_key,
				                       &old_mask);
				break;
			}
		}
	}
	close(fd);
	sodium_memzero(log_key, sizeof(log_key));
	close(ready[1]);
	fprintf(stderr, "bkvd: stopped\n");
	return start_failed ? BKVD_EXIT_STARTUP : BKVD_EXIT_OK;
}
