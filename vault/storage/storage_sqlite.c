/*
 * storage_sqlite.c - the embedded default backend: SQLite in WAL mode with
 * synchronous=FULL, so every commit is on disk before the call returns, and a busy
 * timeout so worker processes sharing the file wait for each other instead of failing.
 *
 * Each state change is a single conditional statement (autocommit) or one
 * BEGIN IMMEDIATE transaction, so a crash at any point leaves either the old row or the
 * new one. The schema is versioned with PRAGMA user_version; migrations run in order,
 * each in its own transaction.
 *
 * The seal floor is a one-row table read by triggers on records, inside the writing
 * statement: SQLite has one writer at a time, so a write either committed before the floor
 * was raised or sees the raised floor.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "storage_backend.h"

#define BUSY_TIMEOUT_MS 5000
/* What the seal-floor triggers abort with. */
#define SEAL_FLOOR_MESSAGE "bkv: sealed under a key version below the seal floor"

/* The statements of the request path, prepared once per connection. */
enum { STMT_GET, STMT_INSERT, STMT_UPDATE, STMT_UPDATE_SAME_SEAL, STMT_DELETE, STMT_COUNT };

typedef struct sqlite_storage {
	bkv_storage base;
	sqlite3 *db;
	sqlite3_stmt *stmts[STMT_COUNT];
	bool committing_for_a_group; /* the WAL hook below replaces the autocheckpoint */
	int wal_frames;              /* in the WAL after this connection's last commit */
} sqlite_storage;

/* SQLite's default: a checkpoint once the WAL holds this many frames. */
#define CHECKPOINT_FRAMES 1000

static const char *const migrations[] = {
    /* 1: records and the record_version counter */
    "CREATE TABLE records ("
    " account_id BLOB PRIMARY KEY,"
    " suite INTEGER NOT NULL,"
    " record_version INTEGER NOT NULL,"
    " attempts_used INTEGER NOT NULL,"
    " attempt_limit INTEGER NOT NULL,"
    " guess_seq INTEGER NOT NULL,"
    " last_finished_seq INTEGER NOT NULL,"
    " seal_key_version INTEGER NOT NULL,"
    " sealed BLOB NOT NULL,"
    " registered_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX records_by_seal_key_version ON records(seal_key_version, account_id);"
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO counters VALUES ('record_version', 0);",
    /* 2: state MACs, registration ids and tombstones; record versions count per account */
    "ALTER TABLE records ADD COLUMN state INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE records ADD COLUMN registration_id BLOB NOT NULL DEFAULT x'';"
    "ALTER TABLE records ADD COLUMN destroyed_at INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE records ADD COLUMN mac BLOB NOT NULL DEFAULT x'';"
    "DROP TABLE counters;",
    /* 3: the seal floor; a row below it may keep its blob, never take one */
    "CREATE TABLE seal_floor (only_row INTEGER PRIMARY KEY CHECK (only_row = 1),"
    " min_version INTEGER NOT NULL);"
    "INSERT INTO seal_floor VALUES (1, 0);"
    "CREATE TRIGGER records_seal_floor_insert BEFORE INSERT ON records"
    " WHEN NEW.seal_key_version > 0"
    " AND NEW.seal_key_version < (SELECT min_version FROM seal_floor)"
    " BEGIN SELECT RAISE(ABORT, '" SEAL_FLOOR_MESSAGE "'); END;"
    "CREATE TRIGGER records_seal_floor_update BEFORE UPDATE ON records"
    " WHEN NEW.seal_key_version > 0"
    " AND (NEW.seal_key_version <> OLD.seal_key_version OR NEW.sealed IS NOT OLD.sealed)"
    " AND NEW.seal_key_version < (SELECT min_version FROM seal_floor)"
    " BEGIN SELECT RAISE(ABORT, '" SEAL_FLOOR_MESSAGE "'); END;",
    /* 4: named blobs */
    "CREATE TABLE blobs (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
};

#define RECORD_COLUMNS                                                                             \
	"account_id, suite, state, record_version, registration_id, attempts_used, "               \
	"attempt_limit, guess_seq, last_finished_seq, seal_key_version, sealed, registered_at, "   \
	"destroyed_at, updated_at, mac"

static sqlite3 *db_of(bkv_storage *s)
{
	return ((sqlite_storage *)s)->db;
}

static bkv_storage_err map_rc(int rc)
{
	return rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW ? BKV_STORAGE_OK
	                                                                : BKV_STORAGE_UNAVAILABLE;
}

/* The result of stepping a write: SEAL_FLOOR when a seal-floor trigger refused it. */
static bkv_storage_err write_result(sqlite3 *db, int rc)
{
	if (rc == SQLITE_DONE)
		return BKV_STORAGE_OK;
	if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_TRIGGER &&
	    strcmp(sqlite3_errmsg(db), SEAL_FLOOR_MESSAGE) == 0)
		return BKV_STORAGE_SEAL_FLOOR;
	return BKV_STORAGE_UNAVAILABLE;
}

static int64_t now_unix(void)
{
	return (int64_t)time(NULL);
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	return st;
}

/* The connection's copy of one of the request path's statements, ready to bind (NULL if it
 * cannot be prepared); give it back with done(). */
static sqlite3_stmt *cached(bkv_storage *s, int which, const char *sql)
{
	sqlite_storage *ss = (sqlite_storage *)s;
	if (ss->stmts[which] == NULL &&
	    sqlite3_prepare_v3(ss->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &ss->stmts[which],
	                       NULL) != SQLITE_OK)
		return NULL;
	return ss->stmts[which];
}

/* Ends a use of a cached statement: no binding outlives the call that made it. */
static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static int exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Column readers that refuse what does not fit, instead of truncating it. */
static bool col_u32(sqlite3_stmt *st, int col, uint32_t *out)
{
	const sqlite3_int64 v = sqlite3_column_int64(st, col);
	if (sqlite3_column_type(st, col) != SQLITE_INTEGER || v < 0 || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool col_u63(sqlite3_stmt *st, int col, uint64_t *out)
{
	const sqlite3_int64 v = sqlite3_column_int64(st, col);
	if (sqlite3_column_type(st, col) != SQLITE_INTEGER || v < 0)
		return false;
	*out = (uint64_t)v;
	return true;
}

static bool col_blob(sqlite3_stmt *st, int col, uint8_t *out, size_t cap, size_t *len)
{
	const int type = sqlite3_column_type(st, col);
	const void *p = sqlite3_column_blob(st, col);
	const int n = sqlite3_column_bytes(st, col);
	if ((type != SQLITE_BLOB && !(type == SQLITE_TEXT && n == 0)) || n < 0 || (size_t)n > cap)
		return false;
	if (n > 0)
		memcpy(out, p, (size_t)n);
	*len = (size_t)n;
	return true;
}

/* Reads one row of RECORD_COLUMNS into r. false if a column does not fit. */
static bool read_record(sqlite3_stmt *st, bkv_record *r)
{
	memset(r, 0, sizeof(*r));
	bool ok = col_blob(st, 0, r->account_id, sizeof(r->account_id), &r->account_id_len) &&
	          r->account_id_len > 0 && col_u32(st, 1, &r->suite) && col_u32(st, 2, &r->state) &&
	          col_u63(st, 3, &r->record_version) &&
	          col_blob(st, 4, r->registration_id, sizeof(r->registration_id),
	                   &r->registration_id_len) &&
	          col_u32(st, 5, &r->attempts_used) && col_u32(st, 6, &r->attempt_limit) &&
	          col_u63(st, 7, &r->guess_seq) && col_u63(st, 8, &r->last_finished_seq) &&
	          col_u32(st, 9, &r->seal_key_version) &&
	          col_blob(st, 10, r->sealed, sizeof(r->sealed), &r->sealed_len) &&
	          col_blob(st, 14, r->mac, sizeof(r->mac), &r->mac_len);
	r->registered_at = sqlite3_column_int64(st, 11);
	r->destroyed_at = sqlite3_column_int64(st, 12);
	r->updated_at = sqlite3_column_int64(st, 13);
	if (!ok)
		memset(r, 0, sizeof(*r));
	return ok;
}

static bkv_storage_err get_row(bkv_storage *s, const uint8_t *account, size_t len, bkv_record *out)
{
	sqlite3_stmt *st =
	    cached(s, STMT_GET, "SELECT " RECORD_COLUMNS " FROM records WHERE account_id = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_blob(st, 1, account, (int)len, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	bkv_storage_err err;
	if (rc == SQLITE_ROW)
		err = read_record(st, out) ? BKV_STORAGE_OK : BKV_STORAGE_CORRUPT;
	else if (rc == SQLITE_DONE)
		err = BKV_STORAGE_NOT_FOUND;
	else
		err = BKV_STORAGE_UNAVAILABLE;
	done(st);
	return err;
}

static bkv_storage_err sq_get(bkv_storage *s, const uint8_t *account, size_t len, bkv_record *out)
{
	return get_row(s, account, len, out);
}

/* Binds the state columns of r as parameters 1..14 (mac is 14) and account_id as 15. */
static void bind_state(sqlite3_stmt *st, const bkv_record *r, int64_t now)
{
	static const uint8_t nothing[1] = {0};
	sqlite3_bind_int64(st, 1, r->suite);
	sqlite3_bind_int64(st, 2, r->state);
	sqlite3_bind_int64(st, 3, (int64_t)r->record_version);
	sqlite3_bind_blob(st, 4, r->registration_id_len ? r->registration_id : nothing,
	                  (int)r->registration_id_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, r->attempts_used);
	sqlite3_bind_int64(st, 6, r->attempt_limit);
	sqlite3_bind_int64(st, 7, (int64_t)r->guess_seq);
	sqlite3_bind_int64(st, 8, (int64_t)r->last_finished_seq);
	sqlite3_bind_int64(st, 9, r->seal_key_version);
	sqlite3_bind_blob(st, 10, r->sealed_len ? r->sealed : nothing, (int)r->sealed_len,
	                  SQLITE_STATIC);
	sqlite3_bind_int64(st, 11, r->registered_at);
	sqlite3_bind_int64(st, 12, r->destroyed_at);
	sqlite3_bind_int64(st, 13, now);
	sqlite3_bind_blob(st, 14, r->mac_len ? r->mac : nothing, (int)r->mac_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 15, r->account_id, (int)r->account_id_len, SQLITE_STATIC);
}

static bkv_storage_err sq_insert(bkv_storage *s, const bkv_record *r)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st =
	    cached(s, STMT_INSERT,
	           "INSERT INTO records (suite, state, record_version, registration_id, "
	           "attempts_used, attempt_limit, guess_seq, last_finished_seq, seal_key_version, "
	           "sealed, registered_at, destroyed_at, updated_at, mac, account_id) "
	           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
	           "ON CONFLICT(account_id) DO NOTHING");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	bind_state(st, r, now_unix());
	bkv_storage_err err = write_result(db, sqlite3_step(st));
	done(st);
	if (err == BKV_STORAGE_OK && sqlite3_changes(db) == 0)
		err = BKV_STORAGE_EXISTS;
	return err;
}

/* After a conditional statement changed nothing: NOT_FOUND or STALE. */
static bkv_storage_err why_unchanged(bkv_storage *s, const uint8_t *account, size_t len)
{
	bkv_record r;
	bkv_storage_err err = get_row(s, account, len, &r);
	return err == BKV_STORAGE_OK || err == BKV_STORAGE_CORRUPT ? BKV_STORAGE_STALE : err;
}

/* The compare-and-set UPDATE of every state column. SQLite rewrites the entry of every
 * index whose column a statement SETs, changed or not, so the common write (counters, the
 * same seal) has a statement of its own that leaves seal_key_version out of the SET and
 * requires it unchanged instead: one page written per update, not two. */
#define UPDATE_STATE                                                                               \
	"UPDATE records SET suite = ?1, state = ?2, record_version = ?3, registration_id = ?4, "   \
	"attempts_used = ?5, attempt_limit = ?6, guess_seq = ?7, last_finished_seq = ?8, "         \
	"sealed = ?10, registered_at = ?11, destroyed_at = ?12, updated_at = ?13, mac = ?14"
#define UPDATE_WHERE " WHERE account_id = ?15 AND mac = ?16"

/* Runs one of the two UPDATEs; *changed says whether it wrote the row. */
static bkv_storage_err update_with(bkv_storage *s, int which, const char *sql, const bkv_record *r,
                                   int64_t now, const uint8_t *expected_mac,
                                   size_t expected_mac_len, bool *changed)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st = cached(s, which, sql);
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	static const uint8_t nothing[1] = {0};
	bind_state(st, r, now);
	sqlite3_bind_blob(st, 16, expected_mac_len ? expected_mac : nothing, (int)expected_mac_len,
	                  SQLITE_STATIC);
	const bkv_storage_err err = write_result(db, sqlite3_step(st));
	done(st);
	*changed = err == BKV_STORAGE_OK && sqlite3_changes(db) > 0;
	return err;
}

static bkv_storage_err sq_update(bkv_storage *s, const bkv_record *r, const uint8_t *expected_mac,
                                 size_t expected_mac_len)
{
	const int64_t now = now_unix();
	bool changed = false;
	bkv_storage_err err = update_with(s, STMT_UPDATE_SAME_SEAL,
	                                  UPDATE_STATE UPDATE_WHERE " AND seal_key_version = ?9", r,
	                                  now, expected_mac, expected_mac_len, &changed);
	if (err == BKV_STORAGE_OK && !changed)
		err =
		    update_with(s, STMT_UPDATE, UPDATE_STATE ", seal_key_version = ?9" UPDATE_WHERE,
		                r, now, expected_mac, expected_mac_len, &changed);
	if (err == BKV_STORAGE_OK && !changed)
		err = why_unchanged(s, r->account_id, r->account_id_len);
	return err;
}

static bkv_storage_err sq_delete(bkv_storage *s, const uint8_t *account, size_t len)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st = cached(s, STMT_DELETE, "DELETE FROM records WHERE account_id = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_blob(st, 1, account, (int)len, SQLITE_STATIC);
	bkv_storage_err err = map_rc(sqlite3_step(st));
	done(st);
	if (err == BKV_STORAGE_OK && sqlite3_changes(db) == 0)
		err = BKV_STORAGE_NOT_FOUND;
	return err;
}

static bkv_storage_err sq_list_sealed_below(bkv_storage *s, uint32_t min_version,
                                            const uint8_t *after, size_t after_len, bkv_record *out,
                                            size_t max, size_t *count)
{
	sqlite3_stmt *st = prepare(db_of(s), "SELECT " RECORD_COLUMNS " FROM records "
	                                     "WHERE seal_key_version BETWEEN 1 AND ? - 1 "
	                                     "AND account_id > ? ORDER BY account_id LIMIT ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	static const uint8_t nothing[1] = {0};
	sqlite3_bind_int64(st, 1, min_version);
	/* Every account id sorts after the empty blob. */
	sqlite3_bind_blob(st, 2, after_len ? after : nothing, (int)after_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)max);
	int rc;
	bkv_storage_err err = BKV_STORAGE_OK;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *count < max) {
		if (!read_record(st, &out[*count])) {
			err = BKV_STORAGE_CORRUPT;
			break;
		}
		(*count)++;
	}
	sqlite3_finalize(st);
	if (err == BKV_STORAGE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
		err = BKV_STORAGE_UNAVAILABLE;
	return err;
}

static bkv_storage_err sq_reseal(bkv_storage *s, const uint8_t *account, size_t len,
                                 uint64_t record_version, const uint8_t *mac, size_t mac_len,
                                 uint32_t seal_key_version, const uint8_t *sealed,
                                 size_t sealed_len)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st = prepare(db, "UPDATE records SET sealed = ?, seal_key_version = ?, "
	                               "updated_at = ? WHERE account_id = ? AND "
	                               "record_version = ? AND mac = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	static const uint8_t nothing[1] = {0};
	sqlite3_bind_blob(st, 1, sealed, (int)sealed_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, seal_key_version);
	sqlite3_bind_int64(st, 3, now_unix());
	sqlite3_bind_blob(st, 4, account, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (int64_t)record_version);
	sqlite3_bind_blob(st, 6, mac_len ? mac : nothing, (int)mac_len, SQLITE_STATIC);
	bkv_storage_err err = write_result(db, sqlite3_step(st));
	sqlite3_finalize(st);
	if (err == BKV_STORAGE_OK && sqlite3_changes(db) == 0)
		err = BKV_STORAGE_STALE;
	return err;
}

/* count(*) of the rows sql selects with one integer parameter. */
static bkv_storage_err count_rows(bkv_storage *s, const char *sql, uint32_t value, uint64_t *count)
{
	sqlite3_stmt *st = prepare(db_of(s), sql);
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_int64(st, 1, value);
	bkv_storage_err err = BKV_STORAGE_UNAVAILABLE;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*count = (uint64_t)sqlite3_column_int64(st, 0);
		err = BKV_STORAGE_OK;
	}
	sqlite3_finalize(st);
	return err;
}

static bkv_storage_err sq_count_sealed_with(bkv_storage *s, uint32_t version, uint64_t *count)
{
	return count_rows(s, "SELECT count(*) FROM records WHERE seal_key_version = ?", version,
	                  count);
}

static bkv_storage_err sq_count_sealed_below(bkv_storage *s, uint32_t min_version, uint64_t *count)
{
	return count_rows(s,
	                  "SELECT count(*) FROM records WHERE seal_key_version BETWEEN 1 AND ? - 1",
	                  min_version, count);
}

static bkv_storage_err sq_raise_seal_floor(bkv_storage *s, uint32_t min_version)
{
	sqlite3_stmt *st =
	    prepare(db_of(s), "UPDATE seal_floor SET min_version = max(min_version, ?)");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_int64(st, 1, min_version);
	bkv_storage_err err = map_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	return err;
}

static bkv_storage_err sq_seal_floor(bkv_storage *s, uint32_t *min_version)
{
	sqlite3_stmt *st = prepare(db_of(s), "SELECT min_version FROM seal_floor");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	bkv_storage_err err = BKV_STORAGE_UNAVAILABLE;
	if (sqlite3_step(st) == SQLITE_ROW)
		err = col_u32(st, 0, min_version) ? BKV_STORAGE_OK : BKV_STORAGE_CORRUPT;
	sqlite3_finalize(st);
	return err;
}

static bkv_storage_err sq_blob_get(bkv_storage *s, const char *name, uint8_t *out, size_t cap,
                                   size_t *len)
{
	sqlite3_stmt *st = prepare(db_of(s), "SELECT value FROM blobs WHERE name = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	const int rc = sqlite3_step(st);
	bkv_storage_err err = rc == SQLITE_DONE ? BKV_STORAGE_NOT_FOUND : BKV_STORAGE_UNAVAILABLE;
	if (rc == SQLITE_ROW) {
		const int n = sqlite3_column_bytes(st, 0);
		const void *v = sqlite3_column_blob(st, 0);
		err = BKV_STORAGE_CORRUPT;
		if (sqlite3_column_type(st, 0) == SQLITE_BLOB && n > 0 && (size_t)n <= cap &&
		    v != NULL) {
			memcpy(out, v, (size_t)n);
			*len = (size_t)n;
			err = BKV_STORAGE_OK;
		}
	}
	sqlite3_finalize(st);
	return err;
}

static bkv_storage_err sq_blob_put(bkv_storage *s, const char *name, const uint8_t *old,
                                   size_t old_len, const uint8_t *value, size_t len)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st =
	    prepare(db, old == NULL ? "INSERT INTO blobs (value, name) VALUES (?, ?) "
	                              "ON CONFLICT (name) DO NOTHING"
	                            : "UPDATE blobs SET value = ? WHERE name = ? AND value = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_blob(st, 1, value, (int)len, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if (old != NULL)
		sqlite3_bind_blob(st, 3, old, (int)old_len, SQLITE_STATIC);
	bkv_storage_err err = map_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	if (err != BKV_STORAGE_OK || sqlite3_changes(db) > 0)
		return err;
	if (old == NULL)
		return BKV_STORAGE_EXISTS;
	size_t n;
	uint8_t current[BKV_STORAGE_BLOB_MAX];
	err = sq_blob_get(s, name, current, sizeof(current), &n);
	return err == BKV_STORAGE_OK ? BKV_STORAGE_STALE : err;
}

static bkv_storage_err sq_blob_delete(bkv_storage *s, const char *name)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st = prepare(db, "DELETE FROM blobs WHERE name = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	bkv_storage_err err = map_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	if (err == BKV_STORAGE_OK && sqlite3_changes(db) == 0)
		err = BKV_STORAGE_NOT_FOUND;
	return err;
}

static void sq_close(bkv_storage *s)
{
	sqlite_storage *ss = (sqlite_storage *)s;
	for (int i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(ss->stmts[i]);
	sqlite3_close(ss->db);
	free(ss);
}

static int note_wal_frames(void *arg, sqlite3 *db, const char *name, int frames)
{
	(void)db;
	(void)name;
	((sqlite_storage *)arg)->wal_frames = frames;
	return SQLITE_OK;
}

/*
 * A group's leader checkpoints after its writers were answered, not inside their COMMIT
 * as the autocheckpoint would, and once per CHECKPOINT_FRAMES frames appended since the
 * group's last checkpoint (*mark: the WAL's length then), not at every commit while the
 * WAL is longer than that, as the autocheckpoint does.
 *
 * SQLite starts the WAL over only when a writer begins with every frame checkpointed and
 * no reader on the old frames. With readers and writers always busy that seldom happens,
 * the WAL stays long, and "longer than 1000 frames" held at every commit: each one paid a
 * checkpoint's two fsyncs on top of its own. The leader checkpoints before it lets the
 * next commit begin, so that commit finds the WAL fully checkpointed and starts it over.
 * PASSIVE: it never waits for a reader.
 */
static bool sq_after_batch(bkv_storage *s, uint64_t *mark)
{
	sqlite_storage *ss = (sqlite_storage *)s;
	const uint64_t frames = (uint64_t)ss->wal_frames;
	if (frames < *mark)
		*mark = 0; /* the WAL was started over */
	if (frames - *mark < CHECKPOINT_FRAMES)
		return false;
	*mark = frames;
	sqlite3_wal_checkpoint_v2(ss->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return true;
}

/* One transaction for the whole batch. A write refused on its own (EXISTS, STALE,
 * NOT_FOUND, SEAL_FLOOR: the statement changed nothing) keeps its result and the others
 * commit; a database failure rolls everything back, since SQLite may have ended the
 * transaction itself. */
static void sq_commit_batch(bkv_storage *s, bkv_group_op *const *ops, size_t n)
{
	sqlite_storage *ss = (sqlite_storage *)s;
	sqlite3 *db = ss->db;
	if (!ss->committing_for_a_group) {
		sqlite3_wal_hook(db, note_wal_frames, ss);
		ss->committing_for_a_group = true;
	}
	bool failed = exec(db, "BEGIN IMMEDIATE") != SQLITE_OK;
	for (size_t i = 0; i < n && !failed; i++) {
		bkv_group_op *op = ops[i];
		const bkv_record *r = &op->record;
		switch (op->kind) {
		case BKV_GROUP_INSERT:
			op->result = sq_insert(s, r);
			break;
		case BKV_GROUP_UPDATE:
			op->result = sq_update(s, r, op->expected_mac, op->expected_mac_len);
			break;
		case BKV_GROUP_DELETE:
			op->result = sq_delete(s, r->account_id, r->account_id_len);
			break;
		default:
			op->result = BKV_STORAGE_ARGUMENT;
			break;
		}
		failed = op->result == BKV_STORAGE_UNAVAILABLE || op->result == BKV_STORAGE_CORRUPT;
	}
	if (!failed && exec(db, "COMMIT") == SQLITE_OK)
		return;
	if (!sqlite3_get_autocommit(db))
		exec(db, "ROLLBACK");
	for (size_t i = 0; i < n; i++)
		ops[i]->result = BKV_STORAGE_UNAVAILABLE;
}

static const bkv_storage_ops sqlite_ops = {
    .close = sq_close,
    .get = sq_get,
    .insert = sq_insert,
    .update = sq_update,
    .delete_record = sq_delete,
    .list_sealed_below = sq_list_sealed_below,
    .reseal = sq_reseal,
    .count_sealed_with = sq_count_sealed_with,
    .count_sealed_below = sq_count_sealed_below,
    .raise_seal_floor = sq_raise_seal_floor,
    .seal_floor = sq_seal_floor,
    .blob_get = sq_blob_get,
    .blob_put = sq_blob_put,
    .blob_delete = sq_blob_delete,
    .commit_batch = sq_commit_batch,
    .after_batch = sq_after_batch,
};

static int schema_version(sqlite3 *db)
{
	sqlite3_stmt *st = prepare(db, "PRAGMA user_version");
	int version = -1;
	if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return version;
}

/* Each migration reads the version and runs under one write lock, so processes opening a
 * new database together run every migration exactly once. */
static bool migrate(sqlite3 *db, char *why, size_t why_len)
{
	const int latest = (int)(sizeof(migrations) / sizeof(migrations[0]));
	/* Almost every open finds the schema current: a read says so without the write lock,
	 * which busy writers (a worker's siblings committing) could otherwise keep from a new
	 * connection for the whole busy timeout. */
	if (schema_version(db) == latest)
		return true;
	for (;;) {
		if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
			snprintf(why, why_len, "cannot lock the database: %s", sqlite3_errmsg(db));
			return false;
		}
		const int version = schema_version(db);
		if (version < 0) {
			snprintf(why, why_len, "cannot read the schema version: %s",
			         sqlite3_errmsg(db));
			exec(db, "ROLLBACK");
			return false;
		}
		if (version > latest) {
			snprintf(why, why_len,
			         "the database schema (version %d) is newer than this bkvd "
			         "(version %d)",
			         version, latest);
			exec(db, "ROLLBACK");
			return false;
		}
		if (version == latest) {
			exec(db, "ROLLBACK"); /* nothing to do */
			return true;
		}
		char set_version[64];
		snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %d", version + 1);
		if (exec(db, migrations[version]) != SQLITE_OK ||
		    exec(db, set_version) != SQLITE_OK || exec(db, "COMMIT") != SQLITE_OK) {
			snprintf(why, why_len, "schema migration %d failed: %s", version + 1,
			         sqlite3_errmsg(db));
			exec(db, "ROLLBACK");
			return false;
		}
	}
}

/* Switching a new file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at
 * once, without the busy handler, while another process is doing the same: retry for as
 * long as the busy timeout. */
static bool enable_wal(sqlite3 *db)
{
	for (int waited = 0; waited <= BUSY_TIMEOUT_MS; waited += 10) {
		sqlite3_stmt *st = NULL;
		int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
		const bool wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
		sqlite3_finalize(st);
		if (wal)
			return true;
		if ((rc & 0xff) != SQLITE_BUSY && rc != SQLITE_ROW)
			return false;
		sqlite3_sleep(10);
	}
	return false;
}

bkv_storage_err bkv_storage_sqlite_open(const char *path, bkv_storage **storage, char *why,
                                        size_t why_len)
{
	sqlite_storage *ss = calloc(1, sizeof(*ss));
	if (ss == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	ss->base.ops = &sqlite_ops;
	/* A new database is created 0600 whatever the umask (it holds account ids in clear);
	 * SQLite gives its -wal and -shm files the database's mode. O_EXCL: an existing file
	 * is never opened here, since closing a descriptor of it would drop the POSIX locks of
	 * this process's other connections to it. */
	const int created = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (created >= 0)
		close(created);
	int rc = sqlite3_open_v2(
	    path, &ss->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(why, why_len, "cannot open SQLite database %s: %s", path,
		         ss->db ? sqlite3_errmsg(ss->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(ss->db, BUSY_TIMEOUT_MS);
	if (!enable_wal(ss->db) || exec(ss->db, "PRAGMA synchronous = FULL") != SQLITE_OK) {
		snprintf(why, why_len, "cannot enable WAL with synchronous=FULL on %s: %s", path,
		         sqlite3_errmsg(ss->db));
		goto fail;
	}
	if (!migrate(ss->db, why, why_len))
		goto fail;
	*storage = &ss->base;
	return BKV_STORAGE_OK;
fail:
	sqlite3_close(ss->db);
	free(ss);
	return BKV_STORAGE_UNAVAILABLE;
}
