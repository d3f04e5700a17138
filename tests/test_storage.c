/*
 * test_storage.c - behaviour tests of the record store (vault/storage/storage.h) on its SQLite
 * backend (cmocka). Every test gets a fresh database in its own temporary directory and
 * checks one sentence of the contract: opening, schema versioning and the migration of a
 * version-1 database, WAL with synchronous=FULL, insert/get, update as a compare-and-set on
 * the stored MAC, values that do not fit a field (CORRUPT), delete, re-sealing, the seal
 * floor, "UNAVAILABLE commits nothing", and the properties that need several processes:
 * racing read -> compare-and-set loops lose no increment, two writers from one MAC never
 * both succeed, a count after raising the seal floor sees every row below it that ever
 * commits, and a SIGKILL never loses a committed write.
 *
 * The tests give a row's MAC a meaning of their own: the 8-byte big-endian value of
 * attempts_used, so a row whose MAC does not match its counter shows a torn write.
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
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "fiber.h"
#include "storage.h"
#include "testblock.h"
#include "testgroup.h"
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

/* The schema version this code creates and migrates to (PostgreSQL's 5 adds the shared
 * rate buckets, which SQLite does not need). */
#define SCHEMA_VERSION    4
#define PG_SCHEMA_VERSION 5

/* The MAC these tests give a state: attempts_used as 8 big-endian bytes. */
static void set_counter_mac(bkv_record *r)
{
	r->mac_len = 8;
	for (size_t i = 0; i < 8; i++) {
		r->mac[i] = (uint8_t)((uint64_t)r->attempts_used >> (56 - 8 * i));
	}
}

static bool has_counter_mac(const bkv_record *r)
{
	bkv_record expected = *r;
	set_counter_mac(&expected);
	return r->mac_len == 8 && memcmp(r->mac, expected.mac, 8) == 0;
}

/* A live record with every field set, derived from the account so round trips are
 * checkable, and the counter MAC of attempts_used 0. */
static void make_record(bkv_record *r, const uint8_t *account, size_t len)
{
	memset(r, 0, sizeof(*r));
	memcpy(r->account_id, account, len);
	r->account_id_len = len;
	r->suite = 2;
	r->state = 1;
	r->record_version = 1;
	r->registration_id_len = 16;
	for (size_t i = 0; i < r->registration_id_len; i++) {
		r->registration_id[i] = (uint8_t)(0xA0 + i + len);
	}
	r->attempt_limit = 10;
	r->seal_key_version = 1;
	r->sealed_len = 48 + len % 16;
	for (size_t i = 0; i < r->sealed_len; i++) {
		r->sealed[i] = (uint8_t)(i * 7 + len + (len ? account[0] : 0));
	}
	r->registered_at = 1700000000;
	set_counter_mac(r);
}

/* make_record's record for account, sealed under version with a blob of its own. */
static bkv_record sealed_under(const uint8_t *account, size_t len, uint32_t version)
{
	bkv_record r;
	make_record(&r, account, len);
	r.seal_key_version = version;
	r.sealed[0] = (uint8_t)version;
	return r;
}

/* Inserts make_record's record and returns it. */
static bkv_record insert_new(fx *f, const uint8_t *account, size_t len)
{
	bkv_record r;
	make_record(&r, account, len);
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_OK);
	return r;
}

static bkv_record get_ok(fx *f, const uint8_t *account, size_t len)
{
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, account, len, &r), BKV_STORAGE_OK);
	return r;
}

/* The state a handler would write after r: one more attempt and guess, and its MAC. */
static bkv_record next_state(const bkv_record *r)
{
	bkv_record n = *r;
	n.attempts_used++;
	n.guess_seq++;
	set_counter_mac(&n);
	return n;
}

/* Reads the row, writes its next state from the MAC it read, and returns the row after. */
static bkv_record advance_ok(fx *f, const uint8_t *account, size_t len)
{
	const bkv_record r = get_ok(f, account, len);
	const bkv_record n = next_state(&r);
	assert_int_equal(bkv_storage_update(f->s, &n, r.mac, r.mac_len), BKV_STORAGE_OK);
	return get_ok(f, account, len);
}

/* Every field but updated_at, which storage sets. */
static void assert_same_state(const bkv_record *a, const bkv_record *b)
{
	assert_int_equal(a->account_id_len, b->account_id_len);
	assert_memory_equal(a->account_id, b->account_id, a->account_id_len);
	assert_int_equal(a->suite, b->suite);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->record_version, b->record_version);
	assert_int_equal(a->registration_id_len, b->registration_id_len);
	assert_memory_equal(a->registration_id, b->registration_id, a->registration_id_len);
	assert_int_equal(a->attempts_used, b->attempts_used);
	assert_int_equal(a->attempt_limit, b->attempt_limit);
	assert_int_equal(a->guess_seq, b->guess_seq);
	assert_int_equal(a->last_finished_seq, b->last_finished_seq);
	assert_int_equal(a->seal_key_version, b->seal_key_version);
	assert_int_equal(a->sealed_len, b->sealed_len);
	assert_memory_equal(a->sealed, b->sealed, a->sealed_len);
	assert_int_equal(a->registered_at, b->registered_at);
	assert_int_equal(a->destroyed_at, b->destroyed_at);
	assert_int_equal(a->mac_len, b->mac_len);
	assert_memory_equal(a->mac, b->mac, a->mac_len);
}

/* The row as stored, updated_at included. */
static void assert_same_record(const bkv_record *a, const bkv_record *b)
{
	assert_same_state(a, b);
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

/* Set by a grouped test before its children fork: each child joins it as member
 * g_child_index (storage.h, "Group commit"). */
static bkv_storage_group *g_group;
static int g_child_index;

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

/* Forks n children that run body (child i joins g_group, if set, as member i) and releases
 * them together once all are ready. The parent must have no database connection open
 * across the fork. */
static void start_children(int n, child_fn body, void *arg, pid_t *pid)
{
	int go[2], ready[2];
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
			g_child_index = i;
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
}

/* start_children, then waits for all of them. status[i] is the child's exit code, or
 * -signal if it was killed. */
static void run_children(int n, child_fn body, void *arg, int *status)
{
	pid_t pid[N_CHILDREN];
	start_children(n, body, arg, pid);
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
	if (g_group != NULL &&
	    (err = bkv_storage_join_group(s, g_group, (uint32_t)g_child_index)) != BKV_STORAGE_OK) {
		fprintf(stderr, "child %d: join failed: %s\n", (int)getpid(),
		        bkv_storage_strerror(err));
		bkv_storage_close(s);
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
		assert_int_equal(pg_int("SELECT version FROM bkv_schema"), PG_SCHEMA_VERSION);
		assert_int_equal(pg_int("SELECT count(*) FROM bkv_schema"), 1);
		assert_int_equal(
		    pg_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
		           "AND tablename = 'records'"),
		    1);
	} else {
		sqlite3 *db = raw_open(f);
		assert_int_equal(raw_int(db, "PRAGMA user_version"), SCHEMA_VERSION);
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
	const bkv_record in = insert_new(f, LIT("alice"));
	reopen(f); /* through "sqlite:PATH": the same file */
	const bkv_record out = get_ok(f, LIT("alice"));
	assert_same_state(&in, &out);
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
	insert_new(f, LIT("alice"));
	const bkv_record before = advance_ok(f, LIT("alice"));
	reopen(f);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

static void test_open_refuses_a_schema_newer_than_the_code(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
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

/* A database written by the previous schema (version 1: no state, registration_id,
 * destroyed_at or mac; record versions from a store-wide counter), as each backend
 * created it. */
static const char schema_1_sqlite[] =
    "CREATE TABLE records (account_id BLOB PRIMARY KEY, suite INTEGER NOT NULL,"
    " record_version INTEGER NOT NULL, attempts_used INTEGER NOT NULL,"
    " attempt_limit INTEGER NOT NULL, guess_seq INTEGER NOT NULL,"
    " last_finished_seq INTEGER NOT NULL, seal_key_version INTEGER NOT NULL,"
    " sealed BLOB NOT NULL, registered_at INTEGER NOT NULL, updated_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX records_by_seal_key_version ON records(seal_key_version, account_id);"
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO counters VALUES ('record_version', 7);"
    "INSERT INTO records VALUES (x'616c696365', 2, 7, 3, 10, 5, 4, 1, x'00c0ffee00', "
    "1600000000, 1600000001);"
    "PRAGMA user_version = 1;";
static const char schema_1_pg[] =
    "CREATE TABLE bkv_schema (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),"
    " version integer NOT NULL);"
    "INSERT INTO bkv_schema (version) VALUES (1);"
    "CREATE TABLE records (account_id bytea PRIMARY KEY, suite bigint NOT NULL,"
    " record_version bigint NOT NULL, attempts_used bigint NOT NULL,"
    " attempt_limit bigint NOT NULL, guess_seq bigint NOT NULL,"
    " last_finished_seq bigint NOT NULL, seal_key_version bigint NOT NULL,"
    " sealed bytea NOT NULL, registered_at bigint NOT NULL, updated_at bigint NOT NULL);"
    "CREATE INDEX records_by_seal_key_version ON records (seal_key_version, account_id);"
    "CREATE SEQUENCE record_version_seq AS bigint MINVALUE 1 NO CYCLE;"
    "SELECT setval('record_version_seq', 7);"
    "INSERT INTO records VALUES ('\\x616c696365', 2, 7, 3, 10, 5, 4, 1, '\\x00c0ffee00', "
    "1600000000, 1600000001);";

static void test_open_migrates_a_version_1_database_and_keeps_its_rows(void **state)
{
	fx *f = *state;
	if (on_pg) {
		pg_exec(schema_1_pg);
	} else {
		sqlite3 *db = NULL;
		assert_int_equal(
		    sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
		    SQLITE_OK);
		raw_exec(db, schema_1_sqlite);
		sqlite3_close(db);
	}
	reopen(f);

	const bkv_record r = get_ok(f, LIT("alice"));
	assert_int_equal(r.suite, 2);
	assert_int_equal(r.record_version, 7);
	assert_int_equal(r.attempts_used, 3);
	assert_int_equal(r.attempt_limit, 10);
	assert_int_equal(r.guess_seq, 5);
	assert_int_equal(r.last_finished_seq, 4);
	assert_int_equal(r.seal_key_version, 1);
	assert_int_equal(r.sealed_len, 5);
	assert_memory_equal(r.sealed, "\x00\xc0\xff\xee\x00", 5);
	assert_int_equal(r.registered_at, 1600000000);
	assert_int_equal(r.updated_at, 1600000001);
	/* the new columns, as a row from before them */
	assert_int_equal(r.state, 1);
	assert_int_equal(r.registration_id_len, 0);
	assert_int_equal(r.destroyed_at, 0);
	assert_int_equal(r.mac_len, 0);

	/* the schema is the current one, and the store-wide version counter is gone */
	if (on_pg) {
		assert_int_equal(pg_int("SELECT version FROM bkv_schema"), PG_SCHEMA_VERSION);
		assert_int_equal(pg_int("SELECT count(*) FROM pg_class WHERE relname = "
		                        "'record_version_seq'"),
		                 0);
	} else {
		sqlite3 *db = raw_open(f);
		assert_int_equal(raw_int(db, "PRAGMA user_version"), SCHEMA_VERSION);
		assert_int_equal(
		    raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'counters'"), 0);
		sqlite3_close(db);
	}
	/* the seal floor starts at 0: anything may be sealed under version 1 */
	const bkv_record bob = sealed_under(LIT("bob"), 1);
	assert_int_equal(bkv_storage_insert(f->s, &bob), BKV_STORAGE_OK);
	/* and the migrated row takes its first MAC from "no MAC" */
	const bkv_record n = next_state(&r);
	assert_int_equal(bkv_storage_update(f->s, &n, NULL, 0), BKV_STORAGE_OK);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_state(&n, &after);
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
static int child_open_and_insert(int index, void *arg)
{
	child_ready_and_wait(); /* all open together */
	bkv_storage *s = child_open(arg);
	if (s == NULL) {
		return 1;
	}
	char account[16];
	const int len = snprintf(account, sizeof(account), "worker-%d", index);
	bkv_record r;
	make_record(&r, (const uint8_t *)account, (size_t)len);
	r.seal_key_version = 7;
	const bkv_storage_err err = bkv_storage_insert(s, &r);
	bkv_storage_close(s);
	return err == BKV_STORAGE_OK ? 0 : 2;
}

static void test_concurrent_first_opens_of_a_new_database_all_succeed(void **state)
{
	fx *f = *state;
	int status[N_CHILDREN];
	run_children(N_CHILDREN, child_open_and_insert, f->url, status);
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
	                               BKV_STORAGE_EXISTS,      BKV_STORAGE_STALE,
	                               BKV_STORAGE_UNAVAILABLE, BKV_STORAGE_ARGUMENT,
	                               BKV_STORAGE_CORRUPT,     BKV_STORAGE_SEAL_FLOOR};
	const size_t n = sizeof(all) / sizeof(all[0]);
	for (size_t i = 0; i < n; i++) {
		const char *m = bkv_storage_strerror(all[i]);
		assert_non_null(m);
		assert_true(strlen(m) > 0);
		for (size_t j = 0; j < i; j++) {
			assert_string_not_equal(m, bkv_storage_strerror(all[j]));
		}
	}
	const char *unknown = bkv_storage_strerror((bkv_storage_err)99);
	assert_non_null(unknown);
	for (size_t i = 0; i < n; i++) {
		assert_string_not_equal(unknown, bkv_storage_strerror(all[i]));
	}
}

/* ------------------------------------------------------------------------------------ */
/* get and insert                                                                        */
/* ------------------------------------------------------------------------------------ */

static void test_get_of_a_missing_account_is_not_found(void **state)
{
	fx *f = *state;
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("nobody"), &r), BKV_STORAGE_NOT_FOUND);
	insert_new(f, LIT("alice"));
	assert_int_equal(bkv_storage_get(f->s, LIT("alic"), &r), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_get(f->s, LIT("alice2"), &r), BKV_STORAGE_NOT_FOUND);
}

/* Every field at an extreme of what it may hold; updated_at is storage's, not the caller's. */
static void test_insert_then_get_round_trips_every_field(void **state)
{
	fx *f = *state;
	bkv_record in;
	make_record(&in, LIT("alice@example.org"));
	in.suite = 0xA5A5A5A5u;
	in.state = UINT32_MAX;
	in.record_version = INT64_MAX;
	in.registration_id_len = BKV_STORAGE_REG_ID_MAX;
	for (size_t i = 0; i < in.registration_id_len; i++) {
		in.registration_id[i] = (uint8_t)(i % 4 == 0 ? 0 : 0xFF - i);
	}
	in.attempts_used = UINT32_MAX - 1;
	in.attempt_limit = UINT32_MAX;
	in.guess_seq = INT64_MAX;
	in.last_finished_seq = INT64_MAX - 1;
	in.seal_key_version = 0xFFFFFFF0u;
	in.registered_at = INT64_MIN;
	in.destroyed_at = INT64_MAX;
	in.updated_at = 2;
	in.mac_len = BKV_STORAGE_MAC_MAX;
	for (size_t i = 0; i < in.mac_len; i++) {
		in.mac[i] = (uint8_t)(i % 3 == 0 ? 0 : i * 11);
	}
	const int64_t before = (int64_t)time(NULL);
	assert_int_equal(bkv_storage_insert(f->s, &in), BKV_STORAGE_OK);
	const int64_t after = (int64_t)time(NULL);

	bkv_record out;
	memset(&out, 0xEE, sizeof(out));
	assert_int_equal(bkv_storage_get(f->s, LIT("alice@example.org"), &out), BKV_STORAGE_OK);
	assert_same_state(&in, &out);
	assert_time_between(out.updated_at, before, after);
}

/* A tombstone: destroyed, nothing sealed (seal_key_version 0, an empty blob). */
static void test_insert_then_get_round_trips_a_tombstone_with_nothing_sealed(void **state)
{
	fx *f = *state;
	bkv_record in;
	make_record(&in, LIT("alice"));
	in.state = 2;
	in.attempts_used = in.attempt_limit;
	in.seal_key_version = 0;
	in.sealed_len = 0;
	in.destroyed_at = 1700000500;
	set_counter_mac(&in);
	assert_int_equal(bkv_storage_insert(f->s, &in), BKV_STORAGE_OK);
	bkv_record out;
	memset(&out, 0xEE, sizeof(out));
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &out), BKV_STORAGE_OK);
	assert_same_state(&in, &out);
	assert_int_equal(out.sealed_len, 0);
	assert_int_equal(out.seal_key_version, 0);
}

/* A row as the records from before registration ids and MACs look. */
static void test_insert_then_get_round_trips_an_empty_registration_id_and_mac(void **state)
{
	fx *f = *state;
	bkv_record in;
	make_record(&in, LIT("alice"));
	in.registration_id_len = 0;
	in.mac_len = 0;
	assert_int_equal(bkv_storage_insert(f->s, &in), BKV_STORAGE_OK);
	bkv_record out;
	memset(&out, 0xEE, sizeof(out));
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &out), BKV_STORAGE_OK);
	assert_same_state(&in, &out);
	assert_int_equal(out.registration_id_len, 0);
	assert_int_equal(out.mac_len, 0);
}

static void test_insert_round_trips_a_maximum_length_account_with_nul_bytes(void **state)
{
	fx *f = *state;
	uint8_t account[BKV_STORAGE_ACCOUNT_MAX];
	for (size_t i = 0; i < sizeof(account); i++) {
		account[i] = (uint8_t)(i % 3 == 0 ? 0 : 255 - i); /* NULs throughout, and 0xFF.. */
	}
	bkv_record in;
	make_record(&in, account, sizeof(account));
	in.sealed_len = BKV_STORAGE_SEALED_MAX;
	for (size_t i = 0; i < in.sealed_len; i++) {
		in.sealed[i] = (uint8_t)(i % 5 == 0 ? 0 : i * 13);
	}
	assert_int_equal(bkv_storage_insert(f->s, &in), BKV_STORAGE_OK);
	const bkv_record out = get_ok(f, account, sizeof(account));
	assert_int_equal(out.account_id_len, BKV_STORAGE_ACCOUNT_MAX);
	assert_same_state(&in, &out);
}

static void test_accounts_that_differ_only_after_a_nul_byte_are_distinct(void **state)
{
	fx *f = *state;
	static const struct {
		const char *id;
		size_t len;
	} accounts[] = {{"a\0b", 3}, {"a\0c", 3}, {"a", 1}, {"a\0", 2}};
	const size_t n = sizeof(accounts) / sizeof(accounts[0]);
	for (size_t i = 0; i < n; i++) {
		bkv_record r;
		make_record(&r, (const uint8_t *)accounts[i].id, accounts[i].len);
		r.record_version = 100 + i;
		assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_OK);
	}
	for (size_t i = 0; i < n; i++) {
		const bkv_record r = get_ok(f, (const uint8_t *)accounts[i].id, accounts[i].len);
		assert_int_equal(r.record_version, 100 + i);
	}
	assert_int_equal(count_with(f, 1), n);
}

static void test_insert_over_an_existing_account_is_exists_and_changes_nothing(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	advance_ok(f, LIT("alice"));
	raw_sql(f, "UPDATE records SET updated_at = 1"); /* "unchanged" is visible in 1 s */
	const bkv_record before = get_ok(f, LIT("alice"));

	bkv_record other;
	make_record(&other, LIT("alice"));
	other.suite = 9;
	other.record_version = 2;
	other.seal_key_version = 5;
	memset(other.mac, 0x77, other.mac_len);
	assert_int_equal(bkv_storage_insert(f->s, &other), BKV_STORAGE_EXISTS);
	other.state = 2; /* nor a tombstone */
	other.seal_key_version = 0;
	other.sealed_len = 0;
	assert_int_equal(bkv_storage_insert(f->s, &other), BKV_STORAGE_EXISTS);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	assert_int_equal(count_with(f, 5), 0);
}

static void test_insert_rejects_bad_arguments_and_stores_nothing(void **state)
{
	fx *f = *state;
	bkv_record good, r;
	make_record(&good, LIT("alice"));

	assert_int_equal(bkv_storage_insert(f->s, NULL), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_insert(NULL, &good), BKV_STORAGE_ARGUMENT);
	r = good;
	r.account_id_len = 0;
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.account_id_len = BKV_STORAGE_ACCOUNT_MAX + 1;
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.sealed_len = BKV_STORAGE_SEALED_MAX + 1;
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.registration_id_len = BKV_STORAGE_REG_ID_MAX + 1;
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.mac_len = BKV_STORAGE_MAC_MAX + 1;
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.record_version = (uint64_t)INT64_MAX + 1;
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.guess_seq = UINT64_MAX;
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_ARGUMENT);
	r = good;
	r.last_finished_seq = (uint64_t)INT64_MAX + 1;
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_ARGUMENT);

	bkv_record out;
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &out), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(count_with(f, good.seal_key_version), 0);
	assert_int_equal(bkv_storage_insert(f->s, &good), BKV_STORAGE_OK); /* the good one works */
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

/* ------------------------------------------------------------------------------------ */
/* Stored values that do not fit their field                                             */
/* ------------------------------------------------------------------------------------ */

/* SQL for a blob of n zero bytes, on the backend under test. */
static void zero_blob_sql(char *buf, size_t cap, size_t n)
{
	if (on_pg) {
		snprintf(buf, cap, "decode(repeat('00', %zu), 'hex')", n);
	} else {
		snprintf(buf, cap, "zeroblob(%zu)", n);
	}
}

/* "column = value" assignments that put a value into a row that no bkv_record field can
 * hold: below zero, above UINT32_MAX for the 32-bit fields, blobs longer than their
 * buffer; on SQLite also a value of the wrong type. Each fills set (cap bytes); false
 * past the last one. */
static bool misfit(size_t i, char *set, size_t cap)
{
	static const char *const numbers[] = {
	    "attempts_used = -1",
	    "attempts_used = 1099511627776", /* 2^40 */
	    "suite = 8589934592",            /* 2^33 */
	    "state = 4294967296",            /* 2^32 */
	    "attempt_limit = -5",
	    "seal_key_version = 4294967296",
	    "record_version = -1",
	    "guess_seq = -1",
	    "last_finished_seq = -9223372036854775807",
	};
	static const struct {
		const char *column;
		size_t len;
	} blobs[] = {{"sealed", BKV_STORAGE_SEALED_MAX + 1},
	             {"registration_id", BKV_STORAGE_REG_ID_MAX + 1},
	             {"mac", BKV_STORAGE_MAC_MAX + 1}};
	static const char *const sqlite_types[] = {"attempts_used = 'three'", "suite = 2.5",
	                                           "sealed = 42", "mac = 'text'"};
	const size_t n_numbers = sizeof(numbers) / sizeof(numbers[0]);
	const size_t n_blobs = sizeof(blobs) / sizeof(blobs[0]);
	const size_t n_types = on_pg ? 0 : sizeof(sqlite_types) / sizeof(sqlite_types[0]);
	if (i < n_numbers) {
		snprintf(set, cap, "%s", numbers[i]);
		return true;
	}
	i -= n_numbers;
	if (i < n_blobs) {
		char blob[64];
		zero_blob_sql(blob, sizeof(blob), blobs[i].len);
		snprintf(set, cap, "%s = %s", blobs[i].column, blob);
		return true;
	}
	i -= n_blobs;
	if (i < n_types) {
		snprintf(set, cap, "%s", sqlite_types[i]);
		return true;
	}
	return false;
}

static void test_get_of_a_row_with_a_value_that_does_not_fit_is_corrupt(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("bob"));
	const bkv_record bob = get_ok(f, LIT("bob"));
	char set[128], sql[256];
	size_t cases = 0;
	for (; misfit(cases, set, sizeof(set)); cases++) {
		insert_new(f, LIT("alice"));
		snprintf(sql, sizeof(sql), "UPDATE records SET %s WHERE account_id <> %s", set,
		         on_pg ? "'\\x626f62'" : "x'626f62'");
		raw_sql(f, sql);
		bkv_record out, nothing;
		memset(&out, 0, sizeof(out));
		memset(&nothing, 0, sizeof(nothing));
		const bkv_storage_err err = bkv_storage_get(f->s, LIT("alice"), &out);
		if (err != BKV_STORAGE_CORRUPT) {
			fail_msg("%s: get answered %s", set, bkv_storage_strerror(err));
		}
		assert_memory_equal(&out, &nothing, sizeof(out)); /* nothing of the row */
		assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
	}
	print_message("%zu values that do not fit\n", cases);
	/* only the row that does not fit */
	const bkv_record after = get_ok(f, LIT("bob"));
	assert_same_record(&bob, &after);
}

static void test_list_sealed_below_of_a_row_that_does_not_fit_is_corrupt(void **state)
{
	fx *f = *state;
	char too_long[96], blob[64];
	zero_blob_sql(blob, sizeof(blob), BKV_STORAGE_ACCOUNT_MAX + 1);
	snprintf(too_long, sizeof(too_long), "account_id = %s", blob);
	const char *const sets[] = {"suite = 8589934592", too_long};
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		raw_sql(f, "DELETE FROM records");
		insert_new(f, LIT("a"));
		char sql[160];
		snprintf(sql, sizeof(sql), "UPDATE records SET %s", sets[i]);
		raw_sql(f, sql);
		bkv_record page[2];
		size_t count = 0;
		const bkv_storage_err err =
		    bkv_storage_list_sealed_below(f->s, 2, NULL, 0, page, 2, &count);
		if (err != BKV_STORAGE_CORRUPT) {
			fail_msg("%s: list answered %s", sets[i], bkv_storage_strerror(err));
		}
	}
}

/* update compares the MAC only: a row that does not fit is STALE to any other MAC, and
 * is written over whole by its own. */
static void test_update_of_a_row_that_does_not_fit_is_stale_unless_the_mac_matches(void **state)
{
	fx *f = *state;
	const bkv_record in = insert_new(f, LIT("alice"));
	raw_sql(f, "UPDATE records SET attempts_used = -1");
	bkv_record n = next_state(&in);
	const uint8_t other[8] = {9, 9, 9, 9, 9, 9, 9, 9};
	assert_int_equal(bkv_storage_update(f->s, &n, other, sizeof(other)), BKV_STORAGE_STALE);
	bkv_record out;
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &out), BKV_STORAGE_CORRUPT);
	assert_int_equal(bkv_storage_update(f->s, &n, in.mac, in.mac_len), BKV_STORAGE_OK);
	out = get_ok(f, LIT("alice"));
	assert_same_state(&n, &out);
}

/* ------------------------------------------------------------------------------------ */
/* update: compare-and-set on the stored MAC                                             */
/* ------------------------------------------------------------------------------------ */

/* Every field but account_id is written as given - absolute values, lower ones too - and
 * updated_at is set to now. */
static void test_update_with_the_stored_mac_writes_every_field(void **state)
{
	fx *f = *state;
	bkv_record in;
	make_record(&in, LIT("alice"));
	in.attempts_used = 5;
	in.guess_seq = 9;
	set_counter_mac(&in);
	assert_int_equal(bkv_storage_insert(f->s, &in), BKV_STORAGE_OK);
	raw_sql(f, "UPDATE records SET updated_at = 1");

	bkv_record n = in;
	n.suite = 3;
	n.state = 7;
	n.record_version = 2;
	n.registration_id_len = BKV_STORAGE_REG_ID_MAX;
	memset(n.registration_id, 0x42, n.registration_id_len);
	n.attempts_used = 0;
	n.attempt_limit = 20;
	n.guess_seq = 10;
	n.last_finished_seq = 10;
	n.seal_key_version = 4;
	n.sealed_len = 17;
	memset(n.sealed, 0x5A, n.sealed_len);
	n.registered_at = 1700000999;
	n.destroyed_at = 1700001000;
	n.updated_at = 5;
	n.mac_len = BKV_STORAGE_MAC_MAX;
	memset(n.mac, 0xC3, n.mac_len);
	const int64_t before = (int64_t)time(NULL);
	assert_int_equal(bkv_storage_update(f->s, &n, in.mac, in.mac_len), BKV_STORAGE_OK);
	const int64_t after = (int64_t)time(NULL);
	const bkv_record out = get_ok(f, LIT("alice"));
	assert_same_state(&n, &out);
	assert_time_between(out.updated_at, before, after);

	/* down to a tombstone, from the MAC just written */
	bkv_record t = n;
	t.state = 2;
	t.seal_key_version = 0;
	t.sealed_len = 0;
	t.registration_id_len = 0;
	set_counter_mac(&t);
	assert_int_equal(bkv_storage_update(f->s, &t, n.mac, n.mac_len), BKV_STORAGE_OK);
	const bkv_record tomb = get_ok(f, LIT("alice"));
	assert_same_state(&t, &tomb);
	assert_int_equal(count_with(f, 4), 0);
}

static void test_update_with_another_mac_is_stale_and_changes_nothing(void **state)
{
	fx *f = *state;
	const bkv_record first = insert_new(f, LIT("alice"));
	const bkv_record before = advance_ok(f, LIT("alice"));
	raw_sql(f, "UPDATE records SET updated_at = 1");
	const bkv_record stored = get_ok(f, LIT("alice"));
	const bkv_record n = next_state(&before);
	uint8_t longer[9];
	memcpy(longer, before.mac, 8);
	longer[8] = 0;
	const bkv_record later = next_state(&n);
	const struct {
		const char *what;
		const uint8_t *mac;
		size_t len;
	} wrong[] = {
	    {"the MAC it had before", first.mac, first.mac_len},
	    {"a MAC it never had", later.mac, later.mac_len},
	    {"a prefix of its MAC", before.mac, before.mac_len - 1},
	    {"its MAC and one byte more", longer, sizeof(longer)},
	    {"no MAC", NULL, 0},
	};
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		const bkv_storage_err err =
		    bkv_storage_update(f->s, &n, wrong[i].mac, wrong[i].len);
		if (err != BKV_STORAGE_STALE) {
			fail_msg("update from %s answered %s", wrong[i].what,
			         bkv_storage_strerror(err));
		}
	}
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&stored, &after);
}

static void test_update_of_a_missing_account_is_not_found_and_creates_nothing(void **state)
{
	fx *f = *state;
	bkv_record n, out;
	make_record(&n, LIT("nobody"));
	assert_int_equal(bkv_storage_update(f->s, &n, n.mac, n.mac_len), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_update(f->s, &n, NULL, 0), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_get(f->s, LIT("nobody"), &out), BKV_STORAGE_NOT_FOUND);

	const bkv_record alice = insert_new(f, LIT("alice"));
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
	const bkv_record next = next_state(&alice);
	assert_int_equal(bkv_storage_update(f->s, &next, alice.mac, alice.mac_len),
	                 BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &out), BKV_STORAGE_NOT_FOUND);
}

/* expected_mac_len 0 stands for "the row has no MAC yet" (a row from before MACs), and
 * matches such a row only. */
static void test_update_with_no_expected_mac_matches_only_a_row_without_a_mac(void **state)
{
	fx *f = *state;
	bkv_record legacy;
	make_record(&legacy, LIT("legacy"));
	legacy.mac_len = 0;
	assert_int_equal(bkv_storage_insert(f->s, &legacy), BKV_STORAGE_OK);
	const bkv_record with_mac = insert_new(f, LIT("alice"));

	const bkv_record alice_next = next_state(&with_mac);
	assert_int_equal(bkv_storage_update(f->s, &alice_next, NULL, 0), BKV_STORAGE_STALE);
	const bkv_record alice_after = get_ok(f, LIT("alice"));
	assert_same_state(&with_mac, &alice_after);

	const bkv_record legacy_next = next_state(&legacy); /* its first MAC */
	const uint8_t unused[1] = {0};
	assert_int_equal(bkv_storage_update(f->s, &legacy_next, unused, 0), BKV_STORAGE_OK);
	const bkv_record legacy_after = get_ok(f, LIT("legacy"));
	assert_same_state(&legacy_next, &legacy_after);
	/* and, having one now, "no MAC" no longer matches it */
	const bkv_record again = next_state(&legacy_next);
	assert_int_equal(bkv_storage_update(f->s, &again, NULL, 0), BKV_STORAGE_STALE);
}

static void test_two_updates_from_the_same_mac_succeed_once(void **state)
{
	fx *f = *state;
	const bkv_record r = insert_new(f, LIT("alice"));
	const bkv_record first = next_state(&r);
	bkv_record second = next_state(&r);
	second.state = 2; /* another successor of the same row */
	memset(second.mac, 0x99, second.mac_len);
	assert_int_equal(bkv_storage_update(f->s, &first, r.mac, r.mac_len), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_update(f->s, &second, r.mac, r.mac_len), BKV_STORAGE_STALE);
	const bkv_record out = get_ok(f, LIT("alice"));
	assert_same_state(&first, &out);
}

static void test_update_changes_only_its_own_account(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	insert_new(f, LIT("bob")); /* the same MAC as alice's */
	const bkv_record bob = get_ok(f, LIT("bob"));
	advance_ok(f, LIT("alice"));
	advance_ok(f, LIT("alice"));
	const bkv_record after = get_ok(f, LIT("bob"));
	assert_same_record(&bob, &after);
}

static void test_update_rejects_bad_arguments_and_changes_nothing(void **state)
{
	fx *f = *state;
	const bkv_record stored = insert_new(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	const bkv_record good = next_state(&stored);
	const uint8_t *mac = stored.mac;
	const size_t mac_len = stored.mac_len;
	bkv_record r;

	assert_int_equal(bkv_storage_update(NULL, &good, mac, mac_len), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_update(f->s, NULL, mac, mac_len), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_update(f->s, &good, NULL, mac_len), BKV_STORAGE_ARGUMENT);
	uint8_t long_mac[BKV_STORAGE_MAC_MAX + 1];
	memset(long_mac, 0, sizeof(long_mac));
	assert_int_equal(bkv_storage_update(f->s, &good, long_mac, sizeof(long_mac)),
	                 BKV_STORAGE_ARGUMENT);
	r = good;
	r.account_id_len = 0;
	assert_int_equal(bkv_storage_update(f->s, &r, mac, mac_len), BKV_STORAGE_ARGUMENT);
	r = good;
	r.account_id_len = BKV_STORAGE_ACCOUNT_MAX + 1;
	assert_int_equal(bkv_storage_update(f->s, &r, mac, mac_len), BKV_STORAGE_ARGUMENT);
	r = good;
	r.sealed_len = BKV_STORAGE_SEALED_MAX + 1;
	assert_int_equal(bkv_storage_update(f->s, &r, mac, mac_len), BKV_STORAGE_ARGUMENT);
	r = good;
	r.registration_id_len = BKV_STORAGE_REG_ID_MAX + 1;
	assert_int_equal(bkv_storage_update(f->s, &r, mac, mac_len), BKV_STORAGE_ARGUMENT);
	r = good;
	r.mac_len = BKV_STORAGE_MAC_MAX + 1;
	assert_int_equal(bkv_storage_update(f->s, &r, mac, mac_len), BKV_STORAGE_ARGUMENT);
	r = good;
	r.record_version = (uint64_t)INT64_MAX + 1;
	assert_int_equal(bkv_storage_update(f->s, &r, mac, mac_len), BKV_STORAGE_ARGUMENT);
	r = good;
	r.guess_seq = (uint64_t)INT64_MAX + 1;
	assert_int_equal(bkv_storage_update(f->s, &r, mac, mac_len), BKV_STORAGE_ARGUMENT);
	r = good;
	r.last_finished_seq = UINT64_MAX;
	assert_int_equal(bkv_storage_update(f->s, &r, mac, mac_len), BKV_STORAGE_ARGUMENT);

	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	assert_int_equal(bkv_storage_update(f->s, &good, mac, mac_len), BKV_STORAGE_OK);
}

/* ------------------------------------------------------------------------------------ */
/* delete                                                                                */
/* ------------------------------------------------------------------------------------ */

static void test_delete_removes_the_record(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	insert_new(f, LIT("bob"));
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &r), BKV_STORAGE_NOT_FOUND);
	get_ok(f, LIT("bob"));
	reopen(f);
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &r), BKV_STORAGE_NOT_FOUND);
	insert_new(f, LIT("alice")); /* the account can be registered again */
}

static void test_delete_of_a_missing_account_is_not_found(void **state)
{
	fx *f = *state;
	assert_int_equal(bkv_storage_delete(f->s, LIT("nobody")), BKV_STORAGE_NOT_FOUND);
	insert_new(f, LIT("alice"));
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_NOT_FOUND);
}

static void test_the_other_calls_reject_bad_arguments_and_change_nothing(void **state)
{
	fx *f = *state;
	uint8_t big[BKV_STORAGE_ACCOUNT_MAX + 1];
	memset(big, 'a', sizeof(big));
	const bkv_record stored = insert_new(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	const uint64_t v = stored.record_version;
	const uint8_t *mac = stored.mac;
	const size_t mac_len = stored.mac_len;
	bkv_record recs[2];
	size_t count;
	uint8_t sealed[BKV_STORAGE_SEALED_MAX + 1] = {0};
	uint8_t long_mac[BKV_STORAGE_MAC_MAX + 1] = {0};

	assert_int_equal(bkv_storage_delete(NULL, LIT("alice")), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_delete(f->s, LIT("")), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_delete(f->s, big, sizeof(big)), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_delete(f->s, NULL, 5), BKV_STORAGE_ARGUMENT);

	assert_int_equal(bkv_storage_list_sealed_below(NULL, 9, NULL, 0, recs, 2, &count),
	                 BKV_STORAGE_ARGUMENT);
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

	assert_int_equal(bkv_storage_reseal(NULL, LIT("alice"), v, mac, mac_len, 2, sealed, 16),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, LIT(""), v, mac, mac_len, 2, sealed, 16),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, big, sizeof(big), v, mac, mac_len, 2, sealed, 16),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), v, mac, mac_len, 2, sealed, 0),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(
	    bkv_storage_reseal(f->s, LIT("alice"), v, mac, mac_len, 2, sealed, sizeof(sealed)),
	    BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), v, mac, mac_len, 2, NULL, 16),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), v, NULL, mac_len, 2, sealed, 16),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(
	    bkv_storage_reseal(f->s, LIT("alice"), v, long_mac, sizeof(long_mac), 2, sealed, 16),
	    BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), (uint64_t)INT64_MAX + 1, mac,
	                                    mac_len, 2, sealed, 16),
	                 BKV_STORAGE_ARGUMENT);

	uint64_t n;
	assert_int_equal(bkv_storage_count_sealed_with(f->s, 1, NULL), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_count_sealed_with(NULL, 1, &n), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_count_sealed_below(f->s, 2, NULL), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_count_sealed_below(NULL, 2, &n), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_raise_seal_floor(NULL, 2), BKV_STORAGE_ARGUMENT);

	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

/* ------------------------------------------------------------------------------------ */
/* Re-sealing                                                                            */
/* ------------------------------------------------------------------------------------ */

typedef struct keyed_account {
	const char *id;
	size_t len;
	uint32_t seal_key_version; /* 0: a tombstone, nothing sealed */
} keyed_account;

#define ACCT(s, k)                                                                                 \
	{                                                                                          \
		(s), sizeof(s) - 1, (k)                                                            \
	}

static void insert_with_key(fx *f, const keyed_account *a)
{
	bkv_record r;
	make_record(&r, (const uint8_t *)a->id, a->len);
	r.seal_key_version = a->seal_key_version;
	if (a->seal_key_version == 0) {
		r.state = 2;
		r.sealed_len = 0;
	}
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_OK);
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
		insert_with_key(f, &accts[i]);
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
		insert_with_key(f, &accts[i]);
	}
	bkv_record seen[8];
	assert_int_equal(list_all(f, 0, 2, seen, 8), 0);
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

/* seal_key_version 0 is a tombstone: nothing is sealed, so nothing is to be re-sealed. */
static void test_list_sealed_below_skips_tombstones(void **state)
{
	fx *f = *state;
	const keyed_account accts[] = {ACCT("a", 0), ACCT("b", 1), ACCT("c", 0), ACCT("d", 2)};
	for (size_t i = 0; i < sizeof(accts) / sizeof(accts[0]); i++) {
		insert_with_key(f, &accts[i]);
	}
	const uint32_t bounds[] = {3, UINT32_MAX};
	for (size_t i = 0; i < 2; i++) {
		bkv_record seen[8];
		assert_int_equal(list_all(f, bounds[i], 1, seen, 8), 2);
		assert_memory_equal(seen[0].account_id, "b", 1);
		assert_memory_equal(seen[1].account_id, "d", 1);
	}
	assert_int_equal(count_with(f, 0), 2); /* they are there */
}

static void test_list_sealed_below_resumes_after_an_account_that_is_gone(void **state)
{
	fx *f = *state;
	const keyed_account accts[] = {ACCT("a", 1), ACCT("b", 1), ACCT("c", 1), ACCT("d", 1)};
	for (size_t i = 0; i < 4; i++) {
		insert_with_key(f, &accts[i]);
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

/* The blob and its key version change; the MAC does not (it does not cover them), so the
 * row can still be updated from the MAC it had. */
static void test_reseal_replaces_the_blob_and_key_version_and_keeps_the_mac(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	advance_ok(f, LIT("alice"));
	raw_sql(f, "UPDATE records SET updated_at = 1");
	const bkv_record before = get_ok(f, LIT("alice"));
	uint8_t blob[BKV_STORAGE_SEALED_MAX];
	for (size_t i = 0; i < sizeof(blob); i++) {
		blob[i] = (uint8_t)(i ^ 0x3C);
	}
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), before.record_version, before.mac,
	                                    before.mac_len, 2, blob, sizeof(blob)),
	                 BKV_STORAGE_OK);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_int_equal(after.seal_key_version, 2);
	assert_int_equal(after.sealed_len, sizeof(blob));
	assert_memory_equal(after.sealed, blob, sizeof(blob));
	assert_true(after.updated_at > 1);
	/* the row is otherwise the same */
	bkv_record expected = before;
	expected.seal_key_version = 2;
	expected.sealed_len = sizeof(blob);
	memcpy(expected.sealed, blob, sizeof(blob));
	assert_same_state(&expected, &after);
	const bkv_record n = next_state(&after);
	assert_int_equal(bkv_storage_update(f->s, &n, before.mac, before.mac_len), BKV_STORAGE_OK);
}

static void test_reseal_with_another_record_version_is_stale_and_changes_nothing(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	const uint8_t blob[16] = {1, 2, 3};
	const uint64_t others[] = {before.record_version - 1, before.record_version + 1};
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), others[i], before.mac,
		                                    before.mac_len, 2, blob, sizeof(blob)),
		                 BKV_STORAGE_STALE);
	}
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

static void test_reseal_with_another_mac_is_stale_and_changes_nothing(void **state)
{
	fx *f = *state;
	const bkv_record first = insert_new(f, LIT("alice"));
	const bkv_record before = advance_ok(f, LIT("alice"));
	const uint8_t blob[16] = {1, 2, 3};
	const struct {
		const uint8_t *mac;
		size_t len;
	} wrong[] = {{first.mac, first.mac_len}, {before.mac, before.mac_len - 1}, {NULL, 0}};
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), before.record_version,
		                                    wrong[i].mac, wrong[i].len, 2, blob,
		                                    sizeof(blob)),
		                 BKV_STORAGE_STALE);
	}
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
}

static void test_reseal_of_a_row_without_a_mac_takes_no_mac(void **state)
{
	fx *f = *state;
	bkv_record legacy;
	make_record(&legacy, LIT("legacy"));
	legacy.mac_len = 0;
	assert_int_equal(bkv_storage_insert(f->s, &legacy), BKV_STORAGE_OK);
	const uint8_t blob[16] = {4, 5, 6};
	const bkv_record some = insert_new(f, LIT("alice")); /* a MAC it does not have */
	assert_int_equal(bkv_storage_reseal(f->s, LIT("legacy"), legacy.record_version, some.mac,
	                                    some.mac_len, 2, blob, sizeof(blob)),
	                 BKV_STORAGE_STALE);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("legacy"), legacy.record_version, NULL, 0, 2,
	                                    blob, sizeof(blob)),
	                 BKV_STORAGE_OK);
	const bkv_record after = get_ok(f, LIT("legacy"));
	assert_int_equal(after.seal_key_version, 2);
	assert_memory_equal(after.sealed, blob, sizeof(blob));
	assert_int_equal(after.mac_len, 0);
}

static void test_reseal_of_a_missing_account_is_stale_and_creates_nothing(void **state)
{
	fx *f = *state;
	const uint8_t blob[16] = {1, 2, 3};
	const uint8_t mac[8] = {0};
	assert_int_equal(
	    bkv_storage_reseal(f->s, LIT("nobody"), 1, mac, sizeof(mac), 2, blob, sizeof(blob)),
	    BKV_STORAGE_STALE);
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("nobody"), &r), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(count_with(f, 2), 0);
}

/* ------------------------------------------------------------------------------------ */
/* Named blobs                                                                           */
/* ------------------------------------------------------------------------------------ */

static void assert_blob(fx *f, const char *name, const uint8_t *want, size_t want_len)
{
	uint8_t got[BKV_STORAGE_BLOB_MAX];
	size_t len = 0;
	assert_int_equal(bkv_storage_blob_get(f->s, name, got, sizeof(got), &len), BKV_STORAGE_OK);
	assert_int_equal(len, want_len);
	assert_memory_equal(got, want, want_len);
}

static void test_blobs_are_created_once_and_replaced_only_by_compare_and_set(void **state)
{
	fx *f = *state;
	static const uint8_t a[] = {0x00, 0x01, 0x02, 0x00}, b[] = {0xb0, 0x0b}, c[] = {0xcc};
	uint8_t out[BKV_STORAGE_BLOB_MAX];
	size_t len;
	assert_int_equal(bkv_storage_blob_get(f->s, "k", out, sizeof(out), &len),
	                 BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_blob_put(f->s, "k", a, sizeof(a), b, sizeof(b)),
	                 BKV_STORAGE_NOT_FOUND); /* nothing to replace: nothing created */
	assert_int_equal(bkv_storage_blob_get(f->s, "k", out, sizeof(out), &len),
	                 BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_blob_put(f->s, "k", NULL, 0, a, sizeof(a)), BKV_STORAGE_OK);
	assert_blob(f, "k", a, sizeof(a)); /* NUL bytes included */
	assert_int_equal(bkv_storage_blob_put(f->s, "k", NULL, 0, b, sizeof(b)),
	                 BKV_STORAGE_EXISTS);
	assert_int_equal(bkv_storage_blob_put(f->s, "k", c, sizeof(c), b, sizeof(b)),
	                 BKV_STORAGE_STALE);
	assert_int_equal(bkv_storage_blob_put(f->s, "k", a, sizeof(a) - 1, b, sizeof(b)),
	                 BKV_STORAGE_STALE); /* a prefix of the value is another value */
	assert_blob(f, "k", a, sizeof(a));
	assert_int_equal(bkv_storage_blob_put(f->s, "k", a, sizeof(a), b, sizeof(b)),
	                 BKV_STORAGE_OK);
	assert_blob(f, "k", b, sizeof(b));
	/* Names are distinct, and the blobs outlive the connection. */
	assert_int_equal(bkv_storage_blob_put(f->s, "k2", NULL, 0, c, sizeof(c)), BKV_STORAGE_OK);
	reopen(f);
	assert_blob(f, "k", b, sizeof(b));
	assert_blob(f, "k2", c, sizeof(c));
	assert_int_equal(bkv_storage_blob_get(f->s, "k", out, 1, &len), BKV_STORAGE_CORRUPT);
	assert_int_equal(bkv_storage_blob_delete(f->s, "k"), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_blob_delete(f->s, "k"), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_blob_get(f->s, "k", out, sizeof(out), &len),
	                 BKV_STORAGE_NOT_FOUND);
	assert_blob(f, "k2", c, sizeof(c));
	/* Records are untouched by blobs, and the other way round. */
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("k2"), &r), BKV_STORAGE_NOT_FOUND);
}

static void test_blob_calls_reject_bad_arguments_and_change_nothing(void **state)
{
	fx *f = *state;
	static uint8_t big[BKV_STORAGE_BLOB_MAX + 1];
	char long_name[BKV_STORAGE_BLOB_NAME_MAX + 2];
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	uint8_t out[8];
	size_t len;
	static const uint8_t v[] = {1};
	assert_int_equal(bkv_storage_blob_put(f->s, "", NULL, 0, v, 1), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_put(f->s, NULL, NULL, 0, v, 1), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_put(f->s, long_name, NULL, 0, v, 1),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_put(f->s, "k", NULL, 0, v, 0), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_put(f->s, "k", NULL, 0, NULL, 1), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_put(f->s, "k", NULL, 0, big, sizeof(big)),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_put(f->s, "k", v, 0, v, 1), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_put(NULL, "k", NULL, 0, v, 1), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_get(f->s, long_name, out, sizeof(out), &len),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_get(f->s, "k", NULL, sizeof(out), &len),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_blob_delete(f->s, ""), BKV_STORAGE_ARGUMENT);
	/* A name of the maximum length works. */
	long_name[BKV_STORAGE_BLOB_NAME_MAX] = '\0';
	assert_int_equal(bkv_storage_blob_put(f->s, long_name, NULL, 0, v, 1), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_blob_get(f->s, "k", out, sizeof(out), &len),
	                 BKV_STORAGE_NOT_FOUND);
}

static void test_count_sealed_with_counts_records_per_key_version(void **state)
{
	fx *f = *state;
	assert_int_equal(count_with(f, 1), 0);
	const keyed_account accts[] = {ACCT("a", 1), ACCT("b", 3), ACCT("c", 1), ACCT("d", 1),
	                               ACCT("e", 0)};
	for (size_t i = 0; i < sizeof(accts) / sizeof(accts[0]); i++) {
		insert_with_key(f, &accts[i]);
	}
	assert_int_equal(count_with(f, 1), 3);
	assert_int_equal(count_with(f, 3), 1);
	assert_int_equal(count_with(f, 2), 0);
	assert_int_equal(count_with(f, 0), 1);
	const bkv_record c = get_ok(f, LIT("c"));
	assert_int_equal(bkv_storage_reseal(f->s, LIT("c"), c.record_version, c.mac, c.mac_len, 3,
	                                    c.sealed, c.sealed_len),
	                 BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_delete(f->s, LIT("a")), BKV_STORAGE_OK);
	assert_int_equal(count_with(f, 1), 1);
	assert_int_equal(count_with(f, 3), 2);
}

static uint64_t count_below(fx *f, uint32_t min_version)
{
	uint64_t n = UINT64_MAX;
	assert_int_equal(bkv_storage_count_sealed_below(f->s, min_version, &n), BKV_STORAGE_OK);
	return n;
}

static void test_count_sealed_below_counts_records_under_older_versions(void **state)
{
	fx *f = *state;
	const keyed_account accts[] = {ACCT("a", 1), ACCT("b", 3), ACCT("c", 2), ACCT("d", 1),
	                               ACCT("e", 0)};
	for (size_t i = 0; i < sizeof(accts) / sizeof(accts[0]); i++) {
		insert_with_key(f, &accts[i]);
	}
	assert_int_equal(count_below(f, 0), 0);
	assert_int_equal(count_below(f, 1), 0); /* the tombstone is sealed under nothing */
	assert_int_equal(count_below(f, 2), 2);
	assert_int_equal(count_below(f, 3), 3);
	assert_int_equal(count_below(f, 4), 4);
	assert_int_equal(count_below(f, UINT32_MAX), 4);
}

/* ------------------------------------------------------------------------------------ */
/* The seal floor                                                                        */
/* ------------------------------------------------------------------------------------ */

static void test_seal_floor_is_read_back_and_never_lowered(void **state)
{
	fx *f = *state;
	uint32_t floor = 99;
	assert_int_equal(bkv_storage_seal_floor(f->s, &floor), BKV_STORAGE_OK);
	assert_int_equal(floor, 0);
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 3), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 2), BKV_STORAGE_OK);
	reopen(f);
	assert_int_equal(bkv_storage_seal_floor(f->s, &floor), BKV_STORAGE_OK);
	assert_int_equal(floor, 3);
	assert_int_equal(bkv_storage_seal_floor(f->s, NULL), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_seal_floor(NULL, &floor), BKV_STORAGE_ARGUMENT);
}

static void test_seal_floor_refuses_inserting_a_record_sealed_below_it(void **state)
{
	fx *f = *state;
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 3), BKV_STORAGE_OK);
	for (uint32_t version = 1; version < 3; version++) {
		const bkv_record below = sealed_under(LIT("alice"), version);
		assert_int_equal(bkv_storage_insert(f->s, &below), BKV_STORAGE_SEAL_FLOOR);
		bkv_record out;
		assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &out), BKV_STORAGE_NOT_FOUND);
	}
	const bkv_record at = sealed_under(LIT("alice"), 3);
	const bkv_record above = sealed_under(LIT("bob"), 4);
	assert_int_equal(bkv_storage_insert(f->s, &at), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_insert(f->s, &above), BKV_STORAGE_OK);
	insert_with_key(f, &(keyed_account)ACCT("carol", 0)); /* a tombstone seals nothing */
	const bkv_record got = get_ok(f, LIT("alice"));
	assert_same_state(&at, &got);
}

static void test_seal_floor_refuses_an_update_that_gives_a_row_a_blob_below_it(void **state)
{
	fx *f = *state;
	const bkv_record v1 = insert_new(f, LIT("alice"));
	assert_int_equal(v1.seal_key_version, 1);
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 3), BKV_STORAGE_OK);
	/* a new blob under version 1 (a registration sealed with a retired key) ... */
	bkv_record next = next_state(&v1);
	next.sealed[0] ^= 0xff;
	assert_int_equal(bkv_storage_update(f->s, &next, v1.mac, v1.mac_len),
	                 BKV_STORAGE_SEAL_FLOOR);
	/* ... or the same blob relabelled with another version below the floor */
	next = next_state(&v1);
	next.seal_key_version = 2;
	assert_int_equal(bkv_storage_update(f->s, &next, v1.mac, v1.mac_len),
	                 BKV_STORAGE_SEAL_FLOOR);
	const bkv_record unchanged = get_ok(f, LIT("alice"));
	assert_same_state(&v1, &unchanged);
	/* at the floor it goes through */
	const bkv_record resealed = sealed_under(LIT("alice"), 3);
	const bkv_record at = next_state(&resealed);
	assert_int_equal(bkv_storage_update(f->s, &at, v1.mac, v1.mac_len), BKV_STORAGE_OK);
	const bkv_record got = get_ok(f, LIT("alice"));
	assert_same_state(&at, &got);
}

static void test_seal_floor_lets_a_row_below_it_keep_its_blob_and_become_a_tombstone(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 2), BKV_STORAGE_OK);
	/* counters change, the blob under version 1 stays: allowed */
	const bkv_record counted = advance_ok(f, LIT("alice"));
	assert_int_equal(counted.seal_key_version, 1);
	assert_int_equal(counted.attempts_used, 1);
	assert_int_equal(count_below(f, 2), 1);
	/* destroyed: nothing sealed any more */
	bkv_record tomb = next_state(&counted);
	tomb.state = 2;
	tomb.seal_key_version = 0;
	tomb.sealed_len = 0;
	assert_int_equal(bkv_storage_update(f->s, &tomb, counted.mac, counted.mac_len),
	                 BKV_STORAGE_OK);
	assert_int_equal(count_below(f, 2), 0);
}

static void test_seal_floor_refuses_a_reseal_below_it(void **state)
{
	fx *f = *state;
	const bkv_record r = insert_new(f, LIT("alice"));
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 3), BKV_STORAGE_OK);
	const uint8_t blob[16] = {7, 7, 7};
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), r.record_version, r.mac, r.mac_len,
	                                    2, blob, sizeof(blob)),
	                 BKV_STORAGE_SEAL_FLOOR);
	const bkv_record unchanged = get_ok(f, LIT("alice"));
	assert_same_state(&r, &unchanged);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), r.record_version, r.mac, r.mac_len,
	                                    3, blob, sizeof(blob)),
	                 BKV_STORAGE_OK);
	assert_int_equal(get_ok(f, LIT("alice")).seal_key_version, 3);
}

static void test_seal_floor_never_lowers_and_survives_reopening(void **state)
{
	fx *f = *state;
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 5), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 2), BKV_STORAGE_OK);
	reopen(f);
	const bkv_record below = sealed_under(LIT("alice"), 4);
	const bkv_record at = sealed_under(LIT("alice"), 5);
	assert_int_equal(bkv_storage_insert(f->s, &below), BKV_STORAGE_SEAL_FLOOR);
	assert_int_equal(bkv_storage_insert(f->s, &at), BKV_STORAGE_OK);
}

typedef struct fence_arg {
	const char *url;
	int out; /* pipe for the reports */
} fence_arg;

/* Child 0, the operator: how many rows it counted below version 2 right after raising the
 * floor to 2. The writers: how many rows under version 1 they committed, and why their
 * last insert failed. */
typedef struct fence_report {
	int index;
	uint64_t rows;
	bkv_storage_err last;
} fence_report;

/* Writers insert new rows sealed under version 1 as fast as they can until one is refused
 * (at most 10 s); the operator lets them run for a moment, then raises the floor to 2 and
 * counts what is below it, as `bkvd delete-seal-key 1` does. */
static int child_fence(int index, void *argp)
{
	const fence_arg *a = argp;
	bkv_storage *s = child_open(a->url);
	if (s == NULL) {
		return 100;
	}
	fence_report rep = {index, 0, BKV_STORAGE_OK};
	child_ready_and_wait();
	if (index == 0) {
		const struct timespec ts = {0, 200 * 1000000L};
		nanosleep(&ts, NULL);
		/* SQLite's busy handler is not fair: seven writers can keep the lock from the
		 * operator past its busy timeout on a loaded host. Nothing was committed then,
		 * and an operator runs the command again. */
		for (int tries = 0; tries < 5; tries++) {
			rep.last = bkv_storage_raise_seal_floor(s, 2);
			if (rep.last != BKV_STORAGE_UNAVAILABLE) {
				break;
			}
		}
		if (rep.last == BKV_STORAGE_OK) {
			rep.last = bkv_storage_count_sealed_below(s, 2, &rep.rows);
		}
	} else {
		const double deadline = now_s() + 10;
		while (rep.last == BKV_STORAGE_OK && now_s() < deadline) {
			char id[32];
			const int len = snprintf(id, sizeof(id), "writer-%d-%llu", index,
			                         (unsigned long long)rep.rows);
			const bkv_record r = sealed_under((const uint8_t *)id, (size_t)len, 1);
			rep.last = bkv_storage_insert(s, &r);
			rep.rows += rep.last == BKV_STORAGE_OK;
			/* a breath between writes, so no writer starves past the busy timeout */
			const struct timespec breath = {0, 100000};
			nanosleep(&breath, NULL);
		}
	}
	bkv_storage_close(s);
	return write_full(a->out, &rep, sizeof(rep)) ? 0 : 101;
}

/* The fence `bkvd delete-seal-key` relies on: once the floor is raised, a count sees every
 * row below it that will ever be committed, across processes. A write that read the old
 * floor and committed after the count would make the final count larger. */
static void test_seal_floor_a_count_after_raising_it_sees_every_write_below_it(void **state)
{
	fx *f = *state;
	close_storage(f);
	int p[2];
	assert_int_equal(pipe(p), 0);
	fence_arg arg = {f->url, p[1]};
	int status[N_CHILDREN];
	run_children(N_CHILDREN, child_fence, &arg, status);
	close(p[1]);
	for (int i = 0; i < N_CHILDREN; i++) {
		if (status[i] != 0) {
			fail_msg("child %d failed with status %d", i, status[i]);
		}
	}
	uint64_t counted = UINT64_MAX, committed = 0;
	int reports = 0;
	fence_report rep;
	while (read_full(p[0], &rep, sizeof(rep))) {
		reports++;
		if (rep.index == 0) {
			assert_int_equal(rep.last, BKV_STORAGE_OK);
			counted = rep.rows;
			continue;
		}
		/* every writer ran into the floor (none stopped for another reason) */
		assert_int_equal(rep.last, BKV_STORAGE_SEAL_FLOOR);
		committed += rep.rows;
	}
	close(p[0]);
	assert_int_equal(reports, N_CHILDREN);
	print_message("%d writers committed %llu rows under version 1; the count after raising "
	              "the floor saw %llu\n",
	              N_CHILDREN - 1, (unsigned long long)committed, (unsigned long long)counted);
	assert_true(committed > 0);
	reopen(f);
	assert_int_equal(count_below(f, 2), committed);
	assert_int_equal(counted, committed);
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

static void test_unavailable_update_commits_nothing(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	const bkv_record n = next_state(&before);
	inject_failure(f, "UPDATE");
	assert_int_equal(bkv_storage_update(f->s, &n, before.mac, before.mac_len),
	                 BKV_STORAGE_UNAVAILABLE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	heal(f);
	/* no transaction was left open: the same write goes through, once */
	assert_int_equal(bkv_storage_update(f->s, &n, before.mac, before.mac_len), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_update(f->s, &n, before.mac, before.mac_len),
	                 BKV_STORAGE_STALE);
}

static void test_unavailable_insert_commits_nothing(void **state)
{
	fx *f = *state;
	bkv_record r;
	make_record(&r, LIT("bob"));
	inject_failure(f, "INSERT");
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_UNAVAILABLE);
	bkv_record out;
	assert_int_equal(bkv_storage_get(f->s, LIT("bob"), &out), BKV_STORAGE_NOT_FOUND);
	heal(f);
	assert_int_equal(bkv_storage_insert(f->s, &r), BKV_STORAGE_OK);
}

static void test_unavailable_delete_commits_nothing(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	inject_failure(f, "DELETE");
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_UNAVAILABLE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	heal(f);
	assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_OK);
}

static void test_unavailable_reseal_commits_nothing(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	const uint8_t blob[16] = {1, 2, 3};
	inject_failure(f, "UPDATE");
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), before.record_version, before.mac,
	                                    before.mac_len, 2, blob, sizeof(blob)),
	                 BKV_STORAGE_UNAVAILABLE);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	heal(f);
	assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), before.record_version, before.mac,
	                                    before.mac_len, 2, blob, sizeof(blob)),
	                 BKV_STORAGE_OK);
}

/* ------------------------------------------------------------------------------------ */
/* Concurrency across processes                                                          */
/* ------------------------------------------------------------------------------------ */

#define RACE_PER_CHILD 25
#define RACE_TOTAL     (N_CHILDREN * RACE_PER_CHILD)

typedef struct race_arg {
	const char *url;
	int out; /* pipe for the counter values written */
} race_arg;

/* What a racing child reports through the pipe after each successful update. */
typedef struct race_report {
	uint32_t written; /* the counter the update wrote */
	uint32_t stale;   /* STALE answers seen since the previous report */
} race_report;

/* Reads the counter and writes counter + 1 from the MAC it read, until RACE_PER_CHILD of
 * its updates succeeded. Exit code: 0, or 100+ on an error. */
static int child_race_updates(int index, void *argp)
{
	const race_arg *a = argp;
	bkv_storage *s = child_open(a->url);
	if (s == NULL) {
		return 100;
	}
	child_ready_and_wait();
	int written = 0, code = 101;
	race_report rep = {0, 0};
	const double deadline = now_s() + 15;
	while (written < RACE_PER_CHILD && now_s() < deadline) {
		bkv_record r;
		bkv_storage_err err = bkv_storage_get(s, LIT("alice"), &r);
		if (err != BKV_STORAGE_OK) {
			code = 110 + (int)err;
			break;
		}
		if (!has_counter_mac(&r)) {
			fprintf(stderr, "child %d: a torn row: counter %u\n", index,
			        r.attempts_used);
			code = 103;
			break;
		}
		const bkv_record n = next_state(&r);
		err = bkv_storage_update(s, &n, r.mac, r.mac_len);
		if (err == BKV_STORAGE_OK) {
			written++;
			rep.written = n.attempts_used;
			if (!write_full(a->out, &rep, sizeof(rep))) {
				code = 102;
				break;
			}
			rep.stale = 0;
		} else if (err == BKV_STORAGE_STALE) {
			rep.stale++;
		} else {
			fprintf(stderr, "child %d: update: %s\n", index, bkv_storage_strerror(err));
			code = 120 + (int)err;
			break;
		}
	}
	bkv_storage_close(s);
	return written == RACE_PER_CHILD ? 0 : code;
}

/* Many processes increment one counter by read -> update from the MAC read. Every value
 * of the counter is written exactly once: no increment is lost, and no two updates from
 * the same MAC both succeed. */
static void test_concurrent_read_and_update_loops_lose_no_increment(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	close_storage(f);

	int p[2];
	assert_int_equal(pipe(p), 0);
	race_arg arg = {f->url, p[1]};
	int status[N_CHILDREN];
	const double t0 = now_s();
	run_children(N_CHILDREN, child_race_updates, &arg, status);
	close(p[1]);
	for (int i = 0; i < N_CHILDREN; i++) {
		if (status[i] != 0) {
			fail_msg("child %d failed with status %d", i, status[i]);
		}
	}

	int seen[RACE_TOTAL + 1] = {0};
	race_report rep;
	int n = 0;
	unsigned long stale = 0;
	while (read_full(p[0], &rep, sizeof(rep))) {
		stale += rep.stale;
		assert_true(rep.written >= 1 && rep.written <= RACE_TOTAL);
		seen[rep.written]++;
		n++;
	}
	close(p[0]);
	print_message("%d processes, %d updates in %.3f s, %lu STALE answers retried\n", N_CHILDREN,
	              n, now_s() - t0, stale);
	assert_int_equal(n, RACE_TOTAL);
	for (int i = 1; i <= RACE_TOTAL; i++) {
		assert_int_equal(seen[i], 1);
	}

	reopen(f);
	const bkv_record r = get_ok(f, LIT("alice"));
	assert_int_equal(r.attempts_used, RACE_TOTAL);
	assert_int_equal(r.guess_seq, RACE_TOTAL);
	assert_true(has_counter_mac(&r));
}

typedef struct one_mac_arg {
	const char *url;
	bkv_record row; /* as every child read it */
} one_mac_arg;

/* Each child writes its own successor of the same row: counter = 1 + index, with its MAC.
 * Exit code: the bkv_storage_err of the update, or 100 on error. */
static int child_update_from_one_mac(int index, void *argp)
{
	const one_mac_arg *a = argp;
	bkv_storage *s = child_open(a->url);
	if (s == NULL) {
		return 100;
	}
	bkv_record n = a->row;
	n.attempts_used = 1 + (uint32_t)index;
	set_counter_mac(&n);
	child_ready_and_wait();
	const bkv_storage_err err = bkv_storage_update(s, &n, a->row.mac, a->row.mac_len);
	bkv_storage_close(s);
	return (int)err;
}

static void test_concurrent_updates_from_one_mac_succeed_exactly_once(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
	one_mac_arg arg = {f->url, get_ok(f, LIT("alice"))};
	close_storage(f);

	int status[N_CHILDREN];
	run_children(N_CHILDREN, child_update_from_one_mac, &arg, status);
	int ok = 0, stale = 0, winner = -1;
	for (int i = 0; i < N_CHILDREN; i++) {
		ok += status[i] == BKV_STORAGE_OK;
		stale += status[i] == BKV_STORAGE_STALE;
		winner = status[i] == BKV_STORAGE_OK ? i : winner;
	}
	assert_int_equal(ok, 1);
	assert_int_equal(stale, N_CHILDREN - 1);
	reopen(f);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_int_equal(after.attempts_used, 1 + winner); /* the winner's state, whole */
	assert_true(has_counter_mac(&after));
}

/* Each child inserts its own record for the same account. Exit code: the bkv_storage_err
 * of the insert, or 100 on error. */
static int child_insert_one_account(int index, void *arg)
{
	bkv_storage *s = child_open(arg);
	if (s == NULL) {
		return 100;
	}
	bkv_record r;
	make_record(&r, LIT("alice"));
	r.attempts_used = (uint32_t)index;
	set_counter_mac(&r);
	child_ready_and_wait();
	const bkv_storage_err err = bkv_storage_insert(s, &r);
	bkv_storage_close(s);
	return (int)err;
}

static void test_concurrent_inserts_of_one_account_succeed_exactly_once(void **state)
{
	fx *f = *state;
	close_storage(f);
	int status[N_CHILDREN];
	run_children(N_CHILDREN, child_insert_one_account, f->url, status);
	int ok = 0, exists = 0, winner = -1;
	for (int i = 0; i < N_CHILDREN; i++) {
		ok += status[i] == BKV_STORAGE_OK;
		exists += status[i] == BKV_STORAGE_EXISTS;
		winner = status[i] == BKV_STORAGE_OK ? i : winner;
	}
	assert_int_equal(ok, 1);
	assert_int_equal(exists, N_CHILDREN - 1);
	reopen(f);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_int_equal(after.attempts_used, winner);
	assert_true(has_counter_mac(&after));
}

/* ------------------------------------------------------------------------------------ */
/* Crash durability                                                                      */
/* ------------------------------------------------------------------------------------ */

#define CRASH_ROUNDS 5

/* Increments the counter by read -> update as fast as it can, reporting each value after
 * the call returned OK, until it is killed. */
static void crash_child(const char *url, int out)
{
	alarm(CHILD_ALARM_S);
	bkv_storage *s = child_open(url);
	bkv_record r;
	if (s == NULL || bkv_storage_get(s, LIT("alice"), &r) != BKV_STORAGE_OK) {
		_exit(100);
	}
	for (;;) {
		const bkv_record n = next_state(&r);
		bkv_storage_err err = bkv_storage_update(s, &n, r.mac, r.mac_len);
		if (err == BKV_STORAGE_STALE) {
			/* The previous child's last COMMIT may still land after it was killed (a
			 * PostgreSQL backend finishes a COMMIT it already received): re-read and go
			 * on, as the handlers do. */
			if (bkv_storage_get(s, LIT("alice"), &r) != BKV_STORAGE_OK) {
				_exit(103);
			}
			continue;
		}
		if (err != BKV_STORAGE_OK) {
			fprintf(stderr, "crash child: update: %s\n", bkv_storage_strerror(err));
			_exit(101);
		}
		r = n;
		if (!write_full(out, &n.attempts_used, sizeof(n.attempts_used))) {
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

static void test_sigkill_never_loses_a_committed_update(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("alice"));
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
			crash_child(f->url, p[1]);
		}
		close(p[1]);

		/* let it commit a random number of updates, then kill it mid-loop */
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
		assert_true(has_counter_mac(&r)); /* a whole state, never a torn one */
		assert_true(r.attempts_used >= floor);
		floor = r.attempts_used;
	}
}

/* ------------------------------------------------------------------------------------ */
/* Group commit (SQLite, and PostgreSQL through the same group)                          */
/* ------------------------------------------------------------------------------------ */

/* Holds back every write to the records until tb_release_writes (testblock.h). */
static tb_block block_writes(const fx *f)
{
	return tb_block_writes(f->path, on_pg ? pg_url : NULL);
}

/* The fixture's storage, the one member of a group of its own: its writes are grouped
 * commits, each led by itself. */
static bkv_storage_group *alone_in_a_group(fx *f)
{
	bkv_storage_group *g = bkv_storage_group_create(1);
	assert_non_null(g);
	assert_int_equal(bkv_storage_join_group(f->s, g, 0), BKV_STORAGE_OK);
	return g;
}

/* Runs a concurrency test with its children joined to one group, and checks the group
 * committed their writes together at least once. */
static void with_group(void (*test)(void **), void **state, bool must_batch)
{
	g_group = bkv_storage_group_create(N_CHILDREN);
	assert_non_null(g_group);
	test(state);
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	bkv_storage_group_free(g_group);
	g_group = NULL;
	print_message("group: %llu commits carried %llu writes\n", (unsigned long long)gi.batches,
	              (unsigned long long)gi.writes);
	assert_int_equal(gi.leader, 0);
	assert_int_equal(gi.queued + gi.in_batch, 0);
	assert_true(gi.batches >= 1);
	if (must_batch) {
		assert_true(gi.writes > gi.batches);
	}
}

static void test_grouped_read_and_update_loops_lose_no_increment(void **state)
{
	with_group(test_concurrent_read_and_update_loops_lose_no_increment, state, true);
}

static void test_grouped_updates_from_one_mac_succeed_exactly_once(void **state)
{
	with_group(test_concurrent_updates_from_one_mac_succeed_exactly_once, state, false);
}

static void test_grouped_inserts_of_one_account_succeed_exactly_once(void **state)
{
	with_group(test_concurrent_inserts_of_one_account_succeed_exactly_once, state, false);
}

static void test_group_create_and_join_refuse_bad_arguments(void **state)
{
	fx *f = *state;
	assert_null(bkv_storage_group_create(0));
	assert_null(bkv_storage_group_create(BKV_STORAGE_GROUP_MAX + 1));
	bkv_storage_group *g = bkv_storage_group_create(2);
	assert_non_null(g);
	assert_int_equal(bkv_storage_join_group(NULL, g, 0), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_join_group(f->s, NULL, 0), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_join_group(f->s, g, 2), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_join_group(f->s, g, 1), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_join_group(f->s, g, 0), BKV_STORAGE_ARGUMENT);
	/* joined: a write goes through the group and is committed */
	insert_new(f, LIT("alice"));
	advance_ok(f, LIT("alice"));
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g, &gi);
	assert_int_equal(gi.batches, 2);
	assert_int_equal(gi.writes, 2);
	close_storage(f);
	bkv_storage_group_free(g);
	bkv_storage_group_free(NULL);
	bkv_storage_group_reap(NULL, 1);
}

/* Writes n successive states over r (as stored), and returns the last. */
static bkv_record advance_n(fx *f, bkv_record r, int n)
{
	for (int i = 0; i < n; i++) {
		const bkv_record next = next_state(&r);
		assert_int_equal(bkv_storage_update(f->s, &next, r.mac, r.mac_len), BKV_STORAGE_OK);
		r = next;
	}
	return r;
}

/* The frames in the database's WAL file (4096-byte pages and 24-byte frame headers). */
static long wal_frames(const fx *f)
{
	char wal[PATH_MAX + 8];
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	struct stat st;
	assert_int_equal(stat(wal, &st), 0);
	return (long)(st.st_size / (4096 + 24));
}

/* An update that keeps the seal rewrites the row's page only, not also the entry of the
 * index on seal_key_version (SQLite rewrites the entry of every index whose column the
 * UPDATE sets): 100 counter updates add about 100 WAL frames, not 200. */
static void test_an_update_that_keeps_the_seal_writes_one_page(void **state)
{
	SQLITE_ONLY();
	fx *f = *state;
	insert_new(f, LIT("alice"));
	reopen(f); /* the last connection's close checkpoints and removes the WAL */
	const bkv_record r = advance_n(f, get_ok(f, LIT("alice")), 100);
	const long frames = wal_frames(f);
	print_message("100 updates: %ld WAL frames\n", frames);
	assert_true(frames >= 100);
	assert_true(frames < 120);
	/* a change of seal still writes the index: the row is found under its new version */
	bkv_record n = next_state(&r);
	n.seal_key_version = 2;
	assert_int_equal(bkv_storage_update(f->s, &n, r.mac, r.mac_len), BKV_STORAGE_OK);
	uint64_t count = 0;
	assert_int_equal(bkv_storage_count_sealed_with(f->s, 2, &count), BKV_STORAGE_OK);
	assert_int_equal(count, 1);
	assert_int_equal(bkv_storage_count_sealed_with(f->s, 1, &count), BKV_STORAGE_OK);
	assert_int_equal(count, 0);
}

/* A group's leader checkpoints the WAL once it holds 1000 frames (after its writers were
 * answered, where the autocheckpoint it replaces would run inside their COMMIT): 2500
 * commits leave a WAL of about 1000 frames, not one of 2500. */
static void test_grouped_commits_keep_checkpointing_the_wal(void **state)
{
	SQLITE_ONLY();
	fx *f = *state;
	bkv_storage_group *g = alone_in_a_group(f);
	insert_new(f, LIT("alice"));
	advance_n(f, get_ok(f, LIT("alice")), 2500);
	const long frames = wal_frames(f); /* the connection is open: the WAL is there */
	print_message("WAL after 2500 commits: %ld frames\n", frames);
	assert_true(frames > 100);
	assert_true(frames < 1500);
	close_storage(f);
	bkv_storage_group_free(g);
	reopen(f);
	assert_int_equal(get_ok(f, LIT("alice")).attempts_used, 2500);
}

/* Member index reads and updates its own CKPT_ACCOUNTS accounts in turn, CKPT_UPDATES times:
 * reads and commits from every member overlap, as a vault's workers do. */
#define CKPT_MEMBERS  4
#define CKPT_ACCOUNTS 50
#define CKPT_UPDATES  1500

static void ckpt_account(int member, int k, char *name, size_t cap)
{
	snprintf(name, cap, "m%d-%02d", member, k % CKPT_ACCOUNTS);
}

static int child_update_own_accounts(int index, void *arg)
{
	bkv_storage *s = child_open(arg);
	if (s == NULL) {
		return 100;
	}
	child_ready_and_wait();
	int code = 0;
	for (int k = 0; k < CKPT_UPDATES && code == 0; k++) {
		char name[16];
		ckpt_account(index, k, name, sizeof(name));
		bkv_record r;
		bkv_storage_err err = bkv_storage_get(s, (const uint8_t *)name, strlen(name), &r);
		const bkv_record n = next_state(&r);
		if (err == BKV_STORAGE_OK) {
			err = bkv_storage_update(s, &n, r.mac, r.mac_len);
		}
		if (err != BKV_STORAGE_OK) {
			fprintf(stderr, "member %d: %s: %s\n", index, name,
			        bkv_storage_strerror(err));
			code = 110 + (int)err;
		}
	}
	bkv_storage_close(s);
	return code;
}

/*
 * While members keep reading and committing, SQLite seldom finds a moment to start its WAL
 * over, so the WAL stays longer than the checkpoint threshold. The autocheckpoint (and a
 * leader that checkpointed whenever the WAL held 1000 frames) then ran a checkpoint, two
 * fsyncs, after nearly every commit. The group checkpoints once per 1000 frames appended
 * (each update here appends at most one frame), and the commit after a checkpoint starts
 * the WAL over, so it stays near 1000 frames.
 */
static int wait_exit(pid_t pid);

static void busy_members_checkpoint(fx *f, bool with_committer)
{
	SQLITE_ONLY();
	for (int m = 0; m < CKPT_MEMBERS; m++) {
		for (int k = 0; k < CKPT_ACCOUNTS; k++) {
			char name[16];
			ckpt_account(m, k, name, sizeof(name));
			insert_new(f, (const uint8_t *)name, strlen(name));
		}
	}
	close_storage(f);
	g_group = bkv_storage_group_create(CKPT_MEMBERS);
	assert_non_null(g_group);
	const pid_t committer =
	    with_committer ? tg_start_committer(g_group, f->url, CHILD_ALARM_S, WAIT_DEADLINE_S)
	                   : 0;
	pid_t pid[CKPT_MEMBERS];
	start_children(CKPT_MEMBERS, child_update_own_accounts, f->url, pid);
	reopen(f); /* a connection of the parent's keeps the WAL file until it is measured */
	int status[CKPT_MEMBERS];
	for (int i = 0; i < CKPT_MEMBERS; i++) {
		int ws = 0;
		assert_int_equal(waitpid(pid[i], &ws, 0), pid[i]);
		status[i] = WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
	}
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	if (with_committer) {
		assert_int_equal(gi.committer, committer);
		kill(committer, SIGTERM);
		assert_int_equal(wait_exit(committer), BKV_STORAGE_OK);
	}
	bkv_storage_group_free(g_group);
	g_group = NULL;
	for (int i = 0; i < CKPT_MEMBERS; i++) {
		assert_int_equal(status[i], 0);
	}
	const long frames = wal_frames(f); /* the file keeps its largest extent */
	print_message("%llu writes in %llu commits, %llu checkpoints, WAL file %ld frames\n",
	              (unsigned long long)gi.writes, (unsigned long long)gi.batches,
	              (unsigned long long)gi.upkeeps, frames);
	assert_int_equal(gi.writes, CKPT_MEMBERS * CKPT_UPDATES);
	assert_true(gi.upkeeps >= 2);
	assert_true(gi.upkeeps <= gi.writes / 1000 + 1);
	assert_true(frames < 2500);
	char name[16];
	ckpt_account(CKPT_MEMBERS - 1, CKPT_ACCOUNTS - 1, name, sizeof(name));
	assert_int_equal(get_ok(f, (const uint8_t *)name, strlen(name)).attempts_used,
	                 CKPT_UPDATES / CKPT_ACCOUNTS);
}

static void test_busy_members_checkpoint_once_per_thousand_frames(void **state)
{
	busy_members_checkpoint(*state, false);
}

static void test_a_busy_committer_checkpoints_once_per_thousand_frames(void **state)
{
	busy_members_checkpoint(*state, true);
}

/* A group member forked by the tests below: opens its storage, joins g_group as member
 * index, says it is ready, waits for EOF on its go pipe, then does its one write. */
typedef struct member_arg {
	const char *url;
	int ready_fd;
	int go_fd[N_CHILDREN]; /* the parent's write ends, but member index's own read end while it
	                          forks */
	int go_write;          /* the write end of the member being forked */
	int (*write)(bkv_storage *s, int index); /* returns the bkv_storage_err */
} member_arg;

static pid_t fork_member(int index, member_arg *a)
{
	fflush(stdout);
	fflush(stderr);
	const pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid > 0) {
		return pid;
	}
	alarm(CHILD_ALARM_S);
	g_child_index = index;
	/* only the parent may hold a go pipe open */
	close(a->go_write);
	for (int i = 0; i < index; i++) {
		close(a->go_fd[i]);
	}
	bkv_storage *s = child_open(a->url);
	if (s == NULL) {
		_exit(100);
	}
	char c = 'r';
	if (write(a->ready_fd, &c, 1) != 1) {
		_exit(101);
	}
	while (read(a->go_fd[index], &c, 1) != 0) {
	}
	const int err = a->write(s, index);
	bkv_storage_close(s);
	_exit(err);
}

static int wait_exit(pid_t pid)
{
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
}

/* Forks n members, each ready (storage open, group joined) before it returns. */
static void fork_members(member_arg *a, int n, pid_t *pids)
{
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	a->ready_fd = ready[1];
	for (int i = 0; i < n; i++) {
		int go[2];
		assert_int_equal(pipe(go), 0);
		a->go_fd[i] = go[0];
		a->go_write = go[1];
		pids[i] = fork_member(i, a);
		close(go[0]);
		a->go_fd[i] = go[1]; /* the parent's end: closing it lets member i go */
		char c;
		assert_int_equal(read(ready[0], &c, 1), 1);
	}
	close(ready[0]);
	close(ready[1]);
}

enum {
	OP_INSERT_NEW,
	OP_INSERT_EXISTING,
	OP_UPDATE_STALE,
	OP_UPDATE_MISSING,
	OP_DELETE_MISSING,
	OP_DELETE,
	OP_UPDATE,
	OP_UPDATE_BELOW_FLOOR,
	OP_COUNT
};

/* One write of each kind and outcome, member index = the op. */
static int one_write_of_each_kind(bkv_storage *s, int index)
{
	bkv_record r;
	switch (index) {
	case OP_INSERT_NEW:
		r = sealed_under(LIT("new"), 2); /* at the floor */
		return (int)bkv_storage_insert(s, &r);
	case OP_INSERT_EXISTING:
		r = sealed_under(LIT("exists"), 2);
		return (int)bkv_storage_insert(s, &r);
	case OP_UPDATE_STALE: {
		if (bkv_storage_get(s, LIT("stale"), &r) != BKV_STORAGE_OK) {
			return 102;
		}
		const bkv_record n = next_state(&r);
		const uint8_t other[8] = {0xEE};
		return (int)bkv_storage_update(s, &n, other, sizeof(other));
	}
	case OP_UPDATE_MISSING:
		make_record(&r, LIT("missing"));
		return (int)bkv_storage_update(s, &r, r.mac, r.mac_len);
	case OP_DELETE_MISSING:
		return (int)bkv_storage_delete(s, LIT("missing too"));
	case OP_DELETE:
		return (int)bkv_storage_delete(s, LIT("deleted"));
	case OP_UPDATE:
	case OP_UPDATE_BELOW_FLOOR: {
		const bool below = index == OP_UPDATE_BELOW_FLOOR;
		const char *name = below ? "below" : "updated";
		if (bkv_storage_get(s, (const uint8_t *)name, strlen(name), &r) != BKV_STORAGE_OK) {
			return 102;
		}
		bkv_record n = next_state(&r);
		n.sealed[1] ^= below ? 1 : 0; /* another blob under a version below the floor */
		return (int)bkv_storage_update(s, &n, r.mac, r.mac_len);
	}
	}
	return 103;
}

/* The first member leads a commit that waits for the database's write lock (held here);
 * the seven others queue meanwhile and all go into the next commit, each with its own
 * result: the refused ones change nothing and do not stop the others. */
static void test_one_commit_carries_every_queued_write_with_its_own_result(void **state)
{
	fx *f = *state;
	insert_new(f, LIT("exists"));
	const bkv_record stale = insert_new(f, LIT("stale"));
	insert_new(f, LIT("deleted"));
	const bkv_record updated = insert_new(f, LIT("updated"));
	const bkv_record below = sealed_under(LIT("below"), 1);
	assert_int_equal(bkv_storage_insert(f->s, &below), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_raise_seal_floor(f->s, 2), BKV_STORAGE_OK);
	close_storage(f);

	g_group = bkv_storage_group_create(OP_COUNT);
	assert_non_null(g_group);
	member_arg a = {.url = f->url, .write = one_write_of_each_kind};
	pid_t pids[OP_COUNT];
	fork_members(&a, OP_COUNT, pids);
	tb_block block = block_writes(f);
	close(a.go_fd[0]);
	const bkv_storage_group_info first = tg_wait_for_commit(g_group, 0, 1, 0, WAIT_DEADLINE_S);
	assert_int_equal(first.leader, pids[0]);
	for (int i = 1; i < OP_COUNT; i++) {
		close(a.go_fd[i]);
	}
	tg_wait_for_commit(g_group, 0, 1, OP_COUNT - 1, WAIT_DEADLINE_S);
	tb_release_writes(&block);
	int status[OP_COUNT];
	for (int i = 0; i < OP_COUNT; i++) {
		status[i] = wait_exit(pids[i]);
	}
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	bkv_storage_group_free(g_group);
	g_group = NULL;

	assert_int_equal(status[OP_INSERT_NEW], BKV_STORAGE_OK);
	assert_int_equal(status[OP_INSERT_EXISTING], BKV_STORAGE_EXISTS);
	assert_int_equal(status[OP_UPDATE_STALE], BKV_STORAGE_STALE);
	assert_int_equal(status[OP_UPDATE_MISSING], BKV_STORAGE_NOT_FOUND);
	assert_int_equal(status[OP_DELETE_MISSING], BKV_STORAGE_NOT_FOUND);
	assert_int_equal(status[OP_DELETE], BKV_STORAGE_OK);
	assert_int_equal(status[OP_UPDATE], BKV_STORAGE_OK);
	assert_int_equal(status[OP_UPDATE_BELOW_FLOOR], BKV_STORAGE_SEAL_FLOOR);
	assert_int_equal(gi.batches, 2); /* the first member's, then everyone else's */
	assert_int_equal(gi.writes, OP_COUNT);

	reopen(f);
	get_ok(f, LIT("new"));
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("deleted"), &r), BKV_STORAGE_NOT_FOUND);
	assert_int_equal(bkv_storage_get(f->s, LIT("missing"), &r), BKV_STORAGE_NOT_FOUND);
	r = get_ok(f, LIT("stale"));
	assert_same_state(&stale, &r);
	r = get_ok(f, LIT("updated"));
	assert_int_equal(r.attempts_used, updated.attempts_used + 1);
	r = get_ok(f, LIT("below"));
	assert_same_state(&below, &r);
}

/* "member-i": the account member i writes in the tests below. Returns its length. */
static size_t member_account(int i, char name[16])
{
	return (size_t)snprintf(name, 16, "member-%d", i);
}

static void insert_member_accounts(fx *f, int n)
{
	for (int i = 0; i < n; i++) {
		char name[16];
		insert_new(f, (const uint8_t *)name, member_account(i, name));
	}
}

static uint32_t member_attempts(fx *f, int i)
{
	char name[16];
	return get_ok(f, (const uint8_t *)name, member_account(i, name)).attempts_used;
}

/* The attempts of a member whose write was in a commit whose leader or committer died while
 * the records were locked (block_writes). On SQLite nothing of it reached the database. On
 * PostgreSQL the whole batch, COMMIT included, had gone out in one pipeline, and the server
 * runs it once the lock is free although its client is gone: the write is in doubt, done
 * at most once. Waits first for such sessions to end, so their work is seen. */
static uint32_t in_doubt_attempts(fx *f, int member)
{
	if (on_pg) {
		const double deadline = now_s() + WAIT_DEADLINE_S;
		while (
		    pg_int(
		        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
		        "AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'") > 0) {
			assert_true(now_s() < deadline);
			tg_sleep_1ms();
		}
	}
	const uint32_t attempts = member_attempts(f, member);
	if (on_pg) {
		assert_true(attempts <= 1);
	} else {
		assert_int_equal(attempts, 0);
	}
	return attempts;
}

/* Member i advances its own account "member-i" once. */
static int advance_own_account(bkv_storage *s, int index)
{
	char name[16];
	const size_t len = member_account(index, name);
	bkv_record r;
	bkv_storage_err err = bkv_storage_get(s, (const uint8_t *)name, len, &r);
	if (err != BKV_STORAGE_OK) {
		return 102;
	}
	const bkv_record n = next_state(&r);
	return (int)bkv_storage_update(s, &n, r.mac, r.mac_len);
}

/* A leader killed in its commit leaves that commit in doubt: every write in it is answered
 * UNAVAILABLE (and is in doubt: in_doubt_attempts), the writes queued
 * behind it are committed by the next leader, and a process that takes over a dead member's
 * index can write at once. reap: the parent reports each death (as bkvd's master does);
 * otherwise a waiter notices the leader's pid is gone. */
static void leader_killed_mid_commit(fx *f, bool reap)
{
	insert_member_accounts(f, 3);
	close_storage(f);
	g_group = bkv_storage_group_create(3);
	assert_non_null(g_group);
	member_arg a = {.url = f->url, .write = advance_own_account};
	pid_t pids[3];
	fork_members(&a, 3, pids);
	tb_block block = block_writes(f);
	/* member 0 leads a commit of its own write, 1 and 2 queue behind it */
	close(a.go_fd[0]);
	tg_wait_for_commit(g_group, 0, 1, 0, WAIT_DEADLINE_S);
	close(a.go_fd[1]);
	close(a.go_fd[2]);
	tg_wait_for_commit(g_group, 0, 1, 2, WAIT_DEADLINE_S);
	kill(pids[0], SIGKILL);
	assert_int_equal(wait_exit(pids[0]), -SIGKILL);
	if (reap) {
		bkv_storage_group_reap(g_group, pids[0]);
	}
	/* the next leader takes both queued writes; kill it too */
	const bkv_storage_group_info second =
	    tg_wait_for_commit(g_group, pids[0], 2, 0, WAIT_DEADLINE_S);
	const int killed = second.leader == pids[1] ? 1 : 2, survivor = 3 - killed;
	assert_int_equal(second.leader, pids[killed]);
	kill(pids[killed], SIGKILL);
	assert_int_equal(wait_exit(pids[killed]), -SIGKILL);
	if (reap) {
		bkv_storage_group_reap(g_group, pids[killed]);
	}
	/* the survivor's write was in the dead leader's commit: in doubt, so UNAVAILABLE */
	assert_int_equal(wait_exit(pids[survivor]), BKV_STORAGE_UNAVAILABLE);
	tb_release_writes(&block);

	/* nothing reached the database (SQLite) or each write is in doubt (PostgreSQL); new
	 * processes on the dead members' indexes write */
	reopen(f);
	uint32_t before[3];
	for (int i = 0; i < 3; i++) {
		before[i] = in_doubt_attempts(f, i);
	}
	close_storage(f);
	fork_members(&a, 3, pids);
	for (int i = 0; i < 3; i++) {
		close(a.go_fd[i]);
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(wait_exit(pids[i]), BKV_STORAGE_OK);
	}
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	bkv_storage_group_free(g_group);
	g_group = NULL;
	assert_int_equal(gi.leader, 0);
	reopen(f);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(member_attempts(f, i), before[i] + 1);
	}
}

static void
test_a_leader_killed_mid_commit_is_reaped_and_its_commit_answered_unavailable(void **state)
{
	leader_killed_mid_commit(*state, true);
}

static void test_a_leader_killed_mid_commit_is_noticed_by_its_waiters(void **state)
{
	leader_killed_mid_commit(*state, false);
}

/* While a committer runs, it leads every commit, the members' first ones too. Killed in a
 * commit, it leaves that commit in doubt: its write is answered UNAVAILABLE and reached
 * nothing (the write lock was held here), while the writes queued behind it are committed
 * by a member, as before the committer. reap: the parent reports the death; otherwise the
 * waiters notice the committer's pid is gone. */
static void committer_killed_mid_commit(fx *f, bool reap)
{
	insert_member_accounts(f, 3);
	close_storage(f);
	g_group = bkv_storage_group_create(3);
	assert_non_null(g_group);
	/* (first: a committer forked later would hold the members' go pipes open) */
	const pid_t committer = tg_start_committer(g_group, f->url, CHILD_ALARM_S, WAIT_DEADLINE_S);
	member_arg a = {.url = f->url, .write = advance_own_account};
	pid_t pids[3];
	fork_members(&a, 3, pids);
	tb_block block = block_writes(f);
	/* member 0's write: the committer leads its commit, not member 0 */
	close(a.go_fd[0]);
	const bkv_storage_group_info first = tg_wait_for_commit(g_group, 0, 1, 0, WAIT_DEADLINE_S);
	assert_int_equal(first.leader, committer);
	close(a.go_fd[1]);
	close(a.go_fd[2]);
	tg_wait_for_commit(g_group, 0, 1, 2, WAIT_DEADLINE_S);
	kill(committer, SIGKILL);
	assert_int_equal(wait_exit(committer), -SIGKILL);
	if (reap) {
		bkv_storage_group_reap(g_group, committer);
	}
	/* without it, a member leads the next commit, of both queued writes */
	const bkv_storage_group_info second =
	    tg_wait_for_commit(g_group, committer, 2, 0, WAIT_DEADLINE_S);
	assert_true(second.leader == pids[1] || second.leader == pids[2]);
	assert_int_equal(second.committer, 0);
	tb_release_writes(&block);
	assert_int_equal(wait_exit(pids[0]), BKV_STORAGE_UNAVAILABLE);
	assert_int_equal(wait_exit(pids[1]), BKV_STORAGE_OK);
	assert_int_equal(wait_exit(pids[2]), BKV_STORAGE_OK);
	bkv_storage_group_free(g_group);
	g_group = NULL;
	reopen(f);
	in_doubt_attempts(f, 0);
	for (int i = 1; i < 3; i++) {
		assert_int_equal(member_attempts(f, i), 1);
	}
}

static void test_a_committer_killed_mid_commit_is_reaped_and_the_members_lead(void **state)
{
	committer_killed_mid_commit(*state, true);
}

static void test_a_committer_killed_mid_commit_is_noticed_by_its_waiters(void **state)
{
	committer_killed_mid_commit(*state, false);
}

/* ---- Lanes: several writes in flight from one process, on fibers ---- */

#define LANES 4

typedef struct lane_write {
	bkv_storage *s;
	int account;
	int result;
} lane_write;

static void lane_advance(void *arg)
{
	lane_write *w = arg;
	w->result = advance_own_account(w->s, w->account);
}

/* What bkvd's worker loop does: resume the waiting fibers that are ready when the member's
 * eventfd is readable, and every fiber at least every 100 ms (tick); until none is busy.
 * Without tick only the eventfd moves them. */
static void run_fibers(bkv_fibers *fibers, int wake_fd, bool tick)
{
	const double deadline = now_s() + WAIT_DEADLINE_S;
	while (bkv_fibers_busy(fibers) > 0) {
		if (now_s() > deadline)
			fail_msg("%u fibers still wait after %d s", bkv_fibers_busy(fibers),
			         WAIT_DEADLINE_S);
		struct pollfd p = {.fd = wake_fd, .events = POLLIN};
		const bool woken = poll(&p, 1, 100) > 0;
		if (woken) {
			uint64_t count;
			assert_int_equal(read(wake_fd, &count, sizeof(count)), sizeof(count));
		}
		if (woken || tick)
			bkv_fibers_resume(fibers, !woken);
	}
}

static void run_fibers_until_done(bkv_fibers *fibers, int wake_fd)
{
	run_fibers(fibers, wake_fd, true);
}

/* A member of a group with lanes, on this process's own storage: its writes on fibers
 * yield instead of sleeping. */
static bkv_fibers *join_with_fibers(fx *f, bkv_storage_group *g, uint32_t member)
{
	reopen(f);
	assert_int_equal(bkv_storage_join_group(f->s, g, member), BKV_STORAGE_OK);
	bkv_fibers *fibers = bkv_fibers_new(LANES, 256 * 1024);
	assert_non_null(fibers);
	/* writes yield, reads block (those on PostgreSQL yield with yield_fd: the reads'
	 * own tests below) */
	const bkv_storage_waiter waiter = {.can_yield = bkv_fibers_waiter_can_yield,
	                                   .yield = bkv_fibers_waiter_yield,
	                                   .arg = fibers};
	bkv_storage_set_waiter(f->s, &waiter);
	return fibers;
}

/* Ends join_with_fibers: the storage, the fibers and the group go; the storage reopens,
 * alone, to check what was committed. */
static void leave_fibers(fx *f, bkv_fibers *fibers)
{
	close_storage(f);
	bkv_fibers_free(fibers);
	bkv_storage_group_free(g_group);
	g_group = NULL;
	reopen(f);
}

/* One process, four writes in flight at once: while the committer's first commit (of
 * the first write) waits for the database's write lock, the other three yield in their
 * lanes and the process goes on; all three go into the next commit, each with its own
 * result. A group without lanes would have served one write at a time. */
static void test_a_member_with_lanes_has_a_write_in_flight_per_fiber(void **state)
{
	fx *f = *state;
	insert_member_accounts(f, LANES);
	close_storage(f);
	g_group = bkv_storage_group_create_lanes(2, LANES);
	assert_non_null(g_group);
	assert_int_equal(bkv_storage_group_lanes(g_group), LANES);
	const int wake_fd = bkv_storage_group_wake_fd(g_group, 0);
	assert_true(wake_fd >= 0);
	const pid_t committer = tg_start_committer(g_group, f->url, CHILD_ALARM_S, WAIT_DEADLINE_S);
	bkv_fibers *fibers = join_with_fibers(f, g_group, 0);
	tb_block block = block_writes(f);
	lane_write w[LANES];
	for (int i = 0; i < LANES; i++) {
		w[i] = (lane_write){.s = f->s, .account = i, .result = -1};
		assert_true(bkv_fibers_run(fibers, lane_advance, &w[i]));
		if (i == 0)
			tg_wait_for_commit(g_group, 0, 1, 0, WAIT_DEADLINE_S);
	}
	/* every write is in flight, and this process is not blocked in any of them */
	assert_int_equal(bkv_fibers_busy(fibers), LANES);
	const bkv_storage_group_info held = tg_wait_for_commit(g_group, 0, 1, LANES - 1, 1);
	assert_int_equal(held.leader, committer);
	tb_release_writes(&block);
	run_fibers_until_done(fibers, wake_fd);
	for (int i = 0; i < LANES; i++)
		assert_int_equal(w[i].result, BKV_STORAGE_OK);
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.batches, 2);
	assert_int_equal(gi.writes, LANES);
	kill(committer, SIGTERM);
	assert_int_equal(wait_exit(committer), BKV_STORAGE_OK);
	leave_fibers(f, fibers);
	for (int i = 0; i < LANES; i++)
		assert_int_equal(member_attempts(f, i), 1);
}

/* A fiber that waits on a committer killed in its commit is not left waiting: within its
 * next 100 ms tick it finds the committer gone and is answered UNAVAILABLE (its write is
 * in doubt: in_doubt_attempts), and the next write is led by the member itself. The same attack
 * without the eventfd or the tick would hang. */
static void test_a_fiber_waiting_on_a_dead_committer_is_answered_unavailable(void **state)
{
	fx *f = *state;
	insert_member_accounts(f, 2);
	close_storage(f);
	g_group = bkv_storage_group_create_lanes(1, LANES);
	assert_non_null(g_group);
	const int wake_fd = bkv_storage_group_wake_fd(g_group, 0);
	const pid_t committer = tg_start_committer(g_group, f->url, CHILD_ALARM_S, WAIT_DEADLINE_S);
	bkv_fibers *fibers = join_with_fibers(f, g_group, 0);
	tb_block block = block_writes(f);
	lane_write first = {.s = f->s, .account = 0, .result = -1};
	assert_true(bkv_fibers_run(fibers, lane_advance, &first));
	assert_int_equal(tg_wait_for_commit(g_group, 0, 1, 0, WAIT_DEADLINE_S).leader, committer);
	kill(committer, SIGKILL);
	assert_int_equal(wait_exit(committer), -SIGKILL);
	run_fibers_until_done(fibers, wake_fd);
	assert_int_equal(first.result, BKV_STORAGE_UNAVAILABLE);
	tb_release_writes(&block);
	lane_write second = {.s = f->s, .account = 1, .result = -1};
	assert_true(bkv_fibers_run(fibers, lane_advance, &second));
	run_fibers_until_done(fibers, wake_fd);
	assert_int_equal(second.result, BKV_STORAGE_OK);
	leave_fibers(f, fibers);
	in_doubt_attempts(f, 0);
	assert_int_equal(member_attempts(f, 1), 1);
}

/* Without a committer, a fiber whose write queued behind another member's commit is woken
 * through its eventfd alone to lead the next commit itself (its write is not done yet,
 * but nobody else will commit it): it never depends on the 100 ms tick. */
static void test_a_queued_fiber_is_woken_to_lead_the_next_commit(void **state)
{
	fx *f = *state;
	insert_member_accounts(f, 2);
	close_storage(f);
	g_group = bkv_storage_group_create_lanes(2, LANES);
	assert_non_null(g_group);
	member_arg a = {.url = f->url, .write = advance_own_account};
	pid_t child;
	fork_members(&a, 1, &child); /* member 0, writing member-0 */
	bkv_fibers *fibers = join_with_fibers(f, g_group, 1);
	const int wake_fd = bkv_storage_group_wake_fd(g_group, 1);
	tb_block block = block_writes(f);
	close(a.go_fd[0]);
	assert_int_equal(tg_wait_for_commit(g_group, 0, 1, 0, WAIT_DEADLINE_S).leader, child);
	lane_write w = {.s = f->s, .account = 1, .result = -1};
	assert_true(bkv_fibers_run(fibers, lane_advance, &w));
	tg_wait_for_commit(g_group, 0, 1, 1, WAIT_DEADLINE_S);
	tb_release_writes(&block);
	run_fibers(fibers, wake_fd, false);
	assert_int_equal(w.result, BKV_STORAGE_OK);
	assert_int_equal(wait_exit(child), BKV_STORAGE_OK);
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.batches, 2);
	leave_fibers(f, fibers);
	assert_int_equal(member_attempts(f, 0), 1);
	assert_int_equal(member_attempts(f, 1), 1);
}

/* Off a fiber (the waiter cannot yield there), a member of a group with lanes writes as
 * one without: it sleeps on its slot until its commit is done. */
static void test_a_member_with_lanes_writes_off_a_fiber_by_sleeping(void **state)
{
	fx *f = *state;
	insert_member_accounts(f, 1);
	close_storage(f);
	g_group = bkv_storage_group_create_lanes(1, LANES);
	assert_non_null(g_group);
	const pid_t committer = tg_start_committer(g_group, f->url, CHILD_ALARM_S, WAIT_DEADLINE_S);
	bkv_fibers *fibers = join_with_fibers(f, g_group, 0);
	assert_int_equal(advance_own_account(f->s, 0), BKV_STORAGE_OK);
	kill(committer, SIGTERM);
	assert_int_equal(wait_exit(committer), BKV_STORAGE_OK);
	leave_fibers(f, fibers);
	assert_int_equal(member_attempts(f, 0), 1);
}

/* Lanes are bounded: the group refuses more slots than BKV_STORAGE_GROUP_SLOTS, or more
 * lanes than BKV_STORAGE_GROUP_LANES_MAX; with one lane there is no eventfd. */
static void test_group_lanes_are_bounded(void **state)
{
	(void)state;
	assert_null(bkv_storage_group_create_lanes(1, 0));
	assert_null(bkv_storage_group_create_lanes(1, BKV_STORAGE_GROUP_LANES_MAX + 1));
	assert_null(bkv_storage_group_create_lanes(BKV_STORAGE_GROUP_MAX, 8));
	bkv_storage_group *g = bkv_storage_group_create_lanes(2, 1);
	assert_non_null(g);
	assert_int_equal(bkv_storage_group_wake_fd(g, 0), -1);
	bkv_storage_group_free(g);
	g = bkv_storage_group_create_lanes(BKV_STORAGE_GROUP_SLOTS / BKV_STORAGE_GROUP_LANES_MAX,
	                                   BKV_STORAGE_GROUP_LANES_MAX);
	assert_non_null(g);
	assert_true(bkv_storage_group_wake_fd(g, 0) >= 0);
	assert_int_equal(bkv_storage_group_wake_fd(g, BKV_STORAGE_GROUP_SLOTS), -1);
	bkv_storage_group_free(g);
}

/* A second committer is refused while the first runs; stopped, the first returns OK and
 * the members lead again; a storage that is a member and a missing group are refused. */
static void test_a_committer_is_alone_and_stops_on_request(void **state)
{
	fx *f = *state;
	static const volatile sig_atomic_t go_on = 0;
	bkv_storage_group *g = bkv_storage_group_create(2);
	assert_non_null(g);
	assert_int_equal(bkv_storage_group_commit(NULL, f->s, &go_on), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_group_commit(g, NULL, &go_on), BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_join_group(f->s, g, 0), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_group_commit(g, f->s, &go_on), BKV_STORAGE_ARGUMENT);
	close_storage(f);
	bkv_storage_group_free(g);
	reopen(f);
	insert_new(f, LIT("alice"));
	close_storage(f);

	g_group = bkv_storage_group_create(2);
	assert_non_null(g_group);
	const pid_t committer = tg_start_committer(g_group, f->url, CHILD_ALARM_S, WAIT_DEADLINE_S);
	const pid_t second = tg_fork_committer(g_group, f->url, CHILD_ALARM_S);
	assert_int_equal(wait_exit(second), BKV_STORAGE_EXISTS);
	/* a member's write goes through the committer */
	reopen(f);
	assert_int_equal(bkv_storage_join_group(f->s, g_group, 0), BKV_STORAGE_OK);
	advance_ok(f, LIT("alice"));
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.committer, committer);
	assert_int_equal(gi.batches, 1);
	kill(committer, SIGTERM);
	assert_int_equal(wait_exit(committer), BKV_STORAGE_OK);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.committer, 0);
	/* and without it the member leads its own commit */
	assert_int_equal(advance_ok(f, LIT("alice")).attempts_used, 2);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.batches, 2);
	close_storage(f);
	bkv_storage_group_free(g_group);
	g_group = NULL;
}

/* ---- A committer holds a commit for writes on their way (bkv_storage_expect_write) ---- */

/* Member 0's next step, set by the parent in shared memory. */
enum { STEP_WAIT = 0, STEP_WRITE, STEP_END };
static uint32_t *g_step;

/* Member 0 announces its write, then writes (advance_own_account) or ends without one, as
 * the parent says; the other members advance their own accounts. */
static int announcer_or_writer(bkv_storage *s, int index)
{
	if (index != 0) {
		return advance_own_account(s, index);
	}
	bkv_storage_expect_write(s);
	uint32_t step;
	while ((step = __atomic_load_n(g_step, __ATOMIC_ACQUIRE)) == STEP_WAIT) {
		tg_sleep_1ms();
	}
	if (step == STEP_WRITE) {
		return advance_own_account(s, index);
	}
	bkv_storage_expect_end(s);
	return 0;
}

/* Waits until expected writes are announced, queued are queued and at least held commits
 * were held (the committer starts a hold only once it runs after the write was queued). */
static bkv_storage_group_info wait_expected(uint32_t expected, uint32_t queued, uint64_t held)
{
	const double deadline = now_s() + WAIT_DEADLINE_S;
	bkv_storage_group_info gi;
	for (bkv_storage_group_info_get(g_group, &gi);
	     gi.expected != expected || gi.queued != queued || gi.held < held;
	     bkv_storage_group_info_get(g_group, &gi)) {
		if (now_s() > deadline) {
			fail_msg("never %u writes expected, %u queued, %llu held (%u, %u, %llu)",
			         expected, queued, (unsigned long long)held, gi.expected, gi.queued,
			         (unsigned long long)gi.held);
		}
		tg_sleep_1ms();
	}
	return gi;
}

/* Three members and a committer that may hold a commit for a minute. Member 2's write is
 * committed first, while the database's write lock is held for slow_s seconds: a hold
 * lasts at most as long as the last commit took. Then member 0 announces its write and
 * member 1 queues one. Returns the committer. */
static pid_t hold_setup(fx *f, member_arg *a, pid_t pids[3], double slow_s)
{
	insert_member_accounts(f, 3);
	close_storage(f);
	g_step =
	    mmap(NULL, sizeof(*g_step), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(g_step != MAP_FAILED);
	*g_step = STEP_WAIT;
	g_group = bkv_storage_group_create(3);
	assert_non_null(g_group);
	bkv_storage_group_set_hold_max(g_group, 60ull * 1000000000u);
	const pid_t committer = tg_start_committer(g_group, f->url, CHILD_ALARM_S, WAIT_DEADLINE_S);
	*a = (member_arg){.url = f->url, .write = announcer_or_writer};
	fork_members(a, 3, pids);
	tb_block block = block_writes(f);
	close(a->go_fd[2]);
	tg_wait_for_commit(g_group, 0, 1, 0, WAIT_DEADLINE_S);
	const struct timespec slow = {(time_t)slow_s,
	                              (long)((slow_s - (double)(time_t)slow_s) * 1e9)};
	nanosleep(&slow, NULL);
	tb_release_writes(&block);
	assert_int_equal(wait_exit(pids[2]), BKV_STORAGE_OK);
	close(a->go_fd[0]);
	wait_expected(1, 0, 0);
	close(a->go_fd[1]);
	return committer;
}

/* Stops the committer and checks each member's account: advanced once, or not. */
static void hold_teardown(fx *f, pid_t committer, const bool advanced[3])
{
	kill(committer, SIGTERM);
	assert_int_equal(wait_exit(committer), BKV_STORAGE_OK);
	bkv_storage_group_free(g_group);
	g_group = NULL;
	munmap(g_step, sizeof(*g_step));
	g_step = NULL;
	reopen(f);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(member_attempts(f, i), advanced[i] ? 1 : 0);
	}
}

/* With a hold of about 3 s, member 0 does step; the held commit goes before the hold runs
 * out (hold_expired 0), released by member 0's write or by the end of its announcement
 * (the committer looks again at least every 100 ms). */
static void release_hold_by(fx *f, uint32_t step)
{
	member_arg a;
	pid_t pids[3];
	const pid_t committer = hold_setup(f, &a, pids, 3.0);
	bkv_storage_group_info gi = wait_expected(1, 1, 1);
	assert_int_equal(gi.held, 1);
	assert_int_equal(gi.batches, 1);
	__atomic_store_n(g_step, step, __ATOMIC_RELEASE);
	const bool writes = step == STEP_WRITE;
	assert_int_equal(wait_exit(pids[0]), 0); /* BKV_STORAGE_OK, or no write */
	assert_int_equal(wait_exit(pids[1]), BKV_STORAGE_OK);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.batches, 2); /* member 2's, then the held one */
	assert_int_equal(gi.writes, writes ? 3 : 2);
	assert_int_equal(gi.held, 1);
	assert_int_equal(gi.hold_expired, 0);
	assert_int_equal(gi.expected, 0);
	hold_teardown(f, committer, (const bool[3]){writes, true, true});
}

/* Member 1's write waits in a held commit while member 0's is on its way, and the two
 * share one commit: without the hold member 1 would have committed alone. */
static void test_a_committer_holds_a_commit_for_a_write_on_its_way(void **state)
{
	release_hold_by(*state, STEP_WRITE);
}

/* A request that announced its write and ends without one releases the held commit. */
static void test_an_announced_write_that_never_comes_releases_the_hold(void **state)
{
	release_hold_by(*state, STEP_END);
}

/* An announcement that stays open (a request stuck in its handler) holds a commit no
 * longer than the last commit took: member 1's write commits while member 0 still
 * announces. */
static void test_a_hold_ends_when_its_time_is_up(void **state)
{
	fx *f = *state;
	member_arg a;
	pid_t pids[3];
	const pid_t committer = hold_setup(f, &a, pids, 0.0);
	assert_int_equal(wait_exit(pids[1]), BKV_STORAGE_OK);
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.batches, 2);
	assert_int_equal(gi.held, 1);
	assert_int_equal(gi.hold_expired, 1);
	assert_int_equal(gi.expected, 1); /* member 0 still announces */
	__atomic_store_n(g_step, STEP_END, __ATOMIC_RELEASE);
	assert_int_equal(wait_exit(pids[0]), 0);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.expected, 0);
	hold_teardown(f, committer, (const bool[3]){false, true, true});
}

/* Exit status of a child that joins the group as member 1, announces a write if told to,
 * and exits without ending it (as a worker killed in its handler would). */
static int join_and_die(fx *f, bool announce)
{
	fflush(NULL);
	const pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		g_child_index = 1;
		bkv_storage *s = child_open(f->url);
		if (s == NULL) {
			_exit(100);
		}
		if (announce) {
			bkv_storage_expect_write(s);
		}
		_exit(0);
	}
	return wait_exit(pid);
}

/* An announcement lasts until its write is queued or it ends, one per process at a time,
 * and is counted only while a committer runs (nobody else reads it); a member that dies
 * announcing leaves its count until another process takes its index, so a dead worker
 * cannot make the committer hold every commit. */
static void test_announced_writes_are_counted_until_queued_or_ended(void **state)
{
	fx *f = *state;
	insert_member_accounts(f, 1);
	g_group = bkv_storage_group_create(2);
	assert_non_null(g_group);
	bkv_storage_expect_write(f->s); /* not joined: nothing to count */
	bkv_storage_expect_end(f->s);
	assert_int_equal(bkv_storage_join_group(f->s, g_group, 0), BKV_STORAGE_OK);
	bkv_storage_expect_write(f->s); /* no committer: nothing counted, the write as ever */
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.expected, 0);
	assert_int_equal(advance_own_account(f->s, 0), BKV_STORAGE_OK);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.expected, 0);

	const pid_t committer = tg_start_committer(g_group, f->url, CHILD_ALARM_S, WAIT_DEADLINE_S);
	bkv_storage_expect_write(f->s);
	bkv_storage_expect_write(f->s);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.expected, 1);
	assert_int_equal(advance_own_account(f->s, 0), BKV_STORAGE_OK);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.expected, 0);
	assert_int_equal(gi.writes, 2);
	bkv_storage_expect_write(f->s);
	bkv_storage_expect_end(f->s);
	bkv_storage_expect_end(f->s);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.expected, 0);

	assert_int_equal(join_and_die(f, true), 0);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.expected, 1);
	assert_int_equal(join_and_die(f, false), 0);
	bkv_storage_group_info_get(g_group, &gi);
	assert_int_equal(gi.expected, 0);
	kill(committer, SIGTERM);
	assert_int_equal(wait_exit(committer), BKV_STORAGE_OK);
	close_storage(f);
	bkv_storage_group_free(g_group);
	g_group = NULL;
	reopen(f);
	assert_int_equal(member_attempts(f, 0), 2);
}

#define GROUP_CRASH_MEMBERS 4

typedef struct crash_report {
	int32_t member;
	uint32_t value;
} crash_report;

/* crash_child for a group member on its own account: reports every value committed, and
 * treats UNAVAILABLE (a commit in doubt, its leader killed) like STALE: re-read, report
 * what the re-read found (committed, whether or not the write in doubt got in), go on.
 * Without that report, a write in doubt that did commit, followed by a commit that the
 * kill cut off before its report, read as two unreported commits. */
typedef struct crash_arg {
	const char *url;
	int out; /* pipe for the reports */
} crash_arg;

static int grouped_crash_child(int index, void *argp)
{
	const crash_arg *a = argp;
	char name[16];
	const size_t len = member_account(index, name);
	bkv_storage *s = child_open(a->url);
	bkv_record r;
	if (s == NULL || bkv_storage_get(s, (const uint8_t *)name, len, &r) != BKV_STORAGE_OK) {
		return 100;
	}
	child_ready_and_wait(); /* every member is open before any writes: all write at once */
	for (;;) {
		const bkv_record n = next_state(&r);
		const bkv_storage_err err = bkv_storage_update(s, &n, r.mac, r.mac_len);
		if (err == BKV_STORAGE_STALE || err == BKV_STORAGE_UNAVAILABLE) {
			if (bkv_storage_get(s, (const uint8_t *)name, len, &r) != BKV_STORAGE_OK) {
				return 103;
			}
		} else if (err == BKV_STORAGE_OK) {
			r = n;
		} else {
			return 101;
		}
		const crash_report rep = {index, r.attempts_used};
		if (!write_full(a->out, &rep, sizeof(rep))) {
			return 102;
		}
	}
}

/* Members committing together are killed at random moments, one at a time, so a kill can
 * land in a leader's commit with other members' writes in it: no member's reported commit
 * is ever lost, and every row holds a whole state. */
static void test_grouped_sigkill_never_loses_a_committed_update(void **state)
{
	fx *f = *state;
	insert_member_accounts(f, GROUP_CRASH_MEMBERS);
	close_storage(f);
	const unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	srand(seed);
	print_message("seed %u\n", seed);
	g_group = bkv_storage_group_create(GROUP_CRASH_MEMBERS);
	assert_non_null(g_group);
	uint32_t floor[GROUP_CRASH_MEMBERS] = {0};
	for (int round = 0; round < CRASH_ROUNDS; round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		crash_arg arg = {f->url, p[1]};
		pid_t pids[GROUP_CRASH_MEMBERS];
		start_children(GROUP_CRASH_MEMBERS, grouped_crash_child, &arg, pids);
		close(p[1]);
		uint32_t last[GROUP_CRASH_MEMBERS];
		memcpy(last, floor, sizeof(last));
		const int wanted = 20 + rand() % 100;
		crash_report rep;
		for (int i = 0; i < wanted && read_full(p[0], &rep, sizeof(rep)); i++) {
			last[rep.member] = rep.value;
		}
		for (int i = 0; i < GROUP_CRASH_MEMBERS; i++) {
			struct timespec pause = {0, (long)(rand() % 2000) * 1000};
			nanosleep(&pause, NULL);
			kill(pids[i], SIGKILL);
			assert_int_equal(wait_exit(pids[i]), -SIGKILL);
			bkv_storage_group_reap(g_group, pids[i]);
		}
		while (read_full(p[0], &rep, sizeof(rep))) {
			last[rep.member] = rep.value;
		}
		close(p[0]);
		reopen(f);
		for (int i = 0; i < GROUP_CRASH_MEMBERS; i++) {
			char name[16];
			const bkv_record r =
			    get_ok(f, (const uint8_t *)name, member_account(i, name));
			assert_true(r.attempts_used >= last[i]);     /* never lowered */
			assert_true(r.attempts_used <= last[i] + 1); /* at most one unreported */
			assert_int_equal(r.guess_seq, r.attempts_used);
			assert_true(has_counter_mac(&r));
			floor[i] = r.attempts_used;
		}
		close_storage(f);
		print_message("round %d: members at %u %u %u %u\n", round, floor[0], floor[1],
		              floor[2], floor[3]);
	}
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g_group, &gi);
	bkv_storage_group_free(g_group);
	g_group = NULL;
	print_message("group: %llu commits carried %llu writes\n", (unsigned long long)gi.batches,
	              (unsigned long long)gi.writes);
	assert_true(gi.writes > gi.batches);
	reopen(f);
}

/* ------------------------------------------------------------------------------------ */
/* PostgreSQL only                                                                       */
/* ------------------------------------------------------------------------------------ */

/* The backend's own session, seen from a trigger: synchronous_commit stays on even when the
 * database's default says off, a statement timeout is set, and writes run READ COMMITTED.
 * A rate take alone commits without waiting for the flush, and that does not outlive it. */
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
	        "CREATE TRIGGER capture BEFORE INSERT OR UPDATE ON records FOR EACH ROW "
	        "EXECUTE FUNCTION bkv_test_capture();"
	        "CREATE TRIGGER capture BEFORE INSERT OR UPDATE ON bkv_rate_buckets FOR EACH ROW "
	        "EXECUTE FUNCTION bkv_test_capture()");
	assert_int_equal(pg_int("SELECT count(*) FROM pg_db_role_setting WHERE setdatabase = "
	                        "(SELECT oid FROM pg_database WHERE datname = current_database())"),
	                 1);
	reopen(f);
	insert_new(f, LIT("alice"));
	/* a rate take, between two writes on the same session: its own transaction alone
	 * commits without waiting for the WAL flush */
	bool taken = false;
	uint64_t level = 0;
	assert_int_equal(bkv_storage_rate_take(f->s, LIT("bucket"), 10, 1, 1, 1000, &taken, &level),
	                 BKV_STORAGE_OK);
	assert_true(taken);
	advance_ok(f, LIT("alice"));
	assert_int_equal(pg_int("SELECT count(*) FROM seen WHERE sync = 'on' AND timeout = '5s' "
	                        "AND isolation = 'read committed' AND app = 'bkvd'"),
	                 2);
	assert_int_equal(pg_int("SELECT count(*) FROM seen WHERE sync = 'off'"), 1);
	assert_int_equal(pg_int("SELECT count(*) FROM seen"), 3);
}

/* A statement stuck in the database is cut off by the statement timeout (here 500 ms,
 * set through the URL), fails with UNAVAILABLE and leaves the row as it was. */
static void test_pg_statement_timeout_bounds_a_stuck_statement(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	insert_new(f, LIT("alice"));
	const bkv_record before = get_ok(f, LIT("alice"));
	const bkv_record n = next_state(&before);
	close_storage(f);
	snprintf(f->url, sizeof(f->url), "%s%soptions=-c%%20statement_timeout%%3D500", pg_url,
	         strchr(pg_url, '?') ? "&" : "?");
	reopen(f);
	pg_exec("CREATE FUNCTION bkv_test_stuck() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
	        "PERFORM pg_sleep(30); RETURN NEW; END$$;"
	        "CREATE TRIGGER inject BEFORE UPDATE ON records FOR EACH ROW "
	        "EXECUTE FUNCTION bkv_test_stuck()");
	const double t0 = now_s();
	assert_int_equal(bkv_storage_update(f->s, &n, before.mac, before.mac_len),
	                 BKV_STORAGE_UNAVAILABLE);
	const double took = now_s() - t0;
	print_message("the stuck update failed after %.3f s\n", took);
	assert_true(took >= 0.4 && took < 3);
	heal(f);
	const bkv_record after = get_ok(f, LIT("alice"));
	assert_same_record(&before, &after);
	assert_int_equal(bkv_storage_update(f->s, &n, before.mac, before.mac_len), BKV_STORAGE_OK);
}

/* The backend's session is terminated in the middle of a transaction, and then inside
 * COMMIT (a deferred trigger runs there, so the answer to COMMIT is lost and the backend
 * must find out on a new connection that the transaction aborted). Every write fails with
 * UNAVAILABLE after its retries, nothing is committed, and the next call reconnects. */
static void test_pg_a_connection_lost_before_or_during_commit_commits_nothing(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	insert_new(f, LIT("alice"));
	const bkv_record before = advance_ok(f, LIT("alice"));
	const bkv_record n = next_state(&before);
	bkv_record bob;
	make_record(&bob, LIT("bob"));
	const uint8_t blob[16] = {1, 2, 3};
	pg_exec("CREATE FUNCTION bkv_test_die() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
	        "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
	        "RETURN COALESCE(NEW, OLD); END$$");
	static const char *const triggers[] = {
	    "CREATE TRIGGER inject BEFORE INSERT OR UPDATE OR DELETE ON records FOR EACH ROW "
	    "EXECUTE FUNCTION bkv_test_die()",
	    "CREATE CONSTRAINT TRIGGER inject AFTER INSERT OR UPDATE OR DELETE ON records "
	    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bkv_test_die()"};
	for (size_t i = 0; i < 2; i++) {
		pg_exec(triggers[i]);
		const double t0 = now_s();
		assert_int_equal(bkv_storage_update(f->s, &n, before.mac, before.mac_len),
		                 BKV_STORAGE_UNAVAILABLE);
		assert_int_equal(bkv_storage_reseal(f->s, LIT("alice"), before.record_version,
		                                    before.mac, before.mac_len, 2, blob,
		                                    sizeof(blob)),
		                 BKV_STORAGE_UNAVAILABLE);
		assert_int_equal(bkv_storage_insert(f->s, &bob), BKV_STORAGE_UNAVAILABLE);
		assert_int_equal(bkv_storage_delete(f->s, LIT("alice")), BKV_STORAGE_UNAVAILABLE);
		print_message("%s: four writes failed in %.3f s\n", i ? "during COMMIT" : "before",
		              now_s() - t0);
		heal(f);
		const bkv_record after = get_ok(f, LIT("alice"));
		assert_same_record(&before, &after);
		bkv_record out;
		assert_int_equal(bkv_storage_get(f->s, LIT("bob"), &out), BKV_STORAGE_NOT_FOUND);
	}
	assert_int_equal(bkv_storage_update(f->s, &n, before.mac, before.mac_len), BKV_STORAGE_OK);
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
 * and the update was written once: the next one goes on from its MAC. */
/* Three members, each advancing its own account once through a group without a committer
 * (the first to find no commit in flight leads); returns each one's result in status. */
static void grouped_advances(fx *f, int status[3])
{
	g_group = bkv_storage_group_create(3);
	assert_non_null(g_group);
	member_arg a = {.url = f->url, .write = advance_own_account};
	pid_t pids[3];
	fork_members(&a, 3, pids);
	for (int i = 0; i < 3; i++) {
		close(a.go_fd[i]);
	}
	for (int i = 0; i < 3; i++) {
		status[i] = wait_exit(pids[i]);
	}
	bkv_storage_group_free(g_group);
	g_group = NULL;
}

/* A batch goes out in one pipeline (storage_pg.c, run_batch). Its server session killed
 * in a write, or in its COMMIT (a deferred trigger), the batch is settled through the
 * transaction id the server flushed first: aborted, so it runs again on a new connection
 * and every write is counted exactly once. A session killed at every run leaves every
 * write UNAVAILABLE and the rows as they were. */
static void test_pg_a_batch_whose_session_dies_runs_again_and_counts_once(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	insert_member_accounts(f, 3);
	close_storage(f);
	pg_exec("CREATE SEQUENCE kills;"
	        "CREATE FUNCTION bkv_test_die_once() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
	        "IF nextval('kills') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
	        "PERFORM pg_sleep(5); END IF; RETURN NEW; END$$");
	static const char *const triggers[] = {
	    "CREATE TRIGGER inject BEFORE UPDATE ON records FOR EACH ROW "
	    "EXECUTE FUNCTION bkv_test_die_once()",
	    "CREATE CONSTRAINT TRIGGER inject AFTER UPDATE ON records DEFERRABLE INITIALLY "
	    "DEFERRED FOR EACH ROW EXECUTE FUNCTION bkv_test_die_once()"};
	for (uint32_t round = 0; round < 2; round++) {
		pg_exec(triggers[round]);
		pg_exec("SELECT setval('kills', 1, false)");
		int status[3];
		grouped_advances(f, status);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(status[i], BKV_STORAGE_OK);
		}
		/* the session was killed once, and the trigger ran again on the next run */
		assert_true(pg_int("SELECT last_value FROM kills") > 1);
		pg_exec("DROP TRIGGER inject ON records");
		reopen(f);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(member_attempts(f, i), round + 1);
		}
		close_storage(f);
	}
	pg_exec("CREATE FUNCTION bkv_test_die() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
	        "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
	        "RETURN NEW; END$$;"
	        "CREATE TRIGGER inject BEFORE UPDATE ON records FOR EACH ROW "
	        "EXECUTE FUNCTION bkv_test_die()");
	int status[3];
	grouped_advances(f, status);
	pg_exec("DROP TRIGGER inject ON records");
	reopen(f);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(status[i], BKV_STORAGE_UNAVAILABLE);
		assert_int_equal(member_attempts(f, i), 2);
	}
}

/* A batch sent on a session the server ended while it was idle (a restart, an operator's
 * pg_terminate_backend) meets that session's error in answer to its BEGIN: nothing of it
 * ran, so it runs again on a new connection instead of being left in doubt. */
static void test_pg_a_batch_on_a_session_the_server_ended_runs_again(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	bkv_storage_group *g = alone_in_a_group(f);
	insert_new(f, LIT("alice"));
	const bkv_record r = advance_ok(f, LIT("alice"));
	const bkv_record n = next_state(&r);
	/* the batch is the first statement on the ended session */
	assert_int_equal(pg_int("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
	                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"),
	                 1);
	assert_int_equal(bkv_storage_update(f->s, &n, r.mac, r.mac_len), BKV_STORAGE_OK);
	bkv_storage_group_info gi;
	bkv_storage_group_info_get(g, &gi);
	assert_int_equal(gi.writes, 3);
	close_storage(f);
	bkv_storage_group_free(g);
	reopen(f);
	assert_int_equal(get_ok(f, LIT("alice")).attempts_used, 2);
}

/* ---- PostgreSQL reads on fibers ---- */

/* A loop as bkvd's worker runs it: watches the descriptor a fiber waits on and resumes
 * that fiber when it is readable, and runs a pass over the ready ones when a fiber kicked.
 * No tick: nothing moves a fiber but those two. */
typedef struct fd_loop {
	int fd;      /* the last descriptor asked for */
	int watches; /* how often one was */
} fd_loop;

static void loop_watch(void *arg, int fd)
{
	fd_loop *l = arg;
	l->fd = fd;
	l->watches++;
}

static bkv_fibers *fibers_on_storage(fx *f, fd_loop *l)
{
	bkv_fibers *fibers = bkv_fibers_new(LANES, 256 * 1024);
	assert_non_null(fibers);
	*l = (fd_loop){.fd = -1};
	bkv_fibers_set_watch(fibers, loop_watch, l);
	const bkv_storage_waiter waiter = BKV_FIBERS_WAITER(fibers);
	bkv_storage_set_waiter(f->s, &waiter);
	return fibers;
}

static void end_fibers_on_storage(fx *f, bkv_fibers *fibers)
{
	bkv_storage_set_waiter(f->s, NULL);
	bkv_fibers_free(fibers);
}

static void run_fd_loop(bkv_fibers *fibers, const fd_loop *l)
{
	const double deadline = now_s() + WAIT_DEADLINE_S;
	for (;;) {
		while (bkv_fibers_kicked(fibers))
			bkv_fibers_resume(fibers, false);
		if (bkv_fibers_busy(fibers) == 0)
			return;
		if (now_s() > deadline)
			fail_msg("%u fibers still wait after %d s", bkv_fibers_busy(fibers),
			         WAIT_DEADLINE_S);
		struct pollfd p = {.fd = l->fd, .events = POLLIN};
		if (poll(&p, 1, 100) > 0)
			bkv_fibers_resume_fd(fibers, l->fd);
	}
}

typedef struct fiber_read {
	bkv_storage *s;
	const char *account;
	int result; /* -1 until it returns */
	bkv_record r;
	bool taken;         /* a rate take (account names the bucket) */
	bkv_fibers *fibers; /* fiber_get_later: the fibers it runs on, */
	const bool *held;   /* and while *held it waits */
	int done;           /* in which place it returned */
} fiber_read;

static int reads_done;

static void fiber_get(void *arg)
{
	fiber_read *c = arg;
	c->result =
	    (int)bkv_storage_get(c->s, (const uint8_t *)c->account, strlen(c->account), &c->r);
	c->done = ++reads_done;
}

static void fiber_take(void *arg)
{
	fiber_read *c = arg;
	uint64_t level = 0;
	c->result =
	    (int)bkv_storage_rate_take(c->s, (const uint8_t *)c->account, strlen(c->account), 10, 1,
	                               1, 1000, &c->taken, &level);
	c->done = ++reads_done;
}

static bool let_go(const void *arg)
{
	return !*(const bool *)arg;
}

/* fiber_get, once the test lets it go on. */
static void fiber_get_later(void *arg)
{
	fiber_read *c = arg;
	while (*c->held)
		bkv_fibers_yield(c->fibers, let_go, c->held);
	fiber_get(arg);
}

/* Every statement on the records held back, reads included (tb_block_reads), until
 * released. One at a time: a test that failed while holding leaves it to the next hold,
 * which ends it first. */
static PGconn *reads_held;

static void hold_reads(void)
{
	if (reads_held != NULL)
		PQfinish(reads_held);
	reads_held = tb_block_reads(pg_url);
}

static void release_reads(void)
{
	tb_release_reads(&reads_held);
}

/* Runs the loop until a session other than not_pid waits for the held lock (a statement
 * was sent), and returns its pid. */
static int64_t pump_until_a_read_waits(bkv_fibers *fibers, const fd_loop *l, int64_t not_pid)
{
	const double deadline = now_s() + WAIT_DEADLINE_S;
	for (;;) {
		const int64_t pid =
		    pg_int("SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE "
		           "datname = current_database() AND wait_event_type = 'Lock'");
		if (pid != 0 && pid != not_pid)
			return pid;
		if (now_s() > deadline)
			fail_msg("no statement came to wait for the lock");
		struct pollfd p = {.fd = l->fd, .events = POLLIN};
		if (poll(&p, 1, 10) > 0)
			bkv_fibers_resume_fd(fibers, l->fd);
	}
}

/* A read on a fiber yields while the server works on it, and the thread goes on: here the
 * server holds it behind a lock while this test, on the same thread, starts a rate take on
 * a second fiber (which waits for the connection), and a caller off the fibers is refused
 * at once rather than blocking (or reading the first fiber's answer). Once the lock goes,
 * the socket wakes the first and its kick the second, without any tick; both get their
 * own answers, and the connection is clean for the next caller. Blocking reads would keep
 * bkv_fibers_run from returning until the lock went. */
static void test_pg_a_read_on_a_fiber_yields_while_the_server_works(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	insert_new(f, LIT("alice"));
	insert_new(f, LIT("bob"));
	const bkv_record alice = get_ok(f, LIT("alice"));
	fd_loop l;
	bkv_fibers *fibers = fibers_on_storage(f, &l);
	hold_reads();
	fiber_read get = {.s = f->s, .account = "alice", .result = -1};
	fiber_read take = {.s = f->s, .account = "bucket", .result = -1};
	assert_true(bkv_fibers_run(fibers, fiber_get, &get));
	assert_int_equal(bkv_fibers_busy(fibers), 1);
	assert_int_equal(l.watches, 1);
	assert_true(l.fd >= 0);
	pump_until_a_read_waits(fibers, &l, 0);
	assert_true(bkv_fibers_run(fibers, fiber_take, &take));
	assert_int_equal(bkv_fibers_busy(fibers), 2);
	assert_int_equal(l.watches, 1); /* the take waits for the connection, not the server */
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("bob"), &r), BKV_STORAGE_UNAVAILABLE);
	assert_int_equal(get.result, -1);
	assert_int_equal(take.result, -1);
	release_reads();
	run_fd_loop(fibers, &l);
	assert_int_equal(get.result, BKV_STORAGE_OK);
	assert_same_record(&get.r, &alice);
	assert_int_equal(take.result, BKV_STORAGE_OK);
	assert_true(take.taken);
	assert_int_equal(l.watches, 2); /* the take's own wait on the server */
	assert_int_equal(bkv_storage_get(f->s, LIT("bob"), &r), BKV_STORAGE_OK);
	end_fibers_on_storage(f, fibers);
}

/* The callers waiting for the connection get it in the order they came, not in the order
 * of their fibers: here the fiber that asks last is the first fiber, and a pass over the
 * ready fibers in index order would let it overtake the take that waited before it. */
static void test_pg_callers_get_the_connection_in_turn(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	insert_new(f, LIT("alice"));
	fd_loop l;
	bkv_fibers *fibers = fibers_on_storage(f, &l);
	hold_reads();
	reads_done = 0;
	bool held = true;
	fiber_read late = {
	    .s = f->s, .account = "alice", .result = -1, .fibers = fibers, .held = &held};
	fiber_read first = {.s = f->s, .account = "alice", .result = -1};
	fiber_read take = {.s = f->s, .account = "bucket", .result = -1};
	assert_true(bkv_fibers_run(fibers, fiber_get_later, &late)); /* fiber 0, parked */
	assert_true(bkv_fibers_run(fibers, fiber_get, &first));      /* its read waits */
	pump_until_a_read_waits(fibers, &l, 0);
	assert_true(bkv_fibers_run(fibers, fiber_take, &take)); /* waits for the connection */
	held = false;
	bkv_fibers_resume(fibers, false); /* the first fiber asks now, after the take */
	assert_int_equal(bkv_fibers_busy(fibers), 3);
	release_reads();
	run_fd_loop(fibers, &l);
	assert_int_equal(first.result, BKV_STORAGE_OK);
	assert_int_equal(take.result, BKV_STORAGE_OK);
	assert_int_equal(late.result, BKV_STORAGE_OK);
	assert_int_equal(first.done, 1);
	assert_int_equal(take.done, 2);
	assert_int_equal(late.done, 3);
	end_fibers_on_storage(f, fibers);
}

/* The session of a read that waits on its fiber is ended by the server: the socket wakes
 * the fiber, which finds the connection lost, reconnects and reads again, on the fiber
 * again (the lock is gone first: a new session's statements are prepared before its read,
 * and preparing waits for the lock as reading does). A take on a session that ends is not
 * run again (it could take twice): UNAVAILABLE. */
static void test_pg_a_read_whose_session_ends_while_its_fiber_waits_runs_again(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	insert_new(f, LIT("alice"));
	const bkv_record alice = get_ok(f, LIT("alice"));
	fd_loop l;
	bkv_fibers *fibers = fibers_on_storage(f, &l);
	hold_reads();
	fiber_read get = {.s = f->s, .account = "alice", .result = -1};
	assert_true(bkv_fibers_run(fibers, fiber_get, &get));
	const int64_t first = pump_until_a_read_waits(fibers, &l, 0);
	const char *end_waiter = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
	                         "WHERE datname = current_database() AND wait_event_type = 'Lock'";
	assert_int_equal(pg_int(end_waiter), 1);
	release_reads();
	const int watched = l.watches;
	run_fd_loop(fibers, &l);
	assert_int_equal(get.result, BKV_STORAGE_OK);
	assert_same_record(&get.r, &alice);
	assert_true(l.watches > watched); /* its second read waited on the new socket */
	assert_int_equal(pg_int("SELECT count(*) FROM pg_stat_activity WHERE datname = "
	                        "current_database() AND application_name = 'bkvd'"),
	                 1);
	char same_pid[96];
	snprintf(same_pid, sizeof(same_pid),
	         "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld", (long long)first);
	assert_int_equal(pg_int(same_pid), 0);
	/* a take whose session ends */
	hold_reads();
	fiber_read take = {.s = f->s, .account = "bucket", .result = -1};
	assert_true(bkv_fibers_run(fibers, fiber_take, &take));
	pump_until_a_read_waits(fibers, &l, 0);
	assert_int_equal(pg_int(end_waiter), 1);
	run_fd_loop(fibers, &l);
	assert_int_equal(take.result, BKV_STORAGE_UNAVAILABLE);
	release_reads();
	bkv_record r;
	assert_int_equal(bkv_storage_get(f->s, LIT("alice"), &r), BKV_STORAGE_OK);
	end_fibers_on_storage(f, fibers);
	assert_int_equal(pg_int("SELECT count(*) FROM bkv_rate_buckets"), 0);
}

static void test_pg_a_commit_whose_answer_is_lost_is_settled_as_committed(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	insert_new(f, LIT("alice"));
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

	const bkv_record first = next_state(&before);
	const bkv_record second = next_state(&first);
	uint32_t lost = 0;
	const bkv_storage_err err = bkv_storage_update(f->s, &first, before.mac, before.mac_len);
	const bool proxy_lost_it = read_report(rep[0], &lost, 2000) && lost == 1;
	const bkv_storage_err err2 = bkv_storage_update(f->s, &second, first.mac, first.mac_len);
	close_storage(f);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(rep[0]);

	assert_true(proxy_lost_it);
	assert_int_equal(err, BKV_STORAGE_OK);
	assert_int_equal(err2, BKV_STORAGE_OK); /* the first one is what the row holds */
	snprintf(f->url, sizeof(f->url), "%s", pg_url);
	reopen(f);
	const bkv_record r = get_ok(f, LIT("alice"));
	assert_same_state(&second, &r);
}

/* PostgreSQL restarts (pg_ctl restart -m fast) while a client updates a counter in a loop:
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
	insert_new(f, LIT("alice"));
	uint32_t floor = 0;
	for (int i = 0; i < 5; i++) {
		floor = advance_ok(f, LIT("alice")).attempts_used;
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
			assert_true(has_counter_mac(&r));
			floor = r.attempts_used;
			const bkv_record n = next_state(&r);
			err = bkv_storage_update(f->s, &n, r.mac, r.mac_len);
			if (err == BKV_STORAGE_OK) {
				floor = n.attempts_used;
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
	print_message("%d updates before the restart, %d UNAVAILABLE from %.3f s to %.3f s, "
	              "%d updates after; slowest call %.3f s\n",
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
	assert_true(has_counter_mac(&r));
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

/* Shared rate buckets                                                                   */

/* 1/min burst 3 in the limiter's units: a request costs 60000, 1 unit refills per ms. */
#define RATE_COST     UINT64_C(60000)
#define RATE_CAPACITY (3 * RATE_COST)
#define RATE_T0       INT64_C(1800000000000)

static bool rate_take(bkv_storage *s, const char *key, int64_t now_ms, uint64_t *level)
{
	bool taken = false;
	assert_int_equal(bkv_storage_rate_take(s, (const uint8_t *)key, strlen(key), RATE_CAPACITY,
	                                       RATE_COST, 1, now_ms, &taken, level),
	                 BKV_STORAGE_OK);
	return taken;
}

static void test_rate_buckets_are_shared_on_postgresql_only(void **state)
{
	fx *f = *state;
	assert_int_equal(bkv_storage_shares_rate_buckets(f->s), on_pg);
	if (on_pg)
		return;
	bool taken;
	uint64_t level;
	assert_int_equal(bkv_storage_rate_take(f->s, (const uint8_t *)"k", 1, RATE_CAPACITY,
	                                       RATE_COST, 1, RATE_T0, &taken, &level),
	                 BKV_STORAGE_ARGUMENT);
}

static void test_pg_rate_take_takes_the_burst_then_refills_at_the_rate(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	uint64_t level = 0;
	assert_true(rate_take(f->s, "alice", RATE_T0, &level));
	assert_int_equal(level, 2 * RATE_COST);
	assert_true(rate_take(f->s, "alice", RATE_T0, &level));
	assert_true(rate_take(f->s, "alice", RATE_T0, &level));
	assert_int_equal(level, 0);
	assert_false(rate_take(f->s, "alice", RATE_T0, &level));
	assert_int_equal(level, 0);
	assert_false(rate_take(f->s, "alice", RATE_T0 + 59999, &level));
	assert_int_equal(level, 59999);
	assert_true(rate_take(f->s, "alice", RATE_T0 + 60000, &level));
	assert_int_equal(level, 0);
	/* another key has a bucket of its own */
	assert_true(rate_take(f->s, "bob", RATE_T0, &level));
	/* a clock that goes back refills nothing; a long wait refills to the capacity only */
	assert_false(rate_take(f->s, "alice", RATE_T0 - 3600000, &level));
	assert_int_equal(level, 0);
	assert_true(rate_take(f->s, "alice", RATE_T0 + INT64_C(86400000) * 365, &level));
	assert_int_equal(level, RATE_CAPACITY - RATE_COST);
}

static void test_pg_rate_prune_deletes_only_buckets_that_are_full_again(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	uint64_t level;
	assert_true(
	    rate_take(f->s, "old", RATE_T0 - 3600000, &level)); /* full since T0 - 3540000 */
	assert_true(rate_take(f->s, "new", RATE_T0, &level));   /* full at T0 + 60000 */
	assert_int_equal(pg_int("SELECT count(*) FROM bkv_rate_buckets"), 2);
	assert_int_equal(bkv_storage_rate_prune(f->s, RATE_T0), BKV_STORAGE_OK);
	assert_int_equal(pg_int("SELECT count(*) FROM bkv_rate_buckets"), 1);
	assert_int_equal(pg_int("SELECT count(*) FROM bkv_rate_buckets WHERE key = 'new'::bytea"),
	                 1);
}

static void test_rate_take_rejects_bad_arguments(void **state)
{
	fx *f = *state;
	bool taken;
	uint64_t level;
	const uint8_t key[1] = {'k'};
	const uint64_t big = UINT64_C(1) << 41;
	assert_int_equal(bkv_storage_rate_take(f->s, NULL, 1, 2, 1, 1, 0, &taken, &level),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_rate_take(f->s, key, 0, 2, 1, 1, 0, &taken, &level),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_rate_take(f->s, key, 1, 2, 0, 1, 0, &taken, &level),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_rate_take(f->s, key, 1, 1, 2, 1, 0, &taken, &level),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_rate_take(f->s, key, 1, 2, 1, 0, 0, &taken, &level),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_rate_take(f->s, key, 1, big, 1, 1, 0, &taken, &level),
	                 BKV_STORAGE_ARGUMENT);
	assert_int_equal(bkv_storage_rate_take(f->s, key, 1, UINT64_C(1) << 40, 1,
	                                       UINT64_C(1) << 23, 0, &taken, &level),
	                 BKV_STORAGE_ARGUMENT);
	if (on_pg)
		assert_int_equal(pg_int("SELECT count(*) FROM bkv_rate_buckets"), 0);
}

static int child_rate_takes(int index, void *arg)
{
	(void)index;
	child_ready_and_wait();
	bkv_storage *s = child_open(arg);
	if (s == NULL)
		return 255;
	int taken_count = 0;
	for (int i = 0; i < 10; i++) {
		bool taken = false;
		uint64_t level;
		if (bkv_storage_rate_take(s, (const uint8_t *)"shared", 6, RATE_CAPACITY, RATE_COST,
		                          1, RATE_T0, &taken, &level) != BKV_STORAGE_OK) {
			taken_count = 254;
			break;
		}
		taken_count += taken;
	}
	bkv_storage_close(s);
	return taken_count;
}

static void test_pg_concurrent_rate_takes_never_exceed_the_burst(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	int status[N_CHILDREN];
	run_children(N_CHILDREN, child_rate_takes, f->url, status);
	int total = 0;
	for (int i = 0; i < N_CHILDREN; i++) {
		assert_true(status[i] >= 0 && status[i] <= 3);
		total += status[i];
	}
	assert_int_equal(total, 3);
}

#define ORDER_MEMBERS 8

/* Member i advances "member-(ORDER_MEMBERS - 1 - i)": queued in member order, the writes
 * come in descending account order. */
static int advance_mirrored_account(bkv_storage *s, int index)
{
	return advance_own_account(s, ORDER_MEMBERS - 1 - index);
}

/* A batch writes its rows in account order whatever order its writes were queued in, so
 * two replicas' batches that share rows lock them in the same order and cannot deadlock
 * (storage_pg.c, pg_commit_batch). A trigger logs each row write with its transaction. */
static void test_pg_a_batch_writes_its_rows_in_account_order(void **state)
{
	POSTGRESQL_ONLY();
	fx *f = *state;
	insert_member_accounts(f, ORDER_MEMBERS);
	close_storage(f);
	pg_exec("CREATE TABLE write_order (n bigserial, xid xid8, account bytea);"
	        "CREATE FUNCTION bkv_test_order() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
	        "INSERT INTO write_order (xid, account) VALUES (pg_current_xact_id(), "
	        "NEW.account_id); RETURN NEW; END$$;"
	        "CREATE TRIGGER order_of_writes BEFORE UPDATE ON records FOR EACH ROW "
	        "EXECUTE FUNCTION bkv_test_order()");
	g_group = bkv_storage_group_create(ORDER_MEMBERS);
	assert_non_null(g_group);
	member_arg a = {.url = f->url, .write = advance_mirrored_account};
	pid_t pids[ORDER_MEMBERS];
	fork_members(&a, ORDER_MEMBERS, pids);
	/* member 0 leads a commit that waits; the others queue behind it */
	tb_block block = block_writes(f);
	close(a.go_fd[0]);
	tg_wait_for_commit(g_group, 0, 1, 0, WAIT_DEADLINE_S);
	for (int i = 1; i < ORDER_MEMBERS; i++) {
		close(a.go_fd[i]);
	}
	tg_wait_for_commit(g_group, 0, 1, ORDER_MEMBERS - 1, WAIT_DEADLINE_S);
	tb_release_writes(&block);
	for (int i = 0; i < ORDER_MEMBERS; i++) {
		assert_int_equal(wait_exit(pids[i]), BKV_STORAGE_OK);
	}
	bkv_storage_group_free(g_group);
	g_group = NULL;
	/* one transaction wrote the seven queued rows, none of them after a greater one */
	assert_int_equal(pg_int("SELECT count(*) FROM (SELECT xid FROM write_order GROUP BY xid "
	                        "HAVING count(*) = 7) t"),
	                 1);
	assert_int_equal(pg_int("SELECT count(*) FROM (SELECT account < lag(account) OVER "
	                        "(PARTITION BY xid ORDER BY n) AS back FROM write_order) w "
	                        "WHERE back"),
	                 0);
	assert_int_equal(pg_int("SELECT count(*) FROM write_order"), ORDER_MEMBERS);
	reopen(f);
	for (int i = 0; i < ORDER_MEMBERS; i++) {
		assert_int_equal(member_attempts(f, i), 1);
	}
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
	    T_DIR(test_open_migrates_a_version_1_database_and_keeps_its_rows),
	    T_OPEN(test_database_is_in_wal_mode),
	    T_DIR(test_connection_uses_synchronous_full),
	    T_DIR(test_concurrent_first_opens_of_a_new_database_all_succeed),
	    cmocka_unit_test(test_strerror_gives_a_distinct_message_for_every_error),
	    /* get and insert */
	    T_OPEN(test_get_of_a_missing_account_is_not_found),
	    T_OPEN(test_insert_then_get_round_trips_every_field),
	    T_OPEN(test_insert_then_get_round_trips_a_tombstone_with_nothing_sealed),
	    T_OPEN(test_insert_then_get_round_trips_an_empty_registration_id_and_mac),
	    T_OPEN(test_insert_round_trips_a_maximum_length_account_with_nul_bytes),
	    T_OPEN(test_accounts_that_differ_only_after_a_nul_byte_are_distinct),
	    T_OPEN(test_insert_over_an_existing_account_is_exists_and_changes_nothing),
	    T_OPEN(test_insert_rejects_bad_arguments_and_stores_nothing),
	    T_OPEN(test_get_rejects_bad_arguments),
	    /* stored values that do not fit */
	    T_OPEN(test_get_of_a_row_with_a_value_that_does_not_fit_is_corrupt),
	    T_OPEN(test_list_sealed_below_of_a_row_that_does_not_fit_is_corrupt),
	    T_OPEN(test_update_of_a_row_that_does_not_fit_is_stale_unless_the_mac_matches),
	    /* update */
	    T_OPEN(test_update_with_the_stored_mac_writes_every_field),
	    T_OPEN(test_update_with_another_mac_is_stale_and_changes_nothing),
	    T_OPEN(test_update_of_a_missing_account_is_not_found_and_creates_nothing),
	    T_OPEN(test_update_with_no_expected_mac_matches_only_a_row_without_a_mac),
	    T_OPEN(test_two_updates_from_the_same_mac_succeed_once),
	    T_OPEN(test_update_changes_only_its_own_account),
	    T_OPEN(test_update_rejects_bad_arguments_and_changes_nothing),
	    /* delete */
	    T_OPEN(test_delete_removes_the_record),
	    T_OPEN(test_delete_of_a_missing_account_is_not_found),
	    T_OPEN(test_the_other_calls_reject_bad_arguments_and_change_nothing),
	    /* re-sealing */
	    T_OPEN(test_list_sealed_below_pages_through_records_in_account_order),
	    T_OPEN(test_list_sealed_below_returns_only_records_below_the_version),
	    T_OPEN(test_list_sealed_below_skips_tombstones),
	    T_OPEN(test_list_sealed_below_resumes_after_an_account_that_is_gone),
	    T_OPEN(test_reseal_replaces_the_blob_and_key_version_and_keeps_the_mac),
	    T_OPEN(test_reseal_with_another_record_version_is_stale_and_changes_nothing),
	    T_OPEN(test_reseal_with_another_mac_is_stale_and_changes_nothing),
	    T_OPEN(test_reseal_of_a_row_without_a_mac_takes_no_mac),
	    T_OPEN(test_reseal_of_a_missing_account_is_stale_and_creates_nothing),
	    T_OPEN(test_count_sealed_with_counts_records_per_key_version),
	    T_OPEN(test_blobs_are_created_once_and_replaced_only_by_compare_and_set),
	    T_OPEN(test_blob_calls_reject_bad_arguments_and_change_nothing),
	    T_OPEN(test_count_sealed_below_counts_records_under_older_versions),
	    /* the seal floor */
	    T_OPEN(test_seal_floor_is_read_back_and_never_lowered),
	    T_OPEN(test_seal_floor_refuses_inserting_a_record_sealed_below_it),
	    T_OPEN(test_seal_floor_refuses_an_update_that_gives_a_row_a_blob_below_it),
	    T_OPEN(test_seal_floor_lets_a_row_below_it_keep_its_blob_and_become_a_tombstone),
	    T_OPEN(test_seal_floor_refuses_a_reseal_below_it),
	    T_OPEN(test_seal_floor_never_lowers_and_survives_reopening),
	    T_OPEN(test_seal_floor_a_count_after_raising_it_sees_every_write_below_it),
	    /* UNAVAILABLE commits nothing */
	    T_OPEN(test_unavailable_update_commits_nothing),
	    T_OPEN(test_unavailable_insert_commits_nothing),
	    T_OPEN(test_unavailable_delete_commits_nothing),
	    T_OPEN(test_unavailable_reseal_commits_nothing),
	    /* concurrency and crashes */
	    T_OPEN(test_concurrent_read_and_update_loops_lose_no_increment),
	    T_OPEN(test_concurrent_updates_from_one_mac_succeed_exactly_once),
	    T_OPEN(test_concurrent_inserts_of_one_account_succeed_exactly_once),
	    T_OPEN(test_sigkill_never_loses_a_committed_update),
	    /* group commit */
	    T_OPEN(test_an_update_that_keeps_the_seal_writes_one_page),
	    T_OPEN(test_group_create_and_join_refuse_bad_arguments),
	    T_OPEN(test_grouped_commits_keep_checkpointing_the_wal),
	    T_OPEN(test_busy_members_checkpoint_once_per_thousand_frames),
	    T_OPEN(test_a_busy_committer_checkpoints_once_per_thousand_frames),
	    T_OPEN(test_grouped_read_and_update_loops_lose_no_increment),
	    T_OPEN(test_grouped_updates_from_one_mac_succeed_exactly_once),
	    T_OPEN(test_grouped_inserts_of_one_account_succeed_exactly_once),
	    T_OPEN(test_one_commit_carries_every_queued_write_with_its_own_result),
	    T_OPEN(test_a_leader_killed_mid_commit_is_reaped_and_its_commit_answered_unavailable),
	    T_OPEN(test_a_leader_killed_mid_commit_is_noticed_by_its_waiters),
	    T_OPEN(test_a_committer_killed_mid_commit_is_reaped_and_the_members_lead),
	    T_OPEN(test_a_committer_killed_mid_commit_is_noticed_by_its_waiters),
	    T_OPEN(test_a_member_with_lanes_has_a_write_in_flight_per_fiber),
	    T_OPEN(test_a_fiber_waiting_on_a_dead_committer_is_answered_unavailable),
	    T_OPEN(test_a_queued_fiber_is_woken_to_lead_the_next_commit),
	    T_OPEN(test_a_member_with_lanes_writes_off_a_fiber_by_sleeping),
	    T_OPEN(test_group_lanes_are_bounded),
	    T_OPEN(test_a_committer_is_alone_and_stops_on_request),
	    T_OPEN(test_a_committer_holds_a_commit_for_a_write_on_its_way),
	    T_OPEN(test_an_announced_write_that_never_comes_releases_the_hold),
	    T_OPEN(test_a_hold_ends_when_its_time_is_up),
	    T_OPEN(test_announced_writes_are_counted_until_queued_or_ended),
	    T_OPEN(test_grouped_sigkill_never_loses_a_committed_update),
	    /* shared rate buckets */
	    T_OPEN(test_rate_buckets_are_shared_on_postgresql_only),
	    T_OPEN(test_pg_rate_take_takes_the_burst_then_refills_at_the_rate),
	    T_OPEN(test_pg_rate_prune_deletes_only_buckets_that_are_full_again),
	    T_OPEN(test_rate_take_rejects_bad_arguments),
	    T_OPEN(test_pg_concurrent_rate_takes_never_exceed_the_burst),
	    T_OPEN(test_pg_a_batch_writes_its_rows_in_account_order),
	    T_OPEN(test_pg_a_batch_whose_session_dies_runs_again_and_counts_once),
	    T_OPEN(test_pg_a_batch_on_a_session_the_server_ended_runs_again),
	    T_OPEN(test_pg_a_read_on_a_fiber_yields_while_the_server_works),
	    T_OPEN(test_pg_a_read_whose_session_ends_while_its_fiber_waits_runs_again),
	    T_OPEN(test_pg_callers_get_the_connection_in_turn),
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
	if (getenv("BKV_TEST_FILTER") != NULL) /* a glob over test names, for development */
		cmocka_set_test_filter(getenv("BKV_TEST_FILTER"));
	return cmocka_run_group_tests_name(on_pg ? "storage (postgresql)" : "storage (sqlite)",
	                                   tests, NULL, NULL);
}
