/*
 * cmd_status.c - `bkv status`: what the vault holds for the account.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_status(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "vcPt", &o) || o.nargs != 0 || o.help) {
		fprintf(o.help ? stdout : stderr,
		        "usage: bkv status [--vault URL] [--token-file FILE]\n\n"
		        "Shows whether the vault holds a key for the account, its suite, and how\n"
		        "many recovery attempts are used. A key the vault destroyed (no attempts\n"
		        "were left) shows as \"destroyed\" with the time, and exits 4.\n\n"
		        "%s",
		        CLI_EXIT_CODES_HELP);
		return o.help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	char *token = NULL;
	bkv_client *client = NULL;
	int rc = CLI_EXIT_USAGE;
	if (!cli_connect(&o, &token, &client))
		goto done;
	bkv_error error = {0};
	bkv_account_status st;
	if (bkv_status_get(client, token, &st, &error) != BKV_OK) {
		rc = cli_fail("status", &error);
		goto done;
	}
	const char *suite =
	    st.suite == BKV_SUITE_P256_SHA256 ? "p256-sha256" : "ristretto255-sha512";
	char registered_at[64], destroyed_at[64];
	cli_format_time(st.registered_at_unix, registered_at, sizeof(registered_at));
	cli_format_time(st.destroyed_at_unix, destroyed_at, sizeof(destroyed_at));
	rc = CLI_EXIT_OK;
	if (st.state == BKV_RECORD_DESTROYED) {
		printf("registered: no\nstate: destroyed at %s (no attempts were left; the key "
		       "cannot be recovered)\nsuite: %s\nattempts used: %u of %u\n"
		       "record version: %" PRIu64 "\nregistered at: %s\n",
		       destroyed_at, suite, st.attempts_used, st.attempt_limit, st.record_version,
		       registered_at);
		fprintf(stderr, "bkv status: the key was destroyed; `bkv register --replace` "
		                "registers a new one, `bkv delete` removes the tombstone\n");
		rc = CLI_EXIT_DESTROYED;
	} else if (!st.registered) {
		printf("registered: no\n");
	} else {
		printf("registered: yes\nstate: registered\nsuite: %s\nattempts used: %u of %u (%u "
		       "left)\nrecord version: %" PRIu64 "\nregistered at: %s\n",
		       suite, st.attempts_used, st.attempt_limit,
		       st.attempt_limit > st.attempts_used ? st.attempt_limit - st.attempts_used
		                                           : 0,
		       st.record_version, registered_at);
	}
done:
	cli_disconnect(token, client);
	return rc;
}
