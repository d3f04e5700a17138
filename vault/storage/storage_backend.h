/*
 * storage_backend.h - what a storage backend implements. storage.c dispatches the
 * public calls to the backend chosen by the URL's scheme.
 */
#ifndef BKV_STORAGE_BACKEND_H
#define BKV_STORAGE_BACKEND_H

#include "storage.h"

/* One write of a group commit, as it waits in shared memory. */
typedef enum bkv_group_kind {
	BKV_GROUP_INSERT = 1,
	BKV_GROUP_UPDATE,
	BKV_GROUP_DELETE
} bkv_group_kind;

typedef struct bkv_group_op {
	bkv_group_kind kind;
	bkv_record record; /* a delete uses account_id only */
	uint8_t expected_mac[BKV_STORAGE_MAC_MAX];
	size_t expected_mac_len;
	bkv_storage_err result;
} bkv_group_op;

typedef struct bkv_storage_ops {
	void (*close)(bkv_storage *s);
	bkv_storage_err (*get)(bkv_storage *s, const uint8_t *account, size_t len, bkv_record *out);
	bkv_storage_err (*insert)(bkv_storage *s, const bkv_record *r);
	bkv_storage_err (*update)(bkv_storage *s, const bkv_record *r, const uint8_t *expected_mac,
	                          size_t expected_mac_len);
	bkv_storage_err (*delete_record)(bkv_storage *s, const uint8_t *account, size_t len);
	bkv_storage_err (*list_sealed_below)(bkv_storage *s, uint32_t min_version,
	                                     const uint8_t *after, size_t after_len,
	                                     bkv_record *out, size_t max, size_t *count);
	bkv_storage_err (*reseal)(bkv_storage *s, const uint8_t *account, size_t len,
	                          uint64_t record_version, const uint8_t *mac, size_t mac_len,
	                          uint32_t seal_key_version, const uint8_t *sealed,
	                          size_t sealed_len);
	bkv_storage_err (*count_sealed_with)(bkv_storage *s, uint32_t version, uint64_t *count);
	bkv_storage_err (*count_sealed_below)(bkv_storage *s, uint32_t min_version,
	                                      uint64_t *count);
	bkv_storage_err (*raise_seal_floor)(bkv_storage *s, uint32_t min_version);
	bkv_storage_err (*seal_floor)(bkv_storage *s, uint32_t *min_version);
	/* Named blobs; name and lengths checked by storage.c. */
	bkv_storage_err (*blob_get)(bkv_storage *s, const char *name, uint8_t *out, size_t cap,
	                            size_t *len);
	bkv_storage_err (*blob_put)(bkv_storage *s, const char *name, const uint8_t *old,
	                            size_t old_len, const uint8_t *value, size_t len);
	bkv_storage_err (*blob_delete)(bkv_storage *s, const char *name);
	/* NULL when the backend shares no rate buckets */
	bkv_storage_err (*rate_take)(bkv_storage *s, const uint8_t *key, size_t key_len,
	                             uint64_t capacity, uint64_t cost, uint64_t refill_per_ms,
	                             int64_t now_ms, bool *taken, uint64_t *level);
	bkv_storage_err (*rate_prune)(bkv_storage *s, int64_t now_ms);
	/* Group commit: runs every op in one transaction and sets each op's result; if the
	 * transaction does not commit, every result is UNAVAILABLE. NULL when the backend
	 * needs no group. */
	void (*commit_batch)(bkv_storage *s, bkv_group_op *const *ops, size_t n);
	/* Upkeep (a WAL checkpoint): run by the batch's leader after its writers were
	 * answered, while it still leads, so no other commit runs meanwhile. *mark is one
	 * word the group keeps for the backend across leaders (0 at first). Returns whether
	 * it did any. */
	bool (*after_batch)(bkv_storage *s, uint64_t *mark);
} bkv_storage_ops;

struct bkv_storage {
	const bkv_storage_ops *ops;
	bkv_storage_group *group; /* NULL unless joined */
	uint32_t member;
	uint64_t lanes_busy;       /* this process's lanes with a write in flight */
	bkv_storage_waiter waiter; /* yield NULL: none */
	bool expecting;            /* bkv_storage_expect_write, its write not yet queued */
};

/* storage_group.c */
bkv_storage_err bkv_storage_group_join(bkv_storage_group *g, uint32_t member);
/* waiter NULL: sleep on the slot's futex word. expected: the write was announced
 * (bkv_storage_group_expect), and is no longer on its way once queued. */
bkv_storage_err bkv_storage_group_write(bkv_storage_group *g, uint32_t member, uint32_t lane,
                                        bkv_storage *s, const bkv_group_op *op,
                                        const bkv_storage_waiter *waiter, bool expected);
/* One write more (on) or less (off) on its way from member. Only a committer reads the
 * count: without one, on counts nothing and returns false. */
bool bkv_storage_group_expect(bkv_storage_group *g, uint32_t member, bool on);

bkv_storage_err bkv_storage_sqlite_open(const char *path, bkv_storage **storage, char *why,
                                        size_t why_len);

/* url: a libpq connection URI, "postgresql://..." or "postgres://...". */
bkv_storage_err bkv_storage_pg_open(const char *url, bkv_storage **storage, char *why,
                                    size_t why_len);

#endif
