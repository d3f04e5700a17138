/*
 * storage_pg.c - the PostgreSQL backend (libpq), for several bkvd replicas sharing one
 * database. Same semantics as storage_sqlite.c; every worker process holds its own
 * connection (one per bkv_storage).
 *
 * Invariants:
 *  - Every call that changes a row runs in one explicit READ COMMITTED transaction and
 *    returns BKV_STORAGE_OK only after its COMMIT was acknowledged. synchronous_commit is
 *    left on (the default; a session that inherits "off" is switched back to "on"), so an
 *    acknowledged COMMIT is flushed to the WAL. Every failure path ends in ROLLBACK, or in
 *    a lost connection, on which the server aborts the open transaction itself.
 *  - READ COMMITTED is enough because a row only changes through single conditional
 *    statements: update is one UPDATE ... WHERE account_id = $ AND mac = $, and reseal one
 *    UPDATE that also names the record_version; PostgreSQL re-checks such a WHERE clause
 *    against the newest committed row version after waiting for a concurrent writer's row
 *    lock, so two replicas writing from the same MAC can never both succeed. insert is
 *    one INSERT ... ON CONFLICT DO NOTHING (a concurrent insert of the same account is
 *    waited for, then nothing happens), delete one DELETE. Every value written is
 *    absolute, never computed from the row. Serialization failures and deadlocks (40001,
 *    40P01) cannot normally happen here, but are retried anyway, at most MAX_TRIES runs.
 *  - A COMMIT whose answer is lost with the connection is "in doubt". Each write
 *    transaction learns its transaction id first, so after reconnecting the backend asks
 *    pg_xact_status(): committed -> OK, aborted -> run it again. If that cannot be
 *    settled within a second, the call returns BKV_STORAGE_UNAVAILABLE although the
 *    change may have committed: the only case where UNAVAILABLE does not mean "nothing
 *    committed". The caller re-reads the row and finds either the MAC it expected or the
 *    one it wrote, never anything in between.
 *  - A group's writes (storage.h, "Group commit") commit as one such transaction, sent
 *    in one libpq pipeline: one round trip and one WAL flush for every write of the
 *    host's batch (pg_commit_batch). A COMMIT sent in a pipeline runs even if the
 *    process that sent it dies first: its writes are in doubt, as above.
 *  - With a waiter that can watch a descriptor (storage.h, bkv_storage_set_waiter), the
 *    reads that are single statements outside a transaction (get, rate_take, rate_prune)
 *    yield the caller's fiber until the server's answer is on the socket; every other
 *    statement, and connecting, blocks (run_read).
 *  - A lost connection is re-established on the next call (PQreset), at once the first
 *    time, then no more often than an exponential backoff (50 ms .. 1 s) allows; while
 *    the backoff runs, calls fail at once with BKV_STORAGE_UNAVAILABLE. Connecting is
 *    bounded by connect_timeout, statements by statement_timeout (5 s unless the URL or
 *    the role/database sets one, e.g. ?options=-c%20statement_timeout%3D2000), a dead
 *    peer by TCP keepalives and tcp_user_timeout. URL parameters override these defaults.
 *  - All statements are prepared once per connection, with binary parameters and binary
 *    results (bytea and int8 never go through text escaping). A stored value that does not
 *    fit its bkv_record field is BKV_STORAGE_CORRUPT, never truncated.
 *  - The seal floor (storage.h) is the row of bkv_seal_floor, checked by a trigger on
 *    records. A write that gives a row a sealed blob reads the floor FOR SHARE, a lock
 *    held until it commits or aborts; raising the floor is an UPDATE of that row, which
 *    waits for every such lock and makes later readers wait for it (and then read the new
 *    value: READ COMMITTED re-reads a row after waiting for its lock). So every write that
 *    saw the old floor has committed before a raise commits, and none can see it after.
 *  - The schema is versioned in the table bkv_schema (one row). Migrations are an ordered
 *    list of SQL strings, as in the SQLite backend; each runs in its own transaction under
 *    pg_advisory_xact_lock, so replicas starting together run each one exactly once. A
 *    schema newer than this code is refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "storage_backend.h"

#define OID_BYTEA 17
#define OID_INT8  20

#define MAX_TRIES        4    /* runs of one call: retries after 40001/40P01 or a lost link */
#define RETRY_WINDOW_S   1.0  /* ... and none once the call has taken this long */
#define BACKOFF_MIN_MS   50   /* reconnect backoff after a failed reconnect ... */
#define BACKOFF_MAX_MS   1000 /* ... doubling up to this */
#define IN_DOUBT_POLLS   10   /* pg_xact_status polls while the old transaction runs ... */
#define IN_DOUBT_POLL_MS 100  /* ... this far apart */
#define MIGRATION_LOCK   INT64_C(0x626b762d736368) /* pg_advisory_xact_lock key, "bkv-sch" */
#define SEAL_FLOOR_STATE "BKV01" /* the SQLSTATE of the seal-floor trigger's refusal */

/* Session settings: a statement timeout and an idle-in-transaction timeout unless the URL
 * or the role/database already set one, and never synchronous_commit=off. */
static const char session_sql[] =
    "SELECT set_config('statement_timeout', '5s', false) "
    " WHERE current_setting('statement_timeout') = '0';"
    "SELECT set_config('idle_in_transaction_session_timeout', '10s', false) "
    " WHERE current_setting('idle_in_transaction_session_timeout') = '0';"
    "SELECT set_config('synchronous_commit', 'on', false) "
    " WHERE current_setting('synchronous_commit') = 'off'";

static const char *const migrations[] = {
    /* 1: records and the record_version sequence */
    "CREATE TABLE records ("
    " account_id bytea PRIMARY KEY,"
    " suite bigint NOT NULL,"
    " record_version bigint NOT NULL,"
    " attempts_used bigint NOT NULL,"
    " attempt_limit bigint NOT NULL,"
    " guess_seq bigint NOT NULL,"
    " last_finished_seq bigint NOT NULL,"
    " seal_key_version bigint NOT NULL,"
    " sealed bytea NOT NULL,"
    " registered_at bigint NOT NULL,"
    " updated_at bigint NOT NULL"
    ");"
    "CREATE INDEX records_by_seal_key_version ON records (seal_key_version, account_id);"
    "CREATE SEQUENCE record_version_seq AS bigint MINVALUE 1 NO CYCLE;",
    /* 2: state MACs, registration ids and tombstones; record versions count per account */
    "ALTER TABLE records ADD COLUMN state bigint NOT NULL DEFAULT 1,"
    " ADD COLUMN registration_id bytea NOT NULL DEFAULT '\\x',"
    " ADD COLUMN destroyed_at bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN mac bytea NOT NULL DEFAULT '\\x';"
    "DROP SEQUENCE record_version_seq;",
    /* 3: the seal floor; a row below it may keep its blob, never take one */
    "CREATE TABLE bkv_seal_floor (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),"
    " min_version bigint NOT NULL);"
    "INSERT INTO bkv_seal_floor (min_version) VALUES (0);"
    "CREATE FUNCTION bkv_check_seal_floor() RETURNS trigger LANGUAGE plpgsql AS $$"
    " DECLARE lowest bigint;"
    " BEGIN"
    "  IF NEW.seal_key_version < 1 THEN RETURN NEW; END IF;"
    "  IF TG_OP = 'UPDATE' THEN"
    "   IF NEW.seal_key_version = OLD.seal_key_version AND NEW.sealed = OLD.sealed THEN"
    "    RETURN NEW;"
    "   END IF;"
    "  END IF;"
    "  SELECT min_version INTO lowest FROM bkv_seal_floor FOR SHARE;"
    "  IF NEW.seal_key_version < lowest THEN"
    "   RAISE EXCEPTION 'seal_key_version % is below the seal floor %',"
    "    NEW.seal_key_version, lowest USING ERRCODE = '" SEAL_FLOOR_STATE "';"
    "  END IF;"
    "  RETURN NEW;"
    " END$$;"
    "CREATE TRIGGER records_seal_floor BEFORE INSERT OR UPDATE ON records"
    " FOR EACH ROW EXECUTE FUNCTION bkv_check_seal_floor();",
    /* 4: named blobs */
    "CREATE TABLE bkv_blobs (name text PRIMARY KEY, value bytea NOT NULL);",
    /* 5: token buckets shared by the replicas (bkv_storage_rate_take) */
    "CREATE TABLE bkv_rate_buckets (key bytea PRIMARY KEY, level bigint NOT NULL,"
    " taken boolean NOT NULL, updated_ms bigint NOT NULL, full_at_ms bigint NOT NULL);"
    "CREATE INDEX bkv_rate_buckets_by_full_at ON bkv_rate_buckets (full_at_ms);",
};

#define RECORD_COLUMNS                                                                             \
	"account_id, suite, state, record_version, registration_id, attempts_used, "               \
	"attempt_limit, guess_seq, last_finished_seq, seal_key_version, sealed, registered_at, "   \
	"destroyed_at, updated_at, mac"
#define RECORD_NCOLS 15

#define MAX_PARAMS 16

typedef struct statement {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[MAX_PARAMS];
} statement;

/* The parameters of insert and update: $1 account_id, then the state columns in
 * RECORD_COLUMNS order ($15 mac); update adds $16, the expected mac. */
#define B           OID_BYTEA
#define I           OID_INT8
#define STATE_TYPES B, I, I, I, B, I, I, I, I, I, B, I, I, I, B
static const statement statements[] = {
    {"get", "SELECT " RECORD_COLUMNS " FROM records WHERE account_id = $1", 1, {B}},
    {"exists", "SELECT 1 FROM records WHERE account_id = $1", 1, {B}},
    {"insert",
     "INSERT INTO records (" RECORD_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
     "$10, $11, $12, $13, $14, $15) ON CONFLICT (account_id) DO NOTHING",
     15,
     {STATE_TYPES}},
    {"update",
     "UPDATE records SET suite = $2, state = $3, record_version = $4, registration_id = $5, "
     "attempts_used = $6, attempt_limit = $7, guess_seq = $8, last_finished_seq = $9, "
     "seal_key_version = $10, sealed = $11, registered_at = $12, destroyed_at = $13, "
     "updated_at = $14, mac = $15 WHERE account_id = $1 AND mac = $16",
     16,
     {STATE_TYPES, B}},
    {"delete", "DELETE FROM records WHERE account_id = $1", 1, {B}},
    {"list_sealed_below",
     "SELECT " RECORD_COLUMNS " FROM records WHERE seal_key_version BETWEEN 1 AND $1 - 1 "
     "AND account_id > $2 ORDER BY account_id LIMIT $3",
     3,
     {I, B, I}},
    {"reseal",
     "UPDATE records SET sealed = $1, seal_key_version = $2, updated_at = $3 "
     "WHERE account_id = $4 AND record_version = $5 AND mac = $6",
     6,
     {B, I, I, B, I, B}},
    {"count_sealed_with", "SELECT count(*) FROM records WHERE seal_key_version = $1", 1, {I}},
    {"count_sealed_below",
     "SELECT count(*) FROM records WHERE seal_key_version BETWEEN 1 AND $1 - 1",
     1,
     {I}},
    {"raise_seal_floor",
     "UPDATE bkv_seal_floor SET min_version = GREATEST(min_version, $1)",
     1,
     {I}},
    /* $1 key, $2 capacity, $3 cost, $4 refill per ms, $5 now: one UPSERT refills the
     * bucket for the time since its last take (clamped to $2 ms, so no product overflows),
     * takes $3 if it holds that much, and never moves updated_ms back. Its own implicit
     * transaction commits without waiting for the WAL flush (synchronous_commit off for
     * that transaction alone): a take is not worth a flush, and one the server loses in a
     * crash (the last few hundred ms) only lets a few more requests through, while the
     * attempt limit stays durable (docs/SECURITY.md) */
    {"rate_take",
     "INSERT INTO bkv_rate_buckets AS b (key, level, taken, updated_ms, full_at_ms) "
     "SELECT $1, $2 - $3, true, $5, $5 + ($3 + $4 - 1) / $4 "
     "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait "
     "ON CONFLICT (key) DO UPDATE SET (level, taken, updated_ms, full_at_ms) = ("
     " SELECT n.level, n.taken, greatest(b.updated_ms, $5),"
     "  greatest(b.updated_ms, $5) + ($2 - n.level + $4 - 1) / $4"
     " FROM (SELECT CASE WHEN a.avail >= $3 THEN a.avail - $3 ELSE a.avail END AS level,"
     "        a.avail >= $3 AS taken"
     "       FROM (SELECT least($2, b.level +"
     "             least(greatest($5 - b.updated_ms, 0), $2) * $4) AS avail) a) n) "
     "RETURNING taken, level",
     5,
     {B, I, I, I, I}},
    {"rate_prune", "DELETE FROM bkv_rate_buckets WHERE full_at_ms < $1", 1, {I}},
    {"xact_status", "SELECT pg_xact_status($1::text::xid8)", 1, {0}},
    {"seal_floor", "SELECT min_version FROM bkv_seal_floor", 0, {0}},
    {"blob_get", "SELECT value FROM bkv_blobs WHERE name = $1::text", 1, {0}},
    {"blob_insert",
     "INSERT INTO bkv_blobs (value, name) VALUES ($1, $2::text) ON CONFLICT (name) DO NOTHING",
     2,
     {B, 0}},
    {"blob_update",
     "UPDATE bkv_blobs SET value = $1 WHERE name = $2::text AND value = $3",
     3,
     {B, 0, B}},
    {"blob_delete", "DELETE FROM bkv_blobs WHERE name = $1::text", 1, {0}},
};
#undef STATE_TYPES
#undef B
#undef I

/* Why the last statement failed. */
typedef enum pg_fault {
	FAULT_NONE,
	FAULT_RETRY,      /* serialization failure or deadlock: the transaction can run again */
	FAULT_LOST,       /* the connection is gone: nothing uncommitted survives it */
	FAULT_SEAL_FLOOR, /* the seal-floor trigger refused the write */
	FAULT_ERROR,      /* any other error: give up */
} pg_fault;

typedef struct pg_storage {
	bkv_storage base;
	PGconn *conn;
	bool ready;          /* conn is set up and its statements are prepared */
	pg_fault fault;      /* of the last failed statement */
	unsigned backoff_ms; /* 0 while connected, or after a loss until the first retry */
	double retry_at;     /* monotonic seconds: no reconnect before this */
	bool in_flight;      /* a yielded caller's read is out on conn (run_read) */
	uint32_t next_turn;  /* the turn of the longest-waiting caller yielded for conn */
	uint32_t turns;      /* turns handed out: next_turn == turns when none waits */
} pg_storage;

static double now_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static int64_t now_unix(void)
{
	return (int64_t)time(NULL);
}

static void quiet_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* "what: detail", without the trailing newline libpq's messages end with. */
static void set_why(char *why, size_t why_len, const char *what, const char *detail)
{
	if (why == NULL || why_len == 0)
		return;
	snprintf(why, why_len, "%s: %s", what, detail != NULL ? detail : "unknown error");
	size_t end = strlen(why);
	while (end > 0 && (why[end - 1] == '\n' || why[end - 1] == ' '))
		why[--end] = '\0';
}

/* ---- Parameters and results, binary ---------------------------------------------------- */

typedef struct params {
	const char *values[MAX_PARAMS];
	int lengths[MAX_PARAMS];
	int formats[MAX_PARAMS];
	char ints[MAX_PARAMS][8];
	int n;
} params;

static void p_int(params *p, int64_t v)
{
	const uint64_t u = (uint64_t)v;
	for (int i = 0; i < 8; i++)
		p->ints[p->n][i] = (char)(uint8_t)(u >> (56 - 8 * i));
	p->values[p->n] = p->ints[p->n];
	p->lengths[p->n] = 8;
	p->formats[p->n] = 1;
	p->n++;
}

static void p_bytes(params *p, const uint8_t *b, size_t len)
{
	static const char empty[1] = {0};
	p->values[p->n] = len > 0 ? (const char *)b : empty; /* never NULL: that is SQL NULL */
	p->lengths[p->n] = (int)len;
	p->formats[p->n] = 1;
	p->n++;
}

static void p_text(params *p, const char *s)
{
	p->values[p->n] = s;
	p->lengths[p->n] = 0;
	p->formats[p->n] = 0;
	p->n++;
}

static bool col_int(const PGresult *res, int row, int col, int64_t *v)
{
	if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8 ||
	    PQfformat(res, col) != 1)
		return false;
	const uint8_t *b = (const uint8_t *)PQgetvalue(res, row, col);
	uint64_t u = 0;
	for (int i = 0; i < 8; i++)
		u = u << 8 | b[i];
	*v = (int64_t)u;
	return true;
}

static bool col_u32(const PGresult *res, int row, int col, uint32_t *v)
{
	int64_t x;
	if (!col_int(res, row, col, &x) || x < 0 || x > UINT32_MAX)
		return false;
	*v = (uint32_t)x;
	return true;
}

static bool col_u64(const PGresult *res, int row, int col, uint64_t *v)
{
	int64_t x;
	if (!col_int(res, row, col, &x) || x < 0)
		return false;
	*v = (uint64_t)x;
	return true;
}

/* A bytea of at most cap bytes (at least min). */
static bool col_bytes(const PGresult *res, int row, int col, size_t min, uint8_t *out, size_t cap,
                      size_t *len)
{
	if (PQgetisnull(res, row, col) || PQfformat(res, col) != 1)
		return false;
	const int n = PQgetlength(res, row, col);
	if (n < 0 || (size_t)n < min || (size_t)n > cap)
		return false;
	if (n > 0)
		memcpy(out, PQgetvalue(res, row, col), (size_t)n);
	*len = (size_t)n;
	return true;
}

/* Reads row `row` of RECORD_COLUMNS into r. false (and r zeroed) if a column is missing or
 * does not fit. */
static bool read_record(const PGresult *res, int row, bkv_record *r)
{
	memset(r, 0, sizeof(*r));
	const bool ok =
	    PQnfields(res) == RECORD_NCOLS &&
	    col_bytes(res, row, 0, 1, r->account_id, sizeof(r->account_id), &r->account_id_len) &&
	    col_u32(res, row, 1, &r->suite) && col_u32(res, row, 2, &r->state) &&
	    col_u64(res, row, 3, &r->record_version) &&
	    col_bytes(res, row, 4, 0, r->registration_id, sizeof(r->registration_id),
	              &r->registration_id_len) &&
	    col_u32(res, row, 5, &r->attempts_used) && col_u32(res, row, 6, &r->attempt_limit) &&
	    col_u64(res, row, 7, &r->guess_seq) && col_u64(res, row, 8, &r->last_finished_seq) &&
	    col_u32(res, row, 9, &r->seal_key_version) &&
	    col_bytes(res, row, 10, 0, r->sealed, sizeof(r->sealed), &r->sealed_len) &&
	    col_int(res, row, 11, &r->registered_at) && col_int(res, row, 12, &r->destroyed_at) &&
	    col_int(res, row, 13, &r->updated_at) &&
	    col_bytes(res, row, 14, 0, r->mac, sizeof(r->mac), &r->mac_len);
	if (!ok)
		memset(r, 0, sizeof(*r));
	return ok;
}

/* ---- Statements ------------------------------------------------------------------------ */

static void classify(pg_storage *ps, const PGresult *res)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (PQstatus(ps->conn) != CONNECTION_OK || state == NULL || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "57P", 3) == 0) {
		ps->fault = FAULT_LOST;
		ps->ready = false; /* reconnect before the next statement */
	} else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
		ps->fault = FAULT_RETRY;
	} else if (strcmp(state, SEAL_FLOOR_STATE) == 0) {
		ps->fault = FAULT_SEAL_FLOOR;
	} else {
		ps->fault = FAULT_ERROR;
	}
}

static bool failed(const PGresult *res)
{
	const ExecStatusType st = PQresultStatus(res);
	return res == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK);
}

/* res if it is a statement's success, else NULL with ps->fault set (res cleared). */
static PGresult *succeeded(pg_storage *ps, PGresult *res)
{
	if (!failed(res))
		return res;
	classify(ps, res);
	PQclear(res);
	return NULL;
}

/* Runs a prepared statement with binary results. Its result if it succeeded, else NULL with
 * ps->fault set. */
static PGresult *run(pg_storage *ps, const char *name, const params *p)
{
	return succeeded(
	    ps, PQexecPrepared(ps->conn, name, p->n, p->values, p->lengths, p->formats, 1));
}

/* ---- Reads that yield (storage.h, bkv_storage_set_waiter) -------------------------------
 * On a caller that can yield (a fiber of bkvd's worker), a read sends its statement and
 * yields until the server's answer is on the socket, so the worker's other requests go on
 * meanwhile. The connection carries one statement at a time: while a read is out, every
 * other call on this storage waits for it (wait_for_connection), and the read kicks the
 * loop when it is back. Nothing else yields, so a transaction never has another caller's
 * statement in between its own. */

static bool yields(const pg_storage *ps)
{
	const bkv_storage_waiter *w = &ps->base.waiter;
	return w->yield_fd != NULL && w->can_yield(w->arg);
}

typedef struct turn {
	const pg_storage *ps;
	uint32_t turn;
} turn;

static bool my_turn(const void *arg)
{
	const turn *t = arg;
	return !t->ps->in_flight && t->ps->next_turn == t->turn;
}

/* Waits (yielding) until no read of another caller is out, in turn: the callers that wait
 * for the connection get it first come, first served, never overtaken by one that comes
 * later. false if the caller cannot yield, and a read is out. */
static bool wait_for_connection(pg_storage *ps)
{
	if (!ps->in_flight && ps->next_turn == ps->turns)
		return true;
	if (!yields(ps))
		return !ps->in_flight; /* it runs to its end without yielding */
	const turn mine = {ps, ps->turns++};
	do
		ps->base.waiter.yield(ps->base.waiter.arg, my_turn, &mine);
	while (!my_turn(&mine));
	if (++ps->next_turn != ps->turns)
		ps->base.waiter.kick(ps->base.waiter.arg); /* the next goes on once this is done */
	return true;
}

/* Yields until the socket is readable, then reads what came. false if the connection
 * failed (PQgetResult then answers with the error at once). */
static bool await_input(pg_storage *ps)
{
	const int fd = PQsocket(ps->conn);
	if (fd < 0)
		return false;
	ps->base.waiter.yield_fd(ps->base.waiter.arg, fd);
	return PQconsumeInput(ps->conn) == 1;
}

/* A statement outside any transaction, as run(); on a caller that can yield, it yields
 * while the server works. */
static PGresult *run_read(pg_storage *ps, const char *name, const params *p)
{
	if (!yields(ps))
		return run(ps, name, p);
	PGresult *res = NULL;
	if (PQsendQueryPrepared(ps->conn, name, p->n, p->values, p->lengths, p->formats, 1) == 1) {
		ps->in_flight = true;
		for (;;) {
			while (PQisBusy(ps->conn) && await_input(ps)) {
			}
			PGresult *next = PQgetResult(ps->conn);
			if (next == NULL)
				break;
			if (res == NULL || (failed(next) && !failed(res))) {
				PQclear(res); /* an error wins, as in PQexec */
				res = next;
			} else {
				PQclear(next);
			}
		}
		ps->in_flight = false;
		if (ps->next_turn != ps->turns)
			ps->base.waiter.kick(ps->base.waiter.arg); /* the next in turn goes on */
	}
	return succeeded(ps, res);
}

/* Runs SQL text (several statements allowed). true if the last one succeeded. */
static bool exec_sql(pg_storage *ps, const char *sql, PGresult **out)
{
	PGresult *res = succeeded(ps, PQexec(ps->conn, sql));
	if (res == NULL)
		return false;
	if (out != NULL)
		*out = res;
	else
		PQclear(res);
	return true;
}

static uint64_t affected(const PGresult *res)
{
	return strtoull(PQcmdTuples((PGresult *)res), NULL, 10);
}

/* ---- The connection -------------------------------------------------------------------- */

/* The prepared statements of a connection. */
static bool prepare_statements(pg_storage *ps)
{
	for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++) {
		const statement *st = &statements[i];
		PGresult *res = PQprepare(ps->conn, st->name, st->sql, st->nparams, st->types);
		const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok)
			classify(ps, res);
		PQclear(res);
		if (!ok)
			return false;
	}
	return true;
}

/* Session settings and prepared statements on a fresh connection. */
static bool setup_session(pg_storage *ps)
{
	ps->ready = exec_sql(ps, session_sql, NULL) && prepare_statements(ps);
	return ps->ready;
}

/* Between calls the connection is idle, outside any transaction. Waits for another
 * caller's read that is out (wait_for_connection), and reconnects if the connection was
 * lost, unless the backoff says not yet. false: fail the call with UNAVAILABLE. */
static bool ensure_connected(pg_storage *ps)
{
	if (!wait_for_connection(ps))
		return false;
	if (ps->ready && PQstatus(ps->conn) == CONNECTION_OK) {
		if (PQtransactionStatus(ps->conn) == PQTRANS_IDLE)
			return true;
		/* cannot happen (every path rolls back); never run inside a stale transaction */
		PGresult *res = PQexec(ps->conn, "ROLLBACK");
		PQclear(res);
		if (PQtransactionStatus(ps->conn) == PQTRANS_IDLE)
			return true;
	}
	ps->ready = false;
	if (now_monotonic() < ps->retry_at)
		return false; /* fail fast while the backoff runs */
	PQreset(ps->conn);
	if (PQstatus(ps->conn) == CONNECTION_OK && setup_session(ps)) {
		ps->backoff_ms = 0;
		ps->retry_at = 0;
		return true;
	}
	ps->ready = false;
	ps->backoff_ms = ps->backoff_ms == 0 ? BACKOFF_MIN_MS : ps->backoff_ms * 2;
	if (ps->backoff_ms > BACKOFF_MAX_MS)
		ps->backoff_ms = BACKOFF_MAX_MS;
	ps->retry_at = now_monotonic() + ps->backoff_ms / 1000.0;
	return false;
}

static void rollback(pg_storage *ps)
{
	if (PQstatus(ps->conn) != CONNECTION_OK)
		return; /* the server aborts the transaction of a closed connection */
	PGresult *res = PQexec(ps->conn, "ROLLBACK");
	PQclear(res);
	if (PQtransactionStatus(ps->conn) != PQTRANS_IDLE)
		ps->ready = false;
}

/* A write transaction's first statements: BEGIN, and its id (assigned now) for settling
 * an in-doubt COMMIT. */
#define BEGIN_SQL   "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"
#define XACT_ID_SQL "SELECT pg_current_xact_id()::text"

/* The transaction id from XACT_ID_SQL's result into xid; false if it has none. */
static bool read_xid(const PGresult *res, char xid[24])
{
	const bool ok = PQntuples(res) == 1 && PQgetlength(res, 0, 0) < 24;
	if (ok)
		snprintf(xid, 24, "%s", PQgetvalue(res, 0, 0));
	return ok;
}

static bool begin(pg_storage *ps, char xid[24])
{
	PGresult *res = NULL;
	if (!exec_sql(ps, BEGIN_SQL ";" XACT_ID_SQL, &res)) {
		rollback(ps);
		return false;
	}
	const bool ok = read_xid(res, xid);
	PQclear(res);
	if (!ok) {
		ps->fault = FAULT_ERROR;
		rollback(ps);
	}
	return ok;
}

typedef enum commit_outcome { COMMITTED, ABORTED, IN_DOUBT } commit_outcome;

/* The COMMIT's answer was lost with the connection: ask a new connection what became of
 * transaction xid. */
static commit_outcome settle(pg_storage *ps, const char *xid)
{
	for (int i = 0; i < IN_DOUBT_POLLS; i++) {
		if (i > 0)
			sleep_ms(IN_DOUBT_POLL_MS);
		if (!ensure_connected(ps))
			return IN_DOUBT;
		params p = {.n = 0};
		p_text(&p, xid);
		PGresult *res = run(ps, "xact_status", &p);
		if (res == NULL && ps->fault == FAULT_LOST)
			continue;
		if (res == NULL)
			return IN_DOUBT;
		char status[16] = "";
		if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) && PQgetlength(res, 0, 0) < 16)
			memcpy(status, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
		PQclear(res);
		if (strcmp(status, "committed") == 0)
			return COMMITTED;
		if (strcmp(status, "aborted") == 0)
			return ABORTED;
		/* "in progress": the old backend has not finished yet, ask again; NULL: the
		 * transaction is too old to know */
		if (strcmp(status, "in progress") != 0)
			return IN_DOUBT;
	}
	return IN_DOUBT;
}

/* What became of transaction xid, from its COMMIT's result res (taken; NULL if none came). */
static commit_outcome commit_result(pg_storage *ps, const char *xid, PGresult *res)
{
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		/* COMMIT of a failed transaction answers "ROLLBACK", not an error */
		const bool ok = strcmp(PQcmdStatus(res), "COMMIT") == 0 &&
		                PQtransactionStatus(ps->conn) == PQTRANS_IDLE;
		PQclear(res);
		if (ok)
			return COMMITTED;
		ps->fault = FAULT_ERROR;
	} else {
		classify(ps, res);
		PQclear(res);
	}
	if (ps->fault != FAULT_LOST) {
		rollback(ps); /* a failed COMMIT has already rolled back; make sure */
		return ABORTED;
	}
	const commit_outcome outcome = xid[0] != '\0' ? settle(ps, xid) : IN_DOUBT;
	ps->fault = FAULT_LOST;
	return outcome;
}

static commit_outcome commit(pg_storage *ps, const char *xid)
{
	return commit_result(ps, xid, PQexec(ps->conn, "COMMIT"));
}

/* The body of a call: statements on ps->conn. Returns OK to commit (when in a transaction),
 * UNAVAILABLE when a statement failed (ps->fault says why), or another result to roll
 * back and return. */
typedef bkv_storage_err (*body_fn)(pg_storage *ps, void *ctx);

/* One run of a call on a connected ps. Sets *again when the call may run once more:
 * nothing committed, and the failure was a serialization failure, a deadlock or a lost
 * connection. */
typedef bkv_storage_err (*run_fn)(pg_storage *ps, void *ctx, bool *again);

static bool may_run_again(const pg_storage *ps)
{
	return ps->fault == FAULT_RETRY || ps->fault == FAULT_LOST;
}

/* Runs once at most MAX_TRIES times and not after RETRY_WINDOW_S, as long as it says it
 * may run again. */
static bkv_storage_err attempt_runs(pg_storage *ps, run_fn once, void *ctx)
{
	const double start = now_monotonic();
	for (int t = 0; t < MAX_TRIES; t++) {
		if (t > 0 && now_monotonic() - start > RETRY_WINDOW_S)
			break;
		if (t > 0 && ps->fault == FAULT_RETRY) /* 1, 2, 4 ms and a little jitter */
			sleep_ms((1u << (t - 1)) + (unsigned)(now_monotonic() * 1e6) % 3);
		if (!ensure_connected(ps))
			return BKV_STORAGE_UNAVAILABLE;
		ps->fault = FAULT_NONE;
		bool again = false;
		const bkv_storage_err err = once(ps, ctx, &again);
		if (!again)
			return err;
	}
	return BKV_STORAGE_UNAVAILABLE;
}

/* A run's result from its COMMIT's outcome; one that aborted may run again. */
static bkv_storage_err after_commit(const pg_storage *ps, commit_outcome outcome, bool *again)
{
	if (outcome == COMMITTED)
		return BKV_STORAGE_OK;
	*again = outcome == ABORTED && may_run_again(ps);
	return BKV_STORAGE_UNAVAILABLE;
}

typedef struct call {
	bool write;
	body_fn body;
	void *ctx;
} call;

/* body, in a transaction if it writes: BEGIN, body and COMMIT, a round trip each. A lost
 * connection before COMMIT, or at COMMIT if the transaction is known to have aborted, may
 * run again. */
static bkv_storage_err run_call(pg_storage *ps, void *p, bool *again)
{
	const call *c = p;
	char xid[24] = "";
	if (c->write && !begin(ps, xid)) {
		*again = may_run_again(ps);
		return BKV_STORAGE_UNAVAILABLE;
	}
	const bkv_storage_err err = c->body(ps, c->ctx);
	if (err != BKV_STORAGE_OK || !c->write) {
		if (c->write)
			rollback(ps);
		*again = err == BKV_STORAGE_UNAVAILABLE && may_run_again(ps);
		return err;
	}
	return after_commit(ps, commit(ps, xid), again);
}

static bkv_storage_err attempt(pg_storage *ps, bool write, body_fn body, void *ctx)
{
	call c = {write, body, ctx};
	return attempt_runs(ps, run_call, &c);
}

/* ---- Operations ------------------------------------------------------------------------ */

static pg_storage *pg_of(bkv_storage *s)
{
	return (pg_storage *)s;
}

typedef struct get_ctx {
	const uint8_t *account;
	size_t len;
	bkv_record *out;
} get_ctx;

static bkv_storage_err get_body(pg_storage *ps, void *p)
{
	get_ctx *c = p;
	params q = {.n = 0};
	p_bytes(&q, c->account, c->len);
	PGresult *res = run_read(ps, "get", &q);
	if (res == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	bkv_storage_err err = BKV_STORAGE_NOT_FOUND; /* else one row: account_id is the key */
	if (PQntuples(res) > 0)
		err = read_record(res, 0, c->out) ? BKV_STORAGE_OK : BKV_STORAGE_CORRUPT;
	PQclear(res);
	return err;
}

static bkv_storage_err pg_get(bkv_storage *s, const uint8_t *account, size_t len, bkv_record *out)
{
	get_ctx c = {account, len, out};
	return attempt(pg_of(s), false, get_body, &c);
}

/* $1 account_id and the state columns of r, as insert and update take them. */
static void p_record(params *q, const bkv_record *r, int64_t now)
{
	p_bytes(q, r->account_id, r->account_id_len);
	p_int(q, r->suite);
	p_int(q, r->state);
	p_int(q, (int64_t)r->record_version);
	p_bytes(q, r->registration_id, r->registration_id_len);
	p_int(q, r->attempts_used);
	p_int(q, r->attempt_limit);
	p_int(q, (int64_t)r->guess_seq);
	p_int(q, (int64_t)r->last_finished_seq);
	p_int(q, r->seal_key_version);
	p_bytes(q, r->sealed, r->sealed_len);
	p_int(q, r->registered_at);
	p_int(q, r->destroyed_at);
	p_int(q, now);
	p_bytes(q, r->mac, r->mac_len);
}

/* Runs a conditional write; *n receives how many rows it changed. */
static bkv_storage_err run_counted(pg_storage *ps, const char *name, const params *q, uint64_t *n)
{
	PGresult *res = run(ps, name, q);
	if (res == NULL)
		return ps->fault == FAULT_SEAL_FLOOR ? BKV_STORAGE_SEAL_FLOOR
		                                     : BKV_STORAGE_UNAVAILABLE;
	*n = affected(res);
	PQclear(res);
	return BKV_STORAGE_OK;
}

/* The parameters of a grouped write into q, and its statement's name. */
static const char *op_params(const bkv_group_op *op, params *q)
{
	*q = (params){.n = 0};
	switch (op->kind) {
	case BKV_GROUP_INSERT:
		p_record(q, &op->record, now_unix());
		return "insert";
	case BKV_GROUP_UPDATE:
		p_record(q, &op->record, now_unix());
		p_bytes(q, op->expected_mac, op->expected_mac_len);
		return "update";
	case BKV_GROUP_DELETE:
		p_bytes(q, op->record.account_id, op->record.account_id_len);
		return "delete";
	}
	return NULL;
}

/* What a write that changed no row means: an insert found the account, a delete did not,
 * and an update found no row or another MAC (STALE here; exists_or_not_found tells). */
static bkv_storage_err no_row_changed(bkv_group_kind kind)
{
	return kind == BKV_GROUP_INSERT
	           ? BKV_STORAGE_EXISTS
	           : (kind == BKV_GROUP_DELETE ? BKV_STORAGE_NOT_FOUND : BKV_STORAGE_STALE);
}

/* An update that changed nothing: STALE if the account has a row, else NOT_FOUND. */
static bkv_storage_err exists_or_not_found(pg_storage *ps, const uint8_t *account, size_t len)
{
	params k = {.n = 0};
	p_bytes(&k, account, len);
	PGresult *res = run(ps, "exists", &k);
	if (res == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	const bkv_storage_err err = PQntuples(res) > 0 ? BKV_STORAGE_STALE : BKV_STORAGE_NOT_FOUND;
	PQclear(res);
	return err;
}

/* One grouped write, inside the caller's transaction. */
static bkv_storage_err op_body(pg_storage *ps, void *p)
{
	const bkv_group_op *op = p;
	params q;
	const char *name = op_params(op, &q);
	if (name == NULL)
		return BKV_STORAGE_ARGUMENT;
	uint64_t n = 0;
	bkv_storage_err err = run_counted(ps, name, &q, &n);
	if (err != BKV_STORAGE_OK || n > 0)
		return err;
	err = no_row_changed(op->kind);
	return err == BKV_STORAGE_STALE
	           ? exists_or_not_found(ps, op->record.account_id, op->record.account_id_len)
	           : err;
}

static bkv_storage_err pg_insert(bkv_storage *s, const bkv_record *r)
{
	bkv_group_op op = {.kind = BKV_GROUP_INSERT, .record = *r};
	return attempt(pg_of(s), true, op_body, &op);
}

static bkv_storage_err pg_update(bkv_storage *s, const bkv_record *r, const uint8_t *expected_mac,
                                 size_t expected_mac_len)
{
	bkv_group_op op = {.kind = BKV_GROUP_UPDATE, .record = *r};
	if (expected_mac_len > 0) /* (storage.c checked it) */
		memcpy(op.expected_mac, expected_mac, expected_mac_len);
	op.expected_mac_len = expected_mac_len;
	return attempt(pg_of(s), true, op_body, &op);
}

static bkv_storage_err pg_delete(bkv_storage *s, const uint8_t *account, size_t len)
{
	bkv_group_op op = {.kind = BKV_GROUP_DELETE};
	memcpy(op.record.account_id, account, len); /* (storage.c checked it) */
	op.record.account_id_len = len;
	return attempt(pg_of(s), true, op_body, &op);
}

typedef struct list_ctx {
	uint32_t min_version;
	const uint8_t *after;
	size_t after_len;
	bkv_record *out;
	size_t max, count;
} list_ctx;

static bkv_storage_err list_body(pg_storage *ps, void *p)
{
	list_ctx *c = p;
	params q = {.n = 0};
	p_int(&q, c->min_version);
	p_bytes(&q, c->after, c->after_len); /* every account id sorts after the empty bytea */
	p_int(&q, c->max > INT64_MAX ? INT64_MAX : (int64_t)c->max);
	PGresult *res = run(ps, "list_sealed_below", &q);
	if (res == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	const int rows = PQntuples(res);
	bool ok = rows >= 0 && (size_t)rows <= c->max;
	for (int i = 0; ok && i < rows; i++)
		ok = read_record(res, i, &c->out[i]);
	PQclear(res);
	if (!ok)
		return BKV_STORAGE_CORRUPT;
	c->count = (size_t)rows;
	return BKV_STORAGE_OK;
}

static bkv_storage_err pg_list_sealed_below(bkv_storage *s, uint32_t min_version,
                                            const uint8_t *after, size_t after_len, bkv_record *out,
                                            size_t max, size_t *count)
{
	list_ctx c = {min_version, after, after_len, out, max, 0};
	bkv_storage_err err = attempt(pg_of(s), false, list_body, &c);
	if (err == BKV_STORAGE_OK)
		*count = c.count;
	return err;
}

typedef struct reseal_ctx {
	const uint8_t *account;
	size_t len;
	uint64_t record_version;
	const uint8_t *mac;
	size_t mac_len;
	uint32_t seal_key_version;
	const uint8_t *sealed;
	size_t sealed_len;
} reseal_ctx;

static bkv_storage_err reseal_body(pg_storage *ps, void *p)
{
	const reseal_ctx *c = p;
	params q = {.n = 0};
	p_bytes(&q, c->sealed, c->sealed_len);
	p_int(&q, c->seal_key_version);
	p_int(&q, now_unix());
	p_bytes(&q, c->account, c->len);
	p_int(&q, (int64_t)c->record_version);
	p_bytes(&q, c->mac, c->mac_len);
	uint64_t n = 0;
	bkv_storage_err err = run_counted(ps, "reseal", &q, &n);
	if (err == BKV_STORAGE_OK && n == 0)
		err = BKV_STORAGE_STALE;
	return err;
}

static bkv_storage_err pg_reseal(bkv_storage *s, const uint8_t *account, size_t len,
                                 uint64_t record_version, const uint8_t *mac, size_t mac_len,
                                 uint32_t seal_key_version, const uint8_t *sealed,
                                 size_t sealed_len)
{
	reseal_ctx c = {
	    account, len, record_version, mac, mac_len, seal_key_version, sealed, sealed_len,
	};
	return attempt(pg_of(s), true, reseal_body, &c);
}

/* count_sealed_with (version) or count_sealed_below (min_version): one count(*). */
typedef struct count_ctx {
	const char *name; /* of the prepared statement */
	uint32_t version;
	uint64_t count;
} count_ctx;

static bkv_storage_err count_body(pg_storage *ps, void *p)
{
	count_ctx *c = p;
	params q = {.n = 0};
	p_int(&q, c->version);
	PGresult *res = run(ps, c->name, &q);
	if (res == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	const bool ok = PQntuples(res) == 1 && col_u64(res, 0, 0, &c->count);
	PQclear(res);
	if (!ok)
		ps->fault = FAULT_ERROR;
	return ok ? BKV_STORAGE_OK : BKV_STORAGE_UNAVAILABLE;
}

static bkv_storage_err count(bkv_storage *s, const char *name, uint32_t version, uint64_t *out)
{
	count_ctx c = {name, version, 0};
	bkv_storage_err err = attempt(pg_of(s), false, count_body, &c);
	if (err == BKV_STORAGE_OK)
		*out = c.count;
	return err;
}

static bkv_storage_err pg_count_sealed_with(bkv_storage *s, uint32_t version, uint64_t *n)
{
	return count(s, "count_sealed_with", version, n);
}

static bkv_storage_err pg_count_sealed_below(bkv_storage *s, uint32_t min_version, uint64_t *n)
{
	return count(s, "count_sealed_below", min_version, n);
}

static bkv_storage_err raise_floor_body(pg_storage *ps, void *p)
{
	params q = {.n = 0};
	p_int(&q, *(const uint32_t *)p);
	uint64_t n = 0;
	bkv_storage_err err = run_counted(ps, "raise_seal_floor", &q, &n);
	if (err == BKV_STORAGE_OK && n != 1) {
		ps->fault = FAULT_ERROR; /* the migration wrote the one row */
		err = BKV_STORAGE_UNAVAILABLE;
	}
	return err;
}

static bkv_storage_err pg_raise_seal_floor(bkv_storage *s, uint32_t min_version)
{
	return attempt(pg_of(s), true, raise_floor_body, &min_version);
}

/* One statement in its own implicit transaction: a take is never retried, since a retry
 * after a lost COMMIT could take twice. */
static bkv_storage_err pg_rate_take(bkv_storage *s, const uint8_t *key, size_t key_len,
                                    uint64_t capacity, uint64_t cost, uint64_t refill_per_ms,
                                    int64_t now_ms, bool *taken, uint64_t *level)
{
	pg_storage *ps = pg_of(s);
	if (!ensure_connected(ps))
		return BKV_STORAGE_UNAVAILABLE;
	params q = {.n = 0};
	p_bytes(&q, key, key_len);
	p_int(&q, (int64_t)capacity);
	p_int(&q, (int64_t)cost);
	p_int(&q, (int64_t)refill_per_ms);
	p_int(&q, now_ms);
	PGresult *res = run_read(ps, "rate_take", &q);
	if (res == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	bool ok = PQntuples(res) == 1 && PQnfields(res) == 2 && !PQgetisnull(res, 0, 0) &&
	          PQfformat(res, 0) == 1 && PQgetlength(res, 0, 0) == 1 &&
	          col_u64(res, 0, 1, level);
	if (ok)
		*taken = PQgetvalue(res, 0, 0)[0] != 0;
	PQclear(res);
	return ok ? BKV_STORAGE_OK : BKV_STORAGE_CORRUPT;
}

static bkv_storage_err pg_rate_prune(bkv_storage *s, int64_t now_ms)
{
	pg_storage *ps = pg_of(s);
	if (!ensure_connected(ps))
		return BKV_STORAGE_UNAVAILABLE;
	params q = {.n = 0};
	p_int(&q, now_ms);
	PGresult *res = run_read(ps, "rate_prune", &q);
	if (res == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	PQclear(res);
	return BKV_STORAGE_OK;
}

static bkv_storage_err seal_floor_body(pg_storage *ps, void *p)
{
	params q = {.n = 0};
	PGresult *res = run(ps, "seal_floor", &q);
	if (res == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	bkv_storage_err err = BKV_STORAGE_CORRUPT;
	if (PQntuples(res) == 1 && col_u32(res, 0, 0, p))
		err = BKV_STORAGE_OK;
	PQclear(res);
	return err;
}

static bkv_storage_err pg_seal_floor(bkv_storage *s, uint32_t *min_version)
{
	return attempt(pg_of(s), false, seal_floor_body, min_version);
}

typedef struct blob_ctx {
	const char *name;
	const uint8_t *old;
	size_t old_len;
	const uint8_t *value; /* put */
	size_t len;
	uint8_t *out; /* get */
	size_t cap;
	size_t *out_len;
} blob_ctx;

static bkv_storage_err blob_get_body(pg_storage *ps, void *p)
{
	blob_ctx *c = p;
	params q = {.n = 0};
	p_text(&q, c->name);
	PGresult *res = run(ps, "blob_get", &q);
	if (res == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	bkv_storage_err err = BKV_STORAGE_NOT_FOUND; /* else one row: name is the key */
	if (PQntuples(res) > 0)
		err = col_bytes(res, 0, 0, 1, c->out, c->cap, c->out_len) ? BKV_STORAGE_OK
		                                                          : BKV_STORAGE_CORRUPT;
	PQclear(res);
	return err;
}

static bkv_storage_err pg_blob_get(bkv_storage *s, const char *name, uint8_t *out, size_t cap,
                                   size_t *len)
{
	blob_ctx c = {.name = name, .out = out, .cap = cap, .out_len = len};
	return attempt(pg_of(s), false, blob_get_body, &c);
}

static bkv_storage_err blob_put_body(pg_storage *ps, void *p)
{
	blob_ctx *c = p;
	params q = {.n = 0};
	p_bytes(&q, c->value, c->len);
	p_text(&q, c->name);
	if (c->old != NULL)
		p_bytes(&q, c->old, c->old_len);
	uint64_t n = 0;
	bkv_storage_err err =
	    run_counted(ps, c->old == NULL ? "blob_insert" : "blob_update", &q, &n);
	if (err != BKV_STORAGE_OK || n > 0)
		return err;
	if (c->old == NULL)
		return BKV_STORAGE_EXISTS;
	uint8_t current[BKV_STORAGE_BLOB_MAX];
	size_t len;
	blob_ctx g = {.name = c->name, .out = current, .cap = sizeof(current), .out_len = &len};
	err = blob_get_body(ps, &g);
	return err == BKV_STORAGE_OK ? BKV_STORAGE_STALE : err;
}

static bkv_storage_err pg_blob_put(bkv_storage *s, const char *name, const uint8_t *old,
                                   size_t old_len, const uint8_t *value, size_t len)
{
	blob_ctx c = {.name = name, .old = old, .old_len = old_len, .value = value, .len = len};
	return attempt(pg_of(s), true, blob_put_body, &c);
}

static bkv_storage_err blob_delete_body(pg_storage *ps, void *p)
{
	params q = {.n = 0};
	p_text(&q, ((blob_ctx *)p)->name);
	uint64_t n = 0;
	bkv_storage_err err = run_counted(ps, "blob_delete", &q, &n);
	if (err == BKV_STORAGE_OK && n == 0)
		err = BKV_STORAGE_NOT_FOUND;
	return err;
}

static bkv_storage_err pg_blob_delete(bkv_storage *s, const char *name)
{
	blob_ctx c = {.name = name};
	return attempt(pg_of(s), true, blob_delete_body, &c);
}

/* ---- Group commit ---------------------------------------------------------------------- */

/* Account order (bytea's: bytes, then length), then queue order. */
static int by_account(const void *a, const void *b)
{
	const bkv_group_op *x = *(bkv_group_op *const *)a, *y = *(bkv_group_op *const *)b;
	const size_t lx = x->record.account_id_len, ly = y->record.account_id_len;
	const int c = memcmp(x->record.account_id, y->record.account_id, lx < ly ? lx : ly);
	if (c != 0 || lx != ly)
		return c != 0 ? c : (lx < ly ? -1 : 1);
	return x < y ? -1 : (x > y);
}

/* The next result of a pipeline: NULL (ps->fault set) if the connection failed. Swallows
 * the NULL that ends each query's results. */
static PGresult *pipeline_result(pg_storage *ps)
{
	PGresult *res = PQgetResult(ps->conn);
	if (res == NULL) {
		classify(ps, NULL);
		return NULL;
	}
	if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
		PGresult *extra = PQgetResult(ps->conn);
		if (extra != NULL) { /* (one result per statement here) */
			PQclear(extra);
			ps->fault = FAULT_LOST;
			ps->ready = false; /* out of step: reconnect before the next call */
		}
	}
	return res;
}

/* The fault of a statement's result in a pipeline (FAULT_NONE if it succeeded); after the
 * first failure the server skips the rest of the pipeline (PGRES_PIPELINE_ABORTED). */
static void note_fault(pg_storage *ps, const PGresult *res)
{
	if (ps->fault == FAULT_NONE && failed(res))
		classify(ps, PQresultStatus(res) == PGRES_PIPELINE_ABORTED ? NULL : res);
}

typedef struct batch_ctx {
	bkv_group_op **ops;
	size_t n;
} batch_ctx;

/*
 * One run of a batch, in one round trip: BEGIN, the transaction's id, every write and
 * COMMIT go out in one pipeline, and their results come back together. A session the
 * server ends (pg_terminate_backend, a restart) still sends what it had computed before
 * its error, the id among it, to settle the COMMIT with; a connection cut without a word
 * leaves the batch in doubt (UNAVAILABLE), as a lost COMMIT does. Each write's result is
 * set from the rows it changed; an update that changed none is STALE until run_batch's
 * caller tells it from NOT_FOUND.
 */
static bkv_storage_err run_batch(pg_storage *ps, void *p, bool *again)
{
	const batch_ctx *c = p;
	bool sent = PQenterPipelineMode(ps->conn) == 1 &&
	            PQsendQueryParams(ps->conn, BEGIN_SQL, 0, NULL, NULL, NULL, NULL, 1) == 1 &&
	            PQsendQueryParams(ps->conn, XACT_ID_SQL, 0, NULL, NULL, NULL, NULL, 0) == 1;
	for (size_t i = 0; i < c->n && sent; i++) {
		params q;
		const char *name = op_params(c->ops[i], &q);
		sent = name != NULL && PQsendQueryPrepared(ps->conn, name, q.n, q.values, q.lengths,
		                                           q.formats, 1) == 1;
	}
	sent = sent && PQsendQueryParams(ps->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 1) == 1 &&
	       PQpipelineSync(ps->conn) == 1;
	if (!sent) {
		/* nothing was sent, or the connection failed on the way: settled as lost, since
		 * part of it may have reached the server without the id */
		classify(ps, NULL);
		return BKV_STORAGE_UNAVAILABLE;
	}
	char xid[24] = "";
	PGresult *res = pipeline_result(ps); /* BEGIN */
	/* An error in answer to BEGIN (a session the server had ended already, say) means the
	 * server ran none of it: after an error it skips all up to the sync. */
	const bool refused = res != NULL && PQresultStatus(res) != PGRES_COMMAND_OK;
	if (res != NULL) {
		note_fault(ps, res);
		PQclear(res);
		res = pipeline_result(ps); /* the id */
	}
	if (res != NULL) {
		note_fault(ps, res);
		if (ps->fault == FAULT_NONE)
			read_xid(res, xid);
		PQclear(res);
	}
	for (size_t i = 0; i < c->n && ps->fault != FAULT_LOST; i++) {
		res = pipeline_result(ps);
		if (res == NULL)
			break;
		note_fault(ps, res);
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			c->ops[i]->result =
			    affected(res) > 0 ? BKV_STORAGE_OK : no_row_changed(c->ops[i]->kind);
		PQclear(res);
	}
	const pg_fault fault = ps->fault;
	PGresult *commit_res = fault != FAULT_LOST ? pipeline_result(ps) : NULL;
	res = ps->fault != FAULT_LOST ? pipeline_result(ps) : NULL; /* the sync */
	if (PQresultStatus(res) != PGRES_PIPELINE_SYNC || PQexitPipelineMode(ps->conn) != 1) {
		ps->fault = FAULT_LOST;
		ps->ready = false; /* never reused half-read: reconnected before the next call */
	}
	PQclear(res);
	if (fault != FAULT_NONE && fault != FAULT_LOST) {
		/* a statement failed: the COMMIT was skipped and the transaction aborted */
		PQclear(commit_res);
		ps->fault = fault;
		rollback(ps);
		*again = fault == FAULT_RETRY;
		return fault == FAULT_SEAL_FLOOR ? BKV_STORAGE_SEAL_FLOOR : BKV_STORAGE_UNAVAILABLE;
	}
	if (ps->fault == FAULT_LOST) {
		PQclear(commit_res);
		commit_res = NULL;
		if (refused) {
			*again = true;
			return BKV_STORAGE_UNAVAILABLE;
		}
	}
	return after_commit(ps, commit_result(ps, xid, commit_res), again);
}

/*
 * The group's writes in one transaction, one round trip and one WAL flush (run_batch).
 * Rows are written in account order, so two replicas' batches lock shared rows in the same
 * order and never deadlock each other. The batch runs as a single write does: again after
 * a lost connection or a deadlock, its COMMIT settled when in doubt, and every result
 * UNAVAILABLE if it did not commit. A statement that fails for one write alone (the seal
 * floor's trigger, any other error) aborts the whole transaction in PostgreSQL; then, and
 * nothing having committed, each write runs again in a transaction of its own, so only
 * that one carries the refusal.
 */
static void pg_commit_batch(bkv_storage *s, bkv_group_op *const *ops, size_t n)
{
	pg_storage *ps = pg_of(s);
	bkv_group_op *sorted[BKV_STORAGE_GROUP_SLOTS];
	if (n == 0 || n > BKV_STORAGE_GROUP_SLOTS)
		return;
	memcpy(sorted, ops, n * sizeof(*ops));
	qsort(sorted, n, sizeof(*sorted), by_account);
	batch_ctx c = {sorted, n};
	const bkv_storage_err err = attempt_runs(ps, run_batch, &c);
	const bool op_refused = err == BKV_STORAGE_SEAL_FLOOR ||
	                        (err == BKV_STORAGE_UNAVAILABLE && ps->fault == FAULT_ERROR);
	for (size_t i = 0; i < n; i++) {
		bkv_group_op *op = sorted[i];
		if (err == BKV_STORAGE_OK) {
			/* committed; an update that changed nothing found no row, or another MAC */
			if (op->result == BKV_STORAGE_STALE)
				op->result = exists_or_not_found(ps, op->record.account_id,
				                                 op->record.account_id_len);
		} else if (!op_refused) {
			op->result = BKV_STORAGE_UNAVAILABLE;
		} else if (n == 1) {
			op->result = err;
		} else {
			op->result = attempt(ps, true, op_body, op);
		}
	}
}

static void pg_close(bkv_storage *s)
{
	pg_storage *ps = pg_of(s);
	PQfinish(ps->conn);
	free(ps);
}

static const bkv_storage_ops pg_ops = {
    .close = pg_close,
    .get = pg_get,
    .insert = pg_insert,
    .update = pg_update,
    .delete_record = pg_delete,
    .list_sealed_below = pg_list_sealed_below,
    .reseal = pg_reseal,
    .count_sealed_with = pg_count_sealed_with,
    .count_sealed_below = pg_count_sealed_below,
    .raise_seal_floor = pg_raise_seal_floor,
    .seal_floor = pg_seal_floor,
    .blob_get = pg_blob_get,
    .blob_put = pg_blob_put,
    .blob_delete = pg_blob_delete,
    .rate_take = pg_rate_take,
    .rate_prune = pg_rate_prune,
    .commit_batch = pg_commit_batch,
};

/* ---- Schema ---------------------------------------------------------------------------- */

static bool migrate_fail(pg_storage *ps, char *why, size_t why_len, const char *what)
{
	set_why(why, why_len, what, PQerrorMessage(ps->conn));
	rollback(ps);
	return false;
}

/* Reads the first column of the one row sql returns, as text. */
static bool query_text(pg_storage *ps, const char *sql, char *out, size_t cap)
{
	PGresult *res = NULL;
	if (!exec_sql(ps, sql, &res))
		return false;
	const bool ok = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
	if (ok)
		snprintf(out, cap, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return ok;
}

/* Each migration reads the version and runs in one transaction under an advisory lock, so
 * replicas opening a new database together run every migration exactly once. */
static bool migrate(pg_storage *ps, char *why, size_t why_len)
{
	const int latest = (int)(sizeof(migrations) / sizeof(migrations[0]));
	char lock_sql[96], text[32];
	snprintf(lock_sql, sizeof(lock_sql), "SELECT pg_advisory_xact_lock(%" PRId64 ")",
	         MIGRATION_LOCK);
	for (;;) {
		if (!exec_sql(ps, "BEGIN ISOLATION LEVEL READ COMMITTED", NULL) ||
		    !exec_sql(ps, lock_sql, NULL))
			return migrate_fail(ps, why, why_len,
			                    "cannot lock the schema for migration");
		if (!query_text(ps, "SELECT to_regclass('bkv_schema') IS NOT NULL", text,
		                sizeof(text)))
			return migrate_fail(ps, why, why_len, "cannot read the schema version");
		if (strcmp(text, "t") != 0 &&
		    !exec_sql(ps,
		              "CREATE TABLE bkv_schema (only_row boolean PRIMARY KEY DEFAULT true "
		              "CHECK (only_row), version integer NOT NULL);"
		              "INSERT INTO bkv_schema (version) VALUES (0)",
		              NULL))
			return migrate_fail(ps, why, why_len, "cannot create the table bkv_schema");
		if (!query_text(ps, "SELECT version FROM bkv_schema", text, sizeof(text)))
			return migrate_fail(ps, why, why_len, "cannot read the schema version");
		const long version = strtol(text, NULL, 10);
		if (version < 0) {
			snprintf(why, why_len, "invalid schema version %ld in bkv_schema", version);
			rollback(ps);
			return false;
		}
		if (version > latest) {
			snprintf(why, why_len,
			         "the database schema (version %ld) is newer than this bkvd "
			         "(version %d)",
			         version, latest);
			rollback(ps);
			return false;
		}
		if (version == latest) {
			rollback(ps); /* nothing to do */
			return true;
		}
		char set_version[64];
		snprintf(set_version, sizeof(set_version), "UPDATE bkv_schema SET version = %ld",
		         version + 1);
		PGresult *res = NULL;
		if (!exec_sql(ps, migrations[version], NULL) || !exec_sql(ps, set_version, NULL) ||
		    !exec_sql(ps, "COMMIT", &res) || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
			PQclear(res);
			char what[64];
			snprintf(what, sizeof(what), "schema migration %ld failed", version + 1);
			return migrate_fail(ps, why, why_len, what);
		}
		PQclear(res);
	}
}

bkv_storage_err bkv_storage_pg_open(const char *url, bkv_storage **storage, char *why,
                                    size_t why_len)
{
	pg_storage *ps = calloc(1, sizeof(*ps));
	if (ps == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	ps->base.ops = &pg_ops;
	/* Defaults, then the URL (expanded from "dbname"), whose parameters override them:
	 * connecting gives up after 3 s; a silent peer is detected by TCP keepalives after
	 * 5 s idle (3 probes 1 s apart), or when sent data stays unacknowledged for 6 s. */
	const char *const keys[] = {"connect_timeout",  "application_name", "keepalives",
	                            "keepalives_idle",  "keepalives_count", "keepalives_interval",
	                            "tcp_user_timeout", "dbname",           NULL};
	const char *const values[] = {"3", "bkvd", "1", "5", "3", "1", "6000", url, NULL};
	_Static_assert(sizeof(keys) == sizeof(values), "a value for every key");
	ps->conn = PQconnectdbParams(keys, values, 1);
	if (ps->conn == NULL) {
		snprintf(why, why_len, "cannot connect to PostgreSQL: out of memory");
		goto fail;
	}
	PQsetNoticeProcessor(ps->conn, quiet_notices, NULL);
	if (PQstatus(ps->conn) != CONNECTION_OK) {
		set_why(why, why_len, "cannot connect to PostgreSQL", PQerrorMessage(ps->conn));
		goto fail;
	}
	/* the session's timeouts apply to the migrations too */
	if (!exec_sql(ps, session_sql, NULL)) {
		set_why(why, why_len, "cannot set up the PostgreSQL session",
		        PQerrorMessage(ps->conn));
		goto fail;
	}
	if (!migrate(ps, why, why_len))
		goto fail;
	if (!prepare_statements(ps)) {
		set_why(why, why_len, "cannot prepare the storage statements",
		        PQerrorMessage(ps->conn));
		goto fail;
	}
	ps->ready = true;
	*storage = &ps->base;
	return BKV_STORAGE_OK;
fail:
	PQfinish(ps->conn);
	free(ps);
	return BKV_STORAGE_UNAVAILABLE;
}
