/*
 * cmd_change_password.c - `bkv change-password`: recovers the key with the old password
 * and registers it again under a new one (the next record version, a fresh attempt
 * counter), replacing only the version it recovered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_change_password(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "vcPtpNA", &o) || o.nargs != 0) {
		fprintf(stderr, "usage: bkv change-password [--vault URL] [--token-file FILE]\n"
		                "       [--password-file FILE --new-password-file FILE]\n");
		return CLI_EXIT_USAGE;
	}
	if (o.help) {
		printf("usage: bkv change-password [--vault URL] [--token-file FILE]\n"
		       "       [--password-file FILE --new-password-file FILE]\n\n"
		       "Asks for the current and the new vault password (on the terminal, the new\n"
		       "one twice; or from the two files), recovers the key with the current one\n"
		       "(a wrong one uses an attempt) and keeps it under the new one, in place of\n"
		       "exactly the record version it recovered, with the same attempt limit. If\n"
		       "the key in the vault changes meanwhile, nothing is changed (exit 6).\n\n"
		       "%s",
		       CLI_EXIT_CODES_HELP);
		return CLI_EXIT_OK;
	}
	char old_password[CLI_PASSWORD_MAX], new_password[CLI_PASSWORD_MAX];
	char *token = NULL;
	bkv_client *client = NULL;
	int rc = CLI_EXIT_USAGE;
	old_password[0] = '\0';
	new_password[0] = '\0';
	size_t old_len = 0, new_len = 0;
	cli_options for_new = o;
	for_new.password_file = o.new_password_file;
	if ((o.password_file == NULL) != (o.new_password_file == NULL)) {
		fprintf(stderr, "bkv change-password: give both password files or neither\n");
		goto done;
	}
	if (!cli_connect(&o, &token, &client))
		goto done;
	old_len = cli_read_password(&o, "Current vault password: ", false, old_password,
	                            sizeof(old_password));
	new_len = old_len ? cli_read_password(&for_new, "New vault password: ", true, new_password,
	                                      sizeof(new_password))
	                  : 0;
	if (new_len == 0)
		goto done;
	bkv_error error = {0};
	if (bkv_change_password(client, token, old_password, old_len, new_password, new_len, NULL,
	                        &error) != BKV_OK) {
		rc = cli_fail("change-password", &error);
		goto done;
	}
	printf("password changed\n");
	rc = CLI_EXIT_OK;
done:
	cli_disconnect(token, client);
	cli_wipe(old_password, sizeof(old_password));
	cli_wipe(new_password, sizeof(new_password));
	return rc;
}
