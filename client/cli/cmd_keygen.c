/*
 * cmd_keygen.c - `bkv keygen`: a new backup key, printed as 64 digits in groups of 4
 * (or written to --out with mode 0600).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_keygen(int argc, char **argv)
{
	cli_options o;
	if (!cli_parse(argc, argv, "o", &o) || o.nargs != 0) {
		fprintf(stderr, "usage: bkv keygen [--out FILE]\n");
		return CLI_EXIT_USAGE;
	}
	if (o.help) {
		printf("usage: bkv keygen [--out FILE]\n\n"
		       "Generates a 256-bit backup key from the OS CSPRNG and prints it as 64 hex\n"
		       "digits in 16 groups of 4. Write it down, or keep it in the vault with\n"
		       "`bkv register`. --out writes it to FILE (created with mode 0600).\n");
		return CLI_EXIT_OK;
	}
	bkv_key key;
	char text[BKV_KEY_TEXT_BYTES];
	if (bkv_key_generate(&key) != BKV_OK ||
	    bkv_key_format(&key, text, sizeof(text)) != BKV_OK) {
		fprintf(stderr, "bkv keygen: cannot generate a key\n");
		return CLI_EXIT_FAILURE;
	}
	bkv_key_wipe(&key);
	int rc = CLI_EXIT_OK;
	if (o.out != NULL) {
		int fd = open(o.out, O_WRONLY | O_CREAT | O_EXCL, 0600);
		const size_t len = strlen(text);
		if (fd < 0 || write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
		    close(fd) != 0) {
			fprintf(stderr, "bkv keygen: cannot write %s (it must not exist yet)\n",
			        o.out);
			rc = CLI_EXIT_FAILURE;
		}
	} else {
		printf("%s\n", text);
	}
	cli_wipe(text, sizeof(text));
	return rc;
}
