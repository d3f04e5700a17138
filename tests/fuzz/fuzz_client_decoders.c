/*
 * fuzz_client_decoders.c - what libbkv decodes from outside: the 64-digit key as people
 * type it, a vault's Connect error body (JSON with base64 AttemptInfo and RetryInfo
 * details), and a backup file (docs/BACKUP-FORMAT.md) under a fixed key.
 *
 * Byte 0 picks the decoder. A key that parses must format and parse back to itself; a
 * backup the fuzzer made up must never decrypt (it does not know the key).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bkv.h"
#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const size_t len = size - 1;
	char *in = malloc(len ? len : 1);
	if (in == NULL)
		abort();
	memcpy(in, data + 1, len);
	if (data[0] % 3 == 2) {
		static const bkv_key key = {{1, 2, 3, 4, 5, 6, 7, 8}};
		FILE *backup = len ? fmemopen(in, len, "rb") : NULL;
		FILE *sink = fopen("/dev/null", "wb");
		bkv_error error;
		if (sink == NULL)
			abort();
		if (backup != NULL) {
			if (bkv_backup_decrypt(&key, backup, sink, 0, NULL, NULL, &error) == BKV_OK)
				abort();
			fclose(backup);
		}
		fclose(sink);
	} else if (data[0] % 3 == 1) {
		bkv_key key, again;
		bkv_error error;
		if (bkv_key_parse(in, len, &key, &error) == BKV_OK) {
			char text[BKV_KEY_TEXT_BYTES];
			if (bkv_key_format(&key, text, sizeof(text)) != BKV_OK ||
			    bkv_key_parse(text, strlen(text), &again, &error) != BKV_OK ||
			    memcmp(key.bytes, again.bytes, BKV_KEY_BYTES) != 0)
				abort();
		} else if (error.message[0] == '\0') {
			abort(); /* every rejection names its reason */
		}
	} else {
		rpc_error err;
		const bool connect = bkvi_rpc_decode_error((const uint8_t *)in, len, &err);
		if (memchr(err.code, '\0', sizeof(err.code)) == NULL ||
		    memchr(err.message, '\0', sizeof(err.message)) == NULL ||
		    connect != (err.code[0] != '\0') ||
		    (!err.has_retry_info && err.retry_after_ms) ||
		    (!connect && (err.has_attempt_info || err.has_retry_info)))
			abort();
	}
	free(in);
	return 0;
}
