/*
 * bench_opaque.c - bkv-bench-opaque: server-side OPAQUE throughput for each suite
 * (registration response, login = KE2 + KE3 check, raw variable-base scalar multiplication)
 * and the protocol's overhead in scalar multiplications per login. Prints figures only; it
 * never passes or fails on speed. Exits non-zero only if an operation returns an error.
 */
#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opaque/opaque.h"
#include "opaque_internal.h"

#define DEFAULT_SECONDS 1.0
#define MAX_SECONDS     3600.0
#define WARMUP_FRACTION 0.2  /* warm-up = this fraction of the measurement duration */
#define SLICE_SECONDS   0.05 /* measurements alternate in slices of this much measured time */

static const char bench_context[] = "bkv-bench-opaque";
static const char bench_user[] = "alice";
static const char bench_password[] = "correct horse battery staple";

/* Per-suite fixture: server keys and one registered user, built once outside any timing. */
typedef struct bench_fixture {
	opaque_suite_id suite;
	const opaque_sizes *sz;
	opaque_config config;
	opaque_soft_server_keys server_keys;
	uint8_t registration_request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t scalar[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t element[OPAQUE_MAX_ELEMENT_BYTES];
} bench_fixture;

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool check(opaque_err err, const char *suite, const char *what)
{
	if (err == OPAQUE_OK) {
		return true;
	}
	fprintf(stderr, "bkv-bench-opaque: %s: %s failed: %s\n", suite, what, opaque_strerror(err));
	return false;
}

static bool fixture_init(bench_fixture *f, opaque_suite_id suite)
{
	const char *name = opaque_suite_name(suite);
	const uint8_t *password = (const uint8_t *)bench_password;
	const size_t password_len = sizeof(bench_password) - 1;
	opaque_client_registration_state state;
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t public_key[OPAQUE_MAX_ELEMENT_BYTES];
	bool ok;

	memset(f, 0, sizeof(*f));
	f->suite = suite;
	f->sz = opaque_suite_sizes(suite);
	if (f->sz == NULL || name == NULL) {
		fprintf(stderr, "bkv-bench-opaque: suite %d unknown to the library\n", (int)suite);
		return false;
	}
	/* The KSF runs only on the client, so it is identity here: it is not what we measure. */
	f->config.suite = suite;
	f->config.context = (const uint8_t *)bench_context;
	f->config.context_len = sizeof(bench_context) - 1;
	f->config.ksf.id = OPAQUE_KSF_IDENTITY;

	ok = check(opaque_soft_server_keys_generate(&f->server_keys, suite), name,
	           "opaque_soft_server_keys_generate") &&
	     check(opaque_client_registration_start(&f->config, password, password_len, &state,
	                                            f->registration_request,
	                                            f->sz->registration_request),
	           name, "opaque_client_registration_start") &&
	     check(opaque_server_registration_response(
	               &f->config, &f->server_keys.keys, (const uint8_t *)bench_user,
	               sizeof(bench_user) - 1, f->registration_request, f->sz->registration_request,
	               response, f->sz->registration_response),
	           name, "opaque_server_registration_response") &&
	     check(opaque_client_registration_finish(&f->config, &state, password, password_len,
	                                             NULL, response, f->sz->registration_response,
	                                             f->record, f->sz->registration_record,
	                                             export_key, f->sz->export_key),
	           name, "opaque_client_registration_finish") &&
	     /* A random non-zero scalar and a valid element for the raw scalar multiplication. */
	     check(
	         opaque_generate_ake_key_pair(suite, f->scalar, f->sz->Nsk, public_key, f->sz->Npk),
	         name, "opaque_generate_ake_key_pair");
	if (ok) {
		memcpy(f->element, f->server_keys.keys.server_public_key, f->sz->Npk);
	}
	sodium_memzero(&state, sizeof(state));
	sodium_memzero(export_key, sizeof(export_key));
	return ok;
}

static void fixture_wipe(bench_fixture *f)
{
	opaque_soft_server_keys_wipe(&f->server_keys);
	sodium_memzero(f, sizeof(*f));
}

/* Time and operation count accumulated by one measurement across its slices. */
typedef struct bench_tally {
	double seconds;
	unsigned long ops;
} bench_tally;

/* Runs opaque_server_registration_response for `seconds`, adding to *tally. */
static bool bench_registration(bench_fixture *f, double seconds, bench_tally *tally)
{
	uint8_t response[OPAQUE_MAX_REGISTRATION_RESPONSE_BYTES];
	const double start = now_seconds();
	double elapsed;

	do {
		if (!check(opaque_server_registration_response(
		               &f->config, &f->server_keys.keys, (const uint8_t *)bench_user,
		               sizeof(bench_user) - 1, f->registration_request,
		               f->sz->registration_request, response, f->sz->registration_response),
		           opaque_suite_name(f->suite), "opaque_server_registration_response")) {
			return false;
		}
		tally->ops++;
		elapsed = now_seconds() - start;
	} while (elapsed < seconds);
	tally->seconds += elapsed;
	return true;
}

/*
 * A full login per iteration, since each KE3 answers one KE2. Only the two server calls are
 * timed: their time accumulates until it reaches `seconds`, so the wall time is longer (the
 * untimed client work runs in between).
 */
static bool bench_login(bench_fixture *f, double seconds, bench_tally *tally)
{
	const char *name = opaque_suite_name(f->suite);
	const uint8_t *password = (const uint8_t *)bench_password;
	const size_t password_len = sizeof(bench_password) - 1;
	const opaque_sizes *sz = f->sz;
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
		ok = check(opaque_client_login_start(&f->config, password, password_len,
		                                     &client_state, ke1, sz->ke1),
		           name, "opaque_client_login_start");
		if (!ok) {
			break;
		}
		t0 = now_seconds();
		err_start = opaque_server_login_start(
		    &f->config, &f->server_keys.keys, NULL, (const uint8_t *)bench_user,
		    sizeof(bench_user) - 1, f->record, sz->registration_record, ke1, sz->ke1,
		    &server_state, ke2, sz->ke2);
		t1 = now_seconds();
		ok = check(err_start, name, "opaque_server_login_start") &&
		     check(opaque_client_login_finish(&f->config, &client_state, password,
		                                      password_len, NULL, ke2, sz->ke2, ke3,
		                                      sz->ke3, client_session_key, sz->session_key,
		                                      export_key, sz->export_key),
		           name, "opaque_client_login_finish");
		if (!ok) {
			break;
		}
		t2 = now_seconds();
		err_finish = opaque_server_login_finish(&server_state, ke3, sz->ke3,
		                                        server_session_key, sz->session_key);
		t3 = now_seconds();
		ok = check(err_finish, name, "opaque_server_login_finish");
		if (ok &&
		    sodium_memcmp(client_session_key, server_session_key, sz->session_key) != 0) {
			fprintf(stderr, "bkv-bench-opaque: %s: session keys differ\n", name);
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

/* Chains opaque_scalar_mult (each output is the next input) so no call can be skipped. */
static bool bench_scalar_mult(bench_fixture *f, double seconds, bench_tally *tally)
{
	uint8_t out[OPAQUE_MAX_ELEMENT_BYTES];
	const size_t n = f->sz->Noe;
	const double start = now_seconds();
	double elapsed;

	do {
		if (!check(
		        opaque_scalar_mult(f->suite, f->scalar, f->sz->Ns, f->element, n, out, n),
		        opaque_suite_name(f->suite), "opaque_scalar_mult")) {
			return false;
		}
		memcpy(f->element, out, n);
		tally->ops++;
		elapsed = now_seconds() - start;
	} while (elapsed < seconds);
	tally->seconds += elapsed;
	return true;
}

typedef bool (*bench_fn)(bench_fixture *f, double seconds, bench_tally *tally);

enum { BENCH_REGISTRATION, BENCH_LOGIN, BENCH_SCALAR_MULT, BENCH_COUNT };

static const bench_fn bench_fns[BENCH_COUNT] = {bench_registration, bench_login, bench_scalar_mult};

/*
 * One warm-up run of each measurement (discarded), then the three measurements interleaved
 * in slices of SLICE_SECONDS until each has accumulated `seconds`. Interleaving exposes all
 * three to the same machine conditions (frequency scaling, noisy neighbours), which keeps
 * their ratios meaningful even when absolute speed drifts during the run.
 */
static bool measure_all(bench_fixture *f, double seconds, double ops_per_s[BENCH_COUNT])
{
	bench_tally tally[BENCH_COUNT] = {{0.0, 0}};
	bench_tally discarded = {0.0, 0};
	bool pending = true;

	for (int i = 0; i < BENCH_COUNT; i++) {
		if (!bench_fns[i](f, seconds * WARMUP_FRACTION, &discarded)) {
			return false;
		}
	}
	while (pending) {
		pending = false;
		for (int i = 0; i < BENCH_COUNT; i++) {
			double left = seconds - tally[i].seconds;

			if (left <= 0.0) {
				continue;
			}
			if (!bench_fns[i](f, left < SLICE_SECONDS ? left : SLICE_SECONDS,
			                  &tally[i])) {
				return false;
			}
			pending = pending || tally[i].seconds < seconds;
		}
	}
	for (int i = 0; i < BENCH_COUNT; i++) {
		ops_per_s[i] = (double)tally[i].ops / tally[i].seconds;
	}
	return true;
}

static bool run_suite(opaque_suite_id suite, double seconds)
{
	bench_fixture f;
	const char *name = opaque_suite_name(suite);
	double rate[BENCH_COUNT];
	bool ok;

	ok = fixture_init(&f, suite) && measure_all(&f, seconds, rate);
	if (ok) {
		printf("%-20s %-24s %10.0f ops/s\n", name, "registration_response",
		       rate[BENCH_REGISTRATION]);
		printf("%-20s %-24s %10.0f ops/s\n", name, "login (KE2 + KE3 check)",
		       rate[BENCH_LOGIN]);
		printf("%-20s %-24s %10.0f ops/s\n", name, "scalar_mult", rate[BENCH_SCALAR_MULT]);
		printf("%-20s %-24s %10.1f\n", name, "scalar_mults_per_login",
		       rate[BENCH_SCALAR_MULT] / rate[BENCH_LOGIN]);
		printf("%-20s %-24s %10.1f\n", name, "scalar_mults_per_reg",
		       rate[BENCH_SCALAR_MULT] / rate[BENCH_REGISTRATION]);
		fflush(stdout);
	}
	fixture_wipe(&f);
	return ok;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: bkv-bench-opaque [--seconds N]\n"
	    "  Measures, for each OPAQUE suite, server-side throughput:\n"
	    "    registration_response   opaque_server_registration_response\n"
	    "    login                   opaque_server_login_start + opaque_server_login_finish\n"
	    "                            (client work runs between them, untimed)\n"
	    "    scalar_mult             one variable-base scalar multiplication\n"
	    "  and scalar_mults_per_login = scalar_mult ops/s / login ops/s.\n"
	    "  --seconds N   measured duration of each figure (default %.0f; decimals allowed).\n"
	    "  Each figure gets a warm-up of %.0f%% of N; then the three are measured\n"
	    "  interleaved in %.0f ms slices, so drifting machine speed affects them alike.\n",
	    DEFAULT_SECONDS, WARMUP_FRACTION * 100.0, SLICE_SECONDS * 1000.0);
}

int main(int argc, char **argv)
{
	static const opaque_suite_id suites[] = {
	    OPAQUE_SUITE_P256_SHA256,
	    OPAQUE_SUITE_RISTRETTO255_SHA512,
	};
	double seconds = DEFAULT_SECONDS;

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
				        "bkv-bench-opaque: --seconds wants a number in (0, %.0f]\n",
				        MAX_SECONDS);
				return 2;
			}
			continue;
		}
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "bkv-bench-opaque: sodium_init failed\n");
		return 1;
	}

	printf("bkv-bench-opaque: server side, one thread, %.3g s per figure (interleaved)"
	       " + %.3g s warm-up\n"
	       "client KSF: identity (the KSF runs on the client only); %s; libsodium %s\n",
	       seconds, seconds * WARMUP_FRACTION, OpenSSL_version(OPENSSL_VERSION),
	       sodium_version_string());
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (!run_suite(suites[i], seconds)) {
			return 1;
		}
	}
	return 0;
}
