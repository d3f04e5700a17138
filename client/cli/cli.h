/*
 * cli.h - what the bkv subcommands share: exit codes, common options, reading the
 * account token, passwords and keys, and mapping library statuses to exit codes.
 *
 * Exit codes: CLI_EXIT_CODES_HELP below (bkv --help prints it).
 */
#ifndef BKV_CLI_H
#define BKV_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bkv.h"

enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAILURE = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_WRONG_PASSWORD = 3,
	CLI_EXIT_DESTROYED = 4,
	CLI_EXIT_UNAVAILABLE = 5,
	CLI_EXIT_EXISTS = 6,           /* BKV_ERR_ALREADY_REGISTERED, BKV_ERR_CONFLICT */
	CLI_EXIT_TLS = 7,              /* BKV_ERR_TLS */
	CLI_EXIT_HTTP = 8,             /* BKV_ERR_HTTP */
	CLI_EXIT_RATE_LIMITED = 9,     /* BKV_ERR_RATE_LIMITED */
	CLI_EXIT_UNAUTHENTICATED = 10, /* BKV_ERR_UNAUTHENTICATED */
};

/* The exit codes, for every --help. */
#define CLI_EXIT_CODES_HELP                                                                        \
	"Exit codes:\n"                                                                            \
	"  0 ok, 1 failure, 2 usage, 3 wrong password,\n"                                          \
	"  4 no attempts left / key destroyed,\n"                                                  \
	"  5 vault unavailable (retry later),\n"                                                   \
	"  6 a key is already registered (see register --replace), or the key in the\n"            \
	"    vault changed meanwhile,\n"                                                           \
	"  7 TLS failed: the vault's certificate is not trusted or not the pinned one,\n"          \
	"    or the CA file cannot be read (do not retry),\n"                                      \
	"  8 an HTTP error that is not the vault's answer (a proxy, a wrong URL),\n"               \
	"  9 rate limited by the vault (retry later),\n"                                           \
	"  10 the vault rejected the account token.\n"

#define CLI_PASSWORD_MAX 1024

typedef struct cli_options {
	const char *vault_url;         /* --vault or $BKV_VAULT */
	const char *ca_file;           /* --ca-file */
	const char *pinned_cert;       /* --pin-cert */
	const char *token_file;        /* --token-file, else $BKV_TOKEN */
	const char *password_file;     /* --password-file, else the terminal */
	const char *new_password_file; /* --new-password-file (change-password) */
	const char *key_file;          /* --key-file */
	const char *out;               /* --out */
	unsigned attempt_limit;        /* --attempt-limit */
	const char *suite;             /* --suite */
	bool replace;                  /* --replace (register) */
	bool yes;                      /* --yes (delete) */
	bool argon2_set;               /* --argon2 T,M,P */
	unsigned argon2[3];            /* iterations, memory in KiB, parallelism */
	bool help;
	/* positional arguments after the options */
	char **args;
	int nargs;
} cli_options;

/* Parses the options in allowed (a string of option letters, see cli.c). Prints usage
 * problems and returns false. */
bool cli_parse(int argc, char **argv, const char *allowed, cli_options *o);

int cli_exit_for(bkv_status status);
int cli_fail(const char *command, const bkv_error *error);

/* The account token (--token-file or $BKV_TOKEN) and a client for o's vault: both, or
 * neither with a message printed. Release them with cli_disconnect. */
bool cli_connect(const cli_options *o, char **token, bkv_client **client);
void cli_disconnect(char *token, bkv_client *client);
/* Interactive input is asked on the terminal (/dev/tty) only after every other check has
 * passed. Without a terminal nothing waits: the password needs --password-file, and the
 * key comes from --key-file or standard input (when it is not a terminal). */
#define CLI_CONFIRM_TRIES 3
enum { CLI_NO_TTY = -1, CLI_TTY_EOF = -2, CLI_TTY_LONG = -3 };
long cli_prompt_tty(const char *prompt, bool echo, char *buf, size_t cap);
/* A password from --password-file or the terminal without echo (if confirm, asked twice,
 * up to CLI_CONFIRM_TRIES times while they differ). Returns its length, 0 on failure. */
size_t cli_read_password(const cli_options *o, const char *prompt, bool confirm, char *password,
                         size_t cap);
/* The backup key from --key-file; else asked on the terminal (no echo, up to
 * CLI_CONFIRM_TRIES times) when standard input is a terminal or stdin_busy (it carries
 * data); else read from standard input. */
bool cli_read_key(const cli_options *o, bool stdin_busy, bkv_key *key);
void cli_wipe(void *p, size_t n);
/* "2024-05-01T12:00:00Z" (UTC), or "an unknown time" for 0. */
void cli_format_time(int64_t unix_time, char *out, size_t cap);

int cli_keygen(int argc, char **argv);
int cli_register(int argc, char **argv);
int cli_recover(int argc, char **argv);
int cli_change_password(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_delete(int argc, char **argv);
int cli_encrypt(int argc, char **argv);
int cli_decrypt(int argc, char **argv);

#endif
