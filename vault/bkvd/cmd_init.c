/*
 * cmd_init.c - `bkvd init`: the key ceremony. Creates every missing key in the token for
 * the enabled suites and prints the AKE public keys with their fingerprints, so operators
 * can publish and pin them. Idempotent: existing keys are kept, unless --replace-keys,
 * which destroys them first (every sealed record becomes unreadable).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* Writes n random bytes to path (mode 0600) unless it exists. */
static bool create_secret_file(const char *path, size_t n, bool hex, const char *what)
{
	if (path[0] == '\0' || access(path, F_OK) == 0)
		return true;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		fprintf(stderr, "bkvd init: cannot create %s %s: %s\n", what, path,
		        strerror(errno));
		return false;
	}
	uint8_t raw[64];
	char text[129];
	randombytes_buf(raw, n);
	const void *data = raw;
	size_t len = n;
	if (hex) {
		sodium_bin2hex(text, sizeof(text), raw, n);
		data = text;
		len = 2 * n;
	}
	bool ok = write(fd, data, len) == (ssize_t)len && close(fd) == 0;
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(text, sizeof(text));
	if (ok)
		printf("  %-36s created %s\n", what, path);
	return ok;
}

static void help(void)
{
	printf("usage: bkvd init [--config FILE] [--replace-keys | --adopt] [--dev]\n\n"
	       "Creates the vault's keys in the token: the record-sealing key bkv-seal-1, the\n"
	       "ticket key, and per enabled suite the OPRF seed and the AKE key pair. Keys that\n"
	       "already exist are kept. Prints the AKE public keys and their fingerprints.\n\n"
	       "  --config FILE    bkvd configuration\n"
	       "  --replace-keys   destroy existing keys first; every sealed record is lost\n"
	       "  --adopt          create no key: check the keys an operator made with the\n"
	       "                   token vendor's own tool, by label (docs/TOKEN.md lists them)\n"
	       "  --dev            also create the development JWT key ([auth] key_file, HS256)\n"
	       "                   and the log key ([vault] log_key_file) if they are missing\n");
}

int bkvd_cmd_init(int argc, char **argv)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'c'}, {"replace-keys", no_argument, NULL, 'R'},
	    {"adopt", no_argument, NULL, 'A'},        {"dev", no_argument, NULL, 'D'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	bool replace = false, adopt = false, dev = false;
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
		case 'A':
			adopt = true;
			break;
		case 'D':
			dev = true;
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
	if (replace && adopt) {
		fprintf(stderr, "bkvd init: --replace-keys and --adopt exclude each other\n");
		return BKVD_EXIT_STARTUP;
	}
	bkvd_config config;
	bkv_token *token;
	if (!bkvd_load_config(config_path, &config) || !bkvd_open_token(&config, &token))
		return BKVD_EXIT_STARTUP;
	if (replace)
		fprintf(stderr, "bkvd init: --replace-keys: destroying the existing keys\n");
	printf("token \"%s\":\n", config.token_label);
	bkv_token_describe_capabilities(token, bkvd_print_line, NULL);
	/* Nothing is created on a token that cannot do what the configuration needs. */
	char why[512];
	bkv_token_err err =
	    bkv_token_check_mechanisms(token, config.suites, config.nsuites, why, sizeof(why));
	if (err != BKV_TOKEN_OK) {
		bkv_token_close(token);
		fprintf(stderr, "bkvd init: %s\n", why);
		return BKVD_EXIT_STARTUP;
	}
	err = bkv_token_create_keys(token, config.suites, config.nsuites,
	                            adopt     ? BKV_TOKEN_INIT_ADOPT
	                            : replace ? BKV_TOKEN_INIT_REPLACE
	                                      : BKV_TOKEN_INIT_CREATE,
	                            report, NULL);
	if (err == BKV_TOKEN_OK)
		err = bkv_token_load_keys(token, config.suites, config.nsuites);
	/* The keys exist: check that every operation on them works before saying so. */
	if (err == BKV_TOKEN_OK)
		err = bkv_token_preflight(token, why, sizeof(why));
	else if (err == BKV_TOKEN_ERR_UNSUPPORTED && !adopt &&
	         strncmp(bkv_token_last_call(token), "C_GenerateKey", 13) == 0)
		snprintf(
		    why, sizeof(why),
		    "%s; make the keys with the token vendor's tool and run `bkvd init --adopt` "
		    "(docs/TOKEN.md)",
		    bkvd_token_error(token, err));
	else if (err == BKV_TOKEN_ERR_UNSUPPORTED &&
	         strncmp(bkv_token_last_call(token), "C_CreateObject of the data object", 33) == 0)
		snprintf(why, sizeof(why),
		         "%s; this token keeps no data objects: set [token] sealed_keys = database",
		         bkvd_token_error(token, err));
	else
		snprintf(why, sizeof(why), "%s", bkvd_token_error(token, err));
	if (err == BKV_TOKEN_OK)
		bkv_token_describe_custody(token, bkvd_print_line, NULL);
	bkv_token_close(token);
	if (err != BKV_TOKEN_OK) {
		fprintf(stderr, "bkvd init: %s\n", why);
		/* A token without what the configuration needs, a key to adopt that is missing
		 * or a key unfit for its use: configuration errors. */
		return err == BKV_TOKEN_ERR_UNSUPPORTED || err == BKV_TOKEN_ERR_KEY_UNFIT ||
		               (adopt && err == BKV_TOKEN_ERR_KEY_MISSING)
		           ? BKVD_EXIT_STARTUP
		           : BKVD_EXIT_FAILURE;
	}
	printf("preflight: every operation the configuration needs works on this token\n");
	if (!create_secret_file(config.log_key_file, 32, false, "log key"))
		return BKVD_EXIT_FAILURE;
	if (dev) {
		if (strcmp(config.auth_algorithm, "HS256") != 0 ||
		    config.auth_key_file[0] == '\0') {
			fprintf(stderr,
			        "bkvd init: --dev needs [auth] algorithm = HS256 and key_file\n");
			return BKVD_EXIT_FAILURE;
		}
		if (!create_secret_file(config.auth_key_file, 32, true, "development JWT key"))
			return BKVD_EXIT_FAILURE;
	}
	return BKVD_EXIT_OK;
}
