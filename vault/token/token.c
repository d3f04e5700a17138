/*
 * token.c - loading the PKCS#11 module through p11-kit, finding the token by label,
 * the session and login, object lookup, session copies, and the AES-256-GCM operations.
 *
 * Invariants: the PIN lives only in locked memory and never reaches a message; every
 * PKCS#11 failure is mapped to a bkv_token_err and remembered as last_error, so callers
 * can tell "the token is down" (retry, UNAVAILABLE) from "the data is bad".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>
#include <sodium.h>

#include "token_internal.h"

const char *bkv_token_strerror(bkv_token_err err)
{
	switch (err) {
	case BKV_TOKEN_OK:
		return "success";
	case BKV_TOKEN_ERR_ARGUMENT:
		return "invalid token argument or configuration";
	case BKV_TOKEN_ERR_MODULE:
		return "the PKCS#11 module cannot be loaded or initialized";
	case BKV_TOKEN_ERR_NO_TOKEN:
		return "no token with the configured label";
	case BKV_TOKEN_ERR_PIN:
		return "the token rejected the PIN";
	case BKV_TOKEN_ERR_KEY_MISSING:
		return "a required key is missing from the token (run `bkvd init`)";
	case BKV_TOKEN_ERR_KEY_IN_USE:
		return "the key is still in use";
	case BKV_TOKEN_ERR_AUTH:
		return "sealed data failed authentication";
	case BKV_TOKEN_ERR_DEVICE:
		return "the token failed during an operation";
	case BKV_TOKEN_ERR_NOMEM:
		return "out of memory";
	}
	return "unknown token error";
}

bkv_token_err token_rv(bkv_token *t, CK_RV rv)
{
	bkv_token_err err;
	switch (rv) {
	case CKR_OK:
		return BKV_TOKEN_OK;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_LOCKED:
	case CKR_PIN_EXPIRED:
		err = BKV_TOKEN_ERR_PIN;
		break;
	case CKR_ENCRYPTED_DATA_INVALID:
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
		err = BKV_TOKEN_ERR_AUTH;
		break;
	case CKR_HOST_MEMORY:
		err = BKV_TOKEN_ERR_NOMEM;
		break;
	case CKR_ARGUMENTS_BAD:
		err = BKV_TOKEN_ERR_ARGUMENT;
		break;
	default:
		err = BKV_TOKEN_ERR_DEVICE;
		break;
	}
	if (t != NULL) {
		t->last_error = err;
		t->last_rv = rv;
	}
	return err;
}

unsigned long bkv_token_last_rv(const bkv_token *t)
{
	return t != NULL ? (unsigned long)t->last_rv : 0;
}

/* why = msg [+ " (" PKCS#11 error ")"]; msg never contains the PIN. */
static void set_why(char *why, size_t why_len, const char *msg, CK_RV rv)
{
	if (why == NULL || why_len == 0)
		return;
	if (rv != CKR_OK)
		snprintf(why, why_len, "%s (%s)", msg, p11_kit_strerror(rv));
	else
		snprintf(why, why_len, "%s", msg);
}

/* Finds the slot whose token label (blank-padded to 32) equals label. */
static bkv_token_err find_slot(bkv_token *t, CK_SLOT_ID *slot)
{
	CK_ULONG count = 0;
	CK_RV rv = t->fn->C_GetSlotList(CK_TRUE, NULL, &count);
	if (rv != CKR_OK)
		return token_rv(t, rv);
	if (count == 0)
		return BKV_TOKEN_ERR_NO_TOKEN;
	CK_SLOT_ID *slots = calloc(count, sizeof(*slots));
	if (slots == NULL)
		return BKV_TOKEN_ERR_NOMEM;
	bkv_token_err err = BKV_TOKEN_ERR_NO_TOKEN;
	rv = t->fn->C_GetSlotList(CK_TRUE, slots, &count);
	if (rv != CKR_OK) {
		err = token_rv(t, rv);
		count = 0;
	}
	char padded[32];
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, t->label, strlen(t->label));
	for (CK_ULONG i = 0; i < count; i++) {
		CK_TOKEN_INFO info;
		if (t->fn->C_GetTokenInfo(slots[i], &info) != CKR_OK)
			continue;
		if (memcmp(info.label, padded, sizeof(padded)) == 0) {
			*slot = slots[i];
			err = BKV_TOKEN_OK;
			break;
		}
	}
	free(slots);
	return err;
}

static bkv_token_err open_session(bkv_token *t)
{
	CK_RV rv = t->fn->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	                                &t->session);
	if (rv != CKR_OK)
		return token_rv(t, rv);
	t->session_open = true;
	rv = t->fn->C_Login(t->session, CKU_USER, (CK_UTF8CHAR_PTR)t->pin, t->pin_len);
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		bkv_token_err err = token_rv(t, rv);
		t->fn->C_CloseSession(t->session);
		t->session_open = false;
		return err;
	}
	return BKV_TOKEN_OK;
}

bkv_token_err bkv_token_open(const bkv_token_config *config, bkv_token **token, char *why,
                             size_t why_len)
{
	if (token == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	*token = NULL;
	if (config == NULL || config->module_path == NULL || config->token_label == NULL ||
	    config->pin == NULL || config->pin_len == 0 || config->pin_len > BKV_TOKEN_PIN_MAX ||
	    strlen(config->token_label) == 0 || strlen(config->token_label) > BKV_TOKEN_LABEL_MAX) {
		set_why(why, why_len,
		        "token configuration incomplete: module, label (at most 32 bytes) and PIN "
		        "are required",
		        CKR_OK);
		return BKV_TOKEN_ERR_ARGUMENT;
	}
	if (sodium_init() < 0)
		return BKV_TOKEN_ERR_NOMEM;
	bkv_token *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return BKV_TOKEN_ERR_NOMEM;
	snprintf(t->label, sizeof(t->label), "%s", config->token_label);
	t->pin = sodium_malloc(config->pin_len);
	if (t->pin == NULL) {
		free(t);
		return BKV_TOKEN_ERR_NOMEM;
	}
	memcpy(t->pin, config->pin, config->pin_len);
	t->pin_len = config->pin_len;
	t->scratch = sodium_malloc(TOKEN_SCRATCH_BYTES);
	if (t->scratch == NULL) {
		sodium_free(t->pin);
		free(t);
		return BKV_TOKEN_ERR_NOMEM;
	}

	bkv_token_err err;
	char msg[512];
	t->fn = p11_kit_module_load(config->module_path, 0);
	if (t->fn == NULL) {
		snprintf(msg, sizeof(msg), "cannot load PKCS#11 module %s", config->module_path);
		set_why(why, why_len, msg, CKR_OK);
		err = BKV_TOKEN_ERR_MODULE;
		goto fail;
	}
	CK_RV rv = p11_kit_module_initialize(t->fn);
	if (rv != CKR_OK) {
		snprintf(msg, sizeof(msg), "cannot initialize PKCS#11 module %s",
		         config->module_path);
		set_why(why, why_len, msg, rv);
		p11_kit_module_release(t->fn);
		t->fn = NULL;
		err = BKV_TOKEN_ERR_MODULE;
		goto fail;
	}
	err = find_slot(t, &t->slot);
	if (err != BKV_TOKEN_OK) {
		snprintf(msg, sizeof(msg), "no token labelled \"%s\" in PKCS#11 module %s",
		         t->label, config->module_path);
		set_why(why, why_len, msg, CKR_OK);
		goto fail;
	}
	err = open_session(t);
	if (err == BKV_TOKEN_ERR_PIN) {
		snprintf(msg, sizeof(msg), "token \"%s\" rejected the user PIN", t->label);
		set_why(why, why_len, msg, CKR_OK);
		goto fail;
	}
	if (err != BKV_TOKEN_OK) {
		snprintf(msg, sizeof(msg), "cannot open a session on token \"%s\"", t->label);
		set_why(why, why_len, msg, CKR_OK);
		goto fail;
	}
	*token = t;
	return BKV_TOKEN_OK;
fail:
	bkv_token_close(t);
	return err;
}

/* Destroys the session copies (while the session lives) and forgets every handle. */
static void unload_keys(bkv_token *t)
{
	if (t->session_open) {
		for (size_t i = 0; i < t->nseal; i++)
			token_drop_session_copy(t, t->seal[i].handle);
		if (t->ticket_loaded)
			token_drop_session_copy(t, t->ticket);
		if (t->state_mac_loaded)
			token_drop_session_copy(t, t->state_mac);
	}
	for (size_t i = 0; i < TOKEN_NUM_SUITES; i++)
		token_suite_keys_clear(&t->suites[i]);
	memset(t->seal, 0, sizeof(t->seal));
	t->nseal = 0;
	t->ticket_loaded = false;
	t->state_mac_loaded = false;
}

static void close_session(bkv_token *t)
{
	if (t->session_open) {
		t->fn->C_Logout(t->session);
		t->fn->C_CloseSession(t->session);
		t->session_open = false;
	}
}

void bkv_token_close(bkv_token *t)
{
	if (t == NULL)
		return;
	unload_keys(t);
	if (t->fn != NULL) {
		close_session(t);
		p11_kit_module_finalize(t->fn);
		p11_kit_module_release(t->fn);
	}
	sodium_free(t->pin);
	sodium_free(t->scratch);
	sodium_memzero(t, sizeof(*t));
	free(t);
}

void bkv_token_set_observer(bkv_token *t, bkv_token_observer_fn fn, void *arg)
{
	if (t != NULL) {
		t->observer = fn;
		t->observer_arg = arg;
	}
}

uint64_t token_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void token_observe(bkv_token *t, bkv_token_op op, uint64_t started_us)
{
	if (t->observer != NULL)
		t->observer(t->observer_arg, op, token_now_us() - started_us);
}

bkv_token_err bkv_token_last_error(const bkv_token *t)
{
	return t ? t->last_error : BKV_TOKEN_ERR_ARGUMENT;
}

static bool session_healthy(bkv_token *t)
{
	CK_SESSION_INFO info;
	return t->fn->C_GetSessionInfo(t->session, &info) == CKR_OK &&
	       info.state == CKS_RW_USER_FUNCTIONS;
}

bkv_token_err bkv_token_check(bkv_token *t)
{
	if (t == NULL || !t->session_open)
		return BKV_TOKEN_ERR_DEVICE;
	return session_healthy(t) ? BKV_TOKEN_OK : BKV_TOKEN_ERR_DEVICE;
}

bkv_token_err bkv_token_reopen(bkv_token *t)
{
	if (t == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	unload_keys(t);
	close_session(t);
	/* The slot may have changed if the token was re-inserted. */
	bkv_token_err err = find_slot(t, &t->slot);
	if (err == BKV_TOKEN_OK)
		err = open_session(t);
	if (err == BKV_TOKEN_OK && t->nloaded > 0) {
		opaque_suite_id suites[TOKEN_NUM_SUITES];
		size_t n = t->nloaded;
		memcpy(suites, t->loaded_suites, n * sizeof(suites[0]));
		err = bkv_token_load_keys(t, suites, n);
	}
	t->last_error = err;
	return err;
}

/* ---- Object helpers ---- */

const char *token_suite_label_part(opaque_suite_id suite)
{
	switch (suite) {
	case OPAQUE_SUITE_P256_SHA256:
		return "p256-sha256";
	case OPAQUE_SUITE_RISTRETTO255_SHA512:
		return "ristretto255-sha512";
	}
	return "unknown";
}

void token_label(char *out, size_t out_len, const char *prefix, opaque_suite_id suite)
{
	snprintf(out, out_len, "%s%s", prefix, token_suite_label_part(suite));
}

bkv_token_err token_find(bkv_token *t, CK_OBJECT_CLASS cls, const char *label,
                         CK_OBJECT_HANDLE *handle)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	};
	CK_RV rv = t->fn->C_FindObjectsInit(t->session, tmpl, 3);
	if (rv != CKR_OK)
		return token_rv(t, rv);
	CK_OBJECT_HANDLE found[2];
	CK_ULONG count = 0;
	rv = t->fn->C_FindObjects(t->session, found, 2, &count);
	t->fn->C_FindObjectsFinal(t->session);
	if (rv != CKR_OK)
		return token_rv(t, rv);
	if (count == 0)
		return BKV_TOKEN_ERR_KEY_MISSING;
	*handle = found[0];
	return BKV_TOKEN_OK;
}

bkv_token_err token_session_copy(bkv_token *t, CK_OBJECT_HANDLE obj, CK_OBJECT_HANDLE *copy)
{
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}};
	CK_RV rv = t->fn->C_CopyObject(t->session, obj, tmpl, 1, copy);
	/* Tokens without C_CopyObject (YubiHSM 2, tpm2-pkcs11, Google's library), or that
	 * refuse to copy a sensitive key: use the token object itself, only slower. */
	if (rv == CKR_FUNCTION_NOT_SUPPORTED || rv == CKR_ACTION_PROHIBITED ||
	    rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_TEMPLATE_INCONSISTENT) {
		*copy = obj;
		return BKV_TOKEN_OK;
	}
	return token_rv(t, rv);
}

void token_drop_session_copy(bkv_token *t, CK_OBJECT_HANDLE h)
{
	CK_BBOOL on_token = CK_TRUE;
	CK_ATTRIBUTE a = {CKA_TOKEN, &on_token, sizeof(on_token)};
	if (h != CK_INVALID_HANDLE && t->fn->C_GetAttributeValue(t->session, h, &a, 1) == CKR_OK &&
	    on_token == CK_FALSE)
		t->fn->C_DestroyObject(t->session, h);
}

bkv_token_err token_get_attribute(bkv_token *t, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                                  void *buf, size_t *len)
{
	CK_ATTRIBUTE a = {type, buf, *len};
	CK_RV rv = t->fn->C_GetAttributeValue(t->session, obj, &a, 1);
	if (rv != CKR_OK)
		return token_rv(t, rv);
	*len = a.ulValueLen;
	return BKV_TOKEN_OK;
}

/* "bkv-seal-<N>" with N a decimal in [1, 2^32). */
static bool parse_seal_label(const char *label, size_t len, uint32_t *version)
{
	static const char prefix[] = "bkv-seal-";
	const size_t plen = sizeof(prefix) - 1;
	if (len <= plen || len > plen + 10 || memcmp(label, prefix, plen) != 0)
		return false;
	uint64_t v = 0;
	for (size_t i = plen; i < len; i++) {
		if (label[i] < '0' || label[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(label[i] - '0');
	}
	if (v == 0 || v > UINT32_MAX || label[plen] == '0')
		return false;
	*version = (uint32_t)v;
	return true;
}

bkv_token_err token_list_seal_keys(bkv_token *t, token_seal_key *keys, size_t max, size_t *count)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	};
	*count = 0;
	CK_RV rv = t->fn->C_FindObjectsInit(t->session, tmpl, 3);
	if (rv != CKR_OK)
		return token_rv(t, rv);
	CK_OBJECT_HANDLE found[TOKEN_MAX_SEAL_KEYS + 8];
	CK_ULONG n = 0;
	rv = t->fn->C_FindObjects(t->session, found, TOKEN_MAX_SEAL_KEYS + 8, &n);
	t->fn->C_FindObjectsFinal(t->session);
	if (rv != CKR_OK)
		return token_rv(t, rv);
	for (CK_ULONG i = 0; i < n; i++) {
		char label[64];
		size_t len = sizeof(label);
		bkv_token_err err = token_get_attribute(t, found[i], CKA_LABEL, label, &len);
		if (err != BKV_TOKEN_OK)
			return err;
		uint32_t version;
		if (!parse_seal_label(label, len, &version))
			continue;
		if (*count == max)
			return BKV_TOKEN_ERR_ARGUMENT;
		/* Insertion sort by version. */
		size_t j = *count;
		while (j > 0 && keys[j - 1].version > version) {
			keys[j] = keys[j - 1];
			j--;
		}
		keys[j].version = version;
		keys[j].handle = found[i];
		(*count)++;
	}
	return BKV_TOKEN_OK;
}

bkv_token_err bkv_token_load_keys(bkv_token *t, const opaque_suite_id *suites, size_t nsuites)
{
	if (t == NULL || suites == NULL || nsuites == 0 || nsuites > TOKEN_NUM_SUITES)
		return BKV_TOKEN_ERR_ARGUMENT;
	unload_keys(t);
	token_seal_key found[TOKEN_MAX_SEAL_KEYS];
	size_t count = 0;
	bkv_token_err err = token_list_seal_keys(t, found, TOKEN_MAX_SEAL_KEYS, &count);
	if (err == BKV_TOKEN_OK && count == 0)
		err = BKV_TOKEN_ERR_KEY_MISSING;
	for (size_t i = 0; err == BKV_TOKEN_OK && i < count; i++) {
		t->seal[i].version = found[i].version;
		err = token_session_copy(t, found[i].handle, &t->seal[i].handle);
		if (err == BKV_TOKEN_OK)
			t->nseal = i + 1;
	}
	CK_OBJECT_HANDLE obj;
	if (err == BKV_TOKEN_OK)
		err = token_find(t, CKO_SECRET_KEY, "bkv-ticket-1", &obj);
	if (err == BKV_TOKEN_OK)
		err = token_session_copy(t, obj, &t->ticket);
	if (err == BKV_TOKEN_OK)
		t->ticket_loaded = true;
	if (err == BKV_TOKEN_OK)
		err = token_find(t, CKO_SECRET_KEY, BKV_TOKEN_STATE_MAC_LABEL, &obj);
	if (err == BKV_TOKEN_OK)
		err = token_session_copy(t, obj, &t->state_mac);
	if (err == BKV_TOKEN_OK)
		t->state_mac_loaded = true;
	for (size_t i = 0; err == BKV_TOKEN_OK && i < nsuites; i++) {
		token_suite_keys *sk = &t->suites[i];
		sk->token = t;
		sk->suite = suites[i];
		err = token_suite_keys_load(t, sk);
	}
	if (err != BKV_TOKEN_OK) {
		unload_keys(t);
		t->last_error = err;
		return err;
	}
	memcpy(t->loaded_suites, suites, nsuites * sizeof(suites[0]));
	t->nloaded = nsuites;
	return BKV_TOKEN_OK;
}

const opaque_server_keys *bkv_token_server_keys(bkv_token *t, opaque_suite_id suite)
{
	if (t == NULL)
		return NULL;
	for (size_t i = 0; i < TOKEN_NUM_SUITES; i++) {
		if (t->suites[i].loaded && t->suites[i].suite == suite)
			return &t->suites[i].keys;
	}
	return NULL;
}

uint32_t bkv_token_seal_version(const bkv_token *t)
{
	return (t != NULL && t->nseal > 0) ? t->seal[t->nseal - 1].version : 0;
}

/* ---- AES-256-GCM ---- */

bkv_token_err token_load_seal_version(bkv_token *t, uint32_t version, CK_OBJECT_HANDLE *handle)
{
	if (t->nseal == 0 || version <= t->seal[t->nseal - 1].version)
		return BKV_TOKEN_ERR_ARGUMENT;
	char label[32];
	snprintf(label, sizeof(label), "bkv-seal-%u", version);
	CK_OBJECT_HANDLE obj, copy;
	bkv_token_err err = token_find(t, CKO_SECRET_KEY, label, &obj);
	if (err == BKV_TOKEN_OK && t->nseal == TOKEN_MAX_SEAL_KEYS)
		err = BKV_TOKEN_ERR_NOMEM;
	if (err == BKV_TOKEN_OK)
		err = token_session_copy(t, obj, &copy);
	if (err != BKV_TOKEN_OK)
		return err;
	t->seal[t->nseal].version = version;
	t->seal[t->nseal].handle = copy;
	t->nseal++;
	*handle = copy;
	return BKV_TOKEN_OK;
}

static bkv_token_err aead_key(bkv_token *t, bkv_token_aead_key key, uint32_t version,
                              CK_OBJECT_HANDLE *handle)
{
	if (key == BKV_TOKEN_KEY_TICKET) {
		if (version != 1 || !t->ticket_loaded)
			return BKV_TOKEN_ERR_KEY_MISSING;
		*handle = t->ticket;
		return BKV_TOKEN_OK;
	}
	for (size_t i = 0; i < t->nseal; i++) {
		if (t->seal[i].version == version) {
			*handle = t->seal[i].handle;
			return BKV_TOKEN_OK;
		}
	}
	/* A newer version than this session loaded: another process rotated the key (a
	 * replica restarted first). Load it now, so records it sealed still open here. */
	if (t->nseal == 0 || version <= t->seal[t->nseal - 1].version)
		return BKV_TOKEN_ERR_KEY_MISSING;
	return token_load_seal_version(t, version, handle);
}

/* iv_out (encryption only; NULL otherwise) receives the IV the token used. */
static bkv_token_err aead(bkv_token *t, bool encrypt, bkv_token_aead_key key, uint32_t version,
                          const uint8_t iv[BKV_TOKEN_IV_BYTES], uint8_t *iv_out, const uint8_t *aad,
                          size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out,
                          size_t out_len)
{
	if (t == NULL || iv == NULL || (aad == NULL && aad_len > 0) || (in == NULL && in_len > 0) ||
	    (out == NULL && out_len > 0))
		return BKV_TOKEN_ERR_ARGUMENT;
	if (encrypt ? out_len != in_len + BKV_TOKEN_TAG_BYTES
	            : (in_len < BKV_TOKEN_TAG_BYTES || out_len != in_len - BKV_TOKEN_TAG_BYTES))
		return BKV_TOKEN_ERR_ARGUMENT;
	CK_OBJECT_HANDLE handle;
	bkv_token_err err = aead_key(t, key, version, &handle);
	if (err != BKV_TOKEN_OK)
		return err;
	uint8_t iv_copy[BKV_TOKEN_IV_BYTES];
	memcpy(iv_copy, iv, sizeof(iv_copy));
	CK_GCM_PARAMS params = {
	    .pIv = iv_copy,
	    .ulIvLen = BKV_TOKEN_IV_BYTES,
	    .ulIvBits = BKV_TOKEN_IV_BYTES * 8,
	    .pAAD = (CK_BYTE_PTR)aad,
	    .ulAADLen = aad_len,
	    .ulTagBits = BKV_TOKEN_TAG_BYTES * 8,
	};
	CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
	/* Never hand the module a NULL buffer: SoftHSM rejects it with CKR_ARGUMENTS_BAD
	 * and leaves the operation active, which wedges the session. */
	uint8_t empty = 0;
	if (in == NULL)
		in = &empty;
	if (out == NULL)
		out = &empty;
	CK_ULONG produced = out_len;
	CK_RV rv;
	const uint64_t started = token_now_us();
	if (encrypt) {
		rv = t->fn->C_EncryptInit(t->session, &mech, handle);
		if (rv == CKR_OK)
			rv = t->fn->C_Encrypt(t->session, (CK_BYTE_PTR)in, in_len, out, &produced);
	} else {
		/* C_Decrypt may need room for the tag while it verifies. Records and tickets fit
		 * the session's locked scratch buffer; sodium_malloc per call costs ~30 us. */
		uint8_t *tmp = in_len <= TOKEN_SCRATCH_BYTES ? t->scratch : sodium_malloc(in_len);
		if (tmp == NULL)
			return BKV_TOKEN_ERR_NOMEM;
		produced = in_len;
		rv = t->fn->C_DecryptInit(t->session, &mech, handle);
		if (rv == CKR_OK)
			rv = t->fn->C_Decrypt(t->session, (CK_BYTE_PTR)in, in_len, tmp, &produced);
		if (rv == CKR_OK && produced == out_len)
			memcpy(out, tmp, out_len);
		if (tmp == t->scratch)
			sodium_memzero(tmp, in_len);
		else
			sodium_free(tmp);
	}
	token_observe(t, encrypt ? BKV_TOKEN_OP_ENCRYPT : BKV_TOKEN_OP_DECRYPT, started);
	if (rv != CKR_OK) {
		sodium_memzero(out, out_len);
		err = token_rv(t, rv);
		/* A failed GCM check is bad data, not a token failure. SoftHSM reports it as
		 * CKR_GENERAL_ERROR, so that code counts as bad data while the session is
		 * still healthy. */
		if (!encrypt && (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_DATA_INVALID ||
		                 rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
		                 (rv == CKR_GENERAL_ERROR && session_healthy(t)))) {
			err = BKV_TOKEN_ERR_AUTH;
			t->last_error = err;
		}
		return err;
	}
	if (produced != out_len) {
		sodium_memzero(out, out_len);
		return token_rv(t, CKR_GENERAL_ERROR);
	}
	/* The IV the token used: ours, or one it chose and wrote into the parameters. */
	if (iv_out != NULL)
		memcpy(iv_out, iv_copy, sizeof(iv_copy));
	return BKV_TOKEN_OK;
}

bkv_token_err bkv_token_encrypt(bkv_token *t, bkv_token_aead_key key, uint32_t version,
                                uint8_t iv[BKV_TOKEN_IV_BYTES], const uint8_t *aad, size_t aad_len,
                                const uint8_t *plaintext, size_t plaintext_len, uint8_t *out,
                                size_t out_len)
{
	return aead(t, true, key, version, iv, iv, aad, aad_len, plaintext, plaintext_len, out,
	            out_len);
}

bkv_token_err bkv_token_decrypt(bkv_token *t, bkv_token_aead_key key, uint32_t version,
                                const uint8_t iv[BKV_TOKEN_IV_BYTES], const uint8_t *aad,
                                size_t aad_len, const uint8_t *in, size_t in_len,
                                uint8_t *plaintext, size_t plaintext_len)
{
	return aead(t, false, key, version, iv, NULL, aad, aad_len, in, in_len, plaintext,
	            plaintext_len);
}

bkv_token_err bkv_token_state_mac(bkv_token *t, const uint8_t *data, size_t data_len,
                                  uint8_t mac[BKV_TOKEN_STATE_MAC_BYTES])
{
	if (t == NULL || data == NULL || data_len == 0 || mac == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	if (!t->state_mac_loaded)
		return BKV_TOKEN_ERR_KEY_MISSING;
	CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG mac_len = BKV_TOKEN_STATE_MAC_BYTES;
	const uint64_t started = token_now_us();
	CK_RV rv = t->fn->C_SignInit(t->session, &mech, t->state_mac);
	if (rv == CKR_OK)
		rv = t->fn->C_Sign(t->session, (CK_BYTE_PTR)data, data_len, mac, &mac_len);
	token_observe(t, BKV_TOKEN_OP_HMAC, started);
	if (rv == CKR_OK && mac_len != BKV_TOKEN_STATE_MAC_BYTES)
		rv = CKR_GENERAL_ERROR;
	if (rv != CKR_OK) {
		sodium_memzero(mac, BKV_TOKEN_STATE_MAC_BYTES);
		return token_rv(t, rv);
	}
	return BKV_TOKEN_OK;
}
