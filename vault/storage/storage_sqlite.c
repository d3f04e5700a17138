/*
 * storage_sqlite.c - the embedded default backend: SQLite in WAL mode with
 * synchronous=FULL, so every commit is on disk before the call returns, and a busy
 * timeout so worker processes sharing the file wait for each other instead of failing.
 *
 * Each state change is a single conditional statement (autocommit) or one
 * BEGIN IMMEDIATE transaction, so a crash at any point leaves either the old row or the
 * new one. The schema is versioned with PRAGMA user_version; migrations run in order,
 * each in its own transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "storage_backend.h"

#define BUSY_TIMEOUT_MS 5000

typedef struct sqlite_storage {
	bkv_storage base;
	sqlite3 *db;
} sqlite_storage;

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
};

#define RECORD_COLUMNS                                                                             \
	"account_id, suite, record_version, attempts_used, attempt_limit, guess_seq, "             \
	"last_finished_seq, seal_key_version, sealed, registered_at, updated_at"

static sqlite3 *db_of(bkv_storage *s)
{
	return ((sqlite_storage *)s)->db;
}

static bkv_storage_err map_rc(int rc)
{
	return rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW ? BKV_STORAGE_OK
	                                                                : BKV_STORAGE_UNAVAILABLE;
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

static int exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Reads one row of RECORD_COLUMNS into r. false if a column does not fit. */
static bool read_record(sqlite3_stmt *st, bkv_record *r)
{
	const void *account = sqlite3_column_blob(st, 0);
	const int account_len = sqlite3_column_bytes(st, 0);
	const void *sealed = sqlite3_column_blob(st, 8);
	const int sealed_len = sqlite3_column_bytes(st, 8);
	if (account == NULL || account_len <= 0 || account_len > BKV_STORAGE_ACCOUNT_MAX ||
	    sealed == NULL || sealed_len <= 0 || sealed_len > BKV_STORAGE_SEALED_MAX)
		return false;
	memset(r, 0, sizeof(*r));
	memcpy(r->account_id, account, (size_t)account_len);
	r->account_id_len = (size_t)account_len;
	r->suite = (uint32_t)sqlite3_column_int64(st, 1);
	r->record_version = (uint64_t)sqlite3_column_int64(st, 2);
	r->attempts_used = (uint32_t)sqlite3_column_int64(st, 3);
	r->attempt_limit = (uint32_t)sqlite3_column_int64(st, 4);
	r->guess_seq = (uint64_t)sqlite3_column_int64(st, 5);
	r->last_finished_seq = (uint64_t)sqlite3_column_int64(st, 6);
	r->seal_key_version = (uint32_t)sqlite3_column_int64(st, 7);
	memcpy(r->sealed, sealed, (size_t)sealed_len);
	r->sealed_len = (size_t)sealed_len;
	r->registered_at = sqlite3_column_int64(st, 9);
	r->updated_at = sqlite3_column_int64(st, 10);
	return true;
}

static bkv_storage_err get_row(sqlite3 *db, const uint8_t *account, size_t len, bkv_record *out)
{
	sqlite3_stmt *st =
	    prepare(db, "SELECT " RECORD_COLUMNS " FROM records WHERE account_id = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_blob(st, 1, account, (int)len, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	bkv_storage_err err;
	if (rc == SQLITE_ROW)
		err = read_record(st, out) ? BKV_STORAGE_OK : BKV_STORAGE_UNAVAILABLE;
	else if (rc == SQLITE_DONE)
		err = BKV_STORAGE_NOT_FOUND;
	else
		err = BKV_STORAGE_UNAVAILABLE;
	sqlite3_finalize(st);
	return err;
}

static bkv_storage_err sq_get(bkv_storage *s, const uint8_t *account, size_t len, bkv_record *out)
{
	return get_row(db_of(s), account, len, out);
}

static bkv_storage_err sq_next_record_version(bkv_storage *s, uint64_t *version)
{
	sqlite3_stmt *st = prepare(db_of(s), "UPDATE counters SET value = value + 1 "
	                                     "WHERE name = 'record_version' RETURNING value");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	int rc = sqlite3_step(st);
	bkv_storage_err err = BKV_STORAGE_UNAVAILABLE;
	if (rc == SQLITE_ROW) {
		*version = (uint64_t)sqlite3_column_int64(st, 0);
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			err = BKV_STORAGE_OK;
	}
	sqlite3_finalize(st);
	return err;
}

static bkv_storage_err sq_put(bkv_storage *s, const bkv_record *r)
{
	sqlite3_stmt *st = prepare(
	    db_of(s),
	    "INSERT INTO records (" RECORD_COLUMNS ") VALUES (?, ?, ?, 0, ?, 0, 0, ?, ?, ?, ?) "
	    "ON CONFLICT(account_id) DO UPDATE SET suite = excluded.suite, "
	    "record_version = excluded.record_version, attempts_used = 0, "
	    "attempt_limit = excluded.attempt_limit, last_finished_seq = records.guess_seq, "
	    "seal_key_version = excluded.seal_key_version, sealed = excluded.sealed, "
	    "registered_at = excluded.registered_at, updated_at = excluded.updated_at");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	const int64_t now = now_unix();
	sqlite3_bind_blob(st, 1, r->account_id, (int)r->account_id_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, r->suite);
	sqlite3_bind_int64(st, 3, (int64_t)r->record_version);
	sqlite3_bind_int64(st, 4, r->attempt_limit);
	sqlite3_bind_int64(st, 5, r->seal_key_version);
	sqlite3_bind_blob(st, 6, r->sealed, (int)r->sealed_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, now);
	sqlite3_bind_int64(st, 8, now);
	bkv_storage_err err = map_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	return err;
}

static bkv_storage_err sq_commit_attempt(bkv_storage *s, const uint8_t *account, size_t len,
                                         uint64_t record_version, uint64_t expected_guess_seq,
                                         uint32_t *attempts_used, uint32_t *attempt_limit)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st = prepare(
	    db, "UPDATE records SET attempts_used = attempts_used + 1, guess_seq = guess_seq + 1, "
	        "updated_at = ? WHERE account_id = ? AND record_version = ? AND guess_seq = ? "
	        "AND attempts_used < attempt_limit RETURNING attempts_used, attempt_limit");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_int64(st, 1, now_unix());
	sqlite3_bind_blob(st, 2, account, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)record_version);
	sqlite3_bind_int64(st, 4, (int64_t)expected_guess_seq);
	int rc = sqlite3_step(st);
	bool updated = false;
	if (rc == SQLITE_ROW) {
		*attempts_used = (uint32_t)sqlite3_column_int64(st, 0);
		*attempt_limit = (uint32_t)sqlite3_column_int64(st, 1);
		updated = true;
		rc = sqlite3_step(st);
	}
	/* The update is committed only once the statement has run to completion. */
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return BKV_STORAGE_UNAVAILABLE;
	if (updated)
		return BKV_STORAGE_OK;
	/* Nothing matched: say why. */
	bkv_record r;
	bkv_storage_err err = get_row(db, account, len, &r);
	if (err != BKV_STORAGE_OK)
		return err;
	if (r.record_version == record_version && r.attempts_used >= r.attempt_limit)
		return BKV_STORAGE_EXHAUSTED;
	return BKV_STORAGE_STALE;
}

static bkv_storage_err sq_finish_attempt(bkv_storage *s, const uint8_t *account, size_t len,
                                         uint64_t record_version, uint64_t guess_seq, bool success,
                                         bkv_finish_result *result, bkv_record *record)
{
	sqlite3 *db = db_of(s);
	if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK)
		return BKV_STORAGE_UNAVAILABLE;
	bkv_record r;
	bkv_storage_err err = get_row(db, account, len, &r);
	if (err != BKV_STORAGE_OK)
		goto rollback;
	if (r.record_version != record_version || guess_seq <= r.last_finished_seq ||
	    guess_seq > r.guess_seq) {
		err = BKV_STORAGE_STALE;
		goto rollback;
	}
	const bool destroy = !success && r.attempts_used >= r.attempt_limit;
	sqlite3_stmt *st =
	    destroy ? prepare(db, "DELETE FROM records WHERE account_id = ?")
	            : prepare(db, "UPDATE records SET last_finished_seq = ?, attempts_used = ?, "
	                          "updated_at = ? WHERE account_id = ?");
	if (st == NULL) {
		err = BKV_STORAGE_UNAVAILABLE;
		goto rollback;
	}
	const uint32_t attempts_after = success ? 0 : r.attempts_used;
	const int64_t now = now_unix();
	if (destroy) {
		sqlite3_bind_blob(st, 1, account, (int)len, SQLITE_STATIC);
	} else {
		sqlite3_bind_int64(st, 1, (int64_t)guess_seq);
		sqlite3_bind_int64(st, 2, attempts_after);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_blob(st, 4, account, (int)len, SQLITE_STATIC);
	}
	err = map_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	if (err != BKV_STORAGE_OK)
		goto rollback;
	if (exec(db, "COMMIT") != SQLITE_OK) {
		err = BKV_STORAGE_UNAVAILABLE;
		goto rollback;
	}
	result->attempts_used = attempts_after;
	result->attempt_limit = r.attempt_limit;
	result->destroyed = destroy;
	if (record != NULL) {
		*record = r;
		record->attempts_used = attempts_after;
		record->last_finished_seq = guess_seq;
		record->updated_at = now;
	}
	return BKV_STORAGE_OK;
rollback:
	exec(db, "ROLLBACK");
	return err;
}

static bkv_storage_err sq_delete(bkv_storage *s, const uint8_t *account, size_t len)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st = prepare(db, "DELETE FROM records WHERE account_id = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_blob(st, 1, account, (int)len, SQLITE_STATIC);
	bkv_storage_err err = map_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	if (err == BKV_STORAGE_OK && sqlite3_changes(db) == 0)
		err = BKV_STORAGE_NOT_FOUND;
	return err;
}

static bkv_storage_err sq_destroy_exhausted(bkv_storage *s, const uint8_t *account, size_t len,
                                            uint64_t record_version)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st = prepare(db, "DELETE FROM records WHERE account_id = ? AND "
	                               "record_version = ? AND attempts_used >= attempt_limit");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_blob(st, 1, account, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)record_version);
	bkv_storage_err err = map_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	if (err != BKV_STORAGE_OK || sqlite3_changes(db) > 0)
		return err;
	/* Nothing deleted: gone already, or replaced / no longer exhausted. */
	bkv_record r;
	err = get_row(db, account, len, &r);
	return err == BKV_STORAGE_OK ? BKV_STORAGE_STALE : err;
}

static bkv_storage_err sq_list_sealed_below(bkv_storage *s, uint32_t min_version,
                                            const uint8_t *after, size_t after_len, bkv_record *out,
                                            size_t max, size_t *count)
{
	sqlite3_stmt *st = prepare(db_of(s), "SELECT " RECORD_COLUMNS " FROM records "
	                                     "WHERE seal_key_version < ? AND account_id > ? "
	                                     "ORDER BY account_id LIMIT ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	static const uint8_t nothing[1] = {0};
	sqlite3_bind_int64(st, 1, min_version);
	/* Every account id sorts after the empty blob. */
	sqlite3_bind_blob(st, 2, after_len ? after : nothing, (int)after_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)max);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *count < max) {
		if (!read_record(st, &out[*count])) {
			rc = SQLITE_CORRUPT;
			break;
		}
		(*count)++;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? BKV_STORAGE_OK : BKV_STORAGE_UNAVAILABLE;
}

static bkv_storage_err sq_reseal(bkv_storage *s, const uint8_t *account, size_t len,
                                 uint64_t record_version, uint32_t seal_key_version,
                                 const uint8_t *sealed, size_t sealed_len)
{
	sqlite3 *db = db_of(s);
	sqlite3_stmt *st =
	    prepare(db, "UPDATE records SET sealed = ?, seal_key_version = ?, "
	                "updated_at = ? WHERE account_id = ? AND record_version = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_blob(st, 1, sealed, (int)sealed_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, seal_key_version);
	sqlite3_bind_int64(st, 3, now_unix());
	sqlite3_bind_blob(st, 4, account, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (int64_t)record_version);
	bkv_storage_err err = map_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	if (err == BKV_STORAGE_OK && sqlite3_changes(db) == 0)
		err = BKV_STORAGE_STALE;
	return err;
}

static bkv_storage_err sq_count_sealed_with(bkv_storage *s, uint32_t version, uint64_t *count)
{
	sqlite3_stmt *st =
	    prepare(db_of(s), "SELECT count(*) FROM records WHERE seal_key_version = ?");
	if (st == NULL)
		return BKV_STORAGE_UNAVAILABLE;
	sqlite3_bind_int64(st, 1, version);
	bkv_storage_err err = BKV_STORAGE_UNAVAILABLE;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*count = (uint64_t)sqlite3_column_int64(st, 0);
		err = BKV_STORAGE_OK;
	}
	sqlite3_finalize(st);
	return err;
}

static void sq_close(bkv_storage *s)
{
	sqlite_storage *ss = (sqlite_storage *)s;
	sqlite3_close(ss->db);
	free(ss);
}

static const bkv_storage_ops sqlite_ops = {
    .close = sq_close,
    .get = sq_get,
    .next_record_version = sq_next_record_version,
    .put = sq_put,
    .commit_attempt = sq_commit_attempt,
    .finish_attempt = sq_finish_attempt,
    .delete_record = sq_delete,
    .destroy_exhausted = sq_destroy_exhausted,
    .list_sealed_below = sq_list_sealed_below,
    .reseal = sq_reseal,
    .count_sealed_with = sq_count_sealed_with,
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
