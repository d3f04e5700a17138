/*
 * ticket.c - sealing and opening recovery tickets (format in ticket.h). The plaintext is
 * written and parsed with the bounds-checked wire helpers and wiped after use.
 */
#include <sodium.h>

#include "opaque/wire.h"
#include "ticket.h"

#define TICKET_FORMAT        1
#define TICKET_AAD_LABEL     "bkv-v1 ticket"
#define TICKET_AAD_MAX       (sizeof(TICKET_AAD_LABEL) - 1 + 2 + BKV_ACCOUNT_ID_MAX)
#define TICKET_PLAINTEXT_MAX (BKV_TICKET_MAX_BYTES - BKV_TOKEN_IV_BYTES - BKV_TOKEN_TAG_BYTES)

static bool build_aad(bkv_account account, uint8_t aad[TICKET_AAD_MAX], size_t *len)
{
	if (account.id == NULL || account.len == 0 || account.len > BKV_ACCOUNT_ID_MAX)
		return false;
	opaque_writer w = opaque_writer_init(aad, TICKET_AAD_MAX);
	opaque_writer_put(&w, (const uint8_t *)TICKET_AAD_LABEL, sizeof(TICKET_AAD_LABEL) - 1);
	opaque_writer_uint(&w, 2, account.len);
	opaque_writer_put(&w, account.id, account.len);
	*len = w.pos;
	return !w.overflow;
}

bkv_token_err bkv_ticket_seal(bkv_token *token, bkv_account account, const bkv_ticket *ticket,
                              uint8_t *out, size_t out_cap, size_t *out_len)
{
	const opaque_sizes *sizes = opaque_suite_sizes(ticket->suite);
	uint8_t aad[TICKET_AAD_MAX];
	size_t aad_len;
	if (sizes == NULL || !build_aad(account, aad, &aad_len) || out_cap < BKV_TICKET_MAX_BYTES)
		return BKV_TOKEN_ERR_ARGUMENT;
	uint8_t plaintext[TICKET_PLAINTEXT_MAX];
	opaque_writer w = opaque_writer_init(plaintext, sizeof(plaintext));
	opaque_writer_uint(&w, 1, TICKET_FORMAT);
	opaque_writer_uint(&w, 1, (uint64_t)ticket->suite);
	opaque_writer_uint(&w, 8, ticket->record_version);
	opaque_writer_uint(&w, 8, ticket->guess_seq);
	opaque_writer_uint(&w, 8, (uint64_t)ticket->expires_at);
	opaque_writer_put(&w, ticket->state.expected_client_mac, sizes->Nh);
	opaque_writer_put(&w, ticket->state.session_key, sizes->Nh);
	bkv_token_err err = BKV_TOKEN_ERR_ARGUMENT;
	if (!w.overflow) {
		randombytes_buf(out, BKV_TOKEN_IV_BYTES);
		err =
		    bkv_token_encrypt(token, BKV_TOKEN_KEY_TICKET, 1, out, aad, aad_len, plaintext,
		                      w.pos, out + BKV_TOKEN_IV_BYTES, w.pos + BKV_TOKEN_TAG_BYTES);
		*out_len = BKV_TOKEN_IV_BYTES + w.pos + BKV_TOKEN_TAG_BYTES;
	}
	sodium_memzero(plaintext, sizeof(plaintext));
	return err;
}

bool bkv_ticket_parse(const uint8_t *plaintext, size_t len, bkv_ticket *ticket)
{
	opaque_reader r = opaque_reader_init(plaintext, len);
	uint64_t format, suite, record_version, guess_seq, expires_at;
	if (!opaque_reader_uint(&r, 1, &format) || format != TICKET_FORMAT ||
	    !opaque_reader_uint(&r, 1, &suite))
		return false;
	const opaque_sizes *sizes = opaque_suite_sizes((opaque_suite_id)suite);
	if (sizes == NULL || !opaque_reader_uint(&r, 8, &record_version) ||
	    !opaque_reader_uint(&r, 8, &guess_seq) || !opaque_reader_uint(&r, 8, &expires_at))
		return false;
	const uint8_t *mac = opaque_reader_take(&r, sizes->Nh);
	const uint8_t *session_key = opaque_reader_take(&r, sizes->Nh);
	if (mac == NULL || session_key == NULL || !opaque_reader_done(&r))
		return false;
	ticket->suite = (opaque_suite_id)suite;
	ticket->record_version = record_version;
	ticket->guess_seq = guess_seq;
	ticket->expires_at = (int64_t)expires_at;
	ticket->state.suite = (opaque_suite_id)suite;
	memcpy(ticket->state.expected_client_mac, mac, sizes->Nh);
	memcpy(ticket->state.session_key, session_key, sizes->Nh);
	return true;
}

bkv_token_err bkv_ticket_open(bkv_token *token, bkv_account account, const uint8_t *in,
                              size_t in_len, bkv_ticket *ticket)
{
	uint8_t aad[TICKET_AAD_MAX];
	size_t aad_len;
	memset(ticket, 0, sizeof(*ticket));
	if (in == NULL || !build_aad(account, aad, &aad_len))
		return BKV_TOKEN_ERR_AUTH;
	if (in_len <= BKV_TOKEN_IV_BYTES + BKV_TOKEN_TAG_BYTES || in_len > BKV_TICKET_MAX_BYTES)
		return BKV_TOKEN_ERR_AUTH;
	uint8_t plaintext[TICKET_PLAINTEXT_MAX];
	const size_t plaintext_len = in_len - BKV_TOKEN_IV_BYTES - BKV_TOKEN_TAG_BYTES;
	bkv_token_err err = bkv_token_decrypt(token, BKV_TOKEN_KEY_TICKET, 1, in, aad, aad_len,
	                                      in + BKV_TOKEN_IV_BYTES, in_len - BKV_TOKEN_IV_BYTES,
	                                      plaintext, plaintext_len);
	if (err == BKV_TOKEN_OK && !bkv_ticket_parse(plaintext, plaintext_len, ticket))
		err = BKV_TOKEN_ERR_AUTH;
	sodium_memzero(plaintext, sizeof(plaintext));
	if (err != BKV_TOKEN_OK)
		sodium_memzero(ticket, sizeof(*ticket));
	return err;
}
