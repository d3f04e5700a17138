/*
 * testproc.h - helpers for the tests that run bkvd and bkv as processes: a monotonic
 * clock, sleeping, joining paths, reading a whole file, showing a log's tail when a test
 * fails, waiting for a child and removing a temp tree. Header-only (static) so each test stays a single source file.
 */
#ifndef BKV_TESTPROC_H
#define BKV_TESTPROC_H

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static inline double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static inline void path_join(char out[PATH_MAX], const char *dir, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
	if (n < 0 || n >= PATH_MAX) {
		fprintf(stderr, "path too long: %s/%s\n", dir, name);
		abort();
	}
}

/* The whole file, NUL-terminated; NULL if it cannot be read. */
static inline char *slurp(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	while (buf != NULL) {
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
		if (cap - len - 1 == 0) {
			char *grown = realloc(buf, cap * 2);
			if (grown == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = grown;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf != NULL) {
		buf[len] = '\0';
		if (len_out != NULL)
			*len_out = len;
	}
	return buf;
}

static inline long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

static inline void print_log_tail(const char *path)
{
	size_t len = 0;
	char *text = slurp(path, &len);
	if (text == NULL)
		return;
	const char *from = len > 3000 ? text + len - 3000 : text;
	fprintf(stderr, "---- %s (tail) ----\n%s\n----\n", path, from);
	free(text);
}

static inline int wait_child(pid_t pid)
{
	int status = 0;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return status;
}

static inline void chomp(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

static inline int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

#endif
