/*
 * test_token.c - behaviour tests of the vault's token layer (vault/token) against a real
 * SoftHSM2 token (cmocka): the protection of every key, the key ceremony, OPAQUE with
 * token-held server keys against the software client, full-point P-256 DH recovery (with
 * the token and with a software x-only oracle), sealed records, seal-key rotation, loading
 * the module (the loader's reasons, p11-kit's proxy, init_args on the quirks module and on
 * NSS softoken, sharing one module between tokens), and faults (bad configuration, sessions
 * closed underneath, the token's files removed).
 *
 * Run it through tests/with-softhsm, which makes a throw-away token and exports
 * BKV_TEST_PKCS11_MODULE, BKV_TEST_TOKEN_LABEL, BKV_TEST_PIN_FILE and BKV_TEST_TOKEN_DIR,
 * with the quirks module (build/lib/libbkv-pkcs11-quirks.so) as the only argument: through
 * it the same SoftHSM2 poses as a token without GCM, or one that chooses the GCM IV itself.
 * ctest also sets BKV_TEST_QUIRKS_MODULE (the same module) for the init_args tests.
 * Keys for both suites are created once on that token; every test that changes a token
 * (rotation, replacement, faults) initializes a token of its own in the same SoftHSM2
 * directory, so tests do not depend on each other's order. Objects are inspected through
 * this program's own PKCS#11 session, never through the token layer's internals. To compare
 * the token's HMAC with the software HKDF byte for byte, one token gets OPRF seeds of known
 * value imported in place of the generated ones.
 *
 * Expected values come from the specification (token.h, record_seal.h, RFC 9807) or from
 * an independent computation (OpenSSL, the pure-software server keys), never from running
 * the token code and pasting its output.
 */
#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <sodium.h>

#include "opaque/opaque.h"
#include "opaque_internal.h"
#include "record_seal.h"
#include "token.h"
#include "token_ecdh.h"
#include "testtoken.h"

/* ------------------------------------------------------------------------------------ */
/* Environment, fixtures and helpers                                                     */
/* ------------------------------------------------------------------------------------ */

#define P256 OPAQUE_SUITE_P256_SHA256
#define R255 OPAQUE_SUITE_RISTRETTO255_SHA512

/* Random points checked against software DH, through the token and through the oracle. */
#define TOKEN_RANDOM_POINTS  5000
#define ORACLE_RANDOM_POINTS 2000
#define R255_RANDOM_POINTS   500

static opaque_suite_id suite_p256 = P256;
static opaque_suite_id suite_r255 = R255;
static const opaque_suite_id both_suites[] = {P256, R255};

static const char CONTEXT[] = "bkv test_token";
static const char PASSWORD[] = "CorrectHorseBatteryStaple";
static const char OTHER_PASSWORD[] = "CorrectHorseBatteryStapler";
static const char CRED_ID[] = "alice@example.org";
static const char OTHER_CRED_ID[] = "bob@example.org";
static const uint8_t ACCOUNT[] = {'a', 'c', 'c', 't', '-', '0', '0', '0', '1'};
static const uint8_t OTHER_ACCOUNT[] = {'a', 'c', 'c', 't', '-', '0', '0', '0', '2'};
static const char WRONG_PIN[] = "bkv-wrong-pin-5f1c9a";

/* A sealed record as record_seal.h and token.h lay it out on a token that seals with GCM and
 * picks no IV of its own (SoftHSM2): 0x02 || seal key version (4) || box, and box = scheme (1)
 * || iv_len (1) || iv (12) || ciphertext || tag (16). */
#define RECORD_VERSION   7u
#define RECORD_PT_BYTES  48
#define RECORD_SCHEME_AT (1 + 4)
#define RECORD_IVLEN_AT  (RECORD_SCHEME_AT + 1)
#define RECORD_IV_AT     (RECORD_IVLEN_AT + 1)
#define RECORD_CT_AT     (RECORD_IV_AT + 12)
#define RECORD_TAG_AT    (RECORD_CT_AT + RECORD_PT_BYTES)
#define RECORD_SEALED    (RECORD_TAG_AT + 16)
/* What bkv_record_seal asks of the output buffer for RECORD_PT_BYTES. */
#define RECORD_SEAL_CAP (RECORD_PT_BYTES + BKV_RECORD_SEAL_OVERHEAD_MAX)
/* Format 0x01: 0x01 || seal key version (4) || iv (12) || ciphertext || tag (16). */
#define LEGACY_RECORD_SEALED (1 + 4 + 12 + RECORD_PT_BYTES + 16)
/* A sealed AKE private key (32 bytes): 0x02 || seal key version (4) || GCM box, 12-byte IV;
 * before seal schemes: seal key version (4) || iv (12) || ciphertext (32) || tag (16). */
#define AKE_SEALED_GCM_SIZE    (1 + 4 + 2 + 12 + 32 + 16)
#define AKE_SEALED_LEGACY_SIZE (4 + 12 + 32 + 16)

static const char *g_module;
static const char *g_quirks_module; /* tests/pkcs11-quirks, over g_module */
static const char *g_label;
static const char *g_token_dir;
static char g_pin[BKV_TOKEN_PIN_MAX + 1];
static size_t g_pin_len;
/* This program's own view of the module (p11-kit managed). Keeping it initialized for the
 * whole run keeps SoftHSM2 initialized between vault handles. */
static CK_FUNCTION_LIST *g_fn;

static bkv_token_config config_for(const char *label)
{
	bkv_token_config c = {
	    .module_path = g_module, .token_label = label, .pin = g_pin, .pin_len = g_pin_len};
	return c;
}

static bool why_is_clean(const char *why)
{
	return strstr(why, g_pin) == NULL && strstr(why, WRONG_PIN) == NULL;
}

static bkv_token *vault_open(const char *label)
{
	bkv_token_config cfg = config_for(label);
	bkv_token *t = NULL;
	char why[256] = "";
	bkv_token_err err = bkv_token_open(&cfg, &t, why, sizeof(why));
	if (err != BKV_TOKEN_OK)
		print_error("bkv_token_open(%s): %s: %s\n", label, bkv_token_strerror(err), why);
	assert_int_equal(err, BKV_TOKEN_OK);
	assert_non_null(t);
	return t;
}

static bkv_token *vault_open_loaded(const char *label)
{
	bkv_token *t = vault_open(label);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	return t;
}

/* Everything bkv_token_create_keys reported. */
typedef struct key_report {
	char label[64];
	char what[16];
	uint8_t public_key[OPAQUE_MAX_ELEMENT_BYTES];
	size_t public_key_len;
} key_report;

typedef struct report_log {
	key_report r[16];
	size_t n;
} report_log;

static void collect_report(void *arg, const char *label, const char *what,
                           const uint8_t *public_key, size_t public_key_len)
{
	report_log *log = arg;
	assert_true(log->n < sizeof(log->r) / sizeof(log->r[0]));
	key_report *r = &log->r[log->n++];
	snprintf(r->label, sizeof(r->label), "%s", label);
	snprintf(r->what, sizeof(r->what), "%s", what);
	assert_true(public_key_len <= sizeof(r->public_key));
	if (public_key != NULL)
		memcpy(r->public_key, public_key, public_key_len);
	r->public_key_len = public_key_len;
}

static const key_report *find_report(const report_log *log, const char *label)
{
	const key_report *found = NULL;
	for (size_t i = 0; i < log->n; i++) {
		if (strcmp(log->r[i].label, label) == 0) {
			assert_null(found); /* each key is reported once */
			found = &log->r[i];
		}
	}
	assert_non_null(found);
	return found;
}

static void create_keys(bkv_token *t, bool replace, report_log *log)
{
	report_log ignored;
	memset(&ignored, 0, sizeof(ignored));
	assert_int_equal(
	    bkv_token_create_keys(t, both_suites, 2,
	                          replace ? BKV_TOKEN_INIT_REPLACE : BKV_TOKEN_INIT_CREATE,
	                          collect_report, log != NULL ? log : &ignored),
	    BKV_TOKEN_OK);
}

/* ---- This program's own PKCS#11 view ---- */

static CK_SLOT_ID slot_of(const char *label)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64;
	assert_int_equal(g_fn->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	char padded[32];
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, label, strlen(label));
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO info;
		if (g_fn->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    (info.flags & CKF_TOKEN_INITIALIZED) != 0 &&
		    memcmp(info.label, padded, sizeof(padded)) == 0)
			return slots[i];
	}
	fail_msg("no token labelled %s", label);
	return 0;
}

/* A user session of our own. Login state is per token and process in PKCS#11, so never
 * C_Logout here: that would log the vault's session out too. */
static CK_SESSION_HANDLE inspect_session(const char *label, bool rw)
{
	CK_SESSION_HANDLE h;
	CK_FLAGS flags = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
	assert_int_equal(g_fn->C_OpenSession(slot_of(label), flags, NULL, NULL, &h), CKR_OK);
	CK_RV rv = g_fn->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)g_pin, g_pin_len);
	assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
	return h;
}

static void inspect_close(CK_SESSION_HANDLE h)
{
	g_fn->C_CloseSession(h);
}

/* Up to max handles of objects matching tmpl; returns the count. */
static CK_ULONG find_objects(CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG ntmpl,
                             CK_OBJECT_HANDLE *found, CK_ULONG max)
{
	CK_ULONG n = 0;
	assert_int_equal(g_fn->C_FindObjectsInit(h, tmpl, ntmpl), CKR_OK);
	assert_int_equal(g_fn->C_FindObjects(h, found, max, &n), CKR_OK);
	assert_int_equal(g_fn->C_FindObjectsFinal(h), CKR_OK);
	return n;
}

/* Token objects of any class with label. */
static CK_ULONG count_labelled(CK_SESSION_HANDLE h, const char *label)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	};
	CK_OBJECT_HANDLE found[8];
	return find_objects(h, tmpl, 2, found, 8);
}

/* The one token object of class cls with label. */
static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = find_objects(h, tmpl, 3, found, 2);
	if (n != 1)
		fail_msg("%lu objects of class %lu labelled %s, expected 1", (unsigned long)n,
		         (unsigned long)cls, label);
	return found[0];
}

static CK_BBOOL get_bool(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v = 0xAA;
	CK_ATTRIBUTE a = {type, &v, sizeof(v)};
	CK_RV rv = g_fn->C_GetAttributeValue(h, obj, &a, 1);
	if (rv != CKR_OK)
		fail_msg("attribute 0x%lx unreadable: rv 0x%lx", (unsigned long)type,
		         (unsigned long)rv);
	assert_int_equal(a.ulValueLen, sizeof(CK_BBOOL));
	return v;
}

#define assert_attr(h, obj, type, expected)                                                        \
	do {                                                                                       \
		CK_BBOOL v_ = get_bool((h), (obj), (type));                                        \
		if ((v_ == CK_TRUE) != (expected))                                                 \
			fail_msg("%s: %s is %s, expected %s", #obj, #type,                         \
			         v_ == CK_TRUE ? "TRUE" : "FALSE", (expected) ? "TRUE" : "FALSE"); \
	} while (0)

static void assert_value_unreadable(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj)
{
	uint8_t buf[128];
	CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof(buf)};
	assert_int_equal(g_fn->C_GetAttributeValue(h, obj, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	/* Asking for the length only is refused too. */
	CK_ATTRIBUTE len_only = {CKA_VALUE, NULL, 0};
	assert_int_equal(g_fn->C_GetAttributeValue(h, obj, &len_only, 1), CKR_ATTRIBUTE_SENSITIVE);
}

static void assert_protected_secret(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj)
{
	assert_attr(h, obj, CKA_SENSITIVE, true);
	assert_attr(h, obj, CKA_EXTRACTABLE, false);
	assert_attr(h, obj, CKA_ALWAYS_SENSITIVE, true);
	assert_attr(h, obj, CKA_NEVER_EXTRACTABLE, true);
	assert_attr(h, obj, CKA_PRIVATE, true);
}

/* The names of the subdirectories of the SoftHSM2 token directory, newline-separated. */
static void list_token_dirs(char *out, size_t out_len)
{
	DIR *d = opendir(g_token_dir);
	assert_non_null(d);
	out[0] = '\0';
	for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
		if (e->d_name[0] == '.')
			continue;
		size_t used = strlen(out);
		snprintf(out + used, out_len - used, "%s\n", e->d_name);
	}
	closedir(d);
}

/* Initializes a new token labelled label (user PIN = the test PIN, a random SO PIN) on
 * SoftHSM2's free slot. If dir is not NULL it receives the token's directory. */
static void init_token(const char *label, char *dir, size_t dir_len)
{
	char before[4096], after[4096];
	list_token_dirs(before, sizeof(before));
	/* SoftHSM2 adds a free slot when asked for the slot count and none is left. */
	CK_ULONG count = 0;
	assert_int_equal(g_fn->C_GetSlotList(CK_FALSE, NULL, &count), CKR_OK);
	CK_SLOT_ID slots[64];
	assert_true(count <= 64);
	assert_int_equal(g_fn->C_GetSlotList(CK_FALSE, slots, &count), CKR_OK);
	CK_SLOT_ID free_slot = (CK_SLOT_ID)-1;
	for (CK_ULONG i = 0; i < count; i++) {
		CK_TOKEN_INFO info;
		if (g_fn->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    (info.flags & CKF_TOKEN_INITIALIZED) == 0) {
			free_slot = slots[i];
			break;
		}
	}
	assert_true(free_slot != (CK_SLOT_ID)-1);
	uint8_t so_raw[12];
	char so_pin[2 * sizeof(so_raw) + 1];
	randombytes_buf(so_raw, sizeof(so_raw));
	sodium_bin2hex(so_pin, sizeof(so_pin), so_raw, sizeof(so_raw));
	CK_UTF8CHAR padded[32];
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, label, strlen(label));
	assert_int_equal(
	    g_fn->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), padded), CKR_OK);
	CK_SESSION_HANDLE h;
	assert_int_equal(g_fn->C_OpenSession(slot_of(label), CKF_SERIAL_SESSION | CKF_RW_SESSION,
	                                     NULL, NULL, &h),
	                 CKR_OK);
	assert_int_equal(g_fn->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin)), CKR_OK);
	assert_int_equal(g_fn->C_InitPIN(h, (CK_UTF8CHAR_PTR)g_pin, g_pin_len), CKR_OK);
	assert_int_equal(g_fn->C_Logout(h), CKR_OK);
	assert_int_equal(g_fn->C_CloseSession(h), CKR_OK);
	if (dir != NULL) {
		list_token_dirs(after, sizeof(after));
		dir[0] = '\0';
		for (char *line = strtok(after, "\n"); line != NULL; line = strtok(NULL, "\n")) {
			char needle[300];
			snprintf(needle, sizeof(needle), "%s\n", line);
			if (strstr(before, needle) == NULL) {
				assert_true(dir[0] == '\0'); /* exactly one new directory */
				snprintf(dir, dir_len, "%s/%s", g_token_dir, line);
			}
		}
		assert_true(dir[0] != '\0');
	}
}

/* A new token with keys for both suites, opened and loaded. */
static bkv_token *fresh_token_with_keys(const char *label)
{
	init_token(label, NULL, 0);
	bkv_token *t = vault_open(label);
	create_keys(t, false, NULL);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	return t;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tree(const char *path)
{
	assert_int_equal(nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* Closes every PKCS#11 session on the token's slot behind the vault's back: the module is
 * loaded unmanaged, so the call reaches SoftHSM2 itself rather than a p11-kit wrapper that
 * would close only its own sessions. */
static void close_all_sessions_underneath(const char *label)
{
	CK_FUNCTION_LIST *raw = p11_kit_module_load(g_module, P11_KIT_MODULE_UNMANAGED);
	assert_non_null(raw);
	/* The same SoftHSM2 instance the vault uses, so it is initialized already. */
	assert_int_equal(raw->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_int_equal(raw->C_CloseAllSessions(slot_of(label)), CKR_OK);
	p11_kit_module_release(raw); /* never C_Finalize: the vault still uses the module */
}

/* Per-test fixture: the main token, opened with both suites loaded. */
typedef struct fx {
	bkv_token *t;
	opaque_suite_id suite;
} fx;

static int vault_setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->suite = *state != NULL ? *(opaque_suite_id *)*state : P256;
	bkv_token_config cfg = config_for(g_label);
	char why[256] = "";
	if (bkv_token_open(&cfg, &f->t, why, sizeof(why)) != BKV_TOKEN_OK ||
	    bkv_token_load_keys(f->t, both_suites, 2) != BKV_TOKEN_OK) {
		print_error("cannot open the test token: %s\n", why);
		bkv_token_close(f->t);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int vault_teardown(void **state)
{
	fx *f = *state;
	bkv_token_close(f->t);
	free(f);
	return 0;
}

/* ---- OPAQUE helpers ---- */

#define STR(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

static opaque_config config_of(opaque_suite_id suite)
{
	opaque_config c = {
	    .suite = suite,
	    .context = (const uint8_t *)CONTEXT,
	    .context_len = sizeof(CONTEXT) - 1,
	    .ksf = {.id = OPAQUE_KSF_IDENTITY},
	};
	return c;
}

static void registration_response(const opaque_server_keys *keys, opaque_suite_id suite,
                                  const char *cred_id, const uint8_t *request, uint8_t *response)
{
	const opaque_sizes *sz = opaque_suite_sizes(suite);
	opaque_config cfg = config_of(suite);
	assert_int_equal(opaque_server_registration_response(
	                     &cfg, keys, (const uint8_t *)cred_id, strlen(cred_id), request,
	                     sz->registration_request, response, sz->registration_response),
	                 OPAQUE_OK);
}

static void register_user(const opaque_server_keys *keys, opaque_suite_id suite,
                          const char *cred_id, uint8_t *record, uint8_t *export_key)
{
	const opaque_sizes *sz = opaque_suite_sizes(suite);
	opaque_config cfg = config_of(suite);
	opaque_client_registration_state st;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	assert_int_equal(opaque_client_registration_start(&cfg, STR(PASSWORD), &st, request,
	                                                  sz->registration_request),
	                 OPAQUE_OK);
	registration_response(keys, suite, cred_id, request, response);
	assert_int_equal(opaque_client_registration_finish(
	                     &cfg, &st, STR(PASSWORD), NULL, response, sz->registration_response,
	                     record, sz->registration_record, export_key, sz->export_key),
	                 OPAQUE_OK);
}

typedef struct login_result {
	opaque_err client;
	opaque_err server;
	uint8_t client_session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t server_session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
} login_result;

/* A whole login with password; the server side uses keys. */
static login_result login_user(const opaque_server_keys *keys, opaque_suite_id suite,
                               const char *cred_id, const uint8_t *record, const char *password)
{
	const opaque_sizes *sz = opaque_suite_sizes(suite);
	opaque_config cfg = config_of(suite);
	opaque_client_login_state cst;
	opaque_server_login_state sst;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES], ke2[OPAQUE_MAX_KE2_BYTES], ke3[OPAQUE_MAX_KE3_BYTES];
	login_result r;
	memset(&r, 0, sizeof(r));
	r.server = OPAQUE_ERR_ARGUMENT;
	assert_int_equal(opaque_client_login_start(&cfg, (const uint8_t *)password,
	                                           strlen(password), &cst, ke1, sz->ke1),
	                 OPAQUE_OK);
	assert_int_equal(opaque_server_login_start(&cfg, keys, NULL, (const uint8_t *)cred_id,
	                                           strlen(cred_id), record, sz->registration_record,
	                                           ke1, sz->ke1, &sst, ke2, sz->ke2),
	                 OPAQUE_OK);
	r.client = opaque_client_login_finish(
	    &cfg, &cst, (const uint8_t *)password, strlen(password), NULL, ke2, sz->ke2, ke3,
	    sz->ke3, r.client_session_key, sz->session_key, r.export_key, sz->export_key);
	if (r.client == OPAQUE_OK)
		r.server = opaque_server_login_finish(&sst, ke3, sz->ke3, r.server_session_key,
		                                      sz->session_key);
	else
		opaque_server_login_state_wipe(&sst);
	return r;
}

/* ---- P-256 helpers (OpenSSL, independent of the token code) ---- */

typedef struct p256_ctx {
	EC_GROUP *g;
	BN_CTX *bn;
} p256_ctx;

static p256_ctx p256_new(void)
{
	p256_ctx c = {EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1), BN_CTX_new()};
	assert_non_null(c.g);
	assert_non_null(c.bn);
	return c;
}

static void p256_free(p256_ctx *c)
{
	BN_CTX_free(c->bn);
	EC_GROUP_free(c->g);
}

static void p256_encode(const p256_ctx *c, const EC_POINT *p, point_conversion_form_t form,
                        uint8_t *out, size_t len)
{
	assert_int_equal(EC_POINT_point2oct(c->g, p, form, out, len, c->bn), len);
}

/* out = m * in, for m in {1, -1, 2, -2}; in and out compressed. */
static void p256_times(const p256_ctx *c, const uint8_t in[33], int m, uint8_t out[33])
{
	EC_POINT *p = EC_POINT_new(c->g);
	assert_non_null(p);
	assert_int_equal(EC_POINT_oct2point(c->g, p, in, 33, c->bn), 1);
	if (m == 2 || m == -2)
		assert_int_equal(EC_POINT_dbl(c->g, p, p, c->bn), 1);
	if (m < 0)
		assert_int_equal(EC_POINT_invert(c->g, p, c->bn), 1);
	p256_encode(c, p, POINT_CONVERSION_COMPRESSED, out, 33);
	EC_POINT_free(p);
}

static void p256_generator(const p256_ctx *c, uint8_t out[33])
{
	p256_encode(c, EC_GROUP_get0_generator(c->g), POINT_CONVERSION_COMPRESSED, out, 33);
}

static void p256_uncompress(const p256_ctx *c, const uint8_t in[33], uint8_t out[65])
{
	EC_POINT *p = EC_POINT_new(c->g);
	assert_non_null(p);
	assert_int_equal(EC_POINT_oct2point(c->g, p, in, 33, c->bn), 1);
	p256_encode(c, p, POINT_CONVERSION_UNCOMPRESSED, out, 65);
	EC_POINT_free(p);
}

/* A software x-only Diffie-Hellman oracle with a known scalar k, standing in for the
 * token's CKM_ECDH1_DERIVE. corrupt_second makes every second answer wrong. */
typedef struct soft_oracle {
	p256_ctx c;
	BIGNUM *k;
	unsigned calls;
	bool corrupt_second;
	bool fail;
} soft_oracle;

static bkv_token_err soft_x_only_dh(void *ctx, const uint8_t peer[65], uint8_t x[32])
{
	soft_oracle *o = ctx;
	o->calls++;
	if (o->fail)
		return BKV_TOKEN_ERR_DEVICE;
	EC_POINT *p = EC_POINT_new(o->c.g);
	EC_POINT *r = EC_POINT_new(o->c.g);
	assert_non_null(p);
	assert_non_null(r);
	/* The recovery must only ever hand the oracle valid, non-identity points. */
	assert_int_equal(EC_POINT_oct2point(o->c.g, p, peer, 65, o->c.bn), 1);
	assert_false(EC_POINT_is_at_infinity(o->c.g, p));
	assert_int_equal(EC_POINT_mul(o->c.g, r, NULL, p, o->k, o->c.bn), 1);
	uint8_t enc[65];
	p256_encode(&o->c, r, POINT_CONVERSION_UNCOMPRESSED, enc, 65);
	memcpy(x, enc + 1, 32);
	if (o->corrupt_second && o->calls % 2 == 0)
		x[31] ^= 0x01;
	EC_POINT_free(r);
	EC_POINT_free(p);
	return BKV_TOKEN_OK;
}

/* A fresh oracle; sk (32 bytes) and S = sk * G (uncompressed and compressed) returned. */
static void soft_oracle_new(soft_oracle *o, uint8_t sk[32], uint8_t s_uncompressed[65],
                            uint8_t s_compressed[33])
{
	memset(o, 0, sizeof(*o));
	o->c = p256_new();
	assert_int_equal(opaque_generate_ake_key_pair(P256, sk, 32, s_compressed, 33), OPAQUE_OK);
	o->k = BN_bin2bn(sk, 32, NULL);
	assert_non_null(o->k);
	p256_uncompress(&o->c, s_compressed, s_uncompressed);
}

static void soft_oracle_free(soft_oracle *o)
{
	BN_clear_free(o->k);
	p256_free(&o->c);
}

/* ---- Records ---- */

static bool is_all(const uint8_t *p, size_t len, uint8_t value)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != value)
			return false;
	return true;
}

static void fill_plaintext_n(uint8_t *pt, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pt[i] = (uint8_t)(0x40 + i);
}

static void fill_plaintext(uint8_t pt[RECORD_PT_BYTES])
{
	fill_plaintext_n(pt, RECORD_PT_BYTES);
}

/* Seals pt_len bytes of fill_plaintext_n into out[cap] for ACCOUNT, P256, RECORD_VERSION;
 * returns the sealed length. */
static size_t seal_record_n(bkv_token *t, size_t pt_len, uint8_t *out, size_t cap)
{
	uint8_t pt[BKV_RECORD_SEAL_MAX];
	assert_true(pt_len <= sizeof(pt));
	fill_plaintext_n(pt, pt_len);
	size_t len = 0;
	assert_int_equal(bkv_record_seal(t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL, 0,
	                                 pt, pt_len, out, cap, &len),
	                 BKV_TOKEN_OK);
	assert_true(len > pt_len && len <= cap);
	return len;
}

/* A record sealed by a GCM key with a 12-byte IV: exactly RECORD_SEALED bytes. */
static void seal_record(bkv_token *t, uint8_t sealed[RECORD_SEALED])
{
	uint8_t out[RECORD_SEAL_CAP];
	assert_int_equal(seal_record_n(t, RECORD_PT_BYTES, out, sizeof(out)), RECORD_SEALED);
	memcpy(sealed, out, RECORD_SEALED);
}

/* Opens a record sealed by seal_record_n for ACCOUNT, P256, RECORD_VERSION. On success the
 * plaintext must be fill_plaintext_n's; a failed open never hands out plaintext (the
 * buffer is untouched or wiped, the length 0). */
static bkv_token_err open_record_n(bkv_token *t, const uint8_t *sealed, size_t sealed_len,
                                   size_t expected_pt_len)
{
	uint8_t pt[BKV_RECORD_SEAL_MAX], expected[BKV_RECORD_SEAL_MAX];
	size_t pt_len = 12345;
	memset(pt, 0xAA, sizeof(pt));
	bkv_token_err err = bkv_record_open(t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                    0, sealed, sealed_len, pt, sizeof(pt), &pt_len);
	if (err == BKV_TOKEN_OK) {
		assert_int_equal(pt_len, expected_pt_len);
		fill_plaintext_n(expected, expected_pt_len);
		assert_memory_equal(pt, expected, expected_pt_len);
	} else {
		assert_int_equal(pt_len, 0);
		for (size_t i = 0; i < sizeof(pt); i++)
			assert_true(pt[i] == 0xAA || pt[i] == 0);
	}
	return err;
}

static bkv_token_err open_record(bkv_token *t, const uint8_t *sealed, size_t sealed_len)
{
	return open_record_n(t, sealed, sealed_len, RECORD_PT_BYTES);
}

/* Every single-byte change (xor mask) in sealed[from, from+n) of a record that opens (with
 * pt_len bytes of plaintext) fails with AUTH. */
static void assert_flips_fail(bkv_token *t, uint8_t *sealed, size_t sealed_len, size_t pt_len,
                              size_t from, size_t n)
{
	assert_true(from + n <= sealed_len);
	assert_int_equal(open_record_n(t, sealed, sealed_len, pt_len), BKV_TOKEN_OK);
	static const uint8_t masks[] = {0x01, 0x80};
	for (size_t i = from; i < from + n; i++) {
		for (size_t m = 0; m < sizeof(masks); m++) {
			sealed[i] ^= masks[m];
			bkv_token_err err = open_record_n(t, sealed, sealed_len, pt_len);
			if (err != BKV_TOKEN_ERR_AUTH)
				fail_msg("byte %zu ^ 0x%02x: %s, expected AUTH", i, masks[m],
				         bkv_token_strerror(err));
			sealed[i] ^= masks[m];
		}
	}
	assert_int_equal(open_record_n(t, sealed, sealed_len, pt_len), BKV_TOKEN_OK);
}

/* Every single-byte change (xor mask) in sealed[from, from+len) fails with AUTH. */
static void assert_every_flip_fails(bkv_token *t, size_t from, size_t len)
{
	uint8_t sealed[RECORD_SEALED];
	seal_record(t, sealed);
	assert_flips_fail(t, sealed, sizeof(sealed), RECORD_PT_BYTES, from, len);
}

/* ------------------------------------------------------------------------------------ */
/* Key attributes                                                                        */
/* ------------------------------------------------------------------------------------ */

static const char *const secret_key_labels[] = {
    "bkv-seal-1",
    "bkv-ticket-1",
    "bkv-oprf-seed-p256-sha256",
    "bkv-oprf-seed-ristretto255-sha512",
    "bkv-state-mac-1",
};

static void secret_keys_are_sensitive_and_never_extractable(void **state)
{
	(void)state;
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	for (size_t i = 0; i < sizeof(secret_key_labels) / sizeof(secret_key_labels[0]); i++)
		assert_protected_secret(h, find_one(h, CKO_SECRET_KEY, secret_key_labels[i]));
	inspect_close(h);
}

static void p256_private_key_is_sensitive_and_never_extractable(void **state)
{
	(void)state;
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	assert_protected_secret(h, find_one(h, CKO_PRIVATE_KEY, "bkv-ake-p256-sha256"));
	inspect_close(h);
}

static void secret_key_values_cannot_be_read(void **state)
{
	(void)state;
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	for (size_t i = 0; i < sizeof(secret_key_labels) / sizeof(secret_key_labels[0]); i++)
		assert_value_unreadable(h, find_one(h, CKO_SECRET_KEY, secret_key_labels[i]));
	assert_value_unreadable(h, find_one(h, CKO_PRIVATE_KEY, "bkv-ake-p256-sha256"));
	inspect_close(h);
}

static void aes_keys_only_encrypt_and_decrypt(void **state)
{
	(void)state;
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	for (size_t i = 0; i < 2; i++) {
		CK_OBJECT_HANDLE k = find_one(h, CKO_SECRET_KEY, secret_key_labels[i]);
		assert_attr(h, k, CKA_ENCRYPT, true);
		assert_attr(h, k, CKA_DECRYPT, true);
		assert_attr(h, k, CKA_SIGN, false);
		assert_attr(h, k, CKA_VERIFY, false);
		assert_attr(h, k, CKA_WRAP, false);
		assert_attr(h, k, CKA_UNWRAP, false);
		assert_attr(h, k, CKA_DERIVE, false);
	}
	inspect_close(h);
}

static void oprf_seed_allows_only_hmac(void **state)
{
	(void)state;
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	for (size_t s = 0; s < 2; s++) {
		const bool p256 = both_suites[s] == P256;
		CK_OBJECT_HANDLE k = find_one(h, CKO_SECRET_KEY, secret_key_labels[2 + s]);
		assert_attr(h, k, CKA_SIGN, true);
		assert_attr(h, k, CKA_VERIFY, false);
		assert_attr(h, k, CKA_ENCRYPT, false);
		assert_attr(h, k, CKA_DECRYPT, false);
		assert_attr(h, k, CKA_DERIVE, false);
		assert_attr(h, k, CKA_WRAP, false);
		assert_attr(h, k, CKA_UNWRAP, false);
		CK_ULONG len = 0;
		CK_ATTRIBUTE value_len = {CKA_VALUE_LEN, &len, sizeof(len)};
		assert_int_equal(g_fn->C_GetAttributeValue(h, k, &value_len, 1), CKR_OK);
		assert_int_equal(len, opaque_suite_sizes(both_suites[s])->Nh);
		/* CKA_ALLOWED_MECHANISMS, where the module reports it: the suite's HMAC only. */
		CK_MECHANISM_TYPE mechs[8];
		CK_ATTRIBUTE allowed = {CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)};
		if (g_fn->C_GetAttributeValue(h, k, &allowed, 1) == CKR_OK) {
			assert_int_equal(allowed.ulValueLen, sizeof(CK_MECHANISM_TYPE));
			assert_int_equal(mechs[0], p256 ? CKM_SHA256_HMAC : CKM_SHA512_HMAC);
		}
	}
	inspect_close(h);
}

/* The token itself refuses any other use of the seed, not just the attributes. */
static void oprf_seed_refuses_other_mechanisms(void **state)
{
	(void)state;
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	CK_OBJECT_HANDLE k = find_one(h, CKO_SECRET_KEY, "bkv-oprf-seed-p256-sha256");
	CK_MECHANISM other_hmac = {CKM_SHA512_HMAC, NULL, 0};
	assert_int_not_equal(g_fn->C_SignInit(h, &other_hmac, k), CKR_OK);
	CK_MECHANISM verify = {CKM_SHA256_HMAC, NULL, 0};
	assert_int_not_equal(g_fn->C_VerifyInit(h, &verify, k), CKR_OK);
	uint8_t iv[16] = {0};
	CK_MECHANISM aes = {CKM_AES_CBC, iv, sizeof(iv)};
	assert_int_not_equal(g_fn->C_EncryptInit(h, &aes, k), CKR_OK);
	CK_OBJECT_HANDLE derived;
	CK_MECHANISM derive = {CKM_SHA256_KEY_DERIVATION, NULL, 0};
	assert_int_not_equal(g_fn->C_DeriveKey(h, &derive, k, NULL, 0, &derived), CKR_OK);
	/* Its own mechanism works. */
	CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
	uint8_t mac[32];
	CK_ULONG mac_len = sizeof(mac);
	assert_int_equal(g_fn->C_SignInit(h, &hmac, k), CKR_OK);
	assert_int_equal(g_fn->C_Sign(h, (CK_BYTE_PTR) "x", 1, mac, &mac_len), CKR_OK);
	assert_int_equal(mac_len, 32);
	inspect_close(h);
}

static void p256_private_key_only_derives(void **state)
{
	(void)state;
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	CK_OBJECT_HANDLE k = find_one(h, CKO_PRIVATE_KEY, "bkv-ake-p256-sha256");
	assert_attr(h, k, CKA_DERIVE, true);
	assert_attr(h, k, CKA_SIGN, false);
	assert_attr(h, k, CKA_DECRYPT, false);
	assert_attr(h, k, CKA_UNWRAP, false);
	inspect_close(h);
}

/* The value of the one data object labelled label; returns its length. */
static size_t read_data_object(CK_SESSION_HANDLE h, const char *label, uint8_t *value, size_t cap)
{
	CK_OBJECT_HANDLE obj = find_one(h, CKO_DATA, label);
	CK_ATTRIBUTE a = {CKA_VALUE, value, cap};
	assert_int_equal(g_fn->C_GetAttributeValue(h, obj, &a, 1), CKR_OK);
	return a.ulValueLen;
}

/* No 32-byte window of value, taken as a private key of suite, has public_key. */
static void assert_no_window_is_the_key(opaque_suite_id suite, const uint8_t *value, size_t len,
                                        const uint8_t *public_key)
{
	p256_ctx c = p256_new();
	EC_POINT *p = EC_POINT_new(c.g);
	BIGNUM *k = BN_new();
	assert_non_null(p);
	assert_non_null(k);
	for (size_t at = 0; at + 32 <= len; at++) {
		uint8_t pk[33];
		if (suite == R255) {
			if (crypto_scalarmult_ristretto255_base(pk, value + at) == 0)
				assert_memory_not_equal(pk, public_key, 32);
			continue;
		}
		assert_non_null(BN_bin2bn(value + at, 32, k));
		if (BN_is_zero(k))
			continue;
		assert_int_equal(EC_POINT_mul(c.g, p, k, NULL, NULL, c.bn), 1);
		p256_encode(&c, p, POINT_CONVERSION_COMPRESSED, pk, 33);
		assert_memory_not_equal(pk, public_key, 33);
	}
	BN_clear_free(k);
	EC_POINT_free(p);
	p256_free(&c);
}

/* token.h, token_opaque.c: a sealed AKE key is 0x02 || seal key version || GCM box with a
 * 12-byte IV (on SoftHSM2), of a 32-byte key. */
static void assert_sealed_ake_layout(const uint8_t *value, size_t len, uint32_t version)
{
	assert_int_equal(len, AKE_SEALED_GCM_SIZE);
	const uint8_t header[] = {0x02,
	                          (uint8_t)(version >> 24),
	                          (uint8_t)(version >> 16),
	                          (uint8_t)(version >> 8),
	                          (uint8_t)version,
	                          BKV_TOKEN_SCHEME_GCM,
	                          12};
	assert_memory_equal(value, header, sizeof(header));
}

/* No PKCS#11 key exists for ristretto255; the data object holds the private key sealed
 * (0x02 || version || box), and no 32-byte window of it is the key. */
static void ristretto255_key_exists_only_sealed(void **state)
{
	fx *f = *state;
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, R255);
	assert_non_null(keys);
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	const char *label = "bkv-ake-ristretto255-sha512";
	assert_int_equal(count_labelled(h, label), 1);
	CK_OBJECT_HANDLE obj = find_one(h, CKO_DATA, label);
	assert_attr(h, obj, CKA_PRIVATE, true);
	assert_attr(h, obj, CKA_MODIFIABLE, false);
	uint8_t value[256];
	const size_t len = read_data_object(h, label, value, sizeof(value));
	assert_sealed_ake_layout(value, len, 1);
	assert_no_window_is_the_key(R255, value, len, keys->server_public_key);
	inspect_close(h);
}

/* The session copies made by bkv_token_load_keys are as protected as the originals. */
static void session_copies_stay_sensitive(void **state)
{
	(void)state; /* the fixture's vault holds the copies */
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}};
	CK_OBJECT_HANDLE found[32];
	CK_ULONG n = find_objects(h, tmpl, 1, found, 32);
	size_t checked = 0;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_OBJECT_CLASS cls;
		CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
		assert_int_equal(g_fn->C_GetAttributeValue(h, found[i], &a, 1), CKR_OK);
		if (cls != CKO_SECRET_KEY && cls != CKO_PRIVATE_KEY)
			continue;
		assert_attr(h, found[i], CKA_SENSITIVE, true);
		assert_attr(h, found[i], CKA_EXTRACTABLE, false);
		assert_value_unreadable(h, found[i]);
		checked++;
	}
	/* seal-1, ticket, state MAC, two OPRF seeds, the P-256 private key */
	assert_true(checked >= 6);
	inspect_close(h);
}

/* ------------------------------------------------------------------------------------ */
/* The key ceremony                                                                      */
/* ------------------------------------------------------------------------------------ */

static const char *const all_key_labels[] = {
    "bkv-seal-1",
    "bkv-ticket-1",
    "bkv-oprf-seed-p256-sha256",
    "bkv-ake-p256-sha256",
    "bkv-oprf-seed-ristretto255-sha512",
    "bkv-ake-ristretto255-sha512",
    "bkv-state-mac-1",
};
#define NUM_KEY_LABELS (sizeof(all_key_labels) / sizeof(all_key_labels[0]))

static void assert_all_reported(const report_log *log, const char *what)
{
	assert_int_equal(log->n, NUM_KEY_LABELS);
	for (size_t i = 0; i < NUM_KEY_LABELS; i++) {
		const key_report *r = find_report(log, all_key_labels[i]);
		if (strcmp(r->what, what) != 0)
			fail_msg("%s reported \"%s\", expected \"%s\"", r->label, r->what, what);
	}
	assert_int_equal(find_report(log, "bkv-ake-p256-sha256")->public_key_len, 33);
	assert_int_equal(find_report(log, "bkv-ake-ristretto255-sha512")->public_key_len, 32);
}

static void create_keys_creates_every_key_once(void **state)
{
	(void)state;
	init_token("bkv-create", NULL, 0);
	bkv_token *t = vault_open("bkv-create");
	report_log log;
	memset(&log, 0, sizeof(log));
	create_keys(t, false, &log);
	assert_all_reported(&log, "created");
	bkv_token_close(t);
	CK_SESSION_HANDLE h = inspect_session("bkv-create", false);
	for (size_t i = 0; i < NUM_KEY_LABELS; i++)
		assert_int_equal(count_labelled(h, all_key_labels[i]),
		                 strcmp(all_key_labels[i], "bkv-ake-p256-sha256") == 0 ? 2 : 1);
	inspect_close(h);
}

static void create_keys_again_keeps_every_key(void **state)
{
	(void)state;
	init_token("bkv-idem", NULL, 0);
	bkv_token *t = vault_open("bkv-idem");
	report_log first, second;
	memset(&first, 0, sizeof(first));
	memset(&second, 0, sizeof(second));
	create_keys(t, false, &first);
	create_keys(t, false, &second);
	assert_all_reported(&second, "exists");
	for (size_t i = 0; i < 2; i++) {
		const char *label = i == 0 ? "bkv-ake-p256-sha256" : "bkv-ake-ristretto255-sha512";
		const key_report *a = find_report(&first, label), *b = find_report(&second, label);
		assert_int_equal(a->public_key_len, b->public_key_len);
		assert_memory_equal(a->public_key, b->public_key, a->public_key_len);
	}
	/* And what the vault serves is the same public key. */
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_memory_equal(bkv_token_server_keys(t, P256)->server_public_key,
	                    find_report(&first, "bkv-ake-p256-sha256")->public_key, 33);
	assert_memory_equal(bkv_token_server_keys(t, R255)->server_public_key,
	                    find_report(&first, "bkv-ake-ristretto255-sha512")->public_key, 32);
	bkv_token_close(t);
}

static void create_keys_with_replace_makes_new_keys(void **state)
{
	(void)state;
	init_token("bkv-replace", NULL, 0);
	bkv_token *t = vault_open("bkv-replace");
	report_log first, replaced;
	memset(&first, 0, sizeof(first));
	memset(&replaced, 0, sizeof(replaced));
	create_keys(t, false, &first);
	create_keys(t, true, &replaced);
	assert_all_reported(&replaced, "created");
	for (size_t i = 0; i < 2; i++) {
		const char *label = i == 0 ? "bkv-ake-p256-sha256" : "bkv-ake-ristretto255-sha512";
		const key_report *a = find_report(&first, label),
		                 *b = find_report(&replaced, label);
		assert_memory_not_equal(a->public_key, b->public_key, a->public_key_len);
	}
	bkv_token_close(t);
	/* The old keys are gone: no duplicates, seal key back to version 1 alone. */
	CK_SESSION_HANDLE h = inspect_session("bkv-replace", false);
	for (size_t i = 0; i < NUM_KEY_LABELS; i++)
		assert_int_equal(count_labelled(h, all_key_labels[i]),
		                 strcmp(all_key_labels[i], "bkv-ake-p256-sha256") == 0 ? 2 : 1);
	inspect_close(h);
}

/* "All sealed data is then lost": a record sealed before the replacement fails to open. */
static void records_sealed_before_replace_no_longer_open(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-replace-rec");
	uint8_t sealed[RECORD_SEALED];
	seal_record(t, sealed);
	create_keys(t, true, NULL);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_seal_version(t), 1);
	assert_int_equal(open_record(t, sealed, sizeof(sealed)), BKV_TOKEN_ERR_AUTH);
	bkv_token_close(t);
}

/* ------------------------------------------------------------------------------------ */
/* OPAQUE with token-held keys                                                           */
/* ------------------------------------------------------------------------------------ */

static void token_keys_register_and_log_in_with_the_software_client(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = opaque_suite_sizes(f->suite);
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, f->suite);
	assert_non_null(keys);
	assert_int_equal(keys->suite, f->suite);
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	register_user(keys, f->suite, CRED_ID, record, export_key);
	login_result r = login_user(keys, f->suite, CRED_ID, record, PASSWORD);
	assert_int_equal(r.client, OPAQUE_OK);
	assert_int_equal(r.server, OPAQUE_OK);
	assert_memory_equal(r.client_session_key, r.server_session_key, sz->session_key);
	assert_memory_equal(r.export_key, export_key, sz->export_key);
}

static void token_keys_reject_a_wrong_password(void **state)
{
	fx *f = *state;
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, f->suite);
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	register_user(keys, f->suite, CRED_ID, record, export_key);
	login_result r = login_user(keys, f->suite, CRED_ID, record, OTHER_PASSWORD);
	assert_int_equal(r.client, OPAQUE_ERR_ENVELOPE_RECOVERY);
}

/* The token's keys persist: a registration verifies on a login in a later session. */
static void token_registration_verifies_in_a_later_session(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = opaque_suite_sizes(f->suite);
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	register_user(bkv_token_server_keys(f->t, f->suite), f->suite, CRED_ID, record, export_key);
	bkv_token_close(f->t);
	f->t = vault_open_loaded(g_label);
	login_result r =
	    login_user(bkv_token_server_keys(f->t, f->suite), f->suite, CRED_ID, record, PASSWORD);
	assert_int_equal(r.client, OPAQUE_OK);
	assert_int_equal(r.server, OPAQUE_OK);
	assert_memory_equal(r.export_key, export_key, sz->export_key);
}

static void token_oprf_is_deterministic_per_credential_identifier(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = opaque_suite_sizes(f->suite);
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, f->suite);
	opaque_config cfg = config_of(f->suite);
	opaque_client_registration_state st;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t a[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES],
	    b[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	assert_int_equal(opaque_client_registration_start(&cfg, STR(PASSWORD), &st, request,
	                                                  sz->registration_request),
	                 OPAQUE_OK);
	registration_response(keys, f->suite, CRED_ID, request, a);
	registration_response(keys, f->suite, CRED_ID, request, b);
	assert_memory_equal(a, b, sz->registration_response);
	opaque_client_registration_state_wipe(&st);
}

static void token_oprf_differs_between_credential_identifiers(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = opaque_suite_sizes(f->suite);
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, f->suite);
	opaque_config cfg = config_of(f->suite);
	opaque_client_registration_state st;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t a[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES],
	    b[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	assert_int_equal(opaque_client_registration_start(&cfg, STR(PASSWORD), &st, request,
	                                                  sz->registration_request),
	                 OPAQUE_OK);
	registration_response(keys, f->suite, CRED_ID, request, a);
	registration_response(keys, f->suite, OTHER_CRED_ID, request, b);
	/* evaluated_message differs; server_public_key (the rest) is the same */
	assert_memory_not_equal(a, b, sz->Noe);
	assert_memory_equal(a + sz->Noe, b + sz->Noe, sz->Npk);
	opaque_client_registration_state_wipe(&st);
}

/* A token whose OPRF seeds have known values: the test replaces the generated seeds with
 * imported ones (same label and protection), so the token's HMAC can be compared with the
 * software HKDF-Expand byte for byte. Built once. */
static uint8_t known_seed[2][OPAQUE_MAX_HASH_BYTES];

static void make_known_seed_token(void)
{
	static bool made;
	if (made)
		return;
	init_token("bkv-known-seed", NULL, 0);
	bkv_token *t = vault_open("bkv-known-seed");
	create_keys(t, false, NULL);
	bkv_token_close(t);
	CK_SESSION_HANDLE h = inspect_session("bkv-known-seed", true);
	for (size_t s = 0; s < 2; s++) {
		const bool p256 = both_suites[s] == P256;
		const char *label = secret_key_labels[2 + s];
		const CK_ULONG nh = opaque_suite_sizes(both_suites[s])->Nh;
		for (size_t i = 0; i < nh; i++)
			known_seed[s][i] = (uint8_t)(0x11 * (s + 1) + 3 * i);
		assert_int_equal(g_fn->C_DestroyObject(h, find_one(h, CKO_SECRET_KEY, label)),
		                 CKR_OK);
		CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
		CK_KEY_TYPE type = CKK_GENERIC_SECRET;
		CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
		CK_MECHANISM_TYPE allowed[] = {p256 ? CKM_SHA256_HMAC : CKM_SHA512_HMAC};
		CK_ATTRIBUTE tmpl[] = {
		    {CKA_CLASS, &cls, sizeof(cls)},
		    {CKA_KEY_TYPE, &type, sizeof(type)},
		    {CKA_LABEL, (void *)label, strlen(label)},
		    {CKA_VALUE, known_seed[s], nh},
		    {CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed)},
		    {CKA_TOKEN, &yes, sizeof(yes)},
		    {CKA_PRIVATE, &yes, sizeof(yes)},
		    {CKA_SENSITIVE, &yes, sizeof(yes)},
		    {CKA_EXTRACTABLE, &no, sizeof(no)},
		    {CKA_SIGN, &yes, sizeof(yes)},
		};
		CK_OBJECT_HANDLE obj;
		assert_int_equal(
		    g_fn->C_CreateObject(h, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj), CKR_OK);
	}
	inspect_close(h);
	made = true;
}

static size_t suite_index(opaque_suite_id suite)
{
	return suite == P256 ? 0 : 1;
}

static void token_hmac_equals_software_hkdf_expand(void **state)
{
	opaque_suite_id suite = *(opaque_suite_id *)*state;
	const size_t nh = opaque_suite_sizes(suite)->Nh;
	make_known_seed_token();
	bkv_token *t = vault_open_loaded("bkv-known-seed");
	const opaque_server_keys *keys = bkv_token_server_keys(t, suite);
	assert_non_null(keys);
	opaque_soft_server_keys soft;
	assert_int_equal(opaque_soft_server_keys_generate(&soft, suite), OPAQUE_OK);
	uint8_t sk[OPAQUE_MAX_SCALAR_BYTES];
	memcpy(sk, soft.server_private_key, sizeof(sk));
	assert_int_equal(opaque_soft_server_keys_init(&soft, suite, known_seed[suite_index(suite)],
	                                              nh, sk, opaque_suite_sizes(suite)->Nsk),
	                 OPAQUE_OK);
	uint8_t info[1100];
	for (size_t i = 0; i < sizeof(info); i++)
		info[i] = (uint8_t)(i * 13 + 1);
	const size_t info_lens[] = {0, 1, 7, 24, 1024 + 7};
	const size_t out_lens[] = {1, 31, 32, nh - 1, nh, nh + 1, 2 * nh + 5, 255 * nh};
	static uint8_t from_token[255 * OPAQUE_MAX_HASH_BYTES];
	static uint8_t from_soft[255 * OPAQUE_MAX_HASH_BYTES];
	for (size_t i = 0; i < sizeof(info_lens) / sizeof(info_lens[0]); i++) {
		for (size_t o = 0; o < sizeof(out_lens) / sizeof(out_lens[0]); o++) {
			memset(from_token, 0, out_lens[o]);
			assert_int_equal(keys->oprf_seed_expand(keys->ctx, info, info_lens[i],
			                                        from_token, out_lens[o]),
			                 OPAQUE_OK);
			assert_int_equal(soft.keys.oprf_seed_expand(soft.keys.ctx, info,
			                                            info_lens[i], from_soft,
			                                            out_lens[o]),
			                 OPAQUE_OK);
			assert_memory_equal(from_token, from_soft, out_lens[o]);
		}
	}
	opaque_soft_server_keys_wipe(&soft);
	sodium_memzero(sk, sizeof(sk));
	bkv_token_close(t);
}

/* With the same oprf_seed, the token's keys t and the software keys evaluate the OPRF
 * identically (the evaluated element of the registration response). */
static void assert_token_oprf_uses_seed(bkv_token *t, opaque_suite_id suite, const uint8_t *seed)
{
	const opaque_sizes *sz = opaque_suite_sizes(suite);
	opaque_soft_server_keys soft;
	uint8_t sk[OPAQUE_MAX_SCALAR_BYTES], pk[OPAQUE_MAX_ELEMENT_BYTES];
	assert_int_equal(opaque_generate_ake_key_pair(suite, sk, sz->Nsk, pk, sz->Npk), OPAQUE_OK);
	assert_int_equal(opaque_soft_server_keys_init(&soft, suite, seed, sz->Nh, sk, sz->Nsk),
	                 OPAQUE_OK);
	opaque_config cfg = config_of(suite);
	opaque_client_registration_state st;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t a[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES],
	    b[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	assert_int_equal(opaque_client_registration_start(&cfg, STR(PASSWORD), &st, request,
	                                                  sz->registration_request),
	                 OPAQUE_OK);
	registration_response(bkv_token_server_keys(t, suite), suite, CRED_ID, request, a);
	registration_response(&soft.keys, suite, CRED_ID, request, b);
	assert_memory_equal(a, b, sz->Noe);
	opaque_client_registration_state_wipe(&st);
	opaque_soft_server_keys_wipe(&soft);
	sodium_memzero(sk, sizeof(sk));
}

/* End to end: the token built with known seeds evaluates the OPRF as software does. */
static void token_oprf_equals_software_oprf_for_the_same_seed(void **state)
{
	opaque_suite_id suite = *(opaque_suite_id *)*state;
	make_known_seed_token();
	bkv_token *t = vault_open_loaded("bkv-known-seed");
	assert_token_oprf_uses_seed(t, suite, known_seed[suite_index(suite)]);
	bkv_token_close(t);
}

/* ------------------------------------------------------------------------------------ */
/* Adopting keys an operator made with the vendor's tool (bkvd init --adopt)             */
/* ------------------------------------------------------------------------------------ */

/* A secret key as a vendor's tool makes it: no CKA_ALLOWED_MECHANISMS, its own key type.
 * value NULL generates it in the token (AES or generic secret); otherwise it is imported. */
typedef struct vendor_key {
	const char *label;
	CK_KEY_TYPE type;
	CK_ULONG len;
	const uint8_t *value;
	CK_BBOOL sensitive, extractable, use; /* use: encrypt+decrypt (AES) or sign */
} vendor_key;

/* only: the one CKA_ALLOWED_MECHANISMS, or 0 for none */
static void make_secret(CK_SESSION_HANDLE h, const vendor_key *k, CK_MECHANISM_TYPE only)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BBOOL yes = CK_TRUE;
	const bool aes = k->type == CKK_AES;
	CK_KEY_TYPE type = k->type;
	CK_ULONG len = k->len;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_LABEL, (void *)k->label, strlen(k->label)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_PRIVATE, &yes, sizeof(yes)},
	    {CKA_SENSITIVE, (void *)&k->sensitive, sizeof(CK_BBOOL)},
	    {CKA_EXTRACTABLE, (void *)&k->extractable, sizeof(CK_BBOOL)},
	    {aes ? CKA_ENCRYPT : CKA_SIGN, (void *)&k->use, sizeof(CK_BBOOL)},
	    {aes ? CKA_DECRYPT : CKA_VERIFY, (void *)&k->use, sizeof(CK_BBOOL)},
	    {k->value != NULL ? CKA_VALUE : CKA_VALUE_LEN,
	     k->value != NULL ? (void *)k->value : (void *)&len,
	     k->value != NULL ? k->len : sizeof(len)},
	    {CKA_ALLOWED_MECHANISMS, &only, sizeof(only)},
	};
	const CK_ULONG n = sizeof(tmpl) / sizeof(tmpl[0]) - (only == 0 ? 1 : 0);
	CK_OBJECT_HANDLE obj;
	CK_MECHANISM gen = {aes ? CKM_AES_KEY_GEN : CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
	CK_RV rv = k->value != NULL ? g_fn->C_CreateObject(h, tmpl, n, &obj)
	                            : g_fn->C_GenerateKey(h, &gen, tmpl, n, &obj);
	if (rv != CKR_OK)
		fail_msg("making %s: rv 0x%lx", k->label, (unsigned long)rv);
}

static void vendor_make_secret(CK_SESSION_HANDLE h, const vendor_key *k)
{
	make_secret(h, k, 0);
}

static void vendor_make_p256_pair(CK_SESSION_HANDLE h, const char *label, CK_BBOOL derive)
{
	static const uint8_t p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
	                                   0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE pub[] = {
	    {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	};
	CK_ATTRIBUTE priv[] = {
	    {CKA_LABEL, (void *)label, strlen(label)}, {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_PRIVATE, &yes, sizeof(yes)},          {CKA_SENSITIVE, &yes, sizeof(yes)},
	    {CKA_EXTRACTABLE, &no, sizeof(no)},        {CKA_DERIVE, &derive, sizeof(derive)},
	};
	CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_OBJECT_HANDLE a, b;
	assert_int_equal(g_fn->C_GenerateKeyPair(h, &mech, pub, 3, priv, 6, &a, &b), CKR_OK);
}

static void destroy_labelled(CK_SESSION_HANDLE h, const char *label)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	};
	CK_OBJECT_HANDLE found[8];
	const CK_ULONG n = find_objects(h, tmpl, 2, found, 8);
	for (CK_ULONG i = 0; i < n; i++)
		assert_int_equal(g_fn->C_DestroyObject(h, found[i]), CKR_OK);
}

/* Seeds of known value, imported with the HMAC key type of their hash (CKK_SHA256_HMAC,
 * CKK_SHA512_HMAC) as a vendor's tool may label them. */
static uint8_t vendor_seed_p256[32], vendor_seed_r255[64];

/* The keys an operator makes for both suites with [token] p256_ake = token: everything
 * but the ristretto255 AKE key, which bkv seals itself. */
static vendor_key vendor_keys[] = {
    {"bkv-seal-1", CKK_AES, 32, NULL, CK_TRUE, CK_FALSE, CK_TRUE},
    {"bkv-ticket-1", CKK_AES, 32, NULL, CK_TRUE, CK_FALSE, CK_TRUE},
    {"bkv-state-mac-1", CKK_GENERIC_SECRET, 32, NULL, CK_TRUE, CK_FALSE, CK_TRUE},
    {"bkv-oprf-seed-p256-sha256", CKK_SHA256_HMAC, 32, vendor_seed_p256, CK_TRUE, CK_FALSE,
     CK_TRUE},
    {"bkv-oprf-seed-ristretto255-sha512", CKK_SHA512_HMAC, 64, vendor_seed_r255, CK_TRUE, CK_FALSE,
     CK_TRUE},
};
#define NUM_VENDOR_KEYS (sizeof(vendor_keys) / sizeof(vendor_keys[0]))

static void vendor_make_all(const char *token_label)
{
	for (size_t i = 0; i < sizeof(vendor_seed_r255); i++) {
		vendor_seed_r255[i] = (uint8_t)(0x3d + 5 * i);
		if (i < sizeof(vendor_seed_p256))
			vendor_seed_p256[i] = (uint8_t)(0xc1 ^ (7 * i));
	}
	CK_SESSION_HANDLE h = inspect_session(token_label, true);
	for (size_t i = 0; i < NUM_VENDOR_KEYS; i++)
		vendor_make_secret(h, &vendor_keys[i]);
	vendor_make_p256_pair(h, "bkv-ake-p256-sha256", CK_TRUE);
	inspect_close(h);
}

static bkv_token_err adopt(bkv_token *t, report_log *log)
{
	memset(log, 0, sizeof(*log));
	return bkv_token_create_keys(t, both_suites, 2, BKV_TOKEN_INIT_ADOPT, collect_report, log);
}

static void adopt_on_an_empty_token_creates_nothing_and_names_the_missing_key(void **state)
{
	(void)state;
	init_token("bkv-adopt-empty", NULL, 0);
	bkv_token *t = vault_open("bkv-adopt-empty");
	report_log log;
	assert_int_equal(adopt(t, &log), BKV_TOKEN_ERR_KEY_MISSING);
	assert_non_null(strstr(bkv_token_last_call(t), "bkv-seal-1"));
	bkv_token_close(t);
	CK_SESSION_HANDLE h = inspect_session("bkv-adopt-empty", false);
	for (size_t i = 0; i < NUM_KEY_LABELS; i++)
		assert_int_equal(count_labelled(h, all_key_labels[i]), 0);
	inspect_close(h);
}

static void adopt_uses_the_keys_a_vendor_tool_made(void **state)
{
	(void)state;
	init_token("bkv-adopt", NULL, 0);
	vendor_make_all("bkv-adopt");
	/* One key missing: named, and nothing made in its place. */
	CK_SESSION_HANDLE h = inspect_session("bkv-adopt", true);
	destroy_labelled(h, "bkv-state-mac-1");
	bkv_token *t = vault_open("bkv-adopt");
	report_log log;
	assert_int_equal(adopt(t, &log), BKV_TOKEN_ERR_KEY_MISSING);
	assert_non_null(strstr(bkv_token_last_call(t), "bkv-state-mac-1"));
	assert_int_equal(count_labelled(h, "bkv-state-mac-1"), 0);
	vendor_make_secret(h, &vendor_keys[2]);

	assert_int_equal(adopt(t, &log), BKV_TOKEN_OK);
	for (size_t i = 0; i < NUM_KEY_LABELS; i++) {
		const key_report *r = find_report(&log, all_key_labels[i]);
		const bool sealed_here = strcmp(r->label, "bkv-ake-ristretto255-sha512") == 0;
		assert_string_equal(r->what, sealed_here ? "created" : "adopted");
	}
	/* Only the sealed ristretto255 key was made, as a data object. */
	find_one(h, CKO_DATA, "bkv-ake-ristretto255-sha512");
	for (size_t i = 0; i < NUM_KEY_LABELS; i++)
		assert_int_equal(count_labelled(h, all_key_labels[i]),
		                 strcmp(all_key_labels[i], "bkv-ake-p256-sha256") == 0 ? 2 : 1);
	inspect_close(h);

	/* The adopted keys serve: the OPRF uses the imported seeds, and preflight passes. */
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	char why[256] = "";
	assert_int_equal(bkv_token_preflight(t, why, sizeof(why)), BKV_TOKEN_OK);
	assert_token_oprf_uses_seed(t, P256, vendor_seed_p256);
	assert_token_oprf_uses_seed(t, R255, vendor_seed_r255);
	/* Adopting again changes nothing; so does a plain init. */
	assert_int_equal(adopt(t, &log), BKV_TOKEN_OK);
	assert_string_equal(find_report(&log, "bkv-ake-ristretto255-sha512")->what, "adopted");
	memset(&log, 0, sizeof(log));
	assert_int_equal(
	    bkv_token_create_keys(t, both_suites, 2, BKV_TOKEN_INIT_CREATE, collect_report, &log),
	    BKV_TOKEN_OK);
	assert_all_reported(&log, "exists");
	bkv_token_close(t);
}

/* A key under a bkv label that bkv would not have made is refused, whether adopting or
 * not, and the refusal names the key and what is wrong with it. */
static void keys_unfit_for_their_use_are_refused(void **state)
{
	(void)state;
	static const uint8_t short_seed[32] = {1};
	static const struct {
		vendor_key key; /* replaces the fit key of the same label */
		bool p256_no_derive;
		const char *problem;
	} cases[] = {
	    {{"bkv-seal-1", CKK_AES, 32, NULL, CK_TRUE, CK_TRUE, CK_TRUE}, false, "is extractable"},
	    {{"bkv-seal-1", CKK_AES, 16, NULL, CK_TRUE, CK_FALSE, CK_TRUE},
	     false,
	     "is not 32 bytes long"},
	    {{"bkv-ticket-1", CKK_AES, 32, NULL, CK_TRUE, CK_FALSE, CK_FALSE},
	     false,
	     "cannot encrypt and decrypt"},
	    {{"bkv-state-mac-1", CKK_GENERIC_SECRET, 32, NULL, CK_FALSE, CK_FALSE, CK_TRUE},
	     false,
	     "is not sensitive"},
	    {{"bkv-state-mac-1", CKK_AES, 32, NULL, CK_TRUE, CK_FALSE, CK_TRUE},
	     false,
	     "is not an HMAC key"},
	    {{"bkv-oprf-seed-ristretto255-sha512", CKK_SHA512_HMAC, 32, short_seed, CK_TRUE,
	      CK_FALSE, CK_TRUE},
	     false,
	     "is not 64 bytes long"},
	    {{"bkv-oprf-seed-p256-sha256", CKK_SHA512_HMAC, 32, short_seed, CK_TRUE, CK_FALSE,
	      CK_TRUE},
	     false,
	     "is not an HMAC key (CKK_GENERIC_SECRET or CKK_SHA256_HMAC)"},
	    {{"bkv-oprf-seed-p256-sha256", CKK_SHA256_HMAC, 32, short_seed, CK_TRUE, CK_FALSE,
	      CK_FALSE},
	     false,
	     "cannot sign"},
	    {{"bkv-ake-p256-sha256", 0, 0, NULL, 0, 0, 0}, true, "cannot derive"},
	};
	init_token("bkv-unfit", NULL, 0);
	vendor_make_all("bkv-unfit");
	CK_SESSION_HANDLE h = inspect_session("bkv-unfit", true);
	bkv_token *t = vault_open("bkv-unfit");
	report_log log;
	assert_int_equal(adopt(t, &log), BKV_TOKEN_OK); /* the fit set, as a control */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *label = cases[i].key.label;
		destroy_labelled(h, label);
		if (cases[i].p256_no_derive)
			vendor_make_p256_pair(h, label, CK_FALSE);
		else
			vendor_make_secret(h, &cases[i].key);
		for (int mode = BKV_TOKEN_INIT_CREATE; mode <= BKV_TOKEN_INIT_ADOPT;
		     mode += BKV_TOKEN_INIT_ADOPT - BKV_TOKEN_INIT_CREATE) {
			memset(&log, 0, sizeof(log));
			assert_int_equal(bkv_token_create_keys(t, both_suites, 2,
			                                       (bkv_token_init_mode)mode,
			                                       collect_report, &log),
			                 BKV_TOKEN_ERR_KEY_UNFIT);
			const char *call = bkv_token_last_call(t);
			if (strstr(call, label) == NULL || strstr(call, cases[i].problem) == NULL)
				fail_msg("case %zu: \"%s\" does not say %s %s", i, call, label,
				         cases[i].problem);
		}
		/* Put the fit key back. */
		destroy_labelled(h, label);
		if (cases[i].p256_no_derive) {
			vendor_make_p256_pair(h, label, CK_TRUE);
		} else {
			for (size_t k = 0; k < NUM_VENDOR_KEYS; k++) {
				if (strcmp(vendor_keys[k].label, label) == 0)
					vendor_make_secret(h, &vendor_keys[k]);
			}
		}
		/* A new seal key no longer opens the AKE key the old one sealed: seal anew. */
		if (strcmp(label, "bkv-seal-1") == 0)
			destroy_labelled(h, "bkv-ake-ristretto255-sha512");
		assert_int_equal(adopt(t, &log), BKV_TOKEN_OK);
	}
	bkv_token_close(t);
	inspect_close(h);
}

/* ------------------------------------------------------------------------------------ */
/* Sealed AKE keys kept in a key store (bkvd: [token] sealed_keys = database)            */
/* ------------------------------------------------------------------------------------ */

/* An in-memory key store that counts its calls and can be told to fail. */
typedef struct mem_store {
	struct {
		char name[64];
		uint8_t blob[256];
		size_t len;
	} e[4];
	size_t n;
	unsigned gets, puts, removes, closes;
	bkv_token_err fail_get; /* returned by get when not OK */
	bool lose_race;         /* put with an old blob: another writer got there first */
} mem_store;

static int mem_find(mem_store *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->e[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

static bkv_token_err mem_get(void *arg, const char *name, uint8_t *out, size_t max, size_t *len)
{
	mem_store *m = arg;
	m->gets++;
	if (m->fail_get != BKV_TOKEN_OK)
		return m->fail_get;
	const int i = mem_find(m, name);
	if (i < 0)
		return BKV_TOKEN_ERR_KEY_MISSING;
	assert_true(m->e[i].len <= max);
	memcpy(out, m->e[i].blob, m->e[i].len);
	*len = m->e[i].len;
	return BKV_TOKEN_OK;
}

static bkv_token_err mem_put(void *arg, const char *name, const uint8_t *old, size_t old_len,
                             const uint8_t *blob, size_t len)
{
	mem_store *m = arg;
	m->puts++;
	int i = mem_find(m, name);
	if (old == NULL && i >= 0)
		return BKV_TOKEN_ERR_KEY_IN_USE;
	if (old != NULL && (i < 0 || m->lose_race || m->e[i].len != old_len ||
	                    memcmp(m->e[i].blob, old, old_len) != 0))
		return BKV_TOKEN_ERR_KEY_IN_USE;
	if (i < 0) {
		assert_true(m->n < 4);
		i = (int)m->n++;
		snprintf(m->e[i].name, sizeof(m->e[i].name), "%s", name);
	}
	assert_true(len <= sizeof(m->e[i].blob));
	memcpy(m->e[i].blob, blob, len);
	m->e[i].len = len;
	return BKV_TOKEN_OK;
}

static bkv_token_err mem_remove(void *arg, const char *name)
{
	mem_store *m = arg;
	m->removes++;
	const int i = mem_find(m, name);
	if (i >= 0)
		m->e[i] = m->e[--m->n];
	return BKV_TOKEN_OK;
}

static void mem_close(void *arg)
{
	((mem_store *)arg)->closes++;
}

static bkv_token *open_with_store(const char *label, mem_store *m, bkv_token_p256_ake p256)
{
	bkv_token_key_store store = {mem_get, mem_put, mem_remove, mem_close, m};
	bkv_token_config cfg = config_for(label);
	cfg.p256_ake = p256;
	cfg.key_store = &store; /* copied by bkv_token_open */
	bkv_token *t = NULL;
	char why[256];
	assert_int_equal(bkv_token_open(&cfg, &t, why, sizeof(why)), BKV_TOKEN_OK);
	return t;
}

static void sealed_keys_in_a_key_store_never_touch_data_objects(void **state)
{
	(void)state;
	mem_store m = {0};
	init_token("bkv-store", NULL, 0);
	bkv_token *t = open_with_store("bkv-store", &m, BKV_TOKEN_P256_AKE_SEALED);
	create_keys(t, false, NULL);
	/* Both AKE keys are sealed blobs in the store, under their labels; none in the token. */
	assert_int_equal(m.n, 2);
	assert_true(mem_find(&m, "bkv-ake-p256-sha256") >= 0);
	assert_true(mem_find(&m, "bkv-ake-ristretto255-sha512") >= 0);
	CK_SESSION_HANDLE h = inspect_session("bkv-store", false);
	CK_OBJECT_CLASS data = CKO_DATA;
	CK_ATTRIBUTE any_data[] = {{CKA_CLASS, &data, sizeof(data)}};
	CK_OBJECT_HANDLE found[4];
	assert_int_equal(find_objects(h, any_data, 1, found, 4), 0);
	assert_int_equal(count_labelled(h, "bkv-ake-p256-sha256"), 0);
	inspect_close(h);
	/* Loading reads them back: the public keys are the ones init reported. */
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	uint8_t r255_public[32];
	memcpy(r255_public, bkv_token_server_keys(t, R255)->server_public_key, 32);
	char why[256] = "";
	assert_int_equal(bkv_token_preflight(t, why, sizeof(why)), BKV_TOKEN_OK);

	/* Rotation: the old seal key is needed while the store's blobs are sealed under it;
	 * reseal replaces them by compare-and-set, then version 1 can go. */
	uint32_t version;
	bool resealed = false;
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_delete_seal_key(t, 1), BKV_TOKEN_ERR_KEY_IN_USE);
	m.lose_race = true;
	assert_int_equal(bkv_token_reseal_ake_key(t, &resealed), BKV_TOKEN_ERR_KEY_IN_USE);
	assert_false(resealed);
	m.lose_race = false;
	assert_int_equal(bkv_token_reseal_ake_key(t, &resealed), BKV_TOKEN_OK);
	assert_true(resealed);
	assert_int_equal(bkv_token_delete_seal_key(t, 1), BKV_TOKEN_OK);
	bkv_token_close(t);
	assert_int_equal(m.closes, 1);

	/* A new process loads the same keys from the store. */
	t = open_with_store("bkv-store", &m, BKV_TOKEN_P256_AKE_SEALED);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_memory_equal(bkv_token_server_keys(t, R255)->server_public_key, r255_public, 32);
	/* A store that fails is a device error naming the key, not a missing key. */
	m.fail_get = BKV_TOKEN_ERR_DEVICE;
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_ERR_DEVICE);
	assert_non_null(strstr(bkv_token_last_call(t), "bkv-ake-"));
	/* A store that lost a key: missing, named. */
	m.fail_get = BKV_TOKEN_OK;
	mem_remove(&m, "bkv-ake-ristretto255-sha512");
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_ERR_KEY_MISSING);
	assert_non_null(
	    strstr(bkv_token_last_call(t), "no sealed key bkv-ake-ristretto255-sha512"));
	/* Replacing the keys removes the store's blobs and makes new ones. */
	const unsigned removes = m.removes;
	create_keys(t, true, NULL);
	assert_true(m.removes >= removes + 2);
	assert_int_equal(m.n, 2);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_memory_not_equal(bkv_token_server_keys(t, R255)->server_public_key, r255_public, 32);
	bkv_token_close(t);
	assert_int_equal(m.closes, 2);
}

/* A blob from the store opens only as the key it was sealed as: swapped between suites, or
 * with a byte changed, it is refused. */
static void key_store_blobs_are_bound_to_their_label(void **state)
{
	(void)state;
	mem_store m = {0};
	init_token("bkv-store-swap", NULL, 0);
	bkv_token *t = open_with_store("bkv-store-swap", &m, BKV_TOKEN_P256_AKE_SEALED);
	create_keys(t, false, NULL);
	const int p = mem_find(&m, "bkv-ake-p256-sha256");
	const int r = mem_find(&m, "bkv-ake-ristretto255-sha512");
	uint8_t saved[256];
	const size_t saved_len = m.e[p].len;
	memcpy(saved, m.e[p].blob, saved_len);
	memcpy(m.e[p].blob, m.e[r].blob, m.e[r].len);
	m.e[p].len = m.e[r].len;
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_ERR_AUTH);
	memcpy(m.e[p].blob, saved, saved_len);
	m.e[p].len = saved_len;
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	m.e[r].blob[m.e[r].len - 1] ^= 1;
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_ERR_AUTH);
	bkv_token_close(t);
}

/* A failed open still hands the store back: closed exactly once. */
static void a_failed_open_closes_the_key_store(void **state)
{
	(void)state;
	mem_store m = {0};
	bkv_token_key_store store = {mem_get, mem_put, mem_remove, mem_close, &m};
	bkv_token_config cfg = config_for("bkv-no-such-token");
	cfg.key_store = &store;
	bkv_token *t = NULL;
	char why[256];
	assert_int_equal(bkv_token_open(&cfg, &t, why, sizeof(why)), BKV_TOKEN_ERR_NO_TOKEN);
	assert_int_equal(m.closes, 1);
}

/* ------------------------------------------------------------------------------------ */
/* Full-point P-256 Diffie-Hellman                                                       */
/* ------------------------------------------------------------------------------------ */

static void token_dh(const opaque_server_keys *keys, const uint8_t peer[33], uint8_t out[33])
{
	assert_int_equal(keys->ake_dh(keys->ctx, peer, 33, out, 33), OPAQUE_OK);
}

static void token_p256_dh_equals_software_dh_for_random_points(void **state)
{
	fx *f = *state;
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, P256);
	const uint8_t *s = keys->server_public_key;
	size_t odd = 0;
	for (int i = 0; i < TOKEN_RANDOM_POINTS; i++) {
		uint8_t r[32], p[33], expected[33], got[33];
		assert_int_equal(opaque_generate_ake_key_pair(P256, r, 32, p, 33), OPAQUE_OK);
		/* r * S = r * (sk * G) = sk * (r * G) = sk * P */
		assert_int_equal(opaque_scalar_mult(P256, r, 32, s, 33, expected, 33), OPAQUE_OK);
		token_dh(keys, p, got);
		if (memcmp(got, expected, 33) != 0)
			fail_msg("point %d: token DH differs from r * S", i);
		odd += expected[0] == 0x03;
	}
	/* Both candidates of the recovery were the answer many times. */
	assert_true(odd > TOKEN_RANDOM_POINTS / 4 && odd < 3 * TOKEN_RANDOM_POINTS / 4);
}

static void token_p256_dh_edge_case(fx *f, int m)
{
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, P256);
	p256_ctx c = p256_new();
	uint8_t g[33], p[33], expected[33], got[33];
	p256_generator(&c, g);
	p256_times(&c, g, m, p);
	p256_times(&c, keys->server_public_key, m, expected); /* sk * (m * G) = m * S */
	token_dh(keys, p, got);
	assert_memory_equal(got, expected, 33);
	p256_free(&c);
}

static void token_p256_dh_of_g_is_the_public_key(void **state)
{
	token_p256_dh_edge_case(*state, 1);
}

static void token_p256_dh_of_minus_g_is_minus_the_public_key(void **state)
{
	token_p256_dh_edge_case(*state, -1);
}

static void token_p256_dh_of_2g_is_twice_the_public_key(void **state)
{
	token_p256_dh_edge_case(*state, 2);
}

static void token_p256_dh_of_minus_2g_is_minus_twice_the_public_key(void **state)
{
	token_p256_dh_edge_case(*state, -2);
}

/* The AKE DH runs on the client's keyshare from KE1, which anyone can send: a keyshare of
 * -G must be served like any other, by the token as by software keys. */
static void server_login_accepts_a_client_keyshare_of_minus_g(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = opaque_suite_sizes(P256);
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, P256);
	opaque_config cfg = config_of(P256);
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES], export_key[OPAQUE_MAX_HASH_BYTES];
	register_user(keys, P256, CRED_ID, record, export_key);
	opaque_client_login_state cst;
	opaque_server_login_state sst;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES], ke2[OPAQUE_MAX_KE2_BYTES], g[33];
	assert_int_equal(opaque_client_login_start(&cfg, STR(PASSWORD), &cst, ke1, sz->ke1),
	                 OPAQUE_OK);
	p256_ctx c = p256_new();
	p256_generator(&c, g);
	p256_times(&c, g, -1, ke1 + sz->ke1 - sz->Npk); /* KE1 ends with the keyshare */
	p256_free(&c);
	opaque_soft_server_keys soft;
	assert_int_equal(opaque_soft_server_keys_generate(&soft, P256), OPAQUE_OK);
	uint8_t soft_record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	register_user(&soft.keys, P256, CRED_ID, soft_record, export_key);
	assert_int_equal(opaque_server_login_start(&cfg, &soft.keys, NULL, STR(CRED_ID),
	                                           soft_record, sz->registration_record, ke1,
	                                           sz->ke1, &sst, ke2, sz->ke2),
	                 OPAQUE_OK);
	assert_int_equal(opaque_server_login_start(&cfg, keys, NULL, STR(CRED_ID), record,
	                                           sz->registration_record, ke1, sz->ke1, &sst, ke2,
	                                           sz->ke2),
	                 OPAQUE_OK);
	opaque_server_login_state_wipe(&sst);
	opaque_client_login_state_wipe(&cst);
	opaque_soft_server_keys_wipe(&soft);
}

static void token_ristretto255_dh_equals_software_dh_for_random_points(void **state)
{
	fx *f = *state;
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, R255);
	for (int i = 0; i < R255_RANDOM_POINTS; i++) {
		uint8_t r[32], p[32], expected[32], got[32];
		assert_int_equal(opaque_generate_ake_key_pair(R255, r, 32, p, 32), OPAQUE_OK);
		assert_int_equal(
		    opaque_scalar_mult(R255, r, 32, keys->server_public_key, 32, expected, 32),
		    OPAQUE_OK);
		assert_int_equal(keys->ake_dh(keys->ctx, p, 32, got, 32), OPAQUE_OK);
		assert_memory_equal(got, expected, 32);
	}
}

/* p256_dh_full_point with a software x-only oracle: the recovery alone, without a token. */
static void oracle_edge_case(int m)
{
	soft_oracle o;
	uint8_t sk[32], s_unc[65], s[33], g[33], p[33], expected[33], got[33];
	soft_oracle_new(&o, sk, s_unc, s);
	p256_generator(&o.c, g);
	p256_times(&o.c, g, m, p);
	p256_times(&o.c, s, m, expected);
	assert_int_equal(p256_dh_full_point(soft_x_only_dh, &o, s_unc, p, got), BKV_TOKEN_OK);
	assert_memory_equal(got, expected, 33);
	assert_int_equal(o.calls, 2);
	soft_oracle_free(&o);
}

static void full_point_recovery_of_g_is_the_public_key(void **state)
{
	(void)state;
	oracle_edge_case(1);
}

static void full_point_recovery_of_minus_g_is_minus_the_public_key(void **state)
{
	(void)state;
	oracle_edge_case(-1);
}

static void full_point_recovery_of_2g_is_twice_the_public_key(void **state)
{
	(void)state;
	oracle_edge_case(2);
}

static void full_point_recovery_of_minus_2g_is_minus_twice_the_public_key(void **state)
{
	(void)state;
	oracle_edge_case(-2);
}

static void full_point_recovery_equals_software_dh_for_random_points(void **state)
{
	(void)state;
	soft_oracle o;
	uint8_t sk[32], s_unc[65], s[33];
	soft_oracle_new(&o, sk, s_unc, s);
	size_t odd = 0;
	for (int i = 0; i < ORACLE_RANDOM_POINTS; i++) {
		uint8_t r[32], p[33], expected[33], got[33];
		assert_int_equal(opaque_generate_ake_key_pair(P256, r, 32, p, 33), OPAQUE_OK);
		assert_int_equal(opaque_scalar_mult(P256, sk, 32, p, 33, expected, 33), OPAQUE_OK);
		assert_int_equal(p256_dh_full_point(soft_x_only_dh, &o, s_unc, p, got),
		                 BKV_TOKEN_OK);
		if (memcmp(got, expected, 33) != 0)
			fail_msg("point %d: recovered point differs from sk * P", i);
		odd += expected[0] == 0x03;
	}
	assert_int_equal(o.calls, 2 * ORACLE_RANDOM_POINTS);
	assert_true(odd > ORACLE_RANDOM_POINTS / 4 && odd < 3 * ORACLE_RANDOM_POINTS / 4);
	soft_oracle_free(&o);
}

/* An oracle whose two answers disagree gives an error, never a wrong point. */
static void full_point_recovery_rejects_inconsistent_oracle_answers(void **state)
{
	(void)state;
	soft_oracle o;
	uint8_t sk[32], s_unc[65], s[33];
	soft_oracle_new(&o, sk, s_unc, s);
	o.corrupt_second = true;
	for (int i = 0; i < 50; i++) {
		uint8_t r[32], p[33], got[33];
		assert_int_equal(opaque_generate_ake_key_pair(P256, r, 32, p, 33), OPAQUE_OK);
		memset(got, 0xAA, sizeof(got));
		assert_int_equal(p256_dh_full_point(soft_x_only_dh, &o, s_unc, p, got),
		                 BKV_TOKEN_ERR_DEVICE);
		uint8_t zero[33] = {0};
		assert_memory_equal(got, zero, 33);
	}
	soft_oracle_free(&o);
}

static void full_point_recovery_reports_oracle_failures(void **state)
{
	(void)state;
	soft_oracle o;
	uint8_t sk[32], s_unc[65], s[33], g[33], got[33];
	soft_oracle_new(&o, sk, s_unc, s);
	o.fail = true;
	p256_generator(&o.c, g);
	assert_int_equal(p256_dh_full_point(soft_x_only_dh, &o, s_unc, g, got),
	                 BKV_TOKEN_ERR_DEVICE);
	soft_oracle_free(&o);
}

static void full_point_recovery_rejects_an_invalid_peer(void **state)
{
	(void)state;
	soft_oracle o;
	uint8_t sk[32], s_unc[65], s[33], got[33];
	soft_oracle_new(&o, sk, s_unc, s);
	uint8_t bad[33];
	memset(bad, 0xFF, sizeof(bad)); /* x >= p */
	bad[0] = 0x02;
	assert_int_equal(p256_dh_full_point(soft_x_only_dh, &o, s_unc, bad, got),
	                 BKV_TOKEN_ERR_ARGUMENT);
	assert_int_equal(o.calls, 0);
	soft_oracle_free(&o);
}

/* ------------------------------------------------------------------------------------ */
/* Sealed records                                                                        */
/* ------------------------------------------------------------------------------------ */

/* bkv_record_open of a record claimed to belong to account, suite, record version and
 * registration; a failure hands out no plaintext. */
static bkv_token_err open_record_as(bkv_token *t, const uint8_t *account, size_t account_len,
                                    opaque_suite_id suite, uint64_t version, const uint8_t *reg_id,
                                    size_t reg_id_len, const uint8_t *sealed, size_t sealed_len)
{
	uint8_t pt[BKV_RECORD_SEAL_MAX];
	size_t pt_len = 12345;
	memset(pt, 0xAA, sizeof(pt));
	bkv_token_err err =
	    bkv_record_open(t, account, account_len, suite, version, reg_id, reg_id_len, sealed,
	                    sealed_len, pt, sizeof(pt), &pt_len);
	if (err != BKV_TOKEN_OK) {
		assert_int_equal(pt_len, 0);
		assert_true(is_all(pt, sizeof(pt), 0xAA) || is_all(pt, sizeof(pt), 0x00));
	}
	return err;
}

static void sealed_record_opens_where_it_belongs(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED], pt[RECORD_PT_BYTES + 16], expected[RECORD_PT_BYTES];
	seal_record(f->t, sealed);
	assert_int_equal(sealed[0], BKV_RECORD_SEAL_FORMAT);
	assert_int_equal(bkv_record_seal_key_version(sealed, sizeof(sealed)), 1);
	/* The main token has GCM: the box says so, with a 12-byte IV. */
	assert_int_equal(bkv_token_key_scheme(f->t, BKV_TOKEN_KEY_SEAL, 1), BKV_TOKEN_SCHEME_GCM);
	assert_int_equal(sealed[RECORD_SCHEME_AT], 1);
	assert_int_equal(sealed[RECORD_IVLEN_AT], 12);
	fill_plaintext(expected);
	assert_memory_not_equal(sealed + RECORD_CT_AT, expected, RECORD_PT_BYTES);
	size_t pt_len = 0;
	assert_int_equal(bkv_record_open(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 0, sealed, sizeof(sealed), pt, sizeof(pt), &pt_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(pt_len, RECORD_PT_BYTES);
	assert_memory_equal(pt, expected, RECORD_PT_BYTES);
	/* A buffer exactly the plaintext's size is enough. */
	assert_int_equal(bkv_record_open(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 0, sealed, sizeof(sealed), pt, RECORD_PT_BYTES, &pt_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(pt_len, RECORD_PT_BYTES);
	assert_memory_equal(pt, expected, RECORD_PT_BYTES);
}

/* A sealed empty record is a box without ciphertext: header, IV and tag. */
#define EMPTY_RECORD_SEALED (1 + 4 + 2 + 12 + 16)

static void empty_record_seals_and_opens(void **state)
{
	fx *f = *state;
	uint8_t sealed[BKV_RECORD_SEAL_OVERHEAD_MAX], pt[1];
	size_t sealed_len = 0, pt_len = 99;
	assert_int_equal(bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), R255, 1, NULL, 0, NULL, 0,
	                                 sealed, sizeof(sealed), &sealed_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(sealed_len, EMPTY_RECORD_SEALED);
	assert_int_equal(bkv_record_open(f->t, ACCOUNT, sizeof(ACCOUNT), R255, 1, NULL, 0, sealed,
	                                 sealed_len, pt, 0, &pt_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(pt_len, 0);
	pt_len = 99;
	assert_int_equal(bkv_record_open(f->t, ACCOUNT, sizeof(ACCOUNT), R255, 1, NULL, 0, sealed,
	                                 sealed_len, NULL, 0, &pt_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(pt_len, 0);
	assert_int_equal(bkv_record_open(f->t, OTHER_ACCOUNT, sizeof(OTHER_ACCOUNT), R255, 1, NULL,
	                                 0, sealed, sealed_len, pt, 0, &pt_len),
	                 BKV_TOKEN_ERR_AUTH);
}

/* Whatever becomes of an empty record, the session must stay usable afterwards. */
static void sealing_an_empty_record_leaves_the_session_usable(void **state)
{
	fx *f = *state;
	uint8_t empty[BKV_RECORD_SEAL_OVERHEAD_MAX], sealed[RECORD_SEAL_CAP];
	size_t len = 0;
	(void)bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), R255, 1, NULL, 0, NULL, 0, empty,
	                      sizeof(empty), &len);
	uint8_t pt[RECORD_PT_BYTES];
	fill_plaintext(pt);
	assert_int_equal(bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 0, pt, sizeof(pt), sealed, sizeof(sealed), &len),
	                 BKV_TOKEN_OK);
	assert_int_equal(open_record(f->t, sealed, len), BKV_TOKEN_OK);
}

/* record_seal.h: the output buffer must hold the plaintext plus the most any scheme adds,
 * whatever this token's scheme would use; else ARGUMENT, and nothing is written. */
static void sealing_into_a_short_buffer_is_an_argument_error(void **state)
{
	fx *f = *state;
	uint8_t pt[RECORD_PT_BYTES], out[RECORD_SEAL_CAP];
	fill_plaintext(pt);
	memset(out, 0xAA, sizeof(out));
	size_t len = 99;
	assert_int_equal(bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 0, pt, sizeof(pt), out, RECORD_SEAL_CAP - 1, &len),
	                 BKV_TOKEN_ERR_ARGUMENT);
	assert_true(is_all(out, sizeof(out), 0xAA));
	assert_int_equal(bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 0, pt, sizeof(pt), out, sizeof(out), NULL),
	                 BKV_TOKEN_ERR_ARGUMENT);
	assert_int_equal(bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 0, pt, sizeof(pt), out, sizeof(out), &len),
	                 BKV_TOKEN_OK);
	assert_int_equal(len, RECORD_SEALED);
}

static void sealing_twice_uses_fresh_ivs(void **state)
{
	fx *f = *state;
	uint8_t a[RECORD_SEALED], b[RECORD_SEALED];
	seal_record(f->t, a);
	seal_record(f->t, b);
	assert_memory_not_equal(a + RECORD_IV_AT, b + RECORD_IV_AT, 12);
	assert_memory_not_equal(a + RECORD_CT_AT, b + RECORD_CT_AT, RECORD_PT_BYTES);
}

static void sealed_record_does_not_open_under_another_account(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	assert_int_equal(open_record_as(f->t, OTHER_ACCOUNT, sizeof(OTHER_ACCOUNT), P256,
	                                RECORD_VERSION, NULL, 0, sealed, sizeof(sealed)),
	                 BKV_TOKEN_ERR_AUTH);
	/* A prefix of the account id is another account too. */
	assert_int_equal(open_record_as(f->t, ACCOUNT, sizeof(ACCOUNT) - 1, P256, RECORD_VERSION,
	                                NULL, 0, sealed, sizeof(sealed)),
	                 BKV_TOKEN_ERR_AUTH);
}

static void sealed_record_does_not_open_under_another_suite(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	assert_int_equal(open_record_as(f->t, ACCOUNT, sizeof(ACCOUNT), R255, RECORD_VERSION, NULL,
	                                0, sealed, sizeof(sealed)),
	                 BKV_TOKEN_ERR_AUTH);
}

static void sealed_record_does_not_open_under_another_record_version(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	const uint64_t others[] = {RECORD_VERSION - 1, RECORD_VERSION + 1,
	                           RECORD_VERSION | (1ull << 32), 0};
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		assert_int_equal(open_record_as(f->t, ACCOUNT, sizeof(ACCOUNT), P256, others[i],
		                                NULL, 0, sealed, sizeof(sealed)),
		                 BKV_TOKEN_ERR_AUTH);
}

/* record_seal.h: "relabelled with another key version, fails to open with
 * BKV_TOKEN_ERR_AUTH". Here the token holds only version 1, so every relabelling names a
 * version it does not have. */
static void sealed_record_relabelled_with_an_unknown_key_version_fails_auth(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	for (size_t i = 1; i <= 4; i++) {
		static const uint8_t masks[] = {0x01, 0x02, 0x80};
		for (size_t m = 0; m < sizeof(masks); m++) {
			sealed[i] ^= masks[m];
			bkv_token_err err = open_record(f->t, sealed, sizeof(sealed));
			if (err != BKV_TOKEN_ERR_AUTH)
				fail_msg("key version relabelled to %u: %s, expected AUTH",
				         bkv_record_seal_key_version(sealed, sizeof(sealed)),
				         bkv_token_strerror(err));
			sealed[i] ^= masks[m];
		}
	}
}

static void sealed_record_with_another_format_byte_fails_auth(void **state)
{
	fx *f = *state;
	assert_every_flip_fails(f->t, 0, 1);
	/* Every other format byte, 0x01 (the same bytes read as format 0x01) among them. */
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	for (unsigned v = 0; v <= 0xff; v++) {
		if (v == BKV_RECORD_SEAL_FORMAT)
			continue;
		sealed[0] = (uint8_t)v;
		bkv_token_err err = open_record(f->t, sealed, sizeof(sealed));
		if (err != BKV_TOKEN_ERR_AUTH)
			fail_msg("format byte 0x%02x: %s, expected AUTH", v,
			         bkv_token_strerror(err));
	}
}

/* The box's own header (scheme, IV length) is authenticated as well: any other scheme or IV
 * length, including the other valid ones, fails. */
static void sealed_record_with_another_box_header_fails_auth(void **state)
{
	fx *f = *state;
	assert_every_flip_fails(f->t, RECORD_SCHEME_AT, 2);
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	for (unsigned v = 0; v <= 0xff; v++) {
		for (size_t at = RECORD_SCHEME_AT; at <= RECORD_IVLEN_AT; at++) {
			const uint8_t keep = sealed[at];
			if (v == keep)
				continue;
			sealed[at] = (uint8_t)v;
			bkv_token_err err = open_record(f->t, sealed, sizeof(sealed));
			if (err != BKV_TOKEN_ERR_AUTH)
				fail_msg("byte %zu = 0x%02x: %s, expected AUTH", at, v,
				         bkv_token_strerror(err));
			sealed[at] = keep;
		}
	}
	assert_int_equal(open_record(f->t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
}

static void sealed_record_with_a_flipped_iv_byte_fails_auth(void **state)
{
	fx *f = *state;
	assert_every_flip_fails(f->t, RECORD_IV_AT, 12);
}

static void sealed_record_with_a_flipped_ciphertext_byte_fails_auth(void **state)
{
	fx *f = *state;
	assert_every_flip_fails(f->t, RECORD_CT_AT, RECORD_PT_BYTES);
}

static void sealed_record_with_a_flipped_tag_byte_fails_auth(void **state)
{
	fx *f = *state;
	assert_every_flip_fails(f->t, RECORD_TAG_AT, 16);
}

static void truncated_sealed_record_fails_auth(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	for (size_t len = 0; len < sizeof(sealed); len++) {
		bkv_token_err err = open_record(f->t, sealed, len);
		if (err != BKV_TOKEN_ERR_AUTH)
			fail_msg("truncated to %zu bytes: %s, expected AUTH", len,
			         bkv_token_strerror(err));
	}
	/* One byte more is not the record either. */
	uint8_t longer[RECORD_SEALED + 1];
	memcpy(longer, sealed, sizeof(sealed));
	longer[RECORD_SEALED] = 0;
	assert_int_equal(open_record(f->t, longer, sizeof(longer)), BKV_TOKEN_ERR_AUTH);
	/* A buffer too small for the plaintext is refused too, and receives nothing. */
	uint8_t pt[RECORD_PT_BYTES];
	size_t pt_len = 99;
	memset(pt, 0xAA, sizeof(pt));
	assert_int_not_equal(bkv_record_open(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION,
	                                     NULL, 0, sealed, sizeof(sealed), pt, sizeof(pt) - 1,
	                                     &pt_len),
	                     BKV_TOKEN_OK);
	assert_int_equal(pt_len, 0);
	assert_true(is_all(pt, sizeof(pt) - 1, 0xAA) || is_all(pt, sizeof(pt) - 1, 0x00));
	assert_int_equal(open_record(f->t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
}

/* ------------------------------------------------------------------------------------ */
/* The record-state MAC (token.h: bkv-state-mac-1, HMAC-SHA256 in the token)            */
/* ------------------------------------------------------------------------------------ */

static const uint8_t STATE_DATA[] = "bkv-v1 record-state: account, suite, state, counters";

typedef struct op_counts {
	unsigned n[4];
} op_counts;

static void count_op(void *arg, bkv_token_op op, uint64_t micros)
{
	(void)micros;
	op_counts *c = arg;
	assert_true((unsigned)op < 4);
	c->n[op]++;
}

static void state_mac_of(bkv_token *t, const uint8_t *data, size_t len,
                         uint8_t mac[BKV_TOKEN_STATE_MAC_BYTES])
{
	memset(mac, 0xAA, BKV_TOKEN_STATE_MAC_BYTES);
	assert_int_equal(bkv_token_state_mac(t, data, len, mac), BKV_TOKEN_OK);
}

static void state_mac_key_allows_only_hmac_sha256(void **state)
{
	(void)state;
	CK_SESSION_HANDLE h = inspect_session(g_label, false);
	CK_OBJECT_HANDLE k = find_one(h, CKO_SECRET_KEY, BKV_TOKEN_STATE_MAC_LABEL);
	assert_attr(h, k, CKA_SIGN, true);
	assert_attr(h, k, CKA_VERIFY, false);
	assert_attr(h, k, CKA_ENCRYPT, false);
	assert_attr(h, k, CKA_DECRYPT, false);
	assert_attr(h, k, CKA_DERIVE, false);
	assert_attr(h, k, CKA_WRAP, false);
	assert_attr(h, k, CKA_UNWRAP, false);
	CK_ULONG len = 0;
	CK_ATTRIBUTE value_len = {CKA_VALUE_LEN, &len, sizeof(len)};
	assert_int_equal(g_fn->C_GetAttributeValue(h, k, &value_len, 1), CKR_OK);
	assert_int_equal(len, BKV_TOKEN_STATE_MAC_BYTES);
	CK_MECHANISM_TYPE mechs[8];
	CK_ATTRIBUTE allowed = {CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)};
	if (g_fn->C_GetAttributeValue(h, k, &allowed, 1) == CKR_OK) {
		assert_int_equal(allowed.ulValueLen, sizeof(CK_MECHANISM_TYPE));
		assert_int_equal(mechs[0], CKM_SHA256_HMAC);
	}
	/* The token refuses every other use, not just the attributes. */
	CK_MECHANISM other_hmac = {CKM_SHA512_HMAC, NULL, 0};
	assert_int_not_equal(g_fn->C_SignInit(h, &other_hmac, k), CKR_OK);
	CK_MECHANISM verify = {CKM_SHA256_HMAC, NULL, 0};
	assert_int_not_equal(g_fn->C_VerifyInit(h, &verify, k), CKR_OK);
	uint8_t iv[16] = {0};
	CK_MECHANISM aes = {CKM_AES_CBC, iv, sizeof(iv)};
	assert_int_not_equal(g_fn->C_EncryptInit(h, &aes, k), CKR_OK);
	inspect_close(h);
}

/* Deterministic for one key, and every byte of the data counts (including its length). */
static void state_mac_is_deterministic_and_covers_every_byte(void **state)
{
	fx *f = *state;
	op_counts c;
	memset(&c, 0, sizeof(c));
	bkv_token_set_observer(f->t, count_op, &c);
	uint8_t a[BKV_TOKEN_STATE_MAC_BYTES], b[BKV_TOKEN_STATE_MAC_BYTES];
	state_mac_of(f->t, STATE_DATA, sizeof(STATE_DATA), a);
	state_mac_of(f->t, STATE_DATA, sizeof(STATE_DATA), b);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(c.n[BKV_TOKEN_OP_HMAC], 2); /* one token HMAC per MAC */
	bkv_token_set_observer(f->t, NULL, NULL);
	assert_false(is_all(a, sizeof(a), 0x00));
	assert_false(is_all(a, sizeof(a), 0xAA));
	uint8_t data[sizeof(STATE_DATA) + 1];
	memcpy(data, STATE_DATA, sizeof(STATE_DATA));
	for (size_t i = 0; i < sizeof(STATE_DATA); i++) {
		data[i] ^= 0x01;
		state_mac_of(f->t, data, sizeof(STATE_DATA), b);
		if (memcmp(a, b, sizeof(a)) == 0)
			fail_msg("flipping byte %zu left the MAC unchanged", i);
		data[i] ^= 0x01;
	}
	data[sizeof(STATE_DATA)] = 0;
	state_mac_of(f->t, data, sizeof(STATE_DATA) + 1, b); /* one byte longer */
	assert_memory_not_equal(a, b, sizeof(a));
	state_mac_of(f->t, data, sizeof(STATE_DATA) - 1, b); /* one byte shorter */
	assert_memory_not_equal(a, b, sizeof(a));
	/* Another session on the same token computes the same MAC. */
	bkv_token *other = vault_open_loaded(g_label);
	state_mac_of(other, STATE_DATA, sizeof(STATE_DATA), b);
	assert_memory_equal(a, b, sizeof(a));
	bkv_token_close(other);
}

/* Each token has its own key, and replacing the keys replaces it: a MAC made before no
 * longer verifies. */
static void state_mac_differs_between_tokens_and_after_the_keys_are_replaced(void **state)
{
	fx *f = *state;
	uint8_t main_mac[BKV_TOKEN_STATE_MAC_BYTES], before[BKV_TOKEN_STATE_MAC_BYTES],
	    after[BKV_TOKEN_STATE_MAC_BYTES];
	state_mac_of(f->t, STATE_DATA, sizeof(STATE_DATA), main_mac);
	bkv_token *t = fresh_token_with_keys("bkv-mac-other");
	state_mac_of(t, STATE_DATA, sizeof(STATE_DATA), before);
	assert_memory_not_equal(main_mac, before, sizeof(before));
	create_keys(t, true, NULL);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	state_mac_of(t, STATE_DATA, sizeof(STATE_DATA), after);
	assert_memory_not_equal(before, after, sizeof(after));
	assert_memory_not_equal(main_mac, after, sizeof(after));
	bkv_token_close(t);
}

/* Before bkv_token_load_keys there is no key to MAC with. */
static void state_mac_before_the_keys_are_loaded_is_key_missing(void **state)
{
	(void)state;
	bkv_token *t = vault_open(g_label);
	uint8_t mac[BKV_TOKEN_STATE_MAC_BYTES];
	memset(mac, 0xAA, sizeof(mac));
	assert_int_equal(bkv_token_state_mac(t, STATE_DATA, sizeof(STATE_DATA), mac),
	                 BKV_TOKEN_ERR_KEY_MISSING);
	assert_true(is_all(mac, sizeof(mac), 0xAA) || is_all(mac, sizeof(mac), 0x00));
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_state_mac(t, STATE_DATA, sizeof(STATE_DATA), mac), BKV_TOKEN_OK);
	bkv_token_close(t);
}

/* A token initialized before the state MAC existed: the vault refuses to load it (so no
 * record is read unverified), and running the key ceremony again adds only that key. */
static void a_token_without_the_state_mac_key_gets_it_from_create_keys(void **state)
{
	(void)state;
	init_token("bkv-mac-upgrade", NULL, 0);
	bkv_token *t = vault_open("bkv-mac-upgrade");
	report_log first, again;
	memset(&first, 0, sizeof(first));
	memset(&again, 0, sizeof(again));
	create_keys(t, false, &first);
	CK_SESSION_HANDLE h = inspect_session("bkv-mac-upgrade", true);
	assert_int_equal(
	    g_fn->C_DestroyObject(h, find_one(h, CKO_SECRET_KEY, BKV_TOKEN_STATE_MAC_LABEL)),
	    CKR_OK);
	inspect_close(h);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_ERR_KEY_MISSING);
	uint8_t mac[BKV_TOKEN_STATE_MAC_BYTES];
	assert_int_equal(bkv_token_state_mac(t, STATE_DATA, sizeof(STATE_DATA), mac),
	                 BKV_TOKEN_ERR_KEY_MISSING);
	create_keys(t, false, &again);
	assert_int_equal(again.n, NUM_KEY_LABELS);
	for (size_t i = 0; i < NUM_KEY_LABELS; i++) {
		const key_report *r = find_report(&again, all_key_labels[i]);
		const char *expected = strcmp(all_key_labels[i], BKV_TOKEN_STATE_MAC_LABEL) == 0
		                           ? "created"
		                           : "exists";
		if (strcmp(r->what, expected) != 0)
			fail_msg("%s reported \"%s\", expected \"%s\"", r->label, r->what,
			         expected);
	}
	/* The server keys stayed: the same public keys. */
	for (size_t i = 0; i < 2; i++) {
		const char *label = i == 0 ? "bkv-ake-p256-sha256" : "bkv-ake-ristretto255-sha512";
		const key_report *a = find_report(&first, label), *b = find_report(&again, label);
		assert_int_equal(a->public_key_len, b->public_key_len);
		assert_memory_equal(a->public_key, b->public_key, a->public_key_len);
	}
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	state_mac_of(t, STATE_DATA, sizeof(STATE_DATA), mac);
	bkv_token_close(t);
	h = inspect_session("bkv-mac-upgrade", false);
	assert_int_equal(count_labelled(h, BKV_TOKEN_STATE_MAC_LABEL), 1);
	inspect_close(h);
}

static void state_mac_argument_errors(void **state)
{
	fx *f = *state;
	uint8_t mac[BKV_TOKEN_STATE_MAC_BYTES];
	assert_int_equal(bkv_token_state_mac(NULL, STATE_DATA, sizeof(STATE_DATA), mac),
	                 BKV_TOKEN_ERR_ARGUMENT);
	assert_int_equal(bkv_token_state_mac(f->t, NULL, sizeof(STATE_DATA), mac),
	                 BKV_TOKEN_ERR_ARGUMENT);
	assert_int_equal(bkv_token_state_mac(f->t, STATE_DATA, 0, mac), BKV_TOKEN_ERR_ARGUMENT);
	assert_int_equal(bkv_token_state_mac(f->t, STATE_DATA, sizeof(STATE_DATA), NULL),
	                 BKV_TOKEN_ERR_ARGUMENT);
	/* None of them disturbed the session. */
	state_mac_of(f->t, STATE_DATA, sizeof(STATE_DATA), mac);
}

/* A dead session is a device failure (never a MAC that could be compared), the output
 * holds nothing, and after reopening the key is the same. */
static void state_mac_on_a_closed_session_is_a_device_error(void **state)
{
	fx *f = *state;
	uint8_t before[BKV_TOKEN_STATE_MAC_BYTES], mac[BKV_TOKEN_STATE_MAC_BYTES];
	state_mac_of(f->t, STATE_DATA, sizeof(STATE_DATA), before);
	close_all_sessions_underneath(g_label);
	memset(mac, 0xAA, sizeof(mac));
	assert_int_equal(bkv_token_state_mac(f->t, STATE_DATA, sizeof(STATE_DATA), mac),
	                 BKV_TOKEN_ERR_DEVICE);
	assert_true(is_all(mac, sizeof(mac), 0x00));
	assert_int_equal(bkv_token_last_error(f->t), BKV_TOKEN_ERR_DEVICE);
	assert_int_equal(bkv_token_reopen(f->t), BKV_TOKEN_OK);
	state_mac_of(f->t, STATE_DATA, sizeof(STATE_DATA), mac);
	assert_memory_equal(before, mac, sizeof(mac));
}

/* ------------------------------------------------------------------------------------ */
/* Known keys: the formats checked against OpenSSL                                       */
/* ------------------------------------------------------------------------------------ */

/* A token whose newest record-sealing key and state-MAC key have known values, so that the
 * token's HMAC and its sealed records can be checked against an independent computation.
 * The state-MAC key replaces the generated one (same label and protection); the sealing key
 * is imported as version 2, because version 1 seals the ristretto255 private key. Built
 * once. */
#define KNOWN_SEAL_VERSION 2
static uint8_t known_seal_key[32];
static uint8_t known_mac_key[BKV_TOKEN_STATE_MAC_BYTES];

/* Imports a key of known value: AES for encryption, or an HMAC-SHA256 key (replacing one
 * of the same label) restricted to CKM_SHA256_HMAC. */
static void import_known_key(CK_SESSION_HANDLE h, const char *label, bool aes, const uint8_t *value,
                             CK_ULONG len)
{
	if (!aes && count_labelled(h, label) > 0)
		assert_int_equal(g_fn->C_DestroyObject(h, find_one(h, CKO_SECRET_KEY, label)),
		                 CKR_OK);
	const vendor_key k = {
	    label, aes ? CKK_AES : CKK_GENERIC_SECRET, len, value, CK_TRUE, CK_FALSE, CK_TRUE};
	make_secret(h, &k, aes ? 0 : CKM_SHA256_HMAC);
}

/* A token with bkv's keys for both suites, then the given keys of known value imported
 * over them. Built once per label (*made). */
static bkv_token *known_token(const char *token, bool *made, const vendor_key *keys, size_t n)
{
	if (!*made) {
		init_token(token, NULL, 0);
		bkv_token *t = vault_open(token);
		create_keys(t, false, NULL);
		bkv_token_close(t);
		CK_SESSION_HANDLE h = inspect_session(token, true);
		for (size_t i = 0; i < n; i++)
			import_known_key(h, keys[i].label, keys[i].type == CKK_AES, keys[i].value,
			                 keys[i].len);
		inspect_close(h);
		*made = true;
	}
	return vault_open_loaded(token);
}

static bkv_token *known_keys_token(void)
{
	static bool made;
	for (size_t i = 0; i < 32; i++) {
		known_seal_key[i] = (uint8_t)(0x5c + 7 * i);
		known_mac_key[i] = (uint8_t)(0xa3 ^ (11 * i));
	}
	const vendor_key keys[] = {
	    {.label = "bkv-seal-2", .type = CKK_AES, .len = 32, .value = known_seal_key},
	    {.label = BKV_TOKEN_STATE_MAC_LABEL,
	     .type = CKK_GENERIC_SECRET,
	     .len = 32,
	     .value = known_mac_key},
	};
	return known_token("bkv-known-keys", &made, keys, 2);
}

static void state_mac_equals_software_hmac_sha256(void **state)
{
	(void)state;
	bkv_token *t = known_keys_token();
	static uint8_t data[1200];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 29 + 3);
	const size_t lens[] = {1, 31, 32, 63, 64, 65, 333, sizeof(data)};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t got[BKV_TOKEN_STATE_MAC_BYTES], want[EVP_MAX_MD_SIZE];
		unsigned int want_len = 0;
		state_mac_of(t, data, lens[i], got);
		assert_non_null(HMAC(EVP_sha256(), known_mac_key, (int)sizeof(known_mac_key), data,
		                     lens[i], want, &want_len));
		assert_int_equal(want_len, BKV_TOKEN_STATE_MAC_BYTES);
		assert_memory_equal(got, want, BKV_TOKEN_STATE_MAC_BYTES);
	}
	bkv_token_close(t);
}

/* record_seal.h's AAD, built here from the specification. */
static size_t spec_record_aad(uint8_t *aad, const uint8_t *account, size_t account_len,
                              opaque_suite_id suite, uint64_t version, uint32_t key_version,
                              const uint8_t *reg_id, size_t reg_id_len)
{
	static const char label[] = "bkv-v1 record";
	size_t n = 0;
	memcpy(aad, label, sizeof(label) - 1);
	n += sizeof(label) - 1;
	aad[n++] = (uint8_t)(account_len >> 8);
	aad[n++] = (uint8_t)account_len;
	memcpy(aad + n, account, account_len);
	n += account_len;
	aad[n++] = (uint8_t)suite;
	for (int i = 7; i >= 0; i--)
		aad[n++] = (uint8_t)(version >> (8 * i));
	for (int i = 3; i >= 0; i--)
		aad[n++] = (uint8_t)(key_version >> (8 * i));
	if (reg_id_len > 0)
		memcpy(aad + n, reg_id, reg_id_len);
	return n + reg_id_len;
}

#define SPEC_AAD_MAX 512

/* Where the parts of a record sealed with GCM and a 12-byte IV are, in format 0x02 (a box
 * after the header) or 0x01 (no box header). */
static size_t spec_iv_at(int format)
{
	return format == BKV_RECORD_SEAL_FORMAT ? 1 + 4 + 2 : 1 + 4;
}

static size_t spec_sealed_len(int format)
{
	return spec_iv_at(format) + 12 + RECORD_PT_BYTES + 16;
}

/* AES-256-GCM under the known seal key, laid out as record_seal.h and token.h say:
 *   format 0x02: 0x02 || version (4) || 0x01 (GCM) || 12 || iv || ciphertext || tag
 *   format 0x01: 0x01 || version (4) || iv || ciphertext || tag
 * encrypt: pt -> sealed (spec_sealed_len(format) bytes), or open: sealed -> pt. false if
 * the header is not that or the tag does not verify. */
static bool soft_record_aead(int format, bool encrypt, const uint8_t *reg_id, size_t reg_id_len,
                             uint8_t *pt, uint8_t *sealed)
{
	uint8_t aad[SPEC_AAD_MAX];
	const size_t aad_len = spec_record_aad(aad, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION,
	                                       KNOWN_SEAL_VERSION, reg_id, reg_id_len);
	uint8_t header[7] = {(uint8_t)format, 0, 0, 0, KNOWN_SEAL_VERSION, 0x01, 12};
	const size_t iv_at = spec_iv_at(format), ct_at = iv_at + 12,
	             tag_at = ct_at + RECORD_PT_BYTES;
	if (encrypt) {
		memcpy(sealed, header, iv_at);
		randombytes_buf(sealed + iv_at, 12);
	} else if (memcmp(sealed, header, iv_at) != 0) {
		return false;
	}
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;
	bool ok = ctx != NULL &&
	          EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, known_seal_key, sealed + iv_at,
	                            encrypt ? 1 : 0) == 1 &&
	          EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1;
	if (ok && encrypt)
		ok = EVP_CipherUpdate(ctx, sealed + ct_at, &n, pt, RECORD_PT_BYTES) == 1 &&
		     EVP_CipherFinal_ex(ctx, sealed + ct_at + n, &fin) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, sealed + tag_at) == 1;
	else if (ok)
		ok = EVP_CipherUpdate(ctx, pt, &n, sealed + ct_at, RECORD_PT_BYTES) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, sealed + tag_at) == 1 &&
		     EVP_CipherFinal_ex(ctx, pt + n, &fin) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

static const uint8_t REG_ID[BKV_REGISTRATION_ID_BYTES] = {
    0x52, 0x45, 0x47, 0x2d, 0x49, 0x44, 0x2d, 0x30, 0x31, 0x9a, 0x0b, 0xcc, 0x1d, 0xee, 0x2f, 0x70};
static const uint8_t OTHER_REG_ID[BKV_REGISTRATION_ID_BYTES] = {
    0x52, 0x45, 0x47, 0x2d, 0x49, 0x44, 0x2d, 0x30, 0x32, 0x9a, 0x0b, 0xcc, 0x1d, 0xee, 0x2f, 0x70};

/* Opens with the given registration id; a failure must hand out no plaintext. */
static bkv_token_err open_record_for(bkv_token *t, const uint8_t *reg_id, size_t reg_id_len,
                                     const uint8_t *sealed, size_t sealed_len,
                                     uint8_t pt[RECORD_PT_BYTES])
{
	memset(pt, 0xAA, RECORD_PT_BYTES);
	size_t pt_len = 99;
	bkv_token_err err =
	    bkv_record_open(t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, reg_id, reg_id_len,
	                    sealed, sealed_len, pt, RECORD_PT_BYTES, &pt_len);
	if (err == BKV_TOKEN_OK) {
		assert_int_equal(pt_len, RECORD_PT_BYTES);
	} else {
		assert_int_equal(pt_len, 0);
		assert_true(is_all(pt, RECORD_PT_BYTES, 0xAA) || is_all(pt, RECORD_PT_BYTES, 0x00));
	}
	return err;
}

/* Seals expected for ACCOUNT, P256, RECORD_VERSION and the registration id; returns the
 * length. */
static size_t seal_record_for(bkv_token *t, const uint8_t *reg_id, size_t reg_id_len,
                              const uint8_t expected[RECORD_PT_BYTES],
                              uint8_t sealed[RECORD_SEAL_CAP])
{
	size_t len = 0;
	assert_int_equal(bkv_record_seal(t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, reg_id,
	                                 reg_id_len, expected, RECORD_PT_BYTES, sealed,
	                                 RECORD_SEAL_CAP, &len),
	                 BKV_TOKEN_OK);
	return len;
}

/* The token seals with the registration id at the end of the AAD, as record_seal.h says. */
static void sealed_record_binds_the_registration_id_as_specified(void **state)
{
	(void)state;
	bkv_token *t = known_keys_token();
	const size_t len = spec_sealed_len(BKV_RECORD_SEAL_FORMAT);
	uint8_t pt[RECORD_PT_BYTES], expected[RECORD_PT_BYTES], sealed[RECORD_SEAL_CAP];
	fill_plaintext(expected);
	assert_int_equal(seal_record_for(t, REG_ID, sizeof(REG_ID), expected, sealed), len);
	assert_int_equal(bkv_record_seal_key_version(sealed, len), KNOWN_SEAL_VERSION);
	assert_true(
	    soft_record_aead(BKV_RECORD_SEAL_FORMAT, false, REG_ID, sizeof(REG_ID), pt, sealed));
	assert_memory_equal(pt, expected, sizeof(pt));
	assert_false(soft_record_aead(BKV_RECORD_SEAL_FORMAT, false, NULL, 0, pt, sealed));
	assert_false(soft_record_aead(BKV_RECORD_SEAL_FORMAT, false, OTHER_REG_ID,
	                              sizeof(OTHER_REG_ID), pt, sealed));
	/* And what software seals with the id opens in the token with it, and only with it. */
	assert_true(soft_record_aead(BKV_RECORD_SEAL_FORMAT, true, REG_ID, sizeof(REG_ID), expected,
	                             sealed));
	assert_int_equal(open_record_for(t, REG_ID, sizeof(REG_ID), sealed, len, pt), BKV_TOKEN_OK);
	assert_memory_equal(pt, expected, sizeof(pt));
	assert_int_equal(open_record_for(t, NULL, 0, sealed, len, pt), BKV_TOKEN_ERR_AUTH);
	assert_int_equal(open_record_for(t, OTHER_REG_ID, sizeof(OTHER_REG_ID), sealed, len, pt),
	                 BKV_TOKEN_ERR_AUTH);
	bkv_token_close(t);
}

/* A record sealed before registration ids (the AAD without one, built by OpenSSL here, not
 * by the code under test) still opens with an empty id, and with no id but that. */
static void legacy_sealed_records_open_with_an_empty_registration_id(void **state)
{
	(void)state;
	bkv_token *t = known_keys_token();
	const size_t len = spec_sealed_len(BKV_RECORD_SEAL_FORMAT);
	uint8_t pt[RECORD_PT_BYTES], expected[RECORD_PT_BYTES], sealed[RECORD_SEAL_CAP];
	fill_plaintext(expected);
	assert_true(soft_record_aead(BKV_RECORD_SEAL_FORMAT, true, NULL, 0, expected, sealed));
	assert_int_equal(open_record_for(t, NULL, 0, sealed, len, pt), BKV_TOKEN_OK);
	assert_memory_equal(pt, expected, sizeof(pt));
	assert_int_equal(open_record_for(t, REG_ID, 0, sealed, len, pt), BKV_TOKEN_OK); /* len 0 */
	assert_int_equal(open_record_for(t, REG_ID, sizeof(REG_ID), sealed, len, pt),
	                 BKV_TOKEN_ERR_AUTH);
	/* The token's own empty-id seal is the legacy format too. */
	assert_int_equal(seal_record_for(t, NULL, 0, expected, sealed), len);
	assert_true(soft_record_aead(BKV_RECORD_SEAL_FORMAT, false, NULL, 0, pt, sealed));
	assert_memory_equal(pt, expected, sizeof(pt));
	bkv_token_close(t);
}

/* record_seal.h: format 0x01 (0x01 || version || iv || GCM ciphertext || tag, the same AAD)
 * still opens. The record is made by OpenSSL under the known key, from the specification. */
static void format_1_records_made_by_openssl_open(void **state)
{
	(void)state;
	bkv_token *t = known_keys_token();
	const size_t len = spec_sealed_len(BKV_RECORD_SEAL_FORMAT_LEGACY);
	assert_int_equal(len, LEGACY_RECORD_SEALED);
	uint8_t pt[RECORD_PT_BYTES], expected[RECORD_PT_BYTES], sealed[RECORD_SEAL_CAP];
	fill_plaintext(expected);
	for (size_t r = 0; r < 2; r++) {
		const uint8_t *reg_id = r == 0 ? NULL : REG_ID;
		const size_t reg_id_len = r == 0 ? 0 : sizeof(REG_ID);
		assert_true(soft_record_aead(BKV_RECORD_SEAL_FORMAT_LEGACY, true, reg_id,
		                             reg_id_len, expected, sealed));
		assert_int_equal(bkv_record_seal_key_version(sealed, len), KNOWN_SEAL_VERSION);
		assert_int_equal(open_record_for(t, reg_id, reg_id_len, sealed, len, pt),
		                 BKV_TOKEN_OK);
		assert_memory_equal(pt, expected, sizeof(pt));
		/* Bound like format 0x02: not another registration, and not one byte changed. */
		assert_int_equal(open_record_for(t, r == 0 ? REG_ID : NULL,
		                                 sizeof(REG_ID) - reg_id_len, sealed, len, pt),
		                 BKV_TOKEN_ERR_AUTH);
		for (size_t i = 0; i < len; i++) {
			sealed[i] ^= 0x01;
			if (open_record_for(t, reg_id, reg_id_len, sealed, len, pt) !=
			    BKV_TOKEN_ERR_AUTH)
				fail_msg("format 0x01, byte %zu ^ 0x01 opened", i);
			sealed[i] ^= 0x01;
		}
		/* The same bytes labelled format 0x02 are no box. */
		sealed[0] = BKV_RECORD_SEAL_FORMAT;
		assert_int_equal(open_record_for(t, reg_id, reg_id_len, sealed, len, pt),
		                 BKV_TOKEN_ERR_AUTH);
	}
	/* And a format 0x02 record relabelled 0x01 does not open either. */
	assert_true(soft_record_aead(BKV_RECORD_SEAL_FORMAT, true, NULL, 0, expected, sealed));
	sealed[0] = BKV_RECORD_SEAL_FORMAT_LEGACY;
	assert_int_equal(
	    open_record_for(t, NULL, 0, sealed, spec_sealed_len(BKV_RECORD_SEAL_FORMAT), pt),
	    BKV_TOKEN_ERR_AUTH);
	bkv_token_close(t);
}

/* Format 0x01 on the main token, whose key nobody knows: a format 0x02 record with a 12-byte
 * IV holds exactly format 0x01's bytes after its box header (token.h, record_seal.h), so
 * 0x01 || version || iv || ciphertext || tag made from it must open to the same plaintext,
 * and not with any byte changed. */
static void format_1_record_from_a_format_2_record_opens(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED], legacy[LEGACY_RECORD_SEALED];
	seal_record(f->t, sealed);
	assert_int_equal(sealed[RECORD_SCHEME_AT], 1);
	assert_int_equal(sealed[RECORD_IVLEN_AT], 12);
	legacy[0] = 0x01;
	memcpy(legacy + 1, sealed + 1, 4);
	memcpy(legacy + 5, sealed + RECORD_IV_AT, RECORD_SEALED - RECORD_IV_AT);
	assert_int_equal(bkv_record_seal_key_version(legacy, sizeof(legacy)), 1);
	assert_int_equal(open_record(f->t, legacy, sizeof(legacy)), BKV_TOKEN_OK);
	/* Bound to where it belongs. */
	assert_int_equal(open_record_as(f->t, OTHER_ACCOUNT, sizeof(OTHER_ACCOUNT), P256,
	                                RECORD_VERSION, NULL, 0, legacy, sizeof(legacy)),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(open_record_as(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION + 1,
	                                NULL, 0, legacy, sizeof(legacy)),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(open_record_as(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION,
	                                REG_ID, sizeof(REG_ID), legacy, sizeof(legacy)),
	                 BKV_TOKEN_ERR_AUTH);
	/* Every byte: format, version, iv, ciphertext, tag. */
	assert_flips_fail(f->t, legacy, sizeof(legacy), RECORD_PT_BYTES, 0, sizeof(legacy));
	for (size_t len = 0; len < sizeof(legacy); len++) {
		if (open_record(f->t, legacy, len) != BKV_TOKEN_ERR_AUTH)
			fail_msg("format 0x01 truncated to %zu bytes: not AUTH", len);
	}
}

/* On the main token: a record sealed for one registration opens for no other, whichever
 * bit of the id differs, nor as a legacy record. */
static void sealed_record_with_a_registration_id_opens_only_with_it(void **state)
{
	fx *f = *state;
	uint8_t pt[RECORD_PT_BYTES], expected[RECORD_PT_BYTES], sealed[RECORD_SEAL_CAP];
	fill_plaintext(expected);
	const size_t len = seal_record_for(f->t, REG_ID, sizeof(REG_ID), expected, sealed);
	assert_int_equal(len, RECORD_SEALED);
	assert_int_equal(open_record_for(f->t, REG_ID, sizeof(REG_ID), sealed, len, pt),
	                 BKV_TOKEN_OK);
	assert_memory_equal(pt, expected, sizeof(pt));
	assert_int_equal(open_record_for(f->t, NULL, 0, sealed, len, pt), BKV_TOKEN_ERR_AUTH);
	assert_int_equal(open_record_for(f->t, OTHER_REG_ID, sizeof(OTHER_REG_ID), sealed, len, pt),
	                 BKV_TOKEN_ERR_AUTH);
	uint8_t id[BKV_REGISTRATION_ID_BYTES];
	for (size_t bit = 0; bit < 8 * sizeof(id); bit++) {
		memcpy(id, REG_ID, sizeof(id));
		id[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (open_record_for(f->t, id, sizeof(id), sealed, len, pt) != BKV_TOKEN_ERR_AUTH)
			fail_msg("registration id with bit %zu flipped opened the record", bit);
	}
	/* Still bound to everything else as well. */
	assert_int_equal(open_record_as(f->t, OTHER_ACCOUNT, sizeof(OTHER_ACCOUNT), P256,
	                                RECORD_VERSION, REG_ID, sizeof(REG_ID), sealed, len),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(open_record_as(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION + 1,
	                                REG_ID, sizeof(REG_ID), sealed, len),
	                 BKV_TOKEN_ERR_AUTH);
}

/* record_seal.h: the id is 0 or 16 bytes, else BKV_TOKEN_ERR_ARGUMENT (nothing sealed or
 * opened). */
static void a_registration_id_of_another_length_is_an_argument_error(void **state)
{
	fx *f = *state;
	uint8_t pt[RECORD_PT_BYTES], sealed[RECORD_SEAL_CAP], id[BKV_REGISTRATION_ID_BYTES * 2 + 1];
	size_t len = 0, pt_len = 0;
	fill_plaintext(pt);
	memset(id, 0x42, sizeof(id));
	const size_t lens[] = {1, BKV_REGISTRATION_ID_BYTES - 1, BKV_REGISTRATION_ID_BYTES + 1,
	                       BKV_REGISTRATION_ID_BYTES * 2, sizeof(id)};
	uint8_t good[RECORD_SEAL_CAP];
	const size_t good_len = seal_record_for(f->t, id, BKV_REGISTRATION_ID_BYTES, pt, good);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		assert_int_equal(bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), P256,
		                                 RECORD_VERSION, id, lens[i], pt, sizeof(pt),
		                                 sealed, sizeof(sealed), &len),
		                 BKV_TOKEN_ERR_ARGUMENT);
		assert_int_equal(bkv_record_open(f->t, ACCOUNT, sizeof(ACCOUNT), P256,
		                                 RECORD_VERSION, id, lens[i], good, good_len, pt,
		                                 sizeof(pt), &pt_len),
		                 BKV_TOKEN_ERR_ARGUMENT);
	}
	assert_int_equal(bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 BKV_REGISTRATION_ID_BYTES, pt, sizeof(pt), sealed,
	                                 sizeof(sealed), &len),
	                 BKV_TOKEN_ERR_ARGUMENT);
	assert_int_equal(bkv_record_open(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 BKV_REGISTRATION_ID_BYTES, good, good_len, pt, sizeof(pt),
	                                 &pt_len),
	                 BKV_TOKEN_ERR_ARGUMENT);
	/* The session is fine afterwards. */
	assert_int_equal(bkv_record_open(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, id,
	                                 BKV_REGISTRATION_ID_BYTES, good, good_len, pt, sizeof(pt),
	                                 &pt_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(pt_len, RECORD_PT_BYTES);
}

/* ------------------------------------------------------------------------------------ */
/* Seal-key rotation (each test on a token of its own)                                   */
/* ------------------------------------------------------------------------------------ */

static void assert_seal_versions(bkv_token *t, const uint32_t *expected, size_t n)
{
	uint32_t versions[16];
	size_t count = 99;
	assert_int_equal(bkv_token_seal_versions(t, versions, 16, &count), BKV_TOKEN_OK);
	assert_int_equal(count, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(versions[i], expected[i]);
}

static void rotating_the_seal_key_creates_version_2(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-rot-create");
	static const uint32_t before[] = {1}, after[] = {1, 2};
	assert_seal_versions(t, before, 1);
	uint32_t version = 0;
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(version, 2);
	assert_seal_versions(t, after, 2);
	bkv_token_close(t);
}

static void new_seals_use_the_new_version_once_keys_are_reloaded(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-rot-use");
	uint32_t version;
	uint8_t sealed[RECORD_SEALED];
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	/* Not before the reload. */
	assert_int_equal(bkv_token_seal_version(t), 1);
	seal_record(t, sealed);
	assert_int_equal(bkv_record_seal_key_version(sealed, sizeof(sealed)), 1);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_seal_version(t), 2);
	seal_record(t, sealed);
	assert_int_equal(bkv_record_seal_key_version(sealed, sizeof(sealed)), 2);
	assert_int_equal(open_record(t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	bkv_token_close(t);
}

static void records_sealed_under_version_1_open_after_rotation(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-rot-old");
	uint32_t version;
	uint8_t sealed[RECORD_SEALED];
	seal_record(t, sealed);
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_int_equal(open_record(t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	/* And in a later session, which also still unseals the ristretto255 key. */
	bkv_token_close(t);
	t = vault_open_loaded("bkv-rot-old");
	assert_int_equal(bkv_token_seal_version(t), 2);
	assert_int_equal(open_record(t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	bkv_token_close(t);
}

/* Replicas restart one by one after a rotation: a session that loaded its keys before the
 * rotation still opens records a restarted one sealed under the new version, and then
 * seals with it too. */
static void
a_session_loaded_before_a_rotation_opens_records_sealed_under_the_new_version(void **state)
{
	(void)state;
	bkv_token *before = fresh_token_with_keys("bkv-rot-lazy");
	bkv_token *after = vault_open_loaded("bkv-rot-lazy");
	uint32_t version;
	uint8_t sealed[RECORD_SEALED];
	assert_int_equal(bkv_token_rotate_seal_key(after, &version), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_load_keys(after, both_suites, 2), BKV_TOKEN_OK);
	seal_record(after, sealed);
	assert_int_equal(bkv_record_seal_key_version(sealed, sizeof(sealed)), 2);
	assert_int_equal(bkv_token_seal_version(before), 1);
	assert_int_equal(open_record(before, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_seal_version(before), 2);
	bkv_token_close(after);
	bkv_token_close(before);
}

static void sealed_record_relabelled_with_another_existing_key_version_fails_auth(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-rot-relabel");
	uint32_t version;
	uint8_t sealed[RECORD_SEALED];
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	seal_record(t, sealed); /* under 2 */
	sealed[4] = 1;          /* claims 1 */
	assert_int_equal(open_record(t, sealed, sizeof(sealed)), BKV_TOKEN_ERR_AUTH);
	bkv_token_close(t);
}

static void deleting_the_newest_seal_key_is_refused(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-rot-newest");
	static const uint32_t both[] = {1, 2};
	uint32_t version;
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_delete_seal_key(t, 2), BKV_TOKEN_ERR_KEY_IN_USE);
	assert_seal_versions(t, both, 2);
	bkv_token_close(t);
}

static void deleting_the_seal_key_of_the_ristretto255_key_is_refused(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-rot-r255");
	static const uint32_t both[] = {1, 2};
	uint32_t version;
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_delete_seal_key(t, 1), BKV_TOKEN_ERR_KEY_IN_USE);
	assert_seal_versions(t, both, 2);
	bkv_token_close(t);
}

static void deleting_an_unused_old_seal_key_succeeds(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-rot-delete");
	static const uint32_t left[] = {1, 3};
	uint32_t version;
	uint8_t sealed_2[RECORD_SEALED];
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	seal_record(t, sealed_2);
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(version, 3);
	assert_int_equal(bkv_token_delete_seal_key(t, 2), BKV_TOKEN_OK);
	assert_seal_versions(t, left, 2);
	/* The vault keeps working (the ristretto255 key is still under 1); a record under the
	 * deleted key no longer opens. */
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_seal_version(t), 3);
	assert_int_not_equal(open_record(t, sealed_2, sizeof(sealed_2)), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_delete_seal_key(t, 2), BKV_TOKEN_ERR_KEY_MISSING);
	bkv_token_close(t);
}

/* ------------------------------------------------------------------------------------ */
/* Seal schemes through the quirks module (tests/pkcs11-quirks)                          */
/* ------------------------------------------------------------------------------------ */

/* The quirks module forwards to the same SoftHSM2 as g_module (BKV_QUIRKS_MODULE), so a token
 * initialized and inspected through g_fn is the one the vault opens through the quirks. */
static bkv_token *open_with(const char *label, const char *module, const char *quirks,
                            bkv_token_p256_ake ake)
{
	bkv_token_config cfg = config_for(label);
	cfg.module_path = module;
	cfg.p256_ake = ake;
	if (quirks != NULL)
		assert_int_equal(setenv("BKV_QUIRKS", quirks, 1), 0);
	bkv_token *t = NULL;
	char why[512] = "";
	bkv_token_err err = bkv_token_open(&cfg, &t, why, sizeof(why));
	unsetenv("BKV_QUIRKS");
	if (err != BKV_TOKEN_OK)
		fail_msg("bkv_token_open(%s, %s, BKV_QUIRKS=%s): %s: %s", label, module,
		         quirks != NULL ? quirks : "-", bkv_token_strerror(err), why);
	return t;
}

/* Through the quirks module with BKV_QUIRKS=quirks. */
static bkv_token *quirks_open(const char *label, const char *quirks)
{
	return open_with(label, g_quirks_module, quirks, BKV_TOKEN_P256_AKE_TOKEN);
}

static void load_both(bkv_token *t)
{
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
}

static void assert_preflight_passes(bkv_token *t)
{
	char why[512] = "";
	bkv_token_err err = bkv_token_preflight(t, why, sizeof(why));
	if (err != BKV_TOKEN_OK)
		fail_msg("preflight: %s: %s", bkv_token_strerror(err), why);
}

/* A new token whose keys bkvd init made through the quirks module without GCM. */
static bkv_token *fresh_cbc_token(const char *label, report_log *log)
{
	init_token(label, NULL, 0);
	bkv_token *t = quirks_open(label, "no-gcm");
	create_keys(t, false, log);
	load_both(t);
	return t;
}

/* One CBC_HMAC token shared by the tests that do not change it; opened through the quirks
 * module without GCM, keys loaded. */
static bkv_token *cbc_token(void)
{
	static bool made;
	if (!made) {
		report_log log;
		memset(&log, 0, sizeof(log));
		bkv_token_close(fresh_cbc_token("bkv-cbc", &log));
		for (size_t i = 0; i < NUM_KEY_LABELS; i++)
			assert_string_equal(find_report(&log, all_key_labels[i])->what, "created");
		made = true;
	}
	bkv_token *t = quirks_open("bkv-cbc", "no-gcm");
	load_both(t);
	return t;
}

/* A CBC_HMAC box: scheme 2, a 16-byte IV, whole blocks of CBC-PAD ciphertext (always at
 * least one byte of padding), a 32-byte tag. */
#define CBC_BOX_BYTES(pt_len) (2 + 16 + ((pt_len) / 16 + 1) * 16 + 32)

static void assert_cbc_record_layout(const uint8_t *sealed, size_t len, size_t pt_len,
                                     uint32_t version)
{
	const uint8_t header[] = {0x02,
	                          (uint8_t)(version >> 24),
	                          (uint8_t)(version >> 16),
	                          (uint8_t)(version >> 8),
	                          (uint8_t)version,
	                          BKV_TOKEN_SCHEME_CBC_HMAC,
	                          16};
	assert_memory_equal(sealed, header, sizeof(header));
	assert_int_equal(len, 5 + CBC_BOX_BYTES(pt_len));
	assert_int_equal((len - 5 - 2 - 16 - 32) % 16, 0);
}

/* bkvd init on a token without GCM pairs each sealing key with an HMAC-SHA256 key, as
 * protected as every other secret and good for nothing but HMAC-SHA256; the main token
 * (with GCM) has none. */
static void a_token_without_gcm_gets_hmac_keys_for_its_sealing_keys(void **state)
{
	(void)state;
	bkv_token *t = cbc_token();
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 1), BKV_TOKEN_SCHEME_CBC_HMAC);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_TICKET, 1),
	                 BKV_TOKEN_SCHEME_CBC_HMAC);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 2), 0); /* not loaded */
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_TICKET, 2), 0);
	bkv_token_close(t);
	static const char *const mac_labels[] = {"bkv-seal-mac-1", "bkv-ticket-mac-1"};
	CK_SESSION_HANDLE h = inspect_session("bkv-cbc", false);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(count_labelled(h, mac_labels[i]), 1);
		CK_OBJECT_HANDLE k = find_one(h, CKO_SECRET_KEY, mac_labels[i]);
		assert_protected_secret(h, k);
		assert_value_unreadable(h, k);
		assert_attr(h, k, CKA_SIGN, true);
		assert_attr(h, k, CKA_VERIFY, false);
		assert_attr(h, k, CKA_ENCRYPT, false);
		assert_attr(h, k, CKA_DECRYPT, false);
		assert_attr(h, k, CKA_DERIVE, false);
		assert_attr(h, k, CKA_WRAP, false);
		assert_attr(h, k, CKA_UNWRAP, false);
		CK_ULONG len = 0;
		CK_ATTRIBUTE value_len = {CKA_VALUE_LEN, &len, sizeof(len)};
		assert_int_equal(g_fn->C_GetAttributeValue(h, k, &value_len, 1), CKR_OK);
		assert_int_equal(len, 32);
		CK_MECHANISM_TYPE mechs[8];
		CK_ATTRIBUTE allowed = {CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)};
		if (g_fn->C_GetAttributeValue(h, k, &allowed, 1) == CKR_OK) {
			assert_int_equal(allowed.ulValueLen, sizeof(CK_MECHANISM_TYPE));
			assert_int_equal(mechs[0], CKM_SHA256_HMAC);
		}
	}
	/* The AES keys themselves are the usual ones. */
	for (size_t i = 0; i < 2; i++)
		assert_protected_secret(h, find_one(h, CKO_SECRET_KEY, secret_key_labels[i]));
	inspect_close(h);
	h = inspect_session(g_label, false);
	for (size_t i = 0; i < 2; i++)
		assert_int_equal(count_labelled(h, mac_labels[i]), 0);
	inspect_close(h);
	t = vault_open_loaded(g_label);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 1), BKV_TOKEN_SCHEME_GCM);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_TICKET, 1), BKV_TOKEN_SCHEME_GCM);
	bkv_token_close(t);
}

/* Records seal and open under CBC_HMAC, in token.h's layout, for plaintexts on and off the
 * block boundary, each seal with a fresh IV. */
static void cbc_records_round_trip_in_the_specified_layout(void **state)
{
	(void)state;
	bkv_token *t = cbc_token();
	assert_preflight_passes(t);
	const size_t lens[] = {0, 1, 15, 16, 17, 31, 32, RECORD_PT_BYTES, 100, 257};
	uint8_t a[512], b[512], pt[512];
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		const size_t n = lens[i];
		const size_t len = seal_record_n(t, n, a, n + BKV_RECORD_SEAL_OVERHEAD_MAX);
		assert_cbc_record_layout(a, len, n, 1);
		assert_int_equal(bkv_record_seal_key_version(a, len), 1);
		assert_int_equal(open_record_n(t, a, len, n), BKV_TOKEN_OK);
		assert_int_equal(seal_record_n(t, n, b, n + BKV_RECORD_SEAL_OVERHEAD_MAX), len);
		assert_memory_not_equal(a + 7, b + 7, 16); /* IVs */
		assert_memory_not_equal(a + 7 + 16, b + 7 + 16, len - 7 - 16 - 32);
		assert_memory_not_equal(a + len - 32, b + len - 32, 32);
		if (n >= 16) {
			fill_plaintext_n(pt, n);
			assert_memory_not_equal(a + 7 + 16, pt, 16);
		}
	}
	bkv_token_close(t);
}

/* Every byte of a CBC_HMAC record counts: the record header, the box header, the IV, the
 * ciphertext and the tag; and so does its length. */
static void cbc_record_with_any_byte_changed_fails_auth(void **state)
{
	(void)state;
	bkv_token *t = cbc_token();
	uint8_t sealed[RECORD_SEAL_CAP + 32];
	const size_t len = seal_record_n(t, RECORD_PT_BYTES, sealed, RECORD_SEAL_CAP);
	assert_cbc_record_layout(sealed, len, RECORD_PT_BYTES, 1);
	assert_flips_fail(t, sealed, len, RECORD_PT_BYTES, 0, len);
	for (size_t l = 0; l < len; l++) {
		if (open_record(t, sealed, l) != BKV_TOKEN_ERR_AUTH)
			fail_msg("CBC record truncated to %zu bytes: not AUTH", l);
	}
	/* Longer by a byte, by a block, and by a block in the middle. */
	memset(sealed + len, 0, 32);
	assert_int_equal(open_record(t, sealed, len + 1), BKV_TOKEN_ERR_AUTH);
	assert_int_equal(open_record(t, sealed, len + 16), BKV_TOKEN_ERR_AUTH);
	uint8_t spliced[RECORD_SEAL_CAP + 16];
	memcpy(spliced, sealed, 7 + 16 + 16);
	memcpy(spliced + 7 + 16 + 16, sealed + 7 + 16, len - 7 - 16);
	assert_int_equal(open_record(t, spliced, len + 16), BKV_TOKEN_ERR_AUTH);
	/* Relabelled as a GCM box with either IV length. */
	for (size_t iv = 12; iv <= 16; iv += 4) {
		memcpy(spliced, sealed, len);
		spliced[RECORD_SCHEME_AT] = BKV_TOKEN_SCHEME_GCM;
		spliced[RECORD_IVLEN_AT] = (uint8_t)iv;
		assert_int_equal(open_record(t, spliced, len), BKV_TOKEN_ERR_AUTH);
	}
	assert_int_equal(open_record(t, sealed, len), BKV_TOKEN_OK);
	bkv_token_close(t);
}

/* The HMAC covers the AAD: a CBC_HMAC record moved to another account, suite, record version
 * or registration does not open, nor a box opened with any other AAD, a prefix or an
 * extension of it included. */
static void cbc_box_opens_only_with_its_aad(void **state)
{
	(void)state;
	bkv_token *t = cbc_token();
	uint8_t sealed[RECORD_SEAL_CAP];
	const size_t len = seal_record_n(t, RECORD_PT_BYTES, sealed, sizeof(sealed));
	assert_int_equal(open_record_as(t, OTHER_ACCOUNT, sizeof(OTHER_ACCOUNT), P256,
	                                RECORD_VERSION, NULL, 0, sealed, len),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(
	    open_record_as(t, ACCOUNT, sizeof(ACCOUNT), R255, RECORD_VERSION, NULL, 0, sealed, len),
	    BKV_TOKEN_ERR_AUTH);
	assert_int_equal(open_record_as(t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION + 1, NULL,
	                                0, sealed, len),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(open_record_as(t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, REG_ID,
	                                sizeof(REG_ID), sealed, len),
	                 BKV_TOKEN_ERR_AUTH);
	static const uint8_t aad[] = "bkv test cbc aad";
	const size_t aad_len = sizeof(aad) - 1;
	uint8_t pt[RECORD_PT_BYTES], box[RECORD_PT_BYTES + BKV_TOKEN_BOX_OVERHEAD_MAX];
	uint8_t out[sizeof(box)], other[sizeof(aad) + 1];
	size_t box_len = 0, out_len = 0;
	fill_plaintext(pt);
	for (size_t with_aad = 0; with_aad < 2; with_aad++) {
		const size_t al = with_aad ? aad_len : 0;
		assert_int_equal(bkv_token_seal_box(t, BKV_TOKEN_KEY_SEAL, 1, with_aad ? aad : NULL,
		                                    al, pt, sizeof(pt), box, sizeof(box), &box_len),
		                 BKV_TOKEN_OK);
		assert_int_equal(box_len, CBC_BOX_BYTES(sizeof(pt)));
		assert_int_equal(bkv_token_open_box(t, BKV_TOKEN_KEY_SEAL, 1, with_aad ? aad : NULL,
		                                    al, box, box_len, out, sizeof(out), &out_len),
		                 BKV_TOKEN_OK);
		assert_int_equal(out_len, sizeof(pt));
		assert_memory_equal(out, pt, sizeof(pt));
		/* Every bit of the AAD, one byte less, one byte more. */
		memcpy(other, aad, sizeof(aad));
		for (size_t bit = 0; bit < 8 * al; bit++) {
			other[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			if (bkv_token_open_box(t, BKV_TOKEN_KEY_SEAL, 1, other, al, box, box_len,
			                       out, sizeof(out), &out_len) != BKV_TOKEN_ERR_AUTH)
				fail_msg("AAD bit %zu flipped: not AUTH", bit);
			other[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		if (al > 0)
			assert_int_equal(bkv_token_open_box(t, BKV_TOKEN_KEY_SEAL, 1, aad, al - 1,
			                                    box, box_len, out, sizeof(out),
			                                    &out_len),
			                 BKV_TOKEN_ERR_AUTH);
		other[al] = 0;
		assert_int_equal(bkv_token_open_box(t, BKV_TOKEN_KEY_SEAL, 1, other, al + 1, box,
		                                    box_len, out, sizeof(out), &out_len),
		                 BKV_TOKEN_ERR_AUTH);
		assert_int_equal(out_len, 0);
	}
	bkv_token_close(t);
}

/* A box opens only under the key and scheme that made it: a GCM box is refused by a
 * CBC_HMAC key and the reverse, and the ticket key's boxes are not the seal key's. */
static void boxes_open_only_under_the_key_and_scheme_that_made_them(void **state)
{
	(void)state;
	bkv_token *cbc = cbc_token();
	bkv_token *gcm = vault_open_loaded(g_label);
	static const uint8_t aad[] = "bkv test scheme";
	uint8_t pt[RECORD_PT_BYTES], out[RECORD_PT_BYTES + BKV_TOKEN_BOX_OVERHEAD_MAX];
	uint8_t gcm_box[sizeof(out)], cbc_box[sizeof(out)], ticket_box[sizeof(out)];
	size_t gcm_len, cbc_len, ticket_len, out_len;
	fill_plaintext(pt);
	assert_int_equal(bkv_token_seal_box(gcm, BKV_TOKEN_KEY_SEAL, 1, aad, sizeof(aad), pt,
	                                    sizeof(pt), gcm_box, sizeof(gcm_box), &gcm_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(gcm_len, 2 + 12 + sizeof(pt) + 16);
	assert_int_equal(gcm_box[0], BKV_TOKEN_SCHEME_GCM);
	assert_int_equal(bkv_token_seal_box(cbc, BKV_TOKEN_KEY_SEAL, 1, aad, sizeof(aad), pt,
	                                    sizeof(pt), cbc_box, sizeof(cbc_box), &cbc_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(cbc_len, CBC_BOX_BYTES(sizeof(pt)));
	assert_int_equal(bkv_token_seal_box(cbc, BKV_TOKEN_KEY_TICKET, 1, aad, sizeof(aad), pt,
	                                    sizeof(pt), ticket_box, sizeof(ticket_box),
	                                    &ticket_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(ticket_len, CBC_BOX_BYTES(sizeof(pt)));
	assert_int_equal(ticket_box[0], BKV_TOKEN_SCHEME_CBC_HMAC);
	/* Each opens where it was made... */
	assert_int_equal(bkv_token_open_box(gcm, BKV_TOKEN_KEY_SEAL, 1, aad, sizeof(aad), gcm_box,
	                                    gcm_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(bkv_token_open_box(cbc, BKV_TOKEN_KEY_SEAL, 1, aad, sizeof(aad), cbc_box,
	                                    cbc_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(bkv_token_open_box(cbc, BKV_TOKEN_KEY_TICKET, 1, aad, sizeof(aad),
	                                    ticket_box, ticket_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_OK);
	assert_int_equal(out_len, sizeof(pt));
	assert_memory_equal(out, pt, sizeof(pt));
	/* ...and nowhere else. */
	assert_int_equal(bkv_token_open_box(cbc, BKV_TOKEN_KEY_SEAL, 1, aad, sizeof(aad), gcm_box,
	                                    gcm_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(bkv_token_open_box(cbc, BKV_TOKEN_KEY_TICKET, 1, aad, sizeof(aad), gcm_box,
	                                    gcm_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(bkv_token_open_box(gcm, BKV_TOKEN_KEY_SEAL, 1, aad, sizeof(aad), cbc_box,
	                                    cbc_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(bkv_token_open_box(cbc, BKV_TOKEN_KEY_SEAL, 1, aad, sizeof(aad),
	                                    ticket_box, ticket_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(bkv_token_open_box(cbc, BKV_TOKEN_KEY_TICKET, 1, aad, sizeof(aad), cbc_box,
	                                    cbc_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_ERR_AUTH);
	/* A CBC box relabelled GCM goes to the GCM key's token check and fails there. */
	cbc_box[0] = BKV_TOKEN_SCHEME_GCM;
	assert_int_equal(bkv_token_open_box(gcm, BKV_TOKEN_KEY_SEAL, 1, aad, sizeof(aad), cbc_box,
	                                    cbc_len, out, sizeof(out), &out_len),
	                 BKV_TOKEN_ERR_AUTH);
	assert_int_equal(out_len, 0);
	/* Neither session was disturbed. */
	assert_int_equal(bkv_token_check(gcm), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_check(cbc), BKV_TOKEN_OK);
	assert_preflight_passes(gcm);
	assert_preflight_passes(cbc);
	bkv_token_close(gcm);
	bkv_token_close(cbc);
}

/* The ristretto255 AKE key of a token without GCM is sealed under CBC_HMAC, loads, and
 * serves logins. */
static void a_cbc_token_seals_the_ristretto255_key_and_serves_logins(void **state)
{
	(void)state;
	bkv_token *t = cbc_token();
	const opaque_server_keys *keys = bkv_token_server_keys(t, R255);
	assert_non_null(keys);
	CK_SESSION_HANDLE h = inspect_session("bkv-cbc", false);
	uint8_t value[256];
	const size_t len = read_data_object(h, "bkv-ake-ristretto255-sha512", value, sizeof(value));
	inspect_close(h);
	static const uint8_t header[] = {0x02, 0, 0, 0, 1, BKV_TOKEN_SCHEME_CBC_HMAC, 16};
	assert_int_equal(len, 5 + CBC_BOX_BYTES(32));
	assert_memory_equal(value, header, sizeof(header));
	assert_no_window_is_the_key(R255, value, len, keys->server_public_key);
	for (size_t s = 0; s < 2; s++) {
		const opaque_sizes *sz = opaque_suite_sizes(both_suites[s]);
		uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
		uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
		keys = bkv_token_server_keys(t, both_suites[s]);
		register_user(keys, both_suites[s], CRED_ID, record, export_key);
		login_result r = login_user(keys, both_suites[s], CRED_ID, record, PASSWORD);
		assert_int_equal(r.client, OPAQUE_OK);
		assert_int_equal(r.server, OPAQUE_OK);
		assert_memory_equal(r.export_key, export_key, sz->export_key);
	}
	bkv_token_close(t);
}

/* The scheme belongs to the key, not to the module in use: the CBC_HMAC keys stay CBC_HMAC
 * through a module with GCM, a key rotated there is GCM, and records under both open.
 * Rotated without GCM, the new key gets its HMAC key, and deleting it deletes both. */
static void a_key_keeps_its_scheme_whichever_module_opens_the_token(void **state)
{
	(void)state;
	bkv_token *q = fresh_cbc_token("bkv-cbc-mixed", NULL);
	uint8_t v1[RECORD_SEAL_CAP], v2[RECORD_SEAL_CAP], v3[RECORD_SEAL_CAP];
	const size_t v1_len = seal_record_n(q, RECORD_PT_BYTES, v1, sizeof(v1));
	assert_cbc_record_layout(v1, v1_len, RECORD_PT_BYTES, 1);
	bkv_token_close(q);

	bkv_token *t = vault_open_loaded("bkv-cbc-mixed");
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 1), BKV_TOKEN_SCHEME_CBC_HMAC);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_TICKET, 1),
	                 BKV_TOKEN_SCHEME_CBC_HMAC);
	assert_int_equal(open_record(t, v1, v1_len), BKV_TOKEN_OK);
	uint8_t again[RECORD_SEAL_CAP];
	assert_cbc_record_layout(again, seal_record_n(t, RECORD_PT_BYTES, again, sizeof(again)),
	                         RECORD_PT_BYTES, 1);
	assert_preflight_passes(t);
	uint32_t version = 0;
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(version, 2);
	load_both(t);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 2), BKV_TOKEN_SCHEME_GCM);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 1), BKV_TOKEN_SCHEME_CBC_HMAC);
	const size_t v2_len = seal_record_n(t, RECORD_PT_BYTES, v2, sizeof(v2));
	assert_int_equal(v2_len, RECORD_SEALED);
	assert_int_equal(v2[RECORD_SCHEME_AT], BKV_TOKEN_SCHEME_GCM);
	assert_int_equal(bkv_record_seal_key_version(v2, v2_len), 2);
	assert_int_equal(open_record(t, v1, v1_len), BKV_TOKEN_OK);
	assert_int_equal(open_record(t, v2, v2_len), BKV_TOKEN_OK);
	/* A CBC record relabelled with the GCM key's version, and the reverse, fail. */
	v1[4] = 2;
	assert_int_equal(open_record(t, v1, v1_len), BKV_TOKEN_ERR_AUTH);
	v1[4] = 1;
	v2[4] = 1;
	assert_int_equal(open_record(t, v2, v2_len), BKV_TOKEN_ERR_AUTH);
	v2[4] = 2;
	assert_preflight_passes(t);
	bkv_token_close(t);

	/* Through the module without GCM, rotation pairs the new key with an HMAC key; the GCM
	 * key's records cannot open there (the module refuses the mechanism). */
	q = quirks_open("bkv-cbc-mixed", "no-gcm");
	load_both(q);
	assert_int_equal(bkv_token_rotate_seal_key(q, &version), BKV_TOKEN_OK);
	assert_int_equal(version, 3);
	load_both(q);
	assert_int_equal(bkv_token_key_scheme(q, BKV_TOKEN_KEY_SEAL, 3), BKV_TOKEN_SCHEME_CBC_HMAC);
	const size_t v3_len = seal_record_n(q, RECORD_PT_BYTES, v3, sizeof(v3));
	assert_cbc_record_layout(v3, v3_len, RECORD_PT_BYTES, 3);
	assert_int_equal(open_record(q, v1, v1_len), BKV_TOKEN_OK);
	assert_int_equal(open_record(q, v3, v3_len), BKV_TOKEN_OK);
	assert_int_not_equal(open_record(q, v2, v2_len), BKV_TOKEN_OK);
	CK_SESSION_HANDLE h = inspect_session("bkv-cbc-mixed", false);
	assert_int_equal(count_labelled(h, "bkv-seal-mac-1"), 1);
	assert_int_equal(count_labelled(h, "bkv-seal-mac-2"), 0);
	assert_int_equal(count_labelled(h, "bkv-seal-mac-3"), 1);
	inspect_close(h);
	/* The ristretto255 key is under 1; 2 is unused: deleting 2 leaves 1 and 3 whole. */
	assert_int_equal(bkv_token_delete_seal_key(q, 1), BKV_TOKEN_ERR_KEY_IN_USE);
	assert_int_equal(bkv_token_delete_seal_key(q, 3), BKV_TOKEN_ERR_KEY_IN_USE);
	assert_int_equal(bkv_token_delete_seal_key(q, 2), BKV_TOKEN_OK);
	bool resealed = false;
	assert_int_equal(bkv_token_reseal_ake_key(q, &resealed), BKV_TOKEN_OK);
	assert_true(resealed);
	assert_int_equal(bkv_token_delete_seal_key(q, 1), BKV_TOKEN_OK);
	static const uint32_t left[] = {3};
	assert_seal_versions(q, left, 1);
	h = inspect_session("bkv-cbc-mixed", false);
	assert_int_equal(count_labelled(h, "bkv-seal-1"), 0);
	assert_int_equal(count_labelled(h, "bkv-seal-mac-1"), 0);
	assert_int_equal(count_labelled(h, "bkv-seal-mac-3"), 1);
	assert_int_equal(count_labelled(h, "bkv-ticket-mac-1"), 1);
	inspect_close(h);
	load_both(q);
	assert_int_equal(open_record(q, v3, v3_len), BKV_TOKEN_OK);
	assert_int_not_equal(open_record(q, v1, v1_len), BKV_TOKEN_OK);
	assert_preflight_passes(q);
	bkv_token_close(q);
}

/* Running the ceremony again on a token without GCM keeps every key and makes no second
 * HMAC key; an HMAC key left alone by a crash before its AES key is used, not doubled. */
static void create_keys_again_without_gcm_keeps_the_hmac_keys(void **state)
{
	(void)state;
	report_log first, again;
	memset(&first, 0, sizeof(first));
	memset(&again, 0, sizeof(again));
	bkv_token *t = fresh_cbc_token("bkv-cbc-again", &first);
	bkv_token_close(t);
	CK_SESSION_HANDLE h = inspect_session("bkv-cbc-again", true);
	assert_int_equal(g_fn->C_DestroyObject(h, find_one(h, CKO_SECRET_KEY, "bkv-ticket-1")),
	                 CKR_OK);
	inspect_close(h);
	t = quirks_open("bkv-cbc-again", "no-gcm");
	create_keys(t, false, &again);
	assert_string_equal(find_report(&again, "bkv-ticket-1")->what, "created");
	assert_string_equal(find_report(&again, "bkv-seal-1")->what, "exists");
	load_both(t);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_TICKET, 1),
	                 BKV_TOKEN_SCHEME_CBC_HMAC);
	assert_preflight_passes(t);
	bkv_token_close(t);
	static const char *const once[] = {"bkv-seal-1", "bkv-seal-mac-1", "bkv-ticket-1",
	                                   "bkv-ticket-mac-1", "bkv-ake-ristretto255-sha512"};
	h = inspect_session("bkv-cbc-again", false);
	for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++)
		assert_int_equal(count_labelled(h, once[i]), 1);
	inspect_close(h);
	/* Replacing the keys replaces the HMAC keys too: one of each, and old records are lost. */
	t = quirks_open("bkv-cbc-again", "no-gcm");
	load_both(t);
	uint8_t sealed[RECORD_SEAL_CAP];
	const size_t len = seal_record_n(t, RECORD_PT_BYTES, sealed, sizeof(sealed));
	create_keys(t, true, NULL);
	load_both(t);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 1), BKV_TOKEN_SCHEME_CBC_HMAC);
	assert_int_equal(open_record(t, sealed, len), BKV_TOKEN_ERR_AUTH);
	bkv_token_close(t);
	h = inspect_session("bkv-cbc-again", false);
	for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++)
		assert_int_equal(count_labelled(h, once[i]), 1);
	inspect_close(h);
}

/* ---- CBC_HMAC checked against OpenSSL ---- */

/* A token whose newest seal key (version 2) is a CBC_HMAC pair of known value, imported like
 * the known GCM key above: AES-256 bkv-seal-2 and HMAC-SHA256 bkv-seal-mac-2. Built once. */
static uint8_t known_cbc_aes[32], known_cbc_mac[32];

static bkv_token *known_cbc_token(void)
{
	static bool made;
	for (size_t i = 0; i < 32; i++) {
		known_cbc_aes[i] = (uint8_t)(0x21 + 5 * i);
		known_cbc_mac[i] = (uint8_t)(0x9e ^ (7 * i));
	}
	const vendor_key keys[] = {
	    {.label = "bkv-seal-mac-2",
	     .type = CKK_GENERIC_SECRET,
	     .len = 32,
	     .value = known_cbc_mac},
	    {.label = "bkv-seal-2", .type = CKK_AES, .len = 32, .value = known_cbc_aes},
	};
	return known_token("bkv-known-cbc", &made, keys, 2);
}

/* token.h: tag = HMAC-SHA256(mac key, scheme || iv_len || iv || ciphertext || aad ||
 * I2OSP(len(aad), 8)). */
static void soft_cbc_tag(const uint8_t *head, size_t head_len, const uint8_t *aad, size_t aad_len,
                         uint8_t tag[32])
{
	static uint8_t buf[4096];
	assert_true(head_len + aad_len + 8 <= sizeof(buf));
	memcpy(buf, head, head_len);
	if (aad_len > 0)
		memcpy(buf + head_len, aad, aad_len);
	for (int i = 0; i < 8; i++)
		buf[head_len + aad_len + (size_t)i] = (uint8_t)((uint64_t)aad_len >> (56 - 8 * i));
	unsigned int len = 0;
	assert_non_null(HMAC(EVP_sha256(), known_cbc_mac, sizeof(known_cbc_mac), buf,
	                     head_len + aad_len + 8, tag, &len));
	assert_int_equal(len, 32);
}

/* Opens a CBC_HMAC box under the known keys; false if it is not one. */
static bool soft_cbc_open(const uint8_t *aad, size_t aad_len, const uint8_t *box, size_t box_len,
                          uint8_t *pt, size_t *pt_len)
{
	uint8_t tag[32];
	if (box_len < 2 + 16 + 16 + 32 || box[0] != 2 || box[1] != 16 ||
	    (box_len - 2 - 16 - 32) % 16 != 0)
		return false;
	soft_cbc_tag(box, box_len - 32, aad, aad_len, tag);
	if (CRYPTO_memcmp(tag, box + box_len - 32, 32) != 0)
		return false;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;
	bool ok = ctx != NULL &&
	          EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, known_cbc_aes, box + 2) == 1 &&
	          EVP_DecryptUpdate(ctx, pt, &n, box + 18, (int)(box_len - 18 - 32)) == 1 &&
	          EVP_DecryptFinal_ex(ctx, pt + n, &fin) == 1;
	EVP_CIPHER_CTX_free(ctx);
	*pt_len = ok ? (size_t)(n + fin) : 0;
	return ok;
}

/* Seals pt into box under the known keys; returns the box's length. padding false: pt (whole
 * blocks) is encrypted as it is, without PKCS#7 padding, and still gets a valid tag. */
static size_t soft_cbc_seal(const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
                            bool padding, uint8_t *box)
{
	box[0] = 2;
	box[1] = 16;
	randombytes_buf(box + 2, 16);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;
	assert_non_null(ctx);
	assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, known_cbc_aes, box + 2),
	                 1);
	assert_int_equal(EVP_CIPHER_CTX_set_padding(ctx, padding ? 1 : 0), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, box + 18, &n, pt, (int)pt_len), 1);
	assert_int_equal(EVP_EncryptFinal_ex(ctx, box + 18 + n, &fin), 1);
	EVP_CIPHER_CTX_free(ctx);
	const size_t head = 18 + (size_t)(n + fin);
	soft_cbc_tag(box, head, aad, aad_len, box + head);
	return head + 32;
}

/* What the token seals under CBC_HMAC, OpenSSL opens as token.h specifies (CBC-PAD under the
 * AES key, the tag over the box, the AAD and its length), and the reverse; a box with a valid
 * tag but invalid padding is refused as bad data. */
static void cbc_boxes_are_as_specified_checked_with_openssl(void **state)
{
	(void)state;
	bkv_token *t = known_cbc_token();
	assert_int_equal(bkv_token_seal_version(t), 2);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 2), BKV_TOKEN_SCHEME_CBC_HMAC);
	assert_int_equal(bkv_token_key_scheme(t, BKV_TOKEN_KEY_SEAL, 1), BKV_TOKEN_SCHEME_GCM);
	static uint8_t aad[300], pt[300], out[300 + BKV_TOKEN_BOX_OVERHEAD_MAX];
	static uint8_t box[300 + BKV_TOKEN_BOX_OVERHEAD_MAX];
	for (size_t i = 0; i < sizeof(aad); i++) {
		aad[i] = (uint8_t)(3 * i + 1);
		pt[i] = (uint8_t)(7 * i + 5);
	}
	const size_t aad_lens[] = {0, 1, 13, 255, 256, 300};
	const size_t pt_lens[] = {0, 1, 15, 16, 17, 32, 100, 300};
	for (size_t a = 0; a < sizeof(aad_lens) / sizeof(aad_lens[0]); a++) {
		for (size_t p = 0; p < sizeof(pt_lens) / sizeof(pt_lens[0]); p++) {
			const size_t al = aad_lens[a], pl = pt_lens[p];
			size_t box_len = 0, out_len = 0;
			assert_int_equal(bkv_token_seal_box(t, BKV_TOKEN_KEY_SEAL, 2, aad, al, pt,
			                                    pl, box, sizeof(box), &box_len),
			                 BKV_TOKEN_OK);
			assert_int_equal(box_len, CBC_BOX_BYTES(pl));
			if (!soft_cbc_open(aad, al, box, box_len, out, &out_len))
				fail_msg("aad %zu, plaintext %zu: OpenSSL refuses the token's box",
				         al, pl);
			assert_int_equal(out_len, pl);
			assert_memory_equal(out, pt, pl);
			/* The AAD's length is bound as well: one byte less is another tag. */
			if (al > 0)
				assert_false(
				    soft_cbc_open(aad, al - 1, box, box_len, out, &out_len));
			box_len = soft_cbc_seal(aad, al, pt, pl, true, box);
			assert_int_equal(bkv_token_open_box(t, BKV_TOKEN_KEY_SEAL, 2, aad, al, box,
			                                    box_len, out, sizeof(out), &out_len),
			                 BKV_TOKEN_OK);
			assert_int_equal(out_len, pl);
			assert_memory_equal(out, pt, pl);
		}
	}
	/* A record: 0x02 || version 2 || box, the record AAD of record_seal.h. */
	uint8_t sealed[RECORD_SEAL_CAP], rec_aad[SPEC_AAD_MAX], expected[RECORD_PT_BYTES];
	size_t out_len = 0;
	const size_t len = seal_record_n(t, RECORD_PT_BYTES, sealed, sizeof(sealed));
	assert_cbc_record_layout(sealed, len, RECORD_PT_BYTES, 2);
	const size_t rec_aad_len =
	    spec_record_aad(rec_aad, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, 2, NULL, 0);
	assert_true(soft_cbc_open(rec_aad, rec_aad_len, sealed + 5, len - 5, out, &out_len));
	fill_plaintext(expected);
	assert_int_equal(out_len, RECORD_PT_BYTES);
	assert_memory_equal(out, expected, RECORD_PT_BYTES);
	memcpy(sealed, "\x02\x00\x00\x00\x02", 5);
	const size_t soft_len =
	    5 + soft_cbc_seal(rec_aad, rec_aad_len, expected, RECORD_PT_BYTES, true, sealed + 5);
	assert_int_equal(open_record(t, sealed, soft_len), BKV_TOKEN_OK);
	/* Whole blocks without padding, under a valid tag: not a box of this key. */
	size_t box_len = soft_cbc_seal(aad, 13, pt, 32, false, box);
	const bkv_token_err err = bkv_token_open_box(t, BKV_TOKEN_KEY_SEAL, 2, aad, 13, box,
	                                             box_len, out, sizeof(out), &out_len);
	if (err != BKV_TOKEN_ERR_AUTH)
		fail_msg("valid tag, invalid padding: %s (%s), expected AUTH; session %s",
		         bkv_token_strerror(err), bkv_token_ckr_name(bkv_token_last_rv(t)),
		         bkv_token_check(t) == BKV_TOKEN_OK ? "healthy" : "broken");
	assert_int_equal(bkv_token_check(t), BKV_TOKEN_OK);
	assert_preflight_passes(t);
	bkv_token_close(t);
}

/* ---- Tokens that choose the GCM IV (CloudHSM: 12 bytes; Luna in FIPS mode: 16) ---- */

/* The record holds the IV the token used, of its length, and opens again, here and through
 * SoftHSM2 directly (which takes the IV from the record). */
static void assert_token_iv_records(const char *label, const char *quirks, size_t iv_len)
{
	bkv_token *q = quirks_open(label, quirks);
	load_both(q);
	assert_preflight_passes(q);
	const size_t expected_len = 1 + 4 + 2 + iv_len + RECORD_PT_BYTES + 16;
	uint8_t a[RECORD_SEAL_CAP], b[RECORD_SEAL_CAP];
	for (size_t round = 0; round < 2; round++) { /* the first seal may learn the length */
		assert_int_equal(seal_record_n(q, RECORD_PT_BYTES, a, sizeof(a)), expected_len);
		assert_int_equal(a[RECORD_SCHEME_AT], BKV_TOKEN_SCHEME_GCM);
		assert_int_equal(a[RECORD_IVLEN_AT], iv_len);
		assert_int_equal(open_record(q, a, expected_len), BKV_TOKEN_OK);
	}
	assert_int_equal(seal_record_n(q, RECORD_PT_BYTES, b, sizeof(b)), expected_len);
	assert_memory_not_equal(a + RECORD_IV_AT, b + RECORD_IV_AT, iv_len);
	/* Every byte of the IV is authenticated, and so is its length. */
	assert_flips_fail(q, a, expected_len, RECORD_PT_BYTES, RECORD_SCHEME_AT, 2 + iv_len);
	a[RECORD_IVLEN_AT] = (uint8_t)(iv_len == 12 ? 16 : 12);
	assert_int_equal(open_record(q, a, expected_len), BKV_TOKEN_ERR_AUTH);
	a[RECORD_IVLEN_AT] = (uint8_t)iv_len;
	bkv_token_close(q);
	bkv_token *t = vault_open_loaded(label);
	assert_int_equal(open_record(t, a, expected_len), BKV_TOKEN_OK);
	assert_int_equal(open_record(t, b, expected_len), BKV_TOKEN_OK);
	bkv_token_close(t);
}

static void a_token_that_chooses_a_12_byte_gcm_iv_seals_records_that_open(void **state)
{
	(void)state;
	bkv_token *t = fresh_token_with_keys("bkv-token-iv");
	bkv_token_close(t);
	assert_token_iv_records("bkv-token-iv", "gcm-token-iv", 12);
}

static void a_token_that_chooses_a_16_byte_gcm_iv_seals_records_that_open(void **state)
{
	(void)state;
	init_token("bkv-token-iv16", NULL, 0);
	bkv_token *q = quirks_open("bkv-token-iv16", "gcm-token-iv16");
	create_keys(q, false, NULL);
	load_both(q);
	/* bkvd init there sealed the ristretto255 key with the token's 16-byte IV. */
	const opaque_server_keys *keys = bkv_token_server_keys(q, R255);
	uint8_t public_key[32];
	memcpy(public_key, keys->server_public_key, 32);
	CK_SESSION_HANDLE h = inspect_session("bkv-token-iv16", false);
	uint8_t value[256];
	const size_t len = read_data_object(h, "bkv-ake-ristretto255-sha512", value, sizeof(value));
	inspect_close(h);
	static const uint8_t header[] = {0x02, 0, 0, 0, 1, BKV_TOKEN_SCHEME_GCM, 16};
	assert_int_equal(len, 1 + 4 + 2 + 16 + 32 + 16);
	assert_memory_equal(value, header, sizeof(header));
	bkv_token_close(q);
	assert_token_iv_records("bkv-token-iv16", "gcm-token-iv16", 16);
	bkv_token *t = vault_open_loaded("bkv-token-iv16");
	assert_memory_equal(bkv_token_server_keys(t, R255)->server_public_key, public_key, 32);
	bkv_token_close(t);
}

/* ------------------------------------------------------------------------------------ */
/* The P-256 AKE key sealed ([token] p256_ake = sealed)                                  */
/* ------------------------------------------------------------------------------------ */

static bkv_token *open_custody(const char *label, bkv_token_p256_ake ake)
{
	return open_with(label, g_module, NULL, ake);
}

/* One token made with p256_ake = sealed, shared by the tests that do not change it. */
static uint8_t sealed_p256_reported[33];

static bkv_token *sealed_p256_token(void)
{
	static bool made;
	if (!made) {
		init_token("bkv-p256-sealed", NULL, 0);
		bkv_token *t = open_custody("bkv-p256-sealed", BKV_TOKEN_P256_AKE_SEALED);
		report_log log;
		memset(&log, 0, sizeof(log));
		create_keys(t, false, &log);
		assert_all_reported(&log, "created");
		memcpy(sealed_p256_reported, find_report(&log, "bkv-ake-p256-sha256")->public_key,
		       33);
		bkv_token_close(t);
		made = true;
	}
	bkv_token *t = open_custody("bkv-p256-sealed", BKV_TOKEN_P256_AKE_SEALED);
	load_both(t);
	return t;
}

/* The P-256 key is a data object holding the private key sealed, like the ristretto255
 * one: no PKCS#11 key pair with its label, and no 32-byte window of it is the key. */
static void a_sealed_p256_ake_key_is_a_sealed_data_object(void **state)
{
	(void)state;
	bkv_token *t = sealed_p256_token();
	const opaque_server_keys *keys = bkv_token_server_keys(t, P256);
	assert_non_null(keys);
	assert_memory_equal(keys->server_public_key, sealed_p256_reported, 33);
	const char *label = "bkv-ake-p256-sha256";
	CK_SESSION_HANDLE h = inspect_session("bkv-p256-sealed", false);
	assert_int_equal(count_labelled(h, label), 1);
	CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY};
	for (size_t i = 0; i < 3; i++) {
		CK_BBOOL yes = CK_TRUE;
		CK_ATTRIBUTE tmpl[] = {
		    {CKA_CLASS, &classes[i], sizeof(classes[i])},
		    {CKA_TOKEN, &yes, sizeof(yes)},
		    {CKA_LABEL, (void *)label, strlen(label)},
		};
		CK_OBJECT_HANDLE found[2];
		assert_int_equal(find_objects(h, tmpl, 3, found, 2), 0);
	}
	CK_OBJECT_HANDLE obj = find_one(h, CKO_DATA, label);
	assert_attr(h, obj, CKA_PRIVATE, true);
	assert_attr(h, obj, CKA_MODIFIABLE, false);
	uint8_t value[256];
	const size_t len = read_data_object(h, label, value, sizeof(value));
	inspect_close(h);
	assert_sealed_ake_layout(value, len, 1);
	assert_no_window_is_the_key(P256, value, len, keys->server_public_key);
	bkv_token_close(t);
}

/* ake_dh with the sealed key is sk * P for the key whose public key is served: checked with
 * OpenSSL (r * S for a random r, P = r * G), for random points and the edge cases, with no
 * token ECDH at all; an invalid point is an error; the preflight passes. */
static void a_sealed_p256_ake_key_agrees_with_openssl(void **state)
{
	(void)state;
	bkv_token *t = sealed_p256_token();
	const opaque_server_keys *keys = bkv_token_server_keys(t, P256);
	op_counts c;
	memset(&c, 0, sizeof(c));
	bkv_token_set_observer(t, count_op, &c);
	p256_ctx pc = p256_new();
	EC_POINT *s = EC_POINT_new(pc.g), *p = EC_POINT_new(pc.g), *e = EC_POINT_new(pc.g);
	BIGNUM *r = BN_new();
	assert_true(s != NULL && p != NULL && e != NULL && r != NULL);
	assert_int_equal(EC_POINT_oct2point(pc.g, s, keys->server_public_key, 33, pc.bn), 1);
	for (int i = 0; i < 200; i++) {
		uint8_t peer[33], expected[33], got[33];
		do
			assert_int_equal(BN_rand_range(r, EC_GROUP_get0_order(pc.g)), 1);
		while (BN_is_zero(r));
		assert_int_equal(EC_POINT_mul(pc.g, p, r, NULL, NULL, pc.bn), 1);
		assert_int_equal(EC_POINT_mul(pc.g, e, NULL, s, r, pc.bn), 1);
		p256_encode(&pc, p, POINT_CONVERSION_COMPRESSED, peer, 33);
		p256_encode(&pc, e, POINT_CONVERSION_COMPRESSED, expected, 33);
		token_dh(keys, peer, got);
		if (memcmp(got, expected, 33) != 0)
			fail_msg("point %d: sealed-key DH differs from OpenSSL's r * S", i);
	}
	BN_clear_free(r);
	EC_POINT_free(e);
	EC_POINT_free(p);
	EC_POINT_free(s);
	static const int ms[] = {1, -1, 2, -2};
	for (size_t i = 0; i < 4; i++) {
		uint8_t g[33], peer[33], expected[33], got[33];
		p256_generator(&pc, g);
		p256_times(&pc, g, ms[i], peer);
		p256_times(&pc, keys->server_public_key, ms[i], expected);
		token_dh(keys, peer, got);
		assert_memory_equal(got, expected, 33);
	}
	p256_free(&pc);
	assert_int_equal(c.n[BKV_TOKEN_OP_ECDH], 0);
	bkv_token_set_observer(t, NULL, NULL);
	uint8_t bad[33], out[33];
	memset(bad, 0xFF, sizeof(bad)); /* x >= p */
	bad[0] = 0x02;
	assert_int_equal(keys->ake_dh(keys->ctx, bad, 33, out, 33), OPAQUE_ERR_SERVER_KEYS);
	assert_int_not_equal(bkv_token_last_error(t), BKV_TOKEN_OK);
	assert_preflight_passes(t);
	bkv_token_close(t);
}

/* The sealed key is the same in every session: a registration made in one logs in in the
 * next, and OPAQUE runs end to end. */
static void a_sealed_p256_ake_key_serves_logins_across_sessions(void **state)
{
	(void)state;
	const opaque_sizes *sz = opaque_suite_sizes(P256);
	bkv_token *t = sealed_p256_token();
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES], export_key[OPAQUE_MAX_HASH_BYTES];
	register_user(bkv_token_server_keys(t, P256), P256, CRED_ID, record, export_key);
	bkv_token_close(t);
	t = sealed_p256_token();
	assert_memory_equal(bkv_token_server_keys(t, P256)->server_public_key, sealed_p256_reported,
	                    33);
	login_result r =
	    login_user(bkv_token_server_keys(t, P256), P256, CRED_ID, record, PASSWORD);
	assert_int_equal(r.client, OPAQUE_OK);
	assert_int_equal(r.server, OPAQUE_OK);
	assert_memory_equal(r.export_key, export_key, sz->export_key);
	assert_memory_equal(r.client_session_key, r.server_session_key, sz->session_key);
	bkv_token_close(t);
}

/* Each custody refuses the other's key: another custody would be another server key. The
 * ceremony says so and changes nothing, and loading finds no key of its kind. */
static void assert_custody_refused(const char *label, bkv_token_p256_ake wrong,
                                   CK_OBJECT_CLASS kept, CK_ULONG objects)
{
	const char *ake = "bkv-ake-p256-sha256";
	bkv_token *t = open_custody(label, wrong);
	report_log log;
	memset(&log, 0, sizeof(log));
	assert_int_equal(
	    bkv_token_create_keys(t, both_suites, 2, BKV_TOKEN_INIT_CREATE, collect_report, &log),
	    BKV_TOKEN_ERR_ARGUMENT);
	assert_int_equal(strncmp(find_report(&log, ake)->what, "exists as a", 11), 0);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_ERR_KEY_MISSING);
	/* The other suite alone still loads. */
	assert_int_equal(bkv_token_load_keys(t, &suite_r255, 1), BKV_TOKEN_OK);
	bkv_token_close(t);
	CK_SESSION_HANDLE h = inspect_session(label, false);
	assert_int_equal(count_labelled(h, ake), objects);
	(void)find_one(h, kept, ake);
	inspect_close(h);
	/* With the right custody all is well. */
	t = open_custody(label, wrong == BKV_TOKEN_P256_AKE_TOKEN ? BKV_TOKEN_P256_AKE_SEALED
	                                                          : BKV_TOKEN_P256_AKE_TOKEN);
	create_keys(t, false, NULL);
	load_both(t);
	assert_preflight_passes(t);
	bkv_token_close(t);
}

static void create_keys_refuses_a_p256_key_of_the_other_custody(void **state)
{
	(void)state;
	bkv_token_close(sealed_p256_token());
	assert_custody_refused("bkv-p256-sealed", BKV_TOKEN_P256_AKE_TOKEN, CKO_DATA, 1);
	bkv_token *t = fresh_token_with_keys("bkv-p256-custody");
	bkv_token_close(t);
	assert_custody_refused("bkv-p256-custody", BKV_TOKEN_P256_AKE_SEALED, CKO_PRIVATE_KEY, 2);
}

/* ------------------------------------------------------------------------------------ */
/* Re-sealing the AKE keys after a seal-key rotation                                     */
/* ------------------------------------------------------------------------------------ */

static const char *const sealed_ake_labels[] = {"bkv-ake-p256-sha256",
                                                "bkv-ake-ristretto255-sha512"};

/* Replaces the data object labelled label by one holding value (as bkvd init makes it). */
static void replace_data_object(const char *token_label, const char *label, const uint8_t *value,
                                size_t len)
{
	CK_SESSION_HANDLE h = inspect_session(token_label, true);
	assert_int_equal(g_fn->C_DestroyObject(h, find_one(h, CKO_DATA, label)), CKR_OK);
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},   {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_VALUE, (void *)value, len},  {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_PRIVATE, &yes, sizeof(yes)}, {CKA_MODIFIABLE, &no, sizeof(no)},
	};
	CK_OBJECT_HANDLE obj;
	assert_int_equal(g_fn->C_CreateObject(h, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj),
	                 CKR_OK);
	inspect_close(h);
}

static size_t read_sealed_ake(const char *token_label, size_t i, uint8_t value[256])
{
	CK_SESSION_HANDLE h = inspect_session(token_label, false);
	assert_int_equal(count_labelled(h, sealed_ake_labels[i]), 1);
	const size_t len = read_data_object(h, sealed_ake_labels[i], value, 256);
	inspect_close(h);
	return len;
}

/* After a rotation, bkv_token_reseal_ake_key moves both sealed AKE keys (P-256 sealed and
 * ristretto255) to the newest seal key, keeping the keys themselves; the old seal key can
 * be deleted only once neither is sealed under it. */
static void resealing_moves_both_sealed_ake_keys_to_the_newest_seal_key(void **state)
{
	(void)state;
	const char *label = "bkv-reseal-both";
	init_token(label, NULL, 0);
	bkv_token *t = open_custody(label, BKV_TOKEN_P256_AKE_SEALED);
	create_keys(t, false, NULL);
	load_both(t);
	uint8_t pk[2][33], v1[2][256], v2[2][256];
	size_t v1_len[2], v2_len[2];
	for (size_t i = 0; i < 2; i++) {
		const opaque_sizes *sz = opaque_suite_sizes(both_suites[i]);
		memcpy(pk[i], bkv_token_server_keys(t, both_suites[i])->server_public_key, sz->Npk);
		v1_len[i] = read_sealed_ake(label, i, v1[i]);
		assert_sealed_ake_layout(v1[i], v1_len[i], 1);
	}
	/* Each is sealed for its suite: swapped, neither loads. */
	for (size_t i = 0; i < 2; i++) {
		replace_data_object(label, sealed_ake_labels[i], v1[1 - i], v1_len[1 - i]);
		assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_ERR_AUTH);
		replace_data_object(label, sealed_ake_labels[i], v1[i], v1_len[i]);
	}
	load_both(t);
	bool resealed = true;
	assert_int_equal(bkv_token_reseal_ake_key(t, &resealed), BKV_TOKEN_OK);
	assert_false(resealed); /* nothing newer to seal under */
	uint32_t version = 0;
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(version, 2);
	assert_int_equal(bkv_token_delete_seal_key(t, 1), BKV_TOKEN_ERR_KEY_IN_USE);
	load_both(t);
	assert_int_equal(bkv_token_reseal_ake_key(t, &resealed), BKV_TOKEN_OK);
	assert_true(resealed);
	for (size_t i = 0; i < 2; i++) {
		v2_len[i] = read_sealed_ake(label, i, v2[i]);
		assert_sealed_ake_layout(v2[i], v2_len[i], 2);
	}
	assert_int_equal(bkv_token_reseal_ake_key(t, &resealed), BKV_TOKEN_OK);
	assert_false(resealed);

	/* Either key still under 1 keeps 1 from being deleted (put back as it was). */
	for (size_t i = 0; i < 2; i++) {
		replace_data_object(label, sealed_ake_labels[i], v1[i], v1_len[i]);
		assert_int_equal(bkv_token_delete_seal_key(t, 1), BKV_TOKEN_ERR_KEY_IN_USE);
		load_both(t); /* it still loads, the same key */
		const opaque_sizes *sz = opaque_suite_sizes(both_suites[i]);
		assert_memory_equal(bkv_token_server_keys(t, both_suites[i])->server_public_key,
		                    pk[i], sz->Npk);
		assert_int_equal(bkv_token_reseal_ake_key(t, &resealed), BKV_TOKEN_OK);
		assert_true(resealed);
		uint8_t now[256];
		const size_t other = 1 - i;
		assert_int_equal(read_sealed_ake(label, other, now), v2_len[other]);
		assert_memory_equal(now, v2[other], v2_len[other]); /* the other one untouched */
		v2_len[i] = read_sealed_ake(label, i, v2[i]);
		assert_sealed_ake_layout(v2[i], v2_len[i], 2);
	}
	assert_int_equal(bkv_token_delete_seal_key(t, 1), BKV_TOKEN_OK);
	static const uint32_t left[] = {2};
	assert_seal_versions(t, left, 1);
	bkv_token_close(t);
	t = open_custody(label, BKV_TOKEN_P256_AKE_SEALED);
	load_both(t);
	for (size_t i = 0; i < 2; i++)
		assert_memory_equal(bkv_token_server_keys(t, both_suites[i])->server_public_key,
		                    pk[i], opaque_suite_sizes(both_suites[i])->Npk);
	assert_preflight_passes(t);
	bkv_token_close(t);
}

/* A ristretto255 key sealed before seal schemes (version || iv || ciphertext || tag, 64
 * bytes: the GCM box of today's form without its header) still loads as the same key, holds
 * its seal key in use, and re-seals into today's form; changed anywhere, it does not load. */
static void a_ristretto255_key_sealed_in_the_old_form_loads_and_reseals(void **state)
{
	(void)state;
	const char *label = "bkv-r255-legacy";
	bkv_token *t = fresh_token_with_keys(label);
	uint8_t pk[32], value[256], legacy[AKE_SEALED_LEGACY_SIZE];
	memcpy(pk, bkv_token_server_keys(t, R255)->server_public_key, 32);
	const size_t len = read_sealed_ake(label, 1, value);
	assert_sealed_ake_layout(value, len, 1);
	memcpy(legacy, value + 1, 4);
	memcpy(legacy + 4, value + 7, len - 7);
	replace_data_object(label, sealed_ake_labels[1], legacy, sizeof(legacy));
	load_both(t);
	assert_memory_equal(bkv_token_server_keys(t, R255)->server_public_key, pk, 32);
	/* Any byte changed: the key does not load (AUTH, not a different key). */
	for (size_t i = 0; i < sizeof(legacy); i += 5) {
		legacy[i] ^= 0x01;
		replace_data_object(label, sealed_ake_labels[1], legacy, sizeof(legacy));
		bkv_token_err err = bkv_token_load_keys(t, both_suites, 2);
		if (err != BKV_TOKEN_ERR_AUTH && err != BKV_TOKEN_ERR_KEY_MISSING)
			fail_msg("old-form key with byte %zu changed: %s", i,
			         bkv_token_strerror(err));
		assert_int_not_equal(err, BKV_TOKEN_OK);
		legacy[i] ^= 0x01;
	}
	replace_data_object(label, sealed_ake_labels[1], legacy, sizeof(legacy));
	uint32_t version = 0;
	assert_int_equal(bkv_token_rotate_seal_key(t, &version), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_delete_seal_key(t, 1), BKV_TOKEN_ERR_KEY_IN_USE);
	load_both(t);
	bool resealed = false;
	assert_int_equal(bkv_token_reseal_ake_key(t, &resealed), BKV_TOKEN_OK);
	assert_true(resealed);
	const size_t now = read_sealed_ake(label, 1, value);
	assert_sealed_ake_layout(value, now, 2);
	assert_int_equal(bkv_token_delete_seal_key(t, 1), BKV_TOKEN_OK);
	load_both(t);
	assert_memory_equal(bkv_token_server_keys(t, R255)->server_public_key, pk, 32);
	bkv_token_close(t);
}

/* ------------------------------------------------------------------------------------ */
/* Loading the module                                                                    */
/* ------------------------------------------------------------------------------------ */

/* bkv_token_open(cfg) fails with BKV_TOKEN_ERR_MODULE and a reason in why, naming the
 * module and never the PIN. */
static void assert_module_fails(const bkv_token_config *cfg, char *why, size_t why_len)
{
	bkv_token *t = (bkv_token *)cfg; /* must be reset to NULL */
	why[0] = '\0';
	assert_int_equal(bkv_token_open(cfg, &t, why, why_len), BKV_TOKEN_ERR_MODULE);
	assert_null(t);
	assert_non_null(strstr(why, cfg->module_path));
	assert_true(why_is_clean(why));
}

static void a_missing_module_file_fails_with_the_loaders_reason(void **state)
{
	(void)state;
	bkv_token_config cfg = config_for(g_label);
	cfg.module_path = "/nonexistent/bkv-test/libnot-a-module.so";
	char why[512];
	assert_module_fails(&cfg, why, sizeof(why));
	assert_non_null(strstr(why, "No such file or directory"));
}

static void a_file_that_is_not_a_shared_object_fails_with_the_loaders_reason(void **state)
{
	(void)state;
	char path[] = "/tmp/bkv-test-not-a-module-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	static const char text[] = "[token]\nmodule = this file is text, not a PKCS#11 module; "
	                           "it is longer than an ELF header so the loader reads it\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);
	bkv_token_config cfg = config_for(g_label);
	cfg.module_path = path;
	char why[512];
	assert_module_fails(&cfg, why, sizeof(why));
	unlink(path);
	assert_non_null(strstr(why, "invalid ELF header"));
}

static void a_shared_object_without_c_get_function_list_fails_naming_the_symbol(void **state)
{
	(void)state;
	bkv_token_config cfg = config_for(g_label);
	cfg.module_path = "libc.so.6"; /* a shared object every process has; no PKCS#11 module */
	char why[512];
	assert_module_fails(&cfg, why, sizeof(why));
	assert_non_null(strstr(why, "undefined symbol: C_GetFunctionList"));
}

/* p11-kit-proxy.so offers the modules p11-kit's configuration registers: Debian's
 * softhsm2-common registers SoftHSM2, which finds this run's token through SOFTHSM2_CONF.
 * (p11-kit's own loader refuses to load its proxy.) */
static bkv_token *proxy_open_loaded(void)
{
	if (access(BKV_P11KIT_PROXY, R_OK) != 0)
		fail_msg("%s is missing: scripts/deps installs p11-kit-modules", BKV_P11KIT_PROXY);
	bkv_token_config cfg = config_for(g_label);
	cfg.module_path = BKV_P11KIT_PROXY;
	bkv_token *t = NULL;
	char why[512] = "";
	bkv_token_err err = bkv_token_open(&cfg, &t, why, sizeof(why));
	if (err != BKV_TOKEN_OK)
		print_error("through %s: %s\n", BKV_P11KIT_PROXY, why);
	assert_int_equal(err, BKV_TOKEN_OK);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	return t;
}

static void the_token_seals_and_opens_through_p11_kit_proxy(void **state)
{
	(void)state;
	bkv_token *proxied = proxy_open_loaded();
	uint8_t sealed[RECORD_SEALED];
	seal_record(proxied, sealed);
	assert_int_equal(open_record(proxied, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	/* The same token and keys as through SoftHSM2 directly. */
	bkv_token *direct = vault_open_loaded(g_label);
	assert_int_equal(open_record(direct, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	bkv_token_close(direct);
	bkv_token_close(proxied);
}

/* With no other loader holding the module, the first bkv_token on it initializes it and the
 * last close finalizes it; a close before that neither finalizes it nor logs the token out
 * (the login belongs to every session of the process). */
static void only_the_last_token_on_a_module_finalizes_it(void **state)
{
	(void)state;
	/* This program's own view lets go of SoftHSM2 for the length of the test. */
	assert_int_equal(p11_kit_module_finalize(g_fn), CKR_OK);
	bkv_token *first = vault_open_loaded(g_label);
	bkv_token *second = vault_open_loaded(g_label);
	bkv_token_close(first);
	uint8_t sealed[RECORD_SEALED];
	seal_record(second, sealed);
	assert_int_equal(open_record(second, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_check(second), BKV_TOKEN_OK);
	bkv_token_close(second);
	/* Finalized: initializing it again succeeds instead of finding it initialized. */
	CK_FUNCTION_LIST *raw = p11_kit_module_load(g_module, P11_KIT_MODULE_UNMANAGED);
	assert_non_null(raw);
	CK_RV rv = raw->C_Initialize(NULL);
	if (rv == CKR_OK)
		raw->C_Finalize(NULL);
	p11_kit_module_release(raw);
	assert_int_equal(p11_kit_module_initialize(g_fn), CKR_OK);
	assert_int_equal(rv, CKR_OK);
}

/* State of a new public session of our own on label's token. */
static CK_STATE fresh_session_state(const char *label)
{
	CK_SESSION_HANDLE h;
	CK_SESSION_INFO info;
	assert_int_equal(g_fn->C_OpenSession(slot_of(label), CKF_SERIAL_SESSION | CKF_RW_SESSION,
	                                     NULL, NULL, &h),
	                 CKR_OK);
	assert_int_equal(g_fn->C_GetSessionInfo(h, &info), CKR_OK);
	g_fn->C_CloseSession(h);
	return info.state;
}

/* Closing never calls C_Logout (it would log out every other token open in the process),
 * so the token must log out when its last session closes. */
static void closing_the_last_token_logs_the_token_out(void **state)
{
	(void)state;
	init_token("bkv-logout", NULL, 0);
	bkv_token *t = vault_open("bkv-logout");
	assert_int_equal(fresh_session_state("bkv-logout"), CKS_RW_USER_FUNCTIONS);
	bkv_token_close(t);
	assert_int_equal(fresh_session_state("bkv-logout"), CKS_RW_PUBLIC_SESSION);
}

/* The quirks module (tests/pkcs11-quirks) with need-init-args: C_Initialize wants
 * QUIRKS_INIT_ARGS, NSS softoken's kind of configuration string, in pReserved. */
static const char QUIRKS_INIT_ARGS[] =
    "configdir='sql:/var/lib/bkv-test' certPrefix='' keyPrefix='' secmod='secmod.db' flags=";

static bkv_token_config quirks_config(const char *init_args)
{
	const char *module = getenv("BKV_TEST_QUIRKS_MODULE");
	if (module == NULL)
		fail_msg(
		    "BKV_TEST_QUIRKS_MODULE must name libbkv-pkcs11-quirks.so (ctest sets it)");
	setenv("BKV_QUIRKS_MODULE", g_module, 1);
	setenv("BKV_QUIRKS", "need-init-args", 1);
	setenv("BKV_QUIRKS_INIT_ARGS", QUIRKS_INIT_ARGS, 1);
	bkv_token_config cfg = config_for(g_label);
	cfg.module_path = module;
	cfg.init_args = init_args;
	return cfg;
}

static void a_module_wanting_init_args_fails_without_them_naming_c_initialize(void **state)
{
	(void)state;
	const char *wrong[] = {NULL, "configdir='sql:/elsewhere'"};
	for (size_t i = 0; i < 2; i++) {
		bkv_token_config cfg = quirks_config(wrong[i]);
		char why[512];
		assert_module_fails(&cfg, why, sizeof(why));
		assert_non_null(strstr(why, "C_Initialize"));
		assert_non_null(strstr(why, "CKR_ARGUMENTS_BAD"));
	}
	unsetenv("BKV_QUIRKS");
}

static void init_args_reach_c_initialize_as_p_reserved(void **state)
{
	(void)state;
	/* A copy: what counts is the string, not the pointer. */
	char init_args[sizeof(QUIRKS_INIT_ARGS)];
	memcpy(init_args, QUIRKS_INIT_ARGS, sizeof(init_args));
	bkv_token_config cfg = quirks_config(init_args);
	bkv_token *t = NULL;
	char why[512] = "";
	bkv_token_err err = bkv_token_open(&cfg, &t, why, sizeof(why));
	if (err != BKV_TOKEN_OK)
		print_error("%s\n", why);
	assert_int_equal(err, BKV_TOKEN_OK);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	uint8_t sealed[RECORD_SEALED];
	seal_record(t, sealed);
	assert_int_equal(open_record(t, sealed, sizeof(sealed)), BKV_TOKEN_OK);

	/* The module is shared by the tokens open on it: a second open with other init_args
	 * cannot have them, and is refused rather than silently given the first ones. */
	bkv_token_config other = quirks_config("configdir='sql:/elsewhere'");
	bkv_token *t2 = (bkv_token *)&other;
	why[0] = '\0';
	assert_int_equal(bkv_token_open(&other, &t2, why, sizeof(why)), BKV_TOKEN_ERR_ARGUMENT);
	assert_null(t2);
	assert_non_null(strstr(why, "init_args"));
	bkv_token_close(t);
	unsetenv("BKV_QUIRKS");
}

/* NSS softoken (libnss3) needs its configuration string in pReserved: without it
 * C_Initialize answers CKR_ARGUMENTS_BAD; with it the module opens the database that
 * certutil made, whose password is the token's user PIN. (bkv's keys cannot live there
 * yet: docs/TOKEN.md says why.) */
static void nss_softoken_opens_the_database_its_init_args_name(void **state)
{
	(void)state;
	char dir[] = "/tmp/bkv-test-nss-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char password_file[64], command[256], init_args[256];
	snprintf(password_file, sizeof(password_file), "%s/password", dir);
	FILE *f = fopen(password_file, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", g_pin);
	fclose(f);
	snprintf(command, sizeof(command), "certutil -N -d 'sql:%s' -f '%s' >/dev/null 2>&1", dir,
	         password_file);
	if (system(command) != 0)
		fail_msg("certutil -N failed (scripts/deps installs libnss3-tools)");
	snprintf(init_args, sizeof(init_args),
	         "configdir='sql:%s' certPrefix='' keyPrefix='' secmod='secmod.db' flags=", dir);
	bkv_token_config cfg = config_for("NSS Certificate DB");
	cfg.module_path = "libsoftokn3.so";
	char why[512];
	assert_module_fails(&cfg, why, sizeof(why));
	assert_non_null(strstr(why, "C_Initialize"));
	assert_non_null(strstr(why, "CKR_ARGUMENTS_BAD"));

	cfg.init_args = init_args;
	bkv_token_config wrong = cfg;
	wrong.pin = WRONG_PIN;
	wrong.pin_len = sizeof(WRONG_PIN) - 1;
	bkv_token *t = NULL;
	assert_int_equal(bkv_token_open(&wrong, &t, why, sizeof(why)), BKV_TOKEN_ERR_PIN);
	assert_true(why_is_clean(why));
	bkv_token_err err = bkv_token_open(&cfg, &t, why, sizeof(why));
	if (err != BKV_TOKEN_OK)
		print_error("%s\n", why);
	assert_int_equal(err, BKV_TOKEN_OK);
	assert_int_equal(bkv_token_check(t), BKV_TOKEN_OK);
	bkv_token_close(t);
	remove_tree(dir);
}

/* ------------------------------------------------------------------------------------ */
/* Faults                                                                                */
/* ------------------------------------------------------------------------------------ */

static void wrong_pin_fails_with_a_pin_error(void **state)
{
	(void)state;
	init_token("bkv-pin", NULL, 0);
	bkv_token_config cfg = config_for("bkv-pin");
	cfg.pin = WRONG_PIN;
	cfg.pin_len = sizeof(WRONG_PIN) - 1;
	bkv_token *t = NULL;
	char why[512] = "";
	assert_int_equal(bkv_token_open(&cfg, &t, why, sizeof(why)), BKV_TOKEN_ERR_PIN);
	assert_null(t);
	assert_true(why[0] != '\0');
	assert_true(why_is_clean(why));
	/* One failure does not lock the token out. */
	t = vault_open("bkv-pin");
	bkv_token_close(t);
}

static void unknown_label_fails_with_no_token(void **state)
{
	(void)state;
	bkv_token_config cfg = config_for("bkv-no-such-token");
	bkv_token *t = NULL;
	char why[512] = "";
	assert_int_equal(bkv_token_open(&cfg, &t, why, sizeof(why)), BKV_TOKEN_ERR_NO_TOKEN);
	assert_null(t);
	assert_non_null(strstr(why, "bkv-no-such-token"));
	assert_true(why_is_clean(why));
}

static void invalid_configuration_fails_without_revealing_the_pin(void **state)
{
	(void)state;
	char long_label[BKV_TOKEN_LABEL_MAX + 2];
	memset(long_label, 'x', sizeof(long_label) - 1);
	long_label[sizeof(long_label) - 1] = '\0';
	static char long_pin[BKV_TOKEN_PIN_MAX + 2];
	memset(long_pin, 'p', sizeof(long_pin) - 1);
	bkv_token_config cfgs[4];
	for (size_t i = 0; i < 4; i++)
		cfgs[i] = config_for(g_label);
	cfgs[0].pin_len = 0;
	cfgs[1].token_label = long_label;
	cfgs[2].pin = long_pin;
	cfgs[2].pin_len = sizeof(long_pin) - 1;
	cfgs[3].token_label = "";
	for (size_t i = 0; i < 4; i++) {
		bkv_token *t = NULL;
		char why[512] = "";
		assert_int_equal(bkv_token_open(&cfgs[i], &t, why, sizeof(why)),
		                 BKV_TOKEN_ERR_ARGUMENT);
		assert_null(t);
		assert_true(why_is_clean(why));
	}
}

static void loading_keys_from_a_token_without_keys_fails_with_key_missing(void **state)
{
	(void)state;
	init_token("bkv-empty", NULL, 0);
	bkv_token *t = vault_open("bkv-empty");
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_ERR_KEY_MISSING);
	assert_int_equal(bkv_token_last_error(t), BKV_TOKEN_ERR_KEY_MISSING);
	assert_null(bkv_token_server_keys(t, P256));
	assert_null(bkv_token_server_keys(t, R255));
	uint8_t sealed[RECORD_SEAL_CAP];
	uint8_t pt[RECORD_PT_BYTES] = {0};
	size_t len = 99;
	assert_int_equal(bkv_record_seal(t, ACCOUNT, sizeof(ACCOUNT), P256, 1, NULL, 0, pt,
	                                 sizeof(pt), sealed, sizeof(sealed), &len),
	                 BKV_TOKEN_ERR_KEY_MISSING);
	assert_int_equal(len, 0);
	bkv_token_close(t);
}

/* token.h: the server-key operations' "failures surface as OPAQUE_ERR_SERVER_KEYS;
 * bkv_token_last_error then says why" - so after a failure it never says BKV_TOKEN_OK.
 * (The core never passes bad lengths; they are simply the failures a test can provoke
 * without breaking the token.) */
static void failed_server_key_operations_say_why(void **state)
{
	fx *f = *state;
	for (size_t s = 0; s < 2; s++) {
		const opaque_server_keys *keys = bkv_token_server_keys(f->t, both_suites[s]);
		const opaque_sizes *sz = opaque_suite_sizes(both_suites[s]);
		uint8_t peer[OPAQUE_MAX_ELEMENT_BYTES] = {0}, out[OPAQUE_MAX_ELEMENT_BYTES];
		static uint8_t big[256 * OPAQUE_MAX_HASH_BYTES];
		assert_int_equal(bkv_token_last_error(f->t), BKV_TOKEN_OK);
		assert_int_equal(keys->ake_dh(keys->ctx, peer, sz->Npk - 1, out, sz->Npk),
		                 OPAQUE_ERR_SERVER_KEYS);
		assert_int_not_equal(bkv_token_last_error(f->t), BKV_TOKEN_OK);
		bkv_token_close(f->t);
		f->t = vault_open_loaded(g_label);
		keys = bkv_token_server_keys(f->t, both_suites[s]);
		assert_int_equal(
		    keys->oprf_seed_expand(keys->ctx, (const uint8_t *)"x", 1, big, 256 * sz->Nh),
		    OPAQUE_ERR_SERVER_KEYS);
		assert_int_not_equal(bkv_token_last_error(f->t), BKV_TOKEN_OK);
		bkv_token_close(f->t);
		f->t = vault_open_loaded(g_label);
	}
}

static void token_check_tells_a_closed_session_from_a_healthy_one(void **state)
{
	fx *f = *state;
	assert_int_equal(bkv_token_check(f->t), BKV_TOKEN_OK);
	close_all_sessions_underneath(g_label);
	assert_int_equal(bkv_token_check(f->t), BKV_TOKEN_ERR_DEVICE);
	assert_int_equal(bkv_token_reopen(f->t), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_check(f->t), BKV_TOKEN_OK);
}

static void observer_sees_each_token_operation(void **state)
{
	fx *f = *state;
	op_counts c;
	memset(&c, 0, sizeof(c));
	bkv_token_set_observer(f->t, count_op, &c);
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	assert_int_equal(open_record(f->t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	const opaque_server_keys *keys = bkv_token_server_keys(f->t, P256);
	uint8_t out[32], g[33], dh[33];
	assert_int_equal(keys->oprf_seed_expand(keys->ctx, (const uint8_t *)"x", 1, out, 32),
	                 OPAQUE_OK);
	p256_ctx pc = p256_new();
	p256_generator(&pc, g);
	p256_free(&pc);
	token_dh(keys, g, dh);
	bkv_token_set_observer(f->t, NULL, NULL);
	assert_int_equal(c.n[BKV_TOKEN_OP_ENCRYPT], 1);
	assert_int_equal(c.n[BKV_TOKEN_OP_DECRYPT], 1);
	assert_int_equal(c.n[BKV_TOKEN_OP_HMAC], 1);
	assert_int_equal(c.n[BKV_TOKEN_OP_ECDH], 2); /* x(sk * P) and x(sk * (P + G)) */
}

/* p11-kit's managed mode gives each loader its own sessions: closing "all" sessions through
 * another managed instance leaves the vault's alone. (Why the next test goes unmanaged.) */
static void closing_sessions_through_another_managed_instance_spares_the_vault(void **state)
{
	fx *f = *state;
	assert_int_equal(g_fn->C_CloseAllSessions(slot_of(g_label)), CKR_OK);
	uint8_t sealed[RECORD_SEALED];
	seal_record(f->t, sealed);
	assert_int_equal(open_record(f->t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
}

static void session_closed_underneath_fails_with_device_error(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED], fresh[RECORD_SEAL_CAP];
	uint8_t pt[RECORD_PT_BYTES];
	fill_plaintext(pt);
	seal_record(f->t, sealed);
	close_all_sessions_underneath(g_label);

	const opaque_server_keys *keys = bkv_token_server_keys(f->t, P256);
	assert_non_null(keys);
	opaque_config cfg = config_of(P256);
	opaque_client_registration_state st;
	uint8_t request[33], response[66];
	assert_int_equal(opaque_client_registration_start(&cfg, STR(PASSWORD), &st, request, 33),
	                 OPAQUE_OK);
	assert_int_equal(opaque_server_registration_response(&cfg, keys, STR(CRED_ID), request, 33,
	                                                     response, 66),
	                 OPAQUE_ERR_SERVER_KEYS);
	assert_int_equal(bkv_token_last_error(f->t), BKV_TOKEN_ERR_DEVICE);
	/* The P-256 DH too, and the records: a dead session is not bad data (not AUTH). */
	uint8_t g[33], out[33];
	p256_ctx c = p256_new();
	p256_generator(&c, g);
	p256_free(&c);
	assert_int_equal(keys->ake_dh(keys->ctx, g, 33, out, 33), OPAQUE_ERR_SERVER_KEYS);
	assert_int_equal(bkv_token_last_error(f->t), BKV_TOKEN_ERR_DEVICE);
	assert_int_equal(open_record(f->t, sealed, sizeof(sealed)), BKV_TOKEN_ERR_DEVICE);
	size_t fresh_len = 99;
	assert_int_equal(bkv_record_seal(f->t, ACCOUNT, sizeof(ACCOUNT), P256, RECORD_VERSION, NULL,
	                                 0, pt, sizeof(pt), fresh, sizeof(fresh), &fresh_len),
	                 BKV_TOKEN_ERR_DEVICE);
	assert_int_equal(fresh_len, 0);
	opaque_client_registration_state_wipe(&st);
}

static void reopen_restores_service_after_the_session_was_closed(void **state)
{
	fx *f = *state;
	uint8_t sealed[RECORD_SEALED];
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES], export_key[OPAQUE_MAX_HASH_BYTES];
	seal_record(f->t, sealed);
	register_user(bkv_token_server_keys(f->t, P256), P256, CRED_ID, record, export_key);
	close_all_sessions_underneath(g_label);
	assert_int_equal(open_record(f->t, sealed, sizeof(sealed)), BKV_TOKEN_ERR_DEVICE);

	assert_int_equal(bkv_token_reopen(f->t), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_last_error(f->t), BKV_TOKEN_OK);
	assert_int_equal(open_record(f->t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	for (size_t s = 0; s < 2; s++)
		assert_non_null(bkv_token_server_keys(f->t, both_suites[s]));
	login_result r =
	    login_user(bkv_token_server_keys(f->t, P256), P256, CRED_ID, record, PASSWORD);
	assert_int_equal(r.client, OPAQUE_OK);
	assert_int_equal(r.server, OPAQUE_OK);
}

/* Observed with SoftHSM2 2.6: removing the token's files does not disturb an open session.
 * The vault works on session copies of its keys, so it keeps serving from memory. */
static void vault_keeps_serving_when_the_token_directory_is_removed(void **state)
{
	(void)state;
	char dir[1024];
	init_token("bkv-gone", dir, sizeof(dir));
	bkv_token *t = vault_open("bkv-gone");
	create_keys(t, false, NULL);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	uint8_t sealed[RECORD_SEALED], fresh[RECORD_SEALED];
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES], export_key[OPAQUE_MAX_HASH_BYTES];
	seal_record(t, sealed);
	register_user(bkv_token_server_keys(t, P256), P256, CRED_ID, record, export_key);

	remove_tree(dir);

	assert_int_equal(open_record(t, sealed, sizeof(sealed)), BKV_TOKEN_OK);
	seal_record(t, fresh);
	assert_int_equal(open_record(t, fresh, sizeof(fresh)), BKV_TOKEN_OK);
	for (size_t s = 0; s < 2; s++) {
		login_result r;
		if (both_suites[s] == P256) {
			r = login_user(bkv_token_server_keys(t, P256), P256, CRED_ID, record,
			               PASSWORD);
		} else {
			uint8_t rec[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
			register_user(bkv_token_server_keys(t, R255), R255, CRED_ID, rec,
			              export_key);
			r = login_user(bkv_token_server_keys(t, R255), R255, CRED_ID, rec,
			               PASSWORD);
		}
		assert_int_equal(r.client, OPAQUE_OK);
		assert_int_equal(r.server, OPAQUE_OK);
	}
	/* The token objects themselves are gone. */
	uint32_t versions[4];
	size_t count = 99;
	assert_int_equal(bkv_token_seal_versions(t, versions, 4, &count), BKV_TOKEN_OK);
	assert_int_equal(count, 0);
	bkv_token_close(t);
}

static void reopen_after_the_token_directory_is_removed_fails_cleanly(void **state)
{
	(void)state;
	char dir[1024];
	init_token("bkv-gone-reopen", dir, sizeof(dir));
	bkv_token *t = vault_open("bkv-gone-reopen");
	create_keys(t, false, NULL);
	assert_int_equal(bkv_token_load_keys(t, both_suites, 2), BKV_TOKEN_OK);
	const opaque_server_keys *stale = bkv_token_server_keys(t, P256);
	uint8_t sealed[RECORD_SEALED];
	seal_record(t, sealed);

	remove_tree(dir);

	assert_int_equal(bkv_token_reopen(t), BKV_TOKEN_ERR_NO_TOKEN);
	assert_int_equal(bkv_token_last_error(t), BKV_TOKEN_ERR_NO_TOKEN);
	/* Nothing is served any more, and nothing crashes. */
	assert_null(bkv_token_server_keys(t, P256));
	assert_null(bkv_token_server_keys(t, R255));
	assert_int_equal(bkv_token_seal_version(t), 0);
	assert_int_equal(open_record(t, sealed, sizeof(sealed)), BKV_TOKEN_ERR_KEY_MISSING);
	/* A server still holding the old keys pointer gets an error from the core. */
	opaque_config cfg = config_of(P256);
	opaque_client_registration_state st;
	uint8_t request[33], response[66];
	assert_int_equal(opaque_client_registration_start(&cfg, STR(PASSWORD), &st, request, 33),
	                 OPAQUE_OK);
	assert_int_not_equal(opaque_server_registration_response(&cfg, stale, STR(CRED_ID), request,
	                                                         33, response, 66),
	                     OPAQUE_OK);
	opaque_client_registration_state_wipe(&st);
	/* Trying again keeps failing the same way. */
	assert_int_equal(bkv_token_reopen(t), BKV_TOKEN_ERR_NO_TOKEN);
	bkv_token_close(t);
	/* A new open says which token is missing. */
	bkv_token_config cfg2 = config_for("bkv-gone-reopen");
	char why[512] = "";
	assert_int_equal(bkv_token_open(&cfg2, &t, why, sizeof(why)), BKV_TOKEN_ERR_NO_TOKEN);
	assert_non_null(strstr(why, "bkv-gone-reopen"));
	assert_true(why_is_clean(why));
}

/* ------------------------------------------------------------------------------------ */
/* Main                                                                                  */
/* ------------------------------------------------------------------------------------ */

static bool read_pin(const char *path)
{
	return tu_read_pin(path, g_pin, sizeof(g_pin), &g_pin_len);
}

static int group_setup(void **state)
{
	(void)state;
	g_module = getenv("BKV_TEST_PKCS11_MODULE");
	g_label = getenv("BKV_TEST_TOKEN_LABEL");
	g_token_dir = getenv("BKV_TEST_TOKEN_DIR");
	const char *pin_file = getenv("BKV_TEST_PIN_FILE");
	if (g_module == NULL || g_label == NULL || g_token_dir == NULL || pin_file == NULL ||
	    !read_pin(pin_file)) {
		print_error("test-token needs a SoftHSM2 token: run it as tests/with-softhsm "
		            "test-token\n");
		return -1;
	}
	/* The quirks module forwards to the same SoftHSM2, which this program keeps initialized
	 * (g_fn): p11-kit then never finalizes it through the quirks module. */
	if (g_quirks_module == NULL || access(g_quirks_module, R_OK) != 0 ||
	    setenv("BKV_QUIRKS_MODULE", g_module, 1) != 0) {
		print_error("test-token needs the quirks module (libbkv-pkcs11-quirks.so) as its "
		            "argument: %s\n",
		            g_quirks_module != NULL ? g_quirks_module : "none given");
		return -1;
	}
	unsetenv("BKV_QUIRKS");
	if (sodium_init() < 0)
		return -1;
	g_fn = p11_kit_module_load(g_module, 0);
	if (g_fn == NULL || p11_kit_module_initialize(g_fn) != CKR_OK) {
		print_error("cannot load %s\n", g_module);
		return -1;
	}
	bkv_token_config cfg = config_for(g_label);
	bkv_token *t = NULL;
	char why[256] = "";
	bkv_token_err err = bkv_token_open(&cfg, &t, why, sizeof(why));
	if (err == BKV_TOKEN_OK)
		err = bkv_token_create_keys(t, both_suites, 2, BKV_TOKEN_INIT_CREATE,
		                            tu_ignore_report, NULL);
	bkv_token_close(t);
	if (err != BKV_TOKEN_OK) {
		print_error("cannot create the test keys: %s %s\n", bkv_token_strerror(err), why);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (g_fn != NULL) {
		p11_kit_module_finalize(g_fn);
		p11_kit_module_release(g_fn);
	}
	sodium_memzero(g_pin, sizeof(g_pin));
	return 0;
}

#define VAULT_TEST(f) cmocka_unit_test_setup_teardown(f, vault_setup, vault_teardown)
#define VAULT_TEST_P256(f)                                                                         \
	cmocka_unit_test_prestate_setup_teardown(f, vault_setup, vault_teardown, &suite_p256)
#define VAULT_TEST_R255(f)                                                                         \
	cmocka_unit_test_prestate_setup_teardown(f, vault_setup, vault_teardown, &suite_r255)
#define TEST_P256(f) cmocka_unit_test_prestate(f, &suite_p256)
#define TEST_R255(f) cmocka_unit_test_prestate(f, &suite_r255)

int main(int argc, char **argv)
{
	/* p11-kit takes a relative module path as one in its own module directory. */
	static char quirks_path[PATH_MAX];
	if (argc > 1 && realpath(argv[1], quirks_path) != NULL)
		g_quirks_module = quirks_path;
	const struct CMUnitTest tests[] = {
	    /* Key attributes */
	    cmocka_unit_test(secret_keys_are_sensitive_and_never_extractable),
	    cmocka_unit_test(p256_private_key_is_sensitive_and_never_extractable),
	    cmocka_unit_test(secret_key_values_cannot_be_read),
	    cmocka_unit_test(aes_keys_only_encrypt_and_decrypt),
	    cmocka_unit_test(oprf_seed_allows_only_hmac),
	    cmocka_unit_test(oprf_seed_refuses_other_mechanisms),
	    cmocka_unit_test(p256_private_key_only_derives),
	    VAULT_TEST(ristretto255_key_exists_only_sealed),
	    VAULT_TEST(session_copies_stay_sensitive),
	    /* The key ceremony */
	    cmocka_unit_test(create_keys_creates_every_key_once),
	    cmocka_unit_test(create_keys_again_keeps_every_key),
	    cmocka_unit_test(create_keys_with_replace_makes_new_keys),
	    cmocka_unit_test(adopt_on_an_empty_token_creates_nothing_and_names_the_missing_key),
	    cmocka_unit_test(adopt_uses_the_keys_a_vendor_tool_made),
	    cmocka_unit_test(keys_unfit_for_their_use_are_refused),
	    cmocka_unit_test(sealed_keys_in_a_key_store_never_touch_data_objects),
	    cmocka_unit_test(key_store_blobs_are_bound_to_their_label),
	    cmocka_unit_test(a_failed_open_closes_the_key_store),
	    cmocka_unit_test(records_sealed_before_replace_no_longer_open),
	    /* OPAQUE with token-held keys */
	    VAULT_TEST_P256(token_keys_register_and_log_in_with_the_software_client),
	    VAULT_TEST_R255(token_keys_register_and_log_in_with_the_software_client),
	    VAULT_TEST_P256(token_keys_reject_a_wrong_password),
	    VAULT_TEST_R255(token_keys_reject_a_wrong_password),
	    VAULT_TEST_P256(token_registration_verifies_in_a_later_session),
	    VAULT_TEST_R255(token_registration_verifies_in_a_later_session),
	    VAULT_TEST_P256(token_oprf_is_deterministic_per_credential_identifier),
	    VAULT_TEST_R255(token_oprf_is_deterministic_per_credential_identifier),
	    VAULT_TEST_P256(token_oprf_differs_between_credential_identifiers),
	    VAULT_TEST_R255(token_oprf_differs_between_credential_identifiers),
	    TEST_P256(token_hmac_equals_software_hkdf_expand),
	    TEST_R255(token_hmac_equals_software_hkdf_expand),
	    TEST_P256(token_oprf_equals_software_oprf_for_the_same_seed),
	    TEST_R255(token_oprf_equals_software_oprf_for_the_same_seed),
	    /* Full-point P-256 DH */
	    VAULT_TEST(token_p256_dh_equals_software_dh_for_random_points),
	    VAULT_TEST(token_p256_dh_of_g_is_the_public_key),
	    VAULT_TEST(token_p256_dh_of_minus_g_is_minus_the_public_key),
	    VAULT_TEST(token_p256_dh_of_2g_is_twice_the_public_key),
	    VAULT_TEST(token_p256_dh_of_minus_2g_is_minus_twice_the_public_key),
	    VAULT_TEST(server_login_accepts_a_client_keyshare_of_minus_g),
	    VAULT_TEST(token_ristretto255_dh_equals_software_dh_for_random_points),
	    cmocka_unit_test(full_point_recovery_of_g_is_the_public_key),
	    cmocka_unit_test(full_point_recovery_of_minus_g_is_minus_the_public_key),
	    cmocka_unit_test(full_point_recovery_of_2g_is_twice_the_public_key),
	    cmocka_unit_test(full_point_recovery_of_minus_2g_is_minus_twice_the_public_key),
	    cmocka_unit_test(full_point_recovery_equals_software_dh_for_random_points),
	    cmocka_unit_test(full_point_recovery_rejects_inconsistent_oracle_answers),
	    cmocka_unit_test(full_point_recovery_reports_oracle_failures),
	    cmocka_unit_test(full_point_recovery_rejects_an_invalid_peer),
	    /* Sealed records */
	    VAULT_TEST(sealed_record_opens_where_it_belongs),
	    VAULT_TEST(empty_record_seals_and_opens),
	    VAULT_TEST(sealing_an_empty_record_leaves_the_session_usable),
	    VAULT_TEST(sealing_into_a_short_buffer_is_an_argument_error),
	    VAULT_TEST(sealing_twice_uses_fresh_ivs),
	    VAULT_TEST(sealed_record_does_not_open_under_another_account),
	    VAULT_TEST(sealed_record_does_not_open_under_another_suite),
	    VAULT_TEST(sealed_record_does_not_open_under_another_record_version),
	    VAULT_TEST(sealed_record_relabelled_with_an_unknown_key_version_fails_auth),
	    VAULT_TEST(sealed_record_with_another_format_byte_fails_auth),
	    VAULT_TEST(sealed_record_with_another_box_header_fails_auth),
	    VAULT_TEST(sealed_record_with_a_flipped_iv_byte_fails_auth),
	    VAULT_TEST(sealed_record_with_a_flipped_ciphertext_byte_fails_auth),
	    VAULT_TEST(sealed_record_with_a_flipped_tag_byte_fails_auth),
	    VAULT_TEST(truncated_sealed_record_fails_auth),
	    /* The record-state MAC; sealed records bound to a registration */
	    cmocka_unit_test(state_mac_key_allows_only_hmac_sha256),
	    VAULT_TEST(state_mac_is_deterministic_and_covers_every_byte),
	    VAULT_TEST(state_mac_differs_between_tokens_and_after_the_keys_are_replaced),
	    cmocka_unit_test(state_mac_before_the_keys_are_loaded_is_key_missing),
	    cmocka_unit_test(a_token_without_the_state_mac_key_gets_it_from_create_keys),
	    VAULT_TEST(state_mac_argument_errors),
	    VAULT_TEST(state_mac_on_a_closed_session_is_a_device_error),
	    cmocka_unit_test(state_mac_equals_software_hmac_sha256),
	    cmocka_unit_test(sealed_record_binds_the_registration_id_as_specified),
	    cmocka_unit_test(legacy_sealed_records_open_with_an_empty_registration_id),
	    cmocka_unit_test(format_1_records_made_by_openssl_open),
	    VAULT_TEST(format_1_record_from_a_format_2_record_opens),
	    VAULT_TEST(sealed_record_with_a_registration_id_opens_only_with_it),
	    VAULT_TEST(a_registration_id_of_another_length_is_an_argument_error),
	    /* Seal-key rotation */
	    cmocka_unit_test(rotating_the_seal_key_creates_version_2),
	    cmocka_unit_test(new_seals_use_the_new_version_once_keys_are_reloaded),
	    cmocka_unit_test(records_sealed_under_version_1_open_after_rotation),
	    cmocka_unit_test(
	        a_session_loaded_before_a_rotation_opens_records_sealed_under_the_new_version),
	    cmocka_unit_test(sealed_record_relabelled_with_another_existing_key_version_fails_auth),
	    cmocka_unit_test(deleting_the_newest_seal_key_is_refused),
	    cmocka_unit_test(deleting_the_seal_key_of_the_ristretto255_key_is_refused),
	    cmocka_unit_test(deleting_an_unused_old_seal_key_succeeds),
	    /* Seal schemes through the quirks module */
	    cmocka_unit_test(a_token_without_gcm_gets_hmac_keys_for_its_sealing_keys),
	    cmocka_unit_test(cbc_records_round_trip_in_the_specified_layout),
	    cmocka_unit_test(cbc_record_with_any_byte_changed_fails_auth),
	    cmocka_unit_test(cbc_box_opens_only_with_its_aad),
	    cmocka_unit_test(boxes_open_only_under_the_key_and_scheme_that_made_them),
	    cmocka_unit_test(a_cbc_token_seals_the_ristretto255_key_and_serves_logins),
	    cmocka_unit_test(a_key_keeps_its_scheme_whichever_module_opens_the_token),
	    cmocka_unit_test(create_keys_again_without_gcm_keeps_the_hmac_keys),
	    cmocka_unit_test(cbc_boxes_are_as_specified_checked_with_openssl),
	    cmocka_unit_test(a_token_that_chooses_a_12_byte_gcm_iv_seals_records_that_open),
	    cmocka_unit_test(a_token_that_chooses_a_16_byte_gcm_iv_seals_records_that_open),
	    /* The P-256 AKE key sealed */
	    cmocka_unit_test(a_sealed_p256_ake_key_is_a_sealed_data_object),
	    cmocka_unit_test(a_sealed_p256_ake_key_agrees_with_openssl),
	    cmocka_unit_test(a_sealed_p256_ake_key_serves_logins_across_sessions),
	    cmocka_unit_test(create_keys_refuses_a_p256_key_of_the_other_custody),
	    /* Re-sealing the AKE keys */
	    cmocka_unit_test(resealing_moves_both_sealed_ake_keys_to_the_newest_seal_key),
	    cmocka_unit_test(a_ristretto255_key_sealed_in_the_old_form_loads_and_reseals),
	    /* Loading the module */
	    cmocka_unit_test(a_missing_module_file_fails_with_the_loaders_reason),
	    cmocka_unit_test(a_file_that_is_not_a_shared_object_fails_with_the_loaders_reason),
	    cmocka_unit_test(a_shared_object_without_c_get_function_list_fails_naming_the_symbol),
	    cmocka_unit_test(the_token_seals_and_opens_through_p11_kit_proxy),
	    cmocka_unit_test(only_the_last_token_on_a_module_finalizes_it),
	    cmocka_unit_test(closing_the_last_token_logs_the_token_out),
	    cmocka_unit_test(a_module_wanting_init_args_fails_without_them_naming_c_initialize),
	    cmocka_unit_test(init_args_reach_c_initialize_as_p_reserved),
	    cmocka_unit_test(nss_softoken_opens_the_database_its_init_args_name),
	    /* Faults */
	    cmocka_unit_test(wrong_pin_fails_with_a_pin_error),
	    cmocka_unit_test(unknown_label_fails_with_no_token),
	    cmocka_unit_test(invalid_configuration_fails_without_revealing_the_pin),
	    cmocka_unit_test(loading_keys_from_a_token_without_keys_fails_with_key_missing),
	    VAULT_TEST(failed_server_key_operations_say_why),
	    VAULT_TEST(observer_sees_each_token_operation),
	    VAULT_TEST(closing_sessions_through_another_managed_instance_spares_the_vault),
	    VAULT_TEST(token_check_tells_a_closed_session_from_a_healthy_one),
	    VAULT_TEST(session_closed_underneath_fails_with_device_error),
	    VAULT_TEST(reopen_restores_service_after_the_session_was_closed),
	    cmocka_unit_test(vault_keeps_serving_when_the_token_directory_is_removed),
	    cmocka_unit_test(reopen_after_the_token_directory_is_removed_fails_cleanly),
	};
	return cmocka_run_group_tests_name("token", tests, group_setup, group_teardown);
}
