/*
 * storage.h - the vault's record store: one row per account with its state and its sealed
 * blob. Storage knows rows only; it never sees OPAQUE messages or plaintext, it never
 * talks to the token, and it never interprets the state it stores.
 *
 * Every call that changes a row is one transaction, committed durably before it returns
 * BKV_STORAGE_OK (SQLite: WAL with synchronous=FULL; PostgreSQL: an acknowledged COMMIT
 * with synchronous_commit on). A call that returns BKV_STORAGE_UNAVAILABLE committed
 * nothing (PostgreSQL's in-doubt COMMIT aside, see storage_pg.c).
 *
 * Rows change only by compare-and-set on their MAC: the handlers read a row, verify its
 * MAC with the token, compute the next state and its MAC, and write the whole state with
 * bkv_storage_update(expected_mac = the MAC they verified). Because every written value is
 * absolute (never "attempts_used + 1" computed by the database) and the MAC they verified
 * covers the whole mutable state, a row can only ever hold a state the token vouched for,
 * and two writers racing from the same row cannot both succeed.
 *
 * The seal floor (bkv_storage_raise_seal_floor) is the one rule storage enforces about
 * seal_key_version, in the database itself (a trigger), so it holds for every process
 * and every writer: no row takes a sealed blob under a version below the floor. It lets
 * `bkvd delete-seal-key N` raise the floor to N + 1, then count what N still seals, and
 * know that nothing sealed under N can be committed after the count.
 */
#ifndef BKV_STORAGE_H
#define BKV_STORAGE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BKV_STORAGE_ACCOUNT_MAX 256
#define BKV_STORAGE_SEALED_MAX  1024
#define BKV_STORAGE_REG_ID_MAX  32
#define BKV_STORAGE_MAC_MAX     64

typedef struct bkv_record {
	uint8_t account_id[BKV_STORAGE_ACCOUNT_MAX];
	size_t account_id_len;
	uint32_t suite;
	uint32_t state;          /* the handlers' record state (1 live, 2 destroyed) */
	uint64_t record_version; /* per account */
	uint8_t registration_id[BKV_STORAGE_REG_ID_MAX];
	size_t registration_id_len; /* 0 for records registered before registration ids */
	uint32_t attempts_used;
	uint32_t attempt_limit;
	uint64_t guess_seq;         /* monotonic per account, never reset */
	uint64_t last_finished_seq; /* the newest guess that was finished */
	uint32_t seal_key_version;  /* 0 when nothing is sealed (a tombstone) */
	uint8_t sealed[BKV_STORAGE_SEALED_MAX];
	size_t sealed_len;     /* 0 for a tombstone */
	int64_t registered_at; /* unix seconds, set by the caller */
	int64_t destroyed_at;  /* unix seconds, set by the caller; 0 if not destroyed */
	int64_t updated_at;    /* set by storage on every write */
	uint8_t mac[BKV_STORAGE_MAC_MAX];
	size_t mac_len; /* 0 for rows written before MACs (migrated by bkvd rewrap) */
} bkv_record;

typedef enum bkv_storage_err {
	BKV_STORAGE_OK = 0,
	BKV_STORAGE_NOT_FOUND,   /* no row for the account */
	BKV_STORAGE_EXISTS,      /* insert: the account already has a row */
	BKV_STORAGE_STALE,       /* update: the row's MAC is not the expected one */
	BKV_STORAGE_UNAVAILABLE, /* the database failed; nothing was committed */
	BKV_STORAGE_ARGUMENT,
	BKV_STORAGE_CORRUPT,    /* a stored value does not fit its field */
	BKV_STORAGE_SEAL_FLOOR, /* a write would seal a row under a version below the floor */
} bkv_storage_err;

const char *bkv_storage_strerror(bkv_storage_err err);

typedef struct bkv_storage bkv_storage;

/* url: "sqlite:PATH" (or a bare path), or "postgresql://..." / "postgres://..." (a libpq
 * connection URI). Creates or migrates the schema. */
bkv_storage_err bkv_storage_open(const char *url, bkv_storage **storage, char *why, size_t why_len);
void bkv_storage_close(bkv_storage *storage);

/* url with any password replaced by "***" (the userinfo's "user:password@" and a
 * "password=" parameter), for messages and status output. Truncated to out_len. */
void bkv_storage_url_redacted(const char *url, char *out, size_t out_len);

/* NOT_FOUND, or the row as stored (updated_at included). CORRUPT if a column does not fit
 * bkv_record (nothing of it is returned). */
bkv_storage_err bkv_storage_get(bkv_storage *s, const uint8_t *account_id, size_t account_id_len,
                                bkv_record *out);

/* Creates the account's row from every field of r but updated_at. EXISTS if the account
 * already has a row (nothing changes). SEAL_FLOOR if r is sealed (seal_key_version != 0)
 * under a version below the seal floor (nothing changes). */
bkv_storage_err bkv_storage_insert(bkv_storage *s, const bkv_record *r);

/* Writes every field of r but account_id and updated_at over the account's row, only if
 * the row's stored MAC equals expected_mac (expected_mac_len 0 matches a row without a
 * MAC). STALE if it does not, NOT_FOUND if there is no row; nothing changes then.
 * SEAL_FLOOR (nothing changes) if r is sealed under a version below the seal floor and
 * its sealed blob or seal_key_version differs from the row's: a row that is below the
 * floor already may keep its blob (its counters still change), never take another. */
bkv_storage_err bkv_storage_update(bkv_storage *s, const bkv_record *r, const uint8_t *expected_mac,
                                   size_t expected_mac_len);

/* Deletes the account's row. NOT_FOUND if there was none. */
bkv_storage_err bkv_storage_delete(bkv_storage *s, const uint8_t *account_id,
                                   size_t account_id_len);

/* Rows sealed under a key version in 1 .. min_version - 1, in account order after the
 * given account (NULL/0 to start), at most max. For resumable re-sealing. CORRUPT if a
 * listed row does not fit bkv_record. */
bkv_storage_err bkv_storage_list_sealed_below(bkv_storage *s, uint32_t min_version,
                                              const uint8_t *after, size_t after_len,
                                              bkv_record *out, size_t max, size_t *count);

/* Replaces the sealed blob and seal_key_version of a row if it still has record_version
 * and the MAC mac (neither is covered by the MAC: the blob carries its own AEAD tag).
 * STALE otherwise; SEAL_FLOOR if seal_key_version is below the seal floor. */
bkv_storage_err bkv_storage_reseal(bkv_storage *s, const uint8_t *account_id, size_t account_id_len,
                                   uint64_t record_version, const uint8_t *mac, size_t mac_len,
                                   uint32_t seal_key_version, const uint8_t *sealed,
                                   size_t sealed_len);

/* How many rows a seal-key version still seals. */
bkv_storage_err bkv_storage_count_sealed_with(bkv_storage *s, uint32_t seal_key_version,
                                              uint64_t *count);
/* How many rows are sealed under a version in 1 .. min_version - 1. */
bkv_storage_err bkv_storage_count_sealed_below(bkv_storage *s, uint32_t min_version,
                                               uint64_t *count);

/* Raises the seal floor to min_version (never lowers it; a new database has floor 0) and
 * commits it durably. From its commit on, every insert, update or reseal that would give
 * a row a sealed blob under a version below min_version fails with SEAL_FLOOR, in every
 * process; a write that read the old floor has committed before this returns (SQLite
 * serializes writers; PostgreSQL writers hold a share lock on the floor until they
 * commit). So a count after this call sees every row that can ever be below the floor,
 * except rows that were below it already and keep their blob. */
bkv_storage_err bkv_storage_raise_seal_floor(bkv_storage *s, uint32_t min_version);
/* The seal floor (0 until first raised). */
bkv_storage_err bkv_storage_seal_floor(bkv_storage *s, uint32_t *min_version);

/* ---- Named blobs ----
 * A few named byte strings kept beside the records, in the same database (bkvd keeps the
 * token-sealed AKE keys there for tokens that store no data objects). Storage never
 * interprets them. Every write is one durable transaction. */

#define BKV_STORAGE_BLOB_NAME_MAX 64
#define BKV_STORAGE_BLOB_MAX      1024

/* NOT_FOUND, or the blob copied into out; CORRUPT if it is longer than cap. */
bkv_storage_err bkv_storage_blob_get(bkv_storage *s, const char *name, uint8_t *out, size_t cap,
                                     size_t *len);
/* With old NULL creates the blob (EXISTS if the name is taken); otherwise replaces it only
 * if its value is old (STALE if not, NOT_FOUND if there is none). len 1..BLOB_MAX. */
bkv_storage_err bkv_storage_blob_put(bkv_storage *s, const char *name, const uint8_t *old,
                                     size_t old_len, const uint8_t *value, size_t len);
/* Deletes the blob. NOT_FOUND if there was none. */
bkv_storage_err bkv_storage_blob_delete(bkv_storage *s, const char *name);

/* ---- Group commit ----
 * The worker processes of one host that share a database commit together: a process
 * queues its insert, update or delete in shared memory, and whichever process finds no
 * commit in flight commits every queued write in one transaction (one fsync, or one WAL
 * flush of PostgreSQL's), then wakes the others. Each call still returns only after its
 * own write is durable, with its own result, exactly as without the group; a write whose
 * leader died mid-commit is answered UNAVAILABLE although it may have committed (as a
 * connection lost during COMMIT is). Other writes (blobs, reseal, the floor) are not
 * grouped. A process of its own may run every commit instead of the members
 * (bkv_storage_group_commit, below): what lets a member serve other requests on fibers
 * while its writes wait. On PostgreSQL each host has its own group; the database orders
 * the hosts' commits as it orders any writers' (storage_pg.c, pg_commit_batch).
 *
 * The group is mapped by the parent before fork (members: how many processes join, at most
 * BKV_STORAGE_GROUP_MAX), each child joins with its own member index, at most one process
 * per index at a time, one write at a time per process, or per lane (below). */
#define BKV_STORAGE_GROUP_MAX       256
#define BKV_STORAGE_GROUP_LANES_MAX 64
#define BKV_STORAGE_GROUP_SLOTS     1024 /* members * lanes */

typedef struct bkv_storage_group bkv_storage_group;

bkv_storage_group *bkv_storage_group_create(uint32_t members);
/* A group whose members may each have up to lanes writes in flight at once: a process that
 * runs several requests on one thread (fibers) and, instead of sleeping while a write
 * waits for its commit, yields to its event loop (bkv_storage_set_waiter). With lanes > 1
 * each member has an eventfd (bkv_storage_group_wake_fd) that the commit writes to when
 * one of its writes is done, for the loop to watch. Every process that uses the group must
 * be forked after this call and keep those descriptors open (they are written by number).
 * NULL if members * lanes exceeds BKV_STORAGE_GROUP_SLOTS. */
bkv_storage_group *bkv_storage_group_create_lanes(uint32_t members, uint32_t lanes);
/* The member's eventfd; -1 with one lane. */
int bkv_storage_group_wake_fd(const bkv_storage_group *g, uint32_t member);
uint32_t bkv_storage_group_lanes(const bkv_storage_group *g);
void bkv_storage_group_free(bkv_storage_group *g);

/* How a member waits for its grouped writes without blocking its thread. can_yield says
 * whether the caller may yield now (it runs on a fiber); yield switches to the event loop
 * and returns when the loop resumes it: when the member's eventfd is readable and
 * ready(ready_arg) says its write is done (ready may be NULL: any time), and every 100 ms
 * whatever ready says (for the checks on a dead leader). A caller that cannot yield sleeps
 * as without a waiter. */
typedef struct bkv_storage_waiter {
	bool (*can_yield)(void *arg);
	void (*yield)(void *arg, bool (*ready)(const void *ready_arg), const void *ready_arg);
	void *arg;
	/* How a PostgreSQL read waits for the server without blocking its thread (NULL: it
	 * blocks). yield_fd yields until the loop finds fd readable (or its tick resumes every
	 * waiting caller); kick asks the loop to look at the yielded callers' ready() again soon
	 * (the connection they wait for is free). */
	void (*yield_fd)(void *arg, int fd);
	void (*kick)(void *arg);
} bkv_storage_waiter;
/* Set before the first call; NULL for none. Grouped writes use it in a joined storage of a
 * group with lanes > 1. PostgreSQL's get, rate_take and rate_prune use it whenever it has
 * yield_fd and kick: the callers of the process then share its one connection. A read
 * yields while its statement is out; a caller that finds the connection busy yields until
 * it is free, or, if it cannot yield, gets UNAVAILABLE. Every other call blocks as before. */
void bkv_storage_set_waiter(bkv_storage *s, const bkv_storage_waiter *waiter);
/* Writes on their way. A member announces a request that will probably write before it
 * starts computing (bkv_storage_expect_write); the announcement lasts until that request's
 * write is queued or the request ends without one (bkv_storage_expect_end). A committer
 * that finds writes queued while announced ones are still on their way holds the commit
 * for them, at most as long as its last commit took (and at most the hold maximum, below),
 * so that they share its fsync: fewer commits carry more writes each, for less CPU per
 * write under load, while a write that is alone is committed at once. No write is
 * answered before its commit is durable. Between the two calls, and until the write is
 * queued, the caller must not yield (one announcement per process is open at a time: the
 * fibers of a process switch only inside a write's wait). Only a committer reads the
 * count: without a group, or while no committer runs, both do nothing. */
void bkv_storage_expect_write(bkv_storage *s);
void bkv_storage_expect_end(bkv_storage *s);
/* The longest the committer holds a commit for writes on their way: at most as long as its
 * last commit took, and at most max_ns (default 1 ms; 0: it never holds). */
void bkv_storage_group_set_hold_max(bkv_storage_group *g, uint64_t max_ns);
/* ARGUMENT if s is joined already or member is out of range.
 * A slot left by a dead process is cleared first. */
bkv_storage_err bkv_storage_join_group(bkv_storage *s, bkv_storage_group *g, uint32_t member);
/* The parent calls this for every child it reaps: a batch that child was committing is
 * answered UNAVAILABLE at once (its outcome is in doubt), instead of after a waiter's
 * check of the child's pid. */
void bkv_storage_group_reap(bkv_storage_group *g, pid_t pid);
/* Runs every commit of the group from this process, until *stop: the members queue their
 * writes and wait, and never commit themselves while it runs. s is this process's own
 * storage, not joined to any group. A process that only commits sleeps most of the time,
 * so the scheduler runs it at once when its fsync returns, where a member that leads
 * waits behind the busy members for a CPU. If it dies, or returns, the members lead their
 * own commits again (a commit it was running is answered UNAVAILABLE, as a leader's is).
 * ARGUMENT if the backend needs no group or s is a member; EXISTS if another live process
 * commits for the group. */
bkv_storage_err bkv_storage_group_commit(bkv_storage_group *g, bkv_storage *s,
                                         const volatile sig_atomic_t *stop);
typedef struct bkv_storage_group_info {
	pid_t leader;          /* the process committing now; 0 when no commit is in flight */
	pid_t committer;       /* the process that runs every commit; 0 when the members lead */
	uint32_t in_batch;     /* the writes in that commit */
	uint32_t queued;       /* the writes waiting for the next one */
	uint64_t batches;      /* commits run so far */
	uint64_t writes;       /* and the writes they carried */
	uint64_t upkeeps;      /* commits after which the leader checkpointed (SQLite's WAL) */
	uint32_t expected;     /* writes announced and not yet queued (bkv_storage_expect_write) */
	uint64_t held;         /* commits the committer held for announced writes */
	uint64_t hold_expired; /* of those, the ones committed when the hold ran out of time */
} bkv_storage_group_info;

/* What the group is doing, for logs and tests. */
void bkv_storage_group_info_get(bkv_storage_group *g, bkv_storage_group_info *out);

/* Token buckets shared by every process on the database (PostgreSQL only; SQLite has one
 * host, whose own table is enough). A bucket holds at most capacity units, a take costs
 * cost units and it refills refill_per_ms units per millisecond since its last take.
 * Storage knows keys and buckets only, nothing of what they limit. */
bool bkv_storage_shares_rate_buckets(const bkv_storage *s);
/* Takes cost from the bucket key (created full) at now_ms, in one statement. *taken says
 * whether it did; *level is what the bucket holds after. ARGUMENT if the storage has no
 * shared buckets or the numbers are out of range (capacity < cost, refill 0, any above
 * 2^40, or capacity * refill_per_ms above 2^62). */
bkv_storage_err bkv_storage_rate_take(bkv_storage *s, const uint8_t *key, size_t key_len,
                                      uint64_t capacity, uint64_t cost, uint64_t refill_per_ms,
                                      int64_t now_ms, bool *taken, uint64_t *level);
/* Deletes buckets that are full again at now_ms (a full bucket is the same as none). */
bkv_storage_err bkv_storage_rate_prune(bkv_storage *s, int64_t now_ms);

#endif
