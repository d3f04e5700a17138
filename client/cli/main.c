/*
 * main.c - the bkv command: dispatches to one file per subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} commands[] = {
    {"keygen", cli_keygen, "generate a backup key and print its 64 digits"},
    {"register", cli_register, "keep the backup key in the vault under a password"},
    {"recover", cli_recover, "get the backup key back from the vault with the password"},
    {"change-password", cli_change_password, "re-register the key under a new password"},
    {"status", cli_status, "show what the vault holds for the account"},
    {"delete", cli_delete, "delete the account's key from the vault"},
    {"encrypt", cli_encrypt, "encrypt a backup file with the backup key"},
    {"decrypt", cli_decrypt, "decrypt a backup file with the backup key"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: bkv <command> [options]   (or bkv --version)\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
	fprintf(out,
	        "\nCommon options: --vault URL (or BKV_VAULT), --ca-file PEM, --pin-cert PEM\n"
	        "(the vault's certificate: alone, the pin is the trust), --token-file FILE\n"
	        "(or BKV_TOKEN), --password-file FILE (else asked on the terminal; never on\n"
	        "the command line). `bkv <command> --help` for more.\n"
	        "register, recover and change-password take --argon2 T,M,P: Argon2id with\n"
	        "these parameters instead of the vault's (the same at every recovery; below\n"
	        "t=3, m=65536 KiB, p=4 only for tests: a vault's own are refused below that).\n"
	        "A file option given as - is standard input (one of them at most); --out -\n"
	        "is standard output. Without a terminal nothing is asked: pass the files.\n"
	        "Results go to standard output, messages and errors to standard error.\n\n"
	        "%s",
	        CLI_EXIT_CODES_HELP);
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("bkv %s\n", BKV_VERSION_STRING);
		if (strcmp(bkv_version(), BKV_VERSION_STRING) != 0)
			printf("libbkv %s (loaded)\n", bkv_version());
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "bkv: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return CLI_EXIT_USAGE;
}
