/*
 * cmd_rewrap.c - `bkvd rewrap`: re-seals every record (and the ristretto255 AKE key)
 * under the newest record-sealing key, in batches, printing progress. Records already
 * under the newest version are left alone, so an interrupted run resumes where it
 * stopped, and it can run while bkvd serves: each re-seal applies only if the record's
 * state (its MAC) did not change meanwhile.
 *
 * A record that does not open (its key version was deleted, or it was damaged) is listed,
 * by the keyed hash of its account id as in the audit log, and left as it is; the run
 * goes on and exits non-zero, saying how many. A token or database failure stops it.
 *
 * With --migrate-macs it also gives records written before state MACs their first MAC,
 * vouching for the counters they hold at that moment. That trusts the database once, so
 * it is a separate, explicit step: run it once after upgrading (docs/SECURITY.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bkvd.h"
#include "handlers.h"

#define BATCH             100
#define PLAINTEXT_MAX     BKV_STORAGE_SEALED_MAX
#define MAX_SEAL_VERSIONS 64

/* What became of one record. For UNOPENABLE and STOP, why says what failed. */
typedef enum record_result {
	RECORD_DONE,       /* re-sealed, or given its first MAC */
	RECORD_REPLACED,   /* changed meanwhile: already current */
	RECORD_UNOPENABLE, /* the record does not open: listed and left as it is */
	RECORD_STOP,       /* the token or the database failed: stop, run again */
} record_result;

/* The seal-key versions in the token, to tell a deleted key from a bad record. */
typedef struct seal_versions {
	uint32_t v[MAX_SEAL_VERSIONS];
	size_t n;
} seal_versions;

static bool has_version(const seal_versions *versions, uint32_t version)
{
	for (size_t i = 0; i < versions->n; i++) {
		if (versions->v[i] == version)
			return true;
	}
	return false;
}

static record_result storage_result(bkv_storage_err err, char *why, size_t why_len)
{
	if (err == BKV_STORAGE_OK)
		return RECORD_DONE;
	if (err == BKV_STORAGE_STALE || err == BKV_STORAGE_NOT_FOUND)
		return RECORD_REPLACED;
	snprintf(why, why_len, "%s",
	         err == BKV_STORAGE_SEAL_FLOOR
	             ? "a newer seal key was retired meanwhile (delete-seal-key raised the "
	               "seal floor)"
	             : bkv_storage_strerror(err));
	return RECORD_STOP;
}

/* Opens one record with its key version and seals it under the newest. */
static record_result reseal_one(bkv_token *token, bkv_storage *storage,
                                const seal_versions *versions, const bkv_record *r, char *why,
                                size_t why_len)
{
	uint8_t plaintext[PLAINTEXT_MAX];
	uint8_t sealed[BKV_STORAGE_SEALED_MAX];
	size_t plaintext_len = 0, sealed_len = 0;
	bkv_token_err err =
	    bkv_record_open(token, r->account_id, r->account_id_len, (opaque_suite_id)r->suite,
	                    r->record_version, r->registration_id, r->registration_id_len,
	                    r->sealed, r->sealed_len, plaintext, sizeof(plaintext), &plaintext_len);
	if (err == BKV_TOKEN_ERR_AUTH || err == BKV_TOKEN_ERR_ARGUMENT) {
		sodium_memzero(plaintext, sizeof(plaintext));
		if (!has_version(versions, r->seal_key_version))
			snprintf(why, why_len, "bkv-seal-%u is not in the token",
			         r->seal_key_version);
		else
			snprintf(why, why_len, "%s", bkv_token_strerror(err));
		return RECORD_UNOPENABLE;
	}
	if (err == BKV_TOKEN_OK)
		err = bkv_record_seal(token, r->account_id, r->account_id_len,
		                      (opaque_suite_id)r->suite, r->record_version,
		                      r->registration_id, r->registration_id_len, plaintext,
		                      plaintext_len, sealed, sizeof(sealed), &sealed_len);
	sodium_memzero(plaintext, sizeof(plaintext));
	if (err != BKV_TOKEN_OK) {
		snprintf(why, why_len, "%s", bkv_token_strerror(err));
		return RECORD_STOP;
	}
	return storage_result(bkv_storage_reseal(storage, r->account_id, r->account_id_len,
	                                         r->record_version, r->mac, r->mac_len,
	                                         bkv_record_seal_key_version(sealed, sealed_len),
	                                         sealed, sealed_len),
	                      why, why_len);
}

/* A record from before state MACs: the only state such a record can be in. */
static bool legacy_record_ok(const bkv_record *r)
{
	return bkv_record_in_range(r) && r->state == BKV_RECORD_LIVE && r->registration_id_len == 0;
}

/* Gives a record without a MAC its first one (compare-and-set on the empty MAC). */
static record_result migrate_mac(bkv_token *token, bkv_storage *storage, bkv_record *r, char *why,
                                 size_t why_len)
{
	bkv_token_err err = bkv_record_mac(token, r);
	if (err != BKV_TOKEN_OK) {
		snprintf(why, why_len, "%s", bkv_token_strerror(err));
		return RECORD_STOP;
	}
	return storage_result(bkv_storage_update(storage, r, NULL, 0), why, why_len);
}

/* One line per record left as it is, naming it as the audit log does (the keyed hash of
 * the account id, never the id: docs/SECURITY.md). */
static void list_unopenable(const bkv_vault *log, const bkv_record *r, const char *why)
{
	char account_hash[33];
	bkv_account_hash(log, (bkv_account){r->account_id, r->account_id_len}, account_hash);
	fflush(stdout);
	fprintf(stderr,
	        "\nbkvd rewrap: skipped account %s (record_version %" PRIu64 ", bkv-seal-%u): %s\n",
	        account_hash, r->record_version, r->seal_key_version, why);
}

int bkvd_cmd_rewrap(int argc, char **argv)
{
	static const char help[] =
	    "usage: bkvd rewrap [--config FILE] [--migrate-macs]\n\n"
	    "Re-seals every record, and the ristretto255 AKE key, under the newest\n"
	    "record-sealing key. Safe to interrupt and run again, and to run while\n"
	    "bkvd serves. A record that does not open is listed (by account hash) and\n"
	    "left as it is; the others are re-sealed all the same, and the run exits 1.\n"
	    "Afterwards `bkvd delete-seal-key N` can remove old versions.\n\n"
	    "  --migrate-macs  also give records from before state MACs their first MAC,\n"
	    "                  vouching for the attempt counters they hold now. Run it\n"
	    "                  once after upgrading, on a database you trust at that moment.\n";
	const char *config_path;
	bool migrate;
	int rc = bkvd_config_options(argc, argv, help, &config_path, "migrate-macs", &migrate);
	if (rc >= 0)
		return rc;
	if (optind != argc) {
		fprintf(stderr, "bkvd rewrap: unexpected argument \"%s\"\n", argv[optind]);
		return BKVD_EXIT_STARTUP;
	}
	static bkvd_config config;
	bkv_token *token = NULL;
	bkv_storage *storage = NULL;
	char why[512];
	if (!bkvd_load_config(config_path, &config) || !bkvd_open_token(&config, &token))
		return BKVD_EXIT_STARTUP;
	rc = BKVD_EXIT_STARTUP;
	static bkv_vault log; /* only its log key: listed accounts are hashed as in the audit log */
	static seal_versions versions;
	bkv_token_err terr = bkv_token_load_keys(token, config.suites, config.nsuites);
	if (terr == BKV_TOKEN_OK)
		terr = bkv_token_seal_versions(token, versions.v, MAX_SEAL_VERSIONS, &versions.n);
	if (terr != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd rewrap: %s\n", bkv_token_strerror(terr));
		goto done;
	}
	if (!bkvd_load_log_key(&config, log.settings.log_key))
		goto done;
	if (bkv_storage_open(config.storage, &storage, why, sizeof(why)) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd rewrap: %s\n", why);
		goto done;
	}
	rc = BKVD_EXIT_FAILURE;
	const uint32_t newest = bkv_token_seal_version(token);
	uint64_t remaining = 0;
	if (bkv_storage_count_sealed_below(storage, newest, &remaining) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd rewrap: the database is unavailable\n");
		goto done;
	}
	printf("re-sealing %" PRIu64 " record%s under bkv-seal-%u\n", remaining,
	       remaining == 1 ? "" : "s", newest);
	static bkv_record batch[BATCH];
	uint8_t after[BKV_STORAGE_ACCOUNT_MAX];
	size_t after_len = 0;
	uint64_t done_count = 0, skipped = 0, migrated = 0, unmigrated = 0, unopenable = 0;
	for (;;) {
		size_t count = 0;
		/* Every sealed record (tombstones hold nothing to re-seal). */
		if (bkv_storage_list_sealed_below(storage, UINT32_MAX, after, after_len, batch,
		                                  BATCH, &count) != BKV_STORAGE_OK) {
			fprintf(stderr,
			        "\nbkvd rewrap: the database is unavailable; run it again\n");
			goto done;
		}
		if (count == 0)
			break;
		for (size_t i = 0; i < count; i++) {
			bkv_record *r = &batch[i];
			char reason[160] = "";
			record_result result = RECORD_DONE;
			if (r->mac_len == 0 && (!migrate || !legacy_record_ok(r))) {
				unmigrated++;
				continue;
			}
			if (r->mac_len == 0) {
				result = migrate_mac(token, storage, r, reason, sizeof(reason));
				if (result == RECORD_DONE)
					migrated++;
			}
			if (result == RECORD_DONE && r->seal_key_version < newest) {
				result = reseal_one(token, storage, &versions, r, reason,
				                    sizeof(reason));
				if (result == RECORD_DONE)
					done_count++;
			}
			if (result == RECORD_REPLACED)
				skipped++;
			/* A record that does not open is listed and left as it is; the others
			 * are re-sealed all the same. */
			if (result == RECORD_UNOPENABLE) {
				unopenable++;
				list_unopenable(&log, r, reason);
			}
			if (result == RECORD_STOP) {
				fprintf(stderr, "\nbkvd rewrap: %s; run it again to resume\n",
				        reason);
				goto done;
			}
		}
		memcpy(after, batch[count - 1].account_id, batch[count - 1].account_id_len);
		after_len = batch[count - 1].account_id_len;
		printf("\r  %" PRIu64 " / %" PRIu64 " re-sealed", done_count, remaining);
		fflush(stdout);
	}
	printf("\r  %" PRIu64 " re-sealed, %" PRIu64 " replaced meanwhile (already current)\n",
	       done_count, skipped);
	if (migrated > 0)
		printf("  %" PRIu64 " record%s from before state MACs now carry one\n", migrated,
		       migrated == 1 ? "" : "s");
	if (unopenable > 0) {
		fflush(stdout);
		const bool one = unopenable == 1;
		fprintf(stderr,
		        "bkvd rewrap: %" PRIu64 " record%s cannot be opened (listed above) and "
		        "stay%s under %s old key version; `bkvd delete-seal-key` refuses while "
		        "%s\n",
		        unopenable, one ? "" : "s", one ? "s" : "", one ? "its" : "their",
		        one ? "it remains" : "they remain");
	}
	if (unmigrated > 0) {
		fflush(stdout);
		fprintf(stderr,
		        "bkvd rewrap: %" PRIu64 " %s no state MAC and %s refused (data_loss) until "
		        "migrated: %s\n",
		        unmigrated, unmigrated == 1 ? "record carries" : "records carry",
		        unmigrated == 1 ? "is" : "are",
		        migrate ? "their stored state is invalid"
		                : "run `bkvd rewrap --migrate-macs` once after upgrading");
		goto done;
	}
	bool resealed = false;
	terr = bkv_token_reseal_ake_key(token, &resealed);
	if (terr != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd rewrap: re-sealing the ristretto255 AKE key: %s\n",
		        bkv_token_strerror(terr));
		goto done;
	}
	if (resealed)
		printf("  the ristretto255 AKE key is now sealed under bkv-seal-%u\n", newest);
	rc = unopenable == 0 ? BKVD_EXIT_OK : BKVD_EXIT_FAILURE;
done:
	sodium_memzero(&log, sizeof(log));
	sodium_memzero(batch, sizeof(batch));
	bkv_storage_close(storage);
	bkv_token_close(token);
	return rc;
}
