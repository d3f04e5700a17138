/*
 * ticket.c - sealing and opening recovery and registration tickets (formats in ticket.h).
 * Plaintexts are written and parsed with the bounds-checked wire helpers and wiped after
 * use.
 */
#include <sodium.h>

#include "opaque/wire.h"
#include "ticket.h"

#define TICKET_FORMAT              2
#define REGISTRATION_TICKET_FORMAT 1
#define TICKET_AAD_LABEL           "bkv-v1 ticket"
#define REGISTRATION_AAD_LABEL     "bkv-v1 registration ticket"
#define TICKET_AAD_MAX             (sizeof(REGISTRATION_AAD_LABEL) - 1 + 2 + BKV_ACCOUNT_ID_MAX)
#define TICKET_PLAINTEXT_MAX       BKV_TICKET_PLAINTEXT_MAX

static bool build_aad(const char *label, bkv_account account, uint8_t aad[TICKET_AAD_MAX],
                      size_t *len)
{
	if (account.id == NULL || account.len == 0 || account.len > BKV_ACCOUNT_ID_MAX)
		return false;
	opaque_writer w = opaque_writer_init(aad, TICKET_AAD_MAX);
	opaque_writer_put(&w, (const uint8_t *)label, strlen(label));
	opaque_writer_uint(&w, 2, account.len);
	opaque_writer_put(&w, account.id, account.len);
	*len = w.pos;
	return !w.overflow;
}

/* out = a box of plaintext under the ticket key, bound to label and account. */
static bkv_token_err seal(bkv_token *token, const char *label, bkv_account account,
                          const uint8_t *plaintext, size_t plaintext_len, uint8_t *out,
                          size_t out_cap, size_t *out_len)
{
	uint8_t aad[TICKET_AAD_MAX];
	size_t aad_len;
	if (!build_aad(label, account, aad, &aad_len))
		return BKV_TOKEN_ERR_ARGUMENT;
	return bkv_token_seal_box(token, BKV_TOKEN_KEY_TICKET, 1, aad, aad_len, plaintext,
	                          plaintext_len, out, out_cap, out_len);
}

/* Opens into plaintext (TICKET_PLAINTEXT_MAX bytes); BKV_TOKEN_ERR_AUTH for anything that
 * is not a ticket of this kind for this account. */
static bkv_token_err open_sealed(bkv_token *token, const char *label, bkv_account account,
                                 const uint8_t *in, size_t in_len, size_t max_len,
                                 uint8_t plaintext[TICKET_PLAINTEXT_MAX], size_t *plaintext_len)
{
	uint8_t aad[TICKET_AAD_MAX];
	size_t aad_len;
	if (in == NULL || in_len > max_len || !build_aad(label, account, aad, &aad_len))
		return BKV_TOKEN_ERR_AUTH;
	bkv_token_err err =
	    bkv_token_open_box(token, BKV_TOKEN_KEY_TICKET, 1, aad, aad_len, in, in_len, plaintext,
	                       TICKET_PLAINTEXT_MAX, plaintext_len);
	/* A box too long for any ticket was not made here. */
	return err == BKV_TOKEN_ERR_ARGUMENT ? BKV_TOKEN_ERR_AUTH : err;
}

bkv_token_err bkv_ticket_seal(bkv_token *token, bkv_account account, const bkv_ticket *ticket,
                              uint8_t *out, size_t out_cap, size_t *out_len)
{
	const opaque_sizes *sizes = opaque_suite_sizes(ticket->suite);
	if (sizes == NULL || (ticket->registration_id_len != 0 &&
	                      ticket->registration_id_len != BKV_REGISTRATION_ID_BYTES))
		return BKV_TOKEN_ERR_ARGUMENT;
	uint8_t plaintext[TICKET_PLAINTEXT_MAX];
	opaque_writer w = opaque_writer_init(plaintext, sizeof(plaintext));
	opaque_writer_uint(&w, 1, TICKET_FORMAT);
	opaque_writer_uint(&w, 1, (uint64_t)ticket->suite);
	opaque_writer_uint(&w, 8, ticket->record_version);
	opaque_writer_uint(&w, 8, ticket->guess_seq);
	opaque_writer_uint(&w, 8, (uint64_t)ticket->expires_at);
	opaque_writer_uint(&w, 1, ticket->registration_id_len);
	opaque_writer_put(&w, ticket->registration_id, ticket->registration_id_len);
	opaque_writer_put(&w, ticket->state.expected_client_mac, sizes->Nh);
	opaque_writer_put(&w, ticket->state.session_key, sizes->Nh);
	bkv_token_err err = w.overflow ? BKV_TOKEN_ERR_ARGUMENT
	                               : seal(token, TICKET_AAD_LABEL, account, plaintext, w.pos,
	                                      out, out_cap, out_len);
	sodium_memzero(plaintext, sizeof(plaintext));
	return err;
}

bool bkv_ticket_parse(const uint8_t *plaintext, size_t len, bkv_ticket *ticket)
{
	opaque_reader r = opaque_reader_init(plaintext, len);
	uint64_t format, suite, record_version, guess_seq, expires_at, reg_len;
	if (!opaque_reader_uint(&r, 1, &format) || format != TICKET_FORMAT ||
	    !opaque_reader_uint(&r, 1, &suite))
		return false;
	const opaque_sizes *sizes = opaque_suite_sizes((opaque_suite_id)suite);
	if (sizes == NULL || !opaque_reader_uint(&r, 8, &record_version) ||
	    !opaque_reader_uint(&r, 8, &guess_seq) || !opaque_reader_uint(&r, 8, &expires_at) ||
	    !opaque_reader_uint(&r, 1, &reg_len) ||
	    (reg_len != 0 && reg_len != BKV_REGISTRATION_ID_BYTES))
		return false;
	const uint8_t *reg_id = opaque_reader_take(&r, (size_t)reg_len);
	const uint8_t *mac = opaque_reader_take(&r, sizes->Nh);
	const uint8_t *session_key = opaque_reader_take(&r, sizes->Nh);
	if ((reg_len > 0 && reg_id == NULL) || mac == NULL || session_key == NULL ||
	    !opaque_reader_done(&r))
		return false;
	ticket->suite = (opaque_suite_id)suite;
	ticket->record_version = record_version;
	ticket->guess_seq = guess_seq;
	ticket->expires_at = (int64_t)expires_at;
	ticket->registration_id_len = (size_t)reg_len;
	if (reg_len > 0)
		memcpy(ticket->registration_id, reg_id, (size_t)reg_len);
	ticket->state.suite = (opaque_suite_id)suite;
	memcpy(ticket->state.expected_client_mac, mac, sizes->Nh);
	memcpy(ticket->state.session_key, session_key, sizes->Nh);
	return true;
}

bkv_token_err bkv_ticket_open(bkv_token *token, bkv_account account, const uint8_t *in,
                              size_t in_len, bkv_ticket *ticket)
{
	uint8_t plaintext[TICKET_PLAINTEXT_MAX];
	size_t plaintext_len = 0;
	memset(ticket, 0, sizeof(*ticket));
	bkv_token_err err = open_sealed(token, TICKET_AAD_LABEL, account, in, in_len,
	                                BKV_TICKET_MAX_BYTES, plaintext, &plaintext_len);
	if (err == BKV_TOKEN_OK && !bkv_ticket_parse(plaintext, plaintext_len, ticket))
		err = BKV_TOKEN_ERR_AUTH;
	sodium_memzero(plaintext, sizeof(plaintext));
	if (err != BKV_TOKEN_OK)
		sodium_memzero(ticket, sizeof(*ticket));
	return err;
}

bkv_token_err bkv_registration_ticket_seal(bkv_token *token, bkv_account account,
                                           const bkv_registration_ticket *ticket, uint8_t *out,
                                           size_t out_cap, size_t *out_len)
{
	if (opaque_suite_sizes(ticket->suite) == NULL)
		return BKV_TOKEN_ERR_ARGUMENT;
	uint8_t plaintext[BKV_REGISTRATION_TICKET_PLAINTEXT];
	opaque_writer w = opaque_writer_init(plaintext, sizeof(plaintext));
	opaque_writer_uint(&w, 1, REGISTRATION_TICKET_FORMAT);
	opaque_writer_uint(&w, 1, (uint64_t)ticket->suite);
	opaque_writer_put(&w, ticket->registration_id, BKV_REGISTRATION_ID_BYTES);
	opaque_writer_uint(&w, 8, (uint64_t)ticket->expires_at);
	bkv_token_err err = w.overflow ? BKV_TOKEN_ERR_ARGUMENT
	                               : seal(token, REGISTRATION_AAD_LABEL, account, plaintext,
	                                      w.pos, out, out_cap, out_len);
	sodium_memzero(plaintext, sizeof(plaintext));
	return err;
}

bool bkv_registration_ticket_parse(const uint8_t *plaintext, size_t len,
                                   bkv_registration_ticket *ticket)
{
	opaque_reader r = opaque_reader_init(plaintext, len);
	uint64_t format, suite, expires_at;
	if (!opaque_reader_uint(&r, 1, &format) || format != REGISTRATION_TICKET_FORMAT ||
	    !opaque_reader_uint(&r, 1, &suite) ||
	    opaque_suite_sizes((opaque_suite_id)suite) == NULL)
		return false;
	const uint8_t *reg_id = opaque_reader_take(&r, BKV_REGISTRATION_ID_BYTES);
	if (reg_id == NULL || !opaque_reader_uint(&r, 8, &expires_at) || !opaque_reader_done(&r))
		return false;
	ticket->suite = (opaque_suite_id)suite;
	memcpy(ticket->registration_id, reg_id, BKV_REGISTRATION_ID_BYTES);
	ticket->expires_at = (int64_t)expires_at;
	return true;
}

bkv_token_err bkv_registration_ticket_open(bkv_token *token, bkv_account account, const uint8_t *in,
                                           size_t in_len, bkv_registration_ticket *ticket)
{
	uint8_t plaintext[TICKET_PLAINTEXT_MAX];
	size_t plaintext_len = 0;
	memset(ticket, 0, sizeof(*ticket));
	bkv_token_err err = open_sealed(token, REGISTRATION_AAD_LABEL, account, in, in_len,
	                                BKV_REGISTRATION_TICKET_BYTES, plaintext, &plaintext_len);
	if (err == BKV_TOKEN_OK && !bkv_registration_ticket_parse(plaintext, plaintext_len, ticket))
		err = BKV_TOKEN_ERR_AUTH;
	sodium_memzero(plaintext, sizeof(plaintext));
	if (err != BKV_TOKEN_OK)
		sodium_memzero(ticket, sizeof(*ticket));
	return err;
}
