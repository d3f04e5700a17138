/*
 * file_crypt.h - the shared body of `bkv encrypt` and `bkv decrypt`.
 */
#ifndef BKV_FILE_CRYPT_H
#define BKV_FILE_CRYPT_H

#include "cli.h"

int file_crypt(const char *command, bool encrypt, int argc, char **argv);

#endif
