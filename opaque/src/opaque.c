/*
 * opaque.c - OPAQUE-3DH, RFC 9807 sections 4 to 6: registration, the envelope (Store and
 * Recover), credential response masking, and the 3DH key exchange with its key schedule.
 *
 * Names follow the RFC so the code can be read against it line by line. Invariants:
 *   - every received message is split with opaque_reader and every element in it is
 *     validated before it reaches a scalar multiplication or the server's key operations;
 *   - the client checks the envelope's auth_tag before it trusts anything it unmasked;
 *   - MACs are compared with sodium_memcmp (constant time);
 *   - secrets (blinds, randomized_password, keys, seeds, DH outputs, masking keys) live in
 *     locals wiped at each function's `done:` label, and outputs are wiped on failure.
 */
#include <sodium.h>

#include "core.h"

#define DH_MAX_BYTES     (3 * OPAQUE_MAX_ELEMENT_BYTES)
#define MASKED_MAX_BYTES (OPAQUE_MAX_ELEMENT_BYTES + OPAQUE_NONCE_BYTES + OPAQUE_MAX_HASH_BYTES)
#define CREDENTIAL_RESPONSE_MAX_BYTES                                                              \
	(OPAQUE_MAX_ELEMENT_BYTES + OPAQUE_NONCE_BYTES + MASKED_MAX_BYTES)

/* ---- Argument checks shared by every entry point ---- */

static opaque_err check_config(const opaque_config *config, const opaque_suite **suite)
{
	if (config == NULL)
		return OPAQUE_ERR_ARGUMENT;
	*suite = opaque_suite_get(config->suite);
	if (*suite == NULL || (config->context == NULL && config->context_len > 0) ||
	    config->context_len > OPAQUE_MAX_CONTEXT_BYTES)
		return OPAQUE_ERR_ARGUMENT;
	if (config->ksf.id != OPAQUE_KSF_IDENTITY && config->ksf.id != OPAQUE_KSF_ARGON2ID)
		return OPAQUE_ERR_ARGUMENT;
	return OPAQUE_OK;
}

static bool password_ok(const uint8_t *password, size_t password_len)
{
	return (password != NULL || password_len == 0) && password_len <= OPAQUE_MAX_PASSWORD_BYTES;
}

static bool identities_ok(const opaque_identities *ids)
{
	if (ids == NULL)
		return true;
	return (ids->client_identity != NULL || ids->client_identity_len == 0) &&
	       (ids->server_identity != NULL || ids->server_identity_len == 0) &&
	       ids->client_identity_len <= OPAQUE_MAX_IDENTITY_BYTES &&
	       ids->server_identity_len <= OPAQUE_MAX_IDENTITY_BYTES;
}

/* The identity to use: the caller's, or the public key when none was given. */
static opaque_slice client_identity_or(const opaque_identities *ids, const uint8_t *pk,
                                       size_t pk_len)
{
	if (ids != NULL && ids->client_identity != NULL)
		return OPAQUE_SLICE(ids->client_identity, ids->client_identity_len);
	return OPAQUE_SLICE(pk, pk_len);
}

static opaque_slice server_identity_or(const opaque_identities *ids, const uint8_t *pk,
                                       size_t pk_len)
{
	if (ids != NULL && ids->server_identity != NULL)
		return OPAQUE_SLICE(ids->server_identity, ids->server_identity_len);
	return OPAQUE_SLICE(pk, pk_len);
}

/* ---- Key derivation helpers (RFC 9807 sections 4 and 6.4.2) ---- */

/* Expand(secret, info parts..., len) with the suite's hash. */
static opaque_err expand(const opaque_suite *s, const uint8_t *secret, const opaque_slice *info,
                         size_t ninfo, uint8_t *out, size_t out_len)
{
	return opaque_hkdf_expand(s->hash, secret, s->sizes.Nh, info, ninfo, out, out_len);
}

/* Expand-Label(Secret, Label, Context, Length) = Expand(Secret, CustomLabel, Length) with
 * CustomLabel = I2OSP(Length, 2) || I2OSP(len("OPAQUE-" || Label), 1) || "OPAQUE-" ||
 * Label || I2OSP(len(Context), 1) || Context */
static opaque_err expand_label(const opaque_hmac_key *secret, const char *label,
                               const uint8_t *context, size_t context_len, uint8_t *out,
                               size_t out_len)
{
	const size_t label_len = strlen(label);
	const uint8_t length_be[2] = {(uint8_t)(out_len >> 8), (uint8_t)out_len};
	const uint8_t full_label_len = (uint8_t)(sizeof("OPAQUE-") - 1 + label_len);
	const uint8_t ctx_len = (uint8_t)context_len;
	opaque_slice info[6] = {OPAQUE_SLICE(length_be, 2),  OPAQUE_SLICE(&full_label_len, 1),
	                        OPAQUE_SLICE_STR("OPAQUE-"), OPAQUE_SLICE(label, label_len),
	                        OPAQUE_SLICE(&ctx_len, 1),   OPAQUE_SLICE(context, context_len)};
	return opaque_hkdf_expand_keyed(secret, info, 6, out, out_len);
}

/* DeriveDiffieHellmanKeyPair(seed) = DeriveKeyPair(seed, "OPAQUE-DeriveDiffieHellmanKeyPair") */
static opaque_err derive_dh_key_pair(const opaque_suite *s, const uint8_t *seed,
                                     uint8_t *private_key, uint8_t *public_key)
{
	static const char info[] = "OPAQUE-DeriveDiffieHellmanKeyPair";
	return opaque_oprf_derive_key_pair_internal(s, seed, (const uint8_t *)info,
	                                            sizeof(info) - 1, private_key, public_key);
}

/* The per-user OPRF key: seed = Expand(oprf_seed, credential_identifier || "OprfKey", Nok),
 * then DeriveKeyPair(seed, "OPAQUE-DeriveKeyPair"). The Expand runs in keys (the token). */
static opaque_err derive_oprf_key(const opaque_suite *s, const opaque_server_keys *keys,
                                  const uint8_t *credential_identifier,
                                  size_t credential_identifier_len, uint8_t *oprf_key)
{
	static const char label[] = "OprfKey";
	static const char dkp_info[] = "OPAQUE-DeriveKeyPair";
	uint8_t info[OPAQUE_MAX_CREDENTIAL_IDENTIFIER_BYTES + sizeof(label)];
	uint8_t seed[OPAQUE_OPRF_KEY_SEED_BYTES];
	opaque_err err;
	memcpy(info, credential_identifier, credential_identifier_len);
	memcpy(info + credential_identifier_len, label, sizeof(label) - 1);
	if (keys->oprf_seed_expand(keys->ctx, info, credential_identifier_len + sizeof(label) - 1,
	                           seed, s->sizes.Nok) != OPAQUE_OK)
		OPAQUE_FAIL(OPAQUE_ERR_SERVER_KEYS);
	OPAQUE_TRY(opaque_oprf_derive_key_pair_internal(s, seed, (const uint8_t *)dkp_info,
	                                                sizeof(dkp_info) - 1, oprf_key, NULL));
done:
	sodium_memzero(seed, sizeof(seed));
	return err;
}

/* BlindEvaluate with the per-user key: evaluated = oprf_key * blinded_element (decoded by
 * the caller). */
static opaque_err server_evaluate(const opaque_suite *s, const opaque_server_keys *keys,
                                  const uint8_t *credential_identifier,
                                  size_t credential_identifier_len,
                                  const opaque_decoded *blinded_element, uint8_t *evaluated_element)
{
	uint8_t oprf_key[OPAQUE_MAX_SCALAR_BYTES];
	opaque_err err;
	OPAQUE_TRY(
	    derive_oprf_key(s, keys, credential_identifier, credential_identifier_len, oprf_key));
	OPAQUE_TRY(s->group->scalar_mult_decoded(oprf_key, blinded_element, evaluated_element));
done:
	sodium_memzero(oprf_key, sizeof(oprf_key));
	return err;
}

/* randomized_password = Extract("", oprf_output || Stretch(oprf_output)) */
static opaque_err derive_randomized_password(const opaque_suite *s, const opaque_config *config,
                                             const uint8_t *password, size_t password_len,
                                             const uint8_t *blind, const uint8_t *evaluated_element,
                                             uint8_t *randomized_password)
{
	uint8_t oprf_output[OPAQUE_MAX_HASH_BYTES];
	uint8_t stretched[OPAQUE_MAX_HASH_BYTES];
	opaque_err err;
	OPAQUE_TRY(opaque_oprf_finalize_internal(s, password, password_len, blind,
	                                         evaluated_element, oprf_output));
	OPAQUE_TRY(opaque_ksf_stretch(s, &config->ksf, oprf_output, s->sizes.Nh, stretched));
	opaque_slice ikm[2] = {OPAQUE_SLICE(oprf_output, s->sizes.Nh),
	                       OPAQUE_SLICE(stretched, s->sizes.Nh)};
	opaque_hkdf_extract(s->hash, NULL, 0, ikm, 2, randomized_password);
done:
	sodium_memzero(oprf_output, sizeof(oprf_output));
	sodium_memzero(stretched, sizeof(stretched));
	return err;
}

/* ---- The envelope (RFC 9807 section 4.1) ---- */

typedef struct envelope_keys {
	uint8_t auth_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t export_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t client_private_key[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t client_public_key[OPAQUE_MAX_ELEMENT_BYTES];
} envelope_keys;

/* The derivations Store and Recover share: auth_key, export_key and the client key pair. */
static opaque_err derive_envelope_keys(const opaque_suite *s, const uint8_t *randomized_password,
                                       const uint8_t *envelope_nonce, envelope_keys *k)
{
	const size_t nh = s->sizes.Nh;
	uint8_t seed[OPAQUE_SEED_BYTES];
	opaque_err err;
	opaque_slice auth_info[2] = {OPAQUE_SLICE(envelope_nonce, OPAQUE_NONCE_BYTES),
	                             OPAQUE_SLICE_STR("AuthKey")};
	opaque_slice export_info[2] = {OPAQUE_SLICE(envelope_nonce, OPAQUE_NONCE_BYTES),
	                               OPAQUE_SLICE_STR("ExportKey")};
	opaque_slice seed_info[2] = {OPAQUE_SLICE(envelope_nonce, OPAQUE_NONCE_BYTES),
	                             OPAQUE_SLICE_STR("PrivateKey")};
	OPAQUE_TRY(expand(s, randomized_password, auth_info, 2, k->auth_key, nh));
	OPAQUE_TRY(expand(s, randomized_password, export_info, 2, k->export_key, nh));
	OPAQUE_TRY(expand(s, randomized_password, seed_info, 2, seed, s->sizes.Nseed));
	OPAQUE_TRY(derive_dh_key_pair(s, seed, k->client_private_key, k->client_public_key));
done:
	sodium_memzero(seed, sizeof(seed));
	return err;
}

/* auth_tag = MAC(auth_key, envelope_nonce || CleartextCredentials), where
 * CleartextCredentials = server_public_key || I2OSP(len(server_identity), 2) ||
 * server_identity || I2OSP(len(client_identity), 2) || client_identity */
static void envelope_auth_tag(const opaque_suite *s, const uint8_t *auth_key,
                              const uint8_t *envelope_nonce, const uint8_t *server_public_key,
                              opaque_slice server_identity, opaque_slice client_identity,
                              uint8_t *auth_tag)
{
	const uint8_t sid_len[2] = {(uint8_t)(server_identity.len >> 8),
	                            (uint8_t)server_identity.len};
	const uint8_t cid_len[2] = {(uint8_t)(client_identity.len >> 8),
	                            (uint8_t)client_identity.len};
	opaque_slice parts[6] = {OPAQUE_SLICE(envelope_nonce, OPAQUE_NONCE_BYTES),
	                         OPAQUE_SLICE(server_public_key, s->sizes.Npk),
	                         OPAQUE_SLICE(sid_len, 2),
	                         server_identity,
	                         OPAQUE_SLICE(cid_len, 2),
	                         client_identity};
	opaque_hmac(s->hash, auth_key, s->sizes.Nh, parts, 6, auth_tag);
}

/* masked_response = Expand(masking_key, masking_nonce || "CredentialResponsePad",
 * Npk + Nn + Nm) XOR (server_public_key || envelope); the same call unmasks. */
static opaque_err apply_credential_response_pad(const opaque_suite *s, const uint8_t *masking_key,
                                                const uint8_t *masking_nonce, const uint8_t *in,
                                                uint8_t *out)
{
	const size_t len = s->sizes.Npk + s->sizes.envelope;
	uint8_t pad[MASKED_MAX_BYTES];
	opaque_slice info[2] = {OPAQUE_SLICE(masking_nonce, OPAQUE_NONCE_BYTES),
	                        OPAQUE_SLICE_STR("CredentialResponsePad")};
	opaque_err err = expand(s, masking_key, info, 2, pad, len);
	if (err == OPAQUE_OK) {
		for (size_t i = 0; i < len; i++)
			out[i] = in[i] ^ pad[i];
	}
	sodium_memzero(pad, sizeof(pad));
	return err;
}

/* ---- The 3DH key schedule (RFC 9807 section 6.4.2) ---- */

/* The preamble, kept as slices so it can be hashed with and without server_mac. */
typedef struct preamble {
	opaque_slice parts[13];
	size_t nparts;
	uint8_t context_len[2];
	uint8_t client_identity_len[2];
	uint8_t server_identity_len[2];
} preamble;

/* preamble = "OPAQUEv1-" || I2OSP(len(context), 2) || context ||
 *   I2OSP(len(client_identity), 2) || client_identity || ke1 ||
 *   I2OSP(len(server_identity), 2) || server_identity || credential_response ||
 *   server_nonce || server_public_keyshare */
static void preamble_build(preamble *p, const opaque_config *config, opaque_slice client_identity,
                           opaque_slice ke1, opaque_slice server_identity,
                           opaque_slice credential_response, opaque_slice server_nonce,
                           opaque_slice server_public_keyshare)
{
	p->context_len[0] = (uint8_t)(config->context_len >> 8);
	p->context_len[1] = (uint8_t)config->context_len;
	p->client_identity_len[0] = (uint8_t)(client_identity.len >> 8);
	p->client_identity_len[1] = (uint8_t)client_identity.len;
	p->server_identity_len[0] = (uint8_t)(server_identity.len >> 8);
	p->server_identity_len[1] = (uint8_t)server_identity.len;
	size_t n = 0;
	p->parts[n++] = OPAQUE_SLICE_STR("OPAQUEv1-");
	p->parts[n++] = OPAQUE_SLICE(p->context_len, 2);
	p->parts[n++] = OPAQUE_SLICE(config->context, config->context_len);
	p->parts[n++] = OPAQUE_SLICE(p->client_identity_len, 2);
	p->parts[n++] = client_identity;
	p->parts[n++] = ke1;
	p->parts[n++] = OPAQUE_SLICE(p->server_identity_len, 2);
	p->parts[n++] = server_identity;
	p->parts[n++] = credential_response;
	p->parts[n++] = server_nonce;
	p->parts[n++] = server_public_keyshare;
	p->nparts = n;
}

/* From ikm = dh1 || dh2 || dh3 and the preamble: session_key, server_mac and client_mac.
 *   prk = Extract("", ikm)
 *   handshake_secret = Derive-Secret(prk, "HandshakeSecret", Hash(preamble))
 *   session_key = Derive-Secret(prk, "SessionKey", Hash(preamble))
 *   Km2 = Derive-Secret(handshake_secret, "ServerMAC", ""), Km3 likewise "ClientMAC"
 *   server_mac = MAC(Km2, Hash(preamble))
 *   client_mac = MAC(Km3, Hash(preamble || server_mac)) */
static opaque_err derive_3dh(const opaque_suite *s, preamble *p, const uint8_t *ikm,
                             uint8_t *session_key, uint8_t *server_mac, uint8_t *client_mac)
{
	const size_t nh = s->sizes.Nh;
	uint8_t preamble_hash[OPAQUE_MAX_HASH_BYTES];
	uint8_t prk_bytes[OPAQUE_MAX_HASH_BYTES];
	uint8_t secret_bytes[OPAQUE_MAX_HASH_BYTES]; /* handshake_secret */
	uint8_t km2[OPAQUE_MAX_HASH_BYTES];
	uint8_t km3[OPAQUE_MAX_HASH_BYTES];
	uint8_t transcript_hash[OPAQUE_MAX_HASH_BYTES];

	opaque_hash_state preamble_state, transcript_state;
	opaque_hmac_key prk, handshake_secret;
	opaque_err err;

	/* Hash(preamble || server_mac) continues Hash(preamble): the preamble is hashed once. */
	opaque_hash_init(s->hash, &preamble_state);
	opaque_hash_update(s->hash, &preamble_state, p->parts, p->nparts);
	transcript_state = preamble_state;
	opaque_hash_final(s->hash, &preamble_state, preamble_hash);
	/* prk and handshake_secret each key two MACs: absorb each key once. */
	opaque_slice ikm_slice = OPAQUE_SLICE(ikm, 3 * s->sizes.Noe);
	opaque_hkdf_extract(s->hash, NULL, 0, &ikm_slice, 1, prk_bytes);
	opaque_hmac_key_init(&prk, s->hash, prk_bytes, nh);
	OPAQUE_TRY(expand_label(&prk, "HandshakeSecret", preamble_hash, nh, secret_bytes, nh));
	OPAQUE_TRY(expand_label(&prk, "SessionKey", preamble_hash, nh, session_key, nh));
	opaque_hmac_key_init(&handshake_secret, s->hash, secret_bytes, nh);
	OPAQUE_TRY(expand_label(&handshake_secret, "ServerMAC", NULL, 0, km2, nh));
	OPAQUE_TRY(expand_label(&handshake_secret, "ClientMAC", NULL, 0, km3, nh));

	opaque_slice ph = OPAQUE_SLICE(preamble_hash, nh);
	opaque_hmac(s->hash, km2, nh, &ph, 1, server_mac);
	opaque_slice mac = OPAQUE_SLICE(server_mac, nh);
	opaque_hash_update(s->hash, &transcript_state, &mac, 1);
	opaque_hash_final(s->hash, &transcript_state, transcript_hash);
	opaque_slice th = OPAQUE_SLICE(transcript_hash, nh);
	opaque_hmac(s->hash, km3, nh, &th, 1, client_mac);
done:
	sodium_memzero(prk_bytes, sizeof(prk_bytes));
	sodium_memzero(secret_bytes, sizeof(secret_bytes));
	opaque_hmac_key_wipe(&prk);
	opaque_hmac_key_wipe(&handshake_secret);
	sodium_memzero(&transcript_state, sizeof(transcript_state));
	sodium_memzero(km2, sizeof(km2));
	sodium_memzero(km3, sizeof(km3));
	sodium_memzero(preamble_hash, sizeof(preamble_hash));
	sodium_memzero(transcript_hash, sizeof(transcript_hash));
	return err;
}

/* ---- Registration ---- */

opaque_err opaque_client_registration_start_with_randomness(
    const opaque_config *config, const uint8_t *password, size_t password_len, const uint8_t *blind,
    size_t blind_len, opaque_client_registration_state *state, uint8_t *registration_request,
    size_t registration_request_len)
{
	const opaque_suite *s;
	opaque_err err;
	if (state == NULL)
		return OPAQUE_ERR_ARGUMENT;
	sodium_memzero(state, sizeof(*state));
	OPAQUE_TRY(check_config(config, &s));
	if (!password_ok(password, password_len) || blind == NULL || registration_request == NULL)
		OPAQUE_FAIL(OPAQUE_ERR_ARGUMENT);
	if (registration_request_len != s->sizes.registration_request)
		OPAQUE_FAIL(OPAQUE_ERR_BUFFER);
	if (blind_len != s->sizes.Ns)
		OPAQUE_FAIL(OPAQUE_ERR_LENGTH);
	OPAQUE_TRY(
	    opaque_oprf_blind_internal(s, password, password_len, blind, registration_request));
	state->suite = s->id;
	memcpy(state->blind, blind, blind_len);
done:
	if (err != OPAQUE_OK) {
		sodium_memzero(state, sizeof(*state));
		if (registration_request != NULL)
			sodium_memzero(registration_request, registration_request_len);
	}
	return err;
}

opaque_err opaque_client_registration_start(const opaque_config *config, const uint8_t *password,
                                            size_t password_len,
                                            opaque_client_registration_state *state,
                                            uint8_t *registration_request,
                                            size_t registration_request_len)
{
	const opaque_suite *s;
	uint8_t blind[OPAQUE_MAX_SCALAR_BYTES];
	opaque_err err;
	OPAQUE_TRY(check_config(config, &s));
	OPAQUE_TRY(s->group->random_scalar(blind));
	err = opaque_client_registration_start_with_randomness(
	    config, password, password_len, blind, s->sizes.Ns, state, registration_request,
	    registration_request_len);
done:
	sodium_memzero(blind, sizeof(blind));
	return err;
}

opaque_err opaque_server_registration_response(
    const opaque_config *config, const opaque_server_keys *keys,
    const uint8_t *credential_identifier, size_t credential_identifier_len,
    const uint8_t *registration_request, size_t registration_request_len,
    uint8_t *registration_response, size_t registration_response_len)
{
	const opaque_suite *s = NULL;
	opaque_decoded blinded = {NULL, NULL};
	opaque_err err;
	OPAQUE_TRY(check_config(config, &s));
	if (keys == NULL || keys->suite != s->id || credential_identifier == NULL ||
	    credential_identifier_len > OPAQUE_MAX_CREDENTIAL_IDENTIFIER_BYTES ||
	    registration_request == NULL || registration_response == NULL)
		OPAQUE_FAIL(OPAQUE_ERR_ARGUMENT);
	if (registration_response_len != s->sizes.registration_response)
		OPAQUE_FAIL(OPAQUE_ERR_BUFFER);
	if (registration_request_len != s->sizes.registration_request)
		OPAQUE_FAIL(OPAQUE_ERR_LENGTH);

	/* response = evaluated_message || server_public_key */
	OPAQUE_TRY(s->group->element_decode(registration_request, &blinded));
	OPAQUE_TRY(server_evaluate(s, keys, credential_identifier, credential_identifier_len,
	                           &blinded, registration_response));
	memcpy(registration_response + s->sizes.Noe, keys->server_public_key, s->sizes.Npk);
done:
	if (s != NULL)
		s->group->decoded_free(&blinded);
	if (err != OPAQUE_OK && registration_response != NULL)
		sodium_memzero(registration_response, registration_response_len);
	return err;
}

opaque_err opaque_client_registration_finish_with_randomness(
    const opaque_config *config, opaque_client_registration_state *state, const uint8_t *password,
    size_t password_len, const opaque_identities *identities, const uint8_t *registration_response,
    size_t registration_response_len, const uint8_t envelope_nonce[OPAQUE_NONCE_BYTES],
    uint8_t *registration_record, size_t registration_record_len, uint8_t *export_key,
    size_t export_key_len)
{
	const opaque_suite *s = NULL;
	uint8_t randomized_password[OPAQUE_MAX_HASH_BYTES];
	envelope_keys keys;
	opaque_err err;
	sodium_memzero(&keys, sizeof(keys));
	OPAQUE_TRY(check_config(config, &s));
	if (state == NULL || state->suite != s->id || !password_ok(password, password_len) ||
	    !identities_ok(identities) || registration_response == NULL || envelope_nonce == NULL ||
	    registration_record == NULL || export_key == NULL)
		OPAQUE_FAIL(OPAQUE_ERR_ARGUMENT);
	if (registration_record_len != s->sizes.registration_record ||
	    export_key_len != s->sizes.export_key)
		OPAQUE_FAIL(OPAQUE_ERR_BUFFER);

	opaque_reader r = opaque_reader_init(registration_response, registration_response_len);
	const uint8_t *evaluated_message = opaque_reader_take(&r, s->sizes.Noe);
	const uint8_t *server_public_key = opaque_reader_take(&r, s->sizes.Npk);
	if (server_public_key == NULL || !opaque_reader_done(&r))
		OPAQUE_FAIL(OPAQUE_ERR_LENGTH);
	OPAQUE_TRY(s->group->element_validate(server_public_key, s->sizes.Npk));
	OPAQUE_TRY(derive_randomized_password(s, config, password, password_len, state->blind,
	                                      evaluated_message, randomized_password));

	/* Store: record = client_public_key || masking_key || envelope_nonce || auth_tag */
	const size_t nh = s->sizes.Nh, npk = s->sizes.Npk;
	uint8_t *out_client_public_key = registration_record;
	uint8_t *out_masking_key = registration_record + npk;
	uint8_t *out_envelope_nonce = out_masking_key + nh;
	uint8_t *out_auth_tag = out_envelope_nonce + OPAQUE_NONCE_BYTES;
	opaque_slice masking_info = OPAQUE_SLICE_STR("MaskingKey");
	OPAQUE_TRY(expand(s, randomized_password, &masking_info, 1, out_masking_key, nh));
	OPAQUE_TRY(derive_envelope_keys(s, randomized_password, envelope_nonce, &keys));
	memcpy(out_client_public_key, keys.client_public_key, npk);
	memcpy(out_envelope_nonce, envelope_nonce, OPAQUE_NONCE_BYTES);
	envelope_auth_tag(s, keys.auth_key, envelope_nonce, server_public_key,
	                  server_identity_or(identities, server_public_key, npk),
	                  client_identity_or(identities, keys.client_public_key, npk),
	                  out_auth_tag);
	memcpy(export_key, keys.export_key, nh);
done:
	sodium_memzero(randomized_password, sizeof(randomized_password));
	sodium_memzero(&keys, sizeof(keys));
	if (state != NULL)
		sodium_memzero(state, sizeof(*state));
	if (err != OPAQUE_OK) {
		if (registration_record != NULL)
			sodium_memzero(registration_record, registration_record_len);
		if (export_key != NULL)
			sodium_memzero(export_key, export_key_len);
	}
	return err;
}

opaque_err opaque_client_registration_finish(
    const opaque_config *config, opaque_client_registration_state *state, const uint8_t *password,
    size_t password_len, const opaque_identities *identities, const uint8_t *registration_response,
    size_t registration_response_len, uint8_t *registration_record, size_t registration_record_len,
    uint8_t *export_key, size_t export_key_len)
{
	uint8_t envelope_nonce[OPAQUE_NONCE_BYTES];
	opaque_random_bytes(envelope_nonce, sizeof(envelope_nonce));
	return opaque_client_registration_finish_with_randomness(
	    config, state, password, password_len, identities, registration_response,
	    registration_response_len, envelope_nonce, registration_record, registration_record_len,
	    export_key, export_key_len);
}

opaque_err opaque_registration_record_validate(opaque_suite_id suite, const uint8_t *record,
                                               size_t record_len)
{
	const opaque_suite *s = opaque_suite_get(suite);
	if (s == NULL || record == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (record_len != s->sizes.registration_record)
		return OPAQUE_ERR_LENGTH;
	return s->group->element_validate(record, s->sizes.Npk);
}

opaque_err opaque_fake_record_create(opaque_suite_id suite, uint8_t *registration_record,
                                     size_t registration_record_len)
{
	const opaque_suite *s = opaque_suite_get(suite);
	if (s == NULL || registration_record == NULL)
		return OPAQUE_ERR_ARGUMENT;
	if (registration_record_len != s->sizes.registration_record)
		return OPAQUE_ERR_BUFFER;
	uint8_t fake_private_key[OPAQUE_MAX_SCALAR_BYTES];
	sodium_memzero(registration_record, registration_record_len);
	opaque_err err = opaque_generate_ake_key_pair(suite, fake_private_key, s->sizes.Nsk,
	                                              registration_record, s->sizes.Npk);
	if (err == OPAQUE_OK)
		opaque_random_bytes(registration_record + s->sizes.Npk, s->sizes.Nh);
	else
		sodium_memzero(registration_record, registration_record_len);
	sodium_memzero(fake_private_key, sizeof(fake_private_key));
	return err;
}

/* ---- Login ---- */

opaque_err opaque_client_login_start_with_randomness(
    const opaque_config *config, const uint8_t *password, size_t password_len, const uint8_t *blind,
    size_t blind_len, const uint8_t client_nonce[OPAQUE_NONCE_BYTES],
    const uint8_t client_keyshare_seed[OPAQUE_SEED_BYTES], opaque_client_login_state *state,
    uint8_t *ke1, size_t ke1_len)
{
	const opaque_suite *s;
	opaque_err err;
	if (state == NULL)
		return OPAQUE_ERR_ARGUMENT;
	sodium_memzero(state, sizeof(*state));
	OPAQUE_TRY(check_config(config, &s));
	if (!password_ok(password, password_len) || blind == NULL || client_nonce == NULL ||
	    client_keyshare_seed == NULL || ke1 == NULL)
		OPAQUE_FAIL(OPAQUE_ERR_ARGUMENT);
	if (ke1_len != s->sizes.ke1)
		OPAQUE_FAIL(OPAQUE_ERR_BUFFER);
	if (blind_len != s->sizes.Ns)
		OPAQUE_FAIL(OPAQUE_ERR_LENGTH);

	/* KE1 = blinded_message || client_nonce || client_public_keyshare */
	uint8_t *blinded_message = ke1;
	uint8_t *out_client_nonce = ke1 + s->sizes.Noe;
	uint8_t *client_public_keyshare = out_client_nonce + OPAQUE_NONCE_BYTES;
	OPAQUE_TRY(opaque_oprf_blind_internal(s, password, password_len, blind, blinded_message));
	memcpy(out_client_nonce, client_nonce, OPAQUE_NONCE_BYTES);
	OPAQUE_TRY(derive_dh_key_pair(s, client_keyshare_seed, state->client_secret,
	                              client_public_keyshare));
	state->suite = s->id;
	memcpy(state->blind, blind, blind_len);
	memcpy(state->ke1, ke1, ke1_len);
done:
	if (err != OPAQUE_OK) {
		sodium_memzero(state, sizeof(*state));
		if (ke1 != NULL)
			sodium_memzero(ke1, ke1_len);
	}
	return err;
}

opaque_err opaque_client_login_start(const opaque_config *config, const uint8_t *password,
                                     size_t password_len, opaque_client_login_state *state,
                                     uint8_t *ke1, size_t ke1_len)
{
	const opaque_suite *s;
	uint8_t blind[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t client_nonce[OPAQUE_NONCE_BYTES];
	uint8_t client_keyshare_seed[OPAQUE_SEED_BYTES];
	opaque_err err;
	OPAQUE_TRY(check_config(config, &s));
	OPAQUE_TRY(s->group->random_scalar(blind));
	opaque_random_bytes(client_nonce, sizeof(client_nonce));
	opaque_random_bytes(client_keyshare_seed, sizeof(client_keyshare_seed));
	err = opaque_client_login_start_with_randomness(config, password, password_len, blind,
	                                                s->sizes.Ns, client_nonce,
	                                                client_keyshare_seed, state, ke1, ke1_len);
done:
	sodium_memzero(blind, sizeof(blind));
	sodium_memzero(client_keyshare_seed, sizeof(client_keyshare_seed));
	return err;
}

opaque_err opaque_server_login_start_with_randomness(
    const opaque_config *config, const opaque_server_keys *keys,
    const opaque_identities *identities, const uint8_t *credential_identifier,
    size_t credential_identifier_len, const uint8_t *registration_record,
    size_t registration_record_len, const uint8_t *ke1, size_t ke1_len,
    const uint8_t masking_nonce[OPAQUE_NONCE_BYTES], const uint8_t server_nonce[OPAQUE_NONCE_BYTES],
    const uint8_t server_keyshare_seed[OPAQUE_SEED_BYTES], opaque_server_login_state *state,
    uint8_t *ke2, size_t ke2_len)
{
	const opaque_suite *s = NULL;
	uint8_t server_private_keyshare[OPAQUE_MAX_SCALAR_BYTES];
	uint8_t ikm[DH_MAX_BYTES];
	uint8_t client_mac[OPAQUE_MAX_HASH_BYTES];
	opaque_decoded blinded = {NULL, NULL}, keyshare = {NULL, NULL}, client_pk = {NULL, NULL};
	opaque_err err;
	if (state == NULL)
		return OPAQUE_ERR_ARGUMENT;
	sodium_memzero(state, sizeof(*state));
	OPAQUE_TRY(check_config(config, &s));
	if (keys == NULL || keys->suite != s->id || !identities_ok(identities) ||
	    credential_identifier == NULL ||
	    credential_identifier_len > OPAQUE_MAX_CREDENTIAL_IDENTIFIER_BYTES ||
	    registration_record == NULL || ke1 == NULL || masking_nonce == NULL ||
	    server_nonce == NULL || server_keyshare_seed == NULL || ke2 == NULL)
		OPAQUE_FAIL(OPAQUE_ERR_ARGUMENT);
	if (ke2_len != s->sizes.ke2)
		OPAQUE_FAIL(OPAQUE_ERR_BUFFER);
	const size_t noe = s->sizes.Noe, npk = s->sizes.Npk, nh = s->sizes.Nh;

	/* record = client_public_key || masking_key || envelope */
	opaque_reader rec = opaque_reader_init(registration_record, registration_record_len);
	const uint8_t *client_public_key = opaque_reader_take(&rec, npk);
	const uint8_t *masking_key = opaque_reader_take(&rec, nh);
	const uint8_t *envelope = opaque_reader_take(&rec, s->sizes.envelope);
	if (envelope == NULL || !opaque_reader_done(&rec))
		OPAQUE_FAIL(OPAQUE_ERR_LENGTH);
	/* KE1 = blinded_message || client_nonce || client_public_keyshare */
	opaque_reader r1 = opaque_reader_init(ke1, ke1_len);
	const uint8_t *blinded_message = opaque_reader_take(&r1, noe);
	const uint8_t *client_nonce = opaque_reader_take(&r1, OPAQUE_NONCE_BYTES);
	const uint8_t *client_public_keyshare = opaque_reader_take(&r1, npk);
	if (client_nonce == NULL || client_public_keyshare == NULL || !opaque_reader_done(&r1))
		OPAQUE_FAIL(OPAQUE_ERR_LENGTH);
	/* Each received element is decoded and validated here, once (a P-256 decoding costs a
	 * square root), and the decoded form goes to every multiplication that uses it. For
	 * ristretto255 libsodium decodes inside each multiplication, so the element is
	 * fully validated by the first one: client_public_keyshare by dh1, before it reaches
	 * keys->ake_dh (the token), which is told it has been validated. */
	OPAQUE_TRY(s->group->element_decode(blinded_message, &blinded));
	OPAQUE_TRY(s->group->element_decode(client_public_keyshare, &keyshare));
	OPAQUE_TRY(s->group->element_decode(client_public_key, &client_pk));

	/* credential_response = evaluated_message || masking_nonce || masked_response */
	uint8_t *evaluated_message = ke2;
	uint8_t *out_masking_nonce = ke2 + noe;
	uint8_t *masked_response = out_masking_nonce + OPAQUE_NONCE_BYTES;
	const size_t credential_response_len = noe + OPAQUE_NONCE_BYTES + npk + s->sizes.envelope;
	/* auth_response = server_nonce || server_public_keyshare || server_mac */
	uint8_t *out_server_nonce = ke2 + credential_response_len;
	uint8_t *server_public_keyshare = out_server_nonce + OPAQUE_NONCE_BYTES;
	uint8_t *server_mac = server_public_keyshare + npk;

	OPAQUE_TRY(server_evaluate(s, keys, credential_identifier, credential_identifier_len,
	                           &blinded, evaluated_message));
	memcpy(out_masking_nonce, masking_nonce, OPAQUE_NONCE_BYTES);
	uint8_t unmasked[MASKED_MAX_BYTES];
	memcpy(unmasked, keys->server_public_key, npk);
	memcpy(unmasked + npk, envelope, s->sizes.envelope);
	err =
	    apply_credential_response_pad(s, masking_key, masking_nonce, unmasked, masked_response);
	sodium_memzero(unmasked, sizeof(unmasked));
	if (err != OPAQUE_OK)
		goto done;

	memcpy(out_server_nonce, server_nonce, OPAQUE_NONCE_BYTES);
	OPAQUE_TRY(derive_dh_key_pair(s, server_keyshare_seed, server_private_keyshare,
	                              server_public_keyshare));
	/* dh1 = server_private_keyshare * client_public_keyshare
	 * dh2 = server_private_key * client_public_keyshare   (in keys: the token)
	 * dh3 = server_private_keyshare * client_public_key */
	OPAQUE_TRY(s->group->scalar_mult_decoded(server_private_keyshare, &keyshare, ikm));
	/* The software ake_dh (opaque_ake_dh) multiplies the same bytes: lend it the decoding. */
	s->group->lend(&keyshare);
	const opaque_err dh2 = keys->ake_dh(keys->ctx, client_public_keyshare, npk, ikm + noe, noe);
	s->group->lend(NULL);
	if (dh2 != OPAQUE_OK)
		OPAQUE_FAIL(OPAQUE_ERR_SERVER_KEYS);
	OPAQUE_TRY(
	    s->group->scalar_mult_decoded(server_private_keyshare, &client_pk, ikm + 2 * noe));

	preamble p;
	preamble_build(&p, config, client_identity_or(identities, client_public_key, npk),
	               OPAQUE_SLICE(ke1, ke1_len),
	               server_identity_or(identities, keys->server_public_key, npk),
	               OPAQUE_SLICE(ke2, credential_response_len),
	               OPAQUE_SLICE(out_server_nonce, OPAQUE_NONCE_BYTES),
	               OPAQUE_SLICE(server_public_keyshare, npk));
	OPAQUE_TRY(derive_3dh(s, &p, ikm, state->session_key, server_mac, client_mac));
	memcpy(state->expected_client_mac, client_mac, nh);
	state->suite = s->id;
done:
	sodium_memzero(server_private_keyshare, sizeof(server_private_keyshare));
	sodium_memzero(ikm, sizeof(ikm));
	sodium_memzero(client_mac, sizeof(client_mac));
	if (s != NULL) {
		s->group->decoded_free(&blinded);
		s->group->decoded_free(&keyshare);
		s->group->decoded_free(&client_pk);
	}
	if (err != OPAQUE_OK) {
		sodium_memzero(state, sizeof(*state));
		if (ke2 != NULL)
			sodium_memzero(ke2, ke2_len);
	}
	return err;
}

opaque_err
opaque_server_login_start(const opaque_config *config, const opaque_server_keys *keys,
                          const opaque_identities *identities, const uint8_t *credential_identifier,
                          size_t credential_identifier_len, const uint8_t *registration_record,
                          size_t registration_record_len, const uint8_t *ke1, size_t ke1_len,
                          opaque_server_login_state *state, uint8_t *ke2, size_t ke2_len)
{
	/* masking_nonce || server_nonce || server_keyshare_seed, drawn in one call (one
	 * getrandom system call with libsodium's default generator instead of three). */
	uint8_t random[2 * OPAQUE_NONCE_BYTES + OPAQUE_SEED_BYTES];
	opaque_random_bytes(random, sizeof(random));
	opaque_err err = opaque_server_login_start_with_randomness(
	    config, keys, identities, credential_identifier, credential_identifier_len,
	    registration_record, registration_record_len, ke1, ke1_len, random,
	    random + OPAQUE_NONCE_BYTES, random + 2 * OPAQUE_NONCE_BYTES, state, ke2, ke2_len);
	sodium_memzero(random, sizeof(random));
	return err;
}

opaque_err opaque_client_login_finish(const opaque_config *config, opaque_client_login_state *state,
                                      const uint8_t *password, size_t password_len,
                                      const opaque_identities *identities, const uint8_t *ke2,
                                      size_t ke2_len, uint8_t *ke3, size_t ke3_len,
                                      uint8_t *session_key, size_t session_key_len,
                                      uint8_t *export_key, size_t export_key_len)
{
	const opaque_suite *s = NULL;
	uint8_t randomized_password[OPAQUE_MAX_HASH_BYTES];
	uint8_t masking_key[OPAQUE_MAX_HASH_BYTES];
	uint8_t unmasked[MASKED_MAX_BYTES];
	uint8_t expected_auth_tag[OPAQUE_MAX_HASH_BYTES];
	uint8_t ikm[DH_MAX_BYTES];
	uint8_t expected_server_mac[OPAQUE_MAX_HASH_BYTES];
	envelope_keys keys;
	opaque_decoded server_keyshare = {NULL, NULL};
	opaque_err err;
	sodium_memzero(&keys, sizeof(keys));
	OPAQUE_TRY(check_config(config, &s));
	if (state == NULL || state->suite != s->id || !password_ok(password, password_len) ||
	    !identities_ok(identities) || ke2 == NULL || ke3 == NULL || session_key == NULL ||
	    export_key == NULL)
		OPAQUE_FAIL(OPAQUE_ERR_ARGUMENT);
	if (ke3_len != s->sizes.ke3 || session_key_len != s->sizes.session_key ||
	    export_key_len != s->sizes.export_key)
		OPAQUE_FAIL(OPAQUE_ERR_BUFFER);
	const size_t noe = s->sizes.Noe, npk = s->sizes.Npk, nh = s->sizes.Nh;

	/* KE2 = evaluated_message || masking_nonce || masked_response ||
	 *       server_nonce || server_public_keyshare || server_mac */
	opaque_reader r = opaque_reader_init(ke2, ke2_len);
	const uint8_t *evaluated_message = opaque_reader_take(&r, noe);
	const uint8_t *masking_nonce = opaque_reader_take(&r, OPAQUE_NONCE_BYTES);
	const uint8_t *masked_response = opaque_reader_take(&r, npk + s->sizes.envelope);
	const size_t credential_response_len = r.pos;
	const uint8_t *server_nonce = opaque_reader_take(&r, OPAQUE_NONCE_BYTES);
	const uint8_t *server_public_keyshare = opaque_reader_take(&r, npk);
	const uint8_t *server_mac = opaque_reader_take(&r, nh);
	if (evaluated_message == NULL || masking_nonce == NULL || masked_response == NULL ||
	    server_nonce == NULL || server_public_keyshare == NULL || server_mac == NULL ||
	    !opaque_reader_done(&r))
		OPAQUE_FAIL(OPAQUE_ERR_LENGTH);

	OPAQUE_TRY(derive_randomized_password(s, config, password, password_len, state->blind,
	                                      evaluated_message, randomized_password));
	opaque_slice masking_info = OPAQUE_SLICE_STR("MaskingKey");
	OPAQUE_TRY(expand(s, randomized_password, &masking_info, 1, masking_key, nh));
	OPAQUE_TRY(apply_credential_response_pad(s, masking_key, masking_nonce, masked_response,
	                                         unmasked));
	/* unmasked = server_public_key || envelope_nonce || auth_tag */
	const uint8_t *server_public_key = unmasked;
	const uint8_t *envelope_nonce = unmasked + npk;
	const uint8_t *auth_tag = envelope_nonce + OPAQUE_NONCE_BYTES;

	/* Recover: nothing unmasked is trusted until the envelope's auth_tag verifies. */
	OPAQUE_TRY(derive_envelope_keys(s, randomized_password, envelope_nonce, &keys));
	envelope_auth_tag(s, keys.auth_key, envelope_nonce, server_public_key,
	                  server_identity_or(identities, server_public_key, npk),
	                  client_identity_or(identities, keys.client_public_key, npk),
	                  expected_auth_tag);
	if (sodium_memcmp(expected_auth_tag, auth_tag, nh) != 0)
		OPAQUE_FAIL(OPAQUE_ERR_ENVELOPE_RECOVERY);

	/* 3DH, client side:
	 * dh1 = client_secret * server_public_keyshare
	 * dh2 = client_secret * server_public_key
	 * dh3 = client_private_key * server_public_keyshare */
	/* Each element is decoded and validated once (server_public_key by its only
	 * multiplication). */
	OPAQUE_TRY(s->group->element_decode(server_public_keyshare, &server_keyshare));
	OPAQUE_TRY(s->group->scalar_mult_decoded(state->client_secret, &server_keyshare, ikm));
	OPAQUE_TRY(s->group->scalar_mult(state->client_secret, server_public_key, ikm + noe));
	OPAQUE_TRY(s->group->scalar_mult_decoded(keys.client_private_key, &server_keyshare,
	                                         ikm + 2 * noe));

	preamble p;
	preamble_build(&p, config, client_identity_or(identities, keys.client_public_key, npk),
	               OPAQUE_SLICE(state->ke1, s->sizes.ke1),
	               server_identity_or(identities, server_public_key, npk),
	               OPAQUE_SLICE(ke2, credential_response_len),
	               OPAQUE_SLICE(server_nonce, OPAQUE_NONCE_BYTES),
	               OPAQUE_SLICE(server_public_keyshare, npk));
	OPAQUE_TRY(derive_3dh(s, &p, ikm, session_key, expected_server_mac, ke3));
	if (sodium_memcmp(expected_server_mac, server_mac, nh) != 0)
		OPAQUE_FAIL(OPAQUE_ERR_SERVER_AUTH);
	memcpy(export_key, keys.export_key, nh);
done:
	sodium_memzero(randomized_password, sizeof(randomized_password));
	sodium_memzero(masking_key, sizeof(masking_key));
	sodium_memzero(unmasked, sizeof(unmasked));
	sodium_memzero(expected_auth_tag, sizeof(expected_auth_tag));
	sodium_memzero(ikm, sizeof(ikm));
	sodium_memzero(expected_server_mac, sizeof(expected_server_mac));
	sodium_memzero(&keys, sizeof(keys));
	if (s != NULL)
		s->group->decoded_free(&server_keyshare);
	if (state != NULL)
		sodium_memzero(state, sizeof(*state));
	if (err != OPAQUE_OK) {
		if (ke3 != NULL)
			sodium_memzero(ke3, ke3_len);
		if (session_key != NULL)
			sodium_memzero(session_key, session_key_len);
		if (export_key != NULL)
			sodium_memzero(export_key, export_key_len);
	}
	return err;
}

opaque_err opaque_server_login_finish(opaque_server_login_state *state, const uint8_t *ke3,
                                      size_t ke3_len, uint8_t *session_key, size_t session_key_len)
{
	const opaque_suite *s = state ? opaque_suite_get(state->suite) : NULL;
	opaque_err err;
	if (s == NULL || ke3 == NULL || session_key == NULL)
		OPAQUE_FAIL(OPAQUE_ERR_ARGUMENT);
	if (session_key_len != s->sizes.session_key)
		OPAQUE_FAIL(OPAQUE_ERR_BUFFER);
	if (ke3_len != s->sizes.ke3)
		OPAQUE_FAIL(OPAQUE_ERR_LENGTH);
	if (sodium_memcmp(state->expected_client_mac, ke3, s->sizes.Nm) != 0)
		OPAQUE_FAIL(OPAQUE_ERR_CLIENT_AUTH);
	memcpy(session_key, state->session_key, s->sizes.Nx);
	err = OPAQUE_OK;
done:
	if (state != NULL)
		sodium_memzero(state, sizeof(*state));
	return err;
}

void opaque_client_registration_state_wipe(opaque_client_registration_state *state)
{
	if (state != NULL)
		sodium_memzero(state, sizeof(*state));
}

void opaque_client_login_state_wipe(opaque_client_login_state *state)
{
	if (state != NULL)
		sodium_memzero(state, sizeof(*state));
}

void opaque_server_login_state_wipe(opaque_server_login_state *state)
{
	if (state != NULL)
		sodium_memzero(state, sizeof(*state));
}
