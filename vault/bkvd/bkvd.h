/*
 * bkvd.h - what the bkvd subcommands share: exit codes, option parsing of --config, and
 * opening the token with a one-line reason on failure.
 */
#ifndef BKVD_H
#define BKVD_H

#include <unistd.h>

#include "config.h"
#include "token.h"

enum {
	BKVD_EXIT_OK = 0,
	BKVD_EXIT_FAILURE = 1, /* the command ran and failed */
	BKVD_EXIT_STARTUP = 2, /* usage, configuration or token problem: refused to start */
};

#define BKVD_DEFAULT_CONFIG "/etc/bkv/bkvd.conf"

/* Loads the configuration named by --config, $BKVD_CONFIG or the default. Prints a
 * one-line reason and returns false on failure. */
bool bkvd_load_config(const char *path, bkvd_config *config);

/* For commands whose options are --config FILE, --help and at most one flag (--FLAG, or
 * NULL for none; *flag_set says whether it was given): parses them, prints help (the
 * command's usage text) or a usage error. Returns -1 to go on, with optind at the first
 * positional argument, or the exit code to return. */
int bkvd_config_options(int argc, char **argv, const char *help, const char **config_path,
                        const char *flag, bool *flag_set);

/* Opens the token named in config with its PIN. Prints "bkvd: <reason>" on failure. */
bool bkvd_open_token(const bkvd_config *config, bkv_token **token);

/* The key of the account-id hashes in logs ([vault] log_key_file; a random one, for this
 * run only, if none is configured). Prints a one-line reason and returns false if the
 * file does not hold 32 bytes. */
bool bkvd_load_log_key(const bkvd_config *config, uint8_t key[32]);

/* bkv_token_strerror(err), with the CKR name of the token's last failed call if any. */
const char *bkvd_token_error(const bkv_token *token, bkv_token_err err);

int bkvd_cmd_init(int argc, char **argv);
int bkvd_cmd_rotate_seal_key(int argc, char **argv);
int bkvd_cmd_serve(int argc, char **argv);
int bkvd_cmd_dev_token(int argc, char **argv);
int bkvd_cmd_rewrap(int argc, char **argv);
int bkvd_cmd_delete_seal_key(int argc, char **argv);
int bkvd_cmd_status(int argc, char **argv);

/* Prints line and a newline on stdout (a bkv_token_line_fn). */
void bkvd_print_line(void *arg, const char *line);

#endif
