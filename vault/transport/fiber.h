/*
 * fiber.h - a worker's requests in flight at once, on one thread.
 *
 * A fiber is a stack of its own on which one request runs. It runs on the event loop's
 * thread until it returns or yields; a yield (bkv_fibers_yield) goes back to whoever ran or
 * resumed it, and the loop goes on with other requests. Nothing runs in parallel: a fiber
 * is only ever switched out where it yields, so code between two yields sees no other
 * fiber's changes. The only place that yields is a write waiting for its group commit
 * (storage.h, bkv_storage_set_waiter): the handlers stay plain sequential code.
 *
 * The stacks are mapped once, with a guard page below each (an overflow faults, it never
 * runs into the next stack), and reused: a fiber that returns parks and takes the next
 * request. A yielded fiber holds its request's secrets on its stack exactly as the loop's
 * stack would; the handlers wipe them as before.
 */
#ifndef BKV_FIBER_H
#define BKV_FIBER_H

#include <stdbool.h>
#include <stdint.h>

#define BKV_FIBERS_MAX 64

typedef struct bkv_fibers bkv_fibers;
typedef void (*bkv_fiber_fn)(void *arg);

/* count fibers (1..BKV_FIBERS_MAX) of stack_bytes each (rounded up to pages). NULL if the
 * stacks cannot be mapped. */
bkv_fibers *bkv_fibers_new(uint32_t count, size_t stack_bytes);
/* Only when none is busy (bkv_fibers_busy() == 0). */
void bkv_fibers_free(bkv_fibers *fibers);

/* Runs fn(arg) on a free fiber until it returns or yields. false (fn not run) if every
 * fiber is busy, or when called from inside a fiber. */
bool bkv_fibers_run(bkv_fibers *fibers, bkv_fiber_fn fn, void *arg);
/* Whether the caller runs on one of these fibers (and so may yield). */
bool bkv_fibers_inside(const bkv_fibers *fibers);
/* From inside a fiber: switches back to whoever ran or resumed it; returns when resumed.
 * ready (or NULL) tells bkv_fibers_resume whether resuming it now is worth it. */
void bkv_fibers_yield(bkv_fibers *fibers, bool (*ready)(const void *arg), const void *arg);
/* Resumes, once and in turn, each fiber that yielded and whose ready() is true (or has
 * none), or every one with all; each rechecks what it waits for and yields again or goes
 * on. Not from inside a fiber. */
void bkv_fibers_resume(bkv_fibers *fibers, bool all);
/* Fibers running or yielded. */
uint32_t bkv_fibers_busy(const bkv_fibers *fibers);

/* bkv_fibers_inside and bkv_fibers_yield in the shape of a storage waiter's callbacks
 * (storage.h, bkv_storage_waiter), whose argument is the bkv_fibers. */
bool bkv_fibers_waiter_can_yield(void *fibers);
void bkv_fibers_waiter_yield(void *fibers, bool (*ready)(const void *arg), const void *arg);

#endif
