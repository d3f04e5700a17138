/*
 * test_storage.c - behaviour tests of the record store (vault/storage/storage.h) on its SQLite
 * backend (cmocka). Every test gets a fresh database in its own temporary directory and
 * checks one sentence of the contract: opening and schema versioning, WAL with
 * synchronous=FULL, put/get, record versions, the attempt counter (commit_attempt and
 * finish_attempt), delete, re-sealing, "UNAVAILABLE commits nothing", and the properties
 * that need several processes: concurrent attempts grant exactly the limit, a guess is
 * finished exactly once, and a SIGKILL never loses a committed attempt.
 *
 * A few tests look into the file through a second, plain SQLite connection (PRAGMAs, the
 * `records` table, triggers that make a statement fail), which ties them to the SQLite
 * backend; everything else goes through the public API only.
 *
 * With BKV_TEST_STORAGE=postgresql the same tests run against the PostgreSQL backend, on
 * the database BKV_TEST_PG_URL names (tests/with-postgres provides one): every test starts
 * from an empty schema public, the second connection is a libpq one, the failure triggers
 * are PL/pgSQL ones, and the few SQLite-only tests (bare paths, files, WAL, synchronous)
 * are skipped. PostgreSQL-only tests check the session settings, the statement timeout, a
 * connection lost before or during COMMIT, a COMMIT whose answer is lost after it
 * committed (through a small TCP proxy), and a server restart under load
 * (BKV_TEST_PG_CTL, a pg_ctl for the test cluster).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "storage.h"
#include "testpg.h"

/* ------------------------------------------------------------------------------------ */
/* Fixture and helpers                                                                   */
/* ------------------------------------------------------------------------------------ */

#define LIT(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

#define N_CHILDREN      8
#define CHILD_ALARM_S   20 /* a child that is still alive after this is killed by SIGALRM */
#define WAIT_DEADLINE_S 25 /* the parent gives up on its children after this */

/* BKV_TEST_STORAGE=postgresql: run against BKV_TEST_PG_URL instead of SQLite files. */
static bool on_pg;
static const char *pg_url;

#define SQLITE_ONLY()                                                                              \
	do {                                                                                       \
		if (on_pg) {                                                                       \
			print_message("skipped: SQLite only\n");                                   \
			skip();                                                                    \
		}                                                                                  \
	} while (0)
#define POSTGRESQL_ONLY()                                                                          \
	do {                                                                                       \
		if (!on_pg) {                                                                      \
			print_message("skipped: PostgreSQL only\n");                               \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

typedef struct fx {
	char dir[PATH_MAX / 2];
	char path[PATH_MAX];
	char url[PATH_MAX + 16];
	bkv_storage *s;
} fx;

static int make_dir(fx *f)
{
	const char *tmp = getenv("TMPDIR");
	if (tmp == NULL || tmp[0] == '\0') {
		tmp = "/tmp";
	}
	if (snprintf(f->dir, sizeof(f->dir), "%s/bkv-storage-XXXXXX", tmp) >= (int)sizeof(f->dir)) {
		return -1;
	}
	if (mkdtemp(f->dir) == NULL) {
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/vault.db", f->dir);
	if (on_pg) {
		snprintf(f->url, sizeof(f->url), "%s", pg_url);
	} else {
		snprintf(f->url, sizeof(f->url), "sqlite:%s", f->path);
	}
	return 0;
}

static PGconn *pg_raw_connect(void)
{
	return tu_pg_connect(pg_url);
}

/* Runs sql (several statements allowed) on a fresh connection. NULL on success, else the
 * error message (static). */
static const char *pg_try_exec(const char *sql)
{
	static char msg[512];
	PGconn *c = pg_raw_connect();
	if (c == NULL) {
		return "no connection";
	}
	PGresult *res = PQexec(c, sql);
	const ExecStatusType st = PQresultStatus(res);
	const bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	snprintf(msg, sizeof(msg), "%s", ok ? "" : PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
	return ok ? NULL : msg;
}

static void pg_exec(const char *sql)
{
	const char *err = pg_try_exec(sql);
	if (err != NULL) {
		fail_msg("%s: %s", sql, err);
	}
}

/* The first column of the first row of sql, as an integer. */
static int64_t pg_int(const char *sql)
{
	PGconn *c = pg_raw_connect();
	assert_non_null(c);
	PGresult *res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1) {
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	}
	const int64_t v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	PQfinish(c);
	return v;
}

/* An empty database: no bkv tables, no per-database settings. */
static int pg_reset(void)
{
	const char *err = pg_try_exec(
	    "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;"
	    "DO $$BEGIN EXECUTE format('ALTER DATABASE %I RESET ALL', current_database()); END$$");
	if (err != NULL) {
		fprintf(stderr, "setup: cannot reset the PostgreSQL database: %s", err);
		return -1;
	}
	return 0;
}

/* A fresh directory, no database yet (on PostgreSQL: an empty schema). */
static int setup_dir(void **state)
{
	if (on_pg && pg_reset() != 0) {
		return -1;
	}
	fx *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		return -1;
	}
	if (make_dir(f) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state);

/* A fresh directory with a freshly opened database. */
static int setup_open(void **state)
{
	if (setup_dir(state) != 0) {
		return -1;
	}
	fx *f = *state;
	char why[256] = "";
	if (bkv_storage_open(f->url, &f->s, why, sizeof(why)) != BKV_STORAGE_OK) {
		fprintf(stderr, "setup: cannot open %s: %s\n", f->url, why);
		teardown(state);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	bkv_storage_close(f->s);
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char p[PATH_MAX + 16];
		snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void close_storage(fx *f)
{
	bkv_storage_close(f->s);
	f->s = NULL;
}

static void reopen(fx *f)
{
	char why[256] = "";
	close_storage(f);
	bkv_storage_err err = bkv_storage_open(f->url, &f->s, why, sizeof(why));
	if (err != BKV_STORAGE_OK) {
		fail_msg("reopen failed: %s: %s", bkv_storage_strerror(err), why);
	}
}

/* A record ready for put: version from next_record_version, a sealed blob derived from the
 * account so round trips are checkable. */
static void make_record(fx *f, bkv_record *r, const uint8_t *account, size_t len, uint32_t limit)
{
	memset(r, 0, sizeof(*r));
	memcpy(r->account_id, account, len);
	r->account_id_len = len;
	r->suite = 2;
	assert_int_equal(bkv_storage_next_record_version(f->s, &r->record_version), BKV_STORAGE_OK);
	r->attempt_limit = limit;
	r->seal_key_version = 1;
	r->sealed_len = 48 + len % 16;
	for (size_t i = 0; i < r->sealed_len; i++) {
		r->sealed[i] = (uint8_t)(i * 7 + len + (len ? account[0] : 0));
	}
}

/* Puts a new record and returns its record_version. */
static uint64_t put_new(fx *f, const uint8_t *account, size_t len, uint32_t limit)
{
	bkv_record r;
	make_record(f, &r, account, len, limit);
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_OK);
	return r.record_version;
}

static bkv_record get_ok(fx *f, const uint8_t *account, size_t len)
{
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, account, len, &r), BKV_STORAGE_OK);
	return r;
}

/* commit_attempt against the row as it is now; returns the new attempts_used. */
static uint32_t commit_ok(fx *f, const uint8_t *account, size_t len)
{
	bkv_record r = get_ok(f, account, len);
	uint32_t used = 0, limit = 0;
	assert_int_equal(bkv_storage_commit_attempt(f->s, account, len, r.record_version,
	                                            r.guess_seq, &used, &limit),
	                 BKV_STORAGE_OK);
	return used;
}

static void assert_same_record(const bkv_record *a, const bkv_record *b)
{
	assert_int_equal(a->account_id_len, b->account_id_len);
	assert_memory_equal(a->account_id, b->account_id, a->account_id_len);
	assert_int_equal(a->suite, b->suite);
	assert_int_equal(a->record_version, b->record_version);
	assert_int_equal(a->attempts_used, b->attempts_used);
	assert_int_equal(a->attempt_limit, b->attempt_limit);
	assert_int_equal(a->guess_seq, b->guess_seq);
	assert_int_equal(a->last_finished_seq, b->last_finished_seq);
	assert_int_equal(a->seal_key_version, b->seal_key_version);
	assert_int_equal(a->sealed_len, b->sealed_len);
	assert_memory_equal(a->sealed, b->sealed, a->sealed_len);
	assert_int_equal(a->registered_at, b->registered_at);
	assert_int_equal(a->updated_at, b->updated_at);
}

static void assert_time_between(int64_t t, int64_t before, int64_t after)
{
	if (t < before || t > after) {
		fail_msg("timestamp %lld is not between %lld and %lld", (long long)t,
		         (long long)before, (long long)after);
	}
}

static uint64_t count_with(fx *f, uint32_t seal_key_version)
{
	uint64_t n = UINT64_MAX;
	assert_int_equal(bkv_storage_count_sealed_with(f->s, seal_key_version, &n), BKV_STORAGE_OK);
	return n;
}

/* A second, plain SQLite connection to the same file. */
static sqlite3 *raw_open(const fx *f)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fail_msg("raw open of %s failed: %s", f->path, db ? sqlite3_errmsg(db) : "?");
	}
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fail_msg("%s: %s", sql, msg ? msg : "?");
	}
}

/* The first column of the first row of sql, as an integer or as text into buf. */
static int64_t raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void raw_text(sqlite3 *db, const char *sql, char *buf, size_t cap)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	const unsigned char *t = sqlite3_column_text(st, 0);
	snprintf(buf, cap, "%s", t ? (const char *)t : "");
	sqlite3_finalize(st);
}

/* SQL through a second connection, on either backend. */
static void raw_sql(const fx *f, const char *sql)
{
	if (on_pg) {
		pg_exec(sql);
		return;
	}
	sqlite3 *db = raw_open(f);
	raw_exec(db, sql);
	sqlite3_close(db);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Reads exactly len bytes; false on EOF or error before that. */
static bool read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* ------------------------------------------------------------------------------------ */
/* Child processes                                                                       */
/* ------------------------------------------------------------------------------------ */

/* The body of a child: returns its exit code. It must not use cmocka, and it calls
 * child_ready_and_wait() once, at the point where all children should start together. */
typedef int (*child_fn)(int index, void *arg);

static int child_ready_fd = -1, child_go_fd = -1;

/* Tells the parent this child is ready, then waits until every child is. */
static void child_ready_and_wait(void)
{
	char c = 'r';
	(void)!write(child_ready_fd, &c, 1);
	close(child_ready_fd);
	while (read(child_go_fd, &c, 1) < 0 && errno == EINTR) {
	}
	close(child_go_fd);
}

/* Forks n children that run body, releases them together once all are ready, and waits
 * for all of them. status[i] is the child's exit code, or -signal if it was killed. The
 * parent must have no database connection open across the fork. */
static void run_children(int n, child_fn body, void *arg, int *status)
{
	int go[2], ready[2];
	pid_t pid[N_CHILDREN];
	assert_true(n <= N_CHILDREN);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(ready), 0);
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < n; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			close(go[1]);
			close(ready[0]);
			child_go_fd = go[0];
			child_ready_fd = ready[1];
			alarm(CHILD_ALARM_S);
			_exit(body(i, arg));
		}
	}
	close(go[0]);
	close(ready[1]);
	/* every child has said it is ready, or has closed its end by exiting */
	struct pollfd pfd = {ready[0], POLLIN, 0};
	char buf[N_CHILDREN];
	for (int got = 0; got < n && poll(&pfd, 1, WAIT_DEADLINE_S * 1000) > 0;) {
		ssize_t r = read(ready[0], buf, sizeof(buf));
		if (r <= 0 && errno != EINTR) {
			break;
		}
		got += r > 0 ? (int)r : 0;
	}
	close(ready[0]);
	close(go[1]); /* go */

	const double deadline = now_s() + WAIT_DEADLINE_S;
	int left = n;
	for (int i = 0; i < n; i++) {
		status[i] = INT_MIN;
	}
	while (left > 0) {
		for (int i = 0; i < n; i++) {
			int ws;
			if (status[i] != INT_MIN || waitpid(pid[i], &ws, WNOHANG) != pid[i]) {
				continue;
			}
			status[i] = WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
			left--;
		}
		if (left > 0 && now_s() > deadline) {
			for (int i = 0; i < n; i++) {
				if (status[i] == INT_MIN) {
					kill(pid[i], SIGKILL);
					waitpid(pid[i], NULL, 0);
				}
			}
			fail_msg("%d child process(es) did not finish in %d s", left,
			         WAIT_DEADLINE_S);
		}
		if (left > 0) {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
		}
	}
}

static bkv_storage *child_open(const char *url)
{
	bkv_storage *s = NULL;
	char why[256] = "";
	bkv_storage_err err = bkv_storage_open(url, &s, why, sizeof(why));
	if (err != BKV_STORAGE_OK) {
		fprintf(stderr, "child %d: open failed: %s: %s\n", (int)getpid(),
		        bkv_storage_strerror(err), why);
		return NULL;
	}
	return s;
}

/* ------------------------------------------------------------------------------------ */
/* Opening and the schema                                                                */
/* ------------------------------------------------------------------------------------ */

static void test_open_creates_the_schema(void **state)
{
	fx *f = *state;
	if (on_pg) {
		assert_true(pg_int("SELECT version FROM bkv_schema") >= 1);
		assert_int_equal(pg_int("SELECT count(*) FROM bkv_schema"), 1);
		assert_int_equal(
		    pg_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
		           "AND tablename = 'records'"),
		    1);
	} else {
		sqlite3 *db = raw_open(f);
		assert_true(raw_int(db, "PRAGMA user_version") >= 1);
		assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = "
		                             "'table' AND name = 'records'"),
		                 1);
		sqlite3_close(db);
	}
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("nobody"), &r), BKV_STORAGE_NOT_FOUND);
}

static void test_open_accepts_a_bare_path(void **state)
{
	SQLITE_ONLY();
	fx *f = *state;
	char why[256] = "";
	assert_int_equal(bkv_storage_open(f->path, &f->s, why, sizeof(why)), BKV_STORAGE_OK);
	const uint64_t v = put_new(f, LIT("alice"), 10);
	reopen(f); /* through "sqlite:PATH": the same file */
	assert_int_equal(get_ok(f, LIT("alice")).record_version, v);
}

static void test_open_refuses_an_unknown_url_scheme(void **state)
{
	fx *f = *state;
	char why[256] = "";
	bkv_storage *s = (bkv_storage *)(uintptr_t)1; /* must be reset to NULL */
	assert_int_equal(bkv_storage_open("mysql://localhost/bkv", &s, why, sizeof(why)),
	                 BKV_STORAGE_ARGUMENT);
	assert_null(s);
	assert_true(strstr(why, "mysql") != NULL);
	assert_int_equal(access(f->path, F_OK), -1);
}

/* Both spellings reach the PostgreSQL backend (no server is needed for this: nothing
 * listens on port 1), which fails at once and says why. */
static void test_open_of_an_unreachable_postgresql_server_fails_fast_with_a_reason(void **state)
{
	(void)state;
	const char *const urls[] = {"postgresql://postgres@127.0.0.1:1/bkv",
	                            "postgres://postgres@127.0.0.1:1/bkv?connect_timeout=2"};
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		char why[512] = "";
		bkv_storage *s = (bkv_storage *)(uintptr_t)1;
		const double t0 = now_s();
		assert_int_equal(bkv_storage_open(urls[i], &s, why, sizeof(why)),
		                 BKV_STORAGE_UNAVAILABLE);
		assert_true(now_s() - t0 < 5);
		assert_null(s);
		print_message("why: %s\n", why);
		assert_non_null(strstr(why, "PostgreSQL"));
		assert_true(why[strlen(why) - 1] != '\n');
	}
}

static void test_open_of_an_unusable_path_fails_with_a_reason(void **state)
{
	fx *f = *state;
	char url[PATH_MAX + 64];
	char why[512] = "";
	bkv_storage *s = NULL;
	if (on_pg) { /* a database that does not exist */
		const char *slash = strrchr(pg_url, '/');
		assert_non_null(slash);
		snprintf(url, sizeof(url), "%.*s/no_such_database", (int)(slash - pg_url), pg_url);
	} else {
		snprintf(url, sizeof(url), "sqlite:%s/no/such/dir/vault.db", f->dir);
	}
	assert_int_not_equal(bkv_storage_open(url, &s, why, sizeof(why)), BKV_STORAGE_OK);
	assert_null(s);
	assert_true(strlen(why) > 0);
	if (on_pg) {
		print_message("why: %s\n", why);
		assert_non_null(strstr(why, "no_such_database"));
	}
}

static void test_open_of_a_file_that_is_not_a_database_fails_with_a_reason(void **state)
{
	fx *f = *state;
	if (on_pg) { /* a database with someone else's table "records" */
		pg_exec("CREATE TABLE records (x integer)");
	} else {
		FILE *fp = fopen(f->path, "wb");
		assert_non_null(fp);
		for (int i = 0; i < 64; i++) {
			fputs("this is not an SQLite database. ", fp);
		}
		fclose(fp);
	}
	char why[512] = "";
	bkv_storage *s = NULL;
	assert_int_not_equal(bkv_storage_open(f->url, &s, why, sizeof(why)), BKV_STORAGE_OK);
	assert_null(s);
	assert_true(strlen(why) > 0);
	if (on_pg) { /* the failed migration left nothing behind */
		print_message("why: %s\n", why);
		assert_int_equal(
		    pg_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
		           "AND tablename = 'bkv_schema'"),
		    0);
		assert_int_equal(pg_int("SELECT count(*) FROM records"), 0);
	}
}

static void test_reopen_keeps_records(void **state)
{
	fx *f = *state;
	put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	reopen(f);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

static void test_open_refuses_a_schema_newer_than_the_code(void **state)
{
	fx *f = *state;
	put_new(f, LIT("alice"), 10);
	close_storage(f);
	raw_sql(f, on_pg ? "UPDATE bkv_schema SET version = 9999" : "PRAGMA user_version = 9999");

	char why[512] = "";
	bkv_storage *s = NULL;
	assert_int_not_equal(bkv_storage_open(f->url, &s, why, sizeof(why)), BKV_STORAGE_OK);
	assert_null(s);
	print_message("why: %s\n", why);
	assert_true(strstr(why, "9999") != NULL); /* names the version it found */

	/* and left the file alone */
	if (on_pg) {
		assert_int_equal(pg_int("SELECT version FROM bkv_schema"), 9999);
		assert_int_equal(pg_int("SELECT count(*) FROM records"), 1);
		return;
	}
	sqlite3 *db = raw_open(f);
	assert_int_equal(raw_int(db, "PRAGMA user_version"), 9999);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM records"), 1);
	sqlite3_close(db);
}

static void test_database_is_in_wal_mode(void **state)
{
	SQLITE_ONLY();
	fx *f = *state;
	/* journal_mode=WAL is a property of the file: a second connection sees it */
	sqlite3 *db = raw_open(f);
	char mode[32];
	raw_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal");
	sqlite3_close(db);
}

/* synchronous is per connection: catch the storage's own connection as it is opened
 * (sqlite3_auto_extension runs for every new connection) and ask it. */
static sqlite3 *opened_db;

static int catch_connection(sqlite3 *db, char **err, const sqlite3_api_routines *api)
{
	(void)err;
	(void)api;
	opened_db = db;
	return SQLITE_OK;
}

static void test_connection_uses_synchronous_full(void **state)
{
	SQLITE_ONLY();
	fx *f = *state;
	char why[256] = "";
	opened_db = NULL;
	assert_int_equal(sqlite3_auto_extension((void (*)(void))catch_connection), SQLITE_OK);
	bkv_storage_err err = bkv_storage_open(f->url, &f->s, why, sizeof(why));
	sqlite3_cancel_auto_extension((void (*)(void))catch_connection);
	assert_int_equal(err, BKV_STORAGE_OK);
	assert_non_null(opened_db);
	assert_true(raw_int(opened_db, "PRAGMA synchronous") >= 2); /* 2 = FULL, 3 = EXTRA */
	char mode[32];
	raw_text(opened_db, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal");
	opened_db = NULL;
}

/* Worker processes may start together on a database that does not exist yet. */
static int child_open_and_put(int index, void *arg)
{
	child_ready_and_wait(); /* all open together */
	bkv_storage *s = child_open(arg);
	if (s == NULL) {
		return 1;
	}
	bkv_record r;
	memset(&r, 0, sizeof(r));
	r.account_id_len = (size_t)snprintf((char *)r.account_id, 16, "worker-%d", index);
	r.attempt_limit = 10;
	r.seal_key_version = 7;
	r.sealed_len = 32;
	bkv_storage_err err = bkv_storage_next_record_version(s, &r.record_version);
	if (err == BKV_STORAGE_OK) {
		err = bkv_storage_put(s, &r);
	}
	bkv_storage_close(s);
	return err == BKV_STORAGE_OK ? 0 : 2;
}

static void test_concurrent_first_opens_of_a_new_database_all_succeed(void **state)
{
	fx *f = *state;
	int status[N_CHILDREN];
	run_children(N_CHILDREN, child_open_and_put, f->url, status);
	int failed = 0;
	for (int i = 0; i < N_CHILDREN; i++) {
		if (status[i] != 0) {
			print_message("child %d: status %d\n", i, status[i]);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
	reopen(f);
	assert_int_equal(count_with(f, 7), N_CHILDREN);
}

/* ------------------------------------------------------------------------------------ */
/* strerror                                                                              */
/* ------------------------------------------------------------------------------------ */

static void test_strerror_gives_a_distinct_message_for_every_error(void **state)
{
	(void)state;
	const bkv_storage_err all[] = {BKV_STORAGE_OK,          BKV_STORAGE_NOT_FOUND,
	                               BKV_STORAGE_EXHAUSTED,   BKV_STORAGE_STALE,
	                               BKV_STORAGE_UNAVAILABLE, BKV_STORAGE_ARGUMENT};
	const size_t n = sizeof(all) / sizeof(all[0]);
	for (size_t i = 0; i < n; i++) {
		const char *m = bkv_storage_strerror(all[i]);
		assert_non_null(m);
		assert_true(strlen(m) > 0);
		for (size_t j = 0; j < i; j++) {
			assert_string_not_equal(m, bkv_storage_strerror(all[j]));
		}
	}
	assert_non_null(bkv_storage_strerror((bkv_storage_err)99));
}

/* ------------------------------------------------------------------------------------ */
/* get and put                                                                           */
/* ------------------------------------------------------------------------------------ */

static void test_get_of_a_missing_account_is_not_found(void **state)
{
	fx *f = *state;
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("nobody"), &r), BKV_STORAGE_NOT_FOUND);
	put_new(f, LIT("alice"), 10);
	assert_int_equal(bkv_storage_get(f->s, LIT("alic"), &r), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_get(f->s, LIT("alice2"), &r), BKV_STORAGE_NOT_FOUND);
}

static void test_put_then_get_round_trips_every_field(void **state)
{
	fx *f = *state;
	bkv_record in;
	make_record(f, &in, LIT("alice@example.org"), 7);
	in.suite = 0xA5A5A5A5u;
	in.seal_key_version = 0xFFFFFFF0u;
	in.attempt_limit = UINT32_MAX;
	const int64_t before = (int64_t)time(NULL);
	assert_int_equal(bkv_storage_put(f->s, &in), BKV_STORAGE_OK);
	const int64_t after = (int64_t)time(NULL);

	bkv_record out;
	memset(&out, 0xEE, sizeof(out));
	assert_int_equal(bkv_storage_get(f->s, LIT("alice@example.org"), &out), BKV_STORAGE_OK);
	assert_int_equal(out.account_id_len, in.account_id_len);
	assert_memory_equal(out.account_id, in.account_id, in.account_id_len);
	assert_int_equal(out.suite, in.suite);
	assert_int_equal(out.record_version, in.record_version);
	assert_int_equal(out.attempt_limit, in.attempt_limit);
	assert_int_equal(out.seal_key_version, in.seal_key_version);
	assert_int_equal(out.sealed_len, in.sealed_len);
	assert_memory_equal(out.sealed, in.sealed, in.sealed_len);
	assert_int_equal(out.attempts_used, 0);
	assert_int_equal(out.guess_seq, 0);
	assert_int_equal(out.last_finished_seq, 0);
	assert_time_between(out.registered_at, before, after);
	assert_time_between(out.updated_at, before, after);
}

static void test_put_of_a_new_account_ignores_the_callers_counters(void **state)
{
	fx *f = *state;
	bkv_record in;
	make_record(f, &in, LIT("alice"), 5);
	in.attempts_used = 4;
	in.guess_seq = 99;
	in.last_finished_seq = 98;
	in.registered_at = 1;
	in.updated_at = 2;
	assert_int_equal(bkv_storage_put(f->s, &in), BKV_STORAGE_OK);
	const bkv_record out = get_ok(f, LIT("alice"));
	assert_int_equal(out.attempts_used, 0);
	assert_int_equal(out.guess_seq, 0);
	assert_int_equal(out.last_finished_seq, 0);
	assert_true(out.registered_at > 2);
	assert_true(out.updated_at > 2);
}

static void test_put_round_trips_a_maximum_length_account_with_nul_bytes(void **state)
{
	fx *f = *state;
	uint8_t account[BKV_STORAGE_ACCOUNT_MAX];
	for (size_t i = 0; i < sizeof(account); i++) {
		account[i] = (uint8_t)(i % 3 == 0 ? 0 : 255 - i); /* NULs throughout, and 0xFF.. */
	}
	bkv_record in;
	make_record(f, &in, account, sizeof(account), 10);
	in.sealed_len = BKV_STORAGE_SEALED_MAX;
	for (size_t i = 0; i < in.sealed_len; i++) {
		in.sealed[i] = (uint8_t)(i % 5 == 0 ? 0 : i * 13);
	}
	assert_int_equal(bkv_storage_put(f->s, &in), BKV_STORAGE_OK);
	const bkv_record out = get_ok(f, account, sizeof(account));
	assert_int_equal(out.account_id_len, BKV_STORAGE_ACCOUNT_MAX);
	assert_memory_equal(out.account_id, account, sizeof(account));
	assert_int_equal(out.sealed_len, BKV_STORAGE_SEALED_MAX);
	assert_memory_equal(out.sealed, in.sealed, BKV_STORAGE_SEALED_MAX);
}

static void test_accounts_that_differ_only_after_a_nul_byte_are_distinct(void **state)
{
	fx *f = *state;
	const uint64_t v1 = put_new(f, LIT("a\0b"), 3);
	const uint64_t v2 = put_new(f, LIT("a\0c"), 4);
	const uint64_t v3 = put_new(f, LIT("a"), 5);
	const uint64_t v4 = put_new(f, LIT("a\0"), 6);
	assert_int_equal(get_ok(f, LIT("a\0b")).record_version, v1);
	assert_int_equal(get_ok(f, LIT("a\0c")).record_version, v2);
	assert_int_equal(get_ok(f, LIT("a")).record_version, v3);
	assert_int_equal(get_ok(f, LIT("a\0")).record_version, v4);
	assert_int_equal(get_ok(f, LIT("a\0c")).attempt_limit, 4);
	assert_int_equal(count_with(f, 1), 4);
}

static void test_put_rejects_bad_arguments_and_stores_nothing(void **state)
{
	fx *f = *state;
	bkv_record good, r;
	make_record(f, &good, LIT("alice"), 10);

	assert_int_equal(bkv_storage_put(f->s, NULL), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_put(NULL, &good), BKV_STORAGE_ARGUMENT);
	r = good;
	r.account_id_len = 0;
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.account_id_len = BKV_STORAGE_ACCOUNT_MAX + 1;
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.sealed_len = 0;
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.sealed_len = BKV_STORAGE_SEALED_MAX + 1;
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.attempt_limit = 0;
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.record_version = 0;
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_ARGUMENT);

	bkv_record out;
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &out), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(count_with(f, good.seal_key_version), 0);
	assert_int_equal(bkv_storage_put(f->s, &good), BKV_STORAGE_OK); /* the good one works */
}

static void test_get_rejects_bad_arguments(void **state)
{
	fx *f = *state;
	uint8_t big[BKV_STORAGE_ACCOUNT_MAX + 1];
	memset(big, 'a', sizeof(big));
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT(""), &r), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_get(f->s, big, sizeof(big), &r), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_get(f->s, NULL, 5, &r), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), NULL), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_get(NULL, LIT("alice"), &r), BKV_STORAGE_ARGUMENT);
}

static void test_the_other_calls_reject_bad_arguments_and_change_nothing(void **state)
{
	fx *f = *state;
	uint8_t big[BKV_STORAGE_ACCOUNT_MAX + 1];
	memset(big, 'a', sizeof(big));
	const uint64_t v = put_new(f, LIT("alice"), 10);
	const bkv_record before = get_ok(f, LIT("alice"));
	uint32_t used, limit;
	bkv_finish_result res;
	bkv_record recs[2];
	size_t count;
	uint64_t n;
	uint8_t sealed[BKV_STORAGE_SEALED_MAX + 1] = {0};

	assert_int_equal(bkv_storage_next_record_version(f->s, NULL), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_next_record_version(NULL, &n), BKV_STORAGE_ARGUMENT);

	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT(""), v, 0, &used, &limit),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_commit_attempt(f->s, big, sizeof(big), v, 0, &used, &limit),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, NULL, &limit),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, &used, NULL),
	                 BKV_STORAGE_ARGUMENT);

	commit_ok(f, LIT("alice"));
	const bkv_record committed = get_ok(f, LIT("alice"));
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT(""), v, 1, true, &res, NULL),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_finish_attempt(f->s, big, sizeof(big), v, 1, true, &res, NULL),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, NULL, NULL),
	                 BKV_STORAGE_ARGUMENT);

	assert_int_equal(bkv_storage_delete(f->s, LIT("")), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_delete(f->s, big, sizeof(big)), BKV_STORAGE_ARGUMENT);

	assert_int_equal(bkv_storage_list_sealed_below(f->s, 9, NULL, 0, recs, 0, &count),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_list_sealed_below(f->s, 9, NULL, 0, NULL, 2, &count),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_list_sealed_below(f->s, 9, NULL, 0, recs, 2, NULL),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_list_sealed_below(f->s, 9, NULL, 3, recs, 2, &count),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_list_sealed_below(f->s, 9, big, sizeof(big), recs, 2, &count),
	                 BKV_STORAGE_ARGUMENT);

	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), v, 2, sealed, 0),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), v, 2, sealed, sizeof(sealed)),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), v, 2, NULL, 16),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, LIT(""), v, 2, sealed, 16), BKV_STORAGE_ARGUMENT);

	assert_int_equal(bkv_storage_count_sealed_with(f->s, 1, NULL), BKV_STORAGE_ARGUMENT);

	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&committed, &after);
	assert_int_equal(after.attempts_used, before.attempts_used + 1);
}

/* ------------------------------------------------------------------------------------ */
/* record_version                                                                        */
/* ------------------------------------------------------------------------------------ */

static void test_next_record_version_strictly_increases(void **state)
{
	fx *f = *state;
	uint64_t prev = 0;
	for (int i = 0; i < 100; i++) {
		uint64_t v = 0;
		assert_int_equal(bkv_storage_next_record_version(f->s, &v), BKV_STORAGE_OK);
		assert_true(v > prev);
		prev = v;
	}
}

static void test_next_record_version_is_never_reused_after_reopen(void **state)
{
	fx *f = *state;
	uint64_t last = 0;
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 5; i++) {
			uint64_t v = 0;
			assert_int_equal(bkv_storage_next_record_version(f->s, &v), BKV_STORAGE_OK);
			assert_true(v > last);
			last = v;
		}
		reopen(f);
	}
	/* nor after the records that used them are deleted */
	const uint64_t used = put_new(f, LIT("alice"), 3);
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
	reopen(f);
	uint64_t v = 0;
	assert_int_equal(bkv_storage_next_record_version(f->s, &v), BKV_STORAGE_OK);
	assert_true(v > used);
}

static void test_next_record_version_is_unique_across_connections(void **state)
{
	fx *f = *state;
	bkv_storage *other = NULL;
	char why[256] = "";
	assert_int_equal(bkv_storage_open(f->url, &other, why, sizeof(why)), BKV_STORAGE_OK);
	uint64_t seen[40];
	for (size_t i = 0; i < 40; i++) {
		bkv_storage *s = i % 3 == 0 ? other : f->s;
		assert_int_equal(bkv_storage_next_record_version(s, &seen[i]), BKV_STORAGE_OK);
		for (size_t j = 0; j < i; j++) {
			assert_true(seen[i] > seen[j]);
		}
	}
	bkv_storage_close(other);
}

typedef struct versions_arg {
	const char *url;
	int out; /* pipe: each child writes the versions it was handed */
} versions_arg;

#define VERSIONS_PER_CHILD 25

static int child_take_versions(int index, void *argp)
{
	(void)index;
	const versions_arg *arg = argp;
	bkv_storage *s = child_open(arg->url);
	if (s == NULL) {
		return 1;
	}
	child_ready_and_wait();
	uint64_t v[VERSIONS_PER_CHILD];
	for (int i = 0; i < VERSIONS_PER_CHILD; i++) {
		if (bkv_storage_next_record_version(s, &v[i]) != BKV_STORAGE_OK) {
			bkv_storage_close(s);
			return 2;
		}
	}
	bkv_storage_close(s);
	return write_full(arg->out, v, sizeof(v)) ? 0 : 3;
}

static int cmp_u64(const void *a, const void *b)
{
	const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_next_record_version_is_unique_across_processes(void **state)
{
	fx *f = *state;
	uint64_t first = 0;
	assert_int_equal(bkv_storage_next_record_version(f->s, &first), BKV_STORAGE_OK);
	close_storage(f);

	int p[2];
	assert_int_equal(pipe(p), 0);
	versions_arg arg = {f->url, p[1]};
	int status[N_CHILDREN];
	run_children(N_CHILDREN, child_take_versions, &arg, status);
	close(p[1]);
	for (int i = 0; i < N_CHILDREN; i++) {
		assert_int_equal(status[i], 0);
	}
	static uint64_t all[N_CHILDREN * VERSIONS_PER_CHILD];
	assert_true(read_full(p[0], all, sizeof(all)));
	close(p[0]);
	const size_t n = sizeof(all) / sizeof(all[0]);
	qsort(all, n, sizeof(all[0]), cmp_u64);
	assert_true(all[0] > first);
	for (size_t i = 1; i < n; i++) {
		assert_true(all[i] > all[i - 1]);
	}
}

/* ------------------------------------------------------------------------------------ */
/* put over an existing record                                                           */
/* ------------------------------------------------------------------------------------ */

static void test_put_over_an_existing_account_replaces_the_record(void **state)
{
	fx *f = *state;
	const uint64_t v1 = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	commit_ok(f, LIT("alice"));
	commit_ok(f, LIT("alice"));
	const bkv_record old = get_ok(f, LIT("alice"));
	assert_int_equal(old.attempts_used, 3);
	assert_int_equal(old.guess_seq, 3);
	raw_sql(f, "UPDATE records SET registered_at = 1, updated_at = 1");

	bkv_record in;
	make_record(f, &in, LIT("alice"), 4);
	in.suite = 9;
	in.seal_key_version = 5;
	in.sealed_len = 20;
	memset(in.sealed, 0x5A, in.sealed_len);
	const int64_t before = (int64_t)time(NULL);
	assert_int_equal(bkv_storage_put(f->s, &in), BKV_STORAGE_OK);
	const int64_t after = (int64_t)time(NULL);

	const bkv_record out = get_ok(f, LIT("alice"));
	assert_true(out.record_version != v1);
	assert_int_equal(out.record_version, in.record_version);
	assert_int_equal(out.suite, 9);
	assert_int_equal(out.attempt_limit, 4);
	assert_int_equal(out.seal_key_version, 5);
	assert_int_equal(out.sealed_len, 20);
	assert_memory_equal(out.sealed, in.sealed, 20);
	assert_int_equal(out.attempts_used, 0);
	assert_int_equal(out.guess_seq, 3);         /* carried over */
	assert_int_equal(out.last_finished_seq, 3); /* = guess_seq */
	assert_time_between(out.registered_at, before, after);
	assert_time_between(out.updated_at, before, after);
	assert_int_equal(count_with(f, 1), 0);
	assert_int_equal(count_with(f, 5), 1);
}

static void test_put_replacement_leaves_no_earlier_guess_finishable(void **state)
{
	fx *f = *state;
	put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice")); /* guess 1, in flight */
	const uint64_t v2 = put_new(f, LIT("alice"), 10);
	bkv_finish_result res;
	/* even claiming the new record_version, guess 1 cannot be finished */
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v2, 1, true, &res, NULL),
	                 BKV_STORAGE_STALE);
	const bkv_record r = get_ok(f, LIT("alice"));
	assert_int_equal(r.last_finished_seq, 1);
	assert_int_equal(r.guess_seq, 1);
	assert_int_equal(r.attempts_used, 0);
}

/* ------------------------------------------------------------------------------------ */
/* commit_attempt                                                                        */
/* ------------------------------------------------------------------------------------ */

static void test_commit_attempt_increments_attempts_used_and_guess_seq(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	for (uint32_t i = 1; i <= 3; i++) {
		uint32_t used = 0, limit = 0;
		const int64_t before = (int64_t)time(NULL);
		assert_int_equal(
		    bkv_storage_commit_attempt(f->s, LIT("alice"), v, i - 1, &used, &limit),
		    BKV_STORAGE_OK);
		const int64_t after = (int64_t)time(NULL);
		assert_int_equal(used, i);
		assert_int_equal(limit, 10);
		const bkv_record r = get_ok(f, LIT("alice"));
		assert_int_equal(r.attempts_used, i);
		assert_int_equal(r.guess_seq, i);
		assert_int_equal(r.last_finished_seq, 0);
		assert_int_equal(r.record_version, v);
		assert_time_between(r.updated_at, before, after);
	}
}

static void test_commit_attempt_with_a_stale_guess_seq_is_stale_and_changes_nothing(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	uint32_t used = 77, limit = 77;
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, &used, &limit),
	                 BKV_STORAGE_STALE);
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 2, &used, &limit),
	                 BKV_STORAGE_STALE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

static void
test_commit_attempt_with_another_record_version_is_stale_and_changes_nothing(void **state)
{
	fx *f = *state;
	const uint64_t v1 = put_new(f, LIT("alice"), 10);
	const uint64_t v2 = put_new(f, LIT("alice"), 10);
	const bkv_record before = get_ok(f, LIT("alice"));
	uint32_t used, limit;
	assert_int_equal(
	    bkv_storage_commit_attempt(f->s, LIT("alice"), v1, before.guess_seq, &used, &limit),
	    BKV_STORAGE_STALE);
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v2 + 1000, before.guess_seq,
	                                            &used, &limit),
	                 BKV_STORAGE_STALE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

static void test_commit_attempt_at_the_limit_is_exhausted_and_changes_nothing(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 3);
	for (int i = 0; i < 3; i++) {
		commit_ok(f, LIT("alice"));
	}
	const bkv_record before = get_ok(f, LIT("alice"));
	assert_int_equal(before.attempts_used, 3);
	uint32_t used, limit;
	assert_int_equal(
	    bkv_storage_commit_attempt(f->s, LIT("alice"), v, before.guess_seq, &used, &limit),
	    BKV_STORAGE_EXHAUSTED);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

static void test_commit_attempt_without_a_record_is_not_found(void **state)
{
	fx *f = *state;
	uint32_t used, limit;
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("nobody"), 1, 0, &used, &limit),
	                 BKV_STORAGE_NOT_FOUND);
	const uint64_t v = put_new(f, LIT("alice"), 3);
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, &used, &limit),
	                 BKV_STORAGE_NOT_FOUND);
}

/* ------------------------------------------------------------------------------------ */
/* finish_attempt                                                                        */
/* ------------------------------------------------------------------------------------ */

static void test_finish_success_resets_attempts_used_and_returns_the_record(void **state)
{
	fx *f = *state;
	bkv_record in;
	make_record(f, &in, LIT("alice"), 10);
	assert_int_equal(bkv_storage_put(f->s, &in), BKV_STORAGE_OK);
	commit_ok(f, LIT("alice"));
	commit_ok(f, LIT("alice"));

	bkv_finish_result res;
	bkv_record rec;
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(
	    bkv_storage_finish_attempt(f->s, LIT("alice"), in.record_version, 2, true, &res, &rec),
	    BKV_STORAGE_OK);
	assert_int_equal(res.attempts_used, 0);
	assert_int_equal(res.attempt_limit, 10);
	assert_false(res.destroyed);
	/* the record, with its sealed blob for release */
	assert_int_equal(rec.account_id_len, 5);
	assert_memory_equal(rec.account_id, "alice", 5);
	assert_int_equal(rec.record_version, in.record_version);
	assert_int_equal(rec.sealed_len, in.sealed_len);
	assert_memory_equal(rec.sealed, in.sealed, in.sealed_len);
	assert_int_equal(rec.attempts_used, 0);
	assert_int_equal(rec.last_finished_seq, 2);

	const bkv_record stored = get_ok(f, LIT("alice"));
	assert_int_equal(stored.attempts_used, 0);
	assert_int_equal(stored.last_finished_seq, 2);
	assert_int_equal(stored.guess_seq, 2); /* never reset */
}

static void test_finish_success_returns_the_row_as_stored(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	/* an updated_at from the past, so "as stored" is observable within one second */
	raw_sql(f, "UPDATE records SET updated_at = 1");
	bkv_finish_result res;
	bkv_record rec;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, &rec),
	                 BKV_STORAGE_OK);
	const bkv_record stored = get_ok(f, LIT("alice"));
	assert_true(stored.updated_at > 1); /* the finish touched the row */
	assert_same_record(&rec, &stored);
}

static void test_finish_success_accepts_no_record_out(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
	                 BKV_STORAGE_OK);
	assert_int_equal(get_ok(f, LIT("alice")).attempts_used, 0);
}

static void test_finish_of_the_same_guess_twice_is_stale(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	commit_ok(f, LIT("alice"));
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 2, false, &res, NULL),
	                 BKV_STORAGE_OK);
	const bkv_record before = get_ok(f, LIT("alice"));
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 2, false, &res, NULL),
	                 BKV_STORAGE_STALE);
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 2, true, &res, NULL),
	                 BKV_STORAGE_STALE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	assert_int_equal(after.attempts_used, 2);
}

static void test_finish_of_an_older_guess_after_a_newer_one_finished_is_stale(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice")); /* guess 1 */
	commit_ok(f, LIT("alice")); /* guess 2 */
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 2, false, &res, NULL),
	                 BKV_STORAGE_OK);
	const bkv_record before = get_ok(f, LIT("alice"));
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
	                 BKV_STORAGE_STALE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	assert_int_equal(after.attempts_used, 2); /* the old success reset nothing */
}

static void test_finish_of_a_guess_that_was_never_started_is_stale(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
	                 BKV_STORAGE_STALE);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 2, true, &res, NULL),
	                 BKV_STORAGE_STALE);
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 0, true, &res, NULL),
	                 BKV_STORAGE_STALE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	/* guess 1 is still finishable */
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
	                 BKV_STORAGE_OK);
}

static void test_finish_failure_keeps_attempts_used(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	commit_ok(f, LIT("alice"));
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, false, &res, NULL),
	                 BKV_STORAGE_OK);
	assert_int_equal(res.attempts_used, 2);
	assert_int_equal(res.attempt_limit, 10);
	assert_false(res.destroyed);
	const bkv_record r = get_ok(f, LIT("alice"));
	assert_int_equal(r.attempts_used, 2);
	assert_int_equal(r.last_finished_seq, 1);
	assert_int_equal(r.guess_seq, 2);
}

static void test_finish_failure_that_used_the_last_attempt_destroys_the_record(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 3);
	put_new(f, LIT("bob"), 3);
	bkv_finish_result res;
	for (uint64_t g = 1; g <= 2; g++) {
		commit_ok(f, LIT("alice"));
		assert_int_equal(
		    bkv_storage_finish_attempt(f->s, LIT("alice"), v, g, false, &res, NULL),
		    BKV_STORAGE_OK);
		assert_false(res.destroyed);
	}
	assert_int_equal(commit_ok(f, LIT("alice")), 3);
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 3, false, &res, NULL),
	                 BKV_STORAGE_OK);
	assert_true(res.destroyed);
	assert_int_equal(res.attempts_used, 3);
	assert_int_equal(res.attempt_limit, 3);
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &r), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(get_ok(f, LIT("bob")).attempts_used, 0); /* only alice */
}

static void test_finish_success_at_the_limit_resets_instead_of_destroying(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 2);
	commit_ok(f, LIT("alice"));
	commit_ok(f, LIT("alice"));
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 2, true, &res, NULL),
	                 BKV_STORAGE_OK);
	assert_false(res.destroyed);
	assert_int_equal(get_ok(f, LIT("alice")).attempts_used, 0);
}

static void test_finish_against_a_replaced_record_is_stale(void **state)
{
	fx *f = *state;
	const uint64_t v1 = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice")); /* guess 1 of v1 */
	put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice")); /* guess 2 of v2 */
	const bkv_record before = get_ok(f, LIT("alice"));
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v1, 1, true, &res, NULL),
	                 BKV_STORAGE_STALE);
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v1, 2, true, &res, NULL),
	                 BKV_STORAGE_STALE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	assert_int_equal(after.attempts_used, 1);
}

static void test_finish_without_a_record_is_not_found(void **state)
{
	fx *f = *state;
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("nobody"), 1, 1, true, &res, NULL),
	                 BKV_STORAGE_NOT_FOUND);
}

static void test_guess_seq_keeps_counting_after_a_success(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
	                 BKV_STORAGE_OK);
	uint32_t used, limit;
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, &used, &limit),
	                 BKV_STORAGE_STALE);
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 1, &used, &limit),
	                 BKV_STORAGE_OK);
	assert_int_equal(used, 1);
	assert_int_equal(get_ok(f, LIT("alice")).guess_seq, 2);
}

/* ------------------------------------------------------------------------------------ */
/* delete                                                                                */
/* ------------------------------------------------------------------------------------ */

static void test_delete_removes_the_record(void **state)
{
	fx *f = *state;
	put_new(f, LIT("alice"), 10);
	put_new(f, LIT("bob"), 10);
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &r), BKV_STORAGE_NOT_FOUND);
	get_ok(f, LIT("bob"));
	reopen(f);
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &r), BKV_STORAGE_NOT_FOUND);
}

static void test_delete_of_a_missing_account_is_not_found(void **state)
{
	fx *f = *state;
	assert_int_equal(bkv_storage_delete(f->s, LIT("nobody")), BKV_STORAGE_NOT_FOUND);
	put_new(f, LIT("alice"), 10);
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_NOT_FOUND);
}

static void test_destroy_exhausted_deletes_only_the_same_exhausted_record(void **state)
{
	fx *f = *state;
	bkv_record r;
	assert_int_equal(bkv_storage_destroy_exhausted(f->s, LIT("nobody"), 1),
	                 BKV_STORAGE_NOT_FOUND);
	const uint64_t v1 = put_new(f, LIT("alice"), 2);
	put_new(f, LIT("bob"), 1);
	commit_ok(f, LIT("alice"));
	/* not exhausted yet */
	const bkv_record before = get_ok(f, LIT("alice"));
	assert_int_equal(bkv_storage_destroy_exhausted(f->s, LIT("alice"), v1), BKV_STORAGE_STALE);
	bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	/* exhausted, but another record_version */
	commit_ok(f, LIT("alice"));
	const bkv_record used_up = get_ok(f, LIT("alice"));
	assert_int_equal(used_up.attempts_used, 2);
	assert_int_equal(bkv_storage_destroy_exhausted(f->s, LIT("alice"), v1 + 1000),
	                 BKV_STORAGE_STALE);
	after = get_ok(f, LIT("alice"));
	assert_same_record(&used_up, &after);
	/* the same record, exhausted: gone, and only it */
	assert_int_equal(bkv_storage_destroy_exhausted(f->s, LIT("alice"), v1), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &r), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_destroy_exhausted(f->s, LIT("alice"), v1),
	                 BKV_STORAGE_NOT_FOUND);
	get_ok(f, LIT("bob"));
	/* a replaced record is not exhausted any more */
	const uint64_t b1 = get_ok(f, LIT("bob")).record_version;
	commit_ok(f, LIT("bob"));
	put_new(f, LIT("bob"), 1);
	assert_int_equal(bkv_storage_destroy_exhausted(f->s, LIT("bob"), b1), BKV_STORAGE_STALE);
	get_ok(f, LIT("bob"));
}

/* ------------------------------------------------------------------------------------ */
/* Re-sealing                                                                            */
/* ------------------------------------------------------------------------------------ */

typedef struct keyed_account {
	const char *id;
	size_t len;
	uint32_t seal_key_version;
} keyed_account;

#define ACCT(s, k)                                                                                 \
	{                                                                                          \
		(s), sizeof(s) - 1, (k)                                                            \
	}

static void put_with_key(fx *f, const keyed_account *a)
{
	bkv_record r;
	make_record(f, &r, (const uint8_t *)a->id, a->len, 10);
	r.seal_key_version = a->seal_key_version;
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_OK);
}

/* Pages through list_sealed_below, resuming after the last account of each page, and
 * returns how many records it saw in out (cap entries). */
static size_t list_all(fx *f, uint32_t min_version, size_t page, bkv_record *out, size_t cap)
{
	size_t total = 0;
	bkv_record last;
	bool have_last = false;
	for (int guard = 0; guard < 100; guard++) {
		bkv_record buf[8];
		size_t count = 99;
		assert_true(page <= 8);
		assert_int_equal(bkv_storage_list_sealed_below(
		                     f->s, min_version, have_last ? last.account_id : NULL,
		                     have_last ? last.account_id_len : 0, buf, page, &count),
		                 BKV_STORAGE_OK);
		assert_true(count <= page);
		for (size_t i = 0; i < count; i++) {
			assert_true(total < cap);
			out[total++] = buf[i];
		}
		if (count < page) {
			return total;
		}
		last = buf[count - 1];
		have_last = true;
	}
	fail_msg("list_sealed_below did not terminate");
	return 0;
}

static void test_list_sealed_below_pages_through_records_in_account_order(void **state)
{
	fx *f = *state;
	/* inserted out of order; byte order puts a prefix first and treats bytes as unsigned */
	const keyed_account accts[] = {ACCT("b", 1),  ACCT("\xff", 1), ACCT("a\x01", 1),
	                               ACCT("a", 1),  ACCT("ab", 1),   ACCT("\0", 1),
	                               ACCT("a\0", 1)};
	const char *const order[] = {"\0", "a", "a\0", "a\x01", "ab", "b", "\xff"};
	const size_t order_len[] = {1, 1, 2, 2, 2, 1, 1};
	const size_t n = sizeof(accts) / sizeof(accts[0]);
	for (size_t i = 0; i < n; i++) {
		put_with_key(f, &accts[i]);
	}
	for (size_t page = 1; page <= 4; page++) {
		bkv_record seen[16];
		const size_t total = list_all(f, 2, page, seen, 16);
		assert_int_equal(total, n);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(seen[i].account_id_len, order_len[i]);
			assert_memory_equal(seen[i].account_id, order[i], order_len[i]);
			const bkv_record stored = get_ok(f, seen[i].account_id, order_len[i]);
			assert_same_record(&seen[i], &stored);
		}
	}
}

static void test_list_sealed_below_returns_only_records_below_the_version(void **state)
{
	fx *f = *state;
	const keyed_account accts[] = {ACCT("a", 1), ACCT("b", 3), ACCT("c", 2),
	                               ACCT("d", 4), ACCT("e", 1), ACCT("f", 3)};
	for (size_t i = 0; i < sizeof(accts) / sizeof(accts[0]); i++) {
		put_with_key(f, &accts[i]);
	}
	bkv_record seen[8];
	assert_int_equal(list_all(f, 1, 2, seen, 8), 0);
	assert_int_equal(list_all(f, 2, 2, seen, 8), 2);
	assert_memory_equal(seen[0].account_id, "a", 1);
	assert_memory_equal(seen[1].account_id, "e", 1);
	assert_int_equal(list_all(f, 3, 2, seen, 8), 3);
	assert_memory_equal(seen[0].account_id, "a", 1);
	assert_memory_equal(seen[1].account_id, "c", 1);
	assert_memory_equal(seen[2].account_id, "e", 1);
	for (size_t i = 0; i < 3; i++) {
		assert_true(seen[i].seal_key_version < 3);
	}
	assert_int_equal(list_all(f, 5, 4, seen, 8), 6);
}

static void test_list_sealed_below_resumes_after_an_account_that_is_gone(void **state)
{
	fx *f = *state;
	const keyed_account accts[] = {ACCT("a", 1), ACCT("b", 1), ACCT("c", 1), ACCT("d", 1)};
	for (size_t i = 0; i < 4; i++) {
		put_with_key(f, &accts[i]);
	}
	bkv_record page[2];
	size_t count = 0;
	assert_int_equal(bkv_storage_list_sealed_below(f->s, 2, NULL, 0, page, 2, &count),
	                 BKV_STORAGE_OK);
	assert_int_equal(count, 2);
	assert_memory_equal(page[1].account_id, "b", 1);
	assert_int_equal(bkv_storage_delete(f->s, LIT("b")), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_list_sealed_below(f->s, 2, LIT("b"), page, 2, &count),
	                 BKV_STORAGE_OK);
	assert_int_equal(count, 2);
	assert_memory_equal(page[0].account_id, "c", 1);
	assert_memory_equal(page[1].account_id, "d", 1);
	assert_int_equal(bkv_storage_list_sealed_below(f->s, 2, LIT("d"), page, 2, &count),
	                 BKV_STORAGE_OK);
	assert_int_equal(count, 0);
}

static void test_reseal_replaces_the_blob_and_key_version_of_the_same_record(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	uint8_t blob[BKV_STORAGE_SEALED_MAX];
	for (size_t i = 0; i < sizeof(blob); i++) {
		blob[i] = (uint8_t)(i ^ 0x3C);
	}
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), v, 2, blob, sizeof(blob)),
	                 BKV_STORAGE_OK);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_int_equal(after.seal_key_version, 2);
	assert_int_equal(after.sealed_len, sizeof(blob));
	assert_memory_equal(after.sealed, blob, sizeof(blob));
	/* the record is otherwise the same one */
	assert_int_equal(after.record_version, v);
	assert_int_equal(after.attempts_used, before.attempts_used);
	assert_int_equal(after.guess_seq, before.guess_seq);
	assert_int_equal(after.last_finished_seq, before.last_finished_seq);
	assert_int_equal(after.attempt_limit, before.attempt_limit);
	assert_int_equal(after.registered_at, before.registered_at);
	/* and an attempt in flight can still be finished */
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
	                 BKV_STORAGE_OK);
}

static void test_reseal_of_a_replaced_record_is_stale_and_changes_nothing(void **state)
{
	fx *f = *state;
	const uint64_t v1 = put_new(f, LIT("alice"), 10);
	put_new(f, LIT("alice"), 10);
	const bkv_record before = get_ok(f, LIT("alice"));
	const uint8_t blob[16] = {1, 2, 3};
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), v1, 2, blob, sizeof(blob)),
	                 BKV_STORAGE_STALE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

static void test_reseal_of_a_missing_account_changes_nothing(void **state)
{
	fx *f = *state;
	const uint8_t blob[16] = {1, 2, 3};
	assert_int_not_equal(bkv_storage_reseal(f->s, LIT("nobody"), 1, 2, blob, sizeof(blob)),
	                     BKV_STORAGE_OK);
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("nobody"), &r), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(count_with(f, 2), 0);
}

static void test_count_sealed_with_counts_records_per_key_version(void **state)
{
	fx *f = *state;
	assert_int_equal(count_with(f, 1), 0);
	const keyed_account accts[] = {ACCT("a", 1), ACCT("b", 3), ACCT("c", 1), ACCT("d", 1)};
	for (size_t i = 0; i < 4; i++) {
		put_with_key(f, &accts[i]);
	}
	assert_int_equal(count_with(f, 1), 3);
	assert_int_equal(count_with(f, 3), 1);
	assert_int_equal(count_with(f, 2), 0);
	const bkv_record c = get_ok(f, LIT("c"));
	assert_int_equal(
	    bkv_storage_reseal(f->s, LIT("c"), c.record_version, 3, c.sealed, c.sealed_len),
	    BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_delete(f->s, LIT("a")), BKV_STORAGE_OK);
	assert_int_equal(count_with(f, 1), 1);
	assert_int_equal(count_with(f, 3), 2);
}

/* ------------------------------------------------------------------------------------ */
/* UNAVAILABLE commits nothing                                                           */
/* ------------------------------------------------------------------------------------ */

/* A trigger added through a second connection makes the backend's statements of one kind
 * (UPDATE, DELETE or INSERT) fail; heal() drops it. */
static void inject_failure(const fx *f, const char *kind)
{
	char sql[512];
	if (on_pg) {
		snprintf(
		    sql, sizeof(sql),
		    "CREATE OR REPLACE FUNCTION bkv_test_fail() RETURNS trigger LANGUAGE plpgsql "
		    "AS $$BEGIN RAISE EXCEPTION 'injected failure'; END$$;"
		    "CREATE TRIGGER inject BEFORE %s ON records FOR EACH ROW "
		    "EXECUTE FUNCTION bkv_test_fail()",
		    kind);
	} else {
		snprintf(
		    sql, sizeof(sql),
		    "CREATE TRIGGER inject BEFORE %s ON records BEGIN SELECT RAISE(ABORT, 'x'); "
		    "END",
		    kind);
	}
	raw_sql(f, sql);
}

static void heal(const fx *f)
{
	raw_sql(f, on_pg ? "DROP TRIGGER inject ON records" : "DROP TRIGGER inject");
}

static void test_unavailable_commit_attempt_commits_nothing(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	const bkv_record before = get_ok(f, LIT("alice"));
	inject_failure(f, "UPDATE");
	uint32_t used, limit;
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, &used, &limit),
	                 BKV_STORAGE_UNAVAILABLE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	heal(f);
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, &used, &limit),
	                 BKV_STORAGE_OK);
	assert_int_equal(used, 1);
}

static void test_unavailable_finish_commits_nothing(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	inject_failure(f, "UPDATE");
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
	                 BKV_STORAGE_UNAVAILABLE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	heal(f);
	/* no transaction was left open: the guess can still be finished, once */
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
	                 BKV_STORAGE_OK);
	assert_int_equal(get_ok(f, LIT("alice")).attempts_used, 0);
}

static void test_unavailable_destroying_finish_commits_nothing(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 1);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	inject_failure(f, "DELETE");
	bkv_finish_result res;
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, false, &res, NULL),
	                 BKV_STORAGE_UNAVAILABLE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	heal(f);
	assert_int_equal(bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, false, &res, NULL),
	                 BKV_STORAGE_OK);
	assert_true(res.destroyed);
}

static void test_unavailable_destroy_exhausted_commits_nothing(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 1);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	inject_failure(f, "DELETE");
	assert_int_equal(bkv_storage_destroy_exhausted(f->s, LIT("alice"), v),
	                 BKV_STORAGE_UNAVAILABLE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	heal(f);
	assert_int_equal(bkv_storage_destroy_exhausted(f->s, LIT("alice"), v), BKV_STORAGE_OK);
}

static void test_unavailable_put_commits_nothing(void **state)
{
	fx *f = *state;
	bkv_record r;
	make_record(f, &r, LIT("bob"), 10);
	inject_failure(f, "INSERT");
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_UNAVAILABLE);
	bkv_record out;
	assert_int_equal(bkv_storage_get(f->s, LIT("bob"), &out), BKV_STORAGE_NOT_FOUND);
	heal(f);

	put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	inject_failure(f, "UPDATE");
	make_record(f, &r, LIT("alice"), 10);
	assert_int_equal(bkv_storage_put(f->s, &r), BKV_STORAGE_UNAVAILABLE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

/* ------------------------------------------------------------------------------------ */
/* Concurrency across processes                                                          */
/* ------------------------------------------------------------------------------------ */

#define RACE_LIMIT 100

typedef struct race_arg {
	const char *url;
	const uint8_t *account;
	size_t account_len;
	uint64_t record_version;
	int out; /* pipe for the attempts_used values granted */
} race_arg;

/* What a racing child reports through the pipe. */
typedef struct race_report {
	uint32_t granted; /* attempts_used returned by a successful commit, 0 for none */
	uint32_t stale;   /* STALE answers seen since the previous report */
} race_report;

/* Exit code: the number of attempts granted (0..RACE_LIMIT), or 100+ on an error. */
static int child_race_attempts(int index, void *argp)
{
	const race_arg *a = argp;
	bkv_storage *s = child_open(a->url);
	if (s == NULL) {
		return 100;
	}
	child_ready_and_wait();
	int granted = 0, code = 101;
	race_report rep = {0, 0};
	const double deadline = now_s() + 15;
	for (int i = 0; i < 100000 && now_s() < deadline; i++) {
		bkv_record r;
		bkv_storage_err err = bkv_storage_get(s, a->account, a->account_len, &r);
		if (err != BKV_STORAGE_OK) {
			code = 110 + (int)err;
			break;
		}
		uint32_t used = 0, limit = 0;
		err = bkv_storage_commit_attempt(s, a->account, a->account_len, r.record_version,
		                                 r.guess_seq, &used, &limit);
		if (err == BKV_STORAGE_OK) {
			granted++;
			rep.granted = used;
			if (!write_full(a->out, &rep, sizeof(rep))) {
				code = 102;
				break;
			}
			rep.stale = 0;
		} else if (err == BKV_STORAGE_EXHAUSTED) {
			rep.granted = 0;
			code = write_full(a->out, &rep, sizeof(rep)) ? granted : 102;
			break;
		} else if (err == BKV_STORAGE_STALE) {
			rep.stale++;
		} else {
			fprintf(stderr, "child %d: commit_attempt: %s\n", index,
			        bkv_storage_strerror(err));
			code = 120 + (int)err;
			break;
		}
	}
	bkv_storage_close(s);
	return code;
}

static void test_concurrent_attempts_from_many_processes_grant_exactly_the_limit(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), RACE_LIMIT);
	close_storage(f);

	int p[2];
	assert_int_equal(pipe(p), 0);
	race_arg arg = {f->url, (const uint8_t *)"alice", 5, v, p[1]};
	int status[N_CHILDREN];
	const double t0 = now_s();
	run_children(N_CHILDREN, child_race_attempts, &arg, status);
	close(p[1]);
	int total = 0;
	for (int i = 0; i < N_CHILDREN; i++) {
		if (status[i] < 0 || status[i] > RACE_LIMIT) {
			fail_msg("child %d failed with status %d", i, status[i]);
		}
		total += status[i];
	}
	print_message("%d processes, %d attempts granted in %.3f s: ", N_CHILDREN, total,
	              now_s() - t0);
	for (int i = 0; i < N_CHILDREN; i++) {
		print_message("%d%s", status[i], i + 1 < N_CHILDREN ? "+" : "\n");
	}
	assert_int_equal(total, RACE_LIMIT);

	/* every value 1..limit was handed out exactly once */
	int seen[RACE_LIMIT + 1] = {0};
	race_report rep;
	int n = 0;
	unsigned long stale = 0;
	while (read_full(p[0], &rep, sizeof(rep))) {
		stale += rep.stale;
		if (rep.granted != 0) {
			assert_true(rep.granted <= RACE_LIMIT);
			seen[rep.granted]++;
			n++;
		}
	}
	close(p[0]);
	print_message("%lu STALE answers were retried\n", stale);
	assert_int_equal(n, RACE_LIMIT);
	for (int i = 1; i <= RACE_LIMIT; i++) {
		assert_int_equal(seen[i], 1);
	}

	reopen(f);
	const bkv_record r = get_ok(f, LIT("alice"));
	assert_int_equal(r.attempts_used, RACE_LIMIT);
	assert_int_equal(r.guess_seq, RACE_LIMIT);
	assert_int_equal(r.record_version, v);
}

typedef struct finish_arg {
	const char *url;
	uint64_t record_version;
} finish_arg;

/* Exit code: the bkv_storage_err of finishing guess 1 with success, or 100+ on error. */
static int child_finish_guess_one(int index, void *argp)
{
	(void)index;
	const finish_arg *a = argp;
	bkv_storage *s = child_open(a->url);
	if (s == NULL) {
		return 100;
	}
	child_ready_and_wait();
	bkv_finish_result res;
	bkv_storage_err err =
	    bkv_storage_finish_attempt(s, LIT("alice"), a->record_version, 1, true, &res, NULL);
	bkv_storage_close(s);
	return (int)err;
}

static void test_concurrent_finishes_of_one_guess_succeed_exactly_once(void **state)
{
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), RACE_LIMIT);
	commit_ok(f, LIT("alice"));
	close_storage(f);

	finish_arg arg = {f->url, v};
	int status[N_CHILDREN];
	run_children(N_CHILDREN, child_finish_guess_one, &arg, status);
	int ok = 0, stale = 0;
	for (int i = 0; i < N_CHILDREN; i++) {
		ok += status[i] == BKV_STORAGE_OK;
		stale += status[i] == BKV_STORAGE_STALE;
	}
	assert_int_equal(ok, 1);
	assert_int_equal(stale, N_CHILDREN - 1);
	reopen(f);
	const bkv_record r = get_ok(f, LIT("alice"));
	assert_int_equal(r.attempts_used, 0);
	assert_int_equal(r.last_finished_seq, 1);
}

/* ------------------------------------------------------------------------------------ */
/* Crash durability                                                                      */
/* ------------------------------------------------------------------------------------ */

#define CRASH_ROUNDS 5

/* Commits attempts as fast as it can, reporting each new attempts_used after the call
 * returned OK, until it is killed. */
static void crash_child(const char *url, uint64_t record_version, uint64_t guess_seq, int out)
{
	alarm(CHILD_ALARM_S);
	bkv_storage *s = child_open(url);
	if (s == NULL) {
		_exit(100);
	}
	for (;;) {
		uint32_t used = 0, limit = 0;
		bkv_storage_err err = bkv_storage_commit_attempt(s, LIT("alice"), record_version,
		                                                 guess_seq, &used, &limit);
		if (err == BKV_STORAGE_STALE) {
			/* The previous child's last COMMIT may still land after it was killed (a
			 * PostgreSQL backend finishes a COMMIT it already received): re-read and go
			 * on, as the handlers do. */
			bkv_record r;
			if (bkv_storage_get(s, LIT("alice"), &r) != BKV_STORAGE_OK) {
				_exit(103);
			}
			guess_seq = r.guess_seq;
			continue;
		}
		if (err != BKV_STORAGE_OK) {
			fprintf(stderr, "crash child: commit_attempt: %s\n",
			        bkv_storage_strerror(err));
			_exit(101);
		}
		guess_seq++;
		if (!write_full(out, &used, sizeof(used))) {
			_exit(102);
		}
	}
}

/* Reads one reported value, waiting at most timeout_ms. */
static bool read_report(int fd, uint32_t *v, int timeout_ms)
{
	struct pollfd pfd = {fd, POLLIN, 0};
	if (poll(&pfd, 1, timeout_ms) <= 0) {
		return false;
	}
	return read_full(fd, v, sizeof(*v));
}

static void test_sigkill_never_loses_a_committed_attempt(void **state)
{
	fx *f = *state;
	const uint32_t limit = 1000000;
	const uint64_t v = put_new(f, LIT("alice"), limit);
	const unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	srand(seed);
	print_message("seed %u\n", seed);
	uint32_t floor = 0;
	for (int round = 0; round < CRASH_ROUNDS; round++) {
		const bkv_record start = get_ok(f, LIT("alice"));
		close_storage(f);

		int p[2];
		assert_int_equal(pipe(p), 0);
		fflush(stdout);
		fflush(stderr);
		const pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			crash_child(f->url, v, start.guess_seq, p[1]);
		}
		close(p[1]);

		/* let it commit a random number of attempts, then kill it mid-loop */
		const int wanted = 1 + rand() % 40;
		uint32_t last = start.attempts_used, value;
		for (int i = 0; i < wanted && read_report(p[0], &value, 5000); i++) {
			last = value;
		}
		struct timespec pause = {0, (long)(rand() % 3000) * 1000};
		nanosleep(&pause, NULL);
		kill(pid, SIGKILL);
		int ws;
		waitpid(pid, &ws, 0);
		/* whatever it reported before it died was committed */
		while (read_full(p[0], &value, sizeof(value))) {
			last = value;
		}
		close(p[0]);
		if (!WIFSIGNALED(ws) || WTERMSIG(ws) != SIGKILL) {
			fail_msg("the child ended by itself (status %d) before it was killed", ws);
		}
		assert_true(last > start.attempts_used);

		reopen(f);
		const bkv_record r = get_ok(f, LIT("alice"));
		print_message("round %d: child reported %u, database has %u\n", round, last,
		              r.attempts_used);
		assert_true(r.attempts_used >= last);     /* never lowered */
		assert_true(r.attempts_used <= last + 1); /* at most one unreported commit */
		assert_int_equal(r.guess_seq, r.attempts_used);
		assert_true(r.attempts_used >= floor);
		floor = r.attempts_used;
	}
}

/* ------------------------------------------------------------------------------------ */
/* PostgreSQL only                                                                       */
/* ------------------------------------------------------------------------------------ */

/* The backend's own session, seen from a trigger: synchronous_commit stays on even when the
 * database's default says off, a statement timeout is set, and writes run READ COMMITTED. */
static void test_pg_session_keeps_synchronous_commit_on_and_has_a_statement_timeout(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	close_storage(f);
	pg_exec("DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', "
	        "current_database()); END$$;"
	        "CREATE TABLE seen (sync text, timeout text, isolation text, app text);"
	        "CREATE FUNCTION bkv_test_capture() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
	        "INSERT INTO seen VALUES (current_setting('synchronous_commit'), "
	        "current_setting('statement_timeout'), current_setting('transaction_isolation'), "
	        "current_setting('application_name')); RETURN NEW; END$$;"
	        "CREATE TRIGGER capture BEFORE INSERT ON records FOR EACH ROW "
	        "EXECUTE FUNCTION bkv_test_capture()");
	assert_int_equal(pg_int("SELECT count(*) FROM pg_db_role_setting WHERE setdatabase = "
	                        "(SELECT oid FROM pg_database WHERE datname = current_database())"),
	                 1);
	reopen(f);
	put_new(f, LIT("alice"), 10);
	assert_int_equal(pg_int("SELECT count(*) FROM seen WHERE sync = 'on' AND timeout = '5s' "
	                        "AND isolation = 'read committed' AND app = 'bkvd'"),
	                 1);
}

/* A statement stuck in the database is cut off by the statement timeout (here 500 ms,
 * set through the URL), fails with UNAVAILABLE and leaves the row as it was. */
static void test_pg_statement_timeout_bounds_a_stuck_statement(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	const bkv_record before = get_ok(f, LIT("alice"));
	close_storage(f);
	snprintf(f->url, sizeof(f->url), "%s%soptions=-c%%20statement_timeout%%3D500", pg_url,
	         strchr(pg_url, '?') ? "&" : "?");
	reopen(f);
	pg_exec("CREATE FUNCTION bkv_test_stuck() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
	        "PERFORM pg_sleep(30); RETURN NEW; END$$;"
	        "CREATE TRIGGER inject BEFORE UPDATE ON records FOR EACH ROW "
	        "EXECUTE FUNCTION bkv_test_stuck()");
	uint32_t used, limit;
	const double t0 = now_s();
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, &used, &limit),
	                 BKV_STORAGE_UNAVAILABLE);
	const double took = now_s() - t0;
	print_message("the stuck commit_attempt failed after %.3f s\n", took);
	assert_true(took >= 0.4 && took < 3);
	heal(f);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, 0, &used, &limit),
	                 BKV_STORAGE_OK);
	assert_int_equal(used, 1);
}

/* The backend's session is terminated in the middle of a transaction, and then inside
 * COMMIT (a deferred trigger runs there, so the answer to COMMIT is lost and the backend
 * must find out on a new connection that the transaction aborted). Every call fails with
 * UNAVAILABLE after its retries, nothing is committed, and the next call reconnects. */
static void test_pg_a_connection_lost_before_or_during_commit_commits_nothing(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	commit_ok(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	pg_exec("CREATE FUNCTION bkv_test_die() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
	        "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
	        "RETURN COALESCE(NEW, OLD); END$$");
	static const char *const triggers[] = {
	    "CREATE TRIGGER inject BEFORE UPDATE OR DELETE ON records FOR EACH ROW "
	    "EXECUTE FUNCTION bkv_test_die()",
	    "CREATE CONSTRAINT TRIGGER inject AFTER UPDATE OR DELETE ON records DEFERRABLE "
	    "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bkv_test_die()"};
	for (size_t i = 0; i < 2; i++) {
		pg_exec(triggers[i]);
		uint32_t used, limit;
		bkv_finish_result res;
		const double t0 = now_s();
		assert_int_equal(bkv_storage_commit_attempt(f->s, LIT("alice"), v, before.guess_seq,
		                                            &used, &limit),
		                 BKV_STORAGE_UNAVAILABLE);
		assert_int_equal(
		    bkv_storage_finish_attempt(f->s, LIT("alice"), v, 1, true, &res, NULL),
		    BKV_STORAGE_UNAVAILABLE);
		assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_UNAVAILABLE);
		print_message("%s: three calls failed in %.3f s\n", i ? "during COMMIT" : "before",
		              now_s() - t0);
		heal(f);
		const bkv_record after = get_ok(f, LIT("alice"));
		assert_same_record(&before, &after);
	}
	uint32_t used, limit;
	assert_int_equal(
	    bkv_storage_commit_attempt(f->s, LIT("alice"), v, before.guess_seq, &used, &limit),
	    BKV_STORAGE_OK);
	assert_int_equal(used, before.attempts_used + 1);
}

/* A TCP proxy to the test server (run in a child) that loses the answer to one COMMIT: it
 * forwards the first "COMMIT" of the first connection, swallows the server's answer up to
 * and including ReadyForQuery - so the transaction has committed - and closes the
 * connection. Later connections pass through. Reports the swallowed COMMIT on `report`. */
static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Consumes the complete messages at the start of buf (the first one untyped if *startup);
 * true if one of them is of type `want` (and, with `query`, carries exactly that text). */
static bool consume_messages(uint8_t *buf, size_t *len, bool *startup, char want, const char *query)
{
	bool seen = false;
	for (;;) {
		const size_t head = *startup ? 4 : 5;
		if (*len < head) {
			return seen;
		}
		const size_t body = be32(buf + head - 4);
		const size_t total = head - 4 + body;
		if (body < 4 || *len < total) {
			return seen;
		}
		if (!*startup && buf[0] == want &&
		    (query == NULL ||
		     (body - 4 == strlen(query) + 1 && memcmp(buf + 5, query, body - 4) == 0))) {
			seen = true;
		}
		*startup = false;
		memmove(buf, buf + total, *len - total);
		*len -= total;
	}
}

static void proxy_session(int client, int server, bool lose_commit, int report)
{
	static uint8_t cbuf[1 << 16], sbuf[1 << 16];
	size_t clen = 0, slen = 0;
	bool cstart = true, sstart = false, commit_sent = false;
	for (;;) {
		struct pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			return;
		}
		uint8_t tmp[8192];
		if (p[0].revents) {
			const ssize_t n = read(client, tmp, sizeof(tmp));
			if (n <= 0 || !write_full(server, tmp, (size_t)n)) {
				return;
			}
			if (lose_commit && !commit_sent) {
				if (clen + (size_t)n > sizeof(cbuf)) {
					lose_commit = false; /* cannot follow: pass through */
				} else {
					memcpy(cbuf + clen, tmp, (size_t)n);
					clen += (size_t)n;
					commit_sent =
					    consume_messages(cbuf, &clen, &cstart, 'Q', "COMMIT");
				}
			}
		}
		if (p[1].revents) {
			const ssize_t n = read(server, tmp, sizeof(tmp));
			if (n <= 0) {
				return;
			}
			if (!commit_sent) {
				if (!write_full(client, tmp, (size_t)n)) {
					return;
				}
				continue;
			}
			/* the answer to COMMIT: swallow it, and hang up once it is complete */
			if (slen + (size_t)n > sizeof(sbuf)) {
				return;
			}
			memcpy(sbuf + slen, tmp, (size_t)n);
			slen += (size_t)n;
			if (consume_messages(sbuf, &slen, &sstart, 'Z', NULL)) {
				const uint32_t one = 1;
				(void)!write_full(report, &one, sizeof(one));
				return;
			}
		}
	}
}

static void proxy_main(int listen_fd, const struct sockaddr_in *to, int report)
{
	bool lost_one = false;
	for (;;) {
		const int client = accept(listen_fd, NULL, NULL);
		if (client < 0) {
			if (errno == EINTR) {
				continue;
			}
			_exit(1);
		}
		const int server = socket(AF_INET, SOCK_STREAM, 0);
		if (server >= 0 && connect(server, (const struct sockaddr *)to, sizeof(*to)) == 0) {
			proxy_session(client, server, !lost_one, report);
			lost_one = true;
		}
		close(server);
		close(client);
	}
}

/* The answer to COMMIT is lost with the connection after the transaction committed: the
 * backend finds out on a new connection (pg_xact_status) and reports OK, not UNAVAILABLE,
 * and the attempt was counted once. */
static void test_pg_a_commit_whose_answer_is_lost_is_settled_as_committed(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	const uint64_t v = put_new(f, LIT("alice"), 10);
	const bkv_record before = get_ok(f, LIT("alice"));
	close_storage(f);

	PQconninfoOption *opts = PQconninfoParse(pg_url, NULL);
	assert_non_null(opts);
	const char *user = "postgres", *dbname = "bkv", *port = "5432";
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL && strcmp(o->keyword, "user") == 0) {
			user = o->val;
		} else if (o->val != NULL && strcmp(o->keyword, "dbname") == 0) {
			dbname = o->val;
		} else if (o->val != NULL && strcmp(o->keyword, "port") == 0) {
			port = o->val;
		}
	}
	struct sockaddr_in to = {.sin_family = AF_INET};
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = htons((uint16_t)atoi(port));
	struct sockaddr_in at = to;
	at.sin_port = 0;
	socklen_t at_len = sizeof(at);
	const int lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&at, sizeof(at)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&at, &at_len), 0);
	int rep[2];
	assert_int_equal(pipe(rep), 0);
	fflush(stdout);
	fflush(stderr);
	const pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(rep[0]);
		alarm(CHILD_ALARM_S);
		proxy_main(lfd, &to, rep[1]);
		_exit(0);
	}
	close(lfd);
	close(rep[1]);
	snprintf(f->url, sizeof(f->url),
	         "postgresql://%s@127.0.0.1:%d/%s?sslmode=disable&gssencmode=disable", user,
	         (int)ntohs(at.sin_port), dbname);
	PQconninfoFree(opts);
	reopen(f);

	uint32_t used = 0, limit = 0, lost = 0;
	const bkv_storage_err err =
	    bkv_storage_commit_attempt(f->s, LIT("alice"), v, before.guess_seq, &used, &limit);
	const bool proxy_lost_it = read_report(rep[0], &lost, 2000) && lost == 1;
	uint32_t next = 0;
	const bkv_storage_err err2 =
	    bkv_storage_commit_attempt(f->s, LIT("alice"), v, before.guess_seq + 1, &next, &limit);
	close_storage(f);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(rep[0]);

	assert_true(proxy_lost_it);
	assert_int_equal(err, BKV_STORAGE_OK);
	assert_int_equal(used, before.attempts_used + 1);
	assert_int_equal(err2, BKV_STORAGE_OK); /* and counted once: the next guess follows */
	assert_int_equal(next, before.attempts_used + 2);
	snprintf(f->url, sizeof(f->url), "%s", pg_url);
	reopen(f);
	const bkv_record r = get_ok(f, LIT("alice"));
	assert_int_equal(r.attempts_used, before.attempts_used + 2);
	assert_int_equal(r.guess_seq, before.guess_seq + 2);
}

/* PostgreSQL restarts (pg_ctl restart -m fast) while a client commits attempts in a loop:
 * during the outage calls fail fast with UNAVAILABLE, afterwards the backend reconnects
 * by itself, and no counter is ever seen to go down. */
static void
test_pg_restart_fails_calls_fast_then_reconnects_and_never_lowers_a_counter(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	const char *pg_ctl = getenv("BKV_TEST_PG_CTL");
	if (pg_ctl == NULL || pg_ctl[0] == '\0') {
		fail_msg("BKV_TEST_PG_CTL is not set (run under tests/with-postgres)");
	}
	const uint64_t v = put_new(f, LIT("alice"), 1000000);
	uint32_t floor = 0;
	for (int i = 0; i < 5; i++) {
		floor = commit_ok(f, LIT("alice"));
	}

	fflush(stdout);
	fflush(stderr);
	const pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(CHILD_ALARM_S);
		struct timespec pause = {0, 200 * 1000000L};
		nanosleep(&pause, NULL);
		execl(pg_ctl, pg_ctl, "restart", (char *)NULL);
		_exit(127);
	}

	const double t0 = now_s(), deadline = t0 + 20;
	int ok_before = 0, ok_after = 0, unavailable = 0, restart_status = INT_MIN;
	double first_failure = 0, last_failure = 0, slowest = 0;
	while (now_s() < deadline && (restart_status == INT_MIN || ok_after < 20)) {
		const double c0 = now_s();
		bkv_record r;
		bkv_storage_err err = bkv_storage_get(f->s, LIT("alice"), &r);
		if (err == BKV_STORAGE_OK) {
			if (r.attempts_used < floor) {
				fail_msg("attempts_used went down from %u to %u", floor,
				         r.attempts_used);
			}
			floor = r.attempts_used;
			uint32_t used = 0, limit = 0;
			err = bkv_storage_commit_attempt(f->s, LIT("alice"), v, r.guess_seq, &used,
			                                 &limit);
			if (err == BKV_STORAGE_OK) {
				assert_true(used > floor);
				floor = used;
				*(unavailable ? &ok_after : &ok_before) += 1;
			}
		}
		const double took = now_s() - c0;
		slowest = took > slowest ? took : slowest;
		if (err == BKV_STORAGE_UNAVAILABLE) {
			if (unavailable++ == 0) {
				first_failure = now_s() - t0;
			}
			last_failure = now_s() - t0;
			struct timespec pause = {0, 5 * 1000000L};
			nanosleep(&pause, NULL);
		} else if (err != BKV_STORAGE_OK) {
			fail_msg("unexpected %s", bkv_storage_strerror(err));
		}
		int ws;
		if (restart_status == INT_MIN && waitpid(pid, &ws, WNOHANG) == pid) {
			restart_status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
		}
	}
	if (restart_status == INT_MIN) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("pg_ctl restart did not finish");
	}
	print_message("%d attempts before the restart, %d UNAVAILABLE from %.3f s to %.3f s, "
	              "%d attempts after; slowest call %.3f s\n",
	              ok_before, unavailable, first_failure, last_failure, ok_after, slowest);
	assert_int_equal(restart_status, 0);
	assert_true(ok_before > 0);
	assert_true(unavailable > 0);
	assert_true(ok_after >= 20);
	assert_true(slowest < 4); /* failed fast, never hung */

	reopen(f);
	const bkv_record r = get_ok(f, LIT("alice"));
	assert_true(r.attempts_used >= floor);
	assert_int_equal(r.guess_seq, r.attempts_used);
}

/* ------------------------------------------------------------------------------------ */

#define T_DIR(fn)  cmocka_unit_test_setup_teardown(fn, setup_dir, teardown)
#define T_OPEN(fn) cmocka_unit_test_setup_teardown(fn, setup_open, teardown)

/* Status output and logs may show a storage URL, never a password in it. */
static void test_url_redaction_hides_passwords_only(void **state)
{
	(void)state;
	static const struct {
		const char *url, *shown;
	} cases[] = {
	    {"postgresql://bkv:s3cret@db.internal:5432/bkv?sslmode=verify-full",
	     "postgresql://bkv:***@db.internal:5432/bkv?sslmode=verify-full"},
	    {"postgres://db/bkv?sslmode=require&password=s3cret&connect_timeout=3",
	     "postgres://db/bkv?sslmode=require&password=***&connect_timeout=3"},
	    {"postgresql://bkv@db/bkv", "postgresql://bkv@db/bkv"},
	    {"sqlite:/var/lib/bkv/bkv.db", "sqlite:/var/lib/bkv/bkv.db"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[256];
		bkv_storage_url_redacted(cases[i].url, out, sizeof(out));
		assert_string_equal(out, cases[i].shown);
		assert_null(strstr(out, "s3cret"));
	}
	char tiny[8];
	bkv_storage_url_redacted(cases[0].url, tiny, sizeof(tiny));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    /* opening and the schema */
	    T_OPEN(test_open_creates_the_schema),
	    T_DIR(test_open_accepts_a_bare_path),
	    T_DIR(test_open_refuses_an_unknown_url_scheme),
	    cmocka_unit_test(test_url_redaction_hides_passwords_only),
	    T_DIR(test_open_of_an_unreachable_postgresql_server_fails_fast_with_a_reason),
	    T_DIR(test_open_of_an_unusable_path_fails_with_a_reason),
	    T_DIR(test_open_of_a_file_that_is_not_a_database_fails_with_a_reason),
	    T_OPEN(test_reopen_keeps_records),
	    T_OPEN(test_open_refuses_a_schema_newer_than_the_code),
	    T_OPEN(test_database_is_in_wal_mode),
	    T_DIR(test_connection_uses_synchronous_full),
	    T_DIR(test_concurrent_first_opens_of_a_new_database_all_succeed),
	    cmocka_unit_test(test_strerror_gives_a_distinct_message_for_every_error),
	    /* get and put */
	    T_OPEN(test_get_of_a_missing_account_is_not_found),
	    T_OPEN(test_put_then_get_round_trips_every_field),
	    T_OPEN(test_put_of_a_new_account_ignores_the_callers_counters),
	    T_OPEN(test_put_round_trips_a_maximum_length_account_with_nul_bytes),
	    T_OPEN(test_accounts_that_differ_only_after_a_nul_byte_are_distinct),
	    T_OPEN(test_put_rejects_bad_arguments_and_stores_nothing),
	    T_OPEN(test_get_rejects_bad_arguments),
	    T_OPEN(test_the_other_calls_reject_bad_arguments_and_change_nothing),
	    /* record_version */
	    T_OPEN(test_next_record_version_strictly_increases),
	    T_OPEN(test_next_record_version_is_never_reused_after_reopen),
	    T_OPEN(test_next_record_version_is_unique_across_connections),
	    T_OPEN(test_next_record_version_is_unique_across_processes),
	    /* put over an existing record */
	    T_OPEN(test_put_over_an_existing_account_replaces_the_record),
	    T_OPEN(test_put_replacement_leaves_no_earlier_guess_finishable),
	    /* commit_attempt */
	    T_OPEN(test_commit_attempt_increments_attempts_used_and_guess_seq),
	    T_OPEN(test_commit_attempt_with_a_stale_guess_seq_is_stale_and_changes_nothing),
	    T_OPEN(test_commit_attempt_with_another_record_version_is_stale_and_changes_nothing),
	    T_OPEN(test_commit_attempt_at_the_limit_is_exhausted_and_changes_nothing),
	    T_OPEN(test_commit_attempt_without_a_record_is_not_found),
	    /* finish_attempt */
	    T_OPEN(test_finish_success_resets_attempts_used_and_returns_the_record),
	    T_OPEN(test_finish_success_returns_the_row_as_stored),
	    T_OPEN(test_finish_success_accepts_no_record_out),
	    T_OPEN(test_finish_of_the_same_guess_twice_is_stale),
	    T_OPEN(test_finish_of_an_older_guess_after_a_newer_one_finished_is_stale),
	    T_OPEN(test_finish_of_a_guess_that_was_never_started_is_stale),
	    T_OPEN(test_finish_failure_keeps_attempts_used),
	    T_OPEN(test_finish_failure_that_used_the_last_attempt_destroys_the_record),
	    T_OPEN(test_finish_success_at_the_limit_resets_instead_of_destroying),
	    T_OPEN(test_finish_against_a_replaced_record_is_stale),
	    T_OPEN(test_finish_without_a_record_is_not_found),
	    T_OPEN(test_guess_seq_keeps_counting_after_a_success),
	    /* delete */
	    T_OPEN(test_delete_removes_the_record),
	    T_OPEN(test_delete_of_a_missing_account_is_not_found),
	    T_OPEN(test_destroy_exhausted_deletes_only_the_same_exhausted_record),
	    /* re-sealing */
	    T_OPEN(test_list_sealed_below_pages_through_records_in_account_order),
	    T_OPEN(test_list_sealed_below_returns_only_records_below_the_version),
	    T_OPEN(test_list_sealed_below_resumes_after_an_account_that_is_gone),
	    T_OPEN(test_reseal_replaces_the_blob_and_key_version_of_the_same_record),
	    T_OPEN(test_reseal_of_a_replaced_record_is_stale_and_changes_nothing),
	    T_OPEN(test_reseal_of_a_missing_account_changes_nothing),
	    T_OPEN(test_count_sealed_with_counts_records_per_key_version),
	    /* UNAVAILABLE commits nothing */
	    T_OPEN(test_unavailable_commit_attempt_commits_nothing),
	    T_OPEN(test_unavailable_finish_commits_nothing),
	    T_OPEN(test_unavailable_destroying_finish_commits_nothing),
	    T_OPEN(test_unavailable_destroy_exhausted_commits_nothing),
	    T_OPEN(test_unavailable_put_commits_nothing),
	    /* concurrency and crashes */
	    T_OPEN(test_concurrent_attempts_from_many_processes_grant_exactly_the_limit),
	    T_OPEN(test_concurrent_finishes_of_one_guess_succeed_exactly_once),
	    T_OPEN(test_sigkill_never_loses_a_committed_attempt),
	    /* PostgreSQL only */
	    T_OPEN(test_pg_session_keeps_synchronous_commit_on_and_has_a_statement_timeout),
	    T_OPEN(test_pg_statement_timeout_bounds_a_stuck_statement),
	    T_OPEN(test_pg_a_connection_lost_before_or_during_commit_commits_nothing),
	    T_OPEN(test_pg_a_commit_whose_answer_is_lost_is_settled_as_committed),
	    T_OPEN(test_pg_restart_fails_calls_fast_then_reconnects_and_never_lowers_a_counter),
	};
	const char *backend = getenv("BKV_TEST_STORAGE");
	if (backend != NULL && strcmp(backend, "postgresql") == 0) {
		on_pg = true;
		pg_url = getenv("BKV_TEST_PG_URL");
		if (pg_url == NULL || pg_url[0] == '\0') {
			fprintf(stderr, "BKV_TEST_STORAGE=postgresql needs BKV_TEST_PG_URL "
			                "(run under tests/with-postgres)\n");
			return 1;
		}
	} else if (backend != NULL && backend[0] != '\0' && strcmp(backend, "sqlite") != 0) {
		fprintf(stderr, "BKV_TEST_STORAGE=%s: expected sqlite or postgresql\n", backend);
		return 1;
	}
	return cmocka_run_group_tests_name(on_pg ? "storage (postgresql)" : "storage (sqlite)",
	                                   tests, NULL, NULL);
}
