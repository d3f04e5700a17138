/*
 * storage.c - the storage entry points: argument checks shared by every backend, then
 * dispatch to the backend named by the URL.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "storage_backend.h"

const char *bkv_storage_strerror(bkv_storage_err err)
{
	switch (err) {
	case BKV_STORAGE_OK:
		return "success";
	case BKV_STORAGE_NOT_FOUND:
		return "no record for this account";
	case BKV_STORAGE_EXISTS:
		return "the account already has a record";
	case BKV_STORAGE_STALE:
		return "the record changed meanwhile";
	case BKV_STORAGE_UNAVAILABLE:
		return "the database is unavailable";
	case BKV_STORAGE_ARGUMENT:
		return "invalid storage argument";
	case BKV_STORAGE_CORRUPT:
		return "a stored value does not fit its field";
	case BKV_STORAGE_SEAL_FLOOR:
		return "the record is sealed under a key version below the seal floor";
	}
	return "unknown storage error";
}

bkv_storage_err bkv_storage_open(const char *url, bkv_storage **storage, char *why, size_t why_len)
{
	if (url == NULL || storage == NULL)
		return BKV_STORAGE_ARGUMENT;
	*storage = NULL;
	if (strncmp(url, "sqlite:", 7) == 0)
		return bkv_storage_sqlite_open(url + 7, storage, why, why_len);
	if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
		return bkv_storage_pg_open(url, storage, why, why_len);
	if (strstr(url, "://") != NULL) {
		snprintf(why, why_len, "unsupported storage URL scheme in \"%.64s\"", url);
		return BKV_STORAGE_ARGUMENT;
	}
	return bkv_storage_sqlite_open(url, storage, why, why_len);
}

void bkv_storage_close(bkv_storage *s)
{
	if (s != NULL)
		s->ops->close(s);
}

static bool account_ok(const uint8_t *account, size_t len)
{
	return account != NULL && len >= 1 && len <= BKV_STORAGE_ACCOUNT_MAX;
}

bkv_storage_err bkv_storage_get(bkv_storage *s, const uint8_t *account, size_t len, bkv_record *out)
{
	if (s == NULL || !account_ok(account, len) || out == NULL)
		return BKV_STORAGE_ARGUMENT;
	return s->ops->get(s, account, len, out);
}

/* What every backend may assume of a row it writes. */
static bool record_ok(const bkv_record *r)
{
	return r != NULL && account_ok(r->account_id, r->account_id_len) &&
	       r->sealed_len <= BKV_STORAGE_SEALED_MAX &&
	       r->registration_id_len <= BKV_STORAGE_REG_ID_MAX &&
	       r->mac_len <= BKV_STORAGE_MAC_MAX && r->record_version <= INT64_MAX &&
	       r->guess_seq <= INT64_MAX && r->last_finished_seq <= INT64_MAX;
}

bkv_storage_err bkv_storage_join_group(bkv_storage *s, bkv_storage_group *g, uint32_t member)
{
	if (s == NULL || g == NULL || s->ops->commit_batch == NULL || s->group != NULL)
		return BKV_STORAGE_ARGUMENT;
	bkv_storage_err err = bkv_storage_group_join(g, member);
	if (err == BKV_STORAGE_OK) {
		s->group = g;
		s->member = member;
	}
	return err;
}

void bkv_storage_set_waiter(bkv_storage *s, const bkv_storage_waiter *waiter)
{
	if (s == NULL)
		return;
	const bool usable = waiter != NULL && waiter->can_yield != NULL && waiter->yield != NULL;
	s->waiter = usable ? *waiter : (bkv_storage_waiter){0};
	if (s->waiter.yield_fd == NULL || s->waiter.kick == NULL) {
		s->waiter.yield_fd = NULL; /* a read waits on a descriptor only with both */
		s->waiter.kick = NULL;
	}
}

void bkv_storage_expect_write(bkv_storage *s)
{
	if (s == NULL || s->group == NULL || s->expecting)
		return;
	s->expecting = bkv_storage_group_expect(s->group, s->member, true);
}

void bkv_storage_expect_end(bkv_storage *s)
{
	if (s == NULL || !s->expecting)
		return;
	s->expecting = false;
	bkv_storage_group_expect(s->group, s->member, false);
}

/* A write through the group this process joined, on a lane of its own: a caller that can
 * yield waits (yielding) for a lane when all are busy, which only happens with more
 * fibers than lanes. The announcement is taken before any yield, while it is still this
 * request's. */
static bkv_storage_err grouped(bkv_storage *s, bkv_group_kind kind, const bkv_record *r,
                               const uint8_t *expected_mac, size_t expected_mac_len)
{
	const bool expected = s->expecting;
	s->expecting = false;
	const uint32_t lanes = bkv_storage_group_lanes(s->group);
	const bool yielding =
	    s->waiter.yield != NULL && lanes > 1 && s->waiter.can_yield(s->waiter.arg);
	uint32_t lane = 0;
	for (;;) {
		while (lane < lanes && (s->lanes_busy >> lane & 1u) != 0)
			lane++;
		if (lane < lanes)
			break;
		if (!yielding) {
			if (expected)
				bkv_storage_group_expect(s->group, s->member, false);
			return BKV_STORAGE_ARGUMENT; /* one write at a time without a waiter */
		}
		s->waiter.yield(s->waiter.arg, NULL, NULL);
		lane = 0;
	}
	bkv_group_op op = {.kind = kind, .record = *r, .expected_mac_len = expected_mac_len};
	if (expected_mac_len > 0)
		memcpy(op.expected_mac, expected_mac, expected_mac_len);
	s->lanes_busy |= (uint64_t)1 << lane;
	const bkv_storage_err err = bkv_storage_group_write(s->group, s->member, lane, s, &op,
	                                                    yielding ? &s->waiter : NULL, expected);
	s->lanes_busy &= ~((uint64_t)1 << lane);
	return err;
}

bkv_storage_err bkv_storage_insert(bkv_storage *s, const bkv_record *r)
{
	if (s == NULL || !record_ok(r))
		return BKV_STORAGE_ARGUMENT;
	if (s->group != NULL)
		return grouped(s, BKV_GROUP_INSERT, r, NULL, 0);
	return s->ops->insert(s, r);
}

bkv_storage_err bkv_storage_update(bkv_storage *s, const bkv_record *r, const uint8_t *expected_mac,
                                   size_t expected_mac_len)
{
	if (s == NULL || !record_ok(r) || expected_mac_len > BKV_STORAGE_MAC_MAX ||
	    (expected_mac == NULL && expected_mac_len > 0))
		return BKV_STORAGE_ARGUMENT;
	if (s->group != NULL)
		return grouped(s, BKV_GROUP_UPDATE, r, expected_mac, expected_mac_len);
	return s->ops->update(s, r, expected_mac, expected_mac_len);
}

bkv_storage_err bkv_storage_delete(bkv_storage *s, const uint8_t *account, size_t len)
{
	if (s == NULL || !account_ok(account, len))
		return BKV_STORAGE_ARGUMENT;
	if (s->group != NULL) {
		bkv_record r = {.account_id_len = len};
		memcpy(r.account_id, account, len);
		return grouped(s, BKV_GROUP_DELETE, &r, NULL, 0);
	}
	return s->ops->delete_record(s, account, len);
}

bkv_storage_err bkv_storage_list_sealed_below(bkv_storage *s, uint32_t min_version,
                                              const uint8_t *after, size_t after_len,
                                              bkv_record *out, size_t max, size_t *count)
{
	if (s == NULL || out == NULL || count == NULL || max == 0 ||
	    (after == NULL && after_len > 0) || after_len > BKV_STORAGE_ACCOUNT_MAX)
		return BKV_STORAGE_ARGUMENT;
	*count = 0;
	return s->ops->list_sealed_below(s, min_version, after, after_len, out, max, count);
}

bkv_storage_err bkv_storage_reseal(bkv_storage *s, const uint8_t *account, size_t len,
                                   uint64_t record_version, const uint8_t *mac, size_t mac_len,
                                   uint32_t seal_key_version, const uint8_t *sealed,
                                   size_t sealed_len)
{
	if (s == NULL || !account_ok(account, len) || sealed == NULL || sealed_len == 0 ||
	    sealed_len > BKV_STORAGE_SEALED_MAX || (mac == NULL && mac_len > 0) ||
	    mac_len > BKV_STORAGE_MAC_MAX || record_version > INT64_MAX)
		return BKV_STORAGE_ARGUMENT;
	return s->ops->reseal(s, account, len, record_version, mac, mac_len, seal_key_version,
	                      sealed, sealed_len);
}

bkv_storage_err bkv_storage_count_sealed_with(bkv_storage *s, uint32_t version, uint64_t *count)
{
	if (s == NULL || count == NULL)
		return BKV_STORAGE_ARGUMENT;
	return s->ops->count_sealed_with(s, version, count);
}

bkv_storage_err bkv_storage_count_sealed_below(bkv_storage *s, uint32_t min_version,
                                               uint64_t *count)
{
	if (s == NULL || count == NULL)
		return BKV_STORAGE_ARGUMENT;
	return s->ops->count_sealed_below(s, min_version, count);
}

bkv_storage_err bkv_storage_raise_seal_floor(bkv_storage *s, uint32_t min_version)
{
	if (s == NULL)
		return BKV_STORAGE_ARGUMENT;
	return s->ops->raise_seal_floor(s, min_version);
}

static bool blob_name_ok(const char *name)
{
	const size_t n = name != NULL ? strnlen(name, BKV_STORAGE_BLOB_NAME_MAX + 1) : 0;
	return n > 0 && n <= BKV_STORAGE_BLOB_NAME_MAX;
}

bkv_storage_err bkv_storage_blob_get(bkv_storage *s, const char *name, uint8_t *out, size_t cap,
                                     size_t *len)
{
	if (s == NULL || !blob_name_ok(name) || out == NULL || len == NULL)
		return BKV_STORAGE_ARGUMENT;
	return s->ops->blob_get(s, name, out, cap, len);
}

bkv_storage_err bkv_storage_blob_put(bkv_storage *s, const char *name, const uint8_t *old,
                                     size_t old_len, const uint8_t *value, size_t len)
{
	if (s == NULL || !blob_name_ok(name) || value == NULL || len == 0 ||
	    len > BKV_STORAGE_BLOB_MAX ||
	    (old != NULL && (old_len == 0 || old_len > BKV_STORAGE_BLOB_MAX)))
		return BKV_STORAGE_ARGUMENT;
	return s->ops->blob_put(s, name, old, old_len, value, len);
}

bkv_storage_err bkv_storage_blob_delete(bkv_storage *s, const char *name)
{
	if (s == NULL || !blob_name_ok(name))
		return BKV_STORAGE_ARGUMENT;
	return s->ops->blob_delete(s, name);
}

bkv_storage_err bkv_storage_seal_floor(bkv_storage *s, uint32_t *min_version)
{
	if (s == NULL || min_version == NULL)
		return BKV_STORAGE_ARGUMENT;
	return s->ops->seal_floor(s, min_version);
}

/* url with any password replaced by "***" (the userinfo's "user:password@" and a
 * "password=" parameter), for messages and status output. Truncated to out_len. */
void bkv_storage_url_redacted(const char *url, char *out, size_t out_len)
{
	if (out_len == 0)
		return;
	size_t o = 0;
	const char *p = url;
	const char *scheme = strstr(url, "://");
	const char *auth = scheme != NULL ? scheme + 3 : NULL;
	const char *auth_end = auth != NULL ? auth + strcspn(auth, "/?#") : NULL;
	const char *at = NULL;
	for (const char *q = auth; q != NULL && q < auth_end; q++)
		if (*q == '@')
			at = q; /* the last '@' of the authority ends the userinfo */
	const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
#define PUT(s, n)                                                                                  \
	do {                                                                                       \
		size_t n_ = (n);                                                                   \
		if (n_ > out_len - 1 - o)                                                          \
			n_ = out_len - 1 - o;                                                      \
		memcpy(out + o, (s), n_);                                                          \
		o += n_;                                                                           \
	} while (0)
	if (colon != NULL) {
		PUT(p, (size_t)(colon + 1 - p));
		PUT("***", 3);
		p = at;
	}
	while (*p != '\0') {
		const bool param_start = p > url && (p[-1] == '?' || p[-1] == '&');
		if (param_start && strncmp(p, "password=", 9) == 0) {
			PUT("password=***", 12);
			p += 9 + strcspn(p + 9, "&#");
			continue;
		}
		PUT(p, 1);
		p++;
	}
#undef PUT
	out[o] = '\0';
}

bool bkv_storage_shares_rate_buckets(const bkv_storage *s)
{
	return s != NULL && s->ops->rate_take != NULL;
}

#define RATE_UNITS_MAX (UINT64_C(1) << 40)

bkv_storage_err bkv_storage_rate_take(bkv_storage *s, const uint8_t *key, size_t key_len,
                                      uint64_t capacity, uint64_t cost, uint64_t refill_per_ms,
                                      int64_t now_ms, bool *taken, uint64_t *level)
{
	if (!bkv_storage_shares_rate_buckets(s) || key == NULL || key_len == 0 || cost == 0 ||
	    capacity < cost || refill_per_ms == 0 || capacity > RATE_UNITS_MAX ||
	    refill_per_ms > RATE_UNITS_MAX || capacity * refill_per_ms > (UINT64_C(1) << 62))
		return BKV_STORAGE_ARGUMENT;
	return s->ops->rate_take(s, key, key_len, capacity, cost, refill_per_ms, now_ms, taken,
	                         level);
}

bkv_storage_err bkv_storage_rate_prune(bkv_storage *s, int64_t now_ms)
{
	if (!bkv_storage_shares_rate_buckets(s))
		return BKV_STORAGE_ARGUMENT;
	return s->ops->rate_prune(s, now_ms);
}
