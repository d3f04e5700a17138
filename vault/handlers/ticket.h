/*
 * ticket.h - the stateless tickets, sealed with the token's ticket key so any worker or
 * replica can finish what another started.
 *
 * The recovery ticket: the server state between RecoverStart and RecoverFinish.
 *   ticket = a box (token.h) of plaintext under the ticket key bkv-ticket-1
 *   plaintext = format (1) = 2 || suite (1) || record_version (8) || guess_seq (8) ||
 *               expires_at (8, unix seconds) || len(registration_id) (1) ||
 *               registration_id (0 or 16) || expected_client_mac (Nh) || session_key (Nh)
 *   AAD = "bkv-v1 ticket" || I2OSP(len(account_id), 2) || account_id
 *
 * The registration ticket: which fresh OPRF key RegisterStart evaluated under.
 *   plaintext = format (1) = 1 || suite (1) || registration_id (16) || expires_at (8)
 *   AAD = "bkv-v1 registration ticket" || I2OSP(len(account_id), 2) || account_id
 *
 * Binding the account id through the AAD makes a ticket from another account fail to open
 * exactly like a forged one; the distinct labels keep one kind from passing as the other.
 */
#ifndef BKV_TICKET_H
#define BKV_TICKET_H

#include "handlers.h"

typedef struct bkv_ticket {
	opaque_suite_id suite;
	uint64_t record_version;
	uint64_t guess_seq;
	int64_t expires_at;
	uint8_t registration_id[BKV_REGISTRATION_ID_BYTES];
	size_t registration_id_len; /* 0 for records from before registration ids */
	opaque_server_login_state state;
} bkv_ticket;

typedef struct bkv_registration_ticket {
	opaque_suite_id suite;
	uint8_t registration_id[BKV_REGISTRATION_ID_BYTES];
	int64_t expires_at;
} bkv_registration_ticket;

/* out_len receives the ticket's length (at most BKV_TICKET_MAX_BYTES). */
bkv_token_err bkv_ticket_seal(bkv_token *token, bkv_account account, const bkv_ticket *ticket,
                              uint8_t *out, size_t out_cap, size_t *out_len);

/* BKV_TOKEN_ERR_AUTH for anything forged, truncated, malformed or for another account;
 * BKV_TOKEN_ERR_DEVICE if the token failed. Wipes *ticket on failure. */
bkv_token_err bkv_ticket_open(bkv_token *token, bkv_account account, const uint8_t *in,
                              size_t in_len, bkv_ticket *ticket);

/* Parses a decrypted ticket plaintext (exposed for the fuzz target). */
bool bkv_ticket_parse(const uint8_t *plaintext, size_t len, bkv_ticket *ticket);

/* The same for registration tickets (at most BKV_REGISTRATION_TICKET_BYTES). */
bkv_token_err bkv_registration_ticket_seal(bkv_token *token, bkv_account account,
                                           const bkv_registration_ticket *ticket, uint8_t *out,
                                           size_t out_cap, size_t *out_len);
bkv_token_err bkv_registration_ticket_open(bkv_token *token, bkv_account account, const uint8_t *in,
                                           size_t in_len, bkv_registration_ticket *ticket);
bool bkv_registration_ticket_parse(const uint8_t *plaintext, size_t len,
                                   bkv_registration_ticket *ticket);

#endif
