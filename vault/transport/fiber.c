/*
 * fiber.c - fibers on ucontext (see fiber.h).
 *
 * Each fiber's context is made once and loops: run its function, park (switch back), and
 * on the next bkv_fibers_run take the new function. So a request costs two switches, plus
 * two per yield, and no makecontext. Under AddressSanitizer every switch is announced
 * (__sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber), so it tracks which
 * stack is live and never reads a fiber's frames as the loop's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "fiber.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BKV_FIBER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define BKV_FIBER_ASAN 1
#endif
#ifdef BKV_FIBER_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

typedef struct fiber {
	ucontext_t context;
	uint8_t *mapping; /* guard page, then the stack */
	size_t mapped;
	bool made;    /* its context exists (it parks between requests) */
	bool busy;    /* running or yielded */
	bool yielded; /* switched out by bkv_fibers_yield */
	bkv_fiber_fn fn;
	void *arg;
	bool (*ready)(const void *arg); /* while yielded */
	const void *ready_arg;
	int wait_fd; /* while yielded on a descriptor (bkv_fibers_yield_fd); else -1 */
	void *asan_fake_stack;
} fiber;

struct bkv_fibers {
	ucontext_t loop;               /* the context that ran or resumed the current fiber */
	fiber *current;                /* NULL on the loop's own stack */
	const void *loop_stack_bottom; /* for the sanitizer's switch back */
	size_t loop_stack_size;
	uint32_t count, busy;
	bool kicked;                      /* bkv_fibers_kick since the last resume pass */
	void (*watch)(void *arg, int fd); /* bkv_fibers_set_watch */
	void *watch_arg;
	fiber fibers[];
};

static void to_fiber(bkv_fibers *fs, fiber *fb)
{
	fs->current = fb;
#ifdef BKV_FIBER_ASAN
	void *fake = NULL;
	__sanitizer_start_switch_fiber(&fake, fb->mapping + getpagesize(),
	                               fb->mapped - (size_t)getpagesize());
	swapcontext(&fs->loop, &fb->context);
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
	swapcontext(&fs->loop, &fb->context);
#endif
	fs->current = NULL;
}

/* From the fiber: back to the loop's context. */
static void to_loop(bkv_fibers *fs, fiber *fb)
{
#ifdef BKV_FIBER_ASAN
	__sanitizer_start_switch_fiber(&fb->asan_fake_stack, fs->loop_stack_bottom,
	                               fs->loop_stack_size);
	swapcontext(&fb->context, &fs->loop);
	__sanitizer_finish_switch_fiber(fb->asan_fake_stack, &fs->loop_stack_bottom,
	                                &fs->loop_stack_size);
#else
	swapcontext(&fb->context, &fs->loop);
#endif
}

/* makecontext passes ints: the pointer comes in two halves. */
static void fiber_main(unsigned int high, unsigned int low)
{
	bkv_fibers *fs = (bkv_fibers *)(((uintptr_t)high << 32) | (uintptr_t)low);
#ifdef BKV_FIBER_ASAN
	__sanitizer_finish_switch_fiber(NULL, &fs->loop_stack_bottom, &fs->loop_stack_size);
#endif
	for (;;) {
		fiber *fb = fs->current;
		fb->fn(fb->arg);
		fb->fn = NULL;
		fb->arg = NULL;
		fb->busy = false;
		fs->busy--;
		to_loop(fs, fb);
	}
}

bkv_fibers *bkv_fibers_new(uint32_t count, size_t stack_bytes)
{
	if (count == 0 || count > BKV_FIBERS_MAX || stack_bytes == 0)
		return NULL;
	bkv_fibers *fs = calloc(1, sizeof(*fs) + count * sizeof(fiber));
	if (fs == NULL)
		return NULL;
	const size_t page = (size_t)getpagesize();
	const size_t stack = (stack_bytes + page - 1) / page * page;
	fs->count = count;
	for (uint32_t i = 0; i < count; i++) {
		fiber *fb = &fs->fibers[i];
		void *m = mmap(NULL, stack + page, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (m == MAP_FAILED || mprotect(m, page, PROT_NONE) != 0) {
			if (m != MAP_FAILED)
				munmap(m, stack + page);
			bkv_fibers_free(fs);
			return NULL;
		}
		fb->mapping = m;
		fb->mapped = stack + page;
		fb->wait_fd = -1;
	}
	return fs;
}

void bkv_fibers_free(bkv_fibers *fs)
{
	if (fs == NULL)
		return;
	for (uint32_t i = 0; i < fs->count; i++) {
		if (fs->fibers[i].mapping != NULL)
			munmap(fs->fibers[i].mapping, fs->fibers[i].mapped);
	}
	free(fs);
}

/* The fiber's context, made once (getcontext returns twice, hence a function of its own). */
static __attribute__((noinline)) bool make(bkv_fibers *fs, fiber *fb)
{
	if (getcontext(&fb->context) != 0)
		return false;
	const size_t page = (size_t)getpagesize();
	fb->context.uc_stack.ss_sp = fb->mapping + page;
	fb->context.uc_stack.ss_size = fb->mapped - page;
	fb->context.uc_link = NULL; /* fiber_main never returns */
	const uintptr_t self = (uintptr_t)fs;
	makecontext(&fb->context, (void (*)(void))fiber_main, 2, (unsigned int)(self >> 32),
	            (unsigned int)(self & 0xffffffffu));
	fb->made = true;
	return true;
}

bool bkv_fibers_run(bkv_fibers *fs, bkv_fiber_fn fn, void *arg)
{
	if (fs->current != NULL || fs->busy == fs->count)
		return false;
	fiber *fb = NULL;
	for (uint32_t i = 0; i < fs->count && fb == NULL; i++) {
		if (!fs->fibers[i].busy)
			fb = &fs->fibers[i];
	}
	if (!fb->made && !make(fs, fb))
		return false;
	fb->fn = fn;
	fb->arg = arg;
	fb->busy = true;
	fb->yielded = false;
	fs->busy++;
	to_fiber(fs, fb);
	return true;
}

bool bkv_fibers_inside(const bkv_fibers *fs)
{
	return fs != NULL && fs->current != NULL;
}

void bkv_fibers_yield(bkv_fibers *fs, bool (*ready)(const void *arg), const void *arg)
{
	fiber *fb = fs->current;
	if (fb == NULL)
		return;
	fb->yielded = true;
	fb->ready = ready;
	fb->ready_arg = arg;
	to_loop(fs, fb);
	fb->yielded = false;
	fb->ready = NULL;
	fb->ready_arg = NULL;
}

void bkv_fibers_resume(bkv_fibers *fs, bool all)
{
	if (fs->current != NULL)
		return;
	fs->kicked = false;
	for (uint32_t i = 0; i < fs->count; i++) {
		fiber *fb = &fs->fibers[i];
		if (fb->busy && fb->yielded &&
		    (all || (fb->wait_fd < 0 && (fb->ready == NULL || fb->ready(fb->ready_arg)))))
			to_fiber(fs, fb);
	}
}

void bkv_fibers_set_watch(bkv_fibers *fs, void (*watch)(void *arg, int fd), void *arg)
{
	fs->watch = watch;
	fs->watch_arg = arg;
}

void bkv_fibers_yield_fd(bkv_fibers *fs, int fd)
{
	fiber *fb = fs->current;
	if (fb == NULL)
		return;
	if (fs->watch != NULL)
		fs->watch(fs->watch_arg, fd);
	fb->wait_fd = fd;
	bkv_fibers_yield(fs, NULL, NULL);
	fb->wait_fd = -1;
}

void bkv_fibers_resume_fd(bkv_fibers *fs, int fd)
{
	if (fs->current != NULL || fd < 0)
		return;
	for (uint32_t i = 0; i < fs->count; i++) {
		fiber *fb = &fs->fibers[i];
		if (fb->busy && fb->yielded && fb->wait_fd == fd)
			to_fiber(fs, fb);
	}
}

void bkv_fibers_kick(bkv_fibers *fs)
{
	fs->kicked = true;
}

bool bkv_fibers_kicked(const bkv_fibers *fs)
{
	return fs != NULL && fs->kicked;
}

uint32_t bkv_fibers_busy(const bkv_fibers *fs)
{
	return fs != NULL ? fs->busy : 0;
}

bool bkv_fibers_waiter_can_yield(void *fibers)
{
	return bkv_fibers_inside(fibers);
}

void bkv_fibers_waiter_yield(void *fibers, bool (*ready)(const void *arg), const void *arg)
{
	bkv_fibers_yield(fibers, ready, arg);
}

void bkv_fibers_waiter_yield_fd(void *fibers, int fd)
{
	bkv_fibers_yield_fd(fibers, fd);
}

void bkv_fibers_waiter_kick(void *fibers)
{
	bkv_fibers_kick(fibers);
}
