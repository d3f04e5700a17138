/*
 * testpg.h - a plain libpq connection for the tests that also run on PostgreSQL (beside
 * the storage backend's own), to reset schemas and inject faults. Header-only.
 */
#ifndef BKV_TESTPG_H
#define BKV_TESTPG_H

#include <stdio.h>

#include <libpq-fe.h>

static inline void tu_pg_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* A connection to url with notices silenced, or NULL (the reason printed). Never keep one
 * across a fork. */
static inline PGconn *tu_pg_connect(const char *url)
{
	PGconn *c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect to %s: %s", url, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, tu_pg_quiet, NULL);
	return c;
}

#endif
