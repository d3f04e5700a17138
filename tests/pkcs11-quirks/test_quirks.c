/*
 * test_quirks.c - the quirks module (quirks.c) does what it claims on a real SoftHSM2
 * token (cmocka): with no quirk every call reaches SoftHSM2 unchanged, each quirk changes
 * exactly its one behaviour, quirks combine, an unknown quirk stops C_Initialize, and
 * need-init-args lets C_Initialize through only with the configured pReserved string.
 *
 *   tests/with-softhsm test-pkcs11-quirks PATH/libbkv-pkcs11-quirks.so
 *
 * The module is loaded with dlopen, as bkvd's loader does, and forwards to
 * $BKV_TEST_PKCS11_MODULE. Every test initializes the module under its own BKV_QUIRKS (the
 * test's initial state), logs in, works on session objects only, and finalizes, so the
 * token is left as it was found and tests do not depend on each other's order.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <p11-kit/pkcs11.h>

#include "../testtoken.h"

#define IV_BYTES        12
#define IV16_BYTES      16
#define TAG_BYTES       16
#define PLAINTEXT_BYTES 32
#define P256_POINT      65

static CK_FUNCTION_LIST *p11;
static const char *token_label;
static char pin[256];
static size_t pin_len;

static const CK_BBOOL yes = CK_TRUE;
static const CK_BBOOL no = CK_FALSE;
/* DER OID 1.2.840.10045.3.1.7 (prime256v1) */
static const CK_BYTE p256_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE plaintext[PLAINTEXT_BYTES] = "the quirks module forwards this";

#define BOOL_ATTR(type, v)                                                                         \
	{                                                                                          \
		(type), (void *)&(v), sizeof(CK_BBOOL)                                             \
	}
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Fixture: the module initialized under the test's quirks, a logged-in session ---- */

typedef struct fixture {
	CK_SESSION_HANDLE session;
} fixture;

static CK_SLOT_ID find_slot(void)
{
	CK_SLOT_ID slots[16];
	CK_ULONG n = NELEMS(slots);
	assert_int_equal(p11->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	char padded[32];
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, token_label, strlen(token_label));
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO info;
		if (p11->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    memcmp(info.label, padded, sizeof(padded)) == 0)
			return slots[i];
	}
	fail_msg("no token labelled %s", token_label);
	return 0;
}

static int setup(void **state)
{
	setenv("BKV_QUIRKS", *state != NULL ? (const char *)*state : "", 1);
	if (p11->C_Initialize(NULL) != CKR_OK)
		return -1;
	fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	CK_SLOT_ID slot = find_slot();
	if (p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	                       &f->session) != CKR_OK ||
	    p11->C_Login(f->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, pin_len) != CKR_OK) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	p11->C_Logout(f->session);
	p11->C_CloseSession(f->session);
	free(f);
	return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

/* ---- Helpers: session objects and the operations the vault performs ---- */

static CK_OBJECT_HANDLE aes_key(CK_SESSION_HANDLE s)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_ULONG len = 32;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_VALUE_LEN, &len, sizeof(len)}, BOOL_ATTR(CKA_TOKEN, no),
	    BOOL_ATTR(CKA_ENCRYPT, yes),        BOOL_ATTR(CKA_DECRYPT, yes),
	};
	CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	assert_int_equal(p11->C_GenerateKey(s, &mech, tmpl, NELEMS(tmpl), &key), CKR_OK);
	return key;
}

/* A session P-256 key pair that may derive; its public point, uncompressed, in point. */
static CK_OBJECT_HANDLE ec_private_key(CK_SESSION_HANDLE s, CK_BYTE point[P256_POINT])
{
	CK_ATTRIBUTE pub_tmpl[] = {
	    {CKA_EC_PARAMS, (void *)p256_params, sizeof(p256_params)},
	    BOOL_ATTR(CKA_TOKEN, no),
	};
	CK_ATTRIBUTE priv_tmpl[] = {BOOL_ATTR(CKA_TOKEN, no), BOOL_ATTR(CKA_DERIVE, yes)};
	CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_OBJECT_HANDLE pub, priv;
	assert_int_equal(p11->C_GenerateKeyPair(s, &mech, pub_tmpl, NELEMS(pub_tmpl), priv_tmpl,
	                                        NELEMS(priv_tmpl), &pub, &priv),
	                 CKR_OK);
	CK_BYTE der[P256_POINT + 2];
	CK_ATTRIBUTE a = {CKA_EC_POINT, der, sizeof(der)};
	assert_int_equal(p11->C_GetAttributeValue(s, pub, &a, 1), CKR_OK);
	/* DER OCTET STRING 04 41 around the point */
	assert_int_equal(a.ulValueLen, sizeof(der));
	memcpy(point, der + 2, P256_POINT);
	return priv;
}

/* ECDH of priv with peer, asking for a readable 32-byte secret, as bkv does. */
static CK_RV derive(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, CK_BYTE peer[P256_POINT],
                    CK_OBJECT_HANDLE *secret)
{
	CK_ECDH1_DERIVE_PARAMS params = {
	    .kdf = CKD_NULL, .pPublicData = peer, .ulPublicDataLen = P256_POINT};
	CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &params, sizeof(params)};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_ULONG len = 32;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_VALUE_LEN, &len, sizeof(len)}, BOOL_ATTR(CKA_TOKEN, no),
	    BOOL_ATTR(CKA_SENSITIVE, no),       BOOL_ATTR(CKA_EXTRACTABLE, yes),
	};
	return p11->C_DeriveKey(s, &mech, priv, tmpl, NELEMS(tmpl), secret);
}

static CK_RV gcm_encrypt(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_BYTE *iv, CK_ULONG iv_len,
                         CK_BYTE out[PLAINTEXT_BYTES + TAG_BYTES])
{
	CK_GCM_PARAMS params = {
	    .pIv = iv, .ulIvLen = iv_len, .ulIvBits = iv_len * 8, .ulTagBits = TAG_BYTES * 8};
	CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
	CK_ULONG out_len = PLAINTEXT_BYTES + TAG_BYTES;
	CK_RV rv = p11->C_EncryptInit(s, &mech, key);
	if (rv == CKR_OK)
		rv = p11->C_Encrypt(s, (CK_BYTE_PTR)plaintext, PLAINTEXT_BYTES, out, &out_len);
	return rv;
}

/* Decrypts sealed under iv; true when it authenticates and yields the plaintext. */
static bool gcm_opens(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, const CK_BYTE *iv, CK_ULONG iv_len,
                      const CK_BYTE sealed[PLAINTEXT_BYTES + TAG_BYTES])
{
	CK_BYTE iv_copy[IV16_BYTES];
	memcpy(iv_copy, iv, iv_len);
	CK_GCM_PARAMS params = {
	    .pIv = iv_copy, .ulIvLen = iv_len, .ulIvBits = iv_len * 8, .ulTagBits = TAG_BYTES * 8};
	CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
	CK_BYTE out[PLAINTEXT_BYTES + TAG_BYTES];
	CK_ULONG out_len = sizeof(out);
	if (p11->C_DecryptInit(s, &mech, key) != CKR_OK)
		return false;
	return p11->C_Decrypt(s, (CK_BYTE_PTR)sealed, PLAINTEXT_BYTES + TAG_BYTES, out, &out_len) ==
	           CKR_OK &&
	       out_len == PLAINTEXT_BYTES && memcmp(out, plaintext, PLAINTEXT_BYTES) == 0;
}

static bool mechanism_listed(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE type)
{
	CK_SESSION_INFO info;
	assert_int_equal(p11->C_GetSessionInfo(s, &info), CKR_OK);
	CK_MECHANISM_TYPE list[512];
	CK_ULONG n = NELEMS(list);
	assert_int_equal(p11->C_GetMechanismList(info.slotID, list, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++) {
		if (list[i] == type)
			return true;
	}
	return false;
}

static CK_RV mechanism_info(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE type)
{
	CK_SESSION_INFO session_info;
	assert_int_equal(p11->C_GetSessionInfo(s, &session_info), CKR_OK);
	CK_MECHANISM_INFO info;
	return p11->C_GetMechanismInfo(session_info.slotID, type, &info);
}

static CK_RV create_data_object(CK_SESSION_HANDLE s)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BYTE value[] = {1, 2, 3};
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_VALUE, value, sizeof(value)},
	    BOOL_ATTR(CKA_TOKEN, no),
	};
	CK_OBJECT_HANDLE obj;
	return p11->C_CreateObject(s, tmpl, NELEMS(tmpl), &obj);
}

/* An HMAC seed key as bkvd makes it, with CKA_ALLOWED_MECHANISMS or without. */
static CK_RV generate_seed(CK_SESSION_HANDLE s, bool allowed_mechanisms)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_ULONG len = 32;
	CK_MECHANISM_TYPE allowed[] = {CKM_SHA256_HMAC};
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_VALUE_LEN, &len, sizeof(len)}, BOOL_ATTR(CKA_TOKEN, no),
	    BOOL_ATTR(CKA_SIGN, yes),           {CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed)},
	};
	CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE key;
	return p11->C_GenerateKey(s, &mech, tmpl,
	                          allowed_mechanisms ? NELEMS(tmpl) : NELEMS(tmpl) - 1, &key);
}

static CK_RV copy(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj)
{
	CK_ATTRIBUTE tmpl[] = {BOOL_ATTR(CKA_TOKEN, no)};
	CK_OBJECT_HANDLE dup;
	return p11->C_CopyObject(s, obj, tmpl, NELEMS(tmpl), &dup);
}

#define SESSION(state) (((fixture *)*(state))->session)

/* ---- With no quirk, every call passes through ---- */

static void no_quirk_gcm_keeps_the_callers_iv(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_OBJECT_HANDLE key = aes_key(s);
	CK_BYTE iv[IV_BYTES] = {0};
	CK_BYTE sealed[PLAINTEXT_BYTES + TAG_BYTES];
	assert_int_equal(gcm_encrypt(s, key, iv, IV_BYTES, sealed), CKR_OK);
	static const CK_BYTE zero_iv[IV_BYTES] = {0};
	assert_memory_equal(iv, zero_iv, IV_BYTES);
	assert_true(gcm_opens(s, key, zero_iv, IV_BYTES, sealed));
}

static void no_quirk_lists_gcm_and_ecdh(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	assert_true(mechanism_listed(s, CKM_AES_GCM));
	assert_true(mechanism_listed(s, CKM_ECDH1_DERIVE));
	assert_int_equal(mechanism_info(s, CKM_AES_GCM), CKR_OK);
	assert_int_equal(mechanism_info(s, CKM_ECDH1_DERIVE), CKR_OK);
}

static void no_quirk_ecdh_result_is_readable(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_BYTE point[P256_POINT];
	CK_OBJECT_HANDLE priv = ec_private_key(s, point);
	CK_OBJECT_HANDLE secret;
	assert_int_equal(derive(s, priv, point, &secret), CKR_OK);
	CK_BYTE x[32];
	CK_ATTRIBUTE a = {CKA_VALUE, x, sizeof(x)};
	assert_int_equal(p11->C_GetAttributeValue(s, secret, &a, 1), CKR_OK);
	assert_int_equal(a.ulValueLen, sizeof(x));
}

static void no_quirk_copies_creates_and_generates(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	assert_int_equal(copy(s, aes_key(s)), CKR_OK);
	assert_int_equal(create_data_object(s), CKR_OK);
	assert_int_equal(generate_seed(s, true), CKR_OK);
}

/* ---- gcm-token-iv, gcm-token-iv16 ---- */

static void gcm_token_iv_writes_back_the_iv_it_used(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_OBJECT_HANDLE key = aes_key(s);
	static const CK_BYTE passed[IV_BYTES] = {0};
	CK_BYTE iv[IV_BYTES] = {0};
	CK_BYTE sealed[PLAINTEXT_BYTES + TAG_BYTES];
	assert_int_equal(gcm_encrypt(s, key, iv, IV_BYTES, sealed), CKR_OK);
	assert_memory_not_equal(iv, passed, IV_BYTES);
	assert_true(gcm_opens(s, key, iv, IV_BYTES, sealed));
	assert_false(gcm_opens(s, key, passed, IV_BYTES, sealed));
}

static void gcm_token_iv_draws_a_new_iv_each_time(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_OBJECT_HANDLE key = aes_key(s);
	CK_BYTE first[IV_BYTES] = {0}, second[IV_BYTES] = {0};
	CK_BYTE sealed[PLAINTEXT_BYTES + TAG_BYTES];
	assert_int_equal(gcm_encrypt(s, key, first, IV_BYTES, sealed), CKR_OK);
	assert_int_equal(gcm_encrypt(s, key, second, IV_BYTES, sealed), CKR_OK);
	assert_memory_not_equal(first, second, IV_BYTES);
}

static void gcm_token_iv16_writes_back_16_bytes(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_OBJECT_HANDLE key = aes_key(s);
	static const CK_BYTE passed[IV16_BYTES] = {0};
	CK_BYTE iv[IV16_BYTES] = {0};
	CK_BYTE sealed[PLAINTEXT_BYTES + TAG_BYTES];
	assert_int_equal(gcm_encrypt(s, key, iv, IV16_BYTES, sealed), CKR_OK);
	/* The last four bytes are drawn too, not left as passed. */
	assert_memory_not_equal(iv + IV_BYTES, passed, 4);
	assert_true(gcm_opens(s, key, iv, IV16_BYTES, sealed));
	assert_false(gcm_opens(s, key, passed, IV16_BYTES, sealed));
}

static void gcm_token_iv16_refuses_a_12_byte_iv(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_BYTE iv[IV_BYTES] = {0};
	CK_BYTE sealed[PLAINTEXT_BYTES + TAG_BYTES];
	assert_int_equal(gcm_encrypt(s, aes_key(s), iv, IV_BYTES, sealed),
	                 CKR_MECHANISM_PARAM_INVALID);
}

static void gcm_token_iv_decrypts_with_the_callers_iv(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_OBJECT_HANDLE key = aes_key(s);
	CK_BYTE iv[IV_BYTES] = {0};
	CK_BYTE sealed[PLAINTEXT_BYTES + TAG_BYTES];
	assert_int_equal(gcm_encrypt(s, key, iv, IV_BYTES, sealed), CKR_OK);
	/* Opening twice with the same IV: decryption neither draws nor changes it. */
	assert_true(gcm_opens(s, key, iv, IV_BYTES, sealed));
	assert_true(gcm_opens(s, key, iv, IV_BYTES, sealed));
}

/* ---- no-gcm, no-ecdh ---- */

static void no_gcm_hides_aes_gcm(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_OBJECT_HANDLE key = aes_key(s);
	assert_false(mechanism_listed(s, CKM_AES_GCM));
	assert_true(mechanism_listed(s, CKM_AES_CBC_PAD));
	assert_int_equal(mechanism_info(s, CKM_AES_GCM), CKR_MECHANISM_INVALID);
	CK_BYTE iv[IV_BYTES] = {0};
	CK_GCM_PARAMS params = {
	    .pIv = iv, .ulIvLen = IV_BYTES, .ulIvBits = IV_BYTES * 8, .ulTagBits = TAG_BYTES * 8};
	CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
	assert_int_equal(p11->C_EncryptInit(s, &mech, key), CKR_MECHANISM_INVALID);
	assert_int_equal(p11->C_DecryptInit(s, &mech, key), CKR_MECHANISM_INVALID);
}

static void no_gcm_counts_the_shorter_list(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_SESSION_INFO info;
	assert_int_equal(p11->C_GetSessionInfo(s, &info), CKR_OK);
	CK_ULONG n = 0;
	assert_int_equal(p11->C_GetMechanismList(info.slotID, NULL, &n), CKR_OK);
	CK_MECHANISM_TYPE list[512];
	CK_ULONG short_n = n - 1;
	assert_int_equal(p11->C_GetMechanismList(info.slotID, list, &short_n),
	                 CKR_BUFFER_TOO_SMALL);
	assert_int_equal(short_n, n);
	CK_ULONG full_n = NELEMS(list);
	assert_int_equal(p11->C_GetMechanismList(info.slotID, list, &full_n), CKR_OK);
	assert_int_equal(full_n, n);
}

static void no_ecdh_hides_ecdh(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	assert_false(mechanism_listed(s, CKM_ECDH1_DERIVE));
	assert_true(mechanism_listed(s, CKM_EC_KEY_PAIR_GEN));
	assert_int_equal(mechanism_info(s, CKM_ECDH1_DERIVE), CKR_MECHANISM_INVALID);
	CK_BYTE point[P256_POINT];
	CK_OBJECT_HANDLE priv = ec_private_key(s, point);
	CK_OBJECT_HANDLE secret;
	assert_int_equal(derive(s, priv, point, &secret), CKR_MECHANISM_INVALID);
}

/* ---- sensitive-derive ---- */

static void sensitive_derive_makes_the_ecdh_result_unreadable(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_BYTE point[P256_POINT];
	CK_OBJECT_HANDLE priv = ec_private_key(s, point);
	CK_OBJECT_HANDLE secret;
	assert_int_equal(derive(s, priv, point, &secret), CKR_OK);
	CK_BYTE x[32];
	CK_ATTRIBUTE x_attr = {CKA_VALUE, x, sizeof(x)};
	assert_int_equal(p11->C_GetAttributeValue(s, secret, &x_attr, 1), CKR_ATTRIBUTE_SENSITIVE);
	CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
	CK_ATTRIBUTE flags[] = {
	    {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
	    {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	};
	assert_int_equal(p11->C_GetAttributeValue(s, secret, flags, NELEMS(flags)), CKR_OK);
	assert_true(sensitive);
	assert_false(extractable);
}

/* ---- no-copy, no-allowed-mechanisms, no-data-objects, no-generate-key ---- */

static void no_copy_refuses_c_copy_object(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	assert_int_equal(copy(s, aes_key(s)), CKR_FUNCTION_NOT_SUPPORTED);
}

static void no_allowed_mechanisms_refuses_the_attribute(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	assert_int_equal(generate_seed(s, true), CKR_ATTRIBUTE_TYPE_INVALID);
	assert_int_equal(generate_seed(s, false), CKR_OK);
}

static void no_allowed_mechanisms_reports_the_attribute_unavailable(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	CK_OBJECT_HANDLE key = aes_key(s);
	CK_MECHANISM_TYPE allowed[8];
	CK_KEY_TYPE type = 0;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed)},
	};
	assert_int_equal(p11->C_GetAttributeValue(s, key, tmpl, NELEMS(tmpl)),
	                 CKR_ATTRIBUTE_TYPE_INVALID);
	assert_int_equal(type, CKK_AES);
	assert_int_equal(tmpl[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
}

static void no_data_objects_refuses_cko_data(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	assert_int_equal(create_data_object(s), CKR_TEMPLATE_INCONSISTENT);
	assert_int_equal(generate_seed(s, true), CKR_OK);
}

static void no_generate_key_refuses_key_generation(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	assert_int_equal(generate_seed(s, false), CKR_FUNCTION_NOT_SUPPORTED);
	CK_ATTRIBUTE pub_tmpl[] = {{CKA_EC_PARAMS, (void *)p256_params, sizeof(p256_params)}};
	CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_OBJECT_HANDLE pub, priv;
	assert_int_equal(p11->C_GenerateKeyPair(s, &mech, pub_tmpl, 1, NULL, 0, &pub, &priv),
	                 CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(create_data_object(s), CKR_OK);
}

/* ---- Combining and naming quirks ---- */

static void quirks_combine(void **state)
{
	CK_SESSION_HANDLE s = SESSION(state);
	assert_false(mechanism_listed(s, CKM_AES_GCM));
	assert_int_equal(copy(s, aes_key(s)), CKR_FUNCTION_NOT_SUPPORTED);
}

/* C_Initialize(args) under quirks answers CKR_ARGUMENTS_BAD and initializes nothing. */
static void initialize_refuses_with(const char *quirks, CK_C_INITIALIZE_ARGS *args)
{
	setenv("BKV_QUIRKS", quirks, 1);
	assert_int_equal(p11->C_Initialize(args), CKR_ARGUMENTS_BAD);
	/* Nothing was initialized: the real module still answers "not initialized". */
	CK_ULONG n = 0;
	assert_int_equal(p11->C_GetSlotList(CK_TRUE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void initialize_refuses(const char *quirks)
{
	initialize_refuses_with(quirks, NULL);
}

static void unknown_quirk_fails_initialize(void **state)
{
	(void)state;
	initialize_refuses("no-copy,no-such-quirk");
}

static void both_token_iv_lengths_fail_initialize(void **state)
{
	(void)state;
	initialize_refuses("gcm-token-iv,gcm-token-iv16");
}

/* ---- need-init-args ---- */

static const char init_args_string[] =
    "configdir='sql:/var/lib/bkv-test' certPrefix='' keyPrefix=''";

static CK_C_INITIALIZE_ARGS init_args_with(CK_FLAGS flags, const char *reserved)
{
	CK_C_INITIALIZE_ARGS args = {.flags = flags, .pReserved = (CK_VOID_PTR)reserved};
	return args;
}

static void need_init_args_refuses_initialize_without_args(void **state)
{
	(void)state;
	setenv("BKV_QUIRKS_INIT_ARGS", init_args_string, 1);
	initialize_refuses_with("need-init-args", NULL);
	CK_C_INITIALIZE_ARGS args = init_args_with(CKF_OS_LOCKING_OK, NULL);
	initialize_refuses_with("need-init-args", &args);
}

static void need_init_args_refuses_another_string_or_no_os_locking(void **state)
{
	(void)state;
	setenv("BKV_QUIRKS_INIT_ARGS", init_args_string, 1);
	char prefix[sizeof(init_args_string)];
	memcpy(prefix, init_args_string, sizeof(prefix));
	prefix[sizeof(prefix) - 2] = '\0';
	CK_C_INITIALIZE_ARGS args = init_args_with(CKF_OS_LOCKING_OK, prefix);
	initialize_refuses_with("need-init-args", &args);
	args = init_args_with(CKF_OS_LOCKING_OK, "configdir='sql:/elsewhere'");
	initialize_refuses_with("need-init-args", &args);
	args = init_args_with(0, init_args_string);
	initialize_refuses_with("need-init-args", &args);
}

static void need_init_args_initializes_with_the_exact_string(void **state)
{
	(void)state;
	setenv("BKV_QUIRKS", "need-init-args", 1);
	setenv("BKV_QUIRKS_INIT_ARGS", init_args_string, 1);
	/* A copy: the module compares the string, not the pointer. */
	char copy[sizeof(init_args_string)];
	memcpy(copy, init_args_string, sizeof(copy));
	CK_C_INITIALIZE_ARGS args = init_args_with(CKF_OS_LOCKING_OK, copy);
	assert_int_equal(p11->C_Initialize(&args), CKR_OK);
	CK_ULONG n = 0;
	assert_int_equal(p11->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	assert_true(n > 0);
	assert_int_equal(p11->C_Finalize(NULL), CKR_OK);
}

/* Why the quirk strips pReserved before forwarding: the real module refuses one. */
static void without_need_init_args_preserved_reaches_the_real_module(void **state)
{
	(void)state;
	CK_C_INITIALIZE_ARGS args = init_args_with(CKF_OS_LOCKING_OK, init_args_string);
	initialize_refuses_with("", &args);
}

#define QUIRK_TEST(f, quirks) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, quirks)

int main(int argc, char **argv)
{
	const char *module = getenv("BKV_TEST_PKCS11_MODULE");
	const char *pin_file = getenv("BKV_TEST_PIN_FILE");
	token_label = getenv("BKV_TEST_TOKEN_LABEL");
	if (argc != 2 || module == NULL || pin_file == NULL || token_label == NULL ||
	    !tu_read_pin(pin_file, pin, sizeof(pin), &pin_len)) {
		fprintf(stderr, "usage: tests/with-softhsm test-pkcs11-quirks QUIRKS_MODULE\n");
		return 2;
	}
	setenv("BKV_QUIRKS_MODULE", module, 1);
	void *handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	CK_C_GetFunctionList get_list =
	    handle != NULL ? (CK_C_GetFunctionList)dlsym(handle, "C_GetFunctionList") : NULL;
	if (get_list == NULL || get_list(&p11) != CKR_OK) {
		fprintf(stderr, "test-pkcs11-quirks: cannot load %s\n", argv[1]);
		return 1;
	}

	const struct CMUnitTest tests[] = {
	    QUIRK_TEST(no_quirk_gcm_keeps_the_callers_iv, NULL),
	    QUIRK_TEST(no_quirk_lists_gcm_and_ecdh, NULL),
	    QUIRK_TEST(no_quirk_ecdh_result_is_readable, NULL),
	    QUIRK_TEST(no_quirk_copies_creates_and_generates, NULL),
	    QUIRK_TEST(gcm_token_iv_writes_back_the_iv_it_used, "gcm-token-iv"),
	    QUIRK_TEST(gcm_token_iv_draws_a_new_iv_each_time, "gcm-token-iv"),
	    QUIRK_TEST(gcm_token_iv_decrypts_with_the_callers_iv, "gcm-token-iv"),
	    QUIRK_TEST(gcm_token_iv16_writes_back_16_bytes, "gcm-token-iv16"),
	    QUIRK_TEST(gcm_token_iv16_refuses_a_12_byte_iv, "gcm-token-iv16"),
	    QUIRK_TEST(no_gcm_hides_aes_gcm, "no-gcm"),
	    QUIRK_TEST(no_gcm_counts_the_shorter_list, "no-gcm"),
	    QUIRK_TEST(no_ecdh_hides_ecdh, "no-ecdh"),
	    QUIRK_TEST(sensitive_derive_makes_the_ecdh_result_unreadable, "sensitive-derive"),
	    QUIRK_TEST(no_copy_refuses_c_copy_object, "no-copy"),
	    QUIRK_TEST(no_allowed_mechanisms_refuses_the_attribute, "no-allowed-mechanisms"),
	    QUIRK_TEST(no_allowed_mechanisms_reports_the_attribute_unavailable,
	               "no-allowed-mechanisms"),
	    QUIRK_TEST(no_data_objects_refuses_cko_data, "no-data-objects"),
	    QUIRK_TEST(no_generate_key_refuses_key_generation, "no-generate-key"),
	    QUIRK_TEST(quirks_combine, "no-gcm, no-copy"),
	    cmocka_unit_test(unknown_quirk_fails_initialize),
	    cmocka_unit_test(both_token_iv_lengths_fail_initialize),
	    cmocka_unit_test(need_init_args_refuses_initialize_without_args),
	    cmocka_unit_test(need_init_args_refuses_another_string_or_no_os_locking),
	    cmocka_unit_test(need_init_args_initializes_with_the_exact_string),
	    cmocka_unit_test(without_need_init_args_preserved_reaches_the_real_module),
	};
	return cmocka_run_group_tests_name("pkcs11-quirks", tests, NULL, NULL);
}
