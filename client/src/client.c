/*
 * client.c - the libbkv vault client: the handle, the vault's published configuration,
 * and the register / recover / change-password / status / delete flows.
 *
 * Thread safety: the handle holds only immutable settings, the configuration cache
 * (under a mutex) and a libcurl share (connection cache, locked by the same kind of
 * mutex). Each call uses its own easy handle and its own OPAQUE state.
 *
 * Secrets (password copies never exist; blinds, export_key, session_key, the key) live in
 * locals wiped on every path.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "keywrap.h"
#include "rpc.h"

/* Bounds on the KSF a vault may ask for, so a hostile vault cannot exhaust the client. */
#define KSF_MAX_ITERATIONS  64
#define KSF_MAX_MEMORY_KIB  (2u * 1024 * 1024)
#define KSF_MAX_PARALLELISM 64

/* libbkv's floor for the Argon2id parameters a vault publishes: RFC 9106's second
 * recommended option (t=3, m=64 MiB, p=4), or anything costing an attacker at least as much
 * memory x time with at least as much memory and as many lanes (so the first option, t=1,
 * m=2 GiB, p=4, passes). GetConfig is unauthenticated: without a floor, whoever answers it
 * could make a new registration's envelope cheap to attack offline. */
#define KSF_FLOOR_ITERATIONS  3
#define KSF_FLOOR_MEMORY_KIB  (64u * 1024)
#define KSF_FLOOR_PARALLELISM 4

typedef struct vault_config {
	bool loaded;
	opaque_suite_id suites[2];
	size_t nsuites;
	uint8_t context[256];
	size_t context_len;
	opaque_ksf ksf;
} vault_config;

struct bkv_client {
	char base_url[512];
	char *ca_file;
	char pinned_key[128];
	bool pinned;
	long timeout_ms;
	bkv_suite suite;
	opaque_ksf ksf_override; /* id = ARGON2ID if set by the caller */
	bool ksf_overridden;
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t config_lock;
	vault_config config;
};

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *arg)
{
	(void)handle;
	(void)access;
	bkv_client *c = arg;
	pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *arg)
{
	(void)handle;
	bkv_client *c = arg;
	pthread_mutex_unlock(&c->share_locks[data]);
}

/* "sha256//<base64 of SHA-256(SubjectPublicKeyInfo)>" of a PEM certificate. */
static bool pin_from_certificate(const char *path, char *out, size_t out_len)
{
	FILE *f = fopen(path, "r");
	X509 *cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f != NULL)
		fclose(f);
	if (cert == NULL)
		return false;
	unsigned char *spki = NULL;
	int len = i2d_PUBKEY(X509_get0_pubkey(cert), &spki);
	bool ok = false;
	if (len > 0) {
		uint8_t digest[crypto_hash_sha256_BYTES];
		crypto_hash_sha256(digest, spki, (unsigned long long)len);
		char b64[64];
		sodium_bin2base64(b64, sizeof(b64), digest, sizeof(digest),
		                  sodium_base64_VARIANT_ORIGINAL);
		snprintf(out, out_len, "sha256//%s", b64);
		ok = true;
	}
	OPENSSL_free(spki);
	X509_free(cert);
	return ok;
}

/* A host as curl_url gives it (an IPv6 address in brackets) that is a loopback address:
 * 127.0.0.0/8, ::1, or the name localhost in any case. Parsed, never matched by prefix:
 * "127.0.0.1.evil.example" is a name like any other. */
static bool host_is_loopback(const char *host)
{
	if (strcasecmp(host, "localhost") == 0)
		return true;
	struct in_addr v4;
	if (inet_pton(AF_INET, host, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	const size_t n = strlen(host);
	char inner[INET6_ADDRSTRLEN];
	struct in6_addr v6;
	if (n < 3 || host[0] != '[' || host[n - 1] != ']' || n - 2 >= sizeof(inner))
		return false;
	memcpy(inner, host + 1, n - 2);
	inner[n - 2] = '\0';
	return inet_pton(AF_INET6, inner, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/* Whether part of u is present (CURLUPART_USER, ...). */
static bool url_has(CURLU *u, CURLUPart part)
{
	char *value = NULL;
	const bool has = curl_url_get(u, part, &value, 0) == CURLUE_OK;
	curl_free(value);
	return has;
}

/* Checks the vault URL with libcurl's own parser, the one that later sends the requests:
 * https:// anywhere, http:// only when the host is a loopback address; no user name or
 * password, query or fragment. Writes the URL as curl normalizes it, without trailing
 * slashes, to out. */
static bkv_status vault_url_check(const char *url, char *out, size_t out_cap, bkv_error *error)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *normalized = NULL;
	bkv_status st = BKV_ERR_ARGUMENT;
	if (u == NULL) {
		st = bkvi_fail(error, BKV_ERR_NOMEM, "out of memory");
		goto done;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		bkvi_fail(error, st, "the vault URL is not a valid URL");
		goto done;
	}
	if (url_has(u, CURLUPART_USER) || url_has(u, CURLUPART_PASSWORD) ||
	    url_has(u, CURLUPART_OPTIONS)) {
		bkvi_fail(error, st,
		          "the vault URL must not hold a user name or password (\"user@\" before "
		          "the host)");
		goto done;
	}
	if (url_has(u, CURLUPART_QUERY) || url_has(u, CURLUPART_FRAGMENT)) {
		bkvi_fail(error, st, "the vault URL must not hold a query or fragment");
		goto done;
	}
	const bool https = strcmp(scheme, "https") == 0;
	if (!https && (strcmp(scheme, "http") != 0 || !host_is_loopback(host))) {
		bkvi_fail(error, st,
		          "the vault URL must be https:// (http:// only to a loopback address: "
		          "127.0.0.0/8, [::1] or localhost)");
		goto done;
	}
	if (curl_url_get(u, CURLUPART_URL, &normalized, 0) != CURLUE_OK) {
		bkvi_fail(error, st, "the vault URL is not a valid URL");
		goto done;
	}
	size_t n = strlen(normalized);
	while (n > 0 && normalized[n - 1] == '/')
		n--;
	if (n >= out_cap) {
		bkvi_fail(error, st, "the vault URL is too long");
		goto done;
	}
	memcpy(out, normalized, n);
	out[n] = '\0';
	st = BKV_OK;
done:
	curl_free(scheme);
	curl_free(host);
	curl_free(normalized);
	curl_url_cleanup(u);
	return st;
}

bkv_status bkv_client_new(const bkv_client_config *config, bkv_client **client, bkv_error *error)
{
	if (client == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "client is NULL");
	*client = NULL;
	if (config == NULL || config->vault_url == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "the vault URL is required");
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return bkvi_fail(error, BKV_ERR_INTERNAL, "cannot initialize libsodium or libcurl");
	char base_url[sizeof(((bkv_client *)0)->base_url)];
	bkv_status st = vault_url_check(config->vault_url, base_url, sizeof(base_url), error);
	if (st != BKV_OK)
		return st;
	if (config->suite != BKV_SUITE_VAULT_PREFERENCE && config->suite != BKV_SUITE_P256_SHA256 &&
	    config->suite != BKV_SUITE_RISTRETTO255_SHA512)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "unknown suite preference");
	const bool any_ksf =
	    config->argon2_iterations || config->argon2_memory_kib || config->argon2_parallelism;
	if (any_ksf && (config->argon2_iterations == 0 || config->argon2_memory_kib == 0 ||
	                config->argon2_parallelism == 0))
		return bkvi_fail(error, BKV_ERR_ARGUMENT,
		                 "set all three Argon2id parameters, or none");

	bkv_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return bkvi_fail(error, BKV_ERR_NOMEM, "out of memory");
	memcpy(c->base_url, base_url, sizeof(base_url));
	c->timeout_ms = config->timeout_ms > 0 ? config->timeout_ms : 30000;
	c->suite = config->suite;
	if (any_ksf) {
		c->ksf_overridden = true;
		c->ksf_override =
		    (opaque_ksf){OPAQUE_KSF_ARGON2ID, config->argon2_iterations,
		                 config->argon2_memory_kib, config->argon2_parallelism};
	}
	if (config->ca_file != NULL && (c->ca_file = strdup(config->ca_file)) == NULL)
		goto nomem;
	if (config->pinned_cert != NULL) {
		if (!pin_from_certificate(config->pinned_cert, c->pinned_key,
		                          sizeof(c->pinned_key))) {
			bkv_client_free(c);
			return bkvi_fail(error, BKV_ERR_TLS,
			                 "cannot read the pinned certificate %s",
			                 config->pinned_cert);
		}
		c->pinned = true;
	}
	pthread_mutex_init(&c->config_lock, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	c->share = curl_share_init();
	if (c->share == NULL)
		goto nomem;
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	*client = c;
	return BKV_OK;
nomem:
	bkv_client_free(c);
	return bkvi_fail(error, BKV_ERR_NOMEM, "out of memory");
}

void bkv_client_free(bkv_client *c)
{
	if (c == NULL)
		return;
	if (c->share != NULL) {
		curl_share_cleanup(c->share);
		for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
			pthread_mutex_destroy(&c->share_locks[i]);
		pthread_mutex_destroy(&c->config_lock);
	}
	free(c->ca_file);
	sodium_memzero(c, sizeof(*c));
	free(c);
}

static rpc_endpoint endpoint(const bkv_client *c)
{
	return (rpc_endpoint){c->base_url, c->share, c->ca_file, c->pinned ? c->pinned_key : NULL,
	                      c->timeout_ms};
}

/* Fetches and checks the vault's configuration once. */
static bkv_status load_config(bkv_client *c, vault_config *out, bkv_error *error)
{
	pthread_mutex_lock(&c->config_lock);
	if (c->config.loaded) {
		*out = c->config;
		pthread_mutex_unlock(&c->config_lock);
		return BKV_OK;
	}
	pthread_mutex_unlock(&c->config_lock);

	Bkv__V1__GetConfigRequest req = BKV__V1__GET_CONFIG_REQUEST__INIT;
	Bkv__V1__GetConfigResponse *resp = NULL;
	rpc_error err;
	const rpc_endpoint ep = endpoint(c);
	bkv_status st = bkvi_rpc_call(&ep, "GetConfig", NULL, &req.base,
	                              &bkv__v1__get_config_response__descriptor,
	                              (ProtobufCMessage **)&resp, &err, error);
	if (st != BKV_OK)
		return st;
	vault_config cfg = {.loaded = true};
	for (size_t i = 0; i < resp->n_suites && cfg.nsuites < 2; i++) {
		if (resp->suites[i] == BKV__V1__SUITE__SUITE_P256_SHA256 ||
		    resp->suites[i] == BKV__V1__SUITE__SUITE_RISTRETTO255_SHA512)
			cfg.suites[cfg.nsuites++] = (opaque_suite_id)resp->suites[i];
	}
	const Bkv__V1__KsfParams *k = resp->ksf;
	if (cfg.nsuites == 0 || resp->context.len > sizeof(cfg.context) || k == NULL ||
	    k->algorithm == NULL || strcmp(k->algorithm, "argon2id") != 0 || k->iterations == 0 ||
	    k->iterations > KSF_MAX_ITERATIONS || k->memory_kib < 8 ||
	    k->memory_kib > KSF_MAX_MEMORY_KIB || k->parallelism == 0 ||
	    k->parallelism > KSF_MAX_PARALLELISM) {
		bkv__v1__get_config_response__free_unpacked(resp, NULL);
		return bkvi_fail(error, BKV_ERR_PROTOCOL,
		                 "the vault's configuration is unusable (suites, context or KSF)");
	}
	memcpy(cfg.context, resp->context.data, resp->context.len);
	cfg.context_len = resp->context.len;
	cfg.ksf = (opaque_ksf){OPAQUE_KSF_ARGON2ID, k->iterations, k->memory_kib, k->parallelism};
	bkv__v1__get_config_response__free_unpacked(resp, NULL);
	if (c->ksf_overridden)
		cfg.ksf = c->ksf_override;
	pthread_mutex_lock(&c->config_lock);
	c->config = cfg;
	pthread_mutex_unlock(&c->config_lock);
	*out = cfg;
	return BKV_OK;
}

static bool ksf_meets_floor(const opaque_ksf *k)
{
	return k->memory_kib >= KSF_FLOOR_MEMORY_KIB && k->parallelism >= KSF_FLOOR_PARALLELISM &&
	       (uint64_t)k->iterations * k->memory_kib >=
	           (uint64_t)KSF_FLOOR_ITERATIONS * KSF_FLOOR_MEMORY_KIB;
}

/* A registration refuses the vault's parameters below the floor (recovery still uses
 * them, so keys registered earlier under them stay recoverable). Parameters the
 * application set itself (bkv_client_config.argon2_*) are its own decision. */
static bkv_status check_ksf_floor(const bkv_client *c, const vault_config *cfg, bkv_error *error)
{
	if (c->ksf_overridden || ksf_meets_floor(&cfg->ksf))
		return BKV_OK;
	return bkvi_fail(error, BKV_ERR_PROTOCOL,
	                 "the vault publishes Argon2id t=%u, m=%u KiB, p=%u, below libbkv's floor "
	                 "(t=%u, m=%u KiB, p=%u, or as costly): no key is registered under them "
	                 "(the vault's operator must raise [opaque] argon2_*)",
	                 cfg->ksf.iterations, cfg->ksf.memory_kib, cfg->ksf.parallelism,
	                 KSF_FLOOR_ITERATIONS, KSF_FLOOR_MEMORY_KIB, KSF_FLOOR_PARALLELISM);
}

static opaque_config opaque_config_for(const vault_config *cfg, opaque_suite_id suite)
{
	return (opaque_config){suite, cfg->context, cfg->context_len, cfg->ksf};
}

static bkv_status check_common(bkv_client *c, const char *token, const char *password,
                               size_t password_len, bkv_error *error)
{
	if (c == NULL || token == NULL || token[0] == '\0')
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "client and account token are required");
	if (password == NULL || password_len == 0 || password_len > OPAQUE_MAX_PASSWORD_BYTES)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "the password must be 1 to %d bytes",
		                 OPAQUE_MAX_PASSWORD_BYTES);
	return BKV_OK;
}

static bkv_status opaque_failure(bkv_error *error, const char *what, opaque_err err)
{
	return bkvi_fail(error, err == OPAQUE_ERR_KSF ? BKV_ERR_NOMEM : BKV_ERR_PROTOCOL, "%s: %s",
	                 what, opaque_strerror(err));
}

/* RegisterStart, then RegisterFinish with the registration ticket and compare-and-set on
 * the account's record: replaces 0 creates only, N replaces only version N. */
static bkv_status register_with(bkv_client *c, const vault_config *cfg, const char *token,
                                const char *password, size_t password_len, const bkv_key *key,
                                uint32_t attempt_limit, uint64_t replaces, uint64_t *out_version,
                                bkv_error *error)
{
	opaque_suite_id suite = cfg->suites[0];
	if (c->suite != BKV_SUITE_VAULT_PREFERENCE) {
		suite = (opaque_suite_id)c->suite;
		if (suite != cfg->suites[0] && (cfg->nsuites < 2 || suite != cfg->suites[1]))
			return bkvi_fail(error, BKV_ERR_ARGUMENT,
			                 "the vault does not offer the requested suite");
	}
	const opaque_sizes *sizes = opaque_suite_sizes(suite);
	const opaque_config oc = opaque_config_for(cfg, suite);
	const rpc_endpoint ep = endpoint(c);
	opaque_client_registration_state state;
	uint8_t request[OPAQUE_MAX_REGISTRATION_REQUEST_BYTES];
	uint8_t record[OPAQUE_MAX_REGISTRATION_RECORD_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t wrapped[BKV_WRAPPED_KEY_BYTES];
	Bkv__V1__RegisterStartResponse *start = NULL;
	Bkv__V1__RegisterFinishResponse *finish = NULL;
	rpc_error err;
	bkv_status st;
	opaque_err oerr =
	    opaque_client_registration_start(&oc, (const uint8_t *)password, password_len, &state,
	                                     request, sizes->registration_request);
	if (oerr != OPAQUE_OK) {
		st = opaque_failure(error, "registration", oerr);
		goto done;
	}
	Bkv__V1__RegisterStartRequest sreq = BKV__V1__REGISTER_START_REQUEST__INIT;
	sreq.suite = (Bkv__V1__Suite)suite;
	sreq.registration_request = (ProtobufCBinaryData){sizes->registration_request, request};
	st = bkvi_rpc_call(&ep, "RegisterStart", token, &sreq.base,
	                   &bkv__v1__register_start_response__descriptor,
	                   (ProtobufCMessage **)&start, &err, error);
	if (st != BKV_OK)
		goto done;
	oerr = opaque_client_registration_finish(
	    &oc, &state, (const uint8_t *)password, password_len, NULL,
	    start->registration_response.data, start->registration_response.len, record,
	    sizes->registration_record, export_key, sizes->export_key);
	if (oerr != OPAQUE_OK) {
		st = opaque_failure(error, "registration", oerr);
		goto done;
	}
	st = bkvi_keywrap_wrap(suite, export_key, key, wrapped);
	if (st != BKV_OK) {
		bkvi_fail(error, st, "cannot wrap the key");
		goto done;
	}
	Bkv__V1__RegisterFinishRequest freq = BKV__V1__REGISTER_FINISH_REQUEST__INIT;
	freq.suite = (Bkv__V1__Suite)suite;
	freq.registration_record = (ProtobufCBinaryData){sizes->registration_record, record};
	freq.wrapped_key = (ProtobufCBinaryData){sizeof(wrapped), wrapped};
	freq.attempt_limit = attempt_limit;
	freq.registration_ticket = start->registration_ticket;
	freq.replaces_record_version = replaces;
	st = bkvi_rpc_call(&ep, "RegisterFinish", token, &freq.base,
	                   &bkv__v1__register_finish_response__descriptor,
	                   (ProtobufCMessage **)&finish, &err, error);
	if (st == BKV_ERR_ALREADY_REGISTERED)
		bkvi_fail(error, st, "already registered: %s",
		          err.message[0]
		              ? err.message
		              : "the account already has a key in the vault, or a "
		                "destroyed key's tombstone; replacing it needs its record "
		                "version");
	else if (st == BKV_ERR_CONFLICT)
		bkvi_fail(
		    error, st,
		    "the account's record is no longer version %llu (it was replaced, deleted "
		    "or destroyed meanwhile); nothing was registered: check the status and "
		    "try again",
		    (unsigned long long)replaces);
	else if (st == BKV_OK && (finish->record_version == 0 ||
	                          (replaces != 0 && finish->record_version <= replaces)))
		st = bkvi_fail(error, BKV_ERR_PROTOCOL,
		               "the vault registered the key under an impossible record version "
		               "%llu",
		               (unsigned long long)finish->record_version);
	if (st == BKV_OK && out_version != NULL)
		*out_version = finish->record_version;
done:
	opaque_client_registration_state_wipe(&state);
	sodium_memzero(export_key, sizeof(export_key));
	sodium_memzero(wrapped, sizeof(wrapped));
	if (start != NULL)
		bkv__v1__register_start_response__free_unpacked(start, NULL);
	if (finish != NULL)
		bkv__v1__register_finish_response__free_unpacked(finish, NULL);
	return st;
}

bkv_status bkv_register_replacing(bkv_client *c, const char *token, const char *password,
                                  size_t password_len, const bkv_key *key, uint32_t attempt_limit,
                                  uint64_t replaces_record_version, uint64_t *out_record_version,
                                  bkv_error *error)
{
	if (out_record_version != NULL)
		*out_record_version = 0;
	bkv_status st = check_common(c, token, password, password_len, error);
	if (st != BKV_OK)
		return st;
	if (key == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "the key is required");
	vault_config cfg;
	st = load_config(c, &cfg, error);
	if (st == BKV_OK)
		st = check_ksf_floor(c, &cfg, error);
	if (st != BKV_OK)
		return st;
	return register_with(c, &cfg, token, password, password_len, key, attempt_limit,
	                     replaces_record_version, out_record_version, error);
}

bkv_status bkv_register(bkv_client *c, const char *token, const char *password, size_t password_len,
                        const bkv_key *key, uint32_t attempt_limit, bkv_error *error)
{
	return bkv_register_replacing(c, token, password, password_len, key, attempt_limit, 0, NULL,
	                              error);
}

#define DESTROYED_MESSAGE                                                                          \
	"no attempts left: the vault has destroyed the backup key, and it cannot be recovered"

/* The key is gone for good: the attempts are known (none left). */
static bkv_status destroyed(bkv_error *error, bkv_recover_info *info, uint32_t attempt_limit,
                            const char *prefix)
{
	info->attempts_known = true;
	info->attempts_remaining = 0;
	info->attempt_limit = attempt_limit;
	info->destroyed = true;
	return bkvi_fail(error, BKV_ERR_DESTROYED, "%s" DESTROYED_MESSAGE, prefix);
}

/* Whether GetStatus says the account's key is destroyed (a tombstone). */
static bool status_destroyed(bkv_client *c, const char *token)
{
	bkv_account_status s;
	return bkv_status_get(c, token, &s, NULL) == BKV_OK && s.state == BKV_RECORD_DESTROYED;
}

/* A failed RecoverStart or RecoverFinish (st, err): takes the AttemptInfo the vault
 * attaches to every failure about a registered or destroyed record, and says what it
 * means. password_wrong: the client already knows the password was wrong (its envelope
 * did not open). */
static bkv_status recover_failure(bkv_client *c, const char *token, bool finishing,
                                  bool password_wrong, bkv_status st, const rpc_error *err,
                                  bkv_recover_info *info, bkv_error *error)
{
	if (err->has_attempt_info) {
		info->attempts_known = true;
		info->attempts_remaining = err->attempts_remaining;
		info->attempt_limit = err->attempt_limit;
	}
	if (strcmp(err->code, "permission_denied") == 0) { /* a counted wrong password */
		if (err->has_attempt_info && err->attempts_remaining == 0)
			return destroyed(error, info, err->attempt_limit, "wrong password; ");
		if (err->has_attempt_info)
			return bkvi_fail(
			    error, BKV_ERR_WRONG_PASSWORD, "wrong password: %u attempt%s left",
			    err->attempts_remaining, err->attempts_remaining == 1 ? "" : "s");
		return bkvi_fail(error, BKV_ERR_WRONG_PASSWORD, "wrong password");
	}
	if (strcmp(err->code, "failed_precondition") == 0 && err->has_attempt_info) {
		/* RecoverStart says so for a destroyed key (every time). RecoverFinish says so
		 * for a ticket it cannot finish any more, which at no attempts left usually
		 * means the key was destroyed meanwhile: GetStatus tells. */
		if (err->attempts_remaining == 0 && (!finishing || status_destroyed(c, token)))
			return destroyed(error, info, err->attempt_limit, "");
		if (password_wrong)
			return bkvi_fail(
			    error, BKV_ERR_WRONG_PASSWORD,
			    "wrong password (the vault did not confirm the attempts left: "
			    "%s)",
			    err->message);
		/* The ticket is stale: the key was registered again, or a ticket expired. */
		return bkvi_fail(error, BKV_ERR_CONFLICT,
		                 "the backup key changed during the recovery (%s); try again",
		                 err->message);
	}
	if (password_wrong && finishing && st != BKV_ERR_DATA_LOSS)
		return bkvi_fail(error, BKV_ERR_WRONG_PASSWORD,
		                 "wrong password (the vault did not confirm the attempts left)");
	return st; /* error was set by bkvi_rpc_call */
}

/* GetStatus, RecoverStart, RecoverFinish. *out_version (may be NULL) gets the recovered
 * record's version. */
static bkv_status recover_with(bkv_client *c, const vault_config *cfg, const char *token,
                               const char *password, size_t password_len, bkv_key *out_key,
                               bkv_recover_info *info, uint64_t *out_version, bkv_error *error)
{
	const rpc_endpoint ep = endpoint(c);
	rpc_error err;
	bkv_account_status status;
	bkv_status st = bkv_status_get(c, token, &status, error);
	if (st != BKV_OK)
		return st;
	if (status.state == BKV_RECORD_DESTROYED)
		return destroyed(error, info, status.attempt_limit, "");
	if (!status.registered) /* the vault said so: state ABSENT (or a vault without states) */
		return bkvi_fail(error, BKV_ERR_NOT_REGISTERED,
		                 "the vault holds no key for this account");
	const opaque_suite_id suite = (opaque_suite_id)status.suite;
	/* RecoverStartResponse carries attempts_remaining only: the limit comes from here, so
	 * attempts_known always comes with both numbers (bkv.h). */
	const uint32_t attempt_limit = status.attempt_limit;
	const opaque_sizes *sizes = opaque_suite_sizes(suite);
	if (sizes == NULL)
		return bkvi_fail(error, BKV_ERR_PROTOCOL,
		                 "the key is registered with an unknown suite");

	const opaque_config oc = opaque_config_for(cfg, suite);
	opaque_client_login_state state;
	uint8_t ke1[OPAQUE_MAX_KE1_BYTES];
	uint8_t ke3[OPAQUE_MAX_KE3_BYTES];
	uint8_t session_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t wrapped[64];
	size_t wrapped_len = 0;
	Bkv__V1__RecoverStartResponse *start = NULL;
	Bkv__V1__RecoverFinishResponse *finish = NULL;
	opaque_err oerr = opaque_client_login_start(&oc, (const uint8_t *)password, password_len,
	                                            &state, ke1, sizes->ke1);
	if (oerr != OPAQUE_OK) {
		st = opaque_failure(error, "recovery", oerr);
		goto done;
	}
	Bkv__V1__RecoverStartRequest sreq = BKV__V1__RECOVER_START_REQUEST__INIT;
	sreq.suite = (Bkv__V1__Suite)suite;
	sreq.ke1 = (ProtobufCBinaryData){sizes->ke1, ke1};
	st = bkvi_rpc_call(&ep, "RecoverStart", token, &sreq.base,
	                   &bkv__v1__recover_start_response__descriptor,
	                   (ProtobufCMessage **)&start, &err, error);
	if (st != BKV_OK) {
		st = recover_failure(c, token, false, false, st, &err, info, error);
		goto done;
	}
	info->attempts_known = true;
	info->attempts_remaining = start->attempts_remaining;
	info->attempt_limit = attempt_limit;
	oerr = opaque_client_login_finish(&oc, &state, (const uint8_t *)password, password_len,
	                                  NULL, start->ke2.data, start->ke2.len, ke3, sizes->ke3,
	                                  session_key, sizes->session_key, export_key,
	                                  sizes->export_key);
	if (oerr != OPAQUE_OK && oerr != OPAQUE_ERR_ENVELOPE_RECOVERY) {
		st = opaque_failure(error, "recovery", oerr);
		goto done;
	}
	/* A wrong password still finishes the guess, so the vault counts it now and says how
	 * many attempts are left (and destroys the key after the last one). */
	const bool password_wrong = oerr == OPAQUE_ERR_ENVELOPE_RECOVERY;
	if (password_wrong)
		randombytes_buf(ke3, sizes->ke3);
	Bkv__V1__RecoverFinishRequest freq = BKV__V1__RECOVER_FINISH_REQUEST__INIT;
	freq.ticket = start->ticket;
	freq.ke3 = (ProtobufCBinaryData){sizes->ke3, ke3};
	st = bkvi_rpc_call(&ep, "RecoverFinish", token, &freq.base,
	                   &bkv__v1__recover_finish_response__descriptor,
	                   (ProtobufCMessage **)&finish, &err, error);
	if (st != BKV_OK) {
		st = recover_failure(c, token, true, password_wrong, st, &err, info, error);
		goto done;
	}
	if (password_wrong) { /* whatever the vault said to the random KE3 */
		st = bkvi_fail(error, BKV_ERR_PROTOCOL, "the vault accepted a random KE3");
		goto done;
	}
	st = bkvi_keywrap_open_release(suite, session_key, finish->sealed_key.data,
	                               finish->sealed_key.len, wrapped, sizeof(wrapped),
	                               &wrapped_len);
	if (st == BKV_OK)
		st = bkvi_keywrap_unwrap(suite, export_key, wrapped, wrapped_len, out_key);
	if (st != BKV_OK)
		bkvi_fail(error, st, "the vault's release of the key does not verify");
	else if (out_version != NULL)
		*out_version = finish->record_version;
done:
	opaque_client_login_state_wipe(&state);
	sodium_memzero(session_key, sizeof(session_key));
	sodium_memzero(export_key, sizeof(export_key));
	sodium_memzero(wrapped, sizeof(wrapped));
	if (start != NULL)
		bkv__v1__recover_start_response__free_unpacked(start, NULL);
	if (finish != NULL)
		bkv__v1__recover_finish_response__free_unpacked(finish, NULL);
	if (st != BKV_OK && out_key != NULL)
		bkv_key_wipe(out_key);
	return st;
}

bkv_status bkv_recover(bkv_client *c, const char *token, const char *password, size_t password_len,
                       bkv_key *out_key, bkv_recover_info *out_info, bkv_error *error)
{
	bkv_recover_info scratch;
	bkv_recover_info *info = out_info ? out_info : &scratch;
	memset(info, 0, sizeof(*info));
	bkv_key_wipe(out_key); /* so that on any failure it holds no key (bkv.h) */
	bkv_status st = check_common(c, token, password, password_len, error);
	if (st != BKV_OK)
		return st;
	if (out_key == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "out_key is required");
	vault_config cfg;
	st = load_config(c, &cfg, error);
	if (st != BKV_OK)
		return st;
	return recover_with(c, &cfg, token, password, password_len, out_key, info, NULL, error);
}

bkv_status bkv_change_password(bkv_client *c, const char *token, const char *old_password,
                               size_t old_password_len, const char *new_password,
                               size_t new_password_len, bkv_recover_info *out_info,
                               bkv_error *error)
{
	bkv_recover_info scratch;
	bkv_recover_info *info = out_info ? out_info : &scratch;
	memset(info, 0, sizeof(*info));
	bkv_status st = check_common(c, token, new_password, new_password_len, error);
	if (st == BKV_OK)
		st = check_common(c, token, old_password, old_password_len, error);
	if (st != BKV_OK)
		return st;
	vault_config cfg;
	st = load_config(c, &cfg, error);
	if (st == BKV_OK) /* before the recovery, which would use up an attempt */
		st = check_ksf_floor(c, &cfg, error);
	if (st != BKV_OK)
		return st;
	bkv_key key;
	uint64_t version = 0;
	st = recover_with(c, &cfg, token, old_password, old_password_len, &key, info, &version,
	                  error);
	if (st == BKV_OK && version == 0)
		st = bkvi_fail(error, BKV_ERR_PROTOCOL,
		               "the vault did not say which record version it released");
	/* Keep the recovered record's attempt limit (registering with 0 would reset it to the
	 * vault's default and quietly loosen a limit the integrator chose), read after the
	 * recovery so that it is the limit of the version recovered. */
	bkv_account_status now;
	if (st == BKV_OK)
		st = bkv_status_get(c, token, &now, error);
	if (st == BKV_OK && (!now.registered || now.record_version != version))
		st = bkvi_fail(error, BKV_ERR_CONFLICT,
		               "the key in the vault changed after it was recovered (version %llu "
		               "is no longer current); the password was not changed",
		               (unsigned long long)version);
	if (st == BKV_OK) {
		st = register_with(c, &cfg, token, new_password, new_password_len, &key,
		                   now.attempt_limit, version, NULL, error);
		if (st == BKV_ERR_CONFLICT)
			bkvi_fail(
			    error, st,
			    "the key in the vault was replaced, deleted or destroyed while the "
			    "password was being changed (version %llu is no longer current); "
			    "the password was not changed",
			    (unsigned long long)version);
	}
	bkv_key_wipe(&key);
	return st;
}

bkv_status bkv_status_get(bkv_client *c, const char *token, bkv_account_status *out,
                          bkv_error *error)
{
	if (c == NULL || token == NULL || out == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "client, token and out are required");
	memset(out, 0, sizeof(*out));
	const rpc_endpoint ep = endpoint(c);
	rpc_error err;
	Bkv__V1__GetStatusRequest req = BKV__V1__GET_STATUS_REQUEST__INIT;
	Bkv__V1__GetStatusResponse *resp = NULL;
	bkv_status st = bkvi_rpc_call(&ep, "GetStatus", token, &req.base,
	                              &bkv__v1__get_status_response__descriptor,
	                              (ProtobufCMessage **)&resp, &err, error);
	if (st != BKV_OK)
		return st;
	out->registered = resp->registered;
	out->suite = (bkv_suite)resp->suite;
	out->attempts_used = resp->attempts_used;
	out->attempt_limit = resp->attempt_limit;
	out->record_version = resp->record_version;
	out->registered_at_unix = resp->registered_at_unix;
	switch (resp->state) {
	case BKV__V1__RECORD_STATE__RECORD_STATE_ABSENT:
		out->state = BKV_RECORD_ABSENT;
		break;
	case BKV__V1__RECORD_STATE__RECORD_STATE_REGISTERED:
		out->state = BKV_RECORD_REGISTERED;
		break;
	case BKV__V1__RECORD_STATE__RECORD_STATE_DESTROYED:
		out->state = BKV_RECORD_DESTROYED;
		out->destroyed_at_unix = resp->destroyed_at_unix;
		break;
	default:
		out->state = BKV_RECORD_UNKNOWN;
		break;
	}
	const bool consistent = out->state == BKV_RECORD_UNKNOWN ||
	                        out->registered == (out->state == BKV_RECORD_REGISTERED);
	bkv__v1__get_status_response__free_unpacked(resp, NULL);
	if (!consistent) {
		memset(out, 0, sizeof(*out));
		return bkvi_fail(
		    error, BKV_ERR_PROTOCOL,
		    "the vault's status contradicts itself (registered and state differ)");
	}
	return BKV_OK;
}

bkv_status bkv_delete(bkv_client *c, const char *token, bool *deleted, bkv_error *error)
{
	if (c == NULL || token == NULL)
		return bkvi_fail(error, BKV_ERR_ARGUMENT, "client and token are required");
	const rpc_endpoint ep = endpoint(c);
	rpc_error err;
	Bkv__V1__DeleteRequest req = BKV__V1__DELETE_REQUEST__INIT;
	Bkv__V1__DeleteResponse *resp = NULL;
	bkv_status st =
	    bkvi_rpc_call(&ep, "Delete", token, &req.base, &bkv__v1__delete_response__descriptor,
	                  (ProtobufCMessage **)&resp, &err, error);
	if (st != BKV_OK)
		return st;
	if (deleted != NULL)
		*deleted = resp->deleted;
	bkv__v1__delete_response__free_unpacked(resp, NULL);
	return BKV_OK;
}
