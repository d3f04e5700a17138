/*
 * internal.h - helpers shared by libbkv's source files. Not installed.
 */
#ifndef BKV_CLIENT_INTERNAL_H
#define BKV_CLIENT_INTERNAL_H

#include "bkv.h"

/* Sets error (if not NULL) and returns status. */
bkv_status bkvi_fail(bkv_error *error, bkv_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
