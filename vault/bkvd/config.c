/*
 * config.c - parsing bkvd's INI configuration (see config.h), reading the token PIN and
 * the log key. Secrets read here are wiped on every failure path.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <sodium.h>

#include "config.h"
#include "storage.h"

typedef struct parse_state {
	bkvd_config *config;
	char why[256];
} parse_state;

bool bkvd_suite_parse(const char *name, opaque_suite_id *suite)
{
	if (strcmp(name, "p256-sha256") == 0) {
		*suite = OPAQUE_SUITE_P256_SHA256;
		return true;
	}
	if (strcmp(name, "ristretto255-sha512") == 0) {
		*suite = OPAQUE_SUITE_RISTRETTO255_SHA512;
		return true;
	}
	return false;
}

const char *bkvd_suite_config_name(opaque_suite_id suite)
{
	return suite == OPAQUE_SUITE_P256_SHA256 ? "p256-sha256" : "ristretto255-sha512";
}

static bool copy_string(char *dst, size_t cap, const char *value)
{
	size_t len = strlen(value);
	if (len >= cap)
		return false;
	memcpy(dst, value, len + 1);
	return true;
}

static bool parse_u32(const char *value, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || v < min || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* "a, b" -> suites; duplicates and unknown names are errors. */
static bool parse_suites(const char *value, bkvd_config *c)
{
	char buf[128];
	if (!copy_string(buf, sizeof(buf), value))
		return false;
	c->nsuites = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ", \t", &save); tok != NULL;
	     tok = strtok_r(NULL, ", \t", &save)) {
		opaque_suite_id s;
		if (!bkvd_suite_parse(tok, &s) || c->nsuites == BKVD_MAX_SUITES)
			return false;
		for (size_t i = 0; i < c->nsuites; i++) {
			if (c->suites[i] == s)
				return false;
		}
		c->suites[c->nsuites++] = s;
	}
	return c->nsuites > 0;
}

static bool parse_bool(const char *value, bool *out)
{
	if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
		*out = true;
	else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
		*out = false;
	else
		return false;
	return true;
}

static bool parse_committer(const char *value, bkvd_committer *out)
{
	if (strcmp(value, "auto") == 0)
		*out = BKVD_COMMITTER_AUTO;
	else if (strcmp(value, "on") == 0)
		*out = BKVD_COMMITTER_ON;
	else if (strcmp(value, "off") == 0)
		*out = BKVD_COMMITTER_OFF;
	else
		return false;
	return true;
}

/* per_account.METHOD / per_address.METHOD = rule. False if name is no such key. */
static bool parse_rate_rule(const char *name, const char *value, bkv_rate_config *rc, bool *ok)
{
	bkv_rate_rule *rules;
	const char *method;
	if (strncmp(name, "per_account.", 12) == 0) {
		rules = rc->per_account;
		method = name + 12;
	} else if (strncmp(name, "per_address.", 12) == 0) {
		rules = rc->per_address;
		method = name + 12;
	} else {
		return false;
	}
	const int i = bkv_rate_method_find(method);
	if (i < 0)
		return false;
	*ok = bkv_rate_rule_parse(value, &rules[i]);
	return true;
}

#define STRING(field) copy_string(c->field, sizeof(c->field), value)

/* [limits]: each key with its range, named in the error so the fix is obvious. */
static int on_limits_entry(parse_state *st, const char *name, const char *value)
{
	bkvd_config *c = st->config;
	static const struct {
		const char *name;
		size_t offset;
		uint32_t min, max;
		const char *unit;
	} keys[] = {
	    {"max_header_bytes", offsetof(bkvd_config, limit_max_header_bytes), 1024, 1024 * 1024,
	     "bytes"},
	    {"max_headers", offsetof(bkvd_config, limit_max_headers), 8, 1000, "fields"},
	    {"idle_timeout", offsetof(bkvd_config, limit_idle_timeout_s), 1, 3600, "seconds"},
	    {"read_timeout", offsetof(bkvd_config, limit_read_timeout_s), 1, 600, "seconds"},
	    {"max_connections", offsetof(bkvd_config, limit_max_connections), 1, 1000000,
	     "connections per worker"},
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(name, keys[i].name) != 0)
			continue;
		if (!parse_u32(value, keys[i].min, keys[i].max,
		               (uint32_t *)(void *)((char *)c + keys[i].offset))) {
			snprintf(st->why, sizeof(st->why),
			         "invalid value for [limits] %s: want %" PRIu32 " to %" PRIu32
			         " (%s)",
			         name, keys[i].min, keys[i].max, keys[i].unit);
			return 0;
		}
		return 1;
	}
	snprintf(st->why, sizeof(st->why), "unknown key [limits] %s", name);
	return 0;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
	parse_state *st = user;
	bkvd_config *c = st->config;
	bool ok;
	if (strcmp(section, "vault") == 0) {
		if (strcmp(name, "listen") == 0)
			ok = STRING(listen);
		else if (strcmp(name, "metrics_listen") == 0)
			ok = STRING(metrics_listen);
		else if (strcmp(name, "storage") == 0)
			ok = STRING(storage);
		else if (strcmp(name, "workers") == 0)
			ok = parse_u32(value, 0, 256, &c->workers);
		else if (strcmp(name, "committer") == 0)
			ok = parse_committer(value, &c->committer);
		else if (strcmp(name, "tls_cert") == 0)
			ok = STRING(tls_cert);
		else if (strcmp(name, "tls_key") == 0)
			ok = STRING(tls_key);
		else if (strcmp(name, "audit_log") == 0)
			ok = STRING(audit_log);
		else if (strcmp(name, "request_log") == 0)
			ok = STRING(request_log);
		else if (strcmp(name, "log_key_file") == 0)
			ok = STRING(log_key_file);
		else if (strcmp(name, "ticket_lifetime") == 0)
			ok = parse_u32(value, 1, 3600, &c->ticket_lifetime_s);
		else
			goto unknown;
	} else if (strcmp(section, "auth") == 0) {
		if (strcmp(name, "algorithm") == 0)
			ok = STRING(auth_algorithm);
		else if (strcmp(name, "key_file") == 0)
			ok = STRING(auth_key_file);
		else if (strcmp(name, "issuer") == 0)
			ok = STRING(auth_issuer);
		else if (strcmp(name, "audience") == 0)
			ok = STRING(auth_audience);
		else if (strcmp(name, "max_lifetime") == 0)
			ok = parse_u32(value, 1, 7 * 24 * 3600, &c->auth_max_lifetime_s);
		else if (strcmp(name, "clock_skew") == 0)
			ok = parse_u32(value, 0, 3600, &c->auth_clock_skew_s);
		else if (strcmp(name, "dev_issuer") == 0)
			ok = parse_bool(value, &c->auth_dev_issuer);
		else
			goto unknown;
	} else if (strcmp(section, "token") == 0) {
		if (strcmp(name, "module") == 0)
			ok = copy_string(c->token_module, sizeof(c->token_module), value);
		else if (strcmp(name, "label") == 0)
			ok = copy_string(c->token_label, sizeof(c->token_label), value) &&
			     strlen(value) <= 32 && strlen(value) > 0;
		else if (strcmp(name, "pin_file") == 0)
			ok = copy_string(c->token_pin_file, sizeof(c->token_pin_file), value);
		else if (strcmp(name, "pin_env") == 0)
			ok = copy_string(c->token_pin_env, sizeof(c->token_pin_env), value);
		else if (strcmp(name, "p256_ake") == 0) {
			ok = strcmp(value, "token") == 0 || strcmp(value, "sealed") == 0;
			c->token_p256_ake_sealed = strcmp(value, "sealed") == 0;
		} else if (strcmp(name, "sealed_keys") == 0) {
			ok = strcmp(value, "token") == 0 || strcmp(value, "database") == 0;
			c->token_keys_in_database = strcmp(value, "database") == 0;
		} else if (strcmp(name, "init_args") == 0) {
			ok = copy_string(c->token_init_args, sizeof(c->token_init_args), value);
		} else
			goto unknown;
	} else if (strcmp(section, "opaque") == 0) {
		if (strcmp(name, "suites") == 0) {
			ok = parse_suites(value, c);
		} else if (strcmp(name, "context") == 0) {
			c->context_len = strlen(value);
			ok = c->context_len <= sizeof(c->context);
			if (ok)
				memcpy(c->context, value, c->context_len);
		} else if (strcmp(name, "argon2_iterations") == 0) {
			ok = parse_u32(value, 1, 1000, &c->ksf.iterations);
		} else if (strcmp(name, "argon2_memory_kib") == 0) {
			ok = parse_u32(value, 8, 4u * 1024 * 1024, &c->ksf.memory_kib);
		} else if (strcmp(name, "argon2_parallelism") == 0) {
			ok = parse_u32(value, 1, 64, &c->ksf.parallelism);
		} else if (strcmp(name, "default_attempt_limit") == 0) {
			ok = parse_u32(value, 1, 1000, &c->default_attempt_limit);
		} else if (strcmp(name, "max_attempt_limit") == 0) {
			ok = parse_u32(value, 1, 1000, &c->max_attempt_limit);
		} else {
			goto unknown;
		}
	} else if (strcmp(section, "rate_limit") == 0) {
		if (strcmp(name, "enabled") == 0)
			ok = parse_bool(value, &c->rate_limit.enabled);
		else if (!parse_rate_rule(name, value, &c->rate_limit, &ok))
			goto unknown;
	} else if (strcmp(section, "limits") == 0) {
		return on_limits_entry(st, name, value);
	} else {
		snprintf(st->why, sizeof(st->why), "unknown section [%s]", section);
		return 0;
	}
	if (!ok) {
		snprintf(st->why, sizeof(st->why), "invalid value for [%s] %s", section, name);
		return 0;
	}
	return 1;
unknown:
	snprintf(st->why, sizeof(st->why), "unknown key [%s] %s", section, name);
	return 0;
}

static void set_defaults(bkvd_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->token_pin_env, sizeof(c->token_pin_env), "BKV_TOKEN_PIN");
	snprintf(c->listen, sizeof(c->listen), "127.0.0.1:8443");
	snprintf(c->storage, sizeof(c->storage), "sqlite:/var/lib/bkv/bkv.db");
	snprintf(c->audit_log, sizeof(c->audit_log), "-");
	snprintf(c->request_log, sizeof(c->request_log), "-");
	c->ticket_lifetime_s = 60;
	snprintf(c->auth_algorithm, sizeof(c->auth_algorithm), "ES256");
	c->auth_max_lifetime_s = 3600;
	c->auth_clock_skew_s = 60;
	bkv_rate_config_defaults(&c->rate_limit);
	c->suites[0] = OPAQUE_SUITE_RISTRETTO255_SHA512;
	c->suites[1] = OPAQUE_SUITE_P256_SHA256;
	c->nsuites = 2;
	memcpy(c->context, "bkv-v1", 6);
	c->context_len = 6;
	/* Argon2id t=3, m=64 MiB, p=4: also opaque-ke's JS default, so its users interoperate. */
	c->ksf = (opaque_ksf){OPAQUE_KSF_ARGON2ID, 3, 65536, 4};
	c->default_attempt_limit = 10;
	c->max_attempt_limit = 20;
	c->limit_max_header_bytes = 16 * 1024;
	c->limit_max_headers = 64;
	c->limit_idle_timeout_s = 30;
	c->limit_read_timeout_s = 10;
	c->limit_max_connections = 1024;
}

bool bkvd_config_load(const char *path, bkvd_config *config, char *why, size_t why_len)
{
	set_defaults(config);
	if (!copy_string(config->path, sizeof(config->path), path)) {
		snprintf(why, why_len, "configuration path too long");
		return false;
	}
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(why, why_len, "cannot read configuration %s: %s", path, strerror(errno));
		return false;
	}
	parse_state st = {.config = config};
	int rc = ini_parse_file(f, on_entry, &st);
	fclose(f);
	if (rc != 0) {
		if (st.why[0] != '\0')
			snprintf(why, why_len, "%s line %d: %s", path, rc, st.why);
		else
			snprintf(why, why_len, "%s line %d: syntax error", path, rc);
		return false;
	}
	if (config->token_module[0] == '\0' || config->token_label[0] == '\0') {
		snprintf(why, why_len, "%s: [token] module and label are required", path);
		return false;
	}
	if (config->default_attempt_limit > config->max_attempt_limit) {
		snprintf(why, why_len, "%s: default_attempt_limit exceeds max_attempt_limit", path);
		return false;
	}
	if (config->ksf.memory_kib < 8 * config->ksf.parallelism) {
		snprintf(why, why_len, "%s: argon2_memory_kib must be at least 8 * parallelism",
		         path);
		return false;
	}
	return true;
}

size_t bkvd_config_read_pin(const bkvd_config *config, char *pin, size_t pin_cap, char *why,
                            size_t why_len)
{
	size_t len = 0;
	if (config->token_pin_file[0] != '\0') {
		FILE *f = fopen(config->token_pin_file, "r");
		if (f == NULL) {
			snprintf(why, why_len, "cannot read pin_file %s: %s",
			         config->token_pin_file, strerror(errno));
			return 0;
		}
		struct stat st;
		if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077) != 0) {
			fclose(f);
			snprintf(why, why_len,
			         "pin_file %s is readable by group or others; chmod 600 it",
			         config->token_pin_file);
			return 0;
		}
		len = fread(pin, 1, pin_cap - 1, f);
		int more = fgetc(f);
		fclose(f);
		if (more != EOF) {
			sodium_memzero(pin, pin_cap);
			snprintf(why, why_len, "pin_file %s is too long", config->token_pin_file);
			return 0;
		}
	} else {
		const char *env = getenv(config->token_pin_env);
		if (env == NULL) {
			snprintf(
			    why, why_len,
			    "no token PIN: set [token] pin_file or the environment variable %s",
			    config->token_pin_env);
			return 0;
		}
		len = strlen(env);
		if (len >= pin_cap) {
			snprintf(why, why_len, "the PIN in %s is too long", config->token_pin_env);
			return 0;
		}
		memcpy(pin, env, len);
	}
	while (len > 0 && (pin[len - 1] == '\n' || pin[len - 1] == '\r'))
		len--;
	pin[len] = '\0';
	if (len == 0)
		snprintf(why, why_len, "the token PIN is empty");
	return len;
}

bool bkvd_split_listen(const char *listen, char *host, size_t host_cap, char *port, size_t port_cap)
{
	const char *colon = strrchr(listen, ':');
	if (colon == NULL || colon[1] == '\0')
		return false;
	const char *h = listen;
	size_t hlen = (size_t)(colon - listen);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= host_cap || strlen(colon + 1) >= port_cap)
		return false;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	snprintf(port, port_cap, "%s", colon + 1);
	for (const char *p = port; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
	}
	return true;
}

/* Parsed as an address, never matched by prefix: "127.0.0.1.evil.example" is a name like any
 * other, and resolves to wherever its owner wants. */
bool bkvd_host_is_loopback(const char *host)
{
	struct in_addr v4;
	struct in6_addr v6;
	if (inet_pton(AF_INET, host, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &v6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&v6);
	return strcasecmp(host, "localhost") == 0;
}

/* ---- [token] sealed_keys = database: the token's key store over the vault's database ---- */

typedef struct db_key_store {
	char url[BKVD_PATH_MAX];
	bkv_storage *storage; /* opened at first use */
} db_key_store;

static bkv_token_err key_store_err(bkv_storage_err err)
{
	switch (err) {
	case BKV_STORAGE_OK:
		return BKV_TOKEN_OK;
	case BKV_STORAGE_NOT_FOUND:
		return BKV_TOKEN_ERR_KEY_MISSING;
	case BKV_STORAGE_EXISTS:
	case BKV_STORAGE_STALE:
		return BKV_TOKEN_ERR_KEY_IN_USE;
	case BKV_STORAGE_CORRUPT:
		return BKV_TOKEN_ERR_AUTH; /* no sealed key of ours is that long */
	default:
		return BKV_TOKEN_ERR_DEVICE;
	}
}

static bkv_storage *key_store_storage(db_key_store *ks)
{
	char why[512];
	if (ks->storage == NULL &&
	    bkv_storage_open(ks->url, &ks->storage, why, sizeof(why)) != BKV_STORAGE_OK)
		fprintf(stderr, "bkvd: [token] sealed_keys = database: %s\n", why);
	return ks->storage;
}

static bkv_token_err key_store_get(void *arg, const char *name, uint8_t *out, size_t max,
                                   size_t *len)
{
	bkv_storage *s = key_store_storage(arg);
	return s ? key_store_err(bkv_storage_blob_get(s, name, out, max, len))
	         : BKV_TOKEN_ERR_DEVICE;
}

static bkv_token_err key_store_put(void *arg, const char *name, const uint8_t *old, size_t old_len,
                                   const uint8_t *blob, size_t len)
{
	bkv_storage *s = key_store_storage(arg);
	return s ? key_store_err(bkv_storage_blob_put(s, name, old, old_len, blob, len))
	         : BKV_TOKEN_ERR_DEVICE;
}

static bkv_token_err key_store_remove(void *arg, const char *name)
{
	bkv_storage *s = key_store_storage(arg);
	const bkv_storage_err err = s ? bkv_storage_blob_delete(s, name) : BKV_STORAGE_UNAVAILABLE;
	return err == BKV_STORAGE_NOT_FOUND ? BKV_TOKEN_OK : key_store_err(err);
}

static void key_store_close(void *arg)
{
	db_key_store *ks = arg;
	bkv_storage_close(ks->storage);
	free(ks);
}

bool bkvd_config_open_token(const bkvd_config *config, bkv_token **token, char *why, size_t why_len)
{
	char pin[BKV_TOKEN_PIN_MAX + 1];
	size_t pin_len = bkvd_config_read_pin(config, pin, sizeof(pin), why, why_len);
	if (pin_len == 0)
		return false;
	bkv_token_config tc = {
	    .module_path = config->token_module,
	    .token_label = config->token_label,
	    .pin = pin,
	    .pin_len = pin_len,
	    .p256_ake = config->token_p256_ake_sealed ? BKV_TOKEN_P256_AKE_SEALED
	                                              : BKV_TOKEN_P256_AKE_TOKEN,
	    .init_args = config->token_init_args[0] != '\0' ? config->token_init_args : NULL,
	};
	bkv_token_key_store store = {key_store_get, key_store_put, key_store_remove,
	                             key_store_close, NULL};
	/* SoftHSM's file store answers "no token" or a device error for a moment while
	 * other processes log in at the same time; only those are retried. */
	bkv_token_err err = BKV_TOKEN_ERR_DEVICE;
	for (int attempt = 0; attempt < 10; attempt++) {
		if (config->token_keys_in_database) {
			db_key_store *ks = calloc(1, sizeof(*ks));
			if (ks == NULL)
				break;
			snprintf(ks->url, sizeof(ks->url), "%s", config->storage);
			store.arg = ks;
			tc.key_store = &store;
		}
		err = bkv_token_open(&tc, token, why, why_len);
		if (err != BKV_TOKEN_ERR_NO_TOKEN && err != BKV_TOKEN_ERR_DEVICE)
			break;
		usleep((useconds_t)(20000 + attempt * 10000));
	}
	sodium_memzero(pin, sizeof(pin));
	return err == BKV_TOKEN_OK;
}

bool bkvd_config_load_log_key(const bkvd_config *config, uint8_t key[32], char *why, size_t why_len)
{
	if (config->log_key_file[0] == '\0') {
		/* Hashes stay consistent for this run only. */
		randombytes_buf(key, 32);
		return true;
	}
	FILE *f = fopen(config->log_key_file, "rb");
	if (f == NULL) {
		sodium_memzero(key, 32);
		snprintf(why, why_len, "cannot read log_key_file %s: %s (bkvd init creates it)",
		         config->log_key_file, strerror(errno));
		return false;
	}
	const size_t n = fread(key, 1, 32, f);
	const bool read_error = ferror(f) != 0;
	fclose(f);
	if (n != 32 || read_error) {
		sodium_memzero(key, 32);
		snprintf(why, why_len, "log_key_file %s must hold 32 bytes (bkvd init creates it)",
		         config->log_key_file);
		return false;
	}
	return true;
}
