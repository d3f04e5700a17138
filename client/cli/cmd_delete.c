/*
 * cmd_delete.c - `bkv delete`: removes the account's key from the vault.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_delete(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "vcPt", &o) || o.nargs != 0 || o.help) {
		fprintf(o.help ? stdout : stderr,
		        "usage: bkv delete [--vault URL] [--token-file FILE]\n\n"
		        "Deletes the key the vault keeps for the account. Keep the 64 digits\n"
		        "elsewhere first if you still need them.\n");
		return o.help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	char *token = NULL;
	bkv_client *client = NULL;
	int rc = CLI_EXIT_USAGE;
	if (!cli_connect(&o, &token, &client))
		goto done;
	bkv_error error = {0};
	bool deleted = false;
	if (bkv_delete(client, token, &deleted, &error) != BKV_OK) {
		rc = cli_fail("delete", &error);
		goto done;
	}
	printf(deleted ? "deleted\n" : "nothing to delete\n");
	rc = CLI_EXIT_OK;
done:
	cli_disconnect(token, client);
	return rc;
}
