/*
 * main.c - bkvd's entry point: dispatches to one subcommand per file (cmd_*.c) and holds
 * the helpers they share.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bkvd.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} commands[] = {
    {"init", bkvd_cmd_init, "create the vault's keys in the token (the key ceremony)"},
    {"serve", bkvd_cmd_serve, "serve the vault over HTTPS (Connect protocol)"},
    {"dev-token", bkvd_cmd_dev_token, "mint a development bearer token for an account"},
    {"status", bkvd_cmd_status, "check the configuration, token, keys and database"},
    {"rotate-seal-key", bkvd_cmd_rotate_seal_key, "create the next record-sealing key"},
    {"rewrap", bkvd_cmd_rewrap, "re-seal every record under the newest sealing key"},
    {"delete-seal-key", bkvd_cmd_delete_seal_key, "destroy an unused old sealing key"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: bkvd <command> [--config FILE] [options]   (or bkvd --version)\n\n"
	             "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
	fprintf(out,
	        "\nThe configuration is --config, else $BKVD_CONFIG, else %s.\n"
	        "Run `bkvd <command> --help` for a command's options.\n",
	        BKVD_DEFAULT_CONFIG);
}

int bkvd_config_options(int argc, char **argv, const char *help, const char **config_path,
                        const char *flag, bool *flag_set)
{
	const struct option options[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {flag, no_argument, NULL, 'f'}, /* the end of the list when flag is NULL */
	    {NULL, 0, NULL, 0},
	};
	*config_path = NULL;
	if (flag_set != NULL)
		*flag_set = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		if (opt == 'c') {
			*config_path = optarg;
		} else if (opt == 'f' && flag_set != NULL) {
			*flag_set = true;
		} else if (opt == 'h') {
			fputs(help, stdout);
			return BKVD_EXIT_OK;
		} else {
			return BKVD_EXIT_STARTUP;
		}
	}
	return -1;
}

const char *bkvd_token_error(const bkv_token *token, bkv_token_err err)
{
	static char text[512];
	const unsigned long rv = bkv_token_last_rv(token);
	const char *call = bkv_token_last_call(token);
	if (err == BKV_TOKEN_ERR_KEY_MISSING || err == BKV_TOKEN_ERR_KEY_UNFIT)
		snprintf(text, sizeof(text), "%s%s%s", bkv_token_strerror(err), *call ? ": " : "",
		         call);
	else if (rv == 0)
		snprintf(text, sizeof(text), "%s", bkv_token_strerror(err));
	else if (*call)
		snprintf(text, sizeof(text), "%s: %s answered %s (0x%lx)", bkv_token_strerror(err),
		         call, bkv_token_ckr_name(rv), rv);
	else
		snprintf(text, sizeof(text), "%s (the last PKCS#11 call answered %s, 0x%lx)",
		         bkv_token_strerror(err), bkv_token_ckr_name(rv), rv);
	return text;
}

bool bkvd_load_config(const char *path, bkvd_config *config)
{
	if (path == NULL)
		path = getenv("BKVD_CONFIG");
	if (path == NULL)
		path = BKVD_DEFAULT_CONFIG;
	char why[512];
	if (!bkvd_config_load(path, config, why, sizeof(why))) {
		fprintf(stderr, "bkvd: %s\n", why);
		return false;
	}
	return true;
}

void bkvd_print_line(void *arg, const char *line)
{
	(void)arg;
	printf("%s\n", line);
}

bool bkvd_open_token(const bkvd_config *config, bkv_token **token)
{
	char why[512];
	if (!bkvd_config_open_token(config, token, why, sizeof(why))) {
		fprintf(stderr, "bkvd: %s\n", why);
		return false;
	}
	return true;
}

bool bkvd_load_log_key(const bkvd_config *c, uint8_t key[32])
{
	char why[512];
	if (!bkvd_config_load_log_key(c, key, why, sizeof(why))) {
		fprintf(stderr, "bkvd: %s\n", why);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	/* Everything bkvd creates (database, its -wal and -shm, logs, lock and key files) is
	 * for its own user only, whatever umask it was started with. */
	umask(077);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? BKVD_EXIT_STARTUP : BKVD_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("bkvd %s\n", BKVD_VERSION);
		return BKVD_EXIT_OK;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "bkvd: cannot initialize libsodium\n");
		return BKVD_EXIT_STARTUP;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "bkvd: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return BKVD_EXIT_STARTUP;
}
