/*
 * cmd_recover.c - `bkv recover`: gets the backup key back from the vault with the
 * password and prints its 64 digits (or writes them to --out, mode 0600). A wrong
 * password says how many attempts are left.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_recover(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "vcPtpoA", &o) || o.nargs != 0) {
		fprintf(stderr, "usage: bkv recover [--out FILE] ...\n");
		return CLI_EXIT_USAGE;
	}
	if (o.help) {
		printf(
		    "usage: bkv recover [--vault URL] [--token-file FILE] [--password-file FILE]\n"
		    "                   [--out FILE]\n\n"
		    "Recovers the backup key with the vault password (asked on the terminal\n"
		    "unless --password-file is given) and prints its 64 digits.\n"
		    "Each wrong password uses one attempt; after the last one the vault destroys\n"
		    "the key for good, and every later recovery says it was destroyed.\n\n"
		    "%s",
		    CLI_EXIT_CODES_HELP);
		return CLI_EXIT_OK;
	}
	char password[CLI_PASSWORD_MAX];
	char text[BKV_KEY_TEXT_BYTES] = "";
	char *token = NULL;
	bkv_client *client = NULL;
	bkv_key key;
	int rc = CLI_EXIT_USAGE;
	size_t password_len = 0;
	password[0] = '\0';
	if (!cli_connect(&o, &token, &client))
		goto done;
	password_len = cli_read_password(&o, "Vault password: ", false, password, sizeof(password));
	if (password_len == 0)
		goto done;
	bkv_error error = {0};
	bkv_recover_info info;
	if (bkv_recover(client, token, password, password_len, &key, &info, &error) != BKV_OK) {
		rc = cli_fail("recover", &error);
		goto done;
	}
	bkv_key_format(&key, text, sizeof(text));
	bkv_key_wipe(&key);
	rc = CLI_EXIT_OK;
	if (o.out != NULL) {
		int fd = open(o.out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		const size_t len = strlen(text);
		if (fd < 0 || write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
		    close(fd) != 0) {
			fprintf(stderr, "bkv recover: cannot write %s\n", o.out);
			rc = CLI_EXIT_FAILURE;
		}
	} else {
		printf("%s\n", text);
	}
done:
	cli_disconnect(token, client);
	cli_wipe(password, sizeof(password));
	cli_wipe(text, sizeof(text));
	return rc;
}
