/*
 * cmd_delete_seal_key.c - `bkvd delete-seal-key N`: destroys an old record-sealing key,
 * but only when it is not the newest version (checked in the token first), no record is
 * sealed under N or older (checked in the database), and it does not seal the
 * ristretto255 AKE key (checked by the token).
 *
 * While bkvd serves, a worker may have sealed a record under N just before the count and
 * commit it just after. So the seal floor is raised to N + 1 before the count: from its
 * commit on, storage refuses any row a new blob under N or older (the worker seals again
 * under the newest key and retries), and every write that saw the old floor has committed
 * before the count starts (storage.h). A count of zero then stays zero. A refused deletion
 * leaves the floor raised: records still under N keep working as they are (storage lets a
 * row keep its blob), and new seals use newer keys anyway.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "bkvd.h"
#include "storage.h"

#define MAX_SEAL_VERSIONS 64

/* Refuses (false, with the reason) unless version is in the token and not the newest. */
static bool deletable_in_token(bkv_token *token, uint32_t version)
{
	uint32_t versions[MAX_SEAL_VERSIONS];
	size_t n = 0;
	bkv_token_err err = bkv_token_seal_versions(token, versions, MAX_SEAL_VERSIONS, &n);
	if (err != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd delete-seal-key: cannot list the seal keys: %s\n",
		        bkvd_token_error(token, err));
		return false;
	}
	bool present = false;
	for (size_t i = 0; i < n; i++)
		present = present || versions[i] == version;
	if (!present) {
		fprintf(stderr, "bkvd delete-seal-key: the token holds no bkv-seal-%u\n", version);
		return false;
	}
	if (versions[n - 1] == version) {
		fprintf(stderr,
		        "bkvd delete-seal-key: refused: bkv-seal-%u is the newest version; new "
		        "records are sealed with it (`bkvd rotate-seal-key` first)\n",
		        version);
		return false;
	}
	return true;
}

int bkvd_cmd_delete_seal_key(int argc, char **argv)
{
	static const char help[] =
	    "usage: bkvd delete-seal-key [--config FILE] VERSION\n\n"
	    "Destroys bkv-seal-VERSION once nothing is sealed under it or an older version\n"
	    "any more (run `bkvd rewrap` first). The newest version is never deleted.\n"
	    "From its first run on, nothing new is sealed under VERSION or older, even if\n"
	    "it refuses. Safe while bkvd serves; with several replicas, run it only once\n"
	    "every replica's token holds the newer key.\n";
	const char *config_path;
	int rc = bkvd_config_options(argc, argv, help, &config_path, NULL, NULL);
	if (rc >= 0)
		return rc;
	char *end = NULL;
	unsigned long arg = optind + 1 == argc ? strtoul(argv[optind], &end, 10) : 0;
	if (arg == 0 || arg >= UINT32_MAX || end == NULL || *end != '\0') {
		fprintf(stderr, "bkvd delete-seal-key: give one VERSION (a number >= 1)\n");
		return BKVD_EXIT_STARTUP;
	}
	const uint32_t version = (uint32_t)arg;
	static bkvd_config config;
	bkv_storage *storage = NULL;
	bkv_token *token = NULL;
	char why[512];
	if (!bkvd_load_config(config_path, &config) || !bkvd_open_token(&config, &token))
		return BKVD_EXIT_STARTUP;
	if (bkv_storage_open(config.storage, &storage, why, sizeof(why)) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd delete-seal-key: %s\n", why);
		bkv_token_close(token);
		return BKVD_EXIT_STARTUP;
	}
	rc = BKVD_EXIT_FAILURE;
	if (!deletable_in_token(token, version))
		goto done;
	/* The floor first, then the count: see the top of this file. */
	uint64_t remaining = 0;
	if (bkv_storage_raise_seal_floor(storage, version + 1) != BKV_STORAGE_OK ||
	    bkv_storage_count_sealed_below(storage, version + 1, &remaining) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd delete-seal-key: the database is unavailable\n");
		goto done;
	}
	if (remaining > 0) {
		fprintf(stderr,
		        "bkvd delete-seal-key: refused: %" PRIu64 " record%s still sealed under "
		        "bkv-seal-%u or older; run `bkvd rewrap` first\n",
		        remaining, remaining == 1 ? " is" : "s are", version);
		goto done;
	}
	bkv_token_err err = bkv_token_delete_seal_key(token, version);
	if (err == BKV_TOKEN_ERR_KEY_IN_USE) {
		/* not the newest (checked above, and versions only grow): the AKE key */
		fprintf(stderr,
		        "bkvd delete-seal-key: refused: bkv-seal-%u still seals the ristretto255 "
		        "AKE key; run `bkvd rewrap` first\n",
		        version);
		goto done;
	}
	if (err != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd delete-seal-key: %s\n", bkvd_token_error(token, err));
		goto done;
	}
	printf("deleted bkv-seal-%u\n", version);
	rc = BKVD_EXIT_OK;
done:
	bkv_storage_close(storage);
	bkv_token_close(token);
	return rc;
}
