/*
 * fuzz_jwt.c - bearer-token verification: the Authorization header value as a client
 * sends it. With an HS256 key nobody but the fuzzer's fixture knows, no input may verify.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bkv_auth auth;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char path[] = "/tmp/bkv-fuzz-jwt-XXXXXX";
	int fd = mkstemp(path);
	static const char secret[] = "fuzzing secret that is at least 32 bytes long";
	if (fd < 0 || write(fd, secret, sizeof(secret) - 1) != (ssize_t)(sizeof(secret) - 1))
		abort();
	close(fd);
	bkv_auth_settings s = {"HS256", path, "bkv-fuzz", "bkv", 3600, 60};
	char why[256];
	if (!bkv_auth_init(&auth, &s, why, sizeof(why)))
		abort();
	unlink(path);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *header = malloc(size + 1);
	if (header == NULL)
		abort();
	memcpy(header, data, size);
	header[size] = '\0';
	uint8_t account[BKV_AUTH_ACCOUNT_MAX];
	size_t account_len = 0;
	const char *why = NULL;
	if (bkv_auth_verify(&auth, header, 1800000000, account, &account_len, &why))
		abort(); /* a forgery: the fuzzer does not know the key */
	if (why == NULL)
		abort();
	free(header);
	return 0;
}
