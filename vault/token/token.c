/*
 * token.c - opening a token (the module through token_module.c, the token by label, the
 * session and login), object lookup, session copies, and the AES-256-GCM operations.
 *
 * Invariants: the PIN lives only in locked memory and never reaches a message; every
 * PKCS#11 failure is mapped to a bkv_token_err and remembered as last_error, so callers
 * can tell "the token is down" (retry, UNAVAILABLE) from "the data is bad".
 */
#include <stdarg.h>
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
	case BKV_TOKEN_ERR_KEY_UNFIT:
		return "a key in the token is not fit for its use";
	case BKV_TOKEN_ERR_NOMEM:
		return "out of memory";
	case BKV_TOKEN_ERR_UNSUPPORTED:
		return "the token does not support an operation the configuration needs";
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
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_FUNCTION_NOT_SUPPORTED:
	case CKR_ATTRIBUTE_TYPE_INVALID:
	case CKR_ATTRIBUTE_VALUE_INVALID:
	case CKR_ATTRIBUTE_SENSITIVE:
	case CKR_TEMPLATE_INCONSISTENT:
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		err = BKV_TOKEN_ERR_UNSUPPORTED;
		break;
	default:
		err = BKV_TOKEN_ERR_DEVICE;
		break;
	}
	if (t != NULL) {
		t->last_error = err;
		t->last_rv = rv;
		t->last_call[0] = '\0'; /* token_call names it */
	}
	return err;
}

bkv_token_err token_call(bkv_token *t, CK_RV rv, const char *fmt, ...)
{
	const bkv_token_err err = token_rv(t, rv);
	if (rv != CKR_OK) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(t->last_call, sizeof(t->last_call), fmt, ap);
		va_end(ap);
	}
	return err;
}

const char *bkv_token_last_call(const bkv_token *t)
{
	return t != NULL ? t->last_call : "";
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

static bkv_token_err open_token(const bkv_token_config *config, bkv_token **token, char *why,
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
	t->p256_ake = config->p256_ake;
	t->gcm_iv_len = BKV_TOKEN_IV_BYTES;
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
	err =
	    token_module_open(config->module_path, config->init_args, &t->module, msg, sizeof(msg));
	if (err != BKV_TOKEN_OK) {
		set_why(why, why_len, msg, CKR_OK);
		goto fail;
	}
	t->fn = token_module_functions(t->module);
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

bkv_token_err bkv_token_open(const bkv_token_config *config, bkv_token **token, char *why,
                             size_t why_len)
{
	const bkv_token_err err = open_token(config, token, why, why_len);
	const bkv_token_key_store *store = config != NULL ? config->key_store : NULL;
	if (store != NULL && err == BKV_TOKEN_OK)
		(*token)->key_store = *store;
	else if (store != NULL && store->close != NULL)
		store->close(store->arg);
	return err;
}

/* Destroys the session copies (while the session lives) and forgets every handle. */
static void unload_keys(bkv_token *t)
{
	if (t->session_open) {
		for (size_t i = 0; i < t->nseal; i++) {
			token_drop_session_copy(t, t->seal[i].handle);
			token_drop_session_copy(t, t->seal[i].mac);
		}
		if (t->ticket_loaded) {
			token_drop_session_copy(t, t->ticket.handle);
			token_drop_session_copy(t, t->ticket.mac);
		}
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

/* No C_Logout: the login belongs to every session this process has on the token, other
 * bkv_tokens' too. Closing the last one logs the token out (PKCS#11 C_CloseSession). */
static void close_session(bkv_token *t)
{
	if (t->session_open) {
		t->fn->C_CloseSession(t->session);
		t->session_open = false;
	}
}

void bkv_token_close(bkv_token *t)
{
	if (t == NULL)
		return;
	unload_keys(t);
	if (t->fn != NULL)
		close_session(t);
	token_module_close(t->module);
	if (t->key_store.close != NULL)
		t->key_store.close(t->key_store.arg);
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
	if (count == 0) {
		snprintf(t->last_call, sizeof(t->last_call), "no object labelled %s", label);
		return BKV_TOKEN_ERR_KEY_MISSING;
	}
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
		t->copy_refused = true;
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

void token_mac_label(char *out, size_t out_len, const char *aes_label)
{
	const char *dash = strrchr(aes_label, '-'); /* "bkv-seal-" N, "bkv-ticket-" 1 */
	const int prefix = dash != NULL ? (int)(dash - aes_label) : (int)strlen(aes_label);
	snprintf(out, out_len, "%.*s-mac%s", prefix, aes_label, dash != NULL ? dash : "");
}

bool token_mechanism_listed(bkv_token *t, CK_MECHANISM_TYPE type, CK_FLAGS need)
{
	CK_MECHANISM_INFO info;
	return t->fn->C_GetMechanismInfo(t->slot, type, &info) == CKR_OK &&
	       (info.flags & need) == need;
}

bool token_has_gcm(bkv_token *t)
{
	return token_mechanism_listed(t, CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT);
}

/* Session copies of key's token objects (AES key and HMAC key, if any) into copy. */
static bkv_token_err copy_seal_key(bkv_token *t, const token_seal_key *key, token_seal_key *copy)
{
	copy->version = key->version;
	copy->mac = CK_INVALID_HANDLE;
	bkv_token_err err = token_session_copy(t, key->handle, &copy->handle);
	if (err == BKV_TOKEN_OK && key->mac != CK_INVALID_HANDLE) {
		err = token_session_copy(t, key->mac, &copy->mac);
		if (err != BKV_TOKEN_OK)
			token_drop_session_copy(t, copy->handle);
	}
	return err;
}

/* key->mac = the token object of the HMAC key that pairs with the AES key labelled label,
 * or CK_INVALID_HANDLE if it has none (it seals with GCM). */
static bkv_token_err find_mac_key(bkv_token *t, const char *label, token_seal_key *key)
{
	char mac_label[BKV_TOKEN_LABEL_MAX + 8];
	token_mac_label(mac_label, sizeof(mac_label), label);
	bkv_token_err err = token_find(t, CKO_SECRET_KEY, mac_label, &key->mac);
	if (err == BKV_TOKEN_ERR_KEY_MISSING) {
		key->mac = CK_INVALID_HANDLE; /* a GCM key: nothing is missing */
		t->last_call[0] = '\0';
		err = BKV_TOKEN_OK;
	}
	return err;
}

/* The token objects of the AES key labelled label and of its HMAC key, if any. */
static bkv_token_err find_seal_key(bkv_token *t, const char *label, token_seal_key *key)
{
	bkv_token_err err = token_find(t, CKO_SECRET_KEY, label, &key->handle);
	return err == BKV_TOKEN_OK ? find_mac_key(t, label, key) : err;
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
	/* Each version's HMAC key, if it seals with CBC_HMAC. */
	for (size_t i = 0; i < *count; i++) {
		char label[32];
		snprintf(label, sizeof(label), "bkv-seal-%u", keys[i].version);
		bkv_token_err err = find_mac_key(t, label, &keys[i]);
		if (err != BKV_TOKEN_OK)
			return err;
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
		err = copy_seal_key(t, &found[i], &t->seal[i]);
		if (err == BKV_TOKEN_OK)
			t->nseal = i + 1;
	}
	token_seal_key ticket = {.version = 1, .handle = CK_INVALID_HANDLE};
	if (err == BKV_TOKEN_OK)
		err = find_seal_key(t, "bkv-ticket-1", &ticket);
	if (err == BKV_TOKEN_OK)
		err = copy_seal_key(t, &ticket, &t->ticket);
	if (err == BKV_TOKEN_OK)
		t->ticket_loaded = true;
	CK_OBJECT_HANDLE obj;
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

/* ---- Sealing ---- */

bkv_token_err token_load_seal_version(bkv_token *t, uint32_t version)
{
	if (t->nseal == 0 || version <= t->seal[t->nseal - 1].version)
		return BKV_TOKEN_ERR_ARGUMENT;
	char label[32];
	snprintf(label, sizeof(label), "bkv-seal-%u", version);
	token_seal_key found = {.version = version, .handle = CK_INVALID_HANDLE};
	bkv_token_err err = find_seal_key(t, label, &found);
	if (err == BKV_TOKEN_OK && t->nseal == TOKEN_MAX_SEAL_KEYS)
		err = BKV_TOKEN_ERR_NOMEM;
	if (err == BKV_TOKEN_OK)
		err = copy_seal_key(t, &found, &t->seal[t->nseal]);
	if (err == BKV_TOKEN_OK)
		t->nseal++;
	return err;
}

/* The loaded key, or NULL. */
static const token_seal_key *loaded_key(const bkv_token *t, bkv_token_aead_key key,
                                        uint32_t version)
{
	if (key == BKV_TOKEN_KEY_TICKET)
		return version == 1 && t->ticket_loaded ? &t->ticket : NULL;
	for (size_t i = 0; i < t->nseal; i++) {
		if (t->seal[i].version == version)
			return &t->seal[i];
	}
	return NULL;
}

static const token_seal_key *aead_key(bkv_token *t, bkv_token_aead_key key, uint32_t version,
                                      bkv_token_err *err)
{
	const token_seal_key *k = loaded_key(t, key, version);
	*err = BKV_TOKEN_OK;
	if (k != NULL)
		return k;
	/* A newer version than this session loaded: another process rotated the key (a
	 * replica restarted first). Load it now, so records it sealed still open here. */
	*err = key == BKV_TOKEN_KEY_SEAL ? token_load_seal_version(t, version)
	                                 : BKV_TOKEN_ERR_KEY_MISSING;
	if (*err == BKV_TOKEN_ERR_ARGUMENT) /* not newer than every loaded version */
		*err = BKV_TOKEN_ERR_KEY_MISSING;
	return *err == BKV_TOKEN_OK ? &t->seal[t->nseal - 1] : NULL;
}

bkv_token_scheme bkv_token_key_scheme(const bkv_token *t, bkv_token_aead_key key, uint32_t version)
{
	const token_seal_key *k = t != NULL ? loaded_key(t, key, version) : NULL;
	if (k == NULL)
		return 0;
	return k->mac != CK_INVALID_HANDLE ? BKV_TOKEN_SCHEME_CBC_HMAC : BKV_TOKEN_SCHEME_GCM;
}

#define HMAC_BYTES 32
#define CBC_IV     16

/* tag = HMAC-SHA256(mac, head || aad || I2OSP(aad_len, 8)): head is the box up to the end
 * of the ciphertext. */
static CK_RV cbc_tag(bkv_token *t, CK_OBJECT_HANDLE mac, const uint8_t *head, size_t head_len,
                     const uint8_t *aad, size_t aad_len, uint8_t tag[HMAC_BYTES])
{
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)((uint64_t)aad_len >> (56 - 8 * i));
	CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG tag_len = HMAC_BYTES;
	CK_RV rv = t->fn->C_SignInit(t->session, &mech, mac);
	if (rv == CKR_OK)
		rv = t->fn->C_SignUpdate(t->session, (CK_BYTE_PTR)head, head_len);
	if (rv == CKR_OK && aad_len > 0)
		rv = t->fn->C_SignUpdate(t->session, (CK_BYTE_PTR)aad, aad_len);
	if (rv == CKR_OK)
		rv = t->fn->C_SignUpdate(t->session, len, sizeof(len));
	if (rv == CKR_OK)
		rv = t->fn->C_SignFinal(t->session, tag, &tag_len);
	if (rv == CKR_OK && tag_len != HMAC_BYTES)
		rv = CKR_GENERAL_ERROR;
	return rv;
}

static void gcm_params(CK_GCM_PARAMS *p, uint8_t *iv, CK_ULONG iv_len, const uint8_t *aad,
                       size_t aad_len)
{
	*p = (CK_GCM_PARAMS){
	    .pIv = iv,
	    .ulIvLen = iv_len,
	    .ulIvBits = iv_len * 8,
	    .pAAD = (CK_BYTE_PTR)aad,
	    .ulAADLen = aad_len,
	    .ulTagBits = BKV_TOKEN_TAG_BYTES * 8,
	};
}

/* Never hand the module a NULL buffer: SoftHSM rejects it with CKR_ARGUMENTS_BAD and
 * leaves the operation active, which wedges the session. */
static uint8_t empty_buffer;
#define NONNULL(p) ((p) != NULL ? (CK_BYTE_PTR)(p) : &empty_buffer)

bkv_token_err bkv_token_seal_box(bkv_token *t, bkv_token_aead_key key, uint32_t version,
                                 const uint8_t *aad, size_t aad_len, const uint8_t *plaintext,
                                 size_t plaintext_len, uint8_t *out, size_t out_cap,
                                 size_t *out_len)
{
	if (t == NULL || (aad == NULL && aad_len > 0) || (plaintext == NULL && plaintext_len > 0) ||
	    out == NULL || out_len == NULL || plaintext_len > TOKEN_SCRATCH_BYTES ||
	    out_cap < plaintext_len + BKV_TOKEN_BOX_OVERHEAD_MAX)
		return BKV_TOKEN_ERR_ARGUMENT;
	*out_len = 0;
	bkv_token_err err;
	const token_seal_key *k = aead_key(t, key, version, &err);
	if (k == NULL)
		return err;
	CK_RV rv;
	CK_ULONG produced;
	size_t body;
	const uint64_t started = token_now_us();
	if (k->mac == CK_INVALID_HANDLE) {
		/* GCM. A token that chooses the IV itself writes it back into the parameters;
		 * one that wants a 16-byte buffer for it refuses a 12-byte one, once. */
		uint8_t iv[BKV_TOKEN_IV_MAX];
		uint8_t ours[BKV_TOKEN_IV_MAX];
		CK_ULONG iv_len = t->gcm_iv_len;
		CK_GCM_PARAMS params;
		CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
		for (;;) {
			randombytes_buf(iv, iv_len);
			memcpy(ours, iv, iv_len);
			gcm_params(&params, iv, iv_len, aad, aad_len);
			rv = t->fn->C_EncryptInit(t->session, &mech, k->handle);
			if (rv != CKR_MECHANISM_PARAM_INVALID || iv_len == BKV_TOKEN_IV_MAX)
				break;
			iv_len = BKV_TOKEN_IV_MAX;
		}
		body = 2 + iv_len;
		produced = plaintext_len + BKV_TOKEN_TAG_BYTES;
		if (rv == CKR_OK)
			rv = t->fn->C_Encrypt(t->session, NONNULL(plaintext), plaintext_len,
			                      out + body, &produced);
		if (rv == CKR_OK && produced != plaintext_len + BKV_TOKEN_TAG_BYTES)
			rv = CKR_GENERAL_ERROR;
		if (rv == CKR_OK) {
			t->gcm_iv_len = iv_len;
			t->gcm_iv_chosen |= memcmp(ours, iv, iv_len) != 0;
			out[0] = BKV_TOKEN_SCHEME_GCM;
			out[1] = (uint8_t)iv_len;
			memcpy(out + 2, iv, iv_len); /* the IV the token used */
		}
	} else {
		/* CBC-PAD, then HMAC over everything before the tag and the AAD. */
		out[0] = BKV_TOKEN_SCHEME_CBC_HMAC;
		out[1] = CBC_IV;
		randombytes_buf(out + 2, CBC_IV);
		uint8_t iv[CBC_IV];
		memcpy(iv, out + 2, CBC_IV);
		CK_MECHANISM mech = {CKM_AES_CBC_PAD, iv, CBC_IV};
		body = 2 + CBC_IV;
		produced = out_cap - body - HMAC_BYTES;
		rv = t->fn->C_EncryptInit(t->session, &mech, k->handle);
		if (rv == CKR_OK)
			rv = t->fn->C_Encrypt(t->session, NONNULL(plaintext), plaintext_len,
			                      out + body, &produced);
		if (rv == CKR_OK && (produced <= plaintext_len || produced > plaintext_len + 16 ||
		                     produced % 16 != 0))
			rv = CKR_GENERAL_ERROR;
		if (rv == CKR_OK)
			rv = cbc_tag(t, k->mac, out, body + produced, aad, aad_len,
			             out + body + produced);
		if (rv == CKR_OK)
			produced += HMAC_BYTES;
	}
	token_observe(t, BKV_TOKEN_OP_ENCRYPT, started);
	if (rv != CKR_OK) {
		sodium_memzero(out, out_cap);
		return token_rv(t, rv);
	}
	*out_len = body + produced;
	return BKV_TOKEN_OK;
}

/* A failed GCM check (or CBC padding) is bad data, not a token failure. SoftHSM reports it as
 * CKR_GENERAL_ERROR, so that code counts as bad data while the session is still
 * healthy. */
static bool decrypt_found_bad_data(bkv_token *t, CK_RV rv)
{
	return rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_DATA_INVALID ||
	       rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
	       (rv == CKR_GENERAL_ERROR && session_healthy(t));
}

bkv_token_err bkv_token_open_box(bkv_token *t, bkv_token_aead_key key, uint32_t version,
                                 const uint8_t *aad, size_t aad_len, const uint8_t *box,
                                 size_t box_len, uint8_t *plaintext, size_t plaintext_cap,
                                 size_t *plaintext_len)
{
	if (t == NULL || (aad == NULL && aad_len > 0) || box == NULL || plaintext_len == NULL ||
	    (plaintext == NULL && plaintext_cap > 0))
		return BKV_TOKEN_ERR_ARGUMENT;
	*plaintext_len = 0;
	bkv_token_err err;
	const token_seal_key *k = aead_key(t, key, version, &err);
	if (k == NULL)
		return err;
	/* The header, checked against the key's own scheme before the token sees anything. */
	const bool cbc = k->mac != CK_INVALID_HANDLE;
	if (box_len < 2 || box[0] != (cbc ? BKV_TOKEN_SCHEME_CBC_HMAC : BKV_TOKEN_SCHEME_GCM))
		return BKV_TOKEN_ERR_AUTH;
	const size_t iv_len = box[1];
	const size_t head = 2 + iv_len;
	const size_t tag = cbc ? HMAC_BYTES : BKV_TOKEN_TAG_BYTES;
	if ((cbc ? iv_len != CBC_IV : iv_len != BKV_TOKEN_IV_BYTES && iv_len != BKV_TOKEN_IV_MAX) ||
	    box_len < head + tag + (cbc ? 16 : 0) || (cbc && (box_len - head - tag) % 16 != 0))
		return BKV_TOKEN_ERR_AUTH;
	const size_t in_len = box_len - head; /* ciphertext || tag */
	if (in_len > TOKEN_SCRATCH_BYTES)
		return BKV_TOKEN_ERR_AUTH;
	uint8_t iv[BKV_TOKEN_IV_MAX];
	memcpy(iv, box + 2, iv_len);
	uint8_t *tmp = t->scratch;
	CK_ULONG produced = TOKEN_SCRATCH_BYTES;
	CK_RV rv;
	bool auth_failed = false;
	const uint64_t started = token_now_us();
	if (!cbc) {
		CK_GCM_PARAMS params;
		gcm_params(&params, iv, iv_len, aad, aad_len);
		CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
		rv = t->fn->C_DecryptInit(t->session, &mech, k->handle);
		if (rv == CKR_OK)
			rv = t->fn->C_Decrypt(t->session, (CK_BYTE_PTR)box + head, in_len, tmp,
			                      &produced);
		if (rv == CKR_OK && produced != in_len - tag)
			rv = CKR_GENERAL_ERROR;
		auth_failed = rv != CKR_OK && decrypt_found_bad_data(t, rv);
	} else {
		uint8_t expected[HMAC_BYTES];
		rv = cbc_tag(t, k->mac, box, box_len - tag, aad, aad_len, expected);
		auth_failed =
		    rv == CKR_OK && sodium_memcmp(expected, box + box_len - tag, tag) != 0;
		CK_MECHANISM mech = {CKM_AES_CBC_PAD, iv, CBC_IV};
		if (rv == CKR_OK && !auth_failed)
			rv = t->fn->C_DecryptInit(t->session, &mech, k->handle);
		if (rv == CKR_OK && !auth_failed)
			rv = t->fn->C_Decrypt(t->session, (CK_BYTE_PTR)box + head, in_len - tag,
			                      tmp, &produced);
		/* Bad padding under a valid tag: bad data from someone with the MAC key. */
		auth_failed = auth_failed || (rv != CKR_OK && decrypt_found_bad_data(t, rv));
	}
	token_observe(t, BKV_TOKEN_OP_DECRYPT, started);
	if (rv == CKR_OK && !auth_failed && produced <= plaintext_cap) {
		if (produced > 0)
			memcpy(plaintext, tmp, produced);
		*plaintext_len = produced;
	} else if (rv == CKR_OK && !auth_failed) {
		err = BKV_TOKEN_ERR_ARGUMENT;
	} else if (auth_failed) {
		err = t->last_error = BKV_TOKEN_ERR_AUTH;
	} else {
		err = token_rv(t, rv);
	}
	sodium_memzero(tmp, in_len);
	if (err != BKV_TOKEN_OK && plaintext != NULL)
		sodium_memzero(plaintext, plaintext_cap);
	return err;
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
