/*
 * cmd_init.c - `bkvd init`: the key ceremony. Creates every missing key in the token for
 * the enabled suites and prints the AKE public keys with their fingerprints, so operators
 * can publish and pin them. Idempotent: existing keys are kept, unless --replace-keys,
 * which destroys them first (every sealed record becomes unreadable).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "bkvd.h"

static void print_hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static void report(void *arg, const char *label, const char *what, const uint8_t *public_key,
		   size_t public_key_len)
{
	(void)arg;
	printf("  %-36s %s\n", label, what);
	if (public_key != NULL) {
		uint8_t digest[crypto_hash_sha256_BYTES];
		crypto_hash_sha256(digest, public_key, public_key_len);
		printf("    public key   ");
		print_hex(public_key, public_key_len);
		printf("\n    fingerprint  SHA256:");
		print_hex(digest, 16);
		printf("\n");
	}
}

static void help(void)
{
	printf("usage: bkvd init [--config FILE] [--replace-keys]\n\n"
	       "Creates the vault's keys in the token: the record-sealing key bkv-seal-1, the\n"
	       "ticket key, and per enabled suite the OPRF seed and the AKE key pair. Keys that\n"
	       "already exist are kept. Prints the AKE public keys and their fingerprints.\n\n"
	       "  --config FILE    bkvd configuration\n"
	       "  --replace-keys   destroy existing keys first; every sealed record is lost\n");
}

int bkvd_cmd_init(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"replace-keys", no_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	bool replace = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'R':
			replace = true;
			break;
		case 'h':
			help();
			return BKVD_EXIT_OK;
		default:
			return BKVD_EXIT_STARTUP;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "bkvd init: unexpected argument \"%s\"\n", argv[optind]);
		return BKVD_EXIT_STARTUP;
	}
	bkvd_config config;
	bkv_token *token;
	if (!bkvd_load_config(config_path, &config) || !bkvd_open_token(&config, &token))
		return BKVD_EXIT_STARTUP;
	if (replace)
		fprintf(stderr, "bkvd init: --replace-keys: destroying the existing keys\n");
	printf("token \"%s\":\n", config.token_label);
	bkv_token_err err = bkv_token_create_keys(token, config.suites, config.nsuites, replace,
						  report, NULL);
	bkv_token_close(token);
	if (err != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd init: %s\n", bkv_token_strerror(err));
		return BKVD_EXIT_FAILURE;
	}
	return BKVD_EXIT_OK;
}
