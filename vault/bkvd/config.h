/*
 * config.h - bkvd's configuration: an INI file (inih) plus a few flags. Unknown sections
 * and keys are errors, so a typo never silently falls back to a default.
 *
 * The token PIN comes from pin_file or from the environment variable named by pin_env
 * (default BKV_TOKEN_PIN), never from the command line, and is never printed.
 */
#ifndef BKVD_CONFIG_H
#define BKVD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "opaque/opaque.h"
#include "ratelimit.h"
#include "token.h"

#define BKVD_MAX_SUITES 2
#define BKVD_PATH_MAX   4096

/* [vault] committer, SQLite only: whether a process of its own runs the workers' commits
 * (cmd_serve.c); auto: where an fsync beside the database takes a disk's time. */
typedef enum bkvd_committer {
	BKVD_COMMITTER_AUTO,
	BKVD_COMMITTER_ON,
	BKVD_COMMITTER_OFF
} bkvd_committer;

typedef struct bkvd_config {
	char path[BKVD_PATH_MAX]; /* the file it was read from */

	/* [vault] */
	char listen[256];         /* host:port */
	char metrics_listen[256]; /* host:port of the plain-HTTP /metrics listener; "" = off */
	char storage[BKVD_PATH_MAX];
	uint32_t workers; /* 0 = number of CPUs */
	bkvd_committer committer;
	char tls_cert[BKVD_PATH_MAX];
	char tls_key[BKVD_PATH_MAX];
	char audit_log[BKVD_PATH_MAX];   /* "-" for stderr, "" for none */
	char request_log[BKVD_PATH_MAX]; /* "-" for stderr, "" for none */
	char log_key_file[BKVD_PATH_MAX];
	uint32_t ticket_lifetime_s;

	/* [auth] */
	char auth_algorithm[16];
	char auth_key_file[BKVD_PATH_MAX];
	char auth_issuer[256];
	char auth_audience[256];
	uint32_t auth_max_lifetime_s;
	uint32_t auth_clock_skew_s;
	bool auth_dev_issuer; /* allows `bkvd dev-token` */

	/* [token] */
	char token_module[BKVD_PATH_MAX];
	char token_label[64];
	char token_pin_file[BKVD_PATH_MAX];
	char token_pin_env[64];
	bool token_p256_ake_sealed;  /* p256_ake = sealed (default token) */
	bool token_keys_in_database; /* sealed_keys = database (default token: data objects) */
	char token_init_args[1024];  /* C_Initialize's pReserved string; "" = none */

	/* [opaque] */
	opaque_suite_id suites[BKVD_MAX_SUITES]; /* enabled, preferred first */
	size_t nsuites;
	uint8_t context[256];
	size_t context_len;
	opaque_ksf ksf; /* what clients must use; published by GetConfig */
	uint32_t default_attempt_limit;
	uint32_t max_attempt_limit;

	/* [rate_limit]: enabled, per_account.METHOD, per_address.METHOD (ratelimit.h) */
	bkv_rate_config rate_limit;

	/* [limits]: per worker, what one client gets at most (server.h bkv_server_limits) */
	uint32_t limit_max_header_bytes;
	uint32_t limit_max_headers;
	uint32_t limit_idle_timeout_s;
	uint32_t limit_read_timeout_s;
	uint32_t limit_max_connections;
} bkvd_config;

/* Loads defaults, then the file. On failure writes a one-line reason to why. */
bool bkvd_config_load(const char *path, bkvd_config *config, char *why, size_t why_len);

/* Reads the token PIN (file or environment) into pin (NUL-terminated). Returns its length,
 * or 0 with a reason in why. The caller wipes pin. */
size_t bkvd_config_read_pin(const bkvd_config *config, char *pin, size_t pin_cap, char *why,
                            size_t why_len);

/* Opens the configured token with the configured PIN (read, used and wiped here),
 * retrying only the moments SoftHSM's file store answers "no token" or a device error
 * while other processes log in. False with a one-line reason in why. */
bool bkvd_config_open_token(const bkvd_config *config, bkv_token **token, char *why,
                            size_t why_len);

/* The key of the account-id hashes in logs: the 32 bytes of [vault] log_key_file, or a
 * random key (for this run only) if none is configured. False with a one-line reason in
 * why, and key wiped, if the file cannot be read or holds fewer than 32 bytes (bytes
 * after the first 32 are ignored). */
bool bkvd_config_load_log_key(const bkvd_config *config, uint8_t key[32], char *why,
                              size_t why_len);

/* Splits "host:port" or "[v6]:port". */
bool bkvd_split_listen(const char *listen, char *host, size_t host_cap, char *port,
                       size_t port_cap);
/* True if host is a loopback address (127.0.0.0/8, ::1 or localhost). */
bool bkvd_host_is_loopback(const char *host);

/* "p256-sha256" / "ristretto255-sha512" <-> suite. */
bool bkvd_suite_parse(const char *name, opaque_suite_id *suite);
const char *bkvd_suite_config_name(opaque_suite_id suite);

#endif
