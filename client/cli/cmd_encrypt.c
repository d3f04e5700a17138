/*
 * cmd_encrypt.c - `bkv encrypt --key-file KEY INPUT OUTPUT` (see file_crypt.c).
 */
#include "file_crypt.h"

int cli_encrypt(int argc, char **argv)
{
	return file_crypt("encrypt", true, argc, argv);
}
