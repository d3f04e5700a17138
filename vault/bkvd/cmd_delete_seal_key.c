/*
 * cmd_delete_seal_key.c - `bkvd delete-seal-key N`: destroys an old record-sealing key,
 * but only when no record is sealed under it (checked in the database), it is not the
 * newest version, and it does not seal the ristretto255 AKE key (checked by the token).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "bkvd.h"
#include "storage.h"

int bkvd_cmd_delete_seal_key(int argc, char **argv)
{
	static const char help[] =
	    "usage: bkvd delete-seal-key [--config FILE] VERSION\n\n"
	    "Destroys bkv-seal-VERSION once nothing is sealed under it any more (run\n"
	    "`bkvd rewrap` first). The newest version is never deleted.\n";
	const char *config_path;
	int rc = bkvd_config_options(argc, argv, help, &config_path, NULL, NULL);
	if (rc >= 0)
		return rc;
	char *end = NULL;
	unsigned long version = optind + 1 == argc ? strtoul(argv[optind], &end, 10) : 0;
	if (version == 0 || version > UINT32_MAX || end == NULL || *end != '\0') {
		fprintf(stderr, "bkvd delete-seal-key: give one VERSION (a number >= 1)\n");
		return BKVD_EXIT_STARTUP;
	}
	static bkvd_config config;
	bkv_storage *storage = NULL;
	bkv_token *token = NULL;
	char why[512];
	if (!bkvd_load_config(config_path, &config))
		return BKVD_EXIT_STARTUP;
	if (bkv_storage_open(config.storage, &storage, why, sizeof(why)) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd delete-seal-key: %s\n", why);
		return BKVD_EXIT_STARTUP;
	}
	uint64_t users = 0;
	rc = BKVD_EXIT_FAILURE;
	if (bkv_storage_count_sealed_with(storage, (uint32_t)version, &users) != BKV_STORAGE_OK) {
		fprintf(stderr, "bkvd delete-seal-key: the database is unavailable\n");
		goto done;
	}
	if (users > 0) {
		fprintf(stderr,
		        "bkvd delete-seal-key: refused: %" PRIu64 " record%s still sealed under "
		        "bkv-seal-%lu; run `bkvd rewrap` first\n",
		        users, users == 1 ? " is" : "s are", version);
		goto done;
	}
	if (!bkvd_open_token(&config, &token)) {
		rc = BKVD_EXIT_STARTUP;
		goto done;
	}
	bkv_token_err err = bkv_token_delete_seal_key(token, (uint32_t)version);
	if (err == BKV_TOKEN_ERR_KEY_IN_USE) {
		fprintf(stderr,
		        "bkvd delete-seal-key: refused: bkv-seal-%lu is the newest version "
		        "or still seals the ristretto255 AKE key (run `bkvd rewrap`)\n",
		        version);
		goto done;
	}
	if (err != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd delete-seal-key: %s\n", bkv_token_strerror(err));
		goto done;
	}
	printf("deleted bkv-seal-%lu\n", version);
	rc = BKVD_EXIT_OK;
done:
	bkv_token_close(token);
	bkv_storage_close(storage);
	return rc;
}
