/*
 * token_preflight.c - before bkvd reports ready (init, status, serve), one real round trip
 * of every operation the configuration needs, on the keys it loaded: seal and open under
 * the newest seal key and the ticket key (with the IV the token says it used), the state
 * MAC, each suite's OPRF seed HMAC, and for P-256 an ECDH whose result is checked against
 * software. A token that cannot do one of them is refused at start, with the key, the
 * PKCS#11 functions, the mechanism and the CKR name, instead of failing every request
 * later (or, worse, sealing records that never open again).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <sodium.h>

#include "token_internal.h"

#define PROBE_BYTES 32

static const char probe_aad[] = "bkv-v1 preflight";

const char *bkv_token_ckr_name(unsigned long rv)
{
	switch (rv) {
#define CKR(name)                                                                                  \
	case name:                                                                                 \
		return #name
		CKR(CKR_OK);
		CKR(CKR_CANCEL);
		CKR(CKR_HOST_MEMORY);
		CKR(CKR_SLOT_ID_INVALID);
		CKR(CKR_GENERAL_ERROR);
		CKR(CKR_FUNCTION_FAILED);
		CKR(CKR_ARGUMENTS_BAD);
		CKR(CKR_ATTRIBUTE_READ_ONLY);
		CKR(CKR_ATTRIBUTE_SENSITIVE);
		CKR(CKR_ATTRIBUTE_TYPE_INVALID);
		CKR(CKR_ATTRIBUTE_VALUE_INVALID);
		CKR(CKR_ACTION_PROHIBITED);
		CKR(CKR_DATA_INVALID);
		CKR(CKR_DATA_LEN_RANGE);
		CKR(CKR_DEVICE_ERROR);
		CKR(CKR_DEVICE_MEMORY);
		CKR(CKR_DEVICE_REMOVED);
		CKR(CKR_ENCRYPTED_DATA_INVALID);
		CKR(CKR_ENCRYPTED_DATA_LEN_RANGE);
		CKR(CKR_FUNCTION_NOT_SUPPORTED);
		CKR(CKR_KEY_HANDLE_INVALID);
		CKR(CKR_KEY_SIZE_RANGE);
		CKR(CKR_KEY_TYPE_INCONSISTENT);
		CKR(CKR_KEY_FUNCTION_NOT_PERMITTED);
		CKR(CKR_KEY_UNEXTRACTABLE);
		CKR(CKR_MECHANISM_INVALID);
		CKR(CKR_MECHANISM_PARAM_INVALID);
		CKR(CKR_OBJECT_HANDLE_INVALID);
		CKR(CKR_OPERATION_ACTIVE);
		CKR(CKR_OPERATION_NOT_INITIALIZED);
		CKR(CKR_PIN_INCORRECT);
		CKR(CKR_PIN_LOCKED);
		CKR(CKR_SESSION_CLOSED);
		CKR(CKR_SESSION_HANDLE_INVALID);
		CKR(CKR_TEMPLATE_INCOMPLETE);
		CKR(CKR_TEMPLATE_INCONSISTENT);
		CKR(CKR_TOKEN_NOT_PRESENT);
		CKR(CKR_USER_NOT_LOGGED_IN);
		CKR(CKR_BUFFER_TOO_SMALL);
		CKR(CKR_CRYPTOKI_NOT_INITIALIZED);
		CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED);
		CKR(CKR_CANT_LOCK);
		CKR(CKR_NEED_TO_CREATE_THREADS);
#undef CKR
	}
	return "an unlisted CKR value";
}

/* "<what>: <function> with <mechanism> on <key> failed: CKR_..." */
static bkv_token_err fail(bkv_token *t, bkv_token_err err, char *why, size_t why_len,
                          const char *what)
{
	if (why != NULL && why_len > 0) {
		if (err == BKV_TOKEN_ERR_AUTH || t->last_rv == CKR_OK)
			snprintf(why, why_len, "%s", what);
		else
			snprintf(why, why_len, "%s: %s (0x%lx)", what,
			         bkv_token_ckr_name(t->last_rv), (unsigned long)t->last_rv);
	}
	t->last_error = err;
	return err;
}

static bkv_token_err aead_round_trip(bkv_token *t, bkv_token_aead_key key, uint32_t version,
                                     const char *label, char *why, size_t why_len)
{
	uint8_t probe[PROBE_BYTES], sealed[PROBE_BYTES + BKV_TOKEN_TAG_BYTES], opened[PROBE_BYTES];
	uint8_t iv[BKV_TOKEN_IV_BYTES];
	char what[256];
	randombytes_buf(probe, sizeof(probe));
	randombytes_buf(iv, sizeof(iv));
	t->last_rv = CKR_OK;
	bkv_token_err err =
	    bkv_token_encrypt(t, key, version, iv, (const uint8_t *)probe_aad,
	                      sizeof(probe_aad) - 1, probe, sizeof(probe), sealed, sizeof(sealed));
	if (err != BKV_TOKEN_OK) {
		snprintf(what, sizeof(what),
		         "sealing with %s: C_EncryptInit/C_Encrypt with CKM_AES_GCM (96-bit IV, "
		         "128-bit tag) failed",
		         label);
		return fail(t, err, why, why_len, what);
	}
	t->last_rv = CKR_OK;
	err = bkv_token_decrypt(t, key, version, iv, (const uint8_t *)probe_aad,
	                        sizeof(probe_aad) - 1, sealed, sizeof(sealed), opened,
	                        sizeof(opened));
	if (err == BKV_TOKEN_OK && sodium_memcmp(opened, probe, sizeof(probe)) != 0)
		err = BKV_TOKEN_ERR_AUTH;
	sodium_memzero(opened, sizeof(opened));
	if (err != BKV_TOKEN_OK) {
		snprintf(what, sizeof(what),
		         "a seal under %s does not open again with the IV the token reported "
		         "(C_DecryptInit/C_Decrypt with CKM_AES_GCM)",
		         label);
		return fail(t, err, why, why_len, what);
	}
	return BKV_TOKEN_OK;
}

/* x(r·S) from the token's ECDH equals r·S computed in software, for a random r. */
static bkv_token_err p256_ecdh_check(bkv_token *t, const opaque_server_keys *keys, char *why,
                                     size_t why_len)
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	BN_CTX *bn = BN_CTX_new();
	BIGNUM *r = BN_new();
	EC_POINT *peer = g ? EC_POINT_new(g) : NULL, *server = g ? EC_POINT_new(g) : NULL;
	EC_POINT *expected = g ? EC_POINT_new(g) : NULL;
	uint8_t peer_enc[33], expected_enc[33], got[33];
	bool ok =
	    g && bn && r && peer && server && expected &&
	    BN_rand_range(r, EC_GROUP_get0_order(g)) == 1 && !BN_is_zero(r) &&
	    EC_POINT_mul(g, peer, r, NULL, NULL, bn) == 1 &&
	    EC_POINT_oct2point(g, server, keys->server_public_key, 33, bn) == 1 &&
	    EC_POINT_mul(g, expected, NULL, server, r, bn) == 1 &&
	    EC_POINT_point2oct(g, peer, POINT_CONVERSION_COMPRESSED, peer_enc, 33, bn) == 33 &&
	    EC_POINT_point2oct(g, expected, POINT_CONVERSION_COMPRESSED, expected_enc, 33, bn) ==
	        33;
	BN_clear_free(r);
	EC_POINT_free(peer);
	EC_POINT_free(server);
	EC_POINT_clear_free(expected);
	BN_CTX_free(bn);
	EC_GROUP_free(g);
	if (!ok)
		return fail(t, BKV_TOKEN_ERR_NOMEM, why, why_len,
		            "cannot prepare the P-256 ECDH check (OpenSSL)");
	t->last_rv = CKR_OK;
	const opaque_err oerr = keys->ake_dh(keys->ctx, peer_enc, 33, got, 33);
	bkv_token_err err = BKV_TOKEN_OK;
	if (oerr != OPAQUE_OK)
		err = t->last_error != BKV_TOKEN_OK ? t->last_error : BKV_TOKEN_ERR_DEVICE;
	else if (sodium_memcmp(got, expected_enc, 33) != 0)
		err = BKV_TOKEN_ERR_AUTH;
	sodium_memzero(got, sizeof(got));
	sodium_memzero(expected_enc, sizeof(expected_enc));
	if (err != BKV_TOKEN_OK)
		return fail(t, err, why, why_len,
		            err == BKV_TOKEN_ERR_AUTH
		                ? "the P-256 AKE key bkv-ake-p256-sha256: the token's ECDH result "
		                  "differs from software's"
		                : "the P-256 AKE key bkv-ake-p256-sha256: C_DeriveKey with "
		                  "CKM_ECDH1_DERIVE and a readable CKA_VALUE failed");
	return BKV_TOKEN_OK;
}

bkv_token_err bkv_token_preflight(bkv_token *t, char *why, size_t why_len)
{
	if (t == NULL || t->nseal == 0 || !t->ticket_loaded || !t->state_mac_loaded)
		return BKV_TOKEN_ERR_ARGUMENT;
	char label[64];
	const uint32_t newest = bkv_token_seal_version(t);
	snprintf(label, sizeof(label), "bkv-seal-%u", newest);
	bkv_token_err err = aead_round_trip(t, BKV_TOKEN_KEY_SEAL, newest, label, why, why_len);
	if (err == BKV_TOKEN_OK)
		err = aead_round_trip(t, BKV_TOKEN_KEY_TICKET, 1, "bkv-ticket-1", why, why_len);
	if (err != BKV_TOKEN_OK)
		return err;
	uint8_t a[BKV_TOKEN_STATE_MAC_BYTES], b[BKV_TOKEN_STATE_MAC_BYTES];
	t->last_rv = CKR_OK;
	err = bkv_token_state_mac(t, (const uint8_t *)probe_aad, sizeof(probe_aad) - 1, a);
	if (err == BKV_TOKEN_OK)
		err = bkv_token_state_mac(t, (const uint8_t *)probe_aad, sizeof(probe_aad) - 1, b);
	if (err == BKV_TOKEN_OK && sodium_memcmp(a, b, sizeof(a)) != 0)
		err = BKV_TOKEN_ERR_AUTH;
	if (err != BKV_TOKEN_OK)
		return fail(
		    t, err, why, why_len,
		    "the state-MAC key " BKV_TOKEN_STATE_MAC_LABEL
		    ": C_SignInit/C_Sign with CKM_SHA256_HMAC failed or is not deterministic");
	for (size_t i = 0; i < t->nloaded; i++) {
		const opaque_server_keys *keys = bkv_token_server_keys(t, t->loaded_suites[i]);
		uint8_t x[PROBE_BYTES], y[PROBE_BYTES];
		t->last_rv = CKR_OK;
		opaque_err oerr = keys->oprf_seed_expand(keys->ctx, (const uint8_t *)probe_aad,
		                                         sizeof(probe_aad) - 1, x, sizeof(x));
		if (oerr == OPAQUE_OK)
			oerr = keys->oprf_seed_expand(keys->ctx, (const uint8_t *)probe_aad,
			                              sizeof(probe_aad) - 1, y, sizeof(y));
		const bool same = oerr == OPAQUE_OK && sodium_memcmp(x, y, sizeof(x)) == 0;
		sodium_memzero(x, sizeof(x));
		sodium_memzero(y, sizeof(y));
		if (!same) {
			token_label(label, sizeof(label), "bkv-oprf-seed-", t->loaded_suites[i]);
			char what[160];
			snprintf(what, sizeof(what),
			         "the OPRF seed %s: C_SignInit/C_Sign with %s failed", label,
			         t->loaded_suites[i] == OPAQUE_SUITE_P256_SHA256
			             ? "CKM_SHA256_HMAC"
			             : "CKM_SHA512_HMAC");
			return fail(t, BKV_TOKEN_ERR_DEVICE, why, why_len, what);
		}
		if (t->loaded_suites[i] == OPAQUE_SUITE_P256_SHA256) {
			err = p256_ecdh_check(t, keys, why, why_len);
			if (err != BKV_TOKEN_OK)
				return err;
		}
	}
	return BKV_TOKEN_OK;
}
