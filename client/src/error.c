/*
 * error.c - status names and the error helper every libbkv call uses.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

const char *bkv_status_name(bkv_status status)
{
	switch (status) {
	case BKV_OK:
		return "ok";
	case BKV_ERR_ARGUMENT:
		return "invalid argument";
	case BKV_ERR_WRONG_PASSWORD:
		return "wrong password";
	case BKV_ERR_DESTROYED:
		return "key destroyed";
	case BKV_ERR_NOT_REGISTERED:
		return "not registered";
	case BKV_ERR_UNAUTHENTICATED:
		return "unauthenticated";
	case BKV_ERR_UNAVAILABLE:
		return "vault unavailable";
	case BKV_ERR_PROTOCOL:
		return "protocol error";
	case BKV_ERR_IO:
		return "I/O error";
	case BKV_ERR_FORMAT:
		return "not a bkv backup";
	case BKV_ERR_TRUNCATED:
		return "backup truncated";
	case BKV_ERR_TAMPERED:
		return "backup tampered";
	case BKV_ERR_WRONG_KEY:
		return "wrong backup key";
	case BKV_ERR_NOMEM:
		return "out of memory";
	case BKV_ERR_INTERNAL:
		return "internal error";
	case BKV_ERR_ALREADY_REGISTERED:
		return "already registered";
	case BKV_ERR_CONFLICT:
		return "record changed (conflict)";
	case BKV_ERR_DATA_LOSS:
		return "stored record refused (data loss)";
	case BKV_ERR_TLS:
		return "TLS failure (vault not trusted)";
	case BKV_ERR_HTTP:
		return "not a vault's answer (HTTP error)";
	case BKV_ERR_RATE_LIMITED:
		return "rate limited";
	}
	return "unknown status";
}

bkv_status bkvi_fail(bkv_error *error, bkv_status status, const char *fmt, ...)
{
	if (error != NULL) {
		error->status = status;
		error->http_status = 0;
		error->retry_after_ms = 0;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(error->message, sizeof(error->message), fmt, ap);
		va_end(ap);
	}
	return status;
}

const char *bkv_version(void)
{
	return BKV_VERSION_STRING;
}
