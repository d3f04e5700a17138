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
	return token_rv(
	    t, t->fn->C_GenerateKey(t->session, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h));
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
	return token_rv(t, rv);
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
	return token_rv(t, t->fn->C_GenerateKeyPair(t->session, &mech, pub,
	                                            sizeof(pub) / sizeof(pub[0]), priv,
	                                            sizeof(priv) / sizeof(priv[0]), &hpub, &hpriv));
}

static bkv_token_err create_r255_key(bkv_token *t, const char *label)
{
	uint8_t sk[32];
	uint8_t sealed[R255_SEALED_KEY_BYTES];
	uint8_t pk[32];
	bkv_token_err err = BKV_TOKEN_ERR_DEVICE;
	if (opaque_generate_ake_key_pair(OPAQUE_SUITE_RISTRETTO255_SHA512, sk, sizeof(sk), pk,
	                                 sizeof(pk)) != OPAQUE_OK)
		goto done;
	err = token_seal_r255_key(t, sk, sealed);
	if (err != BKV_TOKEN_OK)
		goto done;
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},      {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_VALUE, sealed, sizeof(sealed)}, BOOL_ATTR(CKA_TOKEN, yes),
	    BOOL_ATTR(CKA_PRIVATE, yes),         BOOL_ATTR(CKA_MODIFIABLE, no),
	};
	CK_OBJECT_HANDLE h;
	err = token_rv(t,
	               t->fn->C_CreateObject(t->session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h));
done:
	sodium_memzero(sk, sizeof(sk));
	return err;
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

static bkv_token_err destroy_everything(bkv_token *t, const opaque_suite_id *suites, size_t nsuites)
{
	token_seal_key keys[TOKEN_MAX_SEAL_KEYS];
	size_t count;
	bkv_token_err err = token_list_seal_keys(t, keys, TOKEN_MAX_SEAL_KEYS, &count);
	for (size_t i = 0; err == BKV_TOKEN_OK && i < count; i++)
		err = token_rv(t, t->fn->C_DestroyObject(t->session, keys[i].handle));
	if (err == BKV_TOKEN_OK)
		err = destroy_all(t, CKO_SECRET_KEY, "bkv-ticket-1");
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

/* hmac_len 0: an AES-256 key; otherwise an HMAC key of hmac_len bytes for mechanism hmac. */
static bkv_token_err ensure_secret_key(bkv_token *t, const char *label, CK_ULONG hmac_len,
                                       CK_MECHANISM_TYPE hmac, bkv_token_report_fn report,
                                       void *arg)
{
	CK_OBJECT_HANDLE h;
	bkv_token_err err = token_find(t, CKO_SECRET_KEY, label, &h);
	if (err == BKV_TOKEN_OK) {
		report(arg, label, "exists", NULL, 0);
		return BKV_TOKEN_OK;
	}
	if (err != BKV_TOKEN_ERR_KEY_MISSING)
		return err;
	err = hmac_len ? create_hmac_key(t, label, hmac_len, hmac) : create_aes_key(t, label);
	if (err == BKV_TOKEN_OK)
		report(arg, label, "created", NULL, 0);
	return err;
}

bkv_token_err bkv_token_create_keys(bkv_token *t, const opaque_suite_id *suites, size_t nsuites,
                                    bool replace, bkv_token_report_fn report, void *report_arg)
{
	if (t == NULL || suites == NULL || nsuites == 0 || nsuites > TOKEN_NUM_SUITES ||
	    report == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	for (size_t i = 0; i < nsuites; i++) {
		if (opaque_suite_sizes(suites[i]) == NULL)
			return BKV_TOKEN_ERR_ARGUMENT;
	}
	bkv_token_err err = BKV_TOKEN_OK;
	if (replace)
		err = destroy_everything(t, suites, nsuites);

	/* Record-sealing key: keep the newest version if any exists. */
	if (err == BKV_TOKEN_OK)
		err = use_token_seal_keys(t);
	if (err == BKV_TOKEN_OK && t->nseal == 0) {
		err = create_aes_key(t, "bkv-seal-1");
		if (err == BKV_TOKEN_OK) {
			report(report_arg, "bkv-seal-1", "created", NULL, 0);
			err = use_token_seal_keys(t);
		}
	} else if (err == BKV_TOKEN_OK) {
		char label[32];
		snprintf(label, sizeof(label), "bkv-seal-%u", bkv_token_seal_version(t));
		report(report_arg, label, "exists", NULL, 0);
	}
	if (err == BKV_TOKEN_OK)
		err = ensure_secret_key(t, "bkv-ticket-1", 0, 0, report, report_arg);
	if (err == BKV_TOKEN_OK)
		err = ensure_secret_key(t, BKV_TOKEN_STATE_MAC_LABEL, BKV_TOKEN_STATE_MAC_BYTES,
		                        CKM_SHA256_HMAC, report, report_arg);

	for (size_t i = 0; err == BKV_TOKEN_OK && i < nsuites; i++) {
		char label[64];
		token_label(label, sizeof(label), "bkv-oprf-seed-", suites[i]);
		err = ensure_secret_key(t, label, opaque_suite_sizes(suites[i])->Nh,
		                        suites[i] == OPAQUE_SUITE_P256_SHA256 ? CKM_SHA256_HMAC
		                                                              : CKM_SHA512_HMAC,
		                        report, report_arg);
		if (err != BKV_TOKEN_OK)
			break;

		token_label(label, sizeof(label), "bkv-ake-", suites[i]);
		const bool p256 = suites[i] == OPAQUE_SUITE_P256_SHA256;
		CK_OBJECT_HANDLE h;
		err = token_find(t, p256 ? CKO_PRIVATE_KEY : CKO_DATA, label, &h);
		const char *what = "exists";
		if (err == BKV_TOKEN_ERR_KEY_MISSING) {
			err = p256 ? create_p256_key_pair(t, label) : create_r255_key(t, label);
			what = "created";
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
	err = create_aes_key(t, label);
	if (err == BKV_TOKEN_OK)
		*version = next;
	return err;
}

/* The seal-key version that seals the ristretto255 AKE key, or 0 if there is none. */
static bkv_token_err r255_key_seal_version(bkv_token *t, uint32_t *version)
{
	*version = 0;
	char label[64];
	token_label(label, sizeof(label), "bkv-ake-", OPAQUE_SUITE_RISTRETTO255_SHA512);
	CK_OBJECT_HANDLE h;
	bkv_token_err err = token_find(t, CKO_DATA, label, &h);
	if (err == BKV_TOKEN_ERR_KEY_MISSING)
		return BKV_TOKEN_OK;
	uint8_t sealed[R255_SEALED_KEY_BYTES];
	size_t len = sizeof(sealed);
	if (err == BKV_TOKEN_OK)
		err = token_get_attribute(t, h, CKA_VALUE, sealed, &len);
	if (err == BKV_TOKEN_OK && len >= 4)
		*version = (uint32_t)sealed[0] << 24 | (uint32_t)sealed[1] << 16 |
		           (uint32_t)sealed[2] << 8 | sealed[3];
	return err;
}

bkv_token_err bkv_token_delete_seal_key(bkv_token *t, uint32_t version)
{
	if (t == NULL || version == 0)
		return BKV_TOKEN_ERR_ARGUMENT;
	token_seal_key keys[TOKEN_MAX_SEAL_KEYS];
	size_t n;
	bkv_token_err err = token_list_seal_keys(t, keys, TOKEN_MAX_SEAL_KEYS, &n);
	if (err != BKV_TOKEN_OK)
		return err;
	uint32_t r255_version;
	err = r255_key_seal_version(t, &r255_version);
	if (err != BKV_TOKEN_OK)
		return err;
	if (n > 0 && keys[n - 1].version == version)
		return BKV_TOKEN_ERR_KEY_IN_USE;
	if (version == r255_version)
		return BKV_TOKEN_ERR_KEY_IN_USE;
	for (size_t i = 0; i < n; i++) {
		if (keys[i].version == version)
			return token_rv(t, t->fn->C_DestroyObject(t->session, keys[i].handle));
	}
	return BKV_TOKEN_ERR_KEY_MISSING;
}

bkv_token_err bkv_token_reseal_ake_key(bkv_token *t, bool *resealed)
{
	if (t == NULL || resealed == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	*resealed = false;
	uint32_t version;
	bkv_token_err err = r255_key_seal_version(t, &version);
	if (err != BKV_TOKEN_OK || version == 0 || version == bkv_token_seal_version(t))
		return err;
	char label[64];
	token_label(label, sizeof(label), "bkv-ake-", OPAQUE_SUITE_RISTRETTO255_SHA512);
	CK_OBJECT_HANDLE old;
	uint8_t sealed[R255_SEALED_KEY_BYTES + 1];
	size_t len = sizeof(sealed);
	uint8_t sk[32];
	uint8_t resealed_blob[R255_SEALED_KEY_BYTES];
	err = token_find(t, CKO_DATA, label, &old);
	if (err == BKV_TOKEN_OK)
		err = token_get_attribute(t, old, CKA_VALUE, sealed, &len);
	if (err == BKV_TOKEN_OK)
		err = token_unseal_r255_key(t, sealed, len, sk);
	if (err == BKV_TOKEN_OK)
		err = token_seal_r255_key(t, sk, resealed_blob);
	sodium_memzero(sk, sizeof(sk));
	if (err != BKV_TOKEN_OK)
		return err;
	/* Create the new object first: a crash in between leaves two objects, both valid. */
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_VALUE, resealed_blob, sizeof(resealed_blob)},
	    BOOL_ATTR(CKA_TOKEN, yes),
	    BOOL_ATTR(CKA_PRIVATE, yes),
	    BOOL_ATTR(CKA_MODIFIABLE, no),
	};
	CK_OBJECT_HANDLE fresh;
	err = token_rv(
	    t, t->fn->C_CreateObject(t->session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &fresh));
	if (err == BKV_TOKEN_OK)
		err = token_rv(t, t->fn->C_DestroyObject(t->session, old));
	if (err == BKV_TOKEN_OK)
		*resealed = true;
	return err;
}
