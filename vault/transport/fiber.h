/*
 * fiber.h - a worker's requests in flight at once, on one thread.
 *
 * A fiber is a stack of its own on which one request runs. It runs on the event loop's
 * thread until it returns or yields; a yield (bkv_fibers_yield) goes back to whoever ran or
 * resumed it, and the loop goes on with other requests. Nothing runs in parallel: a fiber
 * is only ever switched out where it yields, so code between two yields sees no other
 * fiber's changes. The only places that yield are in storage (storage.h,
 * bkv_storage_set_waiter): a write waiting for its group commit, and a PostgreSQL read
 * waiting for the server's answer. The handlers stay plain sequential code.
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

/* Waiting on a descriptor. The loop sets watch once; a fiber that yields on fd calls
 * watch(arg, fd) first, and the loop resumes it with bkv_fibers_resume_fd once fd is
 * readable (one descriptor at a time: the loop watches the last one asked for). */
void bkv_fibers_set_watch(bkv_fibers *fibers, void (*watch)(void *arg, int fd), void *arg);
/* From inside a fiber: yields until the loop resumes it with bkv_fibers_resume_fd(fd), or
 * with bkv_fibers_resume(all) (its tick); a pass over ready() fibers leaves it waiting. */
void bkv_fibers_yield_fd(bkv_fibers *fibers, int fd);
/* Resumes, once, each fiber that yielded on fd. Not from inside a fiber. */
void bkv_fibers_resume_fd(bkv_fibers *fibers, int fd);
/* From inside a fiber: what some yielded fiber's ready() reads has changed (a connection it
 * waits for is free). The loop, once back, runs a pass over the ready() fibers while
 * bkv_fibers_kicked (bkv_fibers_resume clears it). */
void bkv_fibers_kick(bkv_fibers *fibers);
bool bkv_fibers_kicked(const bkv_fibers *fibers);

/* bkv_fibers_inside, bkv_fibers_yield, bkv_fibers_yield_fd and bkv_fibers_kick in the shape
 * of a storage waiter's callbacks (storage.h, bkv_storage_waiter), whose argument is the
 * bkv_fibers; BKV_FIBERS_WAITER(fibers) is such a waiter (where storage.h is included). */
bool bkv_fibers_waiter_can_yield(void *fibers);
void bkv_fibers_waiter_yield(void *fibers, bool (*ready)(const void *arg), const void *arg);
void bkv_fibers_waiter_yield_fd(void *fibers, int fd);
void bkv_fibers_waiter_kick(void *fibers);
#define BKV_FIBERS_WAITER(fibers)                                                                  \
	((bkv_storage_waiter){.can_yield = bkv_fibers_waiter_can_yield,                            \
	                      .yield = bkv_fibers_waiter_yield,                                    \
	                      .yield_fd = bkv_fibers_waiter_yield_fd,                              \
	                      .kick = bkv_fibers_waiter_kick,                                      \
	                      .arg = (fibers)})

#endif
