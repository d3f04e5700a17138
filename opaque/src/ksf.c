/*
 * ksf.c - the key-stretching functions of RFC 9807 (section 2.3; configurations in
 * section 7): Identity, for the RFC vectors, and Argon2id through libargon2 with a salt
 * of 16 zero bytes and output length Nh, so that identical parameters give identical keys
 * across implementations.
 */
#include <argon2.h>
#include <sodium.h>

#include "core.h"

#define ARGON2_ZERO_SALT_BYTES 16

opaque_err opaque_ksf_stretch(const opaque_suite *suite, const opaque_ksf *ksf, const uint8_t *msg,
                              size_t msg_len, uint8_t *out)
{
	const size_t nh = suite->sizes.Nh;
	switch (ksf->id) {
	case OPAQUE_KSF_IDENTITY:
		if (msg_len != nh)
			return OPAQUE_ERR_KSF;
		memcpy(out, msg, nh);
		return OPAQUE_OK;
	case OPAQUE_KSF_ARGON2ID: {
		static const uint8_t zero_salt[ARGON2_ZERO_SALT_BYTES] = {0};
		if (msg_len > UINT32_MAX)
			return OPAQUE_ERR_KSF;
		int rc = argon2id_hash_raw(ksf->iterations, ksf->memory_kib, ksf->parallelism, msg,
		                           msg_len, zero_salt, sizeof(zero_salt), out, nh);
		if (rc != ARGON2_OK) {
			sodium_memzero(out, nh);
			return OPAQUE_ERR_KSF;
		}
		return OPAQUE_OK;
	}
	}
	return OPAQUE_ERR_ARGUMENT;
}
