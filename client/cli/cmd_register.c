/*
 * cmd_register.c - `bkv register`: keeps a backup key in the vault under a password. The
 * key comes from --key-file or standard input; the password is asked twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_register(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "vcPtpkas", &o) || o.nargs != 0) {
		fprintf(stderr, "usage: bkv register [--key-file FILE] [--attempt-limit N] ...\n");
		return CLI_EXIT_USAGE;
	}
	if (o.help) {
		printf(
		    "usage: bkv register [--vault URL] [--token-file FILE] [--key-file FILE]\n"
		    "                    [--password-file FILE] [--attempt-limit N]\n"
		    "                    [--suite p256-sha256|ristretto255-sha512]\n\n"
		    "Keeps the backup key (from --key-file or standard input) in the vault under\n"
		    "a password, asked twice on the terminal unless --password-file is given.\n"
		    "The vault never sees the key or the password. --attempt-limit sets how many\n"
		    "wrong passwords the vault allows before it destroys the key (default: the\n"
		    "vault's, usually 10).\n");
		return CLI_EXIT_OK;
	}
	bkv_key key;
	if (!cli_read_key(&o, &key))
		return CLI_EXIT_USAGE;
	char password[CLI_PASSWORD_MAX];
	char *token = NULL;
	bkv_client *client = NULL;
	int rc = CLI_EXIT_USAGE;
	size_t password_len =
	    cli_read_password(&o, "New vault password: ", true, password, sizeof(password));
	if (password_len == 0 || !cli_connect(&o, &token, &client))
		goto done;
	bkv_error error = {0};
	if (bkv_register(client, token, password, password_len, &key, o.attempt_limit, &error) !=
	    BKV_OK) {
		rc = cli_fail("register", &error);
		goto done;
	}
	fprintf(stderr, "registered: the vault keeps the key under your password\n");
	rc = CLI_EXIT_OK;
done:
	cli_disconnect(token, client);
	cli_wipe(password, sizeof(password));
	bkv_key_wipe(&key);
	return rc;
}
