/*
 * common.c - what every handler shares: statuses and their mapping from token and
 * storage errors, suite checks, and the audit log.
 *
 * Logs never hold passwords, tokens, keys or OPAQUE messages. Account ids appear only as a
 * keyed hash, so a log cannot be searched for a phone number without the log key.
 */
#include <inttypes.h>
#include <time.h>

#include <sodium.h>

#include "handlers.h"

const char *bkv_code_name(bkv_code code)
{
	switch (code) {
	case BKV_CODE_OK:
		return "ok";
	case BKV_CODE_INVALID_ARGUMENT:
		return "invalid_argument";
	case BKV_CODE_UNAUTHENTICATED:
		return "unauthenticated";
	case BKV_CODE_PERMISSION_DENIED:
		return "permission_denied";
	case BKV_CODE_NOT_FOUND:
		return "not_found";
	case BKV_CODE_FAILED_PRECONDITION:
		return "failed_precondition";
	case BKV_CODE_RESOURCE_EXHAUSTED:
		return "resource_exhausted";
	case BKV_CODE_UNAVAILABLE:
		return "unavailable";
	case BKV_CODE_INTERNAL:
		return "internal";
	case BKV_CODE_UNIMPLEMENTED:
		return "unimplemented";
	case BKV_CODE_ALREADY_EXISTS:
		return "already_exists";
	case BKV_CODE_ABORTED:
		return "aborted";
	case BKV_CODE_DATA_LOSS:
		return "data_loss";
	}
	return "unknown";
}

bkvd_status bkvd_status_ok(void)
{
	return (bkvd_status){.code = BKV_CODE_OK, .message = ""};
}

bkvd_status bkvd_status_error(bkv_code code, const char *message)
{
	return (bkvd_status){.code = code, .message = message};
}

bkvd_status bkvd_status_busy(void)
{
	return bkvd_status_error(BKV_CODE_UNAVAILABLE,
	                         "the vault is busy with this account; try again");
}

bkvd_status bkvd_status_from_token(bkv_vault *v, bkv_token_err err)
{
	if (err != BKV_TOKEN_OK && err != BKV_TOKEN_ERR_AUTH) {
		const unsigned long rv = bkv_token_last_rv(v->token);
		const char *call = bkv_token_last_call(v->token);
		fprintf(stderr, "bkvd: token error: %s%s%s%s%s\n", bkv_token_strerror(err),
		        *call ? ": " : "", call, rv ? " answered " : "",
		        rv ? bkv_token_ckr_name(rv) : "");
	}
	switch (err) {
	case BKV_TOKEN_OK:
		return bkvd_status_ok();
	case BKV_TOKEN_ERR_AUTH:
		return bkvd_status_error(BKV_CODE_INTERNAL, "a stored record failed to open");
	case BKV_TOKEN_ERR_KEY_MISSING:
		return bkvd_status_error(BKV_CODE_INTERNAL,
		                         "a vault key is missing from the token");
	case BKV_TOKEN_ERR_ARGUMENT:
		return bkvd_status_error(BKV_CODE_INTERNAL, "invalid token operation");
	case BKV_TOKEN_ERR_UNSUPPORTED:
	case BKV_TOKEN_ERR_KEY_UNFIT:
		return bkvd_status_error(BKV_CODE_INTERNAL,
		                         "the vault's key token cannot do an operation its "
		                         "configuration needs");
	default:
		return bkvd_status_error(BKV_CODE_UNAVAILABLE,
		                         "the vault's key token is unavailable; try again later");
	}
}

bkvd_status bkvd_status_from_server_keys(bkv_vault *v)
{
	const bkv_token_err why = bkv_token_last_error(v->token);
	if (why == BKV_TOKEN_OK)
		return bkvd_status_error(BKV_CODE_INTERNAL, "a server key operation failed");
	return bkvd_status_from_token(v, why);
}

bkvd_status bkvd_status_from_storage(bkv_storage_err err)
{
	switch (err) {
	case BKV_STORAGE_OK:
		return bkvd_status_ok();
	case BKV_STORAGE_NOT_FOUND:
		return bkvd_status_error(BKV_CODE_NOT_FOUND, "no backup key is registered");
	case BKV_STORAGE_EXISTS:
		return bkvd_status_error(BKV_CODE_ALREADY_EXISTS,
		                         "a backup key is already registered for this account");
	case BKV_STORAGE_UNAVAILABLE:
		return bkvd_status_error(BKV_CODE_UNAVAILABLE,
		                         "the vault's database is unavailable; try again later");
	default:
		return bkvd_status_error(BKV_CODE_INTERNAL, "storage failure");
	}
}

bool bkv_account_valid(bkv_account account)
{
	return account.id != NULL && account.len >= 1 && account.len <= BKV_ACCOUNT_ID_MAX;
}

bool bkv_suite_enabled(const bkv_vault *v, Bkv__V1__Suite suite, opaque_suite_id *out)
{
	for (size_t i = 0; i < v->settings.nsuites; i++) {
		if ((int)v->settings.suites[i] == (int)suite) {
			*out = v->settings.suites[i];
			return true;
		}
	}
	return false;
}

opaque_config bkv_opaque_config(const bkv_vault *v, opaque_suite_id suite)
{
	/* The server never runs the KSF; the identity KSF keeps the config well-formed. */
	return (opaque_config){
	    .suite = suite,
	    .context = v->settings.context,
	    .context_len = v->settings.context_len,
	    .ksf = {OPAQUE_KSF_IDENTITY, 0, 0, 0},
	};
}

void bkv_account_hash(const bkv_vault *v, bkv_account account, char out[33])
{
	uint8_t digest[16];
	crypto_generichash(digest, sizeof(digest), account.id, account.len, v->settings.log_key,
	                   sizeof(v->settings.log_key));
	sodium_bin2hex(out, 33, digest, sizeof(digest));
}

/* {"ts","event","account"<extra>}: extra is "" or more JSON members with a leading comma. */
static void audit_write(const bkv_vault *v, const char *event, bkv_account account,
                        const char *extra)
{
	if (v->settings.event_hook != NULL)
		v->settings.event_hook(v->settings.event_arg, event);
	if (v->settings.audit == NULL)
		return;
	char account_hash[33];
	bkv_account_hash(v, account, account_hash);
	fprintf(v->settings.audit, "{\"ts\":%" PRId64 ",\"event\":\"%s\",\"account\":\"%s\"%s}\n",
	        (int64_t)time(NULL), event, account_hash, extra);
	fflush(v->settings.audit);
}

void bkv_audit(const bkv_vault *v, const char *event, bkv_account account, const char *extra_key,
               uint64_t extra_value)
{
	char extra[96] = "";
	if (extra_key != NULL)
		snprintf(extra, sizeof(extra), ",\"%s\":%" PRIu64, extra_key, extra_value);
	audit_write(v, event, account, extra);
}

void bkv_audit_reason(const bkv_vault *v, const char *event, bkv_account account,
                      const char *reason)
{
	char extra[256];
	snprintf(extra, sizeof(extra), ",\"reason\":\"%s\"", reason);
	audit_write(v, event, account, extra);
}

bool bkv_vault_token_healthy(bkv_vault *v)
{
	return bkv_token_check(v->token) == BKV_TOKEN_OK;
}

bool bkv_vault_reopen_token(bkv_vault *v)
{
	return bkv_token_reopen(v->token) == BKV_TOKEN_OK;
}
