/*
 * cmd_register.c - `bkv register`: keeps a backup key in the vault under a password. The
 * key comes from --key-file or standard input; the password is asked twice.
 *
 * It never replaces a key the vault already holds (or the tombstone of a destroyed one)
 * unless told --replace: without it, it says what is there and what replacing would lose,
 * and exits 6. With --replace it replaces exactly the record version GetStatus showed, so
 * a key registered meanwhile by someone else is not overwritten (exit 6 again).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define REGISTER_USAGE                                                                             \
	"usage: bkv register [--vault URL] [--token-file FILE] [--key-file FILE]\n"                \
	"                    [--password-file FILE] [--attempt-limit N] [--replace]\n"             \
	"                    [--suite p256-sha256|ristretto255-sha512]\n"

/* What the account holds now, and what replacing it would lose. */
static void explain_existing(bkv_client *client, const char *token)
{
	bkv_account_status st;
	bkv_error error = {0};
	if (bkv_status_get(client, token, &st, &error) != BKV_OK) {
		fprintf(stderr,
		        "bkv register: the vault already holds a key for this account (its status "
		        "is not available: %s)\n",
		        error.message);
	} else if (st.state == BKV_RECORD_DESTROYED) {
		char when[64];
		cli_format_time(st.destroyed_at_unix, when, sizeof(when));
		fprintf(
		    stderr,
		    "bkv register: this account's key was destroyed at %s (record version %" PRIu64
		    ", after %u wrong passwords);\n"
		    "its tombstone stays in the vault. That key cannot be recovered any more;\n"
		    "`bkv register --replace` registers this key in its place.\n",
		    when, st.record_version, st.attempt_limit);
		return;
	} else {
		char when[64];
		cli_format_time(st.registered_at_unix, when, sizeof(when));
		fprintf(stderr,
		        "bkv register: this account already has a key in the vault: record version "
		        "%" PRIu64 ", registered at %s.\n",
		        st.record_version, when);
	}
	fprintf(stderr, "Replacing it (`bkv register --replace`) removes that key from the vault "
	                "for good:\n"
	                "backups encrypted with the key now in the vault can then only be opened "
	                "with that key written down.\n");
}

int cli_register(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "vcPtpkasRA", &o) || o.nargs != 0) {
		fprintf(stderr, REGISTER_USAGE);
		return CLI_EXIT_USAGE;
	}
	if (o.help) {
		printf(
		    REGISTER_USAGE
		    "\n"
		    "Keeps the backup key in the vault under a password. The key comes from\n"
		    "--key-file, else it is asked on the terminal (64 hex digits; spaces, dashes\n"
		    "and upper case are fine), else read from standard input. The password is\n"
		    "asked twice on the terminal unless --password-file is given; without a\n"
		    "terminal --password-file is needed. Both are asked only once the token,\n"
		    "the vault URL and the options are found good.\n"
		    "The vault never sees the key or the password. --attempt-limit sets how many\n"
		    "wrong passwords the vault allows before it destroys the key (default: the\n"
		    "vault's, usually 10).\n\n"
		    "If the account already has a key in the vault (or a destroyed key's\n"
		    "tombstone), register refuses, says what is there, and exits 6. --replace\n"
		    "replaces it: the key in the vault now is then gone from it for good, and\n"
		    "backups encrypted with it open only with that key written "
		    "down.\n\n" CLI_EXIT_CODES_HELP);
		return CLI_EXIT_OK;
	}
	bkv_key key;
	char password[CLI_PASSWORD_MAX];
	char *token = NULL;
	bkv_client *client = NULL;
	int rc = CLI_EXIT_USAGE;
	size_t password_len = 0;
	bkv_key_wipe(&key);
	password[0] = '\0';
	/* The token, the URL and the key first: the password is asked last. */
	if (!cli_connect(&o, &token, &client) || !cli_read_key(&o, false, &key))
		goto done;
	password_len =
	    cli_read_password(&o, "New vault password: ", true, password, sizeof(password));
	if (password_len == 0)
		goto done;
	bkv_error error = {0};
	if (!o.replace) {
		const bkv_status st = bkv_register(client, token, password, password_len, &key,
		                                   o.attempt_limit, &error);
		if (st == BKV_ERR_ALREADY_REGISTERED) {
			explain_existing(client, token);
			rc = CLI_EXIT_EXISTS;
			goto done;
		}
		if (st != BKV_OK) {
			rc = cli_fail("register", &error);
			goto done;
		}
		printf("registered: the vault keeps the key under your password\n");
		rc = CLI_EXIT_OK;
		goto done;
	}
	/* --replace: exactly the version there is now (live or destroyed), or create. */
	bkv_account_status now;
	if (bkv_status_get(client, token, &now, &error) != BKV_OK) {
		rc = cli_fail("register", &error);
		goto done;
	}
	const uint64_t replaces = now.state == BKV_RECORD_REGISTERED ||
	                                  now.state == BKV_RECORD_DESTROYED || now.registered
	                              ? now.record_version
	                              : 0;
	uint64_t version = 0;
	if (bkv_register_replacing(client, token, password, password_len, &key, o.attempt_limit,
	                           replaces, &version, &error) != BKV_OK) {
		rc = cli_fail("register", &error);
		goto done;
	}
	if (replaces == 0)
		printf("registered (there was nothing to replace): the vault keeps the key "
		       "under your password\n");
	else if (now.state == BKV_RECORD_DESTROYED)
		printf("registered: record version %" PRIu64 " replaces the destroyed key's "
		       "tombstone (version %" PRIu64
		       "); the vault keeps the key under your password\n",
		       version, replaces);
	else
		printf("registered: record version %" PRIu64 " replaces version %" PRIu64
		       " (that key is no longer in the vault); the vault keeps the key under your "
		       "password\n",
		       version, replaces);
	rc = CLI_EXIT_OK;
done:
	cli_disconnect(token, client);
	cli_wipe(password, sizeof(password));
	bkv_key_wipe(&key);
	return rc;
}
