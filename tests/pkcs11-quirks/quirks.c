/*
 * quirks.c - libbkv-pkcs11-quirks.so, a PKCS#11 module for tests that forwards to a real
 * module and changes documented vendor behaviours, so bkvd can be tried against what
 * HSMs really do without owning one.
 *
 *   BKV_QUIRKS_MODULE  the real module (default /usr/lib/softhsm/libsofthsm2.so), dlopened
 *                      at C_GetFunctionList
 *   BKV_QUIRKS         comma-separated quirks, read at every C_Initialize; an unknown name
 *                      makes C_Initialize fail with CKR_ARGUMENTS_BAD (said once on stderr)
 *   BKV_QUIRKS_INIT_ARGS  the pReserved string need-init-args wants
 *
 * The function list is a copy of the real module's, so every entry this file does not
 * replace calls the real module directly; a replaced entry forwards unchanged unless its
 * quirk is on. The quirks, and whom each imitates:
 *
 *   gcm-token-iv     C_EncryptInit with CKM_AES_GCM ignores the caller's IV: the module draws
 *                    a random 12-byte one, encrypts with it and writes it back into
 *                    CK_GCM_PARAMS.pIv, as AWS CloudHSM does. As there, the caller's buffer
 *                    must be the IV's length (ulIvLen 12), else CKR_MECHANISM_PARAM_INVALID.
 *                    C_DecryptInit takes the caller's IV as usual.
 *   gcm-token-iv16   the same with a 16-byte IV (ulIvLen 16), the length Thales Luna and
 *                    ProtectServer draw in FIPS mode. (Luna's documentation has that IV
 *                    appended to the ciphertext instead; this module does not imitate that.)
 *   no-gcm           CKM_AES_GCM is not listed, and C_GetMechanismInfo, C_EncryptInit,
 *                    C_DecryptInit, C_WrapKey and C_UnwrapKey with it answer
 *                    CKR_MECHANISM_INVALID (YubiHSM 2, openCryptoki before 3.17).
 *   no-ecdh          the same for CKM_ECDH1_DERIVE and CKM_ECDH1_COFACTOR_DERIVE in C_DeriveKey
 *                    (Google Cloud KMS's library, Azure; CloudHSM SDK 5 only with a KDF).
 *   sensitive-derive C_DeriveKey with ECDH makes the derived key CKA_SENSITIVE = TRUE and
 *                    CKA_EXTRACTABLE = FALSE whatever the template says, so reading CKA_VALUE
 *                    fails with CKR_ATTRIBUTE_SENSITIVE (Luna Cloud HSM).
 *   no-copy          C_CopyObject answers CKR_FUNCTION_NOT_SUPPORTED (YubiHSM 2, tpm2-pkcs11,
 *                    Google Cloud KMS's library).
 *   no-allowed-mechanisms
 *                    a v2.20 module: a template naming CKA_ALLOWED_MECHANISMS is refused with
 *                    CKR_ATTRIBUTE_TYPE_INVALID, and C_GetAttributeValue reports the attribute
 *                    unavailable (openCryptoki 3.8). The module still reports the real
 *                    module's version, so a caller has to probe rather than trust a number.
 *   no-data-objects  creating a CKO_DATA object answers CKR_TEMPLATE_INCONSISTENT, the code
 *                    YubiHSM 2's module gives for an object class it does not store and AWS
 *                    CloudHSM SDK 5 gives for a valid attribute value it does not support.
 *   no-generate-key  C_GenerateKey and C_GenerateKeyPair answer CKR_FUNCTION_NOT_SUPPORTED
 *                    (tpm2-pkcs11: keys are made with its own tool).
 *   need-init-args   C_Initialize answers CKR_ARGUMENTS_BAD unless its CK_C_INITIALIZE_ARGS
 *                    has CKF_OS_LOCKING_OK and pReserved is exactly BKV_QUIRKS_INIT_ARGS (NSS
 *                    softoken's configuration string; vendor modules' configuration paths).
 *                    The real module is then initialized with pReserved NULL, as SoftHSM2
 *                    refuses any other.
 *
 * Only C_GetFunctionList is exported: p11-kit would prefer a C_GetInterface, and this module
 * has no PKCS#11 3.0 interface of its own to offer.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <p11-kit/pkcs11.h>

#define QUIRKS_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define QUIRKS_IV_MAX         16
#define QUIRKS_TEMPLATE_MAX   64 /* attributes in a template sensitive-derive rewrites */

#define QUIRK_NO_GCM                (1u << 0)
#define QUIRK_NO_ECDH               (1u << 1)
#define QUIRK_SENSITIVE_DERIVE      (1u << 2)
#define QUIRK_NO_COPY               (1u << 3)
#define QUIRK_NO_ALLOWED_MECHANISMS (1u << 4)
#define QUIRK_NO_DATA_OBJECTS       (1u << 5)
#define QUIRK_NO_GENERATE_KEY       (1u << 6)
#define QUIRK_NEED_INIT_ARGS        (1u << 7)

typedef struct quirk_name {
	const char *name;
	unsigned flag;        /* 0 for the GCM IV quirks, which set token_iv_len instead */
	unsigned long iv_len; /* the token's IV length for gcm-token-iv* */
} quirk_name;

static const quirk_name quirk_names[] = {
    {"gcm-token-iv", 0, 12},
    {"gcm-token-iv16", 0, 16},
    {"no-gcm", QUIRK_NO_GCM, 0},
    {"no-ecdh", QUIRK_NO_ECDH, 0},
    {"sensitive-derive", QUIRK_SENSITIVE_DERIVE, 0},
    {"no-copy", QUIRK_NO_COPY, 0},
    {"no-allowed-mechanisms", QUIRK_NO_ALLOWED_MECHANISMS, 0},
    {"no-data-objects", QUIRK_NO_DATA_OBJECTS, 0},
    {"no-generate-key", QUIRK_NO_GENERATE_KEY, 0},
    {"need-init-args", QUIRK_NEED_INIT_ARGS, 0},
};

static CK_FUNCTION_LIST *real;       /* the real module's list */
static CK_FUNCTION_LIST quirks_list; /* what callers get */
static unsigned quirks;              /* QUIRK_* flags in force */
static unsigned long token_iv_len;   /* 0, or the IV length for gcm-token-iv* */
static bool told_bad_quirks;

/* ---- Reading BKV_QUIRKS ---- */

static bool set_quirk(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(quirk_names) / sizeof(quirk_names[0]); i++) {
		const quirk_name *q = &quirk_names[i];
		if (strlen(q->name) != len || memcmp(q->name, name, len) != 0)
			continue;
		if (q->iv_len != 0) {
			if (token_iv_len != 0 && token_iv_len != q->iv_len)
				return false;
			token_iv_len = q->iv_len;
		}
		quirks |= q->flag;
		return true;
	}
	return false;
}

/* Sets quirks and token_iv_len from BKV_QUIRKS; false (and says why, once) if unknown. */
static bool read_quirks(void)
{
	quirks = 0;
	token_iv_len = 0;
	const char *list = getenv("BKV_QUIRKS");
	if (list == NULL)
		return true;
	const char *p = list;
	while (*p != '\0') {
		while (*p == ',' || *p == ' ')
			p++;
		size_t len = strcspn(p, ", ");
		if (len > 0 && !set_quirk(p, len)) {
			if (!told_bad_quirks) {
				fprintf(
				    stderr,
				    "bkv-pkcs11-quirks: BKV_QUIRKS=\"%s\": unknown or conflicting "
				    "quirk \"%.*s\"\n",
				    list, (int)len, p);
				told_bad_quirks = true;
			}
			quirks = 0;
			token_iv_len = 0;
			return false;
		}
		p += len;
	}
	return true;
}

/* ---- Helpers ---- */

static bool hidden_mechanism(CK_MECHANISM_TYPE type)
{
	if ((quirks & QUIRK_NO_GCM) && type == CKM_AES_GCM)
		return true;
	return (quirks & QUIRK_NO_ECDH) &&
	       (type == CKM_ECDH1_DERIVE || type == CKM_ECDH1_COFACTOR_DERIVE);
}

static bool is_ecdh(const CK_MECHANISM *mech)
{
	return mech != NULL && (mech->mechanism == CKM_ECDH1_DERIVE ||
	                        mech->mechanism == CKM_ECDH1_COFACTOR_DERIVE);
}

/* What a token with the quirks in force answers to a template that creates or searches
 * objects: CKR_OK when the real module may have it. */
static CK_RV template_refused(const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	if (tmpl == NULL)
		return CKR_OK;
	for (CK_ULONG i = 0; i < count; i++) {
		if ((quirks & QUIRK_NO_ALLOWED_MECHANISMS) &&
		    tmpl[i].type == CKA_ALLOWED_MECHANISMS)
			return CKR_ATTRIBUTE_TYPE_INVALID;
		if ((quirks & QUIRK_NO_DATA_OBJECTS) && tmpl[i].type == CKA_CLASS &&
		    tmpl[i].pValue != NULL && tmpl[i].ulValueLen == sizeof(CK_OBJECT_CLASS) &&
		    *(const CK_OBJECT_CLASS *)tmpl[i].pValue == CKO_DATA)
			return CKR_TEMPLATE_INCONSISTENT;
	}
	return CKR_OK;
}

/* ---- Replaced entries ---- */

static CK_RV quirks_initialize(CK_VOID_PTR init_args)
{
	if (!read_quirks())
		return CKR_ARGUMENTS_BAD;
	if (!(quirks & QUIRK_NEED_INIT_ARGS))
		return real->C_Initialize(init_args);
	const CK_C_INITIALIZE_ARGS *args = init_args;
	const char *wanted = getenv("BKV_QUIRKS_INIT_ARGS");
	if (args == NULL || !(args->flags & CKF_OS_LOCKING_OK) || args->pReserved == NULL ||
	    wanted == NULL || strcmp(args->pReserved, wanted) != 0)
		return CKR_ARGUMENTS_BAD;
	CK_C_INITIALIZE_ARGS forwarded = *args;
	forwarded.pReserved = NULL;
	return real->C_Initialize(&forwarded);
}

static CK_RV quirks_get_mechanism_list(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                                       CK_ULONG_PTR count)
{
	if (!(quirks & (QUIRK_NO_GCM | QUIRK_NO_ECDH)))
		return real->C_GetMechanismList(slot, list, count);
	if (count == NULL)
		return CKR_ARGUMENTS_BAD;
	CK_ULONG n = 0;
	CK_RV rv = real->C_GetMechanismList(slot, NULL, &n);
	if (rv != CKR_OK)
		return rv;
	CK_MECHANISM_TYPE *all = calloc(n > 0 ? n : 1, sizeof(*all));
	if (all == NULL)
		return CKR_HOST_MEMORY;
	rv = real->C_GetMechanismList(slot, all, &n);
	CK_ULONG shown = 0;
	for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
		if (!hidden_mechanism(all[i]))
			all[shown++] = all[i];
	}
	if (rv == CKR_OK && list != NULL) {
		if (*count < shown)
			rv = CKR_BUFFER_TOO_SMALL;
		else
			memcpy(list, all, shown * sizeof(*all));
	}
	if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
		*count = shown;
	free(all);
	return rv;
}

static CK_RV quirks_get_mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                       CK_MECHANISM_INFO_PTR info)
{
	if (hidden_mechanism(type))
		return CKR_MECHANISM_INVALID;
	return real->C_GetMechanismInfo(slot, type, info);
}

static CK_RV quirks_create_object(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                                  CK_OBJECT_HANDLE_PTR object)
{
	CK_RV rv = template_refused(tmpl, count);
	return rv != CKR_OK ? rv : real->C_CreateObject(session, tmpl, count, object);
}

static CK_RV quirks_copy_object(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                CK_ATTRIBUTE_PTR tmpl, CK_ULONG count, CK_OBJECT_HANDLE_PTR copy)
{
	if (quirks & QUIRK_NO_COPY)
		return CKR_FUNCTION_NOT_SUPPORTED;
	CK_RV rv = template_refused(tmpl, count);
	return rv != CKR_OK ? rv : real->C_CopyObject(session, object, tmpl, count, copy);
}

static CK_RV quirks_get_attribute_value(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                        CK_ATTRIBUTE_PTR tmpl, CK_ULONG count)
{
	CK_RV rv = real->C_GetAttributeValue(session, object, tmpl, count);
	if (!(quirks & QUIRK_NO_ALLOWED_MECHANISMS) || tmpl == NULL)
		return rv;
	for (CK_ULONG i = 0; i < count; i++) {
		if (tmpl[i].type != CKA_ALLOWED_MECHANISMS)
			continue;
		tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
		if (rv == CKR_OK)
			rv = CKR_ATTRIBUTE_TYPE_INVALID;
	}
	return rv;
}

static CK_RV quirks_set_attribute_value(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                        CK_ATTRIBUTE_PTR tmpl, CK_ULONG count)
{
	CK_RV rv = template_refused(tmpl, count);
	return rv != CKR_OK ? rv : real->C_SetAttributeValue(session, object, tmpl, count);
}

static CK_RV quirks_find_objects_init(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR tmpl,
                                      CK_ULONG count)
{
	if ((quirks & QUIRK_NO_ALLOWED_MECHANISMS) && tmpl != NULL) {
		for (CK_ULONG i = 0; i < count; i++) {
			if (tmpl[i].type == CKA_ALLOWED_MECHANISMS)
				return CKR_ATTRIBUTE_TYPE_INVALID;
		}
	}
	return real->C_FindObjectsInit(session, tmpl, count);
}

/* gcm-token-iv*: encrypt under an IV the "token" draws, and hand it back in the caller's
 * CK_GCM_PARAMS as the vendors do. */
static CK_RV encrypt_init_token_iv(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                                   CK_OBJECT_HANDLE key)
{
	if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(CK_GCM_PARAMS))
		return real->C_EncryptInit(session, mech, key);
	CK_GCM_PARAMS *caller = mech->pParameter;
	if (caller->pIv == NULL || caller->ulIvLen != token_iv_len)
		return CKR_MECHANISM_PARAM_INVALID;
	CK_BYTE iv[QUIRKS_IV_MAX];
	if (getrandom(iv, token_iv_len, 0) != (ssize_t)token_iv_len)
		return CKR_DEVICE_ERROR;
	CK_GCM_PARAMS params = *caller;
	params.pIv = iv;
	params.ulIvLen = token_iv_len;
	params.ulIvBits = token_iv_len * 8;
	CK_MECHANISM token_mech = {CKM_AES_GCM, &params, sizeof(params)};
	CK_RV rv = real->C_EncryptInit(session, &token_mech, key);
	if (rv == CKR_OK)
		memcpy(caller->pIv, iv, token_iv_len);
	return rv;
}

static CK_RV quirks_encrypt_init(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                                 CK_OBJECT_HANDLE key)
{
	if (mech != NULL && hidden_mechanism(mech->mechanism))
		return CKR_MECHANISM_INVALID;
	if (mech != NULL && mech->mechanism == CKM_AES_GCM && token_iv_len != 0)
		return encrypt_init_token_iv(session, mech, key);
	return real->C_EncryptInit(session, mech, key);
}

static CK_RV quirks_decrypt_init(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                                 CK_OBJECT_HANDLE key)
{
	if (mech != NULL && hidden_mechanism(mech->mechanism))
		return CKR_MECHANISM_INVALID;
	return real->C_DecryptInit(session, mech, key);
}

static CK_RV quirks_generate_key(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                                 CK_ATTRIBUTE_PTR tmpl, CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
	if (quirks & QUIRK_NO_GENERATE_KEY)
		return CKR_FUNCTION_NOT_SUPPORTED;
	CK_RV rv = template_refused(tmpl, count);
	return rv != CKR_OK ? rv : real->C_GenerateKey(session, mech, tmpl, count, key);
}

static CK_RV quirks_generate_key_pair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                                      CK_ATTRIBUTE_PTR pub_tmpl, CK_ULONG pub_count,
                                      CK_ATTRIBUTE_PTR priv_tmpl, CK_ULONG priv_count,
                                      CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
	if (quirks & QUIRK_NO_GENERATE_KEY)
		return CKR_FUNCTION_NOT_SUPPORTED;
	CK_RV rv = template_refused(pub_tmpl, pub_count);
	if (rv == CKR_OK)
		rv = template_refused(priv_tmpl, priv_count);
	if (rv != CKR_OK)
		return rv;
	return real->C_GenerateKeyPair(session, mech, pub_tmpl, pub_count, priv_tmpl, priv_count,
	                               pub, priv);
}

static CK_RV quirks_wrap_key(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                             CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
                             CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_len)
{
	if (mech != NULL && hidden_mechanism(mech->mechanism))
		return CKR_MECHANISM_INVALID;
	return real->C_WrapKey(session, mech, wrapping_key, key, wrapped, wrapped_len);
}

static CK_RV quirks_unwrap_key(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                               CK_OBJECT_HANDLE unwrapping_key, CK_BYTE_PTR wrapped,
                               CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                               CK_OBJECT_HANDLE_PTR key)
{
	if (mech != NULL && hidden_mechanism(mech->mechanism))
		return CKR_MECHANISM_INVALID;
	CK_RV rv = template_refused(tmpl, count);
	if (rv != CKR_OK)
		return rv;
	return real->C_UnwrapKey(session, mech, unwrapping_key, wrapped, wrapped_len, tmpl, count,
	                         key);
}

/* sensitive-derive: the caller's template with CKA_SENSITIVE = TRUE and
 * CKA_EXTRACTABLE = FALSE, replaced where present and added where not. */
static CK_RV derive_sensitive(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                              CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                              CK_OBJECT_HANDLE_PTR key)
{
	static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	if ((tmpl == NULL && count > 0) || count > QUIRKS_TEMPLATE_MAX)
		return CKR_ARGUMENTS_BAD;
	CK_ATTRIBUTE forced[QUIRKS_TEMPLATE_MAX + 2];
	CK_ULONG n = 0;
	for (CK_ULONG i = 0; i < count; i++) {
		if (tmpl[i].type != CKA_SENSITIVE && tmpl[i].type != CKA_EXTRACTABLE)
			forced[n++] = tmpl[i];
	}
	forced[n++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &yes, sizeof(yes)};
	forced[n++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &no, sizeof(no)};
	return real->C_DeriveKey(session, mech, base, forced, n, key);
}

static CK_RV quirks_derive_key(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech,
                               CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                               CK_OBJECT_HANDLE_PTR key)
{
	if (mech != NULL && hidden_mechanism(mech->mechanism))
		return CKR_MECHANISM_INVALID;
	CK_RV rv = template_refused(tmpl, count);
	if (rv != CKR_OK)
		return rv;
	if ((quirks & QUIRK_SENSITIVE_DERIVE) && is_ecdh(mech))
		return derive_sensitive(session, mech, base, tmpl, count, key);
	return real->C_DeriveKey(session, mech, base, tmpl, count, key);
}

/* ---- Loading ---- */

static CK_RV quirks_get_function_list(CK_FUNCTION_LIST_PTR_PTR list);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static CK_RV load_rv = CKR_GENERAL_ERROR;

/* Loads the real module (once; the handle is kept for the life of the process) and builds
 * quirks_list from its function list. */
static void load_real_module(void)
{
	const char *path = getenv("BKV_QUIRKS_MODULE");
	if (path == NULL || path[0] == '\0')
		path = QUIRKS_DEFAULT_MODULE;
	void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL) {
		fprintf(stderr, "bkv-pkcs11-quirks: cannot load %s: %s\n", path, dlerror());
		return;
	}
	CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(handle, "C_GetFunctionList");
	CK_FUNCTION_LIST *list = NULL;
	if (get_list == NULL || get_list(&list) != CKR_OK || list == NULL) {
		fprintf(stderr, "bkv-pkcs11-quirks: %s has no usable C_GetFunctionList\n", path);
		dlclose(handle);
		return;
	}
	quirks_list = *list;
	quirks_list.C_Initialize = quirks_initialize;
	quirks_list.C_GetFunctionList = quirks_get_function_list;
	quirks_list.C_GetMechanismList = quirks_get_mechanism_list;
	quirks_list.C_GetMechanismInfo = quirks_get_mechanism_info;
	quirks_list.C_CreateObject = quirks_create_object;
	quirks_list.C_CopyObject = quirks_copy_object;
	quirks_list.C_GetAttributeValue = quirks_get_attribute_value;
	quirks_list.C_SetAttributeValue = quirks_set_attribute_value;
	quirks_list.C_FindObjectsInit = quirks_find_objects_init;
	quirks_list.C_EncryptInit = quirks_encrypt_init;
	quirks_list.C_DecryptInit = quirks_decrypt_init;
	quirks_list.C_GenerateKey = quirks_generate_key;
	quirks_list.C_GenerateKeyPair = quirks_generate_key_pair;
	quirks_list.C_WrapKey = quirks_wrap_key;
	quirks_list.C_UnwrapKey = quirks_unwrap_key;
	quirks_list.C_DeriveKey = quirks_derive_key;
	real = list;
	load_rv = CKR_OK;
}

static CK_RV quirks_get_function_list(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_once(&load_once, load_real_module);
	if (load_rv == CKR_OK)
		*list = &quirks_list;
	return load_rv;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	return quirks_get_function_list(list);
}
