/*
 * cmd_decrypt.c - `bkv decrypt --key-file KEY INPUT OUTPUT` (see file_crypt.c). Nothing
 * is written under OUTPUT unless every chunk verified.
 */
#include "file_crypt.h"

int cli_decrypt(int argc, char **argv)
{
	return file_crypt("decrypt", false, argc, argv);
}
