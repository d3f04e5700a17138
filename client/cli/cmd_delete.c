/*
 * cmd_delete.c - `bkv delete`: removes the account's key from the vault.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_delete(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "vcPty", &o) || o.nargs != 0 || o.help) {
		fprintf(o.help ? stdout : stderr,
		        "usage: bkv delete [--vault URL] [--token-file FILE] [--yes]\n\n"
		        "Deletes the key the vault keeps for the account. Keep the 64 digits\n"
		        "elsewhere first if you still need them. It asks to confirm on the\n"
		        "terminal; --yes skips that, and without a terminal --yes is needed.\n\n"
		        "%s",
		        CLI_EXIT_CODES_HELP);
		return o.help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	char *token = NULL;
	bkv_client *client = NULL;
	int rc = CLI_EXIT_USAGE;
	if (!cli_connect(&o, &token, &client))
		goto done;
	if (!o.yes) {
		if (!isatty(STDIN_FILENO)) {
			fprintf(stderr,
			        "bkv delete: no terminal to confirm on; pass --yes to delete "
			        "without asking\n");
			goto done;
		}
		/* Say what would be deleted; with nothing there, there is nothing to ask. */
		bkv_error status_error = {0};
		bkv_account_status st;
		if (bkv_status_get(client, token, &st, &status_error) != BKV_OK) {
			rc = cli_fail("delete", &status_error);
			goto done;
		}
		char what[256], when[64];
		if (st.state == BKV_RECORD_DESTROYED) {
			cli_format_time(st.destroyed_at_unix, when, sizeof(when));
			snprintf(what, sizeof(what),
			         "the tombstone of the key destroyed at %s (record version %" PRIu64
			         ")",
			         when, st.record_version);
		} else if (st.registered) {
			cli_format_time(st.registered_at_unix, when, sizeof(when));
			snprintf(what, sizeof(what),
			         "the backup key registered at %s (record version %" PRIu64
			         "): backups encrypted with it then open only with the key "
			         "written down",
			         when, st.record_version);
		} else {
			printf("nothing to delete\n");
			rc = CLI_EXIT_OK;
			goto done;
		}
		char prompt[512], answer[16];
		snprintf(prompt, sizeof(prompt),
		         "The vault would delete %s.\nThis cannot be undone. Type yes to delete: ",
		         what);
		const long n = cli_prompt_tty(prompt, true, answer, sizeof(answer));
		if (n == CLI_NO_TTY) {
			fprintf(stderr, "bkv delete: no terminal to confirm on; pass --yes\n");
			goto done;
		}
		if (n < 0 || strcmp(answer, "yes") != 0) {
			fprintf(stderr, "bkv delete: not confirmed; nothing deleted\n");
			rc = CLI_EXIT_FAILURE;
			goto done;
		}
	}
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
