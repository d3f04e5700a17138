/*
 * wire.h - the bounds-checked reader and writer every wire format in bkv goes through:
 * OPAQUE messages, tickets, sealed records, the backup format. A read past the end returns
 * NULL instead of touching memory; a write past the end sets overflow and writes nothing.
 * Header-only, no allocation.
 */
#ifndef OPAQUE_WIRE_H
#define OPAQUE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- Reader over received bytes ---- */

typedef struct opaque_reader {
	const uint8_t *data;
	size_t len;
	size_t pos;
} opaque_reader;

static inline opaque_reader opaque_reader_init(const uint8_t *data, size_t len)
{
	opaque_reader r = {data, len, 0};
	return r;
}

/* Returns a pointer to the next n bytes, or NULL (and consumes nothing) if fewer remain. */
static inline const uint8_t *opaque_reader_take(opaque_reader *r, size_t n)
{
	if (r->data == NULL || n > r->len - r->pos)
		return NULL;
	const uint8_t *p = r->data + r->pos;
	r->pos += n;
	return p;
}

static inline bool opaque_reader_done(const opaque_reader *r)
{
	return r->pos == r->len;
}

/* ---- Writer into an output buffer ---- */

typedef struct opaque_writer {
	uint8_t *data;
	size_t cap;
	size_t pos;
	bool overflow;
} opaque_writer;

static inline opaque_writer opaque_writer_init(uint8_t *data, size_t cap)
{
	opaque_writer w = {data, cap, 0, false};
	return w;
}

static inline void opaque_writer_put(opaque_writer *w, const uint8_t *p, size_t n)
{
	if (w->overflow || n > w->cap - w->pos) {
		w->overflow = true;
		return;
	}
	if (n > 0)
		memcpy(w->data + w->pos, p, n);
	w->pos += n;
}

/* Big-endian integers of n bytes (n <= 8). */
static inline bool opaque_reader_uint(opaque_reader *r, size_t n, uint64_t *out)
{
	const uint8_t *p = n <= 8 ? opaque_reader_take(r, n) : NULL;
	if (p == NULL)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	*out = v;
	return true;
}

static inline void opaque_writer_uint(opaque_writer *w, size_t n, uint64_t v)
{
	uint8_t buf[8];
	if (n > 8) {
		w->overflow = true;
		return;
	}
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	opaque_writer_put(w, buf, n);
}

#endif
