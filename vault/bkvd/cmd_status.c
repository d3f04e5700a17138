/*
 * cmd_status.c - `bkvd status`: checks what `bkvd serve` needs, without serving: the
 * configuration, the token and its keys (with the AKE public keys' fingerprints), and
 * the database (records per sealing-key version). Exit 0 when all is ready.
 */
#include <inttypes.h>
#include <stdio.h>

#include <sodium.h>

#include "bkvd.h"
#include "storage.h"

int bkvd_cmd_status(int argc, char **argv)
{
	static const char help[] =
	    "usage: bkvd status [--config FILE]\n\n"
	    "Checks the configuration, the token and its keys, and the database,\n"
	    "and prints what it finds. Exit 0 when bkvd serve would start.\n";
	const char *config_path;
	int rc = bkvd_config_options(argc, argv, help, &config_path, NULL, NULL);
	if (rc >= 0)
		return rc;
	if (optind != argc) {
		fprintf(stderr, "bkvd status: unexpected argument \"%s\"\n", argv[optind]);
		return BKVD_EXIT_STARTUP;
	}
	static bkvd_config config;
	bkv_token *token = NULL;
	bkv_storage *storage = NULL;
	char why[512];
	if (!bkvd_load_config(config_path, &config))
		return BKVD_EXIT_STARTUP;
	printf("configuration: %s\n", config.path);
	if (!bkvd_open_token(&config, &token))
		return BKVD_EXIT_STARTUP;
	rc = BKVD_EXIT_FAILURE;
	printf("token: \"%s\" via %s\n", config.token_label, config.token_module);
	bkv_token_describe_capabilities(token, bkvd_print_line, NULL);
	bkv_token_err terr =
	    bkv_token_check_mechanisms(token, config.suites, config.nsuites, why, sizeof(why));
	if (terr != BKV_TOKEN_OK) {
		printf("configuration: %s\n", why);
		rc = BKVD_EXIT_STARTUP;
		goto done;
	}
	terr = bkv_token_load_keys(token, config.suites, config.nsuites);
	if (terr != BKV_TOKEN_OK) {
		printf("keys: %s\n", bkvd_token_error(token, terr));
		goto done;
	}
	terr = bkv_token_preflight(token, why, sizeof(why));
	if (terr != BKV_TOKEN_OK) {
		printf("preflight: FAILED: %s\n", why);
		goto done;
	}
	printf("preflight: every operation the configuration needs works on this token\n");
	bkv_token_describe_custody(token, bkvd_print_line, NULL);
	for (size_t i = 0; i < config.nsuites; i++) {
		const opaque_server_keys *keys = bkv_token_server_keys(token, config.suites[i]);
		const size_t npk = opaque_suite_sizes(config.suites[i])->Npk;
		uint8_t digest[crypto_hash_sha256_BYTES];
		char hex[33];
		crypto_hash_sha256(digest, keys->server_public_key, npk);
		sodium_bin2hex(hex, sizeof(hex), digest, 16);
		printf("suite %-20s AKE key fingerprint SHA256:%s\n",
		       bkvd_suite_config_name(config.suites[i]), hex);
	}
	uint32_t versions[64];
	size_t nversions = 0;
	if (bkv_token_seal_versions(token, versions, 64, &nversions) != BKV_TOKEN_OK) {
		printf("seal keys: cannot list them\n");
		goto done;
	}
	if (bkv_storage_open(config.storage, &storage, why, sizeof(why)) != BKV_STORAGE_OK) {
		printf("database: %s\n", why);
		goto done;
	}
	char shown[BKVD_PATH_MAX];
	bkv_storage_url_redacted(config.storage, shown, sizeof(shown));
	printf("database: %s\n", shown);
	uint32_t floor = 0;
	if (bkv_storage_seal_floor(storage, &floor) != BKV_STORAGE_OK) {
		printf("database: unavailable\n");
		goto done;
	}
	printf("  seal floor: %u (no record is sealed anew under an older version)\n", floor);
	if (nversions == 0 || versions[nversions - 1] < floor) {
		/* Every registration would be refused: the token is older than the database. */
		printf("not ready: the newest seal key in the token (bkv-seal-%u) is below the "
		       "database's seal floor %u; is this the token the database was sealed "
		       "with?\n",
		       nversions ? versions[nversions - 1] : 0, floor);
		goto done;
	}
	for (size_t i = 0; i < nversions; i++) {
		uint64_t n = 0;
		if (bkv_storage_count_sealed_with(storage, versions[i], &n) != BKV_STORAGE_OK) {
			printf("database: unavailable\n");
			goto done;
		}
		printf("  bkv-seal-%u%s: %" PRIu64 " record%s\n", versions[i],
		       i + 1 == nversions ? " (newest)" : "", n, n == 1 ? "" : "s");
	}
	printf("ready\n");
	rc = BKVD_EXIT_OK;
done:
	bkv_storage_close(storage);
	bkv_token_close(token);
	return rc;
}
