/*
 * token_keys.c - the key ceremony (bkvd init) and seal-key rotation: creating, listing
 * and destroying the vault's keys in the token.
 *
 * Every secret key is created inside the token as sensitive and non-extractable, with
 * only the operations it is for: AES keys encrypt/decrypt, the OPRF seed HMAC-signs
 * (CKA_ALLOWED_MECHANISMS pins the HMAC mechanism), the P-256 private key derives.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "token_internal.h"

static const CK_BBOOL yes = CK_TRUE;
static const CK_BBOOL no = CK_FALSE;
#define BOOL_ATTR(type, value)                                                                     \
	{                                                                                          \
		(type), (void *)&(value), sizeof(CK_BBOOL)                                         \
	}

/* DER OID 1.2.840.10045.3.1.7 (prime256v1) */
static const uint8_t p256_ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

static bkv_token_err create_aes_key(bkv_token *t, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_ULONG len = 32;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    BOOL_ATTR(CKA_TOKEN, yes),
	    BOOL_ATTR(CKA_PRIVATE, yes),
	    BOOL_ATTR(CKA_SENSITIVE, yes),
	    BOOL_ATTR(CKA_EXTRACTABLE, no),
	    BOOL_ATTR(CKA_ENCRYPT, yes),
	    BOOL_ATTR(CKA_DECRYPT, yes),
	    BOOL_ATTR(CKA_SIGN, no),
	    BOOL_ATTR(CKA_VERIFY, no),
	    BOOL_ATTR(CKA_WRAP, no),
	    BOOL_ATTR(CKA_UNWRAP, no),
	    BOOL_ATTR(CKA_DERIVE, no),
	};
	CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE h;
	return token_call(
	    t, t->fn->C_GenerateKey(t->session, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h),
	    "C_GenerateKey with CKM_AES_KEY_GEN for %s", label);
}

/* A sign-only HMAC key of len bytes: an OPRF seed (Nh bytes, the suite's HMAC) or the
 * state-MAC key (32 bytes, HMAC-SHA256). */
static bkv_token_err create_hmac_key(bkv_token *t, const char *label, CK_ULONG len,
                                     CK_MECHANISM_TYPE hmac)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_MECHANISM_TYPE allowed[] = {hmac};
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed)},
	    BOOL_ATTR(CKA_TOKEN, yes),
	    BOOL_ATTR(CKA_PRIVATE, yes),
	    BOOL_ATTR(CKA_SENSITIVE, yes),
	    BOOL_ATTR(CKA_EXTRACTABLE, no),
	    BOOL_ATTR(CKA_SIGN, yes),
	    BOOL_ATTR(CKA_VERIFY, no),
	    BOOL_ATTR(CKA_ENCRYPT, no),
	    BOOL_ATTR(CKA_DECRYPT, no),
	    BOOL_ATTR(CKA_WRAP, no),
	    BOOL_ATTR(CKA_UNWRAP, no),
	    BOOL_ATTR(CKA_DERIVE, no),
	};
	CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE h;
	CK_ULONG n = sizeof(tmpl) / sizeof(tmpl[0]);
	CK_RV rv = t->fn->C_GenerateKey(t->session, &mech, tmpl, n, &h);
	if (rv == CKR_ATTRIBUTE_TYPE_INVALID) {
		/* A v2.20 module (openCryptoki 3.8) knows no CKA_ALLOWED_MECHANISMS: the key
		 * is still sign-only (CKA_SIGN alone) and non-extractable. */
		tmpl[4] = tmpl[n - 1];
		rv = t->fn->C_GenerateKey(t->session, &mech, tmpl, n - 1, &h);
	}
	return token_call(t, rv, "C_GenerateKey with CKM_GENERIC_SECRET_KEY_GEN for %s", label);
}

static bkv_token_err create_p256_key_pair(bkv_token *t, const char *label)
{
	CK_ATTRIBUTE pub[] = {
	    {CKA_EC_PARAMS, (void *)p256_ec_params, sizeof(p256_ec_params)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    BOOL_ATTR(CKA_TOKEN, yes),
	    BOOL_ATTR(CKA_VERIFY, no),
	    BOOL_ATTR(CKA_DERIVE, no),
	};
	CK_ATTRIBUTE priv[] = {
	    {CKA_LABEL, (void *)label, strlen(label)},
	    BOOL_ATTR(CKA_TOKEN, yes),
	    BOOL_ATTR(CKA_PRIVATE, yes),
	    BOOL_ATTR(CKA_SENSITIVE, yes),
	    BOOL_ATTR(CKA_EXTRACTABLE, no),
	    BOOL_ATTR(CKA_DERIVE, yes),
	    BOOL_ATTR(CKA_SIGN, no),
	    BOOL_ATTR(CKA_DECRYPT, no),
	    BOOL_ATTR(CKA_UNWRAP, no),
	};
	CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_OBJECT_HANDLE hpub, hpriv;
	return token_call(t,
	                  t->fn->C_GenerateKeyPair(t->session, &mech, pub,
	                                           sizeof(pub) / sizeof(pub[0]), priv,
	                                           sizeof(priv) / sizeof(priv[0]), &hpub, &hpriv),
	                  "C_GenerateKeyPair with CKM_EC_KEY_PAIR_GEN for %s", label);
}

static bkv_token_err create_data_object(bkv_token *t, const char *label, const uint8_t *value,
                                        size_t len, CK_OBJECT_HANDLE *h)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},  {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_VALUE, (void *)value, len}, BOOL_ATTR(CKA_TOKEN, yes),
	    BOOL_ATTR(CKA_PRIVATE, yes),     BOOL_ATTR(CKA_MODIFIABLE, no),
	};
	return token_call(
	    t, t->fn->C_CreateObject(t->session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), h),
	    "C_CreateObject of the data object %s", label);
}

/* Keeps a sealed AKE key: a new data object, or a new blob in the key store. old (with
 * old_h from token_read_sealed_ake_key) is the sealing it replaces, NULL for none. The new
 * one exists before the old one goes: a crash in between leaves two valid sealings. */
static bkv_token_err write_sealed_ake_key(bkv_token *t, const char *label, const uint8_t *old,
                                          size_t old_len, CK_OBJECT_HANDLE old_h,
                                          const uint8_t *sealed, size_t len)
{
	if (t->key_store.put != NULL) {
		const bkv_token_err err =
		    t->key_store.put(t->key_store.arg, label, old, old_len, sealed, len);
		if (err != BKV_TOKEN_OK) {
			t->last_rv = CKR_OK;
			snprintf(t->last_call, sizeof(t->last_call),
			         "storing the sealed key %s in the key store", label);
		}
		return err;
	}
	CK_OBJECT_HANDLE h;
	bkv_token_err err = create_data_object(t, label, sealed, len, &h);
	if (err == BKV_TOKEN_OK && old != NULL)
		err = token_call(t, t->fn->C_DestroyObject(t->session, old_h),
		                 "C_DestroyObject of the data object %s", label);
	return err;
}

/* An AKE key pair generated here, its private key kept only sealed (token_opaque.c). */
static bkv_token_err create_sealed_ake_key(bkv_token *t, opaque_suite_id suite, const char *label)
{
	uint8_t sk[32];
	uint8_t pk[OPAQUE_MAX_ELEMENT_BYTES];
	uint8_t sealed[AKE_SEALED_KEY_MAX];
	size_t sealed_len;
	bkv_token_err err = BKV_TOKEN_ERR_DEVICE;
	if (opaque_generate_ake_key_pair(suite, sk, sizeof(sk), pk,
	                                 opaque_suite_sizes(suite)->Npk) == OPAQUE_OK)
		err = token_seal_ake_key(t, suite, sk, sealed, &sealed_len);
	sodium_memzero(sk, sizeof(sk));
	if (err == BKV_TOKEN_OK)
		err =
		    write_sealed_ake_key(t, label, NULL, 0, CK_INVALID_HANDLE, sealed, sealed_len);
	return err;
}

/* ---- Checking keys that exist (made by an earlier init or by the vendor's tool) ---- */

/* Says why a key is unfit in last_call and returns BKV_TOKEN_ERR_KEY_UNFIT. */
static bkv_token_err unfit(bkv_token *t, const char *label, const char *problem)
{
	t->last_rv = CKR_OK;
	snprintf(t->last_call, sizeof(t->last_call), "%s %s", label, problem);
	return BKV_TOKEN_ERR_KEY_UNFIT;
}

/* The protection every secret or private key of the vault must have. */
static const char *protection_problem(CK_BBOOL sensitive, CK_BBOOL extractable)
{
	if (sensitive != CK_TRUE)
		return "is not sensitive (CKA_SENSITIVE must be true)";
	if (extractable != CK_FALSE)
		return "is extractable (CKA_EXTRACTABLE must be false)";
	return NULL;
}

/* The HMAC key type a vendor's tool may give a key for mechanism hmac, besides
 * CKK_GENERIC_SECRET. */
static CK_KEY_TYPE hmac_key_type(CK_MECHANISM_TYPE hmac)
{
	return hmac == CKM_SHA512_HMAC ? CKK_SHA512_HMAC : CKK_SHA256_HMAC;
}

/* Checks the secret key labelled label: an AES-256 key that encrypts and decrypts
 * (hmac_len 0), or an HMAC key of hmac_len bytes that signs with mechanism hmac. */
static bkv_token_err check_secret_key(bkv_token *t, const char *label, CK_ULONG hmac_len,
                                      CK_MECHANISM_TYPE hmac)
{
	CK_OBJECT_HANDLE h;
	bkv_token_err err = token_find(t, CKO_SECRET_KEY, label, &h);
	if (err != BKV_TOKEN_OK)
		return err;
	const bool aes = hmac_len == 0;
	CK_KEY_TYPE type = 0;
	CK_ULONG len = 0;
	CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, use1 = CK_FALSE, use2 = CK_FALSE;
	CK_ATTRIBUTE attrs[] = {
	    {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
	    {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	    {aes ? CKA_ENCRYPT : CKA_SIGN, &use1, sizeof(use1)},
	    {aes ? CKA_DECRYPT : CKA_SIGN, &use2, sizeof(use2)},
	};
	err = token_call(
	    t, t->fn->C_GetAttributeValue(t->session, h, attrs, sizeof(attrs) / sizeof(attrs[0])),
	    "C_GetAttributeValue of %s", label);
	if (err != BKV_TOKEN_OK)
		return err;
	const char *problem = protection_problem(sensitive, extractable);
	if (aes && type != CKK_AES)
		problem = "is not an AES key";
	else if (!aes && type != CKK_GENERIC_SECRET && type != hmac_key_type(hmac))
		problem = hmac == CKM_SHA512_HMAC
		              ? "is not an HMAC key (CKK_GENERIC_SECRET or CKK_SHA512_HMAC)"
		              : "is not an HMAC key (CKK_GENERIC_SECRET or CKK_SHA256_HMAC)";
	else if (aes && len != 32)
		problem = "is not 32 bytes long (AES-256)";
	else if (!aes && len != hmac_len)
		problem = hmac_len == 64 ? "is not 64 bytes long" : "is not 32 bytes long";
	else if (use1 != CK_TRUE || use2 != CK_TRUE)
		problem = aes ? "cannot encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT)"
		              : "cannot sign (CKA_SIGN)";
	return problem != NULL ? unfit(t, label, problem) : BKV_TOKEN_OK;
}

/* Checks the P-256 private key labelled label: on the curve, derives, sensitive and
 * non-extractable. (Its public half is read when the suite loads.) */
static bkv_token_err check_p256_private_key(bkv_token *t, const char *label)
{
	CK_OBJECT_HANDLE h;
	bkv_token_err err = token_find(t, CKO_PRIVATE_KEY, label, &h);
	if (err != BKV_TOKEN_OK)
		return err;
	CK_KEY_TYPE type = 0;
	uint8_t params[32];
	CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, derive = CK_FALSE;
	CK_ATTRIBUTE attrs[] = {
	    {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_EC_PARAMS, params, sizeof(params)},
	    {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
	    {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	    {CKA_DERIVE, &derive, sizeof(derive)},
	};
	err = token_call(
	    t, t->fn->C_GetAttributeValue(t->session, h, attrs, sizeof(attrs) / sizeof(attrs[0])),
	    "C_GetAttributeValue of %s", label);
	if (err != BKV_TOKEN_OK)
		return err;
	const char *problem = protection_problem(sensitive, extractable);
	if (type != CKK_EC || attrs[1].ulValueLen != sizeof(p256_ec_params) ||
	    memcmp(params, p256_ec_params, sizeof(p256_ec_params)) != 0)
		problem = "is not a P-256 (prime256v1) EC key";
	else if (derive != CK_TRUE)
		problem = "cannot derive (CKA_DERIVE must be true for ECDH)";
	return problem != NULL ? unfit(t, label, problem) : BKV_TOKEN_OK;
}

/* An AES key that seals (label "bkv-seal-N" or "bkv-ticket-1"). On a token without GCM its
 * HMAC key is made first, so a crash in between leaves a spare HMAC key, never an AES key
 * that would be taken for a GCM one. */
static bkv_token_err create_sealing_key(bkv_token *t, const char *label)
{
	bkv_token_err err = BKV_TOKEN_OK;
	if (!token_has_gcm(t)) {
		char mac_label[BKV_TOKEN_LABEL_MAX + 8];
		CK_OBJECT_HANDLE h;
		token_mac_label(mac_label, sizeof(mac_label), label);
		err = token_find(t, CKO_SECRET_KEY, mac_label, &h);
		if (err == BKV_TOKEN_ERR_KEY_MISSING)
			err = create_hmac_key(t, mac_label, 32, CKM_SHA256_HMAC);
	}
	return err == BKV_TOKEN_OK ? create_aes_key(t, label) : err;
}

/* Destroys every token object of class with label. */
static bkv_token_err destroy_all(bkv_token *t, CK_OBJECT_CLASS cls, const char *label)
{
	for (;;) {
		CK_OBJECT_HANDLE h;
		bkv_token_err err = token_find(t, cls, label, &h);
		if (err == BKV_TOKEN_ERR_KEY_MISSING)
			return BKV_TOKEN_OK;
		if (err != BKV_TOKEN_OK)
			return err;
		err = token_rv(t, t->fn->C_DestroyObject(t->session, h));
		if (err != BKV_TOKEN_OK)
			return err;
	}
}

/* Destroys a seal key's token objects: the AES key and its HMAC key, if any. */
static bkv_token_err destroy_seal_key(bkv_token *t, const token_seal_key *key)
{
	bkv_token_err err = token_rv(t, t->fn->C_DestroyObject(t->session, key->handle));
	if (err == BKV_TOKEN_OK && key->mac != CK_INVALID_HANDLE)
		err = token_rv(t, t->fn->C_DestroyObject(t->session, key->mac));
	return err;
}

static bkv_token_err destroy_everything(bkv_token *t, const opaque_suite_id *suites, size_t nsuites)
{
	token_seal_key keys[TOKEN_MAX_SEAL_KEYS];
	size_t count;
	bkv_token_err err = token_list_seal_keys(t, keys, TOKEN_MAX_SEAL_KEYS, &count);
	for (size_t i = 0; err == BKV_TOKEN_OK && i < count; i++)
		err = destroy_seal_key(t, &keys[i]);
	if (err == BKV_TOKEN_OK)
		err = destroy_all(t, CKO_SECRET_KEY, "bkv-ticket-1");
	if (err == BKV_TOKEN_OK)
		err = destroy_all(t, CKO_SECRET_KEY, "bkv-ticket-mac-1");
	if (err == BKV_TOKEN_OK)
		err = destroy_all(t, CKO_SECRET_KEY, BKV_TOKEN_STATE_MAC_LABEL);
	for (size_t i = 0; err == BKV_TOKEN_OK && i < nsuites; i++) {
		char label[64];
		token_label(label, sizeof(label), "bkv-oprf-seed-", suites[i]);
		err = destroy_all(t, CKO_SECRET_KEY, label);
		token_label(label, sizeof(label), "bkv-ake-", suites[i]);
		if (err == BKV_TOKEN_OK)
			err = destroy_all(t, CKO_PRIVATE_KEY, label);
		if (err == BKV_TOKEN_OK)
			err = destroy_all(t, CKO_PUBLIC_KEY, label);
		if (err == BKV_TOKEN_OK)
			err = destroy_all(t, CKO_DATA, label);
		if (err == BKV_TOKEN_OK && t->key_store.remove != NULL)
			err = t->key_store.remove(t->key_store.arg, label);
	}
	return err;
}

/* Makes the token's seal keys usable by the AEAD helpers (token objects, no copies). */
static bkv_token_err use_token_seal_keys(bkv_token *t)
{
	size_t count;
	bkv_token_err err = token_list_seal_keys(t, t->seal, TOKEN_MAX_SEAL_KEYS, &count);
	t->nseal = err == BKV_TOKEN_OK ? count : 0;
	return err;
}

/* hmac_len 0: an AES-256 key; otherwise an HMAC key of hmac_len bytes for mechanism hmac.
 * Checks the key if it exists; creates it if not, unless adopting. */
static bkv_token_err ensure_secret_key(bkv_token *t, const char *label, CK_ULONG hmac_len,
                                       CK_MECHANISM_TYPE hmac, bkv_token_init_mode mode,
                                       bkv_token_report_fn report, void *arg)
{
	bkv_token_err err = check_secret_key(t, label, hmac_len, hmac);
	if (err == BKV_TOKEN_OK) {
		report(arg, label, mode == BKV_TOKEN_INIT_ADOPT ? "adopted" : "exists", NULL, 0);
		return BKV_TOKEN_OK;
	}
	if (err != BKV_TOKEN_ERR_KEY_MISSING || mode == BKV_TOKEN_INIT_ADOPT)
		return err;
	err = hmac_len ? create_hmac_key(t, label, hmac_len, hmac) : create_sealing_key(t, label);
	if (err == BKV_TOKEN_OK)
		report(arg, label, "created", NULL, 0);
	return err;
}

/* Checks the HMAC key that pairs with the AES key aes_label under CBC_HMAC, if there is one;
 * on a token without GCM there must be one. */
static bkv_token_err check_mac_partner(bkv_token *t, const char *aes_label)
{
	char mac_label[BKV_TOKEN_LABEL_MAX + 8];
	token_mac_label(mac_label, sizeof(mac_label), aes_label);
	bkv_token_err err = check_secret_key(t, mac_label, 32, CKM_SHA256_HMAC);
	if (err == BKV_TOKEN_ERR_KEY_MISSING && token_has_gcm(t))
		return BKV_TOKEN_OK; /* a GCM key */
	if (err == BKV_TOKEN_ERR_KEY_MISSING)
		snprintf(t->last_call, sizeof(t->last_call),
		         "no object labelled %s (without CKM_AES_GCM, %s seals with AES-CBC and "
		         "this HMAC key)",
		         mac_label, aes_label);
	return err;
}

/* Checks every seal key the token holds: the newest seals, the others still open. */
static bkv_token_err check_seal_keys(bkv_token *t)
{
	bkv_token_err err = BKV_TOKEN_OK;
	for (size_t i = 0; err == BKV_TOKEN_OK && i < t->nseal; i++) {
		char label[32];
		snprintf(label, sizeof(label), "bkv-seal-%u", t->seal[i].version);
		err = check_secret_key(t, label, 0, 0);
		if (err == BKV_TOKEN_OK)
			err = check_mac_partner(t, label);
	}
	return err;
}

/* The P-256 AKE key pair in the token: checked if it exists, created if not (unless
 * adopting). */
static bkv_token_err ensure_p256_key_pair(bkv_token *t, const char *label, bkv_token_init_mode mode,
                                          const char **what)
{
	bkv_token_err err = check_p256_private_key(t, label);
	*what = mode == BKV_TOKEN_INIT_ADOPT ? "adopted" : "exists";
	if (err == BKV_TOKEN_ERR_KEY_MISSING && mode != BKV_TOKEN_INIT_ADOPT) {
		err = create_p256_key_pair(t, label);
		*what = "created";
	}
	return err;
}

bkv_token_err bkv_token_create_keys(bkv_token *t, const opaque_suite_id *suites, size_t nsuites,
                                    bkv_token_init_mode mode, bkv_token_report_fn report,
                                    void *report_arg)
{
	if (t == NULL || suites == NULL || nsuites == 0 || nsuites > TOKEN_NUM_SUITES ||
	    report == NULL || mode > BKV_TOKEN_INIT_ADOPT)
		return BKV_TOKEN_ERR_ARGUMENT;
	for (size_t i = 0; i < nsuites; i++) {
		if (opaque_suite_sizes(suites[i]) == NULL)
			return BKV_TOKEN_ERR_ARGUMENT;
	}
	const bool adopt = mode == BKV_TOKEN_INIT_ADOPT;
	bkv_token_err err = BKV_TOKEN_OK;
	if (mode == BKV_TOKEN_INIT_REPLACE)
		err = destroy_everything(t, suites, nsuites);

	/* Record-sealing key: keep the newest version if any exists. */
	if (err == BKV_TOKEN_OK)
		err = use_token_seal_keys(t);
	if (err == BKV_TOKEN_OK && t->nseal == 0 && !adopt) {
		err = create_sealing_key(t, "bkv-seal-1");
		if (err == BKV_TOKEN_OK) {
			report(report_arg, "bkv-seal-1", "created", NULL, 0);
			err = use_token_seal_keys(t);
		}
	} else if (err == BKV_TOKEN_OK && t->nseal == 0) {
		CK_OBJECT_HANDLE none;
		err = token_find(t, CKO_SECRET_KEY, "bkv-seal-1", &none); /* names the label */
	} else if (err == BKV_TOKEN_OK) {
		err = check_seal_keys(t);
		char label[32];
		snprintf(label, sizeof(label), "bkv-seal-%u", bkv_token_seal_version(t));
		if (err == BKV_TOKEN_OK)
			report(report_arg, label, adopt ? "adopted" : "exists", NULL, 0);
	}
	if (err == BKV_TOKEN_OK)
		err = ensure_secret_key(t, "bkv-ticket-1", 0, 0, mode, report, report_arg);
	if (err == BKV_TOKEN_OK)
		err = check_mac_partner(t, "bkv-ticket-1");
	if (err == BKV_TOKEN_OK)
		err = ensure_secret_key(t, BKV_TOKEN_STATE_MAC_LABEL, BKV_TOKEN_STATE_MAC_BYTES,
		                        CKM_SHA256_HMAC, mode, report, report_arg);

	for (size_t i = 0; err == BKV_TOKEN_OK && i < nsuites; i++) {
		char label[64];
		token_label(label, sizeof(label), "bkv-oprf-seed-", suites[i]);
		err = ensure_secret_key(t, label, opaque_suite_sizes(suites[i])->Nh,
		                        suites[i] == OPAQUE_SUITE_P256_SHA256 ? CKM_SHA256_HMAC
		                                                              : CKM_SHA512_HMAC,
		                        mode, report, report_arg);
		if (err != BKV_TOKEN_OK)
			break;

		token_label(label, sizeof(label), "bkv-ake-", suites[i]);
		const bool sealed = token_ake_sealed(t, suites[i]);
		CK_OBJECT_HANDLE h;
		uint8_t blob[AKE_SEALED_KEY_MAX + 1];
		size_t blob_len;
		/* The other custody of the same key would be a different server key: every
		 * record registered under it would stop opening. */
		err = sealed ? token_find(t, CKO_PRIVATE_KEY, label, &h)
		             : token_read_sealed_ake_key(t, suites[i], &h, blob, &blob_len);
		if (err == BKV_TOKEN_OK) {
			report(report_arg, label,
			       sealed ? "exists as a token key pair: keep [token] p256_ake = token"
			              : "exists as a sealed key: keep [token] p256_ake = sealed",
			       NULL, 0);
			err = BKV_TOKEN_ERR_ARGUMENT;
			break;
		}
		const char *what = adopt ? "adopted" : "exists";
		if (err == BKV_TOKEN_ERR_KEY_MISSING && !sealed) {
			err = ensure_p256_key_pair(t, label, mode, &what);
		} else if (err == BKV_TOKEN_ERR_KEY_MISSING) {
			/* bkv's own sealed bytes: made here even when adopting. */
			err = token_read_sealed_ake_key(t, suites[i], &h, blob, &blob_len);
			if (err == BKV_TOKEN_ERR_KEY_MISSING) {
				err = create_sealed_ake_key(t, suites[i], label);
				what = "created";
			}
		}
		/* Load the suite to report its public key, as clients will see it. */
		token_suite_keys sk = {.token = t, .suite = suites[i]};
		if (err == BKV_TOKEN_OK)
			err = token_suite_keys_load(t, &sk);
		if (err == BKV_TOKEN_OK)
			report(report_arg, label, what, sk.keys.server_public_key,
			       opaque_suite_sizes(suites[i])->Npk);
		token_suite_keys_clear(&sk);
	}
	t->nseal = 0;
	return err;
}

bkv_token_err bkv_token_seal_versions(bkv_token *t, uint32_t *versions, size_t max, size_t *count)
{
	if (t == NULL || versions == NULL || count == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	token_seal_key keys[TOKEN_MAX_SEAL_KEYS];
	size_t n;
	bkv_token_err err = token_list_seal_keys(t, keys, TOKEN_MAX_SEAL_KEYS, &n);
	if (err != BKV_TOKEN_OK)
		return err;
	if (n > max)
		return BKV_TOKEN_ERR_ARGUMENT;
	for (size_t i = 0; i < n; i++)
		versions[i] = keys[i].version;
	*count = n;
	return BKV_TOKEN_OK;
}

bkv_token_err bkv_token_rotate_seal_key(bkv_token *t, uint32_t *version)
{
	if (t == NULL || version == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	token_seal_key keys[TOKEN_MAX_SEAL_KEYS];
	size_t n;
	bkv_token_err err = token_list_seal_keys(t, keys, TOKEN_MAX_SEAL_KEYS, &n);
	if (err != BKV_TOKEN_OK)
		return err;
	if (n == 0)
		return BKV_TOKEN_ERR_KEY_MISSING;
	if (n == TOKEN_MAX_SEAL_KEYS || keys[n - 1].version == UINT32_MAX)
		return BKV_TOKEN_ERR_ARGUMENT;
	const uint32_t next = keys[n - 1].version + 1;
	char label[32];
	snprintf(label, sizeof(label), "bkv-seal-%u", next);
	err = create_sealing_key(t, label);
	if (err == BKV_TOKEN_OK)
		*version = next;
	return err;
}

static const opaque_suite_id all_suites[] = {OPAQUE_SUITE_P256_SHA256,
                                             OPAQUE_SUITE_RISTRETTO255_SHA512};

bkv_token_err bkv_token_delete_seal_key(bkv_token *t, uint32_t version)
{
	if (t == NULL || version == 0)
		return BKV_TOKEN_ERR_ARGUMENT;
	token_seal_key keys[TOKEN_MAX_SEAL_KEYS];
	size_t n;
	bkv_token_err err = token_list_seal_keys(t, keys, TOKEN_MAX_SEAL_KEYS, &n);
	if (err != BKV_TOKEN_OK)
		return err;
	if (n > 0 && keys[n - 1].version == version)
		return BKV_TOKEN_ERR_KEY_IN_USE;
	for (size_t i = 0; i < sizeof(all_suites) / sizeof(all_suites[0]); i++) {
		CK_OBJECT_HANDLE h;
		uint8_t sealed[AKE_SEALED_KEY_MAX + 1];
		size_t len;
		err = token_read_sealed_ake_key(t, all_suites[i], &h, sealed, &len);
		if (err == BKV_TOKEN_ERR_KEY_MISSING)
			continue;
		if (err != BKV_TOKEN_OK)
			return err;
		if (token_ake_key_seal_version(sealed, len) == version)
			return BKV_TOKEN_ERR_KEY_IN_USE;
	}
	for (size_t i = 0; i < n; i++) {
		if (keys[i].version == version)
			return destroy_seal_key(t, &keys[i]);
	}
	return BKV_TOKEN_ERR_KEY_MISSING;
}

bkv_token_err bkv_token_reseal_ake_key(bkv_token *t, bool *resealed)
{
	if (t == NULL || resealed == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	*resealed = false;
	bkv_token_err err = BKV_TOKEN_OK;
	for (size_t i = 0; err == BKV_TOKEN_OK && i < sizeof(all_suites) / sizeof(all_suites[0]);
	     i++) {
		const opaque_suite_id suite = all_suites[i];
		CK_OBJECT_HANDLE old;
		uint8_t sealed[AKE_SEALED_KEY_MAX + 1], resealed_blob[AKE_SEALED_KEY_MAX];
		size_t len, resealed_len;
		uint8_t sk[32];
		err = token_read_sealed_ake_key(t, suite, &old, sealed, &len);
		if (err == BKV_TOKEN_ERR_KEY_MISSING) {
			err = BKV_TOKEN_OK;
			continue;
		}
		if (err != BKV_TOKEN_OK ||
		    token_ake_key_seal_version(sealed, len) == bkv_token_seal_version(t))
			continue;
		err = token_unseal_ake_key(t, suite, sealed, len, sk);
		if (err == BKV_TOKEN_OK)
			err = token_seal_ake_key(t, suite, sk, resealed_blob, &resealed_len);
		sodium_memzero(sk, sizeof(sk));
		char label[64];
		token_label(label, sizeof(label), "bkv-ake-", suite);
		if (err == BKV_TOKEN_OK)
			err = write_sealed_ake_key(t, label, sealed, len, old, resealed_blob,
			                           resealed_len);
		if (err == BKV_TOKEN_OK)
			*resealed = true;
	}
	return err;
}
