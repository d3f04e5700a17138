/*
 * testproc.h - helpers for the tests that run bkvd and bkv as processes: a monotonic
 * clock, sleeping, joining paths, reading a whole file, showing a log's tail when a test
 * fails, waiting for a child, listing bkvd's workers and removing a temp tree. Header-only (static)
 * so each test stays a single source file.
 */
#ifndef BKV_TESTPROC_H
#define BKV_TESTPROC_H

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
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

/* pid's state, parent and process group from /proc/<pid>/stat; false if it is gone. */
static inline bool tp_proc_stat(long pid, char *state, int *parent, int *group)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	/* comm, in parentheses, may hold spaces and ')': the fields follow the last ')' */
	const char *rp = strrchr(buf, ')');
	return rp != NULL && sscanf(rp + 1, " %c %d %d", state, parent, group) == 3;
}

/* bkvd's metrics process or its committer: a child of the master that is no worker. */
static inline bool tp_is_bkvd_helper(long pid)
{
	char path[64], comm[32] = "";
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	const bool read = fgets(comm, sizeof(comm), f) != NULL;
	fclose(f);
	return read &&
	       (strcmp(comm, "bkvd-metrics\n") == 0 || strcmp(comm, "bkvd-committer\n") == 0);
}

/* The live (not zombie) processes that keep accepts (given their pid, parent and process group),
 * at most max, in /proc's order. */
static inline size_t tp_processes(bool (*keep)(long pid, int parent, int group, long arg), long arg,
                                  pid_t *out, size_t max)
{
	DIR *d = opendir("/proc");
	size_t n = 0;
	if (d == NULL)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < max) {
		char *end, state;
		int parent, group;
		long pid = strtol(e->d_name, &end, 10);
		if (*end == '\0' && pid > 0 && tp_proc_stat(pid, &state, &parent, &group) &&
		    state != 'Z' && keep(pid, parent, group, arg))
			out[n++] = (pid_t)pid;
	}
	closedir(d);
	return n;
}

static inline bool tp_is_bkvd_worker_of(long pid, int parent, int group, long master)
{
	(void)group;
	return parent == master && !tp_is_bkvd_helper(pid);
}

/* The live (not zombie) children of master but bkvd's helpers, i.e. its workers, like
 * pgrep -P; at most max, sorted ascending so two listings compare with memcmp. */
static inline size_t tp_bkvd_workers(pid_t master, pid_t *out, size_t max)
{
	const size_t n = tp_processes(tp_is_bkvd_worker_of, master, out, max);
	for (size_t i = 1; i < n; i++) {
		for (size_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
			pid_t t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	}
	return n;
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
