/*
 * cmd_dev_token.c - `bkvd dev-token ACCOUNT`: mints a short-lived HS256 bearer token with
 * the development key, for trying the vault without an integrator's auth service. Refused
 * unless the configuration sets [auth] dev_issuer = true.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "bkvd.h"

int bkvd_cmd_dev_token(int argc, char **argv)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"lifetime", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	long lifetime = 3600;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 't':
			lifetime = strtol(optarg, NULL, 10);
			break;
		case 'h':
			printf(
			    "usage: bkvd dev-token [--config FILE] [--lifetime SECONDS] ACCOUNT\n\n"
			    "Prints a bearer token for ACCOUNT signed with the development key.\n"
			    "Needs [auth] dev_issuer = true and algorithm = HS256.\n");
			return BKVD_EXIT_OK;
		default:
			return BKVD_EXIT_STARTUP;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "bkvd dev-token: give exactly one ACCOUNT\n");
		return BKVD_EXIT_STARTUP;
	}
	const char *account = argv[optind];
	if (strlen(account) == 0 || strlen(account) > BKV_AUTH_ACCOUNT_MAX) {
		fprintf(stderr, "bkvd dev-token: the account id must be 1 to 256 bytes\n");
		return BKVD_EXIT_STARTUP;
	}
	bkvd_config config;
	if (!bkvd_load_config(config_path, &config))
		return BKVD_EXIT_STARTUP;
	if (!config.auth_dev_issuer || strcmp(config.auth_algorithm, "HS256") != 0) {
		fprintf(stderr,
		        "bkvd dev-token: refused: the configuration does not enable the "
		        "development issuer ([auth] dev_issuer = true, algorithm = HS256)\n");
		return BKVD_EXIT_STARTUP;
	}
	bkv_auth auth;
	char why[512];
	bkv_auth_settings s = {
	    .algorithm = config.auth_algorithm,
	    .key_file = config.auth_key_file,
	    .issuer = config.auth_issuer,
	    .audience = config.auth_audience,
	    .max_lifetime_s = config.auth_max_lifetime_s,
	    .clock_skew_s = config.auth_clock_skew_s,
	};
	if (!bkv_auth_init(&auth, &s, why, sizeof(why))) {
		fprintf(stderr, "bkvd dev-token: %s\n", why);
		return BKVD_EXIT_STARTUP;
	}
	char *token = bkv_auth_mint(&auth, account, (int64_t)time(NULL), lifetime);
	bkv_auth_free(&auth);
	if (token == NULL) {
		fprintf(stderr,
		        "bkvd dev-token: cannot mint (lifetime above [auth] max_lifetime?)\n");
		return BKVD_EXIT_FAILURE;
	}
	printf("%s\n", token);
	free(token);
	return BKVD_EXIT_OK;
}
