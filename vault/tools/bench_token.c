/*
 * bench_token.c - bkv-bench-token: what keeping the server keys in a PKCS#11 token costs.
 * For each suite it measures, in the same run and interleaved, server logins per second
 * (opaque_server_login_start + opaque_server_login_finish) with the token's keys and with
 * pure-software keys, and the raw server-key operations (oprf_seed_expand = HMAC in the
 * token, ake_dh), then prints the token/software ratio. Prints figures only; it never
 * passes or fails on speed. Exits non-zero only if an operation returns an error.
 *
 * It needs a token: BKV_TEST_PKCS11_MODULE, BKV_TEST_TOKEN_LABEL and BKV_TEST_PIN_FILE, as
 * tests/with-softhsm provides them (tests/with-softhsm build/bin/bkv-bench-token). Keys
 * missing from the token are created first.
 */
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opaque/opaque.h"
#include "token.h"

#define DEFAULT_SECONDS 1.0
#define MAX_SECONDS     3600.0
#define WARMUP_FRACTION 0.2  /* warm-up = this fraction of the measurement duration */
#define SLICE_SECONDS   0.05 /* measurements alternate in slices of this much measured time */

static const char bench_context[] = "bkv-bench-token";
static const char bench_user[] = "alice";
static const char bench_password[] = "correct horse battery staple";

enum { KEYS_TOKEN, KEYS_SOFTWARE, KEYS_COUNT };

enum { OP_LOGIN, OP_HMAC, OP_DH, OP_COUNT };
static const char *const op_names[OP_COUNT] = {
    "login (KE2 + KE3 check)",
    "oprf_seed_expand",
    "ake_dh",
};

/* One suite: both sets of server keys, a user registered with each, and a valid peer
 * element for ake_dh. Built once, outside any timing. */
typedef struct bench_suite {
	opaque_suite_id suite;
	const char *name;
	const opaque_sizes *sz;
	opaque_config config;
	opaque_soft_server_keys soft;
	const opaque_server_keys *keys[KEYS_COUNT];
	uint8_t record[KEYS_COUNT][OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t peer[OPAQUE_MAX_ELEMENT_BYTES];
	uint8_t hmac_info[sizeof(bench_user) - 1 + 7]; /* credential_identifier || "OprfKey" */
} bench_suite;

typedef struct bench_tally {
	double seconds;
	unsigned long ops;
} bench_tally;

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool check(opaque_err err, const bench_suite *b, const char *what)
{
	if (err == OPAQUE_OK) {
		return true;
	}
	fprintf(stderr, "bkv-bench-token: %s: %s failed: %s\n", b->name, what,
	        opaque_strerror(err));
	return false;
}

static bool register_user(bench_suite *b, int k)
{
	const uint8_t *password = (const uint8_t *)bench_password;
	const size_t password_len = sizeof(bench_password) - 1;
	opaque_client_registration_state state;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	bool ok;

	ok =
	    check(opaque_client_registration_start(&b->config, password, password_len, &state,
	                                           request, b->sz->registration_request),
	          b, "opaque_client_registration_start") &&
	    check(opaque_server_registration_response(
	              &b->config, b->keys[k], (const uint8_t *)bench_user, sizeof(bench_user) - 1,
	              request, b->sz->registration_request, response, b->sz->registration_response),
	          b, "opaque_server_registration_response") &&
	    check(opaque_client_registration_finish(&b->config, &state, password, password_len,
	                                            NULL, response, b->sz->registration_response,
	                                            b->record[k], b->sz->registration_record,
	                                            export_key, b->sz->export_key),
	          b, "opaque_client_registration_finish");
	sodium_memzero(&state, sizeof(state));
	sodium_memzero(export_key, sizeof(export_key));
	return ok;
}

static bool suite_init(bench_suite *b, opaque_suite_id suite, bkv_token *token)
{
	uint8_t sk[OPAQUE_MAX_SCALAR_BYTES];
	bool ok;

	memset(b, 0, sizeof(*b));
	b->suite = suite;
	b->name = opaque_suite_name(suite);
	b->sz = opaque_suite_sizes(suite);
	/* The KSF runs only on the client, so it is identity here: it is not what we measure. */
	b->config.suite = suite;
	b->config.context = (const uint8_t *)bench_context;
	b->config.context_len = sizeof(bench_context) - 1;
	b->config.ksf.id = OPAQUE_KSF_IDENTITY;
	memcpy(b->hmac_info, bench_user, sizeof(bench_user) - 1);
	memcpy(b->hmac_info + sizeof(bench_user) - 1, "OprfKey", 7);
	b->keys[KEYS_TOKEN] = bkv_token_server_keys(token, suite);
	b->keys[KEYS_SOFTWARE] = &b->soft.keys;
	if (b->keys[KEYS_TOKEN] == NULL) {
		fprintf(stderr, "bkv-bench-token: %s: the token's keys are not loaded\n", b->name);
		return false;
	}
	/* A random valid element as the ake_dh peer, as a client's keyshare would be. */
	ok = check(opaque_soft_server_keys_generate(&b->soft, suite), b,
	           "opaque_soft_server_keys_generate") &&
	     check(opaque_generate_ake_key_pair(suite, sk, b->sz->Nsk, b->peer, b->sz->Npk), b,
	           "opaque_generate_ake_key_pair") &&
	     register_user(b, KEYS_TOKEN) && register_user(b, KEYS_SOFTWARE);
	sodium_memzero(sk, sizeof(sk));
	return ok;
}

/*
 * A full login per iteration, since each KE3 answers one KE2. KE1 is made before the timed
 * part; only the two server calls are timed, and their time accumulates until it reaches
 * `seconds` (the client's KE3 runs untimed in between).
 */
static bool bench_login(bench_suite *b, int k, double seconds, bench_tally *tally)
{
	const uint8_t *password = (const uint8_t *)bench_password;
	const size_t password_len = sizeof(bench_password) - 1;
	const opaque_sizes *sz = b->sz;
	opaque_client_login_state client_state;
	opaque_server_login_state server_state;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	uint8_t ke2[OPAQUE_MAX_KE2_BYTES];
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t client_session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t server_session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	double server_time = 0.0;
	double t0, t1, t2, t3;
	opaque_err err_start, err_finish;
	bool ok = true;

	while (ok && server_time < seconds) {
		ok = check(opaque_client_login_start(&b->config, password, password_len,
		                                     &client_state, ke1, sz->ke1),
		           b, "opaque_client_login_start");
		if (!ok) {
			break;
		}
		t0 = now_seconds();
		err_start = opaque_server_login_start(
		    &b->config, b->keys[k], NULL, (const uint8_t *)bench_user,
		    sizeof(bench_user) - 1, b->record[k], sz->registration_record, ke1, sz->ke1,
		    &server_state, ke2, sz->ke2);
		t1 = now_seconds();
		ok = check(err_start, b, "opaque_server_login_start") &&
		     check(opaque_client_login_finish(&b->config, &client_state, password,
		                                      password_len, NULL, ke2, sz->ke2, ke3,
		                                      sz->ke3, client_session_key, sz->session_key,
		                                      export_key, sz->export_key),
		           b, "opaque_client_login_finish");
		if (!ok) {
			break;
		}
		t2 = now_seconds();
		err_finish = opaque_server_login_finish(&server_state, ke3, sz->ke3,
		                                        server_session_key, sz->session_key);
		t3 = now_seconds();
		ok = check(err_finish, b, "opaque_server_login_finish");
		if (ok &&
		    sodium_memcmp(client_session_key, server_session_key, sz->session_key) != 0) {
			fprintf(stderr, "bkv-bench-token: %s: session keys differ\n", b->name);
			ok = false;
		}
		server_time += (t1 - t0) + (t3 - t2);
		tally->ops++;
	}
	tally->seconds += server_time;
	sodium_memzero(&client_state, sizeof(client_state));
	sodium_memzero(&server_state, sizeof(server_state));
	sodium_memzero(client_session_key, sizeof(client_session_key));
	sodium_memzero(server_session_key, sizeof(server_session_key));
	sodium_memzero(export_key, sizeof(export_key));
	return ok;
}

/* oprf_seed_expand as the core calls it per request: info = credential_identifier ||
 * "OprfKey", Nok = 32 bytes out, i.e. one HMAC in the token. */
static bool bench_hmac(bench_suite *b, int k, double seconds, bench_tally *tally)
{
	const opaque_server_keys *keys = b->keys[k];
	uint8_t out[OPAQUE_OPRF_KEY_SEED_BYTES];
	const double start = now_seconds();
	double elapsed;

	do {
		if (!check(keys->oprf_seed_expand(keys->ctx, b->hmac_info, sizeof(b->hmac_info),
		                                  out, sizeof(out)),
		           b, "oprf_seed_expand")) {
			return false;
		}
		tally->ops++;
		elapsed = now_seconds() - start;
	} while (elapsed < seconds);
	tally->seconds += elapsed;
	sodium_memzero(out, sizeof(out));
	return true;
}

/* One ake_dh with a fixed peer (P-256 in the token: two ECDH derivations plus the
 * full-point recovery; ristretto255: software on the unsealed key). */
static bool bench_dh(bench_suite *b, int k, double seconds, bench_tally *tally)
{
	const opaque_server_keys *keys = b->keys[k];
	uint8_t out[OPAQUE_MAX_ELEMENT_BYTES];
	const double start = now_seconds();
	double elapsed;

	do {
		if (!check(keys->ake_dh(keys->ctx, b->peer, b->sz->Npk, out, b->sz->Npk), b,
		           "ake_dh")) {
			return false;
		}
		tally->ops++;
		elapsed = now_seconds() - start;
	} while (elapsed < seconds);
	tally->seconds += elapsed;
	return true;
}

typedef bool (*bench_fn)(bench_suite *b, int k, double seconds, bench_tally *tally);

static const bench_fn bench_fns[OP_COUNT] = {bench_login, bench_hmac, bench_dh};

/*
 * One warm-up run of each measurement (discarded), then all of them - every operation with
 * token and software keys - interleaved in slices of SLICE_SECONDS until each has
 * accumulated `seconds`, so drifting machine speed affects both sides of each ratio alike.
 */
static bool measure_suite(bench_suite *b, double seconds, double rate[OP_COUNT][KEYS_COUNT])
{
	bench_tally tally[OP_COUNT][KEYS_COUNT];
	bench_tally discarded = {0.0, 0};
	bool pending = true;

	memset(tally, 0, sizeof(tally));
	for (int op = 0; op < OP_COUNT; op++) {
		for (int k = 0; k < KEYS_COUNT; k++) {
			if (!bench_fns[op](b, k, seconds * WARMUP_FRACTION, &discarded)) {
				return false;
			}
		}
	}
	while (pending) {
		pending = false;
		for (int op = 0; op < OP_COUNT; op++) {
			for (int k = 0; k < KEYS_COUNT; k++) {
				double left = seconds - tally[op][k].seconds;

				if (left <= 0.0) {
					continue;
				}
				if (!bench_fns[op](b, k,
				                   left < SLICE_SECONDS ? left : SLICE_SECONDS,
				                   &tally[op][k])) {
					return false;
				}
				pending = pending || tally[op][k].seconds < seconds;
			}
		}
	}
	for (int op = 0; op < OP_COUNT; op++) {
		for (int k = 0; k < KEYS_COUNT; k++) {
			rate[op][k] = (double)tally[op][k].ops / tally[op][k].seconds;
		}
	}
	return true;
}

static bool run_suite(opaque_suite_id suite, bkv_token *token, double seconds)
{
	bench_suite b;
	double rate[OP_COUNT][KEYS_COUNT];
	bool ok;

	ok = suite_init(&b, suite, token) && measure_suite(&b, seconds, rate);
	if (ok) {
		for (int op = 0; op < OP_COUNT; op++) {
			printf("%-20s %-24s %12.0f %12.0f %10.3f%s\n", b.name, op_names[op],
			       rate[op][KEYS_TOKEN], rate[op][KEYS_SOFTWARE],
			       rate[op][KEYS_TOKEN] / rate[op][KEYS_SOFTWARE],
			       op == OP_DH && suite == OPAQUE_SUITE_RISTRETTO255_SHA512
			           ? "  (unsealed key, in software)"
			           : "");
		}
		fflush(stdout);
	} else if (bkv_token_last_error(token) != BKV_TOKEN_OK) {
		fprintf(stderr, "bkv-bench-token: token: %s\n",
		        bkv_token_strerror(bkv_token_last_error(token)));
	}
	opaque_soft_server_keys_wipe(&b.soft);
	sodium_memzero(&b, sizeof(b));
	return ok;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: bkv-bench-token [--seconds N]\n"
	    "  Measures, for each OPAQUE suite, with the token's server keys and with\n"
	    "  software keys in the same run:\n"
	    "    login              opaque_server_login_start + opaque_server_login_finish\n"
	    "                       (KE1 made beforehand and KE3 in between, untimed)\n"
	    "    oprf_seed_expand   one per registration or login: HMAC in the token\n"
	    "    ake_dh             one per login: P-256 ECDH in the token (two derivations)\n"
	    "  and the ratio token/software of the operations per second.\n"
	    "  --seconds N   measured duration of each figure (default %.0f; decimals allowed).\n"
	    "  Each figure gets a warm-up of %.0f%% of N; then all are measured interleaved\n"
	    "  in %.0f ms slices, so drifting machine speed affects them alike.\n"
	    "  The token comes from BKV_TEST_PKCS11_MODULE, BKV_TEST_TOKEN_LABEL and\n"
	    "  BKV_TEST_PIN_FILE (run it as: tests/with-softhsm build/bin/bkv-bench-token);\n"
	    "  missing keys are created.\n",
	    DEFAULT_SECONDS, WARMUP_FRACTION * 100.0, SLICE_SECONDS * 1000.0);
}

/* Reads the PIN file, without a trailing newline. */
static bool read_pin(const char *path, char *pin, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		fprintf(stderr, "bkv-bench-token: cannot read the PIN file %s: %s\n", path,
		        strerror(errno));
		return false;
	}
	*len = fread(pin, 1, cap, f);
	fclose(f);
	while (*len > 0 && (pin[*len - 1] == '\n' || pin[*len - 1] == '\r')) {
		(*len)--;
	}
	if (*len == 0 || *len == cap) {
		fprintf(stderr, "bkv-bench-token: the PIN file %s is empty or too long\n", path);
		return false;
	}
	return true;
}

static void report_key(void *arg, const char *label, const char *what, const uint8_t *public_key,
                       size_t public_key_len)
{
	(void)arg;
	(void)public_key;
	(void)public_key_len;
	fprintf(stderr, "bkv-bench-token: %s: %s\n", label, what);
}

static bkv_token *open_token(void)
{
	static const opaque_suite_id suites[] = {
	    OPAQUE_SUITE_P256_SHA256,
	    OPAQUE_SUITE_RISTRETTO255_SHA512,
	};
	const char *module = getenv("BKV_TEST_PKCS11_MODULE");
	const char *label = getenv("BKV_TEST_TOKEN_LABEL");
	const char *pin_file = getenv("BKV_TEST_PIN_FILE");
	char *pin;
	size_t pin_len = 0;
	bkv_token *token = NULL;
	char why[512] = "";
	bkv_token_err err;

	if (module == NULL || label == NULL || pin_file == NULL) {
		fprintf(stderr, "bkv-bench-token: BKV_TEST_PKCS11_MODULE, BKV_TEST_TOKEN_LABEL and "
		                "BKV_TEST_PIN_FILE must name a token; run it as "
		                "tests/with-softhsm build/bin/bkv-bench-token\n");
		return NULL;
	}
	pin = sodium_malloc(BKV_TOKEN_PIN_MAX + 1);
	if (pin == NULL) {
		return NULL;
	}
	if (!read_pin(pin_file, pin, BKV_TOKEN_PIN_MAX + 1, &pin_len)) {
		sodium_free(pin);
		return NULL;
	}
	bkv_token_config config = {
	    .module_path = module, .token_label = label, .pin = pin, .pin_len = pin_len};
	err = bkv_token_open(&config, &token, why, sizeof(why));
	sodium_free(pin);
	if (err != BKV_TOKEN_OK) {
		fprintf(stderr, "bkv-bench-token: %s\n", why[0] ? why : bkv_token_strerror(err));
		return NULL;
	}
	err = bkv_token_load_keys(token, suites, 2);
	if (err == BKV_TOKEN_ERR_KEY_MISSING) {
		err = bkv_token_create_keys(token, suites, 2, BKV_TOKEN_INIT_CREATE, report_key,
		                            NULL);
		if (err == BKV_TOKEN_OK) {
			err = bkv_token_load_keys(token, suites, 2);
		}
	}
	if (err != BKV_TOKEN_OK) {
		fprintf(stderr, "bkv-bench-token: cannot load the keys: %s\n",
		        bkv_token_strerror(err));
		bkv_token_close(token);
		return NULL;
	}
	return token;
}

int main(int argc, char **argv)
{
	static const opaque_suite_id suites[] = {
	    OPAQUE_SUITE_P256_SHA256,
	    OPAQUE_SUITE_RISTRETTO255_SHA512,
	};
	double seconds = DEFAULT_SECONDS;
	bkv_token *token;
	bool ok = true;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			char *end;

			errno = 0;
			seconds = strtod(argv[++i], &end);
			if (errno != 0 || *end != '\0' || end == argv[i] || !isfinite(seconds) ||
			    seconds <= 0.0 || seconds > MAX_SECONDS) {
				fprintf(stderr,
				        "bkv-bench-token: --seconds wants a number in (0, %.0f]\n",
				        MAX_SECONDS);
				return 2;
			}
			continue;
		}
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "bkv-bench-token: sodium_init failed\n");
		return 1;
	}
	token = open_token();
	if (token == NULL) {
		return 1;
	}

	printf("bkv-bench-token: server side, one thread, one token session, %.3g s per figure"
	       " (interleaved) + %.3g s warm-up\n"
	       "module %s, token \"%s\"; client KSF: identity\n"
	       "%-20s %-24s %12s %12s %10s\n",
	       seconds, seconds * WARMUP_FRACTION, getenv("BKV_TEST_PKCS11_MODULE"),
	       getenv("BKV_TEST_TOKEN_LABEL"), "suite", "operation", "token/s", "software/s",
	       "ratio");
	for (size_t i = 0; ok && i < sizeof(suites) / sizeof(suites[0]); i++) {
		ok = run_suite(suites[i], token, seconds);
	}
	bkv_token_close(token);
	return ok ? 0 : 1;
}
