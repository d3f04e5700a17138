/*
 * test_recovery.c - behaviour tests of the vault's RPC handlers (vault/handlers) against a
 * real SoftHSM2 token and a real SQLite file or PostgreSQL database (cmocka): registration
 * and recovery for both suites with the pure-software OPAQUE client, the attempt limit
 * (counted down, committed before KE2, reset by a success, destroying the record when used
 * up), invalid input, tickets, replacement and deletion, the audit log, concurrent guessers
 * in K processes and processes killed with SIGKILL.
 *
 * Run it through tests/with-softhsm, which makes a throw-away token and exports
 * BKV_TEST_PKCS11_MODULE, BKV_TEST_TOKEN_LABEL and BKV_TEST_PIN_FILE. Keys for both suites
 * are created once; every test gets its own token session, a fresh database in a temporary
 * directory and its own audit file.
 *
 * With BKV_TEST_STORAGE=postgresql the same tests run on the PostgreSQL backend, against the
 * database BKV_TEST_PG_URL names (tests/with-postgres provides one; run it as
 * tests/with-postgres tests/with-softhsm env BKV_TEST_STORAGE=postgresql test-recovery):
 * every test starts from an empty schema public. The three tests that reach under the
 * storage have PostgreSQL equivalents, none is skipped:
 *  - a commit that cannot be written: RLIMIT_FSIZE cannot touch the server's writes, so a
 *    PL/pgSQL trigger raises on the UPDATE of attempts_used, and then a deferred constraint
 *    trigger raises at COMMIT itself;
 *  - another writer holding the database: a second libpq connection holds the row
 *    (SELECT ... FOR UPDATE), then the table (LOCK TABLE records IN EXCLUSIVE MODE), for
 *    longer than the backend's statement_timeout (5 s);
 *  - integrity after SIGKILL: the server owns its files, so no PRAGMA integrity_check; the
 *    killed worker's transaction must be gone, every row must satisfy the counters'
 *    invariants, and every row must read back through the backend.
 *
 * The client side is the OPAQUE core's software client (OPAQUE_KSF_IDENTITY: the server
 * never runs the KSF), and the release is opened here with OpenSSL as the spec says:
 *   sealed_key = nonce (12) || AES-256-GCM(key = HKDF-Expand(session_key, "bkv-v1 release",
 *                32), AAD = "bkv-v1 release") || tag (16)
 *
 * Observation points are linked in with -Wl,--wrap (tests/CMakeLists.txt): the calls to
 * opaque_server_login_start (was a KE2 computed at all?), bkv_storage_update (was a commit of
 * a record's state tried? and to rotate the seal key right before a commit) and
 * bkv_storage_get (to run a re-registration right after a handler's read), making races
 * deterministic. Each calls straight through. time() is
 * wrapped too, to move the clock of the code under test forward (expired tickets) without
 * waiting; it is the real clock unless a test sets g_time_offset.
 *
 * Issue 9 (the attempt limit against the account holder): the offline-guessing attack that
 * spliced RegisterStart evaluations into one KE2, each with a control showing the splice is
 * a working oracle when the evaluation is under the record's key; fresh registration ids
 * and the tickets bound to them; compare-and-set registration; tombstones; AttemptInfo on
 * every failure that concerns a record; and rows edited directly in the database (SQL on
 * the SQLite file or through libpq), each refused with DATA_LOSS and audited.
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <sodium.h>
#include <sqlite3.h>

#include "handlers.h"
#include "testgroup.h"
#include "testpg.h"
#include "ticket.h"
#include "testtoken.h"

/* ------------------------------------------------------------------------------------ */
/* Constants and globals                                                                 */
/* ------------------------------------------------------------------------------------ */

#define P256 OPAQUE_SUITE_P256_SHA256
#define R255 OPAQUE_SUITE_RISTRETTO255_SHA512

#define DEFAULT_LIMIT 10u
#define MAX_LIMIT     20u
#define LIFETIME_S    60u

/* The test client's own failure (never a vault answer from these handlers). */
#define CLIENT_FAILED BKV_CODE_UNIMPLEMENTED

#define CONCURRENT_GUESSERS 12
#define GROUP_MEMBERS       64 /* member indexes for forked workers, reused round-robin */
#define KILL_ROUNDS         5
#define CHILD_DEADLINE_MS   30000

static const opaque_suite_id both_suites[] = {P256, R255};
static const char CONTEXT[] = "bkv-v1";
static const char PASSWORD[] = "correct horse battery staple";
static const char WRONG_PASSWORD[] = "correct horse battery stapler";
static const char NEW_PASSWORD[] = "tr0ub4dor&3";
static const char RELEASE_INFO[] = "bkv-v1 release";
/* Account ids are the JWT's sub; a phone number makes a leak in the audit log obvious. */
static const char ALICE[] = "+15551234567";
static const char BOB[] = "+15559876543";
static const uint8_t LOG_KEY[32] = {
    0x6c, 0x6f, 0x67, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x66, 0x6f, 0x72, 0x2d, 0x74, 0x65, 0x73, 0x74,
    0x73, 0x2d, 0x6f, 0x6e, 0x6c, 0x79, 0x2d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38};

static const char *g_module;
static const char *g_label;
static char g_pin[BKV_TOKEN_PIN_MAX + 1];
static size_t g_pin_len;

static opaque_suite_id suite_p256 = P256;
static opaque_suite_id suite_r255 = R255;

/* BKV_TEST_STORAGE=postgresql: run against BKV_TEST_PG_URL instead of SQLite files. */
static bool on_pg;
static const char *pg_url;

/* ------------------------------------------------------------------------------------ */
/* Observation points (-Wl,--wrap)                                                       */
/* ------------------------------------------------------------------------------------ */

static unsigned g_login_start_calls;   /* KE2 computations */
static unsigned g_commit_calls;        /* bkv_storage_update calls: commits of a record's state */
static int64_t g_time_offset;          /* seconds added to time() */
static void (*g_after_get)(void *arg); /* runs once, right after the next storage read */
static void *g_after_get_arg;
static void (*g_before_update)(void *arg); /* runs once, right before the next update */
static void *g_before_update_arg;

opaque_err __real_opaque_server_login_start(
    const opaque_config *config, const opaque_server_keys *keys,
    const opaque_identities *identities, const uint8_t *credential_identifier,
    size_t credential_identifier_len, const uint8_t *registration_record,
    size_t registration_record_len, const uint8_t *ke1, size_t ke1_len,
    opaque_server_login_state *state, uint8_t *ke2, size_t ke2_len);
opaque_err __wrap_opaque_server_login_start(
    const opaque_config *config, const opaque_server_keys *keys,
    const opaque_identities *identities, const uint8_t *credential_identifier,
    size_t credential_identifier_len, const uint8_t *registration_record,
    size_t registration_record_len, const uint8_t *ke1, size_t ke1_len,
    opaque_server_login_state *state, uint8_t *ke2, size_t ke2_len);
bkv_storage_err __real_bkv_storage_update(bkv_storage *s, const bkv_record *r,
                                          const uint8_t *expected_mac, size_t expected_mac_len);
bkv_storage_err __wrap_bkv_storage_update(bkv_storage *s, const bkv_record *r,
                                          const uint8_t *expected_mac, size_t expected_mac_len);
time_t __real_time(time_t *t);
time_t __wrap_time(time_t *t);
bkv_storage_err __real_bkv_storage_get(bkv_storage *s, const uint8_t *account_id,
                                       size_t account_id_len, bkv_record *out);
bkv_storage_err __wrap_bkv_storage_get(bkv_storage *s, const uint8_t *account_id,
                                       size_t account_id_len, bkv_record *out);

opaque_err __wrap_opaque_server_login_start(
    const opaque_config *config, const opaque_server_keys *keys,
    const opaque_identities *identities, const uint8_t *credential_identifier,
    size_t credential_identifier_len, const uint8_t *registration_record,
    size_t registration_record_len, const uint8_t *ke1, size_t ke1_len,
    opaque_server_login_state *state, uint8_t *ke2, size_t ke2_len)
{
	g_login_start_calls++;
	return __real_opaque_server_login_start(
	    config, keys, identities, credential_identifier, credential_identifier_len,
	    registration_record, registration_record_len, ke1, ke1_len, state, ke2, ke2_len);
}

bkv_storage_err __wrap_bkv_storage_update(bkv_storage *s, const bkv_record *r,
                                          const uint8_t *expected_mac, size_t expected_mac_len)
{
	g_commit_calls++;
	if (g_before_update != NULL) {
		void (*hook)(void *) = g_before_update;
		g_before_update = NULL;
		hook(g_before_update_arg);
	}
	return __real_bkv_storage_update(s, r, expected_mac, expected_mac_len);
}

time_t __wrap_time(time_t *t)
{
	const time_t now = __real_time(NULL) + (time_t)g_time_offset;
	if (t != NULL)
		*t = now;
	return now;
}

bkv_storage_err __wrap_bkv_storage_get(bkv_storage *s, const uint8_t *account_id,
                                       size_t account_id_len, bkv_record *out)
{
	const bkv_storage_err err = __real_bkv_storage_get(s, account_id, account_id_len, out);
	if (g_after_get != NULL) {
		void (*hook)(void *) = g_after_get;
		g_after_get = NULL;
		hook(g_after_get_arg);
	}
	return err;
}

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                         */
/* ------------------------------------------------------------------------------------ */

static bkv_account account_of(const char *id)
{
	return (bkv_account){(const uint8_t *)id, strlen(id)};
}

static const opaque_sizes *sizes_of(opaque_suite_id suite)
{
	return opaque_suite_sizes(suite);
}

static opaque_config client_config(opaque_suite_id suite)
{
	return (opaque_config){
	    suite, (const uint8_t *)CONTEXT, sizeof(CONTEXT) - 1, {OPAQUE_KSF_IDENTITY, 0, 0, 0}};
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static bool is_zero(const uint8_t *p, size_t len)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < len; i++)
		acc |= p[i];
	return acc == 0;
}

/* The wrapped key every registration stores unless a test says otherwise. */
static void wrapped_key_pattern(uint8_t *out, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		out[i] = (uint8_t)(seed + 31 * i);
}

#define WK_LEN 64

/* ------------------------------------------------------------------------------------ */
/* PostgreSQL: a plain libpq connection beside the backend's                             */
/* ------------------------------------------------------------------------------------ */

static PGconn *pg_raw_connect(void)
{
	return tu_pg_connect(pg_url);
}

/* Runs sql (several statements allowed) on c. NULL on success, else the error (static). */
static const char *pg_try_exec_on(PGconn *c, const char *sql)
{
	static char msg[512];
	PGresult *res = PQexec(c, sql);
	const ExecStatusType st = PQresultStatus(res);
	const bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	snprintf(msg, sizeof(msg), "%s", ok ? "" : PQerrorMessage(c));
	PQclear(res);
	return ok ? NULL : msg;
}

/* The same on a fresh connection. */
static const char *pg_try_exec(const char *sql)
{
	PGconn *c = pg_raw_connect();
	if (c == NULL)
		return "no connection";
	const char *err = pg_try_exec_on(c, sql);
	PQfinish(c);
	return err;
}

static void pg_exec(const char *sql)
{
	const char *err = pg_try_exec(sql);
	if (err != NULL)
		fail_msg("%s: %s", sql, err);
}

/* The first column of the one row sql returns, as an integer; -1 on failure (printed). */
static int64_t pg_count(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	int64_t v = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0))
		v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	else
		print_error("%s: %s", sql, PQerrorMessage(c));
	PQclear(res);
	return v;
}

/* An empty database: no bkv tables, no per-database settings. */
static int pg_reset(void)
{
	const char *err = pg_try_exec(
	    "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;"
	    "DO $$BEGIN EXECUTE format('ALTER DATABASE %I RESET ALL', current_database()); END$$");
	if (err != NULL) {
		print_error("setup: cannot reset the PostgreSQL database: %s", err);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Fixture                                                                               */
/* ------------------------------------------------------------------------------------ */

typedef struct fx {
	bkv_vault v;
	bkv_reply_buffers buf;
	char dir[256];
	char db[320];
	char url[340];
	char audit_path[320];
	FILE *audit;
	opaque_suite_id suite; /* for the tests that run once per suite */
	uint8_t wk[WK_LEN];    /* the default wrapped key */
	unsigned refused;      /* "record_refused" events seen by the event hook */
	/* SQLite: forked workers commit together, as bkvd's do (storage.h, "Group commit");
	 * each joins as the next member. NULL on PostgreSQL. */
	bkv_storage_group *group;
	uint32_t next_member;
} fx;

static void count_refusals(void *arg, const char *event)
{
	fx *f = arg;
	if (strcmp(event, "record_refused") == 0)
		f->refused++;
}

/* A token session with both suites' keys loaded, or NULL (why says what failed). */
static bkv_token *token_open_loaded(char *why, size_t why_len)
{
	bkv_token_config cfg = {
	    .module_path = g_module, .token_label = g_label, .pin = g_pin, .pin_len = g_pin_len};
	bkv_token *t = NULL;
	if (bkv_token_open(&cfg, &t, why, why_len) != BKV_TOKEN_OK)
		return NULL;
	bkv_token_err err = bkv_token_load_keys(t, both_suites, 2);
	if (err != BKV_TOKEN_OK) {
		snprintf(why, why_len, "load_keys: %s", bkv_token_strerror(err));
		bkv_token_close(t);
		return NULL;
	}
	return t;
}

static void settings_init(bkv_vault_settings *s, FILE *audit, uint32_t lifetime)
{
	memset(s, 0, sizeof(*s));
	s->suites[0] = P256;
	s->suites[1] = R255;
	s->nsuites = 2;
	s->context = (const uint8_t *)CONTEXT;
	s->context_len = sizeof(CONTEXT) - 1;
	s->ksf = (opaque_ksf){OPAQUE_KSF_ARGON2ID, 3, 65536, 4};
	s->default_attempt_limit = DEFAULT_LIMIT;
	s->max_attempt_limit = MAX_LIMIT;
	s->ticket_lifetime_s = lifetime;
	s->audit = audit;
	memcpy(s->log_key, LOG_KEY, sizeof(LOG_KEY));
}

/* Opens the vault's token session and storage connection (a worker's resources). */
static bool vault_attach(fx *f, char *why, size_t why_len)
{
	f->v.token = token_open_loaded(why, why_len);
	if (f->v.token == NULL)
		return false;
	if (bkv_storage_open(f->url, &f->v.storage, why, why_len) != BKV_STORAGE_OK) {
		bkv_token_close(f->v.token);
		f->v.token = NULL;
		return false;
	}
	return true;
}

/* Closes them: before fork(), so that no child inherits a live PKCS#11 module or storage
 * connection (SQLite or libpq: none may be used across fork). */
static void vault_detach(fx *f)
{
	bkv_storage_close(f->v.storage);
	f->v.storage = NULL;
	bkv_token_close(f->v.token);
	f->v.token = NULL;
}

static int setup_lifetime(void **state, uint32_t lifetime)
{
	if (on_pg && pg_reset() != 0)
		return -1;
	fx *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->suite = *state != NULL ? *(opaque_suite_id *)*state : P256;
	if (!on_pg && (f->group = bkv_storage_group_create(GROUP_MEMBERS)) == NULL) {
		free(f);
		return -1;
	}
	const char *tmp = getenv("TMPDIR");
	snprintf(f->dir, sizeof(f->dir), "%s/bkv-recovery.XXXXXX",
	         tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		bkv_storage_group_free(f->group);
		free(f);
		return -1;
	}
	snprintf(f->db, sizeof(f->db), "%s/vault.db", f->dir);
	const int url_len = on_pg ? snprintf(f->url, sizeof(f->url), "%s", pg_url)
	                          : snprintf(f->url, sizeof(f->url), "sqlite:%s", f->db);
	if (url_len < 0 || (size_t)url_len >= sizeof(f->url)) {
		print_error("setup: the storage URL is too long\n");
		rmdir(f->dir);
		bkv_storage_group_free(f->group);
		free(f);
		return -1;
	}
	snprintf(f->audit_path, sizeof(f->audit_path), "%s/audit.jsonl", f->dir);
	/* Append mode, so that forked workers sharing it never overwrite each other. */
	f->audit = fopen(f->audit_path, "a+");
	char why[512] = "";
	if (f->audit == NULL || !vault_attach(f, why, sizeof(why))) {
		print_error("cannot set up the vault: %s\n", why);
		if (f->audit != NULL)
			fclose(f->audit);
		unlink(f->audit_path);
		rmdir(f->dir);
		bkv_storage_group_free(f->group);
		free(f);
		return -1;
	}
	settings_init(&f->v.settings, f->audit, lifetime);
	f->v.settings.event_hook = count_refusals;
	f->v.settings.event_arg = f;
	wrapped_key_pattern(f->wk, sizeof(f->wk), 0x5a);
	g_after_get = NULL;
	g_before_update = NULL;
	g_time_offset = 0;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_lifetime(state, LIFETIME_S);
}

static int setup_short_tickets(void **state)
{
	return setup_lifetime(state, 1);
}

static int teardown(void **state)
{
	fx *f = *state;
	if (f == NULL)
		return 0;
	g_after_get = NULL;
	g_before_update = NULL;
	g_time_offset = 0;
	vault_detach(f);
	bkv_storage_group_free(f->group);
	if (f->audit != NULL)
		fclose(f->audit);
	const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char path[400];
		snprintf(path, sizeof(path), "%s%s", f->db, suffixes[i]);
		unlink(path);
	}
	unlink(f->audit_path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The client side (no cmocka asserts: also used in forked children)                     */
/* ------------------------------------------------------------------------------------ */

/* What the client keeps from RegisterStart: its finalized record and the ticket. */
typedef struct reg_start {
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t ticket[BKV_REGISTRATION_TICKET_BYTES];
	size_t ticket_len;
} reg_start;

/* RegisterStart and the client's finalization: a registration record for password. */
static bkvd_status client_make_record(bkv_vault *v, bkv_reply_buffers *buf, bkv_account a,
                                      opaque_suite_id suite, const char *password, reg_start *out)
{
	memset(out, 0, sizeof(*out));
	const opaque_config cfg = client_config(suite);
	const opaque_sizes *sz = sizes_of(suite);
	opaque_client_registration_state cs;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	if (opaque_client_registration_start(&cfg, (const uint8_t *)password, strlen(password), &cs,
	                                     request, sz->registration_request) != OPAQUE_OK)
		return bkvd_status_error(CLIENT_FAILED, "client registration start");
	Bkv__V1__RegisterStartRequest req = BKV__V1__REGISTER_START_REQUEST__INIT;
	Bkv__V1__RegisterStartResponse resp;
	req.suite = (Bkv__V1__Suite)suite;
	req.registration_request.data = request;
	req.registration_request.len = sz->registration_request;
	bkvd_status st = bkvd_register_start(v, a, &req, &resp, buf);
	if (st.code != BKV_CODE_OK) {
		opaque_client_registration_state_wipe(&cs);
		return st;
	}
	if (resp.registration_ticket.len == 0 || resp.registration_ticket.len > sizeof(out->ticket))
		return bkvd_status_error(CLIENT_FAILED, "no registration ticket");
	memcpy(out->ticket, resp.registration_ticket.data, resp.registration_ticket.len);
	out->ticket_len = resp.registration_ticket.len;
	if (opaque_client_registration_finish(
	        &cfg, &cs, (const uint8_t *)password, strlen(password), NULL,
	        resp.registration_response.data, resp.registration_response.len, out->record,
	        sz->registration_record, export_key, sz->Nh) != OPAQUE_OK)
		return bkvd_status_error(CLIENT_FAILED, "client registration finish");
	sodium_memzero(export_key, sizeof(export_key));
	return st;
}

/* RegisterFinish as the client sends it. */
typedef struct finish_req {
	opaque_suite_id suite;
	const uint8_t *record;
	size_t record_len;
	const uint8_t *ticket;
	size_t ticket_len;
	uint64_t replaces;
	const uint8_t *wk;
	size_t wk_len;
	uint32_t limit;
} finish_req;

static bkvd_status send_register_finish(bkv_vault *v, bkv_account a, const finish_req *fr,
                                        Bkv__V1__RegisterFinishResponse *resp)
{
	Bkv__V1__RegisterFinishRequest req = BKV__V1__REGISTER_FINISH_REQUEST__INIT;
	req.suite = (Bkv__V1__Suite)fr->suite;
	req.registration_record.data = (uint8_t *)fr->record;
	req.registration_record.len = fr->record_len;
	req.wrapped_key.data = (uint8_t *)fr->wk;
	req.wrapped_key.len = fr->wk_len;
	req.attempt_limit = fr->limit;
	req.registration_ticket.data = (uint8_t *)fr->ticket;
	req.registration_ticket.len = fr->ticket_len;
	req.replaces_record_version = fr->replaces;
	return bkvd_register_finish(v, a, &req, resp);
}

/* The request for a finished RegisterStart, as an honest client sends it. */
static finish_req finish_req_of(const reg_start *rs, opaque_suite_id suite, uint64_t replaces,
                                const uint8_t *wk, size_t wk_len, uint32_t limit)
{
	return (finish_req){suite,      rs->record,     sizes_of(suite)->registration_record,
	                    rs->ticket, rs->ticket_len, replaces,
	                    wk,         wk_len,         limit};
}

/* RegisterStart then RegisterFinish, compare-and-set on `replaces` (0: create only). */
static bkvd_status client_register(bkv_vault *v, bkv_reply_buffers *buf, bkv_account a,
                                   opaque_suite_id suite, const char *password, uint64_t replaces,
                                   const uint8_t *wk, size_t wk_len, uint32_t limit,
                                   Bkv__V1__RegisterFinishResponse *resp)
{
	reg_start rs;
	bkvd_status st = client_make_record(v, buf, a, suite, password, &rs);
	if (st.code != BKV_CODE_OK) {
		bkv__v1__register_finish_response__init(resp);
		return st;
	}
	const finish_req fr = finish_req_of(&rs, suite, replaces, wk, wk_len, limit);
	return send_register_finish(v, a, &fr, resp);
}

/* One guess from the client's side of RecoverStart. */
typedef struct attempt {
	opaque_suite_id suite;
	const char *password;
	opaque_client_login_state cs;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	size_t ke2_len;
	uint8_t ticket[BKV_TICKET_MAX_BYTES];
	size_t ticket_len;
	uint32_t attempts_remaining;
	Bkv__V1__RecoverStartResponse resp; /* as returned (points into the reply buffers) */
} attempt;

static bkvd_status send_recover_start(bkv_vault *v, bkv_reply_buffers *buf, bkv_account a,
                                      Bkv__V1__Suite suite, const uint8_t *ke1, size_t ke1_len,
                                      Bkv__V1__RecoverStartResponse *resp)
{
	Bkv__V1__RecoverStartRequest req = BKV__V1__RECOVER_START_REQUEST__INIT;
	req.suite = suite;
	req.ke1.data = (uint8_t *)ke1;
	req.ke1.len = ke1_len;
	return bkvd_recover_start(v, a, &req, resp, buf);
}

/* KE1 for password, then RecoverStart; on success KE2 and the ticket are copied out. */
static bkvd_status client_recover_start(bkv_vault *v, bkv_reply_buffers *buf, bkv_account a,
                                        opaque_suite_id suite, const char *password, attempt *at)
{
	memset(at, 0, sizeof(*at));
	at->suite = suite;
	at->password = password;
	const opaque_config cfg = client_config(suite);
	const opaque_sizes *sz = sizes_of(suite);
	if (opaque_client_login_start(&cfg, (const uint8_t *)password, strlen(password), &at->cs,
	                              at->ke1, sz->ke1) != OPAQUE_OK)
		return bkvd_status_error(CLIENT_FAILED, "client login start");
	bkvd_status st =
	    send_recover_start(v, buf, a, (Bkv__V1__Suite)suite, at->ke1, sz->ke1, &at->resp);
	if (st.code == BKV_CODE_OK) {
		if (at->resp.ke2.len > sizeof(at->ke2) || at->resp.ticket.len > sizeof(at->ticket))
			return bkvd_status_error(CLIENT_FAILED, "oversized reply");
		memcpy(at->ke2, at->resp.ke2.data, at->resp.ke2.len);
		at->ke2_len = at->resp.ke2.len;
		memcpy(at->ticket, at->resp.ticket.data, at->resp.ticket.len);
		at->ticket_len = at->resp.ticket.len;
		at->attempts_remaining = at->resp.attempts_remaining;
	}
	return st;
}

/* The client's side of RecoverFinish. */
typedef struct finish {
	opaque_err client_err; /* the client's KE3 step: ENVELOPE_RECOVERY for a wrong password */
	bkvd_status st;
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
	size_t ke3_len;
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t sealed[BKV_SEALED_KEY_MAX_BYTES];
	size_t sealed_len;
	uint64_t record_version;
} finish;

static bkvd_status send_recover_finish(bkv_vault *v, bkv_reply_buffers *buf, bkv_account a,
                                       const uint8_t *ticket, size_t ticket_len, const uint8_t *ke3,
                                       size_t ke3_len, Bkv__V1__RecoverFinishResponse *resp)
{
	Bkv__V1__RecoverFinishRequest req = BKV__V1__RECOVER_FINISH_REQUEST__INIT;
	req.ticket.data = (uint8_t *)ticket;
	req.ticket.len = ticket_len;
	req.ke3.data = (uint8_t *)ke3;
	req.ke3.len = ke3_len;
	return bkvd_recover_finish(v, a, &req, resp, buf);
}

/* The client's KE3 (a random one of the right length if the client fails, i.e. a wrong
 * password, so that the guess can still be consumed). Wipes the login state. */
static void client_ke3(attempt *at, finish *out)
{
	memset(out, 0, sizeof(*out));
	const opaque_config cfg = client_config(at->suite);
	const opaque_sizes *sz = sizes_of(at->suite);
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	out->ke3_len = sz->ke3;
	out->client_err = opaque_client_login_finish(
	    &cfg, &at->cs, (const uint8_t *)at->password, strlen(at->password), NULL, at->ke2,
	    at->ke2_len, out->ke3, sz->ke3, out->session_key, sz->session_key, export_key,
	    sz->export_key);
	if (out->client_err != OPAQUE_OK)
		randombytes_buf(out->ke3, sz->ke3);
}

/* Sends KE3 with the attempt's ticket; on success copies the release out. */
static void send_ke3(bkv_vault *v, bkv_reply_buffers *buf, bkv_account a, const attempt *at,
                     finish *out)
{
	out->sealed_len = 0;
	out->record_version = 0;
	Bkv__V1__RecoverFinishResponse resp;
	out->st = send_recover_finish(v, buf, a, at->ticket, at->ticket_len, out->ke3, out->ke3_len,
	                              &resp);
	if (out->st.code == BKV_CODE_OK && resp.sealed_key.len <= sizeof(out->sealed)) {
		memcpy(out->sealed, resp.sealed_key.data, resp.sealed_key.len);
		out->sealed_len = resp.sealed_key.len;
		out->record_version = resp.record_version;
	}
}

static void client_recover_finish(bkv_vault *v, bkv_reply_buffers *buf, bkv_account a, attempt *at,
                                  finish *out)
{
	client_ke3(at, out);
	send_ke3(v, buf, a, at, out);
}

/* Opens sealed_key as the client: nonce (12) || AES-256-GCM ciphertext || tag (16), under
 * HKDF-Expand(session_key, "bkv-v1 release", 32), AAD "bkv-v1 release". */
static bool open_release(opaque_suite_id suite, const uint8_t *session_key, const uint8_t *sealed,
                         size_t sealed_len, uint8_t *out, size_t *out_len)
{
	if (sealed_len < 12 + 16)
		return false;
	uint8_t key[32];
	if (opaque_kdf_expand(suite, session_key, sizes_of(suite)->Nh,
	                      (const uint8_t *)RELEASE_INFO, sizeof(RELEASE_INFO) - 1, key,
	                      sizeof(key)) != OPAQUE_OK)
		return false;
	const size_t ct_len = sealed_len - 12 - 16;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, final_len = 0;
	bool ok =
	    ctx != NULL && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1 &&
	    EVP_DecryptInit_ex(ctx, NULL, NULL, key, sealed) == 1 &&
	    EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)RELEASE_INFO,
	                      (int)(sizeof(RELEASE_INFO) - 1)) == 1 &&
	    EVP_DecryptUpdate(ctx, out, &n, sealed + 12, (int)ct_len) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)(sealed + 12 + ct_len)) ==
	        1 &&
	    EVP_DecryptFinal_ex(ctx, out + n, &final_len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	sodium_memzero(key, sizeof(key));
	*out_len = ok ? ct_len : 0;
	return ok;
}

/* ------------------------------------------------------------------------------------ */
/* Asserting wrappers for the parent                                                     */
/* ------------------------------------------------------------------------------------ */

#define assert_code(st, expected)                                                                  \
	do {                                                                                       \
		bkvd_status st_ = (st);                                                            \
		if (st_.code != (expected))                                                        \
			print_error("status %s (%s), expected %s\n", bkv_code_name(st_.code),      \
			            st_.message ? st_.message : "", bkv_code_name(expected));      \
		assert_int_equal(st_.code, (expected));                                            \
	} while (0)

/* The account's record_version as GetStatus reports it (a tombstone's too), 0 if none. */
static uint64_t current_version(fx *f, const char *account)
{
	Bkv__V1__GetStatusResponse s;
	assert_code(bkvd_get_status(&f->v, account_of(account), &s), BKV_CODE_OK);
	return s.state == BKV__V1__RECORD_STATE__RECORD_STATE_ABSENT ? 0 : s.record_version;
}

/* Registers, replacing whatever the account holds (as `bkv register --replace` does): the
 * new record's version is the next of the account's own. */
static uint64_t must_register_wk(fx *f, const char *account, opaque_suite_id suite,
                                 const char *password, const uint8_t *wk, size_t wk_len,
                                 uint32_t limit)
{
	const uint64_t replaces = current_version(f, account);
	Bkv__V1__RegisterFinishResponse resp;
	assert_code(client_register(&f->v, &f->buf, account_of(account), suite, password, replaces,
	                            wk, wk_len, limit, &resp),
	            BKV_CODE_OK);
	assert_int_equal(resp.record_version, replaces + 1);
	assert_int_equal(resp.attempt_limit, limit ? limit : DEFAULT_LIMIT);
	return resp.record_version;
}

static uint64_t must_register(fx *f, const char *account, opaque_suite_id suite,
                              const char *password, uint32_t limit)
{
	return must_register_wk(f, account, suite, password, f->wk, sizeof(f->wk), limit);
}

static void must_start(fx *f, const char *account, opaque_suite_id suite, const char *password,
                       attempt *at)
{
	assert_code(client_recover_start(&f->v, &f->buf, account_of(account), suite, password, at),
	            BKV_CODE_OK);
	assert_int_equal(at->ke2_len, sizes_of(suite)->ke2);
	assert_true(at->ticket_len > 0);
}

/* A successful RecoverFinish released exactly wk, sealed for the client's session key. */
static void assert_release(const finish *fin, opaque_suite_id suite, const uint8_t *wk,
                           size_t wk_len, uint64_t record_version)
{
	assert_int_equal(fin->client_err, OPAQUE_OK);
	assert_code(fin->st, BKV_CODE_OK);
	assert_int_equal(fin->record_version, record_version);
	assert_int_equal(fin->sealed_len, 12 + wk_len + 16);
	uint8_t opened[BKV_SEALED_KEY_MAX_BYTES];
	size_t opened_len = 0;
	assert_true(open_release(suite, fin->session_key, fin->sealed, fin->sealed_len, opened,
	                         &opened_len));
	assert_int_equal(opened_len, wk_len);
	assert_memory_equal(opened, wk, wk_len);
}

/* Finishes with the right password and checks the released key is the registered one. */
static void must_recover(fx *f, const char *account, attempt *at, const uint8_t *wk, size_t wk_len,
                         uint64_t record_version)
{
	finish fin;
	client_recover_finish(&f->v, &f->buf, account_of(account), at, &fin);
	assert_release(&fin, at->suite, wk, wk_len, record_version);
}

/* A full recovery with the right password. */
static void must_recover_fully(fx *f, const char *account, opaque_suite_id suite,
                               const char *password, uint64_t record_version)
{
	attempt at;
	must_start(f, account, suite, password, &at);
	must_recover(f, account, &at, f->wk, sizeof(f->wk), record_version);
}

/* A wrong guess, finished with a random KE3: the vault's answer to RecoverFinish. */
static bkvd_status wrong_guess(fx *f, const char *account, opaque_suite_id suite,
                               uint32_t *start_remaining)
{
	attempt at;
	must_start(f, account, suite, WRONG_PASSWORD, &at);
	if (start_remaining != NULL)
		*start_remaining = at.attempts_remaining;
	finish fin;
	client_recover_finish(&f->v, &f->buf, account_of(account), &at, &fin);
	assert_int_equal(fin.client_err, OPAQUE_ERR_ENVELOPE_RECOVERY);
	return fin.st;
}

static Bkv__V1__GetStatusResponse status_of(fx *f, const char *account)
{
	Bkv__V1__GetStatusResponse resp;
	assert_code(bkvd_get_status(&f->v, account_of(account), &resp), BKV_CODE_OK);
	return resp;
}

/* The committed row, read through a connection of its own (not the vault's). */
static bkv_storage_err peek(fx *f, const char *account, bkv_record *out)
{
	bkv_storage *s = NULL;
	char why[256] = "";
	if (bkv_storage_open(f->url, &s, why, sizeof(why)) != BKV_STORAGE_OK) {
		print_error("peek: %s\n", why);
		return BKV_STORAGE_UNAVAILABLE;
	}
	bkv_storage_err err = bkv_storage_get(s, (const uint8_t *)account, strlen(account), out);
	bkv_storage_close(s);
	return err;
}

static bkv_record must_peek(fx *f, const char *account)
{
	bkv_record r;
	assert_int_equal(peek(f, account, &r), BKV_STORAGE_OK);
	return r;
}

static void assert_no_record(fx *f, const char *account)
{
	bkv_record r;
	assert_int_equal(peek(f, account, &r), BKV_STORAGE_NOT_FOUND);
}

static void assert_same_row(const bkv_record *a, const bkv_record *b)
{
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->registration_id_len, b->registration_id_len);
	assert_memory_equal(a->registration_id, b->registration_id, a->registration_id_len);
	assert_int_equal(a->destroyed_at, b->destroyed_at);
	assert_int_equal(a->mac_len, b->mac_len);
	assert_memory_equal(a->mac, b->mac, a->mac_len);
	assert_int_equal(a->suite, b->suite);
	assert_int_equal(a->record_version, b->record_version);
	assert_int_equal(a->attempts_used, b->attempts_used);
	assert_int_equal(a->attempt_limit, b->attempt_limit);
	assert_int_equal(a->guess_seq, b->guess_seq);
	assert_int_equal(a->last_finished_seq, b->last_finished_seq);
	assert_int_equal(a->seal_key_version, b->seal_key_version);
	assert_int_equal(a->sealed_len, b->sealed_len);
	assert_memory_equal(a->sealed, b->sealed, a->sealed_len);
	assert_int_equal(a->registered_at, b->registered_at);
	assert_int_equal(a->updated_at, b->updated_at);
}

static void assert_attempt_info(bkvd_status st, uint32_t remaining, uint32_t limit)
{
	if (!st.has_attempt_info)
		print_error("%s (%s) carries no AttemptInfo\n", bkv_code_name(st.code), st.message);
	assert_true(st.has_attempt_info);
	assert_int_equal(st.attempts_remaining, remaining);
	assert_int_equal(st.attempt_limit, limit);
}

/* The account's record is a tombstone: GetStatus says destroyed (since destroyed_since or
 * later), with every attempt used; the row keeps its version and MAC but no key material. */
static void assert_tombstone(fx *f, const char *account, uint64_t version, uint32_t limit,
                             int64_t destroyed_since)
{
	const Bkv__V1__GetStatusResponse s = status_of(f, account);
	assert_false(s.registered);
	assert_int_equal(s.state, BKV__V1__RECORD_STATE__RECORD_STATE_DESTROYED);
	assert_int_equal(s.record_version, version);
	assert_int_equal(s.attempts_used, limit);
	assert_int_equal(s.attempt_limit, limit);
	assert_true(s.destroyed_at_unix >= destroyed_since);
	assert_true(s.destroyed_at_unix <= (int64_t)time(NULL));
	const bkv_record r = must_peek(f, account);
	assert_int_equal(r.state, BKV_RECORD_DESTROYED);
	assert_int_equal(r.record_version, version);
	assert_int_equal(r.sealed_len, 0);
	assert_int_equal(r.seal_key_version, 0);
	assert_int_equal(r.destroyed_at, s.destroyed_at_unix);
	assert_int_equal(r.mac_len, BKV_TOKEN_STATE_MAC_BYTES);
}

/* RecoverStart on a tombstone, three times: FAILED_PRECONDITION with AttemptInfo{0, limit}
 * every time, no KE2 computed, nothing committed, the row untouched. */
static void assert_destroyed_on_start(fx *f, const char *account, opaque_suite_id suite,
                                      uint32_t limit)
{
	const bkv_record before = must_peek(f, account);
	const unsigned logins = g_login_start_calls, commits = g_commit_calls;
	for (int i = 0; i < 3; i++) {
		attempt at;
		const bkvd_status st =
		    client_recover_start(&f->v, &f->buf, account_of(account), suite,
		                         i == 1 ? WRONG_PASSWORD : PASSWORD, &at);
		assert_code(st, BKV_CODE_FAILED_PRECONDITION);
		assert_attempt_info(st, 0, limit);
		assert_int_equal(at.resp.ke2.len, 0);
		assert_int_equal(at.resp.ticket.len, 0);
	}
	assert_int_equal(g_login_start_calls, logins);
	assert_int_equal(g_commit_calls, commits);
	const bkv_record after = must_peek(f, account);
	assert_same_row(&before, &after);
}

/* ---- Invalid group elements, found independently of the code under test ---- */

static void identity_element(opaque_suite_id suite, uint8_t *out)
{
	/* P-256: all zeros (opaque.h); ristretto255: the all-zero encoding. */
	memset(out, 0, sizes_of(suite)->Noe);
}

/* An element encoding that is canonical in form but is no point of the group. */
static void off_curve_element(opaque_suite_id suite, uint8_t *out)
{
	if (suite == P256) {
		EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
		EC_POINT *p = EC_POINT_new(g);
		assert_non_null(p);
		bool found = false;
		for (uint8_t x = 1; x != 0 && !found; x++) {
			memset(out, 0, 33);
			out[0] = 0x02;
			out[32] = x;
			found = EC_POINT_oct2point(g, p, out, 33, NULL) != 1;
		}
		EC_POINT_free(p);
		EC_GROUP_free(g);
		assert_true(found);
	} else {
		bool found = false;
		for (uint8_t s = 2; s != 0 && !found; s = (uint8_t)(s + 2)) {
			memset(out, 0, 32);
			out[0] = s; /* small and even: a canonical field element */
			found = crypto_core_ristretto255_is_valid_point(out) == 0;
		}
		assert_true(found);
	}
}

/* ---- The audit log ---- */

typedef struct audit_event {
	char event[32];
	char account[40];
	char extra_key[32]; /* "" if none */
	uint64_t extra;
	char reason[160]; /* "" if none */
	int64_t ts;
} audit_event;

/* hex(BLAKE2b-128 keyed with log_key) of the account id, computed here with libsodium. */
static void expected_hash(const char *account, char out[33])
{
	uint8_t digest[16];
	crypto_generichash(digest, sizeof(digest), (const uint8_t *)account, strlen(account),
	                   LOG_KEY, sizeof(LOG_KEY));
	sodium_bin2hex(out, 33, digest, sizeof(digest));
}

/* Every line of the audit file, each of which must be a JSON object holding ts, event,
 * account and at most one more member: an integer, or "reason" (a string). The raw text
 * goes to raw (NUL-terminated). */
static size_t read_audit(fx *f, audit_event *out, size_t max, char *raw, size_t raw_cap)
{
	assert_int_equal(fflush(f->audit), 0);
	FILE *in = fopen(f->audit_path, "r");
	assert_non_null(in);
	const size_t raw_len = fread(raw, 1, raw_cap - 1, in);
	assert_true(feof(in));
	fclose(in);
	raw[raw_len] = '\0';
	size_t n = 0;
	char *copy = strdup(raw);
	assert_non_null(copy);
	char *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		assert_true(n < max);
		json_error_t jerr;
		json_t *j = json_loads(line, 0, &jerr);
		if (j == NULL)
			fail_msg("audit line is not JSON: %s (%s)", line, jerr.text);
		assert_true(json_is_object(j));
		audit_event *e = &out[n++];
		memset(e, 0, sizeof(*e));
		const char *key;
		json_t *val;
		size_t members = 0;
		json_object_foreach(j, key, val)
		{
			members++;
			if (strcmp(key, "ts") == 0) {
				assert_true(json_is_integer(val));
				e->ts = (int64_t)json_integer_value(val);
			} else if (strcmp(key, "event") == 0) {
				assert_true(json_is_string(val));
				snprintf(e->event, sizeof(e->event), "%s", json_string_value(val));
			} else if (strcmp(key, "account") == 0) {
				assert_true(json_is_string(val));
				snprintf(e->account, sizeof(e->account), "%s",
				         json_string_value(val));
			} else if (strcmp(key, "reason") == 0) {
				assert_true(json_is_string(val));
				assert_true(json_string_length(val) > 0);
				snprintf(e->reason, sizeof(e->reason), "%s",
				         json_string_value(val));
			} else {
				assert_true(json_is_integer(val));
				assert_true(e->extra_key[0] == '\0');
				snprintf(e->extra_key, sizeof(e->extra_key), "%s", key);
				e->extra = (uint64_t)json_integer_value(val);
			}
		}
		assert_true(e->event[0] != '\0');
		assert_int_equal(strlen(e->account), 32);
		assert_true(e->ts > 1600000000);
		assert_true(members == 3 || members == 4);
		json_decref(j);
	}
	free(copy);
	return n;
}

static size_t count_events(const audit_event *ev, size_t n, const char *event, const char *account)
{
	char hash[33];
	expected_hash(account, hash);
	size_t count = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(ev[i].event, event) == 0 && strcmp(ev[i].account, hash) == 0)
			count++;
	return count;
}

static void assert_event(const audit_event *e, const char *event, const char *account,
                         const char *extra_key, uint64_t extra)
{
	char hash[33];
	expected_hash(account, hash);
	assert_string_equal(e->event, event);
	assert_string_equal(e->account, hash);
	assert_string_equal(e->extra_key, extra_key != NULL ? extra_key : "");
	if (extra_key != NULL)
		assert_int_equal(e->extra, extra);
}

static void assert_raw_account_absent(const char *raw, const char *account)
{
	assert_null(strstr(raw, account));
	/* nor without the leading '+', nor as hex */
	assert_null(strstr(raw, account + 1));
	char hex[2 * 64 + 1];
	sodium_bin2hex(hex, sizeof(hex), (const uint8_t *)account, strlen(account));
	assert_null(strstr(raw, hex));
}

/* ---- Worker processes ---- */

/* Runs in a forked child with a vault of its own: its own token session and storage
 * connection, the test's settings and the shared (append-mode) audit file. Returns the
 * child's exit status. No cmocka asserts in here. */
typedef int (*worker_fn)(bkv_vault *v, bkv_reply_buffers *buf, int report_fd, void *arg);

typedef struct worker {
	worker_fn fn;
	void *arg;
	int report_fd; /* the child writes its results here */
	int ready_fd;  /* the child writes one byte here once set up, or -1 */
	int go_fd;     /* the child waits for EOF on this before running, or -1 */
	int close_fds[4];
} worker;

#define WORKER_SETUP_FAILED 90
#define WORKER_TIMEOUT      91

static pid_t spawn_worker(fx *f, const worker *w)
{
	const uint32_t member = f->next_member++ % GROUP_MEMBERS;
	fflush(NULL);
	const pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid > 0)
		return pid;
	/* The child: never returns into cmocka, and crashes show as signals (cmocka's
	 * handlers would otherwise catch them). */
	const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT};
	for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
		signal(crash_signals[i], SIG_DFL);
	alarm(CHILD_DEADLINE_MS / 1000 + 10);
	for (size_t i = 0; i < sizeof(w->close_fds) / sizeof(w->close_fds[0]); i++)
		if (w->close_fds[i] >= 0)
			close(w->close_fds[i]);
	bkv_vault v;
	memset(&v, 0, sizeof(v));
	FILE *audit = fdopen(dup(fileno(f->audit)), "a");
	settings_init(&v.settings, audit, f->v.settings.ticket_lifetime_s);
	char why[512] = "";
	v.token = token_open_loaded(why, sizeof(why));
	if (audit == NULL || v.token == NULL ||
	    bkv_storage_open(f->url, &v.storage, why, sizeof(why)) != BKV_STORAGE_OK ||
	    (f->group != NULL &&
	     bkv_storage_join_group(v.storage, f->group, member) != BKV_STORAGE_OK)) {
		fprintf(stderr, "worker %d: setup failed: %s\n", (int)getpid(), why);
		_exit(WORKER_SETUP_FAILED);
	}
	bkv_reply_buffers *buf = calloc(1, sizeof(*buf));
	if (buf == NULL)
		_exit(WORKER_SETUP_FAILED);
	const uint8_t one = 1;
	if (w->ready_fd >= 0 && write(w->ready_fd, &one, 1) != 1)
		_exit(WORKER_SETUP_FAILED);
	if (w->go_fd >= 0) {
		uint8_t b;
		while (read(w->go_fd, &b, 1) < 0 && errno == EINTR)
			;
	}
	const int rc = w->fn(&v, buf, w->report_fd, w->arg);
	fflush(audit);
	_exit(rc);
}

/* Reaps the children, killing any that outlive the deadline (and then failing). */
static void reap_all(const pid_t *pids, int *statuses, size_t n, int64_t deadline)
{
	size_t left = n;
	bool done[64] = {false};
	assert_true(n <= 64);
	while (left > 0) {
		for (size_t i = 0; i < n; i++) {
			if (done[i])
				continue;
			const pid_t r = waitpid(pids[i], &statuses[i], WNOHANG);
			assert_true(r >= 0);
			if (r == pids[i]) {
				done[i] = true;
				left--;
			}
		}
		if (left > 0 && now_ms() > deadline) {
			for (size_t i = 0; i < n; i++) {
				if (!done[i]) {
					kill(pids[i], SIGKILL);
					waitpid(pids[i], &statuses[i], 0);
				}
			}
			fail_msg("%zu worker(s) did not finish in time", left);
		}
		if (left > 0)
			sleep_ms(5);
	}
}

/* Reads exactly len bytes, waiting at most until deadline. */
static bool read_exactly(int fd, void *out, size_t len, int64_t deadline)
{
	uint8_t *p = out;
	size_t got = 0;
	const int flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	while (got < len) {
		const ssize_t r = read(fd, p + got, len - got);
		if (r > 0) {
			got += (size_t)r;
		} else if (r == 0) {
			break; /* EOF */
		} else if (errno == EAGAIN || errno == EINTR) {
			if (now_ms() > deadline)
				break;
			sleep_ms(1);
		} else {
			break;
		}
	}
	fcntl(fd, F_SETFL, flags);
	return got == len;
}

/* Waits for a worker's ready byte; false at the deadline or as soon as the worker has died
 * (it is left to be reaped). */
static bool wait_ready(int fd, pid_t pid, int64_t deadline)
{
	for (;;) {
		uint8_t b;
		if (read_exactly(fd, &b, 1, now_ms() + 10))
			return true;
		siginfo_t info;
		memset(&info, 0, sizeof(info));
		if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
		    info.si_pid != 0 || now_ms() > deadline)
			return false;
	}
}

static void reattach(fx *f)
{
	char why[512] = "";
	if (!vault_attach(f, why, sizeof(why)))
		fail_msg("cannot reopen the vault: %s", why);
}

static void assert_exited_cleanly(int status, const char *who)
{
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFSIGNALED(status))
			print_error("%s: killed by signal %d\n", who, WTERMSIG(status));
		else
			print_error("%s: exit status %d\n", who, WEXITSTATUS(status));
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* PostgreSQL has no file of ours to check (and no amcheck here). What a killed worker could
 * leave behind is a transaction still open (holding row locks) or a half-applied change:
 * so no other client session may still be inside a transaction once the server has seen
 * the connection close, every row must satisfy the counters' invariants, and every row
 * must read back through the backend, the same as by a direct read. */
static bool pg_integrity_ok(fx *f)
{
	PGconn *c = pg_raw_connect();
	if (c == NULL)
		return false;
	bool ok = false;
	bkv_storage *s = NULL;
	const int64_t deadline = now_ms() + 10000;
	for (;;) {
		const int64_t open_xacts = pg_count(
		    c, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
		       "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
		       "AND xact_start IS NOT NULL");
		if (open_xacts == 0)
			break;
		if (open_xacts < 0 || now_ms() > deadline) {
			print_error("integrity: %lld other session(s) still in a transaction\n",
			            (long long)open_xacts);
			goto out;
		}
		sleep_ms(10);
	}
	const int64_t bad = pg_count(
	    c, "SELECT count(*) FROM records WHERE NOT (record_version > 0 "
	       "AND attempt_limit > 0 AND attempts_used >= 0 AND attempts_used <= attempt_limit "
	       "AND last_finished_seq >= 0 AND last_finished_seq <= guess_seq "
	       "AND octet_length(account_id) > 0 AND octet_length(mac) = 32 "
	       "AND octet_length(registration_id) IN (0, 16) "
	       "AND ((state = 1 AND octet_length(sealed) > 0 AND seal_key_version > 0 "
	       "      AND destroyed_at = 0) "
	       "  OR (state = 2 AND octet_length(sealed) = 0 AND seal_key_version = 0 "
	       "      AND destroyed_at > 0)))");
	/* The sealed ones (tombstones seal nothing, so no listing of sealed rows shows them). */
	const int64_t rows = pg_count(c, "SELECT count(*) FROM records WHERE seal_key_version > 0");
	if (bad != 0 || rows < 0) {
		print_error("integrity: %lld row(s) break the invariants\n", (long long)bad);
		goto out;
	}
	char why[256] = "";
	if (bkv_storage_open(f->url, &s, why, sizeof(why)) != BKV_STORAGE_OK) {
		print_error("integrity: %s\n", why);
		goto out;
	}
	/* Every row, in account order, through the backend's own decoding. */
	static bkv_record page[16];
	uint8_t after[BKV_STORAGE_ACCOUNT_MAX];
	size_t after_len = 0;
	int64_t seen = 0;
	for (;;) {
		size_t n = 0;
		if (bkv_storage_list_sealed_below(s, UINT32_MAX, after_len > 0 ? after : NULL,
		                                  after_len, page, 16, &n) != BKV_STORAGE_OK)
			goto out;
		for (size_t i = 0; i < n; i++) {
			bkv_record r;
			if (bkv_storage_get(s, page[i].account_id, page[i].account_id_len, &r) !=
			        BKV_STORAGE_OK ||
			    r.record_version != page[i].record_version ||
			    r.attempts_used != page[i].attempts_used ||
			    r.guess_seq != page[i].guess_seq ||
			    r.sealed_len != page[i].sealed_len ||
			    memcmp(r.sealed, page[i].sealed, r.sealed_len) != 0) {
				print_error("integrity: a row does not read back the same\n");
				goto out;
			}
		}
		seen += (int64_t)n;
		if (n < 16)
			break;
		after_len = page[n - 1].account_id_len;
		memcpy(after, page[n - 1].account_id, after_len);
	}
	ok = seen == rows;
	if (!ok)
		print_error("integrity: %lld rows, %lld read back\n", (long long)rows,
		            (long long)seen);
out:
	bkv_storage_close(s);
	PQfinish(c);
	return ok;
}

#define MAX_ACCOUNTS 16

/* Every account id in the records table, read with SQL of its own. */
static size_t db_accounts(fx *f, uint8_t ids[MAX_ACCOUNTS][BKV_STORAGE_ACCOUNT_MAX],
                          size_t lens[MAX_ACCOUNTS])
{
	size_t n = 0;
	if (on_pg) {
		PGconn *c = pg_raw_connect();
		assert_non_null(c);
		PGresult *res = PQexec(c, "SELECT encode(account_id, 'hex') FROM records");
		assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
		assert_true(PQntuples(res) <= MAX_ACCOUNTS);
		for (int i = 0; i < PQntuples(res); i++, n++)
			assert_int_equal(
			    sodium_hex2bin(ids[n], BKV_STORAGE_ACCOUNT_MAX, PQgetvalue(res, i, 0),
			                   (size_t)PQgetlength(res, i, 0), NULL, &lens[n], NULL),
			    0);
		PQclear(res);
		PQfinish(c);
		return n;
	}
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT account_id FROM records", -1, &st, NULL),
	                 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		assert_true(n < MAX_ACCOUNTS);
		const int len = sqlite3_column_bytes(st, 0);
		assert_true(len > 0 && len <= BKV_STORAGE_ACCOUNT_MAX);
		memcpy(ids[n], sqlite3_column_blob(st, 0), (size_t)len);
		lens[n++] = (size_t)len;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* Every row is one the token vouches for: the vault reads each without DATA_LOSS. */
static bool all_rows_verify(fx *f)
{
	static uint8_t ids[MAX_ACCOUNTS][BKV_STORAGE_ACCOUNT_MAX];
	size_t lens[MAX_ACCOUNTS];
	const size_t n = db_accounts(f, ids, lens);
	const unsigned refused = f->refused;
	for (size_t i = 0; i < n; i++) {
		bkv_record r;
		const bkvd_status st = bkv_load_record(&f->v, (bkv_account){ids[i], lens[i]}, &r);
		if (st.code != BKV_CODE_OK) {
			print_error("integrity: a row reads as %s (%s)\n", bkv_code_name(st.code),
			            st.message);
			return false;
		}
	}
	return f->refused == refused;
}

static bool db_integrity_ok(fx *f)
{
	if (on_pg)
		return pg_integrity_ok(f) && all_rows_verify(f);
	sqlite3 *db = NULL;
	bool ok = false;
	if (sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW)
			ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return ok && all_rows_verify(f);
}

/* ------------------------------------------------------------------------------------ */
/* Registration, recovery, status and configuration                                     */
/* ------------------------------------------------------------------------------------ */

static void register_then_recover_releases_the_wrapped_key(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	attempt at;
	must_start(f, ALICE, f->suite, PASSWORD, &at);
	assert_int_equal(at.attempts_remaining, DEFAULT_LIMIT - 1);
	must_recover(f, ALICE, &at, f->wk, sizeof(f->wk), version);
}

static void wrapped_keys_of_1_and_256_bytes_round_trip(void **state)
{
	fx *f = *state;
	const size_t lens[] = {1, BKV_WRAPPED_KEY_MAX};
	for (size_t i = 0; i < 2; i++) {
		uint8_t wk[BKV_WRAPPED_KEY_MAX];
		wrapped_key_pattern(wk, lens[i], (uint8_t)(0x10 + i));
		const uint64_t version =
		    must_register_wk(f, ALICE, f->suite, PASSWORD, wk, lens[i], 0);
		attempt at;
		must_start(f, ALICE, f->suite, PASSWORD, &at);
		must_recover(f, ALICE, &at, wk, lens[i], version);
	}
}

static void get_status_reports_the_registration(void **state)
{
	fx *f = *state;
	const int64_t before = (int64_t)time(NULL);
	Bkv__V1__RegisterFinishResponse rr;
	assert_code(client_register(&f->v, &f->buf, account_of(ALICE), f->suite, PASSWORD, 0, f->wk,
	                            sizeof(f->wk), 7, &rr),
	            BKV_CODE_OK);
	const int64_t after = (int64_t)time(NULL);
	assert_int_equal(rr.attempt_limit, 7);
	assert_int_equal(rr.record_version, 1); /* the account's first */
	assert_code(wrong_guess(f, ALICE, f->suite, NULL), BKV_CODE_PERMISSION_DENIED);
	assert_code(wrong_guess(f, ALICE, f->suite, NULL), BKV_CODE_PERMISSION_DENIED);

	Bkv__V1__GetStatusResponse s = status_of(f, ALICE);
	assert_true(s.registered);
	assert_int_equal(s.state, BKV__V1__RECORD_STATE__RECORD_STATE_REGISTERED);
	assert_int_equal(s.destroyed_at_unix, 0);
	assert_int_equal(s.suite, (Bkv__V1__Suite)f->suite);
	assert_int_equal(s.attempts_used, 2);
	assert_int_equal(s.attempt_limit, 7);
	assert_int_equal(s.record_version, rr.record_version);
	assert_true(s.registered_at_unix >= before && s.registered_at_unix <= after);
}

static void get_status_of_an_unregistered_account_reports_not_registered(void **state)
{
	fx *f = *state;
	Bkv__V1__GetStatusResponse s = status_of(f, ALICE);
	assert_false(s.registered);
	assert_int_equal(s.state, BKV__V1__RECORD_STATE__RECORD_STATE_ABSENT);
	assert_int_equal(s.attempts_used, 0);
	assert_int_equal(s.attempt_limit, 0);
	assert_int_equal(s.record_version, 0);
	assert_int_equal(s.destroyed_at_unix, 0);
}

static void get_config_publishes_suites_context_server_keys_limits_and_ksf(void **state)
{
	fx *f = *state;
	Bkv__V1__GetConfigResponse resp;
	assert_code(bkvd_get_config(&f->v, &resp, &f->buf), BKV_CODE_OK);
	assert_int_equal(resp.n_suites, 2);
	assert_int_equal(resp.suites[0], BKV__V1__SUITE__SUITE_P256_SHA256);
	assert_int_equal(resp.suites[1], BKV__V1__SUITE__SUITE_RISTRETTO255_SHA512);
	assert_int_equal(resp.context.len, strlen(CONTEXT));
	assert_memory_equal(resp.context.data, CONTEXT, strlen(CONTEXT));
	assert_int_equal(resp.default_attempt_limit, DEFAULT_LIMIT);
	assert_int_equal(resp.max_attempt_limit, MAX_LIMIT);
	assert_non_null(resp.ksf);
	assert_string_equal(resp.ksf->algorithm, "argon2id");
	assert_int_equal(resp.ksf->iterations, 3);
	assert_int_equal(resp.ksf->memory_kib, 65536);
	assert_int_equal(resp.ksf->parallelism, 4);
	assert_int_equal(resp.n_server_keys, 2);
	for (size_t i = 0; i < 2; i++) {
		const opaque_suite_id suite = both_suites[i];
		const size_t npk = sizes_of(suite)->Npk;
		const Bkv__V1__ServerKey *k = resp.server_keys[i];
		assert_int_equal(k->suite, (Bkv__V1__Suite)suite);
		assert_int_equal(k->public_key.len, npk);
		const opaque_server_keys *keys = bkv_token_server_keys(f->v.token, suite);
		assert_non_null(keys);
		assert_memory_equal(k->public_key.data, keys->server_public_key, npk);
		/* ...and it is the key a registering client receives (RFC 9807:
		 * RegistrationResponse = evaluated_message || server_public_key). */
		const opaque_config cfg = client_config(suite);
		opaque_client_registration_state cs;
		uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
		assert_int_equal(opaque_client_registration_start(
		                     &cfg, (const uint8_t *)PASSWORD, strlen(PASSWORD), &cs,
		                     request, sizes_of(suite)->registration_request),
		                 OPAQUE_OK);
		opaque_client_registration_state_wipe(&cs);
		Bkv__V1__RegisterStartRequest rq = BKV__V1__REGISTER_START_REQUEST__INIT;
		Bkv__V1__RegisterStartResponse rs;
		bkv_reply_buffers rbuf;
		rq.suite = (Bkv__V1__Suite)suite;
		rq.registration_request.data = request;
		rq.registration_request.len = sizes_of(suite)->registration_request;
		assert_code(bkvd_register_start(&f->v, account_of(ALICE), &rq, &rs, &rbuf),
		            BKV_CODE_OK);
		assert_memory_equal(rs.registration_response.data + sizes_of(suite)->Noe,
		                    k->public_key.data, npk);
	}
	/* The response encodes and decodes as the contract says. */
	const size_t len = bkv__v1__get_config_response__get_packed_size(&resp);
	uint8_t *wire = malloc(len);
	assert_non_null(wire);
	assert_int_equal(bkv__v1__get_config_response__pack(&resp, wire), len);
	Bkv__V1__GetConfigResponse *back = bkv__v1__get_config_response__unpack(NULL, len, wire);
	assert_non_null(back);
	assert_int_equal(back->n_server_keys, 2);
	assert_memory_equal(back->server_keys[1]->public_key.data,
	                    resp.server_keys[1]->public_key.data,
	                    resp.server_keys[1]->public_key.len);
	assert_string_equal(back->ksf->algorithm, "argon2id");
	bkv__v1__get_config_response__free_unpacked(back, NULL);
	free(wire);
}

/* ------------------------------------------------------------------------------------ */
/* The attempt limit                                                                     */
/* ------------------------------------------------------------------------------------ */

static void wrong_passwords_count_attempts_remaining_down(void **state)
{
	fx *f = *state;
	must_register(f, ALICE, f->suite, PASSWORD, 0);
	for (uint32_t used = 1; used < DEFAULT_LIMIT; used++) {
		uint32_t remaining = 99;
		bkvd_status st = wrong_guess(f, ALICE, f->suite, &remaining);
		assert_int_equal(remaining, DEFAULT_LIMIT - used);
		assert_code(st, BKV_CODE_PERMISSION_DENIED);
		assert_attempt_info(st, DEFAULT_LIMIT - used, DEFAULT_LIMIT);
		assert_int_equal(status_of(f, ALICE).attempts_used, used);
	}
	assert_true(status_of(f, ALICE).registered);
}

static void tenth_wrong_password_destroys_the_record(void **state)
{
	fx *f = *state;
	must_register(f, ALICE, f->suite, PASSWORD, 0);
	const int64_t t0 = (int64_t)time(NULL);
	for (uint32_t used = 1; used < DEFAULT_LIMIT; used++)
		assert_code(wrong_guess(f, ALICE, f->suite, NULL), BKV_CODE_PERMISSION_DENIED);
	uint32_t remaining = 99;
	bkvd_status st = wrong_guess(f, ALICE, f->suite, &remaining);
	assert_int_equal(remaining, 0);
	assert_code(st, BKV_CODE_PERMISSION_DENIED);
	assert_attempt_info(st, 0, DEFAULT_LIMIT);

	/* The key material is gone in the same commit; a tombstone says so from now on. */
	assert_tombstone(f, ALICE, 1, DEFAULT_LIMIT, t0);
	assert_destroyed_on_start(f, ALICE, f->suite, DEFAULT_LIMIT);
}

static void
eleventh_recover_start_without_finishing_destroys_the_record_without_computing_ke2(void **state)
{
	fx *f = *state;
	must_register(f, ALICE, f->suite, PASSWORD, 0);
	attempt last;
	for (uint32_t used = 1; used <= DEFAULT_LIMIT; used++) {
		must_start(f, ALICE, f->suite, PASSWORD, &last);
		assert_int_equal(last.attempts_remaining, DEFAULT_LIMIT - used);
	}
	const unsigned logins = g_login_start_calls, commits = g_commit_calls;
	const int64_t t0 = (int64_t)time(NULL);
	attempt at;
	bkvd_status st =
	    client_recover_start(&f->v, &f->buf, account_of(ALICE), f->suite, PASSWORD, &at);
	assert_code(st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(st, 0, DEFAULT_LIMIT);
	assert_int_equal(at.resp.ke2.len, 0);
	assert_null(at.resp.ke2.data);
	assert_int_equal(at.resp.ticket.len, 0);
	assert_int_equal(g_login_start_calls, logins); /* no KE2 was computed */
	assert_int_equal(g_commit_calls, commits + 1); /* one commit: the tombstone */

	assert_tombstone(f, ALICE, 1, DEFAULT_LIMIT, t0);
	assert_destroyed_on_start(f, ALICE, f->suite, DEFAULT_LIMIT);
	/* The tenth guess, with the right password, can no longer be finished. */
	const bkv_record tomb = must_peek(f, ALICE);
	finish fin;
	client_recover_finish(&f->v, &f->buf, account_of(ALICE), &last, &fin);
	assert_int_equal(fin.client_err, OPAQUE_OK);
	assert_code(fin.st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(fin.st, 0, DEFAULT_LIMIT);
	assert_int_equal(fin.sealed_len, 0);
	const bkv_record after = must_peek(f, ALICE);
	assert_same_row(&tomb, &after);
}

static void success_resets_attempts_used_to_zero(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	for (int i = 0; i < 3; i++)
		assert_code(wrong_guess(f, ALICE, f->suite, NULL), BKV_CODE_PERMISSION_DENIED);
	assert_int_equal(status_of(f, ALICE).attempts_used, 3);
	attempt at;
	must_start(f, ALICE, f->suite, PASSWORD, &at);
	assert_int_equal(at.attempts_remaining, DEFAULT_LIMIT - 4);
	must_recover(f, ALICE, &at, f->wk, sizeof(f->wk), version);
	assert_int_equal(status_of(f, ALICE).attempts_used, 0);
	assert_int_equal(must_peek(f, ALICE).attempts_used, 0);
	must_start(f, ALICE, f->suite, WRONG_PASSWORD, &at);
	assert_int_equal(at.attempts_remaining, DEFAULT_LIMIT - 1);
}

static void recover_start_commits_attempt_before_ke2(void **state)
{
	fx *f = *state;
	must_register(f, ALICE, P256, PASSWORD, 0);
	const bkv_record before = must_peek(f, ALICE);
	attempt at;
	must_start(f, ALICE, P256, WRONG_PASSWORD, &at);
	/* Read through a connection of its own: the attempt is committed, not pending. */
	const bkv_record after = must_peek(f, ALICE);
	assert_int_equal(after.attempts_used, before.attempts_used + 1);
	assert_int_equal(after.guess_seq, before.guess_seq + 1);
	assert_int_equal(after.last_finished_seq, before.last_finished_seq);
	assert_int_equal(at.attempts_remaining, after.attempt_limit - after.attempts_used);
}

static void assert_start_failed_without_ke2(fx *f, const attempt *at, const bkv_record *before,
                                            unsigned logins, unsigned commits)
{
	assert_int_equal(g_login_start_calls, logins + 1); /* KE2 was computed... */
	assert_int_equal(g_commit_calls, commits + 1);     /* ...the commit failed... */
	assert_int_equal(at->resp.ke2.len, 0);             /* ...and nothing was sent */
	assert_null(at->resp.ke2.data);
	assert_int_equal(at->resp.ticket.len, 0);
	assert_null(at->resp.ticket.data);
	assert_true(is_zero(f->buf.ke2, sizeof(f->buf.ke2)));
	assert_true(is_zero(f->buf.ticket, sizeof(f->buf.ticket)));
	/* No attempt was consumed. */
	const bkv_record after = must_peek(f, ALICE);
	assert_same_row(before, &after);
	attempt next;
	must_start(f, ALICE, P256, PASSWORD, &next);
	assert_int_equal(next.attempts_remaining, DEFAULT_LIMIT - 1);
}

/* PostgreSQL: the server writes, not this process, so no RLIMIT_FSIZE can make its commit
 * fail. A trigger added through a second connection does: at the UPDATE of attempts_used
 * (at_commit false), or deferred to the COMMIT itself (at_commit true). The read of the row
 * and every token operation succeed; only the attempt's commit fails. */
static void pg_recover_start_with_a_commit_that_fails(fx *f, bool at_commit)
{
	must_register(f, ALICE, P256, PASSWORD, 0);
	const bkv_record before = must_peek(f, ALICE);
	const unsigned logins = g_login_start_calls, commits = g_commit_calls;

	pg_exec(at_commit ? "CREATE OR REPLACE FUNCTION bkv_test_fail() RETURNS trigger "
	                    "LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'injected failure'; "
	                    "END$$;"
	                    "CREATE CONSTRAINT TRIGGER inject AFTER UPDATE OF attempts_used "
	                    "ON records DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
	                    "EXECUTE FUNCTION bkv_test_fail()"
	                  : "CREATE OR REPLACE FUNCTION bkv_test_fail() RETURNS trigger "
	                    "LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'injected failure'; "
	                    "END$$;"
	                    "CREATE TRIGGER inject BEFORE UPDATE OF attempts_used ON records "
	                    "FOR EACH ROW EXECUTE FUNCTION bkv_test_fail()");
	attempt at;
	const bkvd_status st =
	    client_recover_start(&f->v, &f->buf, account_of(ALICE), P256, PASSWORD, &at);
	pg_exec("DROP TRIGGER inject ON records");

	print_message("commit failing %s: %s\n", at_commit ? "at COMMIT" : "at the UPDATE",
	              bkv_code_name(st.code));
	assert_code(st, BKV_CODE_UNAVAILABLE);
	assert_false(st.has_attempt_info);
	assert_start_failed_without_ke2(f, &at, &before, logins, commits);
}

/* A real write failure at the commit point: the process may not grow any file, so the
 * read of the row and every token operation succeed and only the WAL append fails. */
static void recover_start_returns_no_ke2_when_the_commit_cannot_be_written(void **state)
{
	fx *f = *state;
	if (on_pg) {
		pg_recover_start_with_a_commit_that_fails(f, false);
		pg_recover_start_with_a_commit_that_fails(f, true);
		return;
	}
	must_register(f, ALICE, P256, PASSWORD, 0);
	const bkv_record before = must_peek(f, ALICE);
	const unsigned logins = g_login_start_calls, commits = g_commit_calls;

	struct sigaction ignore, old_action;
	memset(&ignore, 0, sizeof(ignore));
	ignore.sa_handler = SIG_IGN;
	assert_int_equal(sigaction(SIGXFSZ, &ignore, &old_action), 0);
	struct rlimit old_limit;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
	const struct rlimit tiny = {1, old_limit.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
	attempt at;
	const bkvd_status st =
	    client_recover_start(&f->v, &f->buf, account_of(ALICE), P256, PASSWORD, &at);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
	assert_int_equal(sigaction(SIGXFSZ, &old_action, NULL), 0);

	assert_code(st, BKV_CODE_UNAVAILABLE);
	assert_false(st.has_attempt_info);
	assert_start_failed_without_ke2(f, &at, &before, logins, commits);
}

/* Closes every PKCS#11 session on the token behind the vault's back. The module is loaded
 * unmanaged, so the call reaches SoftHSM2 itself (the same instance the vault uses) rather
 * than a p11-kit wrapper that would close only its own sessions. */
static void close_token_sessions_underneath(void)
{
	CK_FUNCTION_LIST *raw = p11_kit_module_load(g_module, P11_KIT_MODULE_UNMANAGED);
	assert_non_null(raw);
	assert_int_equal(raw->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;
	assert_int_equal(raw->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	char padded[32];
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, g_label, strlen(g_label));
	bool closed = false;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO info;
		if (raw->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    memcmp(info.label, padded, sizeof(padded)) == 0) {
			assert_int_equal(raw->C_CloseAllSessions(slots[i]), CKR_OK);
			closed = true;
		}
	}
	assert_true(closed);
	p11_kit_module_release(raw); /* never C_Finalize: the vault still uses the module */
}

/* The token fails under RecoverStart: UNAVAILABLE, no KE2, and no attempt consumed; once
 * the session is reopened the next attempt is the first. */
static void recover_start_consumes_no_attempt_when_the_token_fails(void **state)
{
	fx *f = *state;
	must_register(f, ALICE, f->suite, PASSWORD, 0);
	const bkv_record before = must_peek(f, ALICE);
	const unsigned commits = g_commit_calls;
	close_token_sessions_underneath();
	attempt at;
	const bkvd_status st =
	    client_recover_start(&f->v, &f->buf, account_of(ALICE), f->suite, PASSWORD, &at);
	assert_code(st, BKV_CODE_UNAVAILABLE);
	assert_int_equal(at.resp.ke2.len, 0);
	assert_int_equal(at.resp.ticket.len, 0);
	assert_int_equal(g_commit_calls, commits); /* never reached the commit */
	const bkv_record after = must_peek(f, ALICE);
	assert_same_row(&before, &after);
	assert_false(bkv_vault_token_healthy(&f->v));
	assert_true(bkv_vault_reopen_token(&f->v));
	attempt next;
	must_start(f, ALICE, f->suite, PASSWORD, &next);
	assert_int_equal(next.attempts_remaining, DEFAULT_LIMIT - 1);
}

/* Another writer, on a second connection of its own: SQLite's BEGIN EXCLUSIVE, or on
 * PostgreSQL a transaction that runs pg_lock (and must lock `rows` rows). */
typedef struct other_writer {
	sqlite3 *db;
	PGconn *pg;
} other_writer;

static other_writer other_writer_begin(fx *f, const char *pg_lock, int rows)
{
	other_writer w = {NULL, NULL};
	if (!on_pg) {
		assert_int_equal(sqlite3_open_v2(f->db, &w.db, SQLITE_OPEN_READWRITE, NULL),
		                 SQLITE_OK);
		assert_int_equal(sqlite3_exec(w.db, "BEGIN EXCLUSIVE", NULL, NULL, NULL),
		                 SQLITE_OK);
		return w;
	}
	w.pg = pg_raw_connect();
	assert_non_null(w.pg);
	const char *err = pg_try_exec_on(w.pg, "BEGIN");
	if (err != NULL)
		fail_msg("BEGIN: %s", err);
	PGresult *res = PQexec(w.pg, pg_lock);
	const ExecStatusType st = PQresultStatus(res);
	const int locked = st == PGRES_TUPLES_OK ? PQntuples(res) : 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		print_error("%s: %s", pg_lock, PQerrorMessage(w.pg));
	PQclear(res);
	assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
	assert_int_equal(locked, rows);
	return w;
}

static void other_writer_end(other_writer *w)
{
	if (w->db != NULL) {
		assert_int_equal(sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(w->db);
	}
	if (w->pg != NULL) {
		const char *err = pg_try_exec_on(w->pg, "ROLLBACK");
		PQfinish(w->pg);
		if (err != NULL)
			fail_msg("ROLLBACK: %s", err);
	}
}

/* RecoverStart while another writer holds the lock: the commit waits for the busy timeout
 * (SQLite) or the statement_timeout (PostgreSQL), both 5 s, then gives up. */
static void recover_start_while_locked(fx *f, const char *pg_lock, int rows)
{
	must_register(f, ALICE, P256, PASSWORD, 0);
	const bkv_record before = must_peek(f, ALICE);
	const unsigned logins = g_login_start_calls, commits = g_commit_calls;

	other_writer w = other_writer_begin(f, pg_lock, rows);
	attempt at;
	const int64_t t0 = now_ms();
	const bkvd_status st =
	    client_recover_start(&f->v, &f->buf, account_of(ALICE), P256, PASSWORD, &at);
	const int64_t waited = now_ms() - t0;
	other_writer_end(&w);

	if (on_pg)
		print_message("%s: %s after %lld ms\n", pg_lock, bkv_code_name(st.code),
		              (long long)waited);
	assert_code(st, BKV_CODE_UNAVAILABLE);
	assert_true(waited >= 4000); /* it waited for the lock, then gave up */
	if (on_pg)
		assert_true(waited < 15000); /* once: a statement timeout is not retried */
	assert_start_failed_without_ke2(f, &at, &before, logins, commits);
}

/* Another writer holds the database for longer than the busy timeout (5 s). On PostgreSQL
 * another replica holds ALICE's row (as its RecoverFinish would, FOR UPDATE), then the
 * whole table (reads still allowed, as under SQLite's WAL). */
static void recover_start_returns_no_ke2_while_another_writer_holds_the_database(void **state)
{
	fx *f = *state;
	if (!on_pg) {
		recover_start_while_locked(f, NULL, 0);
		return;
	}
	char row_lock[160];
	snprintf(row_lock, sizeof(row_lock),
	         "SELECT 1 FROM records WHERE account_id = convert_to('%s', 'UTF8') FOR UPDATE",
	         ALICE);
	recover_start_while_locked(f, row_lock, 1);
	recover_start_while_locked(f, "LOCK TABLE records IN EXCLUSIVE MODE", 0);
}

static void recover_start_for_an_unregistered_account_is_not_found(void **state)
{
	fx *f = *state;
	const unsigned logins = g_login_start_calls;
	attempt at;
	const bkvd_status st =
	    client_recover_start(&f->v, &f->buf, account_of(ALICE), P256, PASSWORD, &at);
	assert_code(st, BKV_CODE_NOT_FOUND);
	assert_false(st.has_attempt_info); /* no record, so nothing to count */
	assert_int_equal(at.resp.ke2.len, 0);
	assert_int_equal(g_login_start_calls, logins);
	assert_no_record(f, ALICE);
}

static void attempt_limit_zero_means_the_default_of_10(void **state)
{
	fx *f = *state;
	Bkv__V1__RegisterFinishResponse resp;
	assert_code(client_register(&f->v, &f->buf, account_of(ALICE), P256, PASSWORD, 0, f->wk,
	                            sizeof(f->wk), 0, &resp),
	            BKV_CODE_OK);
	assert_int_equal(resp.attempt_limit, DEFAULT_LIMIT);
	assert_int_equal(status_of(f, ALICE).attempt_limit, DEFAULT_LIMIT);
	assert_int_equal(must_peek(f, ALICE).attempt_limit, DEFAULT_LIMIT);
}

static void attempt_limit_up_to_the_maximum_is_accepted(void **state)
{
	fx *f = *state;
	const uint32_t limits[] = {1, MAX_LIMIT};
	for (size_t i = 0; i < 2; i++) {
		Bkv__V1__RegisterFinishResponse resp;
		assert_code(client_register(&f->v, &f->buf, account_of(ALICE), P256, PASSWORD, i,
		                            f->wk, sizeof(f->wk), limits[i], &resp),
		            BKV_CODE_OK);
		assert_int_equal(resp.attempt_limit, limits[i]);
		assert_int_equal(resp.record_version, i + 1);
		attempt at;
		must_start(f, ALICE, P256, WRONG_PASSWORD, &at);
		assert_int_equal(at.attempts_remaining, limits[i] - 1);
	}
}

static void attempt_limit_above_the_maximum_is_invalid_argument(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, P256, PASSWORD, 0);
	const bkv_record before = must_peek(f, ALICE);
	const uint32_t limits[] = {MAX_LIMIT + 1, UINT32_MAX};
	for (size_t i = 0; i < 2; i++) {
		Bkv__V1__RegisterFinishResponse resp;
		assert_code(client_register(&f->v, &f->buf, account_of(ALICE), P256, NEW_PASSWORD,
		                            version, f->wk, sizeof(f->wk), limits[i], &resp),
		            BKV_CODE_INVALID_ARGUMENT);
		assert_code(client_register(&f->v, &f->buf, account_of(BOB), P256, NEW_PASSWORD, 0,
		                            f->wk, sizeof(f->wk), limits[i], &resp),
		            BKV_CODE_INVALID_ARGUMENT);
	}
	const bkv_record after = must_peek(f, ALICE);
	assert_same_row(&before, &after);
	assert_no_record(f, BOB);
	must_recover_fully(f, ALICE, P256, PASSWORD, version);
}

/* ------------------------------------------------------------------------------------ */
/* Invalid input leaves the state unchanged                                              */
/* ------------------------------------------------------------------------------------ */

/* RecoverStart with this KE1 and suite must fail with `expected`, return no KE2, commit
 * nothing and leave ALICE's row exactly as it was. */
static bkvd_status assert_start_rejected(fx *f, Bkv__V1__Suite suite, const uint8_t *ke1,
                                         size_t ke1_len, bkv_code expected)
{
	const bkv_record before = must_peek(f, ALICE);
	const unsigned commits = g_commit_calls;
	Bkv__V1__RecoverStartResponse resp;
	const bkvd_status st =
	    send_recover_start(&f->v, &f->buf, account_of(ALICE), suite, ke1, ke1_len, &resp);
	assert_code(st, expected);
	assert_int_equal(resp.ke2.len, 0);
	assert_int_equal(resp.ticket.len, 0);
	assert_int_equal(g_commit_calls, commits);
	const bkv_record after = must_peek(f, ALICE);
	assert_same_row(&before, &after);
	return st;
}

static void valid_ke1(opaque_suite_id suite, uint8_t *ke1)
{
	const opaque_config cfg = client_config(suite);
	opaque_client_login_state cs;
	assert_int_equal(opaque_client_login_start(&cfg, (const uint8_t *)PASSWORD,
	                                           strlen(PASSWORD), &cs, ke1,
	                                           sizes_of(suite)->ke1),
	                 OPAQUE_OK);
	opaque_client_login_state_wipe(&cs);
}

/* After rejected requests the account still works from where it was. */
static void assert_still_fresh(fx *f, opaque_suite_id suite, uint64_t version)
{
	attempt at;
	must_start(f, ALICE, suite, PASSWORD, &at);
	assert_int_equal(at.attempts_remaining, DEFAULT_LIMIT - 1);
	must_recover(f, ALICE, &at, f->wk, sizeof(f->wk), version);
}

static void recover_start_rejects_a_ke1_of_the_wrong_length(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES + 2];
	valid_ke1(f->suite, ke1);
	const size_t n = sizes_of(f->suite)->ke1;
	const size_t lens[] = {0, 1, n - 1, n + 1, OPAQUE_MAX_KE1_BYTES + 1};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		assert_start_rejected(f, (Bkv__V1__Suite)f->suite, lens[i] ? ke1 : NULL, lens[i],
		                      BKV_CODE_INVALID_ARGUMENT);
	assert_still_fresh(f, f->suite, version);
}

/* KE1 = blinded_element (Noe) || client_nonce (Nn) || client_public_keyshare (Npk). */
static void recover_start_rejects_bad_elements(fx *f, void (*bad)(opaque_suite_id, uint8_t *))
{
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	const opaque_sizes *sz = sizes_of(f->suite);
	const size_t offsets[] = {0, sz->Noe + sz->Nn};
	for (size_t i = 0; i < 2; i++) {
		uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
		valid_ke1(f->suite, ke1);
		bad(f->suite, ke1 + offsets[i]);
		assert_int_not_equal(opaque_element_validate(f->suite, ke1 + offsets[i], sz->Noe),
		                     OPAQUE_OK);
		/* An invalid KE1 for a live record: the answer says what is left. */
		assert_attempt_info(assert_start_rejected(f, (Bkv__V1__Suite)f->suite, ke1, sz->ke1,
		                                          BKV_CODE_INVALID_ARGUMENT),
		                    DEFAULT_LIMIT, DEFAULT_LIMIT);
	}
	assert_still_fresh(f, f->suite, version);
}

static void recover_start_rejects_a_ke1_with_an_identity_element(void **state)
{
	recover_start_rejects_bad_elements(*state, identity_element);
}

static void recover_start_rejects_a_ke1_with_an_off_curve_element(void **state)
{
	recover_start_rejects_bad_elements(*state, off_curve_element);
}

static void recover_start_rejects_an_unknown_suite(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, P256, PASSWORD, 0);
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	valid_ke1(P256, ke1);
	const int suites[] = {0, 3, 255, -1};
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		assert_start_rejected(f, (Bkv__V1__Suite)suites[i], ke1, sizes_of(P256)->ke1,
		                      BKV_CODE_INVALID_ARGUMENT);
	assert_still_fresh(f, P256, version);
}

static void recover_start_rejects_a_disabled_suite(void **state)
{
	fx *f = *state;
	/* Registered while ristretto255 was enabled; the operator then disables it. */
	const uint64_t version = must_register(f, ALICE, R255, PASSWORD, 0);
	f->v.settings.suites[0] = P256;
	f->v.settings.nsuites = 1;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	valid_ke1(R255, ke1);
	assert_start_rejected(f, BKV__V1__SUITE__SUITE_RISTRETTO255_SHA512, ke1,
	                      sizes_of(R255)->ke1, BKV_CODE_INVALID_ARGUMENT);
	f->v.settings.suites[1] = R255;
	f->v.settings.nsuites = 2;
	assert_still_fresh(f, R255, version);
}

static void recover_start_with_another_suite_than_registered_is_failed_precondition(void **state)
{
	fx *f = *state;
	const opaque_suite_id other = f->suite == P256 ? R255 : P256;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	valid_ke1(other, ke1);
	const unsigned logins = g_login_start_calls;
	assert_attempt_info(assert_start_rejected(f, (Bkv__V1__Suite)other, ke1,
	                                          sizes_of(other)->ke1,
	                                          BKV_CODE_FAILED_PRECONDITION),
	                    DEFAULT_LIMIT, DEFAULT_LIMIT);
	assert_int_equal(g_login_start_calls, logins);
	assert_still_fresh(f, f->suite, version);
}

static void register_start_rejects_an_invalid_registration_request(void **state)
{
	fx *f = *state;
	const opaque_sizes *sz = sizes_of(f->suite);
	uint8_t good[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES + 1];
	const opaque_config cfg = client_config(f->suite);
	opaque_client_registration_state cs;
	assert_int_equal(opaque_client_registration_start(&cfg, (const uint8_t *)PASSWORD,
	                                                  strlen(PASSWORD), &cs, good,
	                                                  sz->registration_request),
	                 OPAQUE_OK);
	opaque_client_registration_state_wipe(&cs);
	good[sz->registration_request] = 0;
	uint8_t identity[OPAQUE_MAX_ELEMENT_BYTES], off_curve[OPAQUE_MAX_ELEMENT_BYTES];
	identity_element(f->suite, identity);
	off_curve_element(f->suite, off_curve);
	const struct {
		const uint8_t *data;
		size_t len;
	} cases[] = {
	    {NULL, 0},
	    {good, sz->registration_request - 1},
	    {good, sz->registration_request + 1},
	    {identity, sz->Noe},
	    {off_curve, sz->Noe},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Bkv__V1__RegisterStartRequest req = BKV__V1__REGISTER_START_REQUEST__INIT;
		Bkv__V1__RegisterStartResponse resp;
		req.suite = (Bkv__V1__Suite)f->suite;
		req.registration_request.data = (uint8_t *)cases[i].data;
		req.registration_request.len = cases[i].len;
		assert_code(bkvd_register_start(&f->v, account_of(ALICE), &req, &resp, &f->buf),
		            BKV_CODE_INVALID_ARGUMENT);
		assert_int_equal(resp.registration_response.len, 0);
	}
	assert_no_record(f, ALICE);
}

static void register_rejects_an_unknown_or_disabled_suite(void **state)
{
	fx *f = *state;
	reg_start rs;
	assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), R255, PASSWORD, &rs),
	            BKV_CODE_OK);
	const int unknown[] = {0, 3, 255};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		Bkv__V1__RegisterStartRequest req = BKV__V1__REGISTER_START_REQUEST__INIT;
		Bkv__V1__RegisterStartResponse resp;
		uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
		memset(request, 0x42, sizeof(request));
		req.suite = (Bkv__V1__Suite)unknown[i];
		req.registration_request.data = request;
		req.registration_request.len = sizeof(request);
		assert_code(bkvd_register_start(&f->v, account_of(ALICE), &req, &resp, &f->buf),
		            BKV_CODE_INVALID_ARGUMENT);
		Bkv__V1__RegisterFinishResponse fr;
		finish_req freq = finish_req_of(&rs, R255, 0, f->wk, sizeof(f->wk), 0);
		freq.suite = (opaque_suite_id)unknown[i];
		assert_code(send_register_finish(&f->v, account_of(ALICE), &freq, &fr),
		            BKV_CODE_INVALID_ARGUMENT);
	}
	/* Disabled: a record made while ristretto255 was enabled is refused once it is not. */
	f->v.settings.nsuites = 1;
	Bkv__V1__RegisterFinishResponse fr;
	const finish_req req = finish_req_of(&rs, R255, 0, f->wk, sizeof(f->wk), 0);
	assert_code(send_register_finish(&f->v, account_of(ALICE), &req, &fr),
	            BKV_CODE_INVALID_ARGUMENT);
	reg_start again;
	assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), R255, PASSWORD, &again),
	            BKV_CODE_INVALID_ARGUMENT);
	f->v.settings.nsuites = 2;
	assert_no_record(f, ALICE);
	assert_false(status_of(f, ALICE).registered);
}

/* RegisterFinish with this record and wrapped key (and a good ticket, replacing the current
 * version) must fail with INVALID_ARGUMENT and leave ALICE's existing registration exactly
 * as it was. */
static void assert_register_finish_rejected(fx *f, const reg_start *rs, const uint8_t *record,
                                            size_t record_len, const uint8_t *wk, size_t wk_len)
{
	const bkv_record before = must_peek(f, ALICE);
	Bkv__V1__RegisterFinishResponse resp;
	finish_req req = finish_req_of(rs, f->suite, before.record_version, wk, wk_len, 0);
	req.record = record;
	req.record_len = record_len;
	assert_code(send_register_finish(&f->v, account_of(ALICE), &req, &resp),
	            BKV_CODE_INVALID_ARGUMENT);
	assert_int_equal(resp.record_version, 0);
	const bkv_record after = must_peek(f, ALICE);
	assert_same_row(&before, &after);
}

static void register_finish_rejects_a_record_of_the_wrong_length(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	reg_start rs;
	assert_code(
	    client_make_record(&f->v, &f->buf, account_of(ALICE), f->suite, NEW_PASSWORD, &rs),
	    BKV_CODE_OK);
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES + 1];
	const size_t n = sizes_of(f->suite)->registration_record;
	memcpy(record, rs.record, n);
	record[n] = 0;
	const size_t lens[] = {0, 1, n - 1, n + 1};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		assert_register_finish_rejected(f, &rs, lens[i] ? record : NULL, lens[i], f->wk,
		                                sizeof(f->wk));
	assert_still_fresh(f, f->suite, version);
}

/* RegistrationRecord = client_public_key (Npk) || masking_key (Nh) || envelope. */
static void register_finish_rejects_a_record_with_an_invalid_client_public_key(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	void (*bad[])(opaque_suite_id, uint8_t *) = {identity_element, off_curve_element};
	for (size_t i = 0; i < 2; i++) {
		reg_start rs;
		assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), f->suite,
		                               NEW_PASSWORD, &rs),
		            BKV_CODE_OK);
		bad[i](f->suite, rs.record);
		assert_register_finish_rejected(f, &rs, rs.record,
		                                sizes_of(f->suite)->registration_record, f->wk,
		                                sizeof(f->wk));
	}
	assert_still_fresh(f, f->suite, version);
}

static void register_finish_rejects_an_empty_wrapped_key(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	reg_start rs;
	assert_code(
	    client_make_record(&f->v, &f->buf, account_of(ALICE), f->suite, NEW_PASSWORD, &rs),
	    BKV_CODE_OK);
	assert_register_finish_rejected(f, &rs, rs.record, sizes_of(f->suite)->registration_record,
	                                NULL, 0);
	assert_still_fresh(f, f->suite, version);
}

static void register_finish_rejects_a_wrapped_key_of_257_bytes(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	reg_start rs;
	assert_code(
	    client_make_record(&f->v, &f->buf, account_of(ALICE), f->suite, NEW_PASSWORD, &rs),
	    BKV_CODE_OK);
	uint8_t wk[BKV_WRAPPED_KEY_MAX + 1];
	wrapped_key_pattern(wk, sizeof(wk), 1);
	assert_register_finish_rejected(f, &rs, rs.record, sizes_of(f->suite)->registration_record,
	                                wk, sizeof(wk));
	assert_still_fresh(f, f->suite, version);
}

/* The account id is the JWT's sub. vault/auth bounds it to 1..256 bytes, but handlers.h
 * states no bound and RegisterFinish copies it into a 256-byte field: a handler must refuse
 * what it cannot hold. The record and its ticket are made under ALICE (no RegisterStart can
 * be made for such an id). Run in a worker, because an unchecked copy smashes the stack. */
#define LONG_ACCOUNT_CASES 3

static int register_finish_long_account_ids(bkv_vault *v, bkv_reply_buffers *buf, int report_fd,
                                            void *arg)
{
	const uint8_t *wk = arg;
	reg_start rs;
	if (client_make_record(v, buf, account_of(ALICE), P256, PASSWORD, &rs).code != BKV_CODE_OK)
		return 1;
	const finish_req req = finish_req_of(&rs, P256, 0, wk, WK_LEN, 0);
	static uint8_t long_id[4096];
	memset(long_id, 'a', sizeof(long_id));
	const size_t lens[LONG_ACCOUNT_CASES] = {BKV_ACCOUNT_ID_MAX + 1, 1000, sizeof(long_id)};
	for (size_t i = 0; i < LONG_ACCOUNT_CASES; i++) {
		Bkv__V1__RegisterFinishResponse resp;
		const bkv_account a = {long_id, lens[i]};
		const int32_t code = (int32_t)send_register_finish(v, a, &req, &resp).code;
		if (write(report_fd, &code, sizeof(code)) != (ssize_t)sizeof(code))
			return 2;
	}
	return 0;
}

static void register_finish_rejects_an_account_id_longer_than_256_bytes(void **state)
{
	fx *f = *state;
	int report[2];
	assert_int_equal(pipe(report), 0);
	vault_detach(f);
	const worker w = {register_finish_long_account_ids, f->wk, report[1], -1, -1,
	                  {report[0], -1, -1, -1}};
	const pid_t pid = spawn_worker(f, &w);
	close(report[1]);
	int status = 0;
	reap_all(&pid, &status, 1, now_ms() + CHILD_DEADLINE_MS);
	int32_t codes[LONG_ACCOUNT_CASES] = {-1, -1, -1};
	for (size_t i = 0; i < LONG_ACCOUNT_CASES; i++)
		if (!read_exactly(report[0], &codes[i], sizeof(codes[i]), now_ms() + 1000))
			break;
	close(report[0]);
	reattach(f);
	print_message("RegisterFinish with an account id of 257 bytes: %s; 1000 bytes: %s; "
	              "4096 bytes: %s; worker %s %d\n",
	              codes[0] >= 0 ? bkv_code_name((bkv_code)codes[0]) : "(no answer)",
	              codes[1] >= 0 ? bkv_code_name((bkv_code)codes[1]) : "(no answer)",
	              codes[2] >= 0 ? bkv_code_name((bkv_code)codes[2]) : "(no answer)",
	              WIFSIGNALED(status) ? "killed by signal" : "exited with",
	              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	assert_exited_cleanly(status, "RegisterFinish worker");
	for (size_t i = 0; i < LONG_ACCOUNT_CASES; i++)
		assert_int_equal(codes[i], BKV_CODE_INVALID_ARGUMENT);
	assert_no_record(f, ALICE);
}

/* ------------------------------------------------------------------------------------ */
/* Tickets                                                                               */
/* ------------------------------------------------------------------------------------ */

/* A started recovery with the right password and its KE3, not yet sent. */
typedef struct pending {
	uint64_t version;
	attempt at;
	finish fin;
	bkv_record row; /* the row after RecoverStart */
} pending;

static void start_pending(fx *f, pending *p)
{
	p->version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	must_start(f, ALICE, f->suite, PASSWORD, &p->at);
	client_ke3(&p->at, &p->fin);
	assert_int_equal(p->fin.client_err, OPAQUE_OK);
	p->row = must_peek(f, ALICE);
	assert_int_equal(p->row.attempts_used, 1);
}

/* RecoverFinish with this ticket (and the right KE3) fails with `expected`, releases
 * nothing, and leaves the row as it was. */
static bkvd_status assert_finish_rejected(fx *f, const pending *p, const uint8_t *ticket,
                                          size_t ticket_len, bkv_code expected)
{
	Bkv__V1__RecoverFinishResponse resp;
	const bkvd_status st = send_recover_finish(&f->v, &f->buf, account_of(ALICE), ticket,
	                                           ticket_len, p->fin.ke3, p->fin.ke3_len, &resp);
	assert_code(st, expected);
	assert_int_equal(resp.sealed_key.len, 0);
	assert_int_equal(resp.record_version, 0);
	const bkv_record now = must_peek(f, ALICE);
	assert_same_row(&p->row, &now);
	return st;
}

/* The genuine ticket still finishes: the rejected requests consumed nothing. */
static void assert_genuine_finish(fx *f, pending *p)
{
	send_ke3(&f->v, &f->buf, account_of(ALICE), &p->at, &p->fin);
	assert_release(&p->fin, f->suite, f->wk, sizeof(f->wk), p->version);
	assert_int_equal(status_of(f, ALICE).attempts_used, 0);
}

static void recover_finish_rejects_a_forged_ticket(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	uint8_t forged[BKV_TICKET_MAX_BYTES];
	randombytes_buf(forged, sizeof(forged));
	assert_finish_rejected(f, &p, forged, p.at.ticket_len, BKV_CODE_INVALID_ARGUMENT);
	assert_finish_rejected(f, &p, forged, sizeof(forged), BKV_CODE_INVALID_ARGUMENT);
	assert_finish_rejected(f, &p, NULL, 0, BKV_CODE_INVALID_ARGUMENT);
	assert_genuine_finish(f, &p);
}

static void recover_finish_rejects_a_truncated_ticket(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	const size_t lens[] = {
	    p.at.ticket_len - 1, p.at.ticket_len - 16, 12 + 16 + 1, 12 + 16, 12, 1};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		assert_finish_rejected(f, &p, p.at.ticket, lens[i], BKV_CODE_INVALID_ARGUMENT);
	assert_genuine_finish(f, &p);
}

static void recover_finish_rejects_a_ticket_with_bytes_appended(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	uint8_t longer[BKV_TICKET_MAX_BYTES + 2];
	memset(longer, 0, sizeof(longer));
	memcpy(longer, p.at.ticket, p.at.ticket_len);
	assert_finish_rejected(f, &p, longer, p.at.ticket_len + 1, BKV_CODE_INVALID_ARGUMENT);
	assert_finish_rejected(f, &p, longer, sizeof(longer), BKV_CODE_INVALID_ARGUMENT);
	assert_genuine_finish(f, &p);
}

static void recover_finish_rejects_a_ticket_with_one_byte_flipped(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	const size_t n = p.at.ticket_len;
	/* box = scheme || iv_len || iv (12) || ciphertext || tag (16): each header byte, the
	 * IV's ends, the ciphertext's first, middle and last bytes, and the tag's ends */
	const size_t positions[] = {0, 1, 2, 13, 14, n / 2, n - 17, n - 16, n - 1};
	for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++) {
		uint8_t t[BKV_TICKET_MAX_BYTES];
		memcpy(t, p.at.ticket, n);
		t[positions[i]] ^= 0x01;
		assert_finish_rejected(f, &p, t, n, BKV_CODE_INVALID_ARGUMENT);
	}
	assert_genuine_finish(f, &p);
}

static void recover_finish_rejects_a_ticket_from_another_account(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	must_register(f, BOB, f->suite, PASSWORD, 0);
	const bkv_record bob_before = must_peek(f, BOB);
	Bkv__V1__RecoverFinishResponse resp;
	assert_code(send_recover_finish(&f->v, &f->buf, account_of(BOB), p.at.ticket,
	                                p.at.ticket_len, p.fin.ke3, p.fin.ke3_len, &resp),
	            BKV_CODE_INVALID_ARGUMENT);
	assert_int_equal(resp.sealed_key.len, 0);
	const bkv_record bob_after = must_peek(f, BOB);
	assert_same_row(&bob_before, &bob_after);
	const bkv_record alice = must_peek(f, ALICE);
	assert_same_row(&p.row, &alice);
	assert_genuine_finish(f, &p);
}

static void recover_finish_rejects_an_expired_ticket(void **state)
{
	fx *f = *state; /* tickets live 1 s */
	pending p;
	start_pending(f, &p);
	sleep_ms(2100);
	assert_attempt_info(assert_finish_rejected(f, &p, p.at.ticket, p.at.ticket_len,
	                                           BKV_CODE_FAILED_PRECONDITION),
	                    DEFAULT_LIMIT - 1, DEFAULT_LIMIT);
	/* The attempt stays used; nothing else moved. */
	assert_int_equal(status_of(f, ALICE).attempts_used, 1);
	attempt next;
	must_start(f, ALICE, f->suite, PASSWORD, &next);
	assert_int_equal(next.attempts_remaining, DEFAULT_LIMIT - 2);
	must_recover(f, ALICE, &next, f->wk, sizeof(f->wk), p.version); /* fresh ones work */
}

static void recover_finish_rejects_a_replayed_ticket_after_a_success(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	assert_genuine_finish(f, &p);
	p.row = must_peek(f, ALICE);
	assert_attempt_info(assert_finish_rejected(f, &p, p.at.ticket, p.at.ticket_len,
	                                           BKV_CODE_FAILED_PRECONDITION),
	                    DEFAULT_LIMIT, DEFAULT_LIMIT);
	assert_int_equal(status_of(f, ALICE).attempts_used, 0);
}

static void recover_finish_rejects_a_replayed_ticket_after_a_failure(void **state)
{
	fx *f = *state;
	must_register(f, ALICE, f->suite, PASSWORD, 0);
	attempt at;
	must_start(f, ALICE, f->suite, WRONG_PASSWORD, &at);
	finish fin;
	client_recover_finish(&f->v, &f->buf, account_of(ALICE), &at, &fin);
	assert_code(fin.st, BKV_CODE_PERMISSION_DENIED);
	assert_attempt_info(fin.st, DEFAULT_LIMIT - 1, DEFAULT_LIMIT);
	const bkv_record before = must_peek(f, ALICE);
	for (int i = 0; i < 3; i++) {
		send_ke3(&f->v, &f->buf, account_of(ALICE), &at, &fin);
		assert_code(fin.st, BKV_CODE_FAILED_PRECONDITION);
		assert_attempt_info(fin.st, DEFAULT_LIMIT - 1, DEFAULT_LIMIT);
		assert_int_equal(fin.sealed_len, 0);
	}
	const bkv_record after = must_peek(f, ALICE);
	assert_same_row(&before, &after);
	assert_int_equal(status_of(f, ALICE).attempts_used, 1);
}

static void recover_finish_rejects_a_ticket_from_before_a_reregistration(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	/* Same account, same password, same wrapped key: only the record_version and the
	 * registration id differ. */
	const uint64_t version2 = must_register(f, ALICE, f->suite, PASSWORD, 0);
	assert_int_equal(version2, p.version + 1);
	p.row = must_peek(f, ALICE);
	assert_attempt_info(assert_finish_rejected(f, &p, p.at.ticket, p.at.ticket_len,
	                                           BKV_CODE_FAILED_PRECONDITION),
	                    DEFAULT_LIMIT, DEFAULT_LIMIT);
	assert_int_equal(status_of(f, ALICE).attempts_used, 0);
	assert_still_fresh(f, f->suite, version2);
}

static void recover_finish_rejects_a_ke3_of_the_wrong_length(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	const size_t n = p.fin.ke3_len;
	const size_t lens[] = {0, n - 1, n + 1};
	for (size_t i = 0; i < 3; i++) {
		uint8_t ke3[OPAQUE_MAX_KE3_BYTES + 1];
		memset(ke3, 0, sizeof(ke3));
		memcpy(ke3, p.fin.ke3, n);
		Bkv__V1__RecoverFinishResponse resp;
		assert_code(send_recover_finish(&f->v, &f->buf, account_of(ALICE), p.at.ticket,
		                                p.at.ticket_len, lens[i] ? ke3 : NULL, lens[i],
		                                &resp),
		            BKV_CODE_INVALID_ARGUMENT);
		assert_int_equal(resp.sealed_key.len, 0);
		const bkv_record now = must_peek(f, ALICE);
		assert_same_row(&p.row, &now);
	}
	assert_genuine_finish(f, &p);
}

/* ------------------------------------------------------------------------------------ */
/* Replacing and deleting                                                                */
/* ------------------------------------------------------------------------------------ */

static void register_finish_replaces_the_record_with_a_new_version_and_a_fresh_counter(void **state)
{
	fx *f = *state;
	const uint64_t v1 = must_register(f, ALICE, f->suite, PASSWORD, 0);
	assert_int_equal(v1, 1);
	for (int i = 0; i < 3; i++)
		assert_code(wrong_guess(f, ALICE, f->suite, NULL), BKV_CODE_PERMISSION_DENIED);
	assert_int_equal(status_of(f, ALICE).attempts_used, 3);
	const bkv_record old = must_peek(f, ALICE);

	uint8_t wk2[100];
	wrapped_key_pattern(wk2, sizeof(wk2), 0xc3);
	Bkv__V1__RegisterFinishResponse rr;
	assert_code(client_register(&f->v, &f->buf, account_of(ALICE), f->suite, NEW_PASSWORD, v1,
	                            wk2, sizeof(wk2), 5, &rr),
	            BKV_CODE_OK);
	assert_int_equal(rr.record_version, v1 + 1);
	assert_int_equal(rr.attempt_limit, 5);
	/* guess_seq keeps counting (no earlier guess can be finished); a fresh registration id. */
	const bkv_record replaced = must_peek(f, ALICE);
	assert_int_equal(replaced.guess_seq, old.guess_seq);
	assert_int_equal(replaced.last_finished_seq, old.guess_seq);
	assert_int_equal(replaced.registration_id_len, BKV_REGISTRATION_ID_BYTES);
	assert_memory_not_equal(replaced.registration_id, old.registration_id,
	                        BKV_REGISTRATION_ID_BYTES);
	const Bkv__V1__GetStatusResponse s = status_of(f, ALICE);
	assert_true(s.registered);
	assert_int_equal(s.record_version, rr.record_version);
	assert_int_equal(s.attempts_used, 0);
	assert_int_equal(s.attempt_limit, 5);

	/* The old password no longer opens anything; the new one releases the new key. */
	attempt at;
	must_start(f, ALICE, f->suite, PASSWORD, &at);
	assert_int_equal(at.attempts_remaining, 4);
	finish fin;
	client_recover_finish(&f->v, &f->buf, account_of(ALICE), &at, &fin);
	assert_int_equal(fin.client_err, OPAQUE_ERR_ENVELOPE_RECOVERY);
	assert_code(fin.st, BKV_CODE_PERMISSION_DENIED);
	must_start(f, ALICE, f->suite, NEW_PASSWORD, &at);
	must_recover(f, ALICE, &at, wk2, sizeof(wk2), rr.record_version);
}

static void delete_removes_the_record(void **state)
{
	fx *f = *state;
	must_register(f, ALICE, P256, PASSWORD, 0);
	must_register(f, BOB, P256, PASSWORD, 0);
	const bkv_record bob = must_peek(f, BOB);
	Bkv__V1__DeleteResponse resp;
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &resp), BKV_CODE_OK);
	assert_true(resp.deleted);
	assert_false(status_of(f, ALICE).registered);
	assert_int_equal(status_of(f, ALICE).state, BKV__V1__RECORD_STATE__RECORD_STATE_ABSENT);
	assert_no_record(f, ALICE);
	attempt at;
	assert_code(client_recover_start(&f->v, &f->buf, account_of(ALICE), P256, PASSWORD, &at),
	            BKV_CODE_NOT_FOUND);
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &resp), BKV_CODE_OK);
	assert_false(resp.deleted);
	const bkv_record bob_after = must_peek(f, BOB);
	assert_same_row(&bob, &bob_after);
}

static void recover_finish_after_delete_releases_nothing(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	Bkv__V1__DeleteResponse resp;
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &resp), BKV_CODE_OK);
	send_ke3(&f->v, &f->buf, account_of(ALICE), &p.at, &p.fin);
	assert_code(p.fin.st, BKV_CODE_NOT_FOUND);
	assert_int_equal(p.fin.sealed_len, 0);
	assert_no_record(f, ALICE);
}

/* A registration run from the g_after_get hook, i.e. right after another handler read the
 * account's row: account, password and replaces in, the answer out. */
static struct {
	fx *f;
	const char *account;
	const char *password;
	uint64_t replaces;
	bkvd_status st;
	uint64_t version;
} g_rereg;

static void reregister_after_read(void *arg)
{
	(void)arg;
	bkv_reply_buffers *buf = calloc(1, sizeof(*buf));
	if (buf == NULL)
		return;
	Bkv__V1__RegisterFinishResponse resp;
	g_rereg.st =
	    client_register(&g_rereg.f->v, buf, account_of(g_rereg.account), P256, g_rereg.password,
	                    g_rereg.replaces, g_rereg.f->wk, sizeof(g_rereg.f->wk), 0, &resp);
	g_rereg.version = resp.record_version;
	free(buf);
}

static void reregister_next_read(fx *f, const char *account, const char *password,
                                 uint64_t replaces)
{
	memset(&g_rereg, 0, sizeof(g_rereg));
	g_rereg.f = f;
	g_rereg.account = account;
	g_rereg.password = password;
	g_rereg.replaces = replaces;
	g_after_get = reregister_after_read;
}

/* The race: a RecoverStart reads an exhausted record and destroys it; between its read and
 * its commit the owner registers again over it (RegisterFinish returns OK). The destruction
 * must not take the new registration with it: the tombstone's commit finds the row moved,
 * and RecoverStart starts over on the new record. */

static void destroying_an_exhausted_record_spares_a_registration_that_replaced_it(void **state)
{
	fx *f = *state;
	const uint64_t v1 = must_register(f, ALICE, P256, PASSWORD, 2);
	attempt at;
	must_start(f, ALICE, P256, WRONG_PASSWORD, &at);
	must_start(f, ALICE, P256, WRONG_PASSWORD, &at);
	reregister_next_read(f, ALICE, NEW_PASSWORD, v1);
	const bkvd_status st =
	    client_recover_start(&f->v, &f->buf, account_of(ALICE), P256, WRONG_PASSWORD, &at);
	assert_null(g_after_get); /* the interleaving happened */
	assert_code(g_rereg.st, BKV_CODE_OK);
	assert_int_equal(g_rereg.version, v1 + 1);
	/* The registration that RegisterFinish acknowledged is still there, and the guess was
	 * served on it (never "destroyed" for a live record). */
	assert_code(st, BKV_CODE_OK);
	assert_int_equal(at.attempts_remaining, DEFAULT_LIMIT - 1);
	const Bkv__V1__GetStatusResponse s = status_of(f, ALICE);
	assert_true(s.registered);
	assert_int_equal(s.record_version, g_rereg.version);
	assert_int_equal(s.attempts_used, 1);
	must_recover_fully(f, ALICE, P256, NEW_PASSWORD, g_rereg.version);
}

/* ------------------------------------------------------------------------------------ */
/* The audit log                                                                         */
/* ------------------------------------------------------------------------------------ */

#define AUDIT_MAX 64
#define RAW_MAX   16384

static void audit_log_records_registration_attempts_recovery_and_deletion(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, P256, PASSWORD, 0);
	assert_code(wrong_guess(f, ALICE, P256, NULL), BKV_CODE_PERMISSION_DENIED);
	must_recover_fully(f, ALICE, P256, PASSWORD, version);
	Bkv__V1__DeleteResponse resp;
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &resp), BKV_CODE_OK);
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &resp), BKV_CODE_OK); /* nothing */

	audit_event ev[AUDIT_MAX];
	static char raw[RAW_MAX];
	const size_t n = read_audit(f, ev, AUDIT_MAX, raw, sizeof(raw));
	assert_int_equal(n, 5);
	assert_event(&ev[0], "registered", ALICE, "record_version", version);
	assert_event(&ev[1], "attempt_used", ALICE, "attempts_used", 1);
	assert_event(&ev[2], "attempt_used", ALICE, "attempts_used", 2);
	assert_event(&ev[3], "recovered", ALICE, "record_version", version);
	assert_event(&ev[4], "deleted", ALICE, NULL, 0);
	const int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < n; i++)
		assert_true(ev[i].ts <= now && ev[i].ts >= now - 30);
	assert_raw_account_absent(raw, ALICE);
}

static void audit_log_records_destruction_by_finish_and_by_start(void **state)
{
	fx *f = *state;
	/* ALICE: the last failed RecoverFinish destroys. */
	const uint64_t va = must_register(f, ALICE, P256, PASSWORD, 1);
	assert_code(wrong_guess(f, ALICE, P256, NULL), BKV_CODE_PERMISSION_DENIED);
	/* BOB: a RecoverStart after the last attempt destroys. */
	const uint64_t vb = must_register(f, BOB, R255, PASSWORD, 1);
	attempt at;
	must_start(f, BOB, R255, WRONG_PASSWORD, &at);
	assert_code(
	    client_recover_start(&f->v, &f->buf, account_of(BOB), R255, WRONG_PASSWORD, &at),
	    BKV_CODE_FAILED_PRECONDITION);

	audit_event ev[AUDIT_MAX];
	static char raw[RAW_MAX];
	const size_t n = read_audit(f, ev, AUDIT_MAX, raw, sizeof(raw));
	assert_int_equal(n, 6);
	assert_event(&ev[0], "registered", ALICE, "record_version", va);
	assert_event(&ev[1], "attempt_used", ALICE, "attempts_used", 1);
	assert_event(&ev[2], "destroyed", ALICE, NULL, 0);
	assert_event(&ev[3], "registered", BOB, "record_version", vb);
	assert_event(&ev[4], "attempt_used", BOB, "attempts_used", 1);
	assert_event(&ev[5], "destroyed", BOB, NULL, 0);
	char ha[33], hb[33];
	expected_hash(ALICE, ha);
	expected_hash(BOB, hb);
	assert_string_not_equal(ha, hb);
	assert_raw_account_absent(raw, ALICE);
	assert_raw_account_absent(raw, BOB);
}

/* ------------------------------------------------------------------------------------ */
/* Concurrency: K processes guessing at once                                             */
/* ------------------------------------------------------------------------------------ */

typedef struct guess_report {
	int32_t ke2;                /* RecoverStart answers with a KE2 */
	int32_t denied;             /* RecoverFinish: PERMISSION_DENIED */
	int32_t stale;              /* RecoverFinish: a later guess finished first, or destroyed */
	int32_t unavailable;        /* RecoverStart: busy answers, retried */
	int32_t finish_unavailable; /* RecoverFinish: busy answers (the guess stays open) */
	int32_t last_code;          /* the RecoverStart answer that ended the loop */
} guess_report;

static int guess_until_refused(bkv_vault *v, bkv_reply_buffers *buf, int report_fd, void *arg)
{
	(void)arg;
	guess_report r;
	memset(&r, 0, sizeof(r));
	const int64_t deadline = now_ms() + CHILD_DEADLINE_MS;
	int rc = 0;
	for (;;) {
		if (now_ms() > deadline) {
			rc = WORKER_TIMEOUT;
			break;
		}
		attempt at;
		const bkvd_status st =
		    client_recover_start(v, buf, account_of(ALICE), P256, WRONG_PASSWORD, &at);
		if (st.code == BKV_CODE_OK) {
			r.ke2++;
			finish fin;
			client_recover_finish(v, buf, account_of(ALICE), &at, &fin);
			if (fin.client_err != OPAQUE_ERR_ENVELOPE_RECOVERY) {
				rc = 2;
				break;
			}
			if (fin.st.code == BKV_CODE_PERMISSION_DENIED)
				r.denied++;
			else if (fin.st.code == BKV_CODE_FAILED_PRECONDITION)
				r.stale++;
			else if (fin.st.code == BKV_CODE_UNAVAILABLE)
				r.finish_unavailable++;
			else {
				r.last_code = (int32_t)fin.st.code;
				rc = 3;
				break;
			}
			continue;
		}
		if (st.code == BKV_CODE_UNAVAILABLE) {
			r.unavailable++;
			continue;
		}
		r.last_code = (int32_t)st.code;
		if (st.code != BKV_CODE_FAILED_PRECONDITION)
			rc = 4;
		break;
	}
	if (write(report_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		return 5;
	return rc;
}

/* A committer process, as bkvd's: it runs every commit of f's group until SIGTERM. Forked
 * before any pipe of the test is made, so it holds none of them open. */
static pid_t start_committer(fx *f)
{
	return tg_start_committer(f->group, f->url, CHILD_DEADLINE_MS / 1000 + 5,
	                          CHILD_DEADLINE_MS / 1000);
}

static void concurrent_guessers(fx *f, bool with_committer)
{
	if (with_committer && on_pg)
		skip(); /* PostgreSQL groups commits in the server; no group here */
	must_register(f, ALICE, P256, PASSWORD, 0);
	const uint64_t bob_version = must_register(f, BOB, R255, PASSWORD, 0);
	const bkv_record bob_before = must_peek(f, BOB);
	vault_detach(f);
	const pid_t committer = with_committer ? start_committer(f) : 0;

	int report[2], ready[2], go[2];
	assert_int_equal(pipe(report), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	const worker w = {guess_until_refused,
	                  NULL,
	                  report[1],
	                  ready[1],
	                  go[0],
	                  {report[0], ready[0], go[1], -1}};
	pid_t pids[CONCURRENT_GUESSERS];
	int statuses[CONCURRENT_GUESSERS];
	const int64_t started = (int64_t)time(NULL);
	const int64_t t0 = now_ms();
	/* One at a time: SoftHSM2's file store fails C_Initialize/C_Login run by many processes
	 * at the same instant (tokens vanish: CKR_TOKEN_NOT_PRESENT-like NO_TOKEN). */
	bool all_ready = true;
	size_t spawned = 0;
	for (; spawned < CONCURRENT_GUESSERS && all_ready; spawned++) {
		pids[spawned] = spawn_worker(f, &w);
		all_ready = wait_ready(ready[0], pids[spawned], now_ms() + CHILD_DEADLINE_MS);
	}
	close(report[1]);
	close(ready[1]);
	close(go[0]);
	/* Everyone has a token session and a connection: start them all at once. */
	const int64_t t_ready = now_ms();
	close(go[1]);
	reap_all(pids, statuses, spawned, now_ms() + CHILD_DEADLINE_MS);
	const int64_t t_done = now_ms();
	if (with_committer) {
		bkv_storage_group_info gi;
		bkv_storage_group_info_get(f->group, &gi);
		assert_int_equal(gi.committer, committer); /* it ran all along */
		kill(committer, SIGTERM);
		int ws = 0;
		assert_int_equal(waitpid(committer, &ws, 0), committer);
		assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == BKV_STORAGE_OK);
	}
	guess_report reports[CONCURRENT_GUESSERS];
	memset(reports, 0, sizeof(reports));
	const bool all_reported =
	    read_exactly(report[0], reports, sizeof(reports), now_ms() + 1000);
	close(report[0]);
	close(ready[0]);
	reattach(f);

	int ke2 = 0, denied = 0, stale = 0, busy = 0, finish_busy = 0, guessers_with_ke2 = 0;
	for (size_t i = 0; i < CONCURRENT_GUESSERS; i++) {
		ke2 += reports[i].ke2;
		denied += reports[i].denied;
		stale += reports[i].stale;
		busy += reports[i].unavailable;
		finish_busy += reports[i].finish_unavailable;
		guessers_with_ke2 += reports[i].ke2 > 0;
	}
	print_message("%d guessers: setup %lld ms, guessing %lld ms; KE2s %d (to %d guessers); "
	              "finishes denied %d, stale %d, busy %d; busy starts %d\n",
	              CONCURRENT_GUESSERS, (long long)(t_ready - t0), (long long)(t_done - t_ready),
	              ke2, guessers_with_ke2, denied, stale, finish_busy, busy);
	assert_true(all_ready);
	for (size_t i = 0; i < CONCURRENT_GUESSERS; i++)
		assert_exited_cleanly(statuses[i], "guesser");
	assert_true(all_reported);
	for (size_t i = 0; i < CONCURRENT_GUESSERS; i++)
		assert_int_equal(reports[i].last_code, BKV_CODE_FAILED_PRECONDITION);
	assert_int_equal(ke2, DEFAULT_LIMIT);
	assert_int_equal(denied + stale + finish_busy, ke2);

	/* The key is destroyed exactly once, with exactly ten attempts logged; a tombstone says
	 * so to every later caller. */
	assert_tombstone(f, ALICE, 1, DEFAULT_LIMIT, started);
	assert_destroyed_on_start(f, ALICE, P256, DEFAULT_LIMIT);
	audit_event ev[AUDIT_MAX];
	static char raw[RAW_MAX];
	const size_t n = read_audit(f, ev, AUDIT_MAX, raw, sizeof(raw));
	assert_int_equal(count_events(ev, n, "attempt_used", ALICE), DEFAULT_LIMIT);
	assert_int_equal(count_events(ev, n, "destroyed", ALICE), 1);
	assert_raw_account_absent(raw, ALICE);

	/* The bystander is untouched and still recovers. */
	const bkv_record bob_after = must_peek(f, BOB);
	assert_same_row(&bob_before, &bob_after);
	assert_int_equal(count_events(ev, n, "attempt_used", BOB), 0);
	must_recover_fully(f, BOB, R255, PASSWORD, bob_version);
}

static void concurrent_guessers_get_exactly_the_attempt_limit_of_ke2s(void **state)
{
	concurrent_guessers(*state, false);
}

static void concurrent_guessers_through_a_committer_get_exactly_the_limit(void **state)
{
	concurrent_guessers(*state, true);
}

/* ------------------------------------------------------------------------------------ */
/* SIGKILL                                                                               */
/* ------------------------------------------------------------------------------------ */

/* Reports every attempts_remaining it receives; never finishes a guess. */
static int start_forever(bkv_vault *v, bkv_reply_buffers *buf, int report_fd, void *arg)
{
	(void)arg;
	for (;;) {
		attempt at;
		const bkvd_status st =
		    client_recover_start(v, buf, account_of(ALICE), P256, WRONG_PASSWORD, &at);
		if (st.code == BKV_CODE_OK) {
			const uint32_t remaining = at.attempts_remaining;
			if (write(report_fd, &remaining, sizeof(remaining)) !=
			    (ssize_t)sizeof(remaining))
				return 1;
		} else if (st.code != BKV_CODE_UNAVAILABLE) {
			for (;;)
				pause(); /* used up: wait for the kill */
		}
	}
}

static void sigkill_during_recover_start_never_loses_a_committed_attempt(void **state)
{
	fx *f = *state;
	for (int round = 0; round < KILL_ROUNDS; round++) {
		const uint64_t version = must_register(f, ALICE, P256, PASSWORD, MAX_LIMIT);
		const bkv_record registered = must_peek(f, ALICE);
		vault_detach(f);
		int report[2], ready[2];
		assert_int_equal(pipe(report), 0);
		assert_int_equal(pipe(ready), 0);
		const worker w = {start_forever, NULL, report[1],
		                  ready[1],      -1,   {report[0], ready[0], -1, -1}};
		const pid_t pid = spawn_worker(f, &w);
		close(report[1]);
		close(ready[1]);
		const bool is_ready = wait_ready(ready[0], pid, now_ms() + CHILD_DEADLINE_MS);
		/* A random moment: after a random number of answers, plus up to 3 ms, so the kill
		 * lands anywhere in a RecoverStart (token work, the commit, or the reply). */
		const uint32_t before_kill = randombytes_uniform(MAX_LIMIT - 2);
		uint32_t remaining[MAX_LIMIT + 1];
		size_t got = 0;
		while (is_ready && got < before_kill &&
		       read_exactly(report[0], &remaining[got], sizeof(uint32_t),
		                    now_ms() + CHILD_DEADLINE_MS))
			got++;
		struct timespec jitter = {0, (long)randombytes_uniform(3000000)};
		nanosleep(&jitter, NULL);
		kill(pid, SIGKILL);
		int status = 0;
		reap_all(&pid, &status, 1, now_ms() + CHILD_DEADLINE_MS);
		while (got < MAX_LIMIT + 1 &&
		       read_exactly(report[0], &remaining[got], sizeof(uint32_t), now_ms() + 1000))
			got++;
		close(report[0]);
		close(ready[0]);
		reattach(f);

		assert_true(is_ready);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		assert_true(got <= MAX_LIMIT);
		for (size_t i = 0; i < got; i++)
			assert_int_equal(remaining[i], MAX_LIMIT - 1 - i);
		const uint32_t reported_used = got > 0 ? MAX_LIMIT - remaining[got - 1] : 0;
		assert_true(db_integrity_ok(f));
		const bkv_record r = must_peek(f, ALICE);
		print_message(
		    "round %d: killed after %u answers + jitter; %zu reported; record %s, "
		    "attempts_used %u\n",
		    round, before_kill, got, r.state == BKV_RECORD_DESTROYED ? "destroyed" : "live",
		    r.attempts_used);
		assert_int_equal(r.record_version, version);
		if (r.state == BKV_RECORD_DESTROYED) {
			/* destroyed by the start after the last attempt */
			assert_int_equal(reported_used, MAX_LIMIT);
			assert_int_equal(r.attempts_used, MAX_LIMIT);
			continue;
		}
		assert_int_equal(r.state, BKV_RECORD_LIVE);
		/* Every reported attempt is committed; at most one more, whose KE2 was lost. */
		assert_true(r.attempts_used >= reported_used);
		assert_true(r.attempts_used <= reported_used + 1);
		assert_int_equal(r.guess_seq - registered.guess_seq, r.attempts_used);
	}
}

/* ------------------------------------------------------------------------------------ */
/* Group commit: a leader killed with a group of commits in flight                       */
/* ------------------------------------------------------------------------------------ */

#define LEADER_KILL_GUESSERS 6

typedef struct answer {
	int32_t code;
	uint32_t remaining; /* with a KE2 */
} answer;

/* Reports every RecoverStart answer; retries UNAVAILABLE; stops once refused. */
static int guess_and_report_each(bkv_vault *v, bkv_reply_buffers *buf, int report_fd, void *arg)
{
	(void)arg;
	const int64_t deadline = now_ms() + CHILD_DEADLINE_MS;
	while (now_ms() < deadline) {
		attempt at;
		const bkvd_status st =
		    client_recover_start(v, buf, account_of(ALICE), P256, WRONG_PASSWORD, &at);
		const answer a = {(int32_t)st.code,
		                  st.code == BKV_CODE_OK ? at.attempts_remaining : 0};
		if (write(report_fd, &a, sizeof(a)) != (ssize_t)sizeof(a))
			return 1;
		if (st.code != BKV_CODE_OK && st.code != BKV_CODE_UNAVAILABLE)
			return st.code == BKV_CODE_FAILED_PRECONDITION ? 0 : 2;
	}
	return WORKER_TIMEOUT;
}

static uint32_t raw_attempts_used(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT attempts_used FROM records WHERE "
	                                    "account_id = CAST(? AS BLOB)",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_blob(st, 1, ALICE, (int)strlen(ALICE), SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	const uint32_t used = (uint32_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return used;
}

/* Guessers in processes that commit together. While this test holds the database's write
 * lock, the commit leader is killed, then the next leader with other guessers' attempts
 * in its commit: those commits are in doubt, so each of their guessers is answered
 * UNAVAILABLE and gets no KE2, and nothing of them reaches the database. Then the others
 * use up the record: exactly attempt_limit KE2s in all, each with its own count, and every
 * attempt in the database was answered with one. With a committer, the first leader
 * killed is the committer, and the guessers lead from then on. */
static void commit_leaders_killed(fx *f, bool with_committer)
{
	if (on_pg)
		skip(); /* PostgreSQL groups commits in the server; no group here */
	must_register(f, ALICE, P256, PASSWORD, MAX_LIMIT);
	const bkv_record registered = must_peek(f, ALICE);
	vault_detach(f);
	const pid_t committer = with_committer ? start_committer(f) : 0;
	int report[2], ready[2], go[2];
	assert_int_equal(pipe(report), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	const worker w = {guess_and_report_each,           NULL, report[1], ready[1], go[0],
	                  {report[0], ready[0], go[1], -1}};
	pid_t pids[LEADER_KILL_GUESSERS];
	int statuses[LEADER_KILL_GUESSERS];
	bool all_ready = true;
	size_t spawned = 0;
	for (; spawned < LEADER_KILL_GUESSERS && all_ready; spawned++) {
		pids[spawned] = spawn_worker(f, &w);
		all_ready = wait_ready(ready[0], pids[spawned], now_ms() + CHILD_DEADLINE_MS);
	}
	close(report[1]);
	close(ready[1]);
	close(go[0]);
	assert_true(all_ready);
	/* the lock first, then go: the first commit waits for it and the others queue */
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	const uint32_t used_when_held = raw_attempts_used(db);
	close(go[1]);
	answer answers[4 * MAX_LIMIT + 64];
	size_t n = 0, ke2 = 0;
	const bkv_storage_group_info first =
	    tg_wait_for_commit(f->group, 0, 1, 1, CHILD_DEADLINE_MS / 1000);
	if (with_committer)
		assert_int_equal(first.leader, committer);
	kill(first.leader, SIGKILL);
	int status = 0;
	assert_int_equal(waitpid(first.leader, &status, 0), first.leader);
	bkv_storage_group_reap(f->group, first.leader);
	const bkv_storage_group_info second =
	    tg_wait_for_commit(f->group, first.leader, 2, 0, CHILD_DEADLINE_MS / 1000);
	kill(second.leader, SIGKILL);
	assert_int_equal(waitpid(second.leader, &status, 0), second.leader);
	bkv_storage_group_reap(f->group, second.leader);
	const uint32_t used_before_release = raw_attempts_used(db);
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	pid_t left[LEADER_KILL_GUESSERS];
	size_t nleft = 0;
	for (size_t i = 0; i < spawned; i++)
		if (pids[i] != first.leader && pids[i] != second.leader)
			left[nleft++] = pids[i];
	reap_all(left, statuses, nleft, now_ms() + CHILD_DEADLINE_MS);
	while (n < sizeof(answers) / sizeof(answers[0]) &&
	       read_exactly(report[0], &answers[n], sizeof(answer), now_ms() + 1000))
		n++;
	close(report[0]);
	close(ready[0]);
	reattach(f);

	bool seen[MAX_LIMIT] = {false};
	size_t unavailable = 0;
	ke2 = 0;
	for (size_t i = 0; i < n; i++) {
		if (answers[i].code == BKV_CODE_UNAVAILABLE)
			unavailable++;
		if (answers[i].code != BKV_CODE_OK)
			continue;
		ke2++;
		assert_true(answers[i].remaining < MAX_LIMIT);
		assert_false(seen[answers[i].remaining]); /* every count once: none lost */
		seen[answers[i].remaining] = true;
	}
	const bkv_record r = must_peek(f, ALICE);
	print_message("killed leaders %d (a commit of %u) and %d (a commit of %u); %zu KE2s, "
	              "%zu UNAVAILABLE answers; %u attempts used when the lock was taken\n",
	              (int)first.leader, first.in_batch, (int)second.leader, second.in_batch, ke2,
	              unavailable, used_when_held);
	for (size_t i = 0; i < nleft; i++)
		assert_exited_cleanly(statuses[i], "guesser");
	assert_int_equal(used_before_release, used_when_held); /* the dead commits: nothing */
	assert_true(unavailable >= 1); /* the second leader's followers: in doubt */
	assert_int_equal(ke2, MAX_LIMIT);
	assert_int_equal(r.attempts_used, MAX_LIMIT);
	assert_int_equal(r.guess_seq - registered.guess_seq, MAX_LIMIT);
	assert_true(db_integrity_ok(f));
}

static void a_commit_leader_killed_mid_commit_sends_no_ke2_without_its_commit(void **state)
{
	commit_leaders_killed(*state, false);
}

static void a_committer_killed_mid_commit_sends_no_ke2_without_its_commit(void **state)
{
	commit_leaders_killed(*state, true);
}

static int register_then_wait(bkv_vault *v, bkv_reply_buffers *buf, int report_fd, void *arg)
{
	const uint8_t *wk = arg;
	Bkv__V1__RegisterFinishResponse resp;
	if (client_register(v, buf, account_of(BOB), R255, NEW_PASSWORD, 0, wk, WK_LEN, 0, &resp)
	        .code != BKV_CODE_OK)
		return 1;
	if (write(report_fd, &resp.record_version, sizeof(resp.record_version)) !=
	    (ssize_t)sizeof(resp.record_version))
		return 2;
	for (;;)
		pause();
}

static void registration_survives_sigkill_right_after_register_finish(void **state)
{
	fx *f = *state;
	vault_detach(f);
	int report[2];
	assert_int_equal(pipe(report), 0);
	const worker w = {register_then_wait, f->wk, report[1], -1, -1, {report[0], -1, -1, -1}};
	const pid_t pid = spawn_worker(f, &w);
	close(report[1]);
	uint64_t version = 0;
	const bool got =
	    read_exactly(report[0], &version, sizeof(version), now_ms() + CHILD_DEADLINE_MS);
	kill(pid, SIGKILL);
	int status = 0;
	reap_all(&pid, &status, 1, now_ms() + CHILD_DEADLINE_MS);
	close(report[0]);
	reattach(f);

	assert_true(got);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(db_integrity_ok(f));
	const Bkv__V1__GetStatusResponse s = status_of(f, BOB);
	assert_true(s.registered);
	assert_int_equal(s.record_version, version);
	assert_int_equal(s.suite, BKV__V1__SUITE__SUITE_RISTRETTO255_SHA512);
	must_recover_fully(f, BOB, R255, NEW_PASSWORD, version);
}

/* ------------------------------------------------------------------------------------ */
/* Issue 9: RegisterStart answers never test guesses against a record                   */
/* ------------------------------------------------------------------------------------ */

/* The passwords the attacker tries; the right one (PASSWORD, or NEW_PASSWORD after a
 * change) is among them, neither first nor last. */
static const char *const GUESSES[] = {
    "123456",
    "password",
    WRONG_PASSWORD,
    PASSWORD,
    "hunter2",
    NEW_PASSWORD,
    "Correct horse battery staple",
    "correct horse battery stapl",
};
#define NGUESSES (sizeof(GUESSES) / sizeof(GUESSES[0]))

/* The client's side of one guess: its login state and KE1 (whose first Noe bytes are the
 * blinded element, the same bytes a RegistrationRequest holds). */
typedef struct guess {
	const char *password;
	opaque_client_login_state cs;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
} guess;

static void guess_start(opaque_suite_id suite, const char *password, guess *g)
{
	const opaque_config cfg = client_config(suite);
	g->password = password;
	assert_int_equal(opaque_client_login_start(&cfg, (const uint8_t *)password,
	                                           strlen(password), &g->cs, g->ke1,
	                                           sizes_of(suite)->ke1),
	                 OPAQUE_OK);
}

/* The evaluated element RegisterStart answers for the blinded element (RFC 9807:
 * RegistrationResponse = evaluated_message (Noe) || server_public_key). */
static void register_start_evaluate(fx *f, const char *account, opaque_suite_id suite,
                                    const uint8_t *blinded, uint8_t *evaluated)
{
	const opaque_sizes *sz = sizes_of(suite);
	Bkv__V1__RegisterStartRequest req = BKV__V1__REGISTER_START_REQUEST__INIT;
	Bkv__V1__RegisterStartResponse resp;
	req.suite = (Bkv__V1__Suite)suite;
	req.registration_request.data = (uint8_t *)blinded;
	req.registration_request.len = sz->registration_request;
	assert_code(bkvd_register_start(&f->v, account_of(account), &req, &resp, &f->buf),
	            BKV_CODE_OK);
	assert_int_equal(resp.registration_response.len, sz->registration_response);
	assert_true(resp.registration_ticket.len > 0);
	memcpy(evaluated, resp.registration_response.data, sz->Noe);
}

/* CONTROL: the evaluation under the record's own OPRF key, computed here with the vault's
 * token: credential_identifier = account id || the stored registration id (the design's,
 * built here, not by the code under test). This is what RegisterStart answered before the
 * fix, when the key depended on the account alone. */
static void record_key_evaluate(fx *f, const char *account, const bkv_record *r,
                                opaque_suite_id suite, const uint8_t *blinded, uint8_t *evaluated)
{
	const opaque_sizes *sz = sizes_of(suite);
	uint8_t cred[BKV_ACCOUNT_ID_MAX + BKV_STORAGE_REG_ID_MAX];
	const size_t alen = strlen(account);
	memcpy(cred, account, alen);
	memcpy(cred + alen, r->registration_id, r->registration_id_len);
	const opaque_config cfg = bkv_opaque_config(&f->v, suite);
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	assert_int_equal(opaque_server_registration_response(
	                     &cfg, bkv_token_server_keys(f->v.token, suite), cred,
	                     alen + r->registration_id_len, blinded, sz->registration_request,
	                     response, sz->registration_response),
	                 OPAQUE_OK);
	memcpy(evaluated, response, sz->Noe);
}

/* The offline check: evaluated spliced into a copy of ke2 (KE2 = evaluated_message ||
 * masking_nonce || masked_response || AKE), then the client's KE3 step for the guess on a
 * copy of its state. OPAQUE_ERR_ENVELOPE_RECOVERY says "not this password"; anything else
 * (the server MAC failing after the envelope opened, or success) says it is. */
static opaque_err splice_and_check(opaque_suite_id suite, const guess *g, const uint8_t *ke2,
                                   size_t ke2_len, const uint8_t *evaluated)
{
	const opaque_sizes *sz = sizes_of(suite);
	const opaque_config cfg = client_config(suite);
	uint8_t spliced[OPAQUE_MAX_KE2_BYTES];
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES], sk[OPAQUE_MAX_HASH_BYTES], ek[OPAQUE_MAX_HASH_BYTES];
	assert_int_equal(ke2_len, sz->ke2);
	memcpy(spliced, ke2, ke2_len);
	memcpy(spliced, evaluated, sz->Noe);
	opaque_client_login_state cs = g->cs;
	const opaque_err err = opaque_client_login_finish(
	    &cfg, &cs, (const uint8_t *)g->password, strlen(g->password), NULL, spliced, ke2_len,
	    ke3, sz->ke3, sk, sz->session_key, ek, sz->export_key);
	sodium_memzero(&cs, sizeof(cs));
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(ek, sizeof(ek));
	return err;
}

static void assert_learns_nothing(opaque_suite_id suite, const guess *g, const uint8_t *ke2,
                                  size_t ke2_len, const uint8_t *evaluated, const char *what)
{
	const opaque_err err = splice_and_check(suite, g, ke2, ke2_len, evaluated);
	if (err != OPAQUE_ERR_ENVELOPE_RECOVERY)
		fail_msg("%s: the guess \"%s\" gave %s, not the envelope-recovery failure every "
		         "other guess gives: an offline oracle",
		         what, g->password, opaque_strerror(err));
}

/* The attack of issue 9: an account-token holder without the password spends one counted
 * RecoverStart for KE2, then asks RegisterStart to evaluate each guess and checks the guess
 * offline against KE2's envelope. Every guess, the right one included, must fail envelope
 * recovery alike, and the attempt count must be exactly the one RecoverStart. The controls
 * show the check is a real oracle whenever the evaluation is under the record's key. */
static void register_start_answers_never_test_guesses_against_the_envelope(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite;
	const opaque_sizes *sz = sizes_of(suite);
	const uint64_t version = must_register(f, ALICE, suite, PASSWORD, 3);
	attempt at;
	must_start(f, ALICE, suite, "any password at all", &at); /* the one counted attempt */
	assert_int_equal(status_of(f, ALICE).attempts_used, 1);
	const bkv_record record = must_peek(f, ALICE);

	static guess g[NGUESSES];
	const unsigned logins = g_login_start_calls, commits = g_commit_calls;
	static uint8_t z[NGUESSES][OPAQUE_MAX_ELEMENT_BYTES];
	for (size_t i = 0; i < NGUESSES; i++) {
		guess_start(suite, GUESSES[i], &g[i]);
		register_start_evaluate(f, ALICE, suite, g[i].ke1, z[i]);
		assert_learns_nothing(suite, &g[i], at.ke2, at.ke2_len, z[i], "RegisterStart");
	}
	/* A fresh key every time: the same blinded element evaluates differently. */
	for (size_t i = 0; i < NGUESSES; i++) {
		uint8_t z2[OPAQUE_MAX_ELEMENT_BYTES];
		register_start_evaluate(f, ALICE, suite, g[i].ke1, z2);
		assert_memory_not_equal(z[i], z2, sz->Noe);
		assert_learns_nothing(suite, &g[i], at.ke2, at.ke2_len, z2, "RegisterStart again");
	}
	/* RegisterStart computed no KE2 and committed nothing; the count is exact. */
	assert_int_equal(g_login_start_calls, logins);
	assert_int_equal(g_commit_calls, commits);
	const Bkv__V1__GetStatusResponse s = status_of(f, ALICE);
	assert_int_equal(s.attempts_used, 1);
	assert_int_equal(s.record_version, version);
	const bkv_record after = must_peek(f, ALICE);
	assert_same_row(&record, &after);

	/* CONTROL 1: evaluations under the record's key (what RegisterStart answered before the
	 * fix) single out exactly the right password: its envelope opens, and only the server
	 * MAC (over another KE1) fails. So this test fails if RegisterStart used that key. */
	for (size_t i = 0; i < NGUESSES; i++) {
		uint8_t zr[OPAQUE_MAX_ELEMENT_BYTES];
		record_key_evaluate(f, ALICE, &record, suite, g[i].ke1, zr);
		const opaque_err err = splice_and_check(suite, &g[i], at.ke2, at.ke2_len, zr);
		if (strcmp(GUESSES[i], PASSWORD) == 0)
			assert_int_equal(err, OPAQUE_ERR_SERVER_AUTH);
		else
			assert_int_equal(err, OPAQUE_ERR_ENVELOPE_RECOVERY);
	}
	/* CONTROL 2, through the vault: a second, counted RecoverStart for the right password;
	 * its evaluated element, spliced into the first KE2, opens the envelope too. */
	attempt right;
	must_start(f, ALICE, suite, PASSWORD, &right);
	guess rg = {PASSWORD, right.cs, {0}};
	memcpy(rg.ke1, right.ke1, sz->ke1);
	assert_int_equal(splice_and_check(suite, &rg, at.ke2, at.ke2_len, right.ke2),
	                 OPAQUE_ERR_SERVER_AUTH);
	assert_int_equal(status_of(f, ALICE).attempts_used, 2);
	sodium_memzero(&rg, sizeof(rg));
	must_recover(f, ALICE, &right, f->wk, sizeof(f->wk), version);
	for (size_t i = 0; i < NGUESSES; i++)
		opaque_client_login_state_wipe(&g[i].cs);
}

/* The same with evaluations collected before a password change: RegisterStart answers for
 * the new password, and a counted RecoverStart evaluation for it under the old record, are
 * all useless against the new record's KE2. */
static void register_start_answers_from_before_a_password_change_test_nothing_after_it(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite;
	const opaque_sizes *sz = sizes_of(suite);
	const uint64_t v1 = must_register(f, ALICE, suite, PASSWORD, 3);

	/* Before the change: every guess evaluated by RegisterStart... */
	static guess g[NGUESSES];
	static uint8_t z[NGUESSES][OPAQUE_MAX_ELEMENT_BYTES];
	for (size_t i = 0; i < NGUESSES; i++) {
		guess_start(suite, GUESSES[i], &g[i]);
		register_start_evaluate(f, ALICE, suite, g[i].ke1, z[i]);
	}
	/* ...and the new password evaluated under the old record's key by a counted guess. */
	attempt old;
	must_start(f, ALICE, suite, NEW_PASSWORD, &old);
	guess og = {NEW_PASSWORD, old.cs, {0}};
	memcpy(og.ke1, old.ke1, sz->ke1);

	/* The owner changes the password (`bkv change-password`: replace the version held). */
	const uint64_t v2 = must_register(f, ALICE, suite, NEW_PASSWORD, 3);
	assert_int_equal(v2, v1 + 1);
	attempt at;
	must_start(f, ALICE, suite, "any password at all", &at);
	const bkv_record record = must_peek(f, ALICE);

	for (size_t i = 0; i < NGUESSES; i++)
		assert_learns_nothing(suite, &g[i], at.ke2, at.ke2_len, z[i],
		                      "RegisterStart before the change");
	assert_learns_nothing(suite, &og, at.ke2, at.ke2_len, old.ke2,
	                      "RecoverStart before the change");
	assert_int_equal(status_of(f, ALICE).attempts_used, 1);

	/* CONTROL: under the new record's key the new password does open the envelope. */
	for (size_t i = 0; i < NGUESSES; i++) {
		uint8_t zr[OPAQUE_MAX_ELEMENT_BYTES];
		record_key_evaluate(f, ALICE, &record, suite, g[i].ke1, zr);
		assert_int_equal(splice_and_check(suite, &g[i], at.ke2, at.ke2_len, zr),
		                 strcmp(GUESSES[i], NEW_PASSWORD) == 0
		                     ? OPAQUE_ERR_SERVER_AUTH
		                     : OPAQUE_ERR_ENVELOPE_RECOVERY);
	}
	must_recover_fully(f, ALICE, suite, NEW_PASSWORD, v2);
	for (size_t i = 0; i < NGUESSES; i++)
		opaque_client_login_state_wipe(&g[i].cs);
	sodium_memzero(&og, sizeof(og));
}

/* ------------------------------------------------------------------------------------ */
/* Registration ids, registration tickets and per-account versions                      */
/* ------------------------------------------------------------------------------------ */

static void every_registration_gets_a_fresh_registration_id_named_by_its_ticket(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite;
	const int64_t t0 = (int64_t)time(NULL);
	reg_start rs;
	assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), suite, PASSWORD, &rs),
	            BKV_CODE_OK);
	const int64_t t1 = (int64_t)time(NULL);
	/* A GCM box with a 12-byte IV on SoftHSM: header, IV, the plaintext, the tag. */
	assert_int_equal(rs.ticket_len, 2 + BKV_TOKEN_IV_BYTES + BKV_REGISTRATION_TICKET_PLAINTEXT +
	                                    BKV_TOKEN_TAG_BYTES);
	bkv_registration_ticket rt;
	assert_int_equal(bkv_registration_ticket_open(f->v.token, account_of(ALICE), rs.ticket,
	                                              rs.ticket_len, &rt),
	                 BKV_TOKEN_OK);
	assert_int_equal(rt.suite, suite);
	assert_true(rt.expires_at >= t0 + 600 && rt.expires_at <= t1 + 600); /* 10 minutes */
	assert_false(is_zero(rt.registration_id, sizeof(rt.registration_id)));
	/* Sealed for this account alone. */
	bkv_registration_ticket other;
	assert_int_equal(bkv_registration_ticket_open(f->v.token, account_of(BOB), rs.ticket,
	                                              rs.ticket_len, &other),
	                 BKV_TOKEN_ERR_AUTH);
	/* RegisterFinish stores exactly the ticket's id. */
	Bkv__V1__RegisterFinishResponse rr;
	const finish_req req = finish_req_of(&rs, suite, 0, f->wk, sizeof(f->wk), 0);
	assert_code(send_register_finish(&f->v, account_of(ALICE), &req, &rr), BKV_CODE_OK);
	assert_int_equal(rr.record_version, 1);
	const bkv_record r1 = must_peek(f, ALICE);
	assert_int_equal(r1.registration_id_len, BKV_REGISTRATION_ID_BYTES);
	assert_memory_equal(r1.registration_id, rt.registration_id, BKV_REGISTRATION_ID_BYTES);
	/* A ticket serves one registration: replacing with it again is refused, so no two
	 * records ever share an OPRF key. */
	const finish_req again = finish_req_of(&rs, suite, 1, f->wk, sizeof(f->wk), 0);
	assert_code(send_register_finish(&f->v, account_of(ALICE), &again, &rr),
	            BKV_CODE_FAILED_PRECONDITION);
	const bkv_record same = must_peek(f, ALICE);
	assert_int_equal(same.record_version, 1);
	assert_memory_equal(same.mac, r1.mac, r1.mac_len);
	/* Every RegisterStart picks another id. */
	uint8_t ids[8][BKV_REGISTRATION_ID_BYTES];
	for (size_t i = 0; i < 8; i++) {
		reg_start more;
		assert_code(
		    client_make_record(&f->v, &f->buf, account_of(ALICE), suite, PASSWORD, &more),
		    BKV_CODE_OK);
		assert_int_equal(bkv_registration_ticket_open(f->v.token, account_of(ALICE),
		                                              more.ticket, more.ticket_len, &rt),
		                 BKV_TOKEN_OK);
		memcpy(ids[i], rt.registration_id, BKV_REGISTRATION_ID_BYTES);
		assert_memory_not_equal(ids[i], r1.registration_id, BKV_REGISTRATION_ID_BYTES);
		for (size_t j = 0; j < i; j++)
			assert_memory_not_equal(ids[i], ids[j], BKV_REGISTRATION_ID_BYTES);
	}
	/* Replacing stores the new registration's id; the record recovers under it. */
	const uint64_t v2 = must_register(f, ALICE, suite, NEW_PASSWORD, 0);
	const bkv_record r2 = must_peek(f, ALICE);
	assert_memory_not_equal(r2.registration_id, r1.registration_id, BKV_REGISTRATION_ID_BYTES);
	must_recover_fully(f, ALICE, suite, NEW_PASSWORD, v2);
}

static void record_versions_count_per_account_from_1(void **state)
{
	fx *f = *state;
	assert_int_equal(must_register(f, ALICE, P256, PASSWORD, 0), 1);
	assert_int_equal(must_register(f, BOB, R255, PASSWORD, 0), 1); /* not vault-wide */
	assert_int_equal(must_register(f, ALICE, P256, PASSWORD, 0), 2);
	assert_int_equal(must_register(f, ALICE, R255, NEW_PASSWORD, 0), 3);
	assert_int_equal(must_register(f, BOB, R255, PASSWORD, 0), 2);
	assert_int_equal(status_of(f, ALICE).record_version, 3);
	assert_int_equal(status_of(f, BOB).record_version, 2);
	must_recover_fully(f, ALICE, R255, NEW_PASSWORD, 3);
	Bkv__V1__DeleteResponse dr;
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &dr), BKV_CODE_OK);
	assert_int_equal(must_register(f, ALICE, P256, PASSWORD, 0), 1); /* starts over */
	must_recover_fully(f, ALICE, P256, PASSWORD, 1);
	must_recover_fully(f, BOB, R255, PASSWORD, 2);
	/* The audit log names each account's own versions. */
	audit_event ev[AUDIT_MAX];
	static char raw[RAW_MAX];
	const size_t n = read_audit(f, ev, AUDIT_MAX, raw, sizeof(raw));
	uint64_t alice[4], bob[2];
	size_t na = 0, nb = 0;
	char ha[33], hb[33];
	expected_hash(ALICE, ha);
	expected_hash(BOB, hb);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(ev[i].event, "registered") != 0)
			continue;
		assert_string_equal(ev[i].extra_key, "record_version");
		if (strcmp(ev[i].account, ha) == 0 && na < 4)
			alice[na++] = ev[i].extra;
		else if (strcmp(ev[i].account, hb) == 0 && nb < 2)
			bob[nb++] = ev[i].extra;
	}
	assert_int_equal(na, 4);
	assert_int_equal(nb, 2);
	const uint64_t want_alice[] = {1, 2, 3, 1}, want_bob[] = {1, 2};
	assert_memory_equal(alice, want_alice, sizeof(alice));
	assert_memory_equal(bob, want_bob, sizeof(bob));
}

/* A ticket from registration 1 never finishes against registration 2, even after Delete
 * and a new registration with the same password, where the record version and the guess
 * counter start over and match the old ticket's exactly: only the registration id differs,
 * and the old KE3 is a valid one for the old ticket. */
static void recover_finish_rejects_a_ticket_from_before_delete_and_a_new_registration(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	const bkv_record first = p.row;
	Bkv__V1__DeleteResponse dr;
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &dr), BKV_CODE_OK);
	assert_true(dr.deleted);
	const uint64_t v = must_register(f, ALICE, f->suite, PASSWORD, 0);
	assert_int_equal(v, p.version);
	attempt at;
	must_start(f, ALICE, f->suite, PASSWORD, &at);
	p.row = must_peek(f, ALICE);
	assert_int_equal(p.row.record_version, first.record_version);
	assert_int_equal(p.row.guess_seq, first.guess_seq);
	assert_int_equal(p.row.last_finished_seq, first.last_finished_seq);
	assert_int_equal(p.row.attempts_used, first.attempts_used);
	assert_memory_not_equal(p.row.registration_id, first.registration_id,
	                        BKV_REGISTRATION_ID_BYTES);
	assert_attempt_info(assert_finish_rejected(f, &p, p.at.ticket, p.at.ticket_len,
	                                           BKV_CODE_FAILED_PRECONDITION),
	                    DEFAULT_LIMIT - 1, DEFAULT_LIMIT);
	/* The new registration's own guess finishes, and the old ticket stays refused. */
	must_recover(f, ALICE, &at, f->wk, sizeof(f->wk), v);
	p.row = must_peek(f, ALICE);
	assert_attempt_info(assert_finish_rejected(f, &p, p.at.ticket, p.at.ticket_len,
	                                           BKV_CODE_FAILED_PRECONDITION),
	                    DEFAULT_LIMIT, DEFAULT_LIMIT);
}

/* ------------------------------------------------------------------------------------ */
/* Compare-and-set registration                                                          */
/* ------------------------------------------------------------------------------------ */

/* RegisterFinish that must fail with `expected` and change nothing (account's row or its
 * absence). */
static void assert_register_refused(fx *f, const char *account, const char *password,
                                    uint64_t replaces, bkv_code expected)
{
	bkv_record before;
	const bkv_storage_err had = peek(f, account, &before);
	Bkv__V1__RegisterFinishResponse rr;
	assert_code(client_register(&f->v, &f->buf, account_of(account), f->suite, password,
	                            replaces, f->wk, sizeof(f->wk), 0, &rr),
	            expected);
	assert_int_equal(rr.record_version, 0);
	bkv_record after;
	assert_int_equal(peek(f, account, &after), had);
	if (had == BKV_STORAGE_OK)
		assert_same_row(&before, &after);
}

static void register_finish_is_compare_and_set_on_the_record_version(void **state)
{
	fx *f = *state;
	/* Nothing to replace. */
	const uint64_t none[] = {1, 2, UINT64_MAX};
	for (size_t i = 0; i < 3; i++)
		assert_register_refused(f, ALICE, PASSWORD, none[i], BKV_CODE_ABORTED);
	/* Create only. */
	Bkv__V1__RegisterFinishResponse rr;
	assert_code(client_register(&f->v, &f->buf, account_of(ALICE), f->suite, PASSWORD, 0, f->wk,
	                            sizeof(f->wk), 0, &rr),
	            BKV_CODE_OK);
	assert_int_equal(rr.record_version, 1);
	assert_register_refused(f, ALICE, NEW_PASSWORD, 0, BKV_CODE_ALREADY_EXISTS);
	/* Replace only the version named. */
	const uint64_t wrong[] = {2, 99, UINT64_MAX};
	for (size_t i = 0; i < 3; i++)
		assert_register_refused(f, ALICE, NEW_PASSWORD, wrong[i], BKV_CODE_ABORTED);
	must_recover_fully(f, ALICE, f->suite, PASSWORD, 1); /* the old key is still there */
	assert_code(client_register(&f->v, &f->buf, account_of(ALICE), f->suite, NEW_PASSWORD, 1,
	                            f->wk, sizeof(f->wk), 1, &rr),
	            BKV_CODE_OK);
	assert_int_equal(rr.record_version, 2);
	assert_register_refused(f, ALICE, PASSWORD, 1, BKV_CODE_ABORTED); /* stale */
	/* Over a tombstone: only its version. */
	assert_code(wrong_guess(f, ALICE, f->suite, NULL), BKV_CODE_PERMISSION_DENIED);
	assert_tombstone(f, ALICE, 2, 1, 0);
	assert_register_refused(f, ALICE, PASSWORD, 0, BKV_CODE_ALREADY_EXISTS);
	assert_register_refused(f, ALICE, PASSWORD, 1, BKV_CODE_ABORTED);
	assert_register_refused(f, ALICE, PASSWORD, 3, BKV_CODE_ABORTED);
	assert_code(client_register(&f->v, &f->buf, account_of(ALICE), f->suite, PASSWORD, 2, f->wk,
	                            sizeof(f->wk), 0, &rr),
	            BKV_CODE_OK);
	assert_int_equal(rr.record_version, 3);
	must_recover_fully(f, ALICE, f->suite, PASSWORD, 3);
}

static void start_after_read(void *arg)
{
	attempt *at = arg;
	bkv_reply_buffers *buf = calloc(1, sizeof(*buf));
	if (buf == NULL)
		return;
	g_rereg.st =
	    client_recover_start(&g_rereg.f->v, buf, account_of(ALICE), P256, PASSWORD, at);
	free(buf);
}

/* Registrations racing: each RegisterFinish reads the row, and another lands before its
 * write. The compare-and-set decides on the row as it is at the write. */
static void registrations_racing_for_the_same_record_version_let_only_one_win(void **state)
{
	fx *f = *state;
	const uint64_t v1 = must_register(f, ALICE, P256, PASSWORD, 0);
	/* Two replacements of version 1: the one that writes first wins, the other is ABORTED. */
	reg_start rs;
	assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), P256, "a third one", &rs),
	            BKV_CODE_OK);
	reregister_next_read(f, ALICE, NEW_PASSWORD, v1);
	Bkv__V1__RegisterFinishResponse rr;
	finish_req req = finish_req_of(&rs, P256, v1, f->wk, sizeof(f->wk), 0);
	assert_code(send_register_finish(&f->v, account_of(ALICE), &req, &rr), BKV_CODE_ABORTED);
	assert_null(g_after_get);
	assert_code(g_rereg.st, BKV_CODE_OK);
	assert_int_equal(g_rereg.version, v1 + 1);
	assert_int_equal(status_of(f, ALICE).record_version, v1 + 1);
	must_recover_fully(f, ALICE, P256, NEW_PASSWORD, v1 + 1);

	/* Two creations: the second finds the first's record. */
	assert_code(client_make_record(&f->v, &f->buf, account_of(BOB), P256, "a third one", &rs),
	            BKV_CODE_OK);
	reregister_next_read(f, BOB, NEW_PASSWORD, 0);
	req = finish_req_of(&rs, P256, 0, f->wk, sizeof(f->wk), 0);
	assert_code(send_register_finish(&f->v, account_of(BOB), &req, &rr),
	            BKV_CODE_ALREADY_EXISTS);
	assert_null(g_after_get);
	assert_code(g_rereg.st, BKV_CODE_OK);
	assert_int_equal(g_rereg.version, 1);
	must_recover_fully(f, BOB, P256, NEW_PASSWORD, 1);

	/* A RecoverStart lands between the read and the write: the version named is still the
	 * current one, so the replacement goes through over the moved row, keeps its guess
	 * counter, and the guess that moved it can no longer be finished. */
	const bkv_record before = must_peek(f, ALICE);
	assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), P256, PASSWORD, &rs),
	            BKV_CODE_OK);
	static attempt moved;
	memset(&g_rereg, 0, sizeof(g_rereg));
	g_rereg.f = f;
	g_after_get_arg = &moved;
	g_after_get = start_after_read;
	req = finish_req_of(&rs, P256, v1 + 1, f->wk, sizeof(f->wk), 0);
	assert_code(send_register_finish(&f->v, account_of(ALICE), &req, &rr), BKV_CODE_OK);
	g_after_get_arg = NULL;
	assert_null(g_after_get);
	assert_code(g_rereg.st, BKV_CODE_OK);
	assert_int_equal(rr.record_version, v1 + 2);
	const bkv_record after = must_peek(f, ALICE);
	assert_int_equal(after.guess_seq, before.guess_seq + 1);
	assert_int_equal(after.last_finished_seq, after.guess_seq);
	assert_int_equal(after.attempts_used, 0);
	finish fin;
	client_recover_finish(&f->v, &f->buf, account_of(ALICE), &moved, &fin);
	assert_code(fin.st, BKV_CODE_FAILED_PRECONDITION);
	assert_int_equal(fin.sealed_len, 0);
	must_recover_fully(f, ALICE, P256, PASSWORD, v1 + 2);
}

/* RegisterFinish needs the ticket its RegisterStart returned, for this account and suite:
 * anything else is INVALID_ARGUMENT and changes nothing. */
static void register_finish_refuses_a_missing_forged_or_foreign_registration_ticket(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite, other = suite == P256 ? R255 : P256;
	const uint64_t v1 = must_register(f, ALICE, suite, PASSWORD, 0);
	/* A recovery ticket of ALICE's (it costs an attempt, so taken first). */
	attempt at;
	must_start(f, ALICE, suite, PASSWORD, &at);
	const bkv_record before = must_peek(f, ALICE);

	reg_start rs, bobs, others;
	assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), suite, NEW_PASSWORD, &rs),
	            BKV_CODE_OK);
	assert_code(client_make_record(&f->v, &f->buf, account_of(BOB), suite, NEW_PASSWORD, &bobs),
	            BKV_CODE_OK);
	assert_code(
	    client_make_record(&f->v, &f->buf, account_of(ALICE), other, NEW_PASSWORD, &others),
	    BKV_CODE_OK);
	uint8_t random[BKV_REGISTRATION_TICKET_BYTES], flipped[4][BKV_REGISTRATION_TICKET_BYTES];
	uint8_t longer[BKV_REGISTRATION_TICKET_BYTES + 1];
	randombytes_buf(random, sizeof(random));
	/* box = scheme || iv_len || iv || ciphertext || tag */
	const size_t at_byte[4] = {2, 2 + BKV_TOKEN_IV_BYTES + 2, rs.ticket_len - 1, 0};
	for (size_t i = 0; i < 4; i++) {
		memcpy(flipped[i], rs.ticket, rs.ticket_len);
		flipped[i][at_byte[i]] ^= 0x01;
	}
	memcpy(longer, rs.ticket, rs.ticket_len);
	longer[rs.ticket_len] = 0;
	const struct {
		const char *what;
		const uint8_t *ticket;
		size_t len;
	} cases[] = {
	    {"missing", NULL, 0},
	    {"random", random, sizeof(random)},
	    {"iv flipped", flipped[0], rs.ticket_len},
	    {"ciphertext flipped", flipped[1], rs.ticket_len},
	    {"tag flipped", flipped[2], rs.ticket_len},
	    {"scheme flipped", flipped[3], rs.ticket_len},
	    {"truncated", rs.ticket, rs.ticket_len - 1},
	    {"one byte appended", longer, rs.ticket_len + 1},
	    {"another account's", bobs.ticket, bobs.ticket_len},
	    {"another suite's", others.ticket, others.ticket_len},
	    {"a recovery ticket", at.ticket, at.ticket_len},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		finish_req req = finish_req_of(&rs, suite, v1, f->wk, sizeof(f->wk), 0);
		req.ticket = cases[i].ticket;
		req.ticket_len = cases[i].len;
		Bkv__V1__RegisterFinishResponse rr;
		const bkvd_status st = send_register_finish(&f->v, account_of(ALICE), &req, &rr);
		if (st.code != BKV_CODE_INVALID_ARGUMENT)
			fail_msg("%s registration ticket: %s", cases[i].what,
			         bkv_code_name(st.code));
		assert_int_equal(rr.record_version, 0);
		const bkv_record now = must_peek(f, ALICE);
		assert_same_row(&before, &now);
	}
	/* Nor does a registration ticket pass as a recovery ticket. */
	finish fin;
	client_ke3(&at, &fin);
	assert_int_equal(fin.client_err, OPAQUE_OK);
	Bkv__V1__RecoverFinishResponse fresp;
	assert_code(send_recover_finish(&f->v, &f->buf, account_of(ALICE), rs.ticket, rs.ticket_len,
	                                fin.ke3, fin.ke3_len, &fresp),
	            BKV_CODE_INVALID_ARGUMENT);
	assert_int_equal(fresp.sealed_key.len, 0);
	/* The genuine ticket still works, once the attempt is finished. */
	send_ke3(&f->v, &f->buf, account_of(ALICE), &at, &fin);
	assert_release(&fin, suite, f->wk, sizeof(f->wk), v1);
	const finish_req req = finish_req_of(&rs, suite, v1, f->wk, sizeof(f->wk), 0);
	Bkv__V1__RegisterFinishResponse rr;
	assert_code(send_register_finish(&f->v, account_of(ALICE), &req, &rr), BKV_CODE_OK);
	assert_int_equal(rr.record_version, v1 + 1);
	must_recover_fully(f, ALICE, suite, NEW_PASSWORD, v1 + 1);
}

/* A registration ticket lives 10 minutes: FAILED_PRECONDITION after (the client starts
 * again), OK before. Tickets sealed here with the vault's own token show the checks are on
 * the ticket's fields: expired, another suite, another account. */
static void register_finish_refuses_an_expired_registration_ticket(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite, other = suite == P256 ? R255 : P256;
	reg_start rs;
	assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), suite, PASSWORD, &rs),
	            BKV_CODE_OK);
	const finish_req req = finish_req_of(&rs, suite, 0, f->wk, sizeof(f->wk), 0);
	Bkv__V1__RegisterFinishResponse rr;
	g_time_offset = 600 + 10;
	assert_code(send_register_finish(&f->v, account_of(ALICE), &req, &rr),
	            BKV_CODE_FAILED_PRECONDITION);
	assert_no_record(f, ALICE);
	g_time_offset = 600 - 10;
	assert_code(send_register_finish(&f->v, account_of(ALICE), &req, &rr), BKV_CODE_OK);
	g_time_offset = 0;
	assert_int_equal(rr.record_version, 1);
	must_recover_fully(f, ALICE, suite, PASSWORD, 1);

	bkv_registration_ticket rt;
	assert_code(client_make_record(&f->v, &f->buf, account_of(ALICE), suite, NEW_PASSWORD, &rs),
	            BKV_CODE_OK);
	assert_int_equal(bkv_registration_ticket_open(f->v.token, account_of(ALICE), rs.ticket,
	                                              rs.ticket_len, &rt),
	                 BKV_TOKEN_OK);
	const bkv_registration_ticket genuine = rt;
	const struct {
		const char *what;
		int64_t expires_at;
		opaque_suite_id suite;
		const char *account;
		bkv_code expected;
	} cases[] = {
	    {"expired a second ago", (int64_t)time(NULL) - 1, suite, ALICE,
	     BKV_CODE_FAILED_PRECONDITION},
	    {"for another suite", genuine.expires_at, other, ALICE, BKV_CODE_INVALID_ARGUMENT},
	    {"for another account", genuine.expires_at, suite, BOB, BKV_CODE_INVALID_ARGUMENT},
	    {"as RegisterStart seals it", genuine.expires_at, suite, ALICE, BKV_CODE_OK},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rt = genuine;
		rt.expires_at = cases[i].expires_at;
		rt.suite = cases[i].suite;
		uint8_t sealed[BKV_REGISTRATION_TICKET_BYTES];
		size_t sealed_len = 0;
		assert_int_equal(bkv_registration_ticket_seal(f->v.token,
		                                              account_of(cases[i].account), &rt,
		                                              sealed, sizeof(sealed), &sealed_len),
		                 BKV_TOKEN_OK);
		finish_req r2 = finish_req_of(&rs, suite, 1, f->wk, sizeof(f->wk), 0);
		r2.ticket = sealed;
		r2.ticket_len = sealed_len;
		const bkvd_status st = send_register_finish(&f->v, account_of(ALICE), &r2, &rr);
		if (st.code != cases[i].expected)
			fail_msg("registration ticket %s: %s, expected %s", cases[i].what,
			         bkv_code_name(st.code), bkv_code_name(cases[i].expected));
	}
	assert_int_equal(rr.record_version, 2);
	must_recover_fully(f, ALICE, suite, NEW_PASSWORD, 2);
}

/* ------------------------------------------------------------------------------------ */
/* Tombstones and AttemptInfo                                                            */
/* ------------------------------------------------------------------------------------ */

static void a_destroyed_record_stays_a_tombstone_until_registered_over_or_deleted(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite;
	const uint64_t v1 = must_register(f, ALICE, suite, PASSWORD, 2);
	attempt right, wrong;
	finish fr, fw;
	must_start(f, ALICE, suite, PASSWORD, &right);
	client_ke3(&right, &fr);
	assert_int_equal(fr.client_err, OPAQUE_OK);
	must_start(f, ALICE, suite, WRONG_PASSWORD, &wrong);
	const int64_t t0 = (int64_t)time(NULL);
	client_recover_finish(&f->v, &f->buf, account_of(ALICE), &wrong, &fw);
	assert_code(fw.st, BKV_CODE_PERMISSION_DENIED);
	assert_attempt_info(fw.st, 0, 2);
	assert_tombstone(f, ALICE, v1, 2, t0);
	const Bkv__V1__GetStatusResponse s1 = status_of(f, ALICE);
	assert_destroyed_on_start(f, ALICE, suite, 2);
	/* A guess started before, with the right password, releases nothing now. */
	send_ke3(&f->v, &f->buf, account_of(ALICE), &right, &fr);
	assert_code(fr.st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(fr.st, 0, 2);
	assert_int_equal(fr.sealed_len, 0);
	/* Nothing of that moved the tombstone. */
	const Bkv__V1__GetStatusResponse s2 = status_of(f, ALICE);
	assert_int_equal(s2.destroyed_at_unix, s1.destroyed_at_unix);
	assert_int_equal(s2.record_version, v1);

	/* Registering anew replaces the tombstone's version: a live record, a fresh counter,
	 * the guess counter continued, another registration id. */
	const bkv_record tomb = must_peek(f, ALICE);
	const uint64_t v2 = must_register(f, ALICE, suite, NEW_PASSWORD, 0);
	assert_int_equal(v2, v1 + 1);
	const bkv_record live = must_peek(f, ALICE);
	assert_int_equal(live.state, BKV_RECORD_LIVE);
	assert_int_equal(live.attempts_used, 0);
	assert_int_equal(live.destroyed_at, 0);
	assert_int_equal(live.guess_seq, tomb.guess_seq);
	assert_memory_not_equal(live.registration_id, tomb.registration_id,
	                        BKV_REGISTRATION_ID_BYTES);
	const Bkv__V1__GetStatusResponse s3 = status_of(f, ALICE);
	assert_true(s3.registered);
	assert_int_equal(s3.state, BKV__V1__RECORD_STATE__RECORD_STATE_REGISTERED);
	assert_int_equal(s3.destroyed_at_unix, 0);
	must_recover_fully(f, ALICE, suite, NEW_PASSWORD, v2);

	/* Destroyed again, then deleted: absent, and the versions start over. */
	const uint64_t v3 = must_register(f, ALICE, suite, PASSWORD, 1);
	assert_code(wrong_guess(f, ALICE, suite, NULL), BKV_CODE_PERMISSION_DENIED);
	assert_tombstone(f, ALICE, v3, 1, t0);
	Bkv__V1__DeleteResponse dr;
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &dr), BKV_CODE_OK);
	assert_true(dr.deleted);
	assert_no_record(f, ALICE);
	assert_int_equal(status_of(f, ALICE).state, BKV__V1__RECORD_STATE__RECORD_STATE_ABSENT);
	attempt at;
	assert_code(client_recover_start(&f->v, &f->buf, account_of(ALICE), suite, PASSWORD, &at),
	            BKV_CODE_NOT_FOUND);
	assert_int_equal(must_register(f, ALICE, suite, PASSWORD, 0), 1);
	must_recover_fully(f, ALICE, suite, PASSWORD, 1);

	audit_event ev[AUDIT_MAX];
	static char raw[RAW_MAX];
	const size_t n = read_audit(f, ev, AUDIT_MAX, raw, sizeof(raw));
	assert_int_equal(count_events(ev, n, "destroyed", ALICE), 2);
	assert_int_equal(count_events(ev, n, "deleted", ALICE), 1);
	assert_raw_account_absent(raw, ALICE);
}

/* AttemptInfo with the exact numbers on every RecoverStart/RecoverFinish failure that
 * concerns a registered or destroyed record. */
static void every_recovery_failure_concerning_a_record_carries_attempt_info(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite, other = suite == P256 ? R255 : P256;
	must_register(f, ALICE, suite, PASSWORD, 4);
	/* Wrong password, then its ticket again. */
	attempt w;
	finish fw;
	must_start(f, ALICE, suite, WRONG_PASSWORD, &w);
	client_recover_finish(&f->v, &f->buf, account_of(ALICE), &w, &fw);
	assert_code(fw.st, BKV_CODE_PERMISSION_DENIED);
	assert_attempt_info(fw.st, 3, 4);
	send_ke3(&f->v, &f->buf, account_of(ALICE), &w, &fw);
	assert_code(fw.st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(fw.st, 3, 4);
	/* Another suite than registered; an invalid KE1. */
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	valid_ke1(other, ke1);
	Bkv__V1__RecoverStartResponse sresp;
	bkvd_status st =
	    send_recover_start(&f->v, &f->buf, account_of(ALICE), (Bkv__V1__Suite)other, ke1,
	                       sizes_of(other)->ke1, &sresp);
	assert_code(st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(st, 3, 4);
	valid_ke1(suite, ke1);
	identity_element(suite, ke1);
	st = send_recover_start(&f->v, &f->buf, account_of(ALICE), (Bkv__V1__Suite)suite, ke1,
	                        sizes_of(suite)->ke1, &sresp);
	assert_code(st, BKV_CODE_INVALID_ARGUMENT);
	assert_attempt_info(st, 3, 4);
	/* An expired ticket: the clock moves past its lifetime. */
	attempt e;
	finish fe;
	must_start(f, ALICE, suite, PASSWORD, &e);
	client_ke3(&e, &fe);
	g_time_offset = LIFETIME_S + 5;
	send_ke3(&f->v, &f->buf, account_of(ALICE), &e, &fe);
	g_time_offset = 0;
	assert_code(fe.st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(fe.st, 2, 4);
	/* A ticket replayed after its success. */
	attempt s;
	finish fs;
	must_start(f, ALICE, suite, PASSWORD, &s);
	assert_int_equal(s.attempts_remaining, 1);
	client_recover_finish(&f->v, &f->buf, account_of(ALICE), &s, &fs);
	assert_release(&fs, suite, f->wk, sizeof(f->wk), 1);
	send_ke3(&f->v, &f->buf, account_of(ALICE), &s, &fs);
	assert_code(fs.st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(fs.st, 4, 4);
	/* A ticket from a record since replaced: the numbers are the new record's. */
	attempt old;
	finish fo;
	must_start(f, ALICE, suite, PASSWORD, &old);
	client_ke3(&old, &fo);
	must_register(f, ALICE, suite, PASSWORD, 5);
	send_ke3(&f->v, &f->buf, account_of(ALICE), &old, &fo);
	assert_code(fo.st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(fo.st, 5, 5);
	/* Down to destroyed: each wrong password counts, the last destroys; a guess started
	 * before is refused as destroyed; RecoverStart says so every time. */
	for (uint32_t used = 1; used <= 3; used++) {
		st = wrong_guess(f, ALICE, suite, NULL);
		assert_code(st, BKV_CODE_PERMISSION_DENIED);
		assert_attempt_info(st, 5 - used, 5);
	}
	attempt pend, last;
	finish fp, fl;
	must_start(f, ALICE, suite, PASSWORD, &pend);
	client_ke3(&pend, &fp);
	must_start(f, ALICE, suite, WRONG_PASSWORD, &last);
	assert_int_equal(last.attempts_remaining, 0);
	client_recover_finish(&f->v, &f->buf, account_of(ALICE), &last, &fl);
	assert_code(fl.st, BKV_CODE_PERMISSION_DENIED);
	assert_attempt_info(fl.st, 0, 5);
	send_ke3(&f->v, &f->buf, account_of(ALICE), &pend, &fp);
	assert_code(fp.st, BKV_CODE_FAILED_PRECONDITION);
	assert_attempt_info(fp.st, 0, 5);
	assert_destroyed_on_start(f, ALICE, suite, 5);
	/* No record concerned, no AttemptInfo. */
	attempt none;
	st = client_recover_start(&f->v, &f->buf, account_of(BOB), suite, PASSWORD, &none);
	assert_code(st, BKV_CODE_NOT_FOUND);
	assert_false(st.has_attempt_info);
}

/* ------------------------------------------------------------------------------------ */
/* Rows edited outside bkvd (SQL of the test's own, as a database operator could)       */
/* ------------------------------------------------------------------------------------ */

#define SQL_MAX 8192

/* A blob as an SQL literal: X'..' for SQLite, '\x..'::bytea for PostgreSQL. */
static const char *sql_blob(char *out, size_t cap, const uint8_t *p, size_t len)
{
	static char hex[2 * (BKV_STORAGE_SEALED_MAX + 8) + 1];
	static const uint8_t nothing[1] = {0};
	assert_true(2 * len < sizeof(hex));
	sodium_bin2hex(hex, sizeof(hex), len > 0 ? p : nothing, len);
	const int n = snprintf(out, cap, on_pg ? "'\\x%s'::bytea" : "X'%s'", hex);
	assert_true(n > 0 && (size_t)n < cap);
	return out;
}

/* Runs one statement on a connection of its own; the number of rows it changed. */
static long db_exec_sql(fx *f, const char *sql)
{
	if (on_pg) {
		PGconn *c = pg_raw_connect();
		assert_non_null(c);
		PGresult *res = PQexec(c, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fail_msg("%s: %s", sql, PQerrorMessage(c));
		const long changed = strtol(PQcmdTuples(res), NULL, 10);
		PQclear(res);
		PQfinish(c);
		return changed;
	}
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	const long changed = sqlite3_changes(db);
	sqlite3_close(db);
	return changed;
}

/* UPDATE records SET <set> on the account's row: exactly that row changes. */
static void tamper_id(fx *f, const uint8_t *id, size_t id_len, const char *set)
{
	static char sql[SQL_MAX];
	char where[2 * BKV_STORAGE_ACCOUNT_MAX + 32];
	sql_blob(where, sizeof(where), id, id_len);
	const int n =
	    snprintf(sql, sizeof(sql), "UPDATE records SET %s WHERE account_id = %s", set, where);
	assert_true(n > 0 && (size_t)n < sizeof(sql));
	assert_int_equal(db_exec_sql(f, sql), 1);
}

static void tamper(fx *f, const char *account, const char *set)
{
	tamper_id(f, (const uint8_t *)account, strlen(account), set);
}

/* Writes every stored field of r but updated_at, its MAC as given, over r's account's row. */
static void db_write_row(fx *f, const bkv_record *r)
{
	static char set[SQL_MAX];
	char reg[2 * BKV_STORAGE_REG_ID_MAX + 32], mac[2 * BKV_STORAGE_MAC_MAX + 32];
	static char sealed[2 * BKV_STORAGE_SEALED_MAX + 32];
	const int n = snprintf(
	    set, sizeof(set),
	    "suite = %u, state = %u, record_version = %llu, registration_id = %s, "
	    "attempts_used = %u, attempt_limit = %u, guess_seq = %llu, last_finished_seq = %llu, "
	    "seal_key_version = %u, sealed = %s, registered_at = %lld, destroyed_at = %lld, "
	    "mac = %s",
	    r->suite, r->state, (unsigned long long)r->record_version,
	    sql_blob(reg, sizeof(reg), r->registration_id, r->registration_id_len),
	    r->attempts_used, r->attempt_limit, (unsigned long long)r->guess_seq,
	    (unsigned long long)r->last_finished_seq, r->seal_key_version,
	    sql_blob(sealed, sizeof(sealed), r->sealed, r->sealed_len), (long long)r->registered_at,
	    (long long)r->destroyed_at, sql_blob(mac, sizeof(mac), r->mac, r->mac_len));
	assert_true(n > 0 && (size_t)n < sizeof(set));
	tamper_id(f, r->account_id, r->account_id_len, set);
}

/* The same with a MAC the token computed for it: a row only bkvd (or whoever holds the
 * token) can make. For the range checks behind the MAC. */
static void db_write_vouched_row(fx *f, bkv_record *r)
{
	assert_int_equal(bkv_record_mac(f->v.token, r), BKV_TOKEN_OK);
	db_write_row(f, r);
}

/* Nothing is served from the account's row, and every refusal is audited: GetStatus,
 * RecoverStart (twice: no KE2 computed, nothing committed), RecoverFinish of a guess
 * started before the edit (nothing released), RegisterFinish creating or replacing
 * (nothing written) are each DATA_LOSS and one "record_refused" event. */
static void assert_refused(fx *f, const char *account, opaque_suite_id suite, const pending *p)
{
	const unsigned refused = f->refused, logins = g_login_start_calls, commits = g_commit_calls;
	unsigned expected = 0;
	Bkv__V1__GetStatusResponse s;
	assert_code(bkvd_get_status(&f->v, account_of(account), &s), BKV_CODE_DATA_LOSS);
	assert_false(s.registered);
	assert_int_equal(s.record_version, 0);
	assert_int_equal(s.attempts_used, 0);
	expected++;
	for (int i = 0; i < 2; i++, expected++) {
		attempt at;
		const bkvd_status st =
		    client_recover_start(&f->v, &f->buf, account_of(account), suite, PASSWORD, &at);
		assert_code(st, BKV_CODE_DATA_LOSS);
		assert_int_equal(at.resp.ke2.len, 0);
		assert_int_equal(at.resp.ticket.len, 0);
		assert_true(is_zero(f->buf.ke2, sizeof(f->buf.ke2)));
	}
	if (p != NULL) {
		Bkv__V1__RecoverFinishResponse resp;
		assert_code(send_recover_finish(&f->v, &f->buf, account_of(account), p->at.ticket,
		                                p->at.ticket_len, p->fin.ke3, p->fin.ke3_len,
		                                &resp),
		            BKV_CODE_DATA_LOSS);
		assert_int_equal(resp.sealed_key.len, 0);
		expected++;
	}
	reg_start rs;
	assert_code(
	    client_make_record(&f->v, &f->buf, account_of(account), suite, NEW_PASSWORD, &rs),
	    BKV_CODE_OK);
	const uint64_t replaces[] = {0, 1, 2};
	for (size_t i = 0; i < 3; i++, expected++) {
		const finish_req req =
		    finish_req_of(&rs, suite, replaces[i], f->wk, sizeof(f->wk), 0);
		Bkv__V1__RegisterFinishResponse rr;
		assert_code(send_register_finish(&f->v, account_of(account), &req, &rr),
		            BKV_CODE_DATA_LOSS);
		assert_int_equal(rr.record_version, 0);
	}
	assert_int_equal(g_login_start_calls, logins);
	assert_int_equal(g_commit_calls, commits);
	assert_int_equal(f->refused - refused, expected);
}

/* The audit log holds `count` record_refused events for the account, each with a reason
 * containing `why`, and never the account id itself. */
static void assert_refusals_audited(fx *f, const char *account, size_t count, const char *why)
{
	static audit_event ev[256];
	static char raw[65536];
	const size_t n = read_audit(f, ev, 256, raw, sizeof(raw));
	char hash[33];
	expected_hash(account, hash);
	size_t found = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(ev[i].event, "record_refused") != 0 || strcmp(ev[i].account, hash) != 0)
			continue;
		found++;
		if (strstr(ev[i].reason, why) == NULL)
			fail_msg("record_refused with reason \"%s\", expected one about \"%s\"",
			         ev[i].reason, why);
	}
	assert_int_equal(found, count);
	assert_raw_account_absent(raw, account);
}

/* The audit file starts over (the checks above count from here). */
static void audit_truncate(fx *f)
{
	assert_int_equal(fflush(f->audit), 0);
	assert_int_equal(ftruncate(fileno(f->audit), 0), 0);
}

#define REFUSALS_WITH_PENDING 7 /* assert_refused's requests, with a pending guess */
#define REFUSALS              6

/* The attack of issue 9 on the counter: lowering attempts_used (or raising the limit, or
 * rewinding the guess counters so an old ticket finishes again) by one UPDATE. Refused
 * with DATA_LOSS, zero KE2s, until the honest values are back. */
static void tampered_counters_are_data_loss_and_serve_nothing(void **state)
{
	fx *f = *state;
	const uint64_t bob_version = must_register(f, BOB, R255, PASSWORD, 0);
	const bkv_record bob = must_peek(f, BOB);
	/* ALICE, with two wrong guesses and one started for the right password. */
	pending p;
	p.version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	for (int i = 0; i < 2; i++)
		assert_code(wrong_guess(f, ALICE, f->suite, NULL), BKV_CODE_PERMISSION_DENIED);
	must_start(f, ALICE, f->suite, PASSWORD, &p.at);
	client_ke3(&p.at, &p.fin);
	assert_int_equal(p.fin.client_err, OPAQUE_OK);
	const bkv_record honest = must_peek(f, ALICE);
	assert_int_equal(honest.attempts_used, 3);
	audit_truncate(f);
	const char *const edits[] = {
	    "attempts_used = 0",     "attempts_used = 2",
	    "attempt_limit = 20",    "attempts_used = 0, attempt_limit = 20",
	    "last_finished_seq = 0", "guess_seq = 1, last_finished_seq = 0",
	    "guess_seq = 100",       "registered_at = 1",
	    "destroyed_at = 1",
	};
	const size_t nedits = sizeof(edits) / sizeof(edits[0]);
	for (size_t i = 0; i < nedits; i++) {
		print_message("UPDATE records SET %s\n", edits[i]);
		tamper(f, ALICE, edits[i]);
		assert_refused(f, ALICE, f->suite, &p);
		db_write_row(f, &honest);
	}
	/* The honest values back make the row the token's again: the refusals were the
	 * edits'. The started guess finishes, from exactly the honest count. */
	assert_int_equal(status_of(f, ALICE).attempts_used, 3);
	send_ke3(&f->v, &f->buf, account_of(ALICE), &p.at, &p.fin);
	assert_release(&p.fin, f->suite, f->wk, sizeof(f->wk), p.version);
	assert_int_equal(status_of(f, ALICE).attempts_used, 0);
	/* The bystander was never touched. */
	const bkv_record bob_after = must_peek(f, BOB);
	assert_same_row(&bob, &bob_after);
	must_recover_fully(f, BOB, R255, PASSWORD, bob_version);
	assert_refusals_audited(f, ALICE, nedits * REFUSALS_WITH_PENDING, "MAC does not match");
	assert_refusals_audited(f, BOB, 0, "");
}

/* A tombstone turned back into a record: the old sealed bytes restored, state set live
 * (and the counters reset, and destroyed_at cleared): never served. */
static void a_tombstone_turned_back_into_a_record_is_data_loss(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite;
	const uint64_t version = must_register(f, ALICE, suite, PASSWORD, 2);
	const bkv_record live = must_peek(f, ALICE);
	for (int i = 0; i < 2; i++)
		assert_code(wrong_guess(f, ALICE, suite, NULL), BKV_CODE_PERMISSION_DENIED);
	const bkv_record tomb = must_peek(f, ALICE);
	assert_tombstone(f, ALICE, version, 2, 0);
	audit_truncate(f);

	bkv_record edited[4];
	/* The sealed bytes back and state live, everything else kept. */
	edited[0] = tomb;
	edited[0].state = BKV_RECORD_LIVE;
	memcpy(edited[0].sealed, live.sealed, live.sealed_len);
	edited[0].sealed_len = live.sealed_len;
	edited[0].seal_key_version = live.seal_key_version;
	/* ...and a fresh counter. */
	edited[1] = edited[0];
	edited[1].attempts_used = 0;
	/* ...and not destroyed. */
	edited[2] = edited[1];
	edited[2].destroyed_at = 0;
	/* Every field of the live row, under the tombstone's MAC. (The live row with its own
	 * old MAC is a whole-row snapshot rollback, which docs/SECURITY.md puts out of scope.) */
	edited[3] = live;
	memcpy(edited[3].mac, tomb.mac, tomb.mac_len);
	edited[3].mac_len = tomb.mac_len;
	for (size_t i = 0; i < 4; i++) {
		db_write_row(f, &edited[i]);
		assert_refused(f, ALICE, suite, NULL);
	}
	db_write_row(f, &tomb);
	assert_tombstone(f, ALICE, version, 2, 0);
	assert_destroyed_on_start(f, ALICE, suite, 2);
	assert_refusals_audited(f, ALICE, 4 * REFUSALS, "MAC does not match");
}

/* Fields moved between two accounts' rows: ALICE borrows BOB's fresh counters (with or
 * without his MAC), or BOB's whole row: the MAC binds the account id, so neither row is
 * served. */
static void counters_swapped_between_two_rows_are_data_loss(void **state)
{
	fx *f = *state;
	must_register(f, ALICE, P256, PASSWORD, 0);
	for (int i = 0; i < 3; i++)
		assert_code(wrong_guess(f, ALICE, P256, NULL), BKV_CODE_PERMISSION_DENIED);
	const uint64_t vb = must_register(f, BOB, P256, NEW_PASSWORD, 0);
	const bkv_record a = must_peek(f, ALICE), b = must_peek(f, BOB);
	assert_int_equal(a.attempts_used, 3);
	assert_int_equal(b.attempts_used, 0);
	audit_truncate(f);

	/* 1: counters and MACs swapped. */
	bkv_record a2 = a, b2 = b;
	a2.attempts_used = b.attempts_used;
	a2.guess_seq = b.guess_seq;
	a2.last_finished_seq = b.last_finished_seq;
	memcpy(a2.mac, b.mac, b.mac_len);
	b2.attempts_used = a.attempts_used;
	b2.guess_seq = a.guess_seq;
	b2.last_finished_seq = a.last_finished_seq;
	memcpy(b2.mac, a.mac, a.mac_len);
	db_write_row(f, &a2);
	db_write_row(f, &b2);
	assert_refused(f, ALICE, P256, NULL);
	assert_refused(f, BOB, P256, NULL);
	/* 2: only the MACs swapped. */
	a2 = a;
	b2 = b;
	memcpy(a2.mac, b.mac, b.mac_len);
	memcpy(b2.mac, a.mac, a.mac_len);
	db_write_row(f, &a2);
	db_write_row(f, &b2);
	assert_refused(f, ALICE, P256, NULL);
	assert_refused(f, BOB, P256, NULL);
	db_write_row(f, &b);
	/* 3: BOB's whole row, MAC and all, copied onto ALICE's. */
	a2 = b;
	memcpy(a2.account_id, a.account_id, a.account_id_len);
	a2.account_id_len = a.account_id_len;
	db_write_row(f, &a2);
	assert_refused(f, ALICE, P256, NULL);
	db_write_row(f, &a);
	/* Both rows back: both serve again, from their own counters. */
	assert_int_equal(status_of(f, ALICE).attempts_used, 3);
	assert_int_equal(status_of(f, BOB).attempts_used, 0);
	must_recover_fully(f, BOB, P256, NEW_PASSWORD, vb);
	assert_refusals_audited(f, ALICE, 3 * REFUSALS, "MAC does not match");
	assert_refusals_audited(f, BOB, 2 * REFUSALS, "MAC does not match");
}

/* The registration id picks the OPRF key: changed, emptied (a legacy record's form) or
 * taken from another row, it is refused before any KE2 is computed under it. */
static void a_changed_registration_id_is_data_loss(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	must_register(f, BOB, f->suite, PASSWORD, 0);
	const bkv_record a = must_peek(f, ALICE), b = must_peek(f, BOB);
	audit_truncate(f);
	bkv_record e[3];
	e[0] = a;
	randombytes_buf(e[0].registration_id, BKV_REGISTRATION_ID_BYTES);
	e[1] = a;
	memcpy(e[1].registration_id, b.registration_id, BKV_REGISTRATION_ID_BYTES);
	e[2] = a;
	e[2].registration_id_len = 0;
	for (size_t i = 0; i < 3; i++) {
		db_write_row(f, &e[i]);
		assert_refused(f, ALICE, f->suite, NULL);
	}
	db_write_row(f, &a);
	must_recover_fully(f, ALICE, f->suite, PASSWORD, version);
	assert_refusals_audited(f, ALICE, 3 * REFUSALS, "MAC does not match");
}

/* A row without a MAC (as every row was before the state MAC): refused until `bkvd rewrap`
 * gives it one; Delete still removes it, so the owner can register again. */
static void a_row_without_a_state_mac_is_data_loss(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	const bkv_record a = must_peek(f, ALICE);
	audit_truncate(f);
	tamper(f, ALICE, on_pg ? "mac = '\\x'::bytea" : "mac = X''");
	assert_refused(f, ALICE, f->suite, NULL);
	tamper(f, ALICE,
	       on_pg ? "mac = '\\x'::bytea, registration_id = '\\x'::bytea"
	             : "mac = X'', registration_id = X''");
	assert_refused(f, ALICE, f->suite, NULL);
	assert_refusals_audited(f, ALICE, 2 * REFUSALS, "no state MAC");
	db_write_row(f, &a);
	must_recover_fully(f, ALICE, f->suite, PASSWORD, version);
	/* The way out for an owner: Delete, then register anew. */
	tamper(f, ALICE, on_pg ? "mac = '\\x'::bytea" : "mac = X''");
	Bkv__V1__DeleteResponse dr;
	assert_code(bkvd_delete(&f->v, account_of(ALICE), &dr), BKV_CODE_OK);
	assert_true(dr.deleted);
	assert_int_equal(must_register(f, ALICE, f->suite, PASSWORD, 0), 1);
	must_recover_fully(f, ALICE, f->suite, PASSWORD, 1);
}

/* A record from before registration ids, once migrated (a MAC over an empty registration
 * id, as `bkvd rewrap` writes): its OPRF key is the account id's alone, and it recovers.
 * The record is made here as the old server made it. */
static void a_migrated_record_from_before_registration_ids_still_recovers(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite;
	const opaque_sizes *sz = sizes_of(suite);
	const opaque_config cfg = client_config(suite);
	const opaque_config server_cfg = bkv_opaque_config(&f->v, suite);
	opaque_client_registration_state cs;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t plaintext[OPAQUE_MAX_REGISTRATION_RECORD_BYTES + WK_LEN];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	assert_int_equal(opaque_client_registration_start(&cfg, (const uint8_t *)PASSWORD,
	                                                  strlen(PASSWORD), &cs, request,
	                                                  sz->registration_request),
	                 OPAQUE_OK);
	assert_int_equal(opaque_server_registration_response(
	                     &server_cfg, bkv_token_server_keys(f->v.token, suite),
	                     (const uint8_t *)ALICE, strlen(ALICE), request,
	                     sz->registration_request, response, sz->registration_response),
	                 OPAQUE_OK);
	assert_int_equal(opaque_client_registration_finish(
	                     &cfg, &cs, (const uint8_t *)PASSWORD, strlen(PASSWORD), NULL, response,
	                     sz->registration_response, plaintext, sz->registration_record,
	                     export_key, sz->Nh),
	                 OPAQUE_OK);
	memcpy(plaintext + sz->registration_record, f->wk, sizeof(f->wk));
	bkv_record r;
	memset(&r, 0, sizeof(r));
	memcpy(r.account_id, ALICE, strlen(ALICE));
	r.account_id_len = strlen(ALICE);
	r.suite = (uint32_t)suite;
	r.state = BKV_RECORD_LIVE;
	r.record_version = 1;
	r.attempt_limit = DEFAULT_LIMIT;
	r.registered_at = (int64_t)time(NULL);
	r.seal_key_version = bkv_token_seal_version(f->v.token);
	assert_int_equal(bkv_record_seal(f->v.token, r.account_id, r.account_id_len, suite, 1, NULL,
	                                 0, plaintext, sz->registration_record + sizeof(f->wk),
	                                 r.sealed, sizeof(r.sealed), &r.sealed_len),
	                 BKV_TOKEN_OK);
	sodium_memzero(plaintext, sizeof(plaintext));
	/* As it was before the migration: no MAC. */
	bkv_storage *s = NULL;
	char why[256] = "";
	assert_int_equal(bkv_storage_open(f->url, &s, why, sizeof(why)), BKV_STORAGE_OK);
	assert_int_equal(bkv_storage_insert(s, &r), BKV_STORAGE_OK);
	bkv_storage_close(s);
	audit_truncate(f);
	assert_refused(f, ALICE, suite, NULL);
	assert_refusals_audited(f, ALICE, REFUSALS, "no state MAC");
	/* Migrated: a MAC over the same state. */
	db_write_vouched_row(f, &r);
	const Bkv__V1__GetStatusResponse st = status_of(f, ALICE);
	assert_true(st.registered);
	assert_int_equal(st.record_version, 1);
	must_recover_fully(f, ALICE, suite, PASSWORD, 1);
	/* Replacing it gives it a registration id like any other. */
	assert_int_equal(must_register(f, ALICE, suite, NEW_PASSWORD, 0), 2);
	assert_int_equal(must_peek(f, ALICE).registration_id_len, BKV_REGISTRATION_ID_BYTES);
	must_recover_fully(f, ALICE, suite, NEW_PASSWORD, 2);
}

/* Values that no bkvd writes: ones that do not fit the record (refused by storage), ones
 * edited under the old MAC, and ones a token holder MACed: each refused with DATA_LOSS,
 * with the reason audited, never used. */
static void stored_values_out_of_range_are_data_loss(void **state)
{
	fx *f = *state;
	const opaque_suite_id suite = f->suite;
	const opaque_sizes *sz = sizes_of(suite);
	const uint64_t version = must_register(f, ALICE, suite, PASSWORD, 0);
	const bkv_record honest = must_peek(f, ALICE);
	audit_truncate(f);

	/* Storage cannot hold them in a record. */
	uint8_t big[BKV_STORAGE_SEALED_MAX + 1];
	randombytes_buf(big, sizeof(big));
	char blob_mac[2 * (BKV_STORAGE_MAC_MAX + 1) + 32],
	    blob_reg[2 * (BKV_STORAGE_REG_ID_MAX + 1) + 32];
	static char blob_sealed[2 * (BKV_STORAGE_SEALED_MAX + 1) + 32];
	char set_mac[200], set_reg[200];
	static char set_sealed[sizeof(blob_sealed) + 16];
	snprintf(set_mac, sizeof(set_mac), "mac = %s",
	         sql_blob(blob_mac, sizeof(blob_mac), big, BKV_STORAGE_MAC_MAX + 1));
	snprintf(set_reg, sizeof(set_reg), "registration_id = %s",
	         sql_blob(blob_reg, sizeof(blob_reg), big, BKV_STORAGE_REG_ID_MAX + 1));
	snprintf(set_sealed, sizeof(set_sealed), "sealed = %s",
	         sql_blob(blob_sealed, sizeof(blob_sealed), big, BKV_STORAGE_SEALED_MAX + 1));
	const char *const unfit[] = {
	    "attempts_used = -1",
	    "attempts_used = 4294967296",
	    "attempt_limit = -3",
	    "record_version = -1",
	    "guess_seq = -1",
	    "last_finished_seq = -1",
	    "suite = 4294967297",
	    "state = -1",
	    "seal_key_version = -1",
	    set_mac,
	    set_reg,
	    set_sealed,
	};
	const size_t nunfit = sizeof(unfit) / sizeof(unfit[0]);
	for (size_t i = 0; i < nunfit; i++) {
		print_message("UPDATE records SET %.60s\n", unfit[i]);
		tamper(f, ALICE, unfit[i]);
		assert_refused(f, ALICE, suite, NULL);
		db_write_row(f, &honest);
	}
	assert_refusals_audited(f, ALICE, nunfit * REFUSALS, "stored value is out of range");
	audit_truncate(f);

	/* In range for storage, under the old MAC. */
	const char *const edited[] = {"suite = 99", "suite = 0", "state = 3", "record_version = 0"};
	const size_t nedited = sizeof(edited) / sizeof(edited[0]);
	for (size_t i = 0; i < nedited; i++) {
		tamper(f, ALICE, edited[i]);
		assert_refused(f, ALICE, suite, NULL);
		db_write_row(f, &honest);
	}
	assert_refusals_audited(f, ALICE, nedited * REFUSALS, "MAC does not match");
	audit_truncate(f);

	/* MACed by the token, yet nothing bkvd writes: the range checks behind the MAC. */
	bkv_record e[14];
	size_t ne = 0;
	e[ne] = honest, e[ne++].suite = 99;
	e[ne] = honest, e[ne++].suite = 0;
	e[ne] = honest, e[ne++].state = 0;
	e[ne] = honest, e[ne++].state = 3;
	e[ne] = honest, e[ne++].record_version = 0;
	e[ne] = honest, e[ne++].attempt_limit = 0;
	e[ne] = honest, e[ne].attempts_used = honest.attempt_limit + 1, ne++;
	e[ne] = honest, e[ne].guess_seq = 2, e[ne].last_finished_seq = 3, ne++;
	e[ne] = honest, e[ne++].registration_id_len = 5;
	e[ne] = honest, e[ne++].sealed_len = 0; /* live, with nothing sealed */
	e[ne] = honest, e[ne++].sealed_len = BKV_RECORD_SEAL_OVERHEAD_MIN + sz->registration_record;
	e[ne] = honest;
	e[ne++].sealed_len = BKV_RECORD_SEAL_OVERHEAD_MAX + sz->registration_record +
	                     BKV_WRAPPED_KEY_MAX + 1; /* the bytes beyond are zeros */
	e[ne] = honest, e[ne].state = BKV_RECORD_DESTROYED, e[ne].destroyed_at = 1, ne++;
	for (size_t i = 0; i < ne; i++) {
		db_write_vouched_row(f, &e[i]);
		assert_refused(f, ALICE, suite, NULL);
		db_write_row(f, &honest);
	}
	assert_refusals_audited(f, ALICE, ne * REFUSALS, "MAC-verified record is out of range");
	must_recover_fully(f, ALICE, suite, PASSWORD, version);
}

/* What a worker reports about a row: the answers to RecoverFinish (with a guess started
 * before the edit), RecoverStart and GetStatus, and whether anything was released. */
typedef struct probe_report {
	int32_t finish, start, status;
	int32_t released; /* sealed_key bytes RecoverFinish returned */
} probe_report;

static int probe_row(bkv_vault *v, bkv_reply_buffers *buf, int report_fd, void *arg)
{
	const pending *p = arg;
	probe_report r = {-1, -1, -1, -1};
	Bkv__V1__RecoverFinishResponse fresp;
	r.finish =
	    (int32_t)send_recover_finish(v, buf, account_of(ALICE), p->at.ticket, p->at.ticket_len,
	                                 p->fin.ke3, p->fin.ke3_len, &fresp)
	        .code;
	r.released = (int32_t)fresp.sealed_key.len;
	attempt at;
	r.start =
	    (int32_t)client_recover_start(v, buf, account_of(ALICE), p->at.suite, PASSWORD, &at)
	        .code;
	Bkv__V1__GetStatusResponse s;
	r.status = (int32_t)bkvd_get_status(v, account_of(ALICE), &s).code;
	return write(report_fd, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1;
}

/* Issue 9: a stored row naming a suite the vault does not know crashed a worker (SIGSEGV)
 * in RecoverFinish. Each such row, edited or MACed by a token holder, is DATA_LOSS in a
 * worker that exits normally (a crash shows as a signal here, not in the test process). */
static void recover_finish_on_a_stored_suite_the_vault_does_not_know_is_data_loss(void **state)
{
	fx *f = *state;
	pending p;
	start_pending(f, &p);
	const bkv_record honest = must_peek(f, ALICE);
	const uint32_t suites[] = {99, 0, 3, 255, 99, 0, 3, 255};
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		const bool vouched = i >= 4;
		bkv_record e = honest;
		e.suite = suites[i];
		if (vouched)
			db_write_vouched_row(f, &e);
		else
			db_write_row(f, &e);
		int report[2];
		assert_int_equal(pipe(report), 0);
		vault_detach(f);
		const worker w = {probe_row, &p, report[1], -1, -1, {report[0], -1, -1, -1}};
		const pid_t pid = spawn_worker(f, &w);
		close(report[1]);
		int status = 0;
		reap_all(&pid, &status, 1, now_ms() + CHILD_DEADLINE_MS);
		probe_report r = {-1, -1, -1, -1};
		const bool got = read_exactly(report[0], &r, sizeof(r), now_ms() + 1000);
		close(report[0]);
		reattach(f);
		print_message(
		    "stored suite %u (%s): RecoverFinish %s, RecoverStart %s, GetStatus %s; "
		    "worker %s %d\n",
		    suites[i], vouched ? "MACed by the token" : "edited",
		    r.finish >= 0 ? bkv_code_name((bkv_code)r.finish) : "(none)",
		    r.start >= 0 ? bkv_code_name((bkv_code)r.start) : "(none)",
		    r.status >= 0 ? bkv_code_name((bkv_code)r.status) : "(none)",
		    WIFSIGNALED(status) ? "killed by signal" : "exited with",
		    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		assert_exited_cleanly(status, "RecoverFinish worker");
		assert_true(got);
		assert_int_equal(r.finish, BKV_CODE_DATA_LOSS);
		assert_int_equal(r.released, 0);
		assert_int_equal(r.start, BKV_CODE_DATA_LOSS);
		assert_int_equal(r.status, BKV_CODE_DATA_LOSS);
		db_write_row(f, &honest);
	}
	/* Restored, the guess started before finishes. */
	send_ke3(&f->v, &f->buf, account_of(ALICE), &p.at, &p.fin);
	assert_release(&p.fin, f->suite, f->wk, sizeof(f->wk), p.version);
}

/* ------------------------------------------------------------------------------------ */
/* Issue 10: seal-key rotation while serving                                             */
/* ------------------------------------------------------------------------------------ */

static uint32_t g_rotated_to; /* the seal-key version rotate_and_retire_seal_keys created */

/* What `bkvd rotate-seal-key`, then `bkvd delete-seal-key` of every older version, do to a
 * serving worker: a new key object in the token and the seal floor raised to it. The key
 * is created through the worker's own session (a second session in this process would
 * log the first out when it closes); that loads nothing into the worker's keys. */
static void rotate_and_retire_seal_keys(void *arg)
{
	fx *f = arg;
	const uint32_t loaded = bkv_token_seal_version(f->v.token);
	assert_int_equal(bkv_token_rotate_seal_key(f->v.token, &g_rotated_to), BKV_TOKEN_OK);
	assert_int_equal(bkv_token_seal_version(f->v.token), loaded);
	assert_int_equal(bkv_storage_raise_seal_floor(f->v.storage, g_rotated_to), BKV_STORAGE_OK);
}

/* The race the refresh alone leaves open: the worker sealed under the newest key it knew,
 * then that key was retired before the commit. The commit is refused, the worker seals
 * again under the new key and commits; the client sees a plain success. */
static void register_finish_sealed_under_a_key_retired_before_its_commit_seals_again(void **state)
{
	fx *f = *state;
	const uint64_t first = must_register(f, ALICE, f->suite, PASSWORD, 0);
	const uint32_t old_version = must_peek(f, ALICE).seal_key_version;
	reg_start rs;
	assert_code(
	    client_make_record(&f->v, &f->buf, account_of(ALICE), f->suite, NEW_PASSWORD, &rs),
	    BKV_CODE_OK);
	const finish_req fr = finish_req_of(&rs, f->suite, first, f->wk, sizeof(f->wk), 0);
	g_before_update = rotate_and_retire_seal_keys;
	g_before_update_arg = f;
	const unsigned commits_before = g_commit_calls;
	Bkv__V1__RegisterFinishResponse resp;
	assert_code(send_register_finish(&f->v, account_of(ALICE), &fr, &resp), BKV_CODE_OK);
	assert_null(g_before_update); /* the rotation ran, between the seal and the commit */
	assert_int_equal(g_commit_calls - commits_before, 2); /* refused, then committed */
	assert_true(g_rotated_to > old_version);
	assert_int_equal(must_peek(f, ALICE).seal_key_version, g_rotated_to);
	must_recover_fully(f, ALICE, f->suite, NEW_PASSWORD, first + 1);
}

/* A refused `bkvd delete-seal-key` leaves the floor raised over records still under the
 * old version: they keep their sealed blob, and it keeps counting attempts and opening. */
static void a_record_below_the_seal_floor_still_counts_attempts_and_recovers(void **state)
{
	fx *f = *state;
	const uint64_t version = must_register(f, ALICE, f->suite, PASSWORD, 0);
	const bkv_record before = must_peek(f, ALICE);
	rotate_and_retire_seal_keys(f);
	assert_true(g_rotated_to > before.seal_key_version);
	assert_code(wrong_guess(f, ALICE, f->suite, NULL), BKV_CODE_PERMISSION_DENIED);
	assert_int_equal(must_peek(f, ALICE).attempts_used, 1);
	must_recover_fully(f, ALICE, f->suite, PASSWORD, version);
	const bkv_record after = must_peek(f, ALICE);
	assert_int_equal(after.attempts_used, 0);
	assert_int_equal(after.seal_key_version, before.seal_key_version);
	assert_int_equal(after.sealed_len, before.sealed_len);
	assert_memory_equal(after.sealed, before.sealed, before.sealed_len);
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
	const char *pin_file = getenv("BKV_TEST_PIN_FILE");
	if (g_module == NULL || g_label == NULL || pin_file == NULL || !read_pin(pin_file)) {
		print_error("test-recovery needs a SoftHSM2 token: run it as tests/with-softhsm "
		            "test-recovery\n");
		return -1;
	}
	if (sodium_init() < 0)
		return -1;
	bkv_token_config cfg = {
	    .module_path = g_module, .token_label = g_label, .pin = g_pin, .pin_len = g_pin_len};
	bkv_token *t = NULL;
	char why[512] = "";
	if (bkv_token_open(&cfg, &t, why, sizeof(why)) != BKV_TOKEN_OK) {
		print_error("cannot open the test token: %s\n", why);
		return -1;
	}
	const bkv_token_err err =
	    bkv_token_create_keys(t, both_suites, 2, BKV_TOKEN_INIT_CREATE, tu_ignore_report, NULL);
	bkv_token_close(t);
	if (err != BKV_TOKEN_OK) {
		print_error("cannot create the keys: %s\n", bkv_token_strerror(err));
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	sodium_memzero(g_pin, sizeof(g_pin));
	return 0;
}

#define TEST(f)               cmocka_unit_test_setup_teardown(f, setup, teardown)
#define TEST_SHORT_TICKETS(f) cmocka_unit_test_setup_teardown(f, setup_short_tickets, teardown)
/* Once per suite, named after it. */
#define SUITE_TESTS(f)                                                                             \
	{#f "_p256", f, setup, teardown, &suite_p256},                                             \
	{                                                                                          \
#f "_ristretto255", f, setup, teardown, &suite_r255                                \
	}

int main(void)
{
	const char *backend = getenv("BKV_TEST_STORAGE");
	if (backend != NULL && strcmp(backend, "postgresql") == 0) {
		on_pg = true;
		pg_url = getenv("BKV_TEST_PG_URL");
		if (pg_url == NULL || pg_url[0] == '\0') {
			fprintf(stderr, "BKV_TEST_STORAGE=postgresql needs BKV_TEST_PG_URL "
			                "(run under tests/with-postgres)\n");
			return 1;
		}
	} else if (backend != NULL && backend[0] != '\0' && strcmp(backend, "sqlite") != 0) {
		fprintf(stderr, "BKV_TEST_STORAGE=%s: expected sqlite or postgresql\n", backend);
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    /* Registration, recovery, status and configuration */
	    SUITE_TESTS(register_then_recover_releases_the_wrapped_key),
	    SUITE_TESTS(wrapped_keys_of_1_and_256_bytes_round_trip),
	    SUITE_TESTS(get_status_reports_the_registration),
	    TEST(get_status_of_an_unregistered_account_reports_not_registered),
	    TEST(get_config_publishes_suites_context_server_keys_limits_and_ksf),
	    /* The attempt limit */
	    SUITE_TESTS(wrong_passwords_count_attempts_remaining_down),
	    SUITE_TESTS(tenth_wrong_password_destroys_the_record),
	    SUITE_TESTS(
	        eleventh_recover_start_without_finishing_destroys_the_record_without_computing_ke2),
	    SUITE_TESTS(success_resets_attempts_used_to_zero),
	    TEST(recover_start_commits_attempt_before_ke2),
	    TEST(recover_start_returns_no_ke2_when_the_commit_cannot_be_written),
	    SUITE_TESTS(recover_start_consumes_no_attempt_when_the_token_fails),
	    TEST(recover_start_returns_no_ke2_while_another_writer_holds_the_database),
	    TEST(recover_start_for_an_unregistered_account_is_not_found),
	    TEST(attempt_limit_zero_means_the_default_of_10),
	    TEST(attempt_limit_up_to_the_maximum_is_accepted),
	    TEST(attempt_limit_above_the_maximum_is_invalid_argument),
	    /* Invalid input */
	    SUITE_TESTS(recover_start_rejects_a_ke1_of_the_wrong_length),
	    SUITE_TESTS(recover_start_rejects_a_ke1_with_an_identity_element),
	    SUITE_TESTS(recover_start_rejects_a_ke1_with_an_off_curve_element),
	    TEST(recover_start_rejects_an_unknown_suite),
	    TEST(recover_start_rejects_a_disabled_suite),
	    SUITE_TESTS(recover_start_with_another_suite_than_registered_is_failed_precondition),
	    SUITE_TESTS(register_start_rejects_an_invalid_registration_request),
	    TEST(register_rejects_an_unknown_or_disabled_suite),
	    SUITE_TESTS(register_finish_rejects_a_record_of_the_wrong_length),
	    SUITE_TESTS(register_finish_rejects_a_record_with_an_invalid_client_public_key),
	    SUITE_TESTS(register_finish_rejects_an_empty_wrapped_key),
	    SUITE_TESTS(register_finish_rejects_a_wrapped_key_of_257_bytes),
	    TEST(register_finish_rejects_an_account_id_longer_than_256_bytes),
	    /* Tickets */
	    SUITE_TESTS(recover_finish_rejects_a_forged_ticket),
	    SUITE_TESTS(recover_finish_rejects_a_truncated_ticket),
	    SUITE_TESTS(recover_finish_rejects_a_ticket_with_bytes_appended),
	    SUITE_TESTS(recover_finish_rejects_a_ticket_with_one_byte_flipped),
	    SUITE_TESTS(recover_finish_rejects_a_ticket_from_another_account),
	    TEST_SHORT_TICKETS(recover_finish_rejects_an_expired_ticket),
	    SUITE_TESTS(recover_finish_rejects_a_replayed_ticket_after_a_success),
	    SUITE_TESTS(recover_finish_rejects_a_replayed_ticket_after_a_failure),
	    SUITE_TESTS(recover_finish_rejects_a_ticket_from_before_a_reregistration),
	    SUITE_TESTS(recover_finish_rejects_a_ke3_of_the_wrong_length),
	    /* Replacing and deleting */
	    SUITE_TESTS(register_finish_replaces_the_record_with_a_new_version_and_a_fresh_counter),
	    TEST(delete_removes_the_record),
	    TEST(recover_finish_after_delete_releases_nothing),
	    TEST(destroying_an_exhausted_record_spares_a_registration_that_replaced_it),
	    /* The audit log */
	    TEST(audit_log_records_registration_attempts_recovery_and_deletion),
	    TEST(audit_log_records_destruction_by_finish_and_by_start),
	    /* Processes */
	    TEST(concurrent_guessers_get_exactly_the_attempt_limit_of_ke2s),
	    TEST(concurrent_guessers_through_a_committer_get_exactly_the_limit),
	    TEST(sigkill_during_recover_start_never_loses_a_committed_attempt),
	    TEST(a_commit_leader_killed_mid_commit_sends_no_ke2_without_its_commit),
	    TEST(a_committer_killed_mid_commit_sends_no_ke2_without_its_commit),
	    TEST(registration_survives_sigkill_right_after_register_finish),
	    /* Issue 9: RegisterStart answers never test guesses */
	    SUITE_TESTS(register_start_answers_never_test_guesses_against_the_envelope),
	    SUITE_TESTS(register_start_answers_from_before_a_password_change_test_nothing_after_it),
	    /* Registration ids, registration tickets, per-account versions */
	    SUITE_TESTS(every_registration_gets_a_fresh_registration_id_named_by_its_ticket),
	    TEST(record_versions_count_per_account_from_1),
	    SUITE_TESTS(recover_finish_rejects_a_ticket_from_before_delete_and_a_new_registration),
	    /* Compare-and-set registration */
	    SUITE_TESTS(register_finish_is_compare_and_set_on_the_record_version),
	    TEST(registrations_racing_for_the_same_record_version_let_only_one_win),
	    SUITE_TESTS(register_finish_refuses_a_missing_forged_or_foreign_registration_ticket),
	    SUITE_TESTS(register_finish_refuses_an_expired_registration_ticket),
	    /* Tombstones and AttemptInfo */
	    SUITE_TESTS(a_destroyed_record_stays_a_tombstone_until_registered_over_or_deleted),
	    SUITE_TESTS(every_recovery_failure_concerning_a_record_carries_attempt_info),
	    /* Rows edited outside bkvd */
	    TEST(tampered_counters_are_data_loss_and_serve_nothing),
	    SUITE_TESTS(a_tombstone_turned_back_into_a_record_is_data_loss),
	    TEST(counters_swapped_between_two_rows_are_data_loss),
	    TEST(a_changed_registration_id_is_data_loss),
	    TEST(a_row_without_a_state_mac_is_data_loss),
	    SUITE_TESTS(a_migrated_record_from_before_registration_ids_still_recovers),
	    SUITE_TESTS(stored_values_out_of_range_are_data_loss),
	    SUITE_TESTS(recover_finish_on_a_stored_suite_the_vault_does_not_know_is_data_loss),
	    /* Issue 10: seal-key rotation while serving */
	    SUITE_TESTS(register_finish_sealed_under_a_key_retired_before_its_commit_seals_again),
	    SUITE_TESTS(a_record_below_the_seal_floor_still_counts_attempts_and_recovers),
	};
	return cmocka_run_group_tests_name(on_pg ? "recovery (postgresql)" : "recovery (sqlite)",
	                                   tests, group_setup, group_teardown);
}
