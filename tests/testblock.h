/*
 * testblock.h - holds back every write to the vault's records while reads go on, for the
 * tests that need a commit caught in flight (and, on PostgreSQL, every read too, for those
 * that need a read caught waiting: tb_block_reads): on SQLite the database's write lock (BEGIN
 * IMMEDIATE on a connection of its own), on PostgreSQL a table lock that conflicts with
 * every writer and no reader (LOCK TABLE records IN EXCLUSIVE MODE). A commit started
 * meanwhile waits in its first write. Header-only; failures go through cmocka.
 */
#ifndef BKV_TESTBLOCK_H
#define BKV_TESTBLOCK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "testpg.h"

typedef struct tb_block {
	sqlite3 *db;
	PGconn *pg;
} tb_block;

/* On PostgreSQL when pg_url is neither NULL nor empty, else on the SQLite database at
 * sqlite_path. Never keep one across a fork. */
static inline tb_block tb_block_writes(const char *sqlite_path, const char *pg_url)
{
	tb_block b = {NULL, NULL};
	if (pg_url != NULL && pg_url[0] != '\0') {
		b.pg = tu_pg_connect(pg_url);
		assert_non_null(b.pg);
		PGresult *res = PQexec(b.pg, "BEGIN; LOCK TABLE records IN EXCLUSIVE MODE");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fail_msg("cannot lock the records: %s", PQerrorMessage(b.pg));
		PQclear(res);
		return b;
	}
	if (sqlite3_open_v2(sqlite_path, &b.db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
		fail_msg("cannot open %s: %s", sqlite_path, b.db ? sqlite3_errmsg(b.db) : "?");
	sqlite3_busy_timeout(b.db, 5000);
	if (sqlite3_exec(b.db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("cannot take the write lock of %s: %s", sqlite_path, sqlite3_errmsg(b.db));
	return b;
}

static inline void tb_release_writes(tb_block *b)
{
	if (b->pg != NULL) {
		PGresult *res = PQexec(b->pg, "ROLLBACK");
		assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
		PQfinish(b->pg);
	} else {
		assert_int_equal(sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(b->db);
	}
	*b = (tb_block){NULL, NULL};
}

/* PostgreSQL only: holds back every statement on the records and the rate buckets, reads
 * included (ACCESS EXCLUSIVE, which conflicts even with preparing a statement on them),
 * from a session of its own until tb_release_reads; closing that session (PQfinish) ends
 * the hold as well. Never keep one across a fork. */
static inline PGconn *tb_block_reads(const char *pg_url)
{
	PGconn *c = tu_pg_connect(pg_url);
	assert_non_null(c);
	PGresult *res =
	    PQexec(c, "BEGIN; LOCK TABLE records, bkv_rate_buckets IN ACCESS EXCLUSIVE MODE");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fail_msg("cannot lock the records: %s", PQerrorMessage(c));
	PQclear(res);
	return c;
}

static inline void tb_release_reads(PGconn **held)
{
	PGresult *res = PQexec(*held, "ROLLBACK");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	PQfinish(*held);
	*held = NULL;
}

#endif
