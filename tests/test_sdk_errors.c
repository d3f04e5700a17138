/*
 * test_sdk_errors.c - what libbkv and the bkv CLI report when what answers is not a
 * healthy vault, against a fake vault (tests/testfakevault.h) that answers each call with
 * what the test sets: each failure has its own status (and CLI exit code), so that an
 * application retries only what a retry can fix.
 *
 *   test-sdk-errors BKV_CLI
 */
#define _GNU_SOURCE

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "bkv.h"
#include "bkv/v1/vault.pb-c.h"
#include "testfakevault.h"

static fake_vault fake;
static const char *cli_path;

#define TOKEN "a-bearer-token"

#define EXPECT_STATUS(call, want, err)                                                             \
	do {                                                                                       \
		const bkv_status got_ = (call);                                                    \
		if (got_ != (want))                                                                \
			fail_msg("%s: got %s (%s), want %s", #call, bkv_status_name(got_),         \
			         (err).message, bkv_status_name(want));                            \
	} while (0)

static bkv_client *client_for(const char *ca_file, const char *pinned_cert)
{
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", fake.tls_port);
	bkv_client_config config = {
	    .vault_url = url, .ca_file = ca_file, .pinned_cert = pinned_cert, .timeout_ms = 5000};
	bkv_client *c = NULL;
	bkv_error err = {0};
	if (bkv_client_new(&config, &c, &err) != BKV_OK)
		fail_msg("bkv_client_new: %s", err.message);
	return c;
}

/* One GetStatus call through a client that trusts the fake's certificate. */
static bkv_status status_call(bkv_error *err)
{
	bkv_client *c = client_for(fake.cert, NULL);
	bkv_account_status s;
	memset(err, 0, sizeof(*err));
	const bkv_status st = bkv_status_get(c, TOKEN, &s, err);
	bkv_client_free(c);
	print_message("    %s: %s\n", bkv_status_name(st), err->message);
	return st;
}

static void set_text(int status, const char *content_type, const char *body)
{
	fake_set(&fake, status, content_type, body, strlen(body));
}

/* A Connect error resource_exhausted with a RetryInfo detail whose value is base64. */
static void set_rate_limited(const char *retry_info_base64)
{
	char body[512];
	snprintf(body, sizeof(body),
	         "{\"code\":\"resource_exhausted\",\"message\":\"too many requests\","
	         "\"details\":[{\"type\":\"bkv.v1.RetryInfo\",\"value\":\"%s\"}]}",
	         retry_info_base64);
	set_text(429, "application/json", body);
}

/* ---- Answers that are not the Connect protocol's: BKV_ERR_HTTP with the status ---- */

static void proxy_502_page_is_http_error_with_status(void **state)
{
	(void)state;
	set_text(502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_HTTP, err);
	assert_int_equal(err.http_status, 502);
	assert_non_null(strstr(err.message, "HTTP 502"));
}

static void gateway_timeout_504_is_http_error_with_status(void **state)
{
	(void)state;
	set_text(504, "text/html", "<html>504 Gateway Time-out</html>");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_HTTP, err);
	assert_int_equal(err.http_status, 504);
}

static void wrong_path_404_page_is_http_error(void **state)
{
	(void)state;
	set_text(404, "text/html", "<html>Not Found</html>");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_HTTP, err);
	assert_int_equal(err.http_status, 404);
}

static void bare_401_is_http_error_not_unauthenticated(void **state)
{
	(void)state;
	set_text(401, "text/plain", "Unauthorized");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_HTTP, err);
	assert_int_equal(err.http_status, 401);
}

static void json_without_connect_code_is_http_error(void **state)
{
	(void)state;
	set_text(500, "application/json", "{\"code\":500,\"error\":\"upstream failed\"}");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_HTTP, err);
	assert_int_equal(err.http_status, 500);
}

static void html_200_is_http_error(void **state)
{
	(void)state;
	set_text(200, "text/html", "<html>Sign in to the hotel wifi</html>");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_HTTP, err);
	assert_int_equal(err.http_status, 200);
}

static void answer_headers_cannot_put_escapes_in_the_message(void **state)
{
	(void)state;
	set_text(502, "text/html\x1b[2J\x1b[31mtrust me", "<html>Bad Gateway</html>");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_HTTP, err);
	/* the header arrived (its start is shown) and was cut at the first escape */
	assert_non_null(strstr(err.message, "with text/html,"));
	assert_null(strchr(err.message, '\x1b'));
	assert_null(strstr(err.message, "trust me"));
}

static void connect_messages_cannot_put_escapes_in_the_message(void **state)
{
	(void)state;
	set_text(409, "application/json",
	         "{\"code\":\"aborted\",\"message\":\"changed\\u001b[2J\\nagain\"}");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_CONFLICT, err);
	assert_non_null(strstr(err.message, "changed?[2J?again"));
}

static void bare_503_is_unavailable_with_status(void **state)
{
	(void)state;
	set_text(503, "text/plain", "Service Unavailable");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_UNAVAILABLE, err);
	assert_int_equal(err.http_status, 503);
}

/* ---- Connect errors keep their meaning ---- */

static void connect_unauthenticated_is_unauthenticated(void **state)
{
	(void)state;
	set_text(401, "application/json",
	         "{\"code\":\"unauthenticated\",\"message\":\"the token has expired\"}");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_UNAUTHENTICATED, err);
	assert_non_null(strstr(err.message, "the token has expired"));
	assert_int_equal(err.http_status, 0);
}

static void connect_json_with_charset_is_connect_error(void **state)
{
	(void)state;
	set_text(409, "application/json; charset=utf-8",
	         "{\"code\":\"aborted\",\"message\":\"the record changed\"}");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_CONFLICT, err);
}

/* ---- resource_exhausted: BKV_ERR_RATE_LIMITED with the RetryInfo delay ---- */

static void rate_limited_carries_retry_after_unpadded(void **state)
{
	(void)state;
	set_rate_limited("CNwL"); /* RetryInfo{retry_after_ms: 1500}: 08 dc 0b */
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_RATE_LIMITED, err);
	assert_int_equal(err.retry_after_ms, 1500);
	assert_int_equal(err.http_status, 429);
	assert_non_null(strstr(err.message, "retry after 1500 ms"));
}

static void rate_limited_accepts_padded_and_unpadded_base64(void **state)
{
	(void)state;
	static const char *const forms[] = {"CGQ=", "CGQ"}; /* RetryInfo{100}: 08 64 */
	for (size_t i = 0; i < 2; i++) {
		set_rate_limited(forms[i]);
		bkv_error err;
		EXPECT_STATUS(status_call(&err), BKV_ERR_RATE_LIMITED, err);
		assert_int_equal(err.retry_after_ms, 100);
	}
}

static void rate_limited_skips_unknown_retry_info_fields(void **state)
{
	(void)state;
	set_rate_limited("EAEIwgM="); /* field 2 = 1, then retry_after_ms = 450: 10 01 08 c2 03 */
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_RATE_LIMITED, err);
	assert_int_equal(err.retry_after_ms, 450);
}

static void rate_limited_without_retry_info_says_zero(void **state)
{
	(void)state;
	set_text(429, "application/json", "{\"code\":\"resource_exhausted\",\"message\":\"slow\"}");
	bkv_error err;
	EXPECT_STATUS(status_call(&err), BKV_ERR_RATE_LIMITED, err);
	assert_int_equal(err.retry_after_ms, 0);
	set_rate_limited("!!not base64!!");
	EXPECT_STATUS(status_call(&err), BKV_ERR_RATE_LIMITED, err);
	assert_int_equal(err.retry_after_ms, 0);
}

static void rate_limited_recover_is_rate_limited(void **state)
{
	(void)state;
	set_rate_limited("CNwL");
	bkv_client *c = client_for(fake.cert, NULL);
	bkv_key key;
	bkv_recover_info info;
	bkv_error err = {0};
	EXPECT_STATUS(bkv_recover(c, TOKEN, "password", 8, &key, &info, &err), BKV_ERR_RATE_LIMITED,
	              err);
	assert_int_equal(err.retry_after_ms, 1500);
	bkv_client_free(c);
}

/* ---- TLS: BKV_ERR_TLS, and the request never leaves the client ---- */

static void expect_tls_error(const char *ca_file, const char *pinned_cert)
{
	set_text(502, "text/plain", "reached");
	const unsigned before = fake_requests(&fake);
	bkv_client *c = client_for(ca_file, pinned_cert);
	bkv_account_status s;
	bkv_error err = {0};
	EXPECT_STATUS(bkv_status_get(c, TOKEN, &s, &err), BKV_ERR_TLS, err);
	print_message("    %s\n", err.message);
	assert_int_equal(fake_requests(&fake), before);
	bkv_client_free(c);
}

static void untrusted_certificate_is_tls_error(void **state)
{
	(void)state;
	expect_tls_error(fake.other_cert, NULL);
}

static void missing_ca_file_is_tls_error(void **state)
{
	(void)state;
	char missing[PATH_MAX + 16];
	snprintf(missing, sizeof(missing), "%s/missing.pem", fake.dir);
	expect_tls_error(missing, NULL);
}

static void pin_mismatch_is_tls_error(void **state)
{
	(void)state;
	expect_tls_error(fake.cert, fake.other_cert);
}

static void unreadable_pinned_certificate_is_tls_error(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", fake.tls_port);
	bkv_client_config config = {.vault_url = url, .pinned_cert = fake.key};
	bkv_client *c = NULL;
	bkv_error err = {0};
	EXPECT_STATUS(bkv_client_new(&config, &c, &err), BKV_ERR_TLS, err);
	assert_null(c);
}

static void matching_pin_reaches_the_server(void **state)
{
	(void)state;
	set_text(502, "text/plain", "reached");
	const unsigned before = fake_requests(&fake);
	bkv_client *c = client_for(fake.cert, fake.cert);
	bkv_account_status s;
	bkv_error err = {0};
	EXPECT_STATUS(bkv_status_get(c, TOKEN, &s, &err), BKV_ERR_HTTP, err);
	assert_int_equal(fake_requests(&fake), before + 1);
	bkv_client_free(c);
}

/* ---- The vault URL: parsed by libcurl; plain http only to a loopback address ---- */

static bkv_status new_client_for_url(const char *url, bkv_error *err)
{
	bkv_client_config config = {.vault_url = url, .ca_file = fake.cert, .timeout_ms = 5000};
	bkv_client *c = NULL;
	memset(err, 0, sizeof(*err));
	const bkv_status st = bkv_client_new(&config, &c, err);
	bkv_client_free(c);
	return st;
}

static void url_refused(const char *url, const char *why)
{
	bkv_error err;
	const bkv_status st = new_client_for_url(url, &err);
	print_message("    %s: %s\n", url, err.message);
	if (st != BKV_ERR_ARGUMENT)
		fail_msg("%s: got %s, want invalid argument", url, bkv_status_name(st));
	if (strstr(err.message, why) == NULL)
		fail_msg("%s: \"%s\" does not say \"%s\"", url, err.message, why);
}

static void plain_http_to_a_name_is_refused(void **state)
{
	(void)state;
	static const char *const urls[] = {
	    "http://127.0.0.1.evil.example", "http://127.0.0.1.evil.example:8443",
	    "http://localhost.evil.example", "http://evil.example/127.0.0.1",

	    "http://[::ffff:8.8.8.8]:80",    "http://128.0.0.1",
	    "http://10.0.0.1:8443",
	};
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++)
		url_refused(urls[i], "http:// only to a loopback address");
}

static void userinfo_in_the_url_is_refused(void **state)
{
	(void)state;
	url_refused("http://127.0.0.1@evil.example", "user name or password");
	url_refused("https://user:secret@vault.example", "user name or password");
	url_refused("http://localhost:x@evil.example:8443", "user name or password");
}

static void query_fragment_and_other_schemes_are_refused(void **state)
{
	(void)state;
	url_refused("https://vault.example/?a=b", "query or fragment");
	url_refused("https://vault.example/#x", "query or fragment");
	url_refused("http://evil.example#@127.0.0.1", "query or fragment");
	url_refused("ftp://127.0.0.1", "");
	url_refused("file:///etc/passwd", "");
	url_refused("not a url", "");
}

/* An accepted URL: the client is made, and a call reaches the fake (or, for [::1], where
 * nothing listens, fails as unavailable, not as a bad argument). */
static void url_accepted(const char *scheme_host, const char *path, bool reaches)
{
	char url[128];
	snprintf(url, sizeof(url), "%s:%u%s", scheme_host, fake.plain_port, path);
	bkv_client_config config = {.vault_url = url, .timeout_ms = 5000};
	bkv_client *c = NULL;
	bkv_error err = {0};
	if (bkv_client_new(&config, &c, &err) != BKV_OK)
		fail_msg("%s refused: %s", url, err.message);
	set_text(502, "text/plain", "reached");
	const unsigned before = fake_requests(&fake);
	bkv_account_status s;
	const bkv_status st = bkv_status_get(c, TOKEN, &s, &err);
	print_message("    %s: %s\n", url, err.message);
	bkv_client_free(c);
	if (reaches) {
		assert_int_equal(st, BKV_ERR_HTTP);
		assert_int_equal(fake_requests(&fake), before + 1);
	} else {
		assert_int_equal(st, BKV_ERR_UNAVAILABLE);
	}
}

static void plain_http_to_loopback_is_accepted(void **state)
{
	(void)state;
	url_accepted("http://127.0.0.1", "", true);
	url_accepted("http://127.0.0.1", "/", true);
	url_accepted("HTTP://LOCALHOST", "", true);
	url_accepted("http://localhost", "//", true);
	url_accepted("http://[::1]", "", false);
	url_accepted("https://127.0.0.2", "", false);
}

/* ---- The KSF floor: a vault's GetConfig cannot weaken a new registration ---- */

/* GetConfig answers with these Argon2id parameters; every other call gets a 502. */
static void set_vault_ksf(uint32_t t, uint32_t m_kib, uint32_t p)
{
	Bkv__V1__KsfParams ksf = BKV__V1__KSF_PARAMS__INIT;
	ksf.algorithm = (char *)"argon2id";
	ksf.iterations = t;
	ksf.memory_kib = m_kib;
	ksf.parallelism = p;
	Bkv__V1__Suite suites[] = {BKV__V1__SUITE__SUITE_RISTRETTO255_SHA512};
	Bkv__V1__GetConfigResponse resp = BKV__V1__GET_CONFIG_RESPONSE__INIT;
	resp.n_suites = 1;
	resp.suites = suites;
	resp.context = (ProtobufCBinaryData){6, (uint8_t *)"bkv-v1"};
	resp.ksf = &ksf;
	uint8_t packed[256];
	const size_t len = bkv__v1__get_config_response__pack(&resp, packed);
	fake_set_config(&fake, packed, len);
	set_text(502, "text/plain", "after GetConfig");
}

static unsigned register_starts(void)
{
	pthread_mutex_lock(&fake.lock);
	const unsigned n = fake.register_starts;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

/* bkv_register under the vault's parameters: whether it got as far as RegisterStart. */
static bool registration_starts(uint32_t t, uint32_t m_kib, uint32_t p, bkv_error *err)
{
	set_vault_ksf(t, m_kib, p);
	bkv_client *c = client_for(fake.cert, NULL);
	bkv_key key = {{0}};
	const unsigned before = register_starts();
	memset(err, 0, sizeof(*err));
	const bkv_status st = bkv_register(c, TOKEN, "password", 8, &key, 0, err);
	bkv_client_free(c);
	fake_set_config(&fake, NULL, 0);
	print_message("    t=%u m=%u p=%u: %s: %s\n", t, m_kib, p, bkv_status_name(st),
	              err->message);
	if (register_starts() == before) {
		assert_int_equal(st, BKV_ERR_PROTOCOL);
		assert_non_null(strstr(err->message, "below libbkv's floor"));
		return false;
	}
	assert_int_equal(st, BKV_ERR_HTTP); /* the fake's 502 to RegisterStart */
	return true;
}

static void registration_refuses_vault_ksf_below_the_floor(void **state)
{
	(void)state;
	bkv_error err;
	assert_false(registration_starts(1, 8, 1, &err));
	assert_non_null(strstr(err.message, "t=1, m=8 KiB, p=1"));
	assert_false(registration_starts(2, 65536, 4, &err));
	assert_false(registration_starts(3, 65535, 4, &err));
	assert_false(registration_starts(3, 65536, 3, &err));
	assert_false(registration_starts(64, 32768, 4, &err)); /* time cannot buy back memory */
}

static void registration_accepts_vault_ksf_at_or_above_the_floor(void **state)
{
	(void)state;
	bkv_error err;
	assert_true(registration_starts(3, 65536, 4, &err));            /* RFC 9106 option 2 */
	assert_true(registration_starts(1, 2u * 1024 * 1024, 4, &err)); /* RFC 9106 option 1 */
	assert_true(registration_starts(4, 262144, 8, &err));
}

static void change_password_refuses_weak_vault_ksf_before_recovering(void **state)
{
	(void)state;
	set_vault_ksf(1, 1024, 1);
	bkv_client *c = client_for(fake.cert, NULL);
	const unsigned before = fake_requests(&fake);
	bkv_error err = {0};
	bkv_recover_info info;
	EXPECT_STATUS(bkv_change_password(c, TOKEN, "old", 3, "new", 3, &info, &err),
	              BKV_ERR_PROTOCOL, err);
	assert_int_equal(fake_requests(&fake), before + 1); /* GetConfig only: no attempt used */
	assert_false(info.attempts_known);
	bkv_client_free(c);
	fake_set_config(&fake, NULL, 0);
}

static void recovery_still_uses_weak_vault_ksf(void **state)
{
	(void)state;
	set_vault_ksf(1, 1024, 1);
	bkv_client *c = client_for(fake.cert, NULL);
	const unsigned before = fake_requests(&fake);
	bkv_key key;
	bkv_recover_info info;
	bkv_error err = {0};
	/* on to GetStatus (the fake's 502): a key registered under them stays recoverable */
	EXPECT_STATUS(bkv_recover(c, TOKEN, "password", 8, &key, &info, &err), BKV_ERR_HTTP, err);
	assert_int_equal(fake_requests(&fake), before + 2);
	bkv_client_free(c);
	fake_set_config(&fake, NULL, 0);
}

static void application_ksf_is_its_own_decision(void **state)
{
	(void)state;
	set_vault_ksf(1, 8, 1);
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", fake.tls_port);
	bkv_client_config config = {.vault_url = url,
	                            .ca_file = fake.cert,
	                            .argon2_iterations = 1,
	                            .argon2_memory_kib = 1024,
	                            .argon2_parallelism = 1};
	bkv_client *c = NULL;
	bkv_error err = {0};
	EXPECT_STATUS(bkv_client_new(&config, &c, &err), BKV_OK, err);
	bkv_key key = {{0}};
	const unsigned before = register_starts();
	EXPECT_STATUS(bkv_register(c, TOKEN, "password", 8, &key, 0, &err), BKV_ERR_HTTP, err);
	assert_int_equal(register_starts(), before + 1);
	bkv_client_free(c);
	fake_set_config(&fake, NULL, 0);
}

/* ---- The CLI: one exit code per failure, and a message ---- */

/* Runs `bkv ARGS... --vault URL` with a token file; returns the exit code, stderr in err. */
static int run_cli(const char *args, const char *vault_url, char *err, size_t err_cap)
{
	char token_file[PATH_MAX + 16], err_file[PATH_MAX + 16], cmd[4 * PATH_MAX];
	snprintf(token_file, sizeof(token_file), "%s/token", fake.dir);
	snprintf(err_file, sizeof(err_file), "%s/cli.err", fake.dir);
	FILE *t = fopen(token_file, "w");
	assert_non_null(t);
	fputs(TOKEN "\n", t);
	fclose(t);
	snprintf(cmd, sizeof(cmd), "'%s' %s --vault '%s' --token-file '%s' >/dev/null 2>'%s'",
	         cli_path, args, vault_url, token_file, err_file);
	const int status = system(cmd);
	FILE *e = fopen(err_file, "r");
	assert_non_null(e);
	const size_t n = fread(err, 1, err_cap - 1, e);
	err[n] = '\0';
	fclose(e);
	print_message("    bkv %s: exit %d: %s", args, WEXITSTATUS(status), err);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int cli_status_exit(const char *ca_file, char *err, size_t cap)
{
	char url[64], args[PATH_MAX + 32];
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", fake.tls_port);
	snprintf(args, sizeof(args), "status --ca-file '%s'", ca_file);
	return run_cli(args, url, err, cap);
}

static void cli_exit_codes_name_each_failure(void **state)
{
	(void)state;
	char err[1024];
	set_text(502, "text/html", "<html>Bad Gateway</html>");
	assert_int_equal(cli_status_exit(fake.cert, err, sizeof(err)), 8);
	assert_non_null(strstr(err, "HTTP 502"));
	set_rate_limited("CNwL");
	assert_int_equal(cli_status_exit(fake.cert, err, sizeof(err)), 9);
	assert_non_null(strstr(err, "retry after 1500 ms"));
	set_text(401, "application/json", "{\"code\":\"unauthenticated\",\"message\":\"expired\"}");
	assert_int_equal(cli_status_exit(fake.cert, err, sizeof(err)), 10);
	set_text(503, "text/plain", "down");
	assert_int_equal(cli_status_exit(fake.cert, err, sizeof(err)), 5);
	assert_int_equal(cli_status_exit(fake.other_cert, err, sizeof(err)), 7);
	assert_non_null(strstr(err, "TLS"));
}

static int setup(void **state)
{
	(void)state;
	return fake_start(&fake) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	fake_stop(&fake);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BKV_CLI\n", argv[0]);
		return 2;
	}
	cli_path = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(proxy_502_page_is_http_error_with_status),
	    cmocka_unit_test(gateway_timeout_504_is_http_error_with_status),
	    cmocka_unit_test(wrong_path_404_page_is_http_error),
	    cmocka_unit_test(bare_401_is_http_error_not_unauthenticated),
	    cmocka_unit_test(json_without_connect_code_is_http_error),
	    cmocka_unit_test(html_200_is_http_error),
	    cmocka_unit_test(answer_headers_cannot_put_escapes_in_the_message),
	    cmocka_unit_test(connect_messages_cannot_put_escapes_in_the_message),
	    cmocka_unit_test(bare_503_is_unavailable_with_status),
	    cmocka_unit_test(connect_unauthenticated_is_unauthenticated),
	    cmocka_unit_test(connect_json_with_charset_is_connect_error),
	    cmocka_unit_test(rate_limited_carries_retry_after_unpadded),
	    cmocka_unit_test(rate_limited_accepts_padded_and_unpadded_base64),
	    cmocka_unit_test(rate_limited_skips_unknown_retry_info_fields),
	    cmocka_unit_test(rate_limited_without_retry_info_says_zero),
	    cmocka_unit_test(rate_limited_recover_is_rate_limited),
	    cmocka_unit_test(untrusted_certificate_is_tls_error),
	    cmocka_unit_test(missing_ca_file_is_tls_error),
	    cmocka_unit_test(pin_mismatch_is_tls_error),
	    cmocka_unit_test(unreadable_pinned_certificate_is_tls_error),
	    cmocka_unit_test(matching_pin_reaches_the_server),
	    cmocka_unit_test(plain_http_to_a_name_is_refused),
	    cmocka_unit_test(userinfo_in_the_url_is_refused),
	    cmocka_unit_test(query_fragment_and_other_schemes_are_refused),
	    cmocka_unit_test(plain_http_to_loopback_is_accepted),
	    cmocka_unit_test(registration_refuses_vault_ksf_below_the_floor),
	    cmocka_unit_test(registration_accepts_vault_ksf_at_or_above_the_floor),
	    cmocka_unit_test(change_password_refuses_weak_vault_ksf_before_recovering),
	    cmocka_unit_test(recovery_still_uses_weak_vault_ksf),
	    cmocka_unit_test(application_ksf_is_its_own_decision),
	    cmocka_unit_test(cli_exit_codes_name_each_failure),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
