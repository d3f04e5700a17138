/*
 * testgroup.h - helpers for the tests of SQLite group commit (storage.h, "Group commit"):
 * forking a committer process, waiting until it runs the group's commits, and waiting for a
 * commit in flight. Header-only (static inline) so each test stays a single source file;
 * failures go through cmocka's fail_msg.
 */
#ifndef BKV_TESTGROUP_H
#define BKV_TESTGROUP_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage.h"

/* A monotonic clock of its own, so that the header does not depend on the test's. */
static inline double tg_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void tg_sleep_1ms(void)
{
	struct timespec ts = {0, 1000000};
	nanosleep(&ts, NULL);
}

/* Set in the committer child by SIGTERM: bkv_storage_group_commit returns when it is set. */
static volatile sig_atomic_t tg_committer_stop;

static inline void tg_on_committer_term(int sig)
{
	(void)sig;
	tg_committer_stop = 1;
}

/* Forks a committer process, as bkvd's: bkv_storage_group_commit on g, on a connection of
 * its own to url, until SIGTERM (or SIGALRM after alarm_s). The child exits with the
 * bkv_storage_err it returned, 100 if it could not open the storage. */
static inline pid_t tg_fork_committer(bkv_storage_group *g, const char *url, unsigned alarm_s)
{
	fflush(NULL);
	const pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid > 0) {
		return pid;
	}
	alarm(alarm_s);
	/* no SA_RESTART: a wait interrupted by SIGTERM returns and sees the stop flag */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tg_on_committer_term;
	sigaction(SIGTERM, &sa, NULL);
	bkv_storage *s = NULL;
	char why[256];
	if (bkv_storage_open(url, &s, why, sizeof(why)) != BKV_STORAGE_OK) {
		_exit(100);
	}
	const bkv_storage_err err = bkv_storage_group_commit(g, s, &tg_committer_stop);
	bkv_storage_close(s);
	_exit((int)err);
}

/* Forks a committer (tg_fork_committer) and waits, at most timeout_s, until it runs g's
 * commits. */
static inline pid_t tg_start_committer(bkv_storage_group *g, const char *url, unsigned alarm_s,
                                       unsigned timeout_s)
{
	const pid_t pid = tg_fork_committer(g, url, alarm_s);
	const double deadline = tg_now_s() + (double)timeout_s;
	bkv_storage_group_info gi;
	for (bkv_storage_group_info_get(g, &gi); gi.committer != pid;
	     bkv_storage_group_info_get(g, &gi)) {
		if (tg_now_s() > deadline) {
			fail_msg("the committer %d never took the group's commits", (int)pid);
		}
		tg_sleep_1ms();
	}
	return pid;
}

/* Waits, at most timeout_s, until a commit of g led by another process than not_leader is
 * in flight with at least in_batch writes and at least queued more waiting; returns what
 * bkv_storage_group_info_get said then. */
static inline bkv_storage_group_info tg_wait_for_commit(bkv_storage_group *g, pid_t not_leader,
                                                        uint32_t in_batch, uint32_t queued,
                                                        unsigned timeout_s)
{
	const double deadline = tg_now_s() + (double)timeout_s;
	bkv_storage_group_info gi;
	for (;;) {
		bkv_storage_group_info_get(g, &gi);
		if (gi.leader != 0 && gi.leader != not_leader && gi.in_batch >= in_batch &&
		    gi.queued >= queued) {
			return gi;
		}
		if (tg_now_s() > deadline) {
			fail_msg("the group never had %u writes in a commit and %u queued "
			         "(leader %d, %u in the commit, %u queued)",
			         in_batch, queued, (int)gi.leader, gi.in_batch, gi.queued);
		}
		tg_sleep_1ms();
	}
}

#endif
