/*
 * config.c - GetConfig: what every SDK needs to derive the same keys: the enabled suites
 * (preferred first), the context string, the AKE public keys, the attempt limits and the
 * Argon2id parameters clients must use.
 */
#include "handlers.h"

bkvd_status bkvd_get_config(bkv_vault *v, Bkv__V1__GetConfigResponse *resp, bkv_reply_buffers *buf)
{
	bkv__v1__get_config_response__init(resp);
	for (size_t i = 0; i < v->settings.nsuites; i++) {
		const opaque_suite_id suite = v->settings.suites[i];
		const opaque_server_keys *keys = bkv_token_server_keys(v->token, suite);
		if (keys == NULL)
			return bkvd_status_error(BKV_CODE_INTERNAL,
			                         "a suite's keys are not loaded");
		buf->suites[i] = (Bkv__V1__Suite)suite;
		bkv__v1__server_key__init(&buf->server_keys[i]);
		buf->server_keys[i].suite = (Bkv__V1__Suite)suite;
		buf->server_keys[i].public_key.data = (uint8_t *)keys->server_public_key;
		buf->server_keys[i].public_key.len = opaque_suite_sizes(suite)->Npk;
		buf->server_key_ptrs[i] = &buf->server_keys[i];
	}
	resp->n_suites = v->settings.nsuites;
	resp->suites = buf->suites;
	resp->n_server_keys = v->settings.nsuites;
	resp->server_keys = buf->server_key_ptrs;
	resp->context.data = (uint8_t *)v->settings.context;
	resp->context.len = v->settings.context_len;
	resp->default_attempt_limit = v->settings.default_attempt_limit;
	resp->max_attempt_limit = v->settings.max_attempt_limit;
	bkv__v1__ksf_params__init(&buf->ksf);
	buf->ksf.algorithm = "argon2id";
	buf->ksf.iterations = v->settings.ksf.iterations;
	buf->ksf.memory_kib = v->settings.ksf.memory_kib;
	buf->ksf.parallelism = v->settings.ksf.parallelism;
	resp->ksf = &buf->ksf;
	return bkvd_status_ok();
}
