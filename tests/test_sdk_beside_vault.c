/*
 * test_sdk_beside_vault.c - one program can include and link both the SDK (bkv.h, libbkv.a)
 * and the vault's handlers (handlers.h): the vault's own names carry the bkvd_ prefix where
 * the SDK's carry bkv_ (bkv_status, bkv_delete, ... were once defined by both), and
 * libbkv.a keeps its internals (OPAQUE, protobuf) local, so the vault's copies of them do
 * not clash either. A clash fails the build of this test; running it checks that each
 * side's calls reach its own code.
 */
#include <stdio.h>
#include <string.h>

#include "bkv.h"
#include "handlers.h"

int main(void)
{
	const bkvd_status ok = bkvd_status_ok();
	const bkvd_status refused = bkvd_status_error(BKV_CODE_NOT_FOUND, "no such account");
	const char *sdk_ok = bkv_status_name(BKV_OK);
	/* Both Delete calls are linked in: the SDK's and the vault's handler. */
	bkv_status (*volatile sdk_delete)(bkv_client *, const char *, bool *, bkv_error *) =
	    bkv_delete;
	bkvd_status (*volatile vault_delete)(bkv_vault *, bkv_account, Bkv__V1__DeleteResponse *) =
	    bkvd_delete;
	if (ok.code != BKV_CODE_OK || refused.code != BKV_CODE_NOT_FOUND ||
	    strcmp(bkv_code_name(refused.code), "not_found") != 0 || sdk_ok == NULL ||
	    strcmp(bkv_version(), BKV_VERSION_STRING) != 0 || sdk_delete == NULL ||
	    vault_delete == NULL) {
		fprintf(stderr, "test_sdk_beside_vault: a call reached the wrong code\n");
		return 1;
	}
	printf("ok: libbkv %s and the vault's handlers in one program\n", bkv_version());
	return 0;
}
