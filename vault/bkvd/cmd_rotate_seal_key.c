/*
 * cmd_rotate_seal_key.c - `bkvd rotate-seal-key`: creates the next record-sealing key
 * version (bkv-seal-N+1). Records sealed under older versions keep opening; serving
 * workers seal new records under it within 250 ms (register.c), without a restart.
 */
#include <stdio.h>

#include "bkvd.h"

int bkvd_cmd_rotate_seal_key(int argc, char **argv)
{
	static const char help[] =
	    "usage: bkvd rotate-seal-key [--config FILE]\n\n"
	    "Creates the next record-sealing key version in the token. A serving bkvd\n"
	    "seals new records with it within a second, without a restart; older\n"
	    "versions keep opening.\n";
	const char *config_path;
	int rc = bkvd_config_options(argc, argv, help, &config_path, NULL, NULL);
	if (rc >= 0)
		return rc;
	if (optind != argc) {
		fprintf(stderr, "bkvd rotate-seal-key: unexpected argument \"%s\"\n", argv[optind]);
		return BKVD_EXIT_STARTUP;
	}
	bkvd_config config;
	bkv_token *token;
	if (!bkvd_load_config(config_path, &config) || !bkvd_open_token(&config, &token))
		return BKVD_EXIT_STARTUP;
	uint32_t version = 0;
	bkv_token_err err = bkv_token_rotate_seal_key(token, &version);
	bkv_token_close(token);
	if (err != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd rotate-seal-key: %s\n", bkv_token_strerror(err));
		return BKVD_EXIT_FAILURE;
	}
	printf("created bkv-seal-%u; serving workers seal new records with it within a second\n",
	       version);
	return BKVD_EXIT_OK;
}
