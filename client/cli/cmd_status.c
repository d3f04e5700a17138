/*
 * cmd_status.c - `bkv status`: what the vault holds for the account.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

int cli_status(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "vcPt", &o) || o.nargs != 0 || o.help) {
		fprintf(o.help ? stdout : stderr,
		        "usage: bkv status [--vault URL] [--token-file FILE]\n\n"
		        "Shows whether the vault holds a key for the account, its suite, and how\n"
		        "many recovery attempts are used.\n");
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
	if (!st.registered) {
		printf("registered: no\n");
	} else {
		char when[64] = "";
		time_t t = (time_t)st.registered_at_unix;
		struct tm tm;
		if (gmtime_r(&t, &tm) != NULL)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("registered: yes\nsuite: %s\nattempts used: %u of %u (%u left)\n"
		       "record version: %" PRIu64 "\nregistered at: %s\n",
		       st.suite == BKV_SUITE_P256_SHA256 ? "p256-sha256" : "ristretto255-sha512",
		       st.attempts_used, st.attempt_limit, st.attempt_limit - st.attempts_used,
		       st.record_version, when);
	}
	rc = CLI_EXIT_OK;
done:
	cli_disconnect(token, client);
	return rc;
}
