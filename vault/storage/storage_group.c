/*
 * storage_group.c - group commit for the processes of one host that share a database
 * (see "Group commit" in storage.h).
 *
 * The group is one shared mapping, made before fork: a robust process-shared mutex, the
 * pid of the member that is committing (0 when none is), and one slot per member, with a
 * futex word of its own. A member's write is a slot: it copies its change in (QUEUED) and
 * then, under the mutex, either finds no commit in flight and becomes the leader, or waits
 * on its slot's futex word. The leader takes every QUEUED slot (IN_BATCH), drops the mutex,
 * has the backend run all of them in one transaction (one fsync), then marks them DONE and
 * wakes the members of its batch. It then runs the backend's upkeep (a WAL checkpoint, now
 * and then) while still leading, clears the leader, and wakes one queued member to lead the
 * next commit: nobody else, so a commit costs no wake-ups of processes it did not serve. A member
 * returns only once its own slot is DONE, with its own result, so no caller is answered before the
 * commit that holds its change is durable.
 *
 * The batch is bounded by the number of members (one slot each, one write at a time per
 * process), so nothing is allocated and nothing can overflow.
 *
 * A committer (bkv_storage_group_commit) is a process that leads every commit and does
 * nothing else: while one is registered, members queue and wake it (if it sleeps on its
 * own futex word) instead of leading, and the end of a commit wakes it instead of a member.
 * If it dies, it is cleared like a dead leader (by the parent's reap or a waiter's pid
 * check) and the members lead again.
 *
 * The committer may hold a commit for writes on their way: a member counts the requests
 * that announced a write (bkv_storage_group_expect) until each write is queued or the
 * request ends, and a committer that finds writes queued while others are announced waits
 * for them, at most as long as its last commit took (and at most hold_max_ns). Queued
 * writes wake a holding committer only once nothing more is announced, so a held commit
 * costs one wake-up. A member's count is its own to lower; one that died leaves it to the
 * process that takes over its index, which starts from 0.
 *
 * A leader that dies mid-commit leaves its batch in doubt, exactly like a connection lost
 * during COMMIT: the transaction either reached the disk or not. Its slots are answered
 * UNAVAILABLE, which the handlers treat as "send nothing", the safe side (an attempt that
 * may have been counted is never answered with a KE2). The death is noticed by the
 * supervising parent (bkv_storage_group_reap, called after waitpid) or, failing that, by a
 * waiter whose wait timed out and who finds the leader's pid gone. The mutex is only held
 * for a few copies; a member that dies holding it leaves it to the next locker, which
 * marks it consistent (every field is written so that any prefix of an update is usable).
 */
#include <errno.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "storage_backend.h"

#define WAIT_SLICE_NS 100000000L /* a waiter checks its leader's pid this often */
/* The committer holds a commit for announced writes at most this long by default (and at
 * most as long as its last commit took). */
#define HOLD_MAX_NS 1000000u

enum { SLOT_FREE = 0, SLOT_QUEUED, SLOT_IN_BATCH, SLOT_DONE };

typedef struct group_slot {
	uint32_t state;
	uint32_t wake; /* futex word of the process waiting on this slot: bumped to wake it */
	int wake_fd;   /* or, when >= 0, its member's eventfd: written to wake it */
	bkv_group_op op;
} group_slot;

struct bkv_storage_group {
	pthread_mutex_t lock;
	pid_t leader;     /* the member committing now; 0 when none is */
	uint64_t batches; /* commits run, and the writes they carried */
	uint64_t writes;
	uint64_t upkeeps;           /* batches after which the backend did upkeep (checkpoints) */
	uint64_t upkeep_mark;       /* the backend's word (after_batch) */
	pid_t committer;            /* the process that runs every commit; 0: members lead */
	uint32_t committer_idle;    /* it waits for work on committer_wake */
	uint32_t committer_wake;    /* its futex word */
	uint32_t committer_holding; /* it holds queued writes for announced ones */
	uint32_t expected_total;    /* the members' expected[], summed */
	uint64_t last_commit_ns;    /* how long the last batch's commit took */
	uint64_t hold_max_ns;       /* bkv_storage_group_set_hold_max */
	uint64_t held;              /* commits the committer held for announced writes */
	uint64_t hold_expired;      /* of those, the ones that ran out of time */
	size_t mapped;
	uint32_t members;
	uint32_t lanes;                           /* slots per member */
	uint32_t slot_count;                      /* members * lanes */
	int wake_fds[BKV_STORAGE_GROUP_MAX];      /* each member's eventfd; -1 with one lane */
	uint32_t expected[BKV_STORAGE_GROUP_MAX]; /* each member's writes on their way */
	group_slot slots[];
};

bkv_storage_group *bkv_storage_group_create(uint32_t members)
{
	return bkv_storage_group_create_lanes(members, 1);
}

bkv_storage_group *bkv_storage_group_create_lanes(uint32_t members, uint32_t lanes)
{
	if (members == 0 || members > BKV_STORAGE_GROUP_MAX || lanes == 0 ||
	    lanes > BKV_STORAGE_GROUP_LANES_MAX || members * lanes > BKV_STORAGE_GROUP_SLOTS)
		return NULL;
	const size_t size = sizeof(bkv_storage_group) + members * lanes * sizeof(group_slot);
	bkv_storage_group *g =
	    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g == MAP_FAILED)
		return NULL;
	pthread_mutexattr_t attr;
	bool ok = pthread_mutexattr_init(&attr) == 0;
	ok = ok && pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) == 0 &&
	     pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) == 0 &&
	     pthread_mutex_init(&g->lock, &attr) == 0;
	pthread_mutexattr_destroy(&attr);
	g->mapped = size;
	g->hold_max_ns = HOLD_MAX_NS;
	g->members = members;
	g->lanes = lanes;
	g->slot_count = members * lanes;
	for (uint32_t m = 0; m < BKV_STORAGE_GROUP_MAX; m++) {
		g->wake_fds[m] = -1;
		if (ok && lanes > 1 && m < members) {
			g->wake_fds[m] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			ok = g->wake_fds[m] >= 0;
		}
	}
	for (uint32_t i = 0; i < g->slot_count; i++)
		g->slots[i].wake_fd = -1;
	if (!ok) {
		bkv_storage_group_free(g);
		return NULL;
	}
	return g;
}

int bkv_storage_group_wake_fd(const bkv_storage_group *g, uint32_t member)
{
	return g != NULL && member < g->members ? g->wake_fds[member] : -1;
}

uint32_t bkv_storage_group_lanes(const bkv_storage_group *g)
{
	return g != NULL ? g->lanes : 0;
}

void bkv_storage_group_set_hold_max(bkv_storage_group *g, uint64_t max_ns)
{
	if (g != NULL)
		__atomic_store_n(&g->hold_max_ns, max_ns, __ATOMIC_RELAXED);
}

void bkv_storage_group_free(bkv_storage_group *g)
{
	if (g == NULL)
		return;
	pthread_mutex_destroy(&g->lock);
	for (uint32_t m = 0; m < g->members; m++) {
		if (g->wake_fds[m] >= 0)
			close(g->wake_fds[m]);
	}
	sodium_memzero(g->slots, g->slot_count * sizeof(group_slot));
	munmap(g, g->mapped);
}

static void lock(bkv_storage_group *g)
{
	if (pthread_mutex_lock(&g->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&g->lock);
}

static void unlock(bkv_storage_group *g)
{
	pthread_mutex_unlock(&g->lock);
}

/* Under the lock: wakes the process waiting on slot, if any: through its eventfd when it
 * waits in its event loop, else its futex word. */
static void wake_slot(group_slot *slot)
{
	if (slot->wake_fd >= 0) {
		const uint64_t one = 1;
		if (write(slot->wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one)) {
			/* EAGAIN only at 2^64 - 2 unread wakes: it is readable either way */
		}
		return;
	}
	__atomic_add_fetch(&slot->wake, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &slot->wake, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Under the lock: wakes the committer if it waits for work. */
static void wake_committer(bkv_storage_group *g)
{
	if (!g->committer_idle)
		return;
	g->committer_idle = 0;
	__atomic_add_fetch(&g->committer_wake, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &g->committer_wake, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Under the lock, once no commit is in flight: wakes one queued member to lead the next
 * (the committer leads every commit when there is one: it looks for work itself). */
static void wake_next_leader(bkv_storage_group *g)
{
	if (g->committer != 0) {
		wake_committer(g);
		return;
	}
	for (uint32_t i = 0; i < g->slot_count; i++) {
		if (g->slots[i].state == SLOT_QUEUED) {
			wake_slot(&g->slots[i]);
			return;
		}
	}
}

/* Under the lock: the batch of a leader that is gone is in doubt; answer it and end it. */
static void abandon_batch(bkv_storage_group *g)
{
	for (uint32_t i = 0; i < g->slot_count; i++) {
		if (g->slots[i].state == SLOT_IN_BATCH) {
			g->slots[i].op.result = BKV_STORAGE_UNAVAILABLE;
			g->slots[i].state = SLOT_DONE;
			wake_slot(&g->slots[i]);
		}
	}
	g->leader = 0;
	wake_next_leader(g);
}

/* Under the lock, after a wait of WAIT_SLICE_NS: if the commit that was in flight is still
 * led by the same process and that process is gone, abandons its batch; a committer that
 * is gone is cleared. */
static void check_gone(bkv_storage_group *g, pid_t leader)
{
	if (g->leader == leader && leader != 0 && kill(leader, 0) != 0 && errno == ESRCH)
		abandon_batch(g);
	if (g->committer != 0 && kill(g->committer, 0) != 0 && errno == ESRCH)
		g->committer = 0; /* the members lead until another committer starts */
}

/* Unlocks, waits until slot is woken or WAIT_SLICE_NS pass, and locks again. */
static void wait_on(bkv_storage_group *g, group_slot *slot)
{
	const uint32_t seen = __atomic_load_n(&slot->wake, __ATOMIC_ACQUIRE);
	const pid_t leader = g->leader;
	unlock(g);
	struct timespec slice = {0, WAIT_SLICE_NS};
	const long rc = syscall(SYS_futex, &slot->wake, FUTEX_WAIT, seen, &slice, NULL, 0);
	const bool timed_out = rc != 0 && errno == ETIMEDOUT;
	lock(g);
	if (timed_out)
		check_gone(g, leader);
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct slot_wait {
	const bkv_storage_group *g;
	const group_slot *slot;
} slot_wait;

/* A hint, read without the lock: whether the waiter has something to do, its slot's commit
 * being done or no commit in flight for it to lead (wake_next_leader). */
static bool slot_ready(const void *arg)
{
	const slot_wait *w = arg;
	return __atomic_load_n(&w->slot->state, __ATOMIC_ACQUIRE) == SLOT_DONE ||
	       (__atomic_load_n(&w->g->leader, __ATOMIC_ACQUIRE) == 0 &&
	        __atomic_load_n(&w->g->committer, __ATOMIC_ACQUIRE) == 0);
}

/* Unlocks, yields to the caller's event loop (which resumes it on the member's eventfd once
 * slot_ready, or on its own tick), and locks again; the liveness checks run once per
 * WAIT_SLICE_NS. */
static void wait_yielding(bkv_storage_group *g, group_slot *slot, const bkv_storage_waiter *waiter,
                          uint64_t *checked_ns)
{
	const pid_t leader = g->leader;
	const slot_wait wait = {g, slot};
	unlock(g);
	waiter->yield(waiter->arg, slot_ready, &wait);
	lock(g);
	if (slot->state == SLOT_DONE)
		return;
	const uint64_t now = monotonic_ns();
	if (now - *checked_ns >= (uint64_t)WAIT_SLICE_NS) {
		*checked_ns = now;
		check_gone(g, leader);
	}
}

void bkv_storage_group_reap(bkv_storage_group *g, pid_t pid)
{
	if (g == NULL || pid <= 0)
		return;
	lock(g);
	if (g->committer == pid)
		g->committer = 0;
	if (g->leader == pid)
		abandon_batch(g);
	unlock(g);
}

void bkv_storage_group_info_get(bkv_storage_group *g, bkv_storage_group_info *out)
{
	memset(out, 0, sizeof(*out));
	lock(g);
	out->leader = g->leader;
	out->committer = g->committer;
	for (uint32_t i = 0; i < g->slot_count; i++) {
		out->in_batch += g->slots[i].state == SLOT_IN_BATCH;
		out->queued += g->slots[i].state == SLOT_QUEUED;
	}
	out->batches = g->batches;
	out->writes = g->writes;
	out->upkeeps = g->upkeeps;
	out->held = g->held;
	out->hold_expired = g->hold_expired;
	out->expected = __atomic_load_n(&g->expected_total, __ATOMIC_RELAXED);
	unlock(g);
}

bkv_storage_err bkv_storage_group_join(bkv_storage_group *g, uint32_t member)
{
	if (g == NULL || member >= g->members)
		return BKV_STORAGE_ARGUMENT;
	/* Slots left by a member that died: one still in a batch is answered by its leader
	 * (or abandoned); once it is not, it is this member's. */
	lock(g);
	const uint32_t left = __atomic_exchange_n(&g->expected[member], 0, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&g->expected_total, left, __ATOMIC_RELAXED); /* a dead one's */
	for (uint32_t lane = 0; lane < g->lanes; lane++) {
		group_slot *slot = &g->slots[member * g->lanes + lane];
		slot->wake_fd = -1;
		while (slot->state == SLOT_IN_BATCH)
			wait_on(g, slot);
		sodium_memzero(&slot->op, sizeof(slot->op));
		slot->state = SLOT_FREE;
	}
	unlock(g);
	return BKV_STORAGE_OK;
}

/*
 * Under the lock, with no commit in flight: leads one commit of every queued write (at
 * least one). The leader is named first, so a death half-way through leaves a batch to
 * abandon. Returns with the lock held, the batch answered and no commit in flight.
 */
static void lead_batch(bkv_storage_group *g, bkv_storage *s, const group_slot *self)
{
	group_slot *batch[BKV_STORAGE_GROUP_SLOTS];
	bkv_group_op *ops[BKV_STORAGE_GROUP_SLOTS];
	const pid_t me = getpid();
	g->leader = me;
	size_t n = 0;
	for (uint32_t i = 0; i < g->slot_count; i++) {
		if (g->slots[i].state == SLOT_QUEUED) {
			g->slots[i].state = SLOT_IN_BATCH;
			batch[n] = &g->slots[i];
			ops[n++] = &g->slots[i].op;
		}
	}
	unlock(g);
	const uint64_t started = monotonic_ns();
	s->ops->commit_batch(s, ops, n);
	const uint64_t took = monotonic_ns() - started;
	lock(g);
	/* (abandoned meanwhile only if this process was taken for dead) */
	if (g->leader != me)
		return;
	g->last_commit_ns = took;
	for (size_t i = 0; i < n; i++) {
		batch[i]->state = SLOT_DONE;
		if (batch[i] != self)
			wake_slot(batch[i]);
	}
	g->batches++;
	g->writes += n;
	if (s->ops->after_batch != NULL) {
		/* Still leading: the next commit starts after the upkeep, so a checkpoint sees
		 * no commit race it (which would keep SQLite from restarting its WAL: see
		 * sq_after_batch). */
		unlock(g);
		const bool did = s->ops->after_batch(s, &g->upkeep_mark);
		lock(g);
		if (g->leader != me)
			return;
		g->upkeeps += did;
	}
	g->leader = 0;
	wake_next_leader(g);
}

/* One announced write of member is no longer on its way. Only the member itself lowers its
 * count, so the check cannot race the decrement; a process that takes over a dead
 * member's index starts from 0 (bkv_storage_group_join). */
static void unexpect(bkv_storage_group *g, uint32_t member)
{
	if (__atomic_load_n(&g->expected[member], __ATOMIC_RELAXED) == 0)
		return;
	__atomic_sub_fetch(&g->expected[member], 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&g->expected_total, 1, __ATOMIC_RELAXED);
}

static bool any_expected(const bkv_storage_group *g)
{
	return __atomic_load_n(&g->expected_total, __ATOMIC_RELAXED) != 0;
}

/* Under the lock, after a write was queued: wakes the committer if it waits for work, or
 * holds a commit and nothing more is on its way; a commit held for several writes thus
 * costs one wake-up, not one per write. */
static void nudge_committer(bkv_storage_group *g)
{
	if (!g->committer_holding || !any_expected(g))
		wake_committer(g);
}

bool bkv_storage_group_expect(bkv_storage_group *g, uint32_t member, bool on)
{
	if (g == NULL || member >= g->members)
		return false;
	if (on) {
		/* (nobody would read it: no shared write on the members' hot path) */
		if (__atomic_load_n(&g->committer, __ATOMIC_RELAXED) == 0)
			return false;
		/* (the member's count first: a rejoin subtracts it from the total) */
		__atomic_add_fetch(&g->expected[member], 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&g->expected_total, 1, __ATOMIC_RELAXED);
		return true;
	}
	/* A request that ended without its write: a held commit sees it when the hold's time
	 * is up or at its next wake-up, whichever comes first. */
	unexpect(g, member);
	return false;
}

static bool any_queued(const bkv_storage_group *g)
{
	for (uint32_t i = 0; i < g->slot_count; i++) {
		if (g->slots[i].state == SLOT_QUEUED)
			return true;
	}
	return false;
}

bkv_storage_err bkv_storage_group_write(bkv_storage_group *g, uint32_t member, uint32_t lane,
                                        bkv_storage *s, const bkv_group_op *op,
                                        const bkv_storage_waiter *waiter, bool expected)
{
	group_slot *slot = &g->slots[member * g->lanes + lane];
	const bool yielding = waiter != NULL && g->wake_fds[member] >= 0;
	uint64_t checked_ns = yielding ? monotonic_ns() : 0;
	lock(g);
	slot->op = *op;
	slot->op.result = BKV_STORAGE_UNAVAILABLE;
	slot->wake_fd = yielding ? g->wake_fds[member] : -1;
	slot->state = SLOT_QUEUED;
	if (expected)
		unexpect(g, member);
	for (;;) {
		if (slot->state == SLOT_DONE) {
			const bkv_storage_err result = slot->op.result;
			sodium_memzero(&slot->op, sizeof(slot->op));
			slot->state = SLOT_FREE;
			unlock(g);
			return result;
		}
		if (g->committer != 0)
			nudge_committer(g);
		else if (g->leader == 0 && slot->state == SLOT_QUEUED) {
			lead_batch(g, s, slot);
			continue;
		}
		if (yielding)
			wait_yielding(g, slot, waiter, &checked_ns);
		else
			wait_on(g, slot);
	}
}

bkv_storage_err bkv_storage_group_commit(bkv_storage_group *g, bkv_storage *s,
                                         const volatile sig_atomic_t *stop)
{
	if (g == NULL || s == NULL || s->ops->commit_batch == NULL || s->group != NULL)
		return BKV_STORAGE_ARGUMENT;
	const pid_t me = getpid();
	lock(g);
	if (g->committer != 0 && g->committer != me && kill(g->committer, 0) == 0) {
		unlock(g);
		return BKV_STORAGE_EXISTS;
	}
	g->committer = me;
	/* A commit a member leads now ends with wake_next_leader, which wakes the committer. */
	uint64_t holding_since = 0; /* the queued writes wait for announced ones since then */
	while (!*stop && g->committer == me) {
		long wait_ns = WAIT_SLICE_NS;
		if (g->leader == 0 && any_queued(g)) {
			const uint64_t most = __atomic_load_n(&g->hold_max_ns, __ATOMIC_RELAXED);
			const uint64_t hold = g->last_commit_ns < most ? g->last_commit_ns : most;
			const uint64_t now = hold > 0 && any_expected(g) ? monotonic_ns() : 0;
			if (now != 0 && holding_since == 0) {
				holding_since = now;
				g->held++;
			}
			if (now == 0 || now - holding_since >= hold) {
				g->hold_expired += now != 0;
				holding_since = 0;
				g->committer_holding = 0;
				lead_batch(g, s, NULL);
				continue;
			}
			/* hold: woken when nothing more is on its way (nudge_committer) */
			const uint64_t left = hold - (now - holding_since);
			wait_ns = left < (uint64_t)WAIT_SLICE_NS ? (long)left : WAIT_SLICE_NS;
		}
		g->committer_holding = holding_since != 0;
		g->committer_idle = 1;
		const uint32_t seen = __atomic_load_n(&g->committer_wake, __ATOMIC_ACQUIRE);
		unlock(g);
		struct timespec slice = {0, wait_ns};
		syscall(SYS_futex, &g->committer_wake, FUTEX_WAIT, seen, &slice, NULL, 0);
		lock(g);
		g->committer_idle = 0;
		if (g->leader != 0 && g->leader != me && kill(g->leader, 0) != 0 && errno == ESRCH)
			abandon_batch(g);
	}
	if (g->committer == me) {
		g->committer = 0;
		if (g->leader == 0)
			wake_next_leader(g); /* the members lead again */
	}
	unlock(g);
	return BKV_STORAGE_OK;
}
