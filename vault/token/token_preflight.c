/*
 * token_preflight.c - before bkvd reports ready (init, status, serve), one real round trip
 * of every operation the configuration needs, on the keys it loaded: seal and open under
 * the newest seal key and the ticket key in their scheme (with the IV the token says it
 * used), the state MAC, each suite's OPRF seed HMAC, and for P-256 an ECDH whose result is
 * checked against software. A token that cannot do one of them is refused at start, with the key,
 * the PKCS#11 functions, the mechanism and the CKR name, instead of failing every request later
 * (or, worse, sealing records that never open again).
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
	uint8_t probe[PROBE_BYTES], sealed[PROBE_BYTES + BKV_TOKEN_BOX_OVERHEAD_MAX];
	uint8_t opened[PROBE_BYTES];
	size_t sealed_len = 0, opened_len = 0;
	const char *how = bkv_token_key_scheme(t, key, version) == BKV_TOKEN_SCHEME_CBC_HMAC
	                      ? "CKM_AES_CBC_PAD and CKM_SHA256_HMAC (C_SignInit/C_SignUpdate/"
	                        "C_SignFinal)"
	                      : "CKM_AES_GCM (12- or 16-byte IV, 128-bit tag)";
	char what[320];
	randombytes_buf(probe, sizeof(probe));
	t->last_rv = CKR_OK;
	bkv_token_err err =
	    bkv_token_seal_box(t, key, version, (const uint8_t *)probe_aad, sizeof(probe_aad) - 1,
	                       probe, sizeof(probe), sealed, sizeof(sealed), &sealed_len);
	if (err != BKV_TOKEN_OK) {
		snprintf(what, sizeof(what),
		         "sealing with %s: C_EncryptInit/C_Encrypt with %s failed", label, how);
		return fail(t, err, why, why_len, what);
	}
	t->last_rv = CKR_OK;
	err = bkv_token_open_box(t, key, version, (const uint8_t *)probe_aad, sizeof(probe_aad) - 1,
	                         sealed, sealed_len, opened, sizeof(opened), &opened_len);
	if (err == BKV_TOKEN_OK &&
	    (opened_len != sizeof(probe) || sodium_memcmp(opened, probe, sizeof(probe)) != 0))
		err = BKV_TOKEN_ERR_AUTH;
	sodium_memzero(opened, sizeof(opened));
	if (err != BKV_TOKEN_OK) {
		snprintf(what, sizeof(what),
		         "a seal under %s does not open again with the IV the token reported "
		         "(C_DecryptInit/C_Decrypt with %s)",
		         label, how);
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
		                  "CKM_ECDH1_DERIVE and a readable CKA_VALUE failed (a token whose "
		                  "ECDH results cannot be read: set [token] p256_ake = sealed)");
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

/* ---- The capability table and the custody plan ---- */

static const struct {
	CK_MECHANISM_TYPE type;
	const char *name;
	const char *use;
} mechanisms[] = {
    {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", "create seal and ticket keys"},
    {CKM_AES_GCM, "CKM_AES_GCM", "seal (else CBC-PAD + HMAC)"},
    {CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD", "seal without GCM"},
    {CKM_GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN", "create HMAC keys"},
    {CKM_SHA256_HMAC, "CKM_SHA256_HMAC", "state MAC, P-256 OPRF seed, CBC seals"},
    {CKM_SHA512_HMAC, "CKM_SHA512_HMAC", "ristretto255 OPRF seed"},
    {CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN", "P-256 AKE key (p256_ake = token)"},
    {CKM_ECDH1_DERIVE, "CKM_ECDH1_DERIVE", "P-256 AKE (p256_ake = token)"},
};

static void flags_text(CK_FLAGS f, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s%s%s%s", f & CKF_ENCRYPT ? " encrypt" : "",
	         f & CKF_DECRYPT ? " decrypt" : "", f & CKF_SIGN ? " sign" : "",
	         f & CKF_DERIVE ? " derive" : "", f & CKF_GENERATE ? " generate" : "",
	         f & CKF_GENERATE_KEY_PAIR ? " generate-key-pair" : "");
}

static void describe_aead_key(bkv_token *t, bkv_token_line_fn line, void *arg, const char *what,
                              const char *label, bkv_token_aead_key key, uint32_t version)
{
	char text[256], mac[48];
	token_mac_label(mac, sizeof(mac), label);
	if (bkv_token_key_scheme(t, key, version) == BKV_TOKEN_SCHEME_CBC_HMAC)
		snprintf(text, sizeof(text),
		         "  %-16s %s: AES-256-CBC-PAD + HMAC-SHA256 (%s), in the token", what,
		         label, mac);
	else
		snprintf(text, sizeof(text), "  %-16s %s: AES-256-GCM in the token, %lu-byte IV%s",
		         what, label, (unsigned long)t->gcm_iv_len,
		         t->gcm_iv_chosen ? " chosen by the token" : "");
	line(arg, text);
}

void bkv_token_describe_capabilities(bkv_token *t, bkv_token_line_fn line, void *arg)
{
	if (t == NULL || line == NULL)
		return;
	char text[256], flags[96];
	line(arg, "capabilities:");
	for (size_t i = 0; i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++) {
		CK_MECHANISM_INFO info;
		const bool listed =
		    t->fn->C_GetMechanismInfo(t->slot, mechanisms[i].type, &info) == CKR_OK;
		if (listed)
			flags_text(info.flags, flags, sizeof(flags));
		snprintf(text, sizeof(text), "  %-28s %-40s %s%s", mechanisms[i].name,
		         mechanisms[i].use, listed ? "yes:" : "no", listed ? flags : "");
		line(arg, text);
	}
}

void bkv_token_describe_custody(bkv_token *t, bkv_token_line_fn line, void *arg)
{
	if (t == NULL || line == NULL || t->nseal == 0 || !t->ticket_loaded)
		return; /* keys not loaded: no plan to show */
	char text[256], label[64];
	line(arg, "custody:");
	const uint32_t newest = bkv_token_seal_version(t);
	snprintf(label, sizeof(label), "bkv-seal-%u", newest);
	describe_aead_key(t, line, arg, "records", label, BKV_TOKEN_KEY_SEAL, newest);
	describe_aead_key(t, line, arg, "tickets", "bkv-ticket-1", BKV_TOKEN_KEY_TICKET, 1);
	snprintf(text, sizeof(text), "  %-16s %s: HMAC-SHA256 in the token", "record state",
	         BKV_TOKEN_STATE_MAC_LABEL);
	line(arg, text);
	for (size_t i = 0; i < t->nloaded; i++) {
		const opaque_suite_id suite = t->loaded_suites[i];
		const char *name = token_suite_label_part(suite);
		token_label(label, sizeof(label), "bkv-oprf-seed-", suite);
		snprintf(text, sizeof(text), "  %-16s %s: %s in the token", "OPRF seed", label,
		         suite == OPAQUE_SUITE_P256_SHA256 ? "HMAC-SHA256" : "HMAC-SHA512");
		line(arg, text);
		token_label(label, sizeof(label), "bkv-ake-", suite);
		if (token_ake_sealed(t, suite))
			snprintf(text, sizeof(text),
			         "  %-16s %s: generated by bkvd, sealed by the token (%s), "
			         "unsealed into locked memory; %s DH in software",
			         "AKE key", label,
			         t->key_store.get != NULL ? "kept in the key store" : "data object",
			         name);
		else
			snprintf(text, sizeof(text),
			         "  %-16s %s: EC key pair in the token; CKM_ECDH1_DERIVE",
			         "AKE key", label);
		line(arg, text);
	}
	snprintf(text, sizeof(text), "  %-16s %s", "session copies",
	         t->copy_refused ? "no: C_CopyObject refused, token objects used directly "
	                           "(2-3x slower on SoftHSM)"
	                         : "yes (C_CopyObject)");
	line(arg, text);
}

bkv_token_err bkv_token_check_mechanisms(bkv_token *t, const opaque_suite_id *suites,
                                         size_t nsuites, char *why, size_t why_len)
{
	if (t == NULL || suites == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	const char *missing = NULL;
	if (!token_mechanism_listed(t, CKM_SHA256_HMAC, CKF_SIGN))
		missing = "CKM_SHA256_HMAC (sign), for the state MAC";
	else if (!token_has_gcm(t) &&
	         !token_mechanism_listed(t, CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT))
		missing = "CKM_AES_GCM or CKM_AES_CBC_PAD (encrypt, decrypt), for sealing";
	for (size_t i = 0; missing == NULL && i < nsuites; i++) {
		if (suites[i] == OPAQUE_SUITE_RISTRETTO255_SHA512 &&
		    !token_mechanism_listed(t, CKM_SHA512_HMAC, CKF_SIGN))
			missing = "CKM_SHA512_HMAC (sign), for the ristretto255-sha512 OPRF seed; "
			          "enable only p256-sha256 in [opaque] suites";
		else if (suites[i] == OPAQUE_SUITE_P256_SHA256 && !token_ake_sealed(t, suites[i]) &&
		         !token_mechanism_listed(t, CKM_ECDH1_DERIVE, CKF_DERIVE))
			missing =
			    "CKM_ECDH1_DERIVE (derive), for the P-256 AKE key in the token; set "
			    "[token] p256_ake = sealed";
	}
	if (missing == NULL)
		return BKV_TOKEN_OK;
	snprintf(why, why_len, "token \"%s\" does not list %s", t->label, missing);
	return BKV_TOKEN_ERR_ARGUMENT;
}
