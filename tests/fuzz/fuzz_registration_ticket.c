/*
 * fuzz_registration_ticket.c - the registration ticket's plaintext decoder,
 * bkv_registration_ticket_parse (vault/handlers/ticket.h): what RegisterFinish trusts once
 * the token has opened a ticket. The whole input is the plaintext.
 *
 * Invariants, from the format in ticket.h:
 *   plaintext = format (1) = 1 || suite (1) || registration_id (16) || expires_at (8)
 *   - it accepts exactly the well-formed plaintexts (a known suite, nothing after
 *     expires_at), decided here independently of the code under test;
 *   - what it accepts it hands back field for field (big-endian expires_at);
 *   - it never reads outside the input (an exact-size heap copy, for ASan).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "opaque/opaque.h"
#include "ticket.h"

#define FORMAT     1
#define WELL_SIZED (1 + 1 + BKV_REGISTRATION_ID_BYTES + 8)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (size_t i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *in = malloc(size ? size : 1);
	if (in == NULL)
		abort();
	if (size > 0)
		memcpy(in, data, size);
	bkv_registration_ticket t;
	memset(&t, 0xA5, sizeof(t));
	const bool accepted = bkv_registration_ticket_parse(in, size, &t);
	const bool well_formed =
	    size == WELL_SIZED && in[0] == FORMAT &&
	    (in[1] == OPAQUE_SUITE_P256_SHA256 || in[1] == OPAQUE_SUITE_RISTRETTO255_SHA512);
	if (accepted != well_formed)
		abort();
	if (accepted && ((int)t.suite != in[1] ||
	                 memcmp(t.registration_id, in + 2, BKV_REGISTRATION_ID_BYTES) != 0 ||
	                 (uint64_t)t.expires_at != be64(in + 2 + BKV_REGISTRATION_ID_BYTES)))
		abort();
	free(in);
	return 0;
}
