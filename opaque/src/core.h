/*
 * core.h - private plumbing of the OPAQUE core: the bounds-checked reader, hashing and
 * HKDF, the prime-order group interface and the suite table.
 *
 * Invariants every source file keeps:
 *   - wire bytes are read only through opaque_reader (opaque/wire.h), which never reads
 *     past the end; a short or long message is OPAQUE_ERR_LENGTH;
 *   - errors travel through OPAQUE_TRY: a call either succeeds or the caller returns early,
 *     after its cleanup label has wiped every secret it holds.
 */
#ifndef OPAQUE_CORE_H
#define OPAQUE_CORE_H

#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "opaque/wire.h"
#include "opaque_internal.h"

/* Propagate an error to the function's `done:` label, which must wipe secrets. */
#define OPAQUE_TRY(expr)                                                                           \
	do {                                                                                       \
		err = (expr);                                                                      \
		if (err != OPAQUE_OK)                                                              \
			goto done;                                                                 \
	} while (0)

#define OPAQUE_FAIL(code)                                                                          \
	do {                                                                                       \
		err = (code);                                                                      \
		goto done;                                                                         \
	} while (0)

/* ---- Hashing, HMAC and HKDF (libsodium) over scattered inputs ---- */

typedef struct opaque_slice {
	const uint8_t *data;
	size_t len;
} opaque_slice;

#define OPAQUE_SLICE(p, n)  ((opaque_slice){(const uint8_t *)(p), (n)})
#define OPAQUE_SLICE_STR(s) ((opaque_slice){(const uint8_t *)(s), sizeof(s) - 1})

size_t opaque_hash_len(opaque_hash_id hash);

typedef union opaque_hash_state {
	crypto_hash_sha256_state sha256;
	crypto_hash_sha512_state sha512;
} opaque_hash_state;

/* Incremental hashing, so a common prefix is hashed once (copy the state); final wipes st. */
void opaque_hash_init(opaque_hash_id hash, opaque_hash_state *st);
void opaque_hash_update(opaque_hash_id hash, opaque_hash_state *st, const opaque_slice *parts,
                        size_t nparts);
void opaque_hash_final(opaque_hash_id hash, opaque_hash_state *st, uint8_t *out);

/* An HMAC key absorbed once (the inner and outer pads hashed), for several MACs under it. */
typedef struct opaque_hmac_key {
	opaque_hash_id hash;
	union {
		crypto_auth_hmacsha256_state sha256;
		crypto_auth_hmacsha512_state sha512;
	} st;
} opaque_hmac_key;

void opaque_hmac_key_init(opaque_hmac_key *k, opaque_hash_id hash, const uint8_t *key,
                          size_t key_len);
/* out = HMAC(key, parts...); k is left as it was. */
void opaque_hmac_keyed(const opaque_hmac_key *k, const opaque_slice *parts, size_t nparts,
                       uint8_t *out);
void opaque_hmac_key_wipe(opaque_hmac_key *k);
/* HKDF-Expand under an absorbed prk. */
opaque_err opaque_hkdf_expand_keyed(const opaque_hmac_key *prk, const opaque_slice *info,
                                    size_t ninfo, uint8_t *out, size_t out_len);
/* out = Hash(parts[0] || ... ), hash_len bytes. */
void opaque_hash(opaque_hash_id hash, const opaque_slice *parts, size_t nparts, uint8_t *out);
/* out = HMAC(key, parts...), hash_len bytes. */
void opaque_hmac(opaque_hash_id hash, const uint8_t *key, size_t key_len, const opaque_slice *parts,
                 size_t nparts, uint8_t *out);
/* HKDF-Extract(salt, ikm parts...). */
void opaque_hkdf_extract(opaque_hash_id hash, const uint8_t *salt, size_t salt_len,
                         const opaque_slice *ikm, size_t nikm, uint8_t *prk);
/* HKDF-Expand(prk, info parts..., out_len); out_len <= 255 * hash_len. */
opaque_err opaque_hkdf_expand(opaque_hash_id hash, const uint8_t *prk, size_t prk_len,
                              const opaque_slice *info, size_t ninfo, uint8_t *out, size_t out_len);

/* expand_message_xmd over scattered msg. */
opaque_err opaque_expand_message_xmd_parts(opaque_hash_id hash, const opaque_slice *msg,
                                           size_t nmsg, const uint8_t *dst, size_t dst_len,
                                           uint8_t *out, size_t out_len);

/* ---- RFC 9380 for P-256 over scattered inputs (h2c.c) ---- */

opaque_err opaque_p256_hash_to_field_parts(opaque_p256_field field, const opaque_slice *msg,
                                           size_t nmsg, const uint8_t *dst, size_t dst_len,
                                           size_t count, uint8_t *out);
opaque_err opaque_p256_hash_to_curve_parts(const opaque_slice *msg, size_t nmsg, const uint8_t *dst,
                                           size_t dst_len, uint8_t out_xy[64]);

/* ---- Prime-order groups ---- */

/* A received element, decoded and validated once (element_decode) and then multiplied any
 * number of times (scalar_mult_decoded) without decoding it again. enc points at the
 * encoding it came from, which must outlive it. P-256: point is the affine EC_POINT.
 * ristretto255: point is NULL; libsodium decodes inside each multiplication (it has no
 * decoded form in its API), so element_decode does the checks it cannot (identity, s >= p,
 * negative s) and the multiplication the rest. Release with decoded_free. */
typedef struct opaque_decoded {
	const uint8_t *enc;
	void *point;
} opaque_decoded;

typedef struct opaque_group {
	size_t element_len;
	size_t scalar_len;
	opaque_err (*element_validate)(const uint8_t *element, size_t element_len);
	/* OPAQUE_OK if scalar is reduced and non-zero. */
	opaque_err (*scalar_validate)(const uint8_t *scalar);
	/* out = scalar * element. Decodes and validates element (the element_validate errors)
	 * and rejects an identity result, so callers need not validate it separately. */
	opaque_err (*scalar_mult)(const uint8_t *scalar, const uint8_t *element, uint8_t *out);
	/* The two halves of scalar_mult: decode (the element_validate errors, except that a
	 * ristretto255 encoding off the curve is reported by the multiplication), then
	 * out = scalar * element, rejecting an identity result. */
	opaque_err (*element_decode)(const uint8_t *element, opaque_decoded *out);
	opaque_err (*scalar_mult_decoded)(const uint8_t *scalar, const opaque_decoded *element,
	                                  uint8_t *out);
	void (*decoded_free)(opaque_decoded *element);
	/* Lends a decoded element to this thread's scalar_mult until lend(NULL): a scalar_mult
	 * on the same encoding then skips decoding. KE2 lends the client key share for the
	 * duration of keys->ake_dh, whose software implementations (opaque_ake_dh) multiply
	 * the same bytes. A no-op where decoding cannot be skipped (ristretto255). */
	void (*lend)(const opaque_decoded *element);
	opaque_err (*scalar_mult_base)(const uint8_t *scalar, uint8_t *out);
	opaque_err (*scalar_invert)(const uint8_t *scalar, uint8_t *out);
	opaque_err (*random_scalar)(uint8_t *out);
	/* out = scalar * HashToGroup(msg); OPAQUE_ERR_INVALID_INPUT if HashToGroup(msg) is
	 * the identity. One step, so the hashed point is never re-encoded and decoded. */
	opaque_err (*hash_to_group_mult)(const opaque_slice *msg, size_t nmsg, const uint8_t *dst,
	                                 size_t dst_len, const uint8_t *scalar, uint8_t *out);
	opaque_err (*hash_to_scalar)(const opaque_slice *msg, size_t nmsg, const uint8_t *dst,
	                             size_t dst_len, uint8_t *out);
} opaque_group;

extern const opaque_group opaque_group_p256;
extern const opaque_group opaque_group_ristretto255;

/* ---- Suites ---- */

typedef struct opaque_suite {
	opaque_suite_id id;
	const char *name;
	opaque_hash_id hash;
	const opaque_group *group;
	opaque_sizes sizes;
	/* RFC 9497 domain separation tags for mode 0x00. */
	opaque_slice hash_to_group_dst;
	opaque_slice hash_to_scalar_dst;
	opaque_slice derive_key_pair_dst;
} opaque_suite;

/* NULL for an unknown suite. */
const opaque_suite *opaque_suite_get(opaque_suite_id id);

/* ---- OPRF internals shared with the protocol ---- */

opaque_err opaque_oprf_derive_key_pair_internal(const opaque_suite *suite, const uint8_t *seed,
                                                const uint8_t *info, size_t info_len,
                                                uint8_t *private_key, uint8_t *public_key);
opaque_err opaque_oprf_blind_internal(const opaque_suite *suite, const uint8_t *input,
                                      size_t input_len, const uint8_t *blind,
                                      uint8_t *blinded_element);
opaque_err opaque_oprf_finalize_internal(const opaque_suite *suite, const uint8_t *input,
                                         size_t input_len, const uint8_t *blind,
                                         const uint8_t *evaluated_element, uint8_t *output);

/* ---- KSF ---- */

/* out (Nh bytes) = Stretch(msg) per ksf. */
opaque_err opaque_ksf_stretch(const opaque_suite *suite, const opaque_ksf *ksf, const uint8_t *msg,
                              size_t msg_len, uint8_t *out);

/* Fill with CSPRNG bytes. */
void opaque_random_bytes(uint8_t *out, size_t len);

#endif
