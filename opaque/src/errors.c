/*
 * errors.c - one static message per opaque_err, written for the person reading a log.
 */
#include "opaque/opaque.h"

const char *opaque_strerror(opaque_err err)
{
	switch (err) {
	case OPAQUE_OK:
		return "success";
	case OPAQUE_ERR_ARGUMENT:
		return "invalid argument (NULL pointer, unknown suite or bad parameter)";
	case OPAQUE_ERR_BUFFER:
		return "output buffer length does not match the suite's size";
	case OPAQUE_ERR_LENGTH:
		return "message or element has the wrong length for the suite";
	case OPAQUE_ERR_ELEMENT_IDENTITY:
		return "group element is the identity";
	case OPAQUE_ERR_ELEMENT_NOT_ON_CURVE:
		return "group element is not a point on the curve";
	case OPAQUE_ERR_ELEMENT_NONCANONICAL:
		return "group element encoding is not canonical";
	case OPAQUE_ERR_SCALAR:
		return "scalar is zero or not reduced modulo the group order";
	case OPAQUE_ERR_INVALID_INPUT:
		return "OPRF input maps to the identity element";
	case OPAQUE_ERR_DERIVE_KEY_PAIR:
		return "key pair derivation failed";
	case OPAQUE_ERR_ENVELOPE_RECOVERY:
		return "envelope recovery failed: wrong password or corrupted record";
	case OPAQUE_ERR_SERVER_AUTH:
		return "server authentication failed: KE2 server_mac does not verify";
	case OPAQUE_ERR_CLIENT_AUTH:
		return "client authentication failed: KE3 client_mac does not verify";
	case OPAQUE_ERR_KSF:
		return "key-stretching function failed (bad parameters or out of memory)";
	case OPAQUE_ERR_SERVER_KEYS:
		return "server key operation failed";
	case OPAQUE_ERR_CRYPTO:
		return "cryptographic library failure";
	}
	return "unknown error";
}
